/*
** hopper/flex_hopper.cuh: the device helpers of the Hopper flex attention kernels
** (flex_attention_hopper.cu): tile loads into the core-matrix layout, the forward's products (S = Q K^T,
** O += P V) and its rescale and store, the TMA kernels' shared-memory base, mbarriers and tile pairs,
** the backward's bulk adds of dQ. sm_90a only.
*/
#ifndef SPEEDRUN_FLEX_HOPPER_CUH
#define SPEEDRUN_FLEX_HOPPER_CUH
#include "flash_common.cuh"  // defines: pack_bf16, att_strides, att_base, cp_async16_all, smem_u32, LN2
#include "tma.cuh"           // defines: mbar_init, mbar_expect, tma_load_4d
#include "wgmma.cuh"         // defines: core_chunks, wg_desc, wg_desc_sw128, wg_desc_add, wg_fence, wg_commit, wg_wait, wg_keep, wg_m64n64k16_ss/_rs

// ROWS rows x 128 of a [T, 128] bf16 matrix (row stride ld) from row row0 into the core-matrix
// layout (tile of ROWS rows), by a block of NT threads (core_chunks, wgmma.cuh). Every tile lies
// below T (the callers' T is a multiple of 128: flex's T = nb 128, hopper_ok's dense T), so no
// bounds compare or zero-fill select: one global and one shared address a thread, constant steps,
// as load_tile_async (the loop with a runtime stride and wg_off per chunk it replaces cost the
// mma.sync kernels ~29 instructions a chunk, bench/RESULTS.md, twenty-third session)
template <int ROWS, int NT>
__device__ __forceinline__ void load_core_async(bf16 *S, const bf16 *G, int64_t ld, int row0) {
  using CC = core_chunks<ROWS, NT>;
  const bf16 *g = G + (int64_t)(row0 + CC::row(threadIdx.x, 0)) * ld + CC::col(threadIdx.x);
  uint32_t sp = smem_u32(S + CC::off(threadIdx.x, 0));
  int64_t step = CC::RS * ld;
#pragma unroll
  for (int i = 0; i < CC::IT; i++, g += step) cp_async16_all(sp + i * CC::SSTEP * (int)sizeof(bf16), g);
}

// S = Q K^T issued (not waited): Q rows 64 wg.. of its BQ-row tile, K the 64-row tile (both K-major;
// SW: K in the 128-byte swizzled layout, the k16 slice kk in panel kk / 4, 32 (kk % 4) bytes in)
template <int BQ, bool SW = false>
__device__ __forceinline__ void fwd_scores(float (&S)[32], const bf16 *Qs, const bf16 *Ks, int wg) {
  const uint64_t qd0 = wg_desc(Qs + wg * 8 * 64, BQ * 16, 128), kd0 = SW ? wg_desc_sw128(Ks, 16, 1024) : wg_desc(Ks, 64 * 16, 128);
#pragma unroll
  for (int kk = 0; kk < 8; kk++)  // the k16 slice kk: 32 BQ bytes on in Q; in K 2048 (swizzled: see above)
    wg_m64n64k16_ss<0>(S, wg_desc_add(qd0, kk * 32 * BQ), wg_desc_add(kd0, SW ? (kk >> 2) * 8192 + (kk & 3) * 32 : kk * 2048),
                       kk > 0);
}
// O += A B issued: A (bf16 fragments of 64 keys' k16 slices: P, or dS), B a 64-row tile read MN-major
// (V, or K for dQ), each half of D (SW: swizzled, both halves in one N = 128 product)
template <bool SW = false>
__device__ __forceinline__ void av_issue(float (&O)[2][32], const uint32_t (&a)[4][4], const bf16 *B) {
  const uint64_t bd0 = SW ? wg_desc_sw128(B, 64 * 128, 1024) : wg_desc(B, 128, 64 * 16);
  if constexpr (SW) {  // both halves in one N = 128 product (the panels LBO apart), the slice kk 2048 bytes on
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wg_m64n128k16_rs<1>(O, a[kk], wg_desc_add(bd0, kk * 2048), 1);
  } else {
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int kk = 0; kk < 4; kk++)  // half h 8192 bytes on, the slice kk 256
        wg_m64n64k16_rs<1>(O[h], a[kk], wg_desc_add(bd0, h * 8192 + kk * 256), 1);
  }
}
// the same, waited for: O holds the sum on return
template <bool SW = false>
__device__ __forceinline__ void av_sync(float (&O)[2][32], uint32_t (&a)[4][4], const bf16 *B) {
  wg_fence();
  av_issue<SW>(O, a, B);
  wg_commit();
  wg_wait<0>();
  wg_keep(O[0]);
  wg_keep(O[1]);
#pragma unroll
  for (int kk = 0; kk < 4; kk++) wg_keep(a[kk]);
}
// a tile of KB 64-key sub-tiles (sub-tile h's K at T0 + 2 h 64 x 128, its V after it): O += P V
// issued over its sub-tiles, P's k16 slices 4 h.. of a for sub-tile h (KB 1: av_issue)
template <int KB, bool SW = false>
__device__ __forceinline__ void av_issue_kb(float (&O)[2][32], const uint32_t (&a)[4 * KB][4], const bf16 *T0) {
#pragma unroll
  for (int h = 0; h < KB; h++)
    av_issue<SW>(O, *reinterpret_cast<const uint32_t(*)[4][4]>(&a[4 * h]), T0 + (2 * h + 1) * 64 * 128);
}
__device__ __forceinline__ void fwd_rescale(float (&O)[2][32], float al0, float al1) {
#pragma unroll
  for (int h = 0; h < 2; h++)
#pragma unroll
    for (int i = 0; i < 8; i++) { O[h][4 * i] *= al0; O[h][4 * i + 1] *= al0; O[h][4 * i + 2] *= al1; O[h][4 * i + 3] *= al1; }
}


