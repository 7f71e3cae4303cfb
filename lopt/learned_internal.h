/* Internals of the learned optimizers (lopt/learned*.c, lstm_opt.c, mnemosyne.c, cam.c, hpe.c).
 * lopt sits above nn: they are small networks made of nn's layers.
 *
 * Data layout: a state covers n parameter tensors; their coordinates are flattened and
 * concatenated into P rows, so each step is one batch of ops over all coordinates (no loop over
 * tensors or coordinates). Per-coordinate state tensors have a P-long coordinate axis: the first
 * for the LSTM's h, c [P, H] and the moments [P], the last for the CAM states [H, 2M, d_h + 1, P]
 * (coordinates last makes the CAM recurrence element-wise over long contiguous rows).
 * Mnemosyne-T's CAM states have one entry per meta-token instead (B, tensor i owning
 * meta_offset[i] ..). */
#ifndef MN_LEARNED_INTERNAL_H
#define MN_LEARNED_INTERNAL_H

#include "nn/nn.h"
#include "lopt/lopt.h"
#include "optim/optimizer_internal.h"

#define LOPT_MAX_LSTM_LAYERS 3
#define LOPT_MAX_CAM_LAYERS 6
#define LOPT_MAX_SLOTS 8 /* fits MN_OPTIM_MAX_SLOTS: 2 per LSTM layer or 1 per CAM layer, + 2 moments */

/* One CAM layer : projections without bias, post-LN residuals. */
typedef struct {
    mn_linear query, key, value, output; /* [H r, d], [H r, d], [d, d], [d, d] */
    mn_norm norm1, norm2;
    mn_linear ffn1, ffn2;                /* [ffn, d], [d, ffn] */
    mn_tensor *tau_raw;                  /* [1] when tau is learned (tau = softplus(tau_raw)), else NULL */
    mn_tensor *omega;                    /* [M, r] orthogonal Gaussian features: fixed, not a weight */
} lopt_cam;

struct mn_lopt {
    mn_lopt_config cfg;
    uint64_t seed;
    mn_params weights;  /* the meta-parameters, named as in the checkpoint */
    mn_params features; /* fixed random features, saved under "features.*" */
    /* LSTM */
    mn_linear lstm[LOPT_MAX_LSTM_LAYERS]; /* gates (i, f, g, o) from [input, h]: [4 H, in + H] */
    /* Mnemosyne */
    mn_linear embed; /* e = W_in x + b_in: [d, F] */
    lopt_cam cam[LOPT_MAX_CAM_LAYERS];
    mn_block hpe[2]; /* Mnemosyne-T level-1 and level-2 Performer layers */
    /* head: LSTM [1, H]; Mnemosyne-C [2, d]; Mnemosyne-T head is the MLP head_fc1 -> GELU -> head_fc2 */
    mn_linear head, head_fc2;
};

/* Where tensor i's coordinates and meta-tokens are in the concatenated layout. */
typedef struct {
    int n;
    int64_t *numel, *offset;       /* [n] coordinates of tensor i: rows offset[i] .. offset[i] + numel[i] */
    int64_t total;                 /* P */
    int64_t *meta, *meta_offset;   /* [n] Mnemosyne-T meta-tokens of tensor i (0 for other kinds) */
    int64_t total_meta;            /* B */
} lopt_layout;

typedef enum { LOPT_ROWS_COORD, LOPT_ROWS_META } lopt_rows;

struct mn_lopt_state {
    mn_lopt_config cfg;            /* the config it was made for (checked against the optimizer) */
    lopt_layout lay;
    int *ndim;                     /* [n] */
    int64_t (*shape)[MN_MAX_DIMS]; /* [n] parameter shapes, checked at every step */
    int64_t *steps;                /* [n] steps per tensor (bias correction of the moments) */
    int64_t n_apply;
    int n_slots;
    mn_tensor *slot[LOPT_MAX_SLOTS];
    const char *slot_name[LOPT_MAX_SLOTS];
    lopt_rows slot_rows[LOPT_MAX_SLOTS];  /* what the slot's coordinate axis indexes */
    int slot_axis[LOPT_MAX_SLOTS];        /* which axis that is */
    bool recompute;                       /* recorded steps are checkpoints (mn_lopt_state_set_recompute) */
};

