/*
** fp8.cu: the float8 kernels (host/core/registry.h: to_fp8, scaled_mm) and the float8 byte copy.
**   to_fp8: out (float8, contig) = fp8(x * scale) for x f32/bf16 of any strides, through the integer
**     rounding of host/core/fp8.h that the CPU reference runs too (bit-identical by construction;
**     the product is one __fmul_rn, as the reference's f32 product). Three paths, by layout:
**     - contiguous x (16-byte aligned): 16 bytes read per thread (8 bf16 / 4 f32), 8 / 4 bytes
**       written (to_fp8_vec_kernel1);
**     - x the transpose of a row-major matrix (out [..,R,C] with x's stride 1 along R: x:t() gives
**       torch's .t().contiguous() in the same pass), batched or not: 64x64 tiles through shared
**       memory, reads coalesced along x's rows (16-byte loads when aligned), writes coalesced
**       along out's rows (4 bytes per thread when C % 4 == 0) (to_fp8_t_kernel1);
**     - anything else: one element per thread over strided offsets (to_fp8_kernel1).
**     Format and saturation are template arguments, so the shared rounding folds its constants.
**   scaled_mm: torch._scaled_mm through cuBLASLt's FP8 GEMM (Hopper/Ada). cuBLASLt wants the "TN"
**     form: in its column-major terms D [N,M] = op(A) op(B) with A = b stored K x N (ld = b's
**     column stride), op(A) = T, and B = a stored K x M (ld = a's row stride), op(B) = N; K, N and
**     both ld multiples of 16, 16-byte aligned pointers; A and B not both e5m2; fp32 compute and
**     scale type; C = D of the out dtype, beta 0. Per-tensor scales: a one-element f32 tensor goes
**     through CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER (as torch); numbers are folded into alpha.
**     Descriptors, layouts and the heuristic's algorithm are cached per shape key.
**   sr_cuda_copy_fp8: same-dtype float8 copies of any strides (the copy kernel's float8 path).
*/
#include <cublasLt.h>      // defines: cublasLtMatmul, CUDA_R_8F_E4M3, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER
#include <type_traits>     // defines: std::conditional

#include "common.cuh"      // defines: sr_errf, sr_ew_desc, sr_ew_make, sr_ew_offsets, SR_CUDA_TRY, ld8
#include "core/fp8.h"      // defines: sr_f32_to_fp8
#include "util/clock.h"    // defines: sr_monotonic_s
#include "cuda/lt_algo.h"  // defines: sr_lt_algo (the heuristic's answer, remembered across runs)

// ----------------------------------------------------------------------------
// CUDA kernels

// sr_f32_to_fp8(v, E5, SAT) of host/core/fp8.h in a third of its instructions (the casts are
// bound by integer ALU throughput, not memory): the normal range rounds v's bits to M mantissa bits
// half-to-even in one add (a carry moves the exponent up by itself) and rebiases; below the
// smallest normal one float add of 2^(EMIN - M + 23), whose f32 ulp is the smallest float8
// subnormal, rounds |v| half-to-even to a multiple of it, left in its mantissa (f32 subnormals
// flushed by fast-math give 0, as they round to 0 anyway). Byte for byte sr_f32_to_fp8 for all 2^32
// inputs of the four variants (checked exhaustively on the host: docs/cuda.md, fp8.cu).
template <int E5, int SAT>
__host__ __device__ __forceinline__ uint8_t fp8_fast(float v) {
  constexpr int M = E5 ? 2 : 3, BIAS = E5 ? 15 : 7, EMIN = 1 - BIAS, DROP = 23 - M;
  constexpr uint32_t MAXB = E5 ? 0x7b : 0x7e, OVER = SAT ? MAXB : (E5 ? 0x7c : 0x7f);
  uint32_t u = sr_fp8_f32_bits(v), a = u & 0x7fffffffu, sign = (u >> 24) & 0x80u;
  uint32_t nb = ((a + ((1u << (DROP - 1)) - 1u) + ((a >> DROP) & 1u)) >> DROP) - ((uint32_t)(127 - BIAS) << M);
  float mag = sr_fp8_bits_f32(a), big = sr_fp8_bits_f32((uint32_t)(EMIN - M + 23 + 127) << 23);
#ifdef __CUDA_ARCH__
  float sum = __fadd_rn(mag, big);  // never fused, rounded to nearest even
#else
  float sum = mag + big;
#endif
  uint32_t bits = a < ((uint32_t)(EMIN + 127) << 23) ? sr_fp8_f32_bits(sum) & 0x7fffffu : nb;
  bits = bits > MAXB ? OVER : bits;  // beyond the largest finite value, infinity included
  if (a > 0x7f800000u) bits = 0x7f;  // NaN
  return (uint8_t)(sign | bits);
}

