/* meta/'s tasks on the library's models and their families:
 * - an image task's batches are rows of the images drawn by the task's stream (brute force);
 * - the MLP, ViT and BERT task losses pass first-order gradient checks against central differences, the MLP's a
 *   second-order one too (second-order meta-gradients differentiate through the task's gradient);
 * - Adam lowers a ViT task's and a BERT task's test loss;
 * - families parse their names and widths, refuse bad ones, and mix their kinds.
 * Skipped when Fashion-MNIST (or, for BERT, the fortunes) is not installed. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "meta/meta_internal.h"

#define FASHION "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
#define FORTUNES "/usr/share/games/fortunes/fortunes"

static mn_meta_data *data;
static char work[] = "/tmp/test_meta_tasks_XXXXXX";

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(work)) return -1;
    if (exists(FASHION)) data = mn_meta_data_new(NULL, NULL, work, 200);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mn_meta_data_free(data);
    return tu_remove_tree(work);
}

static const mn_meta_vit_config tiny_vit = {
    .image = 14, .patch = 7, .dim = 4, .depth = 1, .heads = 2, .mlp_dim = 8, .batch = 3};
static const mn_meta_bert_config tiny_bert = {
    .hidden = 8, .layers = 1, .heads = 2, .intermediate = 16, .batch = 3, .len = 12, .vocab = 300};

static void image_batches_are_rows_of_the_images(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    mn_meta_task *t = mn_meta_vit_task(data, &tiny_vit, &err);
    assert_non_null(t);
    mn_scope sc = mn_scope_begin();
    mn_rng rng = mn_rng_new(7), copy = rng;
    mn_meta_batch b = t->vt->batch(t, &rng);
    mn_tensor *idx = meta_sample_rows(&copy, tiny_vit.batch, 60000), *x, *y;
    assert_true(mn_meta_data_images(data, 14, true, &x, &y, &err));
    assert_int_equal(b.x->ndim, 4);
    mn_tensor *bx = mnt_contiguous(b.x), *ix = mnt_contiguous(x);
    const int32_t *rows = mn_idata(idx);
    for (int i = 0; i < tiny_vit.batch; i++) {
        assert_memory_equal(mn_data(bx) + i * 196, mn_data(ix) + (int64_t)rows[i] * 196, 196 * sizeof(float));
        assert_int_equal(mn_idata(b.y)[i], mn_idata(y)[rows[i]]);
    }
    mn_scope_end(sc);
    mn_meta_task_free(t);
}

typedef struct {
    mn_meta_task *task;
    mn_meta_batch batch;
} loss_ctx;

static mn_tensor *task_loss(mn_tensor *const *inputs, void *ctx) {
    loss_ctx *c = ctx;
    return c->task->vt->loss(c->task, inputs, &c->batch);
}

/* weights of O(0.5) instead of the initialisers' 0.02, so every path carries a visible gradient */
static void check_task_gradient(mn_meta_task *t, bool second, double atol, double rtol) {
    assert_true(t->n_params <= 64);
    mn_scope sc = mn_scope_begin();
    mn_tensor *params[64], *inputs[64];
    t->vt->init(t, 3, params);
    mn_rng g = mn_rng_new(11);
    for (int i = 0; i < t->n_params; i++) {
        inputs[i] = mn_requires_grad(mn_randn_gen(&g, params[i]->ndim, params[i]->shape, 0.0f, 0.5f), true);
        mn_release(params[i]);
    }
    mn_rng rng = mn_rng_new(5);
    loss_ctx ctx = {t, t->vt->batch(t, &rng)};
    char msg[256];
    mn_check_opts o = {.eps = 1e-2, .atol = atol, .rtol = rtol, .seed = 1};
    if (!mn_gradcheck(task_loss, &ctx, t->n_params, inputs, o, msg, sizeof msg)) fail_msg("%s: %s", t->desc, msg);
    if (second && !mn_gradgradcheck(task_loss, &ctx, t->n_params, inputs, o, msg, sizeof msg))
        fail_msg("%s (second order): %s", t->desc, msg);
    print_message("%s: %d parameter tensors, gradient%s match central differences\n", t->desc, t->n_params,
                  second ? " and second derivatives" : "");
    mn_scope_end(sc);
}

static void task_losses_have_the_gradients_of_central_differences(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    mn_meta_mlp_config mc = {.n_layers = 2, .sizes = {196, 5, 10}, .act = MN_ACT_TANH, .batch = 4};
    mn_meta_task *mlp = mn_meta_mlp_task(data, &mc, &err);
    assert_non_null(mlp);
    check_task_gradient(mlp, true, 2e-3, 2e-2);
    mn_meta_task_free(mlp);
    mn_meta_task *vit = mn_meta_vit_task(data, &tiny_vit, &err);
    assert_non_null(vit);
    check_task_gradient(vit, false, 2e-3, 2e-2);
    mn_meta_task_free(vit);
    if (!exists(FORTUNES)) return;
    mn_meta_task *bert = mn_meta_bert_task(data, &tiny_bert, &err);
    if (!bert) fail_msg("%s", err.msg);
    check_task_gradient(bert, false, 3e-3, 3e-2);
    mn_meta_task_free(bert);
}

