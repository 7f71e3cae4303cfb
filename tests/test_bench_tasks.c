/* The meta-training task families of bench/common (linked into this test, see configure.py):
 * - a tiny-ViT task's batches are the images' patches (checked against a brute-force patch copy), its loss has
 *   the gradient of central differences, and Adam lowers it;
 * - the families parse their hidden widths and refuse bad lists; "mlp+vit" draws both kinds;
 * - "mlp" with the spec's widths names the same tasks whatever the new options are.
 * Skipped when Fashion-MNIST is not installed. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/common/tasks.h"

#define FASHION "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

static task_data *data;

static bool have_data(void) {
    struct stat st;
    return stat(FASHION, &st) == 0;
}

static int setup(void **state) {
    (void)state;
    if (have_data()) data = task_data_new(NULL, NULL, "/tmp", 200);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    task_data_free(data);
    return 0;
}

static const vit_task_config tiny = {
    .image = 14, .patch = 7, .dim = 4, .depth = 1, .heads = 2, .mlp_dim = 8, .batch = 3};

static void vit_batches_are_patches(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    vit_task_config c = tiny;
    c.patch = 2;
    mn_meta_task *t = vit_meta_task_new(data, &c, &err);
    assert_non_null(t);
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(7), copy = rng;
    mn_meta_batch b = t->vt->batch(t, &rng);
    mn_tensor *idx = task_sample_rows(&copy, c.batch, 60000), *x, *y;
    assert_true(task_data_images(data, 14, true, &x, &y, &err));
    assert_int_equal(b.x->ndim, 3);
    assert_int_equal(mn_size(b.x, 1), 49);
    assert_int_equal(mn_size(b.x, 2), 4);
    mn_tensor *px = mnt_contiguous(b.x), *ix = mnt_contiguous(x);
    const float *p = mn_data(px), *img = mn_data(ix);
    const int32_t *rows = mn_idata(idx);
    for (int i = 0; i < c.batch; i++)
        for (int py = 0; py < 7; py++)
            for (int pxi = 0; pxi < 7; pxi++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        float want = img[(int64_t)rows[i] * 196 + (py * 2 + dy) * 14 + pxi * 2 + dx];
                        float got = p[((int64_t)i * 49 + py * 7 + pxi) * 4 + dy * 2 + dx];
                        assert_float_equal(got, want, 0.0f);
                    }
    mn_scope_end(sc);
    mn_meta_task_free(t);
}

typedef struct {
    mn_meta_task *task;
    mn_meta_batch batch;
    mn_tensor **params; /* the checked inputs replace params[0..n) */
    int n;
} loss_ctx;

static mn_tensor *task_loss(mn_tensor *const *inputs, void *ctx) {
    loss_ctx *c = ctx;
    mn_tensor *p[64];
    for (int i = 0; i < c->task->n_params; i++) p[i] = i < c->n ? inputs[i] : c->params[i];
    return c->task->vt->loss(c->task, p, &c->batch);
}

static void vit_loss_gradient_matches_finite_differences(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    mn_meta_task *t = vit_meta_task_new(data, &tiny, &err);
    assert_non_null(t);
    assert_true(t->n_params <= 64);
    mn_tensor *params[64];
    t->vt->init(t, 3, params);
    mn_scope sc = mn_scope_begin();
    /* weights of O(1) instead of the initialiser's 0.02, so every path carries a
     * visible gradient */
    mn_rng g = mn_rng_new(11);
    mn_tensor *inputs[64];
    for (int i = 0; i < t->n_params; i++)
        inputs[i] = mn_requires_grad(mn_randn_gen(&g, params[i]->ndim, params[i]->shape, 0.0f, 0.5f), true);
    mn_rng rng = mn_rng_new(5);
    loss_ctx ctx = {t, t->vt->batch(t, &rng), params, t->n_params};
    char msg[256];
    mn_check_opts o = {.eps = 1e-2, .atol = 2e-3, .rtol = 2e-2, .seed = 1};
    if (!mn_gradcheck(task_loss, &ctx, t->n_params, inputs, o, msg, sizeof msg)) fail_msg("%s", msg);
    mn_scope_end(sc);
    for (int i = 0; i < t->n_params; i++) mn_release(params[i]);
    mn_meta_task_free(t);
}

