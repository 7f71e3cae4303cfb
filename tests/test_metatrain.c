/* Meta-training by truncated backprop (meta/) on tiny quadratic task families:
 * the estimator's meta-gradient against finite differences of the meta-loss (first order with the
 * inner gradients replayed, second order with them recomputed), clipping, skipped non-finite
 * truncations, exact resume from a checkpoint, and flat memory over many truncations. */
#include "lopt_fixtures.h"

#include <unistd.h>

#include "meta/meta_internal.h"

static const mn_lopt_kind all_kinds[3] = LOPT_ALL_KINDS;

/* Small optimizers at a generic point (not the structured initialisation, where the update depends
 * on the gradient's sign only and second order would equal first order). */
static mn_lopt *generic_optimizer(mn_lopt_kind kind, uint64_t seed) {
    mn_lopt_config cfg = small_config(kind);
    cfg.alpha = 0.1f;
    cfg.lstm_out_scale = 0.3f;
    cfg.precond_p = 1.0f; /* strong dependence on log|g|: second order matters */
    mn_lopt *o = mn_lopt_new_config(&cfg, seed);
    perturb_weights(o, seed + 100, 0.3f);
    return o;
}

/* ---- the estimator against finite differences ------------------------------------------------------ */

enum { FD_DIM = 4, FD_STEPS = 3 };

/* The meta-loss of one truncation from the task's start (same seed: same parameters and batches). */
static double meta_loss_value(const mn_lopt *o, const mn_unroll_opts *u) {
    mn_scope sc = mn_scope_begin();
    mn_task_run *r = mn_task_run_new(mn_meta_quadratic_task(FD_DIM, 7), 7, o, 100);
    double v = mn_item(mn_meta_unroll(o, r, u, NULL));
    mn_task_run_free(r);
    mn_scope_end(sc);
    return v;
}

/* Directional derivatives along a random direction per weight tensor: the estimator's (unclipped)
 * meta-gradient against central differences. Writes them into dirs. */
static void check_estimator(mn_lopt *o, bool second_order, bool plain, double *dirs) {
    const mn_params *w = mn_lopt_weights(o);
    mn_scope sc = mn_scope_begin();
    mn_tensor *recorded[FD_STEPS] = {0};
    mn_tbptt_opts est = {.unroll = {.steps = FD_STEPS, .second_order = second_order, .plain_mean = plain,
                                    .lr_scale = 1.0f, .record_grads = second_order ? NULL : recorded},
                         .clip = 0};
    mn_task_run *r = mn_task_run_new(mn_meta_quadratic_task(FD_DIM, 7), 7, o, 100);
    mn_tensor **grads = calloc((size_t)w->count, sizeof *grads);
    mn_tbptt_result res;
    assert_true(mn_tbptt_estimate(o, r, &est, grads, &res));
    assert_int_equal(r->step, FD_STEPS);
    assert_int_equal(mn_lopt_state_steps(r->state), FD_STEPS);
    assert_null(r->params[0]->node); /* the truncation boundary */
    /* finite differences: first order holds the inner gradients at their recorded values */
    mn_unroll_opts u = {.steps = FD_STEPS, .plain_mean = plain, .lr_scale = 1.0f,
                        .replay_grads = second_order ? NULL : recorded};
    double noise = 1e-3 * fmax(1.0, fabs(res.meta_loss)), worst = 0;
    const double h = 3e-3;
    for (int i = 0; i < w->count; i++) {
        mn_tensor *p = w->items[i].tensor, *dir = tu_rand(300 + (uint64_t)i, p->ndim, p->shape, -1, 1);
        mn_tensor *orig = mnt_clone(p);
        double analytic = 0;
        for (int64_t j = 0; j < mn_numel(p); j++) analytic += (double)mn_data(grads[i])[j] * mn_data(dir)[j];
        mnt_axpy_(p, (float)h, dir);
        double plus = meta_loss_value(o, &u);
        mnt_copy_(p, orig);
        mnt_axpy_(p, (float)-h, dir);
        double minus = meta_loss_value(o, &u);
        mnt_copy_(p, orig);
        double fd = (plus - minus) / (2 * h), err = fabs(analytic - fd) / (noise + 1e-2 * fabs(fd));
        worst = fmax(worst, err);
        if (err > 1)
            fail_msg("%s, %s order, %s meta-loss, along a random direction in %s: estimator %.6g, finite "
                     "differences %.6g",
                     mn_lopt_kind_name(o->cfg.kind), second_order ? "second" : "first", plain ? "plain" : "log",
                     w->items[i].name, analytic, fd);
        dirs[i] = analytic;
    }
    print_message("%s %s order (%s): %d weight tensors, worst error %.2f x tolerance\n", mn_lopt_kind_name(o->cfg.kind),
                  second_order ? "second" : "first", plain ? "plain mean" : "log", w->count, worst);
    for (int t = 0; t < FD_STEPS; t++) mn_release(recorded[t]);
    free(grads);
    mn_task_run_free(r);
    mn_scope_end(sc);
}

