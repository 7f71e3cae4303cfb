/* Packed, cache-blocked SGEMM driver (GotoBLAS/BLIS loop structure).
 *
 *   for jc in N by NC:            B panel kc×nc, packed once, shared by threads (L3)
 *     for pc in K by KC:
 *       for ic in M by MC:        A block mc×kc, packed per thread (L2)
 *         for jr in nc by NR:     B sliver (L1)
 *           for ir in mc by MR:   micro-kernel: MR×NR tile held in registers
 *
 * Transposes are absorbed by the packing routines, so every micro-kernel sees
 * the same layout. alpha/beta are applied when a tile is stored; beta only on
 * the first KC step, later steps accumulate into C. */
#include "gemm.h"

#include "cpu.h"
#include "gemm_kernels.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Below this many flops, thread start-up and synchronisation cost more than
 * the second core gains (measured on Zen 4; ~ a 64×64×64 product). */
#define MN_GEMM_PARALLEL_MIN_FLOPS (2.0 * 96 * 96 * 96)

/* Widest N for which full panels of a row-major A are read in place rather than packed
 * (measured on training steps of the ViT configurations: 2-3% faster per step). */
#define MN_GEMM_DIRECT_A_MAX_N 1024

/* ---- portable micro-kernel --------------------------------------------- */

enum { SCALAR_MR = 4, SCALAR_NR = 8 };

static void ukernel_scalar(int64_t kc, const float *restrict a, const float *restrict b,
                           float *restrict c, int64_t ldc, int m, int n, float alpha,
                           float beta, const float *bias) {
    /* Fixed-size accumulator so the compiler can keep it in SSE registers. */
    float acc[SCALAR_MR][SCALAR_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        for (int r = 0; r < SCALAR_MR; r++)
            for (int j = 0; j < SCALAR_NR; j++) acc[r][j] += a[r] * b[j];
        a += SCALAR_MR;
        b += SCALAR_NR;
    }
    for (int r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) cr[j] = alpha * acc[r][j];
        else
            for (int j = 0; j < n; j++) cr[j] = alpha * acc[r][j] + beta * cr[j];
        if (bias)
            for (int j = 0; j < n; j++) cr[j] += bias[j];
    }
}

static void pack_a_scalar(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                          float *dst) {
    mn_gemm_pack_generic(src, ls, ks, len, kc, dst, SCALAR_MR);
}

static void pack_b_scalar(const float *src, int64_t ls, int64_t ks, int64_t len, int64_t kc,
                          float *dst) {
    mn_gemm_pack_generic(src, ls, ks, len, kc, dst, SCALAR_NR);
}

static const mn_gemm_impl impl_scalar = {
    .mr = SCALAR_MR, .nr = SCALAR_NR, .mc = 128, .kc = 256, .nc = 2048,
    .kernel = ukernel_scalar, .pack_a = pack_a_scalar, .pack_b = pack_b_scalar,
};

static const mn_gemm_impl *select_impl(void) {
    switch (mn_cpu_isa()) {
    case MN_ISA_AVX512: return &mn_gemm_impl_avx512;
    case MN_ISA_AVX2: return &mn_gemm_impl_avx2;
    default: return &impl_scalar;
    }
}

/* ---- per-thread packing buffers ----------------------------------------- */

typedef struct {
    float *data;
    size_t capacity; /* floats */
} pack_buffer;

/* Thread-local so each OpenMP worker (and each caller already inside a
 * parallel region) reuses its own buffers across calls without locking. */
static _Thread_local pack_buffer tls_buf_a, tls_buf_b;

/* Every live buffer is also listed here, so buffers of worker threads stay
 * reachable (no leak reports) and are freed at exit. */
static float **g_registry;
static size_t g_registry_len, g_registry_cap;
/* (a mutex rather than a named OpenMP critical section, whose lock would be an exported symbol) */
static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;

static void registry_swap(float *old, float *new_) {
    pthread_mutex_lock(&g_registry_lock);
    {
        size_t i = 0;
        while (old && i < g_registry_len && g_registry[i] != old) i++;
        if (old && i < g_registry_len) g_registry[i] = g_registry[--g_registry_len];
        if (new_) {
            if (g_registry_len == g_registry_cap) {
                g_registry_cap = g_registry_cap ? 2 * g_registry_cap : 16;
                g_registry = realloc(g_registry, g_registry_cap * sizeof *g_registry);
                if (!g_registry) abort();
            }
            g_registry[g_registry_len++] = new_;
        }
    }
    pthread_mutex_unlock(&g_registry_lock);
}

static void registry_free_all(void) {
    for (size_t i = 0; i < g_registry_len; i++) free(g_registry[i]);
    free(g_registry);
    g_registry = NULL;
    g_registry_len = g_registry_cap = 0;
}

