/*
** test_flex_tiles.cu: the walk of the flex kernels over a row's tiles (kernels/flex_common.cuh,
** flex_tiles), run on the host: with lists built from host/core/flex.h's block classes it visits a
** row's partial and full blocks merged in ascending order, as an independent merge says (documents,
** windows, causal or not), and with no lists (dense attention through the flex kernels) it walks
** exactly what the lists of a causal or full mask would give, forward and transposed, next() with
** its dead-tile skipping included, and two tiles at a time (the forward's tiles of 128 keys) the same
** blocks; flex_ring, driven as the Hopper kernels' loops drive it (two, three and four stages, and the
** wide walk's three), computes the same tiles from the stages they were loaded into and never
** loads into a stage still read; the element mask's one-compare form (flex_vis_ids) agrees with
** the reference's visibility on every pair; load_tile_async's and load_core_async's threads copy
** each chunk of a tile once (the latter at its core-matrix offset); a descriptor moved by wg_desc_add
** equals the moved address's; the dQ tile's fragment order (dq_frag_off) and its inverse agree.
** Host code only: needs nvcc, no GPU.
*/
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "flash_common.cuh"  // defines: tile_chunks
#include "flex_common.cuh"   // defines: flex_mask, flex_mask_span, flex_vis_ids, flex_tiles, flex_dead; core/flex.h: sr_flex_class, sr_flex_visible, sr_flex_*_at
#include "wgmma.cuh"         // defines: core_chunks, wg_off

static int failed = 0, checks = 0;
static void check(bool ok, const char *what, int nb, int r, int t, int ti) {
  checks++;
  if (!ok && failed++ < 10) fprintf(stderr, "FAIL %s (nb %d, row %d, transposed %d, tile %d)\n", what, nb, r, t, ti);
}

// the packed block mask of host/core/flex.h from the block classes (doc ids: NULL or per token)
static std::vector<int32_t> build(int nb, int causal, int window, const int32_t *doc) {
  const int bs = 128;
  std::vector<int32_t> bm(sr_flex_doc_at(nb) + (int64_t)nb * bs, 0), lo(nb), hi(nb);
  for (int b = 0; b < nb && doc; b++) {
    lo[b] = hi[b] = doc[b * bs];
    for (int i = 0; i < bs; i++) { lo[b] = doc[b * bs + i] < lo[b] ? doc[b * bs + i] : lo[b]; hi[b] = doc[b * bs + i] > hi[b] ? doc[b * bs + i] : hi[b]; }
  }
  for (int q = 0; q < nb; q++)
    for (int k = 0; k < nb; k++) {
      int c = sr_flex_class(q, k, bs, causal, window, 0, doc ? lo.data() : NULL, doc ? hi.data() : NULL);
      if (!c) continue;
      int l = c == 2 ? SR_FLEX_FULL_KV : SR_FLEX_KV, lt = c == 2 ? SR_FLEX_FULL_Q : SR_FLEX_Q;
      bm[sr_flex_index_at(nb, l) + (int64_t)q * nb + bm[sr_flex_count_at(nb, l) + q]++] = k;
      bm[sr_flex_index_at(nb, lt) + (int64_t)k * nb + bm[sr_flex_count_at(nb, lt) + k]++] = q;
    }
  for (int i = 0; doc && i < nb * bs; i++) bm[sr_flex_doc_at(nb) + i] = doc[i];
  return bm;
}

// the list path against an independent merge of the row's two lists (built from sr_flex_class)
static void lists_in_order(int nb, int causal, int window, const int32_t *doc) {
  std::vector<int32_t> bm = build(nb, causal, window, doc);
  flex_mask m = {bm.data(), doc ? bm.data() + sr_flex_doc_at(nb) : NULL, NULL, nb, causal, window};
  for (int t = 0; t < 2; t++)
    for (int r = 0; r < nb; r++) {
      std::vector<int> want, part;  // blocks of the row in ascending order, and whether partial
      for (int b = 0; b < nb; b++) {  // block b's class in the row's lists: 0 none, 1 partial, 2 full
        int c = 0;
        for (int l = 0; l < 2; l++) {
          int list = t ? (l ? SR_FLEX_FULL_Q : SR_FLEX_Q) : (l ? SR_FLEX_FULL_KV : SR_FLEX_KV);
          int n = bm[sr_flex_count_at(nb, list) + r];
          for (int i = 0; i < n; i++) if (bm[sr_flex_index_at(nb, list) + (int64_t)r * nb + i] == b) c = l ? 2 : 1;
        }
        if (c) { want.push_back(b); part.push_back(c == 1); }
      }
      flex_tiles tl(m, r, t);
      check(tl.n == 2 * (int)want.size(), "tile count", nb, r, t, -1);
      for (int ti = 0; ti < tl.n && ti < 2 * (int)want.size(); ti++) {
        bool p;
        int s = tl.start(ti, &p);
        check(s == want[ti / 2] * 128 + (ti & 1) * 64 && p == (bool)part[ti / 2], "list walk order", nb, r, t, ti);
      }
    }
}

