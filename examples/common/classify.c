#include "classify.h"

#include "best_weights.h"
#include "progress.h"
#include "svgplot.h"
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clf_add_options(cli_opt *opts, int n, int cap, clf_opts *o) {
    cli_opt mine[] = {
        {"--out", CLI_STRING, &o->out_dir, "output directory: metrics.jsonl (unless --log), loss.svg, accuracy.svg"},
        {"--eval-every", CLI_INT, &o->eval_every, "steps between test evaluations (0: at the end of every epoch)", 0,
         1e12},
    };
    for (size_t i = 0; i < sizeof mine / sizeof mine[0] && n < cap; i++) opts[n++] = mine[i];
    return n;
}

void clf_print_load_report(const mn_load_report *rep, const char *prog, const char *dir) {
    char *s = mn_load_report_summary(rep);
    if (s && *s) fprintf(stderr, "%s: loading %s:\n%s\n", prog, dir, s);
    else fprintf(stderr, "%s: loading %s: every weight of the checkpoint was used and every parameter loaded\n", prog,
                 dir);
    free(s);
}

void clf_evaluate(const clf_model *m, const mn_dataset *d, int64_t batch, double *loss, double *accuracy,
                  int64_t *hits_c, int64_t *counts_c) {
    int64_t n = mn_dataset_len(d), hits = 0;
    double sum = 0;
    if (hits_c) memset(hits_c, 0, sizeof *hits_c * (size_t)d->n_classes);
    if (counts_c) memset(counts_c, 0, sizeof *counts_c * (size_t)d->n_classes);
    bool prev = mn_no_grad_begin();
    for (int64_t at = 0; at < n; at += batch) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *index = run_eval_rows(at, batch, n), *x, *y;
        int64_t b = index->shape[0];
        mn_dataset_batch(d, index, &x, &y);
        mn_tensor *logits = m->forward(m->model, x, NULL);
        sum += (double)mn_item(mn_cross_entropy(logits, y, -100, 0)) * (double)b;
        const int32_t *pred = mn_idata(mn_argmax(logits, -1, false)), *truth = mn_idata(y);
        for (int64_t i = 0; i < b; i++) {
            hits += pred[i] == truth[i];
            if (hits_c) hits_c[truth[i]] += pred[i] == truth[i];
            if (counts_c) counts_c[truth[i]]++;
        }
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    *loss = n ? sum / (double)n : 0;
    *accuracy = n ? (double)hits / (double)n : 0;
}

void clf_print_per_class(const clf_model *m, const mn_dataset *d, int64_t batch) {
    int64_t *hits = calloc((size_t)d->n_classes, sizeof *hits), *counts = calloc((size_t)d->n_classes, sizeof *counts);
    if (!hits || !counts) mn_fatal("out of memory");
    double loss, acc;
    clf_evaluate(m, d, batch, &loss, &acc, hits, counts);
    printf("test accuracy per class:\n");
    for (int c = 0; c < d->n_classes; c++)
        printf("  %-20s %.4f (%lld images)\n", d->class_names[c], counts[c] ? (double)hits[c] / (double)counts[c] : 0,
               (long long)counts[c]);
    free(hits);
    free(counts);
}

/* ---- the loop ------------------------------------------------------------------------------------------------ */

static bool plot(const clf_opts *o, const trainer *t) {
    char path[4096], title[256];
    const curve *tl = &t->train_loss, *ta = &t->train_accuracy, *el = &t->eval_loss, *ea = &t->eval_accuracy;
    svg_series loss[2] = {{"training loss (mean per log interval)", tl->x, tl->y, tl->n, false},
                          {"test loss", el->x, el->y, el->n, true}};
    svg_series acc[2] = {{"training accuracy (mean per log interval)", ta->x, ta->y, ta->n, false},
                         {"test accuracy", ea->x, ea->y, ea->n, true}};
    snprintf(title, sizeof title, "%s: loss", o->title);
    snprintf(path, sizeof path, "%s/loss.svg", o->out_dir);
    bool ok = svg_plot(path, title, "epoch", "cross-entropy", false, loss, 2) == 0;
    snprintf(title, sizeof title, "%s: accuracy", o->title);
    if (ok) snprintf(path, sizeof path, "%s/accuracy.svg", o->out_dir);
    ok = ok && svg_plot(path, title, "epoch", "accuracy", false, acc, 2) == 0;
    if (ok) printf("%s: wrote %s/loss.svg and %s/accuracy.svg\n", o->prog, o->out_dir, o->out_dir);
    else fprintf(stderr, "%s: cannot write %s: %s\n", o->prog, path, strerror(errno));
    return ok;
}

