/*
** core/ops.h: the front-end ops. Each checks its arguments (failing with "<op>: bad argument #k
** (...)"), allocates outputs, runs registry kernels and, when an input requires grad, records
** a tape node with its backward rule. All return a new reference. The *_raw helpers never
** touch the tape. Defined in host/core/ops.c (element-wise, reductions, matmul, casts, views),
** ops_nn.c (embedding, norms, softmax, cross-entropy, rotary, attention), ops_flex.c (flex
** attention and its block masks), ops_optim.c (AdamW, clipping) and ops_fp8.c (float8 casts and
** GEMMs).
*/
#ifndef SR_OPS_H
#define SR_OPS_H

#include "core/registry.h"  /* defines: sr_unary_fn, sr_binary_fn, sr_reduce_fn */
#include "core/tensor.h"    /* defines: sr_tensor */

/* ---- raw helpers (no tape) */
sr_tensor *sr_unary_raw(sr_unary_fn fn, sr_tensor *x, double p);
sr_tensor *sr_binary_raw(sr_binary_fn fn, sr_tensor *a, sr_tensor *b);
void sr_binary_inplace(sr_binary_fn fn, sr_tensor *a, sr_tensor *b);  /* a = fn(a, b), b broadcast to a */
void sr_unary_inplace(sr_unary_fn fn, sr_tensor *a, double p);
sr_tensor *sr_reduce_raw(sr_reduce_fn fn, sr_tensor *x, int dim, sr_tensor **idx);  /* keeps dim (size 1) */
sr_tensor *sr_rows_raw(sr_tensor *x, int64_t K);  /* x as rows [-1, K], copied when strides forbid a view */
/* a row kernel (t0 out, t1 x; i0) along dim, no tape; *rows (if given) its [R, N] output (ops_order.c) */
sr_tensor *sr_along_dim(sr_kernel_id k, sr_tensor *x, int dim, sr_dtype dt, int64_t i0, sr_tensor **rows);
sr_tensor *sr_gemm_raw(sr_tensor *a, bool ta, sr_tensor *b, bool tb);     /* [B,M,N] or [M,N] */
sr_tensor *sr_scalar_like(sr_tensor *x, double v);                   /* 0-d tensor, x's dtype/device */

/* ---- differentiable ops */
sr_tensor *sr_unary(sr_unary_fn fn, sr_tensor *x, double p);
void sr_unary_(sr_unary_fn fn, sr_tensor *x, double p);  /* in place, differentiable (ops.c) */
sr_tensor *sr_binary(sr_binary_fn fn, sr_tensor *a, sr_tensor *b);
sr_tensor *sr_where(sr_tensor *cond, sr_tensor *a, sr_tensor *b);
sr_tensor *sr_reduce(sr_reduce_fn fn, sr_tensor *x, int dim, bool keepdim);  /* MAX: values */
sr_tensor *sr_argmax(sr_tensor *x, int dim, bool keepdim);                   /* i32 */
/* inclusive prefix sums along dim (float or int32; differentiable for floats) */
sr_tensor *sr_cumsum(sr_tensor *x, int dim);
/* the stable order along dim as int32 indices (equal keys in index order), ascending or descending */
sr_tensor *sr_argsort(sr_tensor *x, int dim, bool descending);
sr_tensor *sr_sum_all(sr_tensor *x);
sr_tensor *sr_matmul(sr_tensor *a, sr_tensor *b);
sr_tensor *sr_linear(sr_tensor *x, sr_tensor *w, sr_tensor *bias);           /* x[...,K] w[N,K] bias[N] */
sr_tensor *sr_embedding(sr_tensor *weight, sr_tensor *idx);
sr_tensor *sr_rms_norm(sr_tensor *x, sr_tensor *weight, double eps);
sr_tensor *sr_layer_norm(sr_tensor *x, sr_tensor *weight, sr_tensor *bias, double eps);
sr_tensor *sr_softmax(sr_tensor *x, int dim, bool log);
/* reduction 0 mean 1 sum 2 none; inplace: the forward overwrites logits with their gradient
** (mean/sum, when recording; see ops.c) */
sr_tensor *sr_cross_entropy(sr_tensor *logits, sr_tensor *targets, int64_t ignore_index, int reduction, bool inplace);
sr_tensor *sr_rotary(sr_tensor *x, sr_tensor *cos, sr_tensor *sin);
sr_tensor *sr_sdpa(sr_tensor *q, sr_tensor *k, sr_tensor *v, bool causal, double scale);
/* flex attention (ops_flex.c; the block mask: core/flex.h). Block masks over T tokens in blocks of
** `block`, on device dev: from components (doc ids [T] i32 or NULL; window in tokens, 0 none, or
** wt, one i32 on dev; window in blocks, 0 none, or wbt, one i32 on dev) or from FlexAttention's
** kv-block lists (full lists may be NULL); the attention over a mask with its element mask
** (causal, window or wt, has_doc). A window tensor is read on the device when the kernels run, so
** a captured step sees the value it holds at each replay. */
sr_tensor *sr_flex_block_mask(int64_t T, int64_t block, sr_device dev, bool causal, sr_tensor *doc, int64_t window,
                              sr_tensor *wt, int64_t wb, sr_tensor *wbt);
