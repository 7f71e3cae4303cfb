/* nn layers against independent references: activations vs closed forms,
 * Linear / Embedding / LayerNorm / patch embedding vs brute-force loops in
 * double, MLP and Transformer blocks vs their composition, dropout statistics,
 * parameter names, and finite-difference gradient checks. */
#include "testutil.h"

#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Row-major copy of t as floats (caller frees). */
static float *values(const mn_tensor *t) {
    float *v = malloc(sizeof(float) * (size_t)(mn_numel(t) + 1));
    mn_to_array(t, v);
    return v;
}

/* gradient checks of layers: inputs = x followed by every parameter */
typedef mn_tensor *(*layer_fn)(const void *layer, mn_tensor *x);
typedef struct {
    layer_fn fn;
    const void *layer;
} layer_ctx;
static mn_tensor *call_layer(mn_tensor *const *in, void *ctx) {
    const layer_ctx *c = ctx;
    return c->fn(c->layer, in[0]);
}
static void check_layer(layer_fn fn, const void *layer, mn_tensor *x, const mn_params *p, bool second,
                        mn_check_opts o) {
    mn_tensor **in = malloc(sizeof *in * (size_t)(p->count + 1));
    in[0] = mn_requires_grad(x, true);
    for (int i = 0; i < p->count; i++) in[i + 1] = p->items[i].tensor;
    layer_ctx ctx = {fn, layer};
    char msg[512] = "";
    bool ok = second ? mn_gradgradcheck(call_layer, &ctx, p->count + 1, in, o, msg, sizeof msg)
                     : mn_gradcheck(call_layer, &ctx, p->count + 1, in, o, msg, sizeof msg);
    free(in);
    if (!ok) fail_msg("%s-order check failed: %s", second ? "second" : "first", msg);
}

/* ---- activations ----------------------------------------------------------------- */

static void activations_match_closed_forms(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = tu_rand(1, MN_SHAPE(3, 7), -4, 4);
    float *xv = values(x);
    const mn_act acts[] = {MN_ACT_IDENTITY, MN_ACT_RELU, MN_ACT_GELU, MN_ACT_TANH, MN_ACT_SIGMOID};
    for (int a = 0; a < 5; a++) {
        float *yv = values(mn_activate(acts[a], x));
        for (int i = 0; i < 21; i++) {
            double v = xv[i], want = v;
            switch (acts[a]) {
            case MN_ACT_IDENTITY: want = v; break;
            case MN_ACT_RELU: want = v > 0 ? v : 0; break;
            case MN_ACT_GELU: want = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
            case MN_ACT_TANH: want = tanh(v); break;
            case MN_ACT_SIGMOID: want = 1 / (1 + exp(-v)); break;
            }
            assert_float_equal(yv[i], want, 2e-6 + 2e-6 * fabs(want));
        }
        free(yv);
    }
    free(xv);
    mn_scope_end(sc);
}

static void activation_names_parse_and_print(void **state) {
    (void)state;
    const char *names[] = {"relu", "gelu", "tanh", "sigmoid", "identity"};
    for (int i = 0; i < 5; i++) {
        mn_act a;
        assert_true(mn_act_parse(names[i], &a));
        assert_string_equal(mn_act_name(a), names[i]);
    }
    mn_act a = MN_ACT_RELU;
    assert_true(mn_act_parse("linear", &a));
    assert_int_equal(a, MN_ACT_IDENTITY);
    assert_false(mn_act_parse("gelu_new", &a));
    assert_false(mn_act_parse("", &a));
}

/* ---- Linear ------------------------------------------------------------------------ */

