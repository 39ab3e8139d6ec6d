/*
** common.cuh: what every kernels/*.cu shares: error reporting (a thread-local message, never
** Lua, never exit), dtype loads/stores in float, strided-index descriptors with dimension
** coalescing, warp/block reductions, and launch helpers.
**
** Error contract (registry.h): a launcher returns NULL on success, or a message in a
** thread-local buffer naming the failing call and the CUDA error. The dispatcher prefixes the
** kernel name.
*/
#pragma once

#include <cuda_runtime.h>  // defines: cudaStream_t, cudaError_t
#include <cuda_bf16.h>     // defines: __nv_bfloat16, __bfloat162float
#include <stdint.h>        // defines: int64_t
#include <stdio.h>         // defines: snprintf
#include <stdlib.h>        // defines: getenv
#include <string.h>        // defines: strcmp

#include "core/registry.h"      // defines: sr_kcall, sr_tensor, sr_dtype, sr_numel, sr_data
#include "cuda/backend.h"  // defines: sr_cuda_stream, sr_cuda_malloc, sr_cuda_free, sr_cuda_errbuf
// shared with the generated kernels: ld8, st8, warp_sum, warp_max, block_sum, block_max, the
// deferred device-side error record sr_dev_error (bad indices in embedding / cross_entropy)
#include "include/speedrun_device.cuh"

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define WARP_SIZE 32

// ----------------------------------------------------------------------------
// the kernels' A/B switches: whether environment variable NAME is VAL, read once (*cache starts
// at -1; e.g. SR_EW_V1=1, SR_FLEX_BWD_NS=2)
static inline int sr_env_is(int *cache, const char *name, const char *val) {
  if (*cache < 0) {
    const char *e = getenv(name);
    *cache = e && !strcmp(e, val);
  }
  return *cache;
}

// ----------------------------------------------------------------------------
// errors


template <typename... A>
static inline const char *sr_errf(const char *fmt, A... a) {
  char *b = sr_cuda_errbuf();
  snprintf(b, 512, fmt, a...);
  return b;
}
static inline const char *sr_errf(const char *msg) {
  char *b = sr_cuda_errbuf();
  snprintf(b, 512, "%s", msg);
  return b;
}

// returns from the enclosing launcher with a message when a CUDA call fails
#define SR_CUDA_TRY(call)                                                                     \
  do {                                                                                        \
    cudaError_t sr_e_ = (call);                                                               \
    if (sr_e_ != cudaSuccess)                                                                 \
      return sr_errf("%s (%s) at %s:%d", cudaGetErrorString(sr_e_), cudaGetErrorName(sr_e_), \
                     __FILE__, __LINE__);                                                     \
  } while (0)
// after every launch
#define SR_LAUNCH_CHECK() SR_CUDA_TRY(cudaGetLastError())

// ----------------------------------------------------------------------------
// dtypes

typedef __nv_bfloat16 bf16;

// a pointer that 16-byte vector loads and stores may take
static inline bool sr_is_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }
static inline bool sr_is_gpu_float(sr_dtype t) { return t == SR_F32 || t == SR_BF16; }

__device__ __forceinline__ float ld_as_float(const void *p, int dt, int64_t i) {
  switch (dt) {
    case SR_F32: return ((const float *)p)[i];
    case SR_BF16: return __bfloat162float(((const bf16 *)p)[i]);
    case SR_F64: return (float)((const double *)p)[i];
    case SR_I32: return (float)((const int *)p)[i];
    default: return __int_as_float(0x7fffffff);
  }
}
__device__ __forceinline__ void st_from_float(void *p, int dt, int64_t i, float v) {
  switch (dt) {
    case SR_F32: ((float *)p)[i] = v; break;
    case SR_BF16: ((bf16 *)p)[i] = __float2bfloat16(v); break;
    case SR_F64: ((double *)p)[i] = (double)v; break;
    case SR_I32: ((int *)p)[i] = (int)v; break;
    default: break;
  }
}
template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<bf16>(bf16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) { return __float2bfloat16(v); }


// ----------------------------------------------------------------------------
// tensor queries: host/core/tensor.h's (sr_numel, sr_data, sr_is_contiguous, sr_dtype_size,
// sr_dtype_name), through core/registry.h

// argument j of a call, NULL when absent (optional tensors)
static inline sr_tensor *sr_karg(const sr_kcall *c, int j) { return j < c->nt ? c->t[j] : NULL; }

// ----------------------------------------------------------------------------
// strided operands: all operands share out's shape (inputs already expanded); dims that are
// contiguous in every operand are merged, so most calls end up 1-D.

