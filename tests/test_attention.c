/* Attention against brute force in double: scaled dot-product attention with
 * padding, multi-head attention computed head by head, Performer FAVOR+
 * (random-feature kernel estimates, orthogonality, exact identities of the
 * linear-time forms, approximation of softmax attention), and first- and
 * second-order gradient checks. */
#include "testutil.h"

#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *doubles(const mn_tensor *t) {
    int64_t n = mn_numel(t);
    float *f = malloc(sizeof(float) * (size_t)(n + 1));
    double *d = malloc(sizeof(double) * (size_t)(n + 1));
    mn_to_array(t, f);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static void assert_matches(const mn_tensor *t, const double *want, double atol, double rtol) {
    double *got = doubles(t);
    for (int64_t i = 0; i < mn_numel(t); i++)
        if (!(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i])))
            fail_msg("element %lld: got %.8g, expected %.8g", (long long)i, got[i], want[i]);
    free(got);
}

/* Attention of one query row over Tk keys with explicit weights a_j (a_j = 0 skips a key). */
static void weighted_average(int64_t Tk, int64_t Dv, const double *a, const double *v, double *out) {
    double den = 0;
    for (int64_t j = 0; j < Tk; j++) den += a[j];
    for (int64_t e = 0; e < Dv; e++) {
        double s = 0;
        for (int64_t j = 0; j < Tk; j++) s += a[j] * v[j * Dv + e];
        out[e] = s / den;
    }
}

/* softmax(q k^T / sqrt(D)) v over kept keys, all in double; q [B,H,Tq,D], k, v [B,H,Tk,D] */
static double *softmax_attention_ref(const mn_tensor *q, const mn_tensor *k, const mn_tensor *v, const float *keep) {
    int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], D = q->shape[3], Tk = k->shape[2];
    double *qd = doubles(q), *kd = doubles(k), *vd = doubles(v);
    double *out = malloc(sizeof(double) * (size_t)(B * H * Tq * D)), *a = malloc(sizeof(double) * (size_t)Tk);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++) {
                const double *qi = qd + ((b * H + h) * Tq + i) * D, *kb = kd + (b * H + h) * Tk * D;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    double s = 0;
                    for (int64_t e = 0; e < D; e++) s += qi[e] * kb[j * D + e];
                    a[j] = s / sqrt((double)D);
                    if ((!keep || keep[b * Tk + j]) && a[j] > mx) mx = a[j];
                }
                for (int64_t j = 0; j < Tk; j++) a[j] = (!keep || keep[b * Tk + j]) ? exp(a[j] - mx) : 0;
                weighted_average(Tk, D, a, vd + (b * H + h) * Tk * D, out + ((b * H + h) * Tq + i) * D);
            }
    free(qd);
    free(kd);
    free(vd);
    free(a);
    return out;
}

/* ---- scaled dot-product attention ------------------------------------------------------ */

static void sdpa_matches_brute_force_with_padding(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *q = tu_rand(1, MN_SHAPE(2, 3, 4, 5), -1.5, 1.5);
    mn_tensor *k = tu_rand(2, MN_SHAPE(2, 3, 6, 5), -1.5, 1.5);
    mn_tensor *v = tu_rand(3, MN_SHAPE(2, 3, 6, 5), -1, 1);
    float keep[] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0};
    mn_tensor *mask = mn_padding_mask(mn_from_data(MN_SHAPE(2, 6), keep));
    double *want = softmax_attention_ref(q, k, v, keep);
    assert_matches(mn_sdpa(q, k, v, mask, 0, NULL), want, 1e-6, 1e-5);
    free(want);
    want = softmax_attention_ref(q, k, v, NULL);
    assert_matches(mn_sdpa(q, k, v, NULL, 0.3f, NULL), want, 1e-6, 1e-5); /* no rng: no dropout */
    free(want);
    EXPECT_MN_ERROR(mn_sdpa(q, mn_transpose(k, 2, 3), v, NULL, 0, NULL), "mn_sdpa");
    mn_scope_end(sc);
}

