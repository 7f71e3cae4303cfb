/* config.json and checkpoint directories: round trips, Hugging Face defaults,
 * errors naming file and key, save -> load giving identical outputs, base-model
 * prefix added and stripped, heads re-initialised on a new num_labels, legacy
 * LayerNorm.gamma/beta, tied decoder aliases, ignored extra tensors, shards,
 * and bad files that must never crash nor change the model. */
#include "model_fixtures.h"

#include <math.h>
#include <unistd.h>

/* ---- config.json ---------------------------------------------------------------------------------------- */

static void config_json_round_trips_every_field(void **state) {
    (void)state;
    char *dir = make_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    mn_vit_config v, v2;
    tiny_vit_config(&v);
    v.layer_norm_eps = 1e-6, v.hidden_dropout_prob = 0.25, v.qkv_bias = false, v.hidden_act = MN_ACT_RELU;
    mn_labels_set(&v.labels, 3, (const char *[]){"cat", "dog", "bird"});
    mn_err err;
    assert_true(mn_vit_config_write(&v, path, &err));
    assert_true(mn_vit_config_read(dir, &v2, &err)); /* a directory means its config.json */
    assert_int_equal(v2.hidden_size, 8);
    assert_int_equal(v2.intermediate_size, 16);
    assert_int_equal(v2.image_size, 8);
    assert_int_equal(v2.patch_size, 4);
    assert_true(v2.layer_norm_eps == 1e-6 && v2.hidden_dropout_prob == 0.25 && !v2.qkv_bias);
    assert_int_equal(v2.hidden_act, MN_ACT_RELU);
    assert_int_equal(v2.labels.num_labels, 3);
    char buf[32];
    assert_string_equal(mn_labels_name(&v2.labels, 2, buf), "bird");
    assert_int_equal(mn_labels_find(&v2.labels, "dog"), 1);
    char type[16];
    assert_true(mn_config_model_type(dir, type, sizeof type, &err));
    assert_string_equal(type, "vit");
    mn_vit_config_free(&v);
    mn_vit_config_free(&v2);

    /* BERT: the file holds every field Hugging Face's BertConfig writes */
    mn_bert_config b, b2;
    tiny_bert_config(&b);
    b.classifier_dropout = 0.3, b.pad_token_id = 3;
    assert_true(mn_bert_config_write(&b, path, &err));
    size_t size;
    char *text = mn_read_file(path, &size, 0, &err);
    const char *fields[] = {"\"model_type\": \"bert\"", "\"vocab_size\": 20", "\"layer_norm_eps\": 1e-12",
                            "\"hidden_act\": \"gelu\"", "\"type_vocab_size\": 2", "\"max_position_embeddings\": 10",
                            "\"initializer_range\": 0.02", "\"attention_probs_dropout_prob\": 0.1", "\"id2label\"",
                            "\"LABEL_2\"", "\"label2id\""};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strstr(text, fields[i])) fail_msg("config.json lacks %s:\n%s", fields[i], text);
    free(text);
    assert_true(mn_bert_config_read(path, &b2, &err));
    assert_true(b2.classifier_dropout == 0.3 && b2.pad_token_id == 3 && b2.max_position_embeddings == 10);
    assert_int_equal(b2.labels.num_labels, 3);
    mn_bert_config_free(&b2);
    remove_tree(dir);
}

static void config_json_missing_fields_take_hugging_face_defaults(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    write_text(dir, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 64, \"num_attention_heads\": 4,\n"
                                   " \"num_labels\": 5, \"use_cache\": true}\n");
    mn_bert_config b;
    mn_err err;
    assert_true(mn_bert_config_read(dir, &b, &err));
    assert_int_equal(b.hidden_size, 64);
    assert_int_equal(b.vocab_size, 30522);
    assert_int_equal(b.num_hidden_layers, 12);
    assert_int_equal(b.max_position_embeddings, 512);
    assert_true(b.hidden_dropout_prob == 0.1 && b.layer_norm_eps == 1e-12 && b.classifier_dropout < 0);
    assert_int_equal(b.labels.num_labels, 5);
    mn_bert_config_free(&b);
    write_text(dir, "config.json", "{\"model_type\": \"vit\", \"image_size\": 32}");
    mn_vit_config v;
    assert_true(mn_vit_config_read(dir, &v, &err));
    assert_int_equal(v.image_size, 32);
    assert_int_equal(v.patch_size, 16);
    assert_true(v.qkv_bias && v.hidden_dropout_prob == 0.0 && v.initializer_range == 0.02);
    assert_int_equal(v.labels.num_labels, 2);
    mn_vit_config_free(&v);
    remove_tree(dir);
}

