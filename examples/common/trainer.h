/* The bookkeeping of a resumable training loop, shared by the loops of classify.c, bert_pretrain
 * and bert_finetune: the optimizer, the batch order, the JSON-lines metrics log and the curves of
 * a run; resuming from --resume, the last step of this run (--stop-at), the checks and updates
 * around each step, and the trainer's part of a checkpoint to --save. The model, its forward pass
 * and its files stay with the program. */
#ifndef MN_TRAINER_H
#define MN_TRAINER_H

#include "run.h"
#include "trainlog.h"

typedef struct {
    const char *prog;
    const run_opts *r;
    mn_optimizer *opt;  /* from --optimizer over the model's parameters (trainer_start) */
    train_args args;    /* the options a resume must repeat: the program's, then run.h's (trainer_start) */
    mn_batcher bat;
    metrics_log log;
    /* the curves drawn at the end, saved with checkpoints and restored by a resume; x is the step
     * (or epoch), training values are means over a log interval */
    curve train_loss, train_accuracy, eval_loss, eval_accuracy;
    char eval_names[2][64]; /* the evaluation curves' names */
    int64_t per_epoch;  /* batches per epoch */
    int64_t total;      /* steps planned (--steps, or --epochs x per_epoch) */
    int64_t warmup;     /* warm-up steps (run_warmup_steps) */
    int64_t start;      /* steps done before this run (0, or the resumed checkpoint's) */
    int64_t stop;       /* the last step of this run (--stop-at, or total) */
    int64_t saved_step; /* the step of this run's last checkpoint to --save (-1: none written) */
    double resumed_best; /* the resumed checkpoint's best_metric (0 when not resuming) */
} trainer;

/* Batches of r->batch over n samples, shuffled from data_seed, and the steps planned. eval names
 * the evaluation set in the curves' names ("test": test_loss, test_accuracy). t stays in place
 * (the curves' names point into it). */
void trainer_init(trainer *t, const char *prog, const run_opts *r, int64_t n, bool drop_last, uint64_t data_seed,
                  const char *eval);
/* After the program has added its options to t->args: the optimizer of --optimizer over params;
 * with --resume the recorded options are checked, the optimizer state, the batch position and
 * the curves restored (a resumed run that is already at its last step says so: nothing is
 * trained or saved). Then opens the metrics log (--log, else out_dir/metrics.jsonl; appended to
 * when resuming) and prints the plan of the run. Returns 0, or the exit status after printing
 * why: 2 for a bad --optimizer, 1 otherwise. */
int trainer_start(trainer *t, const mn_params *params, const char *out_dir);
/* The indices I32 [B] of the next batch (a new epoch begins when the last one is used up). */
mn_tensor *trainer_next_batch(trainer *t);
/* After backward: clips the gradients of params to --clip (when > 0). False, after printing where
 * the run diverged, when loss or the gradient norm is not finite. */
bool trainer_clip_and_check(const trainer *t, const mn_params *params, float loss, int64_t step);
/* The learning rate of --schedule for step (1-based), then the optimizer's update. */
void trainer_update(trainer *t, int64_t step);
/* How a program writes its model's files into dir (config.json, model.safetensors, ...). */
typedef bool (*trainer_save_model)(void *model, const char *dir, mn_err *err);
/* After step, when a checkpoint is due (--save given, and step the last of the run or a multiple of
 * --save-every): the model (save_model) and the trainer's part into --save: the optimizer state,
 * step and batch position with best_metric (run_save_state), the recorded options and the curves,
 * written as one unit (mn_ckpt_dir: a kill leaves the previous checkpoint or this one). False
 * after printing why. */
bool trainer_checkpoint(trainer *t, int64_t step, double best_metric, trainer_save_model save_model,
                        void *model);
/* Closes the metrics log and frees; false if a log write failed (e.g. a full disk: said on stderr),
 * which the program's exit status must show. */
bool trainer_free(trainer *t);

#endif
