/* Models: configurations, parameter counts against closed forms, Hugging Face
 * names and shapes against hand-written key lists, initialisation, forward
 * shapes, dropout, and gradients reaching every parameter. (Checkpoints and
 * config.json: test_checkpoints.c; agreement with PyTorch: test_golden.c.) */
#include "model_fixtures.h"

#include <math.h>

/* Closed-form parameter counts, written from the Hugging Face state_dict keys of ViT and BERT. */
static int64_t encoder_layer_count(int64_t H, int64_t I, bool qkv_bias) {
    return 4 * H * H + (qkv_bias ? 3 * H : 0) + H /* attention */ + I * H + I + H * I + H /* MLP */ + 4 * H /* 2 LN */;
}

static int64_t vit_count(const mn_vit_config *c, bool pooler, bool classifier) {
    int64_t H = c->hidden_size, side = c->image_size / c->patch_size, P = c->patch_size;
    int64_t n = H + (side * side + 1) * H + H * c->num_channels * P * P + H; /* cls, positions, patch conv */
    n += c->num_hidden_layers * encoder_layer_count(H, c->intermediate_size, c->qkv_bias) + 2 * H;
    if (pooler) n += H * H + H;
    if (classifier) n += c->labels.num_labels * (H + 1);
    return n;
}

static int64_t bert_count(const mn_bert_config *c, mn_bert_arch arch, bool pooler) {
    int64_t H = c->hidden_size;
    int64_t n = (c->vocab_size + c->max_position_embeddings + c->type_vocab_size) * H + 2 * H;
    n += c->num_hidden_layers * encoder_layer_count(H, c->intermediate_size, true);
    if (pooler || arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) n += H * H + H;
    if (arch == MN_BERT_FOR_MASKED_LM) n += c->vocab_size + H * H + H + 2 * H; /* decoder weight is tied */
    if (arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) n += c->labels.num_labels * (H + 1);
    return n;
}

/* ---- configurations and counts --------------------------------------------------------------------- */