// no lists (dense) against the lists of the same causal or full mask: start() and next()
static void dense_as_lists(int nb, int causal) {
  std::vector<int32_t> bm = build(nb, causal, 0, NULL);
  flex_mask ml = {bm.data(), NULL, NULL, nb, causal, 0}, md = {NULL, NULL, NULL, nb, causal, 0};
  for (int t = 0; t < 2; t++)
    for (int r = 0; r < nb; r++) {
      flex_tiles a(ml, r, t), b(md, r, t);
      check(a.n == b.n, "dense tile count", nb, r, t, -1);
      for (int ti = 0; ti < a.n && ti < b.n; ti++) {
        bool pa, pb;
        int sa = a.start(ti, &pa), sb = b.start(ti, &pb);
        check(sa == sb && pa == pb, "dense walk", nb, r, t, ti);
      }
      for (int no = 64; no <= 128; no += 64) {  // next() from the start, the other side's range of 64 or 128
        flex_tiles c(ml, r, t), d(md, r, t);
        int o0 = r * 128 + (no == 64 ? 64 : 0), ic = -1, id = -1;
        do {
          ic = c.next(ml, ic, o0, no, t);
          id = d.next(md, id, o0, no, t);
          check(ic == id, "dense next()", nb, r, t, ic);
        } while (ic < c.n && id < d.n);
      }
    }
}

// the Hopper kernels' loop over a row (flex_ring of AHEAD + 1 entries, NS stages; ov: the tile
// before's V still read while a tile computes; W 2: tiles of a whole block, the forward's KB 2)
// against next() alone: the same tiles in the same order, each computed from the stage it was loaded
// into, and no load into a stage still read
template <int AHEAD, int W = 1>
static void ring_walk(const flex_mask &m, int nb, int r, int t, int o0, int no, int NS, bool ov) {
  flex_tiles u(m, r, t), tl(m, r, t);
  std::vector<int> want;
  for (int ti = u.next(m, -W, o0, no, t, W); ti < u.n; ti = u.next(m, ti, o0, no, t, W)) {
    bool p;
    want.push_back(u.start(ti, &p) * 2 + p);
  }
  std::vector<int> stage(NS, -1), loads(NS, 0), phase(NS, -1);  // the tile each stage holds; its loads so far
  flex_ring<AHEAD + 1> rg;                                       // and the phase (0, 1) of the one it holds
  rg.la = tl.next(m, -W, o0, no, t, W);
  for (int e = 0; e < AHEAD; e++)
    if (rg.push(tl, m, e, o0, no, t, W)) stage[e] = rg.ti[e], phase[e] = loads[e]++ & 1;
  size_t k = 0;
  for (int cur = 0, prev = -1, it = 0; rg.ti[0] < tl.n; rg.shift(), prev = cur, cur = cur + 1 == NS ? 0 : cur + 1, it++) {
    int ls = (cur + AHEAD) % NS;
    check(ls != cur && !(ov && ls == prev), "a load into a stage still read", nb, r, t, rg.ti[0]);
    if (rg.push(tl, m, AHEAD, o0, no, t, W)) stage[ls] = rg.ti[AHEAD], phase[ls] = loads[ls]++ & 1;
    check(stage[cur] == rg.ti[0], "the tile computed is the one its stage holds", nb, r, t, rg.ti[0]);
    // the TMA kernels wait on stage cur's mbarrier for parity (it / NS) & 1: the phase its tile's load completes
    check(phase[cur] == ((it / NS) & 1), "the mbarrier parity waited for is the tile's load's", nb, r, t, rg.ti[0]);
    check(k < want.size() && want[k] == rg.s0[0] * 2 + rg.part[0], "ring walk", nb, r, t, rg.ti[0]);
    k++;
  }
  check(k == want.size(), "ring walk length", nb, r, t, -1);
}