static void padding_mask_is_zero_or_minus_1e9(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *mi = mn_padding_mask(mn_from_ints(MN_SHAPE(2, 3), (int32_t[]){1, 0, 1, 0, 0, 1}));
    mn_tensor *mf = mn_padding_mask(mn_from_data(MN_SHAPE(2, 3), (float[]){1, 0, 1, 0, 0, 1}));
    assert_true(mi->ndim == 4 && mi->shape[0] == 2 && mi->shape[1] == 1 && mi->shape[2] == 1 && mi->shape[3] == 3);
    double want[] = {0, -1e9, 0, -1e9, -1e9, 0};
    assert_matches(mi, want, 0, 1e-7);
    assert_matches(mf, want, 0, 1e-7);
    /* a row with every key padded stays finite: uniform weights */
    mn_tensor *q = tu_rand(4, MN_SHAPE(1, 1, 2, 3), -1, 1), *k = tu_rand(5, MN_SHAPE(1, 1, 3, 3), -1, 1);
    mn_tensor *v = tu_rand(6, MN_SHAPE(1, 1, 3, 3), -1, 1);
    mn_tensor *none = mn_padding_mask(mn_zeros(MN_SHAPE(1, 3)));
    mn_tensor *uniform = mn_expand(mn_mean(v, MN_AXES(2), true), 4, (int64_t[]){1, 1, 2, 3});
    tu_assert_close(mn_sdpa(q, k, v, none, 0, NULL), uniform, 1e-6, 1e-5);
    mn_scope_end(sc);
}

static void sdpa_dropout_acts_on_attention_weights(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *q = tu_rand(7, MN_SHAPE(1, 2, 3, 4), -1, 1), *k = tu_rand(8, MN_SHAPE(1, 2, 5, 4), -1, 1);
    mn_tensor *v = tu_rand(9, MN_SHAPE(1, 2, 5, 4), -1, 1);
    mn_rng g1 = mn_rng_new(10), g2 = mn_rng_new(10);
    mn_tensor *y = mn_sdpa(q, k, v, NULL, 0.5f, &g1);
    mn_tensor *probs = mn_softmax(mn_scale(mn_matmul(q, mn_transpose(k, -1, -2)), 0.5f), -1);
    tu_assert_close(y, mn_matmul(mn_dropout(probs, 0.5f, &g2), v), 1e-6, 1e-5);
    assert_true(tu_close_ratio(y, mn_sdpa(q, k, v, NULL, 0, NULL), 1e-3, 0) > 1);
    mn_scope_end(sc);
}

/* ---- multi-head attention ---------------------------------------------------------------- */

/* y = x W^T + b in double; x [N, in], W [out, in] */
static double *affine(const double *x, int64_t N, int64_t in, const mn_linear *l) {
    int64_t out = l->weight->shape[0];
    double *w = doubles(l->weight), *b = l->bias ? doubles(l->bias) : NULL;
    double *y = malloc(sizeof(double) * (size_t)(N * out));
    for (int64_t r = 0; r < N; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
    free(w);
    free(b);
    return y;
}

/* Head h uses columns [h Dh, (h+1) Dh) of the projections; heads are concatenated again. */
static double *mha_ref(const mn_mha *a, const mn_tensor *x, const float *keep) {
    int64_t B = x->shape[0], T = x->shape[1], dim = x->shape[2], H = a->heads, Dh = dim / H;
    double *xd = doubles(x);
    double *Q = affine(xd, B * T, dim, &a->query), *K = affine(xd, B * T, dim, &a->key);
    double *V = affine(xd, B * T, dim, &a->value);
    double *ctx = malloc(sizeof(double) * (size_t)(B * T * dim)), *w = malloc(sizeof(double) * (size_t)T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < T; j++) {
                    double s = 0;
                    for (int64_t e = 0; e < Dh; e++)
                        s += Q[(b * T + i) * dim + h * Dh + e] * K[(b * T + j) * dim + h * Dh + e];
                    w[j] = s / sqrt((double)Dh);
                    if ((!keep || keep[b * T + j]) && w[j] > mx) mx = w[j];
                }
                double den = 0;
                for (int64_t j = 0; j < T; j++) den += w[j] = (!keep || keep[b * T + j]) ? exp(w[j] - mx) : 0;
                for (int64_t e = 0; e < Dh; e++) {
                    double s = 0;
                    for (int64_t j = 0; j < T; j++) s += w[j] * V[(b * T + j) * dim + h * Dh + e];
                    ctx[(b * T + i) * dim + h * Dh + e] = s / den;
                }
            }
    double *y = affine(ctx, B * T, dim, &a->output);
    free(xd);
    free(Q);
    free(K);
    free(V);
    free(ctx);
    free(w);
    return y;
}

