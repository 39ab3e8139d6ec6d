/*
** core/copy.h: raw copies, fills and transfers (no autograd), above the tensor core: they run the
** copy and fill kernels of the registry (host/core/copy.c).
*/
#ifndef SR_COPY_H
#define SR_COPY_H

#include "core/tensor.h"  /* defines: sr_tensor, sr_device, sr_dtype */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- copies and transfers (raw: no autograd) */
void sr_copy_(sr_tensor *dst, const sr_tensor *src);   /* any dtype/device/strides, same numel & shape */
sr_tensor *sr_contiguous_raw(sr_tensor *x);           /* retains x itself when already contiguous */
sr_tensor *sr_to_raw(sr_tensor *x, sr_device d, sr_dtype t);
void sr_fill_(sr_tensor *x, double v);
sr_tensor *sr_tensor_zeros(sr_dtype t, sr_device d, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
