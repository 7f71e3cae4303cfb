/* Tiny Vision Transformers on Fashion-MNIST as meta-training tasks (spec/meta_training.md: "later: tiny
 * Transformers, so meta-training can also see attention"). The model is written out functionally from mn_* ops
 * over a flat parameter list, so the learned optimizer's updated parameters (graph nodes during an unroll) flow
 * straight into the loss: patch embedding, CLS token and position embeddings, pre-LN blocks (softmax attention,
 * GELU MLP), a final LayerNorm and a linear head on the CLS token, as models/vit.c. */
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mn_meta_task base;
    vit_task_config cfg;
    int64_t tokens, patch_dim;                      /* patches per image, pixels per patch */
    mn_tensor *x_train, *y_train, *x_test, *y_test; /* [N, 1, S, S], [N] (references) */
} vit_meta_task;

enum { VIT_INIT = 0x71a5, VIT_TEST_IMAGES = 2000 };
enum { P_PATCH_W, P_PATCH_B, P_CLS, P_POS, P_GLOBAL }; /* then per block, then the final norm and head */
/* clang-format off */
enum { B_LN1_W, B_LN1_B, B_QKV_W, B_QKV_B, B_OUT_W, B_OUT_B, B_LN2_W, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B,
       B_COUNT };
/* clang-format on */

static int head_index(const vit_task_config *c) { return P_GLOBAL + c->depth * B_COUNT; }

/* Weights N(0, 0.02²) (the Hugging Face ViT initialiser), biases 0, LayerNorm weights 1. */
static void vit_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const vit_meta_task *v = (const vit_meta_task *)t;
    const vit_task_config *c = &v->cfg;
    int64_t D = c->dim, F = c->mlp_dim, T = v->tokens + 1;
    mn_rng g = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + VIT_INIT);
    mn_scope sc = mn_scope_begin();
#define NORMAL(...) mn_retain(mn_randn_gen(&g, __VA_ARGS__, 0.0f, 0.02f))
    out[P_PATCH_W] = NORMAL(MN_SHAPE(v->patch_dim, D));
    out[P_PATCH_B] = mn_retain(mn_zeros(MN_SHAPE(D)));
    out[P_CLS] = NORMAL(MN_SHAPE(1, 1, D));
    out[P_POS] = NORMAL(MN_SHAPE(T, D));
    for (int l = 0; l < c->depth; l++) {
        mn_tensor **b = out + P_GLOBAL + l * B_COUNT;
        b[B_LN1_W] = mn_retain(mn_ones(MN_SHAPE(D))), b[B_LN1_B] = mn_retain(mn_zeros(MN_SHAPE(D)));
        b[B_QKV_W] = NORMAL(MN_SHAPE(D, 3 * D)), b[B_QKV_B] = mn_retain(mn_zeros(MN_SHAPE(3 * D)));
        b[B_OUT_W] = NORMAL(MN_SHAPE(D, D)), b[B_OUT_B] = mn_retain(mn_zeros(MN_SHAPE(D)));
        b[B_LN2_W] = mn_retain(mn_ones(MN_SHAPE(D))), b[B_LN2_B] = mn_retain(mn_zeros(MN_SHAPE(D)));
        b[B_FC1_W] = NORMAL(MN_SHAPE(D, F)), b[B_FC1_B] = mn_retain(mn_zeros(MN_SHAPE(F)));
        b[B_FC2_W] = NORMAL(MN_SHAPE(F, D)), b[B_FC2_B] = mn_retain(mn_zeros(MN_SHAPE(D)));
    }
    int h = head_index(c);
    out[h] = mn_retain(mn_ones(MN_SHAPE(D))), out[h + 1] = mn_retain(mn_zeros(MN_SHAPE(D)));
    out[h + 2] = NORMAL(MN_SHAPE(D, 10)), out[h + 3] = mn_retain(mn_zeros(MN_SHAPE(10)));
#undef NORMAL
    mn_scope_end(sc);
}

/* images [B, 1, S, S] -> patches [B, T, p*p] (row-major patches, row-major pixels within one) */
static mn_tensor *patchify(const vit_meta_task *v, mn_tensor *x) {
    int64_t B = mn_size(x, 0), p = v->cfg.patch, n = v->cfg.image / p;
    mn_tensor *r = mnt_reshape(x, MN_SHAPE(B, n, p, n, p));
    return mnt_reshape(mnt_contiguous(mnt_permute(r, (int[]){0, 1, 3, 2, 4})), MN_SHAPE(B, n * n, p * p));
}

static mn_meta_batch vit_batch(const mn_meta_task *t, mn_rng *rng) {
    const vit_meta_task *v = (const vit_meta_task *)t;
    mn_tensor *idx = task_sample_rows(rng, v->cfg.batch, mn_size(v->x_train, 0));
    return (mn_meta_batch){patchify(v, mn_gather_rows(v->x_train, idx)), mn_gather_rows(v->y_train, idx)};
}

/* [B, T, H*Dh] -> [B, H, T, Dh] */
static mn_tensor *split_heads(mn_tensor *x, int64_t H) {
    int64_t B = mn_size(x, 0), T = mn_size(x, 1), D = mn_size(x, 2);
    return mn_permute(mn_reshape(x, MN_SHAPE(B, T, H, D / H)), (int[]){0, 2, 1, 3});
}

