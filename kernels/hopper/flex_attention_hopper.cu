/*
** hopper/flex_attention_hopper.cu: the flex attention forward and backward on Hopper's warpgroup
** MMA (sm_90a, kernels/wgmma.cuh) for bf16, D = 128, blocks of 128. Forward: one thread block per
** query block of 128, two warpgroups of 64 query rows. Q is staged once; K/V tiles of 64 keys (128
** by default: KB below) stream through a ring of NS stages of cp.async, loaded NS - 1 tiles ahead
** of the one computed (SR_FLEX_STAGES: 3, or 2 as first written), all in wgmma's core-matrix
** layout. Per tile: S = Q K^T as 8 m64n64k16 products read from shared memory (no ldmatrix
** fragments), the element mask on partial tiles and the online softmax in registers as
** flex_forward_kernel1's, then O += P V with P from registers (4 k16 steps for each half of D). The
** tiles, their order (flex_tiles: the partial and full lists merged, so a row's sums never depend
** on later rows) and the masks are flex_forward_kernel1's; a warpgroup skips a tile none of its 64
** rows can see. Results equal kernel 1's within the f32 order of the products' sums. The backward
** likewise (flex_backward_hopper_kernel, below; its Q/dO tiles through the same ring; a thread
** block per kv block of 128 keys), with dQ by f32 atomics or (SR_FLEX_BWD_SPLIT=1) by a kernel of
** its own (flex_backward_dq_hopper_kernel). The backward's streamed tiles load by TMA into the 128-byte
** swizzled layout (kernels/tma.cuh; SR_FLEX_BWD_TMA=0: cp.async), dK and dV leave through shared
** memory by 16-byte stores (SR_FLEX_BWD_EPI=0: a pair at a time), and dQ is added by one bulk
** reduce of a fragment-ordered tile (SR_FLEX_BWD_DQB=0: float2 atomics; the backward 1.376 -> 1.199
** ms a call on the H100, record-12 mask, 2026-12-07). The default forward overlaps (OV below;
** SR_FLEX_FWD_OVERLAP=0 off), loads K / V by TMA (SR_FLEX_FWD_TMA=0 off) and takes tiles of 128 keys
** (KB 2; SR_FLEX_FWD_BK=64 off): 0.559 (the mma.sync kernel 2) -> 0.536 -> 0.471 ms there. Measured to
** lose and removed (docs/cuda.md, git history): LATE, BULK, SR_FLEX_BWD_V4 / DEFER / N128, two DQB
** slots, the warp-specialized forward (SR_FLEX_FWD_WS), blocks of one warpgroup (SR_FLEX_FWD_WG,
** SR_FLEX_BWD_WG).
** Compiled for sm_90a only (CMakeLists.txt: the speedrun_hopper objects); kernels/flex_attention.cu
** calls it on a device of compute capability 9: the backward, and the forward but at a narrow window
** (SR_FLEX_WGMMA chooses otherwise).
*/
#include "flash_common.cuh"  // defines: dq_frag_off, pack_bf16, acc_to_A, online_softmax_tile, att_strides, att_base, cp_async16_all, cp_async4, smem_u32, LOG2E, LN2
#include "flex_common.cuh"   // defines: flex_mask, flex_resolve, flex_vis_ids, flex_mask_tile, flex_dead, flex_tiles, flex_ring
#include "tma.cuh"           // defines: sr_tma_map_bf16, mbar_init, mbar_expect, mbar_wait, tma_load_4d
#include "wgmma.cuh"         // defines: wg_off, sw128_off, wg_desc, wg_desc_sw128, wg_fence, wg_commit, wg_wait, wg_m64n64k16_ss/_rs
#include "flex_hopper.cuh"   // defines: load_core_async, fwd_scores, av_issue, av_sync, av_issue_kb, fwd_rescale, store_rows, fwd_store, heads_first, tma_base, tma_bars_init, tma_tile_pair, bulk_add_f32, bulk_wait_read, bulk_wait_all

