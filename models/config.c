/* Model configurations: transformers' defaults, the standard named set
 * (mlp, vit-fm, vit-ti16, bert-tiny, ...), and config.json reading and writing
 * with Hugging Face's field names. Reading checks every field's type and value and names the file
 * and key in its errors; missing optional fields keep their defaults. */
#include "models/models_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- labels ------------------------------------------------------------------------------------ */

static char *copy_string(const char *s) {
    char *c = strdup(s);
    if (!c) mn_fatal("out of memory copying a label");
    return c;
}

void mn_labels_free(mn_labels *l) {
    if (l->id2label)
        for (int64_t i = 0; i < l->num_labels; i++) free(l->id2label[i]);
    free(l->id2label);
    l->id2label = NULL;
}

void mn_labels_set(mn_labels *l, int64_t n, const char *const *names) {
    if (n < 1) mn_fatal("mn_labels_set: need at least one label, got %lld", (long long)n);
    char **copy = NULL; /* built before freeing, so names may be l's own */
    if (names) {
        copy = calloc((size_t)n, sizeof *copy);
        if (!copy) mn_fatal("mn_labels_set: out of memory for %lld labels", (long long)n);
        for (int64_t i = 0; i < n; i++) copy[i] = copy_string(names[i]);
    }
    mn_labels_free(l);
    l->num_labels = n;
    l->id2label = copy;
}

const char *mn_labels_name(const mn_labels *l, int64_t i, char *buf) {
    if (i < 0 || i >= l->num_labels)
        mn_fatal("mn_labels_name: label %lld of %lld", (long long)i, (long long)l->num_labels);
    if (l->id2label) return l->id2label[i];
    snprintf(buf, 32, "LABEL_%lld", (long long)i);
    return buf;
}

int64_t mn_labels_find(const mn_labels *l, const char *name) {
    char buf[32];
    for (int64_t i = 0; i < l->num_labels; i++)
        if (!strcmp(mn_labels_name(l, i, buf), name)) return i;
    return -1;
}

void mn_labels_copy(mn_labels *dst, const mn_labels *src) {
    dst->num_labels = src->num_labels;
    dst->id2label = NULL;
    if (src->id2label) {
        mn_labels_set(dst, src->num_labels, (const char *const *)src->id2label);
    }
}

/* ---- defaults and the standard set ---------------------------------------------------------------- */

void mn_vit_config_default(mn_vit_config *c) {
    *c = (mn_vit_config){
        .hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12, .intermediate_size = 3072,
        .hidden_act = MN_ACT_GELU, .layer_norm_eps = 1e-12, .image_size = 224, .patch_size = 16,
        .num_channels = 3, .qkv_bias = true, .hidden_dropout_prob = 0.0, .attention_probs_dropout_prob = 0.0,
        .initializer_range = 0.02, .labels = {.num_labels = 2},
    };
}

void mn_bert_config_default(mn_bert_config *c) {
    *c = (mn_bert_config){
        .vocab_size = 30522, .hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12,
        .intermediate_size = 3072, .hidden_act = MN_ACT_GELU, .max_position_embeddings = 512, .type_vocab_size = 2,
        .layer_norm_eps = 1e-12, .pad_token_id = 0, .hidden_dropout_prob = 0.1, .attention_probs_dropout_prob = 0.1,
        .initializer_range = 0.02, .classifier_dropout = -1, .labels = {.num_labels = 2},
    };
}

bool mn_vit_config_named(const char *name, mn_vit_config *c) {
    mn_vit_config_default(c);
    if (!strcmp(name, "vit-fm")) { /* Fashion-MNIST: 28x28x1, 7x7 patches of 4 */
        c->image_size = 28, c->patch_size = 4, c->num_channels = 1;
        c->hidden_size = 128, c->num_hidden_layers = 6, c->num_attention_heads = 4, c->intermediate_size = 512;
        c->labels.num_labels = 10;
    } else if (!strcmp(name, "vit-ti16")) {
        c->hidden_size = 192, c->num_hidden_layers = 12, c->num_attention_heads = 3, c->intermediate_size = 768;
        c->labels.num_labels = 1000;
    } else if (!strcmp(name, "vit-b16")) {
        c->labels.num_labels = 1000;
    } else {
        return false;
    }
    return true;
}

