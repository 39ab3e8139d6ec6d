/*
** adamw.cu: the optimizer step kernels. The fused AdamW update (PyTorch's AdamW semantics):
**   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
**   p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps)
** of one parameter tensor (adamw) or of a list of them in one launch per 64 (adamw_multi), and
** global gradient-norm clipping over a list of tensors without a host read: the sum of squares
** (sumsq_multi: one launch per 160 tensors, then one that adds the per-block partials in a
** fixed order, so the result is deterministic) and the scale (clip_multi).
** param f32 (master weights) or bf16; grad f32 or bf16; m, v f32 or bf16 (one dtype: bf16 is
** what torch keeps for a bf16 parameter, records 10-17). bf16 values are loaded into f32, the
** update is computed in f32 and each tensor is rounded once when stored (as torch's fused Adam for
** bf16 parameters); the parameter's update uses the unrounded m and v. One pass, 4 elements per
** thread when everything is f32, contiguous and 16-byte aligned.
** Multi-tensor launches (as PyTorch's multi_tensor_apply): the pointers and sizes of up to N
** tensors travel by value as a kernel parameter (a table under 4 KB), so a CUDA graph captures
** them with the launch; one block per MT_CHUNK elements of a tensor finds its tensor by a binary
** search over the table's first-block column.
*/
#include <math.h>      // defines: pow
#include <stdint.h>    // defines: uintptr_t

#include "common.cuh"  // defines: ld_as_float, st_from_float

// ----------------------------------------------------------------------------
// CUDA kernels

struct adamw_hp {
  float lr, b1, b2, eps, wd, bc1, bc2;  // bc = 1 / (1 - beta^step)
  const float *sched;                   // NULL, or device {lr, step} overriding lr, bc1, bc2
};

// the device-side schedule, read by every thread (two cached loads)
__device__ __forceinline__ void adamw_resolve(adamw_hp &h) {
  if (!h.sched) return;
  float step = h.sched[1];
  h.lr = h.sched[0];
  h.bc1 = 1.f / (1.f - powf(h.b1, step));
  h.bc2 = 1.f / (1.f - powf(h.b2, step));
}

// one element: m, v updated in place, the new parameter returned. Every operation is an explicit
// intrinsic (correctly rounded, no contraction left to the compiler, immune to --use_fast_math), so
// the scalar, float4 and multi-tensor kernels give the same bits for the same element.
__device__ __forceinline__ float adamw_one(float p, float g, float &m, float &v, const adamw_hp &h) {
  m = __fmaf_rn(h.b1, m, __fmul_rn(1.f - h.b1, g));
  v = __fmaf_rn(h.b2, v, __fmul_rn(__fmul_rn(1.f - h.b2, g), g));
  p = __fmul_rn(p, __fmaf_rn(-h.lr, h.wd, 1.f));
  float step = __fdiv_rn(__fmul_rn(h.lr, __fmul_rn(m, h.bc1)), __fadd_rn(__fsqrt_rn(__fmul_rn(v, h.bc2)), h.eps));
  return __fsub_rn(p, step);
}

__global__ void adamw_kernel1(void *p, int pdt, const void *g, int gdt, void *m, void *v, int sdt, int64_t n, adamw_hp h) {
  adamw_resolve(h);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float mi = ld_as_float(m, sdt, i), vi = ld_as_float(v, sdt, i);
    float r = adamw_one(ld_as_float(p, pdt, i), ld_as_float(g, gdt, i), mi, vi, h);
    st_from_float(m, sdt, i, mi);
    st_from_float(v, sdt, i, vi);
    st_from_float(p, pdt, i, r);
  }
}

// four f32 elements p[i], g[i], m[i], v[i] in one 16-byte load/store each
__device__ __forceinline__ void adamw_f32x4(float4 *p, const float4 *g, float4 *m, float4 *v, int64_t i,
                                            const adamw_hp &h) {
  float4 pp = p[i], gg = g[i], mm = m[i], vv = v[i];
  pp.x = adamw_one(pp.x, gg.x, mm.x, vv.x, h);
  pp.y = adamw_one(pp.y, gg.y, mm.y, vv.y, h);
  pp.z = adamw_one(pp.z, gg.z, mm.z, vv.z, h);
  pp.w = adamw_one(pp.w, gg.w, mm.w, vv.w, h);
  p[i] = pp; m[i] = mm; v[i] = vv;
}

__global__ void adamw_f32x4_kernel2(float4 *p, const float4 *g, float4 *m, float4 *v, int64_t n4, adamw_hp h) {
  adamw_resolve(h);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x)
    adamw_f32x4(p, g, m, v, i, h);
}

// multi-tensor table: tensor k has D pointers ptr[0..D-1][k], n[k] elements and dtype dt[k]
// (sumsq_multi, clip_multi), and owns blocks block0[k] .. block0[k+1]-1
#define MT_CHUNK 16384

