/*
** core/fuse_exec.c: the step compiler's executor (core/fuse.h): with a plan installed, the
** dispatcher hands it every launch; launches are matched to the recorded step, a group's members
** are held (their tensors retained) until its last member arrives, then the group runs as one
** call. A launch that does not match, or a group whose tensors alias differently than recorded,
** runs the held launches unfused; a mismatch also turns the plan off for the rest of the step.
*/
#include <stdarg.h>      /* defines: va_list */
#include <stdio.h>       /* defines: snprintf, vsnprintf */
#include <stdlib.h>      /* defines: getenv */
#include <string.h>      /* defines: memcmp, memset, strcmp */

#include "core/fuse.h"

/* a held launch: its call with copies of its tensors (no references taken: the autograd tape
** decides in-place updates by reference counts, which must stay as in the unfused step); a
** storage whose last reference goes while held is adopted (kept) until the group has run */
typedef struct held {
  sr_kernel_id id;
  sr_kcall c;
  sr_kernel_fn fn;
  sr_tensor tt[SR_KMAXT];
} held;

static struct {
  sr_fuse_plan *p;
  int64_t pos;
  int off;                        /* 1: the plan no longer applies this step */
  char why[320];                  /* why something ran unfused ("" when all fused) */
  held h[SR_FUSE_MAXOPS];
  int nh;
  sr_storage *adopted[SR_FUSE_MAXOPS * SR_KMAXT];
  int nadopted;
  int fused;                      /* groups run fused */
  int relay;                      /* the relay group whose values a loss kernel computed ahead, or -1 */
  /* a deferred loss group's tensors, kept from its run until its relay's: its loads, then the
  ** cross_entropy's lse, targets and dscale (copies, as held ones; a storage whose last reference
  ** goes meanwhile is adopted until the relay ran); the CPU's f64 lse (owned) */
  const sr_fuse_group *kg;        /* the deferred loss group whose tensors are kept */
  sr_tensor kt[SR_FUSE_MAXIO + 3];
  int nkt, kdscale;
  int64_t kignore;
  sr_tensor *lse64;
  sr_storage *kadopted[SR_FUSE_MAXIO + 3];
  int nkadopted;
  int last;                       /* SR_FUSE_RAN/HELD/GROUP: the last dispatch (sr_fuse_last_dispatch) */
  bool lazy_was;                  /* the lazy mode before the plan was installed */
  const char *last_label;
} X = {.relay = -1};

