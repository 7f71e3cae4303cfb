/* Mnemosyne-T's hierarchical pooling encoding (HPE, Jain et al. 2023): each tensor's
 * coordinates, in flattened order, are cut into chunks of c; a bidirectional Performer layer
 * (pre-LN, non-causal FAVOR+ within the chunk, then FFN) runs over every chunk and each chunk is
 * mean-pooled to a token (level 1); the same over the level-1 tokens gives ceil(n / c^2) tokens
 * (level 2), pooled further to at most max_meta meta-tokens per tensor.
 *
 * All tensors are encoded in one batch: chunks never straddle tensors (each tensor's last chunk
 * is padded, with the padding masked out of attention and pooling), and the gather/scatter maps
 * between coordinates, chunk slots, tokens and meta-tokens are rebuilt each step from the layout
 * (a few int32 arrays of about P entries, cheaper to rebuild than to keep as state). */
#include "lopt/learned_internal.h"

#include <stdio.h>
#include <stdlib.h>

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void lopt_hpe_init(mn_lopt *o, mn_rng *rng) {
    const mn_lopt_config *cfg = &o->cfg;
    for (int l = 0; l < 2; l++) {
        /* small weights: both layers start close to the identity (residual) map */
        mn_block_init(&o->hpe[l], cfg->dim, cfg->hpe_heads, cfg->hpe_ffn_dim, MN_ACT_GELU, true, cfg->ln_eps, 0.1f,
                      rng);
        mn_mha_use_performer(&o->hpe[l].attn, cfg->hpe_features, rng);
    }
}

void lopt_hpe_params(mn_lopt *o, mn_params *w, mn_params *features) {
    static const char *const names[2] = {"hpe.level1", "hpe.level2"};
    char name[64];
    for (int l = 0; l < 2; l++) {
        mn_block_params(&o->hpe[l], w, names[l]);
        snprintf(name, sizeof name, "features.%s", names[l]);
        mn_params_add(features, name, "omega", o->hpe[l].attn.omega, true);
    }
}

void lopt_hpe_free(mn_lopt *o) {
    for (int l = 0; l < 2; l++) mn_block_free(&o->hpe[l]);
}

/* Chunks of c over items 0 .. n-1 of each tensor (items at base[i] ..): slot (chunk, j) gathers
 * item base[i] + chunk c + j, or pad (the index of a zero row) past the end. Writes the gather
 * index [chunks * c] and the mask keep [chunks, c]; returns the number of chunks. */
static int64_t chunk_maps(const lopt_layout *lay, const int64_t *n_items, const int64_t *base, int64_t c,
                          int64_t pad, mn_tensor **index, mn_tensor **keep, mn_tensor **count) {
    int64_t chunks = 0;
    for (int i = 0; i < lay->n; i++) chunks += ceil_div(n_items[i], c);
    *index = mn_empty_dtype(MN_I32, MN_SHAPE(chunks * c));
    *keep = mn_empty(MN_SHAPE(chunks, c));
    *count = mn_empty(MN_SHAPE(chunks, 1));
    int32_t *idx = mn_idata(*index);
    float *kp = mn_data(*keep), *cnt = mn_data(*count);
    int64_t slot = 0, chunk = 0;
    for (int i = 0; i < lay->n; i++) {
        for (int64_t start = 0; start < n_items[i]; start += c, chunk++) {
            int64_t real = n_items[i] - start < c ? n_items[i] - start : c;
            for (int64_t j = 0; j < c; j++, slot++) {
                idx[slot] = (int32_t)(j < real ? base[i] + start + j : pad);
                kp[slot] = j < real ? 1.0f : 0.0f;
            }
            cnt[chunk] = (float)real;
        }
    }
    return chunks;
}

/* x [chunks, c, d] through one Performer layer, masked mean over each chunk -> [chunks, d] */
static mn_tensor *encode_and_pool(const mn_block *layer, mn_tensor *x, mn_tensor *keep, mn_tensor *count) {
    mn_tensor *y = mn_block_forward(layer, x, keep, NULL);
    return mn_div(mn_sum(mn_mul(y, mn_unsqueeze(keep, 2)), MN_AXES(1), false), count);
}

