/*
** attention.cu: scaled dot-product attention over q, k, v [B,H,T,D] (the bf16 flash path takes
** strided views), forward and backward, causal or not, explicit scale. Writes lse [B,H,T] (f32,
** natural log of the softmax denominator of scale*q.k), which the backward uses to recompute
** probabilities.
**
** bf16, D in {64, 128}: flash attention of our own (FA2 scheme) on tensor cores
** (mma.sync m16n8k16, fp32 accumulation, fragments loaded with ldmatrix). Nothing of size T x T
** ever exists. Which key blocks a query block visits comes from kv_block_range() and which
** (query, key) pairs are masked from masked() / tile_may_mask(); block-sparse masks (sliding
** windows, documents: records 12+) are flex attention's (kernels/flex_attention.cu), which shares
** the fragment helpers of flash_common.cuh.
** Forward (kernel2): 128 queries per block, K/V tiles of 64 keys double-buffered through cp.async,
** online softmax in registers (exp2, scale folded in), P reused from registers as the A operand of
** P V; 8 warps of 16 query rows.
** Backward (kernel2): per key block of 64 (4 warps of 16 keys), loop over query blocks of 64 whose
** Q, dO, lse, delta arrive through cp.async (the next tile loads during this one for D = 64):
** recompute P^T from lse, dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - delta), dK += dS^T Q,
** and dQ += dS K through float2 atomics into an f32 scratch accumulator (converted at the end).
** delta = rowsum(dO * O) is a pre-pass.
**
** f32 (any dtype with D in {16, 32, 64, 128} that the flash path does not take): plain kernels
** with one thread per query (forward, dQ) or per key (dK, dV), same math, for tests and small
** models.
** On Hopper (bf16, D 128, T a multiple of 128) the backward goes through the flex kernels of
** kernels/hopper/ with a mask of no lists (flex_common.cuh: the causal blocks implicit), and so does
** the forward (B 64, T 1024, H 6 fwd+bwd 1.448 -> 1.406 ms on an H100; SR_FLEX_WGMMA=bwd: the backward
** alone, 0: neither; sr_flex_wgmma);
** with SR_FLEX_FWD_V2=1 (bf16, D 64/128, T a multiple of 128) the forward through flex attention's
** kernel 2 the same way (opt-in: dense attention's own forward is as fast at D 128 on an H100, D 64
** not measured; flex attention takes kernel 2 by default).
** Gradient contract: dq, dk, dv are written (=).
*/
#include "common.cuh"        // defines: bf16, to_f, from_f, warp_sum, SR_CUDA_TRY
#include "flash_common.cuh"  // defines: mma16816, ldA_x4, load_tile_async, online_softmax_tile, att_strides, LOG2E, LN2
#include "flex_common.cuh"   // defines: flex_mask, sr_flex_wgmma, sr_flex_forward_hopper, sr_flex_backward_hopper

// ----------------------------------------------------------------------------
// masks and block ranges (block-sparse masks: kernels/flex_attention.cu)

// true when query q may not see key j
__device__ __forceinline__ bool masked(int q, int j, int T, int causal) {
  return j >= T || q >= T || (causal && j > q);
}
// false when no (query, key) pair of queries [q0, q0 + nq) x keys [k0, k0 + nk) is masked
__device__ __forceinline__ bool tile_may_mask(int q0, int nq, int k0, int nk, int T, int causal) {
  return k0 + nk > T || q0 + nq > T || (causal && k0 + nk - 1 > q0);
}
// key blocks [kb0, kb1) that query block qb (BQ queries) must visit, blocks of BK keys
__device__ __forceinline__ void kv_block_range(int qb, int BQ, int BK, int T, int causal, int *kb0, int *kb1) {
  *kb0 = 0;
  int last_key = causal ? min(T, (qb + 1) * BQ) : T;  // exclusive
  *kb1 = CEIL_DIV(last_key, BK);
}
// query blocks [qb0, qb1) that see key block kb
__device__ __forceinline__ void q_block_range(int kb, int BQ, int BK, int T, int causal, int *qb0, int *qb1) {
  *qb0 = causal ? (kb * BK) / BQ : 0;
  *qb1 = CEIL_DIV(T, BQ);
}

// ----------------------------------------------------------------------------
// CUDA kernels: flash attention (bf16, tensor cores)

