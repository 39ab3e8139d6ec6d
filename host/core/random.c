/*
** core/random.c: the deterministic counter-based RNG (Philox4x32-10): value i of a stream depends
** only on (seed, counter + i), so results depend neither on the thread count nor on the device.
** Values are drawn on the CPU in double and copied into the tensor (host/core/copy.c).
*/
#include <math.h>      /* defines: sqrt, log, cos, sin */

#include "core/copy.h"    /* defines: sr_copy_ */
#include "core/random.h"

void sr_rng_philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1; c3 = (uint32_t)p0; c0 = n0; c2 = n2;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

sr_rng *sr_global_rng(void) {
  static sr_rng g = {.seed = 1337, .counter = 0};
  return &g;
}

static double u01(uint32_t a, uint32_t b) {  /* (0, 1), 53 bits */
  uint64_t x = ((uint64_t)a << 21) ^ (uint64_t)b;
  return ((double)(x & ((1ull << 53) - 1)) + 0.5) / 9007199254740992.0;
}

/* fills a fresh contiguous f64 CPU buffer of n values, then copies into x (any device) */
typedef double (*rng_draw)(const uint32_t r[4], int which, double a, double b);

static void rng_fill(sr_tensor *x, sr_rng *g, rng_draw draw, double a, double b) {
  int64_t n = sr_numel(x);
  int m = sr_scratch_mark();  /* the copy below may fail (a value that int32 cannot hold) */
  sr_tensor *tmp = sr_scratch_push(sr_tensor_new(SR_F64, SR_CPU, x->ndim, x->shape));
  double *p = sr_data(tmp);
  uint64_t seed = g->seed, base = g->counter;
  #pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < (n + 1) / 2; i++) {
    uint32_t r[4];
    sr_rng_philox(seed, base + (uint64_t)i, r);
    p[2 * i] = draw(r, 0, a, b);
    if (2 * i + 1 < n) p[2 * i + 1] = draw(r, 1, a, b);
  }
  g->counter += (uint64_t)(n + 1) / 2;
  sr_copy_(x, tmp);
  sr_scratch_pop(m);
}

static double draw_normal(const uint32_t r[4], int which, double mean, double std) {
  double u1 = u01(r[0], r[1]), u2 = u01(r[2], r[3]);
  double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
  return mean + std * rad * (which ? sin(th) : cos(th));
}
static double draw_uniform(const uint32_t r[4], int which, double lo, double hi) {
  return lo + (hi - lo) * u01(r[2 * which], r[2 * which + 1]);
}
static double draw_int(const uint32_t r[4], int which, double lo, double hi) {
  uint64_t x = ((uint64_t)r[2 * which] << 32) | r[2 * which + 1];
  return lo + (double)(x % (uint64_t)(hi - lo));
}

void sr_normal_(sr_tensor *x, double mean, double std, sr_rng *g) { rng_fill(x, g, draw_normal, mean, std); }
void sr_uniform_(sr_tensor *x, double lo, double hi, sr_rng *g) { rng_fill(x, g, draw_uniform, lo, hi); }
void sr_randint_(sr_tensor *x, int64_t lo, int64_t hi, sr_rng *g) {
  if (hi <= lo) sr_fail("randint: empty range [%lld, %lld)", (long long)lo, (long long)hi);
  if (lo < -((int64_t)1 << 53) || hi > ((int64_t)1 << 53) || (x->dtype == SR_I32 && (lo < INT32_MIN || hi - 1 > INT32_MAX)))
    sr_fail("randint: range [%lld, %lld) does not fit %s", (long long)lo, (long long)hi,
            x->dtype == SR_I32 ? "int32" : "a double's integers (|v| <= 2^53)");
  rng_fill(x, g, draw_int, (double)lo, (double)hi);
}
