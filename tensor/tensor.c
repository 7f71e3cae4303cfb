/* Tensor objects: errors, reference counting and scopes, creation, inspection. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------ */

static void default_error_handler(const char *message, void *user) {
    (void)user;
    fprintf(stderr, "mnemo: %s\n", message);
    fflush(stderr);
}

static mn_error_handler g_error_handler = default_error_handler;
static void *g_error_user;
static char g_last_error[1024];

mn_error_handler mn_set_error_handler(mn_error_handler handler, void *user, void **prev_user) {
    mn_error_handler prev = g_error_handler;
    if (prev_user) *prev_user = g_error_user;
    g_error_handler = handler ? handler : default_error_handler;
    g_error_user = user;
    return prev;
}

void mn_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    g_error_handler(g_last_error, g_error_user);
    if (g_error_handler != default_error_handler) fprintf(stderr, "mnemo: %s\n", g_last_error);
    abort();
}

const char *mn_last_error(void) { return g_last_error; }

bool mn_err_set(mn_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return false;
}

char *mn_shape_str(const mn_tensor *t, char *buf) {
    return mn__dims_str(t->ndim, t->shape, buf);
}

char *mn__dims_str(int ndim, const int64_t *shape, char *buf) {
    int n = 0;
    n += snprintf(buf + n, 96 - n, "[");
    for (int i = 0; i < ndim && n < 90; i++)
        n += snprintf(buf + n, 96 - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    snprintf(buf + n, 96 - n, "]");
    return buf;
}

/* ---- memory ------------------------------------------------------------ */

/* counters shared by all threads: updated atomically */
static int64_t g_live_bytes;
static int64_t g_live_tensors;

static int64_t g_peak_live_bytes;

int64_t mn_live_bytes(void) { return __atomic_load_n(&g_live_bytes, __ATOMIC_RELAXED); }
int64_t mn__peak_live_bytes(void) { return __atomic_load_n(&g_peak_live_bytes, __ATOMIC_RELAXED); }
int64_t mn_live_tensors(void) { return __atomic_load_n(&g_live_tensors, __ATOMIC_RELAXED); }

static mn_storage *storage_try_new(size_t nbytes) {
    mn_storage *s = malloc(sizeof *s);
    if (!s) return NULL;
    if (!(s->data = mn__alloc(nbytes, &s->capacity))) {
        free(s);
        return NULL;
    }
    s->nbytes = nbytes;
    s->refcount = 1;
    s->version = 0;
    int64_t live = __atomic_add_fetch(&g_live_bytes, (int64_t)nbytes, __ATOMIC_RELAXED);
    int64_t peak = __atomic_load_n(&g_peak_live_bytes, __ATOMIC_RELAXED);
    while (live > peak &&
           !__atomic_compare_exchange_n(&g_peak_live_bytes, &peak, live, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return s;
}

mn_storage *mn__storage_new(size_t nbytes) {
    mn_storage *s = storage_try_new(nbytes);
    if (!s) mn_fatal("out of memory allocating %zu bytes", nbytes);
    return s;
}

static void storage_release(mn_storage *s) {
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
    __atomic_sub_fetch(&g_live_bytes, (int64_t)s->nbytes, __ATOMIC_RELAXED);
    mn__free(s->data, s->capacity);
    free(s);
}

static void (*g_node_destructor)(struct mn_node *);
void mn__set_node_destructor(void (*fn)(struct mn_node *)) { g_node_destructor = fn; }

mn_tensor *mn_retain(mn_tensor *t) {
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

/* Releasing a long graph would recurse once per node; a work list keeps the
 * C stack flat however deep the graph is. */
static MN_THREAD_LOCAL mn_tensor **g_dead;
static MN_THREAD_LOCAL size_t g_dead_len, g_dead_cap;
static MN_THREAD_LOCAL bool g_draining;

static void destroy_tensor(mn_tensor *t) {
    storage_release(t->storage);
    if (t->node && g_node_destructor) g_node_destructor(t->node);
    mn_release(t->grad);
    mn_release(mn__obj(t)->ag_grad);
    __atomic_sub_fetch(&g_live_tensors, 1, __ATOMIC_RELAXED);
    free(t);
}

void mn_release(mn_tensor *t) {
    if (!t) return;
    int rc = __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL);
    if (rc < 0) mn_fatal("mn_release: tensor released more often than retained");
    if (rc > 0) return;
    if (g_dead_len == g_dead_cap) {
        g_dead_cap = g_dead_cap ? 2 * g_dead_cap : 256;
        g_dead = realloc(g_dead, g_dead_cap * sizeof *g_dead);
    }
    g_dead[g_dead_len++] = t;
    if (g_draining) return;
    g_draining = true;
    while (g_dead_len) destroy_tensor(g_dead[--g_dead_len]);
    g_draining = false;
}

static MN_THREAD_LOCAL mn_tensor **g_pool;
static MN_THREAD_LOCAL size_t g_pool_len, g_pool_cap;
static MN_THREAD_LOCAL int g_scope_depth;

mn_tensor *mn_autorelease(mn_tensor *t) {
    if (!t || g_scope_depth == 0) return t;
    if (g_pool_len == g_pool_cap) {
        g_pool_cap = g_pool_cap ? 2 * g_pool_cap : 1024;
        g_pool = realloc(g_pool, g_pool_cap * sizeof *g_pool);
    }
    g_pool[g_pool_len++] = t;
    return t;
}

/* A scope is its index on the stack of pool marks. */
static MN_THREAD_LOCAL size_t *g_marks;
static MN_THREAD_LOCAL size_t g_marks_cap;

mn_scope mn_scope_begin(void) {
    if ((size_t)g_scope_depth == g_marks_cap) {
        g_marks_cap = g_marks_cap ? 2 * g_marks_cap : 64;
        g_marks = realloc(g_marks, g_marks_cap * sizeof *g_marks);
        if (!g_marks) mn_fatal("out of memory opening a scope");
    }
    g_marks[g_scope_depth] = g_pool_len;
    return (mn_scope)g_scope_depth++;
}

static void end_top_scope(void) {
    size_t mark = g_marks[--g_scope_depth];
    while (g_pool_len > mark) mn_release(g_pool[--g_pool_len]);
}

void mn_scope_end(mn_scope scope) {
    if (g_scope_depth <= 0) mn_fatal("mn_scope_end: no scope is open");
    if (scope != (mn_scope)(g_scope_depth - 1))
        mn_fatal("mn_scope_end: scope %zu ended while scope %d is innermost", scope, g_scope_depth - 1);
    end_top_scope();
}

void mn_scope_unwind(mn_scope scope) {
    while ((mn_scope)g_scope_depth > scope) end_top_scope();
}

int mn_scope_depth(void) { return g_scope_depth; }

mn_tensor *mn_scope_return(mn_scope sc, mn_tensor *t) {
    mn_retain(t);
    mn_scope_end(sc);
    return mn_autorelease(t);
}

/* ---- construction ------------------------------------------------------ */

static size_t dtype_size(mn_dtype d) { return d == MN_I32 ? sizeof(int32_t) : sizeof(float); }

void mn__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

int64_t mn__dims_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

mn_tensor *mn__tensor_struct(mn_dtype dtype, int ndim, const int64_t *shape, const int64_t *strides,
                             int64_t offset, mn_storage *storage) {
    if (ndim < 0 || ndim > MN_MAX_DIMS) mn_fatal("tensor: %d dimensions (at most %d)", ndim, MN_MAX_DIMS);
    mn_tensor *t = calloc(1, sizeof(mn__tensor_obj));
    if (!t) mn_fatal("out of memory allocating a tensor");
    t->refcount = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->strides[i] = strides[i];
    }
    t->offset = offset;
    t->storage = storage;
    __atomic_add_fetch(&g_live_tensors, 1, __ATOMIC_RELAXED);
    return mn_autorelease(t);
}

static mn_tensor *empty(mn_dtype dtype, int ndim, const int64_t *shape, bool may_fail) {
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[96];
            mn_fatal("mn_empty: negative dimension in shape %s", mn__dims_str(ndim, shape, b));
        }
    }
    int64_t strides[MN_MAX_DIMS];
    if (ndim > MN_MAX_DIMS) mn_fatal("mn_empty: %d dimensions (at most %d)", ndim, MN_MAX_DIMS);
    mn__contiguous_strides(ndim, shape, strides);
    size_t nbytes = (size_t)mn__dims_numel(ndim, shape) * dtype_size(dtype);
    mn_storage *s = may_fail ? storage_try_new(nbytes) : mn__storage_new(nbytes);
    return s ? mn__tensor_struct(dtype, ndim, shape, strides, 0, s) : NULL;
}

