/* The vit_predict program against PyTorch: tests/golden/vit holds a tiny
 * ViTForImageClassification (config.json with id2label cat/dog/bird, model.safetensors,
 * preprocessor_config.json) and image0.png; make_golden.py preprocessed the image as
 * ViTImageProcessor does and stored the logits in expected_predict.safetensors.
 *
 * The program is run as a user would (popen), from the build configuration this test
 * belongs to: build/CFG/tests/test_predict_cli runs build/CFG/examples/vit_predict. Each
 * test is skipped only when that binary has not been built. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char predict_bin[PATH_MAX + 32], golden_dir[PATH_MAX + 32];

/* Paths from /proc/self/exe: build/CFG/tests/X -> build/CFG/examples/vit_predict and the
 * repository's tests/golden/vit (three levels up), so the test works from any directory. */
static void find_paths(void) {
    char build[PATH_MAX];
    assert_true(tu_build_dir(build, sizeof build));
    snprintf(predict_bin, sizeof predict_bin, "%s/examples/vit_predict", build);
    snprintf(golden_dir, sizeof golden_dir, "%s/../../tests/golden/vit", build);
    if (access(golden_dir, R_OK) != 0) snprintf(golden_dir, sizeof golden_dir, "tests/golden/vit");
}

static bool have_binary(void) {
    find_paths();
    return access(predict_bin, X_OK) == 0;
}

typedef struct {
    char out[16384], err[16384];
    int status; /* exit code, or -1 if it did not exit normally */
} run_result;

/* Runs vit_predict with args, capturing stdout and stderr separately. */
static void run_predict(const char *args, run_result *r) {
    char err_path[] = "/tmp/test_predict_cli_XXXXXX";
    int fd = mkstemp(err_path);
    assert_true(fd >= 0);
    close(fd);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", predict_bin, args, err_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen(err_path, "r");
    assert_non_null(e);
    n = fread(r->err, 1, sizeof r->err - 1, e);
    r->err[n] = 0;
    fclose(e);
    unlink(err_path);
}

/* Parses every "logits: v1 v2 ..." line of text into rows of values; returns the number of lines. */
static int parse_logits(const char *text, float values[][8], int max_rows, int *cols) {
    int rows = 0;
    *cols = -1;
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "logits:", 7)) continue;
        assert_true(rows < max_rows);
        const char *at = line + 7;
        int c = 0;
        for (;;) {
            char *end;
            float v = strtof(at, &end);
            if (end == at) break;
            assert_true(c < 8);
            values[rows][c++] = v;
            at = end;
        }
        if (*cols < 0) *cols = c;
        assert_int_equal(c, *cols);
        rows++;
    }
    return rows;
}

/* expected_predict.safetensors' logits [1, 3] */
static void expected_logits(float *out, const char **predicted) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/expected_predict.safetensors", golden_dir);
    mn_err err;
    mn_st_file *f = mn_st_open(path, &err);
    if (!f) fail_msg("%s", err.msg);
    mn_scope sc = mn_scope_begin();
    mn_tensor *t = mn_st_read(f, "logits", &err);
    if (!t) fail_msg("%s", err.msg);
    assert_int_equal(mn_numel(t), 3);
    mn_to_array(t, out);
    mn_scope_end(sc);
    static char label[64];
    const char *meta = mn_st_meta(f, "predicted_label");
    snprintf(label, sizeof label, "%s", meta ? meta : "");
    *predicted = label;
    mn_st_close(f);
}

static void logits_match_pytorch(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char args[3 * PATH_MAX];
    snprintf(args, sizeof args, "--logits --threads 1 --model '%s' '%s/image0.png'", golden_dir, golden_dir);
    run_result r;
    run_predict(args, &r);
    if (r.status != 0) fail_msg("vit_predict exited with %d: %s", r.status, r.err);
    float got[4][8], want[3];
    const char *label;
    int cols, rows = parse_logits(r.out, got, 4, &cols);
    assert_int_equal(rows, 1);
    assert_int_equal(cols, 3);
    expected_logits(want, &label);
    for (int j = 0; j < 3; j++) {
        double rel = fabs((double)got[0][j] - want[j]) / fmax(fabs((double)want[j]), 1e-6);
        if (rel >= 1e-4)
            fail_msg("logit %d: vit_predict %.9g, PyTorch %.9g (relative error %.3g)", j, got[0][j], want[j], rel);
    }
}

