/*
** cpu_nn.c: CPU reference of the layer kernels, forward and backward side by side (as llm.c's
** train_gpt2.c): embedding, rms_norm, layer_norm, cross_entropy, rotary, attention.
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

#include "cpu_common.h"  /* defines: cpu_load, cpu_store, cpu_ld, cpu_st, cpu_exp, cpu_thread_buffers */

/* the first entry of ix[0..n) outside [0, V) that is not ignore (has_ignore), as a message */
static const char *check_indices(const char *what, const int32_t *ix, int64_t n, int64_t V, int has_ignore, int64_t ignore) {
  for (int64_t p = 0; p < n; p++)
    if ((ix[p] < 0 || ix[p] >= V) && !(has_ignore && ix[p] == ignore)) {
      char *m = cpu_msgbuf();
      snprintf(m, 256, "%s %d out of range [0, %lld) at position %lld", what, (int)ix[p], (long long)V, (long long)p);
      return m;
    }
  return NULL;
}

/* value i of a 1-D contiguous side tensor (rstd, mean, lse, losses) */
static double side_ld(const sr_tensor *t, int64_t i) { return cpu_ld(t->storage->data, t->dtype, t->offset + i); }
static void side_st(sr_tensor *t, int64_t i, double v) { cpu_st(t->storage->data, t->dtype, t->offset + i, v); }

/* ---------------------------------------------------------------------------------------------
** embedding: out[n,:] = weight[idx[n],:]; out [N,C], weight [V,C], idx [N] i32 */
const char *sr_cpu_embedding(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *w = c->t[1], *idx = c->t[2];
  const char *e = cpu_check_floats(c, 0, 2);
  if (!e) e = cpu_check_i32(idx, 3);
  if (e) return e;
  int64_t V = w->shape[0], C = w->shape[1], N = sr_numel(idx);
  const int32_t *ix = (const int32_t *)sr_data(idx);
  if ((e = check_indices("index", ix, N, V, 0, 0))) return e;
  double *all = cpu_thread_buffers(C);
  if (!all) return CPU_OOM;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *row = cpu_thread_slice(all, C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      if (out->dtype == w->dtype) {
        size_t es = sr_dtype_size(w->dtype);
        memcpy((char *)sr_data(out) + (size_t)(n * C) * es, (const char *)sr_data(w) + (size_t)(ix[n] * C) * es, (size_t)C * es);
      } else {
        cpu_load(w, w->offset + ix[n] * C, C, row);
        cpu_store(out, out->offset + n * C, C, row);
      }
    }
  }
  free(all);
  return NULL;
}

