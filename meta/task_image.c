/* Image-classification tasks on the library's models: an MLP (mn_mlp_model) and a ViT (mn_vit) on
 * Fashion-MNIST, run on the caller's parameters through mn_params_substitute. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared by the model tasks -------------------------------------------------------------------- */

mn_tensor *meta_sample_rows(mn_rng *rng, int64_t n, int64_t N) {
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    if (!idx) mn_fatal("meta_sample_rows: out of memory");
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)mn_rng_below(rng, (uint64_t)N);
    mn_tensor *t = mn_from_ints(1, &n, idx);
    free(idx);
    return t;
}

void meta_classify_test(mn_tensor *x, mn_tensor *y, int64_t chunk, mn_tensor *(*logits)(void *ctx, mn_tensor *rows),
                        void *ctx, double *loss, double *accuracy) {
    bool prev = mn_no_grad_begin();
    int64_t N = mn_size(x, 0);
    double sum = 0, correct = 0;
    for (int64_t s = 0; s < N; s += chunk) {
        mn_scope sc = mn_scope_begin();
        int64_t e = s + chunk < N ? s + chunk : N;
        mn_tensor *out = logits(ctx, mnt_contiguous(mnt_slice(x, 0, s, e, 1))), *labels = mnt_slice(y, 0, s, e, 1);
        sum += mn_item(mn_cross_entropy(out, labels, -100, 0.0f)) * (double)(e - s);
        correct += mn_accuracy(out, labels, -100) * (double)(e - s);
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    *loss = sum / (double)N;
    *accuracy = correct / (double)N;
}

void meta_clone_params(const mn_params *p, mn_tensor **out) {
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < p->count; i++) out[i] = mn_retain(mnt_clone(p->items[i].tensor));
    mn_scope_end(sc);
}

/* What both image tasks keep: the data (references) and the model whose parameters are substituted. */
typedef struct {
    mn_meta_task base;
    int batch;
    int64_t test_chunk;
    mn_tensor *x_train, *y_train; /* [N, 1, S, S] (MLP: [N, S*S]), [N] */
    mn_tensor *x_test, *y_test;   /* the evaluated part of the test set */
    const mn_params *params;      /* the model's */
    mn_tensor *(*forward)(const void *model, mn_tensor *x);
    const void *model;
} image_task;

/* x -> logits with params in place of the model's own */
static mn_tensor *image_logits(const image_task *t, mn_tensor *const *params, mn_tensor *x) {
    mn_params_substitute(t->params, params);
    mn_tensor *out = t->forward(t->model, x);
    mn_params_restore(t->params);
    return out;
}

static mn_meta_batch image_batch(const mn_meta_task *t, mn_rng *rng) {
    const image_task *m = (const image_task *)t;
    mn_tensor *idx = meta_sample_rows(rng, m->batch, mn_size(m->x_train, 0));
    return (mn_meta_batch){mn_gather_rows(m->x_train, idx), mn_gather_rows(m->y_train, idx), NULL};
}

static mn_tensor *image_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    return mn_cross_entropy(image_logits((const image_task *)t, params, b->x), b->y, -100, 0.0f);
}

typedef struct {
    const image_task *task;
    mn_tensor *const *params;
} test_ctx;

static mn_tensor *test_logits(void *ctx, mn_tensor *rows) {
    test_ctx *c = ctx;
    return image_logits(c->task, c->params, rows);
}

static void image_test(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric) {
    const image_task *m = (const image_task *)t;
    meta_classify_test(m->x_test, m->y_test, m->test_chunk, test_logits, &(test_ctx){m, params}, loss, metric);
}

static void image_release(image_task *m) {
    mn_release(m->x_train), mn_release(m->y_train), mn_release(m->x_test), mn_release(m->y_test);
}

/* The data of an image task: train images reshaped to [N, ...shape] (flat for MLPs), the test set cut to the
 * data's limit. */
