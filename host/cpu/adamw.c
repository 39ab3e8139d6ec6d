/*
** cpu/adamw.c: CPU reference of the optimizer kernels: adamw, adamw_multi (adamw on each
** parameter of a list), sumsq_multi and clip_multi (global gradient-norm clipping).
** PyTorch's AdamW (torch.optim.AdamW, single-tensor path), in its order of operations:
**   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
**   p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
** computed in double per element and rounded once to each tensor's dtype (param f32, bf16 or
** f64; grad any float dtype; m and v of one dtype: f32, bf16 (torch's state for a bf16 param;
** the parameter's update uses the unrounded m and v, as torch's fused Adam), or f64 for tests).
** Element-wise, so thread-count free.
** When all four are f32 (the trainer's case) the same operations run in float instead, a plain
** loop that vectorises (double chunk buffers cost twice as much on the CPU path).
*/
#include <math.h>        /* defines: pow, sqrt, sqrtf */
#include <stdint.h>      /* defines: int64_t */
#include <stdlib.h>      /* defines: malloc, free */
#include <string.h>      /* defines: memcpy */
#ifdef __AVX__
#include <immintrin.h>   /* defines: _mm256_sqrt_ps */
#endif

#include "cpu/common.h"  /* defines: cpu_load, cpu_store, cpu_check_floats */

/* all f32 (the trainer's case): the same operations in float, 8 lanes at a time (vector types;
** libm's sqrtf keeps gcc from vectorising a plain loop, errno), the tail in scalar; chunks are
** fixed, so lanes and tail do not depend on the thread count */
static inline cpu_vf8 vsqrt8(cpu_vf8 x) {
#ifdef __AVX__
  return (cpu_vf8)_mm256_sqrt_ps((__m256)x);
#else
  for (int l = 0; l < 8; l++) x[l] = sqrtf(x[l]);
  return x;
#endif
}

static void adamw_f32_run(float *restrict pp, const float *restrict gp, float *restrict mp, float *restrict vp,
                          int64_t n, const float *k) {
  float fb1 = k[0], fb2 = k[1], fc1 = k[2], fc2 = k[3], fdecay = k[4], fstep = k[5], fbc2 = k[6], feps = k[7];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    cpu_vf8 gi = cpu_vf8_ld(gp + i);
    cpu_vf8 mi = fb1 * cpu_vf8_ld(mp + i) + fc1 * gi;
    cpu_vf8 vi = fb2 * cpu_vf8_ld(vp + i) + fc2 * gi * gi;
    cpu_vf8_st(mp + i, mi);
    cpu_vf8_st(vp + i, vi);
    cpu_vf8_st(pp + i, cpu_vf8_ld(pp + i) * fdecay - fstep * mi / (vsqrt8(vi) / fbc2 + feps));
  }
  for (; i < n; i++) {
    float gi = gp[i];
    float mi = fb1 * mp[i] + fc1 * gi;
    float vi = fb2 * vp[i] + fc2 * gi * gi;
    mp[i] = mi;
    vp[i] = vi;
    pp[i] = pp[i] * fdecay - fstep * mi / (sqrtf(vi) / fbc2 + feps);
  }
}

static void adamw_f32(float *pp, const float *gp, float *mp, float *vp, int64_t n, double b1, double b2, double eps,
                      double step_size, double bc2_sqrt, double decay) {
  const float k[8] = {(float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2),
                      (float)decay, (float)step_size, (float)bc2_sqrt, (float)eps};
  const int64_t chunk = 8192;
  int64_t nch = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 16) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    int64_t i0 = ch * chunk, len = n - i0 < chunk ? n - i0 : chunk;
    adamw_f32_run(pp + i0, gp + i0, mp + i0, vp + i0, len, k);
  }
}

