/*
** core/autograd.c: tape nodes, grad mode and the backward pass (see autograd.h).
*/
#include <stdlib.h>    /* defines: calloc, free */
#include <string.h>    /* defines: memcpy */

#include "core/autograd.h"
#include "core/copy.h"      /* defines: sr_to_raw, sr_fill_ */
#include "core/registry.h"  /* defines: sr_kernel_run, sr_phase_set */

static bool grad_enabled = true;

bool sr_grad_enabled(void) { return grad_enabled; }

bool sr_set_grad_enabled(bool on) {
  bool old = grad_enabled;
  grad_enabled = on;
  return old;
}

bool sr_needs_grad(int n, sr_tensor *const *inputs) {
  if (!grad_enabled) return false;
  for (int i = 0; i < n; i++)
    if (inputs[i] && inputs[i]->requires_grad) return true;
  return false;
}

sr_node *sr_node_new(const char *name, sr_backward_fn bw, int nin, sr_tensor *const *inputs) {
  static bool hooked;  /* the tensor core releases grad_fn through the tape's function */
  if (!hooked) sr_set_node_release(sr_node_release), hooked = true;
  sr_node *n = calloc(1, sizeof *n);
  if (!n) sr_fail("out of host memory");
  n->refcount = 1;
  n->name = name;
  n->backward = bw;
  n->nin = nin;
  for (int i = 0; i < nin; i++) {
    sr_tensor *x = inputs[i];
    if (!x) continue;
    n->in_ndim[i] = x->ndim;
    memcpy(n->in_shape[i], x->shape, sizeof n->in_shape[i]);
    n->in_dtype[i] = x->dtype;
    n->in_device[i] = x->storage->device;
    if (!x->requires_grad) continue;
    n->needs[i] = true;
    if (x->grad_fn) {
      n->in[i].node = x->grad_fn;
      x->grad_fn->refcount++;
      n->in[i].slot = x->grad_slot;
    } else {
      n->in[i].leaf = sr_tensor_retain(x);
    }
  }
  return n;
}

/* outputs take the node's reference count; the caller keeps its own ref to n until done */
void sr_node_attach(sr_node *n, int nout, sr_tensor *const *outputs) {
  n->nout = nout;
  for (int k = 0; k < nout; k++) {
    sr_tensor *y = outputs[k];
    if (!y) continue;
    n->out_ndim[k] = y->ndim;
    memcpy(n->out_shape[k], y->shape, sizeof n->out_shape[k]);
    if (k == 0) n->out0_version = y->storage->version;
    y->requires_grad = true;
    y->grad_fn = n;
    y->grad_slot = k;
    n->refcount++;
  }
}

void sr_node_save(sr_node *n, int k, sr_tensor *t) {
  n->saved[k] = sr_tensor_retain(t);
  n->saved_version[k] = t ? t->storage->version : 0;
}

static void fail_second_pass(const sr_node *n) {
  sr_fail("backward: trying to go through the graph a second time (%s); its saved tensors were freed after the first backward", n->name);
}

static void fail_modified(const sr_node *n) {
  sr_fail("%s backward: a tensor saved for the backward was modified in place after the forward", n->name);
}

static bool recompute_on(void);

/* the whole of storage s, contiguous from its start: what a recomputed output replaces */
static bool covers_storage(const sr_tensor *t) {
  return sr_is_contiguous(t) && t->offset == 0 && (size_t)sr_numel(t) * sr_dtype_size(t->dtype) == t->storage->nbytes;
}

bool sr_node_recomputable(const sr_tensor *x) {
  sr_node *p = x ? x->grad_fn : NULL;
  return p && p->recompute && x->grad_slot == 0 && covers_storage(x) && x->storage->version == p->out0_version &&
         recompute_on();
}

sr_tensor *sr_node_recomputed(sr_node *p) {
  if (!p->recomputed && !p->backward) fail_second_pass(p);  /* its backward ran (another root's pass) */
  if (!p->recomputed) p->recomputed = p->recompute(p);
  return p->recomputed;
}

void sr_node_save_output_of(sr_node *n, int k, sr_tensor *t, sr_tensor *x) {
  if (!t || !sr_node_recomputable(x) || t->storage != x->storage || t->dtype != x->dtype || !covers_storage(t)) {
    sr_node_save(n, k, t);
    return;
  }
  sr_node *p = x->grad_fn;
  sr_watch *w = calloc(1, sizeof *w);
  if (!w) sr_fail("out of host memory");
  sr_watch_set(w, t);
  n->weak[k] = w;
  n->weak_src[k] = p;
  p->refcount++;
  n->saved_version[k] = t->storage->version;
}

