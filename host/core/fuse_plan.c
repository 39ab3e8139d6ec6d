/*
** core/fuse_plan.c: the step compiler's planner (core/fuse.h): finds, in a recorded step, the
** groups of adjacent launches one kernel can do (element-wise chains, cast folding), proves
** which of their outputs are dead, and prints a plan.
*/
#include <stdarg.h>      /* defines: va_list */
#include <stdio.h>       /* defines: snprintf, vsnprintf */
#include <stdlib.h>      /* defines: calloc, malloc, free */
#include <string.h>      /* defines: memset, memcpy, memcmp */

#include "core/fuse.h"

enum { WHY_SHAPE, WHY_ALIAS, WHY_SIZE, WHY_DTYPE, WHY_NOSTORE, WHY_OTHER_STEP, WHY_COUNT };
static const char *why_names[WHY_COUNT] = {
  "iteration shapes differ", "a written tensor is read through another layout", "too many operands",
  "dtype not fusable on the device", "no output lives on", "the other recorded step disagrees",
};
const char *sr_fuse_refusal(int why) { return why >= 0 && why < WHY_COUNT ? why_names[why] : "?"; }

static void label_groups(sr_fuse_plan *p);

static const sr_fuse_arg *arg_of(const sr_fuse_rec *r, int64_t k, int j) { return &r->a[r->l[k].arg0 + j]; }

static int64_t numel_of(int nd, const int64_t *shape) {
  int64_t n = 1;
  for (int d = 0; d < nd; d++) n *= shape[d];
  return n;
}

int sr_fuse_view_strides(int nd, const int64_t *shape, const int64_t *stride, int gnd, const int64_t *gshape,
                         int64_t *out) {
  if (numel_of(nd, shape) != numel_of(gnd, gshape)) return 0;
  if (nd == 0) {
    for (int d = 0; d < gnd; d++) out[d] = 0;
    return 1;
  }
  int view_d = gnd - 1;
  int64_t base = stride[nd - 1], tn = 1, vn = 1;
  for (int td = nd - 1; td >= 0; td--) {
    tn *= shape[td];
    if (td == 0 || (shape[td - 1] != 1 && stride[td - 1] != tn * base)) {
      while (view_d >= 0 && (vn < tn || gshape[view_d] == 1)) {
        out[view_d] = vn * base;
        vn *= gshape[view_d];
        view_d--;
      }
      if (vn != tn) return 0;
      if (td > 0) base = stride[td - 1], tn = 1, vn = 1;
    }
  }
  return view_d == -1;
}

static int view_strides(const sr_fuse_arg *a, int gnd, const int64_t *gshape, int64_t *out) {
  return sr_fuse_view_strides(a->ndim, a->shape, a->stride, gnd, gshape, out);
}

static int float_ok(int dt, int device) {
  return dt == SR_F32 || dt == SR_BF16 || (dt == SR_F64 && device == SR_CPU);
}

/* the tensors an element-wise launch has, or 0 when it is not a fusable element-wise launch */
static int ew_arity(const sr_fuse_rec *r, int64_t k, int device) {
  const sr_fuse_launch *l = &r->l[k];
  int n;
  switch (l->id) {
    case SR_K_fill: n = 1; break;
    case SR_K_copy: case SR_K_unary: n = 2; break;
    case SR_K_unary_backward: case SR_K_binary: n = 3; break;
    case SR_K_where: n = 4; break;
    default: return 0;
  }
  if (l->nt < n || l->nlist) return 0;
  if ((l->id == SR_K_unary || l->id == SR_K_unary_backward) && (l->i[0] < 0 || l->i[0] >= SR_UNARY_COUNT)) return 0;
  if (l->id == SR_K_unary_backward && l->i[1] && !sr_unary_output_grad(l->i[0])) return 0;
  if (l->id == SR_K_binary && (l->i[0] < 0 || l->i[0] >= SR_BINARY_COUNT)) return 0;
  for (int j = 0; j < n; j++) {
    const sr_fuse_arg *a = arg_of(r, k, j);
    if (a->sid < 0) return 0;
    int any = (l->id == SR_K_copy && j == 1) || (l->id == SR_K_where && j == 1);  /* i32 source or condition */
    if (!float_ok(a->dtype, device) && !(any && a->dtype == SR_I32)) return -1;
  }
  return n;
}

/* ------------------------------------------------------------------------------------------
** building one element-wise group */

typedef struct touched {
  int sid, dtype, written, consistent, val;
  int64_t off, st[SR_MAXDIM];
} touched;

typedef struct gbuild {
  sr_fuse_group g;
  touched s[2 * SR_FUSE_MAXIO];
  int ns;
  int lsid[SR_FUSE_MAXIO];                      /* each load's storage and layout */
  int64_t loff[SR_FUSE_MAXIO], lst[SR_FUSE_MAXIO][SR_MAXDIM];
  int nwritten;
} gbuild;

static int same_layout(const gbuild *b, int64_t off1, const int64_t *s1, int64_t off2, const int64_t *s2) {
  if (off1 != off2) return 0;
  for (int d = 0; d < b->g.ndim; d++)
    if (b->g.shape[d] > 1 && s1[d] != s2[d]) return 0;
  return 1;
}

