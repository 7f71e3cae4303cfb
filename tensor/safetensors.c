/* safetensors reader and writer.
 *
 * Layout: [u64 little-endian N][N bytes of JSON header][data buffer]. The header
 * maps each tensor name to {dtype, shape, data_offsets: [begin, end)} relative to
 * the data buffer, plus an optional "__metadata__" object of strings. The reader
 * checks what the reference implementation checks (header size limit, JSON
 * object, no duplicate keys, dtype sizes, offsets tiling the buffer exactly), so
 * a file that opens here opens there and the other way round. */
#include "tensor/fileio_internal.h"
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies little-endian file data directly and needs a little-endian host"
#endif

#define ST_MAX_HEADER 100000000ULL

/* ---- dtypes ------------------------------------------------------------------------ */

enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I32, ST_I64, ST_OTHER };

typedef struct {
    const char *name;
    int bits; /* per element; F6 and F4 pack below a byte */
    int kind; /* how mnemo loads it (ST_OTHER: it doesn't) */
} st_dtype;

static const st_dtype DTYPES[] = {
    {"F32", 32, ST_F32},         {"F16", 16, ST_F16},         {"BF16", 16, ST_BF16},     {"F64", 64, ST_F64},
    {"I32", 32, ST_I32},         {"I64", 64, ST_I64},         {"BOOL", 8, ST_OTHER},     {"U8", 8, ST_OTHER},
    {"I8", 8, ST_OTHER},         {"I16", 16, ST_OTHER},       {"U16", 16, ST_OTHER},     {"U32", 32, ST_OTHER},
    {"U64", 64, ST_OTHER},       {"C64", 64, ST_OTHER},       {"F8_E5M2", 8, ST_OTHER},  {"F8_E4M3", 8, ST_OTHER},
    {"F8_E8M0", 8, ST_OTHER},    {"F8_E4M3FNUZ", 8, ST_OTHER}, {"F8_E5M2FNUZ", 8, ST_OTHER},
    {"F6_E2M3", 6, ST_OTHER},    {"F6_E3M2", 6, ST_OTHER},    {"F4", 4, ST_OTHER},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

static int find_dtype(const char *name) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return i;
    return -1;
}

/* ---- the open file --------------------------------------------------------------------- */

typedef struct {
    char *name;
    int dtype; /* index into DTYPES */
    int ndim;
    int64_t shape[MN_MAX_DIMS];
    uint64_t begin, end; /* into the data buffer */
    int header_pos;      /* position among the header's keys, to keep ties stable */
} st_tensor;

struct mn_st_file {
    char *path;
    const unsigned char *bytes; /* whole file */
    size_t size;
    void *map; /* mmap'd file, or NULL */
    unsigned char *owned; /* malloc'd copy, or NULL */
    uint64_t header_len;
    const unsigned char *data; /* data buffer = bytes + 8 + header_len */
    uint64_t data_size;
    int n;
    st_tensor *tensors; /* sorted by offsets */
    const st_tensor **by_name; /* the same tensors, sorted by name */
    int n_meta;
    char **meta; /* key, value, key, value, ... in header order */
};

void mn_st_close(mn_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    if (f->map) munmap(f->map, f->size);
    free(f->owned);
    free(f->path);
    free(f);
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static bool parse_metadata(mn_st_file *f, json_t *meta, mn_err *err) {
    if (json_is_null(meta)) return true; /* the reference reader accepts null as "no metadata" */
    if (!json_is_object(meta))
        return mn_err_set(err, "safetensors '%s': \"__metadata__\" must be an object of string values, found %s",
                          f->path, json_type_name(meta));
    size_t n = json_object_size(meta);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return mn_err_set(err, "safetensors '%s': out of memory", f->path);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return mn_err_set(err, "safetensors '%s': \"__metadata__\" value of key '%s' is %s, expected a string",
                              f->path, key, json_type_name(v));
        f->meta[2 * f->n_meta] = strdup(key);
        f->meta[2 * f->n_meta + 1] = strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return mn_err_set(err, "safetensors '%s': out of memory", f->path);
    }
    return true;
}

