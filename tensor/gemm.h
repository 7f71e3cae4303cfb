/* Single-precision general matrix multiply (GEMM), row-major.
 *
 * Packed, cache-blocked implementation in the GotoBLAS/BLIS style with
 * micro-kernels for scalar, AVX2+FMA and AVX-512, chosen at call time from
 * mn_cpu_isa(). */
#ifndef MN_GEMM_H
#define MN_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* C = alpha * op(A) * op(B) + beta * C, all row-major.
 * op(A) is M×K: element (i,k) is A[i*lda + k] when !trans_a, A[k*lda + i] when trans_a.
 * op(B) is K×N: element (k,j) is B[k*ldb + j] when !trans_b, B[j*ldb + k] when trans_b.
 * C[i*ldc + j]. When beta == 0, C is not read (may hold NaN). M, N or K may be 0 (K == 0: C = beta*C).
 * Threads: OpenMP with omp_get_max_threads(); when called inside an active parallel
 * region (omp_in_parallel()) it runs on the calling thread only. */
void mn_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);

/* mn_sgemm plus a bias row: C = alpha * op(A) * op(B) + beta * C + bias, with bias [N] (or NULL)
 * added to every row of C as the tiles are stored, so it costs no pass of its own. The result
 * is rounded as if C had held the bias and beta were 1 (bias + alpha * op(A) * op(B) when
 * beta == 0). */
void mn_sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   const float *bias, float *C, int64_t ldc);

/* Measured float32 peak of this machine in GFLOP/s (1 FMA = 2 flops): a loop of
 * independent vector FMAs at the best ISA level from mn_cpu_isa(), run on
 * `threads` OpenMP threads for about `seconds_hint_ms` milliseconds (best of
 * several trials). Used by benchmarks to report % of peak. */
double mn_fma_peak_gflops(int threads, int seconds_hint_ms);

/* Free the calling thread's packing buffers (they are otherwise kept and
 * reused across calls). Optional; useful before thread exit or in leak checks. */
void mn_sgemm_release_buffers(void);

#endif
