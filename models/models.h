/* mnemo models: MLP, ViT and BERT with Hugging Face-compatible configurations,
 * parameter names and checkpoint directories.
 *
 * A model is made from a configuration (built in by name, read from a
 * config.json, or filled in by hand) and an explicit RNG for initialisation.
 * It owns its layers and lists every trainable tensor under its Hugging Face
 * name in m->params (what optimizers and checkpoints work on); tied tensors
 * are listed once, under the name Hugging Face's named_parameters() gives.
 * Forward functions take a dropout RNG: NULL means eval mode (no dropout).
 *
 * mn_*_save writes a Hugging Face model directory (config.json and
 * model.safetensors, both atomically). mn_*_from_pretrained reads one back the
 * way transformers' from_pretrained does: it adds or strips the base-model
 * prefix ("vit.", "bert."), renames legacy LayerNorm.gamma/beta, re-ties
 * aliased tensors, checks every shape, and reports missing and unexpected
 * names; a classification head whose shape differs (another num_labels) keeps
 * its fresh initialisation. Reading never stops the program: errors come back
 * in an mn_err naming the file, the tensor or key, and expected vs found. */
#ifndef MN_MODELS_H
#define MN_MODELS_H

#include "nn/nn.h"

/* ---- class labels (config.json's num_labels / id2label / label2id) -------------------- */
typedef struct {
    int64_t num_labels;
    char **id2label; /* num_labels owned names, or NULL for Hugging Face's defaults "LABEL_i" */
} mn_labels;
/* Replaces the labels: n classes named names[0..n) (copied), or "LABEL_i" when names is NULL. */
MN_API void mn_labels_set(mn_labels *l, int64_t n, const char *const *names);
/* Name of class i (buf, at least 32 bytes, holds a default "LABEL_i"). */
MN_API const char *mn_labels_name(const mn_labels *l, int64_t i, char *buf);
MN_API int64_t mn_labels_find(const mn_labels *l, const char *name); /* label2id; -1 if absent */
MN_API void mn_labels_copy(mn_labels *dst, const mn_labels *src);  /* dst is overwritten, not freed */
MN_API void mn_labels_free(mn_labels *l);

/* ---- configurations -------------------------------------------------------------------------
 * Field names are Hugging Face's. Floats are doubles so config.json round-trips
 * exactly ("layer_norm_eps": 1e-12). *_config_default gives transformers'
 * defaults; *_config_named a standard configuration (vit-fm, bert-tiny, ...); *_config_read
 * reads a config.json (or the config.json in a directory): missing optional
 * fields take the defaults, wrong types and bad values are errors naming the
 * file and the key. *_config_write writes every field plus model_type and
 * architectures (atomically). Configs with labels own memory: *_config_free. */
typedef struct {
    int64_t hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    mn_act hidden_act;
    double layer_norm_eps;
    int64_t image_size, patch_size, num_channels;
    bool qkv_bias;
    double hidden_dropout_prob, attention_probs_dropout_prob, initializer_range;
    mn_labels labels;
    char architecture[64]; /* first entry of "architectures" ("" if none) */
} mn_vit_config;

typedef struct {
    int64_t vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    mn_act hidden_act;
    int64_t max_position_embeddings, type_vocab_size;
    double layer_norm_eps;
    int64_t pad_token_id;
    double hidden_dropout_prob, attention_probs_dropout_prob, initializer_range;
    double classifier_dropout; /* < 0: null (the classifier uses hidden_dropout_prob) */
    mn_labels labels;
    char architecture[64];
} mn_bert_config;

enum { MN_MLP_MAX_LAYERS = 64 };
typedef struct {
    int n_layers;                          /* linear layers */
    int64_t sizes[MN_MLP_MAX_LAYERS + 1];  /* sizes[0] inputs ... sizes[n_layers] outputs */
    mn_act hidden_act;                     /* between the layers */
} mn_mlp_config;

/* Names accepted by *_config_named (for --help texts). */
#define MN_VIT_CONFIG_NAMES "vit-fm, vit-ti16, vit-b16"
#define MN_BERT_CONFIG_NAMES "bert-tiny, bert-mini, bert-base"
#define MN_MLP_CONFIG_NAMES "mlp"

/* Every size a config may give is bounded before anything is allocated (the checks below):
 * hidden_size, intermediate_size <= 2^18; num_hidden_layers <= 1024; vocab_size <= 2^23;
 * max_position_embeddings <= 2^20; type_vocab_size <= 2^16; num_labels <= 2^20; image_size <=
 * 2^15; num_channels <= 1024; MLP widths <= 2^24; and the model's weight matrices together at most
 * MN_MODEL_MAX_PARAMS numbers (8 GB of float32). mn_*_from_pretrained also refuses a config whose
 * matrices hold more numbers than the checkpoint beside it, plus what a load may initialise itself
 * (a pooler, a classification or MLM head), naming both counts. */
