/* Recomputation checkpoints (autograd/recompute.c): the gradients through a checkpointed region
 * equal those of the same region recorded op by op and central differences, a declared leaf used
 * inside and outside the region gets both contributions, the graph keeps only the region's inputs
 * and outputs, and misuse stops with a message. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* An error raised inside a backward pass abandons it (mn_fatal ends the program outside tests), so
 * the engine's bookkeeping for that pass is not freed when a test traps the error. */
#define ABANDONED_PASS_BEGIN() __lsan_disable()
#define ABANDONED_PASS_END() __lsan_enable()
#else
#define ABANDONED_PASS_BEGIN() ((void)0)
#define ABANDONED_PASS_END() ((void)0)
#endif

/* The region: in = [x [3, 4], h [3, 5]], leaf W [4, 5]:
 *   out0 = tanh(x W) * h                  [3, 5]
 *   out1 = sum_j exp(x / 2)_ij * sigmoid(x)_ij   [3] */
typedef struct {
    mn_tensor *W;
    float half;
} region_ctx;

static void region(const void *ctx, mn_tensor *const *in, mn_tensor **out) {
    const region_ctx *c = ctx;
    out[0] = mn_mul(mn_tanh(mn_matmul(in[0], c->W)), in[1]);
    out[1] = mn_sum(mn_mul(mn_exp(mn_scale(in[0], c->half)), mn_sigmoid(in[0])), MN_AXES(1), false);
}

/* loss = <out0, r0> + <out1, r1> + sum(W^2), x = 2 x0 (x is not a leaf) */
static mn_tensor *loss_of(mn_tensor *x0, mn_tensor *h, mn_tensor *W, bool checkpointed) {
    mn_tensor *x = mn_scale(x0, 2.0f), *out[2];
    region_ctx c = {W, 0.5f};
    if (checkpointed) mn_recompute(region, &c, sizeof c, 2, (mn_tensor *[]){x, h}, 1, &W, 2, out);
    else region(&c, (mn_tensor *[]){x, h}, out);
    mn_tensor *r0 = tu_rand(90, MN_SHAPE(3, 5), -1, 1), *r1 = tu_rand(91, MN_SHAPE(3), -1, 1);
    mn_tensor *l = mn_add(mn_sum(mn_mul(out[0], r0), MN_ALL, false), mn_sum(mn_mul(out[1], r1), MN_ALL, false));
    return mn_add(l, mn_sum(mn_square(W), MN_ALL, false));
}

static mn_tensor *checkpointed_loss(mn_tensor *const *in, void *ctx) {
    (void)ctx;
    return loss_of(in[0], in[1], in[2], true);
}

static void gradients_match_the_recorded_region_and_finite_differences(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *in[3] = {mn_requires_grad(tu_rand(1, MN_SHAPE(3, 4), -1, 1), true),
                        mn_requires_grad(tu_rand(2, MN_SHAPE(3, 5), -1, 1), true),
                        mn_requires_grad(tu_rand(3, MN_SHAPE(4, 5), -1, 1), true)};
    mn_tensor *plain[3], *ckpt[3];
    mn_grad(1, (mn_tensor *[]){loss_of(in[0], in[1], in[2], false)}, NULL, 3, in, plain, 0);
    mn_grad(1, (mn_tensor *[]){loss_of(in[0], in[1], in[2], true)}, NULL, 3, in, ckpt, 0);
    for (int i = 0; i < 3; i++) tu_assert_close(ckpt[i], plain[i], 1e-6, 1e-6);
    /* W is used inside (a declared leaf) and outside (sum W^2): both parts arrive */
    mn_tensor *outside = mn_scale(in[2], 2.0f);
    assert_true(tu_close_ratio(ckpt[2], outside, 1e-3, 0) > 1);

    /* mn_backward into ->grad takes the same path */
    mn_backward(loss_of(in[0], in[1], in[2], true));
    for (int i = 0; i < 3; i++) tu_assert_close(in[i]->grad, plain[i], 1e-6, 1e-6);

    char msg[256];
    mn_check_opts opts = {.eps = 1e-3, .atol = 2e-3, .rtol = 2e-3, .seed = 5};
    assert_true(mn_gradcheck(checkpointed_loss, NULL, 3, in, opts, msg, sizeof msg));
    mn_scope_end(sc);
}

