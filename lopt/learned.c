/* Learned optimizers: the config, the optimizer object (weights and fixed random features), the
 * per-coordinate input features (the gradient preprocessing of Andrychowicz et al. 2016, optionally
 * with Adam-like moment features), the per-task state, and the step that ties the kinds together.
 * optim sits above nn for learned optimizers.
 *
 * A step flattens and concatenates every tensor's gradient into one vector of P coordinates,
 * computes all features and runs the network once over all of them, then splits the update back
 * into the tensors' shapes. */
#include "lopt/formulas.h"
#include "lopt/learned_internal.h"
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) mn_fatal("learned optimizer: out of memory");
    return p;
}

/* ---- kinds and config ------------------------------------------------------------------------ */

static const char *const kind_names[] = {"lstm", "mnemosyne-c", "mnemosyne-t"};

const char *mn_lopt_kind_name(mn_lopt_kind kind) {
    return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

bool mn_lopt_kind_parse(const char *name, mn_lopt_kind *out) {
    for (int k = 0; name && k < 3; k++)
        if (!strcmp(name, kind_names[k])) {
            *out = (mn_lopt_kind)k;
            return true;
        }
    return false;
}

mn_lopt_config mn_lopt_default_config(mn_lopt_kind kind) {
    if ((unsigned)kind > MN_LOPT_MNEMOSYNE_T) mn_fatal("mn_lopt_default_config: unknown kind %d", (int)kind);
    return (mn_lopt_config){
        .kind = kind,
        .precond_p = 10.0f,
        .extended = kind == MN_LOPT_MNEMOSYNE_T,
        .ext_beta1 = 0.9f, .ext_beta2 = 0.999f, .ext_eps = 1e-8f,
        .lstm_layers = 2, .lstm_hidden = 20, .lstm_out_scale = 0.1f,
        .dim = 8, .layers = 1, .heads = 1, .qk_dim = 8, .features = 8, .ffn_dim = 32,
        .tau = 0.02f, .learn_tau = false, .cam_eps = 1e-6f, .ln_eps = 1e-5f,
        .alpha = 1e-3f, .beta = 1e-3f,
        .chunk = 32, .max_meta = 64, .hpe_heads = 1, .hpe_features = 8, .hpe_ffn_dim = 32, .head_hidden = 16,
    };
}

#define FIELD(name, type, lo, hi, lo_open, hi_open) \
    {#name, type, offsetof(mn_lopt_config, name), lo, hi, lo_open, hi_open}
const lopt_config_field lopt_config_fields[] = {
    FIELD(precond_p, LOPT_FLOAT, 0, 40, true, false),
    FIELD(extended, LOPT_BOOL, 0, 1, false, false),
    FIELD(ext_beta1, LOPT_FLOAT, 0, 1, false, true),
    FIELD(ext_beta2, LOPT_FLOAT, 0, 1, false, true),
    FIELD(ext_eps, LOPT_FLOAT, 0, 1, true, false),
    FIELD(lstm_layers, LOPT_INT, 1, LOPT_MAX_LSTM_LAYERS, false, false),
    FIELD(lstm_hidden, LOPT_INT, 1, 4096, false, false),
    FIELD(lstm_out_scale, LOPT_FLOAT, 0, 1e3, true, false),
    FIELD(dim, LOPT_INT, 2, 1024, false, false),
    FIELD(layers, LOPT_INT, 1, LOPT_MAX_CAM_LAYERS, false, false),
    FIELD(heads, LOPT_INT, 1, 64, false, false),
    FIELD(qk_dim, LOPT_INT, 1, 1024, false, false),
    FIELD(features, LOPT_INT, 1, 4096, false, false),
    FIELD(ffn_dim, LOPT_INT, 1, 65536, false, false),
    FIELD(tau, LOPT_FLOAT, 0, 50, true, false),
    FIELD(learn_tau, LOPT_BOOL, 0, 1, false, false),
    FIELD(cam_eps, LOPT_FLOAT, 0, 1, false, false),
    FIELD(ln_eps, LOPT_FLOAT, 0, 1, true, false),
    FIELD(alpha, LOPT_FLOAT, 0, 1e3, true, false),
    FIELD(beta, LOPT_FLOAT, -1e3, 1e3, false, false),
    FIELD(chunk, LOPT_INT, 2, 65536, false, false),
    FIELD(max_meta, LOPT_INT, 1, 1 << 20, false, false),
    FIELD(hpe_heads, LOPT_INT, 1, 64, false, false),
    FIELD(hpe_features, LOPT_INT, 1, 4096, false, false),
    FIELD(hpe_ffn_dim, LOPT_INT, 1, 65536, false, false),
    FIELD(head_hidden, LOPT_INT, 2, 65536, false, false),
};
#undef FIELD
const int lopt_n_config_fields = (int)(sizeof lopt_config_fields / sizeof lopt_config_fields[0]);

double lopt_config_get(const mn_lopt_config *cfg, const lopt_config_field *f) {
    const char *p = (const char *)cfg + f->offset;
    switch (f->type) {
    case LOPT_INT: return *(const int *)p;
    case LOPT_FLOAT: return *(const float *)p;
    case LOPT_BOOL: return *(const bool *)p ? 1 : 0;
    }
    return 0;
}

void lopt_config_set(mn_lopt_config *cfg, const lopt_config_field *f, double v) {
    char *p = (char *)cfg + f->offset;
    switch (f->type) {
    case LOPT_INT: *(int *)p = (int)v; break;
    case LOPT_FLOAT: *(float *)p = (float)v; break;
    case LOPT_BOOL: *(bool *)p = v != 0; break;
    }
}

bool lopt_config_equal(const mn_lopt_config *a, const mn_lopt_config *b) {
    if (a->kind != b->kind) return false;
    for (int i = 0; i < lopt_n_config_fields; i++)
        if (lopt_config_get(a, &lopt_config_fields[i]) != lopt_config_get(b, &lopt_config_fields[i])) return false;
    return true;
}

const char *lopt_config_problem(const mn_lopt_config *cfg) {
    static _Thread_local char why[256];
    if ((unsigned)cfg->kind > MN_LOPT_MNEMOSYNE_T) return "unknown kind";
    for (int i = 0; i < lopt_n_config_fields; i++) {
        const lopt_config_field *f = &lopt_config_fields[i];
        double v = lopt_config_get(cfg, f);
        bool bad = !(v >= f->lo && v <= f->hi) || (f->lo_open && v == f->lo) || (f->hi_open && v == f->hi);
        if (bad) {
            snprintf(why, sizeof why, "%s = %g is out of range (expected %g %s %s %s %g)", f->key, v, f->lo,
                     f->lo_open ? "<" : "<=", f->key, f->hi_open ? "<" : "<=", f->hi);
            return why;
        }
    }
    if (cfg->kind != MN_LOPT_LSTM && cfg->dim % cfg->heads != 0) {
        snprintf(why, sizeof why, "dim = %d is not a multiple of heads = %d", cfg->dim, cfg->heads);
        return why;
    }
    if (cfg->kind == MN_LOPT_MNEMOSYNE_T && cfg->dim % cfg->hpe_heads != 0) {
        snprintf(why, sizeof why, "dim = %d is not a multiple of hpe_heads = %d", cfg->dim, cfg->hpe_heads);
        return why;
    }
    return NULL;
}

int lopt_n_features(const mn_lopt_config *cfg) { return cfg->extended ? 4 : 2; }

/* m^/sqrt(v^+eps) (Adam's direction) with the extended features, else the sign feature */
int lopt_carrier_feature(const mn_lopt_config *cfg) { return cfg->extended ? 3 : 1; }

/* ---- the optimizer object ------------------------------------------------------------------- */

mn_lopt *lopt_create(const mn_lopt_config *cfg, uint64_t seed) {
    mn_lopt *o = xcalloc(1, sizeof *o);
    o->cfg = *cfg;
    o->seed = seed;
    mn_rng rng = mn_rng_new(seed);
    if (cfg->kind == MN_LOPT_LSTM) {
        lopt_lstm_init(o, &rng);
        lopt_lstm_params(o, &o->weights);
    } else {
        lopt_mnemosyne_init(o, &rng);
        lopt_mnemosyne_params(o, &o->weights, &o->features);
    }
    return o;
}

mn_lopt *mn_lopt_new_config(const mn_lopt_config *cfg, uint64_t seed) {
    const char *why = lopt_config_problem(cfg);
    if (why) mn_fatal("mn_lopt_new_config (%s): %s", mn_lopt_kind_name(cfg->kind), why);
    return lopt_create(cfg, seed);
}

mn_lopt *mn_lopt_new(mn_lopt_kind kind, uint64_t seed) {
    mn_lopt_config cfg = mn_lopt_default_config(kind);
    return mn_lopt_new_config(&cfg, seed);
}

mn_lopt *mn_lopt_clone(const mn_lopt *o) {
    mn_lopt *c = lopt_create(&o->cfg, o->seed);
    mn_lopt_copy_weights(c, o);
    for (int i = 0; i < o->features.count; i++) mnt_copy_(c->features.items[i].tensor, o->features.items[i].tensor);
    return c;
}

void mn_lopt_copy_weights(mn_lopt *dst, const mn_lopt *src) {
    if (!lopt_config_equal(&dst->cfg, &src->cfg) || dst->weights.count != src->weights.count)
        mn_fatal("mn_lopt_copy_weights: the two optimizers have different configs (%s, %s)",
                 mn_lopt_kind_name(dst->cfg.kind), mn_lopt_kind_name(src->cfg.kind));
    for (int i = 0; i < src->weights.count; i++) mnt_copy_(dst->weights.items[i].tensor, src->weights.items[i].tensor);
}

int64_t mn_lopt_weight_count(const mn_lopt *o) {
    int64_t n = 0;
    for (int i = 0; i < o->weights.count; i++) n += mn_numel(o->weights.items[i].tensor);
    return n;
}

void mn_lopt_get_flat(const mn_lopt *o, float *out) {
    for (int i = 0; i < o->weights.count; i++) {
        mn_tensor *w = o->weights.items[i].tensor;
        memcpy(out, mn_data(w), sizeof(float) * (size_t)mn_numel(w));
        out += mn_numel(w);
    }
}

void mn_lopt_set_flat(mn_lopt *o, const float *in) {
    for (int i = 0; i < o->weights.count; i++) {
        mn_tensor *w = o->weights.items[i].tensor;
        memcpy(mn_data(w), in, sizeof(float) * (size_t)mn_numel(w));
        mn__bump_version(w);
        in += mn_numel(w);
    }
}

const mn_lopt_config *mn_lopt_get_config(const mn_lopt *o) { return &o->cfg; }
const mn_params *mn_lopt_weights(const mn_lopt *o) { return &o->weights; }

void mn_lopt_free(mn_lopt *o) {
    if (!o) return;
    if (o->cfg.kind == MN_LOPT_LSTM) lopt_lstm_free(o);
    else lopt_mnemosyne_free(o);
    mn_params_free(&o->weights);
    mn_params_free(&o->features);
    free(o);
}

/* ---- input features ---------------------------------------------------------------------------- */

/* g [P] -> [P, 2] */
mn_tensor *lopt_preprocess(mn_tensor *g, float p) {
    mn_scope sc = mn_scope_begin();
    float threshold = expf(-p);
    mn_tensor *abs_g = mn_abs(g);
    mn_tensor *large = mn_ge(abs_g, mn_scalar(threshold));
    /* the clamp keeps log away from 0 where the other branch is taken, so no inf/NaN leaks into
     * the unused branch's gradient */
    mn_tensor *log_part = mn_scale(mn_log(mn_clamp(abs_g, threshold, INFINITY)), 1.0f / p);
    mn_tensor *f1 = mn_where(large, log_part, mn_scalar(-1.0f));
    mn_tensor *f2 = mn_where(large, mn_sign(g), mn_scale(g, expf(p)));
    return mn_scope_return(sc, mn_stack(2, (mn_tensor *[]){f1, f2}, 1));
}

/* g, m, v [P], bc1, bc2 scalars or [P] -> [P, 2]; *new_m, *new_v [P] */
mn_tensor *lopt_extended(mn_tensor *g, mn_tensor *m, mn_tensor *v, mn_tensor *bc1, mn_tensor *bc2,
                         const mn_lopt_config *cfg, mn_tensor **new_m, mn_tensor **new_v) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *m1 = mn_add(mn_scale(m, cfg->ext_beta1), mn_scale(g, 1.0f - cfg->ext_beta1));
    mn_tensor *v1 = mn_add(mn_scale(v, cfg->ext_beta2), mn_scale(mn_square(g), 1.0f - cfg->ext_beta2));
    /* eps inside the square root: the second derivative stays finite at v = 0 */
    mn_tensor *inv = mn_rsqrt(mn_add_scalar(mn_div(v1, bc2), cfg->ext_eps));
    mn_tensor *f = mn_stack(2, (mn_tensor *[]){mn_mul(g, inv), mn_mul(mn_div(m1, bc1), inv)}, 1);
    mn_retain(m1);
    mn_retain(v1);
    f = mn_scope_return(sc, f);
    *new_m = mn_autorelease(m1);
    *new_v = mn_autorelease(v1);
    return f;
}

/* ---- per-task state ---------------------------------------------------------------------------- */

static const char *const lstm_slot_names[2 * LOPT_MAX_LSTM_LAYERS] = {"lstm0.h", "lstm0.c", "lstm1.h",
                                                                     "lstm1.c", "lstm2.h", "lstm2.c"};
static const char *const cam_slot_names[LOPT_MAX_CAM_LAYERS] = {"cam0.memory", "cam1.memory", "cam2.memory",
                                                               "cam3.memory", "cam4.memory", "cam5.memory"};

int64_t lopt_meta_tokens(int64_t n, int chunk, int max_meta) {
    int64_t n1 = (n + chunk - 1) / chunk, n2 = (n1 + chunk - 1) / chunk;
    int64_t pool = (n2 + max_meta - 1) / max_meta; /* level-2 chunks per meta-token (1 unless n2 > max_meta) */
    int64_t group = (int64_t)chunk * pool;         /* level-1 tokens per meta-token */
    return (n1 + group - 1) / group;
}

static void add_slot(mn_lopt_state *s, const char *name, lopt_rows rows, int axis, int ndim, const int64_t *shape) {
    int k = s->n_slots++;
    s->slot_name[k] = name;
    s->slot_rows[k] = rows;
    s->slot_axis[k] = axis;
    s->slot[k] = mn_retain(mn_zeros(ndim, shape));
}

mn_lopt_state *mn_lopt_state_new(const mn_lopt *o, int n, mn_tensor *const *params) {
    if (n < 1 || !params) mn_fatal("mn_lopt_state_new: need at least one parameter tensor (got %d)", n);
    for (int i = 0; i < n; i++)
        if (!params[i] || params[i]->dtype != MN_F32 || mn_numel(params[i]) == 0)
            mn_fatal("mn_lopt_state_new: parameter %d is %s", i,
                     !params[i] ? "NULL" : params[i]->dtype != MN_F32 ? "not float32" : "empty");
    const mn_lopt_config *cfg = &o->cfg;
    mn_lopt_state *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    lopt_layout *lay = &s->lay;
    lay->n = n;
    lay->numel = xcalloc((size_t)n, sizeof(int64_t));
    lay->offset = xcalloc((size_t)n, sizeof(int64_t));
    lay->meta = xcalloc((size_t)n, sizeof(int64_t));
    lay->meta_offset = xcalloc((size_t)n, sizeof(int64_t));
    s->ndim = xcalloc((size_t)n, sizeof(int));
    s->shape = xcalloc((size_t)n, sizeof *s->shape);
    s->steps = xcalloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++) {
        lay->numel[i] = mn_numel(params[i]);
        lay->offset[i] = lay->total;
        lay->total += lay->numel[i];
        if (lay->total > INT32_MAX) mn_fatal("mn_lopt_state_new: more than 2^31 - 1 coordinates");
        s->ndim[i] = params[i]->ndim;
        memcpy(s->shape[i], params[i]->shape, sizeof(int64_t) * (size_t)params[i]->ndim);
        if (cfg->kind == MN_LOPT_MNEMOSYNE_T) {
            lay->meta[i] = lopt_meta_tokens(lay->numel[i], cfg->chunk, cfg->max_meta);
            lay->meta_offset[i] = lay->total_meta;
            lay->total_meta += lay->meta[i];
        }
    }
    int64_t P = lay->total;
    mn_scope sc = mn_scope_begin();
    if (cfg->kind == MN_LOPT_LSTM) {
        for (int l = 0; l < cfg->lstm_layers; l++) {
            add_slot(s, lstm_slot_names[2 * l], LOPT_ROWS_COORD, 0, 2, (int64_t[]){P, cfg->lstm_hidden});
            add_slot(s, lstm_slot_names[2 * l + 1], LOPT_ROWS_COORD, 0, 2, (int64_t[]){P, cfg->lstm_hidden});
        }
    } else {
        bool per_meta = cfg->kind == MN_LOPT_MNEMOSYNE_T;
        int64_t rows = per_meta ? lay->total_meta : P, H = cfg->heads;
        for (int l = 0; l < cfg->layers; l++)
            add_slot(s, cam_slot_names[l], per_meta ? LOPT_ROWS_META : LOPT_ROWS_COORD, 3, 4,
                     (int64_t[]){H, 2 * (int64_t)cfg->features, cfg->dim / H + 1, rows});
    }
    if (cfg->extended) {
        add_slot(s, "exp_avg", LOPT_ROWS_COORD, 0, 1, &P);
        add_slot(s, "exp_avg_sq", LOPT_ROWS_COORD, 0, 1, &P);
    }
    mn_scope_end(sc);
    return s;
}

