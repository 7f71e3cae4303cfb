/* Tasks, families and task runs of meta-training: what is trained, and one task being trained by a
 * learned optimizer across truncations (its parameters, optimizer state, data streams and step). */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t meta_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- tasks and families ------------------------------------------------------------------------- */

mn_tensor *mn_meta_task_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng) {
    mn_meta_batch b = t->vt->batch(t, rng);
    return t->vt->loss(t, params, &b);
}

mn_tensor *mn_meta_task_meta_loss(const mn_meta_task *t, mn_tensor *const *params, mn_rng *rng) {
    mn_meta_batch b = t->vt->meta_batch ? t->vt->meta_batch(t, rng) : t->vt->batch(t, rng);
    return t->vt->loss(t, params, &b);
}

void mn_meta_task_free(mn_meta_task *t) {
    if (t) t->vt->free(t);
}

void mn_meta_family_free(mn_meta_family *f) {
    if (f) f->free(f);
}

/* ---- a task being trained ------------------------------------------------------------------------ */

/* The streams of a run derive from its seed, apart from the task's own draws (initialisation). */
enum { STREAM_DATA = 0xda7a, STREAM_META = 0x3e7a };

mn_task_run *mn_task_run_new(mn_meta_task *task, uint64_t seed, const mn_lopt *o, int64_t horizon) {
    if (task->n_params < 1) mn_fatal("mn_task_run_new: task '%s' has no parameters", task->desc);
    mn_task_run *r = meta_calloc(1, sizeof *r, "mn_task_run_new");
    r->task = task;
    r->seed = seed;
    r->params = meta_calloc((size_t)task->n_params, sizeof *r->params, "mn_task_run_new");
    task->vt->init(task, seed, r->params);
    for (int i = 0; i < task->n_params; i++) {
        mn_tensor *p = r->params[i];
        if (!p || p->dtype != MN_F32 || !mn_is_contiguous(p) || p->node)
            mn_fatal("mn_task_run_new: task '%s' parameter %d is not a contiguous F32 leaf", task->desc, i);
    }
    r->state = mn_lopt_state_new(o, task->n_params, r->params);
    r->data_rng = mn_rng_new(meta_mix(seed ^ STREAM_DATA));
    r->meta_rng = mn_rng_new(meta_mix(seed ^ STREAM_META));
    r->horizon = horizon;
    return r;
}

void mn_task_run_detach(mn_task_run *r) {
    for (int i = 0; i < r->task->n_params; i++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *d = mn_retain(mn_detach(r->params[i]));
        mn_scope_end(sc);
        mn_release(r->params[i]);
        r->params[i] = d;
    }
    mn_lopt_state_detach(r->state);
}

void mn_task_run_free(mn_task_run *r) {
    if (!r) return;
    for (int i = 0; i < r->task->n_params; i++) mn_release(r->params[i]);
    free(r->params);
    mn_lopt_state_free(r->state);
    mn_meta_task_free(r->task);
    free(r);
}

/* ---- one inner step without a graph ---------------------------------------------------------------------- */

double mn_meta_inner_step(const mn_lopt *o, mn_task_run *r, float lr_scale, bool plain_mean, double *meta_loss) {
    const mn_meta_task *task = r->task;
    int n = task->n_params;
    mn_scope sc = mn_scope_begin();
    bool prev = mn_set_grad_enabled(true);
    mn_tensor **d = meta_calloc((size_t)(3 * n), sizeof *d, "mn_meta_inner_step"), **g = d + n, **next = g + n;
    for (int i = 0; i < n; i++) d[i] = mn_requires_grad(mn_detach(r->params[i]), true);
    mn_tensor *loss = mn_meta_task_loss(task, d, &r->data_rng);
    double value = mn_item(loss);
    mn_grad(1, &loss, NULL, n, d, g, 0);
    mn_set_grad_enabled(false);
    mn_lopt_apply(o, r->state, n, r->params, g, lr_scale, next);
    for (int i = 0; i < n; i++) {
        mn_release(r->params[i]);
        r->params[i] = mn_retain(next[i]);
    }
    r->step++;
    if (meta_loss) {
        double m = mn_item(mn_meta_task_meta_loss(task, r->params, &r->meta_rng));
        *meta_loss = plain_mean ? m : log(m);
    }
    mn_set_grad_enabled(prev);
    free(d);
    mn_scope_end(sc);
    return value;
}

