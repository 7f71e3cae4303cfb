/* Learned-optimizer checkpoints: safetensors holding the weights under their names and the fixed
 * random features under "features.*", with the kind, the format version, the seed and every
 * config field in the header metadata. Loading validates the whole file against the config it
 * declares before building anything the caller sees. */
#include "lopt/learned_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOPT_FORMAT "mnemo-learned-optimizer"
#define LOPT_VERSION "1"

/* The shortest decimal that reads back as exactly the float v. */
static void format_float(char *buf, size_t size, float v) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

/* Metadata shared by both files: format, version, kind and every config field. values: [n_meta][40]. */
static int config_meta(const mn_lopt_config *cfg, const char *format, const char **meta, char (*values)[40]) {
    const char *fixed[6] = {"format", format, "version", LOPT_VERSION, "kind", mn_lopt_kind_name(cfg->kind)};
    for (int k = 0; k < 6; k++) meta[k] = fixed[k];
    for (int i = 0; i < lopt_n_config_fields; i++) {
        const lopt_config_field *f = &lopt_config_fields[i];
        double x = lopt_config_get(cfg, f);
        if (f->type == LOPT_FLOAT) format_float(values[i], sizeof values[0], (float)x);
        else if (f->type == LOPT_BOOL) snprintf(values[i], sizeof values[0], "%s", x != 0 ? "true" : "false");
        else snprintf(values[i], sizeof values[0], "%d", (int)x);
        meta[2 * (3 + i)] = f->key;
        meta[2 * (3 + i) + 1] = values[i];
    }
    return 3 + lopt_n_config_fields;
}

bool mn_lopt_save(const mn_lopt *o, const char *path, mn_err *err) {
    int n_w = o->weights.count, n_f = o->features.count;
    mn_st_entry *entries = calloc((size_t)(n_w + n_f), sizeof *entries);
    const char **meta = calloc((size_t)(2 * (4 + lopt_n_config_fields)), sizeof *meta);
    char (*values)[40] = calloc((size_t)(1 + lopt_n_config_fields), sizeof *values);
    if (!entries || !meta || !values) mn_fatal("mn_lopt_save: out of memory");
    for (int i = 0; i < n_w; i++) entries[i] = (mn_st_entry){o->weights.items[i].name, o->weights.items[i].tensor};
    for (int i = 0; i < n_f; i++)
        entries[n_w + i] = (mn_st_entry){o->features.items[i].name, o->features.items[i].tensor};
    int n_meta = config_meta(&o->cfg, LOPT_FORMAT, meta, values);
    snprintf(values[lopt_n_config_fields], sizeof values[0], "%" PRIu64, o->seed);
    meta[2 * n_meta] = "seed", meta[2 * n_meta + 1] = values[lopt_n_config_fields];
    n_meta++;
    bool ok = mn_st_write(path, n_w + n_f, entries, n_meta, meta, err);
    free(entries);
    free(meta);
    free(values);
    return ok;
}

/* Parses the metadata value of field f into cfg; false (with err) if missing or malformed. */
static bool parse_field(const mn_st_file *f, const lopt_config_field *fd, mn_lopt_config *cfg, mn_err *err) {
    const char *path = mn_st_path(f), *v = mn_st_meta(f, fd->key);
    if (!v) return mn_err_set(err, "%s: config field \"%s\" is missing from the metadata", path, fd->key);
    double x;
    char *end = NULL;
    errno = 0;
    if (fd->type == LOPT_BOOL) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return mn_err_set(err, "%s: metadata \"%s\" is \"%s\", expected true or false", path, fd->key, v);
        x = !strcmp(v, "true");
    } else if (fd->type == LOPT_INT) {
        long long i = strtoll(v, &end, 10);
        if (!*v || *end || errno == ERANGE || i < INT32_MIN || i > INT32_MAX)
            return mn_err_set(err, "%s: metadata \"%s\" is \"%s\", expected an integer", path, fd->key, v);
        x = (double)i;
    } else {
        float fl = strtof(v, &end);
        if (!*v || *end || errno == ERANGE || !isfinite(fl))
            return mn_err_set(err, "%s: metadata \"%s\" is \"%s\", expected a finite number", path, fd->key, v);
        x = fl;
    }
    lopt_config_set(cfg, fd, x);
    return true;
}

