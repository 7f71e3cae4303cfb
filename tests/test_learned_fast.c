/* The fused no-graph step of the learned optimizers (lopt/learned_fast*.c) against the graph path
 * (the differentiable ops of lstm_opt.c, mnemosyne.c, cam.c, hpe.c): the same updates and the same
 * carried state, to float rounding, over several consecutive steps, for every kind, tensors of
 * several sizes (not multiples of the chunk, and for Mnemosyne-T large enough that the meta-tokens
 * are pooled down to max_meta), through mn_lopt_apply and through the mn_optimizer adapter. */
#include "lopt_fixtures.h"

#include "lopt/learned_fast.h"
#include "tensor/cpu.h"

#include <omp.h>
#include <unistd.h>

/* scale-relative: the largest difference over the largest reference magnitude */
#define TOLERANCE 1e-5

enum { MAX_TENSORS = 8 };

static const mn_lopt_kind kinds[3] = LOPT_ALL_KINDS;

typedef struct {
    int n;
    int ndim[MAX_TENSORS];
    int64_t shape[MAX_TENSORS][3];
} tensor_list;

/* Gradients over many magnitudes (both preprocessing branches: |g| below and above e^-p for
 * p = 2 and p = 10), both signs, and some exact zeros. */
static mn_tensor *mixed_grad(uint64_t seed, int ndim, const int64_t *shape) {
    mn_tensor *u = tu_rand(seed, ndim, shape, 0.0f, 1.0f);
    float *d = mn_data(u);
    for (int64_t i = 0; i < mn_numel(u); i++) {
        float mag = powf(10.0f, -7.0f * d[i]); /* 1e-7 .. 1 */
        d[i] = i % 17 == 5 ? 0.0f : (i % 2 ? -mag : mag);
    }
    return u;
}

static double max_abs(mn_tensor *t) {
    mn_tensor *c = mnt_contiguous(t);
    const float *d = mn_data(c);
    double m = 0;
    for (int64_t i = 0; i < mn_numel(c); i++) m = fmax(m, fabs((double)d[i]));
    return m;
}

/* max |a - b| / max |b| (0 when both are all zeros) */
static double rel_err(mn_tensor *a, mn_tensor *b) {
    mn_scope sc = mn_scope_begin();
    double scale = max_abs(b), diff = max_abs(mnt_binary(MN_OP_SUB, a, b));
    mn_scope_end(sc);
    if (!(diff == diff)) return INFINITY;
    return diff == 0 ? 0 : diff / scale;
}

static void make_params(const tensor_list *tl, mn_tensor **theta) {
    for (int i = 0; i < tl->n; i++) theta[i] = mn_zeros(tl->ndim[i], tl->shape[i]);
}

/* One mn_lopt_apply with the graph recorded (grad mode on: the weights require grad) or on the
 * fused path (grad mode off); the graph state then drops its history (values kept). */
static void apply_step(mn_lopt *o, mn_lopt_state *s, int n, mn_tensor **theta, mn_tensor **g, float lr, bool fused,
                       mn_tensor **out) {
    bool prev = mn_set_grad_enabled(!fused);
    assert_true(lopt_fast_usable(o, s, n, g) == fused);
    mn_lopt_apply(o, s, n, theta, g, lr, out);
    mn_set_grad_enabled(prev);
    for (int i = 0; i < n; i++) out[i] = mn_detach(out[i]);
    mn_lopt_state_detach(s);
}

/* Runs steps on a graph-path state and on a state whose steps follow `fused_at` (bit t: step t
 * fused), from parameters at zero (so the new parameters are lr * delta exactly), and returns the
 * worst relative difference of updates and state slots over all steps. */