/* err names the file and key; each case is one bad config.json */
static void bad_config_json_gives_errors_naming_file_and_key(void **state) {
    (void)state;
    char *dir = make_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct {
        const char *json, *words[2];
    } cases[] = {
        {"{\"model_type\": \"vit\", \"hidden_size\": \"big\"}", {"\"hidden_size\"", "found a string"}},
        {"{\"model_type\": \"vit\", \"qkv_bias\": 1}", {"\"qkv_bias\"", "true or false"}},
        {"{\"model_type\": \"vit\", \"layer_norm_eps\": [1]}", {"\"layer_norm_eps\"", "an array"}},
        {"{\"model_type\": \"vit\", \"hidden_act\": \"gelu_new\"}", {"\"hidden_act\"", "gelu_new"}},
        {"{\"model_type\": \"vit\", \"hidden_size\": 10, \"num_attention_heads\": 3}", {"\"hidden_size\"", "multiple"}},
        {"{\"model_type\": \"vit\", \"image_size\": 30}", {"\"image_size\"", "patch_size"}},
        {"{\"model_type\": \"bert\"}", {"\"model_type\"", "expected \"vit\""}},
        {"{\"model_type\": \"vit\", \"id2label\": {\"0\": \"a\", \"2\": \"b\"}}", {"\"id2label\"", "\"2\""}},
        {"{\"model_type\": \"vit\", \"id2label\": {\"0\": 7}}", {"\"id2label\"", "expected a string"}},
        {"{\"model_type\": \"vit\",\n \"hidden_size\": 8,,}", {"line 2", "invalid JSON"}},
        {"[1, 2]", {"JSON object", "array"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "config.json", cases[i].json);
        mn_vit_config v;
        mn_err err = {{0}};
        if (mn_vit_config_read(path, &v, &err)) fail_msg("accepted %s", cases[i].json);
        if (!strstr(err.msg, path)) fail_msg("error \"%s\" does not name the file", err.msg);
        for (int w = 0; w < 2; w++)
            if (!strstr(err.msg, cases[i].words[w])) fail_msg("error \"%s\" lacks %s", err.msg, cases[i].words[w]);
    }
    write_text(dir, "config.json", "{\"model_type\": \"bert\", \"position_embedding_type\": \"relative_key\"}");
    mn_bert_config b;
    mn_err err;
    assert_false(mn_bert_config_read(dir, &b, &err));
    assert_non_null(strstr(err.msg, "position_embedding_type"));
    write_text(dir, "config.json", "{\"model_type\": \"mlp\", \"sizes\": [4, \"x\"]}");
    mn_mlp_config mc;
    assert_false(mn_mlp_config_read(dir, &mc, &err));
    assert_non_null(strstr(err.msg, "\"sizes\""));
    remove_tree(dir);
}

/* ---- checkpoints ------------------------------------------------------------------------------------------ */

static void save_then_load_gives_identical_outputs(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir();
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(6);

    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_labels_set(&vc.labels, 3, (const char *[]){"cat", "dog", "bird"});
    mn_vit *vit = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    mn_tensor *pixels = random_pixels(7, 2, &vc);
    assert_true(mn_vit_save(vit, dir, &err));
    mn_vit *vit2 = mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, &(mn_pretrained_opts){.seed = 99},
                                          &rep, &err);
    assert_non_null(vit2);
    assert_int_equal(rep.n_missing + rep.n_unexpected + rep.n_mismatched + rep.n_notes, 0);
    char *summary = mn_load_report_summary(&rep);
    assert_string_equal(summary, "");
    free(summary);
    mn_load_report_free(&rep);
    assert_same_values(mn_vit_forward(vit2, pixels, NULL), mn_vit_forward(vit, pixels, NULL));
    char buf[32];
    assert_string_equal(mn_labels_name(&vit2->cfg.labels, 1, buf), "dog");
    mn_vit_free(vit);
    mn_vit_free(vit2);
    mn_vit_config_free(&vc);

    /* BERT masked LM: the file holds the tied decoder once (as the word embeddings) */
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_tensor *ids = random_ids(8, 2, 6, bc.vocab_size), *mask = padding_mask(2, 6);
    for (int arch = MN_BERT_MODEL; arch <= MN_BERT_FOR_SEQUENCE_CLASSIFICATION; arch++) {
        mn_bert *b = mn_bert_new(&bc, (mn_bert_arch)arch, true, &rng);
        assert_true(mn_bert_save(b, dir, &err));
        mn_bert *b2 = mn_bert_from_pretrained(dir, (mn_bert_arch)arch, &(mn_pretrained_opts){.pooler = true, .seed = 5},
                                              &rep, &err);
        assert_non_null(b2);
        assert_int_equal(rep.n_missing + rep.n_unexpected + rep.n_mismatched, 0);
        mn_load_report_free(&rep);
        assert_same_values(mn_bert_forward(b2, ids, NULL, mask, NULL), mn_bert_forward(b, ids, NULL, mask, NULL));
        if (arch == MN_BERT_FOR_MASKED_LM) {
            char path[512];
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            mn_st_file *f = mn_st_open(path, &err);
            assert_non_null(f);
            assert_int_equal(mn_st_count(f), b->params.count);
            assert_false(mn_st_info(f, "cls.predictions.decoder.weight", NULL, NULL, NULL));
            assert_string_equal(mn_st_meta(f, "format"), "pt");
            mn_st_close(f);
        }
        mn_bert_free(b);
        mn_bert_free(b2);
    }

    mn_mlp_config mc = {.n_layers = 2, .sizes = {5, 7, 3}, .hidden_act = MN_ACT_TANH};
    mn_mlp_model *mlp = mn_mlp_model_new(&mc, &rng);
    assert_true(mn_mlp_model_save(mlp, dir, &err));
    mn_mlp_model *mlp2 = mn_mlp_model_from_pretrained(dir, 3, NULL, &err);
    assert_non_null(mlp2);
    assert_int_equal(mlp2->cfg.hidden_act, MN_ACT_TANH);
    mn_tensor *x = tu_rand(9, MN_SHAPE(4, 5), -1, 1);
    assert_same_values(mn_mlp_model_forward(mlp2, x), mn_mlp_model_forward(mlp, x));
    assert_non_null(mn_params_find(&mlp2->params, "layers.1.bias"));
    mn_mlp_model_free(mlp);
    mn_mlp_model_free(mlp2);
    remove_tree(dir);
    mn_scope_end(sc);
}

