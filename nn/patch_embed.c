/* ViT patch embedding: Conv2d(C, D, kernel P, stride P) as im2col + one GEMM.
 * Non-overlapping patches make im2col a pure re-indexing (reshape/permute
 * views), so the whole layer is one matmul and its gradients come for free. */
#include "nn/nn.h"
#include "nn/param_init.h"

#include <math.h>

void mn_patch_embed_init(mn_patch_embed *pe, int64_t channels, int64_t dim, int64_t patch, float std, mn_rng *rng) {
    if (channels < 1 || dim < 1 || patch < 1 || std < 0)
        mn_fatal("mn_patch_embed_init: need channels, dim, patch >= 1 and std >= 0 (got %lld, %lld, %lld, %g)",
                 (long long)channels, (long long)dim, (long long)patch, std);
    if (std > 0) {
        pe->weight = mn__param_normal(rng, MN_SHAPE(dim, channels, patch, patch), std);
        pe->bias = mn__param_full(MN_SHAPE(dim), 0.0f);
    } else {
        /* PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C P P */
        float bound = 1.0f / sqrtf((float)(channels * patch * patch));
        pe->weight = mn__param_uniform(rng, MN_SHAPE(dim, channels, patch, patch), bound);
        pe->bias = mn__param_uniform(rng, MN_SHAPE(dim), bound);
    }
    pe->patch = patch;
}

/* pixels [B, C, H, W] -> [B, (H/P)(W/P), D] */
mn_tensor *mn_patch_embed_forward(const mn_patch_embed *pe, mn_tensor *pixels) {
    int64_t P = pe->patch, D = pe->weight->shape[0], C = pe->weight->shape[1];
    char sp[96];
    if (pixels->ndim != 4 || pixels->shape[1] != C || pixels->shape[2] % P || pixels->shape[3] % P)
        mn_fatal("mn_patch_embed_forward: pixels %s must be [B, %lld, H, W] with H, W multiples of %lld",
                 mn_shape_str(pixels, sp), (long long)C, (long long)P);
    int64_t B = pixels->shape[0], gh = pixels->shape[2] / P, gw = pixels->shape[3] / P;
    mn_scope sc = mn_scope_begin();
    /* [B, C, gh, P, gw, P] -> [B, gh, gw, C, P, P] -> [B, gh gw, C P P] (rows match the weight's C, P, P order) */
    mn_tensor *x = mn_reshape(pixels, 6, (int64_t[]){B, C, gh, P, gw, P});
    x = mn_permute(x, (int[]){0, 2, 4, 1, 3, 5});
    x = mn_reshape(x, MN_SHAPE(B * gh * gw, C * P * P));
    mn_tensor *w = mn_reshape(pe->weight, MN_SHAPE(D, C * P * P));
    mn_tensor *y = mn_add(mn_matmul(x, mn_transpose(w, 0, 1)), pe->bias);
    return mn_scope_return(sc, mn_reshape(y, MN_SHAPE(B, gh * gw, D)));
}

void mn_patch_embed_params(mn_patch_embed *pe, mn_params *p, const char *prefix) {
    mn_params_add_field(p, prefix, "weight", &pe->weight, false);
    mn_params_add_field(p, prefix, "bias", &pe->bias, true);
}

void mn_patch_embed_free(mn_patch_embed *pe) {
    mn__param_drop(&pe->weight);
    mn__param_drop(&pe->bias);
}