static void standard_configs_have_closed_form_parameter_counts(void **state) {
    (void)state;
    mn_rng rng = mn_rng_new(1);
    const char *vits[] = {"vit-fm", "vit-ti16"};
    for (int i = 0; i < 2; i++) {
        mn_vit_config c;
        assert_true(mn_vit_config_named(vits[i], &c));
        mn_vit *m = mn_vit_new(&c, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
        assert_int_equal(mn_params_numel(&m->params), vit_count(&c, false, true));
        mn_vit_free(m);
    }
    mn_vit_config fm;
    mn_vit_config_named("vit-fm", &fm);
    assert_int_equal(fm.image_size / fm.patch_size, 7); /* 49 patches + CLS */
    assert_int_equal(fm.num_channels, 1);
    assert_int_equal(fm.labels.num_labels, 10);
    const char *berts[] = {"bert-tiny", "bert-mini"};
    const int64_t layers[] = {2, 4}, hidden[] = {128, 256};
    for (int i = 0; i < 2; i++) {
        mn_bert_config c;
        assert_true(mn_bert_config_named(berts[i], &c));
        assert_int_equal(c.num_hidden_layers, layers[i]);
        assert_int_equal(c.hidden_size, hidden[i]);
        assert_int_equal(c.intermediate_size, 4 * hidden[i]);
        assert_int_equal(c.vocab_size, 30522);
        mn_bert *m = mn_bert_new(&c, MN_BERT_FOR_MASKED_LM, false, &rng);
        assert_int_equal(mn_params_numel(&m->params), bert_count(&c, MN_BERT_FOR_MASKED_LM, false));
        mn_bert_free(m);
    }
    mn_mlp_config mc;
    assert_true(mn_mlp_config_named("mlp", &mc));
    mn_mlp_model *mlp = mn_mlp_model_new(&mc, &rng);
    assert_int_equal(mn_params_numel(&mlp->params), 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
    mn_mlp_model_free(mlp);
    mn_vit_config vc;
    mn_bert_config bc;
    assert_false(mn_vit_config_named("vit-huge", &vc));
    assert_false(mn_bert_config_named("bert-large", &bc));
}

static void vit_b16_and_bert_base_have_published_parameter_counts(void **state) {
    (void)state;
    mn_rng rng = mn_rng_new(2);
    mn_vit_config vc;
    assert_true(mn_vit_config_named("vit-b16", &vc));
    assert_int_equal(vit_count(&vc, false, false), 85798656);
    mn_vit *vit = mn_vit_new(&vc, MN_VIT_MODEL, false, &rng);
    assert_int_equal(mn_params_numel(&vit->params), 85798656);
    mn_vit_free(vit);
    mn_bert_config bc;
    assert_true(mn_bert_config_named("bert-base", &bc));
    assert_int_equal(bert_count(&bc, MN_BERT_MODEL, true), 109482240);
    mn_bert *bert = mn_bert_new(&bc, MN_BERT_MODEL, true, &rng);
    assert_int_equal(mn_params_numel(&bert->params), 109482240);
    mn_bert_free(bert);
}

/* ---- names --------------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
} key;

static int cmp_key(const void *a, const void *b) { return strcmp(((const key *)a)->name, ((const key *)b)->name); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The model's sorted names and shapes must equal the hand-written list exactly. */
static void assert_keys(const mn_params *p, key *expected, int n) {
    qsort(expected, (size_t)n, sizeof *expected, cmp_key);
    char **names = malloc(sizeof(char *) * (size_t)p->count);
    for (int i = 0; i < p->count; i++) names[i] = p->items[i].name;
    qsort(names, (size_t)p->count, sizeof *names, cmp_str);
    for (int i = 0; i < n || i < p->count; i++) {
        const char *want = i < n ? expected[i].name : "(end)", *got = i < p->count ? names[i] : "(end)";
        if (strcmp(want, got)) fail_msg("sorted name %d: model has %s, Hugging Face has %s", i, got, want);
        mn_tensor *t = param(p, got);
        bool same = t->ndim == expected[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == expected[i].shape[d];
        char s[96];
        if (!same) fail_msg("%s has shape %s", got, mn_shape_str(t, s));
    }
    free(names);
}

#define K1(N, A) {N, 1, {A}}
#define K2(N, A, B) {N, 2, {A, B}}

static void tiny_vit_names_match_hugging_face_keys(void **state) {
    (void)state;
    mn_vit_config c;
    tiny_vit_config(&c); /* H 8, I 16, 1 layer, C 3, P 4, 8x8 images: 4 patches + CLS, 3 labels */
    mn_rng rng = mn_rng_new(3);
    key cls[] = {
        {"vit.embeddings.cls_token", 3, {1, 1, 8}},
        {"vit.embeddings.position_embeddings", 3, {1, 5, 8}},
        {"vit.embeddings.patch_embeddings.projection.weight", 4, {8, 3, 4, 4}},
        K1("vit.embeddings.patch_embeddings.projection.bias", 8),
        K2("vit.encoder.layer.0.attention.attention.query.weight", 8, 8),
        K1("vit.encoder.layer.0.attention.attention.query.bias", 8),
        K2("vit.encoder.layer.0.attention.attention.key.weight", 8, 8),
        K1("vit.encoder.layer.0.attention.attention.key.bias", 8),
        K2("vit.encoder.layer.0.attention.attention.value.weight", 8, 8),
        K1("vit.encoder.layer.0.attention.attention.value.bias", 8),
        K2("vit.encoder.layer.0.attention.output.dense.weight", 8, 8),
        K1("vit.encoder.layer.0.attention.output.dense.bias", 8),
        K2("vit.encoder.layer.0.intermediate.dense.weight", 16, 8),
        K1("vit.encoder.layer.0.intermediate.dense.bias", 16),
        K2("vit.encoder.layer.0.output.dense.weight", 8, 16),
        K1("vit.encoder.layer.0.output.dense.bias", 8),
        K1("vit.encoder.layer.0.layernorm_before.weight", 8),
        K1("vit.encoder.layer.0.layernorm_before.bias", 8),
        K1("vit.encoder.layer.0.layernorm_after.weight", 8),
        K1("vit.encoder.layer.0.layernorm_after.bias", 8),
        K1("vit.layernorm.weight", 8),
        K1("vit.layernorm.bias", 8),
        K2("classifier.weight", 3, 8),
        K1("classifier.bias", 3),
    };
    mn_vit *m = mn_vit_new(&c, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    assert_keys(&m->params, cls, sizeof cls / sizeof cls[0]);
    mn_vit_free(m);

    /* ViTModel with pooler and qkv_bias false: no prefix, no q/k/v biases */
    c.qkv_bias = false;
    key bare[] = {
        {"embeddings.cls_token", 3, {1, 1, 8}},
        {"embeddings.position_embeddings", 3, {1, 5, 8}},
        {"embeddings.patch_embeddings.projection.weight", 4, {8, 3, 4, 4}},
        K1("embeddings.patch_embeddings.projection.bias", 8),
        K2("encoder.layer.0.attention.attention.query.weight", 8, 8),
        K2("encoder.layer.0.attention.attention.key.weight", 8, 8),
        K2("encoder.layer.0.attention.attention.value.weight", 8, 8),
        K2("encoder.layer.0.attention.output.dense.weight", 8, 8),
        K1("encoder.layer.0.attention.output.dense.bias", 8),
        K2("encoder.layer.0.intermediate.dense.weight", 16, 8),
        K1("encoder.layer.0.intermediate.dense.bias", 16),
        K2("encoder.layer.0.output.dense.weight", 8, 16),
        K1("encoder.layer.0.output.dense.bias", 8),
        K1("encoder.layer.0.layernorm_before.weight", 8),
        K1("encoder.layer.0.layernorm_before.bias", 8),
        K1("encoder.layer.0.layernorm_after.weight", 8),
        K1("encoder.layer.0.layernorm_after.bias", 8),
        K1("layernorm.weight", 8),
        K1("layernorm.bias", 8),
        K2("pooler.dense.weight", 8, 8),
        K1("pooler.dense.bias", 8),
    };
    m = mn_vit_new(&c, MN_VIT_MODEL, true, &rng);
    assert_keys(&m->params, bare, sizeof bare / sizeof bare[0]);
    assert_int_equal(mn_params_numel(&m->params), vit_count(&c, true, false));
    mn_vit_free(m);
}

#define BERT_BACKBONE(P)                                                                                             \
    K2(P "embeddings.word_embeddings.weight", 20, 8), K2(P "embeddings.position_embeddings.weight", 10, 8),           \
        K2(P "embeddings.token_type_embeddings.weight", 2, 8), K1(P "embeddings.LayerNorm.weight", 8),                \
        K1(P "embeddings.LayerNorm.bias", 8), K2(P "encoder.layer.0.attention.self.query.weight", 8, 8),              \
        K1(P "encoder.layer.0.attention.self.query.bias", 8), K2(P "encoder.layer.0.attention.self.key.weight", 8, 8), \
        K1(P "encoder.layer.0.attention.self.key.bias", 8),                                                           \
        K2(P "encoder.layer.0.attention.self.value.weight", 8, 8),                                                    \
        K1(P "encoder.layer.0.attention.self.value.bias", 8),                                                         \
        K2(P "encoder.layer.0.attention.output.dense.weight", 8, 8),                                                  \
        K1(P "encoder.layer.0.attention.output.dense.bias", 8),                                                       \
        K1(P "encoder.layer.0.attention.output.LayerNorm.weight", 8),                                                 \
        K1(P "encoder.layer.0.attention.output.LayerNorm.bias", 8),                                                   \
        K2(P "encoder.layer.0.intermediate.dense.weight", 16, 8), K1(P "encoder.layer.0.intermediate.dense.bias", 16), \
        K2(P "encoder.layer.0.output.dense.weight", 8, 16), K1(P "encoder.layer.0.output.dense.bias", 8),             \
        K1(P "encoder.layer.0.output.LayerNorm.weight", 8), K1(P "encoder.layer.0.output.LayerNorm.bias", 8)

static void tiny_bert_names_match_hugging_face_keys(void **state) {
    (void)state;
    mn_bert_config c;
    tiny_bert_config(&c); /* V 20, H 8, I 16, 1 layer, 10 positions, 2 types, 3 labels */
    mn_rng rng = mn_rng_new(4);
    key mlm[] = {
        BERT_BACKBONE("bert."),
        K1("cls.predictions.bias", 20),
        K2("cls.predictions.transform.dense.weight", 8, 8),
        K1("cls.predictions.transform.dense.bias", 8),
        K1("cls.predictions.transform.LayerNorm.weight", 8),
        K1("cls.predictions.transform.LayerNorm.bias", 8),
    };
    mn_bert *m = mn_bert_new(&c, MN_BERT_FOR_MASKED_LM, false, &rng);
    assert_keys(&m->params, mlm, sizeof mlm / sizeof mlm[0]);
    assert_ptr_equal(m->decoder.weight, m->word_embeddings.weight); /* tied, listed once */
    mn_bert_free(m);

    key seq[] = {
        BERT_BACKBONE("bert."),
        K2("bert.pooler.dense.weight", 8, 8),
        K1("bert.pooler.dense.bias", 8),
        K2("classifier.weight", 3, 8),
        K1("classifier.bias", 3),
    };
    m = mn_bert_new(&c, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng);
    assert_keys(&m->params, seq, sizeof seq / sizeof seq[0]);
    mn_bert_free(m);

    key bare[] = {BERT_BACKBONE(""), K2("pooler.dense.weight", 8, 8), K1("pooler.dense.bias", 8)};
    m = mn_bert_new(&c, MN_BERT_MODEL, true, &rng);
    assert_keys(&m->params, bare, sizeof bare / sizeof bare[0]);
    assert_int_equal(mn_params_numel(&m->params), bert_count(&c, MN_BERT_MODEL, true));
    mn_bert_free(m);
}

static void initialisation_follows_hugging_face(void **state) {
    (void)state;
    mn_bert_config c;
    mn_bert_config_named("bert-tiny", &c);
    mn_rng rng = mn_rng_new(5);
    mn_bert *m = mn_bert_new(&c, MN_BERT_FOR_MASKED_LM, false, &rng);
    mn_tensor *w = m->word_embeddings.weight;
    int64_t n = mn_numel(w), H = c.hidden_size;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) sum += mn_data(w)[i], sq += (double)mn_data(w)[i] * mn_data(w)[i];
    double sd = sqrt(sq / n - (sum / n) * (sum / n));
    assert_true(fabs(sd - 0.02) < 0.001);      /* N(0, initializer_range) over 3.9M draws */
    assert_true(fabs(sum / n) < 1e-4);
    for (int64_t j = 0; j < H; j++) assert_true(mn_data(w)[c.pad_token_id * H + j] == 0.0f); /* padding row */
    assert_true(mn_data(m->decoder.bias)[0] == 0.0f && mn_data(m->layers[0].fc1.bias)[5] == 0.0f);
    assert_true(mn_data(m->layers[1].ln2.weight)[3] == 1.0f && mn_data(m->layers[1].ln2.bias)[3] == 0.0f);
    assert_true(m->layers[0].ln1.eps == 1e-12f && m->layers[0].dropout == 0.1f);
    mn_bert_free(m);
}
/* ---- forward and gradients ------------------------------------------------------------------------------------ */

static void forward_output_shapes(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(27);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_tensor *pixels = random_pixels(28, 3, &vc);
    mn_vit *vm = mn_vit_new(&vc, MN_VIT_MODEL, true, &rng), *vcls = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION,
                                                                                false, &rng);
    mn_tensor *h = mn_vit_forward(vm, pixels, NULL);
    char s[96];
    assert_string_equal(mn_shape_str(h, s), "[3, 5, 8]");
    assert_string_equal(mn_shape_str(mn_vit_pool(vm, h), s), "[3, 8]");
    assert_string_equal(mn_shape_str(mn_vit_forward(vcls, pixels, NULL), s), "[3, 3]");
    /* the classifier reads token 0 after the final LayerNorm of the encoder's output */
    mn_tensor *hc = mn_vit_encode(vcls, pixels, NULL);
    mn_tensor *ref = mn_linear_forward(&vcls->classifier, mn_squeeze(mn_slice(hc, 1, 0, 1, 1), 1));
    tu_assert_close(mn_vit_forward(vcls, pixels, NULL), ref, 1e-6, 1e-5);

    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_tensor *ids = random_ids(29, 2, 7, bc.vocab_size), *mask = padding_mask(2, 7);
    mn_tensor *types = mn_from_ints(MN_SHAPE(2, 7), (int32_t[]){0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0});
    mn_bert *b[3];
    const char *want[3] = {"[2, 7, 8]", "[2, 7, 20]", "[2, 3]"};
    for (int a = 0; a < 3; a++) {
        b[a] = mn_bert_new(&bc, (mn_bert_arch)a, true, &rng);
        assert_string_equal(mn_shape_str(mn_bert_forward(b[a], ids, types, mask, NULL), s), want[a]);
    }
    assert_string_equal(mn_shape_str(mn_bert_pool(b[0], mn_bert_encode(b[0], ids, NULL, NULL, NULL)), s), "[2, 8]");
    assert_string_equal(mn_shape_str(mn_bert_mlm_head(b[1], tu_rand(30, MN_SHAPE(4, 8), -1, 1)), s), "[4, 20]");
    /* token types matter; the default is type 0 everywhere */
    mn_tensor *zeros = mn_from_ints(MN_SHAPE(2, 7), (int32_t[14]){0});
    assert_same_values(mn_bert_encode(b[0], ids, NULL, mask, NULL), mn_bert_encode(b[0], ids, zeros, mask, NULL));
    assert_differ(mn_bert_encode(b[0], ids, types, mask, NULL), mn_bert_encode(b[0], ids, zeros, mask, NULL));
    /* padding: changing a padded token leaves the other tokens' outputs unchanged */
    int32_t v[14];
    for (int i = 0; i < 14; i++) v[i] = mn_idata(ids)[i];
    v[13] = (v[13] + 1) % (int32_t)bc.vocab_size;
    mn_tensor *ids2 = mn_from_ints(MN_SHAPE(2, 7), v);
    mn_tensor *o1 = mn_slice(mn_bert_encode(b[0], ids, NULL, mask, NULL), 1, 0, 5, 1);
    mn_tensor *o2 = mn_slice(mn_bert_encode(b[0], ids2, NULL, mask, NULL), 1, 0, 5, 1);
    tu_assert_close(o1, o2, 1e-5, 1e-5);
    for (int a = 0; a < 3; a++) mn_bert_free(b[a]);
    mn_vit_free(vm);
    mn_vit_free(vcls);
    mn_scope_end(sc);
}

/* The lean masked-LM loss (decoder GEMM on labelled rows only) equals the loss on all logits. */
static void mlm_loss_on_labelled_rows_equals_loss_on_all_logits(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(40);
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *m = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &rng);
    mn_tensor *ids = random_ids(41, 2, 5, bc.vocab_size), *mask = padding_mask(2, 5);
    mn_tensor *labels = mn_from_ints(MN_SHAPE(2, 5), (int32_t[]){-100, 7, -100, -100, 3, 19, -100, 0, -100, -100});
    mn_tensor *full = mn_cross_entropy(mn_bert_forward(m, ids, NULL, mask, NULL), labels, -100, 0);
    mn_params_zero_grad(&m->params);
    mn_backward(full);
    mn_tensor *grads[64];
    for (int i = 0; i < m->params.count; i++) grads[i] = mn_autorelease(mn_retain(m->params.items[i].tensor->grad));
    mn_params_zero_grad(&m->params);
    mn_tensor *lean = mn_bert_mlm_loss(m, mn_bert_encode(m, ids, NULL, mask, NULL), labels);
    tu_assert_close(lean, full, 1e-6, 1e-5);
    mn_backward(lean);
    for (int i = 0; i < m->params.count; i++) tu_assert_close(m->params.items[i].tensor->grad, grads[i], 1e-6, 1e-4);
    /* nothing labelled: zero, and backward still runs */
    mn_tensor *ignored = mn_from_ints(MN_SHAPE(2, 5), (int32_t[10]){-100, -100, -100, -100, -100, -100, -100, -100,
                                                                    -100, -100});
    mn_tensor *zero = mn_bert_mlm_loss(m, mn_bert_encode(m, ids, NULL, mask, NULL), ignored);
    assert_true(mn_item(zero) == 0.0f);
    mn_backward(zero);
    mn_bert_free(m);
    mn_scope_end(sc);
}

static void dropout_rng_trains_and_null_evaluates(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(31);
    mn_bert_config bc;
    tiny_bert_config(&bc); /* hidden and attention dropout 0.1 */
    mn_bert *m = mn_bert_new(&bc, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng);
    mn_tensor *ids = random_ids(32, 2, 6, bc.vocab_size);
    mn_tensor *eval1 = mn_bert_forward(m, ids, NULL, NULL, NULL), *eval2 = mn_bert_forward(m, ids, NULL, NULL, NULL);
    assert_same_values(eval1, eval2);
    mn_rng d1 = mn_rng_new(5), d2 = mn_rng_new(5);
    mn_tensor *train1 = mn_bert_forward(m, ids, NULL, NULL, &d1), *train2 = mn_bert_forward(m, ids, NULL, NULL, &d2);
    assert_same_values(train1, train2); /* same seed, same masks */
    assert_differ(train1, eval1);
    mn_bert_free(m);
    mn_scope_end(sc);
}

/* Every parameter gets a gradient, nonzero except the key biases (softmax ignores a shift of all
 * of a query's scores, so d loss / d key.bias is 0 in exact arithmetic). */
static void assert_gradients_reach(const mn_params *p, mn_tensor *loss) {
    mn_params_zero_grad(p);
    mn_backward(loss);
    for (int i = 0; i < p->count; i++) {
        mn_tensor *g = p->items[i].tensor->grad;
        if (!g) fail_msg("no gradient reached %s", p->items[i].name);
        size_t len = strlen(p->items[i].name);
        if (len > 9 && !strcmp(p->items[i].name + len - 9, ".key.bias")) continue;
        mn_tensor *gmax = mnt_max(mnt_unary(MN_OP_ABS, g), 0, NULL, false);
        if (!(mn_item(gmax) > 0)) fail_msg("the gradient of %s is zero", p->items[i].name);
    }
}

static void gradient_of_the_loss_reaches_every_parameter(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(33);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_tensor *pixels = random_pixels(34, 2, &vc), *labels = mn_from_ints(MN_SHAPE(2), (int32_t[]){2, 0});
    mn_vit *vcls = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
    assert_gradients_reach(&vcls->params, mn_cross_entropy(mn_vit_forward(vcls, pixels, NULL), labels, -100, 0));
    mn_vit *vm = mn_vit_new(&vc, MN_VIT_MODEL, true, &rng);
    mn_tensor *h = mn_vit_forward(vm, pixels, NULL);
    mn_tensor *r = tu_rand(35, MN_SHAPE(2, 5, 8), -1, 1), *r2 = tu_rand(36, MN_SHAPE(2, 8), -1, 1);
    assert_gradients_reach(&vm->params, mn_add(mn_sum(mn_mul(h, r), MN_ALL, false),
                                               mn_sum(mn_mul(mn_vit_pool(vm, h), r2), MN_ALL, false)));

    mn_bert_config bc;
    tiny_bert_config(&bc);
    bc.vocab_size = 6; /* every row of the word embeddings is used below */
    mn_tensor *ids = random_ids(37, 2, 8, bc.vocab_size), *mask = padding_mask(2, 8);
    mn_tensor *types = mn_from_ints(MN_SHAPE(2, 8), (int32_t[]){0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0});
    mn_bert *mlm = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &rng);
    mn_tensor *mlm_labels = mn_from_ints(MN_SHAPE(2, 8), (int32_t[]){1, -100, 3, -100, 0, 5, -100, 2,
                                                                     4, -100, -100, 1, 0, 2, -100, -100});
    assert_gradients_reach(&mlm->params, mn_cross_entropy(mn_bert_forward(mlm, ids, types, mask, NULL), mlm_labels,
                                                          -100, 0));
    mn_bert *seq = mn_bert_new(&bc, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, false, &rng);
    assert_gradients_reach(&seq->params, mn_cross_entropy(mn_bert_forward(seq, ids, types, mask, NULL), labels, -100,
                                                          0));
    mn_mlp_config mc = {.n_layers = 3, .sizes = {4, 6, 6, 2}, .hidden_act = MN_ACT_RELU};
    mn_mlp_model *mlp = mn_mlp_model_new(&mc, &rng);
    assert_gradients_reach(&mlp->params,
                           mn_cross_entropy(mn_mlp_model_forward(mlp, tu_rand(38, MN_SHAPE(8, 4), -1, 1)),
                                            mn_from_ints(MN_SHAPE(8), (int32_t[]){0, 1, 1, 0, 1, 0, 0, 1}), -100, 0));
    mn_vit_free(vcls);
    mn_vit_free(vm);
    mn_bert_free(mlm);
    mn_bert_free(seq);
    mn_mlp_model_free(mlp);
    mn_scope_end(sc);
}

