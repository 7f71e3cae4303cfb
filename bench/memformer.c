/* memformer: reproduces "Memory-augmented Transformers can implement linear
 * first-order optimization methods" (Dutta & Sra, arXiv 2410.07263) on random
 * linear regression in context (d = 5, n = 20).
 *
 * For each setting (isotropic, non-isotropic) and seed, and each depth L = 1…Lmax:
 *   - baselines that see each prompt and learn nothing: CGD, GD with a step size
 *     tuned on a validation draw, oracle preconditioned GD (Σ⁻¹, tuned step), L steps;
 *   - the linear Transformer, trained with Adam on fresh batches (phase 1), then the
 *     CGD-like and LFOM Memformers started from its Q̃ and fine-tuned jointly with
 *     their memory coefficients (phase 2), while the linear Transformer trains on for
 *     the same number of steps;
 * and reports ln test MSE on fresh prompts, mean ± std over seeds, as Markdown,
 * JSON and an SVG plot. All models of one (setting, seed) train in lockstep on the
 * same batches; (setting, seed) pairs run in parallel worker processes. */
#include "common/memformer_baselines.h"
#include "../examples/common/cli.h"
#include "common/memformer_model.h"
#include "common/memformer_report.h"
#include "optim/optim.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int d, n, layers, seeds, first_seed;
    long batch, iters, finetune_iters, test_size, val_size;
    double lr, finetune_lr, clip, init_std;
    int n_settings;
    bool isotropic[MF_MAX_SETTINGS];
    int jobs, threads;
    const char *out_dir;
    bool quick, scalar_q;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: memformer [options]\n"
            "Trains the linear Transformer, the CGD-like Memformer and the LFOM Memformer on in-context\n"
            "linear regression and compares them with CGD, tuned GD and oracle preconditioned GD.\n\n"
            "  --d N              covariate dimension (default 5)\n"
            "  --n N              context pairs per prompt (default 20)\n"
            "  --layers N         depths L = 1..N (default 4)\n"
            "  --seeds N          seeds 0..N-1 (default 5)\n"
            "  --first-seed N     start the seeds at N instead of 0\n"
            "  --setting S        isotropic, non-isotropic or both (default both)\n"
            "  --batch N          prompts per training batch (default 1000)\n"
            "  --iters N          phase 1: linear Transformer steps (default 5000)\n"
            "  --finetune-iters N phase 2: steps of all three models (default 2000)\n"
            "  --lr X             Adam learning rate, phase 1 (default 0.01)\n"
            "  --finetune-lr X    Adam learning rate, phase 2 (default 0.001)\n"
            "  --clip X           clip each parameter's gradient to this L2 norm (default 0.01)\n"
            "  --init-std X       std of the initial Q entries (default 1e-4)\n"
            "  --test-size N      test prompts per seed (default 1000)\n"
            "  --val-size N       validation prompts for tuning the GD step sizes (default 1000)\n"
            "  --jobs N           worker processes, one (setting, seed) at a time each (default 2)\n"
            "  --threads N        OpenMP threads per worker (default 1)\n"
            "  --scalar-q         learn Q̃ = q I per layer (step sizes only, no preconditioner), as the\n"
            "                     authors' identity_q constraint\n"
            "  --out DIR          results.md, results.json, ln_mse_vs_L.svg (default bench/results/memformer)\n"
            "  --quick            2 seeds, batch 400, 300 + 150 steps: a smoke run well under a minute\n"
            "  --help             this text\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    long v;
    if (!parse_long(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

static bool parse_pos_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v) || v <= 0) return false;
    *out = v;
    return true;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* ---- seeds: every random stream is derived from (seed, setting, purpose, depth) ---------------------- */
enum { STREAM_U = 1, STREAM_TEST, STREAM_VAL, STREAM_TRAIN, STREAM_INIT };

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t stream_seed(uint64_t seed, bool isotropic, int purpose, int layers) {
    uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ (isotropic ? 0x150ull : 0xa150ull));
    h = splitmix64(h ^ (uint64_t)purpose);
    return splitmix64(h ^ (uint64_t)layers);
}

