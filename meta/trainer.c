/* The outer loop of meta-training: B task slots, an estimate from each (on threads), their average,
 * Adam on the optimizer's weights, restarts at the horizon. Checkpoints are in trainer_io.c. */
#include "meta/meta_internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---- the outer loop ------------------------------------------------------------------------------ */

mn_meta_trainer_opts mn_meta_trainer_default_opts(void) {
    return (mn_meta_trainer_opts){
        .tasks = 4,
        .estimator = {.kind = MN_ESTIMATOR_TBPTT, .unroll = {.steps = 20, .lr_scale = 1.0f}, .clip = 1.0f,
                      .sigma = 0.01f, .pairs = 4},
        .meta_lr = 1e-3f,
        .horizon = MN_HORIZON_UNIFORM,
        .horizon_min = 100,
        .horizon_max = 1000,
        .seed = 0,
        .task_threads = 1,
    };
}

static void check_opts(const mn_meta_trainer_opts *p) {
    if (p->tasks < 1) mn_fatal("mn_meta_trainer_new: %d tasks (need at least 1)", p->tasks);
    if (p->estimator.unroll.record_grads || p->estimator.unroll.replay_grads)
        mn_fatal("mn_meta_trainer_new: record_grads / replay_grads are for single unrolls, not the outer loop");
    if (!(p->meta_lr > 0)) mn_fatal("mn_meta_trainer_new: meta_lr %g must be positive", p->meta_lr);
    if (p->horizon_min < 1 || p->horizon_max < p->horizon_min)
        mn_fatal("mn_meta_trainer_new: horizon range [%lld, %lld] is empty", (long long)p->horizon_min,
                 (long long)p->horizon_max);
    if (p->task_threads < 1) mn_fatal("mn_meta_trainer_new: %d task threads (need at least 1)", p->task_threads);
}

mn_meta_slot *meta_trainer_make_slot(const mn_meta_trainer *tr, int b, uint64_t seed, int64_t horizon) {
    if (meta_slot_owned(b)) return mn_meta_slot_new(&tr->est, tr->o, tr->family, seed, horizon);
    mn_meta_slot *s = meta_calloc(1, sizeof *s, "meta_trainer_make_slot");
    s->seed = seed, s->horizon = horizon;
    return s;
}

mn_meta_slot *meta_trainer_sample_slot(mn_meta_trainer *tr, int b) {
    uint64_t seed = (uint64_t)mn_rng_u32(&tr->rng) << 32;
    seed |= mn_rng_u32(&tr->rng);
    int64_t horizon = mn_horizon_sample(tr->opts.horizon, tr->opts.horizon_min, tr->opts.horizon_max, &tr->rng);
    return meta_trainer_make_slot(tr, b, seed, horizon);
}

mn_meta_trainer *mn_meta_trainer_new(mn_lopt *o, const mn_meta_family *f, const mn_meta_trainer_opts *opts) {
    check_opts(opts);
    mn_meta_trainer *tr = meta_calloc(1, sizeof *tr, "mn_meta_trainer_new");
    tr->o = o;
    tr->family = f;
    tr->opts = *opts;
    tr->est = mn_meta_estimator_make(&opts->estimator);
    tr->best_score = INFINITY;
    tr->rng = mn_rng_new(meta_mix(opts->seed));
    tr->adam = mn_adam_new(mn_lopt_weights(o), opts->meta_lr, 0.9f, 0.999f, 1e-8f, 0.0f);
    tr->slots = meta_calloc((size_t)opts->tasks, sizeof *tr->slots, "mn_meta_trainer_new");
    for (int b = 0; b < opts->tasks; b++) tr->slots[b] = meta_trainer_sample_slot(tr, b);
    return tr;
}

static int64_t slot_steps(const mn_meta_slot *s) {
    int64_t n = 0;
    for (int j = 0; j < s->n_runs; j++) n += s->runs[j]->step;
    return n;
}

/* What a slot's estimate tells the others: the estimate, then these fields (as doubles). */
enum { R_META, R_TRAIN, R_NORM, R_PARTICLES, R_SKIPPED, R_FINITE, R_RESTART, R_STEP, R_INNER, R_FIELDS };

