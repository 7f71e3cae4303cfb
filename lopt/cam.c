/* The compact associative memory (CAM) of Mnemosyne (Jain et al. 2023): one layer of
 * a Performer with exponential discounting, run as a recurrence. Softmax attention over the
 * whole discounted history, exp(q.k), is replaced by phi(q).phi(k) with the positive
 * hyperbolic-cosine random features phi, so the history folds into a fixed-size state
 *   S_t = gamma S_{t-1} + phi(k_t) [v_t, 1]^T     (2M x (d_h + 1) per head: N and Psi side by side)
 * and the attention output is a ratio of two readouts of it. Batched over B rows (coordinates or
 * meta-tokens); optim sits above nn here (mn_linear, mn_norm, mn_favor_features).
 *
 * Overflow: a key's exponent w.k - |k|^2/2 is at most |w|^2/2 whatever k, so keys need no
 * stabiliser (and a per-key constant would not cancel: keys are summed over time). A query's
 * features are divided by exp(max exponent), which cancels between numerator and denominator and
 * keeps them from all underflowing for a large query; eps is added to that stabilised
 * denominator (eps e^c in the unstabilised formula). */
#include "lopt/formulas.h"
#include "lopt/learned_internal.h"

#include <math.h>
#include <stdio.h>

void lopt_cam_init(lopt_cam *c, const mn_lopt_config *cfg, mn_rng *rng) {
    int64_t d = cfg->dim, hr = (int64_t)cfg->heads * cfg->qk_dim, f = cfg->ffn_dim;
    float s = 1.0f / sqrtf((float)d);
    mn_linear_init(&c->query, d, hr, false, s, rng);
    mn_linear_init(&c->key, d, hr, false, s, rng);
    mn_linear_init(&c->value, d, d, false, s, rng);
    /* the attention and FFN branches start small, so the residual path (the carrier of the
     * untrained optimizer's sign-like update) dominates until meta-training finds a use for them */
    mn_linear_init(&c->output, d, d, false, 0.1f * s, rng);
    mn_norm_init(&c->norm1, d, cfg->ln_eps);
    mn_linear_init(&c->ffn1, d, f, false, s, rng);
    mn_linear_init(&c->ffn2, f, d, false, 0.1f / sqrtf((float)f), rng);
    mn_norm_init(&c->norm2, d, cfg->ln_eps);
    mn_scope sc = mn_scope_begin();
    c->tau_raw = NULL;
    if (cfg->learn_tau) /* softplus^-1(tau) = log(e^tau - 1) */
        c->tau_raw = mn_requires_grad(mn_retain(mn_full(MN_SHAPE(1), (float)log(expm1((double)cfg->tau)))), true);
    c->omega = mn_retain(mn_favor_features(cfg->features, cfg->qk_dim, rng));
    mn_scope_end(sc);
}

void lopt_cam_params(lopt_cam *c, mn_params *w, mn_params *features, const char *prefix) {
    char name[256];
#define SUB(s) (snprintf(name, sizeof name, "%s.%s", prefix, s), name)
    mn_linear_params(&c->query, w, SUB("query"));
    mn_linear_params(&c->key, w, SUB("key"));
    mn_linear_params(&c->value, w, SUB("value"));
    mn_linear_params(&c->output, w, SUB("output"));
    mn_norm_params(&c->norm1, w, SUB("norm1"));
    mn_linear_params(&c->ffn1, w, SUB("ffn1"));
    mn_linear_params(&c->ffn2, w, SUB("ffn2"));
    mn_norm_params(&c->norm2, w, SUB("norm2"));
    mn_params_add(w, prefix, "tau_raw", c->tau_raw, true);
    snprintf(name, sizeof name, "features.%s", prefix);
    mn_params_add(features, name, "omega", c->omega, true);
#undef SUB
}

