/*
** softmax_xent.cu: cross-entropy over the rows of logits [N,V] without materialising the
** probabilities. Forward: one pass per row with an online max/sum (a block per row), writes
** lse[N] (f32) and losses[N] = lse - logit[target] (0 on ignore_index rows). Backward:
** dlogits = dloss * (exp(logit - lse) - onehot(target)), 0 on ignored rows, one pass.
** A target outside [0,V) (other than ignore_index) gives a NaN loss and is reported through the
** deferred error record at the next synchronize (cuda_backend.h).
** Gradient contract: dlogits is written (=).
*/
#include "common.cuh"  // defines: ld_as_float, block_sum, sr_report_index_error

// ----------------------------------------------------------------------------
// CUDA kernels

__global__ void cross_entropy_forward_kernel1(float *losses, float *lse, const void *logits, int ldt, const int *targets,
                                              int64_t V, int ignore, sr_dev_error *err) {
  __shared__ float sh[32];
  int64_t n = blockIdx.x, base = n * V;
  float m = -INFINITY, s = 0.f;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    float v = ld_as_float(logits, ldt, base + c);
    if (v > m) { s = s * __expf(m - v) + 1.f; m = v; }
    else s += __expf(v - m);
  }
  float M = block_max(m, sh);
  s = m == -INFINITY ? 0.f : s * __expf(m - M);
  float S = block_sum(s, sh);
  if (threadIdx.x == 0) {
    float l = M + logf(S);
    lse[n] = l;
    int t = targets[n];
    if (t == ignore) losses[n] = 0.f;
    else if (t < 0 || t >= V) {
      losses[n] = __int_as_float(0x7fffffff);
      sr_report_index_error(err, 2, n, t, V);
    } else losses[n] = l - ld_as_float(logits, ldt, base + t);
  }
}

__global__ void cross_entropy_backward_kernel1(void *dlogits, int ddt, const float *dlosses, const void *logits, int ldt,
                                               const int *targets, const float *lse, int64_t V, int ignore,
                                               int64_t dls) {
  int64_t n = blockIdx.x, base = n * V;
  int t = targets[n];
  float dl = dlosses[n * dls], l = lse[n];
  if (t == ignore) {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) st_from_float(dlogits, ddt, base + c, 0.f);
    return;
  }
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    float p = __expf(ld_as_float(logits, ldt, base + c) - l);
    st_from_float(dlogits, ddt, base + c, dl * (p - (c == t ? 1.f : 0.f)));
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

extern "C" const char *sr_cuda_cross_entropy(const sr_kcall *c) {
  sr_tensor *losses = c->t[0], *lse = c->t[1], *logits = c->t[2], *tg = c->t[3];
  if (logits->dtype != SR_F32 && logits->dtype != SR_BF16) return sr_errf("logits must be f32 or bf16 on cuda");
  if (losses->dtype != SR_F32 || lse->dtype != SR_F32 || tg->dtype != SR_I32)
    return sr_errf("losses and lse must be f32, targets i32");
  int64_t V = logits->shape[logits->ndim - 1], N = V ? kn_numel(logits) / V : 0;
  if (N == 0) return NULL;
  cross_entropy_forward_kernel1<<<(unsigned)N, 512, 0, (cudaStream_t)sr_cuda_stream()>>>(
      (float *)kn_data(losses), (float *)kn_data(lse), kn_data(logits), logits->dtype, (const int *)kn_data(tg), V,
      (int)c->i[0], sr_cuda_dev_error());
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_cross_entropy_backward(const sr_kcall *c) {
  sr_tensor *dl = c->t[0], *dlosses = c->t[1], *logits = c->t[2], *tg = c->t[3], *lse = c->t[4];
  if ((logits->dtype != SR_F32 && logits->dtype != SR_BF16) || (dl->dtype != SR_F32 && dl->dtype != SR_BF16))
    return sr_errf("logits and dlogits must be f32 or bf16 on cuda");
  if (dlosses->dtype != SR_F32 || lse->dtype != SR_F32 || tg->dtype != SR_I32)
    return sr_errf("dlosses and lse must be f32, targets i32");
  int64_t V = logits->shape[logits->ndim - 1], N = V ? kn_numel(logits) / V : 0;
  if (N == 0) return NULL;
  cross_entropy_backward_kernel1<<<(unsigned)N, 512, 0, (cudaStream_t)sr_cuda_stream()>>>(
      kn_data(dl), dl->dtype, (const float *)kn_data(dlosses), kn_data(logits), logits->dtype, (const int *)kn_data(tg),
      (const float *)kn_data(lse), V, (int)c->i[0], dlosses->ndim ? dlosses->stride[dlosses->ndim - 1] : 0);
  SR_LAUNCH_CHECK();
  return NULL;
}
