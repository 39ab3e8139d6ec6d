/*
** reduce.cu: reductions over one dim (sum, mean, max with index, sum of squares) of strided
** tensors, row softmax / log_softmax with their backward, and dot (the sum of a * b: per-block
** f32 partials, then one block adds them in a fixed order, so the result is deterministic; kernel 2,
** 16-byte loads, where both operands are 16-byte aligned; SR_DOT_V1=1: kernel 1 everywhere).
** Reductions accumulate in f32. A reduction whose dim has unit stride uses a warp per output;
** otherwise a thread per output walks the dim (coalesced across neighbouring outputs), split
** over several blocks with f32 atomics when there are few outputs (sum-like functions only).
** Gradient contract: softmax_backward writes dx (=).
*/
#include "common.cuh"  // defines: sr_ew_desc, warp_sum, block_sum, ld_as_float

// ----------------------------------------------------------------------------
// CUDA kernels

struct red_args {
  sr_ew_desc d;  // over out's shape: operand 0 out, 1 x (dim removed), 2 idx (or a copy of out)
  int64_t R, rs; // length and stride of the reduced dim in x
  int fn;
  bool has_idx;
};

__device__ __forceinline__ void red_init(int fn, float &acc, int &arg) {
  acc = fn == SR_REDUCE_MAX ? -INFINITY : 0.f;
  arg = 0;
}
__device__ __forceinline__ void red_step(int fn, float &acc, int &arg, float v, int r) {
  if (fn == SR_REDUCE_MAX) {
    if (v > acc || (v != v && acc == acc)) { acc = v; arg = r; }  // NaN wins, first max wins
  } else if (fn == SR_REDUCE_SUMSQ) {
    acc += v * v;
  } else {
    acc += v;
  }
}
// combine (acc, arg) with another partial (b, barg); arg ties go to the smaller index
__device__ __forceinline__ void red_merge(int fn, float &acc, int &arg, float b, int barg) {
  if (fn == SR_REDUCE_MAX) {
    bool an = acc != acc, bn = b != b;
    if ((bn && !an) || (!an && !bn && (b > acc || (b == acc && barg < arg))) || (an && bn && barg < arg)) {
      acc = b; arg = barg;
    }
  } else {
    acc += b;
  }
}

__device__ __forceinline__ void red_store(const red_args &a, const int64_t *off, float acc, int arg) {
  if (a.fn == SR_REDUCE_MEAN) acc /= (float)a.R;
  st_from_float(a.d.p[0], a.d.dt[0], off[0], acc);
  if (a.has_idx) ((int *)a.d.p[2])[off[2]] = arg;
}

// one warp per output (reduced dim has unit stride)
__global__ void reduce_rows_kernel1(red_args a) {
  int64_t o = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (o >= a.d.n) return;
  int64_t off[SR_EW_MAXOP];
  sr_ew_offsets(a.d, o, off);
  float acc; int arg;
  red_init(a.fn, acc, arg);
  for (int64_t r = lane; r < a.R; r += 32) red_step(a.fn, acc, arg, ld_as_float(a.d.p[1], a.d.dt[1], off[1] + r), (int)r);
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) {
    float b = __shfl_xor_sync(0xffffffffu, acc, s);
    int barg = __shfl_xor_sync(0xffffffffu, arg, s);
    red_merge(a.fn, acc, arg, b, barg);
  }
  if (lane == 0) red_store(a, off, acc, arg);
}

// one thread per output; blockIdx.y splits the dim into chunks whose partial sums go to an f32
// scratch buffer with atomics (part != NULL), else the thread stores the result itself
__global__ void reduce_cols_kernel1(red_args a, float *part, int64_t chunk) {
  int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= a.d.n) return;
  int64_t off[SR_EW_MAXOP];
  sr_ew_offsets(a.d, o, off);
  int64_t r0 = blockIdx.y * chunk, r1 = min(a.R, r0 + chunk);
  float acc; int arg;
  red_init(a.fn, acc, arg);
  for (int64_t r = r0; r < r1; r++) red_step(a.fn, acc, arg, ld_as_float(a.d.p[1], a.d.dt[1], off[1] + r * a.rs), (int)r);
  if (part) atomicAdd(&part[o], acc);
  else red_store(a, off, acc, arg);
}

