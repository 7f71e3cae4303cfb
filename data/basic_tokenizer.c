/* BERT's BasicTokenizer: cleaning, CJK and punctuation splitting, case and accents. */
#include "data/data_internal.h"
#include "data/tokenizer_internal.h"
#include "data/unicode.h"

#include <stdlib.h>

mn_wordpiece_opts mn_wordpiece_uncased(void) {
    return (mn_wordpiece_opts){.lowercase = true, .strip_accents = 0, .no_cjk_split = false, .max_word_chars = 100};
}

mn__basic_opts mn__basic_opts_resolve(const mn_wordpiece_opts *opts) {
    mn_wordpiece_opts w = opts ? *opts : mn_wordpiece_uncased();
    if (w.strip_accents < -1 || w.strip_accents > 1 || w.max_word_chars < 0)
        mn_fatal("mn_wordpiece_opts: strip_accents must be -1, 0 or 1 and max_word_chars >= 0 (got %d, %d)",
                 w.strip_accents, w.max_word_chars);
    return (mn__basic_opts){
        .lowercase = w.lowercase,
        /* Hugging Face: strip when asked, or by default when lower-casing */
        .strip_accents = w.strip_accents == 1 || (w.strip_accents == 0 && w.lowercase),
        .split_cjk = !w.no_cjk_split,
        .max_word_chars = w.max_word_chars ? w.max_word_chars : 100,
    };
}

/* Lower-cases and/or strips the accents of one whitespace-separated token (as a whole: the
 * final-sigma rule looks at its neighbours), then emits its pieces split at punctuation. word
 * has room for 2 n code points. */
static void finish_token(const mn__basic_opts *o, const uint32_t *tok, size_t n, uint32_t *word, mn__word_fn fn,
                         void *user) {
    const uint32_t *w = tok;
    size_t m = n;
    if (o->lowercase) m = mn__uni_lower(tok, n, word), w = word;
    uint32_t *nfd = NULL;
    if (o->strip_accents) { /* NFD, then the non-spacing marks dropped */
        size_t k, kept = 0;
        nfd = mn__uni_normalize(w, m, false, &k);
        for (size_t i = 0; i < k; i++)
            if (!mn__uni_is_mark(nfd[i])) nfd[kept++] = nfd[i];
        w = nfd, m = kept;
    }
    size_t start = 0;
    for (size_t i = 0; i < m; i++) {
        if (!mn__uni_is_punct(w[i])) continue;
        if (i > start) fn(user, w + start, i - start);
        fn(user, w + i, 1);
        start = i + 1;
    }
    if (m > start) fn(user, w + start, m - start);
    free(nfd);
}

void mn__basic_tokenize(const mn__basic_opts *o, const char *text, size_t len, mn__word_fn fn, void *user) {
    /* cleaned code points: CJK characters may add two spaces each */
    uint32_t *cps = mn__xmalloc(sizeof *cps * (3 * len + 1), "tokenizer buffer");
    const unsigned char *u = (const unsigned char *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)mn__utf8_decode(u + i, len - i, &cp);
        if (cp == 0 || cp == MN_UNI_REPLACEMENT || mn__uni_is_control(cp)) continue;
        if (mn__uni_is_whitespace(cp)) {
            cps[n++] = ' ';
        } else if (o->split_cjk && mn__uni_is_cjk(cp)) {
            cps[n++] = ' ';
            cps[n++] = cp;
            cps[n++] = ' ';
        } else {
            cps[n++] = cp;
        }
    }
    size_t m;
    uint32_t *nfc = mn__uni_normalize(cps, n, true, &m);
    free(cps);
    cps = nfc, n = m;
    uint32_t *word = mn__xmalloc(sizeof *word * (2 * n + 1), "tokenizer buffer");
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && cps[i] != ' ' && !mn__uni_is_split_space(cps[i])) continue;
        if (i > start) finish_token(o, cps + start, i - start, word, fn, user);
        start = i + 1;
    }
    free(word);
    free(cps);
}
