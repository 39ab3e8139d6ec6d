// A kernel that faults: it writes far outside its buffer (an illegal address).
#include "speedrun_kernel.cuh"

SR_KERNEL void oob(float *y, int n) {
  int64_t i = sr_tid();
  if (i < n) y[i + (1ll << 40)] = 1.f;
}

// SR_ASSERT traps when the condition fails: also a fault
SR_KERNEL void trap_if_negative(const float *x, int n) {
  int64_t i = sr_tid();
  if (i < n) SR_ASSERT(x[i] >= 0.f);
}
