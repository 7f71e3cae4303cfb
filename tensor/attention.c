/* Softmax attention per (batch, head) in one pass: the scores of one head are made, normalised
 * and multiplied by the values while they are in cache, and the results are written straight
 * into the [B, T, H, D] layout the output projection reads, so neither merging nor splitting
 * heads costs a copy. Autograd uses the backward kernel when it is not recording. */
#include "tensor/gemm.h"
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/vecmath.h"

#include <omp.h>
#include <stdlib.h>

typedef struct {
    int64_t B, H, Tq, Tk, D, Dv;
} attn_dims;

/* q, k, v [B, H, T, D] with unit stride in D (copied when not); mask [1 or B, 1, 1, Tk] or NULL */
static attn_dims check_attention(mn_tensor **q, mn_tensor **k, mn_tensor **v, mn_tensor **mask, const char *op) {
    mn_tensor *a = *q, *b = *k, *c = *v;
    char s1[96], s2[96], s3[96], s4[96];
    bool ok = a->ndim == 4 && b->ndim == 4 && c->ndim == 4 && a->dtype == MN_F32 && b->dtype == MN_F32 &&
              c->dtype == MN_F32;
    for (int d = 0; ok && d < 2; d++) ok = a->shape[d] == b->shape[d] && b->shape[d] == c->shape[d];
    ok = ok && a->shape[3] == b->shape[3] && b->shape[2] == c->shape[2];
    if (!ok)
        mn_fatal("%s: expected float32 q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv]; got %s, %s, %s", op,
                 mn_shape_str(a, s1), mn_shape_str(b, s2), mn_shape_str(c, s3));
    attn_dims d = {a->shape[0], a->shape[1], a->shape[2], b->shape[2], a->shape[3], c->shape[3]};
    if (mask && *mask) {
        mn_tensor *m = *mask;
        if (m->dtype != MN_F32 || m->ndim != 4 || (m->shape[0] != 1 && m->shape[0] != d.B) || m->shape[1] != 1 ||
            m->shape[2] != 1 || m->shape[3] != d.Tk)
            mn_fatal("%s: mask %s must be [%lld or 1, 1, 1, %lld] for q %s", op, mn_shape_str(m, s4),
                     (long long)d.B, (long long)d.Tk, mn_shape_str(a, s1));
        if (m->strides[3] != 1 && d.Tk > 1) *mask = mnt_contiguous(m);
    }
    if (a->strides[3] != 1 && d.D > 1) *q = mnt_contiguous(a);
    if (b->strides[3] != 1 && d.D > 1) *k = mnt_contiguous(b);
    if (c->strides[3] != 1 && d.Dv > 1) *v = mnt_contiguous(c);
    return d;
}

/* Row stride of t's third dim for GEMM (at least the row length, as mn_sgemm requires) */
static int64_t row_stride(const mn_tensor *t) {
    int64_t s = t->strides[2], n = t->shape[3] > 0 ? t->shape[3] : 1;
    return t->shape[2] <= 1 || s < n ? n : s;
}

/* An empty [B, H, T, D] tensor laid out as [B, T, H, D]: the heads merged in place */
static mn_tensor *heads_last_empty(int64_t B, int64_t H, int64_t T, int64_t D) {
    return mnt_permute(mn_empty(MN_SHAPE(B, T, H, D)), (int[]){0, 2, 1, 3});
}

static const float *head_ptr(const mn_tensor *t, int64_t b, int64_t h) {
    return mn_data(t) + b * t->strides[0] + h * t->strides[1];
}

static bool pairs_parallel(int64_t pairs, const attn_dims *d) {
    return pairs > 1 && pairs * d->Tq * d->Tk * (d->D + d->Dv) >= (int64_t)1 << 16 && !omp_in_parallel() &&
           omp_get_max_threads() > 1;
}

/* q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv] -> softmax(scale q k^T + mask) v [B, H, Tq, Dv] */
mn_tensor *mnt_attention(mn_tensor *q, mn_tensor *k, mn_tensor *v, float scale, mn_tensor *mask, mn_tensor **probs) {
    mn_scope sc = mn_scope_begin();
    attn_dims d = check_attention(&q, &k, &v, &mask, "attention");
    mn_tensor *out = heads_last_empty(d.B, d.H, d.Tq, d.Dv);
    mn_tensor *p = mn_empty(MN_SHAPE(d.B, d.H, d.Tq, d.Tk));
    int64_t pairs = d.B * d.H, ldq = row_stride(q), ldk = row_stride(k), ldv = row_stride(v);
    int64_t ldo = d.H * d.Dv > 0 ? d.H * d.Dv : 1;
    const float *mp = mask ? mn_data(mask) : NULL;
    int64_t mstride = mask && mask->shape[0] > 1 ? mask->strides[0] : 0;
    MN_PARALLEL_IF(pairs_parallel(pairs, &d), "omp parallel for schedule(static)", for (int64_t i = 0; i < pairs; i++) {
        int64_t b = i / d.H, h = i % d.H;
        float *s = mn_data(p) + i * d.Tq * d.Tk;
        float *o = mn_data(out) + b * out->strides[0] + h * out->strides[1];
        mn_sgemm(false, true, d.Tq, d.Tk, d.D, scale, head_ptr(q, b, h), ldq, head_ptr(k, b, h), ldk, 0.0f, s,
                 d.Tk > 0 ? d.Tk : 1);
        if (mp) {
            const float *m = mp + b * mstride;
            for (int64_t r = 0; r < d.Tq; r++)
                for (int64_t j = 0; j < d.Tk; j++) s[r * d.Tk + j] += m[j];
        }
        mn_vsoftmax_rows(d.Tq, d.Tk, s, s);
        mn_sgemm(false, false, d.Tq, d.Dv, d.Tk, 1.0f, s, d.Tk > 0 ? d.Tk : 1, head_ptr(v, b, h), ldv, 0.0f, o, ldo);
    });
    mn_retain(p);
    out = mn_scope_return(sc, out);
    if (probs) *probs = mn_autorelease(p);
    else mn_release(p);
    return out;
}

