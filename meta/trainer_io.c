/* Checkpoints of the meta-training outer loop: a directory holding everything a resume needs, so a
 * resumed run continues exactly as one that never stopped.
 *
 *   optimizer.safetensors            the learned optimizer (mn_lopt_save)
 *   meta_optimizer.safetensors       Adam's state over its weights (mn_optim_save)
 *   trainer.safetensors              metadata: the options, the family, the iteration, the sampling stream,
 *                                    each slot's seed, horizon and step
 *   slot.B.safetensors               slot B's runs' parameters ("run.J.param.I") and the estimator's carried
 *                                    floats ("carry"); metadata: the perturbation stream, each run's step and
 *                                    data streams
 *   slot.B.run.J.state.safetensors   each run's optimizer state (mn_lopt_state_save)
 *
 * The directory is written as one unit (mn_ckpt_dir: DIR.tmp with a manifest of sizes and CRC-32s,
 * then two renames; a crash between them leaves DIR.old, which load falls back to). Under MPI every rank
 * writes its own slots into a directory of its own and sends the files to rank 0, which alone writes DIR;
 * on load rank 0 sends the checkpoint's files to the others. */
#include "lopt/learned_internal.h"
#include "meta/meta_internal.h"

#include <dirent.h>
#include <math.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRAINER_FORMAT "mnemo-meta-trainer"
#define TRAINER_VERSION "2"
#define MAX_META 512

/* ---- metadata as key/value strings ----------------------------------------------------------------- */
typedef struct {
    int n;
    char keys[MAX_META][48];
    char values[MAX_META][160];
} meta_list;

static void meta_add(meta_list *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void meta_add(meta_list *m, const char *key, const char *fmt, ...) {
    if (m->n == MAX_META) mn_fatal("mn_meta_trainer_save: too many metadata entries");
    snprintf(m->keys[m->n], sizeof m->keys[0], "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->values[m->n], sizeof m->values[0], fmt, ap);
    va_end(ap);
    m->n++;
}

/* The shortest decimal that reads back as exactly the float v. */
static void add_float(meta_list *m, const char *key, float v) {
    char buf[40];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    meta_add(m, key, "%s", buf);
}

/* The options a resume must repeat (compared as strings). */
static void options_meta(const mn_meta_trainer *tr, meta_list *m) {
    const mn_meta_trainer_opts *p = &tr->opts;
    meta_add(m, "format", TRAINER_FORMAT);
    meta_add(m, "version", TRAINER_VERSION);
    meta_add(m, "family", "%s", tr->family->name);
    meta_add(m, "optimizer_kind", "%s", mn_lopt_kind_name(tr->o->cfg.kind));
    meta_add(m, "tasks", "%d", p->tasks);
    meta_add(m, "unroll_steps", "%d", p->estimator.unroll.steps);
    meta_add(m, "second_order", "%s", p->estimator.unroll.second_order ? "true" : "false");
    meta_add(m, "plain_mean", "%s", p->estimator.unroll.plain_mean ? "true" : "false");
    add_float(m, "lr_scale", p->estimator.unroll.lr_scale);
    add_float(m, "clip", p->estimator.clip);
    add_float(m, "meta_lr", p->meta_lr);
    meta_add(m, "horizon_min", "%" PRId64, p->horizon_min);
    meta_add(m, "horizon_max", "%" PRId64, p->horizon_max);
    meta_add(m, "seed", "%" PRIu64, p->seed);
    /* only where they differ from the first format's fixed choices, so its checkpoints still resume */
    if (p->estimator.kind != MN_ESTIMATOR_TBPTT) {
        meta_add(m, "estimator", "%s", mn_estimator_kind_name(p->estimator.kind));
        add_float(m, "sigma", p->estimator.sigma);
        meta_add(m, "pairs", "%d", p->estimator.pairs);
    }
    if (p->horizon != MN_HORIZON_UNIFORM) meta_add(m, "horizon", "%s", mn_horizon_kind_name(p->horizon));
}

static const char *slot_key(int b, const char *what) {
    static char key[48];
    snprintf(key, sizeof key, "slot.%d.%s", b, what);
    return key;
}

static const char *run_key(int j, const char *what) {
    static char key[48];
    snprintf(key, sizeof key, "run.%d.%s", j, what);
    return key;
}

/* key/value arrays of m for mn_st_write (into kv [2 m->n]) */
static const char **meta_kv(const meta_list *m) {
    const char **kv = calloc((size_t)(2 * m->n + 1), sizeof *kv);
    if (!kv) mn_fatal("meta-trainer checkpoint: out of memory");
    for (int i = 0; i < m->n; i++) kv[2 * i] = m->keys[i], kv[2 * i + 1] = m->values[i];
    return kv;
}

/* ---- files and directories -------------------------------------------------------------------------- */
static const char *join(char *buf, size_t size, const char *dir, const char *name) {
    if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size) mn_fatal("meta-trainer checkpoint: path too long");
    return buf;
}

/* Removes a directory of plain files (what save writes); true if it is gone. */
static bool remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(join(path, sizeof path, dir, e->d_name));
    closedir(d);
    return rmdir(dir) == 0;
}

