/*
** cpu_reduce.c: CPU reference of the reductions: reduce (sum, mean, max with argmax, sum of
** squares, over one dim) and softmax / log_softmax with their backward.
** Every output element is reduced by one thread in index order (double accumulators), so results
** do not depend on the thread count. max propagates NaN (its index is the first NaN).
*/
#include <math.h>        /* defines: log, INFINITY */
#include <stdint.h>      /* defines: int64_t */
#include <stdlib.h>      /* defines: malloc, free */

#include "cpu_common.h"  /* defines: cpu_load, cpu_store, cpu_gather, cpu_scatter, cpu_exp */

/* ---------------------------------------------------------------------------------------------
** reduce: x viewed as [outer, n, inner] around dim; out (and idx for max) [outer, 1, inner] */

/* folds n values v[0..n) at positions k0.. into the running (acc, arg) of fn */
static void reduce_fold(int fn, const double *v, int64_t n, int64_t k0, double *acc, double *arg) {
  if (fn == SR_REDUCE_MAX) {
    for (int64_t k = 0; k < n; k++)
      if (v[k] > *acc || (v[k] != v[k] && *acc == *acc)) { *acc = v[k]; *arg = (double)(k0 + k); }
  } else if (fn == SR_REDUCE_SUMSQ) {
    for (int64_t k = 0; k < n; k++) *acc += v[k] * v[k];
  } else {
    for (int64_t k = 0; k < n; k++) *acc += v[k];
  }
}

