/* demo: a learned optimizer against Adam.
 *
 * Trains a small Vision Transformer to classify Fashion-MNIST twice, from the same initial
 * weights and on the same batches: once with Mnemosyne-T, the learned optimizer whose
 * pretrained weights are built into mnemo (the variant that did best on this task in
 * bench/eval_optimizers, with Adam's memory), and once with Adam. Prints a progress line per
 * run, then both test accuracies side by side, and plots the two training-loss curves. The
 * model is the held-out task vit:fm:dim64:depth2:heads2 of bench/eval_optimizers: hidden 64,
 * 2 layers of 2 heads, MLP 256, 4x4 patches of the 28x28 images (49 + 1 tokens); the steps,
 * batch and test images are 500, 64 and 2000.
 *
 * It is also the shortest complete training program: a model, an optimizer from a spec
 * string, batches, and a loop of forward, backward and step, each step inside a scope that
 * frees its graph. */
#include "common/cli.h"
#include "common/progress.h"
#include "common/svgplot.h"
#include "mnemo.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --help: what the program does */
static const char *about =
    "Trains a small ViT (hidden 64, 2 layers, 2 heads, 4x4 patches) on Fashion-MNIST twice, from\n"
    "the same initial weights and on the same batches: with the learned optimizer Mnemosyne-T\n"
    "(its pretrained weights are built into mnemo) and with Adam. Prints both test accuracies\n"
    "and plots the training-loss curves. Under a minute on 2 idle cores.";

typedef struct {
    long steps, batch, seed, test_size;
} settings;

/* What one training run leaves. */
typedef struct {
    double *smoothed_loss;   /* per step: the training loss, exponentially smoothed */
    long steps_done;         /* fewer than planned if the loss diverged */
    double final_loss;       /* mean training loss of the last tenth of the steps */
    double test_accuracy;
    double seconds_per_step;
} run_result;

/* vit-fm (28x28x1 images, 4x4 patches, 10 classes) at the evaluation task's sizes, initialised from seed. */
static mn_vit *new_vit(long seed) {
    mn_vit_config cfg;
    mn_vit_config_named("vit-fm", &cfg);
    cfg.hidden_size = 64, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 256;
    mn_rng init = mn_rng_new((uint64_t)seed);
    mn_vit *m = mn_vit_new(&cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &init);
    mn_vit_config_free(&cfg);
    return m;
}