// the walk two tiles at a time (W 2, the forward's tiles of 128 keys) visits, in order, exactly the
// blocks of which the walk one tile at a time visits a tile (a block is dead at 128 keys iff both
// halves are), each once, from its first key
static void wide_walk(const flex_mask &m, int nb, int r, int o0, int no) {
  flex_tiles u(m, r, 0), v(m, r, 0);
  std::vector<int> narrow, wide;
  for (int ti = u.next(m, -1, o0, no, 0); ti < u.n; ti = u.next(m, ti, o0, no, 0)) {
    bool p;
    int s = u.start(ti, &p) / 128 * 2 + p;
    if (narrow.empty() || narrow.back() != s) narrow.push_back(s);
  }
  for (int ti = v.next(m, -2, o0, no, 0, 2); ti < v.n; ti = v.next(m, ti, o0, no, 0, 2)) {
    bool p;
    int s = v.start(ti, &p);
    check(ti % 2 == 0 && s % 128 == 0, "a wide tile starts its block", nb, r, 0, ti);
    wide.push_back(s / 128 * 2 + p);
  }
  check(wide == narrow, "the wide walk's blocks are the narrow walk's", nb, r, 0, -1);
}

static void rings(int nb, int causal, int window, const int32_t *doc) {
  std::vector<int32_t> bm = build(nb, causal, window, doc);
  flex_mask m = {bm.data(), doc ? bm.data() + sr_flex_doc_at(nb) : NULL, NULL, nb, causal, window};
  flex_mask d = {NULL, NULL, NULL, nb, causal, 0};
  for (int t = 0; t < 2; t++)
    for (int r = 0; r < nb; r++)
      for (int half = 0; half < 2; half++) {  // the other side's range: a block of 128, or one half of it
        int o0 = r * 128 + half * 64, no = half ? 64 : 128;
        ring_walk<1>(m, nb, r, t, o0, no, 2, false);  // SR_FLEX_STAGES=2
        ring_walk<2>(m, nb, r, t, o0, no, 3, false);  // 3 (the default)
        ring_walk<2>(m, nb, r, t, o0, no, 4, true);   // the overlaps: four stages, two ahead
        if (!window && !doc) ring_walk<2>(d, nb, r, t, o0, no, 3, false);
        if (t == 0) {  // the forward's tiles of 128 keys (KB 2): overlapped, three stages, one ahead
          ring_walk<1, 2>(m, nb, r, t, o0, no, 3, true);
          wide_walk(m, nb, r, o0, no);
          if (!window && !doc) ring_walk<1, 2>(d, nb, r, t, o0, no, 3, true), wide_walk(d, nb, r, o0, no);
        }
      }
}

// the flash kernels' element mask (flex_vis_ids: causal and window as one unsigned range test on
// query - key, flex_mask_span) against sr_flex_visible, the CPU reference's, on every pair of a
// sequence of T tokens, windows from none to past T, causal or not, with and without documents
static void element_mask(int T, int causal, int window, const int32_t *doc) {
  flex_mask m = {NULL, doc, NULL, 1, causal, window};
  flex_mask_span(m);
  for (int qi = 0; qi < T; qi++)
    for (int kj = 0; kj < T; kj++)
      check(flex_vis_ids(m, qi, kj, doc ? doc[qi] : 0, doc ? doc[kj] : 0) == (bool)sr_flex_visible(qi, kj, causal, window, doc),
            "element mask: window, query, causal, key", window, qi, causal, kj);
}

