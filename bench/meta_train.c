/* meta_train: meta-trains a learned optimizer (LSTM, Mnemosyne-C or Mnemosyne-T) on tasks sampled
 * from a family, with a meta-gradient estimator of meta/ (truncated backprop, PES or ES). Writes into
 * --out DIR:
 *   optimizer.safetensors  the learned optimizer (mn_lopt_save; what --optimizer KIND:CKPT loads)
 *   optimizer_best.safetensors  the weights with the best validation so far (held-out tasks of the family
 *                          trained from scratch for --val-steps steps: mean log training loss)
 *   resume/                everything --resume needs (mn_meta_trainer_save)
 *   metrics.jsonl          one JSON object per iteration
 *   meta_loss.svg          the meta-loss per iteration and its moving average
 * all rewritten at every checkpoint (every --checkpoint-every iterations) and at the end. */
#include "../examples/common/cli.h"
#include "../examples/common/progress.h"
#include "../examples/common/svgplot.h"
#include "common/tasks.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *optimizer, *family, *widths, *out, *init, *data_dir, *estimator, *horizon;
    long image_size, tasks, unroll, iterations, horizon_min, horizon_max, seed, threads, checkpoint_every;
    long val_tasks, val_steps, val_every, pairs, task_threads;
    double meta_lr, clip, lr_scale, sigma;
    bool second_order, plain_loss, resume, select_final, store_steps;
    int rank, ranks; /* MPI: this process and how many there are (0 of 1 without mpirun) */
} options;

/* ---- the meta-loss history (for the plot) and the metrics log ----------------------------------------- */
typedef struct {
    double *x, *y;
    int n, cap;
} history;

static void history_add(history *h, double x, double y) {
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 256;
        h->x = realloc(h->x, sizeof(double) * (size_t)h->cap);
        h->y = realloc(h->y, sizeof(double) * (size_t)h->cap);
        if (!h->x || !h->y) mn_fatal("meta_train: out of memory");
    }
    h->x[h->n] = x, h->y[h->n] = y, h->n++;
}

/* Keeps the log's records up to iteration `upto` (a resumed run redoes the later ones) and reads their
 * meta-losses into h. A missing log is fine (empty). */
static bool trim_log(const char *path, int64_t upto, const char *val_key, history *h, history *val, mn_err *err) {
    size_t size;
    char *text = mn_read_file(path, &size, 0, NULL);
    if (!text) return true;
    FILE *f = fopen(path, "w");
    if (!f) {
        free(text);
        return mn_err_set(err, "%s: cannot rewrite the metrics log", path);
    }
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *it = o ? json_object_get(o, "iteration") : NULL, *ml = o ? json_object_get(o, "meta_loss") : NULL;
        json_t *vl = o ? json_object_get(o, val_key) : NULL;
        if (json_is_integer(it) && json_integer_value(it) <= upto) {
            fprintf(f, "%s\n", line);
            double x = (double)json_integer_value(it);
            if (ml) history_add(h, x, json_is_number(ml) ? json_number_value(ml) : NAN);
            if (vl) history_add(val, x, json_is_number(vl) ? json_number_value(vl) : NAN);
        }
        json_decref(o);
    }
    free(text);
    return fclose(f) == 0 || mn_err_set(err, "%s: cannot rewrite the metrics log", path);
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ", \"%s\": %.9g", key, v);
    else fprintf(f, ", \"%s\": null", key);
}

static void plot(const char *dir, const history *h, const history *val, const char *kind, bool val_final) {
    char path[4200], title[160];
    snprintf(path, sizeof path, "%s/meta_loss.svg", dir);
    snprintf(title, sizeof title, "meta-training %s", kind);
    /* moving average over 25 iterations, skipping skipped ones */
    double *avg = malloc(sizeof(double) * (size_t)(h->n ? h->n : 1));
    for (int i = 0; i < h->n; i++) {
        double s = 0;
        int c = 0;
        for (int j = i >= 24 ? i - 24 : 0; j <= i; j++)
            if (isfinite(h->y[j])) s += h->y[j], c++;
        avg[i] = c ? s / c : NAN;
    }
    svg_series series[3] = {{"meta-loss", h->x, h->y, h->n, false},
                            {"moving average (25)", h->x, avg, h->n, false},
                            {val_final ? "validation final log loss" : "validation mean log loss", val->x, val->y, val->n, true}};
    if (svg_plot(path, title, "iteration", "mean log loss", false, series, val->n ? 3 : 2) != 0)
        fprintf(stderr, "meta_train: cannot write %s\n", path);
    free(avg);
}

