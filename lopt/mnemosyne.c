/* Mnemosyne (Jain et al. 2023): the networks of its two variants.
 *   Mnemosyne-C: e = W_in x + b_in per coordinate -> L CAM layers (one CAM state per coordinate)
 *                -> [u, s] = W_out e'' + b_out.
 *   Mnemosyne-T: e = W_in x + b_in per coordinate -> hierarchical pooling encoding to meta-tokens
 *                -> L CAM layers (one CAM state per meta-token) -> per coordinate, the MLP
 *                (2d -> head_hidden -> 2, GELU) on [CAM output of its meta-token, e] gives [u, s].
 * The update itself, -lr_scale alpha u exp(beta s), is formed in learned.c.
 *
 * Initialisation (the untrained optimizer is a sane small-step method; all other weights are
 * small random numbers, so every path is trainable):
 *   C: embedding rows 0 and 1 are +x_sign and -x_sign exactly; the attention and FFN branches
 *      start small, so after the LayerNorms dims 0 and 1 are about +-2 sign(g), and the head's
 *      u row reads 0.25 (e''_0 - e''_1) (plus 0.01 noise): u ~ sign(g), s ~ 0. The untrained
 *      optimizer is sign descent with steps of about alpha lr_scale.
 *   T: embedding row 0 is exactly the feature m^/sqrt(v^ + eps); the head's hidden units 0, 1 are
 *      GELU(+e_0) and GELU(-e_0) and u = h_0 - h_1 = e_0 exactly (GELU(x) - GELU(-x) = x), s ~ 0.
 *      The untrained optimizer is Adam (eps inside the sqrt) at learning rate alpha lr_scale. */
#include "lopt/learned_internal.h"

#include <math.h>
#include <stdio.h>

static bool is_tensorwise(const mn_lopt *o) { return o->cfg.kind == MN_LOPT_MNEMOSYNE_T; }

void lopt_mnemosyne_init(mn_lopt *o, mn_rng *rng) {
    const mn_lopt_config *cfg = &o->cfg;
    int64_t d = cfg->dim, F = lopt_n_features(cfg), carrier = lopt_carrier_feature(cfg);
    mn_linear_init(&o->embed, F, d, true, 0.1f, rng);
    float *w_in = mn_data(o->embed.weight);
    int carrier_rows = is_tensorwise(o) ? 1 : 2;
    for (int r = 0; r < carrier_rows; r++)
        for (int64_t j = 0; j < F; j++) w_in[r * F + j] = j == carrier ? (r == 0 ? 1.0f : -1.0f) : 0.0f;
    mn_optim_touch(o->embed.weight);
    if (is_tensorwise(o)) lopt_hpe_init(o, rng);
    for (int l = 0; l < cfg->layers; l++) lopt_cam_init(&o->cam[l], cfg, rng);
    if (!is_tensorwise(o)) {
        mn_linear_init(&o->head, d, 2, true, 0.01f, rng);
        float *w = mn_data(o->head.weight);
        w[0] += 0.25f;
        w[1] -= 0.25f;
        mn_optim_touch(o->head.weight);
        return;
    }
    int64_t hidden = cfg->head_hidden;
    mn_linear_init(&o->head, 2 * d, hidden, true, 0.1f / sqrtf((float)(2 * d)), rng);
    float *w1 = mn_data(o->head.weight);
    for (int r = 0; r < 2; r++) /* input column d is the coordinate's own e_0 */
        for (int64_t j = 0; j < 2 * d; j++) w1[r * 2 * d + j] = j == d ? (r == 0 ? 1.0f : -1.0f) : 0.0f;
    mn_optim_touch(o->head.weight);
    mn_linear_init(&o->head_fc2, hidden, 2, true, 0.01f, rng);
    float *w2 = mn_data(o->head_fc2.weight);
    for (int64_t j = 0; j < hidden; j++) w2[j] = j == 0 ? 1.0f : j == 1 ? -1.0f : 0.0f;
    mn_optim_touch(o->head_fc2.weight);
}

void lopt_mnemosyne_params(mn_lopt *o, mn_params *w, mn_params *features) {
    mn_linear_params(&o->embed, w, "embed");
    if (is_tensorwise(o)) lopt_hpe_params(o, w, features);
    char prefix[32];
    for (int l = 0; l < o->cfg.layers; l++) {
        snprintf(prefix, sizeof prefix, "cam.%d", l);
        lopt_cam_params(&o->cam[l], w, features, prefix);
    }
    if (is_tensorwise(o)) {
        mn_linear_params(&o->head, w, "head.fc1");
        mn_linear_params(&o->head_fc2, w, "head.fc2");
    } else {
        mn_linear_params(&o->head, w, "head");
    }
}

void lopt_mnemosyne_free(mn_lopt *o) {
    mn_linear_free(&o->embed);
    if (is_tensorwise(o)) lopt_hpe_free(o);
    for (int l = 0; l < LOPT_MAX_CAM_LAYERS; l++)
        if (o->cam[l].omega) lopt_cam_free(&o->cam[l]);
    mn_linear_free(&o->head);
    mn_linear_free(&o->head_fc2);
}

/* x [P, F], S[l] [P or B, H, 2M, d_h + 1] -> [P, 2]; S_new[l] */
mn_tensor *lopt_mnemosyne_forward(const mn_lopt *o, const lopt_layout *lay, mn_tensor *x, mn_tensor *const *S,
                                  mn_tensor **S_new) {
    const mn_lopt_config *cfg = &o->cfg;
    mn_scope sc = mn_scope_begin();
    mn_tensor *e = mn_linear_forward(&o->embed, x); /* [P, d] */
    mn_tensor *h = is_tensorwise(o) ? lopt_hpe_encode(o, lay, e) : e; /* the CAM's rows: [B, d] or [P, d] */
    for (int l = 0; l < cfg->layers; l++) {
        h = lopt_cam_forward(&o->cam[l], cfg, h, S[l], &S_new[l]);
        mn_retain(S_new[l]);
    }
    mn_tensor *out;
    if (is_tensorwise(o)) {
        mn_tensor *per_coord = mn_index_select(h, 0, lopt_hpe_coord_meta(lay, cfg->chunk, cfg->max_meta));
        mn_tensor *hidden = mn_gelu(mn_linear_forward(&o->head, mn_concat(2, (mn_tensor *[]){per_coord, e}, 1)));
        out = mn_linear_forward(&o->head_fc2, hidden);
    } else {
        out = mn_linear_forward(&o->head, h);
    }
    out = mn_scope_return(sc, out);
    for (int l = 0; l < cfg->layers; l++) mn_autorelease(S_new[l]);
    return out;
}
