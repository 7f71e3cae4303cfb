/* The scalar formulas the learned optimizers' two paths share, so the graph path (learned.c, cam.c) and the
 * fused path (learned_fast*.c) cannot drift apart:
 *   bias correction  1 - beta^t of the extended features' moments, t >= 1, in double;
 *   discount         gamma = exp(-tau) of the CAM recurrence, tau fixed or softplus(tau_raw) when learned;
 * The graph path builds the same expressions from mn_* ops where it must differentiate them (the learned
 * discount). The update, delta = -alpha u exp(beta s) for Mnemosyne and out_scale u for the LSTM, is formed
 * once per path over whole vectors (learned.c's lopt_step, learned_fast_kernels.h's mnemosyne_update). */
#ifndef MN_LOPT_FORMULAS_H
#define MN_LOPT_FORMULAS_H

#include <math.h>
#include <stdint.h>

static inline float lopt_bias_correction(float beta, int64_t step) {
    return (float)(1.0 - pow((double)beta, (double)(step < 1 ? 1 : step)));
}

/* softplus(x) = max(x, 0) + log(1 + exp(-|x|)): no overflow for large |x| */
static inline float lopt_softplus(float x) { return fmaxf(x, 0.0f) + logf(expf(-fabsf(x)) + 1.0f); }

static inline float lopt_discount(float tau) { return expf(-tau); }

#endif
