/* Named parameter lists. */
#include "autograd/autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mn_params_add(mn_params *p, const char *prefix, const char *name, mn_tensor *t, bool no_decay) {
    if (!t) return;
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->items = realloc(p->items, sizeof *p->items * (size_t)p->cap);
        if (!p->items) mn_fatal("out of memory adding parameter %s", name);
    }
    size_t len = (prefix ? strlen(prefix) + 1 : 0) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) mn_fatal("out of memory adding parameter %s", name);
    if (prefix && *prefix) snprintf(full, len, "%s.%s", prefix, name);
    else snprintf(full, len, "%s", name);
    if (mn_params_find(p, full)) mn_fatal("mn_params_add: parameter %s added twice", full);
    p->items[p->count++] = (mn_param){full, mn_retain(t), no_decay, {NULL, NULL}};
}

void mn_params_add_field(mn_params *p, const char *prefix, const char *name, mn_tensor **field, bool no_decay) {
    if (!*field) return;
    mn_params_add(p, prefix, name, *field, no_decay);
    p->items[p->count - 1].fields[0] = field;
}

void mn_params_alias_field(mn_params *p, const char *name, mn_tensor **field) {
    mn_param *it = mn_params_find(p, name);
    if (!it || *field != it->tensor || it->fields[1])
        mn_fatal("mn_params_alias_field: %s is not a listed parameter held by that field (or has an alias already)",
                 name);
    it->fields[1] = field;
}

void mn_params_substitute(const mn_params *p, mn_tensor *const *values) {
    for (int i = 0; i < p->count; i++) {
        const mn_param *it = &p->items[i];
        char a[96], b[96];
        if (!it->fields[0])
            mn_fatal("mn_params_substitute: parameter %s was not listed with its field (mn_params_add_field)", it->name);
        if (!values[i] || !mn_same_shape(values[i], it->tensor))
            mn_fatal("mn_params_substitute: %s is %s, its substitute %s", it->name, mn_shape_str(it->tensor, a),
                     values[i] ? mn_shape_str(values[i], b) : "missing");
        for (int k = 0; k < 2; k++)
            if (it->fields[k]) *it->fields[k] = values[i];
    }
}

void mn_params_restore(const mn_params *p) {
    for (int i = 0; i < p->count; i++)
        for (int k = 0; k < 2; k++)
            if (p->items[i].fields[k]) *p->items[i].fields[k] = p->items[i].tensor;
}

mn_param *mn_params_find(const mn_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (!strcmp(p->items[i].name, name)) return &p->items[i];
    return NULL;
}

int64_t mn_params_numel(const mn_params *p) {
    int64_t n = 0;
    for (int i = 0; i < p->count; i++) n += mn_numel(p->items[i].tensor);
    return n;
}

void mn_params_zero_grad(const mn_params *p) {
    for (int i = 0; i < p->count; i++) mn_zero_grad(p->items[i].tensor);
}

void mn_params_free(mn_params *p) {
    for (int i = 0; i < p->count; i++) {
        free(p->items[i].name);
        mn_release(p->items[i].tensor);
    }
    free(p->items);
    *p = (mn_params){0};
}