#define MN_MODEL_MAX_PARAMS ((double)(1ll << 31))
/* Lower bounds on the parameter count of a config's model: its weight matrices and embedding
 * tables, without biases, norms, pooler or heads */
MN_API double mn_vit_config_matrix_params(const mn_vit_config *c);
MN_API double mn_bert_config_matrix_params(const mn_bert_config *c);
MN_API double mn_mlp_config_matrix_params(const mn_mlp_config *c);

MN_API void mn_vit_config_default(mn_vit_config *c);
MN_API bool mn_vit_config_named(const char *name, mn_vit_config *c); /* false if unknown */
MN_API bool mn_vit_config_check(const mn_vit_config *c, mn_err *err); /* sizes positive, divisible, ... */
MN_API bool mn_vit_config_read(const char *path, mn_vit_config *c, mn_err *err);
MN_API bool mn_vit_config_write(const mn_vit_config *c, const char *path, mn_err *err);
MN_API void mn_vit_config_copy(mn_vit_config *dst, const mn_vit_config *src); /* deep; dst overwritten */
MN_API void mn_vit_config_free(mn_vit_config *c);

MN_API void mn_bert_config_default(mn_bert_config *c);
MN_API bool mn_bert_config_named(const char *name, mn_bert_config *c);
MN_API bool mn_bert_config_check(const mn_bert_config *c, mn_err *err);
MN_API bool mn_bert_config_read(const char *path, mn_bert_config *c, mn_err *err);
MN_API bool mn_bert_config_write(const mn_bert_config *c, const char *path, mn_err *err);
MN_API void mn_bert_config_copy(mn_bert_config *dst, const mn_bert_config *src);
MN_API void mn_bert_config_free(mn_bert_config *c);

/* config.json of an MLP: {"model_type": "mlp", "sizes": [784, 512, 512, 10], "hidden_act": "relu"} */
MN_API bool mn_mlp_config_named(const char *name, mn_mlp_config *c); /* "mlp": 784-512-512-10, ReLU */
MN_API bool mn_mlp_config_check(const mn_mlp_config *c, mn_err *err);
MN_API bool mn_mlp_config_read(const char *path, mn_mlp_config *c, mn_err *err);
MN_API bool mn_mlp_config_write(const mn_mlp_config *c, const char *path, mn_err *err);

/* The "model_type" of a config.json (or of a directory's): "vit", "bert", "mlp", ...
 * Copied into out (size n); false and err if the file is unreadable or has none. */
MN_API bool mn_config_model_type(const char *path, char *out, size_t n, mn_err *err);

/* ---- checkpoints: named parameters <-> safetensors -------------------------------------------- */
/* What a load did, for the caller to print or check. Names are owned copies. */
typedef struct {
    char **missing;    /* model parameters the checkpoint lacks: left as they were (initialised) */
    char **unexpected; /* checkpoint tensors the model does not use (e.g. embeddings.position_ids) */
    char **mismatched; /* "name: found shape [a, b] in the checkpoint and [c, d] in the model": heads left
                        * as initialised */
    char **notes;      /* prefix added/stripped, legacy names renamed, aliases tied */
    int n_missing, n_unexpected, n_mismatched, n_notes;
    char *arch, *path; /* for the summary */
} mn_load_report;
/* Hugging Face-style warning text ("Some weights of X were not initialized from the model
 * checkpoint at P and are newly initialized: [...]") plus the notes; malloc'd, "" when there is
 * nothing to report. */
MN_API char *mn_load_report_summary(const mn_load_report *r);
MN_API void mn_load_report_free(mn_load_report *r);

/* How a model's names relate to checkpoint names. */
typedef struct {
    const char *arch;        /* for messages, e.g. "BertForMaskedLM" */
    const char *base_prefix; /* "vit", "bert" or NULL: added or stripped as transformers does */
    bool prefixed;           /* the model keeps its backbone under base_prefix (a task model) */
    /* parameters that may differ in shape (re-initialised heads), NULL-terminated */
    const char *const *heads;
    /* {checkpoint name, model name} pairs, NULL-terminated: the checkpoint name is an alias of the
     * model parameter (tied), used only when the parameter itself is absent, else ignored */
    const char *const (*aliases)[2];
    bool allow_nonfinite; /* else a NaN or infinity in a checkpoint tensor is an error naming it */
} mn_load_spec;

/* Loads params from path: a .safetensors file, or a directory holding model.safetensors or
 * model.safetensors.index.json (shards). Everything is read and checked before any parameter
 * changes, so a failed load leaves the model untouched. A shape that differs is an error naming
 * the file, tensor and both shapes, except for spec->heads, which keep their values and are
 * reported as mismatched. Tensors the model does not use (embeddings.position_ids,
 * cls.seq_relationship.*, a pooler it lacks) are ignored and reported as unexpected. report
 * (NULL: none) is overwritten, so free a previous one first; on failure it is left empty. */
