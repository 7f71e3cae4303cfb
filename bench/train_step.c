/* Training-step benchmark: milliseconds per step (forward, cross-entropy loss,
 * backward, one AdamW step) and peak resident memory for the standard
 * configurations (mlp, vit-fm, vit-ti16, bert-tiny, bert-mini), on synthetic data
 * of the right shapes. --optimizer replaces AdamW by any optimizer spec (e.g.
 * mnemosyne-t, the learned optimizer built in).
 *
 * Each configuration and thread count runs in its own child process, so the
 * peak RSS it reports (getrusage's high-water mark) belongs to that run alone.
 * Output, one line per run on stdout:
 *     NAME threads=N ms_per_step=X peak_rss_mb=Y
 * bench/torch_train_step.py prints the same lines for PyTorch. */
#include "mnemo.h"

#include "common/step_bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *const all_configs[] = {"mlp", "vit-fm", "vit-ti16", "bert-tiny", "bert-mini", NULL};

typedef struct {
    step_bench_options shared; /* threads, steps, warmup, seed, cpu_time, quiet */
    float mask_prob;           /* BERT: fraction of positions that carry a masked-LM label */
    const char *optimizer;     /* an mn_optim_from_spec spec */
} options;

static void usage(const char *prog) {
    printf("usage: %s [options] [CONFIG...]\n"
           "Times training steps (forward, cross-entropy, backward, AdamW) on synthetic data.\n"
           "CONFIG: mlp, vit-fm, vit-ti16, bert-tiny, bert-mini (default: all five)\n"
           "  --threads LIST   OpenMP thread counts, comma separated (default 1,2)\n"
           "  --steps N        timed steps; the median is reported (default 20)\n"
           "  --warmup N       untimed steps first (default 3)\n"
           "  --mask-prob P    BERT: probability that a position carries an MLM label (default 0.15)\n"
           "  --optimizer SPEC the optimizer stepped (default adamw:1e-4:0.01): sgd:LR[:MOMENTUM],\n"
           "                   adam[:LR], adamw[:LR[:WD]], lstm, mnemosyne-c, mnemosyne-t[:CKPT] (the learned\n"
           "                   optimizers with their built-in weights unless CKPT is given)\n"
           "  --seed N         seed for initialisation and data (default 0)\n"
           "  --cpu-time       report the process CPU time per step (all threads) instead of wall time;\n"
           "                   for comparing single-thread runs on a busy machine\n"
           "  --quiet          no progress on stderr\n"
           "  --help           this text\n"
           "Output, one line per configuration and thread count:\n"
           "  NAME threads=N ms_per_step=X peak_rss_mb=Y optimizer=SPEC\n"
           "Each run is a separate process, so peak_rss_mb is that run's own peak resident memory.\n"
           "Batches: mlp 128, vit-fm 64, vit-ti16 8, bert-tiny 32 x 128, bert-mini 16 x 128.\n",
           prog);
}

/* ---- command line ------------------------------------------------------------------------------ */

static step_bench_option_result parse_option(int argc, char **argv, int *i, void *program_options) {
    options *o = program_options;
    const char *arg = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(arg, "--optimizer")) {
        mn_err err;
        mn_params one = {0}; /* the spec is checked here, over a stand-in parameter */
        mn_tensor *p = mn_requires_grad(mn_zeros(MN_SHAPE(1)), true);
        mn_params_add(&one, NULL, "p", p, false);
        mn_release(p);
        mn_optimizer *probe = val ? mn_optim_from_spec(val, &one, &err) : NULL;
        if (probe) mn_optim_free(probe);
        mn_params_free(&one);
        if (!probe) {
            fprintf(stderr, "%s: --optimizer: %s\n", argv[0], val ? err.msg : "needs a spec (e.g. adamw:1e-4)");
            return STEP_BENCH_OPTION_BAD;
        }
        o->optimizer = val;
        (*i)++;
        return STEP_BENCH_OPTION_TAKEN;
    }
    if (strcmp(arg, "--mask-prob")) return STEP_BENCH_OPTION_NOT_MINE;
    char *end;
    double p = val ? strtod(val, &end) : -1;
    if (!val || *end || !(p > 0 && p <= 1)) {
        fprintf(stderr, "%s: --mask-prob needs a probability in (0, 1] (got '%s')\n", argv[0], val ? val : "");
        return STEP_BENCH_OPTION_BAD;
    }
    o->mask_prob = (float)p;
    (*i)++;
    return STEP_BENCH_OPTION_TAKEN;
}

/* ---- one configuration: a model, a batch, and a step --------------------------------------------- */

typedef struct {
    const char *name;
    mn_mlp_model *mlp;
    mn_vit *vit;
    mn_bert *bert;
    const mn_params *params;
    mn_tensor *x, *targets, *keep; /* the batch (owned) */
    mn_rng dropout_rng;
} workload;

static mn_tensor *random_ints(mn_rng *rng, int64_t n, int64_t bound, int ndim, const int64_t *shape) {
    int32_t *v = malloc(sizeof(int32_t) * (size_t)n);
    if (!v) mn_fatal("train_step: out of memory");
    for (int64_t i = 0; i < n; i++) v[i] = (int32_t)mn_rng_below(rng, (uint64_t)bound);
    mn_tensor *t = mn_from_ints(ndim, shape, v);
    free(v);
    return t;
}