/* rows [n, d] -> [n + 1, d]: a zero row at the end for the padding slots to gather */
static mn_tensor *with_zero_row(mn_tensor *rows) {
    return mn_concat(2, (mn_tensor *[]){rows, mn_zeros(MN_SHAPE(1, rows->shape[1]))}, 0);
}

/* e [P, d] -> meta-tokens [B, d] */
mn_tensor *lopt_hpe_encode(const mn_lopt *o, const lopt_layout *lay, mn_tensor *e) {
    const mn_lopt_config *cfg = &o->cfg;
    int64_t c = cfg->chunk, d = cfg->dim, n = lay->n;
    mn_scope sc = mn_scope_begin();
    /* level 1: chunks of coordinates */
    mn_tensor *idx1, *keep1, *count1;
    int64_t chunks1 = chunk_maps(lay, lay->numel, lay->offset, c, lay->total, &idx1, &keep1, &count1);
    mn_tensor *x1 = mn_reshape(mn_index_select(with_zero_row(e), 0, idx1), MN_SHAPE(chunks1, c, d));
    mn_tensor *tokens1 = encode_and_pool(&o->hpe[0], x1, keep1, count1); /* [chunks1, d] */

    /* level 2: chunks of level-1 tokens */
    int64_t *n1 = calloc((size_t)n, sizeof *n1), *base1 = calloc((size_t)n, sizeof *base1);
    if (!n1 || !base1) mn_fatal("lopt_hpe_encode: out of memory");
    for (int64_t i = 0, acc = 0; i < n; i++) {
        n1[i] = ceil_div(lay->numel[i], c);
        base1[i] = acc;
        acc += n1[i];
    }
    mn_tensor *idx2, *keep2, *count2;
    int64_t chunks2 = chunk_maps(lay, n1, base1, c, chunks1, &idx2, &keep2, &count2);
    mn_tensor *x2 = mn_reshape(mn_index_select(with_zero_row(tokens1), 0, idx2), MN_SHAPE(chunks2, c, d));
    mn_tensor *y2 = mn_reshape(mn_block_forward(&o->hpe[1], x2, keep2, NULL), MN_SHAPE(chunks2 * c, d));

    /* meta-tokens: mean of the level-2 outputs over groups of c * pool level-1 tokens (pool = 1
     * unless a tensor has more than max_meta level-2 chunks); padding slots go to row B, dropped */
    int64_t B = lay->total_meta;
    mn_tensor *meta_index = mn_empty_dtype(MN_I32, MN_SHAPE(chunks2 * c));
    mn_tensor *meta_count = mn_zeros(MN_SHAPE(B, 1));
    int32_t *mi = mn_idata(meta_index);
    float *mc = mn_data(meta_count);
    int64_t slot = 0;
    for (int i = 0; i < n; i++) {
        int64_t group = c * ceil_div(ceil_div(n1[i], c), cfg->max_meta);
        for (int64_t j = 0; j < ceil_div(n1[i], c) * c; j++, slot++) {
            int64_t meta = lay->meta_offset[i] + j / group;
            mi[slot] = (int32_t)(j < n1[i] ? meta : B);
            if (j < n1[i]) mc[meta] += 1.0f;
        }
    }
    free(n1);
    free(base1);
    mn_tensor *sums = mn_index_add(MN_SHAPE(B + 1, d), 0, meta_index, y2);
    mn_tensor *meta = mn_div(mn_slice(sums, 0, 0, B, 1), meta_count);
    return mn_scope_return(sc, meta);
}

/* -> I32 [P] */
mn_tensor *lopt_hpe_coord_meta(const lopt_layout *lay, int chunk, int max_meta) {
    mn_tensor *index = mn_empty_dtype(MN_I32, MN_SHAPE(lay->total));
    int32_t *idx = mn_idata(index);
    for (int i = 0; i < lay->n; i++) {
        int64_t n1 = ceil_div(lay->numel[i], chunk);
        int64_t group = (int64_t)chunk * ceil_div(ceil_div(n1, chunk), max_meta);
        for (int64_t k = 0; k < lay->numel[i]; k++)
            idx[lay->offset[i] + k] = (int32_t)(lay->meta_offset[i] + (k / chunk) / group);
    }
    return index;
}
