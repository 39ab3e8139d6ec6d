/*
** flex_mask.cu: flex attention's block masks built on cuda (the mask's layout: host/core/flex.h; the
** CPU reference: host/cpu/attention.c; the attention over them: kernels/flex_attention.cu).
**
** From components (flex_block_mask): per-block doc id min/max (a thread per block), the class of
** every block pair (a thread per pair, sr_flex_class: the same function as the CPU), then ordered
** compaction (a thread block per row for the kv lists, per column for their transposes: warp
** ballots and a running offset, so the lists come out ascending, bit-identical to the CPU's). From
** lists (flex_block_mask_lists): the classes are scattered from them (full first, partial over it;
** entries out of range ignored), then the same compaction. window_blocks may be a device int32, read
** by the class kernel: no host read, graph-capturable.
*/
#include <limits.h>  // defines: INT_MAX, INT_MIN

#include "common.cuh"       // defines: bf16, SR_CUDA_TRY, CEIL_DIV, sr_errf
#include "core/flex.h"      // defines: sr_flex_class, sr_flex_count_at, sr_flex_index_at, sr_flex_doc_at
#include "flex_common.cuh"  // defines: flex_mask_dims

// ----------------------------------------------------------------------------
// CUDA kernels: block-mask build

// doc ids (or zeros) into the mask; per-block min and max into lo, hi (when doc)
__global__ void flex_docs_kernel1(int32_t *bm, int32_t *lo, int32_t *hi, const int32_t *doc, int64_t nb, int bs) {
  int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (b >= nb) return;
  int32_t *d = bm + sr_flex_doc_at(nb) + b * bs;
  int32_t mn = INT_MAX, mx = INT_MIN;
  for (int t = 0; t < bs; t++) {
    int32_t x = doc ? doc[b * bs + t] : 0;
    d[t] = x;
    mn = min(mn, x);
    mx = max(mx, x);
  }
  if (lo) { lo[b] = mn; hi[b] = mx; }
}

// the class of every block pair; wbt (a device int32, or NULL for wb) is clamped to >= 1; wt (a
// device int32, or NULL for window) is the window in tokens
__global__ void flex_class_kernel1(uint8_t *cls, const int32_t *lo, const int32_t *hi, int64_t nb, int bs, int causal,
                                   int64_t window, const int32_t *wt, int64_t wb, const int32_t *wbt) {
  int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (x >= nb * nb) return;
  int64_t w = wbt ? max(1, *wbt) : wb;
  cls[x] = (uint8_t)sr_flex_class(x / nb, x % nb, bs, causal, wt ? (int64_t)*wt : window, w, lo, hi);
}

// the classes from lists: entries of num/idx rows set to val (1 partial, 2 full)
__global__ void flex_scatter_kernel1(uint8_t *cls, const int32_t *num, const int32_t *idx, int64_t nb, uint8_t val) {
  int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (x >= nb * nb) return;
  int64_t r = x / nb, e = x % nb;
  if (e >= num[r]) return;
  int32_t kb = idx[x];
  if (kb >= 0 && kb < nb) cls[r * nb + kb] = val;
}

// the lists of row r = blockIdx.x of the classes (transposed: of column r) in ascending order;
// unused entries 0. 256 threads.
__global__ void flex_compact_kernel1(int32_t *bm, const uint8_t *cls, int64_t nb, int transposed) {
  __shared__ int wsum[2][8], base[2];
  int64_t r = blockIdx.x;
  int lp = transposed ? SR_FLEX_Q : SR_FLEX_KV, lf = transposed ? SR_FLEX_FULL_Q : SR_FLEX_FULL_KV;
  int32_t *ip = bm + sr_flex_index_at(nb, lp) + r * nb, *iq = bm + sr_flex_index_at(nb, lf) + r * nb;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (threadIdx.x == 0) base[0] = base[1] = 0;
  __syncthreads();
  for (int64_t x0 = 0; x0 < nb; x0 += blockDim.x) {
    int64_t x = x0 + threadIdx.x;
    int c = x < nb ? cls[transposed ? x * nb + r : r * nb + x] : 0;
    unsigned bp = __ballot_sync(0xffffffffu, c == 1), bf = __ballot_sync(0xffffffffu, c == 2), lt = (1u << lane) - 1;
    if (lane == 0) { wsum[0][w] = __popc(bp); wsum[1][w] = __popc(bf); }
    __syncthreads();
    int op = base[0], of = base[1];
    for (int k = 0; k < w; k++) { op += wsum[0][k]; of += wsum[1][k]; }
    if (c == 1) ip[op + __popc(bp & lt)] = (int32_t)x;
    if (c == 2) iq[of + __popc(bf & lt)] = (int32_t)x;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int k = 0; k < (int)(blockDim.x >> 5); k++) { base[0] += wsum[0][k]; base[1] += wsum[1][k]; }
    __syncthreads();
  }
  int np = base[0], nf = base[1];
  for (int64_t x = threadIdx.x; x < nb; x += blockDim.x) {
    if (x >= np) ip[x] = 0;
    if (x >= nf) iq[x] = 0;
  }
  if (threadIdx.x == 0) { bm[sr_flex_count_at(nb, lp) + r] = np; bm[sr_flex_count_at(nb, lf) + r] = nf; }
}

