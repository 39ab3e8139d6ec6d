/*
** cpu/sort.c: CPU reference of argsort over rows (kernels/sort.cu): the stable order of each row
** of a contiguous [R, N] tensor, ascending or descending, as int32 indices; equal keys keep
** their index order either way (torch.argsort(..., stable=True)). The order is the radix sort's
** of the CUDA kernel (CUB): floats by their bits made monotonic, -0.0 equal to +0.0, a NaN by its
** bits (a positive NaN after +inf, a negative one before -inf); int32 as signed integers.
*/
#include <stdint.h>      /* defines: int64_t, int32_t, uint64_t */
#include <stdlib.h>      /* defines: malloc, free, qsort */
#include <string.h>      /* defines: memcpy */

#include "cpu/common.h"  /* defines: cpu_check_dtype, CPU_OOM */

typedef struct { uint64_t key; int64_t idx; } sort_item;

/* element i of x as an unsigned key whose order is the values' order */
static uint64_t sort_key(const sr_tensor *x, int64_t i) {
  const void *base = x->storage->data;
  switch (x->dtype) {
    case SR_I32: return (uint64_t)((uint32_t)((const int32_t *)base)[i] ^ 0x80000000u);
    case SR_F32: {
      uint32_t b;
      memcpy(&b, (const float *)base + i, 4);
      if (b == 0x80000000u) b = 0;  /* -0.0 == +0.0 */
      return (uint64_t)(b & 0x80000000u ? ~b : b | 0x80000000u);
    }
    case SR_BF16: {
      uint16_t b = ((const uint16_t *)base)[i];
      if (b == 0x8000u) b = 0;
      return (uint64_t)(b & 0x8000u ? (uint16_t)~b : (uint16_t)(b | 0x8000u));
    }
    case SR_F64: {
      uint64_t b;
      memcpy(&b, (const double *)base + i, 8);
      if (b == 0x8000000000000000ull) b = 0;
      return b & 0x8000000000000000ull ? ~b : b | 0x8000000000000000ull;
    }
    default: return 0;
  }
}

/* ascending key, then ascending index: a total order, so qsort's result is the stable sort */
static int sort_cmp(const void *pa, const void *pb) {
  const sort_item *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  return (a->idx > b->idx) - (a->idx < b->idx);
}

/* argsort: t0 out [R, N] i32, t1 x [R, N] (contig); i0 descending */
const char *sr_cpu_argsort(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  const char *e = cpu_check_dtype(x, 2, true);
  if (e) return e;
  if (out->dtype != SR_I32) return "out must be int32";
  if (!sr_is_contiguous(out) || !sr_is_contiguous(x) || sr_numel(out) != sr_numel(x)) return "out and x must be contiguous, same size";
  int64_t N = x->ndim ? x->shape[x->ndim - 1] : 1, R = N ? sr_numel(x) / N : 0;
  if (N > INT32_MAX) return "rows longer than 2^31 - 1 elements";
  sort_item *it = malloc(sizeof *it * (size_t)(N ? N : 1));
  if (!it) return CPU_OOM;
  int32_t *o = (int32_t *)out->storage->data + out->offset;
  for (int64_t r = 0; r < R; r++) {
    for (int64_t j = 0; j < N; j++) {
      uint64_t k = sort_key(x, x->offset + r * N + j);
      it[j] = (sort_item){c->i[0] ? ~k : k, j};  /* descending: the complement, indices still ascending */
    }
    qsort(it, (size_t)N, sizeof *it, sort_cmp);
    for (int64_t j = 0; j < N; j++) o[r * N + j] = (int32_t)it[j].idx;
  }
  free(it);
  return NULL;
}
