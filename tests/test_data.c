/* data: IDX files, image folders, resizing, text corpora, dataset subsets and
 * splits, shuffling and batching, masked-LM corruption. Inputs are written by
 * the tests with known contents; expected values are computed by hand or from
 * the file formats' definitions. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

/* ---- temporary files ---------------------------------------------------------------------------- */

static char tmp_root[256];

static int make_tmp_root(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/mnemo_test_data_XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int remove_tmp_root(void **state) {
    (void)state;
    return tu_remove_tree(tmp_root);
}

static const char *tmp_path(const char *name) {
    static char buf[4][512]; /* a few calls may be in flight at once */
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static void make_dir(const char *path) { assert_int_equal(mkdir(path, 0755), 0); }

#define ASSERT_ERR_HAS(err, s) \
    do { if (!strstr((err).msg, (s))) fail_msg("error \"%s\" does not mention \"%s\"", (err).msg, (s)); } while (0)

/* ---- IDX ------------------------------------------------------------------------------------------------ */

/* An IDX file: big-endian magic and sizes, then the bytes; gzip-compressed when gz. */
static void write_idx(const char *path, bool gz, uint32_t magic, int ndim, const uint32_t *dims,
                      const unsigned char *data, size_t n) {
    unsigned char buf[4096];
    size_t len = 0;
    for (int i = -1; i < ndim; i++) {
        uint32_t v = i < 0 ? magic : dims[i];
        buf[len++] = (unsigned char)(v >> 24);
        buf[len++] = (unsigned char)(v >> 16);
        buf[len++] = (unsigned char)(v >> 8);
        buf[len++] = (unsigned char)v;
    }
    assert_true(len + n <= sizeof buf);
    memcpy(buf + len, data, n);
    len += n;
    if (!gz) {
        write_bytes(path, buf, len);
        return;
    }
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
    gzclose(f);
}

static void idx_images_and_labels_round_trip_plain_and_gzip(void **state) {
    (void)state;
    unsigned char px[3 * 2 * 4], lab[3] = {7, 0, 255};
    for (int i = 0; i < 24; i++) px[i] = (unsigned char)(i * 11);
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = tmp_path(gz ? "img.gz" : "img"), *lp = tmp_path(gz ? "lab.gz" : "lab");
        write_idx(ip, gz, 0x803, 3, (uint32_t[]){3, 2, 4}, px, sizeof px);
        write_idx(lp, gz, 0x801, 1, (uint32_t[]){3}, lab, sizeof lab);
        mn_scope sc = mn_scope_begin();
        mn_err err = {{0}};
        mn_tensor *x = mn_idx_read_images(ip, &err);
        if (!x) fail_msg("%s", err.msg);
        assert_int_equal(x->ndim, 4);
        assert_true(x->shape[0] == 3 && x->shape[1] == 1 && x->shape[2] == 2 && x->shape[3] == 4);
        for (int i = 0; i < 24; i++) assert_float_equal(mn_data(x)[i], (i * 11) / 255.0, 1e-7);
        mn_tensor *y = mn_idx_read_labels(lp, &err);
        if (!y) fail_msg("%s", err.msg);
        assert_int_equal(y->dtype, MN_I32);
        assert_int_equal(y->shape[0], 3);
        assert_int_equal(mn_idata(y)[0], 7);
        assert_int_equal(mn_idata(y)[2], 255);
        mn_scope_end(sc);
    }
}

/* A loader that runs out of memory returns an error naming the file instead of aborting: a 64 MB
 * gzip-compressed IDX image file (a few kB on disk) read in a child whose address space is capped at
 * 160 MB more than it uses (the bytes fit, their 256 MB as floats cannot be had). Skipped under sanitizers, whose
 * shadow memory needs the address space. */
static void idx_out_of_memory_is_an_error(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    skip();
#endif
    const char *p = tmp_path("huge.idx.gz");
    gzFile g = gzopen(p, "wb9");
    assert_non_null(g);
    unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0x40, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x40}; /* 16384 of 64 x 64 */
    gzwrite(g, head, 16);
    static unsigned char zeros[1 << 16];
    for (int i = 0; i < 1024; i++) gzwrite(g, zeros, sizeof zeros);
    assert_int_equal(gzclose(g), Z_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *st = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!st || fscanf(st, "%lu", &pages) != 1) _exit(3);
        fclose(st);
        rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)160 << 20);
        struct rlimit lim = {cap, cap};
        if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(3);
        mn_err err;
        mn_tensor *x = mn_idx_read_images(p, &err);
        if (x) _exit(4); /* the cap did not bite: nothing tested */
        _exit(strstr(err.msg, "huge.idx.gz") && strstr(err.msg, "out of memory") ? 0 : 5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child: %s %d (0: an error naming the file; 4: loaded anyway; 5: another error)",
                 WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static void idx_errors_name_the_file_and_byte_offset(void **state) {
    (void)state;
    unsigned char px[2 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8};
    mn_err err;
    const char *p = tmp_path("bad_magic");
    write_idx(p, false, 0x903, 3, (uint32_t[]){2, 2, 2}, px, 8);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, p);
    ASSERT_ERR_HAS(err, "byte offset 0");
    ASSERT_ERR_HAS(err, "0x00000803");

    /* a label file (1 dimension) given as images */
    p = tmp_path("labels_as_images");
    write_idx(p, false, 0x801, 1, (uint32_t[]){8}, px, 8);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, "different number of dimensions");

    /* header promises 3 images of 2x2, only 2 present: 16 header bytes + 8 data bytes */
    p = tmp_path("truncated");
    write_idx(p, false, 0x803, 3, (uint32_t[]){3, 2, 2}, px, 8);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, p);
    ASSERT_ERR_HAS(err, "truncated at byte offset 24");

    p = tmp_path("truncated.gz");
    write_idx(p, true, 0x803, 3, (uint32_t[]){3, 2, 2}, px, 8);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, p);
    ASSERT_ERR_HAS(err, "truncated at byte offset 24 (decompressed)");

    p = tmp_path("trailing");
    write_idx(p, false, 0x801, 1, (uint32_t[]){6}, px, 8);
    assert_null(mn_idx_read_labels(p, &err));
    ASSERT_ERR_HAS(err, "unexpected data at byte offset 14");

    p = tmp_path("zero_height");
    write_idx(p, false, 0x803, 3, (uint32_t[]){1, 0, 2}, px, 0);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, "byte offset 8");

    p = tmp_path("huge_dims"); /* 2^48 bytes claimed: refused before any multiplication can overflow */
    write_idx(p, false, 0x803, 3, (uint32_t[]){65536, 65536, 65536}, px, 8);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, "more than 2^40 bytes");

    p = tmp_path("no_images_of_huge_size"); /* N = 0 must not excuse absurd item sizes */
    write_idx(p, false, 0x803, 3, (uint32_t[]){0, 0xF7F7FCFF, 0xCDFEFCFE}, px, 0);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, "more than 2^40 bytes");
    p = tmp_path("no_images");
    write_idx(p, false, 0x803, 3, (uint32_t[]){0, 28, 28}, px, 0);
    mn_tensor *empty = mn_idx_read_images(p, &err);
    if (!empty) fail_msg("%s", err.msg);
    assert_true(empty->shape[0] == 0 && empty->shape[2] == 28);
    mn_release(empty);

    p = tmp_path("short_header");
    write_bytes(p, "\x00\x00\x08\x03\x00\x00", 6);
    assert_null(mn_idx_read_images(p, &err));
    ASSERT_ERR_HAS(err, "truncated at byte offset 6");

    /* a gzip stream cut in the middle */
    unsigned char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (unsigned char)(i * 37 + i / 7);
    p = tmp_path("cut.gz");
    write_idx(p, true, 0x801, 1, (uint32_t[]){1000}, big, 1000);
    size_t size;
    char *whole = mn_read_file(p, &size, 0, NULL);
    assert_non_null(whole);
    write_bytes(p, whole, size / 2);
    free(whole);
    assert_null(mn_idx_read_labels(p, &err));
    ASSERT_ERR_HAS(err, p);

    assert_null(mn_idx_read_labels(tmp_path("does_not_exist"), &err));
    ASSERT_ERR_HAS(err, "does_not_exist");
}

