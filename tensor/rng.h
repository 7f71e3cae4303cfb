/* Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
 *
 * The generator state is a plain value: the 64-bit seed is the Philox key and
 * the 64-bit counter is the stream position, counted in Philox blocks of four
 * 32-bit words. A fill of n values uses blocks counter, counter+1, ...,
 * counter+ceil(n/4)-1 (element i comes from word i%4 of block counter+i/4) and
 * then advances the counter by ceil(n/4). Every element depends only on
 * (seed, block, word), so fills are parallelised with OpenMP and give identical
 * numbers at any thread count. Leftover words of a partly used block are
 * discarded: two fills of 2 differ from one fill of 4, but fills whose sizes
 * are multiples of 4 concatenate exactly. */
#ifndef MN_RNG_H
#define MN_RNG_H

#include <stdint.h>

#include "tensor/export.h"

typedef struct {
    uint64_t seed;
    uint64_t counter;
} mn_rng;

MN_API mn_rng mn_rng_new(uint64_t seed);

/* Uniform floats in [lo, hi) (requires lo < hi), from the top 24 bits of each
 * word; a result that would round up to hi is replaced by the float below hi. */
MN_API void mn_rng_uniform(mn_rng *g, int64_t n, float *out, float lo, float hi);

/* Normal floats by Box-Muller: each block's words (0,1) and (2,3) each give a
 * pair of normals, so the same counter rule applies: ceil(n/4) blocks. */
MN_API void mn_rng_normal(mn_rng *g, int64_t n, float *out, float mean, float std);

/* Word 0 of the next block; advances the counter by 1. */
MN_API uint32_t mn_rng_u32(mn_rng *g);

/* Unbiased integer in [0, bound) (Lemire's multiply-and-reject on 64 bits).
 * Each attempt uses one block; rejections are rare. bound == 0 returns 0. */
MN_API uint64_t mn_rng_below(mn_rng *g, uint64_t bound);

/* The raw Philox4x32-10 bijection, exposed for known-answer tests. */
MN_API void mn_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#endif
