/*
** core/ops_nn.c: the layer ops (see ops.h): embedding, rms_norm and layer_norm, softmax and
** log_softmax, cross_entropy, rotary and scaled dot-product attention; argument checks, output
** allocation, kernel calls and each op's backward rule beside its forward.
*/
#include <math.h>      /* defines: sqrt */
#include <stdlib.h>    /* defines: getenv */
#include <string.h>    /* defines: memcpy */

#include "core/autograd.h"  /* defines: sr_node_new, sr_node_attach */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_fill_, sr_contiguous_raw */
#include "core/ops.h"
#include "core/ops_common.h"  /* defines: SHP, side_dtype, check_*, wrap, record, new_bthd */

/* ------------------------------------------------------------------------------------------ */
/* embedding: out[..., C] = weight[idx[...], :] */

static void embedding_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *idx = sr_node_saved(n, 0);
  if (!g || !n->needs[0]) return;
  int64_t C = n->in_shape[0][1];
  sr_tensor *dw = sr_tensor_zeros(n->in_dtype[0], n->in_device[0], 2, n->in_shape[0]);
  sr_tensor *g2 = sr_rows_raw(g, C);
  sr_kcall c = {.t = {dw, g2, idx}, .nt = 3};
  sr_kernel_run(SR_K_embedding_backward, &c);
  sr_tensor_release(g2);
  gi[0] = dw;
}

sr_tensor *sr_embedding(sr_tensor *weight, sr_tensor *idx) {
  char b1[96];
  check_float("embedding", 1, weight);
  check_same_device("embedding", weight, idx);
  if (weight->ndim != 2) sr_fail("embedding: bad argument #1 (weight must be 2-D [V, C], got %s)", SHP(weight, b1));
  if (idx->dtype != SR_I32) sr_fail("embedding: bad argument #2 (indices must be int32, got %s)", sr_dtype_name(idx->dtype));
  if (idx->ndim >= SR_MAXDIM) sr_fail("embedding: bad argument #2 (indices have %d dimensions, at most %d)", idx->ndim, SR_MAXDIM - 1);
  int64_t C = weight->shape[1];
  int m = sr_scratch_mark();  /* the kernel fails on an index out of range: nothing may stay alive */
  sr_tensor *w = sr_scratch_push(sr_contiguous_raw(weight));
  sr_tensor *ic = sr_scratch_push(sr_contiguous_raw(idx));
  sr_tensor *flat = sr_scratch_push(sr_view(ic, 1, (int64_t[]){-1}));
  sr_tensor *y2 = sr_scratch_push(sr_tensor_new(weight->dtype, weight->storage->device, 2, (int64_t[]){sr_numel(idx), C}));
  sr_kcall c = {.t = {y2, w, flat}, .nt = 3};
  sr_kernel_run(SR_K_embedding, &c);
  int64_t shape[SR_MAXDIM];
  memcpy(shape, idx->shape, sizeof shape);
  shape[idx->ndim] = C;
  sr_tensor *y = sr_scratch_push(sr_view(y2, idx->ndim + 1, shape));
  sr_node *n = record("embedding", embedding_backward, 1, &weight, y);
  if (n) sr_node_save(n, 0, flat);
  return sr_scratch_return(m, y);
}

/* ------------------------------------------------------------------------------------------ */
/* rms_norm / layer_norm over the last dim */

/* the norm kernels' dx += (i0 = 1) on this device: always on the CPU; on cuda unless SR_NORM_ACC=0
** (measured on an H100, 2026-12-07: record 12's norm backwards and gradient adds 80.8 -> 70.8 ms a
** step, bench/RESULTS.md) */
static bool norm_acc_on(const sr_tensor *x) {
  static int cuda = -1;   /* read once, as the kernels' switches are */
  if (cuda < 0) {
    const char *e = getenv("SR_NORM_ACC");
    cuda = !(e && e[0] == '0' && e[1] == 0);
  }
  return x->storage->device == SR_CPU || cuda;
}

/* a norm backward's dx [N, C]: the gradient its input has so far when the kernel may add into it
** (autograd.h, accumulate: *acc = 1), else a new tensor */
static sr_tensor *norm_dx(sr_node *n, sr_tensor *x2, int *acc) {
  sr_tensor *a = n->needs[0] && norm_acc_on(x2) ? sr_grad_acc_target(n, 0) : NULL;
  *acc = a != NULL;
  return a ? sr_view(a, 2, x2->shape) : sr_tensor_new_like(x2);
}

