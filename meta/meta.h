/* mnemo meta: meta-training learned optimizers -- tasks and task families, truncated unrolls,
 * gradient estimators, the outer trainer. */
#ifndef MN_META_H
#define MN_META_H

#include "data/data.h"
#include "lopt/lopt.h"
#include "models/models.h"

/* ---- meta-training -------------------------------------------------------------------------------
 * Truncated backpropagation through unrolled training, with five ideas kept apart (as in
 * learned_optimization):
 *   task               what is trained: parameters from a seed, batches, a loss built from mn_* ops
 *                      (mn_meta_task); a family samples tasks from seeds (mn_meta_family);
 *   learned optimizer  mn_lopt above;
 *   unroll             K inner steps of one task and their meta-loss (mn_meta_unroll), over a task
 *                      run (mn_task_run: the task's parameters, optimizer state, data streams and
 *                      step count, carried across truncations);
 *   gradient estimator truncated backprop through one unroll, clipped (mn_tbptt_estimate);
 *   outer loop         B task runs, averaging, Adam on the optimizer weights, restarts at the
 *                      horizon, skipped non-finite truncations, checkpoints (mn_meta_trainer). */

/* What a task's loss reads; either tensor may be NULL (a task without data). */
typedef struct {
    mn_tensor *x, *y;
    mn_tensor *mask; /* text tasks: the attention mask (1 = token); else NULL */
} mn_meta_batch;

typedef struct mn_meta_task mn_meta_task;
typedef struct {
    /* n_params fresh parameter tensors (F32, contiguous leaves) from seed, as new references. */
    void (*init)(const mn_meta_task *t, uint64_t seed, mn_tensor **out);
    /* A batch drawn with rng (advancing it); its tensors belong to the current scope. */
    mn_meta_batch (*batch)(const mn_meta_task *t, mn_rng *rng);
    /* Scalar loss of params on batch from mn_* ops, so params may be graph nodes. */
    mn_tensor *(*loss)(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *batch);
    /* Optional: the batch of a meta-loss term (NULL: batch). */
    mn_meta_batch (*meta_batch)(const mn_meta_task *t, mn_rng *rng);
    /* Test loss and metric (accuracy; NAN when the task has none), computed without gradients. */
    void (*test)(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric);
    void (*free)(mn_meta_task *t); /* frees the task struct and what it owns */
} mn_meta_task_vt;

/* A task implementation puts this struct first in its own. */
struct mn_meta_task {
    const mn_meta_task_vt *vt;
    int n_params;
    char desc[160]; /* what was sampled, for logs: "mlp 196-32-10 tanh b96" */
    /* Tasks on a models/ model: its parameter list (names, shapes, no_decay), in the order of the task's
     * parameters; NULL for the others. */
    const mn_params *layout;
};
MN_API mn_tensor *mn_meta_task_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng); /* on a fresh batch */
MN_API mn_tensor *mn_meta_task_meta_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng);
MN_API void mn_meta_task_free(mn_meta_task *t); /* NULL is fine */

/* A family names one task per seed (deterministically: resuming re-creates tasks from seeds). */
typedef struct mn_meta_family mn_meta_family;
struct mn_meta_family {
    char name[128]; /* the family and its settings, checked when a trainer resumes: "quadratic:10-100" */
    mn_meta_task *(*sample)(const mn_meta_family *f, uint64_t seed);
    void (*free)(mn_meta_family *f);
};
MN_API void mn_meta_family_free(mn_meta_family *f); /* NULL is fine */

/* ---- tasks on the library's models ---------------------------------------------------------------------
 * Built on models/ (mn_mlp_model, mn_vit, mn_bert) run on the caller's parameters (mn_params_substitute), so
 * a meta-training unroll differentiates through the real models. Their data is shared through an
 * mn_meta_data: Fashion-MNIST (28x28, and 14x14 by antialiased downsampling) and the fortunes corpus,
 * loaded on first use. */
typedef struct mn_meta_data mn_meta_data;
/* fm_dir, fortunes_dir: NULL for the Debian locations (MN_FASHION_MNIST_DIR, MN_FORTUNES_DIR); work_dir holds
 * caches (a WordPiece vocabulary built from the fortunes; created if missing); test_limit > 0 evaluates on
 * the first test_limit test samples only (0: all). */
