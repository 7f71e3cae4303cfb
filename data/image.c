/* Image decoding (stb_image, compiled privately into this file) and per-channel normalisation. */
#include "data/data_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stb_image's functions are static to this file, so programs that link their own
 * copy of stb_image (or Debian's libstb) do not clash with mnemo's. */
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS (1 << 16)
/* stb declares static functions it never defines in this configuration; the
 * warning comes at the end of the file, so it stays off for the whole file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

/* Decoded images larger than this many pixels are refused (1.6 GB as RGB floats). */
#define MAX_PIXELS ((int64_t)1 << 27)
#define MAX_FILE_BYTES ((size_t)1 << 30)

static mn_image_opts resolve(const mn_image_opts *opts) {
    mn_image_opts o = opts ? *opts : (mn_image_opts){0};
    if (!o.channels) o.channels = 3;
    if (o.channels != 1 && o.channels != 3) mn_fatal("mn_image_opts: channels must be 1 or 3, got %d", o.channels);
    if (o.height < 0 || o.width < 0 || (o.height == 0) != (o.width == 0))
        mn_fatal("mn_image_opts: height and width must both be positive (resize) or both 0, got %d x %d", o.height,
                 o.width);
    if ((o.mean == NULL) != (o.std == NULL)) mn_fatal("mn_image_opts: give both mean and std, or neither");
    return o;
}

/* stb_image's reason, with bytes that are not printable ASCII (it copies a PNG chunk's type into
 * the text) written as \xNN. */
static const char *failure_reason(void) {
    static _Thread_local char out[128];
    const char *r = stbi_failure_reason();
    size_t k = 0;
    for (; r && *r && k + 5 < sizeof out; r++) {
        unsigned char ch = (unsigned char)*r;
        if (ch >= 32 && ch < 127) out[k++] = (char)ch;
        else k += (size_t)snprintf(out + k, sizeof out - k, "\\x%02X", ch);
    }
    out[k] = 0;
    return out;
}

/* The checks and decoding after the format-specific guards of mn_image_decode. */
static mn_tensor *decode(const unsigned char *data, size_t size, const char *name, mn_image_opts o, mn_err *err) {
    int w, h, c;
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &c))
        return mn_err_set(err, "%s: not a readable PNG, JPEG or BMP image (%s)", name, failure_reason()), NULL;
    if (w < 1 || h < 1) return mn_err_set(err, "%s: image of %d x %d pixels is empty", name, w, h), NULL;
    if ((int64_t)w * h > MAX_PIXELS)
        return mn_err_set(err, "%s: image of %d x %d pixels exceeds the limit of %lld pixels", name, w, h,
                          (long long)MAX_PIXELS), NULL;
    /* No PNG, JPEG or BMP packs 2048 pixels into a byte (deflate tops out near
     * 1032:1); a header claiming more is truncated or hostile, and stb_image
     * would otherwise fill the missing pixels in. */
    if ((int64_t)w * h > 4096 + 2048 * (int64_t)size)
        return mn_err_set(err, "%s: header claims %d x %d pixels but the file has only %zu bytes (truncated or "
                          "corrupt)", name, w, h, size), NULL;
    unsigned char *px = stbi_load_from_memory(data, (int)size, &w, &h, &c, o.channels);
    if (!px) return mn_err_set(err, "%s: cannot decode image: %s", name, failure_reason()), NULL;
    if (w < 1 || h < 1) { /* the decoder may disagree with the header check above */
        stbi_image_free(px);
        return mn_err_set(err, "%s: image of %d x %d pixels is empty", name, w, h), NULL;
    }
    mn_scope sc = mn_scope_begin();
    if (o.changes) {
        mn_image_changes *ch = o.changes;
        bool resized = o.height && (h != o.height || w != o.width);
        bool converted = c == 2 || c == 4 || (c == 1) != (o.channels == 1);
        ch->images++;
        ch->resized += resized, ch->converted += converted;
        if ((resized || converted) && !ch->first[0]) {
            ch->first_height = h, ch->first_width = w, ch->first_channels = c;
            snprintf(ch->first, sizeof ch->first, "%s", name);
        }
    }
    int64_t C = o.channels, plane = (int64_t)w * h;
    mn_tensor *t = mn_empty(MN_SHAPE(C, h, w));
    float *v = mn_data(t);
    for (int64_t ch = 0; ch < C; ch++) /* interleaved HWC bytes -> planar CHW floats */
        for (int64_t i = 0; i < plane; i++) v[ch * plane + i] = (float)px[i * C + ch] * (1.0f / 255.0f);
    stbi_image_free(px);
    if (o.height) t = mn_image_resize(t, o.height, o.width);
    if (o.mean) mn_image_normalize_(t, o.mean, o.std);
    return mn_scope_return(sc, t);
}

mn_tensor *mn_image_decode(const void *data, size_t size, const char *name, const mn_image_opts *opts, mn_err *err) {
    mn_image_opts o = resolve(opts);
    if (size > INT_MAX) return mn_err_set(err, "%s: image file of %zu bytes is too large", name, size), NULL;
    if (!mn__jpeg_tables_ok(data, size))
        return mn_err_set(err, "%s: corrupt JPEG: a Huffman table defines more than 256 codes", name), NULL;
    if (!mn__png_crcs_ok(data, size, name, err)) return NULL;
    size_t fixed_size;
    unsigned char *fixed = mn__png_drop_empty_idat(data, size, &fixed_size);
    mn_tensor *t = fixed ? decode(fixed, fixed_size, name, o, err) : decode(data, size, name, o, err);
    free(fixed);
    return t;
}

mn_tensor *mn_image_load(const char *path, const mn_image_opts *opts, mn_err *err) {
    resolve(opts);
    size_t size;
    void *data = mn_read_file(path, &size, MAX_FILE_BYTES, err);
    if (!data) return NULL;
    mn_tensor *t = mn_image_decode(data, size, path, opts, err);
    free(data);
    return t;
}

void mn_image_normalize_(mn_tensor *x, const float *mean, const float *std) {
    char s[96];
    if (x->dtype != MN_F32 || (x->ndim != 3 && x->ndim != 4) || !mn_is_contiguous(x))
        mn_fatal("mn_image_normalize_: expected a contiguous float [C, H, W] or [N, C, H, W], got %s",
                 mn_shape_str(x, s));
    int64_t C = x->shape[x->ndim - 3], plane = x->shape[x->ndim - 1] * x->shape[x->ndim - 2];
    int64_t n = x->ndim == 4 ? x->shape[0] : 1;
    for (int64_t c = 0; c < C; c++)
        if (!(std[c] != 0)) mn_fatal("mn_image_normalize_: std[%lld] is %g", (long long)c, std[c]);
    float *v = mn_data(x);
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < C; c++) {
            float *p = v + (i * C + c) * plane, m = mean[c], sd = std[c];
            for (int64_t k = 0; k < plane; k++) p[k] = (p[k] - m) / sd;
        }
    x->storage->version++;
}
