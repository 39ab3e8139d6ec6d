/*
** test_cpu_kernels.c: the CPU reference kernels (host/cpu_*.c), called directly through the
** registry: hand-computed values, a naive double-precision reference at several shapes (odd
** sizes, sizes that cross the chunk and gemm block edges, non-contiguous and broadcast (stride 0)
** views, f32/f64/bf16), finite differences in f64 for every backward kernel, results that do
** not depend on the OpenMP thread count, and the error messages for bad indices and dtypes.
** Prints one line per failure and a summary; exit status 1 on any failure.
*/
#include <math.h>        /* defines: fabs, exp, log, erfc, tanh, NAN, isnan */
#include <omp.h>         /* defines: omp_set_num_threads */
#include <stdio.h>       /* defines: printf */
#include <stdlib.h>      /* defines: malloc, free */
#include <string.h>      /* defines: strcmp, strstr, memcmp */

#include "core/registry.h"    /* defines: sr_kernels, sr_kcall, SR_K_* */
#include "core/copy.h"        /* defines: sr_copy_, sr_to_raw */

static int failures, checks;
#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    checks++;                                                                \
    if (!(cond)) {                                                           \
      failures++;                                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                            \
      printf(__VA_ARGS__);                                                   \
      printf("\n");                                                          \
    }                                                                        \
  } while (0)

static const sr_dtype FLOATS[3] = {SR_F64, SR_F32, SR_BF16};

/* ---------------------------------------------------------------------------------------------
** helpers: deterministic random numbers, tensors from values, element access, comparison */

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {  /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double get(const sr_tensor *x, int64_t i) { return sr_load(x->storage->data, x->dtype, sr_offset_of(x, i)); }
static void set(sr_tensor *x, int64_t i, double v) { sr_store(x->storage->data, x->dtype, sr_offset_of(x, i), v); }

static sr_tensor *tnew(sr_dtype dt, int nd, const int64_t *shape) { return sr_tensor_new(dt, SR_CPU, nd, shape); }
static sr_tensor *tvals(sr_dtype dt, int nd, const int64_t *shape, const double *v) {
  sr_tensor *x = tnew(dt, nd, shape);
  for (int64_t i = 0; i < sr_numel(x); i++) set(x, i, v[i]);
  return x;
}
static sr_tensor *trand(sr_dtype dt, int nd, const int64_t *shape, double scale) {
  sr_tensor *x = tnew(dt, nd, shape);
  for (int64_t i = 0; i < sr_numel(x); i++) set(x, i, scale * urand());
  return x;
}
static sr_tensor *tfill(sr_dtype dt, int nd, const int64_t *shape, double v) {
  sr_tensor *x = tnew(dt, nd, shape);
  for (int64_t i = 0; i < sr_numel(x); i++) set(x, i, v);
  return x;
}
/* a new contiguous tensor of dtype dt holding x's values */
static sr_tensor *tcast(const sr_tensor *x, sr_dtype dt) {
  sr_tensor *y = tnew(dt, x->ndim, x->shape);
  for (int64_t i = 0; i < sr_numel(x); i++) set(y, i, get(x, i));
  return y;
}
static double *vals(const sr_tensor *x) {
  double *v = malloc(sizeof(double) * (size_t)(sr_numel(x) + 1));
  for (int64_t i = 0; i < sr_numel(x); i++) v[i] = get(x, i);
  return v;
}
/* transfers ownership: releases the argument */
static sr_tensor *take(sr_tensor *view, sr_tensor *base) { sr_tensor_release(base); return view; }

static const char *run(sr_kernel_id id, sr_kcall c) { return sr_kernels[id].cpu(&c); }
#define RUN_OK(id, ...)                                                                 \
  do {                                                                                  \
    const char *err_ = run(id, (sr_kcall){__VA_ARGS__});                                \
    CHECK(err_ == NULL, "%s failed: %s", sr_kernels[id].name, err_ ? err_ : "");       \
  } while (0)

static double tol_of(sr_dtype dt) { return dt == SR_F64 ? 1e-12 : dt == SR_F32 ? 2e-6 : 1e-2; }
static bool close_to(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return fabs(a - b) <= tol * (1.0 + fabs(b));
}
/* all n values of x (flat order) close to ref; reports the first miss */
static void check_all(const char *what, const sr_tensor *x, const double *ref, double tol) {
  for (int64_t i = 0; i < sr_numel(x); i++) {
    double a = get(x, i);
    if (!close_to(a, ref[i], tol)) {
      CHECK(0, "%s (%s): element %lld is %.10g, expected %.10g", what, sr_dtype_name(x->dtype), (long long)i, a, ref[i]);
      return;
    }
  }
  checks++;
}

/* the four layouts of the element-wise tests: out and an input view of the same shape */
enum { LAY_CONTIG, LAY_TRANSPOSED, LAY_BROADCAST, LAY_LARGE, LAY_COUNT };
static const char *LAY_NAME[LAY_COUNT] = {"contiguous [1037]", "transposed [7,13]", "broadcast [7,13], strided out", "large [70001]"};

/* a random input in layout lay (values through f, e.g. to keep log's domain positive) */
static sr_tensor *lay_input(int lay, sr_dtype dt, double (*f)(double)) {
  sr_tensor *x;
  switch (lay) {
    case LAY_CONTIG: x = tnew(dt, 1, (int64_t[]){1037}); break;
    case LAY_TRANSPOSED: x = tnew(dt, 2, (int64_t[]){13, 7}); break;
    case LAY_BROADCAST: x = tnew(dt, 2, (int64_t[]){1, 13}); break;
    default: x = tnew(dt, 1, (int64_t[]){70001}); break;
  }
  for (int64_t i = 0; i < sr_numel(x); i++) set(x, i, f(2.0 * urand()));
  if (lay == LAY_TRANSPOSED) return take(sr_transpose(x, 0, 1), x);
  if (lay == LAY_BROADCAST) return take(sr_expand(x, 2, (int64_t[]){7, 13}), x);
  return x;
}
static sr_tensor *lay_output(int lay, sr_dtype dt) {
  if (lay == LAY_BROADCAST) {
    sr_tensor *base = tnew(dt, 2, (int64_t[]){13, 7});
    return take(sr_transpose(base, 0, 1), base);
  }
  if (lay == LAY_TRANSPOSED) return tnew(dt, 2, (int64_t[]){7, 13});
  return tnew(dt, 1, (int64_t[]){lay == LAY_CONTIG ? 1037 : 70001});
}

/* ---------------------------------------------------------------------------------------------
** fill, copy, arange */
static void test_fill_copy_arange(void) {
  /* fill: every dtype; a strided view is filled and nothing else */
  sr_tensor *base = tfill(SR_F32, 2, (int64_t[]){4, 6}, -1.0);
  sr_tensor *col = sr_narrow(base, 1, 2, 3);
  RUN_OK(SR_K_fill, .t = {col}, .nt = 1, .f = {2.5});
  for (int64_t i = 0; i < 24; i++) {
    int64_t j = i % 6;
    CHECK(get(base, i) == (j >= 2 && j < 5 ? 2.5 : -1.0), "fill on a narrow view: element %lld = %g", (long long)i, get(base, i));
  }
  sr_tensor_release(col);
  sr_tensor_release(base);
  sr_dtype all[4] = {SR_F32, SR_F64, SR_BF16, SR_I32};
  for (int d = 0; d < 4; d++) {
    sr_tensor *x = tnew(all[d], 1, (int64_t[]){70001});
    RUN_OK(SR_K_fill, .t = {x}, .nt = 1, .f = {7.0});
    double *v = vals(x);
    int ok = 1;
    for (int64_t i = 0; i < 70001; i++) ok &= v[i] == 7.0;
    CHECK(ok, "fill %s", sr_dtype_name(all[d]));
    free(v);
    sr_tensor_release(x);
  }
  sr_tensor *xi = tnew(SR_I32, 1, (int64_t[]){3});
  const char *e = run(SR_K_fill, (sr_kcall){.t = {xi}, .nt = 1, .f = {NAN}});
  CHECK(e && strstr(e, "cannot be stored as int32"), "fill i32 with NaN must fail, got %s", e ? e : "NULL");

  /* copy: dtype conversions, transposed source, bf16 rounding, float -> i32 truncation */
  sr_tensor *src = tvals(SR_F64, 2, (int64_t[]){2, 3}, (double[]){1.5, -2.7, 3.0, 1.00390625, 1e6, -0.2});
  sr_tensor *srcT = sr_transpose(src, 0, 1);
  sr_tensor *o32 = tnew(SR_F32, 2, (int64_t[]){3, 2}), *obf = tnew(SR_BF16, 2, (int64_t[]){3, 2});
  sr_tensor *oi = tnew(SR_I32, 2, (int64_t[]){3, 2});
  RUN_OK(SR_K_copy, .t = {o32, srcT}, .nt = 2);
  RUN_OK(SR_K_copy, .t = {obf, srcT}, .nt = 2);
  RUN_OK(SR_K_copy, .t = {oi, srcT}, .nt = 2);
  check_all("copy transposed f64->f32", o32, (double[]){1.5, 1.00390625, -2.7, 1e6, 3.0, -0.2}, 1e-7);
  /* bf16 keeps 8 significant bits: 1.00390625 = 1 + 2^-8 rounds to even (1.0); 1e6 -> 999424 */
  check_all("copy f64->bf16", obf, (double[]){1.5, 1.0, -2.703125, 999424.0, 3.0, -0.2001953125}, 0);
  check_all("copy f64->i32 truncates", oi, (double[]){1, 1, -2, 1000000, 3, 0}, 0);
  sr_tensor *back = tnew(SR_F64, 2, (int64_t[]){3, 2});
  RUN_OK(SR_K_copy, .t = {back, oi}, .nt = 2);
  check_all("copy i32->f64", back, (double[]){1, 1, -2, 1000000, 3, 0}, 0);
  set(src, 4, NAN);
  e = run(SR_K_copy, (sr_kcall){.t = {oi, srcT}, .nt = 2});
  CHECK(e && strcmp(e, "value nan at position 3 cannot be stored as int32") == 0, "copy NaN -> i32: %s", e ? e : "NULL");
  set(src, 4, 3e9);
  e = run(SR_K_copy, (sr_kcall){.t = {oi, srcT}, .nt = 2});
  CHECK(e && strstr(e, "position 3"), "copy 3e9 -> i32: %s", e ? e : "NULL");
  /* copy into a broadcast-sourced, strided output across every layout */
  for (int lay = 0; lay < LAY_COUNT; lay++)
    for (int d = 0; d < 3; d++) {
      sr_tensor *x = lay_input(lay, SR_F64, fabs), *y = lay_output(lay, FLOATS[d]);
      RUN_OK(SR_K_copy, .t = {y, x}, .nt = 2);
      double *r = vals(x);
      check_all(LAY_NAME[lay], y, r, d == 0 ? 0 : tol_of(FLOATS[d]));
      free(r);
      sr_tensor_release(x);
      sr_tensor_release(y);
    }
  sr_tensor *list[] = {src, srcT, o32, obf, oi, back, xi};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) sr_tensor_release(list[k]);

  /* arange */
  for (int d = 0; d < 4; d++) {
    sr_tensor *a = tnew(all[d], 1, (int64_t[]){5});
    RUN_OK(SR_K_arange, .t = {a}, .nt = 1, .f = {3.0, -2.0});
    check_all("arange", a, (double[]){3, 1, -1, -3, -5}, 0);
    sr_tensor_release(a);
  }
  sr_tensor *af = tnew(SR_F64, 1, (int64_t[]){4});
  RUN_OK(SR_K_arange, .t = {af}, .nt = 1, .f = {0.5, 0.25});
  check_all("arange fractional", af, (double[]){0.5, 0.75, 1.0, 1.25}, 0);
  sr_tensor_release(af);
}

/* ---------------------------------------------------------------------------------------------
** unary and unary_backward: every sr_unary_fn */

