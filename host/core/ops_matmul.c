/*
** core/ops_matmul.c: matmul (1-D/2-D/batched, numpy broadcasting of the batch dims) and linear
** (y = x @ w^T + bias), each op's forward and backward side by side, over the gemm helpers they
** share (an operand's layout as a transpose flag instead of a copy; gradients accumulated into a
** leaf's .grad with beta = 1 where the tape allows; sr_gemm_raw for the other op files).
*/
#include <string.h>    /* defines: memcpy */

#include "core/autograd.h"  /* defines: sr_node_new, sr_node_attach, sr_grad_leaf_target */
#include "core/copy.h"      /* defines: sr_contiguous_raw, sr_to_raw */
#include "core/ops.h"

#include "core/ops_common.h"  /* defines: SHP, check_*, wrap, record, reduce_grad */

/* ------------------------------------------------------------------------------------------ */
/* gemm helpers */

/* a matrix operand for gemm: unit stride in the last dim, or transposed so it has one */
static sr_tensor *gemm_operand(sr_tensor *x, bool *trans) {
  int n = x->ndim;
  if (x->stride[n - 1] == 1 && (x->shape[n - 2] == 1 || x->stride[n - 2] >= x->shape[n - 1])) return sr_tensor_retain(x);
  if (x->stride[n - 2] == 1 && (x->shape[n - 1] == 1 || x->stride[n - 1] >= x->shape[n - 2])) {
    *trans = !*trans;
    return sr_transpose(x, n - 1, n - 2);
  }
  return sr_contiguous_raw(x);
}

/* out = alpha * op(a) @ op(b) + beta * out, out made here when NULL (beta 0). a, b: [M,K]/[K,M] ... or
** batched [B,M,K] with equal B (or B = 1 broadcast via stride 0); out contiguous [M,N] / [B,M,N] */
static sr_tensor *gemm_into(sr_tensor *out, sr_tensor *a, bool ta, sr_tensor *b, bool tb, double alpha, double beta) {
  bool batched = a->ndim == 3;
  sr_tensor *a3 = batched ? sr_tensor_retain(a) : sr_unsqueeze(a, 0);
  sr_tensor *b3 = batched ? sr_tensor_retain(b) : sr_unsqueeze(b, 0);
  sr_tensor *ao = gemm_operand(a3, &ta), *bo = gemm_operand(b3, &tb);
  sr_tensor_release(a3);
  sr_tensor_release(b3);
  int64_t B = ao->shape[0] > bo->shape[0] ? ao->shape[0] : bo->shape[0];
  int64_t M = ta ? ao->shape[2] : ao->shape[1], N = tb ? bo->shape[1] : bo->shape[2];
  /* a batch of 1 broadcasts: stride 0 */
  if (ao->shape[0] == 1 && B > 1) { sr_tensor *e = sr_expand(ao, 3, (int64_t[]){B, ao->shape[1], ao->shape[2]}); sr_tensor_release(ao); ao = e; }
  if (bo->shape[0] == 1 && B > 1) { sr_tensor *e = sr_expand(bo, 3, (int64_t[]){B, bo->shape[1], bo->shape[2]}); sr_tensor_release(bo); bo = e; }
  sr_tensor *y = out ? sr_view(out, 3, (int64_t[]){B, M, N}) : sr_tensor_new(a->dtype, a->storage->device, 3, (int64_t[]){B, M, N});
  sr_kcall c = {.t = {y, ao, bo}, .nt = 3, .i = {ta, tb}, .f = {alpha, out ? beta : 0.0}};
  sr_kernel_run(SR_K_gemm, &c);
  sr_tensor_release(ao);
  sr_tensor_release(bo);
  if (out) {
    sr_tensor_release(y);
    out->storage->version++;
    return NULL;
  }
  if (!batched) {
    sr_tensor *v = sr_view(y, 2, (int64_t[]){M, N});
    sr_tensor_release(y);
    y = v;
  }
  return y;
}