/* ---- worker -> parent messages (each well under PIPE_BUF, so writes are atomic) ------------------------ */
enum { MSG_PROGRESS = 1, MSG_RESULT, MSG_ITEM_DONE };

typedef struct {
    int type;
    int setting, seed, method, layer, phase;
    double value;  /* ln MSE (result), loss of the deepest linear Transformer (progress), seconds (done) */
    double eta;    /* tuned step size (GD, PGD results) */
    int64_t work;  /* progress: work units this worker has finished */
    int64_t step, steps;
} worker_msg;

typedef struct {
    int fd;
    int64_t work;
    double last_report;
} reporter;

static void send_msg(reporter *rep, worker_msg msg) {
    const char *p = (const char *)&msg;
    size_t left = sizeof msg;
    while (left) {
        ssize_t k = write(rep->fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(3); /* the parent is gone */
        p += k;
        left -= (size_t)k;
    }
}

static void send_result(reporter *rep, int setting, int seed, int method, int layer, double mse, double eta) {
    send_msg(rep, (worker_msg){.type = MSG_RESULT, .setting = setting, .seed = seed, .method = method,
                               .layer = layer, .value = log(mse), .eta = eta});
}

/* ---- training ------------------------------------------------------------------------------------------ */

/* Scales each parameter's gradient to L2 norm at most max_norm, one tensor at a time. */
static void clip_each_gradient(const mn_params *params, float max_norm) {
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < params->count; i++) {
        mn_tensor *g = params->items[i].tensor->grad;
        if (!g) continue;
        mn_tensor *c = mnt_contiguous(g);
        const float *v = mn_data(c);
        double sq = 0;
        for (int64_t k = 0; k < mn_numel(c); k++) sq += (double)v[k] * v[k];
        double norm = sqrt(sq);
        if (norm > max_norm) mnt_scale_(g, (float)(max_norm / norm));
    }
    mn_scope_end(sc);
}

static float train_step(mf_model *m, mn_optimizer *opt, mn_tensor *z, mn_tensor *y, float clip) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *loss = mf_loss(m, z, y);
    mn_optim_zero_grad(opt);
    mn_backward(loss);
    clip_each_gradient(&m->params, clip);
    mn_optim_step(opt);
    float v = mn_item(loss);
    mn_scope_end(sc);
    return v;
}

static double test_mse(const mf_model *m, mn_tensor *z, mn_tensor *y) {
    mn_scope sc = mn_scope_begin();
    bool prev = mn_no_grad_begin();
    double mse = mn_item(mf_loss(m, z, y));
    mn_no_grad_end(prev);
    mn_scope_end(sc);
    return mse;
}

static void report_progress(reporter *rep, int setting, int seed, int phase, int64_t step, int64_t steps,
                            double loss) {
    double now = now_seconds();
    if (step < steps && now - rep->last_report < 0.5) return;
    rep->last_report = now;
    send_msg(rep, (worker_msg){.type = MSG_PROGRESS, .setting = setting, .seed = seed, .phase = phase,
                               .step = step, .steps = steps, .value = loss, .work = rep->work});
}

/* Σ_{L=1}^{Lmax} L: layer-steps of one step of every depth */
static int64_t layer_sum(int layers) { return (int64_t)layers * (layers + 1) / 2; }

static int64_t item_work(const options *o) {
    return layer_sum(o->layers) * (o->iters + 3 * o->finetune_iters);
}