static void fashion_mnist_real_files_if_installed(void **state) {
    (void)state;
    if (access(MN_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        print_message("Fashion-MNIST not installed; skipped\n");
        skip();
    }
    mn_err err;
    mn_dataset train = {0}, test = {0};
    if (!mn_fashion_mnist_load(NULL, true, false, &train, &err)) fail_msg("%s", err.msg);
    if (!mn_fashion_mnist_load(NULL, false, true, &test, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mn_dataset_len(&train), 60000);
    assert_int_equal(mn_dataset_len(&test), 10000);
    assert_true(train.x->shape[1] == 1 && train.x->shape[2] == 28 && train.x->shape[3] == 28);
    int64_t counts[10];
    mn_dataset_class_counts(&train, counts);
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 6000);
    mn_dataset_class_counts(&test, counts);
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 1000);
    /* pixels of the raw set lie in [0, 1] and their mean is the documented constant */
    double sum = 0;
    const float *v = mn_data(train.x);
    for (int64_t i = 0; i < mn_numel(train.x); i++) {
        assert_true(v[i] >= 0 && v[i] <= 1);
        sum += v[i];
    }
    assert_float_equal(sum / (double)mn_numel(train.x), MN_FASHION_MNIST_MEAN, 1e-4);
    /* the normalised set has mean about -MEAN/STD + (test-set shift) and spread about 1 */
    double tsum = 0;
    for (int64_t i = 0; i < mn_numel(test.x); i++) tsum += mn_data(test.x)[i];
    assert_true(fabs(tsum / (double)mn_numel(test.x)) < 0.05);
    assert_string_equal(train.class_names[9], "Ankle boot");
    assert_string_equal(mn_fashion_mnist_class_name(0), "T-shirt/top");
    print_message("Fashion-MNIST: first training label %d (%s)\n", mn_idata(train.y)[0],
                  train.class_names[mn_idata(train.y)[0]]);

    /* the fine-tuning subset: classes 5-9 relabelled 0-4, 50 images per class */
    mn_dataset upper = {0}, few = {0};
    mn_dataset_select_classes(&train, 5, (const int[]){5, 6, 7, 8, 9}, &upper);
    assert_int_equal(mn_dataset_len(&upper), 30000);
    assert_string_equal(upper.class_names[0], "Sandal");
    mn_dataset_take_per_class(&upper, 50, NULL, &few);
    assert_int_equal(mn_dataset_len(&few), 250);
    mn_dataset_class_counts(&few, counts);
    for (int c = 0; c < 5; c++) assert_int_equal(counts[c], 50);
    mn_dataset_free(&few);
    mn_dataset_free(&upper);
    mn_dataset_free(&train);
    mn_dataset_free(&test);
}

/* ---- images ------------------------------------------------------------------------------------------ */

static void write_png(const char *path, int w, int h, int comp, const unsigned char *px) {
    assert_true(stbi_write_png(path, w, h, comp, px, w * comp) != 0);
}

static void image_load_gray_and_rgb_with_channel_conversion(void **state) {
    (void)state;
    const unsigned char gray[6] = {0, 51, 102, 153, 204, 255}; /* 3 wide, 2 high */
    unsigned char rgb[2 * 2 * 3];
    for (int i = 0; i < 12; i++) rgb[i] = (unsigned char)(i * 20 + 5);
    write_png(tmp_path("gray.png"), 3, 2, 1, gray);
    write_png(tmp_path("rgb.png"), 2, 2, 3, rgb);
    assert_true(stbi_write_bmp(tmp_path("rgb.bmp"), 2, 2, 3, rgb) != 0);
    mn_scope sc = mn_scope_begin();
    mn_err err;
    mn_tensor *g = mn_image_load(tmp_path("gray.png"), &(mn_image_opts){.channels = 1}, &err);
    if (!g) fail_msg("%s", err.msg);
    assert_true(g->ndim == 3 && g->shape[0] == 1 && g->shape[1] == 2 && g->shape[2] == 3);
    for (int i = 0; i < 6; i++) assert_float_equal(mn_data(g)[i], gray[i] / 255.0, 1e-7);
    /* grey -> RGB replicates the channel */
    mn_tensor *g3 = mn_image_load(tmp_path("gray.png"), NULL, &err);
    assert_int_equal(g3->shape[0], 3);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 6; i++) assert_float_equal(mn_data(g3)[c * 6 + i], gray[i] / 255.0, 1e-7);
    /* RGB (PNG and BMP) -> planar channels */
    const char *files[2] = {"rgb.png", "rgb.bmp"};
    for (int f = 0; f < 2; f++) {
        mn_tensor *x = mn_image_load(tmp_path(files[f]), NULL, &err);
        if (!x) fail_msg("%s", err.msg);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 4; p++) assert_float_equal(mn_data(x)[c * 4 + p], rgb[p * 3 + c] / 255.0, 1e-7);
    }
    /* RGB -> grey with stb_image's integer weights (77 R + 150 G + 29 B) >> 8 */
    mn_tensor *x1 = mn_image_load(tmp_path("rgb.png"), &(mn_image_opts){.channels = 1}, &err);
    for (int p = 0; p < 4; p++) {
        int want = (rgb[3 * p] * 77 + rgb[3 * p + 1] * 150 + rgb[3 * p + 2] * 29) >> 8;
        assert_float_equal(mn_data(x1)[p], want / 255.0, 1e-7);
    }
    /* per-channel normalisation */
    const float mean[3] = {0.5f, 0.25f, 0.1f}, std[3] = {0.5f, 2.0f, 0.2f};
    mn_tensor *xn = mn_image_load(tmp_path("rgb.png"), &(mn_image_opts){.mean = mean, .std = std}, &err);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 4; p++)
            assert_float_equal(mn_data(xn)[c * 4 + p], (rgb[p * 3 + c] / 255.0 - mean[c]) / std[c], 1e-6);
    mn_scope_end(sc);
}

