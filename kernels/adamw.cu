/*
** adamw.cu: the fused AdamW update of one parameter tensor (PyTorch's AdamW semantics):
**   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
**   p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps)
** param f32 (master weights) or bf16; grad f32 or bf16; m, v f32. One pass, 4 elements per
** thread when everything is f32, contiguous and 16-byte aligned. A multi-tensor version (one
** launch over a list of parameters) is the next step.
*/
#include <math.h>      // defines: pow

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

__device__ __forceinline__ float adamw_one(float p, float g, float &m, float &v, const adamw_hp &h) {
  m = h.b1 * m + (1.f - h.b1) * g;
  v = h.b2 * v + (1.f - h.b2) * g * g;
  p *= 1.f - h.lr * h.wd;
  return p - h.lr * (m * h.bc1) / (sqrtf(v * h.bc2) + h.eps);
}

__global__ void adamw_kernel1(void *p, int pdt, const void *g, int gdt, float *m, float *v, int64_t n, adamw_hp h) {
  adamw_resolve(h);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float mi = m[i], vi = v[i];
    float r = adamw_one(ld_as_float(p, pdt, i), ld_as_float(g, gdt, i), mi, vi, h);
    m[i] = mi;
    v[i] = vi;
    st_from_float(p, pdt, i, r);
  }
}

__global__ void adamw_f32x4_kernel2(float4 *p, const float4 *g, float4 *m, float4 *v, int64_t n4, adamw_hp h) {
  adamw_resolve(h);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    float4 pp = p[i], gg = g[i], mm = m[i], vv = v[i];
    pp.x = adamw_one(pp.x, gg.x, mm.x, vv.x, h);
    pp.y = adamw_one(pp.y, gg.y, mm.y, vv.y, h);
    pp.z = adamw_one(pp.z, gg.z, mm.z, vv.z, h);
    pp.w = adamw_one(pp.w, gg.w, mm.w, vv.w, h);
    p[i] = pp; m[i] = mm; v[i] = vv;
  }
}

// ----------------------------------------------------------------------------
// kernel launcher

extern "C" const char *sr_cuda_adamw(const sr_kcall *c) {
  sr_tensor *p = c->t[0], *g = c->t[1], *m = c->t[2], *v = c->t[3];
  if ((p->dtype != SR_F32 && p->dtype != SR_BF16) || (g->dtype != SR_F32 && g->dtype != SR_BF16))
    return sr_errf("param and grad must be f32 or bf16 on cuda");
  if (m->dtype != SR_F32 || v->dtype != SR_F32) return sr_errf("optimizer state m, v must be f32");
  int64_t n = kn_numel(p);
  if (kn_numel(g) != n || kn_numel(m) != n || kn_numel(v) != n) return sr_errf("param, grad, m, v sizes differ");
  if (n == 0) return NULL;
  int64_t step = c->i[0] < 1 ? 1 : c->i[0];
  adamw_hp h;
  h.lr = (float)c->f[0];
  h.b1 = (float)c->f[1];
  h.b2 = (float)c->f[2];
  h.eps = (float)c->f[3];
  h.wd = (float)c->f[4];
  h.bc1 = (float)(1.0 / (1.0 - pow(c->f[1], (double)step)));
  h.bc2 = (float)(1.0 / (1.0 - pow(c->f[2], (double)step)));
  h.sched = NULL;
  if (c->nt > 4 && c->t[4]) {
    if (c->t[4]->dtype != SR_F32 || kn_numel(c->t[4]) != 2) return sr_errf("sched must be f32 {lr, step}");
    h.sched = (const float *)kn_data(c->t[4]);
  }
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  void *pp = kn_data(p), *gp = kn_data(g), *mp = kn_data(m), *vp = kn_data(v);
  bool al = (((uintptr_t)pp | (uintptr_t)gp | (uintptr_t)mp | (uintptr_t)vp) & 15) == 0;
  if (p->dtype == SR_F32 && g->dtype == SR_F32 && al && n % 4 == 0) {
    adamw_f32x4_kernel2<<<sr_grid_for(n / 4, 256), 256, 0, s>>>((float4 *)pp, (const float4 *)gp, (float4 *)mp,
                                                                 (float4 *)vp, n / 4, h);
  } else {
    adamw_kernel1<<<sr_grid_for(n, 256), 256, 0, s>>>(pp, p->dtype, gp, g->dtype, (float *)mp, (float *)vp, n, h);
  }
  SR_LAUNCH_CHECK();
  return NULL;
}