// 128 queries per block, 8 warps of 16 rows (4 warps of 32 rows, two m-tiles sharing each K/V
// fragment, measured no faster for D = 64); K/V tiles of 64 keys double-buffered through cp.async
// (tile kb+1 loads while kb is computed); a warp skips the key tiles its rows cannot see.
// Shared memory (dynamic): stage s holds K at 2s tiles and V at 2s+1; Q is staged in stage 1.
template <int D, bool WHOLE>  // WHOLE: T is a multiple of 128 (every tile whole: load_tile_async)
__global__ void __launch_bounds__(256, D == 64 ? 2 : 1) flash_attention_forward_kernel2(bf16 *out, float *lse, const bf16 *q,
                                                                       const bf16 *k, const bf16 *v, int T,
                                                                       float scale_log2, int causal, att_strides as) {
  constexpr int LD = D + 8, BQ = 128, BK = 64, TILE = BK * LD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *sm = (bf16 *)smem_raw;
  int qb = gridDim.x - 1 - blockIdx.x;  // heaviest (causal) blocks first
  int64_t bh = blockIdx.y;
  const bf16 *Q = q + att_base(as, 1, bh), *K = k + att_base(as, 2, bh), *V = v + att_base(as, 3, bh);
  int64_t qst = as.s[1][2], kst = as.s[2][2], vst = as.s[3][2], ost = as.s[0][2];
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  int kb0, kb1, wkb0, wkb1;
  kv_block_range(qb, BQ, BK, T, causal, &kb0, &kb1);
  kv_block_range(qb * (BQ / 16) + w, 16, BK, T, causal, &wkb0, &wkb1);  // this warp's 16 rows

  load_tile_async<D, LD, BQ, 256, WHOLE>(sm + 2 * TILE, Q, qst, qb * BQ, T);
  if (kb0 < kb1) {
    load_tile_async<D, LD, BK, 256, WHOLE>(sm, K, kst, kb0 * BK, T);
    load_tile_async<D, LD, BK, 256, WHOLE>(sm + TILE, V, vst, kb0 * BK, T);
  }
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qa[D / 16][4];  // this warp's 16 query rows as A fragments
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) ldA_x4(qa[kk], sm + 2 * TILE, LD, w * 16, kk * 16);

  float O[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) O[i][0] = O[i][1] = O[i][2] = O[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows g and g+8 (log2 domain, scaled)
  int qw = qb * BQ + w * 16, q0 = qw + g, q1 = q0 + 8;

  for (int kb = kb0; kb < kb1; kb++) {
    int st = (kb - kb0) & 1;
    cp_async_wait_all();
    __syncthreads();  // tile kb is in stage st for everyone; stage st^1 (and Q) is free
    if (kb + 1 < kb1) {
      load_tile_async<D, LD, BK, 256, WHOLE>(sm + 2 * (st ^ 1) * TILE, K, kst, (kb + 1) * BK, T);
      load_tile_async<D, LD, BK, 256, WHOLE>(sm + (2 * (st ^ 1) + 1) * TILE, V, vst, (kb + 1) * BK, T);
    }
    cp_async_commit();
    if (kb < wkb0 || kb >= wkb1) continue;  // no key of this tile is visible to this warp's rows
    const bf16 *Ks = sm + 2 * st * TILE, *Vs = Ks + TILE;
    float S[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b[4];
        ldB_nk_x4(b, Ks, LD, j * 8, kk * 16);
        mma16816(S[j], qa[kk], b);
        mma16816(S[j + 1], qa[kk], b + 2);
      }
    }
    // mask, row max (of the raw scores; scale > 0 is applied in the exponent)
    if (tile_may_mask(qw, 16, kb * BK, BK, T, causal)) {
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          if (masked(e < 2 ? q0 : q1, kb * BK + j * 8 + 2 * t + (e & 1), T, causal)) S[j][e] = -INFINITY;
    }
    float al0, al1;
    online_softmax_tile(S, scale_log2, m0, m1, l0, l1, al0, al1);
#pragma unroll
    for (int i = 0; i < D / 8; i++) { O[i][0] *= al0; O[i][1] *= al0; O[i][2] *= al1; O[i][3] *= al1; }
    // O += P V, P straight from registers as the A operand
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      uint32_t a[4];
      acc_to_A(a, S, kk);
#pragma unroll
      for (int i = 0; i < D / 8; i += 2) {
        uint32_t b[4];
        ldB_kn_x4(b, Vs, LD, kk * 16, i * 8);
        mma16816(O[i], a, b);
        mma16816(O[i + 1], a, b + 2);
      }
    }
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float i0 = 1.f / l0, i1 = 1.f / l1;
  bf16 *Ob = out + att_base(as, 0, bh);