static void backbone_checkpoint_into_head_model_reports_and_initialises_head(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir();
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(10);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_vit *base = mn_vit_new(&vc, MN_VIT_MODEL, false, &rng);
    assert_true(mn_vit_save(base, dir, &err));
    mn_vit *head = mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION,
                                          &(mn_pretrained_opts){.num_labels = 4, .seed = 11}, &rep, &err);
    assert_non_null(head);
    assert_int_equal(rep.n_missing, 2);
    assert_true(list_has(rep.missing, 2, "classifier.weight") && list_has(rep.missing, 2, "classifier.bias"));
    assert_int_equal(rep.n_unexpected, 0);
    char *summary = mn_load_report_summary(&rep);
    assert_non_null(strstr(summary, "Some weights of ViTForImageClassification were not initialized"));
    assert_non_null(strstr(summary, "'classifier.weight'"));
    assert_non_null(strstr(summary, "added the prefix 'vit.'"));
    free(summary);
    mn_load_report_free(&rep);
    for (int i = 0; i < base->params.count; i++) {
        char name[256];
        snprintf(name, sizeof name, "vit.%s", base->params.items[i].name);
        assert_same_values(param(&head->params, name), base->params.items[i].tensor);
    }
    /* the head is what a fresh model from the same seed has: newly initialised, not stale */
    mn_vit_config c4;
    mn_vit_config_copy(&c4, &vc);
    mn_labels_set(&c4.labels, 4, NULL);
    mn_rng rng11 = mn_rng_new(11);
    mn_vit *fresh = mn_vit_new(&c4, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng11);
    assert_same_values(head->classifier.weight, fresh->classifier.weight);
    assert_int_equal(head->classifier.weight->shape[0], 4);

    /* and back: the task checkpoint into a bare model strips the prefix, the head is unexpected */
    assert_true(mn_vit_save(head, dir, &err));
    mn_vit *bare = mn_vit_from_pretrained(dir, MN_VIT_MODEL, NULL, &rep, &err);
    assert_non_null(bare);
    assert_int_equal(rep.n_missing, 0);
    assert_int_equal(rep.n_unexpected, 2);
    assert_true(list_has(rep.unexpected, 2, "classifier.weight"));
    mn_load_report_free(&rep);
    mn_tensor *pixels = random_pixels(12, 2, &vc);
    assert_same_values(mn_vit_encode(bare, pixels, NULL), mn_vit_encode(base, pixels, NULL));

    /* BERT: a BertModel (with pooler) into BertForMaskedLM */
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *bb = mn_bert_new(&bc, MN_BERT_MODEL, true, &rng);
    assert_true(mn_bert_save(bb, dir, &err));
    mn_bert *mlm = mn_bert_from_pretrained(dir, MN_BERT_FOR_MASKED_LM, NULL, &rep, &err);
    assert_non_null(mlm);
    assert_int_equal(rep.n_missing, 5); /* cls.predictions.bias, transform dense and LayerNorm */
    assert_true(list_has(rep.missing, 5, "cls.predictions.transform.dense.weight"));
    assert_int_equal(rep.n_unexpected, 2); /* the pooler */
    assert_true(list_has(rep.unexpected, 2, "pooler.dense.weight"));
    assert_same_values(mlm->word_embeddings.weight, bb->word_embeddings.weight);
    mn_load_report_free(&rep);
    mn_bert_free(bb);
    mn_bert_free(mlm);
    mn_vit_free(base);
    mn_vit_free(head);
    mn_vit_free(fresh);
    mn_vit_free(bare);
    mn_vit_config_free(&c4);
    remove_tree(dir);
    mn_scope_end(sc);
}