static void linear_matches_brute_force(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(3);
    mn_linear l;
    mn_linear_init(&l, 5, 4, true, 0.0f, &g);
    mn_tensor *x = tu_rand(4, MN_SHAPE(2, 3, 5), -1, 1);
    mn_tensor *y = mn_linear_forward(&l, x);
    assert_int_equal(y->ndim, 3);
    assert_true(y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 4);
    float *xv = values(x), *w = values(l.weight), *b = values(l.bias), *yv = values(y);
    for (int r = 0; r < 6; r++)
        for (int o = 0; o < 4; o++) {
            double s = b[o];
            for (int i = 0; i < 5; i++) s += (double)xv[r * 5 + i] * w[o * 5 + i];
            assert_float_equal(yv[r * 4 + o], s, 1e-5);
        }
    /* a transposed (non-contiguous) input and a 1-d input give the same rows */
    mn_tensor *xt = mn_transpose(mn_contiguous(mn_transpose(x, 0, 1)), 0, 1);
    tu_assert_close(mn_linear_forward(&l, xt), y, 1e-6, 0);
    mn_tensor *row = mn_reshape(mn_slice(mn_slice(x, 0, 1, 2, 1), 1, 2, 3, 1), MN_SHAPE(5));
    mn_tensor *yrow = mn_linear_forward(&l, row);
    assert_int_equal(yrow->ndim, 1);
    for (int o = 0; o < 4; o++) assert_float_equal(mn_get(yrow, (int64_t[]){o}), yv[5 * 4 + o], 1e-6);
    free(xv);
    free(w);
    free(b);
    free(yv);
    EXPECT_MN_ERROR(mn_linear_forward(&l, mn_zeros(MN_SHAPE(2, 4))), "[2, 4]");
    mn_linear_free(&l);
    assert_null(l.weight);
    mn_scope_end(sc);
}

static void linear_init_follows_the_two_conventions(void **state) {
    (void)state;
    mn_rng g = mn_rng_new(11);
    /* std > 0: N(0, std) weights, zero bias */
    mn_linear a;
    mn_linear_init(&a, 64, 128, true, 0.02f, &g);
    float *w = values(a.weight), *b = values(a.bias);
    double s1 = 0, s2 = 0;
    for (int i = 0; i < 64 * 128; i++) s1 += w[i], s2 += (double)w[i] * w[i];
    double mean = s1 / (64 * 128), sd = sqrt(s2 / (64 * 128) - mean * mean);
    assert_true(fabs(mean) < 0.002 && fabs(sd - 0.02) < 0.001);
    for (int i = 0; i < 128; i++) assert_true(b[i] == 0.0f);
    assert_true(a.weight->requires_grad && a.bias->requires_grad);
    free(w);
    free(b);
    /* std == 0: U(-1/sqrt(in), 1/sqrt(in)) for both, variance bound^2 / 3 */
    mn_linear c;
    mn_linear_init(&c, 16, 256, true, 0.0f, &g);
    w = values(c.weight);
    b = values(c.bias);
    double bound = 0.25, v = 0, vb = 0;
    for (int i = 0; i < 16 * 256; i++) {
        assert_true(fabs(w[i]) <= bound);
        v += (double)w[i] * w[i];
    }
    for (int i = 0; i < 256; i++) {
        assert_true(fabs(b[i]) <= bound);
        vb += (double)b[i] * b[i];
    }
    assert_true(fabs(v / (16 * 256) - bound * bound / 3) < 0.1 * bound * bound / 3);
    assert_true(fabs(vb / 256 - bound * bound / 3) < 0.25 * bound * bound / 3);
    free(w);
    free(b);
    /* no bias */
    mn_linear d;
    mn_linear_init(&d, 3, 2, false, 0.0f, &g);
    assert_null(d.bias);
    mn_linear_free(&a);
    mn_linear_free(&c);
    mn_linear_free(&d);
}

static mn_tensor *linear_call(const void *l, mn_tensor *x) { return mn_linear_forward(l, x); }
static mn_tensor *linear_tanh_call(const void *l, mn_tensor *x) { return mn_tanh(mn_linear_forward(l, x)); }

static void linear_gradients_first_and_second_order(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(5);
    mn_linear l;
    mn_linear_init(&l, 4, 3, true, 0.5f, &g);
    mn_params p = {0};
    mn_linear_params(&l, &p, "fc");
    check_layer(linear_call, &l, tu_rand(6, MN_SHAPE(2, 2, 4), -1, 1), &p, false, (mn_check_opts){0});
    check_layer(linear_tanh_call, &l, tu_rand(7, MN_SHAPE(2, 4), -1, 1), &p, true, (mn_check_opts){0});
    mn_params_free(&p);
    mn_linear_free(&l);
    mn_scope_end(sc);
}

