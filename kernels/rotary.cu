/*
** rotary.cu: the half-split rotary position embedding over x [N,T,H,D] (contiguous), with the
** tables cos, sin [T,D/2]: each pair (x1, x2) = (x[i], x[i+D/2]) of a row at position t becomes
** (x1*c + s*x2*sn, x2*c - s*x1*sn) with c = cos[t,i], sn = sin[t,i]; s = 1 forward, -1 for the
** inverse rotation, which is the backward (dx = R^T dy). Any float dtypes for out, x and the
** tables (records 2-4 keep fp32 tables with bf16 activations, record 5 all bf16). Products and
** sums in f32 with explicit roundings (no contraction), stored once: with fp32 tables this is
** PyTorch's eager arithmetic (bf16 * fp32 promotes to fp32) bit for bit; with bf16 tables it is
** torch.compile's fused kernel (eager would round each product to bf16).
** One thread per pair: reads of x1, x2, the table entries, writes of out1, out2 are coalesced.
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

// ----------------------------------------------------------------------------
// kernel launcher

extern "C" const char *sr_cuda_rotary(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1], *cs = c->t[2], *sn = c->t[3];
  for (int j = 0; j < 4; j++)
    if (c->t[j]->dtype != SR_F32 && c->t[j]->dtype != SR_BF16)
      return sr_errf("argument %d must be f32 or bf16 on cuda (got %s)", j + 1, sr_dtype_name((sr_dtype)c->t[j]->dtype));
  if (cs->dtype != sn->dtype) return sr_errf("cos and sin must have one dtype");
  int64_t T = x->shape[1], H = x->shape[2], D = x->shape[3], pairs = sr_numel(x) / 2;
  if (pairs == 0) return NULL;
  rotary_kernel1<<<sr_grid_for(pairs, 256), 256, 0, (cudaStream_t)sr_cuda_stream()>>>(
      sr_data(out), out->dtype, sr_data(x), x->dtype, sr_data(cs), sr_data(sn), cs->dtype, pairs, (int)T, (int)H,
      (int)(D / 2), c->i[0] ? -1.f : 1.f);
  SR_LAUNCH_CHECK();
  return NULL;
}
