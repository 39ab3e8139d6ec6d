/*
** flex_common.cuh: the block mask as the flex attention kernels read it (kernels/flex_attention.cu,
** and the Hopper kernels of kernels/hopper/): flex_mask (the packed lists of host/core/flex.h, doc
** ids, causal, window), its element mask, the dead-tile test and flex_tiles, the walk over a row's
** listed blocks as tiles of 64 in ascending order (or, without lists, dense attention's blocks), and
** flex_ring, that walk loaded ahead through the Hopper kernels' stages; the mask tensor's dims
** (flex_mask_dims, for kernels/flex_mask.cu and flex_attention.cu's launchers).
** flex_tiles, flex_ring and the tests they call run on the host too (tests/cuda/test_flex_tiles.cu).
*/
#ifndef SPEEDRUN_FLEX_COMMON_CUH
#define SPEEDRUN_FLEX_COMMON_CUH
#include <limits.h>     // defines: INT_MAX

#include "common.cuh"   // defines: bf16, sr_errf, sr_is_contiguous
#include "core/flex.h"  // defines: sr_flex_visible, sr_flex_count_at, sr_flex_index_at


// the block mask tensor's dims: nb blocks of bs tokens ([NB, 4 NB + 4 + block] int32), or why not
static inline const char *flex_mask_dims(const sr_tensor *bm, int64_t *nb, int *bs) {
  if (bm->dtype != SR_I32 || bm->ndim != 2 || !sr_is_contiguous(bm)) return sr_errf("block mask must be a contiguous int32 [NB, 4 NB + 4 + block] tensor");
  *nb = bm->shape[0];
  int64_t b = bm->shape[1] - 4 * *nb - 4;
  if (*nb < 1 || b < 1 || *nb * b > INT_MAX) return sr_errf("block mask has a bad shape");
  *bs = (int)b;
  return NULL;
}

