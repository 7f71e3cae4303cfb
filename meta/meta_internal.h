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
    double best_score;           /* lowest validation score so far (INFINITY: none) */
};

/* calloc that stops with "op: out of memory" instead of returning NULL */
static inline void *meta_calloc(size_t n, size_t size, const char *op) {
    void *p = calloc(n ? n : 1, size);
    if (!p) mn_fatal("%s: out of memory", op);
    return p;
}

/* splitmix64: derives independent seeds from one (streams of a run, a task's draws). */
uint64_t meta_mix(uint64_t x);
/* A new slot b drawn from tr's sampling stream (its seed, then its horizon). */
mn_meta_slot *meta_trainer_sample_slot(mn_meta_trainer *tr, int b);
/* Slot b of task seed: with its runs on the rank that owns it, without them (seed, horizon, step only) on
 * the others. */
mn_meta_slot *meta_trainer_make_slot(const mn_meta_trainer *tr, int b, uint64_t seed, int64_t horizon);

/* ---- MPI (mpi.c): rank 0 of 1 unless mn_meta_mpi_init started MPI ---- */
int meta_mpi_rank(void);
int meta_mpi_size(void);
static inline bool meta_slot_owned(int b) { return b % meta_mpi_size() == meta_mpi_rank(); }
/* buf [n] = the sum over the ranks of their buf (every rank gets it) */
void meta_mpi_sum(double *buf, int64_t n);
/* true when ok on every rank (a collective call) */
bool meta_mpi_all(bool ok);
/* the regular files of dir to rank dest / from rank src (into dir); rank 0's dir to every rank */
bool meta_mpi_send_files(const char *dir, int dest, mn_err *err);
bool meta_mpi_recv_files(const char *dir, int src, mn_err *err);
bool meta_mpi_bcast_files(const char *dir, mn_err *err);
/* The built-in estimators' tables (tbptt.c, pes.c). */
mn_meta_estimator meta_tbptt_estimator(const mn_estimator_opts *opts);
mn_meta_estimator meta_pes_estimator(const mn_estimator_opts *opts);
/* Scales grad [n] to global norm clip when above it (clip 0: never), as mn_clip_grad_norm; returns the
 * norm before clipping (accumulated in double). */
double meta_clip_flat(float *grad, int64_t n, float clip);

/* ---- tasks on the models (data.c, task_image.c, task_bert.c, family.c) ---- */
/* Data built once per run and kept with d under key (e.g. a tokenised corpus): make(d, key, err) on first use
 * (NULL and err on failure), destroy(value) when d is freed. */
void *meta_data_cache(mn_meta_data *d, const char *key, void *(*make)(mn_meta_data *d, const char *key, mn_err *err),
                      void (*destroy)(void *value), mn_err *err);
int64_t meta_data_test_limit(const mn_meta_data *d);
const char *meta_data_work_dir(const mn_meta_data *d);
const char *meta_data_fortunes_dir(const mn_meta_data *d);
/* I32 [n] indices uniform in [0, N) from rng */
mn_tensor *meta_sample_rows(mn_rng *rng, int64_t n, int64_t N);
/* Mean cross-entropy and accuracy over the rows of x (labels y) without gradients, chunk rows at a time:
 * logits(ctx, rows) -> [rows, classes] (rows: a contiguous slice of x). */
void meta_classify_test(mn_tensor *x, mn_tensor *y, int64_t chunk, mn_tensor *(*logits)(void *ctx, mn_tensor *rows),
                        void *ctx, double *loss, double *accuracy);
/* out[i] = fresh copies of the listed parameters (new references): a model task's init */
void meta_clone_params(const mn_params *p, mn_tensor **out);

#endif
