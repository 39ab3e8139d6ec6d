/*
** test_gpu_kernels.c: every CUDA kernel of the registry against a plain double-precision
** reference computed here, at several shapes (odd sizes, non-contiguous views, broadcast inputs),
** with fresh random inputs per check and outputs poisoned (all bits set: NaN) before each run.
** Error measure: ||out - ref|| / ||ref|| over the logical elements; NaN never passes. The
** binary ops take their reference from the CPU kernel (sr_cpu_binary in float64) via cpu_ref().
** Tolerances: f32 1e-5 (2e-5 where --use_fast_math exp/log enter), bf16 1e-2.
** Also: the caching allocator makes no driver allocation in steady state, a CUDA graph replay
** matches eager execution, and a bad embedding index is reported at synchronize.
** Exits 77 (skip) when no GPU is usable.
*/
#include <math.h>           /* defines: sqrt, exp, log, tanh, erf */
#include <stdarg.h>         /* defines: va_list */
#include <stdio.h>          /* defines: printf */
#include <stdlib.h>         /* defines: malloc, free */
#include <string.h>         /* defines: memset, strcmp */

#include <cuda_runtime.h>   /* defines: cudaMemcpy, cudaStreamSynchronize */

#include "cuda/backend.h"   /* defines: sr_cuda_probe, sr_cuda_malloc, sr_cuda_stream */
#include "core/registry.h"       /* defines: sr_kcall, sr_cuda_* launchers */

/* Until host/core/tensor.c is linked in, these weak stand-ins satisfy cuda_backend.c; the real ones
** win whenever they are present. */
__attribute__((weak)) void sr_register_cuda_backend(const sr_device_backend *b) { (void)b; }
__attribute__((weak)) void sr_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  exit(1);
}

static const char *unary_names[] = {
#define SR_X(E, n) #n,
  SR_UNARY_FNS(SR_X)
#undef SR_X
};
static const char *binary_names[] = {
#define SR_X(E, n) #n,
  SR_BINARY_FNS(SR_X)
#undef SR_X
};

/* ---------------------------------------------------------------- tensors with host mirrors */

typedef struct {
  sr_tensor t;
  sr_storage s;
  int64_t nel;   /* elements in the storage */
  double *h;     /* host mirror of the storage (values as stored) */
} T;