static void run_item(const options *o, int setting, int seed_index, reporter *rep) {
    const double t0 = now_seconds();
    const bool iso = o->isotropic[setting];
    const uint64_t seed = (uint64_t)(o->first_seed + seed_index);
    const int d = o->d, n = o->n, LM = o->layers;
    mf_task task;
    mf_task_init(&task, d, n, iso, stream_seed(seed, iso, STREAM_U, 0));
    mn_scope sc = mn_scope_begin();

    /* fixed test and validation draws */
    mn_rng g_test = mn_rng_new(stream_seed(seed, iso, STREAM_TEST, 0));
    mn_rng g_val = mn_rng_new(stream_seed(seed, iso, STREAM_VAL, 0));
    mn_tensor *z_test, *y_test, *z_val, *y_val;
    mf_task_sample(&task, &g_test, o->test_size, &z_test, &y_test);
    mf_task_sample(&task, &g_val, o->val_size, &z_val, &y_val);

    /* baselines */
    mf_prompts test, val;
    mf_prompts_init(&test, z_test, y_test);
    mf_prompts_init(&val, z_val, y_val);
    double *precond = malloc(sizeof(double) * (size_t)(d * d));
    mf_task_inverse_covariance(&task, precond);
    for (int L = 1; L <= LM; L++) {
        send_result(rep, setting, seed_index, MF_M_CGD, L, mf_cgd_mse(&test, L), 0);
        double eta = mf_gd_tune_step(&val, L, NULL);
        send_result(rep, setting, seed_index, MF_M_GD, L, mf_gd_mse(&test, L, eta, NULL), eta);
        eta = mf_gd_tune_step(&val, L, precond);
        send_result(rep, setting, seed_index, MF_M_PGD, L, mf_gd_mse(&test, L, eta, precond), eta);
    }
    mf_prompts_free(&test);
    mf_prompts_free(&val);
    free(precond);

    /* phase 1: linear Transformers of every depth, in lockstep on the same batches */
    mf_model lt[MF_MAX_LAYERS], mem_cgd[MF_MAX_LAYERS], mem_lfom[MF_MAX_LAYERS];
    mn_optimizer *opt_lt[MF_MAX_LAYERS], *opt_cgd[MF_MAX_LAYERS], *opt_lfom[MF_MAX_LAYERS];
    for (int L = 1; L <= LM; L++) {
        mn_rng g_init = mn_rng_new(stream_seed(seed, iso, STREAM_INIT, L));
        mf_model_init_ex(&lt[L - 1], MF_LINEAR_TRANSFORMER, d, n, L, &g_init, (float)o->init_std, o->scalar_q);
        opt_lt[L - 1] = mn_adam_new(&lt[L - 1].params, (float)o->lr, 0.9f, 0.999f, 1e-8f, 0.0f);
    }
    mn_rng g_train = mn_rng_new(stream_seed(seed, iso, STREAM_TRAIN, 0));
    const float clip = (float)o->clip;
    for (int64_t step = 1; step <= o->iters; step++) {
        mn_scope ss = mn_scope_begin();
        mn_tensor *z, *y;
        mf_task_sample(&task, &g_train, o->batch, &z, &y);
        float loss = 0;
        for (int L = 1; L <= LM; L++) loss = train_step(&lt[L - 1], opt_lt[L - 1], z, y, clip);
        mn_scope_end(ss);
        rep->work += layer_sum(LM);
        report_progress(rep, setting, seed_index, 1, step, o->iters, loss);
    }

    /* phase 2: both Memformers start from the linear Transformer's Q̃ with their memory at its
     * initial value (where they equal it) and train everything jointly; the linear
     * Transformer keeps training alongside with the same learning rate */
    for (int L = 1; L <= LM; L++) {
        mn_rng g_init = mn_rng_new(stream_seed(seed, iso, STREAM_INIT, L)); /* Q̃ is overwritten below */
        mf_model_init_ex(&mem_cgd[L - 1], MF_MEMFORMER_CGD, d, n, L, &g_init, (float)o->init_std, o->scalar_q);
        mf_model_init_ex(&mem_lfom[L - 1], MF_MEMFORMER_LFOM, d, n, L, &g_init, (float)o->init_std, o->scalar_q);
        mf_model_copy_q(&mem_cgd[L - 1], &lt[L - 1]);
        mf_model_copy_q(&mem_lfom[L - 1], &lt[L - 1]);
        const float lr2 = (float)o->finetune_lr;
        opt_cgd[L - 1] = mn_adam_new(&mem_cgd[L - 1].params, lr2, 0.9f, 0.999f, 1e-8f, 0.0f);
        opt_lfom[L - 1] = mn_adam_new(&mem_lfom[L - 1].params, lr2, 0.9f, 0.999f, 1e-8f, 0.0f);
        mn_optim_set_lr(opt_lt[L - 1], lr2);
    }
    for (int64_t step = 1; step <= o->finetune_iters; step++) {
        mn_scope ss = mn_scope_begin();
        mn_tensor *z, *y;
        mf_task_sample(&task, &g_train, o->batch, &z, &y);
        float loss = 0;
        for (int L = 1; L <= LM; L++) {
            loss = train_step(&lt[L - 1], opt_lt[L - 1], z, y, clip);
            train_step(&mem_cgd[L - 1], opt_cgd[L - 1], z, y, clip);
            train_step(&mem_lfom[L - 1], opt_lfom[L - 1], z, y, clip);
        }
        mn_scope_end(ss);
        rep->work += 3 * layer_sum(LM);
        report_progress(rep, setting, seed_index, 2, step, o->finetune_iters, loss);
    }

    for (int L = 1; L <= LM; L++) {
        send_result(rep, setting, seed_index, MF_M_LT, L, test_mse(&lt[L - 1], z_test, y_test), 0);
        send_result(rep, setting, seed_index, MF_M_MEM_CGD, L, test_mse(&mem_cgd[L - 1], z_test, y_test), 0);
        send_result(rep, setting, seed_index, MF_M_MEM_LFOM, L, test_mse(&mem_lfom[L - 1], z_test, y_test), 0);
        mn_optim_free(opt_lt[L - 1]);
        mn_optim_free(opt_cgd[L - 1]);
        mn_optim_free(opt_lfom[L - 1]);
        mf_model_free(&lt[L - 1]);
        mf_model_free(&mem_cgd[L - 1]);
        mf_model_free(&mem_lfom[L - 1]);
    }
    mn_scope_end(sc);
    send_msg(rep, (worker_msg){.type = MSG_ITEM_DONE, .setting = setting, .seed = seed_index,
                               .value = now_seconds() - t0, .work = rep->work});
}

