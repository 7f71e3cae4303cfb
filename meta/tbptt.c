/* Truncated backpropagation through time: one recorded unroll of K inner steps and its meta-loss
 * (mn_meta_unroll), the estimator that differentiates it (mn_tbptt_estimate), and that estimator behind
 * the mn_meta_estimator interface. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- one truncated unroll ------------------------------------------------------------------------ */

/* g_t: the inner gradient at theta (n tensors into g), the loss value returned. First order
 * differentiates a detached copy, so the result is a constant and the unroll's graph is untouched
 * (an mn_grad without MN_RETAIN_GRAPH through the unroll would free it). */
static double inner_gradient(mn_task_run *r, const mn_unroll_opts *opts, int t, mn_tensor *const *theta,
                             mn_tensor **g) {
    const mn_meta_task *task = r->task;
    int n = task->n_params;
    mn_meta_batch b = task->vt->batch(task, &r->data_rng);
    if (opts->replay_grads) {
        for (int i = 0; i < n; i++) g[i] = opts->replay_grads[t * n + i];
        bool prev = mn_no_grad_begin();
        double v = mn_item(task->vt->loss(task, theta, &b));
        mn_no_grad_end(prev);
        return v;
    }
    mn_tensor *loss;
    if (opts->second_order) {
        loss = task->vt->loss(task, theta, &b);
        mn_grad(1, &loss, NULL, n, theta, g, MN_CREATE_GRAPH);
    } else {
        mn_tensor **d = meta_calloc((size_t)n, sizeof *d, "mn_meta_unroll");
        for (int i = 0; i < n; i++) d[i] = mn_requires_grad(mn_detach(theta[i]), true);
        loss = task->vt->loss(task, d, &b);
        mn_grad(1, &loss, NULL, n, d, g, 0);
        free(d);
    }
    if (opts->record_grads)
        for (int i = 0; i < n; i++) opts->record_grads[t * n + i] = mn_retain(mnt_clone(g[i]));
    return mn_item(loss);
}

mn_tensor *mn_meta_unroll(const mn_lopt *o, mn_task_run *r, const mn_unroll_opts *opts, double *train_loss) {
    if (!mn_grad_enabled()) mn_fatal("mn_meta_unroll: grad mode is off (the unroll must be recorded)");
    if (opts->steps < 1) mn_fatal("mn_meta_unroll: %d inner steps (need at least 1)", opts->steps);
    if (opts->replay_grads && opts->second_order)
        mn_fatal("mn_meta_unroll: replayed inner gradients are constants, which contradicts second order");
    const mn_meta_task *task = r->task;
    int n = task->n_params, K = opts->steps;
    mn_scope sc = mn_scope_begin();
    mn_tensor **theta = meta_calloc((size_t)(3 * n), sizeof *theta, "mn_meta_unroll"), **g = theta + n, **next = g + n;
    for (int i = 0; i < n; i++) {
        theta[i] = r->params[i];
        /* second order differentiates the first inner loss w.r.t. theta_0 itself */
        if (opts->second_order && !theta[i]->node && !theta[i]->requires_grad) mn_requires_grad(theta[i], true);
    }
    mn_lopt_state_set_recompute(r->state, !opts->store_steps);
    double train_sum = 0;
    mn_tensor *total = NULL;
    for (int t = 0; t < K; t++) {
        train_sum += inner_gradient(r, opts, t, theta, g);
        mn_lopt_apply(o, r->state, n, theta, g, opts->lr_scale, next);
        memcpy(theta, next, sizeof *theta * (size_t)n);
        mn_tensor *meta = mn_meta_task_meta_loss(task, theta, &r->meta_rng);
        if (!opts->plain_mean) meta = mn_log(meta);
        total = total ? mn_add(total, meta) : meta;
    }
    for (int i = 0; i < n; i++) {
        mn_retain(theta[i]);
        mn_release(r->params[i]);
        r->params[i] = theta[i];
    }
    r->step += K;
    free(theta);
    if (train_loss) *train_loss = train_sum / K;
    return mn_scope_return(sc, mn_scale(total, 1.0f / (float)K));
}

