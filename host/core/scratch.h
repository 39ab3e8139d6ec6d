/*
** core/scratch.h: the per-call scratch list, so that a failure leaks nothing.
** sr_fail() longjmps (through the Lua handler) past every C frame between the failure and the
** protected call; references those frames held in locals would stay alive. An op that holds
** references across a call that can fail (a kernel run, a view, a nested op) hands them to the
** scratch list instead: a thread-local stack of cleanups. On success the op pops its own
** entries (running them, newest first); on failure sr_fail() runs every entry above the floor
** before the handler longjmps, while the frames they point into are still alive.
**
**   int m = sr_scratch_mark();
**   sr_tensor *tmp = sr_scratch_push(sr_contiguous_raw(x));   // the list holds tmp's reference
**   sr_tensor *y = sr_scratch_push(sr_tensor_new(...));       // released too if a later step fails
**   sr_kernel_run(...);                                       // may fail: tmp and y go
**   return sr_scratch_return(m, y);                           // y's reference to the caller, tmp released
**
** Nested ops nest naturally (each pops to its own mark). Code that calls back into Lua from
** inside an op (the custom-function backward hook, a collection run by the allocation hook)
** raises the floor around the call with sr_scratch_set_floor(sr_scratch_mark()), so a failure
** caught by a pcall inside that Lua code leaves the enclosing op's entries alone.
** Cost on the hot path: a thread-local array store per entry, no allocation after warm-up.
*/
#ifndef SR_SCRATCH_H
#define SR_SCRATCH_H

#include "core/tensor.h"  /* defines: sr_tensor */

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*sr_cleanup_fn)(void *p);

int sr_scratch_mark(void);                          /* the current depth */
sr_tensor *sr_scratch_push(sr_tensor *t);           /* takes over t's reference (NULL is fine); returns t */
void sr_scratch_defer(sr_cleanup_fn fn, void *p);   /* fn(p) at pop or failure (p may point into the caller's frame) */
void sr_scratch_pop(int mark);                      /* runs the entries above mark, newest first */
sr_tensor *sr_scratch_return(int mark, sr_tensor *y);  /* a new reference to y for the caller, then pop(mark) */
void sr_scratch_unwind(void);                       /* the failure path: pop(floor); sr_fail() calls it */
int sr_scratch_set_floor(int floor);                /* returns the previous floor */

#ifdef __cplusplus
}
#endif
#endif