MN_API bool mn_params_load(const mn_params *params, const char *path, const mn_load_spec *spec, mn_load_report *report,
                    mn_err *err);
/* Writes params (F32, Hugging Face names, {"format": "pt"} metadata) atomically. */
MN_API bool mn_params_save(const mn_params *params, const char *path, mn_err *err);

/* Options for *_from_pretrained; NULL means all defaults. */
typedef struct {
    int64_t num_labels;             /* > 0: a head for this many classes instead of the config's */
    const char *const *id2label;    /* with num_labels: their names (NULL: "LABEL_i") */
    bool pooler;                    /* bare ViTModel / BertModel: add the pooler */
    uint64_t seed;                  /* initialises what the checkpoint does not provide */
    bool allow_nonfinite;           /* load NaN and infinite weights instead of refusing them */
} mn_pretrained_opts;

/* ---- MLP ---------------------------------------------------------------------------------------- */
typedef struct {
    mn_mlp_config cfg;
    mn_mlp mlp;       /* PyTorch's default Linear initialisation */
    mn_params params; /* layers.{i}.weight / layers.{i}.bias */
} mn_mlp_model;
MN_API mn_mlp_model *mn_mlp_model_new(const mn_mlp_config *cfg, mn_rng *rng);
/* x [..., sizes[0]] -> [..., sizes[n]] */
MN_API mn_tensor *mn_mlp_model_forward(const mn_mlp_model *m, mn_tensor *x);
MN_API bool mn_mlp_model_save(const mn_mlp_model *m, const char *dir, mn_err *err);
MN_API bool mn_mlp_model_load(mn_mlp_model *m, const char *path, mn_load_report *report, mn_err *err);
MN_API mn_mlp_model *mn_mlp_model_from_pretrained(const char *dir, uint64_t seed, mn_load_report *report, mn_err *err);
MN_API void mn_mlp_model_free(mn_mlp_model *m);

/* ---- ViT (pre-LN, CLS token, learned positions, final LayerNorm) ------------------------------ */
typedef enum { MN_VIT_MODEL, MN_VIT_FOR_IMAGE_CLASSIFICATION } mn_vit_arch;
MN_API const char *mn_vit_arch_name(mn_vit_arch a); /* "ViTModel", "ViTForImageClassification" */
MN_API bool mn_vit_arch_parse(const char *name, mn_vit_arch *out);

typedef struct {
    mn_vit_config cfg;
    mn_vit_arch arch;
    bool pooler;                   /* ViTModel with add_pooling_layer */
    mn_tensor *cls_token;          /* [1, 1, H] */
    mn_tensor *position_embeddings; /* [1, N + 1, H], N = (image_size / patch_size)^2 */
    mn_patch_embed patch;          /* [H, C, P, P] conv as one GEMM */
    mn_block *layers;              /* num_hidden_layers pre-LN blocks */
    mn_norm layernorm;             /* final LayerNorm */
    mn_linear pooler_dense;        /* tanh(dense(h[:, 0])) when pooler */
    mn_linear classifier;          /* [num_labels, H] for MN_VIT_FOR_IMAGE_CLASSIFICATION */
    mn_params params;              /* Hugging Face names; "vit." prefix on the backbone of the classifier */
} mn_vit;
/* Initialised as transformers does, with plain normals where it uses truncated ones:
 * weights, cls token and positions N(0, initializer_range), biases 0, LayerNorm 1 / 0.
 * pooler only applies to MN_VIT_MODEL. An invalid config is a programming error. */
MN_API mn_vit *mn_vit_new(const mn_vit_config *cfg, mn_vit_arch arch, bool pooler, mn_rng *rng);
/* pixels [B, C, S, S] -> last_hidden_state [B, N + 1, H] (after the final LayerNorm) */
MN_API mn_tensor *mn_vit_encode(const mn_vit *m, mn_tensor *pixels, mn_rng *rng);
/* hidden [B, T, H] -> pooled [B, H] = tanh(dense(hidden[:, 0])); needs the pooler */
MN_API mn_tensor *mn_vit_pool(const mn_vit *m, mn_tensor *hidden);
/* The architecture's main output: ViTModel -> last_hidden_state [B, N + 1, H];
 * ViTForImageClassification -> logits [B, num_labels] (classifier on token 0). */
