/* BERT (Devlin et al. 2019) in transformers' BertModel / BertForMaskedLM /
 * BertForSequenceClassification layout: embeddings word + token type +
 * position then LayerNorm, post-LN blocks, a tanh pooler on token 0, the
 * masked-LM head (dense -> act -> LayerNorm -> decoder tied to the word
 * embeddings) and the sequence classifier on the pooled token. */
#include "models/models_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const arch_names[] = {"BertModel", "BertForMaskedLM", "BertForSequenceClassification"};

const char *mn_bert_arch_name(mn_bert_arch a) {
    return (unsigned)a <= MN_BERT_FOR_SEQUENCE_CLASSIFICATION ? arch_names[a] : "unknown";
}

bool mn_bert_arch_parse(const char *name, mn_bert_arch *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, arch_names[i])) {
            *out = (mn_bert_arch)i;
            return true;
        }
    return false;
}

static const char *join(char *buf, size_t n, const char *prefix, const char *name) {
    snprintf(buf, n, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", name);
    return buf;
}

static void list_params(mn_bert *m) {
    const char *P = m->arch == MN_BERT_MODEL ? NULL : "bert";
    char name[256];
    mn_params *p = &m->params;
    mn_embed_params(&m->word_embeddings, p, join(name, sizeof name, P, "embeddings.word_embeddings"));
    mn_embed_params(&m->position_embeddings, p, join(name, sizeof name, P, "embeddings.position_embeddings"));
    mn_embed_params(&m->token_type_embeddings, p, join(name, sizeof name, P, "embeddings.token_type_embeddings"));
    mn_norm_params(&m->embeddings_norm, p, join(name, sizeof name, P, "embeddings.LayerNorm"));
    for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++) {
        char layer[64];
        snprintf(layer, sizeof layer, "encoder.layer.%lld", (long long)i);
        mn_block_params(&m->layers[i], p, join(name, sizeof name, P, layer));
    }
    if (m->pooler) mn_linear_params(&m->pooler_dense, p, join(name, sizeof name, P, "pooler.dense"));
    if (m->arch == MN_BERT_FOR_MASKED_LM) {
        /* named_parameters() order; the decoder's weight and bias are aliases, listed once */
        mn_params_add_field(p, NULL, "cls.predictions.bias", &m->decoder.bias, true);
        mn_params_alias_field(p, join(name, sizeof name, P, "embeddings.word_embeddings.weight"), &m->decoder.weight);
        mn_linear_params(&m->transform_dense, p, "cls.predictions.transform.dense");
        mn_norm_params(&m->transform_norm, p, "cls.predictions.transform.LayerNorm");
    }
    if (m->arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) mn_linear_params(&m->classifier, p, "classifier");
}

