/* Tasks of the bench drivers: shared data, the mlp and quadratic families, MLP tasks, and the spec
 * strings of single evaluation tasks (ViT and BERT tasks are in tasks_models.c). */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cache_entry {
    char *key;
    void *value;
    void (*destroy)(void *value);
    struct cache_entry *next;
} cache_entry;

struct task_data {
    char *fm_dir, *fortunes_dir, *work_dir;
    int64_t test_limit;
    /* Fashion-MNIST [train/test][28 / 14 pixels]: x [N, 1, S, S], y [N]; loaded on first use */
    mn_tensor *x[2][2], *y[2];
    cache_entry *cache;
};

void *task_data_cache(task_data *d, const char *key, void *(*make)(task_data *d, const char *key, mn_err *err),
                      void (*destroy)(void *value), mn_err *err) {
    for (cache_entry *e = d->cache; e; e = e->next)
        if (!strcmp(e->key, key)) return e->value;
    void *value = make(d, key, err);
    if (!value) return NULL;
    cache_entry *e = calloc(1, sizeof *e);
    if (!e) mn_fatal("task_data_cache: out of memory");
    *e = (cache_entry){strdup(key), value, destroy, d->cache};
    d->cache = e;
    return value;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

task_data *task_data_new(const char *fm_dir, const char *fortunes_dir, const char *work_dir, int64_t test_limit) {
    task_data *d = calloc(1, sizeof *d);
    if (!d) mn_fatal("task_data_new: out of memory");
    d->fm_dir = dup_or_null(fm_dir);
    d->fortunes_dir = dup_or_null(fortunes_dir);
    d->work_dir = strdup(work_dir ? work_dir : ".");
    d->test_limit = test_limit;
    return d;
}

void task_data_free(task_data *d) {
    if (!d) return;
    while (d->cache) {
        cache_entry *e = d->cache;
        d->cache = e->next;
        e->destroy(e->value);
        free(e->key);
        free(e);
    }
    for (int s = 0; s < 2; s++) {
        mn_release(d->y[s]);
        for (int k = 0; k < 2; k++) mn_release(d->x[s][k]);
    }
    free(d->fm_dir);
    free(d->fortunes_dir);
    free(d->work_dir);
    free(d);
}

int64_t task_data_test_limit(const task_data *d) { return d->test_limit; }
const char *task_data_work_dir(const task_data *d) { return d->work_dir; }
const char *task_data_fortunes_dir(const task_data *d) { return d->fortunes_dir; }

bool task_data_images(task_data *d, int size, bool train, mn_tensor **x, mn_tensor **y, mn_err *err) {
    int s = train ? 0 : 1, k = size == 28 ? 0 : 1;
    if (size != 28 && size != 14) mn_fatal("task_data_images: size %d (28 or 14)", size);
    if (!d->y[s]) {
        mn_dataset ds;
        if (!mn_fashion_mnist_load(d->fm_dir, train, true, &ds, err)) return false;
        d->x[s][0] = mn_retain(ds.x);
        d->y[s] = mn_retain(ds.y);
        mn_dataset_free(&ds);
    }
    if (!d->x[s][k]) {
        /* antialiased bilinear downsampling, as PIL's resize */
        mn_scope sc = mn_scope_begin();
        d->x[s][k] = mn_retain(mn_image_resize(d->x[s][0], size, size));
        mn_scope_end(sc);
    }
    *x = d->x[s][k];
    *y = d->y[s];
    return true;
}

/* ---- spec strings ------------------------------------------------------------------------------------ */

int task_spec_fields(const char *spec, char (*fields)[64], int max) {
    int n = 0;
    const char *p = spec;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (n == max || len == 0 || len >= 64) return -1;
        memcpy(fields[n], p, len);
        fields[n++][len] = '\0';
        if (!colon) return n;
        p = colon + 1;
    }
}

