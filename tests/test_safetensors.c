/* safetensors reading and writing, and atomic file writes: round trips through the
 * writer, hand-built files with known bytes (F16, BF16, F64, I64 conversions,
 * padded headers as the reference writer makes them), and one malformed file per
 * rule the reader enforces, checked by the words of its error message. */
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- scratch files ------------------------------------------------------------------ */

static char g_dir[64];

static int make_dir(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/mn_st_XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

/* Removes everything in the scratch directory (one level; tests make no subdirectories
 * except the ones they remove themselves). */
static void clear_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
    closedir(d);
}

static int remove_dir(void **state) {
    (void)state;
    clear_dir();
    return rmdir(g_dir);
}

/* Path of a scratch file; a few rotating buffers so two can be in use at once. */
static const char *tpath(const char *name) {
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static int count_dir_entries(void) {
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void write_raw(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Writes [N][header padded with spaces to pad_to][data] with the stated header length n_field. */
static void write_st_raw(const char *path, uint64_t n_field, const char *header, size_t pad_to, const void *data,
                         size_t data_len) {
    size_t hl = strlen(header), total_h = hl > pad_to ? hl : pad_to;
    unsigned char *buf = calloc(1, 8 + total_h + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n_field >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', total_h - hl);
    if (data_len) memcpy(buf + 8 + total_h, data, data_len);
    write_raw(path, buf, 8 + total_h + data_len);
    free(buf);
}

/* A well-formed file: header padded to a multiple of 8 like the reference writer. */
static const char *write_st(const char *name, const char *header, const void *data, size_t data_len) {
    const char *path = tpath(name);
    size_t padded = (strlen(header) + 7) & ~(size_t)7;
    write_st_raw(path, padded, header, padded, data, data_len);
    return path;
}

static void assert_contains(const char *msg, const char *what) {
    if (!strstr(msg, what)) fail_msg("message \"%s\" does not contain \"%s\"", msg, what);
}

/* Opening path must fail with a message naming the file and containing each of the words. */
static void expect_open_error(const char *path, const char *w1, const char *w2) {
    mn_err e = {{0}};
    mn_st_file *f = mn_st_open(path, &e);
    if (f) {
        mn_st_close(f);
        fail_msg("%s opened, expected an error containing \"%s\"", path, w1);
    }
    assert_contains(e.msg, path);
    assert_contains(e.msg, w1);
    if (w2) assert_contains(e.msg, w2);
}

static mn_st_file *open_ok(const char *path) {
    mn_err e = {{0}};
    mn_st_file *f = mn_st_open(path, &e);
    if (!f) fail_msg("opening %s failed: %s", path, e.msg);
    return f;
}

static void assert_same_values(const mn_tensor *got, const mn_tensor *want) {
    assert_int_equal(got->dtype, want->dtype);
    assert_true(mn_same_shape(got, want));
    int64_t n = mn_numel(want);
    float *a = malloc(sizeof(float) * (size_t)(n + 1)), *b = malloc(sizeof(float) * (size_t)(n + 1));
    mn_to_array(got, a);
    mn_to_array(want, b);
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) fail_msg("element %lld: %.9g, expected %.9g", (long long)i,
                                                                a[i], b[i]);
    free(a);
    free(b);
}

/* ---- round trip ---------------------------------------------------------------------- */

static void round_trip_of_views_ints_scalars_and_empty_tensors_with_metadata(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *w = tu_rand(1, MN_SHAPE(2, 3, 4), -3, 3);
    mn_tensor *wt = mnt_transpose(tu_rand(2, MN_SHAPE(3, 5), -1, 1), 0, 1); /* [5, 3] view, not contiguous */
    int32_t ints[7] = {0, -1, 7, INT32_MAX, INT32_MIN, 123456, -42};
    mn_tensor *idx = mn_from_ints(MN_SHAPE(7), ints);
    mn_tensor *idx_step = mnt_slice(idx, 0, 1, 7, 2); /* strided I32 view: -1, INT32_MAX, 123456 */
    mn_tensor *s = mn_scalar(-0.625f);
    mn_tensor *empty = mn_zeros(MN_SHAPE(0, 3));
    mn_tensor *bcast = mnt_expand(mn_from_data(MN_SHAPE(1, 3), (float[]){1, 2, 3}), MN_SHAPE(2, 3));
    mn_st_entry entries[] = {{"encoder.w", w}, {"encoder.wt", wt}, {"idx", idx}, {"empty", empty},
                             {"idx_step", idx_step}, {"scalar", s}, {"bcast", bcast}};
    const int n = 7;
    const char *meta[] = {"format", "pt", "note", "h\xc3\xa9llo \"quoted\""};
    mn_err e = {{0}};
    const char *path = tpath("round.safetensors");
    if (!mn_st_write(path, n, entries, 2, meta, &e)) fail_msg("write failed: %s", e.msg);

    mn_st_file *f = open_ok(path);
    assert_string_equal(mn_st_path(f), path);
    assert_int_equal(mn_st_count(f), n);
    for (int i = 0; i < n; i++) { /* offsets follow the order given, so file order is that order */
        assert_string_equal(mn_st_name(f, i), entries[i].name);
        mn_tensor *r = mn_st_read(f, entries[i].name, &e);
        if (!r) fail_msg("reading %s: %s", entries[i].name, e.msg);
        assert_same_values(r, entries[i].tensor);
        assert_true(mn_is_contiguous(r));
        const char *dt;
        int nd;
        int64_t shape[MN_MAX_DIMS];
        assert_true(mn_st_info(f, entries[i].name, &dt, &nd, shape));
        assert_string_equal(dt, entries[i].tensor->dtype == MN_I32 ? "I32" : "F32");
        assert_int_equal(nd, entries[i].tensor->ndim);
        for (int d = 0; d < nd; d++) assert_int_equal(shape[d], entries[i].tensor->shape[d]);
    }
    assert_int_equal(mn_idata(mn_st_read(f, "idx_step", &e))[1], INT32_MAX);
    assert_float_equal(mn_get(mn_st_read(f, "encoder.wt", &e), (int64_t[]){4, 1}),
                       mn_get(wt, (int64_t[]){4, 1}), 0);
    assert_string_equal(mn_st_meta(f, "format"), "pt");
    assert_string_equal(mn_st_meta(f, "note"), meta[3]);
    assert_null(mn_st_meta(f, "absent"));
    assert_false(mn_st_info(f, "absent", NULL, NULL, NULL));
    assert_null(mn_st_read(f, "absent", &e));
    assert_contains(e.msg, "no tensor named 'absent'");
    EXPECT_MN_ERROR(mn_st_name(f, n), "out of range");
    mn_st_close(f);
    mn_scope_end(sc);
    clear_dir();
}

/* The header the writer makes: 8-byte aligned data, JSON padded with spaces, __metadata__
 * first, then the tensors in order with contiguous offsets. */
static void written_header_is_aligned_ordered_json(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    for (int len = 1; len <= 9; len++) { /* name lengths that hit every padding amount */
        char name[16] = "abcdefghi";
        name[len] = '\0';
        mn_st_entry entries[] = {{name, mn_ones(MN_SHAPE(3))}, {"b", mn_from_ints(MN_SHAPE(2), (int32_t[]){5, 6})}};
        const char *meta[] = {"format", "pt"};
        mn_err e;
        const char *path = tpath("aligned.safetensors");
        assert_true(mn_st_write(path, 2, entries, len % 2, meta, &e)); /* with and without metadata */
        size_t size;
        unsigned char *bytes = mn_read_file(path, &size, 0, &e);
        assert_non_null(bytes);
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
        assert_int_equal((8 + n) % 8, 0);
        assert_int_equal(size, 8 + n + 3 * 4 + 2 * 4);
        assert_int_equal(bytes[8], '{');
        size_t end = 8 + n;
        while (bytes[end - 1] == ' ') end--;
        assert_int_equal(bytes[end - 1], '}');
        assert_true(8 + n - end < 8);
        json_error_t jerr;
        json_t *root = json_loadb((const char *)bytes + 8, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) fail_msg("header is not JSON: %s", jerr.text);
        const char *key;
        json_t *v;
        int k = 0;
        const char *want_keys[3] = {"__metadata__", name, "b"};
        json_object_foreach(root, key, v) assert_string_equal(key, want_keys[k++ + (len % 2 ? 0 : 1)]);
        assert_int_equal(k, 2 + len % 2);
        json_t *b = json_object_get(root, "b");
        assert_string_equal(json_string_value(json_object_get(b, "dtype")), "I32");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(b, "data_offsets"), 0)), 12);
        assert_int_equal(json_integer_value(json_array_get(json_object_get(b, "data_offsets"), 1)), 20);
        int32_t six;
        memcpy(&six, bytes + 8 + n + 16, 4);
        assert_int_equal(six, 6);
        json_decref(root);
        free(bytes);
    }
    mn_scope_end(sc);
    clear_dir();
}

