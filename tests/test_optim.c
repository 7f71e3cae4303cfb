/* Optimizers, schedules and clipping against independent references: the
 * PyTorch 1.13 update formulas re-implemented here in double precision, the
 * closed-form least-squares solution, closed-form schedules, a brute-force
 * norm, finite differences for the differentiable update rules, and an
 * uninterrupted run for save/load. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "optim/optim.h"

/* ---- fixtures --------------------------------------------------------------------------- */

/* Three parameters: a decayed weight, a no_decay bias, and a "head." weight for groups. */
enum { N_PARAMS = 3 };
static const char *const param_names[N_PARAMS] = {"layer.weight", "layer.bias", "head.weight"};
static const int64_t param_shapes[N_PARAMS][2] = {{3, 4}, {4, 1}, {2, 3}};
static const bool param_no_decay[N_PARAMS] = {false, true, false};

static void make_params(mn_params *ps, uint64_t seed) {
    *ps = (mn_params){0};
    for (int i = 0; i < N_PARAMS; i++) {
        int64_t shape[2] = {param_shapes[i][0], param_shapes[i][1]};
        mn_tensor *t = mn_requires_grad(tu_rand(seed + (uint64_t)i, 2, shape, -1, 1), true);
        mn_params_add(ps, NULL, param_names[i], t, param_no_decay[i]);
    }
}

/* Fresh parameters with the same names, flags and values as ps. */
static void clone_params(mn_params *out, const mn_params *ps) {
    *out = (mn_params){0};
    for (int i = 0; i < ps->count; i++) {
        mn_tensor *t = mn_requires_grad(mnt_clone(ps->items[i].tensor), true);
        mn_params_add(out, NULL, ps->items[i].name, t, ps->items[i].no_decay);
    }
}

/* A deterministic gradient for step k of parameter i, independent of the parameter values. */
static float grad_value(int k, int i, int64_t j) { return 0.8f * sinf(0.37f * (float)k + 0.11f * (float)j + (float)i); }

static void set_grad(mn_tensor *p, int k, int i) {
    int64_t n = mn_numel(p);
    float *g = malloc(sizeof(float) * (size_t)n);
    for (int64_t j = 0; j < n; j++) g[j] = grad_value(k, i, j);
    mn_scope sc = mn_scope_begin();
    mn_tensor *t = mn_retain(mn_from_data(p->ndim, p->shape, g));
    mn_scope_end(sc);
    mn_release(p->grad);
    p->grad = t;
    free(g);
}

static bool same_bits(mn_tensor *a, mn_tensor *b) {
    return mn_same_shape(a, b) && memcmp(mn_data(a), mn_data(b), sizeof(float) * (size_t)mn_numel(a)) == 0;
}

/* ---- the reference: PyTorch 1.13's formulas in double ------------------------------------- */

typedef struct {
    const char *kind; /* "sgd", "adam", "adamw" */
    double lr, momentum, wd, beta1, beta2, eps;
    bool nesterov;
} optim_cfg;

typedef struct {
    double p[64], s1[64], s2[64]; /* parameter, momentum buffer / exp_avg, exp_avg_sq */
    int64_t steps;
} ref_param;

static void ref_step(const optim_cfg *c, ref_param *r, int64_t n, const float *g, double lr, double wd) {
    int64_t t = ++r->steps;
    for (int64_t j = 0; j < n; j++) {
        double p = r->p[j], d = g[j];
        if (!strcmp(c->kind, "sgd")) {
            d += wd * p;
            if (c->momentum != 0) {
                r->s1[j] = t == 1 ? d : c->momentum * r->s1[j] + d;
                d = c->nesterov ? d + c->momentum * r->s1[j] : r->s1[j];
            }
            r->p[j] = p - lr * d;
        } else {
            if (!strcmp(c->kind, "adamw")) p *= 1 - lr * wd;
            else d += wd * p;
            r->s1[j] = c->beta1 * r->s1[j] + (1 - c->beta1) * d;
            r->s2[j] = c->beta2 * r->s2[j] + (1 - c->beta2) * d * d;
            double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
            r->p[j] = p - lr / bc1 * r->s1[j] / (sqrt(r->s2[j]) / sqrt(bc2) + c->eps);
        }
    }
}

static mn_optimizer *make_optimizer(const optim_cfg *c, const mn_params *ps) {
    if (!strcmp(c->kind, "sgd")) return mn_sgd_new(ps, (float)c->lr, (float)c->momentum, c->nesterov, (float)c->wd);
    if (!strcmp(c->kind, "adam"))
        return mn_adam_new(ps, (float)c->lr, (float)c->beta1, (float)c->beta2, (float)c->eps, (float)c->wd);
    return mn_adamw_new(ps, (float)c->lr, (float)c->beta1, (float)c->beta2, (float)c->eps, (float)c->wd);
}

/* Floats as the optimizer sees them, so the reference starts from the same numbers. */
static optim_cfg as_floats(optim_cfg c) {
    c.lr = (float)c.lr, c.momentum = (float)c.momentum, c.wd = (float)c.wd;
    c.beta1 = (float)c.beta1, c.beta2 = (float)c.beta2, c.eps = (float)c.eps;
    return c;
}

/* Three steps of the optimizer vs the reference. With use_group, "head." gets lr x 0.5 and
 * weight decay 0.2; head.weight has no gradient at step 2 (skipped, its step count lags). */