/* slot k's weak reference given up (it was revived, or the node is released) */
static void drop_weak(sr_node *n, int k) {
  if (!n->weak[k]) return;
  sr_watch_clear(n->weak[k]);
  free(n->weak[k]);
  n->weak[k] = NULL;
}

/* slot k saved weakly: its producer's output recomputed, also when the tensor is still alive, so
** a step's launches do not depend on when Lua collected it (a CUDA graph replays one trace) */
static sr_tensor *revive(sr_node *n, int k) {
  sr_watch *w = n->weak[k];
  int version = w->ended ? w->end_version : w->view.storage->version;
  if (version != n->saved_version[k]) fail_modified(n);
  sr_tensor *t = sr_view(sr_node_recomputed(n->weak_src[k]), w->view.ndim, w->view.shape);
  n->saved_version[k] = t->storage->version;
  drop_weak(n, k);
  return t;
}

sr_tensor *sr_node_saved(sr_node *n, int k) {
  if (!n->saved[k] && n->weak[k]) n->saved[k] = revive(n, k);
  sr_tensor *t = n->saved[k];
  if (t && t->storage->version != n->saved_version[k]) fail_modified(n);
  return t;
}

static void release_saved(sr_node *n) {
  for (int k = 0; k < SR_NODE_MAXSAVED; k++) {
    sr_tensor_release(n->saved[k]);
    n->saved[k] = NULL;
    drop_weak(n, k);
    sr_node_release(n->weak_src[k]);
    n->weak_src[k] = NULL;
  }
  sr_tensor_release(n->recomputed);
  n->recomputed = NULL;
}

static void release_dests(sr_node *n) {
  for (int k = 0; k < SR_NODE_MAXOUT; k++) { sr_tensor_release(n->grad_dest[k]); n->grad_dest[k] = NULL; }
  sr_tensor_release(n->gbuf);
  n->gbuf = NULL;
  n->dest_taken = 0;
}

void sr_node_release(sr_node *n) {
  if (!n || --n->refcount > 0) return;
  for (int i = 0; i < n->nin; i++) {
    sr_node_release(n->in[i].node);
    sr_tensor_release(n->in[i].leaf);
  }
  release_saved(n);
  for (int k = 0; k < SR_NODE_MAXOUT; k++) sr_tensor_release(n->grad_acc[k]);
  release_dests(n);
  if (n->lua_ref) sr_lua_node_backward(n, NULL, NULL);  /* NULL grads: drop the Lua reference */
  free(n);
}

/* ------------------------------------------------------------------------------------------ */
/* custom Lua functions */

static sr_lua_backward_hook lua_hook;

void sr_set_lua_backward_hook(sr_lua_backward_hook h) { lua_hook = h; }

void sr_lua_node_backward(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in) {
  if (lua_hook) lua_hook(n, grads_out, grads_in);
}

/* ------------------------------------------------------------------------------------------ */
/* gradient routing: destinations and casts into leaves (autograd.h) */

static int fusion_on[SR_GRAD_FUSION_COUNT] = {-1, -1, -1, -1, -1, -1};
static const char *const fusion_env[SR_GRAD_FUSION_COUNT] = {"SPEEDRUN_GRAD_SLICES", "SPEEDRUN_GRAD_CAST_GEMM",
                                                             "SPEEDRUN_GRAD_RECOMPUTE", "SPEEDRUN_GRAD_SCALE",
                                                             "SPEEDRUN_GRAD_ACCUM", "SPEEDRUN_GRAD_DEFER"};
static const char *const fusion_names[SR_GRAD_FUSION_COUNT] = {"slices", "cast_gemm", "recompute", "scale", "accum",
                                                               "defer"};

bool sr_grad_fusion(int which) {
  if (which < 0 || which >= SR_GRAD_FUSION_COUNT) return false;
  if (fusion_on[which] < 0) {
    const char *e = getenv(fusion_env[which]);
    fusion_on[which] = !(e && e[0] == '0' && e[1] == 0);
  }
  return fusion_on[which];
}

bool sr_set_grad_fusion(int which, bool on) {
  bool old = sr_grad_fusion(which);
  if (which >= 0 && which < SR_GRAD_FUSION_COUNT) fusion_on[which] = on;
  return old;
}

