/* bench/meta_train's choice of the weights it keeps (optimizer_best.safetensors), run as a user runs it on
 * the quadratic family (no data files needed): the run advances one iteration at a time through --resume
 * (exact), a copy of the weights is taken after each, and at the end the kept weights must be the copy of
 * the iteration whose validation was lowest by the chosen measure — the final loss with --select-final,
 * the area under the log-loss curve without — as the metrics log records them. A large meta learning rate
 * makes the validation move about, so that (on this development machine) the two measures pick different
 * iterations and the test tells them apart. The program is found next
 * to this test (build/CFG/tests -> build/CFG/bench); skipped when it is not built. */
#include "testutil.h"

#include "data/data.h"
#include "lopt/lopt.h"
#include "meta/meta.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { ITERATIONS = 6 };

static char program[PATH_MAX + 32]; /* build/CFG/bench/meta_train */
static char work_dir[] = "/tmp/test_meta_train_cli_XXXXXX";

static int setup(void **state) {
    (void)state;
    char build[PATH_MAX];
    if (!tu_build_dir(build, sizeof build)) return -1;
    snprintf(program, sizeof program, "%s/bench/meta_train", build);
    return mkdtemp(work_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tu_remove_tree(work_dir);
}

static void run(const char *cmd) {
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("failed: %s", cmd);
}

static char *slurp(const char *path, size_t *size) {
    mn_err err;
    char *data = mn_read_file(path, size, 0, &err);
    if (!data) fail_msg("%s", err.msg);
    return data;
}

/* The iteration (1..ITERATIONS) of the lowest `key` in dir/metrics.jsonl, or 0 when iteration 0 (the
 * initial weights) is lowest. */
static int best_iteration(const char *dir, const char *key, double *values) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t size;
    char *text = slurp(path, &size);
    int best = -1, seen = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *v = o ? json_object_get(o, key) : NULL;
        if (v) {
            int it = (int)json_integer_value(json_object_get(o, "iteration"));
            assert_true(it >= 0 && it <= ITERATIONS);
            values[it] = json_number_value(v);
            seen++;
            if (best < 0 || values[it] < values[best]) best = it;
        }
        json_decref(o);
    }
    free(text);
    assert_int_equal(seen, ITERATIONS + 1); /* one validation per iteration, and one before */
    return best;
}

/* Runs meta_train to ITERATIONS one at a time; returns the iteration whose copy equals the kept weights (0:
 * none of them, i.e. the initial weights). */
