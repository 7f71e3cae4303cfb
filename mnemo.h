/* mnemo: train neural networks, and learned optimizers, on the CPU.
 * The umbrella header: include this and link with $(pkg-config --libs mnemo). */
#ifndef MNEMO_H
#define MNEMO_H

#include "tensor/tensor.h"
#include "autograd/autograd.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "lopt/lopt.h"
#include "models/models.h"
#include "data/data.h"
#include "meta/meta.h"

#endif