#define SR_EW_MAXOP 4
struct sr_ew_desc {
  int ndim, nop;
  int64_t n;
  int64_t shape[SR_MAXDIM];
  int64_t stride[SR_EW_MAXOP][SR_MAXDIM];
  void *p[SR_EW_MAXOP];
  int dt[SR_EW_MAXOP];
  bool contig;  // every operand unit-stride 1-D
};

// fills d from tensors t[0..nop) (all with t[0]'s shape); returns false if shapes differ
static inline bool sr_ew_make(sr_ew_desc *d, sr_tensor *const *t, int nop) {
  const sr_tensor *o = t[0];
  d->nop = nop;
  d->n = sr_numel(o);
  int nd = 0;
  for (int k = 0; k < o->ndim; k++) {
    if (o->shape[k] == 1) continue;  // size-1 dims carry no index
    d->shape[nd] = o->shape[k];
    for (int j = 0; j < nop; j++) d->stride[j][nd] = t[j]->stride[k];
    nd++;
  }
  for (int j = 0; j < nop; j++) {
    if (sr_numel(t[j]) != d->n) return false;
    d->p[j] = sr_data(t[j]);
    d->dt[j] = t[j]->dtype;
  }
  // merge dim k into k-1 where every operand has stride[k-1] == stride[k]*shape[k]
  int m = 0;
  for (int k = 0; k < nd; k++) {
    if (m > 0) {
      bool ok = true;
      for (int j = 0; j < nop; j++) ok = ok && d->stride[j][m - 1] == d->stride[j][k] * d->shape[k];
      if (ok) {
        d->shape[m - 1] *= d->shape[k];
        for (int j = 0; j < nop; j++) d->stride[j][m - 1] = d->stride[j][k];
        continue;
      }
    }
    d->shape[m] = d->shape[k];
    for (int j = 0; j < nop; j++) d->stride[j][m] = d->stride[j][k];
    m++;
  }
  if (m == 0) {  // a scalar
    m = 1;
    d->shape[0] = 1;
    for (int j = 0; j < nop; j++) d->stride[j][0] = 1;
  }
  d->ndim = m;
  d->contig = m == 1;
  for (int j = 0; j < nop; j++) d->contig = d->contig && d->stride[j][0] == 1;
  return true;
}

// element offsets of flat index i for every operand
__device__ __forceinline__ void sr_ew_offsets(const sr_ew_desc &d, int64_t i, int64_t *off) {
#pragma unroll
  for (int j = 0; j < SR_EW_MAXOP; j++) off[j] = 0;
  for (int k = d.ndim - 1; k >= 0; k--) {
    int64_t s = d.shape[k];
    int64_t q = i / s, r = i - q * s;
#pragma unroll
    for (int j = 0; j < SR_EW_MAXOP; j++)
      if (j < d.nop) off[j] += r * d.stride[j][k];
    i = q;
  }
}

// the same with 32-bit index arithmetic (callers check that every offset fits)
__device__ __forceinline__ void sr_ew_offsets32(const sr_ew_desc &d, uint32_t i, int64_t *off) {
  uint32_t o[SR_EW_MAXOP] = {0, 0, 0, 0};
  for (int k = d.ndim - 1; k >= 0; k--) {
    uint32_t s = (uint32_t)d.shape[k];
    uint32_t q = i / s, r = i - q * s;
#pragma unroll
    for (int j = 0; j < SR_EW_MAXOP; j++)
      if (j < d.nop) o[j] += r * (uint32_t)d.stride[j][k];
    i = q;
  }
#pragma unroll
  for (int j = 0; j < SR_EW_MAXOP; j++) off[j] = o[j];
}
// true when every operand's offsets (non-negative strides) fit in 32 bits
static inline bool sr_ew_fits32(const sr_ew_desc *d) {
  if (d->n >= (1ll << 31)) return false;
  for (int j = 0; j < d->nop; j++) {
    int64_t m = 0;
    for (int k = 0; k < d->ndim; k++) {
      if (d->stride[j][k] < 0) return false;
      m += (d->shape[k] - 1) * d->stride[j][k];
    }
    if (m >= (1ll << 31)) return false;
  }
  return true;
}

// grid for a grid-stride loop over n elements
static inline unsigned sr_grid_for(int64_t n, int block) {
  int64_t g = CEIL_DIV(n, (int64_t)block);
  if (g > 132 * 32) g = 132 * 32;
  if (g < 1) g = 1;
  return (unsigned)g;
}

static inline sr_dev_error *sr_cuda_dev_error(void) { return (sr_dev_error *)sr_cuda_dev_error_ptr(); }

