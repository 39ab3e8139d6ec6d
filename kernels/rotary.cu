/*
** rotary.cu: the half-split rotary position embedding over x [N,T,H,D] (contiguous), with the
** tables cos, sin [T,D/2]: each pair (x1, x2) = (x[i], x[i+D/2]) of a row at position t becomes
** (x1*c + s*x2*sn, x2*c - s*x1*sn) with c = cos[t,i], sn = sin[t,i]; s = 1 forward, -1 for the
** inverse rotation, which is the backward (dx = R^T dy). Any float dtypes for out, x and the
** tables (records 2-4 keep fp32 tables with bf16 activations, record 5 all bf16). Products and
** sums in f32 with explicit roundings (no contraction), stored once: with fp32 tables this is
** PyTorch's eager arithmetic (bf16 * fp32 promotes to fp32) bit for bit; with bf16 tables it is
** torch.compile's fused kernel (eager would round each product to bf16).
** Kernel 1: one thread per pair, any dtypes (reads of x1, x2, the table entries, writes of out1,
** out2 coalesced, 2- or 4-byte each: ~1.1 TB/s on an H200 at record 5's [64,1024,6,128] bf16).
** Kernel 2, the records' case (D/2 a multiple of 8, 16-byte aligned data; f32 or bf16 each of
** out, x and the tables: 8 instantiations): 8 pairs a thread, every access 16 bytes wide, 32-bit
** index math; the same arithmetic per element, so the same bits as kernel 1. SR_ROTARY_V1=1 forces
** kernel 1 (A/B timing).
*/
#include "common.cuh"  // defines: ld_as_float, st_from_float, SR_LAUNCH_CHECK

// ----------------------------------------------------------------------------
// CUDA kernel

__global__ void rotary_kernel1(void *out, int odt, const void *x, int xdt, const void *cs, const void *sn, int tdt,
                               int64_t pairs, int T, int H, int P, float s) {
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < pairs; k += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = k / P;
    int i = (int)(k % P), t = (int)((r / H) % T);
    int64_t j1 = r * 2 * P + i, j2 = j1 + P;
    float x1 = ld_as_float(x, xdt, j1), x2 = ld_as_float(x, xdt, j2);
    float c = ld_as_float(cs, tdt, (int64_t)t * P + i), si = s * ld_as_float(sn, tdt, (int64_t)t * P + i);
    st_from_float(out, odt, j1, __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, si)));
    st_from_float(out, odt, j2, __fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, si)));
  }
}

// 8 pairs a thread: group g = (row r, pairs i..i+7 of its P); x and out 16-byte aligned, P % 8 == 0
template <typename OT, typename XT, typename TT>
__global__ void rotary_kernel2(OT *out, const XT *x, const TT *cs, const TT *sn, int groups, int T, int H, int P8,
                               float s) {
  for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += gridDim.x * blockDim.x) {
    int r = g / P8, i8 = g - r * P8, t = (r / H) % T;
    long long v1 = (long long)r * 2 * P8 + i8, v2 = v1 + P8, vt = (long long)t * P8 + i8;  // in vectors of 8
    float x1[8], x2[8], c[8], si[8], o1[8], o2[8];
    ld8(x, v1, x1); ld8(x, v2, x2); ld8(cs, vt, c); ld8(sn, vt, si);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      float sk = s * si[k];
      o1[k] = __fadd_rn(__fmul_rn(x1[k], c[k]), __fmul_rn(x2[k], sk));
      o2[k] = __fsub_rn(__fmul_rn(x2[k], c[k]), __fmul_rn(x1[k], sk));
    }
    st8(out, v1, o1); st8(out, v2, o2);
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename OT, typename XT, typename TT>
static void launch_rotary2(sr_tensor *out, sr_tensor *x, sr_tensor *cs, sr_tensor *sn, int64_t groups, int T, int H,
                           int P8, float s) {
  rotary_kernel2<OT, XT, TT><<<sr_grid_for(groups, 256), 256, 0, (cudaStream_t)sr_cuda_stream()>>>(
      (OT *)sr_data(out), (const XT *)sr_data(x), (const TT *)sr_data(cs), (const TT *)sr_data(sn), (int)groups, T, H,
      P8, s);
}

static bool rotary_v1(void) {  // SR_ROTARY_V1=1 forces kernel 1 (A/B)
  static int v = -1;
  return sr_env_is(&v, "SR_ROTARY_V1", "1");
}

// kernel 2 when it applies (true: launched)
static bool try_rotary2(sr_tensor *out, sr_tensor *x, sr_tensor *cs, sr_tensor *sn, int64_t T, int64_t H, int64_t P,
                        float s) {
  int64_t groups = sr_numel(x) / 16;
  if (P % 8 || groups > INT32_MAX / 2) return false;  // g + the grid stays in int
  if (!sr_is_aligned16(sr_data(out)) || !sr_is_aligned16(sr_data(x)) || !sr_is_aligned16(sr_data(cs)) ||
      !sr_is_aligned16(sr_data(sn)))
    return false;
  int k = (out->dtype == SR_BF16) * 4 + (x->dtype == SR_BF16) * 2 + (cs->dtype == SR_BF16);
  static void (*const launch[8])(sr_tensor *, sr_tensor *, sr_tensor *, sr_tensor *, int64_t, int, int, int, float) = {
      launch_rotary2<float, float, float>, launch_rotary2<float, float, bf16>, launch_rotary2<float, bf16, float>,
      launch_rotary2<float, bf16, bf16>,   launch_rotary2<bf16, float, float>, launch_rotary2<bf16, float, bf16>,
      launch_rotary2<bf16, bf16, float>,   launch_rotary2<bf16, bf16, bf16>};
  launch[k](out, x, cs, sn, groups, (int)T, (int)H, (int)(P / 8), s);
  return true;
}

extern "C" const char *sr_cuda_rotary(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1], *cs = c->t[2], *sn = c->t[3];
  for (int j = 0; j < 4; j++)
    if (c->t[j]->dtype != SR_F32 && c->t[j]->dtype != SR_BF16)
      return sr_errf("argument %d must be f32 or bf16 on cuda (got %s)", j + 1, sr_dtype_name((sr_dtype)c->t[j]->dtype));
  if (cs->dtype != sn->dtype) return sr_errf("cos and sin must have one dtype");
  int64_t T = x->shape[1], H = x->shape[2], D = x->shape[3], pairs = sr_numel(x) / 2;
  if (pairs == 0) return NULL;
  float s = c->i[0] ? -1.f : 1.f;
  if (!rotary_v1() && try_rotary2(out, x, cs, sn, T, H, D / 2, s)) {
    SR_LAUNCH_CHECK();
    return NULL;
  }
  rotary_kernel1<<<sr_grid_for(pairs, 256), 256, 0, (cudaStream_t)sr_cuda_stream()>>>(
      sr_data(out), out->dtype, sr_data(x), x->dtype, sr_data(cs), sr_data(sn), cs->dtype, pairs, (int)T, (int)H,
      (int)(D / 2), s);
  SR_LAUNCH_CHECK();
  return NULL;
}
