/* Block kernels of the fused learned-optimizer step (see learned_fast.h), written once and compiled
 * per ISA: a file defines LF_ISA (scalar, avx2, avx512) and includes this header, which defines
 * lf_kernels_<LF_ISA>. Buffers are [rows][W] (a column per coordinate or HPE slot), except the
 * LSTM's, which keeps its state's layout (a row per coordinate). Each kernel computes what the
 * graph path's ops compute, to float rounding (sums may run in another order). Every dense product
 * goes through one register-tiled micro-kernel (mk_run) in the ISA's native vectors; exp, GELU and
 * sigmoid are inline vector functions of their own (tested against libm), log comes from
 * tensor/vecmath.h (the LSTM forms tanh from sigmoid). */
#ifndef LF_ISA
#error "define LF_ISA before including learned_fast_kernels.h"
#endif

#include "lopt/learned_fast.h"
#include "tensor/vecmath.h"

#include <math.h>
#include <string.h>

#define LF_CAT_(a, b) a##b
#define LF_CAT(a, b) LF_CAT_(a, b)

/* Native vectors: NV floats (16 with AVX-512, 8 with AVX2, 4 for the SSE2 baseline); a buffer
 * row (a multiple of LF_VEC columns) is a whole number of them. */
#if defined(__AVX512F__)
#define NV 16
#elif defined(__AVX2__)
#define NV 8
#else
#define NV 4
#endif
typedef float vf __attribute__((vector_size(NV * 4), may_alias));