#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    int col = i * 8 + 2 * t;
    if (q0 < T) *(uint32_t *)&Ob[(int64_t)q0 * ost + col] = pack_bf16(O[i][0] * i0, O[i][1] * i0);
    if (q1 < T) *(uint32_t *)&Ob[(int64_t)q1 * ost + col] = pack_bf16(O[i][2] * i1, O[i][3] * i1);
  }
  if (t == 0) {
    if (q0 < T) lse[bh * T + q0] = (m0 + log2f(l0)) * LN2;
    if (q1 < T) lse[bh * T + q1] = (m1 + log2f(l1)) * LN2;
  }
}

// delta[row] = sum_d dout[row,d] * out[row,d]; a warp per row (any float dtype)
template <typename T>
__global__ void attention_delta_kernel1(float *delta, const T *dout, const T *out, int64_t rows, int D) {
  int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f<T>(dout[r * D + d]) * to_f<T>(out[r * D + d]);
  s = warp_sum(s);
  if (lane == 0) delta[r] = s;
}

// One block per key block of 64 (4 warps of 16 keys; causal: the first key blocks see the most
// queries, so they start first), looping over the query blocks that see it. The Q, dO, lse and
// delta tiles load through cp.async: NS = 2 stages (the next query tile loads while this one is
// computed; D = 64), NS = 1 for D = 128 (keeps two blocks per SM); dQ accumulated with float2
// atomics. D = 64 is capped at 170 registers so that three blocks share an SM.
// Shared memory (dynamic): K, V, then per stage Q, dO; dS^T [64 keys][64 queries]; per stage lse, delta.
template <int D, int NS, bool WHOLE>  // WHOLE: T is a multiple of 64 (every tile whole: load_tile_async)
__global__ void __launch_bounds__(128, D == 64 ? 3 : 1) flash_attention_backward_kernel2(bf16 *dk, bf16 *dv, float *dq_acc, const bf16 *q,
                                                                        const bf16 *k, const bf16 *v, const bf16 *dout,
                                                                        const float *lse, const float *delta, int T,
                                                                        float scale, int causal, att_strides as) {
  constexpr int LD = D + 8, LDS = 64 + 8, TILE = 64 * LD;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + TILE, *dSs = Vs + TILE + 2 * NS * TILE;
  float *ld_s = (float *)(dSs + 64 * LDS);  // stage s: lse at 128 s, delta at 128 s + 64
  int kb = blockIdx.x;  // causal: the first key blocks see the most queries, so they start first
  int64_t bh = blockIdx.y;
  // as: 0 dk, 1 dv, 2 q, 3 k, 4 v, 5 dout
  const bf16 *Q = q + att_base(as, 2, bh), *K = k + att_base(as, 3, bh), *V = v + att_base(as, 4, bh),
             *dO = dout + att_base(as, 5, bh);
  const float *lse_b = lse + bh * T, *delta_b = delta + bh * T;
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float scale_log2 = scale * LOG2E;
  int qb0, qb1;
  q_block_range(kb, 64, 64, T, causal, &qb0, &qb1);
  // Q, dO, lse, delta of query tile qb into stage st
  auto load_q = [&](int qb, int st) {
    bf16 *Qs = Vs + TILE + 2 * st * TILE;
    load_tile_async<D, LD, 64, 128, WHOLE>(Qs, Q, as.s[2][2], qb * 64, T);
    load_tile_async<D, LD, 64, 128, WHOLE>(Qs + TILE, dO, as.s[5][2], qb * 64, T);
    int r = qb * 64 + (threadIdx.x & 63);
    const float *src = threadIdx.x < 64 ? lse_b : delta_b;
    cp_async4(&ld_s[128 * st + threadIdx.x], r < T ? src + r : src, r < T);
  };

  load_tile_async<D, LD, 64, 128, WHOLE>(Ks, K, as.s[3][2], kb * 64, T);
  load_tile_async<D, LD, 64, 128, WHOLE>(Vs, V, as.s[4][2], kb * 64, T);
  if (NS == 2 && qb0 < qb1) load_q(qb0, 0);
  cp_async_commit();
  float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) dK[i][e] = dV[i][e] = 0.f;
  int kw = kb * 64 + w * 16, key0 = kw + g, key1 = key0 + 8;

  for (int qb = qb0; qb < qb1; qb++) {
    int st = NS == 2 ? (qb - qb0) & 1 : 0;
    if (NS == 1) {
      __syncthreads();  // everyone is done with the previous tile
      load_q(qb, 0);
      cp_async_commit();
    }
    cp_async_wait_all();
    __syncthreads();  // tile qb is in stage st for everyone; the other stage and dSs are free
    if (NS == 2) {
      if (qb + 1 < qb1) load_q(qb + 1, st ^ 1);
      cp_async_commit();
    }
    const bf16 *Qs = Vs + TILE + 2 * st * TILE, *dOs = Qs + TILE;
    const float *lse_s = ld_s + 128 * st, *delta_s = lse_s + 64;
    // S^T (16 keys x 64 queries) and dP^T = V dO^T
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
    // P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - delta)
    bool may_mask = tile_may_mask(qb * 64, 64, kw, 16, T, causal);
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int qi = j * 8 + 2 * t + (e & 1);
        float p = exp2f(fmaf(P[j][e], scale_log2, -lse_s[qi] * LOG2E));
        if (may_mask && masked(qb * 64 + qi, e < 2 ? key0 : key1, T, causal)) p = 0.f;
        P[j][e] = p;
        dS[j][e] = p * (dS[j][e] - delta_s[qi]);
      }
    }
    // dV += P^T dO ; dK += dS^T Q   (k-steps over the 64 queries)
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      uint32_t ap[4], as[4];
      acc_to_A(ap, P, kk);
      acc_to_A(as, dS, kk);
