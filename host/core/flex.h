/*
** core/flex.h: the block mask of flex attention (F.flex_attention, FlexAttention's BlockMask),
** shared by the CPU reference (host/cpu/attention.c), the CUDA kernels (kernels/flex_attention.cu)
** and the front-end (host/core/ops_flex.c).
**
** A block mask over T tokens in NB = T / block blocks is one contiguous int32 tensor of shape
** [NB, 4 NB + 4 + block] (the shape carries NB and the block size; the data is flat):
**   list L (0..3) at L (NB + NB^2): counts [NB], then indices [NB][NB], row r's first counts[r]
**     entries valid, ascending, the rest 0;
**     L = 0 (SR_FLEX_KV): the partial kv blocks of each query block (element mask applied),
**     L = 1 (SR_FLEX_FULL_KV): the full kv blocks of each query block (no element mask),
**     L = 2, 3 (SR_FLEX_Q, SR_FLEX_FULL_Q): their transposes, the query blocks that list each kv
**     block (the backward iterates kv blocks);
**   then the doc ids [T] at 4 (NB + NB^2) (zeros without doc ids).
** Fully masked block pairs are in no list and are never visited.
**
** The element mask (applied on partial blocks only) is the conjunction of causal (kv <= q),
** window (q - kv < window tokens; 0: none) and equal doc ids. A window in whole blocks
** (window_blocks, record 16) is block-constant: it only removes blocks from the lists.
*/
#ifndef SR_FLEX_H
#define SR_FLEX_H

#include <stdint.h>  /* defines: int32_t, int64_t, INT64_MIN, INT64_MAX */

#ifdef __CUDACC__
#define SR_FLEX_FN static inline __host__ __device__
#else
#define SR_FLEX_FN static inline
#endif

enum { SR_FLEX_KV = 0, SR_FLEX_FULL_KV = 1, SR_FLEX_Q = 2, SR_FLEX_FULL_Q = 3 };

SR_FLEX_FN int64_t sr_flex_count_at(int64_t nb, int l) { return l * (nb + nb * nb); }
SR_FLEX_FN int64_t sr_flex_index_at(int64_t nb, int l) { return l * (nb + nb * nb) + nb; }
SR_FLEX_FN int64_t sr_flex_doc_at(int64_t nb) { return 4 * (nb + nb * nb); }
SR_FLEX_FN int64_t sr_flex_cols(int64_t nb, int64_t block) { return 4 * nb + 4 + block; }

/* may query qi see key kj under the element mask (doc: the ids, NULL for none) */
SR_FLEX_FN int sr_flex_visible(int64_t qi, int64_t kj, int causal, int64_t window, const int32_t *doc) {
  return !(causal && kj > qi) && !(window > 0 && qi - kj >= window) && !(doc && doc[qi] != doc[kj]);
}

/* class of the block pair (query block qb, kv block kb) of bs tokens: 0 empty, 1 partial, 2 full.
** wb: window in blocks (0: none; qb - kb < wb); lo, hi: min and max doc id of each block (NULL:
** no doc ids). Exact for causal and windows; with doc ids as the records build it (block id ranges
** overlap: possibly visible; one id in both blocks: full), so a partial block may hold no visible
** pair when doc ids and a window meet, but a block with a visible pair is always listed and a
** full one always is full. */
SR_FLEX_FN int sr_flex_class(int64_t qb, int64_t kb, int64_t bs, int causal, int64_t window, int64_t wb,
                             const int32_t *lo, const int32_t *hi) {
  int64_t d = qb - kb, dmin = d * bs - (bs - 1), dmax = d * bs + (bs - 1);  /* q - kv over the pair */
  int64_t a = causal ? 0 : INT64_MIN, b = window > 0 ? window - 1 : INT64_MAX;
  if (dmax < a || dmin > b) return 0;
  if (wb > 0 && d >= wb) return 0;
  if (lo && (lo[qb] > hi[kb] || lo[kb] > hi[qb])) return 0;
  int full = dmin >= a && dmax <= b;
  if (lo && !(lo[qb] == hi[qb] && lo[kb] == hi[kb] && lo[qb] == lo[kb])) full = 0;
  return full ? 2 : 1;
}

#endif
