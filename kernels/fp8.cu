/*
** fp8.cu: the float8 kernels (host/core/registry.h: to_fp8, scaled_mm) and the float8 byte copy.
**   to_fp8: out (float8, contig) = fp8(x * scale) for x f32/bf16 of any strides, through the integer
**     rounding of host/core/fp8.h that the CPU reference runs too (bit-identical by construction;
**     the product is one __fmul_rn, as the reference's f32 product). A strided x (x:t()) gives the
**     transposed copy torch makes with .t().contiguous() in the same pass.
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

#include "common.cuh"      // defines: sr_errf, sr_ew_desc, sr_ew_make, sr_ew_offsets, SR_CUDA_TRY
#include "core/fp8.h"      // defines: sr_f32_to_fp8

// ----------------------------------------------------------------------------
// CUDA kernels

template <int CONTIG>
__global__ void to_fp8_kernel1(sr_ew_desc d, float scale, int e5m2, int sat) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[SR_EW_MAXOP];
    if (CONTIG) off[0] = off[1] = i;
    else sr_ew_offsets(d, i, off);
    float x = ld_as_float(d.p[1], d.dt[1], off[1]);
    ((uint8_t *)d.p[0])[off[0]] = sr_f32_to_fp8(sr_fp8_scale(x, scale), e5m2, sat);
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
  unsigned grid = sr_grid_for(d.n, 256);
  int e5 = out->dtype == SR_F8E5M2, sat = c->i[0] != 0;
  if (d.contig) to_fp8_kernel1<1><<<grid, 256, 0, s>>>(d, (float)c->f[0], e5, sat);
  else to_fp8_kernel1<0><<<grid, 256, 0, s>>>(d, (float)c->f[0], e5, sat);
  SR_LAUNCH_CHECK();
  return NULL;
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

static const char *fp8_plan_get(const fp8_key &k, const void *sa, const void *sb, fp8_plan **out) {
  for (int i = 0; i < fp8_nplans; i++)
    if (!memcmp(&fp8_plans[i].key, &k, sizeof k)) { *out = &fp8_plans[i]; return NULL; }
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
  cublasLtMatmulHeuristicResult_t res;
  int nres = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)sr_cuda_blaslt(), p.desc, p.la, p.lb, p.lc, p.lc, pref, 1,
                                        &res, &nres);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || nres == 0) {
    plan_destroy(&p);
    return sr_errf("cuBLASLt found no FP8 algorithm for [%lld,%lld]x[%lld,%lld] %s x %s -> %s (FP8 GEMMs need an sm_89 "
                   "or sm_90 GPU): %s", (long long)k.M, (long long)k.K, (long long)k.K, (long long)k.N,
                   sr_dtype_name((sr_dtype)k.adt), sr_dtype_name((sr_dtype)k.bdt), sr_dtype_name((sr_dtype)k.odt),
                   cublasLtGetStatusString(st));
  }
  p.algo = res.algo;
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