bool task_spec_int(const char *field, const char *prefix, long lo, long hi, long *out) {
    size_t n = strlen(prefix);
    if (strncmp(field, prefix, n) || !field[n]) return false;
    char *end;
    errno = 0;
    long v = strtol(field + n, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

void task_classify_test(mn_tensor *x, mn_tensor *y, int64_t chunk, mn_tensor *(*logits)(void *ctx, mn_tensor *rows),
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

mn_tensor *task_sample_rows(mn_rng *rng, int64_t n, int64_t N) {
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    if (!idx) mn_fatal("task_sample_rows: out of memory");
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)mn_rng_below(rng, (uint64_t)N);
    mn_tensor *t = mn_from_ints(1, &n, idx);
    free(idx);
    return t;
}

/* ---- MLP tasks --------------------------------------------------------------------------------------- */

typedef struct {
    mn_meta_task base;
    mlp_task_config cfg;
    int image;                           /* 28 or 14 */
    mn_tensor *x_train, *y_train;        /* [N, S*S], [N] (references) */
    mn_tensor *x_test, *y_test;          /* the evaluated part of the test set */
} mlp_task;

enum { MLP_INIT = 0x1a17 };

/* W_l [in, out], b_l [out], both U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's Linear default) */
static void mlp_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const mlp_task *m = (const mlp_task *)t;
    mn_rng g = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + MLP_INIT);
    mn_scope sc = mn_scope_begin();
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int64_t in = m->cfg.sizes[l], o = m->cfg.sizes[l + 1];
        float bound = 1.0f / sqrtf((float)in);
        out[2 * l] = mn_retain(mn_rand_gen(&g, MN_SHAPE(in, o), -bound, bound));
        out[2 * l + 1] = mn_retain(mn_rand_gen(&g, MN_SHAPE(o), -bound, bound));
    }
    mn_scope_end(sc);
}

static mn_meta_batch mlp_batch(const mn_meta_task *t, mn_rng *rng) {
    const mlp_task *m = (const mlp_task *)t;
    mn_tensor *idx = task_sample_rows(rng, m->cfg.batch, mn_size(m->x_train, 0));
    return (mn_meta_batch){mn_gather_rows(m->x_train, idx), mn_gather_rows(m->y_train, idx)};
}

/* x [B, in] -> logits [B, 10] */
static mn_tensor *mlp_logits(const mlp_task *m, mn_tensor *const *params, mn_tensor *x) {
    mn_tensor *h = x;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        h = mn_add(mn_matmul(h, params[2 * l]), params[2 * l + 1]);
        if (l + 1 < m->cfg.n_layers) h = mn_activate(m->cfg.act, h);
    }
    return h;
}

static mn_tensor *mlp_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    const mlp_task *m = (const mlp_task *)t;
    return mn_cross_entropy(mlp_logits(m, params, b->x), b->y, -100, 0.0f);
}

typedef struct {
    const mlp_task *task;
    mn_tensor *const *params;
} mlp_test_ctx;

static mn_tensor *mlp_test_logits(void *ctx, mn_tensor *rows) {
    mlp_test_ctx *c = ctx;
    return mlp_logits(c->task, c->params, rows);
}

static void mlp_test(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric) {
    const mlp_task *m = (const mlp_task *)t;
    task_classify_test(m->x_test, m->y_test, 2000, mlp_test_logits, &(mlp_test_ctx){m, params}, loss, metric);
}

static void mlp_free(mn_meta_task *t) {
    mlp_task *m = (mlp_task *)t;
    mn_release(m->x_train), mn_release(m->y_train), mn_release(m->x_test), mn_release(m->y_test);
    free(m);
}

static const mn_meta_task_vt mlp_vt = {
    .init = mlp_init, .batch = mlp_batch, .loss = mlp_loss, .test = mlp_test, .free = mlp_free};

