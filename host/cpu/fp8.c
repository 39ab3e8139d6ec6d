/*
** cpu/fp8.c: CPU references of the float8 kernels (host/core/registry.h: to_fp8, scaled_mm).
**   to_fp8:    out = fp8(fp32(x) * fp32(scale)), the bit-exact rounding of host/core/fp8.h, which
**              the CUDA kernel (kernels/fp8.cu) shares, so the two agree bit for bit.
**   scaled_mm: out [M,N] = scale_a * scale_b * a [M,K] @ b [K,N], every float8 product exact in
**              double and summed in double (one rounding into out), as torch._scaled_mm with
**              out_dtype bf16/f32. The layout rules (a row-major, b column-major, K and N
**              multiples of 16) are the front-end's (host/core/ops_fp8.c); this loop takes any.
*/
#include <stdint.h>      /* defines: uint8_t, int64_t */

#include "core/fp8.h"    /* defines: sr_f32_to_fp8, sr_fp8_to_f32 */
#include "cpu/common.h"  /* defines: cpu_gather, cpu_msgbuf, cpu_check_dtype, CPU_CHUNK */

static int is_fp8(sr_dtype t) { return t == SR_F8E4M3 || t == SR_F8E5M2; }

const char *sr_cpu_to_fp8(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  if (!is_fp8(out->dtype) || !sr_is_contiguous(out)) {
    char *m = cpu_msgbuf();
    snprintf(m, 256, "argument 1: expected a contiguous float8_e4m3 or float8_e5m2 out, got %s", sr_dtype_name(out->dtype));
    return m;
  }
  if (x->dtype != SR_F32 && x->dtype != SR_BF16) {
    char *m = cpu_msgbuf();
    snprintf(m, 256, "argument 2: dtype %s (expected float32 or bfloat16)", sr_dtype_name(x->dtype));
    return m;
  }
  int e5 = out->dtype == SR_F8E5M2, sat = c->i[0] != 0;
  float scale = (float)c->f[0];
  uint8_t *o = (uint8_t *)sr_data(out);
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double buf[CPU_CHUNK];  /* f32 and bf16 values are exact in double and back in float */
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(x, i0, m, buf);
    for (int64_t k = 0; k < m; k++) {
      o[i0 + k] = sr_f32_to_fp8(sr_fp8_scale((float)buf[k], scale), e5, sat);  /* as the GPU's */
    }
  }
  return NULL;
}

/* a one-element f32 scale tensor, or the number */
static double scale_of(const sr_tensor *s, double dflt) {
  return s ? sr_load(s->storage->data, s->dtype, s->offset) : dflt;
}

const char *sr_cpu_scaled_mm(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *a = c->t[1], *b = c->t[2];
  if ((out->dtype != SR_BF16 && out->dtype != SR_F32) || !sr_is_contiguous(out) || out->ndim != 2) {
    char *m = cpu_msgbuf();
    snprintf(m, 256, "argument 1: expected a contiguous 2-D bfloat16 or float32 out, got %s", sr_dtype_name(out->dtype));
    return m;
  }
  for (int j = 1; j <= 2; j++)
    if (!is_fp8(c->t[j]->dtype) || c->t[j]->ndim != 2) {
      char *m = cpu_msgbuf();
      snprintf(m, 256, "argument %d: expected a 2-D float8 tensor, got %s", j + 1, sr_dtype_name(c->t[j]->dtype));
      return m;
    }
  int64_t M = out->shape[0], N = out->shape[1], K = a->shape[1];
  double s = scale_of(c->t[3], c->f[0]) * scale_of(c->t[4], c->f[1]);
  /* decode tables: 256 exact values per format */
  double ta[256], tb[256];
  for (int v = 0; v < 256; v++) {
    ta[v] = sr_fp8_to_f32((uint8_t)v, a->dtype == SR_F8E5M2);
    tb[v] = sr_fp8_to_f32((uint8_t)v, b->dtype == SR_F8E5M2);
  }
  const uint8_t *pa = (const uint8_t *)a->storage->data, *pb = (const uint8_t *)b->storage->data;
  int64_t as0 = a->stride[0], as1 = a->stride[1], bs0 = b->stride[0], bs1 = b->stride[1];
#pragma omp parallel for schedule(static) if (M * N * K > CPU_PAR_MIN)
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      const uint8_t *ra = pa + a->offset + i * as0, *cb = pb + b->offset + j * bs1;
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += ta[ra[k * as1]] * tb[cb[k * bs0]];
      cpu_st(out->storage->data, out->dtype, out->offset + i * N + j, s * acc);
    }
  return NULL;
}