static double compare_paths(mn_lopt *o, const tensor_list *tl, int steps, unsigned fused_at, float lr, uint64_t seed) {
    mn_scope sc = mn_scope_begin();
    int n = tl->n;
    mn_tensor *theta[MAX_TENSORS];
    make_params(tl, theta);
    mn_lopt_state *ref = mn_lopt_state_new(o, n, theta), *got = mn_lopt_state_new(o, n, theta);
    double worst = 0;
    for (int t = 0; t < steps; t++) {
        mn_scope step_sc = mn_scope_begin();
        mn_tensor *g[MAX_TENSORS], *p_ref[MAX_TENSORS], *p_got[MAX_TENSORS];
        for (int i = 0; i < n; i++)
            g[i] = mixed_grad(seed + 100 * (uint64_t)t + (uint64_t)i, tl->ndim[i], tl->shape[i]);
        apply_step(o, ref, n, theta, g, lr, false, p_ref);
        apply_step(o, got, n, theta, g, lr, (fused_at >> t) & 1, p_got);
        for (int i = 0; i < n; i++) {
            double e = rel_err(p_got[i], p_ref[i]);
            if (e > worst) worst = e;
            assert_true(max_abs(p_ref[i]) > 0);
        }
        for (int k = 0; k < ref->n_slots; k++) {
            assert_true(mn_same_shape(ref->slot[k], got->slot[k]));
            double e = rel_err(got->slot[k], ref->slot[k]);
            if (e > worst) worst = e;
        }
        mn_scope_end(step_sc);
    }
    assert_int_equal(mn_lopt_state_steps(got), steps);
    mn_lopt_state_free(ref);
    mn_lopt_state_free(got);
    mn_scope_end(sc);
    return worst;
}

static void expect_match(mn_lopt *o, const char *what, const tensor_list *tl, float lr, uint64_t seed) {
    double e = compare_paths(o, tl, 4, ~0u, lr, seed);
    print_message("%s (%s): worst relative difference %.3g over 4 steps\n", mn_lopt_kind_name(o->cfg.kind), what, e);
    if (!(e <= TOLERANCE))
        fail_msg("%s (%s): the fused step differs from the graph path by %.3g (tolerance %g)",
                 mn_lopt_kind_name(o->cfg.kind), what, e, TOLERANCE);
}

/* sizes around and across the chunk (32) and the LSTM/CAM blocks (64, 256) */
static const tensor_list mixed_sizes = {5, {1, 2, 1, 2, 3}, {{37}, {5, 13}, {1000}, {33, 32}, {3, 4, 21}}};
static const tensor_list few_sizes = {3, {1, 2, 3}, {{37}, {5, 13}, {3, 4, 21}}};

static void fused_lstm_matches_graph_path(void **state) {
    (void)state;
    mn_lopt_config cfg = mn_lopt_default_config(MN_LOPT_LSTM);
    mn_lopt *o = mn_lopt_new_config(&cfg, 3);
    perturb_weights(o, 30, 0.2f);
    expect_match(o, "default config", &mixed_sizes, 0.7f, 1);
    mn_lopt_free(o);
    cfg.extended = true; /* the feature-engineering variant: 4 inputs and the moments */
    cfg.lstm_layers = 3;
    cfg.lstm_hidden = 7;
    o = mn_lopt_new_config(&cfg, 4);
    perturb_weights(o, 40, 0.2f);
    expect_match(o, "3 layers of 7, extended features", &mixed_sizes, 1.0f, 2);
    mn_lopt_free(o);
}

static void fused_mnemosyne_c_matches_graph_path(void **state) {
    (void)state;
    mn_lopt *o = mn_lopt_new(MN_LOPT_MNEMOSYNE_C, 5);
    perturb_weights(o, 50, 0.2f);
    expect_match(o, "default config", &mixed_sizes, 0.7f, 3);
    mn_lopt_free(o);
    mn_lopt_config cfg = small_config(MN_LOPT_MNEMOSYNE_C); /* 2 layers, 2 heads, learned tau, r = M = 3 */
    cfg.extended = true;
    o = mn_lopt_new_config(&cfg, 6);
    perturb_weights(o, 60, 0.3f);
    expect_match(o, "small config, extended features", &mixed_sizes, 1.0f, 4);
    mn_lopt_free(o);
}

