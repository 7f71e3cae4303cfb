/* mnemo nn: layers and losses built from autograd ops.
 *
 * A layer is a plain struct that owns its parameter tensors (one reference
 * each). *_init creates the parameters from an explicit RNG, *_forward
 * computes with differentiable ops (so gradients, and gradients of gradients,
 * flow through), *_params lists the parameters under Hugging Face names below
 * a prefix, *_free drops the references. Shapes are in the comment above each
 * forward. Dropout takes an RNG: pass NULL (or p = 0) in eval mode. */
#ifndef MN_NN_H
#define MN_NN_H

#include "autograd/autograd.h"

/* ---- activations ------------------------------------------------------------ */
typedef enum { MN_ACT_IDENTITY, MN_ACT_RELU, MN_ACT_GELU, MN_ACT_TANH, MN_ACT_SIGMOID } mn_act;
MN_API mn_tensor *mn_activate(mn_act act, mn_tensor *x);
/* "relu", "gelu" (exact erf form, as Hugging Face's "gelu"), "tanh", "sigmoid",
 * "identity"/"linear"; false if unknown. */
MN_API bool mn_act_parse(const char *name, mn_act *out);
MN_API const char *mn_act_name(mn_act act);

/* ---- Linear: y = x W^T + b ----------------------------------------------------- */
typedef struct {
    mn_tensor *weight; /* [out, in] */
    mn_tensor *bias;   /* [out] or NULL */
} mn_linear;
/* std > 0: weight ~ N(0, std), bias = 0 (the Transformer convention);
 * std == 0: PyTorch's default, weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
MN_API void mn_linear_init(mn_linear *l, int64_t in, int64_t out, bool bias, float std, mn_rng *rng);
/* [..., in] -> [..., out] */
MN_API mn_tensor *mn_linear_forward(const mn_linear *l, mn_tensor *x);
MN_API void mn_linear_params(mn_linear *l, mn_params *p, const char *prefix); /* prefix.weight, prefix.bias */
MN_API void mn_linear_free(mn_linear *l);

/* ---- Embedding ------------------------------------------------------------------ */
typedef struct {
    mn_tensor *weight; /* [num, dim] */
} mn_embed;
/* N(0, std); std == 0 gives PyTorch's default N(0, 1) */
MN_API void mn_embed_init(mn_embed *e, int64_t num, int64_t dim, float std, mn_rng *rng);
/* int32 [...] -> [..., dim] */
MN_API mn_tensor *mn_embed_forward(const mn_embed *e, mn_tensor *index);
MN_API void mn_embed_params(mn_embed *e, mn_params *p, const char *prefix); /* prefix.weight */
MN_API void mn_embed_free(mn_embed *e);

/* ---- LayerNorm over the last dim ---------------------------------------------------- */
typedef struct {
    mn_tensor *weight, *bias; /* [dim], ones / zeros */
    float eps;
} mn_norm;
MN_API void mn_norm_init(mn_norm *n, int64_t dim, float eps);
MN_API mn_tensor *mn_norm_forward(const mn_norm *n, mn_tensor *x);
MN_API void mn_norm_params(mn_norm *n, mn_params *p, const char *prefix); /* no weight decay */
MN_API void mn_norm_free(mn_norm *n);

/* ---- Dropout: zero with probability p, scale the rest by 1/(1-p) ------------------- */
/* The keep-mask comes from rng (mn_rng_uniform); x itself when rng is NULL or p == 0. p in [0, 1]. */
MN_API mn_tensor *mn_dropout(mn_tensor *x, float p, mn_rng *rng);

/* ---- MLP: Linear -> act -> ... -> Linear ---------------------------------------------- */
typedef struct {
    int n_layers;
    mn_linear *layers;
    mn_act act;
} mn_mlp;
/* sizes[0] is the input width, sizes[n] the output; n linear layers (PyTorch's default
 * init), act between them */
MN_API void mn_mlp_init(mn_mlp *m, int n, const int64_t *sizes, mn_act act, mn_rng *rng);
MN_API mn_tensor *mn_mlp_forward(const mn_mlp *m, mn_tensor *x);
MN_API void mn_mlp_params(mn_mlp *m, mn_params *p, const char *prefix); /* prefix.layers.{i}.weight/.bias */
MN_API void mn_mlp_free(mn_mlp *m);

