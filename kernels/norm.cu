/*
** norm.cu: rms_norm and layer_norm, forward and backward, over the last dim of a contiguous
** [N,C]; weight and bias optional. Statistics (mean, rstd) are f32 and saved by the forward.
** Gradient contract (as llm.c's layernorm.cuh): dx is written (=); dweight and dbias are
** accumulated (+=). The backward computes dx row by row (a warp per row) and reduces the
** parameter grads per block in shared memory, then across blocks in a second small kernel
** (deterministic, no global atomics).
*/
#include "common.cuh"  // defines: ld_as_float, st_from_float, warp_sum

// ----------------------------------------------------------------------------
// CUDA kernels

// a warp per row; LN selects layer_norm (mean subtracted, bias) over rms_norm
template <bool LN>
__global__ void norm_forward_kernel1(void *out, int odt, float *mean, float *rstd, const void *x, int xdt,
                                     const void *w, int wdt, const void *b, int bdt, int64_t N, int64_t C, float eps) {
  int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (n >= N) return;
  int64_t base = n * C;
  float m = 0.f;
  if (LN) {
    float s = 0.f;
    for (int64_t c = lane; c < C; c += 32) s += ld_as_float(x, xdt, base + c);
    m = warp_sum(s) / (float)C;
  }
  float v = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    float d = ld_as_float(x, xdt, base + c) - m;
    v += d * d;
  }
  float r = rsqrtf(warp_sum(v) / (float)C + eps);
  for (int64_t c = lane; c < C; c += 32) {
    float y = (ld_as_float(x, xdt, base + c) - m) * r;
    if (w) y *= ld_as_float(w, wdt, c);
    if (LN && b) y += ld_as_float(b, bdt, c);
    st_from_float(out, odt, base + c, y);
  }
  if (lane == 0) {
    rstd[n] = r;
    if (LN) mean[n] = m;
  }
}

// dx for a warp's rows; per-block partial dweight/dbias in shared memory, written to part[block][2C]
template <bool LN>
__global__ void norm_backward_kernel1(void *dx, int dxdt, float *part, const void *dout, int ddt, const void *x,
                                      int xdt, const void *w, int wdt, const float *mean, const float *rstd,
                                      int64_t N, int64_t C, int want_params) {
  extern __shared__ float sh[];  // [2C]: dweight, dbias partials
  if (want_params)
    for (int64_t c = threadIdx.x; c < 2 * C; c += blockDim.x) sh[c] = 0.f;
  __syncthreads();
  int lane = threadIdx.x & 31;
  int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t n = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); n < N; n += warps) {
    int64_t base = n * C;
    float m = LN ? mean[n] : 0.f, r = rstd[n];
    float sg = 0.f, sgx = 0.f;
    for (int64_t c = lane; c < C; c += 32) {
      float g = ld_as_float(dout, ddt, base + c);
      if (w) g *= ld_as_float(w, wdt, c);
      float xh = (ld_as_float(x, xdt, base + c) - m) * r;
      sg += g;
      sgx += g * xh;
    }
    sg = warp_sum(sg) / (float)C;
    sgx = warp_sum(sgx) / (float)C;
    for (int64_t c = lane; c < C; c += 32) {
      float d = ld_as_float(dout, ddt, base + c);
      float g = w ? d * ld_as_float(w, wdt, c) : d;
      float xh = (ld_as_float(x, xdt, base + c) - m) * r;
      float v = LN ? r * (g - sg - xh * sgx) : r * (g - xh * sgx);
      st_from_float(dx, dxdt, base + c, v);
      if (want_params) {
        atomicAdd(&sh[c], d * xh);
        if (LN) atomicAdd(&sh[C + c], d);
      }
    }
  }
  __syncthreads();
  if (want_params)
    for (int64_t c = threadIdx.x; c < 2 * C; c += blockDim.x) part[blockIdx.x * 2 * C + c] = sh[c];
}

// dweight[c] += sum over blocks of part[:, c]; dbias[c] += sum of part[:, C + c]
__global__ void norm_params_kernel1(void *dw, int dwdt, void *db, int dbdt, const float *part, int G, int64_t C) {
  int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0.f, sb = 0.f;
  for (int g = 0; g < G; g++) {
    sw += part[g * 2 * C + c];
    sb += part[g * 2 * C + C + c];
  }
  if (dw) st_from_float(dw, dwdt, c, ld_as_float(dw, dwdt, c) + sw);
  if (db) st_from_float(db, dbdt, c, ld_as_float(db, dbdt, c) + sb);
}

// ----------------------------------------------------------------------------
// kernel launchers

static const char *fl(const sr_tensor *t, int arg) {
  if (!t || t->dtype == SR_F32 || t->dtype == SR_BF16) return NULL;
  return sr_errf("dtype %s of argument %d is not supported on cuda (use f32 or bf16)", kn_dtname(t->dtype), arg);
}
static void *dp(const sr_tensor *t) { return t ? kn_data(t) : NULL; }
static int dt(const sr_tensor *t) { return t ? (int)t->dtype : SR_F32; }