/* lr_scale for every parameter under lr_prefix, keeping each one's weight decay. */
static bool scale_group(const clf_opts *o, const run_opts *r, const mn_params *params, mn_optimizer *opt) {
    double wd = run_weight_decay(r);
    if (wd < 0) {
        fprintf(stderr, "%s: a learning-rate scale for %s* needs adamw, adam or sgd, not %s\n", o->prog, o->lr_prefix,
                r->optimizer);
        return false;
    }
    int n = 0;
    size_t len = strlen(o->lr_prefix);
    for (int i = 0; i < params->count; i++) {
        const mn_param *p = &params->items[i];
        if (strncmp(p->name, o->lr_prefix, len)) continue;
        /* a group per parameter: its full name matches no other parameter */
        n += mn_optim_group(opt, p->name, (float)o->lr_scale, p->no_decay ? 0.0f : (float)wd) > 0;
    }
    printf("%s: %d parameters under \"%s\" train at %g x the learning rate\n", o->prog, n, o->lr_prefix, o->lr_scale);
    return true;
}

int clf_train(const clf_opts *o, const run_opts *r, const clf_model *m, const mn_dataset *train,
              const mn_dataset *test, const train_args *args, clf_result *res) {
    *res = (clf_result){0};
    const char *prog = o->prog;
    mn_err err;
    if (!mn_make_dirs(o->out_dir, &err)) return run_fail(prog, err.msg, 1);
    const mn_dataset *evalset = o->val ? o->val : test;
    const char *ename = o->val ? "val" : "test";
    trainer t;
    trainer_init(&t, prog, r, mn_dataset_len(train), false, train_stream(r->seed, CLF_STREAM_DATA, 0).seed, ename);
    for (int i = 0; i < args->n; i++) train_args_add(&t.args, args->keys[i], "%s", args->values[i]);
    int status = trainer_start(&t, m->params, o->out_dir);
    /* groups are not part of the optimizer state a resume loads: setting them now is the same as before */
    if (!status && o->lr_prefix && o->lr_scale != 1 && !scale_group(o, r, m->params, t.opt)) status = 1;
    best_weights best;
    best_init(&best, m->params, m->save, m->model, r->resume_dir ? t.resumed_best : -1);
    if (!status && o->keep_best && r->resume_dir && !best_load(&best, r->resume_dir, &err)) {
        fprintf(stderr, "%s: cannot resume: %s\n", prog, err.msg);
        status = 1;
    }

    double run_start = progress_now(), epoch_train = 0, ep_loss = 0, iv_loss = 0, iv_acc = 0;
    double test_loss = NAN, test_acc = NAN, timed_sum = 0;
    int64_t ep_hits = 0, ep_items = 0, iv_steps = 0, items = 0, last_eval = -1, epoch_first = t.start;
    int64_t per_epoch = t.per_epoch, stop = t.stop;
    const mn_batcher *bat = &t.bat;
    progress pr;
    progress_start_at(&pr, t.start, t.total, "images");
    for (int64_t step = t.start + 1; !status && step <= stop; step++) {
        double t0 = progress_now();
        mn_scope sc = mn_scope_begin();
        mn_tensor *idx = trainer_next_batch(&t);
        mn_tensor *x, *y;
        mn_dataset_batch(train, idx, &x, &y);
        mn_rng drop = train_stream(r->seed, CLF_STREAM_DROPOUT, step);
        mn_tensor *logits = m->forward(m->model, x, &drop);
        mn_tensor *loss = mn_cross_entropy(logits, y, -100, 0);
        mn_optim_zero_grad(t.opt);
        mn_backward(loss);
        float loss_v = mn_item(loss);
        int64_t b = idx->shape[0];
        if (!trainer_clip_and_check(&t, m->params, loss_v, step)) {
            mn_scope_end(sc);
            status = 1;
            break;
        }
        double acc = mn_accuracy(logits, y, -100);
        trainer_update(&t, step);
        mn_scope_end(sc);
        epoch_train += progress_now() - t0;
        items += b, ep_items += b, ep_loss += loss_v * (double)b, ep_hits += (int64_t)llround(acc * (double)b);
        iv_loss += loss_v, iv_acc += acc, iv_steps++;
        double epoch_pos = (double)(bat->epoch) + (double)bat->next / (double)bat->n; /* x of the curves, in epochs */
        char extra[64];
        snprintf(extra, sizeof extra, "acc %.4f", iv_acc / (double)iv_steps);
        progress_update_extra(&pr, step, iv_loss / (double)iv_steps, items, extra);
        if (step % r->log_every == 0 || step == stop) {
            double ml = iv_loss / (double)iv_steps, ma = iv_acc / (double)iv_steps;
            metrics_write(&t.log, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"accuracy\": %.6f, \"lr\": %.6g, "
                          "\"images_per_s\": %.1f}", (long long)step, epoch_pos, ml, ma, mn_optim_lr(t.opt),
                          (double)items / (progress_now() - run_start));
            curve_add(&t.train_loss, epoch_pos, ml);
            curve_add(&t.train_accuracy, epoch_pos, ma);
            iv_loss = iv_acc = 0, iv_steps = 0;
        }
        bool epoch_end = bat->next >= bat->n;
        bool eval_now = (o->eval_every > 0 ? step % o->eval_every == 0 : epoch_end) || step == stop;
        double eval_s = 0;
        if (eval_now) {
            double te = progress_now();
            clf_evaluate(m, evalset, o->eval_batch, &test_loss, &test_acc, NULL, NULL);
            eval_s = progress_now() - te;
            last_eval = step;
            curve_add(&t.eval_loss, epoch_pos, test_loss);
            curve_add(&t.eval_accuracy, epoch_pos, test_acc);
            metrics_write(&t.log, "{\"step\": %lld, \"epoch\": %.4f, \"%s_loss\": %.6f, \"%s_accuracy\": %.6f, "
                          "\"eval_seconds\": %.3f}", (long long)step, epoch_pos, ename, test_loss, ename, test_acc,
                          eval_s);
            if (!epoch_end) /* at an epoch's end the epoch line reports it */
                printf("step %lld (epoch %.2f)  %s loss %.4f acc %.4f  (evaluation of %lld images: %.2fs)\n",
                       (long long)step, epoch_pos, ename, test_loss, test_acc, (long long)mn_dataset_len(evalset),
                       eval_s);
            if (o->keep_best) best_offer(&best, test_acc);
        }
        if (o->keep_best && step == t.total && best_have(&best)) { /* the run's end: the best weights are the result */
            best_restore(&best);
            printf("%s: keeping the weights of the best validation accuracy, %.4f (--keep best)\n", prog, best.metric);
        }
        if (epoch_end) {
            double tl = ep_items ? ep_loss / (double)ep_items : 0;
            double ta = ep_items ? (double)ep_hits / (double)ep_items : 0;
            bool whole = step - epoch_first == per_epoch; /* began in this run: a fair time per epoch */
            if (whole) timed_sum += epoch_train, res->epochs_timed++;
            printf("epoch %lld/%.4g  step %lld  train loss %.4f acc %.4f", (long long)bat->epoch + 1,
                   (double)t.total / (double)per_epoch, (long long)step, tl, ta);
            if (eval_now) printf("  %s loss %.4f acc %.4f", ename, test_loss, test_acc);
            printf("  time %.2fs%s (%.0f images/s)\n", epoch_train, whole ? "" : " (part of an epoch)",
                   (double)ep_items / epoch_train);
            if (eval_now)
                printf("  (evaluation of %lld %s images: %.2fs)\n", (long long)mn_dataset_len(evalset), ename, eval_s);
            metrics_write(&t.log, "{\"epoch_end\": %lld, \"step\": %lld, \"train_loss\": %.6f, "
                          "\"train_accuracy\": %.6f, \"epoch_seconds\": %.3f, \"whole_epoch\": %s}",
                          (long long)bat->epoch + 1, (long long)step, tl, ta, epoch_train, whole ? "true" : "false");
            res->train_loss = tl, res->train_accuracy = ta;
            epoch_train = ep_loss = 0, ep_hits = ep_items = 0, epoch_first = step;
        }
        bool saved = o->keep_best ? trainer_checkpoint(&t, step, best.metric, best_save_with_model, &best)
                                  : trainer_checkpoint(&t, step, isnan(test_acc) ? 0 : test_acc, m->save, m->model);
        if (!saved) status = 1;
        res->steps = step;
    }
    if (!status) {
        if (ep_items) { /* a partial epoch at the end (--steps or --stop-at) */
            res->train_loss = ep_loss / (double)ep_items;
            res->train_accuracy = (double)ep_hits / (double)ep_items;
        }
        if (last_eval != stop || o->val) clf_evaluate(m, test, o->eval_batch, &test_loss, &test_acc, NULL, NULL);
        res->steps = stop;
        res->test_loss = test_loss, res->test_accuracy = test_acc;
        res->epoch_seconds = res->epochs_timed ? timed_sum / res->epochs_timed : 0;
        res->total_seconds = progress_now() - run_start;
        metrics_write(&t.log, "{\"final\": true, \"step\": %lld, \"test_loss\": %.6f, \"test_accuracy\": %.6f, "
                      "\"mean_epoch_seconds\": %.3f, \"seconds\": %.3f}", (long long)stop, test_loss, test_acc,
                      res->epoch_seconds, res->total_seconds);
        if (t.saved_step == stop && stop < t.total)
            printf("%s: stopped after step %lld of %lld; continue with --resume %s\n", prog, (long long)stop,
                   (long long)t.total, r->save_dir);
        else if (t.saved_step == stop) printf("%s: saved the model and trainer state to %s\n", prog, r->save_dir);
        if (!plot(o, &t)) status = 1;
    }
    best_free(&best);
    if (!trainer_free(&t) && status == 0) status = 1;
    return status;
}
