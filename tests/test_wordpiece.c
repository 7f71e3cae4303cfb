/* WordPiece: tokenisation against hand-worked results of BERT's algorithm
 * (Hugging Face's BasicTokenizer + WordpieceTokenizer), encoding of texts and
 * pairs, decoding, vocabulary validation and the vocabulary builder. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "data/tokenizer_internal.h"
#include "data/unicode.h"

#include <jansson.h>

static const char *const test_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", "world", ",", "!", ".", "'",
    "[", "]", "don", "t", "cafe", "café", "naive", "i", "a", "##a", "你", "好", "αβγ", "привет", "the", "quick",
    "brown", "fox", "«", "»", "—", "$", "5", "##s", "jump", "##ing", "##ed",
};
#define N_TEST_VOCAB (int)(sizeof test_vocab / sizeof test_vocab[0])

static mn_wordpiece *make_tokenizer(const mn_wordpiece_opts *opts) {
    char buf[4096];
    size_t len = 0;
    for (int i = 0; i < N_TEST_VOCAB; i++) len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n", test_vocab[i]);
    mn_err err;
    mn_wordpiece *t = mn_wordpiece_from_memory(buf, len, "test-vocab", opts, &err);
    if (!t) fail_msg("%s", err.msg);
    return t;
}

/* Tokenises text and compares the tokens with a space-separated expectation. */
static void check_tokens(const mn_wordpiece *t, const char *text, const char *expected) {
    int64_t n;
    int32_t *ids = mn_wordpiece_tokenize(t, text, &n);
    char got[4096];
    size_t len = 0;
    got[0] = 0;
    for (int64_t i = 0; i < n; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? " " : "", mn_wordpiece_token(t, ids[i]));
    free(ids);
    if (strcmp(got, expected)) fail_msg("tokenize(\"%s\") = \"%s\", expected \"%s\"", text, got, expected);
}

static void greedy_longest_match_with_continuations(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    check_tokens(t, "unaffable", "un ##aff ##able");
    check_tokens(t, "UNAFFABLE", "un ##aff ##able");
    check_tokens(t, "jumping jumped jumps", "jump ##ing jump ##ed jump ##s");
    check_tokens(t, "foxes", "[UNK]");      /* "fox" matches but "##es" / "##e" do not: whole word unknown */
    check_tokens(t, "unhello", "[UNK]");    /* "##hello" is not a piece */
    check_tokens(t, "the quick brown fox", "the quick brown fox");
    check_tokens(t, "", "");
    check_tokens(t, " \t\n ", "");
    mn_wordpiece_free(t);
}

static void lowercase_accents_and_punctuation(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    check_tokens(t, "Héllo, World!", "hello , world !");
    check_tokens(t, "Café NAÏVE", "cafe naive");
    check_tokens(t, "cafe\xcc\x81", "cafe");             /* decomposed e + U+0301 */
    check_tokens(t, "\xcc\x81hello", "hello");           /* a lone combining mark is dropped */
    check_tokens(t, "\xc4\xb0", "i");                    /* U+0130 -> i + U+0307 -> i */
    check_tokens(t, "ΑΒΓ ПРИВЕТ", "αβγ привет");
    check_tokens(t, "don't", "don ' t");
    check_tokens(t, "hello...world", "hello . . . world");
    check_tokens(t, "«hello»—world", "« hello » — world");
    check_tokens(t, "$5 5$", "$ 5 5 $");
    check_tokens(t, "a\xe2\x82\xac", "[UNK]");           /* the euro sign is a symbol, not punctuation */
    mn_wordpiece_free(t);
}

static void cased_options_keep_case_and_compose(void **state) {
    (void)state;
    mn_wordpiece *cased = make_tokenizer(&(mn_wordpiece_opts){.lowercase = false});
    check_tokens(cased, "Héllo hello", "[UNK] hello");
    check_tokens(cased, "cafe\xcc\x81", "café");         /* NFC composes e + U+0301 */
    check_tokens(cased, "café", "café");
    check_tokens(cased, "\xcc\x81hello", "[UNK]");
    check_tokens(cased, "\xc4\xb0", "[UNK]");
    mn_wordpiece_free(cased);
    mn_wordpiece *strip = make_tokenizer(&(mn_wordpiece_opts){.lowercase = false, .strip_accents = 1});
    check_tokens(strip, "café Café", "cafe [UNK]");
    mn_wordpiece_free(strip);
    /* lower-casing without accent stripping keeps the combining dot of U+0130 */
    mn_wordpiece *keep = make_tokenizer(&(mn_wordpiece_opts){.lowercase = true, .strip_accents = -1});
    check_tokens(keep, "\xc4\xb0", "[UNK]");
    check_tokens(keep, "CAFÉ", "café");
    mn_wordpiece_free(keep);
}

