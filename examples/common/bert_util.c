#include "bert_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool bert_make_config(const char *name, long hidden, long layers, long heads, long intermediate, long max_len,
                      double dropout, const text_tokenizer *tok, mn_bert_config *cfg, mn_err *err) {
    if (!mn_bert_config_named(name, cfg))
        return mn_err_set(err, "unknown configuration \"%s\" (one of %s)", name, MN_BERT_CONFIG_NAMES);
    if (hidden > 0) cfg->hidden_size = hidden;
    if (layers > 0) cfg->num_hidden_layers = layers;
    if (heads > 0) cfg->num_attention_heads = heads;
    if (intermediate > 0) cfg->intermediate_size = intermediate;
    if (max_len > 0) cfg->max_position_embeddings = max_len;
    if (dropout >= 0) cfg->hidden_dropout_prob = cfg->attention_probs_dropout_prob = dropout;
    cfg->vocab_size = mn_wordpiece_vocab_size(tok->wp);
    cfg->pad_token_id = mn_wordpiece_id(tok->wp, "[PAD]");
    if (mn_bert_config_check(cfg, err)) return true;
    mn_bert_config_free(cfg);
    return false;
}

bool bert_check_vocab(const mn_bert *m, const char *model_dir, const text_tokenizer *tok, mn_err *err) {
    int32_t v = mn_wordpiece_vocab_size(tok->wp);
    if (m->cfg.vocab_size != v)
        return mn_err_set(err, "%s/config.json: vocab_size is %lld but %s holds %d tokens (not this model's "
                          "vocabulary?)", model_dir, (long long)m->cfg.vocab_size, tok->vocab_path, (int)v);
    return true;
}

int64_t bert_max_len(const mn_bert *m, const text_tokenizer *tok) {
    int64_t n = m->cfg.max_position_embeddings;
    if (tok->model_max_length > 0 && tok->model_max_length < n) n = tok->model_max_length;
    return n;
}

bool bert_save_dir(const mn_bert *m, const text_tokenizer *tok, const char *dir, mn_err *err) {
    return mn_make_dirs(dir, err) && mn_bert_save(m, dir, err) && text_tokenizer_save_dir(tok, dir, err);
}

void bert_print_load_report(const mn_load_report *r, const char *prog) {
    char *s = mn_load_report_summary(r);
    if (*s) fprintf(stderr, "%s: load report:\n%s", prog, s);
    else fprintf(stderr, "%s: every weight of %s was loaded from %s\n", prog, r->arch ? r->arch : "the model",
                 r->path ? r->path : "the checkpoint");
    free(s);
}

int64_t bert_mlm_correct(const mn_bert *m, mn_tensor *hidden, mn_tensor *labels, int64_t *n) {
    mn_scope sc = mn_scope_begin();
    bool prev = mn_no_grad_begin();
    int64_t total = mn_numel(labels), H = hidden->shape[hidden->ndim - 1], k = 0, hits = 0;
    const int32_t *lab = mn_idata(mnt_contiguous(labels));
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    for (int64_t i = 0; i < total; i++)
        if (lab[i] != -100) rows[k++] = (int32_t)i;
    if (k > 0) {
        mn_tensor *picked = mn_index_select(mn_reshape(mn_detach(hidden), MN_SHAPE(total, H)), 0,
                                            mn_from_ints(MN_SHAPE(k), rows));
        const int32_t *pred = mn_idata(mn_argmax(mn_bert_mlm_head(m, picked), -1, false));
        for (int64_t j = 0; j < k; j++) hits += pred[j] == lab[rows[j]];
    }
    free(rows);
    mn_no_grad_end(prev);
    mn_scope_end(sc);
    *n = k;
    return hits;
}

static bool save_model_and_tokenizer(void *session, const char *dir, mn_err *err) {
    const bert_session *s = session;
    return bert_save_dir(s->m, &s->tok, dir, err);
}

void bert_session_keep_best(bert_session *s, double metric) {
    best_init(&s->best, &s->m->params, save_model_and_tokenizer, s, metric);
    s->keep_best = true;
}

bool bert_session_checkpoint(bert_session *s, int64_t step, double best_metric) {
    if (s->keep_best) return trainer_checkpoint(&s->t, step, s->best.metric, best_save_with_model, &s->best);
    return trainer_checkpoint(&s->t, step, best_metric, save_model_and_tokenizer, s);
}

bool bert_session_free(bert_session *s) {
    bool logged = trainer_free(&s->t);
    if (s->keep_best) best_free(&s->best);
    text_labelled_free(&s->train_enc);
    text_labelled_free(&s->eval_enc);
    text_labelled_free(&s->val_enc);
    mn_bert_free(s->m);
    text_tokenizer_free(&s->tok);
    mn_text_dataset_free(&s->train);
    mn_text_dataset_free(&s->eval);
    mn_text_dataset_free(&s->val);
    return logged;
}
