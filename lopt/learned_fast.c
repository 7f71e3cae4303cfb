/* The fused no-graph step of the learned optimizers (see learned_fast.h for why it exists).
 *
 * mn_lopt_apply and the mn_optimizer adapter take this path whenever the step would record no
 * graph (grad mode off, or nothing involved requires grad); MNEMO_LOPT_FAST=0 in the environment
 * turns it off (comparisons, debugging). It computes the graph path's update and new state to
 * float rounding, over the same state tensors: the coordinate-wise slots are updated in place
 * (after replacing a slot that carries autograd history by a plain copy, so no recorded graph
 * sees its inputs change), Mnemosyne-T's small CAM slots are replaced as the graph path does.
 *
 * Work is split into blocks of coordinates that never straddle two tensors (a tensor's bias
 * corrections and whether its state advances are per tensor), run in parallel with OpenMP when
 * there are enough of them. Blocks are independent and computed alike at any thread count, so
 * results do not depend on it. */
#include "lopt/formulas.h"
#include "lopt/learned_fast.h"

#include "tensor/cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* coordinates per block: the LSTM's gate buffers fit L1 at 64 columns; the CAM's state rows are
 * read with a stride of P, so longer runs per row help the hardware prefetcher */
#define LF_LSTM_COLS 64
#define LF_CAM_COLS 256

const lf_kernels *lf_select_kernels(void) {
    switch (mn_cpu_isa()) {
    case MN_ISA_AVX512: return &lf_kernels_avx512;
    case MN_ISA_AVX2: return &lf_kernels_avx2;
    default: return &lf_kernels_scalar;
    }
}

float *lf_scratch_pool(size_t floats, int threads, size_t *stride) {
    *stride = (floats + LF_ALIGN / sizeof(float) - 1) / (LF_ALIGN / sizeof(float)) * (LF_ALIGN / sizeof(float));
    /* the tensor allocator keeps freed blocks for reuse: no fresh pages step after step */
    return mn_data(mn_empty(MN_SHAPE((int64_t)(*stride * (size_t)threads))));
}

void lf_bias_corrections(const mn_lopt_state *s, int i, float *bc1, float *bc2) {
    *bc1 = lopt_bias_correction(s->cfg.ext_beta1, s->steps[i]);
    *bc2 = lopt_bias_correction(s->cfg.ext_beta2, s->steps[i]);
}

/* ---- the arithmetic counted ---------------------------------------------------------------------------- */

double mn_lopt_macs_per_coordinate(const mn_lopt_config *cfg) {
    double F = lopt_n_features(cfg), d = cfg->dim;
    if (cfg->kind == MN_LOPT_LSTM) {
        double H = cfg->lstm_hidden, macs = H; /* the head */
        for (int l = 0; l < cfg->lstm_layers; l++) macs += 4 * H * ((l == 0 ? F : H) + H);
        return macs;
    }
    if (cfg->kind == MN_LOPT_MNEMOSYNE_C) {
        double H = cfg->heads, r = cfg->qk_dim, M2 = 2.0 * cfg->features, dh = d / H;
        double layer = 2 * d * H * r + d * d  /* q, k, v */
                       + 2 * H * M2 * r       /* the random features of q and k */
                       + 2 * H * M2 * (dh + 1) /* the memory's update and read */
                       + d * d + 2 * d * cfg->ffn_dim;
        return F * d + cfg->layers * layer + 2 * d;
    }
    double M = cfg->hpe_features;
    double hpe = 4 * d * d                   /* q, k, v, o */
                 + 2 * M * d                 /* the FAVOR+ features of q and k */
                 + 2 * (M * d + M)           /* K'^T [V 1] and Q' times it */
                 + 2 * d * cfg->hpe_ffn_dim; /* the FFN */
    return 2 * F * d                           /* the embedding, in the encoder and again in the head */
           + hpe * (1.0 + 1.0 / cfg->chunk)    /* level 1 per coordinate, level 2 per chunk */
           + d * cfg->head_hidden + 2.0 * cfg->head_hidden; /* the head's embedding half and its output */
}

/* ---- when to take it ------------------------------------------------------------------------------- */

static bool requires_grad_any(const mn_params *p) {
    for (int i = 0; i < p->count; i++)
        if (p->items[i].tensor && p->items[i].tensor->requires_grad) return true;
    return false;
}

