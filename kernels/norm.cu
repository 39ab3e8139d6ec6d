/*
** norm.cu: rms_norm and layer_norm, forward and backward, over the last dim of a contiguous
** [N,C]; weight and bias optional. Statistics (mean, rstd) are f32 and saved by the forward.
** Gradient contract (as llm.c's layernorm.cuh): dx is written (=), or added to (+=, i0 = 1: autograd's
** accumulate fusion, the gradient its input has so far); dweight and dbias are accumulated (+=). The backward computes dx row by row (a warp per row) and reduces the
** parameter grads per block in shared memory, then across blocks in a second small kernel
** (deterministic, no global atomics). Contiguous rows with C % 8 == 0 and C <= 1024 take
** vectorised kernels (a row in registers, 16-byte accesses; also an f32 x with a bf16 out, or a
** bf16 dout: the step compiler's cast folding); SR_NORM_V1=1 forces the scalar ones.
*/

#include "common.cuh"  // defines: ld_as_float, st_from_float, warp_sum, ld8, st8

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

// the backward kernels' flags: the parameters' partials wanted, dx added to (+=) instead of written
#define NORM_PARAMS 1
#define NORM_ACC 2

// dx for a warp's rows; per-block partial dweight/dbias in shared memory, written to part[block][2C]
template <bool LN>
__global__ void norm_backward_kernel1(void *dx, int dxdt, float *part, const void *dout, int ddt, const void *x,
                                      int xdt, const void *w, int wdt, const float *mean, const float *rstd,
                                      int64_t N, int64_t C, int flags) {
  extern __shared__ float sh[];  // [2C]: dweight, dbias partials
  const bool want_params = flags & NORM_PARAMS, acc = flags & NORM_ACC;
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
      if (acc) v += ld_as_float(dx, dxdt, base + c);
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

// ----------------------------------------------------------------------------
// vectorised kernels for contiguous rows with C % 8 == 0 and C <= 1024 (x, out, dout, dx of one
// dtype T; weight/bias of one dtype TW): a warp per row, the row held in registers (NCH chunks of
// 8 values per lane, vector v = j*32 + lane), 16-byte loads and stores, x read once.

// TO: out's dtype (an f32 x normed straight into bf16: the step compiler's cast folding, the
// same value the f32 kernel stores, rounded once)
template <bool LN, typename T, typename TW, int NCH, typename TO>
__global__ void __launch_bounds__(256) norm_forward_kernel2(TO *out, float *mean, float *rstd, const T *x, const TW *w,
                                                            const TW *b, int64_t N, int C, float eps) {
  int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31, nv = C >> 3;
  if (n >= N) return;
  const T *xr = x + n * C;
  float xv[NCH][8];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < NCH; j++) {
    int v = j * 32 + lane;
    if (v < nv) ld8(xr, v, xv[j]);
    else
#pragma unroll
      for (int k = 0; k < 8; k++) xv[j][k] = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) s += xv[j][k];
  }
  float m = 0.f;
  if (LN) m = warp_sum(s) / (float)C;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < NCH; j++)
    if (j * 32 + lane < nv)
#pragma unroll
      for (int k = 0; k < 8; k++) {
        float d = xv[j][k] - m;
        q += d * d;
      }
  float r = rsqrtf(warp_sum(q) / (float)C + eps);
  TO *orow = out + n * C;
#pragma unroll
  for (int j = 0; j < NCH; j++) {
    int v = j * 32 + lane;
    if (v >= nv) continue;
    float y[8], wv[8], bv[8];
    if (w) ld8(w, v, wv);
    if (LN && b) ld8(b, v, bv);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      y[k] = (xv[j][k] - m) * r;
      if (w) y[k] *= wv[k];
      if (LN && b) y[k] += bv[k];
    }
    st8(orow, v, y);
  }
  if (lane == 0) {
    rstd[n] = r;
    if (LN) mean[n] = m;
  }
}

