/* Fused kernels: one pass over memory where the composite ops would make
 * several. Autograd uses the backward ones when it is not recording (an
 * ordinary training step); recorded backward passes keep the composite
 * formulas, which define the same values up to float rounding. */
#include "tensor/gemm.h"
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/vecmath.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Rows of [rows, cols] handled per thread: parallel when the tensor is large. */
static bool rows_parallel(int64_t rows, int64_t cols) {
    return rows > 1 && rows * cols >= MN_PARALLEL_THRESHOLD && !omp_in_parallel() && omp_get_max_threads() > 1;
}

static void check_same(const mn_tensor *a, const mn_tensor *b, const char *op) {
    if (a->dtype != MN_F32 || b->dtype != MN_F32 || !mn_same_shape(a, b)) {
        char sa[96], sb[96];
        mn_fatal("%s: expected float32 tensors of one shape, got %s and %s", op, mn_shape_str(a, sa),
                 mn_shape_str(b, sb));
    }
}

/* ---- softmax family --------------------------------------------------------------------- */

static void softmax_backward_row(int64_t cols, const float *y, const float *g, float *o) {
    float s = (float)mn_vdot(cols, g, y);
    for (int64_t j = 0; j < cols; j++) o[j] = y[j] * (g[j] - s);
}

static void log_softmax_backward_row(int64_t cols, const float *y, const float *g, float *o) {
    float s = (float)mn_vsum(cols, g);
    mn_vexp(cols, y, o);
    for (int64_t j = 0; j < cols; j++) o[j] = g[j] - o[j] * s;
}

/* y, g [..., C] -> out[..., C], row by row */
static mn_tensor *row_backward(mn_tensor *y, mn_tensor *g, const char *op,
                               void (*row)(int64_t, const float *, const float *, float *)) {
    check_same(y, g, op);
    mn_scope sc = mn_scope_begin();
    mn_tensor *yc = mnt_contiguous(y), *gc = mnt_contiguous(g);
    mn_tensor *out = mn_empty_like(yc);
    int64_t cols = y->ndim ? y->shape[y->ndim - 1] : 1, rows = cols ? mn_numel(y) / cols : 0;
    const float *yp = mn_data(yc), *gp = mn_data(gc);
    float *op_ = mn_data(out);
    MN_PARALLEL_IF(rows_parallel(rows, cols), "omp parallel for schedule(static)",
                   for (int64_t r = 0; r < rows; r++) row(cols, yp + r * cols, gp + r * cols, op_ + r * cols););
    return mn_scope_return(sc, out);
}

/* y, g [..., C] -> y * (g - sum(g * y)) over the last dim */
mn_tensor *mnt_softmax_backward(mn_tensor *y, mn_tensor *g) {
    return row_backward(y, g, "softmax_backward", softmax_backward_row);
}

/* y = log_softmax(x), g [..., C] -> g - exp(y) * sum(g) over the last dim */
mn_tensor *mnt_log_softmax_backward(mn_tensor *y, mn_tensor *g) {
    return row_backward(y, g, "log_softmax_backward", log_softmax_backward_row);
}

typedef struct {
    const float *x, *mask;
    float *out;
    float scale;
    int nd;
    const int64_t *shape, *mask_strides;
} softmax_scaled_args;

static void softmax_scaled_row(const softmax_scaled_args *a, int64_t r) {
    int64_t cols = a->shape[a->nd - 1];
    const float *x = a->x + r * cols;
    float *o = a->out + r * cols;
    if (!a->mask) {
        for (int64_t j = 0; j < cols; j++) o[j] = a->scale * x[j];
    } else {
        int64_t off = 0, rem = r;
        for (int d = a->nd - 2; d >= 0; d--) {
            off += (rem % a->shape[d]) * a->mask_strides[d];
            rem /= a->shape[d];
        }
        const float *m = a->mask + off;
        if (a->mask_strides[a->nd - 1] == 1)
            for (int64_t j = 0; j < cols; j++) o[j] = a->scale * x[j] + m[j];
        else
            for (int64_t j = 0; j < cols; j++) o[j] = a->scale * x[j] + m[0];
    }
    mn_vsoftmax_rows(1, cols, o, o);
}