static void meta_gradient_of_a_truncation_matches_finite_differences(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        mn_lopt *o = generic_optimizer(all_kinds[k], 33);
        int n = mn_lopt_weights(o)->count;
        double *first = calloc((size_t)n, sizeof *first), *second = calloc((size_t)n, sizeof *second);
        double *plain = calloc((size_t)n, sizeof *plain);
        check_estimator(o, false, false, first);
        check_estimator(o, true, false, second);
        check_estimator(o, false, true, plain);
        double most = 0;
        for (int i = 0; i < n; i++) most = fmax(most, fabs(first[i] - second[i]) / (fabs(second[i]) + 1e-3));
        print_message("  first vs second order: largest relative difference %.3g\n", most);
        assert_true(most > 0.02); /* the second-order terms are there */
        free(first);
        free(second);
        free(plain);
        mn_lopt_free(o);
    }
}

/* ---- clipping ---------------------------------------------------------------------------------------- */

static double global_norm(int n, mn_tensor *const *g) {
    double sq = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < mn_numel(g[i]); j++) sq += (double)mn_data(g[i])[j] * mn_data(g[i])[j];
    return sqrt(sq);
}

static void clipping_scales_the_meta_gradient_to_the_global_norm(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_lopt *o = generic_optimizer(MN_LOPT_LSTM, 5);
    int n = mn_lopt_weights(o)->count;
    mn_tensor **raw = calloc((size_t)n, sizeof *raw), **clipped = calloc((size_t)n, sizeof *clipped);
    mn_tbptt_opts est = {.unroll = {.steps = 2, .lr_scale = 1.0f}, .clip = 0};
    mn_tbptt_result r0, r1;
    mn_task_run *a = mn_task_run_new(mn_meta_quadratic_task(5, 3), 3, o, 100);
    mn_task_run *b = mn_task_run_new(mn_meta_quadratic_task(5, 3), 3, o, 100);
    assert_true(mn_tbptt_estimate(o, a, &est, raw, &r0));
    double norm = global_norm(n, raw);
    assert_true(fabs(norm - r0.grad_norm) <= 1e-4 * norm);
    est.clip = (float)(0.25 * norm);
    assert_true(mn_tbptt_estimate(o, b, &est, clipped, &r1));
    assert_true(r1.grad_norm == r0.grad_norm); /* the same truncation, reported before clipping */
    assert_true(fabs(global_norm(n, clipped) - est.clip) <= 1e-4 * est.clip);
    for (int i = 0; i < n; i++) tu_assert_close(clipped[i], mnt_affine(raw[i], 0.25f, 0), 1e-7, 1e-4);
    /* below the threshold: untouched */
    est.clip = (float)(4 * norm);
    mn_task_run_free(b);
    b = mn_task_run_new(mn_meta_quadratic_task(5, 3), 3, o, 100);
    assert_true(mn_tbptt_estimate(o, b, &est, clipped, &r1));
    for (int i = 0; i < n; i++) assert_true(same_bits(clipped[i], raw[i]));
    mn_task_run_free(a);
    mn_task_run_free(b);
    free(raw);
    free(clipped);
    mn_lopt_free(o);
    mn_scope_end(sc);
}

