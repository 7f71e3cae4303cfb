/* mnemo autograd: differentiable ops and reverse-mode differentiation.
 *
 * Every op here computes its result with the raw kernels of tensor/ and, when
 * gradients are enabled and an input requires one, records itself on the
 * result (the tensor is its own graph node). Each op's backward rule is
 * written with these same ops, so with MN_CREATE_GRAPH the backward pass is
 * recorded too and can be differentiated again, to any order.
 *
 * The graph lives as long as the tensors do: a node holds references to its
 * inputs, and a scope (tensor/tensor.h) frees a whole step's graph at its end.
 * The graph API is single-threaded (kernels use threads inside). */
#ifndef MN_AUTOGRAD_H
#define MN_AUTOGRAD_H

#include "tensor/tensor.h"

/* Axis lists inline: mn_sum(x, MN_AXES(0, 2), true). MN_ALL for all axes. */
#define MN_AXES(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__}
#define MN_ALL 0, NULL

/* ---- grad mode ------------------------------------------------------------ */
MN_API bool mn_grad_enabled(void);
MN_API bool mn_set_grad_enabled(bool enabled); /* returns the previous mode */
/* No-grad region: bool prev = mn_no_grad_begin(); ... mn_no_grad_end(prev); */
MN_API bool mn_no_grad_begin(void);
MN_API void mn_no_grad_end(bool prev);

/* ---- leaves, detach, gradients --------------------------------------------- */
MN_API mn_tensor *mn_requires_grad(mn_tensor *t, bool on); /* on a leaf; returns t */
MN_API mn_tensor *mn_detach(mn_tensor *t);                 /* same data, no history */
MN_API void mn_zero_grad(mn_tensor *t);                    /* drops t->grad */

enum {
    MN_RETAIN_GRAPH = 1, /* keep the graph for another backward through it */
    MN_CREATE_GRAPH = 2, /* record the backward pass (implies MN_RETAIN_GRAPH) */
};
/* Accumulates d(loss)/d(leaf) into leaf->grad for every leaf that requires
 * grad. loss must have one element. Frees the graph unless MN_RETAIN_GRAPH. */
MN_API void mn_backward(mn_tensor *loss);
MN_API void mn_backward_ex(mn_tensor *out, mn_tensor *grad_out, int flags); /* grad_out NULL: ones */
/* grads[i] = sum_j d(outputs[j])/d(inputs[i]) weighted by grad_outputs[j]
 * (NULL: ones). Inputs not reached get zeros. Does not touch ->grad. With
 * MN_CREATE_GRAPH the results are themselves differentiable. */
MN_API void mn_grad(int n_out, mn_tensor *const *outputs, mn_tensor *const *grad_outputs, int n_in,
             mn_tensor *const *inputs, mn_tensor **grads, int flags);
MN_API mn_tensor *mn_grad1(mn_tensor *output, mn_tensor *input, int flags); /* one scalar output, one input */

/* Recomputation (gradient checkpointing): runs fn(ctx, in, out) (n_out results) without recording its inside, and
 * records one node that keeps only the inputs; its backward runs fn again with recording on and
 * differentiates through that. Memory: a region's inputs and outputs instead of all its
 * intermediates; time: one more forward of the region. fn must be a deterministic function of
 * in[] and of the leaves[] it reads directly (such as weights): leaves must be listed, and a
 * region that reads any other tensor requiring grad stops with an error at backward. ctx is copied
 * (ctx_size bytes) and kept for the backward. The backward itself cannot be recorded
 * (MN_CREATE_GRAPH through it stops with an error). Results belong to the current scope. */
typedef void (*mn_recompute_fn)(const void *ctx, mn_tensor *const *in, mn_tensor **out);
MN_API void mn_recompute(mn_recompute_fn fn, const void *ctx, size_t ctx_size, int n_in, mn_tensor *const *in,
                   int n_leaves, mn_tensor *const *leaves, int n_out, mn_tensor **out);

/* ---- named parameters ----------------------------------------------------------
 * Models list their trainable tensors under Hugging Face-style dotted names
 * ("encoder.layer.0.attention.self.query.weight"). The list holds one reference
 * to each tensor and a copy of each name. Optimizers and checkpoints work on it. */
typedef struct {
    char *name;
    mn_tensor *tensor;
    bool no_decay; /* biases and normalisation weights: no weight decay by default */
    mn_tensor **fields[2]; /* where the owning module keeps it (a tied tensor: two places), or NULL */
} mn_param;
typedef struct {
    mn_param *items;
    int count, cap;
} mn_params;
/* Appends prefix + "." + name (or name alone when prefix is NULL or empty). */
MN_API void mn_params_add(mn_params *p, const char *prefix, const char *name, mn_tensor *t, bool no_decay);
/* The same for a tensor a module keeps in *field, remembered so that mn_params_substitute can swap it. */
MN_API void mn_params_add_field(mn_params *p, const char *prefix, const char *name, mn_tensor **field, bool no_decay);
/* A second field holding listed parameter `name` (a tied tensor, e.g. a decoder sharing the embedding). */
MN_API void mn_params_alias_field(mn_params *p, const char *name, mn_tensor **field);
/* Functional use of a module: its parameters replaced by values[i] (one per listed parameter, same shapes;
 * graph nodes allowed, e.g. the parameters of an unrolled training run) until mn_params_restore. The
 * values are borrowed, not retained; a forward pass in between computes with them, so gradients flow to
 * them. Every parameter must have been listed with mn_params_add_field (nn and models do). */