/* Given p = softmax(scale q k^T + mask) and the gradient g of the output [B, H, Tq, Dv]:
 * dp = g v^T, ds = scale p (dp - rowsum(dp p)), dq = ds k, dk = ds^T q, dv = p^T g, per (batch, head),
 * each result a [B, H, T, D] view of [B, T, H, D] storage. Any of dq, dk, dv may be NULL. */
void mnt_attention_backward(mn_tensor *q, mn_tensor *k, mn_tensor *v, mn_tensor *probs, mn_tensor *g, float scale,
                            mn_tensor **dq, mn_tensor **dk, mn_tensor **dv) {
    mn_scope sc = mn_scope_begin();
    attn_dims d = check_attention(&q, &k, &v, NULL, "attention_backward");
    char s1[96], s2[96];
    if (g->ndim != 4 || g->shape[0] != d.B || g->shape[1] != d.H || g->shape[2] != d.Tq || g->shape[3] != d.Dv ||
        probs->ndim != 4 || probs->shape[0] != d.B || probs->shape[1] != d.H || probs->shape[2] != d.Tq ||
        probs->shape[3] != d.Tk)
        mn_fatal("attention_backward: gradient %s or probabilities %s do not match q, k, v", mn_shape_str(g, s1),
                 mn_shape_str(probs, s2));
    if (g->strides[3] != 1 && d.Dv > 1) g = mnt_contiguous(g);
    probs = mnt_contiguous(probs);
    mn_tensor *gq = dq ? heads_last_empty(d.B, d.H, d.Tq, d.D) : NULL;
    mn_tensor *gk = dk ? heads_last_empty(d.B, d.H, d.Tk, d.D) : NULL;
    mn_tensor *gv = dv ? heads_last_empty(d.B, d.H, d.Tk, d.Dv) : NULL;
    int64_t pairs = d.B * d.H, ldq = row_stride(q), ldk = row_stride(k), ldv = row_stride(v), ldg = row_stride(g);
    int64_t ldd = d.H * d.D > 0 ? d.H * d.D : 1, lddv = d.H * d.Dv > 0 ? d.H * d.Dv : 1, ldt = d.Tk > 0 ? d.Tk : 1;
    bool par = pairs_parallel(pairs, &d);
    int nt = par ? omp_get_max_threads() : 1;
    float *scratch = malloc(sizeof(float) * (size_t)(d.Tq * d.Tk > 0 ? d.Tq * d.Tk : 1) * (size_t)nt);
    if (!scratch) mn_fatal("attention_backward: out of memory");
    MN_PARALLEL_IF(par, "omp parallel for schedule(static)", for (int64_t i = 0; i < pairs; i++) {
        int64_t b = i / d.H, h = i % d.H;
        const float *p = mn_data(probs) + i * d.Tq * d.Tk, *gh = head_ptr(g, b, h);
        float *ds = scratch + (size_t)(par ? omp_get_thread_num() : 0) * (size_t)(d.Tq * d.Tk);
        if (gv)
            mn_sgemm(true, false, d.Tk, d.Dv, d.Tq, 1.0f, p, ldt, gh, ldg, 0.0f,
                     mn_data(gv) + b * gv->strides[0] + h * gv->strides[1], lddv);
        if (!gq && !gk) continue;
        mn_sgemm(false, true, d.Tq, d.Tk, d.Dv, 1.0f, gh, ldg, head_ptr(v, b, h), ldv, 0.0f, ds, ldt);
        for (int64_t r = 0; r < d.Tq; r++) {
            const float *pr = p + r * d.Tk;
            float *dr = ds + r * d.Tk;
            float s = (float)mn_vdot(d.Tk, dr, pr);
            for (int64_t j = 0; j < d.Tk; j++) dr[j] = scale * (pr[j] * (dr[j] - s));
        }
        if (gq)
            mn_sgemm(false, false, d.Tq, d.D, d.Tk, 1.0f, ds, ldt, head_ptr(k, b, h), ldk, 0.0f,
                     mn_data(gq) + b * gq->strides[0] + h * gq->strides[1], ldd);
        if (gk)
            mn_sgemm(true, false, d.Tk, d.D, d.Tq, 1.0f, ds, ldt, head_ptr(q, b, h), ldq, 0.0f,
                     mn_data(gk) + b * gk->strides[0] + h * gk->strides[1], ldd);
    });
    free(scratch);
    mn_retain(gq);
    mn_retain(gk);
    mn_retain(gv);
    mn_scope_end(sc);
    if (dq) *dq = mn_autorelease(gq);
    if (dk) *dk = mn_autorelease(gk);
    if (dv) *dv = mn_autorelease(gv);
}
