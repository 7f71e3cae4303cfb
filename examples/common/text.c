#include "text.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- tokenizer directories ------------------------------------------------------------------------- */

bool text_tokenizer_load_vocab(const char *vocab_path, const mn_wordpiece_opts *opts, text_tokenizer *t,
                               mn_err *err) {
    *t = (text_tokenizer){0};
    t->opts = opts ? *opts : mn_wordpiece_uncased();
    snprintf(t->vocab_path, sizeof t->vocab_path, "%s", vocab_path);
    t->wp = mn_wordpiece_load(vocab_path, &t->opts, err);
    return t->wp != NULL;
}

static bool json_flag(json_t *root, const char *key, const char *path, bool *out, bool *is_null, mn_err *err) {
    json_t *v = json_object_get(root, key);
    if (is_null) *is_null = v == NULL || json_is_null(v);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return mn_err_set(err, "%s: key \"%s\": expected true or false", path, key);
    *out = json_is_true(v);
    return true;
}

/* Reads the settings of a tokenizer_config.json into opts and max_len (absent file: defaults). */
static bool read_tokenizer_config(const char *path, mn_wordpiece_opts *opts, int64_t *max_len, mn_err *err) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return true;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return mn_err_set(err, "%s: line %d, column %d: %s", path, je.line, je.column, je.text);
    bool ok = true, strip = false, strip_null = true, cjk = true;
    if (!json_is_object(root)) ok = mn_err_set(err, "%s: expected a JSON object", path);
    ok = ok && json_flag(root, "do_lower_case", path, &opts->lowercase, NULL, err);
    ok = ok && json_flag(root, "strip_accents", path, &strip, &strip_null, err);
    ok = ok && json_flag(root, "tokenize_chinese_chars", path, &cjk, NULL, err);
    if (ok) {
        opts->strip_accents = strip_null ? 0 : strip ? 1 : -1;
        opts->no_cjk_split = !cjk;
        json_t *cls = json_object_get(root, "tokenizer_class");
        if (json_is_string(cls) && strcmp(json_string_value(cls), "BertTokenizer") &&
            strcmp(json_string_value(cls), "BertTokenizerFast"))
            fprintf(stderr, "note: %s: tokenizer_class \"%s\" is read as a BertTokenizer (WordPiece)\n", path,
                    json_string_value(cls));
        json_t *ml = json_object_get(root, "model_max_length");
        /* transformers writes 1e30 when it does not know the length: treat as none */
        if (json_is_integer(ml) && json_integer_value(ml) > 0 && json_integer_value(ml) < ((json_int_t)1 << 40))
            *max_len = (int64_t)json_integer_value(ml);
        else if (ml && !json_is_null(ml) && !json_is_number(ml))
            ok = mn_err_set(err, "%s: key \"model_max_length\": expected a number", path);
    }
    json_decref(root);
    return ok;
}

bool text_tokenizer_load_dir(const char *dir, text_tokenizer *t, mn_err *err) {
    char vocab[4096], config[4096];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    snprintf(config, sizeof config, "%s/tokenizer_config.json", dir);
    mn_wordpiece_opts opts = mn_wordpiece_uncased();
    int64_t max_len = 0;
    *t = (text_tokenizer){0};
    if (!read_tokenizer_config(config, &opts, &max_len, err)) return false;
    if (!text_tokenizer_load_vocab(vocab, &opts, t, err)) return false;
    t->model_max_length = max_len;
    return true;
}

