// speedrun_device.cuh: device code shared by kernels/*.cu (through common.cuh) and the kernels the
// step compiler generates (host/jit/fuse_cuda.c: NVRTC, no standard headers): 16-byte vector
// accesses, warp and block reductions in f32 (so both reduce in the same order) and the deferred
// error record.
#pragma once

#include <cuda_bf16.h>  // defines: __nv_bfloat16, __nv_bfloat162

#ifndef INFINITY  // NVRTC has no math.h
#define INFINITY __int_as_float(0x7f800000)
#endif

// f32 values rounded to bf16 (to nearest even) and back: one, and N in place two by one packed
// conversion (cvt.rn.bf16x2.f32: each half rounded as one cvt.rn.bf16.f32 rounds it; half the
// conversions, the step compiler's loss kernels' bound: docs/cuda.md), or one by one with
// SR_EW_BF16_CVT=0 (SR_FUSE_BF16_CVT=0, host/jit/fuse_cuda.c)
__device__ __forceinline__ float sr_round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }
template <int N>
__device__ __forceinline__ void sr_round_bf16_n(float *v) {
#if defined(SR_EW_BF16_CVT) && SR_EW_BF16_CVT == 0
  constexpr int P = 0;
#else
  constexpr int P = N % 2 == 0 ? N : 0;  // the paired elements
#endif
#pragma unroll
  for (int e = 0; e < P; e += 2) {
    const float2 f = __bfloat1622float2(__floats2bfloat162_rn(v[e], v[e + 1]));
    v[e] = f.x, v[e + 1] = f.y;
  }
#pragma unroll
  for (int e = P; e < N; e++) v[e] = sr_round_bf16(v[e]);
}

// 8 bf16 in 16 bytes as floats, and back (rounded to nearest, as __float2bfloat16)
__device__ __forceinline__ void sr_unpack8(uint4 v, float *f) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
  for (int k = 0; k < 4; k++) {
    float2 t = __bfloat1622float2(h[k]);
    f[2 * k] = t.x;
    f[2 * k + 1] = t.y;
  }
}
__device__ __forceinline__ uint4 sr_pack8(const float *f) {
  uint4 v;
  __nv_bfloat162 *h = (__nv_bfloat162 *)&v;
#pragma unroll
  for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
  return v;
}

// 8 consecutive values as float, vector i of a 16-byte aligned array (16-byte accesses: bf16 one
// uint4, f32 two float4), and back
__device__ __forceinline__ void ld8(const __nv_bfloat16 *p, long long i, float *f) { sr_unpack8(((const uint4 *)p)[i], f); }
__device__ __forceinline__ void ld8(const float *p, long long i, float *f) {
  float4 a = ((const float4 *)p)[2 * i], b = ((const float4 *)p)[2 * i + 1];
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}
__device__ __forceinline__ void st8(__nv_bfloat16 *p, long long i, const float *f) { ((uint4 *)p)[i] = sr_pack8(f); }
__device__ __forceinline__ void st8(float *p, long long i, const float *f) {
  ((float4 *)p)[2 * i] = make_float4(f[0], f[1], f[2], f[3]);
  ((float4 *)p)[2 * i + 1] = make_float4(f[4], f[5], f[6], f[7]);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// sh must hold 32 floats; the call contains __syncthreads().
__device__ __forceinline__ float block_sum(float v, float *sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float *sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

// deferred device-side error flag (bad indices in embedding / cross_entropy): kernels record
// the first offence without a host sync; the backend reports it at the next synchronize or
// device-to-host copy (host/cuda/backend.c, sr_cuda_check_deferred).
struct sr_dev_error {
  int code;       // 0 none, 1 embedding index, 2 cross_entropy target
  long long row;  // which row
  long long value, limit;
};
__device__ __forceinline__ void sr_report_index_error(sr_dev_error *e, int code, long long row, long long v,
                                                      long long lim) {
  if (atomicCAS(&e->code, 0, code) == 0) {
    e->row = row;
    e->value = v;
    e->limit = lim;
  }
}