static void worker_main(const options *o, int job, int fd) {
    omp_set_num_threads(o->threads);
    reporter rep = {.fd = fd};
    const int items = o->n_settings * o->seeds;
    for (int i = job; i < items; i += o->jobs) run_item(o, i / o->seeds, i % o->seeds, &rep);
    close(fd);
}

/* ---- parent: collect results, show progress, write the report ------------------------------------------- */

typedef struct {
    worker_msg last; /* latest progress */
    int64_t work;
    bool open;
    pid_t pid;
    int fd;
} job_state;

static void print_progress(const options *o, job_state *js, double start, bool final) {
    static double last_print;
    const double now = now_seconds();
    const bool tty = isatty(fileno(stderr));
    if (!final && now - last_print < (tty ? 1.0 : 15.0)) return;
    last_print = now;
    int64_t done = 0, total = (int64_t)o->n_settings * o->seeds * item_work(o);
    for (int j = 0; j < o->jobs; j++) done += js[j].work;
    const double el = now - start, eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    char els[32], etas[32];
    format_duration(el, els, sizeof els);
    format_duration(eta, etas, sizeof etas);
    fprintf(stderr, "%5.1f%%  elapsed %s  ETA %s", 100.0 * (double)done / (double)total, els, etas);
    for (int j = 0; j < o->jobs; j++) {
        const worker_msg *m = &js[j].last;
        if (!js[j].open || m->type != MSG_PROGRESS) continue;
        fprintf(stderr, "  | %s seed %d phase %d step %lld/%lld loss(L=%d) %.4f",
                o->isotropic[m->setting] ? "iso" : "non-iso", o->first_seed + m->seed, m->phase,
                (long long)m->step, (long long)m->steps, o->layers, m->value);
    }
    fprintf(stderr, tty && !final ? "\x1b[K\r" : "\n");
    fflush(stderr);
}

static bool make_dirs(const char *path, mn_err *err) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return mn_err_set(err, "%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return mn_err_set(err, "cannot create directory %s: %s", buf, strerror(errno));
        *p = c;
        if (!c) break;
    }
    return true;
}

