/* Mnemosyne-T's fused no-graph step (learned_fast.h): the graph path's lopt_hpe_encode, CAM and
 * head, organised around the coordinates' blocks instead of [P, d] tensors.
 *   A. per block of level-1 chunks: features, embeddings, the level-1 layer, mean-pooling into
 *      the level-1 tokens (all tensors' chunks in one parallel loop);
 *   B. per block of level-2 chunks: the level-2 layer over those tokens, then (serially, a few
 *      rows per tensor) the mean over each meta-token's group;
 *   C. the CAM over the B meta-tokens with cam.c's own ops (B is at most 64 per tensor), with
 *      recording off;
 *   D. per block of coordinates: the embeddings (A's, kept when they take at most 32 MB, else
 *      formed again: A then only reads the moments and D advances them), the
 *      head on [CAM output of the coordinate's meta-token, embedding] (its first layer's product
 *      with the CAM output formed once per meta-token), the update, and the moments' advance (A
 *      only reads them, so both see the same features). */
#include "lopt/learned_fast.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* columns of a level-1/level-2 block (whole chunks: at least one) and of a head block */
#define LF_T_COLS 64
#define LF_HEAD_COLS 64
/* the most memory A's embeddings may take to be kept for D (a step of 1M coordinates or fewer at
 * d = 8): meta-training's tasks; larger models form them again rather than hold d floats per
 * parameter */
size_t lf_keep_embeddings_max = (size_t)32 << 20;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int round_up(int64_t n, int to) { return (int)ceil_div(n, to) * to; }

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) mn_fatal("learned optimizer fast step: out of memory (%zu bytes)", bytes);
    return p;
}

/* Blocks of `per` items over each tensor's n_items: first[i] .. first[i + 1] - 1 are tensor i's. */
typedef struct {
    int n;
    int64_t per, *first;
} blocks;

static blocks blocks_new(int n, const int64_t *n_items, int64_t per) {
    blocks b = {n, per, xmalloc(sizeof(int64_t) * (size_t)(n + 1))};
    b.first[0] = 0;
    for (int i = 0; i < n; i++) b.first[i + 1] = b.first[i] + ceil_div(n_items[i], per);
    return b;
}

/* block index -> tensor i and the block's first item within it */
static int block_at(const blocks *b, int64_t k, int64_t *start) {
    int lo = 0, hi = b->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b->first[mid] <= k) lo = mid;
        else hi = mid - 1;
    }
    *start = (k - b->first[lo]) * b->per;
    return lo;
}

typedef struct {
    const lf_net *net;
    const lf_kernels *kern;
    const mn_lopt_state *s;
    const float *const *grads;
    const bool *active;
    float *m, *v;         /* the moments [P] (NULL without extended features) */
    int64_t *n1, *base1;  /* level-1 tokens of tensor i: rows base1[i] .. base1[i] + n1[i] - 1 */
    int64_t *group;       /* level-1 tokens per meta-token of tensor i */
    float *tok1, *y2;     /* [chunks1][d]: level-1 tokens, level-2 outputs */
    const float *hcam;    /* [B][head_hidden]: the head's first layer on each meta-token's CAM output, plus its bias */
    float *emb;           /* [blocks][d][LF_HEAD_COLS]: A's embeddings kept for D (NULL: D forms them again) */
    float *delta;
} t_job;

static lf_grad_block grad_block(const t_job *job, int i, int64_t start, bool write) {
    const mn_lopt_state *s = job->s;
    lf_grad_block gb = {.g = job->grads[i] + start};
    if (job->m) {
        int64_t coord = s->lay.offset[i] + start;
        gb.m = job->m + coord, gb.v = job->v + coord;
        if (write) gb.m_out = job->m + coord, gb.v_out = job->v + coord;
        lf_bias_corrections(s, i, &gb.bc1, &gb.bc2);
    }
    return gb;
}

