/*
** core/ops.c: front-end ops (see ops.h): argument checks, output allocation, kernel calls and the
** backward rules, each op's forward and backward side by side: unary, binary, where, reductions,
** differentiable views. Matmul and linear are in ops_matmul.c, the nn ops in ops_nn.c.
*/
#include <math.h>      /* defines: sqrt */
#include <string.h>    /* defines: memcpy */

#include "core/autograd.h"  /* defines: sr_node_new, sr_node_attach */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_fill_, sr_contiguous_raw */
#include "core/ops.h"

#include "core/ops_common.h"  /* defines: SHP, side_dtype, check_*, wrap, record */

/* ------------------------------------------------------------------------------------------ */
/* raw helpers */

sr_tensor *sr_scalar_like(sr_tensor *x, double v) {
  sr_tensor *t = sr_tensor_new(x->dtype == SR_I32 ? SR_F32 : x->dtype, x->storage->device, 0, NULL);
  sr_fill_(t, v);
  return t;
}

sr_tensor *sr_unary_raw(sr_unary_fn fn, sr_tensor *x, double p) {
  sr_tensor *y = sr_tensor_new_like(x);
  sr_kcall c = {.t = {y, x}, .nt = 2, .i = {fn}, .f = {p}};
  sr_kernel_run(SR_K_unary, &c);
  return y;
}

void sr_unary_inplace(sr_unary_fn fn, sr_tensor *a, double p) {
  sr_kcall c = {.t = {a, a}, .nt = 2, .i = {fn}, .f = {p}};
  sr_kernel_run(SR_K_unary, &c);
  a->storage->version++;
}

static void broadcast_pair(const char *op, sr_tensor *a, sr_tensor *b, int *nd, int64_t *shape) {
  char b1[96], b2[96];
  *nd = sr_broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, shape);
  if (*nd < 0) sr_fail("%s: shapes %s and %s cannot be broadcast together", op, SHP(a, b1), SHP(b, b2));
}

sr_tensor *sr_binary_raw(sr_binary_fn fn, sr_tensor *a, sr_tensor *b) {
  const char *op = sr_binary_name(fn);
  int nd;
  int64_t shape[SR_MAXDIM];
  check_same_device(op, a, b);
  broadcast_pair(op, a, b, &nd, shape);
  sr_tensor *y = sr_tensor_new(a->dtype, a->storage->device, nd, shape);
  sr_tensor *ea = sr_expand(a, nd, shape), *eb = sr_expand(b, nd, shape);
  sr_kcall c = {.t = {y, ea, eb}, .nt = 3, .i = {fn}};
  sr_kernel_run(SR_K_binary, &c);
  sr_tensor_release(ea);
  sr_tensor_release(eb);
  return y;
}

void sr_binary_inplace(sr_binary_fn fn, sr_tensor *a, sr_tensor *b) {
  check_same_device(sr_binary_name(fn), a, b);
  sr_tensor *eb = sr_expand(b, a->ndim, a->shape);
  sr_kcall c = {.t = {a, a, eb}, .nt = 3, .i = {fn}};
  sr_kernel_run(SR_K_binary, &c);
  sr_tensor_release(eb);
  a->storage->version++;
}

sr_tensor *sr_reduce_raw(sr_reduce_fn fn, sr_tensor *x, int dim, sr_tensor **idx) {
  int64_t shape[SR_MAXDIM];
  memcpy(shape, x->shape, sizeof shape);
  shape[dim] = 1;
  sr_tensor *y = sr_tensor_new(x->dtype, x->storage->device, x->ndim, shape);
  if (idx) *idx = sr_tensor_new(SR_I32, x->storage->device, x->ndim, shape);
  sr_kcall c = {.t = {y, x, idx ? *idx : NULL}, .nt = 3, .i = {fn, dim}};
  sr_kernel_run(SR_K_reduce, &c);
  return y;
}

sr_tensor *sr_sum_to_raw(sr_tensor *g, int ndim, const int64_t *shape) {
  int lead = g->ndim - ndim;
  bool any = lead > 0;
  for (int d = lead; d < g->ndim && !any; d++) any = shape[d - lead] == 1 && g->shape[d] != 1;
  /* bf16: sum in float32 and round once (a dim-by-dim reduction would round every stage) */
  bool widen = any && g->dtype == SR_BF16;
  sr_tensor *cur = widen ? sr_to_raw(g, g->storage->device, SR_F32) : sr_tensor_retain(g);
  for (int d = 0; d < g->ndim; d++) {
    bool collapse = d < lead || (shape[d - lead] == 1 && g->shape[d] != 1);
    if (!collapse) continue;
    sr_tensor *r = sr_reduce_raw(SR_REDUCE_SUM, cur, d, NULL);
    sr_tensor_release(cur);
    cur = r;
  }
  if (cur->ndim != ndim) {
    sr_tensor *v = sr_view(cur, ndim, shape);
    sr_tensor_release(cur);
    cur = v;
  }
  if (widen) {
    sr_tensor *r = sr_to_raw(cur, cur->storage->device, SR_BF16);
    sr_tensor_release(cur);
    cur = r;
  }
  return cur;
}

