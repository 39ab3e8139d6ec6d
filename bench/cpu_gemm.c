/*
** bench/cpu_gemm.c: GFLOP/s of the CPU gemm kernel (host/cpu/matmul.c) at 768x768x768 and at the
** matmul shapes of one training step of the tiny GPT (2 layers, width 128, seq 128, batch 4,
** GPT-2 vocabulary), forward and backward. f32, all threads (OMP_NUM_THREADS to change).
** Build and run (after the CMake build):
**   gcc -O3 -march=native -fopenmp -Ihost bench/cpu_gemm.c build/libspeedrun_core.a -lm -o build/bench_cpu_gemm
**   ./build/bench_cpu_gemm
*/
#include <omp.h>         /* defines: omp_get_wtime, omp_get_max_threads */
#include <stdio.h>       /* defines: printf */

#include "core/registry.h"    /* defines: sr_kernels, sr_kcall, SR_K_gemm */
#include "core/copy.h"        /* defines: sr_to_raw */

typedef struct { const char *name; int64_t M, N, K; int ta, tb; } shape;

static double bench(const shape *s, double min_seconds) {
  int64_t ashape[3] = {1, s->ta ? s->K : s->M, s->ta ? s->M : s->K};
  int64_t bshape[3] = {1, s->tb ? s->N : s->K, s->tb ? s->K : s->N};
  sr_tensor *a = sr_tensor_new(SR_F32, SR_CPU, 3, ashape), *b = sr_tensor_new(SR_F32, SR_CPU, 3, bshape);
  sr_tensor *c = sr_tensor_new(SR_F32, SR_CPU, 3, (int64_t[]){1, s->M, s->N});
  sr_fill_(a, 0.01);
  sr_fill_(b, 0.02);
  sr_kcall k = {.t = {c, a, b}, .nt = 3, .i = {s->ta, s->tb}, .f = {1.0, 0.0}};
  sr_kernels[SR_K_gemm].cpu(&k);  /* warm-up */
  int reps = 0;
  double t0 = omp_get_wtime(), t;
  do {
    sr_kernels[SR_K_gemm].cpu(&k);
    reps++;
    t = omp_get_wtime() - t0;
  } while (t < min_seconds);
  sr_tensor_release(a);
  sr_tensor_release(b);
  sr_tensor_release(c);
  return 2.0 * (double)s->M * (double)s->N * (double)s->K * reps / t * 1e-9;
}

int main(void) {
  const int64_t BT = 4 * 128, C = 128, V = 50257;
  shape shapes[] = {
    {"square 768", 768, 768, 768, 0, 0},
    {"qkv fwd      x@W^T", BT, 3 * C, C, 0, 1},
    {"fc fwd       x@W^T", BT, 4 * C, C, 0, 1},
    {"fcproj fwd   x@W^T", BT, C, 4 * C, 0, 1},
    {"lm head fwd  x@W^T", BT, V, C, 0, 1},
    {"fc dx        dy@W", BT, C, 4 * C, 0, 0},
    {"fc dW        dy^T@x", 4 * C, C, BT, 1, 0},
    {"lm head dx   dy@W", BT, C, V, 0, 0},
    {"lm head dW   dy^T@x", V, C, BT, 1, 0},
  };
  printf("cpu gemm, f32, %d threads\n", omp_get_max_threads());
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    const shape *s = &shapes[i];
    printf("%-22s M=%-6lld N=%-6lld K=%-6lld ta=%d tb=%d  %7.1f GFLOP/s\n", s->name, (long long)s->M, (long long)s->N,
           (long long)s->K, s->ta, s->tb, bench(s, 1.0));
  }
  return 0;
}