// dx row by row (a warp per row); with want_params each lane accumulates dweight/dbias of its
// columns over the warp's rows in registers, then the block adds its warps' partials in shared
// memory in warp order (deterministic) and writes part[block][2C]
// TD: dout's dtype (a bf16 gradient read as it is by an f32 norm's backward: the step compiler's
// input folding; widened exactly on load, so the same values as its f32 copy)
template <bool LN, typename T, typename TW, int NCH, typename TD>
__global__ void __launch_bounds__(256) norm_backward_kernel2(T *dx, float *part, const TD *dout, const T *x, const TW *w,
                                                             const float *mean, const float *rstd, int64_t N, int C,
                                                             int flags) {
  extern __shared__ float sh[];  // [2C]: dweight, dbias partials
  const bool want_params = flags & NORM_PARAMS, acc = flags & NORM_ACC;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5, nv = C >> 3;
  float aw[NCH][8], ab[NCH][8];
#pragma unroll
  for (int j = 0; j < NCH; j++)
#pragma unroll
    for (int k = 0; k < 8; k++) aw[j][k] = ab[j][k] = 0.f;
  int64_t warps = (int64_t)gridDim.x * nwarps;
  for (int64_t n = blockIdx.x * (int64_t)nwarps + warp; n < N; n += warps) {
    const TD *dr = dout + n * C;
    const T *xr = x + n * C;
    float m = LN ? mean[n] : 0.f, r = rstd[n];
    float dv[NCH][8], xh[NCH][8];
    float sg = 0.f, sgx = 0.f;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
      int v = j * 32 + lane;
      if (v < nv) {
        ld8(dr, v, dv[j]);
        ld8(xr, v, xh[j]);
        float wv[8];
        if (w) ld8(w, v, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) {
          xh[j][k] = (xh[j][k] - m) * r;
          float g = w ? dv[j][k] * wv[k] : dv[j][k];
          sg += g;
          sgx += g * xh[j][k];
        }
      }
    }
    sg = warp_sum(sg) / (float)C;
    sgx = warp_sum(sgx) / (float)C;
    T *dxr = dx + n * C;
#pragma unroll
    for (int j = 0; j < NCH; j++) {
      int v = j * 32 + lane;
      if (v >= nv) continue;
      float wv[8], o[8];
      if (w) ld8(w, v, wv);
#pragma unroll
      for (int k = 0; k < 8; k++) {
        float d = dv[j][k];
        float g = w ? d * wv[k] : d;
        o[k] = LN ? r * (g - sg - xh[j][k] * sgx) : r * (g - xh[j][k] * sgx);
        if (want_params) {
          aw[j][k] += d * xh[j][k];
          if (LN) ab[j][k] += d;
        }
      }
      if (acc) {
        float old[8];
        ld8(dxr, v, old);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] += old[k];
      }
      st8(dxr, v, o);
    }
  }
  if (!want_params) return;  // uniform across the block
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) sh[c] = 0.f;
  __syncthreads();
  for (int ww = 0; ww < nwarps; ww++) {
    if (warp == ww) {
#pragma unroll
      for (int j = 0; j < NCH; j++) {
        int v = j * 32 + lane;
        if (v >= nv) continue;
#pragma unroll
        for (int k = 0; k < 8; k++) {
          sh[v * 8 + k] += aw[j][k];
          if (LN) sh[C + v * 8 + k] += ab[j][k];
        }
      }
    }
    __syncthreads();
  }
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) part[blockIdx.x * 2 * (int64_t)C + c] = sh[c];
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
  return sr_errf("dtype %s of argument %d is not supported on cuda (use f32 or bf16)", sr_dtype_name((sr_dtype)t->dtype), arg);
}
static void *dp(const sr_tensor *t) { return t ? sr_data(t) : NULL; }
static int dt(const sr_tensor *t) { return t ? (int)t->dtype : SR_F32; }

static bool al16(const sr_tensor *t) { return !t || ((uintptr_t)sr_data(t) & 15) == 0; }
// chunks of 8 values per lane for the vectorised kernels, 0 when they do not apply
static int norm_nch(int64_t C, sr_tensor *const *ts, int n) {
  if (C % 8 != 0 || C > 1024 || C <= 0) return 0;
  for (int j = 0; j < n; j++)
    if (ts[j] && (!sr_is_contiguous(ts[j]) || !al16(ts[j]))) return 0;
  return (int)CEIL_DIV(C / 8, (int64_t)32);
}
// TW for w and b: both f32 or both bf16 (absent ones take the other's); -1 when they differ
static int norm_tw(const sr_tensor *w, const sr_tensor *b) {
  if (w && b && w->dtype != b->dtype) return -1;
  return w ? (int)w->dtype : b ? (int)b->dtype : SR_F32;
}
static bool norm_v1(void) {  // SR_NORM_V1=1 forces the scalar kernels (A/B)
  static int v = -1;
  return sr_env_is(&v, "SR_NORM_V1", "1");
}

