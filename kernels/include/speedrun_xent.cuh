// speedrun_xent.cuh: the cross-entropy's row arithmetic, shared by kernels/softmax_xent.cu and the
// loss kernels the step compiler generates (host/jit/fuse_cuda.c, NVRTC): the row split into
// 16-byte vectors, the online max/exp-sum, and the fused driver below. Both compile with
// --use_fast_math, and the fused driver walks a row as kernel 3 does (the same threads own the
// same elements and accumulate them in the same order), so its loss, lse and gradient are the
// unfused kernels' numbers.
#pragma once

#include "speedrun_device.cuh"  // defines: sr_unpack8, sr_pack8, block_sum, block_max, sr_report_index_error, sr_round_bf16_n

#define XENT_LOG2E 1.4426950408889634f

// 16 bytes of T (8 bf16 or 4 f32) as floats, and back (bf16 rounded to nearest)
template <typename T> struct xent_vec;
template <> struct xent_vec<__nv_bfloat16> {
  static constexpr int N = 8;
  static __device__ __forceinline__ void unpack(uint4 v, float *f) { sr_unpack8(v, f); }
  static __device__ __forceinline__ uint4 pack(const float *f) { return sr_pack8(f); }
};
template <> struct xent_vec<float> {
  static constexpr int N = 4;
  static __device__ __forceinline__ void unpack(uint4 v, float *f) {
    f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
  }
  static __device__ __forceinline__ uint4 pack(const float *f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
};

// a row of V elements at p split at 16-byte boundaries: head elements [0, head) before the first
// boundary, nv vectors of 16 bytes from element head, the tail [tail0, V); mis is p's element
// offset within its 16 bytes. A cached row sits in shared memory as in global memory: element j
// at element mis + j, vector k at vector k + (mis > 0).
struct xent_row {
  int mis, head, nv, tail0;
};
template <typename T>
__device__ __forceinline__ xent_row xent_split(const T *p, int V) {
  constexpr int N = xent_vec<T>::N;
  xent_row g;
  g.mis = (int)(((unsigned long long)p & 15) / sizeof(T));
  g.head = g.mis ? min(N - g.mis, V) : 0;
  g.nv = (V - g.head) / N;
  g.tail0 = g.head + g.nv * N;
  return g;
}
// the row's r-th element outside the vectors (head, then tail): r < head + V - tail0 < 2N
__device__ __forceinline__ int xent_edge(const xent_row &g, int r) { return r < g.head ? r : g.tail0 + r - g.head; }

// online max m and exp-sum s (relative to m) with value v, then with the N values f
__device__ __forceinline__ void xent_acc1(float &m, float &s, float v) {
  if (v > m) {
    s = s * exp2f((m - v) * XENT_LOG2E) + 1.f;
    m = v;
  } else if (m != -INFINITY) {
    s += exp2f(fmaf(v, XENT_LOG2E, -m * XENT_LOG2E));
  }
}
template <int N>
__device__ __forceinline__ void xent_acc(float &m, float &s, const float *f) {
  float mx = f[0];
#pragma unroll
  for (int k = 1; k < N; k++) mx = fmaxf(mx, f[k]);
  if (mx > m) {  // rare after the first vectors: the row's running max grows
    s *= exp2f((m - mx) * XENT_LOG2E);
    m = mx;
  }
  if (m == -INFINITY) return;  // every value so far -inf
  const float mL = m * XENT_LOG2E;
#pragma unroll
  for (int k = 0; k < N; k++) s += exp2f(fmaf(f[k], XENT_LOG2E, -mL));
}


// ----------------------------------------------------------------------------
// the fused loss driver (core/fuse.h, 4.): the logits of row n are computed from the group's
// loads by the generated sr_xl_vals (never read from memory), the loss and lse as kernel 3's
// forward, then the gradient written over the logits' storage, through the generated epilogue
// when there is one; the group's live stores are written in that second pass, after the values
// they may overwrite were read. The generated source defines, before including this header,
// SR_XL_NV (values per element: loads, prologue ops, the gradient, epilogue ops), SR_XL_LVAL (the
// logits' value), SR_XL_D (the gradient's), SR_XL_OUT (the value stored over the logits), and
// after it sr_xl_vals, sr_xl_epi and sr_xl_store (declared here).

#ifdef SR_XL_NV  // a generated loss kernel

// the kernel's argument (host/jit/fuse_cuda.c has the same layout)
struct sr_xent_kargs {
  long long N, V;             // rows, row length (the logits are contiguous [N, V])
  void *ptr[32];              // the group's loads, then its live stores (a deferred group's backward: its
                              // loads, the chain's own loads, its output)
  long long bcast;            // bit k: load k is one element
  float p[16], q[16];         // the prologue's and the epilogue's scalars
  float *losses, *lse;        // [N] f32
  const int *targets;         // [N]
  void *logits;               // the logits' storage at row 0: the gradient (or the epilogue's value) goes there
  const float *dscale;        // one element, or NULL for 1
  sr_dev_error *err;          // the deferred error record
  int ignore, pad;
};

// v[k][e]: value k of flat element i + e (loads, then the prologue's ops)
template <int N> __device__ void sr_xl_vals(const sr_xent_kargs &a, long long i, float (*v)[N]);
// the chain's values from v (SR_XL_D holds the gradient as stored; a deferred group's backward
// also loads the chain's own loads of elements i ..)
template <int N> __device__ void sr_xl_epi(const sr_xent_kargs &a, long long i, float (*v)[N]);
// the group's live stores of elements i .. i + N - 1
template <int N> __device__ void sr_xl_store(const sr_xent_kargs &a, long long i, float (*v)[N]);
// a deferred group's backward: the chain's result (SR_XL_OUT) of elements i .. into its output
template <int N> __device__ void sr_xl_out(const sr_xent_kargs &a, long long i, float (*v)[N]);

// N consecutive elements at p as floats, and back: one or two 16-byte (or 8-byte) accesses when
// p is aligned for them, else element by element
template <int N> __device__ __forceinline__ void sr_xl_ld(const float *p, float *f) {
  if (N % 4 == 0 && ((unsigned long long)p & 15) == 0) {
#pragma unroll
    for (int q = 0; q < N / 4; q++) {
      float4 w = ((const float4 *)p)[q];
      f[4 * q] = w.x, f[4 * q + 1] = w.y, f[4 * q + 2] = w.z, f[4 * q + 3] = w.w;
    }
  } else {
#pragma unroll
    for (int e = 0; e < N; e++) f[e] = p[e];
  }
}
template <int N> __device__ __forceinline__ void sr_xl_ld(const __nv_bfloat16 *p, float *f) {
  if (N == 8 && ((unsigned long long)p & 15) == 0) {
    xent_vec<__nv_bfloat16>::unpack(*(const uint4 *)p, f);
  } else if (N == 4 && ((unsigned long long)p & 7) == 0) {
    uint2 w = *(const uint2 *)p;
    float2 lo = __bfloat1622float2(*(const __nv_bfloat162 *)&w.x), hi = __bfloat1622float2(*(const __nv_bfloat162 *)&w.y);
    f[0] = lo.x, f[1] = lo.y, f[2] = hi.x, f[3] = hi.y;
  } else {
#pragma unroll
    for (int e = 0; e < N; e++) f[e] = __bfloat162float(p[e]);
  }
}
template <int N> __device__ __forceinline__ void sr_xl_st(float *p, const float *f) {
  if (N % 4 == 0 && ((unsigned long long)p & 15) == 0) {
#pragma unroll
    for (int q = 0; q < N / 4; q++) ((float4 *)p)[q] = make_float4(f[4 * q], f[4 * q + 1], f[4 * q + 2], f[4 * q + 3]);
  } else {
#pragma unroll
    for (int e = 0; e < N; e++) p[e] = f[e];
  }
}
template <int N> __device__ __forceinline__ void sr_xl_st(__nv_bfloat16 *p, const float *f) {
  if (N == 8 && ((unsigned long long)p & 15) == 0) {
    *(uint4 *)p = xent_vec<__nv_bfloat16>::pack(f);
  } else {
#pragma unroll
    for (int e = 0; e < N; e++) p[e] = __float2bfloat16(f[e]);
  }
}

template <int N> __device__ __forceinline__ void sr_xl_round(float *v, float) {}
template <int N> __device__ __forceinline__ void sr_xl_round(float *v, __nv_bfloat16) { sr_round_bf16_n<N>(v); }

// the gradient of N elements from j0 (row-relative) given their logits: as kernel 3 computes it
// (an FFMA with the one-hot term where the target may be among them), rounded to T
template <typename T, int N>
__device__ __forceinline__ void sr_xl_grad(float (*v)[N], int j0, int t, float lL, float dl, bool zero, bool target) {
#pragma unroll
  for (int e = 0; e < N; e++) {
    const float p = exp2f(fmaf(v[SR_XL_LVAL][e], XENT_LOG2E, -lL));
    v[SR_XL_D][e] = zero ? 0.f : target ? fmaf(dl, p, j0 + e == t ? -dl : 0.f) : dl * p;
  }
  sr_xl_round<N>(v[SR_XL_D], T());
}

// the second pass over a row split as g (from element base of the loop): values, the gradient
// (lL the lse times log2 e, dl its scale), the chain, then the stores: the forward's (its live
// stores and the result over the logits at x), or BACK the deferred backward's output
template <typename T, int NT, bool BACK>
__device__ __forceinline__ void sr_xl_grad_row(const sr_xent_kargs &a, const xent_row &g, long long base, T *x, int t,
                                               float lL, float dl, bool zero) {
  constexpr int N = xent_vec<T>::N;
  if (threadIdx.x < g.head + (int)a.V - g.tail0) {
    const int j = xent_edge(g, threadIdx.x);
    float v[SR_XL_NV][1];
    sr_xl_vals<1>(a, base + j, v);
    sr_xl_grad<T, 1>(v, j, t, lL, dl, zero, true);
    sr_xl_epi<1>(a, base + j, v);
    if (BACK) sr_xl_out<1>(a, base + j, v);
    else sr_xl_store<1>(a, base + j, v), sr_xl_st<1>(x + j, v[SR_XL_OUT]);
  }
  for (int k = threadIdx.x; k < g.nv; k += NT) {
    const int j0 = g.head + k * N;
    float v[SR_XL_NV][N];
    sr_xl_vals<N>(a, base + j0, v);
    sr_xl_grad<T, N>(v, j0, t, lL, dl, zero, !zero && (unsigned)(t - j0) < (unsigned)N);
    sr_xl_epi<N>(a, base + j0, v);
    if (BACK) sr_xl_out<N>(a, base + j0, v);
    else sr_xl_store<N>(a, base + j0, v), sr_xl_st<N>(x + j0, v[SR_XL_OUT]);
  }
}

// row blockIdx.x with NT threads; T the logits' dtype. DEFER: the loss and lse only (and the live
// stores); the gradient waits for sr_xent_back
template <typename T, int NT, bool DEFER>
__device__ void sr_xent_fused(const sr_xent_kargs &a) {
  __shared__ float red[32];
  constexpr int N = xent_vec<T>::N;
  const long long n = blockIdx.x, base = n * a.V;
  const int V = (int)a.V;
  T *x = (T *)a.logits + base;
  const int t = a.targets[n];
  const bool ignored = t == a.ignore, bad = !ignored && (t < 0 || t >= V);
  const xent_row g = xent_split(x, V);
  const int nedge = g.head + V - g.tail0;
  float xt = 0.f;
  if (threadIdx.x == 0 && !ignored && !bad) {
    float v[SR_XL_NV][1];
    sr_xl_vals<1>(a, base + t, v);
    xt = v[SR_XL_LVAL][0];
  }
  float m = -INFINITY, s = 0.f;
  if (threadIdx.x < nedge) {
    float v[SR_XL_NV][1];
    sr_xl_vals<1>(a, base + xent_edge(g, threadIdx.x), v);
    xent_acc1(m, s, v[SR_XL_LVAL][0]);
  }
#ifdef SR_XL_UNROLL  // SR_FUSE_XL_UNROLL (host/jit/fuse_cuda.c): this pass unrolled, its loads batched (it stores nothing)
  constexpr int XLU = SR_XL_UNROLL;
#pragma unroll XLU
#endif
  for (int k = threadIdx.x; k < g.nv; k += NT) {
    float v[SR_XL_NV][N];
    sr_xl_vals<N>(a, base + g.head + (long long)k * N, v);
    xent_acc<N>(m, s, v[SR_XL_LVAL]);
  }
  const float M = block_max(m, red);
  s = m == -INFINITY ? 0.f : s * exp2f((m - M) * XENT_LOG2E);
  const float l = M + logf(block_sum(s, red));
  if (threadIdx.x == 0) {
    a.lse[n] = l;
    if (ignored) a.losses[n] = 0.f;
    else if (bad) {
      a.losses[n] = __int_as_float(0x7fffffff);
      sr_report_index_error(a.err, 2, n, t, V);
    } else a.losses[n] = l - xt;
  }
  if (DEFER) {  // the live stores (the planner keeps them off the loads, which the backward reads again)
    if (!SR_XL_STORES) return;
    if (threadIdx.x < nedge) {
      const int j = xent_edge(g, threadIdx.x);
      float v[SR_XL_NV][1];
      sr_xl_vals<1>(a, base + j, v);
      sr_xl_store<1>(a, base + j, v);
    }
    for (int k = threadIdx.x; k < g.nv; k += NT) {
      float v[SR_XL_NV][N];
      sr_xl_vals<N>(a, base + g.head + (long long)k * N, v);
      sr_xl_store<N>(a, base + g.head + (long long)k * N, v);
    }
    return;
  }
  const bool zero = ignored || bad;
  sr_xl_grad_row<T, NT, false>(a, g, base, x, t, l * XENT_LOG2E, zero ? 0.f : (a.dscale ? *a.dscale : 1.f), zero);
}

// a deferred loss group's backward, row blockIdx.x with NT threads: the logits again from the
// group's loads, the gradient from the forward's lse as kernel 3 computes it (the same bits for
// every element whatever the thread that computes it: dl * p, or the FFMA dl * p - dl at the
// target), the chain, its output. The row is split as the forward splits it (by the logits'
// storage, which is allocated though never written), so loads laid out like the logits take their
// 16-byte paths.
template <typename T, int NT>
__device__ void sr_xent_back(const sr_xent_kargs &a) {
  const long long n = blockIdx.x, base = n * a.V;
  const int V = (int)a.V, t = a.targets[n];
  const bool zero = t == a.ignore || t < 0 || t >= V;
  T *x = (T *)a.logits + base;
  sr_xl_grad_row<T, NT, true>(a, xent_split(x, V), base, x, t, a.lse[n] * XENT_LOG2E,
                              zero ? 0.f : (a.dscale ? *a.dscale : 1.f), zero);
}

#endif  // SR_XL_NV