#define UNARY_P 1.7
/* the naive reference, written independently of the kernel (erfc form of GELU, fmax for relu) */
static double ref_unary(int fn, double x, double p) {
  double r;
  switch (fn) {
    case SR_UNARY_NEG: return -x;
    case SR_UNARY_EXP: return exp(x);
    case SR_UNARY_LOG: return log(x);
    case SR_UNARY_TANH: return tanh(x);
    case SR_UNARY_SIGMOID: return exp(x) / (1.0 + exp(x));
    case SR_UNARY_RELU: return isnan(x) ? x : fmax(x, 0.0);
    case SR_UNARY_SQUARE: return x * x;
    case SR_UNARY_SQRT: return sqrt(x);
    case SR_UNARY_RSQRT: return pow(x, -0.5);
    case SR_UNARY_ABS: return x < 0 ? -x : x;
    case SR_UNARY_GELU_ERF: return 0.5 * x * erfc(-x / sqrt(2.0));
    case SR_UNARY_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * pow(x, 3))));
    case SR_UNARY_RELU2: r = isnan(x) ? x : fmax(x, 0.0); return r * r;
    case SR_UNARY_ADD_SCALAR: return x + p;
    case SR_UNARY_MUL_SCALAR: return x * p;
    case SR_UNARY_POW_SCALAR: return pow(x, p);
    case SR_UNARY_RSUB_SCALAR: return p - x;
    case SR_UNARY_RDIV_SCALAR: return p / x;
    case SR_UNARY_SIGN: return isnan(x) ? x : (double)((x > 0) - (x < 0));
    case SR_UNARY_COS: return sin(x + M_PI / 2);
    case SR_UNARY_SIN: return cos(x - M_PI / 2);
  }
  return NAN;
}
static bool positive_domain(int fn) {
  return fn == SR_UNARY_LOG || fn == SR_UNARY_SQRT || fn == SR_UNARY_RSQRT || fn == SR_UNARY_POW_SCALAR ||
         fn == SR_UNARY_RDIV_SCALAR;
}
/* inputs kept 0.1 away from 0 (kinks, poles); positive for the positive-domain functions */
static double away_from_zero(double u) { return u >= 0 ? u + 0.1 : u - 0.1; }
static double positive(double u) { return fabs(u) + 0.1; }

static void test_unary(void) {
  /* hand-computed values */
  struct { int fn; double x, p, y; } hand[] = {
    {SR_UNARY_GELU_ERF, 1.0, 0, 0.8413447460685429}, {SR_UNARY_GELU_ERF, -1.0, 0, -0.15865525393145707},
    {SR_UNARY_GELU_TANH, 1.0, 0, 0.8411919906082768}, {SR_UNARY_SIGMOID, 0.0, 0, 0.5},
    {SR_UNARY_RELU2, -2.0, 0, 0.0}, {SR_UNARY_RELU2, 3.0, 0, 9.0}, {SR_UNARY_RELU, -0.5, 0, 0.0},
    {SR_UNARY_SIGN, -3.0, 0, -1.0}, {SR_UNARY_SIGN, 0.0, 0, 0.0}, {SR_UNARY_RSQRT, 4.0, 0, 0.5},
    {SR_UNARY_POW_SCALAR, 2.0, 3.0, 8.0}, {SR_UNARY_RSUB_SCALAR, 2.0, 5.0, 3.0}, {SR_UNARY_RDIV_SCALAR, 4.0, 2.0, 0.5},
    {SR_UNARY_ADD_SCALAR, 1.0, 2.5, 3.5}, {SR_UNARY_MUL_SCALAR, 3.0, -2.0, -6.0}, {SR_UNARY_TANH, 0.5, 0, 0.46211715726000974},
    {SR_UNARY_RELU, NAN, 0, NAN}, {SR_UNARY_RELU2, NAN, 0, NAN}, {SR_UNARY_SIGN, NAN, 0, NAN}, {SR_UNARY_ABS, NAN, 0, NAN},
    {SR_UNARY_GELU_ERF, NAN, 0, NAN}, {SR_UNARY_LOG, -1.0, 0, NAN}, {SR_UNARY_EXP, 1000.0, 0, INFINITY},
    {SR_UNARY_COS, 0.0, 0, 1.0}, {SR_UNARY_SIN, 0.0, 0, 0.0}, {SR_UNARY_COS, 1.0, 0, 0.5403023058681398},
    {SR_UNARY_SIN, 1.0, 0, 0.8414709848078965}, {SR_UNARY_COS, 65535.0, 0, 0.19234401860586398},
  };
  for (size_t h = 0; h < sizeof hand / sizeof *hand; h++) {
    sr_tensor *x = tvals(SR_F64, 1, (int64_t[]){1}, &hand[h].x), *y = tnew(SR_F64, 1, (int64_t[]){1});
    RUN_OK(SR_K_unary, .t = {y, x}, .nt = 2, .i = {hand[h].fn}, .f = {hand[h].p});
    CHECK(close_to(get(y, 0), hand[h].y, 1e-15), "%s(%g; %g) = %.17g, expected %.17g", sr_unary_name(hand[h].fn), hand[h].x,
          hand[h].p, get(y, 0), hand[h].y);
    sr_tensor_release(x);
    sr_tensor_release(y);
  }
  /* hand-computed gradients: subgradient 0 at the kinks */
  struct { int fn; double x, dx; } dhand[] = {
    {SR_UNARY_RELU, 0.0, 0.0}, {SR_UNARY_ABS, 0.0, 0.0}, {SR_UNARY_SIGN, 0.0, 0.0}, {SR_UNARY_SIGN, 2.0, 0.0},
    {SR_UNARY_RELU2, 0.0, 0.0}, {SR_UNARY_RELU2, 1.5, 3.0}, {SR_UNARY_RELU, NAN, NAN},
    {SR_UNARY_GELU_ERF, 0.0, 0.5}, {SR_UNARY_GELU_TANH, 0.0, 0.5}, {SR_UNARY_SIGMOID, 0.0, 0.25},
    {SR_UNARY_COS, 0.0, -0.0}, {SR_UNARY_SIN, 0.0, 1.0},
  };
  for (size_t h = 0; h < sizeof dhand / sizeof *dhand; h++) {
    sr_tensor *x = tvals(SR_F64, 1, (int64_t[]){1}, &dhand[h].x), *dy = tfill(SR_F64, 1, (int64_t[]){1}, 1.0);
    sr_tensor *dx = tnew(SR_F64, 1, (int64_t[]){1});
    RUN_OK(SR_K_unary_backward, .t = {dx, dy, x}, .nt = 3, .i = {dhand[h].fn});
    CHECK(close_to(get(dx, 0), dhand[h].dx, 1e-15), "%s'(%g) = %.17g, expected %.17g", sr_unary_name(dhand[h].fn), dhand[h].x,
          get(dx, 0), dhand[h].dx);
    sr_tensor_release(x);
    sr_tensor_release(dy);
    sr_tensor_release(dx);
  }
  /* i1 = 1: the gradient from the output y = f(x) equals the gradient from x (tanh, sigmoid, exp);
  ** refused for the other functions */
  for (int fn = 0; fn < SR_UNARY_COUNT; fn++) {
    double xs[5] = {-2.5, -0.3, 0.0, 0.7, 3.0}, ys[5];
    for (int k = 0; k < 5; k++) ys[k] = ref_unary(fn, xs[k], 0);
    sr_tensor *x = tvals(SR_F64, 1, (int64_t[]){5}, xs), *y = tvals(SR_F64, 1, (int64_t[]){5}, ys);
    sr_tensor *dy = tfill(SR_F64, 1, (int64_t[]){5}, 1.5), *dx = tnew(SR_F64, 1, (int64_t[]){5});
    sr_tensor *dxy = tnew(SR_F64, 1, (int64_t[]){5});
    if (sr_unary_output_grad(fn)) {
      RUN_OK(SR_K_unary_backward, .t = {dx, dy, x}, .nt = 3, .i = {fn});
      RUN_OK(SR_K_unary_backward, .t = {dxy, dy, y}, .nt = 3, .i = {fn, 1});
      for (int k = 0; k < 5; k++)
        CHECK(close_to(get(dxy, k), get(dx, k), 1e-14), "%s' from y at %g = %.17g, from x %.17g", sr_unary_name(fn), xs[k],
              get(dxy, k), get(dx, k));
      RUN_OK(SR_K_unary_backward, .t = {dy, dy, y}, .nt = 3, .i = {fn, 1});  /* dx over dy */
      check_all("unary_backward from y, dx over dy", dy, (double[]){get(dx, 0), get(dx, 1), get(dx, 2), get(dx, 3), get(dx, 4)}, 1e-14);
    } else {
      const char *e = run(SR_K_unary_backward, (sr_kcall){.t = {dx, dy, y}, .nt = 3, .i = {fn, 1}});
      CHECK(e && strstr(e, "needs tanh, sigmoid or exp"), "%s from y: %s", sr_unary_name(fn), e ? e : "no error");
    }
    sr_tensor *list[] = {x, y, dy, dx, dxy};
    for (int k = 0; k < 5; k++) sr_tensor_release(list[k]);
  }
  /* every function, layout and dtype against the naive reference; backward against central
  ** differences of the reference in double */
  for (int fn = 0; fn < SR_UNARY_COUNT; fn++)
    for (int lay = 0; lay < LAY_COUNT; lay++)
      for (int d = 0; d < 3; d++) {
        sr_dtype dt = FLOATS[d];
        sr_tensor *x = lay_input(lay, dt, positive_domain(fn) ? positive : away_from_zero);
        sr_tensor *y = lay_output(lay, dt), *dx = lay_output(lay, dt);
        sr_tensor *dy = lay_input(lay, dt, away_from_zero);
        RUN_OK(SR_K_unary, .t = {y, x}, .nt = 2, .i = {fn}, .f = {UNARY_P});
        RUN_OK(SR_K_unary_backward, .t = {dx, dy, x}, .nt = 3, .i = {fn}, .f = {UNARY_P});
        int64_t n = sr_numel(y);
        double *ry = malloc(sizeof(double) * (size_t)n), *rdx = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
          double xv = get(x, i), h = 1e-6 * fmax(1.0, fabs(xv));
          ry[i] = ref_unary(fn, xv, UNARY_P);
          rdx[i] = get(dy, i) * (ref_unary(fn, xv + h, UNARY_P) - ref_unary(fn, xv - h, UNARY_P)) / (2 * h);
        }
        char what[128];
        snprintf(what, sizeof what, "unary %s, %s", sr_unary_name(fn), LAY_NAME[lay]);
        check_all(what, y, ry, tol_of(dt));
        snprintf(what, sizeof what, "unary_backward %s, %s", sr_unary_name(fn), LAY_NAME[lay]);
        check_all(what, dx, rdx, dt == SR_F64 ? 1e-7 : tol_of(dt) * 5);
        free(ry);
        free(rdx);
        sr_tensor *list[] = {x, y, dx, dy};
        for (int k = 0; k < 4; k++) sr_tensor_release(list[k]);
      }
  /* an int32 input is refused with a message */
  sr_tensor *xi = tnew(SR_I32, 1, (int64_t[]){2}), *yf = tnew(SR_F32, 1, (int64_t[]){2});
  const char *e = run(SR_K_unary, (sr_kcall){.t = {yf, xi}, .nt = 2, .i = {SR_UNARY_EXP}});
  CHECK(e && strstr(e, "argument 2: dtype int32 is not supported"), "unary on int32: %s", e ? e : "NULL");
  e = run(SR_K_unary, (sr_kcall){.t = {yf, yf}, .nt = 2, .i = {SR_UNARY_COUNT}});
  CHECK(e && strstr(e, "unknown unary function"), "unknown unary fn: %s", e ? e : "NULL");
  sr_tensor_release(xi);
  sr_tensor_release(yf);
}

/* ---------------------------------------------------------------------------------------------
** binary and where */
static double ref_binary(int fn, double a, double b) {
  switch (fn) {
    case SR_BINARY_ADD: return a + b;
    case SR_BINARY_SUB: return a - b;
    case SR_BINARY_MUL: return a * b;
    case SR_BINARY_DIV: return a / b;
    case SR_BINARY_POW: return pow(a, b);
    case SR_BINARY_MAX: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
    case SR_BINARY_MIN: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
    case SR_BINARY_EQ: return a == b ? 1 : 0;
    case SR_BINARY_NE: return a != b ? 1 : 0;
    case SR_BINARY_LT: return a < b ? 1 : 0;
    case SR_BINARY_LE: return a <= b ? 1 : 0;
    case SR_BINARY_GT: return a > b ? 1 : 0;
    case SR_BINARY_GE: return a >= b ? 1 : 0;
  }
  return NAN;
}