bool lopt_fast_usable(const mn_lopt *o, const mn_lopt_state *s, int n, mn_tensor *const *grads) {
    const char *env = getenv("MNEMO_LOPT_FAST");
    if (env && !strcmp(env, "0")) return false;
    if (!mn_grad_enabled()) return true;
    if (requires_grad_any(&o->weights) || requires_grad_any(&o->features)) return false;
    for (int i = 0; i < n; i++)
        if (grads[i]->requires_grad) return false;
    for (int k = 0; k < s->n_slots; k++)
        if (s->slot[k]->requires_grad) return false;
    return true;
}

/* ---- the weights as raw arrays ---------------------------------------------------------------------- */

/* (inside the step's scope: contiguous copies, if any, live until its end) */
static const float *raw(mn_tensor *t) { return t ? mn_data(mnt_contiguous(t)) : NULL; }

static lf_linear linear_of(const mn_linear *l) {
    return (lf_linear){raw(l->weight), raw(l->bias), (int)l->weight->shape[0], (int)l->weight->shape[1]};
}

static lf_norm norm_of(const mn_norm *n) { return (lf_norm){raw(n->weight), raw(n->bias), n->eps}; }

/* gamma = exp(-tau), tau = softplus(tau_raw) when learned (cam.c's cam_gamma) */
static float cam_gamma(const lopt_cam *c, const mn_lopt_config *cfg) {
    return lopt_discount(c->tau_raw ? lopt_softplus(mn_item(c->tau_raw)) : cfg->tau);
}

/* The LSTM's gate weights transposed to [in + H][G] and padded (lstm_block's layout), the g rows
 * doubled: the kernel forms tanh(g) as 2 sigmoid(2g) - 1. */
static void lstm_init(lf_net *net, const mn_lopt *o) {
    const mn_lopt_config *cfg = &o->cfg;
    int H = cfg->lstm_hidden, G = (4 * H + LF_VEC - 1) / LF_VEC * LF_VEC;
    net->lstm_g = G;
    size_t total = 0;
    for (int l = 0; l < cfg->lstm_layers; l++) total += (size_t)((l == 0 ? net->F : H) + H + 1) * G;
    net->owned = aligned_alloc(LF_ALIGN, (total * sizeof(float) + LF_ALIGN - 1) / LF_ALIGN * LF_ALIGN);
    if (!net->owned) mn_fatal("learned optimizer fast step: out of memory");
    memset(net->owned, 0, sizeof(float) * total);
    float *next = net->owned;
    for (int l = 0; l < cfg->lstm_layers; l++) {
        int K = (l == 0 ? net->F : H) + H;
        const float *w = raw(o->lstm[l].weight), *b = raw(o->lstm[l].bias);
        float *wt = next, *bt = next + (size_t)K * G;
        next = bt + G;
        for (int r = 0; r < 4 * H; r++) {
            float scale = r >= 2 * H && r < 3 * H ? 2.0f : 1.0f;
            for (int k = 0; k < K; k++) wt[(size_t)k * G + r] = w[(size_t)r * K + k] * scale;
            bt[r] = b[r] * scale;
        }
        net->lstm_wt[l] = wt, net->lstm_b[l] = bt;
    }
    net->head = linear_of(&o->head);
}