static void compare_with_reference(optim_cfg c, bool use_group) {
    c = as_floats(c);
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 10);
    mn_optimizer *o = make_optimizer(&c, &ps);
    double lr_scale[N_PARAMS], wd[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) lr_scale[i] = 1, wd[i] = param_no_decay[i] ? 0 : c.wd;
    if (use_group) {
        assert_int_equal(mn_optim_group(o, "head.", 0.5f, 0.2f), 1);
        lr_scale[2] = 0.5, wd[2] = (float)0.2;
    }
    static ref_param ref[N_PARAMS];
    memset(ref, 0, sizeof ref);
    for (int i = 0; i < N_PARAMS; i++) {
        float tmp[64];
        mn_to_array(ps.items[i].tensor, tmp);
        for (int64_t j = 0; j < mn_numel(ps.items[i].tensor); j++) ref[i].p[j] = tmp[j];
    }
    for (int k = 1; k <= 3; k++) {
        mn_optim_zero_grad(o);
        for (int i = 0; i < N_PARAMS; i++) {
            if (use_group && k == 2 && i == 2) continue;
            mn_tensor *p = ps.items[i].tensor;
            set_grad(p, k, i);
            ref_step(&c, &ref[i], mn_numel(p), mn_data(p->grad), c.lr * lr_scale[i], wd[i]);
        }
        mn_optim_step(o);
        assert_int_equal(mn_optim_step_count(o), k);
        for (int i = 0; i < N_PARAMS; i++) {
            float got[64];
            mn_to_array(ps.items[i].tensor, got);
            for (int64_t j = 0; j < mn_numel(ps.items[i].tensor); j++) {
                double want = ref[i].p[j];
                if (fabs(got[j] - want) > 1e-6 + 2e-6 * fabs(want))
                    fail_msg("%s step %d: %s[%lld] = %.9g, reference %.9g", c.kind, k, param_names[i], (long long)j,
                             got[j], want);
            }
        }
    }
    mn_optim_free(o);
    mn_params_free(&ps);
    mn_scope_end(sc);
}

static void sgd_matches_pytorch_formulas(void **state) {
    (void)state;
    const optim_cfg cfgs[] = {
        {"sgd", 0.1, 0, 0, .nesterov = false},     {"sgd", 0.1, 0.9, 0, .nesterov = false},
        {"sgd", 0.05, 0.9, 0, .nesterov = true},   {"sgd", 0.1, 0.9, 0.1, .nesterov = false},
        {"sgd", 0.07, 0.8, 0.05, .nesterov = true}, {"sgd", 0.1, 0, 0.3, .nesterov = false},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        compare_with_reference(cfgs[i], false);
        compare_with_reference(cfgs[i], true);
    }
}

static void adam_and_adamw_match_pytorch_formulas(void **state) {
    (void)state;
    const optim_cfg cfgs[] = {
        {"adam", 1e-2, 0, 0, 0.9, 0.999, 1e-8},   {"adam", 3e-2, 0, 0.1, 0.8, 0.99, 1e-6},
        {"adamw", 1e-2, 0, 0.1, 0.9, 0.999, 1e-8}, {"adamw", 5e-2, 0, 0.01, 0.85, 0.95, 1e-3},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        compare_with_reference(cfgs[i], false);
        compare_with_reference(cfgs[i], true);
    }
}

/* With a zero gradient, only weight decay moves a parameter: no_decay ones must not move,
 * unless a group gives them decay. */
static void no_decay_parameters_are_not_decayed(void **state) {
    (void)state;
    const optim_cfg cfgs[] = {{"sgd", 0.1, 0.9, 0.5}, {"adam", 0.1, 0, 0.5, 0.9, 0.999, 1e-8},
                              {"adamw", 0.1, 0, 0.5, 0.9, 0.999, 1e-8}};
    for (size_t c = 0; c < 3; c++) {
        for (int grouped = 0; grouped < 2; grouped++) {
            mn_scope sc = mn_scope_begin();
            mn_params ps;
            make_params(&ps, 20);
            mn_params before;
            clone_params(&before, &ps);
            mn_optimizer *o = make_optimizer(&cfgs[c], &ps);
            if (grouped) assert_int_equal(mn_optim_group(o, "layer.bias", 1.0f, 0.5f), 1);
            for (int k = 0; k < 2; k++) {
                for (int i = 0; i < N_PARAMS; i++) {
                    mn_tensor *p = ps.items[i].tensor;
                    mn_release(p->grad);
                    p->grad = mn_retain(mn_zeros_like(p));
                }
                mn_optim_step(o);
            }
            for (int i = 0; i < N_PARAMS; i++) {
                bool decayed = !param_no_decay[i] || grouped;
                bool moved = !same_bits(ps.items[i].tensor, before.items[i].tensor);
                if (moved != decayed)
                    fail_msg("%s%s: %s %s", cfgs[c].kind, grouped ? " (bias grouped with decay)" : "",
                             param_names[i], moved ? "moved but should not decay" : "did not decay");
            }
            mn_optim_free(o);
            mn_params_free(&ps);
            mn_params_free(&before);
            mn_scope_end(sc);
        }
    }
}

/* ---- functional rules ---------------------------------------------------------------- */

