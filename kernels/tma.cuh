/*
** tma.cuh: Hopper's tensor memory accelerator (TMA, sm_90) for the attention kernels: a tile of a
** bf16 matrix copied from global to shared memory by one thread's instruction, its arrival counted
** on a shared-memory mbarrier (the transaction bytes), in the 128-byte swizzled layout the
** warpgroup products read (wgmma.cuh, sw128_off / wg_desc_sw128). The host half builds the tensor
** map (cuTensorMapEncodeTiled, reached through the runtime's driver entry point: no link to
** libcuda); the map travels as a `const __grid_constant__ CUtensorMap` kernel parameter.
** Checked by tests/cuda/test_gpu_wgmma.cu (a tile loaded, every element at sw128_off).
*/
#ifndef SPEEDRUN_TMA_CUH
#define SPEEDRUN_TMA_CUH
#include <cuda.h>            // CUtensorMap and its enums (types only)
#include <cuda_runtime.h>
#include <cudaTypedefs.h>    // PFN_cuTensorMapEncodeTiled_v12000
#include <stdint.h>

// --- host: a tensor map of a bf16 tensor of rank dims (innermost first; dim[0] contiguous), row
// strides in bytes (stride[i] for dim i + 1, multiples of 16), boxes of box[] elements, 128-byte
// swizzle (box[0] 64 elements = 128 bytes). NULL, or what failed.
static inline const char *sr_tma_map_bf16(CUtensorMap *map, const void *base, int rank, const uint64_t *dims,
                                          const uint64_t *strides, const uint32_t *box) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode;
  if (!encode) {
    cudaDriverEntryPointQueryResult q;
    void *fn = NULL;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || !fn)
      return "tma: the driver has no cuTensorMapEncodeTiled";
    encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
  }
  cuuint64_t d[5], s[4];
  cuuint32_t b[5], e[5];
  if (rank < 1 || rank > 5) return "tma: rank out of 1..5";
  for (int i = 0; i < rank; i++) {
    d[i] = dims[i];
    b[i] = box[i];
    e[i] = 1;
    if (i + 1 < rank) s[i] = strides[i];
  }
  CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (cuuint32_t)rank, (void *)base, d, s, b, e,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? NULL : "tma: cuTensorMapEncodeTiled refused the map (alignment, strides or box)";
}

#ifdef __CUDACC__
// --- device: an mbarrier in shared memory (8 bytes, 8-byte aligned)
__device__ __forceinline__ uint32_t tma_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
// one arrival expected a phase (the thread that issues the copies); made visible to the async proxy
__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(tma_smem(bar)), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// this phase's arrival, expecting bytes more to land by the copies issued against it
__device__ __forceinline__ void mbar_expect(uint64_t *bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(tma_smem(bar)), "r"(bytes) : "memory");
}
// wait until the phase of parity `phase` completed (every expected byte landed)
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t phase) {
  asm volatile("{\n.reg .pred done;\nwait_%=:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra wait_%=;\n}\n" ::"r"(tma_smem(bar)), "r"(phase) : "memory");
}
// the box at coordinates c (innermost first) of map into shared memory dst (1024-byte aligned for
// the 128-byte swizzle), counted on bar
__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
               ::"r"(tma_smem(dst)), "l"(map), "r"(c0), "r"(c1), "r"(tma_smem(bar)) : "memory");
}
__device__ __forceinline__ void tma_load_4d(void *dst, const CUtensorMap *map, int c0, int c1, int c2, int c3, uint64_t *bar) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
               ::"r"(tma_smem(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(tma_smem(bar)) : "memory");
}
#endif
#endif
