/*
** matmul.cu: gemm through cuBLASLt. out[B,M,N] (contig) = f0 * op(a) @ op(b) + f1 * out,
** a [B,M,K] or [B,K,M], b [B,K,N] or [B,N,K], unit stride in the last dim, any row stride,
** batch stride possibly 0 (broadcast). fp32 accumulation always:
**   bf16 x bf16 -> bf16 or f32 out (tensor cores);  f32 x f32 -> f32 (CUBLAS_COMPUTE_32F, no tf32
**   unless SPEEDRUN_TF32=1 is set in the environment).
** Row-major to column-major: out^T[N,M] = op(b)^T @ op(a)^T, so cuBLAS's "A" is b and "B" is a.
** Descriptors, layouts and the heuristic's algorithm are cached per shape/stride/alignment key
** (the algorithm on disk too, host/cuda/lt_algo.c); one 32 MiB workspace (host/cuda/backend.c)
** serves every call. A new plan's first call times the heuristic's first 8 candidates and keeps
** the fastest (below; SR_GEMM_TUNE=0: the heuristic's first), remembered on disk as well.
** Odd sizes: cuBLASLt's fast kernels want every dimension and row stride a multiple of 16 bytes.
** GPT-2's vocabulary of 50257 makes the three lm_head GEMMs about 7x slower (bench/gemm_ld.cu,
** H100: 59.3 ms against 8.6 ms at 50304), and a padded row stride alone does not help (48.8 ms).
** So a large single GEMM with such a dimension or stride runs on zero-padded copies: each operand
** that is not aligned is copied into a buffer whose K and N are rounded up to multiples of 64 (zeros
** beyond, so padding along K adds zero products), and the output, when N had to grow or its rows
** are not aligned, is computed into a padded buffer and copied back. M never needs it.
*/
#include <cublasLt.h>      // defines: cublasLtMatmul, cublasLtMatmulDesc_t

#include "common.cuh"      // defines: sr_errf
#include "util/clock.h"    // defines: sr_monotonic_s
#include "cuda/lt_algo.h"  // defines: sr_lt_algo (the heuristic's answer, remembered across runs)

// ----------------------------------------------------------------------------
// plan cache

struct gemm_key {
  int adt, bdt, odt;
  int ta, tb;
  int64_t B, M, N, K;
  int64_t lda, ldb, sa, sb;  // row strides and batch strides of a and b (elements)
  int align;                 // min alignment (bytes, up to 16) of the four pointers
  int beta_nonzero;
  int tf32;
};

struct gemm_plan {
  gemm_key key;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  int tuned;  // SR_GEMM_TUNE: its candidates were timed (or could not be)
};

#define SR_GEMM_CACHE 256
static gemm_plan plans[SR_GEMM_CACHE];
static int nplans;

static bool key_eq(const gemm_key &x, const gemm_key &y) { return memcmp(&x, &y, sizeof x) == 0; }

static int ptr_align(const void *p) {
  uintptr_t v = (uintptr_t)p;
  return (v & 15) == 0 ? 16 : (v & 7) == 0 ? 8 : (v & 3) == 0 ? 4 : 2;
}

static cudaDataType_t cuda_type(int dt) { return dt == SR_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

#define LT_TRY(call, what)                                                                 \
  do {                                                                                     \
    cublasStatus_t s_ = (call);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) return sr_errf("%s: %s", what, cublasLtGetStatusString(s_)); \
  } while (0)

static const char *new_plan(const gemm_key &k, gemm_plan **out);

// the cached plan of a GEMM shape; a new one's time (cuBLASLt's heuristic above all) is noted as
// setup time (sr_cuda_note_setup: the harness reports what the warm-up spends on it)
static const char *make_plan(const gemm_key &k, gemm_plan **out) {
  for (int i = 0; i < nplans; i++)
    if (key_eq(plans[i].key, k)) { *out = &plans[i]; return NULL; }
  double t0 = sr_cuda_setup_clock();
  const char *e = new_plan(k, out);
  sr_cuda_note_setup(SR_SETUP_GEMM_PLAN, sr_monotonic_s() - t0);
  return e;
}