/* Optimizer steps vs the functional rules on a parameter large enough for the threaded path. */
static void functional_rules_equal_the_inplace_step(void **state) {
    (void)state;
    const optim_cfg cfgs[] = {
        {"sgd", 0.1, 0, 0.1},         {"sgd", 0.1, 0.9, 0.1},
        {"sgd", 0.1, 0.9, 0.1, .nesterov = true}, {"adam", 1e-2, 0, 0.1, 0.9, 0.999, 1e-8},
        {"adamw", 1e-2, 0, 0.1, 0.8, 0.99, 1e-6},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        mn_scope sc = mn_scope_begin();
        mn_params ps = {0};
        mn_params_add(&ps, NULL, "big", mn_requires_grad(tu_rand(31, MN_SHAPE(300, 200), -1, 1), true), false);
        mn_params_add(&ps, NULL, "small", mn_requires_grad(tu_rand(32, MN_SHAPE(7), -1, 1), true), false);
        mn_tensor *fp[2], *s1[2] = {NULL, NULL}, *s2[2] = {NULL, NULL};
        for (int i = 0; i < 2; i++) fp[i] = mn_retain(mnt_clone(ps.items[i].tensor));
        mn_optimizer *o = make_optimizer(&cfgs[c], &ps);
        const optim_cfg *f = &cfgs[c];
        for (int k = 1; k <= 3; k++) {
            mn_scope step_sc = mn_scope_begin();
            for (int i = 0; i < 2; i++) {
                set_grad(ps.items[i].tensor, k, i);
                mn_tensor *g = ps.items[i].tensor->grad, *np, *n1 = NULL, *n2 = NULL;
                if (!strcmp(f->kind, "sgd"))
                    np = mn_sgd_update(fp[i], g, s1[i], (float)f->lr, (float)f->momentum, f->nesterov, (float)f->wd,
                                       &n1);
                else
                    np = mn_adam_update(fp[i], g, s1[i], s2[i], k, (float)f->lr, (float)f->beta1, (float)f->beta2,
                                        (float)f->eps, (float)f->wd, !strcmp(f->kind, "adamw"), &n1, &n2);
                mn_release(fp[i]), mn_release(s1[i]), mn_release(s2[i]);
                fp[i] = mn_retain(np), s1[i] = n1 ? mn_retain(n1) : NULL, s2[i] = n2 ? mn_retain(n2) : NULL;
            }
            mn_optim_step(o);
            mn_scope_end(step_sc);
            for (int i = 0; i < 2; i++)
                if (!same_bits(fp[i], ps.items[i].tensor))
                    fail_msg("%s%s step %d: functional rule differs from the in-place step (%s), worst %.3g", f->kind,
                             f->nesterov ? " nesterov" : "", k, ps.items[i].name,
                             tu_close_ratio(fp[i], ps.items[i].tensor, 0, 1e-7));
        }
        for (int i = 0; i < 2; i++) mn_release(fp[i]), mn_release(s1[i]), mn_release(s2[i]);
        mn_optim_free(o);
        mn_params_free(&ps);
        mn_scope_end(sc);
    }
}

typedef struct {
    bool adam, decoupled, nesterov;
    float wd;
} rule_ctx;

/* all outputs of one update, flattened into one vector */
static mn_tensor *rule_fn(mn_tensor *const *in, void *vctx) {
    const rule_ctx *c = vctx;
    mn_tensor *a = NULL, *b = NULL, *p;
    if (c->adam)
        p = mn_adam_update(in[0], in[1], in[2], in[3], 3, 0.2f, 0.8f, 0.9f, 1e-8f, c->wd, c->decoupled, &a, &b);
    else p = mn_sgd_update(in[0], in[1], in[2], 0.3f, 0.7f, c->nesterov, c->wd, &a);
    mn_tensor *parts[3] = {mn_reshape(p, MN_SHAPE(-1)), mn_reshape(a, MN_SHAPE(-1)), NULL};
    if (b) parts[2] = mn_reshape(mn_square(b), MN_SHAPE(-1)); /* squared: v's second derivative is 0 otherwise */
    return mn_concat(b ? 3 : 2, parts, 0);
}

