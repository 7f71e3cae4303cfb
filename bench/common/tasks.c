/* The evaluation tasks of the bench drivers: spec strings -> meta/'s tasks, trained through the ordinary
 * optimizer interface on parameters of their own. */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- evaluation tasks over a meta-task ------------------------------------------------------------------- */

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

/* The task's parameters from its init(seed), named as its model names them (a quadratic's: "x"). */
static bench_task *meta_bench_new(const char *spec, mn_meta_task *task, uint64_t seed, const char *metric) {
    meta_bench_task *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("bench_task_new: out of memory");
    snprintf(m->base.spec, sizeof m->base.spec, "%s", spec);
    m->task = task;
    m->params = calloc((size_t)task->n_params, sizeof *m->params);
    task->vt->init(task, seed, m->params);
    for (int i = 0; i < task->n_params; i++) {
        const mn_param *lp = task->layout ? &task->layout->items[i] : NULL;
        mn_params_add(&m->base.params, NULL, lp ? lp->name : "x", mn_requires_grad(m->params[i], true),
                      lp && lp->no_decay);
        mn_release(m->params[i]); /* the list holds the reference */
    }
    m->data_rng = mn_rng_new(seed * 0xd1342543de82ef95ull + 0xda7a);
    m->base.metric_name = metric;
    m->base.train_loss = meta_bench_loss;
    m->base.evaluate = meta_bench_evaluate;
    m->base.free = meta_bench_free;
    return &m->base;
}

/* "mlp:784-48-48-10:tanh[:b128]" (batch 128 when not given) */
static bench_task *mlp_bench_new(const char *spec, char (*f)[64], int n, uint64_t seed, mn_meta_data *d, mn_err *err) {
    if (n != 3 && n != 4) return mn_err_set(err, "task \"%s\": expected mlp:SIZES:ACT[:bBATCH]", spec), NULL;
    mn_meta_mlp_config c = {0};
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
    mn_meta_task *t = mn_meta_mlp_task(d, &c, &why);
    if (!t) return mn_err_set(err, "task \"%s\": %s", spec, why.msg), NULL;
    return meta_bench_new(spec, t, seed, "accuracy");
}

/* "vit:fm:dim64:depth2:heads2[:mlpN][:patchN][:bN]" */
static bench_task *vit_bench_new(const char *spec, char (*f)[64], int n, uint64_t seed, mn_meta_data *d, mn_err *err) {
    if (n < 5 || strcmp(f[1], "fm"))
        return mn_err_set(err, "task \"%s\": expected vit:fm:dimN:depthN:headsN[:mlpN][:patchN][:bN]", spec), NULL;
    long dim, depth, heads, mlp = 0, patch = 4, batch = 64;
    if (!task_spec_int(f[2], "dim", 1, 4096, &dim) || !task_spec_int(f[3], "depth", 1, 64, &depth) ||
        !task_spec_int(f[4], "heads", 1, 64, &heads))
        return mn_err_set(err, "task \"%s\": expected dimN:depthN:headsN after vit:fm", spec), NULL;
    for (int i = 5; i < n; i++)
        if (!task_spec_int(f[i], "mlp", 1, 65536, &mlp) && !task_spec_int(f[i], "patch", 1, 28, &patch) &&
            !task_spec_int(f[i], "b", 1, 60000, &batch))
            return mn_err_set(err, "task \"%s\": unknown field \"%s\" (mlpN, patchN, bN)", spec, f[i]), NULL;
    mn_meta_vit_config c = {.image = 28, .patch = (int)patch, .dim = (int)dim, .depth = (int)depth,
                            .heads = (int)heads, .mlp_dim = (int)(mlp ? mlp : 4 * dim), .batch = (int)batch};
    mn_err why;
    mn_meta_task *t = mn_meta_vit_task(d, &c, &why);
    if (!t) return mn_err_set(err, "task \"%s\": %s", spec, why.msg), NULL;
    return meta_bench_new(spec, t, seed, "accuracy");
}

/* "bert:tiny:mlm[:bN][:lenN][:vN]" */
static bench_task *bert_bench_new(const char *spec, char (*f)[64], int n, uint64_t seed, mn_meta_data *d, mn_err *err) {
    if (n < 3 || strcmp(f[2], "mlm") || (strcmp(f[1], "tiny") && strcmp(f[1], "mini")))
        return mn_err_set(err, "task \"%s\": expected bert:tiny|mini:mlm[:bN][:lenN][:vN]", spec), NULL;
    mn_meta_bert_config c = mn_meta_bert_config_named(f[1]);
    long batch = c.batch, len = c.len, vocab = c.vocab;
    for (int i = 3; i < n; i++)
        if (!task_spec_int(f[i], "b", 1, 4096, &batch) && !task_spec_int(f[i], "len", 8, 512, &len) &&
            !task_spec_int(f[i], "v", 256, 100000, &vocab))
            return mn_err_set(err, "task \"%s\": unknown field \"%s\" (bN, lenN, vN)", spec, f[i]), NULL;
    c.batch = (int)batch, c.len = (int)len, c.vocab = (int)vocab;
    mn_err why;
    mn_meta_task *t = mn_meta_bert_task(d, &c, &why);
    if (!t) return mn_err_set(err, "task \"%s\": %s", spec, why.msg), NULL;
    return meta_bench_new(spec, t, seed, "mlm accuracy");
}

bench_task *bench_task_new(const char *spec, uint64_t seed, mn_meta_data *d, mn_err *err) {
    char f[12][64];
    int n = task_spec_fields(spec, f, 12);
    if (n < 1) return mn_err_set(err, "task \"%s\": empty or malformed spec", spec), NULL;
    if (!strcmp(f[0], "mlp")) return mlp_bench_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "vit")) return vit_bench_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "bert")) return bert_bench_new(spec, f, n, seed, d, err);
    if (!strcmp(f[0], "quadratic")) {
        long dim;
        if (n != 2 || !task_spec_int(f[1], "", 1, 100000, &dim))
            return mn_err_set(err, "task \"%s\": expected quadratic:DIM", spec), NULL;
        return meta_bench_new(spec, mn_meta_quadratic_task((int)dim, seed), seed, NULL);
    }
    return mn_err_set(err, "task \"%s\": unknown kind \"%s\" (mlp, vit, bert, quadratic)", spec, f[0]), NULL;
}

void bench_task_free(bench_task *t) {
    if (t) t->free(t);
}