/* x [..., C], mask broadcastable to x or NULL -> softmax(scale * x + mask) over the last dim */
mn_tensor *mnt_softmax_scaled(mn_tensor *x, float scale, mn_tensor *mask) {
    char sx[96], sm[96];
    if (x->dtype != MN_F32 || x->ndim < 1) mn_fatal("softmax_scaled: expected a float32 tensor with dimensions");
    if (mask) {
        int64_t shape[MN_MAX_DIMS];
        int nd = mn_broadcast_shape(x, mask, shape, "softmax_scaled");
        bool ok = nd == x->ndim && mask->dtype == MN_F32;
        for (int d = 0; ok && d < nd; d++) ok = shape[d] == x->shape[d];
        if (!ok)
            mn_fatal("softmax_scaled: mask %s does not broadcast to scores %s", mn_shape_str(mask, sm),
                     mn_shape_str(x, sx));
    }
    mn_scope sc = mn_scope_begin();
    mn_tensor *xc = mnt_contiguous(x);
    mn_tensor *out = mn_empty_like(xc);
    int nd = x->ndim;
    int64_t cols = x->shape[nd - 1], rows = cols ? mn_numel(x) / cols : 0;
    int64_t ms[MN_MAX_DIMS] = {0};
    if (mask) {
        mn__broadcast_strides(mask, nd, x->shape, ms);
        if (ms[nd - 1] != 0 && ms[nd - 1] != 1) { /* rows of the mask must be contiguous or constant */
            mask = mnt_contiguous(mask);
            mn__broadcast_strides(mask, nd, x->shape, ms);
        }
    }
    softmax_scaled_args a = {mn_data(xc), mask ? mn_data(mask) : NULL, mn_data(out), scale, nd, x->shape, ms};
    MN_PARALLEL_IF(rows_parallel(rows, cols), "omp parallel for schedule(static)",
                   for (int64_t r = 0; r < rows; r++) softmax_scaled_row(&a, r););
    return mn_scope_return(sc, out);
}

/* ---- activations ----------------------------------------------------------------------------- */

enum { ACT_CHUNK = 2048 };

static void gelu_backward_chunk(int64_t len, const float *x, const float *g, float *o) {
    mn_vgelu_grad(len, x, o);
    for (int64_t i = 0; i < len; i++) o[i] *= g[i];
}

static void relu_backward_chunk(int64_t len, const float *x, const float *g, float *o) {
    for (int64_t i = 0; i < len; i++) o[i] = x[i] > 0 ? g[i] : 0.0f;
}

/* out = f(x, g) element-wise, chunk by chunk */
static mn_tensor *chunked_backward(mn_tensor *x, mn_tensor *g, const char *op,
                                   void (*chunk)(int64_t, const float *, const float *, float *)) {
    check_same(x, g, op);
    mn_scope sc = mn_scope_begin();
    mn_tensor *xc = mnt_contiguous(x), *gc = mnt_contiguous(g);
    mn_tensor *out = mn_empty_like(xc);
    int64_t n = mn_numel(x), chunks = (n + ACT_CHUNK - 1) / ACT_CHUNK;
    const float *xp = mn_data(xc), *gp = mn_data(gc);
    float *op_ = mn_data(out);
    MN_PARALLEL_IF(rows_parallel(chunks, ACT_CHUNK), "omp parallel for schedule(static)",
                   for (int64_t c = 0; c < chunks; c++) {
                       int64_t lo = c * ACT_CHUNK;
                       chunk(n - lo < ACT_CHUNK ? n - lo : ACT_CHUNK, xp + lo, gp + lo, op_ + lo);
                   });
    return mn_scope_return(sc, out);
}

/* g * gelu'(x): gelu'(x) never makes a pass of its own */
mn_tensor *mnt_gelu_backward(mn_tensor *x, mn_tensor *g) {
    return chunked_backward(x, g, "gelu_backward", gelu_backward_chunk);
}

/* x > 0 ? g : 0 */
mn_tensor *mnt_relu_backward(mn_tensor *x, mn_tensor *g) {
    return chunked_backward(x, g, "relu_backward", relu_backward_chunk);
}

/* ---- layer normalisation ---------------------------------------------------------------------- */

typedef struct {
    const float *x, *g, *w;
    float *dx;
    double *part; /* per thread: dw sums [C], then db sums [C] (NULL: not wanted) */
    float *scratch; /* per thread: xhat [C], gh [C] */
    int64_t rows, C;
    float eps;
} layernorm_bw_args;

