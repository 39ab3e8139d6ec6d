/*
** flex_attention.cu: flex attention on cuda over a block mask, forward and backward (the mask's
** layout and element mask: host/core/flex.h; its build on the device: kernels/flex_mask.cu; the CPU
** reference: host/cpu/attention.c).
**
** Attention, bf16 with D 64 or 128 and blocks of 128: the flash kernels of attention.cu (same
** fragments, flash_common.cuh) iterating only the listed blocks. Forward: one thread block per
** query block of 128 (8 warps of 16 rows), its kv blocks as tiles of 64 keys in ascending order
** (the partial and full lists merged: flex_tiles), double-buffered through cp.async: kernel 2 (4
** warps of 32 rows, two blocks an SM; 5-12 % faster than kernel 1 on an H100, SR_FLEX_FWD_V2=0 takes
** kernel 1: 8 warps of 16 rows); the element
** mask is applied on partial tiles only,
** tiles no pair of which can be visible under causal/window are skipped (whole block or per warp).
** Backward: one thread block per 64 keys (half a mask block), iterating the query blocks of the
** transposed lists as tiles of 64 queries; dQ through float2 atomics into an f32 accumulator.
** A query that sees no key gets out 0 and lse -inf. On a Hopper GPU (D 128) the backward and, but
** at a window known on the host below 512 tokens, the forward are hopper/flex_attention_hopper.cu's
** (warpgroup MMA) by default; SR_FLEX_WGMMA (0: neither, 1: both everywhere, fwd, bwd) picks which of
** the two are (sr_flex_wgmma).
** Other dtypes, head dims (<= 128) or block sizes: plain kernels, a thread per query (forward,
** dQ) or per key (dK, dV), walking the same lists; contiguous tensors only.
** Gradient contract: dq, dk, dv are written (=).
*/
#include "common.cuh"        // defines: bf16, to_f, from_f, warp_sum, SR_CUDA_TRY, CEIL_DIV
#include "core/flex.h"       // defines: sr_flex_class, sr_flex_visible, sr_flex_count_at, sr_flex_index_at
#include "flash_common.cuh"  // defines: mma16816, ldA_x4, load_tile_async, att_strides, flash_ok, LOG2E
#include "flex_common.cuh"   // defines: flex_mask, flex_resolve, flex_vis_ids, flex_mask_tile, flex_dead, flex_tiles

// ----------------------------------------------------------------------------
// CUDA kernels: flash flex attention (bf16, tensor cores, blocks of 128)

// the flash forward over the listed tiles, as flash_attention_forward_kernel2 (attention.cu): 128
// queries a thread block in warps of 16 MT rows (MT m-tiles of 16 sharing each K and V fragment),
// K/V tiles of 64 keys double-buffered through cp.async.
// Kernel 1 (MT 1): 8 warps, one thread block an SM (D 128); Q staged in stage 1 and held in
// registers. Kernel 2 (MT 2, the default; SR_FLEX_FWD_V2=0: kernel 1): 4 warps of 32 rows, half kernel
// 1's shared-memory reads of K and V a tile, Q kept in shared memory (its fragments loaded a k-step at
// a time, so the registers hold two m-tiles' S and O), two thread blocks an SM (ptxas, D 128: 255
// registers, ~100 bytes spilled; D 64: 232, none). Both visit the same tiles with the same masks and
// sums in the same order, so the same values (a warp's m-tile that kernel 1 would skip as dead adds
// exact zeros in kernel 2).
template <int D, int MT>
__global__ void __launch_bounds__(256 / MT, MT == 2 ? 2 : D == 64 ? 2 : 1) flex_forward_kernel(bf16 *out, float *lse,
    const bf16 *q, const bf16 *k, const bf16 *v, int T, float scale_log2, flex_mask fm, att_strides as) {
  flex_resolve(fm);
  constexpr int LD = D + 8, BQ = 128, BK = 64, TILE = BK * LD, RW = 16 * MT;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *sm = (bf16 *)smem_raw;                       // stage s: K at 2s, V at 2s + 1 (tiles of 64 keys)
  bf16 *Qs = MT == 1 ? sm + 2 * TILE : sm + 4 * TILE;  // kernel 1: in stage 1 until read; kernel 2: its own
  int32_t *kd_s = (int32_t *)(sm + (MT == 1 ? 4 : 6) * TILE);  // stage s: the doc ids of its 64 keys at 64 s
  int qb = gridDim.x - 1 - blockIdx.x;
  int64_t bh = blockIdx.y;
  const bf16 *Q = q + att_base(as, 1, bh), *K = k + att_base(as, 2, bh), *V = v + att_base(as, 3, bh);
  int64_t qst = as.s[1][2], kst = as.s[2][2], vst = as.s[3][2], ost = as.s[0][2];
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  flex_tiles tl(fm, qb, 0);
  int qw = qb * BQ + w * RW;  // this warp's rows; m-tile m: rows qw + 16 m + g (+ 8)
  int32_t dq[MT][2];
#pragma unroll
  for (int m = 0; m < MT; m++)
#pragma unroll
    for (int h = 0; h < 2; h++) dq[m][h] = fm.doc ? fm.doc[qw + 16 * m + 8 * h + g] : 0;
  auto load_kv = [&](int s0, int stage) {
    load_tile_async<D, LD, BK, 256 / MT, true>(sm + 2 * stage * TILE, K, kst, s0, T);
    load_tile_async<D, LD, BK, 256 / MT, true>(sm + (2 * stage + 1) * TILE, V, vst, s0, T);
    if (fm.doc && threadIdx.x < BK) cp_async4(&kd_s[BK * stage + threadIdx.x], fm.doc + s0 + threadIdx.x, true);
  };

  load_tile_async<D, LD, BQ, 256 / MT, true>(Qs, Q, qst, qb * BQ, T);
  int ti = tl.next(fm, -1, qb * BQ, BQ, 0);
  bool part;
  if (ti < tl.n) load_kv(tl.start(ti, &part), 0);
  cp_async_commit();  // kernel 2: Q lands with the first tile (the loop's first wait)
  uint32_t qh[MT == 1 ? D / 16 : 1][4];  // kernel 1: this warp's Q fragments, held
  if constexpr (MT == 1) {
    cp_async_wait_all();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) ldA_x4(qh[kk], Qs, LD, w * 16, kk * 16);
  }

  float O[MT][D / 8][4], mx[MT][2], l[MT][2];
