/*
** cpu/attention.c: CPU reference of causal scaled dot-product attention, forward and backward
** (kernels/attention.cu), and of flex attention: the block-mask builders and the block-masked
** attention, forward and backward (kernels/flex_attention.cu; the mask layout: core/flex.h).
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

#include "core/flex.h"  /* defines: sr_flex_class, sr_flex_visible, sr_flex_count_at, sr_flex_index_at */
#include "cpu/common.h"  /* defines: cpu_ld, cpu_st, cpu_side_ld, cpu_side_st, cpu_check_indices, cpu_thread_buffers */

/* ---------------------------------------------------------------------------------------------
** attention: per (b,h), for each query row i over keys j (j <= i when causal):
** s_ij = scale * q_i.k_j; lse_i = logsumexp_j s_ij; out_i = sum_j exp(s_ij - lse_i) v_j.
** q, k, v, out [B,H,T,D], any strides (the ops hand over views; out in [B,T,H,D] memory order, as
** the CUDA flash kernel writes it: core/ops_common.h); lse [B,H,T]. One (b,h) per task; K is held transposed so the score
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
      cpu_gather(q, base, TD, Q);
      cpu_gather(v, base, TD, Vb);
      for (int64_t j = 0; j < T; j++) {
        cpu_gather(k, base + j * D, D, o);
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
        cpu_scatter(out, base + i * D, D, o);
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
      cpu_gather(q, base, TD, Q);
      cpu_gather(k, base, TD, K);
      cpu_gather(v, base, TD, dV);  /* staging for the transpose */
      for (int64_t j = 0; j < T; j++)
        for (int64_t d = 0; d < D; d++) { KT[d * T + j] = K[j * D + d]; VT[d * T + j] = dV[j * D + d]; }
      for (int64_t x = 0; x < TD; x++) dK[x] = dV[x] = 0;
      for (int64_t i = 0; i < T; i++) {
        int64_t nj = causal ? i + 1 : T;
        const double *qi = Q + i * D;
        cpu_gather(dout, base + i * D, D, g);
        cpu_gather(out, base + i * D, D, o);
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
        cpu_scatter(dq, base + i * D, D, dqi);  /* dq, dk, dv: any strides */
      }
      cpu_scatter(dk, base, TD, dK);
      cpu_scatter(dv, base, TD, dV);
    }
  }
  free(all);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** flex attention (core/flex.h): block masks and the block-masked attention */

/* the packed mask's block count and block size from its shape [NB, 4 NB + 4 + block] */
static const char *flex_dims(const sr_tensor *bm, int64_t *nb, int64_t *bs) {
  if (bm->dtype != SR_I32 || bm->ndim != 2 || !sr_is_contiguous(bm)) return "block mask must be a contiguous int32 [NB, 4 NB + 4 + block] tensor";
  *nb = bm->shape[0];
  *bs = bm->shape[1] - 4 * *nb - 4;
  if (*nb < 1 || *bs < 1) return "block mask has a bad shape";
  return NULL;
}

/* the four lists of a packed mask from the class of every block pair (cls[qb * nb + kb]: 0 empty,
** 1 partial, 2 full); zeros the unused entries */
static void flex_lists(int32_t *bm, const unsigned char *cls, int64_t nb) {
  memset(bm, 0, sizeof *bm * (size_t)sr_flex_doc_at(nb));
  for (int64_t qb = 0; qb < nb; qb++)
    for (int64_t kb = 0; kb < nb; kb++) {
      int c = cls[qb * nb + kb];
      if (!c) continue;
      int lk = c == 2 ? SR_FLEX_FULL_KV : SR_FLEX_KV, lq = c == 2 ? SR_FLEX_FULL_Q : SR_FLEX_Q;
      int32_t *nk = bm + sr_flex_count_at(nb, lk) + qb, *nq = bm + sr_flex_count_at(nb, lq) + kb;
      bm[sr_flex_index_at(nb, lk) + qb * nb + (*nk)++] = (int32_t)kb;
      bm[sr_flex_index_at(nb, lq) + kb * nb + (*nq)++] = (int32_t)qb;
    }
}

