/* Checkpoints: named parameters to and from safetensors, with the name mapping
 * transformers' from_pretrained applies (base-model prefix added or stripped,
 * legacy LayerNorm.gamma/beta renamed, tied aliases), shape checks, and a
 * report of missing, unexpected and re-initialised names. Also the Hugging
 * Face directory layout: model.safetensors or sharded model-0000x-of-0000y
 * files listed in model.safetensors.index.json. */
#include "models/models_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- paths ------------------------------------------------------------------------------------------ */

bool mn__path_join(char *buf, size_t n, const char *dir, const char *name) {
    size_t len = strlen(dir);
    bool slash = len > 0 && dir[len - 1] == '/';
    int w = snprintf(buf, n, "%s%s%s", dir, slash ? "" : "/", name);
    return w >= 0 && (size_t)w < n;
}

bool mn__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- report ------------------------------------------------------------------------------------------ */

static void list_add(char ***list, int *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void list_add(char ***list, int *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) mn_fatal("out of memory in a load report");
    va_end(ap);
    char **grown = realloc(*list, sizeof **list * (size_t)(*n + 1));
    if (!grown) mn_fatal("out of memory in a load report");
    *list = grown;
    (*list)[(*n)++] = s;
}

static void list_free(char ***list, int *n) {
    for (int i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

void mn_load_report_free(mn_load_report *r) {
    if (!r) return;
    list_free(&r->missing, &r->n_missing);
    list_free(&r->unexpected, &r->n_unexpected);
    list_free(&r->mismatched, &r->n_mismatched);
    list_free(&r->notes, &r->n_notes);
    free(r->arch);
    free(r->path);
    *r = (mn_load_report){0};
}

/* Appends formatted text to a growing string. */
typedef struct {
    char *s;
    size_t len;
} text_buf;

static void text_add(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text_buf *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *piece = NULL;
    int n = vasprintf(&piece, fmt, ap);
    va_end(ap);
    if (n < 0) mn_fatal("out of memory formatting a load report");
    char *grown = realloc(t->s, t->len + (size_t)n + 1);
    if (!grown) mn_fatal("out of memory formatting a load report");
    memcpy(grown + t->len, piece, (size_t)n + 1);
    t->s = grown;
    t->len += (size_t)n;
    free(piece);
}

static void text_list(text_buf *t, char **names, int n) {
    text_add(t, "[");
    for (int i = 0; i < n; i++) text_add(t, "%s'%s'", i ? ", " : "", names[i]);
    text_add(t, "]\n");
}

char *mn_load_report_summary(const mn_load_report *r) {
    text_buf t = {calloc(1, 1), 0};
    if (!t.s) mn_fatal("out of memory formatting a load report");
    const char *arch = r->arch ? r->arch : "the model", *path = r->path ? r->path : "?";
    if (r->n_unexpected) {
        text_add(&t, "Some weights of the model checkpoint at %s were not used when initializing %s: ", path, arch);
        text_list(&t, r->unexpected, r->n_unexpected);
        text_add(&t, "- This IS expected if you are initializing %s from the checkpoint of a model trained on another "
                     "task or with another architecture.\n", arch);
    }
    if (r->n_missing) {
        text_add(&t, "Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                     "initialized: ", arch, path);
        text_list(&t, r->missing, r->n_missing);
    }
    if (r->n_mismatched) {
        text_add(&t, "Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                     "initialized because the shapes did not match:\n", arch, path);
        for (int i = 0; i < r->n_mismatched; i++) text_add(&t, "- %s\n", r->mismatched[i]);
    }
    if (r->n_missing || r->n_mismatched)
        text_add(&t, "You should probably TRAIN this model on a down-stream task to be able to use it for predictions "
                     "and inference.\n");
    for (int i = 0; i < r->n_notes; i++) text_add(&t, "Note: %s\n", r->notes[i]);
    return t.s;
}

/* ---- opening a checkpoint ----------------------------------------------------------------------------- */

typedef struct {
    mn_st_file **files;
    int n_files;
    char where[4096]; /* what the report calls the checkpoint */
} checkpoint;

static void checkpoint_close(checkpoint *c) {
    for (int i = 0; i < c->n_files; i++) mn_st_close(c->files[i]);
    free(c->files);
    c->files = NULL;
    c->n_files = 0;
}

static bool checkpoint_add(checkpoint *c, const char *path, mn_err *err) {
    mn_st_file *f = mn_st_open(path, err);
    if (!f) return false;
    mn_st_file **grown = realloc(c->files, sizeof *grown * (size_t)(c->n_files + 1));
    if (!grown) mn_fatal("out of memory opening %s", path);
    c->files = grown;
    c->files[c->n_files++] = f;
    return true;
}

/* Shards named by index.json's weight_map, each opened once; every listed tensor must be in its shard. */
static bool open_sharded(checkpoint *c, const char *dir, const char *index_path, mn_err *err) {
    json_t *root = mn__json_read_object(index_path, err);
    if (!root) return false;
    json_t *map = json_object_get(root, "weight_map");
    bool ok = true;
    if (!json_is_object(map)) ok = mn_err_set(err, "%s: key \"weight_map\": expected an object", index_path);
    const char *name;
    json_t *v;
    if (ok) json_object_foreach(map, name, v) {
        if (!json_is_string(v)) {
            ok = mn_err_set(err, "%s: key \"weight_map\": entry \"%s\": expected a file name", index_path, name);
            break;
        }
        char shard[4096];
        if (!mn__path_join(shard, sizeof shard, dir, json_string_value(v))) {
            ok = mn_err_set(err, "%s: shard path too long", index_path);
            break;
        }
        int found = -1;
        for (int i = 0; i < c->n_files && found < 0; i++)
            if (!strcmp(mn_st_path(c->files[i]), shard)) found = i;
        if (found < 0) {
            if (!(ok = checkpoint_add(c, shard, err))) break;
            found = c->n_files - 1;
        }
        if (!mn_st_info(c->files[found], name, NULL, NULL, NULL)) {
            ok = mn_err_set(err, "%s: tensor \"%s\" is listed in %s but that file does not hold it", index_path, name,
                            shard);
            break;
        }
    }
    json_decref(root);
    return ok;
}

static bool checkpoint_open(checkpoint *c, const char *path, mn_err *err) {
    *c = (checkpoint){0};
    snprintf(c->where, sizeof c->where, "%s", path);
    if (!mn__is_dir(path)) {
        if (!is_file(path)) return mn_err_set(err, "%s: no such file or directory", path);
        return checkpoint_add(c, path, err);
    }
    char single[4096], index[4096], bin[4096];
    if (!mn__path_join(single, sizeof single, path, "model.safetensors") ||
        !mn__path_join(index, sizeof index, path, "model.safetensors.index.json") ||
        !mn__path_join(bin, sizeof bin, path, "pytorch_model.bin"))
        return mn_err_set(err, "%s: path too long", path);
    if (is_file(single)) return checkpoint_add(c, single, err);
    if (is_file(index)) {
        if (open_sharded(c, path, index, err)) return true;
        checkpoint_close(c);
        return false;
    }
    if (is_file(bin))
        return mn_err_set(err, "%s: holds only pytorch_model.bin; mnemo reads safetensors (convert it, e.g. with "
                               "transformers' save_pretrained(safe_serialization=True))", path);
    return mn_err_set(err, "%s: no model.safetensors or model.safetensors.index.json in this directory", path);
}

bool mn__config_fits_checkpoint(const char *path, double need, double allowance, mn_err *err) {
    checkpoint c;
    if (!checkpoint_open(&c, path, err)) return false;
    double held = 0;
    for (int i = 0; i < c.n_files; i++)
        for (int k = 0; k < mn_st_count(c.files[i]); k++) {
            int ndim;
            int64_t shape[MN_MAX_DIMS];
            if (!mn_st_info(c.files[i], mn_st_name(c.files[i], k), NULL, &ndim, shape)) continue;
            double n = 1;
            for (int d = 0; d < ndim; d++) n *= (double)shape[d];
            held += n;
        }
    checkpoint_close(&c);
    if (need <= held + allowance) return true;
    return mn_err_set(err, "%s: config.json describes a model whose weight matrices alone hold %.0f numbers, but the "
                           "checkpoint holds %.0f in all: the config does not belong to this checkpoint", path, need,
                      held);
}

/* ---- loading ------------------------------------------------------------------------------------------- */

/* One tensor of the checkpoint, under its own name and under the model's naming. */
typedef struct {
    const char *name; /* in the file */
    char *mapped;     /* after renaming and prefix handling */
    mn_st_file *file;
    bool used;
} ck_entry;

/* transformers' _fix_state_dict_key_on_load: TF-era LayerNorm.gamma / .beta */
static char *legacy_rename(const char *name, bool *renamed) {
    static const char *const from[2] = {"LayerNorm.gamma", "LayerNorm.beta"}, *const to[2] = {"LayerNorm.weight",
                                                                                              "LayerNorm.bias"};
    size_t len = strlen(name);
    for (int i = 0; i < 2; i++) {
        size_t fl = strlen(from[i]);
        if (len >= fl && !strcmp(name + len - fl, from[i]) && (len == fl || name[len - fl - 1] == '.')) {
            char *out = malloc(len - fl + strlen(to[i]) + 1);
            if (!out) mn_fatal("out of memory renaming %s", name);
            memcpy(out, name, len - fl);
            strcpy(out + len - fl, to[i]);
            *renamed = true;
            return out;
        }
    }
    char *out = strdup(name);
    if (!out) mn_fatal("out of memory renaming %s", name);
    return out;
}

static bool starts_with_prefix(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return !strncmp(name, prefix, n) && name[n] == '.';
}

/* Adds or strips the base-model prefix as transformers does: a task model loading a bare
 * backbone checkpoint prefixes the names the model knows under the prefix; a bare model
 * loading a task checkpoint drops the prefix (the head's names then go unused). */
static void map_prefix(ck_entry *e, int n, const mn_params *params, const mn_load_spec *spec, mn_load_report *rep) {
    const char *P = spec->base_prefix;
    if (!P || !*P) return;
    bool file_prefixed = false;
    for (int i = 0; i < n && !file_prefixed; i++) file_prefixed = starts_with_prefix(e[i].mapped, P);
    int changed = 0;
    if (spec->prefixed && !file_prefixed) {
        for (int i = 0; i < n; i++) {
            char *with = NULL;
            if (asprintf(&with, "%s.%s", P, e[i].mapped) < 0) mn_fatal("out of memory mapping names");
            if (mn_params_find(params, with)) {
                free(e[i].mapped);
                e[i].mapped = with;
                changed++;
            } else {
                free(with);
            }
        }
        if (changed && rep)
            list_add(&rep->notes, &rep->n_notes, "added the prefix '%s.' to %d checkpoint names (a base-model "
                     "checkpoint loaded into %s)", P, changed, spec->arch);
    } else if (!spec->prefixed && file_prefixed) {
        size_t skip = strlen(P) + 1;
        for (int i = 0; i < n; i++) {
            if (!starts_with_prefix(e[i].mapped, P)) continue;
            memmove(e[i].mapped, e[i].mapped + skip, strlen(e[i].mapped + skip) + 1);
            changed++;
        }
        if (rep)
            list_add(&rep->notes, &rep->n_notes, "stripped the prefix '%s.' from %d checkpoint names (a task-model "
                     "checkpoint loaded into %s)", P, changed, spec->arch);
    }
}

static ck_entry *find_entry(ck_entry *e, int n, const char *mapped) {
    for (int i = 0; i < n; i++)
        if (!e[i].used && !strcmp(e[i].mapped, mapped)) return &e[i];
    return NULL;
}

static bool is_head(const mn_load_spec *spec, const char *name) {
    for (const char *const *h = spec->heads; h && *h; h++)
        if (!strcmp(*h, name)) return true;
    return false;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* Checks the file tensor e against parameter p: true if it can be loaded; *skip for a head to re-initialise. */
static bool check_entry(const ck_entry *e, const mn_param *p, const mn_load_spec *spec, mn_load_report *rep, bool *skip,
                        mn_err *err) {
    const char *dtype;
    int ndim;
    int64_t shape[MN_MAX_DIMS];
    *skip = false;
    if (!mn_st_info(e->file, e->name, &dtype, &ndim, shape))
        return mn_err_set(err, "%s: tensor \"%s\": not found", mn_st_path(e->file), e->name);
    if (strcmp(dtype, "F32") && strcmp(dtype, "F16") && strcmp(dtype, "BF16") && strcmp(dtype, "F64"))
        return mn_err_set(err, "%s: tensor \"%s\" (parameter %s): dtype %s, expected F32, F16, BF16 or F64",
                          mn_st_path(e->file), e->name, p->name, dtype);
    bool same = ndim == p->tensor->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == p->tensor->shape[d];
    if (same) return true;
    char found[256], expected[256];
    shape_text(ndim, shape, found, sizeof found);
    shape_text(p->tensor->ndim, p->tensor->shape, expected, sizeof expected);
    if (!is_head(spec, p->name))
        return mn_err_set(err, "%s: tensor \"%s\": expected shape %s (parameter %s), found %s", mn_st_path(e->file),
                          e->name, expected, p->name, found);
    *skip = true;
    if (rep)
        list_add(&rep->mismatched, &rep->n_mismatched, "%s: found shape %s in the checkpoint and %s in the model",
                 p->name, found, expected);
    return true;
}

/* A NaN or infinity in a checkpoint means a damaged file or a diverged run: predictions would be NaN.
 * Refused, or with allow a note in the report (the caller prints it as a warning). */
static bool check_finite(mn_tensor *t, const ck_entry *e, bool allow, mn_load_report *rep, mn_err *err) {
    if (t->dtype != MN_F32) return true;
    const float *x = mn_data(t);
    int64_t n = mn_numel(t), bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]) && bad++ == 0) first = i;
    if (bad == 0) return true;
    if (!allow)
        return mn_err_set(err, "%s: tensor \"%s\" holds %g at element %lld (%lld of %lld values are not finite): the "
                               "checkpoint is damaged or comes from a run that diverged (--allow-nonfinite loads it "
                               "anyway)", mn_st_path(e->file), e->name, (double)x[first], (long long)first,
                          (long long)bad, (long long)n);
    list_add(&rep->notes, &rep->n_notes, "tensor %s holds %lld values that are not finite (NaN or infinity), loaded as "
             "asked", e->name, (long long)bad);
    return true;
}

bool mn_params_load(const mn_params *params, const char *path, const mn_load_spec *spec, mn_load_report *report,
                    mn_err *err) {
    static const mn_load_spec plain = {"the model", NULL, false, NULL, NULL};
    if (!spec) spec = &plain;
    mn_load_report scratch = {0}, *rep = report ? report : &scratch;
    *rep = (mn_load_report){0};
    checkpoint ck;
    if (!checkpoint_open(&ck, path, err)) return false;
    rep->arch = strdup(spec->arch ? spec->arch : "the model");
    rep->path = strdup(path);

    int n = 0;
    for (int f = 0; f < ck.n_files; f++) n += mn_st_count(ck.files[f]);
    ck_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) mn_fatal("out of memory loading %s", path);
    int renamed = 0, k = 0;
    for (int f = 0; f < ck.n_files; f++)
        for (int i = 0; i < mn_st_count(ck.files[f]); i++, k++) {
            bool r = false;
            e[k] = (ck_entry){mn_st_name(ck.files[f], i), NULL, ck.files[f], false};
            e[k].mapped = legacy_rename(e[k].name, &r);
            renamed += r;
        }
    if (renamed)
        list_add(&rep->notes, &rep->n_notes, "renamed %d legacy LayerNorm.gamma/beta names to weight/bias", renamed);
    map_prefix(e, n, params, spec, rep);

    /* match parameters to entries: by name, then through aliases */
    ck_entry **match = calloc((size_t)params->count + 1, sizeof *match);
    if (!match) mn_fatal("out of memory loading %s", path);
    for (int i = 0; i < params->count; i++)
        if ((match[i] = find_entry(e, n, params->items[i].name))) match[i]->used = true;
    for (const char *const(*a)[2] = spec->aliases; a && (*a)[0]; a++) {
        ck_entry *alias = find_entry(e, n, (*a)[0]);
        int pi = -1;
        for (int i = 0; i < params->count && pi < 0; i++)
            if (!strcmp(params->items[i].name, (*a)[1])) pi = i;
        if (!alias) {
            list_add(&rep->notes, &rep->n_notes, "%s is not in the checkpoint: tied to %s", (*a)[0], (*a)[1]);
            continue;
        }
        alias->used = true; /* a tied copy is never "unexpected" */
        if (pi >= 0 && !match[pi]) {
            match[pi] = alias;
            list_add(&rep->notes, &rep->n_notes, "loaded %s from its alias %s", (*a)[1], alias->name);
        }
    }

    bool ok = true;
    mn_scope sc = mn_scope_begin();
    mn_tensor **loaded = calloc((size_t)params->count + 1, sizeof *loaded);
    if (!loaded) mn_fatal("out of memory loading %s", path);
    for (int i = 0; i < params->count && ok; i++) {
        const mn_param *p = &params->items[i];
        if (!match[i]) {
            list_add(&rep->missing, &rep->n_missing, "%s", p->name);
            continue;
        }
        bool skip;
        ok = check_entry(match[i], p, spec, rep, &skip, err);
        if (ok && !skip) {
            loaded[i] = mn_st_read(match[i]->file, match[i]->name, err);
            ok = loaded[i] != NULL && check_finite(loaded[i], match[i], spec->allow_nonfinite, rep, err);
        }
    }
    if (ok) {
        /* everything read and checked: now overwrite the parameters (raw copies record nothing) */
        for (int i = 0; i < params->count; i++)
            if (loaded[i]) mnt_copy_(params->items[i].tensor, loaded[i]);
        for (int i = 0; i < n; i++)
            if (!e[i].used) list_add(&rep->unexpected, &rep->n_unexpected, "%s", e[i].name);
    }
    mn_scope_end(sc);
    free(loaded);
    free(match);
    for (int i = 0; i < n; i++) free(e[i].mapped);
    free(e);
    checkpoint_close(&ck);
    if (!ok || !report) mn_load_report_free(rep);
    return ok;
}

/* ---- saving ------------------------------------------------------------------------------------------- */

bool mn_params_save(const mn_params *params, const char *path, mn_err *err) {
    mn_st_entry *entries = calloc((size_t)params->count + 1, sizeof *entries);
    if (!entries) mn_fatal("out of memory saving %s", path);
    for (int i = 0; i < params->count; i++) entries[i] = (mn_st_entry){params->items[i].name, params->items[i].tensor};
    static const char *const meta[] = {"format", "pt"};
    bool ok = mn_st_write(path, params->count, entries, 1, meta, err);
    free(entries);
    return ok;
}

bool mn__save_model_dir(const mn_params *params, const char *dir,
                        bool (*write_config)(const void *cfg, const char *path, mn_err *err), const void *cfg,
                        mn_err *err) {
    char weights[4096], config[4096];
    if (!mn__path_join(weights, sizeof weights, dir, "model.safetensors") ||
        !mn__path_join(config, sizeof config, dir, "config.json"))
        return mn_err_set(err, "%s: path too long", dir);
    return mn_make_dirs(dir, err) && mn_params_save(params, weights, err) && write_config(cfg, config, err);
}