/* ---- Embedding and LayerNorm --------------------------------------------------------------- */

static void embedding_picks_rows(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(8);
    mn_embed e;
    mn_embed_init(&e, 7, 3, 0.1f, &g);
    int32_t ids[] = {6, 0, 3, 3, 1, 6};
    mn_tensor *y = mn_embed_forward(&e, mn_from_ints(MN_SHAPE(2, 3), ids));
    assert_true(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 3);
    float *w = values(e.weight), *yv = values(y);
    for (int i = 0; i < 6; i++)
        for (int d = 0; d < 3; d++) assert_true(yv[i * 3 + d] == w[ids[i] * 3 + d]);
    /* gradient: each row accumulates once per use */
    mn_backward(mn_sum(y, MN_ALL, false));
    float uses[7] = {1, 1, 0, 2, 0, 0, 2};
    for (int r = 0; r < 7; r++) assert_float_equal(mn_get(e.weight->grad, (int64_t[]){r, 1}), uses[r], 0);
    free(w);
    free(yv);
    EXPECT_MN_ERROR(mn_embed_forward(&e, mn_from_ints(MN_SHAPE(1), (int32_t[]){7})), "out of range");
    mn_params p = {0};
    mn_embed_params(&e, &p, "embeddings.word_embeddings");
    assert_non_null(mn_params_find(&p, "embeddings.word_embeddings.weight"));
    mn_params_free(&p);
    mn_embed_free(&e);
    mn_scope_end(sc);
}

static void layernorm_layer_matches_brute_force(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_norm n;
    mn_norm_init(&n, 6, 1e-5f);
    float *w0 = values(n.weight), *b0 = values(n.bias);
    for (int i = 0; i < 6; i++) assert_true(w0[i] == 1.0f && b0[i] == 0.0f);
    free(w0);
    free(b0);
    /* give the affine part non-trivial values before comparing */
    bool prev = mn_no_grad_begin();
    mn_copy_(n.weight, tu_rand(9, MN_SHAPE(6), 0.5f, 1.5f));
    mn_copy_(n.bias, tu_rand(10, MN_SHAPE(6), -0.5f, 0.5f));
    mn_no_grad_end(prev);
    mn_tensor *x = tu_rand(11, MN_SHAPE(4, 6), -2, 3);
    float *xv = values(x), *w = values(n.weight), *b = values(n.bias), *yv = values(mn_norm_forward(&n, x));
    for (int r = 0; r < 4; r++) {
        double m = 0, var = 0;
        for (int c = 0; c < 6; c++) m += xv[r * 6 + c] / 6.0;
        for (int c = 0; c < 6; c++) var += (xv[r * 6 + c] - m) * (xv[r * 6 + c] - m) / 6.0;
        for (int c = 0; c < 6; c++) {
            double want = (xv[r * 6 + c] - m) / sqrt(var + 1e-5) * w[c] + b[c];
            assert_float_equal(yv[r * 6 + c], want, 2e-5);
        }
    }
    free(xv);
    free(w);
    free(b);
    free(yv);
    mn_params p = {0};
    mn_norm_params(&n, &p, "ln");
    assert_int_equal(p.count, 2);
    assert_true(mn_params_find(&p, "ln.weight")->no_decay && mn_params_find(&p, "ln.bias")->no_decay);
    mn_params_free(&p);
    mn_norm_free(&n);
    mn_scope_end(sc);
}

static mn_tensor *norm_call(const void *n, mn_tensor *x) { return mn_norm_forward(n, x); }