#pragma unroll
  for (int m = 0; m < MT; m++) {
#pragma unroll
    for (int i = 0; i < D / 8; i++) O[m][i][0] = O[m][i][1] = O[m][i][2] = O[m][i][3] = 0.f;
    mx[m][0] = mx[m][1] = -INFINITY;
    l[m][0] = l[m][1] = 0.f;
  }
  int st = 0;
  while (ti < tl.n) {
    int k0 = tl.start(ti, &part);  // before next(): the tiles are asked for in order
    int nx = tl.next(fm, ti, qb * BQ, BQ, 0), cur = st;
    cp_async_wait_all();
    __syncthreads();  // tile ti is in stage cur for everyone; the other stage (kernel 1: and Q) is free
    bool pn;
    if (nx < tl.n) load_kv(tl.start(nx, &pn), cur ^ 1);
    cp_async_commit();
    st ^= 1;
    ti = nx;
    if (part && flex_dead(fm, qw, RW, k0, BK)) continue;  // nothing of this tile is visible to this warp
    const bf16 *Ks = sm + 2 * cur * TILE, *Vs = Ks + TILE;
    float S[MT][8][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
      for (int j = 0; j < 8; j++) S[m][j][0] = S[m][j][1] = S[m][j][2] = S[m][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++) {
        if constexpr (MT == 1) { qa[m][0] = qh[kk][0]; qa[m][1] = qh[kk][1]; qa[m][2] = qh[kk][2]; qa[m][3] = qh[kk][3]; }
        else ldA_x4(qa[m], Qs, LD, w * RW + 16 * m, kk * 16);
      }
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b[4];
        ldB_nk_x4(b, Ks, LD, j * 8, kk * 16);
#pragma unroll
        for (int m = 0; m < MT; m++) {
          mma16816(S[m][j], qa[m], b);
          mma16816(S[m][j + 1], qa[m], b + 2);
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; m++) {
      int q0 = qw + 16 * m + g;
      if (part) flex_mask_tile(S[m], fm, q0, q0 + 8, k0, dq[m][0], dq[m][1], kd_s + BK * cur, t);  // partial blocks only
      float al0, al1;
      online_softmax_tile(S[m], scale_log2, mx[m][0], mx[m][1], l[m][0], l[m][1], al0, al1);
#pragma unroll
      for (int i = 0; i < D / 8; i++) { O[m][i][0] *= al0; O[m][i][1] *= al0; O[m][i][2] *= al1; O[m][i][3] *= al1; }
    }
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++) acc_to_A(a[m], S[m], kk);
#pragma unroll
      for (int i = 0; i < D / 8; i += 2) {
        uint32_t b[4];
        ldB_kn_x4(b, Vs, LD, kk * 16, i * 8);
#pragma unroll
        for (int m = 0; m < MT; m++) {
          mma16816(O[m][i], a[m], b);
          mma16816(O[m][i + 1], a[m], b + 2);
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; m++) {
    float l0 = l[m][0], l1 = l[m][1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;  // no key seen: out 0
    int q0 = qw + 16 * m + g, q1 = q0 + 8;
    bf16 *Ob = out + att_base(as, 0, bh);
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
      int col = i * 8 + 2 * t;
      *(uint32_t *)&Ob[(int64_t)q0 * ost + col] = pack_bf16(O[m][i][0] * i0, O[m][i][1] * i0);
      *(uint32_t *)&Ob[(int64_t)q1 * ost + col] = pack_bf16(O[m][i][2] * i1, O[m][i][3] * i1);
    }
    if (t == 0) {
      lse[bh * T + q0] = l0 > 0.f ? (mx[m][0] + log2f(l0)) * LN2 : -INFINITY;
      lse[bh * T + q1] = l1 > 0.f ? (mx[m][1] + log2f(l1)) * LN2 : -INFINITY;
    }
  }
}

// as flash_attention_backward_kernel2 (attention.cu): one thread block per 64 keys (half of kv
// block blockIdx.x / 2), over the query tiles of the transposed lists
template <int D, int NS>
__global__ void __launch_bounds__(128, D == 64 ? 3 : 1) flex_backward_kernel1(bf16 *dk, bf16 *dv, float *dq_acc, const bf16 *q,
                                                                             const bf16 *k, const bf16 *v, const bf16 *dout,
                                                                             const float *lse, const float *delta, int T,
                                                                             float scale, flex_mask fm, att_strides as) {
  flex_resolve(fm);
  constexpr int LD = D + 8, LDS = 64 + 8, TILE = 64 * LD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + TILE, *dSs = Vs + TILE + 2 * NS * TILE;
  float *ld_s = (float *)(dSs + 64 * LDS);  // stage s: lse at 192 s, delta at 192 s + 64, doc ids at 192 s + 128
  int kt0 = blockIdx.x * 64;  // this block's keys [kt0, kt0 + 64)
  int64_t bh = blockIdx.y;
  // as: 0 dk, 1 dv, 2 q, 3 k, 4 v, 5 dout
  const bf16 *Q = q + att_base(as, 2, bh), *K = k + att_base(as, 3, bh), *V = v + att_base(as, 4, bh),
             *dO = dout + att_base(as, 5, bh);
  const float *lse_b = lse + bh * T, *delta_b = delta + bh * T;
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float scale_log2 = scale * LOG2E;
  flex_tiles tl(fm, blockIdx.x >> 1, 1);
  auto load_q = [&](int q0, int st) {
    bf16 *Qs = Vs + TILE + 2 * st * TILE;
    load_tile_async<D, LD, 64, 128, true>(Qs, Q, as.s[2][2], q0, T);
    load_tile_async<D, LD, 64, 128, true>(Qs + TILE, dO, as.s[5][2], q0, T);
    int r = q0 + (threadIdx.x & 63);
    const float *src = threadIdx.x < 64 ? lse_b : delta_b;
    cp_async4(&ld_s[192 * st + threadIdx.x], src + r, true);
    if (fm.doc && threadIdx.x < 64) cp_async4(&ld_s[192 * st + 128 + threadIdx.x], fm.doc + r, true);
  };

  load_tile_async<D, LD, 64, 128, true>(Ks, K, as.s[3][2], kt0, T);
  load_tile_async<D, LD, 64, 128, true>(Vs, V, as.s[4][2], kt0, T);
  bool part;
  int ti = tl.next(fm, -1, kt0, 64, 1);
  if (NS == 2 && ti < tl.n) load_q(tl.start(ti, &part), 0);
  cp_async_commit();
  float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) dK[i][e] = dV[i][e] = 0.f;
  int kw = kt0 + w * 16, key0 = kw + g, key1 = key0 + 8;
  int32_t dk0 = fm.doc ? fm.doc[key0] : 0, dk1 = fm.doc ? fm.doc[key1] : 0;
  int st = 0;

  while (ti < tl.n) {
    int qt0 = tl.start(ti, &part);  // before next(): the tiles are asked for in order
    int nx = tl.next(fm, ti, kt0, 64, 1);
    if (NS == 1) {
      __syncthreads();  // everyone is done with the previous tile
      load_q(qt0, 0);
      cp_async_commit();
    }
    cp_async_wait_all();
    __syncthreads();  // tile ti is in stage st for everyone; the other stage and dSs are free
    if (NS == 2) {
      bool p2;
      if (nx < tl.n) load_q(tl.start(nx, &p2), st ^ 1);
      cp_async_commit();
    }
    const bf16 *Qs = Vs + TILE + 2 * st * TILE, *dOs = Qs + TILE;
    const float *lse_s = ld_s + 192 * st, *delta_s = lse_s + 64;
    const int32_t *qd = (const int32_t *)(lse_s + 128);
    float P[8][4], dS[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) P[j][e] = dS[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      uint32_t ak[4], av[4];
      ldA_x4(ak, Ks, LD, w * 16, kk * 16);
      ldA_x4(av, Vs, LD, w * 16, kk * 16);
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b[4];
        ldB_nk_x4(b, Qs, LD, j * 8, kk * 16);
        mma16816(P[j], ak, b);
        mma16816(P[j + 1], ak, b + 2);
        ldB_nk_x4(b, dOs, LD, j * 8, kk * 16);
        mma16816(dS[j], av, b);
        mma16816(dS[j + 1], av, b + 2);
      }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int qi = j * 8 + 2 * t + (e & 1);
        float p = exp2f(fmaf(P[j][e], scale_log2, -lse_s[qi] * LOG2E));
        if (part && !flex_vis_ids(fm, qt0 + qi, e < 2 ? key0 : key1, fm.doc ? qd[qi] : 0, e < 2 ? dk0 : dk1)) p = 0.f;
        P[j][e] = p;
        dS[j][e] = p * (dS[j][e] - delta_s[qi]);
      }
    }
    // P and dS as bf16 A fragments at once (half the registers of their f32 accumulators, which die
    // here), dS's also to shared memory for dQ = dS K: its packed pairs are the fragments' own
    // (key rows g and g + 8, query columns 16 kk + 8 h + 2 t)
    uint32_t ap[4][4], as2[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      acc_to_A(ap[kk], P, kk);
      acc_to_A(as2[kk], dS, kk);
#pragma unroll
      for (int h = 0; h < 2; h++) {
        *(uint32_t *)&dSs[(w * 16 + g) * LDS + (2 * kk + h) * 8 + 2 * t] = as2[kk][2 * h];
        *(uint32_t *)&dSs[(w * 16 + g + 8) * LDS + (2 * kk + h) * 8 + 2 * t] = as2[kk][2 * h + 1];
      }
    }
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
#pragma unroll
      for (int i = 0; i < D / 8; i += 2) {
        uint32_t b[4];
        ldB_kn_x4(b, dOs, LD, kk * 16, i * 8);
        mma16816(dV[i], ap[kk], b);
        mma16816(dV[i + 1], ap[kk], b + 2);
        ldB_kn_x4(b, Qs, LD, kk * 16, i * 8);
        mma16816(dK[i], as2[kk], b);
        mma16816(dK[i + 1], as2[kk], b + 2);
      }
    }
    __syncthreads();
    // rows qr0 = qt0 + w * 16 + g and qr0 + 8 of the accumulator, at column 2 t: one address a tile,
    // the rest constant offsets (computed per atomic, the addresses cost ~6 instructions each)
    float *dq0 = dq_acc + (bh * T + qt0 + w * 16 + g) * D + 2 * t;
