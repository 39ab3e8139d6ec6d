/*
** core/ops_order.c: ops along one dim that look at the order of its elements: cumsum (prefix
** sums, differentiable: the gradient is the suffix sum of the upstream gradient) and argsort (the
** stable order, as int32 indices). Kernels: cumsum (host/cpu/scan.c, kernels/scan.cu) and argsort
** (host/cpu/sort.c, kernels/sort.cu). sr_along_dim, their way to any dim, serves softmax too.
*/
#include <stdint.h>  /* defines: INT32_MAX */

#include "core/autograd.h"    /* defines: sr_node */
#include "core/copy.h"        /* defines: sr_contiguous_raw */
#include "core/ops.h"
#include "core/registry.h"    /* defines: sr_kcall, sr_kernel_run, SR_K_cumsum, SR_K_argsort */
#include "core/ops_common.h"  /* defines: wrap, record */

/* kernel k (t0 out, t1 x; i0) over x's rows along dim (out: dtype dt, x's shape): the row
** kernels (softmax, cumsum, argsort) work on a contiguous [R, N] tensor, so another dim goes
** through a transposed copy and back. *rows, when given: the kernel's [R, N] output (a new
** reference; softmax saves it for its backward). */
sr_tensor *sr_along_dim(sr_kernel_id k, sr_tensor *x, int dim, sr_dtype dt, int64_t i0, sr_tensor **rows) {
  int nd = x->ndim;
  sr_tensor *xt = sr_transpose(x, dim, nd - 1);
  sr_tensor *x2 = sr_rows_raw(xt, xt->shape[nd - 1]);
  sr_tensor *y2 = sr_tensor_new(dt, x->storage->device, x2->ndim, x2->shape);
  sr_kcall c = {.t = {y2, x2}, .nt = 2, .i = {i0}};
  sr_kernel_run(k, &c);
  sr_tensor *yt = sr_view(y2, nd, xt->shape);
  sr_tensor *yv = sr_transpose(yt, dim, nd - 1);
  sr_tensor *y = sr_contiguous_raw(yv);
  if (rows) *rows = sr_tensor_retain(y2);
  sr_tensor *tmp[] = {xt, x2, y2, yt, yv};
  for (size_t j = 0; j < 5; j++) sr_tensor_release(tmp[j]);
  return y;
}

static void check_float_or_i32(const char *op, const sr_tensor *x) {
  if (x->dtype != SR_I32 && (!sr_dtype_is_float(x->dtype) || x->dtype == SR_F8E4M3 || x->dtype == SR_F8E5M2))
    sr_fail("%s: bad argument #1 (expected a float32, float64, bfloat16 or int32 tensor, got %s)", op, sr_dtype_name(x->dtype));
}

static void cumsum_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (go[0]) gi[0] = sr_along_dim(SR_K_cumsum, go[0], (int)n->i[0], go[0]->dtype, 1, NULL);  /* suffix sums */
}

sr_tensor *sr_cumsum(sr_tensor *x, int dim) {
  if (x->ndim == 0) sr_fail("cumsum: bad argument #1 (needs at least 1 dimension)");
  dim = wrap("cumsum", dim, x->ndim);
  check_float_or_i32("cumsum", x);
  sr_tensor *y = sr_along_dim(SR_K_cumsum, x, dim, x->dtype, 0, NULL);
  if (x->dtype != SR_I32) {
    sr_node *n = record("cumsum", cumsum_backward, 1, &x, y);
    if (n) n->i[0] = dim;
  }
  return y;
}

sr_tensor *sr_argsort(sr_tensor *x, int dim, bool descending) {
  if (x->ndim == 0) sr_fail("argsort: bad argument #1 (needs at least 1 dimension)");
  dim = wrap("argsort", dim, x->ndim);
  check_float_or_i32("argsort", x);
  if (x->shape[dim] > INT32_MAX) sr_fail("argsort: dimension %d has more than 2^31 - 1 elements", dim + 1);
  return sr_along_dim(SR_K_argsort, x, dim, SR_I32, descending, NULL);
}