/* A: level-1 block k (chunks of one tensor) -> its level-1 tokens */
static void level1_block(const t_job *job, const blocks *b, int64_t k, float *e, float *y, int *real,
                         float *scratch) {
    const mn_lopt_state *s = job->s;
    int c = s->cfg.chunk, d = s->cfg.dim, W = round_up(b->per * c, LF_VEC);
    int64_t j0;
    int i = block_at(b, k, &j0);
    if (job->active && !job->active[i]) return; /* its tokens stay zero; its update is dropped */
    int chunks = (int)(job->n1[i] - j0 < b->per ? job->n1[i] - j0 : b->per);
    int64_t start = j0 * c, len = s->lay.numel[i] - start < (int64_t)chunks * c ? s->lay.numel[i] - start
                                                                              : (int64_t)chunks * c;
    lf_grad_block gb = grad_block(job, i, start, job->emb != NULL); /* (kept: D will not form the features) */
    job->kern->embed_block(job->net, W, (int)len, &gb, e, scratch);
    if (job->emb) memcpy(job->emb + (size_t)k * (size_t)(d * W), e, sizeof(float) * (size_t)(d * W));
    for (int j = 0; j < chunks; j++) real[j] = (int)(len - (int64_t)j * c < c ? len - (int64_t)j * c : c);
    job->kern->hpe_layer(job->net, 0, W, chunks, c, real, e, y, scratch);
    for (int j = 0; j < chunks; j++) {
        float *tok = job->tok1 + (job->base1[i] + j0 + j) * d;
        for (int r = 0; r < d; r++) /* (lane sums: a plain float sum does not vectorise) */
            tok[r] = lf_lane_sum(y + (size_t)r * W + (size_t)j * c, real[j]) / (float)real[j];
    }
}

/* B: level-2 block k (chunks of one tensor's level-1 tokens) -> their level-2 outputs */
static void level2_block(const t_job *job, const blocks *b, int64_t k, float *x, float *y, int *real,
                         float *scratch) {
    const mn_lopt_state *s = job->s;
    int c = s->cfg.chunk, d = s->cfg.dim, W = round_up(b->per * c, LF_VEC);
    int64_t j0;
    int i = block_at(b, k, &j0);
    if (job->active && !job->active[i]) return;
    int64_t n2 = ceil_div(job->n1[i], c);
    int chunks = (int)(n2 - j0 < b->per ? n2 - j0 : b->per);
    int64_t first = j0 * c; /* the block's first level-1 token within the tensor */
    int64_t len = job->n1[i] - first < (int64_t)chunks * c ? job->n1[i] - first : (int64_t)chunks * c;
    const float *tok = job->tok1 + (job->base1[i] + first) * d;
    for (int r = 0; r < d; r++)
        for (int col = 0; col < W; col++) x[(size_t)r * W + col] = col < len ? tok[(size_t)col * d + r] : 0.0f;
    for (int j = 0; j < chunks; j++) real[j] = (int)(len - (int64_t)j * c < c ? len - (int64_t)j * c : c);
    job->kern->hpe_layer(job->net, 1, W, chunks, c, real, x, y, scratch);
    float *out = job->y2 + (job->base1[i] + first) * d;
    for (int64_t col = 0; col < len; col++)
        for (int r = 0; r < d; r++) out[col * d + r] = y[(size_t)r * W + col];
}

/* D: head block k of one tensor's coordinates -> delta */
static void head_block(const t_job *job, const blocks *b, int64_t k, float *hid, float *scratch) {
    const mn_lopt_state *s = job->s;
    int c = s->cfg.chunk, hh = s->cfg.head_hidden, W = (int)b->per;
    int64_t start;
    int i = block_at(b, k, &start);
    int64_t len = s->lay.numel[i] - start < W ? s->lay.numel[i] - start : W;
    if (job->active && !job->active[i]) {
        memset(job->delta + s->lay.offset[i] + start, 0, sizeof(float) * (size_t)len);
        return;
    }
    /* each meta-token's share of the head over its run of columns (c * group coordinates share one) */
    int64_t per_meta = (int64_t)c * job->group[i];
    for (int col = 0; col < W;) {
        int end = W;
        const float *row = NULL;
        if (col < len) {
            int64_t m = (start + col) / per_meta, run_end = (m + 1) * per_meta - start;
            row = job->hcam + (s->lay.meta_offset[i] + m) * hh;
            end = (int)(run_end < len ? run_end : len);
        }
        for (int r = 0; r < hh; r++) {
            float value = row ? row[r] : 0.0f, *out = hid + (size_t)r * W;
            for (int k = col; k < end; k++) out[k] = value;
        }
        col = end;
    }
    lf_grad_block gb = grad_block(job, i, start, job->emb == NULL);
    const float *e = job->emb ? job->emb + (size_t)k * (size_t)(s->cfg.dim * W) : NULL;
    job->kern->t_head_block(job->net, W, (int)len, &gb, e, hid, job->delta + s->lay.offset[i] + start, scratch);
}