#pragma unroll
    for (int half = 0; half < 2; half++) {
      float dQ[D / 16][4];
#pragma unroll
      for (int i = 0; i < D / 16; i++) dQ[i][0] = dQ[i][1] = dQ[i][2] = dQ[i][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < 4; kk++) {
        uint32_t a[4];
        ldAT_x4(a, dSs, LDS, w * 16, kk * 16);
#pragma unroll
        for (int i = 0; i < D / 16; i += 2) {
          uint32_t b[4];
          ldB_kn_x4(b, Ks, LD, kk * 16, half * (D / 2) + i * 8);
          mma16816(dQ[i], a, b);
          mma16816(dQ[i + 1], a, b + 2);
        }
      }
#pragma unroll
      for (int i = 0; i < D / 16; i++) {
        float *p = dq0 + half * (D / 2) + i * 8;
        atomicAdd((float2 *)p, make_float2(dQ[i][0] * scale, dQ[i][1] * scale));
        atomicAdd((float2 *)(p + 8 * D), make_float2(dQ[i][2] * scale, dQ[i][3] * scale));
      }
    }
    st = NS == 2 ? st ^ 1 : 0;
    ti = nx;
  }
  bf16 *dKb = dk + att_base(as, 0, bh), *dVb = dv + att_base(as, 1, bh);
  int64_t kst = as.s[0][2], vst = as.s[1][2];