// what the heuristic is asked under: the engine's workspace, the pointers' alignment
static cublasStatus_t make_pref(const gemm_key &k, cublasLtMatmulPreference_t *pref) {
  cublasStatus_t st = cublasLtMatmulPreferenceCreate(pref);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  size_t ws;
  sr_cuda_workspace(&ws);
  uint32_t al = (uint32_t)k.align;
  cublasLtMatmulPreferenceSetAttribute(*pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulPreferenceSetAttribute(*pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al);
  cublasLtMatmulPreferenceSetAttribute(*pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al);
  cublasLtMatmulPreferenceSetAttribute(*pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al);
  cublasLtMatmulPreferenceSetAttribute(*pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al);
  return CUBLAS_STATUS_SUCCESS;
}

static const char *new_plan(const gemm_key &k, gemm_plan **out) {
  if (nplans == SR_GEMM_CACHE) {  // full: drop everything (shapes churn only in tests)
    for (int i = 0; i < nplans; i++) {
      cublasLtMatmulDescDestroy(plans[i].desc);
      cublasLtMatrixLayoutDestroy(plans[i].la);
      cublasLtMatrixLayoutDestroy(plans[i].lb);
      cublasLtMatrixLayoutDestroy(plans[i].lc);
    }
    nplans = 0;
  }
  gemm_plan p;
  memset(&p, 0, sizeof p);
  p.key = k;
  cublasComputeType_t ct = (k.adt == SR_F32 && k.tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  LT_TRY(cublasLtMatmulDescCreate(&p.desc, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
  // cuBLAS "A" = b: column-major N x K when not transposed (b is row-major [K,N]); else K x N, op T
  cublasOperation_t opA = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opB = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA), "set TRANSA");
  LT_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB), "set TRANSB");
  uint64_t ar = k.tb ? k.K : k.N, ac = k.tb ? k.N : k.K;   // rows/cols of stored "A" (col-major)
  uint64_t br = k.ta ? k.M : k.K, bc = k.ta ? k.K : k.M;   // stored "B"
  LT_TRY(cublasLtMatrixLayoutCreate(&p.la, cuda_type(k.bdt), ar, ac, k.ldb), "layout A");
  LT_TRY(cublasLtMatrixLayoutCreate(&p.lb, cuda_type(k.adt), br, bc, k.lda), "layout B");
  LT_TRY(cublasLtMatrixLayoutCreate(&p.lc, cuda_type(k.odt), k.N, k.M, k.N), "layout C");
  if (k.B > 1) {
    int32_t bc32 = (int32_t)k.B;
    int64_t sC = k.M * k.N;
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc32, sizeof bc32), "batch");
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc32, sizeof bc32), "batch");
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc32, sizeof bc32), "batch");
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &k.sb, sizeof k.sb), "stride");
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &k.sa, sizeof k.sa), "stride");
    LT_TRY(cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sC, sizeof sC), "stride");
  }
  cublasLtMatmulPreference_t pref;
  LT_TRY(make_pref(k, &pref), "preference");
  cublasStatus_t st = sr_lt_algo("gemm", &k, sizeof k, p.desc, p.la, p.lb, p.lc, pref, &p.algo);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulDescDestroy(p.desc);
    cublasLtMatrixLayoutDestroy(p.la);
    cublasLtMatrixLayoutDestroy(p.lb);
    cublasLtMatrixLayoutDestroy(p.lc);
    return sr_errf("cuBLASLt found no algorithm for [%lld]x[%lld,%lld,%lld] (%s): %s", (long long)k.B, (long long)k.M,
                   (long long)k.N, (long long)k.K, sr_dtype_name((sr_dtype)k.adt), cublasLtGetStatusString(st));
  }
  plans[nplans] = p;
  *out = &plans[nplans++];
  return NULL;
}

// ----------------------------------------------------------------------------
// zero-padded copies for odd sizes