MN_API mn_meta_data *mn_meta_data_new(const char *fm_dir, const char *fortunes_dir, const char *work_dir, int64_t test_limit);
MN_API void mn_meta_data_free(mn_meta_data *d);
/* Fashion-MNIST at 28 or 14 pixels a side: x [N, 1, S, S] standardised, y I32 [N] (borrowed); false and err if
 * unreadable. */
MN_API bool mn_meta_data_images(mn_meta_data *d, int size, bool train, mn_tensor **x, mn_tensor **y, mn_err *err);

/* An MLP classifier of Fashion-MNIST: sizes[0] = 784 or 196 inputs (28x28 or 14x14), sizes[n_layers] = 10. */
typedef struct {
    int n_layers;                       /* linear layers: 1 to 8 */
    int64_t sizes[9];
    mn_act act;
    int batch;
} mn_meta_mlp_config;
MN_API mn_meta_task *mn_meta_mlp_task(mn_meta_data *d, const mn_meta_mlp_config *c, mn_err *err);

/* A ViT classifier of Fashion-MNIST (mn_vit: pre-LN blocks, CLS token): image 14 or 28 pixels, patch divides
 * it, heads divide dim, MLP width mlp_dim. */
typedef struct {
    int image, patch, dim, depth, heads, mlp_dim, batch;
} mn_meta_vit_config;
MN_API mn_meta_task *mn_meta_vit_task(mn_meta_data *d, const mn_meta_vit_config *c, mn_err *err);

/* A BERT masked language model (mn_bert, no dropout) on the fortunes without the ascii-art pictures, split
 * 90/10 with a fixed seed, tokenised by a WordPiece vocabulary of `vocab` entries built from the training part
 * (cached as WORK/fortunes_vocab_V.txt), texts cut to len tokens, 15% of the tokens masked. Test: the mean
 * cross-entropy and accuracy over the masked positions of at most 512 held-out texts, masked with a fixed
 * seed. */
typedef struct {
    int hidden, layers, heads, intermediate; /* bert-tiny: 128, 2, 2, 512 */
    int batch, len, vocab;                   /* 32, 64, 2048 */
} mn_meta_bert_config;
MN_API mn_meta_bert_config mn_meta_bert_config_named(const char *size); /* "tiny", "mini"; zeros if unknown */
MN_API mn_meta_task *mn_meta_bert_task(mn_meta_data *d, const mn_meta_bert_config *c, mn_err *err);

/* Families of tasks on the models, by name, several joined by '+' (each drawn equally often):
 *   mlp        MLPs: 28x28 or 14x14 inputs (image_size 28, 14, or 0 for either, drawn per task), 1-2 hidden
 *              layers whose widths are drawn from `widths` ("16,32,64" when NULL), relu/tanh/sigmoid,
 *              batch 64-128;
 *   vit        tiny ViTs: 14x14 images in 2x2 patches or 28x28 in 7x7, width 16-48, 1-2 blocks, 1-2 heads,
 *              MLP twice the width, batch 32-64;
 *   bert       tiny BERT masked LMs on the fortunes: width 32-64, 1-2 layers, 2 heads, MLP 4x, vocabulary
 *              1024, texts of 32 tokens, batch 16-32;
 *   quadratic  random quadratics (10-100 dimensions; alone only).
 * The data is read when the family is made, so sampling cannot fail later. NULL and err on a bad name or
 * width list or unreadable data. d must outlive the family. */
MN_API mn_meta_family *mn_meta_family_new(const char *name, mn_meta_data *d, int image_size, const char *widths, mn_err *err);

/* Random convex quadratics |W x - y|^2: L(x) = mean over a batch of rows r of (w_r . x - y_r)^2, for W [2d, d]
 * with N(0, s^2) entries (s log-uniform in [e^-1, e]) and y = W x* + N(0, 0.01 d s^2) noise (x* ~ N(0, 1)), so
 * from x0 ~ N(0, 1) the loss can fall about 200-fold; a batch is d rows drawn with replacement. The family
 * draws d uniformly in [min_dim, max_dim]. Test loss: over all rows; no metric (NAN). Deterministic in seed. */