mn_bert *mn_bert_new(const mn_bert_config *cfg, mn_bert_arch arch, bool pooler, mn_rng *rng) {
    mn_err err;
    if (!mn_bert_config_check(cfg, &err)) mn_fatal("mn_bert_new: invalid configuration: %s", err.msg);
    if ((unsigned)arch > MN_BERT_FOR_SEQUENCE_CLASSIFICATION)
        mn_fatal("mn_bert_new: unknown architecture %d", (int)arch);
    mn_bert *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_bert_new: out of memory");
    mn_bert_config_copy(&m->cfg, cfg);
    snprintf(m->cfg.architecture, sizeof m->cfg.architecture, "%s", mn_bert_arch_name(arch));
    m->arch = arch;
    m->pooler = arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION || (arch == MN_BERT_MODEL && pooler);
    int64_t H = cfg->hidden_size, V = cfg->vocab_size;
    float std = (float)cfg->initializer_range, eps = (float)cfg->layer_norm_eps;
    mn_embed_init(&m->word_embeddings, V, H, std, rng);
    /* nn.Embedding(padding_idx=pad_token_id) starts with that row at zero */
    mn_scope sc = mn_scope_begin();
    mnt_fill_(mnt_slice(m->word_embeddings.weight, 0, cfg->pad_token_id, cfg->pad_token_id + 1, 1), 0.0f);
    mn_scope_end(sc);
    mn_embed_init(&m->position_embeddings, cfg->max_position_embeddings, H, std, rng);
    mn_embed_init(&m->token_type_embeddings, cfg->type_vocab_size, H, std, rng);
    mn_norm_init(&m->embeddings_norm, H, eps);
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) mn_fatal("mn_bert_new: out of memory");
    for (int64_t i = 0; i < cfg->num_hidden_layers; i++) {
        mn_block *b = &m->layers[i];
        mn_block_init(b, H, cfg->num_attention_heads, cfg->intermediate_size, cfg->hidden_act, false, eps, std, rng);
        b->dropout = (float)cfg->hidden_dropout_prob;
        b->attn_dropout = (float)cfg->attention_probs_dropout_prob;
    }
    if (m->pooler) mn_linear_init(&m->pooler_dense, H, H, true, std, rng);
    if (arch == MN_BERT_FOR_MASKED_LM) {
        mn_linear_init(&m->transform_dense, H, H, true, std, rng);
        mn_norm_init(&m->transform_norm, H, eps);
        m->decoder.weight = mn_retain(m->word_embeddings.weight); /* tied: one tensor, one gradient */
        m->decoder.bias = mn__model_param_zeros(MN_SHAPE(V));
    }
    if (arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION)
        mn_linear_init(&m->classifier, H, cfg->labels.num_labels, true, std, rng);
    list_params(m);
    return m;
}

void mn_bert_free(mn_bert *m) {
    if (!m) return;
    mn_params_free(&m->params);
    mn_embed_free(&m->word_embeddings);
    mn_embed_free(&m->position_embeddings);
    mn_embed_free(&m->token_type_embeddings);
    mn_norm_free(&m->embeddings_norm);
    for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++) mn_block_free(&m->layers[i]);
    free(m->layers);
    if (m->pooler) mn_linear_free(&m->pooler_dense);
    if (m->arch == MN_BERT_FOR_MASKED_LM) {
        mn_linear_free(&m->transform_dense);
        mn_norm_free(&m->transform_norm);
        mn_linear_free(&m->decoder);
    }
    if (m->arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) mn_linear_free(&m->classifier);
    mn_bert_config_free(&m->cfg);
    free(m);
}

static void check_ids(const mn_bert *m, const char *what, mn_tensor *t, mn_tensor *ids) {
    char s[96], si[96];
    if (t->ndim != 2 || (ids && (t->shape[0] != ids->shape[0] || t->shape[1] != ids->shape[1])))
        mn_fatal("mn_bert_forward: %s %s must be [B, T]%s%s", what, mn_shape_str(t, s), ids ? " like input_ids " : "",
                 ids ? mn_shape_str(ids, si) : "");
    if (t->shape[1] > m->cfg.max_position_embeddings)
        mn_fatal("mn_bert_forward: sequence length %lld exceeds max_position_embeddings %lld", (long long)t->shape[1],
                 (long long)m->cfg.max_position_embeddings);
}

/* input_ids [B, T], token_type_ids [B, T] or NULL, attention_mask [B, T] or NULL -> [B, T, H] */
mn_tensor *mn_bert_encode(const mn_bert *m, mn_tensor *input_ids, mn_tensor *token_type_ids, mn_tensor *attention_mask,
                          mn_rng *rng) {
    check_ids(m, "input_ids", input_ids, NULL);
    if (input_ids->dtype != MN_I32) mn_fatal("mn_bert_forward: input_ids must be int32");
    if (token_type_ids) check_ids(m, "token_type_ids", token_type_ids, input_ids);
    if (attention_mask) check_ids(m, "attention_mask", attention_mask, input_ids);
    mn_scope sc = mn_scope_begin();
    int64_t T = input_ids->shape[1];
    mn_tensor *h = mn_embed_forward(&m->word_embeddings, input_ids);
    /* no token types: every token is type 0, one row broadcast over [B, T] */
    mn_tensor *types = token_type_ids ? mn_embed_forward(&m->token_type_embeddings, token_type_ids)
                                      : mn_slice(m->token_type_embeddings.weight, 0, 0, 1, 1);
    /* positions 0..T-1 are the first T rows: a slice, no gather */
    mn_tensor *positions = mn_slice(m->position_embeddings.weight, 0, 0, T, 1);
    h = mn_add(mn_add(h, types), positions); /* transformers' order of the sums */
    h = mn_dropout(mn_norm_forward(&m->embeddings_norm, h), (float)m->cfg.hidden_dropout_prob, rng);
    for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++) h = mn_block_forward(&m->layers[i], h, attention_mask, rng);
    return mn_scope_return(sc, h);
}