/* the value tensor j of member m reads (load code -(i+1), or op index), or WHY_* + 1000 */
static int add_input(gbuild *b, const sr_fuse_arg *a, int m, int j) {
  int64_t st[SR_MAXDIM];
  if (!view_strides(a, b->g.ndim, b->g.shape, st)) return 1000 + WHY_SHAPE;
  int e = -1;
  for (int k = 0; k < b->ns; k++)
    if (b->s[k].sid == a->sid) e = k;
  if (e < 0) {
    if (b->ns == 2 * SR_FUSE_MAXIO) return 1000 + WHY_SIZE;
    e = b->ns++;
    b->s[e] = (touched){a->sid, a->dtype, 0, 1, 0, a->offset, {0}};
    memcpy(b->s[e].st, st, sizeof st);
  } else if (!same_layout(b, b->s[e].off, b->s[e].st, a->offset, st) || b->s[e].dtype != a->dtype) {
    b->s[e].consistent = 0;
  }
  b->g.cls[m][j] = (signed char)e;
  if (b->s[e].written) return b->s[e].consistent ? b->s[e].val : 1000 + WHY_ALIAS;
  for (int k = 0; k < b->g.nload; k++)
    if (b->lsid[k] == a->sid && same_layout(b, b->loff[k], b->lst[k], a->offset, st) &&
        b->g.io[k].dtype == a->dtype)
      return -(k + 1);
  if (b->g.nload + b->nwritten >= SR_FUSE_MAXIO) return 1000 + WHY_SIZE;
  int k = b->g.nload++;
  b->g.io[k] = (sr_fuse_io){m, j, a->dtype, -1};
  b->lsid[k] = a->sid, b->loff[k] = a->offset;
  memcpy(b->lst[k], st, sizeof st);
  return -(k + 1);
}

static int add_output(gbuild *b, const sr_fuse_arg *a, int m) {
  int64_t st[SR_MAXDIM];
  if (!view_strides(a, b->g.ndim, b->g.shape, st)) return WHY_SHAPE;
  if (!sr_layout_non_overlapping(b->g.ndim, b->g.shape, st)) return WHY_ALIAS;
  int e = -1;
  for (int k = 0; k < b->ns; k++)
    if (b->s[k].sid == a->sid) e = k;
  if (e < 0) {
    if (b->ns == 2 * SR_FUSE_MAXIO) return WHY_SIZE;
    e = b->ns++;
    b->s[e] = (touched){a->sid, a->dtype, 0, 1, 0, a->offset, {0}};
    memcpy(b->s[e].st, st, sizeof st);
  } else if (!same_layout(b, b->s[e].off, b->s[e].st, a->offset, st) || b->s[e].dtype != a->dtype) {
    return WHY_ALIAS;
  }
  if (!b->s[e].consistent) return WHY_ALIAS;  /* read through another layout earlier in the group */
  if (!b->s[e].written) b->nwritten++;
  if (b->g.nload + b->nwritten > SR_FUSE_MAXIO) return WHY_SIZE;
  b->s[e].written = 1;
  b->s[e].val = m;
  b->g.cls[m][0] = (signed char)e;
  return -1;
}

/* adds launch k as the next member; -1, or why not (b is then unusable: the caller keeps a copy) */
static int add_member(gbuild *b, const sr_fuse_rec *r, int64_t k, int n) {
  const sr_fuse_launch *l = &r->l[k];
  int m = b->g.nop;
  if (m == SR_FUSE_MAXOPS) return WHY_SIZE;
  const sr_fuse_arg *o = arg_of(r, k, 0);
  if (m == 0) {
    b->g.first = k;
    b->g.ndim = o->ndim;
    memcpy(b->g.shape, o->shape, sizeof o->shape);
    if (numel_of(o->ndim, o->shape) == 0) return WHY_SHAPE;
  } else if (numel_of(o->ndim, o->shape) != numel_of(b->g.ndim, b->g.shape)) {
    return WHY_SHAPE;
  }
  sr_fuse_op *op = &b->g.op[m];
  memset(op, 0, sizeof *op);
  op->kind = l->id, op->p = l->f[0], op->nin = n - 1, op->dtype = o->dtype;
  op->fn = l->id == SR_K_unary || l->id == SR_K_unary_backward || l->id == SR_K_binary ? (int)l->i[0] : 0;
  if (l->id == SR_K_unary_backward && l->i[1]) op->fn += SR_UNARY_COUNT;
  for (int j = 0; j < SR_KMAXT; j++) b->g.cls[m][j] = -1;
  for (int j = 1; j < n; j++) {
    int v = add_input(b, arg_of(r, k, j), m, j);
    if (v >= 1000) return v - 1000;
    op->in[j - 1] = v;
  }
  int w = add_output(b, o, m);
  if (w >= 0) return w;
  b->g.nop = m + 1;
  b->g.n = m + 1;
  return -1;
}

/* storage of launch k's argument j dead after launch end in recording r: created during the
** step, freed before its end, and touched by no launch after end */
static int dead_after(const sr_fuse_rec *r, int64_t k, int j, int64_t end) {
  const sr_fuse_arg *a = arg_of(r, k, j);
  const sr_fuse_storage *s = &r->s[a->sid];
  return s->born && s->died >= 0 && s->last <= end;
}

/* the storage classes of a group's member tensors in recording r agree with g's */
static int same_scalars(const sr_fuse_rec *a, const sr_fuse_rec *b, int64_t first, int n) {
  for (int64_t k = first; k < first + n; k++)
    if (memcmp(a->l[k].f, b->l[k].f, sizeof a->l[k].f) || memcmp(a->l[k].i, b->l[k].i, sizeof a->l[k].i)) return 0;
  return 1;
}