/* ---- conversions from hand-built files -------------------------------------------------- */

static void f16_bf16_f64_convert_to_exact_f32(void **state) {
    (void)state;
    const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x3555, 0x8001};
    const float f16_want[] = {1.0f, -2.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, 65504.0f, INFINITY, -INFINITY,
                              -0.0f, 0.333251953125f, -0x1p-24f};
    const uint16_t bf16[] = {0x3F80, 0xC040, 0x7F80, 0x0001, 0x4049, 0xFF80};
    const float bf16_want[] = {1.0f, -3.0f, INFINITY, 0x1p-133f, 3.140625f, -INFINITY};
    const double f64[] = {0.1, -2.25, 1e300};
    unsigned char data[22 + 12 + 24 + 2];
    memcpy(data, f16, 22);
    memcpy(data + 22, bf16, 12); /* starts at an odd 2-byte offset: reads must not assume alignment */
    memcpy(data + 34, f64, 24);
    memcpy(data + 58, (uint16_t[]){0x7E00}, 2); /* F16 NaN */
    const char *path = write_st("conv.safetensors",
                                "{\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]},"
                                "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[22,34]},"
                                "\"d\":{\"dtype\":\"F64\",\"shape\":[3,1],\"data_offsets\":[34,58]},"
                                "\"nan\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[58,60]},"
                                "\"z\":{\"dtype\":\"BF16\",\"shape\":[4,0],\"data_offsets\":[60,60]}}",
                                data, sizeof data);
    mn_scope sc = mn_scope_begin();
    mn_st_file *f = open_ok(path);
    mn_err e;
    mn_tensor *h = mn_st_read(f, "h", &e), *b = mn_st_read(f, "b", &e), *d = mn_st_read(f, "d", &e);
    mn_tensor *nan = mn_st_read(f, "nan", &e), *z = mn_st_read(f, "z", &e);
    assert_true(h && b && d && nan && z);
    assert_int_equal(h->dtype, MN_F32);
    for (int i = 0; i < 11; i++)
        if (memcmp(&mn_data(h)[i], &f16_want[i], 4) != 0)
            fail_msg("F16 0x%04x -> %.9g, expected %.9g", f16[i], mn_data(h)[i], f16_want[i]);
    assert_int_equal(b->ndim, 2);
    for (int i = 0; i < 6; i++)
        if (memcmp(&mn_data(b)[i], &bf16_want[i], 4) != 0)
            fail_msg("BF16 0x%04x -> %.9g, expected %.9g", bf16[i], mn_data(b)[i], bf16_want[i]);
    assert_true(mn_data(d)[0] == (float)0.1 && mn_data(d)[1] == -2.25f && isinf(mn_data(d)[2]));
    assert_int_equal(nan->ndim, 0);
    assert_true(isnan(mn_item(nan)));
    assert_int_equal(mn_numel(z), 0);
    assert_int_equal(z->shape[0], 4);
    const char *dt;
    assert_true(mn_st_info(f, "b", &dt, NULL, NULL));
    assert_string_equal(dt, "BF16");
    assert_string_equal(mn_st_name(f, 4), "z"); /* offset order */
    mn_st_close(f);
    mn_scope_end(sc);
    clear_dir();
}