template <int D, int N>
struct mt_table {
  void *ptr[D][N];
  int64_t n[N];
  int block0[N + 1];
  unsigned char dt[N];
  int count;
};
typedef mt_table<4, 64> adamw_table;   // (param, grad, m, v): 2.9 KB
typedef mt_table<1, 160> list_table;   // one tensor each: 3.4 KB
// kernel parameters stay under the classic 4 KB limit
static_assert(sizeof(adamw_table) + sizeof(adamw_hp) <= 4000, "adamw_multi parameters over 4 KB");
static_assert(sizeof(list_table) + 3 * sizeof(float *) <= 4000, "sumsq/clip_multi parameters over 4 KB");

// this block's tensor (the last k with block0[k] <= b; empty tensors are never in a table) and
// the element range [c0, c0 + len) of its chunk
template <int D, int N>
__device__ __forceinline__ int mt_locate(const mt_table<D, N> &t, int64_t &c0, int64_t &len) {
  int b = blockIdx.x, lo = 0, hi = t.count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (t.block0[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  c0 = (int64_t)(b - t.block0[lo]) * MT_CHUNK;
  len = min((int64_t)MT_CHUNK, t.n[lo] - c0);
  return lo;
}

// adamw_multi: TP param, TG grad, TS state (m, v); all-f32 chunks whose four pointers are 16-byte
// aligned go 4 at a time
template <typename TP, typename TG, typename TS>
__global__ void adamw_multi_kernel(adamw_table t, adamw_hp h) {
  adamw_resolve(h);
  int64_t c0, n;
  int k = mt_locate(t, c0, n);
  TP *p = (TP *)t.ptr[0][k] + c0;
  const TG *g = (const TG *)t.ptr[1][k] + c0;
  TS *m = (TS *)t.ptr[2][k] + c0, *v = (TS *)t.ptr[3][k] + c0;
  int64_t j0 = 0;
  if (sizeof(TP) == 4 && sizeof(TG) == 4 && sizeof(TS) == 4 &&
      (((uintptr_t)p | (uintptr_t)g | (uintptr_t)m | (uintptr_t)v) & 15) == 0) {
    for (int64_t j = threadIdx.x; j < n / 4; j += blockDim.x)
      adamw_f32x4((float4 *)p, (const float4 *)g, (float4 *)m, (float4 *)v, j, h);
    j0 = n / 4 * 4;
  }
  for (int64_t j = j0 + threadIdx.x; j < n; j += blockDim.x) {
    float mj = to_f(m[j]), vj = to_f(v[j]);
    float r = adamw_one(to_f(p[j]), to_f(g[j]), mj, vj, h);
    m[j] = from_f<TS>(mj);
    v[j] = from_f<TS>(vj);
    p[j] = from_f<TP>(r);
  }
}

// sumsq_multi, pass 1: the sum of squares of this block's chunk into part[blockIdx.x]
template <typename T>
__device__ __forceinline__ float chunk_sumsq(const T *x, int64_t n) {
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    float f = to_f(x[j]);
    s += f * f;
  }
  return s;
}

__global__ void sumsq_multi_kernel(list_table t, float *part) {
  __shared__ float sh[32];
  int64_t c0, n;
  int k = mt_locate(t, c0, n);
  float s = t.dt[k] == SR_BF16 ? chunk_sumsq((const bf16 *)t.ptr[0][k] + c0, n)
                               : chunk_sumsq((const float *)t.ptr[0][k] + c0, n);
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// sumsq_multi, pass 2 (one block): out = the partials added in a fixed order
__global__ void sumsq_finish_kernel(const float *part, int np, float *out) {
  __shared__ float sh[32];
  float s = 0.f;
  for (int j = threadIdx.x; j < np; j += blockDim.x) s += part[j];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) out[0] = s;
}

// clip_multi: x *= min(1, max_norm / (sqrt(sumsq) + eps)); nothing is written when that is 1
template <typename T>
__device__ __forceinline__ void chunk_scale(T *x, int64_t n, float scale) {
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) x[j] = from_f<T>(to_f(x[j]) * scale);
}

__global__ void clip_multi_kernel(list_table t, const float *sumsq, float max_norm, float eps) {
  float scale = max_norm / (sqrtf(sumsq[0]) + eps);
  if (scale > 1.f) scale = 1.f;  // NaN stays NaN (as torch's clamp)
  if (scale == 1.f) return;
  int64_t c0, n;
  int k = mt_locate(t, c0, n);
  if (t.dt[k] == SR_BF16) chunk_scale((bf16 *)t.ptr[0][k] + c0, n, scale);
  else chunk_scale((float *)t.ptr[0][k] + c0, n, scale);
}