static const char *slot_file(char *buf, size_t size, const char *dir, int b, int j) {
    char name[64];
    if (j < 0) snprintf(name, sizeof name, "slot.%d.safetensors", b);
    else snprintf(name, sizeof name, "slot.%d.run.%d.state.safetensors", b, j);
    return join(buf, size, dir, name);
}

/* ---- save ---------------------------------------------------------------------------------------------- */

/* slot.B.safetensors and its runs' states into dir */
static bool write_slot(const mn_meta_slot *s, int b, const char *dir, mn_err *err) {
    meta_list *m = calloc(1, sizeof *m);
    int n_entries = s->n_carry > 0;
    for (int j = 0; j < s->n_runs; j++) n_entries += s->runs[j]->task->n_params;
    mn_st_entry *entries = calloc((size_t)n_entries + 1, sizeof *entries);
    char (*names)[48] = calloc((size_t)n_entries + 1, sizeof *names);
    if (!m || !entries || !names) mn_fatal("mn_meta_trainer_save: out of memory");
    meta_add(m, "format", TRAINER_FORMAT "-slot");
    meta_add(m, "noise", "%" PRIu64 ":%" PRIu64, s->noise.seed, s->noise.counter);
    mn_scope sc = mn_scope_begin();
    int k = 0;
    if (s->n_carry) {
        snprintf(names[k], sizeof names[0], "carry");
        entries[k] = (mn_st_entry){names[k], mn_from_data(MN_SHAPE(s->n_carry), s->carry)};
        k++;
    }
    for (int j = 0; j < s->n_runs; j++) {
        const mn_task_run *r = s->runs[j];
        meta_add(m, run_key(j, "step"), "%" PRId64, r->step);
        meta_add(m, run_key(j, "data_rng"), "%" PRIu64 ":%" PRIu64, r->data_rng.seed, r->data_rng.counter);
        meta_add(m, run_key(j, "meta_rng"), "%" PRIu64 ":%" PRIu64, r->meta_rng.seed, r->meta_rng.counter);
        meta_add(m, run_key(j, "task"), "%s", r->task->desc);
        for (int i = 0; i < r->task->n_params; i++, k++) {
            snprintf(names[k], sizeof names[0], "run.%d.param.%d", j, i);
            entries[k] = (mn_st_entry){names[k], r->params[i]};
        }
    }
    const char **kv = meta_kv(m);
    char path[4200];
    bool ok = mn_st_write(slot_file(path, sizeof path, dir, b, -1), n_entries, entries, m->n, kv, err);
    mn_scope_end(sc);
    for (int j = 0; ok && j < s->n_runs; j++)
        ok = mn_lopt_state_save(s->runs[j]->state, slot_file(path, sizeof path, dir, b, j), err);
    free(kv), free(entries), free(names), free(m);
    return ok;
}

static bool write_trainer(const mn_meta_trainer *tr, const char *dir, mn_err *err) {
    meta_list *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_meta_trainer_save: out of memory");
    options_meta(tr, m);
    meta_add(m, "iteration", "%" PRId64, tr->iteration);
    meta_add(m, "total_skipped", "%" PRId64, tr->total_skipped);
    meta_add(m, "rng", "%" PRIu64 ":%" PRIu64, tr->rng.seed, tr->rng.counter);
    meta_add(m, "best_score", "%.17g", tr->best_score);
    for (int b = 0; b < tr->opts.tasks; b++) {
        const mn_meta_slot *s = tr->slots[b];
        meta_add(m, slot_key(b, "seed"), "%" PRIu64, s->seed);
        meta_add(m, slot_key(b, "horizon"), "%" PRId64, s->horizon);
        meta_add(m, slot_key(b, "step"), "%" PRId64, s->step);
    }
    const char **kv = meta_kv(m);
    char path[4200];
    bool ok = mn_st_write(join(path, sizeof path, dir, "trainer.safetensors"), 0, NULL, m->n, kv, err);
    free(kv);
    free(m);
    return ok;
}