static void fused_mnemosyne_t_matches_graph_path(void **state) {
    (void)state;
    mn_lopt_config cfg = mn_lopt_default_config(MN_LOPT_MNEMOSYNE_T);
    mn_lopt *o = mn_lopt_new_config(&cfg, 7);
    perturb_weights(o, 70, 0.2f);
    expect_match(o, "default config", &mixed_sizes, 0.7f, 5);
    size_t keep = lf_keep_embeddings_max;
    lf_keep_embeddings_max = 0; /* the head forms the embeddings again, and advances the moments */
    expect_match(o, "default config, embeddings formed twice", &mixed_sizes, 0.7f, 5);
    lf_keep_embeddings_max = keep;
    mn_lopt_free(o);
    /* a tensor with more level-2 chunks than max_meta: 12000 coordinates make 375 level-1 tokens,
     * 12 level-2 chunks > 8, pooled two by two into 6 meta-tokens (with max_meta 64 the same
     * happens from 65537 coordinates on, too slow a graph path for this test) */
    cfg.max_meta = 8;
    o = mn_lopt_new_config(&cfg, 7);
    perturb_weights(o, 70, 0.2f);
    tensor_list big = mixed_sizes;
    big.ndim[big.n] = 2, big.shape[big.n][0] = 12, big.shape[big.n][1] = 1000, big.n++;
    assert_int_equal(lopt_meta_tokens(12000, cfg.chunk, cfg.max_meta), 6);
    expect_match(o, "default config, max_meta 8, 12000 coordinates", &big, 0.7f, 5);
    mn_lopt_free(o);
    cfg = small_config(MN_LOPT_MNEMOSYNE_T); /* chunk 2, max_meta 2, 2 HPE heads, M = 3 */
    o = mn_lopt_new_config(&cfg, 8);
    perturb_weights(o, 80, 0.3f);
    expect_match(o, "small config", &mixed_sizes, 1.0f, 6);
    mn_lopt_free(o);
    cfg.chunk = 5, cfg.max_meta = 3, cfg.layers = 2, cfg.extended = false; /* F = 2, chunks that do not divide 64 */
    o = mn_lopt_new_config(&cfg, 9);
    perturb_weights(o, 90, 0.3f);
    expect_match(o, "chunk 5, 2 CAM layers, plain features", &mixed_sizes, 1.0f, 7);
    mn_lopt_free(o);
}

/* The state layouts are shared: steps may switch between the paths. */
static void paths_alternate_on_one_state(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        mn_lopt_config cfg = small_config(kinds[k]);
        mn_lopt *o = mn_lopt_new_config(&cfg, 11);
        perturb_weights(o, 110, 0.3f);
        double e = compare_paths(o, &few_sizes, 5, 0x15 /* fused, graph, fused, graph, fused */, 1.0f, 8);
        print_message("%s: alternating paths, worst relative difference %.3g\n", mn_lopt_kind_name(cfg.kind), e);
        /* twice the tolerance: after four steps the states differ by their rounding (~5e-7), which
         * the small config's steep update (alpha 1, beta 0.5, weights perturbed by 0.3) amplifies */
        assert_true(e <= 2 * TOLERANCE);
        mn_lopt_free(o);
    }
}

/* Blocks run in parallel above a size; the result does not depend on the thread count. */
static void fused_step_is_independent_of_thread_count(void **state) {
    (void)state;
    static const tensor_list big = {3, {2, 1, 1}, {{100, 150}, {4001}, {77}}}; /* 19078 coordinates */
    int threads = omp_get_max_threads();
    for (int k = 0; k < 3; k++) {
        mn_scope sc = mn_scope_begin();
        mn_lopt *o = mn_lopt_new(kinds[k], 12);
        perturb_weights(o, 120, 0.2f);
        mn_tensor *theta[MAX_TENSORS], *out[2][MAX_TENSORS], *g[MAX_TENSORS];
        make_params(&big, theta);
        mn_lopt_state *s[2];
        for (int r = 0; r < 2; r++) {
            omp_set_num_threads(r == 0 ? 1 : 2);
            s[r] = mn_lopt_state_new(o, big.n, theta);
            for (int t = 0; t < 2; t++) {
                for (int i = 0; i < big.n; i++)
                    g[i] = mixed_grad(40 + (uint64_t)(t * 10 + i), big.ndim[i], big.shape[i]);
                apply_step(o, s[r], big.n, theta, g, 1.0f, true, out[r]);
            }
        }
        omp_set_num_threads(threads);
        for (int i = 0; i < big.n; i++) assert_true(same_bits(out[0][i], out[1][i]));
        for (int j = 0; j < s[0]->n_slots; j++) assert_true(same_bits(s[0]->slot[j], s[1]->slot[j]));
        mn_lopt_state_free(s[0]);
        mn_lopt_state_free(s[1]);
        mn_lopt_free(o);
        mn_scope_end(sc);
    }
}