/* hidden [B, T, H] -> [B, H] */
mn_tensor *mn_bert_pool(const mn_bert *m, mn_tensor *hidden) {
    if (!m->pooler) mn_fatal("mn_bert_pool: this %s has no pooler", mn_bert_arch_name(m->arch));
    mn_scope sc = mn_scope_begin();
    mn_tensor *first = mn_squeeze(mn_slice(hidden, 1, 0, 1, 1), 1);
    return mn_scope_return(sc, mn_tanh(mn_linear_forward(&m->pooler_dense, first)));
}

/* hidden [..., H] -> [..., H]: the head's transform (dense, activation, LayerNorm) before the decoder */
static mn_tensor *mlm_transform(const mn_bert *m, mn_tensor *hidden) {
    if (m->arch != MN_BERT_FOR_MASKED_LM)
        mn_fatal("mn_bert_mlm_head: this %s has no masked-LM head", mn_bert_arch_name(m->arch));
    mn_scope sc = mn_scope_begin();
    mn_tensor *h = mn_activate(m->cfg.hidden_act, mn_linear_forward(&m->transform_dense, hidden));
    return mn_scope_return(sc, mn_norm_forward(&m->transform_norm, h));
}

/* hidden [..., H] -> [..., V] */
mn_tensor *mn_bert_mlm_head(const mn_bert *m, mn_tensor *hidden) {
    mn_scope sc = mn_scope_begin();
    return mn_scope_return(sc, mn_linear_forward(&m->decoder, mlm_transform(m, hidden)));
}

/* hidden [B, T, H], labels [B, T] -> scalar */
mn_tensor *mn_bert_mlm_loss(const mn_bert *m, mn_tensor *hidden, mn_tensor *labels) {
    char sh[96], sl[96];
    if (hidden->ndim != 3 || labels->ndim != 2 || labels->dtype != MN_I32 || labels->shape[0] != hidden->shape[0] ||
        labels->shape[1] != hidden->shape[1])
        mn_fatal("mn_bert_mlm_loss: hidden %s must be [B, T, H] and labels %s int32 [B, T]", mn_shape_str(hidden, sh),
                 mn_shape_str(labels, sl));
    mn_scope sc = mn_scope_begin();
    int64_t n = mn_numel(labels), H = hidden->shape[2], k = 0;
    const int32_t *lab = mn_idata(mnt_contiguous(labels));
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(n + 1)), *targets = malloc(sizeof(int32_t) * (size_t)(n + 1));
    if (!rows || !targets) mn_fatal("mn_bert_mlm_loss: out of memory");
    for (int64_t i = 0; i < n; i++)
        if (lab[i] != -100) rows[k] = (int32_t)i, targets[k++] = lab[i];
    if (k == 0) rows[0] = 0, targets[0] = -100, k = 1; /* nothing labelled: a zero loss that still has a graph */
    mn_tensor *index = mn_from_ints(MN_SHAPE(k), rows), *target = mn_from_ints(MN_SHAPE(k), targets);
    free(rows);
    free(targets);
    mn_tensor *picked = mn_index_select(mn_reshape(hidden, MN_SHAPE(n, H)), 0, index); /* [K, H] */
    /* the decoder and the loss in one op: the [K, V] logits are never held whole */
    mn_tensor *loss = mn_dense_cross_entropy(mlm_transform(m, picked), m->decoder.weight, m->decoder.bias, target,
                                             -100, 0.0f);
    return mn_scope_return(sc, loss);
}