/* ---- attention ---------------------------------------------------------------------- */
/* Scaled dot-product attention. q [B, H, Tq, D], k and v [B, H, Tk, D];
 * mask: additive, broadcastable to [B, H, Tq, Tk], or NULL. -> [B, H, Tq, D] */
MN_API mn_tensor *mn_sdpa(mn_tensor *q, mn_tensor *k, mn_tensor *v, mn_tensor *mask, float dropout_p, mn_rng *rng);
/* Additive mask [B, 1, 1, T] from a key padding mask [B, T] (1 = attend, 0 = padding; float or
 * int32): 0 for kept keys, -1e9 for padding. -1e9 removes a key as completely as Hugging Face's
 * finfo.min but cannot overflow, so a row with every key padded stays finite (uniform weights). */
MN_API mn_tensor *mn_padding_mask(mn_tensor *keep);

/* Performer FAVOR+ (positive random features, Choromanski et al. 2021). */
/* M orthogonal Gaussian rows of size d (blocks of a QR of a Gaussian matrix,
 * rows rescaled to chi(d)-distributed norms), drawn from rng. -> [M, d] */
MN_API mn_tensor *mn_favor_features(int64_t m, int64_t d, mn_rng *rng);
/* phi(x) = exp(w.x - |x|^2/2 - c) / sqrt(M) for x [..., d], omega [M, d]; the
 * stabiliser c is the max over features of each row, or (per_row false) over
 * features and the rows of each matrix (the last two axes of x), so one c is
 * shared by all keys of a [batch, head] (it cancels in attention). c is part
 * of the function (differentiated through mn_max). -> [..., M] */
MN_API mn_tensor *mn_favor_phi(mn_tensor *x, mn_tensor *omega, bool per_row);
/* Linear-time attention approximating softmax attention: q, k scaled by D^-1/4
 * inside; out = Q'(K'^T V) / Q'(K'^T 1) with phi per row for queries and per
 * matrix for keys. q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv]; keep [B, Tk]
 * (1/0) or NULL; a query with no kept key gives 0. causal: query i attends to keys
 * j <= i (requires Tq == Tk), by prefix sums (mn_cumsum) over [B, H, T, M, Dv]
 * outer products. -> [B, H, Tq, Dv] */
MN_API mn_tensor *mn_favor_attention(mn_tensor *q, mn_tensor *k, mn_tensor *v, mn_tensor *omega, mn_tensor *keep,
                              bool causal);

/* Multi-head self-attention with separate query/key/value projections and an
 * output projection (Hugging Face layout). */
typedef struct {
    mn_linear query, key, value, output;
    int64_t heads;
    mn_tensor *omega; /* FAVOR+ features when performer, else NULL */
} mn_mha;
MN_API void mn_mha_init(mn_mha *a, int64_t dim, int64_t heads, bool qkv_bias, float std, mn_rng *rng);
/* Switch to Performer FAVOR+ attention with m random features (drawn from rng). */
MN_API void mn_mha_use_performer(mn_mha *a, int64_t m, mn_rng *rng);
/* x [B, T, dim]; keep [B, T] (1 = token, 0 = padding) or NULL -> [B, T, dim].
 * dropout_p applies to the softmax probabilities (ignored with FAVOR+, which has none). */
MN_API mn_tensor *mn_mha_forward(const mn_mha *a, mn_tensor *x, mn_tensor *keep, float dropout_p, mn_rng *rng);
/* The same attention for the first n_query tokens only: queries from x[:, :n_query], keys and
 * values from all of x -> [B, n_query, dim], equal to mn_mha_forward(...)[:, :n_query]. */
MN_API mn_tensor *mn_mha_forward_first(const mn_mha *a, mn_tensor *x, int64_t n_query, mn_tensor *keep, float dropout_p,
                                mn_rng *rng);
/* self_prefix.{query,key,value}.*, output_prefix.* (the output dense) */
MN_API void mn_mha_params(mn_mha *a, mn_params *p, const char *self_prefix, const char *output_prefix);
MN_API void mn_mha_free(mn_mha *a);

