/* The fused learned-optimizer block kernels (learned_fast_kernels.h) compiled for avx512. */
#define LF_ISA avx512
#include "lopt/learned_fast_kernels.h"