static void i64_loads_as_i32_with_a_range_check(void **state) {
    (void)state;
    const int64_t ok_vals[] = {0, -1, INT32_MAX, INT32_MIN, 42};
    const int64_t bad_vals[] = {1, (int64_t)INT32_MAX + 1};
    unsigned char data[56];
    memcpy(data, ok_vals, 40);
    memcpy(data + 40, bad_vals, 16);
    const char *path = write_st("i64.safetensors",
                                "{\"__metadata__\":{\"format\":\"pt\"},"
                                "\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,5],\"data_offsets\":[0,40]},"
                                "\"big\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[40,56]}}",
                                data, sizeof data);
    mn_scope sc = mn_scope_begin();
    mn_st_file *f = open_ok(path);
    mn_err e;
    mn_tensor *t = mn_st_read(f, "position_ids", &e);
    assert_non_null(t);
    assert_int_equal(t->dtype, MN_I32);
    for (int i = 0; i < 5; i++) assert_int_equal(mn_idata(t)[i], (int32_t)ok_vals[i]);
    int64_t live = mn_live_tensors();
    assert_null(mn_st_read(f, "big", &e));
    assert_int_equal(mn_live_tensors(), live); /* a failed read allocates nothing */
    assert_contains(e.msg, "'big'");
    assert_contains(e.msg, "element 1 is 2147483648");
    assert_contains(e.msg, "outside the int32 range");
    mn_st_close(f);
    mn_scope_end(sc);
    clear_dir();
}

