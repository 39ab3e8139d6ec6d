/*
** softmax_xent.cu: cross-entropy over the rows of logits [N,V] without materialising the
** probabilities; a block per row. Forward: an online max/sum over the row gives lse[N] (f32)
** and losses[N] = lse - logit[target] (0 on ignore_index rows); given dlogits, the same kernel
** then writes dlogits = dscale * (exp(logit - lse) - onehot(target)) (0 on ignored rows), the
** row's second read coming from L2, so a training step reads the logits from memory once
** (dlogits may be the logits buffer itself). Backward: the same gradient from logits and lse
** with a per-row (or broadcast, stride 0) dloss, also allowed in place.
** Rows are read 16 bytes at a time when V and the row strides are multiples of 8 and the
** buffers 16-byte aligned (the padded-vocabulary case), else one element at a time.
** A target outside [0,V) (other than ignore_index) gives a NaN loss and is reported through the
** deferred error record at the next synchronize (cuda/backend.h).
** Gradient contract: dlogits is written (=).
*/
#include "common.cuh"  // defines: ld8, st8, to_f, from_f, block_sum, block_max, sr_report_index_error

// ----------------------------------------------------------------------------
// CUDA kernels

// online max/exp-sum over one row x[0..V) by the block: returns lse (every thread)
template <typename T>
__device__ float row_lse(const T *x, int64_t V, bool vec, float *sh) {
  float m = -INFINITY, s = 0.f;
  if (vec) {
    for (int64_t i = threadIdx.x; i < V / 8; i += blockDim.x) {
      float f[8];
      ld8(x, i, f);
      float mx = f[0];
#pragma unroll
      for (int k = 1; k < 8; k++) mx = fmaxf(mx, f[k]);
      if (mx > m) { s *= __expf(m - mx); m = mx; }
#pragma unroll
      for (int k = 0; k < 8; k++) s += __expf(f[k] - m);
    }
  } else {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
      float v = to_f(x[c]);
      if (v > m) { s = s * __expf(m - v) + 1.f; m = v; }
      else s += __expf(v - m);
    }
  }
  float M = block_max(m, sh);
  s = m == -INFINITY ? 0.f : s * __expf(m - M);
  float S = block_sum(s, sh);
  return M + logf(S);
}

// d[c] = dl * (exp(x[c] - l) - (c == t)) over the row; 0 when ignored. Each element is read and
// written by the same thread, so d may be x.
template <typename T>
__device__ void row_grad(T *d, const T *x, int64_t V, int t, bool ignored, float l, float dl, bool vec) {
  if (vec) {
    for (int64_t i = threadIdx.x; i < V / 8; i += blockDim.x) {
      float f[8];
      ld8(x, i, f);
#pragma unroll
      for (int k = 0; k < 8; k++) f[k] = ignored ? 0.f : dl * (__expf(f[k] - l) - (8 * i + k == t ? 1.f : 0.f));
      st8(d, i, f);
    }
  } else {
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x)
      d[c] = from_f<T>(ignored ? 0.f : dl * (__expf(to_f(x[c]) - l) - (c == t ? 1.f : 0.f)));
  }
}

// dlogits: NULL for the loss only; dscale: NULL for 1
template <typename T>
__global__ void cross_entropy_forward_kernel2(float *losses, float *lse, const T *logits, const int *targets, int64_t V,
                                              int64_t ld, int ignore, sr_dev_error *err, T *dlogits, int64_t dld,
                                              const float *dscale, bool vec) {
  __shared__ float sh[32];
  int64_t n = blockIdx.x;
  const T *x = logits + n * ld;
  float l = row_lse(x, V, vec, sh);
  int t = targets[n];
  bool ignored = t == ignore, bad = !ignored && (t < 0 || t >= V);
  if (threadIdx.x == 0) {
    lse[n] = l;
    if (ignored) losses[n] = 0.f;
    else if (bad) {
      losses[n] = __int_as_float(0x7fffffff);
      sr_report_index_error(err, 2, n, t, V);
    } else losses[n] = l - to_f(x[t]);
  }
  if (!dlogits) return;
  __syncthreads();  // the target's logit is read before the gradient may overwrite it
  row_grad(dlogits + n * dld, x, V, t, ignored || bad, l, dscale ? *dscale : 1.f, vec);
}

template <typename T>
__global__ void cross_entropy_backward_kernel2(T *dlogits, const float *dlosses, const T *logits, const int *targets,
                                               const float *lse, int64_t V, int ignore, int64_t dls, int64_t ld,
                                               int64_t dld, bool vec) {
  int64_t n = blockIdx.x;
  int t = targets[n];
  row_grad(dlogits + n * dld, logits + n * ld, V, t, t == ignore, lse[n], dlosses[n * dls], vec);
}

// ----------------------------------------------------------------------------
// kernel launchers

// row stride of a [N,V] view with unit stride in V (rows may be padded, e.g. a vocabulary
// padded to a multiple of 128 for the lm_head matmul); -1 if the layout is not supported
static int64_t row_ld(const sr_tensor *x) {
  int nd = x->ndim;
  int64_t V = x->shape[nd - 1];
  if (x->stride[nd - 1] != 1 && V != 1) return -1;
  if (nd == 1) return V;
  int64_t ld = x->stride[nd - 2];
  for (int k = nd - 3; k >= 0; k--)  // leading dims must nest: stride[k] == stride[k+1]*shape[k+1]
    if (x->shape[k] != 1 && x->stride[k] != x->stride[k + 1] * x->shape[k + 1]) return -1;
  return ld < V ? -1 : ld;
}

