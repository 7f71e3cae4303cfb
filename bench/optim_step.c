/* Optimizer-step benchmark: milliseconds per step and state bytes per parameter for SGD, Adam
 * and the learned optimizers (LSTM, Mnemosyne-C, Mnemosyne-T, freshly initialised: the weights
 * do not change the cost) over N parameters.
 * The learned optimizers also report their counted multiply-adds per parameter, the achieved
 * GFLOP/s and the percentage of the FMA peak measured at the same thread count.
 *
 * The parameters are split like a Transformer's: 768 x 768 matrices, each followed by a
 * 768-vector (a bias), the last matrix cut short so the total is exactly N. The gradients are
 * fixed random tensors; only mn_optim_step is timed. Each optimizer and thread count runs in its
 * own child process. Output, one line per run on stdout:
 *     NAME threads=N params=P ms_per_step=X state_bytes_per_param=Y
 * With --graph the learned optimizers are also timed on their graph path (the ordinary
 * differentiable ops the meta-training uses, forced with MNEMO_LOPT_FAST=0), appended to the line
 * as graph_ms_per_step=Z. */
#include "mnemo.h"

#include "common/step_bench.h"
#include "tensor/gemm.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 768 };

static const char *const all_optimizers[] = {"sgd", "adam", "lstm", "mnemosyne-c", "mnemosyne-t", NULL};

typedef struct {
    step_bench_options shared; /* threads, steps, warmup, seed, cpu_time, quiet */
    int64_t params;
    bool graph;
} options;

static void usage(const char *prog) {
    printf("usage: %s [options] [OPTIMIZER...]\n"
           "Times optimizer steps (mn_optim_step) over N parameters with fixed random gradients.\n"
           "OPTIMIZER: sgd, adam, lstm, mnemosyne-c, mnemosyne-t (default: all five)\n"
           "  --params N       number of parameters (default 10000000)\n"
           "  --threads LIST   OpenMP thread counts, comma separated (default 1,2)\n"
           "  --steps N        timed steps; the median is reported (default 5)\n"
           "  --warmup N       untimed steps first (default 1)\n"
           "  --graph          also time the learned optimizers' graph path (ordinary autograd ops, as\n"
           "                   in meta-training; MNEMO_LOPT_FAST=0). Slow, and memory-hungry: Mnemosyne-C\n"
           "                   needs several GB per million parameters\n"
           "  --seed N         seed of the gradients (default 0)\n"
           "  --cpu-time       report the process CPU time per step (all threads) instead of wall time;\n"
           "                   for comparing single-thread runs on a busy machine\n"
           "  --quiet          no progress on stderr\n"
           "  --help           this text\n"
           "Output, one line per optimizer and thread count:\n"
           "  NAME threads=N params=P ms_per_step=X state_bytes_per_param=Y [LEARNED] [graph_ms_per_step=Z]\n"
           "LEARNED (learned optimizers): macs_per_param=M gflops=G peak_gflops=F peak_pct=Q, where M counts\n"
           "  the multiply-adds of the network's dense products per parameter (nonlinearities and norms are\n"
           "  not counted), G = 2 M P / time and F is this machine's FMA peak measured at N threads.\n"
           "SGD has momentum 0.9; the learned optimizers are freshly initialised (seed 0).\n",
           prog);
}

/* The defaults; the command line changes them. */
static options opts = {.shared = {.steps = 5, .warmup = 1}, .params = 10000000};

/* Transformer-like parameter tensors totalling n, each with a fixed gradient of about 1e-3. */
static void make_params(int64_t n, uint64_t seed, mn_params *ps) {
    mn_rng rng = mn_rng_new(seed);
    char name[32];
    for (int64_t left = n, i = 0; left > 0; i++) {
        int64_t rows = left >= (int64_t)WIDTH * WIDTH ? WIDTH : left / WIDTH;
        mn_tensor *p;
        if (i % 2 == 0 && rows > 0) p = mn_zeros(MN_SHAPE(rows, WIDTH));
        else p = mn_zeros(MN_SHAPE(left < WIDTH ? left : WIDTH));
        left -= mn_numel(p);
        mn_requires_grad(p, true);
        p->grad = mn_randn_gen(&rng, p->ndim, p->shape, 0.0f, 1e-3f);
        snprintf(name, sizeof name, "p%lld", (long long)i);
        mn_params_add(ps, NULL, name, p, false);
        mn_release(p); /* the list holds it */
    }
}