#define SR_GEMM_PAD 64                          // padded dims are multiples of this
#define SR_GEMM_PAD_MIN_WORK ((int64_t)1 << 26)  // M*N*K from which an odd GEMM is padded

// dst [rp, cp] (contiguous) = src [r, c] (row stride ld), zeros beyond
template <typename T>
__global__ void pad_copy_kernel(T *dst, const T *src, int64_t r, int64_t c, int64_t ld, int64_t rp, int64_t cp) {
  for (int64_t i = blockIdx.y; i < rp; i += gridDim.y)
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cp; j += (int64_t)gridDim.x * blockDim.x)
      dst[i * cp + j] = (i < r && j < c) ? src[i * ld + j] : (T)0.0f;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static dim3 copy_grid(int64_t rows, int64_t cols) {
  int64_t gx = CEIL_DIV(cols, 256), gy = rows;
  return dim3((unsigned)(gx < 64 ? gx : 64), (unsigned)(gy < 65535 ? gy : 65535));
}

static const char *pad_copy(int dt, void *dst, const void *src, int64_t r, int64_t c, int64_t ld, int64_t rp, int64_t cp,
                            cudaStream_t s) {
  if (dt == SR_BF16)
    pad_copy_kernel<<<copy_grid(rp, cp), 256, 0, s>>>((bf16 *)dst, (const bf16 *)src, r, c, ld, rp, cp);
  else
    pad_copy_kernel<<<copy_grid(rp, cp), 256, 0, s>>>((float *)dst, (const float *)src, r, c, ld, rp, cp);
  SR_LAUNCH_CHECK();
  return NULL;
}

// ----------------------------------------------------------------------------
// kernel launcher

// batch stride and row stride of a 3-D (or 2-D) operand whose last dim has unit stride
static bool strides3(const sr_tensor *x, int64_t *bs, int64_t *rs) {
  if (x->ndim == 2) { *bs = 0; *rs = x->stride[0]; return x->stride[1] == 1 || x->shape[1] == 1; }
  if (x->ndim != 3) return false;
  *bs = x->shape[0] == 1 ? 0 : x->stride[0];
  *rs = x->stride[1];
  return x->stride[2] == 1 || x->shape[2] == 1;
}

// ----------------------------------------------------------------------------
// SR_GEMM_TUNE (on; SR_GEMM_TUNE=0: the heuristic's first algorithm, as PyTorch's default GEMMs):
// a new plan's first call times the heuristic's first SR_GEMM_TUNE_N candidates on its own operands
// (one warm-up call, then the mean of 3, or 1 call when the first candidate took over 1 ms: its
// timing noise is small, and record 12's lm_head plans at full scale are ~8 ms a call) and keeps
// the first within 3 % of the fastest (close calls keep the heuristic's order, so the choice moves
// little with timing noise). Measured on an H100 (2026-12-07, bench/RESULTS.md): record 12's full
// step replayed 1,238.4 -> 1,209.6 ms (with 2 + 5 calls a candidate; now 1 + 3). The choice
// is remembered in the kernel cache (host/cuda/lt_algo.c, kind "gemm-t"): a run with that cache
// takes it untimed, the same algorithm and so the same bits; a run with a cold cache (score,
// calibrate) times again in its first step, setup time off the warm-up's clock (SR_SETUP_GEMM_TUNE,
// the stream drained first). Not while the stream is captured (the heuristic's answer stays then);
// an error keeps the heuristic's answer. A run picks once per shape, so its eager steps and its
// graph run the same algorithm.

#define SR_GEMM_TUNE_N 8

static bool gemm_tune_on() {
  static int v = -1;
  return !sr_env_is(&v, "SR_GEMM_TUNE", "0");
}