/* ---- non-finite truncations -------------------------------------------------------------------------- */

/* A quadratic family whose first `poisoned` sampled tasks have a NaN loss after 3 inner steps. */
typedef struct {
    mn_meta_task base;
    mn_meta_task *inner;
    bool poisoned;
    int64_t calls;
} poison_task;
typedef struct {
    mn_meta_family base;
    int poisoned, sampled;
} poison_family;

static void poison_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const poison_task *p = (const poison_task *)t;
    p->inner->vt->init(p->inner, seed, out);
}
static mn_meta_batch poison_batch(const mn_meta_task *t, mn_rng *rng) {
    const poison_task *p = (const poison_task *)t;
    return p->inner->vt->batch(p->inner, rng);
}
static mn_tensor *poison_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    poison_task *p = (poison_task *)t;
    mn_tensor *loss = p->inner->vt->loss(p->inner, params, b);
    return p->poisoned && ++p->calls > 6 ? mn_mul(loss, mn_scalar(NAN)) : loss;
}
static void poison_free(mn_meta_task *t) {
    mn_meta_task_free(((poison_task *)t)->inner);
    free(t);
}
static const mn_meta_task_vt poison_vt = {
    .init = poison_init, .batch = poison_batch, .loss = poison_loss, .free = poison_free};

static mn_meta_task *poison_sample(const mn_meta_family *f, uint64_t seed) {
    poison_family *pf = (poison_family *)f;
    poison_task *t = calloc(1, sizeof *t);
    t->base.vt = &poison_vt;
    t->base.n_params = 1;
    t->inner = mn_meta_quadratic_task(4, seed);
    t->poisoned = pf->sampled++ < pf->poisoned;
    snprintf(t->base.desc, sizeof t->base.desc, "%s%.140s", t->poisoned ? "poisoned " : "", t->inner->desc);
    return &t->base;
}
static void poison_family_free(mn_meta_family *f) { free(f); }

static bool all_finite(const mn_lopt *o) {
    const mn_params *w = mn_lopt_weights(o);
    for (int i = 0; i < w->count; i++)
        for (int64_t j = 0; j < mn_numel(w->items[i].tensor); j++)
            if (!isfinite(mn_data(w->items[i].tensor)[j])) return false;
    return true;
}

static mn_tensor *weights_flat(const mn_lopt *o) {
    const mn_params *w = mn_lopt_weights(o);
    mn_tensor **parts = calloc((size_t)w->count, sizeof *parts);
    for (int i = 0; i < w->count; i++) parts[i] = mnt_reshape(w->items[i].tensor, MN_SHAPE(-1));
    mn_tensor *flat = mnt_concat(w->count, parts, 0);
    free(parts);
    return flat;
}

