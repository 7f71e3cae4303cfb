/* The LSTM learned optimizer (Andrychowicz et al. 2016), the baseline of Mnemosyne: every
 * coordinate runs the same stacked LSTM on its preprocessed gradient, with its own hidden and
 * cell state, and a linear map of the top hidden state gives its update u:
 *   theta += lr_scale * out_scale * u.
 * The network outputs the step itself (no minus sign): descent is something it learns. All
 * coordinates of all tensors go through each layer at once: one GEMM per gate over [P, in + H + 1].
 *
 * Initialisation: weights U(+-1/sqrt(fan_in)) as PyTorch's default, except hidden unit 0 of each
 * layer, which is set up as a carrier: its gates ignore everything (input and output gates open,
 * sigmoid(4) = 0.98; forget gate sigmoid(2) = 0.88) and its cell input is tanh of the sign-like
 * feature (layer 0) or of unit 0 below (higher layers), so its cell keeps a decaying sum of
 * gradient signs; the head reads only that unit, u = -0.01 h[0]. The untrained optimizer is
 * therefore sign-momentum descent with steps of about 1e-3 lr_scale. */
#include "lopt/learned_internal.h"

#include <stdio.h>

enum { GATE_I, GATE_F, GATE_G, GATE_O }; /* PyTorch's gate order in the 4H rows */

void lopt_lstm_init(mn_lopt *o, mn_rng *rng) {
    const mn_lopt_config *cfg = &o->cfg;
    int64_t H = cfg->lstm_hidden, F = lopt_n_features(cfg);
    for (int l = 0; l < cfg->lstm_layers; l++) {
        int64_t in = l == 0 ? F : H;
        mn_linear_init(&o->lstm[l], in + H, 4 * H, true, 0.0f, rng);
        float *w = mn_data(o->lstm[l].weight), *b = mn_data(o->lstm[l].bias);
        const float gate_bias[4] = {[GATE_I] = 4.0f, [GATE_F] = 2.0f, [GATE_G] = 0.0f, [GATE_O] = 4.0f};
        for (int gate = 0; gate < 4; gate++) {
            int64_t row = gate * H; /* unit 0 of this gate */
            for (int64_t j = 0; j < in + H; j++) w[row * (in + H) + j] = 0.0f;
            b[row] = gate_bias[gate];
        }
        int64_t carrier_in = l == 0 ? lopt_carrier_feature(cfg) : 0;
        w[GATE_G * H * (in + H) + carrier_in] = l == 0 ? 1.0f : 2.0f;
        mn_optim_touch(o->lstm[l].weight);
        mn_optim_touch(o->lstm[l].bias);
    }
    mn_linear_init(&o->head, H, 1, true, 0.01f, rng);
    mnt_fill_(o->head.weight, 0.0f);
    mn_data(o->head.weight)[0] = -0.01f;
}

void lopt_lstm_params(mn_lopt *o, mn_params *w) {
    char name[64];
    for (int l = 0; l < o->cfg.lstm_layers; l++) {
        snprintf(name, sizeof name, "lstm.layers.%d", l);
        mn_linear_params(&o->lstm[l], w, name);
    }
    mn_linear_params(&o->head, w, "head");
}

void lopt_lstm_free(mn_lopt *o) {
    for (int l = 0; l < LOPT_MAX_LSTM_LAYERS; l++) mn_linear_free(&o->lstm[l]);
    mn_linear_free(&o->head);
}

/* x [P, in], h, c [P, H] -> h' [P, H]; *c_new */
static mn_tensor *lstm_cell(const mn_linear *gates_layer, int64_t H, mn_tensor *x, mn_tensor *h, mn_tensor *c,
                            mn_tensor **c_new) {
    int64_t P = x->shape[0], K = x->shape[1] + H + 1;
    /* gates in [4, P, H] (one GEMM per gate, the bias as a weight column for an input of ones), so
     * each gate is a contiguous [P, H] block and the cell's element-wise ops run over long rows */
    mn_tensor *in = mn_concat(3, (mn_tensor *[]){x, h, mn_ones(MN_SHAPE(P, 1))}, 1);
    mn_tensor *w = mn_concat(2, (mn_tensor *[]){gates_layer->weight, mn_unsqueeze(gates_layer->bias, 1)}, 1);
    mn_tensor *gates = mn_matmul(in, mn_transpose(mn_reshape(w, MN_SHAPE(4, H, K)), 1, 2));
    mn_tensor *sg = mn_sigmoid(gates); /* one sigmoid over all four blocks (the G block's is unused) */
#define GATE(t, k) mn_reshape(mn_slice(t, 0, k, k + 1, 1), MN_SHAPE(P, H))
    mn_tensor *c1 = mn_add(mn_mul(GATE(sg, GATE_F), c), mn_mul(GATE(sg, GATE_I), mn_tanh(GATE(gates, GATE_G))));
    *c_new = c1;
    return mn_mul(GATE(sg, GATE_O), mn_tanh(c1));
#undef GATE
}

/* x [P, F], h[l], c[l] [P, H] -> u [P] */
mn_tensor *lopt_lstm_forward(const mn_lopt *o, mn_tensor *x, mn_tensor *const *h, mn_tensor *const *c,
                             mn_tensor **new_h, mn_tensor **new_c) {
    int L = o->cfg.lstm_layers;
    int64_t H = o->cfg.lstm_hidden, P = x->shape[0];
    mn_scope sc = mn_scope_begin();
    mn_tensor *in = x;
    for (int l = 0; l < L; l++) {
        new_h[l] = lstm_cell(&o->lstm[l], H, in, h[l], c[l], &new_c[l]);
        in = new_h[l];
        mn_retain(new_h[l]);
        mn_retain(new_c[l]);
    }
    mn_tensor *u = mn_scope_return(sc, mn_reshape(mn_linear_forward(&o->head, in), MN_SHAPE(P)));
    for (int l = 0; l < L; l++) {
        mn_autorelease(new_h[l]);
        mn_autorelease(new_c[l]);
    }
    return u;
}
