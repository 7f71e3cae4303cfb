/* Meta-training by truncated backpropagation through unrolled training (spec/meta_training.md).
 *
 * Kept apart as in learned_optimization: the task (mn_meta_task, what is trained), the learned
 * optimizer (mn_lopt), one truncated unroll of K inner steps and its meta-loss (mn_meta_unroll),
 * the gradient estimator (mn_tbptt_estimate: backprop through one unroll, clipped) and the outer
 * loop (mn_meta_trainer: B task runs, averaging, Adam on the weights, restarts). Checkpoints of the
 * outer loop are in metatrain_io.c, the quadratic task family in metatask_quadratic.c. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size, const char *op) {
    void *p = calloc(n ? n : 1, size);
    if (!p) mn_fatal("%s: out of memory", op);
    return p;
}

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
    mn_task_run *r = xcalloc(1, sizeof *r, "mn_task_run_new");
    r->task = task;
    r->seed = seed;
    r->params = xcalloc((size_t)task->n_params, sizeof *r->params, "mn_task_run_new");
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
        mn_tensor **d = xcalloc((size_t)n, sizeof *d, "mn_meta_unroll");
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
    mn_tensor **theta = xcalloc((size_t)(3 * n), sizeof *theta, "mn_meta_unroll"), **g = theta + n, **next = g + n;
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
    mn_tensor **in = xcalloc((size_t)(2 * n), sizeof *in, "mn_tbptt_estimate"), **raw = in + n;
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

/* ---- the outer loop ------------------------------------------------------------------------------ */

mn_meta_trainer_opts mn_meta_trainer_default_opts(void) {
    return (mn_meta_trainer_opts){
        .tasks = 4,
        .estimator = {.unroll = {.steps = 20, .lr_scale = 1.0f}, .clip = 1.0f},
        .meta_lr = 1e-3f,
        .horizon_min = 100,
        .horizon_max = 1000,
        .seed = 0,
    };
}

static void check_opts(const mn_meta_trainer_opts *p) {
    if (p->tasks < 1) mn_fatal("mn_meta_trainer_new: %d tasks (need at least 1)", p->tasks);
    if (p->estimator.unroll.steps < 1) mn_fatal("mn_meta_trainer_new: %d unroll steps", p->estimator.unroll.steps);
    if (p->estimator.unroll.record_grads || p->estimator.unroll.replay_grads)
        mn_fatal("mn_meta_trainer_new: record_grads / replay_grads are for single unrolls, not the outer loop");
    if (!(p->meta_lr > 0) || !(p->estimator.clip >= 0) || !isfinite(p->estimator.unroll.lr_scale))
        mn_fatal("mn_meta_trainer_new: meta_lr %g and clip %g must be positive", p->meta_lr, p->estimator.clip);
    if (p->horizon_min < 1 || p->horizon_max < p->horizon_min)
        mn_fatal("mn_meta_trainer_new: horizon range [%lld, %lld] is empty", (long long)p->horizon_min,
                 (long long)p->horizon_max);
}

/* A new task run from the sampling stream: its seed, then its horizon. */
mn_task_run *meta_trainer_sample_run(mn_meta_trainer *tr) {
    uint64_t seed = (uint64_t)mn_rng_u32(&tr->rng) << 32;
    seed |= mn_rng_u32(&tr->rng);
    int64_t span = tr->opts.horizon_max - tr->opts.horizon_min + 1;
    int64_t horizon = tr->opts.horizon_min + (int64_t)mn_rng_below(&tr->rng, (uint64_t)span);
    return mn_task_run_new(tr->family->sample(tr->family, seed), seed, tr->o, horizon);
}

mn_meta_trainer *mn_meta_trainer_new(mn_lopt *o, const mn_meta_family *f, const mn_meta_trainer_opts *opts) {
    check_opts(opts);
    mn_meta_trainer *tr = xcalloc(1, sizeof *tr, "mn_meta_trainer_new");
    tr->o = o;
    tr->family = f;
    tr->opts = *opts;
    tr->rng = mn_rng_new(meta_mix(opts->seed));
    tr->adam = mn_adam_new(mn_lopt_weights(o), opts->meta_lr, 0.9f, 0.999f, 1e-8f, 0.0f);
    tr->runs = xcalloc((size_t)opts->tasks, sizeof *tr->runs, "mn_meta_trainer_new");
    for (int b = 0; b < opts->tasks; b++) tr->runs[b] = meta_trainer_sample_run(tr);
    return tr;
}

void mn_meta_trainer_iterate(mn_meta_trainer *tr, mn_meta_stats *st) {
    const mn_params *w = mn_lopt_weights(tr->o);
    int n = w->count, B = tr->opts.tasks;
    memset(st, 0, sizeof *st);
    mn_scope sc = mn_scope_begin();
    bool prev = mn_set_grad_enabled(true);
    mn_tensor **sum = xcalloc((size_t)(2 * n), sizeof *sum, "mn_meta_trainer_iterate"), **g = sum + n;
    double meta = 0, train = 0, norm = 0;
    for (int b = 0; b < B; b++) {
        mn_tbptt_result res;
        bool restart = !mn_tbptt_estimate(tr->o, tr->runs[b], &tr->opts.estimator, g, &res);
        if (restart) {
            st->skipped++;
        } else {
            st->counted++;
            meta += res.meta_loss, train += res.train_loss, norm += res.grad_norm;
            for (int i = 0; i < n; i++) sum[i] = sum[i] ? mnt_binary(MN_OP_ADD, sum[i], g[i]) : g[i];
            restart = tr->runs[b]->step >= tr->runs[b]->horizon;
        }
        if (restart) {
            mn_task_run_free(tr->runs[b]);
            tr->runs[b] = meta_trainer_sample_run(tr);
            st->restarted++;
        }
    }
    mn_set_grad_enabled(prev);
    if (st->counted) {
        for (int i = 0; i < n; i++) {
            mn_tensor *p = w->items[i].tensor;
            mn_zero_grad(p);
            p->grad = mn_retain(mnt_affine(sum[i], 1.0f / (float)st->counted, 0.0f));
        }
        mn_optim_step(tr->adam);
        mn_optim_zero_grad(tr->adam);
    }
    free(sum);
    mn_scope_end(sc);
    tr->iteration++;
    tr->total_skipped += st->skipped;
    st->iteration = tr->iteration;
    st->total_skipped = tr->total_skipped;
    st->meta_loss = st->counted ? meta / st->counted : NAN;
    st->train_loss = st->counted ? train / st->counted : NAN;
    st->grad_norm = st->counted ? norm / st->counted : NAN;
}

int64_t mn_meta_trainer_iteration(const mn_meta_trainer *tr) { return tr->iteration; }

const mn_task_run *mn_meta_trainer_run(const mn_meta_trainer *tr, int i) {
    if (i < 0 || i >= tr->opts.tasks) mn_fatal("mn_meta_trainer_run: run %d of %d", i, tr->opts.tasks);
    return tr->runs[i];
}

void mn_meta_trainer_free(mn_meta_trainer *tr) {
    if (!tr) return;
    for (int b = 0; b < tr->opts.tasks; b++) mn_task_run_free(tr->runs[b]);
    free(tr->runs);
    mn_optim_free(tr->adam);
    free(tr);
}
