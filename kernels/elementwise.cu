/*
** elementwise.cu: fill, copy, arange, unary (+ backward), binary, where.
** Every operand may be strided (stride 0 for broadcast inputs); dims contiguous in every operand
** are merged first, and fully contiguous calls take an index-free path; contiguous, 16-byte aligned
** f32/bf16 operands (any mix) take a vectorised path (8 elements per thread, 16-byte accesses; unary and
** unary_backward of one dtype with the function compiled in: launch_vec_fn). Values are computed in
** f32 and stored in the output's dtype. GPU float dtypes: f32, bf16; i32 for fill/copy/arange
** and where's condition; f64 only for fill and copy (math ops refuse it).
** Gradient contract: unary_backward writes dx (=); with i1 = 1 (tanh, sigmoid, exp) it reads the
** forward's output instead of x.
*/
#include "common.cuh"  // defines: sr_ew_desc, ld_as_float, st_from_float, SR_CUDA_TRY

// ----------------------------------------------------------------------------
// CUDA kernels

// the unary and binary functions of registry.h (unary_f, unary_df, binary_f): one copy, shared
// with the step compiler's generated kernels (host/jit/fuse_cuda.c)
#include "include/speedrun_ew.cuh"

enum ew_op { EW_FILL, EW_COPY, EW_UNARY, EW_UNARY_BWD, EW_BINARY, EW_WHERE };

// one kernel for every element-wise op: op and fn are uniform across the grid, so the switches
// cost a few instructions per element of a memory-bound loop
// MODE 0: contiguous, 1: strided with 32-bit index math, 2: strided with 64-bit index math
template <int MODE>
__global__ void elementwise_kernel1(sr_ew_desc d, int op, int fn, float p) {
  int64_t off[SR_EW_MAXOP];
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d.n; i += (int64_t)gridDim.x * blockDim.x) {
    if (MODE == 0) {
#pragma unroll
      for (int j = 0; j < SR_EW_MAXOP; j++) off[j] = i;
    } else if (MODE == 1) {
      sr_ew_offsets32(d, (uint32_t)i, off);
    } else {
      sr_ew_offsets(d, i, off);
    }
    float r;
    switch (op) {
      case EW_FILL: r = p; break;
      case EW_COPY:
        if (d.dt[0] == SR_F64 && d.dt[1] == SR_F64) {  // exact
          ((double *)d.p[0])[off[0]] = ((const double *)d.p[1])[off[1]];
          continue;
        }
        if (d.dt[0] == SR_I32 && d.dt[1] == SR_I32) {
          ((int *)d.p[0])[off[0]] = ((const int *)d.p[1])[off[1]];
          continue;
        }
        if (d.dt[1] == SR_F64) {
          st_from_float(d.p[0], d.dt[0], off[0], (float)((const double *)d.p[1])[off[1]]);
          continue;
        }
        if (d.dt[0] == SR_F64) {
          ((double *)d.p[0])[off[0]] = d.dt[1] == SR_I32 ? (double)((const int *)d.p[1])[off[1]]
                                                         : (double)ld_as_float(d.p[1], d.dt[1], off[1]);
          continue;
        }
        r = ld_as_float(d.p[1], d.dt[1], off[1]);
        break;
      case EW_UNARY: r = unary_f(fn, ld_as_float(d.p[1], d.dt[1], off[1]), p); break;
      case EW_UNARY_BWD:
        r = ld_as_float(d.p[1], d.dt[1], off[1]) * unary_df(fn, ld_as_float(d.p[2], d.dt[2], off[2]), p);
        break;
      case EW_BINARY:
        r = binary_f(fn, ld_as_float(d.p[1], d.dt[1], off[1]), ld_as_float(d.p[2], d.dt[2], off[2]));
        break;
      default: {  // EW_WHERE: cond may be any dtype; nonzero is true
        float c = ld_as_float(d.p[1], d.dt[1], off[1]);
        r = c != 0.f ? ld_as_float(d.p[2], d.dt[2], off[2]) : ld_as_float(d.p[3], d.dt[3], off[3]);
      }
    }
    if (d.dt[0] == SR_I32 && op == EW_FILL) {
      ((int *)d.p[0])[off[0]] = (int)p;
      continue;
    }
    st_from_float(d.p[0], d.dt[0], off[0], r);
  }
}

