/*
** cpu/elementwise.c: CPU reference of the element-wise kernels: fill, copy, arange, unary (and its
** backward), binary, where. Every kernel walks its output in row-major flat order in chunks of
** CPU_CHUNK elements: inputs are gathered into double buffers (any dtype, any strides, stride 0
** for broadcast), computed in double, and scattered to the output. Chunks are independent, so
** the OpenMP split cannot change a result. A chunk is read whole before it is written, so out may
** alias an input with the same layout (in-place ops); a partial overlap is not supported.
** NaN propagates through every function (relu, max, sign included); int32 outputs refuse NaN and
** out-of-range values instead of inventing a number. binary also takes int32 (all three tensors
** one dtype): computed exactly in double, wrapped to 32 bits as C's int32 arithmetic would,
** division truncating toward zero and failing on a zero divisor.
*/
#include <math.h>        /* defines: exp, log, tanh, erf, sqrt, pow, fmod, isfinite */
#include <stdint.h>      /* defines: INT64_MAX */

#include "cpu/common.h"  /* defines: cpu_gather, cpu_scatter, cpu_check_dtype */

/* first element (flat index) of a chunked int32 store that is NaN or outside int32 */
static int64_t first_bad_i32(const double *v, int64_t n, int64_t i0) {
  for (int64_t k = 0; k < n; k++)
    if (!(v[k] >= -2147483648.0 && v[k] < 2147483648.0)) return i0 + k;
  return INT64_MAX;
}

static const char *bad_i32_msg(double v, int64_t at) {
  char *m = cpu_msgbuf();
  snprintf(m, 256, "value %g at position %lld cannot be stored as int32", v, (long long)at);
  return m;
}