MN_API mn_meta_family *mn_meta_quadratic_family(int min_dim, int max_dim);
MN_API mn_meta_task *mn_meta_quadratic_task(int dim, uint64_t seed);

/* One task being trained by a learned optimizer; params and state hold the current values
 * (between truncations: detached leaves). The data streams derive from the seed. */
typedef struct {
    mn_meta_task *task;    /* owned */
    uint64_t seed;         /* the family seed naming the task; also the initialisation seed */
    mn_tensor **params;    /* [task->n_params], owned references */
    mn_lopt_state *state;  /* owned */
    mn_rng data_rng;       /* training batches */
    mn_rng meta_rng;       /* meta-loss batches */
    int64_t step;          /* inner steps taken */
    int64_t horizon;       /* the outer loop restarts the task when step >= horizon */
} mn_task_run;
/* Takes ownership of task; parameters from task->vt->init(seed), a fresh state of o. */
MN_API mn_task_run *mn_task_run_new(mn_meta_task *task, uint64_t seed, const mn_lopt *o, int64_t horizon);
/* Truncation boundary: parameters and optimizer state keep their values and drop their graph. */
MN_API void mn_task_run_detach(mn_task_run *r);
MN_API void mn_task_run_free(mn_task_run *r);

typedef struct {
    int steps;              /* K inner steps per truncation: 20 */
    bool second_order;      /* record the inner gradients too (MN_CREATE_GRAPH); default first order */
    bool plain_mean;        /* meta-loss = mean of L instead of mean of log L */
    float lr_scale;         /* of the learned optimizer: 1 */
    bool store_steps;       /* keep each step's intermediates instead of recomputing them in the backward
                             * pass (mn_lopt_state_set_recompute): faster, several times the memory */
    /* Optional, for checking the first-order estimator: record_grads (steps * n_params slots)
     * receives new references to the inner gradients as computed; replay_grads, when given, is used
     * instead of computing them. The first-order meta-gradient is the exact gradient of the meta-loss
     * with the inner gradients replayed. */
    mn_tensor **record_grads;
    mn_tensor *const *replay_grads;
} mn_unroll_opts;

/* One truncation of r, recorded (grad mode must be on): for t = 0 .. K-1, g_t = gradient of the
 * task loss at theta_t on a training batch (constant unless second_order), theta_{t+1} =
 * mn_lopt_apply(theta_t, g_t), and the meta-loss term log L(theta_{t+1}) on a fresh meta-batch.
 * Returns the meta-loss (mean of the K terms), a graph node reaching mn_lopt_weights(o); r->params
 * become theta_K (graph nodes) and r->step advances by K. *train_loss (may be NULL): the mean of
 * the inner training losses. A non-finite loss does not stop the unroll: the caller checks. */
MN_API mn_tensor *mn_meta_unroll(const mn_lopt *o, mn_task_run *r, const mn_unroll_opts *opts, double *train_loss);

typedef struct {
    mn_unroll_opts unroll;
    float clip;             /* global L2 norm the meta-gradient is clipped to: 1 (0: no clipping) */
} mn_tbptt_opts;
typedef struct {
    double meta_loss, train_loss;
    double grad_norm;       /* before clipping */
    bool finite;            /* false: meta-loss or meta-gradient NaN/Inf, no gradient returned */
} mn_tbptt_result;
/* The truncated-backprop estimator on one truncation: mn_meta_unroll, the meta-gradient w.r.t.
 * mn_lopt_weights(o) into grads[i] (new tensors in the current scope), clipped, then the truncation
 * boundary (mn_task_run_detach). Returns res->finite; when false, grads are NULL. */
MN_API bool mn_tbptt_estimate(const mn_lopt *o, mn_task_run *r, const mn_tbptt_opts *opts, mn_tensor **grads,
                       mn_tbptt_result *res);

/* ---- one inner step without a graph ----------------------------------------------------------------------
 * What training with a learned optimizer looks like after meta-training, and what the gradient-free
 * estimators run: the task's gradient at r->params on a training batch (first order: the task's own graph
 * only), then mn_lopt_apply with grad mode off (the fused path). r->params become the new values and r->step
 * advances. Returns the training loss; when meta_loss is not NULL, *meta_loss = log (or, plain_mean, the
 * value) of the task loss at the new parameters on a fresh meta-batch. */
