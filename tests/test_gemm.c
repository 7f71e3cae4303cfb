/* mn_sgemm against a naive double-precision reference, across sizes that hit
 * every edge of the register and cache blocking, all transposes, strides,
 * alpha/beta, each ISA level and thread count. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tensor/cpu.h"
#include "tensor/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    int64_t pad; /* extra elements per row of A, B and C (strides > row width) */
} gemm_case;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float rand_unit(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *rand_matrix(int64_t rows, int64_t ld) {
    size_t n = (size_t)(rows * ld) + 1;
    float *m = malloc(n * sizeof(float));
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) m[i] = rand_unit();
    return m;
}

/* Runs one product and checks every element of C, including that the padding
 * columns of C were left untouched. Returns the number of bad elements. */
static int check_case(const gemm_case *t) {
    const int64_t M = t->M, N = t->N, K = t->K;
    /* Stored shape of A is M×K (or K×M when transposed); likewise B. */
    const int64_t a_rows = t->trans_a ? K : M, a_cols = t->trans_a ? M : K;
    const int64_t b_rows = t->trans_b ? N : K, b_cols = t->trans_b ? K : N;
    const int64_t lda = a_cols + t->pad, ldb = b_cols + t->pad, ldc = N + t->pad;
    float *A = rand_matrix(a_rows, lda), *B = rand_matrix(b_rows, ldb);
    float *C = rand_matrix(M, ldc), *C0 = rand_matrix(M, ldc);
    const size_t c_elems = (size_t)(M * ldc) + 1;
    if (t->beta == 0.0f)
        for (size_t i = 0; i < c_elems; i++) C[i] = NAN; /* must not be read */
    for (size_t i = 0; i < c_elems; i++) C0[i] = C[i];

    mn_sgemm(t->trans_a, t->trans_b, M, N, K, t->alpha, A, lda, B, ldb, t->beta, C, ldc);

    int bad = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            const float got = C[i * ldc + j];
            if (j >= N) { /* padding: bit-identical, NaN included */
                if (!(got == C0[i * ldc + j] || (isnan(got) && isnan(C0[i * ldc + j])))) bad++;
                continue;
            }
            double dot = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                const double a = t->trans_a ? A[k * lda + i] : A[i * lda + k];
                const double b = t->trans_b ? B[j * ldb + k] : B[k * ldb + j];
                dot += a * b;
                mag += fabs(a * b);
            }
            double ref = (double)t->alpha * dot, scale = fabs((double)t->alpha) * mag;
            if (t->beta != 0.0f) {
                ref += (double)t->beta * C0[i * ldc + j];
                scale += fabs((double)t->beta * C0[i * ldc + j]);
            }
            if (!(fabs((double)got - ref) <= 1e-5 * scale + 1e-6)) {
                if (bad < 5)
                    fprintf(stderr,
                            "  C[%lld,%lld] = %g, want %g (ta=%d tb=%d M=%lld N=%lld K=%lld "
                            "alpha=%g beta=%g pad=%lld isa=%s threads=%d)\n",
                            (long long)i, (long long)j, got, ref, t->trans_a, t->trans_b,
                            (long long)M, (long long)N, (long long)K, t->alpha, t->beta,
                            (long long)t->pad, mn_isa_name(mn_cpu_isa()), omp_get_max_threads());
                bad++;
            }
        }
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    return bad;
}

/* ---- ISA-parameterised groups ------------------------------------------ */

typedef struct {
    mn_isa isa;
} isa_state;

static int setup_isa(void **state, mn_isa isa) {
    isa_state *s = malloc(sizeof *s);
    if (!s) return -1;
    s->isa = mn_cpu_isa();
    *state = s;
    if (mn_cpu_set_isa(isa) != isa)
        fprintf(stderr, "  note: CPU lacks %s, testing %s instead\n", mn_isa_name(isa),
                mn_isa_name(mn_cpu_isa()));
    return 0;
}
static int setup_scalar(void **state) { return setup_isa(state, MN_ISA_SCALAR); }
static int setup_avx2(void **state) { return setup_isa(state, MN_ISA_AVX2); }
static int setup_avx512(void **state) { return setup_isa(state, MN_ISA_AVX512); }

static int teardown_isa(void **state) {
    isa_state *s = *state;
    mn_cpu_set_isa(s->isa);
    omp_set_num_threads(2);
    free(s);
    return 0;
}

static const int64_t awkward_sizes[] = {1, 7, 33, 257};
enum { N_AWKWARD = sizeof awkward_sizes / sizeof awkward_sizes[0] };

