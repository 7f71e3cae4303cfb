/* Reverse-mode engine: grad mode, recording, topological backward. */
#include "autograd/node.h"
#include "tensor/tensor_internal.h"

#include <stdlib.h>
#include <string.h>

static MN_THREAD_LOCAL bool g_grad_enabled = true; /* per thread, as scopes are */

bool mn_grad_enabled(void) { return g_grad_enabled; }

bool mn_set_grad_enabled(bool enabled) {
    bool prev = g_grad_enabled;
    g_grad_enabled = enabled;
    return prev;
}

bool mn_no_grad_begin(void) { return mn_set_grad_enabled(false); }
void mn_no_grad_end(bool prev) { g_grad_enabled = prev; }

/* ---- nodes ---------------------------------------------------------------- */

static void node_release_inputs(mn_node *n) {
    for (int i = 0; i < n->n_in; i++) {
        mn_release(n->in[i]);
        n->in[i] = NULL;
    }
    mn_release(n->saved);
    n->saved = NULL;
}

static void node_destroy(mn_node *n) {
    node_release_inputs(n);
    if (n->ctx_free) n->ctx_free(n->ctx);
    free(n->in);
    free(n->in_version);
    free(n->need);
    free(n);
}

mn_node *mn_record(mn_tensor *out, const char *op, mn_backward_fn backward, int n_in, mn_tensor *const *in) {
    if (!g_grad_enabled) return NULL;
    bool any = false;
    for (int i = 0; i < n_in; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    static bool registered;
    if (!registered) {
        mn__set_node_destructor((void (*)(struct mn_node *))node_destroy);
        registered = true;
    }
    mn_node *n = calloc(1, sizeof *n);
    n->in = calloc((size_t)n_in, sizeof *n->in);
    n->in_version = calloc((size_t)n_in, sizeof *n->in_version);
    n->need = calloc((size_t)n_in, sizeof *n->need);
    if (!n || !n->in || !n->in_version || !n->need) mn_fatal("out of memory recording op %s", op);
    n->op = op;
    n->backward = backward;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        n->in[i] = mn_retain(in[i]);
        n->in_version[i] = in[i] ? in[i]->storage->version : 0;
    }
    n->out_version = out->storage->version;
    out->requires_grad = true;
    out->node = n;
    return n;
}

/* ---- leaves ----------------------------------------------------------------- */

mn_tensor *mn_requires_grad(mn_tensor *t, bool on) {
    if (t->node) mn_fatal("mn_requires_grad: only leaves (tensors not computed by an op) can be marked");
    if (on && t->dtype != MN_F32) mn_fatal("mn_requires_grad: only float32 tensors can require grad");
    t->requires_grad = on;
    return t;
}

mn_tensor *mn_detach(mn_tensor *t) { return mnt_view(t, t->ndim, t->shape, t->strides, t->offset); }

void mn_zero_grad(mn_tensor *t) {
    mn_release(t->grad);
    t->grad = NULL;
}

/* ---- backward ----------------------------------------------------------------- */

enum { AG_VISITED = 1, AG_NEEDED = 2, AG_TARGET = 4 };
/* Each backward pass marks the tensors it visits with its own epoch, so a pass run inside another's
 * backward function (mn_recompute) over a disjoint graph leaves the outer pass's marks intact. */
static uint32_t g_last_epoch;

typedef struct {
    mn_tensor **v;
    size_t len, cap;
} tvec;

static void tvec_push(tvec *s, mn_tensor *t) {
    if (s->len == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) mn_fatal("out of memory in backward");
    }
    s->v[s->len++] = t;
}

static void touch(mn_tensor *t, uint32_t epoch) {
    if (mn__obj(t)->ag_epoch != epoch) {
        mn__obj(t)->ag_epoch = epoch;
        mn__obj(t)->ag_flags = 0;
        mn_release(mn__obj(t)->ag_grad);
        mn__obj(t)->ag_grad = NULL;
    }
}

static bool edge(const mn_tensor *t) { return t && t->requires_grad; }

/* Post-order over the recorded graph without recursion. With targets, a tensor
 * is needed when it is a target or leads to one; without, every tensor that
 * requires grad is. */