/* The kernels are compiled per ISA; every level this CPU has matches the graph path. */
static void fused_kernels_of_every_isa_match(void **state) {
    (void)state;
    mn_isa best = mn_cpu_isa();
    for (int isa = MN_ISA_SCALAR; isa <= (int)best; isa++) {
        mn_cpu_set_isa((mn_isa)isa);
        for (int k = 0; k < 3; k++) {
            mn_lopt_config cfg = small_config(kinds[k]);
            mn_lopt *o = mn_lopt_new_config(&cfg, 13);
            perturb_weights(o, 130, 0.3f);
            double e = compare_paths(o, &few_sizes, 2, ~0u, 1.0f, 9);
            print_message("%s on %s: worst relative difference %.3g\n", mn_lopt_kind_name(cfg.kind),
                          mn_isa_name((mn_isa)isa), e);
            assert_true(e <= TOLERANCE);
            mn_lopt_free(o);
        }
    }
    mn_cpu_set_isa(best);
}

/* The adapter (always fused: it steps with grad mode off) against the graph path's mn_lopt_apply:
 * lr_scale 0.7, "b" at half the rate, "w" with weight decay 0.5, and one step where "b" has no
 * gradient (no update, its state unchanged). */
static void adapter_matches_graph_path(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        mn_scope sc = mn_scope_begin();
        mn_lopt *o = mn_lopt_new(kinds[k], 14);
        perturb_weights(o, 140, 0.2f);
        mn_params ps = {0};
        /* small parameters: the rounding of p (1 - decay) stays far below the update */
        mn_params_add(&ps, NULL, "w", mn_requires_grad(tu_rand(3, MN_SHAPE(45, 31), -1e-3f, 1e-3f), true), false);
        mn_params_add(&ps, NULL, "b", mn_requires_grad(tu_rand(4, MN_SHAPE(77), -1e-3f, 1e-3f), true), true);
        mn_optimizer *opt = mn_lopt_optimizer(o, &ps, 0.7f);
        mn_optim_group(opt, "b", 0.5f, 0.0f);
        mn_optim_group(opt, "w", 1.0f, 0.5f);
        const float lr[2] = {0.7f, 0.35f}, decay[2] = {1.0f - 1e-3f * 0.7f * 0.5f, 1.0f};
        mn_tensor *ts[2] = {ps.items[0].tensor, ps.items[1].tensor}, *zero[2];
        tensor_list tl = {2, {2, 1}, {{45, 31}, {77}}};
        make_params(&tl, zero);
        mn_lopt_state *ref = mn_lopt_state_new(o, 2, ts);
        for (int step = 1; step <= 4; step++) {
            mn_scope step_sc = mn_scope_begin();
            bool b_frozen = step == 3;
            mn_tensor *g[2], *delta[2], *before[2];
            for (int i = 0; i < 2; i++) {
                g[i] = mixed_grad(200 + 10 * (uint64_t)step + (uint64_t)i, ts[i]->ndim, ts[i]->shape);
                before[i] = mnt_clone(ts[i]);
                mn_release(ts[i]->grad);
                ts[i]->grad = i == 1 && b_frozen ? NULL : mn_retain(mnt_clone(g[i]));
            }
            mn_optim_step(opt);
            if (!b_frozen) { /* the reference: one graph-path step from zeros gives the deltas */
                apply_step(o, ref, 2, zero, g, 1.0f, false, delta);
            } else { /* only "w" advances: a state over "w" alone would differ, so step "w" via a copy */
                mn_tensor *slots[LOPT_MAX_SLOTS];
                for (int j = 0; j < ref->n_slots; j++) slots[j] = mnt_clone(ref->slot[j]);
                int64_t b_steps = ref->steps[1];
                apply_step(o, ref, 2, zero, g, 1.0f, false, delta);
                ref->steps[1] = b_steps;
                for (int j = 0; j < ref->n_slots; j++) { /* restore b's part */
                    int axis;
                    int64_t a, b;
                    lopt_slot_range(ref, j, 1, &axis, &a, &b);
                    mnt_copy_(mnt_slice(ref->slot[j], axis, a, b, 1), mnt_slice(slots[j], axis, a, b, 1));
                }
            }
            for (int i = 0; i < 2; i++) {
                double e;
                if (i == 1 && b_frozen) e = same_bits(ts[i], before[i]) ? 0 : INFINITY;
                else e = rel_err(mn_sub(ts[i], mn_scale(before[i], decay[i])), mn_scale(delta[i], lr[i]));
                if (!(e <= TOLERANCE))
                    fail_msg("%s step %d: %s differs from the graph path by %.3g", mn_lopt_kind_name(o->cfg.kind),
                             step, ps.items[i].name, e);
            }
            for (int j = 0; j < ref->n_slots; j++)
                for (int i = 0; i < 2; i++) {
                    int axis;
                    int64_t a, b;
                    lopt_slot_range(ref, j, i, &axis, &a, &b);
                    double e = rel_err(mn_optim_slot(opt, i, j), mnt_slice(ref->slot[j], axis, a, b, 1));
                    if (!(e <= TOLERANCE))
                        fail_msg("%s step %d: state %s of %s differs from the graph path by %.3g",
                                 mn_lopt_kind_name(o->cfg.kind), step, opt->slot_names[j], ps.items[i].name, e);
                }
            mn_scope_end(step_sc);
        }
        mn_lopt_state_free(ref);
        mn_optim_free(opt);
        mn_params_free(&ps);
        mn_lopt_free(o);
        mn_scope_end(sc);
    }
}

