/* Internals shared by the meta-training files. */
#ifndef MN_META_INTERNAL_H
#define MN_META_INTERNAL_H

#include "meta/meta.h"

#include <stdlib.h>

struct mn_meta_trainer {
    mn_lopt *o;                  /* the caller's; its weights are trained in place */
    const mn_meta_family *family;
    mn_meta_trainer_opts opts;
    mn_meta_estimator est;
    mn_optimizer *adam;          /* over mn_lopt_weights(o) */
    mn_meta_slot **slots;        /* [opts.tasks] */
    mn_rng rng;                  /* task seeds and horizons */
    int64_t iteration, total_skipped;
};

/* calloc that stops with "op: out of memory" instead of returning NULL */
static inline void *meta_calloc(size_t n, size_t size, const char *op) {
    void *p = calloc(n ? n : 1, size);
    if (!p) mn_fatal("%s: out of memory", op);
    return p;
}

/* splitmix64: derives independent seeds from one (streams of a run, a task's draws). */
uint64_t meta_mix(uint64_t x);
/* A new slot drawn from tr's sampling stream (its seed, then its horizon). */
mn_meta_slot *meta_trainer_sample_slot(mn_meta_trainer *tr);
/* The built-in estimators' tables (tbptt.c, pes.c). */
mn_meta_estimator meta_tbptt_estimator(const mn_estimator_opts *opts);
mn_meta_estimator meta_pes_estimator(const mn_estimator_opts *opts);
/* Scales grad [n] to global norm clip when above it (clip 0: never), as mn_clip_grad_norm; returns the
 * norm before clipping (accumulated in double). */
double meta_clip_flat(float *grad, int64_t n, float clip);

#endif
