// speedrun_kernel.cuh: the header for agent kernels, the .cu files a recipe compiles at run
// time with speedrun.kernel.compile (NVRTC). Include it with
//     #include "speedrun_kernel.cuh"
// NVRTC finds it (the host passes -I<checkout>/kernels/include), the CUDA headers (cuda_bf16.h,
// cuda_fp8.h, cuda/std/... ) and the folder of your .cu file. Full docs: docs/kernels.md.
//
// Conventions an agent kernel must follow
//  - Entry points: declare them SR_KERNEL (extern "C" __global__), or plain __global__ (the host
//    resolves C++ names too); the name in opts.kernels is the name in the source.
//  - Arguments: exactly the signature declared to compile() ("ptr float* y, ptr const bf16* x,
//    int n"). A tensor arrives as a pointer to its element 0; the host has checked dtype, device
//    and that it is contiguous (row-major, no gaps). Integers are 32-bit unless declared int64_t.
//  - Bounds: grids are rounded up, so every thread checks its index (i < n) before touching
//    memory. Out-of-bounds accesses are faults: the run fails as `cuda_fault` naming the kernel.
//  - Streams: the host launches on the engine's stream, so the kernel is ordered with built-in
//    ops and captured into CUDA graphs. Never synchronize, allocate, or launch other streams
//    inside a kernel; keep device-side printf out of timed code.
//  - Alignment: storage starts 512-byte aligned, but a view may start anywhere; check
//    sr_aligned16(p) (or require n % 8 == 0 and an aligned base) before 16-byte vector access.
//  - Shared memory: dynamic shared memory is `extern __shared__` and sized by `shared=` at
//    launch; above 48 KB the host raises the kernel's limit itself (up to 227 KB on H100).
//  - Gradients (custom ops): activation gradients are written (=), parameter gradients
//    accumulated (+=), as the built-in kernels do.
//  - Assertions: SR_ASSERT(cond) traps; a trap is a fault (reported, never success).
#pragma once

#include <cuda_bf16.h>   // defines: __nv_bfloat16, __nv_bfloat162, __float2bfloat16
#include <cuda_fp8.h>    // defines: __nv_fp8_e4m3, __nv_fp8_e5m2

// ---------------------------------------------------------------------------------------------
// fixed-width integers (NVRTC has no <stdint.h>; these match glibc's LP64 definitions)
#if defined(__CUDACC_RTC__) && !defined(SR_HAVE_STDINT)
#define SR_HAVE_STDINT
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long int64_t;
typedef unsigned long uint64_t;
typedef unsigned long size_t;
#endif

// ---------------------------------------------------------------------------------------------
// types: the names the signatures use
typedef __nv_bfloat16 bf16;
typedef __nv_bfloat162 bf16x2;
typedef __nv_fp8_e4m3 fp8_e4m3;
typedef __nv_fp8_e5m2 fp8_e5m2;

#define SR_KERNEL extern "C" __global__
#define SR_DEVICE __device__ __forceinline__
#define SR_WARP 32
#define SR_ASSERT(cond) do { if (!(cond)) __trap(); } while (0)

// ---------------------------------------------------------------------------------------------
// indices
SR_DEVICE int64_t sr_tid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }   // global x index
SR_DEVICE int64_t sr_nthreads() { return (int64_t)gridDim.x * blockDim.x; }             // threads in x
SR_DEVICE int sr_lane() { return threadIdx.x & (SR_WARP - 1); }
SR_DEVICE int sr_warp_id() { return threadIdx.x / SR_WARP; }
SR_DEVICE int sr_nwarps() { return (blockDim.x + SR_WARP - 1) / SR_WARP; }
template <typename T> SR_DEVICE T sr_ceil_div(T a, T b) { return (a + b - 1) / b; }
// for (i = global index; i < n; i += all threads): a grid-stride loop
#define SR_FOR_EACH(i, n) for (int64_t i = sr_tid(); i < (int64_t)(n); i += sr_nthreads())
SR_DEVICE bool sr_aligned16(const void *p) { return ((unsigned long)p & 15) == 0; }

// ---------------------------------------------------------------------------------------------
// conversions: compute in float, store in the tensor's type
SR_DEVICE float sr_to_float(float v) { return v; }
SR_DEVICE float sr_to_float(double v) { return (float)v; }
SR_DEVICE float sr_to_float(bf16 v) { return __bfloat162float(v); }
SR_DEVICE float sr_to_float(fp8_e4m3 v) { return (float)v; }
SR_DEVICE float sr_to_float(fp8_e5m2 v) { return (float)v; }
SR_DEVICE float sr_to_float(int v) { return (float)v; }
template <typename T> SR_DEVICE T sr_from_float(float v);
template <> SR_DEVICE float sr_from_float<float>(float v) { return v; }
template <> SR_DEVICE double sr_from_float<double>(float v) { return (double)v; }
template <> SR_DEVICE bf16 sr_from_float<bf16>(float v) { return __float2bfloat16(v); }
template <> SR_DEVICE fp8_e4m3 sr_from_float<fp8_e4m3>(float v) { return fp8_e4m3(v); }
template <> SR_DEVICE fp8_e5m2 sr_from_float<fp8_e5m2>(float v) { return fp8_e5m2(v); }

// 16-byte packs for vectorised loads and stores (p must be sr_aligned16)
template <typename T> struct alignas(16) sr_pack { T v[16 / sizeof(T)]; };
template <typename T> SR_DEVICE sr_pack<T> sr_load16(const T *p) { return *reinterpret_cast<const sr_pack<T> *>(p); }
template <typename T> SR_DEVICE void sr_store16(T *p, const sr_pack<T> &x) { *reinterpret_cast<sr_pack<T> *>(p) = x; }

// ---------------------------------------------------------------------------------------------
// reductions (every lane of the warp / thread of the block gets the result)
SR_DEVICE float sr_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
SR_DEVICE float sr_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
SR_DEVICE float sr_warp_min(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// block-wide: blockDim.x a multiple of 32 (<= 1024); sh holds 32 floats of shared memory; the
// call contains __syncthreads(), so every thread of the block must reach it
SR_DEVICE float sr_block_sum(float v, float *sh) {
  v = sr_warp_sum(v);
  __syncthreads();
  if (sr_lane() == 0) sh[sr_warp_id()] = v;
  __syncthreads();
  v = sr_lane() < sr_nwarps() ? sh[sr_lane()] : 0.f;
  return sr_warp_sum(v);
}
SR_DEVICE float sr_block_max(float v, float *sh) {
  v = sr_warp_max(v);
  __syncthreads();
  if (sr_lane() == 0) sh[sr_warp_id()] = v;
  __syncthreads();
  v = sr_lane() < sr_nwarps() ? sh[sr_lane()] : __int_as_float(0xff800000);  // -inf
  return sr_warp_max(v);
}