/* A JSON value that must be a non-negative integer. */
static bool get_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Reads one tensor entry {dtype, shape, data_offsets} and checks it on its own. */
static bool parse_tensor(mn_st_file *f, const char *name, json_t *v, st_tensor *t, mn_err *err) {
    const char *p = f->path;
    if (!json_is_object(v))
        return mn_err_set(err, "safetensors '%s': entry '%s' must be an object {dtype, shape, data_offsets}, found %s",
                          p, name, json_type_name(v));
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return mn_err_set(err, "safetensors '%s': tensor '%s' has no \"%s\" field", p, name,
                          !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return mn_err_set(err, "safetensors '%s': tensor '%s': dtype is %s, expected a string like \"F32\"", p, name,
                          json_type_name(jd));
    t->dtype = find_dtype(json_string_value(jd));
    if (t->dtype < 0)
        return mn_err_set(err,
                          "safetensors '%s': tensor '%s' has unknown dtype \"%.40s\" (expected F32, F16, BF16, F64, "
                          "I64, I32, I16, I8, U64, U32, U16, U8, BOOL, C64, F8_*, F6_* or F4)",
                          p, name, json_string_value(jd));
    if (!json_is_array(js))
        return mn_err_set(err, "safetensors '%s': tensor '%s': shape is %s, expected an array of sizes", p, name,
                          json_type_name(js));
    size_t nd = json_array_size(js);
    if (nd > MN_MAX_DIMS)
        return mn_err_set(err, "safetensors '%s': tensor '%s' has %zu dimensions; mnemo supports at most %d", p, name,
                          nd, MN_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    bool overflow = false, has_zero = false;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!get_uint(json_array_get(js, i), &d))
            return mn_err_set(err, "safetensors '%s': tensor '%s': shape entry %zu is %s, expected a non-negative "
                              "integer", p, name, i, json_type_name(json_array_get(js, i)));
        t->shape[i] = (int64_t)d;
        has_zero |= d == 0;
        overflow |= __builtin_mul_overflow(numel, d, &numel);
    }
    uint64_t bits = 0;
    if (has_zero) numel = 0, overflow = false;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)DTYPES[t->dtype].bits, &bits))
        return mn_err_set(err, "safetensors '%s': tensor '%s': the size of shape x %s overflows 64 bits", p, name,
                          DTYPES[t->dtype].name);
    if (bits % 8)
        return mn_err_set(err, "safetensors '%s': tensor '%s': %llu elements of %s are not a whole number of bytes",
                          p, name, (unsigned long long)numel, DTYPES[t->dtype].name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !get_uint(json_array_get(jo, 0), &t->begin) ||
        !get_uint(json_array_get(jo, 1), &t->end))
        return mn_err_set(err, "safetensors '%s': tensor '%s': data_offsets must be [begin, end] with two "
                          "non-negative integers", p, name);
    if (t->end < t->begin)
        return mn_err_set(err, "safetensors '%s': tensor '%s': data_offsets [%llu, %llu] end before they begin", p,
                          name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != bits / 8) {
        char b[96];
        return mn_err_set(err, "safetensors '%s': tensor '%s' (%s, shape %s) needs %llu bytes, but data_offsets "
                          "[%llu, %llu] span %llu bytes", p, name, DTYPES[t->dtype].name,
                          mn__dims_str(t->ndim, t->shape, b), (unsigned long long)(bits / 8),
                          (unsigned long long)t->begin, (unsigned long long)t->end,
                          (unsigned long long)(t->end - t->begin));
    }
    if (t->end > f->data_size)
        return mn_err_set(err, "safetensors '%s': tensor '%s': data_offsets [%llu, %llu] reach beyond the end of the "
                          "data buffer, which has %llu bytes (file offsets %llu..%llu, file is %zu bytes; truncated "
                          "file?)", p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                          (unsigned long long)f->data_size, (unsigned long long)(8 + f->header_len + t->begin),
                          (unsigned long long)(8 + f->header_len + t->end), f->size);
    t->name = strdup(name);
    if (!t->name) return mn_err_set(err, "safetensors '%s': out of memory", p);
    return true;
}

static int cmp_offsets(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->header_pos - y->header_pos;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* The tensors, in offset order, must cover [0, data_size) exactly once. */
static bool check_tiling(const mn_st_file *f, mn_err *err) {
    uint64_t covered = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin > covered) {
            if (prev)
                return mn_err_set(err, "safetensors '%s': hole in the data buffer: bytes [%llu, %llu) belong to no "
                                  "tensor ('%s' ends at %llu, the next tensor '%s' starts at %llu)", f->path,
                                  (unsigned long long)covered, (unsigned long long)t->begin, prev,
                                  (unsigned long long)covered, t->name, (unsigned long long)t->begin);
            return mn_err_set(err, "safetensors '%s': hole in the data buffer: bytes [0, %llu) belong to no tensor "
                              "(the first tensor '%s' starts at %llu, expected 0)", f->path,
                              (unsigned long long)t->begin, t->name, (unsigned long long)t->begin);
        }
        if (t->begin < covered)
            return mn_err_set(err, "safetensors '%s': tensors overlap: '%s' starts at %llu but '%s' covers bytes up to "
                              "%llu", f->path, t->name, (unsigned long long)t->begin, prev,
                              (unsigned long long)covered);
        covered = t->end;
        prev = t->name;
    }
    if (covered != f->data_size)
        return mn_err_set(err, "safetensors '%s': %llu trailing bytes of the data buffer, [%llu, %llu) (file offset "
                          "%llu), are not covered by any tensor", f->path,
                          (unsigned long long)(f->data_size - covered), (unsigned long long)covered,
                          (unsigned long long)f->data_size, (unsigned long long)(8 + f->header_len + covered));
    return true;
}

