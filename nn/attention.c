/* Softmax attention and multi-head self-attention in Hugging Face's layout. */
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>

/* Added to the scores of padded keys. Hugging Face uses finfo(float32).min;
 * -1e9 removes a key just as completely (exp underflows to 0) while score +
 * mask stays far from overflow, so a row whose keys are all padding still
 * gives finite, uniform weights instead of NaN. */
#define MN_MASK_NEG (-1e9f)

static void check_qkv(mn_tensor *q, mn_tensor *k, mn_tensor *v, const char *op) {
    char sq[96], sk[96], sv[96];
    bool ok = q->ndim == 4 && k->ndim == 4 && v->ndim == 4;
    for (int d = 0; ok && d < 2; d++) ok = q->shape[d] == k->shape[d] && k->shape[d] == v->shape[d];
    ok = ok && q->shape[3] == k->shape[3] && k->shape[2] == v->shape[2] && q->shape[3] == v->shape[3];
    if (!ok)
        mn_fatal("%s: expected q [B, H, Tq, D], k and v [B, H, Tk, D]; got q %s, k %s, v %s", op, mn_shape_str(q, sq),
                 mn_shape_str(k, sk), mn_shape_str(v, sv));
}

/* q [B, H, Tq, D], k, v [B, H, Tk, D], mask broadcastable to [B, H, Tq, Tk] -> [B, H, Tq, D] */
mn_tensor *mn_sdpa(mn_tensor *q, mn_tensor *k, mn_tensor *v, mn_tensor *mask, float dropout_p, mn_rng *rng) {
    check_qkv(q, k, v, "mn_sdpa");
    mn_scope sc = mn_scope_begin();
    float scale = 1.0f / sqrtf((float)q->shape[3]);
    /* Without dropout and with a padding mask (or none), one op per (batch, head) keeps each
     * head's scores in cache; otherwise scaling, mask and softmax make one pass over them. */
    bool per_head_mask = !mask || (mask->ndim == 4 && (mask->shape[0] == 1 || mask->shape[0] == q->shape[0]) &&
                                   mask->shape[1] == 1 && mask->shape[2] == 1 && mask->shape[3] == k->shape[2]);
    if (dropout_p >= 0 && dropout_p <= 1 && (dropout_p == 0 || !rng) && per_head_mask && !(mask && mask->requires_grad))
        return mn_scope_return(sc, mn_attention(q, k, v, scale, mask));
    mn_tensor *scores = mn_matmul(q, mn_transpose(k, -1, -2));
    mn_tensor *probs = mn_dropout(mn_softmax_scaled(scores, scale, mask), dropout_p, rng);
    return mn_scope_return(sc, mn_matmul(probs, v));
}

/* keep [B, T] (1 attend, 0 padding; float or int) -> [B, 1, 1, T] of 0 / -1e9 */
mn_tensor *mn_padding_mask(mn_tensor *keep) {
    if (keep->ndim != 2) {
        char b[96];
        mn_fatal("mn_padding_mask: keep must be [B, T], got %s", mn_shape_str(keep, b));
    }
    mn_scope sc = mn_scope_begin();
    mn_tensor *k = keep->dtype == MN_F32 ? keep : mnt_to_f32(keep);
    /* keep = 1 -> 0, keep = 0 -> MN_MASK_NEG; a constant, so no gradient */
    mn_tensor *m = mnt_affine(mnt_binary(MN_OP_EQ, k, mn_scalar(0.0f)), MN_MASK_NEG, 0.0f);
    return mn_scope_return(sc, mnt_reshape(m, MN_SHAPE(keep->shape[0], 1, 1, keep->shape[1])));
}

void mn_mha_init(mn_mha *a, int64_t dim, int64_t heads, bool qkv_bias, float std, mn_rng *rng) {
    if (heads < 1 || dim % heads != 0)
        mn_fatal("mn_mha_init: dim %lld is not a multiple of heads %lld", (long long)dim, (long long)heads);
    mn_linear_init(&a->query, dim, dim, qkv_bias, std, rng);
    mn_linear_init(&a->key, dim, dim, qkv_bias, std, rng);
    mn_linear_init(&a->value, dim, dim, qkv_bias, std, rng);
    mn_linear_init(&a->output, dim, dim, true, std, rng);
    a->heads = heads;
    a->omega = NULL;
}