// one value: fp8(x * scale), the format (E5: e5m2, else e4m3fn) and saturation fixed
template <int E5, int SAT>
__device__ __forceinline__ uint8_t fp8_of(float x, float scale) {
  return fp8_fast<E5, SAT>(sr_fp8_scale(x, scale));
}

// 16 bytes of x as floats: 8 bf16 or 4 f32 (p 16-byte aligned)
__device__ __forceinline__ void ld16(const bf16 *p, float *f) { ld8(p, 0, f); }
__device__ __forceinline__ void ld16(const float *p, float *f) {
  float4 v = *(const float4 *)p;
  f[0] = v.x; f[1] = v.y; f[2] = v.z; f[3] = v.w;
}

// the generic path: any strides, one element per thread
template <int CONTIG, int E5, int SAT>
__global__ void to_fp8_kernel1(sr_ew_desc d, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[SR_EW_MAXOP];
    if (CONTIG) off[0] = off[1] = i;
    else sr_ew_offsets(d, i, off);
    float x = ld_as_float(d.p[1], d.dt[1], off[1]);
    ((uint8_t *)d.p[0])[off[0]] = fp8_of<E5, SAT>(x, scale);
  }
}

// contiguous x (16-byte aligned) and out (V-byte aligned): V = 8 bf16 / 4 f32 per thread, one
// 16-byte load and one V-byte store; the n % V tail one element per thread
template <typename T, int E5, int SAT>
__global__ void __launch_bounds__(256) to_fp8_vec_kernel1(uint8_t *out, const T *x, int64_t n, float scale) {
  constexpr int V = 16 / sizeof(T);
  typedef typename std::conditional<V == 8, uint2, uint32_t>::type word;
  int64_t nv = n / V, stride = (int64_t)gridDim.x * blockDim.x, t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (int64_t i = t; i < nv; i += stride) {
    float f[V];
    ld16(x + i * V, f);
    union { word w; uint8_t b[V]; } u;
#pragma unroll
    for (int k = 0; k < V; k++) u.b[k] = fp8_of<E5, SAT>(f[k], scale);
    ((word *)out)[i] = u.w;
  }
  for (int64_t i = nv * V + t; i < n; i += stride) out[i] = fp8_of<E5, SAT>(to_f(x[i]), scale);
}

// the transposed path: out [B,R,C] row-major, x(b, r, c) at x[b * xb + r + c * ldx] (x's rows
// run along out's R: x:t() of a row-major [C,R] matrix, or a batch of them)
struct fp8_tdesc {
  uint8_t *out;
  const void *x;
  int64_t B, R, C, ldx, xb;
  int vec_x;    // 16-byte loads: x, ldx and xb aligned to 16 bytes
  int vec_out;  // 4-byte stores: out aligned, C % 4 == 0
};

#define FP8_TILE 64
// the tile's bytes in out's layout, 64 rows of 16 words; word w of row r sits at w ^ fp8_swz(r),
// so the read phase's byte stores (8 or 16 rows apart per warp) and the write phase's word loads
// (2 rows per warp) hit distinct banks
__device__ __forceinline__ int fp8_swz(int r) { return (r >> 2) & 15; }

