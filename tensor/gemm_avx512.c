/* AVX-512 SGEMM micro-kernel: 12×32 tile = 24 zmm accumulators.
 *
 * Zen 4 issues one 512-bit FMA per cycle (two 256-bit halves) with 4-cycle
 * latency, so 24 independent chains hide latency with room to spare, and the
 * 2 B loads + 12 broadcasts per step fit in the load ports. */
#include "gemm_kernels.h"

#include <immintrin.h>

enum { MR = 12, NR = 32 };

static inline __attribute__((always_inline)) void
store_row(float *c, __m512 acc0, __m512 acc1, __mmask16 m0, __mmask16 m1, __m512 alpha,
          __m512 beta, int beta_zero, int has_bias, __m512 bias0, __m512 bias1) {
    __m512 r0 = _mm512_mul_ps(acc0, alpha), r1 = _mm512_mul_ps(acc1, alpha);
    if (!beta_zero) {
        r0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, c), r0);
        r1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, c + 16), r1);
    }
    if (has_bias) {
        r0 = _mm512_add_ps(r0, bias0);
        r1 = _mm512_add_ps(r1, bias1);
    }
    _mm512_mask_storeu_ps(c, m0, r0);
    _mm512_mask_storeu_ps(c + 16, m1, r1);
}

/* Kernel body for the top `rows` rows and `vecs` 16-wide column groups of the
 * tile; instantiated with constants so edge tiles (e.g. the 2 leftover rows of
 * M = 50) skip the FMAs for padding instead of computing a full 12×32 tile.
 * Element (r, k) of A is a[r * a_row + k * a_step]: a packed panel (1, MR) or a
 * row-major A read in place (lda, 1). */
static inline __attribute__((always_inline)) void
kernel_body(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
            int64_t ldc, int m, int n, float alpha, float beta, const float *bias, const int rows,
            const int vecs, const int64_t a_row, const int64_t a_step) {
    __m512 acc[MR][2];
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();

    /* C rows are far apart (often a power-of-two stride): request them now so
     * the misses overlap the k loop instead of stalling the final stores. */
    for (int r = 0; r < m; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b);
        const __m512 b1 = vecs == 2 ? _mm512_load_ps(b + 16) : b0;
        /* The packed panels come from L2; a short software lead beats the
         * hardware prefetcher's ramp-up on these short streams (measured). */
        _mm_prefetch((const char *)(b + 4 * NR), _MM_HINT_T0);
        if (a_step == MR) _mm_prefetch((const char *)(a + 16 * MR), _MM_HINT_T0);
        for (int r = 0; r < rows; r++) {
            const __m512 ar = _mm512_set1_ps(a[r * a_row]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            if (vecs == 2) acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
        a += a_step;
        b += NR;
    }

    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int beta_zero = beta == 0.0f, has_bias = bias != NULL;
    const __m512 bias0 = has_bias ? _mm512_maskz_loadu_ps(m0, bias) : va;
    const __m512 bias1 = has_bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : va;
    if (vecs == 1) /* m1 is empty: the second group is never stored */
        for (int r = 0; r < rows; r++) acc[r][1] = acc[r][0];
    if (m == rows) {
        for (int r = 0; r < rows; r++)
            store_row(c + r * ldc, acc[r][0], acc[r][1], m0, m1, va, vb, beta_zero, has_bias, bias0, bias1);
    } else {
        for (int r = 0; r < rows; r++)
            if (r < m)
                store_row(c + r * ldc, acc[r][0], acc[r][1], m0, m1, va, vb, beta_zero, has_bias, bias0, bias1);
    }
}

static void ukernel_avx512(int64_t kc, const float *restrict a, const float *restrict b,
                           float *restrict c, int64_t ldc, int m, int n, float alpha,
                           float beta, const float *bias) {
    if (m > 8) {
        if (n > 16) kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 12, 2, 1, MR);
        else kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 12, 1, 1, MR);
    } else if (m > 4) {
        if (n > 16) kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 8, 2, 1, MR);
        else kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 8, 1, 1, MR);
    } else {
        if (n > 16) kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 4, 2, 1, MR);
        else kernel_body(kc, a, b, c, ldc, m, n, alpha, beta, bias, 4, 1, 1, MR);
    }
}

/* The same tile with A read in place: a full MR-row panel of a row-major A (row stride lda,
 * steps contiguous), so the driver skips packing it. */