static int failures, checks;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {  /* [0,1) */
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static size_t dsize(sr_dtype d) { return d == SR_F64 ? 8 : d == SR_BF16 ? 2 : 4; }
static double round_to(sr_dtype d, double v) {
  if (d == SR_F32) return (double)(float)v;
  if (d == SR_BF16) return (double)sr_bf16_to_f32(sr_f32_to_bf16((float)v));
  if (d == SR_I32) return (double)(int)v;
  return v;
}

static void cuda_ok(cudaError_t e, const char *what) {
  if (e != cudaSuccess) { printf("FATAL: %s: %s\n", what, cudaGetErrorString(e)); exit(1); }
}
static void sync(void) { cuda_ok(cudaStreamSynchronize((cudaStream_t)sr_cuda_stream()), "sync"); }

/* a tensor over a fresh storage of nel elements, with the given view */
static T *tview(sr_dtype dt, int64_t nel, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  T *x = calloc(1, sizeof *x);
  x->nel = nel;
  x->h = calloc((size_t)(nel ? nel : 1), sizeof(double));
  x->s.data = sr_cuda_malloc((size_t)(nel ? nel : 1) * dsize(dt));
  x->s.nbytes = (size_t)nel * dsize(dt);
  x->s.device = SR_CUDA;
  x->s.refcount = 1;
  x->t.refcount = 1;
  x->t.storage = &x->s;
  x->t.offset = offset;
  x->t.ndim = ndim;
  x->t.dtype = dt;
  for (int k = 0; k < ndim; k++) { x->t.shape[k] = shape[k]; x->t.stride[k] = stride[k]; }
  return x;
}
static T *tnew(sr_dtype dt, int ndim, const int64_t *shape) {
  int64_t st[SR_MAXDIM], n = 1;
  for (int k = ndim - 1; k >= 0; k--) { st[k] = n; n *= shape[k]; }
  return tview(dt, n, ndim, shape, st, 0);
}
/* non-contiguous: the last two dims swapped in memory (a transposed view) */
static T *tnew_t(sr_dtype dt, int ndim, const int64_t *shape) {
  int64_t st[SR_MAXDIM], n = 1, perm[SR_MAXDIM];
  for (int k = 0; k < ndim; k++) perm[k] = k;
  if (ndim >= 2) { perm[ndim - 1] = ndim - 2; perm[ndim - 2] = ndim - 1; }
  for (int k = ndim - 1; k >= 0; k--) { st[perm[k]] = n; n *= shape[perm[k]]; }
  return tview(dt, n, ndim, shape, st, 0);
}
/* non-contiguous: rows padded by 3 elements and the view starting at element 2 */
static T *tnew_pad(sr_dtype dt, int ndim, const int64_t *shape) {
  int64_t st[SR_MAXDIM], n = 1;
  for (int k = ndim - 1; k >= 0; k--) { st[k] = n; n *= shape[k] + (k == ndim - 1 ? 3 : 0); }
  return tview(dt, n + 2, ndim, shape, st, 2);
}
static void tfree(T *x) { if (!x) return; sr_cuda_free(x->s.data); free(x->h); free(x); }
static int64_t numel(const T *x) { int64_t n = 1; for (int k = 0; k < x->t.ndim; k++) n *= x->t.shape[k]; return n; }
static int64_t off(const T *x, int64_t i) { return sr_offset_of(&x->t, i); }
static double get(const T *x, int64_t i) { return x->h[off(x, i)]; }
/* the logical elements of x in row-major order (references read these, not the strided copy) */
static double *dense(const T *x) {
  int64_t n = numel(x);
  double *d = malloc((size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++) d[i] = get(x, i);
  return d;
}

static void upload(T *x) {
  size_t n = (size_t)x->nel, es = dsize(x->t.dtype);
  void *buf = malloc(n * es + 1);
  for (size_t i = 0; i < n; i++) {
    double v = x->h[i];
    switch (x->t.dtype) {
      case SR_F32: ((float *)buf)[i] = (float)v; break;
      case SR_BF16: ((uint16_t *)buf)[i] = sr_f32_to_bf16((float)v); break;
      case SR_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
      default: ((double *)buf)[i] = v;
    }
  }
  /* on the engine's stream: cudaMemcpy from pageable memory runs on the legacy stream and may
  ** return before its DMA lands, and the engine's non-blocking stream is not ordered after it */
  cuda_ok(cudaMemcpyAsync(x->s.data, buf, n * es, cudaMemcpyHostToDevice, (cudaStream_t)sr_cuda_stream()), "upload");
  sync();
  free(buf);
}
static void download(T *x) {
  size_t n = (size_t)x->nel, es = dsize(x->t.dtype);
  void *buf = malloc(n * es + 1);
  cuda_ok(cudaMemcpyAsync(buf, x->s.data, n * es, cudaMemcpyDeviceToHost, (cudaStream_t)sr_cuda_stream()), "download");
  sync();
  for (size_t i = 0; i < n; i++) {
    switch (x->t.dtype) {
      case SR_F32: x->h[i] = ((float *)buf)[i]; break;
      case SR_BF16: x->h[i] = sr_bf16_to_f32(((uint16_t *)buf)[i]); break;
      case SR_I32: x->h[i] = ((int32_t *)buf)[i]; break;
      default: x->h[i] = ((double *)buf)[i];
    }
  }
  free(buf);
}
/* random values in [lo,hi) over the whole storage (as stored), uploaded */
static T *rnd(T *x, double lo, double hi) {
  for (int64_t i = 0; i < x->nel; i++) x->h[i] = round_to(x->t.dtype, lo + (hi - lo) * urand());
  upload(x);
  return x;
}
static T *rint_(T *x, int lo, int hi) {
  for (int64_t i = 0; i < x->nel; i++) x->h[i] = lo + (int)((hi - lo) * urand());
  upload(x);
  return x;
}
static T *poison(T *x) {
  cuda_ok(cudaMemsetAsync(x->s.data, 0xff, (size_t)x->nel * dsize(x->t.dtype), (cudaStream_t)sr_cuda_stream()), "poison");
  sync();
  return x;
}

/* ---------------------------------------------------------------- checking */

static double tol_of(sr_dtype d, double f32tol) { return d == SR_BF16 ? 1e-2 : f32tol; }

/* compares the logical elements of out (downloaded here) with ref[numel] */
static void expect(const char *name, T *out, const double *ref, double tol) {
  download(out);
  int64_t n = numel(out);
  double num = 0, den = 0;
  int nan = 0;
  for (int64_t i = 0; i < n; i++) {
    double o = get(out, i), r = ref[i];
    if (o != o) nan++;
    num += (o - r) * (o - r);
    den += r * r;
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  int ok = !nan && rel <= tol;
  checks++;
  if (!ok) failures++;
  if (!ok || getenv("SR_TEST_VERBOSE"))
    printf("%-4s %-60s rel %.2e (tol %.0e)%s\n", ok ? "ok" : "FAIL", name, rel, tol, nan ? " NaN in output" : "");
}

static void run(const char *name, const char *(*fn)(const sr_kcall *), sr_kcall *c) {
  const char *e = fn(c);
  if (!e) { cudaError_t ce = cudaStreamSynchronize((cudaStream_t)sr_cuda_stream()); if (ce) e = cudaGetErrorString(ce); }
  if (e) { printf("FAIL %s: kernel returned error: %s\n", name, e); failures++; }
}
static sr_kcall call(int nt, T *const *ts) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.nt = nt;
  for (int j = 0; j < nt; j++) c.t[j] = ts[j] ? &ts[j]->t : NULL;
  return c;
}
/* reference from the CPU kernel (host/cpu_*.c): every operand's logical values as a contiguous
** CPU float64 tensor (i32 stays i32), the CPU kernel run on those, output 0's values into ref */
static void cpu_ref(const char *(*cpu)(const sr_kcall *), const sr_kcall *gc, double *ref) {
  sr_kcall cc = *gc;
  for (int j = 0; j < gc->nt; j++) {
    if (!gc->t[j]) continue;
    const T *x = (const T *)gc->t[j];  /* T starts with its sr_tensor */
    sr_dtype dt = x->t.dtype == SR_I32 ? SR_I32 : SR_F64;
    sr_tensor *c = sr_tensor_new(dt, SR_CPU, x->t.ndim, x->t.shape);
    int64_t n = numel(x);
    for (int64_t i = 0; i < n; i++) {
      if (dt == SR_I32) ((int32_t *)sr_data(c))[i] = (int32_t)get(x, i);
      else ((double *)sr_data(c))[i] = get(x, i);
    }
    cc.t[j] = c;
  }
  const char *e = cpu(&cc);
  if (e) { printf("FATAL: CPU reference kernel: %s\n", e); exit(1); }
  int64_t n = sr_numel(cc.t[0]);
  for (int64_t i = 0; i < n; i++)
    ref[i] = cc.t[0]->dtype == SR_I32 ? ((const int32_t *)sr_data(cc.t[0]))[i] : ((const double *)sr_data(cc.t[0]))[i];
  for (int j = 0; j < cc.nt; j++) if (cc.t[j]) sr_tensor_release(cc.t[j]);
}

static const char *dn(sr_dtype d) { return d == SR_F32 ? "f32" : d == SR_BF16 ? "bf16" : d == SR_I32 ? "i32" : "f64"; }

/* ---------------------------------------------------------------- element-wise */

static double unary_ref(int fn, double x, double p) {
  switch (fn) {
    case SR_UNARY_NEG: return -x;
    case SR_UNARY_EXP: return exp(x);
    case SR_UNARY_LOG: return log(x);
    case SR_UNARY_TANH: return tanh(x);
    case SR_UNARY_SIGMOID: return 1 / (1 + exp(-x));
    case SR_UNARY_RELU: return x > 0 ? x : 0;
    case SR_UNARY_SQUARE: return x * x;
    case SR_UNARY_SQRT: return sqrt(x);
    case SR_UNARY_RSQRT: return 1 / sqrt(x);
    case SR_UNARY_ABS: return fabs(x);
    case SR_UNARY_GELU_ERF: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case SR_UNARY_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case SR_UNARY_RELU2: return x > 0 ? x * x : 0;
    case SR_UNARY_ADD_SCALAR: return x + p;
    case SR_UNARY_MUL_SCALAR: return x * p;
    case SR_UNARY_POW_SCALAR: return pow(x, p);
    case SR_UNARY_RSUB_SCALAR: return p - x;
    case SR_UNARY_RDIV_SCALAR: return p / x;
    case SR_UNARY_SIGN: return (x > 0) - (x < 0);
  }
  return NAN;
}
static double unary_dref(int fn, double x, double p) {  /* numerical derivative in double */
  double h = 1e-6 * (fabs(x) > 1 ? fabs(x) : 1);
  if (fn == SR_UNARY_RELU || fn == SR_UNARY_SIGN || fn == SR_UNARY_ABS || fn == SR_UNARY_RELU2) {
    if (fn == SR_UNARY_RELU) return x > 0;
    if (fn == SR_UNARY_SIGN) return 0;
    if (fn == SR_UNARY_ABS) return (x > 0) - (x < 0);
    return x > 0 ? 2 * x : 0;
  }
  return (unary_ref(fn, x + h, p) - unary_ref(fn, x - h, p)) / (2 * h);
}

static void test_elementwise(void) {
  const int64_t shapes[][3] = {{7, 13, 1}, {3, 33, 65}, {2, 64, 128}};
  sr_dtype dts[] = {SR_F32, SR_BF16};
  char name[160];
  for (int si = 0; si < 3; si++) {
    const int64_t *sh = shapes[si];
    int nd = sh[2] == 1 ? 2 : 3;
    int64_t n = sh[0] * sh[1] * (nd == 3 ? sh[2] : 1);
    double *ref = malloc((size_t)n * sizeof(double));
    for (int di = 0; di < 2; di++) {
      sr_dtype dt = dts[di];
      /* fill (contiguous and strided) */
      for (int layout = 0; layout < 2; layout++) {
        T *o = layout ? tnew_pad(dt, nd, sh) : tnew(dt, nd, sh);
        poison(o);
        sr_kcall c = call(1, (T *[]){o});
        c.f[0] = 1.5;
        run("fill", sr_cuda_fill, &c);
        for (int64_t i = 0; i < n; i++) ref[i] = 1.5;
        snprintf(name, sizeof name, "fill %s %s [%lld,%lld]", dn(dt), layout ? "strided" : "contig", (long long)sh[0], (long long)sh[1]);
        expect(name, o, ref, 0);
        tfree(o);
      }
      /* copy: from transposed / padded / other dtype into contiguous and into padded */
      for (int layout = 0; layout < 3; layout++) {
        sr_dtype sdt = layout == 2 ? (dt == SR_F32 ? SR_BF16 : SR_F32) : dt;
        T *x = rnd(layout == 0 ? tnew_t(sdt, nd, sh) : tnew_pad(sdt, nd, sh), -2, 2);
        T *o = layout == 1 ? tnew_pad(dt, nd, sh) : tnew(dt, nd, sh);
        poison(o);
        sr_kcall c = call(2, (T *[]){o, x});
        run("copy", sr_cuda_copy, &c);
        for (int64_t i = 0; i < n; i++) ref[i] = get(x, i);
        snprintf(name, sizeof name, "copy %s<-%s layout %d n=%lld", dn(dt), dn(sdt), layout, (long long)n);
        expect(name, o, ref, dt == SR_BF16 && sdt == SR_F32 ? 1e-2 : 0);
        tfree(x); tfree(o);
      }
      /* unary and its backward, every function, contiguous and transposed inputs */
      for (int fn = 0; fn < SR_UNARY_COUNT; fn++) {
        int pos = fn == SR_UNARY_LOG || fn == SR_UNARY_SQRT || fn == SR_UNARY_RSQRT || fn == SR_UNARY_POW_SCALAR ||
                  fn == SR_UNARY_RDIV_SCALAR;
        double p = fn == SR_UNARY_POW_SCALAR ? 1.7 : 0.75;
        for (int layout = 0; layout < 2; layout++) {
          T *x = rnd(layout ? tnew_t(dt, nd, sh) : tnew(dt, nd, sh), pos ? 0.2 : -3, pos ? 3 : 3);
          T *o = poison(tnew(dt, nd, sh));
          sr_kcall c = call(2, (T *[]){o, x});
          c.i[0] = fn; c.f[0] = p;
          run("unary", sr_cuda_unary, &c);
          for (int64_t i = 0; i < n; i++) ref[i] = round_to(dt, unary_ref(fn, get(x, i), p));
          snprintf(name, sizeof name, "unary %s %s %s n=%lld", unary_names[fn], dn(dt), layout ? "transposed" : "contig", (long long)n);
          expect(name, o, ref, tol_of(dt, 2e-5));
          T *dy = rnd(tnew(dt, nd, sh), -1, 1);
          T *dx = poison(tnew(dt, nd, sh));
          sr_kcall cb = call(3, (T *[]){dx, dy, x});
          cb.i[0] = fn; cb.f[0] = p;
          run("unary_backward", sr_cuda_unary_backward, &cb);
          for (int64_t i = 0; i < n; i++) ref[i] = get(dy, i) * unary_dref(fn, get(x, i), p);
          snprintf(name, sizeof name, "unary_backward %s %s %s", unary_names[fn], dn(dt), layout ? "transposed" : "contig");
          expect(name, dx, ref, tol_of(dt, 1e-4));  /* vs a numerical derivative */
          tfree(x); tfree(o); tfree(dy); tfree(dx);
        }
      }
      /* binary: contiguous, and b broadcast along dim 0 (stride 0) */
      for (int fn = 0; fn < SR_BINARY_COUNT; fn++) {
        for (int layout = 0; layout < 2; layout++) {
          int pos = fn == SR_BINARY_POW || fn == SR_BINARY_DIV;
          T *a = rnd(tnew(dt, nd, sh), pos ? 0.3 : -2, 2);
          T *b;
          if (layout) {  /* [1, ...] expanded */
            int64_t bsh[3] = {1, sh[1], sh[2]}, bst[3] = {0, nd == 3 ? sh[2] : 1, 1};
            int64_t bn = sh[1] * (nd == 3 ? sh[2] : 1);
            b = tview(dt, bn, nd, sh, bst, 0);
            (void)bsh;
            rnd(b, pos ? 0.3 : -2, 2);
          } else {
            b = rnd(tnew(dt, nd, sh), pos ? 0.3 : -2, 2);
          }
          T *o = poison(tnew(dt, nd, sh));
          sr_kcall c = call(3, (T *[]){o, a, b});
          c.i[0] = fn;
          run("binary", sr_cuda_binary, &c);
          cpu_ref(sr_cpu_binary, &c, ref);   /* the CPU reference kernel, in float64 */
          for (int64_t i = 0; i < n; i++) ref[i] = round_to(dt, ref[i]);
          snprintf(name, sizeof name, "binary %s %s %s n=%lld", binary_names[fn], dn(dt), layout ? "broadcast" : "contig", (long long)n);
          expect(name, o, ref, tol_of(dt, 2e-5));
          tfree(a); tfree(b); tfree(o);
        }
      }
      /* where with an i32 condition and a transposed a */
      {
        T *cond = rint_(tnew(SR_I32, nd, sh), 0, 2), *a = rnd(tnew_t(dt, nd, sh), -1, 1), *b = rnd(tnew(dt, nd, sh), -1, 1);
        T *o = poison(tnew(dt, nd, sh));
        sr_kcall c = call(4, (T *[]){o, cond, a, b});
        run("where", sr_cuda_where, &c);
        for (int64_t i = 0; i < n; i++) ref[i] = get(cond, i) != 0 ? get(a, i) : get(b, i);
        snprintf(name, sizeof name, "where %s n=%lld", dn(dt), (long long)n);
        expect(name, o, ref, 0);
        tfree(cond); tfree(a); tfree(b); tfree(o);
      }
    }
    /* arange in every dtype */
    {
      sr_dtype adt[] = {SR_F32, SR_BF16, SR_I32};
      for (int k = 0; k < 3; k++) {
        T *o = poison(tnew(adt[k], 1, &n));
        sr_kcall c = call(1, (T *[]){o});
        c.f[0] = 3; c.f[1] = adt[k] == SR_I32 ? 2 : 0.5;
        run("arange", sr_cuda_arange, &c);
        for (int64_t i = 0; i < n; i++) ref[i] = round_to(adt[k], 3 + c.f[1] * i);
        snprintf(name, sizeof name, "arange %s n=%lld", dn(adt[k]), (long long)n);
        expect(name, o, ref, adt[k] == SR_BF16 ? 1e-2 : 0);
        tfree(o);
      }
    }
    free(ref);
  }
}

/* ---------------------------------------------------------------- reductions and softmax */

static void test_reduce(void) {
  const int64_t shapes[][3] = {{5, 7, 9}, {3, 300, 31}, {2, 2000, 1}, {8, 5, 3000}, {1, 3, 70000}};
  char name[160];
  for (int si = 0; si < 5; si++)
    for (int dti = 0; dti < 2; dti++)
      for (int layout = 0; layout < 2; layout++)
        for (int dim = 0; dim < 3; dim++)
          for (int fn = 0; fn < SR_REDUCE_COUNT; fn++) {
            sr_dtype dt = dti ? SR_BF16 : SR_F32;
            const int64_t *sh = shapes[si];
            T *x = rnd(layout ? tnew_t(dt, 3, sh) : tnew(dt, 3, sh), -2, 2);
            int64_t osh[3] = {sh[0], sh[1], sh[2]};
            osh[dim] = 1;
            T *o = poison(tnew(dt, 3, osh));
            T *idx = fn == SR_REDUCE_MAX ? poison(tnew(SR_I32, 3, osh)) : NULL;
            sr_kcall c = call(3, (T *[]){o, x, idx});
            c.i[0] = fn; c.i[1] = dim;
            run("reduce", sr_cuda_reduce, &c);
            int64_t on = numel(o);
            double *ref = malloc((size_t)on * sizeof(double)), *iref = malloc((size_t)on * sizeof(double));
            for (int64_t i = 0; i < on; i++) {
              int64_t a = i / (osh[1] * osh[2]), b = (i / osh[2]) % osh[1], cc = i % osh[2];
              double acc = fn == SR_REDUCE_MAX ? -INFINITY : 0;
              int arg = 0;
              for (int64_t r = 0; r < sh[dim]; r++) {
                int64_t ix[3] = {a, b, cc};
                ix[dim] = r;
                double v = get(x, (ix[0] * sh[1] + ix[1]) * sh[2] + ix[2]);
                if (fn == SR_REDUCE_MAX) { if (v > acc) { acc = v; arg = (int)r; } }
                else acc += fn == SR_REDUCE_SUMSQ ? v * v : v;
              }
              if (fn == SR_REDUCE_MEAN) acc /= (double)sh[dim];
              ref[i] = acc;
              iref[i] = arg;
            }
            snprintf(name, sizeof name, "reduce %s %s dim %d [%lld,%lld,%lld] %s", fn == 0 ? "sum" : fn == 1 ? "mean" : fn == 2 ? "max" : "sumsq",
                     dn(dt), dim, (long long)sh[0], (long long)sh[1], (long long)sh[2], layout ? "transposed" : "contig");
            expect(name, o, ref, tol_of(dt, 1e-5));
            if (idx) {
              strcat(name, " idx");
              expect(name, idx, iref, 0);
            }
            free(ref); free(iref);
            tfree(x); tfree(o); tfree(idx);
          }
  /* softmax / log_softmax forward and backward */
  const int64_t rows[][2] = {{7, 33}, {64, 1000}, {5, 50257}};
  for (int si = 0; si < 3; si++)
    for (int dti = 0; dti < 2; dti++)
      for (int lg = 0; lg < 2; lg++) {
        sr_dtype dt = dti ? SR_BF16 : SR_F32;
        int64_t N = rows[si][0], C = rows[si][1], sh[2] = {N, C};
        T *x = rnd(tnew(dt, 2, sh), -4, 4), *y = poison(tnew(dt, 2, sh));
        sr_kcall c = call(2, (T *[]){y, x});
        c.i[0] = lg;
        run("softmax", sr_cuda_softmax, &c);
        double *ref = malloc((size_t)(N * C) * sizeof(double));
        for (int64_t n = 0; n < N; n++) {
          double m = -INFINITY, s = 0;
          for (int64_t k = 0; k < C; k++) m = fmax(m, get(x, n * C + k));
          for (int64_t k = 0; k < C; k++) s += exp(get(x, n * C + k) - m);
          for (int64_t k = 0; k < C; k++) ref[n * C + k] = lg ? get(x, n * C + k) - m - log(s) : exp(get(x, n * C + k) - m) / s;
        }
        snprintf(name, sizeof name, "%s %s [%lld,%lld]", lg ? "log_softmax" : "softmax", dn(dt), (long long)N, (long long)C);
        expect(name, y, ref, tol_of(dt, 2e-5));
        T *dy = rnd(tnew(dt, 2, sh), -1, 1), *dx = poison(tnew(dt, 2, sh));
        sr_kcall cb = call(3, (T *[]){dx, dy, y});
        cb.i[0] = lg;
        run("softmax_backward", sr_cuda_softmax_backward, &cb);
        for (int64_t n = 0; n < N; n++) {
          double s = 0;
          for (int64_t k = 0; k < C; k++) s += lg ? get(dy, n * C + k) : get(dy, n * C + k) * get(y, n * C + k);
          for (int64_t k = 0; k < C; k++) {
            double g = get(dy, n * C + k), yv = get(y, n * C + k);
            ref[n * C + k] = lg ? g - exp(yv) * s : yv * (g - s);
          }
        }
        strcat(name, " backward");
        expect(name, dx, ref, tol_of(dt, 2e-5));
        free(ref);
        tfree(x); tfree(y); tfree(dy); tfree(dx);
      }
}

/* ---------------------------------------------------------------- gemm */

/* large GEMMs with odd sizes run on zero-padded copies (kernels/matmul.cu): M*N*K >= 2^26 with
** N, K (and for some cases the row strides) not multiples of 8, M odd too (never padded: a
** transposed a gets a rounded row stride); transposes, beta, f32 and bf16 */
static void test_gemm_padded(void) {
  const int64_t shapes[2][3] = {{130, 1001, 517}, {1001, 136, 517}};  /* ~67M and ~70M multiply-adds */
  char name[200];
  for (int sh = 0; sh < 2; sh++)
  for (int mode = 0; mode < 3; mode++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int64_t M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
        int pad = ta ^ tb;
        sr_dtype idt = mode == 0 ? SR_F32 : SR_BF16, odt = mode == 1 ? SR_BF16 : SR_F32;
        int64_t ash[2] = {ta ? K : M, ta ? M : K}, bsh[2] = {tb ? N : K, tb ? K : N}, osh[2] = {M, N};
        T *a = rnd(pad ? tnew_pad(idt, 2, ash) : tnew(idt, 2, ash), -1, 1);
        T *b = rnd(pad ? tnew_pad(idt, 2, bsh) : tnew(idt, 2, bsh), -1, 1);
        T *o = tnew(odt, 2, osh);
        double beta = pad ? 0.5 : 0.0;
        if (beta != 0) rnd(o, -1, 1); else poison(o);
        double *ref = malloc((size_t)(M * N) * sizeof(double)), *ad = dense(a), *bd = dense(b);
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += ad[ta ? k * M + i : i * K + k] * bd[tb ? j * K + k : k * N + j];
            ref[i * N + j] = 0.8 * s + (beta != 0 ? beta * get(o, i * N + j) : 0);
          }
        free(ad); free(bd);
        sr_kcall c = call(3, (T *[]){o, a, b});
        c.i[0] = ta; c.i[1] = tb; c.f[0] = 0.8; c.f[1] = beta;
        run("gemm", sr_cuda_gemm, &c);
        snprintf(name, sizeof name, "gemm padded path %s->%s [%lld,%lld,%lld] ta=%d tb=%d %s", dn(idt), dn(odt),
                 (long long)M, (long long)N, (long long)K, ta, tb, pad ? "padded rows beta=0.5" : "contig");
        expect(name, o, ref, mode == 0 ? 1e-5 : 1e-2);
        free(ref);
        tfree(a); tfree(b); tfree(o);
      }
}

static void test_gemm(void) {
  struct { int64_t B, M, N, K; int bcast; } cases[] = {
    {1, 37, 29, 51, 0}, {1, 128, 256, 64, 0}, {3, 17, 40, 24, 0}, {4, 64, 96, 80, 1}, {2, 256, 768, 768, 0},
  };
  char name[200];
  for (int ci = 0; ci < 5; ci++)
    for (int mode = 0; mode < 3; mode++)  /* f32->f32, bf16->bf16, bf16->f32 */
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
          for (int pad = 0; pad < 2; pad++) {
            int64_t B = cases[ci].B, M = cases[ci].M, N = cases[ci].N, K = cases[ci].K;
            sr_dtype idt = mode == 0 ? SR_F32 : SR_BF16, odt = mode == 1 ? SR_BF16 : SR_F32;
            int64_t ash[3] = {B, ta ? K : M, ta ? M : K}, bsh[3] = {B, tb ? N : K, tb ? K : N}, osh[3] = {B, M, N};
            T *a = rnd(pad ? tnew_pad(idt, 3, ash) : tnew(idt, 3, ash), -1, 1);
            T *b;
            if (cases[ci].bcast) {  /* b shared by every batch: batch stride 0 */
              int64_t st[3] = {0, bsh[2], 1};
              b = rnd(tview(idt, bsh[1] * bsh[2], 3, bsh, st, 0), -1, 1);
            } else {
              b = rnd(pad ? tnew_pad(idt, 3, bsh) : tnew(idt, 3, bsh), -1, 1);
            }
            T *o = tnew(odt, 3, osh);
            double beta = pad ? 0.5 : 0.0;
            if (beta != 0) rnd(o, -1, 1); else poison(o);
            double *ref = malloc((size_t)(B * M * N) * sizeof(double)), *ad = dense(a), *bd = dense(b);
            for (int64_t bb = 0; bb < B; bb++)
              for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                  double s = 0;
                  for (int64_t k = 0; k < K; k++)
                    s += ad[bb * ash[1] * ash[2] + (ta ? k * M + i : i * K + k)] *
                         bd[bb * bsh[1] * bsh[2] + (tb ? j * K + k : k * N + j)];
                  int64_t oi = (bb * M + i) * N + j;
                  ref[oi] = 0.8 * s + (beta != 0 ? beta * get(o, oi) : 0);
                }
            free(ad); free(bd);
            sr_kcall c = call(3, (T *[]){o, a, b});
            c.i[0] = ta; c.i[1] = tb; c.f[0] = 0.8; c.f[1] = beta;
            run("gemm", sr_cuda_gemm, &c);
            snprintf(name, sizeof name, "gemm %s->%s [%lld]x[%lld,%lld,%lld] ta=%d tb=%d %s%s", dn(idt), dn(odt), (long long)B,
                     (long long)M, (long long)N, (long long)K, ta, tb, pad ? "padded beta=0.5" : "contig",
                     cases[ci].bcast ? " b-broadcast" : "");
            expect(name, o, ref, mode == 0 ? 1e-5 : 1e-2);
            free(ref);
            tfree(a); tfree(b); tfree(o);
          }
  test_gemm_padded();
}