static void layernorm_layer_gradients(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_norm n;
    mn_norm_init(&n, 5, 1e-5f);
    bool prev = mn_no_grad_begin();
    mn_copy_(n.weight, tu_rand(12, MN_SHAPE(5), 0.5f, 1.5f));
    mn_copy_(n.bias, tu_rand(13, MN_SHAPE(5), -0.5f, 0.5f));
    mn_no_grad_end(prev);
    mn_params p = {0};
    mn_norm_params(&n, &p, NULL);
    check_layer(norm_call, &n, tu_rand(14, MN_SHAPE(3, 5), -1, 1), &p, false, (mn_check_opts){0});
    mn_params_free(&p);
    mn_norm_free(&n);
    mn_scope_end(sc);
}

/* ---- Dropout -------------------------------------------------------------------------- */

static void dropout_zeroes_a_fraction_p_and_scales_the_rest(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    const int64_t n = 20000;
    const float p = 0.3f;
    mn_tensor *x = tu_rand(15, MN_SHAPE(n), 0.5f, 1.5f);
    mn_rng g = mn_rng_new(16);
    mn_tensor *y = mn_dropout(x, p, &g);
    float *xv = values(x), *yv = values(y);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (yv[i] == 0.0f) zeros++;
        else assert_float_equal(yv[i], xv[i] / (1 - p), 1e-6);
    }
    /* binomial: sd = sqrt(n p (1 - p)) ~ 65; allow 5 sd */
    assert_true(llabs(zeros - (int64_t)(n * p)) < 5 * 65);
    /* the same seed gives the same mask; the generator advanced */
    mn_rng g2 = mn_rng_new(16);
    tu_assert_close(mn_dropout(x, p, &g2), y, 0, 0);
    assert_true(g.counter == g2.counter && g.counter > 0);
    free(xv);
    free(yv);
    mn_scope_end(sc);
}

static void dropout_is_identity_in_eval_mode(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = tu_rand(17, MN_SHAPE(5, 4), -1, 1);
    mn_rng g = mn_rng_new(18);
    tu_assert_close(mn_dropout(x, 0.5f, NULL), x, 0, 0);
    tu_assert_close(mn_dropout(x, 0.0f, &g), x, 0, 0);
    assert_true(g.counter == 0); /* p == 0 draws nothing */
    float *all_zero = values(mn_dropout(x, 1.0f, &g));
    for (int i = 0; i < 20; i++) assert_true(all_zero[i] == 0.0f);
    free(all_zero);
    EXPECT_MN_ERROR(mn_dropout(x, 1.5f, &g), "p must be in [0, 1]");
    mn_scope_end(sc);
}

static void dropout_gradient_flows_only_through_kept_units(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_requires_grad(tu_rand(19, MN_SHAPE(200), -1, 1), true);
    mn_rng g = mn_rng_new(20);
    mn_tensor *y = mn_dropout(x, 0.4f, &g);
    mn_tensor *gx = mn_grad1(mn_sum(mn_square(y), MN_ALL, false), x, 0);
    float *xv = values(x), *yv = values(y), *gv = values(gx);
    int kept = 0;
    for (int i = 0; i < 200; i++) {
        if (yv[i] == 0.0f) {
            assert_true(gv[i] == 0.0f);
        } else {
            kept++;
            /* d/dx (x m)^2 = 2 x m^2 with m = 1/(1-p) */
            assert_float_equal(gv[i], 2 * xv[i] / (0.6 * 0.6), 1e-5);
        }
    }
    assert_true(kept > 80 && kept < 160);
    free(xv);
    free(yv);
    free(gv);
    mn_scope_end(sc);
}

/* ---- MLP --------------------------------------------------------------------------------- */

static void mlp_matches_manual_composition(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(21);
    mn_mlp m;
    mn_mlp_init(&m, 3, (int64_t[]){4, 8, 6, 2}, MN_ACT_TANH, &g);
    assert_int_equal(m.n_layers, 3);
    mn_tensor *x = tu_rand(22, MN_SHAPE(5, 4), -1, 1);
    /* manual: raw matmuls with the layers' weights, tanh between */
    mn_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        h = mn_add(mn_matmul(h, mn_transpose(m.layers[i].weight, 0, 1)), m.layers[i].bias);
        if (i < 2) h = mn_tanh(h);
    }
    tu_assert_close(mn_mlp_forward(&m, x), h, 1e-6, 1e-5);
    mn_params p = {0};
    mn_mlp_params(&m, &p, "net");
    assert_int_equal(p.count, 6);
    assert_non_null(mn_params_find(&p, "net.layers.2.bias"));
    assert_true(mn_params_find(&p, "net.layers.0.bias")->no_decay);
    assert_false(mn_params_find(&p, "net.layers.0.weight")->no_decay);
    assert_int_equal(mn_params_numel(&p), 4 * 8 + 8 + 8 * 6 + 6 + 6 * 2 + 2);
    mn_params_free(&p);
    mn_mlp_free(&m);
    mn_scope_end(sc);
}

