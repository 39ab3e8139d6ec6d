/*
** bench_attention.c: speed of the CUDA attention kernels (kernels/attention.cu) alone, forward
** and backward, with q, k, v read as the model reads them (strided views of a fused [B,T,3,H,D]
** qkv projection) and the output / gradients written in [B,T,H,D] order.
** FLOPs counted as FlashAttention does: forward 4 B H T^2 D (halved when causal), backward 2.5x.
** The PyTorch anchor (F.scaled_dot_product_attention at the same shapes) is bench/attention_anchor.py,
** run in the same device call by bench/gpu_session.sh (part attn).
**
** usage: bench_attention [B=32] [H=12] [T=1024] [D=64] [causal=1] [iters=50]
** prints: ms per call and TFLOP/s for the forward and the backward.
*/
#include <math.h>           /* defines: sqrt */
#include <stdarg.h>         /* defines: va_list */
#include <stdio.h>          /* defines: printf */
#include <stdint.h>         /* defines: uint16_t */
#include <stdlib.h>         /* defines: atoi, malloc */
#include <string.h>         /* defines: memset */

#include <cuda_runtime.h>   /* defines: cudaEvent_t */

#include "cuda/backend.h"   /* defines: sr_cuda_malloc, sr_cuda_stream */
#include "core/registry.h"       /* defines: sr_kcall, sr_cuda_attention */

__attribute__((weak)) void sr_register_cuda_backend(const sr_device_backend *b) { (void)b; }
__attribute__((weak)) void sr_fail(const char *fmt, ...) {
  va_list ap; va_start(ap, fmt); vfprintf(stderr, fmt, ap); va_end(ap); fprintf(stderr, "\n"); exit(1);
}

typedef struct { sr_tensor t; sr_storage s; } Tn;

static uint64_t rs = 88172645463325252ull;
static uint32_t xr(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)rs; }

static uint16_t to_bf16(float f) {  /* round to nearest even (finite inputs) */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
/* n elements of dtype dt, uniform in [-1, 1] (bf16) or zero (f32) */
static Tn *mk(sr_dtype dt, int64_t n) {
  Tn *x = calloc(1, sizeof *x);
  size_t es = dt == SR_BF16 ? 2 : 4;
  x->s.data = sr_cuda_malloc((size_t)n * es);
  if (!x->s.data) { fprintf(stderr, "out of memory\n"); exit(1); }
  x->s.nbytes = (size_t)n * es; x->s.device = SR_CUDA; x->s.refcount = 1;
  x->t.storage = &x->s; x->t.dtype = dt; x->t.refcount = 1;
  void *h = calloc((size_t)n, es);
  if (dt == SR_BF16)
    for (int64_t i = 0; i < n; i++) ((uint16_t *)h)[i] = to_bf16((float)(xr() >> 8) / 8388608.0f - 1.0f);
  cudaMemcpy(x->s.data, h, (size_t)n * es, cudaMemcpyHostToDevice);
  free(h);
  return x;
}
static sr_tensor view(Tn *x, int nd, const int64_t *sh, const int64_t *st, int64_t off) {
  sr_tensor v = x->t;
  v.ndim = nd; v.offset = off;
  for (int k = 0; k < nd; k++) { v.shape[k] = sh[k]; v.stride[k] = st[k]; }
  return v;
}
static void K(const char *what, const char *(*fn)(const sr_kcall *), int nt, sr_tensor **ts, double f0, int64_t i0) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.nt = nt;
  for (int j = 0; j < nt; j++) c.t[j] = ts[j];
  c.f[0] = f0; c.i[0] = i0;
  const char *e = fn(&c);
  if (e) { fprintf(stderr, "%s: %s\n", what, e); exit(1); }
}

int main(int argc, char **argv) {
  int64_t B = argc > 1 ? atoi(argv[1]) : 32, H = argc > 2 ? atoi(argv[2]) : 12, T = argc > 3 ? atoi(argv[3]) : 1024,
          D = argc > 4 ? atoi(argv[4]) : 64;
  int causal = argc > 5 ? atoi(argv[5]) : 1, iters = argc > 6 ? atoi(argv[6]) : 50;
  const char *why = sr_cuda_probe();
  if (why) { printf("skip: %s\n", why); return 77; }
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  int64_t C = H * D, sh[4] = {B, H, T, D}, qkv_st[4] = {T * 3 * C, D, 3 * C, 1}, bthd_st[4] = {T * C, D, C, 1}, lsh[3] = {B, H, T},
          lst[3] = {H * T, T, 1};
  Tn *qkv = mk(SR_BF16, B * T * 3 * C), *dqkv = mk(SR_BF16, B * T * 3 * C), *y = mk(SR_BF16, B * T * C),
     *dy = mk(SR_BF16, B * T * C), *lse = mk(SR_F32, B * H * T);
  sr_tensor qv[3], dv[3], yv = view(y, 4, sh, bthd_st, 0), dyv = view(dy, 4, sh, bthd_st, 0), lv = view(lse, 3, lsh, lst, 0);
  for (int j = 0; j < 3; j++) { qv[j] = view(qkv, 4, sh, qkv_st, j * C); dv[j] = view(dqkv, 4, sh, qkv_st, j * C); }
  double scale = 1.0 / sqrt((double)D);
  double fwd_flop = 4.0 * B * H * T * T * D * (causal ? 0.5 : 1.0), bwd_flop = 2.5 * fwd_flop;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0); cudaEventCreate(&e1);
  float ms[2];
  for (int pass = 0; pass < 2; pass++) {
    for (int it = 0; it < 3 + iters; it++) {
      if (it == 3) cudaEventRecord(e0, s);
      if (pass == 0) K("attention", sr_cuda_attention, 5, (sr_tensor *[]){&yv, &lv, &qv[0], &qv[1], &qv[2]}, scale, causal);
      else
        K("attention_backward", sr_cuda_attention_backward, 9,
          (sr_tensor *[]){&dv[0], &dv[1], &dv[2], &dyv, &qv[0], &qv[1], &qv[2], &yv, &lv}, scale, causal);
    }
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms[pass], e0, e1);
    ms[pass] /= iters;
  }
  const char *e = sr_cuda_sync();
  if (e) { printf("error: %s\n", e); return 1; }
  printf("ours   B=%lld H=%lld T=%lld D=%lld causal=%d: fwd %.3f ms %.1f TFLOP/s | bwd %.3f ms %.1f TFLOP/s\n", (long long)B,
         (long long)H, (long long)T, (long long)D, causal, ms[0], fwd_flop / ms[0] / 1e9, ms[1], bwd_flop / ms[1] / 1e9);
  return 0;
}
