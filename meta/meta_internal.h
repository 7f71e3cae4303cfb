/* Internals shared by the meta-training files (metatrain.c, metatrain_io.c, metatask_quadratic.c). */
#ifndef MN_METATRAIN_INTERNAL_H
#define MN_METATRAIN_INTERNAL_H

#include "meta/meta.h"

struct mn_meta_trainer {
    mn_lopt *o;                  /* the caller's; its weights are trained in place */
    const mn_meta_family *family;
    mn_meta_trainer_opts opts;
    mn_optimizer *adam;          /* over mn_lopt_weights(o) */
    mn_task_run **runs;          /* [opts.tasks] */
    mn_rng rng;                  /* task seeds and horizons */
    int64_t iteration, total_skipped;
};

/* splitmix64: derives independent seeds from one (streams of a run, a task's draws). */
uint64_t meta_mix(uint64_t x);
/* A new task run drawn from tr's sampling stream (its seed, then its horizon). */
mn_task_run *meta_trainer_sample_run(mn_meta_trainer *tr);

#endif