// ----------------------------------------------------------------------------
// kernel launcher

// the hyperparameters of adamw's f0..f4, i0 and optional sched tensor
static const char *adamw_setup(const sr_kcall *c, const sr_tensor *sched, adamw_hp *h) {
  int64_t step = c->i[0] < 1 ? 1 : c->i[0];
  h->lr = (float)c->f[0];
  h->b1 = (float)c->f[1];
  h->b2 = (float)c->f[2];
  h->eps = (float)c->f[3];
  h->wd = (float)c->f[4];
  h->bc1 = (float)(1.0 / (1.0 - pow(c->f[1], (double)step)));
  h->bc2 = (float)(1.0 / (1.0 - pow(c->f[2], (double)step)));
  h->sched = NULL;
  if (sched) {
    if (sched->dtype != SR_F32 || sr_numel(sched) != 2) return sr_errf("sched must be f32 {lr, step}");
    h->sched = (const float *)sr_data(sched);
  }
  return NULL;
}

extern "C" const char *sr_cuda_adamw(const sr_kcall *c) {
  sr_tensor *p = c->t[0], *g = c->t[1], *m = c->t[2], *v = c->t[3];
  if ((p->dtype != SR_F32 && p->dtype != SR_BF16) || (g->dtype != SR_F32 && g->dtype != SR_BF16))
    return sr_errf("param and grad must be f32 or bf16 on cuda");
  if ((m->dtype != SR_F32 && m->dtype != SR_BF16) || v->dtype != m->dtype)
    return sr_errf("optimizer state m, v must be f32 or bf16, of one dtype");
  int64_t n = sr_numel(p);
  if (sr_numel(g) != n || sr_numel(m) != n || sr_numel(v) != n) return sr_errf("param, grad, m, v sizes differ");
  if (n == 0) return NULL;
  adamw_hp h;
  const char *e = adamw_setup(c, sr_karg(c, 4), &h);
  if (e) return e;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  void *pp = sr_data(p), *gp = sr_data(g), *mp = sr_data(m), *vp = sr_data(v);
  bool al = (((uintptr_t)pp | (uintptr_t)gp | (uintptr_t)mp | (uintptr_t)vp) & 15) == 0;
  if (p->dtype == SR_F32 && g->dtype == SR_F32 && m->dtype == SR_F32 && al && n % 4 == 0) {
    adamw_f32x4_kernel2<<<sr_grid_for(n / 4, 256), 256, 0, s>>>((float4 *)pp, (const float4 *)gp, (float4 *)mp,
                                                                 (float4 *)vp, n / 4, h);
  } else {
    adamw_kernel1<<<sr_grid_for(n, 256), 256, 0, s>>>(pp, p->dtype, gp, g->dtype, mp, vp, m->dtype, n, h);
  }
  SR_LAUNCH_CHECK();
  return NULL;
}

// adds tensor x (n elements; pointers ptr[0..D-1]) to table t; true when t is full
template <int D, int N>
static bool mt_add(mt_table<D, N> &t, int &blocks, void *const *ptr, int64_t n, int dt) {
  int k = t.count++;
  for (int d = 0; d < D; d++) t.ptr[d][k] = ptr[d];
  t.n[k] = n;
  t.dt[k] = (unsigned char)dt;
  t.block0[k] = blocks;
  blocks += (int)CEIL_DIV(n, (int64_t)MT_CHUNK);
  t.block0[k + 1] = blocks;
  return t.count == N;
}

template <typename TP, typename TG, typename TS>
static void adamw_multi_launch3(const adamw_table &t, int blocks, const adamw_hp &h, cudaStream_t s) {
  adamw_multi_kernel<TP, TG, TS><<<blocks, 256, 0, s>>>(t, h);
}
template <typename TP, typename TG>
static void adamw_multi_launch(int sdt, const adamw_table &t, int blocks, const adamw_hp &h, cudaStream_t s) {
  if (sdt == SR_BF16) adamw_multi_launch3<TP, TG, bf16>(t, blocks, h, s);
  else adamw_multi_launch3<TP, TG, float>(t, blocks, h, s);
}

