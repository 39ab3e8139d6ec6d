// Test kernels for speedrun.kernel: element-wise add (float), scale (bf16, float math), a 2-D
// kernel, and a C++-named kernel (not extern "C") to check lowered-name lookup.
#include "speedrun_kernel.cuh"

SR_KERNEL void add(float *y, const float *a, const float *b, int n) {
  int64_t i = sr_tid();
  if (i < n) y[i] = a[i] + b[i];
}

SR_KERNEL void scale_bf16(bf16 *y, const bf16 *x, float s, int64_t n) {
  SR_FOR_EACH(i, n) y[i] = sr_from_float<bf16>(sr_to_float(x[i]) * s);
}

// y[r, c] = x[r, c] + r * 1000 + c, on a 2-D grid of 2-D blocks
SR_KERNEL void index2d(float *y, const float *x, int rows, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y * blockDim.y + threadIdx.y;
  if (r < rows && c < cols) y[(int64_t)r * cols + c] = x[(int64_t)r * cols + c] + r * 1000.f + c;
}

__global__ void cpp_fill(float *y, float v, int n) {
  int64_t i = sr_tid();
  if (i < n) y[i] = v;
}
