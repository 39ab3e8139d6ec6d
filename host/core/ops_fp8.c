/*
** core/ops_fp8.c: the float8 front-end ops, shaped like what PyTorch gives the records' scripts:
**   sr_to_fp8(x, dt, scale, sat)  x.mul(scale).to(float8): y = fp8(x * scale), rounded to nearest
**                                 even; sat saturates at +-448 (e4m3) / +-57344 (e5m2), else
**                                 torch's NaN / +-inf beyond. Out contiguous, x's shape: of a
**                                 transposed view x:t() it is torch's x.t().contiguous().
**   sr_scaled_mm(a, b, ...)       torch._scaled_mm: out [M,N] = scale_a * scale_b * a @ b, a [M,K]
**                                 row-major float8, b [K,N] column-major float8 (b = W:t() of a
**                                 row-major W [N,K]), per-tensor scales (numbers, or one-element
**                                 float32 tensors on a's device: the dequantisation factors
**                                 1/scale of the casts), out bfloat16 or float32, fp32 accumulation.
** Neither records a tape node: a recipe writes the FP8 linear's forward and backward with them in
** a custom function (speedrun.autograd.Function), as the scripts do with torch.library.
** The layout rules are cuBLASLt's and torch's (K and N multiples of 16, row strides multiples of
** 16, starts on 16-byte boundaries) and are checked on every device, so a CPU run fails as the GPU
** run would.
*/
#include <stdint.h>             /* defines: int64_t */

#include "core/ops.h"           /* defines: sr_to_fp8, sr_scaled_mm */
#include "core/ops_common.h"    /* defines: SHP, check_same_device */
#include "core/registry.h"      /* defines: sr_kernel_run, SR_K_to_fp8, SR_K_scaled_mm */

static bool is_fp8(sr_dtype t) { return t == SR_F8E4M3 || t == SR_F8E5M2; }

sr_tensor *sr_to_fp8(sr_tensor *x, sr_dtype dt, double scale, bool sat) {
  if (!is_fp8(dt))
    sr_fail("to_fp8: bad argument #2 (expected \"float8_e4m3fn\" or \"float8_e5m2\", got %s)", sr_dtype_name(dt));
  if (x->dtype != SR_F32 && x->dtype != SR_BF16)
    sr_fail("to_fp8: bad argument #1 (expected a float32 or bfloat16 tensor, got %s)", sr_dtype_name(x->dtype));
  if (!(scale * 0 == 0)) sr_fail("to_fp8: bad argument #3 (scale must be a finite number, got %g)", scale);
  int m = sr_scratch_mark();
  sr_tensor *y = sr_scratch_push(sr_tensor_new(dt, x->storage->device, x->ndim, x->shape));
  sr_kcall c = {.t = {y, x}, .nt = 2, .f = {scale}, .i = {sat ? 1 : 0}};
  sr_kernel_run(SR_K_to_fp8, &c);
  return sr_scratch_return(m, y);
}

/* a scale: a one-element float32 tensor on dev, else NULL (the number is used) */
static void check_scale(const char *name, int arg, const sr_tensor *s, sr_device dev) {
  if (!s) return;
  if (s->dtype != SR_F32 || sr_numel(s) != 1)
    sr_fail("scaled_mm: bad argument #%d (%s must be a number or a one-element float32 tensor, got a %s tensor of %lld "
            "elements)", arg, name, sr_dtype_name(s->dtype), (long long)sr_numel(s));
  if (s->storage->device != dev)
    sr_fail("scaled_mm: bad argument #%d (%s is on %s, a on %s)", arg, name, sr_device_name(s->storage->device),
            sr_device_name(dev));
}

static void check_operand(const char *name, int arg, const sr_tensor *x, int unit_dim) {
  char b[96];
  if (!is_fp8(x->dtype) || x->ndim != 2)
    sr_fail("scaled_mm: bad argument #%d (%s must be a 2-D float8_e4m3 or float8_e5m2 tensor, got %s %s)", arg, name,
            sr_dtype_name(x->dtype), SHP(x, b));
  int64_t K = x->shape[unit_dim], ld = x->stride[1 - unit_dim], other = x->shape[1 - unit_dim];
  if (K > 1 && x->stride[unit_dim] != 1)
    sr_fail("scaled_mm: bad argument #%d (%s must be %s: unit stride along K; %s)", arg, name,
            unit_dim ? "row-major [M,K]" : "column-major [K,N] (W:t() of a row-major W [N,K])",
            unit_dim ? "make it contiguous" : "pass W:t() of a contiguous W, or F.to_fp8(x:t(), ...):t()");
  if (other > 1 && ld % 16)
    sr_fail("scaled_mm: bad argument #%d (%s's %s stride %lld is not a multiple of 16)", arg, name,
            unit_dim ? "row" : "column", (long long)ld);
  if (x->offset % 16)
    sr_fail("scaled_mm: bad argument #%d (%s starts at element %lld of its storage, not on a 16-byte boundary)", arg,
            name, (long long)x->offset);
}

sr_tensor *sr_scaled_mm(sr_tensor *a, sr_tensor *b, double scale_a, double scale_b, sr_tensor *sa, sr_tensor *sb,
                        sr_dtype out_dtype, bool fast_accum) {
  char b1[96], b2[96];
  check_operand("a", 1, a, 1);
  check_operand("b", 2, b, 0);
  check_same_device("scaled_mm", a, b);
  if (a->shape[1] != b->shape[0])
    sr_fail("scaled_mm: bad argument #2 (shapes %s and %s cannot be multiplied)", SHP(a, b1), SHP(b, b2));
  if (a->dtype == SR_F8E5M2 && b->dtype == SR_F8E5M2)
    sr_fail("scaled_mm: bad argument #2 (e5m2 x e5m2 is not supported by cuBLASLt: one of a and b must be float8_e4m3)");
  int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
  if (K % 16 || N % 16)
    sr_fail("scaled_mm: bad argument #2 (K = %lld and N = %lld must be multiples of 16, as cuBLASLt's FP8 GEMM needs)",
            (long long)K, (long long)N);
  check_scale("scale_a", 3, sa, a->storage->device);
  check_scale("scale_b", 3, sb, a->storage->device);
  if ((sa == NULL) != (sb == NULL))
    sr_fail("scaled_mm: bad argument #3 (scale_a and scale_b must both be numbers or both be tensors)");
  if (!sa && (!(scale_a * 0 == 0) || !(scale_b * 0 == 0)))
    sr_fail("scaled_mm: bad argument #3 (scale_a and scale_b must be finite, got %g and %g)", scale_a, scale_b);
  if (out_dtype != SR_BF16 && out_dtype != SR_F32)
    sr_fail("scaled_mm: bad argument #3 (out_dtype must be \"bfloat16\" or \"float32\", got %s)", sr_dtype_name(out_dtype));
  int m = sr_scratch_mark();
  sr_tensor *y = sr_scratch_push(sr_tensor_new(out_dtype, a->storage->device, 2, (int64_t[]){M, N}));
  sr_kcall c = {.t = {y, a, b, sa, sb}, .nt = 5, .f = {scale_a, scale_b}, .i = {fast_accum ? 1 : 0}};
  sr_kernel_run(SR_K_scaled_mm, &c);
  return sr_scratch_return(m, y);
}