/* rows [r0, r1) on behalf of thread t */
static void layernorm_bw_rows(const layernorm_bw_args *a, int t, int64_t r0, int64_t r1) {
    const int64_t C = a->C;
    float *xhat = a->scratch + (size_t)t * 2 * (size_t)C, *gh = xhat + C;
    double *pw = a->part ? a->part + (size_t)t * 2 * (size_t)C : NULL, *pb = pw ? pw + C : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = a->x + r * C, *gr = a->g + r * C;
        float rstd;
        mn_vlayernorm_rows(1, C, xr, NULL, NULL, a->eps, xhat, NULL, &rstd);
        if (pw)
            for (int64_t j = 0; j < C; j++) {
                pw[j] += (double)gr[j] * xhat[j];
                pb[j] += gr[j];
            }
        if (!a->dx) continue;
        double s_gh = 0, s_ghx = 0;
        for (int64_t j = 0; j < C; j++) {
            gh[j] = a->w ? gr[j] * a->w[j] : gr[j];
            s_gh += gh[j];
            s_ghx += (double)gh[j] * xhat[j];
        }
        float m_gh = (float)(s_gh / (double)C), m_ghx = (float)(s_ghx / (double)C);
        float *o = a->dx + r * C;
        for (int64_t j = 0; j < C; j++) o[j] = (gh[j] - m_gh - xhat[j] * m_ghx) * rstd;
    }
}

/* With xhat = (x - mean) rstd and gh = g w (statistics recomputed per row as the forward does):
 * dx = rstd (gh - mean(gh) - xhat mean(gh xhat)), dw = sum over rows of g xhat, db = sum of g.
 * Rows are split over threads; each thread sums dw and db over its rows in double and the
 * partial sums are added in thread order. */
void mnt_layernorm_backward(mn_tensor *x, mn_tensor *w, mn_tensor *g, float eps, mn_tensor **dx, mn_tensor **dw,
                            mn_tensor **db) {
    check_same(x, g, "layernorm_backward");
    int64_t C = x->ndim ? x->shape[x->ndim - 1] : 1, rows = C ? mn_numel(x) / C : 0;
    if (w && (w->ndim != 1 || w->shape[0] != C || w->dtype != MN_F32)) {
        char sw[96], sx[96];
        mn_fatal("layernorm_backward: weight %s must be [%lld] for input %s", mn_shape_str(w, sw), (long long)C,
                 mn_shape_str(x, sx));
    }
    mn_scope sc = mn_scope_begin();
    mn_tensor *xc = mnt_contiguous(x), *gc = mnt_contiguous(g), *wc = w ? mnt_contiguous(w) : NULL;
    mn_tensor *gx = dx ? mn_empty_like(xc) : NULL;
    mn_tensor *gw = dw ? mn_empty(MN_SHAPE(C)) : NULL, *gb = db ? mn_empty(MN_SHAPE(C)) : NULL;
    bool par = rows_parallel(rows, C), sums = dw || db;
    int nt = par ? omp_get_max_threads() : 1;
    layernorm_bw_args a = {mn_data(xc), mn_data(gc), wc ? mn_data(wc) : NULL, gx ? mn_data(gx) : NULL, NULL, NULL,
                           rows, C, eps};
    a.part = sums ? calloc((size_t)nt * 2 * (size_t)C, sizeof(double)) : NULL;
    a.scratch = malloc(sizeof(float) * 2 * (size_t)C * (size_t)nt);
    if ((sums && !a.part) || !a.scratch) mn_fatal("layernorm_backward: out of memory");
    if (par) {
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), n_t = omp_get_num_threads();
            layernorm_bw_rows(&a, t, rows * t / n_t, rows * (t + 1) / n_t);
        }
    } else {
        layernorm_bw_rows(&a, 0, 0, rows);
    }
    if (sums) {
        float *gwp = gw ? mn_data(gw) : NULL, *gbp = gb ? mn_data(gb) : NULL;
        for (int64_t j = 0; j < C; j++) {
            double sw = 0, sb = 0;
            for (int t = 0; t < nt; t++) {
                sw += a.part[(size_t)t * 2 * (size_t)C + j];
                sb += a.part[(size_t)t * 2 * (size_t)C + C + j];
            }
            if (gwp) gwp[j] = (float)sw;
            if (gbp) gbp[j] = (float)sb;
        }
    }
    free(a.part);
    free(a.scratch);
    mn_retain(gx);
    mn_retain(gw);
    mn_retain(gb);
    mn_scope_end(sc);
    if (dx) *dx = mn_autorelease(gx);
    if (dw) *dw = mn_autorelease(gw);
    if (db) *db = mn_autorelease(gb);
}