/* Parses and validates f->bytes[0, f->size). */
static bool parse_file(mn_st_file *f, mn_err *err) {
    const char *p = f->path;
    if (f->size < 8)
        return mn_err_set(err, "safetensors '%s': file is %zu bytes, too short for a safetensors file (it starts with "
                          "an 8-byte header length)", p, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->bytes[i];
    if (n > ST_MAX_HEADER)
        return mn_err_set(err, "safetensors '%s': header length %llu (file bytes 0..8) exceeds the limit of %llu "
                          "bytes (corrupt, or not a safetensors file?)", p, (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return mn_err_set(err, "safetensors '%s': header length %llu (file bytes 0..8) goes past the end of the file: "
                          "only %zu bytes follow the length field", p, (unsigned long long)n, f->size - 8);
    f->header_len = n;
    f->data = f->bytes + 8 + n;
    f->data_size = f->size - 8 - n;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return mn_err_set(err, "safetensors '%s': header is not valid JSON: %s (header line %d, column %d; file "
                          "offset %lld)", p, jerr.text, jerr.line, jerr.column, 8LL + (long long)jerr.position);
    bool ok = true;
    if (!json_is_object(root)) {
        ok = mn_err_set(err, "safetensors '%s': header is %s, expected a JSON object {name: {dtype, shape, "
                        "data_offsets}}", p, json_type_name(root));
        goto done;
    }
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap + 1, sizeof *f->tensors);
    f->by_name = calloc(cap + 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name) {
        ok = mn_err_set(err, "safetensors '%s': out of memory", p);
        goto done;
    }
    const char *key;
    json_t *v;
    int pos = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!(ok = parse_metadata(f, v, err))) goto done;
        } else {
            st_tensor *t = &f->tensors[f->n];
            t->header_pos = pos;
            if (!(ok = parse_tensor(f, key, v, t, err))) goto done;
            f->n++;
        }
        pos++;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_offsets);
    if (!(ok = check_tiling(f, err))) goto done;
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_names);
done:
    json_decref(root);
    return ok;
}

static mn_st_file *new_file(const char *name, mn_err *err) {
    mn_st_file *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(name ? name : "<memory>");
    if (!f || !f->path) {
        free(f);
        mn_err_set(err, "safetensors '%s': out of memory", name ? name : "<memory>");
        return NULL;
    }
    return f;
}

static mn_st_file *finish_open(mn_st_file *f, mn_err *err) {
    if (parse_file(f, err)) return f;
    mn_st_close(f);
    return NULL;
}

mn_st_file *mn_st_open_memory(const void *data, size_t size, const char *name, mn_err *err) {
    mn_st_file *f = new_file(name, err);
    if (!f) return NULL;
    f->owned = malloc(size ? size : 1);
    if (!f->owned) {
        mn_err_set(err, "safetensors '%s': out of memory for %zu bytes", f->path, size);
        mn_st_close(f);
        return NULL;
    }
    if (size) memcpy(f->owned, data, size);
    f->bytes = f->owned;
    f->size = size;
    return finish_open(f, err);
}

mn_st_file *mn_st_open(const char *path, mn_err *err) {
    if (!path) {
        mn_err_set(err, "safetensors: no path given");
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        mn_err_set(err, "safetensors '%s': cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mn_err_set(err, "safetensors '%s': cannot read: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        mn_err_set(err, "safetensors '%s': cannot read: it is a directory, expected a file", path);
        close(fd);
        return NULL;
    }
    mn_st_file *f = new_file(path, err);
    if (!f) {
        close(fd);
        return NULL;
    }
    /* map regular files (checkpoints run to gigabytes); read anything else whole */
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        f->size = (size_t)st.st_size;
        f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            mn_err_set(err, "safetensors '%s': cannot map %zu bytes: %s", path, f->size, strerror(errno));
            close(fd);
            mn_st_close(f);
            return NULL;
        }
        f->bytes = f->map;
        close(fd);
    } else {
        close(fd);
        f->owned = mn_read_file(path, &f->size, 0, err);
        if (!f->owned) {
            mn_st_close(f);
            return NULL;
        }
        f->bytes = f->owned;
    }
    return finish_open(f, err);
}

