/* The fused learned-optimizer block kernels (learned_fast_kernels.h) compiled for scalar. */
#define LF_ISA scalar
#include "lopt/learned_fast_kernels.h"
