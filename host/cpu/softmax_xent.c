/*
** cpu/softmax_xent.c: CPU reference of cross_entropy over logit rows, forward and backward (kernels/softmax_xent.cu).
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
** cross_entropy f32 fast path (contiguous f32 logits, the trainer's case): the row read in
** place, 8 lanes at a time (cpu_vexpf: the same float exp as the general path), in a fixed order
** (lanes, then lanes in order), so the result depends on V only. The exp-sum accumulates in
** float over blocks of CE_BLOCK elements, each block's 8 lanes then added into double. */
#define CE_BLOCK 512

/* max of x[0..V), NaN if any is NaN */
static float ce_row_max(const float *x, int64_t V) {
  cpu_vf8 m = cpu_vf8_splat(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= V; j += 8) {
    cpu_vf8 v = cpu_vf8_ld(x + j);
    m = cpu_vf8_sel((v > m) | (v != v), v, m);
  }
  double mx = -INFINITY;
  for (int l = 0; l < 8; l++) mx = cpu_max(mx, m[l]);
  for (; j < V; j++) mx = cpu_max(mx, x[j]);
  return (float)mx;
}

/* sum over j of exp(x[j] - mx), in double */
static double ce_row_sumexp(const float *x, int64_t V, float mx) {
  double lanes[8] = {0};
  int64_t j = 0;
  while (j + 8 <= V) {
    int64_t end = j + CE_BLOCK < V ? j + CE_BLOCK : V;
    cpu_vf8 s = cpu_vf8_splat(0.0f);
    for (; j + 8 <= end; j += 8) s += cpu_vexpf(cpu_vf8_ld(x + j) - mx);
    for (int l = 0; l < 8; l++) lanes[l] += s[l];
  }
  double sum = 0;
  for (int l = 0; l < 8; l++) sum += lanes[l];
  for (; j < V; j++) sum += cpu_expf(x[j] - mx);
  return sum;
}

/* row n of dlogits = dl * (softmax(logits[n,:]) - onehot(t)), softmax = exp(logits - l); zeros
** when ignored. Each element is read before it is written, so dlogits may be logits itself. */
static void ce_grad_row(sr_tensor *dlogits, const sr_tensor *logits, int64_t n, int64_t V, int64_t t, bool ignored,
                        double l, double dl) {
  if (logits->dtype == SR_F32 && sr_is_contiguous(logits) && dlogits->dtype == SR_F32 && sr_is_contiguous(dlogits)) {
    /* f32 fast path, 8 lanes at a time; lse split into two floats so x - lse keeps nearly double
    ** accuracy; the target's entry recomputed in double from its logit read first */
    const float *x = (const float *)sr_data(logits) + n * V;
    float *d = (float *)sr_data(dlogits) + n * V;
    if (ignored) {
      memset(d, 0, sizeof(float) * (size_t)V);
      return;
    }
    float xt = x[t], dlf = (float)dl, lhi = (float)l, llo = isfinite(l) ? (float)(l - lhi) : 0.0f;
    int64_t j = 0;
    for (; j + 8 <= V; j += 8) cpu_vf8_st(d + j, cpu_vexpf((cpu_vf8_ld(x + j) - lhi) - llo) * dlf);
    for (; j < V; j++) d[j] = cpu_expf((x[j] - lhi) - llo) * dlf;
    d[t] = (float)(dl * cpu_expf((xt - lhi) - llo) - dl);
    return;
  }
  double buf[CPU_CHUNK];
  for (int64_t j0 = 0; j0 < V; j0 += CPU_CHUNK) {
    int64_t len = V - j0 < CPU_CHUNK ? V - j0 : CPU_CHUNK;
    if (ignored) {
      for (int64_t j = 0; j < len; j++) buf[j] = 0;
    } else {
      cpu_load(logits, logits->offset + n * V + j0, len, buf);
      if (logits->dtype == SR_F64)
        for (int64_t j = 0; j < len; j++) buf[j] = dl * cpu_exp(buf[j] - l);
      else
        for (int64_t j = 0; j < len; j++) buf[j] = dl * cpu_expf((float)(buf[j] - l));
      if (t >= j0 && t < j0 + len) buf[t - j0] -= dl;
    }
    cpu_store(dlogits, dlogits->offset + n * V + j0, len, buf);
  }
}

