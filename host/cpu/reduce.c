/*
** cpu/reduce.c: CPU reference of the reductions: reduce (sum, mean, max with argmax, sum of
** squares, over one dim) and softmax / log_softmax with their backward.
** dot: the sum of a * b over two contiguous tensors (chunk partials in double, added in order).
** reduce splits the reduced dim into fixed blocks (sized by the shape alone), reduces each block
** in its own task in double, then combines the blocks in order; softmax rows are one task each. So
** results do not depend on the thread count. max propagates NaN (its index is the first NaN) and
** returns the first index of a tie.
*/
#include <math.h>        /* defines: log, INFINITY */
#include <stdint.h>      /* defines: int64_t */
#include <stdlib.h>      /* defines: malloc, free */

#include "cpu/common.h"  /* defines: cpu_load, cpu_store, cpu_gather, cpu_scatter, cpu_exp */

/* ---------------------------------------------------------------------------------------------
** reduce: x viewed as [outer, n, inner] around dim; out (and idx for max) [outer, 1, inner] */

#define REDUCE_BLOCK 65536   /* elements per task, about */

/* max step: v at position k replaces (acc, arg) if larger, or the first NaN */
static inline void max_step(double v, double k, double *acc, double *arg) {
  if (v > *acc || (v != v && *acc == *acc)) { *acc = v; *arg = k; }
}

/* folds n values v[0..n) at positions k0.. into the running (acc, arg) of fn */
static void reduce_fold(int fn, const double *v, int64_t n, int64_t k0, double *acc, double *arg) {
  double s = 0;
  if (fn == SR_REDUCE_MAX) {
    for (int64_t k = 0; k < n; k++) max_step(v[k], (double)(k0 + k), acc, arg);
    return;
  } else if (fn == SR_REDUCE_SUMSQ) {
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < n; k++) s += v[k] * v[k];
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < n; k++) s += v[k];
  }
  *acc += s;
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
  /* tasks: (outer index, block of rb reduced positions, block of CPU_CHUNK columns); partial
  ** results part/parg [outer, nblk, inner] */
  int64_t nout = outer * inner, cols = inner < CPU_CHUNK ? inner : CPU_CHUNK;
  int64_t rb = REDUCE_BLOCK / cols > 0 ? REDUCE_BLOCK / cols : 1, nblk = n > rb ? (n + rb - 1) / rb : 1;
  int64_t jblocks = (inner + CPU_CHUNK - 1) / CPU_CHUNK;
  double *part = (double *)malloc(sizeof(double) * (size_t)(nout * nblk + 1) * 2), *parg = part + nout * nblk;
  double *res = (double *)malloc(sizeof(double) * (size_t)(nout + 1) * 2), *arg = res + nout;
  if (!part || !res) { free(part); free(res); free(copy); return CPU_OOM; }
  double init = fn == SR_REDUCE_MAX ? -INFINITY : 0.0;
#pragma omp parallel for schedule(dynamic, 1) if (outer * n * inner > CPU_PAR_MIN)
  for (int64_t task = 0; task < outer * nblk * jblocks; task++) {
    double buf[CPU_CHUNK];
    int64_t o = task / (nblk * jblocks), b = task / jblocks % nblk, j0 = task % jblocks * CPU_CHUNK;
    int64_t m = inner - j0 < CPU_CHUNK ? inner - j0 : CPU_CHUNK, k1 = (b + 1) * rb < n ? (b + 1) * rb : n;
    int64_t base = src->offset + o * n * inner;
    double *acc = part + (o * nblk + b) * inner + j0, *am = parg + (o * nblk + b) * inner + j0;
    for (int64_t j = 0; j < m; j++) { acc[j] = init; am[j] = 0; }
    if (inner == 1) {  /* a contiguous run of the row */
      for (int64_t k0 = b * rb; k0 < k1; k0 += CPU_CHUNK) {
        int64_t len = k1 - k0 < CPU_CHUNK ? k1 - k0 : CPU_CHUNK;
        cpu_load(src, base + k0, len, buf);
        reduce_fold(fn, buf, len, k0, acc, am);
      }
    } else {           /* columns j0..j0+m, one row k at a time */
      for (int64_t k = b * rb; k < k1; k++) {
        cpu_load(src, base + k * inner + j0, m, buf);
        if (fn == SR_REDUCE_MAX) {
          for (int64_t j = 0; j < m; j++) max_step(buf[j], (double)k, acc + j, am + j);
        } else if (fn == SR_REDUCE_SUMSQ) {
          for (int64_t j = 0; j < m; j++) acc[j] += buf[j] * buf[j];
        } else {
          for (int64_t j = 0; j < m; j++) acc[j] += buf[j];
        }
      }
    }
  }
  for (int64_t o = 0; o < outer; o++)  /* blocks in order */
    for (int64_t j = 0; j < inner; j++) {
      double a = init, ai = 0;
      for (int64_t b = 0; b < nblk; b++) {
        int64_t q = (o * nblk + b) * inner + j;
        if (fn == SR_REDUCE_MAX) max_step(part[q], parg[q], &a, &ai);
        else a += part[q];
      }
      res[o * inner + j] = a;
      arg[o * inner + j] = ai;
    }
  free(part);
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

/* ---------------------------------------------------------------------------------------------
** dot: out[0] = sum(a * b); chunk sums in double added in chunk order (thread-count free) */
const char *sr_cpu_dot(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *a = c->t[1], *b = c->t[2];
  const char *e = cpu_check_floats(c, 0, 3);
  if (e) return e;
  if (sr_numel(a) != sr_numel(b) || sr_numel(out) != 1) return "dot: a and b must have one numel, out one element";
  if (a->dtype != b->dtype) return "dot: a and b must have one dtype";
  int64_t n = sr_numel(a), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
  double *part = malloc((size_t)(nch > 0 ? nch : 1) * sizeof(double));
  if (!part) return CPU_OOM;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double ab[CPU_CHUNK], bb[CPU_CHUNK], s = 0;
    int64_t i0 = ch * CPU_CHUNK, len = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_load(a, a->offset + i0, len, ab);
    cpu_load(b, b->offset + i0, len, bb);
    for (int64_t j = 0; j < len; j++) s += ab[j] * bb[j];
    part[ch] = s;
  }
  double total = 0;
  for (int64_t ch = 0; ch < nch; ch++) total += part[ch];
  free(part);
  cpu_st(sr_data(out), out->dtype, 0, total);
  return NULL;
}