static void resize_shrink_matches_hand_computed_antialiased_bilinear(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    /* f(i, j) = 4i + j on a 4x4 grid. Shrinking by 2, output pixel 0 sits at input
     * coordinate 1 and weighs pixels 0, 1, 2 by the triangle of half-width 2:
     * 0.75, 0.75, 0.25 -> (3, 3, 1) / 7; pixel 1 weighs 1, 2, 3 by (1, 3, 3) / 7.
     * Along one axis the means are 5/7 and 16/7, so out = 4 r_i + r_j. */
    float in[16];
    for (int i = 0; i < 16; i++) in[i] = (float)i;
    mn_tensor *x = mn_from_data(MN_SHAPE(1, 4, 4), in);
    mn_tensor *y = mn_image_resize(x, 2, 2);
    const double r[2] = {5.0 / 7, 16.0 / 7};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) assert_float_equal(mn_data(y)[i * 2 + j], 4 * r[i] + r[j], 1e-5);
    mn_scope_end(sc);
}

static void resize_enlarge_is_bilinear_with_half_pixel_centres(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    /* [[0, 1], [2, 3]] to 4x4: source coordinates (i + 0.5) / 2 - 0.5 = -0.25, 0.25,
     * 0.75, 1.25, clamped at the borders: a row [a, b] becomes [a, .75a+.25b, .25a+.75b, b]. */
    mn_tensor *x = mn_from_data(MN_SHAPE(2, 2), (float[]){0, 1, 2, 3});
    mn_tensor *y = mn_image_resize(x, 4, 4);
    const double r[4] = {0, 0.25, 0.75, 1};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) assert_float_equal(mn_data(y)[i * 4 + j], 2 * r[i] + r[j], 1e-6);
    /* non-square, batched, and the identity */
    mn_tensor *b = tu_rand(5, MN_SHAPE(2, 3, 5, 7), 0, 1);
    mn_tensor *same = mn_image_resize(b, 5, 7);
    tu_assert_close(same, b, 1e-6, 0);
    mn_tensor *odd = mn_image_resize(b, 3, 10);
    assert_true(odd->shape[0] == 2 && odd->shape[1] == 3 && odd->shape[2] == 3 && odd->shape[3] == 10);
    /* a constant image stays constant at any size (weights sum to one) */
    mn_tensor *c = mn_image_resize(mn_full(MN_SHAPE(1, 9, 13), 0.375f), 4, 31);
    for (int64_t i = 0; i < mn_numel(c); i++) assert_float_equal(mn_data(c)[i], 0.375, 1e-6);
    mn_scope_end(sc);
}

static void image_folder_sorted_classes_labels_and_resize(void **state) {
    (void)state;
    char root[512];
    snprintf(root, sizeof root, "%s", tmp_path("folder"));
    make_dir(root);
    make_dir(tmp_path("folder/dog")); /* created first; "cat" must still come first */
    make_dir(tmp_path("folder/cat"));
    make_dir(tmp_path("folder/.hidden"));
    unsigned char a[16], b[16], c[16];
    for (int i = 0; i < 16; i++) a[i] = (unsigned char)(i * 16), b[i] = 200, c[i] = (unsigned char)(255 - i * 16);
    write_png(tmp_path("folder/dog/z.png"), 4, 4, 1, a);
    write_png(tmp_path("folder/dog/a.PNG"), 4, 4, 1, b);
    write_png(tmp_path("folder/cat/only.png"), 4, 4, 1, c);
    write_text(tmp_path("folder/cat/notes.txt"), "not an image, skipped");
    mn_err err;
    mn_dataset d = {0};
    mn_image_changes same = {0};
    if (!mn_image_folder_load(root, &(mn_image_opts){.channels = 1, .changes = &same}, &d, &err))
        fail_msg("%s", err.msg);
    assert_true(same.images == 3 && same.resized == 0 && same.converted == 0 && !same.first[0]);
    assert_int_equal(d.n_classes, 2);
    assert_string_equal(d.class_names[0], "cat");
    assert_string_equal(d.class_names[1], "dog");
    assert_int_equal(mn_dataset_len(&d), 3);
    const int32_t *y = mn_idata(d.y);
    assert_int_equal(y[0], 0);
    assert_int_equal(y[1], 1);
    assert_int_equal(y[2], 1);
    /* order: cat/only.png, dog/a.PNG, dog/z.png */
    assert_float_equal(mn_data(d.x)[0], 255 / 255.0, 1e-7);
    assert_float_equal(mn_data(d.x)[16], 200 / 255.0, 1e-7);
    assert_float_equal(mn_data(d.x)[32 + 5], 80 / 255.0, 1e-7);
    mn_dataset_free(&d);

    /* resized to 2x2 as RGB: each image equals mn_image_resize of its pixels */
    mn_image_changes ch = {0};
    if (!mn_image_folder_load(root, &(mn_image_opts){.height = 2, .width = 2, .changes = &ch}, &d, &err))
        fail_msg("%s", err.msg);
    assert_true(d.x->shape[1] == 3 && d.x->shape[2] == 2 && d.x->shape[3] == 2);
    assert_true(ch.images == 3 && ch.resized == 3 && ch.converted == 3); /* grey 4x4 -> RGB 2x2 */
    assert_true(strstr(ch.first, "only.png") && ch.first_height == 4 && ch.first_width == 4 && ch.first_channels == 1);
    mn_scope sc = mn_scope_begin();
    float fa[16];
    for (int i = 0; i < 16; i++) fa[i] = a[i] / 255.0f;
    mn_tensor *ra = mn_image_resize(mn_from_data(MN_SHAPE(1, 4, 4), fa), 2, 2);
    for (int ch = 0; ch < 3; ch++)
        for (int p = 0; p < 4; p++) assert_float_equal(mn_data(d.x)[2 * 12 + ch * 4 + p], mn_data(ra)[p], 1e-6);
    mn_scope_end(sc);
    mn_dataset_free(&d);

    /* different sizes without a resize: the error names the odd file */
    unsigned char big[36] = {0};
    write_png(tmp_path("folder/dog/zz.png"), 6, 6, 1, big);
    assert_false(mn_image_folder_load(root, NULL, &d, &err));
    ASSERT_ERR_HAS(err, "zz.png");
    ASSERT_ERR_HAS(err, "6 x 6");
    /* an empty class folder */
    make_dir(tmp_path("folder/empty"));
    assert_false(mn_image_folder_load(root, &(mn_image_opts){.height = 4, .width = 4}, &d, &err));
    ASSERT_ERR_HAS(err, "empty");
    assert_false(mn_image_folder_load(tmp_path("no_such_root"), NULL, &d, &err));
    ASSERT_ERR_HAS(err, "no_such_root");
}