#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    int col = i * 8 + 2 * t;
    *(uint32_t *)&dKb[(int64_t)key0 * kst + col] = pack_bf16(dK[i][0] * scale, dK[i][1] * scale);
    *(uint32_t *)&dVb[(int64_t)key0 * vst + col] = pack_bf16(dV[i][0], dV[i][1]);
    *(uint32_t *)&dKb[(int64_t)key1 * kst + col] = pack_bf16(dK[i][2] * scale, dK[i][3] * scale);
    *(uint32_t *)&dVb[(int64_t)key1 * vst + col] = pack_bf16(dV[i][2], dV[i][3]);
  }
}

// ----------------------------------------------------------------------------
// CUDA kernels: plain flex attention (any float dtype, D <= 128, any block size); a thread per row

// calls body(j) for every key j that query i sees (its block's lists; element mask on partial)
template <typename F>
__device__ __forceinline__ void flex_for_keys(const flex_mask &m, int bs, int i, F body) {
  int qb = i / bs;
  for (int l = SR_FLEX_KV; l <= SR_FLEX_FULL_KV; l++) {
    int n = m.bm[sr_flex_count_at(m.nb, l) + qb];
    const int32_t *idx = m.bm + sr_flex_index_at(m.nb, l) + (int64_t)qb * m.nb;
    for (int x = 0; x < n; x++)
      for (int j = idx[x] * bs; j < (idx[x] + 1) * bs; j++)
        if (l == SR_FLEX_FULL_KV || flex_vis(m, i, j)) body(j);
  }
}
// calls body(i) for every query i that sees key j (the transposed lists)
template <typename F>
__device__ __forceinline__ void flex_for_queries(const flex_mask &m, int bs, int j, F body) {
  int kb = j / bs;
  for (int l = SR_FLEX_Q; l <= SR_FLEX_FULL_Q; l++) {
    int n = m.bm[sr_flex_count_at(m.nb, l) + kb];
    const int32_t *idx = m.bm + sr_flex_index_at(m.nb, l) + (int64_t)kb * m.nb;
    for (int x = 0; x < n; x++)
      for (int i = idx[x] * bs; i < (idx[x] + 1) * bs; i++)
        if (l == SR_FLEX_FULL_Q || flex_vis(m, i, j)) body(i);
  }
}