static void ukernel_direct_a_avx512(int64_t kc, const float *restrict a, int64_t lda, const float *restrict b,
                                    float *restrict c, int64_t ldc, int n, float alpha, float beta,
                                    const float *bias) {
    if (n > 16) kernel_body(kc, a, b, c, ldc, MR, n, alpha, beta, bias, MR, 2, lda, 1);
    else kernel_body(kc, a, b, c, ldc, MR, n, alpha, beta, bias, MR, 1, lda, 1);
}

/* Transpose 8 steps of one full 12-line panel whose lines are contiguous in k
 * (op(A) = A, row-major): an 8×8 in-register transpose for lines 0-7 and a
 * 4×8 one for lines 8-11. The scalar equivalent costs a quarter of the run
 * time on skinny-N products such as 3200×512×128. */
static inline void transpose_panel_8_steps(const float *s, int64_t ls, float *dst) {
    __m256 r[MR];
    for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(s + i * ls);

    __m256 u[8];
    for (int h = 0; h < 2; h++) { /* lines 4h .. 4h+3 */
        const __m256 t0 = _mm256_unpacklo_ps(r[4 * h], r[4 * h + 1]);
        const __m256 t1 = _mm256_unpackhi_ps(r[4 * h], r[4 * h + 1]);
        const __m256 t2 = _mm256_unpacklo_ps(r[4 * h + 2], r[4 * h + 3]);
        const __m256 t3 = _mm256_unpackhi_ps(r[4 * h + 2], r[4 * h + 3]);
        /* u[4h+q] holds step q in its low half and step q+4 in its high half. */
        u[4 * h + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
        u[4 * h + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
    const __m256 t0 = _mm256_unpacklo_ps(r[8], r[9]), t1 = _mm256_unpackhi_ps(r[8], r[9]);
    const __m256 t2 = _mm256_unpacklo_ps(r[10], r[11]), t3 = _mm256_unpackhi_ps(r[10], r[11]);
    const __m256 v[4] = {
        _mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
        _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE),
    };
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(dst + q * MR, _mm256_permute2f128_ps(u[q], u[4 + q], 0x20));
        _mm256_storeu_ps(dst + (q + 4) * MR, _mm256_permute2f128_ps(u[q], u[4 + q], 0x31));
        _mm_storeu_ps(dst + q * MR + 8, _mm256_castps256_ps128(v[q]));
        _mm_storeu_ps(dst + (q + 4) * MR + 8, _mm256_extractf128_ps(v[q], 1));
    }
}

/* Transpose 8 lines x 8 steps (lines contiguous in k, line stride ls) into the panel
 * layout: step q of the block lands at dst + q * width. */
static inline void transpose_8x8(const float *s, int64_t ls, float *dst, int64_t width) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ls);
    __m256 u[8];
    for (int h = 0; h < 2; h++) {
        const __m256 t0 = _mm256_unpacklo_ps(r[4 * h], r[4 * h + 1]);
        const __m256 t1 = _mm256_unpackhi_ps(r[4 * h], r[4 * h + 1]);
        const __m256 t2 = _mm256_unpacklo_ps(r[4 * h + 2], r[4 * h + 3]);
        const __m256 t3 = _mm256_unpackhi_ps(r[4 * h + 2], r[4 * h + 3]);
        u[4 * h + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
        u[4 * h + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(dst + q * width, _mm256_permute2f128_ps(u[q], u[4 + q], 0x20));
        _mm256_storeu_ps(dst + (q + 4) * width, _mm256_permute2f128_ps(u[q], u[4 + q], 0x31));
    }
}

/* Lines contiguous per step (line stride 1): each step copies w <= width floats and
 * zero-fills the rest, with masked vector moves instead of a memcpy call per step. */
static inline void pack_steps_contiguous(const float *s, int64_t ks, int64_t w, int64_t kc, float *dst,
                                         const int width) {
    const __mmask16 m0 = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    const __mmask16 m1 = w >= 32 ? 0xFFFF : w <= 16 ? 0 : (__mmask16)((1u << (w - 16)) - 1);
    const __mmask16 store0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    for (int64_t k = 0; k < kc; k++) {
        const float *sk = s + k * ks;
        float *d = dst + k * width;
        _mm512_mask_storeu_ps(d, store0, _mm512_maskz_loadu_ps(m0, sk));
        if (width > 16) _mm512_storeu_ps(d + 16, _mm512_maskz_loadu_ps(m1, sk + 16));
    }
}

static void pack_a_avx512(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                          float *dst) {
    if (ls == 1) { /* op(A) = A^T: rows of the panel are contiguous */
        for (int64_t l0 = 0; l0 < len; l0 += MR, dst += kc * MR)
            pack_steps_contiguous(src + l0, ks, len - l0 < MR ? len - l0 : MR, kc, dst, MR);
        return;
    }
    if (ks != 1) {
        mn_gemm_pack_generic(src, ls, ks, len, kc, dst, MR);
        return;
    }
    int64_t l0 = 0;
    for (; l0 + MR <= len; l0 += MR) {
        const float *s = src + l0 * ls;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) transpose_panel_8_steps(s + k, ls, dst + k * MR);
        for (; k < kc; k++)
            for (int i = 0; i < MR; i++) dst[k * MR + i] = s[i * ls + k];
        dst += kc * MR;
    }
    if (l0 < len) mn_gemm_pack_generic(src + l0 * ls, ls, ks, len - l0, kc, dst, MR);
}