static void different_num_labels_reinitialises_classifier(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir();
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(13);
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *three = mn_bert_new(&bc, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng);
    assert_true(mn_bert_save(three, dir, &err));
    const char *names[] = {"a", "b", "c", "d", "e"};
    mn_bert *five = mn_bert_from_pretrained(dir, MN_BERT_FOR_SEQUENCE_CLASSIFICATION,
                                            &(mn_pretrained_opts){.num_labels = 5, .id2label = names, .seed = 14}, &rep,
                                            &err);
    assert_non_null(five);
    assert_int_equal(rep.n_mismatched, 2);
    assert_int_equal(rep.n_missing + rep.n_unexpected, 0);
    char *summary = mn_load_report_summary(&rep);
    assert_non_null(strstr(summary, "shapes did not match"));
    assert_non_null(strstr(summary, "classifier.weight: found shape [3, 8] in the checkpoint and [5, 8] in the model"));
    free(summary);
    mn_load_report_free(&rep);
    mn_bert_config b5;
    mn_bert_config_copy(&b5, &bc);
    mn_labels_set(&b5.labels, 5, names);
    mn_rng rng14 = mn_rng_new(14);
    mn_bert *fresh = mn_bert_new(&b5, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng14);
    assert_same_values(five->classifier.weight, fresh->classifier.weight);
    assert_same_values(five->classifier.bias, fresh->classifier.bias);
    assert_same_values(five->pooler_dense.weight, three->pooler_dense.weight);
    assert_same_values(five->layers[0].fc1.weight, three->layers[0].fc1.weight);
    char buf[32];
    assert_string_equal(mn_labels_name(&five->cfg.labels, 4, buf), "e");
    mn_bert_free(three);
    mn_bert_free(five);
    mn_bert_free(fresh);
    mn_bert_config_free(&b5);
    remove_tree(dir);
    mn_scope_end(sc);
}

/* A checkpoint laid out like the original bert-base-uncased: gamma/beta, position_ids,
 * pooler, NSP head, and the decoder stored alongside the embeddings. */