static void mha_matches_per_head_brute_force(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(11);
    mn_mha a;
    mn_mha_init(&a, 12, 3, true, 0.3f, &g);
    assert_null(a.omega);
    /* non-zero biases so their placement is checked too */
    bool prev = mn_no_grad_begin();
    mn_copy_(a.query.bias, tu_rand(12, MN_SHAPE(12), -0.5, 0.5));
    mn_copy_(a.key.bias, tu_rand(13, MN_SHAPE(12), -0.5, 0.5));
    mn_copy_(a.value.bias, tu_rand(14, MN_SHAPE(12), -0.5, 0.5));
    mn_copy_(a.output.bias, tu_rand(15, MN_SHAPE(12), -0.5, 0.5));
    mn_no_grad_end(prev);
    mn_tensor *x = tu_rand(16, MN_SHAPE(2, 5, 12), -1, 1);
    float keep[] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    double *want = mha_ref(&a, x, keep);
    assert_matches(mn_mha_forward(&a, x, mn_from_data(MN_SHAPE(2, 5), keep), 0, NULL), want, 1e-5, 1e-4);
    free(want);
    want = mha_ref(&a, x, NULL);
    assert_matches(mn_mha_forward(&a, x, NULL, 0, NULL), want, 1e-5, 1e-4);
    free(want);
    EXPECT_MN_ERROR(mn_mha_forward(&a, x, mn_ones(MN_SHAPE(2, 4)), 0, NULL), "keep");
    mn_params p = {0};
    mn_mha_params(&a, &p, "attention.self", "attention.output.dense");
    const char *names[] = {"attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
                           "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
                           "attention.output.dense.weight", "attention.output.dense.bias"};
    assert_int_equal(p.count, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(p.items[i].name, names[i]);
    mn_params_free(&p);
    mn_mha_free(&a);
    EXPECT_MN_ERROR(mn_mha_init(&a, 10, 3, true, 0.1f, &g), "multiple of heads");
    mn_scope_end(sc);
}

typedef struct {
    const mn_mha *a;
    bool masked;
} mha_ctx;
static mn_tensor *mha_call(mn_tensor *const *in, void *ctx) {
    const mha_ctx *c = ctx;
    mn_tensor *keep = c->masked ? mn_from_data(MN_SHAPE(1, 3), (float[]){1, 1, 0}) : NULL;
    return mn_mha_forward(c->a, in[0], keep, 0, NULL);
}

static void check_mha(mn_mha *a, bool masked, bool second, mn_check_opts o) {
    mn_params p = {0};
    mn_mha_params(a, &p, "self", "out");
    mn_tensor *in[9];
    in[0] = mn_requires_grad(tu_rand(17, MN_SHAPE(1, 3, 4), -1, 1), true);
    for (int i = 0; i < 8; i++) in[i + 1] = p.items[i].tensor;
    mha_ctx c = {a, masked};
    char msg[512] = "";
    bool ok = second ? mn_gradgradcheck(mha_call, &c, 9, in, o, msg, sizeof msg)
                     : mn_gradcheck(mha_call, &c, 9, in, o, msg, sizeof msg);
    mn_params_free(&p);
    if (!ok) fail_msg("%s-order: %s", second ? "second" : "first", msg);
}

static void mha_gradients_first_and_second_order(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(18);
    mn_mha a;
    mn_mha_init(&a, 4, 2, true, 0.5f, &g);
    check_mha(&a, true, false, (mn_check_opts){0});
    check_mha(&a, false, false, (mn_check_opts){0});
    check_mha(&a, true, true, (mn_check_opts){.atol = 2e-3, .rtol = 2e-2});
    /* the Performer variant too */
    mn_mha_use_performer(&a, 6, &g);
    check_mha(&a, true, false, (mn_check_opts){0});
    mn_mha_free(&a);
    mn_scope_end(sc);
}

/* ---- fused per-head attention ----------------------------------------------------------------- */

/* The composite the fused op stands for */
static mn_tensor *attention_composite(mn_tensor *q, mn_tensor *k, mn_tensor *v, float scale, mn_tensor *mask) {
    return mn_matmul(mn_softmax_scaled(mn_matmul(q, mn_transpose(k, -1, -2)), scale, mask), v);
}

/* [B, T, H, D] data viewed as [B, H, T, D], as split heads are */
static mn_tensor *heads_view(uint64_t seed, int64_t B, int64_t H, int64_t T, int64_t D) {
    return mn_permute(tu_rand(seed, MN_SHAPE(B, T, H, D), -1, 1), (int[]){0, 2, 1, 3});
}

static void fused_attention_matches_brute_force_and_the_composite(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    int64_t B = 2, H = 3, Tq = 4, Tk = 6, D = 5;
    float keep[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1};
    mn_tensor *mask = mn_padding_mask(mn_from_data(MN_SHAPE(B, Tk), keep));
    for (int layout = 0; layout < 2; layout++) {
        /* contiguous [B, H, T, D], and the strided views multi-head attention passes */
        mn_tensor *q = layout ? heads_view(40, B, H, Tq, D) : tu_rand(40, MN_SHAPE(B, H, Tq, D), -1, 1);
        mn_tensor *k = layout ? heads_view(41, B, H, Tk, D) : tu_rand(41, MN_SHAPE(B, H, Tk, D), -1, 1);
        mn_tensor *v = layout ? heads_view(42, B, H, Tk, D) : tu_rand(42, MN_SHAPE(B, H, Tk, D), -1, 1);
        float scale = 1.0f / sqrtf((float)D);
        double *want = softmax_attention_ref(q, k, v, keep);
        mn_tensor *y = mn_attention(q, k, v, scale, mask);
        assert_matches(y, want, 1e-5, 1e-4);
        free(want);
        want = softmax_attention_ref(q, k, v, NULL);
        assert_matches(mn_attention(q, k, v, scale, NULL), want, 1e-5, 1e-4);
        free(want);
        /* the fused backward against the composite's, with a broadcast [1, 1, 1, Tk] mask too */
        mn_tensor *masks[2] = {mask, mn_slice(mask, 0, 1, 2, 1)};
        for (int m = 0; m < 2; m++) {
            mn_tensor *in[3] = {mn_requires_grad(mn_contiguous(q), true), mn_requires_grad(mn_contiguous(k), true),
                                mn_requires_grad(mn_contiguous(v), true)};
            mn_tensor *r = tu_rand(43, MN_SHAPE(B, H, Tq, D), -1, 1);
            mn_tensor *fused = mn_attention(in[0], in[1], in[2], scale, masks[m]);
            mn_tensor *plain = attention_composite(in[0], in[1], in[2], scale, masks[m]);
            tu_assert_close(fused, plain, 1e-6, 1e-5);
            mn_tensor *gf[3], *gp[3];
            mn_grad(1, (mn_tensor *[]){mn_sum(mn_mul(fused, r), MN_ALL, false)}, NULL, 3, in, gf, 0);
            mn_grad(1, (mn_tensor *[]){mn_sum(mn_mul(plain, r), MN_ALL, false)}, NULL, 3, in, gp, 0);
            for (int i = 0; i < 3; i++) tu_assert_close(gf[i], gp[i], 1e-6, 1e-5);
        }
    }
    mn_tensor *learned = mn_requires_grad(mn_zeros(MN_SHAPE(1, 1, 1, Tk)), true);
    mn_tensor *x = tu_rand(44, MN_SHAPE(B, H, Tk, D), -1, 1);
    EXPECT_MN_ERROR(mn_attention(x, x, x, 1.0f, learned), "mask");
    EXPECT_MN_ERROR(mn_attention(x, x, x, 1.0f, mn_zeros(MN_SHAPE(B, 1, Tk, Tk))), "mask");
    EXPECT_MN_ERROR(mn_attention(x, x, mn_zeros(MN_SHAPE(B, H, Tk + 1, D)), 1.0f, NULL), "attention");
    mn_scope_end(sc);
}

static mn_tensor *attention_call(mn_tensor *const *in, void *ctx) {
    mn_tensor *mask = ctx ? mn_padding_mask(mn_from_data(MN_SHAPE(2, 3), (float[]){1, 1, 0, 1, 1, 1})) : NULL;
    return mn_attention(in[0], in[1], in[2], 0.7f, mask);
}

static void fused_attention_gradients_first_and_second_order(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *in[3] = {mn_requires_grad(tu_rand(45, MN_SHAPE(2, 2, 2, 3), -1, 1), true),
                        mn_requires_grad(tu_rand(46, MN_SHAPE(2, 2, 3, 3), -1, 1), true),
                        mn_requires_grad(tu_rand(47, MN_SHAPE(2, 2, 3, 3), -1, 1), true)};
    char msg[512] = "";
    for (int masked = 0; masked < 2; masked++) {
        void *ctx = masked ? (void *)1 : NULL;
        if (!mn_gradcheck(attention_call, ctx, 3, in, (mn_check_opts){0}, msg, sizeof msg))
            fail_msg("first order (masked %d): %s", masked, msg);
        if (!mn_gradgradcheck(attention_call, ctx, 3, in, (mn_check_opts){.atol = 2e-3, .rtol = 2e-2}, msg,
                              sizeof msg))
            fail_msg("second order (masked %d): %s", masked, msg);
    }
    mn_scope_end(sc);
}

/* ---- FAVOR+ ---------------------------------------------------------------------------------- */

static void favor_features_are_orthogonal_within_blocks(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    const int64_t M = 20, d = 8;
    mn_rng g = mn_rng_new(19), g2 = mn_rng_new(19);
    mn_tensor *omega = mn_favor_features(M, d, &g);
    assert_true(omega->ndim == 2 && omega->shape[0] == M && omega->shape[1] == d);
    assert_false(omega->requires_grad);
    tu_assert_close(mn_favor_features(M, d, &g2), omega, 0, 0);
    double *w = doubles(omega), norm[20];
    for (int i = 0; i < M; i++) {
        norm[i] = 0;
        for (int e = 0; e < d; e++) norm[i] += w[i * d + e] * w[i * d + e];
        norm[i] = sqrt(norm[i]);
        assert_true(norm[i] > 0);
    }
    double worst_in = 0, worst_across = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < i; j++) {
            double c = 0;
            for (int e = 0; e < d; e++) c += w[i * d + e] * w[j * d + e];
            c = fabs(c) / (norm[i] * norm[j]);
            if (i / d == j / d) worst_in = fmax(worst_in, c);
            else worst_across = fmax(worst_across, c);
        }
    assert_true(worst_in < 1e-5);    /* rows 0-7, 8-15, 16-19: orthogonal blocks */
    assert_true(worst_across > 0.1); /* independent blocks are not orthogonal to each other */
    /* row lengths are chi(d): not all equal, E|w|^2 = d */
    double spread = 0;
    for (int i = 1; i < M; i++) spread = fmax(spread, fabs(norm[i] - norm[0]));
    assert_true(spread > 0.1);
    free(w);
    mn_tensor *big = mn_favor_features(4096, d, &g);
    w = doubles(big);
    double sq = 0;
    for (int i = 0; i < 4096 * d; i++) sq += w[i] * w[i];
    assert_true(fabs(sq / 4096 - d) < 0.4); /* sd of the mean is sqrt(2 d / 4096) = 0.0625 */
    free(w);
    mn_scope_end(sc);
}