/* ---- linear layer -------------------------------------------------------------------------------- */

/* x [..., in], w [out, in], b [out] or NULL -> x w^T + b [..., out]: the GEMM adds the bias as it
 * stores each tile, so adding it costs no pass of its own */
mn_tensor *mnt_dense(mn_tensor *x, mn_tensor *w, mn_tensor *b) {
    char sx[96], sw[96], sb[96];
    bool ok = x->dtype == MN_F32 && w->dtype == MN_F32 && x->ndim >= 1 && w->ndim == 2 &&
              x->shape[x->ndim - 1] == w->shape[1] &&
              (!b || (b->dtype == MN_F32 && b->ndim == 1 && b->shape[0] == w->shape[0]));
    if (!ok)
        mn_fatal("dense: expected float32 x [..., in], weight [out, in] and bias [out]; got %s, %s and %s",
                 mn_shape_str(x, sx), mn_shape_str(w, sw), b ? mn_shape_str(b, sb) : "none");
    int64_t in = w->shape[1], out = w->shape[0], rows = in ? mn_numel(x) / in : 0;
    if (in == 0) rows = mn__dims_numel(x->ndim - 1, x->shape);
    mn_scope sc = mn_scope_begin();
    mn_tensor *xc = mnt_contiguous(x), *wc = mnt_contiguous(w), *bc = b ? mnt_contiguous(b) : NULL;
    int64_t shape[MN_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = out;
    mn_tensor *y = mn_empty(x->ndim, shape);
    mn_sgemm_bias(false, true, rows, out, in, 1.0f, mn_data(xc), in > 0 ? in : 1, mn_data(wc), in > 0 ? in : 1, 0.0f,
                  bc ? mn_data(bc) : NULL, mn_data(y), out > 0 ? out : 1);
    return mn_scope_return(sc, y);
}

/* ---- cross-entropy --------------------------------------------------------------------------------- */

typedef struct {
    const float *x;
    const int32_t *t;
    int64_t C;
    int ignore_index;
    float ls, scale;
    float *out;   /* backward: [N, C] */
    double *loss; /* forward: per-row loss (0 for ignored rows) */
    float *scratch; /* forward: a row per thread */
} xent_args;

/* forward row: -(1 - ls) logp[t] - (ls / C) sum_c logp[c] */
static void xent_row(const xent_args *a, int64_t r, float *logp) {
    int32_t t = a->t[r];
    if (t == a->ignore_index) {
        a->loss[r] = 0;
        return;
    }
    mn_vlogsoftmax_rows(1, a->C, a->x + r * a->C, logp);
    double l = -(1.0 - a->ls) * logp[t];
    if (a->ls > 0) l -= a->ls / (double)a->C * mn_vsum(a->C, logp);
    a->loss[r] = l;
}

/* backward row: scale (softmax - (1 - ls) onehot(t) - ls / C), zero for ignored rows */
static void xent_backward_row(const xent_args *a, int64_t r) {
    const int64_t C = a->C;
    float *o = a->out + r * C;
    int32_t t = a->t[r];
    if (t == a->ignore_index) {
        memset(o, 0, sizeof(float) * (size_t)C);
        return;
    }
    mn_vsoftmax_rows(1, C, a->x + r * C, o);
    const float shift = a->ls / (float)C, s = a->scale;
    for (int64_t j = 0; j < C; j++) o[j] = s * (o[j] - shift);
    o[t] -= s * (1.0f - a->ls);
}

static const int32_t *xent_targets(mn_tensor *logits, mn_tensor *targets, int ignore_index, mn_tensor **hold) {
    char sl[96], st[96];
    if (logits->dtype != MN_F32 || logits->ndim != 2 || targets->dtype != MN_I32 || targets->ndim != 1 ||
        targets->shape[0] != logits->shape[0])
        mn_fatal("cross_entropy: expected float32 logits [N, C] and int32 targets [N], got %s and %s",
                 mn_shape_str(logits, sl), mn_shape_str(targets, st));
    *hold = mnt_contiguous(targets);
    const int32_t *t = mn_idata(*hold);
    int64_t C = logits->shape[1];
    for (int64_t i = 0; i < targets->shape[0]; i++)
        if (t[i] != ignore_index && (t[i] < 0 || t[i] >= C))
            mn_fatal("cross_entropy: target %d at row %lld is outside [0, %lld) and not ignore_index %d", t[i],
                     (long long)i, (long long)C, ignore_index);
    return t;
}

/* logits [N, C], targets int32 [N] -> scalar mean over the rows whose target is not ignore_index
 * (0 when none is); *counted (may be NULL) receives their number. No [N, C] tensor is made. */
mn_tensor *mnt_cross_entropy(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing,
                             int64_t *counted) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *hold;
    const int32_t *t = xent_targets(logits, targets, ignore_index, &hold);
    mn_tensor *xc = mnt_contiguous(logits);
    int64_t N = logits->shape[0], C = logits->shape[1], n_counted = 0;
    for (int64_t i = 0; i < N; i++) n_counted += t[i] != ignore_index;
    bool par = rows_parallel(N, C);
    int nt = par ? omp_get_max_threads() : 1;
    xent_args a = {mn_data(xc), t, C, ignore_index, label_smoothing, 0, NULL, NULL, NULL};
    a.loss = malloc(sizeof(double) * (size_t)(N + 1));
    a.scratch = malloc(sizeof(float) * (size_t)(C + 1) * (size_t)nt);
    if (!a.loss || !a.scratch) mn_fatal("cross_entropy: out of memory");
    if (par) {
#pragma omp parallel num_threads(nt)
        {
            float *row = a.scratch + (size_t)omp_get_thread_num() * (size_t)(C + 1);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < N; r++) xent_row(&a, r, row);
        }
    } else {
        for (int64_t r = 0; r < N; r++) xent_row(&a, r, a.scratch);
    }
    double total = 0; /* summed in row order: the same at any thread count */
    for (int64_t r = 0; r < N; r++) total += a.loss[r];
    free(a.loss);
    free(a.scratch);
    mn_tensor *loss = mn_scalar(n_counted ? (float)(total / (double)n_counted) : 0.0f);
    if (counted) *counted = n_counted;
    return mn_scope_return(sc, loss);
}