static bool recompute_on(void) { return sr_grad_fusion(SR_GRAD_RECOMPUTE); }

const char *sr_grad_fusion_name(int which) {
  return which >= 0 && which < SR_GRAD_FUSION_COUNT ? fusion_names[which] : NULL;
}

/* the place of output s of m, made on the first request (a piece of m's own buffer, or a view of
** the place of m's input); NULL when m offers none, its gradient has started arriving, or it was
** handed out already. Marks it handed out. */
static sr_tensor *dest_of(sr_node *m, int s, int depth) {
  if (!m || !m->dest_map || !m->backward || s < 0 || s >= m->nout || depth > 32) return NULL;
  if (m->grad_acc[s] || (m->dest_taken >> s & 1u)) return NULL;
  if (!m->grad_dest[s]) {
    sr_tensor *base = NULL;
    if (m->flags & SR_NODE_DEST_OWN) {
      if (!m->gbuf) m->gbuf = sr_tensor_new(m->in_dtype[0], m->in_device[0], m->in_ndim[0], m->in_shape[0]);
      base = m->gbuf;
    } else {
      base = dest_of(m->in[0].node, m->in[0].slot, depth + 1);
    }
    if (base) m->grad_dest[s] = m->dest_map(m, s, base);
  }
  m->dest_taken |= 1u << s;
  return m->grad_dest[s];
}

sr_tensor *sr_grad_dest(sr_node *n, int i) {
  if (!sr_grad_fusion(SR_GRAD_SLICES) || i < 0 || i >= n->nin || !n->needs[i]) return NULL;
  sr_tensor *d = dest_of(n->in[i].node, n->in[i].slot, 0);
  if (d && (d->dtype != n->in_dtype[i] || d->storage->device != n->in_device[i] || d->ndim != n->in_ndim[i] ||
            memcmp(d->shape, n->in_shape[i], (size_t)d->ndim * sizeof(int64_t))))
    return NULL;
  return d;
}

sr_tensor *sr_grad_cast_leaf(sr_node *n, int i) {
  if (!sr_grad_fusion(SR_GRAD_CAST_GEMM) || i < 0 || i >= n->nin || !n->needs[i]) return NULL;
  sr_node *m = n->in[i].node;
  if (!m || !(m->flags & SR_NODE_CAST) || !m->backward || !m->needs[0]) return NULL;
  sr_tensor *leaf = m->in[0].leaf;
  if (!leaf || leaf->dtype != SR_F32 || leaf->storage->device != n->in_device[i]) return NULL;
  return leaf;
}

sr_tensor *sr_grad_leaf_target(sr_tensor *leaf, double *beta) {
  sr_tensor *g = leaf->grad;
  if (!g) {
    leaf->grad = sr_tensor_new(leaf->dtype, leaf->storage->device, leaf->ndim, leaf->shape);
    *beta = 0.0;
    return leaf->grad;
  }
  if (g->dtype != leaf->dtype || g->storage->device != leaf->storage->device || !sr_is_contiguous(g) ||
      !sr_same_shape(g, leaf))
    return NULL;
  *beta = 1.0;
  return g;
}

/* ------------------------------------------------------------------------------------------ */
/* backward pass */

typedef struct node_list { sr_node **v; int n, cap; } node_list;

/* cleanups a failure halfway through a pass runs (from the scratch list, before sr_fail's
** longjmp): the node stack, and the input gradients a rule returned and not yet consumed */
static void free_node_list(void *p) {
  node_list *l = p;
  free(l->v);
  free(l);
}

static void release_gins(void *p) {
  sr_tensor **gin = p;
  for (int i = 0; i < SR_NODE_MAXIN; i++) { sr_tensor_release(gin[i]); gin[i] = NULL; }
}

static void list_push(node_list *l, sr_node *x) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    sr_node **v = realloc(l->v, (size_t)l->cap * sizeof *v);
    if (!v) sr_fail("out of host memory");
    l->v = v;
  }
  l->v[l->n++] = x;
}

/* the seed of loss:backward() with no gradient given, held (retained) for the whole pass: a rule
** compares its upstream gradient to it by address, so the address must not be freed and reused
** by another tensor while the pass runs */
static sr_tensor *implicit_seed;

bool sr_grad_is_implicit_one(const sr_tensor *g) { return g && g == implicit_seed; }