/* the first reason something ran unfused this step */
static void note(const char *fmt, ...) {
  if (X.why[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(X.why, sizeof X.why, fmt, ap);
  va_end(ap);
}

static void release_held(void) {
  X.nh = 0;
  for (int k = 0; k < X.nadopted; k++) sr_storage_free_adopted(X.adopted[k]);
  X.nadopted = 0;
}

static void release_kept(void) {
  for (int k = 0; k < X.nkadopted; k++) sr_storage_free_adopted(X.kadopted[k]);
  X.nkadopted = X.nkt = 0;
  if (X.lse64) sr_tensor_release(X.lse64);
  X.lse64 = NULL;
}

static int kept(const sr_storage *s) {
  for (int k = 0; k < X.nkt; k++)
    if (X.kt[k].storage == s) return 1;
  return 0;
}

/* the storage death hook while a plan is installed: keeps the memory of held and kept tensors */
static int adopt(sr_storage *s) {
  if (kept(s)) {
    for (int k = 0; k < X.nkadopted; k++)
      if (X.kadopted[k] == s) return 1;
    X.kadopted[X.nkadopted++] = s;
    return 1;
  }
  for (int k = 0; k < X.nh; k++)
    for (int j = 0; j < X.h[k].c.nt; j++)
      if (X.h[k].c.t[j] && X.h[k].c.t[j]->storage == s) {
        X.adopted[X.nadopted++] = s;
        return 1;
      }
  return 0;
}

/* runs the held launches as they were issued; the first error */
static const char *run_held(void) {
  const char *err = NULL;
  for (int k = 0; k < X.nh && !err; k++) err = sr_kernel_call(X.h[k].fn, &X.h[k].c);
  release_held();
  return err;
}

static void hold(sr_kernel_id id, const sr_kcall *c, sr_kernel_fn fn) {
  held *h = &X.h[X.nh++];
  h->id = id, h->c = *c, h->fn = fn;
  h->c.list = NULL, h->c.nlist = 0;  /* group members take no list */
  for (int j = 0; j < c->nt; j++)
    if (c->t[j]) {
      h->tt[j] = *c->t[j];
      h->c.t[j] = &h->tt[j];
    }
}

/* the held tensors share storages exactly as the recorded ones did */
static int classes_hold(const sr_fuse_group *g) {
  const sr_storage *rep[2 * SR_FUSE_MAXIO] = {0};
  for (int m = 0; m < g->n; m++)
    for (int j = 0; j < X.h[m].c.nt && j < SR_KMAXT; j++) {
      int e = g->cls[m][j];
      if (e < 0) continue;
      const sr_storage *s = X.h[m].c.t[j]->storage;
      if (!rep[e]) {
        for (int x = 0; x < 2 * SR_FUSE_MAXIO; x++)
          if (rep[x] == s) return 0;
        rep[e] = s;
      } else if (rep[e] != s) {
        return 0;
      }
    }
  return 1;
}

/* the group ran fused: its members' outputs it did not store, still lazy, marked so that no later
** use reads an allocator's leftovers (the plan proved them dead; not a loss group's, whose logits
** a deferred relay writes); its held launches let go, counted, shown to the profiler; a
** relay's wait is over */
static const char *ran_fused(const sr_fuse_group *g) {
  for (int m = 0; m < X.nh && !g->xent; m++)   /* a loss group's logits: its relay may write them later */
    if (X.h[m].c.nt && X.h[m].c.t[0] && !X.h[m].c.t[0]->storage->data) X.h[m].c.t[0]->storage->elided = true;
  release_held();
  if (g->relay) X.relay = -1;
  X.fused++;
  X.last = SR_FUSE_GROUP, X.last_label = g->label;
  return NULL;
}

/* an input fold: the norm's backward reads the copy's source as its upstream gradient (the copy's
** output's layout over the source's memory and dtype) */
static const char *run_fold_in(const sr_fuse_group *g) {
  held *c = &X.h[0], *b = &X.h[1];
  int jd = sr_fuse_fold_in_arg(X.p->l[g->first + 1].id);
  const sr_tensor *src = c->c.t[1];
  int ok = jd >= 0 && b->c.t[jd] && b->c.t[jd]->storage == c->c.t[0]->storage;
  for (int j = 0; j < b->c.nt && ok; j++)
    ok = !b->c.t[j] || (b->c.t[j]->storage != src->storage && (j == jd || b->c.t[j]->storage != c->c.t[0]->storage));
  if (!ok) {
    note("group at launch %lld: its tensors alias differently than recorded (ran unfused)", (long long)g->first + 1);
    return run_held();
  }
  sr_kcall k = b->c;
  sr_tensor in = *b->c.t[jd];
  in.storage = src->storage, in.offset = src->offset, in.dtype = src->dtype;
  k.t[jd] = &in;
  const char *err = sr_kernel_call(b->fn, &k);
  if (err) {
    release_held();
    return err;
  }
  return ran_fused(g);
}

/* a fold group: the producer writes the copy's destination */
static const char *run_fold(const sr_fuse_group *g) {
  if (g->fold == SR_FUSE_FOLD_IN) return run_fold_in(g);
  held *p = &X.h[0], *c = &X.h[1];
  int ok = c->c.t[1]->storage == p->c.t[0]->storage;
  for (int j = 1; j < p->c.nt && ok; j++) ok = !p->c.t[j] || p->c.t[j]->storage != c->c.t[0]->storage;
  if (!ok) {
    note("group at launch %lld: its tensors alias differently than recorded (ran unfused)", (long long)g->first + 1);
    return run_held();
  }
  sr_kcall k = p->c;
  sr_tensor out = *p->c.t[0];  /* the producer's output layout over the copy's memory and dtype */
  out.storage = c->c.t[0]->storage, out.offset = c->c.t[0]->offset, out.dtype = c->c.t[0]->dtype;
  k.t[0] = &out;
  const char *err = sr_kernel_call(p->fn, &k);
  if (err) {
    release_held();
    return err;
  }
  return ran_fused(g);
}

/* a loss group's cross_entropy reads and writes the logits its chain computes, and no other
** tensor of the group */
static int loss_tensors_hold(const sr_fuse_group *g) {
  const sr_kcall *ce = &X.h[g->n - 1].c;
  const sr_storage *ls = X.h[g->lval - g->nload].c.t[0]->storage;
  if (ce->nt < 6 || !ce->t[2] || !ce->t[4] || ce->t[2]->storage != ls || ce->t[4]->storage != ls) return 0;
  for (int j = 0; j < 6; j++)
    for (int k = 0; k < g->nio && j != 2 && j != 4 && ce->t[j]; k++)
      if (ce->t[j]->storage == X.h[g->io[k].member].c.t[g->io[k].arg]->storage) return 0;
  return 1;
}

/* the launches a relay group replaces must run as computed ahead; unfused they would read the
** loss kernel's result as the gradient: a relay pending (X.relay) that cannot run so fails */
static void fail_relay(const char *what) {
  sr_fail("step compiler: %s after a fused cross-entropy computed the backward's next chain ahead; "
          "the step cannot finish unfused (SPEEDRUN_FUSE=0 turns the step compiler off)", what);
}

static void relay_lost(const char *what) {
  if (X.relay < 0) return;
  X.relay = -1;
  release_kept();
  fail_relay(what);
}

/* a deferred loss group ran: keep its loads and the cross_entropy's lse, targets and dscale for
** its relay (storages adopted while held that they use move to the kept list) */
static void keep_loss(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce, sr_tensor *lse64) {
  X.kg = g, X.nkt = 0;
  for (int k = 0; k < g->nload; k++) X.kt[X.nkt++] = *t[k];
  X.kt[X.nkt++] = *ce->t[1];
  X.kt[X.nkt++] = *ce->t[3];
  X.kdscale = ce->nt > 5 && ce->t[5];
  if (X.kdscale) X.kt[X.nkt++] = *ce->t[5];
  X.kignore = ce->i[0];
  X.lse64 = lse64;
  for (int k = 0; k < X.nadopted;)
    if (kept(X.adopted[k])) {
      X.kadopted[X.nkadopted++] = X.adopted[k];
      X.adopted[k] = X.adopted[--X.nadopted];
    } else {
      k++;
    }
}

/* a deferred loss group's backward, at its relay g: the kept tensors and the relay's own */
static const char *run_loss_back(const sr_fuse_group *g, int dev) {
  const sr_fuse_group *lg = X.kg;
  sr_fuse_back b;
  memset(&b, 0, sizeof b);
  for (int k = 0; k < lg->nload; k++) b.gl[k] = &X.kt[k];
  b.lse = X.lse64 ? X.lse64 : &X.kt[lg->nload];
  b.targets = &X.kt[lg->nload + 1];
  b.dscale = X.kdscale ? &X.kt[lg->nload + 2] : NULL;
  b.ignore = X.kignore;
  for (int k = 0; k < g->nio; k++) b.et[k] = X.h[g->io[k].member].c.t[g->io[k].arg];
  return dev == SR_CUDA ? sr_fuse_run_xent_back_cuda(lg, &b) : sr_fuse_run_xent_back_cpu(lg, &b);
}

static const char *run_group_now(const sr_fuse_group *g, int dev);

/* the group, with lazy storages off meanwhile (what its runners make for themselves, an f64 lse,
** is used at once) */
static const char *run_group(const sr_fuse_group *g, int dev) {
  bool lazy = sr_set_lazy(false);
  const char *err = run_group_now(g, dev);
  sr_set_lazy(lazy);
  return err;
}

static const char *run_group_now(const sr_fuse_group *g, int dev) {
  int gi = (int)(g - X.p->g);
  if (g->relay && X.relay != gi) return run_held();  /* its loss group ran unfused: the gradient is there */
  if (g->xent && g->epi >= 0 && X.p->g[g->epi].disabled) return run_held();
  if (g->disabled) return run_held();
  if (g->fold) return run_fold(g);
  if (g->relay && g->defer) {
    if (!classes_hold(g)) relay_lost("its relay's tensors alias differently than recorded");
    const char *err = run_loss_back(g, dev);
    if (err) relay_lost(err);
    release_kept();
    return ran_fused(g);
  }
  if (g->relay && !g->nop) return ran_fused(g);  /* the loss kernel left its result where the chain would have */
  if (!classes_hold(g) || (g->xent && !loss_tensors_hold(g))) {
    if (g->relay) relay_lost("its relay's tensors alias differently than recorded");
    note("group at launch %lld: its tensors alias differently than recorded (ran unfused)", (long long)g->first + 1);
    return run_held();
  }
  sr_tensor *t[SR_FUSE_MAXIO];
  for (int k = 0; k < g->nio; k++) t[k] = X.h[g->io[k].member].c.t[g->io[k].arg];
  const char *err;
  sr_tensor *lse64 = NULL;
  if (g->xent && g->epi >= 0 && X.relay >= 0) relay_lost("another loss group ran before its relay");
  if (g->xent) {
    const sr_kcall *ce = &X.h[g->n - 1].c;
    if (g->defer && dev != SR_CUDA) {  /* the CPU's gradient from the unrounded lse, as unfused */
      const sr_tensor *tg = ce->t[3];
      int64_t n = sr_numel(tg);
      lse64 = sr_tensor_new(SR_F64, SR_CPU, 1, &n);
    }
    err = dev == SR_CUDA ? sr_fuse_run_xent_cuda(g, t, ce) : sr_fuse_run_xent_cpu(g, t, ce, lse64);
    if (!err && g->defer) keep_loss(g, t, ce, lse64);
    else if (lse64) sr_tensor_release(lse64);
  } else {
    err = dev == SR_CUDA ? sr_fuse_run_cuda(g, t) : sr_fuse_run_cpu(g, t);
  }
  if (err) {  /* the fused kernel could not run (a compile failure, say): unfused instead */
    if (g->relay) relay_lost(err);
    note("%s (group at launch %lld ran unfused)", err, (long long)g->first + 1);
    return run_held();
  }
  if (g->xent && g->epi >= 0) X.relay = g->epi;
  return ran_fused(g);
}

/* the launch is the recorded one: kernel and layouts; the scalars too for a group's members (the
** fused code uses the recorded ones) */
static const char *matched(const sr_fuse_launch *want, sr_kernel_id id, const sr_kcall *c, int in_group) {
  sr_fuse_launch got;
  sr_fuse_signature(id, c, &got);
  if (got.id != want->id) return "another kernel";
  if (in_group && (memcmp(got.f, want->f, sizeof got.f) || memcmp(got.i, want->i, sizeof got.i))) return "other scalars";
  if (got.layout != want->layout) return "other shapes or layouts";
  return NULL;
}

static const char *fuse_dispatch(sr_kernel_id id, const sr_kcall *c, int dev, sr_kernel_fn fn) {
  sr_fuse_plan *p = X.p;
  X.last = SR_FUSE_RAN;
  if (!p || X.off) return sr_kernel_call(fn, c);
  int64_t k = X.pos++;
  const char *d = k < p->nlaunch ? matched(&p->l[k], id, c, p->group_of[k] >= 0) : "a launch beyond the recorded step";
  if (d) {
    X.off = 1;
    snprintf(X.why, sizeof X.why, "launch %lld (%s) differs from the recorded step: %s; the rest of the step ran unfused",
             (long long)k + 1, sr_kernels[id].name, d);
    const char *err = run_held();
    relay_lost(X.why);
    return err ? err : sr_kernel_call(fn, c);
  }
  int gi = p->group_of[k];
  if (gi < 0) return sr_kernel_call(fn, c);
  const sr_fuse_group *g = &p->g[gi];
  hold(id, c, fn);
  if (k < (g->xent ? g->ce : g->first + g->n - 1)) {
    X.last = SR_FUSE_HELD;
    return NULL;
  }
  return run_group(g, dev);
}

int sr_fuse_last_dispatch(const char **label) {
  *label = X.last == SR_FUSE_GROUP ? X.last_label : NULL;
  return X.last;
}

static int lazy_setting = -1;   /* -1: SPEEDRUN_FUSE_LAZY not read yet */

bool sr_fuse_lazy_on(void) {
  if (lazy_setting < 0) {
    const char *e = getenv("SPEEDRUN_FUSE_LAZY");
    lazy_setting = e && strcmp(e, "1") == 0;
  }
  return lazy_setting;
}

bool sr_fuse_set_lazy(bool on) {
  bool old = sr_fuse_lazy_on();
  lazy_setting = on;
  return old;
}

void sr_fuse_begin(sr_fuse_plan *p) {
  bool installed = X.p != NULL;   /* a plan replaced without sr_fuse_end: the mode from before both */
  release_held();
  release_kept();
  X.p = p, X.pos = 0, X.off = 0, X.fused = 0, X.why[0] = '\0', X.last = SR_FUSE_RAN, X.relay = -1;
  sr_set_dispatch_hook(p ? fuse_dispatch : NULL);
  sr_set_storage_death_hook(p ? adopt : NULL);
  bool was = sr_set_lazy(p && sr_fuse_lazy_on());  /* what no launch stores is never allocated */
  if (!installed) X.lazy_was = was;
}

void sr_fuse_flush(void) {
  if (!X.nh) return;
  const char *err = run_held();
  X.off = 1;
  snprintf(X.why, sizeof X.why, "the step did work the dispatcher does not see in the middle of a group; the rest ran unfused");
  relay_lost("the step did work the dispatcher does not see in the middle of a group");
  if (err) sr_fail("%s", err);
}

const char *sr_fuse_end(int *groups) {
  int lost = X.relay >= 0 && X.nh;  /* the relay's launches began, and ran unfused */
  if (X.nh) {
    long long nh = X.nh;
    const char *err = run_held();
    note("the step ended %lld launches into a group (ran unfused)", nh);
    if (err) note("%s", err);
  }
  if (X.p && !X.off && X.pos != X.p->nlaunch && !X.why[0])
    snprintf(X.why, sizeof X.why, "the step made %lld launches, the recorded one %lld", (long long)X.pos,
             (long long)X.p->nlaunch);
  if (groups) *groups = X.fused;
  X.p = NULL;
  X.relay = -1;
  release_kept();
  X.last = SR_FUSE_RAN;
  sr_set_dispatch_hook(NULL);
  sr_set_storage_death_hook(NULL);
  sr_set_lazy(X.lazy_was);
  if (lost) fail_relay("the step ended inside the relay group");
  return X.why[0] ? X.why : NULL;
}
