/*
** gemm_ld.cu: why the engine pads odd row strides (benchmark, not a test). Times the three
** lm_head GEMMs of GPT-2 at an odd vocabulary (x [M,K] bf16, w [V,K] bf16, logits [M,V] bf16;
** M = 32768, K = 768, V = 50257) through cuBLASLt with
**   (1) row stride ld = V (odd: rows are not 16-byte aligned),
**   (2) row stride ld = Vp = 50304 (the same V columns inside a padded buffer),
** and through cublasGemmEx with ld = V (what PyTorch's eager path calls). Prints ms per GEMM.
** Built as build/gemm_ld (CMake target gemm_ld when CUDA is on).
*/
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)
#define BK(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { printf("%s: %d\n", #x, (int)s_); exit(1); } } while (0)

static cublasLtHandle_t lt;
static cublasHandle_t blas;
static void *ws; static size_t wsz = 32 << 20;

// column-major C[m,n] = op(A) op(B) via cuBLASLt, bf16 in/out, f32 compute
static void lt_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
                    const void *B, int ldb, void *C, int ldc) {
  cublasLtMatmulDesc_t d; cublasLtMatrixLayout_t la, lb, lc;
  BK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  BK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  BK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda));
  BK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb));
  BK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, m, n, ldc));
  cublasLtMatmulPreference_t p; BK(cublasLtMatmulPreferenceCreate(&p));
  BK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
  cublasLtMatmulHeuristicResult_t r; int nr = 0;
  BK(cublasLtMatmulAlgoGetHeuristic(lt, d, la, lb, lc, lc, p, 1, &r, &nr));
  float one = 1, zero = 0;
  BK(cublasLtMatmul(lt, d, &one, A, la, B, lb, &zero, C, lc, C, lc, &r.algo, ws, wsz, 0));
  cublasLtMatmulPreferenceDestroy(p); cublasLtMatmulDescDestroy(d);
  cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb); cublasLtMatrixLayoutDestroy(lc);
}
static void ex_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
                    const void *B, int ldb, void *C, int ldc) {
  float one = 1, zero = 0;
  BK(cublasGemmEx(blas, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &zero, C, CUDA_R_16BF, ldc,
                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
typedef void (*gemm_fn)(cublasOperation_t, cublasOperation_t, int, int, int, const void *, int, const void *, int, void *, int);

// the three GEMMs (row-major): logits = x w^T; dx = dlogits w; dw = dlogits^T x
static float time3(gemm_fn g, int M, int V, int K, int ld, void *x, void *w, void *lg, void *dx, void *dw, float *each) {
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  for (int which = 0; which < 3; which++) {
    for (int it = 0; it < 13; it++) {
      if (it == 3) CK(cudaEventRecord(e0));
      if (which == 0) g(CUBLAS_OP_T, CUBLAS_OP_N, V, M, K, w, K, x, K, lg, ld);        // lg^T[V,M]
      else if (which == 1) g(CUBLAS_OP_N, CUBLAS_OP_N, K, M, V, w, K, lg, ld, dx, K);  // dx^T[K,M]
      else g(CUBLAS_OP_N, CUBLAS_OP_T, K, V, M, x, K, lg, ld, dw, K);                  // dw^T[K,V]
    }
    CK(cudaEventRecord(e1)); CK(cudaEventSynchronize(e1));
    float ms; CK(cudaEventElapsedTime(&ms, e0, e1)); each[which] = ms / 10;
  }
  return each[0] + each[1] + each[2];
}

int main(void) {
  int M = 32768, K = 768, V = 50257, Vp = 50304;
  BK(cublasLtCreate(&lt)); BK(cublasCreate(&blas));
  void *x, *w, *lg, *dx, *dw;
  CK(cudaMalloc(&ws, wsz)); CK(cudaMalloc(&x, (size_t)M * K * 2)); CK(cudaMalloc(&w, (size_t)Vp * K * 2));
  CK(cudaMalloc(&lg, (size_t)M * Vp * 2)); CK(cudaMalloc(&dx, (size_t)M * K * 2)); CK(cudaMalloc(&dw, (size_t)Vp * K * 2));
  CK(cudaMemset(x, 0x3c, (size_t)M * K * 2)); CK(cudaMemset(w, 0x3c, (size_t)Vp * K * 2)); CK(cudaMemset(lg, 0x3c, (size_t)M * Vp * 2));
  cudaDeviceProp pr; CK(cudaGetDeviceProperties(&pr, 0));
  printf("%s: lm_head GEMMs M=%d K=%d V=%d (ms: forward, dx, dw, total)\n", pr.name, M, K, V);
  float e[3], t;
  t = time3(lt_gemm, M, V, K, V, x, w, lg, dx, dw, e);  printf("cuBLASLt   ld=%d  %7.3f %7.3f %7.3f  %7.3f\n", V, e[0], e[1], e[2], t);
  t = time3(lt_gemm, M, V, K, Vp, x, w, lg, dx, dw, e); printf("cuBLASLt   ld=%d  %7.3f %7.3f %7.3f  %7.3f\n", Vp, e[0], e[1], e[2], t);
  t = time3(ex_gemm, M, V, K, V, x, w, lg, dx, dw, e);  printf("cublasGemmEx ld=%d %7.3f %7.3f %7.3f  %7.3f\n", V, e[0], e[1], e[2], t);
  t = time3(lt_gemm, M, Vp, K, Vp, x, w, lg, dx, dw, e); printf("cuBLASLt   V=ld=%d %7.3f %7.3f %7.3f  %7.3f\n", Vp, e[0], e[1], e[2], t);
  return 0;
}