static void test_binary_where(void) {
  /* hand-computed, NaN propagation in maximum/minimum from either side */
  sr_tensor *a = tvals(SR_F64, 1, (int64_t[]){4}, (double[]){1, NAN, 3, -2});
  sr_tensor *b = tvals(SR_F64, 1, (int64_t[]){4}, (double[]){2, 5, NAN, -4});
  sr_tensor *y = tnew(SR_F64, 1, (int64_t[]){4});
  RUN_OK(SR_K_binary, .t = {y, a, b}, .nt = 3, .i = {SR_BINARY_MAX});
  check_all("maximum with NaN", y, (double[]){2, NAN, NAN, -2}, 0);
  RUN_OK(SR_K_binary, .t = {y, a, b}, .nt = 3, .i = {SR_BINARY_MIN});
  check_all("minimum with NaN", y, (double[]){1, NAN, NAN, -4}, 0);
  RUN_OK(SR_K_binary, .t = {y, a, b}, .nt = 3, .i = {SR_BINARY_POW});
  check_all("pow", y, (double[]){1, NAN, NAN, 1.0 / 16}, 0);
  double cmp[6][4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {1, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 1}};
  for (int fn = SR_BINARY_EQ; fn <= SR_BINARY_GE; fn++) {  /* comparisons with NaN are false, ne true */
    RUN_OK(SR_K_binary, .t = {y, a, b}, .nt = 3, .i = {fn});
    check_all(sr_binary_name(fn), y, cmp[fn - SR_BINARY_EQ], 0);
  }
  /* int32: exact, wrapping, truncating division, an error on a zero divisor */
  sr_tensor *ja = tvals(SR_I32, 1, (int64_t[]){4}, (double[]){7, -7, 2147483647, 5});
  sr_tensor *jb = tvals(SR_I32, 1, (int64_t[]){4}, (double[]){2, 2, 1, 5});
  sr_tensor *jo = tnew(SR_I32, 1, (int64_t[]){4});
  RUN_OK(SR_K_binary, .t = {jo, ja, jb}, .nt = 3, .i = {SR_BINARY_ADD});
  check_all("i32 add wraps", jo, (double[]){9, -5, -2147483648.0, 10}, 0);
  RUN_OK(SR_K_binary, .t = {jo, ja, jb}, .nt = 3, .i = {SR_BINARY_DIV});
  check_all("i32 div truncates", jo, (double[]){3, -3, 2147483647, 1}, 0);
  RUN_OK(SR_K_binary, .t = {jo, ja, jb}, .nt = 3, .i = {SR_BINARY_GE});
  check_all("i32 ge", jo, (double[]){1, 0, 1, 1}, 0);
  set(jb, 2, 0);
  const char *e = run(SR_K_binary, (sr_kcall){.t = {jo, ja, jb}, .nt = 3, .i = {SR_BINARY_DIV}});
  CHECK(e && strcmp(e, "integer division by zero at position 2") == 0, "i32 division by zero: %s", e ? e : "NULL");
  sr_tensor_release(ja);
  sr_tensor_release(jb);
  sr_tensor_release(jo);
  sr_tensor_release(a);
  sr_tensor_release(b);
  sr_tensor_release(y);
  /* every function, layout and dtype; b is broadcast along the other axis in the 2-D layouts */
  for (int fn = 0; fn < SR_BINARY_COUNT; fn++)
    for (int lay = 0; lay < LAY_COUNT; lay++)
      for (int d = 0; d < 3; d++) {
        sr_dtype dt = FLOATS[d];
        sr_tensor *av = lay_input(lay, dt, fn == SR_BINARY_POW ? positive : away_from_zero);
        sr_tensor *bv;
        if (lay == LAY_TRANSPOSED || lay == LAY_BROADCAST) {
          sr_tensor *col = trand(dt, 2, (int64_t[]){7, 1}, 2.0);
          bv = take(sr_expand(col, 2, (int64_t[]){7, 13}), col);
        } else {
          bv = lay_input(lay, dt, away_from_zero);
        }
        sr_tensor *out = lay_output(lay, dt);
        RUN_OK(SR_K_binary, .t = {out, av, bv}, .nt = 3, .i = {fn});
        int64_t n = sr_numel(out);
        double *r = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++) r[i] = ref_binary(fn, get(av, i), get(bv, i));
        char what[128];
        snprintf(what, sizeof what, "binary %s, %s", sr_binary_name(fn), LAY_NAME[lay]);
        check_all(what, out, r, tol_of(dt));
        free(r);
        sr_tensor_release(av);
        sr_tensor_release(bv);
        sr_tensor_release(out);
      }
  /* where: cond of several dtypes (NaN counts as true), broadcast condition, i32 values */
  sr_tensor *cond = tvals(SR_F32, 2, (int64_t[]){1, 4}, (double[]){0, 1, NAN, -2});
  sr_tensor *ce = sr_expand(cond, 2, (int64_t[]){3, 4});
  sr_tensor *wa = tvals(SR_F64, 2, (int64_t[]){3, 4}, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  sr_tensor *wb = tfill(SR_F64, 2, (int64_t[]){3, 4}, -1);
  sr_tensor *wo = tnew(SR_BF16, 2, (int64_t[]){3, 4});
  RUN_OK(SR_K_where, .t = {wo, ce, wa, wb}, .nt = 4);
  check_all("where", wo, (double[]){-1, 2, 3, 4, -1, 6, 7, 8, -1, 10, 11, 12}, 0);
  sr_tensor *ci = tvals(SR_I32, 2, (int64_t[]){3, 4}, (double[]){1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1});
  sr_tensor *ia = tcast(wa, SR_I32), *ib = tcast(wb, SR_I32), *io = tnew(SR_I32, 2, (int64_t[]){3, 4});
  RUN_OK(SR_K_where, .t = {io, ci, ia, ib}, .nt = 4);
  check_all("where i32", io, (double[]){1, -1, -1, 4, -1, -1, -1, -1, 9, 10, 11, 12}, 0);
  sr_tensor *bigc = lay_input(LAY_LARGE, SR_F32, away_from_zero), *biga = lay_input(LAY_LARGE, SR_F64, away_from_zero);
  sr_tensor *bigb = lay_input(LAY_LARGE, SR_BF16, away_from_zero), *bigo = lay_output(LAY_LARGE, SR_F32);
  double *r = malloc(sizeof(double) * 70001);
  for (int64_t i = 0; i < 70001; i++) set(bigc, i, get(bigc, i) > 0);
  for (int64_t i = 0; i < 70001; i++) r[i] = get(bigc, i) != 0 ? get(biga, i) : get(bigb, i);
  RUN_OK(SR_K_where, .t = {bigo, bigc, biga, bigb}, .nt = 4);
  check_all("where large", bigo, r, 1e-7);
  free(r);
  sr_tensor *list[] = {cond, ce, wa, wb, wo, ci, ia, ib, io, bigc, biga, bigb, bigo};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) sr_tensor_release(list[k]);
}

/* ---------------------------------------------------------------------------------------------
** reduce */
static void ref_reduce(int fn, const sr_tensor *x, int dim, double *res, double *arg) {
  int64_t outer = 1, n = x->shape[dim], inner = 1;
  for (int d = 0; d < dim; d++) outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      double acc = fn == SR_REDUCE_MAX ? -INFINITY : 0;
      int64_t am = 0;
      for (int64_t k = 0; k < n; k++) {
        double v = get(x, (o * n + k) * inner + j);
        if (fn == SR_REDUCE_MAX) {
          if (isnan(v) && !isnan(acc)) { acc = v; am = k; }
          else if (v > acc) { acc = v; am = k; }
        } else acc += fn == SR_REDUCE_SUMSQ ? v * v : v;
      }
      res[o * inner + j] = fn == SR_REDUCE_MEAN ? acc / (double)n : acc;
      arg[o * inner + j] = (double)am;
    }
}

static void test_reduce(void) {
  /* hand-computed: first index on ties, NaN wins max */
  sr_tensor *x = tvals(SR_F32, 2, (int64_t[]){2, 3}, (double[]){1, 3, 3, NAN, 2, 5});
  sr_tensor *mx = tnew(SR_F32, 2, (int64_t[]){2, 1}), *ix = tnew(SR_I32, 2, (int64_t[]){2, 1});
  RUN_OK(SR_K_reduce, .t = {mx, x, ix}, .nt = 3, .i = {SR_REDUCE_MAX, 1});
  check_all("max rows", mx, (double[]){3, NAN}, 0);
  check_all("argmax rows", ix, (double[]){1, 0}, 0);
  sr_tensor *s = tnew(SR_F64, 2, (int64_t[]){1, 3});
  RUN_OK(SR_K_reduce, .t = {s, x}, .nt = 2, .i = {SR_REDUCE_SUM, 0});
  check_all("sum cols", s, (double[]){NAN, 5, 8}, 0);
  RUN_OK(SR_K_reduce, .t = {s, x}, .nt = 2, .i = {SR_REDUCE_SUMSQ, 0});
  check_all("sumsq cols", s, (double[]){NAN, 13, 34}, 0);
  sr_tensor *m = tnew(SR_F64, 2, (int64_t[]){2, 1});
  set(x, 3, 4);
  RUN_OK(SR_K_reduce, .t = {m, x}, .nt = 2, .i = {SR_REDUCE_MEAN, 1});
  check_all("mean rows", m, (double[]){7.0 / 3, 11.0 / 3}, 1e-15);
  /* a long row reduces in several blocks: ties keep the first index, a NaN in a later block wins */
  sr_tensor *lr = tfill(SR_F32, 1, (int64_t[]){140000}, 0), *lm = tnew(SR_F32, 1, (int64_t[]){1});
  sr_tensor *li = tnew(SR_I32, 1, (int64_t[]){1});
  set(lr, 100, 5);
  set(lr, 70000, 5);
  RUN_OK(SR_K_reduce, .t = {lm, lr, li}, .nt = 3, .i = {SR_REDUCE_MAX, 0});
  CHECK(get(lm, 0) == 5 && get(li, 0) == 100, "long-row max %g at %g, expected 5 at 100", get(lm, 0), get(li, 0));
  set(lr, 130000, NAN);
  RUN_OK(SR_K_reduce, .t = {lm, lr, li}, .nt = 3, .i = {SR_REDUCE_MAX, 0});
  CHECK(isnan(get(lm, 0)) && get(li, 0) == 130000, "long-row max %g at %g, expected NaN at 130000", get(lm, 0), get(li, 0));
  sr_tensor *list[] = {x, mx, ix, s, m, lr, lm, li};
  for (int k = 0; k < 8; k++) sr_tensor_release(list[k]);

  /* every fn, dim, dtype; contiguous and permuted inputs; large shapes for the chunked paths */
  struct { int nd; int64_t shape[3]; int permuted; } cases[] = {
    {3, {3, 5, 7}, 0}, {3, {3, 5, 7}, 1}, {3, {2, 3000, 40}, 0}, {1, {40000}, 0}, {2, {1100, 3}, 1}, {1, {150001}, 0},
  };
  for (size_t cs = 0; cs < sizeof cases / sizeof *cases; cs++)
    for (int fn = 0; fn < SR_REDUCE_COUNT; fn++)
      for (int d = 0; d < 3; d++)
        for (int dim = 0; dim < cases[cs].nd; dim++) {
          sr_dtype dt = FLOATS[d];
          sr_tensor *xv;
          if (cases[cs].permuted) {  /* same logical shape, reversed memory order */
            int64_t rs[3];
            for (int q = 0; q < cases[cs].nd; q++) rs[q] = cases[cs].shape[cases[cs].nd - 1 - q];
            sr_tensor *raw = trand(dt, cases[cs].nd, rs, 3.0);
            xv = take(sr_transpose(raw, 0, cases[cs].nd - 1), raw);
          } else {
            xv = trand(dt, cases[cs].nd, cases[cs].shape, 3.0);
          }
          int64_t os[3];
          memcpy(os, xv->shape, sizeof os);
          os[dim] = 1;
          sr_tensor *out = tnew(dt, cases[cs].nd, os), *idx = tnew(SR_I32, cases[cs].nd, os);
          RUN_OK(SR_K_reduce, .t = {out, xv, idx}, .nt = 3, .i = {fn, dim});
          int64_t no = sr_numel(out);
          double *r = malloc(sizeof(double) * (size_t)no), *ra = malloc(sizeof(double) * (size_t)no);
          ref_reduce(fn, xv, dim, r, ra);
          char what[160];
          snprintf(what, sizeof what, "reduce %d over dim %d of case %zu", fn, dim, cs);
          check_all(what, out, r, dt == SR_F64 ? 1e-12 : dt == SR_F32 ? 1e-6 : 1e-2);
          if (fn == SR_REDUCE_MAX) check_all(what, idx, ra, 0);
          free(r);
          free(ra);
          sr_tensor_release(xv);
          sr_tensor_release(out);
          sr_tensor_release(idx);
        }
}

/* ---------------------------------------------------------------------------------------------
** gemm */
typedef struct { int64_t B, M, N, K; } gemm_case;