static mn_optimizer *make_optimizer(const char *name, const mn_params *ps, mn_lopt **lopt) {
    *lopt = NULL;
    if (!strcmp(name, "sgd")) return mn_sgd_new(ps, 0.01f, 0.9f, false, 0.0f);
    if (!strcmp(name, "adam")) return mn_adam_new(ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    mn_lopt_kind kind;
    if (!mn_lopt_kind_parse(name, &kind)) return NULL;
    *lopt = mn_lopt_new(kind, 0);
    return mn_lopt_optimizer(*lopt, ps, 1.0f);
}

static float optimizer_step(void *opt) {
    mn_optim_step(opt);
    return 0; /* no loss to show */
}

/* Median milliseconds per step over the timed steps (after the warmup ones). */
static double time_steps(mn_optimizer *opt, const char *label, int threads, const options *o) {
    step_bench_run run = {.label = label, .threads = threads, .step = optimizer_step, .ctx = opt};
    return step_bench_median_ms(&run, &o->shared, NULL);
}

/* The first parameter's values must stay finite (a broken step would show as NaN). */
static bool params_finite(const mn_params *ps) {
    for (int i = 0; i < ps->count; i++) {
        const float *d = mn_data(ps->items[i].tensor);
        for (int64_t j = 0; j < mn_numel(ps->items[i].tensor); j++)
            if (!(d[j] - d[j] == 0)) return false;
    }
    return true;
}

/* Runs one optimizer at one thread count and prints its line; returns the exit status. */
static int run_one(const char *name, int threads, const void *ctx) {
    const options *o = ctx;
    omp_set_num_threads(threads);
    mn_params ps = {0};
    make_params(o->params, o->shared.seed, &ps);
    mn_lopt *lopt;
    mn_optimizer *opt = make_optimizer(name, &ps, &lopt);
    double ms = time_steps(opt, name, threads, o);
    double state = (double)mn_optim_state_bytes(opt) / (double)o->params;
    bool finite = params_finite(&ps);
    mn_optim_free(opt);
    /* the learned optimizers' counted arithmetic against this machine's FMA peak at this thread count */
    double macs = lopt ? mn_lopt_macs_per_coordinate(mn_lopt_get_config(lopt)) : 0, gflops = 0, peak = 0;
    if (lopt) {
        gflops = 2.0 * macs * (double)o->params / (ms * 1e6);
        peak = mn_fma_peak_gflops(threads, 300);
    }
    double graph_ms = -1;
    if (o->graph && lopt) { /* a fresh optimizer on the graph path */
        setenv("MNEMO_LOPT_FAST", "0", 1);
        opt = mn_lopt_optimizer(lopt, &ps, 1.0f);
        graph_ms = time_steps(opt, name, threads, o);
        mn_optim_free(opt);
        unsetenv("MNEMO_LOPT_FAST");
    }
    printf("%s threads=%d params=%lld ms_per_step=%.2f state_bytes_per_param=%.2f", name, threads,
           (long long)o->params, ms, state);
    if (lopt)
        printf(" macs_per_param=%.0f gflops=%.1f peak_gflops=%.1f peak_pct=%.1f", macs, gflops, peak,
               100.0 * gflops / peak);
    if (graph_ms >= 0) printf(" graph_ms_per_step=%.2f", graph_ms);
    printf("\n");
    fflush(stdout);
    mn_lopt_free(lopt);
    mn_params_free(&ps);
    if (!finite) fprintf(stderr, "optim_step: %s: the parameters are not finite after the steps\n", name);
    return finite ? 0 : 1;
}

/* ---- command line ------------------------------------------------------------------------------ */

static step_bench_option_result parse_option(int argc, char **argv, int *i, void *program_options) {
    options *o = program_options;
    const char *arg = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long v;
    if (!strcmp(arg, "--graph")) {
        o->graph = true;
    } else if (!strcmp(arg, "--params")) {
        if (!val || !step_bench_parse_int(val, 1, 2000000000LL, &v)) {
            fprintf(stderr, "%s: --params needs a count from 1 to 2000000000 (got '%s')\n", argv[0], val ? val : "");
            return STEP_BENCH_OPTION_BAD;
        }
        o->params = v;
        (*i)++;
    } else {
        return STEP_BENCH_OPTION_NOT_MINE;
    }
    return STEP_BENCH_OPTION_TAKEN;
}

/* The optimizers named on the command line (default: all), each at every thread count. */
static const step_bench_program program = {.name = "optim_step", .what = "optimizer", .known = all_optimizers,
    .usage = usage, .options = &opts, .shared = &opts.shared, .parse_option = parse_option, .run_one = run_one};

int main(int argc, char **argv) { return step_bench_main(&program, argc, argv); }
