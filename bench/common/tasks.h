/* Tasks of the meta-training and evaluation drivers (spec/meta_training.md "Tasks").
 *
 * Meta-training samples tasks from a family (the library's mn_meta_family): "mlp", MLP classifiers
 * on Fashion-MNIST (optionally downsampled to 14x14) with hidden widths from {16, 32, 64}, depth 1-2,
 * activation relu/tanh/sigmoid, batch 64-128 and parameters as plain tensors; or "quadratic", the
 * library's random convex quadratics in 10-100 dimensions.
 *
 * Evaluation names single tasks with spec strings and trains them through the ordinary
 * mn_optimizer interface:
 *   mlp:784-48-48-10:tanh:b128        an MLP task as the family makes them (784 or 196 inputs:
 *                                     28x28 or 14x14 images; activation relu|tanh|sigmoid; batch)
 *   quadratic:50                      a quadratic task of the family, dimension 50
 *   vit:fm:dim64:depth2:heads2        mn_vit on Fashion-MNIST; optional :mlpN (4 dim), :patchN (4), :bN (64)
 *   bert:tiny:mlm                     mn_bert (bert-tiny or bert-mini sizes) masked-LM on the fortunes, with
 *                                     a WordPiece vocabulary built from them and cached in the work
 *                                     directory; optional :bN (32), :lenN (64 tokens), :vN (2048 entries)
 * A task's seed fixes its initialisation and its data order, so every optimizer sees the same. */
#ifndef MN_BENCH_TASKS_H
#define MN_BENCH_TASKS_H

#include "data/data.h"
#include "mnemo.h"

/* ---- data shared by the tasks of a run, loaded on first use ----------------------------------------- */
typedef struct task_data task_data;
/* fm_dir, fortunes_dir: NULL for the Debian locations; work_dir holds caches (created if missing);
 * test_limit > 0 evaluates on the first test_limit test samples only (0: all). */
task_data *task_data_new(const char *fm_dir, const char *fortunes_dir, const char *work_dir, int64_t test_limit);
void task_data_free(task_data *d);

/* ---- meta-training families ----------------------------------------------------------------------- */
/* "mlp" (image_size 14, 28, or 0 for both, drawn per task; hidden widths drawn from the comma-separated
 * list widths, NULL for the spec's "16,32,64"), "vit" (tiny ViTs, see tasks.c), "mlp+vit" (half each) or
 * "quadratic" (10-100 dimensions). NULL and err when the
 * name or a width is bad or the data cannot be read. d must outlive the family. */
mn_meta_family *task_family_new(const char *name, task_data *d, int image_size, const char *widths, mn_err *err);

/* One MLP task: sizes[0] = 196 or 784 inputs, sizes[n_layers] = 10 classes. */
typedef struct {
    int n_layers;                       /* linear layers: 2 or 3 in the family, up to 8 here */
    int64_t sizes[9];
    mn_act act;
    int batch;
} mlp_task_config;
mn_meta_task *mlp_task_new(task_data *d, const mlp_task_config *c, mn_err *err);

/* One tiny ViT task (bench/common/tasks_vit.c): Fashion-MNIST at image = 14 or 28 pixels a side in
 * patch x patch patches, pre-LN blocks, classification from the CLS token. */
typedef struct {
    int image, patch, dim, depth, heads, mlp_dim, batch;
} vit_task_config;
mn_meta_task *vit_meta_task_new(task_data *d, const vit_task_config *c, mn_err *err);

/* ---- evaluation tasks ---------------------------------------------------------------------------- */
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
bench_task *bench_task_new(const char *spec, uint64_t seed, task_data *d, mn_err *err);
void bench_task_free(bench_task *t); /* NULL is fine */

/* ---- internal: shared by tasks.c and tasks_models.c -------------------------------------------------- */
/* Fashion-MNIST at 28 or 14 pixels a side: x [N, 1, S, S] standardised, y I32 [N]; NULL and err if unreadable. */
bool task_data_images(task_data *d, int size, bool train, mn_tensor **x, mn_tensor **y, mn_err *err);
int64_t task_data_test_limit(const task_data *d);
const char *task_data_work_dir(const task_data *d);
const char *task_data_fortunes_dir(const task_data *d);
/* Data built once per run and kept with d under key (e.g. a tokenised corpus): make(d, key, err) on
 * first use (NULL and err on failure), destroy(value) when d is freed. */
void *task_data_cache(task_data *d, const char *key, void *(*make)(task_data *d, const char *key, mn_err *err),
                      void (*destroy)(void *value), mn_err *err);
/* "a:b:c" -> fields (at most max, each under 64 chars); the count, or -1 if malformed. */
int task_spec_fields(const char *spec, char (*fields)[64], int max);
/* field "PREFIX<integer>" -> *out (in [lo, hi]); false when the prefix differs or the number is bad */
bool task_spec_int(const char *field, const char *prefix, long lo, long hi, long *out);
/* Mean cross-entropy and accuracy over the rows of x (labels y) without gradients, chunk rows at a time:
 * logits(ctx, rows) -> [rows, classes] (rows: a contiguous slice of x). */
void task_classify_test(mn_tensor *x, mn_tensor *y, int64_t chunk, mn_tensor *(*logits)(void *ctx, mn_tensor *rows),
                        void *ctx, double *loss, double *accuracy);
/* I32 [n] indices uniform in [0, N) from rng */
mn_tensor *task_sample_rows(mn_rng *rng, int64_t n, int64_t N);
bench_task *vit_task_new(const char *spec, char (*fields)[64], int n_fields, uint64_t seed, task_data *d,
                         mn_err *err);
bench_task *bert_task_new(const char *spec, char (*fields)[64], int n_fields, uint64_t seed, task_data *d,
                          mn_err *err);

#endif