static bool image_data(mn_meta_data *d, image_task *m, int image, bool flat, mn_err *err) {
    mn_tensor *xtr, *ytr, *xte, *yte;
    if (!mn_meta_data_images(d, image, true, &xtr, &ytr, err) || !mn_meta_data_images(d, image, false, &xte, &yte, err))
        return false;
    int64_t limit = meta_data_test_limit(d), N = mn_size(xte, 0), S = (int64_t)image * image;
    if (limit > 0 && limit < N) N = limit;
    mn_scope sc = mn_scope_begin();
    m->x_train = mn_retain(flat ? mnt_reshape(xtr, MN_SHAPE(mn_size(xtr, 0), S)) : xtr);
    m->y_train = mn_retain(ytr);
    mn_tensor *xt = mnt_slice(xte, 0, 0, N, 1);
    m->x_test = mn_retain(mnt_contiguous(flat ? mnt_reshape(xt, MN_SHAPE(N, S)) : xt));
    m->y_test = mn_retain(mnt_contiguous(mnt_slice(yte, 0, 0, N, 1)));
    mn_scope_end(sc);
    return true;
}

/* ---- MLP ---------------------------------------------------------------------------------------------- */

typedef struct {
    image_task base;
    mn_mlp_config cfg;
    mn_mlp_model *model;
} mlp_task;

enum { MLP_INIT = 0x1a17 };

/* PyTorch's Linear initialisation (mn_mlp_model_new) from the seed */
static void mlp_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const mlp_task *m = (const mlp_task *)t;
    mn_rng g = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + MLP_INIT);
    mn_mlp_model *fresh = mn_mlp_model_new(&m->cfg, &g);
    meta_clone_params(&fresh->params, out);
    mn_mlp_model_free(fresh);
}

static mn_tensor *mlp_forward(const void *model, mn_tensor *x) { return mn_mlp_model_forward(model, x); }

static void mlp_free(mn_meta_task *t) {
    mlp_task *m = (mlp_task *)t;
    image_release(&m->base);
    mn_mlp_model_free(m->model);
    free(m);
}

static const mn_meta_task_vt mlp_vt = {
    .init = mlp_init, .batch = image_batch, .loss = image_loss, .test = image_test, .free = mlp_free};

mn_meta_task *mn_meta_mlp_task(mn_meta_data *d, const mn_meta_mlp_config *c, mn_err *err) {
    int n = c->n_layers;
    if (n < 1 || n > 8) return mn_err_set(err, "mlp task: %d layers (1 to 8)", n), NULL;
    int image = c->sizes[0] == 784 ? 28 : c->sizes[0] == 196 ? 14 : 0;
    if (!image)
        return mn_err_set(err, "mlp task: %lld inputs (784 for 28x28 or 196 for 14x14 images)", (long long)c->sizes[0]),
               NULL;
    if (c->sizes[n] != 10)
        return mn_err_set(err, "mlp task: %lld outputs (Fashion-MNIST has 10 classes)", (long long)c->sizes[n]), NULL;
    for (int l = 1; l < n; l++)
        if (c->sizes[l] < 1 || c->sizes[l] > 65536)
            return mn_err_set(err, "mlp task: hidden width %lld", (long long)c->sizes[l]), NULL;
    if (c->batch < 1 || c->batch > 60000) return mn_err_set(err, "mlp task: batch %d", c->batch), NULL;
    mlp_task *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_meta_mlp_task: out of memory");
    if (!image_data(d, &m->base, image, true, err)) {
        free(m);
        return NULL;
    }
    m->cfg.n_layers = n;
    for (int l = 0; l <= n; l++) m->cfg.sizes[l] = c->sizes[l];
    m->cfg.hidden_act = c->act;
    mn_rng g = mn_rng_new(0); /* the model's own values are never used: every forward substitutes */
    m->model = mn_mlp_model_new(&m->cfg, &g);
    image_task *b = &m->base;
    b->base.vt = &mlp_vt;
    b->base.n_params = m->model->params.count;
    b->base.layout = &m->model->params;
    b->batch = c->batch;
    b->test_chunk = 2000;
    b->params = &m->model->params;
    b->forward = mlp_forward;
    b->model = m->model;
    int len = snprintf(b->base.desc, sizeof b->base.desc, "mlp %lld", (long long)c->sizes[0]);
    for (int l = 1; l <= n && len < 120; l++)
        len += snprintf(b->base.desc + len, sizeof b->base.desc - (size_t)len, "-%lld", (long long)c->sizes[l]);
    snprintf(b->base.desc + len, sizeof b->base.desc - (size_t)len, " %s b%d", mn_act_name(c->act), c->batch);
    return &b->base;
}

