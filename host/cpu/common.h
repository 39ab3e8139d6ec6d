/*
** cpu/common.h: helpers shared by the CPU reference kernels (host/cpu/, one file per op family
** named as its CUDA family in kernels/), private to them.
** - dtype guards that return the kernel's error message;
** - typed element access (f32, f64, bf16, i32) as double;
** - chunked transfer of a strided view's elements (row-major flat order) to and from a double
**   buffer, the general path of every kernel: gather, compute in double, scatter;
** - vectorisable exp (double, and float for f32/bf16 data) and row max / exp-sum for the hot
**   softmax / cross-entropy / attention loops.
** Precision policy: every kernel but gemm computes in double whatever the storage dtype, so f64
** is exact for gradcheck and f32/bf16 lose nothing (only the exponentials of f32/bf16 rows in
** softmax, cross-entropy and attention forward are taken in float, ~1 ulp); sums run in a fixed
** order per output element, so results do not depend on the OpenMP thread count.
*/
#ifndef SR_CPU_COMMON_H
#define SR_CPU_COMMON_H

#include <math.h>      /* defines: NAN */
#include <omp.h>       /* defines: omp_get_max_threads, omp_get_thread_num */
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: malloc */
#include <string.h>    /* defines: memcpy */
#include <stdint.h>    /* defines: int32_t, int64_t */

#include "core/fp8.h"       /* defines: sr_fp8_to_f32, sr_f64_to_fp8 */
#include "core/registry.h"  /* defines: sr_kcall, sr_tensor */

#define CPU_CHUNK 1024             /* elements per gather/compute/scatter step */
/* Below CPU_PAR_MIN elements a kernel runs on one thread (no OpenMP team, no barrier): about a
** millisecond of element-wise work. Set for a shared 2-core machine, where every parallel region
** risks waiting a scheduler slice for a descheduled team member: at the llm.c benchmark's shape
** (bench/RESULTS-cpu.md) 2^20 instead of 2^15 took 2-thread steps from ~900 to ~600 ms with the
** cores oversubscribed and cost ~3% on idle cores. */
#define CPU_PAR_MIN (1 << 20)

/* thread-local scratch for error messages (the registry's contract: static or thread-local) */
static inline char *cpu_msgbuf(void) {
  static _Thread_local char buf[256];
  return buf;
}

/* the first entry of ix[0..n) outside [0, V) that is not ignore (has_ignore), as a message */
static inline const char *cpu_check_indices(const char *what, const int32_t *ix, int64_t n, int64_t V, int has_ignore,
                                            int64_t ignore) {
  for (int64_t p = 0; p < n; p++)
    if ((ix[p] < 0 || ix[p] >= V) && !(has_ignore && ix[p] == ignore)) {
      char *m = cpu_msgbuf();
      snprintf(m, 256, "%s %d out of range [0, %lld) at position %lld", what, (int)ix[p], (long long)V, (long long)p);
      return m;
    }
  return NULL;
}

/* NULL when tensor t (argument number arg, 1-based in t[]) has a dtype the kernel accepts */
static inline const char *cpu_check_dtype(const sr_tensor *t, int arg, bool allow_int) {
  if (t->dtype == SR_F32 || t->dtype == SR_F64 || t->dtype == SR_BF16) return NULL;
  if (allow_int && t->dtype == SR_I32) return NULL;
  char *m = cpu_msgbuf();
  snprintf(m, 256, "argument %d: dtype %s is not supported by the CPU kernel (expected %s)", arg,
           sr_dtype_name(t->dtype), allow_int ? "float32, float64, bfloat16 or int32" : "float32, float64 or bfloat16");
  return m;
}

/* checks tensors t[first .. first+n-1] (NULL entries skipped) */
static inline const char *cpu_check_floats(const sr_kcall *c, int first, int n) {
  for (int j = first; j < first + n; j++)
    if (c->t[j]) {
      const char *e = cpu_check_dtype(c->t[j], j + 1, false);
      if (e) return e;
    }
  return NULL;
}

static inline const char *cpu_check_i32(const sr_tensor *t, int arg) {
  if (t->dtype == SR_I32) return NULL;
  char *m = cpu_msgbuf();
  snprintf(m, 256, "argument %d: indices must be int32, got %s", arg, sr_dtype_name(t->dtype));
  return m;
}

