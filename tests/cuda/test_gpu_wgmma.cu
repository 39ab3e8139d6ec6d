/*
** test_gpu_wgmma.cu: kernels/wgmma.cuh's products on one warpgroup against a host reference in
** double: S = A B^T with A and B K-major in shared memory (attention's Q K^T), O = A V with V
** MN-major (P V), A from shared memory and from registers, and S = V^T B^T with A MN-major (the
** backward's dQ = dS K reads dS^T so). A failing MN-major case is run again
** with LBO and SBO swapped, and the output says whether that matches (the descriptor's two
** offsets are the easy thing to get backwards). Each mode runs in both shared-memory layouts of
** wgmma.cuh: the core-matrix one the kernels use and the 128-byte swizzled one (sw128_off,
** wg_desc_sw128) that TMA writes; O = A W with N = 128 in one product (wg_m64n128k16_rs, W
** swizzled: its two panels LBO apart); then a TMA load (kernels/tma.cuh: a 64 x 128 tile of a padded
** matrix as two 64 x 64 boxes, counted on an mbarrier) checked element by element against
** sw128_off. Built for sm_90a only (wgmma), with the CUDA backend; exits 77 (skipped) without a
** Hopper GPU.
*/
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../kernels/tma.cuh"
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

// an R x C row-major matrix into the core-matrix layout of wgmma.cuh, or (sw) the 128-byte swizzled one
__device__ void stage(bf16 *s, const bf16 *g, int R, int C, int sw) {
  for (int i = threadIdx.x; i < R * C; i += blockDim.x) s[sw ? sw128_off(i / C, i % C, R) : wg_off(i / C, i % C, R)] = g[i];
}
// a descriptor of either layout
__device__ uint64_t desc(const bf16 *p, uint32_t lbo, uint32_t sbo, int sw) {
  return sw ? wg_desc_sw128(p, lbo, sbo) : wg_desc(p, lbo, sbo);
}
__device__ uint32_t pack2(bf16 lo, bf16 hi) {
  return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

// warp w's rows of A [64 x KD] (row-major, global) as mma.sync's A fragment of the k16 slice kk
__device__ void a_frag(uint32_t (&a)[4], const bf16 *A, int w, int g, int t, int kk) {
  int r = 16 * w + g, c = 16 * kk + 2 * t;
  a[0] = pack2(A[r * KD + c], A[r * KD + c + 1]);
  a[1] = pack2(A[(r + 8) * KD + c], A[(r + 8) * KD + c + 1]);
  a[2] = pack2(A[r * KD + c + 8], A[r * KD + c + 9]);
  a[3] = pack2(A[(r + 8) * KD + c + 8], A[(r + 8) * KD + c + 9]);
}

// C [64 x 64] f32 = A [64 x KD] times B^T (B [64 x KD], MODE_QK) or B (B [KD x 64], the PV modes);
// MODE_TA: A is given as A^T [KD x 64] and B as [64 x KD]
// sw: both operands in the 128-byte swizzled layout
__global__ void wgmma_case(float *C, const bf16 *A, const bf16 *B, int mode, int swap, int sw) {
  __shared__ __align__(1024) bf16 As[N64 * KD], Bs[N64 * KD];
  stage(As, A, mode == MODE_TA ? KD : N64, mode == MODE_TA ? N64 : KD, sw);
  if (mode == MODE_QK || mode == MODE_TA) stage(Bs, B, N64, KD, sw);
  else stage(Bs, B, KD, N64, sw);
  wg_fence_smem();
  __syncthreads();
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  uint32_t a[KD / 16][4];  // this warp's rows as mma.sync A fragments, every k16 slice (MODE_PV_RS)
  for (int kk = 0; kk < KD / 16 && mode == MODE_PV_RS; kk++) a_frag(a[kk], A, w, g, t, kk);
  // MN-major (V [KD x 64], A^T [KD x 64]): core-matrix layout, the next 8 rows of K at 128 B and the
  // next 8 columns at 16 KD; swizzled, the next 64 columns (the next panel) at 128 KD B and the next 8
  // rows of K at 1024 B, the k16 slice kk at 2048 kk B
  uint32_t lbo = sw ? KD * 128 : 128, sbo = sw ? 1024 : KD * 16;
  if (swap) { uint32_t x = lbo; lbo = sbo; sbo = x; }
  float d[32];
  for (int i = 0; i < 32; i++) d[i] = 0.f;
  wg_fence();
  for (int kk = 0; kk < KD / 16; kk++) {
    // K-major [64 x KD]: core-matrix layout, slice kk 2 kk core matrices of 8 rows in; swizzled, panel
    // kk / 4 (64 rows of 128 B each), 16 (kk % 4) elements in; LBO unused there (16 B encodes 1)
    int ko = sw ? (kk >> 2) * N64 * 64 + (kk & 3) * 16 : kk * 2 * (N64 / 8) * 64, mo = sw ? kk * 16 * 64 : kk * 2 * 64;
    uint32_t klbo = sw ? 16 : N64 * 16, ksbo = sw ? 1024 : 128;
    uint64_t da = desc(As + ko, klbo, ksbo, sw);
    if (mode == MODE_QK) wg_m64n64k16_ss<0>(d, da, desc(Bs + ko, klbo, ksbo, sw), kk > 0);
    else if (mode == MODE_TA)  // A^T [KD x 64] MN-major
      wg_m64n64k16_ss<0, 1>(d, desc(As + mo, lbo, sbo, sw), desc(Bs + ko, klbo, ksbo, sw), kk > 0);
    else if (mode == MODE_PV_SS) wg_m64n64k16_ss<1>(d, da, desc(Bs + mo, lbo, sbo, sw), kk > 0);
    else wg_m64n64k16_rs<1>(d, a[kk], desc(Bs + mo, lbo, sbo, sw), kk > 0);
  }
  wg_commit();
  wg_wait<0>();
  wg_keep(d);
  for (int kk = 0; kk < KD / 16; kk++) wg_keep(a[kk]);
  for (int j = 0; j < 8; j++)
    for (int e = 0; e < 4; e++) C[(16 * w + g + (e >> 1) * 8) * N64 + 8 * j + 2 * t + (e & 1)] = d[4 * j + e];
}

// O [64 x 128] f32 = A [64 x KD] (registers) times W [KD x 128] (MN-major, 128-byte swizzled: two
// panels of 64 columns, LBO = the panel stride) by wg_m64n128k16_rs: the kernels' P V and dV/dK with
// the whole of D in one product
__global__ void wgmma_n128_case(float *C, const bf16 *A, const bf16 *W) {
  __shared__ __align__(1024) bf16 Ws[KD * 128];
  stage(Ws, W, KD, 128, 1);
  wg_fence_smem();
  __syncthreads();
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  uint32_t a[KD / 16][4];
  for (int kk = 0; kk < KD / 16; kk++) a_frag(a[kk], A, w, g, t, kk);
  float d[2][32];
  for (int i = 0; i < 32; i++) d[0][i] = d[1][i] = 0.f;
  wg_fence();
  const uint64_t d0 = wg_desc_sw128(Ws, KD * 128, 1024);
  for (int kk = 0; kk < KD / 16; kk++) wg_m64n128k16_rs<1>(d, a[kk], wg_desc_add(d0, kk * 2048), kk > 0);
  wg_commit();
  wg_wait<0>();
  wg_keep(d[0]);
  wg_keep(d[1]);
  for (int kk = 0; kk < KD / 16; kk++) wg_keep(a[kk]);
  for (int h = 0; h < 2; h++)
    for (int j = 0; j < 8; j++)
      for (int e = 0; e < 4; e++) C[(16 * w + g + (e >> 1) * 8) * 128 + 64 * h + 8 * j + 2 * t + (e & 1)] = d[h][4 * j + e];
}

static float urand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return (float)(*s >> 8) / 16777216.0f * 2.f - 1.f; }