/* input 0's gradient from dx: returned, or (added into the sum so far) its version bumped */
static void norm_dx_done(sr_node *n, sr_tensor **gi, sr_tensor *dx, int acc) {
  if (acc) dx->storage->version++;
  else if (n->needs[0]) gi[0] = sr_view(dx, n->in_ndim[0], n->in_shape[0]);
  sr_tensor_release(dx);
}

static void rms_norm_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *x2 = sr_node_saved(n, 0), *w = sr_node_saved(n, 1), *rstd = sr_node_saved(n, 2);
  if (!g) return;
  int64_t C = x2->shape[1];
  sr_tensor *g2 = sr_rows_raw(g, C);
  int acc;
  sr_tensor *dx = norm_dx(n, x2, &acc);
  sr_tensor *dw = w && n->needs[1] ? sr_tensor_zeros(side_dtype(x2), w->storage->device, 1, w->shape) : NULL;
  sr_kcall c = {.t = {dx, dw, g2, x2, w, rstd}, .nt = 6, .i = {acc}};
  sr_kernel_run(SR_K_rms_norm_backward, &c);
  sr_tensor_release(g2);
  norm_dx_done(n, gi, dx, acc);
  if (dw) { gi[1] = sr_to_raw(dw, dw->storage->device, n->in_dtype[1]); sr_tensor_release(dw); }
}

static void check_norm_param(const char *op, int arg, sr_tensor *x, sr_tensor *p) {
  char b1[96];
  if (!p) return;
  check_same_device(op, x, p);
  check_same_dtype(op, arg, x, p);
  if (p->ndim != 1 || p->shape[0] != x->shape[x->ndim - 1])
    sr_fail("%s: bad argument #%d (shape %s, expected [%lld])", op, arg, SHP(p, b1), (long long)x->shape[x->ndim - 1]);
}

/* y again from the saved x and weight (autograd.h, "recompute"; the kernel's rstd is dropped) */
static sr_tensor *rms_norm_recompute(sr_node *n) {
  sr_tensor *x2 = sr_node_saved(n, 0), *w = sr_node_saved(n, 1);
  int m = sr_scratch_mark();
  sr_tensor *y2 = sr_scratch_push(sr_tensor_new_like(x2));
  sr_tensor *rstd = sr_scratch_push(sr_tensor_new(side_dtype(x2), x2->storage->device, 1, x2->shape));
  sr_kcall c = {.t = {y2, rstd, x2, w}, .nt = 4, .f = {n->f[0]}};
  sr_kernel_run(SR_K_rms_norm, &c);
  return sr_scratch_return(m, sr_scratch_push(sr_view(y2, n->out_ndim[0], n->out_shape[0])));
}

sr_tensor *sr_rms_norm(sr_tensor *x, sr_tensor *weight, double eps) {
  check_float("rms_norm", 1, x);
  if (x->ndim < 1) sr_fail("rms_norm: bad argument #1 (needs at least 1 dimension)");
  check_norm_param("rms_norm", 2, x, weight);
  int64_t C = x->shape[x->ndim - 1];
  sr_tensor *x2 = sr_rows_raw(x, C);
  sr_tensor *w = weight ? sr_contiguous_raw(weight) : NULL;
  sr_tensor *y2 = sr_tensor_new_like(x2);
  sr_tensor *rstd = sr_tensor_new(side_dtype(x), x->storage->device, 1, x2->shape);
  sr_kcall c = {.t = {y2, rstd, x2, w}, .nt = 4, .f = {eps}};
  sr_kernel_run(SR_K_rms_norm, &c);
  sr_tensor *y = sr_view(y2, x->ndim, x->shape);
  sr_tensor_release(y2);
  sr_tensor *in[2] = {x, weight};
  sr_node *n = record("rms_norm", rms_norm_backward, 2, in, y);
  if (n) {
    sr_node_save(n, 0, x2); sr_node_save(n, 1, w); sr_node_save(n, 2, rstd);
    n->f[0] = eps;
    n->recompute = rms_norm_recompute;
  }
  sr_tensor_release(x2); sr_tensor_release(w); sr_tensor_release(rstd);
  return y;
}