// OV (the default, SR_FLEX_FWD_OVERLAP=0 off; NS >= 3): FlashAttention-3's intra-warpgroup overlap: the products of
// S for tile j and of P V for tile j - 1 are issued together, and tile j's softmax runs while the
// latter is on the tensor cores; the tiles load NS - 2 ahead (tile j - 1's V is still read), and
// both warpgroups compute every tile (a dead one is all -inf for a warpgroup: P 0, alpha 1, its sums
// unchanged to the bit). The sums are the same operations in the same order as without OV.
// TMA (the default, SR_FLEX_FWD_TMA=0 off; two warpgroups, overlapped or not): each K / V tile loaded by one thread's four
// bulk tensor copies into the 128-byte swizzled layout, counted on the stage's mbarrier (as the
// backward's TMA); tmk, tmv: the maps of k and v (unused otherwise)
// KB 2 (the default, SR_FLEX_FWD_BK=64 off; with OV and TMA, three stages): tiles of a mask block's 128 keys
// (flex_tiles walked two at a time), a stage two 64-key sub-tiles of K and V on one mbarrier: S by 16
// products, the mask on each sub-tile, one softmax over 128 columns, P V over 8 k16 slices; the tile's
// barrier, waits, row max / sum shuffles and rescale of O once per 128 keys instead of per 64
template <int NS, bool OV, bool TMA = false, int KB = 1>
__global__ void __launch_bounds__(256, 1) flex_forward_hopper_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                                                     const bf16 *v, int T, float scale_log2, flex_mask fm,
                                                                     att_strides as, const __grid_constant__ CUtensorMap tmk,
                                                                     const __grid_constant__ CUtensorMap tmv) {
  flex_resolve(fm);
  constexpr int D = 128, BQ = 128, BK = 64 * KB, QT = BQ * D, KT = 64 * D, AHEAD = OV ? NS - 2 : NS - 1;
  static_assert(KB == 1 || (KB == 2 && OV && TMA), "KB 2: the overlapped TMA forward");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16 *Qs = (bf16 *)tma_base<TMA>(smem_raw), *KV = Qs + QT;  // stage s, sub-tile h: K at KV + (2 KB s + 2 h) KT, V after it
  int32_t *kd_s = (int32_t *)(KV + 2 * KB * NS * KT);          // stage s: the doc ids of its BK keys at BK s
  uint64_t *bars = (uint64_t *)(kd_s + BK * NS);               // TMA: stage s's mbarrier
  int qb = gridDim.x - 1 - blockIdx.x;
  int64_t bh = blockIdx.y;
  const bf16 *Q = q + att_base(as, 1, bh), *K = k + att_base(as, 2, bh), *V = v + att_base(as, 3, bh);
  int64_t qst = as.s[1][2], kst = as.s[2][2], vst = as.s[3][2];
  int wg = threadIdx.x >> 7, w = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  flex_tiles tl(fm, qb * BQ / 128, 0);  // the mask's row: the block of 128 queries holding these BQ
  int qwg = qb * BQ + wg * 64, q0 = qwg + w * 16 + g, q1 = q0 + 8;
  int32_t dq0 = fm.doc ? fm.doc[q0] : 0, dq1 = fm.doc ? fm.doc[q1] : 0;
  tma_bars_init<TMA, NS>(bars);
  auto load_kv = [&](int s0, int stage) {
    if (TMA) {
      if (threadIdx.x == 0) tma_tile_pair<KB>(KV + 2 * KB * stage * KT, &tmk, &tmv, 3, s0, bh, as, &bars[stage]);  // K, then V
    } else {
      load_core_async<BK, 256>(KV + 2 * stage * KT, K, kst, s0);
      load_core_async<BK, 256>(KV + (2 * stage + 1) * KT, V, vst, s0);
    }
    if (fm.doc && threadIdx.x < BK) cp_async4(&kd_s[BK * stage + threadIdx.x], fm.doc + s0 + threadIdx.x, true);
  };

  // Q and the first AHEAD tiles in flight, one commit group each (Q in the first)
  load_core_async<BQ, 256>(Qs, Q, qst, qb * BQ);
  flex_ring<AHEAD + 1> rg;
  rg.la = tl.next(fm, -KB, qb * BQ, BQ, 0, KB);
#pragma unroll
  for (int e = 0; e < AHEAD; e++) {
    if (rg.push(tl, fm, e, qb * BQ, BQ, 0, KB)) load_kv(rg.s0[e], e);
    cp_async_commit();
  }

  float O[2][32], S[32 * KB];
  uint32_t a[4 * KB][4];  // P of the tile before as A fragments (OV: its P V not yet issued)
#pragma unroll
  for (int i = 0; i < 32; i++) O[0][i] = O[1][i] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  int cur = 0, prev = -1;  // the stage of rg's entry 0; OV: the stage of the tile whose P V is pending
  // TMA: the tile of iteration it is stage cur's (it / NS)-th load, so its phase's parity is (it / NS) & 1
  for (int it = 0; rg.ti[0] < tl.n; rg.shift(), cur = cur + 1 == NS ? 0 : cur + 1, it++) {
    cp_async_wait<AHEAD - 1>();  // this thread's copies of entry 0 landed (the later ones may be in flight)
    if (TMA) mbar_wait(&bars[cur], (uint32_t)(it / NS) & 1u);
    wg_fence_smem();             // this thread's cp.async writes, seen by the products (async proxy)
    __syncthreads();             // entry 0 is in stage cur for everyone; the stage AHEAD + 1 tiles back is free
    int k0 = rg.s0[0];
    bool part = rg.part[0];
    // the tile AHEAD on loaded (one commit group a tile, empty past the last)
    if (rg.push(tl, fm, AHEAD, qb * BQ, BQ, 0, KB)) load_kv(rg.s0[AHEAD], (cur + AHEAD) % NS);
    cp_async_commit();
    if (!OV && part && flex_dead(fm, qwg, 64, k0, BK)) continue;  // none of this warpgroup's rows sees the tile
    const bf16 *Ks = KV + 2 * KB * cur * KT;
#pragma unroll
    for (int i = 0; i < 32 * KB; i++) S[i] = 0.f;
    wg_fence();
#pragma unroll
    for (int h = 0; h < KB; h++) fwd_scores<BQ, TMA>(*reinterpret_cast<float(*)[32]>(S + 32 * h), Qs, Ks + 2 * h * KT, wg);
    wg_commit();
    if (OV && prev >= 0) {  // the tile before's P V beside this tile's S
      av_issue_kb<KB, TMA>(O, a, KV + 2 * KB * prev * KT);
      wg_commit();
      wg_wait<1>();  // S (the older group) is done
    } else {
      wg_wait<0>();
    }
#pragma unroll
    for (int h = 0; h < KB; h++) wg_keep(*reinterpret_cast<float(*)[32]>(S + 32 * h));
    if (part)  // on partial blocks only, each 64-key sub-tile
#pragma unroll
      for (int h = 0; h < KB; h++)
        flex_mask_tile((float(*)[4])(S + 32 * h), fm, q0, q1, k0 + 64 * h, dq0, dq1, kd_s + BK * cur + 64 * h, t);
    float al0, al1;
    online_softmax_tile<8 * KB>((float(*)[4])S, scale_log2, m0, m1, l0, l1, al0, al1);
    if (OV) {
      wg_wait<0>();  // the tile before's P V
      wg_keep(O[0]);
      wg_keep(O[1]);
#pragma unroll
      for (int kk = 0; kk < 4 * KB; kk++) wg_keep(a[kk]);
    }
    fwd_rescale(O, al0, al1);
#pragma unroll
    for (int kk = 0; kk < 4 * KB; kk++) acc_to_A(a[kk], (const float(*)[4])S, kk);
    if (OV) {
      prev = cur;
      continue;
    }
    if constexpr (KB == 1) av_sync<TMA>(O, a, Ks + KT);
  }
  if (OV && prev >= 0) {  // the last tile's P V
    if constexpr (KB == 1) {
      av_sync<TMA>(O, a, KV + (2 * prev + 1) * KT);
    } else {
      wg_fence();
      av_issue_kb<KB, TMA>(O, a, KV + 2 * KB * prev * KT);
      wg_commit();
      wg_wait<0>();
      wg_keep(O[0]);
      wg_keep(O[1]);
    }
  }
  fwd_store(out, lse, O, m0, m1, l0, l1, q0, q1, t, bh, T, as);
}