/* ---------------------------------------------------------------- embedding, norms, xent */

static void test_embedding(void) {
  const int64_t cases[][3] = {{50, 17, 33}, {1000, 512, 768}};  /* V, N, C */
  char name[160];
  for (int ci = 0; ci < 2; ci++)
    for (int dti = 0; dti < 2; dti++) {
      sr_dtype dt = dti ? SR_BF16 : SR_F32;
      int64_t V = cases[ci][0], N = cases[ci][1], C = cases[ci][2], wsh[2] = {V, C}, osh[2] = {N, C};
      T *w = rnd(tnew(dt, 2, wsh), -1, 1), *idx = rint_(tnew(SR_I32, 1, &N), 0, (int)V), *o = poison(tnew(dt, 2, osh));
      sr_kcall c = call(3, (T *[]){o, w, idx});
      run("embedding", sr_cuda_embedding, &c);
      double *ref = malloc((size_t)(V * C > N * C ? V * C : N * C) * sizeof(double));
      for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < C; k++) ref[n * C + k] = get(w, (int64_t)get(idx, n) * C + k);
      snprintf(name, sizeof name, "embedding %s V=%lld N=%lld C=%lld", dn(dt), (long long)V, (long long)N, (long long)C);
      expect(name, o, ref, 0);
      /* backward accumulates into a random dweight; f32 dweight (bf16 atomics lose too much) */
      T *dw = rnd(tnew(SR_F32, 2, wsh), -1, 1), *dout = rnd(tnew(dt, 2, osh), -1, 1);
      for (int64_t i = 0; i < V * C; i++) ref[i] = get(dw, i);
      for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < C; k++) ref[(int64_t)get(idx, n) * C + k] += get(dout, n * C + k);
      sr_kcall cb = call(3, (T *[]){dw, dout, idx});
      run("embedding_backward", sr_cuda_embedding_backward, &cb);
      strcat(name, " backward");
      expect(name, dw, ref, 1e-5);
      free(ref);
      tfree(w); tfree(idx); tfree(o); tfree(dw); tfree(dout);
    }
}