sr_tensor *sr_gemm_raw(sr_tensor *a, bool ta, sr_tensor *b, bool tb) { return gemm_into(NULL, a, ta, b, tb, 1.0, 0.0); }

/* the sum of input i's gradient so far when the GEMM of operands a, b may add into it (autograd.h,
** accumulate: beta 1, the sum in the operands' dtype), else NULL */
static sr_tensor *gemm_acc_target(sr_node *n, int i, const sr_tensor *a, const sr_tensor *b) {
  return a->dtype == b->dtype && n->in_dtype[i] == a->dtype ? sr_grad_acc_target(n, i) : NULL;
}

/* the gradient alpha * op(a) @ op(b) of input i of n: added by the GEMM itself into the fp32 leaf behind
** a cast when autograd allows it (autograd.h, cast_gemm: fp32 output, beta 1 into an existing
** .grad), or into the gradient input i has received so far (accumulate), else returned in gi[i].
** The GEMM kernels take bf16 operands with an f32 out on cuda; the CPU any float mix. */
/* a GEMM of operands a and b (dtype bt) can write an fp32 leaf's gradient: cuBLASLt's bf16 x bf16 ->
** f32, the CPU's reference any float mix of one dtype */
static bool f32_out_ok(const sr_tensor *a, sr_dtype bt) {
  return a->dtype == bt && (a->dtype == SR_BF16 || a->storage->device == SR_CPU);
}

static void gemm_grad(sr_node *n, int i, sr_tensor **gi, sr_tensor *a, bool ta, sr_tensor *b, bool tb, double alpha) {
  sr_tensor *leaf = n->in_ndim[i] == 2 ? sr_grad_cast_leaf(n, i) : NULL;
  double beta = 0.0;
  sr_tensor *dst = leaf && f32_out_ok(a, b->dtype) ? sr_grad_leaf_target(leaf, &beta) : NULL;
  if (!dst && (dst = gemm_acc_target(n, i, a, b))) beta = 1.0;
  if (dst) gemm_into(dst, a, ta, b, tb, alpha, beta);
  else gi[i] = gemm_into(NULL, a, ta, b, tb, alpha, 0.0);
}

/* ------------------------------------------------------------------------------------------ */
/* matmul: 1-D/2-D/batched with numpy broadcasting of the batch dims */

/* mm: a [M,K] @ b [K,N], or batched [B,M,K] @ [B,K,N] with equal B */
static void mm_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *a = sr_node_saved(n, 0), *b = sr_node_saved(n, 1);
  if (!g) return;
  if (n->needs[0]) gemm_grad(n, 0, gi, g, false, b, true, 1.0);
  if (n->needs[1]) gemm_grad(n, 1, gi, a, true, g, false, 1.0);
}

static sr_tensor *mm(sr_tensor *a, sr_tensor *b) {
  sr_tensor *y = sr_gemm_raw(a, false, b, false);
  sr_tensor *in[2] = {a, b};
  sr_node *n = record("matmul", mm_backward, 2, in, y);
  if (n) { sr_node_save(n, 0, a); sr_node_save(n, 1, b); }
  return y;
}

/* the shapes matmul's batched path makes (output, and both operands broadcast) fit a tensor:
** checked before anything is allocated */
static void matmul_check_shapes(const sr_tensor *a, const sr_tensor *b) {
  int64_t s[SR_MAXDIM];
  int nb = sr_broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2, b->shape, s);
  if (nb < 0) return;  /* reported by the caller */
  int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
  int64_t mn[2][2] = {{M, N}, {M, K}}, kn[2] = {K, N};
  for (int k = 0; k < (b->ndim > 2 ? 3 : 1); k++) {  /* a 2-D b is not broadcast */
    memcpy(s + nb, k == 2 ? kn : mn[k], sizeof kn);
    sr_check_alloc("matmul", a->dtype, nb + 2, s);
  }
}