/* -> [B, T, H] (BertModel), [B, T, V] (masked LM) or [B, num_labels] (sequence classification) */
mn_tensor *mn_bert_forward(const mn_bert *m, mn_tensor *input_ids, mn_tensor *token_type_ids, mn_tensor *attention_mask,
                           mn_rng *rng) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *h = mn_bert_encode(m, input_ids, token_type_ids, attention_mask, rng);
    if (m->arch == MN_BERT_FOR_MASKED_LM) {
        h = mn_bert_mlm_head(m, h);
    } else if (m->arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) {
        double p = m->cfg.classifier_dropout >= 0 ? m->cfg.classifier_dropout : m->cfg.hidden_dropout_prob;
        h = mn_linear_forward(&m->classifier, mn_dropout(mn_bert_pool(m, h), (float)p, rng));
    }
    return mn_scope_return(sc, h);
}

/* ---- checkpoints ------------------------------------------------------------------------------------------- */

static const char *const classifier_heads[] = {"classifier.weight", "classifier.bias", NULL};
/* transformers' _tied_weights_keys: files usually hold one copy of each */
static const char *const mlm_aliases[][2] = {
    {"cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"},
    {"cls.predictions.decoder.bias", "cls.predictions.bias"},
    {NULL, NULL},
};

mn_load_spec mn_bert_load_spec(const mn_bert *m) {
    mn_load_spec s = {mn_bert_arch_name(m->arch), "bert", m->arch != MN_BERT_MODEL, NULL, NULL};
    if (m->arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) s.heads = classifier_heads;
    if (m->arch == MN_BERT_FOR_MASKED_LM) s.aliases = mlm_aliases;
    return s;
}

static bool write_config(const void *cfg, const char *path, mn_err *err) {
    return mn_bert_config_write(cfg, path, err);
}

bool mn_bert_save(const mn_bert *m, const char *dir, mn_err *err) {
    return mn__save_model_dir(&m->params, dir, write_config, &m->cfg, err);
}

bool mn_bert_load(mn_bert *m, const char *path, mn_load_report *report, mn_err *err) {
    mn_load_spec spec = mn_bert_load_spec(m);
    return mn_params_load(&m->params, path, &spec, report, err);
}

mn_bert *mn_bert_from_pretrained(const char *dir, mn_bert_arch arch, const mn_pretrained_opts *opts,
                                 mn_load_report *report, mn_err *err) {
    static const mn_pretrained_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (report) *report = (mn_load_report){0};
    mn_bert_config cfg;
    if (!mn_bert_config_read(dir, &cfg, err)) return NULL;
    if (opts->num_labels > 0) mn_labels_set(&cfg.labels, opts->num_labels, opts->id2label);
    /* sizes checked against the checkpoint before anything is allocated (allowed to be new: the
     * pooler, the MLM transform and the classifier) */
    double H = (double)cfg.hidden_size, labels = (double)cfg.labels.num_labels;
    if (!mn_bert_config_check(&cfg, err) ||
        !mn__config_fits_checkpoint(dir, mn_bert_config_matrix_params(&cfg), 2 * H * H + labels * H, err)) {
        mn_bert_config_free(&cfg);
        return NULL;
    }
    mn_rng rng = mn_rng_new(opts->seed);
    mn_bert *m = mn_bert_new(&cfg, arch, opts->pooler, &rng);
    mn_bert_config_free(&cfg);
    mn_load_spec spec = mn_bert_load_spec(m);
    spec.allow_nonfinite = opts->allow_nonfinite;
    if (!mn_params_load(&m->params, dir, &spec, report, err)) {
        mn_bert_free(m);
        return NULL;
    }
    return m;
}
