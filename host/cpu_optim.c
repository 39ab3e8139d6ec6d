/*
** cpu_optim.c: CPU reference of the optimizer kernels: adamw.
** PyTorch's AdamW (torch.optim.AdamW, single-tensor path), in its order of operations:
**   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
**   p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
** computed in double per element and rounded once to each tensor's dtype (param f32, bf16 or
** f64; grad any float dtype; m and v f32, or f64 for tests). Element-wise, so thread-count free.
*/
#include <math.h>        /* defines: pow, sqrt */
#include <stdint.h>      /* defines: int64_t */

#include "cpu_common.h"  /* defines: cpu_load, cpu_store, cpu_check_floats */

/* adamw: param, grad, m, v all contiguous with the same numel */
const char *sr_cpu_adamw(const sr_kcall *c) {
  sr_tensor *p = c->t[0], *g = c->t[1], *m = c->t[2], *v = c->t[3];
  const char *e = cpu_check_floats(c, 0, 4);
  if (e) return e;
  double lr = c->f[0], b1 = c->f[1], b2 = c->f[2], eps = c->f[3], wd = c->f[4], step = (double)c->i[0];
  if (c->nt > 4 && c->t[4]) {  /* sched {lr, step} */
    const float *sp = (const float *)sr_data(c->t[4]);
    lr = sp[0];
    step = sp[1];
  }
  if (step < 1) return "step must be >= 1";
  double bc1 = 1.0 - pow(b1, step), bc2_sqrt = sqrt(1.0 - pow(b2, step));
  double step_size = lr / bc1, decay = 1.0 - lr * wd;
  int64_t n = sr_numel(p), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double pb[CPU_CHUNK], gb[CPU_CHUNK], mb[CPU_CHUNK], vb[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, len = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_load(p, p->offset + i0, len, pb);
    cpu_load(g, g->offset + i0, len, gb);
    cpu_load(m, m->offset + i0, len, mb);
    cpu_load(v, v->offset + i0, len, vb);
    for (int64_t k = 0; k < len; k++) {
      mb[k] = b1 * mb[k] + (1.0 - b1) * gb[k];
      vb[k] = b2 * vb[k] + (1.0 - b2) * gb[k] * gb[k];
      pb[k] = pb[k] * decay - step_size * mb[k] / (sqrt(vb[k]) / bc2_sqrt + eps);
    }
    cpu_store(p, p->offset + i0, len, pb);
    cpu_store(m, m->offset + i0, len, mb);
    cpu_store(v, v->offset + i0, len, vb);
  }
  return NULL;
}
