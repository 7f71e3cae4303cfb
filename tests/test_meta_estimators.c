/* The gradient estimators of meta/ on a quadratic task whose whole-run meta-gradient is computed
 * exactly (untruncated second-order backprop over the full horizon): PES over truncated segments and
 * ES over the whole horizon average to it within their standard errors, truncated backprop over the
 * same segments does not (the bias PES removes). Also: task threads give bitwise the same weights as
 * one thread, a PES trainer resumes exactly, and the truncation schedules draw what they say. */
#include "lopt_fixtures.h"

#include <unistd.h>

#include "meta/meta_internal.h"

enum { DIM = 6, SEGMENTS = 4, SEG_STEPS = 5, HORIZON = SEGMENTS * SEG_STEPS, TASK_SEED = 11 };
#define LR_SCALE 0.6f

/* A small LSTM optimizer at a generic point whose steps move the quadratic a lot within the horizon,
 * so where a segment starts depends strongly on the weights (what truncation ignores). */
static mn_lopt *test_optimizer(void) {
    mn_lopt_config cfg = small_config(MN_LOPT_LSTM);
    cfg.lstm_out_scale = 0.3f;
    mn_lopt *o = mn_lopt_new_config(&cfg, 5);
    perturb_weights(o, 77, 0.2f);
    return o;
}

/* g [n] from grads (one tensor per weight tensor) */
static void flatten(const mn_params *w, mn_tensor **grads, double *g) {
    for (int i = 0; i < w->count; i++) {
        mn_tensor *c = mnt_contiguous(grads[i]);
        for (int64_t j = 0; j < mn_numel(c); j++) *g++ = mn_data(c)[j];
    }
}

/* Truncated backprop (second order) over `segments` truncations of `steps` from the task's start: the mean
 * of their meta-gradients, i.e. the exact gradient of the whole-run meta-loss when segments = 1. */
static void tbptt_gradient(const mn_lopt *o, int segments, int steps, double *g, int64_t n) {
    const mn_params *w = mn_lopt_weights(o);
    mn_scope sc = mn_scope_begin();
    mn_task_run *r = mn_task_run_new(mn_meta_quadratic_task(DIM, TASK_SEED), TASK_SEED, o, HORIZON);
    mn_tbptt_opts est = {.unroll = {.steps = steps, .second_order = true, .lr_scale = LR_SCALE}, .clip = 0};
    double *part = calloc((size_t)n, sizeof *part);
    mn_tensor **grads = calloc((size_t)w->count, sizeof *grads);
    for (int64_t i = 0; i < n; i++) g[i] = 0;
    for (int s = 0; s < segments; s++) {
        mn_tbptt_result res;
        assert_true(mn_tbptt_estimate(o, r, &est, grads, &res));
        flatten(w, grads, part);
        for (int64_t i = 0; i < n; i++) g[i] += part[i] / segments;
    }
    assert_int_equal(r->step, (int64_t)segments * steps);
    free(part);
    free(grads);
    mn_task_run_free(r);
    mn_scope_end(sc);
}

typedef struct {
    double mean[3], se[3];
} projections;

/* reps independent estimates of the whole-run gradient (PES: the mean over the SEGMENTS truncations of a
 * slot; ES: one truncation of the whole horizon), projected on the unit directions u[3]. */