/* the scale fusion's marks for this pass (autograd.h): gradients known to be a constant, and
** gradients with a factor still to apply; each held (retained) so its address stays its own */
enum { MARK_CONSTANT, MARK_SCALED };
#define MAX_MARKS 64
static struct { sr_tensor *t; double v; int kind; } marks[MAX_MARKS];
static int nmarks;

static int find_mark(const sr_tensor *g, int kind) {
  for (int k = 0; g && k < nmarks; k++)
    if (marks[k].t == g && marks[k].kind == kind) return k;
  return -1;
}

static bool add_mark(sr_tensor *g, double v, int kind) {
  if (!sr_grad_fusion(SR_GRAD_SCALE) || nmarks == MAX_MARKS || find_mark(g, kind) >= 0) return false;
  marks[nmarks].t = sr_tensor_retain(g), marks[nmarks].v = v, marks[nmarks].kind = kind;
  nmarks++;
  return true;
}

static void drop_mark(int k) {
  sr_tensor_release(marks[k].t);
  marks[k] = marks[--nmarks];
}

bool sr_grad_constant(const sr_tensor *g, double *c) {
  if (!g || !sr_grad_fusion(SR_GRAD_SCALE)) return false;
  if (g == implicit_seed) { *c = 1.0; return true; }
  int k = find_mark(g, MARK_CONSTANT);
  if (k >= 0) *c = marks[k].v;
  return k >= 0;
}
void sr_grad_mark_constant(sr_tensor *g, double c) { add_mark(g, c, MARK_CONSTANT); }
double sr_grad_scale_of(const sr_tensor *g) {
  int k = find_mark(g, MARK_SCALED);
  return k >= 0 ? marks[k].v : 1.0;
}

/* *g times s: over it when only its `holders` references hold it and nothing else its storage,
** else a new tensor (the reference *g held given up) */
static void scale_by(sr_tensor **g, double s, int holders) {
  bool over = (*g)->refcount == holders && (*g)->storage->refcount == 1;
  sr_tensor *t = over ? sr_tensor_retain(*g) : sr_tensor_new((*g)->dtype, (*g)->storage->device, (*g)->ndim, (*g)->shape);
  sr_kcall c = {.t = {t, *g}, .nt = 2, .i = {SR_UNARY_MUL_SCALAR}, .f = {s}};
  sr_kernel_run(SR_K_unary, &c);
  t->storage->version++;
  sr_tensor_release(*g);
  *g = t;
}

void sr_grad_mark_scaled(sr_tensor **g, double s) {
  if (s != 1.0 && !add_mark(*g, s, MARK_SCALED)) scale_by(g, s, 1);   /* no mark left: applied now */
}

/* *g with its pending scale applied (the mark holds one reference of it), unmarked */
static void apply_scale(sr_tensor **g) {
  int k = find_mark(*g, MARK_SCALED);
  if (k < 0) return;
  scale_by(g, marks[k].v, 2);
  drop_mark(k);
}

/* g with its pending scale applied, as a new reference (g itself when it has none) */
static sr_tensor *scaled(sr_tensor *g) {
  sr_tensor *t = sr_tensor_retain(g);
  apply_scale(&t);
  return t;
}

/* a gradient nothing else refers to, dense over its whole storage, in the leaf's dtype and on
** its device: it can become the leaf's .grad as it is */
/* dst += src (src converted to dst's dtype and device first when they differ) */
static void accumulate(sr_tensor *dst, sr_tensor *src) {
  sr_tensor *s = src->dtype != dst->dtype || src->storage->device != dst->storage->device
                   ? sr_to_raw(src, dst->storage->device, dst->dtype) : sr_tensor_retain(src);
  sr_tensor *e = sr_expand(s, dst->ndim, dst->shape);
  sr_kcall c = {.t = {dst, dst, e}, .nt = 3, .i = {SR_BINARY_ADD}};
  sr_kernel_run(SR_K_binary, &c);
  sr_tensor_release(e);
  sr_tensor_release(s);
  dst->storage->version++;
}

static bool can_adopt(const sr_tensor *leaf, const sr_tensor *g) {
  return g->refcount == 1 && g->storage->refcount == 1 && g->grad_fn == NULL && g->dtype == leaf->dtype &&
         g->storage->device == leaf->storage->device && g->offset == 0 && sr_is_contiguous(g) &&
         (size_t)sr_numel(g) * sr_dtype_size(g->dtype) == g->storage->nbytes;
}