#pragma unroll
      for (int i = 0; i < D / 8; i += 2) {
        uint32_t b[4];
        ldB_kn_x4(b, dOs, LD, kk * 16, i * 8);
        mma16816(dV[i], ap, b);
        mma16816(dV[i + 1], ap, b + 2);
        ldB_kn_x4(b, Qs, LD, kk * 16, i * 8);
        mma16816(dK[i], as, b);
        mma16816(dK[i + 1], as, b + 2);
      }
    }
    // dS^T as [key][query] in shared memory (word stores, conflict-free) for dQ = dS K
#pragma unroll
    for (int j = 0; j < 8; j++) {
      *(uint32_t *)&dSs[(w * 16 + g) * LDS + j * 8 + 2 * t] = pack_bf16(dS[j][0], dS[j][1]);
      *(uint32_t *)&dSs[(w * 16 + g + 8) * LDS + j * 8 + 2 * t] = pack_bf16(dS[j][2], dS[j][3]);
    }
    __syncthreads();
    // this warp's 16 queries: dQ[16 x D] += dS[16 x 64 keys] K[64 keys x D]
    int qr0 = qb * 64 + w * 16 + g, qr1 = qr0 + 8;
    // rows qr0 and qr1 of the accumulator at column 2 t: one address, constant offsets (as the flex backward)
    float *dq0 = dq_acc + (bh * T + qr0) * D + 2 * t;
#pragma unroll
    for (int half = 0; half < 2; half++) {  // two halves of D keep register use down
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
        if (qr0 < T) atomicAdd((float2 *)p, make_float2(dQ[i][0] * scale, dQ[i][1] * scale));
        if (qr1 < T) atomicAdd((float2 *)(p + 8 * D), make_float2(dQ[i][2] * scale, dQ[i][3] * scale));
      }
    }
  }
  bf16 *dKb = dk + att_base(as, 0, bh), *dVb = dv + att_base(as, 1, bh);
  int64_t kst = as.s[0][2], vst = as.s[1][2];