static void legacy_names_aliases_and_extra_tensors_load(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir(), path[512];
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(15);
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *m = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &rng);
    assert_true(mn_bert_config_write(&m->cfg, (snprintf(path, sizeof path, "%s/config.json", dir), path), &err));
    mn_st_entry e[64];
    char names[64][128];
    int n = 0, n_gamma = 0;
    for (int i = 0; i < m->params.count; i++) {
        const char *name = m->params.items[i].name;
        size_t len = strlen(name);
        snprintf(names[n], sizeof names[n], "%s", name);
        if (len > 16 && !strcmp(name + len - 16, "LayerNorm.weight"))
            strcpy(names[n] + len - 6, "gamma"), n_gamma++;
        else if (len > 14 && !strcmp(name + len - 14, "LayerNorm.bias"))
            strcpy(names[n] + len - 4, "beta"), n_gamma++;
        e[n] = (mn_st_entry){names[n], m->params.items[i].tensor};
        n++;
    }
    int32_t pos[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    e[n++] = (mn_st_entry){"bert.embeddings.position_ids", mn_from_ints(MN_SHAPE(1, 10), pos)};
    e[n++] = (mn_st_entry){"cls.seq_relationship.weight", tu_rand(16, MN_SHAPE(2, 8), -1, 1)};
    e[n++] = (mn_st_entry){"cls.seq_relationship.bias", tu_rand(17, MN_SHAPE(2), -1, 1)};
    e[n++] = (mn_st_entry){"bert.pooler.dense.weight", tu_rand(18, MN_SHAPE(8, 8), -1, 1)};
    e[n++] = (mn_st_entry){"bert.pooler.dense.bias", tu_rand(19, MN_SHAPE(8), -1, 1)};
    e[n++] = (mn_st_entry){"cls.predictions.decoder.weight", m->word_embeddings.weight};
    e[n++] = (mn_st_entry){"cls.predictions.decoder.bias", m->decoder.bias};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(mn_st_write(path, n, e, 0, NULL, &err));
    assert_int_equal(n_gamma, 8); /* 4 LayerNorms */

    mn_bert *loaded =
        mn_bert_from_pretrained(dir, MN_BERT_FOR_MASKED_LM, &(mn_pretrained_opts){.seed = 77}, &rep, &err);
    assert_non_null(loaded);
    assert_int_equal(rep.n_missing, 0);
    assert_int_equal(rep.n_unexpected, 5);
    const char *extra[] = {"bert.embeddings.position_ids", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
                           "bert.pooler.dense.weight", "bert.pooler.dense.bias"};
    for (int i = 0; i < 5; i++) assert_true(list_has(rep.unexpected, rep.n_unexpected, extra[i]));
    char *summary = mn_load_report_summary(&rep);
    assert_non_null(strstr(summary, "renamed 8 legacy LayerNorm.gamma/beta"));
    assert_non_null(strstr(summary, "were not used when initializing BertForMaskedLM"));
    free(summary);
    mn_load_report_free(&rep);
    mn_tensor *ids = random_ids(20, 2, 5, bc.vocab_size);
    assert_same_values(mn_bert_forward(loaded, ids, NULL, NULL, NULL), mn_bert_forward(m, ids, NULL, NULL, NULL));
    mn_bert_free(loaded);

    /* only the aliases hold the decoder bias: it loads through cls.predictions.decoder.bias */
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, "cls.predictions.bias")) e[i].name = "cls.predictions.decoder.bias";
    e[n - 1].name = "cls.seq_relationship.extra"; /* keep the file's names distinct */
    assert_true(mn_st_write(path, n, e, 0, NULL, &err));
    loaded = mn_bert_from_pretrained(dir, MN_BERT_FOR_MASKED_LM, NULL, &rep, &err);
    assert_non_null(loaded);
    assert_int_equal(rep.n_missing, 0);
    assert_same_values(loaded->decoder.bias, m->decoder.bias);
    summary = mn_load_report_summary(&rep);
    assert_non_null(strstr(summary, "loaded cls.predictions.bias from its alias cls.predictions.decoder.bias"));
    free(summary);
    mn_load_report_free(&rep);
    mn_bert_free(loaded);
    mn_bert_free(m);
    remove_tree(dir);
    mn_scope_end(sc);
}

