#include "step_bench.h"

#include "tensor/tensor.h"
#include "../../examples/common/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- command line ------------------------------------------------------------------------------ */

/* Comma-separated counts from 1 to 1024; returns how many, or -1 if malformed or more than max. */
static int parse_thread_list(const char *s, int *out, int max) {
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

bool step_bench_parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static step_bench_option_result parse_shared_option(int argc, char **argv, int *i, step_bench_options *o) {
    const char *arg = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(arg, "--quiet")) {
        o->quiet = true;
    } else if (!strcmp(arg, "--cpu-time")) {
        o->cpu_time = true;
    } else if (!strcmp(arg, "--threads")) {
        if (!val || (o->n_threads = parse_thread_list(val, o->threads, STEP_BENCH_MAX_THREADS)) <= 0) {
            fprintf(stderr, "%s: --threads needs a list of counts such as 1,2 (got '%s')\n", argv[0], val ? val : "");
            return STEP_BENCH_OPTION_BAD;
        }
        for (int k = 0; k < o->n_threads; k++) o->threads[k] = cli_cap_threads(argv[0], o->threads[k]);
        (*i)++;
    } else if (!strcmp(arg, "--steps") || !strcmp(arg, "--warmup") || !strcmp(arg, "--seed")) {
        bool steps = !strcmp(arg, "--steps");
        long long v;
        if (!val || !step_bench_parse_int(val, steps ? 1 : 0, steps ? STEP_BENCH_MAX_STEPS : 2147483647LL, &v)) {
            fprintf(stderr, "%s: %s needs an integer%s (got '%s')\n", argv[0], arg,
                    steps ? " from 1 to 100000" : " >= 0", val ? val : "");
            return STEP_BENCH_OPTION_BAD;
        }
        if (steps) o->steps = (int)v;
        else if (!strcmp(arg, "--warmup")) o->warmup = (int)v;
        else o->seed = (uint64_t)v;
        (*i)++;
    } else {
        return STEP_BENCH_OPTION_NOT_MINE;
    }
    return STEP_BENCH_OPTION_TAKEN;
}

static bool is_known(const step_bench_program *p, const char *name) {
    for (int k = 0; p->known[k]; k++)
        if (!strcmp(name, p->known[k])) return true;
    return false;
}

/* The names of the runs into names (at most STEP_BENCH_MAX_NAMES, the rest ignored); returns -1
 * to go on, else the exit status. */
static int parse_command_line(const step_bench_program *p, int argc, char **argv, const char **names,
                              int *n_names) {
    *n_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            p->usage(argv[0]);
            return 0;
        }
        step_bench_option_result r = parse_shared_option(argc, argv, &i, p->shared);
        if (r == STEP_BENCH_OPTION_NOT_MINE) r = p->parse_option(argc, argv, &i, p->options);
        if (r == STEP_BENCH_OPTION_BAD) return 2;
        if (r == STEP_BENCH_OPTION_TAKEN) continue;
        if (arg[0] == '-') {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], arg);
            return 2;
        }
        if (!is_known(p, arg)) {
            fprintf(stderr, "%s: unknown %s '%s' (known: ", argv[0], p->what, arg);
            for (int k = 0; p->known[k]; k++) fprintf(stderr, "%s%s", k ? ", " : "", p->known[k]);
            fprintf(stderr, ")\n");
            return 2;
        }
        if (*n_names < STEP_BENCH_MAX_NAMES) names[(*n_names)++] = arg;
    }
    if (*n_names == 0)
        for (int k = 0; p->known[k] && k < STEP_BENCH_MAX_NAMES; k++) names[(*n_names)++] = p->known[k];
    return -1;
}

/* ---- timing ------------------------------------------------------------------------------------ */

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of all threads of the process: less disturbed by other load than wall time. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double step_bench_median_ms(const step_bench_run *run, const step_bench_options *o, float *last_loss) {
    double *times = malloc(sizeof(double) * (size_t)o->steps);
    if (!times) mn_fatal("step_bench: out of memory");
    double t_start = wall_seconds(), last_print = 0;
    int total = o->warmup + o->steps;
    float loss = 0;
    for (int s = 0; s < total; s++) {
        double t0 = o->cpu_time ? cpu_seconds() : wall_seconds();
        loss = run->step(run->ctx);
        double dt = (o->cpu_time ? cpu_seconds() : wall_seconds()) - t0;
        if (s >= o->warmup) times[s - o->warmup] = dt;
        /* progress by the wall clock, at most every 2 s, so short runs print nothing */
        double elapsed = wall_seconds() - t_start;
        if (!o->quiet && elapsed - last_print > 2.0) {
            double per_step = elapsed / (s + 1);
            char loss_text[32] = "";
            if (run->shows_loss) snprintf(loss_text, sizeof loss_text, " loss %.4f", loss);
            fprintf(stderr, "\r%s threads=%d step %d/%d%s %.1f ms/step ETA %.0f s   ", run->label, run->threads, s + 1,
                    total, loss_text, per_step * 1e3, per_step * (total - s - 1));
            last_print = elapsed;
        }
    }
    if (!o->quiet && last_print > 0) fprintf(stderr, "\r%*s\r", 79, ""); /* clear the progress line */
    qsort(times, (size_t)o->steps, sizeof *times, compare_doubles);
    double median = o->steps % 2 ? times[o->steps / 2] : 0.5 * (times[o->steps / 2 - 1] + times[o->steps / 2]);
    free(times);
    if (last_loss) *last_loss = loss;
    return median * 1e3;
}

/* ---- one child process per run ----------------------------------------------------------------- */

int step_bench_main(const step_bench_program *p, int argc, char **argv) {
    step_bench_options *o = p->shared;
    if (o->n_threads == 0) { /* every step benchmark defaults to --threads 1,2 */
        o->threads[0] = 1;
        o->threads[1] = 2;
        o->n_threads = 2;
    }
    const char *names[STEP_BENCH_MAX_NAMES];
    int n_names, parse_status = parse_command_line(p, argc, argv, names, &n_names);
    if (parse_status >= 0) return parse_status;
    int failures = 0;
    for (int c = 0; c < n_names; c++)
        for (int t = 0; t < o->n_threads; t++) {
            fflush(stdout); /* or the child would print this process's buffered output again */
            pid_t pid = fork();
            if (pid < 0) {
                fprintf(stderr, "%s: fork: %s\n", p->name, strerror(errno));
                return 1;
            }
            if (pid == 0) _exit(p->run_one(names[c], o->threads[t], p->options));
            int status;
            if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s: %s with %d thread%s failed\n", p->name, names[c], o->threads[t],
                        o->threads[t] == 1 ? "" : "s");
                failures++;
            }
        }
    return failures ? 1 : 0;
}
