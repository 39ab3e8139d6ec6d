/*
** gemm_algos.cu: what timing cuBLASLt's candidates would buy over its heuristic's first answer
** (benchmark, not a test). The engine runs every GEMM with the first algorithm the heuristic
** returns (kernels/matmul.cu, host/cuda/lt_algo.c), as PyTorch's default (non-autotuned) GEMMs do.
** For each GEMM of a record-12 training step at full shape (M = 65,536 tokens a micro-batch, width
** 768, MLP 3,072, vocabulary 50,304; the forward y = x W^T, dX = g W with beta 0 and with beta 1 as
** autograd's accumulate fusion runs it, dW = g^T x into an f32 gradient with beta 1 as the cast_gemm
** fusion does), it asks the heuristic for up to 16 algorithms under the engine's 32 MiB workspace,
** times each (CUDA events, 3 warm-ups, the mean of 10 runs), and prints the first's time, the
** best's, which it was and the ratio; then the step's GEMM time both ways, weighted by how often a
** step runs each GEMM (8 micro-batches, 12 layers: q, k, v, o, fc, proj; the lm_head once a
** micro-batch). Operands hold pseudo-random values in [-1, 1].
** Built as build/gemm_algos (CMake target gemm_algos when CUDA is on); usage: gemm_algos [M]
*/
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)
#define BK(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { printf("%s: status %d\n", #x, (int)s_); exit(1); } } while (0)

static cublasLtHandle_t lt;
static void *ws;
static size_t wsz = 32 << 20;  // the engine's workspace (host/cuda/backend.c)

__global__ void fill_kernel(__nv_bfloat16 *p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13;
    p[i] = __float2bfloat16((h & 0xffffff) / 8388608.f - 1.f);
  }
}
static __nv_bfloat16 *rnd_bf16(long long n, unsigned seed) {
  __nv_bfloat16 *p;
  CK(cudaMalloc(&p, n * sizeof *p));
  fill_kernel<<<1024, 256>>>(p, n, seed);
  CK(cudaGetLastError());
  return p;
}

// one GEMM in cuBLASLt's column-major terms: C[m,n] = op(A) op(B) (+ beta C), bf16 A and B, C bf16 or f32
typedef struct {
  const char *name;
  cublasOperation_t ta, tb;
  int m, n, k, lda, ldb, ldc;
  const void *A, *B;
  void *C;
  cudaDataType_t ct;
  float beta;
  int per_step;  // how often a record-12 step runs it
} gemm;

static float time_algo(const gemm *g, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                       cublasLtMatrixLayout_t lc, const cublasLtMatmulAlgo_t *algo, cudaEvent_t e0, cudaEvent_t e1) {
  float one = 1.f;
  for (int it = 0; it < 13; it++) {
    if (it == 3) CK(cudaEventRecord(e0));
    if (cublasLtMatmul(lt, d, &one, g->A, la, g->B, lb, &g->beta, g->C, lc, g->C, lc, algo, ws, wsz, 0) != CUBLAS_STATUS_SUCCESS)
      return -1.f;
  }
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  return ms / 10.f;
}

// the first algorithm's time and the best's (of up to 16), printed as a table row
static void run(const gemm *g, double *first_total, double *best_total) {
  cublasLtMatmulDesc_t d;
  cublasLtMatrixLayout_t la, lb, lc;
  BK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &g->ta, sizeof g->ta));
  BK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &g->tb, sizeof g->tb));
  BK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, g->ta == CUBLAS_OP_N ? g->m : g->k, g->ta == CUBLAS_OP_N ? g->k : g->m, g->lda));
  BK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, g->tb == CUBLAS_OP_N ? g->k : g->n, g->tb == CUBLAS_OP_N ? g->n : g->k, g->ldb));
  BK(cublasLtMatrixLayoutCreate(&lc, g->ct, g->m, g->n, g->ldc));
  cublasLtMatmulPreference_t p;
  BK(cublasLtMatmulPreferenceCreate(&p));
  BK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
  cublasLtMatmulHeuristicResult_t r[16];
  int nr = 0;
  BK(cublasLtMatmulAlgoGetHeuristic(lt, d, la, lb, lc, lc, p, 16, r, &nr));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  float first = -1.f, best = -1.f;
  int besti = -1, ok = 0;
  for (int i = 0; i < nr; i++) {
    float t = time_algo(g, d, la, lb, lc, &r[i].algo, e0, e1);
    if (t < 0) continue;
    ok++;
    if (i == 0) first = t;
    if (best < 0 || t < best) best = t, besti = i;
  }
  double flop = 2.0 * g->m * g->n * g->k;
  if (first > 0)
    printf("| %s | %d x %d x %d | %d of %d | %.3f (%.0f TFLOP/s) | %.3f (#%d, %.0f TFLOP/s) | %.3f |\n", g->name, g->m, g->n, g->k,
           ok, nr, first, flop / first / 1e9, best, besti + 1, flop / best / 1e9, best / first);
  else
    printf("| %s | %d x %d x %d | %d of %d | the first algorithm failed | - | - |\n", g->name, g->m, g->n, g->k, ok, nr);
  if (first > 0) *first_total += first * g->per_step, *best_total += best * g->per_step;
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cublasLtMatmulPreferenceDestroy(p);
  cublasLtMatmulDescDestroy(d);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
}