template <bool LN, typename T, typename TW, int NCH, typename TO>
static void fwd2(cudaStream_t s, sr_tensor *out, sr_tensor *mean, sr_tensor *rstd, sr_tensor *x, sr_tensor *w, sr_tensor *b,
                 int64_t N, int64_t C, float eps) {
  unsigned grid = (unsigned)CEIL_DIV(N * 32, (int64_t)256);
  norm_forward_kernel2<LN, T, TW, NCH, TO><<<grid, 256, 0, s>>>((TO *)sr_data(out), mean ? (float *)sr_data(mean) : NULL,
                                                            (float *)sr_data(rstd), (const T *)sr_data(x),
                                                            w ? (const TW *)sr_data(w) : NULL,
                                                            b ? (const TW *)sr_data(b) : NULL, N, (int)C, eps);
}
template <bool LN, typename T, typename TW, typename TO = T>
static void fwd2_n(int nch, cudaStream_t s, sr_tensor *out, sr_tensor *mean, sr_tensor *rstd, sr_tensor *x, sr_tensor *w,
                   sr_tensor *b, int64_t N, int64_t C, float eps) {
  switch (nch) {
    case 1: fwd2<LN, T, TW, 1, TO>(s, out, mean, rstd, x, w, b, N, C, eps); break;
    case 2: fwd2<LN, T, TW, 2, TO>(s, out, mean, rstd, x, w, b, N, C, eps); break;
    case 3: fwd2<LN, T, TW, 3, TO>(s, out, mean, rstd, x, w, b, N, C, eps); break;
    default: fwd2<LN, T, TW, 4, TO>(s, out, mean, rstd, x, w, b, N, C, eps); break;
  }
}
template <bool LN>
static void fwd2_d(int nch, int tw, cudaStream_t s, sr_tensor *out, sr_tensor *mean, sr_tensor *rstd, sr_tensor *x,
                   sr_tensor *w, sr_tensor *b, int64_t N, int64_t C, float eps) {
  if (x->dtype == SR_BF16) {
    if (tw == SR_BF16) fwd2_n<LN, bf16, bf16>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
    else fwd2_n<LN, bf16, float>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
  } else if (out->dtype == SR_BF16) {   // f32 x, bf16 out
    if (tw == SR_BF16) fwd2_n<LN, float, bf16, bf16>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
    else fwd2_n<LN, float, float, bf16>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
  } else {
    if (tw == SR_BF16) fwd2_n<LN, float, bf16>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
    else fwd2_n<LN, float, float>(nch, s, out, mean, rstd, x, w, b, N, C, eps);
  }
}