typedef struct { int32_t id; int32_t pad; int64_t pos; } emb_entry;
static int emb_entry_cmp(const void *a, const void *b) {
  const emb_entry *x = (const emb_entry *)a, *y = (const emb_entry *)b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* embedding_backward: dweight[idx[n],:] += dout[n,:]; positions are grouped by index, each
** group summed in position order in double and added to its row once. Fails on an index out of
** [0,V) as the forward does (the contract row does not say; writing there would corrupt memory) */
const char *sr_cpu_embedding_backward(const sr_kcall *c) {
  sr_tensor *dw = c->t[0], *dout = c->t[1], *idx = c->t[2];
  const char *e = cpu_check_floats(c, 0, 2);
  if (!e) e = cpu_check_i32(idx, 3);
  if (e) return e;
  int64_t V = dw->shape[0], C = dw->shape[1], N = sr_numel(idx);
  const int32_t *ix = (const int32_t *)sr_data(idx);
  if ((e = check_indices("index", ix, N, V, 0, 0))) return e;
  emb_entry *ent = (emb_entry *)malloc(sizeof(emb_entry) * (size_t)(N + 1));
  int64_t *group = (int64_t *)malloc(sizeof(int64_t) * (size_t)(N + 1));
  double *all = cpu_thread_buffers(2 * C);
  if (!ent || !group || !all) { free(ent); free(group); free(all); return CPU_OOM; }
  for (int64_t n = 0; n < N; n++) ent[n] = (emb_entry){ix[n], 0, n};
  qsort(ent, (size_t)N, sizeof(emb_entry), emb_entry_cmp);
  int64_t ng = 0;
  for (int64_t n = 0; n < N; n++)
    if (n == 0 || ent[n].id != ent[n - 1].id) group[ng++] = n;
  group[ng] = N;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *acc = cpu_thread_slice(all, 2 * C), *row = acc + C;
#pragma omp for schedule(dynamic, 16)
    for (int64_t g = 0; g < ng; g++) {
      for (int64_t j = 0; j < C; j++) acc[j] = 0;
      for (int64_t p = group[g]; p < group[g + 1]; p++) {
        cpu_load(dout, dout->offset + ent[p].pos * C, C, row);
        for (int64_t j = 0; j < C; j++) acc[j] += row[j];
      }
      int64_t wrow = dw->offset + (int64_t)ent[group[g]].id * C;
      cpu_load(dw, wrow, C, row);
      for (int64_t j = 0; j < C; j++) row[j] += acc[j];
      cpu_store(dw, wrow, C, row);
    }
  }
  free(ent);
  free(group);
  free(all);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** norm parameter grads, shared by rms_norm and layer_norm backward:
** dweight[j] += sum_n dout[n,j] * (x[n,j] - mean[n]) * rstd[n], dbias[j] += sum_n dout[n,j]
** (mean NULL for rms_norm). Columns are split in fixed blocks, rows summed in order. */
#define NORM_COLS 256
static const char *norm_param_backward(sr_tensor *dw, sr_tensor *db, const sr_tensor *dout, const sr_tensor *x,
                                       const sr_tensor *mean, const sr_tensor *rstd, int64_t N, int64_t C) {
  if (!dw && !db) return NULL;
  int64_t nblk = (C + NORM_COLS - 1) / NORM_COLS;
#pragma omp parallel for schedule(static) if (N * C > CPU_PAR_MIN)
  for (int64_t b = 0; b < nblk; b++) {
    double aw[NORM_COLS], ab[NORM_COLS], g[NORM_COLS], xv[NORM_COLS];
    int64_t j0 = b * NORM_COLS, m = C - j0 < NORM_COLS ? C - j0 : NORM_COLS;
    for (int64_t j = 0; j < m; j++) aw[j] = ab[j] = 0;
    for (int64_t n = 0; n < N; n++) {
      cpu_load(dout, dout->offset + n * C + j0, m, g);
      if (dw) {
        cpu_load(x, x->offset + n * C + j0, m, xv);
        double mu = mean ? side_ld(mean, n) : 0.0, r = side_ld(rstd, n);
        for (int64_t j = 0; j < m; j++) aw[j] += g[j] * (xv[j] - mu) * r;
      }
      if (db)
        for (int64_t j = 0; j < m; j++) ab[j] += g[j];
    }
    if (dw) {
      cpu_load(dw, dw->offset + j0, m, g);
      for (int64_t j = 0; j < m; j++) g[j] += aw[j];
      cpu_store(dw, dw->offset + j0, m, g);
    }
    if (db) {
      cpu_load(db, db->offset + j0, m, g);
      for (int64_t j = 0; j < m; j++) g[j] += ab[j];
      cpu_store(db, db->offset + j0, m, g);
    }
  }
  return NULL;
}

/* an optional [C] parameter as doubles (1 when absent); NULL when out of memory */
static double *param_or(const sr_tensor *p, int64_t C, double dflt) {
  double *b = (double *)malloc(sizeof(double) * (size_t)(C > 0 ? C : 1));
  if (!b) return NULL;
  if (p) cpu_load(p, p->offset, C, b);
  else for (int64_t j = 0; j < C; j++) b[j] = dflt;
  return b;
}

/* ---------------------------------------------------------------------------------------------
** rms_norm: rstd[n] = 1/sqrt(mean_j x[n,j]^2 + eps); out = x * rstd * weight */
const char *sr_cpu_rms_norm(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *rstd = c->t[1], *x = c->t[2], *w = c->t[3];
  const char *e = cpu_check_floats(c, 0, 4);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  double eps = c->f[0];
  double *wb = param_or(w, C, 1.0), *all = cpu_thread_buffers(C);
  if (!wb || !all) { free(wb); free(all); return CPU_OOM; }
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *row = cpu_thread_slice(all, C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      cpu_load(x, x->offset + n * C, C, row);
      double ss = 0;
      for (int64_t j = 0; j < C; j++) ss += row[j] * row[j];
      double r = 1.0 / sqrt(ss / (double)C + eps);
      for (int64_t j = 0; j < C; j++) row[j] = row[j] * r * wb[j];
      cpu_store(out, out->offset + n * C, C, row);
      side_st(rstd, n, r);
    }
  }
  free(wb);
  free(all);
  return NULL;
}

/* rms_norm_backward: g = dout*w, xhat = x*rstd; dx = rstd*(g - xhat*mean_j(g*xhat));
** dweight += sum_n dout*xhat */
const char *sr_cpu_rms_norm_backward(const sr_kcall *c) {
  sr_tensor *dx = c->t[0], *dw = c->t[1], *dout = c->t[2], *x = c->t[3], *w = c->t[4], *rstd = c->t[5];
  const char *e = cpu_check_floats(c, 0, 6);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  double *wb = param_or(w, C, 1.0), *all = cpu_thread_buffers(2 * C);
  if (!wb || !all) { free(wb); free(all); return CPU_OOM; }
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *xr = cpu_thread_slice(all, 2 * C), *gr = xr + C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      cpu_load(x, x->offset + n * C, C, xr);
      cpu_load(dout, dout->offset + n * C, C, gr);
      double r = side_ld(rstd, n), s = 0;
      for (int64_t j = 0; j < C; j++) { xr[j] *= r; gr[j] *= wb[j]; s += gr[j] * xr[j]; }
      s /= (double)C;
      for (int64_t j = 0; j < C; j++) gr[j] = r * (gr[j] - xr[j] * s);
      cpu_store(dx, dx->offset + n * C, C, gr);
    }
  }
  free(wb);
  free(all);
  return norm_param_backward(dw, NULL, dout, x, NULL, rstd, N, C);
}

