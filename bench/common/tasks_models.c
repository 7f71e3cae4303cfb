/* Evaluation tasks over the models of models/: a ViT classifying Fashion-MNIST and a BERT trained by
 * masked language modelling on the fortunes (bench/common/tasks.h). They train through the ordinary
 * mn_optimizer interface; no meta-gradient goes through them. */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- ViT on Fashion-MNIST ------------------------------------------------------------------------------- */

typedef struct {
    bench_task base;
    mn_vit *model;
    int64_t batch;
    mn_tensor *x_train, *y_train, *x_test, *y_test; /* [N, 1, 28, 28], [N] (references) */
    mn_rng data_rng;
} vit_task;

static mn_tensor *vit_train_loss(bench_task *t) {
    vit_task *v = (vit_task *)t;
    mn_tensor *idx = task_sample_rows(&v->data_rng, v->batch, mn_size(v->x_train, 0));
    mn_tensor *x = mn_gather_rows(v->x_train, idx), *y = mn_gather_rows(v->y_train, idx);
    return mn_cross_entropy(mn_vit_forward(v->model, x, NULL), y, -100, 0.0f);
}

static mn_tensor *vit_test_logits(void *ctx, mn_tensor *rows) { return mn_vit_forward(ctx, rows, NULL); }

static void vit_evaluate(bench_task *t, double *loss, double *metric) {
    vit_task *v = (vit_task *)t;
    task_classify_test(v->x_test, v->y_test, 250, vit_test_logits, v->model, loss, metric);
}

static void vit_free(bench_task *t) {
    vit_task *v = (vit_task *)t;
    mn_params_free(&v->base.params);
    mn_vit_free(v->model);
    mn_release(v->x_train), mn_release(v->y_train), mn_release(v->x_test), mn_release(v->y_test);
    free(v);
}

/* "vit:fm:dim64:depth2:heads2[:mlpN][:patchN][:bN]" */
bench_task *vit_task_new(const char *spec, char (*f)[64], int n, uint64_t seed, task_data *d, mn_err *err) {
    if (n < 5 || strcmp(f[1], "fm"))
        return mn_err_set(err, "task \"%s\": expected vit:fm:dimN:depthN:headsN[:mlpN][:patchN][:bN]", spec), NULL;
    long dim, depth, heads, mlp = 0, patch = 4, batch = 64;
    if (!task_spec_int(f[2], "dim", 1, 4096, &dim) || !task_spec_int(f[3], "depth", 1, 64, &depth) ||
        !task_spec_int(f[4], "heads", 1, 64, &heads))
        return mn_err_set(err, "task \"%s\": expected dimN:depthN:headsN after vit:fm", spec), NULL;
    for (int i = 5; i < n; i++)
        if (!task_spec_int(f[i], "mlp", 1, 65536, &mlp) && !task_spec_int(f[i], "patch", 1, 28, &patch) &&
            !task_spec_int(f[i], "b", 1, 60000, &batch))
            return mn_err_set(err, "task \"%s\": unknown field \"%s\" (mlpN, patchN, bN)", spec, f[i]), NULL;
    mn_vit_config cfg;
    mn_vit_config_named("vit-fm", &cfg);
    cfg.hidden_size = dim, cfg.num_hidden_layers = depth, cfg.num_attention_heads = heads;
    cfg.intermediate_size = mlp ? mlp : 4 * dim;
    cfg.patch_size = patch;
    mn_err why;
    if (!mn_vit_config_check(&cfg, &why)) {
        mn_vit_config_free(&cfg);
        return mn_err_set(err, "task \"%s\": %s", spec, why.msg), NULL;
    }
    mn_tensor *xtr, *ytr, *xte, *yte;
    if (!task_data_images(d, 28, true, &xtr, &ytr, err) || !task_data_images(d, 28, false, &xte, &yte, err)) {
        mn_vit_config_free(&cfg);
        return NULL;
    }
    vit_task *v = calloc(1, sizeof *v);
    if (!v) mn_fatal("vit_task_new: out of memory");
    snprintf(v->base.spec, sizeof v->base.spec, "%s", spec);
    mn_rng init = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + 0x717);
    v->model = mn_vit_new(&cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &init);
    mn_vit_config_free(&cfg);
    for (int i = 0; i < v->model->params.count; i++) {
        const mn_param *p = &v->model->params.items[i];
        mn_params_add(&v->base.params, NULL, p->name, p->tensor, p->no_decay);
    }
    v->batch = batch;
    int64_t N = mn_size(xte, 0), limit = task_data_test_limit(d);
    if (limit > 0 && limit < N) N = limit;
    mn_scope sc = mn_scope_begin();
    v->x_train = mn_retain(xtr), v->y_train = mn_retain(ytr);
    v->x_test = mn_retain(mnt_slice(xte, 0, 0, N, 1));
    v->y_test = mn_retain(mnt_contiguous(mnt_slice(yte, 0, 0, N, 1)));
    mn_scope_end(sc);
    v->data_rng = mn_rng_new(seed * 0xd1342543de82ef95ull + 0xda7a);
    v->base.metric_name = "accuracy";
    v->base.train_loss = vit_train_loss;
    v->base.evaluate = vit_evaluate;
    v->base.free = vit_free;
    return &v->base;
}

