/*
** wgmma.cuh: Hopper's warpgroup matrix multiply (wgmma.mma_async, sm_90a only) for the attention
** kernels: shared-memory matrix descriptors of the no-swizzle ("interleaved") canonical layouts,
** the tile layout that fills them, and m64n64k16 bf16 products with f32 accumulation, A from
** shared memory or from registers. A warpgroup is 4 consecutive warps (128 threads) issuing
** together; the products run asynchronously (wg_commit / wg_wait), reading their operands from
** shared memory themselves, so no ldmatrix fragments cost registers or issue slots.
**
** Fragments: the m64nNk16 accumulator gives warp w of the group rows 16w..16w+15 in mma.sync
** m16n8's layout, d[4j + e] being S[j][e] of flash_common.cuh (rows g and g + 8, columns 8j + 2t
** and + 1); A from registers takes mma.sync's A fragment (ldA_x4, acc_to_A) for those 16 rows.
**
** Shared-memory layout (no swizzle; PTX ISA, "Shared Memory Matrix Layout", canonical layouts):
** a tile of R rows x C columns (columns contiguous in global memory) is stored as core matrices of
** 8 rows x 8 bf16 (16 bytes a row, 128 bytes each), core matrix (r/8, c/8) at element
** ((c/8) (R/8) + r/8) 64: wg_off(). Read as
**   a K-major operand (Q or K for S = Q K^T: rows M or N, columns K): SBO = 128 B (the next 8
**     rows), LBO = 16 R bytes (the next 8 columns); the k16 slice kk starts 2 kk (R/8) 64 elements in;
**   an MN-major operand (V for O = P V: rows K, columns N; imm-trans-b 1): LBO = 128 B (the next 8
**     rows of K), SBO = 16 R bytes (the next 8 columns of N); slice kk starts 2 kk 64 elements in.
** Writes to shared memory by ordinary stores or cp.async reach the products only after
** fence.proxy.async (wg_fence_smem) and a barrier.
*/
#ifndef SPEEDRUN_WGMMA_CUH
#define SPEEDRUN_WGMMA_CUH
#include <stdint.h>