#if NV == 16
#include <immintrin.h>
static inline __attribute__((always_inline)) vf fmav(vf a, vf b, vf c) { return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c); }
#elif NV == 8
#include <immintrin.h>
static inline __attribute__((always_inline)) vf fmav(vf a, vf b, vf c) { return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
#else
static inline __attribute__((always_inline)) vf fmav(vf a, vf b, vf c) { return a * b + c; }
#endif

typedef int32_t vi __attribute__((vector_size(NV * 4), may_alias));

/* m ? a : b lane by lane (m all ones or all zeros); a comparison leaves NaN lanes to the else side */
static inline __attribute__((always_inline)) vf vsel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* x in every lane ((vf){0} + x would be a scalar add first: 0 + -0 is +0) */
static inline __attribute__((always_inline)) vf vbroadcast(float x) {
#if NV == 16
    return (vf)_mm512_set1_ps(x);
#elif NV == 8
    return (vf)_mm256_set1_ps(x);
#else
    vf r;
    for (int l = 0; l < NV; l++) r[l] = x;
    return r;
#endif
}

/* correctly rounded square root (sqrtf itself stays scalar: it may set errno) */
static inline __attribute__((always_inline)) vf vsqrt(vf x) {
#if NV == 16
    return (vf)_mm512_sqrt_ps((__m512)x);
#elif NV == 8
    return (vf)_mm256_sqrt_ps((__m256)x);
#else
    vf r = {0};
    for (int l = 0; l < NV; l++) r[l] = __builtin_sqrtf(x[l]);
    return r;
#endif
}

/* e^x to about 2 ulp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n ln2 is exact), a
 * degree-6 fit of e^r (relative error 2e-9) times 2^n from the exponent bits. x is clamped to
 * [-87, 88] first, so e^x never overflows and tiny results are about 1.6e-38 instead of smaller or
 * zero (an absolute difference far below any rounding this step sees); NaN stays NaN. */
static inline __attribute__((always_inline)) vf vexp_f(vf x) {
    x = vsel(x < -87.0f, vbroadcast(-87.0f), x);
    x = vsel(x > 88.0f, vbroadcast(88.0f), x);
    const vf magic = vbroadcast(12582912.0f); /* 1.5 2^23: adding it rounds to an integer */
    vf k = fmav(x, vbroadcast(1.44269504f), magic), n = k - magic;
    vf r = fmav(n, vbroadcast(-0.693359375f), x);
    r = fmav(n, vbroadcast(2.12194440e-4f), r);
    vf p = vbroadcast(1.394110848e-03f);
    p = fmav(p, r, vbroadcast(8.375125937e-03f));
    p = fmav(p, r, vbroadcast(4.166635126e-02f));
    p = fmav(p, r, vbroadcast(1.666641533e-01f));
    p = fmav(p, r, vbroadcast(0.5f));
    p = fmav(p, r, vbroadcast(1.0f));
    p = fmav(p, r, vbroadcast(1.0f));
    vi scale = ((vi)k - 0x4B400000 + 127) << 23;
    return p * (vf)scale;
}

/* Phi's tail Q(a) = Phi(-a) on [0, 6) in 8 intervals of 0.75: a degree-6 fit about each centre
 * (error 6e-11; 8e-8 after float evaluation of a Q(a)), Q = 0 from 6 on (a Q(a) < 6e-9 there).
 * Row j holds the coefficient of w^(6 - j) per interval, padded to 16 so AVX-512 permutes whole
 * vectors. */
static const float gelu_center[16] __attribute__((aligned(64))) = {0.375f, 1.125f, 1.875f, 2.625f, 3.375f, 4.125f,
                                                                   4.875f, 5.625f};
static const float gelu_poly[7][16] __attribute__((aligned(64))) = {
    {2.560715657e-03f, 1.300474978e-03f, -1.359145157e-03f, -3.082910553e-04f, 1.895343448e-04f, 6.305719580e-05f, 6.711823062e-06f, 3.200511003e-07f},
    {-6.582456175e-03f, 5.079869181e-03f, 3.281391459e-03f, -9.133665590e-04f, -7.213655044e-04f, -1.330590458e-04f, -1.059065562e-05f, -4.140498504e-07f},
    {-1.660833508e-02f, -1.722491346e-02f, 2.768303966e-03f, 5.415323656e-03f, 1.582734636e-03f, 1.939431386e-04f, 1.160153261e-05f, 3.588200741e-07f},
    {5.324925110e-02f, -9.365770034e-03f, -2.883966453e-02f, -1.249612123e-02f, -2.322404413e-03f, -2.146157349e-04f, -1.039841300e-05f, -2.708794113e-07f},
    {6.972273439e-02f, 1.191806048e-01f, 6.448718160e-02f, 1.670047641e-02f, 2.263132716e-03f, 1.661159622e-04f, 6.718016266e-06f, 1.511550636e-07f},
    {-3.718549013e-01f, -2.118768990e-01f, -6.878628582e-02f, -1.272411365e-02f, -1.341120689e-03f, -8.054692444e-05f, -2.756970844e-06f, -5.379444090e-08f},
    {3.538302481e-01f, 1.302945167e-01f, 3.039636090e-02f, 4.332448356e-03f, 3.690784506e-04f, 1.853673712e-05f, 5.440422797e-07f, 9.275399115e-09f},
};

/* table[idx] per lane (idx in 0 .. 7) */
static inline __attribute__((always_inline)) vf lookup8(const float *table, vi idx) {
#if NV == 16
    return (vf)_mm512_permutexvar_ps((__m512i)idx, *(const __m512 *)table);
#elif NV == 8
    return (vf)_mm256_permutevar8x32_ps(*(const __m256 *)table, (__m256i)idx);
#else
    vf r = {0};
    for (int l = 0; l < NV; l++) r[l] = table[idx[l]];
    return r;
#endif
}

/* max(x, 0) lane by lane, NaN staying NaN (maxps returns its second operand when either is NaN) */
static inline __attribute__((always_inline)) vf vmax0(vf x) {
#if NV == 16
    return (vf)_mm512_max_ps(_mm512_setzero_ps(), (__m512)x);
#elif NV == 8
    return (vf)_mm256_max_ps(_mm256_setzero_ps(), (__m256)x);
#else
    return vsel(x < 0.0f, vbroadcast(0.0f), x);
#endif
}

/* Exact GELU x Phi(x) to float rounding (absolute error below 1e-7 up to |gelu| = 1, relative
 * beyond): with a = |x|, gelu(x) = max(x, 0) - a Q(a), Q from the piecewise fit above (no
 * exponential, no division: several times cheaper than erf). a >= 6, inf and NaN take a = 0 in
 * the fit, so a Q(a) is 0 there and max(x, 0) the result (NaN for NaN). */
static inline __attribute__((always_inline)) vf vgelu_f(vf x) {
    vf a = (vf)((vi)x & 0x7fffffff);
    vf as = vsel(a < 6.0f, a, vbroadcast(0.0f));
    vi idx = __builtin_convertvector(as * (4.0f / 3.0f), vi); /* truncates: 0 .. 7 for as < 6 */
    vf w = as - lookup8(gelu_center, idx);
    vf q = lookup8(gelu_poly[0], idx);
    for (int j = 1; j < 7; j++) q = fmav(q, w, lookup8(gelu_poly[j], idx));
    return vmax0(x) - as * q;
}

/* vgelu_f over 4 vectors in place, stage by stage: the four Horner chains interleave instead of
 * running one after another (each is some 40 cycles of latency) */
static inline __attribute__((always_inline)) void vgelu_f4(float *p) {
    vf x[4], as[4], w[4], q[4];
    vi idx[4];
    for (int u = 0; u < 4; u++) {
        x[u] = *(const vf *)(p + u * NV);
        vf a = (vf)((vi)x[u] & 0x7fffffff);
        as[u] = vsel(a < 6.0f, a, vbroadcast(0.0f));
        idx[u] = __builtin_convertvector(as[u] * (4.0f / 3.0f), vi);
        w[u] = as[u] - lookup8(gelu_center, idx[u]);
        q[u] = lookup8(gelu_poly[0], idx[u]);
    }
    for (int j = 1; j < 7; j++)
        for (int u = 0; u < 4; u++) q[u] = fmav(q[u], w[u], lookup8(gelu_poly[j], idx[u]));
    for (int u = 0; u < 4; u++) *(vf *)(p + u * NV) = vmax0(x[u]) - as[u] * q[u];
}

/* 1 / (1 + e^-x) */
static inline __attribute__((always_inline)) vf vsigmoid_f(vf x) { return vbroadcast(1.0f) / (vbroadcast(1.0f) + vexp_f(-x)); }

/* f over n floats in place: whole vectors, the tail through a padded one */
#define LF_ROWS_OP(name, f)                                                                                    \
    static void name(size_t n, float *x) {                                                                     \
        size_t i = 0;                                                                                          \
        for (; i + 4 * NV <= n; i += 4 * NV) { /* four independent chains: the latency overlaps */          \
            vf a = f(*(const vf *)(x + i)), b = f(*(const vf *)(x + i + NV));                                  \
            vf c = f(*(const vf *)(x + i + 2 * NV)), d = f(*(const vf *)(x + i + 3 * NV));                     \
            *(vf *)(x + i) = a, *(vf *)(x + i + NV) = b, *(vf *)(x + i + 2 * NV) = c, *(vf *)(x + i + 3 * NV) = d; \
        }                                                                                                      \
        for (; i + NV <= n; i += NV) *(vf *)(x + i) = f(*(const vf *)(x + i));                                 \
        if (i < n) {                                                                                           \
            float buf[NV] __attribute__((aligned(NV * 4))) = {0};                                              \
            memcpy(buf, x + i, sizeof(float) * (n - i));                                                       \
            *(vf *)buf = f(*(const vf *)buf);                                                                  \
            memcpy(x + i, buf, sizeof(float) * (n - i));                                                       \
        }                                                                                                      \
    }
LF_ROWS_OP(exp_rows, vexp_f)
static void gelu_rows(size_t n, float *x) {
    size_t i = 0;
    for (; i + 4 * NV <= n; i += 4 * NV) vgelu_f4(x + i);
    for (; i + NV <= n; i += NV) *(vf *)(x + i) = vgelu_f(*(const vf *)(x + i));
    if (i < n) {
        float buf[NV] __attribute__((aligned(NV * 4))) = {0};
        memcpy(buf, x + i, sizeof(float) * (n - i));
        *(vf *)buf = vgelu_f(*(const vf *)buf);
        memcpy(x + i, buf, sizeof(float) * (n - i));
    }
}
LF_ROWS_OP(sigmoid_rows, vsigmoid_f)
#undef LF_ROWS_OP

/* Register tile of the micro-kernel: TR rows of broadcast operands times TV vectors (AVX-512 has
 * 32 vector registers, AVX2 and SSE2 16: the accumulators and the TV loaded vectors fill them, the
 * broadcast operand is an FMA memory operand or a spare register; 3 x 4 measured best on AVX2). */
#if NV == 16
#define TR 4
#define TV 4
#else
#define TR 3
#define TV 4
#endif

/* The one dense product of the fused steps: C(r, v) = init + sum_k A(r, k) B(k, v), a row r of C
 * being nv vectors at C + r crs, A(r, k) = A[r ars + k aks] broadcast, B(k, .) the vectors at
 * B + k bks. init: C itself (acc), else bias_row[r] broadcast, else bias_vec's vectors, else 0.
 * Both layouts use it: structure-of-arrays products (A the weights, B and C rows of columns) and
 * the LSTM's rows of gates (A the inputs per coordinate, B the transposed weights). */
typedef struct {
    int K;
    const float *A;
    size_t ars, aks;
    const float *B;
    size_t bks;
    float *C;
    size_t crs;
    const float *bias_row, *bias_vec;
    bool acc;
} mk_args;

static inline __attribute__((always_inline)) void mk_tile(const mk_args *m, int r0, int v0, const int R,
                                                          const int V) {
    vf sum[TR > 4 ? TR : 4][TV > 5 ? TV : 5];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            const float *c = m->C + (size_t)(r0 + r) * m->crs + (size_t)(v0 + v) * NV;
            if (m->acc) sum[r][v] = *(const vf *)c;
            else if (m->bias_row) sum[r][v] = vbroadcast(m->bias_row[r0 + r]);
            else if (m->bias_vec) sum[r][v] = *(const vf *)(m->bias_vec + (size_t)(v0 + v) * NV);
            else sum[r][v] = (vf){0};
        }
    const float *a = m->A + (size_t)r0 * m->ars, *b = m->B + (size_t)v0 * NV;
    for (int k = 0; k < m->K; k++) {
        vf bv[TV > 5 ? TV : 5];
        for (int v = 0; v < V; v++) bv[v] = *(const vf *)(b + (size_t)k * m->bks + (size_t)v * NV);
        for (int r = 0; r < R; r++) {
            vf av = vbroadcast(a[(size_t)r * m->ars + (size_t)k * m->aks]);
            for (int v = 0; v < V; v++) sum[r][v] = fmav(av, bv[v], sum[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) *(vf *)(m->C + (size_t)(r0 + r) * m->crs + (size_t)(v0 + v) * NV) = sum[r][v];
}

/* rows x nv vectors of C in TR x TV tiles (edges in smaller ones, all sizes constant once inlined) */
static void mk_run(const mk_args *m, int rows, int nv) {
#if NV == 8
    if (nv % 5 == 0) { /* the LSTM's 80 gates: 2 x 5 tiles use all of a 10-vector row */
        int r0 = 0;
        for (; r0 + 2 <= rows; r0 += 2)
            for (int v0 = 0; v0 < nv; v0 += 5) mk_tile(m, r0, v0, 2, 5);
        for (; r0 < rows; r0++)
            for (int v0 = 0; v0 < nv; v0 += 5) mk_tile(m, r0, v0, 1, 5);
        return;
    }
#endif
    int r0 = 0;
#if NV == 8
    if (rows % 4 == 0) { /* (d = 8 rows, FFN widths): 4 x 3 tiles leave no 1-row tiles */
        for (; r0 < rows; r0 += 4) {
            int v0 = 0;
            for (; v0 + 3 <= nv; v0 += 3) mk_tile(m, r0, v0, 4, 3);
            if (nv - v0 == 2) mk_tile(m, r0, v0, 4, 2);
            else if (nv - v0 == 1) mk_tile(m, r0, v0, 4, 1);
        }
        return;
    }
#endif
    for (; r0 + TR <= rows; r0 += TR) {
        int v0 = 0;
        for (; v0 + TV <= nv; v0 += TV) mk_tile(m, r0, v0, TR, TV);
        for (; v0 + 2 <= nv; v0 += 2) mk_tile(m, r0, v0, TR, 2); /* (the LSTM's 10-vector rows) */
        for (; v0 < nv; v0++) mk_tile(m, r0, v0, TR, 1);
    }
    if (rows - r0 == 2) { /* (the head's two outputs) */
        int v0 = 0;
        for (; v0 + TV <= nv; v0 += TV) mk_tile(m, r0, v0, 2, TV);
        for (; v0 < nv; v0++) mk_tile(m, r0, v0, 2, 1);
        return;
    }
    for (; r0 < rows; r0++) {
        int v0 = 0;
        for (; v0 + TV <= nv; v0 += TV) mk_tile(m, r0, v0, 1, TV);
        for (; v0 < nv; v0++) mk_tile(m, r0, v0, 1, 1);
    }
}

/* A bump allocator over the scratch rows. */
typedef struct {
    float *next, *end;
    int W;
} arena;

static float *take(arena *a, int rows) {
    float *r = a->next;
    a->next += (size_t)rows * (size_t)a->W;
    if (a->next > a->end) mn_fatal("learned optimizer fast step: scratch too small (internal error)");
    return r;
}

/* Y = W X + b over W columns: w row-major with row stride ldw (its first `in` columns used). */
static void linear(int W, const float *w, int ldw, const float *b, int out, int in, const float *X, float *Y) {
    mk_args m = {.K = in, .A = w, .ars = (size_t)ldw, .aks = 1, .B = X, .bks = (size_t)W, .C = Y, .crs = (size_t)W,
                 .bias_row = b};
    mk_run(&m, out, W / NV);
}

static void apply_linear(int W, const lf_linear *l, const float *X, float *Y) {
    linear(W, l->w, l->in, l->b, l->out, l->in, X, Y);
}

/* LayerNorm over the d rows of each column: (x - mean) rstd w + b with the biased variance */
static void layer_norm(arena *a, int d, const lf_norm *ln, const float *X, float *Y) {
    int W = a->W;
    for (int c = 0; c < W; c += NV) {
        vf mean = {0}, var = {0};
        for (int i = 0; i < d; i++) mean += *(const vf *)(X + (size_t)i * W + c);
        mean /= (float)d;
        for (int i = 0; i < d; i++) {
            vf t = *(const vf *)(X + (size_t)i * W + c) - mean;
            var = fmav(t, t, var);
        }
        vf rstd = vbroadcast(1.0f) / vsqrt(var / (float)d + ln->eps);
        for (int i = 0; i < d; i++)
            *(vf *)(Y + (size_t)i * W + c) =
                fmav((*(const vf *)(X + (size_t)i * W + c) - mean) * rstd, vbroadcast(ln->w[i]), vbroadcast(ln->b[i]));
    }
}

static void add_rows(size_t n, const float *x, const float *y, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

/* (fmaxf is a library call unless NaNs are ruled out; a comparison vectorises) */
static inline float max2(float a, float b) { return b > a ? b : a; }

/* Reductions over a run of n floats kept in LF_VEC lanes (lane l takes elements l, l + LF_VEC, ..),
 * so the loops vectorise (lane_max leaves the lanes to its caller). */
static void lane_max(float *lanes, const float *x, int n) {
    int i = 0;
    for (; i + LF_VEC <= n; i += LF_VEC)
        for (int l = 0; l < LF_VEC; l++) lanes[l] = max2(lanes[l], x[i + l]);
    for (int l = 0; i + l < n; l++) lanes[l] = max2(lanes[l], x[i + l]);
}

static float lane_dot(const float *x, const float *y, int n) {
    float lanes[LF_VEC] = {0};
    int i = 0;
    for (; i + LF_VEC <= n; i += LF_VEC)
        for (int l = 0; l < LF_VEC; l++) lanes[l] += x[i + l] * y[i + l];
    for (int l = 0; i + l < n; l++) lanes[l] += x[i + l] * y[i + l];
    float sum = 0.0f;
    for (int l = 0; l < LF_VEC; l++) sum += lanes[l];
    return sum;
}

/* n floats at p as a vector, zeros past them (n < NV: the block's last columns) */
static inline __attribute__((always_inline)) vf load_upto(const float *p, int n) {
    vf r = {0};
    memcpy(&r, p, sizeof(float) * (size_t)(n < NV ? n : NV));
    return r;
}

static inline __attribute__((always_inline)) void store_upto(float *p, int n, vf x) {
    memcpy(p, &x, sizeof(float) * (size_t)(n < NV ? n : NV));
}

/* The input features (the preprocessed gradient: log|g| / p and sign(g) when |g| >= e^-p, else -1
 * and g e^p; extended: Adam's g / sqrt(v^ + eps) and m^ / sqrt(v^ + eps) with the advanced
 * moments) -> x [F][W]; columns past n see g = 0 and zero moments. Advances the moments into
 * gb->m_out, gb->v_out when those are set. */
static void features(const lf_net *net, int W, int n, const lf_grad_block *gb, float *x) {
    const mn_lopt_config *cfg = &net->cfg;
    float *f1 = x, *f2 = x + W;
    /* g padded with zeros to W columns, kept in the last row: each column's features are written
     * after its g is read */
    float *g = x + (size_t)(net->F - 1) * W;
    memcpy(g, gb->g, sizeof(float) * (size_t)n);
    memset(g + n, 0, sizeof(float) * (size_t)(W - n));
    const vf thr = vbroadcast(net->threshold), one = vbroadcast(1.0f), zero = {0};
    for (int c = 0; c < W; c += NV) {
        vf a = (vf)((vi) * (const vf *)(g + c) & 0x7fffffff);
        *(vf *)(f1 + c) = vsel(a < thr, thr, a);
    }
    mn_vlog(W, f1, f1);
    for (int c = 0; c < W; c += NV) {
        vf gv = *(const vf *)(g + c), a = (vf)((vi)gv & 0x7fffffff);
        vi large = a >= thr;
        vf sign = vsel(gv > 0.0f, one, zero) - vsel(gv < 0.0f, one, zero);
        *(vf *)(f1 + c) = vsel(large, *(const vf *)(f1 + c) * net->inv_p, vbroadcast(-1.0f));
        *(vf *)(f2 + c) = vsel(large, sign, gv * net->exp_p); /* (with F = 2 this row is g's) */
    }
    if (!cfg->extended) return;
    const float b1 = cfg->ext_beta1, b2 = cfg->ext_beta2, ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    float *f3 = x + 2 * W, *f4 = x + 3 * W; /* f4 is g's row */
    for (int c = 0; c < W; c += NV) {
        int left = n - c > 0 ? n - c : 0;
        vf gv = *(const vf *)(f4 + c), m = load_upto(gb->m + c, left), v = load_upto(gb->v + c, left);
        vf m1 = fmav(m, vbroadcast(b1), gv * ob1), v1 = fmav(v, vbroadcast(b2), gv * gv * ob2);
        vf inv = one / vsqrt(v1 / gb->bc2 + cfg->ext_eps);
        *(vf *)(f3 + c) = gv * inv;
        *(vf *)(f4 + c) = m1 / gb->bc1 * inv;
        if (gb->m_out && left) store_upto(gb->m_out + c, left, m1), store_upto(gb->v_out + c, left, v1);
    }
}

/* delta = -alpha u exp(beta s) from out [2][W] */
static void mnemosyne_update(const lf_net *net, arena *a, int n, const float *out, float *delta) {
    int W = a->W;
    float *saved = a->next, *e = take(a, 1);
    for (int c = 0; c < W; c++) e[c] = out[W + c] * net->cfg.beta;
    exp_rows((size_t)W, e);
    for (int c = 0; c < n; c++) delta[c] = out[c] * -net->cfg.alpha * e[c];
    a->next = saved;
}


static int imax(int a, int b) { return a > b ? a : b; }

/* Rows of W floats that any kernel below takes from its scratch (the caller's buffers aside). */
static size_t scratch_rows(const lf_net *net) {
    const mn_lopt_config *cfg = &net->cfg;
    int F = net->F, d = cfg->dim, H = cfg->lstm_hidden;
    int lstm = F + net->lstm_g + H;
    int hr = cfg->heads * cfg->qk_dim, m2h = 2 * cfg->features * cfg->heads;
    int cam = F + 7 * d + 2 * hr + 2 * m2h + d / cfg->heads + 1 + cfg->ffn_dim + 7;
    int hd = d / cfg->hpe_heads, M = cfg->hpe_features;
    int hpe = 9 * d + 2 * M + cfg->hpe_ffn_dim + 4 + (M * hd + M + LF_VEC - 1) / LF_VEC + 1 + hd + 1;
    int head = F + d + 3;
    return (size_t)imax(imax(lstm, cam), imax(hpe, head)) + 4;
}

static arena arena_over(const lf_net *net, int W, float *scratch) {
    return (arena){scratch, scratch + scratch_rows(net) * (size_t)W, W};
}

/* ---- LSTM ------------------------------------------------------------------------------------ */

/* Y[c][0 .. G) = b + sum_k A(c, k) wt[k][0 .. G) for c < n (acc: Y += the sum instead), where
 * A(c, k) = a[c sc + k sk] (either layout), wt [K][G] and b [G] or NULL, G a multiple of LF_VEC */
static void rows_linear(int n, int G, int K, const float *a, size_t sc, size_t sk, const float *wt, const float *b,
                        bool acc, float *Y) {
    mk_args m = {.K = K, .A = a, .ars = sc, .aks = sk, .B = wt, .bks = (size_t)G, .C = Y, .crs = (size_t)G,
                 .bias_vec = b, .acc = acc};
    mk_run(&m, n, G / NV);
}

/* The LSTM works on its state's own layout, a row of H per coordinate: the gates of a coordinate
 * are one row [i f g o] of G = 4H rounded up to a vector. tanh(g) = 2 sigmoid(2g) - 1, with the g
 * rows of the weights pre-doubled (learned_fast.c), so one sigmoid over all gates serves both; the
 * cell's tanh is formed the same way (sigmoid is several times cheaper than tanh, and the two
 * agree to float rounding). */
static void lstm_block(const lf_net *net, int W, int n, const lf_grad_block *gb, float *const *h, float *const *c,
                       float *delta, float *scratch) {
    const mn_lopt_config *cfg = &net->cfg;
    int H = cfg->lstm_hidden, F = net->F, G = net->lstm_g;
    arena a = arena_over(net, W, scratch);
    float *x = take(&a, F), *gates = take(&a, G), *t = take(&a, H);
    features(net, W, n, gb, x);
    for (int l = 0; l < cfg->lstm_layers; l++) {
        const float *wt = net->lstm_wt[l], *b = net->lstm_b[l];
        int n_in = l == 0 ? F : H;
        /* input: the features, or the new h of the layer below (already in its state) */
        if (l == 0) rows_linear(n, G, F, x, 1, (size_t)W, wt, b, false, gates);
        else rows_linear(n, G, H, h[l - 1], (size_t)H, 1, wt, b, false, gates);
        rows_linear(n, G, H, h[l], (size_t)H, 1, wt + (size_t)n_in * G, NULL, true, gates);
        sigmoid_rows((size_t)n * G, gates); /* [i f g o] */
        /* the state is read, then overwritten, one element at a time */
        for (int col = 0; col < n; col++) {
            const float *sg = gates + (size_t)col * G;
            float *cell = c[l] + (size_t)col * H;
            for (int j = 0; j < H; j++) {
                cell[j] = sg[H + j] * cell[j] + sg[j] * (2.0f * sg[2 * H + j] - 1.0f);
                t[(size_t)col * H + j] = 2.0f * cell[j];
            }
        }
        sigmoid_rows((size_t)n * H, t);
        for (int col = 0; col < n; col++) {
            const float *sg = gates + (size_t)col * G, *tc = t + (size_t)col * H;
            float *hidden = h[l] + (size_t)col * H;
            for (int j = 0; j < H; j++) hidden[j] = sg[3 * H + j] * (2.0f * tc[j] - 1.0f);
        }
    }
    const float *wh = net->head.w, bh = net->head.b[0], *top = h[cfg->lstm_layers - 1];
    for (int col = 0; col < n; col++) {
        float u = bh;
        for (int j = 0; j < H; j++) u += wh[j] * top[(size_t)col * H + j];
        delta[col] = u * cfg->lstm_out_scale;
    }
}

/* ---- Mnemosyne-C --------------------------------------------------------------------------------- */

/* phi (cam.c's lopt_cam_phi) of each head's columns z [H][r][W] -> [H][2M][W]: exponents
 * +-omega_j.z minus a per-column shift: the max exponent (queries) or |z|^2/2 (keys), plus log sqrt(2M) */
static void cam_phi(const lf_net *net, const lf_cam *cam, arena *a, const float *z, bool query, float *phi) {
    const mn_lopt_config *cfg = &net->cfg;
    int W = a->W, H = cfg->heads, r = cfg->qk_dim, M2 = 2 * cfg->features;
    float *saved = a->next, *shift = take(a, 1);
    for (int hh = 0; hh < H; hh++) {
        const float *zh = z + (size_t)hh * r * W;
        float *ph = phi + (size_t)hh * M2 * W;
        linear(W, cam->omega2, r, NULL, M2, r, zh, ph);
        for (int c = 0; c < W; c++) shift[c] = query ? ph[c] : 0.0f;
        if (query) {
            for (int f = 1; f < M2; f++)
                for (int c = 0; c < W; c++) shift[c] = max2(shift[c], ph[(size_t)f * W + c]);
        } else {
            for (int i = 0; i < r; i++)
                for (int c = 0; c < W; c++) shift[c] += zh[(size_t)i * W + c] * zh[(size_t)i * W + c];
            for (int c = 0; c < W; c++) shift[c] *= 0.5f;
        }
        for (int c = 0; c < W; c++) shift[c] += net->cam_log_norm;
        for (int f = 0; f < M2; f++)
            for (int c = 0; c < W; c++) ph[(size_t)f * W + c] -= shift[c];
    }
    exp_rows((size_t)H * M2 * W, phi);
    a->next = saved;
}

static void cam_block(const lf_net *net, int W, int n, const lf_grad_block *gb, float *const *S, int64_t stride,
                      float *delta, float *scratch) {
    const mn_lopt_config *cfg = &net->cfg;
    int d = cfg->dim, H = cfg->heads, r = cfg->qk_dim, M2 = 2 * cfg->features, dh = d / H;
    size_t dW = (size_t)d * W;
    arena a = arena_over(net, W, scratch);
    float *x = take(&a, net->F), *e = take(&a, d), *q = take(&a, H * r), *k = take(&a, H * r), *v = take(&a, d);
    float *pq = take(&a, H * M2), *pk = take(&a, H * M2), *read = take(&a, dh + 1), *att = take(&a, d);
    float *t = take(&a, d), *e1 = take(&a, d), *hid = take(&a, cfg->ffn_dim), *ff = take(&a, d);
    float *out = take(&a, 2);
    features(net, W, n, gb, x);
    apply_linear(W, &net->embed, x, e);
    for (int l = 0; l < cfg->layers; l++) {
        const lf_cam *cam = &net->cam[l];
        linear(W, cam->wq, d, NULL, H * r, d, e, q);
        linear(W, cam->wk, d, NULL, H * r, d, e, k);
        linear(W, cam->wv, d, NULL, d, d, e, v);
        cam_phi(net, cam, &a, q, true, pq);
        cam_phi(net, cam, &a, k, false, pk);
        /* S' = gamma S + phi_k [v, 1]^T; [num, den] = phi_q^T S' */
        for (int hh = 0; hh < H; hh++) {
            memset(read, 0, sizeof(float) * (size_t)(dh + 1) * W);
            for (int f = 0; f < M2; f++) {
                const float *pkf = pk + ((size_t)hh * M2 + f) * W, *pqf = pq + ((size_t)hh * M2 + f) * W;
                for (int j = 0; j <= dh; j++) {
                    float *srow = S[l] + ((int64_t)(hh * M2 + f) * (dh + 1) + j) * stride;
                    const float *vj = v + ((size_t)hh * dh + j) * W;
                    float *rj = read + (size_t)j * W;
                    float gamma = cam->gamma;
                    if (j < dh) {
                        for (int c = 0; c < n; c++) {
                            float s1 = gamma * srow[c] + pkf[c] * vj[c];
                            srow[c] = s1;
                            rj[c] += pqf[c] * s1;
                        }
                    } else { /* the normaliser's column: v = 1 */
                        for (int c = 0; c < n; c++) {
                            float s1 = gamma * srow[c] + pkf[c];
                            srow[c] = s1;
                            rj[c] += pqf[c] * s1;
                        }
                    }
                }
            }
            const float *den = read + (size_t)dh * W;
            for (int j = 0; j < dh; j++)
                for (int c = 0; c < W; c++)
                    t[((size_t)hh * dh + j) * W + c] = c < n ? read[(size_t)j * W + c] / (den[c] + cfg->cam_eps) : 0.0f;
        }
        linear(W, cam->wo, d, NULL, d, d, t, att);
        add_rows(dW, e, att, t);
        layer_norm(&a, d, &cam->norm1, t, e1);
        apply_linear(W, &cam->ffn1, e1, hid);
        gelu_rows((size_t)cfg->ffn_dim * W, hid);
        apply_linear(W, &cam->ffn2, hid, ff);
        add_rows(dW, e1, ff, t);
        layer_norm(&a, d, &cam->norm2, t, e);
    }
    apply_linear(W, &net->head, e, out);
    mnemosyne_update(net, &a, n, out, delta);
}

/* ---- Mnemosyne-T ------------------------------------------------------------------------------------- */

static void embed_block(const lf_net *net, int W, int n, const lf_grad_block *gb, float *e, float *scratch) {
    arena a = arena_over(net, W, scratch);
    float *x = take(&a, net->F);
    features(net, W, n, gb, x);
    apply_linear(W, &net->embed, x, e);
    for (int i = 0; i < net->cfg.dim; i++) memset(e + (size_t)i * W + n, 0, sizeof(float) * (size_t)(W - n));
}

/* hpe_phi's exponents and exponentials with c a multiple of NV: pass 1 forms t = omega.z - |z|^2/2
 * and each vector's max over the features (kept in mx); pass 2 writes exp(t - shift) / sqrt(M),
 * the 1/sqrt(M) as -ln(M)/2 in the exponent. Only the k chunks' columns are computed. */
static void hpe_phi_vec(const lf_net *net, int W, int k, int c, const int *real, int hd, int M, const float *z,
                        bool query, float *phi, float *mx) {
    const vf log_scale = vbroadcast(logf(net->hpe_inv_sqrt_m));
    int nv = c / NV;
    for (int col = 0; col < k * c; col += NV) {
        vf sq = {0};
        for (int i = 0; i < hd; i++) {
            vf zi = *(const vf *)(z + (size_t)i * W + col);
            sq = fmav(zi, zi, sq);
        }
        vf half = sq * 0.5f, best = vbroadcast(-INFINITY);
        for (int f = 0; f < M; f++) {
            vf t = *(const vf *)(phi + (size_t)f * W + col) - half;
            *(vf *)(phi + (size_t)f * W + col) = t;
            best = vsel(t > best, t, best);
        }
        *(vf *)(mx + col) = best;
    }
    for (int j = 0; j < k; j++) {
        int lo = j * c;
        vf shift = {0};
        if (!query) { /* keys: one shift per chunk, its max over the features and the c columns */
            vf best = *(const vf *)(mx + lo);
            for (int u = 1; u < nv; u++) {
                vf t = *(const vf *)(mx + lo + u * NV);
                best = vsel(t > best, t, best);
            }
            float top = best[0];
            for (int l = 1; l < NV; l++) top = max2(top, best[l]);
            shift = vbroadcast(top);
        }
        for (int u = 0; u < nv; u++) {
            int col = lo + u * NV;
            vf s = query ? *(const vf *)(mx + col) : shift;
            vf off = log_scale - s;
            vi keep = {0};
            for (int l = 0; l < NV; l++) keep[l] = query || u * NV + l < real[j] ? -1 : 0;
            for (int f = 0; f < M; f++) {
                float *p = phi + (size_t)f * W + col;
                *(vf *)p = (vf)((vi)vexp_f(*(const vf *)p + off) & keep);
            }
        }
    }
}

/* FAVOR+ features (nn/performer.c's mn_favor_phi) of one head's columns z [hd][W]:
 * exp(omega.z - |z|^2/2 - shift) / sqrt(M) -> [M][W]. Queries: the shift is each column's max;
 * keys: the max over the features and the c columns of each chunk (padding included), and the
 * padding columns are then zeroed (the keep mask). */
static void hpe_phi(const lf_net *net, const lf_hpe *L, arena *a, int k, int c, const int *real, const float *z,
                    bool query, float *phi) {
    int W = a->W, hd = net->cfg.dim / net->cfg.hpe_heads, M = net->cfg.hpe_features;
    float *saved = a->next, *sq = take(a, 1);
    linear(W, L->omega, hd, NULL, M, hd, z, phi);
    if (c % NV == 0) { /* whole vectors per chunk: two passes over phi */
        hpe_phi_vec(net, W, k, c, real, hd, M, z, query, phi, sq);
        a->next = saved;
        return;
    }
    for (int col = 0; col < W; col++) sq[col] = 0.0f;
    for (int i = 0; i < hd; i++)
        for (int col = 0; col < W; col++) sq[col] += z[(size_t)i * W + col] * z[(size_t)i * W + col];
    for (int f = 0; f < M; f++)
        for (int col = 0; col < W; col++) phi[(size_t)f * W + col] -= sq[col] * 0.5f;
    if (query) {
        for (int col = 0; col < W; col++) sq[col] = phi[col];
        for (int f = 1; f < M; f++)
            for (int col = 0; col < W; col++) sq[col] = max2(sq[col], phi[(size_t)f * W + col]);
    } else {
        for (int j = 0; j < k; j++) {
            float lanes[LF_VEC];
            for (int l = 0; l < LF_VEC; l++) lanes[l] = -INFINITY;
            for (int f = 0; f < M; f++) lane_max(lanes, phi + (size_t)f * W + j * c, c);
            float mx = lanes[0];
            for (int l = 1; l < LF_VEC; l++) mx = max2(mx, lanes[l]);
            for (int col = j * c; col < (j + 1) * c; col++) sq[col] = mx;
        }
        for (int col = k * c; col < W; col++) sq[col] = 0.0f;
    }
    for (int f = 0; f < M; f++)
        for (int col = 0; col < W; col++) phi[(size_t)f * W + col] -= sq[col];
    exp_rows((size_t)M * W, phi);
    for (int f = 0; f < M; f++)
        for (int col = 0; col < W; col++) phi[(size_t)f * W + col] *= net->hpe_inv_sqrt_m;
    if (!query)
        for (int j = 0; j < k; j++)
            for (int f = 0; f < M; f++)
                for (int col = j * c + real[j]; col < (j + 1) * c; col++) phi[(size_t)f * W + col] = 0.0f;
    a->next = saved;
}

/* Horizontal sum of one vector */
static inline __attribute__((always_inline)) float hsum(vf x) {
    float s = 0.0f;
    for (int l = 0; l < NV; l++) s += x[l];
    return s;
}

#if NV == 8
/* (sum of a[0]'s lanes, .., sum of a[7]'s lanes) by a transposing tree of horizontal adds */
static inline __attribute__((always_inline)) __m256 hsum8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
#endif

/* FAVOR+ attention within each of k chunks of c columns (c a multiple of NV), one head: with
 * phi_q, phi_k [M][W] (padding columns of phi_k zero) and v [hd][W],
 *   kvt[e][f] = sum over the chunk of phi_k[f] v[e] (e < hd), kvt[hd][f] = sum of phi_k[f];
 *   o[e] = kvt[e] . phi_q per column (one micro-kernel product), ctx[e] = o[e] / (o[hd] + eps). */
static void chunk_attention_vec(int W, int k, int c, int M, int hd, const float *pq, const float *pk, const float *v,
                                float *ctx, float *kvt, float *o) {
    int nv = c / NV;
    for (int j = 0; j < k; j++) {
        int lo = j * c;
#if NV == 8
        if (M == 8) { /* the 8 features' sums at once, reduced together into kvt's row */
            for (int e = 0; e <= hd; e++) {
                const float *ve = v + (size_t)e * W + lo;
                __m256 acc[8];
                for (int f = 0; f < 8; f++) acc[f] = _mm256_setzero_ps();
                for (int u = 0; u < nv; u++) {
                    vf vv = e < hd ? *(const vf *)(ve + u * NV) : vbroadcast(1.0f);
                    for (int f = 0; f < 8; f++)
                        acc[f] = (__m256)fmav(*(const vf *)(pk + (size_t)f * W + lo + u * NV), vv, (vf)acc[f]);
                }
                _mm256_storeu_ps(kvt + (size_t)e * M, hsum8(acc));
            }
            goto product;
        }
#endif
        for (int f = 0; f < M; f++) {
            const float *pkf = pk + (size_t)f * W + lo;
            vf sum = {0};
            for (int u = 0; u < nv; u++) sum += *(const vf *)(pkf + u * NV);
            kvt[(size_t)hd * M + f] = hsum(sum);
            for (int e = 0; e < hd; e++) {
                const float *ve = v + (size_t)e * W + lo;
                vf acc = {0};
                for (int u = 0; u < nv; u++) acc = fmav(*(const vf *)(pkf + u * NV), *(const vf *)(ve + u * NV), acc);
                kvt[(size_t)e * M + f] = hsum(acc);
            }
        }
#if NV == 8
    product:;
#endif
        mk_args m = {.K = M, .A = kvt, .ars = (size_t)M, .aks = 1, .B = pq + lo, .bks = (size_t)W, .C = o + lo,
                     .crs = (size_t)W};
        mk_run(&m, hd + 1, nv);
        for (int u = 0; u < nv; u++) { /* one division per column: o[e] / den = o[e] (1 / den) to an ulp */
            size_t at = (size_t)lo + (size_t)u * NV;
            vf inv = vbroadcast(1.0f) / (*(const vf *)(o + (size_t)hd * W + at) + 1e-30f); /* MN_FAVOR_DEN_EPS */
            for (int e = 0; e < hd; e++) *(vf *)(ctx + (size_t)e * W + at) = *(const vf *)(o + (size_t)e * W + at) * inv;
        }
    }
}

/* One pre-LN bidirectional Performer layer (nn/block.c with FAVOR+ attention within each chunk) */
static void hpe_layer(const lf_net *net, int level, int W, int k, int c, const int *real, const float *X, float *Y,
                      float *scratch) {
    const mn_lopt_config *cfg = &net->cfg;
    const lf_hpe *L = &net->hpe[level];
    int d = cfg->dim, Hh = cfg->hpe_heads, hd = d / Hh, M = cfg->hpe_features;
    size_t dW = (size_t)d * W;
    arena a = arena_over(net, W, scratch);
    float *xl = take(&a, d), *q = take(&a, d), *kk = take(&a, d), *v = take(&a, d), *ctx = take(&a, d);
    float *att = take(&a, d), *hs = take(&a, d), *hl = take(&a, d), *f2 = take(&a, d);
    float *pq = take(&a, M), *pk = take(&a, M), *f1 = take(&a, cfg->hpe_ffn_dim);
    float *den = take(&a, 1), *kv = take(&a, (M * hd + M + LF_VEC - 1) / LF_VEC + 1), *ksum = kv + (size_t)M * hd;
    float *kvt = kv, *o = take(&a, hd + 1); /* the vectorised path's [hd + 1][M] and [hd + 1][W] */
    layer_norm(&a, d, &L->ln1, X, xl);
    apply_linear(W, &L->q, xl, q);
    apply_linear(W, &L->k, xl, kk);
    apply_linear(W, &L->v, xl, v);
    memset(ctx, 0, sizeof(float) * dW);
    for (int hh = 0; hh < Hh; hh++) {
        size_t off = (size_t)hh * hd * W;
        hpe_phi(net, L, &a, k, c, real, q + off, true, pq);
        hpe_phi(net, L, &a, k, c, real, kk + off, false, pk);
        if (c % NV == 0) { /* whole vectors per chunk: both contractions vectorised */
            chunk_attention_vec(W, k, c, M, hd, pq, pk, v + off, ctx + off, kvt, o);
            continue;
        }
        for (int j = 0; j < k; j++) {
            int lo = j * c;
            /* K'^T V and K'^T 1 of the chunk, then each slot's Q' (K'^T V) / (Q' (K'^T 1) + eps) */
            for (int f = 0; f < M; f++) {
                const float *pkf = pk + (size_t)f * W + lo;
                ksum[f] = lf_lane_sum(pkf, c);
                for (int e = 0; e < hd; e++) kv[f * hd + e] = lane_dot(pkf, v + off + (size_t)e * W + lo, c);
            }
            float *dn = den + lo;
            for (int col = 0; col < c; col++) dn[col] = 0.0f;
            for (int f = 0; f < M; f++)
                for (int col = 0; col < c; col++) dn[col] += pq[(size_t)f * W + lo + col] * ksum[f];
            for (int col = 0; col < c; col++) dn[col] += 1e-30f; /* MN_FAVOR_DEN_EPS of nn/performer.c */
            for (int e = 0; e < hd; e++) {
                float *out = ctx + off + (size_t)e * W + lo;
                for (int col = 0; col < c; col++) out[col] = 0.0f;
                for (int f = 0; f < M; f++)
                    for (int col = 0; col < c; col++) out[col] += pq[(size_t)f * W + lo + col] * kv[f * hd + e];
                for (int col = 0; col < c; col++) out[col] /= dn[col];
            }
        }
    }
    apply_linear(W, &L->o, ctx, att);
    add_rows(dW, X, att, hs);
    layer_norm(&a, d, &L->ln2, hs, hl);
    apply_linear(W, &L->fc1, hl, f1);
    gelu_rows((size_t)cfg->hpe_ffn_dim * W, f1);
    apply_linear(W, &L->fc2, f1, f2);
    add_rows(dW, hs, f2, Y);
}

static void t_head_block(const lf_net *net, int W, int n, const lf_grad_block *gb, const float *kept, float *hid,
                         float *delta, float *scratch) {
    const mn_lopt_config *cfg = &net->cfg;
    int d = cfg->dim;
    arena a = arena_over(net, W, scratch);
    float *x = take(&a, net->F), *e = take(&a, d), *out = take(&a, 2);
    if (kept) {
        e = (float *)kept;
    } else {
        features(net, W, n, gb, x);
        apply_linear(W, &net->embed, x, e);
    }
    mk_args m = {.K = d, .A = net->head.w + d, .ars = (size_t)net->head.in, .aks = 1, .B = e, .bks = (size_t)W,
                 .C = hid, .crs = (size_t)W, .acc = true}; /* hid += (the head's embedding half) e */
    mk_run(&m, cfg->head_hidden, W / NV);
    gelu_rows((size_t)cfg->head_hidden * W, hid);
    apply_linear(W, &net->head2, hid, out);
    mnemosyne_update(net, &a, n, out, delta);
}

const lf_kernels LF_CAT(lf_kernels_, LF_ISA) = {
    .scratch_rows = scratch_rows,
    .lstm_block = lstm_block,
    .cam_block = cam_block,
    .embed_block = embed_block,
    .hpe_layer = hpe_layer,
    .t_head_block = t_head_block,
    .exp_rows = exp_rows,
    .gelu_rows = gelu_rows,
    .sigmoid_rows = sigmoid_rows,
};
