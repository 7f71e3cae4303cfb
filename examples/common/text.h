/* Text helpers for the BERT programs: a tokenizer directory in Hugging Face's layout
 * (vocab.txt + tokenizer_config.json), comma-separated lists, the fortunes corpus by
 * category list, and batches padded only to their longest text. */
#ifndef MN_EXAMPLES_TEXT_H
#define MN_EXAMPLES_TEXT_H

#include "data/data.h"
#include "mnemo.h"

/* A WordPiece tokenizer with the settings of its tokenizer_config.json. */
typedef struct {
    mn_wordpiece *wp;
    mn_wordpiece_opts opts;   /* do_lower_case, strip_accents, tokenize_chinese_chars */
    int64_t model_max_length; /* 0 when the file gives none (or Hugging Face's "very large" placeholder) */
    char vocab_path[4096];    /* where the vocabulary was read from, for messages */
} text_tokenizer;

/* DIR/vocab.txt with DIR/tokenizer_config.json; the config is optional (BertTokenizer's
 * defaults: lower-case, accents stripped with it, CJK split). Errors name the file. */
bool text_tokenizer_load_dir(const char *dir, text_tokenizer *t, mn_err *err);
/* A vocab.txt on its own, with the given options (NULL: uncased). */
bool text_tokenizer_load_vocab(const char *vocab_path, const mn_wordpiece_opts *opts, text_tokenizer *t,
                               mn_err *err);
/* Writes DIR/vocab.txt (id order) and DIR/tokenizer_config.json (BertTokenizer, do_lower_case,
 * strip_accents, tokenize_chinese_chars, model_max_length, special tokens), atomically. */
bool text_tokenizer_save_dir(const text_tokenizer *t, const char *dir, mn_err *err);
void text_tokenizer_free(text_tokenizer *t);

/* "a,b, c" -> {"a", "b", "c"} (owned; spaces around names dropped, empty names skipped). */
char **text_split_list(const char *s, int *n);
void text_free_list(char **v, int n);

/* Fortune categories from a comma-separated list, or "all": every category of dir except
 * those in exclude (comma-separated; e.g. "ascii-art", whose entries are pictures). */
bool text_load_fortunes(const char *dir, const char *categories, const char *exclude, mn_text_dataset *out,
                        mn_err *err);

/* Share of the samples that belong to the most frequent class of `train`, measured on
 * `test` (the accuracy of always answering that class); *majority gets the class. */
double text_majority_baseline(const mn_text_dataset *train, const mn_text_dataset *test, int *majority);

/* texts encoded as BERT inputs of width max_len ([CLS] text [SEP] [PAD]...), one row each. */
mn_encoding text_encode_all(const text_tokenizer *t, int64_t n, char *const *texts, int64_t max_len);

/* n encoded texts with their labels: I32 [n] (a class per text) or [n, T] (masked-LM: a token
 * per position, -100 where there is no loss). */
typedef struct {
    mn_encoding enc;
    mn_tensor *labels;
    int64_t n;
} text_labelled;
void text_labelled_free(text_labelled *d);

/* Rows index (I32 [B]) of enc, cut to the longest row's length (no all-padding columns). */
mn_encoding text_batch_rows(const mn_encoding *enc, mn_tensor *index);
/* Number of non-padding tokens in an attention mask. */
int64_t text_count_tokens(mn_tensor *attention_mask);

#endif