int main(int argc, char **argv) {
  int M = argc > 1 ? atoi(argv[1]) : 65536;
  if (M <= 0 || M % 64) { printf("usage: gemm_algos [M, a positive multiple of 64]\n"); return 2; }
  const int C = 768, F = 3072, V = 50304, L = 12, MB = 8;
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) { printf("gemm_algos: no usable GPU\n"); return 1; }
  BK(cublasLtCreate(&lt));
  CK(cudaMalloc(&ws, wsz));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("gemm_algos: %s, M %d; ms a GEMM (mean of 10 after 3), cuBLASLt %zu, workspace %zu MiB\n", prop.name, M,
         cublasLtGetVersion(), wsz >> 20);
  // operands big enough for every GEMM: activations and gradients [M, V], weights [V, F]
  __nv_bfloat16 *x = rnd_bf16((long long)M * F, 1), *g = rnd_bf16((long long)M * V, 2), *w = rnd_bf16((long long)V * F, 3);
  __nv_bfloat16 *y;
  float *dw;
  CK(cudaMalloc(&y, (size_t)M * V * sizeof *y));
  CK(cudaMalloc(&dw, (size_t)V * F * sizeof *dw));
  CK(cudaMemset(dw, 0, (size_t)V * F * sizeof *dw));
  struct { const char *name; int n, k, per_micro; } lin[] = {
      {"q/k/v/o", C, C, 4 * L}, {"fc", F, C, L}, {"proj", C, F, L}, {"lm_head", V, C, 1}};
  printf("| GEMM (row-major: y = x W^T, dX = g W, dW = g^T x) | m x n x k | algorithms run | first ms | best ms | best / first |\n");
  printf("|---|---|---|---|---|---|\n");
  double first_total = 0, best_total = 0;
  char nm[4][64];
  for (int i = 0; i < 4; i++) {
    int N = lin[i].n, K = lin[i].k, per = lin[i].per_micro * MB;
    snprintf(nm[0], 64, "%s fwd", lin[i].name);
    snprintf(nm[1], 64, "%s dX", lin[i].name);
    snprintf(nm[2], 64, "%s dX, beta 1", lin[i].name);
    snprintf(nm[3], 64, "%s dW, f32 beta 1", lin[i].name);
    // q, k, v: two of three dX are added into the sum (accumulate); the others write theirs
    int acc = i == 0 ? 2 * L * MB : 0;
    gemm gs[4] = {
        {nm[0], CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, K, K, N, w, x, y, CUDA_R_16BF, 0.f, per},
        {nm[1], CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, K, N, K, w, g, y, CUDA_R_16BF, 0.f, per - acc},
        {nm[2], CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, K, N, K, w, g, y, CUDA_R_16BF, 1.f, acc},
        {nm[3], CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, K, N, K, x, g, dw, CUDA_R_32F, 1.f, per}};
    for (int j = 0; j < 4; j++)
      if (gs[j].per_step > 0) run(&gs[j], &first_total, &best_total);
  }
  printf("a record-12 step's GEMMs (the model's, not Muon's): %.1f ms with the first algorithms, %.1f ms with the best "
         "(%.1f %% less)\n", first_total, best_total, 100.0 * (1.0 - best_total / first_total));
  return 0;
}
