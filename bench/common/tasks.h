/* Evaluation tasks of the bench drivers, named by spec strings and trained through the ordinary
 * mn_optimizer interface. Each is one of meta/'s tasks (meta/meta.h) on the library's models:
 *   mlp:784-48-48-10:tanh[:b128]      an MLP on Fashion-MNIST (784 or 196 inputs: 28x28 or 14x14 images;
 *                                     activation relu|tanh|sigmoid|gelu; batch, 128 by default)
 *   quadratic:50                      a random quadratic of dimension 50
 *   vit:fm:dim64:depth2:heads2        a ViT on 28x28 Fashion-MNIST; optional :mlpN (4 dim), :patchN (4), :bN (64)
 *   bert:tiny:mlm                     a BERT (bert-tiny or bert-mini sizes) masked LM on the fortunes, with a
 *                                     WordPiece vocabulary built from them and cached in the work directory;
 *                                     optional :bN (32), :lenN (64 tokens), :vN (2048 entries)
 * A task's seed fixes its initialisation and its data order, so every optimizer sees the same. */
#ifndef MN_BENCH_TASKS_H
#define MN_BENCH_TASKS_H

#include "mnemo.h"

typedef struct bench_task bench_task;
struct bench_task {
    char spec[128];
    mn_params params;        /* the trainable tensors, named; what the optimizer is created over */
    const char *metric_name; /* "accuracy" or "mlm accuracy" (NULL: the task has none) */
    /* The loss on the next training batch (recorded when grad mode is on). */
    mn_tensor *(*train_loss)(bench_task *t);
    /* Test loss and metric (NAN when there is none), without gradients. */
    void (*evaluate)(bench_task *t, double *loss, double *metric);
    void (*free)(bench_task *t);
};
/* The task a spec names, initialised from seed; NULL and err on a bad spec or unreadable data. */
bench_task *bench_task_new(const char *spec, uint64_t seed, mn_meta_data *d, mn_err *err);
void bench_task_free(bench_task *t); /* NULL is fine */

/* "a:b:c" -> fields (at most max, each under 64 chars); the count, or -1 if malformed. */
int task_spec_fields(const char *spec, char (*fields)[64], int max);
/* field "PREFIX<integer>" -> *out (in [lo, hi]); false when the prefix differs or the number is bad */
bool task_spec_int(const char *field, const char *prefix, long lo, long hi, long *out);

#endif
