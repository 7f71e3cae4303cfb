#include "best_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void best_init(best_weights *b, const mn_params *params, trainer_save_model save, void *model, double metric) {
    *b = (best_weights){params, save, model, calloc((size_t)params->count + 1, sizeof(mn_tensor *)), metric};
}

bool best_have(const best_weights *b) { return b->params->count > 0 && b->w[0]; }

bool best_offer(best_weights *b, double metric) {
    if (!(metric > b->metric)) return false;
    b->metric = metric;
    const mn_params *p = b->params;
    mn_scope sc = mn_scope_begin(); /* the clones are retained past it */
    bool prev = mn_no_grad_begin();
    for (int i = 0; i < p->count; i++) {
        if (!b->w[i]) b->w[i] = mn_retain(mn_detach(mnt_clone(p->items[i].tensor)));
        else mn_copy_(b->w[i], p->items[i].tensor);
    }
    mn_no_grad_end(prev);
    mn_scope_end(sc);
    return true;
}

void best_restore(const best_weights *b) {
    const mn_params *p = b->params;
    bool prev = mn_no_grad_begin();
    for (int i = 0; i < p->count; i++) mn_copy_(p->items[i].tensor, b->w[i]);
    mn_no_grad_end(prev);
}

bool best_save_with_model(void *ctx, const char *dir, mn_err *err) {
    best_weights *b = ctx;
    if (!b->save(b->model, dir, err)) return false;
    if (!best_have(b)) return true;
    const mn_params *p = b->params;
    mn_st_entry *e = calloc((size_t)p->count, sizeof *e);
    for (int i = 0; i < p->count; i++) e[i] = (mn_st_entry){p->items[i].name, b->w[i]};
    char path[4200];
    snprintf(path, sizeof path, "%s/best_model.safetensors", dir);
    bool ok = mn_st_write(path, p->count, e, 0, NULL, err);
    free(e);
    return ok;
}

bool best_load(best_weights *b, const char *dir, mn_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/best_model.safetensors", dir);
    if (access(path, F_OK) != 0) return true;
    mn_st_file *f = mn_st_open(path, err);
    if (!f) return false;
    const mn_params *p = b->params;
    mn_scope sc = mn_scope_begin(); /* the tensors read are retained past it */
    bool ok = true;
    for (int i = 0; i < p->count && ok; i++) {
        mn_tensor *t = mn_st_read(f, p->items[i].name, err);
        if (t && !mn_same_shape(t, p->items[i].tensor))
            ok = mn_err_set(err, "%s: tensor %s has another shape than the model's", path, p->items[i].name);
        else if (!t) ok = false;
        else b->w[i] = mn_retain(t);
    }
    mn_scope_end(sc);
    mn_st_close(f);
    return ok;
}

void best_free(best_weights *b) {
    if (!b->w) return;
    for (int i = 0; i < b->params->count; i++) mn_release(b->w[i]);
    free(b->w);
    b->w = NULL;
}

bool best_keep_option_ok(const char *prog, const char *keep, double val_fraction) {
    if (strcmp(keep, "last") && strcmp(keep, "best")) {
        fprintf(stderr, "%s: --keep %s: expected last or best\n", prog, keep);
        return false;
    }
    if (!strcmp(keep, "best") && val_fraction <= 0) {
        fprintf(stderr, "%s: --keep best needs a validation set (--val-fraction): choosing by the test set would "
                "make its accuracy an overestimate\n", prog);
        return false;
    }
    return true;
}