mn_meta_task *mlp_task_new(task_data *d, const mlp_task_config *c, mn_err *err) {
    int n = c->n_layers;
    if (n < 1 || n > 8) return mn_err_set(err, "mlp task: %d layers (1 to 8)", n), NULL;
    int image = c->sizes[0] == 784 ? 28 : c->sizes[0] == 196 ? 14 : 0;
    if (!image) return mn_err_set(err, "mlp task: %lld inputs (784 for 28x28 or 196 for 14x14 images)",
                                  (long long)c->sizes[0]), NULL;
    if (c->sizes[n] != 10) return mn_err_set(err, "mlp task: %lld outputs (Fashion-MNIST has 10 classes)",
                                             (long long)c->sizes[n]), NULL;
    for (int l = 1; l < n; l++)
        if (c->sizes[l] < 1 || c->sizes[l] > 65536)
            return mn_err_set(err, "mlp task: hidden width %lld", (long long)c->sizes[l]), NULL;
    if (c->batch < 1 || c->batch > 60000) return mn_err_set(err, "mlp task: batch %d", c->batch), NULL;
    mn_tensor *xtr, *ytr, *xte, *yte;
    if (!task_data_images(d, image, true, &xtr, &ytr, err) || !task_data_images(d, image, false, &xte, &yte, err))
        return NULL;
    mlp_task *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mlp_task_new: out of memory");
    m->base.vt = &mlp_vt;
    m->base.n_params = 2 * n;
    m->cfg = *c;
    m->image = image;
    int64_t limit = task_data_test_limit(d), N = mn_size(xte, 0);
    if (limit > 0 && limit < N) N = limit;
    mn_scope sc = mn_scope_begin();
    m->x_train = mn_retain(mnt_reshape(xtr, MN_SHAPE(mn_size(xtr, 0), c->sizes[0])));
    m->y_train = mn_retain(ytr);
    m->x_test = mn_retain(mnt_contiguous(mnt_reshape(mnt_slice(xte, 0, 0, N, 1), MN_SHAPE(N, c->sizes[0]))));
    m->y_test = mn_retain(mnt_contiguous(mnt_slice(yte, 0, 0, N, 1)));
    mn_scope_end(sc);
    int len = snprintf(m->base.desc, sizeof m->base.desc, "mlp %lld", (long long)c->sizes[0]);
    for (int l = 1; l <= n && len < 120; l++)
        len += snprintf(m->base.desc + len, sizeof m->base.desc - (size_t)len, "-%lld", (long long)c->sizes[l]);
    snprintf(m->base.desc + len, sizeof m->base.desc - (size_t)len, " %s b%d", mn_act_name(c->act), c->batch);
    return &m->base;
}

/* ---- families ---------------------------------------------------------------------------------------- */

typedef struct {
    mn_meta_family base;
    task_data *data;
    int image_size;    /* MLPs: 14, 28, or 0: either, drawn per task */
    int n_widths;
    int64_t widths[8]; /* MLP hidden widths, one drawn per layer */
    int vit_percent;   /* share of the tasks that are tiny ViTs (0: "mlp", 100: "vit") */
} image_family;

static mn_meta_task *mlp_sample(const image_family *mf, mn_rng *g) {
    static const mn_act acts[3] = {MN_ACT_RELU, MN_ACT_TANH, MN_ACT_SIGMOID};
    int image = mf->image_size ? mf->image_size : (mn_rng_below(g, 2) ? 28 : 14);
    mlp_task_config c = {.n_layers = 2 + (int)mn_rng_below(g, 2)};
    c.sizes[0] = (int64_t)image * image;
    for (int l = 1; l < c.n_layers; l++) c.sizes[l] = mf->widths[mn_rng_below(g, (uint64_t)mf->n_widths)];
    c.sizes[c.n_layers] = 10;
    c.act = acts[mn_rng_below(g, 3)];
    c.batch = 64 + (int)mn_rng_below(g, 65);
    mn_err err;
    mn_meta_task *t = mlp_task_new(mf->data, &c, &err);
    if (!t) mn_fatal("mlp family: %s", err.msg); /* the data was readable when the family was made */
    return t;
}

/* Tiny ViTs: 14x14 images in 2x2 patches or 28x28 in 7x7 (49 or 16 tokens), width 16-48, 1-2 blocks, 1-2
 * heads, MLP twice the width, batch 32-64 (smaller than the evaluation ViT, which stays held out). */
static mn_meta_task *vit_sample(const image_family *mf, mn_rng *g) {
    static const int dims[3] = {16, 32, 48};
    bool small = mn_rng_below(g, 2);
    vit_task_config c = {.image = small ? 14 : 28, .patch = small ? 2 : 7, .dim = dims[mn_rng_below(g, 3)]};
    c.depth = 1 + (int)mn_rng_below(g, 2);
    c.heads = 1 + (int)mn_rng_below(g, 2);
    c.mlp_dim = 2 * c.dim;
    c.batch = 32 + (int)mn_rng_below(g, 33);
    mn_err err;
    mn_meta_task *t = vit_meta_task_new(mf->data, &c, &err);
    if (!t) mn_fatal("vit family: %s", err.msg);
    return t;
}