/* the doc ids [T] (or zeros) into the packed mask; lo/hi per block when lo is not NULL */
static void flex_docs(int32_t *bm, const sr_tensor *doc, int64_t nb, int64_t bs, int32_t *lo, int32_t *hi) {
  int32_t *d = bm + sr_flex_doc_at(nb);
  for (int64_t t = 0; t < nb * bs; t++) d[t] = doc ? (int32_t)cpu_ld(doc->storage->data, SR_I32, doc->offset + t) : 0;
  if (!lo) return;
  for (int64_t b = 0; b < nb; b++) {
    lo[b] = hi[b] = d[b * bs];
    for (int64_t t = b * bs; t < (b + 1) * bs; t++) {
      if (d[t] < lo[b]) lo[b] = d[t];
      if (d[t] > hi[b]) hi[b] = d[t];
    }
  }
}

/* a count held on the device or given as an immediate (the window in tokens, window_blocks): the
** one-int32 tensor at slot `at` when the call has one (read now, as the device reads it when the
** kernel runs), else def; *err = bad when the tensor is not one int32 */
static int64_t flex_count(const sr_kcall *c, int at, int64_t def, const char *bad, const char **err) {
  sr_tensor *t = c->nt > at ? c->t[at] : NULL;
  if (!t) return def;
  if (t->dtype != SR_I32 || sr_numel(t) != 1) { *err = bad; return 0; }
  return (int64_t)cpu_ld(t->storage->data, SR_I32, t->offset);
}
static const char *const window_bad = "the window tensor must be one int32";

/* flex_block_mask: the mask from its components (create_block_mask's job) */
const char *sr_cpu_flex_block_mask(const sr_kcall *c) {
  sr_tensor *bm = c->t[0], *doc = c->t[1], *wbt = c->t[2];
  int64_t nb, bs;
  const char *e = flex_dims(bm, &nb, &bs);
  if (e) return e;
  if (doc && (doc->dtype != SR_I32 || sr_numel(doc) != nb * bs || !sr_is_contiguous(doc))) return "doc ids must be contiguous int32 [T]";
  int64_t wb = flex_count(c, 2, c->i[2], "window_blocks must be one int32", &e);
  if (!e && wbt && wb < 1) e = "window_blocks must be >= 1";
  int64_t window = e ? 0 : flex_count(c, 3, c->i[1], window_bad, &e);
  if (e) return e;
  int32_t *lo = doc ? malloc(sizeof *lo * (size_t)nb * 2) : NULL, *hi = lo ? lo + nb : NULL;
  unsigned char *cls = malloc((size_t)(nb * nb));
  if (!cls || (doc && !lo)) { free(lo); free(cls); return CPU_OOM; }
  int32_t *B = (int32_t *)bm->storage->data + bm->offset;
  flex_docs(B, doc, nb, bs, lo, hi);
  for (int64_t qb = 0; qb < nb; qb++)
    for (int64_t kb = 0; kb < nb; kb++)
      cls[qb * nb + kb] = (unsigned char)sr_flex_class(qb, kb, bs, c->i[0] != 0, window, wb, lo, hi);
  flex_lists(B, cls, nb);
  free(lo);
  free(cls);
  return NULL;
}

/* flex_block_mask_lists: the mask from kv-block lists (BlockMask.from_kv_blocks); a block in
** both lists is partial */
const char *sr_cpu_flex_block_mask_lists(const sr_kcall *c) {
  sr_tensor *bm = c->t[0], *doc = c->t[5];
  int64_t nb, bs;
  const char *e = flex_dims(bm, &nb, &bs);
  if (e) return e;
  if (doc && (doc->dtype != SR_I32 || sr_numel(doc) != nb * bs || !sr_is_contiguous(doc))) return "doc ids must be contiguous int32 [T]";
  unsigned char *cls = calloc((size_t)(nb * nb), 1);
  if (!cls) return CPU_OOM;
  for (int l = 1; l >= 0; l--) {  /* full first: partial overrides */
    sr_tensor *num = c->t[1 + 2 * l], *idx = c->t[2 + 2 * l];
    if (!num) continue;
    for (int64_t qb = 0; qb < nb; qb++) {
      int64_t n = (int64_t)cpu_ld(num->storage->data, SR_I32, num->offset + qb);
      if (n < 0 || n > nb) { free(cls); return "a block count is out of [0, NB]"; }
      for (int64_t x = 0; x < n; x++) {
        int64_t kb = (int64_t)cpu_ld(idx->storage->data, SR_I32, idx->offset + qb * nb + x);
        if (kb < 0 || kb >= nb) { free(cls); return "a kv block index is out of [0, NB)"; }
        cls[qb * nb + kb] = (unsigned char)(l ? 2 : 1);
      }
    }
  }
  int32_t *B = (int32_t *)bm->storage->data + bm->offset;
  flex_docs(B, doc, nb, bs, NULL, NULL);
  flex_lists(B, cls, nb);
  free(cls);
  return NULL;
}