/* Mean relative error of sum_m phi(q)_m phi(k)_m as an estimate of exp(q.k), with
 * the stabilisers exp(-c) undone (c computed here from omega). */
static double kernel_error(int64_t M, uint64_t seed) {
    mn_scope sc = mn_scope_begin();
    const int64_t d = 4, n = 16;
    mn_rng g = mn_rng_new(seed);
    mn_tensor *omega = mn_favor_features(M, d, &g);
    mn_tensor *q = tu_rand(seed + 1, MN_SHAPE(n, d), -0.35f, 0.35f);
    mn_tensor *k = tu_rand(seed + 2, MN_SHAPE(n, d), -0.35f, 0.35f);
    double *pq = doubles(mn_favor_phi(q, omega, true)), *pk = doubles(mn_favor_phi(k, omega, true));
    double *w = doubles(omega), *qd = doubles(q), *kd = doubles(k);
    double err = 0;
    for (int64_t i = 0; i < n; i++) {
        double cq = -INFINITY, ck = -INFINITY, qq = 0, kk = 0, qk = 0;
        for (int64_t e = 0; e < d; e++) qq += qd[i * d + e] * qd[i * d + e], kk += kd[i * d + e] * kd[i * d + e],
                                        qk += qd[i * d + e] * kd[i * d + e];
        for (int64_t m = 0; m < M; m++) {
            double wq = 0, wk = 0;
            for (int64_t e = 0; e < d; e++) wq += w[m * d + e] * qd[i * d + e], wk += w[m * d + e] * kd[i * d + e];
            cq = fmax(cq, wq - qq / 2);
            ck = fmax(ck, wk - kk / 2);
        }
        double est = 0;
        for (int64_t m = 0; m < M; m++) est += pq[i * M + m] * pk[i * M + m];
        est *= exp(cq + ck);
        err += fabs(est - exp(qk)) / exp(qk);
    }
    free(pq);
    free(pk);
    free(w);
    free(qd);
    free(kd);
    mn_scope_end(sc);
    return err / (double)n;
}

