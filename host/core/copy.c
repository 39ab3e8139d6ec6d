/*
** core/copy.c: raw copies, fills and transfers of tensors (no autograd): the layer above the
** tensor core that runs the copy and fill kernels through the dispatcher (host/core/registry.c),
** and moves bytes between devices through the registered CUDA backend.
*/
#include "core/copy.h"
#include "core/registry.h"  /* defines: sr_kernel_run, SR_K_copy, SR_K_fill */

sr_tensor *sr_tensor_zeros(sr_dtype dt, sr_device dev, int ndim, const int64_t *shape) {
  sr_tensor *t = sr_tensor_new(dt, dev, ndim, shape);
  sr_fill_(t, 0.0);
  return t;
}

void sr_fill_(sr_tensor *x, double v) {
  sr_kcall c = {.t = {x}, .nt = 1, .f = {v}};
  sr_kernel_run(SR_K_fill, &c);
  x->storage->version++;
}

void sr_copy_(sr_tensor *dst, const sr_tensor *src) {
  char b1[96], b2[96];
  if (sr_numel(dst) != sr_numel(src) || !sr_same_shape(dst, src))
    sr_fail("copy: shape %s does not match %s", sr_shape_str(src, b1, 96), sr_shape_str(dst, b2, 96));
  sr_device dd = dst->storage->device, sd = src->storage->device;
  if (dd == sd) {
    sr_kcall c = {.t = {dst, (sr_tensor *)src}, .nt = 2};
    sr_kernel_run(SR_K_copy, &c);
  } else {
    /* cross-device: contiguous bytes of src's dtype on src's device, move, then convert */
    sr_tensor *s = sr_contiguous_raw((sr_tensor *)src);
    sr_tensor *staged = sr_tensor_new(src->dtype, dd, src->ndim, src->shape);
    sr_cuda_backend()->copy(sr_data(staged), dd, sr_data(s), sd, (size_t)sr_numel(s) * sr_dtype_size(s->dtype));
    sr_tensor_release(s);
    sr_kcall c = {.t = {dst, staged}, .nt = 2};
    sr_kernel_run(SR_K_copy, &c);
    sr_tensor_release(staged);
  }
  dst->storage->version++;
}

sr_tensor *sr_contiguous_raw(sr_tensor *x) {
  if (sr_is_contiguous(x)) return sr_tensor_retain(x);
  sr_tensor *t = sr_tensor_new_like(x);
  sr_copy_(t, x);
  return t;
}

sr_tensor *sr_to_raw(sr_tensor *x, sr_device d, sr_dtype dt) {
  int m = sr_scratch_mark();
  sr_tensor *t = sr_scratch_push(sr_tensor_new(dt, d, x->ndim, x->shape));
  sr_copy_(t, x);  /* can fail (NaN into int32): t goes with the scratch list */
  return sr_scratch_return(m, t);
}

