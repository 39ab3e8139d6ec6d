/*
** core/ops_common.h: argument checks and the tape helper shared by the front-end op files
** (host/core/ops.c, ops_matmul.c, ops_nn.c, ops_flex.c, ops_optim.c, ops_fp8.c); private to them.
*/
#ifndef SR_OPS_COMMON_H
#define SR_OPS_COMMON_H

#include "core/autograd.h"  /* defines: sr_node_new, sr_node_attach, sr_needs_grad */
#include "core/copy.h"      /* defines: sr_to_raw */
#include "core/tensor.h"    /* defines: sr_tensor, sr_fail, sr_shape_str */

#define SHP(x, buf) sr_shape_str((x), (buf), sizeof(buf))

sr_tensor *sr_sum_to_raw(sr_tensor *g, int ndim, const int64_t *shape);   /* reduce broadcast dims (ops.c) */

/* the gradient of node n's input i from a gradient of the broadcast output's shape: summed over
** the broadcast dims, in the input's dtype */
static inline sr_tensor *reduce_grad(sr_node *n, int i, sr_tensor *g) {
  sr_tensor *r = sr_sum_to_raw(g, n->in_ndim[i], n->in_shape[i]);
  if (r->dtype != n->in_dtype[i]) {
    sr_tensor *c = sr_to_raw(r, r->storage->device, n->in_dtype[i]);
    sr_tensor_release(r);
    r = c;
  }
  return r;
}

/* dtype of per-row statistics and parameter-gradient accumulators: f64 for f64 inputs (so
** gradchecks see full precision), else f32 */
static inline sr_dtype side_dtype(const sr_tensor *x) { return x->dtype == SR_F64 ? SR_F64 : SR_F32; }

static inline void check_float(const char *op, int arg, const sr_tensor *x) {
  if (!sr_dtype_is_float(x->dtype) || x->dtype == SR_F8E4M3 || x->dtype == SR_F8E5M2)
    sr_fail("%s: bad argument #%d (expected a float32, float64 or bfloat16 tensor, got %s)", op, arg, sr_dtype_name(x->dtype));
}

static inline void check_same_device(const char *op, const sr_tensor *a, const sr_tensor *b) {
  if (a->storage->device != b->storage->device)
    sr_fail("%s: tensors on different devices (%s and %s)", op, sr_device_name(a->storage->device), sr_device_name(b->storage->device));
}

static inline void check_same_dtype(const char *op, int arg, const sr_tensor *a, const sr_tensor *b) {
  if (a->dtype != b->dtype)
    sr_fail("%s: bad argument #%d (dtype %s does not match %s)", op, arg, sr_dtype_name(b->dtype), sr_dtype_name(a->dtype));
}

static inline int wrap(const char *op, int dim, int ndim) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= (ndim ? ndim : 1)) sr_fail("%s: dimension %d out of range for a %d-d tensor", op, dim, ndim);
  return d;
}

/* record a node for a one-output op when any input requires grad */
static inline sr_node *record(const char *name, sr_backward_fn bw, int nin, sr_tensor *const *in, sr_tensor *out) {
  if (!sr_needs_grad(nin, in)) return NULL;
  sr_node *n = sr_node_new(name, bw, nin, in);
  sr_node_attach(n, 1, &out);
  sr_node_release(n);  /* the output holds it now */
  return n;
}


/* the dtype mixed operands promote to: f64 > f32 > bf16 > i32 */
static inline sr_dtype wider_dtype(sr_dtype a, sr_dtype b) {
  static const int rank[SR_NDTYPES] = {[SR_F64] = 4, [SR_F32] = 3, [SR_BF16] = 2, [SR_I32] = 1};
  return rank[a] >= rank[b] ? a : b;
}

/* the dtype of a binary op's result, as PyTorch's result_type: the wider dtype, except that a 0-d
** float tensor (a learned scalar such as lambdas[1]) does not widen a float tensor with
** dimensions: bf16 [B,T,C] * f32 [] is bf16 */
static inline sr_dtype result_dtype(const sr_tensor *a, const sr_tensor *b) {
  bool fa = a->dtype != SR_I32, fb = b->dtype != SR_I32;
  if (fa && fb && (a->ndim == 0) != (b->ndim == 0)) return a->ndim ? a->dtype : b->dtype;
  return wider_dtype(a->dtype, b->dtype);
}

/* attention's layouts (sdpa, flex): the CPU references and the CUDA flash kernels (bf16, D 64/128,
** unit stride in D) read q, k, v and the gradient as any [B,H,T,D] view (q, k, v straight out of a
** projection, no copies) and write their outputs in [B,T,H,D] memory order (new_bthd), so the
** records' transpose(2, 3):reshape(B, T, C) after them is a view; CUDA's plain kernels want
** contiguous tensors */
static inline bool attn_takes_views(const sr_tensor *q, bool flash) { return flash || q->storage->device == SR_CPU; }

/* a dense [B,H,T,D] tensor laid out in [B,T,H,D] memory order: the flash kernels' layout
** (sdpa and flex attention outputs and gradients) */
static inline sr_tensor *new_bthd(const sr_tensor *like) {
  int64_t B = like->shape[0], H = like->shape[1], T = like->shape[2], D = like->shape[3];
  sr_tensor *m = sr_tensor_new(like->dtype, like->storage->device, 4, (int64_t[]){B, T, H, D});
  sr_tensor *r = sr_transpose(m, 1, 2);
  sr_tensor_release(m);
  return r;
}

#endif
