/* Helpers shared by the files of models/ (not public API). */
#ifndef MN_MODELS_INTERNAL_H
#define MN_MODELS_INTERNAL_H

#include "models/models.h"

#include <jansson.h>

/* dir + "/" + name into buf; false if it does not fit. */
bool mn__path_join(char *buf, size_t n, const char *dir, const char *name);
bool mn__is_dir(const char *path);
/* path itself, or path/config.json when path is a directory (into buf). */
const char *mn__config_path(const char *path, char *buf, size_t n);

/* Reads and parses a JSON object file; NULL and err naming the file (and line) on failure. */
json_t *mn__json_read_object(const char *path, mn_err *err);
/* Serialises (sorted keys, 2-space indent, as transformers writes) and writes atomically. */
bool mn__json_write(json_t *root, const char *path, mn_err *err);

/* Saves a model directory: dir/config.json by write_config, then dir/model.safetensors. */
bool mn__save_model_dir(const mn_params *params, const char *dir,
                        bool (*write_config)(const void *cfg, const char *path, mn_err *err), const void *cfg,
                        mn_err *err);

/* False + err (naming both counts) when a config's model needs more numbers (need: its weight
 * matrices, a lower bound) than the checkpoint at path holds plus allowance (what a load may
 * initialise itself), or when there is no checkpoint there; reads only the headers. */
bool mn__config_fits_checkpoint(const char *path, double need, double allowance, mn_err *err);

/* N(0, std) leaf that requires grad, caller-owned (as nn's layer parameters). */
mn_tensor *mn__model_param_normal(mn_rng *rng, int ndim, const int64_t *shape, float std);
mn_tensor *mn__model_param_zeros(int ndim, const int64_t *shape);

#endif