// load_tile_async's chunks (flash_common.cuh, tile_chunks) for every tile the flash kernels load:
// each (row, 16-byte column) of a ROWS x D tile exactly once, over the block's NT threads and steps
template <int D, int ROWS, int NT>
static void chunks_once(void) {
  using TC = tile_chunks<D, ROWS, NT>;
  std::vector<int> seen(ROWS * (D / 8), 0);
  for (int tid = 0; tid < NT; tid++)
    for (int i = 0; i < TC::IT; i++) {
      int r = TC::row(tid, i), c = TC::col(tid);
      bool in = r >= 0 && r < ROWS && c >= 0 && c < D && c % 8 == 0;
      check(in, "tile chunk in the tile", D, r, NT, c);
      if (in) seen[r * (D / 8) + c / 8]++;
    }
  for (size_t k = 0; k < seen.size(); k++) check(seen[k] == 1, "tile chunk copied once", D, (int)k / (D / 8), NT, seen[k]);
}

// load_core_async's chunks (wgmma.cuh, core_chunks) for every tile the Hopper kernels load: each
// (row, 16-byte column) of a ROWS x 128 tile exactly once, at its core-matrix offset (wg_off), the
// steps' constant shared-memory stride included
template <int ROWS, int NT>
static void core_chunks_once(void) {
  using CC = core_chunks<ROWS, NT>;
  std::vector<int> seen(ROWS * 16, 0);
  for (int tid = 0; tid < NT; tid++)
    for (int i = 0; i < CC::IT; i++) {
      int r = CC::row(tid, i), c = CC::col(tid);
      bool in = r >= 0 && r < ROWS && c >= 0 && c < 128 && c % 8 == 0;
      check(in, "core chunk in the tile", ROWS, r, NT, c);
      check(!in || CC::off(tid, i) == wg_off(r, c, ROWS), "core chunk at its core-matrix offset", ROWS, r, NT, c);
      if (in) seen[r * 16 + c / 8]++;
    }
  for (size_t k = 0; k < seen.size(); k++) check(seen[k] == 1, "core chunk copied once", ROWS, (int)k / 16, NT, seen[k]);
}

// sw128_off (wgmma.cuh): the 128-byte swizzled layout is CuTe's Swizzle<3, 4, 3> (address bits 4-6
// XOR bits 7-9) applied to panels of R rows of 128 bytes; each element of an R x C tile once
template <int R, int C>
static void sw128_once(void) {
  std::vector<int> seen(R * C, 0);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      int o = sw128_off(r, c, R), lin = ((c / 64) * R + r) * 128 + (c % 64) * 2;
      check(o >= 0 && o < R * C, "swizzled offset in the tile", R, r, C, c);
      check(o * 2 == (lin ^ (((lin >> 7) & 7) << 4)), "swizzled offset is Swizzle<3,4,3>", R, r, C, c);
      if (o >= 0 && o < R * C) seen[o]++;
    }
  for (size_t k = 0; k < seen.size(); k++) check(seen[k] == 1, "swizzled offset taken once", R, (int)k, C, seen[k]);
}

// flash_common.cuh's fragment order of a 64 x 128 dQ tile (the Hopper backward's DQB): element e of
// float4 i of thread lane in warp w of warpgroup h is the accumulator element that thread holds as
// dQ[4 i + e] (a wgmma m64nN accumulator: rows w 16 + lane / 4, + 8 for e >= 2; columns 8 i + 2 (lane
// % 4) + e % 2 of the warpgroup's 64), every element of the tile once, and the converter's inverse
// (dq_frag_pos) gives that element back; a warp's float4 stores of one i are 512 contiguous bytes
static void dq_frag_once(void) {
  std::vector<int> seen(64 * 128, 0);
  for (int h = 0; h < 2; h++)
    for (int w = 0; w < 4; w++)
      for (int i = 0; i < 8; i++)
        for (int lane = 0; lane < 32; lane++) {
          int o = dq_frag_off(h, w, i, lane), r, c;
          check(o % 4 == 0 && o >= 0 && o + 4 <= 64 * 128, "dq_frag_off: a float4 of the tile", h, w, i, lane);
          check(o - dq_frag_off(h, w, i, 0) == 4 * lane, "dq_frag_off: a warp's float4 of one i contiguous", h, w, i, lane);
          dq_frag_pos(o / 4, &r, &c);
          for (int e = 0; e < 4; e++) {
            int row = w * 16 + lane / 4 + 8 * (e / 2), col = h * 64 + 8 * i + 2 * (lane % 4) + e % 2;
            check(r + 8 * (e / 2) == row && c + e % 2 == col, "dq_frag_pos inverts dq_frag_off", h, w, i, lane);
            if (o + e >= 0 && o + e < 64 * 128) seen[row * 128 + col]++;
          }
        }
  for (int k = 0; k < 64 * 128; k++) check(seen[k] == 1, "dq_frag_off: every element of the tile once", 0, k / 128, 0, k % 128);
}