// element offset of (r, c) in the core-matrix layout of a tile of R rows (R a multiple of 8)
__host__ __device__ __forceinline__ int wg_off(int r, int c, int R) {
  return (((c >> 3) * (R >> 3) + (r >> 3)) << 6) + ((r & 7) << 3) + (c & 7);
}
// which 16-byte chunks of a ROWS x 128 tile thread tid of NT copies into the core-matrix layout
// (load_core_async, kernels/hopper/): chunk tid % 16 of rows tid / 16 + i RS, RS = NT / 16 rows a
// step (whole core-matrix rows), each step SSTEP elements on in shared memory (wg_off of a row RS
// further is SSTEP more: checked on the host, tests/cuda/test_flex_tiles.cu)
template <int ROWS, int NT>
struct core_chunks {
  static constexpr int RS = NT / 16, IT = ROWS / RS, SSTEP = (RS >> 3) * 64;
  static_assert(NT % 128 == 0 && ROWS % RS == 0, "load_core_async: whole core-matrix rows a step");
  __host__ __device__ static int row(unsigned tid, int i) { return (int)(tid >> 4) + i * RS; }
  __host__ __device__ static int col(unsigned tid) { return (int)(tid & 15) * 8; }
  __host__ __device__ static int off(unsigned tid, int i) { return wg_off(row(tid, 0), col(tid), ROWS) + i * SSTEP; }
};
// The 128-byte swizzled layout (PTX ISA's 128B swizzling mode; what TMA's CU_TENSOR_MAP_SWIZZLE_128B
// writes for boxes of 64 bf16 columns, kernels/tma.cuh): a tile of R rows x C columns (C a multiple
// of 64) as C / 64 panels of R rows of 128 bytes, panel p at element p R 64; in row r the 16-byte
// chunk j lies at chunk j ^ (r % 8). The tile starts 1024-byte aligned (the XOR takes address bits
// 7-9 into bits 4-6). Read as
//   a K-major operand: SBO = 1024 B (the next 8 rows), LBO unused (encoded 1); the k16 slice kk at
//     panel kk / 4, 32 (kk % 4) bytes in (the hardware applies the XOR to the address it forms);
//   an MN-major operand (rows K, columns MN): LBO = R 128 B (the next 64 columns: the next panel),
//     SBO = 1024 B (the next 8 rows of K); the k16 slice kk 2048 kk bytes in.
__host__ __device__ __forceinline__ int sw128_off(int r, int c, int R) {
  return (c >> 6) * R * 64 + r * 64 + ((((c >> 3) & 7) ^ (r & 7)) << 3) + (c & 7);
}
// the matrix descriptor of the tile slice at shared-window address a (no swizzle, base offset 0)
__host__ __device__ __forceinline__ uint64_t wg_desc_at(uint32_t a, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes >> 4) & 0x3FFF) << 16) |
         ((uint64_t)((sbo_bytes >> 4) & 0x3FFF) << 32);
}
// ... of the slice at p
__device__ __forceinline__ uint64_t wg_desc(const void *p, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return wg_desc_at((uint32_t)__cvta_generic_to_shared(p), lbo_bytes, sbo_bytes);
}
// the descriptor of the slice `bytes` (a multiple of 16) further on: the start address field (bits
// 0-13, the address / 16) plus bytes / 16, one add where wg_desc masks and shifts again (CUTLASS's
// descriptor iterator). Exact while the slice stays in shared memory (its address < 228 KB: the field
// never carries into the leading offset's); checked on the host (tests/cuda/test_flex_tiles.cu)
__host__ __device__ __forceinline__ uint64_t wg_desc_add(uint64_t d, uint32_t bytes) { return d + (bytes >> 4); }
// the same for the 128-byte swizzled layout (layout type 1 in bits 62-63; base offset 0: the tile is
// 1024-byte aligned)
__device__ __forceinline__ uint64_t wg_desc_sw128(const void *p, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return wg_desc(p, lbo_bytes, sbo_bytes) | (1ull << 62);
}
// before the first product of a group, and after registers it reads (accumulators, A) were written
__device__ __forceinline__ void wg_fence(void) { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// wait until at most N committed groups are still running
template <int N>
__device__ __forceinline__ void wg_wait(void) { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// shared-memory writes of the generic proxy (stores, cp.async) made visible to the products
__device__ __forceinline__ void wg_fence_smem(void) { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// after wg_wait: the compiler sees the accumulators (and register A operands) change here, so it
// neither reads a result nor reuses an operand's registers before the products are done
__device__ __forceinline__ void wg_keep(float (&d)[32]) {
#pragma unroll
  for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void wg_keep(uint32_t (&a)[4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) asm volatile("" : "+r"(a[i])::"memory");
}

// d (+)= A B, A [64 x 16] and B [16 x 64] both from shared memory (descriptors); acc 0: d = A B.
// TB: imm-trans-b (0: B K-major, stored N x K; 1: MN-major, stored K x N); TA likewise for A
// (0: K-major, stored M x K; 1: MN-major, stored K x M)
template <int TB, int TA = 0>
__device__ __forceinline__ void wg_m64n64k16_ss(float (&d)[32], uint64_t da, uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, %36, %35;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "l"(da), "l"(db), "r"(acc), "n"(TB), "n"(TA));
}
// the same with A from registers (a: mma.sync's A fragment of this warp's 16 rows, k16 slice)
template <int TB>
__device__ __forceinline__ void wg_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(TB));
}

// d (+)= A B with N = 128: B [16 x 128] MN-major from shared memory in the 128-byte swizzled
// layout (its two 64-column panels LBO apart), A from registers as wg_m64n64k16_rs's; d[h] holds
// columns 64 h.. exactly as wg_m64n64k16_rs's d for half h would (the accumulator's column groups in
// order), so two n64 products on the halves become one: A read once, half the instructions
template <int TB>
__device__ __forceinline__ void wg_m64n128k16_rs(float (&d)[2][32], const uint32_t (&a)[4], uint64_t db, int acc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
               : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[0][4]), "+f"(d[0][5]), "+f"(d[0][6]), "+f"(d[0][7]), "+f"(d[0][8]), "+f"(d[0][9]), "+f"(d[0][10]), "+f"(d[0][11]), "+f"(d[0][12]), "+f"(d[0][13]), "+f"(d[0][14]), "+f"(d[0][15]), "+f"(d[0][16]), "+f"(d[0][17]), "+f"(d[0][18]), "+f"(d[0][19]), "+f"(d[0][20]), "+f"(d[0][21]), "+f"(d[0][22]), "+f"(d[0][23]), "+f"(d[0][24]), "+f"(d[0][25]), "+f"(d[0][26]), "+f"(d[0][27]), "+f"(d[0][28]), "+f"(d[0][29]), "+f"(d[0][30]), "+f"(d[0][31]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[1][4]), "+f"(d[1][5]), "+f"(d[1][6]), "+f"(d[1][7]), "+f"(d[1][8]), "+f"(d[1][9]), "+f"(d[1][10]), "+f"(d[1][11]), "+f"(d[1][12]), "+f"(d[1][13]), "+f"(d[1][14]), "+f"(d[1][15]), "+f"(d[1][16]), "+f"(d[1][17]), "+f"(d[1][18]), "+f"(d[1][19]), "+f"(d[1][20]), "+f"(d[1][21]), "+f"(d[1][22]), "+f"(d[1][23]), "+f"(d[1][24]), "+f"(d[1][25]), "+f"(d[1][26]), "+f"(d[1][27]), "+f"(d[1][28]), "+f"(d[1][29]), "+f"(d[1][30]), "+f"(d[1][31])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(TB));
}

#endif
