/* mnemo optim: optimizers behind one interface, schedules, clipping, and the
 * update rules as differentiable functions (for meta-training).
 *
 * An optimizer is created over a named parameter list (it keeps its own
 * references), steps on the parameters' ->grad, and saves its state as
 * safetensors. Parameters marked no_decay (biases, norms) get no weight decay
 * unless a parameter group says otherwise. Parameters must be contiguous
 * float32 tensors. Learned optimizers (issue 4) plug into the same interface
 * through optim/optimizer_internal.h. */
#ifndef MN_OPTIM_H
#define MN_OPTIM_H

#include "autograd/autograd.h"

typedef struct mn_optimizer mn_optimizer;

/* ---- the hand-designed optimizers ---------------------------------------------- */
/* SGD: v = momentum v + (g + wd p); p -= lr (nesterov ? g + wd p + momentum v : v) (PyTorch's rule) */
mn_optimizer *mn_sgd_new(const mn_params *params, float lr, float momentum, bool nesterov, float weight_decay);
/* Adam with L2 weight decay added to the gradient (PyTorch's Adam) */
mn_optimizer *mn_adam_new(const mn_params *params, float lr, float beta1, float beta2, float eps, float weight_decay);
/* AdamW: decoupled weight decay p *= 1 - lr wd before the Adam update (PyTorch's AdamW) */
mn_optimizer *mn_adamw_new(const mn_params *params, float lr, float beta1, float beta2, float eps, float weight_decay);
/* From a command-line spec: "sgd:LR[:MOMENTUM]", "adam:LR", "adamw:LR[:WD]", and the learned
 * optimizers "lstm[:CKPT]", "mnemosyne-c[:CKPT]", "mnemosyne-t[:CKPT]", "mnemosyne[:CKPT]" (the
 * variant the checkpoint holds; Mnemosyne-T without one), with lr (the lr_scale) 1. Without CKPT
 * a learned optimizer has the weights built into the library (mn_lopt_pretrained). NULL and err
 * on a bad spec (for CKPT: the checkpoint's errors, or a kind mismatch).
 * Defaults: "sgd:LR" uses momentum 0.9 (not PyTorch's 0: plain SGD is rarely what a
 * command-line user wants; write "sgd:LR:0" for it), no Nesterov, no weight decay;
 * Adam and AdamW use betas (0.9, 0.999) and eps 1e-8; Adam no weight decay; AdamW
 * weight decay 0.01 (PyTorch's default). */
mn_optimizer *mn_optim_from_spec(const char *spec, const mn_params *params, mn_err *err);

/* ---- the interface --------------------------------------------------------------------- */
/* One update from each parameter's ->grad, in place and recording nothing (whatever the
 * grad mode); a parameter without a grad is skipped and its own step count (Adam's bias
 * correction) does not advance, as in PyTorch. No allocation: state exists from creation. */
void mn_optim_step(mn_optimizer *o);
void mn_optim_zero_grad(mn_optimizer *o); /* drops every parameter's ->grad */
void mn_optim_set_lr(mn_optimizer *o, float lr);
float mn_optim_lr(const mn_optimizer *o);
int64_t mn_optim_step_count(const mn_optimizer *o);
const char *mn_optim_name(const mn_optimizer *o);
/* Parameter group: parameters whose names start with prefix get lr * lr_scale and
 * this weight decay (overriding no_decay). Later calls win for overlapping prefixes.
 * Returns how many parameters matched (0 usually means a misspelt prefix). */
int mn_optim_group(mn_optimizer *o, const char *prefix, float lr_scale, float weight_decay);
/* State (moments, step count, hyper-parameters) as safetensors, written atomically:
 * tensors "state.<param name>.<slot>" (SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq)
 * and "state.<param name>.step" (I32 [1], the parameter's own step count); metadata
 * "optimizer" (the kind), "step", "lr" and the hyper-parameters (SGD: momentum,
 * nesterov, dampening; Adam/AdamW: beta1, beta2, eps). Load checks the kind, the
 * hyper-parameters, and that every name and shape matches this optimizer's parameters
 * (nothing missing, nothing extra) before changing anything; then it restores the state,
 * the step counts and the base lr. Groups' lr scales and weight decays are not saved. */
