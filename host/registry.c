/*
** registry.c: the kernel table (one row per SR_KERNELS entry) and the dispatcher that runs a
** kernel on the device of its tensors.
*/
#include <stdio.h>     /* defines: snprintf */

#include "registry.h"  /* defines: sr_kernels, sr_kcall */

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

const char *sr_unary_name(int fn) { return fn >= 0 && fn < SR_UNARY_COUNT ? unary_names[fn] : "?"; }
const char *sr_binary_name(int fn) { return fn >= 0 && fn < SR_BINARY_COUNT ? binary_names[fn] : "?"; }

void sr_kernel_run(sr_kernel_id id, const sr_kcall *c) {
  const sr_kernel *k = &sr_kernels[id];
  int dev = -1;
  for (int j = 0; j < c->nt; j++) {
    if (!c->t[j]) continue;
    int d = (int)c->t[j]->storage->device;
    if (dev < 0) dev = d;
    else if (d != dev)
      sr_fail("%s: tensors on different devices (argument %d is on %s, earlier ones on %s)", k->name,
              j + 1, sr_device_name((sr_device)d), sr_device_name((sr_device)dev));
  }
  sr_kernel_fn fn = dev == SR_CUDA ? k->cuda : k->cpu;
  if (!fn) sr_fail("%s: no %s implementation (built without the CUDA backend)", k->name, sr_device_name((sr_device)dev));
  const char *err = fn(c);
  if (err) sr_fail("%s: %s", k->name, err);
}