static void unsupported_dtypes_open_but_do_not_load(void **state) {
    (void)state;
    unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *path = write_st("u8.safetensors",
                                "{\"mask\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                                "\"f4\":{\"dtype\":\"F4\",\"shape\":[2,4],\"data_offsets\":[4,8]}}",
                                data, sizeof data);
    mn_st_file *f = open_ok(path);
    const char *dt;
    int nd;
    int64_t shape[MN_MAX_DIMS];
    assert_true(mn_st_info(f, "mask", &dt, &nd, shape));
    assert_string_equal(dt, "U8");
    assert_int_equal(nd, 1);
    assert_int_equal(shape[0], 4);
    mn_err e;
    assert_null(mn_st_read(f, "mask", &e));
    assert_contains(e.msg, "'mask' has unsupported dtype U8");
    assert_contains(e.msg, path);
    assert_null(mn_st_read(f, "f4", &e));
    assert_contains(e.msg, "unsupported dtype F4");
    mn_st_close(f);
    clear_dir();
}

/* What the reference (Rust) writer produces: __metadata__ first, compact JSON, right-padded
 * with spaces so the data is 8-byte aligned; also an empty file with no tensors. */
static void reference_writer_layout_loads(void **state) {
    (void)state;
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"classifier.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                      "\"data_offsets\":[0,8]},\"classifier.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],"
                      "\"data_offsets\":[8,16]}}";
    float vals[4] = {0.5f, -1.5f, 2.0f, 3.25f};
    const char *path = write_st("ref.safetensors", hdr, vals, sizeof vals);
    mn_scope sc = mn_scope_begin();
    mn_st_file *f = open_ok(path);
    mn_err e;
    mn_tensor *w = mn_st_read(f, "classifier.weight", &e);
    assert_non_null(w);
    assert_float_equal(mn_data(w)[0], 2.0f, 0);
    assert_float_equal(mn_data(w)[1], 3.25f, 0);
    assert_string_equal(mn_st_meta(f, "format"), "pt");
    mn_st_close(f);

    path = write_st("empty.safetensors", "{}", NULL, 0);
    f = open_ok(path);
    assert_int_equal(mn_st_count(f), 0);
    mn_st_close(f);
    mn_scope_end(sc);
    clear_dir();
}

/* ---- malformed files ----------------------------------------------------------------------- */

static void framing_errors(void **state) {
    (void)state;
    expect_open_error(tpath("missing.safetensors"), "cannot open", "No such file");
    write_raw(tpath("short.safetensors"), "\x10\0\0\0\0", 5);
    expect_open_error(tpath("short.safetensors"), "5 bytes, too short", NULL);
    write_st_raw(tpath("past.safetensors"), 100, "{}", 10, NULL, 0);
    expect_open_error(tpath("past.safetensors"), "header length 100", "past the end of the file: only 10 bytes");
    write_st_raw(tpath("huge.safetensors"), 100000001, "{}", 8, NULL, 0);
    expect_open_error(tpath("huge.safetensors"), "header length 100000001", "exceeds the limit of 100000000");
    write_st_raw(tpath("zero.safetensors"), 0, "", 0, NULL, 0);
    expect_open_error(tpath("zero.safetensors"), "not valid JSON", NULL);
    expect_open_error(g_dir, "directory", NULL);
    clear_dir();
}

typedef struct {
    const char *what, *header;
    size_t data_len;
    const char *word1, *word2;
} bad_case;