/* An 8x8 JPEG of the colour (100, 150, 200), written by stb_image_write's
 * stbi_write_jpg at quality 90 (kept as bytes: that writer trips UBSan). */
static const unsigned char tiny_jpeg[] = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x84, 0x00, 0x03, 0x02, 0x02, 0x03, 0x02, 0x02, 0x03,
    0x03, 0x03, 0x03, 0x04, 0x03, 0x03, 0x04, 0x05, 0x08, 0x05, 0x05, 0x04, 0x04, 0x05, 0x0a, 0x07,
    0x07, 0x06, 0x08, 0x0c, 0x0a, 0x0c, 0x0c, 0x0b, 0x0a, 0x0b, 0x0b, 0x0d, 0x0e, 0x12, 0x10, 0x0d,
    0x0e, 0x11, 0x0e, 0x0b, 0x0b, 0x10, 0x16, 0x10, 0x11, 0x13, 0x14, 0x15, 0x15, 0x15, 0x0c, 0x0f,
    0x17, 0x18, 0x16, 0x14, 0x18, 0x12, 0x14, 0x15, 0x14, 0x01, 0x03, 0x04, 0x04, 0x05, 0x04, 0x05,
    0x09, 0x05, 0x05, 0x09, 0x14, 0x0d, 0x0b, 0x0d, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00,
    0x08, 0x00, 0x08, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x01,
    0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x00,
    0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01,
    0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
    0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24,
    0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29,
    0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
    0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a,
    0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
    0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
    0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3,
    0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9,
    0xfa, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x11, 0x00,
    0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02, 0x77, 0x00,
    0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13,
    0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15,
    0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27,
    0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
    0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6,
    0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4,
    0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9,
    0xfa, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00, 0x3f, 0x00, 0xe8,
    0xa8, 0xa2, 0x8a, 0xfd, 0x64, 0xfc, 0xc4, 0xff, 0xd9,
};

/* stb_image 2.27 would write past its tables for a Huffman table of more than
 * 256 codes; mnemo refuses such files before decoding. */
static void jpeg_decodes_and_oversized_huffman_table_is_refused(void **state) {
    (void)state;
    const char *path = tmp_path("photo.JPG");
    write_bytes(path, tiny_jpeg, sizeof tiny_jpeg);
    mn_scope sc = mn_scope_begin();
    mn_err err;
    mn_tensor *x = mn_image_load(path, NULL, &err);
    if (!x) fail_msg("%s", err.msg);
    assert_true(x->shape[0] == 3 && x->shape[1] == 8 && x->shape[2] == 8);
    const float colour[3] = {100, 150, 200};
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 64; p++) assert_float_equal(mn_data(x)[c * 64 + p], colour[c] / 255.0, 3.0 / 255.0);
    unsigned char bad[sizeof tiny_jpeg];
    memcpy(bad, tiny_jpeg, sizeof bad);
    size_t dht = 0;
    for (size_t i = 2; i + 1 < sizeof bad && !dht; i++)
        if (bad[i] == 0xFF && bad[i + 1] == 0xC4) dht = i;
    assert_true(dht > 0);
    bad[dht + 5] = 0xFF; /* the counts of 1- and 2-bit codes: the table now sums past 256 */
    bad[dht + 6] = 0xFF;
    assert_null(mn_image_decode(bad, sizeof bad, "bad.jpg", NULL, &err));
    ASSERT_ERR_HAS(err, "bad.jpg");
    ASSERT_ERR_HAS(err, "Huffman");
    mn_scope_end(sc);
}

typedef struct {
    unsigned char data[4096];
    size_t len;
} mem_buf;

static void append_to_buf(void *ctx, void *data, int size) {
    mem_buf *b = ctx;
    assert_true(b->len + (size_t)size <= sizeof b->data);
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

/* An empty IDAT chunk before the image data adds nothing to the compressed
 * stream: the image decodes exactly as without it (stb_image alone would
 * memcpy to a NULL buffer there). */
static void png_with_empty_first_idat_decodes_the_same(void **state) {
    (void)state;
    unsigned char px[5 * 3 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 9);
    mem_buf png = {{0}, 0}, odd = {{0}, 0};
    assert_true(stbi_write_png_to_func(append_to_buf, &png, 5, 3, 3, px, 15) != 0);
    size_t idat = 0;
    for (size_t i = 8; i + 4 <= png.len && !idat; i++)
        if (!memcmp(png.data + i, "IDAT", 4)) idat = i - 4; /* the chunk starts at its length field */
    assert_true(idat > 0);
    memcpy(odd.data, png.data, idat);
    memcpy(odd.data + idat, "\0\0\0\0IDAT\x35\xaf\x06\x1e", 12); /* length 0, type, CRC */
    memcpy(odd.data + idat + 12, png.data + idat, png.len - idat);
    odd.len = png.len + 12;
    mn_scope sc = mn_scope_begin();
    mn_err err;
    mn_tensor *a = mn_image_decode(png.data, png.len, "plain.png", NULL, &err);
    mn_tensor *b = mn_image_decode(odd.data, odd.len, "empty-idat.png", NULL, &err);
    if (!a || !b) fail_msg("%s", err.msg);
    tu_assert_close(b, a, 0, 0);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 15; p++) assert_float_equal(mn_data(b)[c * 15 + p], px[p * 3 + c] / 255.0, 1e-7);
    mn_scope_end(sc);
}