static void missing_decoder_weight_is_tied_to_word_embeddings(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir();
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(21);
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *m = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &rng);
    assert_true(mn_bert_save(m, dir, &err)); /* no cls.predictions.decoder.* in the file */
    mn_bert *loaded = mn_bert_from_pretrained(dir, MN_BERT_FOR_MASKED_LM, &(mn_pretrained_opts){.seed = 1}, &rep, &err);
    assert_non_null(loaded);
    assert_int_equal(rep.n_missing + rep.n_unexpected, 0);
    bool noted = false;
    for (int i = 0; i < rep.n_notes; i++)
        noted |= strstr(rep.notes[i], "cls.predictions.decoder.weight is not in the checkpoint: tied to "
                                      "bert.embeddings.word_embeddings.weight") != NULL;
    assert_true(noted);
    mn_load_report_free(&rep);
    assert_ptr_equal(loaded->decoder.weight, loaded->word_embeddings.weight);
    assert_same_values(loaded->decoder.weight, m->word_embeddings.weight);
    /* the tie is live: a gradient step on the embeddings moves the decoder too */
    mn_tensor *ids = random_ids(22, 1, 4, bc.vocab_size);
    mn_tensor *logits = mn_bert_forward(loaded, ids, NULL, NULL, NULL);
    mn_backward(mn_sum(logits, MN_ALL, false));
    assert_non_null(loaded->word_embeddings.weight->grad);
    mn_bert_free(loaded);
    mn_bert_free(m);
    remove_tree(dir);
    mn_scope_end(sc);
}

static void sharded_checkpoint_loads(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir(), path[512];
    mn_err err;
    mn_rng rng = mn_rng_new(23);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_vit *m = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_true(mn_vit_config_write(&m->cfg, path, &err));
    const char *shard_names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    mn_st_entry e[2][64];
    int n[2] = {0, 0};
    char index[8192];
    int at = snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < m->params.count; i++) {
        int s = i * 2 / m->params.count;
        e[s][n[s]++] = (mn_st_entry){m->params.items[i].name, m->params.items[i].tensor};
        at += snprintf(index + at, sizeof index - at, "%s\"%s\": \"%s\"", i ? ", " : "", m->params.items[i].name,
                       shard_names[s]);
    }
    snprintf(index + at, sizeof index - at, "}}\n");
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, shard_names[s]);
        assert_true(mn_st_write(path, n[s], e[s], 0, NULL, &err));
    }
    write_text(dir, "model.safetensors.index.json", index);
    mn_load_report rep;
    mn_vit *loaded = mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, NULL, &rep, &err);
    if (!loaded) fail_msg("%s", err.msg);
    assert_int_equal(rep.n_missing + rep.n_unexpected, 0);
    mn_load_report_free(&rep);
    mn_tensor *pixels = random_pixels(24, 1, &vc);
    assert_same_values(mn_vit_forward(loaded, pixels, NULL), mn_vit_forward(m, pixels, NULL));
    mn_vit_free(loaded);
    mn_vit_free(m);
    remove_tree(dir);
    mn_scope_end(sc);
}

