/* eval_optimizers: trains evaluation tasks with hand-designed and learned optimizers from the same
 * initialisation and data order, over several seeds, and compares them: a Markdown table (final
 * train loss, test loss and metric, wall time, optimizer state bytes per parameter), one SVG plot of
 * the training-loss curves per task, and optionally JSON:
 *   {TASK: {OPTIMIZER: {"final_train_loss": [per seed], "test_loss": [...], "test_metric": [...],
 *                       "wall_time_s": [...], "state_bytes_per_param": x, "lr": best}}}
 * Hand-designed optimizers named without a learning rate ("sgd", "adam", "adamw") are run over a
 * learning-rate grid with --grid; the best by mean final train loss is reported. */
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

#define DEFAULT_TASKS "mlp:784-256-256-10:relu,vit:fm:dim64:depth2:heads2,bert:tiny:mlm"
#define DEFAULT_OPTIMIZERS "sgd:0.1,adam:0.001,lstm,mnemosyne-c,mnemosyne-t"

typedef struct {
    const char *tasks, *optimizers, *out, *json, *work, *data_dir, *fortunes_dir, *grid_sgd, *grid_adam;
    long steps, seeds, first_seed, test_size, threads;
    long grid_seeds; /* grid points run on the first grid_seeds seeds; the best then runs on all */
    bool grid;
} options;

/* One optimizer on one task: per-seed results and curves. */
typedef struct {
    char label[160]; /* the optimizer spec as given */
    char spec[192];  /* what was run (the best of a grid) */
    double lr;       /* NAN for the learned optimizers' lr_scale-free specs */
    int seeds;
    double *final_loss, *test_loss, *test_metric, *wall; /* [seeds] */
    double state_bytes_per_param;
    long steps;
    double *curve; /* [seeds * steps] training losses, NAN after a divergence */
} result;

static void result_alloc(result *r, int seeds, long steps) {
    r->seeds = seeds, r->steps = steps;
    r->final_loss = calloc((size_t)seeds * 4, sizeof(double));
    r->test_loss = r->final_loss + seeds, r->test_metric = r->test_loss + seeds, r->wall = r->test_metric + seeds;
    r->curve = malloc(sizeof(double) * (size_t)seeds * (size_t)steps);
    if (!r->final_loss || !r->curve) mn_fatal("eval_optimizers: out of memory");
}

static void result_free(result *r) {
    free(r->final_loss);
    free(r->curve);
}

static void mean_std(const double *v, int n, double *mean, double *std) {
    double s = 0, ss = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            *mean = *std = NAN;
            return;
        }
        s += v[i], k++;
    }
    *mean = s / k;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = k > 1 ? sqrt(ss / (k - 1)) : 0;
}

/* ---- one training run ---------------------------------------------------------------------------------- */
typedef struct {
    progress pr;
    int64_t done_steps; /* over the whole evaluation, for the progress line */
} tracker;