static void layer_norm_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *x2 = sr_node_saved(n, 0), *w = sr_node_saved(n, 1);
  sr_tensor *mean = sr_node_saved(n, 2), *rstd = sr_node_saved(n, 3);
  if (!g) return;
  int64_t C = x2->shape[1];
  sr_tensor *g2 = sr_rows_raw(g, C);
  int acc;
  sr_tensor *dx = norm_dx(n, x2, &acc);
  sr_tensor *dw = n->needs[1] ? sr_tensor_zeros(side_dtype(x2), x2->storage->device, 1, &C) : NULL;
  sr_tensor *db = n->needs[2] ? sr_tensor_zeros(side_dtype(x2), x2->storage->device, 1, &C) : NULL;
  sr_kcall c = {.t = {dx, dw, db, g2, x2, w, mean, rstd}, .nt = 8, .i = {acc}};
  sr_kernel_run(SR_K_layer_norm_backward, &c);
  sr_tensor_release(g2);
  norm_dx_done(n, gi, dx, acc);
  if (dw) { gi[1] = sr_to_raw(dw, dw->storage->device, n->in_dtype[1]); sr_tensor_release(dw); }
  if (db) { gi[2] = sr_to_raw(db, db->storage->device, n->in_dtype[2]); sr_tensor_release(db); }
}

sr_tensor *sr_layer_norm(sr_tensor *x, sr_tensor *weight, sr_tensor *bias, double eps) {
  check_float("layer_norm", 1, x);
  if (x->ndim < 1) sr_fail("layer_norm: bad argument #1 (needs at least 1 dimension)");
  check_norm_param("layer_norm", 2, x, weight);
  check_norm_param("layer_norm", 3, x, bias);
  int64_t C = x->shape[x->ndim - 1];
  sr_tensor *x2 = sr_rows_raw(x, C);
  sr_tensor *w = weight ? sr_contiguous_raw(weight) : NULL, *b = bias ? sr_contiguous_raw(bias) : NULL;
  sr_tensor *y2 = sr_tensor_new_like(x2);
  sr_tensor *mean = sr_tensor_new(side_dtype(x), x->storage->device, 1, x2->shape);
  sr_tensor *rstd = sr_tensor_new(side_dtype(x), x->storage->device, 1, x2->shape);
  sr_kcall c = {.t = {y2, mean, rstd, x2, w, b}, .nt = 6, .f = {eps}};
  sr_kernel_run(SR_K_layer_norm, &c);
  sr_tensor *y = sr_view(y2, x->ndim, x->shape);
  sr_tensor_release(y2);
  sr_tensor *in[3] = {x, weight, bias};
  sr_node *n = record("layer_norm", layer_norm_backward, 3, in, y);
  if (n) { sr_node_save(n, 0, x2); sr_node_save(n, 1, w); sr_node_save(n, 2, mean); sr_node_save(n, 3, rstd); }
  sr_tensor_release(x2); sr_tensor_release(w); sr_tensor_release(b);
  sr_tensor_release(mean); sr_tensor_release(rstd);
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* softmax / log_softmax along a dim (the kernel works on the last dim; others go through a
** transposed copy) */

static void softmax_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *y2 = sr_node_saved(n, 0);
  if (!g) return;
  int dim = (int)n->i[0], nd = n->in_ndim[0];
  int64_t C = y2->shape[1];
  sr_tensor *gt = sr_transpose(g, dim, nd - 1);
  sr_tensor *g2 = sr_rows_raw(gt, C);
  sr_tensor *dx2 = sr_tensor_new_like(y2);
  sr_kcall c = {.t = {dx2, g2, y2}, .nt = 3, .i = {n->i[1]}};
  sr_kernel_run(SR_K_softmax_backward, &c);
  int64_t tshape[SR_MAXDIM];
  memcpy(tshape, gt->shape, sizeof tshape);
  sr_tensor *dxt = sr_view(dx2, nd, tshape);
  sr_tensor *dx = sr_transpose(dxt, dim, nd - 1);
  gi[0] = sr_contiguous_raw(dx);
  sr_tensor *tmp[] = {gt, g2, dx2, dxt, dx};
  for (size_t k = 0; k < 5; k++) sr_tensor_release(tmp[k]);
}