template <typename T, int E5, int SAT>
__global__ void __launch_bounds__(256) to_fp8_t_kernel1(fp8_tdesc d, float scale) {
  constexpr int V = 16 / sizeof(T);                  // x values per 16-byte load
  constexpr int RV = FP8_TILE / V;                   // loads per tile column
  __shared__ uint32_t tile[FP8_TILE * FP8_TILE / 4];
  uint8_t *tb = (uint8_t *)tile;
  const T *x = (const T *)d.x;
  int64_t c0 = (int64_t)blockIdx.x * FP8_TILE, tiles_r = CEIL_DIV(d.R, FP8_TILE);
  for (int64_t b = blockIdx.z; b < d.B; b += gridDim.z)
    for (int64_t tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
      int64_t r0 = tr * FP8_TILE;
      // read: lanes along x's contiguous rows (RV lanes per column of the tile), V values each
      for (int v = threadIdx.x; v < FP8_TILE * RV; v += blockDim.x) {
        int cc = v / RV, rr = (v % RV) * V;
        int64_t c = c0 + cc, r = r0 + rr;
        if (c >= d.C || r >= d.R) continue;
        const T *p = x + b * d.xb + c * d.ldx + r;
        float f[V];
        int nr = d.R - r < V ? (int)(d.R - r) : V;
        if (d.vec_x && nr == V) ld16(p, f);
        else
          for (int k = 0; k < nr; k++) f[k] = to_f(p[k]);
#pragma unroll
        for (int k = 0; k < V; k++) {
          int row = rr + k;
          if (k < nr) tb[row * FP8_TILE + (((cc >> 2) ^ fp8_swz(row)) << 2) + (cc & 3)] = fp8_of<E5, SAT>(f[k], scale);
        }
      }
      __syncthreads();
      // write: 16 lanes per row of out, 4 bytes each
      for (int v = threadIdx.x; v < FP8_TILE * FP8_TILE / 4; v += blockDim.x) {
        int row = v / (FP8_TILE / 4), w = v % (FP8_TILE / 4);
        int64_t r = r0 + row, c = c0 + 4 * w;
        if (r >= d.R || c >= d.C) continue;
        uint32_t word = tile[row * (FP8_TILE / 4) + (w ^ fp8_swz(row))];
        uint8_t *o = d.out + (b * d.R + r) * d.C + c;
        if (d.vec_out) *(uint32_t *)o = word;
        else
          for (int k = 0; k < 4 && c + k < d.C; k++) o[k] = (uint8_t)(word >> (8 * k));
      }
      __syncthreads();
    }
}

__global__ void copy_bytes_kernel1(sr_ew_desc d) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[SR_EW_MAXOP];
    sr_ew_offsets(d, i, off);
    ((uint8_t *)d.p[0])[off[0]] = ((const uint8_t *)d.p[1])[off[1]];
  }
}

// ----------------------------------------------------------------------------
// kernel launchers

static bool is_fp8(int t) { return t == SR_F8E4M3 || t == SR_F8E5M2; }

// the transposed layout of d (out row-major by construction): 2-D [R,C] with x strides (1, ldx),
// or 3-D [B,R,C] with x strides (xb, 1, ldx); fills t
static bool fp8_transposed(const sr_ew_desc &d, fp8_tdesc *t) {
  int nd = d.ndim;
  if (nd < 2 || nd > 3 || d.stride[1][nd - 2] != 1 || d.stride[0][nd - 1] != 1) return false;
  t->out = (uint8_t *)d.p[0];
  t->x = d.p[1];
  t->B = nd == 3 ? d.shape[0] : 1;
  t->R = d.shape[nd - 2];
  t->C = d.shape[nd - 1];
  t->ldx = d.stride[1][nd - 1];
  t->xb = nd == 3 ? d.stride[1][0] : 0;
  int v = d.dt[1] == SR_BF16 ? 8 : 4;  // elements per 16 bytes
  t->vec_x = ((uintptr_t)t->x & 15) == 0 && t->ldx % v == 0 && t->xb % v == 0;
  t->vec_out = ((uintptr_t)t->out & 3) == 0 && t->C % 4 == 0;
  return true;
}