void mn_mha_use_performer(mn_mha *a, int64_t m, mn_rng *rng) {
    int64_t head_dim = a->query.weight->shape[0] / a->heads;
    mn_scope sc = mn_scope_begin();
    mn_tensor *omega = mn_retain(mn_favor_features(m, head_dim, rng));
    mn_scope_end(sc);
    mn_release(a->omega);
    a->omega = omega;
}

/* [B, T, H * Dh] -> [B, H, T, Dh]: view as [B, T, H, Dh], then move heads forward (as HF does) */
static mn_tensor *split_heads(mn_tensor *x, int64_t heads) {
    int64_t B = x->shape[0], T = x->shape[1], dim = x->shape[2];
    return mn_permute(mn_reshape(x, MN_SHAPE(B, T, heads, dim / heads)), (int[]){0, 2, 1, 3});
}

/* queries from x[:, :n_query], keys and values from x [B, T, dim] -> [B, n_query, dim] */
static mn_tensor *mha_forward(const mn_mha *a, mn_tensor *x, int64_t n_query, mn_tensor *keep, float dropout_p,
                              mn_rng *rng, const char *op) {
    int64_t dim = a->query.weight->shape[1];
    char sx[96], sk[96];
    if (x->ndim != 3 || x->shape[2] != dim)
        mn_fatal("%s: x must be [B, T, %lld], got %s", op, (long long)dim, mn_shape_str(x, sx));
    if (keep && (keep->ndim != 2 || keep->shape[0] != x->shape[0] || keep->shape[1] != x->shape[1]))
        mn_fatal("%s: keep %s does not match x %s", op, mn_shape_str(keep, sk), mn_shape_str(x, sx));
    if (n_query < 1 || n_query > x->shape[1])
        mn_fatal("%s: n_query %lld is outside [1, %lld]", op, (long long)n_query, (long long)x->shape[1]);
    mn_scope sc = mn_scope_begin();
    mn_tensor *xq = n_query == x->shape[1] ? x : mn_slice(x, 1, 0, n_query, 1);
    mn_tensor *q = split_heads(mn_linear_forward(&a->query, xq), a->heads);
    mn_tensor *k = split_heads(mn_linear_forward(&a->key, x), a->heads);
    mn_tensor *v = split_heads(mn_linear_forward(&a->value, x), a->heads);
    mn_tensor *ctx;
    if (a->omega) ctx = mn_favor_attention(q, k, v, a->omega, keep, false);
    else ctx = mn_sdpa(q, k, v, keep ? mn_padding_mask(keep) : NULL, dropout_p, rng);
    /* [B, H, Tq, Dh] -> [B, Tq, H, Dh] -> [B, Tq, dim] */
    ctx = mn_reshape(mn_permute(ctx, (int[]){0, 2, 1, 3}), MN_SHAPE(x->shape[0], n_query, dim));
    return mn_scope_return(sc, mn_linear_forward(&a->output, ctx));
}

/* x [B, T, dim], keep [B, T] or NULL -> [B, T, dim] */
mn_tensor *mn_mha_forward(const mn_mha *a, mn_tensor *x, mn_tensor *keep, float dropout_p, mn_rng *rng) {
    return mha_forward(a, x, x->ndim == 3 ? x->shape[1] : 1, keep, dropout_p, rng, "mn_mha_forward");
}

/* x [B, T, dim], keep [B, T] or NULL -> [B, n_query, dim] */
mn_tensor *mn_mha_forward_first(const mn_mha *a, mn_tensor *x, int64_t n_query, mn_tensor *keep, float dropout_p,
                                mn_rng *rng) {
    return mha_forward(a, x, n_query, keep, dropout_p, rng, "mn_mha_forward_first");
}

void mn_mha_params(mn_mha *a, mn_params *p, const char *self_prefix, const char *output_prefix) {
    char name[512];
    const char *parts[3] = {"query", "key", "value"};
    mn_linear *lin[3] = {&a->query, &a->key, &a->value};
    for (int i = 0; i < 3; i++) {
        if (self_prefix && *self_prefix) snprintf(name, sizeof name, "%s.%s", self_prefix, parts[i]);
        else snprintf(name, sizeof name, "%s", parts[i]);
        mn_linear_params(lin[i], p, name);
    }
    mn_linear_params(&a->output, p, output_prefix);
}

void mn_mha_free(mn_mha *a) {
    mn_linear_free(&a->query);
    mn_linear_free(&a->key);
    mn_linear_free(&a->value);
    mn_linear_free(&a->output);
    mn_release(a->omega);
    a->omega = NULL;
}