static void test_norms(void) {
  const int64_t cases[][2] = {{7, 77}, {300, 768}, {64, 2048}};
  char name[200];
  for (int ci = 0; ci < 3; ci++)
    for (int dti = 0; dti < 2; dti++)
      for (int ln = 0; ln < 2; ln++)
        for (int affine = 0; affine < 2; affine++) {
          sr_dtype dt = dti ? SR_BF16 : SR_F32;
          int64_t N = cases[ci][0], C = cases[ci][1], sh[2] = {N, C};
          double eps = 1e-5;
          T *x = rnd(tnew(dt, 2, sh), -2, 2), *o = poison(tnew(dt, 2, sh));
          T *w = affine ? rnd(tnew(SR_F32, 1, &C), 0.5, 1.5) : NULL, *b = affine && ln ? rnd(tnew(SR_F32, 1, &C), -0.5, 0.5) : NULL;
          T *mean = ln ? poison(tnew(SR_F32, 1, &N)) : NULL, *rstd = poison(tnew(SR_F32, 1, &N));
          sr_kcall c = ln ? call(6, (T *[]){o, mean, rstd, x, w, b}) : call(4, (T *[]){o, rstd, x, w});
          c.f[0] = eps;
          run("norm", ln ? sr_cuda_layer_norm : sr_cuda_rms_norm, &c);
          double *ref = malloc((size_t)(N * C) * sizeof(double)), *mr = malloc((size_t)N * sizeof(double)),
                 *rr = malloc((size_t)N * sizeof(double));
          for (int64_t n = 0; n < N; n++) {
            double m = 0, v = 0;
            if (ln) { for (int64_t k = 0; k < C; k++) m += get(x, n * C + k); m /= C; }
            for (int64_t k = 0; k < C; k++) { double d = get(x, n * C + k) - m; v += d * d; }
            double r = 1 / sqrt(v / C + eps);
            mr[n] = m; rr[n] = r;
            for (int64_t k = 0; k < C; k++)
              ref[n * C + k] = (get(x, n * C + k) - m) * r * (w ? get(w, k) : 1) + (b ? get(b, k) : 0);
          }
          snprintf(name, sizeof name, "%s %s [%lld,%lld]%s", ln ? "layer_norm" : "rms_norm", dn(dt), (long long)N, (long long)C,
                   affine ? " affine" : "");
          expect(name, o, ref, tol_of(dt, 2e-5));
          char nm2[220];
          snprintf(nm2, sizeof nm2, "%s rstd", name);
          expect(nm2, rstd, rr, 2e-5);
          if (ln) { snprintf(nm2, sizeof nm2, "%s mean", name); expect(nm2, mean, mr, 2e-5); }
          /* backward: dx (=), dweight/dbias (+=) */
          T *dout = rnd(tnew(dt, 2, sh), -1, 1), *dx = poison(tnew(dt, 2, sh));
          T *dw = affine ? rnd(tnew(SR_F32, 1, &C), -1, 1) : NULL, *db = affine && ln ? rnd(tnew(SR_F32, 1, &C), -1, 1) : NULL;
          double *dwr = malloc((size_t)C * sizeof(double)), *dbr = malloc((size_t)C * sizeof(double));
          for (int64_t k = 0; k < C; k++) { dwr[k] = dw ? get(dw, k) : 0; dbr[k] = db ? get(db, k) : 0; }
          for (int64_t n = 0; n < N; n++) {
            double sg = 0, sgx = 0;
            for (int64_t k = 0; k < C; k++) {
              double g = get(dout, n * C + k) * (w ? get(w, k) : 1), xh = (get(x, n * C + k) - mr[n]) * rr[n];
              sg += g; sgx += g * xh;
              dwr[k] += get(dout, n * C + k) * xh;
              dbr[k] += get(dout, n * C + k);
            }
            sg /= C; sgx /= C;
            for (int64_t k = 0; k < C; k++) {
              double g = get(dout, n * C + k) * (w ? get(w, k) : 1), xh = (get(x, n * C + k) - mr[n]) * rr[n];
              ref[n * C + k] = ln ? rr[n] * (g - sg - xh * sgx) : rr[n] * (g - xh * sgx);
            }
          }
          sr_kcall cb = ln ? call(8, (T *[]){dx, dw, db, dout, x, w, mean, rstd}) : call(6, (T *[]){dx, dw, dout, x, w, rstd});
          run("norm_backward", ln ? sr_cuda_layer_norm_backward : sr_cuda_rms_norm_backward, &cb);
          snprintf(nm2, sizeof nm2, "%s backward dx", name);
          expect(nm2, dx, ref, tol_of(dt, 5e-5));
          if (dw) { snprintf(nm2, sizeof nm2, "%s backward dweight", name); expect(nm2, dw, dwr, tol_of(dt, 2e-5)); }
          if (db) { snprintf(nm2, sizeof nm2, "%s backward dbias", name); expect(nm2, db, dbr, tol_of(dt, 2e-5)); }
          free(ref); free(mr); free(rr); free(dwr); free(dbr);
          tfree(x); tfree(o); tfree(w); tfree(b); tfree(mean); tfree(rstd); tfree(dout); tfree(dx); tfree(dw); tfree(db);
        }
}

