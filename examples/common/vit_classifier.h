/* A ViT image classifier together with the preprocessing its inputs get, as the training loop of
 * classify.h sees it (vit_pretrain, vit_finetune): the forward pass, and saving as a Hugging Face
 * directory with its preprocessor_config.json. */
#ifndef MN_EXAMPLES_VIT_CLASSIFIER_H
#define MN_EXAMPLES_VIT_CLASSIFIER_H

#include "classify.h"
#include "images.h"

typedef struct {
    mn_vit *vit;     /* ViTForImageClassification */
    img_preproc pre; /* how its input pixels were prepared */
} vit_classifier;

/* The loop's view of v (which must outlive it): forward = mn_vit_forward, save = config.json,
 * model.safetensors and preprocessor_config.json. */
clf_model vit_classifier_model(vit_classifier *v);

#endif