static void header_errors(void **state) {
    (void)state;
#define T(NAME, DT, SHAPE, B, E) \
    "\"" NAME "\":{\"dtype\":\"" DT "\",\"shape\":" SHAPE ",\"data_offsets\":[" #B "," #E "]}"
    const bad_case cases[] = {
        {"not JSON", "{not json}", 0, "not valid JSON: string or '}' expected near 'not'", "file offset 12"},
        {"not an object", "[1, 2]", 0, "header is an array, expected a JSON object", NULL},
        {"unknown dtype", "{" T("a", "F17", "[2]", 0, 8) "}", 8, "tensor 'a' has unknown dtype \"F17\"", NULL},
        {"shape x dtype != bytes", "{" T("a", "F32", "[2,3]", 0, 20) "}", 20, "'a' (F32, shape [2, 3]) needs 24 bytes",
         "[0, 20] span 20 bytes"},
        {"offsets out of bounds", "{" T("a", "F32", "[2]", 1000, 1008) "}", 8, "[1000, 1008] reach beyond the end",
         "8 bytes"},
        {"hole between tensors", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 16, 24) "}", 24,
         "hole in the data buffer: bytes [8, 16)", "'b' starts at 16"},
        {"hole at the start", "{" T("a", "F32", "[2]", 8, 16) "}", 16, "bytes [0, 8) belong to no tensor", "'a'"},
        {"overlapping tensors", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12,
         "overlap: 'b' starts at 4", "'a' covers bytes up to 8"},
        {"trailing bytes", "{" T("a", "F32", "[2]", 0, 8) "}", 12, "4 trailing bytes", "[8, 12)"},
        {"duplicate key", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, "duplicate", "\"a\""},
        {"metadata value not a string", "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0,
         "value of key 'epoch' is an integer, expected a string", NULL},
        {"metadata not an object", "{\"__metadata__\":[\"pt\"]}", 0, "\"__metadata__\" must be an object", NULL},
        {"negative shape", "{" T("a", "F32", "[2,-1]", 0, 0) "}", 0, "shape entry 1 is an integer", "non-negative"},
        {"real shape", "{" T("a", "F32", "[2.0]", 0, 8) "}", 8, "shape entry 0 is a real number", NULL},
        {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4]}}", 4,
         "'a': data_offsets must be [begin, end]", NULL},
        {"offsets reversed", "{" T("a", "F32", "[0]", 8, 4) "}", 8, "[8, 4] end before they begin", NULL},
        {"entry not an object", "{\"a\":3}", 0, "entry 'a' must be an object", NULL},
        {"missing dtype", "{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, "'a' has no \"dtype\" field", NULL},
        {"too many dims", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "9 dimensions", "at most 8"},
        {"size overflow", "{" T("a", "F32", "[4294967296,4294967296]", 0, 4) "}", 4, "overflows", NULL},
    };
#undef T
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char data[64] = {0};
        const char *path = write_st("bad.safetensors", cases[i].header, data, cases[i].data_len);
        mn_err e = {{0}};
        mn_st_file *f = mn_st_open(path, &e);
        if (f) fail_msg("case '%s' opened, expected an error", cases[i].what);
        if (!strstr(e.msg, cases[i].word1) || (cases[i].word2 && !strstr(e.msg, cases[i].word2)) ||
            !strstr(e.msg, path))
            fail_msg("case '%s': message \"%s\" lacks \"%s\" / \"%s\" / the path", cases[i].what, e.msg,
                     cases[i].word1, cases[i].word2 ? cases[i].word2 : "");
    }
    clear_dir();
}

static void truncated_data_is_reported(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_st_entry entries[] = {{"a", mn_ones(MN_SHAPE(4))}, {"b", mn_ones(MN_SHAPE(2, 2))}};
    mn_err e;
    const char *path = tpath("trunc.safetensors");
    assert_true(mn_st_write(path, 2, entries, 0, NULL, &e));
    size_t size;
    char *bytes = mn_read_file(path, &size, 0, &e);
    assert_non_null(bytes);
    write_raw(path, bytes, size - 4);
    free(bytes);
    expect_open_error(path, "tensor 'b': data_offsets [16, 32] reach beyond the end of the data buffer, which has 28",
                      "truncated");
    mn_scope_end(sc);
    clear_dir();
}

static void open_memory_gives_the_same_checks(void **state) {
    (void)state;
    const char img[] = "\x08\0\0\0\0\0\0\0{}      ";
    mn_err e;
    mn_st_file *f = mn_st_open_memory(img, 16, "img", &e);
    assert_non_null(f);
    assert_string_equal(mn_st_path(f), "img");
    mn_st_close(f);
    assert_null(mn_st_open_memory(img, 17, "img", &e));
    assert_contains(e.msg, "'img': 1 trailing bytes");
}

/* ---- atomic writes and reads ------------------------------------------------------------------- */