static const char *topo_sort(uint32_t epoch, int n_out, mn_tensor *const *outs, bool have_targets, tvec *order) {
    const char *freed_op = NULL;
    tvec stack = {0};
    tvec child_pos = {0}; /* parallel stack of next-child indices, stored as pointers */
    for (int o = 0; o < n_out; o++) {
        mn_tensor *root = outs[o];
        if (!edge(root)) continue;
        touch(root, epoch);
        if (mn__obj(root)->ag_flags & AG_VISITED) continue;
        mn__obj(root)->ag_flags |= AG_VISITED;
        tvec_push(&stack, root);
        tvec_push(&child_pos, NULL);
        while (stack.len) {
            mn_tensor *t = stack.v[stack.len - 1];
            size_t next = (size_t)child_pos.v[child_pos.len - 1];
            mn_node *n = t->node;
            if (n && n->freed) {
                freed_op = n->op;
                goto done;
            }
            if (n && next < (size_t)n->n_in) {
                child_pos.v[child_pos.len - 1] = (mn_tensor *)(next + 1);
                mn_tensor *c = n->in[next];
                if (!edge(c)) continue;
                touch(c, epoch);
                if (mn__obj(c)->ag_flags & AG_VISITED) continue;
                mn__obj(c)->ag_flags |= AG_VISITED;
                tvec_push(&stack, c);
                tvec_push(&child_pos, NULL);
                continue;
            }
            bool needed = !have_targets || (mn__obj(t)->ag_flags & AG_TARGET);
            if (n)
                for (int i = 0; i < n->n_in && !needed; i++)
                    needed = edge(n->in[i]) && mn__obj(n->in[i])->ag_epoch == epoch &&
                             (mn__obj(n->in[i])->ag_flags & AG_NEEDED);
            if (needed) mn__obj(t)->ag_flags |= AG_NEEDED;
            tvec_push(order, t);
            stack.len--;
            child_pos.len--;
        }
    }
done:
    free(stack.v);
    free(child_pos.v);
    return freed_op;
}

static void accumulate(mn_tensor *t, mn_tensor *g, bool create_graph) {
    if (!mn__obj(t)->ag_grad) {
        mn__obj(t)->ag_grad = mn_retain(g);
        return;
    }
    mn_tensor *held = mn__obj(t)->ag_grad;
    mn_tensor *sum = create_graph ? mn_add(held, g) : mnt_binary(MN_OP_ADD, held, g);
    mn_retain(sum);
    mn_release(mn__obj(t)->ag_grad);
    mn__obj(t)->ag_grad = sum;
}

static bool check_versions(const mn_node *n, const mn_tensor *out) {
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->storage->version != n->in_version[i]) return false;
    return out->storage->version == n->out_version;
}

static _Noreturn void report_version_error(const mn_node *n, const mn_tensor *out) {
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->storage->version != n->in_version[i])
            mn_fatal("backward: input %d of op '%s' was modified in place after the op was recorded", i, n->op);
    mn_fatal("backward: the result of op '%s' was modified in place after the op was recorded", n->op);
}

/* The shared core of mn_backward_ex and mn_grad. targets/grads are NULL for
 * mn_backward (accumulate into leaves' ->grad). */
