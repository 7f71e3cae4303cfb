/* vit_pretrain: pre-trains a small Vision Transformer on some Fashion-MNIST classes.
 *
 * The default model is a reduced "vit-fm" that trains in minutes on two cores: 28x28x1
 * images cut into 7x7 patches (16 patches + CLS = 17 tokens), hidden size 64, 4 pre-LN
 * layers of 4 heads, MLP 128, GELU, 6 epochs. vit-fm's 4x4 patches (50 tokens) cost about
 * 3.5 times as much per image for a lower accuracy in the same time (--patch 4 gives them:
 * 86.8% after 2 epochs, 88.2% after 4, against 89.6% after 6 epochs of 7x7 patches, on
 * classes 0-4). The default classes are 0-4 (T-shirt/top, Trouser,
 * Pullover, Dress, Coat), leaving 5-9 for vit_finetune's transfer demo. The result is a
 * Hugging Face directory: config.json (ViTForImageClassification, id2label = the class
 * names), model.safetensors and preprocessor_config.json (ViTImageProcessor: 28x28,
 * rescale 1/255, Fashion-MNIST's mean and std), next to the trainer state for --resume. */
#include "common/classify.h"
#include "common/cli.h"
#include "common/images.h"
#include "common/run.h"
#include "common/trainlog.h"
#include "common/vit_classifier.h"
#include "data/data.h"
#include "mnemo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "vit_pretrain";
/* --help: what the program does */
static const char *about =
    "Pre-trains a small ViT (ViTForImageClassification; default hidden 64, 4 layers, 4 heads,\n"
    "MLP 128, patches of 7 on 28x28x1, 6 epochs) on Fashion-MNIST classes 0-4 and saves a Hugging\n"
    "Face directory (--save, default vit_pretrained): config.json with id2label, model.safetensors\n"
    "and preprocessor_config.json. vit_finetune --model DIR transfers it to other classes.";

static bool same_shape_config(const mn_vit_config *a, const mn_vit_config *b) {
    return a->hidden_size == b->hidden_size && a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads && a->intermediate_size == b->intermediate_size &&
           a->patch_size == b->patch_size && a->image_size == b->image_size && a->num_channels == b->num_channels &&
           a->labels.num_labels == b->labels.num_labels;
}