static int same_classes(const sr_fuse_rec *r, const sr_fuse_group *g) {
  int rep[2 * SR_FUSE_MAXIO];
  for (int e = 0; e < 2 * SR_FUSE_MAXIO; e++) rep[e] = -1;
  for (int m = 0; m < g->n; m++)
    for (int j = 0; j < SR_KMAXT; j++) {
      int e = g->cls[m][j];
      if (e < 0) continue;
      int sid = arg_of(r, g->first + m, j)->sid;
      if (rep[e] < 0) {
        for (int x = 0; x < 2 * SR_FUSE_MAXIO; x++)
          if (rep[x] == sid) return 0;
        rep[e] = sid;
      } else if (rep[e] != sid) {
        return 0;
      }
    }
  return 1;
}

static int64_t io_bytes(const sr_fuse_rec *r, const sr_fuse_group *g, int m, int j) {
  const sr_fuse_arg *a = arg_of(r, g->first + m, j);
  return numel_of(a->ndim, a->shape) * (int64_t)sr_dtype_size((sr_dtype)a->dtype);
}

/* the stores of a finished group (outputs not proven dead in every recording), value indices
** remapped (loads first); returns -1 or why the group is refused */
static int finish_group(gbuild *b, const sr_fuse_rec *const *recs, int nrec) {
  sr_fuse_group *g = &b->g;
  int64_t end = g->first + g->n - 1, unfused = 0, fused = 0;
  for (int x = 0; x < nrec; x++)
    if (!same_classes(recs[x], g) || !same_scalars(recs[0], recs[x], g->first, g->n)) return WHY_OTHER_STEP;
  for (int m = 0; m < g->nop; m++) {
    sr_fuse_op *op = &g->op[m];
    for (int j = 0; j < op->nin; j++) op->in[j] = op->in[j] < 0 ? -op->in[j] - 1 : g->nload + op->in[j];
    for (int j = 0; j <= op->nin; j++) unfused += io_bytes(recs[0], g, m, j);
  }
  g->nio = g->nload;
  for (int e = 0; e < b->ns; e++) {
    if (!b->s[e].written) continue;
    int m = b->s[e].val, dead = 1;
    for (int x = 0; x < nrec; x++) dead = dead && dead_after(recs[x], g->first + m, 0, end);
    if (dead) { g->dead++; continue; }
    g->io[g->nio++] = (sr_fuse_io){m, 0, g->op[m].dtype, g->nload + m};
  }
  if (g->nio == g->nload) return WHY_NOSTORE;
  for (int k = 0; k < g->nio; k++) fused += io_bytes(recs[0], g, g->io[k].member, g->io[k].arg);
  g->saved_bytes = unfused - fused;
  return -1;
}

/* ------------------------------------------------------------------------------------------
** cast folding: producer k writes what copy k+1 would have made of its output */

static int arg_contiguous(const sr_fuse_arg *a) {
  int64_t want = 1;
  for (int d = a->ndim - 1; d >= 0; d--) {
    if (a->shape[d] != 1 && a->stride[d] != want) return 0;
    want *= a->shape[d];
  }
  return 1;
}

static int fold_ok(const sr_fuse_rec *const *recs, int nrec, int64_t k, int device) {
  const sr_fuse_rec *r = recs[0];
  if (k + 1 >= r->n || r->l[k + 1].id != SR_K_copy || r->l[k + 1].nt < 2) return 0;
  const sr_fuse_launch *p = &r->l[k];
  const sr_fuse_arg *po = arg_of(r, k, 0), *cx = arg_of(r, k + 1, 1), *co = arg_of(r, k + 1, 0);
  if (p->id == SR_K_gemm) {
    if (p->f[1] != 0) return 0;
    if (device == SR_CUDA && !(co->dtype == SR_BF16 && arg_of(r, k, 1)->dtype == SR_BF16)) return 0;
  } else if (p->id != SR_K_rms_norm && p->id != SR_K_layer_norm && p->id != SR_K_rotary) {
    return 0;   /* producers that compute each value in f32 (the CPU: double) and store it once */
  }
  /* the copy reads, in row-major order, exactly the elements the producer wrote (both contiguous
  ** from one offset), and writes a contiguous tensor of as many: the producer can write that */
  int64_t n = numel_of(po->ndim, po->shape);
  if (po->sid < 0 || cx->sid != po->sid || co->sid < 0 || cx->offset != po->offset || cx->dtype != po->dtype ||
      !arg_contiguous(po) || !arg_contiguous(cx) || !arg_contiguous(co) || numel_of(cx->ndim, cx->shape) != n ||
      numel_of(co->ndim, co->shape) != n)
    return 0;
  int narrowing = (po->dtype == SR_F32 && co->dtype == SR_BF16) ||
                  (device == SR_CPU && po->dtype == SR_F64 && (co->dtype == SR_F32 || co->dtype == SR_BF16));
  if (!narrowing) return 0;
  for (int j = 1; j < p->nt; j++)
    if (arg_of(r, k, j)->sid == co->sid) return 0;
  for (int x = 0; x < nrec; x++) {
    if (!dead_after(recs[x], k, 0, k + 1) || !same_scalars(recs[0], recs[x], k, 2)) return 0;
    if (arg_of(recs[x], k + 1, 1)->sid != arg_of(recs[x], k, 0)->sid) return 0;
  }
  return 1;
}

/* narrower-or-equal float types: a value of dtype v stored as dtype s and read back is v exactly */
static int holds(int s, int v) {
  return s == v || (v == SR_BF16 && (s == SR_F32 || s == SR_F64)) || (v == SR_F32 && s == SR_F64);
}

