/* What every training program shares: the common options (optimizer, lr,
 * schedule, steps, seed, threads, save/resume, metrics log), building the
 * optimizer from them, the JSON-lines metrics log, and saving/resuming the
 * trainer state (optimizer state + step + data position) next to the model. */
#ifndef MN_RUN_H
#define MN_RUN_H

#include "cli.h"
#include "mnemo.h"

typedef struct {
    const char *optimizer;  /* "adamw", "adam", "sgd", or a full spec "adamw:1e-3:0.05", "mnemosyne-t" ... */
    const char *optimizer_checkpoint; /* learned optimizers: weights to use instead of the built-in ones */
    double lr;              /* used when optimizer names no lr; learned optimizers: their step scale */
    double weight_decay;    /* AdamW / SGD decoupled-or-L2 decay; < 0: the optimizer's default */
    const char *schedule;   /* constant | linear | cosine */
    long warmup;            /* warm-up steps (a program's default is shortened on short runs) */
    double warmup_ratio;    /* > 0: warm-up as this share of the run's steps instead */
    bool lr_given, weight_decay_given, warmup_given; /* on the command line (set by run_parse_command_line) */
    double clip;            /* global gradient-norm clip; 0: off */
    long steps, epochs;     /* steps > 0 wins over epochs */
    long batch;
    long seed, threads;
    const char *save_dir, *resume_dir, *log_path; /* resume_dir: checked and resolved (mn_ckpt_dir_open) */
    char resume_resolved[4096];
    long log_every;         /* steps between progress/metrics lines */
    long save_every;        /* steps between checkpoints to --save; 0: at the end only */
    long stop_at;           /* stop (and save) after this step; 0: run to the end */
} run_opts;

/* Appends --save-every, --stop-at and the common options to the program's own (spec->opts has room
 * for cap), parses argv, applies --threads, checks the combination and makes stdout line-buffered
 * (progress goes to stderr: a log keeps the two in order). Returns -1 to go on, else the exit
 * status: 0 after --help, 2 after a bad option (printed). */
int run_parse_command_line(cli_spec *spec, int cap, run_opts *r, int argc, char **argv);
/* Prints "PROG: MSG" to stderr and returns status: return run_fail(prog, err.msg, 1). */
int run_fail(const char *prog, const char *msg, int status);
/* The optimizer spec from --optimizer/--lr/--weight-decay ("adamw" + lr 1e-3 -> "adamw:0.001"), or for a
 * learned optimizer from --optimizer/--optimizer-checkpoint ("mnemosyne-t" + FILE -> "mnemosyne-t:FILE"). */
mn_optimizer *run_make_optimizer(const run_opts *r, const mn_params *params, mn_err *err);
/* lr for this step from --schedule over total steps with warmup steps of warm-up; applied to the
 * optimizer. A learned optimizer takes the schedule as a multiplier of its step scale: --lr when
 * given, else 1 (its meta-trained step). */
void run_apply_schedule(const run_opts *r, mn_optimizer *o, int64_t step, int64_t total, int64_t warmup);
/* The warm-up steps of a total-step run: --warmup-ratio x total, --warmup as given (with a warning
 * when it spans the whole run), or the program's default shortened to a tenth of a short run (said). */
int64_t run_warmup_steps(const run_opts *r, int64_t total, const char *prog);
/* The weight decay the optimizer gets: AdamW's (its spec, --weight-decay or 0.01), 0 for Adam and SGD,
 * -1 for the learned optimizers (they have none). */
double run_weight_decay(const run_opts *r);
/* What the run uses, for banners and logs: "adamw lr 0.001 wd 0.05", "mnemosyne-t lr scale 1, built-in
 * weights". */
void run_describe_optimizer(const run_opts *r, char *buf, size_t size);
/* Total steps from --steps or --epochs x batches_per_epoch. */
int64_t run_total_steps(const run_opts *r, int64_t batches_per_epoch);
/* One evaluation batch over n samples in order: I32 [B] holding at, at + 1, ..., B = min(batch, n - at). */
mn_tensor *run_eval_rows(int64_t at, int64_t batch, int64_t n);

/* JSON-lines metrics: one object per call, e.g.
 *   metrics_write(&m, "{\"step\": %lld, \"loss\": %.6f}", step, loss); */
typedef struct {
    FILE *f;
    char path[4096];
    int write_errno; /* the first failed write's errno (a full disk), 0 while every write succeeded */
} metrics_log;
bool metrics_open(metrics_log *m, const char *path, bool append, mn_err *err); /* path NULL: disabled */
/* A failed write is reported on stderr once; the run goes on (its checkpoints may still fit). */
void metrics_write(metrics_log *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* False when a write or the close failed (then the message is on stderr). */
bool metrics_close(metrics_log *m);

/* Trainer state in DIR: optimizer.safetensors (mn_optim_save) and trainer_state.json
 * ({"step": S, "epoch": E, "batch": B, "best_metric": X}); atomic. */
typedef struct {
    int64_t step, epoch, batch;
    double best_metric;
} run_state;
bool run_save_state(const char *dir, const run_state *s, const mn_optimizer *o, mn_err *err);
bool run_load_state(const char *dir, run_state *s, mn_optimizer *o, mn_err *err);

#endif