static float *pack_buffer_get(pack_buffer *buf, size_t floats) {
    if (floats > buf->capacity) {
        static bool at_exit_registered;
        pthread_mutex_lock(&g_registry_lock);
        if (!at_exit_registered) {
            atexit(registry_free_all);
            at_exit_registered = true;
        }
        pthread_mutex_unlock(&g_registry_lock);
        float *old = buf->data;
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        buf->data = aligned_alloc(64, bytes);
        if (!buf->data) {
            fprintf(stderr, "mn_sgemm: out of memory (%zu bytes)\n", bytes);
            abort();
        }
        registry_swap(old, buf->data);
        free(old);
        buf->capacity = floats;
    }
    return buf->data;
}

void mn_sgemm_release_buffers(void) {
    registry_swap(tls_buf_a.data, NULL);
    registry_swap(tls_buf_b.data, NULL);
    free(tls_buf_a.data);
    free(tls_buf_b.data);
    tls_buf_a = (pack_buffer){0};
    tls_buf_b = (pack_buffer){0};
}

/* ---- driver ------------------------------------------------------------- */

typedef struct {
    const mn_gemm_impl *impl;
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    const float *bias; /* [N] added to every row of C, or NULL */
    float *packed_b; /* shared kc × round_up(nc, nr) panels: one, or two used in turn with threads */
    int64_t panel_floats;
} gemm_args;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Split the tile grid (m_panels × n_slivers) over nt threads as tm × tn so the
 * busiest thread has the fewest tiles; ties favour splitting M, which keeps
 * each A block packed by one thread only. */
static void choose_thread_grid(int64_t m_panels, int64_t n_slivers, int nt, int *tm, int *tn) {
    int64_t best = INT64_MAX;
    *tm = nt;
    *tn = 1;
    for (int cand_tm = nt; cand_tm >= 1; cand_tm--) {
        if (nt % cand_tm) continue;
        int cand_tn = nt / cand_tm;
        int64_t load = ceil_div(m_panels, cand_tm) * ceil_div(n_slivers, cand_tn);
        if (load < best) {
            best = load;
            *tm = cand_tm;
            *tn = cand_tn;
        }
    }
}

static void gemm_thread(const gemm_args *g, int tid, int nt) {
    const mn_gemm_impl *im = g->impl;
    const int mr = im->mr, nr = im->nr;
    const int64_t kc_max = min_i64(im->kc, g->K);
    const int64_t mc_max = min_i64(im->mc, ceil_div(g->M, mr) * mr);
    float *packed_a = pack_buffer_get(&tls_buf_a, (size_t)(mc_max * kc_max));
    int64_t step = 0; /* (jc, pc) blocks done: with threads, B panels alternate between two buffers */

    /* Element (i,k) of op(A) is A[i*a_ls + k*a_ks]; (k,j) of op(B) is B[j*b_ls + k*b_ks]. */
    const int64_t a_ls = g->trans_a ? 1 : g->lda, a_ks = g->trans_a ? g->lda : 1;
    const int64_t b_ls = g->trans_b ? g->ldb : 1, b_ks = g->trans_b ? 1 : g->ldb;
    const int64_t m_panels = ceil_div(g->M, mr);
    /* A row-major A is read in place by the kernel instead of packed when N is small: each
     * panel then serves few B slivers, and the kernel's reads overlap its FMAs where a packing
     * pass would stall on a freshly written (cold) A. Wide products keep the packed panel. */
    const bool direct_a = im->kernel_direct_a && !g->trans_a && g->N <= MN_GEMM_DIRECT_A_MAX_N;

    for (int64_t jc = 0; jc < g->N; jc += im->nc) {
        const int64_t nc = min_i64(im->nc, g->N - jc);
        const int64_t n_slivers = ceil_div(nc, nr);
        int tm, tn;
        choose_thread_grid(m_panels, n_slivers, nt, &tm, &tn);
        const int t_m = tid / tn, t_n = tid % tn;
        const int64_t row_lo = min_i64(g->M, m_panels * t_m / tm * mr);
        const int64_t row_hi = min_i64(g->M, m_panels * (t_m + 1) / tm * mr);
        const int64_t sl_lo = n_slivers * t_n / tn, sl_hi = n_slivers * (t_n + 1) / tn;

        for (int64_t pc = 0; pc < g->K; pc += im->kc) {
            const int64_t kc = min_i64(im->kc, g->K - pc);
            const float beta = pc == 0 ? g->beta : 1.0f;
            const float *bias = pc == 0 ? g->bias : NULL; /* added once, with the first K block */
            float *packed_b = g->packed_b + (nt > 1 && (step++ & 1) ? g->panel_floats : 0);

            /* All threads pack a share of the B panel, then wait for the rest. */
            const int64_t pk_lo = n_slivers * tid / nt, pk_hi = n_slivers * (tid + 1) / nt;
            if (pk_hi > pk_lo) {
                const int64_t j0 = jc + pk_lo * nr;
                im->pack_b(g->B + j0 * b_ls + pc * b_ks, b_ls, b_ks,
                           min_i64(pk_hi * nr, nc) - pk_lo * nr, kc, packed_b + pk_lo * nr * kc);
            }
            if (nt > 1) {
#pragma omp barrier
            }

            for (int64_t ic = row_lo; ic < row_hi; ic += mc_max) {
                const int64_t mc = min_i64(mc_max, row_hi - ic);
                /* full panels of a row-major A are read in place; only a partial one is packed */
                const int64_t direct = direct_a ? mc / mr * mr : 0;
                if (direct < mc)
                    im->pack_a(g->A + (ic + direct) * a_ls + pc * a_ks, a_ls, a_ks, mc - direct, kc,
                               packed_a + direct * kc);
                for (int64_t jr = sl_lo; jr < sl_hi; jr++) {
                    const int n = (int)min_i64(nr, nc - jr * nr);
                    const float *b_sliver = packed_b + jr * nr * kc;
                    float *c_col = g->C + jc + jr * nr;
                    for (int64_t ir = 0; ir * mr < mc; ir++) {
                        const int m = (int)min_i64(mr, mc - ir * mr);
                        float *c_tile = c_col + (ic + ir * mr) * g->ldc;
                        const float *b_tile = bias ? bias + jc + jr * nr : NULL;
                        if (ir * mr < direct)
                            im->kernel_direct_a(kc, g->A + (ic + ir * mr) * g->lda + pc, g->lda, b_sliver, c_tile,
                                                g->ldc, n, g->alpha, beta, b_tile);
                        else
                            im->kernel(kc, packed_a + ir * mr * kc, b_sliver, c_tile, g->ldc, m, n, g->alpha,
                                       beta, b_tile);
                    }
                }
            }
            /* No barrier here: the next step packs into the other buffer, and the one after it
             * reuses this buffer only once every thread has passed the next step's barrier, that
             * is, has finished computing with this panel. */
        }
    }
}