const char *sr_cpu_reduce(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1], *idx = c->nt > 2 ? c->t[2] : NULL;
  int fn = (int)c->i[0], dim = (int)c->i[1];
  char *msg = cpu_msgbuf();
  if (fn < 0 || fn >= SR_REDUCE_COUNT) { snprintf(msg, 256, "unknown reduce function %d", fn); return msg; }
  if (dim < 0 || dim >= x->ndim) { snprintf(msg, 256, "dim %d out of range for %d-d input", dim, x->ndim); return msg; }
  const char *e = cpu_check_floats(c, 0, 2);
  if (!e && idx && fn == SR_REDUCE_MAX) e = cpu_check_i32(idx, 3);
  if (e) return e;
  if (!idx || fn != SR_REDUCE_MAX) idx = NULL;
  int64_t outer = 1, n = x->shape[dim], inner = 1;
  for (int d = 0; d < dim; d++) outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
  if (n == 0 && fn == SR_REDUCE_MAX) return "max over an empty dimension";

  /* source: x itself when contiguous, else a contiguous double copy */
  double *copy = NULL;
  const sr_tensor *src = x;
  sr_tensor tmp;
  sr_storage st = {0};
  if (!sr_is_contiguous(x)) {
    int64_t total = outer * n * inner;
    copy = (double *)malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    if (!copy) return CPU_OOM;
    for (int64_t i = 0; i < total; i += CPU_CHUNK) cpu_gather(x, i, total - i < CPU_CHUNK ? total - i : CPU_CHUNK, copy + i);
    tmp = *x;
    st.data = copy;
    tmp.storage = &st;   /* only read inside this call */
    tmp.dtype = SR_F64;
    tmp.offset = 0;
    src = &tmp;
  }
  int64_t nout = outer * inner;
  double *res = (double *)malloc(sizeof(double) * (size_t)(nout > 0 ? nout : 1) * 2), *arg = res + nout;
  if (!res) { free(copy); return CPU_OOM; }
  int64_t jblocks = (inner + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (outer * n * inner > CPU_PAR_MIN)
  for (int64_t task = 0; task < outer * jblocks; task++) {
    double buf[CPU_CHUNK];
    int64_t o = task / jblocks, j0 = (task % jblocks) * CPU_CHUNK;
    int64_t m = inner - j0 < CPU_CHUNK ? inner - j0 : CPU_CHUNK;
    int64_t base = src->offset + o * n * inner;
    if (inner == 1) {  /* one contiguous row of n */
      double acc = fn == SR_REDUCE_MAX ? -INFINITY : 0.0, am = 0;
      for (int64_t k0 = 0; k0 < n; k0 += CPU_CHUNK) {
        int64_t len = n - k0 < CPU_CHUNK ? n - k0 : CPU_CHUNK;
        cpu_load(src, base + k0, len, buf);
        reduce_fold(fn, buf, len, k0, &acc, &am);
      }
      res[o] = acc;
      arg[o] = am;
    } else {           /* columns j0..j0+m, row k at a time */
      double *acc = res + o * inner + j0, *am = arg + o * inner + j0;
      for (int64_t j = 0; j < m; j++) { acc[j] = fn == SR_REDUCE_MAX ? -INFINITY : 0.0; am[j] = 0; }
      for (int64_t k = 0; k < n; k++) {
        cpu_load(src, base + k * inner + j0, m, buf);
        if (fn == SR_REDUCE_MAX) {
          for (int64_t j = 0; j < m; j++)
            if (buf[j] > acc[j] || (buf[j] != buf[j] && acc[j] == acc[j])) { acc[j] = buf[j]; am[j] = (double)k; }
        } else if (fn == SR_REDUCE_SUMSQ) {
          for (int64_t j = 0; j < m; j++) acc[j] += buf[j] * buf[j];
        } else {
          for (int64_t j = 0; j < m; j++) acc[j] += buf[j];
        }
      }
    }
  }
  if (fn == SR_REDUCE_MEAN)
    for (int64_t p = 0; p < nout; p++) res[p] /= (double)n;
  for (int64_t p = 0; p < nout; p += CPU_CHUNK) {
    int64_t m = nout - p < CPU_CHUNK ? nout - p : CPU_CHUNK;
    cpu_scatter(out, p, m, res + p);
    if (idx) cpu_scatter(idx, p, m, arg + p);
  }
  free(res);
  free(copy);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** softmax: out[r,:] = softmax(x[r,:]) or log_softmax; x, out [N,C] contiguous */
const char *sr_cpu_softmax(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  const char *e = cpu_check_floats(c, 0, 2);
  if (e) return e;
  int logsm = c->i[0] == 1;
  int64_t C = x->ndim ? x->shape[x->ndim - 1] : 1, N = C ? sr_numel(x) / C : 0;
  double *all = cpu_thread_buffers(2 * C);
  if (!all) return CPU_OOM;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *row = cpu_thread_slice(all, 2 * C), *ex = row + C;  /* ex: log_softmax's scratch */
#pragma omp for schedule(static)
    for (int64_t r = 0; r < N; r++) {
      cpu_load(x, x->offset + r * C, C, row);
      double mx = cpu_max_of(row, C, -INFINITY);
      if (logsm) {
        double lse = mx + log(cpu_exp_sum(ex, row, C, mx, x->dtype != SR_F64));
        for (int64_t j = 0; j < C; j++) row[j] -= lse;
      } else {
        double inv = 1.0 / cpu_exp_sum(row, row, C, mx, x->dtype != SR_F64);
        for (int64_t j = 0; j < C; j++) row[j] *= inv;
      }
      cpu_store(out, out->offset + r * C, C, row);
    }
  }
  free(all);
  return NULL;
}

/* softmax_backward: dx = y*(dy - sum(dy*y)); log_softmax: dx = dy - exp(y)*sum(dy) */
const char *sr_cpu_softmax_backward(const sr_kcall *c) {
  sr_tensor *dx = c->t[0], *dout = c->t[1], *y = c->t[2];
  const char *e = cpu_check_floats(c, 0, 3);
  if (e) return e;
  int logsm = c->i[0] == 1;
  int64_t C = y->ndim ? y->shape[y->ndim - 1] : 1, N = C ? sr_numel(y) / C : 0;
  double *all = cpu_thread_buffers(2 * C);
  if (!all) return CPU_OOM;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *yr = cpu_thread_slice(all, 2 * C), *gr = yr + C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < N; r++) {
      cpu_load(y, y->offset + r * C, C, yr);
      cpu_load(dout, dout->offset + r * C, C, gr);
      double s = 0;
      if (logsm) {
        for (int64_t j = 0; j < C; j++) s += gr[j];
        for (int64_t j = 0; j < C; j++) gr[j] -= cpu_exp(yr[j]) * s;
      } else {
        for (int64_t j = 0; j < C; j++) s += gr[j] * yr[j];
        for (int64_t j = 0; j < C; j++) gr[j] = yr[j] * (gr[j] - s);
      }
      cpu_store(dx, dx->offset + r * C, C, gr);
    }
  }
  free(all);
  return NULL;
}