MN_API void mn_params_substitute(const mn_params *p, mn_tensor *const *values);
MN_API void mn_params_restore(const mn_params *p);
MN_API mn_param *mn_params_find(const mn_params *p, const char *name); /* NULL if absent */
MN_API int64_t mn_params_numel(const mn_params *p);
MN_API void mn_params_zero_grad(const mn_params *p);
MN_API void mn_params_free(mn_params *p); /* drops the references and names */

/* ---- element-wise (NumPy broadcasting) -------------------------------------- */
MN_API mn_tensor *mn_add(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_sub(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_mul(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_div(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_pow(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_neg(mn_tensor *x);
MN_API mn_tensor *mn_exp(mn_tensor *x);
MN_API mn_tensor *mn_log(mn_tensor *x);
MN_API mn_tensor *mn_sqrt(mn_tensor *x);
MN_API mn_tensor *mn_rsqrt(mn_tensor *x);
MN_API mn_tensor *mn_abs(mn_tensor *x);
MN_API mn_tensor *mn_sign(mn_tensor *x);
MN_API mn_tensor *mn_relu(mn_tensor *x);
MN_API mn_tensor *mn_gelu(mn_tensor *x);      /* exact (erf) form */
MN_API mn_tensor *mn_gelu_grad(mn_tensor *x); /* d gelu / dx, itself differentiable */
MN_API mn_tensor *mn_tanh(mn_tensor *x);
MN_API mn_tensor *mn_sigmoid(mn_tensor *x);
MN_API mn_tensor *mn_erf(mn_tensor *x);
MN_API mn_tensor *mn_square(mn_tensor *x);
MN_API mn_tensor *mn_reciprocal(mn_tensor *x);
MN_API mn_tensor *mn_scale(mn_tensor *x, float s);      /* s * x */
MN_API mn_tensor *mn_add_scalar(mn_tensor *x, float s); /* x + s */
MN_API mn_tensor *mn_pow_scalar(mn_tensor *x, float p);
MN_API mn_tensor *mn_clamp(mn_tensor *x, float lo, float hi);
MN_API mn_tensor *mn_where(mn_tensor *cond, mn_tensor *a, mn_tensor *b); /* cond != 0 ? a : b */
/* comparisons give 0/1 float tensors and carry no gradient */
MN_API mn_tensor *mn_eq(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_ne(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_lt(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_le(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_gt(mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mn_ge(mn_tensor *a, mn_tensor *b);

/* ---- reductions (n_axes == 0: all axes) ------------------------------------- */
MN_API mn_tensor *mn_sum(mn_tensor *x, int n_axes, const int *axes, bool keepdim);
MN_API mn_tensor *mn_mean(mn_tensor *x, int n_axes, const int *axes, bool keepdim);
MN_API mn_tensor *mn_max(mn_tensor *x, int n_axes, const int *axes, bool keepdim); /* ties share the gradient */
MN_API mn_tensor *mn_var(mn_tensor *x, int n_axes, const int *axes, int correction, bool keepdim);
MN_API mn_tensor *mn_argmax(mn_tensor *x, int axis, bool keepdim); /* int32, no gradient */
MN_API mn_tensor *mn_sum_to(mn_tensor *x, int ndim, const int64_t *shape); /* undo broadcasting */
/* inclusive cumulative sum along axis; reverse: from the end (y_i = sum_{j >= i} x_j) */
MN_API mn_tensor *mn_cumsum(mn_tensor *x, int axis, bool reverse);

/* ---- linear algebra and normalisation --------------------------------------- */
MN_API mn_tensor *mn_matmul(mn_tensor *a, mn_tensor *b); /* [..., M, K] @ [..., K, N], broadcast batch */
/* Mean cross-entropy of logits [N, C] against int32 targets [N], skipping rows whose target is
 * ignore_index (0 if all are), with label smoothing: nn's mn_cross_entropy in one op that keeps
 * no [N, C] log-probabilities (see mnt_cross_entropy). */
MN_API mn_tensor *mn_softmax_cross_entropy(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing);
/* mn_softmax_cross_entropy(mn_dense(h, w, b), ...) for an output projection over a large
 * vocabulary: h [N, H], w [V, H], b [V] or NULL. The [N, V] logits are never held whole (256 rows
 * at a time), and their gradients are formed in the same pass, during the forward. */
MN_API mn_tensor *mn_dense_cross_entropy(mn_tensor *h, mn_tensor *w, mn_tensor *b, mn_tensor *targets, int ignore_index,
                                  float label_smoothing);
/* x [..., in] @ w^T + b with w [out, in] and b [out] (or NULL) -> [..., out], one GEMM */
MN_API mn_tensor *mn_dense(mn_tensor *x, mn_tensor *w, mn_tensor *b);
MN_API mn_tensor *mn_softmax(mn_tensor *x, int axis);
MN_API mn_tensor *mn_log_softmax(mn_tensor *x, int axis);
/* softmax(scale * x + mask) over the last dim in one pass (attention scores); mask is additive,
 * broadcastable to x, or NULL, and receives a gradient when it requires one */
MN_API mn_tensor *mn_softmax_scaled(mn_tensor *x, float scale, mn_tensor *mask);
/* over the last dim; w and b ([C]) may be NULL */
MN_API mn_tensor *mn_layernorm(mn_tensor *x, mn_tensor *w, mn_tensor *b, float eps);
/* Softmax attention: softmax(scale q k^T + mask) v, per batch and head in one op (see
 * mnt_attention): q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv], mask [B or 1, 1, 1, Tk] or
 * NULL -> [B, H, Tq, Dv]. The mask is a constant (a mask that requires grad is an error). */
MN_API mn_tensor *mn_attention(mn_tensor *q, mn_tensor *k, mn_tensor *v, float scale, mn_tensor *mask);

/* ---- shape -------------------------------------------------------------------- */
MN_API mn_tensor *mn_reshape(mn_tensor *x, int ndim, const int64_t *shape);
MN_API mn_tensor *mn_permute(mn_tensor *x, const int *perm);
MN_API mn_tensor *mn_transpose(mn_tensor *x, int axis0, int axis1);
MN_API mn_tensor *mn_slice(mn_tensor *x, int axis, int64_t start, int64_t stop, int64_t step);
MN_API mn_tensor *mn_expand(mn_tensor *x, int ndim, const int64_t *shape);
MN_API mn_tensor *mn_unsqueeze(mn_tensor *x, int axis);
MN_API mn_tensor *mn_squeeze(mn_tensor *x, int axis);
MN_API mn_tensor *mn_contiguous(mn_tensor *x);
MN_API mn_tensor *mn_clone(mn_tensor *x);
MN_API mn_tensor *mn_concat(int n, mn_tensor *const *ts, int axis);
MN_API mn_tensor *mn_stack(int n, mn_tensor *const *ts, int axis);
/* Splits x along axis into n parts of the given sizes (views); writes out[n]. */
MN_API void mn_split(mn_tensor *x, int axis, int n, const int64_t *sizes, mn_tensor **out);

/* ---- indexing (indices are int32 tensors) -------------------------------------- */
MN_API mn_tensor *mn_index_select(mn_tensor *x, int axis, mn_tensor *index);
MN_API mn_tensor *mn_index_add(int ndim, const int64_t *shape, int axis, mn_tensor *index, mn_tensor *src);
MN_API mn_tensor *mn_gather(mn_tensor *x, int axis, mn_tensor *index);
MN_API mn_tensor *mn_scatter_add(int ndim, const int64_t *shape, int axis, mn_tensor *index, mn_tensor *src);
MN_API mn_tensor *mn_embedding(mn_tensor *weight, mn_tensor *index); /* [V, D] at index [...] -> [..., D] */
MN_API mn_tensor *mn_one_hot(mn_tensor *index, int64_t n_classes);  /* float32, no gradient */
/* zeros of shape with g written into the slice (the adjoint of mn_slice) */
MN_API mn_tensor *mn_slice_scatter(int ndim, const int64_t *shape, mn_tensor *g, int axis, int64_t start, int64_t step);

/* ---- in-place updates (refused on tensors that require grad while grad mode is on) */
MN_API void mn_copy_(mn_tensor *dst, mn_tensor *src);
MN_API void mn_fill_(mn_tensor *dst, float value);
MN_API void mn_add_(mn_tensor *dst, mn_tensor *src);
MN_API void mn_axpy_(mn_tensor *dst, float alpha, mn_tensor *src);
MN_API void mn_scale_(mn_tensor *dst, float alpha);

/* ---- gradient checking ---------------------------------------------------------
 * f maps the inputs to one tensor. mn_gradcheck compares the analytic gradient
 * of <f(x), r> (r a fixed random tensor) with central differences; second
 * order compares the gradient of <grad, v> (computed with MN_CREATE_GRAPH)
 * with central differences of first-order gradients. Sums are accumulated in
 * double. Returns true when every element satisfies |a - n| <= atol + rtol |n|;
 * otherwise writes the worst element into msg. */
typedef mn_tensor *(*mn_check_fn)(mn_tensor *const *inputs, void *ctx);
typedef struct {
    double eps, atol, rtol;
    uint64_t seed;
} mn_check_opts;
MN_API bool mn_gradcheck(mn_check_fn f, void *ctx, int n, mn_tensor *const *inputs, mn_check_opts opts, char *msg,
                  size_t msg_len);
MN_API bool mn_gradgradcheck(mn_check_fn f, void *ctx, int n, mn_tensor *const *inputs, mn_check_opts opts, char *msg,
                      size_t msg_len);

#endif