/* ---- models run on substituted parameters ------------------------------------------------------------- */

typedef mn_tensor *(*model_loss_fn)(void *model, mn_rng *data);

static mn_tensor *mlp_loss_of(void *model, mn_rng *data) {
    mn_mlp_model *m = model;
    mn_tensor *x = mn_randn_gen(data, MN_SHAPE(5, m->cfg.sizes[0]), 0, 1);
    mn_tensor *y = mn_from_ints(MN_SHAPE(5), (int32_t[]){0, 1, 2, 1, 0});
    return mn_cross_entropy(mn_mlp_model_forward(m, x), y, -100, 0);
}

static mn_tensor *vit_loss_of(void *model, mn_rng *data) {
    mn_vit *m = model;
    mn_tensor *y = mn_from_ints(MN_SHAPE(2), (int32_t[]){2, 0});
    return mn_cross_entropy(mn_vit_forward(m, random_pixels(mn_rng_u32(data), 2, &m->cfg), NULL), y, -100, 0);
}

static mn_tensor *bert_loss_of(void *model, mn_rng *data) {
    mn_bert *m = model;
    mn_tensor *ids = random_ids(mn_rng_u32(data), 2, 6, m->cfg.vocab_size);
    mn_tensor *labels = mn_from_ints(MN_SHAPE(2, 6), (int32_t[]){-100, 3, -100, 7, -100, -100, 1, -100, -100, -100, 9, 4});
    return mn_bert_mlm_loss(m, mn_bert_encode(m, ids, NULL, NULL, NULL), labels);
}