/* the keys query i sees (its block's lists; the element mask on partial blocks) in the CUDA
** kernels' order: the partial and full lists merged ascending (kernels/flex_attention.cu,
** flex_tiles: which blocks are partial depends on later rows of each block); returns their count */
static int64_t flex_row_keys(const int32_t *B, int64_t nb, int64_t bs, int64_t i, const sr_kcall *c, int64_t window,
                             int64_t *keys) {
  int64_t qb = i / bs, n = 0;
  const int32_t *doc = c->i[2] ? B + sr_flex_doc_at(nb) : NULL;
  int64_t np = B[sr_flex_count_at(nb, SR_FLEX_KV) + qb], nf = B[sr_flex_count_at(nb, SR_FLEX_FULL_KV) + qb];
  const int32_t *ip = B + sr_flex_index_at(nb, SR_FLEX_KV) + qb * nb, *ifl = B + sr_flex_index_at(nb, SR_FLEX_FULL_KV) + qb * nb;
  for (int64_t a = 0, f = 0; a < np || f < nf;) {
    int partial = a < np && (f >= nf || ip[a] < ifl[f]);
    int64_t blk = partial ? ip[a++] : ifl[f++];
    for (int64_t j = blk * bs; j < (blk + 1) * bs; j++)
      if (!partial || sr_flex_visible(i, j, c->i[0] != 0, window, doc)) keys[n++] = j;
  }
  return n;
}

static const char *flex_check(const sr_kcall *c, const sr_tensor *q, const sr_tensor *bm, int64_t *nb, int64_t *bs) {
  const char *e = flex_dims(bm, nb, bs);
  if (e) return e;
  if (q->ndim != 4) return "q must be [B,H,T,D]";
  if (q->shape[2] != *nb * *bs) return "the block mask is for another sequence length";
  (void)c;
  return NULL;
}

/* flex_attention: attention() over the keys each query's block lists; a query that sees no key
** gets out 0 and lse -inf (FlexAttention's convention) */
const char *sr_cpu_flex_attention(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *lse = c->t[1], *q = c->t[2], *k = c->t[3], *v = c->t[4], *bm = c->t[5];
  const char *e = cpu_check_floats(c, 0, 5);
  int64_t nb, bs;
  if (!e) e = flex_check(c, q, bm, &nb, &bs);
  int64_t window = e ? 0 : flex_count(c, 6, c->i[1], window_bad, &e);
  if (e) return e;
  int64_t T = q->shape[2], D = q->shape[3], BH = q->shape[0] * q->shape[1], TD = T * D;
  const int32_t *B = (const int32_t *)bm->storage->data + bm->offset;
  double scale = c->f[0];
  int64_t per = 3 * TD + 2 * T + D;  /* Q, K, V, scores, keys, out row */
  double *all = cpu_thread_buffers(per);
  if (!all) return CPU_OOM;
#pragma omp parallel if (BH * T * TD > CPU_PAR_MIN)
  {
    double *Q = cpu_thread_slice(all, per), *K = Q + TD, *Vb = K + TD, *s = Vb + TD, *o = s + T;
    int64_t *keys = (int64_t *)(o + D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; bh++) {
      int64_t base = bh * TD;
      cpu_gather(q, base, TD, Q);
      cpu_gather(k, base, TD, K);
      cpu_gather(v, base, TD, Vb);
      for (int64_t i = 0; i < T; i++) {
        int64_t n = flex_row_keys(B, nb, bs, i, c, window, keys);
        for (int64_t x = 0; x < n; x++) {
          const double *qi = Q + i * D, *kj = K + keys[x] * D;
          double acc = 0;
          for (int64_t d = 0; d < D; d++) acc += qi[d] * kj[d];
          s[x] = acc * scale;
        }
        for (int64_t d = 0; d < D; d++) o[d] = 0;
        if (n == 0) {
          cpu_scatter(out, base + i * D, D, o);
          cpu_side_st(lse, bh * T + i, -INFINITY);
          continue;
        }
        double mx = cpu_max_of(s, n, -INFINITY), sum = cpu_exp_sum(s, s, n, mx, q->dtype != SR_F64);
        for (int64_t x = 0; x < n; x++) {
          const double *vj = Vb + keys[x] * D;
          for (int64_t d = 0; d < D; d++) o[d] += s[x] * vj[d];
        }
        for (int64_t d = 0; d < D; d++) o[d] /= sum;
        cpu_scatter(out, base + i * D, D, o);
        cpu_side_st(lse, bh * T + i, mx + log(sum));
      }
    }
  }
  free(all);
  return NULL;
}

