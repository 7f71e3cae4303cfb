/* Optimizers from command-line specs such as "adamw:3e-4:0.05". Each kind is
 * one row of the table below: its name, its fields and how to build it. */
#include "optim/optimizer_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 4

typedef struct {
    const char *label; /* in messages: "learning rate" */
    double lo, hi;     /* accepted range */
    bool lo_open, hi_open; /* lo / hi themselves excluded */
    double fallback;   /* when the field is left out (only fields after min_fields) */
} spec_field;

typedef struct {
    const char *name, *usage, *example;
    int min_fields, max_fields;
    spec_field fields[MAX_FIELDS];
    mn_optimizer *(*make)(const mn_params *params, const double *v);
    /* learned optimizers: the one optional field is a checkpoint path (may contain ':') */
    mn_optimizer *(*make_learned)(const char *name, const char *ckpt, const mn_params *params, mn_err *err);
} spec_kind;

static mn_optimizer *make_sgd(const mn_params *p, const double *v) {
    return mn_sgd_new(p, (float)v[0], (float)v[1], false, 0.0f);
}
static mn_optimizer *make_adam(const mn_params *p, const double *v) {
    return mn_adam_new(p, (float)v[0], 0.9f, 0.999f, 1e-8f, 0.0f);
}
static mn_optimizer *make_adamw(const mn_params *p, const double *v) {
    return mn_adamw_new(p, (float)v[0], 0.9f, 0.999f, 1e-8f, (float)v[1]);
}

/* lr: the learning rate when the spec gives none */
#define LR_FIELD(lr) {"learning rate", 0, 1e6, true, false, lr}
static const spec_kind kinds[] = {
    {"sgd", "sgd[:LR[:MOMENTUM]]", "sgd:0.1:0.9", 0, 2, {LR_FIELD(0.01), {"momentum", 0, 1, false, true, 0.9}},
     make_sgd},
    {"adam", "adam[:LR]", "adam:1e-3", 0, 1, {LR_FIELD(1e-3)}, make_adam},
    {"adamw", "adamw[:LR[:WD]]", "adamw:1e-3:0.01", 0, 2,
     {LR_FIELD(1e-3), {"weight decay", 0, 1e6, false, false, 0.01}}, make_adamw},
    {"lstm", "lstm[:CKPT]", "lstm:lstm.safetensors", 0, 1, {{0}}, NULL, mn__lopt_from_spec},
    {"mnemosyne-c", "mnemosyne-c[:CKPT]", "mnemosyne-c:mnemosyne_c.safetensors", 0, 1, {{0}}, NULL, mn__lopt_from_spec},
    {"mnemosyne-t", "mnemosyne-t[:CKPT]", "mnemosyne-t:mnemosyne_t.safetensors", 0, 1, {{0}}, NULL, mn__lopt_from_spec},
    {"mnemosyne", "mnemosyne[:CKPT]", "mnemosyne:mnemosyne_t.safetensors", 0, 1, {{0}}, NULL, mn__lopt_from_spec},
};
#define N_KINDS (int)(sizeof kinds / sizeof kinds[0])

static bool known_names(char *buf, size_t size) {
    buf[0] = 0;
    for (int k = 0; k < N_KINDS; k++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", k ? ", " : "", kinds[k].usage);
    return true;
}

mn_optimizer *mn_optim_from_spec(const char *spec, const mn_params *params, mn_err *err) {
    char known[512];
    known_names(known, sizeof known);
    if (!spec || !*spec) {
        mn_err_set(err, "empty optimizer spec (expected one of %s)", known);
        return NULL;
    }
    char buf[4096]; /* a learned optimizer's field is a checkpoint path */
    if (strlen(spec) >= sizeof buf) {
        mn_err_set(err, "optimizer spec \"%.40s...\" is too long", spec);
        return NULL;
    }
    strcpy(buf, spec);
    char *fields[MAX_FIELDS + 1];
    int n = 0;
    for (char *s = buf; s; n++) {
        if (n <= MAX_FIELDS) fields[n] = s;
        if ((s = strchr(s, ':'))) *s++ = 0;
    }
    const spec_kind *kind = NULL;
    for (int k = 0; k < N_KINDS && !kind; k++)
        if (strcmp(fields[0], kinds[k].name) == 0) kind = &kinds[k];
    if (!kind) {
        mn_err_set(err, "optimizer spec \"%s\": unknown optimizer \"%s\" (expected one of %s)", spec, fields[0], known);
        return NULL;
    }
    if (kind->make_learned) {
        if (!params || params->count == 0) {
            mn_err_set(err, "optimizer spec \"%s\": no parameters to optimize", spec);
            return NULL;
        }
        const char *colon = strchr(spec, ':');
        return kind->make_learned(kind->name, colon ? colon + 1 : NULL, params, err);
    }
    int n_values = n - 1;
    if (n_values < kind->min_fields || n_values > kind->max_fields) {
        mn_err_set(err, "optimizer spec \"%s\": %d value%s after \"%s\", expected %s (e.g. %s)", spec, n_values,
                   n_values == 1 ? "" : "s", kind->name, kind->usage, kind->example);
        return NULL;
    }
    double v[MAX_FIELDS];
    for (int i = 0; i < kind->max_fields; i++) {
        const spec_field *fd = &kind->fields[i];
        if (i >= n_values) {
            v[i] = fd->fallback;
            continue;
        }
        char *end;
        errno = 0;
        v[i] = strtod(fields[i + 1], &end);
        if (!*fields[i + 1] || *end || errno == ERANGE || !isfinite(v[i])) {
            mn_err_set(err, "optimizer spec \"%s\": %s \"%s\" is not a number (expected %s, e.g. %s)", spec,
                       fd->label, fields[i + 1], kind->usage, kind->example);
            return NULL;
        }
        if (v[i] < fd->lo || v[i] > fd->hi || (fd->lo_open && v[i] == fd->lo) || (fd->hi_open && v[i] == fd->hi)) {
            mn_err_set(err, "optimizer spec \"%s\": %s %s is out of range (expected %g %s %s %s %g)", spec, fd->label,
                       fields[i + 1], fd->lo, fd->lo_open ? "<" : "<=", fd->label, fd->hi_open ? "<" : "<=", fd->hi);
            return NULL;
        }
    }
    if (!params || params->count == 0) {
        mn_err_set(err, "optimizer spec \"%s\": no parameters to optimize", spec);
        return NULL;
    }
    return kind->make(params, v);
}
