/* Linear layer y = x W^T + b with Hugging Face's [out, in] weight layout. */
#include "nn/nn.h"
#include "nn/param_init.h"

#include <math.h>

void mn_linear_init(mn_linear *l, int64_t in, int64_t out, bool bias, float std, mn_rng *rng) {
    if (in < 1 || out < 1 || std < 0)
        mn_fatal("mn_linear_init: need in >= 1, out >= 1, std >= 0 (got in %lld, out %lld, std %g)", (long long)in,
                 (long long)out, std);
    if (std > 0) {
        l->weight = mn__param_normal(rng, MN_SHAPE(out, in), std);
        l->bias = bias ? mn__param_full(MN_SHAPE(out), 0.0f) : NULL;
    } else {
        /* PyTorch's default: kaiming_uniform(a = sqrt(5)) reduces to U(-1/sqrt(in), 1/sqrt(in)) */
        float bound = 1.0f / sqrtf((float)in);
        l->weight = mn__param_uniform(rng, MN_SHAPE(out, in), bound);
        l->bias = bias ? mn__param_uniform(rng, MN_SHAPE(out), bound) : NULL;
    }
}

/* [..., in] -> [..., out] */
mn_tensor *mn_linear_forward(const mn_linear *l, mn_tensor *x) {
    int64_t in = l->weight->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in) {
        char sx[96], sw[96];
        mn_fatal("mn_linear_forward: input %s does not end in %lld features (weight %s)", mn_shape_str(x, sx),
                 (long long)in, mn_shape_str(l->weight, sw));
    }
    /* one GEMM over all leading dims, the bias added as its starting value */
    return mn_dense(x, l->weight, l->bias);
}

void mn_linear_params(mn_linear *l, mn_params *p, const char *prefix) {
    mn_params_add_field(p, prefix, "weight", &l->weight, false);
    mn_params_add_field(p, prefix, "bias", &l->bias, true);
}

void mn_linear_free(mn_linear *l) {
    mn__param_drop(&l->weight);
    mn__param_drop(&l->bias);
}
