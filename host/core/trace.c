/*
** core/trace.c: launch traces, a dispatch observer: what each kernel launch was given, minus
** memory addresses (the harness compares two steps' traces before trusting a CUDA graph).
*/
#include <stdio.h>       /* defines: snprintf */
#include <stdlib.h>      /* defines: realloc, free */
#include <string.h>      /* defines: memcmp, memset, memcpy */

#include "core/trace.h"
#include "util/hash.h"   /* defines: sr_fnv1a, SR_FNV_SEED */

static sr_trace *recording;
static void trace_launch(sr_kernel_id id, const sr_kcall *c, int dev);
static const sr_observer trace_observer = {.before = trace_launch};

void sr_trace_start(sr_trace *t) {
  t->n = 0;
  recording = t;
  sr_observer_add(&trace_observer);
}

void sr_trace_stop(void) {
  recording = NULL;
  sr_observer_remove(&trace_observer);
}

void sr_trace_free(sr_trace *t) {
  if (recording == t) sr_trace_stop();
  free(t->l);
  t->l = NULL;
  t->n = t->cap = 0;
}

uint64_t sr_kcall_layout(const sr_kcall *c) {
  uint64_t h = SR_FNV_SEED;
  for (int j = 0; j < c->nt + c->nlist; j++) {
    const sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt];
    int tag = x ? (int)x->dtype * 64 + x->ndim : -1;
    h = sr_fnv1a(h, &tag, sizeof tag);
    if (!x) continue;
    h = sr_fnv1a(h, x->shape, (size_t)x->ndim * sizeof x->shape[0]);
    h = sr_fnv1a(h, x->stride, (size_t)x->ndim * sizeof x->stride[0]);
    h = sr_fnv1a(h, &x->offset, sizeof x->offset);
  }
  return h;
}

static void trace_launch(sr_kernel_id id, const sr_kcall *c, int dev) {
  sr_trace *t = recording;
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 1024;
    t->l = realloc(t->l, (size_t)t->cap * sizeof *t->l);
  }
  sr_launch *l = &t->l[t->n++];
  memset(l, 0, sizeof *l);
  l->id = (int)id;
  l->layout = sr_kcall_layout(c);
  memcpy(l->f, c->f, sizeof l->f);
  memcpy(l->i, c->i, sizeof l->i);
  if ((id == SR_K_adamw && c->nt > 4 && c->t[4]) || (id == SR_K_adamw_multi && c->nt > 0 && c->t[0]))
    l->f[0] = 0, l->i[0] = 0;  /* read from sched */
}

static const char *launch_name(const sr_launch *l, char *buf, size_t n) {
  const char *k = sr_kernels[l->id].name;
  if (l->id == SR_K_unary || l->id == SR_K_unary_backward) snprintf(buf, n, "%s %s", k, sr_unary_name((int)l->i[0]));
  else if (l->id == SR_K_binary) snprintf(buf, n, "%s %s", k, sr_binary_name((int)l->i[0]));
  else snprintf(buf, n, "%s", k);
  return buf;
}

const char *sr_trace_diff(const sr_trace *a, const sr_trace *b, char *buf, size_t n) {
  char na[48], nb[48];
  int64_t m = a->n < b->n ? a->n : b->n;
  for (int64_t k = 0; k < m; k++) {
    const sr_launch *x = &a->l[k], *y = &b->l[k];
    if (x->id != y->id) {
      snprintf(buf, n, "launch %lld is %s, then %s", (long long)k + 1, launch_name(x, na, sizeof na),
               launch_name(y, nb, sizeof nb));
      return buf;
    }
    for (int j = 0; j < 6; j++)
      if (memcmp(&x->f[j], &y->f[j], sizeof x->f[j])) {
        snprintf(buf, n, "launch %lld (%s): scalar f%d is %.9g, then %.9g", (long long)k + 1,
                 launch_name(x, na, sizeof na), j, x->f[j], y->f[j]);
        return buf;
      }
    for (int j = 0; j < 4; j++)
      if (x->i[j] != y->i[j]) {
        snprintf(buf, n, "launch %lld (%s): integer i%d is %lld, then %lld", (long long)k + 1,
                 launch_name(x, na, sizeof na), j, (long long)x->i[j], (long long)y->i[j]);
        return buf;
      }
    if (x->layout != y->layout) {
      snprintf(buf, n, "launch %lld (%s): tensor shapes or layouts differ", (long long)k + 1,
               launch_name(x, na, sizeof na));
      return buf;
    }
  }
  if (a->n != b->n) {
    snprintf(buf, n, "%lld launches, then %lld", (long long)a->n, (long long)b->n);
    return buf;
  }
  return NULL;
}

