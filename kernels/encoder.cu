/*
** encoder.cu: embedding lookup and its backward.
** embedding: out[n,:] = weight[idx[n],:]; a bad index writes NaN to its row and is reported
** through the deferred error record (no host sync per call; see host/cuda/backend.h).
** embedding_backward: dweight[idx[n],:] += dout[n,:] (parameter grad: +=) with f32 atomics; the
** summation order is not deterministic. A bf16 dweight (record 10's bf16 embedding) is summed in
** an f32 copy and rounded once, as torch accumulates a bf16 embedding's gradient in float: bf16
** atomics would round at every add, and a frequent token's row would lose its small terms.
*/
#include "common.cuh"  // defines: ld_as_float, st_from_float, sr_report_index_error

// ----------------------------------------------------------------------------
// CUDA kernels

// a warp per row; 8-wide vector copies when both are bf16 or f32 with matching type and alignment
template <typename TO, typename TW>
__global__ void embedding_forward_kernel1(TO *out, const TW *w, const int *idx, int64_t N, int64_t C, int64_t V,
                                          sr_dev_error *err) {
  int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (n >= N) return;
  int64_t t = idx[n];
  TO *o = out + n * C;
  if (t < 0 || t >= V) {
    if (lane == 0) sr_report_index_error(err, 1, n, t, V);
    for (int64_t c = lane; c < C; c += 32) o[c] = from_f<TO>(__int_as_float(0x7fffffff));
    return;
  }
  const TW *row = w + t * C;
  for (int64_t c = lane; c < C; c += 32) o[c] = from_f<TO>(to_f<TW>(row[c]));
}

template <typename TD, typename TG>
__global__ void embedding_backward_kernel1(TD *dw, const TG *dout, const int *idx, int64_t N, int64_t C, int64_t V) {
  int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (n >= N) return;
  int64_t t = idx[n];
  if (t < 0 || t >= V) return;
  for (int64_t c = lane; c < C; c += 32) atomicAdd(&dw[t * C + c], from_f<TD>(to_f<TG>(dout[n * C + c])));
}

// a bf16 tensor widened into an f32 buffer, and back (rounded once)
__global__ void bf16_to_f32_kernel1(float *dst, const bf16 *src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}
__global__ void f32_to_bf16_kernel1(bf16 *dst, const float *src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16(src[i]);
}

// ----------------------------------------------------------------------------
// kernel launchers


extern "C" const char *sr_cuda_embedding(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *w = c->t[1], *idx = c->t[2];
  if (idx->dtype != SR_I32) return sr_errf("idx must be i32");
  int64_t N = sr_numel(idx), V = w->shape[0], C = w->shape[1];
  if (N == 0 || C == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  unsigned grid = (unsigned)CEIL_DIV(N * 32, (int64_t)256);
  sr_dev_error *err = sr_cuda_dev_error();
#define ARGS_F(TO, TW) (TO *)sr_data(out), (const TW *)sr_data(w), (const int *)sr_data(idx), N, C, V, err
  if (out->dtype == SR_F32 && w->dtype == SR_F32) embedding_forward_kernel1<float, float><<<grid, 256, 0, s>>>(ARGS_F(float, float));
  else if (out->dtype == SR_F32 && w->dtype == SR_BF16) embedding_forward_kernel1<float, bf16><<<grid, 256, 0, s>>>(ARGS_F(float, bf16));
  else if (out->dtype == SR_BF16 && w->dtype == SR_F32) embedding_forward_kernel1<bf16, float><<<grid, 256, 0, s>>>(ARGS_F(bf16, float));
  else if (out->dtype == SR_BF16 && w->dtype == SR_BF16) embedding_forward_kernel1<bf16, bf16><<<grid, 256, 0, s>>>(ARGS_F(bf16, bf16));
  else return sr_errf("unsupported dtypes %s, %s on cuda (f32 or bf16)", sr_dtype_name((sr_dtype)out->dtype), sr_dtype_name((sr_dtype)w->dtype));
#undef ARGS_F
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_embedding_backward(const sr_kcall *c) {
  sr_tensor *dw = c->t[0], *dout = c->t[1], *idx = c->t[2];
  if (idx->dtype != SR_I32) return sr_errf("idx must be i32");
  int64_t N = sr_numel(idx), V = dw->shape[0], C = dw->shape[1];
  if (N == 0 || C == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  unsigned grid = (unsigned)CEIL_DIV(N * 32, (int64_t)256);
  if ((dw->dtype != SR_F32 && dw->dtype != SR_BF16) || (dout->dtype != SR_F32 && dout->dtype != SR_BF16))
    return sr_errf("unsupported dtypes %s, %s on cuda (f32 or bf16)", sr_dtype_name((sr_dtype)dw->dtype), sr_dtype_name((sr_dtype)dout->dtype));
  int64_t nw = V * C;
  float *acc = (float *)sr_data(dw);
  if (dw->dtype == SR_BF16) {  // sum in an f32 copy of dweight, round once at the end
    acc = (float *)sr_cuda_malloc((size_t)nw * sizeof(float));
    if (!acc) return sr_errf("out of memory (embedding_backward: f32 accumulator of %lld elements)", (long long)nw);
    bf16_to_f32_kernel1<<<sr_grid_for(nw, 256), 256, 0, s>>>(acc, (const bf16 *)sr_data(dw), nw);
  }
  if (dout->dtype == SR_F32) embedding_backward_kernel1<float, float><<<grid, 256, 0, s>>>(acc, (const float *)sr_data(dout), (const int *)sr_data(idx), N, C, V);
  else embedding_backward_kernel1<float, bf16><<<grid, 256, 0, s>>>(acc, (const bf16 *)sr_data(dout), (const int *)sr_data(idx), N, C, V);
  if (dw->dtype == SR_BF16) f32_to_bf16_kernel1<<<sr_grid_for(nw, 256), 256, 0, s>>>((bf16 *)sr_data(dw), acc, nw);
  cudaError_t ce = cudaGetLastError();
  if (dw->dtype == SR_BF16) sr_cuda_free(acc);  // stream-ordered: the caching allocator reuses it after the launches
  return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
}