// contiguous fast path (every operand unit-stride, 16-byte aligned, f32 or bf16 in any mix): 8
// elements per thread per iteration with 16-byte loads/stores (bf16: one uint4; f32: two float4),
// dtypes resolved at compile time; a scalar tail covers n % 8. Same math as elementwise_kernel1.
// (ld8 / st8: common.cuh)
// OP one of EW_FILL, EW_COPY, EW_UNARY, EW_UNARY_BWD (a = dy, b = x), EW_BINARY
// FN >= 0: the function as a compile-time constant (fn is then FN; the switch over every function
// folds away), -1: fn read at run time. A run-time switch in the 8-element loop is a chain of
// compares and branches per element, as costly as erf itself: GELU's kernels were compute-bound at
// ~2 TB/s where a multiply reached ~3.9 (record 1's full step, bench/RESULTS.md, ninth session).
template <int OP, int FN>
__device__ __forceinline__ float ew_apply(int fn, float p, float a, float b) {
  if (FN >= 0) fn = FN;
  switch (OP) {
    case EW_FILL: return p;
    case EW_COPY: return a;
    case EW_UNARY: return unary_f(fn, a, p);
    case EW_UNARY_BWD: return a * unary_df(fn, b, p);
    default: return binary_f(fn, a, b);
  }
}

// b_scalar: b is one element broadcast to all (e.g. the upstream gradient of a mean loss scaling
// a [N,V] gradient), read once per thread
template <int OP, int FN, typename TO, typename TA, typename TB>
__global__ void __launch_bounds__(256) elementwise_vec_kernel2(TO *out, const TA *a, const TB *b, int64_t n, int fn, float p,
                                                               bool b_scalar) {
  constexpr bool HAS_A = OP != EW_FILL, HAS_B = OP == EW_UNARY_BWD || OP == EW_BINARY;
  int64_t n8 = n >> 3;
  int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, stride = (int64_t)gridDim.x * blockDim.x;
  float b0 = HAS_B && b_scalar ? to_f<TB>(b[0]) : 0.f;
  for (int64_t i = tid; i < n8; i += stride) {
    float fa[8], fb[8], r[8];
    if (HAS_A) ld8(a, i, fa);
    if (HAS_B && !b_scalar) ld8(b, i, fb);
#pragma unroll
    for (int k = 0; k < 8; k++)
      r[k] = ew_apply<OP, FN>(fn, p, HAS_A ? fa[k] : 0.f, HAS_B ? (b_scalar ? b0 : fb[k]) : 0.f);
    st8(out, i, r);
  }
  int64_t j = n8 * 8 + tid;  // the last n % 8 elements, one per thread
  if (j < n) {
    float va = HAS_A ? to_f<TA>(a[j]) : 0.f, vb = HAS_B ? (b_scalar ? b0 : to_f<TB>(b[j])) : 0.f;
    out[j] = from_f<TO>(ew_apply<OP, FN>(fn, p, va, vb));
  }
}

template <typename T>
__global__ void arange_kernel1(T *out, int64_t n, double start, double step) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = (T)(start + step * (double)i);
}
__global__ void arange_bf16_kernel1(bf16 *out, int64_t n, double start, double step) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16((float)(start + step * (double)i));
}

// ----------------------------------------------------------------------------
// kernel launchers

static const char *check_dtypes(const sr_kcall *c, int first, int last, bool allow_i32) {
  for (int j = first; j < last; j++) {
    sr_dtype t = c->t[j]->dtype;
    if (t == SR_F32 || t == SR_BF16 || (allow_i32 && t == SR_I32)) continue;
    return sr_errf("dtype %s of argument %d is not supported on cuda (use f32 or bf16)", sr_dtype_name((sr_dtype)t), j + 1);
  }
  return NULL;
}