static void corrupt_images_give_errors_naming_the_file(void **state) {
    (void)state;
    unsigned char px[8 * 8 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 7);
    const char *good = tmp_path("good.png"), *cut = tmp_path("cut.png"), *text = tmp_path("text.png");
    write_png(good, 8, 8, 3, px);
    size_t size;
    char *bytes = mn_read_file(good, &size, 0, NULL);
    assert_non_null(bytes);
    write_bytes(cut, bytes, size / 2);
    write_text(text, "this is not an image\n");
    mn_err err;
    assert_null(mn_image_load(cut, NULL, &err));
    ASSERT_ERR_HAS(err, cut);
    assert_null(mn_image_load(text, NULL, &err));
    ASSERT_ERR_HAS(err, text);
    ASSERT_ERR_HAS(err, "not a readable PNG, JPEG or BMP");
    /* a damaged byte in the IDAT data, and one in a chunk's type (named with \xNN, not as a raw byte) */
    size_t idat = 0;
    for (size_t i = 8; i + 4 <= size && !idat; i++)
        if (!memcmp(bytes + i, "IDAT", 4)) idat = i - 4;
    assert_true(idat > 0);
    bytes[idat + 10] ^= 0x10;
    assert_null(mn_image_decode(bytes, size, "damaged.png", NULL, &err));
    ASSERT_ERR_HAS(err, "damaged.png: PNG chunk \"IDAT\" at byte offset");
    ASSERT_ERR_HAS(err, "fails its CRC check");
    bytes[idat + 10] ^= 0x10;
    bytes[idat + 5] = 0x01;
    assert_null(mn_image_decode(bytes, size, "type.png", NULL, &err));
    ASSERT_ERR_HAS(err, "PNG chunk \"I\\x01AT\"");
    bytes[idat + 5] = 'D';
    mn_tensor *restored = mn_image_decode(bytes, size, "restored.png", NULL, &err);
    assert_non_null(restored);
    mn_release(restored);
    assert_null(mn_image_decode(bytes, 10, "first-ten-bytes", NULL, &err));
    ASSERT_ERR_HAS(err, "first-ten-bytes");
    assert_null(mn_image_load(tmp_path("missing.png"), NULL, &err));
    ASSERT_ERR_HAS(err, "missing.png");
    /* a BMP header claiming 3000 x 3000 pixels in a 70-byte file (stb_image would zero-fill them) */
    const char *bmp = tmp_path("claims.bmp");
    unsigned char four[12] = {0};
    assert_true(stbi_write_bmp(bmp, 2, 2, 3, four) != 0);
    size_t hdr_size;
    char *hdr = mn_read_file(bmp, &hdr_size, 0, NULL);
    assert_non_null(hdr);
    for (int k = 0; k < 2; k++) { /* little-endian width at byte 18, height at byte 22 */
        hdr[18 + 4 * k] = (char)(3000 & 255);
        hdr[19 + 4 * k] = (char)(3000 >> 8);
    }
    assert_null(mn_image_decode(hdr, hdr_size, "claims.bmp", NULL, &err));
    ASSERT_ERR_HAS(err, "claims 3000 x 3000 pixels");
    memset(hdr + 18, 0, 8); /* 0 x 0 pixels */
    assert_null(mn_image_decode(hdr, hdr_size, "zero.bmp", &(mn_image_opts){.height = 4, .width = 4}, &err));
    ASSERT_ERR_HAS(err, "zero.bmp");
    free(hdr);
    /* the intact file still decodes from memory */
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_image_decode(bytes, size, "good", NULL, &err);
    assert_non_null(x);
    assert_float_equal(mn_data(x)[64 + 1], px[1 * 3 + 1] / 255.0, 1e-7);
    mn_scope_end(sc);
    free(bytes);
}

/* ---- text ----------------------------------------------------------------------------------------------- */

static void fortunes_split_on_percent_lines(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("fortunes"));
    make_dir(dir);
    write_text(tmp_path("fortunes/beta"), "first beta\nsecond line\n%\n\tindented\r\n%\r\n  \n%\n%\nlast, no newline");
    write_text(tmp_path("fortunes/alpha"), "one\n%\ntwo 100% sure\n%\n");
    write_text(tmp_path("fortunes/alpha.dat"), "\x01\x02 index");
    write_text(tmp_path("fortunes/.hidden"), "x\n%\n");
    assert_int_equal(symlink("alpha", tmp_path("fortunes/alpha.u8")), 0);
    mn_err err;
    mn_text_dataset d = {0};
    if (!mn_fortunes_load(dir, 0, NULL, &d, &err)) fail_msg("%s", err.msg);
    assert_int_equal(d.n_classes, 2);
    assert_string_equal(d.class_names[0], "alpha");
    assert_string_equal(d.class_names[1], "beta");
    const char *want[] = {"one", "two 100% sure", "first beta\nsecond line", "\tindented", "last, no newline"};
    const int labels[] = {0, 0, 1, 1, 1};
    assert_int_equal(d.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(d.texts[i], want[i]);
        assert_int_equal(d.labels[i], labels[i]);
    }
    mn_text_dataset_free(&d);
    /* chosen categories take their labels from the order given */
    if (!mn_fortunes_load(dir, 1, (const char *[]){"beta"}, &d, &err)) fail_msg("%s", err.msg);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.labels[0], 0);
    mn_text_dataset_free(&d);
    assert_false(mn_fortunes_load(dir, 1, (const char *[]){"gamma"}, &d, &err));
    ASSERT_ERR_HAS(err, "gamma");
}

static void fortunes_real_corpus_if_installed(void **state) {
    (void)state;
    if (access(MN_FORTUNES_DIR "/computers", R_OK) != 0) {
        print_message("fortunes not installed; skipped\n");
        skip();
    }
    const char *cats[] = {"computers", "food", "science", "linux"};
    mn_err err;
    mn_text_dataset d = {0};
    if (!mn_fortunes_load(NULL, 4, cats, &d, &err)) fail_msg("%s", err.msg);
    int64_t counts[4] = {0};
    for (int64_t i = 0; i < d.n; i++) counts[d.labels[i]]++;
    for (int c = 0; c < 4; c++) {
        print_message("fortunes/%s: %lld entries\n", cats[c], (long long)counts[c]);
        assert_true(counts[c] > 0);
    }
    mn_text_dataset_free(&d);
    if (!mn_fortunes_load(NULL, 0, NULL, &d, &err)) fail_msg("%s", err.msg);
    print_message("fortunes: %d categories, %lld entries in all\n", d.n_classes, (long long)d.n);
    assert_true(d.n_classes >= 4);
    mn_text_dataset_free(&d);
}

