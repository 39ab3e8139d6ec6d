/*
** core/ops_flex.c: flex attention (FlexAttention's job: attention over a block mask) and its block
** masks (see ops.h; the mask's layout: core/flex.h); argument checks, output allocation, kernel
** calls and the backward rule beside the forward.
*/
#include <math.h>  /* defines: sqrt */

#include "core/copy.h"        /* defines: sr_contiguous_raw, sr_tensor_zeros */
#include "core/flex.h"        /* defines: sr_flex_cols */
#include "core/ops.h"
#include "core/ops_common.h"  /* defines: SHP, side_dtype, check_*, record, new_bthd */

/* ------------------------------------------------------------------------------------------ */
/* block masks */

static void check_blocks(const char *op, int64_t T, int64_t block) {
  if (block < 1 || T < block || T % block != 0)
    sr_fail("%s: T (%lld) must be a positive multiple of the block size (%lld)", op, (long long)T, (long long)block);
}

static void check_i32(const char *op, const char *what, const sr_tensor *x, sr_device dev, int64_t numel) {
  char b1[96];
  if (x->dtype != SR_I32) sr_fail("%s: %s must be int32, got %s", op, what, sr_dtype_name(x->dtype));
  if (x->storage->device != dev)
    sr_fail("%s: %s is on %s, the mask on %s", op, what, sr_device_name(x->storage->device), sr_device_name(dev));
  if (sr_numel(x) != numel) sr_fail("%s: %s has shape %s, expected %lld elements", op, what, SHP(x, b1), (long long)numel);
}

static sr_tensor *new_mask(int64_t T, int64_t block, sr_device dev) {
  int64_t nb = T / block;
  return sr_tensor_new(SR_I32, dev, 2, (int64_t[]){nb, sr_flex_cols(nb, block)});
}

sr_tensor *sr_flex_block_mask(int64_t T, int64_t block, sr_device dev, bool causal, sr_tensor *doc, int64_t window,
                              sr_tensor *wt, int64_t wb, sr_tensor *wbt) {
  const char *op = "block_mask";
  check_blocks(op, T, block);
  if (doc) check_i32(op, "doc_ids", doc, dev, T);
  if (wt) check_i32(op, "window", wt, dev, 1);
  if (wbt) check_i32(op, "window_blocks", wbt, dev, 1);
  if (window < 0) sr_fail("%s: window must be >= 0 (0: none), got %lld", op, (long long)window);
  if (!wbt && wb < 0) sr_fail("%s: window_blocks must be >= 1, got %lld", op, (long long)wb);
  int m = sr_scratch_mark();
  sr_tensor *dc = doc ? sr_scratch_push(sr_contiguous_raw(doc)) : NULL;
  sr_tensor *bm = sr_scratch_push(new_mask(T, block, dev));
  sr_kcall c = {.t = {bm, dc, wbt, wt}, .nt = 4, .i = {causal, window, wb}};
  sr_kernel_run(SR_K_flex_block_mask, &c);
  return sr_scratch_return(m, bm);
}

sr_tensor *sr_flex_block_mask_lists(int64_t T, int64_t block, sr_device dev, sr_tensor *kv_num, sr_tensor *kv_idx,
                                    sr_tensor *full_num, sr_tensor *full_idx, sr_tensor *doc) {
  const char *op = "block_mask_from_lists";
  check_blocks(op, T, block);
  int64_t nb = T / block;
  check_i32(op, "kv_num_blocks", kv_num, dev, nb);
  check_i32(op, "kv_indices", kv_idx, dev, nb * nb);
  if (!full_num != !full_idx) sr_fail("%s: full_kv_num_blocks and full_kv_indices go together", op);
  if (full_num) {
    check_i32(op, "full_kv_num_blocks", full_num, dev, nb);
    check_i32(op, "full_kv_indices", full_idx, dev, nb * nb);
  }
  if (doc) check_i32(op, "doc_ids", doc, dev, T);
  int m = sr_scratch_mark();
  sr_tensor *in[5] = {kv_num, kv_idx, full_num, full_idx, doc};
  for (int j = 0; j < 5; j++)
    if (in[j]) in[j] = sr_scratch_push(sr_contiguous_raw(in[j]));
  sr_tensor *bm = sr_scratch_push(new_mask(T, block, dev));
  sr_kcall c = {.t = {bm, in[0], in[1], in[2], in[3], in[4]}, .nt = 6};
  sr_kernel_run(SR_K_flex_block_mask_lists, &c);  /* may fail on a bad index: all on the scratch list */
  return sr_scratch_return(m, bm);
}

/* ------------------------------------------------------------------------------------------ */
/* flex attention: q, k, v [B, H, T, D] */

