/* Embedding table: rows of a [num, dim] weight picked by int32 indices. */
#include "nn/nn.h"
#include "nn/param_init.h"

void mn_embed_init(mn_embed *e, int64_t num, int64_t dim, float std, mn_rng *rng) {
    if (num < 1 || dim < 1 || std < 0)
        mn_fatal("mn_embed_init: need num >= 1, dim >= 1, std >= 0 (got %lld, %lld, %g)", (long long)num,
                 (long long)dim, std);
    /* std == 0 gives PyTorch's nn.Embedding default N(0, 1) */
    e->weight = mn__param_normal(rng, MN_SHAPE(num, dim), std > 0 ? std : 1.0f);
}

/* int32 [...] -> [..., dim] */
mn_tensor *mn_embed_forward(const mn_embed *e, mn_tensor *index) {
    if (index->dtype != MN_I32) mn_fatal("mn_embed_forward: indices must be int32");
    return mn_embedding(e->weight, index);
}

void mn_embed_params(mn_embed *e, mn_params *p, const char *prefix) {
    mn_params_add_field(p, prefix, "weight", &e->weight, false);
}

void mn_embed_free(mn_embed *e) { mn__param_drop(&e->weight); }
