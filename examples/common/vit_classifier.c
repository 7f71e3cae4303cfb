#include "vit_classifier.h"

/* pixels [B, C, S, S] -> logits [B, labels] */
static mn_tensor *vit_logits(void *model, mn_tensor *x, mn_rng *dropout) {
    return mn_vit_forward(((vit_classifier *)model)->vit, x, dropout);
}

static bool vit_save_dir(void *model, const char *dir, mn_err *err) {
    vit_classifier *v = model;
    return mn_vit_save(v->vit, dir, err) && img_preproc_write(&v->pre, dir, err);
}

clf_model vit_classifier_model(vit_classifier *v) {
    return (clf_model){v, &v->vit->params, vit_logits, vit_save_dir};
}