void lopt_slot_range(const mn_lopt_state *s, int k, int i, int *axis, int64_t *start, int64_t *stop) {
    bool meta = s->slot_rows[k] == LOPT_ROWS_META;
    *axis = s->slot_axis[k];
    *start = meta ? s->lay.meta_offset[i] : s->lay.offset[i];
    *stop = *start + (meta ? s->lay.meta[i] : s->lay.numel[i]);
}

void mn_lopt_state_set_recompute(mn_lopt_state *s, bool on) { s->recompute = on; }

void mn_lopt_state_detach(mn_lopt_state *s) {
    for (int k = 0; k < s->n_slots; k++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *d = mn_retain(mn_detach(s->slot[k]));
        mn_scope_end(sc);
        mn_release(s->slot[k]);
        s->slot[k] = d;
    }
}

size_t mn_lopt_state_bytes(const mn_lopt_state *s) {
    size_t bytes = 0;
    for (int k = 0; k < s->n_slots; k++) bytes += (size_t)mn_numel(s->slot[k]) * sizeof(float);
    return bytes;
}

int64_t mn_lopt_state_steps(const mn_lopt_state *s) { return s->n_apply; }

void mn_lopt_state_free(mn_lopt_state *s) {
    if (!s) return;
    for (int k = 0; k < s->n_slots; k++) mn_release(s->slot[k]);
    free(s->lay.numel);
    free(s->lay.offset);
    free(s->lay.meta);
    free(s->lay.meta_offset);
    free(s->ndim);
    free(s->shape);
    free(s->steps);
    free(s);
}

