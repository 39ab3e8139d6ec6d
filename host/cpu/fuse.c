/*
** cpu/fuse.c: the step compiler's CPU interpreter (core/fuse.h): runs a fused element-wise group
** over its iteration space in chunks, as host/cpu/elementwise.c runs one op: loads gathered into
** doubles, each op computed by elementwise.c's own functions and rounded to its output's dtype (as
** the unfused op's store would), live outputs scattered. So a fused step gives the unfused step's
** bits. Every tensor of a group is viewable in the group's shape, so flat index i of a tensor is
** flat index i of the group; cpu_gather/cpu_scatter walk each in its own strides.
** A loss group (xent, core/fuse.h) runs row by row: the row's values computed into scratch (the
** logits also as a row of their dtype), the cross_entropy kernel of host/cpu/softmax_xent.c on
** that one row (so the numbers are the unfused ones), then the epilogue on the gradient and the
** stores from the kept values (the GPU kernel computes them again instead: same numbers). A
** deferred one computes the loss and an f64 lse only; its backward, at the relay, computes the
** row's values again from the kept loads and the gradient with softmax_xent.c's backward.
*/
#include <string.h>       /* defines: memcpy */

#include "core/fuse.h"   /* defines: sr_fuse_group, SR_FUSE_MAXOPS */
#include "cpu/common.h"  /* defines: cpu_gather, cpu_scatter, cpu_ld, cpu_st, sr_cpu_unary_fwd */

#define FUSE_CHUNK 256
#define FUSE_MAXVAL SR_FUSE_MAXVALS  /* loads, ops, a loss group's gradient and chain */

/* rounds v[0..n) to dtype dt, as storing and loading it again would */
static void round_to(double *v, int64_t n, int dt) {
  if (dt == SR_F64) return;
  for (int64_t k = 0; k < n; k++) {
    double b[1];
    cpu_st(b, (sr_dtype)dt, 0, v[k]);
    v[k] = cpu_ld(b, (sr_dtype)dt, 0);
  }
}

static void run_op(const sr_fuse_op *op, double (*v)[FUSE_CHUNK], double *y, int64_t m) {
  const double *a = op->nin > 0 ? v[op->in[0]] : NULL, *b = op->nin > 1 ? v[op->in[1]] : NULL;
  switch (op->kind) {
    case SR_K_fill: for (int64_t k = 0; k < m; k++) y[k] = op->p; break;
    case SR_K_copy: for (int64_t k = 0; k < m; k++) y[k] = a[k]; break;
    case SR_K_unary: sr_cpu_unary_fwd(y, a, m, op->fn, op->p); break;
    case SR_K_unary_backward:
      if (op->fn >= SR_UNARY_COUNT) sr_cpu_unary_bwd_y(y, a, b, m, op->fn - SR_UNARY_COUNT);
      else sr_cpu_unary_bwd(y, a, b, m, op->fn, op->p);
      break;
    case SR_K_binary: sr_cpu_binary_fwd(y, a, b, m, op->fn); break;
    default: {  /* where: cond ? a : b */
      const double *c = v[op->in[2]];
      for (int64_t k = 0; k < m; k++) y[k] = a[k] != 0 ? b[k] : c[k];
    }
  }
  round_to(y, m, op->dtype);
}

