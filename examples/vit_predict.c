/* vit_predict: classifies images with a Hugging Face ViT directory.
 *
 * Loads ViTForImageClassification from --model DIR (config.json with id2label,
 * model.safetensors; a checkpoint that lacks a weight of the model, or holds one of another
 * shape, is refused) and its preprocessor_config.json (resize to the model's size,
 * rescale 1/255, normalise per channel), then prints for every image the top K labels with
 * their probabilities, or with --logits exactly one line "logits: v1 v2 ..." per image
 * (the raw logits, 9 significant digits) in the order the images were given. An image
 * that cannot be read is reported with its file name; the others are still classified
 * and the exit status is 1. */
#include "common/cli.h"
#include "common/images.h"
#include "mnemo.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "vit_predict";

enum { MAX_IMAGES = 1 << 16 };

typedef struct {
    float value;
    int64_t index;
} ranked;

/* largest first; ties keep the lower index first */
static int by_value_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

static bool has_classifier(const mn_load_report *rep) {
    for (int i = 0; i < rep->n_missing; i++)
        if (!strcmp(rep->missing[i], "classifier.weight")) return false;
    return true;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL;
    long top = 5, threads = 0;
    bool logits_only = false, allow_nonfinite = false;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_dir, "Hugging Face ViTForImageClassification directory"},
        {"--top", CLI_INT, &top, "labels to print per image", 1, 1e6},
        {"--logits", CLI_FLAG, &logits_only, "print one line \"logits: v1 v2 ...\" per image instead"},
        {"--threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {"--allow-nonfinite", CLI_FLAG, &allow_nonfinite, "load a checkpoint holding NaN or infinite weights (warned) instead of refusing it"},
    };
    cli_spec spec = {prog, "--model DIR [--top K] [--logits] IMAGE...",
                     "Classifies PNG, JPEG or BMP images with a ViT classifier saved in Hugging Face's layout,\n"
                     "prepared as its preprocessor_config.json says (resize, rescale 1/255, normalise). Prints the\n"
                     "top K labels (names from id2label) with their probabilities, or the raw logits with --logits.",
                     opts, (int)(sizeof opts / sizeof opts[0])};
    static const char *images[MAX_IMAGES];
    int n_images = 0;
    int rc = cli_parse(&spec, argc, argv, images, MAX_IMAGES, &n_images);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model_dir || n_images == 0) {
        fprintf(stderr, "%s: give --model DIR and at least one image (see --help)\n", prog);
        return 2;
    }
    cli_threads(prog, threads);

    mn_err err;
    mn_load_report rep;
    mn_pretrained_opts po = {.allow_nonfinite = allow_nonfinite};
    mn_vit *m = mn_vit_from_pretrained(model_dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, &po, &rep, &err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 1;
    }
    if (!has_classifier(&rep)) {
        fprintf(stderr, "%s: %s holds no classification head (a bare ViTModel?); fine-tune it first with "
                "vit_finetune\n", prog, model_dir);
        mn_load_report_free(&rep);
        mn_vit_free(m);
        return 1;
    }
    char *summary = mn_load_report_summary(&rep);
    bool incomplete = rep.n_missing || rep.n_mismatched;
    if (summary && *summary) fprintf(stderr, "%s: loading %s:\n%s\n", prog, model_dir, summary);
    free(summary);
    mn_load_report_free(&rep);
    if (incomplete) { /* predictions from freshly initialised weights would mean nothing */
        fprintf(stderr, "%s: %s does not hold every weight of the model its config.json describes (listed above)\n",
                prog, model_dir);
        mn_vit_free(m);
        return 1;
    }

    int S = (int)m->cfg.image_size, C = (int)m->cfg.num_channels;
    img_preproc pre;
    bool found;
    bool ok = img_preproc_read(model_dir, S, &pre, &found, &err);
    if (ok && !found)
        fprintf(stderr, "%s: note: %s has no preprocessor_config.json; using ViTImageProcessor's defaults (rescale "
                "1/255, mean 0.5, std 0.5)\n", prog, model_dir);
    if (ok && (pre.height != S || pre.width != S)) {
        fprintf(stderr, "%s: note: preprocessor_config.json resizes to %d x %d but the model takes %d x %d; using the "
                "model's size\n", prog, pre.height, pre.width, S, S);
        pre.height = pre.width = S;
    }
    ok = ok && img_preproc_check(&pre, C, S, model_dir, &err);
    if (!ok) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        mn_vit_free(m);
        return 1;
    }

    int64_t L = m->cfg.labels.num_labels, k = top < L ? top : L;
    ranked *order = malloc(sizeof *order * (size_t)L);
    float *logits = malloc(sizeof *logits * (size_t)L), *probs = malloc(sizeof *probs * (size_t)L);
    int status = 0;
    bool prev = mn_no_grad_begin();
    for (int i = 0; i < n_images; i++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *x = img_load_for_model(images[i], &pre, C, &err);
        if (!x) {
            fprintf(stderr, "%s: %s\n", prog, err.msg);
            status = 1;
            mn_scope_end(sc);
            continue;
        }
        mn_tensor *out = mn_vit_forward(m, x, NULL);
        mn_to_array(out, logits);
        mn_to_array(mn_softmax(out, -1), probs);
        mn_scope_end(sc);
        if (logits_only) {
            printf("logits:");
            for (int64_t j = 0; j < L; j++) printf(" %.9g", logits[j]);
            printf("\n");
            continue;
        }
        printf("%s\n", images[i]);
        for (int64_t j = 0; j < L; j++) order[j] = (ranked){probs[j], j};
        qsort(order, (size_t)L, sizeof *order, by_value_desc);
        for (int64_t j = 0; j < k; j++) {
            char buf[32];
            printf("  %-24s %.4f\n", mn_labels_name(&m->cfg.labels, order[j].index, buf), order[j].value);
        }
    }
    mn_no_grad_end(prev);
    free(order);
    free(logits);
    free(probs);
    mn_vit_free(m);
    return cli_exit(prog, status);
}
