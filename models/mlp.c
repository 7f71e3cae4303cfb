/* The MLP model: nn's mn_mlp with a configuration, Hugging Face-style names
 * (layers.{i}.weight / .bias) and a checkpoint directory like the others'. */
#include "models/models_internal.h"

#include <stdlib.h>

mn_mlp_model *mn_mlp_model_new(const mn_mlp_config *cfg, mn_rng *rng) {
    mn_err err;
    if (!mn_mlp_config_check(cfg, &err)) mn_fatal("mn_mlp_model_new: invalid configuration: %s", err.msg);
    mn_mlp_model *m = calloc(1, sizeof *m);
    if (!m) mn_fatal("mn_mlp_model_new: out of memory");
    m->cfg = *cfg;
    mn_mlp_init(&m->mlp, cfg->n_layers, cfg->sizes, cfg->hidden_act, rng);
    mn_mlp_params(&m->mlp, &m->params, NULL);
    return m;
}

/* x [..., sizes[0]] -> [..., sizes[n]] */
mn_tensor *mn_mlp_model_forward(const mn_mlp_model *m, mn_tensor *x) { return mn_mlp_forward(&m->mlp, x); }

static bool write_config(const void *cfg, const char *path, mn_err *err) { return mn_mlp_config_write(cfg, path, err); }

bool mn_mlp_model_save(const mn_mlp_model *m, const char *dir, mn_err *err) {
    return mn__save_model_dir(&m->params, dir, write_config, &m->cfg, err);
}

bool mn_mlp_model_load(mn_mlp_model *m, const char *path, mn_load_report *report, mn_err *err) {
    mn_load_spec spec = {"MLP", NULL, false, NULL, NULL};
    return mn_params_load(&m->params, path, &spec, report, err);
}

mn_mlp_model *mn_mlp_model_from_pretrained(const char *dir, uint64_t seed, mn_load_report *report, mn_err *err) {
    if (report) *report = (mn_load_report){0};
    mn_mlp_config cfg;
    if (!mn_mlp_config_read(dir, &cfg, err) ||
        !mn__config_fits_checkpoint(dir, mn_mlp_config_matrix_params(&cfg), 0, err)) /* before allocating */
        return NULL;
    mn_rng rng = mn_rng_new(seed);
    mn_mlp_model *m = mn_mlp_model_new(&cfg, &rng);
    if (!mn_mlp_model_load(m, dir, report, err)) {
        mn_mlp_model_free(m);
        return NULL;
    }
    return m;
}

void mn_mlp_model_free(mn_mlp_model *m) {
    if (!m) return;
    mn_params_free(&m->params);
    mn_mlp_free(&m->mlp);
    free(m);
}
