/* Internal interface between the GEMM driver (gemm.c) and its per-ISA
 * micro-kernels (gemm_avx2.c, gemm_avx512.c). Not part of the public API. */
#ifndef MN_GEMM_KERNELS_H
#define MN_GEMM_KERNELS_H

#include <stdint.h>

/* c[0..m) x [0..n) = alpha * (a_panel * b_sliver) + beta * c (+ bias), with m <= MR, n <= NR.
 * a: kc steps of MR floats (one column of an MR-row panel per step).
 * b: kc steps of NR floats. Both zero-padded past m / n. beta == 0: c not read.
 * bias: NULL, or the tile's n column values, added to every row last. */
typedef void (*mn_gemm_ukernel_fn)(int64_t kc, const float *a, const float *b, float *c,
                                   int64_t ldc, int m, int n, float alpha, float beta, const float *bias);

/* The same product for one full MR-row panel read in place from a row-major A (element
 * (r, k) at a[r * lda + k]): the driver then skips packing A. NULL when an ISA has none. */
typedef void (*mn_gemm_ukernel_direct_a_fn)(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                                            int64_t ldc, int n, float alpha, float beta, const float *bias);

/* Pack `len` lines of a strided matrix into panels of `width` lines, zero-padded
 * to a multiple of width. Element (line l, step k) is src[l*line_stride + k*k_stride];
 * it lands at dst[(l/width)*kc*width + k*width + l%width]. */
typedef void (*mn_gemm_pack_fn)(const float *src, int64_t line_stride, int64_t k_stride,
                                int64_t len, int64_t kc, float *dst);

/* One ISA's kernel and the cache blocking tuned for it. */
typedef struct {
    int mr, nr;          /* register tile */
    int64_t mc, kc, nc;  /* cache blocks: A block mc×kc (L2), B panel kc×nc (L3) */
    mn_gemm_ukernel_fn kernel;
    mn_gemm_pack_fn pack_a; /* width mr */
    mn_gemm_pack_fn pack_b; /* width nr */
    mn_gemm_ukernel_direct_a_fn kernel_direct_a;
} mn_gemm_impl;

extern const mn_gemm_impl mn_gemm_impl_avx2;
extern const mn_gemm_impl mn_gemm_impl_avx512;

double mn_fma_peak_loop_avx2(int64_t iters);
double mn_fma_peak_loop_avx512(int64_t iters);

/* Portable packing body. Each ISA file instantiates it with a constant width so
 * the compiler specialises and vectorises it with that file's instruction set. */
static inline __attribute__((always_inline)) void
mn_gemm_pack_generic(const float *src, int64_t line_stride, int64_t k_stride, int64_t len,
                     int64_t kc, float *restrict dst, const int width) {
    for (int64_t l0 = 0; l0 < len; l0 += width) {
        const int64_t w = len - l0 < width ? len - l0 : width;
        const float *s = src + l0 * line_stride;
        if (w == width && line_stride == 1) {
            /* Lines are contiguous per step: a straight copy of width floats. */
            for (int64_t k = 0; k < kc; k++) {
                const float *sk = s + k * k_stride;
                for (int r = 0; r < width; r++) dst[k * width + r] = sk[r];
            }
        } else if (w == width && k_stride == 1) {
            /* Steps are contiguous per line: transpose in blocks of 8 steps so
             * each source line is read sequentially and dst stays hot in L1. */
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8)
                for (int r = 0; r < width; r++) {
                    const float *sr = s + r * line_stride + k;
                    for (int q = 0; q < 8; q++) dst[(k + q) * width + r] = sr[q];
                }
            for (; k < kc; k++)
                for (int r = 0; r < width; r++) dst[k * width + r] = s[r * line_stride + k];
        } else if (line_stride == 1) {
            /* Partial panel: copy what exists, zero the rest of each step. */
            for (int64_t k = 0; k < kc; k++) {
                const float *sk = s + k * k_stride;
                int r = 0;
                for (; r < w; r++) dst[k * width + r] = sk[r];
                for (; r < width; r++) dst[k * width + r] = 0.0f;
            }
        } else {
            /* Partial panel read line by line (sequential when k_stride == 1). */
            for (int64_t i = 0; i < kc * width; i++) dst[i] = 0.0f;
            for (int r = 0; r < w; r++) {
                const float *sr = s + r * line_stride;
                for (int64_t k = 0; k < kc; k++) dst[k * width + r] = sr[k * k_stride];
            }
        }
        dst += kc * width;
    }
}

#endif