typedef enum { PHASE_LEVEL1, PHASE_LEVEL2, PHASE_HEAD } t_phase;

static void run_phase(const t_job *job, t_phase phase, const blocks *b, bool parallel) {
    int64_t count = b->first[b->n];
    int d = job->s->cfg.dim, W = phase == PHASE_HEAD ? (int)b->per : round_up(b->per * job->s->cfg.chunk, LF_VEC);
    size_t rows = job->kern->scratch_rows(job->net);
    int io = phase == PHASE_HEAD ? job->s->cfg.head_hidden : 2 * d; /* the in and out buffers' rows */
    parallel = parallel && count > 1 && omp_get_max_threads() > 1 && !omp_in_parallel();
    int threads = parallel ? omp_get_max_threads() : 1;
    size_t stride;
    float *pool = lf_scratch_pool((rows + (size_t)io) * (size_t)W, threads, &stride);
#pragma omp parallel if (parallel) num_threads(threads)
    {
        float *scratch = pool + stride * (size_t)omp_get_thread_num();
        float *in = scratch + rows * (size_t)W, *out = in + (size_t)d * W;
        int *real = xmalloc(sizeof(int) * (size_t)b->per);
#pragma omp for schedule(dynamic, 4)
        for (int64_t k = 0; k < count; k++) {
            if (phase == PHASE_LEVEL1) level1_block(job, b, k, in, out, real, scratch);
            else if (phase == PHASE_LEVEL2) level2_block(job, b, k, in, out, real, scratch);
            else head_block(job, b, k, in, scratch);
        }
        free(real);
    }
}

/* Mean of the level-2 outputs over each meta-token's group of level-1 tokens -> meta [B][d] */
static void pool_meta(const t_job *job, float *meta) {
    const lopt_layout *lay = &job->s->lay;
    int d = job->s->cfg.dim;
    memset(meta, 0, sizeof(float) * (size_t)(lay->total_meta * d));
    for (int i = 0; i < lay->n; i++)
        for (int64_t m = 0; m < lay->meta[i]; m++) {
            int64_t lo = m * job->group[i], hi = lo + job->group[i] < job->n1[i] ? lo + job->group[i] : job->n1[i];
            float *out = meta + (lay->meta_offset[i] + m) * d;
            for (int64_t j = lo; j < hi; j++)
                for (int r = 0; r < d; r++) out[r] += job->y2[(job->base1[i] + j) * d + r];
            for (int r = 0; r < d; r++) out[r] /= (float)(hi - lo);
        }
}

/* C: the CAM layers over the meta-tokens, with cam.c's ops; the slots are replaced by the new
 * states, whose columns of inactive tensors are reset to the old ones. -> [B][d] (in scope) */
static mn_tensor *cam_over_meta(const mn_lopt *o, mn_lopt_state *s, const bool *active, const float *meta) {
    const mn_lopt_config *cfg = &o->cfg;
    const lopt_layout *lay = &s->lay;
    bool prev = mn_no_grad_begin();
    mn_tensor *h = mn_from_data(MN_SHAPE(lay->total_meta, cfg->dim), meta);
    for (int l = 0; l < cfg->layers; l++) {
        mn_tensor *S_new;
        h = lopt_cam_forward(&o->cam[l], cfg, h, s->slot[l], &S_new);
        for (int i = 0; active && i < lay->n; i++) {
            if (active[i]) continue;
            int axis;
            int64_t a, b;
            lopt_slot_range(s, l, i, &axis, &a, &b);
            mnt_copy_(mnt_slice(S_new, axis, a, b, 1), mnt_slice(s->slot[l], axis, a, b, 1));
        }
        mn_retain(S_new);
        mn_release(s->slot[l]);
        s->slot[l] = S_new;
    }
    mn_no_grad_end(prev);
    return mnt_contiguous(h);
}