static bool write_report(const options *o, const mf_results *res, const double *eta_sum, const int *eta_count,
                         double seconds) {
    mn_err err;
    if (!make_dirs(o->out_dir, &err)) {
        fprintf(stderr, "memformer: %s\n", err.msg);
        return false;
    }
    char path[4200], dur[32];
    format_duration(seconds, dur, sizeof dur);
    mf_text md = {0}, js = {0}, svg = {0};
    mf_text_printf(&md, "## Memformer reproduction: ln test MSE\n\n");
    mf_text_printf(&md,
                   "d = %d, n = %d, batch %ld, phase 1 %ld steps (Adam lr %g), phase 2 %ld steps (lr %g), "
                   "per-tensor gradient clip %g, init std %g, %ld test prompts and %ld validation prompts "
                   "per seed, seeds %d..%d%s%s; wall time %s with %d worker%s.\n\n",
                   o->d, o->n, o->batch, o->iters, o->lr, o->finetune_iters, o->finetune_lr, o->clip, o->init_std,
                   o->test_size, o->val_size, o->first_seed, o->first_seed + o->seeds - 1,
                   o->scalar_q ? ", Q̃ restricted to q I (--scalar-q)" : "", o->quick ? " (quick mode)" : "", dur,
                   o->jobs, o->jobs == 1 ? "" : "s");
    mf_report_markdown_tables(&md, res);
    mf_text_printf(&md, "Tuned step sizes η (mean over seeds):\n\n| setting | method |");
    for (int l = 1; l <= o->layers; l++) mf_text_printf(&md, " L = %d |", l);
    mf_text_printf(&md, "\n|---|---|");
    for (int l = 1; l <= o->layers; l++) mf_text_printf(&md, "---:|");
    mf_text_printf(&md, "\n");
    for (int s = 0; s < o->n_settings; s++)
        for (int m = MF_M_GD; m <= MF_M_PGD; m++) {
            mf_text_printf(&md, "| %s | %s |", mf_setting_key(o->isotropic[s]), mf_method_label[m]);
            for (int l = 1; l <= o->layers; l++) {
                int k = (s * 2 + (m - MF_M_GD)) * o->layers + (l - 1);
                mf_text_printf(&md, " %.3f |", eta_count[k] ? eta_sum[k] / eta_count[k] : NAN);
            }
            mf_text_printf(&md, "\n");
        }
    mf_text_printf(&md, "\nln test MSE of every seed:\n\n");
    mf_report_markdown_seeds(&md, res, o->first_seed);
    mf_report_json(&js, res);
    mf_report_svg(&svg, res, "Memformer reproduction: ln test MSE vs depth (mean ± std over seeds)");
    bool ok = true;
    const struct {
        mf_text *t;
        const char *name;
    } files[] = {{&md, "results.md"}, {&js, "results.json"}, {&svg, "ln_mse_vs_L.svg"}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", o->out_dir, files[i].name);
        if (mf_text_write(files[i].t, path, &err)) printf("wrote %s\n", path);
        else {
            fprintf(stderr, "memformer: %s\n", err.msg);
            ok = false;
        }
    }
    fputs(md.data, stdout);
    mf_text_free(&md);
    mf_text_free(&js);
    mf_text_free(&svg);
    return ok;
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.d = 5, .n = 20, .layers = 4, .seeds = 5, .batch = 1000, .iters = 5000, .finetune_iters = 2000,
                   .test_size = 1000, .val_size = 1000, .lr = 0.01, .finetune_lr = 0.001, .clip = 0.01,
                   .init_std = 1e-4, .n_settings = 2, .isotropic = {true, false}, .jobs = 2, .threads = 1,
                   .out_dir = "bench/results/memformer"};
    /* --quick sets its defaults first so that explicit options still override them */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) {
            o->quick = true;
            o->seeds = 2, o->batch = 400, o->iters = 300, o->finetune_iters = 150;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quick")) continue;
        if (!strcmp(a, "--scalar-q")) {
            o->scalar_q = true;
            continue;
        }
        if (!v) {
            static const char *const with_value[] = {"--d", "--n", "--layers", "--seeds", "--first-seed",
                                                     "--setting", "--batch", "--iters", "--finetune-iters", "--lr",
                                                     "--finetune-lr", "--clip", "--init-std", "--test-size",
                                                     "--val-size", "--jobs", "--threads", "--out"};
            bool known = false;
            for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(a, with_value[k]);
            fprintf(stderr, known ? "memformer: option %s needs a value (see --help)\n"
                                  : "memformer: unknown option %s (see --help)\n",
                    a);
            return 2;
        }
        if (!strcmp(a, "--d")) ok = parse_int(v, 1, MF_MAX_DIM, &o->d);
        else if (!strcmp(a, "--n")) ok = parse_int(v, 1, 100000, &o->n);
        else if (!strcmp(a, "--layers")) ok = parse_int(v, 1, MF_MAX_LAYERS, &o->layers);
        else if (!strcmp(a, "--seeds")) ok = parse_int(v, 1, 1000, &o->seeds);
        else if (!strcmp(a, "--first-seed")) ok = parse_int(v, 0, 1 << 30, &o->first_seed);
        else if (!strcmp(a, "--batch")) ok = parse_long(v, 1, 1 << 24, &o->batch);
        else if (!strcmp(a, "--iters")) ok = parse_long(v, 0, 1L << 40, &o->iters);
        else if (!strcmp(a, "--finetune-iters")) ok = parse_long(v, 0, 1L << 40, &o->finetune_iters);
        else if (!strcmp(a, "--lr")) ok = parse_pos_double(v, &o->lr);
        else if (!strcmp(a, "--finetune-lr")) ok = parse_pos_double(v, &o->finetune_lr);
        else if (!strcmp(a, "--clip")) ok = parse_pos_double(v, &o->clip);
        else if (!strcmp(a, "--init-std")) ok = parse_pos_double(v, &o->init_std);
        else if (!strcmp(a, "--test-size")) ok = parse_long(v, 1, 1 << 24, &o->test_size);
        else if (!strcmp(a, "--val-size")) ok = parse_long(v, 1, 1 << 24, &o->val_size);
        else if (!strcmp(a, "--jobs")) ok = parse_int(v, 1, 64, &o->jobs);
        else if (!strcmp(a, "--threads"))
            ok = parse_int(v, 1, 1024, &o->threads), o->threads = cli_cap_threads("memformer", o->threads);
        else if (!strcmp(a, "--out")) o->out_dir = v;
        else if (!strcmp(a, "--setting")) {
            if (!strcmp(v, "both")) o->n_settings = 2, o->isotropic[0] = true, o->isotropic[1] = false;
            else if (!strcmp(v, "isotropic")) o->n_settings = 1, o->isotropic[0] = true;
            else if (!strcmp(v, "non-isotropic") || !strcmp(v, "non_isotropic"))
                o->n_settings = 1, o->isotropic[0] = false;
            else ok = false;
        } else {
            fprintf(stderr, "memformer: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "memformer: bad value '%s' for %s (see --help)\n", v, a);
            return 2;
        }
        i++;
    }
    if (o->iters + o->finetune_iters == 0) {
        fprintf(stderr, "memformer: --iters and --finetune-iters are both 0: nothing would be trained\n");
        return 2;
    }
    if (o->jobs > o->n_settings * o->seeds) o->jobs = o->n_settings * o->seeds;
    return 1;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 1) return rc;
    mn_err err;
    if (!make_dirs(o.out_dir, &err)) { /* fail before hours of training, not after */
        fprintf(stderr, "memformer: %s\n", err.msg);
        return 1;
    }
    printf("memformer: d=%d n=%d, L=1..%d, %d seed%s, %s, batch %ld, %ld + %ld steps, %d job%s x %d thread%s\n",
           o.d, o.n, o.layers, o.seeds, o.seeds == 1 ? "" : "s",
           o.n_settings == 2 ? "isotropic and non-isotropic" : o.isotropic[0] ? "isotropic" : "non-isotropic",
           o.batch, o.iters, o.finetune_iters, o.jobs, o.jobs == 1 ? "" : "s", o.threads, o.threads == 1 ? "" : "s");
    fflush(stdout);

    const double start = now_seconds();
    job_state js[64] = {0};
    for (int j = 0; j < o.jobs; j++) {
        int fds[2];
        if (pipe(fds) != 0) {
            fprintf(stderr, "memformer: pipe: %s\n", strerror(errno));
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "memformer: fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) {
            close(fds[0]);
            for (int k = 0; k < j; k++) close(js[k].fd);
            worker_main(&o, j, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        js[j] = (job_state){.pid = pid, .fd = fds[0], .open = true};
    }

    mf_results res;
    mf_results_init(&res, o.n_settings, o.isotropic, o.layers, o.seeds);
    double *eta_sum = calloc((size_t)(o.n_settings * 2 * o.layers), sizeof(double));
    int *eta_count = calloc((size_t)(o.n_settings * 2 * o.layers), sizeof(int));
    double item_seconds = 0;
    int items_done = 0, open_jobs = o.jobs;
    while (open_jobs > 0) {
        struct pollfd pfd[64];
        for (int j = 0; j < o.jobs; j++) pfd[j] = (struct pollfd){.fd = js[j].open ? js[j].fd : -1, .events = POLLIN};
        if (poll(pfd, (nfds_t)o.jobs, 1000) < 0 && errno != EINTR) {
            fprintf(stderr, "memformer: poll: %s\n", strerror(errno));
            return 1;
        }
        for (int j = 0; j < o.jobs; j++) {
            if (!js[j].open || !(pfd[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            worker_msg m;
            ssize_t k = read(js[j].fd, &m, sizeof m);
            if (k < 0 && errno == EINTR) continue;
            if (k != (ssize_t)sizeof m) { /* end of the worker's output */
                close(js[j].fd);
                js[j].open = false;
                open_jobs--;
                continue;
            }
            if (m.type == MSG_PROGRESS) {
                js[j].last = m;
                js[j].work = m.work;
            } else if (m.type == MSG_RESULT) {
                *mf_results_at(&res, m.setting, m.method, m.layer, m.seed) = m.value;
                if (m.method == MF_M_GD || m.method == MF_M_PGD) {
                    int idx = (m.setting * 2 + (m.method - MF_M_GD)) * o.layers + (m.layer - 1);
                    eta_sum[idx] += m.eta;
                    eta_count[idx]++;
                }
            } else if (m.type == MSG_ITEM_DONE) {
                js[j].work = m.work;
                item_seconds += m.value;
                items_done++;
                char dur[32];
                format_duration(m.value, dur, sizeof dur);
                fprintf(stderr, "finished %s seed %d in %s\n", o.isotropic[m.setting] ? "isotropic" : "non-isotropic",
                        o.first_seed + m.seed, dur);
            }
        }
        print_progress(&o, js, start, false);
    }
    print_progress(&o, js, start, true);
    bool failed = false;
    for (int j = 0; j < o.jobs; j++) {
        int status = 0;
        if (waitpid(js[j].pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "memformer: worker %d failed (%s %d)\n", j,
                    WIFSIGNALED(status) ? "signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            failed = true;
        }
    }
    const double seconds = now_seconds() - start;
    if (items_done != o.n_settings * o.seeds) {
        fprintf(stderr, "memformer: only %d of %d (setting, seed) runs finished\n", items_done,
                o.n_settings * o.seeds);
        failed = true;
    }
    char dur[32];
    format_duration(seconds, dur, sizeof dur);
    printf("total wall time %s (%.1f s); mean time per (setting, seed) %.1f s\n", dur, seconds,
           items_done ? item_seconds / items_done : 0.0);
    bool ok = write_report(&o, &res, eta_sum, eta_count, seconds);
    mf_results_free(&res);
    free(eta_sum);
    free(eta_count);
    return failed || !ok ? 1 : 0;
}