// few long unit-stride rows (e.g. the squared norm of a whole gradient): blockIdx.y splits each
// row into chunks, a block reduces a chunk and adds it to an f32 partial (sum-like functions)
__global__ void reduce_rows_split_kernel1(red_args a, float *part, int64_t chunk) {
  __shared__ float sh[32];
  int64_t o = blockIdx.x;
  int64_t off[SR_EW_MAXOP];
  sr_ew_offsets(a.d, o, off);
  int64_t r0 = blockIdx.y * chunk, r1 = min(a.R, r0 + chunk);
  float acc = 0.f;
  int arg = 0;
  for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) red_step(a.fn, acc, arg, ld_as_float(a.d.p[1], a.d.dt[1], off[1] + r), (int)r);
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) atomicAdd(&part[o], acc);
}

__global__ void reduce_finish_kernel1(red_args a, const float *part) {
  int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= a.d.n) return;
  int64_t off[SR_EW_MAXOP];
  sr_ew_offsets(a.d, o, off);
  red_store(a, off, part[o], 0);
}

// softmax over the rows of a contiguous [N,C]: a block per row, three passes over the row
// (max, sum of exp, write); the row stays in L2 between passes
__global__ void softmax_forward_kernel1(void *out, int odt, const void *x, int xdt, int64_t C, int log) {
  __shared__ float sh[32];
  int64_t base = blockIdx.x * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, ld_as_float(x, xdt, base + c));
  m = block_max(m, sh);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(ld_as_float(x, xdt, base + c) - m);
  s = block_sum(s, sh);
  float ls = logf(s), inv = 1.f / s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = ld_as_float(x, xdt, base + c) - m;
    st_from_float(out, odt, base + c, log ? v - ls : expf(v) * inv);
  }
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
__global__ void softmax_backward_kernel1(void *dx, int dxdt, const void *dy, int dydt, const void *y, int ydt,
                                         int64_t C, int log) {
  __shared__ float sh[32];
  int64_t base = blockIdx.x * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float g = ld_as_float(dy, dydt, base + c);
    s += log ? g : g * ld_as_float(y, ydt, base + c);
  }
  s = block_sum(s, sh);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float g = ld_as_float(dy, dydt, base + c), yv = ld_as_float(y, ydt, base + c);
    st_from_float(dx, dxdt, base + c, log ? g - expf(yv) * s : yv * (g - s));
  }
}