MN_API double mn_meta_inner_step(const mn_lopt *o, mn_task_run *r, float lr_scale, bool plain_mean, double *meta_loss);

/* ---- truncation schedules: how long each sampled task is trained before a new one replaces it ------------ */
typedef enum {
    MN_HORIZON_UNIFORM,     /* T uniform in [min, max] */
    MN_HORIZON_LOG_UNIFORM, /* log T uniform in [log min, log (max + 1)) */
    MN_HORIZON_CONSTANT,    /* T = max */
} mn_horizon_kind;
MN_API int64_t mn_horizon_sample(mn_horizon_kind kind, int64_t min, int64_t max, mn_rng *rng);
MN_API const char *mn_horizon_kind_name(mn_horizon_kind kind);            /* "uniform", "log-uniform", "constant" */
MN_API bool mn_horizon_kind_parse(const char *name, mn_horizon_kind *out); /* false if unknown */

/* ---- gradient estimators ---------------------------------------------------------------------------------
 * An estimator turns one truncation of a task into an estimate of the meta-gradient, written as one flat
 * vector over mn_lopt_weights (mn_lopt_get_flat order). Three are built in:
 *   tbptt  truncated backprop through the K recorded steps (mn_tbptt_estimate), first or second order. Its
 *          memory grows with K, and it is biased: it ignores how the weights shaped the truncation's start.
 *   pes    Persistent Evolution Strategies (Vicol, Metz & Sohl-Dickstein, ICML 2021): `pairs` antithetic
 *          particle pairs per task, each particle training its own copy of the task with the weights
 *          perturbed by +eps or -eps (a fresh eps ~ N(0, sigma^2) per truncation), carried across
 *          truncations. Each pair accumulates its perturbations xi += eps, and the estimate is
 *            g = sum over pairs of xi (L+ - L-) / (2 pairs sigma^2),
 *          with L+- the particles' meta-losses over this truncation: unbiased for the gradient of the
 *          (Gaussian-smoothed) meta-loss of the whole run, not just of the truncation.
 *   es     antithetic evolution strategies over the whole horizon: one truncation per task (all of its
 *          remaining steps), xi = eps; unbiased too, at the price of one estimate per task.
 * PES and ES step the particles on the fused no-graph path (mn_meta_inner_step): no graph is recorded,
 * so memory does not grow with the truncation length. A pair with a non-finite loss is left out of the
 * estimate and reported; the task then restarts. */
typedef enum { MN_ESTIMATOR_TBPTT, MN_ESTIMATOR_PES, MN_ESTIMATOR_ES } mn_estimator_kind;
MN_API const char *mn_estimator_kind_name(mn_estimator_kind kind);            /* "tbptt", "pes", "es" */
MN_API bool mn_estimator_kind_parse(const char *name, mn_estimator_kind *out); /* false if unknown */

typedef struct {
    mn_estimator_kind kind;             /* tbptt */
    mn_unroll_opts unroll;              /* K = 20 steps, first order, log meta-loss, lr_scale 1 (PES/ES: only
                                         * steps, plain_mean and lr_scale apply; ES ignores steps) */
    float clip;                         /* global L2 norm each estimate is clipped to: 1 (0: no clipping) */
    float sigma;                        /* PES/ES: standard deviation of the perturbations: 0.01 */
    int pairs;                          /* PES/ES: antithetic particle pairs per task: 4 */
} mn_estimator_opts;

/* One task slot of the outer loop: the runs an estimator keeps of one sampled task (all made from the same
 * seed, so every particle starts from the same parameters and sees the same batches), and what it carries
 * across truncations. */