/* Trains task_spec (seed) with opt_spec for steps steps into slot s of r. False and err on a bad spec. */
static bool train_once(const char *task_spec, const char *opt_spec, uint64_t seed, int s, result *r, mn_meta_data *d,
                       tracker *tk, mn_err *err) {
    bench_task *t = bench_task_new(task_spec, seed, d, err);
    if (!t) return false;
    mn_optimizer *o = mn_optim_from_spec(opt_spec, &t->params, err);
    if (!o) {
        bench_task_free(t);
        return false;
    }
    double *curve = r->curve + (size_t)s * (size_t)r->steps, start = progress_now();
    long last = -1;
    for (long step = 0; step < r->steps; step++) curve[step] = NAN;
    for (long step = 0; step < r->steps; step++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *loss = t->train_loss(t);
        double v = mn_item(loss);
        curve[step] = v;
        if (isfinite(v)) {
            mn_optim_zero_grad(o);
            mn_backward(loss);
            mn_optim_step(o);
            last = step;
        }
        mn_scope_end(sc);
        char extra[300];
        snprintf(extra, sizeof extra, "%s | %s | seed %llu", task_spec, opt_spec, (unsigned long long)seed);
        tk->done_steps++;
        progress_update_extra(&tk->pr, tk->done_steps, v, tk->done_steps, extra);
        if (!isfinite(v)) break; /* diverged: the remaining losses stay NAN */
    }
    r->wall[s] = progress_now() - start;
    /* the final train loss: mean over the last 5% of the steps (at least one) */
    long window = r->steps / 20 > 1 ? r->steps / 20 : 1;
    double sum = 0;
    for (long step = r->steps - window; step < r->steps; step++) sum += curve[step];
    r->final_loss[s] = last == r->steps - 1 ? sum / (double)window : NAN;
    if (isfinite(r->final_loss[s])) t->evaluate(t, &r->test_loss[s], &r->test_metric[s]);
    else r->test_loss[s] = r->test_metric[s] = NAN;
    r->state_bytes_per_param = (double)mn_optim_state_bytes(o) / (double)mn_params_numel(&t->params);
    mn_optim_free(o);
    bench_task_free(t);
    return true;
}

/* Seeds [from, to) of opt_spec into r. */
static bool run_seeds(const options *op, const char *task_spec, const char *opt_spec, int from, int to, result *r,
                      mn_meta_data *d, tracker *tk, mn_err *err) {
    snprintf(r->spec, sizeof r->spec, "%s", opt_spec);
    for (int s = from; s < to; s++)
        if (!train_once(task_spec, opt_spec, (uint64_t)(op->first_seed + s), s, r, d, tk, err)) return false;
    return true;
}

/* ---- optimizer specs and grids ------------------------------------------------------------------------ */
static bool is_hand_designed(const char *name) {
    return !strncmp(name, "sgd", 3) || !strncmp(name, "adamw", 5) || !strncmp(name, "adam", 4);
}

/* "a,b,c" -> owned strings */
static char **split_list(const char *s, int *n) {
    char *copy = strdup(s), **out = NULL;
    *n = 0;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        out = realloc(out, sizeof *out * (size_t)(*n + 1));
        out[(*n)++] = strdup(tok);
    }
    free(copy);
    return out;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static bool parse_grid(const char *s, double **out, int *n) {
    char **items = split_list(s, n);
    *out = malloc(sizeof(double) * (size_t)(*n ? *n : 1));
    bool ok = *n > 0;
    for (int i = 0; ok && i < *n; i++) {
        char *end;
        (*out)[i] = strtod(items[i], &end);
        ok = *end == '\0' && (*out)[i] > 0 && isfinite((*out)[i]);
    }
    free_list(items, *n);
    return ok;
}

/* Evaluates one optimizer spec on one task (over its grid when it names no learning rate). */
static bool evaluate_optimizer(const options *op, const char *task_spec, const char *label, const double *grid,
                               int n_grid, result *best, mn_meta_data *d, tracker *tk, mn_err *err) {
    snprintf(best->label, sizeof best->label, "%s", label);
    bool gridded = is_hand_designed(label) && !strchr(label, ':');
    if (!gridded) {
        result_alloc(best, (int)op->seeds, op->steps);
        const char *colon = strchr(label, ':');
        best->lr = is_hand_designed(label) && colon ? atof(colon + 1) : NAN;
        return run_seeds(op, task_spec, label, 0, (int)op->seeds, best, d, tk, err);
    }
    double best_mean = INFINITY;
    bool have = false;
    int grid_seeds = op->grid_seeds > 0 && op->grid_seeds < op->seeds ? (int)op->grid_seeds : (int)op->seeds;
    for (int g = 0; g < n_grid; g++) {
        result r = {0};
        result_alloc(&r, (int)op->seeds, op->steps);
        char spec[192];
        snprintf(spec, sizeof spec, "%s:%g", label, grid[g]);
        r.lr = grid[g];
        if (!run_seeds(op, task_spec, spec, 0, grid_seeds, &r, d, tk, err)) {
            result_free(&r);
            if (have) result_free(best);
            return false;
        }
        double mean, std;
        mean_std(r.final_loss, grid_seeds, &mean, &std);
        fprintf(stderr, "%s | %s: final train loss %.5g (seeds %d)\n", task_spec, spec, mean, grid_seeds);
        if (!have || (isfinite(mean) && !(mean >= best_mean))) {
            if (have) result_free(best);
            snprintf(r.label, sizeof r.label, "%s", label);
            *best = r;
            best_mean = isfinite(mean) ? mean : INFINITY;
            have = true;
        } else {
            result_free(&r);
        }
    }
    char chosen[sizeof best->spec];
    snprintf(chosen, sizeof chosen, "%s", best->spec);
    return run_seeds(op, task_spec, chosen, grid_seeds, (int)op->seeds, best, d, tk, err);
}