/* per-thread scratch: one malloc of per_thread doubles for each OpenMP thread; inside a parallel
** region a thread uses cpu_thread_slice(all, per_thread). NULL when out of memory. */
static inline double *cpu_thread_buffers(int64_t per_thread) {
  return (double *)malloc(sizeof(double) * (size_t)(per_thread > 0 ? per_thread : 1) * (size_t)omp_get_max_threads());
}
static inline double *cpu_thread_slice(double *all, int64_t per_thread) {
  return all + per_thread * omp_get_thread_num();
}
#define CPU_OOM "out of memory for CPU kernel scratch"

/* ---------------------------------------------------------------------------------------------
** typed element access; base is the storage's data, i an element offset */
static inline double cpu_ld(const void *base, sr_dtype t, int64_t i) {
  switch (t) {
    case SR_F32: return ((const float *)base)[i];
    case SR_F64: return ((const double *)base)[i];
    case SR_BF16: return sr_bf16_to_f32(((const uint16_t *)base)[i]);
    case SR_I32: return ((const int32_t *)base)[i];
    default: return NAN;
  }
}

/* i32 stores truncate; callers that may store NaN or out-of-range values into i32 check first */
static inline void cpu_st(void *base, sr_dtype t, int64_t i, double v) {
  switch (t) {
    case SR_F32: ((float *)base)[i] = (float)v; break;
    case SR_F64: ((double *)base)[i] = v; break;
    case SR_BF16: ((uint16_t *)base)[i] = sr_f32_to_bf16((float)v); break;
    case SR_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    default: break;
  }
}

/* n elements at base[off + k*stride] <-> buf[k]; store = 1 writes the tensor */
static inline void cpu_move(void *base, sr_dtype t, int64_t off, int64_t stride, int64_t n, double *buf, int store) {
  switch (t) {
    case SR_F32: {
      float *p = (float *)base + off;
      if (store) for (int64_t k = 0; k < n; k++) p[k * stride] = (float)buf[k];
      else for (int64_t k = 0; k < n; k++) buf[k] = p[k * stride];
      break;
    }
    case SR_F64: {
      double *p = (double *)base + off;
      if (store) for (int64_t k = 0; k < n; k++) p[k * stride] = buf[k];
      else for (int64_t k = 0; k < n; k++) buf[k] = p[k * stride];
      break;
    }
    case SR_BF16: {
      uint16_t *p = (uint16_t *)base + off;
      if (store) for (int64_t k = 0; k < n; k++) p[k * stride] = sr_f32_to_bf16((float)buf[k]);
      else for (int64_t k = 0; k < n; k++) buf[k] = sr_bf16_to_f32(p[k * stride]);
      break;
    }
    case SR_I32: {
      int32_t *p = (int32_t *)base + off;
      if (store) for (int64_t k = 0; k < n; k++) p[k * stride] = (int32_t)buf[k];
      else for (int64_t k = 0; k < n; k++) buf[k] = p[k * stride];
      break;
    }
    case SR_F8E4M3:
    case SR_F8E5M2: {  /* exact both ways for float8 values (the copy kernel's only float8 stores) */
      uint8_t *p = (uint8_t *)base + off;
      int e5 = t == SR_F8E5M2;
      if (store) for (int64_t k = 0; k < n; k++) p[k * stride] = sr_f64_to_fp8(buf[k], e5, 0);
      else for (int64_t k = 0; k < n; k++) buf[k] = sr_fp8_to_f32(p[k * stride], e5);
      break;
    }
    default: break;
  }
}

/* contiguous run: n elements starting at element offset off of tensor x's storage */
static inline void cpu_load(const sr_tensor *x, int64_t off, int64_t n, double *buf) {
  cpu_move(x->storage->data, x->dtype, off, 1, n, buf, 0);
}
static inline void cpu_store(sr_tensor *x, int64_t off, int64_t n, const double *buf) {
  cpu_move(x->storage->data, x->dtype, off, 1, n, (double *)buf, 1);
}