static bool write_own_slots(const mn_meta_trainer *tr, const char *dir, mn_err *err) {
    bool ok = true;
    for (int b = 0; ok && b < tr->opts.tasks; b++)
        if (meta_slot_owned(b)) ok = write_slot(tr->slots[b], b, dir, err);
    return ok;
}

bool mn_meta_trainer_save(const mn_meta_trainer *tr, const char *dir, mn_err *err) {
    char tmp[4200], path[4200];
    int rank = meta_mpi_rank(), size = meta_mpi_size();
    mn_ckpt_dir c;
    bool ok;
    if (rank == 0) {
        ok = mn_ckpt_dir_begin(&c, dir, tr->iteration, err);
        snprintf(tmp, sizeof tmp, "%s", c.staging);
    } else {
        snprintf(tmp, sizeof tmp, "%s.rank%d.tmp", dir, rank);
        ok = remove_dir(tmp) && mkdir(tmp, 0777) == 0;
        if (!ok) mn_err_set(err, "%s: cannot create the checkpoint directory (%s)", tmp, strerror(errno));
    }
    ok = ok && write_own_slots(tr, tmp, err);
    if (rank == 0) {
        ok = ok && mn_lopt_save(tr->o, join(path, sizeof path, tmp, "optimizer.safetensors"), err) &&
             mn_optim_save(tr->adam, join(path, sizeof path, tmp, "meta_optimizer.safetensors"), err) &&
             write_trainer(tr, tmp, err);
        mn_err why;
        for (int r = 1; r < size; r++) /* the other ranks' slots, in rank order */
            if (!meta_mpi_recv_files(tmp, r, &why) && ok) ok = mn_err_set(err, "%s", why.msg);
    } else {
        mn_err why;
        if (!meta_mpi_send_files(tmp, 0, &why) && ok) ok = mn_err_set(err, "%s", why.msg);
        remove_dir(tmp);
    }
    if (!meta_mpi_all(ok) && ok) ok = mn_err_set(err, "%s: another rank could not write its part", dir);
    if (rank != 0) return ok;
    if (ok) return mn_ckpt_dir_commit(&c, err);
    mn_ckpt_dir_abort(&c);
    return false;
}

/* ---- load ---------------------------------------------------------------------------------------------- */
static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool meta_u64(const mn_st_file *f, const char *key, uint64_t *out, mn_err *err) {
    const char *v = mn_st_meta(f, key);
    if (!parse_u64(v, out))
        return mn_err_set(err, "%s: metadata \"%s\" is \"%s\", expected a non-negative integer", mn_st_path(f), key,
                          v ? v : "(missing)");
    return true;
}

static bool meta_rng(const mn_st_file *f, const char *key, mn_rng *out, mn_err *err) {
    const char *v = mn_st_meta(f, key);
    char buf[64];
    char *colon = NULL;
    if (v && strlen(v) < sizeof buf) {
        snprintf(buf, sizeof buf, "%s", v);
        colon = strchr(buf, ':');
    }
    if (colon) *colon = '\0';
    if (!colon || !parse_u64(buf, &out->seed) || !parse_u64(colon + 1, &out->counter))
        return mn_err_set(err, "%s: metadata \"%s\" is \"%s\", expected SEED:COUNTER", mn_st_path(f), key,
                          v ? v : "(missing)");
    return true;
}

/* Parameters of run j from the slot's file into r (shapes checked). */
static bool load_params(const mn_st_file *f, int j, mn_task_run *r, mn_err *err) {
    char name[48];
    for (int i = 0; i < r->task->n_params; i++) {
        snprintf(name, sizeof name, "run.%d.param.%d", j, i);
        const char *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        mn_tensor *p = r->params[i];
        bool same = mn_st_info(f, name, &dtype, &ndim, shape) && !strcmp(dtype, "F32") && ndim == p->ndim;
        for (int d = 0; same && d < ndim; d++) same = shape[d] == p->shape[d];
        char want[96];
        if (!same)
            return mn_err_set(err, "%s: tensor %s is missing or not F32 %s (task '%s')", mn_st_path(f), name,
                              mn_shape_str(p, want), r->task->desc);
        mn_scope sc = mn_scope_begin();
        mn_tensor *t = mn_st_read(f, name, err);
        if (t) mnt_copy_(p, t);
        mn_scope_end(sc);
        if (!t) return false;
    }
    return true;
}

