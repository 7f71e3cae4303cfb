/* mnemo tensors: n-d float32 (and int32 index) arrays with shape, strides and offset.
 *
 * Memory: every tensor is reference counted. A function that returns a tensor
 * hands out one reference. Inside a scope (mn_scope_begin/mn_scope_end) that
 * reference belongs to the scope and is dropped when the scope ends; outside any
 * scope it belongs to the caller, who drops it with mn_release. mn_retain takes
 * an extra reference the caller owns, so a tensor survives its scope. A training
 * loop wraps each step in a scope and keeps memory flat without freeing anything
 * by hand.
 *
 * This header is the raw layer: the mnt_* functions compute and record nothing.
 * The differentiable ops users normally call (mn_add, mn_matmul, ...) live in
 * autograd/autograd.h and are built on these. */
#ifndef MN_TENSOR_H
#define MN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/export.h"
#include "tensor/rng.h"

#define MN_MAX_DIMS 8

typedef enum { MN_F32 = 0, MN_I32 = 1 } mn_dtype;

typedef struct mn_storage {
    void *data;
    size_t nbytes;
    size_t capacity; /* bytes actually allocated (a size class) */
    int refcount;
    uint32_t version; /* bumped by every in-place write; autograd checks it */
} mn_storage;

struct mn_node; /* autograd's record of the op that produced a tensor */

typedef struct mn_tensor {
    int refcount;
    mn_dtype dtype;
    int ndim;
    int64_t shape[MN_MAX_DIMS];
    int64_t strides[MN_MAX_DIMS]; /* in elements; 0 on broadcast dimensions */
    int64_t offset;               /* in elements, into storage */
    mn_storage *storage;
    bool requires_grad;
    struct mn_tensor *grad;       /* accumulated by mn_backward on leaves (owned) */
    struct mn_node *node;         /* op that produced this tensor; NULL for leaves (owned) */
} mn_tensor;

/* ---- errors ------------------------------------------------------------
 * Programming errors inside the API (shape mismatch, bad axis) call the error
 * handler with a message naming the op and the shapes. The default handler
 * prints it and aborts; a test or an embedding program can install one that
 * longjmps out instead. If a handler returns, the process aborts. */
typedef void (*mn_error_handler)(const char *message, void *user);
MN_API mn_error_handler mn_set_error_handler(mn_error_handler handler, void *user, void **prev_user);
MN_API _Noreturn void mn_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The message of the last error raised through mn_fatal (empty if none). */
MN_API const char *mn_last_error(void);
/* Writes "[2, 3, 4]" into buf (at least 96 bytes) and returns buf. */
MN_API char *mn_shape_str(const mn_tensor *t, char *buf);

/* Errors at the edges: functions that read the outside world (files,
 * checkpoints, vocabularies, arguments) never stop the program; they return
 * false or NULL and describe the problem in an mn_err (file, place, what was
 * expected and what was found). err may be NULL when the caller doesn't care. */