struct flex_mask {
  const int32_t *bm, *doc;  // the packed mask; its doc ids, NULL when the element mask has none
  const int32_t *wt;        // the window as a device int32 (read by flex_resolve), or NULL: window
  int64_t nb;
  int causal, window;
  // causal and window as one range of d = query - key, lo <= d <= hi (lo 0 when causal, else -2^30;
  // hi window - 1 when windowed, else 2^30): flex_vis_ids tests it as one unsigned compare,
  // (unsigned)(d - lo) <= span with span = hi - lo (|d| < 2^30: T < 2^30). Set by flex_mask_span
  // (the launchers, and flex_resolve when the window comes from the device)
  int lo;
  unsigned span;
};
__host__ __device__ __forceinline__ void flex_mask_span(flex_mask &m) {
  m.lo = m.causal ? 0 : -(1 << 30);
  m.span = (unsigned)(m.window > 0 ? m.window - 1 : 1 << 30) - (unsigned)m.lo;
}
// first thing in every kernel taking a mask: the window from the device when it lives there (so a
// replayed CUDA graph reads the value of each replay)
__device__ __forceinline__ void flex_resolve(flex_mask &m) {
  if (m.wt) {
    m.window = __ldg(m.wt);
    flex_mask_span(m);
  }
}
__device__ __forceinline__ bool flex_vis(const flex_mask &m, int qi, int kj) {
  return sr_flex_visible(qi, kj, m.causal, m.window, m.doc);
}
// the same with the two doc ids at hand (staged in shared memory / registers by the flash kernels),
// causal and window through the mask's span (sr_flex_visible's conditions, one compare)
__host__ __device__ __forceinline__ bool flex_vis_ids(const flex_mask &m, int qi, int kj, int32_t dq, int32_t dk) {
  return (unsigned)(qi - kj) - (unsigned)m.lo <= m.span && !(m.doc && dq != dk);
}
// the element mask on a tile of S held as the flash kernels' fragments (8 tiles of 16 x 8: this
// thread's rows q0 and q1 = q0 + 8 with doc ids dq0, dq1; columns 8j + 2t (+1) of keys k0..k0 + 63,
// their doc ids kd): pairs not visible become -inf
__device__ __forceinline__ void flex_mask_tile(float (*S)[4], const flex_mask &m, int q0, int q1, int k0, int32_t dq0,
                                               int32_t dq1, const int32_t *kd, int t) {
#pragma unroll
  for (int j = 0; j < 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      int c = j * 8 + 2 * t + (e & 1);
      if (!flex_vis_ids(m, e < 2 ? q0 : q1, k0 + c, e < 2 ? dq0 : dq1, m.doc ? kd[c] : 0)) S[j][e] = -INFINITY;
    }
}
// no pair of queries [q0, q0 + nq) x keys [k0, k0 + nk) is visible under causal and window
__host__ __device__ __forceinline__ bool flex_dead(const flex_mask &m, int q0, int nq, int k0, int nk) {
  return (m.causal && k0 > q0 + nq - 1) || (m.window > 0 && q0 - (k0 + nk - 1) >= m.window);
}
// the tiles of 64 of the blocks (of 128) that row r of the lists names (transposed: the query
// blocks of kv block r), in one ascending order of the two lists merged: which blocks are partial
// and which full depends on the whole of each 128-row block, later rows included, so visiting the
// partial ones first would let later tokens reorder the online softmax's sums for earlier rows
// (bf16-rounding differences the harness's causality check rejects: records 13-14 on documents of
// ~560 tokens). Tiles are asked for in non-decreasing order (the merge's cursor moves forward only).
// A mask with no lists (bm NULL: dense attention, causal or not, through the flex kernels) has them
// implicit: causal, a row's block on the diagonal partial and those before it (transposed: after) full.
struct flex_tiles {
  const int32_t *ip, *ifl;  // the lists (NULL: implicit, entry e being pb + e, fb + e)
  int np, nf, n, pb, fb;
  int ep, ef, e;  // the merge's cursor: entry e is the smaller of ip[ep] and ifl[ef]
  __host__ __device__ flex_tiles(const flex_mask &m, int r, int transposed) {
    ep = ef = e = 0;
    if (!m.bm) {
      ip = ifl = NULL;
      np = m.causal ? 1 : 0, pb = r;
      nf = !m.causal ? (int)m.nb : transposed ? (int)m.nb - 1 - r : r, fb = m.causal && transposed ? r + 1 : 0;
      n = 2 * (np + nf);
      return;
    }
    int lp = transposed ? SR_FLEX_Q : SR_FLEX_KV, lf = transposed ? SR_FLEX_FULL_Q : SR_FLEX_FULL_KV;
    np = m.bm[sr_flex_count_at(m.nb, lp) + r];
    nf = m.bm[sr_flex_count_at(m.nb, lf) + r];
    n = 2 * (np + nf);
    ip = m.bm + sr_flex_index_at(m.nb, lp) + (int64_t)r * m.nb;
    ifl = m.bm + sr_flex_index_at(m.nb, lf) + (int64_t)r * m.nb;
  }
  __host__ __device__ int pidx(int k) const { return ip ? ip[k] : pb + k; }
  __host__ __device__ int fidx(int k) const { return ifl ? ifl[k] : fb + k; }
  __host__ __device__ bool partial_next() const { return ep < np && (ef >= nf || pidx(ep) < fidx(ef)); }
  // tile ti's first key (transposed: query) and whether its block is partial; ti >= the last asked
  __host__ __device__ int start(int ti, bool *partial) {
    for (; e < (ti >> 1); e++) {
      if (partial_next()) ep++;
      else ef++;
    }
    *partial = partial_next();
    return (*partial ? pidx(ep) : fidx(ef)) * 128 + (ti & 1) * 64;
  }
  // the first tile after ti that is not dead against the other side's range [o0, o0 + no)
  // (forward: queries x keys of the tile; transposed: tile queries x keys); w 2: tiles of a whole
  // block (128 rows: ti even, from ti = -2), the walk stepping two tiles of 64 at a time
  __host__ __device__ int next(const flex_mask &m, int ti, int o0, int no, int transposed, int w = 1) {
    for (ti += w; ti < n; ti += w) {
      bool p;
      int s = start(ti, &p);
      if (!p || !(transposed ? flex_dead(m, s, 64 * w, o0, no) : flex_dead(m, o0, no, s, 64 * w))) break;
    }
    return ti;
  }
};