static void non_finite_truncations_are_skipped_and_reported(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    for (int all = 0; all < 2; all++) {
        poison_family *f = calloc(1, sizeof *f);
        snprintf(f->base.name, sizeof f->base.name, "poison");
        f->base.sample = poison_sample;
        f->base.free = poison_family_free;
        f->poisoned = all ? 3 : 1; /* of 3 tasks: the first, or all three */
        mn_lopt *o = generic_optimizer(MN_LOPT_MNEMOSYNE_C, 9);
        mn_meta_trainer_opts opts = mn_meta_trainer_default_opts();
        opts.tasks = 3, opts.estimator.unroll.steps = 2;
        mn_meta_trainer *tr = mn_meta_trainer_new(o, &f->base, &opts);
        mn_tensor *before = weights_flat(o);
        mn_meta_stats st;
        mn_meta_trainer_iterate(tr, &st); /* 2 steps = 4 loss calls per task: still finite */
        assert_int_equal(st.skipped, 0);
        assert_int_equal(st.counted, 3);
        mn_tensor *after1 = weights_flat(o);
        mn_meta_trainer_iterate(tr, &st); /* the poisoned tasks turn NaN */
        assert_int_equal(st.iteration, 2);
        assert_int_equal(st.skipped, all ? 3 : 1);
        assert_int_equal(st.counted, all ? 0 : 2);
        assert_int_equal(st.total_skipped, st.skipped);
        assert_int_equal(st.restarted, st.skipped); /* horizons are >= 100: only the skipped ones restart */
        assert_true(all_finite(o));
        assert_true(isfinite(st.meta_loss) == !all);
        mn_tensor *after2 = weights_flat(o);
        assert_false(same_bits(before, after1));
        /* with every truncation skipped, no Adam step: the weights and the step count stay */
        assert_true(same_bits(after1, after2) == (bool)all);
        assert_int_equal(mn_optim_step_count(tr->adam), all ? 1 : 2);
        for (int b = 0; b < 3; b++) {
            const mn_task_run *r = mn_meta_trainer_run(tr, b);
            assert_int_equal(r->step, b < (all ? 3 : 1) ? 0 : 4); /* restarted runs start over */
            assert_null(strstr(r->task->desc, "poisoned"));
        }
        mn_meta_trainer_iterate(tr, &st);
        assert_int_equal(st.skipped, 0);
        assert_int_equal(st.total_skipped, all ? 3 : 1);
        mn_meta_trainer_free(tr);
        mn_lopt_free(o);
        mn_meta_family_free(&f->base);
    }
    mn_scope_end(sc);
}

/* ---- resume ------------------------------------------------------------------------------------------ */

static char tmp_dir[64];
static const char *tmp_path(const char *name) {
    static char path[160];
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/mnemo_test_metatrain_XXXXXX");
        assert_non_null(mkdtemp(tmp_dir));
    }
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static int remove_tmp_dir(void **state) {
    (void)state;
    if (!tmp_dir[0]) return 0;
    const char *files[] = {"optimizer.safetensors", "meta_optimizer.safetensors", "trainer.safetensors",
                           "run.0.state.safetensors", "run.1.state.safetensors"};
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/ckpt/%s", tmp_dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/ckpt", tmp_dir);
    rmdir(path);
    rmdir(tmp_dir);
    return 0;
}

static mn_meta_trainer_opts resume_opts(bool second_order) {
    mn_meta_trainer_opts opts = mn_meta_trainer_default_opts();
    opts.tasks = 2;
    opts.estimator.unroll.steps = 3;
    opts.estimator.unroll.second_order = second_order;
    opts.estimator.clip = 0.05f; /* small, so clipping is active too */
    opts.meta_lr = 1e-2f;
    opts.horizon_min = 4, opts.horizon_max = 9; /* tasks restart within the run */
    opts.seed = 77;
    return opts;
}

