/* The bert_predict program against PyTorch: runs build/<config>/examples/bert_predict on the
 * golden models' prediction sentences (tests/golden/bert_{cls,mlm}/predict.txt) and compares
 * the printed logits with expected_predict.safetensors (made by tests/golden/make_golden.py);
 * also checks the printed label / top filler and the errors for broken model directories.
 * The program is found next to this test: tests live in build/CFG/tests/, examples in
 * build/CFG/examples/. Skipped when it has not been built. */
#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PATH_CAP = 2 * PATH_MAX }; /* local path buffers: room for a root plus any suffix used here */
static char program[PATH_MAX + 64];     /* build/CFG/examples/bert_predict */
static char golden_root[PATH_MAX + 64]; /* .../tests/golden */

static void dirname_inplace(char *p) {
    char *slash = strrchr(p, '/');
    if (slash) *slash = 0;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void locate(void) {
    char exe[PATH_MAX];
    assert_true(tu_build_dir(exe, sizeof exe));
    snprintf(program, sizeof program, "%s/examples/bert_predict", exe);
    dirname_inplace(exe); /* build */
    dirname_inplace(exe); /* the repository */
    snprintf(golden_root, sizeof golden_root, "%s/tests/golden", exe);
    if (!exists(golden_root)) snprintf(golden_root, sizeof golden_root, "tests/golden"); /* run from the root */
}

/* Appends s to cmd in single quotes for /bin/sh. */
static void append_quoted(char *cmd, size_t cap, const char *s) {
    size_t len = strlen(cmd);
    cmd[len++] = ' ';
    cmd[len++] = '\'';
    for (; *s && len + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(cmd + len, "'\\''", 4);
            len += 4;
        } else {
            cmd[len++] = *s;
        }
    }
    cmd[len++] = '\'';
    cmd[len] = 0;
    assert_true(len + 1 < cap);
}

typedef struct {
    char *out;   /* everything the program printed on stdout and stderr */
    int status;  /* exit status */
} run_result;

/* Runs bert_predict with the given arguments, capturing stdout and stderr. */
static run_result run(int argc, const char *const *argv) {
    static char cmd[1 << 16];
    cmd[0] = 0;
    append_quoted(cmd, sizeof cmd, program);
    for (int i = 0; i < argc; i++) append_quoted(cmd, sizeof cmd, argv[i]);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    int st = pclose(p);
    return (run_result){out, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

static char *read_sentence(const char *model) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s/predict.txt", golden_root, model);
    mn_err err;
    size_t size;
    char *s = mn_read_file(path, &size, 0, &err);
    if (!s) fail_msg("%s", err.msg);
    while (size > 0 && (s[size - 1] == '\n' || s[size - 1] == '\r')) s[--size] = 0;
    return s;
}

/* Parses every "logits: v1 v2 ..." line; returns how many there were, the last one's values in v. */
static int parse_logits(const char *out, float *v, int64_t cap, int64_t *n) {
    int lines = 0;
    for (const char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "logits:", 7)) continue;
        lines++;
        *n = 0;
        const char *p = line + 7;
        for (;;) {
            char *end;
            errno = 0;
            float x = strtof(p, &end);
            if (end == p || errno) break;
            assert_true(*n < cap);
            v[(*n)++] = x;
            p = end;
            if (*p == '\n' || *p == 0) break;
        }
    }
    return lines;
}

/* Largest |got - want| relative to the largest |want| (the golden files' error measure). */
static void check_logits(const char *model, const float *got, int64_t n, const char *meta_key, const char **meta) {
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s/expected_predict.safetensors", golden_root, model);
    mn_err err;
    mn_st_file *f = mn_st_open(path, &err);
    if (!f) fail_msg("%s", err.msg);
    mn_scope sc = mn_scope_begin();
    mn_tensor *want = mn_st_read(f, "logits", &err);
    if (!want) fail_msg("%s", err.msg);
    assert_int_equal(n, mn_numel(want));
    const float *w = mn_data(want);
    double max_abs = 0, max_err = 0;
    for (int64_t i = 0; i < n; i++) {
        max_abs = fmax(max_abs, fabs(w[i]));
        max_err = fmax(max_err, fabs((double)got[i] - w[i]));
    }
    if (!(max_err <= 1e-4 * max_abs))
        fail_msg("%s: logits differ from PyTorch by %.3g (relative %.3g)", model, max_err, max_err / max_abs);
    *meta = strdup(mn_st_meta(f, meta_key));
    mn_scope_end(sc);
    mn_st_close(f);
}

static int setup(void **state) {
    locate();
    return 0;
}

static void skip_if_unbuilt(void) {
    if (access(program, X_OK) != 0) {
        print_message("bert_predict not built at %s: skipping\n", program);
        skip();
    }
}

static void predict_golden(const char *model, const char *meta_key, const char *expect_prefix) {
    skip_if_unbuilt();
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s/%s", golden_root, model);
    char *sentence = read_sentence(model);
    const char *argv[] = {"--logits", "--threads", "1", "--model", dir, sentence};
    run_result r = run(6, argv);
    if (r.status != 0) fail_msg("bert_predict exited with %d:\n%s", r.status, r.out);
    float *v = malloc(sizeof(float) * 4096);
    int64_t n = 0;
    int lines = parse_logits(r.out, v, 4096, &n);
    if (lines != 1) fail_msg("expected exactly one logits line, found %d in:\n%s", lines, r.out);
    const char *meta = NULL;
    check_logits(model, v, n, meta_key, &meta);
    /* the label / best filler PyTorch picked is the one printed */
    char want[256];
    snprintf(want, sizeof want, expect_prefix, meta);
    if (!strstr(r.out, want)) fail_msg("expected \"%s\" in the output:\n%s", want, r.out);
    free((void *)meta);
    free(v);
    free(sentence);
    free(r.out);
}