/* flex_attention_backward: attention_backward() over the same keys; rows in order per (b,h) */
const char *sr_cpu_flex_attention_backward(const sr_kcall *c) {
  sr_tensor *dq = c->t[0], *dk = c->t[1], *dv = c->t[2], *dout = c->t[3], *q = c->t[4], *k = c->t[5];
  sr_tensor *v = c->t[6], *out = c->t[7], *lse = c->t[8], *bm = c->t[9];
  const char *e = cpu_check_floats(c, 0, 9);
  int64_t nb, bs;
  if (!e) e = flex_check(c, q, bm, &nb, &bs);
  int64_t window = e ? 0 : flex_count(c, 10, c->i[1], window_bad, &e);
  if (e) return e;
  int64_t T = q->shape[2], D = q->shape[3], BH = q->shape[0] * q->shape[1], TD = T * D;
  const int32_t *B = (const int32_t *)bm->storage->data + bm->offset;
  double scale = c->f[0];
  int64_t per = 5 * TD + 3 * T + 3 * D;  /* Q, K, V, dK, dV, p, dp, keys, g, o, dq rows */
  double *all = cpu_thread_buffers(per);
  if (!all) return CPU_OOM;
#pragma omp parallel if (BH * T * TD > CPU_PAR_MIN)
  {
    double *Q = cpu_thread_slice(all, per), *K = Q + TD, *Vb = K + TD, *dK = Vb + TD, *dV = dK + TD;
    double *p = dV + TD, *dp = p + T, *g = dp + T, *o = g + D, *dqi = o + D;
    int64_t *keys = (int64_t *)(dqi + D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; bh++) {
      int64_t base = bh * TD;
      cpu_gather(q, base, TD, Q);
      cpu_gather(k, base, TD, K);
      cpu_gather(v, base, TD, Vb);
      for (int64_t x = 0; x < TD; x++) dK[x] = dV[x] = 0;
      for (int64_t i = 0; i < T; i++) {
        int64_t n = flex_row_keys(B, nb, bs, i, c, window, keys);
        const double *qi = Q + i * D;
        cpu_gather(dout, base + i * D, D, g);
        cpu_gather(out, base + i * D, D, o);
        double Di = 0, L = cpu_side_ld(lse, bh * T + i);
        for (int64_t d = 0; d < D; d++) { Di += g[d] * o[d]; dqi[d] = 0; }
        for (int64_t x = 0; x < n; x++) {
          const double *kj = K + keys[x] * D, *vj = Vb + keys[x] * D;
          double sc = 0, dd = 0;
          for (int64_t d = 0; d < D; d++) { sc += qi[d] * kj[d]; dd += g[d] * vj[d]; }
          p[x] = cpu_exp(sc * scale - L);
          dp[x] = p[x] * (dd - Di) * scale;  /* scale * ds_ij */
        }
        for (int64_t x = 0; x < n; x++) {
          const double *kj = K + keys[x] * D;
          double *dkj = dK + keys[x] * D, *dvj = dV + keys[x] * D;
          for (int64_t d = 0; d < D; d++) {
            dqi[d] += dp[x] * kj[d];
            dkj[d] += dp[x] * qi[d];
            dvj[d] += p[x] * g[d];
          }
        }
        cpu_scatter(dq, base + i * D, D, dqi);  /* dq, dk, dv: any strides */
      }
      cpu_scatter(dk, base, TD, dK);
      cpu_scatter(dv, base, TD, dV);
    }
  }
  free(all);
  return NULL;
}
