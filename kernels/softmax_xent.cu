/*
** softmax_xent.cu: cross-entropy over the rows of logits [N,V] without materialising the
** probabilities; a block per row. Forward: max/exp-sum over the row gives lse[N] (f32) and
** losses[N] = lse - logit[target] (0 on ignore_index rows); given dlogits, the same kernel then
** writes dlogits = dscale * (exp(logit - lse) - onehot(target)) (0 on ignored rows), so a
** training step reads the logits from memory once (dlogits may be the logits buffer itself).
** Backward: the same gradient from logits and lse with a per-row (or broadcast, stride 0) dloss,
** also allowed in place.
**
** Kernel 3 (the default) reads every row 16 bytes at a time whatever V, the row stride and the
** alignment: a row is split at 16-byte boundaries into a head (fewer than 16 bytes, read element
** by element), 16-byte vectors, and a tail. With dlogits, the forward keeps the row in shared
** memory as it reads it (max and exp-sum computed on the way) and writes the gradient from there:
** the row crosses DRAM once each way, 2 x 2 bytes an element for bf16. A bf16 row of the GPT-2
** vocabulary (50,257 or 50,304 elements: 100 KB) fits twice in an SM (2 blocks of 512 threads),
** an f32 row once (a block of 1024 threads); longer rows are read a second time for the gradient
** (from L2 if it still holds them). Exps are exp2 of pre-scaled logits (an FFMA and a MUFU an
** element). bench/xent.lua times it against the bytes moved; bench/xent_anchor.py is PyTorch's.
** SR_XENT_V2=1 selects the previous kernels (kernel 2: 16-byte accesses only when V and the
** strides are multiples of 8 and the buffers aligned, else one element at a time; the gradient's
** second read from L2), for A/B timing.
** A target outside [0,V) (other than ignore_index) gives a NaN loss and is reported through the
** deferred error record at the next synchronize (cuda/backend.h).
** Gradient contract: dlogits is written (=).
*/
#include <limits.h>    // defines: INT_MAX

#include "common.cuh"  // defines: ld8, st8, to_f, from_f, block_sum, block_max, sr_report_index_error
#include "include/speedrun_xent.cuh"  // defines: xent_vec, xent_split, xent_edge, xent_acc1, xent_acc

#define XENT_UNROLL 4  // kernel 3: 16-byte loads in flight per thread

// ----------------------------------------------------------------------------
// CUDA kernels

// 16 bytes: streamed (read once: evict first) or a plain load (read again soon, maybe after a
// write by this kernel, so never through the non-coherent path)
template <bool STREAM>
__device__ __forceinline__ uint4 xent_ld(const uint4 *p) {
  if (STREAM) return __ldcs(p);
  return *p;
}

// lse of the row x[0..V) by the block (every thread gets it); CACHE: the row is also stored in
// sm. Contains __syncthreads (after the row's last read and store).
template <typename T, int NT, bool CACHE, bool STREAM>
__device__ float xent_row_lse(const T *x, int V, uint4 *sm, float *red) {
  using X = xent_vec<T>;
  constexpr int N = X::N;
  const xent_row g = xent_split(x, V);
  const uint4 *xv = (const uint4 *)(x + g.head);
  uint4 *sv = sm + (g.mis ? 1 : 0);
  float m = -INFINITY, s = 0.f;
  if (threadIdx.x < g.head + V - g.tail0) {
    const int j = xent_edge(g, threadIdx.x);
    const T v = x[j];
    if (CACHE) ((T *)sm)[g.mis + j] = v;
    xent_acc1(m, s, to_f(v));
  }
  for (int k0 = threadIdx.x; k0 < g.nv; k0 += NT * XENT_UNROLL) {
    uint4 v[XENT_UNROLL];
#pragma unroll
    for (int u = 0; u < XENT_UNROLL; u++)
      if (k0 + u * NT < g.nv) v[u] = xent_ld<STREAM>(xv + k0 + u * NT);
#pragma unroll
    for (int u = 0; u < XENT_UNROLL; u++)
      if (k0 + u * NT < g.nv) {
        if (CACHE) sv[k0 + u * NT] = v[u];
        float f[N];
        X::unpack(v[u], f);
        xent_acc<N>(m, s, f);
      }
  }
  const float M = block_max(m, red);
  s = m == -INFINITY ? 0.f : s * exp2f((m - M) * XENT_LOG2E);
  return M + logf(block_sum(s, red));
}

