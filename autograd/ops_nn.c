/* Differentiable matmul, softmax, log-softmax and layer normalisation. */
#include "autograd/node.h"

static void matmul_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *a = n->in[0], *b = n->in[1];
    if (n->need[0]) gin[0] = mn_sum_to(mn_matmul(g, mn_transpose(b, -1, -2)), a->ndim, a->shape);
    if (!n->need[1]) return;
    if (b->ndim != 2) {
        gin[1] = mn_sum_to(mn_matmul(mn_transpose(a, -1, -2), g), b->ndim, b->shape);
        return;
    }
    /* A shared matrix (a layer's weight): the batch's rows are one long K of a single
     * GEMM instead of a batched product reduced afterwards. */
    int64_t K = b->shape[0], N = b->shape[1];
    mn_tensor *a2 = a->ndim == 2 ? a : mn_reshape(a, MN_SHAPE(-1, K));
    mn_tensor *g2 = g->ndim == 2 ? g : mn_reshape(g, MN_SHAPE(-1, N));
    if (b->strides[0] == 1 && N > 1 && K > 1)
        /* b is a transposed view (x W^T): produce the gradient in W's own layout, so the
         * weight receives a contiguous tensor rather than a strided copy */
        gin[1] = mn_transpose(mn_matmul(mn_transpose(g2, 0, 1), a2), 0, 1);
    else
        gin[1] = mn_matmul(mn_transpose(a2, 0, 1), g2);
}
mn_tensor *mn_matmul(mn_tensor *a, mn_tensor *b) {
    mn_tensor *y = mnt_matmul(a, b);
    mn_tensor *in[2] = {a, b};
    mn_record(y, "matmul", matmul_bw, 2, in);
    return y;
}

/* Backward rules are written with differentiable ops so that a recorded backward pass
 * (MN_CREATE_GRAPH) can be differentiated again. When nothing is recorded (grad mode is
 * off inside backward), the same formulas run as one fused kernel instead. */

/* d softmax: y (g - sum(g y)) */
static void softmax_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    int axis = (int)n->iarg[0];
    if (!mn_grad_enabled() && axis == out->ndim - 1) gin[0] = mnt_softmax_backward(out, g);
    else gin[0] = mn_mul(out, mn_sub(g, mn_sum(mn_mul(g, out), MN_AXES(axis), true)));
}
mn_tensor *mn_softmax(mn_tensor *x, int axis) {
    mn_tensor *y = mnt_softmax(x, axis);
    mn_node *n = mn_record(y, "softmax", softmax_bw, 1, &x);
    if (n) n->iarg[0] = mn_norm_axis(x, axis, "softmax");
    return y;
}

/* d log_softmax: g - softmax * sum(g) */
static void log_softmax_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    int axis = (int)n->iarg[0];
    if (!mn_grad_enabled() && axis == out->ndim - 1) gin[0] = mnt_log_softmax_backward(out, g);
    else gin[0] = mn_sub(g, mn_mul(mn_exp(out), mn_sum(g, MN_AXES(axis), true)));
}
mn_tensor *mn_log_softmax(mn_tensor *x, int axis) {
    mn_tensor *y = mnt_log_softmax(x, axis);
    mn_node *n = mn_record(y, "log_softmax", log_softmax_bw, 1, &x);
    if (n) n->iarg[0] = mn_norm_axis(x, axis, "log_softmax");
    return y;
}

/* With xhat = (x - mean) * rstd and gh = g * w:
 * dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), dw = sum(g * xhat), db = sum(g),
 * with the statistics recomputed from differentiable ops so the rule nests. */
static void layernorm_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    float eps = n->farg[0];
    if (!mn_grad_enabled()) {
        mnt_layernorm_backward(x, w, g, eps, n->need[0] ? &gin[0] : NULL, w && n->need[1] ? &gin[1] : NULL,
                               b && n->need[2] ? &gin[2] : NULL);
        return;
    }
    mn_tensor *xc = mn_sub(x, mn_mean(x, MN_AXES(-1), true));
    mn_tensor *rstd = mn_rsqrt(mn_add_scalar(mn_mean(mn_square(xc), MN_AXES(-1), true), eps));
    mn_tensor *xhat = mn_mul(xc, rstd);
    int64_t C = x->shape[x->ndim - 1];
    if (w && n->need[1]) gin[1] = mn_sum_to(mn_mul(g, xhat), 1, &C);
    if (b && n->need[2]) gin[2] = mn_sum_to(g, 1, &C);
    if (n->need[0]) {
        mn_tensor *gh = w ? mn_mul(g, w) : g;
        mn_tensor *t = mn_sub(gh, mn_mean(gh, MN_AXES(-1), true));
        t = mn_sub(t, mn_mul(xhat, mn_mean(mn_mul(gh, xhat), MN_AXES(-1), true)));
        gin[0] = mn_mul(t, rstd);
    }
}
mn_tensor *mn_layernorm(mn_tensor *x, mn_tensor *w, mn_tensor *b, float eps) {
    mn_tensor *y = mnt_layernorm(x, w, b, eps, NULL, NULL);
    mn_tensor *in[3] = {x, w, b};
    mn_node *n = mn_record(y, "layernorm", layernorm_bw, 3, in);
    if (n) n->farg[0] = eps;
    return y;
}