sr_tensor *sr_softmax(sr_tensor *x, int dim, bool log) {
  const char *op = log ? "log_softmax" : "softmax";
  check_float(op, 1, x);
  if (x->ndim == 0) sr_fail("%s: bad argument #1 (needs at least 1 dimension)", op);
  dim = wrap(op, dim, x->ndim);
  sr_tensor *y2;
  sr_tensor *y = sr_along_dim(SR_K_softmax, x, dim, x->dtype, log, &y2);
  sr_node *n = record(op, softmax_backward, 1, &x, y);
  if (n) { sr_node_save(n, 0, y2); n->i[0] = dim; n->i[1] = log; }
  sr_tensor_release(y2);
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* cross_entropy: logits [..., V], targets [...] int32; reduction 0 mean (over non-ignored),
** 1 sum, 2 none.
** Memory: the node keeps the logits (rows view) and lse. When the backward runs and the node
** holds the only reference to the logits' storage (the caller let go of them; tensor:backward()
** collects Lua garbage first), the gradient is written over them: no second [N, V] buffer.
** inplace (mean/sum, while recording): the forward writes dlogits = (softmax - onehot)/count
** over the logits in the same pass as the loss (the caller promises not to read them again; their
** version is bumped, so a node that saved them fails loudly); the backward is then a scale by
** the upstream gradient, skipped when that is the implicit 1 of loss:backward(), and left to the
** consumer (a linear's GEMM alpha: autograd.h, the scale fusion) when it is another constant the
** pass knows (loss / n). */

/* a private tensor the node may overwrite: only the node refers to it and to its storage */
static bool node_owns(const sr_tensor *t) { return t->refcount == 1 && t->storage->refcount == 1; }

static void cross_entropy_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *l2 = sr_node_saved(n, 0);
  if (!g || !n->needs[0]) return;
  int64_t N = l2->shape[0];
  sr_tensor *dlogits;
  double c;
  bool pending = false;
  if (n->i[2]) {  /* l2 already holds dlogits for an upstream gradient of 1 */
    if (sr_grad_is_implicit_one(g)) dlogits = sr_tensor_retain(l2);
    else if (sr_grad_constant(g, &c)) dlogits = sr_tensor_retain(l2), pending = true;
    else {
      sr_tensor *gs = sr_to_raw(g, g->storage->device, l2->dtype);
      if (node_owns(l2)) {
        sr_binary_inplace(SR_BINARY_MUL, l2, gs);
        dlogits = sr_tensor_retain(l2);
      } else {
        dlogits = sr_binary_raw(SR_BINARY_MUL, l2, gs);
      }
      sr_tensor_release(gs);
    }
  } else {
    sr_tensor *t = sr_node_saved(n, 1), *lse = sr_node_saved(n, 2);
    sr_tensor *dl;  /* per-row upstream gradient [N] in lse's dtype; stride 0 for mean/sum */
    if (n->i[1] == 2) {
      sr_tensor *gc = sr_contiguous_raw(g);
      sr_tensor *gv = sr_view(gc, 1, &N);
      dl = sr_to_raw(gv, gv->storage->device, lse->dtype);
      sr_tensor_release(gc); sr_tensor_release(gv);
    } else {
      sr_tensor *gf = sr_to_raw(g, g->storage->device, lse->dtype);
      /* mean: divide by the count of non-ignored targets, kept on the device (no host sync) */
      if (n->i[1] == 0) sr_binary_inplace(SR_BINARY_DIV, gf, sr_node_saved(n, 3));
      dl = sr_expand(gf, 1, &N);
      sr_tensor_release(gf);
    }
    dlogits = node_owns(l2) ? sr_tensor_retain(l2) : sr_tensor_new_like(l2);
    sr_kcall c = {.t = {dlogits, dl, l2, t, lse}, .nt = 5, .i = {n->i[0]}};
    sr_kernel_run(SR_K_cross_entropy_backward, &c);
    if (dlogits == l2) l2->storage->version++;
    sr_tensor_release(dl);
  }
  gi[0] = sr_view(dlogits, n->in_ndim[0], n->in_shape[0]);
  sr_tensor_release(dlogits);
  if (pending) sr_grad_mark_scaled(&gi[0], c);
}