/* Every M×N×K from {1,7,33,257}^3 in all four transpose combinations. */
static void awkward_sizes_all_transposes(void **state) {
    (void)state;
    int bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int tr = 0; tr < 4; tr++)
            for (int mi = 0; mi < N_AWKWARD; mi++)
                for (int ni = 0; ni < N_AWKWARD; ni++)
                    for (int ki = 0; ki < N_AWKWARD; ki++) {
                        gemm_case t = {
                            .trans_a = tr & 1, .trans_b = tr >> 1,
                            .M = awkward_sizes[mi], .N = awkward_sizes[ni],
                            .K = awkward_sizes[ki],
                            .alpha = 1.0f, .beta = 0.0f, .pad = (mi + ni + ki) % 3 * 5,
                        };
                        bad += check_case(&t);
                    }
    }
    assert_int_equal(bad, 0);
}

/* alpha != 1 with beta in {0 (C = NaN), 1, 0.5}, strided, for shapes that
 * cross the KC, MC and NC block boundaries (multi-step accumulation into C). */
static void alpha_beta_strides_block_edges(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {
        {33, 257, 7}, {257, 33, 1000}, {300, 70, 400}, {13, 3100, 5}, {150, 100, 800},
        {50, 50, 32}, {20, 18, 9},
    };
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    int bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int bi = 0; bi < 3; bi++)
                for (int tr = 0; tr < 4; tr++) {
                    gemm_case t = {
                        .trans_a = tr & 1, .trans_b = tr >> 1, .M = shapes[s][0],
                        .N = shapes[s][1], .K = shapes[s][2], .alpha = -1.75f,
                        .beta = betas[bi], .pad = 3 + tr,
                    };
                    bad += check_case(&t);
                }
    }
    assert_int_equal(bad, 0);
}

/* Shapes where the thread split goes along N (few rows) or both dims. */
static void two_threads_skinny_and_wide(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {
        {5, 4000, 64}, {4000, 5, 64}, {64, 3500, 130}, {400, 400, 40},
    };
    int bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            gemm_case t = {
                .trans_a = s & 1, .trans_b = (s >> 1) & 1, .M = shapes[s][0],
                .N = shapes[s][1], .K = shapes[s][2], .alpha = 0.5f, .beta = 0.5f, .pad = 1,
            };
            bad += check_case(&t);
        }
    }
    assert_int_equal(bad, 0);
}

/* Each thread of an enclosing parallel region multiplies into its own C;
 * mn_sgemm must stay on the calling thread and use its own buffers. */
static void called_inside_parallel_region(void **state) {
    (void)state;
    int bad = 0;
    omp_set_num_threads(2);
#pragma omp parallel num_threads(2) reduction(+ : bad)
    {
        const int tid = omp_get_thread_num();
        const int64_t M = 120 + 17 * tid, N = 90 + 31 * tid, K = 200 + 50 * tid;
        float *A = malloc(sizeof(float) * (size_t)(M * K));
        float *B = malloc(sizeof(float) * (size_t)(K * N));
        float *C = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7 + tid) % 13) - 6.0f;
        for (int64_t i = 0; i < K * N; i++) B[i] = (float)((i * 5 + tid) % 11) - 5.0f;
        for (int rep = 0; rep < 3; rep++) {
            for (int64_t i = 0; i < M * N; i++) C[i] = NAN;
            mn_sgemm(false, tid == 1, M, N, K, 1.0f, A, K, B, tid == 1 ? K : N, 0.0f, C, N);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double ref = 0.0; /* small integers: exact in float */
                    for (int64_t k = 0; k < K; k++)
                        ref += (double)A[i * K + k] *
                               (tid == 1 ? B[j * K + k] : B[k * N + j]);
                    if (C[i * N + j] != (float)ref) bad++;
                }
        }
        free(A);
        free(B);
        free(C);
    }
    assert_int_equal(bad, 0);
}

/* K == 0 gives beta*C; M or N == 0 touches nothing; alpha == 0 reads no A/B. */
static void degenerate_dimensions(void **state) {
    (void)state;
    float C[6], A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4};
    for (int i = 0; i < 6; i++) C[i] = NAN;
    mn_sgemm(false, false, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);

    for (int i = 0; i < 6; i++) C[i] = (float)i;
    mn_sgemm(true, true, 2, 3, 0, 1.0f, A, 2, B, 1, 0.5f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 0.5f * (float)i);

    for (int i = 0; i < 6; i++) C[i] = (float)i;
    mn_sgemm(false, false, 0, 3, 2, 1.0f, A, 2, B, 3, 0.0f, C, 3);
    mn_sgemm(false, false, 2, 0, 2, 1.0f, A, 2, B, 3, 0.0f, C, 3);
    mn_sgemm(false, false, 0, 0, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == (float)i);

    for (int i = 0; i < 6; i++) C[i] = (float)i;
    mn_sgemm(false, false, 2, 3, 2, 0.0f, NULL, 2, NULL, 3, 2.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 2.0f * (float)i);

    /* A 1×1×1 product and the transposed-vector case. */
    C[0] = NAN;
    mn_sgemm(false, false, 1, 1, 1, 3.0f, A + 1, 1, B + 2, 1, 0.0f, C, 1);
    assert_true(C[0] == 18.0f);
}