/* patches [B, T, P] -> logits [B, 10] */
static mn_tensor *vit_logits(const vit_meta_task *v, mn_tensor *const *p, mn_tensor *patches) {
    const vit_task_config *c = &v->cfg;
    int64_t B = mn_size(patches, 0), T = v->tokens + 1, D = c->dim, H = c->heads;
    const float eps = 1e-12f; /* Hugging Face ViT's layer_norm_eps */
    mn_tensor *cls = mn_expand(p[P_CLS], MN_SHAPE(B, 1, D));
    mn_tensor *h = mn_concat(2, (mn_tensor *[]){cls, mn_add(mn_matmul(patches, p[P_PATCH_W]), p[P_PATCH_B])}, 1);
    h = mn_add(h, p[P_POS]);
    for (int l = 0; l < c->depth; l++) {
        mn_tensor *const *b = p + P_GLOBAL + l * B_COUNT;
        mn_tensor *qkv = mn_add(mn_matmul(mn_layernorm(h, b[B_LN1_W], b[B_LN1_B], eps), b[B_QKV_W]), b[B_QKV_B]);
        mn_tensor *q = split_heads(mn_slice(qkv, 2, 0, D, 1), H), *k = split_heads(mn_slice(qkv, 2, D, 2 * D, 1), H),
                  *val = split_heads(mn_slice(qkv, 2, 2 * D, 3 * D, 1), H);
        mn_tensor *a = mn_attention(q, k, val, 1.0f / sqrtf((float)(D / H)), NULL); /* [B, H, T, Dh] */
        a = mn_reshape(mn_permute(a, (int[]){0, 2, 1, 3}), MN_SHAPE(B, T, D));
        h = mn_add(h, mn_add(mn_matmul(a, b[B_OUT_W]), b[B_OUT_B]));
        mn_tensor *m = mn_gelu(mn_add(mn_matmul(mn_layernorm(h, b[B_LN2_W], b[B_LN2_B], eps), b[B_FC1_W]), b[B_FC1_B]));
        h = mn_add(h, mn_add(mn_matmul(m, b[B_FC2_W]), b[B_FC2_B]));
    }
    int hi = head_index(c);
    mn_tensor *first = mn_reshape(mn_slice(h, 1, 0, 1, 1), MN_SHAPE(B, D));
    return mn_add(mn_matmul(mn_layernorm(first, p[hi], p[hi + 1], eps), p[hi + 2]), p[hi + 3]);
}

static mn_tensor *vit_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    return mn_cross_entropy(vit_logits((const vit_meta_task *)t, params, b->x), b->y, -100, 0.0f);
}

typedef struct {
    const vit_meta_task *task;
    mn_tensor *const *params;
} vit_test_ctx;

static mn_tensor *vit_test_logits(void *ctx, mn_tensor *rows) {
    vit_test_ctx *c = ctx;
    return vit_logits(c->task, c->params, patchify(c->task, rows));
}

static void vit_test(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric) {
    const vit_meta_task *v = (const vit_meta_task *)t;
    task_classify_test(v->x_test, v->y_test, 500, vit_test_logits, &(vit_test_ctx){v, params}, loss, metric);
}

static void vit_meta_free(mn_meta_task *t) {
    vit_meta_task *v = (vit_meta_task *)t;
    mn_release(v->x_train), mn_release(v->y_train), mn_release(v->x_test), mn_release(v->y_test);
    free(v);
}

static const mn_meta_task_vt vit_vt = {
    .init = vit_init, .batch = vit_batch, .loss = vit_loss, .test = vit_test, .free = vit_meta_free};

mn_meta_task *vit_meta_task_new(task_data *d, const vit_task_config *c, mn_err *err) {
    if (c->image != 14 && c->image != 28) return mn_err_set(err, "vit task: image size %d (14 or 28)", c->image), NULL;
    if (c->patch < 1 || c->image % c->patch)
        return mn_err_set(err, "vit task: patch %d does not divide the image size %d", c->patch, c->image), NULL;
    if (c->dim < 1 || c->dim > 1024 || c->heads < 1 || c->dim % c->heads)
        return mn_err_set(err, "vit task: dim %d with %d heads (heads must divide dim)", c->dim, c->heads), NULL;
    if (c->depth < 1 || c->depth > 12 || c->mlp_dim < 1 || c->mlp_dim > 4096 || c->batch < 1 || c->batch > 4096)
        return mn_err_set(err, "vit task: depth %d, mlp %d, batch %d", c->depth, c->mlp_dim, c->batch), NULL;
    mn_tensor *xtr, *ytr, *xte, *yte;
    if (!task_data_images(d, c->image, true, &xtr, &ytr, err) || !task_data_images(d, c->image, false, &xte, &yte, err))
        return NULL;
    vit_meta_task *v = calloc(1, sizeof *v);
    if (!v) mn_fatal("vit_meta_task_new: out of memory");
    v->base.vt = &vit_vt;
    v->cfg = *c;
    v->base.n_params = head_index(c) + 4;
    int64_t n = c->image / c->patch;
    v->tokens = n * n;
    v->patch_dim = (int64_t)c->patch * c->patch;
    int64_t limit = task_data_test_limit(d), N = mn_size(xte, 0);
    if (limit <= 0 || limit > VIT_TEST_IMAGES) limit = VIT_TEST_IMAGES; /* attention over every test image is slow */
    if (limit < N) N = limit;
    mn_scope sc = mn_scope_begin();
    v->x_train = mn_retain(xtr), v->y_train = mn_retain(ytr);
    v->x_test = mn_retain(mnt_contiguous(mnt_slice(xte, 0, 0, N, 1)));
    v->y_test = mn_retain(mnt_contiguous(mnt_slice(yte, 0, 0, N, 1)));
    mn_scope_end(sc);
    snprintf(v->base.desc, sizeof v->base.desc, "vit %dx%d/p%d dim%d depth%d heads%d mlp%d b%d", c->image, c->image,
             c->patch, c->dim, c->depth, c->heads, c->mlp_dim, c->batch);
    return &v->base;
}