static void favor_kernel_estimate_converges_to_exp_dot(void **state) {
    (void)state;
    double small = 0, large = 0;
    for (uint64_t s = 0; s < 4; s++) {
        small += kernel_error(16, 100 + 10 * s) / 4;
        large += kernel_error(4096, 200 + 10 * s) / 4;
    }
    print_message("mean relative error of phi(q).phi(k) vs exp(q.k): M = 16: %.4f, M = 4096: %.4f\n", small, large);
    assert_true(large < small / 4);
    assert_true(large < 0.02);
}

/* phi without the stabiliser, in double: exp(w.x - |x|^2 / 2) / sqrt(M); x already scaled */
static void phi_ref(const double *x, const double *w, int64_t M, int64_t d, double s, double *out) {
    double xx = 0;
    for (int64_t e = 0; e < d; e++) xx += s * x[e] * s * x[e];
    for (int64_t m = 0; m < M; m++) {
        double wx = 0;
        for (int64_t e = 0; e < d; e++) wx += w[m * d + e] * s * x[e];
        out[m] = exp(wx - xx / 2) / sqrt((double)M);
    }
}

/* Explicit attention with weights phi(q_i).phi(k_j), over kept keys (and j <= i if causal). */
static double *favor_ref(const mn_tensor *q, const mn_tensor *k, const mn_tensor *v, const mn_tensor *omega,
                         const float *keep, bool causal) {
    int64_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], D = q->shape[3], Tk = k->shape[2], Dv = v->shape[3];
    int64_t M = omega->shape[0];
    double s = pow((double)D, -0.25);
    double *qd = doubles(q), *kd = doubles(k), *vd = doubles(v), *w = doubles(omega);
    double *out = malloc(sizeof(double) * (size_t)(B * H * Tq * Dv)), *a = malloc(sizeof(double) * (size_t)Tk);
    double *pq = malloc(sizeof(double) * (size_t)M), *pk = malloc(sizeof(double) * (size_t)M);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++) {
                phi_ref(qd + ((b * H + h) * Tq + i) * D, w, M, D, s, pq);
                for (int64_t j = 0; j < Tk; j++) {
                    a[j] = 0;
                    if ((keep && !keep[b * Tk + j]) || (causal && j > i)) continue;
                    phi_ref(kd + ((b * H + h) * Tk + j) * D, w, M, D, s, pk);
                    for (int64_t m = 0; m < M; m++) a[j] += pq[m] * pk[m];
                }
                weighted_average(Tk, Dv, a, vd + (b * H + h) * Tk * Dv, out + ((b * H + h) * Tq + i) * Dv);
            }
    free(qd);
    free(kd);
    free(vd);
    free(w);
    free(a);
    free(pq);
    free(pk);
    return out;
}

