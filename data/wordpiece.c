/* WordPiece vocabularies, tokenisation, encoding and decoding (Hugging Face's BertTokenizer). */
#include "data/data_internal.h"
#include "data/strmap.h"
#include "data/tokenizer_internal.h"
#include "data/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB_FILE ((size_t)1 << 30)

enum { SPECIAL_PAD, SPECIAL_UNK, SPECIAL_CLS, SPECIAL_SEP, SPECIAL_MASK, N_SPECIAL };
static const char *const special_names[N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

struct mn_wordpiece {
    mn__basic_opts basic;
    mn__strmap vocab; /* token -> id; entry i is id i */
    int32_t special[N_SPECIAL];
};

/* ---- vocabulary ------------------------------------------------------------------------------- */

mn_wordpiece *mn_wordpiece_from_memory(const char *data, size_t size, const char *name, const mn_wordpiece_opts *opts,
                                       mn_err *err) {
    mn_wordpiece *t = calloc(1, sizeof *t);
    if (!t) mn_fatal("out of memory loading a vocabulary");
    t->basic = mn__basic_opts_resolve(opts);
    int64_t line_no = 0, first_empty = 0;
    for (size_t pos = 0; pos < size;) {
        size_t end = pos;
        while (end < size && data[end] != '\n') end++;
        line_no++;
        size_t len = end - pos;
        const char *line = data + pos;
        pos = end + 1;
        if (len && line[len - 1] == '\r') len--;
        if (len == 0) {
            if (!first_empty) first_empty = line_no;
            continue;
        }
        if (first_empty) {
            mn_err_set(err, "%s:%lld: empty line inside the vocabulary (only allowed at the end)", name,
                       (long long)first_empty);
            goto fail;
        }
        const char *nul = memchr(line, 0, len);
        size_t bad = len;
        bool valid = mn_utf8_valid(line, len, &bad);
        if (nul && (size_t)(nul - line) < bad) bad = (size_t)(nul - line);
        if (!valid || nul) {
            mn_err_set(err, "%s:%lld: %s at byte %zu of the line", name, (long long)line_no,
                       nul && bad == (size_t)(nul - line) ? "NUL character" : "invalid UTF-8", bad + 1);
            goto fail;
        }
        if (line_no > INT32_MAX) {
            mn_err_set(err, "%s:%lld: more than 2^31 - 1 tokens", name, (long long)line_no);
            goto fail;
        }
        bool inserted;
        int64_t *id = mn__strmap_put(&t->vocab, line, len, &inserted);
        if (!inserted) {
            mn_err_set(err, "%s:%lld: duplicate token \"%.*s\" (first on line %lld)", name, (long long)line_no,
                       (int)(len > 200 ? 200 : len), line, (long long)(*id + 1));
            goto fail;
        }
        *id = (int64_t)t->vocab.count - 1;
    }
    if (t->vocab.count == 0) {
        mn_err_set(err, "%s: the vocabulary is empty", name);
        goto fail;
    }
    for (int s = 0; s < N_SPECIAL; s++) {
        t->special[s] = mn_wordpiece_id(t, special_names[s]);
        if (t->special[s] < 0) {
            mn_err_set(err, "%s: the vocabulary lacks the special token %s (BERT vocabularies hold [PAD] [UNK] [CLS] "
                       "[SEP] [MASK])", name, special_names[s]);
            goto fail;
        }
    }
    return t;
fail:
    mn_wordpiece_free(t);
    return NULL;
}

mn_wordpiece *mn_wordpiece_load(const char *vocab_path, const mn_wordpiece_opts *opts, mn_err *err) {
    mn__basic_opts_resolve(opts);
    size_t size;
    char *data = mn_read_file(vocab_path, &size, MAX_VOCAB_FILE, err);
    if (!data) return NULL;
    mn_wordpiece *t = mn_wordpiece_from_memory(data, size, vocab_path, opts, err);
    free(data);
    return t;
}

void mn_wordpiece_free(mn_wordpiece *t) {
    if (!t) return;
    mn__strmap_free(&t->vocab);
    free(t);
}

int32_t mn_wordpiece_vocab_size(const mn_wordpiece *t) { return (int32_t)t->vocab.count; }

int32_t mn_wordpiece_id(const mn_wordpiece *t, const char *token) {
    const int64_t *id = mn__strmap_get(&t->vocab, token, strlen(token));
    return id ? (int32_t)*id : -1;
}

const char *mn_wordpiece_token(const mn_wordpiece *t, int32_t id) {
    return id >= 0 && (size_t)id < t->vocab.count ? mn__strmap_key(&t->vocab, (size_t)id) : NULL;
}

bool mn_wordpiece_is_special(const mn_wordpiece *t, int32_t id) {
    for (int s = 0; s < N_SPECIAL; s++)
        if (t->special[s] == id) return true;
    return false;
}

/* ---- tokenisation -------------------------------------------------------------------------------- */

typedef struct {
    const mn_wordpiece *t;
    int32_t *ids;
    int64_t n, cap;
    char *key; /* scratch for "##" + piece */
    size_t key_cap;
    size_t *offsets;
    size_t offsets_cap;
} tokenize_state;

static void push_id(tokenize_state *s, int32_t id) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->ids = mn__xrealloc(s->ids, sizeof *s->ids * (size_t)s->cap, "token ids");
    }
    s->ids[s->n++] = id;
}

