#include "images.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- preprocessor_config.json ------------------------------------------------------------------ */

void img_preproc_default(img_preproc *p, int size) {
    const float half = 0.5f; /* one value for every channel, so it fits grey models too */
    img_preproc_set(p, size, 1, &half, &half);
}

void img_preproc_set(img_preproc *p, int size, int n, const float *mean, const float *std) {
    *p = (img_preproc){.do_resize = true, .do_rescale = true, .do_normalize = true, .height = size, .width = size,
                       .rescale_factor = 1.0 / 255.0, .n_stats = n};
    for (int c = 0; c < n && c < 3; c++) p->mean[c] = mean[c], p->std[c] = std[c];
}

static bool json_flag(json_t *root, const char *key, bool *out, const char *path, mn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return mn_err_set(err, "%s: key \"%s\": expected true or false", path, key);
    *out = json_is_true(v);
    return true;
}

static bool json_size_value(json_t *v, const char *key, int *out, const char *path, mn_err *err) {
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
        return mn_err_set(err, "%s: key \"%s\": expected an image size from 1 to 65536", path, key);
    *out = (int)json_integer_value(v);
    return true;
}

/* "image_mean": 0.5 or [0.485, 0.456, 0.406] */
static bool json_stats(json_t *root, const char *key, float *out, int *n, const char *path, mn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return true;
    if (json_is_number(v)) {
        out[0] = (float)json_number_value(v);
        *n = 1;
        return true;
    }
    size_t len = json_is_array(v) ? json_array_size(v) : 0;
    if (len != 1 && len != 3)
        return mn_err_set(err, "%s: key \"%s\": expected a number or a list of 1 or 3 numbers", path, key);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_number(e)) return mn_err_set(err, "%s: key \"%s\": entry %zu is not a number", path, key, i);
        out[i] = (float)json_number_value(e);
    }
    *n = (int)len;
    return true;
}

bool img_preproc_read(const char *path, int size, img_preproc *p, bool *found, mn_err *err) {
    img_preproc_default(p, size);
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(file, sizeof file, "%s/preprocessor_config.json", path);
    else snprintf(file, sizeof file, "%s", path);
    *found = stat(file, &st) == 0;
    if (!*found) return errno == ENOENT || mn_err_set(err, "%s: %s", file, strerror(errno));
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je);
    if (!root) return mn_err_set(err, "%s: line %d: %s", file, je.line, je.text);
    bool ok = json_is_object(root) || mn_err_set(err, "%s: expected a JSON object", file);
    ok = ok && json_flag(root, "do_resize", &p->do_resize, file, err) &&
         json_flag(root, "do_rescale", &p->do_rescale, file, err) &&
         json_flag(root, "do_normalize", &p->do_normalize, file, err);
    json_t *sz = ok ? json_object_get(root, "size") : NULL;
    if (sz && json_is_object(sz)) {
        json_t *h = json_object_get(sz, "height"), *w = json_object_get(sz, "width");
        json_t *e = json_object_get(sz, "shortest_edge");
        if (h && w) ok = json_size_value(h, "size.height", &p->height, file, err) &&
                         json_size_value(w, "size.width", &p->width, file, err);
        else if (e && (ok = json_size_value(e, "size.shortest_edge", &p->height, file, err))) p->width = p->height;
        else if (!e) ok = mn_err_set(err, "%s: key \"size\": expected {\"height\": H, \"width\": W}", file);
    } else if (sz) {
        if ((ok = json_size_value(sz, "size", &p->height, file, err))) p->width = p->height;
    }
    json_t *rf = ok ? json_object_get(root, "rescale_factor") : NULL;
    if (rf && !(json_is_number(rf) && json_number_value(rf) > 0))
        ok = mn_err_set(err, "%s: key \"rescale_factor\": expected a positive number", file);
    else if (rf) p->rescale_factor = json_number_value(rf);
    int n_mean = p->n_stats, n_std = p->n_stats;
    ok = ok && json_stats(root, "image_mean", p->mean, &n_mean, file, err) &&
         json_stats(root, "image_std", p->std, &n_std, file, err);
    if (ok && n_mean != n_std)
        ok = mn_err_set(err, "%s: image_mean has %d entries but image_std %d", file, n_mean, n_std);
    p->n_stats = n_mean;
    for (int c = 0; ok && c < p->n_stats; c++)
        if (!(p->std[c] > 0) || !isfinite(p->mean[c]))
            ok = mn_err_set(err, "%s: image_std[%d] = %g must be positive (and image_mean finite)", file, c, p->std[c]);
    json_decref(root);
    return ok;
}

