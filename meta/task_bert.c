/* Masked language modelling on the fortunes with the library's BERT (mn_bert), run on the caller's
 * parameters through mn_params_substitute, so meta-training also sees text and embeddings. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The fortunes (without the ascii-art pictures), split 90/10 with a fixed seed, tokenised by a vocabulary
 * built from the training part (cached as WORK/fortunes_vocab_V.txt). */
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
static void *corpus_make(mn_meta_data *d, const char *key, mn_err *err) {
    long vocab, len;
    if (sscanf(key, "bert-corpus:%ld:%ld", &vocab, &len) != 2) mn_fatal("corpus_make: key %s", key);
    mn_text_dataset all, kept, train, test;
    if (!mn_fortunes_load(meta_data_fortunes_dir(d), 0, NULL, &all, err)) return NULL;
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(all.n ? all.n : 1));
    if (!rows) mn_fatal("corpus_make: out of memory");
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
    snprintf(path, sizeof path, "%s/fortunes_vocab_%ld.txt", meta_data_work_dir(d), vocab);
    struct stat st;
    bool ok = true;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "building a WordPiece vocabulary of %ld entries from %lld fortunes into %s\n", vocab,
                (long long)train.n, path);
        ok = mn_make_dirs(meta_data_work_dir(d), err);
        mn_vocab_build_opts vo = {.vocab_size = (int32_t)vocab};
        ok = ok && mn_wordpiece_build_vocab(train.n, (const char *const *)train.texts, NULL, &vo, path, err);
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
    mn_meta_task base;
    mn_bert_config cfg;
    mn_bert *model;
    const bert_corpus *corpus;
    int batch;
} bert_task;

enum { BERT_INIT = 0xbe27 };

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

/* transformers' BERT initialisation (mn_bert_new) from the seed */
static void bert_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const bert_task *b = (const bert_task *)t;
    mn_rng g = mn_rng_new(seed * 0x9e3779b97f4a7c15ull + BERT_INIT);
    mn_bert *fresh = mn_bert_new(&b->cfg, MN_BERT_FOR_MASKED_LM, false, &g);
    meta_clone_params(&fresh->params, out);
    mn_bert_free(fresh);
}

/* x: the masked ids, y: the labels (-100 where nothing is predicted), mask: attention */
static mn_meta_batch bert_batch(const mn_meta_task *t, mn_rng *rng) {
    const bert_task *b = (const bert_task *)t;
    mn_tensor *ids, *mask, *labels;
    batch_rows(&b->corpus->train, meta_sample_rows(rng, b->batch, mn_size(b->corpus->train.input_ids, 0)), &ids,
               &mask);
    mn_tensor *masked = mn_mlm_mask(b->corpus->wp, ids, 0.15f, rng, &labels);
    return (mn_meta_batch){masked, labels, mask};
}

static mn_tensor *bert_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *batch) {
    const bert_task *b = (const bert_task *)t;
    mn_params_substitute(&b->model->params, params);
    mn_tensor *hidden = mn_bert_encode(b->model, batch->x, NULL, batch->mask, NULL);
    mn_tensor *loss = mn_bert_mlm_loss(b->model, hidden, batch->y);
    mn_params_restore(&b->model->params);
    return loss;
}

/* Mean cross-entropy and accuracy over the masked positions of the held-out texts, masked with a fixed seed
 * so that every optimizer and seed is scored on the same positions. */
static void bert_test(const mn_meta_task *t, mn_tensor *const *params, double *loss, double *metric) {
    const bert_task *b = (const bert_task *)t;
    bool prev = mn_no_grad_begin();
    mn_params_substitute(&b->model->params, params);
    mn_rng g = mn_rng_new(777);
    int64_t N = mn_size(b->corpus->test.input_ids, 0), chunk = 64;
    double sum = 0, correct = 0, count = 0;
    for (int64_t s = 0; s < N; s += chunk) {
        mn_scope sc = mn_scope_begin();
        int64_t e = s + chunk < N ? s + chunk : N;
        mn_tensor *ids, *mask, *labels;
        int32_t *rows = malloc(sizeof(int32_t) * (size_t)(e - s));
        if (!rows) mn_fatal("bert task test: out of memory");
        for (int64_t i = s; i < e; i++) rows[i - s] = (int32_t)i;
        mn_tensor *idx = mn_from_ints(MN_SHAPE(e - s), rows);
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
    mn_params_restore(&b->model->params);
    mn_no_grad_end(prev);
    *loss = count ? sum / count : NAN;
    *metric = count ? correct / count : NAN;
}

static void bert_free(mn_meta_task *t) {
    bert_task *b = (bert_task *)t;
    mn_bert_free(b->model);
    mn_bert_config_free(&b->cfg);
    free(b);
}

static const mn_meta_task_vt bert_vt = {
    .init = bert_init, .batch = bert_batch, .loss = bert_loss, .test = bert_test, .free = bert_free};

mn_meta_bert_config mn_meta_bert_config_named(const char *size) {
    mn_meta_bert_config c = {0};
    if (!strcmp(size, "tiny")) c = (mn_meta_bert_config){128, 2, 2, 512, 32, 64, 2048};
    else if (!strcmp(size, "mini")) c = (mn_meta_bert_config){256, 4, 4, 1024, 32, 64, 2048};
    return c;
}

mn_meta_task *mn_meta_bert_task(mn_meta_data *d, const mn_meta_bert_config *c, mn_err *err) {
    if (c->batch < 1 || c->batch > 4096 || c->len < 8 || c->len > 512 || c->vocab < 256 || c->vocab > 100000)
        return mn_err_set(err, "bert task: batch %d (1-4096), length %d (8-512), vocabulary %d (256-100000)", c->batch,
                          c->len, c->vocab),
               NULL;
    char key[64];
    snprintf(key, sizeof key, "bert-corpus:%d:%d", c->vocab, c->len);
    bert_corpus *corpus = meta_data_cache(d, key, corpus_make, corpus_free, err);
    if (!corpus) return NULL;
    mn_bert_config cfg;
    mn_bert_config_named("bert-tiny", &cfg);
    cfg.hidden_size = c->hidden, cfg.num_hidden_layers = c->layers, cfg.num_attention_heads = c->heads;
    cfg.intermediate_size = c->intermediate;
    cfg.vocab_size = mn_wordpiece_vocab_size(corpus->wp);
    cfg.max_position_embeddings = c->len;
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0; /* deterministic: no dropout */
    mn_err why;
    if (!mn_bert_config_check(&cfg, &why)) {
        mn_bert_config_free(&cfg);
        return mn_err_set(err, "bert task: %s", why.msg), NULL;
    }
    bert_task *b = calloc(1, sizeof *b);
    if (!b) mn_fatal("mn_meta_bert_task: out of memory");
    b->cfg = cfg;
    mn_rng g = mn_rng_new(0); /* never used: every forward substitutes */
    b->model = mn_bert_new(&b->cfg, MN_BERT_FOR_MASKED_LM, false, &g);
    b->corpus = corpus;
    b->batch = c->batch;
    b->base.vt = &bert_vt;
    b->base.n_params = b->model->params.count;
    b->base.layout = &b->model->params;
    snprintf(b->base.desc, sizeof b->base.desc, "bert h%d l%d heads%d ffn%d v%d len%d b%d", c->hidden, c->layers,
             c->heads, c->intermediate, c->vocab, c->len, c->batch);
    return &b->base;
}