/* ---- Transformer encoder block ------------------------------------------------------------
 * pre-LN (ViT):   h = x + attn(ln1(x));  y = h + fc2(act(fc1(ln2(h))))
 * post-LN (BERT): h = ln1(x + attn(x));  y = ln2(h + fc2(act(fc1(h)))) */
typedef struct {
    mn_mha attn;
    mn_norm ln1, ln2;
    mn_linear fc1, fc2;
    mn_act act;
    bool pre_ln;
    float dropout; /* hidden dropout after attention output and fc2 */
    float attn_dropout;
} mn_block;
/* q/k/v projections with bias; dropout and attn_dropout start at 0 (set the fields to enable). */
MN_API void mn_block_init(mn_block *b, int64_t dim, int64_t heads, int64_t mlp_dim, mn_act act, bool pre_ln, float eps,
                   float std, mn_rng *rng);
/* x [B, T, dim], keep [B, T] or NULL -> [B, T, dim]; rng NULL = eval (no dropout) */
MN_API mn_tensor *mn_block_forward(const mn_block *b, mn_tensor *x, mn_tensor *keep, mn_rng *rng);
/* The block's output at the first n_query tokens only, [B, n_query, dim]: every token still
 * serves as key and value, so this equals mn_block_forward(...)[:, :n_query] for a fraction of
 * the work when only those tokens are used (a classifier on the CLS token after the last block).
 * With dropout the random draws differ from the full block's (fewer of them). */
MN_API mn_tensor *mn_block_forward_first(const mn_block *b, mn_tensor *x, int64_t n_query, mn_tensor *keep, mn_rng *rng);
/* Hugging Face names below prefix (e.g. "encoder.layer.0"): pre-LN blocks use ViTLayer's
 * (attention.attention.{query,key,value}, attention.output.dense, intermediate.dense,
 * output.dense, layernorm_before = ln1, layernorm_after = ln2), post-LN blocks BertLayer's
 * (attention.self.*, attention.output.dense, attention.output.LayerNorm = ln1,
 * intermediate.dense, output.dense, output.LayerNorm = ln2), in named_parameters() order. */
MN_API void mn_block_params(mn_block *b, mn_params *p, const char *prefix);
MN_API void mn_block_free(mn_block *b);

/* ---- patch embedding: Conv2d(C, D, kernel P, stride P) via im2col + matmul ------------------ */
typedef struct {
    mn_tensor *weight; /* [D, C, P, P] */
    mn_tensor *bias;   /* [D] */
    int64_t patch;
} mn_patch_embed;
MN_API void mn_patch_embed_init(mn_patch_embed *pe, int64_t channels, int64_t dim, int64_t patch, float std, mn_rng *rng);
/* pixels [B, C, H, W] (H, W multiples of P) -> [B, (H/P)(W/P), D], patches in row-major order */
MN_API mn_tensor *mn_patch_embed_forward(const mn_patch_embed *pe, mn_tensor *pixels);
MN_API void mn_patch_embed_params(mn_patch_embed *pe, mn_params *p, const char *prefix);
MN_API void mn_patch_embed_free(mn_patch_embed *pe);

/* ---- losses -------------------------------------------------------------------------------------- */
/* Mean cross-entropy of logits [N, C] (or [..., C]) against int32 targets [N] (or [...]);
 * targets equal to ignore_index do not count (use -100 as PyTorch does; since valid
 * targets are in [0, C), any negative value that no target takes disables it);
 * label_smoothing in [0, 1]. Equals F.cross_entropy(reduction='mean', ignore_index,
 * label_smoothing). Returns a scalar (0 if all ignored, where PyTorch gives NaN).
 * A target outside [0, C) that is not ignore_index is an error. */
MN_API mn_tensor *mn_cross_entropy(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing);
MN_API mn_tensor *mn_mse_loss(mn_tensor *pred, mn_tensor *target); /* mean squared error, scalar */
/* Fraction of rows whose argmax equals the target (ignored rows excluded; 0 if none count). */
MN_API float mn_accuracy(mn_tensor *logits, mn_tensor *targets, int ignore_index);

#endif
