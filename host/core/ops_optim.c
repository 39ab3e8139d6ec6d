/*
** core/ops_optim.c: the optimizer kernels as ops (see ops.h): the fused AdamW step, single and
** multi-tensor, and gradient clipping (no tape).
*/
#include <math.h>      /* defines: sqrt */
#include <string.h>    /* defines: memcpy */

#include "core/autograd.h"  /* defines: sr_node_new, sr_node_attach */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_fill_, sr_contiguous_raw */
#include "core/ops.h"
#include "core/ops_common.h"  /* defines: check_float, check_same_device */

/* ------------------------------------------------------------------------------------------ */
/* fused AdamW step (no tape) */

/* m and v: one dtype, float32 or bfloat16 (torch keeps a bf16 parameter's state in bf16); float64
** for the CPU reference's tests. k > 0 names the parameter of a list */
static void check_state(const char *op, int k, const sr_tensor *m, const sr_tensor *v) {
  bool ok = m->dtype == v->dtype && (m->dtype == SR_F32 || m->dtype == SR_BF16 || m->dtype == SR_F64);
  if (ok) return;
  if (k) sr_fail("%s: parameter %d: optimizer state m and v must be float32 or bfloat16, of one dtype (got %s, %s)", op, k,
                 sr_dtype_name(m->dtype), sr_dtype_name(v->dtype));
  sr_fail("%s: optimizer state m and v must be float32 or bfloat16, of one dtype (got %s, %s)", op,
          sr_dtype_name(m->dtype), sr_dtype_name(v->dtype));
}

void sr_adamw_(sr_tensor *param, sr_tensor *grad, sr_tensor *m, sr_tensor *v, double lr, double b1,
               double b2, double eps, double wd, int64_t step, sr_tensor *sched) {
  char b1s[96], b2s[96];
  sr_tensor *t[4] = {param, grad, m, v};
  for (int i = 0; i < 4; i++) {
    if (!sr_is_contiguous(t[i])) sr_fail("adamw: bad argument #%d (must be contiguous)", i + 1);
    if (sr_numel(t[i]) != sr_numel(param))
      sr_fail("adamw: bad argument #%d (shape %s does not match the parameter's %s)", i + 1, SHP(t[i], b1s), SHP(param, b2s));
  }
  check_state("adamw", 0, m, v);
  if (sched) {
    check_same_device("adamw", param, sched);
    if (sched->dtype != SR_F32 || sr_numel(sched) != 2 || !sr_is_contiguous(sched))
      sr_fail("adamw: sched must be a contiguous float32 tensor of 2 elements {lr, step}");
    step = 1;  /* read from sched by the kernel */
  }
  if (step < 1) sr_fail("adamw: bad argument (step must be >= 1, got %lld)", (long long)step);
  sr_kcall c = {.t = {param, grad, m, v, sched}, .nt = 5, .f = {lr, b1, b2, eps, wd}, .i = {step}};
  sr_kernel_run(SR_K_adamw, &c);
  param->storage->version++;
}

/* adamw over n parameters in one kernel call; list = (param, grad, m, v) per parameter, each
** checked as sr_adamw_ checks its arguments; every param of one dtype, every grad of one dtype */
void sr_adamw_multi_(int n, sr_tensor *const *list, double lr, double b1, double b2, double eps, double wd,
                     int64_t step, sr_tensor *sched) {
  char b1s[96], b2s[96];
  if (n < 1) return;
  const sr_tensor *p0 = list[0], *g0 = list[1], *s0 = list[2];
  for (int k = 0; k < n; k++) {
    sr_tensor *const *e = list + 4 * k;
    for (int i = 0; i < 4; i++) {
      if (!sr_is_contiguous(e[i])) sr_fail("adamw_multi: parameter %d: bad argument #%d (must be contiguous)", k + 1, i + 1);
      if (sr_numel(e[i]) != sr_numel(e[0]))
        sr_fail("adamw_multi: parameter %d: bad argument #%d (shape %s does not match the parameter's %s)", k + 1,
                i + 1, SHP(e[i], b1s), SHP(e[0], b2s));
    }
    check_state("adamw_multi", k + 1, e[2], e[3]);
    if (e[0]->dtype != p0->dtype || e[1]->dtype != g0->dtype || e[2]->dtype != s0->dtype)
      sr_fail("adamw_multi: parameter %d: dtypes %s/%s/%s differ from the first parameter's %s/%s/%s (param/grad/state)",
              k + 1, sr_dtype_name(e[0]->dtype), sr_dtype_name(e[1]->dtype), sr_dtype_name(e[2]->dtype),
              sr_dtype_name(p0->dtype), sr_dtype_name(g0->dtype), sr_dtype_name(s0->dtype));
  }
  if (sched) {
    check_same_device("adamw_multi", list[0], sched);
    if (sched->dtype != SR_F32 || sr_numel(sched) != 2 || !sr_is_contiguous(sched))
      sr_fail("adamw_multi: sched must be a contiguous float32 tensor of 2 elements {lr, step}");
    step = 1;  /* read from sched by the kernel */
  }
  if (step < 1) sr_fail("adamw_multi: bad argument (step must be >= 1, got %lld)", (long long)step);
  sr_kcall c = {.t = {sched}, .nt = 1, .f = {lr, b1, b2, eps, wd}, .i = {step}, .list = list, .nlist = 4 * n};
  sr_kernel_run(SR_K_adamw_multi, &c);
  for (int k = 0; k < n; k++) list[4 * k]->storage->version++;
}

/* the sum of squares of every element of n contiguous float tensors: a [1] tensor (f32, f64
** when every tensor is f64) on their device */
sr_tensor *sr_sumsq_multi(int n, sr_tensor *const *xs) {
  if (n < 1) sr_fail("sumsq_multi: expected at least one tensor");
  bool all64 = true;
  for (int k = 0; k < n; k++) {
    check_float("sumsq_multi", k + 1, xs[k]);
    if (!sr_is_contiguous(xs[k])) sr_fail("sumsq_multi: bad argument #%d (must be contiguous)", k + 1);
    all64 = all64 && xs[k]->dtype == SR_F64;
  }
  sr_tensor *out = sr_tensor_new(all64 ? SR_F64 : SR_F32, xs[0]->storage->device, 1, (int64_t[]){1});
  sr_kcall c = {.t = {out}, .nt = 1, .list = xs, .nlist = n};
  sr_kernel_run(SR_K_sumsq_multi, &c);
  return out;
}

/* scales n contiguous float tensors in place by min(1, max_norm / (sqrt(sumsq) + eps)) */
void sr_clip_multi_(int n, sr_tensor *const *xs, sr_tensor *sumsq, double max_norm, double eps) {
  if (n < 1) return;
  check_float("clip_multi", 1, sumsq);
  if (sr_numel(sumsq) != 1) sr_fail("clip_multi: the sum of squares must have one element");
  for (int k = 0; k < n; k++) {
    check_float("clip_multi", k + 2, xs[k]);
    if (!sr_is_contiguous(xs[k])) sr_fail("clip_multi: bad argument #%d (must be contiguous)", k + 2);
  }
  sr_kcall c = {.t = {sumsq}, .nt = 1, .f = {max_norm, eps}, .list = xs, .nlist = n};
  sr_kernel_run(SR_K_clip_multi, &c);
  for (int k = 0; k < n; k++) xs[k]->storage->version++;
}
