/* Persistent Evolution Strategies and antithetic evolution strategies (see meta/meta.h): particles
 * trained on the fused no-graph path with perturbed copies of the weights, estimates from their
 * meta-loss differences. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int pes_runs(const mn_meta_estimator *e) { return 2 * e->opts.pairs; }

static int64_t pes_carry(const mn_meta_estimator *e, int64_t n_weights) {
    return e->opts.kind == MN_ESTIMATOR_PES ? (int64_t)e->opts.pairs * n_weights : 0;
}

/* k steps of run r with the weights of w: the mean meta-loss term over them, *train the mean training loss. */
static double particle_unroll(const mn_lopt *w, mn_task_run *r, int64_t k, const mn_unroll_opts *u, double *train) {
    double meta = 0, tr = 0;
    for (int64_t t = 0; t < k; t++) {
        double m;
        tr += mn_meta_inner_step(w, r, u->lr_scale, u->plain_mean, &m);
        meta += m;
    }
    *train = tr / (double)k;
    return meta / (double)k;
}

/* Draws each pair's perturbation (PES: added to its carried sum) and sets the pair's two particles
 * to the weights plus and minus it; the parts are then the 2 pairs particle unrolls. */
static int pes_begin(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s) {
    const mn_estimator_opts *op = &e->opts;
    bool es = op->kind == MN_ESTIMATOR_ES;
    int64_t n = mn_lopt_weight_count(o);
    int runs = 2 * op->pairs;
    if (!s->particle) {
        s->particle = calloc((size_t)runs, sizeof *s->particle);
        s->particle_loss = calloc((size_t)runs * 2, sizeof *s->particle_loss);
        s->noise_buf = malloc(sizeof(float) * (size_t)(op->pairs * n));
        if (!s->particle || !s->particle_loss || !s->noise_buf) mn_fatal("%s estimate: out of memory", e->name);
        for (int r = 0; r < runs; r++) s->particle[r] = mn_lopt_clone(o);
    }
    float *theta = malloc(sizeof(float) * (size_t)n), *pert = malloc(sizeof(float) * (size_t)n);
    if (!theta || !pert) mn_fatal("%s estimate: out of memory", e->name);
    mn_lopt_get_flat(o, theta);
    for (int j = 0; j < op->pairs; j++) {
        float *eps = s->noise_buf + (int64_t)j * n;
        mn_rng_normal(&s->noise, n, eps, 0.0f, op->sigma);
        if (!es)
            for (int64_t i = 0; i < n; i++) s->carry[(int64_t)j * n + i] += eps[i];
        for (int64_t i = 0; i < n; i++) pert[i] = theta[i] + eps[i];
        mn_lopt_set_flat(s->particle[2 * j], pert);
        for (int64_t i = 0; i < n; i++) pert[i] = theta[i] - eps[i];
        mn_lopt_set_flat(s->particle[2 * j + 1], pert);
    }
    free(theta), free(pert);
    /* ES: the rest of the horizon in one truncation; PES: K steps */
    int64_t k = es ? s->runs[0]->horizon - s->runs[0]->step : op->unroll.steps;
    s->particle_steps = k < 1 ? 1 : k;
    return runs;
}

static void pes_part(const mn_meta_estimator *e, mn_meta_slot *s, int p) {
    s->particle_loss[2 * p] =
        particle_unroll(s->particle[p], s->runs[p], s->particle_steps, &e->opts.unroll, &s->particle_loss[2 * p + 1]);
}

/* g = sum over the pairs that stayed finite of xi (L+ - L-) / (2 sigma^2), over their count */
static bool pes_finish(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s, float *grad,
                       mn_meta_estimate *res) {
    const mn_estimator_opts *op = &e->opts;
    bool es = op->kind == MN_ESTIMATOR_ES;
    int64_t n = mn_lopt_weight_count(o);
    double *acc = calloc((size_t)n, sizeof *acc);
    if (!acc) mn_fatal("%s estimate: out of memory", e->name);
    double meta = 0, train = 0, inv_two_var = 1.0 / (2.0 * (double)op->sigma * op->sigma);
    int counted = 0, skipped = 0;
    for (int j = 0; j < op->pairs; j++) {
        const float *xi = (es ? s->noise_buf : s->carry) + (int64_t)j * n;
        double lp = s->particle_loss[4 * j], train_p = s->particle_loss[4 * j + 1];
        double lm = s->particle_loss[4 * j + 2], train_m = s->particle_loss[4 * j + 3];
        if (!isfinite(lp) || !isfinite(lm) || !isfinite(train_p) || !isfinite(train_m)) {
            skipped += 2;
            continue;
        }
        double c = (lp - lm) * inv_two_var;
        for (int64_t i = 0; i < n; i++) acc[i] += c * xi[i];
        meta += 0.5 * (lp + lm), train += 0.5 * (train_p + train_m);
        counted++;
    }
    for (int64_t i = 0; i < n; i++) grad[i] = counted ? (float)(acc[i] / counted) : 0.0f;
    double norm = counted ? meta_clip_flat(grad, n, op->clip) : NAN;
    *res = (mn_meta_estimate){.meta_loss = counted ? meta / counted : NAN, .train_loss = counted ? train / counted : NAN,
                              .grad_norm = norm, .particles = 2 * counted, .skipped = skipped,
                              .finite = counted > 0 && isfinite(norm), .restart = skipped > 0};
    free(acc);
    return res->finite;
}

static bool pes_estimate(const mn_meta_estimator *e, const mn_lopt *o, mn_meta_slot *s, float *grad,
                         mn_meta_estimate *res) {
    int parts = pes_begin(e, o, s);
    for (int p = 0; p < parts; p++) pes_part(e, s, p);
    return pes_finish(e, o, s, grad, res);
}

mn_meta_estimator meta_pes_estimator(const mn_estimator_opts *opts) {
    return (mn_meta_estimator){.name = opts->kind == MN_ESTIMATOR_ES ? "es" : "pes", .opts = *opts,
                               .runs_per_task = pes_runs, .carry_floats = pes_carry, .estimate = pes_estimate,
                               .begin = pes_begin, .part = pes_part, .finish = pes_finish};
}