#pragma unroll
  for (int i = 0; i < D / 8; i++) {
    int col = i * 8 + 2 * t;
    if (key0 < T) {
      *(uint32_t *)&dKb[(int64_t)key0 * kst + col] = pack_bf16(dK[i][0] * scale, dK[i][1] * scale);
      *(uint32_t *)&dVb[(int64_t)key0 * vst + col] = pack_bf16(dV[i][0], dV[i][1]);
    }
    if (key1 < T) {
      *(uint32_t *)&dKb[(int64_t)key1 * kst + col] = pack_bf16(dK[i][2] * scale, dK[i][3] * scale);
      *(uint32_t *)&dVb[(int64_t)key1 * vst + col] = pack_bf16(dV[i][2], dV[i][3]);
    }
  }
}

// ----------------------------------------------------------------------------
// CUDA kernels: plain attention (any float dtype, D in {16,32,64,128}); a thread per row

template <typename T, int D>
__global__ void attention_forward_kernel0(T *out, float *lse, const T *q, const T *k, const T *v, int64_t BH, int T_,
                                          float scale, int causal) {
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * T_) return;
  int64_t bh = r / T_;
  int i = (int)(r % T_);
  const T *K = k + bh * T_ * D, *V = v + bh * T_ * D;
  float qr[D], acc[D];
#pragma unroll
  for (int d = 0; d < D; d++) { qr[d] = to_f<T>(q[r * D + d]) * scale; acc[d] = 0.f; }
  float m = -INFINITY, l = 0.f;
  int jn = causal ? i + 1 : T_;
  for (int j = 0; j < jn; j++) {
    float s = 0.f;
#pragma unroll
    for (int d = 0; d < D; d++) s += qr[d] * to_f<T>(K[(int64_t)j * D + d]);
    float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
    l = l * a + p;
#pragma unroll
    for (int d = 0; d < D; d++) acc[d] = acc[d] * a + p * to_f<T>(V[(int64_t)j * D + d]);
    m = mn;
  }
#pragma unroll
  for (int d = 0; d < D; d++) out[r * D + d] = from_f<T>(acc[d] / l);
  lse[r] = m + logf(l);
}

// dq[i] = scale * sum_j p_ij (dO_i . v_j - delta_i) k_j
template <typename T, int D>
__global__ void attention_backward_dq_kernel0(T *dq, const T *q, const T *k, const T *v, const T *dout, const float *lse,
                                              const float *delta, int64_t BH, int T_, float scale, int causal) {
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * T_) return;
  int64_t bh = r / T_;
  int i = (int)(r % T_);
  const T *K = k + bh * T_ * D, *V = v + bh * T_ * D;
  float acc[D];
#pragma unroll
  for (int d = 0; d < D; d++) acc[d] = 0.f;
  float L = lse[r], dl = delta[r];
  int jn = causal ? i + 1 : T_;
  for (int j = 0; j < jn; j++) {
    float s = 0.f, dp = 0.f;
#pragma unroll
    for (int d = 0; d < D; d++) {
      s += to_f<T>(q[r * D + d]) * to_f<T>(K[(int64_t)j * D + d]);
      dp += to_f<T>(dout[r * D + d]) * to_f<T>(V[(int64_t)j * D + d]);
    }
    float p = expf(s * scale - L), ds = p * (dp - dl);
#pragma unroll
    for (int d = 0; d < D; d++) acc[d] += ds * to_f<T>(K[(int64_t)j * D + d]);
  }
#pragma unroll
  for (int d = 0; d < D; d++) dq[r * D + d] = from_f<T>(acc[d] * scale);
}

// dv[j] = sum_i p_ij dO_i ; dk[j] = scale * sum_i p_ij (dO_i . v_j - delta_i) q_i
template <typename T, int D>
__global__ void attention_backward_dkv_kernel0(T *dk, T *dv, const T *q, const T *k, const T *v, const T *dout,
                                               const float *lse, const float *delta, int64_t BH, int T_, float scale,
                                               int causal) {
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= BH * T_) return;
  int64_t bh = r / T_;
  int j = (int)(r % T_);
  const T *Q = q + bh * T_ * D, *dO = dout + bh * T_ * D;
  float ak[D], avv[D];