/* Every rank takes part (the trainer's checkpoint is collective); rank 0 writes the files. */
static bool checkpoint(const options *op, const mn_meta_trainer *tr, const mn_lopt *o, const history *h,
                       const history *val, mn_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/resume", op->out);
    if (!mn_meta_trainer_save(tr, path, err)) return false;
    if (op->rank != 0) return true;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", op->out);
    if (!mn_lopt_save(o, path, err)) return false;
    plot(op->out, h, val, op->optimizer, op->select_final);
    return true;
}

/* Validates (meta/: held-out tasks of the family trained from scratch with the current weights), logs the
 * result, and keeps the best weights so far in optimizer_best.safetensors. */
static bool record_validation(const options *op, mn_meta_trainer *tr, const mn_lopt *o, int64_t iteration, FILE *log,
                              history *val, mn_err *err) {
    mn_meta_validation_opts vo = {.tasks = (int)op->val_tasks, .steps = (int)op->val_steps,
                                  .lr_scale = (float)op->lr_scale, .select_final = op->select_final,
                                  .seed = (uint64_t)op->seed};
    mn_meta_validation v = mn_meta_trainer_validate(tr, &vo);
    fprintf(log, "{\"iteration\": %lld", (long long)iteration);
    json_num(log, "val_log_loss", v.log_loss);
    json_num(log, "val_final_log_loss", v.final_log_loss);
    json_num(log, "val_test_loss", v.test_loss);
    fprintf(log, "}\n");
    history_add(val, (double)iteration, v.score);
    fprintf(stderr,
            "validation at iteration %lld: mean log loss %.4f, final log loss %.4f over %ld tasks x %ld steps, "
            "test loss %.4f%s\n",
            (long long)iteration, v.log_loss, v.final_log_loss, op->val_tasks, op->val_steps, v.test_loss,
            v.best ? " (best so far)" : "");
    if (!v.best) return true;
    char path[4200];
    snprintf(path, sizeof path, "%s/optimizer_best.safetensors", op->out);
    return mn_lopt_save(o, path, err);
}