static void top_labels_are_softmax_of_the_logits(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char args[3 * PATH_MAX];
    snprintf(args, sizeof args, "--top 2 --model '%s' '%s/image0.png'", golden_dir, golden_dir);
    run_result r;
    run_predict(args, &r);
    if (r.status != 0) fail_msg("vit_predict exited with %d: %s", r.status, r.err);
    float want[3];
    const char *label;
    expected_logits(want, &label);
    double mx = fmax(want[0], fmax(want[1], want[2])), z = 0, p[3];
    for (int j = 0; j < 3; j++) z += exp(want[j] - mx);
    for (int j = 0; j < 3; j++) p[j] = exp(want[j] - mx) / z;
    static const char *const names[3] = {"cat", "dog", "bird"}; /* the golden config's id2label */
    /* two label lines after the image's name, most probable first */
    const char *line = strchr(r.out, '\n');
    assert_non_null(line);
    char name[2][64];
    float prob[2];
    int n = sscanf(line + 1, " %63s %f %63s %f", name[0], &prob[0], name[1], &prob[1]);
    assert_int_equal(n, 4);
    assert_string_equal(name[0], label);
    for (int k = 0; k < 2; k++) {
        int j = !strcmp(name[k], names[0]) ? 0 : !strcmp(name[k], names[1]) ? 1 : !strcmp(name[k], names[2]) ? 2 : -1;
        assert_true(j >= 0);
        assert_true(fabs(prob[k] - p[j]) < 1e-4);
    }
    assert_true(prob[0] >= prob[1]);
    int lines = 0; /* the image's name and exactly --top 2 labels */
    for (const char *c = r.out; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 3);
}

static void unreadable_image_is_named_and_others_still_run(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char args[5 * PATH_MAX];
    /* config.json is not an image; the missing file does not exist */
    snprintf(args, sizeof args, "--logits --model '%s' '%s/image0.png' /nonexistent/dir/missing.png '%s/config.json' "
             "'%s/image0.png'", golden_dir, golden_dir, golden_dir, golden_dir);
    run_result r;
    run_predict(args, &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "missing.png"));
    assert_non_null(strstr(r.err, "config.json"));
    float got[4][8];
    int cols, rows = parse_logits(r.out, got, 4, &cols);
    assert_int_equal(rows, 2); /* the two good images, same numbers */
    for (int j = 0; j < cols; j++) assert_true(got[0][j] == got[1][j]);
}

static void bad_model_directory_is_a_clean_error(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char args[3 * PATH_MAX];
    snprintf(args, sizeof args, "--model /nonexistent/model '%s/image0.png'", golden_dir);
    run_result r;
    run_predict(args, &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "/nonexistent/model"));
    assert_null(strstr(r.out, "logits"));
}

/* A model directory made from the golden one: config.json with one more label when extra_label,
 * model.safetensors without the first tensor of layer 0 when drop_tensor, or with a NaN as its first
 * value when poison. */
