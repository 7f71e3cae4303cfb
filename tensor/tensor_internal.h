/* Shared helpers of the tensor module's implementation (not installed). */
#ifndef MN_TENSOR_INTERNAL_H
#define MN_TENSOR_INTERNAL_H

#include "tensor/tensor.h"

/* Every tensor the library creates is one of these (tensor.c allocates them), its public part
 * first; the rest is the backward engine's scratch while it runs, kept out of the public struct. */
typedef struct {
    mn_tensor pub;
    mn_tensor *ag_grad;
    uint32_t ag_epoch;
    uint8_t ag_flags;
} mn__tensor_obj;
static inline mn__tensor_obj *mn__obj(mn_tensor *t) { return (mn__tensor_obj *)t; }

char *mn__dims_str(int ndim, const int64_t *shape, char *buf);
mn_storage *mn__storage_new(size_t nbytes);
/* 64-byte aligned blocks from the size-class cache (alloc.c) */
void *mn__alloc(size_t nbytes, size_t *capacity);
void mn__free(void *p, size_t capacity);
int64_t mn__peak_live_bytes(void);
void mn__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
int64_t mn__dims_numel(int ndim, const int64_t *shape);
/* A tensor object over storage (takes over one storage reference), autoreleased. */
mn_tensor *mn__tensor_struct(mn_dtype dtype, int ndim, const int64_t *shape, const int64_t *strides,
                             int64_t offset, mn_storage *storage);
/* autograd registers how to free the nodes it hangs on tensors */
void mn__set_node_destructor(void (*fn)(struct mn_node *));

/* Element-wise iteration over up to 4 operands sharing one shape (operand 0 is
 * usually the output). Dimensions are coalesced where every operand allows it,
 * so contiguous and row-broadcast cases reach the inner loop as long runs. */
/* Per-thread runtime state (scopes, the release work list, grad mode, the allocation cache), so
 * several threads can each build and run their own graphs at once (meta-training's task threads).
 * initial-exec: one instruction per access; the few bytes fit the static TLS of a dlopen'd copy. */
#define MN_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))

#define MN_ITER_MAX_OPS 4
typedef struct {
    int nops, ndim;
    int64_t shape[MN_MAX_DIMS];
    int64_t strides[MN_ITER_MAX_OPS][MN_MAX_DIMS];
} mn__iter;

/* Inner loop: n elements, operand k starts at p[k] and steps by s[k] floats. */
typedef void (*mn__inner_fn)(void *ctx, int64_t n, float **p, const int64_t *s);

void mn__iter_init(mn__iter *it, int nops, int ndim, const int64_t *shape, const int64_t *const *strides);
/* Runs fn over all elements; parallel over outer dims when the work is large
 * and parallel_ok (each output element written by exactly one thread). */
void mn__iter_run(const mn__iter *it, float *const *base, mn__inner_fn fn, void *ctx, bool parallel_ok);

/* Strides of t seen with the broadcast shape out (ndim out_nd); 0 on broadcast dims. */
void mn__broadcast_strides(const mn_tensor *t, int out_nd, const int64_t *out_shape, int64_t *strides);

/* Bumps the version of t's storage (after an in-place write). */
static inline void mn__bump_version(mn_tensor *t) { t->storage->version++; }

#define MN_PARALLEL_THRESHOLD 32768

/* MN_PARALLEL_IF(cond, "omp parallel for ...", for (...) ...): the loop runs under that
 * OpenMP directive when cond holds and as a plain loop otherwise. A parallel region whose
 * if clause is false still costs a system call and microseconds, which small tensors
 * (one softmax row, a bias) would pay on every op. */
#define MN_PARALLEL_IF(cond, directive, ...) \
    do {                                    \
        if (cond) {                         \
            _Pragma(directive) __VA_ARGS__  \
        } else {                            \
            __VA_ARGS__                     \
        }                                   \
    } while (0)

#endif