static void tsv_labels_in_first_seen_or_sorted_order(void **state) {
    (void)state;
    const char *p = tmp_path("data.tsv");
    write_text(p, "great film\tpos\r\nawful\tneg\n\nmeh, with\ttab inside\tneutral\nfine\tpos \n");
    mn_err err;
    mn_text_dataset d = {0};
    if (!mn_tsv_load(p, MN_LABELS_FIRST_SEEN, 0, NULL, &d, &err)) fail_msg("%s", err.msg);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.n_classes, 3);
    assert_string_equal(d.class_names[0], "pos");
    assert_string_equal(d.class_names[1], "neg");
    assert_string_equal(d.class_names[2], "neutral");
    assert_string_equal(d.texts[2], "meh, with\ttab inside");
    const int first_seen[] = {0, 1, 2, 0};
    for (int i = 0; i < 4; i++) assert_int_equal(d.labels[i], first_seen[i]);
    mn_text_dataset_free(&d);

    if (!mn_tsv_load(p, MN_LABELS_SORTED, 0, NULL, &d, &err)) fail_msg("%s", err.msg);
    assert_string_equal(d.class_names[0], "neg");
    assert_string_equal(d.class_names[1], "neutral");
    assert_string_equal(d.class_names[2], "pos");
    const int sorted[] = {2, 0, 1, 2};
    for (int i = 0; i < 4; i++) assert_int_equal(d.labels[i], sorted[i]);
    mn_text_dataset_free(&d);

    /* a test file mapped with the training classes */
    const char *known[] = {"neutral", "pos", "neg"};
    if (!mn_tsv_load(p, MN_LABELS_FIRST_SEEN, 3, known, &d, &err)) fail_msg("%s", err.msg);
    assert_int_equal(d.labels[0], 1);
    assert_int_equal(d.labels[1], 2);
    mn_text_dataset_free(&d);
    assert_false(mn_tsv_load(p, MN_LABELS_FIRST_SEEN, 2, known, &d, &err));
    ASSERT_ERR_HAS(err, "data.tsv:2:");
    ASSERT_ERR_HAS(err, "\"neg\"");

    const char *bad = tmp_path("bad.tsv");
    write_text(bad, "ok\tpos\nok again\tneg\nno tab here\n");
    assert_false(mn_tsv_load(bad, MN_LABELS_FIRST_SEEN, 0, NULL, &d, &err));
    ASSERT_ERR_HAS(err, "bad.tsv:3:");
    write_text(bad, "text\t  \n");
    assert_false(mn_tsv_load(bad, MN_LABELS_FIRST_SEEN, 0, NULL, &d, &err));
    ASSERT_ERR_HAS(err, "bad.tsv:1: empty label");
    /* plain text, one document per line */
    const char *lines = tmp_path("corpus.txt");
    write_text(lines, "first document\r\n\n   \nsecond \xc3\xa9t\xc3\xa9\n");
    mn_text_dataset t;
    if (!mn_lines_load(lines, &t, &err)) fail_msg("%s", err.msg);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.texts[0], "first document");
    assert_string_equal(t.texts[1], "second \xc3\xa9t\xc3\xa9");
    assert_true(t.n_classes == 1 && t.labels[1] == 0 && !strcmp(t.class_names[0], "corpus.txt"));
    mn_text_dataset_free(&t);
    write_text(lines, "ok\nbad \xe2\x82\n");
    assert_false(mn_lines_load(lines, &t, &err));
    ASSERT_ERR_HAS(err, "corpus.txt:2: invalid UTF-8 at byte 5");
    write_text(lines, "\n \n");
    assert_false(mn_lines_load(lines, &t, &err));
    ASSERT_ERR_HAS(err, "no text found");
    write_text(bad, "fine\tpos\ncaf\xc3\tneg\n"); /* a UTF-8 sequence cut short */
    assert_false(mn_tsv_load(bad, MN_LABELS_FIRST_SEEN, 0, NULL, &d, &err));
    ASSERT_ERR_HAS(err, "bad.tsv:2: invalid UTF-8 at byte 4");
    write_text(bad, "\xe1\xba\xbe c\xc3\xa0\tpos\n"); /* valid multi-byte text loads */
    assert_true(mn_tsv_load(bad, MN_LABELS_FIRST_SEEN, 0, NULL, &d, &err));
    mn_text_dataset_free(&d);
}

/* ---- datasets, splits, shuffles, batches --------------------------------------------------------------- */

/* 30 samples: x[i] = (i, -i), label i % 3 */
static void small_dataset(mn_dataset *d) {
    mn_scope sc = mn_scope_begin();
    float xs[60];
    int32_t ys[30];
    for (int i = 0; i < 30; i++) xs[2 * i] = (float)i, xs[2 * i + 1] = (float)-i, ys[i] = i % 3;
    mn_dataset_init(d, mn_from_data(MN_SHAPE(30, 2), xs), mn_from_ints(MN_SHAPE(30), ys), 3,
                    (const char *[]){"a", "b", "c"});
    mn_scope_end(sc);
}

static void dataset_class_selection_and_per_class_sampling(void **state) {
    (void)state;
    mn_dataset d = {0}, sel = {0}, few = {0}, rnd = {0};
    small_dataset(&d);
    mn_dataset_select_classes(&d, 2, (const int[]){2, 0}, &sel);
    assert_int_equal(mn_dataset_len(&sel), 20);
    assert_string_equal(sel.class_names[0], "c");
    assert_string_equal(sel.class_names[1], "a");
    /* dataset order kept: samples 0 (a -> 1), 2 (c -> 0), 3, 5, ... */
    assert_float_equal(mn_data(sel.x)[0], 0, 0);
    assert_int_equal(mn_idata(sel.y)[0], 1);
    assert_float_equal(mn_data(sel.x)[2], 2, 0);
    assert_int_equal(mn_idata(sel.y)[1], 0);
    assert_float_equal(mn_data(sel.x)[3], -2, 0);
    mn_dataset_take_per_class(&d, 2, NULL, &few);
    assert_int_equal(mn_dataset_len(&few), 6);
    for (int i = 0; i < 6; i++) assert_float_equal(mn_data(few.x)[2 * i], i, 0); /* samples 0..5 */
    mn_rng g = mn_rng_new(3);
    mn_dataset_take_per_class(&d, 4, &g, &rnd);
    int64_t counts[3];
    mn_dataset_class_counts(&rnd, counts);
    for (int c = 0; c < 3; c++) assert_int_equal(counts[c], 4);
    for (int i = 1; i < 12; i++) assert_true(mn_data(rnd.x)[2 * i] > mn_data(rnd.x)[2 * (i - 1)]);
    for (int i = 0; i < 12; i++) assert_int_equal(mn_idata(rnd.y)[i], (int)mn_data(rnd.x)[2 * i] % 3);
    mn_dataset_free(&rnd);
    mn_dataset_take_per_class(&d, 50, NULL, &rnd); /* more than there are: all of them */
    assert_int_equal(mn_dataset_len(&rnd), 30);
    mn_dataset_free(&rnd);
    mn_dataset_free(&few);
    mn_dataset_free(&sel);
    mn_dataset_free(&d);
    assert_int_equal(mn_live_tensors(), 0);
}