/* ---- reports ----------------------------------------------------------------------------------------------- */
static void cell(char *buf, size_t n, const double *v, int k, const char *fmt) {
    double m, s;
    mean_std(v, k, &m, &s);
    if (!isfinite(m)) snprintf(buf, n, "diverged");
    else if (k > 1) {
        char a[32], b[32];
        snprintf(a, sizeof a, fmt, m);
        snprintf(b, sizeof b, fmt, s);
        snprintf(buf, n, "%s ± %s", a, b);
    } else snprintf(buf, n, fmt, m);
}

static void markdown_table(FILE *f, const char *task, const result *rs, int n, const options *op,
                           const char *metric) {
    fprintf(f, "### %s\n\n%ld steps, seeds %ld..%ld (mean ± std)", task, op->steps, op->first_seed,
            op->first_seed + op->seeds - 1);
    if (op->grid && op->grid_seeds == 1 && op->seeds > 1)
        fprintf(f, "; grid learning rates chosen on seed %ld", op->first_seed);
    else if (op->grid && op->grid_seeds > 1 && op->grid_seeds < op->seeds)
        fprintf(f, "; grid learning rates chosen on seeds %ld..%ld", op->first_seed, op->first_seed + op->grid_seeds - 1);
    fprintf(f, "\n\n");
    fprintf(f, "| optimizer | lr | final train loss | test loss | test %s | wall time (s) | state bytes / param |\n",
            metric ? metric : "metric");
    fprintf(f, "|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        char lr[32] = "—", fl[96], tl[96], tm[96], wt[96];
        if (isfinite(r->lr)) snprintf(lr, sizeof lr, "%g", r->lr);
        cell(fl, sizeof fl, r->final_loss, r->seeds, "%.4f");
        cell(tl, sizeof tl, r->test_loss, r->seeds, "%.4f");
        if (metric) cell(tm, sizeof tm, r->test_metric, r->seeds, "%.4f");
        else snprintf(tm, sizeof tm, "—");
        cell(wt, sizeof wt, r->wall, r->seeds, "%.2f");
        fprintf(f, "| %s | %s | %s | %s | %s | %s | %.1f |\n", r->label, lr, fl, tl, tm, wt, r->state_bytes_per_param);
    }
    fprintf(f, "\n");
}