/* ---- the step ------------------------------------------------------------------------------------ */

/* 1 - beta^t per coordinate: a scalar when every tensor is at the same step (t >= 1) */
static mn_tensor *bias_correction(const mn_lopt_state *s, float beta) {
    const lopt_layout *lay = &s->lay;
    bool same = true;
    for (int i = 1; i < lay->n; i++) same &= s->steps[i] == s->steps[0];
#define CORR(t) lopt_bias_correction(beta, t)
    if (same) return mn_scalar(CORR(s->steps[0]));
    mn_tensor *c = mn_empty(MN_SHAPE(lay->total));
    float *d = mn_data(c);
    for (int i = 0; i < lay->n; i++)
        for (int64_t j = 0; j < lay->numel[i]; j++) d[lay->offset[i] + j] = CORR(s->steps[i]);
#undef CORR
    return c;
}

/* g [P] -> delta [P] */
mn_tensor *lopt_step(const mn_lopt *o, const mn_lopt_state *s, mn_tensor *g, mn_tensor **new_slot) {
    const mn_lopt_config *cfg = &o->cfg;
    int64_t P = s->lay.total;
    mn_scope sc = mn_scope_begin();
    mn_tensor *x = lopt_preprocess(g, cfg->precond_p);
    int n_net = s->n_slots; /* slots of the network; the moments come last */
    if (cfg->extended) {
        n_net -= 2;
        mn_tensor *ext = lopt_extended(g, s->slot[n_net], s->slot[n_net + 1], bias_correction(s, cfg->ext_beta1),
                                       bias_correction(s, cfg->ext_beta2), cfg, &new_slot[n_net],
                                       &new_slot[n_net + 1]);
        x = mn_concat(2, (mn_tensor *[]){x, ext}, 1);
    }
    mn_tensor *delta;
    if (cfg->kind == MN_LOPT_LSTM) {
        mn_tensor *h[LOPT_MAX_LSTM_LAYERS], *c[LOPT_MAX_LSTM_LAYERS], *h1[LOPT_MAX_LSTM_LAYERS],
            *c1[LOPT_MAX_LSTM_LAYERS];
        for (int l = 0; l < cfg->lstm_layers; l++) h[l] = s->slot[2 * l], c[l] = s->slot[2 * l + 1];
        mn_tensor *u = lopt_lstm_forward(o, x, h, c, h1, c1);
        for (int l = 0; l < cfg->lstm_layers; l++) new_slot[2 * l] = h1[l], new_slot[2 * l + 1] = c1[l];
        delta = mn_scale(u, cfg->lstm_out_scale);
    } else {
        mn_tensor *out = lopt_mnemosyne_forward(o, &s->lay, x, s->slot, new_slot); /* [P, 2] = [u, s] */
        mn_tensor *u = mn_reshape(mn_slice(out, 1, 0, 1, 1), MN_SHAPE(P));
        mn_tensor *sv = mn_reshape(mn_slice(out, 1, 1, 2, 1), MN_SHAPE(P));
        delta = mn_mul(mn_scale(u, -cfg->alpha), mn_exp(mn_scale(sv, cfg->beta)));
    }
    for (int k = 0; k < s->n_slots; k++) mn_retain(new_slot[k]);
    delta = mn_scope_return(sc, delta);
    for (int k = 0; k < s->n_slots; k++) mn_autorelease(new_slot[k]);
    return delta;
}

