/* IDX files (gzip or plain) and the Fashion-MNIST dataset built on them. */
#include "data/data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

typedef struct {
    gzFile f;
    const char *path;
    int64_t pos;      /* bytes consumed (decompressed) */
    int64_t on_disk;  /* file size */
} idx_reader;

static const char *stream_kind(const idx_reader *r) { return gzdirect(r->f) ? "" : " (decompressed)"; }

/* Reads exactly n bytes of `what`; a short read is reported as truncation at the current offset. */
static bool read_exact(idx_reader *r, void *buf, int64_t n, const char *what, mn_err *err) {
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got > (1 << 30) ? (1 << 30) : n - got;
        int k = gzread(r->f, (char *)buf + got, (unsigned)want);
        if (k < 0) {
            int code;
            const char *msg = gzerror(r->f, &code);
            return mn_err_set(err, "%s: corrupt gzip stream at byte offset %lld%s while reading %s: %s", r->path,
                              (long long)(r->pos + got), stream_kind(r), what, msg);
        }
        if (k == 0) break;
        got += k;
    }
    if (got < n)
        return mn_err_set(err, "%s: truncated at byte offset %lld%s: expected %lld bytes of %s, found %lld", r->path,
                          (long long)(r->pos + got), stream_kind(r), (long long)n, what, (long long)got);
    r->pos += n;
    return true;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads an IDX file of unsigned bytes with `ndim` dimensions; returns the
 * malloc'd payload and fills dims. */
static unsigned char *idx_read(const char *path, int ndim, int64_t *dims, mn_err *err) {
    struct stat st;
    if (stat(path, &st) != 0) return mn_err_set(err, "cannot open '%s': %s", path, strerror(errno)), NULL;
    if (!S_ISREG(st.st_mode)) return mn_err_set(err, "%s: not a regular file", path), NULL;
    idx_reader r = {gzopen(path, "rb"), path, 0, (int64_t)st.st_size};
    if (!r.f) return mn_err_set(err, "cannot open '%s': %s", path, strerror(errno)), NULL;
    unsigned char *data = NULL;
    unsigned char head[4 + 4 * 8];
    if (!read_exact(&r, head, 4, "the magic number", err)) goto fail;
    uint32_t magic = be32(head), want_magic = 0x800u | (uint32_t)ndim;
    if (magic != want_magic) {
        bool idx_bytes = head[0] == 0 && head[1] == 0 && head[2] == 8;
        mn_err_set(err,
                   "%s: bad magic number 0x%08x at byte offset 0: expected 0x%08x (unsigned bytes, %d dimension%s)%s",
                   path, magic, want_magic, ndim, ndim == 1 ? "" : "s",
                   idx_bytes ? ", found an IDX file with a different number of dimensions" : "");
        goto fail;
    }
    if (!read_exact(&r, head + 4, 4 * ndim, "dimension sizes", err)) goto fail;
    /* the size of one item first, so that N = 0 cannot hide absurd item sizes */
    int64_t total = 1;
    for (int k = 1; k <= ndim; k++) {
        int d = k % ndim; /* dims 1 .. ndim-1, then dim 0 */
        dims[d] = be32(head + 4 + 4 * d);
        if (d > 0 && dims[d] == 0) {
            mn_err_set(err, "%s: dimension %d at byte offset %d is 0", path, d, 4 + 4 * d);
            goto fail;
        }
        if (dims[d] > 0 && total > ((int64_t)1 << 40) / dims[d]) { /* checked before multiplying: no overflow */
            mn_err_set(err, "%s: dimension sizes at byte offset 4 ask for more than 2^40 bytes", path);
            goto fail;
        }
        total *= dims[d];
    }
    int64_t header = 4 + 4 * (int64_t)ndim;
    /* deflate expands at most ~1032:1, so a larger claim cannot be satisfied by this file */
    int64_t limit = gzdirect(r.f) ? r.on_disk - header : 1100 * r.on_disk + 4096;
    if (gzdirect(r.f) && total > limit) {
        mn_err_set(err, "%s: truncated at byte offset %lld: the header asks for %lld data bytes starting at "
                   "byte offset %lld, the file holds %lld",
                   path, (long long)r.on_disk, (long long)total, (long long)header, (long long)limit);
        goto fail;
    }
    if (gzdirect(r.f) && total < limit) {
        mn_err_set(err, "%s: unexpected data at byte offset %lld: the header's sizes end the file there, but it "
                   "holds %lld more bytes", path, (long long)(header + total), (long long)(limit - total));
        goto fail;
    }
    if (total > limit) {
        mn_err_set(err, "%s: the header (byte offsets 0-%lld) describes %lld data bytes, more than a %lld-byte gzip "
                   "file can hold", path, (long long)header - 1, (long long)total, (long long)r.on_disk);
        goto fail;
    }
    data = malloc(total ? (size_t)total : 1);
    if (!data) {
        mn_err_set(err, "%s: out of memory allocating %lld bytes for its data", path, (long long)total);
        goto fail;
    }
    if (!read_exact(&r, data, total, "pixel/label data", err)) goto fail;
    unsigned char extra;
    int k = gzread(r.f, &extra, 1);
    if (k != 0) {
        int code;
        if (k < 0) mn_err_set(err, "%s: corrupt gzip stream at byte offset %lld (decompressed): %s", path,
                              (long long)r.pos, gzerror(r.f, &code));
        else mn_err_set(err, "%s: unexpected data at byte offset %lld%s: the header's sizes end the file there", path,
                        (long long)r.pos, stream_kind(&r));
        goto fail;
    }
    gzclose(r.f);
    return data;
fail:
    free(data);
    gzclose(r.f);
    return NULL;
}

