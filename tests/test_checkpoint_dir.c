/* Checkpoint directories as one unit (mn_ckpt_dir, tensor.h): what a reader finds after a save that
 * finished, after saves stopped at each point of their sequence (staging left behind, the old
 * directory moved aside but the new one not yet in place), and after a file was changed, truncated
 * or removed; carrying a log over from the previous checkpoint; refusing a directory that holds a
 * subdirectory. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/test_checkpoint_dir_XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(root);
}

static const char *at(char *buf, size_t cap, const char *a, const char *b) {
    snprintf(buf, cap, "%s/%s%s%s", root, a, b ? "/" : "", b ? b : "");
    return buf;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *get(const char *path) {
    mn_err err;
    char *s = mn_read_file(path, NULL, 0, &err);
    if (!s) fail_msg("%s", err.msg);
    return s;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A checkpoint of step `step` in dir with files a (text) and b (text). */
static void save(const char *dir, int64_t step, const char *a, const char *b) {
    mn_ckpt_dir c;
    mn_err err;
    char path[4200];
    if (!mn_ckpt_dir_begin(&c, dir, step, &err)) fail_msg("%s", err.msg);
    assert_true(mn_write_file_atomic(mn_ckpt_dir_file(&c, "a.txt", path, sizeof path), a, strlen(a), &err));
    assert_true(mn_write_file_atomic(mn_ckpt_dir_file(&c, "b.txt", path, sizeof path), b, strlen(b), &err));
    if (!mn_ckpt_dir_commit(&c, &err)) fail_msg("%s", err.msg);
}

static void committed_checkpoint_opens_with_its_step(void **state) {
    (void)state;
    char dir[4200], path[4200], got[4200];
    at(dir, sizeof dir, "ck1", NULL);
    save(dir, 7, "first", "b1");
    save(dir, 8, "second", "b2");
    int64_t step = -1;
    mn_err err;
    if (!mn_ckpt_dir_open(dir, got, sizeof got, &step, &err)) fail_msg("%s", err.msg);
    assert_string_equal(got, dir);
    assert_int_equal(step, 8);
    char *a = get(at(path, sizeof path, "ck1", "a.txt"));
    assert_string_equal(a, "second");
    free(a);
    assert_false(exists(at(path, sizeof path, "ck1.tmp", NULL)));
    assert_false(exists(at(path, sizeof path, "ck1.old", NULL)));
}

static void changed_truncated_or_missing_files_are_refused(void **state) {
    (void)state;
    char dir[4200], path[4200], got[4200];
    mn_err err;
    at(dir, sizeof dir, "ck2", NULL);
    save(dir, 3, "model weights", "state");
    put(at(path, sizeof path, "ck2", "a.txt"), "model weightz"); /* same size, other bytes */
    assert_false(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err));
    if (!strstr(err.msg, "a.txt is") || !strstr(err.msg, "CRC-32")) fail_msg("%s", err.msg);
    put(path, "model"); /* truncated */
    assert_false(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err));
    if (!strstr(err.msg, "a.txt is 5 bytes")) fail_msg("%s", err.msg);
    unlink(path);
    assert_false(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err));
    if (!strstr(err.msg, "lists a.txt, which cannot be read")) fail_msg("%s", err.msg);
    unlink(at(path, sizeof path, "ck2", "manifest.json"));
    assert_false(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err));
    if (!strstr(err.msg, "no manifest.json")) fail_msg("%s", err.msg);
    assert_false(mn_ckpt_dir_open(at(path, sizeof path, "nowhere", NULL), got, sizeof got, NULL, &err));
    if (!strstr(err.msg, "no such checkpoint directory")) fail_msg("%s", err.msg);
}

/* The states a kill can leave, in the order of a save's steps, and what a reader and the next
 * save make of each. */
static void interrupted_saves_leave_a_complete_checkpoint(void **state) {
    (void)state;
    char dir[4200], path[4200], old[4200], got[4200];
    mn_err err;
    int64_t step;
    at(dir, sizeof dir, "ck3", NULL);
    save(dir, 1, "one", "1");
    /* killed while writing the staging directory: DIR is the previous checkpoint */
    mn_ckpt_dir c;
    assert_true(mn_ckpt_dir_begin(&c, dir, 2, &err));
    put(mn_ckpt_dir_file(&c, "a.txt", path, sizeof path), "tw"); /* half written */
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, &step, &err));
    assert_int_equal(step, 1);
    /* the next save removes the leftover staging directory first */
    save(dir, 2, "two", "2");
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, &step, &err));
    assert_int_equal(step, 2);
    /* killed between the renames: DIR.old holds the previous checkpoint, DIR.tmp the new one */
    at(old, sizeof old, "ck3.old", NULL);
    assert_int_equal(rename(dir, old), 0);
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, &step, &err));
    assert_string_equal(got, old);
    assert_int_equal(step, 2);
    /* and a save from there puts DIR back and removes DIR.old */
    save(dir, 3, "three", "3");
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, &step, &err));
    assert_string_equal(got, dir);
    assert_int_equal(step, 3);
    assert_false(exists(old));
}

static void other_files_are_carried_over_and_subdirectories_refused(void **state) {
    (void)state;
    char dir[4200], path[4200], got[4200];
    mn_err err;
    at(dir, sizeof dir, "ck4", NULL);
    save(dir, 1, "one", "1");
    put(at(path, sizeof path, "ck4", "metrics.jsonl"), "{\"step\": 1}\n");
    FILE *log = fopen(path, "a"); /* a log kept open across saves, as the training programs do */
    assert_non_null(log);
    save(dir, 2, "two", "2");
    fputs("{\"step\": 2}\n", log);
    fclose(log);
    char *text = get(at(path, sizeof path, "ck4", "metrics.jsonl"));
    assert_string_equal(text, "{\"step\": 1}\n{\"step\": 2}\n");
    free(text);
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err)); /* (the log, grown, is not in the manifest) */
    assert_int_equal(mkdir(at(path, sizeof path, "ck4", "plots"), 0777), 0);
    mn_ckpt_dir c;
    assert_true(mn_ckpt_dir_begin(&c, dir, 3, &err));
    assert_false(mn_ckpt_dir_commit(&c, &err));
    if (!strstr(err.msg, "'plots', which is not a plain file")) fail_msg("%s", err.msg);
    assert_false(exists(at(path, sizeof path, "ck4.tmp", NULL)));
    assert_true(mn_ckpt_dir_open(dir, got, sizeof got, NULL, &err)); /* the previous one is untouched */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(committed_checkpoint_opens_with_its_step),
        cmocka_unit_test(changed_truncated_or_missing_files_are_refused),
        cmocka_unit_test(interrupted_saves_leave_a_complete_checkpoint),
        cmocka_unit_test(other_files_are_carried_over_and_subdirectories_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