static void favor_bidirectional_equals_explicit_kernel_attention(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(20);
    mn_tensor *omega = mn_favor_features(24, 4, &g);
    mn_tensor *q = tu_rand(21, MN_SHAPE(2, 2, 5, 4), -1, 1), *k = tu_rand(22, MN_SHAPE(2, 2, 7, 4), -1, 1);
    mn_tensor *v = tu_rand(23, MN_SHAPE(2, 2, 7, 3), -1, 1); /* value width may differ */
    float keep[] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 1};
    double *want = favor_ref(q, k, v, omega, keep, false);
    mn_tensor *y = mn_favor_attention(q, k, v, omega, mn_from_data(MN_SHAPE(2, 7), keep), false);
    assert_true(y->shape[2] == 5 && y->shape[3] == 3);
    assert_matches(y, want, 1e-5, 1e-4);
    free(want);
    want = favor_ref(q, k, v, omega, NULL, false);
    assert_matches(mn_favor_attention(q, k, v, omega, NULL, false), want, 1e-5, 1e-4);
    free(want);
    /* a batch whose keys are all padding gives zeros, not NaN */
    float none[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1};
    double *got = doubles(mn_favor_attention(q, k, v, omega, mn_from_data(MN_SHAPE(2, 7), none), false));
    for (int i = 0; i < 2 * 5 * 3; i++) assert_true(got[i] == 0.0);
    free(got);
    EXPECT_MN_ERROR(mn_favor_attention(q, k, v, omega, NULL, true), "Tq == Tk");
    EXPECT_MN_ERROR(mn_favor_attention(q, k, v, mn_favor_features(8, 3, &g), NULL, false), "omega");
    mn_scope_end(sc);
}

