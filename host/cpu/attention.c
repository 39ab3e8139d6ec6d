/*
** cpu/attention.c: CPU reference of causal scaled dot-product attention, forward and backward (kernels/attention.cu).
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
** attention: per (b,h), for each query row i over keys j (j <= i when causal):
** s_ij = scale * q_i.k_j; lse_i = logsumexp_j s_ij; out_i = sum_j exp(s_ij - lse_i) v_j.
** q, k, v, out [B,H,T,D]; lse [B,H,T]. One (b,h) per task; K is held transposed so the score
** loop runs over contiguous keys. */
const char *sr_cpu_attention(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *lse = c->t[1], *q = c->t[2], *k = c->t[3], *v = c->t[4];
  const char *e = cpu_check_floats(c, 0, 5);
  if (e) return e;
  if (q->ndim != 4) return "q must be [B,H,T,D]";
  int64_t T = q->shape[2], D = q->shape[3], BH = q->shape[0] * q->shape[1], TD = T * D;
  double scale = c->f[0];
  int causal = c->i[0] != 0;
  int64_t per = 3 * TD + T + D;  /* Q, KT, V, scores, out row */
  double *all = cpu_thread_buffers(per);
  if (!all) return CPU_OOM;
#pragma omp parallel if (BH * T * TD > CPU_PAR_MIN)
  {
    double *Q = cpu_thread_slice(all, per), *KT = Q + TD, *Vb = KT + TD, *s = Vb + TD, *o = s + T;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; bh++) {
      int64_t base = bh * TD;
      cpu_load(q, q->offset + base, TD, Q);
      cpu_load(v, v->offset + base, TD, Vb);
      for (int64_t j = 0; j < T; j++) {
        cpu_load(k, k->offset + base + j * D, D, o);
        for (int64_t d = 0; d < D; d++) KT[d * T + j] = o[d];
      }
      for (int64_t i = 0; i < T; i++) {
        int64_t nj = causal ? i + 1 : T;
        for (int64_t j = 0; j < nj; j++) s[j] = 0;
        for (int64_t d = 0; d < D; d++) {
          double qd = Q[i * D + d];
          const double *kt = KT + d * T;
          for (int64_t j = 0; j < nj; j++) s[j] += qd * kt[j];
        }
        for (int64_t j = 0; j < nj; j++) s[j] *= scale;
        double mx = cpu_max_of(s, nj, -INFINITY), sum = cpu_exp_sum(s, s, nj, mx, q->dtype != SR_F64);
        for (int64_t d = 0; d < D; d++) o[d] = 0;
        for (int64_t j = 0; j < nj; j++) {
          double p = s[j];
          const double *vj = Vb + j * D;
          for (int64_t d = 0; d < D; d++) o[d] += p * vj[d];
        }
        double inv = 1.0 / sum;
        for (int64_t d = 0; d < D; d++) o[d] *= inv;
        cpu_store(out, out->offset + base + i * D, D, o);
        cpu_side_st(lse, bh * T + i, mx + log(sum));
      }
    }
  }
  free(all);
  return NULL;
}

/* attention_backward: with p_ij = exp(s_ij - lse_i), dp_ij = dout_i.v_j, Di = dout_i.out_i,
** ds_ij = p_ij (dp_ij - Di): dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i,
** dv_j = sum_i p_ij dout_i. One (b,h) per task, rows i in order, so dk/dv sums are fixed. */
const char *sr_cpu_attention_backward(const sr_kcall *c) {
  sr_tensor *dq = c->t[0], *dk = c->t[1], *dv = c->t[2], *dout = c->t[3], *q = c->t[4], *k = c->t[5];
  sr_tensor *v = c->t[6], *out = c->t[7], *lse = c->t[8];
  const char *e = cpu_check_floats(c, 0, 9);
  if (e) return e;
  if (q->ndim != 4) return "q must be [B,H,T,D]";
  int64_t T = q->shape[2], D = q->shape[3], BH = q->shape[0] * q->shape[1], TD = T * D;
  double scale = c->f[0];
  int causal = c->i[0] != 0;
  int64_t per = 6 * TD + 2 * T + 3 * D;  /* Q, K, KT, VT, dK, dV, p, dp, g, o, dq rows */
  double *all = cpu_thread_buffers(per);
  if (!all) return CPU_OOM;
#pragma omp parallel if (BH * T * TD > CPU_PAR_MIN)
  {
    double *Q = cpu_thread_slice(all, per), *K = Q + TD, *KT = K + TD, *VT = KT + TD, *dK = VT + TD, *dV = dK + TD;
    double *p = dV + TD, *dp = p + T, *g = dp + T, *o = g + D, *dqi = o + D;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; bh++) {
      int64_t base = bh * TD;
      cpu_load(q, q->offset + base, TD, Q);
      cpu_load(k, k->offset + base, TD, K);
      cpu_load(v, v->offset + base, TD, dV);  /* staging for the transpose */
      for (int64_t j = 0; j < T; j++)
        for (int64_t d = 0; d < D; d++) { KT[d * T + j] = K[j * D + d]; VT[d * T + j] = dV[j * D + d]; }
      for (int64_t x = 0; x < TD; x++) dK[x] = dV[x] = 0;
      for (int64_t i = 0; i < T; i++) {
        int64_t nj = causal ? i + 1 : T;
        const double *qi = Q + i * D;
        cpu_load(dout, dout->offset + base + i * D, D, g);
        cpu_load(out, out->offset + base + i * D, D, o);
        double Di = 0, L = cpu_side_ld(lse, bh * T + i);
        for (int64_t d = 0; d < D; d++) Di += g[d] * o[d];
        for (int64_t j = 0; j < nj; j++) p[j] = dp[j] = 0;
        for (int64_t d = 0; d < D; d++) {
          double qd = qi[d], gd = g[d];
          const double *kt = KT + d * T, *vt = VT + d * T;
          for (int64_t j = 0; j < nj; j++) { p[j] += qd * kt[j]; dp[j] += gd * vt[j]; }
        }
        for (int64_t j = 0; j < nj; j++) {
          p[j] = cpu_exp(p[j] * scale - L);
          dp[j] = p[j] * (dp[j] - Di) * scale;  /* scale * ds_ij */
        }
        for (int64_t d = 0; d < D; d++) dqi[d] = 0;
        for (int64_t j = 0; j < nj; j++) {
          double ds = dp[j], pj = p[j];
          const double *kj = K + j * D;
          double *dkj = dK + j * D, *dvj = dV + j * D;
          for (int64_t d = 0; d < D; d++) {
            dqi[d] += ds * kj[d];
            dkj[d] += ds * qi[d];
            dvj[d] += pj * g[d];
          }
        }
        cpu_store(dq, dq->offset + base + i * D, D, dqi);
      }
      cpu_store(dk, dk->offset + base, TD, dK);
      cpu_store(dv, dv->offset + base, TD, dV);
    }
  }
  free(all);
  return NULL;
}
