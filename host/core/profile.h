/*
** core/profile.h: the per-op profiler. While it is on, it observes the dispatcher (sr_kernel_run,
** host/core/registry.c): it times every kernel call and adds it to one aggregate per
** key: the kernel row, its sub-function (unary/unary_backward/binary/reduce: c->i[0]), the dtype
** of the first tensor (t[0], or the first list tensor when t[0] is absent) and the phase: "fwd"
** outside backward, "bwd:<node>" while the autograd rule of <node> runs, "bwd:accumulate" for the
** gradient additions between rules. CPU calls are timed by the wall clock around the kernel; CUDA
** calls by a pair of events recorded on the stream before and after it (read at stop, or when
** the event pool is full). Calls made while a CUDA graph is captured are not profiled. With a step
** compiler's plan installed (core/fuse.h) a fused group counts once, as the kernel "fused" with the
** group's label as its sub-function, and the launches held for it not at all.
** When no observer is registered the dispatcher pays one branch.
*/
#ifndef SR_PROFILE_H
#define SR_PROFILE_H

#include <stdbool.h>   /* defines: bool */
#include <stdint.h>    /* defines: int64_t */

#include "core/registry.h"  /* defines: sr_kernel_id, sr_kcall, sr_kernel_fn */

#ifdef __cplusplus
extern "C" {
#endif

/* one aggregate of a profile; name, sub and dtype are static strings (sub NULL when the kernel
** has no sub-function) */
typedef struct sr_profile_row {
  const char *name;
  const char *sub;
  const char *dtype;
  char phase[64];
  int64_t calls;
  double ms;       /* total milliseconds of its calls */
  int64_t numel;   /* the largest numel of the first tensor seen */
} sr_profile_row;

extern bool sr_profile_on;

/* starts an empty profile; NULL, or an error when one is already running */
const char *sr_profile_start(void);
/* ends the profile: waits for the CUDA stream, reads its events and gives the rows (sorted by ms,
** largest first; *rows is malloc'ed, the caller frees it). NULL, or an error: none running, a CUDA
** failure (the profiler is off afterwards), a graph being captured (the profile keeps running) */
const char *sr_profile_stop(sr_profile_row **rows, int *nrows);

#ifdef __cplusplus
}
#endif
#endif
