// Example agent kernel: exact GELU, y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
//   speedrun kernel check docs/examples/gelu.cu --op gelu
//   speedrun kernel check docs/examples/gelu.cu --op gelu --kernel gelu_bf16 --dtype bfloat16
// Each thread handles 4 consecutive elements (fewer loop trips, more loads in flight).
#include "speedrun_kernel.cuh"

template <typename T>
__device__ __forceinline__ void gelu_impl(T *y, const T *x, int n) {
  int64_t base = sr_tid() * 4;
#pragma unroll
  for (int k = 0; k < 4; k++) {
    int64_t i = base + k;
    if (i < n) {
      float v = sr_to_float(x[i]);
      y[i] = sr_from_float<T>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
    }
  }
}

// launched by `kernel check` with grid = ceil(n / block), block = 256 threads: each block covers
// 4 * 256 elements, so a quarter of the blocks do all the work; the grid-stride form below keeps
// every block busy instead
SR_KERNEL void gelu(float *y, const float *x, int n) {
  for (int64_t i = sr_tid(); i < n; i += sr_nthreads()) {
    float v = x[i];
    y[i] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
  }
}

SR_KERNEL void gelu_bf16(bf16 *y, const bf16 *x, int n) {
  for (int64_t i = sr_tid(); i < n; i += sr_nthreads()) {
    float v = sr_to_float(x[i]);
    y[i] = sr_from_float<bf16>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
  }
}

// the 4-per-thread form, for a launch with grid = ceil(n / (4 * block))
SR_KERNEL void gelu_x4(float *y, const float *x, int n) { gelu_impl(y, x, n); }