static bool read_config(const mn_st_file *f, mn_lopt_config *cfg, uint64_t *seed, mn_err *err) {
    const char *path = mn_st_path(f), *format = mn_st_meta(f, "format");
    if (!format || strcmp(format, LOPT_FORMAT))
        return mn_err_set(err, "%s: not a learned-optimizer checkpoint (metadata \"format\" is %s%s%s, expected "
                          "\"%s\")", path, format ? "\"" : "", format ? format : "missing", format ? "\"" : "",
                          LOPT_FORMAT);
    const char *version = mn_st_meta(f, "version");
    if (!version || strcmp(version, LOPT_VERSION))
        return mn_err_set(err, "%s: checkpoint format version \"%s\", this build reads version %s", path,
                          version ? version : "(missing)", LOPT_VERSION);
    const char *kind_name = mn_st_meta(f, "kind");
    mn_lopt_kind kind;
    if (!mn_lopt_kind_parse(kind_name, &kind))
        return mn_err_set(err, "%s: metadata \"kind\" is \"%s\", expected lstm, mnemosyne-c or mnemosyne-t", path,
                          kind_name ? kind_name : "(missing)");
    *cfg = mn_lopt_default_config(kind);
    for (int i = 0; i < lopt_n_config_fields; i++)
        if (!parse_field(f, &lopt_config_fields[i], cfg, err)) return false;
    const char *why = lopt_config_problem(cfg);
    if (why) return mn_err_set(err, "%s: invalid %s config: %s", path, kind_name, why);
    const char *s = mn_st_meta(f, "seed");
    char *end = NULL;
    errno = 0;
    *seed = s ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *end || errno == ERANGE)
        return mn_err_set(err, "%s: metadata \"seed\" is \"%s\", expected an unsigned integer", path,
                          s ? s : "(missing)");
    return true;
}

