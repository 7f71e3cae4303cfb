/* --keep best: a copy of the weights at the best validation so far. It is saved with every
 * checkpoint (best_model.safetensors beside the model's own files) so that a resumed run keeps
 * the same best, and put back into the model at the run's end. */
#ifndef MN_EXAMPLES_BEST_WEIGHTS_H
#define MN_EXAMPLES_BEST_WEIGHTS_H

#include "mnemo.h"
#include "trainer.h"

typedef struct {
    const mn_params *params;
    trainer_save_model save; /* the model's own files */
    void *model;
    mn_tensor **w;           /* [params->count]; NULL entries until the first offer */
    double metric;           /* the best validation metric offered (higher is better) */
} best_weights;

/* metric: the best so far (-1 for a fresh run; the resumed checkpoint's otherwise). */
void best_init(best_weights *b, const mn_params *params, trainer_save_model save, void *model, double metric);
/* Copies the weights when metric beats the best so far; true if it did. */
bool best_offer(best_weights *b, double metric);
/* True if weights were taken (offered or loaded). */
bool best_have(const best_weights *b);
/* The kept weights into the model (best_have must hold). */
void best_restore(const best_weights *b);
/* A trainer_save_model (ctx = the best_weights): the model's files, then best_model.safetensors. */
bool best_save_with_model(void *ctx, const char *dir, mn_err *err);
/* best_model.safetensors of a checkpoint directory, if it has one (none: no validation before it). */
bool best_load(best_weights *b, const char *dir, mn_err *err);
void best_free(best_weights *b);
/* --keep KEEP with --val-fraction VAL: last, or best with a validation set; false after printing why. */
bool best_keep_option_ok(const char *prog, const char *keep, double val_fraction);

#endif