/* grad into a leaf's .grad: the first time adopt it (when private) or take a private copy, add
** afterwards */
static void accumulate_leaf(sr_tensor *leaf, sr_tensor *graw) {
  sr_tensor *g = find_mark(graw, MARK_SCALED) >= 0 ? scaled(graw) : graw;  /* a private copy then */
  if (!leaf->grad) {
    leaf->grad = can_adopt(leaf, g) ? sr_tensor_retain(g) : sr_to_raw(g, leaf->storage->device, leaf->dtype);
  } else {
    accumulate(leaf->grad, g);
  }
  if (g != graw) sr_tensor_release(g);
}

/* the sum in output slot s of n is the slot's own destination: its memory is this gradient's,
** whatever holds the view */
static bool slot_own(const sr_node *n, int s) { return n->grad_acc[s] == n->grad_dest[s] && n->grad_acc[s]->refcount == 2; }

/* the sum in output slot s of n replaced by a private contiguous copy of it */
static void slot_privatize(sr_node *n, int s) {
  sr_tensor *own = sr_to_raw(n->grad_acc[s], n->grad_acc[s]->storage->device, n->grad_acc[s]->dtype);
  sr_tensor_release(n->grad_acc[s]);
  n->grad_acc[s] = own;
}

static void accumulate_slot(sr_node *n, int slot, sr_tensor *graw) {
  if (!n->grad_acc[slot]) {
    n->grad_acc[slot] = sr_tensor_retain(graw);  /* its pending scale, if any, stays with it */
  } else {
    sr_tensor *g = find_mark(graw, MARK_SCALED) >= 0 ? scaled(graw) : graw;
    apply_scale(&n->grad_acc[slot]);
    /* never add into a tensor someone else holds: make the accumulator private first */
    if (!slot_own(n, slot) && (n->grad_acc[slot]->refcount > 1 || !sr_is_contiguous(n->grad_acc[slot])))
      slot_privatize(n, slot);
    accumulate(n->grad_acc[slot], g);
    if (g != graw) sr_tensor_release(g);
  }
}

sr_tensor *sr_grad_acc_target(sr_node *n, int i) {
  if (!sr_grad_fusion(SR_GRAD_ACCUM) || i < 0 || i >= n->nin || !n->needs[i] || !n->in[i].node) return NULL;
  sr_node *m = n->in[i].node;
  int s = n->in[i].slot;
  if (!m->grad_acc[s]) return NULL;
  sr_tensor *a = m->grad_acc[s];
  if (a->dtype != n->in_dtype[i] || a->storage->device != n->in_device[i] || a->ndim != n->in_ndim[i] ||
      memcmp(a->shape, n->in_shape[i], (size_t)a->ndim * sizeof(int64_t)))
    return NULL;
  apply_scale(&m->grad_acc[s]);   /* the add would apply it first too */
  a = m->grad_acc[s];
  if (slot_own(m, s)) return sr_is_contiguous(a) ? a : NULL;   /* the slot's destination: in place, or the add */
  /* any other sum is made private first, as the add makes it, and stricter (a copy also when another
  ** tensor shares its memory: a view of a gradient another slot holds counts one of its own): so
  ** the numbers never depend on who still holds the sum (a Lua variable until it is collected) */
  if (a->refcount != 1 || a->storage->refcount != 1 || !sr_is_contiguous(a)) slot_privatize(m, s);
  return m->grad_acc[s];
}

/* ------------------------------------------------------------------------------------------ */
/* the defer fusion (autograd.h): a rule's work on a recomputed input, run after the producer's backward */

#define MAX_DEFERRED 16
typedef struct deferral {
  sr_node *rule;          /* the deferring node (owned ref): its name is the phase of what runs for it */
  sr_node *first, *wait;  /* recompute before first's backward (the saved slot's producer); run after wait's */
  int ndim;               /* the slot's view of first's output */
  int64_t shape[SR_MAXDIM];
  sr_deferred_fn fn;
  sr_tensor *keep, *leaf, *x;  /* owned refs; x once recomputed */
  double f;
} deferral;
static deferral deferred[MAX_DEFERRED];
static int ndeferred;

