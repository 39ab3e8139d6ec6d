/*
** cpu/scan.c: CPU reference of cumsum over rows (kernels/scan.cu): prefix sums, or suffix sums
** (reverse: the backward of a prefix sum). Rows are the last dim of a contiguous [R, N] tensor;
** the front-end (host/core/ops_order.c, sr_cumsum) moves any dim there. Floats accumulate in double and
** each output is rounded once to the dtype; int32 accumulates in int64 and stores the low 32
** bits, as a two's complement sum wraps. Rows run in parallel; each row is one sequential pass,
** so no result depends on the thread count.
*/
#include <stdint.h>      /* defines: int64_t, int32_t, uint32_t */

#include "cpu/common.h"  /* defines: cpu_ld, cpu_st, cpu_check_dtype, CPU_PAR_MIN */

/* one row of n: out[j] = sum of x over [0, j] (or [j, n) when reverse) */
static void scan_row(const sr_tensor *x, sr_tensor *out, int64_t base, int64_t n, int reverse) {
  const void *xs = x->storage->data;
  void *os = out->storage->data;
  int64_t xo = x->offset + base, oo = out->offset + base;
  if (x->dtype == SR_I32) {
    int64_t acc = 0;
    for (int64_t k = 0; k < n; k++) {
      int64_t j = reverse ? n - 1 - k : k;
      acc += ((const int32_t *)xs)[xo + j];
      ((int32_t *)os)[oo + j] = (int32_t)(uint32_t)acc;
    }
    return;
  }
  double acc = 0;
  for (int64_t k = 0; k < n; k++) {
    int64_t j = reverse ? n - 1 - k : k;
    acc += cpu_ld(xs, x->dtype, xo + j);
    cpu_st(os, out->dtype, oo + j, acc);
  }
}

/* cumsum: t0 out [R, N], t1 x [R, N] (contig, one dtype); i0 reverse */
const char *sr_cpu_cumsum(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  const char *e = cpu_check_dtype(x, 2, true);
  if (e) return e;
  if (out->dtype != x->dtype) return "out and x must share one dtype";
  if (!sr_is_contiguous(out) || !sr_is_contiguous(x) || sr_numel(out) != sr_numel(x)) return "out and x must be contiguous, same size";
  int64_t N = x->ndim ? x->shape[x->ndim - 1] : 1, R = N ? sr_numel(x) / N : 0;
#pragma omp parallel for schedule(static) if (R * N > CPU_PAR_MIN && R > 1)
  for (int64_t r = 0; r < R; r++) scan_row(x, out, r * N, N, (int)c->i[0]);
  return NULL;
}