/* ---- patch embedding --------------------------------------------------------------------- */

static void patch_embed_matches_direct_convolution(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(23);
    enum { B = 2, C = 3, H = 6, W = 9, P = 3, D = 4 };
    mn_patch_embed pe;
    mn_patch_embed_init(&pe, C, D, P, 0.0f, &g);
    assert_true(pe.weight->ndim == 4 && pe.weight->shape[0] == D && pe.weight->shape[1] == C &&
                pe.weight->shape[2] == P && pe.weight->shape[3] == P);
    mn_tensor *px = tu_rand(24, MN_SHAPE(B, C, H, W), -1, 1);
    mn_tensor *y = mn_patch_embed_forward(&pe, px);
    assert_true(y->ndim == 3 && y->shape[0] == B && y->shape[1] == (H / P) * (W / P) && y->shape[2] == D);
    float *xv = values(px), *wv = values(pe.weight), *bv = values(pe.bias), *yv = values(y);
    /* Conv2d(kernel = stride = P), output position (i, j) flattened row-major */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < H / P; i++)
            for (int j = 0; j < W / P; j++)
                for (int d = 0; d < D; d++) {
                    double s = bv[d];
                    for (int c = 0; c < C; c++)
                        for (int u = 0; u < P; u++)
                            for (int v = 0; v < P; v++)
                                s += (double)wv[((d * C + c) * P + u) * P + v] *
                                     xv[((b * C + c) * H + i * P + u) * W + j * P + v];
                    int n = i * (W / P) + j;
                    assert_float_equal(yv[(b * (H / P) * (W / P) + n) * D + d], s, 1e-5);
                }
    free(xv);
    free(wv);
    free(bv);
    free(yv);
    EXPECT_MN_ERROR(mn_patch_embed_forward(&pe, mn_zeros(MN_SHAPE(1, C, 7, 9))), "multiples of 3");
    mn_patch_embed_free(&pe);
    mn_scope_end(sc);
}

static mn_tensor *patch_call(const void *pe, mn_tensor *x) { return mn_patch_embed_forward(pe, x); }

static void patch_embed_gradients(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng g = mn_rng_new(25);
    mn_patch_embed pe;
    mn_patch_embed_init(&pe, 2, 3, 2, 0.3f, &g);
    mn_params p = {0};
    mn_patch_embed_params(&pe, &p, "embeddings.patch_embeddings.projection");
    assert_non_null(mn_params_find(&p, "embeddings.patch_embeddings.projection.weight"));
    assert_true(mn_params_find(&p, "embeddings.patch_embeddings.projection.bias")->no_decay);
    check_layer(patch_call, &pe, tu_rand(26, MN_SHAPE(1, 2, 4, 4), -1, 1), &p, false, (mn_check_opts){0});
    mn_params_free(&p);
    mn_patch_embed_free(&pe);
    mn_scope_end(sc);
}

/* ---- Transformer block ---------------------------------------------------------------------- */

/* The header's formulas, written out with the block's own sub-layers. */
static mn_tensor *block_reference(const mn_block *b, mn_tensor *x, mn_tensor *keep) {
    mn_tensor *ff_in, *h;
    if (b->pre_ln) {
        h = mn_add(x, mn_mha_forward(&b->attn, mn_norm_forward(&b->ln1, x), keep, 0, NULL));
        ff_in = mn_norm_forward(&b->ln2, h);
    } else {
        h = mn_norm_forward(&b->ln1, mn_add(x, mn_mha_forward(&b->attn, x, keep, 0, NULL)));
        ff_in = h;
    }
    mn_tensor *ff = mn_linear_forward(&b->fc2, mn_gelu(mn_linear_forward(&b->fc1, ff_in)));
    return b->pre_ln ? mn_add(h, ff) : mn_norm_forward(&b->ln2, mn_add(h, ff));
}