/* x viewed as rows [-1, K] (copying when the strides do not allow a view); no tape */
sr_tensor *sr_rows_raw(sr_tensor *x, int64_t K) {
  int m = sr_scratch_mark();  /* the view fails for K = 0 (no row count to infer): c goes too */
  sr_tensor *c = sr_scratch_push(sr_contiguous_raw(x));
  sr_tensor *v = sr_view(c, 2, (int64_t[]){-1, K});
  sr_scratch_pop(m);
  return v;
}

/* ------------------------------------------------------------------------------------------ */
/* unary */

/* functions whose derivative does not depend on x: their nodes save nothing (the kernel never
** reads x for them, so dy stands in for it); tanh, sigmoid and exp save their output instead
** (sr_unary_output_grad), as PyTorch does: in a chain such as cap * tanh(z / cap) the input z / cap
** can then go as soon as tanh has run */
static bool unary_needs_x(sr_unary_fn fn) {
  return !(fn == SR_UNARY_NEG || fn == SR_UNARY_ADD_SCALAR || fn == SR_UNARY_MUL_SCALAR || fn == SR_UNARY_RSUB_SCALAR ||
           fn == SR_UNARY_SIGN || sr_unary_output_grad(fn));
}

/* an upstream gradient the node may overwrite with dx: only the node refers to it and to its
** storage, it covers that storage densely, and it has the input's dtype and shape */
static bool grad_reusable(const sr_node *n, const sr_tensor *g) {
  return g->refcount == 1 && g->storage->refcount == 1 && g->dtype == n->in_dtype[0] &&
         g->storage->device == n->in_device[0] && sr_is_contiguous(g) &&
         g->offset == 0 && (size_t)sr_numel(g) * sr_dtype_size(g->dtype) == g->storage->nbytes &&
         g->ndim == n->in_ndim[0] && !memcmp(g->shape, n->in_shape[0], (size_t)g->ndim * sizeof(int64_t));
}

/* dx = dy * f'(x) (or f' from the saved output); written over dy when dy is private, so a chain
** of element-wise ops holds one gradient buffer at a time */
static void unary_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (!go[0]) return;
  sr_unary_fn fn = (sr_unary_fn)n->i[0];
  bool from_y = sr_unary_output_grad(fn);
  sr_tensor *x = unary_needs_x(fn) || from_y ? sr_node_saved(n, 0) : go[0];
  sr_tensor *dx = grad_reusable(n, go[0]) ? sr_tensor_retain(go[0])
                                          : sr_tensor_new(n->in_dtype[0], n->in_device[0], n->in_ndim[0], n->in_shape[0]);
  sr_kcall c = {.t = {dx, go[0], x}, .nt = 3, .i = {fn, from_y}, .f = {n->f[0]}};
  sr_kernel_run(SR_K_unary_backward, &c);
  if (dx == go[0]) dx->storage->version++;
  gi[0] = dx;
  /* a constant upstream gradient stays one through x * s, x + s, s - x, -x (loss / n) */
  double k;
  if (sr_grad_constant(go[0], &k)) {
    switch (fn) {
      case SR_UNARY_MUL_SCALAR: sr_grad_mark_constant(dx, k * n->f[0]); break;
      case SR_UNARY_ADD_SCALAR: sr_grad_mark_constant(dx, k); break;
      case SR_UNARY_NEG: case SR_UNARY_RSUB_SCALAR: sr_grad_mark_constant(dx, -k); break;
      default: break;
    }
  }
}

/* y = f(x) again from the saved x (autograd.h, "recompute") */
static sr_tensor *unary_recompute(sr_node *n) { return sr_unary_raw((sr_unary_fn)n->i[0], sr_node_saved(n, 0), n->f[0]); }

sr_tensor *sr_unary(sr_unary_fn fn, sr_tensor *x, double p) {
  check_float(sr_unary_name(fn), 1, x);
  sr_tensor *y = sr_unary_raw(fn, x, p);
  sr_node *n = record(sr_unary_name(fn), unary_backward, 1, &x, y);
  if (n) {
    if (sr_unary_output_grad(fn)) {  /* an alias of y without its grad_fn: no cycle y -> node -> y */
      sr_tensor *ya = sr_view(y, y->ndim, y->shape);
      sr_node_save(n, 0, ya);
      sr_tensor_release(ya);
    } else if (unary_needs_x(fn)) {
      sr_node_save(n, 0, x);
      n->recompute = unary_recompute;
      n->flags |= SR_NODE_EW_PAIR;   /* y = f(x) again, then dx from x and dy: both element-wise over x */
    }
    n->i[0] = fn; n->f[0] = p;
  }
  return y;
}