/* a [B,rows,cols] operand (row stride cols+pad via narrow), batch-broadcast from 1 when bcast */
static sr_tensor *gemm_input(sr_dtype dt, int64_t B, int64_t rows, int64_t cols, int pad, int bcast) {
  sr_tensor *raw = trand(dt, 3, (int64_t[]){bcast ? 1 : B, rows, cols + pad}, 1.0);
  sr_tensor *v = take(sr_narrow(raw, 2, 0, cols), raw);
  if (bcast) v = take(sr_expand(v, 3, (int64_t[]){B, rows, cols}), v);
  return v;
}

static void test_gemm(void) {
  gemm_case cases[] = {{1, 1, 1, 1}, {1, 7, 13, 5}, {2, 33, 65, 17}, {1, 130, 67, 300}, {1, 20, 2100, 9}, {3, 10, 40, 12}, {2, 4, 3, 0}};
  for (size_t cs = 0; cs < sizeof cases / sizeof *cases; cs++)
    for (int tr = 0; tr < 4; tr++)
      for (int d = 0; d < 3; d++) {
        sr_dtype dt = FLOATS[d];
        gemm_case g = cases[cs];
        int ta = tr & 1, tb = tr >> 1, pad = (int)(cs % 3), bcast = g.B > 2;
        sr_tensor *a = ta ? gemm_input(dt, g.B, g.K, g.M, pad, 0) : gemm_input(dt, g.B, g.M, g.K, pad, 0);
        sr_tensor *b = tb ? gemm_input(dt, g.B, g.N, g.K, 1, bcast) : gemm_input(dt, g.B, g.K, g.N, 1, bcast);
        sr_tensor *out = trand(dt, 3, (int64_t[]){g.B, g.M, g.N}, 1.0);
        int64_t no = g.B * g.M * g.N;
        double alpha = 0.5, beta = cs % 2 ? 0.25 : 0.0;
        double *r = malloc(sizeof(double) * (size_t)(no + 1)), *mag = malloc(sizeof(double) * (size_t)(no + 1));
        for (int64_t bi = 0; bi < g.B; bi++)
          for (int64_t i = 0; i < g.M; i++)
            for (int64_t j = 0; j < g.N; j++) {
              double acc = 0, am = 0;
              for (int64_t k = 0; k < g.K; k++) {
                double av = ta ? get(a, (bi * g.K + k) * g.M + i) : get(a, (bi * g.M + i) * g.K + k);
                double bv = tb ? get(b, (bi * g.N + j) * g.K + k) : get(b, (bi * g.K + k) * g.N + j);
                acc += av * bv;
                am += fabs(av * bv);
              }
              int64_t o = (bi * g.M + i) * g.N + j;
              r[o] = alpha * acc + beta * get(out, o);
              mag[o] = alpha * am + fabs(beta * get(out, o));
            }
        if (beta == 0)  /* beta == 0 must not read out */
          for (int64_t o = 0; o < no; o++) set(out, o, NAN);
        RUN_OK(SR_K_gemm, .t = {out, a, b}, .nt = 3, .i = {ta, tb}, .f = {alpha, beta});
        double eps = dt == SR_F64 ? 1e-15 : dt == SR_F32 ? 1e-5 : 1e-2;
        for (int64_t o = 0; o < no; o++) {
          double v = get(out, o);
          if (!(fabs(v - r[o]) <= eps * (mag[o] + fabs(r[o])) + 1e-30)) {
            CHECK(0, "gemm B=%lld M=%lld N=%lld K=%lld ta=%d tb=%d %s: element %lld is %.9g, expected %.9g", (long long)g.B,
                  (long long)g.M, (long long)g.N, (long long)g.K, ta, tb, sr_dtype_name(dt), (long long)o, v, r[o]);
            break;
          }
        }
        checks++;
        free(r);
        free(mag);
        sr_tensor_release(a);
        sr_tensor_release(b);
        sr_tensor_release(out);
      }
  /* a B operand over the packing limit (16M floats) goes through column super-blocks */
  {
    int64_t M = 3, N = 28001, K = 600;
    sr_tensor *a = trand(SR_F32, 3, (int64_t[]){1, M, K}, 1), *b = trand(SR_BF16, 3, (int64_t[]){1, N, K}, 1);
    sr_tensor *y = tnew(SR_F32, 3, (int64_t[]){1, M, N});
    RUN_OK(SR_K_gemm, .t = {y, a, b}, .nt = 3, .i = {0, 1}, .f = {1.0, 0.0});
    const float *ap = sr_data(a);
    const uint16_t *bp = sr_data(b);
    int ok = 1;
    for (int64_t i = 0; i < M && ok; i++)
      for (int64_t j = 0; j < N && ok; j++) {
        double acc = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          double t = ap[i * K + k] * (double)sr_bf16_to_f32(bp[j * K + k]);
          acc += t;
          mag += fabs(t);
        }
        ok = fabs(get(y, i * N + j) - acc) <= 1e-5 * mag;
        if (!ok) CHECK(0, "gemm super-blocks: element (%lld, %lld) is %g, expected %g", (long long)i, (long long)j, get(y, i * N + j), acc);
      }
    checks++;
    sr_tensor_release(a);
    sr_tensor_release(b);
    sr_tensor_release(y);
  }
  /* 2-D operands are one batch: hand-computed [2,3] @ [3,2] */
  sr_tensor *a = tvals(SR_F32, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
  sr_tensor *b = tvals(SR_F32, 2, (int64_t[]){3, 2}, (double[]){7, 8, 9, 10, 11, 12});
  sr_tensor *y = tnew(SR_F32, 2, (int64_t[]){2, 2});
  RUN_OK(SR_K_gemm, .t = {y, a, b}, .nt = 3, .f = {1.0, 0.0});
  check_all("gemm 2-D", y, (double[]){58, 64, 139, 154}, 0);
  sr_tensor_release(a);
  sr_tensor_release(b);
  sr_tensor_release(y);
}

/* ---------------------------------------------------------------------------------------------
** finite differences: d(sum_i out_i * R_i)/dx for an f64 input, by central differences */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(loss_fn f, void *ctx, sr_tensor *x, double *g) {
  for (int64_t i = 0; i < sr_numel(x); i++) {
    double v = get(x, i), h = 1e-6;
    set(x, i, v + h);
    double lp = f(ctx);
    set(x, i, v - h);
    double lm = f(ctx);
    set(x, i, v);
    g[i] = (lp - lm) / (2 * h);
  }
}
static double weighted_sum(const sr_tensor *y, const sr_tensor *R) {
  double s = 0;
  for (int64_t i = 0; i < sr_numel(y); i++) s += get(y, i) * get(R, i);
  return s;
}
/* x's analytic gradient ga (minus a starting value when accumulated) against finite differences */
static void check_grad(const char *what, loss_fn f, void *ctx, sr_tensor *x, const sr_tensor *ga, const double *start) {
  int64_t n = sr_numel(x);
  double *g = malloc(sizeof(double) * (size_t)n), *a = malloc(sizeof(double) * (size_t)n);
  fd_grad(f, ctx, x, g);
  for (int64_t i = 0; i < n; i++) a[i] = get(ga, i) - (start ? start[i] : 0);
  for (int64_t i = 0; i < n; i++)
    if (fabs(a[i] - g[i]) > 1e-6 * (1 + fabs(g[i]))) {
      CHECK(0, "%s: gradient element %lld is %.10g, finite differences give %.10g", what, (long long)i, a[i], g[i]);
      break;
    }
  checks++;
  free(g);
  free(a);
}

/* ---------------------------------------------------------------------------------------------
** embedding */
static void test_embedding(void) {
  sr_tensor *w = tvals(SR_F32, 2, (int64_t[]){4, 2}, (double[]){0, 1, 10, 11, 20, 21, 30, 31});
  sr_tensor *idx = tvals(SR_I32, 1, (int64_t[]){5}, (double[]){3, 0, 3, 1, 3});
  sr_tensor *out = tnew(SR_F32, 2, (int64_t[]){5, 2}), *outd = tnew(SR_F64, 2, (int64_t[]){5, 2});
  RUN_OK(SR_K_embedding, .t = {out, w, idx}, .nt = 3);
  RUN_OK(SR_K_embedding, .t = {outd, w, idx}, .nt = 3);
  double want[10] = {30, 31, 0, 1, 30, 31, 10, 11, 30, 31};
  check_all("embedding", out, want, 0);
  check_all("embedding f32 -> f64", outd, want, 0);
  sr_tensor *dout = tvals(SR_F32, 2, (int64_t[]){5, 2}, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  sr_tensor *dw = tfill(SR_F32, 2, (int64_t[]){4, 2}, 0.5);
  RUN_OK(SR_K_embedding_backward, .t = {dw, dout, idx}, .nt = 3);
  check_all("embedding_backward (+=, duplicates summed)", dw, (double[]){3.5, 4.5, 7.5, 8.5, 0.5, 0.5, 15.5, 18.5}, 0);
  /* out of range: the exact message, and nothing written */
  sr_tensor *big = tfill(SR_F32, 2, (int64_t[]){50257, 1}, 0);
  sr_tensor *bad = tvals(SR_I32, 1, (int64_t[]){5}, (double[]){1, 2, 3, 70000, 4});
  sr_tensor *bo = tfill(SR_F32, 2, (int64_t[]){5, 1}, -1), *bd = tfill(SR_F32, 2, (int64_t[]){5, 1}, 1);
  const char *e = run(SR_K_embedding, (sr_kcall){.t = {bo, big, bad}, .nt = 3});
  CHECK(e && strcmp(e, "index 70000 out of range [0, 50257) at position 3") == 0, "embedding bad index: %s", e ? e : "NULL");
  CHECK(get(bo, 0) == -1, "embedding wrote before failing");
  set(bad, 3, -1);
  e = run(SR_K_embedding_backward, (sr_kcall){.t = {big, bd, bad}, .nt = 3});
  CHECK(e && strcmp(e, "index -1 out of range [0, 50257) at position 3") == 0, "embedding_backward bad index: %s", e ? e : "NULL");
  sr_tensor *fidx = tnew(SR_F32, 1, (int64_t[]){5});
  e = run(SR_K_embedding, (sr_kcall){.t = {bo, big, fidx}, .nt = 3});
  CHECK(e && strstr(e, "indices must be int32"), "embedding float indices: %s", e ? e : "NULL");
  /* bf16 / f64 tables, larger random case against the naive reference */
  for (int d = 0; d < 3; d++) {
    int64_t V = 97, C = 131, N = 300;
    sr_tensor *tw = trand(FLOATS[d], 2, (int64_t[]){V, C}, 1), *ti = tnew(SR_I32, 1, &N);
    for (int64_t n = 0; n < N; n++) set(ti, n, (double)((n * 37) % V));
    sr_tensor *to = tnew(FLOATS[d], 2, (int64_t[]){N, C}), *tg = trand(FLOATS[d], 2, (int64_t[]){N, C}, 1);
    sr_tensor *tdw = trand(SR_F64, 2, (int64_t[]){V, C}, 1);
    double *r = malloc(sizeof(double) * (size_t)(N * C)), *rdw = vals(tdw);
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++) {
        int64_t v = (int64_t)get(ti, n);
        r[n * C + c] = get(tw, v * C + c);
        rdw[v * C + c] += get(tg, n * C + c);
      }
    RUN_OK(SR_K_embedding, .t = {to, tw, ti}, .nt = 3);
    RUN_OK(SR_K_embedding_backward, .t = {tdw, tg, ti}, .nt = 3);
    check_all("embedding random", to, r, 0);
    check_all("embedding_backward random", tdw, rdw, 1e-14);
    free(r);
    free(rdw);
    sr_tensor *list[] = {tw, ti, to, tg, tdw};
    for (int k = 0; k < 5; k++) sr_tensor_release(list[k]);
  }
  sr_tensor *list[] = {w, idx, out, outd, dout, dw, big, bad, bo, bd, fidx};
  for (size_t k = 0; k < sizeof list / sizeof *list; k++) sr_tensor_release(list[k]);
}

/* ---------------------------------------------------------------------------------------------
** rms_norm and layer_norm */
typedef struct { sr_tensor *out, *mean, *rstd, *x, *w, *b, *R; int layer; double eps; } norm_ctx;
static void norm_forward(norm_ctx *c) {
  if (c->layer) RUN_OK(SR_K_layer_norm, .t = {c->out, c->mean, c->rstd, c->x, c->w, c->b}, .nt = 6, .f = {c->eps});
  else RUN_OK(SR_K_rms_norm, .t = {c->out, c->rstd, c->x, c->w}, .nt = 4, .f = {c->eps});
}
static double norm_loss(void *p) {
  norm_ctx *c = p;
  norm_forward(c);
  return weighted_sum(c->out, c->R);
}

