/*
** sort.cu: argsort, the stable order of each row of a contiguous [R, N] tensor as int32 indices
** (host/cpu/sort.c is the reference), by CUB's segmented radix sort of (key, index) pairs: one
** segment per row, ascending or descending, stable (equal keys keep their index order), floats
** with -0.0 == +0.0 and a NaN by its bits. No host synchronisation: capturable in a CUDA graph.
** Scratch (sorted keys, the index sequence, row offsets, CUB's temporary storage) comes from the
** stream-ordered caching allocator.
*/
#include <cub/device/device_segmented_radix_sort.cuh>  // defines: cub::DeviceSegmentedRadixSort

#include "common.cuh"  // defines: bf16, sr_errf, SR_CUDA_TRY, SR_LAUNCH_CHECK, sr_grid_for

// ----------------------------------------------------------------------------
// CUDA kernels

// idx[i] = i mod n (each row's positions); off[r] = r * n for r in [0, R]
__global__ void argsort_init_kernel1(int32_t *idx, int32_t *off, int64_t total, int64_t n, int64_t R) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < total) idx[i] = (int32_t)(i % n);
  if (i <= R) off[i] = (int32_t)(i * n);
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename K>
static const char *argsort_run(int32_t *out, const K *keys, int64_t n, int64_t R, bool desc) {
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int64_t total = n * R;
  K *keys_out = (K *)sr_cuda_malloc((size_t)total * sizeof(K));
  int32_t *idx = (int32_t *)sr_cuda_malloc((size_t)total * sizeof(int32_t));
  int32_t *off = (int32_t *)sr_cuda_malloc((size_t)(R + 1) * sizeof(int32_t));
  void *tmp = NULL;
  const char *err = NULL;
  if (!keys_out || !idx || !off) { err = sr_errf("out of memory (argsort scratch)"); goto done; }
  {
    int64_t m = total > R + 1 ? total : R + 1;
    argsort_init_kernel1<<<sr_grid_for(m, 256), 256, 0, s>>>(idx, off, total, n, R);
    cudaError_t ce = cudaGetLastError();
    size_t bytes = 0;
    for (int pass = 0; pass < 2 && ce == cudaSuccess; pass++) {  // the size, then the sort
      if (pass == 1 && !(tmp = sr_cuda_malloc(bytes ? bytes : 1))) { err = sr_errf("out of memory (argsort scratch)"); goto done; }
      ce = desc ? cub::DeviceSegmentedRadixSort::SortPairsDescending(tmp, bytes, keys, keys_out, idx, out, (int)total, (int)R,
                                                                     off, off + 1, 0, (int)(sizeof(K) * 8), s)
                : cub::DeviceSegmentedRadixSort::SortPairs(tmp, bytes, keys, keys_out, idx, out, (int)total, (int)R, off, off + 1,
                                                           0, (int)(sizeof(K) * 8), s);
    }
    if (ce != cudaSuccess) err = sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
done:
  // stream-ordered: the caching allocator hands these out again only after the sort
  sr_cuda_free(tmp);
  sr_cuda_free(off);
  sr_cuda_free(idx);
  sr_cuda_free(keys_out);
  return err;
}

extern "C" const char *sr_cuda_argsort(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  if (out->dtype != SR_I32) return sr_errf("out must be int32");
  if (!sr_is_contiguous(out) || !sr_is_contiguous(x) || sr_numel(out) != sr_numel(x))
    return sr_errf("out and x must be contiguous, same size");
  int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, R = n ? sr_numel(x) / n : 0;
  if (R == 0) return NULL;
  if (n * R > 0x7fffffff) return sr_errf("more than 2^31 - 1 elements to sort on cuda");
  int32_t *o = (int32_t *)sr_data(out);
  bool desc = c->i[0] != 0;
  switch (x->dtype) {
    case SR_F32: return argsort_run(o, (const float *)sr_data(x), n, R, desc);
    case SR_BF16: return argsort_run(o, (const __nv_bfloat16 *)sr_data(x), n, R, desc);
    case SR_I32: return argsort_run(o, (const int32_t *)sr_data(x), n, R, desc);
    default: return sr_errf("dtype %s is not supported on cuda (f32, bf16, i32)", sr_dtype_name(x->dtype));
  }
}