static void favor_causal_equals_lower_triangular_kernel_attention(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(24);
    mn_tensor *omega = mn_favor_features(10, 4, &g);
    mn_tensor *q = tu_rand(25, MN_SHAPE(2, 2, 6, 4), -1, 1), *k = tu_rand(26, MN_SHAPE(2, 2, 6, 4), -1, 1);
    mn_tensor *v = tu_rand(27, MN_SHAPE(2, 2, 6, 4), -1, 1);
    float keep[] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0};
    double *want = favor_ref(q, k, v, omega, keep, true);
    assert_matches(mn_favor_attention(q, k, v, omega, mn_from_data(MN_SHAPE(2, 6), keep), true), want, 1e-5, 1e-4);
    free(want);
    want = favor_ref(q, k, v, omega, NULL, true);
    assert_matches(mn_favor_attention(q, k, v, omega, NULL, true), want, 1e-5, 1e-4);
    free(want);
    mn_scope_end(sc);
}

static void favor_with_many_features_approximates_softmax_attention(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(28);
    mn_tensor *q = tu_rand(29, MN_SHAPE(1, 2, 6, 8), -0.8f, 0.8f), *k = tu_rand(30, MN_SHAPE(1, 2, 6, 8), -0.8f, 0.8f);
    mn_tensor *v = tu_rand(31, MN_SHAPE(1, 2, 6, 8), -1, 1);
    mn_tensor *exact = mn_sdpa(q, k, v, NULL, 0, NULL);
    /* tu_close_ratio with atol 1, rtol 0 is the max absolute difference */
    mn_tensor *few = mn_favor_attention(q, k, v, mn_favor_features(8, 8, &g), NULL, false);
    mn_tensor *many = mn_favor_attention(q, k, v, mn_favor_features(4096, 8, &g), NULL, false);
    double err_small = tu_close_ratio(few, exact, 1, 0), err_large = tu_close_ratio(many, exact, 1, 0);
    print_message("max |FAVOR+ - softmax attention|: M = 8: %.4f, M = 4096: %.4f\n", err_small, err_large);
    assert_true(err_large < 0.05);
    assert_true(err_large < err_small);
    /* the same through multi-head attention switched to FAVOR+ */
    mn_mha a;
    mn_mha_init(&a, 8, 2, true, 0.3f, &g);
    mn_tensor *x = tu_rand(32, MN_SHAPE(1, 5, 8), -1, 1);
    mn_tensor *soft = mn_mha_forward(&a, x, NULL, 0, NULL);
    mn_mha_use_performer(&a, 4096, &g);
    assert_true(a.omega->shape[0] == 4096 && a.omega->shape[1] == 4);
    mn_tensor *perf = mn_mha_forward(&a, x, NULL, 0, NULL);
    double diff = tu_close_ratio(perf, soft, 1, 0);
    print_message("max |MHA FAVOR+ - MHA softmax| = %.4f\n", diff);
    assert_true(diff > 0 && diff < 0.05);
    mn_mha_free(&a);
    mn_scope_end(sc);
}