static int kept_iteration(const char *name, const char *extra) {
    char dir[PATH_MAX], cmd[8 * PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", work_dir, name);
    for (int it = 1; it <= ITERATIONS; it++) {
        snprintf(cmd, sizeof cmd,
                 "OMP_WAIT_POLICY=passive '%s' --optimizer mnemosyne-t --family quadratic --iterations %d "
                 "--val-tasks 2 --val-steps 30 --val-every 1 --checkpoint-every 1 --meta-lr 1 --seed 1 --threads 1 %s "
                 "--out '%s' %s >> '%s.log' 2>&1 && cp '%s/optimizer.safetensors' '%s/weights_%d.safetensors'",
                 program, it, extra, dir, it > 1 ? "--resume" : "", dir, dir, dir, it);
        run(cmd);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/optimizer_best.safetensors", dir);
    size_t best_size;
    char *best = slurp(path, &best_size);
    int kept = 0, matches = 0;
    for (int it = 1; it <= ITERATIONS; it++) {
        snprintf(path, sizeof path, "%s/weights_%d.safetensors", dir, it);
        size_t size;
        char *w = slurp(path, &size);
        if (size == best_size && !memcmp(w, best, size)) kept = it, matches++;
        free(w);
    }
    free(best);
    assert_true(matches <= 1); /* every iteration changes the weights */
    return kept;
}

static void kept_weights_follow_the_chosen_validation_measure(void **state) {
    (void)state;
    if (access(program, X_OK) != 0) skip();
    double final[ITERATIONS + 1], area[ITERATIONS + 1], other[ITERATIONS + 1];
    char dir[PATH_MAX];

    int kept = kept_iteration("final", "--select-final");
    snprintf(dir, sizeof dir, "%s/final", work_dir);
    int by_final = best_iteration(dir, "val_final_log_loss", final), by_area = best_iteration(dir, "val_log_loss", area);
    print_message("--select-final: kept iteration %d; lowest final loss at %d, lowest area at %d\n", kept, by_final,
                  by_area);
    assert_int_equal(kept, by_final);

    kept = kept_iteration("area", "");
    snprintf(dir, sizeof dir, "%s/area", work_dir);
    by_area = best_iteration(dir, "val_log_loss", other);
    print_message("default: kept iteration %d; lowest area at %d\n", kept, by_area);
    assert_int_equal(kept, by_area);
    /* the two runs are the same run (the flag only changes which weights are kept) */
    for (int it = 0; it <= ITERATIONS; it++) assert_true(other[it] == area[it]);
    /* the final loss is the log of the last 5% of the steps (one step of 30) and the area the mean log
     * over all 30, so the two measures differ */
    for (int it = 0; it <= ITERATIONS; it++) assert_true(final[it] != area[it]);
}

/* PES through the program: 4 iterations straight on one thread equal 2, then 2 more resumed, on two task
 * threads (byte for byte: the same weights file); unknown estimators and tbptt-only flags are refused. */
static void pes_resumes_exactly_and_ignores_the_thread_count(void **state) {
    (void)state;
    if (access(program, X_OK) != 0) skip();
    char cmd[8 * PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32];
    const char *common = "--optimizer lstm --family quadratic --estimator pes --pairs 2 --sigma 0.02 --horizon "
                         "log-uniform --horizon-min 10 --horizon-max 60 --unroll 5 --val-tasks 0 --seed 3 --threads 1";
    snprintf(cmd, sizeof cmd, "'%s' %s --iterations 4 --out '%s/pes_a' > '%s/pes_a.log' 2>&1", program, common,
             work_dir, work_dir);
    run(cmd);
    snprintf(cmd, sizeof cmd, "'%s' %s --iterations 2 --out '%s/pes_b' > '%s/pes_b.log' 2>&1", program, common,
             work_dir, work_dir);
    run(cmd);
    snprintf(cmd, sizeof cmd, "'%s' %s --iterations 4 --task-threads 2 --resume --out '%s/pes_b' >> '%s/pes_b.log' 2>&1",
             program, common, work_dir, work_dir);
    run(cmd);
    snprintf(a, sizeof a, "%s/pes_a/optimizer.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/pes_b/optimizer.safetensors", work_dir);
    size_t na, nb;
    char *wa = slurp(a, &na), *wb = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(wa, wb, na);
    free(wa), free(wb);
    const char *bad[2] = {"--estimator sgd", "--estimator pes --second-order"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "'%s' --family quadratic %s --out '%s/bad' > /dev/null 2>&1", program, bad[k],
                 work_dir);
        int st = system(cmd);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    }
}

/* Several processes: mpirun -np 2 gives the weights of one process byte for byte, for truncated backprop
 * (second order, two task threads per rank) and PES, and a PES run checkpointed under two ranks resumes
 * exactly under two ranks and under one. Skipped without MPI in the build or mpirun, and under
 * AddressSanitizer (OpenMPI's own start-up allocations are reported as leaks). */
static bool same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

static void mpi_ranks_give_the_weights_of_one_process(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#endif
    if (access(program, X_OK) != 0 || !mn_meta_mpi_available() || system("command -v mpirun > /dev/null 2>&1") != 0)
        skip();
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0), setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    const char *mpirun = "timeout 300 mpirun -np 2 --oversubscribe";
    const char *runs[2][2] = {
        {"tbptt", "--optimizer mnemosyne-c --family quadratic --unroll 4 --horizon-min 8 --horizon-max 20 "
                  "--second-order --iterations 3"},
        {"pes", "--optimizer lstm --family quadratic --estimator pes --pairs 2 --unroll 5 --horizon log-uniform "
                "--horizon-min 10 --horizon-max 30 --iterations 4"}};
    char cmd[8 * PATH_MAX], a[PATH_MAX + 64], b[PATH_MAX + 64];
    for (int k = 0; k < 2; k++) {
        const char *common = "--val-tasks 0 --seed 3 --threads 1 --tasks 3";
        snprintf(cmd, sizeof cmd, "'%s' %s %s --out '%s/mpi_%s_1' > '%s/mpi_%s_1.log' 2>&1", program, runs[k][1], common,
                 work_dir, runs[k][0], work_dir, runs[k][0]);
        run(cmd);
        snprintf(cmd, sizeof cmd, "%s '%s' %s %s --task-threads 2 --out '%s/mpi_%s_2' > '%s/mpi_%s_2.log' 2>&1", mpirun,
                 program, runs[k][1], common, work_dir, runs[k][0], work_dir, runs[k][0]);
        run(cmd);
        snprintf(a, sizeof a, "%s/mpi_%s_1/optimizer.safetensors", work_dir, runs[k][0]);
        snprintf(b, sizeof b, "%s/mpi_%s_2/optimizer.safetensors", work_dir, runs[k][0]);
        assert_true(same_file(a, b));
        print_message("%s: 1 process and 2 ranks: the same weights\n", runs[k][0]);
    }
    /* PES: 2 iterations on 2 ranks, then the rest on 2 ranks and (another copy) on 1 */
    const char *pes = "--optimizer lstm --family quadratic --estimator pes --pairs 2 --unroll 5 --horizon log-uniform "
                      "--horizon-min 10 --horizon-max 30 --val-tasks 0 --seed 3 --threads 1 --tasks 3";
    for (int ranks = 1; ranks <= 2; ranks++) {
        snprintf(cmd, sizeof cmd, "%s '%s' %s --iterations 2 --out '%s/mpi_resume_%d' > '%s/mpi_resume_%d.log' 2>&1",
                 mpirun, program, pes, work_dir, ranks, work_dir, ranks);
        run(cmd);
        snprintf(cmd, sizeof cmd, "%s '%s' %s --iterations 4 --resume --out '%s/mpi_resume_%d' >> '%s/mpi_resume_%d.log' 2>&1",
                 ranks == 2 ? mpirun : "", program, pes, work_dir, ranks, work_dir, ranks);
        run(cmd);
        snprintf(a, sizeof a, "%s/mpi_pes_1/optimizer.safetensors", work_dir);
        snprintf(b, sizeof b, "%s/mpi_resume_%d/optimizer.safetensors", work_dir, ranks);
        assert_true(same_file(a, b));
        print_message("pes: checkpointed on 2 ranks, resumed on %d: the same weights\n", ranks);
    }
}