template <typename T, int E5, int SAT>
static const char *to_fp8_run(const sr_ew_desc &d, float scale, cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  fp8_tdesc t;
  if (d.contig && ((uintptr_t)d.p[1] & 15) == 0 && ((uintptr_t)d.p[0] & (V - 1)) == 0) {
    int64_t work = d.n / V > 0 ? d.n / V : d.n;
    to_fp8_vec_kernel1<T, E5, SAT><<<sr_grid_for(work, 256), 256, 0, s>>>((uint8_t *)d.p[0], (const T *)d.p[1], d.n, scale);
  } else if (d.contig) {
    to_fp8_kernel1<1, E5, SAT><<<sr_grid_for(d.n, 256), 256, 0, s>>>(d, scale);
  } else if (fp8_transposed(d, &t)) {
    int64_t tc = CEIL_DIV(t.C, FP8_TILE), tr = CEIL_DIV(t.R, FP8_TILE);
    if (tc >= (1ll << 31)) return sr_errf("to_fp8: %lld columns is too many for the tiled transpose", (long long)t.C);
    dim3 grid((unsigned)tc, (unsigned)(tr < 65535 ? tr : 65535), (unsigned)(t.B < 65535 ? t.B : 65535));
    to_fp8_t_kernel1<T, E5, SAT><<<grid, 256, 0, s>>>(t, scale);
  } else {
    to_fp8_kernel1<0, E5, SAT><<<sr_grid_for(d.n, 256), 256, 0, s>>>(d, scale);
  }
  SR_LAUNCH_CHECK();
  return NULL;
}

template <int E5, int SAT>
static const char *to_fp8_dtype(const sr_ew_desc &d, float scale, cudaStream_t s) {
  return d.dt[1] == SR_BF16 ? to_fp8_run<bf16, E5, SAT>(d, scale, s) : to_fp8_run<float, E5, SAT>(d, scale, s);
}

extern "C" const char *sr_cuda_to_fp8(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *x = c->t[1];
  if (!is_fp8(out->dtype) || !sr_is_contiguous(out))
    return sr_errf("argument 1: expected a contiguous float8_e4m3 or float8_e5m2 out, got %s", sr_dtype_name(out->dtype));
  if (x->dtype != SR_F32 && x->dtype != SR_BF16)
    return sr_errf("argument 2: dtype %s (expected float32 or bfloat16)", sr_dtype_name(x->dtype));
  sr_ew_desc d;
  if (!sr_ew_make(&d, c->t, 2)) return sr_errf("x does not have out's number of elements");
  if (d.n == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  float scale = (float)c->f[0];
  switch ((out->dtype == SR_F8E5M2) * 2 + (c->i[0] != 0)) {
    case 0: return to_fp8_dtype<0, 0>(d, scale, s);
    case 1: return to_fp8_dtype<0, 1>(d, scale, s);
    case 2: return to_fp8_dtype<1, 0>(d, scale, s);
    default: return to_fp8_dtype<1, 1>(d, scale, s);
  }
}

// out and x of one float8 dtype, one shape, any strides
extern "C" const char *sr_cuda_copy_fp8(const sr_kcall *c) {
  sr_ew_desc d;
  if (!sr_ew_make(&d, c->t, 2)) return sr_errf("x does not have out's number of elements");
  if (d.n == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (d.contig) {
    SR_CUDA_TRY(cudaMemcpyAsync(d.p[0], d.p[1], (size_t)d.n, cudaMemcpyDeviceToDevice, s));
    return NULL;
  }
  copy_bytes_kernel1<<<sr_grid_for(d.n, 256), 256, 0, s>>>(d);
  SR_LAUNCH_CHECK();
  return NULL;
}

// ---- scaled_mm: the cuBLASLt plan cache

struct fp8_key {
  int adt, bdt, odt, fast, tensor_scales;
  int64_t M, N, K, lda, ldb;
};

struct fp8_plan {
  fp8_key key;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
};

#define SR_FP8_CACHE 64
static fp8_plan fp8_plans[SR_FP8_CACHE];
static int fp8_nplans;

#define LT_TRY(call, what)                                                                             \
  do {                                                                                                 \
    cublasStatus_t s_ = (call);                                                                        \
    if (s_ != CUBLAS_STATUS_SUCCESS) return sr_errf("%s: %s", what, cublasLtGetStatusString(s_));     \
  } while (0)

static cudaDataType_t fp8_type(int dt) {
  return dt == SR_F8E4M3 ? CUDA_R_8F_E4M3 : dt == SR_F8E5M2 ? CUDA_R_8F_E5M2 : dt == SR_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void plan_destroy(fp8_plan *p) {
  if (p->desc) cublasLtMatmulDescDestroy(p->desc);
  if (p->la) cublasLtMatrixLayoutDestroy(p->la);
  if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
  if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
}

// descriptors and layouts of key k into p (scale pointers set by the caller)
static const char *plan_describe(const fp8_key &k, fp8_plan *p, const void *sa, const void *sb) {
  LT_TRY(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  cublasOperation_t opA = CUBLAS_OP_T, opB = CUBLAS_OP_N;
  LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA), "set TRANSA");
  LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB), "set TRANSB");
  int8_t fast = (int8_t)k.fast;
  LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast), "set FAST_ACCUM");
  if (k.tensor_scales) {
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sb, sizeof sb), "set A_SCALE");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sa, sizeof sa), "set B_SCALE");
  }
  // cuBLAS "A" = b, stored K x N; "B" = a, stored K x M; D = out^T, N x M
  LT_TRY(cublasLtMatrixLayoutCreate(&p->la, fp8_type(k.bdt), (uint64_t)k.K, (uint64_t)k.N, k.ldb), "layout A");
  LT_TRY(cublasLtMatrixLayoutCreate(&p->lb, fp8_type(k.adt), (uint64_t)k.K, (uint64_t)k.M, k.lda), "layout B");
  LT_TRY(cublasLtMatrixLayoutCreate(&p->lc, fp8_type(k.odt), (uint64_t)k.N, (uint64_t)k.M, k.N), "layout C/D");
  return NULL;
}