sr_tensor *sr_matmul(sr_tensor *a, sr_tensor *b) {
  char b1[96], b2[96];
  check_float("matmul", 1, a);
  check_float("matmul", 2, b);
  check_same_device("matmul", a, b);
  check_same_dtype("matmul", 2, a, b);
  if (a->ndim == 0 || b->ndim == 0) sr_fail("matmul: bad argument #%d (0-d tensor; use mul)", a->ndim == 0 ? 1 : 2);
  int64_t K = a->shape[a->ndim - 1], Kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
  if (Kb != K)  /* before the vector case's views allocate */
    sr_fail("matmul: bad argument #2 (shape %s does not match %s: inner dimensions %lld and %lld)", SHP(b, b2),
            SHP(a, b1), (long long)K, (long long)Kb);
  if (a->ndim == 1 || b->ndim == 1) {  /* vectors become matrices, then squeeze back */
    sr_tensor *a2 = a->ndim == 1 ? sr_unsqueeze_op(a, 0) : sr_tensor_retain(a);
    sr_tensor *b2 = b->ndim == 1 ? sr_unsqueeze_op(b, 1) : sr_tensor_retain(b);
    sr_tensor *y = sr_matmul(a2, b2);
    sr_tensor *r = y;
    if (a->ndim == 1) { r = sr_squeeze_op(y, -2); sr_tensor_release(y); y = r; }
    if (b->ndim == 1) { r = sr_squeeze_op(y, -1); sr_tensor_release(y); }
    sr_tensor_release(a2);
    sr_tensor_release(b2);
    return r;
  }
  int64_t M = a->shape[a->ndim - 2], N = b->shape[b->ndim - 1];
  matmul_check_shapes(a, b);
  if (a->ndim == 2 && b->ndim == 2) return mm(a, b);
  if (b->ndim == 2) {  /* fold a's batch dims into M: one large GEMM */
    sr_tensor *a2 = sr_reshape(a, 2, (int64_t[]){-1, K});
    sr_tensor *y2 = mm(a2, b);
    int64_t shape[SR_MAXDIM];
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 1] = N;
    sr_tensor *y = sr_reshape(y2, a->ndim, shape);
    sr_tensor_release(a2);
    sr_tensor_release(y2);
    return y;
  }
  /* broadcast the batch dims, flatten them to one */
  int64_t bs[SR_MAXDIM], sa[SR_MAXDIM], sb[SR_MAXDIM];
  int nb = sr_broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2, b->shape, bs);
  if (nb < 0) sr_fail("matmul: batch dimensions of %s and %s cannot be broadcast", SHP(a, b1), SHP(b, b2));
  int64_t B = 1;
  for (int d = 0; d < nb; d++) { sa[d] = sb[d] = bs[d]; B *= bs[d]; }
  sa[nb] = M; sa[nb + 1] = K; sb[nb] = K; sb[nb + 1] = N;
  sr_tensor *ea = sr_expand_op(a, nb + 2, sa), *eb = sr_expand_op(b, nb + 2, sb);
  sr_tensor *a3 = sr_reshape(ea, 3, (int64_t[]){B, M, K}), *b3 = sr_reshape(eb, 3, (int64_t[]){B, K, N});
  sr_tensor *y3 = mm(a3, b3);
  bs[nb] = M; bs[nb + 1] = N;
  sr_tensor *y = sr_reshape(y3, nb + 2, bs);
  sr_tensor *tmp[] = {ea, eb, a3, b3, y3};
  for (size_t k = 0; k < 5; k++) sr_tensor_release(tmp[k]);
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* linear: y[..., N] = x[..., K] @ w[N, K]^T + bias[N] */

/* the defer fusion's rest of linear_backward (autograd.h): dW = s g2^T x2 into leaf's .grad once x2,
** the input, is recomputed next to its producer's backward */
static sr_tensor *linear_wgrad(sr_tensor *x2, sr_tensor *g2, sr_tensor *leaf, double s) {
  double beta = 0.0;
  sr_tensor *dst = sr_grad_leaf_target(leaf, &beta);
  return gemm_into(dst, g2, true, x2, false, s, beta);   /* no place: the gradient, for the pass to add */
}