template <bool LN, typename T, typename TW, int NCH, typename TD>
static cudaError_t bwd2(cudaStream_t s, unsigned G, size_t smem, sr_tensor *dx, float *part, sr_tensor *dout, sr_tensor *x,
                        sr_tensor *w, sr_tensor *mean, sr_tensor *rstd, int64_t N, int64_t C, int flags) {
  if (smem > 48 * 1024) {
    cudaError_t ce = cudaFuncSetAttribute(norm_backward_kernel2<LN, T, TW, NCH, TD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce != cudaSuccess) return ce;
  }
  norm_backward_kernel2<LN, T, TW, NCH, TD><<<G, 256, smem, s>>>((T *)sr_data(dx), part, (const TD *)sr_data(dout),
                                                             (const T *)sr_data(x), w ? (const TW *)sr_data(w) : NULL,
                                                             mean ? (const float *)sr_data(mean) : NULL,
                                                             (const float *)sr_data(rstd), N, (int)C, flags);
  return cudaSuccess;
}
template <bool LN, typename T, typename TW, typename TD = T>
static cudaError_t bwd2_n(int nch, cudaStream_t s, unsigned G, size_t smem, sr_tensor *dx, float *part, sr_tensor *dout,
                          sr_tensor *x, sr_tensor *w, sr_tensor *mean, sr_tensor *rstd, int64_t N, int64_t C, int flags) {
  switch (nch) {
    case 1: return bwd2<LN, T, TW, 1, TD>(s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    case 2: return bwd2<LN, T, TW, 2, TD>(s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    case 3: return bwd2<LN, T, TW, 3, TD>(s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    default: return bwd2<LN, T, TW, 4, TD>(s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
  }
}
template <bool LN>
static cudaError_t bwd2_d(int nch, int tw, cudaStream_t s, unsigned G, size_t smem, sr_tensor *dx, float *part,
                          sr_tensor *dout, sr_tensor *x, sr_tensor *w, sr_tensor *mean, sr_tensor *rstd, int64_t N,
                          int64_t C, int flags) {
  if (x->dtype == SR_BF16) {
    if (tw == SR_BF16) return bwd2_n<LN, bf16, bf16>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    return bwd2_n<LN, bf16, float>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
  }
  if (dout->dtype == SR_BF16) {   // f32 x and dx, bf16 dout
    if (tw == SR_BF16) return bwd2_n<LN, float, bf16, bf16>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    return bwd2_n<LN, float, float, bf16>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
  }
  if (tw == SR_BF16) return bwd2_n<LN, float, bf16>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
  return bwd2_n<LN, float, float>(nch, s, G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
}

static const char *norm_forward(bool ln, sr_tensor *out, sr_tensor *mean, sr_tensor *rstd, sr_tensor *x, sr_tensor *w,
                                sr_tensor *b, float eps) {
  const char *e = fl(out, 1);
  if (!e) e = fl(x, 3);
  if (!e) e = fl(w, 4);
  if (!e) e = fl(b, 5);
  if (e) return e;
  if (rstd->dtype != SR_F32 || (mean && mean->dtype != SR_F32)) return sr_errf("mean and rstd must be f32");
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  if (N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  {
    sr_tensor *ts[4] = {out, x, w, b};
    bool dts = out->dtype == x->dtype || (x->dtype == SR_F32 && out->dtype == SR_BF16);
    int nch = norm_v1() || !dts ? 0 : norm_nch(C, ts, 4), tw = norm_tw(w, ln ? b : NULL);
    if (nch > 0 && tw >= 0) {
      if (ln) fwd2_d<true>(nch, tw, s, out, mean, rstd, x, w, b, N, C, eps);
      else fwd2_d<false>(nch, tw, s, out, NULL, rstd, x, w, NULL, N, C, eps);
      SR_LAUNCH_CHECK();
      return NULL;
    }
  }
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
                                 sr_tensor *w, sr_tensor *mean, sr_tensor *rstd, bool acc) {
  const char *e = fl(dx, 1);
  if (!e) e = fl(dw, 2);
  if (!e) e = fl(db, 3);
  if (!e) e = fl(dout, 4);
  if (!e) e = fl(x, 5);
  if (!e) e = fl(w, 6);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  if (N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int want = dw != NULL || db != NULL, flags = (want ? NORM_PARAMS : 0) | (acc ? NORM_ACC : 0);
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
  sr_tensor *ts[4] = {dx, dout, x, w};
  bool dts = dx->dtype == x->dtype && (dout->dtype == x->dtype || (x->dtype == SR_F32 && dout->dtype == SR_BF16));
  int nch = norm_v1() || !dts ? 0 : norm_nch(C, ts, 4);
  int tw = norm_tw(w, NULL);
  if (nch > 0 && tw >= 0) {
    if (ln) ce = bwd2_d<true>(nch, tw, s, (unsigned)G, smem, dx, part, dout, x, w, mean, rstd, N, C, flags);
    else ce = bwd2_d<false>(nch, tw, s, (unsigned)G, smem, dx, part, dout, x, w, NULL, rstd, N, C, flags);
  } else if (ln) {
    if (smem > 48 * 1024) ce = cudaFuncSetAttribute(norm_backward_kernel1<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess)
      norm_backward_kernel1<true><<<(unsigned)G, block, smem, s>>>(dp(dx), dt(dx), part, dp(dout), dt(dout), dp(x), dt(x),
                                                                 dp(w), dt(w), (const float *)dp(mean),
                                                                 (const float *)dp(rstd), N, C, flags);
  } else {
    if (smem > 48 * 1024) ce = cudaFuncSetAttribute(norm_backward_kernel1<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess)
      norm_backward_kernel1<false><<<(unsigned)G, block, smem, s>>>(dp(dx), dt(dx), part, dp(dout), dt(dout), dp(x), dt(x),
                                                                  dp(w), dt(w), NULL, (const float *)dp(rstd), N, C, flags);
  }
  if (ce == cudaSuccess && want)
    norm_params_kernel1<<<(unsigned)CEIL_DIV(C, (int64_t)256), 256, 0, s>>>(dp(dw), dt(dw), dp(db), dt(db), part, (int)G, C);
  if (ce == cudaSuccess) ce = cudaGetLastError();
  sr_cuda_free(part);
  if (ce != cudaSuccess) return sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  return NULL;
}

extern "C" const char *sr_cuda_rms_norm(const sr_kcall *c) {
  return norm_forward(false, sr_karg(c, 0), NULL, sr_karg(c, 1), sr_karg(c, 2), sr_karg(c, 3), NULL, (float)c->f[0]);
}
extern "C" const char *sr_cuda_rms_norm_backward(const sr_kcall *c) {
  return norm_backward(false, sr_karg(c, 0), sr_karg(c, 1), NULL, sr_karg(c, 2), sr_karg(c, 3), sr_karg(c, 4), NULL, sr_karg(c, 5),
                       c->i[0] != 0);
}
extern "C" const char *sr_cuda_layer_norm(const sr_kcall *c) {
  return norm_forward(true, sr_karg(c, 0), sr_karg(c, 1), sr_karg(c, 2), sr_karg(c, 3), sr_karg(c, 4), sr_karg(c, 5), (float)c->f[0]);
}
extern "C" const char *sr_cuda_layer_norm_backward(const sr_kcall *c) {
  return norm_backward(true, sr_karg(c, 0), sr_karg(c, 1), sr_karg(c, 2), sr_karg(c, 3), sr_karg(c, 4), sr_karg(c, 5), sr_karg(c, 6), sr_karg(c, 7),
                       c->i[0] != 0);
}