// ms a call of algo (the mean of reps after 1), or -1 when a call fails
static float tune_time(const gemm_plan *p, const cublasLtMatmulAlgo_t *algo, const void *pa, const void *pb, void *po,
                       float alpha, float beta, cudaStream_t s, cudaEvent_t e0, cudaEvent_t e1, int reps) {
  size_t ws;
  void *w = sr_cuda_workspace(&ws);
  cublasLtHandle_t h = (cublasLtHandle_t)sr_cuda_blaslt();
  for (int it = 0; it <= reps; it++) {
    if (it == 1 && cudaEventRecord(e0, s) != cudaSuccess) return -1.f;
    if (cublasLtMatmul(h, p->desc, &alpha, pb, p->la, pa, p->lb, &beta, po, p->lc, po, p->lc, algo, w, ws, s) !=
        CUBLAS_STATUS_SUCCESS)
      return -1.f;
  }
  float ms = -1.f;
  if (cudaEventRecord(e1, s) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
      cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
    return -1.f;
  return ms / (float)reps;
}

// the index of the first of n candidates timed within 3 % of the fastest, or -1 when none ran
static int tune_pick(const gemm_plan *p, const cublasLtMatmulHeuristicResult_t *r, int n, const void *pa,
                     const void *pb, void *out, float alpha, float beta, cudaStream_t s) {
  cudaEvent_t e0, e1;
  int pick = -1;
  if (cudaEventCreate(&e0) != cudaSuccess) return -1;
  if (cudaEventCreate(&e1) == cudaSuccess) {
    float t[SR_GEMM_TUNE_N], best = -1.f;
    int reps = 3;
    for (int i = 0; i < n; i++) {
      t[i] = tune_time(p, &r[i].algo, pa, pb, out, alpha, beta, s, e0, e1, reps);
      if (i == 0 && t[0] > 1.f) reps = 1;
      if (t[i] > 0.f && (best < 0.f || t[i] < best)) best = t[i];
    }
    for (int i = 0; i < n && best > 0.f && pick < 0; i++)
      if (t[i] > 0.f && t[i] <= 1.03f * best) pick = i;
    cudaEventDestroy(e1);
  }
  cudaEventDestroy(e0);
  return pick;
}

// p's algorithm: the one a run with this kernel cache chose before, else the candidates timed on
// these operands (into po when beta is 0: the real call writes it next; else into a scratch output
// of its size), the choice remembered
static void tune_plan(gemm_plan *p, const void *pa, const void *pb, void *po, float alpha, float beta, cudaStream_t s) {
  p->tuned = 1;
  if (sr_cuda_capturing()) return;
  double t0 = sr_cuda_setup_clock();
  const gemm_key &k = p->key;
  if (!sr_lt_algo_recall("gemm-t", &k, sizeof k, p->desc, p->la, p->lb, p->lc, &p->algo)) {
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulHeuristicResult_t r[SR_GEMM_TUNE_N];
    int nr = 0;
    if (make_pref(k, &pref) != CUBLAS_STATUS_SUCCESS) return;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)sr_cuda_blaslt(), p->desc, p->la, p->lb, p->lc,
                                                       p->lc, pref, SR_GEMM_TUNE_N, r, &nr);
    cublasLtMatmulPreferenceDestroy(pref);
    void *out = po, *scratch = NULL;
    if (beta != 0.f && st == CUBLAS_STATUS_SUCCESS && nr > 1)
      out = scratch = sr_cuda_malloc((size_t)(k.B * k.M * k.N * (k.odt == SR_BF16 ? 2 : 4)));
    int pick = st != CUBLAS_STATUS_SUCCESS || nr < 1 ? -1 : nr == 1 ? 0 : out ? tune_pick(p, r, nr, pa, pb, out, alpha, beta, s) : -1;
    if (pick >= 0) {
      p->algo = r[pick].algo;
      sr_lt_algo_remember("gemm-t", &k, sizeof k, &p->algo);
    }
    sr_cuda_free(scratch);
    cudaGetLastError();  // a candidate's failure is not the call's
  }
  sr_cuda_note_setup(SR_SETUP_GEMM_TUNE, sr_monotonic_s() - t0);
}

