/*
** cpu/fuse.c: the step compiler's CPU interpreter (core/fuse.h): runs a fused element-wise group
** over its iteration space in chunks, as host/cpu/elementwise.c runs one op: loads gathered into
** doubles, each op computed by elementwise.c's own functions and rounded to its output's dtype (as
** the unfused op's store would), live outputs scattered. So a fused step gives the unfused step's
** bits. Every tensor of a group is viewable in the group's shape, so flat index i of a tensor is
** flat index i of the group; cpu_gather/cpu_scatter walk each in its own strides.
*/
#include "core/fuse.h"   /* defines: sr_fuse_group, SR_FUSE_MAXOPS */
#include "cpu/common.h"  /* defines: cpu_gather, cpu_scatter, cpu_ld, cpu_st, sr_cpu_unary_fwd */

#define FUSE_CHUNK 256
#define FUSE_MAXVAL (SR_FUSE_MAXIO + SR_FUSE_MAXOPS)

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
