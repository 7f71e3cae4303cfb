/* Internals of the fused no-graph step of the learned optimizers (learned_fast*.c).
 *
 * The graph path (learned.c, lstm_opt.c, mnemosyne.c, cam.c, hpe.c) runs each layer as one op
 * over all P coordinates, materialising [P, ...] intermediates: right for meta-training, slow
 * for using a trained optimizer on a large model. The fused path computes the same step one
 * block of coordinates at a time, with every intermediate in a small per-thread buffer laid out
 * structure-of-arrays ([row][column], a column per coordinate, columns padded to a multiple of
 * LF_VEC), so each tiny matrix product is a loop over long vectorisable rows. (The LSTM instead
 * keeps its state's layout, a row of hidden units per coordinate, and vectorises over the gates.)
 *
 * The block kernels live in learned_fast_kernels.h and are compiled once per ISA
 * (learned_fast_scalar.c, learned_fast_avx2.c, learned_fast_avx512.c); learned_fast.c picks a
 * table at run time with mn_cpu_isa() and drives the blocks (learned_fast_t.c for Mnemosyne-T's
 * hierarchical encoding). */
#ifndef MN_LEARNED_FAST_H
#define MN_LEARNED_FAST_H

#include "lopt/learned_internal.h"

#define LF_VEC 16   /* columns come in multiples of one 64-byte vector */
#define LF_ALIGN 64 /* every buffer row starts on a vector boundary */
/* below this many coordinates a step runs on one thread (a parallel region would cost more) */
#define LF_PARALLEL_MIN 16384

/* y = W x + b over columns: W [out, in] row-major, b [out] or NULL */
typedef struct {
    const float *w, *b;
    int out, in;
} lf_linear;

typedef struct {
    const float *w, *b;
    float eps;
} lf_norm;

typedef struct {
    const float *wq, *wk; /* [H r, d], pre-scaled by r^-1/4 */
    const float *wv, *wo; /* [d, d] */
    const float *omega2;  /* [2M, r]: [omega; -omega] */
    lf_norm norm1, norm2;
    lf_linear ffn1, ffn2;
    float gamma;
} lf_cam;

typedef struct {
    lf_norm ln1, ln2;
    lf_linear q, k, v, o, fc1, fc2;        /* q, k pre-scaled by head_dim^-1/4 */
    const float *omega; /* [M, head_dim] */
} lf_hpe;

/* The optimizer's weights as raw arrays, gathered once per step. */
typedef struct {
    mn_lopt_config cfg;
    int F;                                 /* input features: 2 or 4 */
    float inv_p, threshold, exp_p;         /* 1/p, e^-p, e^p of the preprocessing */
    int lstm_g;                            /* LSTM gates per coordinate: 4H rounded up to LF_VEC */
    const float *lstm_wt[LOPT_MAX_LSTM_LAYERS], *lstm_b[LOPT_MAX_LSTM_LAYERS]; /* [in + H][G], [G] */
    lf_linear embed, head, head2;          /* head: LSTM [1, H], C [2, d], T [hidden, 2d]; head2: T [2, hidden] */
    lf_cam cam[LOPT_MAX_CAM_LAYERS];
    float cam_log_norm;                    /* log sqrt(2M) */
    lf_hpe hpe[2];
    float hpe_inv_sqrt_m;                  /* 1/sqrt(M) */
    float *owned, *owned_hpe;              /* the pre-scaled and stacked copies */
} lf_net;

/* One block's inputs for the features: the gradient and (extended) the moments of n coordinates,
 * and where the advanced moments go (NULL: not written). bc1, bc2: the bias corrections. */
typedef struct {
    const float *g, *m, *v;
    float *m_out, *v_out;
    float bc1, bc2;
} lf_grad_block;

/* Per-ISA block kernels. W is the padded column count (a multiple of LF_VEC), n <= W the real
 * columns; scratch holds scratch_rows(net) rows of W floats, LF_ALIGN-aligned. */