void lopt_cam_free(lopt_cam *c) {
    mn_linear_free(&c->query);
    mn_linear_free(&c->key);
    mn_linear_free(&c->value);
    mn_linear_free(&c->output);
    mn_norm_free(&c->norm1);
    mn_linear_free(&c->ffn1);
    mn_linear_free(&c->ffn2);
    mn_norm_free(&c->norm2);
    mn_release(c->tau_raw);
    mn_release(c->omega);
    c->tau_raw = c->omega = NULL;
}

/* z [..., r, B], omega [M, r] -> [..., 2M, B] */
mn_tensor *lopt_cam_phi(mn_tensor *z, mn_tensor *omega, bool stabilise) {
    char sz[96], so[96];
    if (omega->ndim != 2 || z->ndim < 2 || z->shape[z->ndim - 2] != omega->shape[1])
        mn_fatal("lopt_cam_phi: z %s must be [..., r, B] with r omega's width (omega %s, expected [M, r])",
                 mn_shape_str(z, sz), mn_shape_str(omega, so));
    int64_t M = omega->shape[0];
    mn_scope sc = mn_scope_begin();
    /* [w; -w] turns both halves into one GEMM: exponents +-w_j.z - |z|^2/2 */
    mn_tensor *w2 = mn_concat(2, (mn_tensor *[]){omega, mn_neg(omega)}, 0);
    mn_tensor *wz = mn_matmul(w2, z); /* [..., 2M, B] */
    /* every per-column term goes into one [..., 1, B] shift, with log sqrt(2M) for the 1/sqrt(2M):
     * the stabilised exponent (w.z - |z|^2/2) - max(w.z - |z|^2/2) is w.z - max(w.z) */
    float log_norm = 0.5f * logf((float)(2 * M));
    mn_tensor *shift = stabilise ? mn_max(wz, MN_AXES(-2), true)
                                 : mn_scale(mn_sum(mn_square(z), MN_AXES(-2), true), 0.5f);
    return mn_scope_return(sc, mn_exp(mn_sub(wz, mn_add_scalar(shift, log_norm))));
}

/* phi_q, phi_k [H, 2M, B], v [H, d_h, B], S [H, 2M, d_h + 1, B] -> a [H, d_h, B]; *S_new */
mn_tensor *lopt_cam_attend(mn_tensor *phi_q, mn_tensor *phi_k, mn_tensor *v, mn_tensor *S, float gamma,
                           mn_tensor *gamma_t, float eps, mn_tensor **S_new) {
    char s1[96], s2[96], s3[96], s4[96];
    bool ok = phi_q->ndim == 3 && phi_k->ndim == 3 && v->ndim == 3 && S->ndim == 4 && mn_same_shape(phi_q, phi_k);
    ok = ok && v->shape[0] == phi_q->shape[0] && v->shape[2] == phi_q->shape[2];
    ok = ok && S->shape[0] == phi_q->shape[0] && S->shape[1] == phi_q->shape[1] && S->shape[2] == v->shape[1] + 1 &&
         S->shape[3] == phi_q->shape[2];
    if (!ok)
        mn_fatal("lopt_cam_attend: expected phi_q, phi_k [H, 2M, B], v [H, dh, B], S [H, 2M, dh + 1, B]; got %s, %s, "
                 "%s, %s", mn_shape_str(phi_q, s1), mn_shape_str(phi_k, s2), mn_shape_str(v, s3), mn_shape_str(S, s4));
    int64_t H = v->shape[0], dh = v->shape[1], B = v->shape[2];
    mn_scope sc = mn_scope_begin();
    /* [v, 1]: the last column of S accumulates the normaliser Psi alongside the memory N */
    mn_tensor *v1 = mn_concat(2, (mn_tensor *[]){v, mn_ones(MN_SHAPE(H, 1, B))}, 1);
    mn_tensor *outer = mn_mul(mn_unsqueeze(phi_k, 2), mn_unsqueeze(v1, 1));
    mn_tensor *decayed = gamma_t ? mn_mul(S, gamma_t) : mn_scale(S, gamma);
    mn_tensor *S1 = mn_add(decayed, outer);
    /* phi_q^T S' = [N'^T phi_q, Psi'^T phi_q] per row b: a reduction over the 2M features */
    mn_tensor *read = mn_sum(mn_mul(mn_unsqueeze(phi_q, 2), S1), MN_AXES(1), false); /* [H, dh + 1, B] */
    mn_tensor *num = mn_slice(read, 1, 0, dh, 1), *den = mn_slice(read, 1, dh, dh + 1, 1);
    mn_tensor *a = mn_div(num, mn_add_scalar(den, eps));
    mn_retain(S1);
    a = mn_scope_return(sc, a);
    *S_new = mn_autorelease(S1);
    return a;
}