MN_API mn_tensor *mn_vit_forward(const mn_vit *m, mn_tensor *pixels, mn_rng *rng);
/* The load spec of this model (names of heads and aliases), for mn_params_load. */
MN_API mn_load_spec mn_vit_load_spec(const mn_vit *m);
MN_API bool mn_vit_save(const mn_vit *m, const char *dir, mn_err *err);
/* Loads weights from a directory or .safetensors into an existing model (see mn_params_load). */
MN_API bool mn_vit_load(mn_vit *m, const char *path, mn_load_report *report, mn_err *err);
/* config.json + weights of dir; the caller frees the model. */
MN_API mn_vit *mn_vit_from_pretrained(const char *dir, mn_vit_arch arch, const mn_pretrained_opts *opts,
                               mn_load_report *report, mn_err *err);
MN_API void mn_vit_free(mn_vit *m);

/* ---- BERT (post-LN; embeddings word + position + token type, then LayerNorm) ------------------ */
typedef enum { MN_BERT_MODEL, MN_BERT_FOR_MASKED_LM, MN_BERT_FOR_SEQUENCE_CLASSIFICATION } mn_bert_arch;
MN_API const char *mn_bert_arch_name(mn_bert_arch a); /* "BertModel", "BertForMaskedLM", ... */
MN_API bool mn_bert_arch_parse(const char *name, mn_bert_arch *out);

typedef struct {
    mn_bert_config cfg;
    mn_bert_arch arch;
    bool pooler;                        /* BertModel with pooler; always for sequence classification */
    mn_embed word_embeddings;           /* [V, H] */
    mn_embed position_embeddings;       /* [max_position_embeddings, H] */
    mn_embed token_type_embeddings;     /* [type_vocab_size, H] */
    mn_norm embeddings_norm;            /* embeddings.LayerNorm */
    mn_block *layers;                   /* num_hidden_layers post-LN blocks */
    mn_linear pooler_dense;             /* tanh(dense(h[:, 0])) */
    /* masked LM head: transform dense -> act -> LayerNorm, then the decoder, whose weight *is*
     * word_embeddings.weight (tied, one tensor) and whose bias is cls.predictions.bias */
    mn_linear transform_dense;
    mn_norm transform_norm;
    mn_linear decoder;
    mn_linear classifier;               /* [num_labels, H] for sequence classification */
    mn_params params;
} mn_bert;
/* Weights and embeddings N(0, initializer_range) (the pad_token_id row of the word embeddings
 * zero), biases 0, LayerNorm 1 / 0. pooler only applies to MN_BERT_MODEL. */
MN_API mn_bert *mn_bert_new(const mn_bert_config *cfg, mn_bert_arch arch, bool pooler, mn_rng *rng);
/* input_ids int32 [B, T]; token_type_ids int32 [B, T] or NULL (all 0); attention_mask [B, T]
 * (1 = token, 0 = padding; int32 or float) or NULL -> last_hidden_state [B, T, H] */
MN_API mn_tensor *mn_bert_encode(const mn_bert *m, mn_tensor *input_ids, mn_tensor *token_type_ids,
                          mn_tensor *attention_mask, mn_rng *rng);
/* hidden [B, T, H] -> pooled [B, H] = tanh(dense(hidden[:, 0])); needs the pooler */
MN_API mn_tensor *mn_bert_pool(const mn_bert *m, mn_tensor *hidden);
/* hidden [..., H] -> vocabulary logits [..., V] (masked LM head). Pass only the rows that
 * carry labels to skip the large decoder GEMM on the others. */
MN_API mn_tensor *mn_bert_mlm_head(const mn_bert *m, mn_tensor *hidden);
/* Masked-LM loss from hidden [B, T, H] and int32 labels [B, T]: the mean cross-entropy over
 * positions whose label is not -100 (transformers' ignore index), computing vocabulary logits
 * only for those rows. Equals mn_cross_entropy(mn_bert_forward(...), labels, -100, 0). */
MN_API mn_tensor *mn_bert_mlm_loss(const mn_bert *m, mn_tensor *hidden, mn_tensor *labels);
/* The architecture's main output: BertModel -> last_hidden_state [B, T, H];
 * BertForMaskedLM -> logits [B, T, V]; BertForSequenceClassification -> logits [B, num_labels]. */
MN_API mn_tensor *mn_bert_forward(const mn_bert *m, mn_tensor *input_ids, mn_tensor *token_type_ids,
                           mn_tensor *attention_mask, mn_rng *rng);
MN_API mn_load_spec mn_bert_load_spec(const mn_bert *m);
MN_API bool mn_bert_save(const mn_bert *m, const char *dir, mn_err *err);
MN_API bool mn_bert_load(mn_bert *m, const char *path, mn_load_report *report, mn_err *err);
MN_API mn_bert *mn_bert_from_pretrained(const char *dir, mn_bert_arch arch, const mn_pretrained_opts *opts,
                                 mn_load_report *report, mn_err *err);
MN_API void mn_bert_free(mn_bert *m);

#endif