typedef struct {
    char msg[1024];
} mn_err;
/* Formats the message into err (if non-NULL) and returns false. */
MN_API bool mn_err_set(mn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- memory ------------------------------------------------------------ */
MN_API mn_tensor *mn_retain(mn_tensor *t);
MN_API void mn_release(mn_tensor *t); /* NULL is fine */
/* Puts a reference the caller owns into the current scope (no-op outside scopes). */
MN_API mn_tensor *mn_autorelease(mn_tensor *t);
typedef size_t mn_scope;
MN_API mn_scope mn_scope_begin(void);
MN_API void mn_scope_end(mn_scope scope); /* must be the innermost open scope */
/* Ends scope and every scope opened inside it, e.g. after an error handler
 * longjmp'd out of a function that had opened its own. */
MN_API void mn_scope_unwind(mn_scope scope);
MN_API int mn_scope_depth(void);
/* Ends scope sc but keeps t alive, handing it to the enclosing scope (or to the
 * caller): the pattern for a function that makes temporaries and returns one. */
MN_API mn_tensor *mn_scope_return(mn_scope sc, mn_tensor *t);
/* Bytes of tensor data currently allocated, and number of live tensor objects. */
MN_API int64_t mn_live_bytes(void);
MN_API int64_t mn_live_tensors(void);
/* Freed tensor data is kept for reuse by later tensors of similar size (up to
 * MNEMO_CACHE_MB, default 4096); mn_memory_trim returns it to the system. */
MN_API int64_t mn_cached_bytes(void);
MN_API void mn_memory_trim(void);

/* ---- creation ----------------------------------------------------------
 * Shapes are given as (ndim, dims). Shorthand macros take the dims inline:
 * mn_zeros(MN_SHAPE(2, 3)). */
#define MN_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

MN_API mn_tensor *mn_empty(int ndim, const int64_t *shape);
MN_API mn_tensor *mn_empty_dtype(mn_dtype dtype, int ndim, const int64_t *shape);
/* As mn_empty_dtype, but NULL when the memory cannot be had (the others abort): for loaders, which
 * turn it into an error naming the file. */
MN_API mn_tensor *mn_try_empty_dtype(mn_dtype dtype, int ndim, const int64_t *shape);
MN_API mn_tensor *mn_zeros(int ndim, const int64_t *shape);
MN_API mn_tensor *mn_ones(int ndim, const int64_t *shape);
MN_API mn_tensor *mn_full(int ndim, const int64_t *shape, float value);
MN_API mn_tensor *mn_scalar(float value); /* 0-d tensor */
MN_API mn_tensor *mn_arange(float start, float stop, float step);
MN_API mn_tensor *mn_from_data(int ndim, const int64_t *shape, const float *data);   /* copies */
MN_API mn_tensor *mn_from_ints(int ndim, const int64_t *shape, const int32_t *data); /* I32, copies */
MN_API mn_tensor *mn_zeros_like(const mn_tensor *t);
MN_API mn_tensor *mn_ones_like(const mn_tensor *t);
MN_API mn_tensor *mn_empty_like(const mn_tensor *t);

/* Seeded random tensors. The global generator is set by mn_manual_seed; the
 * _gen variants draw from (and advance) an explicit counter-based generator. */
MN_API void mn_manual_seed(uint64_t seed);
MN_API mn_tensor *mn_rand(int ndim, const int64_t *shape);  /* uniform [0, 1) */
MN_API mn_tensor *mn_randn(int ndim, const int64_t *shape); /* standard normal */
MN_API mn_tensor *mn_rand_gen(mn_rng *g, int ndim, const int64_t *shape, float lo, float hi);
MN_API mn_tensor *mn_randn_gen(mn_rng *g, int ndim, const int64_t *shape, float mean, float std);

/* ---- inspection -------------------------------------------------------- */
MN_API int64_t mn_numel(const mn_tensor *t);
MN_API int64_t mn_size(const mn_tensor *t, int axis); /* negative axis counts from the end */
MN_API bool mn_is_contiguous(const mn_tensor *t);
MN_API bool mn_same_shape(const mn_tensor *a, const mn_tensor *b);
MN_API float *mn_data(const mn_tensor *t);     /* F32 data pointer at the tensor's offset */
MN_API int32_t *mn_idata(const mn_tensor *t);  /* I32 data pointer */
MN_API float mn_item(const mn_tensor *t);      /* value of a one-element tensor */
MN_API float mn_get(const mn_tensor *t, const int64_t *index); /* one element, any layout */
/* Copies the elements in row-major order into out (numel floats). */
MN_API void mn_to_array(const mn_tensor *t, float *out);
MN_API void mn_print(const mn_tensor *t, const char *label);
MN_API int mn_norm_axis(const mn_tensor *t, int axis, const char *op);

/* ---- raw views (share storage, record nothing) --------------------------- */
MN_API mn_tensor *mnt_view(mn_tensor *t, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset);
MN_API mn_tensor *mnt_reshape(mn_tensor *t, int ndim, const int64_t *shape); /* -1 infers one dim; copies if not viewable */
MN_API mn_tensor *mnt_permute(mn_tensor *t, const int *perm);
MN_API mn_tensor *mnt_transpose(mn_tensor *t, int axis0, int axis1);
MN_API mn_tensor *mnt_slice(mn_tensor *t, int axis, int64_t start, int64_t stop, int64_t step);
MN_API mn_tensor *mnt_expand(mn_tensor *t, int ndim, const int64_t *shape);
MN_API mn_tensor *mnt_unsqueeze(mn_tensor *t, int axis);
MN_API mn_tensor *mnt_squeeze(mn_tensor *t, int axis);
MN_API mn_tensor *mnt_contiguous(mn_tensor *t); /* t itself (retained) if already contiguous */
MN_API mn_tensor *mnt_clone(mn_tensor *t);      /* always a fresh contiguous copy */

/* ---- raw compute --------------------------------------------------------- */
typedef enum {
    MN_OP_NEG, MN_OP_EXP, MN_OP_LOG, MN_OP_SQRT, MN_OP_RSQRT, MN_OP_ABS, MN_OP_SIGN,
    MN_OP_RELU, MN_OP_STEP /* x > 0 */, MN_OP_GELU, MN_OP_GELU_GRAD, MN_OP_TANH,
    MN_OP_SIGMOID, MN_OP_ERF, MN_OP_RECIPROCAL, MN_OP_SQUARE, MN_OP_COPY,
} mn_unary_op;
typedef enum {
    MN_OP_ADD, MN_OP_SUB, MN_OP_MUL, MN_OP_DIV, MN_OP_POW, MN_OP_MAXIMUM, MN_OP_MINIMUM,
    MN_OP_EQ, MN_OP_NE, MN_OP_LT, MN_OP_LE, MN_OP_GT, MN_OP_GE,
} mn_binary_op;

/* Broadcast shape of a and b (NumPy rules); stops with an error naming op otherwise. */
MN_API int mn_broadcast_shape(const mn_tensor *a, const mn_tensor *b, int64_t *out_shape, const char *op);

MN_API mn_tensor *mnt_unary(mn_unary_op op, mn_tensor *x);
MN_API mn_tensor *mnt_binary(mn_binary_op op, mn_tensor *a, mn_tensor *b);
MN_API mn_tensor *mnt_affine(mn_tensor *x, float scale, float shift);   /* scale*x + shift */
MN_API mn_tensor *mnt_pow_scalar(mn_tensor *x, float p);
MN_API mn_tensor *mnt_clamp(mn_tensor *x, float lo, float hi);
MN_API mn_tensor *mnt_in_range(mn_tensor *x, float lo, float hi);       /* 1 where lo <= x <= hi */
MN_API mn_tensor *mnt_where(mn_tensor *cond, mn_tensor *a, mn_tensor *b); /* cond != 0 ? a : b */

/* In-place (bump the storage version). src broadcasts to dst's shape. */
MN_API void mnt_copy_(mn_tensor *dst, mn_tensor *src);
MN_API void mnt_fill_(mn_tensor *dst, float value);
MN_API void mnt_add_(mn_tensor *dst, mn_tensor *src);                  /* dst += src */
MN_API void mnt_axpy_(mn_tensor *dst, float alpha, mn_tensor *src);    /* dst += alpha*src */
MN_API void mnt_scale_(mn_tensor *dst, float alpha);                   /* dst *= alpha */

/* Reductions over a set of axes (n_axes == 0 means all). */
MN_API mn_tensor *mnt_sum(mn_tensor *x, int n_axes, const int *axes, bool keepdim);
MN_API mn_tensor *mnt_mean(mn_tensor *x, int n_axes, const int *axes, bool keepdim);
MN_API mn_tensor *mnt_max(mn_tensor *x, int n_axes, const int *axes, bool keepdim);
MN_API mn_tensor *mnt_var(mn_tensor *x, int n_axes, const int *axes, int correction, bool keepdim);
MN_API mn_tensor *mnt_argmax(mn_tensor *x, int axis, bool keepdim); /* I32 */
/* Sums x down to shape (the reverse of broadcasting). */
MN_API mn_tensor *mnt_sum_to(mn_tensor *x, int ndim, const int64_t *shape);
/* Inclusive cumulative sum along axis; reverse sums from the end (y_i = sum_{j >= i} x_j). */
MN_API mn_tensor *mnt_cumsum(mn_tensor *x, int axis, bool reverse);

/* Batched matmul: a [..., M, K] @ b [..., K, N] with broadcast batch dims.
 * Transposed views of the last two dims are passed to GEMM without copying. */
MN_API mn_tensor *mnt_matmul(mn_tensor *a, mn_tensor *b);

MN_API mn_tensor *mnt_softmax(mn_tensor *x, int axis);
MN_API mn_tensor *mnt_log_softmax(mn_tensor *x, int axis);
/* Normalises over the last dim; w, b ([C]) may be NULL. mean/rstd ([..., 1]) may be NULL. */
MN_API mn_tensor *mnt_layernorm(mn_tensor *x, mn_tensor *w, mn_tensor *b, float eps,
                         mn_tensor **mean, mn_tensor **rstd);

/* Fused kernels (one pass where composites make several), all over the last dim.
 * softmax(scale * x + mask); mask (broadcastable to x) may be NULL. */
MN_API mn_tensor *mnt_softmax_scaled(mn_tensor *x, float scale, mn_tensor *mask);
/* Backward rules given the forward's result y and the incoming gradient g:
 * softmax: y (g - sum(g y));  log_softmax: g - exp(y) sum(g). */
MN_API mn_tensor *mnt_softmax_backward(mn_tensor *y, mn_tensor *g);
MN_API mn_tensor *mnt_log_softmax_backward(mn_tensor *y, mn_tensor *g);
MN_API mn_tensor *mnt_gelu_backward(mn_tensor *x, mn_tensor *g); /* g * gelu'(x) */
MN_API mn_tensor *mnt_relu_backward(mn_tensor *x, mn_tensor *g); /* x > 0 ? g : 0 */
/* x [..., in] @ w^T + b, w [out, in], b [out] or NULL -> [..., out] (the bias costs no pass) */
MN_API mn_tensor *mnt_dense(mn_tensor *x, mn_tensor *w, mn_tensor *b);
/* Mean cross-entropy of logits [N, C] against int32 targets [N] over the rows whose target is
 * not ignore_index (0 if none; *counted, which may be NULL, receives their number), with label
 * smoothing, row by row: no [N, C] log-probabilities are kept. A target outside [0, C) that is
 * not ignore_index is an error. The backward gives scale * d(loss sum)/d logits, [N, C]. */
MN_API mn_tensor *mnt_cross_entropy(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing,
                             int64_t *counted);
MN_API mn_tensor *mnt_cross_entropy_backward(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing,
                                      float scale);
/* mnt_cross_entropy(h w^T + b, targets, ...) without the [N, V] logits: they are made, used and
 * dropped 256 rows at a time. h [N, H], w [V, H], b [V] or NULL. dh, dw, db (each may be NULL)
 * receive the gradients of the loss, computed in the same pass over the logits. */
MN_API mn_tensor *mnt_dense_cross_entropy(mn_tensor *h, mn_tensor *w, mn_tensor *b, mn_tensor *targets, int ignore_index,
                                   float label_smoothing, int64_t *counted, mn_tensor **dh, mn_tensor **dw,
                                   mn_tensor **db);
/* Gradients of mnt_layernorm(x, w, b, eps) for the incoming gradient g; w may be NULL (ones).
 * Each of dx, dw ([C]), db ([C]) may be NULL when not wanted. */
MN_API void mnt_layernorm_backward(mn_tensor *x, mn_tensor *w, mn_tensor *g, float eps, mn_tensor **dx, mn_tensor **dw,
                            mn_tensor **db);

/* softmax(scale q k^T + mask) v per batch and head, each head's scores made and used in cache.
 * q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv] (any strides), mask [B or 1, 1, 1, Tk] (additive)
 * or NULL -> [B, H, Tq, Dv], a view of [B, Tq, H, Dv] storage (merging the heads is then free).
 * *probs (may be NULL) receives the softmax [B, H, Tq, Tk], which the backward takes. */
MN_API mn_tensor *mnt_attention(mn_tensor *q, mn_tensor *k, mn_tensor *v, float scale, mn_tensor *mask, mn_tensor **probs);
/* Gradients of mnt_attention for the incoming gradient g [B, H, Tq, Dv], each a [B, H, T, D] view of
 * [B, T, H, D] storage; any of dq, dk, dv may be NULL when not wanted. */
MN_API void mnt_attention_backward(mn_tensor *q, mn_tensor *k, mn_tensor *v, mn_tensor *probs, mn_tensor *g, float scale,
                            mn_tensor **dq, mn_tensor **dk, mn_tensor **dv);

MN_API mn_tensor *mnt_concat(int n, mn_tensor *const *ts, int axis);
MN_API mn_tensor *mnt_stack(int n, mn_tensor *const *ts, int axis);
MN_API mn_tensor *mnt_index_select(mn_tensor *x, int axis, mn_tensor *index);  /* index: I32 1-d */
/* out = zeros of shape; out.index_select(axis, index) += src (scatter-add). */
MN_API mn_tensor *mnt_index_add(int ndim, const int64_t *shape, int axis, mn_tensor *index, mn_tensor *src);
MN_API mn_tensor *mnt_gather(mn_tensor *x, int axis, mn_tensor *index);        /* index: I32, x's ndim */
MN_API mn_tensor *mnt_scatter_add(int ndim, const int64_t *shape, int axis, mn_tensor *index, mn_tensor *src);
MN_API mn_tensor *mnt_one_hot(mn_tensor *index, int64_t n_classes);            /* F32 [..., C] */
MN_API mn_tensor *mnt_to_f32(mn_tensor *x);                                    /* I32 -> F32 */

/* ---- files ------------------------------------------------------------------------
 * Writes go to a temporary file in the same directory, then rename over path,
 * so a crash never leaves half a file. */
MN_API bool mn_write_file_atomic(const char *path, const void *data, size_t size, mn_err *err);
/* Reads a whole file (malloc'd, NUL-terminated for convenience); NULL + err on failure,
 * also when the file is larger than max_size bytes (0: no limit). */
MN_API void *mn_read_file(const char *path, size_t *size, size_t max_size, mn_err *err);
/* Creates a directory and its parents (like mkdir -p); true if it exists afterwards. */
MN_API bool mn_make_dirs(const char *path, mn_err *err);

/* ---- checkpoint directories ---------------------------------------------------------
 * A checkpoint of several files (model, optimizer, trainer state) is written as one unit, so a
 * kill at any moment leaves the previous checkpoint or the new one, never a mix:
 *   mn_ckpt_dir c;
 *   mn_ckpt_dir_begin(&c, dir, step, &err);                  -- staging directory DIR.tmp
 *   mn_save_something(mn_ckpt_dir_file(&c, "model.safetensors", buf, sizeof buf), &err); ...
 *   mn_ckpt_dir_commit(&c, &err);                            -- or mn_ckpt_dir_abort(&c)
 * commit writes manifest.json (the step, every file's size and CRC-32), fsyncs, moves the old DIR
 * aside to DIR.old, renames DIR.tmp to DIR and removes DIR.old. Plain files already in DIR that
 * the new checkpoint does not write (a metrics log, plots) are carried over as hard links, outside
 * the manifest; a subdirectory in DIR is an error. mn_ckpt_dir_open checks a checkpoint before reading it: the
 * manifest against every file, naming any that is missing or differs; if DIR is missing but
 * DIR.old exists (a save stopped between its renames), it uses DIR.old. */
typedef struct {
    char dir[4096], staging[4100];
    int64_t step;
    bool open;
} mn_ckpt_dir;
MN_API bool mn_ckpt_dir_begin(mn_ckpt_dir *c, const char *dir, int64_t step, mn_err *err);
/* The path of file `name` in the checkpoint being written (in buf, cap bytes). */
MN_API const char *mn_ckpt_dir_file(const mn_ckpt_dir *c, const char *name, char *buf, size_t cap);
MN_API bool mn_ckpt_dir_commit(mn_ckpt_dir *c, mn_err *err);
MN_API void mn_ckpt_dir_abort(mn_ckpt_dir *c);
/* The directory to read a checkpoint from (dir or dir.old) into out, its step into *step (NULL: not
 * wanted); false + err if it is incomplete or its files disagree with its manifest. */
MN_API bool mn_ckpt_dir_open(const char *dir, char *out, size_t cap, int64_t *step, mn_err *err);

/* ---- safetensors (Hugging Face's tensor file format) --------------------------------
 * The reader validates everything the format requires: header length limit,
 * JSON header, dtypes, shape x dtype size == byte range, offsets tiling the
 * buffer with no holes or overlap, no duplicate names. F32 loads as is; F16
 * and BF16 convert to F32; I32 and I64 (range-checked) load as I32. */
typedef struct mn_st_file mn_st_file;
MN_API mn_st_file *mn_st_open(const char *path, mn_err *err);
/* The same from a safetensors image in memory (copied, so data may be freed afterwards); name
 * stands for the file in error messages and is what mn_st_path returns. */
MN_API mn_st_file *mn_st_open_memory(const void *data, size_t size, const char *name, mn_err *err);
MN_API int mn_st_count(const mn_st_file *f);
MN_API const char *mn_st_name(const mn_st_file *f, int i); /* in file order of offsets */
/* Looks up a tensor's dtype string ("F32", ...) and shape; false if absent. */
MN_API bool mn_st_info(const mn_st_file *f, const char *name, const char **dtype, int *ndim, int64_t *shape);
MN_API mn_tensor *mn_st_read(const mn_st_file *f, const char *name, mn_err *err);
MN_API const char *mn_st_meta(const mn_st_file *f, const char *key); /* __metadata__ value or NULL */
MN_API const char *mn_st_path(const mn_st_file *f);
MN_API void mn_st_close(mn_st_file *f);

typedef struct {
    const char *name;
    mn_tensor *tensor; /* F32 (written as F32) or I32 (written as I32); any layout */
} mn_st_entry;
/* meta: n_meta key/value pairs as meta[2i], meta[2i+1]; written atomically, data 8-byte aligned */
MN_API bool mn_st_write(const char *path, int n, const mn_st_entry *entries, int n_meta, const char *const *meta,
                 mn_err *err);

#endif