sr_tensor *sr_flex_block_mask_lists(int64_t T, int64_t block, sr_device dev, sr_tensor *kv_num, sr_tensor *kv_idx,
                                    sr_tensor *full_num, sr_tensor *full_idx, sr_tensor *doc);
sr_tensor *sr_flex_attention(sr_tensor *q, sr_tensor *k, sr_tensor *v, sr_tensor *bm, bool causal, int64_t window,
                             sr_tensor *wt, bool has_doc, double scale);
sr_tensor *sr_cast(sr_tensor *x, sr_dtype dt);
/* float8 (host/core/ops_fp8.c; no tape): x.mul(scale).to(dt), rounded to nearest even, saturating
** when sat; torch._scaled_mm: scale_a * scale_b * a [M,K] row-major @ b [K,N] column-major, the
** scales numbers or (sa, sb) one-element f32 tensors, out bf16 or f32 */
sr_tensor *sr_to_fp8(sr_tensor *x, sr_dtype dt, double scale, bool sat);
sr_tensor *sr_scaled_mm(sr_tensor *a, sr_tensor *b, double scale_a, double scale_b, sr_tensor *sa, sr_tensor *sb,
                        sr_dtype out_dtype, bool fast_accum);
sr_tensor *sr_to_device(sr_tensor *x, sr_device d);
sr_tensor *sr_contiguous(sr_tensor *x);
sr_tensor *sr_clone(sr_tensor *x);

/* ---- differentiable views */
sr_tensor *sr_reshape(sr_tensor *x, int ndim, const int64_t *shape);   /* view when possible, else copy */
sr_tensor *sr_view_op(sr_tensor *x, int ndim, const int64_t *shape);
sr_tensor *sr_transpose_op(sr_tensor *x, int d0, int d1);
sr_tensor *sr_permute_op(sr_tensor *x, const int *perm);
sr_tensor *sr_narrow_op(sr_tensor *x, int dim, int64_t start, int64_t length);
/* split x along dim into n (<= 4) views of the given sizes (summing to the dim); one tape node */
int sr_split_op(sr_tensor *x, int dim, int n, const int64_t *sizes, sr_tensor **out);
sr_tensor *sr_unsqueeze_op(sr_tensor *x, int dim);
sr_tensor *sr_squeeze_op(sr_tensor *x, int dim);
sr_tensor *sr_expand_op(sr_tensor *x, int ndim, const int64_t *shape);
sr_tensor *sr_cat(int n, sr_tensor *const *xs, int dim);

/* ---- optimizer (no tape; in place) */
/* sched: NULL, or a float32 tensor {lr, step} on param's device that overrides lr and step
** (device-side values: a CUDA graph replay of the step sees the current ones) */
void sr_adamw_(sr_tensor *param, sr_tensor *grad, sr_tensor *m, sr_tensor *v, double lr, double b1,
               double b2, double eps, double wd, int64_t step, sr_tensor *sched);
/* the same over n parameters in one kernel call (adamw_multi): list holds (param, grad, m, v)
** for each, every param of one dtype and every grad of one dtype */
void sr_adamw_multi_(int n, sr_tensor *const *list, double lr, double b1, double b2, double eps, double wd,
                     int64_t step, sr_tensor *sched);
/* global gradient-norm clipping without a host read: sum of squares of n tensors into a [1]
** device tensor, then every tensor *= min(1, max_norm / (sqrt(sumsq) + eps)) */
sr_tensor *sr_sumsq_multi(int n, sr_tensor *const *xs);
void sr_clip_multi_(int n, sr_tensor *const *xs, sr_tensor *sumsq, double max_norm, double eps);

#endif