/* The loss and its gradients with the model's own parameters, then with substituted copies: the same
 * values bitwise. Then substitutes 2x the parameters through a graph node and checks the loss equals a
 * model whose parameters were scaled in place, with the gradient reaching the node's input (2x). */
static void check_substitution(const char *what, void *model, const mn_params *p, model_loss_fn loss_of) {
    int n = p->count;
    mn_scope sc = mn_scope_begin();
    mn_tensor **own = calloc((size_t)n, sizeof *own), **g_own = calloc((size_t)n, sizeof *g_own);
    mn_tensor **copy = calloc((size_t)n, sizeof *copy), **g_copy = calloc((size_t)n, sizeof *g_copy);
    mn_tensor **twice = calloc((size_t)n, sizeof *twice), **g_base = calloc((size_t)n, sizeof *g_base);
    for (int i = 0; i < n; i++) {
        own[i] = p->items[i].tensor;
        copy[i] = mn_requires_grad(mnt_clone(own[i]), true);
    }
    mn_rng data = mn_rng_new(5);
    mn_tensor *l_own = loss_of(model, &data);
    mn_grad(1, &l_own, NULL, n, own, g_own, 0);
    mn_params_substitute(p, copy);
    data = mn_rng_new(5);
    mn_tensor *l_copy = loss_of(model, &data);
    mn_params_restore(p);
    mn_grad(1, &l_copy, NULL, n, copy, g_copy, 0);
    assert_true(mn_item(l_own) == mn_item(l_copy));
    for (int i = 0; i < n; i++) assert_same_values(g_own[i], g_copy[i]);
    /* through graph nodes */
    for (int i = 0; i < n; i++) twice[i] = mn_scale(copy[i], 2.0f);
    mn_params_substitute(p, twice);
    data = mn_rng_new(5);
    mn_tensor *l_twice = loss_of(model, &data);
    mn_params_restore(p);
    mn_grad(1, &l_twice, NULL, n, copy, g_base, 0);
    bool prev = mn_no_grad_begin();
    for (int i = 0; i < n; i++) mnt_scale_(own[i], 2.0f);
    data = mn_rng_new(5);
    mn_tensor *l_scaled = loss_of(model, &data);
    mn_no_grad_end(prev);
    print_message("%s: %d parameters, loss %.6f; substituted 2x: %.6f, scaled in place: %.6f\n", what, n,
                  mn_item(l_own), mn_item(l_twice), mn_item(l_scaled));
    tu_assert_close(l_twice, l_scaled, 1e-6, 1e-6);
    assert_true(fabs(mn_item(l_twice) - mn_item(l_own)) > 1e-4);
    prev = mn_no_grad_begin();
    for (int i = 0; i < n; i++) mnt_scale_(own[i], 0.5f);
    mn_no_grad_end(prev);
    /* d loss(2 theta) / d theta = 2 * loss'(2 theta): compare with the gradient of the scaled model */
    mn_tensor **g_scaled = calloc((size_t)n, sizeof *g_scaled);
    for (int i = 0; i < n; i++) mnt_scale_(own[i], 2.0f);
    data = mn_rng_new(5);
    l_scaled = loss_of(model, &data);
    mn_grad(1, &l_scaled, NULL, n, own, g_scaled, 0);
    for (int i = 0; i < n; i++) {
        mnt_scale_(own[i], 0.5f);
        tu_assert_close(g_base[i], mn_scale(g_scaled[i], 2.0f), 1e-5, 1e-4);
    }
    /* restored: the model computes with its own parameters again */
    data = mn_rng_new(5);
    assert_true(mn_item(loss_of(model, &data)) == mn_item(l_own));
    free(own), free(g_own), free(copy), free(g_copy), free(twice), free(g_base), free(g_scaled);
    mn_scope_end(sc);
}

