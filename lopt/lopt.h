/* mnemo lopt: learned optimizers -- LSTM, Mnemosyne-C and Mnemosyne-T.
 *
 * A learned optimizer is a small network built from nn's layers whose output is the update. Each has
 * two paths computing the same step: a differentiable graph path (mn_lopt_apply: every op recorded,
 * so meta-training differentiates through it) and a fused no-graph path used by the ordinary
 * optimizer interface (mn_lopt_optimizer) and by the gradient-free meta-gradient estimators. */
#ifndef MN_LOPT_H
#define MN_LOPT_H

#include "nn/nn.h"
#include "optim/optim.h"

/* ---- learned optimizers ------------------------------------------------------------------------
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
    /* input features: the preprocessed gradient, optionally Adam-like moments */
    float precond_p;       /* gradient preprocessing p: (log|g|/p, sign g) or (-1, e^p g); 10 */
    bool extended;         /* add g/sqrt(v^+eps), m^/sqrt(v^+eps) (F = 4); on for Mnemosyne-T only */
    float ext_beta1, ext_beta2, ext_eps; /* m and v decays, eps inside the sqrt: 0.9, 0.999, 1e-8 */
    /* LSTM */
    int lstm_layers, lstm_hidden; /* 2, 20 (at most 3 layers) */
    float lstm_out_scale;         /* 0.1 */
    /* Mnemosyne: embedding, CAM layers, update */
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
    /* Mnemosyne-T: hierarchical pooling encoding */
    int chunk;             /* c: 32 */
    int max_meta;          /* meta-tokens per tensor at most: 64 */
    int hpe_heads;         /* heads of the level-1/2 Performer layers: 1 */
    int hpe_features;      /* their FAVOR+ random features: 8 */
    int hpe_ffn_dim;       /* their FFN width: 32 */
    int head_hidden;       /* per-coordinate MLP 2d -> head_hidden -> 2: 16 */
} mn_lopt_config;

MN_API mn_lopt_config mn_lopt_default_config(mn_lopt_kind kind);
MN_API const char *mn_lopt_kind_name(mn_lopt_kind kind);            /* "lstm", "mnemosyne-c", "mnemosyne-t" */
MN_API bool mn_lopt_kind_parse(const char *name, mn_lopt_kind *out); /* false if unknown */

typedef struct mn_lopt mn_lopt;
/* Default config of the kind, weights initialised and random features drawn from seed. */
MN_API mn_lopt *mn_lopt_new(mn_lopt_kind kind, uint64_t seed);
/* Stops with an error naming the field on an invalid config. */
MN_API mn_lopt *mn_lopt_new_config(const mn_lopt_config *cfg, uint64_t seed);
MN_API const mn_lopt_config *mn_lopt_get_config(const mn_lopt *o);
/* Checkpoint: safetensors with the weights under their names, the random features under
 * "features.*", the config (and kind, format version) in the metadata. Save is atomic. Load
 * validates the format, every config field, and every tensor's name and shape (nothing missing,
 * nothing extra) and returns NULL with err on any mismatch. */
MN_API mn_lopt *mn_lopt_load(const char *path, mn_err *err);
/* The same from a checkpoint image in memory; name stands for the file in error messages. */
MN_API mn_lopt *mn_lopt_load_memory(const void *data, size_t size, const char *name, mn_err *err);
MN_API bool mn_lopt_save(const mn_lopt *o, const char *path, mn_err *err);
/* The weights that ship inside the library (lopt/pretrained/KIND.safetensors, meta-trained on
 * small MLPs (and tiny ViTs, Mnemosyne-T) by bench/train_learned_optimizers.sh; see README). Optimizer specs without a
 * checkpoint ("mnemosyne-t", "lstm") use these. NULL with err only if the build lacks them. */
MN_API mn_lopt *mn_lopt_pretrained(mn_lopt_kind kind, mn_err *err);
/* The meta-parameters: leaves that require grad, named as in the checkpoint. Train them with any
 * optimizer (e.g. mn_adam_new over this list). The random features are not among them. */
