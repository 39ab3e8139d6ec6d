/*
** scan.cu: cumsum, inclusive prefix sums (or suffix sums: the backward) along the rows of a
** contiguous [R, N] tensor (host/cpu/scan.c is the reference). One block per row walks it in
** tiles of 2,048 elements: each thread sums its 8 consecutive elements, CUB's BlockScan gives each
** thread the sum before it, and the block's total carries into the next tile. Floats accumulate
** in f32 (bf16 rounded once per output), int32 in int32 (wrapping, as the reference).
*/
#include <cub/block/block_scan.cuh>  // defines: cub::BlockScan

#include "common.cuh"  // defines: bf16, to_f, from_f, sr_errf, SR_LAUNCH_CHECK

// ----------------------------------------------------------------------------
// CUDA kernels

constexpr int SCAN_THREADS = 256, SCAN_ITEMS = 8, SCAN_TILE = SCAN_THREADS * SCAN_ITEMS;

template <typename T> struct scan_acc { typedef float type; };
template <> struct scan_acc<int32_t> { typedef int32_t type; };
template <typename T> __device__ __forceinline__ typename scan_acc<T>::type scan_ld(T v) { return to_f<T>(v); }
template <> __device__ __forceinline__ int32_t scan_ld<int32_t>(int32_t v) { return v; }
template <typename T> __device__ __forceinline__ T scan_st(typename scan_acc<T>::type v) { return from_f<T>(v); }
template <> __device__ __forceinline__ int32_t scan_st<int32_t>(int32_t v) { return v; }

// row blockIdx.x of n elements; logical position j is element j (prefix) or n - 1 - j (suffix)
template <typename T>
__global__ void __launch_bounds__(SCAN_THREADS) cumsum_kernel1(T *out, const T *x, int64_t n, int reverse) {
  typedef typename scan_acc<T>::type A;
  typedef cub::BlockScan<A, SCAN_THREADS> Scan;
  __shared__ typename Scan::TempStorage tmp;
  const T *xr = x + blockIdx.x * n;
  T *orow = out + blockIdx.x * n;
  A carry = 0;
  for (int64_t t0 = 0; t0 < n; t0 += SCAN_TILE) {
    int64_t j0 = t0 + (int64_t)threadIdx.x * SCAN_ITEMS;
    A v[SCAN_ITEMS], sum = 0;
#pragma unroll
    for (int k = 0; k < SCAN_ITEMS; k++) {
      int64_t j = j0 + k;
      v[k] = j < n ? scan_ld<T>(xr[reverse ? n - 1 - j : j]) : A(0);
      sum += v[k];
      v[k] = sum;  // inclusive within the thread
    }
    A before, total;
    Scan(tmp).ExclusiveSum(sum, before, total);
    __syncthreads();  // tmp is reused by the next tile
#pragma unroll
    for (int k = 0; k < SCAN_ITEMS; k++) {
      int64_t j = j0 + k;
      if (j < n) orow[reverse ? n - 1 - j : j] = scan_st<T>(carry + before + v[k]);
    }
    carry += total;
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

extern "C" const char *sr_cuda_cumsum(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  if (out->dtype != x->dtype) return sr_errf("out and x must share one dtype");
  if (!sr_is_contiguous(out) || !sr_is_contiguous(x) || sr_numel(out) != sr_numel(x))
    return sr_errf("out and x must be contiguous, same size");
  int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, R = n ? sr_numel(x) / n : 0;
  if (R == 0) return NULL;
  if (R > 0x7fffffff) return sr_errf("more than 2^31 - 1 rows");
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int rev = (int)c->i[0];
  switch (x->dtype) {
    case SR_F32: cumsum_kernel1<float><<<(unsigned)R, SCAN_THREADS, 0, s>>>((float *)sr_data(out), (const float *)sr_data(x), n, rev); break;
    case SR_BF16: cumsum_kernel1<bf16><<<(unsigned)R, SCAN_THREADS, 0, s>>>((bf16 *)sr_data(out), (const bf16 *)sr_data(x), n, rev); break;
    case SR_I32: cumsum_kernel1<int32_t><<<(unsigned)R, SCAN_THREADS, 0, s>>>((int32_t *)sr_data(out), (const int32_t *)sr_data(x), n, rev); break;
    default: return sr_errf("dtype %s is not supported on cuda (f32, bf16, i32)", sr_dtype_name(x->dtype));
  }
  SR_LAUNCH_CHECK();
  return NULL;
}