static void plot_task(const char *dir, const char *task, const result *rs, int n) {
    char name[256], path[4400];
    size_t k = 0;
    for (const char *p = task; *p && k < sizeof name - 1; p++)
        name[k++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'
                               ? *p
                               : '_');
    name[k] = '\0';
    snprintf(path, sizeof path, "%s/loss_%s.svg", dir, name);
    svg_series *series = calloc((size_t)n, sizeof *series);
    double **ys = calloc((size_t)n, sizeof *ys), *xs = malloc(sizeof(double) * (size_t)(rs[0].steps + 1));
    long steps = rs[0].steps, win = steps / 50 > 1 ? steps / 50 : 1;
    for (long s = 0; s < steps; s++) xs[s] = (double)(s + 1);
    for (int i = 0; i < n; i++) {
        ys[i] = malloc(sizeof(double) * (size_t)steps);
        for (long s = 0; s < steps; s++) { /* mean over seeds of a trailing moving average */
            double sum = 0;
            long c = 0;
            for (int seed = 0; seed < rs[i].seeds; seed++)
                for (long j = s - win + 1 < 0 ? 0 : s - win + 1; j <= s; j++)
                    sum += rs[i].curve[(size_t)seed * (size_t)steps + (size_t)j], c++;
            ys[i][s] = sum / (double)c; /* NAN once a seed diverged: the line stops */
        }
        series[i] = (svg_series){rs[i].label, xs, ys[i], (int)steps, false};
    }
    char title[300];
    snprintf(title, sizeof title, "%s: training loss (mean over seeds, moving average of %ld)", task, win);
    if (svg_plot(path, title, "step", "training loss", true, series, n) != 0)
        fprintf(stderr, "eval_optimizers: cannot write %s\n", path);
    for (int i = 0; i < n; i++) free(ys[i]);
    free(ys);
    free(xs);
    free(series);
}

static json_t *json_values(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
    return a;
}

static json_t *json_task(const result *rs, int n) {
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        json_t *e = json_object();
        json_object_set_new(e, "final_train_loss", json_values(r->final_loss, r->seeds));
        json_object_set_new(e, "test_loss", json_values(r->test_loss, r->seeds));
        json_object_set_new(e, "test_metric", json_values(r->test_metric, r->seeds));
        json_object_set_new(e, "wall_time_s", json_values(r->wall, r->seeds));
        json_object_set_new(e, "state_bytes_per_param", json_real(r->state_bytes_per_param));
        json_object_set_new(e, "lr", isfinite(r->lr) ? json_real(r->lr) : json_null());
        json_object_set_new(e, "spec", json_string(r->spec));
        json_object_set_new(o, r->label, e);
    }
    return o;
}

/* Every spec is checked before the long part: the tasks (reading their data) and the optimizers.
 * Returns 0, or 2 after printing what is wrong. */
static int check_specs(const options *op, char **tasks, int n_tasks, char **optims, int n_opts, mn_meta_data *d) {
    for (int j = 0; j < n_opts; j++)
        if (is_hand_designed(optims[j]) && !strchr(optims[j], ':') && !op->grid) {
            fprintf(stderr, "eval_optimizers: optimizer \"%s\" names no learning rate: give one (%s:LR) or --grid\n",
                    optims[j], optims[j]);
            return 2;
        }
    mn_err err;
    for (int i = 0; i < n_tasks; i++) {
        mn_scope sc = mn_scope_begin();
        bench_task *t = bench_task_new(tasks[i], 0, d, &err);
        if (!t) fprintf(stderr, "eval_optimizers: %s\n", err.msg);
        bool ok = t != NULL;
        for (int j = 0; ok && j < n_opts; j++) {
            char s[192];
            bool no_lr = is_hand_designed(optims[j]) && !strchr(optims[j], ':');
            snprintf(s, sizeof s, "%s%s", optims[j], no_lr ? ":0.1" : "");
            mn_optimizer *o = mn_optim_from_spec(s, &t->params, &err);
            if (!o) fprintf(stderr, "eval_optimizers: optimizer \"%s\": %s\n", optims[j], err.msg);
            ok = o != NULL;
            mn_optim_free(o);
        }
        if (ok) fprintf(stderr, "task %s: %lld parameters\n", tasks[i], (long long)mn_params_numel(&t->params));
        bench_task_free(t);
        mn_scope_end(sc);
        if (!ok) return 2;
    }
    return 0;
}