// one cuBLASLt call for key k (alignment taken from the pointers)
static const char *gemm_run(gemm_key k, const void *pa, const void *pb, void *po, float alpha, float beta,
                            cudaStream_t s) {
  k.align = min(min(ptr_align(pa), ptr_align(pb)), ptr_align(po));
  gemm_plan *p;
  const char *err = make_plan(k, &p);
  if (err) return err;
  if (!p->tuned && gemm_tune_on()) tune_plan(p, pa, pb, po, alpha, beta, s);
  size_t ws;
  void *w = sr_cuda_workspace(&ws);
  cublasStatus_t st = cublasLtMatmul((cublasLtHandle_t)sr_cuda_blaslt(), p->desc, &alpha, pb, p->la, pa, p->lb, &beta,
                                     po, p->lc, po, p->lc, &p->algo, w, ws, s);
  if (st != CUBLAS_STATUS_SUCCESS)
    return sr_errf("cublasLtMatmul [%lld]x[%lld,%lld,%lld]: %s", (long long)k.B, (long long)k.M, (long long)k.N,
                   (long long)k.K, cublasLtGetStatusString(st));
  SR_LAUNCH_CHECK();
  return NULL;
}

// k (B = 1) on zero-padded copies of the unaligned operands (see the top of the file). M, the
// rows of out, never grows: an odd M with aligned row strides runs at full speed (bench/gemm_ld.cu);
// a transposed a ([K,M]) that must be copied gets its row stride rounded up instead.
static const char *gemm_padded(gemm_key k, const void *pa, const void *pb, void *po, float alpha, float beta,
                               cudaStream_t s) {
  int64_t M = k.M, Np = round_up(k.N, SR_GEMM_PAD), Kp = round_up(k.K, SR_GEMM_PAD);
  int64_t ea = 16 / (k.adt == SR_BF16 ? 2 : 4), eo = 16 / (k.odt == SR_BF16 ? 2 : 4);
  // stored shapes: a is [M,K] or [K,M] (ta), b is [K,N] or [N,K] (tb); their padded copies
  int64_t ar = k.ta ? k.K : M, ac = k.ta ? M : k.K, arp = k.ta ? Kp : M, acp = k.ta ? round_up(M, SR_GEMM_PAD) : Kp;
  int64_t br = k.tb ? k.N : k.K, bc = k.tb ? k.K : k.N, brp = k.tb ? Np : Kp, bcp = k.tb ? Kp : Np;
  bool pad_a = Kp != k.K || k.lda % ea || ptr_align(pa) < 16;
  bool pad_b = Kp != k.K || Np != k.N || k.ldb % ea || ptr_align(pb) < 16;
  bool pad_o = Np != k.N || k.N % eo || ptr_align(po) < 16;
  size_t esz = k.adt == SR_BF16 ? 2 : 4, osz = k.odt == SR_BF16 ? 2 : 4;
  void *a2 = pad_a ? sr_cuda_malloc((size_t)(arp * acp) * esz) : (void *)pa;
  void *b2 = pad_b ? sr_cuda_malloc((size_t)(brp * bcp) * esz) : (void *)pb;
  void *o2 = pad_o ? sr_cuda_malloc((size_t)(M * Np) * osz) : po;
  const char *err = (pad_a && !a2) || (pad_b && !b2) || (pad_o && !o2)
                        ? sr_errf("out of memory for the padded copies of [%lld,%lld,%lld]", (long long)M,
                                  (long long)k.N, (long long)k.K)
                        : NULL;
  if (!err && pad_a) err = pad_copy(k.adt, a2, pa, ar, ac, k.lda, arp, acp, s);
  if (!err && pad_b) err = pad_copy(k.bdt, b2, pb, br, bc, k.ldb, brp, bcp, s);
  if (!err && pad_o && beta != 0.0f) err = pad_copy(k.odt, o2, po, M, k.N, k.N, M, Np, s);
  if (!err) {
    gemm_key kp = k;
    kp.N = Np; kp.K = Kp;  // Np == N when out is used as it is
    kp.lda = pad_a ? acp : k.lda;
    kp.ldb = pad_b ? bcp : k.ldb;
    err = gemm_run(kp, a2, b2, o2, alpha, beta, s);
  }
  if (!err && pad_o) err = pad_copy(k.odt, po, o2, M, k.N, Np, M, k.N, s);  // the [M, N] corner back
  if (pad_a) sr_cuda_free(a2);
  if (pad_b) sr_cuda_free(b2);
  if (pad_o) sr_cuda_free(o2);
  return err;
}

