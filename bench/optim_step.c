/* Optimizer-step benchmark (spec/benchmarks.md, "Optimizer steps"): milliseconds per step and
 * state bytes per parameter for SGD, Adam and the learned optimizers (LSTM, Mnemosyne-C,
 * Mnemosyne-T, freshly initialised: the weights do not change the cost) over N parameters.
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

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 16, MAX_STEPS = 100000, WIDTH = 768 };

static const char *const all_optimizers[] = {"sgd", "adam", "lstm", "mnemosyne-c", "mnemosyne-t"};
enum { N_OPTIMIZERS = sizeof all_optimizers / sizeof all_optimizers[0] };

typedef struct {
    int64_t params;
    int steps, warmup;
    uint64_t seed;
    bool graph, cpu_time, quiet;
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
           "  NAME threads=N params=P ms_per_step=X state_bytes_per_param=Y [graph_ms_per_step=Z]\n"
           "SGD has momentum 0.9; the learned optimizers are freshly initialised (seed 0).\n",
           prog);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

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

/* Median milliseconds per step over o->steps timed steps (after o->warmup). */
static double time_steps(mn_optimizer *opt, const char *label, int threads, const options *o) {
    double *times = malloc(sizeof(double) * (size_t)o->steps);
    if (!times) mn_fatal("optim_step: out of memory");
    double t_start = now_seconds(), last_print = 0;
    int total = o->warmup + o->steps;
    for (int s = 0; s < total; s++) {
        double t0 = o->cpu_time ? cpu_seconds() : now_seconds();
        mn_optim_step(opt);
        double dt = (o->cpu_time ? cpu_seconds() : now_seconds()) - t0;
        if (s >= o->warmup) times[s - o->warmup] = dt;
        double elapsed = now_seconds() - t_start;
        if (!o->quiet && elapsed - last_print > 2.0) {
            double per_step = elapsed / (s + 1);
            fprintf(stderr, "\r%s threads=%d step %d/%d %.1f ms/step ETA %.0f s   ", label, threads, s + 1, total,
                    per_step * 1e3, per_step * (total - s - 1));
            last_print = elapsed;
        }
    }
    if (!o->quiet && last_print > 0) fprintf(stderr, "\r%*s\r", 79, "");
    qsort(times, (size_t)o->steps, sizeof *times, cmp_double);
    double median = o->steps % 2 ? times[o->steps / 2] : 0.5 * (times[o->steps / 2 - 1] + times[o->steps / 2]);
    free(times);
    return median * 1e3;
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
static int run_one(const char *name, int threads, const options *o) {
    omp_set_num_threads(threads);
    mn_params ps = {0};
    make_params(o->params, o->seed, &ps);
    mn_lopt *lopt;
    mn_optimizer *opt = make_optimizer(name, &ps, &lopt);
    double ms = time_steps(opt, name, threads, o);
    double state = (double)mn_optim_state_bytes(opt) / (double)o->params;
    bool finite = params_finite(&ps);
    mn_optim_free(opt);
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
    if (graph_ms >= 0) printf(" graph_ms_per_step=%.2f", graph_ms);
    printf("\n");
    fflush(stdout);
    mn_lopt_free(lopt);
    mn_params_free(&ps);
    if (!finite) fprintf(stderr, "optim_step: %s: the parameters are not finite after the steps\n", name);
    return finite ? 0 : 1;
}

/* ---- command line ------------------------------------------------------------------------------ */

static int parse_int_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 1024 || n == max || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool known_optimizer(const char *name) {
    for (int i = 0; i < N_OPTIMIZERS; i++)
        if (!strcmp(name, all_optimizers[i])) return true;
    return false;
}

int main(int argc, char **argv) {
    options o = {.params = 10000000, .steps = 5, .warmup = 1, .seed = 0};
    int threads[MAX_THREADS] = {1, 2}, n_threads = 2;
    const char *names[64];
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long long v;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(arg, "--quiet")) {
            o.quiet = true;
        } else if (!strcmp(arg, "--cpu-time")) {
            o.cpu_time = true;
        } else if (!strcmp(arg, "--graph")) {
            o.graph = true;
        } else if (!strcmp(arg, "--threads")) {
            if (!val || (n_threads = parse_int_list(val, threads, MAX_THREADS)) <= 0) {
                fprintf(stderr, "%s: --threads needs a list of counts such as 1,2 (got '%s')\n", argv[0],
                        val ? val : "");
                return 2;
            }
            i++;
        } else if (!strcmp(arg, "--params")) {
            if (!val || !parse_int(val, 1, 2000000000LL, &v)) {
                fprintf(stderr, "%s: --params needs a count from 1 to 2000000000 (got '%s')\n", argv[0],
                        val ? val : "");
                return 2;
            }
            o.params = v;
            i++;
        } else if (!strcmp(arg, "--steps") || !strcmp(arg, "--warmup") || !strcmp(arg, "--seed")) {
            bool steps = !strcmp(arg, "--steps");
            if (!val || !parse_int(val, steps ? 1 : 0, steps ? MAX_STEPS : 2147483647LL, &v)) {
                fprintf(stderr, "%s: %s needs an integer%s (got '%s')\n", argv[0], arg,
                        steps ? " from 1 to 100000" : " >= 0", val ? val : "");
                return 2;
            }
            if (steps) o.steps = (int)v;
            else if (!strcmp(arg, "--warmup")) o.warmup = (int)v;
            else o.seed = (uint64_t)v;
            i++;
        } else if (arg[0] == '-') {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], arg);
            return 2;
        } else if (!known_optimizer(arg)) {
            fprintf(stderr, "%s: unknown optimizer '%s' (known: sgd, adam, lstm, mnemosyne-c, mnemosyne-t)\n",
                    argv[0], arg);
            return 2;
        } else if (n_names < 64) {
            names[n_names++] = arg;
        }
    }
    if (n_names == 0)
        for (int i = 0; i < N_OPTIMIZERS; i++) names[n_names++] = all_optimizers[i];

    /* One child per run: fork before this process starts any OpenMP threads. */
    int failures = 0;
    for (int c = 0; c < n_names; c++)
        for (int t = 0; t < n_threads; t++) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) {
                perror("optim_step: fork");
                return 1;
            }
            if (pid == 0) _exit(run_one(names[c], threads[t], &o));
            int status;
            if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "optim_step: %s with %d thread%s failed\n", names[c], threads[t],
                        threads[t] == 1 ? "" : "s");
                failures++;
            }
        }
    return failures ? 1 : 0;
}