bool mn_optim_save(const mn_optimizer *o, const char *path, mn_err *err);
bool mn_optim_load(mn_optimizer *o, const char *path, mn_err *err);
size_t mn_optim_state_bytes(const mn_optimizer *o); /* SGD with momentum: 4 per parameter; Adam: 8 */
void mn_optim_free(mn_optimizer *o);

/* ---- schedules ----------------------------------------------------------------------------- */
typedef enum { MN_SCHED_CONSTANT, MN_SCHED_LINEAR, MN_SCHED_COSINE } mn_sched_kind;
typedef struct {
    mn_sched_kind kind;
    float base_lr, min_lr;
    int64_t warmup_steps; /* linear warm-up from 0 */
    int64_t total_steps;  /* decay to min_lr at total_steps (linear, cosine) */
} mn_schedule;
/* step counts from 0. Warm-up: base_lr * step / warmup_steps for step < warmup_steps (so
 * the first step has lr 0, as in Hugging Face's schedules). Then, with
 * progress = (step - warmup) / (total - warmup) clamped to [0, 1]:
 *   constant: base_lr;  linear: min_lr + (base_lr - min_lr) (1 - progress);
 *   cosine: min_lr + (base_lr - min_lr) (1 + cos(pi progress)) / 2. */
float mn_schedule_lr(const mn_schedule *s, int64_t step);
bool mn_schedule_parse(const char *name, mn_sched_kind *out); /* "constant", "linear", "cosine" */

/* ---- clipping ---------------------------------------------------------------------------------- */
/* Global L2 norm of all gradients (parameters without one are skipped), accumulated in
 * double. As PyTorch's clip_grad_norm_: when coef = max_norm / (norm + 1e-6) is below 1,
 * every gradient is scaled in place by coef. Returns the norm before clipping.
 * A non-finite norm leaves the gradients untouched (the caller can skip the step). */
float mn_clip_grad_norm(const mn_params *p, float max_norm);

/* ---- update rules as differentiable functions -------------------------------------------------
 * The same rules as the optimizers above, written with mn_* ops so that the
 * new parameter is a graph node (meta-training differentiates through it, w.r.t.
 * param, grad and state). Same values as mn_optim_step. Inputs are not modified; new
 * tensors are returned (scope-owned like any op result). step counts from 1.
 * State inputs may be NULL, meaning zeros (the first step). mn_sgd_update sets *new_buf
 * to NULL when momentum is 0. new_buf / new_m / new_v may be NULL if not wanted. */
mn_tensor *mn_sgd_update(mn_tensor *param, mn_tensor *grad, mn_tensor *buf, float lr, float momentum, bool nesterov,
                         float weight_decay, mn_tensor **new_buf);
mn_tensor *mn_adam_update(mn_tensor *param, mn_tensor *grad, mn_tensor *m, mn_tensor *v, int64_t step, float lr,
                          float beta1, float beta2, float eps, float weight_decay, bool decoupled, mn_tensor **new_m,
                          mn_tensor **new_v);

/* ---- learned optimizers (issue 4; spec/mnemosyne.md, spec/lstm_optimizer.md) ------------------
 * optim sits above nn for these: a learned optimizer is a small network built from nn's layers.
 * Three ideas are kept apart, as in learned_optimization: the learned optimizer (mn_lopt: its
 * weights, its config and its fixed random features), the per-task state (mn_lopt_state: what it
 * remembers about one list of parameter tensors), and one step (mn_lopt_apply).
 *
 *   LSTM          coordinate-wise two-layer LSTM; theta += lr_scale * out_scale * u (the network
 *                 outputs the step itself, Andrychowicz et al. 2016). State: 80 floats per coordinate.
 *   Mnemosyne-C   coordinate-wise compact associative memory (CAM); theta -= lr_scale * alpha * u *
 *                 exp(beta s). State: L H 2M (d_h + 1) floats per coordinate (144 by default).
 *   Mnemosyne-T   tensor-wise: hierarchical pooling encoding (bidirectional Performer layers over
 *                 chunks), one CAM per meta-token, a per-coordinate MLP head. State: 2 floats per
 *                 coordinate (the extended-feature moments) plus at most 64 meta-token CAMs per tensor.
 *
 * Initialisation (untrained weights) makes the untrained optimizers sane, small-step methods:
 * Mnemosyne-T starts as Adam at lr 1e-3 * lr_scale (eps inside the square root), Mnemosyne-C as
 * sign descent with steps of about 1e-3 * lr_scale, the LSTM as sign-momentum descent with steps of
 * about 1e-3 * lr_scale; every other weight is small and random, so meta-training can use them. */