/* ---------------------------------------------------------------------------------------------
** layer_norm: mean, rstd = 1/sqrt(var + eps) (biased var); out = (x - mean)*rstd*weight + bias */
const char *sr_cpu_layer_norm(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *mean = c->t[1], *rstd = c->t[2], *x = c->t[3], *w = c->t[4], *bias = c->t[5];
  const char *e = cpu_check_floats(c, 0, 6);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  double eps = c->f[0];
  double *wb = param_or(w, C, 1.0), *bb = param_or(bias, C, 0.0), *all = cpu_thread_buffers(C);
  if (!wb || !bb || !all) { free(wb); free(bb); free(all); return CPU_OOM; }
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *row = cpu_thread_slice(all, C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      cpu_load(x, x->offset + n * C, C, row);
      double mu = 0, var = 0;
      for (int64_t j = 0; j < C; j++) mu += row[j];
      mu /= (double)C;
      for (int64_t j = 0; j < C; j++) var += (row[j] - mu) * (row[j] - mu);
      double r = 1.0 / sqrt(var / (double)C + eps);
      for (int64_t j = 0; j < C; j++) row[j] = (row[j] - mu) * r * wb[j] + bb[j];
      cpu_store(out, out->offset + n * C, C, row);
      side_st(mean, n, mu);
      side_st(rstd, n, r);
    }
  }
  free(wb);
  free(bb);
  free(all);
  return NULL;
}

/* layer_norm_backward: g = dout*w, xhat = (x-mean)*rstd;
** dx = rstd*(g - mean_j(g) - xhat*mean_j(g*xhat)); dweight += sum_n dout*xhat; dbias += sum_n dout */
const char *sr_cpu_layer_norm_backward(const sr_kcall *c) {
  sr_tensor *dx = c->t[0], *dw = c->t[1], *db = c->t[2], *dout = c->t[3], *x = c->t[4], *w = c->t[5];
  sr_tensor *mean = c->t[6], *rstd = c->t[7];
  const char *e = cpu_check_floats(c, 0, 8);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  double *wb = param_or(w, C, 1.0), *all = cpu_thread_buffers(2 * C);
  if (!wb || !all) { free(wb); free(all); return CPU_OOM; }
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *xr = cpu_thread_slice(all, 2 * C), *gr = xr + C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      cpu_load(x, x->offset + n * C, C, xr);
      cpu_load(dout, dout->offset + n * C, C, gr);
      double mu = side_ld(mean, n), r = side_ld(rstd, n), sg = 0, sgx = 0;
      for (int64_t j = 0; j < C; j++) {
        xr[j] = (xr[j] - mu) * r;
        gr[j] *= wb[j];
        sg += gr[j];
        sgx += gr[j] * xr[j];
      }
      sg /= (double)C;
      sgx /= (double)C;
      for (int64_t j = 0; j < C; j++) gr[j] = r * (gr[j] - sg - xr[j] * sgx);
      cpu_store(dx, dx->offset + n * C, C, gr);
    }
  }
  free(wb);
  free(all);
  return norm_param_backward(dw, db, dout, x, mean, rstd, N, C);
}

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
  if ((e = check_indices("target", tg, N, V, 1, ignore))) return e;
  double ds = dscale ? cpu_ld(dscale->storage->data, dscale->dtype, dscale->offset) : 1.0;
  if (logits->dtype == SR_F32 && sr_is_contiguous(logits)) {
    const float *x0 = (const float *)sr_data(logits);
#pragma omp parallel for schedule(dynamic, 8) if (N * V > CPU_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
      const float *x = x0 + n * V;
      float mx = ce_row_max(x, V);
      double l = mx + log(ce_row_sumexp(x, V, mx));
      side_st(lse, n, l);
      side_st(losses, n, tg[n] == ignore ? 0.0 : l - x[tg[n]]);
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
    side_st(lse, n, l);
    side_st(losses, n, tg[n] == ignore ? 0.0 : l - cpu_ld(logits->storage->data, logits->dtype, base + tg[n]));
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
  if ((e = check_indices("target", tg, N, V, 1, ignore))) return e;
#pragma omp parallel for schedule(dynamic, 8) if (N * V > CPU_PAR_MIN)
  for (int64_t n = 0; n < N; n++)
    ce_grad_row(dlogits, logits, n, V, tg[n], tg[n] == ignore, side_ld(lse, n),
                cpu_ld(dlosses->storage->data, dlosses->dtype, dlosses->offset + n * dls));
  return NULL;
}

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
        side_st(lse, bh * T + i, mx + log(sum));
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
        double Di = 0, L = side_ld(lse, bh * T + i);
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