static void net_init(lf_net *net, const mn_lopt *o) {
    const mn_lopt_config *cfg = &o->cfg;
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    net->F = lopt_n_features(cfg);
    net->inv_p = 1.0f / cfg->precond_p;
    net->threshold = expf(-cfg->precond_p);
    net->exp_p = expf(cfg->precond_p);
    if (cfg->kind == MN_LOPT_LSTM) {
        lstm_init(net, o);
        return;
    }
    net->embed = linear_of(&o->embed);
    net->head = linear_of(&o->head);
    if (cfg->kind == MN_LOPT_MNEMOSYNE_T) net->head2 = linear_of(&o->head_fc2);
    int d = cfg->dim, hr = cfg->heads * cfg->qk_dim, r = cfg->qk_dim, M = cfg->features;
    size_t per_layer = (size_t)2 * hr * d + (size_t)2 * M * r;
    net->owned = malloc(sizeof(float) * per_layer * (size_t)cfg->layers);
    if (!net->owned) mn_fatal("learned optimizer fast step: out of memory");
    /* exp(q.k / sqrt(r)) with q, k scaled by r^-1/4: folded into the weights as cam.c does */
    float scale = powf((float)r, -0.25f);
    for (int l = 0; l < cfg->layers; l++) {
        const lopt_cam *c = &o->cam[l];
        lf_cam *fc = &net->cam[l];
        float *wq = net->owned + per_layer * (size_t)l, *wk = wq + hr * d, *om2 = wk + hr * d;
        const float *q = raw(c->query.weight), *k = raw(c->key.weight), *om = raw(c->omega);
        for (int i = 0; i < hr * d; i++) wq[i] = q[i] * scale, wk[i] = k[i] * scale;
        for (int i = 0; i < M * r; i++) om2[i] = om[i], om2[M * r + i] = -om[i];
        fc->wq = wq, fc->wk = wk, fc->omega2 = om2;
        fc->wv = raw(c->value.weight);
        fc->wo = raw(c->output.weight);
        fc->norm1 = norm_of(&c->norm1);
        fc->norm2 = norm_of(&c->norm2);
        fc->ffn1 = linear_of(&c->ffn1);
        fc->ffn2 = linear_of(&c->ffn2);
        fc->gamma = cam_gamma(c, cfg);
    }
    net->cam_log_norm = 0.5f * logf((float)(2 * M));
    if (cfg->kind != MN_LOPT_MNEMOSYNE_T) return;
    /* exp(q.k / sqrt(head_dim)) with q, k scaled by head_dim^-1/4: folded into their weights and biases */
    int hd = d / cfg->hpe_heads;
    float hpe_scale = powf((float)hd, -0.25f);
    size_t qk = (size_t)d * d + (size_t)d; /* one projection's weight and bias */
    net->owned_hpe = malloc(sizeof(float) * 4 * qk);
    if (!net->owned_hpe) mn_fatal("learned optimizer fast step: out of memory");
    for (int l = 0; l < 2; l++) {
        const mn_block *b = &o->hpe[l];
        lf_hpe *h = &net->hpe[l];
        h->ln1 = norm_of(&b->ln1);
        h->ln2 = norm_of(&b->ln2);
        const mn_linear *proj[2] = {&b->attn.query, &b->attn.key};
        lf_linear *scaled[2] = {&h->q, &h->k};
        for (int j = 0; j < 2; j++) {
            lf_linear raw_l = linear_of(proj[j]);
            float *w = net->owned_hpe + (size_t)(2 * l + j) * qk, *bias = w + (size_t)d * d;
            for (int i = 0; i < d * d; i++) w[i] = raw_l.w[i] * hpe_scale;
            for (int i = 0; i < d; i++) bias[i] = raw_l.b ? raw_l.b[i] * hpe_scale : 0.0f;
            *scaled[j] = (lf_linear){w, bias, raw_l.out, raw_l.in};
        }
        h->v = linear_of(&b->attn.value);
        h->o = linear_of(&b->attn.output);
        h->fc1 = linear_of(&b->fc1);
        h->fc2 = linear_of(&b->fc2);
        h->omega = raw(b->attn.omega);
    }
    net->hpe_inv_sqrt_m = 1.0f / sqrtf((float)cfg->hpe_features);
}

/* ---- state slots ------------------------------------------------------------------------------------- */

/* Makes slot k a plain contiguous tensor that may be written in place: one that carries autograd
 * history (or is a view with gaps) is replaced by a fresh copy of its values. */
static void own_slot(mn_lopt_state *s, int k) {
    mn_tensor *t = s->slot[k];
    if (!t->node && !t->requires_grad && mn_is_contiguous(t)) return;
    mn_scope sc = mn_scope_begin();
    mn_tensor *copy = mn_retain(mnt_clone(t));
    mn_scope_end(sc);
    mn_release(s->slot[k]);
    s->slot[k] = copy;
}

/* ---- LSTM and Mnemosyne-C: blocks of coordinates --------------------------------------------------- */

typedef struct {
    const lf_net *net;
    const lf_kernels *kern;
    const mn_lopt_state *s;
    const float *const *grads;
    const bool *active;
    float *delta;
    int cols;
    int64_t *first_block; /* [n + 1]: tensor i's blocks are first_block[i] .. first_block[i + 1] - 1 */
} coord_job;

