/*
** cpu/norm.c: CPU reference of rms_norm and layer_norm, forward and backward side by side (kernels/norm.cu).
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
        double mu = mean ? cpu_side_ld(mean, n) : 0.0, r = cpu_side_ld(rstd, n);
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
      cpu_side_st(rstd, n, r);
    }
  }
  free(wb);
  free(all);
  return NULL;
}

/* row n of dx (i0 = 1: plus what dx holds; tmp: C doubles of scratch), stored once */
static void store_dx_row(const sr_kcall *c, sr_tensor *dx, int64_t n, int64_t C, double *row, double *tmp) {
  if (c->i[0]) {
    cpu_load(dx, dx->offset + n * C, C, tmp);
    for (int64_t j = 0; j < C; j++) row[j] += tmp[j];
  }
  cpu_store(dx, dx->offset + n * C, C, row);
}

/* rms_norm_backward: g = dout*w, xhat = x*rstd; dx = rstd*(g - xhat*mean_j(g*xhat)) (i0 = 1: +=);
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
      double r = cpu_side_ld(rstd, n), s = 0;
      for (int64_t j = 0; j < C; j++) { xr[j] *= r; gr[j] *= wb[j]; s += gr[j] * xr[j]; }
      s /= (double)C;
      for (int64_t j = 0; j < C; j++) gr[j] = r * (gr[j] - xr[j] * s);
      store_dx_row(c, dx, n, C, gr, xr);
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
      cpu_side_st(mean, n, mu);
      cpu_side_st(rstd, n, r);
    }
  }
  free(wb);
  free(bb);
  free(all);
  return NULL;
}

/* layer_norm_backward: g = dout*w, xhat = (x-mean)*rstd;
** dx = rstd*(g - mean_j(g) - xhat*mean_j(g*xhat)) (i0 = 1: +=); dweight += sum_n dout*xhat; dbias += sum_n dout */
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
      double mu = cpu_side_ld(mean, n), r = cpu_side_ld(rstd, n), sg = 0, sgx = 0;
      for (int64_t j = 0; j < C; j++) {
        xr[j] = (xr[j] - mu) * r;
        gr[j] *= wb[j];
        sg += gr[j];
        sgx += gr[j] * xr[j];
      }
      sg /= (double)C;
      sgx /= (double)C;
      for (int64_t j = 0; j < C; j++) gr[j] = r * (gr[j] - sg - xr[j] * sgx);
      store_dx_row(c, dx, n, C, gr, xr);
    }
  }
  free(wb);
  free(all);
  return norm_param_backward(dw, db, dout, x, mean, rstd, N, C);
}