/* ---- BERT masked-LM on the fortunes -------------------------------------------------------------------- */

/* The fortunes (without the ascii-art pictures), split 90/10 with a fixed seed, tokenised by a
 * vocabulary built from the training part (cached as WORK/fortunes_vocab_V.txt). */
typedef struct {
    mn_wordpiece *wp;
    mn_encoding train, test; /* ids and attention masks [N, len] (references) */
} bert_corpus;

enum { BERT_TEST_TEXTS = 512 }; /* held-out texts evaluated at most (a fixed subset) */

static void corpus_free(void *p) {
    bert_corpus *c = p;
    mn_wordpiece_free(c->wp);
    mn_release(c->train.input_ids), mn_release(c->train.token_type_ids), mn_release(c->train.attention_mask);
    mn_release(c->test.input_ids), mn_release(c->test.token_type_ids), mn_release(c->test.attention_mask);
    free(c);
}

static mn_encoding retain_encoding(mn_encoding e) {
    mn_retain(e.input_ids), mn_retain(e.token_type_ids), mn_retain(e.attention_mask);
    return e;
}

/* key: "bert-corpus:V:LEN" */
static void *corpus_make(task_data *d, const char *key, mn_err *err) {
    long vocab, len;
    if (sscanf(key, "bert-corpus:%ld:%ld", &vocab, &len) != 2) mn_fatal("corpus_make: key %s", key);
    mn_text_dataset all, kept, train, test;
    if (!mn_fortunes_load(task_data_fortunes_dir(d), 0, NULL, &all, err)) return NULL;
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(all.n ? all.n : 1));
    int64_t m = 0;
    for (int64_t i = 0; i < all.n; i++)
        if (strcmp(all.class_names[all.labels[i]], "ascii-art")) rows[m++] = (int32_t)i;
    mn_scope sc = mn_scope_begin();
    mn_text_dataset_subset(&all, mn_from_ints(MN_SHAPE(m), rows), &kept);
    free(rows);
    mn_text_dataset_free(&all);
    mn_rng split = mn_rng_new(20240229);
    mn_text_dataset_split(&kept, 0.1, false, &split, &train, &test);
    mn_text_dataset_free(&kept);
    char path[4200];
    snprintf(path, sizeof path, "%s/fortunes_vocab_%ld.txt", task_data_work_dir(d), vocab);
    struct stat st;
    bool ok = true;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "building a WordPiece vocabulary of %ld entries from %lld fortunes into %s\n", vocab,
                (long long)train.n, path);
        mkdir(task_data_work_dir(d), 0777);
        mn_vocab_build_opts vo = {.vocab_size = (int32_t)vocab};
        ok = mn_wordpiece_build_vocab(train.n, (const char *const *)train.texts, NULL, &vo, path, err);
    }
    bert_corpus *c = NULL;
    mn_wordpiece *wp = ok ? mn_wordpiece_load(path, NULL, err) : NULL;
    if (wp) {
        c = calloc(1, sizeof *c);
        if (!c) mn_fatal("corpus_make: out of memory");
        c->wp = wp;
        int64_t n_test = test.n < BERT_TEST_TEXTS ? test.n : BERT_TEST_TEXTS;
        c->train = retain_encoding(mn_wordpiece_encode_batch(wp, train.n, (const char *const *)train.texts, NULL, len));
        c->test = retain_encoding(mn_wordpiece_encode_batch(wp, n_test, (const char *const *)test.texts, NULL, len));
    }
    mn_scope_end(sc);
    mn_text_dataset_free(&train);
    mn_text_dataset_free(&test);
    return c;
}

typedef struct {
    bench_task base;
    mn_bert *model;
    const bert_corpus *corpus;
    int64_t batch;
    mn_rng data_rng; /* batches and their masking */
} bert_task;

/* rows of an encoding, cut to the longest row's length (no all-padding columns) */
static void batch_rows(const mn_encoding *e, mn_tensor *idx, mn_tensor **ids, mn_tensor **mask) {
    mn_tensor *m = mn_gather_rows(e->attention_mask, idx);
    int64_t B = mn_size(m, 0), T = mn_size(m, 1), L = 1;
    const int32_t *md = mn_idata(m);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = L; t < T; t++)
            if (md[b * T + t]) L = t + 1;
    *ids = mnt_contiguous(mnt_slice(mn_gather_rows(e->input_ids, idx), 1, 0, L, 1));
    *mask = mnt_contiguous(mnt_slice(m, 1, 0, L, 1));
}