/* ---- queries ------------------------------------------------------------------------------ */

int mn_st_count(const mn_st_file *f) { return f->n; }

const char *mn_st_path(const mn_st_file *f) { return f->path; }

const char *mn_st_name(const mn_st_file *f, int i) {
    if (i < 0 || i >= f->n) mn_fatal("mn_st_name: index %d out of range ('%s' holds %d tensors)", i, f->path, f->n);
    return f->tensors[i].name;
}

static const st_tensor *find_tensor(const mn_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

bool mn_st_info(const mn_st_file *f, const char *name, const char **dtype, int *ndim, int64_t *shape) {
    const st_tensor *t = find_tensor(f, name);
    if (!t) return false;
    if (dtype) *dtype = DTYPES[t->dtype].name;
    if (ndim) *ndim = t->ndim;
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return true;
}

const char *mn_st_meta(const mn_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- reading tensors ------------------------------------------------------------------------ */

/* IEEE half -> float, exact for every value including subnormals, infinities and NaN payloads. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        float mag = (float)mant * 0x1p-24f; /* subnormal (or zero): mant * 2^-24, exact in float */
        return sign ? -mag : mag;
    }
    if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);
    else bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

mn_tensor *mn_st_read(const mn_st_file *f, const char *name, mn_err *err) {
    const st_tensor *t = find_tensor(f, name);
    if (!t) {
        mn_err_set(err, "safetensors '%s': no tensor named '%s' (the file holds %d tensors)", f->path, name, f->n);
        return NULL;
    }
    const unsigned char *src = f->data + t->begin;
    int64_t n = (int64_t)((t->end - t->begin) * 8 / (uint64_t)DTYPES[t->dtype].bits);
    int kind = DTYPES[t->dtype].kind;
    if (kind == ST_OTHER) {
        mn_err_set(err, "safetensors '%s': tensor '%s' has unsupported dtype %s (mnemo loads F32, F16, BF16 and F64 "
                   "as F32, I32 and I64 as I32)", f->path, name, DTYPES[t->dtype].name);
        return NULL;
    }
    if (kind == ST_I64) /* check the range before allocating, so a failure leaves nothing behind */
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX) {
                mn_err_set(err, "safetensors '%s': tensor '%s' (I64): element %lld is %lld, outside the int32 range "
                           "mnemo loads it into (file offset %llu)", f->path, name, (long long)i, (long long)v,
                           (unsigned long long)(8 + f->header_len + t->begin + 8 * (uint64_t)i));
                return NULL;
            }
        }
    bool is_int = kind == ST_I32 || kind == ST_I64;
    mn_tensor *out = mn_try_empty_dtype(is_int ? MN_I32 : MN_F32, t->ndim, t->shape);
    if (!out) {
        mn_err_set(err, "safetensors '%s': tensor '%s': out of memory allocating %lld bytes for it", f->path, name,
                   (long long)n * 4);
        return NULL;
    }
    float *o = is_int ? NULL : mn_data(out);
    int32_t *oi = is_int ? mn_idata(out) : NULL;
    switch (kind) {
    case ST_F32: memcpy(o, src, (size_t)n * 4); break;
    case ST_I32: memcpy(oi, src, (size_t)n * 4); break;
    case ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            o[i] = half_to_float(h);
        }
        break;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16; /* bfloat16 is the top half of a float */
            memcpy(&o[i], &bits, 4);
        }
        break;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            o[i] = (float)d;
        }
        break;
    case ST_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            oi[i] = (int32_t)v;
        }
        break;
    }
    return out;
}

/* ---- writing ---------------------------------------------------------------------------------- */

/* Appends t's elements (4 bytes each) in row-major order, whatever its strides. */
static bool write_tensor_data(mn__atomic_file *af, const mn_tensor *t, mn_err *err) {
    int64_t n = mn_numel(t);
    if (n == 0) return true;
    const uint32_t *base = (const uint32_t *)t->storage->data;
    if (mn_is_contiguous(t)) return mn__atomic_write(af, base + t->offset, (size_t)n * 4, err);
    enum { CHUNK = 16384 };
    uint32_t buf[CHUNK];
    int64_t idx[MN_MAX_DIMS] = {0}, done = 0;
    while (done < n) {
        int64_t m = 0;
        for (; m < CHUNK && done + m < n; m++) {
            int64_t off = t->offset;
            for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
            buf[m] = base[off];
            for (int d = t->ndim - 1; d >= 0; d--) {
                if (++idx[d] < t->shape[d]) break;
                idx[d] = 0;
            }
        }
        if (!mn__atomic_write(af, buf, (size_t)m * 4, err)) return false;
        done += m;
    }
    return true;
}