#pragma unroll
  for (int d = 0; d < D; d++) ak[d] = avv[d] = 0.f;
  for (int i = causal ? j : 0; i < T_; i++) {
    float s = 0.f, dp = 0.f;
#pragma unroll
    for (int d = 0; d < D; d++) {
      s += to_f<T>(Q[(int64_t)i * D + d]) * to_f<T>(k[r * D + d]);
      dp += to_f<T>(dO[(int64_t)i * D + d]) * to_f<T>(v[r * D + d]);
    }
    float p = expf(s * scale - lse[bh * T_ + i]), ds = p * (dp - delta[bh * T_ + i]);
#pragma unroll
    for (int d = 0; d < D; d++) {
      avv[d] += p * to_f<T>(dO[(int64_t)i * D + d]);
      ak[d] += ds * to_f<T>(Q[(int64_t)i * D + d]);
    }
  }
#pragma unroll
  for (int d = 0; d < D; d++) {
    dk[r * D + d] = from_f<T>(ak[d] * scale);
    dv[r * D + d] = from_f<T>(avv[d]);
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

static const char *check_qkv(sr_tensor *const *ts, int n, int *dtype) {
  int dt = ts[0]->dtype;
  for (int j = 0; j < n; j++) {
    if (ts[j]->dtype != dt) return sr_errf("q, k, v, out (and grads) must share one dtype");
    if (ts[j]->ndim != 4) return sr_errf("attention tensors must be [B,H,T,D]");
    for (int k = 0; k < 4; k++)
      if (ts[j]->shape[k] != ts[0]->shape[k]) return sr_errf("attention tensors must share one shape");
  }
  if (dt != SR_F32 && dt != SR_BF16) return sr_errf("dtype %s is not supported on cuda (f32 or bf16)", sr_dtype_name((sr_dtype)dt));
  *dtype = dt;
  return NULL;
}

#define SIMPLE_D_SWITCH(D, CALL) \
  switch (D) {                   \
    case 16: CALL(16); break;    \
    case 32: CALL(32); break;    \
    case 64: CALL(64); break;    \
    case 128: CALL(128); break;  \
    default: return sr_errf("head dim %d is not supported on cuda (16, 32, 64, 128)", D); \
  }

// the Hopper flex kernels for dense attention (sr_flex_wgmma): bf16 (flash_ok), D 128, whole blocks of 128
static bool hopper_ok(int D, int T, int which) { return D == 128 && T % 128 == 0 && (sr_flex_wgmma() & which); }
// their mask: no lists (flex_tiles: the causal blocks implicit), no documents, no window
static flex_mask dense_mask(int T, int causal) {
  flex_mask m;
  m.bm = m.doc = m.wt = NULL;
  m.nb = T / 128;
  m.causal = causal;
  m.window = 0;
  flex_mask_span(m);
  return m;
}

extern "C" const char *sr_cuda_attention(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *lse = c->t[1], *q = c->t[2], *k = c->t[3], *v = c->t[4];
  sr_tensor *ts[4] = {out, q, k, v};
  int dt;
  const char *e = check_qkv(ts, 4, &dt);
  if (e) return e;
  if (lse->dtype != SR_F32) return sr_errf("lse must be f32");
  int64_t B = q->shape[0], H = q->shape[1], BH = B * H;
  int T = (int)q->shape[2], D = (int)q->shape[3], causal = (int)c->i[0];
  float scale = (float)c->f[0];
  if (BH == 0 || T == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (flash_ok(dt, D, ts, 4) && hopper_ok(D, T, SR_FLEX_WGMMA_FWD)) {  // the default on Hopper (sr_flex_wgmma)
    cudaError_t ce = sr_flex_forward_hopper((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
                                            (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), T, scale * LOG2E,
                                            dense_mask(T, causal), strides_of(ts, 4), BH, s);
    return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
  if (flash_ok(dt, D, ts, 4) && T % 128 == 0 && sr_flex_fwd_v2(0))  // opt-in: flex attention's kernel 2, no lists
    return sr_flex_forward_flash((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
                                 (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), T, D, scale * LOG2E,
                                 dense_mask(T, causal), strides_of(ts, 4), BH, true, s);
  if (flash_ok(dt, D, ts, 4)) {
    att_strides as = strides_of(ts, 4);
    dim3 grid((unsigned)CEIL_DIV(T, 128), (unsigned)BH);
    size_t smem = (size_t)4 * 64 * (D + 8) * sizeof(bf16);
    bool whole = T % 128 == 0;  // every tile below T: load_tile_async's WHOLE instance
    auto *fwd2 = D == 64 ? (whole ? flash_attention_forward_kernel2<64, true> : flash_attention_forward_kernel2<64, false>)
                         : (whole ? flash_attention_forward_kernel2<128, true> : flash_attention_forward_kernel2<128, false>);
    SR_CUDA_TRY(cudaFuncSetAttribute(fwd2, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    fwd2<<<grid, 256, smem, s>>>((bf16 *)sr_data(out), (float *)sr_data(lse), (const bf16 *)sr_data(q),
                                 (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), T, scale * LOG2E, causal, as);
    SR_LAUNCH_CHECK();
    return NULL;
  }
  if (!all_contig(ts, 4)) return sr_errf("non-contiguous attention inputs need bf16 with head dim 64 or 128");
  unsigned grid = (unsigned)CEIL_DIV(BH * T, (int64_t)128);
#define FWD0(DD)                                                                                                         \
  if (dt == SR_F32)                                                                                                      \
    attention_forward_kernel0<float, DD><<<grid, 128, 0, s>>>((float *)sr_data(out), (float *)sr_data(lse),              \
        (const float *)sr_data(q), (const float *)sr_data(k), (const float *)sr_data(v), BH, T, scale, causal);          \
  else                                                                                                                   \
    attention_forward_kernel0<bf16, DD><<<grid, 128, 0, s>>>((bf16 *)sr_data(out), (float *)sr_data(lse),                \
        (const bf16 *)sr_data(q), (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), BH, T, scale, causal);
  SIMPLE_D_SWITCH(D, FWD0)
#undef FWD0
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_attention_backward(const sr_kcall *c) {
  sr_tensor *dq = c->t[0], *dk = c->t[1], *dv = c->t[2], *dout = c->t[3], *q = c->t[4], *k = c->t[5], *v = c->t[6],
            *out = c->t[7], *lse = c->t[8];
  sr_tensor *ts[8] = {dq, dk, dv, dout, q, k, v, out};
  int dt;
  const char *e = check_qkv(ts, 8, &dt);
  if (e) return e;
  if (lse->dtype != SR_F32) return sr_errf("lse must be f32");
  int64_t B = q->shape[0], H = q->shape[1], BH = B * H;
  int T = (int)q->shape[2], D = (int)q->shape[3], causal = (int)c->i[0];
  float scale = (float)c->f[0];
  if (BH == 0 || T == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int64_t rows = BH * T;
  bool flash = flash_ok(dt, D, ts, 8);
  if (!flash && !all_contig(ts, 8)) return sr_errf("non-contiguous attention tensors need bf16 with head dim 64 or 128");
  sr_tensor *tsf[8] = {dk, dv, q, k, v, dout, out, dq};
  att_strides as = strides_of(tsf, 8);
  bool hopper = flash && hopper_ok(D, T, SR_FLEX_WGMMA_BWD), split = hopper && sr_flex_hopper_split();  // split: dq written directly
  int dq_frag = 0;  // the Hopper backward's accumulator in fragment order (SR_FLEX_BWD_DQB)
  size_t dbytes = (size_t)rows * sizeof(float);
  size_t qbytes = flash && !split ? (size_t)rows * D * sizeof(float) : 0;
  float *delta = (float *)sr_cuda_malloc(dbytes);
  float *dq_acc = qbytes ? (float *)sr_cuda_malloc(qbytes) : NULL;
  if (!delta || (qbytes && !dq_acc)) {
    sr_cuda_free(delta);
    sr_cuda_free(dq_acc);
    return sr_errf("out of memory (attention backward scratch)");
  }
  unsigned dgrid = (unsigned)CEIL_DIV(rows * 32, (int64_t)256);
  cudaError_t ce;
  if (flash) {
    ce = attention_delta_flash(delta, (const bf16 *)sr_data(dout), (const bf16 *)sr_data(out), BH, T, D, as, s);
  } else {
    if (dt == SR_BF16)
      attention_delta_kernel1<bf16><<<dgrid, 256, 0, s>>>(delta, (const bf16 *)sr_data(dout), (const bf16 *)sr_data(out), rows, D);
    else
      attention_delta_kernel1<float><<<dgrid, 256, 0, s>>>(delta, (const float *)sr_data(dout), (const float *)sr_data(out), rows, D);
    ce = cudaGetLastError();
  }
  const char *err = NULL;
  if (ce == cudaSuccess && hopper) {
    if (!split) ce = cudaMemsetAsync(dq_acc, 0, qbytes, s);
    if (ce == cudaSuccess)
      ce = sr_flex_backward_hopper((bf16 *)sr_data(dk), (bf16 *)sr_data(dv), (bf16 *)sr_data(dq), dq_acc,
                                   (const bf16 *)sr_data(q), (const bf16 *)sr_data(k), (const bf16 *)sr_data(v),
                                   (const bf16 *)sr_data(dout), (const float *)sr_data(lse), delta, T, scale,
                                   dense_mask(T, causal), as, BH, s, &dq_frag);
  } else if (ce == cudaSuccess && flash) {
    ce = cudaMemsetAsync(dq_acc, 0, qbytes, s);
    dim3 grid((unsigned)CEIL_DIV(T, 64), (unsigned)BH);
    size_t tile = (size_t)64 * (D + 8) * sizeof(bf16), dsb = (size_t)64 * 72 * sizeof(bf16);
    bool whole = T % 64 == 0;  // every tile below T: load_tile_async's WHOLE instance
    auto *bwd2 = D == 64 ? (whole ? flash_attention_backward_kernel2<64, 2, true> : flash_attention_backward_kernel2<64, 2, false>)
                         : (whole ? flash_attention_backward_kernel2<128, 1, true> : flash_attention_backward_kernel2<128, 1, false>);
    size_t smem = D == 64 ? 6 * tile + dsb + 256 * sizeof(float) : 4 * tile + dsb + 128 * sizeof(float);
    if (ce == cudaSuccess) ce = cudaFuncSetAttribute(bwd2, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (ce == cudaSuccess)
      bwd2<<<grid, 128, smem, s>>>((bf16 *)sr_data(dk), (bf16 *)sr_data(dv), dq_acc, (const bf16 *)sr_data(q),
                                   (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), (const bf16 *)sr_data(dout),
                                   (const float *)sr_data(lse), delta, T, scale, causal, as);
  } else if (ce == cudaSuccess) {
    unsigned grid = (unsigned)CEIL_DIV(rows, (int64_t)128);
#define BWD0(DD)                                                                                                    \
  if (dt == SR_F32) {                                                                                               \
    attention_backward_dq_kernel0<float, DD><<<grid, 128, 0, s>>>((float *)sr_data(dq), (const float *)sr_data(q), \
        (const float *)sr_data(k), (const float *)sr_data(v), (const float *)sr_data(dout), (const float *)sr_data(lse), delta, BH, T, scale, causal); \
    attention_backward_dkv_kernel0<float, DD><<<grid, 128, 0, s>>>((float *)sr_data(dk), (float *)sr_data(dv),     \
        (const float *)sr_data(q), (const float *)sr_data(k), (const float *)sr_data(v), (const float *)sr_data(dout), (const float *)sr_data(lse), delta, BH, T, scale, causal); \
  } else {                                                                                                          \
    attention_backward_dq_kernel0<bf16, DD><<<grid, 128, 0, s>>>((bf16 *)sr_data(dq), (const bf16 *)sr_data(q),    \
        (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), (const bf16 *)sr_data(dout), (const float *)sr_data(lse), delta, BH, T, scale, causal); \
    attention_backward_dkv_kernel0<bf16, DD><<<grid, 128, 0, s>>>((bf16 *)sr_data(dk), (bf16 *)sr_data(dv),        \
        (const bf16 *)sr_data(q), (const bf16 *)sr_data(k), (const bf16 *)sr_data(v), (const bf16 *)sr_data(dout), (const float *)sr_data(lse), delta, BH, T, scale, causal); \
  }
    switch (D) {
      case 16: BWD0(16) break;
      case 32: BWD0(32) break;
      case 64: BWD0(64) break;
      case 128: BWD0(128) break;
      default: err = sr_errf("head dim %d is not supported on cuda (16, 32, 64, 128)", D);
    }
#undef BWD0
    if (!err) ce = cudaGetLastError();
  }
  if (ce == cudaSuccess && dq_acc) {  // the flash paths' f32 dq into dq
    ce = attention_dq_convert((bf16 *)sr_data(dq), dq_acc, BH, T, D, as, s, dq_frag);
  }
  if (!err && ce != cudaSuccess) err = sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  sr_cuda_free(delta);
  sr_cuda_free(dq_acc);
  return err;
}
