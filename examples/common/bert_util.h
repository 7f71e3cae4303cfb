/* What the BERT programs share beyond text handling: a configuration from options,
 * model + tokenizer directories, load reports, masked-LM accuracy, and what a training
 * program owns (its texts, tokenizer, model and trainer). */
#ifndef MN_BERT_UTIL_H
#define MN_BERT_UTIL_H

#include "best_weights.h"
#include "text.h"
#include "trainer.h"

/* A named configuration (MN_BERT_CONFIG_NAMES) with the sizes that are > 0 overriding it;
 * vocab_size from the tokenizer; max_position_embeddings = max_len; dropout (>= 0) for both
 * hidden and attention dropout. False and err when the name is unknown or the result invalid. */
bool bert_make_config(const char *name, long hidden, long layers, long heads, long intermediate, long max_len,
                      double dropout, const text_tokenizer *tok, mn_bert_config *cfg, mn_err *err);
/* The model's vocabulary must be the tokenizer's: vocab_size == number of tokens. */
bool bert_check_vocab(const mn_bert *m, const char *model_dir, const text_tokenizer *tok, mn_err *err);
/* The longest input the model and tokenizer accept: min(max_position_embeddings, model_max_length). */
int64_t bert_max_len(const mn_bert *m, const text_tokenizer *tok);
/* config.json + model.safetensors (mn_bert_save) and vocab.txt + tokenizer_config.json in dir. */
bool bert_save_dir(const mn_bert *m, const text_tokenizer *tok, const char *dir, mn_err *err);
/* Prints mn_load_report_summary (Hugging Face's warnings) to stderr, or "all weights loaded". */
void bert_print_load_report(const mn_load_report *r, const char *prog);
/* Masked-LM accuracy at labelled positions (label != -100) of hidden [B, T, H]: how many
 * argmax predictions equal the label; *n gets the number of labelled positions. No gradient. */
int64_t bert_mlm_correct(const mn_bert *m, mn_tensor *hidden, mn_tensor *labels, int64_t *n);

/* What a BERT training program owns, freed in one place (also on its error paths). */
typedef struct {
    mn_text_dataset train, eval, val;           /* the training texts; the test (or held-out) texts; validation */
    text_tokenizer tok;
    mn_bert *m;
    text_labelled train_enc, eval_enc, val_enc; /* the texts encoded for the model */
    trainer t;
    bool keep_best;                             /* best holds the weights of the best validation */
    best_weights best;
} bert_session;
/* --keep best: from now on the checkpoints hold s->best too (metric: the best so far, -1 if none). */
void bert_session_keep_best(bert_session *s, double metric);
/* After step, when a checkpoint is due (trainer_checkpoint): the model and tokenizer (bert_save_dir),
 * the best weights (with --keep best) and the trainer state into --save. False after printing why. */
bool bert_session_checkpoint(bert_session *s, int64_t step, double best_metric);
/* False if the metrics log could not be written (see trainer_free). */
bool bert_session_free(bert_session *s);

#endif