/* ---------------------------------------------------------------------------------------------
** fill: out[...] = value; any dtype incl. i32 */
const char *sr_cpu_fill(const sr_kcall *c) {
  sr_tensor *out = c->t[0];
  const char *e = cpu_check_dtype(out, 1, true);
  if (e) return e;
  double v = c->f[0];
  if (out->dtype == SR_I32 && first_bad_i32(&v, 1, 0) == 0) return bad_i32_msg(v, 0);
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double buf[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    for (int64_t k = 0; k < m; k++) buf[k] = v;
    cpu_scatter(out, i0, m, buf);
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** copy: out = x, same shape, any dtypes (float -> i32 truncates toward zero, refuses NaN) */
const char *sr_cpu_copy(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  /* float8: copies within one float8 dtype (contiguous(), views; exact through double) and reads
  ** into the other dtypes; a cast into float8 is F.to_fp8 (its rounding and saturation stated) */
  bool f8x = x->dtype == SR_F8E4M3 || x->dtype == SR_F8E5M2, f8o = out->dtype == SR_F8E4M3 || out->dtype == SR_F8E5M2;
  if (f8o && out->dtype != x->dtype) {
    char *m = cpu_msgbuf();
    snprintf(m, 256, "argument 1: a copy into %s takes a %s source (got %s; cast with F.to_fp8)",
             sr_dtype_name(out->dtype), sr_dtype_name(out->dtype), sr_dtype_name(x->dtype));
    return m;
  }
  const char *e = f8o ? NULL : cpu_check_dtype(out, 1, true);
  if (!e && !f8x) e = cpu_check_dtype(x, 2, true);
  if (e) return e;
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK, bad = INT64_MAX;
  double badv = 0;
  int check = out->dtype == SR_I32 && x->dtype != SR_I32;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double buf[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(x, i0, m, buf);
    if (check) {
      int64_t b = first_bad_i32(buf, m, i0);
      if (b != INT64_MAX) {
#pragma omp critical(sr_cpu_copy_bad)
        if (b < bad) { bad = b; badv = buf[b - i0]; }
        continue;
      }
      for (int64_t k = 0; k < m; k++) buf[k] = trunc(buf[k]);
    }
    cpu_scatter(out, i0, m, buf);
  }
  return bad == INT64_MAX ? NULL : bad_i32_msg(badv, bad);
}

/* ---------------------------------------------------------------------------------------------
** arange: out[i] = start + i*step; out 1-D contiguous, any dtype incl. i32 */
const char *sr_cpu_arange(const sr_kcall *c) {
  sr_tensor *out = c->t[0];
  const char *e = cpu_check_dtype(out, 1, true);
  if (e) return e;
  double start = c->f[0], step = c->f[1];
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
  if (out->dtype == SR_I32 && n > 0) {
    double ends[2] = {start, start + (double)(n - 1) * step};
    int64_t b = first_bad_i32(ends, 2, 0);
    if (b != INT64_MAX) return bad_i32_msg(ends[b], b == 0 ? 0 : n - 1);
  }
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double buf[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    for (int64_t k = 0; k < m; k++) buf[k] = start + (double)(i0 + k) * step;
    cpu_scatter(out, i0, m, buf);
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** unary: y = f(x; p) for every sr_unary_fn, and its backward dx = dy * f'(x; p) */

#define GELU_K 0.7978845608028654   /* sqrt(2/pi) */
#define INV_SQRT2 0.7071067811865476
#define INV_SQRT2PI 0.3989422804014327

static double sign_of(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : x); }  /* 0 and NaN kept */

/* y[k] = f(x[k]); NaN in, NaN out for every fn */
void sr_cpu_unary_fwd(double *y, const double *x, int64_t n, int fn, double p) {
  switch (fn) {
    case SR_UNARY_NEG: for (int64_t k = 0; k < n; k++) y[k] = -x[k]; break;
    case SR_UNARY_EXP: for (int64_t k = 0; k < n; k++) y[k] = exp(x[k]); break;
    case SR_UNARY_LOG: for (int64_t k = 0; k < n; k++) y[k] = log(x[k]); break;
    case SR_UNARY_TANH: for (int64_t k = 0; k < n; k++) y[k] = tanh(x[k]); break;
    case SR_UNARY_SIGMOID: for (int64_t k = 0; k < n; k++) y[k] = 1.0 / (1.0 + exp(-x[k])); break;
    case SR_UNARY_RELU: for (int64_t k = 0; k < n; k++) y[k] = x[k] < 0 ? 0.0 : x[k]; break;
    case SR_UNARY_SQUARE: for (int64_t k = 0; k < n; k++) y[k] = x[k] * x[k]; break;
    case SR_UNARY_SQRT: for (int64_t k = 0; k < n; k++) y[k] = sqrt(x[k]); break;
    case SR_UNARY_RSQRT: for (int64_t k = 0; k < n; k++) y[k] = 1.0 / sqrt(x[k]); break;
    case SR_UNARY_ABS: for (int64_t k = 0; k < n; k++) y[k] = fabs(x[k]); break;
    case SR_UNARY_GELU_ERF:
      for (int64_t k = 0; k < n; k++) y[k] = 0.5 * x[k] * (1.0 + erf(x[k] * INV_SQRT2));
      break;
    case SR_UNARY_GELU_TANH:
      for (int64_t k = 0; k < n; k++) {
        double v = x[k];
        y[k] = 0.5 * v * (1.0 + tanh(GELU_K * (v + 0.044715 * v * v * v)));
      }
      break;
    case SR_UNARY_RELU2:
      for (int64_t k = 0; k < n; k++) { double r = x[k] < 0 ? 0.0 : x[k]; y[k] = r * r; }
      break;
    case SR_UNARY_ADD_SCALAR: for (int64_t k = 0; k < n; k++) y[k] = x[k] + p; break;
    case SR_UNARY_MUL_SCALAR: for (int64_t k = 0; k < n; k++) y[k] = x[k] * p; break;
    case SR_UNARY_POW_SCALAR: for (int64_t k = 0; k < n; k++) y[k] = pow(x[k], p); break;
    case SR_UNARY_RSUB_SCALAR: for (int64_t k = 0; k < n; k++) y[k] = p - x[k]; break;
    case SR_UNARY_RDIV_SCALAR: for (int64_t k = 0; k < n; k++) y[k] = p / x[k]; break;
    case SR_UNARY_SIGN: for (int64_t k = 0; k < n; k++) y[k] = sign_of(x[k]); break;
    case SR_UNARY_COS: for (int64_t k = 0; k < n; k++) y[k] = cos(x[k]); break;
    case SR_UNARY_SIN: for (int64_t k = 0; k < n; k++) y[k] = sin(x[k]); break;
  }
}

/* dx[k] = dy[k] * f'(x[k]); subgradient 0 at the kinks (relu, abs, sign); where f' depends on x,
** a NaN x gives a NaN gradient (relu's mask would otherwise turn it into 0) */
void sr_cpu_unary_bwd(double *dx, const double *dy, const double *x, int64_t n, int fn, double p) {
  switch (fn) {
    case SR_UNARY_NEG: for (int64_t k = 0; k < n; k++) dx[k] = -dy[k]; break;
    case SR_UNARY_EXP: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * exp(x[k]); break;
    case SR_UNARY_LOG: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] / x[k]; break;
    case SR_UNARY_TANH:
      for (int64_t k = 0; k < n; k++) { double t = tanh(x[k]); dx[k] = dy[k] * (1.0 - t * t); }
      break;
    case SR_UNARY_SIGMOID:
      for (int64_t k = 0; k < n; k++) { double s = 1.0 / (1.0 + exp(-x[k])); dx[k] = dy[k] * s * (1.0 - s); }
      break;
    case SR_UNARY_RELU: for (int64_t k = 0; k < n; k++) dx[k] = x[k] > 0 ? dy[k] : x[k] <= 0 ? 0.0 : x[k]; break;
    case SR_UNARY_SQUARE: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * 2.0 * x[k]; break;
    case SR_UNARY_SQRT: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * 0.5 / sqrt(x[k]); break;
    case SR_UNARY_RSQRT:
      for (int64_t k = 0; k < n; k++) { double r = 1.0 / sqrt(x[k]); dx[k] = dy[k] * -0.5 * r * r * r; }
      break;
    case SR_UNARY_ABS: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * sign_of(x[k]); break;
    case SR_UNARY_GELU_ERF:
      for (int64_t k = 0; k < n; k++) {
        double v = x[k];
        dx[k] = dy[k] * (0.5 * (1.0 + erf(v * INV_SQRT2)) + v * INV_SQRT2PI * exp(-0.5 * v * v));
      }
      break;
    case SR_UNARY_GELU_TANH:
      for (int64_t k = 0; k < n; k++) {
        double v = x[k], t = tanh(GELU_K * (v + 0.044715 * v * v * v));
        dx[k] = dy[k] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * 0.044715 * v * v));
      }
      break;
    case SR_UNARY_RELU2:
      for (int64_t k = 0; k < n; k++) dx[k] = x[k] > 0 ? dy[k] * 2.0 * x[k] : x[k] <= 0 ? 0.0 : x[k];
      break;
    case SR_UNARY_ADD_SCALAR: for (int64_t k = 0; k < n; k++) dx[k] = dy[k]; break;
    case SR_UNARY_MUL_SCALAR: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * p; break;
    case SR_UNARY_POW_SCALAR:  /* as PyTorch: exponent 0 gives a zero gradient everywhere */
      for (int64_t k = 0; k < n; k++) dx[k] = p == 0.0 ? 0.0 : dy[k] * p * pow(x[k], p - 1.0);
      break;
    case SR_UNARY_RSUB_SCALAR: for (int64_t k = 0; k < n; k++) dx[k] = -dy[k]; break;
    case SR_UNARY_RDIV_SCALAR: for (int64_t k = 0; k < n; k++) dx[k] = -dy[k] * p / (x[k] * x[k]); break;
    case SR_UNARY_SIGN: for (int64_t k = 0; k < n; k++) dx[k] = 0.0 * dy[k]; break;
    case SR_UNARY_COS: for (int64_t k = 0; k < n; k++) dx[k] = -dy[k] * sin(x[k]); break;
    case SR_UNARY_SIN: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * cos(x[k]); break;
  }
}