static void word_length_limit_counts_characters(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    char word[512];
    memset(word, 'a', 101);
    word[101] = 0;
    check_tokens(t, word, "[UNK]");
    char text[600];
    snprintf(text, sizeof text, "hello %s world", word);
    check_tokens(t, text, "hello [UNK] world");
    word[100] = 0; /* exactly 100 characters: a ##a ##a ... */
    int64_t n;
    int32_t *ids = mn_wordpiece_tokenize(t, word, &n);
    assert_int_equal(n, 100);
    assert_string_equal(mn_wordpiece_token(t, ids[0]), "a");
    assert_string_equal(mn_wordpiece_token(t, ids[99]), "##a");
    free(ids);
    /* 100 accented letters are 200 bytes but 100 characters after stripping */
    size_t len = 0;
    for (int i = 0; i < 100; i++) len += (size_t)snprintf(word + len, sizeof word - len, "\xc3\xa1");
    ids = mn_wordpiece_tokenize(t, word, &n);
    assert_int_equal(n, 100);
    free(ids);
    mn_wordpiece_free(t);
    mn_wordpiece *short_words = make_tokenizer(&(mn_wordpiece_opts){.lowercase = true, .max_word_chars = 5});
    check_tokens(short_words, "hello unaffable", "hello [UNK]");
    mn_wordpiece_free(short_words);
}

static void chinese_characters_are_split(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    check_tokens(t, "你好世界", "你 好 [UNK] [UNK]");
    check_tokens(t, "hello你好", "hello 你 好");
    mn_wordpiece_free(t);
    mn_wordpiece *whole = make_tokenizer(&(mn_wordpiece_opts){.lowercase = true, .no_cjk_split = true});
    check_tokens(whole, "你好", "[UNK]"); /* one word: "你" then "##好" is missing */
    mn_wordpiece_free(whole);
}

static void special_tokens_are_never_split(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    check_tokens(t, "hello [MASK] world", "hello [MASK] world");
    check_tokens(t, "hello[MASK]world", "hello [MASK] world");
    check_tokens(t, "[CLS][SEP]", "[CLS] [SEP]");
    check_tokens(t, "[mask]", "[ [UNK] ]"); /* not the special token: lower-case text */
    check_tokens(t, "[MASK", "[ [UNK]");
    mn_wordpiece_free(t);
}

static void whitespace_and_control_characters(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    check_tokens(t, "  hello\t\tworld\n\n hello  \r\n", "hello world hello");
    /* no-break space, ideographic space, line separator */
    check_tokens(t, "hello\xc2\xa0world\xe3\x80\x80hello\xe2\x80\xa8world", "hello world hello world");
    check_tokens(t, "hel\x01lo", "hello");
    check_tokens(t, "hel\x7flo", "hello");
    check_tokens(t, "hel\xe2\x80\x8blo", "hello");      /* zero-width space (Cf) */
    check_tokens(t, "hel\xef\xbf\xbdlo", "hello");      /* U+FFFD */
    check_tokens(t, "hel\xfflo", "hello");              /* an invalid byte counts as U+FFFD */
    check_tokens(t, "hello\xc2\x85world", "[UNK]");     /* U+0085 is a control character, not a space */
    check_tokens(t, "\x01\x02\x03", "");
    mn_wordpiece_free(t);
}

/* ---- encoding and decoding ------------------------------------------------------------------------------ */

static void expect_encoding(const mn_wordpiece *t, const char *a, const char *b, int64_t max_len, const char *tokens,
                            const int *types, const int *mask, int64_t used) {
    int32_t ids[64], tt[64], am[64];
    int64_t got = mn_wordpiece_encode(t, a, b, max_len, ids, tt, am);
    assert_int_equal(got, used);
    char s[1024];
    size_t len = 0;
    for (int64_t i = 0; i < max_len; i++)
        len += (size_t)snprintf(s + len, sizeof s - len, "%s%s", i ? " " : "", mn_wordpiece_token(t, ids[i]));
    if (strcmp(s, tokens)) fail_msg("encode gave \"%s\", expected \"%s\"", s, tokens);
    for (int64_t i = 0; i < max_len; i++) {
        assert_int_equal(tt[i], types[i]);
        assert_int_equal(am[i], mask[i]);
    }
}