const char *sr_fuse_run_cpu(const sr_fuse_group *g, sr_tensor *const *t) {
  for (int k = 0; k < g->nio; k++) sr_tensor_materialize(t[k]);   /* lazy storages: the loads and stores only */
  int64_t n = 1;
  for (int d = 0; d < g->ndim; d++) n *= g->shape[d];
  int64_t nch = (n + FUSE_CHUNK - 1) / FUSE_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double v[FUSE_MAXVAL][FUSE_CHUNK];
    int64_t i0 = ch * FUSE_CHUNK, m = n - i0 < FUSE_CHUNK ? n - i0 : FUSE_CHUNK;
    for (int k = 0; k < g->nload; k++) cpu_gather(t[k], i0, m, v[k]);
    for (int k = 0; k < g->nop; k++) run_op(&g->op[k], v, v[g->nload + k], m);
    for (int k = g->nload; k < g->nio; k++) cpu_scatter(t[k], i0, m, v[g->io[k].src]);
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------
** loss groups */

/* the values of elements i0 .. i0 + m of a loss group's loop: loads, then the prologue's ops */
static void prologue(const sr_fuse_group *g, sr_tensor *const *t, int64_t i0, int64_t m, double (*v)[FUSE_CHUNK]) {
  for (int k = 0; k < g->nload; k++) cpu_gather(t[k], i0, m, v[k]);
  for (int k = 0; k < g->nop; k++) run_op(&g->op[k], v, v[g->nload + k], m);
}

/* element n of a 1-D side tensor (losses, lse, targets) as a tensor of one element */
static sr_tensor elem_of(const sr_tensor *x, int64_t n) {
  sr_tensor r = *x;
  r.offset += n * x->stride[x->ndim - 1];
  r.ndim = 1, r.shape[0] = 1, r.stride[0] = 1;
  return r;
}

/* which of a loss group's values its second pass over a row reads: the chain's inputs (not a
** deferred group's forward: its chain runs in the backward) and the forward's stores (back: the
** chain's inputs only). keep[k] is its row in the scratch, or -1; returns how many */
static int kept_values(const sr_fuse_group *g, int back, int *keep) {
  int nv = g->nload + g->nop, nk = 0;
  for (int k = 0; k < nv; k++) keep[k] = -1;
  for (int m = 0; g->epi >= 0 && m < g->nepi && (back || !g->defer); m++)
    for (int j = 0; j < g->epi_op[m].nin; j++)
      if (g->epi_op[m].in[j] < nv) keep[g->epi_op[m].in[j]] = 0;
  for (int k = g->nload; k < g->nio && !back; k++) keep[g->io[k].src] = 0;
  for (int k = 0; k < nv; k++)
    if (keep[k] == 0) keep[k] = nk++;
  return nk;
}

/* the first pass over row n: each chunk's values from the loads t (those kept into scratch, V
** doubles each), the logits into *row (a row of their dtype over lrow, made here) */
static void first_pass(const sr_fuse_group *g, sr_tensor *const *t, const int *keep, int64_t n, int64_t V,
                       double *scratch, double *lrow, sr_storage *st, sr_tensor *row, double (*v)[FUSE_CHUNK]) {
  *st = (sr_storage){.data = lrow, .nbytes = (size_t)V * sizeof(double), .device = SR_CPU, .refcount = 1};
  *row = (sr_tensor){.refcount = 1, .storage = st, .ndim = 2, .shape = {1, V}, .stride = {V, 1},
                     .dtype = (sr_dtype)g->op[g->lval - g->nload].dtype};
  for (int64_t j0 = 0; j0 < V; j0 += FUSE_CHUNK) {
    int64_t m = V - j0 < FUSE_CHUNK ? V - j0 : FUSE_CHUNK;
    prologue(g, t, n * V + j0, m, v);
    for (int k = 0; k < g->nload + g->nop; k++)
      if (keep[k] >= 0) memcpy(scratch + keep[k] * V + j0, v[k], (size_t)m * sizeof(double));
    for (int64_t k = 0; k < m; k++) cpu_st(lrow, row->dtype, j0 + k, v[g->lval][k]);
  }
}

/* the kept values of elements j0 .. j0 + m of the row back into v */
static void kept_chunk(const sr_fuse_group *g, const int *keep, const double *scratch, int64_t V, int64_t j0,
                       int64_t m, double (*v)[FUSE_CHUNK]) {
  for (int k = 0; k < g->nload + g->nop; k++)
    if (keep[k] >= 0) memcpy(v[k], scratch + keep[k] * V + j0, (size_t)m * sizeof(double));
}

/* row n of a loss group: its values computed once, those the second pass reads kept in scratch
** (and the logits as a row of their dtype), the cross_entropy on that row, then the epilogue and
** the stores (defer: no gradient; the lse in f64 into lse64 for the backward). scratch holds
** (kept values + 1) * V doubles. */
static const char *xent_row(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce, sr_tensor *lse64,
                            int64_t n, int64_t V, double *scratch) {
  int keep[FUSE_MAXVAL], nk = kept_values(g, 0, keep);
  double v[FUSE_MAXVAL][FUSE_CHUNK];
  sr_storage st;
  sr_tensor row;
  first_pass(g, t, keep, n, V, scratch, scratch + (int64_t)nk * V, &st, &row, v);
  sr_tensor lo = elem_of(ce->t[0], n), ls = elem_of(lse64 ? lse64 : ce->t[1], n), tg = elem_of(ce->t[3], n);
  sr_kcall c = *ce;
  c.t[0] = &lo, c.t[1] = &ls, c.t[2] = &row, c.t[3] = &tg, c.t[4] = &row;
  if (g->defer) c.nt = 4;  /* the loss only: the gradient waits for the backward */
  const char *err = sr_cpu_cross_entropy(&c);
  if (err) return err;
  sr_tensor dst = *ce->t[4];  /* row n of the logits' storage, flat */
  dst.offset += n * V, dst.ndim = 1, dst.shape[0] = V, dst.stride[0] = 1;
  int d = g->nload + g->nop, last = g->epi >= 0 ? d + g->nepi : d;
  for (int64_t j0 = 0; j0 < V && (!g->defer || g->nio > g->nload); j0 += FUSE_CHUNK) {
    int64_t m = V - j0 < FUSE_CHUNK ? V - j0 : FUSE_CHUNK;
    kept_chunk(g, keep, scratch, V, j0, m, v);
    for (int k = g->nload; k < g->nio; k++) cpu_scatter(t[k], n * V + j0, m, v[g->io[k].src]);
    if (g->defer) continue;  /* the live stores only */
    for (int64_t k = 0; k < m; k++) v[d][k] = cpu_ld(row.storage->data, row.dtype, j0 + k);
    for (int k = 0; g->epi >= 0 && k < g->nepi; k++) run_op(&g->epi_op[k], v, v[d + 1 + k], m);
    cpu_scatter(&dst, j0, m, v[last]);
  }
  return NULL;
}

/* row n of a deferred loss group's backward: the logits again from the kept loads (the values the
** chain reads kept in scratch), their gradient by host/cpu/softmax_xent.c's backward from the
** forward's f64 lse (the unfused in-place gradient to the bit), then the chain with the relay's
** own loads, stored into its output */
static const char *back_row(const sr_fuse_group *g, const sr_fuse_back *b, int64_t n, int64_t V, double *scratch) {
  int d = g->nload + g->nop, keep[FUSE_MAXVAL], nk = kept_values(g, 1, keep);
  double v[FUSE_MAXVAL][FUSE_CHUNK];
  sr_storage st;
  sr_tensor row;
  first_pass(g, b->gl, keep, n, V, scratch, scratch + (int64_t)nk * V, &st, &row, v);
  double one_v = 1.0;
  sr_storage one_s = {.data = &one_v, .nbytes = sizeof one_v, .device = SR_CPU, .refcount = 1};
  sr_tensor one = {.refcount = 1, .storage = &one_s, .ndim = 0, .dtype = SR_F64};
  sr_tensor dl = b->dscale ? *b->dscale : one, ls = elem_of(b->lse, n), tg = elem_of(b->targets, n);
  dl.ndim = 0;  /* one element, broadcast */
  sr_kcall c = {.t = {&row, &dl, &row, &tg, &ls}, .nt = 5, .i = {b->ignore}};
  const char *err = sr_cpu_cross_entropy_backward(&c);
  if (err) return err;
  for (int64_t j0 = 0; j0 < V; j0 += FUSE_CHUNK) {
    int64_t m = V - j0 < FUSE_CHUNK ? V - j0 : FUSE_CHUNK;
    kept_chunk(g, keep, scratch, V, j0, m, v);
    for (int64_t k = 0; k < m; k++) v[d][k] = cpu_ld(row.storage->data, row.dtype, j0 + k);
    for (int f = 0; f < g->nfor; f++) cpu_gather(b->et[f], n * V + j0, m, v[d + 1 + f]);
    for (int k = 0; k < g->nepi; k++) run_op(&g->epi_op[k], v, v[d + 1 + g->nfor + k], m);
    cpu_scatter(b->et[g->nfor], n * V + j0, m, v[d + g->nfor + g->nepi]);
  }
  return NULL;
}

/* the rows of a loss kernel: row 0 first (its checks fail before any other row stores), then the
** rest in parallel, each thread with per doubles of scratch */
typedef struct rows_job {
  const sr_fuse_group *g;
  sr_tensor *const *t;
  const sr_kcall *ce;
  sr_tensor *lse64;
  const sr_fuse_back *b;      /* set: the backward's rows */
} rows_job;

static const char *one_row(const rows_job *j, int64_t n, int64_t V, double *scratch) {
  return j->b ? back_row(j->g, j->b, n, V, scratch) : xent_row(j->g, j->t, j->ce, j->lse64, n, V, scratch);
}

static const char *run_rows(const rows_job *j, int64_t N, int64_t V, int64_t per) {
  double *buf = cpu_thread_buffers(per);
  if (!buf) return CPU_OOM;
  const char *err = one_row(j, 0, V, cpu_thread_slice(buf, per));
  if (!err) {
#pragma omp parallel for schedule(dynamic, 4) if (N * V > CPU_PAR_MIN)
    for (int64_t n = 1; n < N; n++) one_row(j, n, V, cpu_thread_slice(buf, per));
  }
  free(buf);
  return err;
}

const char *sr_fuse_run_xent_cpu(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce, sr_tensor *lse64) {
  const sr_tensor *lg = ce->t[2], *tg = ce->t[3];
  /* lazy storages: what the rows touch; the logits' own storage only when the gradient goes there */
  for (int k = 0; k < g->nio; k++) sr_tensor_materialize(t[k]);
  for (int j = 0; j < ce->nt; j++)
    if (j != 2 && j != 4 && !(j == 1 && lse64)) sr_tensor_materialize(ce->t[j]);
  if (!g->defer) sr_tensor_materialize(ce->t[4]);
  int64_t V = lg->shape[lg->ndim - 1], N = V ? sr_numel(lg) / V : 0;
  if (N == 0) return NULL;
  if (tg->dtype != SR_I32 || !sr_is_contiguous(tg) || !sr_is_contiguous(ce->t[4]))
    return "a fused cross-entropy needs int32 targets and contiguous logits";
  const char *err = cpu_check_indices("target", (const int32_t *)sr_data(tg), N, V, 1, ce->i[0]);
  if (err) return err;
  int keep[FUSE_MAXVAL];
  rows_job j = {g, t, ce, lse64, NULL};
  return run_rows(&j, N, V, (int64_t)(kept_values(g, 0, keep) + 1) * V);
}

const char *sr_fuse_run_xent_back_cpu(const sr_fuse_group *g, const sr_fuse_back *b) {
  for (int k = 0; k < g->nload; k++) sr_tensor_materialize(b->gl[k]);
  for (int k = 0; k <= g->nfor; k++) sr_tensor_materialize(b->et[k]);
  sr_tensor_materialize(b->lse), sr_tensor_materialize(b->targets), sr_tensor_materialize(b->dscale);
  int64_t N = sr_numel(b->targets), V = N ? sr_numel(b->et[g->nfor]) / N : 0;
  if (N == 0 || V == 0) return NULL;
  int keep[FUSE_MAXVAL];
  rows_job j = {g, NULL, NULL, NULL, b};
  return run_rows(&j, N, V, (int64_t)(kept_values(g, 1, keep) + 1) * V);
}