static projections estimate_projections(const mn_lopt *o, mn_estimator_kind kind, int reps, int pairs,
                                        double *const *u, int64_t n) {
    mn_meta_family *f = mn_meta_quadratic_family(DIM, DIM);
    mn_estimator_opts eo = {.kind = kind, .unroll = {.steps = SEG_STEPS, .lr_scale = LR_SCALE}, .clip = 0,
                            .sigma = 0.01f, .pairs = pairs};
    mn_meta_estimator e = mn_meta_estimator_make(&eo);
    float *grad = malloc(sizeof(float) * (size_t)n);
    double *est = malloc(sizeof(double) * (size_t)n), sum[3] = {0}, sq[3] = {0};
    int segments = kind == MN_ESTIMATOR_PES ? SEGMENTS : 1;
    for (int rep = 0; rep < reps; rep++) {
        /* the same task (its seed names it: same start and batches), fresh perturbations */
        mn_meta_slot *s = mn_meta_slot_new(&e, o, f, TASK_SEED, HORIZON); /* the family's task = tbptt_gradient's */
        for (int j = 0; j < s->n_runs; j++) assert_int_equal(s->runs[j]->seed, TASK_SEED);
        s->noise = mn_rng_new(1000 + (uint64_t)rep);
        for (int64_t i = 0; i < n; i++) est[i] = 0;
        for (int seg = 0; seg < segments; seg++) {
            mn_meta_estimate res;
            assert_true(e.estimate(&e, o, s, grad, &res));
            assert_int_equal(res.particles, 2 * pairs);
            for (int64_t i = 0; i < n; i++) est[i] += (double)grad[i] / segments;
        }
        assert_int_equal(s->runs[0]->step, HORIZON);
        for (int d = 0; d < 3; d++) {
            double p = 0;
            for (int64_t i = 0; i < n; i++) p += est[i] * u[d][i];
            sum[d] += p, sq[d] += p * p;
        }
        mn_meta_slot_free(s);
    }
    projections pr;
    for (int d = 0; d < 3; d++) {
        pr.mean[d] = sum[d] / reps;
        pr.se[d] = sqrt(fmax(sq[d] / reps - pr.mean[d] * pr.mean[d], 0) / (reps - 1));
    }
    free(grad), free(est);
    mn_meta_family_free(f);
    return pr;
}

static void pes_and_es_match_the_whole_run_gradient_where_truncated_backprop_does_not(void **state) {
    (void)state;
    mn_lopt *o = test_optimizer();
    int64_t n = mn_lopt_weight_count(o);
    double *exact = calloc((size_t)n, sizeof *exact), *trunc = calloc((size_t)n, sizeof *trunc);
    double *u[3];
    for (int d = 0; d < 3; d++) u[d] = calloc((size_t)n, sizeof *u[d]);
    tbptt_gradient(o, 1, HORIZON, exact, n);
    tbptt_gradient(o, SEGMENTS, SEG_STEPS, trunc, n);
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += exact[i] * exact[i];
    norm = sqrt(norm);
    assert_true(norm > 1e-3);
    /* directions: the exact gradient's, and two random ones */
    mn_rng g = mn_rng_new(3);
    for (int64_t i = 0; i < n; i++) u[0][i] = exact[i] / norm;
    for (int d = 1; d < 3; d++) {
        float *r = malloc(sizeof(float) * (size_t)n);
        mn_rng_normal(&g, n, r, 0, 1);
        double rn = 0;
        for (int64_t i = 0; i < n; i++) rn += (double)r[i] * r[i];
        for (int64_t i = 0; i < n; i++) u[d][i] = r[i] / sqrt(rn);
        free(r);
    }
    double want[3], tb[3];
    for (int d = 0; d < 3; d++) {
        want[d] = tb[d] = 0;
        for (int64_t i = 0; i < n; i++) want[d] += exact[i] * u[d][i], tb[d] += trunc[i] * u[d][i];
    }
    const mn_estimator_kind kinds[2] = {MN_ESTIMATOR_PES, MN_ESTIMATOR_ES};
    for (int k = 0; k < 2; k++) {
        projections pr = estimate_projections(o, kinds[k], 400, 4, u, n);
        for (int d = 0; d < 3; d++) {
            double z = (pr.mean[d] - want[d]) / pr.se[d], zt = (tb[d] - want[d]) / pr.se[d];
            print_message("%s along %s: exact %.5f, %s %.5f +- %.5f (z %.2f), truncated backprop %.5f (z %.1f)\n",
                          mn_estimator_kind_name(kinds[k]), d ? "a random direction" : "the exact gradient", want[d],
                          mn_estimator_kind_name(kinds[k]), pr.mean[d], pr.se[d], z, tb[d], zt);
            if (fabs(z) > 4)
                fail_msg("%s is %.1f standard errors away from the exact whole-run gradient", mn_estimator_kind_name(kinds[k]), z);
        }
        /* the bias truncation leaves: along the exact gradient, many standard errors away */
        assert_true(fabs(tb[0] - want[0]) > 8 * pr.se[0]);
    }
    assert_true(fabs(tb[0] - want[0]) > 0.2 * norm);
    for (int d = 0; d < 3; d++) free(u[d]);
    free(exact), free(trunc);
    mn_lopt_free(o);
}

/* ---- the trainer with each estimator: threads, resume ---------------------------------------------------- */

