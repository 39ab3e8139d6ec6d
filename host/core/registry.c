/*
** core/registry.c: the kernel table (one row per SR_KERNELS entry), the dispatcher that runs a
** kernel on the device of its tensors (timed by the profiler while one runs: host/core/profile.h),
** and launch traces (what each launch was given, minus addresses; the harness compares them
** before trusting a CUDA graph).
*/
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: realloc, free */
#include <string.h>    /* defines: memcmp, memset */

#include "core/registry.h"  /* defines: sr_kernels, sr_kcall, sr_trace */
#include "core/profile.h"   /* defines: sr_profile_on, sr_profile_call */
#ifdef SPEEDRUN_CUDA
#include "cuda/backend.h"  /* defines: sr_cuda_capturing, sr_cuda_graph_note */
#endif

#ifdef SPEEDRUN_CUDA
#define SR_CUDA_FN(n) sr_cuda_##n
#else
#define SR_CUDA_FN(n) NULL
#endif

const sr_kernel sr_kernels[SR_KERNEL_COUNT] = {
#define SR_X(n, doc) [SR_K_##n] = {#n, doc, sr_cpu_##n, SR_CUDA_FN(n)},
  SR_KERNELS(SR_X)
#undef SR_X
};

static const char *unary_names[SR_UNARY_COUNT] = {
#define SR_X(E, n) #n,
  SR_UNARY_FNS(SR_X)
#undef SR_X
};
static const char *binary_names[SR_BINARY_COUNT] = {
#define SR_X(E, n) #n,
  SR_BINARY_FNS(SR_X)
#undef SR_X
};
static const char *reduce_names[SR_REDUCE_COUNT] = {
#define SR_X(E, n) #n,
  SR_REDUCE_FNS(SR_X)
#undef SR_X
};

const char *sr_unary_name(int fn) { return fn >= 0 && fn < SR_UNARY_COUNT ? unary_names[fn] : "?"; }
const char *sr_binary_name(int fn) { return fn >= 0 && fn < SR_BINARY_COUNT ? binary_names[fn] : "?"; }
const char *sr_reduce_name(int fn) { return fn >= 0 && fn < SR_REDUCE_COUNT ? reduce_names[fn] : "?"; }

/* ---- launch traces */

static sr_trace *recording;

void sr_trace_start(sr_trace *t) {
  t->n = 0;
  recording = t;
}

void sr_trace_stop(void) { recording = NULL; }

void sr_trace_free(sr_trace *t) {
  if (recording == t) recording = NULL;
  free(t->l);
  t->l = NULL;
  t->n = t->cap = 0;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 0x100000001b3ull;
  return h;
}

static void trace_launch(sr_kernel_id id, const sr_kcall *c) {
  sr_trace *t = recording;
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 1024;
    t->l = realloc(t->l, (size_t)t->cap * sizeof *t->l);
  }
  sr_launch *l = &t->l[t->n++];
  memset(l, 0, sizeof *l);
  l->id = (int)id;
  uint64_t h = 0xcbf29ce484222325ull;
  for (int j = 0; j < c->nt + c->nlist; j++) {
    const sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt];
    int tag = x ? (int)x->dtype * 64 + x->ndim : -1;
    h = fnv(h, &tag, sizeof tag);
    if (!x) continue;
    h = fnv(h, x->shape, (size_t)x->ndim * sizeof x->shape[0]);
    h = fnv(h, x->stride, (size_t)x->ndim * sizeof x->stride[0]);
    h = fnv(h, &x->offset, sizeof x->offset);
  }
  l->layout = h;
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

/* ---- the dispatcher */

void sr_kernel_run(sr_kernel_id id, const sr_kcall *c) {
  const sr_kernel *k = &sr_kernels[id];
  int dev = -1;
  for (int j = 0; j < c->nt + c->nlist; j++) {
    const sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt];
    if (!x) continue;
    int d = (int)x->storage->device;
    if (dev < 0) dev = d;
    else if (d != dev)
      sr_fail("%s: tensors on different devices (argument %d is on %s, earlier ones on %s)", k->name,
              j + 1, sr_device_name((sr_device)d), sr_device_name((sr_device)dev));
  }
  sr_kernel_fn fn = dev == SR_CUDA ? k->cuda : k->cpu;
  if (!fn) sr_fail("%s: no %s implementation (built without the CUDA backend)", k->name, sr_device_name((sr_device)dev));
  if (recording) trace_launch(id, c);
#ifdef SPEEDRUN_CUDA
  if (dev == SR_CUDA && sr_cuda_capturing()) sr_cuda_graph_note(c);
#endif
  const char *err = sr_profile_on ? sr_profile_call(id, c, dev, fn) : fn(c);
  if (err) sr_fail("%s: %s", k->name, err);
}
