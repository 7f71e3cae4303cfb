/* Task families on the library's models (mlp, vit, bert, mixed with '+') and the quadratic family by
 * name. A family names one task per seed, from that seed alone, so resuming re-creates the same tasks. */
#include "meta/meta_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_MLP, KIND_VIT, KIND_BERT, N_KINDS };
static const char *const kind_names[N_KINDS] = {"mlp", "vit", "bert"};

typedef struct {
    mn_meta_family base;
    mn_meta_data *data;
    int n_kinds, kinds[N_KINDS]; /* drawn equally often */
    int image_size;              /* MLPs: 14, 28, or 0: either, drawn per task */
    int n_widths;
    int64_t widths[8];           /* MLP hidden widths, one drawn per layer */
} model_family;

static mn_meta_task *must(mn_meta_task *t, const char *family, const mn_err *err) {
    if (!t) mn_fatal("%s family: %s", family, err->msg); /* the data was readable when the family was made */
    return t;
}

static mn_meta_task *mlp_sample(const model_family *f, mn_rng *g) {
    static const mn_act acts[3] = {MN_ACT_RELU, MN_ACT_TANH, MN_ACT_SIGMOID};
    int image = f->image_size ? f->image_size : (mn_rng_below(g, 2) ? 28 : 14);
    mn_meta_mlp_config c = {.n_layers = 2 + (int)mn_rng_below(g, 2)};
    c.sizes[0] = (int64_t)image * image;
    for (int l = 1; l < c.n_layers; l++) c.sizes[l] = f->widths[mn_rng_below(g, (uint64_t)f->n_widths)];
    c.sizes[c.n_layers] = 10;
    c.act = acts[mn_rng_below(g, 3)];
    c.batch = 64 + (int)mn_rng_below(g, 65);
    mn_err err;
    return must(mn_meta_mlp_task(f->data, &c, &err), "mlp", &err);
}

/* smaller than the evaluation ViTs, which stay held out */
static mn_meta_task *vit_sample(const model_family *f, mn_rng *g) {
    static const int dims[3] = {16, 32, 48};
    bool small = mn_rng_below(g, 2);
    mn_meta_vit_config c = {.image = small ? 14 : 28, .patch = small ? 2 : 7, .dim = dims[mn_rng_below(g, 3)]};
    c.depth = 1 + (int)mn_rng_below(g, 2);
    c.heads = 1 + (int)mn_rng_below(g, 2);
    c.mlp_dim = 2 * c.dim;
    c.batch = 32 + (int)mn_rng_below(g, 33);
    mn_err err;
    return must(mn_meta_vit_task(f->data, &c, &err), "vit", &err);
}

/* smaller than bert-tiny, which stays held out */
static mn_meta_task *bert_sample(const model_family *f, mn_rng *g) {
    static const int widths[3] = {32, 48, 64};
    mn_meta_bert_config c = {.hidden = widths[mn_rng_below(g, 3)], .heads = 2, .vocab = 1024, .len = 32};
    c.layers = 1 + (int)mn_rng_below(g, 2);
    c.intermediate = 4 * c.hidden;
    c.batch = 16 + (int)mn_rng_below(g, 17);
    mn_err err;
    return must(mn_meta_bert_task(f->data, &c, &err), "bert", &err);
}

static mn_meta_task *family_sample(const mn_meta_family *base, uint64_t seed) {
    const model_family *f = (const model_family *)base;
    mn_rng g = mn_rng_new(seed ^ 0x5a3b1e00d15ea5e5ull);
    int kind = f->kinds[f->n_kinds > 1 ? mn_rng_below(&g, (uint64_t)f->n_kinds) : 0];
    return kind == KIND_MLP ? mlp_sample(f, &g) : kind == KIND_VIT ? vit_sample(f, &g) : bert_sample(f, &g);
}

static void family_free(mn_meta_family *f) { free(f); }