// the backward: one thread block per kv block of 128 keys, warpgroup wg its keys 64 wg..; the
// query tiles of 64 of the transposed lists, Q / dO (with lse, delta, doc ids) double-buffered.
// Per tile, per warpgroup: S^T = K Q^T and dP^T = V dO^T (8 + 8 products from shared memory), P^T
// and dS^T = P^T (dP^T - delta) in registers, dV += P^T dO and dK += dS^T Q with P^T, dS^T from
// registers (dO, Q read MN-major from the tiles they were loaded into); dS^T to shared memory,
// then dQ (64 x 128) = dS K with warpgroup wg computing the columns 64 wg.. over all 128 keys (dS
// MN-major, K MN-major), added into the f32 accumulator with float2 atomics (converted as kernel
// 1's). A warpgroup none of whose keys the tile's queries see skips its products (dS^T zeros).
// TMA (the default, SR_FLEX_BWD_TMA=0 off; with dQ into the f32 accumulator, two warpgroups): each Q /
// dO tile loaded by one thread's four bulk tensor copies (two 64 x 64 boxes each, kernels/tma.cuh) into
// the 128-byte swizzled layout, counted on the stage's mbarrier, instead of 16 cp.async a thread; the
// products read those tiles through swizzled descriptors (wgmma.cuh). tmq, tmdo: the maps of q and dout
// (unused otherwise)
// EPI (the default, SR_FLEX_BWD_EPI=0 off; blocks of two warpgroups): dK and dV staged through the
// free Q / dO stages and written by 16-byte stores, rows whole, instead of a 4-byte store per pair (the
// epilogue's stores were 6.5 % of the stall samples, 2026-12-07, while the SM's one block idles its
// tensor cores)
// DQB (the default, SR_FLEX_BWD_DQB=0 off, one slot; with TMA and EPI): a tile's dQ stored into one of
// DQB shared-memory slots in fragment order (dq_frag_off: 8 conflict-free float4 stores a thread) and added to the
// accumulator, in the same order, by one 32-KB bulk reduce that thread 0 issues after the next tile's
// first barrier (which orders every thread's stores): no float2 atomics from every thread (the dQ
// section held 40 % of the stall samples, 2026-12-07) and no barrier of its own (the removed BULK's two
// cost more than they saved). The slot a tile writes was read by the bulk add DQB tiles back, which
// thread 0 waits for before the tile's second barrier
template <int NS, bool DQ, bool OVB, bool TMA = false, bool EPI = false, int DQB = 0>
__global__ void __launch_bounds__(256, 1) flex_backward_hopper_kernel(bf16 *dk, bf16 *dv, float *dq_acc, const bf16 *q,
                                                                      const bf16 *k, const bf16 *v, const bf16 *dout,
                                                                      const float *lse, const float *delta, int T,
                                                                      float scale, flex_mask fm, att_strides as,
                                                                      const __grid_constant__ CUtensorMap tmq,
                                                                      const __grid_constant__ CUtensorMap tmdo) {
  flex_resolve(fm);
  constexpr int D = 128, BK = 128, BQ = 64, KT = BK * D, QT = BQ * D, NT = 256;
  static_assert(!TMA || DQ, "TMA: the default backward's loads only");
  static_assert(!EPI || !OVB, "EPI: no product still running at the end");
  static_assert(DQB == 0 || (TMA && EPI), "DQB: the default backward's dQ");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16 *Ks = (bf16 *)tma_base<TMA>(smem_raw), *Vs = Ks + KT, *QS = Vs + KT;  // stage s: Q at QS + 2 s QT, dO at QS + (2 s + 1) QT
  bf16 *dSt = QS + 2 * NS * QT;                         // dS^T [BK keys][64 queries], core layout
  float *dqs = (float *)(dSt + BK * BQ);                // DQB: slot j's dQ tile at dqs + j QT (f32, fragment order)
  float *ld_s = dqs + DQB * QT;                         // stage s: lse at 192 s, delta + 64, doc ids + 128
  uint64_t *bars = (uint64_t *)(ld_s + 192 * NS);       // TMA: stage s's mbarrier
  int kt0 = blockIdx.x * BK;
  int64_t bh = blockIdx.y;
  // as: 0 dk, 1 dv, 2 q, 3 k, 4 v, 5 dout
  const bf16 *Q = q + att_base(as, 2, bh), *K = k + att_base(as, 3, bh), *V = v + att_base(as, 4, bh),
             *dO = dout + att_base(as, 5, bh);
  const float *lse_b = lse + bh * T, *delta_b = delta + bh * T;
  int wg = threadIdx.x >> 7, w = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float scale_log2 = scale * LOG2E;
  flex_tiles tl(fm, blockIdx.x, 1);  // the kv block of 128 keys
  tma_bars_init<TMA, NS>(bars);
  auto load_q = [&](int q0, int stg) {
    if (TMA) {
      if (threadIdx.x == 0) tma_tile_pair(QS + 2 * stg * QT, &tmq, &tmdo, 5, q0, bh, as, &bars[stg]);  // Q, then dO
    } else {
      load_core_async<BQ, NT>(QS + 2 * stg * QT, Q, as.s[2][2], q0);
      load_core_async<BQ, NT>(QS + (2 * stg + 1) * QT, dO, as.s[5][2], q0);
    }
    int r = q0 + (threadIdx.x & 63);
    if (threadIdx.x < 128) cp_async4(&ld_s[192 * stg + threadIdx.x], (threadIdx.x < 64 ? lse_b : delta_b) + r, true);
    if (fm.doc && threadIdx.x < 64) cp_async4(&ld_s[192 * stg + 128 + threadIdx.x], fm.doc + r, true);
  };
  load_core_async<BK, NT>(Ks, K, as.s[3][2], kt0);
  load_core_async<BK, NT>(Vs, V, as.s[4][2], kt0);
  // K, V and the first AHEAD query tiles in flight, one commit group each (K, V in the first); OVB
  // (without DQ): a tile's dK / dV products run on into the next tile, still reading their stage: one fewer ahead
  static_assert(!(DQ && OVB), "OVB is of the split backward");
  constexpr int AHEAD = OVB ? NS - 2 : NS - 1;
  flex_ring<AHEAD + 1> rg;
  rg.la = tl.next(fm, -1, kt0, BK, 1);
#pragma unroll
  for (int e = 0; e < AHEAD; e++) {
    if (rg.push(tl, fm, e, kt0, BK, 1)) load_q(rg.s0[e], e);
    cp_async_commit();
  }
  float dK[2][32], dV[2][32];
#pragma unroll
  for (int i = 0; i < 32; i++) dK[0][i] = dK[1][i] = dV[0][i] = dV[1][i] = 0.f;
  // the zeros as registers before the loop: with OVB the products run across the loop's back edge,
  // and a zero the compiler rematerialised inside it would make ptxas serialize them all (C7515)
  wg_keep(dK[0]); wg_keep(dK[1]); wg_keep(dV[0]); wg_keep(dV[1]);
  uint32_t ap[4][4], as2[4][4];  // a tile's P^T and dS^T as A fragments (OVB: read by products still running)
  int kw = kt0 + wg * 64, key0 = kw + w * 16 + g, key1 = key0 + 8;
  int32_t dk0 = fm.doc ? fm.doc[key0] : 0, dk1 = fm.doc ? fm.doc[key1] : 0;
  float *dqb = dq_acc + bh * T * D;
  int cur = 0, it = 0;  // the stage of rg's entry 0; the iteration
  int dq_q0 = 0;        // DQB: the first query of the tile whose dQ waits in slot (it - 1) % DQB
  // TMA: the tile of iteration it is stage cur's (it / NS)-th load, so its phase's parity is (it / NS) & 1
  for (; rg.ti[0] < tl.n; rg.shift(), cur = cur + 1 == NS ? 0 : cur + 1, it++) {
    cp_async_wait<AHEAD - 1>();
    if (TMA) mbar_wait(&bars[cur], (uint32_t)(it / NS) & 1u);
    wg_fence_smem();
    __syncthreads();  // entry 0 is in stage cur for everyone; the stage AHEAD + 1 tiles back and dSt are free
    if constexpr (DQB > 0)  // the tile before's dQ (every thread's stores fenced before the barrier)
      if (threadIdx.x == 0 && it > 0) bulk_add_f32(dqb + (int64_t)dq_q0 * D, dqs + (it - 1) % DQB * QT, QT * sizeof(float));
    int qt0 = rg.s0[0];
    bool part = rg.part[0];
    // the tile AHEAD on loaded (one commit group a tile, empty past the last)
    if (rg.push(tl, fm, AHEAD, kt0, BK, 1)) load_q(rg.s0[AHEAD], (cur + AHEAD) % NS);
    cp_async_commit();
    const bf16 *Qs = QS + 2 * cur * QT, *dOs = Qs + QT;
    const float *lse_s = ld_s + 192 * cur, *delta_s = lse_s + 64;
    const int32_t *qd = (const int32_t *)(lse_s + 128);
    bool live = !part || !flex_dead(fm, qt0, BQ, kw, 64);  // some key of this warpgroup is seen by the tile
    if (live) {
      float Sp[32], dP[32];  // S^T and dP^T: the first product of each ignores them (scale-d 0)
#pragma unroll
      for (int i = 0; i < 32 && !OVB; i++) Sp[i] = dP[i] = 0.f;  // OVB: not while dK / dV's products run
      wg_fence();                                                  // (ptxas would serialize them)
      // each operand's descriptor once, then its k16 slices by wg_desc_add (an add, not a mask and
      // shift a slice): K, V K-major, this warpgroup's 64 keys; Q, dO K-major (TMA: swizzled, the slice
      // kk in panel kk / 4, 32 (kk % 4) bytes in; else 32 BQ bytes a slice)
      const uint64_t kd0 = wg_desc(Ks + wg * 8 * 64, BK * 16, 128), vd0 = wg_desc(Vs + wg * 8 * 64, BK * 16, 128);
      const uint64_t qd0 = TMA ? wg_desc_sw128(Qs, 16, 1024) : wg_desc(Qs, BQ * 16, 128);
      const uint64_t od0 = TMA ? wg_desc_sw128(dOs, 16, 1024) : wg_desc(dOs, BQ * 16, 128);
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        const uint32_t qo = TMA ? (kk >> 2) * 8192 + (kk & 3) * 32 : kk * 32 * BQ, ko = kk * 32 * BK;
        wg_m64n64k16_ss<0>(Sp, wg_desc_add(kd0, ko), wg_desc_add(qd0, qo), kk > 0);
        wg_m64n64k16_ss<0>(dP, wg_desc_add(vd0, ko), wg_desc_add(od0, qo), kk > 0);
      }
      wg_commit();
      wg_wait<0>();  // OVB: also the tile before's dK / dV products
      wg_keep(Sp);
      wg_keep(dP);
      if (OVB) {
        wg_keep(dK[0]); wg_keep(dK[1]); wg_keep(dV[0]); wg_keep(dV[1]);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { wg_keep(ap[kk]); wg_keep(as2[kk]); }
      }
#pragma unroll
      for (int j = 0; j < 8; j++) {
        // the two queries 8 j + 2 t, + 1 of this thread's columns: their lse, delta and doc ids as one
        // 8-byte load each (the stage's rows are 16-byte aligned, 2 t even), not one a column and row
        const int q2 = j * 8 + 2 * t;
        const float2 ls2 = *(const float2 *)&lse_s[q2], de2 = *(const float2 *)&delta_s[q2];
        const int2 qd2 = fm.doc ? *(const int2 *)&qd[q2] : make_int2(0, 0);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int qi = q2 + (e & 1), i = 4 * j + e;
          const float lq = e & 1 ? ls2.y : ls2.x, dlt = e & 1 ? de2.y : de2.x;
          float pr = exp2f(fmaf(Sp[i], scale_log2, -lq * LOG2E));
          if (part && !flex_vis_ids(fm, qt0 + qi, e < 2 ? key0 : key1, e & 1 ? qd2.y : qd2.x, e < 2 ? dk0 : dk1)) pr = 0.f;
          Sp[i] = pr;
          dP[i] = pr * (dP[i] - dlt);
        }
      }
#pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        acc_to_A(ap[kk], (const float(*)[4])Sp, kk);
        acc_to_A(as2[kk], (const float(*)[4])dP, kk);
      }
      wg_fence();
      // B: dO / Q MN-major (rows = queries, the k16 slice kk; columns half h of D); TMA: swizzled, half h
      // is panel h (8192 bytes on), the slice 16 rows of 128 B (2048 bytes) on; else half h 128 BQ bytes
      // on, the slice 256
      const uint64_t ob0 = TMA ? wg_desc_sw128(dOs, BQ * 128, 1024) : wg_desc(dOs, 128, BQ * 16);
      const uint64_t qb0 = TMA ? wg_desc_sw128(Qs, BQ * 128, 1024) : wg_desc(Qs, 128, BQ * 16);