/* WordpieceTokenizer on one word: greedy longest-match-first. */
static void wordpiece_word(void *user, const uint32_t *cps, size_t n) {
    tokenize_state *s = user;
    const mn_wordpiece *t = s->t;
    if (n > (size_t)t->basic.max_word_chars) {
        push_id(s, t->special[SPECIAL_UNK]);
        return;
    }
    if (s->offsets_cap < n + 1) {
        s->offsets_cap = 2 * (n + 1);
        s->offsets = mn__xrealloc(s->offsets, sizeof *s->offsets * s->offsets_cap, "tokenizer buffer");
    }
    if (s->key_cap < 4 * n + 3) {
        s->key_cap = 2 * (4 * n + 3);
        s->key = mn__xrealloc(s->key, s->key_cap, "tokenizer buffer");
    }
    /* the word as UTF-8 after "##", with the byte offset of every character */
    char *bytes = s->key + 2;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        s->offsets[i] = at;
        at += (size_t)mn__utf8_encode(cps[i], bytes + at);
    }
    s->offsets[n] = at;
    int64_t first = s->n;
    for (size_t start = 0; start < n;) {
        size_t base = s->offsets[start], end;
        char *piece = bytes + base;
        if (start) { /* "##" over the last consumed bytes: key keeps two spare bytes in front */
            piece -= 2;
            memcpy(piece, "##", 2);
        }
        int64_t *id = NULL;
        for (end = n; end > start; end--)
            if ((id = mn__strmap_get(&t->vocab, piece, s->offsets[end] - base + (start ? 2 : 0)))) break;
        if (!id) {
            s->n = first; /* the whole word becomes [UNK] */
            push_id(s, t->special[SPECIAL_UNK]);
            return;
        }
        push_id(s, (int32_t)*id);
        start = end;
    }
}

/* Splits out the special tokens written verbatim, basic-tokenises the rest. */
static void tokenize_into(const mn_wordpiece *t, const char *text, tokenize_state *s) {
    size_t len = strlen(text), from = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '[') continue;
        for (int k = 0; k < N_SPECIAL; k++) {
            size_t sl = strlen(special_names[k]);
            if (len - i >= sl && !memcmp(text + i, special_names[k], sl)) {
                mn__basic_tokenize(&t->basic, text + from, i - from, wordpiece_word, s);
                push_id(s, t->special[k]);
                from = i + sl;
                i = from - 1;
                break;
            }
        }
    }
    mn__basic_tokenize(&t->basic, text + from, len - from, wordpiece_word, s);
}

static void state_free_scratch(tokenize_state *s) {
    free(s->key);
    free(s->offsets);
}