static void flex_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0];
  if (!g) return;
  sr_tensor *q = sr_node_saved(n, 0), *k = sr_node_saved(n, 1), *v = sr_node_saved(n, 2);
  sr_tensor *o = sr_node_saved(n, 3), *lse = sr_node_saved(n, 4), *bm = sr_node_saved(n, 5);
  sr_tensor *wt = n->saved[6] ? sr_node_saved(n, 6) : NULL;
  bool flash = n->i[3], views = attn_takes_views(q, flash);
  sr_tensor *gc = views && (!flash || g->stride[3] == 1) ? sr_tensor_retain(g) : sr_contiguous_raw(g);
  sr_tensor *dq = views ? new_bthd(q) : sr_tensor_new_like(q);
  sr_tensor *dk = views ? new_bthd(k) : sr_tensor_new_like(k);
  sr_tensor *dv = views ? new_bthd(v) : sr_tensor_new_like(v);
  sr_kcall c = {.t = {dq, dk, dv, gc, q, k, v, o, lse, bm, wt}, .nt = 11, .f = {n->f[0]}, .i = {n->i[0], n->i[1], n->i[2]}};
  sr_kernel_run(SR_K_flex_attention_backward, &c);
  sr_tensor_release(gc);
  gi[0] = dq; gi[1] = dk; gi[2] = dv;
}

sr_tensor *sr_flex_attention(sr_tensor *q, sr_tensor *k, sr_tensor *v, sr_tensor *bm, bool causal, int64_t window,
                             sr_tensor *wt, bool has_doc, double scale) {
  const char *op = "flex_attention";
  char b1[96], b2[96];
  sr_tensor *in[3] = {q, k, v};
  for (int i = 0; i < 3; i++) {
    check_float(op, i + 1, in[i]);
    check_same_device(op, q, in[i]);
    check_same_dtype(op, i + 1, q, in[i]);
    if (in[i]->ndim != 4 || !sr_same_shape(q, in[i]))
      sr_fail("%s: bad argument #%d (shape %s; q, k and v must all be [B, H, T, D], q is %s)", op, i + 1, SHP(in[i], b1), SHP(q, b2));
  }
  check_same_device(op, q, bm);
  int64_t T = q->shape[2], D = q->shape[3], nb = bm->ndim == 2 ? bm->shape[0] : 0;
  if (bm->dtype != SR_I32 || bm->ndim != 2 || nb < 1 || bm->shape[1] <= 4 * nb + 4 || !sr_is_contiguous(bm))
    sr_fail("%s: bad argument #4 (not a block mask: %s %s)", op, sr_dtype_name(bm->dtype), SHP(bm, b1));
  int64_t block = bm->shape[1] - 4 * nb - 4;
  if (nb * block != T)
    sr_fail("%s: bad argument #4 (the mask covers %lld tokens in blocks of %lld, q has T = %lld)", op, (long long)(nb * block),
            (long long)block, (long long)T);
  if (window < 0) sr_fail("%s: window must be >= 0", op);
  if (wt) check_i32(op, "window", wt, q->storage->device, 1);
  if (scale <= 0) scale = 1.0 / sqrt((double)D);
  /* the CUDA flash kernels (bf16, D 64/128, blocks of 128) and the CPU reference take strided views
  ** and write out in [B,T,H,D] memory order, as sdpa's (ops_common.h, attn_takes_views) */
  bool flash = q->storage->device == SR_CUDA && q->dtype == SR_BF16 && (D == 64 || D == 128) && block == 128 &&
               q->stride[3] == 1 && k->stride[3] == 1 && v->stride[3] == 1;
  bool views = attn_takes_views(q, flash);
  int m = sr_scratch_mark();
  sr_tensor *qc = sr_scratch_push(views ? sr_tensor_retain(q) : sr_contiguous_raw(q));
  sr_tensor *kc = sr_scratch_push(views ? sr_tensor_retain(k) : sr_contiguous_raw(k));
  sr_tensor *vc = sr_scratch_push(views ? sr_tensor_retain(v) : sr_contiguous_raw(v));
  sr_tensor *o = sr_scratch_push(views ? new_bthd(q) : sr_tensor_new_like(qc));
  sr_tensor *lse = sr_scratch_push(sr_tensor_new(side_dtype(q), q->storage->device, 3, q->shape));
  sr_kcall c = {.t = {o, lse, qc, kc, vc, bm, wt}, .nt = 7, .f = {scale}, .i = {causal, window, has_doc}};
  sr_kernel_run(SR_K_flex_attention, &c);
  sr_node *n = record(op, flex_backward, 3, in, o);
  if (n) {
    sr_node_save(n, 0, qc); sr_node_save(n, 1, kc); sr_node_save(n, 2, vc);
    /* o as a plain view: saving o itself would make o -> node -> o a cycle */
    sr_tensor *ov = sr_as_strided(o, o->ndim, o->shape, o->stride, o->offset);
    sr_node_save(n, 3, ov); sr_node_save(n, 4, lse); sr_node_save(n, 5, bm);
    if (wt) sr_node_save(n, 6, wt);
    sr_tensor_release(ov);
    n->f[0] = scale; n->i[0] = causal; n->i[1] = window; n->i[2] = has_doc; n->i[3] = flash;
  }
  return sr_scratch_return(m, o);
}
