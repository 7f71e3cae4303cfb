/* Transformer encoder block: attention and MLP sub-layers with residuals, in
 * the pre-LN (ViT) or post-LN (BERT) arrangement. */
#include "nn/nn.h"

#include <stdio.h>

void mn_block_init(mn_block *b, int64_t dim, int64_t heads, int64_t mlp_dim, mn_act act, bool pre_ln, float eps,
                   float std, mn_rng *rng) {
    mn_mha_init(&b->attn, dim, heads, true, std, rng);
    mn_norm_init(&b->ln1, dim, eps);
    mn_norm_init(&b->ln2, dim, eps);
    mn_linear_init(&b->fc1, dim, mlp_dim, true, std, rng);
    mn_linear_init(&b->fc2, mlp_dim, dim, true, std, rng);
    b->act = act;
    b->pre_ln = pre_ln;
    b->dropout = 0.0f;
    b->attn_dropout = 0.0f;
}

/* [B, T, dim] -> [B, T, dim] */
static mn_tensor *feed_forward(const mn_block *b, mn_tensor *x, mn_rng *rng) {
    mn_tensor *h = mn_linear_forward(&b->fc2, mn_activate(b->act, mn_linear_forward(&b->fc1, x)));
    return mn_dropout(h, b->dropout, rng);
}

/* x [B, T, dim], keep [B, T] or NULL -> [B, n_query, dim]: everything after attention is per token */
static mn_tensor *block_forward(const mn_block *b, mn_tensor *x, int64_t n_query, mn_tensor *keep, mn_rng *rng) {
    mn_scope sc = mn_scope_begin();
    float attn_p = rng ? b->attn_dropout : 0.0f;
    bool all = x->ndim == 3 && n_query == x->shape[1];
    mn_tensor *y;
    if (b->pre_ln) {
        mn_tensor *a = mn_mha_forward_first(&b->attn, mn_norm_forward(&b->ln1, x), n_query, keep, attn_p, rng);
        mn_tensor *h = mn_add(all ? x : mn_slice(x, 1, 0, n_query, 1), mn_dropout(a, b->dropout, rng));
        y = mn_add(h, feed_forward(b, mn_norm_forward(&b->ln2, h), rng));
    } else {
        mn_tensor *a = mn_mha_forward_first(&b->attn, x, n_query, keep, attn_p, rng);
        mn_tensor *h = mn_norm_forward(&b->ln1, mn_add(all ? x : mn_slice(x, 1, 0, n_query, 1),
                                                       mn_dropout(a, b->dropout, rng)));
        y = mn_norm_forward(&b->ln2, mn_add(h, feed_forward(b, h, rng)));
    }
    return mn_scope_return(sc, y);
}

/* x [B, T, dim], keep [B, T] or NULL -> [B, T, dim] */
mn_tensor *mn_block_forward(const mn_block *b, mn_tensor *x, mn_tensor *keep, mn_rng *rng) {
    return block_forward(b, x, x->ndim == 3 ? x->shape[1] : 1, keep, rng);
}

/* x [B, T, dim], keep [B, T] or NULL -> [B, n_query, dim] */
mn_tensor *mn_block_forward_first(const mn_block *b, mn_tensor *x, int64_t n_query, mn_tensor *keep, mn_rng *rng) {
    return block_forward(b, x, n_query, keep, rng);
}

static void join_name(const char *prefix, const char *name, char *buf, size_t len) {
    if (prefix && *prefix) snprintf(buf, len, "%s.%s", prefix, name);
    else snprintf(buf, len, "%s", name);
}

void mn_block_params(mn_block *b, mn_params *p, const char *prefix) {
    char self[512], out[512], ln1[512], ln2[512], fc1[512], fc2[512];
    if (b->pre_ln) { /* ViTLayer */
        join_name(prefix, "attention.attention", self, sizeof self);
        join_name(prefix, "layernorm_before", ln1, sizeof ln1);
        join_name(prefix, "layernorm_after", ln2, sizeof ln2);
    } else {         /* BertLayer */
        join_name(prefix, "attention.self", self, sizeof self);
        join_name(prefix, "attention.output.LayerNorm", ln1, sizeof ln1);
        join_name(prefix, "output.LayerNorm", ln2, sizeof ln2);
    }
    join_name(prefix, "attention.output.dense", out, sizeof out);
    join_name(prefix, "intermediate.dense", fc1, sizeof fc1);
    join_name(prefix, "output.dense", fc2, sizeof fc2);
    /* in the order of PyTorch's named_parameters() for each layout */
    mn_mha_params(&b->attn, p, self, out);
    if (!b->pre_ln) mn_norm_params(&b->ln1, p, ln1);
    mn_linear_params(&b->fc1, p, fc1);
    mn_linear_params(&b->fc2, p, fc2);
    if (!b->pre_ln) mn_norm_params(&b->ln2, p, ln2);
    if (b->pre_ln) {
        mn_norm_params(&b->ln1, p, ln1);
        mn_norm_params(&b->ln2, p, ln2);
    }
}

void mn_block_free(mn_block *b) {
    mn_mha_free(&b->attn);
    mn_norm_free(&b->ln1);
    mn_norm_free(&b->ln2);
    mn_linear_free(&b->fc1);
    mn_linear_free(&b->fc2);
}