// ----------------------------------------------------------------------------
// kernel launchers

// a count held on the device (the window, window_blocks): one int32
static bool one_i32(const sr_tensor *t) { return t->dtype == SR_I32 && sr_numel(t) == 1; }

static const char *doc_arg(const sr_tensor *doc, int64_t T) {
  if (doc && (doc->dtype != SR_I32 || sr_numel(doc) != T || !sr_is_contiguous(doc))) return sr_errf("doc ids must be contiguous int32 [T]");
  return NULL;
}

// the lists from the classes (cls: nb * nb bytes on the device); frees cls
static const char *build_lists(int32_t *bm, uint8_t *cls, int64_t nb, cudaStream_t s) {
  flex_compact_kernel1<<<(unsigned)nb, 256, 0, s>>>(bm, cls, nb, 0);
  cudaError_t ce = cudaGetLastError();
  if (ce == cudaSuccess) {
    flex_compact_kernel1<<<(unsigned)nb, 256, 0, s>>>(bm, cls, nb, 1);
    ce = cudaGetLastError();
  }
  sr_cuda_free(cls);
  return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
}

extern "C" const char *sr_cuda_flex_block_mask(const sr_kcall *c) {
  sr_tensor *bm = c->t[0], *doc = c->t[1], *wbt = c->t[2];
  int64_t nb;
  int bs;
  const char *e = flex_mask_dims(bm, &nb, &bs);
  if (!e) e = doc_arg(doc, nb * bs);
  if (e) return e;
  sr_tensor *wt = c->nt > 3 ? c->t[3] : NULL;
  if (wbt && !one_i32(wbt)) return sr_errf("window_blocks must be one int32");
  if (wt && !one_i32(wt)) return sr_errf("the window tensor must be one int32");
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  uint8_t *cls = (uint8_t *)sr_cuda_malloc((size_t)(nb * nb));
  int32_t *lo = doc ? (int32_t *)sr_cuda_malloc((size_t)nb * 2 * sizeof(int32_t)) : NULL;
  if (!cls || (doc && !lo)) {
    sr_cuda_free(cls);
    sr_cuda_free(lo);
    return sr_errf("out of memory (block mask scratch)");
  }
  int32_t *B = (int32_t *)sr_data(bm);
  flex_docs_kernel1<<<(unsigned)CEIL_DIV(nb, (int64_t)128), 128, 0, s>>>(B, lo, lo ? lo + nb : NULL,
      doc ? (const int32_t *)sr_data(doc) : NULL, nb, bs);
  cudaError_t ce = cudaGetLastError();
  if (ce == cudaSuccess) {
    flex_class_kernel1<<<(unsigned)CEIL_DIV(nb * nb, (int64_t)256), 256, 0, s>>>(cls, lo, lo ? lo + nb : NULL, nb, bs, (int)c->i[0],
        c->i[1], wt ? (const int32_t *)sr_data(wt) : NULL, c->i[2], wbt ? (const int32_t *)sr_data(wbt) : NULL);
    ce = cudaGetLastError();
  }
  sr_cuda_free(lo);  // stream-ordered: the caching allocator reuses it after these kernels
  if (ce != cudaSuccess) {
    sr_cuda_free(cls);
    return sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
  return build_lists(B, cls, nb, s);
}

extern "C" const char *sr_cuda_flex_block_mask_lists(const sr_kcall *c) {
  sr_tensor *bm = c->t[0], *doc = c->t[5];
  int64_t nb;
  int bs;
  const char *e = flex_mask_dims(bm, &nb, &bs);
  if (!e) e = doc_arg(doc, nb * bs);
  if (e) return e;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  uint8_t *cls = (uint8_t *)sr_cuda_malloc((size_t)(nb * nb));
  if (!cls) return sr_errf("out of memory (block mask scratch)");
  int32_t *B = (int32_t *)sr_data(bm);
  cudaError_t ce = cudaMemsetAsync(cls, 0, (size_t)(nb * nb), s);
  unsigned grid = (unsigned)CEIL_DIV(nb * nb, (int64_t)256);
  for (int l = 1; l >= 0 && ce == cudaSuccess; l--) {  // full first: partial overrides
    if (!c->t[1 + 2 * l]) continue;
    flex_scatter_kernel1<<<grid, 256, 0, s>>>(cls, (const int32_t *)sr_data(c->t[1 + 2 * l]), (const int32_t *)sr_data(c->t[2 + 2 * l]),
                                              nb, (uint8_t)(l ? 2 : 1));
    ce = cudaGetLastError();
  }
  if (ce == cudaSuccess) {
    flex_docs_kernel1<<<(unsigned)CEIL_DIV(nb, (int64_t)128), 128, 0, s>>>(B, NULL, NULL, doc ? (const int32_t *)sr_data(doc) : NULL, nb, bs);
    ce = cudaGetLastError();
  }
  if (ce != cudaSuccess) {
    sr_cuda_free(cls);
    return sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
  return build_lists(B, cls, nb, s);
}
