/* GEMM benchmark: GFLOP/s and % of measured FMA peak for square sizes and
 * transformer-shaped products, at several OpenMP thread counts, beside
 * OpenBLAS's cblas_sgemm when it is installed. OpenBLAS is loaded with dlopen at
 * run time, so building mnemo never depends on it. */
#include "tensor/cpu.h"
#include "tensor/gemm.h"
#include "../examples/common/cli.h"

#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_LIST = 32 };

typedef struct {
    const char *label;
    int64_t M, K, N;
    int batch;      /* > 1: that many independent products, as attention does per head */
    const char *op; /* op(A), op(B) as a training step uses them: "NN", "NT" (x W^T), "TN" (weight gradients) */
} shape;

/* Products of the standard configurations (vit-fm, bert-tiny, ...), forward and backward:
 * rows = tokens in the batch, K and N = model widths, the MLM decoder over the vocabulary,
 * and per-head attention products (batch = batch size x heads). */
static const shape transformer_shapes[] = {
    {"3200x128x384", 3200, 128, 384, 1, "NN"},         {"3200x384x128", 3200, 384, 128, 1, "NN"},
    {"3200x128x512", 3200, 128, 512, 1, "NT"},         {"3200x512x128", 3200, 512, 128, 1, "NT"},
    {"512x3200x128", 512, 3200, 128, 1, "TN"},      {"4096x128x512", 4096, 128, 512, 1, "NT"},
    {"4096x512x128", 4096, 512, 128, 1, "NN"},         {"128x4096x512", 128, 4096, 512, 1, "TN"},
    {"1576x192x768", 1576, 192, 768, 1, "NT"},         {"1576x768x192", 1576, 768, 192, 1, "NT"},
    {"192x1576x768", 192, 1576, 768, 1, "TN"},      {"614x128x30522", 614, 128, 30522, 1, "NT"},
    {"614x30522x128", 614, 30522, 128, 1, "NN"},       {"30522x614x128", 30522, 614, 128, 1, "TN"},
    {"4096x128x30522", 4096, 128, 30522, 1, "NT"},     {"256x 50x32x50", 50, 32, 50, 256, "NT"},
    {"256x 50x50x32", 50, 50, 32, 256, "NN"},          {"64x 128x64x128", 128, 64, 128, 64, "NT"},
    {"64x 128x128x64", 128, 128, 64, 64, "NN"},        {"24x 197x64x197", 197, 64, 197, 24, "NT"},
    {"24x 197x197x64", 197, 197, 64, 24, "NN"},
};

/* ---- OpenBLAS, when present ---------------------------------------------- */

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                               int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*blas_set_threads_fn)(int n);

static cblas_sgemm_fn blas_sgemm;
static blas_set_threads_fn blas_set_threads;
static char blas_name[128] = "n/a";

static void blas_load(void) {
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    blas_sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    blas_set_threads = (blas_set_threads_fn)dlsym(h, "openblas_set_num_threads");
    char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
    if (!blas_sgemm || !blas_set_threads) {
        blas_sgemm = NULL;
        return;
    }
    snprintf(blas_name, sizeof blas_name, "%s", config ? config() : "OpenBLAS");
}

static void usage(const char *prog) {
    printf("usage: %s [options]\n"
           "  --threads LIST   OpenMP thread counts, comma separated (default 1,2)\n"
           "  --sizes LIST     square sizes M=N=K (default 256,512,1024,2048)\n"
           "  --shapes         also run transformer shapes (default on)\n"
           "  --no-shapes      square sizes only\n"
           "  --reps N         timed repetitions after one warm-up; median reported (default 5)\n"
           "  --trans XY       op(A), op(B): NN, NT, TN or TT for every product (default: NN for\n"
           "                   the square sizes, each transformer shape's own, shown after its label)\n"
           "  --isa NAME       cap the kernel level: scalar, avx2, avx512\n"
           "  --no-blas        skip the OpenBLAS comparison\n"
           "  --cpu-time       time with the process CPU clock (all threads) instead of the wall\n"
           "                   clock: for comparing 1-thread runs on a busy machine\n"
           "  --help           this text\n"
           "Shapes are M×K×N. The batched shape runs one product per batch entry; with\n"
           "more than one thread the batch is split by an omp parallel for, so each\n"
           "mn_sgemm call runs on its own thread.\n"
           "When libopenblas.so.0 can be loaded, each row also shows cblas_sgemm on the same\n"
           "operands and threads (batched shapes: one single-threaded call per entry, split\n"
           "the same way) and mnemo's speed relative to it; otherwise that column says n/a.\n",
           prog);
}