static void test_norms(void) {
  /* hand-computed rms_norm: x = [3, 4], ms = 12.5 */
  sr_tensor *x = tvals(SR_F64, 2, (int64_t[]){1, 2}, (double[]){3, 4}), *o = tnew(SR_F64, 2, (int64_t[]){1, 2});
  sr_tensor *rs = tnew(SR_F32, 1, (int64_t[]){1}), *mu = tnew(SR_F32, 1, (int64_t[]){1});
  sr_tensor *w = tvals(SR_F64, 1, (int64_t[]){2}, (double[]){2, -1});
  RUN_OK(SR_K_rms_norm, .t = {o, rs, x, w}, .nt = 4, .f = {0.0});
  check_all("rms_norm hand", o, (double[]){6 / sqrt(12.5), -4 / sqrt(12.5)}, 1e-15);
  check_all("rms_norm rstd hand", rs, (double[]){1 / sqrt(12.5)}, 1e-7);
  RUN_OK(SR_K_layer_norm, .t = {o, mu, rs, x, NULL, NULL}, .nt = 6, .f = {0.0});
  check_all("layer_norm hand", o, (double[]){-1, 1}, 1e-15);
  check_all("layer_norm mean hand", mu, (double[]){3.5}, 0);
  sr_tensor *list[] = {x, o, rs, mu, w};
  for (int k = 0; k < 5; k++) sr_tensor_release(list[k]);

  /* naive forward reference at several shapes and dtypes, with and without affine params */
  int64_t shapes[][2] = {{6, 37}, {300, 300}, {3, 1}};
  for (int layer = 0; layer < 2; layer++)
    for (int s = 0; s < 3; s++)
      for (int d = 0; d < 3; d++)
        for (int affine = 0; affine < 2; affine++) {
          int64_t N = shapes[s][0], C = shapes[s][1];
          sr_dtype dt = FLOATS[d];
          norm_ctx c = {.x = trand(dt, 2, (int64_t[]){N, C}, 2), .out = tnew(dt, 2, (int64_t[]){N, C}),
                        .mean = tnew(SR_F32, 1, &N), .rstd = tnew(SR_F32, 1, &N), .layer = layer, .eps = 1e-5};
          if (affine) { c.w = trand(dt, 1, &C, 1); c.b = layer ? trand(dt, 1, &C, 1) : NULL; }
          for (int64_t j = 0; j < C; j++) set(c.x, j, get(c.x, j) + 5);  /* a row with a large mean */
          norm_forward(&c);
          double *r = malloc(sizeof(double) * (size_t)(N * C)), *rr = malloc(sizeof(double) * (size_t)N);
          for (int64_t n = 0; n < N; n++) {
            double m = 0, v = 0;
            for (int64_t j = 0; j < C; j++) m += get(c.x, n * C + j) / (double)C;
            for (int64_t j = 0; j < C; j++) {
              double xc = get(c.x, n * C + j) - (layer ? m : 0);
              v += xc * xc / (double)C;
            }
            rr[n] = 1 / sqrt(v + 1e-5);
            for (int64_t j = 0; j < C; j++)
              r[n * C + j] = (get(c.x, n * C + j) - (layer ? m : 0)) * rr[n] * (c.w ? get(c.w, j) : 1) + (c.b ? get(c.b, j) : 0);
          }
          check_all(layer ? "layer_norm" : "rms_norm", c.out, r, tol_of(dt) * 2);
          check_all(layer ? "layer_norm rstd" : "rms_norm rstd", c.rstd, rr, 1e-6);
          free(r);
          free(rr);
          sr_tensor *l[] = {c.x, c.out, c.mean, c.rstd, c.w, c.b};
          for (int k = 0; k < 6; k++) sr_tensor_release(l[k]);
        }

  /* backward against finite differences in f64 (f64 saved statistics), with and without params;
  ** parameter grads accumulate onto a starting value */
  for (int layer = 0; layer < 2; layer++)
    for (int affine = 0; affine < 2; affine++) {
      int64_t N = 5, C = 7;
      norm_ctx c = {.x = trand(SR_F64, 2, (int64_t[]){N, C}, 2), .out = tnew(SR_F64, 2, (int64_t[]){N, C}),
                    .mean = tnew(SR_F64, 1, &N), .rstd = tnew(SR_F64, 1, &N), .R = trand(SR_F64, 2, (int64_t[]){N, C}, 1),
                    .layer = layer, .eps = 1e-5};
      if (affine) { c.w = trand(SR_F64, 1, &C, 1); c.b = layer ? trand(SR_F64, 1, &C, 1) : NULL; }
      norm_forward(&c);
      sr_tensor *dx = tnew(SR_F64, 2, (int64_t[]){N, C});
      sr_tensor *dw = affine ? trand(SR_F64, 1, &C, 1) : NULL, *db = affine && layer ? trand(SR_F64, 1, &C, 1) : NULL;
      double *dw0 = dw ? vals(dw) : NULL, *db0 = db ? vals(db) : NULL;
      if (layer)
        RUN_OK(SR_K_layer_norm_backward, .t = {dx, dw, db, c.R, c.x, c.w, c.mean, c.rstd}, .nt = 8);
      else
        RUN_OK(SR_K_rms_norm_backward, .t = {dx, dw, c.R, c.x, c.w, c.rstd}, .nt = 6);
      const char *nm = layer ? "layer_norm_backward" : "rms_norm_backward";
      check_grad(nm, norm_loss, &c, c.x, dx, NULL);
      if (dw) check_grad(nm, norm_loss, &c, c.w, dw, dw0);
      if (db) check_grad(nm, norm_loss, &c, c.b, db, db0);
      free(dw0);
      free(db0);
      sr_tensor *l[] = {c.x, c.out, c.mean, c.rstd, c.w, c.b, c.R, dx, dw, db};
      for (int k = 0; k < 10; k++) sr_tensor_release(l[k]);
    }
  /* f32 / bf16 backward (with the documented f32 statistics) against the f64 kernel */
  for (int layer = 0; layer < 2; layer++)
    for (int d = 1; d < 3; d++) {
      int64_t N = 33, C = 300;
      sr_dtype dt = FLOATS[d];
      sr_tensor *x = trand(dt, 2, (int64_t[]){N, C}, 2), *g = trand(dt, 2, (int64_t[]){N, C}, 1), *wt = trand(dt, 1, &C, 1);
      sr_tensor *xd = tcast(x, SR_F64), *gd = tcast(g, SR_F64), *wd = tcast(wt, SR_F64);
      sr_tensor *y = tnew(dt, 2, (int64_t[]){N, C}), *yd = tnew(SR_F64, 2, (int64_t[]){N, C});
      sr_tensor *m = tnew(SR_F32, 1, &N), *r = tnew(SR_F32, 1, &N), *md = tnew(SR_F64, 1, &N), *rd = tnew(SR_F64, 1, &N);
      sr_tensor *dx = tnew(dt, 2, (int64_t[]){N, C}), *dxd = tnew(SR_F64, 2, (int64_t[]){N, C});
      sr_tensor *dw = tfill(SR_F32, 1, &C, 0), *dwd = tfill(SR_F64, 1, &C, 0);
      if (layer) {
        RUN_OK(SR_K_layer_norm, .t = {y, m, r, x, wt, NULL}, .nt = 6, .f = {1e-5});
        RUN_OK(SR_K_layer_norm, .t = {yd, md, rd, xd, wd, NULL}, .nt = 6, .f = {1e-5});
        RUN_OK(SR_K_layer_norm_backward, .t = {dx, dw, NULL, g, x, wt, m, r}, .nt = 8);
        RUN_OK(SR_K_layer_norm_backward, .t = {dxd, dwd, NULL, gd, xd, wd, md, rd}, .nt = 8);
      } else {
        RUN_OK(SR_K_rms_norm, .t = {y, r, x, wt}, .nt = 4, .f = {1e-5});
        RUN_OK(SR_K_rms_norm, .t = {yd, rd, xd, wd}, .nt = 4, .f = {1e-5});
        RUN_OK(SR_K_rms_norm_backward, .t = {dx, dw, g, x, wt, r}, .nt = 6);
        RUN_OK(SR_K_rms_norm_backward, .t = {dxd, dwd, gd, xd, wd, rd}, .nt = 6);
      }
      double *ref = vals(dxd), *refw = vals(dwd);
      check_all("norm backward low precision dx", dx, ref, dt == SR_F32 ? 1e-5 : 2e-2);
      check_all("norm backward low precision dw", dw, refw, 1e-5);
      free(ref);
      free(refw);
      sr_tensor *l[] = {x, g, wt, xd, gd, wd, y, yd, m, r, md, rd, dx, dxd, dw, dwd};
      for (int k = 0; k < 16; k++) sr_tensor_release(l[k]);
    }
}

/* ---------------------------------------------------------------------------------------------
** softmax */
typedef struct { sr_tensor *out, *x, *R; int log; } sm_ctx;
static double sm_loss(void *p) {
  sm_ctx *c = p;
  RUN_OK(SR_K_softmax, .t = {c->out, c->x}, .nt = 2, .i = {c->log});
  return weighted_sum(c->out, c->R);
}

static void test_softmax(void) {
  sr_tensor *x = tvals(SR_F64, 2, (int64_t[]){2, 3}, (double[]){0, 0, 0, 1, 2, NAN}), *y = tnew(SR_F64, 2, (int64_t[]){2, 3});
  RUN_OK(SR_K_softmax, .t = {y, x}, .nt = 2);
  check_all("softmax hand (NaN row stays NaN)", y, (double[]){1.0 / 3, 1.0 / 3, 1.0 / 3, NAN, NAN, NAN}, 1e-15);
  RUN_OK(SR_K_softmax, .t = {y, x}, .nt = 2, .i = {1});
  check_all("log_softmax hand", y, (double[]){-log(3.0), -log(3.0), -log(3.0), NAN, NAN, NAN}, 1e-15);
  sr_tensor_release(x);
  sr_tensor_release(y);
  for (int lg = 0; lg < 2; lg++)
    for (int d = 0; d < 3; d++) {
      int64_t N = 5, C = 1031;
      sr_dtype dt = FLOATS[d];
      sr_tensor *xs = trand(dt, 2, (int64_t[]){N, C}, 20), *ys = tnew(dt, 2, (int64_t[]){N, C});
      RUN_OK(SR_K_softmax, .t = {ys, xs}, .nt = 2, .i = {lg});
      double *r = malloc(sizeof(double) * (size_t)(N * C));
      for (int64_t n = 0; n < N; n++) {
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) mx = fmax(mx, get(xs, n * C + j));
        for (int64_t j = 0; j < C; j++) s += exp(get(xs, n * C + j) - mx);
        for (int64_t j = 0; j < C; j++) {
          double z = get(xs, n * C + j) - mx;
          r[n * C + j] = lg ? z - log(s) : exp(z) / s;
        }
      }
      check_all(lg ? "log_softmax" : "softmax", ys, r, tol_of(dt));
      free(r);
      sr_tensor_release(xs);
      sr_tensor_release(ys);
    }
  for (int lg = 0; lg < 2; lg++) {
    int64_t N = 3, C = 11;
    sm_ctx c = {.out = tnew(SR_F64, 2, (int64_t[]){N, C}), .x = trand(SR_F64, 2, (int64_t[]){N, C}, 3),
                .R = trand(SR_F64, 2, (int64_t[]){N, C}, 1), .log = lg};
    sm_loss(&c);
    sr_tensor *dx = tnew(SR_F64, 2, (int64_t[]){N, C});
    RUN_OK(SR_K_softmax_backward, .t = {dx, c.R, c.out}, .nt = 3, .i = {lg});
    check_grad(lg ? "log_softmax_backward" : "softmax_backward", sm_loss, &c, c.x, dx, NULL);
    sr_tensor_release(c.out);
    sr_tensor_release(c.x);
    sr_tensor_release(c.R);
    sr_tensor_release(dx);
  }
}

/* ---------------------------------------------------------------------------------------------
** cross_entropy */
typedef struct { sr_tensor *losses, *lse, *logits, *targets, *dl; } ce_ctx;
static double ce_loss(void *p) {
  ce_ctx *c = p;
  RUN_OK(SR_K_cross_entropy, .t = {c->losses, c->lse, c->logits, c->targets}, .nt = 4, .i = {-100});
  return weighted_sum(c->losses, c->dl);
}