int sr_fuse_fold_in_arg(int id) {
  return id == SR_K_rms_norm_backward ? 2 : id == SR_K_layer_norm_backward ? 3 : -1;
}

/* input folding: copy k widens (bf16 -> f32, ...; exact) a contiguous tensor that only launch k+1,
** a norm's backward, reads, as its upstream gradient: k+1 can read the copy's source instead. The
** source is not among what k+1 writes (it reads a row's gradient after writing earlier rows) */
static int in_fold_ok(const sr_fuse_rec *const *recs, int nrec, int64_t k) {
  const sr_fuse_rec *r = recs[0];
  if (k + 1 >= r->n || r->l[k].id != SR_K_copy || r->l[k].nt < 2) return 0;
  int jd = sr_fuse_fold_in_arg(r->l[k + 1].id);
  if (jd < 0 || r->l[k + 1].nt <= jd) return 0;
  const sr_fuse_arg *co = arg_of(r, k, 0), *cx = arg_of(r, k, 1), *d = arg_of(r, k + 1, jd);
  int64_t n = numel_of(co->ndim, co->shape);
  if (co->sid < 0 || cx->sid < 0 || d->sid != co->sid || d->offset != co->offset || d->dtype != co->dtype ||
      co->dtype == cx->dtype || !holds(co->dtype, cx->dtype) || !arg_contiguous(co) || !arg_contiguous(cx) ||
      !arg_contiguous(d) || numel_of(cx->ndim, cx->shape) != n || numel_of(d->ndim, d->shape) != n)
    return 0;
  for (int j = 0; j < r->l[k + 1].nt; j++) {
    int sid = arg_of(r, k + 1, j)->sid;
    if (sid >= 0 && (sid == cx->sid || (j != jd && sid == co->sid))) return 0;
  }
  for (int x = 0; x < nrec; x++) {
    if (!dead_after(recs[x], k, 0, k + 1) || arg_of(recs[x], k + 1, jd)->sid != arg_of(recs[x], k, 0)->sid) return 0;
    if (arg_of(recs[x], k, 1)->sid == arg_of(recs[x], k + 1, 0)->sid) return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------
** the loss: an element-wise group whose output an in-place cross_entropy reads, and the
** element-wise group the backward then runs on the gradient (core/fuse.h, 4.) */

static int touches(const sr_fuse_rec *r, int64_t k, int sid) {
  for (int j = 0; j < r->l[k].nt; j++)
    if (arg_of(r, k, j)->sid == sid) return 1;
  return 0;
}

/* the last member of g whose output is storage sid, or -1 */
static int writer_of(const sr_fuse_rec *r, const sr_fuse_group *g, int sid) {
  int w = -1;
  for (int m = 0; m < g->n; m++)
    if (arg_of(r, g->first + m, 0)->sid == sid) w = m;
  return w;
}

static const sr_fuse_arg *io_arg(const sr_fuse_rec *r, const sr_fuse_group *g, int k) {
  return arg_of(r, g->first + g->io[k].member, g->io[k].arg);
}

/* one element, seen through any shape (strides 0) */
static int arg_one(const sr_fuse_arg *a) {
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != 1 && a->stride[d] != 0) return 0;
  return 1;
}

/* every tensor of g holds its n elements in row-major order from its offset (a load may also be
** one element, broadcast): element i of the loop is element i of each */
static int flat_io(const sr_fuse_rec *r, const sr_fuse_group *g, int64_t n) {
  for (int k = 0; k < g->nio; k++) {
    const sr_fuse_arg *a = io_arg(r, g, k);
    if (!(arg_contiguous(a) && numel_of(a->ndim, a->shape) == n) && !(k < g->nload && arg_one(a))) return 0;
  }
  return 1;
}

#define XENT_GAP 16  /* launches between a loss group's chain and its cross_entropy (the mean's count) */

/* the first launch after group g touching a storage g touches, within XENT_GAP; -1 if none */
static int64_t next_touch(const sr_fuse_rec *r, const sr_fuse_group *g) {
  for (int64_t c = g->first + g->n; c < r->n && c <= g->first + g->n + XENT_GAP; c++)
    for (int j = 0; j < r->l[c].nt; j++) {
      int sid = arg_of(r, c, j)->sid;
      for (int m = 0; sid >= 0 && m < g->n; m++)
        if (touches(r, g->first + m, sid)) return c;
    }
  return -1;
}

/* group g followed by an in-place cross_entropy over the logits it stores (at launch *ce; the
** launches between touch none of g's storages and belong to no group: the executor holds one
** group's members at a time): the index of that store in g->io, or -1 */
static int xent_store(const sr_fuse_rec *r, const sr_fuse_plan *p, const sr_fuse_group *g, int64_t *ce) {
  int64_t c = *ce = next_touch(r, g);
  if (g->fold || g->n >= SR_FUSE_MAXOPS || c < 0 || r->l[c].id != SR_K_cross_entropy || r->l[c].nt < 6) return -1;
  for (int64_t k = g->first + g->n; k <= c; k++)
    if (p->group_of[k] >= 0) return -1;
  const sr_fuse_arg *x = arg_of(r, c, 2), *d = arg_of(r, c, 4);
  int64_t n = numel_of(x->ndim, x->shape);
  if (x->sid < 0 || d->sid != x->sid || d->offset != x->offset || d->dtype != x->dtype || !arg_contiguous(x) ||
      !arg_contiguous(d) || numel_of(d->ndim, d->shape) != n || numel_of(g->ndim, g->shape) != n || !flat_io(r, g, n))
    return -1;
  if (p->device == SR_CUDA && x->dtype != SR_F32 && x->dtype != SR_BF16) return -1;
  for (int j = 0; j < 6; j++) {  /* its other tensors are none of the group's */
    int sid = arg_of(r, c, j)->sid;
    for (int m = 0; sid >= 0 && j != 2 && j != 4 && m < g->n; m++)
      if (touches(r, g->first + m, sid)) return -1;
  }
  int w = writer_of(r, g, x->sid);
  if (w < 0 || arg_of(r, g->first + w, 0)->offset != x->offset) return -1;
  for (int k = g->nload; k < g->nio; k++)
    if (io_arg(r, g, k)->sid == x->sid && g->io[k].src == g->nload + w) return k;
  return -1;
}

enum { RELAY_NONE, RELAY_AHEAD, RELAY_DEFER };

/* the group the backward first runs on the gradient the loss group g (cross_entropy at launch c)
** leaves in the logits' storage, and how the loss kernel can take its work:
** - RELAY_AHEAD: it reads only that gradient and values g computed (untouched since), and its one
**   output fits in the logits' dtype: the loss kernel runs it on the gradient before storing;
** - RELAY_DEFER: it also reads storages g does not write (the upstream scale of micro-batches):
**   the relay computes the gradient itself, from g's loads and the cross_entropy's lse, targets
**   and scale, none of them touched in between.
** Either way its output is over the gradient itself, or a tensor of its own when nothing reads the
** logits' storage after it. Its index (*mode set), and in map[k] what each of its loads is: the
** value of g, or -(f + 1) for its f-th load of its own (defer); or -1 */
static int relay_of(const sr_fuse_rec *r, const sr_fuse_plan *p, const sr_fuse_group *g, int64_t c, int *map,
                    int *mode) {
  const sr_fuse_arg *x = arg_of(r, c, 2);
  int64_t n = numel_of(x->ndim, x->shape), e = c + 1;
  *mode = RELAY_NONE;
  while (e < r->n && !touches(r, e, x->sid)) e++;
  if (e >= r->n || p->group_of[e] < 0) return -1;
  for (int64_t k2 = c + 1; k2 < e; k2++)  /* one relay pending at a time: no other loss before it */
    if (r->l[k2].id == SR_K_cross_entropy) return -1;
  int ei = p->group_of[e], nfor = 0;
  const sr_fuse_group *E = &p->g[ei];
  int64_t end = E->first + E->n - 1;
  if (E->first != e || E->fold || E->xent || E->nio - E->nload != 1 || numel_of(E->ndim, E->shape) != n ||
      !flat_io(r, E, n))
    return -1;
  const sr_fuse_arg *o = io_arg(r, E, E->nload);
  int inplace = o->sid == x->sid;
  if (inplace ? o->offset != x->offset || o->dtype != x->dtype : writer_of(r, g, o->sid) >= 0 || r->s[x->sid].last > end)
    return -1;
  for (int k = 0; k < E->nload; k++) {
    const sr_fuse_arg *a = io_arg(r, E, k);
    int w = writer_of(r, g, a->sid);
    if (a->sid == x->sid) {
      if (a->offset != x->offset || a->dtype != x->dtype || numel_of(a->ndim, a->shape) != n) return -1;
      map[k] = g->nload + g->nop;
    } else if (w >= 0) {
      const sr_fuse_arg *gw = arg_of(r, g->first + w, 0);
      if (a->offset != gw->offset || a->dtype != gw->dtype || numel_of(a->ndim, a->shape) != n) return -1;
      for (int64_t k2 = c + 1; k2 < e; k2++)
        if (touches(r, k2, a->sid)) return -1;
      map[k] = g->nload + w;
    } else {
      map[k] = -(++nfor);
    }
  }
  if (!nfor && (inplace || holds(x->dtype, o->dtype))) {
    *mode = RELAY_AHEAD;
    return ei;
  }
  /* defer: g's loads and the cross_entropy's lse, targets and scale hold until the relay */
  for (int64_t k2 = c + 1; k2 < e; k2++) {
    for (int k = 0; k < g->nload; k++)
      if (touches(r, k2, io_arg(r, g, k)->sid)) return -1;
    for (int j = 1; j < 6; j += 2)  /* lse, targets, dscale */
      if (arg_of(r, c, j)->sid >= 0 && touches(r, k2, arg_of(r, c, j)->sid)) return -1;
  }
  *mode = RELAY_DEFER;
  return ei;
}

/* whether g's store k is read by nothing but its relay (which the loss kernel then feeds) */
static int store_dead(const sr_fuse_rec *const *recs, int nrec, const sr_fuse_group *g, int k, const int *map, int nl,
                      int64_t e_end) {
  int dead = 0;
  for (int j = 0; j < nl && !dead; j++) dead = map[j] == g->io[k].src;
  for (int x = 0; x < nrec && dead; x++) dead = dead_after(recs[x], g->first + g->io[k].member, 0, e_end);
  return dead;
}

/* g (ending at launch c - 1) and the cross_entropy at c become one loss group; its relay when
** every recording allows it */
static void make_loss_group(sr_fuse_plan *p, int gi, const sr_fuse_rec *const *recs, int nrec, int ks, int64_t c) {
  sr_fuse_group *g = &p->g[gi];
  const sr_fuse_rec *r = recs[0];
  int64_t lbytes = io_bytes(r, g, g->io[ks].member, g->io[ks].arg);
  g->xent = 1, g->lval = g->io[ks].src, g->epi = -1, g->ce = c;
  for (int k = ks; k + 1 < g->nio; k++) g->io[k] = g->io[k + 1];
  g->nio--, g->dead++;
  for (int j = 0; j < SR_KMAXT; j++) g->cls[g->n][j] = -1;
  g->n++;
  g->saved_bytes += 2 * lbytes;   /* the logits neither stored nor read back */
  p->group_of[c] = gi;
  p->fused_launches++;
  int map[SR_FUSE_MAXIO], map2[SR_FUSE_MAXIO], mode, mode2, ei = relay_of(r, p, g, c, map, &mode);
  for (int x = 1; x < nrec && ei >= 0; x++)
    if (relay_of(recs[x], p, g, c, map2, &mode2) != ei || mode2 != mode ||
        memcmp(map, map2, sizeof(int) * (size_t)p->g[ei].nload))
      ei = -1;
  if (ei < 0) return;
  sr_fuse_group *E = &p->g[ei];
  int64_t e_end = E->first + E->n - 1, fused_old = 0;
  int base = g->nload + g->nop, lk = -1, nfor = 0;
  for (int k = 0; k < E->nload; k++) {
    if (map[k] == base) lk = k;
    if (map[k] < 0) nfor++;
  }
  if (lk < 0 || base + 1 + nfor + E->nop > SR_FUSE_MAXVALS) return;  /* not a chain on the gradient */
  int dead[SR_FUSE_MAXIO];
  for (int k = g->nload; k < g->nio; k++) {
    dead[k] = store_dead(recs, nrec, g, k, map, E->nload, e_end);
    /* defer: g's loads are read again at the relay, nothing may be stored over them */
    for (int j = 0; j < g->nload && mode == RELAY_DEFER && !dead[k]; j++)
      if (io_arg(r, g, k)->sid == io_arg(r, g, j)->sid) return;
  }
  for (int k = 0; k < E->nio; k++) fused_old += io_bytes(r, E, E->io[k].member, E->io[k].arg);
  /* the chain: E's ops over g's values (its loads mapped), the gradient at base, E's own loads
  ** after it (defer) */
  g->nepi = E->nop, g->epi = ei, g->defer = mode == RELAY_DEFER, g->nfor = nfor;
  for (int m = 0; m < E->nop; m++) {
    sr_fuse_op op = E->op[m];
    for (int j = 0; j < op.nin; j++) {
      int v = op.in[j];
      op.in[j] = v >= E->nload ? base + 1 + nfor + v - E->nload : map[v] < 0 ? base - map[v] : map[v];
    }
    g->epi_op[m] = op;
  }
  /* g's stores that only the chain read are not stored any more */
  int nio = g->nload;
  for (int k = g->nload; k < g->nio; k++) {
    if (!dead[k]) g->io[nio++] = g->io[k];
    else g->saved_bytes += io_bytes(r, g, g->io[k].member, g->io[k].arg), g->dead++;
  }
  g->nio = nio;
  sr_fuse_io in = E->io[lk], out = E->io[E->nload];
  int odt = out.dtype;
  E->relay = 1;
  if (g->defer) {
    /* E: the loss's backward; its io its own loads (in the chain's order), then its output */
    sr_fuse_io io[SR_FUSE_MAXIO];
    int f = 0;
    for (int k = 0; k < E->nload; k++)
      if (map[k] < 0) g->for_dtype[f] = E->io[k].dtype, io[f++] = E->io[k];
    io[f++] = out;
    memcpy(E->io, io, sizeof(sr_fuse_io) * (size_t)f);
    g->out_dtype = odt;
    E->defer = 1, E->nload = nfor, E->nio = nfor + 1, E->nop = 0;
    E->saved_bytes += fused_old - io_bytes(r, E, out.member, out.arg);
    for (int k = 0; k < nfor; k++) E->saved_bytes -= io_bytes(r, E, E->io[k].member, E->io[k].arg);
    return;
  }
  /* ahead: E is one copy of the logits' storage (what the loss kernel left there) to its output,
  ** or nothing when its output is that storage */
  if (io_arg(r, E, E->nload)->sid == io_arg(r, E, lk)->sid) {
    E->saved_bytes += fused_old;
    E->nload = E->nio = E->nop = 0;
    return;
  }
  E->nload = 1, E->nio = 2, E->nop = 1;
  E->io[0] = in, E->io[0].src = -1;
  E->io[1] = out, E->io[1].src = 1;
  memset(&E->op[0], 0, sizeof E->op[0]);
  E->op[0].kind = SR_K_copy, E->op[0].nin = 1, E->op[0].in[0] = 0, E->op[0].dtype = odt;
  E->saved_bytes += fused_old - lbytes - io_bytes(r, E, out.member, out.arg);
}

static void plan_losses(sr_fuse_plan *p, const sr_fuse_rec *const *recs, int nrec) {
  for (int gi = 0; gi < p->ng; gi++) {
    if (p->g[gi].relay) continue;  /* made a relay by an earlier loss group */
    int64_t c, c2;
    int ks = xent_store(recs[0], p, &p->g[gi], &c);
    for (int x = 1; x < nrec && ks >= 0; x++)
      if (xent_store(recs[x], p, &p->g[gi], &c2) != ks || c2 != c) ks = -1;
    if (ks >= 0) make_loss_group(p, gi, recs, nrec, ks, c);
  }
  p->saved_bytes = 0;
  for (int gi = 0; gi < p->ng; gi++) p->saved_bytes += p->g[gi].saved_bytes;
}

/* ------------------------------------------------------------------------------------------
** the plan */

static const char *same_steps(const sr_fuse_rec *a, const sr_fuse_rec *b, char *err, size_t nerr) {
  if (a->n != b->n) {
    snprintf(err, nerr, "the recorded steps differ: %lld launches, then %lld", (long long)a->n, (long long)b->n);
    return err;
  }
  for (int64_t k = 0; k < a->n; k++) {
    const sr_fuse_launch *x = &a->l[k], *y = &b->l[k];
    if (x->id != y->id || x->layout != y->layout) {
      snprintf(err, nerr, "the recorded steps differ at launch %lld (%s)", (long long)k + 1, sr_kernels[x->id].name);
      return err;
    }
  }
  return NULL;
}

static void push_group(sr_fuse_plan *p, const sr_fuse_group *g, int *cap) {
  if (p->ng == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    p->g = realloc(p->g, (size_t)*cap * sizeof *p->g);
    if (!p->g) sr_fail("fuse: out of host memory planning a step");
  }
  p->g[p->ng] = *g;
  for (int m = 0; m < g->n; m++) p->group_of[g->first + m] = p->ng;
  p->ng++;
  p->fused_launches += g->n;
  p->saved_bytes += g->saved_bytes;
}

/* the longest element-wise group from launch k (its size in *len; 0 when none) */
static int grow_group(const sr_fuse_rec *const *recs, int nrec, int64_t k, int device, gbuild *best, int *why) {
  const sr_fuse_rec *r = recs[0];
  static gbuild b, keep;  /* large: not on the stack; the host plans from one thread */
  memset(&b, 0, sizeof b);
  int len = 0;
  *why = -1;
  for (int64_t j = k; j < r->n; j++) {
    int n = ew_arity(r, j, device);
    if (n <= 0) {
      if (n < 0 && j == k) *why = WHY_DTYPE;
      break;
    }
    keep = b;
    int w = add_member(&b, r, j, n);
    if (w >= 0) {
      b = keep;
      if (j > k) *why = w;
      break;
    }
    len++;
  }
  if (len < 2) return 0;
  for (; len >= 2; len--) {  /* the longest prefix whose stores can be proven or that stores something */
    keep = b;
    int w = finish_group(&keep, recs, nrec);
    if (w < 0) {
      *best = keep;
      return len;
    }
    *why = w;
    /* drop the last member and try again */
    static gbuild t;
    memset(&t, 0, sizeof t);
    int ok = 1;
    for (int64_t j = k; j < k + len - 1 && ok; j++) ok = add_member(&t, r, j, ew_arity(r, j, device)) < 0;
    if (!ok) return 0;
    b = t;
  }
  return 0;
}

sr_fuse_plan *sr_fuse_plan_build(const sr_fuse_rec *a, const sr_fuse_rec *b, const sr_fuse_opts *o, char *err,
                                 size_t nerr) {
  const sr_fuse_rec *recs[2] = {b ? b : a, a};
  int nrec = b ? 2 : 1;
  if (a->recording || (b && b->recording)) { snprintf(err, nerr, "the step is still being recorded"); return NULL; }
  if (a->mixed || (b && b->mixed)) { snprintf(err, nerr, "the step launches kernels on more than one device"); return NULL; }
  if (b && same_steps(a, b, err, nerr)) return NULL;
  const sr_fuse_rec *r = recs[0];
  sr_fuse_plan *p = calloc(1, sizeof *p);
  if (!p) sr_fail("fuse: out of host memory planning a step");
  p->device = r->device < 0 ? SR_CPU : r->device;
  p->nlaunch = r->n;
  p->l = malloc((size_t)(r->n + 1) * sizeof *p->l);
  p->group_of = malloc((size_t)(r->n + 1) * sizeof *p->group_of);
  if (!p->l || !p->group_of) sr_fail("fuse: out of host memory planning a step");
  memcpy(p->l, r->l, (size_t)r->n * sizeof *p->l);
  for (int64_t k = 0; k < r->n; k++) p->group_of[k] = -1;
  int cap = 0;
  static gbuild best;
  for (int64_t k = 0; k < r->n;) {
    int fold = fold_ok(recs, nrec, k, p->device) ? SR_FUSE_FOLD_OUT : in_fold_ok(recs, nrec, k) ? SR_FUSE_FOLD_IN : 0;
    if (fold) {
      sr_fuse_group g;
      memset(&g, 0, sizeof g);
      g.first = k, g.n = 2, g.fold = fold, g.dead = 1;
      /* out: the producer's output neither stored nor read back; in: the copy's output, and the
      ** copy's read of its source is the backward's */
      g.saved_bytes = 2 * io_bytes(r, &g, 0, 0);
      push_group(p, &g, &cap);
      k += 2;
      continue;
    }
    int why, len = grow_group(recs, nrec, k, p->device, &best, &why);
    if (why >= 0) p->refused[why]++;
    if (len >= 2) {
      push_group(p, &best.g, &cap);
      k += len;
    } else {
      k++;
    }
  }
  if (!o || !o->no_loss) plan_losses(p, recs, nrec);
  label_groups(p);
  return p;
}

void sr_fuse_plan_free(sr_fuse_plan *p) {
  if (!p) return;
  free(p->l);
  free(p->group_of);
  free(p->g);
  free(p);
}

/* ------------------------------------------------------------------------------------------
** the plan as text */

typedef struct tbuf { char *s; size_t n, cap; } tbuf;

static void tput(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tput(tbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    b->cap = 2 * b->cap + (size_t)k + 256;
    b->s = realloc(b->s, b->cap);
    if (!b->s) sr_fail("fuse: out of host memory");
  }
}

static void op_text(tbuf *b, const sr_fuse_op *op) {
  const char *dt = sr_dtype_name((sr_dtype)op->dtype);
  switch (op->kind) {
    case SR_K_unary: tput(b, "%s", sr_unary_name(op->fn)); break;
    case SR_K_unary_backward:
      tput(b, "%s'%s", sr_unary_name(op->fn % SR_UNARY_COUNT), op->fn >= SR_UNARY_COUNT ? "(y)" : "");
      break;
    case SR_K_binary: tput(b, "%s", sr_binary_name(op->fn)); break;
    case SR_K_copy: tput(b, "cast"); break;
    default: tput(b, "%s", sr_kernels[op->kind].name);
  }
  tput(b, ":%s", dt);
}

char *sr_fuse_plan_dump(const sr_fuse_plan *p) {
  tbuf b = {malloc(4096), 0, 4096};
  if (!b.s) sr_fail("fuse: out of host memory");
  int64_t fused = 0;
  for (int k = 0; k < p->ng; k++) fused += p->g[k].n - 1;
  tput(&b, "fused plan (%s): %lld launches; %d groups do %lld of them (%lld launches fewer); about %.1f MB less "
           "memory traffic per step\n", sr_device_name((sr_device)p->device), (long long)p->nlaunch, p->ng,
       (long long)p->fused_launches, (long long)fused, (double)p->saved_bytes / 1e6);
  for (int k = 0; k < p->ng; k++) {
    const sr_fuse_group *g = &p->g[k];
    if (g->xent)
      tput(&b, "  %3d  launches %lld-%lld, %lld  ", k + 1, (long long)g->first + 1, (long long)(g->first + g->n - 1),
           (long long)g->ce + 1);
    else
      tput(&b, "  %3d  launches %lld-%lld  ", k + 1, (long long)g->first + 1, (long long)(g->first + g->n));
    if (g->fold == SR_FUSE_FOLD_OUT) {
      tput(&b, "fold: %s writes the cast's output itself", sr_kernels[p->l[g->first].id].name);
    } else if (g->fold == SR_FUSE_FOLD_IN) {
      tput(&b, "fold: %s reads the cast's input itself", sr_kernels[p->l[g->first + 1].id].name);
    } else {
      tput(&b, "[");
      for (int d = 0; d < g->ndim; d++) tput(&b, "%s%lld", d ? "," : "", (long long)g->shape[d]);
      tput(&b, "]  %s  (%d loads, %d stores, %d not stored)", g->label, g->nload, g->nio - g->nload, g->dead);
      if (g->xent && g->epi >= 0) tput(&b, "  [its last chain: group %d's]", g->epi + 1);
      if (g->relay) tput(&b, "  [what a fused cross-entropy's kernel computed]");
    }
    tput(&b, "  %.2f MB%s\n", (double)g->saved_bytes / 1e6, g->disabled ? "  [disabled: runs unfused]" : "");
  }
  int any = 0;
  for (int w = 0; w < WHY_COUNT; w++)
    if (p->refused[w]) {
      tput(&b, "%s%d x %s", any ? ", " : "  chains cut: ", p->refused[w], why_names[w]);
      any = 1;
    }
  if (any) tput(&b, "\n");
  return b.s;
}

/* one copy of each label text for the process (plans come and go; profile rows keep pointers) */
static const char *intern(const char *s) {
  static char **v;
  static int n, cap;
  for (int k = 0; k < n; k++)
    if (!strcmp(v[k], s)) return v[k];
  if (n == cap) {
    cap = cap ? 2 * cap : 64;
    char **w = realloc(v, (size_t)cap * sizeof *w);
    if (!w) sr_fail("fuse: out of host memory");
    v = w;
  }
  size_t len = strlen(s) + 1;
  if (!(v[n] = malloc(len))) sr_fail("fuse: out of host memory");
  memcpy(v[n], s, len);
  return v[n++];
}

/* each group's label: its ops in order ("cast:bfloat16 -> mul:bfloat16"), or "<kernel> => cast"
** ("cast => <kernel>") for an output (input) fold */
static void label_groups(sr_fuse_plan *p) {
  tbuf b = {malloc(256), 0, 256};
  if (!b.s) sr_fail("fuse: out of host memory");
  for (int k = 0; k < p->ng; k++) {
    sr_fuse_group *g = &p->g[k];
    b.n = 0;
    b.s[0] = '\0';
    if (g->fold == SR_FUSE_FOLD_OUT) tput(&b, "%s => cast", sr_kernels[p->l[g->first].id].name);
    if (g->fold == SR_FUSE_FOLD_IN) tput(&b, "cast => %s", sr_kernels[p->l[g->first + 1].id].name);
    if (g->relay)
      tput(&b, g->defer ? "relay (the loss's backward: its gradient and the chain, in the loss group's second kernel)"
               : g->nop ? "relay " : "relay (the gradient's chain, done in place by the loss kernel)");
    for (int m = 0; !g->fold && m < g->nop; m++) {
      if (m) tput(&b, " -> ");
      op_text(&b, &g->op[m]);
    }
    if (g->xent) tput(&b, " => cross_entropy");
    for (int m = 0; g->xent && g->epi >= 0 && m < g->nepi; m++) {
      tput(&b, m ? " -> " : g->defer ? " => (backward) " : " => ");
      op_text(&b, &g->epi_op[m]);
    }
    g->label = intern(b.s);
  }
  free(b.s);
}