static int parse_list(const char *s, int64_t *out) {
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static bool g_cpu_time; /* --cpu-time: process CPU time instead of wall time */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(g_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *alloc_filled(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

static void one_product(bool use_blas, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float *C) {
    if (use_blas)
        blas_sgemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)M,
                   (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)N);
    else
        mn_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
}

static void run_once(const shape *s, bool ta, bool tb, int threads, bool use_blas, float *A, float *B, float *C) {
    const int64_t lda = ta ? s->M : s->K, ldb = tb ? s->K : s->N;
    const size_t a_stride = (size_t)(s->M * s->K), b_stride = (size_t)(s->K * s->N);
    const size_t c_stride = (size_t)(s->M * s->N);
    if (s->batch == 1) {
        one_product(use_blas, ta, tb, s->M, s->N, s->K, A, lda, B, ldb, C);
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int b = 0; b < s->batch; b++)
        one_product(use_blas, ta, tb, s->M, s->N, s->K, A + b * a_stride, lda, B + b * b_stride, ldb,
                    C + b * c_stride);
}

/* Median seconds of reps runs after one warm-up (page faults, buffers, thread pool). */
static double time_runs(const shape *s, bool ta, bool tb, int threads, bool use_blas, int reps, float *A, float *B,
                        float *C) {
    double times[256];
    if (reps > 256) reps = 256;
    if (use_blas) blas_set_threads(s->batch == 1 ? threads : 1);
    run_once(s, ta, tb, threads, use_blas, A, B, C);
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        run_once(s, ta, tb, threads, use_blas, A, B, C);
        times[r] = now_seconds() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp_double);
    return reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
}

static void bench_shape(const shape *s, bool ta, bool tb, int threads, int reps, double peak, bool with_blas) {
    const size_t batch = (size_t)s->batch, nc = batch * (size_t)(s->M * s->N);
    float *A = alloc_filled(batch * (size_t)(s->M * s->K));
    float *B = alloc_filled(batch * (size_t)(s->K * s->N));
    float *C = alloc_filled(nc);
    omp_set_num_threads(threads);
    const double flops = 2.0 * (double)s->batch * (double)s->M * (double)s->N * (double)s->K;
    const double gflops = flops / time_runs(s, ta, tb, threads, false, reps, A, B, C) * 1e-9;
    char label[48];
    snprintf(label, sizeof label, "%s %c%c", s->label, ta ? 'T' : 'N', tb ? 'T' : 'N');
    printf("%-22s %7d %9.1f %7.1f%%", label, threads, gflops, 100.0 * gflops / peak);
    if (with_blas) {
        /* same operands: also a check that both compute the same product */
        float *C_ours = alloc_filled(nc);
        memcpy(C_ours, C, nc * sizeof(float));
        const double blas_gflops = flops / time_runs(s, ta, tb, threads, true, reps, A, B, C) * 1e-9;
        double worst = 0, scale = 0;
        for (size_t i = 0; i < nc; i++) {
            scale = fmax(scale, fabs((double)C[i]));
            worst = fmax(worst, fabs((double)C[i] - (double)C_ours[i]));
        }
        printf(" %9.1f %7.1f%% %6.2fx%s", blas_gflops, 100.0 * blas_gflops / peak, gflops / blas_gflops,
               worst > 1e-4 * (scale + 1e-30) * sqrt((double)s->K) ? "  RESULTS DIFFER" : "");
        free(C_ours);
    } else {
        printf(" %9s %8s %7s", "n/a", "n/a", "n/a");
    }
    printf("\n");
    fflush(stdout);
    free(A);
    free(B);
    free(C);
}

