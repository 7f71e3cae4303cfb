/* AVX2+FMA SGEMM micro-kernel: 6×16 tile = 12 ymm accumulators, which covers
 * two FMA pipes × 4-5 cycles latency while leaving registers for B and the
 * broadcast A value. */
#include "gemm_kernels.h"

#include <immintrin.h>

enum { MR = 6, NR = 16 };

static inline __attribute__((always_inline)) void
store_row(float *c, __m256 acc0, __m256 acc1, __m256i m0, __m256i m1, __m256 alpha,
          __m256 beta, int beta_zero, int has_bias, __m256 bias0, __m256 bias1) {
    __m256 r0 = _mm256_mul_ps(acc0, alpha), r1 = _mm256_mul_ps(acc1, alpha);
    if (!beta_zero) {
        r0 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c, m0), r0);
        r1 = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c + 8, m1), r1);
    }
    if (has_bias) {
        r0 = _mm256_add_ps(r0, bias0);
        r1 = _mm256_add_ps(r1, bias1);
    }
    _mm256_maskstore_ps(c, m0, r0);
    _mm256_maskstore_ps(c + 8, m1, r1);
}

static void ukernel_avx2(int64_t kc, const float *restrict a, const float *restrict b,
                         float *restrict c, int64_t ldc, int m, int n, float alpha, float beta,
                         const float *bias) {
    /* Named accumulators: with an array, gcc 12 mirrors all 12 to the stack
     * on every step (16 ymm registers leave it no slack), halving speed. */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;

    for (int r = 0; r < m; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        __m256 ar;
#define MN_ROW_FMA(r)                              \
        ar = _mm256_broadcast_ss(a + r);           \
        c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);
        MN_ROW_FMA(0) MN_ROW_FMA(1) MN_ROW_FMA(2) MN_ROW_FMA(3) MN_ROW_FMA(4) MN_ROW_FMA(5)
#undef MN_ROW_FMA
        a += MR;
        b += NR;
    }
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};

    /* Lane j is stored when j < n (masked, so edge tiles never touch memory past n). */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lane);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int beta_zero = beta == 0.0f, has_bias = bias != NULL;
    const __m256 bias0 = has_bias ? _mm256_maskload_ps(bias, m0) : va;
    const __m256 bias1 = has_bias ? _mm256_maskload_ps(bias + 8, m1) : va;
    if (m == MR) {
        for (int r = 0; r < MR; r++)
            store_row(c + r * ldc, acc[r][0], acc[r][1], m0, m1, va, vb, beta_zero, has_bias, bias0, bias1);
    } else {
        for (int r = 0; r < MR; r++)
            if (r < m)
                store_row(c + r * ldc, acc[r][0], acc[r][1], m0, m1, va, vb, beta_zero, has_bias, bias0, bias1);
    }
}

static void pack_a_avx2(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                        float *dst) {
    mn_gemm_pack_generic(src, ls, ks, len, kc, dst, MR);
}

static void pack_b_avx2(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                        float *dst) {
    mn_gemm_pack_generic(src, ls, ks, len, kc, dst, NR);
}

const mn_gemm_impl mn_gemm_impl_avx2 = {
    .mr = MR, .nr = NR, .mc = 120, .kc = 256, .nc = 3072,
    .kernel = ukernel_avx2, .pack_a = pack_a_avx2, .pack_b = pack_b_avx2,
};

double mn_fma_peak_loop_avx2(int64_t iters) {
    /* Named variables, not an array: an array would be kept in memory because
     * of the asm barrier below. */
    __m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f), a2 = _mm256_set1_ps(2.f);
    __m256 a3 = _mm256_set1_ps(3.f), a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f);
    __m256 a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f), a8 = _mm256_set1_ps(8.f);
    __m256 a9 = _mm256_set1_ps(9.f), a10 = _mm256_set1_ps(10.f), a11 = _mm256_set1_ps(11.f);
    const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        a0 = _mm256_fmadd_ps(a0, mul, add);
        a1 = _mm256_fmadd_ps(a1, mul, add);
        a2 = _mm256_fmadd_ps(a2, mul, add);
        a3 = _mm256_fmadd_ps(a3, mul, add);
        a4 = _mm256_fmadd_ps(a4, mul, add);
        a5 = _mm256_fmadd_ps(a5, mul, add);
        a6 = _mm256_fmadd_ps(a6, mul, add);
        a7 = _mm256_fmadd_ps(a7, mul, add);
        a8 = _mm256_fmadd_ps(a8, mul, add);
        a9 = _mm256_fmadd_ps(a9, mul, add);
        a10 = _mm256_fmadd_ps(a10, mul, add);
        a11 = _mm256_fmadd_ps(a11, mul, add);
        /* Stops the compiler from collapsing or reordering iterations. */
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),
                              "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256 acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    __m256 sum = acc[0];
    for (int i = 1; i < 12; i++) sum = _mm256_add_ps(sum, acc[i]);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}