// wgmma.cuh's wg_desc_add: a descriptor moved on by an offset is the descriptor of the moved address,
// for every 16-byte shared address and the kernels' offsets (k16 slices, panels, stages) that stay
// inside a block's 227 KB, both layouts (the swizzled one's bit 62 untouched)
static void desc_add_once(void) {
  const uint32_t offs[] = {0, 16, 32, 64, 96, 256, 512, 1024, 2048, 4096, 6144, 8192, 8192 + 96, 16384, 32768, 65536,
                           98304, 131072, 180224};
  const uint32_t lbos[][2] = {{128, 2048}, {16, 1024}, {8192, 1024}, {4096, 128}};
  for (uint32_t a = 0; a < 232448; a += 16)
    for (uint32_t off : offs) {
      if (a + off >= 232448) continue;
      for (auto &l : lbos) {
        uint64_t d = wg_desc_at(a, l[0], l[1]), want = wg_desc_at(a + off, l[0], l[1]);
        check(wg_desc_add(d, off) == want, "wg_desc_add: the moved address's descriptor", 0, (int)a, 0, (int)off);
        check(wg_desc_add(d | (1ull << 62), off) == (want | (1ull << 62)), "wg_desc_add: swizzled", 0, (int)a, 1, (int)off);
      }
    }
}

int main(void) {
  desc_add_once();
  dq_frag_once();
  sw128_once<64, 128>();   // a Q / dO / K / V tile of 64 rows
  sw128_once<128, 64>();   // V of 128 keys, one panel
  sw128_once<128, 128>();
  core_chunks_once<64, 128>();   // one warpgroup: the forward's K, V and Q tiles; the backward's K, V, Q, dO
  core_chunks_once<64, 256>();   // two warpgroups: K, V tiles; the backward's Q, dO
  core_chunks_once<128, 256>();  // ... Q; the backward's K, V

  chunks_once<64, 64, 128>();   // dense backward D 64: K, V, Q, dO tiles
  chunks_once<128, 64, 128>();  // flex / dense backward D 128; flex forward kernel 2's K, V
  chunks_once<128, 128, 128>(); // flex forward kernel 2's Q
  chunks_once<64, 64, 256>();   // forward kernels (256 threads): K, V tiles
  chunks_once<64, 128, 256>();  // ... and Q
  chunks_once<128, 64, 256>();
  chunks_once<128, 128, 256>();
  chunks_once<64, 128, 128>();
  {
    const int T = 300;
    std::vector<int32_t> doc(T);
    for (int i = 0; i < T; i++) doc[i] = i / 37 + (i > 200);  // documents of 37 tokens, two shorter (16, 21) around 200
    const int windows[] = {0, -5, 1, 2, 36, 37, 128, 299, 300, 301, 1 << 20, 2147483647};
    for (int causal = 0; causal < 2; causal++)
      for (int w : windows) {
        element_mask(T, causal, w, NULL);
        element_mask(T, causal, w, doc.data());
      }
  }
  for (int nb = 1; nb <= 9; nb++)
    for (int causal = 0; causal < 2; causal++) {
      dense_as_lists(nb, causal);
      lists_in_order(nb, causal, 0, NULL);
      lists_in_order(nb, causal, 300, NULL);
      std::vector<int32_t> doc(nb * 128);
      unsigned s = 12345u + nb;
      int id = 0;
      for (int i = 0; i < nb * 128; i++) {  // documents of 1 to ~400 tokens
        s = s * 1103515245u + 12345u;
        if ((s >> 16) % 200 == 0) id++;
        doc[i] = id;
      }
      lists_in_order(nb, causal, 0, doc.data());
      lists_in_order(nb, causal, 200, doc.data());
      rings(nb, causal, 0, NULL);
      rings(nb, causal, 200, doc.data());
    }
  printf("%d checks, %d failed\n", checks, failed);
  return failed ? 1 : 0;
}