/* Share of the first n test images classified correctly. */
static double test_accuracy(const mn_vit *m, const mn_dataset *test, int64_t n) {
    double hits = 0;
    bool prev = mn_no_grad_begin(); /* evaluation records no graph */
    for (int64_t at = 0; at < n; at += 500) {
        mn_scope sc = mn_scope_begin();
        int64_t end = at + 500 < n ? at + 500 : n;
        mn_tensor *x = mnt_contiguous(mnt_slice(test->x, 0, at, end, 1)), *y = mnt_slice(test->y, 0, at, end, 1);
        hits += mn_accuracy(mn_vit_forward(m, x, NULL), y, -100) * (double)(end - at);
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    return hits / (double)n;
}

/* Trains m with opt (named name) for s->steps batches drawn from s->seed, then tests it. */
static void train_vit(mn_vit *m, mn_optimizer *opt, const char *name, const settings *s, const mn_dataset *train,
                      const mn_dataset *test, run_result *res) {
    mn_batcher batches; /* the same seed: the same batches for every optimizer */
    mn_batcher_init(&batches, mn_dataset_len(train), s->batch, true, true, (uint64_t)s->seed);
    printf("\n%s: %ld steps of %ld images\n", name, s->steps, s->batch);

    *res = (run_result){.smoothed_loss = calloc((size_t)s->steps, sizeof(double))};
    const double beta = 0.95; /* smoothing over about 20 steps */
    double average = 0, tail_sum = 0, start = progress_now();
    long tail = s->steps / 10 > 0 ? s->steps / 10 : 1;
    progress pr;
    progress_start(&pr, s->steps, "steps");
    for (long step = 1; step <= s->steps; step++) {
        mn_scope sc = mn_scope_begin(); /* everything the step makes is freed at its end */
        mn_tensor *idx = mn_batcher_next(&batches);
        if (!idx) idx = mn_batcher_next(&batches); /* the next epoch */
        mn_tensor *x, *y;
        mn_dataset_batch(train, idx, &x, &y);
        mn_tensor *loss = mn_cross_entropy(mn_vit_forward(m, x, NULL), y, -100, 0);
        mn_optim_zero_grad(opt);
        mn_backward(loss);
        mn_optim_step(opt);
        double loss_v = mn_item(loss);
        mn_scope_end(sc);
        if (!isfinite(loss_v)) {
            fprintf(stderr, "\ndemo: %s: the loss diverged at step %ld\n", name, step);
            break;
        }
        average = beta * average + (1 - beta) * loss_v;
        res->smoothed_loss[step - 1] = average / (1 - pow(beta, (double)step)); /* without the bias toward 0 */
        if (step > s->steps - tail) tail_sum += loss_v;
        res->steps_done = step;
        progress_update(&pr, step, res->smoothed_loss[step - 1], step);
    }
    res->seconds_per_step = (progress_now() - start) / (double)(res->steps_done > 0 ? res->steps_done : 1);
    res->final_loss = res->steps_done == s->steps ? tail_sum / (double)tail : NAN;
    res->test_accuracy = res->steps_done == s->steps ? test_accuracy(m, test, s->test_size) : NAN;
    mn_batcher_free(&batches);
}

/* Fashion-MNIST from its Debian location, standardised; false after saying how to install it. */
static bool load_fashion_mnist(mn_dataset *train, mn_dataset *test) {
    mn_err err;
    if (mn_fashion_mnist_load(NULL, true, true, train, &err)) {
        if (mn_fashion_mnist_load(NULL, false, true, test, &err)) return true;
        mn_dataset_free(train);
    }
    fprintf(stderr, "demo: cannot read Fashion-MNIST: %s\n"
            "demo: it comes in the Debian package dataset-fashion-mnist (files in %s); install it with\n"
            "      ./configure.py --install-deps   (or: apt-get install dataset-fashion-mnist)\n",
            err.msg, MN_FASHION_MNIST_DIR);
    return false;
}

/* Both runs side by side, and their smoothed training-loss curves as an SVG plot. */
static void report(const char *const names[2], const run_result res[2], long steps, const char *plot) {
    printf("\n%-34s %16s %16s\n", "", names[0], names[1]);
    printf("%-34s %16.4f %16.4f\n", "test accuracy", res[0].test_accuracy, res[1].test_accuracy);
    printf("%-34s %16.4f %16.4f\n", "train loss (mean of the last 10%)", res[0].final_loss, res[1].final_loss);
    printf("%-34s %16.1f %16.1f\n", "milliseconds per step", 1e3 * res[0].seconds_per_step,
           1e3 * res[1].seconds_per_step);
    double *x = malloc(sizeof(double) * (size_t)steps);
    for (long k = 0; k < steps; k++) x[k] = (double)(k + 1);
    svg_series curves[2] = {{names[0], x, res[0].smoothed_loss, (int)res[0].steps_done, false},
                            {names[1], x, res[1].smoothed_loss, (int)res[1].steps_done, false}};
    const char *title = "ViT on Fashion-MNIST: training loss (smoothed)";
    if (svg_plot(plot, title, "step", "cross-entropy", false, curves, 2) == 0) printf("wrote %s\n", plot);
    else fprintf(stderr, "demo: cannot write %s: %s\n", plot, strerror(errno));
    free(x);
}

int main(int argc, char **argv) {
    settings s = {.steps = 500, .batch = 64, .seed = 1, .test_size = 2000};
    long threads = 0;
    /* 5e-4 is Adam's best constant learning rate here: of 1e-4 ... 5e-3, it reached the lowest training
     * loss and (with 3e-4) the best test accuracy after 500 steps, over 3 seeds */
    const char *names[2] = {"mnemosyne-t", "adam:0.0005"}, *plot = "demo_loss.svg";
    cli_opt opts[] = {
        {"--steps", CLI_INT, &s.steps, "training steps per optimizer", 1, 1e7},
        {"--batch", CLI_INT, &s.batch, "images per step", 1, 60000},
        {"--threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {"--seed", CLI_INT, &s.seed, "random seed of the initial weights and the batch order", 0, 9e15},
        {"--test-size", CLI_INT, &s.test_size, "test images evaluated at the end (of 10000)", 1, 10000},
        {"--optimizer", CLI_STRING, &names[0], "the first optimizer: lstm, mnemosyne-c, mnemosyne-t, or any spec"},
        {"--baseline", CLI_STRING, &names[1], "the second optimizer: adam[:LR], adamw[:LR[:WD]], sgd[:LR[:MOMENTUM]], ..."},
        {"--plot", CLI_STRING, &plot, "SVG file for the two smoothed training-loss curves"},
    };
    cli_spec spec = {"demo", "[options]", about, opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    cli_threads("demo", threads);
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress goes to stderr: keep the two in order in a log */

    mn_dataset train, test;
    if (!load_fashion_mnist(&train, &test)) return 1;
    /* two copies of the same model (same seed, same weights), one per optimizer */
    mn_vit *models[2];
    mn_optimizer *optimizers[2];
    int status = 0;
    for (int i = 0; i < 2; i++) {
        models[i] = new_vit(s.seed);
        mn_err err;
        optimizers[i] = mn_optim_from_spec(names[i], &models[i]->params, &err);
        if (!optimizers[i]) {
            fprintf(stderr, "demo: %s %s: %s\n", i ? "--baseline" : "--optimizer", names[i], err.msg);
            status = 2;
        }
    }
    run_result res[2] = {{0}, {0}};
    if (status == 0) {
        printf("mnemo demo: %s against %s, training a ViT (%lld parameters) on Fashion-MNIST (%lld images)\n"
               "from the same start on the same batches, testing on %ld test images; %d threads\n", names[0], names[1],
               (long long)mn_params_numel(&models[0]->params), (long long)mn_dataset_len(&train), s.test_size,
               omp_get_max_threads());
        for (int i = 0; i < 2; i++) train_vit(models[i], optimizers[i], names[i], &s, &train, &test, &res[i]);
        report(names, res, s.steps, plot);
    }
    for (int i = 0; i < 2; i++) {
        free(res[i].smoothed_loss);
        mn_optim_free(optimizers[i]);
        mn_vit_free(models[i]);
    }
    mn_dataset_free(&train);
    mn_dataset_free(&test);
    return cli_exit("demo", status);
}
