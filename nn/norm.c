/* LayerNorm over the last dimension with a learned scale and shift. */
#include "nn/nn.h"
#include "nn/param_init.h"

void mn_norm_init(mn_norm *n, int64_t dim, float eps) {
    if (dim < 1 || !(eps >= 0))
        mn_fatal("mn_norm_init: need dim >= 1 and eps >= 0 (got %lld, %g)", (long long)dim, eps);
    n->weight = mn__param_full(MN_SHAPE(dim), 1.0f);
    n->bias = mn__param_full(MN_SHAPE(dim), 0.0f);
    n->eps = eps;
}

/* [..., dim] -> [..., dim] */
mn_tensor *mn_norm_forward(const mn_norm *n, mn_tensor *x) { return mn_layernorm(x, n->weight, n->bias, n->eps); }

void mn_norm_params(mn_norm *n, mn_params *p, const char *prefix) {
    mn_params_add_field(p, prefix, "weight", &n->weight, true);
    mn_params_add_field(p, prefix, "bias", &n->bias, true);
}

void mn_norm_free(mn_norm *n) {
    mn__param_drop(&n->weight);
    mn__param_drop(&n->bias);
}
