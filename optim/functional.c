/* The SGD and Adam update rules written with differentiable mn_* ops, for
 * meta-training through optimizer steps. Each performs the same float
 * operations, in the same order, as the fused loops in sgd.c and adam.c. */
#include "optim/optimizer_internal.h"

static void check_like(const char *op, const char *what, mn_tensor *t, mn_tensor *param) {
    if (t && !mn_same_shape(t, param)) {
        char a[96], b[96];
        mn_fatal("%s: %s %s does not match the parameter %s", op, what, mn_shape_str(t, a), mn_shape_str(param, b));
    }
}

/* Hands the scope-owned extra result t (retained before the scope ended) to the caller's scope. */
static void hand_out(mn_tensor *t, mn_tensor **out) {
    if (out) *out = t ? mn_autorelease(t) : NULL;
    else mn_release(t);
}

/* [*] param, grad, buf -> [*] new param, [*] new buf */
mn_tensor *mn_sgd_update(mn_tensor *param, mn_tensor *grad, mn_tensor *buf, float lr, float momentum, bool nesterov,
                         float weight_decay, mn_tensor **new_buf) {
    check_like("mn_sgd_update", "grad", grad, param);
    check_like("mn_sgd_update", "momentum buffer", buf, param);
    if (nesterov && momentum == 0) mn_fatal("mn_sgd_update: Nesterov momentum requires momentum > 0");
    mn_scope sc = mn_scope_begin();
    mn_tensor *d = weight_decay != 0 ? mn_add(grad, mn_scale(param, weight_decay)) : grad;
    mn_tensor *b = NULL;
    if (momentum != 0) {
        b = buf ? mn_add(mn_scale(buf, momentum), d) : d; /* a zero buffer gives d exactly */
        d = nesterov ? mn_add(d, mn_scale(b, momentum)) : b;
        mn_retain(b);
    }
    mn_tensor *p = mn_scope_return(sc, mn_sub(param, mn_scale(d, lr)));
    hand_out(b, new_buf);
    return p;
}

/* sqrt(v) with a zero derivative where v is exactly 0 (a coordinate whose gradients have all been 0):
 * sqrt's own derivative is infinite there, and infinity times the zero of d(g^2)/dg would make
 * d(new param)/d(grad) NaN. The values are sqrt's, bit for bit. */
static mn_tensor *sqrt_zero_safe(mn_tensor *v) {
    mn_tensor *pos = mn_gt(v, mn_scalar(0));
    return mn_where(pos, mn_sqrt(mn_where(pos, v, mn_ones_like(v))), mn_zeros_like(v));
}

/* [*] param, grad, m, v -> [*] new param, [*] new m, [*] new v */
mn_tensor *mn_adam_update(mn_tensor *param, mn_tensor *grad, mn_tensor *m, mn_tensor *v, int64_t step, float lr,
                          float beta1, float beta2, float eps, float weight_decay, bool decoupled, mn_tensor **new_m,
                          mn_tensor **new_v) {
    check_like("mn_adam_update", "grad", grad, param);
    check_like("mn_adam_update", "exp_avg", m, param);
    check_like("mn_adam_update", "exp_avg_sq", v, param);
    if (step < 1) mn_fatal("mn_adam_update: step %lld < 1 (steps count from 1)", (long long)step);
    mn_scope sc = mn_scope_begin();
    mn_tensor *g = grad, *p = param;
    if (weight_decay != 0 && !decoupled) g = mn_add(grad, mn_scale(param, weight_decay));
    if (weight_decay != 0 && decoupled) p = mn_scale(param, mn_adamw_decay_factor(lr, weight_decay));
    mn_tensor *m1 = mn_scale(g, 1.0f - beta1), *v1 = mn_scale(mn_square(g), 1.0f - beta2);
    if (m) m1 = mn_add(mn_scale(m, beta1), m1);
    if (v) v1 = mn_add(mn_scale(v, beta2), v1);
    mn_tensor *bc2_sqrt = mn_scalar(mn_adam_bc2_sqrt(beta2, step));
    mn_tensor *denom = mn_add_scalar(mn_div(sqrt_zero_safe(v1), bc2_sqrt), eps);
    mn_tensor *step_dir = mn_scale(mn_div(m1, denom), mn_adam_step_size(lr, beta1, step));
    mn_retain(m1);
    mn_retain(v1);
    mn_tensor *out = mn_scope_return(sc, mn_sub(p, step_dir));
    hand_out(m1, new_m);
    hand_out(v1, new_v);
    return out;
}