/* adamw: param, grad, m, v all contiguous with the same numel */
const char *sr_cpu_adamw(const sr_kcall *c) {
  sr_tensor *p = c->t[0], *g = c->t[1], *m = c->t[2], *v = c->t[3];
  const char *e = cpu_check_floats(c, 0, 4);
  if (e) return e;
  if (m->dtype != v->dtype) return "optimizer state m and v must have one dtype";
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
  if (p->dtype == SR_F32 && g->dtype == SR_F32 && m->dtype == SR_F32 && v->dtype == SR_F32) {
    adamw_f32((float *)sr_data(p), (const float *)sr_data(g), (float *)sr_data(m), (float *)sr_data(v), n, b1, b2, eps,
              step_size, bc2_sqrt, decay);
    return NULL;
  }
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

/* adamw_multi: list = (param, grad, m, v) per parameter; each runs adamw itself, so the update
** is adamw's bit for bit */
const char *sr_cpu_adamw_multi(const sr_kcall *c) {
  if (c->nlist % 4) return "the list must hold (param, grad, m, v) per parameter";
  sr_tensor *sched = c->nt > 0 ? c->t[0] : NULL;
  for (int k = 0; k < c->nlist; k += 4) {
    sr_tensor *const *e = c->list + k;
    if (e[0]->dtype != c->list[0]->dtype || e[1]->dtype != c->list[1]->dtype || e[2]->dtype != c->list[2]->dtype)
      return "every param must have one dtype, every grad one dtype, every state one dtype";
    sr_kcall one = {.t = {e[0], e[1], e[2], e[3], sched}, .nt = 5, .i = {c->i[0]}};
    memcpy(one.f, c->f, sizeof one.f);
    const char *err = sr_cpu_adamw(&one);
    if (err) return err;
  }
  return NULL;
}

/* sumsq_multi: per tensor, chunk sums in double added in chunk order (thread-count free) */
const char *sr_cpu_sumsq_multi(const sr_kcall *c) {
  sr_tensor *out = c->t[0];
  const char *e = cpu_check_floats(c, 0, 1);
  if (e) return e;
  double total = 0;
  for (int k = 0; k < c->nlist; k++) {
    const sr_tensor *x = c->list[k];
    if ((e = cpu_check_dtype(x, k + 2, false))) return e;
    int64_t n = sr_numel(x), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
    double *part = malloc((size_t)(nch > 0 ? nch : 1) * sizeof(double));
    if (!part) return CPU_OOM;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t ch = 0; ch < nch; ch++) {
      double b[CPU_CHUNK], s = 0;
      int64_t i0 = ch * CPU_CHUNK, len = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
      cpu_load(x, x->offset + i0, len, b);
      for (int64_t j = 0; j < len; j++) s += b[j] * b[j];
      part[ch] = s;
    }
    for (int64_t ch = 0; ch < nch; ch++) total += part[ch];
    free(part);
  }
  cpu_st(sr_data(out), out->dtype, 0, total);
  return NULL;
}

/* clip_multi: scale = min(1, max_norm / (sqrt(sumsq) + eps)); NaN stays NaN (as torch's clamp) */
const char *sr_cpu_clip_multi(const sr_kcall *c) {
  const sr_tensor *ss = c->t[0];
  const char *e = cpu_check_floats(c, 0, 1);
  if (e) return e;
  double scale = c->f[0] / (sqrt(cpu_ld(sr_data(ss), ss->dtype, 0)) + c->f[1]);
  if (scale > 1) scale = 1;
  if (scale == 1) return NULL;
  for (int k = 0; k < c->nlist; k++) {
    sr_tensor *x = c->list[k];
    if ((e = cpu_check_dtype(x, k + 2, false))) return e;
    int64_t n = sr_numel(x), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
    for (int64_t ch = 0; ch < nch; ch++) {
      double b[CPU_CHUNK];
      int64_t i0 = ch * CPU_CHUNK, len = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
      cpu_load(x, x->offset + i0, len, b);
      for (int64_t j = 0; j < len; j++) b[j] *= scale;
      cpu_store(x, x->offset + i0, len, b);
    }
  }
  return NULL;
}