static mn_tensor *bert_train_loss(bench_task *t) {
    bert_task *b = (bert_task *)t;
    mn_tensor *ids, *mask, *labels;
    batch_rows(&b->corpus->train, task_sample_rows(&b->data_rng, b->batch, mn_size(b->corpus->train.input_ids, 0)),
               &ids, &mask);
    mn_tensor *masked = mn_mlm_mask(b->corpus->wp, ids, 0.15f, &b->data_rng, &labels);
    mn_tensor *hidden = mn_bert_encode(b->model, masked, NULL, mask, NULL);
    return mn_bert_mlm_loss(b->model, hidden, labels);
}

/* Mean cross-entropy and accuracy over the masked positions of the held-out texts, masked with a fixed
 * seed so every optimizer and seed is scored on the same positions. */
static void bert_evaluate(bench_task *t, double *loss, double *metric) {
    bert_task *b = (bert_task *)t;
    bool prev = mn_no_grad_begin();
    mn_rng g = mn_rng_new(777);
    int64_t N = mn_size(b->corpus->test.input_ids, 0), chunk = 64;
    double sum = 0, correct = 0, count = 0;
    for (int64_t s = 0; s < N; s += chunk) {
        mn_scope sc = mn_scope_begin();
        int64_t e = s + chunk < N ? s + chunk : N;
        mn_tensor *idx, *ids, *mask, *labels;
        int32_t *rows = malloc(sizeof(int32_t) * (size_t)(e - s));
        for (int64_t i = s; i < e; i++) rows[i - s] = (int32_t)i;
        idx = mn_from_ints(MN_SHAPE(e - s), rows);
        free(rows);
        batch_rows(&b->corpus->test, idx, &ids, &mask);
        mn_tensor *masked = mn_mlm_mask(b->corpus->wp, ids, 0.15f, &g, &labels);
            int64_t n = 0;
        for (int64_t i = 0; i < mn_numel(labels); i++) n += mn_idata(labels)[i] != -100;
        if (n > 0) {
            mn_tensor *hidden = mn_bert_encode(b->model, masked, NULL, mask, NULL);
            sum += mn_item(mn_bert_mlm_loss(b->model, hidden, labels)) * (double)n;
            mn_tensor *logits = mn_bert_mlm_head(b->model, hidden);
            int64_t V = mn_size(logits, -1);
            correct += mn_accuracy(mn_reshape(logits, MN_SHAPE(-1, V)), mn_reshape(labels, MN_SHAPE(-1)), -100) *
                       (double)n;
            count += (double)n;
        }
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    *loss = count ? sum / count : NAN;
    *metric = count ? correct / count : NAN;
}

static void bert_free(bench_task *t) {
    bert_task *b = (bert_task *)t;
    mn_params_free(&b->base.params);
    mn_bert_free(b->model);
    free(b);
}

/* "bert:tiny:mlm[:bN][:lenN][:vN]" */
bench_task *bert_task_new(const char *spec, char (*f)[64], int n, uint64_t seed, task_data *d, mn_err *err) {
    if (n < 3 || strcmp(f[2], "mlm") || (strcmp(f[1], "tiny") && strcmp(f[1], "mini")))
        return mn_err_set(err, "task \"%s\": expected bert:tiny|mini:mlm[:bN][:lenN][:vN]", spec), NULL;
    long batch = 32, len = 64, vocab = 2048;
    for (int i = 3; i < n; i++)
        if (!task_spec_int(f[i], "b", 1, 4096, &batch) && !task_spec_int(f[i], "len", 8, 512, &len) &&
            !task_spec_int(f[i], "v", 256, 100000, &vocab))
            return mn_err_set(err, "task \"%s\": unknown field \"%s\" (bN, lenN, vN)", spec, f[i]), NULL;
    char key[64];
    snprintf(key, sizeof key, "bert-corpus:%ld:%ld", vocab, len);
    bert_corpus *c = task_data_cache(d, key, corpus_make, corpus_free, err);
    if (!c) return NULL;
    mn_bert_config cfg;
    mn_bert_config_named(!strcmp(f[1], "tiny") ? "bert-tiny" : "bert-mini", &cfg);
    cfg.vocab_size = mn_wordpiece_vocab_size(c->wp);
    cfg.max_position_embeddings = len;
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0; /* deterministic: no dropout */
    bert_task *b = calloc(1, sizeof *b);
    if (!b) mn_fatal("bert_task_new: out of memory");
    snprintf(b->base.spec, sizeof b->base.spec, "%s", spec);
    mn_rng init = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + 0xbe27);
    b->model = mn_bert_new(&cfg, MN_BERT_FOR_MASKED_LM, false, &init);
    mn_bert_config_free(&cfg);
    for (int i = 0; i < b->model->params.count; i++) {
        const mn_param *p = &b->model->params.items[i];
        mn_params_add(&b->base.params, NULL, p->name, p->tensor, p->no_decay);
    }
    b->corpus = c;
    b->batch = batch;
    b->data_rng = mn_rng_new(seed * 0xd1342543de82ef95ull + 0xda7a);
    b->base.metric_name = "mlm accuracy";
    b->base.train_loss = bert_train_loss;
    b->base.evaluate = bert_evaluate;
    b->base.free = bert_free;
    return &b->base;
}