typedef struct {
    uint64_t seed;                      /* the family seed naming the task */
    int64_t horizon, step;              /* the task's horizon and the inner steps each run has taken */
    int n_runs;                         /* tbptt 1; pes, es: 2 pairs (run 2j: +eps, run 2j+1: -eps) */
    mn_task_run **runs;                 /* [n_runs], owned */
    float *carry;                       /* pes: the pairs' accumulated perturbations [pairs][n_weights] */
    int64_t n_carry;
    mn_rng noise;                       /* the perturbations' stream */
    mn_lopt *work[2];                   /* scratch copies of the optimizer the estimator overwrites */
    /* scratch of estimators that work in parts (pes, es): per run its perturbed optimizer and its
     * truncation's mean meta-loss and training loss; the pairs' perturbations; the steps of a part */
    mn_lopt **particle;
    double *particle_loss;              /* [n_runs][2] */
    float *noise_buf;                   /* [pairs][n_weights] */
    int64_t particle_steps;
} mn_meta_slot;

typedef struct {
    double meta_loss, train_loss;       /* means over the particles that counted */
    double grad_norm;                   /* of the estimate before clipping */
    int particles, skipped;             /* particles (runs) used / left out as non-finite */
    bool finite;                        /* false: no estimate (grad untouched) */
    bool restart;                       /* the slot must start a new task (a non-finite particle) */
} mn_meta_estimate;

typedef struct mn_meta_estimator mn_meta_estimator;
struct mn_meta_estimator {
    const char *name;
    mn_estimator_opts opts;
    int (*runs_per_task)(const mn_meta_estimator *e);
    int64_t (*carry_floats)(const mn_meta_estimator *e, int64_t n_weights);
    /* One truncation of slot s with the weights of o: the estimate into grad [mn_lopt_weight_count(o)],
     * clipped; the runs advance. Returns res->finite. Must not change o (several slots may be estimated
     * at once on threads). */
    bool (*estimate)(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s, float *grad,
                     mn_meta_estimate *res);
    /* Optional (NULL for estimators that are not split): the same truncation in parts, so the trainer
     * can spread one slot's particles over threads. begin (one thread) prepares slot s and returns
     * the number of parts; part p (any order, any thread, each once) does one part; finish (one
     * thread) writes grad and res as estimate would, to the bit. */
    int (*begin)(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s);
    void (*part)(const mn_meta_estimator *e, mn_meta_slot *s, int p);
    bool (*finish)(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s, float *grad,
                   mn_meta_estimate *res);
};
/* The built-in estimator of opts->kind (stops with a message on invalid options). */
MN_API mn_meta_estimator mn_meta_estimator_make(const mn_estimator_opts *opts);
/* A slot of task `seed` from family f, its runs' states made for o (the same config is required later). */
MN_API mn_meta_slot *mn_meta_slot_new(const mn_meta_estimator *e, const mn_lopt *o, const mn_meta_family *f, uint64_t seed,
                               int64_t horizon);
MN_API void mn_meta_slot_free(mn_meta_slot *s);

/* ---- several processes (MPI) --------------------------------------------------------------------------
 * Under mpirun, each rank estimates a slice of the trainer's slots (slot b on rank b mod ranks); the
 * estimates are summed in slot order, so the weights do not depend on the number of ranks (or threads), and
 * checkpoints go through rank 0 (no shared file system needed): `mpirun -np N --hostfile HOSTS meta_train
 * ...`. Every rank runs the same program with the same options. */
/* Starts MPI when the program was launched by mpirun, else nothing (a plain run stays one process). Returns
 * this process's rank; *size (may be NULL) the number of ranks. Without MPI in the build: rank 0 of 1. */
MN_API int mn_meta_mpi_init(int *argc, char ***argv, int *size);
MN_API void mn_meta_mpi_finalize(void);
MN_API bool mn_meta_mpi_available(void); /* the build has MPI */

typedef struct {
    int tasks;                          /* B task slots per iteration: 4 */
    mn_estimator_opts estimator;        /* tbptt, K = 20, first order, log meta-loss, lr_scale 1, clip 1 */
    float meta_lr;                      /* Adam (betas 0.9, 0.999, eps 1e-8) on the weights: 1e-3 */
    mn_horizon_kind horizon;            /* uniform */
    int64_t horizon_min, horizon_max;   /* each task's horizon T in [100, 1000] */
    uint64_t seed;                      /* task seeds and horizons */
    int task_threads;                   /* slots estimated at once, one inner thread each: 1. The results do not
                                         * depend on it (each slot computes alone; they are combined in order) */
} mn_meta_trainer_opts;
MN_API mn_meta_trainer_opts mn_meta_trainer_default_opts(void);