void lf_mnemosyne_t_step(const lf_net *net, const lf_kernels *kern, mn_lopt_state *s, const mn_lopt *o,
                         const float *const *grads, const bool *active, float *delta) {
    const mn_lopt_config *cfg = &s->cfg;
    const lopt_layout *lay = &s->lay;
    int n = lay->n, c = cfg->chunk, d = cfg->dim;
    t_job job = {net, kern, s, grads, active};
    if (cfg->extended) {
        job.m = mn_data(s->slot[s->n_slots - 2]);
        job.v = mn_data(s->slot[s->n_slots - 1]);
    }
    job.n1 = xmalloc(sizeof(int64_t) * 4 * (size_t)n);
    job.base1 = job.n1 + n, job.group = job.n1 + 2 * n;
    int64_t chunks1 = 0, *n2 = job.n1 + 3 * n; /* level-2 chunks of tensor i */
    for (int i = 0; i < n; i++) {
        job.n1[i] = ceil_div(lay->numel[i], c);
        job.base1[i] = chunks1;
        chunks1 += job.n1[i];
        n2[i] = ceil_div(job.n1[i], c);
        /* level-2 chunks per meta-token: 1 unless a tensor has more than max_meta of them */
        job.group[i] = (int64_t)c * ceil_div(n2[i], cfg->max_meta);
    }
    job.tok1 = calloc((size_t)(chunks1 * d) + 1, sizeof(float));
    job.y2 = calloc((size_t)(chunks1 * d) + 1, sizeof(float));
    if (!job.tok1 || !job.y2)
        mn_fatal("learned optimizer fast step: out of memory for %lld tokens", (long long)chunks1);
    int64_t per = LF_T_COLS / c > 1 ? LF_T_COLS / c : 1; /* chunks per level block */
    bool parallel = lay->total >= LF_PARALLEL_MIN;

    blocks b1 = blocks_new(n, job.n1, per), b2 = blocks_new(n, n2, per), bh = blocks_new(n, lay->numel, LF_HEAD_COLS);
    /* A's embeddings are kept for D when its blocks are D's and the copy is small (it saves D the
     * features and the embedding, a few per cent of the step) */
    size_t kept = (size_t)b1.first[n] * (size_t)(d * LF_HEAD_COLS);
    if (per * c == LF_HEAD_COLS && kept * sizeof(float) <= lf_keep_embeddings_max)
        job.emb = mn_data(mn_empty(MN_SHAPE((int64_t)kept + 1)));
    run_phase(&job, PHASE_LEVEL1, &b1, parallel);
    run_phase(&job, PHASE_LEVEL2, &b2, parallel && chunks1 >= LF_PARALLEL_MIN / c);
    float *meta = xmalloc(sizeof(float) * (size_t)(lay->total_meta * d));
    pool_meta(&job, meta);
    mn_scope sc = mn_scope_begin();
    const float *cam = mn_data(cam_over_meta(o, s, active, meta));
    int hh = cfg->head_hidden;
    float *hcam = xmalloc(sizeof(float) * (size_t)(lay->total_meta * hh) + 1);
    for (int64_t m = 0; m < lay->total_meta; m++)
        for (int r = 0; r < hh; r++) { /* (the head's input is [CAM output, embedding]) */
            const float *w = net->head.w + (size_t)r * net->head.in;
            float sum = net->head.b ? net->head.b[r] : 0.0f;
            for (int j = 0; j < d; j++) sum += w[j] * cam[m * d + j];
            hcam[m * hh + r] = sum;
        }
    job.hcam = hcam;
    job.delta = delta;
    run_phase(&job, PHASE_HEAD, &bh, parallel);
    mn_scope_end(sc);
    free(hcam);
    free(meta);
    free(b1.first);
    free(b2.first);
    free(bh.first);
    free(job.tok1);
    free(job.y2);
    free(job.n1);
}