bool mn_bert_config_named(const char *name, mn_bert_config *c) {
    mn_bert_config_default(c);
    if (!strcmp(name, "bert-tiny")) {
        c->hidden_size = 128, c->num_hidden_layers = 2, c->num_attention_heads = 2, c->intermediate_size = 512;
    } else if (!strcmp(name, "bert-mini")) {
        c->hidden_size = 256, c->num_hidden_layers = 4, c->num_attention_heads = 4, c->intermediate_size = 1024;
    } else if (strcmp(name, "bert-base")) {
        return false;
    }
    return true;
}

bool mn_mlp_config_named(const char *name, mn_mlp_config *c) {
    if (strcmp(name, "mlp")) return false;
    *c = (mn_mlp_config){.n_layers = 3, .sizes = {784, 512, 512, 10}, .hidden_act = MN_ACT_RELU};
    return true;
}

void mn_vit_config_copy(mn_vit_config *dst, const mn_vit_config *src) {
    *dst = *src;
    mn_labels_copy(&dst->labels, &src->labels);
}
void mn_vit_config_free(mn_vit_config *c) { mn_labels_free(&c->labels); }

void mn_bert_config_copy(mn_bert_config *dst, const mn_bert_config *src) {
    *dst = *src;
    mn_labels_copy(&dst->labels, &src->labels);
}
void mn_bert_config_free(mn_bert_config *c) { mn_labels_free(&c->labels); }

/* ---- value checks ---------------------------------------------------------------------------------- */

/* at least 1 and at most hi */
static bool check_size(const char *key, int64_t v, int64_t hi, mn_err *err) {
    if (v >= 1 && v <= hi) return true;
    return mn_err_set(err, "key \"%s\": must be between 1 and %lld, found %lld", key, (long long)hi, (long long)v);
}

static bool check_total(double params, mn_err *err) {
    if (params <= MN_MODEL_MAX_PARAMS) return true;
    return mn_err_set(err, "the model's weight matrices would hold %.4g numbers, more than the %.4g a model may have",
                      params, MN_MODEL_MAX_PARAMS);
}

double mn_vit_config_matrix_params(const mn_vit_config *c) {
    double H = (double)c->hidden_size, I = (double)c->intermediate_size, P = (double)c->patch_size;
    double n = (double)(c->image_size / c->patch_size);
    return (double)c->num_channels * P * P * H + (n * n + 1) * H + (double)c->num_hidden_layers * (4 * H * H + 2 * H * I);
}

double mn_bert_config_matrix_params(const mn_bert_config *c) {
    double H = (double)c->hidden_size, I = (double)c->intermediate_size;
    return ((double)c->vocab_size + (double)c->max_position_embeddings + (double)c->type_vocab_size) * H +
           (double)c->num_hidden_layers * (4 * H * H + 2 * H * I);
}

double mn_mlp_config_matrix_params(const mn_mlp_config *c) {
    double n = 0;
    for (int i = 0; i < c->n_layers; i++) n += (double)c->sizes[i] * (double)c->sizes[i + 1];
    return n;
}

static bool check_prob(const char *key, double v, mn_err *err) {
    if (v >= 0 && v < 1) return true;
    return mn_err_set(err, "key \"%s\": must be in [0, 1), found %g", key, v);
}

static bool check_heads(int64_t hidden, int64_t heads, mn_err *err) {
    if (hidden % heads == 0) return true;
    return mn_err_set(err, "key \"hidden_size\": %lld is not a multiple of num_attention_heads %lld", (long long)hidden,
                      (long long)heads);
}

bool mn_vit_config_check(const mn_vit_config *c, mn_err *err) {
    if (!check_size("hidden_size", c->hidden_size, 1 << 18, err) ||
        !check_size("num_hidden_layers", c->num_hidden_layers, 1024, err) ||
        !check_size("num_attention_heads", c->num_attention_heads, c->hidden_size, err) ||
        !check_size("intermediate_size", c->intermediate_size, 1 << 18, err) ||
        !check_size("image_size", c->image_size, 1 << 15, err) ||
        !check_size("patch_size", c->patch_size, c->image_size, err) ||
        !check_size("num_channels", c->num_channels, 1024, err) ||
        !check_size("num_labels", c->labels.num_labels, 1 << 20, err) ||
        !check_heads(c->hidden_size, c->num_attention_heads, err) ||
        !check_prob("hidden_dropout_prob", c->hidden_dropout_prob, err) ||
        !check_prob("attention_probs_dropout_prob", c->attention_probs_dropout_prob, err))
        return false;
    if (c->image_size % c->patch_size)
        return mn_err_set(err, "key \"image_size\": %lld is not a multiple of patch_size %lld",
                          (long long)c->image_size, (long long)c->patch_size);
    if (!(c->layer_norm_eps >= 0))
        return mn_err_set(err, "key \"layer_norm_eps\": must be >= 0, found %g", c->layer_norm_eps);
    if (!(c->initializer_range > 0))
        return mn_err_set(err, "key \"initializer_range\": must be > 0, found %g", c->initializer_range);
    return check_total(mn_vit_config_matrix_params(c) + (double)c->labels.num_labels * (double)c->hidden_size, err);
}