#pragma unroll
      for (int h = 0; h < 2; h++)
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
          const uint32_t bo = TMA ? h * 8192 + kk * 2048 : h * 128 * BQ + kk * 256;
          wg_m64n64k16_rs<1>(dV[h], ap[kk], wg_desc_add(ob0, bo), 1);
          wg_m64n64k16_rs<1>(dK[h], as2[kk], wg_desc_add(qb0, bo), 1);
        }
      wg_commit();
#pragma unroll
      for (int j = 0; j < 8 && DQ; j++) {
        int kl = wg * 64 + w * 16 + g, c = j * 8 + 2 * t;
        *(uint32_t *)&dSt[wg_off(kl, c, BK)] = pack_bf16(dP[4 * j], dP[4 * j + 1]);
        *(uint32_t *)&dSt[wg_off(kl + 8, c, BK)] = pack_bf16(dP[4 * j + 2], dP[4 * j + 3]);
      }
    } else if (DQ) {
#pragma unroll
      for (int j = 0; j < 8; j++) {
        int kl = wg * 64 + w * 16 + g, c = j * 8 + 2 * t;
        *(uint32_t *)&dSt[wg_off(kl, c, BK)] = 0u;
        *(uint32_t *)&dSt[wg_off(kl + 8, c, BK)] = 0u;
      }
    }
    if (!DQ) {  // dQ by flex_backward_dq_hopper_kernel. OVB: dK / dV's products run on beside the next
                // tile's loads and S, dP products (whose wait covers them); a tile this warpgroup skips waits
                // here, so the stage loaded next (AHEAD + 1 tiles back) is never still read
      if (!OVB || !live) {
        wg_wait<0>();
        wg_keep(dK[0]); wg_keep(dK[1]); wg_keep(dV[0]); wg_keep(dV[1]);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { wg_keep(ap[kk]); wg_keep(as2[kk]); }
      }
      continue;
    }
    if constexpr (DQB > 0)  // the slot this tile writes: the add that last read it is done reading
      if (threadIdx.x == 0) bulk_wait_read<DQB - 1>();
    wg_fence_smem();
    __syncthreads();  // dS^T of both warpgroups is in dSt; DQB: this tile's slot is free
    // dQ [64 q x 128 d] += dS [q x keys] K [keys x d]: warpgroup wg the columns 64 wg..;
    // A = dS MN-major (dSt: rows keys = K, columns queries = M), B = K MN-major (rows
    // keys = K, columns d = N)
    // rows qt0 + w * 16 + g and 8 below it, at column 2 t: one address a tile, the rest constant offsets
    float *dq0 = dqb + (int64_t)(qt0 + w * 16 + g) * D + 2 * t;