/* 150 Adam steps on the task's own parameters: the test loss falls. */
static void adam_trains(mn_meta_task *t, float lr, int steps, double *before, double *after, double *metric) {
    mn_tensor *p[64];
    assert_true(t->n_params <= 64);
    t->vt->init(t, 1, p);
    mn_params ps = {0};
    for (int i = 0; i < t->n_params; i++) {
        mn_params_add(&ps, NULL, t->layout->items[i].name, mn_requires_grad(p[i], true), false);
        mn_release(p[i]);
    }
    mn_optimizer *o = mn_adam_new(&ps, lr, 0.9f, 0.999f, 1e-8f, 0.0f);
    double m;
    t->vt->test(t, p, before, &m);
    mn_rng rng = mn_rng_new(2);
    for (int s = 0; s < steps; s++) {
        mn_scope sc = mn_scope_begin();
        mn_backward(mn_meta_task_loss(t, p, &rng));
        mn_optim_step(o);
        mn_optim_zero_grad(o);
        mn_scope_end(sc);
    }
    t->vt->test(t, p, after, metric);
    print_message("%s: test loss %.4f -> %.4f after %d Adam steps (metric %.3f)\n", t->desc, *before, *after, steps,
                  *metric);
    mn_optim_free(o);
    mn_params_free(&ps);
}

static void adam_lowers_vit_and_bert_task_losses(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    mn_meta_vit_config c = {.image = 28, .patch = 7, .dim = 16, .depth = 1, .heads = 2, .mlp_dim = 32, .batch = 32};
    mn_meta_task *t = mn_meta_vit_task(data, &c, &err);
    assert_non_null(t);
    double before, after, acc;
    adam_trains(t, 3e-3f, 150, &before, &after, &acc);
    assert_true(fabs(before - log(10.0)) < 0.1); /* small initial weights: near-uniform predictions */
    assert_true(after < 0.75 * before);
    assert_true(acc > 0.5);
    mn_meta_task_free(t);
    if (!exists(FORTUNES)) return;
    mn_meta_bert_config bc = {.hidden = 32, .layers = 1, .heads = 2, .intermediate = 64, .batch = 16, .len = 32,
                              .vocab = 512};
    t = mn_meta_bert_task(data, &bc, &err);
    if (!t) fail_msg("%s", err.msg);
    adam_trains(t, 3e-3f, 150, &before, &after, &acc);
    assert_true(fabs(before - log(512.0)) < 0.3); /* near-uniform over the vocabulary */
    assert_true(after < 0.9 * before);
    mn_meta_task_free(t);
}

static void families_parse_names_and_widths_and_mix_kinds(void **state) {
    (void)state;
    if (!data) skip();
    mn_err err;
    const char *bad[] = {"", "16,", "0", "16,x", "1,2,3,4,5,6,7,8,9", "5000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(mn_meta_family_new("mlp", data, 14, bad[i], &err));
        assert_non_null(strstr(err.msg, "widths"));
    }
    const char *bad_names[] = {"cnn", "mlp+mlp", "mlp+", "+vit", "mlp+cnn"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        assert_null(mn_meta_family_new(bad_names[i], data, 14, NULL, &err));
        assert_non_null(strstr(err.msg, "unknown task family"));
    }
    mn_meta_family *spec = mn_meta_family_new("mlp", data, 14, NULL, &err),
                   *same = mn_meta_family_new("mlp", data, 14, "16,32,64", &err);
    assert_string_equal(spec->name, "mlp:14");
    assert_string_equal(same->name, "mlp:14");
    mn_meta_family *wide = mn_meta_family_new("mlp", data, 28, "100,200", &err);
    assert_string_equal(wide->name, "mlp:28:100,200");
    const char *mix_name = exists(FORTUNES) ? "mlp+vit+bert" : "mlp+vit";
    mn_meta_family *mix = mn_meta_family_new(mix_name, data, 28, "100,200", &err);
    if (!mix) fail_msg("%s", err.msg);
    assert_string_equal(mix->name, exists(FORTUNES) ? "mlp:28:100,200+vit+bert" : "mlp:28:100,200+vit");
    int kinds[3] = {0};
    for (uint64_t seed = 0; seed < 45; seed++) {
        mn_meta_task *a = spec->sample(spec, seed), *w = wide->sample(wide, seed), *m = mix->sample(mix, seed);
        /* the default widths: 196-input MLPs with hidden widths of 16, 32 or 64 */
        char *end;
        assert_int_equal(strtol(a->desc + 4, &end, 10), 196);
        while (*end == '-') {
            long width = strtol(end + 1, &end, 10);
            assert_true(width == 16 || width == 32 || width == 64 || width == 10);
        }
        assert_true(!strncmp(w->desc, "mlp 784-100-", 12) || !strncmp(w->desc, "mlp 784-200-", 12));
        kinds[!strncmp(m->desc, "vit ", 4) ? 1 : !strncmp(m->desc, "bert ", 5) ? 2 : 0]++;
        /* the same seed names the same task */
        mn_meta_task *again = mix->sample(mix, seed);
        assert_string_equal(again->desc, m->desc);
        mn_meta_task_free(again);
        mn_meta_task_free(a), mn_meta_task_free(w), mn_meta_task_free(m);
    }
    print_message("%s: %d mlp, %d vit, %d bert tasks of 45\n", mix_name, kinds[0], kinds[1], kinds[2]);
    int n_kinds = exists(FORTUNES) ? 3 : 2;
    for (int k = 0; k < n_kinds; k++) assert_true(kinds[k] >= 45 / n_kinds / 2 && kinds[k] <= 2 * 45 / n_kinds);
    mn_meta_family_free(spec), mn_meta_family_free(same), mn_meta_family_free(wide), mn_meta_family_free(mix);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(image_batches_are_rows_of_the_images),
        cmocka_unit_test(task_losses_have_the_gradients_of_central_differences),
        cmocka_unit_test(adam_lowers_vit_and_bert_task_losses),
        cmocka_unit_test(families_parse_names_and_widths_and_mix_kinds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