typedef struct {
    char **tasks, **optims;
    int n_tasks, n_opts, n_sgd, n_adam;
    double *grid_sgd, *grid_adam;
} plan;

/* Runs everything, writing the reports; 0 or 1 (after printing the error). */
static int evaluate_all(const options *op, const plan *pl, mn_meta_data *d) {
    int64_t total = 0;
    for (int j = 0; j < pl->n_opts; j++) {
        bool gridded = op->grid && is_hand_designed(pl->optims[j]) && !strchr(pl->optims[j], ':');
        int n_grid = strncmp(pl->optims[j], "sgd", 3) ? pl->n_adam : pl->n_sgd;
        long grid_seeds = op->grid_seeds > 0 && op->grid_seeds < op->seeds ? op->grid_seeds : op->seeds;
        total += gridded ? n_grid * grid_seeds + (op->seeds - grid_seeds) : op->seeds;
    }
    total *= (int64_t)pl->n_tasks * op->steps;
    tracker tk = {0};
    progress_start(&tk.pr, total, "steps");
    mn_err err;
    json_t *root = json_object();
    char *md = NULL;
    size_t md_len = 0;
    FILE *mdf = open_memstream(&md, &md_len);
    fprintf(mdf, "## Optimizer evaluation\n\n");
    int status = 0;
    for (int i = 0; i < pl->n_tasks && !status; i++) {
        const char *task = pl->tasks[i], *metric = NULL;
        result *rs = calloc((size_t)pl->n_opts, sizeof *rs);
        bench_task *t = bench_task_new(task, 0, d, &err);
        metric = t ? t->metric_name : NULL;
        bench_task_free(t);
        int n_done = 0;
        for (int j = 0; j < pl->n_opts; j++) {
            bool sgd = !strncmp(pl->optims[j], "sgd", 3);
            if (!evaluate_optimizer(op, task, pl->optims[j], sgd ? pl->grid_sgd : pl->grid_adam,
                                    sgd ? pl->n_sgd : pl->n_adam, &rs[j], d, &tk, &err)) {
                fprintf(stderr, "eval_optimizers: %s\n", err.msg);
                status = 1;
                break;
            }
            n_done++;
        }
        if (n_done == pl->n_opts) {
            markdown_table(mdf, task, rs, pl->n_opts, op, metric);
            markdown_table(stdout, task, rs, pl->n_opts, op, metric);
            fflush(stdout);
            plot_task(op->out, task, rs, pl->n_opts);
            json_object_set_new(root, task, json_task(rs, pl->n_opts));
        }
        for (int j = 0; j < n_done; j++) result_free(&rs[j]);
        free(rs);
    }
    fclose(mdf);
    char path[4200];
    snprintf(path, sizeof path, "%s/results.md", op->out);
    if (!status && !mn_write_file_atomic(path, md, md_len, &err)) {
        fprintf(stderr, "eval_optimizers: %s\n", err.msg);
        status = 1;
    }
    if (!status && op->json) {
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        if (!mn_write_file_atomic(op->json, text, strlen(text), &err)) {
            fprintf(stderr, "eval_optimizers: %s\n", err.msg);
            status = 1;
        }
        free(text);
    }
    if (!status)
        fprintf(stderr, "wrote %s%s%s and the loss plots in %s\n", path, op->json ? " and " : "",
                op->json ? op->json : "", op->out);
    free(md);
    json_decref(root);
    return status;
}

