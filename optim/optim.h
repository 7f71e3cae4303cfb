/* mnemo optim: optimizers behind one interface, schedules, clipping, and the
 * update rules as differentiable functions (for meta-training).
 *
 * An optimizer is created over a named parameter list (it keeps its own
 * references), steps on the parameters' ->grad, and saves its state as
 * safetensors. Parameters marked no_decay (biases, norms) get no weight decay
 * unless a parameter group says otherwise. Parameters must be contiguous
 * float32 tensors. Learned optimizers (lopt/) plug into the same interface
 * through optim/optimizer_internal.h. */
#ifndef MN_OPTIM_H
#define MN_OPTIM_H

#include "autograd/autograd.h"

typedef struct mn_optimizer mn_optimizer;

/* ---- the hand-designed optimizers ---------------------------------------------- */
/* SGD: v = momentum v + (g + wd p); p -= lr (nesterov ? g + wd p + momentum v : v) (PyTorch's rule) */
MN_API mn_optimizer *mn_sgd_new(const mn_params *params, float lr, float momentum, bool nesterov, float weight_decay);
/* Adam with L2 weight decay added to the gradient (PyTorch's Adam) */
MN_API mn_optimizer *mn_adam_new(const mn_params *params, float lr, float beta1, float beta2, float eps, float weight_decay);
/* AdamW: decoupled weight decay p *= 1 - lr wd before the Adam update (PyTorch's AdamW) */
MN_API mn_optimizer *mn_adamw_new(const mn_params *params, float lr, float beta1, float beta2, float eps, float weight_decay);
/* From a command-line spec: "sgd[:LR[:MOMENTUM]]", "adam[:LR]", "adamw[:LR[:WD]]", and the learned
 * optimizers "lstm[:CKPT]", "mnemosyne-c[:CKPT]", "mnemosyne-t[:CKPT]", "mnemosyne[:CKPT]" (the
 * variant the checkpoint holds; Mnemosyne-T without one), with lr (the lr_scale) 1. Without CKPT
 * a learned optimizer has the weights built into the library (mn_lopt_pretrained). NULL and err
 * on a bad spec (for CKPT: the checkpoint's errors, or a kind mismatch).
 * Defaults: learning rate 0.01 for SGD, 1e-3 for Adam and AdamW; "sgd:LR" uses momentum 0.9 (not PyTorch's 0: plain SGD is rarely what a
 * command-line user wants; write "sgd:LR:0" for it), no Nesterov, no weight decay;
 * Adam and AdamW use betas (0.9, 0.999) and eps 1e-8; Adam no weight decay; AdamW
 * weight decay 0.01 (PyTorch's default). */
MN_API mn_optimizer *mn_optim_from_spec(const char *spec, const mn_params *params, mn_err *err);

/* ---- the interface --------------------------------------------------------------------- */
/* One update from each parameter's ->grad, in place and recording nothing (whatever the
 * grad mode); a parameter without a grad is skipped and its own step count (Adam's bias
 * correction) does not advance, as in PyTorch. No allocation: state exists from creation. */
MN_API void mn_optim_step(mn_optimizer *o);
MN_API void mn_optim_zero_grad(mn_optimizer *o); /* drops every parameter's ->grad */
MN_API void mn_optim_set_lr(mn_optimizer *o, float lr);
MN_API float mn_optim_lr(const mn_optimizer *o);
MN_API int64_t mn_optim_step_count(const mn_optimizer *o);
MN_API const char *mn_optim_name(const mn_optimizer *o);
/* Parameter group: parameters whose names start with prefix get lr * lr_scale and
 * this weight decay (overriding no_decay). Later calls win for overlapping prefixes.
 * Returns how many parameters matched (0 usually means a misspelt prefix). */
MN_API int mn_optim_group(mn_optimizer *o, const char *prefix, float lr_scale, float weight_decay);
/* State (moments, step count, hyper-parameters) as safetensors, written atomically:
 * tensors "state.<param name>.<slot>" (SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq)
 * and "state.<param name>.step" (I32 [1], the parameter's own step count); metadata
 * "optimizer" (the kind), "step", "lr" and the hyper-parameters (SGD: momentum,
 * nesterov, dampening; Adam/AdamW: beta1, beta2, eps). Load checks the kind, the
 * hyper-parameters, and that every name and shape matches this optimizer's parameters
 * (nothing missing, nothing extra) before changing anything; then it restores the state,
 * the step counts and the base lr. Groups' lr scales and weight decays are not saved. */
MN_API bool mn_optim_save(const mn_optimizer *o, const char *path, mn_err *err);
MN_API bool mn_optim_load(mn_optimizer *o, const char *path, mn_err *err);
MN_API size_t mn_optim_state_bytes(const mn_optimizer *o); /* SGD with momentum: 4 per parameter; Adam: 8 */
MN_API void mn_optim_free(mn_optimizer *o);

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
MN_API float mn_schedule_lr(const mn_schedule *s, int64_t step);
MN_API bool mn_schedule_parse(const char *name, mn_sched_kind *out); /* "constant", "linear", "cosine" */

/* ---- clipping ---------------------------------------------------------------------------------- */
/* Global L2 norm of all gradients (parameters without one are skipped), accumulated in
 * double. As PyTorch's clip_grad_norm_: when coef = max_norm / (norm + 1e-6) is below 1,
 * every gradient is scaled in place by coef. Returns the norm before clipping.
 * A non-finite norm leaves the gradients untouched (the caller can skip the step). */
MN_API float mn_clip_grad_norm(const mn_params *p, float max_norm);

/* ---- update rules as differentiable functions -------------------------------------------------
 * The same rules as the optimizers above, written with mn_* ops so that the
 * new parameter is a graph node (meta-training differentiates through it, w.r.t.
 * param, grad and state). Same values as mn_optim_step. Inputs are not modified; new
 * tensors are returned (scope-owned like any op result). step counts from 1.
 * State inputs may be NULL, meaning zeros (the first step). mn_sgd_update sets *new_buf
 * to NULL when momentum is 0. new_buf / new_m / new_v may be NULL if not wanted. */
MN_API mn_tensor *mn_sgd_update(mn_tensor *param, mn_tensor *grad, mn_tensor *buf, float lr, float momentum, bool nesterov,
                         float weight_decay, mn_tensor **new_buf);
MN_API mn_tensor *mn_adam_update(mn_tensor *param, mn_tensor *grad, mn_tensor *m, mn_tensor *v, int64_t step, float lr,
                          float beta1, float beta2, float eps, float weight_decay, bool decoupled, mn_tensor **new_m,
                          mn_tensor **new_v);

#endif