typedef enum { MN_LOPT_LSTM, MN_LOPT_MNEMOSYNE_C, MN_LOPT_MNEMOSYNE_T } mn_lopt_kind;

/* Every field is stored in each checkpoint's metadata. Defaults: mn_lopt_default_config. */
typedef struct {
    mn_lopt_kind kind;
    /* input features, spec/mnemosyne.md section 1 */
    float precond_p;       /* gradient preprocessing p: (log|g|/p, sign g) or (-1, e^p g); 10 */
    bool extended;         /* add g/sqrt(v^+eps), m^/sqrt(v^+eps) (F = 4); on for Mnemosyne-T only */
    float ext_beta1, ext_beta2, ext_eps; /* m and v decays, eps inside the sqrt: 0.9, 0.999, 1e-8 */
    /* LSTM */
    int lstm_layers, lstm_hidden; /* 2, 20 (at most 3 layers) */
    float lstm_out_scale;         /* 0.1 */
    /* Mnemosyne: embedding, CAM layers, update (sections 2 and 3) */
    int dim;               /* d: 8 */
    int layers;            /* L: 1 (at most 6) */
    int heads;             /* H: 1; value size d_h = d / H */
    int qk_dim;            /* r, query/key size per head: 8 */
    int features;          /* M: 8 (2M hyperbolic-cosine random features) */
    int ffn_dim;           /* hidden width of the FFN after attention: 32 */
    float tau;             /* discount gamma = exp(-tau): 0.02 */
    bool learn_tau;        /* train tau = softplus(tau_raw), one per layer */
    float cam_eps;         /* added to the CAM normaliser: 1e-6 */
    float ln_eps;          /* LayerNorm eps: 1e-5 */
    float alpha, beta;     /* update scales: 1e-3, 1e-3 */
    /* Mnemosyne-T: hierarchical pooling encoding (section 4) */
    int chunk;             /* c: 32 */
    int max_meta;          /* meta-tokens per tensor at most: 64 */
    int hpe_heads;         /* heads of the level-1/2 Performer layers: 1 */
    int hpe_features;      /* their FAVOR+ random features: 8 */
    int hpe_ffn_dim;       /* their FFN width: 32 */
    int head_hidden;       /* per-coordinate MLP 2d -> head_hidden -> 2: 16 */
} mn_lopt_config;

mn_lopt_config mn_lopt_default_config(mn_lopt_kind kind);
const char *mn_lopt_kind_name(mn_lopt_kind kind);            /* "lstm", "mnemosyne-c", "mnemosyne-t" */
bool mn_lopt_kind_parse(const char *name, mn_lopt_kind *out); /* false if unknown */

typedef struct mn_lopt mn_lopt;
/* Default config of the kind, weights initialised and random features drawn from seed. */
mn_lopt *mn_lopt_new(mn_lopt_kind kind, uint64_t seed);
/* Stops with an error naming the field on an invalid config. */
mn_lopt *mn_lopt_new_config(const mn_lopt_config *cfg, uint64_t seed);
const mn_lopt_config *mn_lopt_get_config(const mn_lopt *o);
/* Checkpoint: safetensors with the weights under their names, the random features under
 * "features.*", the config (and kind, format version) in the metadata. Save is atomic. Load
 * validates the format, every config field, and every tensor's name and shape (nothing missing,
 * nothing extra) and returns NULL with err on any mismatch. */
mn_lopt *mn_lopt_load(const char *path, mn_err *err);
/* The same from a checkpoint image in memory; name stands for the file in error messages. */
mn_lopt *mn_lopt_load_memory(const void *data, size_t size, const char *name, mn_err *err);
bool mn_lopt_save(const mn_lopt *o, const char *path, mn_err *err);
/* The weights that ship inside the library (optim/pretrained/KIND.safetensors, meta-trained on
 * small MLPs (and tiny ViTs, Mnemosyne-T) by bench/train_learned_optimizers.sh; see README). Optimizer specs without a
 * checkpoint ("mnemosyne-t", "lstm") use these. NULL with err only if the build lacks them. */