typedef struct {
    size_t (*scratch_rows)(const lf_net *net);
    /* LSTM: h[l], c[l] point at the block's rows of the [P, H] states (n rows of H), updated in
     * place; delta [n] */
    void (*lstm_block)(const lf_net *net, int W, int n, const lf_grad_block *gb, float *const *h, float *const *c,
                       float *delta, float *scratch);
    /* Mnemosyne-C: S[l] points at the block's first coordinate of the [H, 2M, d_h + 1, P] state,
     * rows stride apart; updated in place */
    void (*cam_block)(const lf_net *net, int W, int n, const lf_grad_block *gb, float *const *S, int64_t stride,
                      float *delta, float *scratch);
    /* Mnemosyne-T: the embeddings e [d][W] of n coordinates (columns past n zero) */
    void (*embed_block)(const lf_net *net, int W, int n, const lf_grad_block *gb, float *e, float *scratch);
    /* Mnemosyne-T: one HPE layer over k chunks of c columns (chunk j: columns j c ..; its first
     * real[j] columns are items, the rest padding, zero in X): X, Y [d][W] */
    void (*hpe_layer)(const lf_net *net, int level, int W, int k, int c, const int *real, const float *X, float *Y,
                      float *scratch);
    /* Mnemosyne-T: the head on [CAM output, e] -> delta [n], given hid [head_hidden][W] holding the
     * first layer's bias plus its product with the CAM output of each column's meta-token (the same
     * for the c * group coordinates of one meta-token, so formed once per meta-token); overwritten.
     * e: the block's embeddings [d][W] when the encoder kept them (gb's moments then already
     * advanced), else NULL: features and embeddings are formed here and the moments advanced */
    void (*t_head_block)(const lf_net *net, int W, int n, const lf_grad_block *gb, const float *e, float *hid,
                         float *delta, float *scratch);
    /* the step's own elementwise functions, in place over n floats (exposed for their tests) */
    void (*exp_rows)(size_t n, float *x);
    void (*gelu_rows)(size_t n, float *x);
    void (*sigmoid_rows)(size_t n, float *x);
} lf_kernels;

extern const lf_kernels lf_kernels_scalar, lf_kernels_avx2, lf_kernels_avx512;
/* Mnemosyne-T keeps its encoder's embeddings for the head when they take at most this many bytes
 * (a variable so that tests take both ways) */
extern size_t lf_keep_embeddings_max;

/* Sum of n floats kept in LF_VEC lanes (lane l takes elements l, l + LF_VEC, ..), so the loop
 * vectorises (a plain float sum may not be reordered). */
static inline float lf_lane_sum(const float *x, int n) {
    float lanes[LF_VEC] = {0};
    int i = 0;
    for (; i + LF_VEC <= n; i += LF_VEC)
        for (int l = 0; l < LF_VEC; l++) lanes[l] += x[i + l];
    for (int l = 0; i + l < n; l++) lanes[l] += x[i + l];
    float sum = 0.0f;
    for (int l = 0; l < LF_VEC; l++) sum += lanes[l];
    return sum;
}

/* learned_fast.c */
const lf_kernels *lf_select_kernels(void);
/* Scratch for `threads` threads of `floats` each: thread t's starts at t * *stride, aligned. A
 * tensor of the current scope (call outside parallel regions). */
float *lf_scratch_pool(size_t floats, int threads, size_t *stride);
/* Bias corrections of tensor i (1 - beta^t at its step count). */
void lf_bias_corrections(const mn_lopt_state *s, int i, float *bc1, float *bc2);
/* Mnemosyne-T (learned_fast_t.c): delta [P]; the moments of the active tensors advance in place,
 * the CAM slots are replaced by new tensors (their inactive tensors' columns kept). */
void lf_mnemosyne_t_step(const lf_net *net, const lf_kernels *kern, mn_lopt_state *s, const mn_lopt *o,
                         const float *const *grads, const bool *active, float *delta);

#endif