mn_tensor *mn_empty_dtype(mn_dtype dtype, int ndim, const int64_t *shape) { return empty(dtype, ndim, shape, false); }
mn_tensor *mn_try_empty_dtype(mn_dtype dtype, int ndim, const int64_t *shape) {
    return empty(dtype, ndim, shape, true);
}

mn_tensor *mn_empty(int ndim, const int64_t *shape) { return mn_empty_dtype(MN_F32, ndim, shape); }

mn_tensor *mn_full(int ndim, const int64_t *shape, float value) {
    mn_tensor *t = mn_empty(ndim, shape);
    float *p = mn_data(t);
    int64_t n = mn_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = value;
    return t;
}

mn_tensor *mn_zeros(int ndim, const int64_t *shape) {
    mn_tensor *t = mn_empty(ndim, shape);
    memset(mn_data(t), 0, (size_t)mn_numel(t) * sizeof(float));
    return t;
}

mn_tensor *mn_ones(int ndim, const int64_t *shape) { return mn_full(ndim, shape, 1.0f); }
mn_tensor *mn_scalar(float value) { return mn_full(0, NULL, value); }
mn_tensor *mn_zeros_like(const mn_tensor *t) { return mn_zeros(t->ndim, t->shape); }
mn_tensor *mn_ones_like(const mn_tensor *t) { return mn_ones(t->ndim, t->shape); }
mn_tensor *mn_empty_like(const mn_tensor *t) { return mn_empty(t->ndim, t->shape); }