static const char *fp8_plan_new(const fp8_key &k, const void *sa, const void *sb, fp8_plan **out);

// the cached plan of an FP8 GEMM shape; a new one's time is noted as setup (sr_cuda_note_setup)
static const char *fp8_plan_get(const fp8_key &k, const void *sa, const void *sb, fp8_plan **out) {
  for (int i = 0; i < fp8_nplans; i++)
    if (!memcmp(&fp8_plans[i].key, &k, sizeof k)) { *out = &fp8_plans[i]; return NULL; }
  double t0 = sr_cuda_setup_clock();
  const char *e = fp8_plan_new(k, sa, sb, out);
  sr_cuda_note_setup(SR_SETUP_GEMM_PLAN, sr_monotonic_s() - t0);
  return e;
}

static const char *fp8_plan_new(const fp8_key &k, const void *sa, const void *sb, fp8_plan **out) {
  if (fp8_nplans == SR_FP8_CACHE) {  // full: drop everything (shapes churn only in tests)
    for (int i = 0; i < fp8_nplans; i++) plan_destroy(&fp8_plans[i]);
    fp8_nplans = 0;
  }
  fp8_plan p;
  memset(&p, 0, sizeof p);
  p.key = k;
  const char *e = plan_describe(k, &p, sa, sb);
  if (e) { plan_destroy(&p); return e; }
  cublasLtMatmulPreference_t pref;
  cublasStatus_t st = cublasLtMatmulPreferenceCreate(&pref);
  if (st != CUBLAS_STATUS_SUCCESS) { plan_destroy(&p); return sr_errf("preference: %s", cublasLtGetStatusString(st)); }
  size_t ws;
  sr_cuda_workspace(&ws);
  st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (st == CUBLAS_STATUS_SUCCESS) st = sr_lt_algo("fp8", &k, sizeof k, p.desc, p.la, p.lb, p.lc, pref, &p.algo);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS) {
    plan_destroy(&p);
    return sr_errf("cuBLASLt found no FP8 algorithm for [%lld,%lld]x[%lld,%lld] %s x %s -> %s (FP8 GEMMs need an sm_89 "
                   "or sm_90 GPU): %s", (long long)k.M, (long long)k.K, (long long)k.K, (long long)k.N,
                   sr_dtype_name((sr_dtype)k.adt), sr_dtype_name((sr_dtype)k.bdt), sr_dtype_name((sr_dtype)k.odt),
                   cublasLtGetStatusString(st));
  }
  fp8_plans[fp8_nplans] = p;
  *out = &fp8_plans[fp8_nplans++];
  return NULL;
}