/* the same from the forward's output y (sr_unary_output_grad: tanh, sigmoid, exp) */
void sr_cpu_unary_bwd_y(double *dx, const double *dy, const double *y, int64_t n, int fn) {
  switch (fn) {
    case SR_UNARY_TANH: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * (1.0 - y[k] * y[k]); break;
    case SR_UNARY_SIGMOID: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * y[k] * (1.0 - y[k]); break;
    default: for (int64_t k = 0; k < n; k++) dx[k] = dy[k] * y[k]; break;  /* exp */
  }
}

static const char *check_unary_fn(int64_t fn) {
  if (fn >= 0 && fn < SR_UNARY_COUNT) return NULL;
  char *m = cpu_msgbuf();
  snprintf(m, 256, "unknown unary function %lld", (long long)fn);
  return m;
}

/* unary: out = f(x) */
const char *sr_cpu_unary(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  const char *e = check_unary_fn(c->i[0]);
  if (!e) e = cpu_check_floats(c, 0, 2);
  if (e) return e;
  int fn = (int)c->i[0];
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double xb[CPU_CHUNK], yb[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(x, i0, m, xb);
    sr_cpu_unary_fwd(yb, xb, m, fn, c->f[0]);
    cpu_scatter(out, i0, m, yb);
  }
  return NULL;
}