static void test_cross_entropy(void) {
  /* hand-computed: uniform logits give log(V); ignored rows give 0; NaN logits give NaN */
  sr_tensor *lg = tvals(SR_F32, 2, (int64_t[]){3, 4}, (double[]){0, 0, 0, 0, 1, 2, 3, 4, 0, NAN, 0, 0});
  sr_tensor *tg = tvals(SR_I32, 1, (int64_t[]){3}, (double[]){2, -100, 0});
  sr_tensor *ls = tnew(SR_F32, 1, (int64_t[]){3}), *lse = tnew(SR_F32, 1, (int64_t[]){3});
  RUN_OK(SR_K_cross_entropy, .t = {ls, lse, lg, tg}, .nt = 4, .i = {-100});
  double lse1 = 4 + log(1 + exp(-1.0) + exp(-2.0) + exp(-3.0));
  check_all("cross_entropy hand", ls, (double[]){log(4.0), 0, NAN}, 1e-6);
  check_all("cross_entropy lse hand", lse, (double[]){log(4.0), lse1, NAN}, 1e-6);
  sr_tensor *dlg = tnew(SR_F32, 2, (int64_t[]){3, 4}), *dl = tvals(SR_F32, 1, (int64_t[]){3}, (double[]){2, 1, 1});
  RUN_OK(SR_K_cross_entropy_backward, .t = {dlg, dl, lg, tg, lse}, .nt = 5, .i = {-100});
  check_all("cross_entropy_backward hand", dlg, (double[]){0.5, 0.5, -1.5, 0.5, 0, 0, 0, 0, NAN, NAN, NAN, NAN}, 1e-6);
  /* bad targets: exact messages */
  set(tg, 1, 4);
  const char *e = run(SR_K_cross_entropy, (sr_kcall){.t = {ls, lse, lg, tg}, .nt = 4, .i = {-100}});
  CHECK(e && strcmp(e, "target 4 out of range [0, 4) at position 1") == 0, "cross_entropy bad target: %s", e ? e : "NULL");
  set(tg, 1, -5);
  e = run(SR_K_cross_entropy_backward, (sr_kcall){.t = {dlg, dl, lg, tg, lse}, .nt = 5, .i = {-100}});
  CHECK(e && strcmp(e, "target -5 out of range [0, 4) at position 1") == 0, "cross_entropy_backward bad target: %s", e ? e : "NULL");
  sr_tensor *l[] = {lg, tg, ls, lse, dlg, dl};
  for (int k = 0; k < 6; k++) sr_tensor_release(l[k]);

  /* naive reference, all dtypes, a GPT-2-sized vocabulary */
  for (int d = 0; d < 3; d++) {
    int64_t N = 7, V = 50257;
    sr_dtype dt = FLOATS[d];
    sr_tensor *x = trand(dt, 2, (int64_t[]){N, V}, 8), *t = tnew(SR_I32, 1, &N);
    for (int64_t n = 0; n < N; n++) set(t, n, n == 3 ? -100 : (double)((n * 7919) % V));
    sr_tensor *los = tnew(SR_F32, 1, &N), *ls2 = tnew(SR_F32, 1, &N);
    sr_tensor *g = tnew(dt, 2, (int64_t[]){N, V}), *dlv = trand(SR_F32, 1, &N, 1);
    RUN_OK(SR_K_cross_entropy, .t = {los, ls2, x, t}, .nt = 4, .i = {-100});
    RUN_OK(SR_K_cross_entropy_backward, .t = {g, dlv, x, t, ls2}, .nt = 5, .i = {-100});
    double *rl = malloc(sizeof(double) * (size_t)N), *rg = malloc(sizeof(double) * (size_t)(N * V));
    for (int64_t n = 0; n < N; n++) {
      double mx = -INFINITY, s = 0;
      for (int64_t j = 0; j < V; j++) mx = fmax(mx, get(x, n * V + j));
      for (int64_t j = 0; j < V; j++) s += exp(get(x, n * V + j) - mx);
      int tn = (int)get(t, n);
      rl[n] = tn == -100 ? 0 : mx + log(s) - get(x, n * V + tn);
      for (int64_t j = 0; j < V; j++)
        rg[n * V + j] = tn == -100 ? 0 : get(dlv, n) * (exp(get(x, n * V + j) - mx) / s - (j == tn));
    }
    check_all("cross_entropy", los, rl, 1e-6);
    check_all("cross_entropy_backward", g, rg, dt == SR_BF16 ? 1e-2 : 1e-6);
    /* the backward in place over a copy of the logits */
    sr_tensor *xb = sr_to_raw(x, SR_CPU, dt);
    RUN_OK(SR_K_cross_entropy_backward, .t = {xb, dlv, xb, t, ls2}, .nt = 5, .i = {-100});
    check_all("cross_entropy_backward in place", xb, rg, dt == SR_BF16 ? 1e-2 : 1e-6);
    /* the forward with the gradient for a constant dscale: into its own buffer, and in place */
    double ds = 0.37;
    sr_tensor *dst = tvals(dt == SR_F64 ? SR_F64 : SR_F32, 0, NULL, &ds), *g2 = tnew(dt, 2, (int64_t[]){N, V});
    sr_tensor *xf = sr_to_raw(x, SR_CPU, dt), *los2 = tnew(SR_F32, 1, &N), *ls3 = tnew(SR_F32, 1, &N);
    for (int64_t n = 0; n < N; n++) {
      double d = get(dlv, n);
      for (int64_t j = 0; j < V; j++) rg[n * V + j] = rg[n * V + j] / d * ds;
    }
    RUN_OK(SR_K_cross_entropy, .t = {los2, ls3, x, t, g2, dst}, .nt = 6, .i = {-100});
    check_all("cross_entropy fused loss", los2, rl, 1e-6);
    check_all("cross_entropy fused dlogits", g2, rg, dt == SR_BF16 ? 1e-2 : 1e-6);
    RUN_OK(SR_K_cross_entropy, .t = {los2, ls3, xf, t, xf, dst}, .nt = 6, .i = {-100});
    check_all("cross_entropy fused loss in place", los2, rl, 1e-6);
    check_all("cross_entropy fused dlogits in place", xf, rg, dt == SR_BF16 ? 1e-2 : 1e-6);
    free(rl);
    free(rg);
    sr_tensor *l2[] = {x, t, los, ls2, g, dlv, xb, dst, g2, xf, los2, ls3};
    for (int k = 0; k < 12; k++) sr_tensor_release(l2[k]);
  }
  /* backward against finite differences in f64 (f64 losses and lse) */
  int64_t N = 4, V = 9;
  ce_ctx c = {.losses = tnew(SR_F64, 1, &N), .lse = tnew(SR_F64, 1, &N), .logits = trand(SR_F64, 2, (int64_t[]){N, V}, 3),
              .targets = tvals(SR_I32, 1, &N, (double[]){8, 0, -100, 4}), .dl = trand(SR_F64, 1, &N, 1)};
  ce_loss(&c);
  sr_tensor *g = tnew(SR_F64, 2, (int64_t[]){N, V});
  RUN_OK(SR_K_cross_entropy_backward, .t = {g, c.dl, c.logits, c.targets, c.lse}, .nt = 5, .i = {-100});
  check_grad("cross_entropy_backward", ce_loss, &c, c.logits, g, NULL);
  sr_tensor *l3[] = {c.losses, c.lse, c.logits, c.targets, c.dl, g};
  for (int k = 0; k < 6; k++) sr_tensor_release(l3[k]);
}

/* ---------------------------------------------------------------------------------------------
** attention */
typedef struct { sr_tensor *out, *lse, *q, *k, *v, *R; double scale; int causal; } at_ctx;
static double at_loss(void *p) {
  at_ctx *c = p;
  RUN_OK(SR_K_attention, .t = {c->out, c->lse, c->q, c->k, c->v}, .nt = 5, .f = {c->scale}, .i = {c->causal});
  return weighted_sum(c->out, c->R);
}

static void test_attention(void) {
  /* naive reference: full score matrix per (b,h) */
  struct { int64_t B, H, T, D; } shapes[] = {{2, 3, 37, 64}, {1, 2, 19, 128}, {1, 1, 1, 5}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int causal = 0; causal < 2; causal++)
      for (int d = 0; d < 3; d++) {
        int64_t B = shapes[s].B, H = shapes[s].H, T = shapes[s].T, D = shapes[s].D, sh[4] = {B, H, T, D};
        sr_dtype dt = FLOATS[d];
        double scale = 1.0 / sqrt((double)D) * 1.3;
        sr_tensor *q = trand(dt, 4, sh, 2), *k = trand(dt, 4, sh, 2), *v = trand(dt, 4, sh, 1);
        sr_tensor *o = tnew(dt, 4, sh), *lse = tnew(SR_F32, 3, sh);
        RUN_OK(SR_K_attention, .t = {o, lse, q, k, v}, .nt = 5, .f = {scale}, .i = {causal});
        double *ro = calloc((size_t)(B * H * T * D), sizeof(double)), *rl = malloc(sizeof(double) * (size_t)(B * H * T));
        double *sc = malloc(sizeof(double) * (size_t)T);
        for (int64_t bh = 0; bh < B * H; bh++)
          for (int64_t i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < T; j++) {
              sc[j] = 0;
              for (int64_t x = 0; x < D; x++) sc[j] += get(q, (bh * T + i) * D + x) * get(k, (bh * T + j) * D + x);
              sc[j] = causal && j > i ? -INFINITY : sc[j] * scale;
              mx = fmax(mx, sc[j]);
            }
            for (int64_t j = 0; j < T; j++) sum += exp(sc[j] - mx);
            rl[bh * T + i] = mx + log(sum);
            for (int64_t j = 0; j < T; j++)
              for (int64_t x = 0; x < D; x++) ro[(bh * T + i) * D + x] += exp(sc[j] - mx) / sum * get(v, (bh * T + j) * D + x);
          }
        check_all(causal ? "attention causal" : "attention", o, ro, tol_of(dt) * 2);
        check_all("attention lse", lse, rl, 1e-6);
        free(ro);
        free(rl);
        free(sc);
        sr_tensor *l[] = {q, k, v, o, lse};
        for (int j = 0; j < 5; j++) sr_tensor_release(l[j]);
      }
  /* backward against finite differences in f64 (f64 lse) */
  for (int causal = 0; causal < 2; causal++) {
    int64_t sh[4] = {1, 2, 5, 3};
    at_ctx c = {.out = tnew(SR_F64, 4, sh), .lse = tnew(SR_F64, 3, sh), .q = trand(SR_F64, 4, sh, 1), .k = trand(SR_F64, 4, sh, 1),
                .v = trand(SR_F64, 4, sh, 1), .R = trand(SR_F64, 4, sh, 1), .scale = 0.7, .causal = causal};
    at_loss(&c);
    sr_tensor *dq = tnew(SR_F64, 4, sh), *dk = tnew(SR_F64, 4, sh), *dv = tnew(SR_F64, 4, sh);
    RUN_OK(SR_K_attention_backward, .t = {dq, dk, dv, c.R, c.q, c.k, c.v, c.out, c.lse}, .nt = 9, .f = {0.7}, .i = {causal});
    check_grad("attention_backward dq", at_loss, &c, c.q, dq, NULL);
    check_grad("attention_backward dk", at_loss, &c, c.k, dk, NULL);
    check_grad("attention_backward dv", at_loss, &c, c.v, dv, NULL);
    sr_tensor *l[] = {c.out, c.lse, c.q, c.k, c.v, c.R, dq, dk, dv};
    for (int j = 0; j < 9; j++) sr_tensor_release(l[j]);
  }
  /* f32 / bf16 backward at head dims 64 and 128 against the f64 kernel */
  for (int d = 1; d < 3; d++)
    for (int64_t D = 64; D <= 128; D += 64) {
      int64_t sh[4] = {1, 2, 33, D};
      sr_dtype dt = FLOATS[d];
      sr_tensor *in[4], *ind[4], *o = tnew(dt, 4, sh), *od = tnew(SR_F64, 4, sh);
      for (int j = 0; j < 4; j++) { in[j] = trand(dt, 4, sh, 1); ind[j] = tcast(in[j], SR_F64); }
      sr_tensor *lse = tnew(SR_F32, 3, sh), *lsed = tnew(SR_F64, 3, sh), *g[3], *gd[3];
      for (int j = 0; j < 3; j++) { g[j] = tnew(dt, 4, sh); gd[j] = tnew(SR_F64, 4, sh); }
      RUN_OK(SR_K_attention, .t = {o, lse, in[0], in[1], in[2]}, .nt = 5, .f = {0.125}, .i = {1});
      RUN_OK(SR_K_attention, .t = {od, lsed, ind[0], ind[1], ind[2]}, .nt = 5, .f = {0.125}, .i = {1});
      RUN_OK(SR_K_attention_backward, .t = {g[0], g[1], g[2], in[3], in[0], in[1], in[2], o, lse}, .nt = 9, .f = {0.125}, .i = {1});
      RUN_OK(SR_K_attention_backward, .t = {gd[0], gd[1], gd[2], ind[3], ind[0], ind[1], ind[2], od, lsed}, .nt = 9, .f = {0.125},
             .i = {1});
      for (int j = 0; j < 3; j++) {
        double *r = vals(gd[j]);
        check_all("attention_backward low precision", g[j], r, dt == SR_F32 ? 1e-5 : 5e-2);
        free(r);
      }
      for (int j = 0; j < 4; j++) { sr_tensor_release(in[j]); sr_tensor_release(ind[j]); }
      for (int j = 0; j < 3; j++) { sr_tensor_release(g[j]); sr_tensor_release(gd[j]); }
      sr_tensor *l[] = {o, od, lse, lsed};
      for (int j = 0; j < 4; j++) sr_tensor_release(l[j]);
    }
}