static bool workload_init(workload *w, const char *name, const options *o) {
    *w = (workload){.name = name};
    mn_rng rng = mn_rng_new(o->shared.seed);
    w->dropout_rng = mn_rng_new(o->shared.seed + 1);
    mn_mlp_config mc;
    mn_vit_config vc;
    mn_bert_config bc;
    if (mn_mlp_config_named(name, &mc)) {
        int64_t B = 128;
        w->mlp = mn_mlp_model_new(&mc, &rng);
        w->params = &w->mlp->params;
        w->x = mn_randn_gen(&rng, MN_SHAPE(B, mc.sizes[0]), 0.0f, 1.0f);
        w->targets = random_ints(&rng, B, mc.sizes[mc.n_layers], MN_SHAPE(B));
    } else if (mn_vit_config_named(name, &vc)) {
        int64_t B = !strcmp(name, "vit-fm") ? 64 : 8, S = vc.image_size;
        w->vit = mn_vit_new(&vc, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &rng);
        w->params = &w->vit->params;
        w->x = mn_randn_gen(&rng, MN_SHAPE(B, vc.num_channels, S, S), 0.0f, 1.0f);
        w->targets = random_ints(&rng, B, vc.labels.num_labels, MN_SHAPE(B));
        mn_vit_config_free(&vc);
    } else if (mn_bert_config_named(name, &bc) && strcmp(name, "bert-base")) {
        int64_t B = !strcmp(name, "bert-tiny") ? 32 : 16, T = 128, n = B * T;
        w->bert = mn_bert_new(&bc, MN_BERT_FOR_MASKED_LM, false, &rng);
        w->params = &w->bert->params;
        w->x = random_ints(&rng, n, bc.vocab_size, MN_SHAPE(B, T));
        /* labels: the original token at about mask_prob of the positions, -100 elsewhere */
        float *u = malloc(sizeof(float) * (size_t)n);
        int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
        if (!u || !lab) mn_fatal("train_step: out of memory");
        mn_rng_uniform(&rng, n, u, 0.0f, 1.0f);
        const int32_t *ids = mn_idata(w->x);
        for (int64_t i = 0; i < n; i++) lab[i] = u[i] < o->mask_prob ? ids[i] : -100;
        w->targets = mn_from_ints(MN_SHAPE(B, T), lab);
        free(u);
        free(lab);
        w->keep = mn_ones(MN_SHAPE(B, T));
        mn_bert_config_free(&bc);
    } else {
        return false;
    }
    return true;
}

static void workload_free(workload *w) {
    mn_mlp_model_free(w->mlp);
    mn_vit_free(w->vit);
    mn_bert_free(w->bert);
    mn_release(w->x);
    mn_release(w->targets);
    mn_release(w->keep);
}

/* forward + loss + backward + optimizer step; returns the loss */
static float train_step(workload *w, mn_optimizer *opt) {
    mn_scope sc = mn_scope_begin();
    mn_optim_zero_grad(opt);
    mn_tensor *loss;
    if (w->mlp) {
        loss = mn_cross_entropy(mn_mlp_model_forward(w->mlp, w->x), w->targets, -100, 0.0f);
    } else if (w->vit) {
        loss = mn_cross_entropy(mn_vit_forward(w->vit, w->x, &w->dropout_rng), w->targets, -100, 0.0f);
    } else {
        mn_tensor *hidden = mn_bert_encode(w->bert, w->x, NULL, w->keep, &w->dropout_rng);
        loss = mn_bert_mlm_loss(w->bert, hidden, w->targets);
    }
    mn_backward(loss);
    mn_optim_step(opt);
    float value = mn_item(loss);
    mn_scope_end(sc);
    return value;
}

typedef struct {
    workload *w;
    mn_optimizer *opt;
} training;

static float training_step(void *ctx) {
    training *t = ctx;
    return train_step(t->w, t->opt);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* Runs one configuration at one thread count and prints its line; returns the exit status. */
static int run_one(const char *name, int threads, const void *ctx) {
    const options *o = ctx;
    omp_set_num_threads(threads);
    workload w;
    if (!workload_init(&w, name, o)) {
        fprintf(stderr, "train_step: unknown configuration '%s'\n", name);
        return 2;
    }
    mn_err err;
    mn_optimizer *opt = mn_optim_from_spec(o->optimizer, w.params, &err);
    if (!opt) { /* checked when parsed; a checkpoint could still disappear */
        fprintf(stderr, "train_step: --optimizer %s: %s\n", o->optimizer, err.msg);
        workload_free(&w);
        return 2;
    }
    training t = {.w = &w, .opt = opt};
    step_bench_run run = {.label = name, .threads = threads, .step = training_step, .ctx = &t, .shows_loss = true};
    float loss;
    double ms = step_bench_median_ms(&run, &o->shared, &loss);
    int status = 0;
    if (!(loss == loss) || loss > 1e30f || loss < -1e30f) {
        fprintf(stderr, "train_step: %s: the loss is not finite (%g)\n", name, loss);
        status = 1;
    }
    printf("%s threads=%d ms_per_step=%.2f peak_rss_mb=%.1f optimizer=%s\n", name, threads, ms, peak_rss_mb(),
           o->optimizer);
    fflush(stdout);
    mn_optim_free(opt);
    workload_free(&w);
    return status;
}

/* The defaults; the command line changes them. */
static options opts = {.shared = {.steps = 20, .warmup = 3}, .mask_prob = 0.15f, .optimizer = "adamw:1e-4:0.01"};

/* The configurations named on the command line (default: all), each at every thread count. */
static const step_bench_program program = {.name = "train_step", .what = "configuration", .known = all_configs,
    .usage = usage, .options = &opts, .shared = &opts.shared, .parse_option = parse_option, .run_one = run_one};

int main(int argc, char **argv) { return step_bench_main(&program, argc, argv); }