/* ---- the truncated-backprop gradient estimator ------------------------------------------------- */

bool mn_tbptt_estimate(const mn_lopt *o, mn_task_run *r, const mn_tbptt_opts *opts, mn_tensor **grads,
                       mn_tbptt_result *res) {
    const mn_params *w = mn_lopt_weights(o);
    int n = w->count;
    mn_scope sc = mn_scope_begin();
    mn_tensor *meta = mn_meta_unroll(o, r, &opts->unroll, &res->train_loss);
    res->meta_loss = mn_item(meta);
    res->grad_norm = NAN;
    res->finite = isfinite(res->meta_loss) && isfinite(res->train_loss);
    mn_tensor **in = meta_calloc((size_t)(2 * n), sizeof *in, "mn_tbptt_estimate"), **raw = in + n;
    if (res->finite) {
        for (int i = 0; i < n; i++) in[i] = w->items[i].tensor;
        mn_grad(1, &meta, NULL, n, in, raw, 0);
        double sq = 0;
        for (int i = 0; i < n; i++) {
            mn_tensor *c = mnt_contiguous(raw[i]);
            const float *d = mn_data(c);
            for (int64_t j = 0; j < mn_numel(c); j++) sq += (double)d[j] * d[j];
        }
        res->grad_norm = sqrt(sq);
        res->finite = isfinite(res->grad_norm);
    }
    /* the boundary: whatever happened, nothing of this truncation stays in the graph */
    mn_task_run_detach(r);
    for (int i = 0; i < n; i++) {
        grads[i] = NULL;
        if (!res->finite) continue;
        float coef = 1.0f;
        if (opts->clip > 0 && res->grad_norm + 1e-6 > opts->clip) coef = (float)(opts->clip / (res->grad_norm + 1e-6));
        /* a fresh tensor: gradients returned by mn_grad may share storage with one another */
        grads[i] = mn_retain(mnt_affine(raw[i], coef, 0.0f));
    }
    free(in);
    mn_scope_end(sc);
    for (int i = 0; i < n; i++) mn_autorelease(grads[i]);
    return res->finite;
}

/* ---- behind the estimator interface ---------------------------------------------------------------- */

static int tbptt_runs(const mn_meta_estimator *e) { return 1; }
static int64_t tbptt_carry(const mn_meta_estimator *e, int64_t n_weights) { return 0; }

/* Differentiates a private copy of the weights (slot->work[0]), so slots on other threads never share a
 * tensor that a backward pass marks. */
static bool tbptt_slot_estimate(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s, float *grad,
                                mn_meta_estimate *res) {
    if (!s->work[0]) s->work[0] = mn_lopt_clone(o);
    else mn_lopt_copy_weights(s->work[0], o);
    const mn_params *w = mn_lopt_weights(s->work[0]);
    mn_tbptt_opts to = {.unroll = e->opts.unroll, .clip = e->opts.clip};
    mn_tbptt_result tr;
    mn_scope sc = mn_scope_begin();
    mn_tensor **g = meta_calloc((size_t)w->count, sizeof *g, "tbptt estimate");
    bool ok = mn_tbptt_estimate(s->work[0], s->runs[0], &to, g, &tr);
    for (int i = 0; ok && i < w->count; i++) {
        mn_tensor *c = mnt_contiguous(g[i]);
        memcpy(grad, mn_data(c), sizeof(float) * (size_t)mn_numel(c));
        grad += mn_numel(c);
    }
    free(g);
    mn_scope_end(sc);
    *res = (mn_meta_estimate){.meta_loss = tr.meta_loss, .train_loss = tr.train_loss, .grad_norm = tr.grad_norm,
                              .particles = ok, .skipped = !ok, .finite = ok, .restart = !ok};
    return ok;
}

mn_meta_estimator meta_tbptt_estimator(const mn_estimator_opts *opts) {
    return (mn_meta_estimator){.name = "tbptt", .opts = *opts, .runs_per_task = tbptt_runs,
                               .carry_floats = tbptt_carry, .estimate = tbptt_slot_estimate};
}