// 16-byte rows: V and the row strides multiples of 8 elements, the buffers 16-byte aligned
static bool rows_vec(int64_t V, int64_t ld, const void *p, int64_t dld, const void *q) {
  return V % 8 == 0 && ld % 8 == 0 && (uintptr_t)p % 16 == 0 && (!q || (dld % 8 == 0 && (uintptr_t)q % 16 == 0));
}

extern "C" const char *sr_cuda_cross_entropy(const sr_kcall *c) {
  sr_tensor *losses = c->t[0], *lse = c->t[1], *logits = c->t[2], *tg = c->t[3], *dlg = c->nt > 4 ? c->t[4] : NULL;
  sr_tensor *ds = c->nt > 5 ? c->t[5] : NULL;
  if (logits->dtype != SR_F32 && logits->dtype != SR_BF16) return sr_errf("logits must be f32 or bf16 on cuda");
  if (losses->dtype != SR_F32 || lse->dtype != SR_F32 || tg->dtype != SR_I32)
    return sr_errf("losses and lse must be f32, targets i32");
  if (dlg && dlg->dtype != logits->dtype) return sr_errf("dlogits must have the logits' dtype on cuda");
  if (ds && (ds->dtype != SR_F32 || sr_numel(ds) != 1)) return sr_errf("dscale must be one f32 element");
  int64_t V = logits->shape[logits->ndim - 1], N = V ? sr_numel(logits) / V : 0;
  if (N == 0) return NULL;
  int64_t ld = row_ld(logits), dld = dlg ? row_ld(dlg) : 0;
  if (ld < 0 || dld < 0) return sr_errf("logits and dlogits must be [N,V] rows with unit stride in V");
  bool vec = rows_vec(V, ld, sr_data(logits), dld, dlg ? sr_data(dlg) : NULL);
  cudaStream_t st = (cudaStream_t)sr_cuda_stream();
  float *lo = (float *)sr_data(losses), *ls = (float *)sr_data(lse);
  const int *t = (const int *)sr_data(tg);
  const float *dsp = ds ? (const float *)sr_data(ds) : NULL;
  if (logits->dtype == SR_BF16)
    cross_entropy_forward_kernel2<bf16><<<(unsigned)N, 512, 0, st>>>(lo, ls, (const bf16 *)sr_data(logits), t, V, ld, (int)c->i[0],
        sr_cuda_dev_error(), dlg ? (bf16 *)sr_data(dlg) : NULL, dld, dsp, vec);
  else
    cross_entropy_forward_kernel2<float><<<(unsigned)N, 512, 0, st>>>(lo, ls, (const float *)sr_data(logits), t, V, ld, (int)c->i[0],
        sr_cuda_dev_error(), dlg ? (float *)sr_data(dlg) : NULL, dld, dsp, vec);
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_cross_entropy_backward(const sr_kcall *c) {
  sr_tensor *dl = c->t[0], *dlosses = c->t[1], *logits = c->t[2], *tg = c->t[3], *lse = c->t[4];
  if (logits->dtype != SR_F32 && logits->dtype != SR_BF16) return sr_errf("logits must be f32 or bf16 on cuda");
  if (dl->dtype != logits->dtype) return sr_errf("dlogits must have the logits' dtype on cuda");
  if (dlosses->dtype != SR_F32 || lse->dtype != SR_F32 || tg->dtype != SR_I32)
    return sr_errf("dlosses and lse must be f32, targets i32");
  int64_t V = logits->shape[logits->ndim - 1], N = V ? sr_numel(logits) / V : 0;
  if (N == 0) return NULL;
  int64_t ld = row_ld(logits), dld = row_ld(dl);
  if (ld < 0 || dld < 0) return sr_errf("logits and dlogits must be [N,V] rows with unit stride in V");
  bool vec = rows_vec(V, ld, sr_data(logits), dld, sr_data(dl));
  int64_t dls = dlosses->ndim ? dlosses->stride[dlosses->ndim - 1] : 0;
  cudaStream_t st = (cudaStream_t)sr_cuda_stream();
  const float *dlp = (const float *)sr_data(dlosses), *lsp = (const float *)sr_data(lse);
  const int *t = (const int *)sr_data(tg);
  if (logits->dtype == SR_BF16)
    cross_entropy_backward_kernel2<bf16><<<(unsigned)N, 512, 0, st>>>((bf16 *)sr_data(dl), dlp, (const bf16 *)sr_data(logits), t,
        lsp, V, (int)c->i[0], dls, ld, dld, vec);
  else
    cross_entropy_backward_kernel2<float><<<(unsigned)N, 512, 0, st>>>((float *)sr_data(dl), dlp, (const float *)sr_data(logits), t,
        lsp, V, (int)c->i[0], dls, ld, dld, vec);
  SR_LAUNCH_CHECK();
  return NULL;
}