#pragma unroll
    for (int hh = 0; hh < 1; hh++) {  // one pass (a loop of one, as when blocks of one warpgroup made two:
      const int h = wg;               // the default's PTX to the bit, the code measured)
      float dQ[32];
#pragma unroll
      for (int i = 0; i < 32; i++) dQ[i] = 0.f;
      wg_fence();
      const uint64_t sd0 = wg_desc(dSt, 128, BK * 16), kq0 = wg_desc(Ks + h * 8 * (BK / 8) * 64, 128, BK * 16);
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++)  // the k16 slice kk of both: 256 bytes on
        wg_m64n64k16_ss<1, 1>(dQ, wg_desc_add(sd0, kk * 256), wg_desc_add(kq0, kk * 256), kk > 0);
      wg_commit();
      wg_wait<0>();  // dK / dV's products too (P^T, dS^T free after it)
      wg_keep(dQ);
      if (hh == 0) {
        wg_keep(dK[0]); wg_keep(dK[1]); wg_keep(dV[0]); wg_keep(dV[1]);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { wg_keep(ap[kk]); wg_keep(as2[kk]); }
      }
      if constexpr (DQB > 0) {  // into this tile's slot; the fence and barrier that open the next tile (or
                                // end the last) order the stores before its add
        float *sl = dqs + it % DQB * QT;
#pragma unroll
        for (int i = 0; i < 8; i++)
          *(float4 *)&sl[dq_frag_off(h, w, i, lane)] =
              make_float4(dQ[4 * i] * scale, dQ[4 * i + 1] * scale, dQ[4 * i + 2] * scale, dQ[4 * i + 3] * scale);
        dq_q0 = qt0;
      } else {
#pragma unroll
        for (int i = 0; i < 8; i++) {
          float *p = dq0 + h * 64 + i * 8;
          atomicAdd((float2 *)p, make_float2(dQ[4 * i] * scale, dQ[4 * i + 1] * scale));
          atomicAdd((float2 *)(p + 8 * D), make_float2(dQ[4 * i + 2] * scale, dQ[4 * i + 3] * scale));
        }
      }
    }
  }
  if (OVB) {  // the last tile's dK / dV products
    wg_wait<0>();
    wg_keep(dK[0]); wg_keep(dK[1]); wg_keep(dV[0]); wg_keep(dV[1]);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) { wg_keep(ap[kk]); wg_keep(as2[kk]); }
  }
  bf16 *dKb = dk + att_base(as, 0, bh), *dVb = dv + att_base(as, 1, bh);
  int64_t kst = as.s[0][2], vst = as.s[1][2];
  if (EPI) {  // rows of EL: a warp's bf16 pairs (rows g, words t) meet no bank twice; dK rows 0.., dV rows BK..
    constexpr int EL = D + 8;
    static_assert(2 * BK * EL <= 2 * NS * QT + BK * BQ, "EPI: dK and dV fit the Q / dO stages and dS^T");
    bf16 *es = QS;
    if constexpr (DQB > 0) wg_fence_smem();  // the last tile's dQ stores visible to its bulk add (the async proxy)
    __syncthreads();  // both warpgroups' products are done with the stages and dS^T (each waited its own)
    if constexpr (DQB > 0)  // the last tile's dQ
      if (threadIdx.x == 0 && it > 0) bulk_add_f32(dqb + (int64_t)dq_q0 * D, dqs + (it - 1) % DQB * QT, QT * sizeof(float));
    int kl0 = key0 - kt0;
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int i = 0; i < 8; i++) {
        int col = h * 64 + i * 8 + 2 * t;
        *(uint32_t *)&es[kl0 * EL + col] = pack_bf16(dK[h][4 * i] * scale, dK[h][4 * i + 1] * scale);
        *(uint32_t *)&es[(kl0 + 8) * EL + col] = pack_bf16(dK[h][4 * i + 2] * scale, dK[h][4 * i + 3] * scale);
        *(uint32_t *)&es[(BK + kl0) * EL + col] = pack_bf16(dV[h][4 * i], dV[h][4 * i + 1]);
        *(uint32_t *)&es[(BK + kl0 + 8) * EL + col] = pack_bf16(dV[h][4 * i + 2], dV[h][4 * i + 3]);
      }
    __syncthreads();
#pragma unroll 4
    for (int c = threadIdx.x; c < 2 * BK * (D / 8); c += NT) {  // chunk c: tensor, row, 16-byte column
      int tsr = c / (BK * (D / 8)), r = (c / (D / 8)) % BK, ch = c % (D / 8);
      bf16 *dst = (tsr ? dVb + (int64_t)(kt0 + r) * vst : dKb + (int64_t)(kt0 + r) * kst) + ch * 8;
      *(uint4 *)dst = *(const uint4 *)&es[(tsr * BK + r) * EL + ch * 8];
    }
    if constexpr (DQB > 0)  // no add may still read a slot when the block exits
      if (threadIdx.x == 0) bulk_wait_all();
  } else {
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int i = 0; i < 8; i++) {
        int col = h * 64 + i * 8 + 2 * t;
        *(uint32_t *)&dKb[(int64_t)key0 * kst + col] = pack_bf16(dK[h][4 * i] * scale, dK[h][4 * i + 1] * scale);
        *(uint32_t *)&dVb[(int64_t)key0 * vst + col] = pack_bf16(dV[h][4 * i], dV[h][4 * i + 1]);
        *(uint32_t *)&dKb[(int64_t)key1 * kst + col] = pack_bf16(dK[h][4 * i + 2] * scale, dK[h][4 * i + 3] * scale);
        *(uint32_t *)&dVb[(int64_t)key1 * vst + col] = pack_bf16(dV[h][4 * i + 2], dV[h][4 * i + 3]);
      }
  }
}