mn_tensor *mn_idx_read_images(const char *path, mn_err *err) {
    int64_t dims[3];
    unsigned char *data = idx_read(path, 3, dims, err);
    if (!data) return NULL;
    mn_tensor *x = mn_try_empty_dtype(MN_F32, MN_SHAPE(dims[0], 1, dims[1], dims[2]));
    if (!x) {
        free(data);
        return mn_err_set(err, "%s: out of memory for %lld images of %lld x %lld pixels", path, (long long)dims[0],
                          (long long)dims[1], (long long)dims[2]), NULL;
    }
    float *v = mn_data(x);
    int64_t n = dims[0] * dims[1] * dims[2];
    for (int64_t i = 0; i < n; i++) v[i] = (float)data[i] * (1.0f / 255.0f);
    free(data);
    return x;
}

mn_tensor *mn_idx_read_labels(const char *path, mn_err *err) {
    int64_t n;
    unsigned char *data = idx_read(path, 1, &n, err);
    if (!data) return NULL;
    mn_tensor *y = mn_try_empty_dtype(MN_I32, 1, &n);
    if (!y) {
        free(data);
        return mn_err_set(err, "%s: out of memory for %lld labels", path, (long long)n), NULL;
    }
    int32_t *v = mn_idata(y);
    for (int64_t i = 0; i < n; i++) v[i] = data[i];
    free(data);
    return y;
}

/* ---- Fashion-MNIST ----------------------------------------------------------------------------- */

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

const char *mn_fashion_mnist_class_name(int label) { return label >= 0 && label < 10 ? fashion_classes[label] : NULL; }

bool mn_fashion_mnist_load(const char *dir, bool train, bool normalize, mn_dataset *out, mn_err *err) {
    if (!dir) dir = MN_FASHION_MNIST_DIR;
    const char *split = train ? "train" : "t10k";
    size_t len = strlen(dir) + 64;
    char *ipath = mn__xmalloc(len, "path"), *lpath = mn__xmalloc(len, "path");
    snprintf(ipath, len, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lpath, len, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    bool ok = false;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_idx_read_images(ipath, err), *y = x ? mn_idx_read_labels(lpath, err) : NULL;
    if (!y) goto done;
    if (y->shape[0] != x->shape[0]) {
        mn_err_set(err, "%s holds %lld labels but %s holds %lld images", lpath, (long long)y->shape[0], ipath,
                   (long long)x->shape[0]);
        goto done;
    }
    const int32_t *lab = mn_idata(y);
    for (int64_t i = 0; i < y->shape[0]; i++)
        if (lab[i] > 9) {
            mn_err_set(err, "%s: label %d at byte offset %lld: expected 0-9", lpath, (int)lab[i], (long long)(8 + i));
            goto done;
        }
    const float mean = MN_FASHION_MNIST_MEAN, std = MN_FASHION_MNIST_STD;
    if (normalize) mn_image_normalize_(x, &mean, &std);
    mn_dataset_init(out, x, y, 10, fashion_classes);
    ok = true;
done:
    mn_scope_end(sc);
    free(ipath);
    free(lpath);
    return ok;
}