// a thread's rows q0 and q1 of a warpgroup's 64 x 128 f32 accumulator (the halves of D in X[0], X[1])
// into bf16 rows of B (row stride ld), row q0's values times s0, row q1's times s1
__device__ __forceinline__ void store_rows(bf16 *B, int64_t ld, const float (&X)[2][32], int q0, int q1, int t, float s0,
                                           float s1) {
#pragma unroll
  for (int h = 0; h < 2; h++)
#pragma unroll
    for (int i = 0; i < 8; i++) {
      int col = h * 64 + i * 8 + 2 * t;
      *(uint32_t *)&B[(int64_t)q0 * ld + col] = pack_bf16(X[h][4 * i] * s0, X[h][4 * i + 1] * s0);
      *(uint32_t *)&B[(int64_t)q1 * ld + col] = pack_bf16(X[h][4 * i + 2] * s1, X[h][4 * i + 3] * s1);
    }
}
// the forward's end: a thread's rows q0 and q1 of out (O over the row sums; a row that saw no key: 0)
// and their lse (natural log; -inf for no key), the sums l0, l1 first summed over the row's 4 threads
__device__ __forceinline__ void fwd_store(bf16 *out, float *lse, const float (&O)[2][32], float m0, float m1, float l0,
                                          float l1, int q0, int q1, int t, int64_t bh, int T, const att_strides &as) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;  // no key seen: out 0
  store_rows(out + att_base(as, 0, bh), as.s[0][2], O, q0, q1, t, i0, i1);
  if (t == 0) {
    lse[bh * T + q0] = l0 > 0.f ? (m0 + log2f(l0)) * LN2 : -INFINITY;
    lse[bh * T + q1] = l1 > 0.f ? (m1 + log2f(l1)) * LN2 : -INFINITY;
  }
}

// a streamed tensor (att_strides index j: the forward's k and v, the backward's q and dO) has its heads
// closer together than its rows ([B, T, H, D]): its TMA map (tile_maps) takes the head dimension first,
// the strides ascending, so the kernels give that map's coordinates in that order. Each tensor has its
// own order: autograd's dO is contiguous [B, H, T, D] where q is a transposed view of [B, T, H, D]
__host__ __device__ __forceinline__ bool heads_first(const att_strides &as, int j) { return as.s[j][1] < as.s[j][2]; }
// the TMA kernels' shared memory: its base rounded up to 1024 bytes (the swizzled tiles' alignment;
// the launch gives 1 KB to spare), and the NS stage mbarriers initialised (one arrival a phase: the
// copies' issuer's) before any copy is issued. Without TMA the base as it is, nothing initialised.
template <bool TMA>
__device__ __forceinline__ unsigned char *tma_base(unsigned char *smem) {
  return TMA ? smem + ((1024u - (smem_u32(smem) & 1023u)) & 1023u) : smem;
}
template <bool TMA, int NS>
__device__ __forceinline__ void tma_bars_init(uint64_t *bars) {
  if (!TMA) return;
  if (threadIdx.x == 0)
    for (int s = 0; s < NS; s++) mbar_init(&bars[s], 1);
  __syncthreads();
}
// thread 0 of the TMA kernels: the 64-row tile at `row` of two streamed tensors (maps a, b: att_strides
// indices 2 and jb, each map's rows and heads in its own order) into d and d + 64 x 128, each as its two
// 64-column panels, counted on bar; KB such pairs of consecutive 64-row tiles (rows row + 64 h into
// d + h 2 64 x 128), one expectation
template <int KB = 1>
__device__ __forceinline__ void tma_tile_pair(bf16 *d, const CUtensorMap *a, const CUtensorMap *b, int jb, int row,
                                              int64_t bh, const att_strides &as, uint64_t *bar) {
  int hh = (int)(bh % as.H), bb = (int)(bh / as.H);
  bool fa = heads_first(as, 2), fb = heads_first(as, jb);
  mbar_expect(bar, KB * 2 * 64 * 128 * (uint32_t)sizeof(bf16));
#pragma unroll
  for (int h = 0; h < KB; h++) {
    bf16 *e = d + h * 2 * 64 * 128;
    int r = row + 64 * h;
    tma_load_4d(e, a, 0, fa ? hh : r, fa ? r : hh, bb, bar);
    tma_load_4d(e + 64 * 64, a, 64, fa ? hh : r, fa ? r : hh, bb, bar);
    tma_load_4d(e + 64 * 128, b, 0, fb ? hh : r, fb ? r : hh, bb, bar);
    tma_load_4d(e + 64 * 128 + 64 * 64, b, 64, fb ? hh : r, fb ? r : hh, bb, bar);
  }
}

// DQB (the backward's dQ by bulk adds): a tile's 64 x 128 f32 dQ from shared memory added to the
// accumulator by one bulk reduce of the TMA unit (32 KB, the async proxy reads it; the tile's order in
// both: dq_frag_off, flash_common.cuh); the bulk groups a thread issued, waited until at most N are
// still reading shared memory, or until all are done
__device__ __forceinline__ void bulk_add_f32(float *g, const float *s, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(g), "r"(smem_u32(s)),
               "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void bulk_wait_read(void) { asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory"); }
__device__ __forceinline__ void bulk_wait_all(void) { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

#endif