// d[j] = dl * (exp(x[j] - l) - (j == t)) over the row, 0 where zero; x[j] from sm when CACHE
// (stored by xent_row_lse, a __syncthreads ago). Each element is read and written by one thread,
// so d may be x. d in x's 16-byte phase (always in place) goes by vectors, else by elements.
template <typename T, int NT, bool CACHE>
__device__ void xent_row_grad(T *d, const T *x, const uint4 *sm, int V, int t, float l, float dl, bool zero) {
  using X = xent_vec<T>;
  constexpr int N = X::N;
  const xent_row g = xent_split(x, V);
  const float lL = l * XENT_LOG2E;
  const T *se = CACHE ? (const T *)sm + g.mis : NULL;  // CACHE: element j at se[j]
  if (xent_split(d, V).mis != g.mis) {
    for (int j = threadIdx.x; j < V; j += NT) {
      const float p = exp2f(fmaf(to_f(CACHE ? se[j] : x[j]), XENT_LOG2E, -lL));
      d[j] = from_f<T>(zero ? 0.f : fmaf(dl, p, j == t ? -dl : 0.f));
    }
    return;
  }
  if (threadIdx.x < g.head + V - g.tail0) {
    const int j = xent_edge(g, threadIdx.x);
    const float p = exp2f(fmaf(to_f(CACHE ? se[j] : x[j]), XENT_LOG2E, -lL));
    d[j] = from_f<T>(zero ? 0.f : fmaf(dl, p, j == t ? -dl : 0.f));
  }
  const uint4 *xv = (const uint4 *)(x + g.head), *sv = CACHE ? sm + (g.mis ? 1 : 0) : NULL;
  uint4 *dv = (uint4 *)(d + g.head);
  for (int k0 = threadIdx.x; k0 < g.nv; k0 += NT * XENT_UNROLL) {
    uint4 v[XENT_UNROLL];
#pragma unroll
    for (int u = 0; u < XENT_UNROLL; u++)
      if (k0 + u * NT < g.nv) v[u] = CACHE ? sv[k0 + u * NT] : xent_ld<true>(xv + k0 + u * NT);
#pragma unroll
    for (int u = 0; u < XENT_UNROLL; u++)
      if (k0 + u * NT < g.nv) {
        const int k = k0 + u * NT, j0 = g.head + k * N;
        float f[N];
        X::unpack(v[u], f);
        if (!zero && (unsigned)(t - j0) < (unsigned)N) {  // the target's vector
#pragma unroll
          for (int i = 0; i < N; i++) f[i] = fmaf(dl, exp2f(fmaf(f[i], XENT_LOG2E, -lL)), j0 + i == t ? -dl : 0.f);
        } else {
#pragma unroll
          for (int i = 0; i < N; i++) f[i] = zero ? 0.f : dl * exp2f(fmaf(f[i], XENT_LOG2E, -lL));
        }
        dv[k] = X::pack(f);
      }
  }
}

// a block of NT threads per row. GRAD: also dlogits (dscale NULL for 1); CACHE: the row kept in
// dynamic shared memory (V + 2 vectors' worth of T) between the lse and the gradient, else
// read again. The target's logit is read before any thread may overwrite it (the block
// reductions order it before the gradient's writes).
template <typename T, int NT, bool GRAD, bool CACHE>
__global__ void __launch_bounds__(NT, 1024 / NT)
    cross_entropy_forward_kernel3(float *losses, float *lse, const T *logits, const int *targets, int V, int64_t ld,
                                  int ignore, sr_dev_error *err, T *dlogits, int64_t dld, const float *dscale) {
  extern __shared__ uint4 xent_sm[];
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const T *x = logits + n * ld;
  const int t = targets[n];
  const bool ignored = t == ignore, bad = !ignored && (t < 0 || t >= V);
  float xt = 0.f;
  if (threadIdx.x == 0 && !ignored && !bad) xt = to_f(x[t]);
  const float l = xent_row_lse<T, NT, CACHE, CACHE || !GRAD>(x, V, xent_sm, red);
  if (threadIdx.x == 0) {
    lse[n] = l;
    if (ignored) losses[n] = 0.f;
    else if (bad) {
      losses[n] = __int_as_float(0x7fffffff);
      sr_report_index_error(err, 2, n, t, V);
    } else losses[n] = l - xt;
  }
  if (!GRAD) return;
  const bool zero = ignored || bad;
  xent_row_grad<T, NT, CACHE>(dlogits + n * dld, x, xent_sm, V, t, l, zero ? 0.f : (dscale ? *dscale : 1.f), zero);
}