int main(int argc, char **argv) {
    int64_t threads[MAX_LIST] = {1, 2}, sizes[MAX_LIST] = {256, 512, 1024, 2048};
    int n_threads = 2, n_sizes = 4, reps = 5;
    bool shapes = true, ta = false, tb = false, with_blas = true, trans_given = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(arg, "--shapes")) {
            shapes = true;
        } else if (!strcmp(arg, "--no-shapes")) {
            shapes = false;
        } else if (!strcmp(arg, "--cpu-time")) {
            g_cpu_time = true;
        } else if (!strcmp(arg, "--no-blas")) {
            with_blas = false;
        } else if (val && !strcmp(arg, "--threads")) {
            if ((n_threads = parse_list(val, threads)) <= 0) goto bad;
            for (int k = 0; k < n_threads; k++) threads[k] = cli_cap_threads("gemm", (long)threads[k]);
            i++;
        } else if (val && !strcmp(arg, "--sizes")) {
            if ((n_sizes = parse_list(val, sizes)) <= 0) goto bad;
            i++;
        } else if (val && !strcmp(arg, "--reps")) {
            if ((reps = atoi(val)) <= 0) goto bad;
            i++;
        } else if (val && !strcmp(arg, "--trans")) {
            if (strlen(val) != 2 || !strchr("NT", val[0]) || !strchr("NT", val[1])) goto bad;
            ta = val[0] == 'T';
            tb = val[1] == 'T';
            trans_given = true;
            i++;
        } else if (val && !strcmp(arg, "--isa")) {
            mn_isa want = !strcmp(val, "scalar") ? MN_ISA_SCALAR
                          : !strcmp(val, "avx2") ? MN_ISA_AVX2
                          : !strcmp(val, "avx512") ? MN_ISA_AVX512
                                                   : (mn_isa)-1;
            if ((int)want < 0) goto bad;
            mn_cpu_set_isa(want);
            i++;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "%s: bad or incomplete option '%s' (see --help)\n", argv[0], arg);
        return 2;
    }

    if (with_blas) blas_load();
    with_blas = with_blas && blas_sgemm;
    printf("mnemo sgemm benchmark: isa %s, op %c%c, median of %d reps; reference: %s\n",
           mn_isa_name(mn_cpu_isa()), ta ? 'T' : 'N', tb ? 'T' : 'N', reps, with_blas ? blas_name : "n/a");
    double peak[MAX_LIST];
    for (int t = 0; t < n_threads; t++) {
        peak[t] = mn_fma_peak_gflops((int)threads[t], 1000); /* long trials: the best of five resists a noisy neighbour */
        printf("FMA peak, %lld thread%s: %.1f GFLOP/s\n", (long long)threads[t],
               threads[t] == 1 ? "" : "s", peak[t]);
    }
    printf("\n%-22s %7s %9s %8s %9s %8s %7s\n", "MxKxN op", "threads", "GFLOP/s", "%peak", "BLAS", "%peak",
           "vs BLAS");

    for (int i = 0; i < n_sizes; i++) {
        char label[32];
        snprintf(label, sizeof label, "%lld^3", (long long)sizes[i]);
        shape s = {label, sizes[i], sizes[i], sizes[i], 1, "NN"};
        for (int t = 0; t < n_threads; t++) bench_shape(&s, ta, tb, (int)threads[t], reps, peak[t], with_blas);
    }
    if (shapes)
        for (size_t i = 0; i < sizeof transformer_shapes / sizeof transformer_shapes[0]; i++) {
            const shape *s = &transformer_shapes[i];
            bool sa = trans_given ? ta : s->op[0] == 'T', sb = trans_given ? tb : s->op[1] == 'T';
            for (int t = 0; t < n_threads; t++) bench_shape(s, sa, sb, (int)threads[t], reps, peak[t], with_blas);
        }
    return 0;
}
