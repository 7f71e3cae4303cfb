/* What the step benchmarks (train_step, optim_step) share: their command line (the names to run,
 * --threads, --steps, --warmup, --seed, --cpu-time, --quiet, errors for bad arguments), one child
 * process per run, and the timed step loop that reports the median milliseconds per step. */
#ifndef MN_BENCH_STEP_BENCH_H
#define MN_BENCH_STEP_BENCH_H

#include <stdbool.h>
#include <stdint.h>

enum { STEP_BENCH_MAX_THREADS = 16, STEP_BENCH_MAX_STEPS = 100000, STEP_BENCH_MAX_NAMES = 64 };

typedef struct {
    int threads[STEP_BENCH_MAX_THREADS]; /* OpenMP thread counts, one run each */
    int n_threads;
    int steps, warmup; /* timed steps (the median is reported) after untimed ones */
    uint64_t seed;
    bool cpu_time; /* time with the process CPU clock (all threads) instead of the wall clock */
    bool quiet;    /* no progress line on stderr */
} step_bench_options;

typedef enum {
    STEP_BENCH_OPTION_NOT_MINE, /* argv[*i] is not an option of this parser */
    STEP_BENCH_OPTION_TAKEN,    /* parsed (with its value, if any); *i is at its last word */
    STEP_BENCH_OPTION_BAD,      /* an error naming the option was printed; exit with status 2 */
} step_bench_option_result;

/* A step benchmark: what it runs, and its own options beside the shared ones. */
typedef struct {
    const char *name;         /* "train_step": names the program in the messages about runs */
    const char *what;         /* "configuration": what a positional argument selects, for messages */
    const char *const *known; /* the names it can run, NULL-terminated; all of them when none is given */
    void (*usage)(const char *prog); /* prints --help */
    void *options;                   /* the program's options, with their defaults */
    step_bench_options *shared;      /* their part that every step benchmark has (threads 1,2 if n_threads is 0) */
    /* Parses argv[*i] if it is an option of this program alone, into the program's options. */
    step_bench_option_result (*parse_option)(int argc, char **argv, int *i, void *options);
    /* Runs one (name, threads) pair in the child and prints its line; returns the child's exit status. */
    int (*run_one)(const char *name, int threads, const void *options);
} step_bench_program;

/* The whole program: parses the command line into the options, then runs every chosen name at
 * every thread count, each in a child process of its own, so that a run's peak memory is its own
 * and this process never starts OpenMP threads before forking. Returns the exit status: 0 after
 * --help or if every run succeeded, 1 if one failed, 2 for bad arguments. */
int step_bench_main(const step_bench_program *program, int argc, char **argv);

/* Strict decimal integer in [lo, hi]: the whole string must be the number. */
bool step_bench_parse_int(const char *s, long long lo, long long hi, long long *out);

/* One step of the timed work; returns its loss (shown in the progress line when the run has one). */
typedef float (*step_bench_step_fn)(void *ctx);

typedef struct {
    const char *label; /* name of the run in the progress line */
    int threads;
    step_bench_step_fn step;
    void *ctx;
    bool shows_loss; /* the progress line shows the step's loss */
} step_bench_run;

/* Runs o->warmup + o->steps steps and returns the median milliseconds of the timed ones; the
 * loss of the last step goes to *last_loss (may be NULL). */
double step_bench_median_ms(const step_bench_run *run, const step_bench_options *o, float *last_loss);

#endif