template <typename T, int NT>
__global__ void __launch_bounds__(NT, 1024 / NT)
    cross_entropy_backward_kernel3(T *dlogits, const float *dlosses, const T *logits, const int *targets,
                                   const float *lse, int V, int ignore, int64_t dls, int64_t ld, int64_t dld) {
  const int64_t n = blockIdx.x;
  const int t = targets[n];
  const bool zero = t == ignore;
  xent_row_grad<T, NT, false>(dlogits + n * dld, logits + n * ld, NULL, V, t, lse[n], zero ? 0.f : dlosses[n * dls],
                              zero);
}

// ----------------------------------------------------------------------------
// kernel 2 (SR_XENT_V2=1)

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

// kernel 2's 16-byte rows: V and the row strides multiples of 8 elements, the buffers 16-byte aligned
static bool rows_vec(int64_t V, int64_t ld, const void *p, int64_t dld, const void *q) {
  return V % 8 == 0 && ld % 8 == 0 && (uintptr_t)p % 16 == 0 && (!q || (dld % 8 == 0 && (uintptr_t)q % 16 == 0));
}

static bool xent_v2(void) {  // SR_XENT_V2=1 forces kernel 2 (A/B)
  static int v = -1;
  return sr_env_is(&v, "SR_XENT_V2", "1");
}

