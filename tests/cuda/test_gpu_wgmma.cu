/*
** test_gpu_wgmma.cu: kernels/wgmma.cuh's products on one warpgroup against a host reference in
** double: S = A B^T with A and B K-major in shared memory (attention's Q K^T), O = A V with V
** MN-major (P V), A from shared memory and from registers, and S = V^T B^T with A MN-major (the
** backward's dQ = dS K reads dS^T so). A failing MN-major case is run again
** with LBO and SBO swapped, and the output says whether that matches (the descriptor's two
** offsets are the easy thing to get backwards). Built for sm_90a only (wgmma), with the CUDA
** backend; exits 77 (skipped) without a Hopper GPU.
*/
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../kernels/wgmma.cuh"

typedef __nv_bfloat16 bf16;
enum { KD = 128, N64 = 64 };
enum { MODE_QK, MODE_PV_SS, MODE_PV_RS, MODE_TA, NMODES };
static const char *MODE_NAME[NMODES] = {"S = A B^T (A, B K-major, shared)", "O = A V (V MN-major, A shared)",
                                        "O = A V (V MN-major, A in registers)", "S = V^T B^T (A = V^T MN-major, B K-major)"};

#define CHECK(call)                                                                            \
  do {                                                                                         \
    cudaError_t e_ = (call);                                                                   \
    if (e_ != cudaSuccess) {                                                                   \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

// an R x C row-major matrix into the core-matrix layout of wgmma.cuh
__device__ void stage(bf16 *s, const bf16 *g, int R, int C) {
  for (int i = threadIdx.x; i < R * C; i += blockDim.x) s[wg_off(i / C, i % C, R)] = g[i];
}
__device__ uint32_t pack2(bf16 lo, bf16 hi) {
  return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

// C [64 x 64] f32 = A [64 x KD] times B^T (B [64 x KD], MODE_QK) or B (B [KD x 64], the PV modes);
// MODE_TA: A is given as A^T [KD x 64] and B as [64 x KD]
__global__ void wgmma_case(float *C, const bf16 *A, const bf16 *B, int mode, int swap) {
  __shared__ __align__(128) bf16 As[N64 * KD], Bs[N64 * KD];
  stage(As, A, mode == MODE_TA ? KD : N64, mode == MODE_TA ? N64 : KD);
  if (mode == MODE_QK || mode == MODE_TA) stage(Bs, B, N64, KD);
  else stage(Bs, B, KD, N64);
  wg_fence_smem();
  __syncthreads();
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  uint32_t a[KD / 16][4];  // this warp's rows as mma.sync A fragments, every k16 slice (MODE_PV_RS)
  for (int kk = 0; kk < KD / 16 && mode == MODE_PV_RS; kk++) {
    int r = 16 * w + g, c = 16 * kk + 2 * t;
    a[kk][0] = pack2(A[r * KD + c], A[r * KD + c + 1]);
    a[kk][1] = pack2(A[(r + 8) * KD + c], A[(r + 8) * KD + c + 1]);
    a[kk][2] = pack2(A[r * KD + c + 8], A[r * KD + c + 9]);
    a[kk][3] = pack2(A[(r + 8) * KD + c + 8], A[(r + 8) * KD + c + 9]);
  }
  uint32_t lbo = 128, sbo = KD * 16;  // V MN-major: the next 8 rows of K, the next 8 columns of N
  if (swap) { uint32_t x = lbo; lbo = sbo; sbo = x; }
  float d[32];
  for (int i = 0; i < 32; i++) d[i] = 0.f;
  wg_fence();
  for (int kk = 0; kk < KD / 16; kk++) {
    uint64_t da = wg_desc(As + kk * 2 * (N64 / 8) * 64, N64 * 16, 128);
    if (mode == MODE_QK) wg_m64n64k16_ss<0>(d, da, wg_desc(Bs + kk * 2 * (N64 / 8) * 64, N64 * 16, 128), kk > 0);
    else if (mode == MODE_TA)  // A^T [KD x 64] MN-major: the next 8 rows of K at 128 B, the next 8 of M at 16 KD
      wg_m64n64k16_ss<0, 1>(d, wg_desc(As + kk * 2 * 64, swap ? KD * 16 : 128, swap ? 128 : KD * 16),
                            wg_desc(Bs + kk * 2 * (N64 / 8) * 64, N64 * 16, 128), kk > 0);
    else if (mode == MODE_PV_SS) wg_m64n64k16_ss<1>(d, da, wg_desc(Bs + kk * 2 * 64, lbo, sbo), kk > 0);
    else wg_m64n64k16_rs<1>(d, a[kk], wg_desc(Bs + kk * 2 * 64, lbo, sbo), kk > 0);
  }
  wg_commit();
  wg_wait<0>();
  wg_keep(d);
  for (int kk = 0; kk < KD / 16; kk++) wg_keep(a[kk]);
  for (int j = 0; j < 8; j++)
    for (int e = 0; e < 4; e++) C[(16 * w + g + (e >> 1) * 8) * N64 + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
}

static float urand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return (float)(*s >> 8) / 16777216.0f * 2.f - 1.f; }

// the largest |C - reference| of one case
static double run_case(int mode, int swap, const bf16 *dA, const bf16 *dB, const float *hA, const float *hB, float *dC) {
  wgmma_case<<<1, 128>>>(dC, dA, dB, mode, swap);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  static float C[N64 * N64];
  CHECK(cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost));
  double worst = 0;
  for (int i = 0; i < N64; i++)
    for (int j = 0; j < N64; j++) {
      double ref = 0;
      for (int k = 0; k < KD; k++)
        ref += mode == MODE_TA ? (double)hA[k * N64 + i] * hB[j * KD + k]
                               : (double)hA[i * KD + k] * (mode == MODE_QK ? hB[j * KD + k] : hB[k * N64 + j]);
      worst = fmax(worst, fabs(C[i * N64 + j] - ref));
    }
  return worst;
}

int main(void) {
  int n = 0;
  cudaDeviceProp p;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) { printf("SKIP: no usable GPU\n"); return 77; }
  CHECK(cudaGetDeviceProperties(&p, 0));
  if (p.major != 9) { printf("SKIP: wgmma needs sm_90 (this GPU is sm_%d%d)\n", p.major, p.minor); return 77; }
  static float hA[N64 * KD], hB[2][N64 * KD];
  static bf16 bA[N64 * KD], bB[2][N64 * KD];
  uint32_t s = 12345;
  for (int i = 0; i < N64 * KD; i++) {
    bA[i] = __float2bfloat16(urand(&s)); hA[i] = __bfloat162float(bA[i]);
    for (int m = 0; m < 2; m++) { bB[m][i] = __float2bfloat16(urand(&s)); hB[m][i] = __bfloat162float(bB[m][i]); }
  }
  bf16 *dA, *dB[2];
  float *dC;
  CHECK(cudaMalloc(&dA, sizeof bA));
  CHECK(cudaMalloc(&dC, N64 * N64 * sizeof(float)));
  CHECK(cudaMemcpy(dA, bA, sizeof bA, cudaMemcpyHostToDevice));
  for (int m = 0; m < 2; m++) {
    CHECK(cudaMalloc(&dB[m], sizeof bB[m]));
    CHECK(cudaMemcpy(dB[m], bB[m], sizeof bB[m], cudaMemcpyHostToDevice));
  }
  int failed = 0;
  for (int mode = 0; mode < NMODES; mode++) {
    int b = mode == MODE_QK || mode == MODE_TA ? 0 : 1;   // B [64 x KD] for S, V [KD x 64] for O
    // MODE_TA: A^T is V [KD x 64]
    const bf16 *a_dev = mode == MODE_TA ? dB[1] : dA;
    const float *a_host = mode == MODE_TA ? hB[1] : hA;
    double e = run_case(mode, 0, a_dev, dB[b], a_host, hB[b], dC);
    int ok = e <= 1e-3;  // f32 sums of 128 exact bf16 products of magnitude <= 1
    printf("%s %s: largest |error| %.3g\n", ok ? "ok  " : "FAIL", MODE_NAME[mode], e);
    if (!ok && mode != MODE_QK) {
      double e2 = run_case(mode, 1, a_dev, dB[b], a_host, hB[b], dC);
      printf("     with LBO and SBO swapped: largest |error| %.3g%s\n", e2, e2 <= 1e-3 ? " (matches: swap them in wgmma.cuh)" : "");
    }
    failed += !ok;
  }
  printf("%d passed, %d failed\n", NMODES - failed, failed);
  CHECK(cudaFree(dA));
  CHECK(cudaFree(dC));
  for (int m = 0; m < 2; m++) CHECK(cudaFree(dB[m]));
  return failed ? 1 : 0;
}