static void update_rules_pass_gradient_checks(void **state) {
    (void)state;
    const rule_ctx cases[] = {{false, false, false, 0}, {false, false, true, 0.1f}, {true, false, false, 0},
                              {true, false, false, 0.1f}, {true, true, false, 0.1f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mn_scope sc = mn_scope_begin();
        /* the second moment stays in [0.5, 1]: far from the sqrt's singularity and from eps */
        mn_tensor *in[4] = {
            mn_requires_grad(tu_rand(41, MN_SHAPE(2, 3), -1, 1), true),
            mn_requires_grad(tu_rand(42, MN_SHAPE(2, 3), -1, 1), true),
            mn_requires_grad(tu_rand(43, MN_SHAPE(2, 3), -0.5f, 0.5f), true),
            mn_requires_grad(tu_rand(44, MN_SHAPE(2, 3), 0.5f, 1), true),
        };
        int n = cases[c].adam ? 4 : 3;
        char msg[512] = "";
        mn_check_opts opts = {0};
        if (!mn_gradcheck(rule_fn, (void *)&cases[c], n, in, opts, msg, sizeof msg))
            fail_msg("case %zu (%s): first order: %s", c, cases[c].adam ? "adam" : "sgd", msg);
        if (!mn_gradgradcheck(rule_fn, (void *)&cases[c], n, in, opts, msg, sizeof msg))
            fail_msg("case %zu (%s): second order: %s", c, cases[c].adam ? "adam" : "sgd", msg);
        mn_scope_end(sc);
    }
}

/* Where a gradient is exactly 0 (and so is the second moment) the update is still differentiable:
 * d(new p)/d(g) = -lr / (1 - b1^t) * (1 - b1) / eps in closed form at m = v = 0 (the |g| in the
 * denominator contributes m1 * d|g| = 0), finite to second order, with the same values as the fused step. */
static mn_tensor *adam_first_step(mn_tensor *const *in, void *ctx) {
    (void)ctx;
    return mn_adam_update(in[0], in[1], NULL, NULL, 1, 0.1f, 0.9f, 0.999f, 1e-3f, 0, false, NULL, NULL);
}

static void adam_update_is_finite_at_zero_gradients(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *p = mn_requires_grad(tu_rand(45, MN_SHAPE(5), -1, 1), true);
    mn_tensor *g = mn_requires_grad(mn_from_data(MN_SHAPE(5), (float[]){0, 0.5f, 0, -0.25f, 0}), true);
    mn_tensor *in[2] = {p, g};
    mn_tensor *out = adam_first_step(in, NULL);
    mn_tensor *dg = mn_grad1(mn_sum(out, 0, NULL, false), g, MN_CREATE_GRAPH);
    const float want0 = -0.1f / (1 - 0.9f) * (1 - 0.9f) / 1e-3f;
    for (int i = 0; i < 5; i++) {
        float d = mn_data(dg)[i];
        if (!isfinite(d)) fail_msg("d(new p)/d(g)[%d] = %g", i, d);
        if (mn_data(g)[i] == 0) assert_float_equal(d, want0, 1e-3 * fabs(want0));
        assert_float_equal(mn_data(out)[i], mn_data(p)[i] - (mn_data(g)[i] == 0 ? 0 : 0.1f * (mn_data(g)[i] > 0 ? 1 : -1)), 1e-3);
    }
    mn_tensor *d2 = mn_grad1(mn_sum(mn_square(dg), 0, NULL, false), g, 0); /* through the backward pass */
    for (int i = 0; i < 5; i++)
        if (!isfinite(mn_data(d2)[i])) fail_msg("second order [%d] = %g", i, mn_data(d2)[i]);
    /* and v = 0 given explicitly (a later step whose gradients were all 0 so far) */
    mn_tensor *zero = mn_zeros(MN_SHAPE(5));
    mn_tensor *out2 = mn_adam_update(p, g, zero, zero, 3, 0.1f, 0.9f, 0.999f, 1e-3f, 0, false, NULL, NULL);
    mn_tensor *dg2 = mn_grad1(mn_sum(out2, 0, NULL, false), g, 0);
    for (int i = 0; i < 5; i++)
        if (!isfinite(mn_data(dg2)[i])) fail_msg("v = 0: d/d(g)[%d] = %g", i, mn_data(dg2)[i]);
    mn_scope_end(sc);
}

/* ---- convergence ------------------------------------------------------------------------ */

enum { LS_ROWS = 24, LS_COLS = 6 };

/* Solves (A^T A) x = A^T b by Gaussian elimination with partial pivoting, in double. */
static void least_squares_solution(const float *A, const float *b, double *x) {
    double M[LS_COLS][LS_COLS + 1] = {{0}};
    for (int i = 0; i < LS_COLS; i++) {
        for (int j = 0; j < LS_COLS; j++)
            for (int r = 0; r < LS_ROWS; r++) M[i][j] += (double)A[r * LS_COLS + i] * A[r * LS_COLS + j];
        for (int r = 0; r < LS_ROWS; r++) M[i][LS_COLS] += (double)A[r * LS_COLS + i] * b[r];
    }
    for (int c = 0; c < LS_COLS; c++) {
        int piv = c;
        for (int r = c + 1; r < LS_COLS; r++)
            if (fabs(M[r][c]) > fabs(M[piv][c])) piv = r;
        for (int j = 0; j <= LS_COLS; j++) {
            double t = M[c][j];
            M[c][j] = M[piv][j];
            M[piv][j] = t;
        }
        for (int r = 0; r < LS_COLS; r++) {
            if (r == c) continue;
            double f = M[r][c] / M[c][c];
            for (int j = c; j <= LS_COLS; j++) M[r][j] -= f * M[c][j];
        }
    }
    for (int i = 0; i < LS_COLS; i++) x[i] = M[i][LS_COLS] / M[i][i];
}

/* mean((A x - b)^2) minimised from x = 0; the schedule (if any) sets the lr each step */
static void minimise_least_squares(mn_optimizer *o, mn_tensor *x, mn_tensor *A, mn_tensor *b, int steps,
                                   const mn_schedule *sched) {
    for (int k = 0; k < steps; k++) {
        mn_scope sc = mn_scope_begin();
        if (sched) mn_optim_set_lr(o, mn_schedule_lr(sched, k));
        mn_tensor *loss = mn_mean(mn_square(mn_sub(mn_matmul(A, x), b)), MN_ALL, false);
        mn_optim_zero_grad(o);
        mn_backward(loss);
        mn_optim_step(o);
        mn_scope_end(sc);
    }
}

static void sgd_and_adam_reach_the_least_squares_solution(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *A = tu_rand(51, MN_SHAPE(LS_ROWS, LS_COLS), -1, 1), *b = tu_rand(52, MN_SHAPE(LS_ROWS, 1), -1, 1);
    double xs[LS_COLS];
    least_squares_solution(mn_data(A), mn_data(b), xs);
    for (int which = 0; which < 3; which++) {
        mn_params ps = {0};
        mn_tensor *x = mn_requires_grad(mn_zeros(MN_SHAPE(LS_COLS, 1)), true);
        mn_params_add(&ps, NULL, "x", x, false);
        mn_schedule cosine = {MN_SCHED_COSINE, 0.05f, 0.0f, 10, 1500};
        mn_optimizer *o = which == 0 ? mn_sgd_new(&ps, 0.1f, 0.9f, false, 0)
                        : which == 1 ? mn_sgd_new(&ps, 0.05f, 0.9f, true, 0)
                                     : mn_adam_new(&ps, 0.05f, 0.9f, 0.999f, 1e-8f, 0);
        minimise_least_squares(o, x, A, b, 1500, which == 2 ? &cosine : NULL);
        double worst = 0;
        for (int i = 0; i < LS_COLS; i++) worst = fmax(worst, fabs(mn_data(x)[i] - xs[i]));
        print_message("%s: max |x - x*| = %.3g\n", which == 2 ? "adam" : which ? "sgd nesterov" : "sgd", worst);
        assert_true(worst < 1e-4);
        mn_optim_free(o);
        mn_params_free(&ps);
    }
    mn_scope_end(sc);
}

/* ---- schedules and clipping ------------------------------------------------------------ */

static void schedules_match_closed_forms(void **state) {
    (void)state;
    const double pi = acos(-1.0);
    mn_schedule c = {MN_SCHED_CONSTANT, 2.0f, 0.0f, 10, 100};
    assert_float_equal(mn_schedule_lr(&c, 0), 0.0, 1e-7);
    assert_float_equal(mn_schedule_lr(&c, 3), 0.6, 1e-6);
    assert_float_equal(mn_schedule_lr(&c, 10), 2.0, 1e-6);
    assert_float_equal(mn_schedule_lr(&c, 5000), 2.0, 1e-6);
    mn_schedule l = {MN_SCHED_LINEAR, 1.0f, 0.1f, 10, 110};
    assert_float_equal(mn_schedule_lr(&l, 5), 0.5, 1e-6);
    assert_float_equal(mn_schedule_lr(&l, 10), 1.0, 1e-6);
    assert_float_equal(mn_schedule_lr(&l, 60), 0.1 + 0.9 * 0.5, 1e-6);
    assert_float_equal(mn_schedule_lr(&l, 85), 0.1 + 0.9 * 0.25, 1e-6);
    assert_float_equal(mn_schedule_lr(&l, 110), 0.1, 1e-6);
    assert_float_equal(mn_schedule_lr(&l, 999), 0.1, 1e-6);
    mn_schedule k = {MN_SCHED_COSINE, 1.0f, 0.0f, 0, 100};
    assert_float_equal(mn_schedule_lr(&k, 0), 1.0, 1e-6);
    assert_float_equal(mn_schedule_lr(&k, 25), 0.5 * (1 + cos(pi / 4)), 1e-6);
    assert_float_equal(mn_schedule_lr(&k, 50), 0.5, 1e-6);
    assert_float_equal(mn_schedule_lr(&k, 100), 0.0, 1e-7);
    assert_float_equal(mn_schedule_lr(&k, 150), 0.0, 1e-7);
    mn_schedule kw = {MN_SCHED_COSINE, 3e-4f, 1e-5f, 100, 1100};
    assert_float_equal(mn_schedule_lr(&kw, 50), 1.5e-4, 1e-9);
    double want = 1e-5 + (3e-4 - 1e-5) * 0.5 * (1 + cos(pi * 300.0 / 1000.0));
    assert_float_equal(mn_schedule_lr(&kw, 400), want, 1e-9);
    mn_sched_kind kind = MN_SCHED_CONSTANT;
    assert_true(mn_schedule_parse("cosine", &kind) && kind == MN_SCHED_COSINE);
    assert_true(mn_schedule_parse("linear", &kind) && kind == MN_SCHED_LINEAR);
    assert_true(mn_schedule_parse("constant", &kind) && kind == MN_SCHED_CONSTANT);
    assert_false(mn_schedule_parse("Cosine", &kind));
    assert_false(mn_schedule_parse("", &kind));
}

/* Gradients of norm ~200 and of norm ~2e-3 (where the 1e-6 in the denominator shows). */
static void clip_grad_norm_matches_brute_force(void **state) {
    (void)state;
    const float scales[2] = {1.0f, 1e-5f};
    for (int sc_i = 0; sc_i < 2; sc_i++) {
        mn_scope sc = mn_scope_begin();
        mn_params ps = {0};
        mn_params_add(&ps, NULL, "a", mn_requires_grad(mn_zeros(MN_SHAPE(3, 5)), true), false);
        mn_params_add(&ps, NULL, "b", mn_requires_grad(mn_zeros(MN_SHAPE(70001)), true), false);
        mn_params_add(&ps, NULL, "no_grad", mn_requires_grad(mn_zeros(MN_SHAPE(5)), true), false);
        mn_tensor *orig[2];
        double sq = 0;
        for (int i = 0; i < 2; i++) {
            set_grad(ps.items[i].tensor, 1, i);
            mnt_scale_(ps.items[i].tensor->grad, scales[sc_i]);
            orig[i] = mnt_clone(ps.items[i].tensor->grad);
            for (int64_t j = 0; j < mn_numel(orig[i]); j++) sq += (double)mn_data(orig[i])[j] * mn_data(orig[i])[j];
        }
        double norm = sqrt(sq);
        /* below the threshold: nothing changes */
        assert_float_equal(mn_clip_grad_norm(&ps, (float)(2 * norm)), norm, 1e-6 * norm);
        for (int i = 0; i < 2; i++) assert_true(same_bits(ps.items[i].tensor->grad, orig[i]));
        /* above: every gradient scaled by max / (norm + 1e-6) */
        float max_norm = (float)(norm / 8);
        assert_float_equal(mn_clip_grad_norm(&ps, max_norm), norm, 1e-6 * norm);
        double coef = max_norm / (norm + 1e-6), sq_after = 0;
        for (int i = 0; i < 2; i++) {
            for (int64_t j = 0; j < mn_numel(orig[i]); j++) {
                double got = mn_data(ps.items[i].tensor->grad)[j], want = mn_data(orig[i])[j] * coef;
                if (fabs(got - want) > 2.5e-7 * fabs(want))
                    fail_msg("scale %g: grad %d[%lld]: %.9g vs %.9g", scales[sc_i], i, (long long)j, got, want);
                sq_after += got * got;
            }
        }
        assert_float_equal(sqrt(sq_after), max_norm, 1e-3 * max_norm);
        assert_null(ps.items[2].tensor->grad);
        mn_params_free(&ps);
        mn_scope_end(sc);
    }
}

/* ---- save / load --------------------------------------------------------------------- */

static char tmp_dir[64];
static char *tmp_path(const char *name) {
    static char path[128];
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/mnemo_test_optim_XXXXXX");
        assert_non_null(mkdtemp(tmp_dir));
    }
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static void tmp_cleanup(void) {
    if (tmp_dir[0]) rmdir(tmp_dir);
    tmp_dir[0] = 0;
}

static void run_steps(mn_optimizer *o, mn_params *ps, int from, int to) {
    for (int k = from; k <= to; k++) {
        for (int i = 0; i < ps->count; i++) set_grad(ps->items[i].tensor, k, i);
        mn_optim_step(o);
    }
}

static void save_and_load_continue_exactly(void **state) {
    (void)state;
    const optim_cfg cfgs[] = {{"sgd", 0.1, 0.9, 0.1, .nesterov = true},
                              {"adam", 1e-2, 0, 0.1, 0.9, 0.999, 1e-8},
                              {"adamw", 1e-2, 0, 0.1, 0.8, 0.99, 1e-6}};
    for (size_t c = 0; c < 3; c++) {
        mn_scope sc = mn_scope_begin();
        mn_params ps, ps2;
        make_params(&ps, 60);
        mn_optimizer *o = make_optimizer(&cfgs[c], &ps);
        mn_optim_group(o, "head.", 0.5f, 0.2f);
        run_steps(o, &ps, 1, 3);
        char *path = tmp_path("state.safetensors");
        mn_err err = {""};
        if (!mn_optim_save(o, path, &err)) fail_msg("save: %s", err.msg);
        clone_params(&ps2, &ps);
        optim_cfg other_lr = cfgs[c];
        other_lr.lr *= 3; /* the saved lr wins */
        mn_optimizer *o2 = make_optimizer(&other_lr, &ps2);
        mn_optim_group(o2, "head.", 0.5f, 0.2f);
        if (!mn_optim_load(o2, path, &err)) fail_msg("load: %s", err.msg);
        assert_int_equal(mn_optim_step_count(o2), 3);
        assert_true(mn_optim_lr(o2) == mn_optim_lr(o));
        run_steps(o, &ps, 4, 6);
        run_steps(o2, &ps2, 4, 6);
        for (int i = 0; i < N_PARAMS; i++)
            if (!same_bits(ps.items[i].tensor, ps2.items[i].tensor))
                fail_msg("%s: %s after a save/load differs from the uninterrupted run", cfgs[c].kind, param_names[i]);
        unlink(path);
        mn_optim_free(o);
        mn_optim_free(o2);
        mn_params_free(&ps);
        mn_params_free(&ps2);
        mn_scope_end(sc);
    }
    tmp_cleanup();
}

/* Loads path into o expecting failure with a message containing each of the words. */
static void expect_load_error(mn_optimizer *o, const char *path, const char *w1, const char *w2) {
    mn_err err = {""};
    int64_t steps = mn_optim_step_count(o);
    if (mn_optim_load(o, path, &err)) fail_msg("load of %s succeeded, expected an error about %s", path, w1);
    print_message("expected error: %s\n", err.msg);
    if (!strstr(err.msg, w1) || (w2 && !strstr(err.msg, w2)))
        fail_msg("error \"%s\" does not mention \"%s\" and \"%s\"", err.msg, w1, w2 ? w2 : "");
    assert_int_equal(mn_optim_step_count(o), steps);
}

static void load_rejects_mismatched_state(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 70);
    mn_optimizer *adam = mn_adam_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    run_steps(adam, &ps, 1, 2);
    char path[128];
    snprintf(path, sizeof path, "%s", tmp_path("adam.safetensors"));
    mn_err err = {""};
    if (!mn_optim_save(adam, path, &err)) fail_msg("save: %s", err.msg);

    mn_optimizer *sgd = mn_sgd_new(&ps, 0.1f, 0.9f, false, 0);
    expect_load_error(sgd, path, "\"adam\"", "\"sgd\"");
    mn_optimizer *adamw = mn_adamw_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f);
    expect_load_error(adamw, path, "\"adam\"", "\"adamw\"");
    mn_optimizer *other_beta = mn_adam_new(&ps, 1e-3f, 0.9f, 0.99f, 1e-8f, 0);
    expect_load_error(other_beta, path, "beta2", NULL);

    /* a parameter of another shape */
    mn_params shaped = {0};
    mn_params_add(&shaped, NULL, "layer.weight", mn_zeros(MN_SHAPE(4, 3)), false);
    mn_params_add(&shaped, NULL, "layer.bias", mn_zeros(MN_SHAPE(4, 1)), true);
    mn_params_add(&shaped, NULL, "head.weight", mn_zeros(MN_SHAPE(2, 3)), false);
    mn_optimizer *o_shape = mn_adam_new(&shaped, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    expect_load_error(o_shape, path, "state.layer.weight.exp_avg", "[3, 4]");
    /* a renamed parameter */
    mn_params renamed = {0};
    mn_params_add(&renamed, NULL, "layer.weight", mn_zeros(MN_SHAPE(3, 4)), false);
    mn_params_add(&renamed, NULL, "layer.bias", mn_zeros(MN_SHAPE(4, 1)), true);
    mn_params_add(&renamed, NULL, "head.kernel", mn_zeros(MN_SHAPE(2, 3)), false);
    mn_optimizer *o_renamed = mn_adam_new(&renamed, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    expect_load_error(o_renamed, path, "state.head.kernel", "missing");
    /* a parameter fewer: the file has state this optimizer does not know */
    mn_params fewer = {0};
    mn_params_add(&fewer, NULL, "layer.weight", mn_zeros(MN_SHAPE(3, 4)), false);
    mn_params_add(&fewer, NULL, "layer.bias", mn_zeros(MN_SHAPE(4, 1)), true);
    mn_optimizer *o_fewer = mn_adam_new(&fewer, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    expect_load_error(o_fewer, path, "state.head.weight", "does not belong");
    /* not an optimizer state file, and no file at all */
    char other[128];
    snprintf(other, sizeof other, "%s", tmp_path("model.safetensors"));
    mn_st_entry e = {"layer.weight", ps.items[0].tensor};
    assert_true(mn_st_write(other, 1, &e, 0, NULL, &err));
    expect_load_error(adam, other, "optimizer", other);
    char missing[128];
    snprintf(missing, sizeof missing, "%s", tmp_path("nothing_here.safetensors"));
    expect_load_error(adam, missing, missing, NULL);
    /* the failed loads left the optimizer working, and a good load still succeeds */
    mn_optimizer *fresh = mn_adam_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    if (!mn_optim_load(fresh, path, &err)) fail_msg("load: %s", err.msg);
    assert_int_equal(mn_optim_step_count(fresh), 2);

    mn_optimizer *all[] = {adam, sgd, adamw, other_beta, o_shape, o_renamed, o_fewer, fresh};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mn_optim_free(all[i]);
    mn_params_free(&ps), mn_params_free(&shaped), mn_params_free(&renamed), mn_params_free(&fewer);
    unlink(path), unlink(other);
    tmp_cleanup();
    mn_scope_end(sc);
}

/* ---- memory, state size, specs, misuse ------------------------------------------------ */

static void steady_state_steps_allocate_nothing(void **state) {
    (void)state;
    for (int which = 0; which < 3; which++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *A = tu_rand(81, MN_SHAPE(LS_ROWS, LS_COLS), -1, 1), *b = tu_rand(82, MN_SHAPE(LS_ROWS, 1), -1, 1);
        mn_params ps = {0};
        mn_tensor *x = mn_requires_grad(tu_rand(83, MN_SHAPE(LS_COLS, 1), -1, 1), true);
        mn_tensor *big = mn_requires_grad(tu_rand(84, MN_SHAPE(50000), -1, 1), true);
        mn_params_add(&ps, NULL, "x", x, false);
        mn_params_add(&ps, NULL, "big", big, false);
        mn_optimizer *o = which == 0 ? mn_sgd_new(&ps, 0.01f, 0.9f, true, 0.01f)
                        : which == 1 ? mn_adam_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f)
                                     : mn_adamw_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f);
        int64_t bytes_at_2 = 0, tensors_at_2 = 0;
        for (int k = 1; k <= 50; k++) {
            mn_scope step_sc = mn_scope_begin();
            mn_tensor *loss = mn_add(mn_mean(mn_square(mn_sub(mn_matmul(A, x), b)), MN_ALL, false),
                                     mn_mean(mn_square(big), MN_ALL, false));
            mn_optim_zero_grad(o);
            mn_backward(loss);
            int64_t before = mn_live_bytes(), tensors_before = mn_live_tensors();
            mn_optim_step(o);
            if (k > 1) {
                assert_int_equal(mn_live_bytes(), before);
                assert_int_equal(mn_live_tensors(), tensors_before);
            }
            mn_scope_end(step_sc);
            if (k == 2) bytes_at_2 = mn_live_bytes(), tensors_at_2 = mn_live_tensors();
            if (k > 2) {
                assert_int_equal(mn_live_bytes(), bytes_at_2);
                assert_int_equal(mn_live_tensors(), tensors_at_2);
            }
        }
        mn_optim_free(o);
        mn_params_free(&ps);
        mn_scope_end(sc);
    }
}