/* fn in place on x (PyTorch's x.tanh_(), x.mul_(s), x.add_(s)): while gradients are recorded, x's
** history moves onto a node of fn, so backward gives the out-of-place op's gradient; refused where
** that cannot hold (the backward needs the input the op overwrites, or another tensor shares x's
** storage and would change unrecorded). A chain z / c, tanh, ... done so keeps one buffer. */
void sr_unary_(sr_unary_fn fn, sr_tensor *x, double p) {
  const char *op = sr_unary_name(fn);
  if (!sr_needs_grad(1, &x)) { sr_unary_inplace(fn, x, p); return; }
  check_float(op, 1, x);
  if (!x->grad_fn) sr_fail("%s_: in-place update of a leaf that requires grad; wrap it in speedrun.no_grad", op);
  if (unary_needs_x(fn)) sr_fail("%s_: its gradient needs the input the in-place op overwrites; use the out-of-place op", op);
  if (x->storage->refcount > 1)
    sr_fail("%s_: another tensor shares this tensor's storage (a view of it, or an output saved for the backward); "
            "use the out-of-place op", op);
  sr_node *n = sr_node_new(op, unary_backward, 1, &x), *old = x->grad_fn;  /* n takes x's history */
  sr_unary_inplace(fn, x, p);
  sr_node_attach(n, 1, &x);
  sr_node_release(old);                /* x's reference to its old node: n holds that node now */
  if (sr_unary_output_grad(fn)) {      /* the output after the write, as sr_unary saves it */
    sr_tensor *ya = sr_view(x, x->ndim, x->shape);
    sr_node_save(n, 0, ya);
    sr_tensor_release(ya);
  }
  n->i[0] = fn; n->f[0] = p;
  sr_node_release(n);                  /* x holds it now */
}

/* ------------------------------------------------------------------------------------------ */
/* binary (broadcasting) */

/* the gradient of a one-element factor s of y = s * x when x has y's shape (a learned scalar:
** lambdas, skip weights; records 9-11): sum(dy * x) in one pass (the dot kernel) instead of an
** [N, C] product and a reduction; NULL when that does not apply */
static sr_tensor *scalar_factor_grad(sr_node *n, int i, sr_tensor *g, sr_tensor *x) {
  if (sr_shape_numel(n->in_ndim[i], n->in_shape[i]) != 1 || !x || !sr_same_shape(x, g) || x->dtype != g->dtype ||
      x->storage->device != g->storage->device || x->dtype == SR_I32)
    return NULL;
  int m = sr_scratch_mark();
  sr_tensor *gc = sr_scratch_push(sr_contiguous_raw(g)), *xc = sr_scratch_push(sr_contiguous_raw(x));
  sr_tensor *d = sr_scratch_push(sr_tensor_new(g->dtype == SR_F64 ? SR_F64 : SR_F32, g->storage->device, 1, (int64_t[]){1}));
  sr_kcall c = {.t = {d, gc, xc}, .nt = 3};
  sr_kernel_run(SR_K_dot, &c);
  sr_tensor *v = sr_scratch_push(sr_view(d, n->in_ndim[i], n->in_shape[i]));
  if (v->dtype != n->in_dtype[i]) v = sr_scratch_push(sr_to_raw(v, v->storage->device, n->in_dtype[i]));
  return sr_scratch_return(m, v);
}