static void splits_are_seeded_disjoint_and_stratified(void **state) {
    (void)state;
    mn_dataset d = {0}, tr = {0}, te = {0};
    small_dataset(&d);
    mn_rng g = mn_rng_new(11);
    mn_dataset_split(&d, 0.3, true, &g, &tr, &te);
    assert_int_equal(mn_dataset_len(&te), 9); /* round(0.3 * 10) from each class */
    assert_int_equal(mn_dataset_len(&tr), 21);
    int64_t counts[3];
    mn_dataset_class_counts(&te, counts);
    for (int c = 0; c < 3; c++) assert_int_equal(counts[c], 3);
    bool seen[30] = {false};
    for (int i = 0; i < 21; i++) seen[(int)mn_data(tr.x)[2 * i]] = true;
    for (int i = 0; i < 9; i++) {
        int k = (int)mn_data(te.x)[2 * i];
        assert_false(seen[k]);
        seen[k] = true;
    }
    for (int i = 0; i < 30; i++) assert_true(seen[i]);
    /* same seed, same split; another seed, another split */
    mn_tensor *a_tr, *a_te, *b_tr, *b_te, *c_tr, *c_te;
    mn_scope sc = mn_scope_begin();
    g = mn_rng_new(5);
    mn_split_indices(100, NULL, 0, 0.25, &g, &a_tr, &a_te);
    g = mn_rng_new(5);
    mn_split_indices(100, NULL, 0, 0.25, &g, &b_tr, &b_te);
    g = mn_rng_new(6);
    mn_split_indices(100, NULL, 0, 0.25, &g, &c_tr, &c_te);
    assert_int_equal(a_te->shape[0], 25);
    assert_memory_equal(mn_idata(a_te), mn_idata(b_te), 25 * sizeof(int32_t));
    assert_true(memcmp(mn_idata(a_te), mn_idata(c_te), 25 * sizeof(int32_t)) != 0);
    for (int i = 1; i < 25; i++) assert_true(mn_idata(a_te)[i] > mn_idata(a_te)[i - 1]);
    mn_scope_end(sc);
    mn_dataset_free(&tr);
    mn_dataset_free(&te);
    mn_dataset_free(&d);
}

static void shuffle_is_a_uniform_seeded_permutation(void **state) {
    (void)state;
    /* all 24 orders of 4 elements should be about equally frequent */
    int freq[24] = {0};
    mn_rng g = mn_rng_new(2024);
    const int trials = 24000;
    for (int t = 0; t < trials; t++) {
        int32_t v[4] = {0, 1, 2, 3};
        mn_shuffle_i32(&g, 4, v);
        int used = 0, code = 0, fact[4] = {6, 2, 1, 1};
        for (int i = 0; i < 4; i++) { /* Lehmer code of the permutation */
            int smaller = 0;
            for (int j = 0; j < v[i]; j++) smaller += !((used >> j) & 1);
            code += smaller * fact[i];
            used |= 1 << v[i];
        }
        assert_int_equal(used, 15);
        freq[code]++;
    }
    double chi2 = 0, expect = trials / 24.0;
    for (int k = 0; k < 24; k++) chi2 += (freq[k] - expect) * (freq[k] - expect) / expect;
    print_message("shuffle chi-square over 24 orders: %.1f (23 degrees of freedom)\n", chi2);
    assert_true(chi2 < 60); /* p < 1e-4 for a fair shuffle */
    mn_scope sc = mn_scope_begin();
    mn_rng g1 = mn_rng_new(9), g2 = mn_rng_new(9);
    mn_tensor *p1 = mn_randperm(1000, &g1), *p2 = mn_randperm(1000, &g2);
    assert_memory_equal(mn_idata(p1), mn_idata(p2), 1000 * sizeof(int32_t));
    mn_scope_end(sc);
}

static void batcher_covers_each_epoch_and_resumes_exactly(void **state) {
    (void)state;
    mn_batcher b;
    mn_batcher_init(&b, 10, 4, true, false, 77);
    assert_int_equal(mn_batcher_batches_per_epoch(&b), 3);
    int32_t epoch_order[3][10];
    for (int e = 0; e < 3; e++) {
        int at = 0, seen[10] = {0};
        mn_scope sc = mn_scope_begin();
        mn_tensor *idx;
        int batches = 0;
        while ((idx = mn_batcher_next(&b))) {
            assert_int_equal(idx->shape[0], batches < 2 ? 4 : 2);
            for (int i = 0; i < idx->shape[0]; i++) {
                seen[mn_idata(idx)[i]]++;
                epoch_order[e][at++] = mn_idata(idx)[i];
            }
            batches++;
        }
        mn_scope_end(sc);
        assert_int_equal(batches, 3);
        for (int i = 0; i < 10; i++) assert_int_equal(seen[i], 1);
    }
    assert_true(memcmp(epoch_order[0], epoch_order[1], sizeof epoch_order[0]) != 0);
    /* a fresh batcher seeking to epoch 2, batch 1 continues exactly */
    mn_batcher r;
    mn_batcher_init(&r, 10, 4, true, false, 77);
    mn_batcher_seek(&r, 2, 1);
    mn_scope sc = mn_scope_begin();
    mn_tensor *idx = mn_batcher_next(&r);
    assert_memory_equal(mn_idata(idx), epoch_order[2] + 4, 4 * sizeof(int32_t));
    mn_scope_end(sc);
    /* resuming after the short last batch ends the epoch instead of repeating it */
    mn_batcher_seek(&r, 0, 0);
    sc = mn_scope_begin();
    for (int k = 0; k < 3; k++) assert_non_null(mn_batcher_next(&r));
    assert_int_equal(mn_batcher_position(&r), 3);
    mn_batcher_seek(&r, 0, mn_batcher_position(&r));
    assert_null(mn_batcher_next(&r));
    assert_int_equal(r.epoch, 1);
    mn_scope_end(sc);
    mn_batcher_free(&r);
    mn_batcher_free(&b);
    /* drop_last and no shuffle */
    mn_batcher_init(&b, 10, 4, false, true, 1);
    assert_int_equal(mn_batcher_batches_per_epoch(&b), 2);
    sc = mn_scope_begin();
    idx = mn_batcher_next(&b);
    for (int i = 0; i < 4; i++) assert_int_equal(mn_idata(idx)[i], i);
    assert_non_null(mn_batcher_next(&b));
    assert_null(mn_batcher_next(&b));
    mn_scope_end(sc);
    mn_batcher_free(&b);
}