static void adam_lowers_a_vit_task_loss(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    vit_task_config c = {.image = 28, .patch = 7, .dim = 16, .depth = 1, .heads = 2, .mlp_dim = 32, .batch = 32};
    mn_meta_task *t = vit_meta_task_new(data, &c, &err);
    assert_non_null(t);
    mn_tensor *p[64];
    t->vt->init(t, 1, p);
    mn_params ps = {0};
    for (int i = 0; i < t->n_params; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        mn_requires_grad(p[i], true);
        mn_params_add(&ps, "", name, p[i], false);
    }
    mn_optimizer *o = mn_adam_new(&ps, 3e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
    double before, after, acc;
    t->vt->test(t, p, &before, &acc);
    mn_rng rng = mn_rng_new(2);
    for (int s = 0; s < 150; s++) {
        mn_scope sc = mn_scope_begin();
        mn_backward(mn_meta_task_loss(t, p, &rng));
        mn_optim_step(o);
        mn_optim_zero_grad(o);
        mn_scope_end(sc);
    }
    t->vt->test(t, p, &after, &acc);
    assert_true(fabs(before - log(10.0)) < 0.1); /* small initial weights: near-uniform predictions */
    assert_true(after < 0.75 * before);
    assert_true(acc > 0.5);
    mn_optim_free(o);
    mn_params_free(&ps);
    for (int i = 0; i < t->n_params; i++) mn_release(p[i]);
    mn_meta_task_free(t);
}

static void families_parse_widths_and_mix_kinds(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    const char *bad[] = {"", "16,", "0", "16,x", "1,2,3,4,5,6,7,8,9", "5000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(task_family_new("mlp", data, 14, bad[i], &err));
        assert_non_null(strstr(err.msg, "widths"));
    }
    assert_null(task_family_new("cnn", data, 14, NULL, &err));
    assert_non_null(strstr(err.msg, "cnn"));

    mn_meta_family *spec = task_family_new("mlp", data, 14, NULL, &err),
                   *same = task_family_new("mlp", data, 14, "16,32,64", &err);
    assert_string_equal(spec->name, "mlp:14");
    assert_string_equal(same->name, "mlp:14");
    mn_meta_family *wide = task_family_new("mlp", data, 28, "100,200", &err);
    assert_string_equal(wide->name, "mlp:28:100,200");
    mn_meta_family *mix = task_family_new("mlp+vit", data, 28, "100,200", &err);
    assert_string_equal(mix->name, "mlp:28:100,200+vit");
    int n_vit = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        mn_meta_task *a = spec->sample(spec, seed), *w = wide->sample(wide, seed), *m = mix->sample(mix, seed);
        /* the spec's family, however named, draws 196-input MLPs with hidden widths
         * of 16, 32 or 64 */
        char *end;
        assert_int_equal(strtol(a->desc + 4, &end, 10), 196);
        while (*end == '-') {
            long width = strtol(end + 1, &end, 10);
            assert_true(width == 16 || width == 32 || width == 64 || width == 10);
        }
        assert_true(!strncmp(w->desc, "mlp 784-100-", 12) || !strncmp(w->desc, "mlp 784-200-", 12));
        n_vit += !strncmp(m->desc, "vit ", 4);
        mn_meta_task_free(a), mn_meta_task_free(w), mn_meta_task_free(m);
    }
    assert_true(n_vit >= 10 && n_vit <= 30); /* half of 40, binomially */
    mn_meta_family_free(spec), mn_meta_family_free(same), mn_meta_family_free(wide), mn_meta_family_free(mix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vit_batches_are_patches),
        cmocka_unit_test(vit_loss_gradient_matches_finite_differences),
        cmocka_unit_test(adam_lowers_a_vit_task_loss),
        cmocka_unit_test(families_parse_widths_and_mix_kinds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
