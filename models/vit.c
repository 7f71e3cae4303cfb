/* Vision Transformer (Dosovitskiy et al. 2021) in transformers' ViTModel /
 * ViTForImageClassification layout: patch embedding as one GEMM, a CLS token
 * and learned positions, pre-LN blocks, a final LayerNorm, and a classifier
 * on token 0 (or a tanh pooler on the bare model). */
#include "models/models_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mn_vit_arch_name(mn_vit_arch a) {
    return a == MN_VIT_FOR_IMAGE_CLASSIFICATION ? "ViTForImageClassification" : "ViTModel";
}

bool mn_vit_arch_parse(const char *name, mn_vit_arch *out) {
    if (!strcmp(name, "ViTModel")) *out = MN_VIT_MODEL;
    else if (!strcmp(name, "ViTForImageClassification")) *out = MN_VIT_FOR_IMAGE_CLASSIFICATION;
    else return false;
    return true;
}

static int64_t n_patches(const mn_vit_config *c) {
    int64_t side = c->image_size / c->patch_size;
    return side * side;
}

/* prefix + name into buf ("vit.embeddings.cls_token" or "embeddings.cls_token") */
static const char *join(char *buf, size_t n, const char *prefix, const char *name) {
    snprintf(buf, n, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name);
    return buf;
}

static void list_params(mn_vit *m) {
    const char *P = m->arch == MN_VIT_FOR_IMAGE_CLASSIFICATION ? "vit" : NULL;
    char name[256];
    mn_params *p = &m->params;
    /* HF trains these with weight decay (only biases and LayerNorm weights are exempt) */
    mn_params_add_field(p, P, "embeddings.cls_token", &m->cls_token, false);
    mn_params_add_field(p, P, "embeddings.position_embeddings", &m->position_embeddings, false);
    mn_patch_embed_params(&m->patch, p, join(name, sizeof name, P, "embeddings.patch_embeddings.projection"));
    for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++) {
        char layer[64];
        snprintf(layer, sizeof layer, "encoder.layer.%lld", (long long)i);
        mn_block_params(&m->layers[i], p, join(name, sizeof name, P, layer));
    }
    mn_norm_params(&m->layernorm, p, join(name, sizeof name, P, "layernorm"));
    if (m->pooler) mn_linear_params(&m->pooler_dense, p, "pooler.dense");
    if (m->arch == MN_VIT_FOR_IMAGE_CLASSIFICATION) mn_linear_params(&m->classifier, p, "classifier");
}

mn_vit *mn_vit_new(const mn_vit_config *cfg, mn_vit_arch arch, bool pooler, mn_rng *rng) {
    mn_err err;
    if (!mn_vit_config_check(cfg, &err)) mn_fatal("mn_vit_new: invalid configuration: %s", err.msg);
    mn_vit *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_vit_new: out of memory");
    mn_vit_config_copy(&m->cfg, cfg);
    snprintf(m->cfg.architecture, sizeof m->cfg.architecture, "%s", mn_vit_arch_name(arch));
    m->arch = arch;
    m->pooler = arch == MN_VIT_MODEL && pooler;
    int64_t H = cfg->hidden_size;
    float std = (float)cfg->initializer_range, eps = (float)cfg->layer_norm_eps;
    m->cls_token = mn__model_param_normal(rng, MN_SHAPE(1, 1, H), std);
    m->position_embeddings = mn__model_param_normal(rng, MN_SHAPE(1, n_patches(cfg) + 1, H), std);
    mn_patch_embed_init(&m->patch, cfg->num_channels, H, cfg->patch_size, std, rng);
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) mn_fatal("mn_vit_new: out of memory");
    for (int64_t i = 0; i < cfg->num_hidden_layers; i++) {
        mn_block *b = &m->layers[i];
        mn_block_init(b, H, cfg->num_attention_heads, cfg->intermediate_size, cfg->hidden_act, true, eps, std, rng);
        b->dropout = (float)cfg->hidden_dropout_prob;
        b->attn_dropout = (float)cfg->attention_probs_dropout_prob;
        if (!cfg->qkv_bias) { /* query/key/value without bias; the output projection keeps its own */
            mn_linear *qkv[3] = {&b->attn.query, &b->attn.key, &b->attn.value};
            for (int j = 0; j < 3; j++) {
                mn_release(qkv[j]->bias);
                qkv[j]->bias = NULL;
            }
        }
    }
    mn_norm_init(&m->layernorm, H, eps);
    if (m->pooler) mn_linear_init(&m->pooler_dense, H, H, true, std, rng);
    if (arch == MN_VIT_FOR_IMAGE_CLASSIFICATION)
        mn_linear_init(&m->classifier, H, cfg->labels.num_labels, true, std, rng);
    list_params(m);
    return m;
}

void mn_vit_free(mn_vit *m) {
    if (!m) return;
    mn_params_free(&m->params);
    mn_release(m->cls_token);
    mn_release(m->position_embeddings);
    mn_patch_embed_free(&m->patch);
    for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++) mn_block_free(&m->layers[i]);
    free(m->layers);
    mn_norm_free(&m->layernorm);
    if (m->pooler) mn_linear_free(&m->pooler_dense);
    if (m->arch == MN_VIT_FOR_IMAGE_CLASSIFICATION) mn_linear_free(&m->classifier);
    mn_vit_config_free(&m->cfg);
    free(m);
}

/* pixels [B, C, S, S] -> [B, N + 1, H], the encoder's output before the final LayerNorm; with
 * cls_only, [B, 1, H]: the last block computes token 0 alone (the rest of its output is unused) */