/* Resumes if asked, then iterates, logs, validates and checkpoints; returns the exit status. */
static int run(const options *op, mn_meta_trainer *tr, mn_lopt *o, const mn_meta_family *family) {
    mn_err err;
    char path[4200];
    history h = {0}, val = {0};
    snprintf(path, sizeof path, "%s/metrics.jsonl", op->out);
    if (op->resume) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/resume", op->out);
        if (!mn_meta_trainer_load(tr, dir, &err) ||
            (op->rank == 0 && !trim_log(path, mn_meta_trainer_iteration(tr),
                                        op->select_final ? "val_final_log_loss" : "val_log_loss", &h, &val, &err))) {
            fprintf(stderr, "meta_train: --resume: %s\n", err.msg);
            free(h.x), free(h.y), free(val.x), free(val.y);
            return 1;
        }
        if (op->rank == 0)
            fprintf(stderr, "resumed at iteration %lld from %s\n", (long long)mn_meta_trainer_iteration(tr), dir);
    }
    /* only rank 0 logs, validates and prints; the others compute their slots and checkpoint with it */
    bool root = op->rank == 0;
    FILE *log = root ? fopen(path, op->resume ? "a" : "w") : fopen("/dev/null", "w");
    if (!log) {
        fprintf(stderr, "meta_train: cannot open %s for writing\n", path);
        free(h.x), free(h.y), free(val.x), free(val.y);
        return 1;
    }
    size_t n_weights = 0;
    for (int i = 0; i < mn_lopt_weights(o)->count; i++)
        n_weights += (size_t)mn_numel(mn_lopt_weights(o)->items[i].tensor);
    char est[96];
    if (!strcmp(op->estimator, "tbptt"))
        snprintf(est, sizeof est, "tbptt (%s order)", op->second_order ? "second" : "first");
    else
        snprintf(est, sizeof est, "%s (%ld antithetic pairs, sigma %g)", op->estimator, op->pairs, op->sigma);
    if (root) {
        fprintf(stderr,
                "%s: %zu weights; family %s, B = %ld, K = %ld, %s, %s horizons in [%ld, %ld], %d rank%s x %ld task "
                "thread%s x %d inner; rank 0's tasks:\n",
                op->optimizer, n_weights, family->name, op->tasks, op->unroll, est, op->horizon, op->horizon_min,
                op->horizon_max, op->ranks, op->ranks == 1 ? "" : "s", op->task_threads,
                op->task_threads == 1 ? "" : "s", op->task_threads > 1 ? 1 : omp_get_max_threads());
        for (int b = 0; b < op->tasks; b++) {
            const mn_task_run *r = mn_meta_trainer_run(tr, b);
            if (r) fprintf(stderr, "  %s (step %lld of %lld)\n", r->task->desc, (long long)r->step, (long long)r->horizon);
        }
    }

    int64_t first = mn_meta_trainer_iteration(tr), done = 0;
    long val_every = op->val_every ? op->val_every : op->checkpoint_every;
    if (root && op->val_tasks > 0 && first == 0 && !record_validation(op, tr, o, 0, log, &val, &err)) {
        fprintf(stderr, "meta_train: %s\n", err.msg);
        fclose(log);
        free(h.x), free(h.y), free(val.x), free(val.y);
        return 1;
    }
    progress pr;
    progress_start_at(&pr, first, op->iterations, "tasks");
    double start = progress_now(), iterating = 0; /* seconds spent in iterations (no validation, checkpoints) */
    int64_t inner_steps = 0;
    int status = 0;
    for (int64_t it = first; it < op->iterations; it++) {
        mn_meta_stats st;
        double t0 = progress_now();
        mn_meta_trainer_iterate(tr, &st);
        iterating += progress_now() - t0;
        inner_steps += st.inner_steps;
        done++;
        fprintf(log, "{\"iteration\": %lld", (long long)st.iteration);
        json_num(log, "meta_loss", st.meta_loss);
        json_num(log, "train_loss", st.train_loss);
        json_num(log, "grad_norm", st.grad_norm);
        fprintf(log,
                ", \"counted\": %d, \"skipped\": %d, \"skipped_particles\": %d, \"total_skipped\": %lld, "
                "\"restarted\": %d, \"inner_steps\": %lld",
                st.counted, st.skipped, st.skipped_particles, (long long)st.total_skipped, st.restarted,
                (long long)st.inner_steps);
        json_num(log, "seconds", progress_now() - start);
        fprintf(log, "}\n");
        history_add(&h, (double)st.iteration, st.meta_loss);
        char extra[96];
        snprintf(extra, sizeof extra, "train %.4g  skipped %lld  %.2fs/it  %.0f inner steps/s", st.train_loss,
                 (long long)st.total_skipped, iterating / (double)done, (double)inner_steps / iterating);
        if (root) progress_update_extra(&pr, st.iteration, st.meta_loss, done * op->tasks, extra);
        if (root && op->val_tasks > 0 && (st.iteration % val_every == 0 || st.iteration == op->iterations) &&
            !record_validation(op, tr, o, st.iteration, log, &val, &err)) {
            fprintf(stderr, "meta_train: %s\n", err.msg);
            status = 1;
            break;
        }
        fflush(log);
        if ((st.iteration % op->checkpoint_every == 0 || st.iteration == op->iterations) &&
            !checkpoint(op, tr, o, &h, &val, &err)) {
            fprintf(stderr, "meta_train: checkpoint: %s\n", err.msg);
            status = 1;
            break;
        }
    }
    fclose(log);
    if (!root) {
    } else if (done > 0 && status == 0) {
        struct stat sst;
        snprintf(path, sizeof path, "%s/optimizer.safetensors", op->out);
        long long bytes = stat(path, &sst) == 0 ? (long long)sst.st_size : -1;
        fprintf(stderr,
                "%lld iterations in %.1f s (iterations alone: %.2f s each, %.2f s per truncation, %.0f inner steps/s); "
                "%s: %lld bytes\n",
                (long long)done, progress_now() - start, iterating / (double)done,
                iterating / (double)(done * op->tasks), (double)inner_steps / iterating, path, bytes);
    } else if (done == 0) {
        fprintf(stderr, "nothing to do: the run is already at iteration %lld of %ld\n", (long long)first,
                op->iterations);
    }
    free(val.x);
    free(val.y);
    free(h.x);
    free(h.y);
    return status;
}