static void edited_model(const char *dir, bool extra_label, bool drop_tensor, bool poison) {
    char from[PATH_MAX + 64], to[PATH_MAX + 64];
    mn_err err;
    assert_true(mn_make_dirs(dir, &err));
    const char *files[] = {"config.json", "preprocessor_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof from, "%s/%s", golden_dir, files[i]), snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        size_t n;
        char *data = mn_read_file(from, &n, 0, &err);
        assert_non_null(data);
        if (i == 0 && extra_label) {
            char *at = strstr(data, "\"2\": \"bird\"");
            assert_non_null(at);
            char edited[1 << 16];
            snprintf(edited, sizeof edited, "%.*s\"2\": \"bird\", \"3\": \"fish\"%s", (int)(at - data), data,
                     at + strlen("\"2\": \"bird\""));
            free(data);
            data = strdup(edited), n = strlen(edited);
        }
        assert_true(mn_write_file_atomic(to, data, n, &err));
        free(data);
    }
    if (!drop_tensor && !poison) return;
    mn_st_file *f = mn_st_open(to, &err);
    assert_non_null(f);
    int n = mn_st_count(f), k = 0;
    mn_st_entry *entries = calloc((size_t)n, sizeof *entries);
    bool dropped = false;
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < n; i++) {
        const char *name = mn_st_name(f, i);
        bool first = !dropped && strstr(name, "layer.0.");
        dropped = dropped || first;
        if (first && drop_tensor) continue;
        entries[k].name = name;
        entries[k++].tensor = mn_st_read(f, name, &err);
        if (first && poison) mn_data(entries[k - 1].tensor)[0] = NAN;
    }
    assert_true(dropped);
    snprintf(to, sizeof to, "%s/model.safetensors", dir);
    assert_true(mn_st_write(to, k, entries, 0, NULL, &err));
    mn_scope_end(sc);
    free(entries);
    mn_st_close(f);
}

/* Predictions from randomly initialised weights would mean nothing: a checkpoint lacking a weight,
 * or whose classifier has other rows than id2label names, is refused. */
static void incomplete_checkpoint_is_refused(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char dir[] = "/tmp/test_predict_cli_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (int c = 0; c < 2; c++) {
        char model[PATH_MAX];
        snprintf(model, sizeof model, "%s/%s", dir, c ? "labels" : "dropped");
        edited_model(model, c == 1, c == 0, false);
        char args[3 * PATH_MAX];
        snprintf(args, sizeof args, "--model '%s' '%s/image0.png'", model, golden_dir);
        run_result r;
        run_predict(args, &r);
        if (r.status != 1 || !strstr(r.err, "does not hold every weight"))
            fail_msg("%s: expected a refusal, got status %d:\n%s%s", model, r.status, r.out, r.err);
        assert_null(strstr(r.out, "logits"));
    }
    tu_remove_tree(dir);
}

/* A NaN weight would make every prediction NaN: refused, naming the tensor, unless --allow-nonfinite
 * (then a warning, and the run goes on). */
static void non_finite_weights_are_refused_unless_allowed(void **state) {
    (void)state;
    if (!have_binary()) skip();
    char dir[] = "/tmp/test_predict_cli_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    edited_model(dir, false, false, true);
    char args[3 * PATH_MAX];
    run_result r;
    snprintf(args, sizeof args, "--model '%s' '%s/image0.png'", dir, golden_dir);
    run_predict(args, &r);
    if (r.status != 1 || !strstr(r.err, "layer.0.") || !strstr(r.err, "not finite") || !strstr(r.err, "--allow-nonfinite"))
        fail_msg("expected a refusal naming the tensor, got status %d:\n%s%s", r.status, r.out, r.err);
    snprintf(args, sizeof args, "--allow-nonfinite --logits --model '%s' '%s/image0.png'", dir, golden_dir);
    run_predict(args, &r);
    if (r.status != 0 || !strstr(r.err, "not finite") || !strstr(r.out, "logits"))
        fail_msg("expected a warning and logits, got status %d:\n%s%s", r.status, r.out, r.err);
    tu_remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logits_match_pytorch),
        cmocka_unit_test(top_labels_are_softmax_of_the_logits),
        cmocka_unit_test(unreadable_image_is_named_and_others_still_run),
        cmocka_unit_test(bad_model_directory_is_a_clean_error),
        cmocka_unit_test(incomplete_checkpoint_is_refused),
        cmocka_unit_test(non_finite_weights_are_refused_unless_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
