/* config.json sizes that cannot be honoured are refused before anything is allocated: for a saved
 * tiny ViT, BERT and MLP, every size field set to 0, -1, 10^9 and 2^63 (and 2 x the saved value,
 * which the checks allow but the checkpoint does not hold, where it changes the matrices) makes
 * mn_*_from_pretrained return NULL with an error naming the field or the checkpoint, and the
 * whole test stays under 100 MB of peak memory. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static char root[] = "/tmp/test_config_limits_XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(root);
}

#define PLACEHOLDER 987654321

/* dir/config.json with key (or entry `index` of the array key, index >= 0) set to the literal text value */
static void set_field(const char *dir, const char *key, int index, const char *value) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    assert_non_null(cfg);
    if (index >= 0) json_array_set_new(json_object_get(cfg, key), (size_t)index, json_integer(PLACEHOLDER));
    else json_object_set_new(cfg, key, json_integer(PLACEHOLDER));
    char *text = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    char *at = strstr(text, "987654321");
    assert_non_null(at);
    char out[1 << 16];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, value, at + 9);
    free(text);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    mn_err err;
    size_t n;
    char *data = mn_read_file(from, &n, 0, &err);
    assert_non_null(data);
    assert_true(mn_write_file_atomic(to, data, n, &err));
    free(data);
}

typedef enum { VIT, BERT, MLP } kind;

static bool load(kind k, const char *dir, mn_err *err) {
    mn_load_report rep;
    void *m = k == VIT    ? (void *)mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, NULL, &rep, err)
              : k == BERT ? (void *)mn_bert_from_pretrained(dir, MN_BERT_FOR_MASKED_LM, NULL, &rep, err)
                          : (void *)mn_mlp_model_from_pretrained(dir, 0, &rep, err);
    if (!m) return false;
    if (k == VIT) mn_vit_free(m);
    else if (k == BERT) mn_bert_free(m);
    else mn_mlp_model_free(m);
    mn_load_report_free(&rep);
    return true;
}

/* Each field of `fields` (name, array index or -1, saved value) at each bad value is refused. */
static void refuse_all(kind k, const char *saved, const char *const (*fields)[3], int n_fields) {
    const char *values[] = {"0", "-1", "1000000000", "9223372036854775808", "double"};
    char dir[4200], from[8400], to[8400];
    snprintf(dir, sizeof dir, "%s/edited", root);
    assert_true(mn_make_dirs(dir, &(mn_err){0}));
    snprintf(from, sizeof from, "%s/model.safetensors", saved), snprintf(to, sizeof to, "%s/model.safetensors", dir);
    copy_file(from, to);
    mn_err err;
    assert_true(load(k, saved, &err));
    for (int f = 0; f < n_fields; f++)
        for (int v = 0; v < 5; v++) {
            char value[64];
            snprintf(value, sizeof value, "%s", values[v]);
            if (v == 4) snprintf(value, sizeof value, "%lld", 2 * atoll(fields[f][2]));
            snprintf(from, sizeof from, "%s/config.json", saved), snprintf(to, sizeof to, "%s/config.json", dir);
            copy_file(from, to);
            set_field(dir, fields[f][0], atoi(fields[f][1]), value);
            bool ok = load(k, dir, &err);
            if (v == 4 && !strcmp(fields[f][0], "num_attention_heads") && ok) continue; /* same matrices */
            if (ok) fail_msg("%s = %s was accepted", fields[f][0], value);
            bool named = strstr(err.msg, fields[f][0]) || strstr(err.msg, "does not belong to this checkpoint") ||
                         strstr(err.msg, "config.json: line") || strstr(err.msg, "not a multiple") ||
                         strstr(err.msg, "shape");
            if (!named) fail_msg("%s = %s: the error does not say what is wrong: %s", fields[f][0], value, err.msg);
        }
}

static void vit_sizes_are_refused_before_allocation(void **state) {
    (void)state;
    mn_vit_config cfg;
    mn_vit_config_default(&cfg);
    cfg.hidden_size = 16, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 32;
    cfg.image_size = 8, cfg.patch_size = 4, cfg.num_channels = 1;
    mn_rng rng = mn_rng_new(1);
    mn_vit *m = mn_vit_new(&cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/vit", root);
    mn_err err;
    assert_true(mn_vit_save(m, dir, &err));
    mn_vit_free(m);
    mn_vit_config_free(&cfg);
    static const char *const fields[][3] = {{"hidden_size", "-1", "16"},       {"num_hidden_layers", "-1", "2"},
                                            {"num_attention_heads", "-1", "2"}, {"intermediate_size", "-1", "32"},
                                            {"image_size", "-1", "8"},          {"patch_size", "-1", "4"},
                                            {"num_channels", "-1", "1"}};
    refuse_all(VIT, dir, fields, 7);
}

static void bert_sizes_are_refused_before_allocation(void **state) {
    (void)state;
    mn_bert_config cfg;
    mn_bert_config_default(&cfg);
    cfg.vocab_size = 50, cfg.hidden_size = 16, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2;
    cfg.intermediate_size = 32, cfg.max_position_embeddings = 16, cfg.type_vocab_size = 2;
    mn_rng rng = mn_rng_new(2);
    mn_bert *m = mn_bert_new(&cfg, MN_BERT_FOR_MASKED_LM, false, &rng);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/bert", root);
    mn_err err;
    assert_true(mn_bert_save(m, dir, &err));
    mn_bert_free(m);
    mn_bert_config_free(&cfg);
    static const char *const fields[][3] = {{"vocab_size", "-1", "50"},
                                            {"hidden_size", "-1", "16"},
                                            {"num_hidden_layers", "-1", "2"},
                                            {"num_attention_heads", "-1", "2"},
                                            {"intermediate_size", "-1", "32"},
                                            {"max_position_embeddings", "-1", "16"},
                                            {"type_vocab_size", "-1", "2"}};
    refuse_all(BERT, dir, fields, 7);
}

static void mlp_sizes_are_refused_before_allocation(void **state) {
    (void)state;
    mn_mlp_config cfg = {.n_layers = 2, .sizes = {12, 8, 3}, .hidden_act = MN_ACT_RELU};
    mn_rng rng = mn_rng_new(3);
    mn_mlp_model *m = mn_mlp_model_new(&cfg, &rng);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/mlp", root);
    mn_err err;
    assert_true(mn_mlp_model_save(m, dir, &err));
    mn_mlp_model_free(m);
    static const char *const fields[][3] = {{"sizes", "0", "12"}, {"sizes", "1", "8"}, {"sizes", "2", "3"}};
    refuse_all(MLP, dir, fields, 3);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    print_message("peak resident memory of the whole test: %ld MB\n", ru.ru_maxrss / 1024);
    assert_true(ru.ru_maxrss < 100 * 1024);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vit_sizes_are_refused_before_allocation),
        cmocka_unit_test(bert_sizes_are_refused_before_allocation),
        cmocka_unit_test(mlp_sizes_are_refused_before_allocation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