/* ---- learned.c: config, features, the shared step ------------------------------------------- */
/* The config fields by name (checkpoint metadata, adapter hyper-parameters, validation). */
typedef enum { LOPT_INT, LOPT_FLOAT, LOPT_BOOL } lopt_field_type;
typedef struct {
    const char *key;
    lopt_field_type type;
    size_t offset;
    double lo, hi;         /* accepted range */
    bool lo_open, hi_open; /* lo / hi themselves excluded */
} lopt_config_field;
extern const lopt_config_field lopt_config_fields[];
extern const int lopt_n_config_fields;
double lopt_config_get(const mn_lopt_config *cfg, const lopt_config_field *f);
void lopt_config_set(mn_lopt_config *cfg, const lopt_config_field *f, double v);
bool lopt_config_equal(const mn_lopt_config *a, const mn_lopt_config *b);
/* Allocates an optimizer of a valid config: networks built, weights initialised from seed. */
mn_lopt *lopt_create(const mn_lopt_config *cfg, uint64_t seed);
/* NULL if valid, else a static message naming the field. */
const char *lopt_config_problem(const mn_lopt_config *cfg);
int lopt_n_features(const mn_lopt_config *cfg); /* F: 2 or 4 */
/* Which input feature the untrained optimizers carry to their output (sign g, or m^/sqrt(v^+eps)). */
int lopt_carrier_feature(const mn_lopt_config *cfg);
/* g [P] -> [P, 2]: (log|g|/p, sign g) where |g| >= e^-p, else (-1, e^p g). */
mn_tensor *lopt_preprocess(mn_tensor *g, float p);
/* g [P], moments m, v [P], bias corrections bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (scalars or [P])
 * -> [P, 2]: g / sqrt(v^ + eps), m^ / sqrt(v^ + eps); *new_m, *new_v the advanced moments. */
mn_tensor *lopt_extended(mn_tensor *g, mn_tensor *m, mn_tensor *v, mn_tensor *bc1, mn_tensor *bc2,
                         const mn_lopt_config *cfg, mn_tensor **new_m, mn_tensor **new_v);
/* One step of the learned rule over the state's layout, without lr_scale: g [P] (concatenated
 * gradients) -> delta [P] such that theta += lr_scale * delta; new_slot[k] replaces s->slot[k].
 * Uses s->steps for the bias corrections. Results belong to the current scope. */
mn_tensor *lopt_step(const mn_lopt *o, const mn_lopt_state *s, mn_tensor *g, mn_tensor **new_slot);
/* Tensor i's part of slot k: the range [start, stop) of the slot's coordinate axis. */
void lopt_slot_range(const mn_lopt_state *s, int k, int i, int *axis, int64_t *start, int64_t *stop);
/* Number of Mnemosyne-T meta-tokens for a tensor of n coordinates: ceil(n / chunk^2), pooled
 * further to at most max_meta. */
int64_t lopt_meta_tokens(int64_t n, int chunk, int max_meta);

/* ---- lstm_opt.c ----------------------------------------------------------------------------- */
void lopt_lstm_init(mn_lopt *o, mn_rng *rng);
void lopt_lstm_params(mn_lopt *o, mn_params *w);
void lopt_lstm_free(mn_lopt *o);
/* x [P, F], h[l], c[l] [P, H] -> u [P]; new_h[l], new_c[l] */
mn_tensor *lopt_lstm_forward(const mn_lopt *o, mn_tensor *x, mn_tensor *const *h, mn_tensor *const *c,
                             mn_tensor **new_h, mn_tensor **new_c);