/* MNEMO_LOPT_FAST=0 turns the fused path off (for comparisons); grad mode on with weights that
 * require grad always takes the graph path. */
static void fused_path_is_taken_only_without_a_graph(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_lopt *o = mn_lopt_new(MN_LOPT_MNEMOSYNE_C, 15);
    mn_tensor *theta[1] = {mn_zeros(MN_SHAPE(10))}, *g[1] = {mixed_grad(1, MN_SHAPE(10))};
    mn_lopt_state *s = mn_lopt_state_new(o, 1, theta);
    assert_false(lopt_fast_usable(o, s, 1, g));
    bool prev = mn_no_grad_begin();
    assert_true(lopt_fast_usable(o, s, 1, g));
    setenv("MNEMO_LOPT_FAST", "0", 1);
    assert_false(lopt_fast_usable(o, s, 1, g));
    unsetenv("MNEMO_LOPT_FAST");
    mn_no_grad_end(prev);
    /* weights that do not require grad: nothing would be recorded even with grad mode on */
    const mn_params *w = mn_lopt_weights(o);
    for (int i = 0; i < w->count; i++) w->items[i].tensor->requires_grad = false;
    assert_true(lopt_fast_usable(o, s, 1, g));
    mn_requires_grad(g[0], true);
    assert_false(lopt_fast_usable(o, s, 1, g));
    for (int i = 0; i < w->count; i++) w->items[i].tensor->requires_grad = true;
    mn_lopt_state_free(s);
    mn_lopt_free(o);
    mn_scope_end(sc);
}

/* The fused step's own exp, GELU and sigmoid against double-precision references, on every ISA
 * this CPU has: exp and sigmoid to a few ulp, GELU to 2e-7 of max(1, |gelu|) (float rounding of
 * its O(1) values), over a dense grid, the clamped ranges and the special values. */
static void fused_elementwise_functions_match_libm(void **state) {
    (void)state;
    enum { N = 40003 };
    static float x[N], y[N];
    const lf_kernels *isa_kernels[3] = {&lf_kernels_scalar, &lf_kernels_avx2, &lf_kernels_avx512};
    for (int isa = MN_ISA_SCALAR; isa <= (int)mn_cpu_isa(); isa++) {
        const lf_kernels *k = isa_kernels[isa];
        double worst_exp = 0, worst_gelu = 0, worst_sigmoid = 0;
        for (int i = 0; i < N; i++) x[i] = -86.0f + 172.0f * (float)i / (N - 1); /* n not a multiple of 4 vectors */
        memcpy(y, x, sizeof x);
        k->exp_rows(N, y);
        for (int i = 0; i < N; i++) worst_exp = fmax(worst_exp, fabs(y[i] - exp((double)x[i])) / exp((double)x[i]));
        memcpy(y, x, sizeof x);
        k->sigmoid_rows(N, y);
        for (int i = 0; i < N; i++) {
            double ref = 1.0 / (1.0 + exp(-(double)x[i]));
            worst_sigmoid = fmax(worst_sigmoid, fabs(y[i] - ref) / ref);
        }
        for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1);
        memcpy(y, x, sizeof x);
        k->gelu_rows(N, y);
        for (int i = 0; i < N; i++) {
            double ref = 0.5 * x[i] * erfc(-(double)x[i] / sqrt(2.0));
            worst_gelu = fmax(worst_gelu, fabs(y[i] - ref) / fmax(1.0, fabs(ref)));
        }
        print_message("%s: exp %.3g, sigmoid %.3g (relative), gelu %.3g\n", mn_isa_name((mn_isa)isa), worst_exp,
                      worst_sigmoid, worst_gelu);
        assert_true(worst_exp <= 3e-7);
        assert_true(worst_sigmoid <= 3e-7);
        assert_true(worst_gelu <= 2e-7);
        /* special values: exp(-inf) ~ 0, exp(inf) finite and huge, gelu(+-inf) = +inf, 0; NaN stays NaN */
        float sv[8] = {-INFINITY, INFINITY, NAN, 0.0f, -1e30f, 1e30f, -100.0f, 100.0f};
        memcpy(y, sv, sizeof sv);
        k->exp_rows(8, y);
        assert_true(y[0] >= 0 && y[0] < 1e-37f && y[1] > 1e38f && isnan(y[2]) && y[3] == 1.0f);
        memcpy(y, sv, sizeof sv);
        k->gelu_rows(8, y);
        assert_true(y[0] == 0.0f && y[1] == INFINITY && isnan(y[2]) && y[3] == 0.0f);
        assert_true(y[4] == 0.0f && y[5] == 1e30f && fabsf(y[6]) < 1e-30f && y[7] == 100.0f);
        memcpy(y, sv, sizeof sv);
        k->sigmoid_rows(8, y);
        assert_true(y[0] < 1e-37f && y[1] == 1.0f && isnan(y[2]) && y[3] == 0.5f && y[7] == 1.0f);
    }
}