static const char *launch_ew(const sr_kcall *c, int nop, int op, int fn, float p) {
  sr_ew_desc d;
  if (!sr_ew_make(&d, c->t, nop)) return sr_errf("operands do not have the output's number of elements");
  if (d.n == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int block = 256;
  unsigned grid = sr_grid_for(d.n, block);
  if (d.contig) elementwise_kernel1<0><<<grid, block, 0, s>>>(d, op, fn, p);
  else if (sr_ew_fits32(&d)) elementwise_kernel1<1><<<grid, block, 0, s>>>(d, op, fn, p);
  else elementwise_kernel1<2><<<grid, block, 0, s>>>(d, op, fn, p);
  SR_LAUNCH_CHECK();
  return NULL;
}

template <int OP, typename TO, typename TA, typename TB, int FN = -1>
static void launch_vec_t(void *o, const void *a, const void *b, int64_t n, int fn, float p, bool bs, cudaStream_t s) {
  unsigned grid = sr_grid_for(CEIL_DIV(n, (int64_t)8), 256);
  elementwise_vec_kernel2<OP, FN, TO, TA, TB><<<grid, 256, 0, s>>>((TO *)o, (const TA *)a, (const TB *)b, n, fn, p, bs);
}
template <int OP, typename TO, typename TA>
static void launch_vec_b(int dtb, void *o, const void *a, const void *b, int64_t n, int fn, float p, bool bs,
                         cudaStream_t s) {
  if (dtb == SR_BF16) launch_vec_t<OP, TO, TA, bf16>(o, a, b, n, fn, p, bs, s);
  else launch_vec_t<OP, TO, TA, float>(o, a, b, n, fn, p, bs, s);
}
template <int OP, typename TO>
static void launch_vec_a(int dta, int dtb, void *o, const void *a, const void *b, int64_t n, int fn, float p, bool bs,
                         cudaStream_t s) {
  if (dta == SR_BF16) launch_vec_b<OP, TO, bf16>(dtb, o, a, b, n, fn, p, bs, s);
  else launch_vec_b<OP, TO, float>(dtb, o, a, b, n, fn, p, bs, s);
}

// SR_EW_V1=1: every call takes the run-time fn (the kernels before the specialisation; A/B)
static bool ew_v1(void) {
  static int v = -1;
  return sr_env_is(&v, "SR_EW_V1", "1");
}

// unary and unary_backward with every operand of one dtype T (the records' calls: bf16 activations,
// f32 softcaps) take a kernel with fn compiled in, one per function of registry.h's SR_UNARY_FNS
// (unary_backward also the gradients from the output: fn + SR_UNARY_COUNT for tanh, sigmoid, exp).
// false: no such kernel (the caller takes the run-time fn)
template <int OP, typename T>
static bool launch_vec_fn(void *o, const void *a, const void *b, int64_t n, int fn, float p, cudaStream_t s) {
  switch (fn) {
#define SR_X(E, name) \
  case SR_UNARY_##E: launch_vec_t<OP, T, T, T, SR_UNARY_##E>(o, a, b, n, fn, p, false, s); return true;
    SR_UNARY_FNS(SR_X)
#undef SR_X
  }
  if (OP != EW_UNARY_BWD) return false;
  switch (fn - SR_UNARY_COUNT) {
    case SR_UNARY_TANH: launch_vec_t<OP, T, T, T, SR_UNARY_COUNT + SR_UNARY_TANH>(o, a, b, n, fn, p, false, s); return true;
    case SR_UNARY_SIGMOID: launch_vec_t<OP, T, T, T, SR_UNARY_COUNT + SR_UNARY_SIGMOID>(o, a, b, n, fn, p, false, s); return true;
    case SR_UNARY_EXP: launch_vec_t<OP, T, T, T, SR_UNARY_COUNT + SR_UNARY_EXP>(o, a, b, n, fn, p, false, s); return true;
    default: return false;
  }
}

// every stride 0: one element broadcast to the whole shape
static bool broadcast_scalar(const sr_tensor *t) {
  for (int k = 0; k < t->ndim; k++)
    if (t->stride[k] != 0 && t->shape[k] != 1) return false;
  return true;
}

// the contiguous fast path when it applies: operands t[0..nop) all f32/bf16, contiguous, of one
// element count, 16-byte aligned; the binary kernel's b may instead be one broadcast element.
// *done says whether it ran; the result is the launch error.
static const char *try_vec(const sr_kcall *c, int nop, int op, int fn, float p, bool *done) {
  *done = false;
  int64_t n = sr_numel(c->t[0]);
  if (n <= 0) return NULL;
  int dts[3] = {SR_F32, SR_F32, SR_F32};
  const void *ptr[3] = {NULL, NULL, NULL};
  bool bs = false;
  for (int j = 0; j < nop; j++) {
    const sr_tensor *t = c->t[j];
    if (t->dtype != SR_F32 && t->dtype != SR_BF16) return NULL;
    if (sr_numel(t) != n) return NULL;
    if (j == 2 && op == EW_BINARY && broadcast_scalar(t)) bs = true;
    else if (!sr_is_contiguous(t) || !sr_is_aligned16(sr_data(t))) return NULL;
    dts[j] = t->dtype;
    ptr[j] = sr_data(t);
  }
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  void *o = (void *)ptr[0];
#define SR_VEC_OP(OPC)                                                                                  \
  if (dts[0] == SR_BF16) launch_vec_a<OPC, bf16>(dts[1], dts[2], o, ptr[1], ptr[2], n, fn, p, bs, s);   \
  else launch_vec_a<OPC, float>(dts[1], dts[2], o, ptr[1], ptr[2], n, fn, p, bs, s);
  bool one_dtype = dts[1] == dts[0] && (op == EW_UNARY || dts[2] == dts[0]);
  if ((op == EW_UNARY || op == EW_UNARY_BWD) && one_dtype && !ew_v1()) {
    bool ran = op == EW_UNARY ? (dts[0] == SR_BF16 ? launch_vec_fn<EW_UNARY, bf16>(o, ptr[1], ptr[2], n, fn, p, s)
                                                   : launch_vec_fn<EW_UNARY, float>(o, ptr[1], ptr[2], n, fn, p, s))
                              : (dts[0] == SR_BF16 ? launch_vec_fn<EW_UNARY_BWD, bf16>(o, ptr[1], ptr[2], n, fn, p, s)
                                                   : launch_vec_fn<EW_UNARY_BWD, float>(o, ptr[1], ptr[2], n, fn, p, s));
    if (ran) {
      *done = true;
      SR_LAUNCH_CHECK();
      return NULL;
    }
  }
  switch (op) {
    case EW_FILL: SR_VEC_OP(EW_FILL) break;
    case EW_COPY: SR_VEC_OP(EW_COPY) break;
    case EW_UNARY: SR_VEC_OP(EW_UNARY) break;
    case EW_UNARY_BWD: SR_VEC_OP(EW_UNARY_BWD) break;
    case EW_BINARY: SR_VEC_OP(EW_BINARY) break;
    default: return NULL;
  }
#undef SR_VEC_OP
  *done = true;
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_fill(const sr_kcall *c) {
  sr_dtype t = c->t[0]->dtype;
  if (t != SR_F32 && t != SR_BF16 && t != SR_I32 && t != SR_F64)
    return sr_errf("dtype %s is not supported on cuda", sr_dtype_name((sr_dtype)t));
  if (t == SR_F64) {  // exact double fill via copy of a double constant is overkill; compute in f32
    // f64 tensors are storage-only on the GPU: a f32 value is exact for the usual fills (0, 1)
  }
  bool done;
  const char *e = try_vec(c, 1, EW_FILL, 0, (float)c->f[0], &done);
  if (e || done) return e;
  return launch_ew(c, 1, EW_FILL, 0, (float)c->f[0]);
}

extern "C" const char *sr_cuda_copy_fp8(const sr_kcall *c);  // kernels/fp8.cu

extern "C" const char *sr_cuda_copy(const sr_kcall *c) {
  // float8: copies within one float8 dtype (contiguous(), transposed copies); casts are F.to_fp8
  sr_dtype t0 = c->t[0]->dtype, t1 = c->t[1]->dtype;
  if ((t0 == SR_F8E4M3 || t0 == SR_F8E5M2) && t0 == t1) return sr_cuda_copy_fp8(c);
  for (int j = 0; j < 2; j++) {
    sr_dtype t = c->t[j]->dtype;
    if (t != SR_F32 && t != SR_BF16 && t != SR_I32 && t != SR_F64)
      return sr_errf("dtype %s is not supported on cuda", sr_dtype_name((sr_dtype)t));
  }
  // same dtype and both contiguous: a plain device copy
  if (c->t[0]->dtype == c->t[1]->dtype && sr_is_contiguous(c->t[0]) && sr_is_contiguous(c->t[1])) {
    size_t n = (size_t)sr_numel(c->t[0]) * sr_dtype_size(c->t[0]->dtype);
    if (n) SR_CUDA_TRY(cudaMemcpyAsync(sr_data(c->t[0]), sr_data(c->t[1]), n, cudaMemcpyDeviceToDevice,
                                       (cudaStream_t)sr_cuda_stream()));
    return NULL;
  }
  bool done;  // f32 <-> bf16 casts of contiguous tensors
  const char *e = try_vec(c, 2, EW_COPY, 0, 0.f, &done);
  if (e || done) return e;
  return launch_ew(c, 2, EW_COPY, 0, 0.f);
}

extern "C" const char *sr_cuda_arange(const sr_kcall *c) {
  sr_tensor *o = c->t[0];
  int64_t n = sr_numel(o);
  if (n == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  unsigned grid = sr_grid_for(n, 256);
  switch (o->dtype) {
    case SR_F32: arange_kernel1<float><<<grid, 256, 0, s>>>((float *)sr_data(o), n, c->f[0], c->f[1]); break;
    case SR_F64: arange_kernel1<double><<<grid, 256, 0, s>>>((double *)sr_data(o), n, c->f[0], c->f[1]); break;
    case SR_I32: arange_kernel1<int><<<grid, 256, 0, s>>>((int *)sr_data(o), n, c->f[0], c->f[1]); break;
    case SR_BF16: arange_bf16_kernel1<<<grid, 256, 0, s>>>((bf16 *)sr_data(o), n, c->f[0], c->f[1]); break;
    default: return sr_errf("dtype %s is not supported on cuda", sr_dtype_name((sr_dtype)o->dtype));
  }
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_unary(const sr_kcall *c) {
  const char *e = check_dtypes(c, 0, 2, false);
  if (e) return e;
  int fn = (int)c->i[0];
  if (fn < 0 || fn >= SR_UNARY_COUNT) return sr_errf("unknown unary function %d", fn);
  bool done;
  e = try_vec(c, 2, EW_UNARY, fn, (float)c->f[0], &done);
  if (e || done) return e;
  return launch_ew(c, 2, EW_UNARY, fn, (float)c->f[0]);
}

extern "C" const char *sr_cuda_unary_backward(const sr_kcall *c) {
  const char *e = check_dtypes(c, 0, 3, false);
  if (e) return e;
  int fn = (int)c->i[0];
  if (fn < 0 || fn >= SR_UNARY_COUNT) return sr_errf("unknown unary function %d", fn);
  if (c->i[1]) {  // t2 is the output y
    if (!sr_unary_output_grad(fn)) return sr_errf("i1 = 1 (gradient from the output) needs tanh, sigmoid or exp");
    fn += SR_UNARY_COUNT;
  }
  bool done;
  e = try_vec(c, 3, EW_UNARY_BWD, fn, (float)c->f[0], &done);
  if (e || done) return e;
  return launch_ew(c, 3, EW_UNARY_BWD, fn, (float)c->f[0]);
}

extern "C" const char *sr_cuda_binary(const sr_kcall *c) {
  const char *e = check_dtypes(c, 0, 3, true);  // i32 goes through float: exact below 2^24
  if (e) return e;
  int fn = (int)c->i[0];
  if (fn < 0 || fn >= SR_BINARY_COUNT) return sr_errf("unknown binary function %d", fn);
  bool done;
  // s * x, s + x with a one-element s (a learned scalar first, as the records write it): swapped,
  // so the vectorised path reads s once as its broadcast b
  if ((fn == SR_BINARY_MUL || fn == SR_BINARY_ADD) && broadcast_scalar(c->t[1]) && !broadcast_scalar(c->t[2])) {
    sr_kcall sw = *c;
    sw.t[1] = c->t[2];
    sw.t[2] = c->t[1];
    e = try_vec(&sw, 3, EW_BINARY, fn, 0.f, &done);
    if (e || done) return e;
  }
  e = try_vec(c, 3, EW_BINARY, fn, 0.f, &done);  // f32/bf16 only; i32 operands take the general path
  if (e || done) return e;
  return launch_ew(c, 3, EW_BINARY, fn, 0.f);
}

extern "C" const char *sr_cuda_where(const sr_kcall *c) {
  const char *e = check_dtypes(c, 0, 1, false);
  if (!e) e = check_dtypes(c, 2, 4, false);
  if (!e) e = check_dtypes(c, 1, 2, true);
  if (e) return e;
  return launch_ew(c, 4, EW_WHERE, 0, 0.f);
}