static void binary_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0];
  if (!g) return;
  sr_tensor *a = sr_node_saved(n, 0), *b = sr_node_saved(n, 1);
  sr_tensor *ga = NULL, *gb = NULL;
  switch ((sr_binary_fn)n->i[0]) {
    case SR_BINARY_ADD: ga = sr_tensor_retain(g); gb = sr_tensor_retain(g); break;
    case SR_BINARY_SUB: ga = sr_tensor_retain(g); if (n->needs[1]) gb = sr_unary_raw(SR_UNARY_NEG, g, 0); break;
    case SR_BINARY_MUL:
      if (n->needs[0] && !(gi[0] = scalar_factor_grad(n, 0, g, b))) ga = sr_binary_raw(SR_BINARY_MUL, g, b);
      if (n->needs[1] && !(gi[1] = scalar_factor_grad(n, 1, g, a))) gb = sr_binary_raw(SR_BINARY_MUL, g, a);
      break;
    case SR_BINARY_DIV: {
      sr_tensor *gdb = sr_binary_raw(SR_BINARY_DIV, g, b);   /* g / b */
      if (n->needs[1]) {                                    /* -g a / b^2 = -(g/b) * (a/b) */
        sr_tensor *q = sr_binary_raw(SR_BINARY_DIV, a, b);
        sr_tensor *t = sr_binary_raw(SR_BINARY_MUL, gdb, q);
        gb = sr_unary_raw(SR_UNARY_NEG, t, 0);
        sr_tensor_release(q);
        sr_tensor_release(t);
      }
      ga = gdb;
      break;
    }
    case SR_BINARY_POW: {                                   /* y = a^b */
      sr_tensor *y = sr_binary_raw(SR_BINARY_POW, a, b);
      if (n->needs[0]) {                                    /* g * b * a^(b-1) = g * b * y / a */
        sr_tensor *bm1 = sr_unary_raw(SR_UNARY_ADD_SCALAR, b, -1.0);
        sr_tensor *p = sr_binary_raw(SR_BINARY_POW, a, bm1);
        sr_tensor *t = sr_binary_raw(SR_BINARY_MUL, p, b);
        ga = sr_binary_raw(SR_BINARY_MUL, g, t);
        sr_tensor_release(bm1); sr_tensor_release(p); sr_tensor_release(t);
      }
      if (n->needs[1]) {                                    /* g * y * log(a) */
        sr_tensor *la = sr_unary_raw(SR_UNARY_LOG, a, 0);
        sr_tensor *t = sr_binary_raw(SR_BINARY_MUL, y, la);
        gb = sr_binary_raw(SR_BINARY_MUL, g, t);
        sr_tensor_release(la); sr_tensor_release(t);
      }
      sr_tensor_release(y);
      break;
    }
    case SR_BINARY_MAX: case SR_BINARY_MIN: {               /* the larger (smaller) input takes g; ties split */
      sr_tensor *y = sr_binary_raw((sr_binary_fn)n->i[0], a, b);
      sr_tensor *zero = sr_scalar_like(g, 0.0), *half = sr_scalar_like(g, 0.5);
      sr_tensor *ma = sr_binary_raw(SR_BINARY_EQ, a, y), *mb = sr_binary_raw(SR_BINARY_EQ, b, y);
      sr_tensor *both = sr_binary_raw(SR_BINARY_MUL, ma, mb);
      sr_tensor *w = sr_binary_raw(SR_BINARY_MUL, both, half);  /* 0.5 where tied */
      sr_tensor *wa = sr_binary_raw(SR_BINARY_SUB, ma, w), *wb = sr_binary_raw(SR_BINARY_SUB, mb, w);
      ga = sr_binary_raw(SR_BINARY_MUL, g, wa);
      gb = sr_binary_raw(SR_BINARY_MUL, g, wb);
      sr_tensor *tmp[] = {y, zero, half, ma, mb, both, w, wa, wb};
      for (size_t k = 0; k < sizeof tmp / sizeof tmp[0]; k++) sr_tensor_release(tmp[k]);
      break;
    }
    default: sr_fail("%s: not differentiable", n->name);
  }
  if (ga && n->needs[0]) gi[0] = reduce_grad(n, 0, ga);
  if (gb && n->needs[1]) gi[1] = reduce_grad(n, 1, gb);
  sr_tensor_release(ga);
  sr_tensor_release(gb);
}

sr_tensor *sr_binary(sr_binary_fn fn, sr_tensor *a, sr_tensor *b) {
  const char *op = sr_binary_name(fn);
  check_same_device(op, a, b);
  /* mixed dtypes promote to the wider float, a 0-d operand excepted (result_dtype); shapes are
  ** checked before the casts allocate */
  if (a->dtype != b->dtype) {
    int nd;
    int64_t shape[SR_MAXDIM];
    broadcast_pair(op, a, b, &nd, shape);
    sr_dtype to = result_dtype(a, b);
    sr_tensor *ca = a->dtype == to ? sr_tensor_retain(a) : sr_cast(a, to);
    sr_tensor *cb = b->dtype == to ? sr_tensor_retain(b) : sr_cast(b, to);
    sr_tensor *y = sr_binary(fn, ca, cb);
    sr_tensor_release(ca);
    sr_tensor_release(cb);
    return y;
  }
  sr_tensor *y = sr_binary_raw(fn, a, b);
  if (fn >= SR_BINARY_EQ) return y;  /* comparisons: no gradient */
  sr_tensor *in[2] = {a, b};
  sr_node *n = record(op, binary_backward, 2, in, y);
  if (n) {  /* save only what the rule reads: add/sub nothing, mul the other factor, div b (and a for b's grad) */
    bool keep_a = fn != SR_BINARY_ADD && fn != SR_BINARY_SUB && (fn != SR_BINARY_MUL || n->needs[1]) && (fn != SR_BINARY_DIV || n->needs[1]);
    bool keep_b = fn != SR_BINARY_ADD && fn != SR_BINARY_SUB && (fn != SR_BINARY_MUL || n->needs[0]);
    if (keep_a) sr_node_save(n, 0, a);
    if (keep_b) sr_node_save(n, 1, b);
    n->i[0] = fn;
  }
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* where */

static void where_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0], *cond = sr_node_saved(n, 0);
  if (!g) return;
  sr_tensor *zero = sr_scalar_like(g, 0.0);
  for (int i = 1; i <= 2; i++) {
    if (!n->needs[i]) continue;
    sr_tensor *y = sr_tensor_new_like(g);
    sr_tensor *ec = sr_expand(cond, g->ndim, g->shape), *ez = sr_expand(zero, g->ndim, g->shape);
    sr_kcall c = {.t = {y, ec, i == 1 ? g : ez, i == 1 ? ez : g}, .nt = 4};
    sr_kernel_run(SR_K_where, &c);
    gi[i] = reduce_grad(n, i, y);
    sr_tensor_release(y); sr_tensor_release(ec); sr_tensor_release(ez);
  }
  sr_tensor_release(zero);
}