/* lopt_step recomputed in the backward pass (mn_recompute): in = [g, slots...], leaves = the weights,
 * out = [delta, new slots...]. The recipe keeps the step counts of its step (the bias corrections). */
typedef struct {
    const mn_lopt *o;
    const mn_lopt_state *s;
    int64_t steps[];
} step_recipe;

static void recomputed_step(const void *ctx, mn_tensor *const *in, mn_tensor **out) {
    const step_recipe *r = ctx;
    mn_lopt_state s = *r->s;
    s.steps = (int64_t *)r->steps;
    for (int k = 0; k < s.n_slots; k++) s.slot[k] = in[1 + k];
    out[0] = lopt_step(r->o, &s, in[0], out + 1);
}

static mn_tensor *recomputed_lopt_step(const mn_lopt *o, const mn_lopt_state *s, mn_tensor *g, mn_tensor **new_slot) {
    size_t size = sizeof(step_recipe) + sizeof(int64_t) * (size_t)s->lay.n;
    step_recipe *r = xcalloc(1, size);
    r->o = o;
    r->s = s;
    memcpy(r->steps, s->steps, sizeof(int64_t) * (size_t)s->lay.n);
    mn_tensor *in[1 + LOPT_MAX_SLOTS], *out[1 + LOPT_MAX_SLOTS], **leaves = xcalloc((size_t)o->weights.count, sizeof *leaves);
    in[0] = g;
    for (int k = 0; k < s->n_slots; k++) in[1 + k] = s->slot[k];
    for (int j = 0; j < o->weights.count; j++) leaves[j] = o->weights.items[j].tensor;
    mn_recompute(recomputed_step, r, size, 1 + s->n_slots, in, o->weights.count, leaves, 1 + s->n_slots, out);
    free(leaves);
    free(r);
    for (int k = 0; k < s->n_slots; k++) new_slot[k] = out[1 + k];
    return out[0];
}

