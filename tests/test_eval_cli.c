/* bench/eval_optimizers as a user runs it, on a tiny MLP task for a few steps:
 * - with --grid --grid-seeds 1 the learning rate is chosen by seed 0's final train loss and the
 *   chosen rate then runs on every seed, giving exactly the numbers of running that rate alone
 *   (same initialisation and batches for every optimizer);
 * - an mlp task spec without a batch field means batch 128.
 * The program is found next to this test (build/CFG/tests -> build/CFG/bench); the test is
 * skipped when it is not built or Fashion-MNIST is not installed. */
#include "testutil.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FASHION "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

static char program[PATH_MAX + 32]; /* build/CFG/bench/eval_optimizers */
static char work_dir[] = "/tmp/test_eval_cli_XXXXXX";

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int setup(void **state) {
    (void)state;
    char build[PATH_MAX];
    if (!tu_build_dir(build, sizeof build)) return -1;
    snprintf(program, sizeof program, "%s/bench/eval_optimizers", build);
    return mkdtemp(work_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(work_dir);
}

/* Runs eval_optimizers with args, results to work_dir/NAME.json; returns the task's entry (owned by
 * *root). */
static json_t *evaluate(const char *name, const char *task, const char *args, json_t **root) {
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && OMP_WAIT_POLICY=passive '%s' --threads 1 --steps 8 --test-size 200 --tasks %s %s "
             "--out %s --json %s.json > %s.log 2>&1",
             work_dir, program, task, args, name, name, name);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("eval_optimizers failed: %s", cmd);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s.json", work_dir, name);
    json_error_t jerr;
    *root = json_load_file(path, 0, &jerr);
    if (!*root) fail_msg("%s: %s", path, jerr.text);
    json_t *entry = json_object_get(*root, task);
    assert_non_null(entry);
    return entry;
}

static double loss(json_t *opt, int seed) {
    return json_real_value(json_array_get(json_object_get(opt, "final_train_loss"), (size_t)seed));
}

static void grid_rate_is_chosen_on_the_first_seed_then_run_on_all(void **state) {
    (void)state;
    if (!exists(program) || !exists(FASHION)) skip();
    const char *task = "mlp:784-16-10:relu";
    json_t *alone_root, *grid_root;
    json_t *alone = evaluate("alone", task, "--optimizers sgd:0.01,sgd:0.5 --seeds 2", &alone_root);
    json_t *grid = evaluate("grid", task, "--optimizers sgd --grid --grid-sgd 0.01,0.5 --grid-seeds 1 --seeds 2",
                            &grid_root);
    json_t *slow = json_object_get(alone, "sgd:0.01"), *fast = json_object_get(alone, "sgd:0.5");
    json_t *chosen = json_object_get(grid, "sgd");
    assert_non_null(slow);
    assert_non_null(fast);
    assert_non_null(chosen);
    double lr = loss(slow, 0) <= loss(fast, 0) ? 0.01 : 0.5;
    json_t *expect = lr == 0.01 ? slow : fast;
    print_message("seed 0: lr 0.01 -> %.4f, lr 0.5 -> %.4f; grid chose %g\n", loss(slow, 0), loss(fast, 0),
                  json_real_value(json_object_get(chosen, "lr")));
    assert_true(loss(slow, 0) != loss(fast, 0));
    assert_true(json_real_value(json_object_get(chosen, "lr")) == lr);
    assert_int_equal(json_array_size(json_object_get(chosen, "final_train_loss")), 2);
    for (int s = 0; s < 2; s++) assert_true(loss(chosen, s) == loss(expect, s));
    json_decref(alone_root);
    json_decref(grid_root);
}

static void mlp_task_batch_defaults_to_128(void **state) {
    (void)state;
    if (!exists(program) || !exists(FASHION)) skip();
    json_t *a_root, *b_root, *c_root;
    json_t *a = evaluate("nobatch", "mlp:784-16-10:relu", "--optimizers sgd:0.1 --seeds 1", &a_root);
    json_t *b = evaluate("b128", "mlp:784-16-10:relu:b128", "--optimizers sgd:0.1 --seeds 1", &b_root);
    json_t *c = evaluate("b64", "mlp:784-16-10:relu:b64", "--optimizers sgd:0.1 --seeds 1", &c_root);
    double la = loss(json_object_get(a, "sgd:0.1"), 0), lb = loss(json_object_get(b, "sgd:0.1"), 0),
           lc = loss(json_object_get(c, "sgd:0.1"), 0);
    print_message("final train loss: no batch field %.6f, b128 %.6f, b64 %.6f\n", la, lb, lc);
    assert_true(la == lb);
    assert_true(la != lc);
    json_decref(a_root);
    json_decref(b_root);
    json_decref(c_root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grid_rate_is_chosen_on_the_first_seed_then_run_on_all),
        cmocka_unit_test(mlp_task_batch_defaults_to_128),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