mn_lopt *mn_lopt_pretrained(mn_lopt_kind kind, mn_err *err);
/* The meta-parameters: leaves that require grad, named as in the checkpoint. Train them with any
 * optimizer (e.g. mn_adam_new over this list). The random features are not among them. */
const mn_params *mn_lopt_weights(const mn_lopt *o);
void mn_lopt_free(mn_lopt *o);

/* Per-task state for a fixed list of parameter tensors (their shapes are remembered and checked
 * by every step). Zero memory, step count 0. The state may be used with any mn_lopt of the same
 * config (e.g. a reloaded copy). */
typedef struct mn_lopt_state mn_lopt_state;
mn_lopt_state *mn_lopt_state_new(const mn_lopt *o, int n, mn_tensor *const *params);
/* One differentiable step: new_params[i] = params[i] + delta_i, built from mn_* ops, so with grad
 * mode on the result depends on the optimizer weights (and on grads: when they are graph nodes,
 * e.g. from mn_grad with MN_CREATE_GRAPH, the meta-gradient is second order; pass detached
 * gradients for the usual first-order one). The state advances; its tensors become graph nodes
 * too. new_params are owned like any op result (by the current scope). Every grad is required.
 * For first-order gradients in an unroll, differentiate the inner loss w.r.t. a detached copy of
 * the parameters (mn_requires_grad(mn_detach(p), true)): an mn_grad without MN_RETAIN_GRAPH
 * through the recorded unroll would free its graph. */
void mn_lopt_apply(const mn_lopt *o, mn_lopt_state *s, int n, mn_tensor *const *params, mn_tensor *const *grads,
                   float lr_scale, mn_tensor **new_params);
/* With recompute on, a recorded mn_lopt_apply keeps only its inputs and results in the graph (the
 * gradient, the state, the weights) and recomputes the network's inside during the backward pass
 * (mn_recompute): the memory of an unroll drops to about one state per step, for one more forward
 * of the optimizer per step. The backward through such steps cannot be recorded (MN_CREATE_GRAPH).
 * Off by default. */
void mn_lopt_state_set_recompute(mn_lopt_state *s, bool on);
/* Truncation boundary: the state keeps its values and drops its history (graph). */
void mn_lopt_state_detach(mn_lopt_state *s);
/* Bytes of state tensors: the formulas above (derived index maps are rebuilt each step, not kept). */
size_t mn_lopt_state_bytes(const mn_lopt_state *s);
int64_t mn_lopt_state_steps(const mn_lopt_state *s); /* mn_lopt_apply calls so far */
/* The state as safetensors (its tensors under their slot names, the step counts, the config in the
 * metadata), so a meta-training run can resume its tasks exactly. Load checks that the file was
 * saved from a state of the same config and parameter sizes, and changes nothing otherwise. */
bool mn_lopt_state_save(const mn_lopt_state *s, const char *path, mn_err *err);
bool mn_lopt_state_load(mn_lopt_state *s, const char *path, mn_err *err);
void mn_lopt_state_free(mn_lopt_state *s);

/* The ordinary optimizer interface over a learned optimizer: steps run with grad mode off and
 * update the parameters in place. The optimizer's lr is lr_scale (mn_optim_set_lr and schedules
 * change it; groups multiply it). Parameters without a gradient are skipped (no update, their
 * state does not advance). Weight decay (set by a group; 0 by default) is decoupled, as AdamW's
 * at lr 1e-3: p *= 1 - 1e-3 lr_scale wd before the learned update. State save/load use the
 * generic format ("state.<param>.<slot>"); state bytes are mn_lopt_state_bytes. o must outlive
 * the optimizer. */
mn_optimizer *mn_lopt_optimizer(const mn_lopt *o, const mn_params *params, float lr_scale);

/* ---- meta-training (issue 4; spec/meta_training.md) ---------------------------------------------
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
};
mn_tensor *mn_meta_task_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng); /* on a fresh batch */
mn_tensor *mn_meta_task_meta_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng);
void mn_meta_task_free(mn_meta_task *t); /* NULL is fine */

/* A family names one task per seed (deterministically: resuming re-creates tasks from seeds). */
typedef struct mn_meta_family mn_meta_family;
struct mn_meta_family {
    char name[128]; /* the family and its settings, checked when a trainer resumes: "quadratic:10-100" */
    mn_meta_task *(*sample)(const mn_meta_family *f, uint64_t seed);
    void (*free)(mn_meta_family *f);
};
void mn_meta_family_free(mn_meta_family *f); /* NULL is fine */