/* unary_backward: dx = dy * f'(x), or f' from y = f(x) when i1 = 1 */
const char *sr_cpu_unary_backward(const sr_kcall *c) {
  sr_tensor *dx = c->t[0], *dy = c->t[1], *x = c->t[2];
  const char *e = check_unary_fn(c->i[0]);
  if (!e && c->i[1] && !sr_unary_output_grad(c->i[0])) e = "i1 = 1 (gradient from the output) needs tanh, sigmoid or exp";
  if (!e) e = cpu_check_floats(c, 0, 3);
  if (e) return e;
  int fn = (int)c->i[0];
  bool from_y = c->i[1] != 0;
  int64_t n = sr_numel(dx), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double xb[CPU_CHUNK], dyb[CPU_CHUNK], dxb[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(x, i0, m, xb);
    cpu_gather(dy, i0, m, dyb);
    if (from_y) sr_cpu_unary_bwd_y(dxb, dyb, xb, m, fn);
    else sr_cpu_unary_bwd(dxb, dyb, xb, m, fn, c->f[0]);
    cpu_scatter(dx, i0, m, dxb);
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
** binary: out = a (op) b, a and b already expanded to out's shape; maximum/minimum propagate NaN;
** comparisons give 1 or 0 (every comparison with NaN is false, except ne) */
void sr_cpu_binary_fwd(double *y, const double *a, const double *b, int64_t n, int fn) {
  switch (fn) {
    case SR_BINARY_ADD: for (int64_t k = 0; k < n; k++) y[k] = a[k] + b[k]; break;
    case SR_BINARY_SUB: for (int64_t k = 0; k < n; k++) y[k] = a[k] - b[k]; break;
    case SR_BINARY_MUL: for (int64_t k = 0; k < n; k++) y[k] = a[k] * b[k]; break;
    case SR_BINARY_DIV: for (int64_t k = 0; k < n; k++) y[k] = a[k] / b[k]; break;
    case SR_BINARY_POW: for (int64_t k = 0; k < n; k++) y[k] = pow(a[k], b[k]); break;
    case SR_BINARY_MAX: for (int64_t k = 0; k < n; k++) y[k] = cpu_max(a[k], b[k]); break;
    case SR_BINARY_MIN:
      for (int64_t k = 0; k < n; k++) y[k] = (b[k] < a[k] || b[k] != b[k]) ? b[k] : a[k];
      break;
    case SR_BINARY_EQ: for (int64_t k = 0; k < n; k++) y[k] = a[k] == b[k]; break;
    case SR_BINARY_NE: for (int64_t k = 0; k < n; k++) y[k] = a[k] != b[k]; break;
    case SR_BINARY_LT: for (int64_t k = 0; k < n; k++) y[k] = a[k] < b[k]; break;
    case SR_BINARY_LE: for (int64_t k = 0; k < n; k++) y[k] = a[k] <= b[k]; break;
    case SR_BINARY_GT: for (int64_t k = 0; k < n; k++) y[k] = a[k] > b[k]; break;
    case SR_BINARY_GE: for (int64_t k = 0; k < n; k++) y[k] = a[k] >= b[k]; break;
  }
}

/* int32 results: truncate (division, fractional powers) and wrap to 32 bits; the flat index of
** the first non-finite result (a zero divisor), or INT64_MAX */
static int64_t binary_to_i32(double *y, int64_t n, int64_t i0) {
  for (int64_t k = 0; k < n; k++) {
    if (!isfinite(y[k])) return i0 + k;
    y[k] = (double)(int32_t)(uint32_t)(int64_t)fmod(trunc(y[k]), 4294967296.0);
  }
  return INT64_MAX;
}

const char *sr_cpu_binary(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *a = c->t[1], *b = c->t[2];
  if (c->i[0] < 0 || c->i[0] >= SR_BINARY_COUNT) {
    char *m = cpu_msgbuf();
    snprintf(m, 256, "unknown binary function %lld", (long long)c->i[0]);
    return m;
  }
  const char *e = NULL;
  for (int j = 0; j < 3 && !e; j++) e = cpu_check_dtype(c->t[j], j + 1, true);
  if (e) return e;
  int fn = (int)c->i[0], to_int = out->dtype == SR_I32;
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK, bad = INT64_MAX;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double ab[CPU_CHUNK], bb[CPU_CHUNK], yb[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(a, i0, m, ab);
    cpu_gather(b, i0, m, bb);
    sr_cpu_binary_fwd(yb, ab, bb, m, fn);
    if (to_int) {
      int64_t bk = binary_to_i32(yb, m, i0);
      if (bk != INT64_MAX) {
#pragma omp critical(sr_cpu_binary_bad)
        if (bk < bad) bad = bk;
        continue;
      }
    }
    cpu_scatter(out, i0, m, yb);
  }
  if (bad == INT64_MAX) return NULL;
  char *msg = cpu_msgbuf();
  snprintf(msg, 256, "integer %s at position %lld", fn == SR_BINARY_POW ? "0 to a negative power" : "division by zero", (long long)bad);
  return msg;
}

/* ---------------------------------------------------------------------------------------------
** where: out = cond ? a : b; cond any dtype (nonzero or NaN = true); out, a, b float or i32 */
const char *sr_cpu_where(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *cond = c->t[1], *a = c->t[2], *b = c->t[3];
  const char *e = NULL;
  for (int j = 0; j < 4 && !e; j++) e = cpu_check_dtype(c->t[j], j + 1, true);
  if (e) return e;
  int64_t n = sr_numel(out), nch = (n + CPU_CHUNK - 1) / CPU_CHUNK, bad = INT64_MAX;
  double badv = 0;
#pragma omp parallel for schedule(static) if (n > CPU_PAR_MIN)
  for (int64_t ch = 0; ch < nch; ch++) {
    double cb[CPU_CHUNK], ab[CPU_CHUNK], bb[CPU_CHUNK];
    int64_t i0 = ch * CPU_CHUNK, m = n - i0 < CPU_CHUNK ? n - i0 : CPU_CHUNK;
    cpu_gather(cond, i0, m, cb);
    cpu_gather(a, i0, m, ab);
    cpu_gather(b, i0, m, bb);
    for (int64_t k = 0; k < m; k++) ab[k] = cb[k] != 0 ? ab[k] : bb[k];
    if (out->dtype == SR_I32) {
      int64_t bk = first_bad_i32(ab, m, i0);
      if (bk != INT64_MAX) {
#pragma omp critical(sr_cpu_where_bad)
        if (bk < bad) { bad = bk; badv = ab[bk - i0]; }
        continue;
      }
    }
    cpu_scatter(out, i0, m, ab);
  }
  return bad == INT64_MAX ? NULL : bad_i32_msg(badv, bad);
}