static mn_tensor *vit_trunk(const mn_vit *m, mn_tensor *pixels, bool cls_only, mn_rng *rng) {
    const mn_vit_config *c = &m->cfg;
    if (pixels->ndim != 4 || pixels->shape[1] != c->num_channels || pixels->shape[2] != c->image_size ||
        pixels->shape[3] != c->image_size || pixels->dtype != MN_F32) {
        char s[96];
        mn_fatal("mn_vit_forward: pixels must be float [B, %lld, %lld, %lld], got %s", (long long)c->num_channels,
                 (long long)c->image_size, (long long)c->image_size, mn_shape_str(pixels, s));
    }
    mn_scope sc = mn_scope_begin();
    int64_t B = pixels->shape[0], H = c->hidden_size;
    mn_tensor *patches = mn_patch_embed_forward(&m->patch, pixels);
    mn_tensor *parts[2] = {mn_expand(m->cls_token, MN_SHAPE(B, 1, H)), patches};
    mn_tensor *h = mn_add(mn_concat(2, parts, 1), m->position_embeddings);
    h = mn_dropout(h, (float)c->hidden_dropout_prob, rng);
    int64_t L = c->num_hidden_layers;
    for (int64_t i = 0; i < L; i++)
        h = cls_only && i == L - 1 ? mn_block_forward_first(&m->layers[i], h, 1, NULL, rng)
                                   : mn_block_forward(&m->layers[i], h, NULL, rng);
    return mn_scope_return(sc, h);
}

/* [B, T, H] -> [B, H], a view of token 0 */
static mn_tensor *first_token(mn_tensor *h) { return mn_squeeze(mn_slice(h, 1, 0, 1, 1), 1); }

/* pixels [B, C, S, S] -> [B, N + 1, H] */
mn_tensor *mn_vit_encode(const mn_vit *m, mn_tensor *pixels, mn_rng *rng) {
    mn_scope sc = mn_scope_begin();
    return mn_scope_return(sc, mn_norm_forward(&m->layernorm, vit_trunk(m, pixels, false, rng)));
}

/* hidden [B, T, H] -> [B, H] */
mn_tensor *mn_vit_pool(const mn_vit *m, mn_tensor *hidden) {
    if (!m->pooler) mn_fatal("mn_vit_pool: this %s has no pooler", mn_vit_arch_name(m->arch));
    mn_scope sc = mn_scope_begin();
    return mn_scope_return(sc, mn_tanh(mn_linear_forward(&m->pooler_dense, first_token(hidden))));
}

/* pixels [B, C, S, S] -> logits [B, num_labels] (classification) or last_hidden_state [B, N + 1, H] */
mn_tensor *mn_vit_forward(const mn_vit *m, mn_tensor *pixels, mn_rng *rng) {
    if (m->arch != MN_VIT_FOR_IMAGE_CLASSIFICATION) return mn_vit_encode(m, pixels, rng);
    mn_scope sc = mn_scope_begin();
    /* Only token 0 reaches the classifier, and after the last attention everything is per token,
     * so the last block and the final LayerNorm run on token 0 alone: the same logits for less work */
    mn_tensor *cls = mn_norm_forward(&m->layernorm, first_token(vit_trunk(m, pixels, true, rng)));
    return mn_scope_return(sc, mn_linear_forward(&m->classifier, cls));
}

/* ---- checkpoints ------------------------------------------------------------------------------------------ */

static const char *const classifier_heads[] = {"classifier.weight", "classifier.bias", NULL};

mn_load_spec mn_vit_load_spec(const mn_vit *m) {
    bool cls = m->arch == MN_VIT_FOR_IMAGE_CLASSIFICATION;
    return (mn_load_spec){mn_vit_arch_name(m->arch), "vit", cls, cls ? classifier_heads : NULL, NULL};
}

static bool write_config(const void *cfg, const char *path, mn_err *err) { return mn_vit_config_write(cfg, path, err); }

bool mn_vit_save(const mn_vit *m, const char *dir, mn_err *err) {
    return mn__save_model_dir(&m->params, dir, write_config, &m->cfg, err);
}

bool mn_vit_load(mn_vit *m, const char *path, mn_load_report *report, mn_err *err) {
    mn_load_spec spec = mn_vit_load_spec(m);
    return mn_params_load(&m->params, path, &spec, report, err);
}

mn_vit *mn_vit_from_pretrained(const char *dir, mn_vit_arch arch, const mn_pretrained_opts *opts,
                               mn_load_report *report, mn_err *err) {
    static const mn_pretrained_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (report) *report = (mn_load_report){0};
    mn_vit_config cfg;
    if (!mn_vit_config_read(dir, &cfg, err)) return NULL;
    if (opts->num_labels > 0) mn_labels_set(&cfg.labels, opts->num_labels, opts->id2label);
    /* sizes checked against the checkpoint before anything is allocated (allowed to be new: the
     * pooler and the classifier) */
    double H = (double)cfg.hidden_size, labels = (double)cfg.labels.num_labels;
    if (!mn_vit_config_check(&cfg, err) ||
        !mn__config_fits_checkpoint(dir, mn_vit_config_matrix_params(&cfg), H * H + labels * H, err)) {
        mn_vit_config_free(&cfg);
        return NULL;
    }
    mn_rng rng = mn_rng_new(opts->seed);
    mn_vit *m = mn_vit_new(&cfg, arch, opts->pooler, &rng);
    mn_vit_config_free(&cfg);
    mn_load_spec spec = mn_vit_load_spec(m);
    spec.allow_nonfinite = opts->allow_nonfinite;
    if (!mn_params_load(&m->params, dir, &spec, report, err)) {
        mn_vit_free(m);
        return NULL;
    }
    return m;
}