extern "C" const char *sr_cuda_gemm(const sr_kcall *c) {
  sr_tensor *o = c->t[0], *a = c->t[1], *b = c->t[2];
  int ta = (int)c->i[0], tb = (int)c->i[1];
  if (!((a->dtype == SR_BF16 && b->dtype == SR_BF16 && (o->dtype == SR_BF16 || o->dtype == SR_F32)) ||
        (a->dtype == SR_F32 && b->dtype == SR_F32 && o->dtype == SR_F32)))
    return sr_errf("unsupported dtypes out %s = %s @ %s on cuda (bf16@bf16->bf16/f32 or f32@f32->f32)",
                   sr_dtype_name((sr_dtype)o->dtype), sr_dtype_name((sr_dtype)a->dtype), sr_dtype_name((sr_dtype)b->dtype));
  if (!sr_is_contiguous(o) || (o->ndim != 3 && o->ndim != 2)) return sr_errf("out must be a contiguous [B,M,N]");
  int64_t B = o->ndim == 3 ? o->shape[0] : 1, M = o->shape[o->ndim - 2], N = o->shape[o->ndim - 1];
  int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
  gemm_key k;
  memset(&k, 0, sizeof k);
  k.adt = a->dtype; k.bdt = b->dtype; k.odt = o->dtype;
  k.ta = ta; k.tb = tb;
  k.B = B; k.M = M; k.N = N; k.K = K;
  if (!strides3(a, &k.sa, &k.lda) || !strides3(b, &k.sb, &k.ldb))
    return sr_errf("a and b must be 2-D or 3-D with unit stride in their last dim");
  // cuBLAS needs ld >= rows of the stored column-major matrix; a size-1 dim may carry any stride
  int64_t a_rows = ta ? M : K, b_rows = tb ? K : N;
  if (k.lda < a_rows) k.lda = a_rows;
  if (k.ldb < b_rows) k.ldb = b_rows;
  if ((a->ndim == 3 && a->shape[0] != B && a->shape[0] != 1) || (b->ndim == 3 && b->shape[0] != B && b->shape[0] != 1))
    return sr_errf("batch sizes differ");
  if (M == 0 || N == 0) return NULL;
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  if (K == 0) {  // out = f1 * out
    sr_kcall f = *c;
    f.nt = 2; f.t[1] = o; f.i[0] = SR_UNARY_MUL_SCALAR; f.f[0] = c->f[1];
    if (c->f[1] == 0.0) { f.nt = 1; f.f[0] = 0.0; return sr_cuda_fill(&f); }
    return sr_cuda_unary(&f);
  }
  void *pa = sr_data(a), *pb = sr_data(b), *po = sr_data(o);
  k.beta_nonzero = c->f[1] != 0.0;
  static int tf32 = -1;
  k.tf32 = sr_env_is(&tf32, "SPEEDRUN_TF32", "1");
  float alpha = (float)c->f[0], beta = (float)c->f[1];
  int64_t ea = a->dtype == SR_BF16 ? 8 : 4, eo = o->dtype == SR_BF16 ? 8 : 4;  // elements per 16 bytes
  bool odd = N % ea || K % ea || k.lda % ea || k.ldb % ea || N % eo ||
             min(min(ptr_align(pa), ptr_align(pb)), ptr_align(po)) < 16;
  if (odd && B == 1 && M * N * K >= SR_GEMM_PAD_MIN_WORK) return gemm_padded(k, pa, pb, po, alpha, beta, s);
  return gemm_run(k, pa, pb, po, alpha, beta, s);
}