sr_tensor *sr_where(sr_tensor *cond, sr_tensor *a, sr_tensor *b) {
  int64_t s1[SR_MAXDIM], s2[SR_MAXDIM];
  char b1[96], b2[96], b3[96];
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  check_same_dtype("where", 3, a, b);
  int n1 = sr_broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, s1);
  int n2 = n1 < 0 ? -1 : sr_broadcast_shape(cond->ndim, cond->shape, n1, s1, s2);
  if (n2 < 0) sr_fail("where: shapes %s, %s and %s cannot be broadcast together", SHP(cond, b1), SHP(a, b2), SHP(b, b3));
  sr_tensor *y = sr_tensor_new(a->dtype, a->storage->device, n2, s2);
  sr_tensor *ec = sr_expand(cond, n2, s2), *ea = sr_expand(a, n2, s2), *eb = sr_expand(b, n2, s2);
  sr_kcall c = {.t = {y, ec, ea, eb}, .nt = 4};
  sr_kernel_run(SR_K_where, &c);
  sr_tensor_release(ec); sr_tensor_release(ea); sr_tensor_release(eb);
  sr_tensor *in[3] = {NULL, a, b};
  sr_node *n = record("where", where_backward, 3, in, y);
  if (n) sr_node_save(n, 0, cond);
  return y;
}

/* ------------------------------------------------------------------------------------------ */
/* reductions over one dim */

static void reduce_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  sr_tensor *g = go[0];
  if (!g) return;
  int dim = (int)n->i[1];
  int nd = n->in_ndim[0];
  const int64_t *shape = n->in_shape[0];
  sr_tensor *gk = g;  /* g with the reduced dim kept */
  if (!n->i[2]) gk = sr_unsqueeze(g, dim); else sr_tensor_retain(g);
  sr_tensor *ge = sr_expand(gk, nd, shape);
  sr_tensor *dx;
  switch ((sr_reduce_fn)n->i[0]) {
    case SR_REDUCE_SUM: dx = sr_contiguous_raw(ge); break;
    case SR_REDUCE_MEAN: dx = sr_unary_raw(SR_UNARY_MUL_SCALAR, ge, 1.0 / (double)shape[dim]); break;
    case SR_REDUCE_SUMSQ: { sr_tensor *t = sr_binary_raw(SR_BINARY_MUL, ge, sr_node_saved(n, 0));
      dx = sr_unary_raw(SR_UNARY_MUL_SCALAR, t, 2.0); sr_tensor_release(t); break; }
    case SR_REDUCE_MAX: {  /* gradient to the arg-max position only */
      sr_tensor *idx = sr_node_saved(n, 1);
      sr_tensor *pos = sr_tensor_new(SR_I32, g->storage->device, 1, &shape[dim]);
      sr_kcall ca = {.t = {pos}, .nt = 1, .f = {0.0, 1.0}};
      sr_kernel_run(SR_K_arange, &ca);
      int64_t vs[SR_MAXDIM];
      for (int d = 0; d < nd; d++) vs[d] = d == dim ? shape[dim] : 1;
      sr_tensor *pv = sr_view(pos, nd, vs);
      sr_tensor *mask = sr_binary_raw(SR_BINARY_EQ, pv, idx);         /* i32 0/1, broadcast */
      sr_tensor *mf = sr_to_raw(mask, mask->storage->device, g->dtype);
      dx = sr_binary_raw(SR_BINARY_MUL, ge, mf);
      sr_tensor_release(pos); sr_tensor_release(pv); sr_tensor_release(mask); sr_tensor_release(mf);
      break;
    }
    default: sr_fail("reduce: bad function");
  }
  sr_tensor_release(gk);
  sr_tensor_release(ge);
  gi[0] = dx;
}

static const char *reduce_names[SR_REDUCE_COUNT] = {"sum", "mean", "max", "sumsq"};