static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        float *row = C + i * ldc;
        if (beta == 0.0f)
            memset(row, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; j++) row[j] *= beta;
    }
}

void mn_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    mn_sgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

void mn_sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                   const float *bias, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        if (bias)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) C[i * ldc + j] += bias[j];
        return;
    }
    const mn_gemm_impl *im = select_impl();
    gemm_args g = {
        .impl = im, .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K,
        .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C,
        .bias = bias,
    };
    const int64_t kc = min_i64(im->kc, K);
    const int64_t nc = min_i64(im->nc, N);
    g.panel_floats = kc * ceil_div(nc, im->nr) * im->nr;

    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < MN_GEMM_PARALLEL_MIN_FLOPS) nt = 1;
    const int64_t tiles = ceil_div(M, im->mr) * ceil_div(nc, im->nr);
    if (nt > tiles) nt = (int)tiles;
    g.packed_b = pack_buffer_get(&tls_buf_b, (size_t)(g.panel_floats * (nt > 1 ? 2 : 1)));

    if (nt <= 1) {
        gemm_thread(&g, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nt)
    gemm_thread(&g, omp_get_thread_num(), omp_get_num_threads());
}

/* ---- FMA peak ----------------------------------------------------------- */

static double fma_loop_scalar(int64_t iters) {
    /* Enough independent chains to fill SSE FMA-less add/mul pipes. */
    float acc[4][8] = {{0}};
    const float mul = 0.9999999f, add = 1e-7f;
    for (int64_t i = 0; i < iters; i++)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) acc[r][j] = acc[r][j] * mul + add;
    float sum = 0;
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 8; j++) sum += acc[r][j];
    return sum;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mn_fma_peak_gflops(int threads, int seconds_hint_ms) {
    if (threads < 1) threads = 1;
    if (seconds_hint_ms < 1) seconds_hint_ms = 1;
    double (*loop)(int64_t);
    double flops_per_iter;
    switch (mn_cpu_isa()) {
    case MN_ISA_AVX512: loop = mn_fma_peak_loop_avx512; flops_per_iter = 12 * 16 * 2; break;
    case MN_ISA_AVX2: loop = mn_fma_peak_loop_avx2; flops_per_iter = 12 * 8 * 2; break;
    default: loop = fma_loop_scalar; flops_per_iter = 4 * 8 * 2; break;
    }
    /* Calibrate on one thread so each trial lasts ~1/5 of the budget. */
    int64_t iters = 1 << 16;
    for (;;) {
        double t0 = now_seconds();
        loop(iters);
        double dt = now_seconds() - t0;
        if (dt > 0.02 * seconds_hint_ms / 1000.0 || iters > ((int64_t)1 << 40)) {
            iters = (int64_t)((double)iters * (0.2 * seconds_hint_ms / 1000.0) / dt) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    volatile double sink = 0.0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = now_seconds();
#pragma omp parallel num_threads(threads)
        {
            double r = loop(iters);
#pragma omp atomic
            sink += r;
        }
        double dt = now_seconds() - t0;
        double gflops = (double)threads * (double)iters * flops_per_iter / dt * 1e-9;
        if (gflops > best) best = gflops;
    }
    (void)sink;
    return best;
}