static void models_run_on_substituted_parameters(void **state) {
    (void)state;
    mn_rng g = mn_rng_new(1);
    mn_mlp_config mc = {.n_layers = 2, .sizes = {7, 5, 3}, .hidden_act = MN_ACT_TANH};
    mn_mlp_model *mlp = mn_mlp_model_new(&mc, &g);
    check_substitution("mlp", mlp, &mlp->params, mlp_loss_of);
    mn_mlp_model_free(mlp);
    mn_vit_config vc;
    tiny_vit_config(&vc);
    mn_vit *vit = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &g);
    check_substitution("vit", vit, &vit->params, vit_loss_of);
    mn_vit_free(vit);
    mn_vit_config_free(&vc);
    mn_bert_config bc;
    tiny_bert_config(&bc);
    mn_bert *bert = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &g);
    check_substitution("bert mlm (tied decoder)", bert, &bert->params, bert_loss_of);
    mn_bert_free(bert);
    mn_bert_config_free(&bc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        MODEL_TEST(standard_configs_have_closed_form_parameter_counts),
        MODEL_TEST(vit_b16_and_bert_base_have_published_parameter_counts),
        MODEL_TEST(tiny_vit_names_match_hugging_face_keys),
        MODEL_TEST(tiny_bert_names_match_hugging_face_keys),
        MODEL_TEST(initialisation_follows_hugging_face),
        MODEL_TEST(forward_output_shapes),
        MODEL_TEST(mlm_loss_on_labelled_rows_equals_loss_on_all_logits),
        MODEL_TEST(dropout_rng_trains_and_null_evaluates),
        MODEL_TEST(gradient_of_the_loss_reaches_every_parameter),
        MODEL_TEST(models_run_on_substituted_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