/* Checks that the file's tensor name is F32 with like's shape, reads it and copies it into like. */
static bool load_tensor(const mn_st_file *f, const char *name, mn_tensor *like, mn_err *err) {
    const char *path = mn_st_path(f), *dtype;
    int ndim;
    int64_t shape[MN_MAX_DIMS];
    char want[96], found[96] = "[";
    mn_shape_str(like, want);
    if (!mn_st_info(f, name, &dtype, &ndim, shape))
        return mn_err_set(err, "%s: tensor %s (F32 %s) is missing", path, name, want);
    bool same = ndim == like->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == like->shape[d];
    if (!same || strcmp(dtype, "F32")) {
        for (int d = 0; d < ndim; d++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%" PRId64, d ? ", " : "", shape[d]);
        snprintf(found + strlen(found), sizeof found - strlen(found), "]");
        return mn_err_set(err, "%s: tensor %s is %s %s, expected F32 %s (for the config in the metadata)", path, name,
                          dtype, found, want);
    }
    mn_scope sc = mn_scope_begin();
    mn_tensor *t = mn_st_read(f, name, err);
    bool ok = t != NULL;
    for (int64_t i = 0; ok && i < mn_numel(t); i++)
        if (!isfinite(mn_data(t)[i]))
            ok = mn_err_set(err, "%s: tensor %s holds a non-finite value (%g at flat index %" PRId64 ")", path, name,
                            (double)mn_data(t)[i], i);
    if (ok) mnt_copy_(like, t);
    mn_scope_end(sc);
    return ok;
}

static bool known_name(const mn_lopt *o, const char *name) {
    return mn_params_find(&o->weights, name) || mn_params_find(&o->features, name);
}

/* Reads an optimizer from an open checkpoint and closes it. */
static mn_lopt *load_from(mn_st_file *f, mn_err *err) {
    if (!f) return NULL;
    const char *path = mn_st_path(f);
    mn_lopt_config cfg;
    uint64_t seed = 0;
    mn_lopt *o = NULL;
    bool ok = read_config(f, &cfg, &seed, err);
    if (ok) o = lopt_create(&cfg, seed);
    const mn_params *lists[2] = {o ? &o->weights : NULL, o ? &o->features : NULL};
    for (int l = 0; ok && l < 2; l++)
        for (int i = 0; ok && i < lists[l]->count; i++)
            ok = load_tensor(f, lists[l]->items[i].name, lists[l]->items[i].tensor, err);
    if (ok && mn_st_count(f) != o->weights.count + o->features.count) {
        for (int k = 0; ok && k < mn_st_count(f); k++)
            if (!known_name(o, mn_st_name(f, k)))
                ok = mn_err_set(err, "%s: tensor %s is not part of a %s optimizer of this config", path,
                                mn_st_name(f, k), mn_lopt_kind_name(cfg.kind));
    }
    mn_st_close(f);
    if (!ok) {
        mn_lopt_free(o);
        return NULL;
    }
    return o;
}

mn_lopt *mn_lopt_load(const char *path, mn_err *err) { return load_from(mn_st_open(path, err), err); }

mn_lopt *mn_lopt_load_memory(const void *data, size_t size, const char *name, mn_err *err) {
    return load_from(mn_st_open_memory(data, size, name, err), err);
}

/* ---- per-task state --------------------------------------------------------------------------- */

#define LOPT_STATE_FORMAT "mnemo-learned-optimizer-state"

bool mn_lopt_state_save(const mn_lopt_state *s, const char *path, mn_err *err) {
    int n = s->lay.n;
    const char **meta = calloc((size_t)(2 * (4 + lopt_n_config_fields)), sizeof *meta);
    char (*values)[40] = calloc((size_t)(1 + lopt_n_config_fields), sizeof *values);
    int32_t *steps = calloc((size_t)n, sizeof *steps), *numel = calloc((size_t)n, sizeof *numel);
    if (!meta || !values || !steps || !numel) mn_fatal("mn_lopt_state_save: out of memory");
    int n_meta = config_meta(&s->cfg, LOPT_STATE_FORMAT, meta, values);
    snprintf(values[lopt_n_config_fields], sizeof values[0], "%" PRId64, s->n_apply);
    meta[2 * n_meta] = "applied", meta[2 * n_meta + 1] = values[lopt_n_config_fields];
    n_meta++;
    for (int i = 0; i < n; i++) {
        if (s->steps[i] > INT32_MAX) mn_fatal("mn_lopt_state_save: step count of tensor %d exceeds int32", i);
        steps[i] = (int32_t)s->steps[i];
        numel[i] = (int32_t)s->lay.numel[i];
    }
    mn_st_entry entries[LOPT_MAX_SLOTS + 2];
    mn_scope sc = mn_scope_begin();
    for (int k = 0; k < s->n_slots; k++) entries[k] = (mn_st_entry){s->slot_name[k], s->slot[k]};
    entries[s->n_slots] = (mn_st_entry){"steps", mn_from_ints(MN_SHAPE(n), steps)};
    entries[s->n_slots + 1] = (mn_st_entry){"numel", mn_from_ints(MN_SHAPE(n), numel)};
    bool ok = mn_st_write(path, s->n_slots + 2, entries, n_meta, meta, err);
    mn_scope_end(sc);
    free(meta);
    free(values);
    free(steps);
    free(numel);
    return ok;
}

bool mn_lopt_state_load(mn_lopt_state *s, const char *path, mn_err *err) {
    mn_st_file *f = mn_st_open(path, err);
    if (!f) return false;
    const char *format = mn_st_meta(f, "format"), *kind = mn_st_meta(f, "kind");
    bool ok = true;
    if (!format || strcmp(format, LOPT_STATE_FORMAT))
        ok = mn_err_set(err, "%s: not a learned-optimizer state (metadata \"format\" is \"%s\", expected \"%s\")", path,
                        format ? format : "(missing)", LOPT_STATE_FORMAT);
    else if (!kind || strcmp(kind, mn_lopt_kind_name(s->cfg.kind)))
        ok = mn_err_set(err, "%s: state of a %s optimizer, but this state is for %s", path, kind ? kind : "(missing)",
                        mn_lopt_kind_name(s->cfg.kind));
    for (int i = 0; ok && i < lopt_n_config_fields; i++) {
        const lopt_config_field *fd = &lopt_config_fields[i];
        mn_lopt_config file_cfg = s->cfg;
        ok = parse_field(f, fd, &file_cfg, err);
        if (ok && lopt_config_get(&file_cfg, fd) != lopt_config_get(&s->cfg, fd))
            ok = mn_err_set(err, "%s: config field %s is %s in the file but %g in this state", path, fd->key,
                            mn_st_meta(f, fd->key), lopt_config_get(&s->cfg, fd));
    }
    const char *applied = mn_st_meta(f, "applied");
    char *end = NULL;
    long long n_apply = applied ? strtoll(applied, &end, 10) : -1;
    if (ok && (!applied || !*applied || *end || n_apply < 0))
        ok = mn_err_set(err, "%s: metadata \"applied\" is \"%s\", expected a step count", path,
                        applied ? applied : "(missing)");
    mn_scope sc = mn_scope_begin();
    mn_tensor *loaded[LOPT_MAX_SLOTS + 2] = {0};
    mn_tensor *counts = mn_empty_dtype(MN_I32, MN_SHAPE(s->lay.n));
    for (int k = 0; ok && k < s->n_slots + 2; k++) {
        const char *name = k < s->n_slots ? s->slot_name[k] : k == s->n_slots ? "steps" : "numel";
        mn_tensor *like = k < s->n_slots ? s->slot[k] : counts;
        const char *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        bool same = mn_st_info(f, name, &dtype, &ndim, shape) && ndim == like->ndim &&
                    !strcmp(dtype, like->dtype == MN_I32 ? "I32" : "F32");
        for (int d = 0; same && d < ndim; d++) same = shape[d] == like->shape[d];
        char want[96];
        if (!same)
            ok = mn_err_set(err, "%s: tensor %s is missing or not %s %s (a state for other parameter sizes?)", path,
                            name, like->dtype == MN_I32 ? "I32" : "F32", mn_shape_str(like, want));
        else ok = (loaded[k] = mn_st_read(f, name, err)) != NULL;
    }
    if (ok && mn_st_count(f) != s->n_slots + 2)
        ok = mn_err_set(err, "%s: %d tensors, expected %d", path, mn_st_count(f), s->n_slots + 2);
    for (int i = 0; ok && i < s->lay.n; i++) {
        int32_t numel = mn_idata(loaded[s->n_slots + 1])[i], steps = mn_idata(loaded[s->n_slots])[i];
        if (numel != s->lay.numel[i])
            ok = mn_err_set(err, "%s: tensor %d has %d coordinates in the file, %" PRId64 " here", path, i, (int)numel,
                            s->lay.numel[i]);
        else if (steps < 0)
            ok = mn_err_set(err, "%s: negative step count %d for tensor %d", path, (int)steps, i);
    }
    if (ok) {
        for (int k = 0; k < s->n_slots; k++) {
            mn_tensor *t = mn_retain(loaded[k]);
            mn_release(s->slot[k]);
            s->slot[k] = t;
        }
        for (int i = 0; i < s->lay.n; i++) s->steps[i] = mn_idata(loaded[s->n_slots])[i];
        s->n_apply = n_apply;
    }
    mn_scope_end(sc);
    mn_st_close(f);
    return ok;
}