typedef struct {
    int64_t iteration;                  /* iterations completed, this one included */
    double meta_loss, train_loss;       /* means over the slots that counted (NAN if none) */
    double grad_norm;                   /* mean meta-gradient norm before clipping */
    int counted, skipped;               /* slots used / without an estimate (non-finite) in this iteration */
    int skipped_particles;              /* PES/ES particles left out as non-finite in this iteration */
    int restarted;                      /* tasks restarted at their horizon or after a skip */
    int64_t total_skipped;              /* slots skipped over the whole run (resumes included) */
    int64_t inner_steps;                /* inner steps taken by all particles in this iteration */
} mn_meta_stats;

/* The outer loop. o and f are the caller's and must outlive the trainer; o's weights are trained in
 * place. The first B tasks are sampled at creation. */
typedef struct mn_meta_trainer mn_meta_trainer;
MN_API mn_meta_trainer *mn_meta_trainer_new(mn_lopt *o, const mn_meta_family *f, const mn_meta_trainer_opts *opts);
/* One meta-iteration: an estimate from each slot (on opts.task_threads threads), the average of those that
 * were finite, one Adam step on the weights (none when all were skipped), restarts of the tasks that
 * reached their horizon or were skipped. */
MN_API void mn_meta_trainer_iterate(mn_meta_trainer *tr, mn_meta_stats *stats);
MN_API int64_t mn_meta_trainer_iteration(const mn_meta_trainer *tr);
MN_API const mn_task_run *mn_meta_trainer_run(const mn_meta_trainer *tr, int i); /* slot i's first run, i < B */
/* ---- validation and the best weights ---------------------------------------------------------------- */
typedef struct {
    int tasks;                          /* held-out tasks of the family (seeds from their own stream): 2 */
    int steps;                          /* each trained from scratch for: 100 */
    float lr_scale;                     /* of the learned optimizer: 1 */
    bool select_final;                  /* the best weights by final_log_loss, else by log_loss */
    uint64_t seed;                      /* names the tasks: the same at every validation */
} mn_meta_validation_opts;
typedef struct {
    double log_loss;                    /* mean over tasks and steps of log(training loss): the area under the curve */
    double final_log_loss;              /* mean over tasks of log(mean training loss of the last 5% of the steps) */
    double test_loss;                   /* mean over tasks of the test loss at the end (NAN: tasks without a test) */
    double score;                       /* the measure the selection uses */
    bool best;                          /* mn_meta_trainer_validate: lower than every earlier validation */
} mn_meta_validation;
/* Trains the held-out tasks with o the way it is used after meta-training (first-order gradients, the fused
 * no-graph step), on `threads` threads (the same numbers for any count). A diverged task counts as e^30. */
MN_API mn_meta_validation mn_meta_validate(const mn_lopt *o, const mn_meta_family *f, const mn_meta_validation_opts *opts,
                                    int threads);
/* The same for the trainer's weights, on its task threads, and whether they are the best so far (the best
 * score is kept in the trainer's checkpoints, so a resumed run selects as one that never stopped). */
MN_API mn_meta_validation mn_meta_trainer_validate(mn_meta_trainer *tr, const mn_meta_validation_opts *opts);

/* Everything a resume needs in directory dir: the weights (optimizer.safetensors, mn_lopt_save), the
 * Adam state, every task run (parameters, optimizer state, data streams, step, horizon, seed), the
 * estimators' carried state, the iteration, the sampling stream and the options. Written into dir.tmp,
 * then swapped in by renames, so dir always holds a complete checkpoint. */
MN_API bool mn_meta_trainer_save(const mn_meta_trainer *tr, const char *dir, mn_err *err);
/* Restores a trainer made with the same optimizer config, family and options (else an error naming
 * what differs); the weights are copied into o. Nothing changes on failure. */
MN_API bool mn_meta_trainer_load(mn_meta_trainer *tr, const char *dir, mn_err *err);
MN_API void mn_meta_trainer_free(mn_meta_trainer *tr);

#endif