// a flex_tiles walk with its tiles loaded ahead of the one computed (the Hopper kernels' cp.async
// stages): entry 0 is the tile to compute, entries 1 .. N - 2 are in flight, entry N - 1 is filled by
// push(); shift() after a tile. Each entry: the tile's index (>= tl.n: none), its first row and
// whether its block is partial, taken when it is loaded (the walk's cursor only moves forward)
template <int N>
struct flex_ring {
  int ti[N], s0[N];
  bool part[N];
  int la;  // the next tile to load
  // entry e := the next tile (o0, no: the other side's range, w the tile's width in tiles of 64, as
  // flex_tiles::next); true if one is left
  __host__ __device__ __forceinline__ bool push(flex_tiles &tl, const flex_mask &fm, int e, int o0, int no, int transposed,
                                                int w = 1) {
    ti[e] = la;
    if (la >= tl.n) return false;
    s0[e] = tl.start(la, &part[e]);
    la = tl.next(fm, la, o0, no, transposed, w);
    return true;
  }
  __host__ __device__ __forceinline__ void shift(void) {
#pragma unroll
    for (int e = 0; e + 1 < N; e++) { ti[e] = ti[e + 1]; s0[e] = s0[e + 1]; part[e] = part[e + 1]; }
  }
};

// the forward on Hopper's warpgroup MMA (kernels/hopper/flex_attention_hopper.cu, sm_90a): bf16,
// D = 128, blocks of 128, a thread block per query block (grid nb x BH); scale_log2 = scale log2(e)
struct att_strides;
cudaError_t sr_flex_forward_hopper(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T,
                                   float scale_log2, flex_mask fm, att_strides as, int64_t BH, cudaStream_t s);
// its backward into dk, dv and the f32 dq accumulator dq_acc (zeroed, converted by the caller; delta =
// rowsum(dO out) given): a thread block per kv block (grid nb x BH); with dq_acc NULL, dq straight
// into dq (bf16) by a second kernel, a thread block per query block (as: strides_of dk, dv, q, k, v,
// dout, out, dq); *dq_frag set when dq_acc was written in dq_frag_off's order (flash_common.cuh:
// attention_dq_convert's frag), cleared when row by row
cudaError_t sr_flex_backward_hopper(bf16 *dk, bf16 *dv, bf16 *dq, float *dq_acc, const bf16 *q, const bf16 *k,
                                    const bf16 *v, const bf16 *dout, const float *lse, const float *delta, int T, float scale,
                                    flex_mask fm, att_strides as, int64_t BH, cudaStream_t s, int *dq_frag);
// the mma.sync flash forward over a mask (bf16, D 64 or 128, blocks of 128; grid fm.nb x BH): kernel 1,
// or kernel 2 when v2, for flex attention and, with a mask of no lists, dense attention (attention.cu);
// NULL or the error
const char *sr_flex_forward_flash(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int T, int D,
                                  float scale_log2, flex_mask fm, att_strides as, int64_t BH, bool v2, cudaStream_t s);
// SR_FLEX_FWD_V2 (1: kernel 2, 0: kernel 1), else dflt
extern "C" int sr_flex_fwd_v2(int dflt);
// SR_FLEX_BWD_SPLIT=1: the backward above with dq_acc NULL
extern "C" int sr_flex_hopper_split(void);
// on a device of compute capability 9, the kernels above for flex attention and dense attention
// (kernels/attention.cu: bf16, D 128, T a multiple of 128, a mask with no lists): both by default (the
// forward not at a narrow window), SR_FLEX_WGMMA (0 neither, 1 both, fwd, bwd) otherwise; a mask of
// SR_FLEX_WGMMA_FWD and SR_FLEX_WGMMA_BWD, 0 when none
#define SR_FLEX_WGMMA_FWD 1
#define SR_FLEX_WGMMA_BWD 2
#define SR_FLEX_WGMMA_AUTO 4  // SR_FLEX_WGMMA unset: the forward where it is faster (flex_attention.cu)
extern "C" int sr_flex_wgmma(void);

#endif
