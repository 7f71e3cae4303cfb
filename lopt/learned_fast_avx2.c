/* The fused learned-optimizer block kernels (learned_fast_kernels.h) compiled for avx2. */
#define LF_ISA avx2
#include "lopt/learned_fast_kernels.h"
