/* Checkpoints of the meta-training outer loop: a directory holding everything a resume needs, so a
 * resumed run continues exactly as one that never stopped.
 *
 *   optimizer.safetensors       the learned optimizer (mn_lopt_save)
 *   meta_optimizer.safetensors  Adam's state over its weights (mn_optim_save)
 *   trainer.safetensors         every run's parameters ("run.B.param.J"); metadata: the options, the
 *                               family, the iteration, the sampling stream, each run's seed, step,
 *                               horizon and data streams
 *   run.B.state.safetensors     each run's optimizer state (mn_lopt_state_save)
 *
 * The files are written into DIR.tmp, which then replaces DIR by two renames (DIR -> DIR.old,
 * DIR.tmp -> DIR); a crash between them leaves DIR.old, which load falls back to. */
#include "lopt/learned_internal.h"
#include "meta/meta_internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRAINER_FORMAT "mnemo-meta-trainer"
#define TRAINER_VERSION "1"
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

static const char *run_key(int b, const char *what) {
    static char key[48];
    snprintf(key, sizeof key, "run.%d.%s", b, what);
    return key;
}

/* ---- files and directories -------------------------------------------------------------------------- */
static const char *join(char *buf, size_t size, const char *dir, const char *name) {
    if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size) mn_fatal("meta-trainer checkpoint: path too long");
    return buf;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
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

/* ---- save ---------------------------------------------------------------------------------------------- */
static bool write_trainer(const mn_meta_trainer *tr, const char *dir, mn_err *err) {
    meta_list *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_meta_trainer_save: out of memory");
    options_meta(tr, m);
    meta_add(m, "iteration", "%" PRId64, tr->iteration);
    meta_add(m, "total_skipped", "%" PRId64, tr->total_skipped);
    meta_add(m, "rng", "%" PRIu64 ":%" PRIu64, tr->rng.seed, tr->rng.counter);
    int n_entries = 0, R = tr->est.runs_per_task(&tr->est);
    for (int b = 0; b < tr->opts.tasks; b++) {
        n_entries += tr->slots[b]->n_carry > 0;
        for (int j = 0; j < R; j++) n_entries += tr->slots[b]->runs[j]->task->n_params;
    }
    mn_st_entry *entries = calloc((size_t)n_entries, sizeof *entries);
    char (*names)[48] = calloc((size_t)n_entries, sizeof *names);
    if (!entries || !names) mn_fatal("mn_meta_trainer_save: out of memory");
    n_entries = 0;
    mn_scope sc = mn_scope_begin();
    for (int k = 0; k < tr->opts.tasks * R; k++) {
        const mn_meta_slot *s = tr->slots[k / R];
        const mn_task_run *r = s->runs[k % R];
        int b = k;
        if (k % R == 0) {
            meta_add(m, slot_key(k / R, "noise"), "%" PRIu64 ":%" PRIu64, s->noise.seed, s->noise.counter);
            if (s->n_carry) {
                snprintf(names[n_entries], sizeof names[0], "slot.%d.carry", k / R);
                mn_tensor *c = mn_from_data(MN_SHAPE(s->n_carry), s->carry);
                entries[n_entries] = (mn_st_entry){names[n_entries], c};
                n_entries++;
            }
        }
        meta_add(m, run_key(b, "seed"), "%" PRIu64, r->seed);
        meta_add(m, run_key(b, "step"), "%" PRId64, r->step);
        meta_add(m, run_key(b, "horizon"), "%" PRId64, r->horizon);
        meta_add(m, run_key(b, "data_rng"), "%" PRIu64 ":%" PRIu64, r->data_rng.seed, r->data_rng.counter);
        meta_add(m, run_key(b, "meta_rng"), "%" PRIu64 ":%" PRIu64, r->meta_rng.seed, r->meta_rng.counter);
        meta_add(m, run_key(b, "task"), "%s", r->task->desc);
        for (int j = 0; j < r->task->n_params; j++) {
            snprintf(names[n_entries], sizeof names[0], "run.%d.param.%d", b, j);
            entries[n_entries] = (mn_st_entry){names[n_entries], r->params[j]};
            n_entries++;
        }
    }
    const char **kv = calloc((size_t)(2 * m->n), sizeof *kv);
    if (!kv) mn_fatal("mn_meta_trainer_save: out of memory");
    for (int i = 0; i < m->n; i++) kv[2 * i] = m->keys[i], kv[2 * i + 1] = m->values[i];
    char path[4200];
    bool ok = mn_st_write(join(path, sizeof path, dir, "trainer.safetensors"), n_entries, entries, m->n, kv, err);
    mn_scope_end(sc);
    free(kv);
    free(entries);
    free(names);
    free(m);
    return ok;
}