static void state_bytes_per_parameter(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 90);
    int64_t n = mn_params_numel(&ps);
    mn_optimizer *plain = mn_sgd_new(&ps, 0.1f, 0, false, 0), *mom = mn_sgd_new(&ps, 0.1f, 0.9f, false, 0);
    mn_optimizer *adam = mn_adam_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    mn_optimizer *adamw = mn_adamw_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f);
    assert_int_equal(mn_optim_state_bytes(plain), 0);
    assert_int_equal(mn_optim_state_bytes(mom), 4 * n);
    assert_int_equal(mn_optim_state_bytes(adam), 8 * n);
    assert_int_equal(mn_optim_state_bytes(adamw), 8 * n);
    run_steps(adam, &ps, 1, 2);
    assert_int_equal(mn_optim_state_bytes(adam), 8 * n);
    mn_optim_free(plain), mn_optim_free(mom), mn_optim_free(adam), mn_optim_free(adamw);
    mn_params_free(&ps);
    mn_scope_end(sc);
}

static void specs_build_optimizers_and_reject_bad_ones(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 95);
    int64_t n = mn_params_numel(&ps);
    mn_err err = {""};
    struct {
        const char *spec, *name;
        float lr;
        int64_t bytes_per_param;
    } good[] = {{"sgd:0.1", "sgd", 0.1f, 4}, {"sgd:0.5:0", "sgd", 0.5f, 0}, {"sgd:1e-2:0.95", "sgd", 1e-2f, 4},
                {"adam:1e-3", "adam", 1e-3f, 8}, {"adamw:3e-4", "adamw", 3e-4f, 8},
                {"adamw:3e-4:0.1", "adamw", 3e-4f, 8}, {"adamw", "adamw", 1e-3f, 8}, {"adam", "adam", 1e-3f, 8},
                {"sgd", "sgd", 0.01f, 4}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mn_optimizer *o = mn_optim_from_spec(good[i].spec, &ps, &err);
        if (!o) fail_msg("%s: %s", good[i].spec, err.msg);
        assert_string_equal(mn_optim_name(o), good[i].name);
        assert_true(mn_optim_lr(o) == good[i].lr);
        assert_int_equal(mn_optim_state_bytes(o), good[i].bytes_per_param * n);
        mn_optim_free(o);
    }
    /* "sgd:LR" is SGD with momentum 0.9: one step from a zero buffer, then a second step */
    mn_params ps2;
    clone_params(&ps2, &ps);
    mn_optimizer *o = mn_optim_from_spec("sgd:0.1", &ps, &err), *ref = mn_sgd_new(&ps2, 0.1f, 0.9f, false, 0);
    run_steps(o, &ps, 1, 2);
    run_steps(ref, &ps2, 1, 2);
    for (int i = 0; i < N_PARAMS; i++) assert_true(same_bits(ps.items[i].tensor, ps2.items[i].tensor));
    mn_optim_free(o), mn_optim_free(ref);
    struct {
        const char *spec, *w1, *w2;
    } bad[] = {
        {"", "empty", NULL},
        {"rmsprop:1e-3", "unknown optimizer \"rmsprop\"", "adamw[:LR[:WD]]"},
        {"adam:1e-3:0.1", "2 values", "adam[:LR]"},
        {"sgd:0.1:0.9:1", "3 values", "sgd[:LR[:MOMENTUM]]"},
        {"adam:fast", "learning rate \"fast\" is not a number", NULL},
        {"adam:", "learning rate \"\"", NULL},
        {"sgd:0.1:", "momentum \"\"", NULL},
        {"adam:1e-3x", "not a number", NULL},
        {"adam:-1e-3", "learning rate -1e-3 is out of range", NULL},
        {"adam:0", "out of range", NULL},
        {"adam:nan", "not a number", NULL},
        {"sgd:0.1:1", "momentum 1 is out of range", NULL},
        {"adamw:1e-3:-0.1", "weight decay -0.1 is out of range", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        mn_optimizer *b = mn_optim_from_spec(bad[i].spec, &ps, &err);
        if (b) fail_msg("spec \"%s\" was accepted", bad[i].spec);
        if (!strstr(err.msg, bad[i].w1) || (bad[i].w2 && !strstr(err.msg, bad[i].w2)))
            fail_msg("spec \"%s\": error \"%s\" does not mention \"%s\"", bad[i].spec, err.msg, bad[i].w1);
    }
    assert_null(mn_optim_from_spec("bogus:1", &ps, NULL)); /* err may be NULL */
    mn_params_free(&ps), mn_params_free(&ps2);
    mn_scope_end(sc);
}