int main(int argc, char **argv) {
    const char *config = "vit-fm", *class_list = "0-4";
    long dim = 64, depth = 4, heads = 4, mlp_dim = 128, patch = 7, per_class = 0;
    double dropout = 0;
    clf_opts co = {.prog = prog, .title = "ViT pre-training on Fashion-MNIST", .out_dir = "vit_pretrain_out",
                   .eval_batch = 500};
    run_opts r = {.optimizer = "adamw", .lr = 2e-3, .weight_decay = 0.05, .schedule = "cosine", .warmup = 100,
                  .clip = 1.0, .epochs = 6, .batch = 64, .seed = 1, .log_every = 20, .save_dir = "vit_pretrained"};
    cli_opt opts[48] = {
        {"--config", CLI_STRING, &config, "base configuration (" MN_VIT_CONFIG_NAMES "); the sizes below override it"},
        {"--dim", CLI_INT, &dim, "hidden size (0: the configuration's)", 0, 1 << 16},
        {"--depth", CLI_INT, &depth, "transformer layers (0: the configuration's)", 0, 1024},
        {"--heads", CLI_INT, &heads, "attention heads (0: the configuration's)", 0, 1024},
        {"--mlp-dim", CLI_INT, &mlp_dim, "intermediate (MLP) size (0: the configuration's)", 0, 1 << 20},
        {"--patch", CLI_INT, &patch, "patch size; must divide 28 (0: the configuration's)", 0, 28},
        {"--dropout", CLI_FLOAT, &dropout, "hidden and attention dropout", 0, 0.95},
        {"--classes", CLI_STRING, &class_list, "Fashion-MNIST classes to pre-train on, e.g. 0-4 or 0,2,4"},
        {"--per-class", CLI_INT, &per_class, "training images per class (0: all 6000)", 0, 1e9},
    };
    cli_spec spec = {prog, "[options]", about, opts, clf_add_options(opts, cli_count(opts, 48), 48, &co)};
    int rc = run_parse_command_line(&spec, 48, &r, argc, argv);
    if (rc >= 0) return rc;
    mn_err err;
    int classes[10], n_classes;
    if (!img_parse_classes(class_list, 10, classes, &n_classes, &err)) {
        fprintf(stderr, "%s: --classes: %s\n", prog, err.msg);
        return 2;
    }
    if (n_classes < 2) {
        fprintf(stderr, "%s: --classes: need at least 2 classes\n", prog);
        return 2;
    }
    mn_vit_config cfg;
    if (!mn_vit_config_named(config, &cfg)) {
        fprintf(stderr, "%s: unknown --config '%s' (%s)\n", prog, config, MN_VIT_CONFIG_NAMES);
        return 2;
    }
    if (dim) cfg.hidden_size = dim;
    if (depth) cfg.num_hidden_layers = depth;
    if (heads) cfg.num_attention_heads = heads;
    if (mlp_dim) cfg.intermediate_size = mlp_dim;
    if (patch) cfg.patch_size = patch;
    cfg.image_size = 28, cfg.num_channels = 1; /* Fashion-MNIST */
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = dropout;
    const char *names[10];
    for (int i = 0; i < n_classes; i++) names[i] = mn_fashion_mnist_class_name(classes[i]);
    mn_labels_set(&cfg.labels, n_classes, names);
    if (!mn_vit_config_check(&cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        mn_vit_config_free(&cfg);
        return 2;
    }

    /* ---- data: the chosen classes, standardised with Fashion-MNIST's statistics ---- */
    mn_dataset all_train, train, test;
    if (!img_fashion_classes(true, n_classes, classes, &all_train, &err) ||
        !img_fashion_classes(false, n_classes, classes, &test, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    if (per_class > 0) {
        mn_rng g = train_stream(r.seed, CLF_STREAM_DATA, 1);
        mn_dataset_take_per_class(&all_train, per_class, &g, &train);
        mn_dataset_free(&all_train);
    } else {
        train = all_train;
    }
    const float mean = MN_FASHION_MNIST_MEAN, std = MN_FASHION_MNIST_STD;
    vit_classifier b = {0};
    img_preproc_set(&b.pre, 28, 1, &mean, &std);
    img_dataset_prepare(&train, &b.pre, 1);
    img_dataset_prepare(&test, &b.pre, 1);
    img_print_class_counts(&train, "training set");
    printf("test set: %lld images of the same classes\n", (long long)mn_dataset_len(&test));

    /* ---- model ---- */
    if (r.resume_dir) {
        mn_load_report rep;
        b.vit = mn_vit_from_pretrained(r.resume_dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, NULL, &rep, &err);
        if (b.vit) clf_print_load_report(&rep, prog, r.resume_dir);
        mn_load_report_free(&rep);
        if (b.vit && !same_shape_config(&b.vit->cfg, &cfg)) {
            mn_err_set(&err, "%s/config.json describes another model than the options", r.resume_dir);
            mn_vit_free(b.vit);
            b.vit = NULL;
        }
    } else {
        mn_rng init = train_stream(r.seed, CLF_STREAM_INIT, 0);
        b.vit = mn_vit_new(&cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &init);
    }
    int status = 1;
    if (!b.vit) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
    } else {
        const mn_vit_config *c = &b.vit->cfg;
        int64_t side = c->image_size / c->patch_size;
        printf("%s: ViTForImageClassification: %lldx%lldx%lld images, patch %lld (%lld tokens), hidden %lld, "
               "%lld layers, %lld heads, MLP %lld, dropout %g: %lld parameters\n", prog, (long long)c->image_size,
               (long long)c->image_size, (long long)c->num_channels, (long long)c->patch_size,
               (long long)(side * side + 1), (long long)c->hidden_size, (long long)c->num_hidden_layers,
               (long long)c->num_attention_heads, (long long)c->intermediate_size, c->hidden_dropout_prob,
               (long long)mn_params_numel(&b.vit->params));
        train_args args = {0};
        train_args_add(&args, "model", "%s dim %ld depth %ld heads %ld mlp %ld patch %ld dropout %g", config, dim,
                       depth, heads, mlp_dim, patch, dropout);
        train_args_add(&args, "data", "fashion-mnist classes %s per-class %ld", class_list, per_class);
        clf_model cm = vit_classifier_model(&b);
        clf_result res;
        status = clf_train(&co, &r, &cm, &train, &test, &args, &res);
        if (status == 0) {
            clf_print_per_class(&cm, &test, co.eval_batch);
            printf("%s: test accuracy %.4f on classes %s after %lld steps (%.1fs in all", prog, res.test_accuracy,
                   class_list, (long long)res.steps, res.total_seconds);
            if (res.epochs_timed) printf("; %.1fs per epoch", res.epoch_seconds);
            printf(")\n");
            if (r.save_dir) printf("%s: Hugging Face directory: %s (for vit_finetune --model / vit_predict --model)\n",
                                   prog, r.save_dir);
        }
        train_args_free(&args);
        mn_vit_free(b.vit);
    }
    mn_vit_config_free(&cfg);
    mn_dataset_free(&train);
    mn_dataset_free(&test);
    return cli_exit(prog, status);
}
