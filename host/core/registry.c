/*
** core/registry.c: the kernel table (one row per SR_KERNELS entry), the dispatcher that runs a
** kernel on the device of its tensors (timed by the profiler while one runs: host/core/profile.h),
** and launch traces (what each launch was given, minus addresses; the harness compares them
** before trusting a CUDA graph).
*/
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: realloc, free */
#include <string.h>    /* defines: memcmp, memset */

#include "core/registry.h"  /* defines: sr_kernels, sr_kcall, sr_observer */

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

/* ---- observers and the autograd phase */

static const sr_observer *observers[SR_MAX_OBSERVERS];
static int nobservers;

void sr_observer_add(const sr_observer *o) {
  for (int k = 0; k < nobservers; k++)
    if (observers[k] == o) return;
  if (nobservers == SR_MAX_OBSERVERS) sr_fail("dispatcher: more than %d observers", SR_MAX_OBSERVERS);
  observers[nobservers++] = o;
}

void sr_observer_remove(const sr_observer *o) {
  for (int k = 0; k < nobservers; k++)
    if (observers[k] == o) {
      memmove(&observers[k], &observers[k + 1], (size_t)(nobservers - k - 1) * sizeof observers[0]);
      nobservers--;
      return;
    }
}

static const char *phase_node;
static bool phase_backward;

void sr_phase_set(const char *node, bool backward) { phase_node = node, phase_backward = backward; }
const char *sr_phase_node(void) { return phase_node; }
bool sr_phase_backward(void) { return phase_backward; }

static sr_dispatch_hook dispatch_hook;
void sr_set_dispatch_hook(sr_dispatch_hook h) { dispatch_hook = h; }

void sr_kcall_materialize(const sr_kcall *c) {
  for (int j = 0; j < c->nt; j++) sr_tensor_materialize(c->t[j]);
  for (int j = 0; j < c->nlist; j++) sr_tensor_materialize(c->list[j]);
}

const char *sr_kernel_call(sr_kernel_fn fn, const sr_kcall *c) {
  sr_kcall_materialize(c);
  bool lazy = sr_set_lazy(false);   /* what the kernel makes for itself is used at once */
  const char *err = fn(c);
  sr_set_lazy(lazy);
  return err;
}

/* the kernel, or the step compiler's hook in its place */
static const char *call(sr_kernel_id id, const sr_kcall *c, int dev, sr_kernel_fn fn) {
  if (sr_dry()) return NULL;   /* a dry run: the launch is seen (recorded), not run */
  return dispatch_hook ? dispatch_hook(id, c, dev, fn) : sr_kernel_call(fn, c);
}

/* fn(c) between the observers' before() and after() hooks */
static const char *observed_call(sr_kernel_id id, const sr_kcall *c, int dev, sr_kernel_fn fn) {
  int n = nobservers;  /* an observer removed by a hook takes effect at the next call */
  const sr_observer *seen[SR_MAX_OBSERVERS];
  memcpy(seen, observers, (size_t)n * sizeof seen[0]);
  for (int k = 0; k < n; k++)
    if (seen[k]->before) seen[k]->before(id, c, dev);
  const char *err = call(id, c, dev, fn);
  for (int k = n - 1; k >= 0; k--)
    if (seen[k]->after) seen[k]->after(id, c, dev);
  return err;
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
  const char *err = nobservers ? observed_call(id, c, dev, fn) : call(id, c, dev, fn);
  if (err) sr_fail("%s: %s", k->name, err);
}