template <typename T>
__global__ void flex_forward_kernel0(T *out, float *lse, const T *q, const T *k, const T *v, int64_t BH, int Tn, int D, int bs,
                                     float scale, flex_mask fm) {
  flex_resolve(fm);
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * Tn) return;
  int64_t bh = r / Tn;
  const T *K = k + bh * Tn * D, *V = v + bh * Tn * D, *Qr = q + r * D;
  float acc[128], m = -INFINITY, l = 0.f;
  for (int d = 0; d < D; d++) acc[d] = 0.f;
  flex_for_keys(fm, bs, (int)(r % Tn), [&](int j) {
    float s = 0.f;
    for (int d = 0; d < D; d++) s += to_f<T>(Qr[d]) * to_f<T>(K[(int64_t)j * D + d]);
    s *= scale;
    float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
    l = l * a + p;
    for (int d = 0; d < D; d++) acc[d] = acc[d] * a + p * to_f<T>(V[(int64_t)j * D + d]);
    m = mn;
  });
  for (int d = 0; d < D; d++) out[r * D + d] = from_f<T>(l > 0.f ? acc[d] / l : 0.f);
  lse[r] = l > 0.f ? m + logf(l) : -INFINITY;
}

// delta[row] = sum_d dout[row,d] * out[row,d]; a warp per row
template <typename T>
__global__ void flex_delta_kernel0(float *delta, const T *dout, const T *out, int64_t rows, int D) {
  int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f<T>(dout[r * D + d]) * to_f<T>(out[r * D + d]);
  s = warp_sum(s);
  if (lane == 0) delta[r] = s;
}

// dq[i] = scale * sum_j p_ij (dO_i . v_j - delta_i) k_j
template <typename T>
__global__ void flex_backward_dq_kernel0(T *dq, const T *q, const T *k, const T *v, const T *dout, const float *lse,
                                         const float *delta, int64_t BH, int Tn, int D, int bs, float scale, flex_mask fm) {
  flex_resolve(fm);
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * Tn) return;
  int64_t bh = r / Tn;
  const T *K = k + bh * Tn * D, *V = v + bh * Tn * D;
  float acc[128], L = lse[r], dl = delta[r];
  for (int d = 0; d < D; d++) acc[d] = 0.f;
  flex_for_keys(fm, bs, (int)(r % Tn), [&](int j) {
    float s = 0.f, dp = 0.f;
    for (int d = 0; d < D; d++) {
      s += to_f<T>(q[r * D + d]) * to_f<T>(K[(int64_t)j * D + d]);
      dp += to_f<T>(dout[r * D + d]) * to_f<T>(V[(int64_t)j * D + d]);
    }
    float ds = expf(s * scale - L) * (dp - dl);
    for (int d = 0; d < D; d++) acc[d] += ds * to_f<T>(K[(int64_t)j * D + d]);
  });
  for (int d = 0; d < D; d++) dq[r * D + d] = from_f<T>(acc[d] * scale);
}

// dv[j] = sum_i p_ij dO_i ; dk[j] = scale * sum_i p_ij (dO_i . v_j - delta_i) q_i
template <typename T>
__global__ void flex_backward_dkv_kernel0(T *dk, T *dv, const T *q, const T *k, const T *v, const T *dout, const float *lse,
                                          const float *delta, int64_t BH, int Tn, int D, int bs, float scale, flex_mask fm) {
  flex_resolve(fm);
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * Tn) return;
  int64_t bh = r / Tn;
  const T *Q = q + bh * Tn * D, *dO = dout + bh * Tn * D;
  float ak[128], avv[128];
  for (int d = 0; d < D; d++) ak[d] = avv[d] = 0.f;
  flex_for_queries(fm, bs, (int)(r % Tn), [&](int i) {
    float s = 0.f, dp = 0.f;
    for (int d = 0; d < D; d++) {
      s += to_f<T>(Q[(int64_t)i * D + d]) * to_f<T>(k[r * D + d]);
      dp += to_f<T>(dO[(int64_t)i * D + d]) * to_f<T>(v[r * D + d]);
    }
    float p = expf(s * scale - lse[bh * Tn + i]), ds = p * (dp - delta[bh * Tn + i]);
    for (int d = 0; d < D; d++) {
      avv[d] += p * to_f<T>(dO[(int64_t)i * D + d]);
      ak[d] += ds * to_f<T>(Q[(int64_t)i * D + d]);
    }
  });
  for (int d = 0; d < D; d++) {
    dk[r * D + d] = from_f<T>(ak[d] * scale);
    dv[r * D + d] = from_f<T>(avv[d]);
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

// q, k, v, out (and grads): one dtype (f32 or bf16) and shape [B,H,T,D] with T = the mask's
static const char *check_flex(sr_tensor *const *ts, int n, const sr_tensor *bm, int *dtype, int64_t *nb, int *bs) {
  const char *e = flex_mask_dims(bm, nb, bs);
  if (e) return e;
  int dt = ts[0]->dtype;
  for (int j = 0; j < n; j++) {
    if (ts[j]->dtype != dt) return sr_errf("q, k, v, out (and grads) must share one dtype");
    if (ts[j]->ndim != 4) return sr_errf("attention tensors must be [B,H,T,D]");
    for (int k = 0; k < 4; k++)
      if (ts[j]->shape[k] != ts[0]->shape[k]) return sr_errf("attention tensors must share one shape");
  }
  if (dt != SR_F32 && dt != SR_BF16) return sr_errf("dtype %s is not supported on cuda (f32 or bf16)", sr_dtype_name((sr_dtype)dt));
  if (ts[0]->shape[2] != *nb * *bs) return sr_errf("the block mask is for another sequence length");
  if (ts[0]->shape[3] > 128) return sr_errf("head dim %d is not supported on cuda (at most 128)", (int)ts[0]->shape[3]);
  *dtype = dt;
  return NULL;
}

// the mask of a call; the window tensor (when the call has one) at slot wat
static flex_mask mask_of(const sr_kcall *c, const sr_tensor *bm, int64_t nb, int wat) {
  flex_mask m;
  m.bm = (const int32_t *)sr_data(bm);
  m.wt = c->nt > wat && c->t[wat] ? (const int32_t *)sr_data(c->t[wat]) : NULL;
  m.doc = c->i[2] ? m.bm + sr_flex_doc_at(nb) : NULL;
  m.nb = nb;
  m.causal = (int)c->i[0];
  m.window = (int)c->i[1];
  flex_mask_span(m);
  return m;
}

// On a device of compute capability 9, which kernels of kernels/hopper/ (wgmma; their variants:
// SR_FLEX_STAGES, SR_FLEX_FWD_BK, SR_FLEX_BWD_SPLIT there) replace the mma.sync ones: by
// default the backward everywhere and the forward but at a narrow window (flex_narrow; on an H100 with
// the record-12 mask, fwd+bwd 1.929 -> 1.721 ms, thirty-third session, then 1.652 with the forward's
// 128-key tiles, thirty-fourth: bench/RESULTS.md);
// SR_FLEX_WGMMA=1 both (SR_FLEX_WGMMA_FWD | SR_FLEX_WGMMA_BWD), fwd the forward, bwd the backward
// (wherever it applies, narrow windows too: for A/Bs), 0 none
extern "C" int sr_flex_wgmma(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("SR_FLEX_WGMMA");
    int dev = 0, major = 0, want = !e ? SR_FLEX_WGMMA_FWD | SR_FLEX_WGMMA_BWD | SR_FLEX_WGMMA_AUTO : !strcmp(e, "bwd") ? SR_FLEX_WGMMA_BWD
                                     : !strcmp(e, "1") ? SR_FLEX_WGMMA_FWD | SR_FLEX_WGMMA_BWD
                                     : !strcmp(e, "fwd") ? SR_FLEX_WGMMA_FWD : 0;
    v = want && cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9 ? want : 0;
  }
  return v;
}