/* The task a seed names: its own stream, so sampling does not depend on anything else. */
static mn_meta_task *image_sample(const mn_meta_family *f, uint64_t seed) {
    const image_family *mf = (const image_family *)f;
    mn_rng g = mn_rng_new(seed ^ 0x5a3b1e00d15ea5e5ull);
    /* the pure families draw nothing here, so "mlp" names the tasks it always did */
    bool vit = mf->vit_percent == 100 || (mf->vit_percent > 0 && (int)mn_rng_below(&g, 100) < mf->vit_percent);
    return vit ? vit_sample(mf, &g) : mlp_sample(mf, &g);
}

static void image_family_free(mn_meta_family *f) { free(f); }

/* "16,32,64" -> widths; false and err unless it is 1-8 integers in [1, 4096] */
static bool parse_widths(const char *s, int64_t *widths, int *n, mn_err *err) {
    *n = 0;
    for (const char *p = s;;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 1 || w > 4096 || *n == 8 || (*end && *end != ','))
            return mn_err_set(err, "mlp family: widths \"%s\": expected 1 to 8 comma-separated integers in [1, 4096]", s),
                   false;
        widths[(*n)++] = w;
        if (!*end) return true;
        p = end + 1;
    }
}

mn_meta_family *task_family_new(const char *name, task_data *d, int image_size, const char *widths, mn_err *err) {
    if (!strcmp(name, "quadratic")) return mn_meta_quadratic_family(10, 100);
    int vit_percent = !strcmp(name, "mlp") ? 0 : !strcmp(name, "vit") ? 100 : !strcmp(name, "mlp+vit") ? 50 : -1;
    if (vit_percent < 0)
        return mn_err_set(err, "unknown task family \"%s\" (mlp, vit, mlp+vit or quadratic)", name), NULL;
    if (image_size != 0 && image_size != 14 && image_size != 28)
        return mn_err_set(err, "mlp family: image size %d (14, 28, or 0 for both)", image_size), NULL;
    int64_t w[8];
    int n_widths;
    if (!parse_widths(widths ? widths : "16,32,64", w, &n_widths, err)) return NULL;
    /* read the data now, so that sampling cannot fail later */
    mn_tensor *x, *y;
    for (int s = 14; s <= 28; s += 14)
        if ((!image_size || image_size == s || vit_percent) &&
            (!task_data_images(d, s, true, &x, &y, err) || !task_data_images(d, s, false, &x, &y, err)))
            return NULL;
    image_family *f = calloc(1, sizeof *f);
    if (!f) mn_fatal("task_family_new: out of memory");
    f->data = d;
    f->image_size = image_size;
    f->n_widths = n_widths;
    memcpy(f->widths, w, sizeof w);
    f->vit_percent = vit_percent;
    /* the name a resumed run is checked against: "mlp:14", with ":W1,W2,..." unless the spec's widths */
    int len = 0, cap = (int)sizeof f->base.name;
    if (vit_percent < 100) {
        len = snprintf(f->base.name, sizeof f->base.name, "mlp:%s",
                       image_size == 14 ? "14" : image_size == 28 ? "28" : "14+28");
        bool spec_widths = n_widths == 3 && w[0] == 16 && w[1] == 32 && w[2] == 64;
        for (int i = 0; !spec_widths && i < n_widths && len < cap; i++)
            len += snprintf(f->base.name + len, (size_t)(cap - len), "%s%lld", i ? "," : ":", (long long)w[i]);
    }
    if (vit_percent > 0 && len < cap) snprintf(f->base.name + len, (size_t)(cap - len), "%svit", len ? "+" : "");
    f->base.sample = image_sample;
    f->base.free = image_family_free;
    return &f->base;
}

/* ---- evaluation tasks over a meta-task (mlp, quadratic) -------------------------------------------------- */

typedef struct {
    bench_task base;
    mn_meta_task *task;
    mn_tensor **params; /* the tensors of base.params, in the task's order */
    mn_rng data_rng;
} meta_bench_task;

static mn_tensor *meta_bench_loss(bench_task *t) {
    meta_bench_task *m = (meta_bench_task *)t;
    return mn_meta_task_loss(m->task, m->params, &m->data_rng);
}