static void test_classifier_logits_match_pytorch(void **state) {
    predict_golden("bert_cls", "predicted_label", "label: %s (");
}

static void test_masked_lm_mask_logits_match_pytorch(void **state) {
    predict_golden("bert_mlm", "predicted_token", "[MASK] at position 3:  %s (");
}

/* A temporary model directory holding the golden classifier's files, with one file replaced
 * by content (or left out when content is NULL). */
static void make_broken_dir(char *dir, size_t cap, const char *replace, const char *content) {
    snprintf(dir, cap, "/tmp/mn_bert_predict_XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *files[] = {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        char src[PATH_CAP], dst[PATH_CAP];
        snprintf(src, sizeof src, "%s/bert_cls/%s", golden_root, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        mn_err err;
        size_t size;
        char *data = mn_read_file(src, &size, 0, &err);
        if (!data) fail_msg("%s", err.msg);
        bool replaced = !strcmp(files[i], replace);
        if (replaced) free(data), data = content ? strdup(content) : NULL, size = content ? strlen(content) : 0;
        if (data) assert_true(mn_write_file_atomic(dst, data, size, &err));
        free(data);
    }
}

static void remove_dir(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"};
    char p[PATH_CAP];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void expect_error(const char *dir, const char *must_mention) {
    const char *argv[] = {"--model", dir, "hello"};
    run_result r = run(3, argv);
    if (r.status == 0 || r.status > 2) fail_msg("expected a clean error exit (1 or 2), got %d:\n%s", r.status, r.out);
    if (!strstr(r.out, must_mention)) fail_msg("the error does not name \"%s\":\n%s", must_mention, r.out);
    if (strstr(r.out, "logits:") || strstr(r.out, "label:")) fail_msg("predicted despite the error:\n%s", r.out);
    free(r.out);
}

static void test_missing_model_dir_is_a_clean_error(void **state) {
    skip_if_unbuilt();
    expect_error("/nonexistent/model/dir", "/nonexistent/model/dir");
}

static void test_missing_config_is_a_clean_error(void **state) {
    skip_if_unbuilt();
    char dir[64];
    make_broken_dir(dir, sizeof dir, "config.json", NULL);
    expect_error(dir, "config.json");
    remove_dir(dir);
}

static void test_vocab_without_special_tokens_is_a_clean_error(void **state) {
    skip_if_unbuilt();
    char dir[64];
    make_broken_dir(dir, sizeof dir, "vocab.txt", "the\ncat\n");
    expect_error(dir, "vocab.txt");
    remove_dir(dir);
}

static void test_vocab_of_another_size_is_a_clean_error(void **state) {
    skip_if_unbuilt();
    char dir[64];
    make_broken_dir(dir, sizeof dir, "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n");
    expect_error(dir, "vocab_size is 61");
    remove_dir(dir);
}

static void test_truncated_weights_are_a_clean_error(void **state) {
    skip_if_unbuilt();
    char dir[64];
    make_broken_dir(dir, sizeof dir, "model.safetensors", "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":");
    expect_error(dir, "model.safetensors");
    remove_dir(dir);
}

static void test_bad_tokenizer_config_is_a_clean_error(void **state) {
    skip_if_unbuilt();
    char dir[64];
    make_broken_dir(dir, sizeof dir, "tokenizer_config.json", "{\"do_lower_case\": \"yes\"}");
    expect_error(dir, "tokenizer_config.json");
    remove_dir(dir);
}

/* A text that is not UTF-8, given as an argument or on stdin, is an error naming it (the others still
 * run; the exit status says one failed); output that cannot be written (a full disk) is an error. */
static void test_invalid_utf8_and_full_disk_are_errors(void **state) {
    skip_if_unbuilt();
    char model[PATH_CAP], cmd[3 * PATH_CAP];
    snprintf(model, sizeof model, "%s/bert_cls", golden_root);
    run_result r = run(4, (const char *[]){"--model", model, "good text", "bad \xff text"});
    if (r.status != 1 || !strstr(r.out, "text 2: invalid UTF-8 at byte 5") || !strstr(r.out, "text 1:"))
        fail_msg("expected text 1 predicted and text 2 refused, got status %d:\n%s", r.status, r.out);
    free(r.out);
    snprintf(cmd, sizeof cmd, "printf 'ok\\n\\300\\200 overlong\\n' | '%s' --model '%s' - 2>&1", program, model);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1 || !strstr(out, "stdin line 2: invalid UTF-8 at byte 1"))
        fail_msg("stdin: expected line 2 refused, got status %d:\n%s", st, out);
    snprintf(cmd, sizeof cmd, "'%s' --model '%s' hello > /dev/full 2>/dev/null", program, model);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classifier_logits_match_pytorch),
        cmocka_unit_test(test_masked_lm_mask_logits_match_pytorch),
        cmocka_unit_test(test_missing_model_dir_is_a_clean_error),
        cmocka_unit_test(test_missing_config_is_a_clean_error),
        cmocka_unit_test(test_vocab_without_special_tokens_is_a_clean_error),
        cmocka_unit_test(test_vocab_of_another_size_is_a_clean_error),
        cmocka_unit_test(test_truncated_weights_are_a_clean_error),
        cmocka_unit_test(test_bad_tokenizer_config_is_a_clean_error),
        cmocka_unit_test(test_invalid_utf8_and_full_disk_are_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