static void gather_rows_builds_batches_of_floats_and_ints(void **state) {
    (void)state;
    mn_dataset d = {0};
    small_dataset(&d);
    mn_scope sc = mn_scope_begin();
    mn_tensor *idx = mn_from_ints(MN_SHAPE(3), (int32_t[]){29, 0, 7});
    mn_tensor *x, *y;
    mn_dataset_batch(&d, idx, &x, &y);
    assert_true(x->shape[0] == 3 && x->shape[1] == 2);
    const float want[] = {29, -29, 0, 0, 7, -7};
    for (int i = 0; i < 6; i++) assert_float_equal(mn_data(x)[i], want[i], 0);
    assert_int_equal(mn_idata(y)[0], 2);
    assert_int_equal(mn_idata(y)[2], 1);
    EXPECT_MN_ERROR(mn_gather_rows(d.x, mn_from_ints(MN_SHAPE(1), (int32_t[]){30})), "out of range");
    mn_scope_end(sc);
    mn_dataset_free(&d);
}

/* ---- masked LM ------------------------------------------------------------------------------------------ */

/* [PAD] [UNK] [CLS] [SEP] [MASK] w5 .. w999 */
static mn_wordpiece *numbered_vocab(void) {
    size_t cap = 16000, len = 0;
    char *v = malloc(cap);
    len += (size_t)snprintf(v, cap, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for (int i = 5; i < 1000; i++) len += (size_t)snprintf(v + len, cap - len, "w%d\n", i);
    mn_err err;
    mn_wordpiece *t = mn_wordpiece_from_memory(v, len, "numbered", NULL, &err);
    if (!t) fail_msg("%s", err.msg);
    free(v);
    return t;
}

static void mlm_masking_follows_bert_proportions(void **state) {
    (void)state;
    mn_wordpiece *t = numbered_vocab();
    const int B = 4, T = 2000;
    int32_t *ids = malloc(sizeof(int32_t) * B * T);
    mn_rng g = mn_rng_new(1);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            int32_t *p = ids + b * T + i;
            if (i == 0) *p = 2;                                      /* [CLS] */
            else if (i == 1000 || i == T - 301) *p = 3;              /* [SEP] */
            else if (i >= T - 300) *p = 0;                           /* [PAD] */
            else if (i % 97 == 0) *p = 1;                            /* [UNK] */
            else *p = 5 + (int32_t)mn_rng_below(&g, 995);
        }
    mn_scope sc = mn_scope_begin();
    mn_tensor *in = mn_from_ints(MN_SHAPE(B, T), ids), *labels;
    mn_rng r1 = mn_rng_new(42);
    mn_tensor *out = mn_mlm_mask(t, in, 0.15f, &r1, &labels);
    int64_t chosen = 0, masked = 0, replaced = 0, kept = 0;
    for (int b = 0; b < B; b++) {
        int64_t cand = 0, row_chosen = 0;
        for (int i = 0; i < T; i++) {
            int k = b * T + i;
            int32_t o = ids[k], now = mn_idata(out)[k], lab = mn_idata(labels)[k];
            bool special = o < 5;
            cand += !special;
            if (lab == -100) {
                assert_int_equal(now, o); /* untouched */
                continue;
            }
            assert_false(special);
            assert_int_equal(lab, o);
            row_chosen++;
            if (now == 4) masked++;
            else if (now == o) kept++;
            else {
                assert_true(now >= 5 && now < 1000); /* random replacements are never special */
                replaced++;
            }
        }
        assert_int_equal(row_chosen, llround(0.15 * (double)cand));
        chosen += row_chosen;
    }
    double fm = (double)masked / chosen, fr = (double)replaced / chosen, fk = (double)kept / chosen;
    print_message("MLM: %lld chosen, %.3f [MASK], %.3f random, %.3f kept\n", (long long)chosen, fm, fr, fk);
    assert_true(fabs(fm - 0.8) < 0.04 && fabs(fr - 0.1) < 0.03 && fabs(fk - 0.1) < 0.03);
    /* seeded: the same seed gives the same corruption, another seed another */
    mn_rng r2 = mn_rng_new(42), r3 = mn_rng_new(43);
    mn_tensor *l2, *l3;
    mn_tensor *out2 = mn_mlm_mask(t, in, 0.15f, &r2, &l2), *out3 = mn_mlm_mask(t, in, 0.15f, &r3, &l3);
    assert_memory_equal(mn_idata(out), mn_idata(out2), sizeof(int32_t) * B * T);
    assert_memory_equal(mn_idata(labels), mn_idata(l2), sizeof(int32_t) * B * T);
    assert_true(memcmp(mn_idata(out), mn_idata(out3), sizeof(int32_t) * B * T) != 0);
    /* a row of specials only is left alone */
    mn_tensor *pads = mn_from_ints(MN_SHAPE(1, 4), (int32_t[]){2, 3, 0, 0}), *lp;
    mn_tensor *po = mn_mlm_mask(t, pads, 0.15f, &r1, &lp);
    for (int i = 0; i < 4; i++) assert_int_equal(mn_idata(lp)[i], -100);
    assert_memory_equal(mn_idata(po), mn_idata(pads), 4 * sizeof(int32_t));
    mn_scope_end(sc);
    free(ids);
    mn_wordpiece_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idx_images_and_labels_round_trip_plain_and_gzip),
        cmocka_unit_test(idx_errors_name_the_file_and_byte_offset),
        cmocka_unit_test(idx_out_of_memory_is_an_error),
        cmocka_unit_test(fashion_mnist_real_files_if_installed),
        cmocka_unit_test(image_load_gray_and_rgb_with_channel_conversion),
        cmocka_unit_test(resize_shrink_matches_hand_computed_antialiased_bilinear),
        cmocka_unit_test(resize_enlarge_is_bilinear_with_half_pixel_centres),
        cmocka_unit_test(image_folder_sorted_classes_labels_and_resize),
        cmocka_unit_test(png_with_empty_first_idat_decodes_the_same),
        cmocka_unit_test(corrupt_images_give_errors_naming_the_file),
        cmocka_unit_test(jpeg_decodes_and_oversized_huffman_table_is_refused),
        cmocka_unit_test(fortunes_split_on_percent_lines),
        cmocka_unit_test(fortunes_real_corpus_if_installed),
        cmocka_unit_test(tsv_labels_in_first_seen_or_sorted_order),
        cmocka_unit_test(dataset_class_selection_and_per_class_sampling),
        cmocka_unit_test(splits_are_seeded_disjoint_and_stratified),
        cmocka_unit_test(shuffle_is_a_uniform_seeded_permutation),
        cmocka_unit_test(batcher_covers_each_epoch_and_resumes_exactly),
        cmocka_unit_test(gather_rows_builds_batches_of_floats_and_ints),
        cmocka_unit_test(mlm_masking_follows_bert_proportions),
    };
    return cmocka_run_group_tests(tests, make_tmp_root, remove_tmp_root);
}