/* d/dx softmax(s x + m) = s * softmax'(...) g; the mask's gradient is softmax'(...) g summed to its shape */
static void softmax_scaled_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *mask = n->in[1];
    mn_tensor *t = mn_grad_enabled() ? mn_mul(out, mn_sub(g, mn_sum(mn_mul(g, out), MN_AXES(-1), true)))
                                     : mnt_softmax_backward(out, g);
    if (n->need[0]) gin[0] = mn_scale(t, n->farg[0]);
    if (mask && n->need[1]) gin[1] = mn_sum_to(t, mask->ndim, mask->shape);
}
mn_tensor *mn_softmax_scaled(mn_tensor *x, float scale, mn_tensor *mask) {
    mn_tensor *y = mnt_softmax_scaled(x, scale, mask);
    mn_tensor *in[2] = {x, mask};
    mn_node *n = mn_record(y, "softmax_scaled", softmax_scaled_bw, 2, in);
    if (n) n->farg[0] = scale;
    return y;
}

/* With p = softmax(scale q k^T + mask): dv = p^T g, ds = scale p (g v^T - rowsum(g v^T p)),
 * dq = ds k, dk = ds^T q. Recorded, p is rebuilt from q and k with ops so the rule nests. */
static void attention_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *mask = n->in[3];
    float scale = n->farg[0];
    if (!mn_grad_enabled()) {
        mnt_attention_backward(q, k, v, n->saved, g, scale, n->need[0] ? &gin[0] : NULL, n->need[1] ? &gin[1] : NULL,
                               n->need[2] ? &gin[2] : NULL);
        return;
    }
    mn_tensor *p = mn_softmax_scaled(mn_matmul(q, mn_transpose(k, -1, -2)), scale, mask);
    if (n->need[2]) gin[2] = mn_matmul(mn_transpose(p, -1, -2), g);
    if (!n->need[0] && !n->need[1]) return;
    mn_tensor *dp = mn_matmul(g, mn_transpose(v, -1, -2));
    mn_tensor *ds = mn_scale(mn_mul(p, mn_sub(dp, mn_sum(mn_mul(dp, p), MN_AXES(-1), true))), scale);
    if (n->need[0]) gin[0] = mn_matmul(ds, k);
    if (n->need[1]) gin[1] = mn_matmul(mn_transpose(ds, -1, -2), q);
}
mn_tensor *mn_attention(mn_tensor *q, mn_tensor *k, mn_tensor *v, float scale, mn_tensor *mask) {
    if (mask && mask->requires_grad && mn_grad_enabled())
        mn_fatal("mn_attention: the mask is a constant here; use mn_softmax_scaled and mn_matmul for a learned one");
    bool rec = mn_grad_enabled() && (q->requires_grad || k->requires_grad || v->requires_grad);
    mn_tensor *probs = NULL;
    mn_tensor *y = mnt_attention(q, k, v, scale, mask, rec ? &probs : NULL);
    mn_tensor *in[4] = {q, k, v, mask};
    mn_node *n = mn_record(y, "attention", attention_bw, 4, in);
    if (n) {
        n->saved = mn_retain(probs);
        n->farg[0] = scale;
    }
    return y;
}

/* dx = g w, dw = g^T x (rows of every leading dim as one long K), db = column sums of g */
static void dense_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t in = w->shape[1], outf = w->shape[0];
    mn_tensor *g2 = mn_reshape(g, MN_SHAPE(-1, outf));
    if (n->need[0]) gin[0] = mn_reshape(mn_matmul(g2, w), x->ndim, x->shape);
    if (n->need[1]) gin[1] = mn_matmul(mn_transpose(g2, 0, 1), mn_reshape(x, MN_SHAPE(-1, in)));
    if (b && n->need[2]) gin[2] = mn_sum(g2, MN_AXES(0), false);
}
mn_tensor *mn_dense(mn_tensor *x, mn_tensor *w, mn_tensor *b) {
    mn_tensor *y = mnt_dense(x, w, b);
    mn_tensor *in[3] = {x, w, b};
    mn_record(y, "dense", dense_bw, 3, in);
    return y;
}

/* d loss / d logits = g / count * (softmax(x) - (1 - ls) onehot(t) - ls / C) on counted rows, 0 on
 * ignored ones. Recorded: softmax is an op, the target distribution a constant. */