/* A region with big intermediates: out = sum over k = 1..8 of tanh(k x) sigmoid(x) (x [n]) */
static void wide_region(const void *ctx, mn_tensor *const *in, mn_tensor **out) {
    (void)ctx;
    mn_tensor *acc = mn_zeros_like(in[0]);
    for (int k = 1; k <= 8; k++) acc = mn_add(acc, mn_mul(mn_tanh(mn_scale(in[0], (float)k)), mn_sigmoid(in[0])));
    out[0] = acc;
}

static int64_t graph_bytes(bool checkpointed) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_requires_grad(tu_rand(4, MN_SHAPE(1 << 16), -1, 1), true), *out;
    int64_t before = mn_live_bytes();
    if (checkpointed) mn_recompute(wide_region, NULL, 0, 1, &x, 0, NULL, 1, &out);
    else wide_region(NULL, &x, &out);
    int64_t bytes = mn_live_bytes() - before;
    mn_tensor *g = mn_grad1(mn_sum(out, MN_ALL, false), x, 0);
    /* d/dx sum_k tanh(kx) s(x) = sum_k k (1 - tanh(kx)^2) s(x) + tanh(kx) s(x) (1 - s(x)) */
    mn_tensor *ref = mn_zeros_like(x), *s = mn_sigmoid(x), *ds = mn_mul(s, mn_add_scalar(mn_neg(s), 1.0f));
    for (int k = 1; k <= 8; k++) {
        mn_tensor *t = mn_tanh(mn_scale(x, (float)k));
        mn_tensor *dt = mn_scale(mn_add_scalar(mn_neg(mn_square(t)), 1.0f), (float)k);
        ref = mn_add(ref, mn_add(mn_mul(dt, s), mn_mul(t, ds)));
    }
    tu_assert_close(g, mn_detach(ref), 1e-5, 1e-5);
    mn_scope_end(sc);
    return bytes;
}

static void the_graph_keeps_only_inputs_and_outputs(void **state) {
    (void)state;
    int64_t plain = graph_bytes(false), ckpt = graph_bytes(true), one = (int64_t)sizeof(float) << 16;
    print_message("graph of the region: %lld bytes recorded op by op, %lld checkpointed (one tensor: %lld)\n",
                  (long long)plain, (long long)ckpt, (long long)one);
    assert_true(plain >= 20 * one); /* 8 rounds of several intermediates */
    assert_true(ckpt <= 2 * one);   /* the packed output, plus views */
}

static void outside_grad_mode_the_region_just_runs(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_requires_grad(tu_rand(6, MN_SHAPE(16), -1, 1), true), *a, *b;
    bool prev = mn_no_grad_begin();
    mn_recompute(wide_region, NULL, 0, 1, &x, 0, NULL, 1, &a);
    mn_no_grad_end(prev);
    assert_false(a->requires_grad);
    mn_recompute(wide_region, NULL, 0, 1, &x, 0, NULL, 1, &b);
    assert_true(b->requires_grad);
    tu_assert_close(b, a, 0, 0);
    mn_scope_end(sc);
}

static void reads_an_undeclared_leaf(const void *ctx, mn_tensor *const *in, mn_tensor **out) {
    out[0] = mn_mul(in[0], *(mn_tensor *const *)ctx);
}

static void misuse_stops_with_a_message(void **state) {
    (void)state;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = mn_requires_grad(tu_rand(7, MN_SHAPE(5), -1, 1), true);
    mn_tensor *w = mn_requires_grad(tu_rand(8, MN_SHAPE(5), -1, 1), true), *out;
    mn_recompute(reads_an_undeclared_leaf, &w, sizeof w, 1, &x, 0, NULL, 1, &out);
    ABANDONED_PASS_BEGIN();
    EXPECT_MN_ERROR(mn_grad1(mn_sum(out, MN_ALL, false), x, 0), "neither one of its inputs nor a declared leaf");
    ABANDONED_PASS_END();

    mn_recompute(wide_region, NULL, 0, 1, &x, 0, NULL, 1, &out);
    ABANDONED_PASS_BEGIN();
    EXPECT_MN_ERROR(mn_grad1(mn_sum(out, MN_ALL, false), x, MN_CREATE_GRAPH), "cannot be recorded");
    ABANDONED_PASS_END();

    mn_tensor *not_leaf = mn_scale(w, 2.0f);
    EXPECT_MN_ERROR(mn_recompute(wide_region, NULL, 0, 1, &x, 1, &not_leaf, 1, &out), "is the result of an op");
    mn_scope_end(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradients_match_the_recorded_region_and_finite_differences),
        cmocka_unit_test(the_graph_keeps_only_inputs_and_outputs),
        cmocka_unit_test(outside_grad_mode_the_region_just_runs),
        cmocka_unit_test(misuse_stops_with_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