/* The shortest decimal that reads back as the same double (what Python's repr writes). */
static void shortest(char *buf, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* A float statistic as the decimal it was written with (0.28604f -> "0.28604"). */
static void float_text(char *buf, size_t n, float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void stats_text(char *buf, size_t n, const float *v, int count) {
    size_t at = (size_t)snprintf(buf, n, "[\n");
    for (int c = 0; c < count && at < n; c++) {
        char num[32];
        float_text(num, sizeof num, v[c]);
        at += (size_t)snprintf(buf + at, n - at, "    %s%s\n", num, c + 1 < count ? "," : "");
    }
    if (at < n) snprintf(buf + at, n - at, "  ]");
}

bool img_preproc_write(const img_preproc *p, const char *dir, mn_err *err) {
    char mean[256], std[256], rescale[32], text[2048], path[4096];
    stats_text(mean, sizeof mean, p->mean, p->n_stats);
    stats_text(std, sizeof std, p->std, p->n_stats);
    shortest(rescale, sizeof rescale, p->rescale_factor);
    int len = snprintf(text, sizeof text,
                       "{\n  \"do_normalize\": %s,\n  \"do_rescale\": %s,\n  \"do_resize\": %s,\n"
                       "  \"image_mean\": %s,\n  \"image_processor_type\": \"ViTImageProcessor\",\n"
                       "  \"image_std\": %s,\n  \"resample\": 2,\n  \"rescale_factor\": %s,\n"
                       "  \"size\": {\n    \"height\": %d,\n    \"width\": %d\n  }\n}\n",
                       p->do_normalize ? "true" : "false", p->do_rescale ? "true" : "false",
                       p->do_resize ? "true" : "false", mean, std, rescale, p->height, p->width);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    return mn_write_file_atomic(path, text, (size_t)len, err);
}

bool img_preproc_check(const img_preproc *p, int channels, int image_size, const char *where, mn_err *err) {
    if (p->do_normalize && p->n_stats != 1 && p->n_stats != channels)
        return mn_err_set(err, "%s: image_mean/image_std have %d entries but the model has %d channel%s", where,
                          p->n_stats, channels, channels == 1 ? "" : "s");
    if (p->height != image_size || p->width != image_size)
        return mn_err_set(err, "%s: size is %d x %d but the model's image_size is %d", where, p->height, p->width,
                          image_size);
    return true;
}

/* ---- preparing pixels ---------------------------------------------------------------------------- */

/* [N, C0, H, W] -> [N, channels, H, W] */
static mn_tensor *convert_channels(mn_tensor *x, int channels) {
    int64_t c0 = x->shape[1];
    if (c0 == channels) return x;
    if (c0 == 1 && channels == 3)
        return mnt_contiguous(mnt_expand(x, MN_SHAPE(x->shape[0], 3, x->shape[2], x->shape[3])));
    if (c0 == 3 && channels == 1) { /* stb_image's grey: (77 R + 150 G + 29 B) / 256 */
        mn_tensor *w = mn_from_data(MN_SHAPE(1, 3, 1, 1), (const float[]){77 / 256.0f, 150 / 256.0f, 29 / 256.0f});
        return mnt_sum(mnt_binary(MN_OP_MUL, x, w), 1, (int[]){1}, true);
    }
    char s[96];
    mn_fatal("img_prepare: cannot turn %s pixels into %d channels", mn_shape_str(x, s), channels);
}

mn_tensor *img_prepare(const img_preproc *p, int channels, mn_tensor *x) {
    mn_scope sc = mn_scope_begin();
    if (x->ndim == 3) x = mnt_unsqueeze(x, 0);
    char s[96];
    if (x->ndim != 4 || x->dtype != MN_F32)
        mn_fatal("img_prepare: expected float [N, C, H, W], got %s", mn_shape_str(x, s));
    x = convert_channels(x, channels);
    /* a ViT takes exactly its image size, so sizes that differ are resized even without do_resize */
    if (x->shape[2] != p->height || x->shape[3] != p->width) x = mn_image_resize(x, p->height, p->width);
    double scale = (p->do_rescale ? p->rescale_factor : 1.0) * 255.0; /* the loaders give pixel / 255 */
    x = fabs(scale - 1.0) > 1e-12 ? mnt_affine(x, (float)scale, 0) : mnt_clone(x);
    if (p->do_normalize) {
        float mean[3], std[3];
        for (int c = 0; c < channels; c++) {
            mean[c] = p->mean[p->n_stats == 1 ? 0 : c];
            std[c] = p->std[p->n_stats == 1 ? 0 : c];
        }
        mn_image_normalize_(x, mean, std);
    }
    return mn_scope_return(sc, x);
}

void img_print_changes(const char *prog, const mn_image_changes *ch, int size, int channels) {
    if (!ch->resized && !ch->converted) return;
    static const char *kinds[] = {"?", "grey", "grey + alpha", "RGB", "RGBA"};
    int c = ch->first_channels >= 1 && ch->first_channels <= 4 ? ch->first_channels : 0;
    fprintf(stderr, "%s: note: of %lld images, %lld were resized to the model's %d x %d and %lld converted to %s "
            "(the first: %s, %d x %d %s)\n", prog, (long long)ch->images, (long long)ch->resized, size, size,
            (long long)ch->converted, channels == 1 ? "grey" : "RGB", ch->first, ch->first_width, ch->first_height,
            kinds[c]);
}

void img_dataset_prepare(mn_dataset *d, const img_preproc *p, int channels) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = img_prepare(p, channels, d->x);
    mn_release(d->x);
    d->x = mn_retain(x);
    mn_scope_end(sc);
}

mn_tensor *img_load_for_model(const char *path, const img_preproc *p, int channels, mn_err *err) {
    mn_image_opts o = {.channels = channels};
    mn_scope sc = mn_scope_begin();
    mn_tensor *img = mn_image_load(path, &o, err);
    if (!img) {
        mn_scope_end(sc);
        return NULL;
    }
    return mn_scope_return(sc, img_prepare(p, channels, img));
}

/* ---- labelled image sets ------------------------------------------------------------------------------- */

bool img_parse_classes(const char *s, int limit, int *classes, int *n, mn_err *err) {
    *n = 0;
    const char *at = s;
    while (*at) {
        char *end;
        long a = strtol(at, &end, 10), b = a;
        if (end == at) return mn_err_set(err, "class list \"%s\": expected a number at \"%s\"", s, at);
        at = end;
        if (*at == '-') {
            b = strtol(at + 1, &end, 10);
            if (end == at + 1) return mn_err_set(err, "class list \"%s\": expected a number after '-'", s);
            at = end;
        }
        if (a < 0 || b >= limit || a > b)
            return mn_err_set(err, "class list \"%s\": %ld-%ld is not a range within 0-%d", s, a, b, limit - 1);
        for (long c = a; c <= b; c++) {
            for (int k = 0; k < *n; k++)
                if (classes[k] == c) return mn_err_set(err, "class list \"%s\": class %ld appears twice", s, c);
            classes[(*n)++] = (int)c;
        }
        if (*at == ',') at++;
        else if (*at) return mn_err_set(err, "class list \"%s\": unexpected '%c'", s, *at);
    }
    return *n > 0 || mn_err_set(err, "class list \"%s\" is empty", s);
}

bool img_fashion_classes(bool train, int n, const int *classes, mn_dataset *out, mn_err *err) {
    mn_dataset all;
    if (!mn_fashion_mnist_load(NULL, train, false, &all, err)) return false;
    mn_dataset_select_classes(&all, n, classes, out);
    mn_dataset_free(&all);
    return true;
}

bool img_idx_load(const char *images_path, const char *labels_path, mn_dataset *out, mn_err *err) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_idx_read_images(images_path, err), *y = x ? mn_idx_read_labels(labels_path, err) : NULL;
    bool ok = y != NULL;
    if (ok && y->shape[0] != x->shape[0])
        ok = mn_err_set(err, "%s holds %lld labels but %s holds %lld images", labels_path, (long long)y->shape[0],
                        images_path, (long long)x->shape[0]);
    if (ok && x->shape[0] == 0) ok = mn_err_set(err, "%s holds no images", images_path);
    if (ok) {
        /* labels number the classes 0 .. K-1: a gap means a stray label, not a class without images */
        const int32_t *lab = mn_idata(y);
        int64_t n = y->shape[0], top_at = 0;
        bool seen[256] = {false};
        for (int64_t i = 0; i < n; i++) {
            seen[lab[i]] = true;
            if (lab[i] > lab[top_at]) top_at = i;
        }
        int32_t top = lab[top_at], empty = 0, first_empty = -1;
        for (int32_t c = top; c >= 0; c--)
            if (!seen[c]) empty++, first_empty = c;
        if (empty > 0) {
            ok = mn_err_set(err, "%s: label %d at byte offset %lld implies %d classes, but %d of them have no images "
                            "(the first is %d): labels must number the classes 0 to K-1",
                            labels_path, (int)top, (long long)(8 + top_at), (int)top + 1, (int)empty, (int)first_empty);
        } else {
            mn_dataset_init(out, x, y, top + 1, NULL);
        }
    }
    mn_scope_end(sc);
    return ok;
}

void img_print_class_counts(const mn_dataset *d, const char *what) {
    int64_t *counts = calloc((size_t)d->n_classes, sizeof *counts);
    if (!counts) mn_fatal("out of memory");
    mn_dataset_class_counts(d, counts);
    printf("%s: %lld images in %d classes\n", what, (long long)mn_dataset_len(d), d->n_classes);
    for (int c = 0; c < d->n_classes; c++) printf("  %-20s %6lld\n", d->class_names[c], (long long)counts[c]);
    free(counts);
}