// the largest |C - reference| of one case
static double run_case(int mode, int swap, int sw, const bf16 *dA, const bf16 *dB, const float *hA, const float *hB,
                       float *dC) {
  wgmma_case<<<1, 128>>>(dC, dA, dB, mode, swap, sw);
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

// TMA: rows row0.. of a [TR x 128] bf16 matrix with a padded row stride (LD elements) as two boxes of
// 64 rows x 64 columns (128-byte swizzle) into a 1024-byte aligned tile, counted on an mbarrier
enum { TR = 256, LD = 192, TROW0 = 64 };
__global__ void tma_case(const __grid_constant__ CUtensorMap map, bf16 *out) {
  __shared__ __align__(1024) bf16 tile[64 * KD];
  __shared__ __align__(8) uint64_t bar;
  if (threadIdx.x == 0) mbar_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    mbar_expect(&bar, 64 * KD * (uint32_t)sizeof(bf16));
    tma_load_2d(tile, &map, 0, TROW0, &bar);
    tma_load_2d(tile + 64 * 64, &map, 64, TROW0, &bar);
  }
  mbar_wait(&bar, 0);
  for (int i = threadIdx.x; i < 64 * KD; i += blockDim.x) out[i] = tile[i];
}
// the elements of the loaded tile not where sw128_off puts them (-1: the map was refused)
static int tma_check(void) {
  static bf16 src[TR * LD], got[64 * KD];
  for (int i = 0; i < TR * LD; i++) src[i] = __float2bfloat16((float)(i % 251) - 125.f);
  bf16 *dsrc, *dout;
  CHECK(cudaMalloc(&dsrc, sizeof src));
  CHECK(cudaMalloc(&dout, sizeof got));
  CHECK(cudaMemcpy(dsrc, src, sizeof src, cudaMemcpyHostToDevice));
  CUtensorMap map;
  uint64_t dims[2] = {KD, TR}, strides[1] = {LD * sizeof(bf16)};
  uint32_t box[2] = {64, 64};
  const char *err = sr_tma_map_bf16(&map, dsrc, 2, dims, strides, box);
  int bad = 0;
  if (err) {
    printf("     %s\n", err);
    bad = -1;
  } else {
    tma_case<<<1, 128>>>(map, dout);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost));
    for (int r = 0; r < 64; r++)
      for (int c = 0; c < KD; c++)
        bad += __bfloat162float(got[sw128_off(r, c, 64)]) != __bfloat162float(src[(TROW0 + r) * LD + c]);
  }
  CHECK(cudaFree(dsrc));
  CHECK(cudaFree(dout));
  return bad;
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
  int failed = 0, cases = 0;
  for (int sw = 0; sw < 2; sw++)
    for (int mode = 0; mode < NMODES; mode++, cases++) {
      int b = mode == MODE_QK || mode == MODE_TA ? 0 : 1;  // B [64 x KD] for S, V [KD x 64] for O
      // MODE_TA: A^T is V [KD x 64]
      const bf16 *a_dev = mode == MODE_TA ? dB[1] : dA;
      const float *a_host = mode == MODE_TA ? hB[1] : hA;
      double e = run_case(mode, 0, sw, a_dev, dB[b], a_host, hB[b], dC);
      int ok = e <= 1e-3;  // f32 sums of 128 exact bf16 products of magnitude <= 1
      printf("%s %s%s: largest |error| %.3g\n", ok ? "ok  " : "FAIL", MODE_NAME[mode], sw ? ", 128B swizzled" : "", e);
      if (!ok && mode != MODE_QK) {
        double e2 = run_case(mode, 1, sw, a_dev, dB[b], a_host, hB[b], dC);
        printf("     with LBO and SBO swapped: largest |error| %.3g%s\n", e2, e2 <= 1e-3 ? " (matches: swap them in wgmma.cuh)" : "");
      }
      failed += !ok;
    }
  {  // N = 128 in one product (swizzled W [KD x 128])
    static float hW[KD * 128], O[N64 * 128];
    static bf16 bW[KD * 128];
    for (int i = 0; i < KD * 128; i++) { bW[i] = __float2bfloat16(urand(&s)); hW[i] = __bfloat162float(bW[i]); }
    bf16 *dW;
    float *dO;
    CHECK(cudaMalloc(&dW, sizeof bW));
    CHECK(cudaMalloc(&dO, sizeof O));
    CHECK(cudaMemcpy(dW, bW, sizeof bW, cudaMemcpyHostToDevice));
    wgmma_n128_case<<<1, 128>>>(dO, dA, dW);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpy(O, dO, sizeof O, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (int i = 0; i < N64; i++)
      for (int j = 0; j < 128; j++) {
        double ref = 0;
        for (int k = 0; k < KD; k++) ref += (double)hA[i * KD + k] * hW[k * 128 + j];
        worst = fmax(worst, fabs(O[i * 128 + j] - ref));
      }
    int ok = worst <= 1e-3;
    printf("%s O = A W, N = 128 in one product (W MN-major, 128B swizzled, A in registers): largest |error| %.3g\n",
           ok ? "ok  " : "FAIL", worst);
    failed += !ok;
    cases++;
    CHECK(cudaFree(dW));
    CHECK(cudaFree(dO));
  }
  int tma_bad = tma_check();
  printf("%s a TMA load of a 64 x 128 tile (two 64 x 64 boxes, 128B swizzle): %d element(s) off sw128_off\n",
         tma_bad ? "FAIL" : "ok  ", tma_bad);
  failed += tma_bad != 0;
  cases++;
  printf("%d passed, %d failed\n", cases - failed, failed);
  CHECK(cudaFree(dA));
  CHECK(cudaFree(dC));
  for (int m = 0; m < 2; m++) CHECK(cudaFree(dB[m]));
  return failed ? 1 : 0;
}