static void encode_single_and_pairs_with_truncation_and_padding(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    expect_encoding(t, "hello world", NULL, 6, "[CLS] hello world [SEP] [PAD] [PAD]", (int[]){0, 0, 0, 0, 0, 0},
                    (int[]){1, 1, 1, 1, 0, 0}, 4);
    expect_encoding(t, "the quick brown fox hello", NULL, 4, "[CLS] the quick [SEP]", (int[]){0, 0, 0, 0},
                    (int[]){1, 1, 1, 1}, 4);
    expect_encoding(t, "hello", "world", 7, "[CLS] hello [SEP] world [SEP] [PAD] [PAD]", (int[]){0, 0, 0, 1, 1, 0, 0},
                    (int[]){1, 1, 1, 1, 1, 0, 0}, 5);
    /* 5 + 3 tokens into 8 - 3 = 5: remove from the longer (a, a), then on a tie from b */
    expect_encoding(t, "the quick brown fox hello", "hello world !", 8,
                    "[CLS] the quick brown [SEP] hello world [SEP]", (int[]){0, 0, 0, 0, 0, 1, 1, 1},
                    (int[]){1, 1, 1, 1, 1, 1, 1, 1}, 8);
    /* 3 + 3 into 4: the tie removes from b first, then a is longer */
    expect_encoding(t, "the quick brown", "hello world !", 7, "[CLS] the quick [SEP] hello world [SEP]",
                    (int[]){0, 0, 0, 0, 1, 1, 1}, (int[]){1, 1, 1, 1, 1, 1, 1}, 7);
    expect_encoding(t, "", "", 4, "[CLS] [SEP] [SEP] [PAD]", (int[]){0, 0, 1, 0}, (int[]){1, 1, 1, 0}, 3);

    mn_scope sc = mn_scope_begin();
    const char *texts[] = {"unaffable", "hello world"};
    mn_encoding e = mn_wordpiece_encode_batch(t, 2, texts, NULL, 6);
    assert_true(e.input_ids->shape[0] == 2 && e.input_ids->shape[1] == 6);
    const int32_t *row0 = mn_idata(e.input_ids);
    assert_int_equal(row0[1], mn_wordpiece_id(t, "un"));
    assert_int_equal(row0[4], mn_wordpiece_id(t, "[SEP]"));
    assert_int_equal(row0[5], mn_wordpiece_id(t, "[PAD]"));
    assert_int_equal(mn_idata(e.attention_mask)[6 + 4], 0);
    assert_int_equal(mn_idata(e.attention_mask)[6 + 3], 1);
    EXPECT_MN_ERROR(mn_wordpiece_encode_batch(t, 1, texts, texts, 2), "max_len");
    mn_scope_end(sc);
    mn_wordpiece_free(t);
}

static void decode_glues_continuations(void **state) {
    (void)state;
    mn_wordpiece *t = make_tokenizer(NULL);
    const char *toks[] = {"[CLS]", "un", "##aff", "##able", ",", "world", "[SEP]", "[PAD]"};
    int32_t ids[8];
    for (int i = 0; i < 8; i++) ids[i] = mn_wordpiece_id(t, toks[i]);
    char *s = mn_wordpiece_decode(t, ids, 8, true);
    assert_string_equal(s, "unaffable , world");
    free(s);
    s = mn_wordpiece_decode(t, ids, 8, false);
    assert_string_equal(s, "[CLS] unaffable , world [SEP] [PAD]");
    free(s);
    s = mn_wordpiece_decode(t, ids + 2, 2, false);
    assert_string_equal(s, "##affable"); /* a leading continuation keeps its ## */
    free(s);
    assert_null(mn_wordpiece_token(t, -1));
    assert_null(mn_wordpiece_token(t, N_TEST_VOCAB));
    assert_int_equal(mn_wordpiece_id(t, "nope"), -1);
    assert_int_equal(mn_wordpiece_vocab_size(t), N_TEST_VOCAB);
    assert_true(mn_wordpiece_is_special(t, mn_wordpiece_id(t, "[MASK]")));
    assert_false(mn_wordpiece_is_special(t, mn_wordpiece_id(t, "hello")));
    mn_wordpiece_free(t);
}

/* ---- vocabulary files ------------------------------------------------------------------------------------ */

#define SPECIALS "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"