bool mn_bert_config_check(const mn_bert_config *c, mn_err *err) {
    if (!check_size("vocab_size", c->vocab_size, 1 << 23, err) ||
        !check_size("hidden_size", c->hidden_size, 1 << 18, err) ||
        !check_size("num_hidden_layers", c->num_hidden_layers, 1024, err) ||
        !check_size("num_attention_heads", c->num_attention_heads, c->hidden_size, err) ||
        !check_size("intermediate_size", c->intermediate_size, 1 << 18, err) ||
        !check_size("max_position_embeddings", c->max_position_embeddings, 1 << 20, err) ||
        !check_size("type_vocab_size", c->type_vocab_size, 1 << 16, err) ||
        !check_size("num_labels", c->labels.num_labels, 1 << 20, err) ||
        !check_heads(c->hidden_size, c->num_attention_heads, err) ||
        !check_prob("hidden_dropout_prob", c->hidden_dropout_prob, err) ||
        !check_prob("attention_probs_dropout_prob", c->attention_probs_dropout_prob, err))
        return false;
    if (c->classifier_dropout >= 0 && !check_prob("classifier_dropout", c->classifier_dropout, err)) return false;
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size)
        return mn_err_set(err, "key \"pad_token_id\": %lld is outside the vocabulary [0, %lld)",
                          (long long)c->pad_token_id, (long long)c->vocab_size);
    if (!(c->layer_norm_eps >= 0))
        return mn_err_set(err, "key \"layer_norm_eps\": must be >= 0, found %g", c->layer_norm_eps);
    if (!(c->initializer_range > 0))
        return mn_err_set(err, "key \"initializer_range\": must be > 0, found %g", c->initializer_range);
    return check_total(mn_bert_config_matrix_params(c) + (double)c->labels.num_labels * (double)c->hidden_size, err);
}

bool mn_mlp_config_check(const mn_mlp_config *c, mn_err *err) {
    if (c->n_layers < 1 || c->n_layers > MN_MLP_MAX_LAYERS)
        return mn_err_set(err, "key \"sizes\": need 2 to %d sizes, found %d", MN_MLP_MAX_LAYERS + 1, c->n_layers + 1);
    for (int i = 0; i <= c->n_layers; i++)
        if (c->sizes[i] < 1 || c->sizes[i] > (1 << 24))
            return mn_err_set(err, "key \"sizes\": entry %d must be between 1 and %d, found %lld", i, 1 << 24,
                              (long long)c->sizes[i]);
    return check_total(mn_mlp_config_matrix_params(c), err);
}

/* ---- JSON reading ------------------------------------------------------------------------------------ */

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* One config.json being read: the file for messages, the object, the error. */
typedef struct {
    const char *path;
    json_t *root;
    mn_err *err;
} reader;

static bool type_error(reader *r, const char *key, const char *expected, const json_t *v) {
    return mn_err_set(r->err, "%s: key \"%s\": expected %s, found %s", r->path, key, expected, json_kind(v));
}

static bool read_int(reader *r, const char *key, int64_t *out) {
    json_t *v = json_object_get(r->root, key);
    if (!v) return true;
    if (!json_is_integer(v)) return type_error(r, key, "an integer", v);
    *out = (int64_t)json_integer_value(v);
    return true;
}

static bool read_double(reader *r, const char *key, double *out) {
    json_t *v = json_object_get(r->root, key);
    if (!v) return true;
    if (!json_is_number(v)) return type_error(r, key, "a number", v);
    *out = json_number_value(v);
    return true;
}