static void resume_continues_exactly(void **state) {
    (void)state;
    enum { N = 8 };
    char dir[160];
    snprintf(dir, sizeof dir, "%s", tmp_path("ckpt"));
    for (int k = 0; k < 3; k++) {
        mn_scope sc = mn_scope_begin();
        mn_meta_family *f = mn_meta_quadratic_family(3, 6);
        mn_meta_trainer_opts opts = resume_opts(k == 1);
        /* straight through */
        mn_lopt *a = generic_optimizer(all_kinds[k], 11);
        mn_meta_trainer *ta = mn_meta_trainer_new(a, f, &opts);
        mn_meta_stats st;
        int64_t restarts = 0;
        for (int i = 0; i < N; i++) mn_meta_trainer_iterate(ta, &st), restarts += st.restarted;
        assert_true(restarts > 0);
        /* N/2, checkpoint (twice: the second replaces the first), a fresh process's objects, N/2 */
        mn_lopt *b = generic_optimizer(all_kinds[k], 11);
        mn_meta_trainer *tb = mn_meta_trainer_new(b, f, &opts);
        mn_err err;
        for (int i = 0; i < N / 2; i++) {
            mn_meta_trainer_iterate(tb, &st);
            if (i >= N / 2 - 2 && !mn_meta_trainer_save(tb, dir, &err)) fail_msg("save: %s", err.msg);
        }
        mn_meta_trainer_free(tb);
        mn_lopt_free(b);
        mn_lopt *c = generic_optimizer(all_kinds[k], 11);
        perturb_weights(c, 999, 0.1f); /* whatever it starts with, the checkpoint's weights win */
        mn_meta_trainer *tc = mn_meta_trainer_new(c, f, &opts);
        if (!mn_meta_trainer_load(tc, dir, &err)) fail_msg("load: %s", err.msg);
        assert_int_equal(mn_meta_trainer_iteration(tc), N / 2);
        for (int i = N / 2; i < N; i++) mn_meta_trainer_iterate(tc, &st);
        assert_true(same_bits(weights_flat(a), weights_flat(c)));
        for (int r = 0; r < opts.tasks; r++) {
            const mn_task_run *ra = mn_meta_trainer_run(ta, r), *rc = mn_meta_trainer_run(tc, r);
            assert_int_equal(ra->seed, rc->seed);
            assert_int_equal(ra->step, rc->step);
            assert_true(same_bits(ra->params[0], rc->params[0]));
        }
        print_message("%s: %d iterations with a resume at %d match the uninterrupted run bitwise (%lld restarts)\n",
                      mn_lopt_kind_name(all_kinds[k]), N, N / 2, (long long)restarts);
        /* a crash between the two renames of a save leaves only DIR.old, which load falls back to */
        char old[200];
        snprintf(old, sizeof old, "%s.old", dir);
        assert_int_equal(rename(dir, old), 0);
        mn_meta_trainer *te = mn_meta_trainer_new(c, f, &opts);
        if (!mn_meta_trainer_load(te, dir, &err)) fail_msg("load from %s: %s", old, err.msg);
        assert_int_equal(mn_meta_trainer_iteration(te), N / 2);
        mn_meta_trainer_free(te);
        assert_int_equal(rename(old, dir), 0);
        /* a run with other options refuses the checkpoint and stays as it was */
        mn_meta_trainer_opts other = opts;
        other.estimator.unroll.steps = 4;
        mn_meta_trainer *td = mn_meta_trainer_new(c, f, &other);
        mn_tensor *w0 = weights_flat(c);
        assert_false(mn_meta_trainer_load(td, dir, &err));
        assert_non_null(strstr(err.msg, "unroll_steps"));
        assert_true(same_bits(w0, weights_flat(c)));
        assert_int_equal(mn_meta_trainer_iteration(td), 0);
        mn_meta_trainer_free(td);
        mn_meta_trainer *tn = mn_meta_trainer_new(c, f, &opts);
        assert_false(mn_meta_trainer_load(tn, tmp_path("missing"), &err));
        assert_non_null(strstr(err.msg, "missing: no such checkpoint directory"));
        /* a checkpoint one of whose files changed is refused, naming the file */
        char path[240];
        snprintf(path, sizeof path, "%s/meta_optimizer.safetensors", dir);
        FILE *fp = fopen(path, "r+b");
        assert_non_null(fp);
        fseek(fp, -1, SEEK_END);
        int last = fgetc(fp);
        fseek(fp, -1, SEEK_END);
        fputc(last ^ 1, fp);
        fclose(fp);
        assert_false(mn_meta_trainer_load(tn, dir, &err));
        assert_non_null(strstr(err.msg, "meta_optimizer.safetensors is"));
        mn_meta_trainer_free(tn);
        mn_meta_trainer_free(ta);
        mn_meta_trainer_free(tc);
        mn_lopt_free(a);
        mn_lopt_free(c);
        mn_meta_family_free(f);
        mn_scope_end(sc);
    }
}

/* ---- memory -------------------------------------------------------------------------------------------- */