/* ---- cam.c ------------------------------------------------------------------------------------ */
void lopt_cam_init(lopt_cam *c, const mn_lopt_config *cfg, mn_rng *rng);
void lopt_cam_params(lopt_cam *c, mn_params *w, mn_params *features, const char *prefix);
void lopt_cam_free(lopt_cam *c);
/* phi(z) = exp(-|z|^2/2) / sqrt(2M) [exp(w_j.z), exp(-w_j.z)]_j for each column z of [..., r, B],
 * omega [M, r] -> [..., 2M, B].
 * stabilise subtracts each column's max exponent (for queries only: the constant cancels between the
 * CAM's numerator and denominator; a key's would not, keys being summed over time). Unstabilised,
 * the exponent w.z - |z|^2/2 <= |w|^2/2, so it never overflows. */
mn_tensor *lopt_cam_phi(mn_tensor *z, mn_tensor *omega, bool stabilise);
/* The CAM recurrence on features, for B rows at once (the last axis): phi_q, phi_k [H, 2M, B],
 * v [H, d_h, B], S [H, 2M, d_h + 1, B] (memory N and normaliser Psi side by side), discount gamma
 * (gamma_t: the same as a [1] tensor when it is learned, else NULL):
 *   S' = gamma S + phi_k [v, 1]^T;  [num, den] = phi_q^T S';  a = num / (den + eps)  -> [H, d_h, B] */
mn_tensor *lopt_cam_attend(mn_tensor *phi_q, mn_tensor *phi_k, mn_tensor *v, mn_tensor *S, float gamma,
                           mn_tensor *gamma_t, float eps, mn_tensor **S_new);
/* One CAM layer: e [B, d], S [H, 2M, d_h + 1, B] -> e'' [B, d]; *S_new */
mn_tensor *lopt_cam_forward(const lopt_cam *c, const mn_lopt_config *cfg, mn_tensor *e, mn_tensor *S,
                            mn_tensor **S_new);

/* ---- hpe.c: hierarchical pooling encoding -------------------------------------------------- */
void lopt_hpe_init(mn_lopt *o, mn_rng *rng);
void lopt_hpe_params(mn_lopt *o, mn_params *w, mn_params *features);
void lopt_hpe_free(mn_lopt *o);
/* e [P, d] (every coordinate's embedding) -> meta-tokens [B, d] */
mn_tensor *lopt_hpe_encode(const mn_lopt *o, const lopt_layout *lay, mn_tensor *e);
/* I32 [P]: the meta-token row of each coordinate */
mn_tensor *lopt_hpe_coord_meta(const lopt_layout *lay, int chunk, int max_meta);

/* ---- mnemosyne.c ------------------------------------------------------------------------------ */
void lopt_mnemosyne_init(mn_lopt *o, mn_rng *rng);
void lopt_mnemosyne_params(mn_lopt *o, mn_params *w, mn_params *features);
void lopt_mnemosyne_free(mn_lopt *o);
/* x [P, F], CAM states [H, 2M, d_h + 1, P or B] -> [P, 2] ([u, s]) */
mn_tensor *lopt_mnemosyne_forward(const mn_lopt *o, const lopt_layout *lay, mn_tensor *x, mn_tensor *const *S,
                                  mn_tensor **S_new);

/* ---- learned_fast*.c: the fused step for when no graph is recorded --------------------------------- */
/* True when a step over these gradients would record nothing (grad mode off, or no weight, random
 * feature, gradient or state tensor requires grad) and MNEMO_LOPT_FAST is not "0". */
bool lopt_fast_usable(const mn_lopt *o, const mn_lopt_state *s, int n, mn_tensor *const *grads);
/* lopt_step's result without a graph, blockwise (learned_fast.h): grads[i] holds tensor i's numel_i
 * gradient values (any shape) -> delta [P] (current scope) such that theta += lr_scale * delta. Only
 * the tensors with active[i] (all when active is NULL) are stepped: the others get delta 0 and keep
 * their state. Slot tensors are written in place (Mnemosyne-T's CAM slots are replaced). Uses
 * s->steps for the bias corrections. */
mn_tensor *lopt_fast_step(const mn_lopt *o, mn_lopt_state *s, int n, mn_tensor *const *grads, const bool *active);

#endif