/* Re-creates slot b from its seed and horizon; an owned slot's runs and carried state come from its files. */
static mn_meta_slot *load_slot(const mn_meta_trainer *tr, const mn_st_file *tf, const char *dir, int b, mn_err *err) {
    uint64_t seed, horizon, step;
    if (!meta_u64(tf, slot_key(b, "seed"), &seed, err) || !meta_u64(tf, slot_key(b, "horizon"), &horizon, err) ||
        !meta_u64(tf, slot_key(b, "step"), &step, err))
        return NULL;
    mn_meta_slot *s = meta_trainer_make_slot(tr, b, seed, (int64_t)horizon);
    s->step = (int64_t)step;
    if (!meta_slot_owned(b)) return s;
    char path[4200];
    mn_st_file *f = mn_st_open(slot_file(path, sizeof path, dir, b, -1), err);
    bool ok = f != NULL;
    int n_expected = s->n_carry > 0;
    ok = ok && meta_rng(f, "noise", &s->noise, err);
    for (int j = 0; ok && j < s->n_runs; j++) {
        mn_task_run *r = s->runs[j];
        uint64_t run_step;
        ok = meta_u64(f, run_key(j, "step"), &run_step, err) && meta_rng(f, run_key(j, "data_rng"), &r->data_rng, err) &&
             meta_rng(f, run_key(j, "meta_rng"), &r->meta_rng, err) && load_params(f, j, r, err) &&
             mn_lopt_state_load(r->state, slot_file(path, sizeof path, dir, b, j), err);
        r->step = (int64_t)run_step;
        n_expected += r->task->n_params;
    }
    if (ok && s->n_carry) {
        const char *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        ok = mn_st_info(f, "carry", &dtype, &ndim, shape) && !strcmp(dtype, "F32") && ndim == 1 && shape[0] == s->n_carry;
        if (!ok) {
            mn_err_set(err, "%s: tensor carry is missing or not F32 [%lld]", mn_st_path(f), (long long)s->n_carry);
        } else {
            mn_scope sc = mn_scope_begin();
            mn_tensor *t = mn_st_read(f, "carry", err);
            if (t) memcpy(s->carry, mn_data(t), sizeof(float) * (size_t)s->n_carry);
            ok = t != NULL;
            mn_scope_end(sc);
        }
    }
    if (ok && mn_st_count(f) != n_expected)
        ok = mn_err_set(err, "%s: %d tensors, expected %d", mn_st_path(f), mn_st_count(f), n_expected);
    mn_st_close(f);
    if (!ok) {
        mn_meta_slot_free(s);
        return NULL;
    }
    return s;
}

/* The checkpoint's optimizer must have this trainer's config; its weights come back in *loaded. */
static bool load_weights(const mn_meta_trainer *tr, const char *dir, mn_lopt **loaded, mn_err *err) {
    char path[4200];
    *loaded = mn_lopt_load(join(path, sizeof path, dir, "optimizer.safetensors"), err);
    if (!*loaded) return false;
    if (!lopt_config_equal(&(*loaded)->cfg, &tr->o->cfg)) {
        mn_lopt_free(*loaded);
        *loaded = NULL;
        return mn_err_set(err, "%s: the learned optimizer's config differs from this run's (another --optimizer?)",
                          path);
    }
    /* the fixed random features are not copied: they must already be the same */
    const mn_params *a = &(*loaded)->features, *b = &tr->o->features;
    bool same = a->count == b->count;
    for (int i = 0; same && i < a->count; i++) {
        mn_tensor *x = a->items[i].tensor, *y = b->items[i].tensor;
        same = mn_same_shape(x, y) && !memcmp(mn_data(x), mn_data(y), sizeof(float) * (size_t)mn_numel(x));
    }
    if (!same) {
        mn_lopt_free(*loaded);
        *loaded = NULL;
        return mn_err_set(err, "%s: the learned optimizer's random features differ from this run's (another seed?)",
                          path);
    }
    return true;
}

