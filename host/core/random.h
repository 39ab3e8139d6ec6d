/*
** core/random.h: the deterministic counter-based RNG (host/core/random.c).
*/
#ifndef SR_RANDOM_H
#define SR_RANDOM_H

#include <stdint.h>       /* defines: uint32_t, uint64_t */

#include "core/tensor.h"  /* defines: sr_tensor */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- deterministic counter-based RNG (Philox4x32-10): value i of a stream depends only on
** (seed, counter + i), so results do not depend on thread count or device */
typedef struct sr_rng { uint64_t seed; uint64_t counter; } sr_rng;
sr_rng *sr_global_rng(void);
void sr_rng_philox(uint64_t seed, uint64_t counter, uint32_t out[4]);
void sr_normal_(sr_tensor *x, double mean, double std, sr_rng *g);
void sr_uniform_(sr_tensor *x, double lo, double hi, sr_rng *g);
void sr_randint_(sr_tensor *x, int64_t lo, int64_t hi, sr_rng *g);   /* [lo, hi) */

#ifdef __cplusplus
}
#endif
#endif