/* The recorded form of that gradient: (softmax(x) keep - dist) * g / count, with the target
 * distribution dist and the row mask keep as constants. */
static mn_tensor *xent_logits_grad(mn_tensor *x, mn_tensor *targets, int ignore, float ls, int64_t counted,
                                   mn_tensor *g) {
    int64_t N = x->shape[0], C = x->shape[1];
    float inv = 1.0f / (float)(counted ? counted : 1);
    mn_tensor *dist = mn_zeros(MN_SHAPE(N, C)), *keep = mn_zeros(MN_SHAPE(N, 1));
    const int32_t *t = mn_idata(mnt_contiguous(targets));
    float *d = mn_data(dist), *k = mn_data(keep);
    for (int64_t i = 0; i < N; i++) {
        if (t[i] == ignore) continue;
        k[i] = 1.0f;
        for (int64_t j = 0; j < C; j++) d[i * C + j] = ls / (float)C;
        d[i * C + t[i]] += 1.0f - ls;
    }
    mn_tensor *diff = mn_sub(mn_mul(mn_softmax(x, -1), keep), dist);
    return mn_mul(diff, mn_scale(g, inv));
}

static void softmax_xent_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *x = n->in[0], *targets = n->saved;
    int ignore = (int)n->iarg[0];
    int64_t counted = n->iarg[1];
    float ls = n->farg[0];
    if (mn_grad_enabled()) gin[0] = xent_logits_grad(x, targets, ignore, ls, counted, g);
    else gin[0] = mnt_cross_entropy_backward(x, targets, ignore, ls, mn_item(g) / (float)(counted ? counted : 1));
}
mn_tensor *mn_softmax_cross_entropy(mn_tensor *logits, mn_tensor *targets, int ignore_index, float label_smoothing) {
    int64_t counted;
    mn_tensor *y = mnt_cross_entropy(logits, targets, ignore_index, label_smoothing, &counted);
    mn_node *n = mn_record(y, "softmax_cross_entropy", softmax_xent_bw, 1, &logits);
    if (n) {
        n->saved = mn_retain(targets);
        n->iarg[0] = ignore_index;
        n->iarg[1] = counted;
        n->farg[0] = label_smoothing;
    }
    return y;
}

/* Inputs h, w, b, then the gradients the forward computed for an incoming gradient of 1 (NULL when
 * not wanted): an unrecorded backward only scales them. A recorded one writes the rule out with
 * ops (logits rebuilt with mn_dense). */
static void dense_xent_bw(mn_node *n, mn_tensor *out, mn_tensor *g, mn_tensor **gin) {
    mn_tensor *h = n->in[0], *w = n->in[1], *b = n->in[2];
    if (!mn_grad_enabled()) {
        float s = mn_item(g);
        for (int i = 0; i < 3; i++)
            if (n->need[i]) gin[i] = n->in[3 + i] ? mnt_affine(n->in[3 + i], s, 0.0f) : NULL;
        if ((n->need[0] && !gin[0]) || (n->need[1] && !gin[1]) || (b && n->need[2] && !gin[2]))
            mn_fatal("backward of dense_cross_entropy: an input that did not require grad in the forward needs one");
        return;
    }
    mn_tensor *dlogits = xent_logits_grad(mn_dense(h, w, b), n->saved, (int)n->iarg[0], n->farg[0], n->iarg[1], g);
    if (n->need[0]) gin[0] = mn_matmul(dlogits, w);
    if (n->need[1]) gin[1] = mn_matmul(mn_transpose(dlogits, 0, 1), h);
    if (b && n->need[2]) gin[2] = mn_sum(dlogits, MN_AXES(0), false);
}
mn_tensor *mn_dense_cross_entropy(mn_tensor *h, mn_tensor *w, mn_tensor *b, mn_tensor *targets, int ignore_index,
                                  float label_smoothing) {
    bool rec = mn_grad_enabled() && (h->requires_grad || w->requires_grad || (b && b->requires_grad));
    mn_tensor *grads[3] = {NULL, NULL, NULL};
    int64_t counted;
    mn_tensor *y = mnt_dense_cross_entropy(h, w, b, targets, ignore_index, label_smoothing, &counted,
                                           rec && h->requires_grad ? &grads[0] : NULL,
                                           rec && w->requires_grad ? &grads[1] : NULL,
                                           rec && b && b->requires_grad ? &grads[2] : NULL);
    mn_tensor *in[6] = {h, w, b, grads[0], grads[1], grads[2]};
    mn_node *n = mn_record(y, "dense_cross_entropy", dense_xent_bw, 6, in);
    if (n) {
        n->saved = mn_retain(targets);
        n->iarg[0] = ignore_index;
        n->iarg[1] = counted;
        n->farg[0] = label_smoothing;
    }
    return y;
}