static void test_xent(void) {
  /* {16, 50304}: the padded GPT-2 vocabulary, rows read 16 bytes at a time */
  const int64_t cases[][2] = {{13, 37}, {64, 1000}, {8, 50257}, {16, 50304}};
  char name[160];
  for (int ci = 0; ci < 4; ci++)
    for (int dti = 0; dti < 2; dti++) {
      sr_dtype dt = dti ? SR_BF16 : SR_F32;
      int64_t N = cases[ci][0], V = cases[ci][1], sh[2] = {N, V};
      T *lg = rnd(ci == 1 ? tnew_pad(dt, 2, sh) : tnew(dt, 2, sh), -5, 5), *tg = rint_(tnew(SR_I32, 1, &N), 0, (int)V);
      tg->h[1] = -100; upload(tg);  /* an ignored row */
      T *loss = poison(tnew(SR_F32, 1, &N)), *lse = poison(tnew(SR_F32, 1, &N));
      sr_kcall c = call(4, (T *[]){loss, lse, lg, tg});
      c.i[0] = -100;
      run("cross_entropy", sr_cuda_cross_entropy, &c);
      double *lr = malloc((size_t)N * sizeof(double)), *ser = malloc((size_t)N * sizeof(double)),
             *ref = malloc((size_t)(N * V) * sizeof(double));
      for (int64_t n = 0; n < N; n++) {
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < V; k++) m = fmax(m, get(lg, n * V + k));
        for (int64_t k = 0; k < V; k++) s += exp(get(lg, n * V + k) - m);
        ser[n] = m + log(s);
        int t = (int)get(tg, n);
        lr[n] = t == -100 ? 0 : ser[n] - get(lg, n * V + t);
      }
      snprintf(name, sizeof name, "cross_entropy %s [%lld,%lld]%s", dn(dt), (long long)N, (long long)V, ci == 1 ? " padded rows" : "");
      expect(name, loss, lr, 2e-5);
      char nm2[200];
      snprintf(nm2, sizeof nm2, "%s lse", name);
      expect(nm2, lse, ser, 2e-5);
      T *dl = rnd(tnew(SR_F32, 1, &N), 0.5, 1.5), *dlg = poison(ci == 1 ? tnew_pad(dt, 2, sh) : tnew(dt, 2, sh));
      for (int64_t n = 0; n < N; n++) {
        int t = (int)get(tg, n);
        for (int64_t k = 0; k < V; k++)
          ref[n * V + k] = t == -100 ? 0 : get(dl, n) * (exp(get(lg, n * V + k) - ser[n]) - (k == t));
      }
      sr_kcall cb = call(5, (T *[]){dlg, dl, lg, tg, lse});
      cb.i[0] = -100;
      run("cross_entropy_backward", sr_cuda_cross_entropy_backward, &cb);
      snprintf(nm2, sizeof nm2, "%s backward", name);
      expect(nm2, dlg, ref, tol_of(dt, 2e-5));
      /* the backward in place over a copy of the logits */
      T *xb = ci == 1 ? tnew_pad(dt, 2, sh) : tnew(dt, 2, sh);
      memcpy(xb->h, lg->h, sizeof(double) * (size_t)lg->nel);
      upload(xb);
      sr_kcall cbi = call(5, (T *[]){xb, dl, xb, tg, lse});
      cbi.i[0] = -100;
      run("cross_entropy_backward in place", sr_cuda_cross_entropy_backward, &cbi);
      snprintf(nm2, sizeof nm2, "%s backward in place", name);
      expect(nm2, xb, ref, tol_of(dt, 2e-5));
      /* the forward with the gradient (dscale on the device): into a buffer, then in place */
      T *ds = tnew(SR_F32, 0, NULL);
      ds->h[0] = 0.37;
      upload(ds);
      for (int64_t n = 0; n < N; n++) {
        int t = (int)get(tg, n);
        for (int64_t k = 0; k < V; k++) ref[n * V + k] = t == -100 ? 0 : 0.37 * (exp(get(lg, n * V + k) - ser[n]) - (k == t));
      }
      T *g2 = poison(ci == 1 ? tnew_pad(dt, 2, sh) : tnew(dt, 2, sh)), *loss2 = poison(tnew(SR_F32, 1, &N));
      sr_kcall cf = call(6, (T *[]){loss2, lse, lg, tg, g2, ds});
      cf.i[0] = -100;
      run("cross_entropy fused", sr_cuda_cross_entropy, &cf);
      snprintf(nm2, sizeof nm2, "%s fused loss", name);
      expect(nm2, loss2, lr, 2e-5);
      snprintf(nm2, sizeof nm2, "%s fused dlogits", name);
      expect(nm2, g2, ref, tol_of(dt, 2e-5));
      memcpy(xb->h, lg->h, sizeof(double) * (size_t)lg->nel);
      upload(xb);
      poison(loss2);
      cf = call(6, (T *[]){loss2, lse, xb, tg, xb, ds});
      cf.i[0] = -100;
      run("cross_entropy fused in place", sr_cuda_cross_entropy, &cf);
      snprintf(nm2, sizeof nm2, "%s fused loss in place", name);
      expect(nm2, loss2, lr, 2e-5);
      snprintf(nm2, sizeof nm2, "%s fused dlogits in place", name);
      expect(nm2, xb, ref, tol_of(dt, 2e-5));
      free(lr); free(ser); free(ref);
      tfree(lg); tfree(tg); tfree(loss); tfree(lse); tfree(dl); tfree(dlg); tfree(xb); tfree(ds); tfree(g2); tfree(loss2);
    }
}