/* ---- ViT ---------------------------------------------------------------------------------------------- */

typedef struct {
    image_task base;
    mn_vit_config cfg;
    mn_vit *model;
} vit_task;

enum { VIT_INIT = 0x717 };

/* transformers' ViT initialisation (mn_vit_new) from the seed */
static void vit_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const vit_task *v = (const vit_task *)t;
    mn_rng g = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + VIT_INIT);
    mn_vit *fresh = mn_vit_new(&v->cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &g);
    meta_clone_params(&fresh->params, out);
    mn_vit_free(fresh);
}

static mn_tensor *vit_forward(const void *model, mn_tensor *x) { return mn_vit_forward(model, x, NULL); }

static void vit_free(mn_meta_task *t) {
    vit_task *v = (vit_task *)t;
    image_release(&v->base);
    mn_vit_free(v->model);
    mn_vit_config_free(&v->cfg);
    free(v);
}

static const mn_meta_task_vt vit_vt = {
    .init = vit_init, .batch = image_batch, .loss = image_loss, .test = image_test, .free = vit_free};

mn_meta_task *mn_meta_vit_task(mn_meta_data *d, const mn_meta_vit_config *c, mn_err *err) {
    if (c->image != 14 && c->image != 28) return mn_err_set(err, "vit task: image size %d (14 or 28)", c->image), NULL;
    if (c->batch < 1 || c->batch > 60000) return mn_err_set(err, "vit task: batch %d", c->batch), NULL;
    mn_vit_config cfg;
    mn_vit_config_named("vit-fm", &cfg); /* 1 channel, 10 labels, transformers' defaults otherwise */
    cfg.image_size = c->image, cfg.patch_size = c->patch;
    cfg.hidden_size = c->dim, cfg.num_hidden_layers = c->depth, cfg.num_attention_heads = c->heads;
    cfg.intermediate_size = c->mlp_dim;
    mn_err why;
    if (!mn_vit_config_check(&cfg, &why)) {
        mn_vit_config_free(&cfg);
        return mn_err_set(err, "vit task: %s", why.msg), NULL;
    }
    vit_task *v = calloc(1, sizeof *v);
    if (!v) mn_fatal("mn_meta_vit_task: out of memory");
    if (!image_data(d, &v->base, c->image, false, err)) {
        mn_vit_config_free(&cfg);
        free(v);
        return NULL;
    }
    v->cfg = cfg;
    mn_rng g = mn_rng_new(0); /* never used: every forward substitutes */
    v->model = mn_vit_new(&v->cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &g);
    image_task *b = &v->base;
    b->base.vt = &vit_vt;
    b->base.n_params = v->model->params.count;
    b->base.layout = &v->model->params;
    b->batch = c->batch;
    b->test_chunk = 250;
    b->params = &v->model->params;
    b->forward = vit_forward;
    b->model = v->model;
    snprintf(b->base.desc, sizeof b->base.desc, "vit %dx%d/p%d dim%d depth%d heads%d mlp%d b%d", c->image, c->image,
             c->patch, c->dim, c->depth, c->heads, c->mlp_dim, c->batch);
    return &b->base;
}