/* "16,32,64" -> widths; false and err unless it is 1-8 integers in [1, 4096] */
static bool parse_widths(const char *s, int64_t *widths, int *n, mn_err *err) {
    *n = 0;
    for (const char *p = s;;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 1 || w > 4096 || *n == 8 || (*end && *end != ','))
            return mn_err_set(err, "mlp family: widths \"%s\": expected 1 to 8 comma-separated integers in [1, 4096]", s);
        widths[(*n)++] = w;
        if (!*end) return true;
        p = end + 1;
    }
}

/* Reads what the kinds need now, so sampling cannot fail later. */
static bool load_data(const model_family *f, mn_err *err) {
    mn_tensor *x, *y;
    for (int k = 0; k < f->n_kinds; k++) {
        if (f->kinds[k] == KIND_BERT) {
            mn_meta_bert_config c = {.hidden = 32, .layers = 1, .heads = 2, .intermediate = 128, .batch = 16,
                                     .vocab = 1024, .len = 32};
            mn_meta_task *t = mn_meta_bert_task(f->data, &c, err); /* builds and caches the corpus */
            if (!t) return false;
            mn_meta_task_free(t);
            continue;
        }
        for (int s = 14; s <= 28; s += 14)
            if ((f->kinds[k] == KIND_VIT || !f->image_size || f->image_size == s) &&
                (!mn_meta_data_images(f->data, s, true, &x, &y, err) ||
                 !mn_meta_data_images(f->data, s, false, &x, &y, err)))
                return false;
    }
    return true;
}

mn_meta_family *mn_meta_family_new(const char *name, mn_meta_data *d, int image_size, const char *widths, mn_err *err) {
    if (!strcmp(name, "quadratic")) return mn_meta_quadratic_family(10, 100);
    model_family *f = calloc(1, sizeof *f);
    if (!f) mn_fatal("mn_meta_family_new: out of memory");
    f->data = d;
    f->image_size = image_size;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", name);
    size_t n = strlen(name);
    bool ok = n > 0 && n < sizeof buf && name[0] != '+' && name[n - 1] != '+' && !strstr(name, "++");
    for (char *part = strtok(buf, "+"); ok && part; part = strtok(NULL, "+")) {
        int k = 0;
        while (k < N_KINDS && strcmp(part, kind_names[k])) k++;
        for (int j = 0; j < f->n_kinds && k < N_KINDS; j++) ok &= f->kinds[j] != k;
        ok &= k < N_KINDS;
        if (ok) f->kinds[f->n_kinds++] = k;
    }
    if (!ok || f->n_kinds == 0) {
        free(f);
        return mn_err_set(err, "unknown task family \"%s\" (mlp, vit, bert, joined by '+', or quadratic)", name), NULL;
    }
    if (image_size != 0 && image_size != 14 && image_size != 28) {
        free(f);
        return mn_err_set(err, "mlp family: image size %d (14, 28, or 0 for both)", image_size), NULL;
    }
    if (!parse_widths(widths ? widths : "16,32,64", f->widths, &f->n_widths, err) || !load_data(f, err)) {
        free(f);
        return NULL;
    }
    /* the name a resumed run is checked against: "mlp:14" (with ":W1,W2,..." unless the default widths), then
     * "+vit", "+bert" */
    int len = 0, cap = (int)sizeof f->base.name;
    for (int k = 0; k < f->n_kinds && len < cap; k++) {
        len += snprintf(f->base.name + len, (size_t)(cap - len), "%s%s", k ? "+" : "", kind_names[f->kinds[k]]);
        if (f->kinds[k] != KIND_MLP || len >= cap) continue;
        len += snprintf(f->base.name + len, (size_t)(cap - len), ":%s",
                        image_size == 14 ? "14" : image_size == 28 ? "28" : "14+28");
        bool default_widths = f->n_widths == 3 && f->widths[0] == 16 && f->widths[1] == 32 && f->widths[2] == 64;
        for (int i = 0; !default_widths && i < f->n_widths && len < cap; i++)
            len += snprintf(f->base.name + len, (size_t)(cap - len), "%s%lld", i ? "," : ":", (long long)f->widths[i]);
    }
    f->base.sample = family_sample;
    f->base.free = family_free;
    return &f->base;
}