static bool read_bool(reader *r, const char *key, bool *out) {
    json_t *v = json_object_get(r->root, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return type_error(r, key, "true or false", v);
    *out = json_is_true(v);
    return true;
}

/* A string field; *out stays as is when absent. */
static bool read_string(reader *r, const char *key, const char **out) {
    json_t *v = json_object_get(r->root, key);
    if (!v) return true;
    if (!json_is_string(v)) return type_error(r, key, "a string", v);
    *out = json_string_value(v);
    return true;
}

static bool read_act(reader *r, const char *key, mn_act *out) {
    const char *name = NULL;
    if (!read_string(r, key, &name)) return false;
    if (name && !mn_act_parse(name, out))
        return mn_err_set(r->err,
                          "%s: key \"%s\": unsupported activation \"%s\" (supported: gelu, relu, tanh, sigmoid, "
                          "linear)",
                          r->path, key, name);
    return true;
}

static bool read_model_type(reader *r, const char *expected) {
    const char *type = NULL;
    if (!read_string(r, "model_type", &type)) return false;
    if (type && strcmp(type, expected))
        return mn_err_set(r->err, "%s: key \"model_type\": expected \"%s\", found \"%s\"", r->path, expected, type);
    return true;
}

static bool read_architecture(reader *r, char *out, size_t n) {
    json_t *v = json_object_get(r->root, "architectures");
    out[0] = 0;
    if (!v || json_is_null(v)) return true;
    if (!json_is_array(v)) return type_error(r, "architectures", "an array of strings", v);
    if (json_array_size(v) == 0) return true;
    json_t *first = json_array_get(v, 0);
    if (!json_is_string(first)) return type_error(r, "architectures[0]", "a string", first);
    snprintf(out, n, "%s", json_string_value(first));
    return true;
}

/* id2label {"0": "cat", ...} (keys exactly 0..n-1), label2id {"cat": 0, ...}, num_labels. */
static bool read_labels(reader *r, mn_labels *l) {
    json_t *id2label = json_object_get(r->root, "id2label"), *label2id = json_object_get(r->root, "label2id");
    int64_t num_labels = -1;
    if (!read_int(r, "num_labels", &num_labels)) return false;
    if (label2id && !json_is_object(label2id)) return type_error(r, "label2id", "an object", label2id);
    if (label2id) {
        const char *name;
        json_t *v;
        json_object_foreach(label2id, name, v) {
            if (!json_is_integer(v))
                return mn_err_set(r->err, "%s: key \"label2id\": entry \"%s\": expected an integer, found %s", r->path,
                                  name, json_kind(v));
        }
    }
    if (id2label && !json_is_null(id2label)) {
        if (!json_is_object(id2label)) return type_error(r, "id2label", "an object", id2label);
        int64_t n = (int64_t)json_object_size(id2label);
        if (n < 1) return mn_err_set(r->err, "%s: key \"id2label\": empty", r->path);
        if (num_labels >= 0 && num_labels != n)
            return mn_err_set(r->err, "%s: key \"num_labels\": %lld, but id2label has %lld entries", r->path,
                              (long long)num_labels, (long long)n);
        const char **names = calloc((size_t)n, sizeof *names);
        if (!names) mn_fatal("out of memory reading %s", r->path);
        bool ok = true;
        const char *key;
        json_t *v;
        json_object_foreach(id2label, key, v) {
            char *end;
            long long id = strtoll(key, &end, 10);
            if (!*key || *end || id < 0 || id >= n) {
                ok = mn_err_set(r->err, "%s: key \"id2label\": entry \"%s\": expected a class number in [0, %lld)",
                                r->path, key, (long long)n);
                break;
            }
            if (!json_is_string(v)) {
                ok = mn_err_set(r->err, "%s: key \"id2label\": entry \"%s\": expected a string, found %s", r->path, key,
                                json_kind(v));
                break;
            }
            if (names[id]) {
                ok = mn_err_set(r->err, "%s: key \"id2label\": class %lld appears twice", r->path, id);
                break;
            }
            names[id] = json_string_value(v);
        }
        if (ok) mn_labels_set(l, n, names);
        free(names);
        return ok;
    }
    if (num_labels >= 0) {
        if (num_labels < 1) return mn_err_set(r->err, "%s: key \"num_labels\": must be at least 1, found %lld", r->path,
                                              (long long)num_labels);
        mn_labels_set(l, num_labels, NULL);
    }
    return true;
}

const char *mn__config_path(const char *path, char *buf, size_t n) {
    if (mn__is_dir(path) && mn__path_join(buf, n, path, "config.json")) return buf;
    return path;
}

json_t *mn__json_read_object(const char *path, mn_err *err) {
    size_t size;
    char *text = mn_read_file(path, &size, (size_t)64 << 20, err);
    if (!text) return NULL;
    json_error_t je;
    json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) {
        mn_err_set(err, "%s: line %d, column %d: invalid JSON: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        mn_err_set(err, "%s: expected a JSON object at the top level, found %s", path, json_kind(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Opens the config, runs fill, then the value checks (prefixed with the file). */
static bool read_config(const char *path, void *cfg, bool (*fill)(reader *, void *),
                        bool (*check)(const void *, mn_err *), mn_err *err) {
    char buf[4096];
    path = mn__config_path(path, buf, sizeof buf);
    reader r = {path, mn__json_read_object(path, err), err};
    if (!r.root) return false;
    bool ok = fill(&r, cfg);
    json_decref(r.root);
    if (!ok) return false;
    mn_err inner;
    if (!check(cfg, &inner)) return mn_err_set(err, "%s: %s", path, inner.msg);
    return true;
}

static bool fill_vit(reader *r, void *p) {
    mn_vit_config *c = p;
    const char *pooler_act = NULL;
    int64_t pooler_size = c->hidden_size;
    bool ok = read_model_type(r, "vit") && read_architecture(r, c->architecture, sizeof c->architecture) &&
              read_int(r, "hidden_size", &c->hidden_size) && read_int(r, "num_hidden_layers", &c->num_hidden_layers) &&
              read_int(r, "num_attention_heads", &c->num_attention_heads) &&
              read_int(r, "intermediate_size", &c->intermediate_size) && read_act(r, "hidden_act", &c->hidden_act) &&
              read_double(r, "layer_norm_eps", &c->layer_norm_eps) && read_int(r, "image_size", &c->image_size) &&
              read_int(r, "patch_size", &c->patch_size) && read_int(r, "num_channels", &c->num_channels) &&
              read_bool(r, "qkv_bias", &c->qkv_bias) &&
              read_double(r, "hidden_dropout_prob", &c->hidden_dropout_prob) &&
              read_double(r, "attention_probs_dropout_prob", &c->attention_probs_dropout_prob) &&
              read_double(r, "initializer_range", &c->initializer_range) && read_labels(r, &c->labels) &&
              read_string(r, "pooler_act", &pooler_act);
    if (!ok) return false;
    /* newer transformers: the pooler may have another width or activation; mnemo's is tanh, H wide */
    pooler_size = c->hidden_size;
    json_t *ps = json_object_get(r->root, "pooler_output_size");
    if (ps && !json_is_null(ps) && !read_int(r, "pooler_output_size", &pooler_size)) return false;
    if (pooler_size != c->hidden_size)
        return mn_err_set(r->err, "%s: key \"pooler_output_size\": only hidden_size (%lld) is supported, found %lld",
                          r->path, (long long)c->hidden_size, (long long)pooler_size);
    if (pooler_act && strcmp(pooler_act, "tanh"))
        return mn_err_set(r->err, "%s: key \"pooler_act\": only \"tanh\" is supported, found \"%s\"", r->path,
                          pooler_act);
    return true;
}

static bool fill_bert(reader *r, void *p) {
    mn_bert_config *c = p;
    const char *position_type = NULL;
    bool ok = read_model_type(r, "bert") && read_architecture(r, c->architecture, sizeof c->architecture) &&
              read_int(r, "vocab_size", &c->vocab_size) && read_int(r, "hidden_size", &c->hidden_size) &&
              read_int(r, "num_hidden_layers", &c->num_hidden_layers) &&
              read_int(r, "num_attention_heads", &c->num_attention_heads) &&
              read_int(r, "intermediate_size", &c->intermediate_size) && read_act(r, "hidden_act", &c->hidden_act) &&
              read_int(r, "max_position_embeddings", &c->max_position_embeddings) &&
              read_int(r, "type_vocab_size", &c->type_vocab_size) &&
              read_double(r, "layer_norm_eps", &c->layer_norm_eps) && read_int(r, "pad_token_id", &c->pad_token_id) &&
              read_double(r, "hidden_dropout_prob", &c->hidden_dropout_prob) &&
              read_double(r, "attention_probs_dropout_prob", &c->attention_probs_dropout_prob) &&
              read_double(r, "initializer_range", &c->initializer_range) && read_labels(r, &c->labels) &&
              read_string(r, "position_embedding_type", &position_type);
    if (!ok) return false;
    json_t *cd = json_object_get(r->root, "classifier_dropout");
    if (cd && !json_is_null(cd) && !read_double(r, "classifier_dropout", &c->classifier_dropout)) return false;
    if (position_type && strcmp(position_type, "absolute"))
        return mn_err_set(r->err, "%s: key \"position_embedding_type\": only \"absolute\" is supported, found \"%s\"",
                          r->path, position_type);
    return true;
}

static bool fill_mlp(reader *r, void *p) {
    mn_mlp_config *c = p;
    if (!read_model_type(r, "mlp") || !read_act(r, "hidden_act", &c->hidden_act)) return false;
    json_t *sizes = json_object_get(r->root, "sizes");
    if (!sizes)
        return mn_err_set(r->err, "%s: key \"sizes\": missing (the layer widths, e.g. [784, 512, 10])", r->path);
    if (!json_is_array(sizes)) return type_error(r, "sizes", "an array of integers", sizes);
    size_t n = json_array_size(sizes);
    if (n < 2 || n > MN_MLP_MAX_LAYERS + 1)
        return mn_err_set(r->err, "%s: key \"sizes\": need 2 to %d sizes, found %zu", r->path, MN_MLP_MAX_LAYERS + 1,
                          n);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(sizes, i);
        if (!json_is_integer(v))
            return mn_err_set(r->err, "%s: key \"sizes\": entry %zu: expected an integer, found %s", r->path, i,
                              json_kind(v));
        c->sizes[i] = (int64_t)json_integer_value(v);
    }
    c->n_layers = (int)n - 1;
    return true;
}

static bool check_vit(const void *c, mn_err *err) { return mn_vit_config_check(c, err); }
static bool check_bert(const void *c, mn_err *err) { return mn_bert_config_check(c, err); }
static bool check_mlp(const void *c, mn_err *err) { return mn_mlp_config_check(c, err); }

bool mn_vit_config_read(const char *path, mn_vit_config *c, mn_err *err) {
    mn_vit_config_default(c);
    if (read_config(path, c, fill_vit, check_vit, err)) return true;
    mn_vit_config_free(c);
    return false;
}

bool mn_bert_config_read(const char *path, mn_bert_config *c, mn_err *err) {
    mn_bert_config_default(c);
    if (read_config(path, c, fill_bert, check_bert, err)) return true;
    mn_bert_config_free(c);
    return false;
}

bool mn_mlp_config_read(const char *path, mn_mlp_config *c, mn_err *err) {
    *c = (mn_mlp_config){.hidden_act = MN_ACT_RELU};
    return read_config(path, c, fill_mlp, check_mlp, err);
}

bool mn_config_model_type(const char *path, char *out, size_t n, mn_err *err) {
    char buf[4096];
    path = mn__config_path(path, buf, sizeof buf);
    reader r = {path, mn__json_read_object(path, err), err};
    if (!r.root) return false;
    const char *type = NULL;
    bool ok = read_string(&r, "model_type", &type);
    if (ok && !type) ok = mn_err_set(err, "%s: key \"model_type\": missing", path);
    if (ok) snprintf(out, n, "%s", type);
    json_decref(r.root);
    return ok;
}

/* ---- JSON writing -------------------------------------------------------------------------------------- */

bool mn__json_write(json_t *root, const char *path, mn_err *err) {
    /* 15 significant digits print 1e-12 and 0.1 as written (17 would show binary noise) */
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    if (!text) return mn_err_set(err, "%s: could not serialise the configuration", path);
    size_t len = strlen(text);
    text = realloc(text, len + 2);
    if (!text) mn_fatal("out of memory writing %s", path);
    text[len] = '\n';
    text[len + 1] = 0;
    bool ok = mn_write_file_atomic(path, text, len + 1, err);
    free(text);
    return ok;
}

static void set_int(json_t *o, const char *key, int64_t v) { json_object_set_new(o, key, json_integer((json_int_t)v)); }
static void set_real(json_t *o, const char *key, double v) { json_object_set_new(o, key, json_real(v)); }
static void set_str(json_t *o, const char *key, const char *v) { json_object_set_new(o, key, json_string(v)); }

static json_t *config_object(const char *model_type, const char *architecture) {
    json_t *o = json_object();
    set_str(o, "model_type", model_type);
    if (architecture && *architecture) {
        json_t *a = json_array();
        json_array_append_new(a, json_string(architecture));
        json_object_set_new(o, "architectures", a);
    }
    set_str(o, "torch_dtype", "float32");
    return o;
}

static void set_labels(json_t *o, const mn_labels *l) {
    json_t *id2label = json_object(), *label2id = json_object();
    char buf[32], key[32];
    for (int64_t i = 0; i < l->num_labels; i++) {
        const char *name = mn_labels_name(l, i, buf);
        snprintf(key, sizeof key, "%lld", (long long)i);
        json_object_set_new(id2label, key, json_string(name));
        json_object_set_new(label2id, name, json_integer((json_int_t)i));
    }
    json_object_set_new(o, "id2label", id2label);
    json_object_set_new(o, "label2id", label2id);
}

bool mn_vit_config_write(const mn_vit_config *c, const char *path, mn_err *err) {
    json_t *o = config_object("vit", c->architecture);
    set_int(o, "hidden_size", c->hidden_size);
    set_int(o, "num_hidden_layers", c->num_hidden_layers);
    set_int(o, "num_attention_heads", c->num_attention_heads);
    set_int(o, "intermediate_size", c->intermediate_size);
    set_str(o, "hidden_act", mn_act_name(c->hidden_act));
    set_real(o, "layer_norm_eps", c->layer_norm_eps);
    set_int(o, "image_size", c->image_size);
    set_int(o, "patch_size", c->patch_size);
    set_int(o, "num_channels", c->num_channels);
    json_object_set_new(o, "qkv_bias", json_boolean(c->qkv_bias));
    set_real(o, "hidden_dropout_prob", c->hidden_dropout_prob);
    set_real(o, "attention_probs_dropout_prob", c->attention_probs_dropout_prob);
    set_real(o, "initializer_range", c->initializer_range);
    set_int(o, "encoder_stride", c->patch_size); /* transformers' default; used only by masked image modeling */
    set_labels(o, &c->labels);
    bool ok = mn__json_write(o, path, err);
    json_decref(o);
    return ok;
}

bool mn_bert_config_write(const mn_bert_config *c, const char *path, mn_err *err) {
    json_t *o = config_object("bert", c->architecture);
    set_int(o, "vocab_size", c->vocab_size);
    set_int(o, "hidden_size", c->hidden_size);
    set_int(o, "num_hidden_layers", c->num_hidden_layers);
    set_int(o, "num_attention_heads", c->num_attention_heads);
    set_int(o, "intermediate_size", c->intermediate_size);
    set_str(o, "hidden_act", mn_act_name(c->hidden_act));
    set_int(o, "max_position_embeddings", c->max_position_embeddings);
    set_int(o, "type_vocab_size", c->type_vocab_size);
    set_real(o, "layer_norm_eps", c->layer_norm_eps);
    set_int(o, "pad_token_id", c->pad_token_id);
    set_real(o, "hidden_dropout_prob", c->hidden_dropout_prob);
    set_real(o, "attention_probs_dropout_prob", c->attention_probs_dropout_prob);
    set_real(o, "initializer_range", c->initializer_range);
    json_object_set_new(o, "classifier_dropout",
                        c->classifier_dropout < 0 ? json_null() : json_real(c->classifier_dropout));
    set_str(o, "position_embedding_type", "absolute");
    set_labels(o, &c->labels);
    bool ok = mn__json_write(o, path, err);
    json_decref(o);
    return ok;
}

bool mn_mlp_config_write(const mn_mlp_config *c, const char *path, mn_err *err) {
    json_t *o = config_object("mlp", "MLP");
    json_t *sizes = json_array();
    for (int i = 0; i <= c->n_layers; i++) json_array_append_new(sizes, json_integer((json_int_t)c->sizes[i]));
    json_object_set_new(o, "sizes", sizes);
    set_str(o, "hidden_act", mn_act_name(c->hidden_act));
    bool ok = mn__json_write(o, path, err);
    json_decref(o);
    return ok;
}