/* mn_sgemm_bias gives exactly what a C pre-filled with the bias rows and beta = 1 gives (the
 * rounding mnt_dense relied on), over block edges, transposes, both threads and K = 0. */
static void bias_row_equals_prefilled_c(void **state) {
    (void)state;
    static const int64_t shapes[][3] = {
        {33, 257, 7}, {257, 33, 1000}, {300, 70, 400}, {50, 50, 32}, {3200, 128, 128}, {7, 5, 0},
    };
    int bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int tr = 0; tr < 4; tr++) {
                bool ta = tr & 1, tb = tr >> 1;
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], pad = 2;
                int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
                float *A = rand_matrix(ta ? K : M, lda), *B = rand_matrix(tb ? N : K, ldb);
                float *bias = rand_matrix(1, N), *C = rand_matrix(M, ldc), *want = rand_matrix(M, ldc);
                for (int64_t i = 0; i < M * ldc; i++) C[i] = want[i];
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        want[i * ldc + j] = bias[j];
                        C[i * ldc + j] = NAN; /* beta = 0: never read */
                    }
                mn_sgemm(ta, tb, M, N, K, -1.25f, A, lda, B, ldb, 1.0f, want, ldc);
                mn_sgemm_bias(ta, tb, M, N, K, -1.25f, A, lda, B, ldb, 0.0f, bias, C, ldc);
                for (int64_t i = 0; i < M * ldc; i++) bad += !(C[i] == want[i]);
                free(A);
                free(B);
                free(bias);
                free(C);
                free(want);
            }
    }
    assert_int_equal(bad, 0);
}

/* Buffers are per thread and reusable: releasing and calling again works. */
static void release_buffers_then_reuse(void **state) {
    (void)state;
    gemm_case t = {.M = 40, .N = 50, .K = 60, .alpha = 1.0f, .beta = 0.0f, .pad = 2};
    assert_int_equal(check_case(&t), 0);
    mn_sgemm_release_buffers();
    assert_int_equal(check_case(&t), 0);
}

#define ISA_TESTS(suffix, setup)                                                         \
    cmocka_unit_test_setup_teardown(gemm_awkward_sizes_all_transposes_##suffix, setup,   \
                                    teardown_isa),                                       \
        cmocka_unit_test_setup_teardown(gemm_alpha_beta_strides_block_edges_##suffix,    \
                                        setup, teardown_isa),                            \
        cmocka_unit_test_setup_teardown(gemm_two_threads_skinny_and_wide_##suffix, setup, \
                                        teardown_isa),                                   \
        cmocka_unit_test_setup_teardown(gemm_called_inside_parallel_region_##suffix,     \
                                        setup, teardown_isa),                            \
        cmocka_unit_test_setup_teardown(gemm_degenerate_dimensions_##suffix, setup,      \
                                        teardown_isa),                                   \
        cmocka_unit_test_setup_teardown(gemm_bias_row_equals_prefilled_c_##suffix, setup, \
                                        teardown_isa)

/* cmocka names tests after the function, so give each ISA its own wrappers. */
#define DEFINE_ISA_WRAPPERS(suffix)                                                          \
    static void gemm_awkward_sizes_all_transposes_##suffix(void **s) {                       \
        awkward_sizes_all_transposes(s);                                                     \
    }                                                                                        \
    static void gemm_alpha_beta_strides_block_edges_##suffix(void **s) {                     \
        alpha_beta_strides_block_edges(s);                                                   \
    }                                                                                        \
    static void gemm_two_threads_skinny_and_wide_##suffix(void **s) {                        \
        two_threads_skinny_and_wide(s);                                                      \
    }                                                                                        \
    static void gemm_called_inside_parallel_region_##suffix(void **s) {                      \
        called_inside_parallel_region(s);                                                    \
    }                                                                                        \
    static void gemm_degenerate_dimensions_##suffix(void **s) { degenerate_dimensions(s); }  \
    static void gemm_bias_row_equals_prefilled_c_##suffix(void **s) { bias_row_equals_prefilled_c(s); }

DEFINE_ISA_WRAPPERS(scalar)
DEFINE_ISA_WRAPPERS(avx2)
DEFINE_ISA_WRAPPERS(avx512)

static void gemm_release_buffers_then_reuse(void **s) { release_buffers_then_reuse(s); }

int main(void) {
    const struct CMUnitTest tests[] = {
        ISA_TESTS(scalar, setup_scalar),
        ISA_TESTS(avx2, setup_avx2),
        ISA_TESTS(avx512, setup_avx512),
        cmocka_unit_test(gemm_release_buffers_then_reuse),
    };
    int failed = cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
    mn_sgemm_release_buffers();
    return failed;
}
