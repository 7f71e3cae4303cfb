/* Recomputation (gradient checkpointing): a region of the graph kept as its inputs and outputs only.
 *
 * The forward runs the region without recording and stores its outputs packed into one tensor,
 * whose single node holds the inputs and a copy of the caller's recipe. Its backward runs the region
 * again with recording on, over fresh leaves aliasing the inputs, and takes a nested mn_grad through
 * that short-lived graph. The nested pass uses its own epoch (engine.c); the declared leaves it
 * shares with the outer pass get their outer marks saved and restored around it. */
#include "autograd/node.h"
#include "tensor/tensor_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mn_recompute_fn fn;
    void *ctx; /* the caller's recipe, copied */
    int n_in, n_leaves, n_out;
    int *ndim;                     /* [n_out] */
    int64_t (*shape)[MN_MAX_DIMS]; /* [n_out] */
    int64_t *offset, *numel;       /* [n_out]: where output k is in the packed tensor */
} recipe;

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) mn_fatal("mn_recompute: out of memory");
    return p;
}

static void recipe_free(void *p) {
    recipe *r = p;
    if (!r) return;
    free(r->ctx);
    free(r->ndim);
    free(r->shape);
    free(r->offset);
    free(r->numel);
    free(r);
}

/* ---- the closure check: the recomputed graph may only reach the aliases and the declared leaves ---- */

typedef struct {
    const mn_tensor **slot;
    size_t cap, len;
} ptr_set;

static size_t ptr_hash(const void *p, size_t cap) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1); }

/* true when p was not in the set */
static bool ptr_set_add(ptr_set *s, const mn_tensor *p) {
    if (2 * (s->len + 1) > s->cap) {
        ptr_set grown = {xcalloc(s->cap ? 2 * s->cap : 256, sizeof *grown.slot), s->cap ? 2 * s->cap : 256, 0};
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) ptr_set_add(&grown, s->slot[i]);
        free(s->slot);
        *s = grown;
    }
    for (size_t i = ptr_hash(p, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == p) return false;
        if (!s->slot[i]) {
            s->slot[i] = p;
            s->len++;
            return true;
        }
    }
}

static void check_closed(int n_out, mn_tensor *const *outs, int n_known, mn_tensor *const *known) {
    ptr_set seen = {0};
    for (int i = 0; i < n_known; i++)
        if (known[i]) ptr_set_add(&seen, known[i]);
    size_t len = 0, cap = 64;
    mn_tensor **stack = xcalloc(cap, sizeof *stack);
    for (int k = 0; k < n_out; k++)
        if (outs[k] && outs[k]->requires_grad && ptr_set_add(&seen, outs[k])) stack[len++] = outs[k];
    while (len) {
        mn_tensor *t = stack[--len];
        if (!t->node) {
            free(stack);
            free(seen.slot);
            mn_fatal("mn_recompute: the function read a tensor that requires grad but is neither one of its "
                     "inputs nor a declared leaf (pass it in one of the two lists)");
        }
        for (int i = 0; i < t->node->n_in; i++) {
            mn_tensor *c = t->node->in[i];
            if (!c || !c->requires_grad || !ptr_set_add(&seen, c)) continue;
            if (len == cap) {
                cap *= 2;
                stack = realloc(stack, cap * sizeof *stack);
                if (!stack) mn_fatal("mn_recompute: out of memory");
            }
            stack[len++] = c;
        }
    }
    free(stack);
    free(seen.slot);
}

/* ---- backward ------------------------------------------------------------------------------------ */

typedef struct {
    mn_tensor *grad;
    uint32_t epoch;
    uint8_t flags;
} outer_marks;