// SR_FLEX_BWD_NS=2: the mma.sync backward (D 128) with Q / dO double-buffered (NS 2: 115,200 bytes of
// shared memory a block, two blocks an SM still fit the 228 KB), else one stage (80 KB; the default
// until measured faster: bench/gpu_session.sh's flex part runs both)
static int flex_bwd_ns(void) {
  static int v = -1;
  return sr_env_is(&v, "SR_FLEX_BWD_NS", "2") ? 2 : 1;
}

// SR_FLEX_FWD_V2: 1 the mma.sync forward's kernel 2 (4 warps of 32 rows, two blocks an SM), 0 kernel 1;
// unset (or another value), dflt: kernel 2 for flex attention, kernel 1 for dense attention
extern "C" int sr_flex_fwd_v2(int dflt) {
  static int v = -2;
  if (v == -2) {
    const char *e = getenv("SR_FLEX_FWD_V2");
    v = e && !strcmp(e, "1") ? 1 : e && !strcmp(e, "0") ? 0 : -1;
  }
  return v < 0 ? dflt : v;
}

const char *sr_flex_forward_flash(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T, int D,
                                  float scale_log2, flex_mask fm, att_strides as, int64_t BH, bool v2, cudaStream_t s) {
  dim3 grid((unsigned)fm.nb, (unsigned)BH);  // v2: kernel 2, Q in shared memory too, 128 threads
  size_t smem = (size_t)(v2 ? 6 : 4) * 64 * (D + 8) * sizeof(bf16) + 2 * 64 * sizeof(int32_t);
#define FWD(DD, MT)                                                                                          \
  SR_CUDA_TRY(cudaFuncSetAttribute(flex_forward_kernel<DD, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)); \
  flex_forward_kernel<DD, MT><<<grid, 256 / MT, smem, s>>>(out, lse, q, k, v, T, scale_log2, fm, as);
  if (v2 && D == 64) { FWD(64, 2) }
  else if (v2) { FWD(128, 2) }
  else if (D == 64) { FWD(64, 1) }
  else { FWD(128, 1) }
#undef FWD
  SR_LAUNCH_CHECK();
  return NULL;
}

// a window known on the host of fewer than 512 tokens: a query block sees a kv tile or a few, too few
// to cover the Hopper forward's Q load and its pipeline's fill. Forward ms, mma.sync kernel 2 / Hopper
// (one H100, record-12 documents, thirty-third session): window 128 0.260 / 0.302, 256 0.333 / 0.355,
// 384 0.389 / 0.401, 512 0.437 / 0.437, 1024 0.559 / 0.536. A window in a device tensor (record 16's
// block window) is not known here: the Hopper kernel takes it (0.523 / 0.511 ms at 8 blocks). Those Hopper
// numbers are its 64-key tiles'; with the 128-key tiles (the default since) window 512 is 0.393: the
// threshold is to be timed again
static bool flex_narrow(const flex_mask &fm) { return !fm.wt && fm.window > 0 && fm.window < 512; }
// the forward through kernels/hopper/ (D 128, sr_flex_wgmma; by default not at a narrow window)
static bool flex_hopper_fwd(int D, const flex_mask &fm) {
  int w = sr_flex_wgmma();
  return D == 128 && (w & SR_FLEX_WGMMA_FWD) && !((w & SR_FLEX_WGMMA_AUTO) && flex_narrow(fm));
}