MN_API const mn_params *mn_lopt_weights(const mn_lopt *o);
/* A copy with the same config, weights and random features, in tensors of its own. */
MN_API mn_lopt *mn_lopt_clone(const mn_lopt *o);
/* dst's weights = src's (same config, else it stops with a message); the random features stay. */
MN_API void mn_lopt_copy_weights(mn_lopt *dst, const mn_lopt *src);
/* The weights as one flat vector, in mn_lopt_weights order (what estimators and MPI ranks exchange). */
MN_API int64_t mn_lopt_weight_count(const mn_lopt *o);
MN_API void mn_lopt_get_flat(const mn_lopt *o, float *out);  /* out [mn_lopt_weight_count] */
MN_API void mn_lopt_set_flat(mn_lopt *o, const float *in);
MN_API void mn_lopt_free(mn_lopt *o);
/* Multiply-adds per parameter coordinate of one step, counting the network's dense products (the
 * layers' matrix-vector products, the random-feature projections, the attention and memory
 * contractions); the nonlinearities, norms and feature preprocessing are not counted. For
 * Mnemosyne-T it includes the level-2 layer's share (1/chunk per coordinate) and leaves out what
 * is computed per meta-token (at most max_meta per tensor): the CAM, and the head's first-layer
 * product with the CAM output, which the fused step forms once per meta-token. Benchmarks turn it into GFLOP/s. */
MN_API double mn_lopt_macs_per_coordinate(const mn_lopt_config *cfg);

/* Per-task state for a fixed list of parameter tensors (their shapes are remembered and checked
 * by every step). Zero memory, step count 0. The state may be used with any mn_lopt of the same
 * config (e.g. a reloaded copy). */
typedef struct mn_lopt_state mn_lopt_state;
MN_API mn_lopt_state *mn_lopt_state_new(const mn_lopt *o, int n, mn_tensor *const *params);
/* One differentiable step: new_params[i] = params[i] + delta_i, built from mn_* ops, so with grad
 * mode on the result depends on the optimizer weights (and on grads: when they are graph nodes,
 * e.g. from mn_grad with MN_CREATE_GRAPH, the meta-gradient is second order; pass detached
 * gradients for the usual first-order one). The state advances; its tensors become graph nodes
 * too. new_params are owned like any op result (by the current scope). Every grad is required.
 * For first-order gradients in an unroll, differentiate the inner loss w.r.t. a detached copy of
 * the parameters (mn_requires_grad(mn_detach(p), true)): an mn_grad without MN_RETAIN_GRAPH
 * through the recorded unroll would free its graph. */
MN_API void mn_lopt_apply(const mn_lopt *o, mn_lopt_state *s, int n, mn_tensor *const *params, mn_tensor *const *grads,
                   float lr_scale, mn_tensor **new_params);
/* With recompute on, a recorded mn_lopt_apply keeps only its inputs and results in the graph (the
 * gradient, the state, the weights) and recomputes the network's inside during the backward pass
 * (mn_recompute): the memory of an unroll drops to about one state per step, for one more forward
 * of the optimizer per step. The backward through such steps cannot be recorded (MN_CREATE_GRAPH).
 * Off by default. */
MN_API void mn_lopt_state_set_recompute(mn_lopt_state *s, bool on);
/* Truncation boundary: the state keeps its values and drops its history (graph). */
MN_API void mn_lopt_state_detach(mn_lopt_state *s);
/* Bytes of state tensors: the formulas above (derived index maps are rebuilt each step, not kept). */
MN_API size_t mn_lopt_state_bytes(const mn_lopt_state *s);
MN_API int64_t mn_lopt_state_steps(const mn_lopt_state *s); /* mn_lopt_apply calls so far */
/* The state as safetensors (its tensors under their slot names, the step counts, the config in the
 * metadata), so a meta-training run can resume its tasks exactly. Load checks that the file was
 * saved from a state of the same config and parameter sizes, and changes nothing otherwise. */
MN_API bool mn_lopt_state_save(const mn_lopt_state *s, const char *path, mn_err *err);
MN_API bool mn_lopt_state_load(mn_lopt_state *s, const char *path, mn_err *err);
MN_API void mn_lopt_state_free(mn_lopt_state *s);

/* The ordinary optimizer interface over a learned optimizer: steps run with grad mode off and
 * update the parameters in place. The optimizer's lr is lr_scale (mn_optim_set_lr and schedules
 * change it; groups multiply it). Parameters without a gradient are skipped (no update, their
 * state does not advance). Weight decay (set by a group; 0 by default) is decoupled, as AdamW's
 * at lr 1e-3: p *= 1 - 1e-3 lr_scale wd before the learned update. State save/load use the
 * generic format ("state.<param>.<slot>"); state bytes are mn_lopt_state_bytes. o must outlive
 * the optimizer. */
MN_API mn_optimizer *mn_lopt_optimizer(const mn_lopt *o, const mn_params *params, float lr_scale);


#endif