int32_t *mn_wordpiece_tokenize(const mn_wordpiece *t, const char *text, int64_t *n) {
    tokenize_state s = {.t = t};
    tokenize_into(t, text, &s);
    state_free_scratch(&s);
    *n = s.n;
    if (!s.ids) s.ids = mn__xmalloc(sizeof *s.ids, "token ids");
    return s.ids;
}

char *mn_wordpiece_decode(const mn_wordpiece *t, const int32_t *ids, int64_t n, bool skip_special) {
    size_t cap = 1, len = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *tok = mn_wordpiece_token(t, ids[i]);
        if (!tok) mn_fatal("mn_wordpiece_decode: id %d outside the vocabulary of %d", (int)ids[i],
                           mn_wordpiece_vocab_size(t));
        cap += strlen(tok) + 1;
    }
    char *out = mn__xmalloc(cap, "decoded text");
    for (int64_t i = 0; i < n; i++) {
        if (skip_special && mn_wordpiece_is_special(t, ids[i])) continue;
        const char *tok = mn_wordpiece_token(t, ids[i]);
        if (len && tok[0] == '#' && tok[1] == '#') { /* " ##" disappears */
            tok += 2;
        } else if (len) {
            out[len++] = ' ';
        }
        size_t k = strlen(tok);
        memcpy(out + len, tok, k);
        len += k;
    }
    out[len] = 0;
    return out;
}

/* ---- encoding ---------------------------------------------------------------------------------------- */

int64_t mn_wordpiece_encode(const mn_wordpiece *t, const char *a, const char *b, int64_t max_len, int32_t *input_ids,
                            int32_t *token_type_ids, int32_t *attention_mask) {
    int64_t n_special = b ? 3 : 2;
    if (max_len < n_special)
        mn_fatal("mn_wordpiece_encode: max_len %lld leaves no room for [CLS] and [SEP]", (long long)max_len);
    int64_t na, nb = 0;
    int32_t *ia = mn_wordpiece_tokenize(t, a, &na), *ib = b ? mn_wordpiece_tokenize(t, b, &nb) : NULL;
    /* longest_first: drop the last token of the longer text (the second on ties) */
    while (na + nb + n_special > max_len) {
        if (!b || na > nb) na--;
        else nb--;
    }
    int64_t at = 0;
    input_ids[at] = t->special[SPECIAL_CLS], token_type_ids[at] = 0, attention_mask[at++] = 1;
    for (int64_t i = 0; i < na; i++) input_ids[at] = ia[i], token_type_ids[at] = 0, attention_mask[at++] = 1;
    input_ids[at] = t->special[SPECIAL_SEP], token_type_ids[at] = 0, attention_mask[at++] = 1;
    if (b) {
        for (int64_t i = 0; i < nb; i++) input_ids[at] = ib[i], token_type_ids[at] = 1, attention_mask[at++] = 1;
        input_ids[at] = t->special[SPECIAL_SEP], token_type_ids[at] = 1, attention_mask[at++] = 1;
    }
    int64_t used = at;
    for (; at < max_len; at++) input_ids[at] = t->special[SPECIAL_PAD], token_type_ids[at] = 0, attention_mask[at] = 0;
    free(ia);
    free(ib);
    return used;
}

mn_encoding mn_wordpiece_encode_batch(const mn_wordpiece *t, int64_t n, const char *const *a, const char *const *b,
                                      int64_t max_len) {
    mn_encoding e;
    e.input_ids = mn_empty_dtype(MN_I32, MN_SHAPE(n, max_len));
    e.token_type_ids = mn_empty_dtype(MN_I32, MN_SHAPE(n, max_len));
    e.attention_mask = mn_empty_dtype(MN_I32, MN_SHAPE(n, max_len));
    for (int64_t i = 0; i < n; i++)
        mn_wordpiece_encode(t, a[i], b ? b[i] : NULL, max_len, mn_idata(e.input_ids) + i * max_len,
                            mn_idata(e.token_type_ids) + i * max_len, mn_idata(e.attention_mask) + i * max_len);
    return e;
}