/* ---------------------------------------------------------------- attention */

static void test_attention(void) {
  struct { int64_t B, H, T, D; sr_dtype dt; int fused; } cases[] = {
    {2, 3, 64, 64, SR_BF16, 0}, {1, 2, 100, 64, SR_BF16, 0}, {2, 2, 256, 128, SR_BF16, 0}, {1, 1, 77, 128, SR_BF16, 0},
    {2, 2, 50, 16, SR_F32, 0}, {1, 3, 70, 64, SR_F32, 0}, {1, 2, 33, 32, SR_BF16, 0},
    {2, 3, 100, 64, SR_BF16, 1}, {1, 2, 130, 128, SR_BF16, 1},
    /* several 128-query forward tiles and pipelined backward tiles, a partial last one; T < 16 */
    {1, 2, 300, 64, SR_BF16, 1}, {1, 1, 200, 128, SR_BF16, 0}, {2, 1, 5, 64, SR_BF16, 0},
  };
  char name[160];
  for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++)
    for (int causal = 0; causal < 2; causal++) {
      int64_t B = cases[ci].B, H = cases[ci].H, Tn = cases[ci].T, D = cases[ci].D, sh[4] = {B, H, Tn, D}, lsh[3] = {B, H, Tn};
      sr_dtype dt = cases[ci].dt;
      int fused = cases[ci].fused;
      double scale = 1.0 / sqrt((double)D);
      /* fused: every [B,H,T,D] tensor is a strided view with the layout of one third of a
      ** [B,T,3,H,D] qkv projection (as a model reads q, k, v without copies) */
#define ATT_NEW(j) (fused ? tview(dt, B * Tn * 3 * H * D, 4, sh, (int64_t[]){Tn * 3 * H * D, D, 3 * H * D, 1}, (j) * H * D) : tnew(dt, 4, sh))
      T *q = rnd(ATT_NEW(0), -1, 1), *k = rnd(ATT_NEW(1), -1, 1), *v = rnd(ATT_NEW(2), -1, 1);
      T *o = poison(ATT_NEW(1)), *lse = poison(tnew(SR_F32, 3, lsh));
      sr_kcall c = call(5, (T *[]){o, lse, q, k, v});
      c.f[0] = scale; c.i[0] = causal;
      run("attention", sr_cuda_attention, &c);
      int64_t n = B * H * Tn * D;
      double *oref = calloc((size_t)n, sizeof(double)), *lref = calloc((size_t)(B * H * Tn), sizeof(double));
      double *dq = calloc((size_t)n, sizeof(double)), *dk = calloc((size_t)n, sizeof(double)), *dv = calloc((size_t)n, sizeof(double));
      double *P = malloc((size_t)(Tn * Tn) * sizeof(double));
      T *dO = rnd(ATT_NEW(2), -1, 1);
      for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t base = bh * Tn * D;
        for (int64_t i = 0; i < Tn; i++) {
          double m = -INFINITY, s = 0;
          for (int64_t j = 0; j < Tn; j++) {
            double d = 0;
            for (int64_t e = 0; e < D; e++) d += get(q, base + i * D + e) * get(k, base + j * D + e);
            P[i * Tn + j] = (causal && j > i) ? -INFINITY : d * scale;
            m = fmax(m, P[i * Tn + j]);
          }
          for (int64_t j = 0; j < Tn; j++) s += exp(P[i * Tn + j] - m);
          lref[bh * Tn + i] = m + log(s);
          for (int64_t j = 0; j < Tn; j++) P[i * Tn + j] = exp(P[i * Tn + j] - m) / s;
          for (int64_t e = 0; e < D; e++) {
            double acc = 0;
            for (int64_t j = 0; j < Tn; j++) acc += P[i * Tn + j] * get(v, base + j * D + e);
            oref[base + i * D + e] = acc;
          }
        }
        /* backward in double, with the exact output */
        for (int64_t i = 0; i < Tn; i++) {
          double delta = 0;
          for (int64_t e = 0; e < D; e++) delta += get(dO, base + i * D + e) * oref[base + i * D + e];
          for (int64_t j = 0; j < Tn; j++) {
            double p = P[i * Tn + j];
            if (p == 0) continue;
            double dp = 0;
            for (int64_t e = 0; e < D; e++) dp += get(dO, base + i * D + e) * get(v, base + j * D + e);
            double ds = p * (dp - delta) * scale;
            for (int64_t e = 0; e < D; e++) {
              dv[base + j * D + e] += p * get(dO, base + i * D + e);
              dq[base + i * D + e] += ds * get(k, base + j * D + e);
              dk[base + j * D + e] += ds * get(q, base + i * D + e);
            }
          }
        }
      }
      snprintf(name, sizeof name, "attention %s B=%lld H=%lld T=%lld D=%lld%s%s", dn(dt), (long long)B, (long long)H, (long long)Tn,
               (long long)D, causal ? " causal" : "", fused ? " strided (fused qkv layout)" : "");
      expect(name, o, oref, tol_of(dt, 2e-5));
      char nm2[200];
      snprintf(nm2, sizeof nm2, "%s lse", name);
      expect(nm2, lse, lref, dt == SR_BF16 ? 1e-3 : 2e-5);
      /* backward uses the GPU's own out and lse, as autograd will */
      T *gq = poison(ATT_NEW(0)), *gk = poison(ATT_NEW(1)), *gv = poison(ATT_NEW(2));
      sr_kcall cb = call(9, (T *[]){gq, gk, gv, dO, q, k, v, o, lse});
      cb.f[0] = scale; cb.i[0] = causal;
      run("attention_backward", sr_cuda_attention_backward, &cb);
      snprintf(nm2, sizeof nm2, "%s dq", name); expect(nm2, gq, dq, tol_of(dt, 5e-5));
      snprintf(nm2, sizeof nm2, "%s dk", name); expect(nm2, gk, dk, tol_of(dt, 5e-5));
      snprintf(nm2, sizeof nm2, "%s dv", name); expect(nm2, gv, dv, tol_of(dt, 5e-5));
      free(oref); free(lref); free(dq); free(dk); free(dv); free(P);
      tfree(q); tfree(k); tfree(v); tfree(o); tfree(lse); tfree(dO); tfree(gq); tfree(gk); tfree(gv);
    }
}