/* gamma = exp(-tau); learned: tau = softplus(x) = max(x, 0) + log(1 + exp(-|x|)) of x = tau_raw [1] */
static float cam_gamma(const lopt_cam *c, const mn_lopt_config *cfg, mn_tensor **gamma_t) {
    *gamma_t = NULL;
    if (!c->tau_raw) return lopt_discount(cfg->tau);
    mn_tensor *x = c->tau_raw; /* lopt_softplus and lopt_discount as differentiable ops */
    mn_tensor *tau = mn_add(mn_relu(x), mn_log(mn_add_scalar(mn_exp(mn_neg(mn_abs(x))), 1.0f)));
    *gamma_t = mn_exp(mn_neg(tau));
    return mn_item(*gamma_t);
}

/* e [B, d], S [H, 2M, d_h + 1, B] -> e'' [B, d]; *S_new */
mn_tensor *lopt_cam_forward(const lopt_cam *c, const mn_lopt_config *cfg, mn_tensor *e, mn_tensor *S,
                            mn_tensor **S_new) {
    int64_t B = e->shape[0], d = cfg->dim, H = cfg->heads, r = cfg->qk_dim, dh = d / H;
    mn_scope sc = mn_scope_begin();
    /* exp(q.k / sqrt(r)) = exp(q'.k') with q' = q r^-1/4, k' = k r^-1/4, folded into the weights;
     * one GEMM gives [q; k; v] with the rows (coordinates or meta-tokens) last, the layout of the
     * state, so that the recurrence below is element-wise over long contiguous rows */
    float s = powf((float)r, -0.25f);
    mn_tensor *w = mn_concat(3, (mn_tensor *[]){mn_scale(c->query.weight, s), mn_scale(c->key.weight, s),
                                                c->value.weight}, 0);
    mn_tensor *qkv = mn_matmul(w, mn_transpose(e, 0, 1)); /* [2 H r + d, B] */
    mn_tensor *q = mn_reshape(mn_slice(qkv, 0, 0, H * r, 1), MN_SHAPE(H, r, B));
    mn_tensor *k = mn_reshape(mn_slice(qkv, 0, H * r, 2 * H * r, 1), MN_SHAPE(H, r, B));
    mn_tensor *v = mn_reshape(mn_slice(qkv, 0, 2 * H * r, 2 * H * r + d, 1), MN_SHAPE(H, dh, B));
    mn_tensor *gamma_t;
    float gamma = cam_gamma(c, cfg, &gamma_t);
    mn_tensor *S1;
    mn_tensor *a = lopt_cam_attend(lopt_cam_phi(q, c->omega, true), lopt_cam_phi(k, c->omega, false), v, S, gamma,
                                   gamma_t, cfg->cam_eps, &S1);
    /* a [d, B] back to rows first: W_O a as a^T W_O^T, a GEMM on transposed views */
    mn_tensor *attn =
        mn_matmul(mn_transpose(mn_reshape(a, MN_SHAPE(d, B)), 0, 1), mn_transpose(c->output.weight, 0, 1));
    mn_tensor *e1 = mn_norm_forward(&c->norm1, mn_add(e, attn));
    mn_tensor *ffn = mn_linear_forward(&c->ffn2, mn_gelu(mn_linear_forward(&c->ffn1, e1)));
    mn_tensor *e2 = mn_norm_forward(&c->norm2, mn_add(e1, ffn));
    mn_retain(S1);
    e2 = mn_scope_return(sc, e2);
    *S_new = mn_autorelease(S1);
    return e2;
}
