/* The training loop of the image-classification programs (train_mlp, vit_pretrain,
 * vit_finetune), on trainer.h: seeded batches over a labelled dataset, the optimizer,
 * schedule and clipping of run.h, a progress line with the running accuracy, test evaluation
 * with the time per epoch, the JSON-lines metrics log, loss and accuracy plots, and
 * checkpoints (model + trainer state + options + curves) that a resumed run continues exactly. */
#ifndef MN_EXAMPLES_CLASSIFY_H
#define MN_EXAMPLES_CLASSIFY_H

#include "cli.h"
#include "data/data.h"
#include "mnemo.h"
#include "run.h"
#include "trainlog.h"

/* The purposes of the programs' random streams (train_stream of trainlog.h). */
enum { CLF_STREAM_INIT = 1, CLF_STREAM_DROPOUT, CLF_STREAM_DATA, CLF_STREAM_HEAD };

/* What the loop needs from a model. */
typedef struct {
    void *model;
    const mn_params *params;
    /* x [B, ...] -> logits [B, classes]; dropout NULL means eval mode */
    mn_tensor *(*forward)(void *model, mn_tensor *x, mn_rng *dropout);
    /* the model's own files (config.json, model.safetensors, ...) into dir */
    bool (*save)(void *model, const char *dir, mn_err *err);
} clf_model;

typedef struct {
    const char *prog;
    const char *title;    /* for the plots, e.g. "MLP on Fashion-MNIST" */
    const char *out_dir;  /* metrics.jsonl (unless --log), loss.svg, accuracy.svg; created */
    long eval_every;      /* steps between test evaluations; 0: at the end of each epoch */
    long eval_batch;      /* batch size for evaluation */
    /* parameters whose names start with lr_prefix train at lr_scale x the learning rate (e.g. a
     * pre-trained backbone "vit." below a fresh head); NULL or a scale of 1: one rate for all */
    const char *lr_prefix;
    double lr_scale;
    /* a validation set (NULL: none): the evaluations during training use it, the test set is used once
     * at the end; keep_best (needs val) ends the run with the weights of the best validation accuracy */
    const mn_dataset *val;
    bool keep_best;
} clf_opts;

/* Appends --out and --eval-every (capacity permitting); returns the new count. */
int clf_add_options(cli_opt *opts, int n, int cap, clf_opts *o);

typedef struct {
    double test_loss, test_accuracy;   /* at the end */
    double train_loss, train_accuracy; /* mean over the last epoch (or part of it) */
    double epoch_seconds;              /* mean training time of the epochs completed in this run */
    int epochs_timed;
    double total_seconds;              /* training + evaluation in this run */
    int64_t steps;                     /* the last step done */
} clf_result;

/* Trains m on train, testing on test. r: the common options (optimizer, schedule, steps or
 * epochs, batch, seed, --save, --resume, --log). args: the program's options that a resume
 * must repeat (run.h's are added to them). With --resume the caller has already loaded the
 * model's weights from r->resume_dir; here the trainer state, the options that must repeat
 * and the curves are checked and restored. Returns the exit status (0 done, 2 a bad
 * --optimizer, 1 another failure; printed). */
int clf_train(const clf_opts *o, const run_opts *r, const clf_model *m, const mn_dataset *train,
              const mn_dataset *test, const train_args *args, clf_result *res);

/* Mean loss and accuracy on d in eval mode; per-class hits and counts when non-NULL
 * (n_classes entries each, zeroed here). */
void clf_evaluate(const clf_model *m, const mn_dataset *d, int64_t batch, double *loss, double *accuracy,
                  int64_t *hits, int64_t *counts);
/* Evaluates and prints the accuracy per class. */
void clf_print_per_class(const clf_model *m, const mn_dataset *d, int64_t batch);

/* Prints mn_load_report_summary to stderr (or that every weight was loaded). */
void clf_print_load_report(const mn_load_report *rep, const char *prog, const char *dir);

#endif