// dQ alone (SR_FLEX_BWD_SPLIT=1; dK and dV by flex_backward_hopper_kernel<NS, false>): as the
// forward, a thread block per query block of 128, two warpgroups of 64 rows, Q and dO staged once,
// K/V tiles of 64 keys through the ring. Per tile, per warpgroup: S = Q K^T and dP = dO V^T (8 + 8
// products from shared memory), P = exp(S scale - lse) (element mask on partial tiles) and dS =
// P (dP - delta) in registers, dQ += dS K with dS from registers (K MN-major). dQ is written once,
// in bf16 (scale applied): no f32 accumulator, no atomics; S and dP are computed a second time
// (seven products a tile pair over both kernels, against five with the atomics).
template <int NS>
__global__ void __launch_bounds__(256, 1) flex_backward_dq_hopper_kernel(bf16 *dq, const bf16 *q, const bf16 *k,
                                                                         const bf16 *v, const bf16 *dout, const float *lse,
                                                                         const float *delta, int T, float scale,
                                                                         flex_mask fm, att_strides as) {
  flex_resolve(fm);
  constexpr int D = 128, BQ = 128, BK = 64, QT = BQ * D, KT = BK * D;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + QT, *KV = dOs + QT;  // stage s: K at KV + 2 s KT, V at KV + (2 s + 1) KT
  int32_t *kd_s = (int32_t *)(KV + 2 * NS * KT);                 // stage s: the doc ids of its 64 keys at 64 s
  int qb = gridDim.x - 1 - blockIdx.x;
  int64_t bh = blockIdx.y;
  // as: 0 dk, 1 dv, 2 q, 3 k, 4 v, 5 dout, 6 out, 7 dq
  const bf16 *Q = q + att_base(as, 2, bh), *K = k + att_base(as, 3, bh), *V = v + att_base(as, 4, bh),
             *dO = dout + att_base(as, 5, bh);
  int64_t kst = as.s[3][2], vst = as.s[4][2];
  int wg = threadIdx.x >> 7, w = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float scale_log2 = scale * LOG2E;
  flex_tiles tl(fm, qb, 0);
  int qwg = qb * BQ + wg * 64, q0 = qwg + w * 16 + g, q1 = q0 + 8;
  int32_t dq0 = fm.doc ? fm.doc[q0] : 0, dq1 = fm.doc ? fm.doc[q1] : 0;
  float nl0 = -lse[bh * T + q0] * LOG2E, nl1 = -lse[bh * T + q1] * LOG2E;  // exp2(S scale_log2 + nl) = P
  float de0 = delta[bh * T + q0], de1 = delta[bh * T + q1];
  auto load_kv = [&](int s0, int stage) {
    load_core_async<BK, 256>(KV + 2 * stage * KT, K, kst, s0);
    load_core_async<BK, 256>(KV + (2 * stage + 1) * KT, V, vst, s0);
    if (fm.doc && threadIdx.x < BK) cp_async4(&kd_s[BK * stage + threadIdx.x], fm.doc + s0 + threadIdx.x, true);
  };

  load_core_async<BQ, 256>(Qs, Q, as.s[2][2], qb * BQ);
  load_core_async<BQ, 256>(dOs, dO, as.s[5][2], qb * BQ);
  flex_ring<NS> rg;
  rg.la = tl.next(fm, -1, qb * BQ, BQ, 0);
#pragma unroll
  for (int e = 0; e + 1 < NS; e++) {
    if (rg.push(tl, fm, e, qb * BQ, BQ, 0)) load_kv(rg.s0[e], e);
    cp_async_commit();
  }
  float dQ[2][32];
#pragma unroll
  for (int i = 0; i < 32; i++) dQ[0][i] = dQ[1][i] = 0.f;
  int cur = 0;
  for (; rg.ti[0] < tl.n; rg.shift(), cur = cur + 1 == NS ? 0 : cur + 1) {
    cp_async_wait<NS - 2>();
    wg_fence_smem();
    __syncthreads();  // entry 0 is in stage cur for everyone; the stage of the tile before is free
    if (rg.push(tl, fm, NS - 1, qb * BQ, BQ, 0)) load_kv(rg.s0[NS - 1], cur == 0 ? NS - 1 : cur - 1);
    cp_async_commit();
    int k0 = rg.s0[0];
    bool part = rg.part[0];
    if (part && flex_dead(fm, qwg, 64, k0, BK)) continue;  // none of this warpgroup's rows sees the tile
    const bf16 *Ks = KV + 2 * cur * KT, *Vs = Ks + KT;
    float S[32], dP[32];
#pragma unroll
    for (int i = 0; i < 32; i++) S[i] = dP[i] = 0.f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint64_t qd = wg_desc(Qs + wg * 8 * 64 + kk * 2 * (BQ / 8) * 64, BQ * 16, 128);
      uint64_t od = wg_desc(dOs + wg * 8 * 64 + kk * 2 * (BQ / 8) * 64, BQ * 16, 128);
      wg_m64n64k16_ss<0>(S, qd, wg_desc(Ks + kk * 2 * (BK / 8) * 64, BK * 16, 128), kk > 0);
      wg_m64n64k16_ss<0>(dP, od, wg_desc(Vs + kk * 2 * (BK / 8) * 64, BK * 16, 128), kk > 0);
    }
    wg_commit();
    wg_wait<0>();
    wg_keep(S);
    wg_keep(dP);
    const int32_t *kd = kd_s + BK * cur;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int c = j * 8 + 2 * t + (e & 1), i = 4 * j + e;
        float p = exp2f(fmaf(S[i], scale_log2, e < 2 ? nl0 : nl1));
        if (part && !flex_vis_ids(fm, e < 2 ? q0 : q1, k0 + c, e < 2 ? dq0 : dq1, fm.doc ? kd[c] : 0)) p = 0.f;
        dP[i] = p * (dP[i] - (e < 2 ? de0 : de1));
      }
    // dQ += dS K: dS (bf16, registers) k16 slices of the 64 keys; K (MN-major, 64-row tile), half h of D
    uint32_t a[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; kk++) acc_to_A(a[kk], (const float(*)[4])dP, kk);
    av_sync(dQ, a, Ks);
  }
  store_rows(dq + att_base(as, 7, bh), as.s[7][2], dQ, q0, q1, t, scale, scale);
}