static void pack_b_avx512(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                          float *dst) {
    if (ls == 1) { /* op(B) = B: steps are contiguous rows of B */
        for (int64_t l0 = 0; l0 < len; l0 += NR, dst += kc * NR)
            pack_steps_contiguous(src + l0, ks, len - l0 < NR ? len - l0 : NR, kc, dst, NR);
        return;
    }
    if (ks != 1) {
        mn_gemm_pack_generic(src, ls, ks, len, kc, dst, NR);
        return;
    }
    /* op(B) = W^T of a row-major W (x W^T): transpose 8 x 8 blocks */
    int64_t l0 = 0;
    for (; l0 + NR <= len; l0 += NR) {
        const float *s = src + l0 * ls;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8)
            for (int g = 0; g < NR / 8; g++) transpose_8x8(s + g * 8 * ls + k, ls, dst + k * NR + g * 8, NR);
        for (; k < kc; k++)
            for (int i = 0; i < NR; i++) dst[k * NR + i] = s[i * ls + k];
        dst += kc * NR;
    }
    if (l0 < len) mn_gemm_pack_generic(src + l0 * ls, ls, ks, len - l0, kc, dst, NR);
}

#ifndef MN_GEMM_AVX512_MC
#define MN_GEMM_AVX512_MC 144
#endif
#ifndef MN_GEMM_AVX512_KC
#define MN_GEMM_AVX512_KC 384
#endif
#ifndef MN_GEMM_AVX512_NC
#define MN_GEMM_AVX512_NC 3072
#endif

const mn_gemm_impl mn_gemm_impl_avx512 = {
    .mr = MR, .nr = NR,
    .mc = MN_GEMM_AVX512_MC, .kc = MN_GEMM_AVX512_KC, .nc = MN_GEMM_AVX512_NC,
    .kernel = ukernel_avx512, .pack_a = pack_a_avx512, .pack_b = pack_b_avx512,
    .kernel_direct_a = ukernel_direct_a_avx512,
};

double mn_fma_peak_loop_avx512(int64_t iters) {
    /* 12 independent chains: > latency (4) × throughput (1-2 per cycle). */
    /* Named variables, not an array: an array would be kept in memory because
     * of the asm barrier below. */
    __m512 a0 = _mm512_set1_ps(0.f), a1 = _mm512_set1_ps(1.f), a2 = _mm512_set1_ps(2.f);
    __m512 a3 = _mm512_set1_ps(3.f), a4 = _mm512_set1_ps(4.f), a5 = _mm512_set1_ps(5.f);
    __m512 a6 = _mm512_set1_ps(6.f), a7 = _mm512_set1_ps(7.f), a8 = _mm512_set1_ps(8.f);
    __m512 a9 = _mm512_set1_ps(9.f), a10 = _mm512_set1_ps(10.f), a11 = _mm512_set1_ps(11.f);
    const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        a0 = _mm512_fmadd_ps(a0, mul, add);
        a1 = _mm512_fmadd_ps(a1, mul, add);
        a2 = _mm512_fmadd_ps(a2, mul, add);
        a3 = _mm512_fmadd_ps(a3, mul, add);
        a4 = _mm512_fmadd_ps(a4, mul, add);
        a5 = _mm512_fmadd_ps(a5, mul, add);
        a6 = _mm512_fmadd_ps(a6, mul, add);
        a7 = _mm512_fmadd_ps(a7, mul, add);
        a8 = _mm512_fmadd_ps(a8, mul, add);
        a9 = _mm512_fmadd_ps(a9, mul, add);
        a10 = _mm512_fmadd_ps(a10, mul, add);
        a11 = _mm512_fmadd_ps(a11, mul, add);
        /* Stops the compiler from collapsing or reordering iterations. */
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                              "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    __m512 acc[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    __m512 sum = acc[0];
    for (int i = 1; i < 12; i++) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}
