/* Multi-layer perceptron: Linear layers with an activation between them. */
#include "nn/nn.h"

#include <stdio.h>
#include <stdlib.h>

void mn_mlp_init(mn_mlp *m, int n, const int64_t *sizes, mn_act act, mn_rng *rng) {
    if (n < 1) mn_fatal("mn_mlp_init: need at least one layer, got %d", n);
    m->n_layers = n;
    m->act = act;
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!m->layers) mn_fatal("mn_mlp_init: out of memory");
    for (int i = 0; i < n; i++) mn_linear_init(&m->layers[i], sizes[i], sizes[i + 1], true, 0.0f, rng);
}

/* [..., sizes[0]] -> [..., sizes[n]] */
mn_tensor *mn_mlp_forward(const mn_mlp *m, mn_tensor *x) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *h = x;
    for (int i = 0; i < m->n_layers; i++) {
        h = mn_linear_forward(&m->layers[i], h);
        if (i + 1 < m->n_layers) h = mn_activate(m->act, h);
    }
    return mn_scope_return(sc, h);
}

void mn_mlp_params(mn_mlp *m, mn_params *p, const char *prefix) {
    char name[512];
    for (int i = 0; i < m->n_layers; i++) {
        if (prefix && *prefix) snprintf(name, sizeof name, "%s.layers.%d", prefix, i);
        else snprintf(name, sizeof name, "layers.%d", i);
        mn_linear_params(&m->layers[i], p, name);
    }
}

void mn_mlp_free(mn_mlp *m) {
    for (int i = 0; i < m->n_layers; i++) mn_linear_free(&m->layers[i]);
    free(m->layers);
    *m = (mn_mlp){0};
}
