/*
** core/trace.h: launch traces, a dispatch observer (host/core/trace.c).
*/
#ifndef SR_TRACE_H
#define SR_TRACE_H

#include <stddef.h>         /* defines: size_t */
#include <stdint.h>         /* defines: int64_t, uint64_t */

#include "core/registry.h"  /* defines: sr_kernel_id, sr_kcall */

#ifdef __cplusplus
extern "C" {
#endif

/* Launch traces: while a trace records, every sr_kernel_run appends what the kernel is given
** apart from memory addresses: the kernel, a hash of each tensor's dtype, shape, strides and
** offset (list tensors included), and the scalar parameters (those a device-side value overrides
** are left out: adamw's f0/i0 when t4 sched is given, adamw_multi's when t0 sched is). Two runs of a training step with equal traces issued the same
** work with the same host-side values (the harness compares them before using a CUDA graph). */
typedef struct sr_launch {
  int id;
  uint64_t layout;
  double f[6];
  int64_t i[4];
} sr_launch;
typedef struct sr_trace {
  sr_launch *l;
  int64_t n, cap;
} sr_trace;
void sr_trace_start(sr_trace *t);   /* empties t and records into it (one trace at a time) */
void sr_trace_stop(void);
void sr_trace_free(sr_trace *t);    /* frees t's launches (not t) */
/* the hash of a launch's tensors (dtype, shape, strides, offset of each; no addresses) */
uint64_t sr_kcall_layout(const sr_kcall *c);
/* NULL when a and b are equal, else a sentence naming the first difference (in buf) */
const char *sr_trace_diff(const sr_trace *a, const sr_trace *b, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