/* d mnt_cross_entropy / d logits, times scale (the incoming gradient divided by the count) -> [N, C] */
mn_tensor *mnt_cross_entropy_backward(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing,
                                      float scale) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *hold;
    const int32_t *t = xent_targets(logits, targets, ignore_index, &hold);
    mn_tensor *xc = mnt_contiguous(logits);
    mn_tensor *out = mn_empty_like(xc);
    int64_t N = logits->shape[0], C = logits->shape[1];
    xent_args a = {mn_data(xc), t, C, ignore_index, label_smoothing, scale, mn_data(out), NULL, NULL};
    MN_PARALLEL_IF(rows_parallel(N, C), "omp parallel for schedule(static)",
                   for (int64_t r = 0; r < N; r++) xent_backward_row(&a, r););
    return mn_scope_return(sc, out);
}

/* ---- output projection fused with cross-entropy ------------------------------------------------------ */

enum { DXENT_CHUNK = 256 }; /* rows of logits alive at a time */

/* Rows [r0, r0 + n) of h: logits = h w^T + b into buf [n, V], then per row the loss and, when
 * grads are wanted, the logits' gradient (softmax - target distribution) * scale, in place. */
static void dense_xent_chunk(const float *h, const float *w, const float *b, const int32_t *t, int64_t n, int64_t H,
                             int64_t V, int ignore_index, float ls, float scale, bool grads, float *buf,
                             double *loss) {
    mn_sgemm_bias(false, true, n, V, H, 1.0f, h, H, w, H, 0.0f, b, buf, V);
    MN_PARALLEL_IF(rows_parallel(n, V), "omp parallel for schedule(static)", for (int64_t r = 0; r < n; r++) {
        float *row = buf + r * V;
        if (t[r] == ignore_index) {
            loss[r] = 0;
            if (grads) memset(row, 0, sizeof(float) * (size_t)V);
            continue;
        }
        mn_vlogsoftmax_rows(1, V, row, row);
        double l = -(1.0 - ls) * row[t[r]];
        if (ls > 0) l -= ls / (double)V * mn_vsum(V, row);
        loss[r] = l;
        if (!grads) continue;
        mn_vexp(V, row, row);
        const float shift = ls / (float)V;
        for (int64_t j = 0; j < V; j++) row[j] = scale * (row[j] - shift);
        row[t[r]] -= scale * (1.0f - ls);
    });
}