static void check_step_args(const mn_lopt *o, const mn_lopt_state *s, int n, mn_tensor *const *params,
                            mn_tensor *const *grads) {
    if (!lopt_config_equal(&o->cfg, &s->cfg))
        mn_fatal("mn_lopt_apply: the state was made for a %s optimizer of another config",
                 mn_lopt_kind_name(s->cfg.kind));
    if (n != s->lay.n) mn_fatal("mn_lopt_apply: %d tensors, but the state was made for %d", n, s->lay.n);
    for (int i = 0; i < n; i++) {
        char a[96], b[96];
        mn_tensor *p = params[i], *g = grads[i];
        if (!p || !g) mn_fatal("mn_lopt_apply: %s %d is NULL (every tensor needs a gradient)", p ? "grad" : "param", i);
        bool same = p->ndim == s->ndim[i] && !memcmp(p->shape, s->shape[i], sizeof(int64_t) * (size_t)p->ndim);
        if (!same || p->dtype != MN_F32)
            mn_fatal("mn_lopt_apply: parameter %d is %s, but the state was made for another shape", i,
                     mn_shape_str(p, a));
        if (!mn_same_shape(g, p) || g->dtype != MN_F32)
            mn_fatal("mn_lopt_apply: grad %d %s does not match its parameter %s", i, mn_shape_str(g, a),
                     mn_shape_str(p, b));
    }
}

