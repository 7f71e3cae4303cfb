/* The quadratic task family of meta-training: random convex least-squares problems |W x - y|^2
 * with minibatches of rows, small enough for tests and quick meta-training runs. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    mn_meta_task base;
    int dim, rows;
    mn_tensor *W; /* [rows, dim] */
    mn_tensor *y; /* [rows] */
} quad_task;

enum { QUAD_TASK = 0x9ad, QUAD_INIT = 0x1417 };

/* x0 ~ N(0, 1) [dim] */
static void quad_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const quad_task *q = (const quad_task *)t;
    mn_rng g = mn_rng_new(meta_mix(seed ^ QUAD_INIT));
    mn_scope sc = mn_scope_begin();
    out[0] = mn_retain(mn_randn_gen(&g, MN_SHAPE(q->dim), 0.0f, 1.0f));
    mn_scope_end(sc);
}

/* dim rows drawn with replacement: x [dim, dim] (rows of W), y [dim] */
static mn_meta_batch quad_batch(const mn_meta_task *t, mn_rng *rng) {
    const quad_task *q = (const quad_task *)t;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)q->dim);
    if (!idx) mn_fatal("quadratic task: out of memory");
    for (int i = 0; i < q->dim; i++) idx[i] = (int32_t)mn_rng_below(rng, (uint64_t)q->rows);
    mn_tensor *index = mn_from_ints(MN_SHAPE(q->dim), idx);
    free(idx);
    return (mn_meta_batch){mnt_index_select(q->W, 0, index), mnt_index_select(q->y, 0, index)};
}

/* mean over the batch rows of (w_r . x - y_r)^2 -> scalar */
static mn_tensor *quad_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    const quad_task *q = (const quad_task *)t;
    mn_tensor *pred = mn_reshape(mn_matmul(b->x, mn_reshape(params[0], MN_SHAPE(q->dim, 1))), MN_SHAPE(-1));
    return mn_mean(mn_square(mn_sub(pred, b->y)), MN_ALL, false);
}

static void quad_test(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric) {
    const quad_task *q = (const quad_task *)t;
    bool prev = mn_no_grad_begin();
    mn_scope sc = mn_scope_begin();
    mn_meta_batch all = {q->W, q->y};
    *loss = mn_item(quad_loss(t, params, &all));
    *metric = NAN;
    mn_scope_end(sc);
    mn_no_grad_end(prev);
}

static void quad_free(mn_meta_task *t) {
    quad_task *q = (quad_task *)t;
    mn_release(q->W);
    mn_release(q->y);
    free(q);
}

static const mn_meta_task_vt quad_vt = {
    .init = quad_init, .batch = quad_batch, .loss = quad_loss, .test = quad_test, .free = quad_free};

/* W [2d, d] ~ N(0, s^2) with s log-uniform in [e^-1, e]; y = W x* + noise, x* ~ N(0, 1), noise
 * N(0, 0.01 d s^2): from x0 ~ N(0, 1) the loss starts near 2 d s^2 and its minimum is about 200
 * times smaller, so log L has room to fall while the problem stays convex. */
mn_meta_task *mn_meta_quadratic_task(int dim, uint64_t seed) {
    if (dim < 1 || dim > 100000) mn_fatal("mn_meta_quadratic_task: dimension %d", dim);
    quad_task *q = calloc(1, sizeof *q);
    if (!q) mn_fatal("mn_meta_quadratic_task: out of memory");
    q->base.vt = &quad_vt;
    q->base.n_params = 1;
    q->dim = dim, q->rows = 2 * dim;
    mn_rng g = mn_rng_new(meta_mix(seed ^ QUAD_TASK));
    float u;
    mn_rng_uniform(&g, 1, &u, -1.0f, 1.0f);
    float s = expf(u);
    mn_scope sc = mn_scope_begin();
    mn_tensor *W = mn_randn_gen(&g, MN_SHAPE(q->rows, dim), 0.0f, s);
    mn_tensor *xstar = mn_randn_gen(&g, MN_SHAPE(dim, 1), 0.0f, 1.0f);
    mn_tensor *noise = mn_randn_gen(&g, MN_SHAPE(q->rows, 1), 0.0f, 0.1f * s * sqrtf((float)dim));
    q->W = mn_retain(W);
    q->y = mn_retain(mnt_reshape(mnt_binary(MN_OP_ADD, mnt_matmul(W, xstar), noise), MN_SHAPE(-1)));
    mn_scope_end(sc);
    snprintf(q->base.desc, sizeof q->base.desc, "quadratic d%d s%.3g", dim, (double)s);
    return &q->base;
}

typedef struct {
    mn_meta_family base;
    int min_dim, max_dim;
} quad_family;

static mn_meta_task *quad_sample(const mn_meta_family *f, uint64_t seed) {
    const quad_family *qf = (const quad_family *)f;
    uint64_t span = (uint64_t)(qf->max_dim - qf->min_dim + 1);
    return mn_meta_quadratic_task(qf->min_dim + (int)(meta_mix(seed) % span), seed);
}

static void quad_family_free(mn_meta_family *f) { free(f); }

mn_meta_family *mn_meta_quadratic_family(int min_dim, int max_dim) {
    if (min_dim < 1 || max_dim < min_dim || max_dim > 100000)
        mn_fatal("mn_meta_quadratic_family: dimensions [%d, %d]", min_dim, max_dim);
    quad_family *f = calloc(1, sizeof *f);
    if (!f) mn_fatal("mn_meta_quadratic_family: out of memory");
    f->min_dim = min_dim, f->max_dim = max_dim;
    snprintf(f->base.name, sizeof f->base.name, "quadratic:%d-%d", min_dim, max_dim);
    f->base.sample = quad_sample;
    f->base.free = quad_family_free;
    return &f->base;
}