mn_tensor *mn_arange(float start, float stop, float step) {
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        mn_fatal("mn_arange: bad range start=%g stop=%g step=%g", start, stop, step);
    double span = ((double)stop - start) / step;
    int64_t n = span > 0 ? (int64_t)ceil(span) : 0;
    mn_tensor *t = mn_empty(1, &n);
    float *p = mn_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    return t;
}

mn_tensor *mn_from_data(int ndim, const int64_t *shape, const float *data) {
    mn_tensor *t = mn_empty(ndim, shape);
    memcpy(mn_data(t), data, (size_t)mn_numel(t) * sizeof(float));
    return t;
}

mn_tensor *mn_from_ints(int ndim, const int64_t *shape, const int32_t *data) {
    mn_tensor *t = mn_empty_dtype(MN_I32, ndim, shape);
    memcpy(mn_idata(t), data, (size_t)mn_numel(t) * sizeof(int32_t));
    return t;
}

static mn_rng g_rng = {0x6d6e656d6fULL, 0};

void mn_manual_seed(uint64_t seed) { g_rng = mn_rng_new(seed); }

mn_tensor *mn_rand_gen(mn_rng *g, int ndim, const int64_t *shape, float lo, float hi) {
    mn_tensor *t = mn_empty(ndim, shape);
    mn_rng_uniform(g, mn_numel(t), mn_data(t), lo, hi);
    return t;
}

mn_tensor *mn_randn_gen(mn_rng *g, int ndim, const int64_t *shape, float mean, float std) {
    mn_tensor *t = mn_empty(ndim, shape);
    mn_rng_normal(g, mn_numel(t), mn_data(t), mean, std);
    return t;
}

mn_tensor *mn_rand(int ndim, const int64_t *shape) { return mn_rand_gen(&g_rng, ndim, shape, 0.0f, 1.0f); }
mn_tensor *mn_randn(int ndim, const int64_t *shape) { return mn_randn_gen(&g_rng, ndim, shape, 0.0f, 1.0f); }

/* ---- inspection -------------------------------------------------------- */

int64_t mn_numel(const mn_tensor *t) { return mn__dims_numel(t->ndim, t->shape); }

int mn_norm_axis(const mn_tensor *t, int axis, const char *op) {
    int a = axis < 0 ? axis + t->ndim : axis;
    if (a < 0 || a >= t->ndim) {
        char b[96];
        mn_fatal("%s: axis %d out of range for shape %s", op, axis, mn_shape_str(t, b));
    }
    return a;
}

int64_t mn_size(const mn_tensor *t, int axis) { return t->shape[mn_norm_axis(t, axis, "mn_size")]; }

bool mn_is_contiguous(const mn_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool mn_same_shape(const mn_tensor *a, const mn_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

float *mn_data(const mn_tensor *t) {
    if (t->dtype != MN_F32) mn_fatal("mn_data: tensor is not float32");
    return (float *)t->storage->data + t->offset;
}

int32_t *mn_idata(const mn_tensor *t) {
    if (t->dtype != MN_I32) mn_fatal("mn_idata: tensor is not int32");
    return (int32_t *)t->storage->data + t->offset;
}

static int64_t elem_offset(const mn_tensor *t, const int64_t *index) {
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (index[i] < 0 || index[i] >= t->shape[i]) {
            char b[96];
            mn_fatal("mn_get: index %lld out of range in dim %d of shape %s", (long long)index[i], i,
                     mn_shape_str(t, b));
        }
        off += index[i] * t->strides[i];
    }
    return off;
}

float mn_get(const mn_tensor *t, const int64_t *index) {
    int64_t off = elem_offset(t, index);
    if (t->dtype == MN_I32) return (float)((int32_t *)t->storage->data)[off];
    return ((float *)t->storage->data)[off];
}

float mn_item(const mn_tensor *t) {
    if (mn_numel(t) != 1) {
        char b[96];
        mn_fatal("mn_item: tensor of shape %s has %lld elements, expected 1", mn_shape_str(t, b),
                 (long long)mn_numel(t));
    }
    int64_t zero[MN_MAX_DIMS] = {0};
    return mn_get(t, zero);
}

void mn_to_array(const mn_tensor *t, float *out) {
    int64_t n = mn_numel(t), idx[MN_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        out[k] = mn_get(t, idx);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

void mn_print(const mn_tensor *t, const char *label) {
    char b[96];
    int64_t n = mn_numel(t);
    printf("%s%s%s (%s%s):", label ? label : "", label ? " " : "", mn_shape_str(t, b),
           t->dtype == MN_I32 ? "i32" : "f32", t->requires_grad ? ", requires_grad" : "");
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
    mn_to_array(t, tmp);
    int64_t shown = n < 64 ? n : 64;
    for (int64_t i = 0; i < shown; i++) printf(" %.6g", tmp[i]);
    if (shown < n) printf(" ... (%lld more)", (long long)(n - shown));
    printf("\n");
    free(tmp);
}