// dot, pass 1: the sum of a * b over this block's grid-stride elements into part[blockIdx.x]
template <typename T>
__global__ void dot_partial_kernel1(const T *a, const T *b, int64_t n, float *part) {
  __shared__ float sh[32];
  float s = 0.f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s = fmaf(to_f(a[i]), to_f(b[i]), s);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// dot, pass 1 with 16-byte loads (a and b 16-byte aligned): each thread sums the vectors of 8
// elements (ld8: one 16-byte load of bf16, two of f32) of its grid-stride positions, two vectors of
// each operand in flight and two sums (kernel 1's scalar loads left the memory system idle between
// dependent FMAs: 113 us for [65,536 x 768] bf16 on an H100, 2x its bytes' time); block 0 adds the
// n % 8 elements past the last vector. A fixed order for a given n, as kernel 1's (another order).
template <typename T>
__global__ void dot_partial_kernel2(const T *a, const T *b, int64_t n, float *part) {
  __shared__ float sh[32];
  const int64_t nv = n >> 3, stride = (int64_t)gridDim.x * blockDim.x;
  float s0 = 0.f, s1 = 0.f;
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (; i + stride < nv; i += 2 * stride) {
    float fa[8], fb[8], ga[8], gb[8];
    ld8(a, i, fa);
    ld8(b, i, fb);
    ld8(a, i + stride, ga);
    ld8(b, i + stride, gb);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      s0 = fmaf(fa[k], fb[k], s0);
      s1 = fmaf(ga[k], gb[k], s1);
    }
  }
  if (i < nv) {
    float fa[8], fb[8];
    ld8(a, i, fa);
    ld8(b, i, fb);
#pragma unroll
    for (int k = 0; k < 8; k++) s0 = fmaf(fa[k], fb[k], s0);
  }
  if (blockIdx.x == 0)
    for (int64_t j = (nv << 3) + threadIdx.x; j < n; j += blockDim.x) s1 = fmaf(to_f(a[j]), to_f(b[j]), s1);
  float s = block_sum(s0 + s1, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// dot, pass 2 (one block): out = the partials added in a fixed order
__global__ void dot_finish_kernel1(const float *part, int np, float *out) {
  __shared__ float sh[32];
  float s = 0.f;
  for (int j = threadIdx.x; j < np; j += blockDim.x) s += part[j];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = s;
}

// ----------------------------------------------------------------------------
// kernel launchers

static const char *float_only(const sr_tensor *t, int arg) {
  if (t->dtype == SR_F32 || t->dtype == SR_BF16) return NULL;
  return sr_errf("dtype %s of argument %d is not supported on cuda (use f32 or bf16)", sr_dtype_name((sr_dtype)t->dtype), arg);
}

extern "C" const char *sr_cuda_reduce(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1], *idx = c->nt > 2 ? c->t[2] : NULL;
  int fn = (int)c->i[0], dim = (int)c->i[1];
  const char *e = float_only(out, 1);
  if (!e) e = float_only(x, 2);
  if (e) return e;
  if (fn < 0 || fn >= SR_REDUCE_COUNT) return sr_errf("unknown reduce function %d", fn);
  if (dim < 0 || dim >= x->ndim) return sr_errf("dim %d out of range", dim);
  if (idx && (fn != SR_REDUCE_MAX || idx->dtype != SR_I32)) idx = NULL;
  red_args a;
  a.R = x->shape[dim];
  a.rs = x->stride[dim];
  a.fn = fn;
  a.has_idx = idx != NULL;
  sr_tensor xv = *x;  // x with the reduced dim dropped to size 1: shares out's shape
  xv.shape[dim] = 1;
  sr_tensor *ops[3] = {out, &xv, idx ? idx : out};
  if (!sr_ew_make(&a.d, ops, 3)) return sr_errf("output shape does not match the input with dim %d kept", dim);
  if (a.d.n == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (a.R == 0) {  // empty reduction: sum 0, mean NaN, max -inf
    sr_kcall f = *c;
    f.nt = 1;
    f.f[0] = fn == SR_REDUCE_MAX ? -INFINITY : fn == SR_REDUCE_MEAN ? NAN : 0.0;
    return sr_cuda_fill(&f);
  }
  if (a.rs == 1 && fn != SR_REDUCE_MAX && a.d.n < 1024 && a.R >= 65536) {
    int64_t split = min(CEIL_DIV(a.R, (int64_t)16384), CEIL_DIV((int64_t)1056, a.d.n));
    int64_t chunk = CEIL_DIV(a.R, split);
    split = CEIL_DIV(a.R, chunk);
    float *part = (float *)sr_cuda_malloc((size_t)a.d.n * sizeof(float));
    if (!part) return sr_errf("out of memory (reduce scratch)");
    cudaError_t ce = cudaMemsetAsync(part, 0, (size_t)a.d.n * sizeof(float), s);
    if (ce == cudaSuccess) {
      reduce_rows_split_kernel1<<<dim3((unsigned)a.d.n, (unsigned)split), 256, 0, s>>>(a, part, chunk);
      reduce_finish_kernel1<<<(unsigned)CEIL_DIV(a.d.n, (int64_t)256), 256, 0, s>>>(a, part);
      ce = cudaGetLastError();
    }
    sr_cuda_free(part);
    if (ce != cudaSuccess) return sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
    return NULL;
  }
  if (a.rs == 1 && a.R >= 32) {
    int64_t threads = a.d.n * 32;
    reduce_rows_kernel1<<<(unsigned)CEIL_DIV(threads, 256), 256, 0, s>>>(a);
    SR_LAUNCH_CHECK();
    return NULL;
  }
  int64_t nb = CEIL_DIV(a.d.n, 256);
  int64_t split = 1;
  if (fn != SR_REDUCE_MAX && nb < 264 && a.R > 256) {
    split = min(CEIL_DIV(a.R, (int64_t)64), CEIL_DIV((int64_t)528, nb));
    if (split > 65535) split = 65535;
  }
  if (split == 1) {
    reduce_cols_kernel1<<<dim3((unsigned)nb, 1), 256, 0, s>>>(a, NULL, a.R);
    SR_LAUNCH_CHECK();
    return NULL;
  }
  int64_t chunk = CEIL_DIV(a.R, split);
  split = CEIL_DIV(a.R, chunk);
  float *part = (float *)sr_cuda_malloc((size_t)a.d.n * sizeof(float));
  if (!part) return sr_errf("out of memory (reduce scratch)");
  const char *err = NULL;
  cudaError_t ce = cudaMemsetAsync(part, 0, (size_t)a.d.n * sizeof(float), s);
  if (ce == cudaSuccess) {
    reduce_cols_kernel1<<<dim3((unsigned)nb, (unsigned)split), 256, 0, s>>>(a, part, chunk);
    reduce_finish_kernel1<<<(unsigned)nb, 256, 0, s>>>(a, part);
    ce = cudaGetLastError();
  }
  if (ce != cudaSuccess) err = sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  sr_cuda_free(part);  // stream-ordered reuse: later work is queued after the kernels above
  return err;
}

static int softmax_block(int64_t C) { return C >= 1024 ? 512 : C >= 256 ? 256 : C > 64 ? 128 : 64; }

extern "C" const char *sr_cuda_softmax(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  const char *e = float_only(out, 1);
  if (!e) e = float_only(x, 2);
  if (e) return e;
  int64_t C = x->shape[x->ndim - 1], N = C ? sr_numel(x) / C : 0;
  if (N == 0 || C == 0) return NULL;
  softmax_forward_kernel1<<<(unsigned)N, softmax_block(C), 0, (cudaStream_t)sr_cuda_stream()>>>(
      sr_data(out), out->dtype, sr_data(x), x->dtype, C, (int)c->i[0]);
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_softmax_backward(const sr_kcall *c) {
  sr_tensor *dx = c->t[0], *dy = c->t[1], *y = c->t[2];
  const char *e = float_only(dx, 1);
  if (!e) e = float_only(dy, 2);
  if (!e) e = float_only(y, 3);
  if (e) return e;
  int64_t C = y->shape[y->ndim - 1], N = C ? sr_numel(y) / C : 0;
  if (N == 0 || C == 0) return NULL;
  softmax_backward_kernel1<<<(unsigned)N, softmax_block(C), 0, (cudaStream_t)sr_cuda_stream()>>>(
      sr_data(dx), dx->dtype, sr_data(dy), dy->dtype, sr_data(y), y->dtype, C, (int)c->i[0]);
  SR_LAUNCH_CHECK();
  return NULL;
}

extern "C" const char *sr_cuda_dot(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *a = c->t[1], *b = c->t[2];
  if (out->dtype != SR_F32 || sr_numel(out) != 1) return sr_errf("out must be one f32 element on cuda");
  if (a->dtype != b->dtype || (a->dtype != SR_F32 && a->dtype != SR_BF16)) return sr_errf("a and b must be both f32 or both bf16 on cuda");
  int64_t n = sr_numel(a);
  if (sr_numel(b) != n) return sr_errf("a and b sizes differ");
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (n == 0) {
    SR_CUDA_TRY(cudaMemsetAsync(sr_data(out), 0, sizeof(float), s));
    return NULL;
  }
  // blocks fixed by n alone (not by the device), so the sum's order is the same everywhere
  int blocks = (int)(CEIL_DIV(n, (int64_t)(256 * 8)) < 1024 ? CEIL_DIV(n, (int64_t)(256 * 8)) : 1024);
  float *part = (float *)sr_cuda_malloc((size_t)blocks * sizeof(float));
  if (!part) return sr_errf("out of memory (dot scratch)");
  static int v1 = -1;   // SR_DOT_V1=1: kernel 1 (record 12: 49.0 -> 33.7 ms of dots a step with 2, H100)
  bool vec = !sr_env_is(&v1, "SR_DOT_V1", "1") && ((uintptr_t)sr_data(a) & 15) == 0 && ((uintptr_t)sr_data(b) & 15) == 0;
  if (a->dtype == SR_BF16) {
    const bf16 *pa = (const bf16 *)sr_data(a), *pb = (const bf16 *)sr_data(b);
    if (vec) dot_partial_kernel2<bf16><<<blocks, 256, 0, s>>>(pa, pb, n, part);
    else dot_partial_kernel1<bf16><<<blocks, 256, 0, s>>>(pa, pb, n, part);
  } else {
    const float *pa = (const float *)sr_data(a), *pb = (const float *)sr_data(b);
    if (vec) dot_partial_kernel2<float><<<blocks, 256, 0, s>>>(pa, pb, n, part);
    else dot_partial_kernel1<float><<<blocks, 256, 0, s>>>(pa, pb, n, part);
  }
  dot_finish_kernel1<<<1, 1024, 0, s>>>(part, blocks, (float *)sr_data(out));
  cudaError_t ce = cudaGetLastError();
  sr_cuda_free(part);  // stream-ordered reuse (one stream)
  return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
}