/* ---------------------------------------------------------------------------------------------
** adamw */
static void test_adamw(void) {
  /* hand-computed first step: p=1, g=0.5, lr=0.1, wd=0.01: p = 0.999 - 0.1*0.5/(0.5+1e-8) */
  sr_tensor *p = tfill(SR_F64, 1, (int64_t[]){1}, 1.0), *g = tfill(SR_F64, 1, (int64_t[]){1}, 0.5);
  sr_tensor *m = tfill(SR_F32, 1, (int64_t[]){1}, 0), *v = tfill(SR_F32, 1, (int64_t[]){1}, 0);
  RUN_OK(SR_K_adamw, .t = {p, g, m, v}, .nt = 4, .f = {0.1, 0.9, 0.999, 1e-8, 0.01}, .i = {1});
  check_all("adamw step 1 param", p, (double[]){0.999 - 0.1 * 0.5 / (0.5 + 1e-8)}, 1e-15);
  check_all("adamw step 1 m", m, (double[]){0.05}, 1e-7);
  check_all("adamw step 1 v", v, (double[]){0.00025}, 1e-7);
  sr_tensor *l[] = {p, g, m, v};
  for (int j = 0; j < 4; j++) sr_tensor_release(l[j]);
  /* three steps on many elements in every param dtype against PyTorch's order of operations */
  sr_dtype pdt[3] = {SR_F32, SR_BF16, SR_F64};
  for (int d = 0; d < 3; d++) {
    int64_t n = 70001;
    sr_tensor *P = trand(pdt[d], 1, &n, 1), *G = tnew(SR_F32, 1, &n), *M = tfill(SR_F32, 1, &n, 0), *Vv = tfill(SR_F32, 1, &n, 0);
    double *rp = vals(P), *rm = calloc((size_t)n, sizeof(double)), *rv = calloc((size_t)n, sizeof(double));
    double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    for (int step = 1; step <= 3; step++) {
      for (int64_t i = 0; i < n; i++) set(G, i, urand());
      if (pdt[d] == SR_BF16) {  /* bf16 params round every step: start each step from the kernel's state */
        free(rp);
        rp = vals(P);
      }
      for (int64_t i = 0; i < n; i++) {
        double gi = get(G, i);
        rp[i] *= 1 - lr * wd;
        rm[i] = b1 * rm[i] + (1 - b1) * gi;
        rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
        double mhat = rm[i] / (1 - pow(b1, step)), vhat = rv[i] / (1 - pow(b2, step));
        rp[i] -= lr * mhat / (sqrt(vhat) + eps);
      }
      RUN_OK(SR_K_adamw, .t = {P, G, M, Vv}, .nt = 4, .f = {lr, b1, b2, eps, wd}, .i = {step});
      check_all("adamw param", P, rp, pdt[d] == SR_F64 ? 1e-7 : pdt[d] == SR_F32 ? 1e-6 : 1e-2);
    }
    check_all("adamw m", M, rm, 1e-6);
    check_all("adamw v", Vv, rv, 1e-6);
    free(rp);
    free(rm);
    free(rv);
    sr_tensor *l2[] = {P, G, M, Vv};
    for (int j = 0; j < 4; j++) sr_tensor_release(l2[j]);
  }
}

/* ---------------------------------------------------------------------------------------------
** dot: hand-computed sums, every float dtype, past one chunk; the same bits at any thread count
** (fixed chunks); mismatched operands refused */
static void test_dot(void) {
  sr_tensor *a = tvals(SR_F32, 1, (int64_t[]){3}, (double[]){1, -2, 0.5}), *b = tvals(SR_F32, 1, (int64_t[]){3}, (double[]){4, 0.25, -2});
  sr_tensor *o = tnew(SR_F32, 1, (int64_t[]){1});
  RUN_OK(SR_K_dot, .t = {o, a, b}, .nt = 3);
  check_all("dot [1,-2,0.5].[4,0.25,-2]", o, (double[]){2.5}, 0);
  for (int d = 0; d < 3; d++) {
    int64_t n = 100003;
    sr_tensor *x = trand(FLOATS[d], 1, &n, 1), *y = trand(FLOATS[d], 1, &n, 1);
    sr_tensor *r = tnew(FLOATS[d] == SR_F64 ? SR_F64 : SR_F32, 1, (int64_t[]){1});
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += get(x, i) * get(y, i);
    RUN_OK(SR_K_dot, .t = {r, x, y}, .nt = 3);
    check_all("dot n=100003", r, &ref, FLOATS[d] == SR_F64 ? 1e-12 : 1e-6);
    sr_tensor_release(x); sr_tensor_release(y); sr_tensor_release(r);
  }
  sr_tensor *a64 = tcast(a, SR_F64);
  const char *e = run(SR_K_dot, (sr_kcall){.t = {o, a, a64}, .nt = 3});
  CHECK(e && strstr(e, "one dtype"), "dot of f32 and f64: %s", e ? e : "no error");
  sr_tensor *l[] = {a, b, o, a64};
  for (int j = 0; j < 4; j++) sr_tensor_release(l[j]);
}

/* bf16 param, grad and state (records 10-17: torch keeps a bf16 parameter's m and v in bf16):
** the update computed in double from the stored values, the parameter moved by the unrounded m and
** v, each tensor rounded once: the kernel's bits after every step; m and v of two dtypes refused */
static double round_bf16(double v) {
  sr_tensor *t = tnew(SR_BF16, 1, (int64_t[]){1});
  set(t, 0, v);
  double r = get(t, 0);
  sr_tensor_release(t);
  return r;
}

static void test_adamw_bf16_state(void) {
  int64_t n = 5003;
  sr_tensor *P = trand(SR_BF16, 1, &n, 1), *G = tnew(SR_BF16, 1, &n), *M = tfill(SR_BF16, 1, &n, 0), *V = tfill(SR_BF16, 1, &n, 0);
  double lr = 0.04, b1 = 0.9, b2 = 0.95, eps = 1e-10, wd = 0;
  double *rp = malloc(sizeof(double) * (size_t)n), *rm = malloc(sizeof(double) * (size_t)n), *rv = malloc(sizeof(double) * (size_t)n);
  for (int step = 1; step <= 4; step++) {
    for (int64_t i = 0; i < n; i++) set(G, i, 1e-3 * urand());
    double bc1 = 1 - pow(b1, step), bc2_sqrt = sqrt(1 - pow(b2, step)), step_size = lr / bc1, decay = 1 - lr * wd;
    for (int64_t i = 0; i < n; i++) {
      double g = get(G, i), m = b1 * get(M, i) + (1 - b1) * g, v = b2 * get(V, i) + (1 - b2) * g * g;
      rp[i] = round_bf16(get(P, i) * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps));
      rm[i] = round_bf16(m);
      rv[i] = round_bf16(v);
    }
    RUN_OK(SR_K_adamw, .t = {P, G, M, V}, .nt = 4, .f = {lr, b1, b2, eps, wd}, .i = {step});
    check_all("adamw bf16 state: param", P, rp, 0);
    check_all("adamw bf16 state: m", M, rm, 0);
    check_all("adamw bf16 state: v", V, rv, 0);
  }
  sr_tensor *V32 = tfill(SR_F32, 1, &n, 0);
  const char *e = run(SR_K_adamw, (sr_kcall){.t = {P, G, M, V32}, .nt = 4, .f = {lr, b1, b2, eps, wd}, .i = {1}});
  CHECK(e && strstr(e, "one dtype"), "adamw with bf16 m and f32 v: %s", e ? e : "no error");
  free(rp); free(rm); free(rv);
  sr_tensor *l[] = {P, G, M, V, V32};
  for (int j = 0; j < 5; j++) sr_tensor_release(l[j]);
}

/* ---------------------------------------------------------------------------------------------
** adamw_multi, sumsq_multi, clip_multi */

/* adamw_multi against adamw per tensor: the same bits in param, m and v after three steps, over
** parameters of mixed sizes (1 element, odd, chunk edges), for each param/grad/state dtype
** triple, with and without a sched tensor */
static void test_adamw_multi(void) {
  enum { NP = 6 };
  const int64_t sizes[NP] = {1, 7, 1003, 1024, 4096, 70001};
  const sr_dtype pdt[5] = {SR_F32, SR_BF16, SR_BF16, SR_F64, SR_BF16}, gdt[5] = {SR_F32, SR_BF16, SR_F32, SR_F64, SR_BF16};
  const sr_dtype sdt[5] = {SR_F32, SR_F32, SR_F32, SR_F32, SR_BF16};
  for (int d = 0; d < 5; d++)
    for (int use_sched = 0; use_sched < 2; use_sched++) {
      sr_tensor *t[2][NP][4], *list[4 * NP];
      sr_tensor *sched[2] = {tvals(SR_F32, 1, (int64_t[]){2}, (double[]){0.02, 0}), tvals(SR_F32, 1, (int64_t[]){2}, (double[]){0.02, 0})};
      for (int k = 0; k < NP; k++) {
        const int64_t *n = &sizes[k];
        sr_tensor *p0 = trand(pdt[d], 1, n, 1), *m0 = trand(SR_F32, 1, n, 0.1), *v0 = trand(SR_F32, 1, n, 0.01);
        for (int64_t i = 0; i < *n; i++) set(v0, i, fabs(get(v0, i)));
        for (int side = 0; side < 2; side++) {
          t[side][k][0] = tcast(p0, pdt[d]);
          t[side][k][1] = tnew(gdt[d], 1, n);
          t[side][k][2] = tcast(m0, sdt[d]);
          t[side][k][3] = tcast(v0, sdt[d]);
        }
        for (int j = 0; j < 4; j++) list[4 * k + j] = t[0][k][j];
        sr_tensor_release(p0); sr_tensor_release(m0); sr_tensor_release(v0);
      }
      const double f[5] = {1e-2, 0.9, 0.95, 1e-8, 0.1};
      for (int step = 1; step <= 3; step++) {
        for (int k = 0; k < NP; k++)
          for (int64_t i = 0; i < sizes[k]; i++) {
            double g = urand();
            set(t[0][k][1], i, g);
            set(t[1][k][1], i, g);
          }
        for (int side = 0; side < 2; side++)
          if (use_sched) set(sched[side], 1, get(sched[side], 1) + 1);
        sr_tensor *sc0 = use_sched ? sched[0] : NULL, *sc1 = use_sched ? sched[1] : NULL;
        RUN_OK(SR_K_adamw_multi, .t = {sc0}, .nt = 1, .f = {f[0], f[1], f[2], f[3], f[4]}, .i = {step}, .list = list,
               .nlist = 4 * NP);
        for (int k = 0; k < NP; k++)
          RUN_OK(SR_K_adamw, .t = {t[1][k][0], t[1][k][1], t[1][k][2], t[1][k][3], sc1}, .nt = 5,
                 .f = {f[0], f[1], f[2], f[3], f[4]}, .i = {step});
      }
      for (int k = 0; k < NP; k++)
        for (int j = 0; j < 4; j += (j == 0 ? 2 : 1)) {
          const sr_tensor *a = t[0][k][j], *b = t[1][k][j];
          CHECK(memcmp(sr_data(a), sr_data(b), (size_t)sizes[k] * sr_dtype_size(a->dtype)) == 0,
                "adamw_multi %s/%s/%s sched=%d n=%lld: %s differs from adamw", sr_dtype_name(pdt[d]), sr_dtype_name(gdt[d]),
                sr_dtype_name(sdt[d]), use_sched, (long long)sizes[k], j == 0 ? "param" : j == 2 ? "m" : "v");
        }
      for (int side = 0; side < 2; side++) {
        sr_tensor_release(sched[side]);
        for (int k = 0; k < NP; k++)
          for (int j = 0; j < 4; j++) sr_tensor_release(t[side][k][j]);
      }
    }
  /* errors: a list that is not (param, grad, m, v) groups, params of two dtypes */
  int64_t one = 1;
  sr_tensor *a = tfill(SR_F32, 1, &one, 1), *b = tfill(SR_F64, 1, &one, 1), *m = tfill(SR_F32, 1, &one, 0);
  sr_tensor *bad3[3] = {a, a, m}, *mixed[8] = {a, a, m, m, b, a, m, m};
  const char *e = run(SR_K_adamw_multi, (sr_kcall){.nt = 1, .f = {0.1, 0.9, 0.99, 1e-8, 0}, .i = {1}, .list = bad3, .nlist = 3});
  CHECK(e && strstr(e, "per parameter"), "adamw_multi with 3 list tensors: %s", e ? e : "no error");
  e = run(SR_K_adamw_multi, (sr_kcall){.nt = 1, .f = {0.1, 0.9, 0.99, 1e-8, 0}, .i = {1}, .list = mixed, .nlist = 8});
  CHECK(e && strstr(e, "one dtype"), "adamw_multi with f32 and f64 params: %s", e ? e : "no error");
  sr_tensor_release(a); sr_tensor_release(b); sr_tensor_release(m);
}