sr_tensor *sr_reduce(sr_reduce_fn fn, sr_tensor *x, int dim, bool keepdim) {
  check_float(reduce_names[fn], 1, x);
  dim = wrap(reduce_names[fn], dim, x->ndim);
  if (x->ndim == 0) {  /* a scalar reduces to itself */
    sr_tensor *v = sr_unsqueeze_op(x, 0);
    sr_tensor *r = sr_reduce(fn, v, 0, false);
    sr_tensor_release(v);
    return r;
  }
  sr_tensor *idx = NULL;
  sr_tensor *y = sr_reduce_raw(fn, x, dim, fn == SR_REDUCE_MAX ? &idx : NULL);
  if (!keepdim) {
    sr_tensor *s = sr_squeeze(y, dim);
    sr_tensor_release(y);
    y = s;
  }
  sr_node *n = record(reduce_names[fn], reduce_backward, 1, &x, y);
  if (n) {
    n->i[0] = fn; n->i[1] = dim; n->i[2] = keepdim;
    if (fn == SR_REDUCE_SUMSQ) sr_node_save(n, 0, x);
    if (fn == SR_REDUCE_MAX) sr_node_save(n, 1, idx);
  }
  sr_tensor_release(idx);
  return y;
}

sr_tensor *sr_argmax(sr_tensor *x, int dim, bool keepdim) {
  dim = wrap("argmax", dim, x->ndim);
  sr_tensor *idx;
  sr_tensor *y = sr_reduce_raw(SR_REDUCE_MAX, x, dim, &idx);
  sr_tensor_release(y);
  if (!keepdim) { sr_tensor *s = sr_squeeze(idx, dim); sr_tensor_release(idx); idx = s; }
  return idx;
}

sr_tensor *sr_sum_all(sr_tensor *x) {
  sr_tensor *flat = sr_reshape(x, 1, (int64_t[]){-1});
  sr_tensor *s = sr_reduce(SR_REDUCE_SUM, flat, 0, false);
  sr_tensor_release(flat);
  return s;
}

/* ------------------------------------------------------------------------------------------ */
/* differentiable views: the gradient goes back through the inverse view */

static void view_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {  /* view/reshape/(un)squeeze */
  if (!go[0]) return;
  /* a strided gradient (a destination's slice) goes back as a view when its strides allow one */
  if (sr_grad_fusion(SR_GRAD_SLICES) && (gi[0] = sr_view_try(go[0], n->in_ndim[0], n->in_shape[0]))) return;
  sr_tensor *g = sr_contiguous_raw(go[0]);
  gi[0] = sr_view(g, n->in_ndim[0], n->in_shape[0]);
  sr_tensor_release(g);
}

/* destinations (autograd.h): the gradient place of a view's output, from its input's */
static sr_tensor *view_dest(sr_node *n, int k, sr_tensor *d) { return sr_view_try(d, n->out_ndim[k], n->out_shape[k]); }

static sr_tensor *record_view(const char *op, sr_tensor *x, sr_tensor *y, sr_backward_fn bw) {
  sr_node *n = record(op, bw, 1, &x, y);
  if (n && bw == view_backward) n->dest_map = view_dest;
  return y;
}

sr_tensor *sr_view_op(sr_tensor *x, int ndim, const int64_t *shape) {
  return record_view("view", x, sr_view(x, ndim, shape), view_backward);
}

/* reshape: a view when the strides allow one, else a contiguous copy */
sr_tensor *sr_reshape(sr_tensor *x, int ndim, const int64_t *shape) {
  int m = sr_scratch_mark();  /* a shape that does not fit fails after the copy */
  sr_tensor *c = sr_scratch_push(sr_contiguous(x));
  sr_tensor *y = sr_view_op(c, ndim, shape);
  sr_scratch_pop(m);
  return y;
}

sr_tensor *sr_unsqueeze_op(sr_tensor *x, int dim) { return record_view("unsqueeze", x, sr_unsqueeze(x, dim), view_backward); }
sr_tensor *sr_squeeze_op(sr_tensor *x, int dim) { return record_view("squeeze", x, sr_squeeze(x, dim), view_backward); }

static void transpose_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (go[0]) gi[0] = sr_transpose(go[0], (int)n->i[0], (int)n->i[1]);
}

static sr_tensor *transpose_dest(sr_node *n, int k, sr_tensor *d) { (void)k; return sr_transpose(d, (int)n->i[0], (int)n->i[1]); }

sr_tensor *sr_transpose_op(sr_tensor *x, int d0, int d1) {
  sr_tensor *y = sr_transpose(x, d0, d1);
  sr_node *n = record("transpose", transpose_backward, 1, &x, y);
  if (n) { n->i[0] = d0; n->i[1] = d1; n->dest_map = transpose_dest; }
  return y;
}

