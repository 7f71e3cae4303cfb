/* A learned optimizer behind the ordinary mn_optimizer interface (optim/optim.h): the fast path
 * for training with it. Each step computes the same rule as mn_lopt_apply with grad mode off and
 * updates the parameters in place. The optimizer's lr is the lr_scale multiplier.
 *
 * The learned state lives in an mn_lopt_state (tensors over all coordinates); the generic slots
 * of the optimizer (o->state) are views of each parameter's part of it, refreshed after every
 * step, so the generic state bytes, save and load ("state.<param>.<slot>") work unchanged. */
#include "lopt/learned_internal.h"

#include <stdlib.h>
#include <string.h>

/* decoupled weight decay acts as AdamW's at this learning rate (times lr_scale) */
#define LOPT_DECAY_LR 1e-3f

typedef struct {
    mn_optimizer base;
    const mn_lopt *lopt;
    mn_lopt *owned; /* made from a spec: freed with the optimizer */
    mn_lopt_state *state;
} lopt_optimizer;

/* Points o->state at each parameter's part of the learned state tensors (views own a reference). */
static void refresh_views(lopt_optimizer *a) {
    mn_optimizer *o = &a->base;
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < o->params.count; i++) {
        for (int k = 0; k < o->n_slots; k++) {
            int axis;
            int64_t start, stop;
            lopt_slot_range(a->state, k, i, &axis, &start, &stop);
            mn_tensor **view = &o->state[i * o->n_slots + k];
            mn_release(*view);
            *view = mn_retain(mnt_slice(a->state->slot[k], axis, start, stop, 1));
        }
    }
    mn_scope_end(sc);
}

static void lopt_optimizer_step(mn_optimizer *o) {
    lopt_optimizer *a = (lopt_optimizer *)o;
    mn_lopt_state *s = a->state;
    int n = o->params.count;
    bool prev = mn_no_grad_begin();
    mn_scope sc = mn_scope_begin();
    mn_tensor **grads = calloc((size_t)n, sizeof *grads);
    if (!grads) mn_fatal("mn_optim_step (%s): out of memory", o->vt->name);
    bool all = true;
    for (int i = 0; i < n; i++) {
        mn_tensor *g = mn_optim_contiguous_grad(o, i);
        all &= g != NULL;
        /* a parameter without a gradient is computed with zeros; its update and state are discarded */
        grads[i] = mn_reshape(g ? g : mn_zeros_like(o->params.items[i].tensor), MN_SHAPE(-1));
        s->steps[i] = o->param_steps[i];
    }
    s->n_apply++;
    mn_tensor *new_slot[LOPT_MAX_SLOTS], *delta;
    bool fast = lopt_fast_usable(a->lopt, s, n, grads); /* the fused path (learned_fast.c) unless disabled */
    if (fast) {
        bool *active = calloc((size_t)n, sizeof *active);
        if (!active) mn_fatal("mn_optim_step (%s): out of memory", o->vt->name);
        for (int i = 0; i < n; i++) active[i] = o->params.items[i].tensor->grad != NULL;
        delta = lopt_fast_step(a->lopt, s, n, grads, active);
        free(active);
    } else {
        delta = lopt_step(a->lopt, s, n == 1 ? grads[0] : mn_concat(n, grads, 0), new_slot);
    }
    for (int k = 0; k < s->n_slots && !all && !fast; k++) {
        for (int i = 0; i < n; i++) {
            if (o->params.items[i].tensor->grad) continue;
            int axis;
            int64_t start, stop;
            lopt_slot_range(s, k, i, &axis, &start, &stop);
            mnt_copy_(mnt_slice(new_slot[k], axis, start, stop, 1), mnt_slice(s->slot[k], axis, start, stop, 1));
        }
    }
    for (int k = 0; k < s->n_slots && !fast; k++) {
        mn_release(s->slot[k]);
        s->slot[k] = mn_retain(new_slot[k]);
    }
    for (int i = 0; i < n; i++) {
        if (!o->params.items[i].tensor->grad) continue;
        mn_tensor *p = o->params.items[i].tensor;
        float lr = mn_optim_param_lr(o, i), wd = o->weight_decay[i];
        if (wd != 0) mnt_scale_(p, 1.0f - LOPT_DECAY_LR * lr * wd);
        int64_t off = s->lay.offset[i];
        mnt_axpy_(mnt_reshape(p, MN_SHAPE(-1)), lr, mnt_slice(delta, 0, off, off + s->lay.numel[i], 1));
    }
    free(grads);
    mn_scope_end(sc);
    mn_no_grad_end(prev);
    refresh_views(a);
}

