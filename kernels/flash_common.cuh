/*
** flash_common.cuh: the pieces the flash attention kernels share (kernels/attention.cu and
** kernels/flex_attention.cu): mma.sync m16n8k16 and ldmatrix fragment helpers, cp.async tile
** loads, the strides of [B,H,T,D] views, the delta pre-pass and the dq conversion of the
** backward (kernels and their launches). Header-only; the kernels are static, one copy per file
** that launches them.
*/
#ifndef SR_FLASH_COMMON_CUH
#define SR_FLASH_COMMON_CUH

#include <string.h>    // defines: memset

#include "common.cuh"  // defines: bf16, CEIL_DIV, sr_data, sr_is_contiguous

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// tensor-core helpers: mma.sync m16n8k16 (bf16 in, f32 accumulate) and fragment loads from
// shared memory. Lane l: g = l / 4, t = l % 4.
//   A 16x16 (row): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B 16x8  (col): b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C 16x8       : c0,c1 (g, 2t..2t+1)  c2,c3 (g+8, 2t..2t+1)

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, const uint32_t *b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *(uint32_t *)&v;
}
// the same fragments through ldmatrix (one instruction loads four 8x8 matrices; lanes 8m..8m+7
// give the row addresses of matrix m, register m receives it; .trans delivers the transpose).
// Row addresses must be 16-byte aligned: rows of LD = D + 8 (or 72) bf16 and column offsets that
// are multiples of 8 are; the row stride of 36 (68) words also keeps each matrix conflict-free.
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void ldsm_x4(uint32_t *r, const bf16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const bf16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// as ldA: matrices (rows r0.., cols k0..), (r0+8.., k0..), (r0.., k0+8..), (r0+8.., k0+8..) = a0..a3
__device__ __forceinline__ void ldA_x4(uint32_t *a, const bf16 *X, int ld, int r0, int k0) {
  int l = threadIdx.x & 31;
  ldsm_x4(a, &X[(r0 + (l & 7) + ((l >> 3) & 1) * 8) * ld + k0 + (l >> 4) * 8]);
}
// as ldB_nk for n0..n0+7 (b[0..1]) and n0+8..n0+15 (b[2..3]): matrices (n0.., k0..), (n0.., k0+8..),
// (n0+8.., k0..), (n0+8.., k0+8..)
__device__ __forceinline__ void ldB_nk_x4(uint32_t *b, const bf16 *X, int ld, int n0, int k0) {
  int l = threadIdx.x & 31;
  ldsm_x4(b, &X[(n0 + (l & 7) + (l >> 4) * 8) * ld + k0 + ((l >> 3) & 1) * 8]);
}
// as ldB_kn for n0..n0+7 (b[0..1]) and n0+8..n0+15 (b[2..3]), transposed: matrices (rows k0..,
// cols n0..), (k0+8.., n0..), (k0.., n0+8..), (k0+8.., n0+8..)
__device__ __forceinline__ void ldB_kn_x4(uint32_t *b, const bf16 *X, int ld, int k0, int n0) {
  int l = threadIdx.x & 31;
  ldsm_x4_t(b, &X[(k0 + (l & 7) + ((l >> 3) & 1) * 8) * ld + n0 + (l >> 4) * 8]);
}
// as ldA_x4 for A = X^T with X row-major [k][r] (ldmatrix .trans): the matrices of ldA_x4 are the
// transposes of (k0.., r0..), (k0.., r0+8..), (k0+8.., r0..), (k0+8.., r0+8..) of X
__device__ __forceinline__ void ldAT_x4(uint32_t *a, const bf16 *X, int ld, int r0, int k0) {
  int l = threadIdx.x & 31;
  ldsm_x4_t(a, &X[(k0 + (l & 7) + (l >> 4) * 8) * ld + r0 + ((l >> 3) & 1) * 8]);
}
// one K/V tile of the flash forward's online softmax, rows g and g + 8 of a warp's 16 (log2
// domain, scale folded in): S, the tile's raw scores of 64 keys (masked ones -inf), becomes
// P = exp2(S scale - m_new); m, l: the rows' running maxima and sums, updated; returns in al the
// factors the rows' earlier outputs are rescaled by (a row that has seen no key yet keeps m -inf)
template <int NJ = 8>  // NJ groups of 8 columns (8: a tile of 64 keys)
__device__ __forceinline__ void online_softmax_tile(float (*S)[4], float scale_log2, float &m0, float &m1, float &l0,
                                                    float &l1, float &al0, float &al1) {
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < NJ; j++) {
    mx0 = fmaxf(mx0, fmaxf(S[j][0], S[j][1]));
    mx1 = fmaxf(mx1, fmaxf(S[j][2], S[j][3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  float n0 = fmaxf(m0, mx0 * scale_log2), n1 = fmaxf(m1, mx1 * scale_log2);
  float u0 = n0 == -INFINITY ? 0.f : n0, u1 = n1 == -INFINITY ? 0.f : n1;
  al0 = exp2f(m0 - u0);
  al1 = exp2f(m1 - u1);
  m0 = n0; m1 = n1;
  float s0 = 0.f, s1 = 0.f;
#pragma unroll
  for (int j = 0; j < NJ; j++) {
    S[j][0] = exp2f(fmaf(S[j][0], scale_log2, -u0)); S[j][1] = exp2f(fmaf(S[j][1], scale_log2, -u0));
    S[j][2] = exp2f(fmaf(S[j][2], scale_log2, -u1)); S[j][3] = exp2f(fmaf(S[j][3], scale_log2, -u1));
    s0 += S[j][0] + S[j][1];
    s1 += S[j][2] + S[j][3];
  }
  l0 = l0 * al0 + s0;
  l1 = l1 * al1 + s1;
}

// A fragments of a 16 x 64 tile held as C fragments (8 tiles of 16x8): k-step kk covers cols 16kk..
__device__ __forceinline__ void acc_to_A(uint32_t *a, const float (*P)[4], int kk) {
  a[0] = pack_bf16(P[2 * kk][0], P[2 * kk][1]);
  a[1] = pack_bf16(P[2 * kk][2], P[2 * kk][3]);
  a[2] = pack_bf16(P[2 * kk + 1][0], P[2 * kk + 1][1]);
  a[3] = pack_bf16(P[2 * kk + 1][2], P[2 * kk + 1][3]);
}

// (batch, head, time) strides of up to 8 [B,H,T,D] tensors with unit stride in D: the flash
// kernels read and write strided views (e.g. q, k, v straight out of a fused qkv projection)
struct att_strides {
  int H;
  int64_t s[8][3];
};
__device__ __forceinline__ int64_t att_base(const att_strides &a, int j, int64_t bh) {
  return (bh / a.H) * a.s[j][0] + (bh % a.H) * a.s[j][1];
}

// cp.async: 16 (or 4) bytes global -> shared without passing through registers, zero-filled
// when !pred (src must still be a valid address); completes at cp_async_wait_all()
__device__ __forceinline__ void cp_async16_at(uint32_t dst, const void *src, bool pred) {  // dst: a shared address
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0));
}
// 16 bytes, always (no source-size operand: nothing to compare or select)
__device__ __forceinline__ void cp_async16_all(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// until at most N of this thread's committed groups are still in flight (the older ones landed)
template <int N>
__device__ __forceinline__ void cp_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// ROWS rows x D from row row0 of a [T,D] bf16 matrix, zeros past T, by a block of NT threads:
// thread i copies the 16-byte chunk i % CH of rows i / CH, i / CH + NT / CH, ... (unrolled, one
// address a thread and constant steps: the loop with a runtime stride and a division per chunk cost
// the flex backward ~29 instructions a chunk, a fifth of its instructions, bench/RESULTS.md).
// WHOLE: the caller knows every tile it loads lies below T (the flex kernels: T is a multiple of
// their blocks of 128; the dense ones launched for T a multiple of their tiles), and the copies
// need no bounds compare and no zero-fill select (the checked loop cost the flex backward ~9
// instructions a chunk, ~190 of its ~1,500 a warp-tile: sass profile, twenty-fourth session)
// (tile_chunks: which chunks thread tid copies, on the host too: tests/cuda/test_flex_tiles.cu)
template <int D, int ROWS, int NT>
struct tile_chunks {
  static constexpr int CH = D / 8, RS = NT / CH, IT = ROWS / RS;  // chunks a row; RS rows a step, IT steps
  static_assert(NT % CH == 0 && ROWS % RS == 0, "load_tile_async: the block's threads must cover whole rows");
  __host__ __device__ static int row(unsigned tid, int i) { return (int)(tid / CH) + i * RS; }  // of the tile, at step i
  __host__ __device__ static int col(unsigned tid) { return (int)(tid % CH) * 8; }
};
template <int D, int LD, int ROWS, int NT, bool WHOLE>
__device__ __forceinline__ void load_tile_async(bf16 *S, const bf16 *G, int64_t ld, int row0, int T) {
  using TC = tile_chunks<D, ROWS, NT>;
  constexpr int RS = TC::RS, IT = TC::IT, SSTEP = RS * LD * (int)sizeof(bf16);
  int r = TC::row(threadIdx.x, 0), c = TC::col(threadIdx.x), left = T - row0 - r;  // rows left from this thread's first
  const bf16 *g = G + (int64_t)(row0 + r) * ld + c;
  uint32_t sp = smem_u32(S + r * LD + c);
  int64_t step = RS * ld;
#pragma unroll 4  // (unrolled whole, the backward kernels spilled)
  for (int i = 0; i < IT; i++, g += step) {
    if (WHOLE) {
      cp_async16_all(sp + i * SSTEP, g);
    } else {
      bool ok = i * RS < left;
      cp_async16_at(sp + i * SSTEP, ok ? g : G, ok);
    }
  }
}

// the flash backward's row pass and its last pass over strided [B,H,T,D] views (as: tensor 5 dout,
// 6 out, 7 dq), a thread block per 256 chunks of 8 elements of one (b, h) slice (grid x over T D/8,
// y the head, z the batch): a chunk's t and column come from shifts, its (b, h) from the grid (the
// row-major index they replaced cost 64-bit divisions by T, D and H for every chunk)

// delta[bh, t] = sum_d dout[b, h, t, d] out[b, h, t, d]: the D / 8 lanes of a row reduce by shuffles
template <int D>
static __global__ void attention_delta_kernel3(float *delta, const bf16 *dout, const bf16 *out, int T, att_strides as) {
  constexpr int L = D / 8;  // 8 or 16 lanes a row, within one warp
  int j = blockIdx.x * blockDim.x + threadIdx.x, t = j / L, c = (j % L) * 8;
  int64_t b = blockIdx.z, h = blockIdx.y;
  float s = 0.f;
  if (t < T) {
    uint4 x4 = *(const uint4 *)&dout[b * as.s[5][0] + h * as.s[5][1] + t * as.s[5][2] + c];
    uint4 y4 = *(const uint4 *)&out[b * as.s[6][0] + h * as.s[6][1] + t * as.s[6][2] + c];
    const __nv_bfloat162 *x2 = (const __nv_bfloat162 *)&x4, *y2 = (const __nv_bfloat162 *)&y4;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float2 x = __bfloat1622float2(x2[i]), y = __bfloat1622float2(y2[i]);
      s += x.x * y.x + x.y * y.y;
    }
  }
#pragma unroll
  for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (t < T && c == 0) delta[(b * as.H + h) * T + t] = s;
}

// dq (strided) from the f32 accumulator [BH, T, D]: 8 elements a thread
template <int D>
static __global__ void attention_dq_convert_kernel2(bf16 *dq, const float *acc, int T, att_strides as) {
  constexpr int L = D / 8;
  int j = blockIdx.x * blockDim.x + threadIdx.x, t = j / L, c = (j % L) * 8;
  if (t >= T) return;
  int64_t b = blockIdx.z, h = blockIdx.y;
  const float *a = acc + ((b * as.H + h) * T + t) * D + c;
  float4 x = *(const float4 *)a, y = *(const float4 *)(a + 4);
  *(uint4 *)&dq[b * as.s[7][0] + h * as.s[7][1] + t * as.s[7][2] + c] =
      make_uint4(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w), pack_bf16(y.x, y.y), pack_bf16(y.z, y.w));
}

// the Hopper backward's dQ by bulk adds (kernels/hopper/, SR_FLEX_BWD_DQB) keeps each 64 x 128 tile of
// the accumulator (D 128) in fragment order, as its threads hold it: thread lane of warp w in warpgroup h
// (the columns 64 h..) holds, as its float4 i, rows w 16 + lane / 4 and 8 below at columns 64 h + 8 i +
// 2 (lane % 4), + 1, at float dq_frag_off(h, w, i, lane) of the tile (a warp's stores of one i are 512
// contiguous bytes: no shared-memory bank twice)
__host__ __device__ __forceinline__ int dq_frag_off(int h, int w, int i, int lane) { return (((h * 4 + w) * 8 + i) * 32 + lane) * 4; }
// its inverse: float4 o (dq_frag_off / 4) of a tile holds row *r, columns *c and *c + 1 (its x, y) and
// row *r + 8 (its z, w)
__host__ __device__ __forceinline__ void dq_frag_pos(int o, int *r, int *c) {
  int lane = o % 32, i = o / 32 % 8, w = o / 256 % 4, h = o / 1024;
  *r = w * 16 + lane / 4;
  *c = h * 64 + i * 8 + 2 * (lane % 4);
}
// dq from that accumulator: a thread a float4 (read in order), two bf16 pairs out (rows r and r + 8)
static __global__ void attention_dq_convert_frag_kernel(bf16 *dq, const float *acc, int T, att_strides as) {
  int64_t f = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;  // the float4 of the [T, 128] slice
  if (f >= (int64_t)T * 32) return;
  int64_t b = blockIdx.z, h = blockIdx.y;
  float4 x = ((const float4 *)(acc + (b * as.H + h) * T * 128))[f];
  int tr, c;
  dq_frag_pos((int)(f % 2048), &tr, &c);
  int64_t r = f / 2048 * 64 + tr;
  bf16 *p = dq + b * as.s[7][0] + h * as.s[7][1] + c;
  *(uint32_t *)&p[r * as.s[7][2]] = pack_bf16(x.x, x.y);
  *(uint32_t *)&p[(r + 8) * as.s[7][2]] = pack_bf16(x.z, x.w);
}

// their launches (D 64 or 128; BH rows of T): blocks of 256 chunks, x over a slice's T D/8 chunks,
// y its head, z its batch (BH / H, at most 65,535)
static inline dim3 slice_grid(int64_t BH, int T, int D, const att_strides &as) {
  return dim3((unsigned)CEIL_DIV((int64_t)T * (D / 8), (int64_t)256), (unsigned)as.H, (unsigned)(BH / as.H));
}
static inline cudaError_t attention_delta_flash(float *delta, const bf16 *dout, const bf16 *out, int64_t BH, int T, int D,
                                                const att_strides &as, cudaStream_t s) {
  dim3 grid = slice_grid(BH, T, D, as);
  if (D == 64) attention_delta_kernel3<64><<<grid, 256, 0, s>>>(delta, dout, out, T, as);
  else attention_delta_kernel3<128><<<grid, 256, 0, s>>>(delta, dout, out, T, as);
  return cudaGetLastError();
}
// frag: the accumulator in dq_frag_off's order (D 128, T a multiple of 64)
static inline cudaError_t attention_dq_convert(bf16 *dq, const float *acc, int64_t BH, int T, int D, const att_strides &as,
                                               cudaStream_t s, bool frag = false) {
  dim3 grid = slice_grid(BH, T, D, as);
  if (frag) attention_dq_convert_frag_kernel<<<dim3((unsigned)CEIL_DIV((int64_t)T * 32, (int64_t)256), grid.y, grid.z), 256, 0, s>>>(
      dq, acc, T, as);
  else if (D == 64) attention_dq_convert_kernel2<64><<<grid, 256, 0, s>>>(dq, acc, T, as);
  else attention_dq_convert_kernel2<128><<<grid, 256, 0, s>>>(dq, acc, T, as);
  return cudaGetLastError();
}


// ----------------------------------------------------------------------------
// launcher helpers

// the flash kernels take any [B,H,T,D] view with unit stride in D and 16-byte aligned rows
static inline bool flash_ok(int dt, int D, sr_tensor *const *ts, int n) {
  if (dt != SR_BF16 || (D != 64 && D != 128)) return false;
  for (int j = 0; j < n; j++) {
    const sr_tensor *x = ts[j];
    if (((uintptr_t)sr_data(x) & 15) != 0 || x->stride[3] != 1) return false;
    for (int k = 0; k < 3; k++)
      if (x->stride[k] % 8 != 0 && x->shape[k] != 1) return false;
  }
  return true;
}
static inline bool all_contig(sr_tensor *const *ts, int n) {
  for (int j = 0; j < n; j++)
    if (!sr_is_contiguous(ts[j])) return false;
  return true;
}
static inline att_strides strides_of(sr_tensor *const *ts, int n) {
  att_strides a;
  memset(&a, 0, sizeof a);
  a.H = (int)ts[0]->shape[1];
  for (int j = 0; j < n; j++)
    for (int k = 0; k < 3; k++) a.s[j][k] = ts[j]->stride[k];
  return a;
}

#endif