void mn_meta_trainer_iterate(mn_meta_trainer *tr, mn_meta_stats *st) {
    int B = tr->opts.tasks;
    int64_t n = mn_lopt_weight_count(tr->o), rec = n + R_FIELDS;
    memset(st, 0, sizeof *st);
    int *mine = meta_calloc((size_t)B, sizeof *mine, "mn_meta_trainer_iterate"), n_mine = 0;
    for (int b = 0; b < B; b++)
        if (meta_slot_owned(b)) mine[n_mine++] = b;
    float *grads = meta_calloc((size_t)B * (size_t)n, sizeof *grads, "mn_meta_trainer_iterate");
    mn_meta_estimate *res = meta_calloc((size_t)B, sizeof *res, "mn_meta_trainer_iterate");
    int64_t *before = meta_calloc((size_t)B, sizeof *before, "mn_meta_trainer_iterate");
    for (int b = 0; b < B; b++) before[b] = slot_steps(tr->slots[b]);
    /* Each slot computes alone, on the shared read-only weights and its own copies of them, so the
     * estimates are the same however many threads (or ranks) run them. */
    int threads = tr->opts.task_threads < n_mine ? tr->opts.task_threads : n_mine;
    const mn_meta_estimator *est = &tr->est;
    if (tr->opts.task_threads > 1 && est->begin && est->part && est->finish) {
        /* the slots' particles as one pool of parts: slots of unequal cost (an MLP and a ViT, say)
         * no longer leave a thread idle at the end */
        int *first = meta_calloc((size_t)n_mine + 1, sizeof *first, "mn_meta_trainer_iterate");
        for (int k = 0; k < n_mine; k++) first[k + 1] = first[k] + est->begin(est, tr->o, tr->slots[mine[k]]);
        int parts = first[n_mine], pool = tr->opts.task_threads < parts ? tr->opts.task_threads : parts;
#pragma omp parallel for num_threads(pool) schedule(dynamic, 1)
        for (int q = 0; q < parts; q++) {
            int k = 0;
            while (first[k + 1] <= q) k++;
            omp_set_num_threads(1);
            est->part(est, tr->slots[mine[k]], q - first[k]);
        }
        for (int k = 0; k < n_mine; k++)
            est->finish(est, tr->o, tr->slots[mine[k]], grads + (int64_t)mine[k] * n, &res[mine[k]]);
        free(first);
    } else if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int k = 0; k < n_mine; k++) {
            int b = mine[k];
            omp_set_num_threads(1); /* one inner thread per task thread */
            tr->est.estimate(&tr->est, tr->o, tr->slots[b], grads + (int64_t)b * n, &res[b]);
        }
    } else {
        for (int k = 0; k < n_mine; k++)
            tr->est.estimate(&tr->est, tr->o, tr->slots[mine[k]], grads + (int64_t)mine[k] * n, &res[mine[k]]);
    }
    /* every rank learns every slot's outcome: the others' records are zero, so the sum is exact */
    double *all = meta_calloc((size_t)B * (size_t)rec, sizeof *all, "mn_meta_trainer_iterate");
    for (int k = 0; k < n_mine; k++) {
        int b = mine[k];
        double *r = all + (int64_t)b * rec, *f = r + n;
        const float *g = grads + (int64_t)b * n;
        for (int64_t i = 0; i < n && res[b].finite; i++) r[i] = g[i];
        f[R_META] = res[b].meta_loss, f[R_TRAIN] = res[b].train_loss, f[R_NORM] = res[b].grad_norm;
        f[R_PARTICLES] = res[b].particles, f[R_SKIPPED] = res[b].skipped;
        f[R_FINITE] = res[b].finite, f[R_RESTART] = res[b].restart;
        f[R_STEP] = (double)tr->slots[b]->runs[0]->step;
        f[R_INNER] = (double)(slot_steps(tr->slots[b]) - before[b]);
    }
    meta_mpi_sum(all, (int64_t)B * rec);
    /* combined in slot order: the sum does not depend on which thread (or rank) made each estimate */
    float *sum = meta_calloc((size_t)n, sizeof *sum, "mn_meta_trainer_iterate");
    double meta = 0, train = 0, norm = 0;
    for (int b = 0; b < B; b++) {
        const double *r = all + (int64_t)b * rec, *f = r + n;
        bool finite = f[R_FINITE] != 0;
        tr->slots[b]->step = (int64_t)f[R_STEP];
        st->inner_steps += (int64_t)f[R_INNER];
        st->skipped_particles += (int)f[R_SKIPPED];
        if (!finite) {
            st->skipped++;
        } else {
            st->counted++;
            meta += f[R_META], train += f[R_TRAIN], norm += f[R_NORM];
            for (int64_t i = 0; i < n; i++) sum[i] += (float)r[i];
        }
        if (!finite || f[R_RESTART] != 0 || tr->slots[b]->step >= tr->slots[b]->horizon) {
            mn_meta_slot_free(tr->slots[b]);
            tr->slots[b] = meta_trainer_sample_slot(tr, b);
            st->restarted++;
        }
    }
    if (st->counted) {
        const mn_params *w = mn_lopt_weights(tr->o);
        mn_scope sc = mn_scope_begin();
        float inv = 1.0f / (float)st->counted;
        const float *g = sum;
        for (int i = 0; i < w->count; i++) {
            mn_tensor *p = w->items[i].tensor;
            mn_zero_grad(p);
            p->grad = mn_retain(mn_empty_like(p));
            float *d = mn_data(p->grad);
            for (int64_t j = 0; j < mn_numel(p); j++) d[j] = g[j] * inv;
            g += mn_numel(p);
        }
        mn_scope_end(sc);
        mn_optim_step(tr->adam);
        mn_optim_zero_grad(tr->adam);
    }
    free(sum), free(grads), free(res), free(before), free(all), free(mine);
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
    if (i < 0 || i >= tr->opts.tasks) mn_fatal("mn_meta_trainer_run: slot %d of %d", i, tr->opts.tasks);
    return tr->slots[i]->n_runs ? tr->slots[i]->runs[0] : NULL; /* NULL: another rank's slot */
}

void mn_meta_trainer_free(mn_meta_trainer *tr) {
    if (!tr) return;
    for (int b = 0; b < tr->opts.tasks; b++) mn_meta_slot_free(tr->slots[b]);
    free(tr->slots);
    mn_optim_free(tr->adam);
    free(tr);
}