static void drop_deferral(int d) {
  deferral *e = &deferred[d];
  sr_tensor *t[] = {e->keep, e->leaf, e->x};
  for (int k = 0; k < 3; k++) sr_tensor_release(t[k]);
  sr_node *m[] = {e->rule, e->first, e->wait};
  for (int k = 0; k < 3; k++) sr_node_release(m[k]);
  deferred[d] = deferred[--ndeferred];
}

/* a failed pass (scratch cleanup) or the end of one: nothing of its own kept (*base: the deferrals
** of the passes around it, a backward run inside a custom function's) */
static void drop_deferred(void *base) {
  while (ndeferred > *(int *)base) drop_deferral(ndeferred - 1);
}

/* the node whose backward the deferred work waits for: m itself when it pairs its recompute with
** its backward, through float casts (each its producer's last consumer); else NULL */
static sr_node *pair_end(sr_node *m) {
  while (m && (m->flags & SR_NODE_CAST) && m->recompute) {
    sr_node *q = m->in[0].node;
    if (!q || !q->backward || q->pending != 1) return NULL;
    m = q;
  }
  return m && (m->flags & SR_NODE_EW_PAIR) && m->recompute ? m : NULL;
}

bool sr_node_defer(sr_node *n, int k, sr_deferred_fn fn, sr_tensor *keep, sr_tensor *leaf, double f) {
  if (!sr_grad_fusion(SR_GRAD_DEFER) || ndeferred == MAX_DEFERRED || k < 0 || k >= SR_NODE_MAXSAVED ||
      n->saved[k] || !n->weak[k] || !leaf)
    return false;
  sr_node *p = n->weak_src[k], *w;
  if (!p->backward || p->pending != 1 || !(w = pair_end(p))) return false;
  double beta;
  if (leaf->grad && !sr_grad_leaf_target(leaf, &beta)) return false;   /* its .grad must take a GEMM's output */
  sr_watch *wt = n->weak[k];
  if ((wt->ended ? wt->end_version : wt->view.storage->version) != n->saved_version[k]) fail_modified(n);
  deferral *e = &deferred[ndeferred++];
  *e = (deferral){n, p, w, wt->view.ndim, {0}, fn, sr_tensor_retain(keep), sr_tensor_retain(leaf), NULL, f};
  memcpy(e->shape, wt->view.shape, sizeof e->shape);
  n->refcount++;
  w->refcount++;
  n->weak_src[k] = NULL;   /* its reference moves to the deferral */
  drop_weak(n, k);
  return true;
}

/* before n's backward: the inputs deferred work waits for, recomputed now, next to n's own launches */
static void deferred_before(sr_node *n) {
  for (int d = 0; d < ndeferred; d++) {
    deferral *e = &deferred[d];
    if (e->first != n || e->x) continue;
    sr_phase_set(e->rule->name, true);
    e->x = sr_view(sr_node_recomputed(n), e->ndim, e->shape);
  }
}

/* after n's backward (every one from base on: n NULL, at the end of the pass): the work that
** waited for it */
static void deferred_after(sr_node *n, int base) {
  for (int d = ndeferred - 1; d >= base; d--) {
    deferral *e = &deferred[d];
    if (n && e->wait != n) continue;
    sr_phase_set(e->rule->name, true);
    if (!e->x) e->x = sr_view(sr_node_recomputed(e->first), e->ndim, e->shape);
    sr_tensor *g = e->fn(e->x, e->keep, e->leaf, e->f);
    if (g) {
      accumulate_leaf(e->leaf, g);
      sr_tensor_release(g);
    }
    drop_deferral(d);
  }
  sr_phase_set(NULL, true);
}

static void visit(sr_node *n, unsigned epoch) {
  n->epoch = epoch;
  n->pending = 0;
  for (int k = 0; k < SR_NODE_MAXOUT; k++) { sr_tensor_release(n->grad_acc[k]); n->grad_acc[k] = NULL; }
  release_dests(n);
}

void sr_backward_reset(void) {
  sr_phase_set(NULL, false);
  sr_tensor_release(implicit_seed);
  implicit_seed = NULL;
  while (nmarks) drop_mark(nmarks - 1);
}

