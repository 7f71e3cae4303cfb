#include "trainer.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

void trainer_init(trainer *t, const char *prog, const run_opts *r, int64_t n, bool drop_last, uint64_t data_seed,
                  const char *eval) {
    *t = (trainer){.prog = prog, .r = r, .saved_step = -1};
    mn_batcher_init(&t->bat, n, r->batch, true, drop_last, data_seed);
    t->per_epoch = mn_batcher_batches_per_epoch(&t->bat);
    t->total = run_total_steps(r, t->per_epoch);
    t->stop = r->stop_at > 0 && r->stop_at < t->total ? r->stop_at : t->total;
    snprintf(t->eval_names[0], sizeof t->eval_names[0], "%s_loss", eval);
    snprintf(t->eval_names[1], sizeof t->eval_names[1], "%s_accuracy", eval);
    t->train_loss.name = "train_loss", t->train_accuracy.name = "train_accuracy";
    t->eval_loss.name = t->eval_names[0], t->eval_accuracy.name = t->eval_names[1];
}

/* The four curves, in the order of curves.safetensors. */
static void list_curves(trainer *t, curve *out[4]) {
    out[0] = &t->train_loss, out[1] = &t->train_accuracy, out[2] = &t->eval_loss, out[3] = &t->eval_accuracy;
}

static bool resume(trainer *t, mn_err *err) {
    const char *dir = t->r->resume_dir;
    curve *curves[4];
    list_curves(t, curves);
    run_state st;
    if (!train_args_check(&t->args, dir, err) || !run_load_state(dir, &st, t->opt, err) ||
        !curves_load(dir, 4, curves, err))
        return false;
    if (st.step < 0 || st.epoch < 0 || st.batch < 0 || st.batch > t->per_epoch)
        return mn_err_set(err, "%s/trainer_state.json holds step %lld, epoch %lld, batch %lld, but an epoch has %lld "
                          "batches", dir, (long long)st.step, (long long)st.epoch, (long long)st.batch,
                          (long long)t->per_epoch);
    t->start = st.step;
    t->resumed_best = st.best_metric;
    mn_batcher_seek(&t->bat, st.epoch, st.batch);
    if (t->start >= t->stop) {
        printf("%s: the run in %s already finished: it is at step %lld, and this run ends at step %lld; nothing to "
               "train or save (a larger --steps or --epochs continues it)\n", t->prog, dir, (long long)t->start,
               (long long)t->stop);
        t->stop = t->start;
        return true;
    }
    bool at_end = st.batch == t->per_epoch; /* the next batch opens the next epoch */
    printf("%s: resumed from %s after step %lld (next: epoch %lld, batch %lld)\n", t->prog, dir, (long long)t->start,
           (long long)st.epoch + 1 + at_end, at_end ? 1ll : (long long)st.batch + 1);
    return true;
}

/* The log's first record (and a resumed run's first): what runs, with every recorded setting, so that
 * logs of several runs can be told apart and overlaid. */
static void write_header(trainer *t) {
    json_t *settings = json_object();
    for (int i = 0; i < t->args.n; i++) json_object_set_new(settings, t->args.keys[i], json_string(t->args.values[i]));
    json_t *h = json_pack("{s:s, s:I, s:I, s:I, s:i, s:o}", "run", t->prog, "first_step", (json_int_t)t->start + 1,
                          "last_step", (json_int_t)t->stop, "total_steps", (json_int_t)t->total, "threads",
                          omp_get_max_threads(), "settings", settings);
    char *text = h ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text) metrics_write(&t->log, "%s", text);
    free(text);
    json_decref(h);
}

int trainer_start(trainer *t, const mn_params *params, const char *out_dir) {
    const run_opts *r = t->r;
    mn_err err;
    if (!(t->opt = run_make_optimizer(r, params, &err))) return run_fail(t->prog, err.msg, 2);
    char described[512];
    run_describe_optimizer(r, described, sizeof described);
    t->warmup = run_warmup_steps(r, t->total, t->prog);
    train_args_add(&t->args, "optimizer", "%s", described);
    train_args_add(&t->args, "schedule", "%s warmup %lld clip %g", r->schedule, (long long)t->warmup, r->clip);
    train_args_add(&t->args, "steps", "%ld epochs %ld", r->steps, r->epochs);
    train_args_add(&t->args, "batch", "%ld", r->batch);
    train_args_add(&t->args, "seed", "%ld", r->seed);
    if (r->resume_dir && !resume(t, &err)) {
        fprintf(stderr, "%s: cannot resume from %s: %s\n", t->prog, r->resume_dir, err.msg);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    if (!metrics_open(&t->log, r->log_path ? r->log_path : path, r->resume_dir != NULL, &err))
        return run_fail(t->prog, err.msg, 1);
    write_header(t);
    printf("%s: steps %lld..%lld of %lld (%.2f epochs of %lld batches), batch %ld, %s (%s, warm-up %lld), "
           "%d threads\n", t->prog, (long long)t->start + 1, (long long)t->stop, (long long)t->total,
           (double)t->total / (double)t->per_epoch, (long long)t->per_epoch, r->batch, described, r->schedule,
           (long long)t->warmup, omp_get_max_threads());
    if (r->stop_at && !r->save_dir)
        fprintf(stderr, "%s: note: --stop-at without --save leaves nothing to resume from\n", t->prog);
    return 0;
}

mn_tensor *trainer_next_batch(trainer *t) {
    mn_tensor *idx = mn_batcher_next(&t->bat);
    return idx ? idx : mn_batcher_next(&t->bat);
}

bool trainer_clip_and_check(const trainer *t, const mn_params *params, float loss, int64_t step) {
    float norm = t->r->clip > 0 ? mn_clip_grad_norm(params, (float)t->r->clip) : 0;
    if (isfinite(loss) && isfinite(norm)) return true;
    fprintf(stderr, "\n%s: the loss diverged at step %lld (loss %g, gradient norm %g); try a smaller --lr\n", t->prog,
            (long long)step, loss, norm);
    return false;
}

void trainer_update(trainer *t, int64_t step) {
    run_apply_schedule(t->r, t->opt, step - 1, t->total, t->warmup);
    mn_optim_step(t->opt);
}

bool trainer_checkpoint(trainer *t, int64_t step, double best_metric, trainer_save_model save_model,
                        void *model) {
    const char *dir = t->r->save_dir;
    long every = t->r->save_every;
    if (!dir || (step != t->stop && (every <= 0 || step % every != 0))) return true;
    curve *curves[4];
    list_curves(t, curves);
    run_state st = {step, t->bat.epoch, mn_batcher_position(&t->bat), best_metric};
    mn_err err;
    mn_ckpt_dir c;
    if (mn_ckpt_dir_begin(&c, dir, step, &err) && save_model(model, c.staging, &err) &&
        run_save_state(c.staging, &st, t->opt, &err) && train_args_save(&t->args, c.staging, &err) &&
        curves_save(c.staging, 4, curves, &err) && mn_ckpt_dir_commit(&c, &err)) {
        t->saved_step = step;
        return true;
    }
    mn_ckpt_dir_abort(&c);
    fprintf(stderr, "%s: saving to %s failed: %s\n", t->prog, dir, err.msg);
    return false;
}

bool trainer_free(trainer *t) {
    bool logged = metrics_close(&t->log);
    train_args_free(&t->args);
    curve *curves[4];
    list_curves(t, curves);
    for (int i = 0; i < 4; i++) curve_free(curves[i]);
    mn_batcher_free(&t->bat);
    mn_optim_free(t->opt);
    t->opt = NULL;
    return logged;
}
