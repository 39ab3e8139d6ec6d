/*
** cpu/encoder.c: CPU reference of embedding and its backward (the token-embedding lookup; kernels/encoder.cu).
** Dims: N rows (tokens), C channels, V vocabulary, B batch, H heads, T sequence, D head dim.
** Gradient contract: activation grads are written (=), parameter grads accumulated (+=).
** Every row is computed in double in its own thread; parameter grads are summed per column in
** row order, and embedding grads per vocabulary row in position order, so no result depends on
** the thread count.
** Saved statistics (rms/layer norm mean and rstd, cross-entropy and attention lse, and the
** cross-entropy losses) are documented f32; these kernels accept any float dtype there, so an f64
** gradcheck can save them in f64 and lose no precision.
*/
#include <math.h>        /* defines: sqrt, log, INFINITY */
#include <stdint.h>      /* defines: int32_t, int64_t */
#include <stdlib.h>      /* defines: malloc, free, qsort */
#include <string.h>      /* defines: memcpy */

#include "cpu/common.h"  /* defines: cpu_ld, cpu_st, cpu_side_ld, cpu_side_st, cpu_check_indices, cpu_thread_buffers */

/* ---------------------------------------------------------------------------------------------
** embedding: out[n,:] = weight[idx[n],:]; out [N,C], weight [V,C], idx [N] i32 */
const char *sr_cpu_embedding(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *w = c->t[1], *idx = c->t[2];
  const char *e = cpu_check_floats(c, 0, 2);
  if (!e) e = cpu_check_i32(idx, 3);
  if (e) return e;
  int64_t V = w->shape[0], C = w->shape[1], N = sr_numel(idx);
  const int32_t *ix = (const int32_t *)sr_data(idx);
  if ((e = cpu_check_indices("index", ix, N, V, 0, 0))) return e;
  double *all = cpu_thread_buffers(C);
  if (!all) return CPU_OOM;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *row = cpu_thread_slice(all, C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      if (out->dtype == w->dtype) {
        size_t es = sr_dtype_size(w->dtype);
        memcpy((char *)sr_data(out) + (size_t)(n * C) * es, (const char *)sr_data(w) + (size_t)(ix[n] * C) * es, (size_t)C * es);
      } else {
        cpu_load(w, w->offset + ix[n] * C, C, row);
        cpu_store(out, out->offset + n * C, C, row);
      }
    }
  }
  free(all);
  return NULL;
}

typedef struct { int32_t id; int32_t pad; int64_t pos; } emb_entry;
static int emb_entry_cmp(const void *a, const void *b) {
  const emb_entry *x = (const emb_entry *)a, *y = (const emb_entry *)b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* embedding_backward: dweight[idx[n],:] += dout[n,:]; positions are grouped by index, each
** group summed in position order in double and added to its row once. Fails on an index out of
** [0,V) as the forward does (the contract row does not say; writing there would corrupt memory) */
const char *sr_cpu_embedding_backward(const sr_kcall *c) {
  sr_tensor *dw = c->t[0], *dout = c->t[1], *idx = c->t[2];
  const char *e = cpu_check_floats(c, 0, 2);
  if (!e) e = cpu_check_i32(idx, 3);
  if (e) return e;
  int64_t V = dw->shape[0], C = dw->shape[1], N = sr_numel(idx);
  const int32_t *ix = (const int32_t *)sr_data(idx);
  if ((e = cpu_check_indices("index", ix, N, V, 0, 0))) return e;
  emb_entry *ent = (emb_entry *)malloc(sizeof(emb_entry) * (size_t)(N + 1));
  int64_t *group = (int64_t *)malloc(sizeof(int64_t) * (size_t)(N + 1));
  double *all = cpu_thread_buffers(2 * C);
  if (!ent || !group || !all) { free(ent); free(group); free(all); return CPU_OOM; }
  for (int64_t n = 0; n < N; n++) ent[n] = (emb_entry){ix[n], 0, n};
  qsort(ent, (size_t)N, sizeof(emb_entry), emb_entry_cmp);
  int64_t ng = 0;
  for (int64_t n = 0; n < N; n++)
    if (n == 0 || ent[n].id != ent[n - 1].id) group[ng++] = n;
  group[ng] = N;
#pragma omp parallel if (N * C > CPU_PAR_MIN)
  {
    double *acc = cpu_thread_slice(all, 2 * C), *row = acc + C;
#pragma omp for schedule(dynamic, 16)
    for (int64_t g = 0; g < ng; g++) {
      for (int64_t j = 0; j < C; j++) acc[j] = 0;
      for (int64_t p = group[g]; p < group[g + 1]; p++) {
        cpu_load(dout, dout->offset + ent[p].pos * C, C, row);
        for (int64_t j = 0; j < C; j++) acc[j] += row[j];
      }
      int64_t wrow = dw->offset + (int64_t)ent[group[g]].id * C;
      cpu_load(dw, wrow, C, row);
      for (int64_t j = 0; j < C; j++) row[j] += acc[j];
      cpu_store(dw, wrow, C, row);
    }
  }
  free(ent);
  free(group);
  free(all);
  return NULL;
}