bool text_tokenizer_save_dir(const text_tokenizer *t, const char *dir, mn_err *err) {
    if (!mn_make_dirs(dir, err)) return false;
    char path[4096];
    int32_t n = mn_wordpiece_vocab_size(t->wp);
    size_t bytes = 1;
    for (int32_t i = 0; i < n; i++) bytes += strlen(mn_wordpiece_token(t->wp, i)) + 1;
    char *buf = malloc(bytes), *o = buf;
    if (!buf) mn_fatal("out of memory writing a vocabulary");
    for (int32_t i = 0; i < n; i++) o += sprintf(o, "%s\n", mn_wordpiece_token(t->wp, i));
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    bool ok = mn_write_file_atomic(path, buf, (size_t)(o - buf), err);
    free(buf);
    if (!ok) return false;

    json_t *root = json_object();
    json_object_set_new(root, "tokenizer_class", json_string("BertTokenizer"));
    json_object_set_new(root, "do_lower_case", json_boolean(t->opts.lowercase));
    json_object_set_new(root, "strip_accents",
                        t->opts.strip_accents == 0 ? json_null() : json_boolean(t->opts.strip_accents > 0));
    json_object_set_new(root, "tokenize_chinese_chars", json_boolean(!t->opts.no_cjk_split));
    if (t->model_max_length > 0) json_object_set_new(root, "model_max_length", json_integer(t->model_max_length));
    const char *specials[][2] = {{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"},
                                 {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"}};
    for (int i = 0; i < 5; i++) json_object_set_new(root, specials[i][0], json_string(specials[i][1]));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text) mn_fatal("out of memory writing tokenizer_config.json");
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL becomes the final newline; len + 1 bytes are written */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ok = mn_write_file_atomic(path, text, len + 1, err);
    free(text);
    return ok;
}

void text_tokenizer_free(text_tokenizer *t) {
    if (t->wp) mn_wordpiece_free(t->wp);
    *t = (text_tokenizer){0};
}

/* ---- lists and corpora ------------------------------------------------------------------------------- */

char **text_split_list(const char *s, int *n) {
    size_t len = strlen(s);
    char **v = calloc(len / 2 + 2, sizeof *v);
    if (!v) mn_fatal("out of memory");
    int k = 0;
    for (const char *p = s; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = s + len;
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        if (b > a) v[k++] = strndup(a, (size_t)(b - a));
        p = *end ? end + 1 : end;
    }
    *n = k;
    return v;
}

void text_free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

bool text_load_fortunes(const char *dir, const char *categories, const char *exclude, mn_text_dataset *out,
                        mn_err *err) {
    if (strcmp(categories, "all")) {
        int n;
        char **names = text_split_list(categories, &n);
        bool ok = n > 0 ? mn_fortunes_load(dir, n, (const char *const *)names, out, err)
                        : mn_err_set(err, "no category names in \"%s\"", categories);
        text_free_list(names, n);
        return ok;
    }
    mn_text_dataset all;
    if (!mn_fortunes_load(dir, 0, NULL, &all, err)) return false;
    int n_ex = 0;
    char **ex = text_split_list(exclude ? exclude : "", &n_ex);
    /* keep the categories not excluded, relabelled in order */
    int32_t *keep_class = malloc(sizeof(int32_t) * (size_t)all.n_classes);
    const char **kept = malloc(sizeof(char *) * (size_t)all.n_classes);
    int n_kept = 0;
    for (int c = 0; c < all.n_classes; c++) {
        bool drop = false;
        for (int i = 0; i < n_ex; i++) drop |= !strcmp(all.class_names[c], ex[i]);
        keep_class[c] = drop ? -1 : n_kept;
        if (!drop) kept[n_kept++] = all.class_names[c];
    }
    if (n_kept == 0) {
        free(keep_class), free(kept), text_free_list(ex, n_ex), mn_text_dataset_free(&all);
        return mn_err_set(err, "%s: every category is excluded", dir ? dir : MN_FORTUNES_DIR);
    }
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(all.n ? all.n : 1));
    int64_t m = 0;
    for (int64_t i = 0; i < all.n; i++)
        if (keep_class[all.labels[i]] >= 0) rows[m++] = (int32_t)i;
    mn_tensor *index = mn_from_ints(MN_SHAPE(m), rows);
    mn_text_dataset sub;
    mn_text_dataset_subset(&all, index, &sub);
    mn_release(index);
    for (int64_t i = 0; i < sub.n; i++) sub.labels[i] = keep_class[sub.labels[i]];
    for (int c = 0; c < sub.n_classes; c++) free(sub.class_names[c]);
    free(sub.class_names);
    sub.class_names = malloc(sizeof(char *) * (size_t)n_kept);
    for (int c = 0; c < n_kept; c++) sub.class_names[c] = strdup(kept[c]);
    sub.n_classes = n_kept;
    *out = sub;
    free(rows), free(keep_class), free(kept), text_free_list(ex, n_ex), mn_text_dataset_free(&all);
    return true;
}

double text_majority_baseline(const mn_text_dataset *train, const mn_text_dataset *test, int *majority) {
    int64_t *counts = calloc((size_t)train->n_classes, sizeof *counts);
    for (int64_t i = 0; i < train->n; i++) counts[train->labels[i]]++;
    int best = 0;
    for (int c = 1; c < train->n_classes; c++)
        if (counts[c] > counts[best]) best = c;
    free(counts);
    int64_t hits = 0;
    for (int64_t i = 0; i < test->n; i++) hits += test->labels[i] == best;
    if (majority) *majority = best;
    return test->n ? (double)hits / (double)test->n : 0;
}

/* ---- encoding ------------------------------------------------------------------------------------------- */

mn_encoding text_encode_all(const text_tokenizer *t, int64_t n, char *const *texts, int64_t max_len) {
    return mn_wordpiece_encode_batch(t->wp, n, (const char *const *)texts, NULL, max_len);
}

static void encoding_free(mn_encoding *e) {
    mn_release(e->input_ids);
    mn_release(e->token_type_ids);
    mn_release(e->attention_mask);
    *e = (mn_encoding){0};
}

void text_labelled_free(text_labelled *d) {
    encoding_free(&d->enc);
    mn_release(d->labels);
    *d = (text_labelled){0};
}

int64_t text_count_tokens(mn_tensor *attention_mask) {
    mn_scope sc = mn_scope_begin();
    const int32_t *m = mn_idata(mnt_contiguous(attention_mask));
    int64_t n = mn_numel(attention_mask), k = 0;
    for (int64_t i = 0; i < n; i++) k += m[i] != 0;
    mn_scope_end(sc);
    return k;
}

mn_encoding text_batch_rows(const mn_encoding *enc, mn_tensor *index) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *mask = mn_gather_rows(enc->attention_mask, index);
    int64_t B = mask->shape[0], T = mask->shape[1], longest = 1;
    const int32_t *m = mn_idata(mask);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 0;
        for (int64_t i = 0; i < T; i++) len += m[b * T + i] != 0;
        if (len > longest) longest = len;
    }
    /* rows are [CLS] ... [SEP] then padding, so the first `longest` columns hold every token */
    mn_tensor *ids = mn_retain(mnt_contiguous(mnt_slice(mn_gather_rows(enc->input_ids, index), 1, 0, longest, 1)));
    mn_tensor *types =
        mn_retain(mnt_contiguous(mnt_slice(mn_gather_rows(enc->token_type_ids, index), 1, 0, longest, 1)));
    mn_tensor *keep = mn_retain(mnt_contiguous(mnt_slice(mask, 1, 0, longest, 1)));
    mn_scope_end(sc);
    /* handed out like op results: to the enclosing scope, if any */
    return (mn_encoding){mn_autorelease(ids), mn_autorelease(types), mn_autorelease(keep)};
}