static void atomic_write_replaces_whole_file_and_keeps_mode(void **state) {
    (void)state;
    const char *path = tpath("file.bin");
    char big[1000], small[10];
    memset(big, 'A', sizeof big);
    memset(small, 'B', sizeof small);
    mn_err e;
    mode_t old_mask = umask(027);
    assert_true(mn_write_file_atomic(path, big, sizeof big, &e));
    umask(old_mask);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640); /* as fopen would have made it, not mkstemp's 0600 */
    chmod(path, 0604);
    assert_true(mn_write_file_atomic(path, small, sizeof small, &e));
    size_t size;
    char *got = mn_read_file(path, &size, 0, &e);
    assert_non_null(got);
    assert_int_equal(size, sizeof small);
    assert_memory_equal(got, small, sizeof small);
    assert_int_equal(got[size], '\0');
    free(got);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0604);
    assert_true(mn_write_file_atomic(path, NULL, 0, &e)); /* empty files are fine */
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(count_dir_entries(), 1);
    clear_dir();
}

static void atomic_write_failures_leave_nothing(void **state) {
    (void)state;
    mn_err e = {{0}};
    const char *path = tpath("no_such_dir/out.bin");
    assert_false(mn_write_file_atomic(path, "x", 1, &e));
    assert_contains(e.msg, path);
    assert_contains(e.msg, "No such file or directory");
    assert_int_equal(count_dir_entries(), 0);

    /* rename onto a non-empty directory fails after the temporary file was written: it must go */
    const char *dir = tpath("a_dir");
    assert_int_equal(mkdir(dir, 0755), 0);
    write_raw(tpath("a_dir/inside"), "x", 1);
    assert_false(mn_write_file_atomic(dir, "data", 4, &e));
    assert_contains(e.msg, "renaming");
    assert_int_equal(count_dir_entries(), 1);
    unlink(tpath("a_dir/inside"));
    rmdir(dir);

    mn_scope sc = mn_scope_begin();
    mn_st_entry entries[] = {{"a", mn_ones(MN_SHAPE(2))}};
    assert_false(mn_st_write(path, 1, entries, 0, NULL, &e));
    assert_contains(e.msg, "no_such_dir");
    assert_int_equal(count_dir_entries(), 0);
    EXPECT_MN_ERROR(mn_st_write(tpath("dup.safetensors"), 2, ((mn_st_entry[]){{"a", entries[0].tensor},
                                                                              {"a", entries[0].tensor}}),
                                0, NULL, &e),
                    "appears twice");
    assert_int_equal(count_dir_entries(), 0);
    mn_scope_end(sc);
}

static void read_file_errors_name_the_file(void **state) {
    (void)state;
    mn_err e;
    size_t size = 99;
    const char *missing = tpath("missing.txt");
    assert_null(mn_read_file(missing, &size, 0, &e));
    assert_int_equal(size, 0);
    assert_contains(e.msg, missing);
    assert_contains(e.msg, "No such file");
    char text[100];
    memset(text, 'x', sizeof text);
    const char *path = tpath("text.txt");
    write_raw(path, text, sizeof text);
    assert_null(mn_read_file(path, &size, 50, &e));
    assert_contains(e.msg, "100 bytes, more than the limit of 50");
    char *got = mn_read_file(path, &size, 100, &e);
    assert_non_null(got);
    assert_int_equal(size, 100);
    free(got);
    assert_null(mn_read_file(g_dir, &size, 0, &e));
    assert_contains(e.msg, "is a directory");
    clear_dir();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_of_views_ints_scalars_and_empty_tensors_with_metadata),
        cmocka_unit_test(written_header_is_aligned_ordered_json),
        cmocka_unit_test(f16_bf16_f64_convert_to_exact_f32),
        cmocka_unit_test(i64_loads_as_i32_with_a_range_check),
        cmocka_unit_test(unsupported_dtypes_open_but_do_not_load),
        cmocka_unit_test(reference_writer_layout_loads),
        cmocka_unit_test(framing_errors),
        cmocka_unit_test(header_errors),
        cmocka_unit_test(truncated_data_is_reported),
        cmocka_unit_test(open_memory_gives_the_same_checks),
        cmocka_unit_test(atomic_write_replaces_whole_file_and_keeps_mode),
        cmocka_unit_test(atomic_write_failures_leave_nothing),
        cmocka_unit_test(read_file_errors_name_the_file),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