/* ---- main ------------------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
    options op = {.optimizer = "mnemosyne-t", .family = "mlp", .widths = "16,32,64", .out = NULL, .image_size = 14, .tasks = 4,
                  .unroll = 20, .iterations = 1000, .horizon_min = 100, .horizon_max = 1000, .seed = 0,
                  .threads = 1, .checkpoint_every = 50, .val_tasks = 2, .val_steps = 100, .meta_lr = 1e-3,
                  .clip = 1.0, .lr_scale = 1.0, .estimator = "tbptt", .horizon = "uniform", .sigma = 0.01,
                  .pairs = 4, .task_threads = 1};
    cli_opt opts[] = {
        {"--optimizer", CLI_STRING, &op.optimizer, "learned optimizer: lstm, mnemosyne-c or mnemosyne-t"},
        {"--family", CLI_STRING, &op.family, "task family: mlp (Fashion-MNIST MLPs), vit (tiny ViTs on Fashion-MNIST), bert (tiny BERT masked LMs on the "
         "fortunes), several joined by '+' (drawn equally often: mlp+vit+bert), or quadratic"},
        {"--widths", CLI_STRING, &op.widths, "mlp family: hidden widths, one drawn per hidden layer"},
        {"--image-size", CLI_INT, &op.image_size, "mlp family: 14 or 28 pixels a side, 0 for both", 0, 28},
        {"--tasks", CLI_INT, &op.tasks, "tasks per meta-iteration (B)", 1, 1024},
        {"--unroll", CLI_INT, &op.unroll, "inner steps per truncation (K)", 1, 100000},
        {"--iterations", CLI_INT, &op.iterations, "meta-iterations in all (a resumed run counts the done ones)", 1,
         1e9},
        {"--estimator", CLI_STRING, &op.estimator,
         "meta-gradient estimator: tbptt (truncated backprop through the K recorded steps), pes (persistent "
         "evolution strategies: unbiased over the whole run, no graph) or es (antithetic evolution strategies "
         "over each task's whole horizon)"},
        {"--sigma", CLI_FLOAT, &op.sigma, "pes, es: standard deviation of the weight perturbations", 1e-9, 10},
        {"--pairs", CLI_INT, &op.pairs, "pes, es: antithetic particle pairs per task", 1, 4096},
        {"--second-order", CLI_FLAG, &op.second_order, "tbptt: differentiate through the inner gradients too"},
        {"--plain-loss", CLI_FLAG, &op.plain_loss, "meta-loss = mean of the losses instead of mean of their logs"},
        {"--store-steps", CLI_FLAG, &op.store_steps,
         "keep every inner step's intermediates for the backward pass instead of recomputing them: faster, "
         "several times the memory"},
        {"--meta-lr", CLI_FLOAT, &op.meta_lr, "Adam learning rate on the optimizer weights", 1e-9, 10},
        {"--clip", CLI_FLOAT, &op.clip, "clip each task's meta-gradient to this global norm (0: off)", 0, 1e9},
        {"--lr-scale", CLI_FLOAT, &op.lr_scale, "the learned optimizer's lr_scale during meta-training", 1e-6, 1e6},
        {"--horizon", CLI_STRING, &op.horizon,
         "how task horizons are drawn: uniform or log-uniform in [--horizon-min, --horizon-max], or constant "
         "(--horizon-max)"},
        {"--horizon-min", CLI_INT, &op.horizon_min, "shortest task horizon T (inner steps)", 1, 1e9},
        {"--horizon-max", CLI_INT, &op.horizon_max, "longest task horizon T (inner steps)", 1, 1e9},
        {"--seed", CLI_INT, &op.seed, "seed of the optimizer's initialisation, task sampling and data", 0, 9e15},
        {"--threads", CLI_INT, &op.threads,
         "OpenMP threads (0: all cores; 1 is fastest for these small tensors on a busy machine)", 0, 1024},
        {"--task-threads", CLI_INT, &op.task_threads,
         "tasks estimated at once, one inner thread each (the results do not depend on it)", 1, 1024},
        {"--out", CLI_STRING, &op.out, "output directory (default meta_runs/OPTIMIZER)"},
        {"--checkpoint-every", CLI_INT, &op.checkpoint_every, "iterations between checkpoints", 1, 1e9},
        {"--val-tasks", CLI_INT, &op.val_tasks, "held-out tasks trained from scratch to validate (0: none)", 0, 1000},
        {"--val-steps", CLI_INT, &op.val_steps, "steps of each validation task", 1, 1e9},
        {"--select-final", CLI_FLAG, &op.select_final,
         "keep as best the weights with the lowest final validation loss (log of the mean of the last 5% of the "
         "steps, as bench/eval_optimizers reports) instead of the lowest mean log loss over all steps"},
        {"--val-every", CLI_INT, &op.val_every, "iterations between validations (0: at each checkpoint)", 0, 1e9},
        {"--resume", CLI_FLAG, &op.resume, "continue the run checkpointed in --out (same options)"},
        {"--init", CLI_STRING, &op.init, "start from the weights of this optimizer checkpoint, or from the weights "
                                         "built into mnemo with builtin (or builtin:KIND, KIND the --optimizer)"},
        {"--data-dir", CLI_STRING, &op.data_dir, "Fashion-MNIST directory (default " MN_FASHION_MNIST_DIR ")"},
    };
    cli_spec spec = {"meta_train", "[options]",
                     "Meta-trains a learned optimizer on tasks sampled from a family: each iteration trains B tasks\n"
                     "K more steps (a truncation) with the optimizer, takes the mean log loss after each step on fresh\n"
                     "batches as the meta-loss, estimates its gradient w.r.t. the optimizer's weights (truncated\n"
                     "backprop, or PES/ES from antithetic perturbed copies of each task), clips each task's estimate,\n"
                     "averages them and takes one Adam step on the weights. A task is replaced by a new one at its\n"
                     "horizon. PES example: --estimator pes --pairs 4 --sigma 0.01 --horizon log-uniform\n"
                     "--horizon-min 100 --horizon-max 3000 --task-threads 2.",
                     opts, (int)(sizeof opts / sizeof opts[0])};
    op.rank = mn_meta_mpi_init(&argc, &argv, &op.ranks);
    int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
    if (rc) {
        mn_meta_mpi_finalize();
        return rc == 1 ? 0 : 2;
    }
    mn_lopt_kind kind;
    if (!mn_lopt_kind_parse(op.optimizer, &kind)) {
        fprintf(stderr, "meta_train: unknown --optimizer '%s' (lstm, mnemosyne-c or mnemosyne-t)\n", op.optimizer);
        return 2;
    }
    mn_estimator_kind est_kind;
    mn_horizon_kind horizon_kind;
    if (!mn_estimator_kind_parse(op.estimator, &est_kind)) {
        fprintf(stderr, "meta_train: unknown --estimator '%s' (tbptt, pes or es)\n", op.estimator);
        return 2;
    }
    if (!mn_horizon_kind_parse(op.horizon, &horizon_kind)) {
        fprintf(stderr, "meta_train: unknown --horizon '%s' (uniform, log-uniform or constant)\n", op.horizon);
        return 2;
    }
    if (est_kind != MN_ESTIMATOR_TBPTT && (op.second_order || op.store_steps)) {
        fprintf(stderr, "meta_train: --second-order and --store-steps are for --estimator tbptt\n");
        return 2;
    }
    if (op.horizon_max < op.horizon_min) {
        fprintf(stderr, "meta_train: --horizon-max %ld is below --horizon-min %ld\n", op.horizon_max, op.horizon_min);
        return 2;
    }
    if (op.image_size != 0 && op.image_size != 14 && op.image_size != 28) {
        fprintf(stderr, "meta_train: --image-size %ld (14, 28 or 0)\n", op.image_size);
        return 2;
    }
    char default_out[256];
    if (!op.out) snprintf(default_out, sizeof default_out, "meta_runs/%s", op.optimizer), op.out = default_out;
    cli_threads("meta_train", op.threads);
    mn_err err;
    if (!mn_make_dirs(op.out, &err)) {
        fprintf(stderr, "meta_train: %s\n", err.msg);
        return 1;
    }

    mn_meta_data *data = mn_meta_data_new(op.data_dir, NULL, op.out, 0);
    mn_meta_family *family = mn_meta_family_new(op.family, data, (int)op.image_size, op.widths, &err);
    if (!family) {
        fprintf(stderr, "meta_train: %s\n", err.msg);
        mn_meta_data_free(data);
        return 1;
    }
    mn_lopt *o = NULL;
    if (op.init) { /* also when resuming: its random features are the run's */
        const char *builtin = !strncmp(op.init, "builtin", 7) && (!op.init[7] || op.init[7] == ':') ? op.init + 7 : NULL;
        mn_lopt_kind asked = kind;
        if (builtin && *builtin && !mn_lopt_kind_parse(builtin + 1, &asked)) {
            mn_err_set(&err, "unknown kind \"%s\" in %s (lstm, mnemosyne-c or mnemosyne-t)", builtin + 1, op.init);
        } else if (builtin && asked != kind) {
            mn_err_set(&err, "%s is not the --optimizer %s", op.init, op.optimizer);
        } else {
            o = builtin ? mn_lopt_pretrained(kind, &err) : mn_lopt_load(op.init, &err);
        }
        if (o && mn_lopt_get_config(o)->kind != kind) {
            mn_err_set(&err, "%s holds a %s optimizer, not %s", op.init, mn_lopt_kind_name(mn_lopt_get_config(o)->kind),
                       op.optimizer);
            mn_lopt_free(o);
            o = NULL;
        }
        if (!o) {
            fprintf(stderr, "meta_train: --init: %s\n", err.msg);
            mn_meta_family_free(family);
            mn_meta_data_free(data);
            return 1;
        }
    } else {
        o = mn_lopt_new(kind, (uint64_t)op.seed);
    }
    mn_meta_trainer_opts to = mn_meta_trainer_default_opts();
    to.tasks = (int)op.tasks;
    to.estimator.unroll.steps = (int)op.unroll;
    to.estimator.unroll.second_order = op.second_order;
    to.estimator.unroll.plain_mean = op.plain_loss;
    to.estimator.unroll.store_steps = op.store_steps;
    to.estimator.unroll.lr_scale = (float)op.lr_scale;
    to.estimator.clip = (float)op.clip;
    to.estimator.kind = est_kind;
    to.estimator.sigma = (float)op.sigma;
    to.estimator.pairs = (int)op.pairs;
    to.horizon = horizon_kind;
    to.task_threads = (int)op.task_threads;
    to.meta_lr = (float)op.meta_lr;
    to.horizon_min = op.horizon_min, to.horizon_max = op.horizon_max;
    to.seed = (uint64_t)op.seed;
    mn_meta_trainer *tr = mn_meta_trainer_new(o, family, &to);

    int status = run(&op, tr, o, family);
    mn_meta_trainer_free(tr);
    mn_lopt_free(o);
    mn_meta_family_free(family);
    mn_meta_data_free(data);
    mn_meta_mpi_finalize();
    return status;
}