/* ---------------------------------------------------------------- adamw */

static void test_adamw(void) {
  int64_t sizes[] = {1, 1003, 4096 * 3};
  char name[120];
  for (int si = 0; si < 3; si++)
    for (int dti = 0; dti < 2; dti++) {
      sr_dtype dt = dti ? SR_BF16 : SR_F32;
      int64_t n = sizes[si];
      T *p = rnd(tnew(dt, 1, &n), -1, 1), *g = rnd(tnew(dt, 1, &n), -1, 1), *m = rnd(tnew(SR_F32, 1, &n), -0.1, 0.1),
        *v = rnd(tnew(SR_F32, 1, &n), 0, 0.01);
      double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
      int step = 3;
      double *pr = malloc((size_t)n * sizeof(double)), *mr = malloc((size_t)n * sizeof(double)), *vr = malloc((size_t)n * sizeof(double));
      for (int64_t i = 0; i < n; i++) {
        double gg = get(g, i);
        mr[i] = b1 * get(m, i) + (1 - b1) * gg;
        vr[i] = b2 * get(v, i) + (1 - b2) * gg * gg;
        double mh = mr[i] / (1 - pow(b1, step)), vh = vr[i] / (1 - pow(b2, step));
        pr[i] = round_to(dt, get(p, i) * (1 - lr * wd) - lr * mh / (sqrt(vh) + eps));
      }
      sr_kcall c = call(4, (T *[]){p, g, m, v});
      c.f[0] = lr; c.f[1] = b1; c.f[2] = b2; c.f[3] = eps; c.f[4] = wd; c.i[0] = step;
      run("adamw", sr_cuda_adamw, &c);
      snprintf(name, sizeof name, "adamw %s n=%lld param", dn(dt), (long long)n);
      expect(name, p, pr, dt == SR_BF16 ? 1e-2 : 1e-6);
      /* m and v: the error relative to the size of the two terms summed (b1 m + (1-b1) g can
      ** cancel, so relative to the result it is unbounded) */
      double *m0 = malloc((size_t)n * sizeof(double)), *v0 = malloc((size_t)n * sizeof(double));
      memcpy(m0, m->h, (size_t)n * sizeof(double));
      memcpy(v0, v->h, (size_t)n * sizeof(double));
      download(m);
      download(v);
      double em = 0, ev = 0;
      for (int64_t i = 0; i < n; i++) {
        double gg = get(g, i);
        em = fmax(em, fabs(get(m, i) - mr[i]) / (b1 * fabs(m0[i]) + (1 - b1) * fabs(gg) + 1e-30));
        ev = fmax(ev, fabs(get(v, i) - vr[i]) / (b2 * v0[i] + (1 - b2) * gg * gg + 1e-30));
      }
      const char *what[2] = {"m", "v"};
      double err[2] = {em, ev};
      for (int k = 0; k < 2; k++) {
        int ok = err[k] <= 1e-6;
        checks++;
        if (!ok) failures++;
        if (!ok || getenv("SR_TEST_VERBOSE"))
          printf("%-4s adamw %s n=%lld %-46s err %.2e of the terms (tol 1e-06)\n", ok ? "ok" : "FAIL", dn(dt), (long long)n, what[k], err[k]);
      }
      free(m0); free(v0);
      free(pr); free(mr); free(vr);
      tfree(p); tfree(g); tfree(m); tfree(v);
    }
}

/* adamw_multi against adamw per tensor on the device: the same arithmetic per element, so the
** same bits; 70 parameters of mixed sizes (two launches of 64), one of them at an odd offset (the
** scalar path of an f32 chunk), every param/grad dtype pair, with and without sched */
static void test_adamw_multi(void) {
  enum { NP = 70 };
  const int64_t base[6] = {1, 7, 1003, 16384 * 2 + 5, 4096, 3};
  const sr_dtype pdt[4] = {SR_F32, SR_BF16, SR_BF16, SR_F32}, gdt[4] = {SR_F32, SR_BF16, SR_F32, SR_BF16};
  char name[120];
  for (int d = 0; d < 4; d++)
    for (int use_sched = 0; use_sched < 2; use_sched++) {
      T *x[2][NP][4];
      sr_tensor *list[4 * NP];
      int64_t two = 2;
      T *sched[2] = {tnew(SR_F32, 1, &two), tnew(SR_F32, 1, &two)};
      for (int side = 0; side < 2; side++) {
        sched[side]->h[0] = 0.02; sched[side]->h[1] = 2;
        upload(sched[side]);
      }
      for (int k = 0; k < NP; k++) {
        int64_t n = base[k % 6];
        for (int side = 0; side < 2; side++) {
          x[side][k][0] = k == 3 ? tview(pdt[d], n + 1, 1, &n, (int64_t[]){1}, 1) : tnew(pdt[d], 1, &n);
          x[side][k][1] = tnew(gdt[d], 1, &n);
          x[side][k][2] = tnew(SR_F32, 1, &n);
          x[side][k][3] = tnew(SR_F32, 1, &n);
        }
        rnd(x[0][k][0], -1, 1); rnd(x[0][k][2], -0.1, 0.1); rnd(x[0][k][3], 0, 0.01);
        for (int j = 0; j < 4; j += (j == 0 ? 2 : 1)) {
          memcpy(x[1][k][j]->h, x[0][k][j]->h, (size_t)x[0][k][j]->nel * sizeof(double));
          upload(x[1][k][j]);
        }
        for (int j = 0; j < 4; j++) list[4 * k + j] = &x[0][k][j]->t;
      }
      for (int step = 1; step <= 2; step++) {
        for (int k = 0; k < NP; k++) {
          rnd(x[0][k][1], -1, 1);
          memcpy(x[1][k][1]->h, x[0][k][1]->h, (size_t)x[0][k][1]->nel * sizeof(double));
          upload(x[1][k][1]);
        }
        sr_kcall c = {.t = {use_sched ? &sched[0]->t : NULL}, .nt = 1, .f = {1e-2, 0.9, 0.95, 1e-8, 0.1}, .i = {step},
                      .list = list, .nlist = 4 * NP};
        run("adamw_multi", sr_cuda_adamw_multi, &c);
        for (int k = 0; k < NP; k++) {
          sr_kcall one = call(5, (T *[]){x[1][k][0], x[1][k][1], x[1][k][2], x[1][k][3], use_sched ? sched[1] : NULL});
          one.f[0] = 1e-2; one.f[1] = 0.9; one.f[2] = 0.95; one.f[3] = 1e-8; one.f[4] = 0.1; one.i[0] = step;
          run("adamw", sr_cuda_adamw, &one);
        }
      }
      int same = 1;
      for (int k = 0; k < NP; k++)
        for (int j = 0; j < 4; j += (j == 0 ? 2 : 1)) {
          download(x[0][k][j]);
          download(x[1][k][j]);
          same = same && !memcmp(x[0][k][j]->h, x[1][k][j]->h, (size_t)x[0][k][j]->nel * sizeof(double));
        }
      snprintf(name, sizeof name, "adamw_multi %s/%s sched=%d (70 params) == adamw", dn(pdt[d]), dn(gdt[d]), use_sched);
      checks++;
      if (!same) failures++;
      if (!same || getenv("SR_TEST_VERBOSE")) printf("%-4s %s\n", same ? "ok" : "FAIL", name);
      for (int side = 0; side < 2; side++) {
        tfree(sched[side]);
        for (int k = 0; k < NP; k++)
          for (int j = 0; j < 4; j++) tfree(x[side][k][j]);
      }
    }
}

