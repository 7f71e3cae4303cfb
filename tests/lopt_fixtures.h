/* Shared fixtures of the learned-optimizer tests (test_learned_opt.c, test_mnemosyne.c): small
 * configs that exercise every path, seeded gradients, a two-step function for gradient checks,
 * and bitwise comparison. */
#ifndef MN_LOPT_FIXTURES_H
#define MN_LOPT_FIXTURES_H

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lopt/learned_internal.h"

#define LOPT_ALL_KINDS {MN_LOPT_LSTM, MN_LOPT_MNEMOSYNE_C, MN_LOPT_MNEMOSYNE_T}

/* Small configs that still exercise every path: several layers and heads, learned tau, a chunk
 * of 2 so that padding, both HPE levels and the extra pooling (max_meta 2) all occur on tensors
 * of a dozen coordinates, and p = 2 so both preprocessing branches (|g| >= e^-2 or not) are hit
 * by gradients of moderate size. alpha = 1, beta = 0.5 make the update sensitive to every weight. */
static inline mn_lopt_config small_config(mn_lopt_kind kind) {
    mn_lopt_config c = mn_lopt_default_config(kind);
    c.precond_p = 2.0f;
    c.lstm_hidden = 3;
    c.lstm_out_scale = 1.0f;
    c.dim = 4, c.heads = 2, c.qk_dim = 3, c.features = 3, c.ffn_dim = 5;
    c.layers = kind == MN_LOPT_MNEMOSYNE_C ? 2 : 1;
    c.learn_tau = kind == MN_LOPT_MNEMOSYNE_C;
    c.tau = 0.3f;
    c.alpha = 1.0f, c.beta = 0.5f;
    c.chunk = 2, c.max_meta = 2, c.hpe_heads = 2, c.hpe_features = 3, c.hpe_ffn_dim = 5, c.head_hidden = 4;
    return c;
}

typedef struct {
    mn_lopt *o;
    mn_tensor *theta[2], *g0[2];
    int g_at; /* inputs[g_at], inputs[g_at + 1] are the second step's gradients */
} step_ctx;

/* two steps from a fresh state (the first with fixed gradients): new parameters and state, flat */
static inline mn_tensor *two_steps(mn_tensor *const *in, void *vctx) {
    step_ctx *c = vctx;
    mn_lopt_state *s = mn_lopt_state_new(c->o, 2, c->theta);
    mn_tensor *p1[2], *p2[2];
    mn_lopt_apply(c->o, s, 2, c->theta, c->g0, 1.0f, p1);
    mn_lopt_apply(c->o, s, 2, p1, &in[c->g_at], 1.0f, p2);
    mn_tensor *parts[2 + LOPT_MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < 2; i++) parts[n++] = mn_reshape(p2[i], MN_SHAPE(-1));
    /* the state (through which the second step already depends on the weights) is scaled down:
     * its entries reach ~100, and their rounding would swamp the finite differences */
    for (int k = 0; k < s->n_slots; k++) parts[n++] = mn_scale(mn_reshape(s->slot[k], MN_SHAPE(-1)), 0.01f);
    mn_tensor *out = mn_concat(n, parts, 0);
    mn_lopt_state_free(s);
    return out;
}

/* Gradients of moderate size with both signs, away from the preprocessing switch |g| = e^-2. */
static inline mn_tensor *test_grad(uint64_t seed, int ndim, const int64_t *shape) {
    mn_tensor *u = tu_rand(seed, ndim, shape, 0.0f, 1.0f);
    float *d = mn_data(u);
    for (int64_t i = 0; i < mn_numel(u); i++) {
        float mag = i % 3 == 0 ? 0.03f + 0.07f * d[i] : 0.3f + 0.7f * d[i]; /* below / above 0.135 */
        d[i] = (i % 2 ? -mag : mag);
    }
    return u;
}

static inline void check_one_step(const mn_lopt_config *cfg) {
    mn_scope sc = mn_scope_begin();
    mn_lopt *o = mn_lopt_new_config(cfg, 21);
    const mn_params *w = mn_lopt_weights(o);
    step_ctx c = {.o = o, .g_at = w->count};
    c.theta[0] = tu_rand(1, MN_SHAPE(11), -1, 1);
    c.theta[1] = tu_rand(2, MN_SHAPE(2, 2), -1, 1);
    for (int i = 0; i < 2; i++) c.g0[i] = test_grad(10 + (uint64_t)i, c.theta[i]->ndim, c.theta[i]->shape);
    int n = w->count + 2;
    mn_tensor **in = calloc((size_t)n, sizeof *in);
    for (int i = 0; i < w->count; i++) in[i] = w->items[i].tensor;
    for (int i = 0; i < 2; i++)
        in[w->count + i] = mn_requires_grad(test_grad(20 + (uint64_t)i, c.theta[i]->ndim, c.theta[i]->shape), true);
    char msg[512] = "";
    mn_check_opts opts = {.eps = 1e-3, .atol = 2e-3, .rtol = 2e-2};
    if (!mn_gradcheck(two_steps, &c, n, in, opts, msg, sizeof msg))
        fail_msg("%s: first order w.r.t. weights and gradients: %s", mn_lopt_kind_name(cfg->kind), msg);
    /* second order: w.r.t. the gradients and a few weights (embedding / first layer, head) */
    mn_tensor *sub[4] = {w->items[0].tensor, w->items[w->count - 2].tensor, in[w->count], in[w->count + 1]};
    step_ctx c2 = c;
    c2.g_at = 2;
    if (!mn_gradgradcheck(two_steps, &c2, 4, sub, opts, msg, sizeof msg))
        fail_msg("%s: second order: %s", mn_lopt_kind_name(cfg->kind), msg);
    free(in);
    mn_lopt_free(o);
    mn_scope_end(sc);
}

/* bitwise equality of the elements (any layout) */
static inline bool same_bits(mn_tensor *a, mn_tensor *b) {
    if (!mn_same_shape(a, b)) return false;
    size_t n = (size_t)mn_numel(a);
    float *x = malloc(sizeof(float) * (n + 1)), *y = malloc(sizeof(float) * (n + 1));
    mn_to_array(a, x);
    mn_to_array(b, y);
    bool same = memcmp(x, y, sizeof(float) * n) == 0;
    free(x);
    free(y);
    return same;
}

/* Adds N(0, std) noise to every weight, so a test does not only see the structured initialisation. */
static inline void perturb_weights(mn_lopt *o, uint64_t seed, float std) {
    const mn_params *w = mn_lopt_weights(o);
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < w->count; i++) {
        mn_rng g = mn_rng_new(seed + (uint64_t)i);
        mnt_add_(w->items[i].tensor, mn_randn_gen(&g, w->items[i].tensor->ndim, w->items[i].tensor->shape, 0, std));
    }
    mn_scope_end(sc);
}

#endif