/* The header as compact JSON (malloc'd): __metadata__ first, then the tensors in the given order. */
static char *build_header(const char *path, int n, const mn_st_entry *entries, int n_meta, const char *const *meta,
                          mn_err *err) {
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && n_meta > 0) {
        json_t *m = json_object();
        ok = m && json_object_set_new(root, "__metadata__", m) == 0;
        for (int i = 0; ok && i < n_meta; i++) {
            json_t *v = json_string(meta[2 * i + 1]);
            if (!v || json_object_set_new(m, meta[2 * i], v) != 0) {
                mn_err_set(err, "cannot write '%s': metadata key '%s' or its value is not valid UTF-8", path,
                           meta[2 * i]);
                json_decref(root);
                return NULL;
            }
        }
    }
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const mn_tensor *t = entries[i].tensor;
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        ok = e && shape && offs;
        for (int d = 0; ok && d < t->ndim; d++) ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
        uint64_t bytes = (uint64_t)mn_numel(t) * 4;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)offset)) == 0 &&
             json_array_append_new(offs, json_integer((json_int_t)(offset + bytes))) == 0;
        offset += bytes;
        ok = ok && json_object_set_new(e, "dtype", json_string(t->dtype == MN_I32 ? "I32" : "F32")) == 0 &&
             json_object_set_new(e, "shape", shape) == 0 && json_object_set_new(e, "data_offsets", offs) == 0;
        if (!ok) {
            json_decref(e);
            break;
        }
        if (json_object_set_new(root, entries[i].name, e) != 0) {
            mn_err_set(err, "cannot write '%s': tensor name '%s' is not valid UTF-8", path, entries[i].name);
            json_decref(root);
            return NULL;
        }
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!text) mn_err_set(err, "cannot write '%s': out of memory building the header", path);
    return text;
}

bool mn_st_write(const char *path, int n, const mn_st_entry *entries, int n_meta, const char *const *meta,
                 mn_err *err) {
    /* wrong arguments are programming errors; check them all before allocating anything */
    if (n < 0 || n_meta < 0 || (n > 0 && !entries) || (n_meta > 0 && !meta))
        mn_fatal("mn_st_write: bad arguments (n = %d, n_meta = %d)", n, n_meta);
    for (int i = 0; i < n; i++) {
        const mn_tensor *t = entries[i].tensor;
        if (!entries[i].name || !t) mn_fatal("mn_st_write: entry %d has no %s", i, t ? "name" : "tensor");
        if (strcmp(entries[i].name, "__metadata__") == 0)
            mn_fatal("mn_st_write: entry %d: \"__metadata__\" is reserved and cannot name a tensor", i);
        if (t->dtype != MN_F32 && t->dtype != MN_I32) mn_fatal("mn_st_write: tensor '%s' has an unknown dtype",
                                                               entries[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(entries[i].name, entries[j].name) == 0)
                mn_fatal("mn_st_write: tensor name '%s' appears twice (entries %d and %d)", entries[i].name, j, i);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1]) mn_fatal("mn_st_write: metadata pair %d has a NULL key or value", i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta[2 * i], meta[2 * j]) == 0)
                mn_fatal("mn_st_write: metadata key '%s' appears twice", meta[2 * i]);
    }

    char *json = build_header(path, n, entries, n_meta, meta, err);
    if (!json) return false;
    /* pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does */
    size_t len = strlen(json), padded = (len + 7) & ~(size_t)7;
    unsigned char *head = malloc(8 + padded);
    if (!head) {
        free(json);
        return mn_err_set(err, "cannot write '%s': out of memory for the header", path);
    }
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(head + 8, json, len);
    memset(head + 8 + len, ' ', padded - len);
    free(json);

    mn__atomic_file af;
    bool ok = mn__atomic_open(&af, path, err) && mn__atomic_write(&af, head, 8 + padded, err);
    free(head);
    for (int i = 0; ok && i < n; i++) ok = write_tensor_data(&af, entries[i].tensor, err);
    return ok && mn__atomic_commit(&af, err);
}