extern "C" const char *sr_cuda_adamw_multi(const sr_kcall *c) {
  if (c->nlist % 4) return sr_errf("the list must hold (param, grad, m, v) per parameter");
  if (c->nlist == 0) return NULL;
  int pdt = c->list[0]->dtype, gdt = c->list[1]->dtype, sdt = c->list[2]->dtype;
  if ((pdt != SR_F32 && pdt != SR_BF16) || (gdt != SR_F32 && gdt != SR_BF16))
    return sr_errf("param and grad must be f32 or bf16 on cuda");
  if (sdt != SR_F32 && sdt != SR_BF16) return sr_errf("optimizer state m, v must be f32 or bf16");
  adamw_hp h;
  const char *e = adamw_setup(c, sr_karg(c, 0), &h);
  if (e) return e;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  adamw_table t;
  t.count = 0;
  int blocks = 0;
  for (int k = 0; k < c->nlist; k += 4) {
    sr_tensor *const *x = c->list + k;
    if (x[0]->dtype != pdt || x[1]->dtype != gdt) return sr_errf("every param must have one dtype, every grad one dtype");
    if (x[2]->dtype != sdt || x[3]->dtype != sdt) return sr_errf("every optimizer state m, v must have one dtype");
    int64_t n = sr_numel(x[0]);
    if (sr_numel(x[1]) != n || sr_numel(x[2]) != n || sr_numel(x[3]) != n)
      return sr_errf("parameter %d: param, grad, m, v sizes differ", k / 4 + 1);
    void *ptr[4] = {sr_data(x[0]), sr_data(x[1]), sr_data(x[2]), sr_data(x[3])};
    bool full = n > 0 && mt_add(t, blocks, ptr, n, pdt);
    if ((full || k + 4 == c->nlist) && t.count > 0) {
      if (pdt == SR_F32 && gdt == SR_F32) adamw_multi_launch<float, float>(sdt, t, blocks, h, s);
      else if (pdt == SR_F32) adamw_multi_launch<float, bf16>(sdt, t, blocks, h, s);
      else if (gdt == SR_F32) adamw_multi_launch<bf16, float>(sdt, t, blocks, h, s);
      else adamw_multi_launch<bf16, bf16>(sdt, t, blocks, h, s);
      SR_LAUNCH_CHECK();
      t.count = 0;
      blocks = 0;
    }
  }
  return NULL;
}

// the list's tensors (f32 or bf16) through tables of list_table's size: calls launch(table,
// blocks, first_block) once per full table and once for the rest, and sets *total to the blocks
// of all (sumsq_multi counts them first with a launch that does nothing)
template <typename L>
static const char *list_each(const sr_kcall *c, int *total, L launch) {
  list_table t;
  t.count = 0;
  int blocks = 0, first = 0;
  for (int k = 0; k < c->nlist; k++) {
    sr_tensor *x = c->list[k];
    if (x->dtype != SR_F32 && x->dtype != SR_BF16) return sr_errf("list tensor %d: f32 or bf16 on cuda", k + 1);
    int64_t n = sr_numel(x);
    void *ptr = sr_data(x);
    bool full = n > 0 && mt_add(t, blocks, &ptr, n, x->dtype);
    if ((full || k + 1 == c->nlist) && t.count > 0) {
      const char *e = launch(t, blocks, first);
      if (e) return e;
      first += blocks;
      t.count = 0;
      blocks = 0;
    }
  }
  *total = first;
  return NULL;
}

extern "C" const char *sr_cuda_sumsq_multi(const sr_kcall *c) {
  sr_tensor *out = c->t[0];
  if (out->dtype != SR_F32 || sr_numel(out) != 1) return sr_errf("out must be one f32 element on cuda");
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int total = 0;
  const char *e = list_each(c, &total, [](const list_table &, int, int) -> const char * { return NULL; });
  if (e) return e;
  if (total == 0) {
    SR_CUDA_TRY(cudaMemsetAsync(sr_data(out), 0, sizeof(float), s));
    return NULL;
  }
  float *part = (float *)sr_cuda_malloc((size_t)total * sizeof(float));
  if (!part) return sr_errf("out of memory (sumsq_multi scratch)");
  e = list_each(c, &total, [&](const list_table &t, int blocks, int first) -> const char * {
    sumsq_multi_kernel<<<blocks, 256, 0, s>>>(t, part + first);
    cudaError_t ce = cudaGetLastError();
    return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  });
  if (!e) {
    sumsq_finish_kernel<<<1, 1024, 0, s>>>(part, total, (float *)sr_data(out));
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) e = sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  }
  sr_cuda_free(part);
  return e;
}

extern "C" const char *sr_cuda_clip_multi(const sr_kcall *c) {
  sr_tensor *ss = c->t[0];
  if (ss->dtype != SR_F32 || sr_numel(ss) != 1) return sr_errf("the sum of squares must be one f32 element on cuda");
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  const float *sp = (const float *)sr_data(ss);
  float max_norm = (float)c->f[0], eps = (float)c->f[1];
  int total = 0;
  return list_each(c, &total, [&](const list_table &t, int blocks, int) -> const char * {
    clip_multi_kernel<<<blocks, 256, 0, s>>>(t, sp, max_norm, eps);
    cudaError_t ce = cudaGetLastError();
    return ce == cudaSuccess ? NULL : sr_errf("%s (%s)", cudaGetErrorString(ce), cudaGetErrorName(ce));
  });
}