static void permute_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (!go[0]) return;
  int inv[SR_MAXDIM];
  for (int d = 0; d < n->in_ndim[0]; d++) inv[n->i[0] >> (4 * d) & 15] = d;
  gi[0] = sr_permute(go[0], inv);
}

static sr_tensor *permute_dest(sr_node *n, int k, sr_tensor *d) {
  (void)k;
  int perm[SR_MAXDIM];
  for (int i = 0; i < n->in_ndim[0]; i++) perm[i] = (int)(n->i[0] >> (4 * i) & 15);
  return sr_permute(d, perm);
}

sr_tensor *sr_permute_op(sr_tensor *x, const int *perm) {
  sr_tensor *y = sr_permute(x, perm);
  sr_node *n = record("permute", permute_backward, 1, &x, y);
  if (n) {
    n->i[0] = 0;
    for (int d = 0; d < x->ndim; d++) n->i[0] |= (int64_t)(perm[d] < 0 ? perm[d] + x->ndim : perm[d]) << (4 * d);
    n->dest_map = permute_dest;
  }
  return y;
}

/* the same view of the same memory */
static bool same_view(const sr_tensor *a, const sr_tensor *b) {
  if (a->storage != b->storage || a->offset != b->offset || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)  /* the stride of a dim of size 1 is never used */
    if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->stride[d] != b->stride[d])) return false;
  return true;
}

/* piece [start, start + len) along dim of the gradient dx of a split or narrow: the piece's
** gradient g copied in, unless a consumer wrote it there already (g is the piece's destination),
** or zeros when none came */
static void put_piece(sr_tensor *dx, int dim, int64_t start, int64_t len, sr_tensor *g) {
  if (len == 0) return;
  sr_tensor *part = sr_narrow(dx, dim, start, len);
  if (!g) sr_fill_(part, 0.0);
  else if (!same_view(part, g)) sr_copy_(part, g);
  sr_tensor_release(part);
}

/* narrow: the piece's gradient with zeros around it (written once each, in the node's gradient
** buffer when a consumer was offered the piece as its destination) */
static void narrow_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (!go[0]) return;
  int dim = (int)n->i[0];
  int64_t start = n->i[1], len = n->i[2], size = n->in_shape[0][dim];
  if (!n->gbuf && !sr_grad_fusion(SR_GRAD_SLICES)) {  /* as before the fusion: zeros, then the piece */
    sr_tensor *dx = sr_tensor_zeros(go[0]->dtype, go[0]->storage->device, n->in_ndim[0], n->in_shape[0]);
    put_piece(dx, dim, start, len, go[0]);
    gi[0] = dx;
    return;
  }
  sr_tensor *dx = n->gbuf ? sr_tensor_retain(n->gbuf)
                          : sr_tensor_new(go[0]->dtype, go[0]->storage->device, n->in_ndim[0], n->in_shape[0]);
  put_piece(dx, dim, 0, start, NULL);
  put_piece(dx, dim, start, len, go[0]);
  put_piece(dx, dim, start + len, size - start - len, NULL);
  gi[0] = dx;
}

static sr_tensor *narrow_dest(sr_node *n, int k, sr_tensor *d) { (void)k; return sr_narrow(d, (int)n->i[0], n->i[1], n->i[2]); }

sr_tensor *sr_narrow_op(sr_tensor *x, int dim, int64_t start, int64_t length) {
  sr_tensor *y = sr_narrow(x, dim, start, length);
  sr_node *n = record("narrow", narrow_backward, 1, &x, y);
  if (n) {
    n->i[0] = dim < 0 ? dim + x->ndim : dim;
    n->i[1] = start < 0 ? start + x->shape[n->i[0]] : start;
    n->i[2] = length;
    n->dest_map = narrow_dest;
    n->flags |= SR_NODE_DEST_OWN;
  }
  return y;
}

/* split into pieces along dim (sizes sum to the dim's size): views; one node with up to
** SR_NODE_MAXOUT (16) outputs whose backward writes every piece's gradient into one tensor (zeros
** where a piece got none) instead of one zero-filled full-size tensor per piece. That tensor is
** the node's gradient buffer when consumers were offered its pieces as destinations (autograd.h):
** the pieces they wrote need no copy. */
static void split_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  int dim = (int)n->i[0];
  sr_tensor *like = NULL;
  for (int k = 0; k < n->nout; k++) if (go[k]) { like = go[k]; break; }
  if (!like) return;
  sr_tensor *dx = n->gbuf ? sr_tensor_retain(n->gbuf)
                          : sr_tensor_new(like->dtype, like->storage->device, n->in_ndim[0], n->in_shape[0]);
  int64_t start = 0;
  for (int k = 0; k < n->nout; k++) {
    int64_t len = n->out_shape[k][dim];
    put_piece(dx, dim, start, len, go[k]);
    start += len;
  }
  gi[0] = dx;
}