static void run_backward(int n_out, mn_tensor *const *outs, mn_tensor *const *gouts, int n_in,
                         mn_tensor *const *targets, mn_tensor **grads, int flags) {
    bool create_graph = flags & MN_CREATE_GRAPH;
    bool retain = create_graph || (flags & MN_RETAIN_GRAPH);
    uint32_t epoch = __atomic_add_fetch(&g_last_epoch, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < n_in; i++) {
        touch(targets[i], epoch);
        mn__obj(targets[i])->ag_flags |= AG_TARGET;
    }
    /* validate before taking any reference, so an error leaves nothing behind */
    tvec order = {0};
    const char *freed_op = topo_sort(epoch, n_out, outs, targets != NULL, &order);
    if (freed_op) {
        free(order.v);
        mn_fatal("backward: the graph through op '%s' was already freed; pass MN_RETAIN_GRAPH to the first "
                 "backward",
                 freed_op);
    }
    for (size_t k = 0; k < order.len; k++) {
        mn_tensor *t = order.v[k];
        if (t->node && (mn__obj(t)->ag_flags & AG_NEEDED) && !check_versions(t->node, t)) {
            free(order.v);
            report_version_error(t->node, t);
        }
    }
    for (size_t k = 0; k < order.len; k++) mn_retain(order.v[k]);
    mn_scope outer = mn_scope_begin();
    bool prev_mode = mn_set_grad_enabled(create_graph);

    for (int o = 0; o < n_out; o++) {
        if (!edge(outs[o])) continue;
        mn_tensor *seed = gouts && gouts[o] ? gouts[o] : mn_ones_like(outs[o]);
        if (!mn_same_shape(seed, outs[o])) {
            char a[96], b[96];
            mn_fatal("backward: grad_output %s does not match output %s", mn_shape_str(seed, a),
                     mn_shape_str(outs[o], b));
        }
        accumulate(outs[o], seed, create_graph);
    }

    for (size_t k = order.len; k-- > 0;) {
        mn_tensor *t = order.v[k];
        if (!(mn__obj(t)->ag_flags & AG_NEEDED) || !mn__obj(t)->ag_grad) continue;
        mn_node *n = t->node;
        if (n) {
            bool any = false;
            for (int i = 0; i < n->n_in; i++) {
                mn_tensor *c = n->in[i];
                n->need[i] = edge(c) && mn__obj(c)->ag_epoch == epoch && (mn__obj(c)->ag_flags & AG_NEEDED);
                any |= n->need[i];
            }
            if (any) {
                mn_tensor *gin_stack[8], **gin = n->n_in <= 8 ? gin_stack : calloc((size_t)n->n_in, sizeof *gin);
                memset(gin, 0, sizeof *gin * (size_t)(n->n_in <= 8 ? 8 : n->n_in));
                mn_scope sc = mn_scope_begin();
                n->backward(n, t, mn__obj(t)->ag_grad, gin);
                for (int i = 0; i < n->n_in; i++) {
                    if (!n->need[i] || !gin[i]) continue;
                    if (!mn_same_shape(gin[i], n->in[i])) {
                        char a[96], b[96];
                        mn_fatal("backward of op '%s': gradient %s for input %d of shape %s", n->op,
                                 mn_shape_str(gin[i], a), i, mn_shape_str(n->in[i], b));
                    }
                    accumulate(n->in[i], gin[i], create_graph);
                }
                mn_scope_end(sc);
                if (gin != gin_stack) free(gin);
            }
        } else if (!targets) {
            /* a leaf: accumulate into ->grad */
            mn_tensor *g = mn__obj(t)->ag_grad;
            if (create_graph) {
                mn_tensor *ng = t->grad ? mn_retain(mn_add(t->grad, g)) : mn_retain(g);
                mn_release(t->grad);
                t->grad = ng;
            } else if (!t->grad) {
                bool unique = g->refcount == 1 && g->storage->refcount == 1 && mn_is_contiguous(g) && !g->node;
                t->grad = unique ? mn_retain(g) : mn_retain(mnt_clone(g));
            } else {
                mnt_add_(t->grad, g);
            }
        }
        if (!(targets && (mn__obj(t)->ag_flags & AG_TARGET))) {
            mn_release(mn__obj(t)->ag_grad);
            mn__obj(t)->ag_grad = NULL;
        }
    }

    mn_set_grad_enabled(prev_mode);
    if (grads) {
        for (int i = 0; i < n_in; i++) {
            mn_tensor *g = mn__obj(targets[i])->ag_grad;
            grads[i] = g ? mn_retain(g) : mn_retain(mn_zeros_like(targets[i]));
        }
    }
    for (size_t k = 0; k < order.len; k++) {
        mn_tensor *t = order.v[k];
        mn_release(mn__obj(t)->ag_grad);
        mn__obj(t)->ag_grad = NULL;
        if (!retain && t->node) {
            node_release_inputs(t->node);
            t->node->freed = true;
        }
    }
    for (int i = 0; i < n_in; i++) {
        mn_release(mn__obj(targets[i])->ag_grad);
        mn__obj(targets[i])->ag_grad = NULL;
    }
    mn_scope_end(outer);
    for (size_t k = 0; k < order.len; k++) mn_release(order.v[k]);
    free(order.v);
    if (grads)
        for (int i = 0; i < n_in; i++) mn_autorelease(grads[i]);
}

void mn_backward_ex(mn_tensor *out, mn_tensor *grad_out, int flags) {
    if (!out->requires_grad)
        mn_fatal("mn_backward: the output does not require grad (no input requires grad, or grad mode was off)");
    run_backward(1, &out, &grad_out, 0, NULL, NULL, flags);
}

void mn_backward(mn_tensor *loss) {
    if (mn_numel(loss) != 1) {
        char b[96];
        mn_fatal("mn_backward: loss must have one element, got shape %s (use mn_backward_ex with a grad_out)",
                 mn_shape_str(loss, b));
    }
    mn_backward_ex(loss, NULL, 0);
}

void mn_grad(int n_out, mn_tensor *const *outputs, mn_tensor *const *grad_outputs, int n_in,
             mn_tensor *const *inputs, mn_tensor **grads, int flags) {
    for (int i = 0; i < n_in; i++)
        if (inputs[i]->dtype != MN_F32) mn_fatal("mn_grad: input %d is not a float32 tensor", i);
    run_backward(n_out, outputs, grad_outputs, n_in, inputs, grads, flags);
}

mn_tensor *mn_grad1(mn_tensor *output, mn_tensor *input, int flags) {
    mn_tensor *g;
    mn_grad(1, &output, NULL, 1, &input, &g, flags);
    return g;
}