typedef struct {
    mn_tensor *omega;
    bool causal;
    bool masked;
} favor_ctx;
static mn_tensor *favor_call(mn_tensor *const *in, void *ctx) {
    const favor_ctx *c = ctx;
    mn_tensor *keep = c->masked ? mn_from_data(MN_SHAPE(1, 3), (float[]){1, 0, 1}) : NULL;
    return mn_favor_attention(in[0], in[1], in[2], c->omega, keep, c->causal);
}
static mn_tensor *phi_call(mn_tensor *const *in, void *ctx) {
    const favor_ctx *c = ctx;
    return mn_favor_phi(in[0], c->omega, c->causal); /* causal field reused as per_row */
}

static void favor_gradients_first_and_second_order(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(33);
    mn_tensor *omega = mn_favor_features(5, 2, &g);
    mn_tensor *in[3] = {mn_requires_grad(tu_rand(34, MN_SHAPE(1, 2, 3, 2), -1, 1), true),
                        mn_requires_grad(tu_rand(35, MN_SHAPE(1, 2, 3, 2), -1, 1), true),
                        mn_requires_grad(tu_rand(36, MN_SHAPE(1, 2, 3, 2), -1, 1), true)};
    char msg[512] = "";
    for (int causal = 0; causal < 2; causal++) {
        favor_ctx c = {omega, causal, !causal};
        if (!mn_gradcheck(favor_call, &c, 3, in, (mn_check_opts){0}, msg, sizeof msg))
            fail_msg("first order (causal %d): %s", causal, msg);
        if (!mn_gradgradcheck(favor_call, &c, 3, in, (mn_check_opts){.atol = 2e-3, .rtol = 2e-2}, msg, sizeof msg))
            fail_msg("second order (causal %d): %s", causal, msg);
    }
    for (int per_row = 0; per_row < 2; per_row++) {
        favor_ctx c = {omega, per_row, false};
        if (!mn_gradcheck(phi_call, &c, 1, in, (mn_check_opts){0}, msg, sizeof msg))
            fail_msg("phi (per_row %d): %s", per_row, msg);
    }
    mn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sdpa_matches_brute_force_with_padding),
        cmocka_unit_test(padding_mask_is_zero_or_minus_1e9),
        cmocka_unit_test(sdpa_dropout_acts_on_attention_weights),
        cmocka_unit_test(mha_matches_per_head_brute_force),
        cmocka_unit_test(mha_gradients_first_and_second_order),
        cmocka_unit_test(fused_attention_matches_brute_force_and_the_composite),
        cmocka_unit_test(fused_attention_gradients_first_and_second_order),
        cmocka_unit_test(favor_features_are_orthogonal_within_blocks),
        cmocka_unit_test(favor_kernel_estimate_converges_to_exp_dot),
        cmocka_unit_test(favor_bidirectional_equals_explicit_kernel_attention),
        cmocka_unit_test(favor_causal_equals_lower_triangular_kernel_attention),
        cmocka_unit_test(favor_with_many_features_approximates_softmax_attention),
        cmocka_unit_test(favor_gradients_first_and_second_order),
    };
    return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}