static sr_tensor *split_dest(sr_node *n, int k, sr_tensor *d) {
  int64_t start = 0;
  int dim = (int)n->i[0];
  for (int j = 0; j < k; j++) start += n->out_shape[j][dim];
  return sr_narrow(d, dim, start, n->out_shape[k][dim]);
}

int sr_split_op(sr_tensor *x, int dim, int n, const int64_t *sizes, sr_tensor **out) {
  dim = wrap("split", dim, x->ndim);
  if (n < 1 || n > SR_NODE_MAXOUT) sr_fail("split: 1 to %d pieces (got %d)", SR_NODE_MAXOUT, n);
  int64_t start = 0;
  for (int k = 0; k < n; k++) {  /* every size checked before the first view */
    if (sizes[k] < 0 || sizes[k] > x->shape[dim] - start) sr_fail("split: piece sizes exceed dimension %d", dim + 1);
    start += sizes[k];
  }
  if (start != x->shape[dim]) sr_fail("split: piece sizes sum to %lld, dimension %d has %lld", (long long)start, dim + 1,
                                      (long long)x->shape[dim]);
  start = 0;
  for (int k = 0; k < n; k++) {
    out[k] = sr_narrow(x, dim, start, sizes[k]);
    start += sizes[k];
  }
  if (sr_needs_grad(1, &x)) {
    sr_node *nd = sr_node_new("split", split_backward, 1, &x);
    nd->i[0] = dim;                /* the pieces' sizes are their out_shape[k][dim] */
    nd->dest_map = split_dest;
    nd->flags |= SR_NODE_DEST_OWN;
    sr_node_attach(nd, n, out);
    sr_node_release(nd);
  }
  return n;
}

static void expand_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (go[0]) gi[0] = sr_sum_to_raw(go[0], n->in_ndim[0], n->in_shape[0]);
}

sr_tensor *sr_expand_op(sr_tensor *x, int ndim, const int64_t *shape) {
  return record_view("expand", x, sr_expand(x, ndim, shape), expand_backward);
}

static void cat_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (!go[0]) return;
  int dim = (int)n->i[0];
  int64_t start = 0;
  for (int i = 0; i < n->nin; i++) {
    int64_t len = n->in_shape[i][dim];
    if (n->needs[i]) {
      sr_tensor *part = sr_narrow(go[0], dim, start, len);
      gi[i] = sr_contiguous_raw(part);
      sr_tensor_release(part);
    }
    start += len;
  }
}

sr_tensor *sr_cat(int n, sr_tensor *const *xs, int dim) {
  char b1[96], b2[96];
  if (n < 1) sr_fail("cat: needs at least one tensor");
  if (n > SR_NODE_MAXIN && sr_needs_grad(n, xs))
    sr_fail("cat: at most %d tensors when gradients are recorded (got %d); cat in groups", SR_NODE_MAXIN, n);
  const sr_tensor *x0 = xs[0];
  if (x0->ndim == 0) sr_fail("cat: bad argument #1 (0-d tensors have no dimension to join; unsqueeze them first)");
  dim = wrap("cat", dim, x0->ndim);
  int64_t shape[SR_MAXDIM];
  memcpy(shape, x0->shape, sizeof shape);
  shape[dim] = 0;
  for (int i = 0; i < n; i++) {
    check_same_device("cat", xs[0], xs[i]);
    check_same_dtype("cat", i + 1, xs[0], xs[i]);
    bool ok = xs[i]->ndim == x0->ndim;
    for (int d = 0; ok && d < x0->ndim; d++) ok = d == dim || xs[i]->shape[d] == x0->shape[d];
    if (!ok) sr_fail("cat: bad argument #%d (shape %s does not match %s outside dimension %d)", i + 1, SHP(xs[i], b1), SHP(x0, b2), dim + 1);
    if (__builtin_add_overflow(shape[dim], xs[i]->shape[dim], &shape[dim]))
      sr_fail("cat: the sizes of dimension %d overflow", dim + 1);
  }
  sr_check_alloc("cat", x0->dtype, x0->ndim, shape);
  sr_tensor *y = sr_tensor_new(x0->dtype, x0->storage->device, x0->ndim, shape);
  int64_t start = 0;
  for (int i = 0; i < n; i++) {
    sr_tensor *part = sr_narrow(y, dim, start, xs[i]->shape[dim]);
    sr_copy_(part, xs[i]);
    sr_tensor_release(part);
    start += xs[i]->shape[dim];
  }
  if (n <= SR_NODE_MAXIN) {
    sr_node *nd = record("cat", cat_backward, n, xs, y);
    if (nd) nd->i[0] = dim;
  }
  return y;
}