static mn_meta_trainer_opts trainer_opts(mn_estimator_kind kind, int threads) {
    mn_meta_trainer_opts op = mn_meta_trainer_default_opts();
    op.tasks = 3;
    op.estimator.kind = kind;
    op.estimator.unroll.steps = 4;
    op.estimator.unroll.lr_scale = LR_SCALE;
    op.estimator.pairs = 2;
    op.horizon = MN_HORIZON_LOG_UNIFORM;
    op.horizon_min = 4, op.horizon_max = 13; /* restarts within the run */
    op.seed = 9;
    op.task_threads = threads;
    return op;
}

/* iterations of a fresh trainer; the weights after them into w [n] */
static void train(mn_estimator_kind kind, int threads, int iterations, float *w, int *restarts) {
    mn_meta_family *f = mn_meta_quadratic_family(3, 8);
    mn_lopt *o = test_optimizer();
    mn_meta_trainer_opts op = trainer_opts(kind, threads);
    mn_meta_trainer *tr = mn_meta_trainer_new(o, f, &op);
    mn_meta_stats st;
    *restarts = 0;
    for (int i = 0; i < iterations; i++) {
        mn_meta_trainer_iterate(tr, &st);
        assert_int_equal(st.counted, 3);
        *restarts += st.restarted;
    }
    mn_lopt_get_flat(o, w);
    mn_meta_trainer_free(tr);
    mn_lopt_free(o);
    mn_meta_family_free(f);
}

static void task_threads_give_the_same_weights_as_one_thread(void **state) {
    (void)state;
    mn_lopt *o = test_optimizer();
    int64_t n = mn_lopt_weight_count(o);
    mn_lopt_free(o);
    float *one = malloc(sizeof(float) * (size_t)n), *two = malloc(sizeof(float) * (size_t)n);
    const mn_estimator_kind kinds[3] = {MN_ESTIMATOR_TBPTT, MN_ESTIMATOR_PES, MN_ESTIMATOR_ES};
    for (int k = 0; k < 3; k++) {
        int r1, r2;
        train(kinds[k], 1, 6, one, &r1);
        train(kinds[k], 2, 6, two, &r2);
        print_message("%s: 6 iterations, %d restarts, 1 vs 2 task threads\n", mn_estimator_kind_name(kinds[k]), r1);
        assert_true(r1 > 0);
        assert_int_equal(r1, r2);
        assert_memory_equal(one, two, sizeof(float) * (size_t)n);
    }
    free(one), free(two);
}