/* sumsq_multi against a sum in double; clip_multi against the hand-computed scale */
static void test_clip_multi(void) {
  enum { NX = 5 };
  const int64_t sizes[NX] = {1, 7, 1003, 70001, 3};
  for (int all64 = 0; all64 < 2; all64++) {
    sr_tensor *xs[NX];
    double ref = 0;
    for (int k = 0; k < NX; k++) {
      xs[k] = trand(all64 ? SR_F64 : FLOATS[k % 3], 1, &sizes[k], 1);
      for (int64_t i = 0; i < sizes[k]; i++) ref += get(xs[k], i) * get(xs[k], i);
    }
    sr_tensor *ss = tnew(all64 ? SR_F64 : SR_F32, 1, (int64_t[]){1});
    RUN_OK(SR_K_sumsq_multi, .t = {ss}, .nt = 1, .list = xs, .nlist = NX);
    check_all("sumsq_multi", ss, &ref, all64 ? 1e-12 : 1e-7);
    /* max_norm 1: every element scaled by 1 / (sqrt(sumsq) + 1e-6) */
    double scale = 1.0 / (sqrt(get(ss, 0)) + 1e-6);
    for (int k = 0; k < NX; k++) {
      double *r = vals(xs[k]);
      for (int64_t i = 0; i < sizes[k]; i++) r[i] *= scale;
      double *before = vals(xs[k]);
      sr_kcall c = {.t = {ss}, .nt = 1, .f = {1.0, 1e-6}, .list = &xs[k], .nlist = 1};
      const char *e = sr_kernels[SR_K_clip_multi].cpu(&c);
      CHECK(!e, "clip_multi: %s", e ? e : "");
      check_all("clip_multi scaled", xs[k], r, tol_of(xs[k]->dtype) / 2);
      /* a max_norm above the norm leaves the bits as they are */
      double *now = vals(xs[k]);
      c.f[0] = 1e9;
      e = sr_kernels[SR_K_clip_multi].cpu(&c);
      double *after = vals(xs[k]);
      CHECK(!e && memcmp(now, after, sizeof(double) * (size_t)sizes[k]) == 0, "clip_multi under the limit changed values");
      free(r); free(before); free(now); free(after);
    }
    /* a NaN sum of squares makes the tensors NaN (as torch's clip) */
    set(ss, 0, NAN);
    RUN_OK(SR_K_clip_multi, .t = {ss}, .nt = 1, .f = {1.0, 1e-6}, .list = xs, .nlist = 1);
    CHECK(isnan(get(xs[0], 0)), "clip_multi with a NaN norm: %g", get(xs[0], 0));
    sr_tensor_release(ss);
    for (int k = 0; k < NX; k++) sr_tensor_release(xs[k]);
  }
  /* the hand example: (3, 0) and (4): norm 5, max_norm 1 -> (0.6, 0), (0.8) */
  sr_tensor *a = tvals(SR_F32, 1, (int64_t[]){2}, (double[]){3, 0}), *b = tvals(SR_F32, 1, (int64_t[]){1}, (double[]){4});
  sr_tensor *ab[2] = {a, b}, *ss = tnew(SR_F32, 1, (int64_t[]){1});
  RUN_OK(SR_K_sumsq_multi, .t = {ss}, .nt = 1, .list = ab, .nlist = 2);
  check_all("sumsq_multi hand", ss, (double[]){25}, 0);
  RUN_OK(SR_K_clip_multi, .t = {ss}, .nt = 1, .f = {1.0, 1e-6}, .list = ab, .nlist = 2);
  check_all("clip_multi hand a", a, (double[]){0.6, 0}, 1e-6);
  check_all("clip_multi hand b", b, (double[]){0.8}, 1e-6);
  sr_tensor_release(a); sr_tensor_release(b); sr_tensor_release(ss);
}

/* ---------------------------------------------------------------------------------------------
** thread-count independence: every kernel that sums across elements gives bit-identical results
** with 1, 2 and 3 threads */
typedef struct { sr_kernel_id id; sr_kcall c; int nout; const char *name; } tc_case;

static void test_thread_independence(void) {
  int64_t N = 300, C = 300, V = 5003, NE = 5000, VE = 50, sh[4] = {2, 2, 65, 32};
  sr_tensor *x = trand(SR_F32, 2, (int64_t[]){N, C}, 2), *g = trand(SR_F32, 2, (int64_t[]){N, C}, 1), *w = trand(SR_F32, 1, &C, 1);
  sr_tensor *mean = tnew(SR_F32, 1, &N), *rstd = tnew(SR_F32, 1, &N), *y = tnew(SR_F32, 2, (int64_t[]){N, C});
  RUN_OK(SR_K_layer_norm, .t = {y, mean, rstd, x, w, NULL}, .nt = 6, .f = {1e-5});
  sr_tensor *dx = tnew(SR_F32, 2, (int64_t[]){N, C}), *dw = tfill(SR_F32, 1, &C, 0), *db = tfill(SR_F32, 1, &C, 0);
  sr_tensor *big = trand(SR_F32, 3, (int64_t[]){2, 3000, 40}, 1), *red = tnew(SR_F32, 3, (int64_t[]){2, 1, 40});
  sr_tensor *flat = trand(SR_F32, 1, (int64_t[]){100000}, 1), *fred = tnew(SR_F32, 1, (int64_t[]){1});
  sr_tensor *lg = trand(SR_F32, 2, (int64_t[]){64, V}, 5), *tg = tnew(SR_I32, 1, (int64_t[]){64});
  for (int64_t n = 0; n < 64; n++) set(tg, n, (double)((n * 131) % V));
  sr_tensor *los = tnew(SR_F32, 1, (int64_t[]){64}), *lse = tnew(SR_F32, 1, (int64_t[]){64});
  sr_tensor *ei = tnew(SR_I32, 1, &NE), *eg = trand(SR_F32, 2, (int64_t[]){NE, 64}, 1), *edw = tfill(SR_F32, 2, (int64_t[]){VE, 64}, 0);
  for (int64_t n = 0; n < NE; n++) set(ei, n, (double)((n * n) % VE));
  sr_tensor *q = trand(SR_F32, 4, sh, 1), *k = trand(SR_F32, 4, sh, 1), *v = trand(SR_F32, 4, sh, 1), *ao = tnew(SR_F32, 4, sh);
  sr_tensor *alse = tnew(SR_F32, 3, sh), *dq = tnew(SR_F32, 4, sh), *dk = tnew(SR_F32, 4, sh), *dv = tnew(SR_F32, 4, sh);
  RUN_OK(SR_K_attention, .t = {ao, alse, q, k, v}, .nt = 5, .f = {0.2}, .i = {1});
  sr_tensor *ga = trand(SR_F32, 3, (int64_t[]){1, 200, 700}, 1), *gb = trand(SR_F32, 3, (int64_t[]){1, 700, 150}, 1);
  sr_tensor *gc = tnew(SR_F32, 3, (int64_t[]){1, 200, 150});
  sr_tensor *sq_list[2] = {flat, big};
  tc_case cases[] = {
    {SR_K_layer_norm_backward, {.t = {dx, dw, db, g, x, w, mean, rstd}, .nt = 8}, 3, "layer_norm_backward"},
    {SR_K_rms_norm_backward, {.t = {dx, dw, g, x, w, rstd}, .nt = 6}, 2, "rms_norm_backward"},
    {SR_K_reduce, {.t = {red, big}, .nt = 2, .i = {SR_REDUCE_SUM, 1}}, 1, "reduce sum over dim 1"},
    {SR_K_reduce, {.t = {fred, flat}, .nt = 2, .i = {SR_REDUCE_SUMSQ, 0}}, 1, "reduce sumsq of a long row"},
    {SR_K_cross_entropy, {.t = {los, lse, lg, tg}, .nt = 4, .i = {-100}}, 2, "cross_entropy"},
    {SR_K_softmax, {.t = {lg, lg}, .nt = 2}, 1, "softmax (in place)"},
    {SR_K_embedding_backward, {.t = {edw, eg, ei}, .nt = 3}, 1, "embedding_backward"},
    {SR_K_attention_backward, {.t = {dq, dk, dv, ao, q, k, v, ao, alse}, .nt = 9, .f = {0.2}, .i = {1}}, 3, "attention_backward"},
    {SR_K_gemm, {.t = {gc, ga, gb}, .nt = 3, .f = {1.0, 0.0}}, 1, "gemm"},
    {SR_K_sumsq_multi, {.t = {fred}, .nt = 1, .list = sq_list, .nlist = 2}, 1, "sumsq_multi"},
  };
  int saved = omp_get_max_threads();
  for (size_t cs = 0; cs < sizeof cases / sizeof *cases; cs++) {
    double *first[3] = {0};
    double *inputs = NULL;  /* kernels that update in place restart from the same state */
    sr_tensor *inplace = cases[cs].id == SR_K_softmax ? lg : NULL;
    if (inplace) inputs = vals(inplace);
    for (int nt = 1; nt <= 3; nt++) {
      omp_set_num_threads(nt);
      for (int o = 0; o < cases[cs].nout; o++)  /* accumulated outputs start from zero */
        if (cases[cs].c.t[o] == dw || cases[cs].c.t[o] == db || cases[cs].c.t[o] == edw)
          for (int64_t i = 0; i < sr_numel(cases[cs].c.t[o]); i++) set(cases[cs].c.t[o], i, 0);
      if (inplace)
        for (int64_t i = 0; i < sr_numel(inplace); i++) set(inplace, i, inputs[i]);
      const char *e = sr_kernels[cases[cs].id].cpu(&cases[cs].c);
      CHECK(!e, "%s: %s", cases[cs].name, e ? e : "");
      for (int o = 0; o < cases[cs].nout; o++) {
        double *r = vals(cases[cs].c.t[o]);
        if (nt == 1) first[o] = r;
        else {
          CHECK(memcmp(r, first[o], sizeof(double) * (size_t)sr_numel(cases[cs].c.t[o])) == 0,
                "%s: output %d differs between 1 and %d threads", cases[cs].name, o, nt);
          free(r);
        }
      }
    }
    for (int o = 0; o < 3; o++) free(first[o]);
    free(inputs);
  }
  omp_set_num_threads(saved);
  sr_tensor *l[] = {x, g, w, mean, rstd, y, dx, dw, db, big, red, flat, fred, lg, tg, los, lse, ei, eg, edw, q, k, v, ao, alse, dq, dk, dv, ga, gb, gc};
  for (size_t j = 0; j < sizeof l / sizeof *l; j++) sr_tensor_release(l[j]);
}

int main(void) {
  test_fill_copy_arange();
  test_unary();
  test_binary_where();
  test_reduce();
  test_gemm();
  test_embedding();
  test_norms();
  test_softmax();
  test_cross_entropy();
  test_attention();
  test_adamw();
  test_dot();
  test_adamw_bf16_state();
  test_adamw_multi();
  test_clip_multi();
  test_thread_independence();
  printf("test_cpu_kernels: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