static void meta_bench_evaluate(bench_task *t, double *loss, double *metric) {
    meta_bench_task *m = (meta_bench_task *)t;
    m->task->vt->test(m->task, m->params, loss, metric);
}

static void meta_bench_free(bench_task *t) {
    meta_bench_task *m = (meta_bench_task *)t;
    mn_params_free(&m->base.params);
    free(m->params);
    mn_meta_task_free(m->task);
    free(m);
}

static bench_task *meta_bench_new(const char *spec, mn_meta_task *task, uint64_t seed, bool classifier) {
    meta_bench_task *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("bench_task_new: out of memory");
    snprintf(m->base.spec, sizeof m->base.spec, "%s", spec);
    m->task = task;
    m->params = calloc((size_t)task->n_params, sizeof *m->params);
    task->vt->init(task, seed, m->params);
    for (int i = 0; i < task->n_params; i++) {
        char name[64];
        if (classifier) snprintf(name, sizeof name, "layers.%d.%s", i / 2, i % 2 ? "bias" : "weight");
        else snprintf(name, sizeof name, "x");
        mn_params_add(&m->base.params, NULL, name, mn_requires_grad(m->params[i], true), classifier && i % 2);
        mn_release(m->params[i]); /* the list holds the reference */
    }
    m->data_rng = mn_rng_new(seed * 0xd1342543de82ef95ull + 0xda7a);
    m->base.metric_name = classifier ? "accuracy" : NULL;
    m->base.train_loss = meta_bench_loss;
    m->base.evaluate = meta_bench_evaluate;
    m->base.free = meta_bench_free;
    return &m->base;
}

/* "mlp:784-48-48-10:tanh[:b128]" (batch 128 when not given) */
static bench_task *mlp_bench_new(const char *spec, char (*f)[64], int n, uint64_t seed, task_data *d, mn_err *err) {
    if (n != 3 && n != 4) return mn_err_set(err, "task \"%s\": expected mlp:SIZES:ACT[:bBATCH]", spec), NULL;
    mlp_task_config c = {0};
    const char *p = f[1];
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 65536 || c.n_layers > 8 || (*end && *end != '-'))
            return mn_err_set(err, "task \"%s\": sizes \"%s\" should look like 784-48-48-10", spec, f[1]), NULL;
        c.sizes[c.n_layers++] = v;
        p = *end ? end + 1 : end;
    }
    c.n_layers--;
    long batch = 128;
    if (!mn_act_parse(f[2], &c.act) || c.act == MN_ACT_IDENTITY)
        return mn_err_set(err, "task \"%s\": activation \"%s\" (relu, tanh, sigmoid, gelu)", spec, f[2]), NULL;
    if (n == 4 && !task_spec_int(f[3], "b", 1, 60000, &batch))
        return mn_err_set(err, "task \"%s\": batch \"%s\" should look like b128", spec, f[3]), NULL;
    c.batch = (int)batch;
    mn_err why;
    mn_meta_task *t = mlp_task_new(d, &c, &why);
    if (!t) return mn_err_set(err, "task \"%s\": %s", spec, why.msg), NULL;
    return meta_bench_new(spec, t, seed, true);
}

bench_task *bench_task_new(const char *spec, uint64_t seed, task_data *d, mn_err *err) {
    char f[12][64];
    int n = task_spec_fields(spec, f, 12);
    if (n < 1) return mn_err_set(err, "task \"%s\": empty or malformed spec", spec), NULL;
    if (!strcmp(f[0], "mlp")) return mlp_bench_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "vit")) return vit_task_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "bert")) return bert_task_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "quadratic")) {
        long dim;
        if (n != 2 || !task_spec_int(f[1], "", 1, 100000, &dim))
            return mn_err_set(err, "task \"%s\": expected quadratic:DIM", spec), NULL;
        return meta_bench_new(spec, mn_meta_quadratic_task((int)dim, seed), seed, false);
    }
    return mn_err_set(err, "task \"%s\": unknown kind \"%s\" (mlp, vit, bert, quadratic)", spec, f[0]), NULL;
}

void bench_task_free(bench_task *t) {
    if (t) t->free(t);
}
