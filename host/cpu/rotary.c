/*
** cpu/rotary.c: CPU reference of rotary: the half-split rotary embedding, its own inverse as backward (kernels/rotary.cu).
** Dims: N rows (tokens), C channels, V vocabulary, B batch, H heads, T sequence, D head dim.
** Gradient contract: activation grads are written (=), parameter grads accumulated (+=).
** Every row is computed in double in its own thread; parameter grads are summed per column in
** row order, and embedding grads per vocabulary row in position order, so no result depends on
** the thread count.
** Saved statistics (rms/layer norm mean and rstd, cross-entropy and attention lse, and the
** cross-entropy losses) are documented f32; these kernels accept any float dtype there, so an f64
** gradcheck can save them in f64 and lose no precision.
*/
#include <math.h>        /* defines: sqrt, log, INFINITY */
#include <stdint.h>      /* defines: int32_t, int64_t */
#include <stdlib.h>      /* defines: malloc, free, qsort */
#include <string.h>      /* defines: memcpy */

#include "cpu/common.h"  /* defines: cpu_ld, cpu_st, cpu_side_ld, cpu_side_st, cpu_check_indices, cpu_thread_buffers */

/* ---------------------------------------------------------------------------------------------
** rotary: per row (n, t, h) of D, the pairs (x[i], x[i+D/2]) rotated by the angle whose cos and
** sin are cos[t,i], sin[t,i]; s = -1 (i0 = 1) rotates back */
const char *sr_cpu_rotary(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1], *cs = c->t[2], *sn = c->t[3];
  const char *e = cpu_check_floats(c, 0, 4);
  if (e) return e;
  int64_t T = x->shape[1], H = x->shape[2], D = x->shape[3], P = D / 2, rows = sr_numel(x) / (D ? D : 1);
  double s = c->i[0] ? -1.0 : 1.0;
  const void *xp = sr_data(x), *cp = sr_data(cs), *sp = sr_data(sn);
  void *op = sr_data(out);
#pragma omp parallel for schedule(static) if (rows * D > CPU_PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t t = (r / H) % T;
    for (int64_t i = 0; i < P; i++) {
      double x1 = cpu_ld(xp, x->dtype, r * D + i), x2 = cpu_ld(xp, x->dtype, r * D + P + i);
      double co = cpu_ld(cp, cs->dtype, t * P + i), si = s * cpu_ld(sp, sn->dtype, t * P + i);
      cpu_st(op, out->dtype, r * D + i, x1 * co + x2 * si);
      cpu_st(op, out->dtype, r * D + P + i, x2 * co - x1 * si);
    }
  }
  return NULL;
}