static void a_pes_trainer_resumes_exactly(void **state) {
    (void)state;
    char dir[] = "/tmp/mnemo-pes-resume-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    mn_meta_family *f = mn_meta_quadratic_family(3, 8);
    mn_lopt *a = test_optimizer(), *b = test_optimizer();
    int64_t n = mn_lopt_weight_count(a);
    mn_meta_trainer_opts op = trainer_opts(MN_ESTIMATOR_PES, 1);
    op.horizon_min = 8, op.horizon_max = 40; /* some tasks restart, some carry their perturbations on */
    mn_meta_trainer *ta = mn_meta_trainer_new(a, f, &op);
    mn_meta_stats st;
    mn_err err;
    for (int i = 0; i < 3; i++) mn_meta_trainer_iterate(ta, &st);
    assert_true(mn_meta_trainer_save(ta, ckpt, &err));
    for (int i = 0; i < 3; i++) mn_meta_trainer_iterate(ta, &st);
    /* another trainer, resumed from the checkpoint; the carried perturbations matter */
    mn_meta_trainer *tb = mn_meta_trainer_new(b, f, &op);
    assert_true(mn_meta_trainer_load(tb, ckpt, &err));
    assert_int_equal(mn_meta_trainer_iteration(tb), 3);
    bool carried = false;
    for (int s = 0; s < op.tasks; s++)
        for (int64_t i = 0; i < tb->slots[s]->n_carry; i++) carried |= tb->slots[s]->carry[i] != 0;
    assert_true(carried);
    for (int i = 0; i < 3; i++) mn_meta_trainer_iterate(tb, &st);
    float *wa = malloc(sizeof(float) * (size_t)n), *wb = malloc(sizeof(float) * (size_t)n);
    mn_lopt_get_flat(a, wa);
    mn_lopt_get_flat(b, wb);
    assert_memory_equal(wa, wb, sizeof(float) * (size_t)n);
    /* a TBPTT trainer refuses the PES checkpoint, naming the option */
    mn_meta_trainer_opts other = op;
    other.estimator.kind = MN_ESTIMATOR_TBPTT;
    mn_meta_trainer *tc = mn_meta_trainer_new(b, f, &other);
    assert_false(mn_meta_trainer_load(tc, ckpt, &err));
    print_message("tbptt trainer on a pes checkpoint: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "estimator"));
    mn_meta_trainer_free(tc);
    free(wa), free(wb);
    mn_meta_trainer_free(ta), mn_meta_trainer_free(tb);
    mn_lopt_free(a), mn_lopt_free(b);
    mn_meta_family_free(f);
    tu_remove_tree(dir);
}

/* Validation on two threads scores the same tasks the same way as on one, and the trainer keeps its best. */
static void validation_is_the_same_on_threads_and_tracks_the_best(void **state) {
    (void)state;
    mn_meta_family *f = mn_meta_quadratic_family(3, 8);
    mn_lopt *o = test_optimizer();
    mn_meta_validation_opts vo = {.tasks = 3, .steps = 12, .lr_scale = LR_SCALE, .select_final = true, .seed = 4};
    mn_meta_validation a = mn_meta_validate(o, f, &vo, 1), b = mn_meta_validate(o, f, &vo, 2);
    assert_true(a.log_loss == b.log_loss && a.final_log_loss == b.final_log_loss && a.test_loss == b.test_loss);
    assert_true(a.score == a.final_log_loss);
    mn_meta_trainer_opts op = trainer_opts(MN_ESTIMATOR_PES, 2);
    mn_meta_trainer *tr = mn_meta_trainer_new(o, f, &op);
    mn_meta_validation first = mn_meta_trainer_validate(tr, &vo), again = mn_meta_trainer_validate(tr, &vo);
    assert_true(first.best);
    assert_false(again.best); /* the same weights: not lower */
    assert_true(first.score == a.score);
    mn_meta_trainer_free(tr);
    mn_lopt_free(o);
    mn_meta_family_free(f);
}

/* ---- truncation schedules ------------------------------------------------------------------------------ */

static void horizons_follow_their_schedule(void **state) {
    (void)state;
    mn_rng g = mn_rng_new(4);
    int below_mid = 0, below_arith = 0, lo = 1 << 30, hi = 0;
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        int64_t t = mn_horizon_sample(MN_HORIZON_LOG_UNIFORM, 10, 10000, &g);
        lo = t < lo ? (int)t : lo, hi = t > hi ? (int)t : hi;
        below_mid += t < 316;   /* the geometric middle of [10, 10001): half the draws */
        below_arith += t < 5005; /* the arithmetic middle: 90% of them */
    }
    print_message("log-uniform in [10, 10000]: %d..%d, %.3f below 316, %.3f below 5005\n", lo, hi,
                  (double)below_mid / N, (double)below_arith / N);
    assert_true(lo >= 10 && hi <= 10000 && lo < 12 && hi > 9000);
    assert_true(fabs((double)below_mid / N - 0.5) < 0.02);
    assert_true(fabs((double)below_arith / N - log(5005 / 10.0) / log(10001 / 10.0)) < 0.01);
    int64_t sum = 0;
    for (int i = 0; i < N; i++) sum += mn_horizon_sample(MN_HORIZON_UNIFORM, 100, 1000, &g);
    assert_true(fabs((double)sum / N - 550) < 5);
    assert_int_equal(mn_horizon_sample(MN_HORIZON_CONSTANT, 100, 1000, &g), 1000);
    mn_horizon_kind k;
    assert_true(mn_horizon_kind_parse("log-uniform", &k) && k == MN_HORIZON_LOG_UNIFORM);
    assert_false(mn_horizon_kind_parse("loguniform", &k));
    mn_estimator_kind e;
    assert_true(mn_estimator_kind_parse("pes", &e) && e == MN_ESTIMATOR_PES);
    assert_false(mn_estimator_kind_parse("PES", &e));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pes_and_es_match_the_whole_run_gradient_where_truncated_backprop_does_not),
        cmocka_unit_test(task_threads_give_the_same_weights_as_one_thread),
        cmocka_unit_test(a_pes_trainer_resumes_exactly),
        cmocka_unit_test(validation_is_the_same_on_threads_and_tracks_the_best),
        cmocka_unit_test(horizons_follow_their_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