/* elements [i0, i0+n) of view x, in row-major flat order, to (store = 0) or from (store = 1)
** buf; any strides, including 0 (broadcast) */
static inline void cpu_xfer(const sr_tensor *x, int64_t i0, int64_t n, double *buf, int store) {
  void *base = x->storage->data;
  int nd = x->ndim;
  if (nd == 0 || sr_is_contiguous(x)) {
    cpu_move(base, x->dtype, x->offset + i0, 1, n, buf, store);
    return;
  }
  int64_t idx[SR_MAXDIM], off = x->offset, r = i0;
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = r % x->shape[d];
    r /= x->shape[d];
    off += idx[d] * x->stride[d];
  }
  int64_t len = x->shape[nd - 1], ls = x->stride[nd - 1];
  for (int64_t k = 0; k < n;) {
    int64_t run = len - idx[nd - 1];
    if (run > n - k) run = n - k;
    cpu_move(base, x->dtype, off, ls, run, buf + k, store);
    k += run;
    idx[nd - 1] += run;
    off += run * ls;
    for (int d = nd - 1; d > 0 && idx[d] == x->shape[d]; d--) {  /* carry into outer dims */
      off -= x->shape[d] * x->stride[d];
      idx[d] = 0;
      idx[d - 1]++;
      off += x->stride[d - 1];
    }
  }
}
static inline void cpu_gather(const sr_tensor *x, int64_t i0, int64_t n, double *buf) { cpu_xfer(x, i0, n, buf, 0); }
static inline void cpu_scatter(sr_tensor *x, int64_t i0, int64_t n, const double *buf) { cpu_xfer(x, i0, n, (double *)buf, 1); }

/* ---------------------------------------------------------------------------------------------
** exp(x) in double, branch-free so loops over it vectorise: x = k*ln2 + r, |r| <= ln2/2, a
** degree-13 Taylor polynomial for e^r (relative error ~2e-16), then 2^k applied in two halves so
** that overflow gives inf and underflow gives subnormals, then 0. NaN stays NaN. */
static inline double cpu_exp(double x) {
  const double log2e = 1.4426950408889634, ln2hi = 6.93147180369123816490e-01, ln2lo = 1.90821492927058770002e-10;
  const double magic = 6755399441055744.0;                      /* 1.5 * 2^52 */
  double xc = x > 710.0 ? 710.0 : (x < -746.0 ? -746.0 : x);    /* NaN passes through */
  double kf = xc * log2e + magic;                                /* round to nearest integer */
  int64_t kbits, magicbits;
  memcpy(&kbits, &kf, 8);
  memcpy(&magicbits, &magic, 8);
  int64_t k = kbits - magicbits;
  kf -= magic;
  double r = (xc - kf * ln2hi) - kf * ln2lo;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t k1 = k >> 1, k2 = k - k1;                              /* each in [-538, 513] */
  int64_t b1 = (k1 + 1023) << 52, b2 = (k2 + 1023) << 52;
  double s1, s2;
  memcpy(&s1, &b1, 8);
  memcpy(&s2, &b2, 8);
  double y = p * s1 * s2;
  return x != x ? x : y;
}

/* NaN-propagating max: once a NaN is seen it stays */
static inline double cpu_max(double m, double v) { return ((v > m) | (v != v)) ? v : m; }

/* exp(x) in float for the f32/bf16 paths of the softmax-like loops (16 lanes a vector):
** degree-7 Taylor polynomial on |r| <= ln2/2 (relative error ~1e-7, about 1 ulp), the same
** two-halves scaling as cpu_exp; NaN stays NaN, overflow gives inf, underflow 0. */
static inline float cpu_expf(float x) {
  const float log2e = 1.44269504f, ln2hi = 0.693145752f, ln2lo = 1.42860677e-06f, magic = 12582912.0f; /* 1.5*2^23 */
  float xc = x > 89.0f ? 89.0f : (x < -104.0f ? -104.0f : x);
  float kf = xc * log2e + magic;
  int32_t kbits, magicbits;
  memcpy(&kbits, &kf, 4);
  memcpy(&magicbits, &magic, 4);
  int32_t k = kbits - magicbits;
  kf -= magic;
  float r = (xc - kf * ln2hi) - kf * ln2lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t k1 = k >> 1, k2 = k - k1;                              /* each in [-75, 65] */
  int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  float y = p * s1 * s2;
  return x != x ? x : y;
}