// the kernels' variants (engine switches read once each, common.cuh's sr_env_is;
// kernels/flex_attention.cu's SR_FLEX_WGMMA=1 turns them on at all)
// SR_FLEX_STAGES=2: the streamed tiles loaded one ahead of the one computed (the first version);
// otherwise (3) two ahead
static int hopper_stages(void) {
  static int v = -1;
  return sr_env_is(&v, "SR_FLEX_STAGES", "2") ? 2 : 3;
}
// the default (SR_FLEX_FWD_OVERLAP=0 off): the forward's intra-warpgroup overlap
// (flex_forward_hopper_kernel's OV), four stages; otherwise SR_FLEX_STAGES of them
static int hopper_forward_overlap(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_FWD_OVERLAP", "0");
}
// the default (SR_FLEX_FWD_BK=64 off; with the overlap and the TMA loads): the forward's tiles of
// 128 keys (flex_forward_hopper_kernel's KB 2), three stages
static int hopper_forward_bk128(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_FWD_BK", "64");
}
// the default (SR_FLEX_FWD_TMA=0 off; blocks of two warpgroups, overlapped or not): the forward's K / V
// tiles loaded by TMA into the 128-byte swizzled layout (flex_forward_hopper_kernel's TMA); a refused
// map keeps cp.async
static int hopper_forward_tma(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_FWD_TMA", "0");
}
// SR_FLEX_BWD_OVERLAP=1 (with the split): the dK / dV kernel's products of a tile run on beside the
// next tile's (flex_backward_hopper_kernel's OVB), four stages
static int hopper_backward_overlap(void) {
  static int v = -1;
  return sr_env_is(&v, "SR_FLEX_BWD_OVERLAP", "1");
}
// the default (SR_FLEX_BWD_EPI=0 off; dQ by atomics, blocks of two warpgroups; with or without the
// TMA loads): dK and dV staged in shared memory, then written by 16-byte stores
// (flex_backward_hopper_kernel's EPI)
static int hopper_backward_epi(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_BWD_EPI", "0");
}
// whether dk and dv take 16-byte stores: their bases and every stride (elements) 16-byte aligned
static bool epi_aligned(const bf16 *dk, const bf16 *dv, const att_strides &as) {
  bool ok = sr_is_aligned16(dk) && sr_is_aligned16(dv);
  for (int j = 0; j < 2; j++)
    for (int i = 0; i < 3; i++) ok = ok && as.s[j][i] % 8 == 0;
  return ok;
}
// the default (SR_FLEX_BWD_TMA=0 off; dQ by atomics, blocks of two warpgroups): the Q / dO tiles
// loaded by TMA into the 128-byte swizzled layout (flex_backward_hopper_kernel's TMA); a map the
// driver refuses keeps the cp.async kernel
static int hopper_backward_tma(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_BWD_TMA", "0");
}
// the TMA maps of two tensors the kernel streams (the backward's q and dout, as indices 2 and 5; the
// forward's k and v, 2 and 3) through their strides (att_strides: batch, head, row, in elements):
// dims {128, rows T, heads H, batch B}, rows and heads in the order of each tensor's strides (the kernels
// read it off the same index: heads_first), boxes of 64 columns x 64 rows; NULL, or why not (the first
// refusal said on stderr once, naming the switch: the cp.async kernel runs instead). a is the tensor of
// index 2, b that of index jb
static const char *tile_maps(CUtensorMap *tm, const bf16 *a, const bf16 *b, int jb, int T, const att_strides &as,
                             int64_t BH, const char *sw) {
  const bf16 *base[2] = {a, b};
  const int j[2] = {2, jb};
  const char *err = NULL;
  for (int i = 0; i < 2 && !err; i++) {
    const int64_t *st = as.s[j[i]];
    bool hf = heads_first(as, j[i]);
    uint64_t B = (uint64_t)(BH / as.H), rs = (uint64_t)st[2] * sizeof(bf16), hs = (uint64_t)st[1] * sizeof(bf16);
    uint64_t bs = B > 1 ? (uint64_t)st[0] * sizeof(bf16) : (rs * T > hs * as.H ? rs * T : hs * as.H);  // one batch: any
    uint64_t dims[4] = {128, hf ? (uint64_t)as.H : (uint64_t)T, hf ? (uint64_t)T : (uint64_t)as.H, B};
    uint64_t strides[3] = {hf ? hs : rs, hf ? rs : hs, bs};
    uint32_t box[4] = {64, hf ? 1u : 64u, hf ? 64u : 1u, 1};
    err = sr_tma_map_bf16(&tm[i], base[i], 4, dims, strides, box);
  }
  static int said;
  if (err && !said++) fprintf(stderr, "speedrun: %s: %s; the cp.async kernel runs\n", sw, err);
  return err;
}
// the default (SR_FLEX_BWD_DQB=0 off; with the TMA loads and EPI stores): a tile's dQ added by one bulk
// reduce from a shared-memory slot (flex_backward_hopper_kernel's DQB), the accumulator in fragment
// order; otherwise by float2 atomics
static int hopper_backward_dqb(void) {
  static int v = -1;
  return !sr_env_is(&v, "SR_FLEX_BWD_DQB", "0");
}
// SR_FLEX_BWD_SPLIT=1: dQ by a kernel of its own (flex_backward_dq_hopper_kernel) instead of f32
// atomics from the dK / dV kernel
extern "C" int sr_flex_hopper_split(void) {
  static int v = -1;
  return sr_env_is(&v, "SR_FLEX_BWD_SPLIT", "1");
}

// the dK / dV kernel's shared memory: K, V (128 keys), NS stages of Q and dO, dS^T, DQB slots of a
// dQ tile (f32), NS stages of lse / delta / doc ids (one warpgroup, two stages: 108,032 bytes, two blocks an SM)
static constexpr size_t bwd_smem(int ns, bool tma = false, int dqb = 0) {
  return (size_t)(2 * 128 * 128 + 2 * ns * 64 * 128 + 128 * 64) * sizeof(bf16) +
         (size_t)(dqb * 64 * 128 + ns * 192) * sizeof(float) + (tma ? ns * sizeof(uint64_t) + 1024 : 0);  // TMA: mbarriers, alignment
}
// Hopper: 227 KB a block at most, 228 KB an SM with 1 KB reserved a block
static_assert(bwd_smem(4) <= 232448, "the dK / dV kernel's largest instance fits a block");
static_assert(bwd_smem(3, true) <= 232448, "the dK / dV kernel's TMA instance fits a block");
static_assert(bwd_smem(3, true, 1) <= 232448, "the DQB instance fits a block");

