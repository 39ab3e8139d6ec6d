// A fused op for the custom-autograd tests: y = relu(x)^2, dx = 2 relu(x) dy (= write).
#include "speedrun_kernel.cuh"

template <typename T>
__device__ void relu2_fwd_impl(T *y, const T *x, int n) {
  int64_t i = sr_tid();
  if (i < n) {
    float r = fmaxf(sr_to_float(x[i]), 0.f);
    y[i] = sr_from_float<T>(r * r);
  }
}
template <typename T>
__device__ void relu2_bwd_impl(T *dx, const T *dy, const T *x, int n) {
  int64_t i = sr_tid();
  if (i < n) dx[i] = sr_from_float<T>(2.f * fmaxf(sr_to_float(x[i]), 0.f) * sr_to_float(dy[i]));
}

SR_KERNEL void relu2_fwd(float *y, const float *x, int n) { relu2_fwd_impl(y, x, n); }
SR_KERNEL void relu2_bwd(float *dx, const float *dy, const float *x, int n) { relu2_bwd_impl(dx, dy, x, n); }
SR_KERNEL void relu2_fwd_bf16(bf16 *y, const bf16 *x, int n) { relu2_fwd_impl(y, x, n); }
SR_KERNEL void relu2_bwd_bf16(bf16 *dx, const bf16 *dy, const bf16 *x, int n) { relu2_bwd_impl(dx, dy, x, n); }
