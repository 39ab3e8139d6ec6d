/*
** encoder.cu: embedding lookup and its backward.
** embedding: out[n,:] = weight[idx[n],:]; a bad index writes NaN to its row and is reported
** through the deferred error record (no host sync per call; see host/cuda/backend.h).
** embedding_backward: dweight[idx[n],:] += dout[n,:] (parameter grad: +=) with f32 atomics
** (bf16 atomics when dweight is bf16); the summation order is not deterministic.
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
#define ARGS_B(TD, TG) (TD *)sr_data(dw), (const TG *)sr_data(dout), (const int *)sr_data(idx), N, C, V
  if (dw->dtype == SR_F32 && dout->dtype == SR_F32) embedding_backward_kernel1<float, float><<<grid, 256, 0, s>>>(ARGS_B(float, float));
  else if (dw->dtype == SR_F32 && dout->dtype == SR_BF16) embedding_backward_kernel1<float, bf16><<<grid, 256, 0, s>>>(ARGS_B(float, bf16));
  else if (dw->dtype == SR_BF16 && dout->dtype == SR_F32) embedding_backward_kernel1<bf16, float><<<grid, 256, 0, s>>>(ARGS_B(bf16, float));
  else if (dw->dtype == SR_BF16 && dout->dtype == SR_BF16) embedding_backward_kernel1<bf16, bf16><<<grid, 256, 0, s>>>(ARGS_B(bf16, bf16));
  else return sr_errf("unsupported dtypes %s, %s on cuda (f32 or bf16)", sr_dtype_name((sr_dtype)dw->dtype), sr_dtype_name((sr_dtype)dout->dtype));
#undef ARGS_B
  SR_LAUNCH_CHECK();
  return NULL;
}