sr_tensor *sr_cross_entropy(sr_tensor *logits, sr_tensor *targets, int64_t ignore_index, int reduction, bool inplace) {
  char b1[96], b2[96];
  check_float("cross_entropy", 1, logits);
  check_same_device("cross_entropy", logits, targets);
  if (targets->dtype != SR_I32) sr_fail("cross_entropy: bad argument #2 (targets must be int32, got %s)", sr_dtype_name(targets->dtype));
  if (logits->ndim != targets->ndim + 1 || memcmp(logits->shape, targets->shape, (size_t)targets->ndim * sizeof(int64_t)))
    sr_fail("cross_entropy: bad argument #2 (targets shape %s does not match logits %s; expected logits [..., V] and targets [...])",
            SHP(targets, b1), SHP(logits, b2));
  if (inplace && reduction == 2) sr_fail("cross_entropy: inplace needs reduction 'mean' or 'sum'");
  if (inplace && logits->requires_grad && !logits->grad_fn && sr_grad_enabled())
    sr_fail("cross_entropy: inplace on a leaf that requires grad (its values would be overwritten)");
  int64_t V = logits->shape[logits->ndim - 1];
  int m = sr_scratch_mark();  /* the kernel fails on a target out of range: nothing may stay alive */
  sr_tensor *l2 = sr_scratch_push(sr_rows_raw(logits, V));
  sr_tensor *tc = sr_scratch_push(sr_contiguous_raw(targets));
  sr_tensor *t = sr_scratch_push(sr_view(tc, 1, (int64_t[]){-1}));
  int64_t N = l2->shape[0];
  sr_dtype side = side_dtype(logits);
  bool fused = inplace && sr_needs_grad(1, &logits);
  sr_tensor *count_t = NULL;
  if (reduction == 0) {  /* mean over targets that are not ignored; the count stays on the device
                         ** (no host copy: a step stays capturable in a CUDA graph); 0 counted ->
                         ** 0/0 = NaN as before */
    int m2 = sr_scratch_mark();
    sr_tensor *ig = sr_scratch_push(sr_tensor_new(SR_I32, t->storage->device, 0, NULL));
    sr_fill_(ig, (double)ignore_index);
    sr_tensor *keep = sr_scratch_push(sr_binary_raw(SR_BINARY_NE, t, ig));
    sr_tensor *kf = sr_scratch_push(sr_to_raw(keep, keep->storage->device, side));
    sr_tensor *cnt = sr_scratch_push(sr_reduce_raw(SR_REDUCE_SUM, kf, 0, NULL));
    count_t = sr_view(cnt, 0, NULL);
    sr_scratch_pop(m2);
    sr_scratch_push(count_t);
  }
  sr_tensor *dscale = NULL;  /* fused mean: 1/count on the device */
  if (fused && count_t) dscale = sr_scratch_push(sr_unary_raw(SR_UNARY_RDIV_SCALAR, count_t, 1.0));
  sr_tensor *losses = sr_scratch_push(sr_tensor_new(side, logits->storage->device, 1, &N));
  sr_tensor *lse = sr_scratch_push(sr_tensor_new(side, logits->storage->device, 1, &N));
  sr_kcall c = {.t = {losses, lse, l2, t, fused ? l2 : NULL, dscale}, .nt = fused ? 6 : 4, .i = {ignore_index}};
  sr_kernel_run(SR_K_cross_entropy, &c);
  if (fused) l2->storage->version++;  /* the logits now hold their gradient */
  sr_tensor *y;
  if (reduction == 2) {
    sr_tensor *v = sr_scratch_push(sr_view(losses, targets->ndim, targets->shape));
    y = sr_scratch_push(sr_to_raw(v, v->storage->device, logits->dtype));
  } else {
    sr_tensor *s = sr_scratch_push(sr_reduce_raw(SR_REDUCE_SUM, losses, 0, NULL));
    if (count_t) sr_binary_inplace(SR_BINARY_DIV, s, count_t);
    sr_tensor *sv = sr_scratch_push(sr_view(s, 0, NULL));
    y = sr_scratch_push(sr_to_raw(sv, sv->storage->device, logits->dtype == SR_BF16 ? SR_F32 : logits->dtype));
  }
  sr_node *n = record("cross_entropy", cross_entropy_backward, 1, &logits, y);
  if (n) {
    sr_node_save(n, 0, l2);
    if (!fused) { sr_node_save(n, 1, t); sr_node_save(n, 2, lse); sr_node_save(n, 3, count_t); }
    n->i[0] = ignore_index; n->i[1] = reduction; n->i[2] = fused;
  }
  return sr_scratch_return(m, y);
}

