/*
** core/scratch.c: the per-call scratch list (see scratch.h).
*/
#include <stdio.h>     /* defines: fprintf */
#include <stdlib.h>    /* defines: realloc, abort */

#include "core/scratch.h"

typedef struct entry { sr_cleanup_fn fn; void *p; } entry;

static _Thread_local entry *stack;
static _Thread_local int depth, cap, floor_;

static void release_tensor(void *p) { sr_tensor_release((sr_tensor *)p); }

int sr_scratch_mark(void) { return depth; }

static void push(sr_cleanup_fn fn, void *p) {
  if (depth == cap) {
    int ncap = cap ? 2 * cap : 64;
    entry *s = realloc(stack, (size_t)ncap * sizeof *s);
    if (!s) { fn(p); sr_fail("out of host memory"); }
    stack = s;
    cap = ncap;
  }
  stack[depth].fn = fn;
  stack[depth].p = p;
  depth++;
}

sr_tensor *sr_scratch_push(sr_tensor *t) {
  if (t) push(release_tensor, t);
  return t;
}

void sr_scratch_defer(sr_cleanup_fn fn, void *p) { push(fn, p); }

void sr_scratch_pop(int mark) {
  if (mark < 0) mark = 0;
  while (depth > mark) {
    entry e = stack[--depth];  /* off the list before it runs: a cleanup never runs twice */
    e.fn(e.p);
  }
  if (floor_ > depth) floor_ = depth;
}

sr_tensor *sr_scratch_return(int mark, sr_tensor *y) {
  sr_tensor_retain(y);
  sr_scratch_pop(mark);
  return y;
}

void sr_scratch_unwind(void) { sr_scratch_pop(floor_); }

int sr_scratch_set_floor(int f) {
  int old = floor_;
  floor_ = f < 0 ? 0 : f > depth ? depth : f;
  return old;
}