/* Flattens and concatenates the gradients -> [P] */
static mn_tensor *concat_flat(int n, mn_tensor *const *ts) {
    mn_tensor **flat = xcalloc((size_t)n, sizeof *flat);
    for (int i = 0; i < n; i++) flat[i] = mn_reshape(ts[i], MN_SHAPE(-1));
    mn_tensor *g = n == 1 ? flat[0] : mn_concat(n, flat, 0);
    free(flat);
    return g;
}

void mn_lopt_apply(const mn_lopt *o, mn_lopt_state *s, int n, mn_tensor *const *params, mn_tensor *const *grads,
                   float lr_scale, mn_tensor **new_params) {
    check_step_args(o, s, n, params, grads);
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < n; i++) s->steps[i]++;
    s->n_apply++;
    mn_tensor *new_slot[LOPT_MAX_SLOTS];
    /* without a graph to record, the fused path (learned_fast.c) advances the state itself */
    bool fast = lopt_fast_usable(o, s, n, grads);
    mn_tensor *delta = fast          ? lopt_fast_step(o, s, n, grads, NULL)
                       : s->recompute ? recomputed_lopt_step(o, s, concat_flat(n, grads), new_slot)
                                      : lopt_step(o, s, concat_flat(n, grads), new_slot);
    for (int i = 0; i < n; i++) {
        int64_t off = s->lay.offset[i];
        mn_tensor *d = mn_reshape(mn_slice(delta, 0, off, off + s->lay.numel[i], 1), s->ndim[i], s->shape[i]);
        new_params[i] = mn_retain(mn_add(params[i], mn_scale(d, lr_scale)));
    }
    for (int k = 0; k < s->n_slots && !fast; k++) {
        mn_retain(new_slot[k]);
        mn_release(s->slot[k]);
        s->slot[k] = new_slot[k];
    }
    mn_scope_end(sc);
    for (int i = 0; i < n; i++) mn_autorelease(new_params[i]);
}
