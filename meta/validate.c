/* Validation: held-out tasks of the family trained from scratch with the current weights, the way the
 * optimizer is used after meta-training (first-order gradients, the fused no-graph step), and the
 * selection of the best weights by it. */
#include "meta/meta_internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

typedef struct {
    double log_loss, final_log_loss, test_loss;
} task_score;

/* One held-out task: the mean log training loss over the steps, the log of the mean of the last 5% (the
 * final train loss bench/eval_optimizers reports), the test loss. A diverged run counts as e^30. */
static task_score score_task(const mn_lopt *o, const mn_meta_family *f, uint64_t task_seed, int steps, float lr_scale) {
    int tail = steps / 20 > 0 ? steps / 20 : 1;
    mn_task_run *r = mn_task_run_new(f->sample(f, task_seed), task_seed, o, steps);
    double sum = 0, last = 0;
    for (int s = 0; s < steps; s++) {
        double l = mn_meta_inner_step(o, r, lr_scale, false, NULL);
        sum += isfinite(l) && l > 0 ? log(l) : (isfinite(l) ? -30 : 30);
        if (s >= steps - tail) last += isfinite(l) ? l / tail : INFINITY;
    }
    double test = NAN, metric;
    if (r->task->vt->test) r->task->vt->test(r->task, r->params, &test, &metric);
    mn_task_run_free(r);
    return (task_score){sum / steps, isfinite(last) && last > 0 ? log(last) : 30, test};
}

mn_meta_validation mn_meta_validate(const mn_lopt *o, const mn_meta_family *f, const mn_meta_validation_opts *opts,
                                    int threads) {
    int n = opts->tasks;
    if (n < 1 || opts->steps < 1) mn_fatal("mn_meta_validate: %d tasks of %d steps", n, opts->steps);
    uint64_t *seeds = meta_calloc((size_t)n, sizeof *seeds, "mn_meta_validate");
    task_score *scores = meta_calloc((size_t)n, sizeof *scores, "mn_meta_validate");
    mn_rng g = mn_rng_new(opts->seed ^ 0x7a11da7eull); /* the same tasks at every validation */
    for (int k = 0; k < n; k++) seeds[k] = (uint64_t)mn_rng_u32(&g) << 32 | mn_rng_u32(&g);
    if (threads > 1) {
#pragma omp parallel for num_threads(threads < n ? threads : n) schedule(dynamic, 1)
        for (int k = 0; k < n; k++) {
            omp_set_num_threads(1);
            scores[k] = score_task(o, f, seeds[k], opts->steps, opts->lr_scale);
        }
    } else {
        for (int k = 0; k < n; k++) scores[k] = score_task(o, f, seeds[k], opts->steps, opts->lr_scale);
    }
    mn_meta_validation v = {0};
    for (int k = 0; k < n; k++) { /* in task order: the same sums whatever the thread count */
        v.log_loss += scores[k].log_loss / n;
        v.final_log_loss += scores[k].final_log_loss / n;
        v.test_loss += scores[k].test_loss / n;
    }
    v.score = opts->select_final ? v.final_log_loss : v.log_loss;
    free(seeds), free(scores);
    return v;
}

mn_meta_validation mn_meta_trainer_validate(mn_meta_trainer *tr, const mn_meta_validation_opts *opts) {
    mn_meta_validation v = mn_meta_validate(tr->o, tr->family, opts, tr->opts.task_threads);
    v.best = v.score < tr->best_score;
    if (v.best) tr->best_score = v.score;
    return v;
}