/* Random convex quadratics |W x - y|^2: L(x) = mean over a batch of rows r of (w_r . x - y_r)^2, for W [2d, d]
 * with N(0, s^2) entries (s log-uniform in [e^-1, e]) and y = W x* + N(0, 0.01 d s^2) noise (x* ~ N(0, 1)), so
 * from x0 ~ N(0, 1) the loss can fall about 200-fold; a batch is d rows drawn with replacement. The family
 * draws d uniformly in [min_dim, max_dim]. Test loss: over all rows; no metric (NAN). Deterministic in seed. */
mn_meta_family *mn_meta_quadratic_family(int min_dim, int max_dim);
mn_meta_task *mn_meta_quadratic_task(int dim, uint64_t seed);

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
mn_task_run *mn_task_run_new(mn_meta_task *task, uint64_t seed, const mn_lopt *o, int64_t horizon);
/* Truncation boundary: parameters and optimizer state keep their values and drop their graph. */
void mn_task_run_detach(mn_task_run *r);
void mn_task_run_free(mn_task_run *r);

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
mn_tensor *mn_meta_unroll(const mn_lopt *o, mn_task_run *r, const mn_unroll_opts *opts, double *train_loss);

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
bool mn_tbptt_estimate(const mn_lopt *o, mn_task_run *r, const mn_tbptt_opts *opts, mn_tensor **grads,
                       mn_tbptt_result *res);

typedef struct {
    int tasks;                          /* B task runs per iteration: 4 */
    mn_tbptt_opts estimator;            /* K = 20, first order, log meta-loss, lr_scale 1, clip 1 */
    float meta_lr;                      /* Adam (betas 0.9, 0.999, eps 1e-8) on the weights: 1e-3 */
    int64_t horizon_min, horizon_max;   /* each task's horizon T uniform in [100, 1000] */
    uint64_t seed;                      /* task seeds and horizons */
} mn_meta_trainer_opts;
mn_meta_trainer_opts mn_meta_trainer_default_opts(void);

typedef struct {
    int64_t iteration;                  /* iterations completed, this one included */
    double meta_loss, train_loss;       /* means over the truncations that counted (NAN if none) */
    double grad_norm;                   /* mean meta-gradient norm before clipping */
    int counted, skipped;               /* truncations used / skipped as non-finite in this iteration */
    int restarted;                      /* tasks restarted at their horizon or after a skip */
    int64_t total_skipped;              /* over the whole run (resumes included) */
} mn_meta_stats;

/* The outer loop. o and f are the caller's and must outlive the trainer; o's weights are trained in
 * place. The first B tasks are sampled at creation. */
typedef struct mn_meta_trainer mn_meta_trainer;
mn_meta_trainer *mn_meta_trainer_new(mn_lopt *o, const mn_meta_family *f, const mn_meta_trainer_opts *opts);
/* One meta-iteration: a truncation of each task run (skipping and restarting non-finite ones), the
 * average of the clipped meta-gradients of those that counted, one Adam step on the weights (none when
 * all were skipped), restarts of tasks that reached their horizon. */
void mn_meta_trainer_iterate(mn_meta_trainer *tr, mn_meta_stats *stats);
int64_t mn_meta_trainer_iteration(const mn_meta_trainer *tr);
const mn_task_run *mn_meta_trainer_run(const mn_meta_trainer *tr, int i); /* task run i < B */
/* Everything a resume needs in directory dir: the weights (optimizer.safetensors, mn_lopt_save), the
 * Adam state, every task run (parameters, optimizer state, data streams, step, horizon, seed), the
 * iteration, the sampling stream and the options. Written into dir.tmp, then swapped in by renames,
 * so dir always holds a complete checkpoint. */
bool mn_meta_trainer_save(const mn_meta_trainer *tr, const char *dir, mn_err *err);
/* Restores a trainer made with the same optimizer config, family and options (else an error naming
 * what differs); the weights are copied into o. Nothing changes on failure. */
bool mn_meta_trainer_load(mn_meta_trainer *tr, const char *dir, mn_err *err);
void mn_meta_trainer_free(mn_meta_trainer *tr);

#endif