/* Everything but the Adam state and the weights, from dir into fresh slots (the trainer unchanged). */
static bool load_from(mn_meta_trainer *tr, const char *dir, mn_err *err) {
    char path[4200];
    mn_st_file *f = mn_st_open(join(path, sizeof path, dir, "trainer.safetensors"), err);
    if (!f) { /* the other ranks still meet this one in the two agreements below */
        meta_mpi_all(false);
        meta_mpi_all(false);
        return false;
    }
    meta_list *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_meta_trainer_load: out of memory");
    options_meta(tr, m);
    bool ok = true;
    for (int i = 0; ok && i < m->n; i++) {
        const char *v = mn_st_meta(f, m->keys[i]);
        if (!v || strcmp(v, m->values[i]))
            ok = mn_err_set(err, "%s: checkpoint has %s = \"%s\", this run has \"%s\"", path, m->keys[i],
                            v ? v : "(missing)", m->values[i]);
    }
    free(m);
    /* the keys written only when they differ from the defaults */
    const char *keys[2] = {"estimator", "horizon"};
    const char *fallback[2] = {"tbptt", "uniform"};
    const char *want[2] = {mn_estimator_kind_name(tr->opts.estimator.kind), mn_horizon_kind_name(tr->opts.horizon)};
    for (int i = 0; ok && i < 2; i++) {
        const char *v = mn_st_meta(f, keys[i]);
        if (strcmp(v ? v : fallback[i], want[i]))
            ok = mn_err_set(err, "%s: checkpoint has %s = \"%s\", this run has \"%s\"", path, keys[i],
                            v ? v : fallback[i], want[i]);
    }
    uint64_t iteration = 0, skipped = 0;
    mn_rng rng = {0};
    ok = ok && meta_u64(f, "iteration", &iteration, err) && meta_u64(f, "total_skipped", &skipped, err) &&
         meta_rng(f, "rng", &rng, err);
    const char *bs = mn_st_meta(f, "best_score");
    char *end = NULL;
    double best = bs ? strtod(bs, &end) : NAN;
    if (ok && (!bs || *end || isnan(best)))
        ok = mn_err_set(err, "%s: metadata \"best_score\" is \"%s\", expected a number or inf", path, bs ? bs : "(missing)");
    int B = tr->opts.tasks;
    mn_meta_slot **slots = calloc((size_t)B, sizeof *slots);
    if (!slots) mn_fatal("mn_meta_trainer_load: out of memory");
    for (int b = 0; ok && b < B; b++) ok = (slots[b] = load_slot(tr, f, dir, b, err)) != NULL;
    mn_st_close(f);
    mn_lopt *loaded = NULL;
    ok = ok && load_weights(tr, dir, &loaded, err);
    ok = meta_mpi_all(ok) || (ok && mn_err_set(err, "%s: another rank could not read its part", dir));
    /* last, because it is the one step that changes the trainer (and does nothing when it fails) */
    ok = ok && mn_optim_load(tr->adam, join(path, sizeof path, dir, "meta_optimizer.safetensors"), err);
    ok = meta_mpi_all(ok) || (ok && mn_err_set(err, "%s: another rank could not read its part", dir));
    if (ok) {
        const mn_params *w = mn_lopt_weights(tr->o), *lw = mn_lopt_weights(loaded);
        for (int i = 0; i < w->count; i++) mnt_copy_(w->items[i].tensor, lw->items[i].tensor);
        for (int b = 0; b < B; b++) {
            mn_meta_slot_free(tr->slots[b]);
            tr->slots[b] = slots[b];
        }
        tr->iteration = (int64_t)iteration;
        tr->total_skipped = (int64_t)skipped;
        tr->rng = rng;
        tr->best_score = best;
    } else {
        for (int b = 0; b < B; b++) mn_meta_slot_free(slots[b]);
    }
    mn_lopt_free(loaded);
    free(slots);
    return ok;
}

bool mn_meta_trainer_load(mn_meta_trainer *tr, const char *dir_in, mn_err *err) {
    char dir[4200];
    int rank = meta_mpi_rank();
    /* rank 0 checks the checkpoint (its manifest; DIR.old after a save stopped between its renames);
     * the other ranks load rank 0's files from a directory of their own */
    bool opened = true;
    if (rank == 0) {
        opened = mn_ckpt_dir_open(dir_in, dir, sizeof dir, NULL, err);
    } else {
        snprintf(dir, sizeof dir, "%s.rank%d.load", dir_in, rank);
        remove_dir(dir);
    }
    if (!meta_mpi_all(opened)) return opened ? mn_err_set(err, "%s: rank 0 cannot read the checkpoint", dir_in) : false;
    mn_err why;
    bool sent = meta_mpi_bcast_files(dir, &why);
    bool ok = meta_mpi_all(sent) ? load_from(tr, dir, err) : mn_err_set(err, "%s: %s", dir_in, why.msg);
    if (rank != 0) remove_dir(dir);
    return ok;
}