/* cpu_expf on 8 lanes with GCC/Clang vector types (the same operations in the same order, so
** each lane equals cpu_expf of it), for the f32 fast paths; cpu_vf8 loads/stores with memcpy
** (no alignment needed). */
typedef float cpu_vf8 __attribute__((vector_size(32)));
typedef int32_t cpu_vi8 __attribute__((vector_size(32)));
static inline cpu_vf8 cpu_vf8_ld(const float *p) {
  cpu_vf8 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void cpu_vf8_st(float *p, cpu_vf8 v) { memcpy(p, &v, sizeof v); }
static inline cpu_vf8 cpu_vf8_splat(float v) { return (cpu_vf8){0} + v; }
static inline cpu_vf8 cpu_vf8_sel(cpu_vi8 m, cpu_vf8 a, cpu_vf8 b) {  /* m ? a : b per lane (m: 0 or -1) */
  return (cpu_vf8)((m & (cpu_vi8)a) | (~m & (cpu_vi8)b));
}
static inline cpu_vf8 cpu_vexpf(cpu_vf8 x) {
  const float log2e = 1.44269504f, ln2hi = 0.693145752f, ln2lo = 1.42860677e-06f, magic = 12582912.0f;
  cpu_vf8 xc = cpu_vf8_sel(x > 89.0f, cpu_vf8_splat(89.0f), cpu_vf8_sel(x < -104.0f, cpu_vf8_splat(-104.0f), x));
  cpu_vf8 kf = xc * log2e + magic;
  cpu_vi8 k = (cpu_vi8)kf - (cpu_vi8)cpu_vf8_splat(magic);
  kf -= magic;
  cpu_vf8 r = (xc - kf * ln2hi) - kf * ln2lo;
  cpu_vf8 p = cpu_vf8_splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  cpu_vi8 k1 = k >> 1, k2 = k - k1;
  cpu_vf8 y = p * (cpu_vf8)((k1 + 127) << 23) * (cpu_vf8)((k2 + 127) << 23);
  return cpu_vf8_sel(x != x, x, y);
}

/* Row reductions, vectorised with OpenMP simd reductions: the summation order is fixed by the
** compiled vector width, so it depends on n only, never on the thread count. */

/* max(m0, x[0..n)), NaN if any is NaN */
static inline double cpu_max_of(const double *x, int64_t n, double m0) {
  double m = m0;
  int nan = m0 != m0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t j = 0; j < n; j++) {
    m = x[j] > m ? x[j] : m;
    nan |= x[j] != x[j];
  }
  return nan ? NAN : m;
}

/* sum of y[j] = exp(x[j] - shift) over [0, n); y may be x. lowp computes the exponentials in
** float (for f32/bf16 data: several times faster), f64 data keeps the double exp. Sums in double. */
static inline double cpu_exp_sum(double *y, const double *x, int64_t n, double shift, int lowp) {
  double s = 0;
  if (lowp) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
      y[j] = cpu_expf((float)(x[j] - shift));
      s += y[j];
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
      y[j] = cpu_exp(x[j] - shift);
      s += y[j];
    }
  }
  return s;
}

/* value i of a 1-D contiguous side tensor (rstd, mean, lse, losses) */
static inline double cpu_side_ld(const sr_tensor *t, int64_t i) { return cpu_ld(t->storage->data, t->dtype, t->offset + i); }
static inline void cpu_side_st(sr_tensor *t, int64_t i, double v) { cpu_st(t->storage->data, t->dtype, t->offset + i, v); }

/* the element-wise functions of host/cpu/elementwise.c on buffers of doubles, for the step
** compiler's interpreter (host/cpu/fuse.c): y = f(x; p), dx = dy * f'(x; p), dx from y = f(x)
** (tanh, sigmoid, exp), y = a (fn) b */
void sr_cpu_unary_fwd(double *y, const double *x, int64_t n, int fn, double p);
void sr_cpu_unary_bwd(double *dx, const double *dy, const double *x, int64_t n, int fn, double p);
void sr_cpu_unary_bwd_y(double *dx, const double *dy, const double *y, int64_t n, int fn);
void sr_cpu_binary_fwd(double *y, const double *a, const double *b, int64_t n, int fn);

#endif