/* mn_lopt_macs_per_coordinate against the optimizers' own weight matrices: each per-coordinate
 * layer costs one multiply-add per entry of its weight matrix (Mnemosyne-T: the embedding twice,
 * the level-2 layer once per chunk, the head's first layer only on its embedding half, the CAM
 * over the meta-tokens not counted), plus the products
 * with the random features and the attention or memory state, which have no weights. */
static void counted_macs_match_the_weight_matrices(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        mn_lopt_config cfg = k == 1 ? small_config(kinds[k]) : mn_lopt_default_config(kinds[k]);
        mn_lopt *o = mn_lopt_new_config(&cfg, 3);
        const mn_params *w = mn_lopt_weights(o);
        double expect = 0, d = cfg.dim;
        for (int i = 0; i < w->count; i++) {
            const char *name = w->items[i].name;
            double entries = w->items[i].tensor->ndim == 2 ? (double)mn_numel(w->items[i].tensor) : 0;
            if (cfg.kind != MN_LOPT_MNEMOSYNE_T) expect += entries;
            else if (!strncmp(name, "embed.", 6)) expect += 2 * entries;
            else if (!strncmp(name, "hpe.level1.", 11) || !strncmp(name, "head.fc2.", 9)) expect += entries;
            else if (!strncmp(name, "head.fc1.", 9)) expect += entries / 2; /* [CAM output, embedding] inputs */
            else if (!strncmp(name, "hpe.level2.", 11)) expect += entries / cfg.chunk;
        }
        if (cfg.kind == MN_LOPT_MNEMOSYNE_C) {
            double M2 = 2.0 * cfg.features, H = cfg.heads;
            expect += cfg.layers * (2 * H * M2 * cfg.qk_dim + 2 * H * M2 * (d / H + 1));
        } else if (cfg.kind == MN_LOPT_MNEMOSYNE_T) {
            double M = cfg.hpe_features;
            expect += (2 * M * d + 2 * (M * d + M)) * (1.0 + 1.0 / cfg.chunk);
        }
        double got = mn_lopt_macs_per_coordinate(&cfg);
        print_message("%s: %.1f multiply-adds per coordinate\n", mn_lopt_kind_name(cfg.kind), got);
        assert_true(fabs(got - expect) <= 1e-9 * expect);
        mn_lopt_free(o);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fused_lstm_matches_graph_path),
        cmocka_unit_test(fused_mnemosyne_c_matches_graph_path),
        cmocka_unit_test(fused_mnemosyne_t_matches_graph_path),
        cmocka_unit_test(paths_alternate_on_one_state),
        cmocka_unit_test(fused_step_is_independent_of_thread_count),
        cmocka_unit_test(fused_kernels_of_every_isa_match),
        cmocka_unit_test(fused_elementwise_functions_match_libm),
        cmocka_unit_test(counted_macs_match_the_weight_matrices),
        cmocka_unit_test(adapter_matches_graph_path),
        cmocka_unit_test(fused_path_is_taken_only_without_a_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