mn_tensor *mnt_dense_cross_entropy(mn_tensor *h, mn_tensor *w, mn_tensor *b, mn_tensor *targets, int ignore_index,
                                   float label_smoothing, int64_t *counted, mn_tensor **dh, mn_tensor **dw,
                                   mn_tensor **db) {
    char sh[96], sw[96], st[96];
    bool ok = h->dtype == MN_F32 && w->dtype == MN_F32 && h->ndim == 2 && w->ndim == 2 && h->shape[1] == w->shape[1] &&
              (!b || (b->dtype == MN_F32 && b->ndim == 1 && b->shape[0] == w->shape[0]));
    if (!ok)
        mn_fatal("dense_cross_entropy: expected float32 h [N, H], weight [V, H] and bias [V]; got %s, %s and %s",
                 mn_shape_str(h, sh), mn_shape_str(w, sw), b ? mn_shape_str(b, st) : "none");
    int64_t N = h->shape[0], H = h->shape[1], V = w->shape[0];
    mn_scope sc = mn_scope_begin();
    mn_tensor *hold;
    mn_tensor logits_shape = {.dtype = MN_F32, .ndim = 2, .shape = {N, V}};
    const int32_t *t = xent_targets(&logits_shape, targets, ignore_index, &hold);
    mn_tensor *hc = mnt_contiguous(h), *wc = mnt_contiguous(w), *bc = b ? mnt_contiguous(b) : NULL;
    int64_t n_counted = 0;
    for (int64_t i = 0; i < N; i++) n_counted += t[i] != ignore_index;
    bool grads = dh || dw || db;
    float scale = 1.0f / (float)(n_counted ? n_counted : 1);
    mn_tensor *gh = dh ? mn_empty(MN_SHAPE(N, H)) : NULL, *gw = dw ? mn_zeros(MN_SHAPE(V, H)) : NULL;
    mn_tensor *gb = db ? mn_empty(MN_SHAPE(V)) : NULL;
    double *gbsum = db ? calloc((size_t)V, sizeof(double)) : NULL;
    int64_t chunk = N < DXENT_CHUNK ? (N > 0 ? N : 1) : DXENT_CHUNK;
    float *buf = malloc(sizeof(float) * (size_t)(chunk * V));
    double *loss = malloc(sizeof(double) * (size_t)(N + 1));
    if (!buf || !loss || (db && !gbsum)) mn_fatal("dense_cross_entropy: out of memory");
    const float *hp = mn_data(hc), *wp = mn_data(wc), *bp = bc ? mn_data(bc) : NULL;
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        int64_t n = N - r0 < chunk ? N - r0 : chunk;
        dense_xent_chunk(hp + r0 * H, wp, bp, t + r0, n, H, V, ignore_index, label_smoothing, scale, grads, buf,
                         loss + r0);
        if (gh) mn_sgemm(false, false, n, H, V, 1.0f, buf, V, wp, H, 0.0f, mn_data(gh) + r0 * H, H);
        if (gw) mn_sgemm(true, false, V, H, n, 1.0f, buf, V, hp + r0 * H, H, 1.0f, mn_data(gw), H);
        if (gbsum) {
            int64_t blocks = (V + 1023) / 1024;
            MN_PARALLEL_IF(rows_parallel(blocks, 1024 * n), "omp parallel for schedule(static)",
                           for (int64_t c = 0; c < blocks; c++) {
                               int64_t j1 = (c + 1) * 1024 < V ? (c + 1) * 1024 : V;
                               for (int64_t r = 0; r < n; r++)
                                   for (int64_t j = c * 1024; j < j1; j++) gbsum[j] += buf[r * V + j];
                           });
        }
    }
    if (gb)
        for (int64_t j = 0; j < V; j++) mn_data(gb)[j] = (float)gbsum[j];
    double total = 0;
    for (int64_t r = 0; r < N; r++) total += loss[r];
    free(buf);
    free(loss);
    free(gbsum);
    mn_tensor *y = mn_scalar(n_counted ? (float)(total / (double)n_counted) : 0.0f);
    if (counted) *counted = n_counted;
    mn_retain(gh);
    mn_retain(gw);
    mn_retain(gb);
    y = mn_scope_return(sc, y);
    if (dh) *dh = mn_autorelease(gh);
    if (dw) *dw = mn_autorelease(gw);
    if (db) *db = mn_autorelease(gb);
    return y;
}