/* ------------------------------------------------------------------------------------------ */
/* rotary position embedding: x [B, T, H, D] with tables cos, sin of T*D/2 elements (e.g.
** [1, T, 1, D/2]), constants (no gradient). Output in the wider of x's and the tables' dtypes, as
** the records' x1 * cos + x2 * sin promotes; one kernel instead of six products and sums, a cat
** and a cast. The backward is the inverse rotation of the upstream gradient. */

static void rotary_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *cs = sr_node_saved(n, 0), *sn = sr_node_saved(n, 1);
  if (!g || !n->needs[0]) return;
  sr_tensor *gc = sr_contiguous_raw(g);
  sr_tensor *dx = sr_tensor_new(n->in_dtype[0], gc->storage->device, gc->ndim, gc->shape);
  sr_kcall c = {.t = {dx, gc, cs, sn}, .nt = 4, .i = {1}};
  sr_kernel_run(SR_K_rotary, &c);
  sr_tensor_release(gc);
  gi[0] = dx;
}

sr_tensor *sr_rotary(sr_tensor *x, sr_tensor *cos, sr_tensor *sin) {
  char b1[96], b2[96];
  check_float("rotary", 1, x);
  check_float("rotary", 2, cos);
  check_float("rotary", 3, sin);
  check_same_device("rotary", x, cos);
  check_same_device("rotary", x, sin);
  check_same_dtype("rotary", 3, cos, sin);
  if (x->ndim != 4 || x->shape[3] % 2)
    sr_fail("rotary: bad argument #1 (expected x [B, T, H, D] with D even, got %s)", SHP(x, b1));
  int64_t T = x->shape[1], P = x->shape[3] / 2;
  if (sr_numel(cos) != T * P || sr_numel(sin) != T * P)
    sr_fail("rotary: bad argument #%d (cos and sin need T*D/2 = %lld elements for x %s, got %s)",
            sr_numel(cos) != T * P ? 2 : 3, (long long)(T * P), SHP(x, b1), SHP(sr_numel(cos) != T * P ? cos : sin, b2));
  if (sr_grad_enabled() && (cos->requires_grad || sin->requires_grad))
    sr_fail("rotary: bad argument #%d (the tables take no gradient; build them under no_grad)", cos->requires_grad ? 2 : 3);
  sr_tensor *xc = sr_contiguous_raw(x);
  sr_tensor *cc = sr_rows_raw(cos, P), *sc = sr_rows_raw(sin, P);
  sr_tensor *y = sr_tensor_new(wider_dtype(x->dtype, cos->dtype), x->storage->device, 4, x->shape);
  sr_kcall c = {.t = {y, xc, cc, sc}, .nt = 4, .i = {0}};
  sr_kernel_run(SR_K_rotary, &c);
  sr_node *n = record("rotary", rotary_backward, 1, &x, y);
  if (n) { sr_node_save(n, 0, cc); sr_node_save(n, 1, sc); }
  sr_tensor_release(xc); sr_tensor_release(cc); sr_tensor_release(sc);
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* scaled dot-product attention: q, k, v [B, H, T, D] */

/* a gradient destination the backward kernel can write: any strides on the CPU; on cuda the
** flash kernel's layouts (unit stride in D, other strides multiples of 8, 16-byte aligned) */
static bool sdpa_grad_dest_ok(const sr_tensor *d, bool flash) {
  if (d->storage->device == SR_CPU) return true;
  if (!flash) return false;
  if (d->stride[3] != 1 || (d->offset * (int64_t)sr_dtype_size(d->dtype)) % 16) return false;
  for (int k = 0; k < 3; k++)
    if (d->stride[k] % 8 && d->shape[k] != 1) return false;
  return true;
}

static void sdpa_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0];
  if (!g) return;
  sr_tensor *q = sr_node_saved(n, 0), *k = sr_node_saved(n, 1), *v = sr_node_saved(n, 2);
  sr_tensor *o = sr_node_saved(n, 3), *lse = sr_node_saved(n, 4);
  bool flash = n->i[1], views = attn_takes_views(q, flash);
  sr_tensor *gc = views && (!flash || g->stride[3] == 1) ? sr_tensor_retain(g) : sr_contiguous_raw(g);
  /* grads in [B,T,H,D] memory order (ops_common.h), so transpose(2,3):reshape(B,T,C) upstream is
  ** a view, not a copy */
  sr_tensor *qkv[3] = {q, k, v}, *d[3];
  for (int i = 0; i < 3; i++) {
    sr_tensor *dest = n->needs[i] ? sr_grad_dest(n, i) : NULL;  /* e.g. a slice of the qkv gradient */
    d[i] = dest && sdpa_grad_dest_ok(dest, flash) ? sr_tensor_retain(dest) : views ? new_bthd(qkv[i]) : sr_tensor_new_like(qkv[i]);
  }
  sr_kcall c = {.t = {d[0], d[1], d[2], gc, q, k, v, o, lse}, .nt = 9, .f = {n->f[0]}, .i = {n->i[0]}};
  sr_kernel_run(SR_K_attention_backward, &c);
  sr_tensor_release(gc);
  gi[0] = d[0]; gi[1] = d[1]; gi[2] = d[2];
}