/* sumsq_multi against a double sum of the host values (170 tensors: two launches of 160, f32
** and bf16 mixed), the same bits when run again; clip_multi against the scale from that sum */
static void test_clip_multi(void) {
  enum { NX = 170 };
  const int64_t base[5] = {1, 7, 1003, 16384 * 3 + 1, 64};
  T *x[NX];
  sr_tensor *list[NX];
  double ref = 0;
  for (int k = 0; k < NX; k++) {
    int64_t n = base[k % 5];
    x[k] = rnd(tnew(k % 2 ? SR_BF16 : SR_F32, 1, &n), -1, 1);
    for (int64_t i = 0; i < n; i++) ref += get(x[k], i) * get(x[k], i);
    list[k] = &x[k]->t;
  }
  int64_t one = 1;
  T *ss = tnew(SR_F32, 1, &one), *ss2 = tnew(SR_F32, 1, &one);
  sr_kcall c = {.t = {&ss->t}, .nt = 1, .list = list, .nlist = NX};
  run("sumsq_multi", sr_cuda_sumsq_multi, &c);
  expect("sumsq_multi (170 tensors, f32 and bf16)", ss, &ref, 1e-5);
  c.t[0] = &ss2->t;
  run("sumsq_multi", sr_cuda_sumsq_multi, &c);
  download(ss2);
  checks++;
  if (ss2->h[0] != ss->h[0]) { failures++; printf("FAIL sumsq_multi: %.9g, then %.9g (not deterministic)\n", ss->h[0], ss2->h[0]); }
  float scale = 1.0f / (sqrtf((float)ss->h[0]) + 1e-6f);
  double *want[NX];
  for (int k = 0; k < NX; k++) {
    want[k] = malloc((size_t)numel(x[k]) * sizeof(double));
    for (int64_t i = 0; i < numel(x[k]); i++) want[k][i] = round_to(x[k]->t.dtype, (float)get(x[k], i) * scale);
  }
  sr_kcall cl = {.t = {&ss->t}, .nt = 1, .f = {1.0, 1e-6}, .list = list, .nlist = NX};
  run("clip_multi", sr_cuda_clip_multi, &cl);
  for (int k = 0; k < NX; k += 17) {
    char name[80];
    snprintf(name, sizeof name, "clip_multi tensor %d %s n=%lld", k + 1, dn(x[k]->t.dtype), (long long)numel(x[k]));
    expect(name, x[k], want[k], 1e-6);
  }
  /* under the limit: nothing changes */
  cl.f[0] = 1e9;
  run("clip_multi", sr_cuda_clip_multi, &cl);
  for (int k = 0; k < NX; k += 17) expect("clip_multi under the limit", x[k], want[k], 0);
  for (int k = 0; k < NX; k++) { free(want[k]); tfree(x[k]); }
  tfree(ss); tfree(ss2);
}

/* ---------------------------------------------------------------- backend: allocator, graphs, errors */

static void test_backend(void) {
  /* steady state: the same sequence of sizes allocates nothing new from the driver */
  size_t sizes[] = {1000, 4 << 20, 123457, 64, 50 << 20};
  for (int it = 0; it < 3; it++) {
    void *p[5];
    for (int k = 0; k < 5; k++) p[k] = sr_cuda_malloc(sizes[k]);
    for (int k = 0; k < 5; k++) sr_cuda_free(p[k]);
  }
  int64_t before = sr_cuda_driver_allocs();
  for (int it = 0; it < 10; it++) {
    void *p[5];
    for (int k = 0; k < 5; k++) p[k] = sr_cuda_malloc(sizes[k]);
    for (int k = 4; k >= 0; k--) sr_cuda_free(p[k]);
  }
  checks++;
  if (sr_cuda_driver_allocs() != before) { failures++; printf("FAIL allocator: steady state made %lld driver allocations\n", (long long)(sr_cuda_driver_allocs() - before)); }
  printf("allocator: %lld driver allocations, current %zu B, peak %zu B, reserved %zu B\n", (long long)sr_cuda_driver_allocs(),
         sr_cuda_current_bytes(), sr_cuda_peak_bytes(), sr_cuda_reserved_bytes());

  /* graph: capture o = gelu(a @ b) + a@b, with a scratch tensor allocated inside the capture */
  int64_t ash[3] = {1, 64, 96}, bsh[3] = {1, 96, 80}, osh[3] = {1, 64, 80};
  T *a = rnd(tnew(SR_BF16, 3, ash), -1, 1), *b = rnd(tnew(SR_BF16, 3, bsh), -1, 1), *o = poison(tnew(SR_BF16, 3, osh));
  T *eager = tnew(SR_BF16, 3, osh);
  for (int pass = 0; pass < 2; pass++) {
    sr_cuda_graph *g = NULL;
    if (pass == 1) {
      const char *e = sr_cuda_graph_begin();
      if (e) { printf("FAIL graph begin: %s\n", e); failures++; return; }
    }
    T *mm = tnew(SR_BF16, 3, osh);  /* inside the capture: from the graph's pool */
    sr_kcall c = call(3, (T *[]){mm, a, b});
    c.f[0] = 1;
    const char *e = sr_cuda_gemm(&c);
    sr_kcall u = call(2, (T *[]){pass ? o : eager, mm});
    u.i[0] = SR_UNARY_GELU_TANH;
    if (!e) e = sr_cuda_unary(&u);
    sr_kcall ad = call(3, (T *[]){pass ? o : eager, pass ? o : eager, mm});
    ad.i[0] = SR_BINARY_ADD;
    if (!e) e = sr_cuda_binary(&ad);
    sr_cuda_free(mm->s.data); mm->s.data = NULL;
    free(mm->h); free(mm);
    if (e) { printf("FAIL graph pass %d: %s\n", pass, e); failures++; }
    if (pass == 1) {
      e = sr_cuda_graph_end(&g);
      if (e) { printf("FAIL graph end: %s\n", e); failures++; return; }
      poison(o);
      for (int r = 0; r < 3; r++) { e = sr_cuda_graph_replay(g); if (e) { printf("FAIL replay: %s\n", e); failures++; } }
      download(eager);
      expect("cuda graph replay == eager", o, eager->h, 0);
      /* new inputs flow through the same graph */
      rnd(a, -1, 1);
      sr_cuda_graph_replay(g);
      pass = 1;
      sr_cuda_graph_free(g);
    }
  }
  tfree(a); tfree(b); tfree(o); tfree(eager);

  /* a bad embedding index is reported at the next synchronize */
  int64_t wsh[2] = {10, 8}, N = 4, osh2[2] = {4, 8};
  T *w = rnd(tnew(SR_F32, 2, wsh), -1, 1), *idx = rint_(tnew(SR_I32, 1, &N), 0, 10), *out = tnew(SR_F32, 2, osh2);
  idx->h[2] = 12; upload(idx);
  sr_kcall c = call(3, (T *[]){out, w, idx});
  const char *e = sr_cuda_embedding(&c);
  const char *s = e ? e : sr_cuda_sync();
  checks++;
  if (!s || !strstr(s, "out of range")) { failures++; printf("FAIL bad index not reported (%s)\n", s ? s : "no error"); }
  else if (getenv("SR_TEST_VERBOSE")) printf("ok   bad index reported: %s\n", s);
  if (sr_cuda_sync()) { failures++; printf("FAIL deferred error not cleared\n"); }
  tfree(w); tfree(idx); tfree(out);
}

int main(int argc, char **argv) {
  const char *why = sr_cuda_probe();
  if (why) {
    printf("skip: no usable GPU: %s\n", why);
    return 77;
  }
  const char *only = argc > 1 ? argv[1] : NULL;
  struct { const char *name; void (*fn)(void); } groups[] = {
    {"elementwise", test_elementwise}, {"reduce", test_reduce}, {"gemm", test_gemm}, {"embedding", test_embedding},
    {"norms", test_norms}, {"xent", test_xent}, {"attention", test_attention}, {"adamw", test_adamw}, {"adamw_multi", test_adamw_multi},
    {"clip", test_clip_multi}, {"backend", test_backend},
  };
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
    if (only && strcmp(only, groups[i].name)) continue;
    int f0 = failures, c0 = checks;
    groups[i].fn();
    printf("== %-12s %d checks, %d failed\n", groups[i].name, checks - c0, failures - f0);
    fflush(stdout);
  }
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