void sr_backward(sr_tensor *root, sr_tensor *grad) {
  char b1[96], b2[96];
  if (!root->requires_grad) sr_fail("backward: the tensor does not require grad (no graph to differentiate)");
  if (grad && !sr_same_shape(grad, root))
    sr_fail("backward: gradient shape %s does not match the tensor's %s", sr_shape_str(grad, b1, 96), sr_shape_str(root, b2, 96));
  sr_tensor *seed;
  if (grad) seed = sr_tensor_retain(grad);
  else {
    if (sr_numel(root) != 1)
      sr_fail("backward: gradient can be implicit only for a one-element tensor (this one is %s)", sr_shape_str(root, b1, 96));
    seed = sr_tensor_new(root->dtype, root->storage->device, root->ndim, root->shape);
    sr_fill_(seed, 1.0);
  }
  if (!root->grad_fn) {  /* a leaf: its gradient is the seed */
    accumulate_leaf(root, seed);
    sr_tensor_release(seed);
    return;
  }
  sr_backward_reset();
  if (!grad) implicit_seed = sr_tensor_retain(seed);
  /* collect reachable nodes and count incoming edges; a new epoch per pass, so a pass that
  ** failed halfway leaves nothing stale behind */
  static unsigned epoch;
  epoch++;
  int mark = sr_scratch_mark();
  node_list *stack = calloc(1, sizeof *stack);
  if (!stack) sr_fail("out of host memory");
  sr_scratch_defer(free_node_list, stack);
  int base = ndeferred;
  sr_scratch_defer(drop_deferred, &base);
  list_push(stack, root->grad_fn);
  visit(root->grad_fn, epoch);
  while (stack->n) {
    sr_node *n = stack->v[--stack->n];
    for (int i = 0; i < n->nin; i++) {
      sr_node *m = n->in[i].node;
      if (!m) continue;
      if (m->epoch != epoch) { visit(m, epoch); list_push(stack, m); }
      m->pending++;
    }
  }
  accumulate_slot(root->grad_fn, root->grad_slot, seed);
  sr_tensor_release(seed);  /* the root's node holds it now */
  list_push(stack, root->grad_fn);
  bool old_mode = sr_set_grad_enabled(false);
  sr_phase_set(NULL, true);
  while (stack->n) {
    sr_node *n = stack->v[--stack->n];
    if (!n->backward) {
      sr_set_grad_enabled(old_mode);
      sr_backward_reset();
      fail_second_pass(n);
    }
    sr_tensor *gin[SR_NODE_MAXIN] = {0};
    int gmark = sr_scratch_mark();
    sr_scratch_defer(release_gins, gin);
    if (ndeferred > base) deferred_before(n);
    sr_phase_set(n->name, true);
    if (!(n->flags & SR_NODE_TAKES_SCALE))
      for (int k = 0; k < SR_NODE_MAXOUT; k++)
        if (n->grad_acc[k]) apply_scale(&n->grad_acc[k]);
    n->backward(n, n->grad_acc, gin);
    sr_phase_set(NULL, true);
    /* the upstream gradients and destinations go first: a gradient the rule returned may then be
    ** private (a leaf adopts it instead of copying) */
    for (int k = 0; k < SR_NODE_MAXOUT; k++) {
      int m = find_mark(n->grad_acc[k], MARK_SCALED);  /* applied by the rule (SR_NODE_TAKES_SCALE) */
      if (m >= 0) drop_mark(m);
      sr_tensor_release(n->grad_acc[k]);
      n->grad_acc[k] = NULL;
    }
    release_dests(n);
    for (int i = 0; i < n->nin; i++) {
      sr_tensor *g = gin[i];
      if (g && n->needs[i]) {
        if (g->ndim != n->in_ndim[i] || memcmp(g->shape, n->in_shape[i], (size_t)g->ndim * sizeof(int64_t)))
          sr_fail("%s backward: gradient of input %d has shape %s, the input has %s", n->name, i + 1,
                  sr_shape_str(g, b1, 96), sr_dims_str(n->in_ndim[i], n->in_shape[i], b2, 96));
        if (n->in[i].leaf) accumulate_leaf(n->in[i].leaf, g);
        else if (n->in[i].node) accumulate_slot(n->in[i].node, n->in[i].slot, g);
      }
      sr_tensor_release(g);
      gin[i] = NULL;
      sr_node *m = n->in[i].node;
      if (m && --m->pending == 0) list_push(stack, m);
    }
    sr_scratch_pop(gmark);
    release_saved(n);
    n->backward = NULL;
    if (ndeferred > base) deferred_after(n, base);
  }
  if (ndeferred > base) deferred_after(NULL, base);   /* none should be left; run rather than lose a gradient */
  sr_set_grad_enabled(old_mode);
  sr_backward_reset();
  sr_scratch_pop(mark);
}