static int lopt_optimizer_hyper(const mn_optimizer *o, mn_optim_hyper *out, int max) {
    const lopt_optimizer *a = (const lopt_optimizer *)o;
    int n = 0;
    for (int i = 0; i < lopt_n_config_fields && n < max; i++)
        out[n++] = (mn_optim_hyper){lopt_config_fields[i].key, lopt_config_get(&a->lopt->cfg, &lopt_config_fields[i])};
    return n;
}

static void lopt_optimizer_free(mn_optimizer *o) {
    lopt_optimizer *a = (lopt_optimizer *)o;
    mn_lopt_state_free(a->state);
    mn_lopt_free(a->owned);
}

#define LOPT_VTABLE(NAME) \
    {.name = NAME, .step = lopt_optimizer_step, .hyper = lopt_optimizer_hyper, .free = lopt_optimizer_free}
static const mn_optim_vtable lopt_vtables[3] = {LOPT_VTABLE("lstm"), LOPT_VTABLE("mnemosyne-c"),
                                                LOPT_VTABLE("mnemosyne-t")};

mn_optimizer *mn_lopt_optimizer(const mn_lopt *o, const mn_params *params, float lr_scale) {
    if (!o || !params || params->count == 0) mn_fatal("mn_lopt_optimizer: needs an optimizer and parameters");
    int n = params->count;
    mn_tensor **ts = calloc((size_t)n, sizeof *ts);
    if (!ts) mn_fatal("mn_lopt_optimizer: out of memory");
    for (int i = 0; i < n; i++) ts[i] = params->items[i].tensor;
    mn_lopt_state *s = mn_lopt_state_new(o, n, ts);
    free(ts);
    lopt_optimizer *a = (lopt_optimizer *)mn_optim_new(sizeof(lopt_optimizer), &lopt_vtables[o->cfg.kind], params,
                                                        lr_scale, 0.0f, s->n_slots, s->slot_name, "mn_lopt_optimizer");
    a->lopt = o;
    a->state = s;
    refresh_views(a); /* replaces the parameter-shaped zeros mn_optim_new made */
    return &a->base;
}

/* "NAME[:CKPT]" for the learned kinds (optim/spec.c). "mnemosyne:CKPT" takes the variant from
 * the checkpoint. Without CKPT: the pretrained weights built into the library ("mnemosyne" alone
 * means Mnemosyne-T). */
mn_optimizer *mn__lopt_from_spec(const char *name, const char *ckpt, const mn_params *params, mn_err *err) {
    mn_lopt_kind kind = MN_LOPT_MNEMOSYNE_T;
    bool any_mnemosyne = !strcmp(name, "mnemosyne");
    if (!any_mnemosyne && !mn_lopt_kind_parse(name, &kind)) {
        mn_err_set(err, "optimizer spec: unknown learned optimizer \"%s\"", name);
        return NULL;
    }
    mn_lopt *o;
    if (ckpt) {
        if (!*ckpt) {
            mn_err_set(err, "optimizer spec \"%s:\": empty checkpoint path (write %s or %s:PATH)", name, name, name);
            return NULL;
        }
        if (!(o = mn_lopt_load(ckpt, err))) return NULL;
        bool fits = any_mnemosyne ? o->cfg.kind != MN_LOPT_LSTM : o->cfg.kind == kind;
        if (!fits) {
            mn_err_set(err, "optimizer spec \"%s:%s\": the checkpoint holds a %s optimizer, not %s", name, ckpt,
                       mn_lopt_kind_name(o->cfg.kind), any_mnemosyne ? "a Mnemosyne variant" : name);
            mn_lopt_free(o);
            return NULL;
        }
    } else if (!(o = mn_lopt_pretrained(kind, err))) {
        return NULL;
    }
    lopt_optimizer *a = (lopt_optimizer *)mn_lopt_optimizer(o, params, 1.0f);
    a->owned = o;
    return &a->base;
}
