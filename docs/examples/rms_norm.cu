// Example agent kernel: RMS norm of each row, one block per row.
//   speedrun kernel check docs/examples/rms_norm.cu --op rms_norm
//   speedrun kernel check docs/examples/rms_norm.cu --op rms_norm --kernel rms_norm_bf16 --dtype bfloat16
// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w
#include "speedrun_kernel.cuh"

template <typename T>
__device__ __forceinline__ void rms_norm_impl(T *y, const T *x, const T *w, int N, int C, float eps) {
  __shared__ float sh[32];
  int row = blockIdx.x;
  if (row >= N) return;              // the whole block leaves together: no barrier is skipped
  const T *xr = x + (int64_t)row * C;
  T *yr = y + (int64_t)row * C;
  float ss = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float v = sr_to_float(xr[c]);
    ss += v * v;
  }
  ss = sr_block_sum(ss, sh);
  float rstd = rsqrtf(ss / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    yr[c] = sr_from_float<T>(sr_to_float(xr[c]) * rstd * sr_to_float(w[c]));
}

SR_KERNEL void rms_norm(float *y, const float *x, const float *w, int N, int C, float eps) {
  rms_norm_impl(y, x, w, N, C, eps);
}
SR_KERNEL void rms_norm_bf16(bf16 *y, const bf16 *x, const bf16 *w, int N, int C, float eps) {
  rms_norm_impl(y, x, w, N, C, eps);
}
