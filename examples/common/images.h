/* Image helpers for the ViT and MLP programs: a model directory's preprocessor_config.json
 * (Hugging Face's ViTImageProcessor), preparing pixels the way it does, and the labelled
 * image sets the programs train on (Fashion-MNIST classes, image folders, IDX files). */
#ifndef MN_EXAMPLES_IMAGES_H
#define MN_EXAMPLES_IMAGES_H

#include "data/data.h"
#include "mnemo.h"

/* ViTImageProcessor's settings. HF resizes the uint8 image (PIL bilinear), rescales by
 * rescale_factor, then normalises per channel; here the image is resized as floats in
 * [0, 1] (mn_image_resize, PIL's antialiased bilinear), so resized pixels can differ from
 * HF's by the uint8 rounding PIL does (< 1/255 before normalisation). */
typedef struct {
    bool do_resize, do_rescale, do_normalize;
    int height, width;     /* the model's input size */
    double rescale_factor; /* 1/255 */
    int n_stats;           /* entries in mean/std: 1 (one for all channels) or 3 */
    float mean[3], std[3];
} img_preproc;

/* ViTImageProcessor's defaults (resize to size x size, rescale 1/255, mean = std = 0.5). */
void img_preproc_default(img_preproc *p, int size);
/* The given size and per-channel statistics (n = 1 or 3). */
void img_preproc_set(img_preproc *p, int size, int n, const float *mean, const float *std);
/* DIR/preprocessor_config.json (or the file itself). *found is false, and p holds the
 * defaults for size, when the file does not exist; other problems are errors naming the key. */
bool img_preproc_read(const char *path, int size, img_preproc *p, bool *found, mn_err *err);
/* DIR/preprocessor_config.json as ViTImageProcessor.save_pretrained writes it, atomically. */
bool img_preproc_write(const img_preproc *p, const char *dir, mn_err *err);
/* The statistics must fit a model of `channels` channels and the size its image_size. */
bool img_preproc_check(const img_preproc *p, int channels, int image_size, const char *where, mn_err *err);

/* x [N, C0, H0, W0] (or [C0, H0, W0]) float pixels in [0, 1] -> the model's input
 * [N, channels, height, width]: grey replicated to RGB or RGB reduced to grey (stb_image's
 * weights), resized, rescaled and normalised as p says. A new tensor. */
mn_tensor *img_prepare(const img_preproc *p, int channels, mn_tensor *x);
/* Replaces d->x (pixels in [0, 1]) by img_prepare(p, channels, d->x). */
/* A note on stderr when loading resized or converted images (ch from mn_image_opts.changes). */
void img_print_changes(const char *prog, const mn_image_changes *ch, int size, int channels);
void img_dataset_prepare(mn_dataset *d, const img_preproc *p, int channels);
/* An image file (PNG, JPEG, BMP) prepared for the model -> [1, channels, height, width];
 * NULL and err (naming the file) when it cannot be read. */
mn_tensor *img_load_for_model(const char *path, const img_preproc *p, int channels, mn_err *err);

/* A class list "5,6,7,8,9", "5-9" or "0-2,7" -> classes[0..n) (distinct, in [0, limit)).
 * False and err on a malformed list. */
bool img_parse_classes(const char *s, int limit, int *classes, int *n, mn_err *err);

/* Fashion-MNIST's images of the given classes (relabelled 0..n-1 in list order, named by
 * their class names), training or test set, pixels in [0, 1]. */
bool img_fashion_classes(bool train, int n, const int *classes, mn_dataset *out, mn_err *err);

/* Labelled images from IDX files (images: magic 0x803, labels: magic 0x801), pixels in
 * [0, 1]; classes 0 .. max label, named "0", "1", ... The counts must agree. */
bool img_idx_load(const char *images_path, const char *labels_path, mn_dataset *out, mn_err *err);

/* Prints "  NAME  COUNT images" per class, after a header line. */
void img_print_class_counts(const mn_dataset *d, const char *what);

#endif