/* The example that defines its own ViT task family and meta-trains Mnemosyne-T on it runs, saves weights that
 * load and differ from the built-in ones, and reports both comparison losses. Skipped without Fashion-MNIST. */
static void the_own_task_example_meta_trains_mnemosyne_t(void **state) {
    (void)state;
    char example[PATH_MAX + 64], cmd[8 * PATH_MAX], ckpt[PATH_MAX + 64], log[PATH_MAX + 64];
    snprintf(example, sizeof example, "%.*s/examples/meta_train_vit", (int)(strlen(program) - strlen("/bench/meta_train")),
             program);
    if (access(example, X_OK) != 0 || access(MN_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) skip();
    snprintf(ckpt, sizeof ckpt, "%s/own.safetensors", work_dir);
    snprintf(log, sizeof log, "%s/own.log", work_dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' --iterations 2 --tasks 1 --pairs 1 --unroll 5 --eval-steps 20 --task-threads 1 --out '%s' "
             "> '%s' 2>&1",
             work_dir, example, ckpt, log);
    run(cmd);
    size_t size;
    char *text = slurp(log, &size);
    assert_non_null(strstr(text, "iteration 2/2"));
    assert_non_null(strstr(text, "final train loss"));
    free(text);
    mn_err err;
    mn_lopt *trained = mn_lopt_load(ckpt, &err), *builtin = mn_lopt_pretrained(MN_LOPT_MNEMOSYNE_T, &err);
    assert_non_null(trained);
    assert_non_null(builtin);
    int64_t n = mn_lopt_weight_count(trained);
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    mn_lopt_get_flat(trained, a);
    mn_lopt_get_flat(builtin, b);
    assert_true(memcmp(a, b, sizeof(float) * (size_t)n) != 0);
    free(a), free(b);
    mn_lopt_free(trained), mn_lopt_free(builtin);
}

/* --init builtin starts from the weights built into the library: the same run as --init with a file
 * holding them (byte for byte); builtin:KIND of another kind than --optimizer is refused. */
static void init_builtin_is_the_shipped_weights(void **state) {
    (void)state;
    if (access(program, X_OK) != 0) skip();
    mn_err err;
    mn_lopt *o = mn_lopt_pretrained(MN_LOPT_MNEMOSYNE_T, &err);
    if (!o) fail_msg("%s", err.msg);
    char file[PATH_MAX], cmd[8 * PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/shipped_t.safetensors", work_dir);
    assert_true(mn_lopt_save(o, file, &err));
    mn_lopt_free(o);
    const char *inits[2] = {"builtin", file};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "OMP_WAIT_POLICY=passive '%s' --optimizer mnemosyne-t --family quadratic --iterations 2 --val-tasks 0 "
                 "--checkpoint-every 1 --seed 3 --threads 1 --init '%s' --out '%s/init_%d' > '%s/init_%d.log' 2>&1",
                 program, inits[i], work_dir, i, work_dir, i);
        run(cmd);
    }
    snprintf(a, sizeof a, "%s/init_0/optimizer.safetensors", work_dir);
    snprintf(b, sizeof b, "%s/init_1/optimizer.safetensors", work_dir);
    size_t na, nb;
    char *wa = slurp(a, &na), *wb = slurp(b, &nb);
    assert_true(na == nb && memcmp(wa, wb, na) == 0);
    free(wa), free(wb);
    snprintf(cmd, sizeof cmd, "'%s' --optimizer mnemosyne-t --family quadratic --iterations 1 --init builtin:lstm "
             "--out '%s/init_bad' 2>&1 | grep -q 'builtin:lstm is not the --optimizer mnemosyne-t'", program, work_dir);
    run(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_weights_follow_the_chosen_validation_measure),
        cmocka_unit_test(pes_resumes_exactly_and_ignores_the_thread_count),
        cmocka_unit_test(mpi_ranks_give_the_weights_of_one_process),
        cmocka_unit_test(the_own_task_example_meta_trains_mnemosyne_t),
        cmocka_unit_test(init_builtin_is_the_shipped_weights),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