static void step_records_nothing_and_bumps_versions(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 99);
    mn_optimizer *o = mn_adam_new(&ps, 1e-3f, 0.9f, 0.999f, 1e-8f, 0);
    assert_true(mn_grad_enabled());
    for (int i = 0; i < N_PARAMS; i++) set_grad(ps.items[i].tensor, 1, i);
    mn_tensor *w = ps.items[0].tensor;
    uint32_t v0 = w->storage->version;
    mn_optim_step(o);
    assert_true(w->storage->version != v0);
    assert_null(w->node);
    assert_true(w->requires_grad);
    mn_optim_zero_grad(o);
    for (int i = 0; i < N_PARAMS; i++) assert_null(ps.items[i].tensor->grad);
    mn_optim_set_lr(o, 0.5f);
    assert_true(mn_optim_lr(o) == 0.5f);
    assert_int_equal(mn_optim_group(o, "nothing.", 2.0f, 0.0f), 0);
    assert_int_equal(mn_optim_group(o, "layer.", 2.0f, 0.0f), 2);
    mn_optim_free(o);
    mn_params_free(&ps);
    mn_scope_end(sc);
}

static void misuse_is_reported(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_params ps;
    make_params(&ps, 100);
    mn_params empty = {0};
    EXPECT_MN_ERROR(mn_sgd_new(&empty, 0.1f, 0, false, 0), "empty parameter list");
    EXPECT_MN_ERROR(mn_sgd_new(&ps, 0.1f, 0, true, 0), "Nesterov");
    EXPECT_MN_ERROR(mn_adam_new(&ps, 1e-3f, 1.0f, 0.999f, 1e-8f, 0), "beta1");
    EXPECT_MN_ERROR(mn_adamw_new(&ps, -1.0f, 0.9f, 0.999f, 1e-8f, 0), "learning rate");
    mn_optimizer *o = mn_sgd_new(&ps, 0.1f, 0.9f, false, 0);
    mn_tensor *w = ps.items[0].tensor;
    w->grad = mn_retain(mn_zeros(MN_SHAPE(4, 3)));
    EXPECT_MN_ERROR(mn_optim_step(o), "gradient of layer.weight has shape [4, 3], the parameter [3, 4]");
    assert_int_equal(mn_optim_step_count(o), 0);
    EXPECT_MN_ERROR(mn_adam_update(w, w, NULL, NULL, 0, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, false, NULL, NULL), "step 0");
    EXPECT_MN_ERROR(mn_sgd_update(w, ps.items[1].tensor, NULL, 0.1f, 0, false, 0, NULL), "grad [4, 1]");
    mn_optim_free(o);
    mn_params_free(&ps);
    mn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sgd_matches_pytorch_formulas),
        cmocka_unit_test(adam_and_adamw_match_pytorch_formulas),
        cmocka_unit_test(no_decay_parameters_are_not_decayed),
        cmocka_unit_test(functional_rules_equal_the_inplace_step),
        cmocka_unit_test(update_rules_pass_gradient_checks),
        cmocka_unit_test(adam_update_is_finite_at_zero_gradients),
        cmocka_unit_test(sgd_and_adam_reach_the_least_squares_solution),
        cmocka_unit_test(schedules_match_closed_forms),
        cmocka_unit_test(clip_grad_norm_matches_brute_force),
        cmocka_unit_test(save_and_load_continue_exactly),
        cmocka_unit_test(load_rejects_mismatched_state),
        cmocka_unit_test(steady_state_steps_allocate_nothing),
        cmocka_unit_test(state_bytes_per_parameter),
        cmocka_unit_test(specs_build_optimizers_and_reject_bad_ones),
        cmocka_unit_test(step_records_nothing_and_bumps_versions),
        cmocka_unit_test(misuse_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
