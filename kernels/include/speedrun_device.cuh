// speedrun_device.cuh: device code shared by kernels/*.cu (through common.cuh) and the kernels the
// step compiler generates (host/jit/fuse_cuda.c: NVRTC, no standard headers): warp and block
// reductions in f32 (so both reduce in the same order) and the deferred error record.
#pragma once

#ifndef INFINITY  // NVRTC has no math.h
#define INFINITY __int_as_float(0x7f800000)
#endif

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