// the dK / dV kernel (flex_backward_hopper_kernel<NS, DQ, OVB, ...>) launched: a block per 128 keys
template <int NS, bool DQ, bool OVB, bool TMA = false, bool EPI = false, int DQB = 0>
static cudaError_t dkdv(unsigned nb, unsigned BH, bf16 *dk, bf16 *dv, float *dq_acc, const bf16 *q, const bf16 *k,
                        const bf16 *v, const bf16 *dout, const float *lse, const float *delta, int T, float scale,
                        flex_mask fm, att_strides as, cudaStream_t s, const CUtensorMap *tm = NULL) {
  auto *kern = flex_backward_hopper_kernel<NS, DQ, OVB, TMA, EPI, DQB>;
  size_t smem = bwd_smem(NS, TMA, DQB);
  CUtensorMap none = {};
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  kern<<<dim3(nb, BH), 256, smem, s>>>(dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as,
                                                       tm ? tm[0] : none, tm ? tm[1] : none);
  return cudaGetLastError();
}

// dq_acc: the f32 accumulator (dQ by atomics or bulk adds: *frag set where the latter's fragment order
// was written) or NULL: the split, dQ by its own kernel, the dK / dV kernel on NS stages or
// (SR_FLEX_BWD_OVERLAP=1) overlapped on four
template <int NS>
static cudaError_t backward_ns(bf16 *dk, bf16 *dv, bf16 *dq, float *dq_acc, const bf16 *q, const bf16 *k, const bf16 *v,
                               const bf16 *dout, const float *lse, const float *delta, int T, float scale, flex_mask fm,
                               att_strides as, int64_t BH, cudaStream_t s, int *frag) {
  unsigned nb = (unsigned)fm.nb, nbh = (unsigned)BH;
  dim3 grid(nb, nbh);
  cudaError_t e;
  CUtensorMap tm[2];  // the default: TMA loads and EPI stores where they apply
  bool tma = dq_acc && hopper_backward_tma() && !tile_maps(tm, q, dout, 5, T, as, BH, "SR_FLEX_BWD_TMA");
  bool epi = dq_acc && hopper_backward_epi() && epi_aligned(dk, dv, as);
  bool dqb = epi && tma && hopper_backward_dqb();
  *frag = dqb;
  if (dqb)
    return dkdv<NS, true, false, true, true, 1>(nb, nbh, dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, s, tm);
  if (epi && tma)
    return dkdv<NS, true, false, true, true>(nb, nbh, dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, s, tm);
  if (epi) return dkdv<NS, true, false, false, true>(nb, nbh, dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, s);
  if (tma)
    return dkdv<NS, true, false, true>(nb, nbh, dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, s, tm);
  if (dq_acc) return dkdv<NS, true, false>(nb, nbh, dk, dv, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, s);
  e = hopper_backward_overlap() ? dkdv<4, false, true>(nb, nbh, dk, dv, NULL, q, k, v, dout, lse, delta, T, scale, fm, as, s)
                                : dkdv<NS, false, false>(nb, nbh, dk, dv, NULL, q, k, v, dout, lse, delta, T, scale, fm, as, s);
  if (e != cudaSuccess) return e;
  size_t smq = (size_t)(2 * 128 * 128 + 2 * NS * 64 * 128) * sizeof(bf16) + NS * 64 * sizeof(int32_t);
  e = cudaFuncSetAttribute(flex_backward_dq_hopper_kernel<NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smq);
  if (e != cudaSuccess) return e;
  flex_backward_dq_hopper_kernel<NS><<<grid, 256, smq, s>>>(dq, q, k, v, dout, lse, delta, T, scale, fm, as);
  return cudaGetLastError();
}

// the forward kernel's shared memory: Q (128 rows), NS stages of kb 64-key sub-tiles of K and V, their
// doc ids, TMA: the stages' mbarriers and 1 KB for the alignment
static constexpr size_t fwd_smem(int ns, bool tma, int kb = 1) {
  return (size_t)(128 * 128 + 2 * ns * kb * 64 * 128) * sizeof(bf16) + ns * kb * 64 * sizeof(int32_t) +
         (tma ? ns * sizeof(uint64_t) + 1024 : 0);
}
static_assert(fwd_smem(3, true, 2) <= 232448, "the forward's KB 2 instance fits a block");

template <int NS, bool OV = false, bool TMA = false, int KB = 1>
static cudaError_t forward_ns(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T, float scale_log2,
                              flex_mask fm, att_strides as, int64_t BH, cudaStream_t s, const CUtensorMap *tm = NULL) {
  size_t smem = fwd_smem(NS, TMA, KB);
  CUtensorMap none = {};
  auto *kern = flex_forward_hopper_kernel<NS, OV, TMA, KB>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  kern<<<dim3((unsigned)fm.nb, (unsigned)BH), 256, smem, s>>>(out, lse, q, k, v, T, scale_log2, fm, as,
                                                                                tm ? tm[0] : none, tm ? tm[1] : none);
  return cudaGetLastError();
}

cudaError_t sr_flex_backward_hopper(bf16 *dk, bf16 *dv, bf16 *dq, float *dq_acc, const bf16 *q, const bf16 *k,
                                    const bf16 *v, const bf16 *dout, const float *lse, const float *delta, int T, float scale,
                                    flex_mask fm, att_strides as, int64_t BH, cudaStream_t s, int *dq_frag) {
  *dq_frag = 0;
  return hopper_stages() == 2 ? backward_ns<2>(dk, dv, dq, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, BH, s, dq_frag)
                              : backward_ns<3>(dk, dv, dq, dq_acc, q, k, v, dout, lse, delta, T, scale, fm, as, BH, s, dq_frag);
}

cudaError_t sr_flex_forward_hopper(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T,
                                   float scale_log2, flex_mask fm, att_strides as, int64_t BH, cudaStream_t s) {
  CUtensorMap tm[2];
  bool tma = hopper_forward_tma() && !tile_maps(tm, k, v, 3, T, as, BH, "SR_FLEX_FWD_TMA");
  if (hopper_forward_overlap() && tma && hopper_forward_bk128())
    return forward_ns<3, true, true, 2>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s, tm);
  if (hopper_forward_overlap())
    return tma ? forward_ns<4, true, true>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s, tm)
               : forward_ns<4, true>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s);
  if (tma)
    return hopper_stages() == 2 ? forward_ns<2, false, true>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s, tm)
                                : forward_ns<3, false, true>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s, tm);
  return hopper_stages() == 2 ? forward_ns<2>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s)
                              : forward_ns<3>(out, lse, q, k, v, T, scale_log2, fm, as, BH, s);
}