extern "C" const char *sr_cuda_scaled_mm(const sr_kcall *c) {
  sr_tensor *o = c->t[0], *a = c->t[1], *b = c->t[2], *ta = sr_karg(c, 3), *tb = sr_karg(c, 4);
  if ((o->dtype != SR_BF16 && o->dtype != SR_F32) || !sr_is_contiguous(o) || o->ndim != 2)
    return sr_errf("argument 1: expected a contiguous 2-D bfloat16 or float32 out, got %s", sr_dtype_name(o->dtype));
  if (!is_fp8(a->dtype) || !is_fp8(b->dtype) || a->ndim != 2 || b->ndim != 2)
    return sr_errf("arguments 2 and 3: expected 2-D float8 tensors, got %s and %s", sr_dtype_name(a->dtype),
                   sr_dtype_name(b->dtype));
  if (a->dtype == SR_F8E5M2 && b->dtype == SR_F8E5M2)
    return sr_errf("e5m2 x e5m2 is not supported by cuBLASLt (one of a and b must be float8_e4m3)");
  if ((ta && ta->dtype != SR_F32) || (tb && tb->dtype != SR_F32)) return sr_errf("scale tensors must be float32");
  if ((ta == NULL) != (tb == NULL)) return sr_errf("scale_a and scale_b must both be tensors or both numbers");
  fp8_key k;
  memset(&k, 0, sizeof k);
  k.adt = a->dtype; k.bdt = b->dtype; k.odt = o->dtype;
  k.fast = c->i[0] != 0;
  k.tensor_scales = ta != NULL;
  k.M = o->shape[0]; k.N = o->shape[1]; k.K = a->shape[1];
  k.lda = a->shape[0] > 1 ? a->stride[0] : k.K;
  k.ldb = b->shape[1] > 1 ? b->stride[1] : k.K;
  if (a->stride[1] != 1 && k.K > 1) return sr_errf("argument 2: a must be row-major (unit stride along K)");
  if (b->stride[0] != 1 && k.K > 1) return sr_errf("argument 3: b must be column-major (unit stride along K)");
  if (k.K % 16 || k.N % 16 || k.lda % 16 || k.ldb % 16)
    return sr_errf("K (%lld), N (%lld) and the leading dims (%lld, %lld) must be multiples of 16", (long long)k.K,
                   (long long)k.N, (long long)k.lda, (long long)k.ldb);
  void *pa = sr_data(a), *pb = sr_data(b), *po = sr_data(o);
  if (((uintptr_t)pa | (uintptr_t)pb | (uintptr_t)po) & 15) return sr_errf("a, b and out must start on 16-byte boundaries");
  if (k.M == 0 || k.N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (k.K == 0) {  // an empty sum
    SR_CUDA_TRY(cudaMemsetAsync(po, 0, (size_t)(k.M * k.N) * sr_dtype_size(o->dtype), s));
    return NULL;
  }
  const void *psa = ta ? sr_data(ta) : NULL, *psb = tb ? sr_data(tb) : NULL;
  fp8_plan *p;
  const char *e = fp8_plan_get(k, psa, psb, &p);
  if (e) return e;
  if (k.tensor_scales) {  // this call's pointers (the cached descriptor holds the last call's)
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &psb, sizeof psb), "set A_SCALE");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &psa, sizeof psa), "set B_SCALE");
  }
  float alpha = k.tensor_scales ? 1.0f : (float)(c->f[0] * c->f[1]), beta = 0.0f;
  size_t ws;
  void *wp = sr_cuda_workspace(&ws);
  LT_TRY(cublasLtMatmul((cublasLtHandle_t)sr_cuda_blaslt(), p->desc, &alpha, pb, p->la, pa, p->lb, &beta, po, p->lc, po,
                        p->lc, &p->algo, wp, ws, s), "cublasLtMatmul (fp8)");
  return NULL;
}