static int tensor_of_block(const coord_job *job, int64_t b) {
    int lo = 0, hi = job->s->lay.n - 1; /* the last i with first_block[i] <= b */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (job->first_block[mid] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void run_block(const coord_job *job, int64_t b, float *scratch) {
    const mn_lopt_state *s = job->s;
    const mn_lopt_config *cfg = &s->cfg;
    int i = tensor_of_block(job, b);
    int64_t start = (b - job->first_block[i]) * job->cols, P = s->lay.total;
    int64_t len = s->lay.numel[i] - start < job->cols ? s->lay.numel[i] - start : job->cols;
    int64_t coord = s->lay.offset[i] + start;
    float *delta = job->delta + coord;
    if (job->active && !job->active[i]) { /* a tensor without a gradient (the adapter): no update, no state change */
        memset(delta, 0, sizeof(float) * (size_t)len);
        return;
    }
    lf_grad_block gb = {.g = job->grads[i] + start};
    if (cfg->extended) {
        int k = s->n_slots - 2; /* the moments come last */
        float *m = mn_data(s->slot[k]) + coord, *v = mn_data(s->slot[k + 1]) + coord;
        gb.m = gb.m_out = m;
        gb.v = gb.v_out = v;
        lf_bias_corrections(s, i, &gb.bc1, &gb.bc2);
    }
    if (cfg->kind == MN_LOPT_LSTM) {
        float *h[LOPT_MAX_LSTM_LAYERS], *c[LOPT_MAX_LSTM_LAYERS];
        int64_t H = cfg->lstm_hidden;
        for (int l = 0; l < cfg->lstm_layers; l++) {
            h[l] = mn_data(s->slot[2 * l]) + coord * H;
            c[l] = mn_data(s->slot[2 * l + 1]) + coord * H;
        }
        job->kern->lstm_block(job->net, job->cols, (int)len, &gb, h, c, delta, scratch);
    } else {
        float *S[LOPT_MAX_CAM_LAYERS];
        for (int l = 0; l < cfg->layers; l++) S[l] = mn_data(s->slot[l]) + coord;
        job->kern->cam_block(job->net, job->cols, (int)len, &gb, S, P, delta, scratch);
    }
}

static void coordinatewise_step(const lf_net *net, const lf_kernels *kern, const mn_lopt_state *s,
                                const float *const *grads, const bool *active, float *delta) {
    const lopt_layout *lay = &s->lay;
    coord_job job = {net, kern, s, grads, active, delta, s->cfg.kind == MN_LOPT_LSTM ? LF_LSTM_COLS : LF_CAM_COLS,
                     malloc(sizeof(int64_t) * (size_t)(lay->n + 1))};
    if (!job.first_block) mn_fatal("learned optimizer fast step: out of memory");
    job.first_block[0] = 0;
    for (int i = 0; i < lay->n; i++)
        job.first_block[i + 1] = job.first_block[i] + (lay->numel[i] + job.cols - 1) / job.cols;
    int64_t blocks = job.first_block[lay->n];
    bool parallel = lay->total >= LF_PARALLEL_MIN && blocks > 1 && omp_get_max_threads() > 1 && !omp_in_parallel();
    int threads = parallel ? omp_get_max_threads() : 1;
    size_t stride;
    float *pool = lf_scratch_pool(kern->scratch_rows(net) * (size_t)job.cols, threads, &stride);
#pragma omp parallel if (parallel) num_threads(threads)
    {
        float *scratch = pool + stride * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 4)
        for (int64_t b = 0; b < blocks; b++) run_block(&job, b, scratch);
    }
    free(job.first_block);
}

/* ---- the step ------------------------------------------------------------------------------------------ */

mn_tensor *lopt_fast_step(const mn_lopt *o, mn_lopt_state *s, int n, mn_tensor *const *grads, const bool *active) {
    const mn_lopt_config *cfg = &o->cfg;
    mn_scope sc = mn_scope_begin();
    lf_net net;
    net_init(&net, o);
    const float **g = malloc(sizeof *g * (size_t)n);
    if (!g) mn_fatal("learned optimizer fast step: out of memory");
    for (int i = 0; i < n; i++) {
        if (mn_numel(grads[i]) != s->lay.numel[i] || grads[i]->dtype != MN_F32)
            mn_fatal("lopt_fast_step: gradient %d has %lld elements, expected %lld float32", i,
                     (long long)mn_numel(grads[i]), (long long)s->lay.numel[i]);
        g[i] = mn_data(mnt_contiguous(grads[i]));
    }
    bool tensorwise = cfg->kind == MN_LOPT_MNEMOSYNE_T;
    /* Mnemosyne-T's CAM slots (the first cfg->layers) are replaced, not written */
    for (int k = tensorwise ? cfg->layers : 0; k < s->n_slots; k++) own_slot(s, k);
    mn_tensor *delta = mn_empty(MN_SHAPE(s->lay.total));
    const lf_kernels *kern = lf_select_kernels();
    if (tensorwise) lf_mnemosyne_t_step(&net, kern, s, o, g, active, mn_data(delta));
    else coordinatewise_step(&net, kern, s, g, active, mn_data(delta));
    for (int k = tensorwise ? cfg->layers : 0; k < s->n_slots; k++) s->slot[k]->storage->version++;
    free(g);
    free(net.owned);
    free(net.owned_hpe);
    return mn_scope_return(sc, delta);
}