/* ---------------------------------------------------------------------------------------------
** cross_entropy: lse[n] = logsumexp(logits[n,:]); losses[n] = lse[n] - logits[n,target[n]],
** 0 where target == ignore_index. logits [N,V]. Contiguous f32 logits take the fast path above;
** others stream rows through an L1-sized double buffer in CPU_CHUNK pieces (a max pass, then an
** exp-sum pass), the vocabulary being large. With t4 dlogits (may be logits), each row's
** gradient dscale * (softmax - onehot) follows while the row is in cache (dscale t5, or 1). */
const char *sr_cpu_cross_entropy(const sr_kcall *c) {
  sr_tensor *losses = c->t[0], *lse = c->t[1], *logits = c->t[2], *targets = c->t[3];
  sr_tensor *dlogits = c->nt > 4 ? c->t[4] : NULL, *dscale = c->nt > 5 ? c->t[5] : NULL;
  const char *e = cpu_check_floats(c, 0, 3);
  if (!e && dlogits) e = cpu_check_dtype(dlogits, 5, false);
  if (!e && dscale) e = cpu_check_dtype(dscale, 6, false);
  if (!e) e = cpu_check_i32(targets, 4);
  if (e) return e;
  int64_t V = logits->shape[logits->ndim - 1], N = sr_numel(targets), ignore = c->i[0];
  const int32_t *tg = (const int32_t *)sr_data(targets);
  if ((e = cpu_check_indices("target", tg, N, V, 1, ignore))) return e;
  double ds = dscale ? cpu_ld(dscale->storage->data, dscale->dtype, dscale->offset) : 1.0;
  if (logits->dtype == SR_F32 && sr_is_contiguous(logits)) {
    const float *x0 = (const float *)sr_data(logits);
#pragma omp parallel for schedule(dynamic, 8) if (N * V > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
      const float *x = x0 + n * V;
      float mx = ce_row_max(x, V);
      double l = mx + log(ce_row_sumexp(x, V, mx));
      cpu_side_st(lse, n, l);
      cpu_side_st(losses, n, tg[n] == ignore ? 0.0 : l - x[tg[n]]);
      if (dlogits) ce_grad_row(dlogits, logits, n, V, tg[n], tg[n] == ignore, l, ds);
    }
    return NULL;
  }
#pragma omp parallel for schedule(static) if (N * V > CPU_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    double buf[CPU_CHUNK], mx = -INFINITY, sum = 0;
    int64_t base = logits->offset + n * V;
    for (int64_t j0 = 0; j0 < V; j0 += CPU_CHUNK) {
      int64_t len = V - j0 < CPU_CHUNK ? V - j0 : CPU_CHUNK;
      cpu_load(logits, base + j0, len, buf);
      mx = cpu_max_of(buf, len, mx);
    }
    for (int64_t j0 = 0; j0 < V; j0 += CPU_CHUNK) {
      int64_t len = V - j0 < CPU_CHUNK ? V - j0 : CPU_CHUNK;
      cpu_load(logits, base + j0, len, buf);
      sum += cpu_exp_sum(buf, buf, len, mx, logits->dtype != SR_F64);
    }
    double l = mx + log(sum);
    cpu_side_st(lse, n, l);
    cpu_side_st(losses, n, tg[n] == ignore ? 0.0 : l - cpu_ld(logits->storage->data, logits->dtype, base + tg[n]));
    if (dlogits) ce_grad_row(dlogits, logits, n, V, tg[n], tg[n] == ignore, l, ds);
  }
  return NULL;
}

/* cross_entropy_backward: dlogits[n,:] = dlosses[n] * (softmax(logits[n,:]) - onehot(target[n]));
** 0 on ignored rows. softmax = exp(logits - lse) with the forward's lse; dlosses may broadcast
** (stride 0); dlogits may be logits itself */
const char *sr_cpu_cross_entropy_backward(const sr_kcall *c) {
  sr_tensor *dlogits = c->t[0], *dlosses = c->t[1], *logits = c->t[2], *targets = c->t[3], *lse = c->t[4];
  const char *e = cpu_check_floats(c, 0, 3);
  if (!e) e = cpu_check_i32(targets, 4);
  if (!e) e = cpu_check_dtype(lse, 5, false);
  if (e) return e;
  int64_t V = logits->shape[logits->ndim - 1], N = sr_numel(targets), ignore = c->i[0];
  int64_t dls = dlosses->ndim ? dlosses->stride[dlosses->ndim - 1] : 0;
  const int32_t *tg = (const int32_t *)sr_data(targets);
  if ((e = cpu_check_indices("target", tg, N, V, 1, ignore))) return e;
#pragma omp parallel for schedule(dynamic, 8) if (N * V > CPU_PAR_MIN)
  for (int64_t n = 0; n < N; n++)
    ce_grad_row(dlogits, logits, n, V, tg[n], tg[n] == ignore, cpu_side_ld(lse, n),
                cpu_ld(dlosses->storage->data, dlosses->dtype, dlosses->offset + n * dls));
  return NULL;
}
