// A kernel with a compile error on line 6 (tests check that the error names this file and line).
#include "speedrun_kernel.cuh"

SR_KERNEL void broken(float *y, int n) {
  int64_t i = sr_tid();
  if (i < n) y[i] = undefined_thing;
}