// the device's shared memory: the most one block may opt in to, and an SM's total
static const char *xent_smem_limits(int *per_block, int *per_sm) {
  static int pb = -1, ps = -1;
  if (pb < 0) {
    int dev, b, s;
    SR_CUDA_TRY(cudaGetDevice(&dev));
    SR_CUDA_TRY(cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    SR_CUDA_TRY(cudaDeviceGetAttribute(&s, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    pb = b;
    ps = s;
  }
  *per_block = pb;
  *per_sm = ps;
  return NULL;
}

// one launch of kernel 3's forward; a cached row gets `smem` bytes of dynamic shared memory and
// the carveout at its largest, so that as many rows as fit share an SM
template <typename T, int NT, bool GRAD, bool CACHE>
static const char *xent_launch3(int64_t N, size_t smem, cudaStream_t st, float *lo, float *ls, const T *x,
                                const int *t, int V, int64_t ld, int ignore, T *d, int64_t dld, const float *dsp) {
  void (*k)(float *, float *, const T *, const int *, int, int64_t, int, sr_dev_error *, T *, int64_t, const float *) =
      cross_entropy_forward_kernel3<T, NT, GRAD, CACHE>;
  if (CACHE) {
    SR_CUDA_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    SR_CUDA_TRY(cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, (int)cudaSharedmemCarveoutMaxShared));
  }
  k<<<(unsigned)N, NT, CACHE ? smem : 0, st>>>(lo, ls, x, t, V, ld, ignore, sr_cuda_dev_error(), d, dld, dsp);
  SR_LAUNCH_CHECK();
  return NULL;
}

// kernel 3's forward with dlogits: the row cached when it fits twice in an SM's shared memory
// (bf16 up to ~56K elements on an H100/H200): 512 threads and two rows an SM (*cache 1); once:
// 1024 threads and one row; longer rows, 512 threads reading the row twice (*cache 0). *smem:
// the cached row's bytes. Returns the threads, or 0 and the error in *err.
static int xent_grad_plan(int64_t V, size_t elem, bool *cache, size_t *smem, const char **err) {
  int per_block, per_sm;
  if ((*err = xent_smem_limits(&per_block, &per_sm))) return 0;
  *smem = CEIL_DIV((size_t)(V + 2 * (16 / elem)) * elem, (size_t)16) * 16;
  const size_t stat = 32 * sizeof(float) + 1024;  // the block's static shared memory and the 1 KB the system keeps
  *cache = *smem + stat <= (size_t)per_block;
  if (*cache && 2 * (*smem + stat) <= (size_t)per_sm) return 512;
  return *cache ? 1024 : 512;
}

// the threads a row of the in-place forward gets, and the shared memory it asks for: the step
// compiler's loss kernels (host/jit/fuse_cuda.c) walk rows with as many threads, so they reduce in
// the same order, and ask for as much, so as many rows are in flight an SM; 0 on error
extern "C" int sr_cuda_xent_threads(int64_t V, int elem_bytes, size_t *smem) {
  bool cache;
  const char *err;
  int nt = xent_grad_plan(V, (size_t)elem_bytes, &cache, smem, &err);
  if (!cache) *smem = 0;
  return nt;
}

// kernel 3's forward: without dlogits, 512 threads streaming the row; with dlogits, as
// xent_grad_plan says
template <typename T>
static const char *xent_forward3(int64_t N, float *lo, float *ls, const T *x, const int *t, int V, int64_t ld,
                                 int ignore, T *d, int64_t dld, const float *dsp, cudaStream_t st) {
  if (!d) return xent_launch3<T, 512, false, false>(N, 0, st, lo, ls, x, t, V, ld, ignore, d, dld, dsp);
  bool cache;
  size_t smem;
  const char *e;
  int nt = xent_grad_plan(V, sizeof(T), &cache, &smem, &e);
  if (!nt) return e;
  if (cache && nt == 512) return xent_launch3<T, 512, true, true>(N, smem, st, lo, ls, x, t, V, ld, ignore, d, dld, dsp);
  if (cache) return xent_launch3<T, 1024, true, true>(N, smem, st, lo, ls, x, t, V, ld, ignore, d, dld, dsp);
  return xent_launch3<T, 512, true, false>(N, 0, st, lo, ls, x, t, V, ld, ignore, d, dld, dsp);
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
  if (V > INT_MAX / 2) return sr_errf("rows of %lld elements are too long", (long long)V);
  int64_t ld = row_ld(logits), dld = dlg ? row_ld(dlg) : 0;
  if (ld < 0 || dld < 0) return sr_errf("logits and dlogits must be [N,V] rows with unit stride in V");
  cudaStream_t st = (cudaStream_t)sr_cuda_stream();
  float *lo = (float *)sr_data(losses), *ls = (float *)sr_data(lse);
  const int *t = (const int *)sr_data(tg);
  const float *dsp = ds ? (const float *)sr_data(ds) : NULL;
  if (!xent_v2()) {
    if (logits->dtype == SR_BF16)
      return xent_forward3<bf16>(N, lo, ls, (const bf16 *)sr_data(logits), t, (int)V, ld, (int)c->i[0],
                                 dlg ? (bf16 *)sr_data(dlg) : NULL, dld, dsp, st);
    return xent_forward3<float>(N, lo, ls, (const float *)sr_data(logits), t, (int)V, ld, (int)c->i[0],
                                dlg ? (float *)sr_data(dlg) : NULL, dld, dsp, st);
  }
  bool vec = rows_vec(V, ld, sr_data(logits), dld, dlg ? sr_data(dlg) : NULL);
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
  if (V > INT_MAX / 2) return sr_errf("rows of %lld elements are too long", (long long)V);
  int64_t ld = row_ld(logits), dld = row_ld(dl);
  if (ld < 0 || dld < 0) return sr_errf("logits and dlogits must be [N,V] rows with unit stride in V");
  int64_t dls = dlosses->ndim ? dlosses->stride[dlosses->ndim - 1] : 0;
  cudaStream_t st = (cudaStream_t)sr_cuda_stream();
  const float *dlp = (const float *)sr_data(dlosses), *lsp = (const float *)sr_data(lse);
  const int *t = (const int *)sr_data(tg);
  int ig = (int)c->i[0];
  if (!xent_v2()) {  // one streaming pass: 512 threads a row, rows from several blocks in flight on an SM
    if (logits->dtype == SR_BF16)
      cross_entropy_backward_kernel3<bf16, 512><<<(unsigned)N, 512, 0, st>>>((bf16 *)sr_data(dl), dlp,
          (const bf16 *)sr_data(logits), t, lsp, (int)V, ig, dls, ld, dld);
    else
      cross_entropy_backward_kernel3<float, 512><<<(unsigned)N, 512, 0, st>>>((float *)sr_data(dl), dlp,
          (const float *)sr_data(logits), t, lsp, (int)V, ig, dls, ld, dld);
    SR_LAUNCH_CHECK();
    return NULL;
  }
  bool vec = rows_vec(V, ld, sr_data(logits), dld, sr_data(dl));
  if (logits->dtype == SR_BF16)
    cross_entropy_backward_kernel2<bf16><<<(unsigned)N, 512, 0, st>>>((bf16 *)sr_data(dl), dlp, (const bf16 *)sr_data(logits), t,
        lsp, V, ig, dls, ld, dld, vec);
  else
    cross_entropy_backward_kernel2<float><<<(unsigned)N, 512, 0, st>>>((float *)sr_data(dl), dlp, (const float *)sr_data(logits), t,
        lsp, V, ig, dls, ld, dld, vec);
  SR_LAUNCH_CHECK();
  return NULL;
}