static void recompute_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    (void)out;
    recipe *r = n->ctx;
    if (mn_grad_enabled())
        mn_fatal("mn_recompute: the backward pass through a recomputed region cannot be recorded "
                 "(MN_CREATE_GRAPH); differentiate through it without");
    int n_all = r->n_in + r->n_leaves;
    mn_tensor **alias = xcalloc((size_t)r->n_in, sizeof *alias), **outs = xcalloc((size_t)r->n_out, sizeof *outs),
              **gouts = xcalloc((size_t)r->n_out, sizeof *gouts), **targets = xcalloc((size_t)n_all, sizeof *targets),
              **grads = xcalloc((size_t)n_all, sizeof *grads), **known = xcalloc((size_t)n_all, sizeof *known);
    int *which = xcalloc((size_t)n_all, sizeof *which), nt = 0;
    outer_marks *marks = xcalloc((size_t)r->n_leaves, sizeof *marks);
    for (int i = 0; i < r->n_in; i++) {
        if (!n->in[i]) continue;
        alias[i] = mn_detach(n->in[i]);
        if (n->need[i]) {
            mn_requires_grad(alias[i], true);
            which[nt] = i;
            targets[nt++] = alias[i];
        }
        known[i] = alias[i];
    }
    for (int j = 0; j < r->n_leaves; j++) {
        mn_tensor *leaf = n->in[r->n_in + j];
        known[r->n_in + j] = leaf;
        if (leaf && n->need[r->n_in + j]) {
            which[nt] = r->n_in + j;
            targets[nt++] = leaf;
        }
    }
    bool prev = mn_set_grad_enabled(true);
    r->fn(r->ctx, alias, outs);
    mn_set_grad_enabled(prev);
    check_closed(r->n_out, outs, n_all, known);
    for (int k = 0; k < r->n_out; k++)
        gouts[k] = mn_reshape(mn_slice(g, 0, r->offset[k], r->offset[k] + r->numel[k], 1), r->ndim[k], r->shape[k]);
    /* the nested pass touches the declared leaves: keep the outer pass's marks and gradient */
    for (int j = 0; j < r->n_leaves; j++) {
        mn_tensor *leaf = n->in[r->n_in + j];
        if (!leaf) continue;
        marks[j] = (outer_marks){mn__obj(leaf)->ag_grad, mn__obj(leaf)->ag_epoch, mn__obj(leaf)->ag_flags};
        mn__obj(leaf)->ag_grad = NULL;
    }
    mn_grad(r->n_out, outs, gouts, nt, targets, grads, 0);
    for (int j = 0; j < r->n_leaves; j++) {
        mn_tensor *leaf = n->in[r->n_in + j];
        if (!leaf) continue;
        mn_release(mn__obj(leaf)->ag_grad);
        mn__obj(leaf)->ag_grad = marks[j].grad;
        mn__obj(leaf)->ag_epoch = marks[j].epoch;
        mn__obj(leaf)->ag_flags = marks[j].flags;
    }
    for (int t = 0; t < nt; t++) gin[which[t]] = grads[t];
    free(alias);
    free(outs);
    free(gouts);
    free(targets);
    free(grads);
    free(known);
    free(which);
    free(marks);
}

/* ---- forward ------------------------------------------------------------------------------------- */

void mn_recompute(mn_recompute_fn fn, const void *ctx, size_t ctx_size, int n_in, mn_tensor *const *in,
                   int n_leaves, mn_tensor *const *leaves, int n_out, mn_tensor **out) {
    if (!fn || n_in < 0 || n_leaves < 0 || n_out < 1)
        mn_fatal("mn_recompute: need a function and at least one output (got %d inputs, %d leaves, %d outputs)",
                 n_in, n_leaves, n_out);
    bool any = false;
    for (int i = 0; i < n_in; i++) any |= in[i] && in[i]->requires_grad;
    for (int j = 0; j < n_leaves; j++) {
        if (leaves[j] && leaves[j]->node) mn_fatal("mn_recompute: declared leaf %d is the result of an op", j);
        any |= leaves[j] && leaves[j]->requires_grad;
    }
    if (!mn_grad_enabled() || !any) { /* nothing to record: just the region */
        fn(ctx, in, out);
        return;
    }
    recipe *r = xcalloc(1, sizeof *r);
    r->fn = fn;
    r->ctx = xcalloc(1, ctx_size);
    if (ctx_size) memcpy(r->ctx, ctx, ctx_size);
    r->n_in = n_in;
    r->n_leaves = n_leaves;
    r->n_out = n_out;
    r->ndim = xcalloc((size_t)n_out, sizeof *r->ndim);
    r->shape = xcalloc((size_t)n_out, sizeof *r->shape);
    r->offset = xcalloc((size_t)n_out, sizeof *r->offset);
    r->numel = xcalloc((size_t)n_out, sizeof *r->numel);

    mn_scope sc = mn_scope_begin();
    bool prev = mn_set_grad_enabled(false);
    fn(r->ctx, in, out);
    mn_set_grad_enabled(prev);
    mn_tensor **flat = xcalloc((size_t)n_out, sizeof *flat);
    int64_t at = 0;
    for (int k = 0; k < n_out; k++) {
        if (!out[k] || out[k]->dtype != MN_F32) mn_fatal("mn_recompute: output %d is %s", k, out[k] ? "not float32" : "NULL");
        r->ndim[k] = out[k]->ndim;
        memcpy(r->shape[k], out[k]->shape, sizeof(int64_t) * (size_t)out[k]->ndim);
        r->numel[k] = mn_numel(out[k]);
        r->offset[k] = at;
        at += r->numel[k];
        flat[k] = mnt_reshape(out[k], 1, &r->numel[k]);
    }
    mn_tensor *packed = mn_retain(mnt_concat(n_out, flat, 0));
    free(flat);
    mn_scope_end(sc);
    mn_autorelease(packed);

    mn_tensor **all = xcalloc((size_t)(n_in + n_leaves), sizeof *all);
    memcpy(all, in, sizeof *all * (size_t)n_in);
    if (n_leaves) memcpy(all + n_in, leaves, sizeof *all * (size_t)n_leaves);
    mn_node *node = mn_record(packed, "recompute", recompute_bw, n_in + n_leaves, all);
    free(all);
    node->ctx = r;
    node->ctx_free = recipe_free;
    for (int k = 0; k < n_out; k++)
        out[k] = mn_reshape(mn_slice(packed, 0, r->offset[k], r->offset[k] + r->numel[k], 1), r->ndim[k], r->shape[k]);
}
