/*
** test_flex_tiles.cu: the walk of the flex kernels over a row's tiles (kernels/flex_common.cuh,
** flex_tiles), run on the host: with lists built from host/core/flex.h's block classes it visits a
** row's partial and full blocks merged in ascending order, as an independent merge says (documents,
** windows, causal or not), and with no lists (dense attention through the flex kernels) it walks
** exactly what the lists of a causal or full mask would give, forward and transposed, next() with
** its dead-tile skipping included. Host code only: needs nvcc, no GPU.
*/
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "flex_common.cuh"  // defines: flex_mask, flex_tiles, flex_dead; core/flex.h: sr_flex_class, sr_flex_*_at

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

int main(void) {
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
    }
  printf("%d checks, %d failed\n", checks, failed);
  return failed ? 1 : 0;
}
