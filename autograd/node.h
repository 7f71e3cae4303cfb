/* The record an op leaves on its result, and how ops make one (internal). */
#ifndef MN_NODE_H
#define MN_NODE_H

#include "autograd/autograd.h"

typedef struct mn_node mn_node;

/* Computes gin[i] (the gradient for input i, same shape as the input) for every
 * i where node->need[i]; leaves the others NULL. Written with mn_* ops so it
 * can itself be recorded. out is the op's result, gout its gradient. */
typedef void (*mn_backward_fn)(mn_node *node, mn_tensor *out, mn_tensor *gout, mn_tensor **gin);

struct mn_node {
    const char *op;
    mn_backward_fn backward;
    int n_in;
    mn_tensor **in;        /* retained */
    uint32_t *in_version;  /* storage versions when recorded */
    bool *need;            /* set by the engine before backward runs */
    uint32_t out_version;
    mn_tensor *saved;      /* one extra retained tensor (e.g. an index), or NULL */
    int64_t iarg[2 * MN_MAX_DIMS + 4];
    float farg[4];
    bool freed;            /* graph released by a backward without MN_RETAIN_GRAPH */
    void *ctx;             /* op-owned data freed with the node (mn_recompute's recipe), or NULL */
    void (*ctx_free)(void *ctx);
};

/* Records op on out when grad mode is on and some input requires grad;
 * returns the node (to fill iarg/farg/saved) or NULL when nothing is recorded. */
mn_node *mn_record(mn_tensor *out, const char *op, mn_backward_fn backward, int n_in, mn_tensor *const *in);

#endif