static void expect_vocab_error(const char *text, const char *needle) {
    mn_err err;
    mn_wordpiece *t = mn_wordpiece_from_memory(text, strlen(text), "v.txt", NULL, &err);
    if (t) fail_msg("vocabulary \"%s\" loaded, expected an error mentioning \"%s\"", text, needle);
    if (!strstr(err.msg, needle)) fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void vocab_validation_reports_lines(void **state) {
    (void)state;
    expect_vocab_error(SPECIALS "a\n\nb\n", "v.txt:7: empty line");
    expect_vocab_error(SPECIALS "a\nb\na\n", "v.txt:8: duplicate token \"a\" (first on line 6)");
    expect_vocab_error(SPECIALS "ab\xff" "c\n", "v.txt:6: invalid UTF-8 at byte 3");
    expect_vocab_error(SPECIALS "ab\xc3\n", "v.txt:6: invalid UTF-8 at byte 3");
    expect_vocab_error("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\n", "lacks the special token [MASK]");
    expect_vocab_error("", "empty");
    mn_err err;
    const char *ok = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello\r\n\n\n";
    mn_wordpiece *t = mn_wordpiece_from_memory(ok, strlen(ok), "crlf", NULL, &err);
    if (!t) fail_msg("%s", err.msg);
    assert_int_equal(mn_wordpiece_vocab_size(t), 6);
    assert_int_equal(mn_wordpiece_id(t, "[PAD]"), 0);
    assert_int_equal(mn_wordpiece_id(t, "hello"), 5);
    mn_wordpiece_free(t);
    assert_null(mn_wordpiece_load("/nonexistent/vocab.txt", NULL, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/vocab.txt"));
}

static void vocab_builder_covers_the_corpus(void **state) {
    (void)state;
    char dir[] = "/tmp/mnemo_test_vocab_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    snprintf(path2, sizeof path2, "%s/again.txt", dir);
    const char *corpus[] = {
        "The quick brown fox jumps over the lazy dog.",
        "The dog sleeps; the fox runs!",
        "Café au lait, s'il vous plaît.",
        "你好，世界",
        "the the the the the",
        "jumping jumped jumps",
    };
    mn_err err;
    mn_vocab_build_opts o = {.vocab_size = 80};
    if (!mn_wordpiece_build_vocab(6, corpus, NULL, &o, path, &err)) fail_msg("%s", err.msg);
    if (!mn_wordpiece_build_vocab(6, corpus, NULL, &o, path2, &err)) fail_msg("%s", err.msg);
    size_t n1, n2;
    char *v1 = mn_read_file(path, &n1, 0, NULL), *v2 = mn_read_file(path2, &n2, 0, NULL);
    assert_int_equal(n1, n2);
    assert_memory_equal(v1, v2, n1); /* deterministic */
    free(v1);
    free(v2);
    mn_wordpiece *t = mn_wordpiece_load(path, NULL, &err);
    if (!t) fail_msg("%s", err.msg);
    const char *specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) assert_string_equal(mn_wordpiece_token(t, i), specials[i]);
    assert_true(mn_wordpiece_vocab_size(t) <= 80);
    /* every character, as a word start and as a continuation where it occurs so */
    const char *chars[] = {"t", "##h", "##e", "q", "c", "##a", "##f", "##i", "你", "好",
                           "，", "世", "界", ".", ";", "!", "'", "s", "p", "##z"};
    for (size_t i = 0; i < sizeof chars / sizeof chars[0]; i++)
        if (mn_wordpiece_id(t, chars[i]) < 0) fail_msg("built vocabulary lacks \"%s\"", chars[i]);
    assert_int_equal(mn_wordpiece_id(t, "##é"), -1); /* accents are stripped before counting */
    assert_int_equal(mn_wordpiece_id(t, "##î"), -1);
    print_message("built vocabulary: %d entries\n", mn_wordpiece_vocab_size(t));
    assert_true(mn_wordpiece_id(t, "the") >= 5);   /* the most frequent word is whole */
    int64_t n;
    int32_t *ids = mn_wordpiece_tokenize(t, "the", &n);
    assert_int_equal(n, 1);
    free(ids);
    /* the corpus needs no [UNK], and decoding gives back the basic-tokenised words */
    const char *words[] = {
        "the quick brown fox jumps over the lazy dog .",
        "the dog sleeps ; the fox runs !",
        "cafe au lait , s ' il vous plait .",
        "你 好 ， 世 界",
        "the the the the the",
        "jumping jumped jumps",
    };
    for (int i = 0; i < 6; i++) {
        ids = mn_wordpiece_tokenize(t, corpus[i], &n);
        for (int64_t k = 0; k < n; k++)
            if (ids[k] == 1) fail_msg("\"%s\" tokenises with [UNK]", corpus[i]);
        char *s = mn_wordpiece_decode(t, ids, n, false);
        assert_string_equal(s, words[i]);
        free(s);
        free(ids);
    }
    mn_wordpiece_free(t);
    /* written atomically: no temporary file is left next to it */
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    assert_int_equal(files, 2);
    /* a target below the characters' count still gives a complete vocabulary: no pieces, no [UNK] */
    o.vocab_size = 10;
    if (!mn_wordpiece_build_vocab(6, corpus, NULL, &o, path2, &err)) fail_msg("%s", err.msg);
    t = mn_wordpiece_load(path2, NULL, &err);
    if (!t) fail_msg("%s", err.msg);
    assert_true(mn_wordpiece_vocab_size(t) > 10);
    assert_int_equal(mn_wordpiece_id(t, "the"), -1);
    ids = mn_wordpiece_tokenize(t, corpus[2], &n);
    for (int64_t k = 0; k < n; k++) assert_true(ids[k] != 1);
    char *s = mn_wordpiece_decode(t, ids, n, false);
    assert_string_equal(s, words[2]);
    free(s);
    free(ids);
    mn_wordpiece_free(t);
    remove(path);
    remove(path2);
    rmdir(dir);
    /* an unwritable place gives an error naming the path */
    snprintf(path, sizeof path, "/nonexistent-dir/vocab.txt");
    assert_false(mn_wordpiece_build_vocab(6, corpus, NULL, &o, path, &err));
    assert_non_null(strstr(err.msg, "/nonexistent-dir/vocab.txt"));
}

/* ---- BasicTokenizer against the stdlib-Python reference (tests/golden/make_basic_tokenizer.py) ---- */

typedef struct {
    char out[8192];
    size_t len;
    int count;
} token_list;

static void collect_token(void *user, const uint32_t *cps, size_t n) {
    token_list *t = user;
    if (t->count++) t->out[t->len++] = '|';
    for (size_t i = 0; i < n && t->len + 5 < sizeof t->out; i++) t->len += (size_t)mn__utf8_encode(cps[i], t->out + t->len);
    t->out[t->len] = 0;
}

static void basic_tokenizer_matches_the_python_reference(void **state) {
    (void)state;
    json_error_t jerr;
    json_t *root = json_load_file("tests/golden/basic_tokenizer.json", JSON_ALLOW_NUL, &jerr);
    if (!root) fail_msg("tests/golden/basic_tokenizer.json: %s (line %d)", jerr.text, jerr.line);
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) >= 100);
    int mismatches = 0;
    for (size_t k = 0; k < json_array_size(cases); k++) {
        json_t *c = json_array_get(cases, k), *tokens = json_object_get(c, "tokens");
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t text_len = json_string_length(json_object_get(c, "text"));
        mn_wordpiece_opts opts = mn_wordpiece_uncased();
        opts.lowercase = json_is_true(json_object_get(c, "lowercase"));
        opts.strip_accents = (int)json_integer_value(json_object_get(c, "strip_accents"));
        mn__basic_opts o = mn__basic_opts_resolve(&opts);
        token_list got = {.len = 0};
        mn__basic_tokenize(&o, text, text_len, collect_token, &got);
        token_list want = {.len = 0};
        for (size_t i = 0; i < json_array_size(tokens); i++) {
            const char *tok = json_string_value(json_array_get(tokens, i));
            if (want.count++) want.out[want.len++] = '|';
            want.len += (size_t)snprintf(want.out + want.len, sizeof want.out - want.len, "%s", tok);
        }
        if (strcmp(got.out, want.out)) {
            print_error("case %zu (lowercase %d, strip_accents %d) \"%s\":\n  got  %s\n  want %s\n", k,
                        opts.lowercase, opts.strip_accents, text, got.out, want.out);
            mismatches++;
        }
    }
    json_decref(root);
    assert_int_equal(mismatches, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_longest_match_with_continuations),
        cmocka_unit_test(lowercase_accents_and_punctuation),
        cmocka_unit_test(cased_options_keep_case_and_compose),
        cmocka_unit_test(word_length_limit_counts_characters),
        cmocka_unit_test(chinese_characters_are_split),
        cmocka_unit_test(special_tokens_are_never_split),
        cmocka_unit_test(whitespace_and_control_characters),
        cmocka_unit_test(encode_single_and_pairs_with_truncation_and_padding),
        cmocka_unit_test(decode_glues_continuations),
        cmocka_unit_test(vocab_validation_reports_lines),
        cmocka_unit_test(vocab_builder_covers_the_corpus),
        cmocka_unit_test(basic_tokenizer_matches_the_python_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