static void bad_checkpoints_give_errors_and_leave_the_model_untouched(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir(), path[512];
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(25);
    mn_bert_config bc;
    tiny_bert_config(&bc);

    assert_null(mn_bert_from_pretrained("/nonexistent/mnemo-model", MN_BERT_MODEL, NULL, &rep, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/mnemo-model"));
    mn_bert *m = mn_bert_new(&bc, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng);
    assert_false(mn_bert_load(m, dir, &rep, &err)); /* an empty directory */
    assert_non_null(strstr(err.msg, "no model.safetensors"));
    assert_int_equal(rep.n_missing, 0);
    write_text(dir, "pytorch_model.bin", "not really");
    assert_false(mn_bert_load(m, dir, NULL, &err));
    assert_non_null(strstr(err.msg, "pytorch_model.bin"));

    /* a backbone tensor of the wrong shape: the file, the tensor and both shapes are named */
    mn_tensor *before = mnt_clone(m->layers[0].fc1.weight);
    mn_st_entry e[64];
    int n = 0;
    for (int i = 0; i < m->params.count; i++) {
        mn_tensor *t = m->params.items[i].tensor;
        if (!strcmp(m->params.items[i].name, "bert.encoder.layer.0.output.LayerNorm.weight")) t = mn_ones(MN_SHAPE(9));
        if (!strcmp(m->params.items[i].name, "bert.encoder.layer.0.intermediate.dense.weight"))
            t = tu_rand(26, MN_SHAPE(16, 8), -1, 1); /* loads fine, but must not be applied */
        e[n++] = (mn_st_entry){m->params.items[i].name, t};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(mn_st_write(path, n, e, 0, NULL, &err));
    assert_false(mn_bert_load(m, dir, &rep, &err));
    const char *words[] = {path, "bert.encoder.layer.0.output.LayerNorm.weight", "expected shape [8]", "found [9]"};
    for (int w = 0; w < 4; w++)
        if (!strstr(err.msg, words[w])) fail_msg("error \"%s\" lacks %s", err.msg, words[w]);
    assert_same_values(m->layers[0].fc1.weight, before);

    /* an integer tensor where floats belong */
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, "bert.encoder.layer.0.output.LayerNorm.weight"))
            e[i].tensor = mn_from_ints(MN_SHAPE(8), (int32_t[]){1, 1, 1, 1, 1, 1, 1, 1});
    assert_true(mn_st_write(path, n, e, 0, NULL, &err));
    assert_false(mn_bert_load(m, path, NULL, &err));
    assert_non_null(strstr(err.msg, "dtype I32"));

    /* truncated and garbage files never crash */
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 100), 0);
    fclose(f);
    assert_false(mn_bert_load(m, dir, NULL, &err));
    assert_non_null(strstr(err.msg, path));
    static const char garbage[] = "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": [1, 2, 3]}";
    write_bytes(dir, "model.safetensors", garbage, sizeof garbage - 1);
    assert_false(mn_bert_load(m, dir, NULL, &err));
    assert_same_values(m->layers[0].fc1.weight, before);

    /* a sharded index that lies */
    remove(path);
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"x\": \"missing.safetensors\"}}");
    assert_false(mn_bert_load(m, dir, NULL, &err));
    assert_non_null(strstr(err.msg, "missing.safetensors"));
    mn_bert_free(m);
    remove_tree(dir);
    mn_scope_end(sc);
}

/* A NaN or infinity in a saved weight is refused, naming the tensor and the element, unless allowed;
 * then it loads and the report says so. */
static void non_finite_weights_are_refused_unless_allowed(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    char *dir = make_tmpdir();
    mn_err err;
    mn_load_report rep;
    mn_rng rng = mn_rng_new(31);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_labels_set(&vc.labels, 3, NULL);
    mn_vit *m = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    mn_vit_config_free(&vc);
    float *w = mn_data(m->layers[0].fc1.weight);
    w[5] = NAN, w[9] = INFINITY;
    assert_true(mn_vit_save(m, dir, &err));

    assert_null(mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, NULL, &rep, &err));
    const char *words[] = {"model.safetensors", "vit.encoder.layer.0.intermediate.dense.weight", "element 5",
                           "2 of", "--allow-nonfinite"};
    for (int i = 0; i < 5; i++)
        if (!strstr(err.msg, words[i])) fail_msg("error \"%s\" lacks %s", err.msg, words[i]);

    mn_pretrained_opts allow = {.allow_nonfinite = true};
    mn_vit *back = mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, &allow, &rep, &err);
    assert_non_null(back);
    assert_int_equal(rep.n_notes, 1);
    assert_non_null(strstr(rep.notes[0], "vit.encoder.layer.0.intermediate.dense.weight"));
    const float *b = mn_data(back->layers[0].fc1.weight);
    assert_true(isnan(b[5]) && isinf(b[9]) && b[0] == w[0]);
    char *summary = mn_load_report_summary(&rep);
    assert_non_null(strstr(summary, "not finite"));
    free(summary);
    mn_load_report_free(&rep);
    mn_vit_free(back);
    mn_vit_free(m);
    remove_tree(dir);
    mn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        MODEL_TEST(config_json_round_trips_every_field),
        MODEL_TEST(config_json_missing_fields_take_hugging_face_defaults),
        MODEL_TEST(bad_config_json_gives_errors_naming_file_and_key),
        MODEL_TEST(save_then_load_gives_identical_outputs),
        MODEL_TEST(backbone_checkpoint_into_head_model_reports_and_initialises_head),
        MODEL_TEST(different_num_labels_reinitialises_classifier),
        MODEL_TEST(legacy_names_aliases_and_extra_tensors_load),
        MODEL_TEST(missing_decoder_weight_is_tied_to_word_embeddings),
        MODEL_TEST(sharded_checkpoint_loads),
        MODEL_TEST(bad_checkpoints_give_errors_and_leave_the_model_untouched),
        MODEL_TEST(non_finite_weights_are_refused_unless_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