static void memory_stays_flat_over_many_truncations(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        for (int second = 0; second < 2; second++) {
            mn_scope sc = mn_scope_begin();
            mn_meta_family *f = mn_meta_quadratic_family(5, 5); /* restarted tasks have the same sizes */
            mn_lopt *o = generic_optimizer(all_kinds[k], 21);
            mn_meta_trainer_opts opts = resume_opts(second);
            opts.horizon_min = opts.horizon_max = 6; /* a restart every other iteration */
            mn_meta_trainer *tr = mn_meta_trainer_new(o, f, &opts);
            mn_meta_stats st;
            int64_t bytes = 0, tensors = 0, restarts = 0;
            for (int i = 1; i <= 60; i++) {
                mn_meta_trainer_iterate(tr, &st);
                restarts += st.restarted;
                if (i == 10) bytes = mn_live_bytes(), tensors = mn_live_tensors();
            }
            print_message("%s %s order: after iteration 10: %lld bytes, %lld tensors; after 60: %lld, %lld "
                          "(%lld restarts)\n",
                          mn_lopt_kind_name(all_kinds[k]), second ? "second" : "first", (long long)bytes,
                          (long long)tensors, (long long)mn_live_bytes(), (long long)mn_live_tensors(),
                          (long long)restarts);
            assert_int_equal(restarts, 60);
            assert_int_equal(mn_live_bytes(), bytes);
            assert_int_equal(mn_live_tensors(), tensors);
            mn_meta_trainer_free(tr);
            mn_lopt_free(o);
            mn_meta_family_free(f);
            mn_scope_end(sc);
        }
    }
}

/* The same truncation with every step's intermediates kept (store_steps) and with the steps
 * recomputed in the backward pass (the default): equal meta-gradients, a smaller graph. */
static void recomputed_steps_give_the_same_meta_gradient_from_a_smaller_graph(void **state) {
    (void)state;
    for (int k = 0; k < 3; k++) {
        for (int second = 0; second < 2; second++) {
            mn_scope sc = mn_scope_begin();
            mn_lopt *o = mn_lopt_new(all_kinds[k], 23); /* the default sizes, whose memory matters */
            perturb_weights(o, 123, 0.1f);
            const mn_params *w = mn_lopt_weights(o);
            mn_tensor *grads[2][64];
            int64_t graph[2];
            assert_true(w->count <= 64);
            for (int store = 0; store < 2; store++) {
                mn_task_run *r = mn_task_run_new(mn_meta_quadratic_task(96, 9), 9, o, 100);
                mn_unroll_opts u = {.steps = 4, .second_order = second, .lr_scale = 1.0f, .store_steps = store};
                int64_t before = mn_live_bytes();
                mn_tensor *meta = mn_meta_unroll(o, r, &u, NULL);
                graph[store] = mn_live_bytes() - before;
                mn_tensor *in[64];
                for (int i = 0; i < w->count; i++) in[i] = w->items[i].tensor;
                mn_grad(1, &meta, NULL, w->count, in, grads[store], 0);
                mn_task_run_free(r);
            }
            print_message("%s %s order: graph of 4 steps over 96 coordinates: %lld bytes stored, %lld recomputed\n",
                          mn_lopt_kind_name(all_kinds[k]), second ? "second" : "first", (long long)graph[1],
                          (long long)graph[0]);
            for (int i = 0; i < w->count; i++) tu_assert_close(grads[0][i], grads[1][i], 1e-6, 1e-5);
            assert_true(2 * graph[0] < graph[1]);
            mn_lopt_free(o);
            mn_scope_end(sc);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(meta_gradient_of_a_truncation_matches_finite_differences),
        cmocka_unit_test(clipping_scales_the_meta_gradient_to_the_global_norm),
        cmocka_unit_test(non_finite_truncations_are_skipped_and_reported),
        cmocka_unit_test(resume_continues_exactly),
        cmocka_unit_test(memory_stays_flat_over_many_truncations),
        cmocka_unit_test(recomputed_steps_give_the_same_meta_gradient_from_a_smaller_graph),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmp_dir);
}
