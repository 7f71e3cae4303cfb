/* train_mlp: a multi-layer perceptron on Fashion-MNIST.
 *
 * The default network is 784-512-512-10 with ReLU (the standard "mlp" configuration), trained
 * with AdamW on standardised pixels. Each epoch prints the training loss and accuracy,
 * the test accuracy and the time the epoch took; the run writes a JSON-lines metrics log
 * and loss/accuracy plots, and --save/--resume continue a run exactly. */
#include "common/classify.h"
#include "common/cli.h"
#include "common/run.h"
#include "common/trainlog.h"
#include "data/data.h"
#include "mnemo.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "train_mlp";
/* --help: what the program does */
static const char *about =
    "Trains an MLP (default 784-512-512-10, ReLU) on Fashion-MNIST with AdamW and a cosine schedule;\n"
    "prints the test accuracy and the time of every epoch, logs metrics as JSON lines and plots the\n"
    "loss and accuracy (--out). --save DIR writes the model (config.json, model.safetensors) and the\n"
    "trainer state, which --resume DIR continues exactly (same seed and thread count).";

/* x [B, 1, 28, 28] -> logits [B, 10] */
static mn_tensor *mlp_forward(void *model, mn_tensor *x, mn_rng *dropout) {
    mn_tensor *flat = mn_reshape(x, MN_SHAPE(x->shape[0], -1));
    return mn_mlp_model_forward(model, flat);
}

static bool mlp_save(void *model, const char *dir, mn_err *err) { return mn_mlp_model_save(model, dir, err); }

/* "512,512" -> cfg sizes 784, 512, 512, 10 */
static bool make_config(const char *hidden, const char *act, int64_t inputs, int64_t classes, mn_mlp_config *cfg,
                        mn_err *err) {
    *cfg = (mn_mlp_config){0};
    if (!mn_act_parse(act, &cfg->hidden_act))
        return mn_err_set(err, "unknown --act '%s' (relu, gelu, tanh, sigmoid)", act);
    cfg->sizes[0] = inputs;
    int n = 0;
    for (const char *at = hidden; *at;) {
        char *end;
        long w = strtol(at, &end, 10);
        if (end == at || w < 1 || w > (1 << 20))
            return mn_err_set(err, "--hidden \"%s\": expected widths from 1 to 1048576 separated by commas", hidden);
        if (n + 2 > MN_MLP_MAX_LAYERS)
            return mn_err_set(err, "--hidden: at most %d hidden layers", MN_MLP_MAX_LAYERS - 1);
        cfg->sizes[++n] = w;
        at = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return mn_err_set(err, "--hidden \"%s\": unexpected '%c'", hidden, *end);
    }
    cfg->sizes[n + 1] = classes;
    cfg->n_layers = n + 1;
    return mn_mlp_config_check(cfg, err);
}

static bool same_config(const mn_mlp_config *a, const mn_mlp_config *b) {
    if (a->n_layers != b->n_layers || a->hidden_act != b->hidden_act) return false;
    for (int i = 0; i <= a->n_layers; i++)
        if (a->sizes[i] != b->sizes[i]) return false;
    return true;
}

int main(int argc, char **argv) {
    const char *hidden = "512,512", *act = "relu", *data_dir = NULL;
    clf_opts co = {.prog = prog, .title = "MLP on Fashion-MNIST", .out_dir = "train_mlp_out", .eval_batch = 1000};
    run_opts r = {.optimizer = "adamw", .lr = 1e-3, .weight_decay = -1, .schedule = "cosine", .epochs = 10,
                  .batch = 128, .seed = 1, .log_every = 50};
    cli_opt opts[40] = {
        {"--hidden", CLI_STRING, &hidden, "hidden layer widths, comma-separated"},
        {"--act", CLI_STRING, &act, "activation between layers: relu, gelu, tanh, sigmoid"},
        {"--data", CLI_STRING, &data_dir, "Fashion-MNIST directory (default " MN_FASHION_MNIST_DIR ")"},
    };
    cli_spec spec = {prog, "[options]", about, opts, clf_add_options(opts, cli_count(opts, 40), 40, &co)};
    int rc = run_parse_command_line(&spec, 40, &r, argc, argv);
    if (rc >= 0) return rc;
    mn_err err;
    mn_mlp_config cfg;
    if (!make_config(hidden, act, 28 * 28, 10, &cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 2;
    }

    mn_dataset train, test;
    if (!mn_fashion_mnist_load(data_dir, true, true, &train, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    if (!mn_fashion_mnist_load(data_dir, false, true, &test, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        mn_dataset_free(&train);
        return 1;
    }
    printf("%s: Fashion-MNIST, %lld training and %lld test images (standardised: mean %g, std %g)\n", prog,
           (long long)mn_dataset_len(&train), (long long)mn_dataset_len(&test), MN_FASHION_MNIST_MEAN,
           MN_FASHION_MNIST_STD);

    mn_mlp_model *m;
    if (r.resume_dir) {
        mn_load_report rep;
        m = mn_mlp_model_from_pretrained(r.resume_dir, (uint64_t)r.seed, &rep, &err);
        if (m) clf_print_load_report(&rep, prog, r.resume_dir);
        mn_load_report_free(&rep);
        if (m && !same_config(&m->cfg, &cfg)) {
            mn_err_set(&err, "%s/config.json describes another network than --hidden %s --act %s", r.resume_dir,
                       hidden, act);
            mn_mlp_model_free(m);
            m = NULL;
        }
    } else {
        mn_rng init = train_stream(r.seed, CLF_STREAM_INIT, 0);
        m = mn_mlp_model_new(&cfg, &init);
    }
    int status = 1;
    if (!m) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
    } else {
        printf("%s: MLP", prog);
        for (int i = 0; i <= cfg.n_layers; i++) printf("%s%lld", i ? "-" : " ", (long long)cfg.sizes[i]);
        printf(" (%s): %lld parameters\n", mn_act_name(cfg.hidden_act), (long long)mn_params_numel(&m->params));
        train_args args = {0};
        train_args_add(&args, "model", "mlp hidden %s act %s", hidden, act);
        clf_model cm = {m, &m->params, mlp_forward, mlp_save};
        clf_result res;
        status = clf_train(&co, &r, &cm, &train, &test, &args, &res);
        if (status == 0) {
            clf_print_per_class(&cm, &test, co.eval_batch);
            printf("%s: test accuracy %.4f (loss %.4f) after %lld steps; ", prog, res.test_accuracy, res.test_loss,
                   (long long)res.steps);
            if (res.epochs_timed)
                printf("mean time per epoch %.2fs over %d epochs (%d threads)\n", res.epoch_seconds, res.epochs_timed,
                       omp_get_max_threads());
            else printf("no whole epoch ran in this run\n");
        }
        train_args_free(&args);
        mn_mlp_model_free(m);
    }
    mn_dataset_free(&train);
    mn_dataset_free(&test);
    return cli_exit(prog, status);
}