static const char *norm_forward(bool ln, sr_tensor *out, sr_tensor *mean, sr_tensor *rstd, sr_tensor *x, sr_tensor *w,
                                sr_tensor *b, float eps) {
  const char *e = fl(out, 1);
  if (!e) e = fl(x, 3);
  if (!e) e = fl(w, 4);
  if (!e) e = fl(b, 5);
  if (e) return e;
  if (rstd->dtype != SR_F32 || (mean && mean->dtype != SR_F32)) return sr_errf("mean and rstd must be f32");
  int64_t C = x->shape[x->ndim - 1], N = C ? kn_numel(x) / C : 0;
  if (N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  unsigned grid = (unsigned)CEIL_DIV(N * 32, (int64_t)256);
  if (ln)
    norm_forward_kernel1<true><<<grid, 256, 0, s>>>(dp(out), dt(out), (float *)dp(mean), (float *)dp(rstd), dp(x), dt(x),
                                                    dp(w), dt(w), dp(b), dt(b), N, C, eps);
  else
    norm_forward_kernel1<false><<<grid, 256, 0, s>>>(dp(out), dt(out), NULL, (float *)dp(rstd), dp(x), dt(x), dp(w),
                                                     dt(w), NULL, SR_F32, N, C, eps);
  SR_LAUNCH_CHECK();
  return NULL;
}

static const char *norm_backward(bool ln, sr_tensor *dx, sr_tensor *dw, sr_tensor *db, sr_tensor *dout, sr_tensor *x,
                                 sr_tensor *w, sr_tensor *mean, sr_tensor *rstd) {
  const char *e = fl(dx, 1);
  if (!e) e = fl(dw, 2);
  if (!e) e = fl(db, 3);
  if (!e) e = fl(dout, 4);
  if (!e) e = fl(x, 5);
  if (!e) e = fl(w, 6);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? kn_numel(x) / C : 0;
  if (N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int want = dw != NULL || db != NULL;
  int block = 256;
  int64_t G = CEIL_DIV(N, (int64_t)(block / 32));
  if (want && G > 264) G = 264;     // two blocks per SM: parameter partials stay small
  if (!want && G > 132 * 16) G = 132 * 16;
  size_t smem = want ? (size_t)2 * C * sizeof(float) : 0;
  if (smem > 227 * 1024) return sr_errf("C=%lld too large for the fused norm backward", (long long)C);
  float *part = NULL;
  if (want) {
    part = (float *)sr_cuda_malloc((size_t)G * 2 * C * sizeof(float));
    if (!part) return sr_errf("out of memory (norm backward scratch)");
  }
  cudaError_t ce = cudaSuccess;
  if (ln) {
    if (smem > 48 * 1024) ce = cudaFuncSetAttribute(norm_backward_kernel1<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess)
      norm_backward_kernel1<true><<<(unsigned)G, block, smem, s>>>(dp(dx), dt(dx), part, dp(dout), dt(dout), dp(x), dt(x),
                                                                 dp(w), dt(w), (const float *)dp(mean),
                                                                 (const float *)dp(rstd), N, C, want);
  } else {
    if (smem > 48 * 1024) ce = cudaFuncSetAttribute(norm_backward_kernel1<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess)
      norm_backward_kernel1<false><<<(unsigned)G, block, smem, s>>>(dp(dx), dt(dx), part, dp(dout), dt(dout), dp(x), dt(x),
                                                                  dp(w), dt(w), NULL, (const float *)dp(rstd), N, C, want);
  }
  if (ce == cudaSuccess && want)
    norm_params_kernel1<<<(unsigned)CEIL_DIV(C, (int64_t)256), 256, 0, s>>>(dp(dw), dt(dw), dp(db), dt(db), part, (int)G, C);
  if (ce == cudaSuccess) ce = cudaGetLastError();
  sr_cuda_free(part);
  if (ce != cudaSuccess) return sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  return NULL;
}

extern "C" const char *sr_cuda_rms_norm(const sr_kcall *c) {
  return norm_forward(false, kn_arg(c, 0), NULL, kn_arg(c, 1), kn_arg(c, 2), kn_arg(c, 3), NULL, (float)c->f[0]);
}
extern "C" const char *sr_cuda_rms_norm_backward(const sr_kcall *c) {
  return norm_backward(false, kn_arg(c, 0), kn_arg(c, 1), NULL, kn_arg(c, 2), kn_arg(c, 3), kn_arg(c, 4), NULL, kn_arg(c, 5));
}
extern "C" const char *sr_cuda_layer_norm(const sr_kcall *c) {
  return norm_forward(true, kn_arg(c, 0), kn_arg(c, 1), kn_arg(c, 2), kn_arg(c, 3), kn_arg(c, 4), kn_arg(c, 5), (float)c->f[0]);
}
extern "C" const char *sr_cuda_layer_norm_backward(const sr_kcall *c) {
  return norm_backward(true, kn_arg(c, 0), kn_arg(c, 1), kn_arg(c, 2), kn_arg(c, 3), kn_arg(c, 4), kn_arg(c, 5), kn_arg(c, 6), kn_arg(c, 7));
}