sr_tensor *sr_sdpa(sr_tensor *q, sr_tensor *k, sr_tensor *v, bool causal, double scale) {
  char b1[96], b2[96];
  sr_tensor *in[3] = {q, k, v};
  for (int i = 0; i < 3; i++) {
    check_float("scaled_dot_product_attention", i + 1, in[i]);
    check_same_device("scaled_dot_product_attention", q, in[i]);
    check_same_dtype("scaled_dot_product_attention", i + 1, q, in[i]);
    if (in[i]->ndim != 4 || !sr_same_shape(q, in[i]))
      sr_fail("scaled_dot_product_attention: bad argument #%d (shape %s; q, k and v must all be [B, H, T, D], q is %s)", i + 1,
              SHP(in[i], b1), SHP(q, b2));
  }
  if (scale <= 0) scale = 1.0 / sqrt((double)q->shape[3]);
  /* the CUDA flash kernel (bf16, D 64/128) and the CPU reference take strided views and write out
  ** in [B,T,H,D] memory order (ops_common.h, attn_takes_views) */
  int64_t D = q->shape[3];
  bool flash = q->storage->device == SR_CUDA && q->dtype == SR_BF16 && (D == 64 || D == 128) &&
               q->stride[3] == 1 && k->stride[3] == 1 && v->stride[3] == 1;
  bool views = attn_takes_views(q, flash);
  sr_tensor *qc = views ? sr_tensor_retain(q) : sr_contiguous_raw(q);
  sr_tensor *kc = views ? sr_tensor_retain(k) : sr_contiguous_raw(k);
  sr_tensor *vc = views ? sr_tensor_retain(v) : sr_contiguous_raw(v);
  sr_tensor *o = views ? new_bthd(q) : sr_tensor_new_like(qc);
  sr_tensor *lse = sr_tensor_new(side_dtype(q), q->storage->device, 3, q->shape);
  sr_kcall c = {.t = {o, lse, qc, kc, vc}, .nt = 5, .f = {scale}, .i = {causal}};
  sr_kernel_run(SR_K_attention, &c);
  sr_node *n = record("scaled_dot_product_attention", sdpa_backward, 3, in, o);
  if (n) {
    sr_node_save(n, 0, qc); sr_node_save(n, 1, kc); sr_node_save(n, 2, vc);
    /* save o as a plain view: saving o itself would make o -> node -> o a cycle */
    sr_tensor *ov = sr_as_strided(o, o->ndim, o->shape, o->stride, o->offset);
    sr_node_save(n, 3, ov); sr_node_save(n, 4, lse);
    sr_tensor_release(ov);
    n->f[0] = scale; n->i[0] = causal; n->i[1] = flash;
  }
  sr_tensor_release(qc); sr_tensor_release(kc); sr_tensor_release(vc); sr_tensor_release(lse);
  return o;
}