/* ---- main ---------------------------------------------------------------------------------------------------- */
int main(int argc, char **argv) {
    options op = {.tasks = DEFAULT_TASKS, .optimizers = DEFAULT_OPTIMIZERS, .out = "eval_results", .steps = 500,
                  .seeds = 3, .test_size = 2000, .threads = 1, .grid_sgd = "0.003,0.01,0.03,0.1,0.3,1",
                  .grid_adam = "0.0001,0.0003,0.001,0.003,0.01"};
    cli_opt opts[] = {
        {"--tasks", CLI_STRING, &op.tasks, "comma-separated task specs"},
        {"--optimizers", CLI_STRING, &op.optimizers,
         "comma-separated optimizer specs: sgd:LR, adam:LR, adamw:LR, lstm[:CKPT], mnemosyne-c[:CKPT], "
         "mnemosyne-t[:CKPT]; sgd, adam, adamw without LR with --grid"},
        {"--steps", CLI_INT, &op.steps, "training steps per run", 1, 1e9},
        {"--seeds", CLI_INT, &op.seeds, "seeds per (task, optimizer): initialisation and data order", 1, 1000},
        {"--first-seed", CLI_INT, &op.first_seed, "the first seed", 0, 1e15},
        {"--grid", CLI_FLAG, &op.grid, "search the learning rate of sgd / adam / adamw specs named without one"},
        {"--grid-sgd", CLI_STRING, &op.grid_sgd, "learning rates tried for sgd"},
        {"--grid-adam", CLI_STRING, &op.grid_adam, "learning rates tried for adam and adamw"},
        {"--grid-seeds", CLI_INT, &op.grid_seeds,
         "seeds each grid point runs on (the first ones; 0: all); the best learning rate then runs on all", 0, 1000},
        {"--test-size", CLI_INT, &op.test_size, "test samples evaluated (0: all; BERT uses at most 512 texts)", 0,
         1e9},
        {"--out", CLI_STRING, &op.out, "directory for results.md and the loss plots"},
        {"--json", CLI_STRING, &op.json, "also write the results as JSON to this file"},
        {"--work", CLI_STRING, &op.work, "directory for caches such as the fortunes vocabulary (default --out)"},
        {"--data-dir", CLI_STRING, &op.data_dir, "Fashion-MNIST directory (default " MN_FASHION_MNIST_DIR ")"},
        {"--fortunes-dir", CLI_STRING, &op.fortunes_dir, "fortunes directory (default " MN_FORTUNES_DIR ")"},
        {"--threads", CLI_INT, &op.threads, "OpenMP threads (0: all cores)", 0, 1024},
    };
    cli_spec spec = {"eval_optimizers", "[options]",
                     "Trains each task with each optimizer from the same initialisation and data order over several\n"
                     "seeds and reports final train loss, test loss and metric, wall time and optimizer state size\n"
                     "(Markdown table, loss-curve plots, optional JSON).",
                     opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    cli_threads("eval_optimizers", op.threads);
    plan pl = {0};
    pl.tasks = split_list(op.tasks, &pl.n_tasks);
    pl.optims = split_list(op.optimizers, &pl.n_opts);
    mn_err err;
    mn_meta_data *d = NULL;
    int status = 0;
    if (!parse_grid(op.grid_sgd, &pl.grid_sgd, &pl.n_sgd) || !parse_grid(op.grid_adam, &pl.grid_adam, &pl.n_adam)) {
        fprintf(stderr, "eval_optimizers: --grid-sgd / --grid-adam expect comma-separated positive numbers\n");
        status = 2;
    } else if (pl.n_tasks == 0 || pl.n_opts == 0) {
        fprintf(stderr, "eval_optimizers: give at least one task and one optimizer\n");
        status = 2;
    } else if (!mn_make_dirs(op.out, &err)) {
        fprintf(stderr, "eval_optimizers: %s\n", err.msg);
        status = 1;
    }
    if (!status) {
        d = mn_meta_data_new(op.data_dir, op.fortunes_dir, op.work ? op.work : op.out, op.test_size);
        status = check_specs(&op, pl.tasks, pl.n_tasks, pl.optims, pl.n_opts, d);
    }
    if (!status) status = evaluate_all(&op, &pl, d);
    mn_meta_data_free(d);
    free_list(pl.tasks, pl.n_tasks);
    free_list(pl.optims, pl.n_opts);
    free(pl.grid_sgd);
    free(pl.grid_adam);
    return status;
}