extern "C" const char *sr_cuda_flex_attention(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *lse = c->t[1], *q = c->t[2], *k = c->t[3], *v = c->t[4], *bm = c->t[5];
  sr_tensor *ts[4] = {out, q, k, v};
  int dt, bs;
  int64_t nb;
  const char *e = check_flex(ts, 4, bm, &dt, &nb, &bs);
  if (e) return e;
  if (lse->dtype != SR_F32) return sr_errf("lse must be f32");
  int64_t BH = q->shape[0] * q->shape[1];
  int T = (int)q->shape[2], D = (int)q->shape[3];
  float scale = (float)c->f[0];
  if (BH == 0) return NULL;
  flex_mask fm = mask_of(c, bm, nb, 6);
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (bs == 128 && flash_ok(dt, D, ts, 4) && flex_hopper_fwd(D, fm)) {
    cudaError_t ce = sr_flex_forward_hopper((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
                                            (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), T, scale * LOG2E, fm,
                                            strides_of(ts, 4), BH, s);
    return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
  if (bs == 128 && flash_ok(dt, D, ts, 4))
    return sr_flex_forward_flash((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
                                 (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), T, D, scale * LOG2E, fm,
                                 strides_of(ts, 4), BH, sr_flex_fwd_v2(1), s);
  if (!all_contig(ts, 4)) return sr_errf("non-contiguous flex attention inputs need bf16, head dim 64 or 128 and blocks of 128");
  unsigned grid = (unsigned)CEIL_DIV(BH * T, (int64_t)128);
  if (dt == SR_F32)
    flex_forward_kernel0<float><<<grid, 128, 0, s>>>((float *)sr_data(out), (float *)sr_data(lse), (const float *)sr_data(q),
        (const float *)sr_data(k), (const float *)sr_data(v), BH, T, D, bs, scale, fm);
  else
    flex_forward_kernel0<bf16><<<grid, 128, 0, s>>>((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
        (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), BH, T, D, bs, scale, fm);
  SR_LAUNCH_CHECK();
  return NULL;
}

// the backward through kernels/hopper/ (D 128, sr_flex_wgmma): by default everywhere (with its dQ by
// bulk adds it is faster than mma.sync at a window of 128 tokens too: ~0.78 against ~0.92 ms, one
// H100, thirty-third session)
static bool flex_hopper_bwd(int D) { return D == 128 && (sr_flex_wgmma() & SR_FLEX_WGMMA_BWD); }

// the flash backward (bf16, D 64/128, blocks of 128): delta pre-pass, the kernel, dq conversion
// (dq_acc NULL: the Hopper kernels' split backward, dq written directly)
static cudaError_t flex_backward_flash(const sr_kcall *c, sr_tensor *const *tsf, float *delta, float *dq_acc, int64_t rows,
                                       int T, int D, flex_mask fm, cudaStream_t s) {
  sr_tensor *dk = tsf[0], *dv = tsf[1], *q = tsf[2], *k = tsf[3], *v = tsf[4], *dout = tsf[5], *out = tsf[6], *dq = tsf[7];
  att_strides as = strides_of(tsf, 8);
  float scale = (float)c->f[0];
  cudaError_t ce = attention_delta_flash(delta, (const bf16 *)sr_data(dout), (const bf16 *)sr_data(out), rows / T, T, D, as, s);
  bool hopper = flex_hopper_bwd(D), split = !dq_acc;
  int dq_frag = 0;  // the Hopper backward's accumulator in fragment order (SR_FLEX_BWD_DQB)
  if (ce == cudaSuccess && !split) ce = cudaMemsetAsync(dq_acc, 0, (size_t)rows * D * sizeof(float), s);
  dim3 grid((unsigned)(2 * fm.nb), (unsigned)(rows / T));
  size_t tile = (size_t)64 * (D + 8) * sizeof(bf16), dsb = (size_t)64 * 72 * sizeof(bf16);
  if (hopper) {  // the default on Hopper (sr_flex_wgmma)
    if (ce == cudaSuccess)
      ce = sr_flex_backward_hopper((bf16 *)sr_data(dk), (bf16 *)sr_data(dv), (bf16 *)sr_data(dq), split ? NULL : dq_acc,
                                   (const bf16 *)sr_data(q), (const bf16 *)sr_data(k), (const bf16 *)sr_data(v),
                                   (const bf16 *)sr_data(dout), (const float *)sr_data(c->t[8]), delta, T, scale, fm, as,
                                   rows / T, s, &dq_frag);
  } else {
    // D 64 and D 128 with SR_FLEX_BWD_NS=2: Q / dO double-buffered (D 128 at the largest carveout:
    // two blocks of 115,200 bytes an SM); D 128 otherwise one stage
    bool ns2 = D == 64 || flex_bwd_ns() == 2;
    auto *bwd1 = D == 64 ? flex_backward_kernel1<64, 2> : ns2 ? flex_backward_kernel1<128, 2> : flex_backward_kernel1<128, 1>;
    size_t smem = ns2 ? 6 * tile + dsb + 2 * 192 * sizeof(float) : 4 * tile + dsb + 192 * sizeof(float);
    if (ce == cudaSuccess && D == 128 && ns2)
      ce = cudaFuncSetAttribute(bwd1, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (ce == cudaSuccess) ce = cudaFuncSetAttribute(bwd1, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess) {
      bwd1<<<grid, 128, smem, s>>>((bf16 *)sr_data(dk), (bf16 *)sr_data(dv), dq_acc, (const bf16 *)sr_data(q),
                                   (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), (const bf16 *)sr_data(dout),
                                   (const float *)sr_data(c->t[8]), delta, T, scale, fm, as);
      ce = cudaGetLastError();
    }
  }
  if (ce == cudaSuccess && !split) {
    ce = attention_dq_convert((bf16 *)sr_data(dq), dq_acc, rows / T, T, D, as, s, dq_frag);
  }
  return ce;
}

// the plain backward (contiguous tensors)
template <typename T>
static cudaError_t flex_backward_plain(const sr_kcall *c, float *delta, int64_t BH, int Tn, int D, int bs, flex_mask fm, cudaStream_t s) {
  T *dq = (T *)sr_data(c->t[0]), *dk = (T *)sr_data(c->t[1]), *dv = (T *)sr_data(c->t[2]);
  const T *dout = (const T *)sr_data(c->t[3]), *q = (const T *)sr_data(c->t[4]), *k = (const T *)sr_data(c->t[5]);
  const T *v = (const T *)sr_data(c->t[6]), *out = (const T *)sr_data(c->t[7]);
  const float *lse = (const float *)sr_data(c->t[8]);
  float scale = (float)c->f[0];
  int64_t rows = BH * Tn;
  flex_delta_kernel0<T><<<(unsigned)CEIL_DIV(rows * 32, (int64_t)256), 256, 0, s>>>(delta, dout, out, rows, D);
  cudaError_t ce = cudaGetLastError();
  unsigned grid = (unsigned)CEIL_DIV(rows, (int64_t)128);
  if (ce == cudaSuccess) {
    flex_backward_dq_kernel0<T><<<grid, 128, 0, s>>>(dq, q, k, v, dout, lse, delta, BH, Tn, D, bs, scale, fm);
    ce = cudaGetLastError();
  }
  if (ce == cudaSuccess) {
    flex_backward_dkv_kernel0<T><<<grid, 128, 0, s>>>(dk, dv, q, k, v, dout, lse, delta, BH, Tn, D, bs, scale, fm);
    ce = cudaGetLastError();
  }
  return ce;
}

extern "C" const char *sr_cuda_flex_attention_backward(const sr_kcall *c) {
  sr_tensor *dq = c->t[0], *dk = c->t[1], *dv = c->t[2], *dout = c->t[3], *q = c->t[4], *k = c->t[5], *v = c->t[6],
            *out = c->t[7], *lse = c->t[8], *bm = c->t[9];
  sr_tensor *ts[8] = {dq, dk, dv, dout, q, k, v, out};
  int dt, bs;
  int64_t nb;
  const char *e = check_flex(ts, 8, bm, &dt, &nb, &bs);
  if (e) return e;
  if (lse->dtype != SR_F32) return sr_errf("lse must be f32");
  int64_t BH = q->shape[0] * q->shape[1];
  int T = (int)q->shape[2], D = (int)q->shape[3];
  if (BH == 0) return NULL;
  flex_mask fm = mask_of(c, bm, nb, 10);
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int64_t rows = BH * T;
  bool flash = bs == 128 && flash_ok(dt, D, ts, 8);
  if (!flash && !all_contig(ts, 8)) return sr_errf("non-contiguous flex attention tensors need bf16, head dim 64 or 128 and blocks of 128");
  float *delta = (float *)sr_cuda_malloc((size_t)rows * sizeof(float));
  bool acc = flash && !(flex_hopper_bwd(D) && sr_flex_hopper_split());  // f32 dq accumulator
  float *dq_acc = acc ? (float *)sr_cuda_malloc((size_t)rows * D * sizeof(float)) : NULL;
  if (!delta || (acc && !dq_acc)) {
    sr_cuda_free(delta);
    sr_cuda_free(dq_acc);
    return sr_errf("out of memory (flex attention backward scratch)");
  }
  sr_tensor *tsf[8] = {dk, dv, q, k, v, dout, out, dq};
  cudaError_t ce = flash ? flex_backward_flash(c, tsf, delta, dq_acc, rows, T, D, fm, s)
                         : dt == SR_F32 ? flex_backward_plain<float>(c, delta, BH, T, D, bs, fm, s)
                                        : flex_backward_plain<bf16>(c, delta, BH, T, D, bs, fm, s);
  sr_cuda_free(delta);
  sr_cuda_free(dq_acc);
  return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
}