/* the weight's gradient left for later (sr_node_defer) when it would go straight into an fp32 leaf
** (gemm_grad's cast_gemm path) and the input is to be recomputed */
static bool linear_defer_wgrad(sr_node *n, sr_tensor *g2, double s) {
  sr_tensor *leaf = n->needs[1] ? sr_grad_cast_leaf(n, 1) : NULL;
  if (!leaf || !f32_out_ok(g2, n->in_dtype[0])) return false;
  return sr_node_defer(n, 0, linear_wgrad, g2, leaf, s);
}

/* dy may come with a scale still to apply (autograd.h, the scale fusion: an in-place cross_entropy's
** gradient of loss / n): the GEMMs' alpha. dX first: the input x, when recomputed, is needed only
** by dW (which the defer fusion may leave until x's producer has run its backward) */
static void linear_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *w = sr_node_saved(n, 1);
  if (!g) return;
  double s = sr_grad_scale_of(g);
  int64_t N = w->shape[0];
  sr_tensor *g2 = sr_reshape(g, 2, (int64_t[]){-1, N});  /* no tape: grad mode is off in backward */
  sr_tensor *acc = n->needs[0] ? gemm_acc_target(n, 0, g2, w) : NULL;
  if (acc) {   /* dx added into the sum so far (autograd.h, accumulate) */
    sr_tensor *acc2 = sr_view(acc, 2, (int64_t[]){g2->shape[0], w->shape[1]});
    gemm_into(acc2, g2, false, w, false, s, 1.0);
    sr_tensor_release(acc2);
  } else if (n->needs[0]) {
    sr_tensor *dx2 = gemm_into(NULL, g2, false, w, false, s, 0.0);   /* [M,N] @ [N,K] */
    gi[0] = sr_view(dx2, n->in_ndim[0], n->in_shape[0]);
    sr_tensor_release(dx2);
  }
  if (n->needs[1] && !linear_defer_wgrad(n, g2, s))
    gemm_grad(n, 1, gi, g2, true, sr_node_saved(n, 0), false, s);   /* [N,M] @ [M,K] */
  if (n->needs[2]) {
    gi[2] = reduce_grad(n, 2, g2);
    if (s != 1.0) sr_unary_inplace(SR_UNARY_MUL_SCALAR, gi[2], s);
  }
  sr_tensor_release(g2);
}

sr_tensor *sr_linear(sr_tensor *x, sr_tensor *w, sr_tensor *bias) {
  char b1[96], b2[96];
  check_float("linear", 1, x);
  check_same_device("linear", x, w);
  check_same_dtype("linear", 2, x, w);
  if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
    sr_fail("linear: bad argument #2 (weight shape %s does not match input %s; expected [out, %lld])", SHP(w, b1),
            SHP(x, b2), (long long)(x->ndim ? x->shape[x->ndim - 1] : 0));
  int64_t N = w->shape[0], K = w->shape[1];
  if (bias) {
    check_same_device("linear", x, bias);
    check_same_dtype("linear", 3, x, bias);
    if (bias->ndim != 1 || bias->shape[0] != N) sr_fail("linear: bad argument #3 (bias shape %s, expected [%lld])", SHP(bias, b1), (long long)N);
  }
  int64_t shape[SR_MAXDIM];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = N;
  sr_check_alloc("linear", x->dtype, x->ndim, shape);  /* before anything is allocated */
  sr_tensor *x2 = sr_rows_raw(x, K);
  sr_tensor *y2 = sr_gemm_raw(x2, false, w, true);
  if (bias) sr_binary_inplace(SR_BINARY_ADD, y2, bias);
  sr_tensor *y = sr_view(y2, x->ndim, shape);
  sr_tensor_release(y2);
  sr_tensor *in[3] = {x, w, bias};
  sr_node *n = record("linear", linear_backward, 3, in, y);
  if (n) {
    sr_node_save_output_of(n, 0, x2, x);   /* x recomputed if it can be */
    sr_node_save(n, 1, w);
    n->flags |= SR_NODE_TAKES_SCALE;
  }
  sr_tensor_release(x2);
  return y;
}