static void randomise_norms(mn_block *b, uint64_t seed) {
    bool prev = mn_no_grad_begin();
    mn_copy_(b->ln1.weight, tu_rand(seed, MN_SHAPE(b->ln1.weight->shape[0]), 0.5f, 1.5f));
    mn_copy_(b->ln1.bias, tu_rand(seed + 1, MN_SHAPE(b->ln1.bias->shape[0]), -0.5f, 0.5f));
    mn_copy_(b->ln2.weight, tu_rand(seed + 2, MN_SHAPE(b->ln2.weight->shape[0]), 0.5f, 1.5f));
    mn_copy_(b->ln2.bias, tu_rand(seed + 3, MN_SHAPE(b->ln2.bias->shape[0]), -0.5f, 0.5f));
    mn_no_grad_end(prev);
}

static void block_matches_its_formula(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = tu_rand(27, MN_SHAPE(2, 5, 8), -1, 1);
    mn_tensor *keep = mn_from_data(MN_SHAPE(2, 5), (float[]){1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
    for (int pre = 0; pre < 2; pre++) {
        mn_rng g = mn_rng_new(28);
        mn_block b;
        mn_block_init(&b, 8, 2, 16, MN_ACT_GELU, pre, 1e-6f, 0.2f, &g);
        randomise_norms(&b, 29);
        mn_tensor *y = mn_block_forward(&b, x, keep, NULL);
        tu_assert_close(y, block_reference(&b, x, keep), 1e-6, 1e-5);
        /* with dropout probabilities set but no rng, nothing is dropped */
        b.dropout = 0.5f;
        b.attn_dropout = 0.5f;
        tu_assert_close(mn_block_forward(&b, x, keep, NULL), y, 0, 0);
        /* with an rng, dropout changes the output */
        mn_rng dg = mn_rng_new(30);
        assert_true(tu_close_ratio(mn_block_forward(&b, x, keep, &dg), y, 1e-3, 0) > 1);
        mn_block_free(&b);
    }
    mn_scope_end(sc);
}

static mn_tensor *block_call(const void *b, mn_tensor *x) {
    mn_tensor *keep = mn_from_data(MN_SHAPE(1, 3), (float[]){1, 1, 0});
    return mn_block_forward(b, x, keep, NULL);
}

static void block_gradients_pre_and_post_ln(void **state) {
    (void)state;
    for (int pre = 0; pre < 2; pre++) {
        mn_scope sc = mn_scope_begin();
        mn_rng g = mn_rng_new(31);
        mn_block b;
        mn_block_init(&b, 4, 2, 6, MN_ACT_GELU, pre, 1e-5f, 0.5f, &g);
        randomise_norms(&b, 32);
        mn_params p = {0};
        mn_block_params(&b, &p, "layer");
        check_layer(block_call, &b, tu_rand(33, MN_SHAPE(1, 3, 4), -1, 1), &p, false,
                    (mn_check_opts){.atol = 2e-3, .rtol = 2e-2});
        mn_params_free(&p);
        mn_block_free(&b);
        mn_scope_end(sc);
    }
}

static mn_tensor *block_first_call(const void *b, mn_tensor *x) {
    mn_tensor *keep = mn_from_data(MN_SHAPE(1, 3), (float[]){1, 1, 0});
    return mn_block_forward_first(b, x, 2, keep, NULL);
}

/* The first tokens alone (a CLS classifier's last block): the full block's output at those
 * tokens, and the same gradients for the input and every parameter. */
static void block_forward_first_equals_the_full_block_sliced(void **state) {
    (void)state;
    for (volatile int pre = 0; pre < 2; pre++) { /* volatile: cmocka longjmps out of failed asserts */
        mn_scope sc = mn_scope_begin();
        mn_rng g = mn_rng_new(35);
        mn_block b;
        mn_block_init(&b, 8, 2, 16, MN_ACT_GELU, pre, 1e-6f, 0.3f, &g);
        randomise_norms(&b, 36);
        mn_params p = {0};
        mn_block_params(&b, &p, "layer");
        mn_tensor *x = mn_requires_grad(tu_rand(37, MN_SHAPE(2, 5, 8), -1, 1), true);
        mn_tensor *keep = mn_from_data(MN_SHAPE(2, 5), (float[]){1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
        mn_tensor *r = tu_rand(38, MN_SHAPE(2, 2, 8), -1, 1);
        mn_tensor *full = mn_slice(mn_block_forward(&b, x, keep, NULL), 1, 0, 2, 1);
        mn_tensor *first = mn_block_forward_first(&b, x, 2, keep, NULL);
        assert_int_equal(first->shape[1], 2);
        tu_assert_close(first, full, 1e-6, 1e-5);
        mn_tensor *in[17], *g_full[17], *g_first[17];
        in[0] = x;
        for (int i = 0; i < 16; i++) in[i + 1] = p.items[i].tensor;
        mn_grad(1, (mn_tensor *[]){mn_sum(mn_mul(full, r), MN_ALL, false)}, NULL, 17, in, g_full, 0);
        mn_grad(1, (mn_tensor *[]){mn_sum(mn_mul(first, r), MN_ALL, false)}, NULL, 17, in, g_first, 0);
        for (int i = 0; i < 17; i++) tu_assert_close(g_first[i], g_full[i], 1e-5, 1e-4);
        /* and the gradients of the short path against finite differences */
        check_layer(block_first_call, &b, tu_rand(39, MN_SHAPE(1, 3, 8), -1, 1), &p, false,
                    (mn_check_opts){.atol = 2e-3, .rtol = 2e-2});
        EXPECT_MN_ERROR(mn_block_forward_first(&b, x, 6, keep, NULL), "n_query");
        mn_params_free(&p);
        mn_block_free(&b);
        mn_scope_end(sc);
    }
}

static void block_params_use_hugging_face_names(void **state) {
    (void)state;
    mn_rng g = mn_rng_new(34);
    /* named_parameters() order of ViTLayer and BertLayer */
    const char *vit[16] = {"attention.attention.query.weight", "attention.attention.query.bias",
                           "attention.attention.key.weight", "attention.attention.key.bias",
                           "attention.attention.value.weight", "attention.attention.value.bias",
                           "attention.output.dense.weight", "attention.output.dense.bias",
                           "intermediate.dense.weight", "intermediate.dense.bias",
                           "output.dense.weight", "output.dense.bias",
                           "layernorm_before.weight", "layernorm_before.bias",
                           "layernorm_after.weight", "layernorm_after.bias"};
    const char *bert[16] = {"attention.self.query.weight", "attention.self.query.bias",
                            "attention.self.key.weight", "attention.self.key.bias",
                            "attention.self.value.weight", "attention.self.value.bias",
                            "attention.output.dense.weight", "attention.output.dense.bias",
                            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                            "intermediate.dense.weight", "intermediate.dense.bias",
                            "output.dense.weight", "output.dense.bias",
                            "output.LayerNorm.weight", "output.LayerNorm.bias"};
    for (int pre = 0; pre < 2; pre++) {
        mn_block b;
        mn_block_init(&b, 8, 2, 32, MN_ACT_GELU, pre, 1e-12f, 0.02f, &g);
        mn_params p = {0};
        mn_block_params(&b, &p, "encoder.layer.3");
        assert_int_equal(p.count, 16);
        assert_int_equal(mn_params_numel(&p), 4 * (64 + 8) + 4 * 8 + (8 * 32 + 32) + (32 * 8 + 8));
        for (int i = 0; i < 16; i++) {
            char name[128];
            snprintf(name, sizeof name, "encoder.layer.3.%s", pre ? vit[i] : bert[i]);
            assert_string_equal(p.items[i].name, name);
            bool is_bias = strstr(name, ".bias") != NULL;
            bool is_norm = strstr(name, "layernorm") || strstr(name, "LayerNorm");
            assert_int_equal(p.items[i].no_decay, is_bias || is_norm);
        }
        /* ln1 is layernorm_before (ViT) or attention.output.LayerNorm (BERT); fc1 is intermediate.dense */
        const char *ln1 = pre ? "encoder.layer.3.layernorm_before.weight"
                              : "encoder.layer.3.attention.output.LayerNorm.weight";
        assert_ptr_equal(mn_params_find(&p, ln1)->tensor, b.ln1.weight);
        assert_ptr_equal(mn_params_find(&p, "encoder.layer.3.intermediate.dense.weight")->tensor, b.fc1.weight);
        mn_params_free(&p);
        mn_block_free(&b);
    }
}

static void layers_free_everything_they_own(void **state) {
    (void)state;
    int64_t tensors = mn_live_tensors(), bytes = mn_live_bytes();
    mn_rng g = mn_rng_new(35);
    mn_block b;
    mn_block_init(&b, 8, 2, 16, MN_ACT_RELU, true, 1e-5f, 0.02f, &g);
    mn_mha_use_performer(&b.attn, 16, &g);
    mn_patch_embed pe;
    mn_patch_embed_init(&pe, 3, 8, 4, 0.02f, &g);
    mn_embed e;
    mn_embed_init(&e, 10, 8, 0.02f, &g);
    mn_mlp m;
    mn_mlp_init(&m, 2, (int64_t[]){8, 4, 2}, MN_ACT_GELU, &g);
    mn_norm n;
    mn_norm_init(&n, 8, 1e-5f);
    {
        mn_scope sc = mn_scope_begin();
        mn_tensor *x = mn_add(mn_embed_forward(&e, mn_from_ints(MN_SHAPE(1, 3), (int32_t[]){1, 2, 3})),
                              mn_patch_embed_forward(&pe, tu_rand(36, MN_SHAPE(1, 3, 4, 12), -1, 1)));
        mn_tensor *loss = mn_sum(mn_mlp_forward(&m, mn_norm_forward(&n, mn_block_forward(&b, x, NULL, &g))), MN_ALL,
                                 false);
        mn_backward(loss);
        mn_scope_end(sc);
    }
    assert_non_null(b.fc1.weight->grad);
    mn_block_free(&b);
    mn_patch_embed_free(&pe);
    mn_embed_free(&e);
    mn_mlp_free(&m);
    mn_norm_free(&n);
    assert_int_equal(mn_live_tensors(), tensors);
    assert_int_equal(mn_live_bytes(), bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(activations_match_closed_forms),
        cmocka_unit_test(activation_names_parse_and_print),
        cmocka_unit_test(linear_matches_brute_force),
        cmocka_unit_test(linear_init_follows_the_two_conventions),
        cmocka_unit_test(linear_gradients_first_and_second_order),
        cmocka_unit_test(embedding_picks_rows),
        cmocka_unit_test(layernorm_layer_matches_brute_force),
        cmocka_unit_test(layernorm_layer_gradients),
        cmocka_unit_test(dropout_zeroes_a_fraction_p_and_scales_the_rest),
        cmocka_unit_test(dropout_is_identity_in_eval_mode),
        cmocka_unit_test(dropout_gradient_flows_only_through_kept_units),
        cmocka_unit_test(mlp_matches_manual_composition),
        cmocka_unit_test(patch_embed_matches_direct_convolution),
        cmocka_unit_test(patch_embed_gradients),
        cmocka_unit_test(block_matches_its_formula),
        cmocka_unit_test(block_gradients_pre_and_post_ln),
        cmocka_unit_test(block_forward_first_equals_the_full_block_sliced),
        cmocka_unit_test(block_params_use_hugging_face_names),
        cmocka_unit_test(layers_free_everything_they_own),
    };
    return cmocka_run_group_tests_name("nn_layers", tests, NULL, NULL);
}