bool mn_meta_trainer_save(const mn_meta_trainer *tr, const char *dir, mn_err *err) {
    char tmp[4200], old[4200], path[4200], name[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    snprintf(old, sizeof old, "%s.old", dir);
    if (!remove_dir(tmp) || mkdir(tmp, 0777) != 0)
        return mn_err_set(err, "%s: cannot create the checkpoint directory (%s)", tmp, strerror(errno));
    bool ok = mn_lopt_save(tr->o, join(path, sizeof path, tmp, "optimizer.safetensors"), err) &&
              mn_optim_save(tr->adam, join(path, sizeof path, tmp, "meta_optimizer.safetensors"), err) &&
              write_trainer(tr, tmp, err);
    int R = tr->est.runs_per_task(&tr->est);
    for (int k = 0; ok && k < tr->opts.tasks * R; k++) {
        snprintf(name, sizeof name, "run.%d.state.safetensors", k);
        ok = mn_lopt_state_save(tr->slots[k / R]->runs[k % R]->state, join(path, sizeof path, tmp, name), err);
    }
    if (!ok) {
        remove_dir(tmp);
        return false;
    }
    if (exists(dir) && (!remove_dir(old) || rename(dir, old) != 0))
        return mn_err_set(err, "%s: cannot move the previous checkpoint aside to %s (%s)", dir, old, strerror(errno));
    if (rename(tmp, dir) != 0)
        return mn_err_set(err, "%s: cannot rename %s into place (%s)", dir, tmp, strerror(errno));
    remove_dir(old);
    return true;
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

/* Parameters of run b from the file into r (shapes checked). */
static bool load_params(const mn_st_file *f, int b, mn_task_run *r, mn_err *err) {
    char name[48];
    for (int j = 0; j < r->task->n_params; j++) {
        snprintf(name, sizeof name, "run.%d.param.%d", b, j);
        const char *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        mn_tensor *p = r->params[j];
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

/* Restores run k (of the slot's runs, made from the same seed) from the file: parameters, state, streams
 * and counters. */
static bool load_run(const mn_st_file *f, const char *dir, int k, mn_task_run *r, mn_err *err) {
    uint64_t seed, step, horizon;
    mn_rng data, meta;
    if (!meta_u64(f, run_key(k, "seed"), &seed, err) || !meta_u64(f, run_key(k, "step"), &step, err) ||
        !meta_u64(f, run_key(k, "horizon"), &horizon, err) || !meta_rng(f, run_key(k, "data_rng"), &data, err) ||
        !meta_rng(f, run_key(k, "meta_rng"), &meta, err))
        return false;
    if (seed != r->seed || (int64_t)horizon != r->horizon)
        return mn_err_set(err, "%s: run %d has seed %" PRIu64 " and horizon %" PRIu64
                               ", unlike the other runs of its task",
                          mn_st_path(f), k, seed, horizon);
    char path[4200], name[64];
    snprintf(name, sizeof name, "run.%d.state.safetensors", k);
    if (!load_params(f, k, r, err) || !mn_lopt_state_load(r->state, join(path, sizeof path, dir, name), err))
        return false;
    r->step = (int64_t)step;
    r->data_rng = data;
    r->meta_rng = meta;
    return true;
}

/* Re-creates slot b from its first run's seed and horizon, then restores its runs and carried state. */
static mn_meta_slot *load_slot(const mn_meta_trainer *tr, const mn_st_file *f, const char *dir, int b,
                               int *n_tensors, mn_err *err) {
    int R = tr->est.runs_per_task(&tr->est);
    uint64_t seed, horizon;
    if (!meta_u64(f, run_key(b * R, "seed"), &seed, err) || !meta_u64(f, run_key(b * R, "horizon"), &horizon, err))
        return NULL;
    mn_meta_slot *s = mn_meta_slot_new(&tr->est, tr->o, tr->family, seed, (int64_t)horizon);
    bool ok = true;
    for (int j = 0; ok && j < R; j++) {
        ok = load_run(f, dir, b * R + j, s->runs[j], err);
        *n_tensors += s->runs[j]->task->n_params;
    }
    const char *noise = slot_key(b, "noise");
    ok = ok && (mn_st_meta(f, noise) ? meta_rng(f, noise, &s->noise, err) : true); /* absent in the first format */
    if (ok && s->n_carry) {
        char name[48];
        snprintf(name, sizeof name, "slot.%d.carry", b);
        const char *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        ok = mn_st_info(f, name, &dtype, &ndim, shape) && !strcmp(dtype, "F32") && ndim == 1 && shape[0] == s->n_carry;
        if (!ok) {
            mn_err_set(err, "%s: tensor %s is missing or not F32 [%lld]", mn_st_path(f), name, (long long)s->n_carry);
        } else {
            mn_scope sc = mn_scope_begin();
            mn_tensor *t = mn_st_read(f, name, err);
            if (t) memcpy(s->carry, mn_data(t), sizeof(float) * (size_t)s->n_carry);
            ok = t != NULL;
            mn_scope_end(sc);
        }
        (*n_tensors)++;
    }
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

bool mn_meta_trainer_load(mn_meta_trainer *tr, const char *dir_in, mn_err *err) {
    char dir[4200], path[4200];
    snprintf(dir, sizeof dir, "%s", dir_in);
    if (!exists(join(path, sizeof path, dir, "trainer.safetensors"))) {
        char old[4200];
        snprintf(old, sizeof old, "%s.old", dir_in);
        if (exists(join(path, sizeof path, old, "trainer.safetensors"))) snprintf(dir, sizeof dir, "%s", old);
    }
    mn_st_file *f = mn_st_open(join(path, sizeof path, dir, "trainer.safetensors"), err);
    if (!f) return false;
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
    /* the keys the first format lacked: absent means its fixed choices */
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
    int B = tr->opts.tasks, n_expected = 0;
    mn_meta_slot **slots = calloc((size_t)B, sizeof *slots);
    if (!slots) mn_fatal("mn_meta_trainer_load: out of memory");
    for (int b = 0; ok && b < B; b++) {
        slots[b] = load_slot(tr, f, dir, b, &n_expected, err);
        ok = slots[b] != NULL;
    }
    if (ok && mn_st_count(f) != n_expected)
        ok = mn_err_set(err, "%s: %d tensors, expected %d", mn_st_path(f), mn_st_count(f), n_expected);
    mn_st_close(f);
    mn_lopt *loaded = NULL;
    ok = ok && load_weights(tr, dir, &loaded, err);
    /* last, because it is the one step that changes the trainer (and does nothing when it fails) */
    ok = ok && mn_optim_load(tr->adam, join(path, sizeof path, dir, "meta_optimizer.safetensors"), err);
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
    } else {
        for (int b = 0; b < B; b++) mn_meta_slot_free(slots[b]);
    }
    mn_lopt_free(loaded);
    free(slots);
    return ok;
}
