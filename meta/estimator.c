/* The estimator interface: kinds by name, the built-in tables, task slots, clipping of flat estimates. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const estimator_names[] = {"tbptt", "pes", "es"};

const char *mn_estimator_kind_name(mn_estimator_kind kind) {
    return (unsigned)kind < 3 ? estimator_names[kind] : "unknown";
}

bool mn_estimator_kind_parse(const char *name, mn_estimator_kind *out) {
    for (int k = 0; k < 3; k++)
        if (name && !strcmp(name, estimator_names[k])) return *out = (mn_estimator_kind)k, true;
    return false;
}

mn_meta_estimator mn_meta_estimator_make(const mn_estimator_opts *opts) {
    const char *name = mn_estimator_kind_name(opts->kind);
    if (opts->unroll.steps < 1) mn_fatal("mn_meta_estimator_make (%s): %d unroll steps", name, opts->unroll.steps);
    if (!(opts->clip >= 0) || !isfinite(opts->unroll.lr_scale))
        mn_fatal("mn_meta_estimator_make (%s): clip %g must be >= 0 and lr_scale %g finite", name, opts->clip,
                 opts->unroll.lr_scale);
    switch (opts->kind) {
    case MN_ESTIMATOR_TBPTT: return meta_tbptt_estimator(opts);
    case MN_ESTIMATOR_PES:
    case MN_ESTIMATOR_ES:
        if (!(opts->sigma > 0) || !isfinite(opts->sigma) || opts->pairs < 1)
            mn_fatal("mn_meta_estimator_make (%s): sigma %g must be positive and pairs %d at least 1", name,
                     opts->sigma, opts->pairs);
        if (opts->unroll.second_order || opts->unroll.record_grads || opts->unroll.replay_grads)
            mn_fatal("mn_meta_estimator_make (%s): second order and recorded gradients are for tbptt", name);
        return meta_pes_estimator(opts);
    }
    mn_fatal("mn_meta_estimator_make: unknown estimator kind %d", (int)opts->kind);
}

/* The perturbation stream of a slot, apart from its runs' streams. */
enum { STREAM_NOISE = 0x9e5e };

mn_meta_slot *mn_meta_slot_new(const mn_meta_estimator *e, const mn_lopt *o, const mn_meta_family *f, uint64_t seed,
                               int64_t horizon) {
    mn_meta_slot *s = calloc(1, sizeof *s);
    if (!s) mn_fatal("mn_meta_slot_new: out of memory");
    s->seed = seed;
    s->horizon = horizon;
    s->n_runs = e->runs_per_task(e);
    s->runs = calloc((size_t)s->n_runs, sizeof *s->runs);
    s->n_carry = e->carry_floats(e, mn_lopt_weight_count(o));
    s->carry = s->n_carry ? calloc((size_t)s->n_carry, sizeof *s->carry) : NULL;
    if (!s->runs || (s->n_carry && !s->carry)) mn_fatal("mn_meta_slot_new: out of memory");
    for (int j = 0; j < s->n_runs; j++) s->runs[j] = mn_task_run_new(f->sample(f, seed), seed, o, horizon);
    s->noise = mn_rng_new(meta_mix(seed ^ STREAM_NOISE));
    return s;
}

void mn_meta_slot_free(mn_meta_slot *s) {
    if (!s) return;
    for (int j = 0; j < s->n_runs; j++) mn_task_run_free(s->runs[j]);
    free(s->runs);
    free(s->carry);
    mn_lopt_free(s->work[0]);
    mn_lopt_free(s->work[1]);
    for (int j = 0; s->particle && j < s->n_runs; j++) mn_lopt_free(s->particle[j]);
    free(s->particle);
    free(s->particle_loss);
    free(s->noise_buf);
    free(s);
}

double meta_clip_flat(float *grad, int64_t n, float clip) {
    double sq = 0;
    for (int64_t i = 0; i < n; i++) sq += (double)grad[i] * grad[i];
    double norm = sqrt(sq);
    if (clip > 0 && isfinite(norm) && norm + 1e-6 > clip) {
        float coef = (float)(clip / (norm + 1e-6));
        for (int64_t i = 0; i < n; i++) grad[i] *= coef;
    }
    return norm;
}
