/*
** bench_gpt2.c: GPT-2 124M in the record-1 configuration trained straight on the CUDA kernels
** of kernels/ (no Lua, no autograd): the speed of the backend itself, to compare with the
** PyTorch anchor (the benchmark's record_1 trainer) on the same card.
**
** Model as record_1's train_gpt2.py: tied wte/lm_head, learned positions, pre-RMSNorm without
** weights (eps 1e-6), no biases, attention output scaled by 1/sqrt(24), GELU (erf), AdamW
** (0.9, 0.95, wd 0.1) on every parameter, f32 master weights cast to bf16 at use, bf16
** activations (the residual stream is bf16 here; autocast keeps it f32), f32 grads.
** Gradient clipping: the global grad norm is computed on the device every step (its cost is in
** the timing) but not applied (it needs a device-side scale the registry does not have yet).
**
** usage: bench_gpt2 [steps=60] [B=32] [T=1024] [graph=1]
** prints: start-up to first finished step, eager ms/step, graph-replay ms/step, tokens/s,
** peak GPU memory (caching allocator, bytes handed out).
*/
#include <math.h>           /* defines: sqrt */
#include <stdarg.h>         /* defines: va_list */
#include <stdio.h>          /* defines: printf */
#include <stdlib.h>         /* defines: atoi, malloc */
#include <string.h>         /* defines: memset */
#include <time.h>           /* defines: clock_gettime */

#include <cuda_runtime.h>   /* defines: cudaEvent_t */

#include "cuda/backend.h"   /* defines: sr_cuda_malloc, sr_cuda_graph_* */
#include "core/registry.h"       /* defines: sr_kcall, sr_cuda_* */

__attribute__((weak)) void sr_register_cuda_backend(const sr_device_backend *b) { (void)b; }
__attribute__((weak)) void sr_fail(const char *fmt, ...) {
  va_list ap; va_start(ap, fmt); vfprintf(stderr, fmt, ap); va_end(ap); fprintf(stderr, "\n"); exit(1);
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

/* ---------------------------------------------------------------- tiny tensor helpers */

typedef struct { sr_tensor t; sr_storage s; } Tn;

static Tn *mk(sr_dtype dt, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  Tn *x = calloc(1, sizeof *x);
  int64_t sh[4] = {d0, d1, d2, d3}, n = 1;
  x->t.ndim = nd;
  for (int k = nd - 1; k >= 0; k--) { x->t.shape[k] = sh[k]; x->t.stride[k] = n; n *= sh[k]; }
  size_t es = dt == SR_BF16 ? 2 : 4;
  x->s.data = sr_cuda_malloc((size_t)n * es);
  if (!x->s.data) { fprintf(stderr, "out of memory\n"); exit(1); }
  x->s.nbytes = (size_t)n * es; x->s.device = SR_CUDA; x->s.refcount = 1;
  x->t.storage = &x->s; x->t.dtype = dt; x->t.refcount = 1;
  return x;
}
/* a view of x's storage with a new shape/stride/offset */
static sr_tensor view(Tn *x, int nd, const int64_t *sh, const int64_t *st, int64_t off) {
  sr_tensor v = x->t;
  v.ndim = nd; v.offset = off;
  for (int k = 0; k < nd; k++) { v.shape[k] = sh[k]; v.stride[k] = st[k]; }
  return v;
}
static int64_t nel(const sr_tensor *t) { int64_t n = 1; for (int k = 0; k < t->ndim; k++) n *= t->shape[k]; return n; }

static void K(const char *what, const char *(*fn)(const sr_kcall *), int nt, sr_tensor **ts, double f0, double f1, int64_t i0, int64_t i1) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.nt = nt;
  for (int j = 0; j < nt; j++) c.t[j] = ts[j];
  c.f[0] = f0; c.f[1] = f1; c.i[0] = i0; c.i[1] = i1;
  const char *e = fn(&c);
  if (e) { fprintf(stderr, "%s: %s\n", what, e); exit(1); }
}
#define T_(x) (&(x)->t)
static void gemm(sr_tensor *o, sr_tensor *a, sr_tensor *b, int ta, int tb, double alpha, double beta) {
  K("gemm", sr_cuda_gemm, 3, (sr_tensor *[]){o, a, b}, alpha, beta, ta, tb);
}
static void fill(sr_tensor *o, double v) { K("fill", sr_cuda_fill, 1, (sr_tensor *[]){o}, v, 0, 0, 0); }
static void copy(sr_tensor *o, sr_tensor *x) { K("copy", sr_cuda_copy, 2, (sr_tensor *[]){o, x}, 0, 0, 0, 0); }
static void add(sr_tensor *o, sr_tensor *a, sr_tensor *b) { K("add", sr_cuda_binary, 3, (sr_tensor *[]){o, a, b}, 0, 0, SR_BINARY_ADD, 0); }
static void rms(sr_tensor *o, sr_tensor *rstd, sr_tensor *x) { K("rms_norm", sr_cuda_rms_norm, 4, (sr_tensor *[]){o, rstd, x, NULL}, 1e-6, 0, 0, 0); }
static void rms_bwd(sr_tensor *dx, sr_tensor *dout, sr_tensor *x, sr_tensor *rstd) {
  K("rms_norm_backward", sr_cuda_rms_norm_backward, 6, (sr_tensor *[]){dx, NULL, dout, x, NULL, rstd}, 0, 0, 0, 0);
}

/* ---------------------------------------------------------------- model */

enum { V = 50257, VP = 50304, C = 768, L = 12, NH = 12, HD = 64, MAXT = 1024 };

typedef struct {
  Tn *w[4];        /* qkv [3C,C], proj [C,C], fc [4C,C], mproj [C,4C] */
} Layer;

static Tn *P[2 + 4 * L], *G[2 + 4 * L], *M[2 + 4 * L], *Vv[2 + 4 * L], *Pb[2 + 4 * L];  /* master, grad, m, v, bf16 copy */
static int NP;

/* activations */
static int B, Tt, N;
static Tn *idx, *tgt, *pos, *x0[L + 1], *xm[L], *h1[L], *r1[L], *qkv[L], *lse[L], *ycat[L],
    *h2[L], *r2[L], *fc[L], *gl[L], *hf, *rf, *logits, *losses, *llse, *dlosses;
static Tn *dx, *dtmp, *dh, *dbig, *dbig2, *dqkv, *dycat, *sumsq;

static void qkv_views(Tn *t, sr_tensor out[3]) {  /* [B,T,3,H,D] -> three [B,H,T,D] views */
  for (int j = 0; j < 3; j++) {
    int64_t sh[4] = {B, NH, Tt, HD}, st[4] = {(int64_t)Tt * 3 * C, HD, 3 * C, 1};
    out[j] = view(t, 4, sh, st, j * C);
  }
}
static sr_tensor bthd_view(Tn *t) {  /* [B,T,H,D] storage seen as [B,H,T,D] */
  int64_t sh[4] = {B, NH, Tt, HD}, st[4] = {(int64_t)Tt * C, HD, C, 1};
  return view(t, 4, sh, st, 0);
}
static sr_tensor as3(Tn *t, int64_t d0, int64_t d1, int64_t d2) {
  int64_t sh[3] = {d0, d1, d2}, st[3] = {d1 * d2, d2, 1};
  return view(t, 3, sh, st, 0);
}

/* optional phase timing: events recorded at phase boundaries when prof is set */
static int prof;
static cudaEvent_t pev[16];
static int npev;
static const char *pname[16];
static void mark(const char *name) {
  if (!prof) return;
  pname[npev] = name;
  cudaEventRecord(pev[npev++], (cudaStream_t)sr_cuda_stream());
}

static void step_fwd_bwd(void) {
  double s24 = 1.0 / sqrt(24.0);
  /* zero grads (dwte/dwpe accumulate from two places; gemm grads accumulate with beta=1) */
  for (int i = 0; i < NP; i++) fill(T_(G[i]), 0);
  /* bf16 weights for this step */
  for (int i = 0; i < NP; i++) {
    sr_tensor dst = Pb[i]->t;
    dst.shape[0] = P[i]->t.shape[0];  /* wte's bf16 copy has VP rows; the padding stays 0 */
    copy(&dst, T_(P[i]));
  }
  mark("zero grads + cast weights to bf16");
  /* embeddings */
  K("embedding", sr_cuda_embedding, 3, (sr_tensor *[]){T_(x0[0]), T_(Pb[0]), T_(idx)}, 0, 0, 0, 0);
  K("embedding", sr_cuda_embedding, 3, (sr_tensor *[]){T_(dtmp), T_(Pb[1]), T_(pos)}, 0, 0, 0, 0);
  add(T_(x0[0]), T_(x0[0]), T_(dtmp));
  for (int l = 0; l < L; l++) {
    Tn **w = &Pb[2 + 4 * l];
    rms(T_(h1[l]), T_(r1[l]), T_(x0[l]));
    sr_tensor a = as3(h1[l], 1, N, C), wq = as3(w[0], 1, 3 * C, C), o = as3(qkv[l], 1, N, 3 * C);
    gemm(&o, &a, &wq, 0, 1, 1, 0);
    sr_tensor qv[3];
    qkv_views(qkv[l], qv);  /* attention reads q, k, v straight from the fused projection */
    if (l == 0) mark("layer 0 forward to attention");
    sr_tensor yc = bthd_view(ycat[l]);
    K("attention", sr_cuda_attention, 5, (sr_tensor *[]){&yc, T_(lse[l]), &qv[0], &qv[1], &qv[2]}, 1.0 / sqrt(HD), 0, 1, 0);
    if (l == 0) mark("attention forward (layer 0)");
    sr_tensor ya = as3(ycat[l], 1, N, C), wp = as3(w[1], 1, C, C), ao = as3(dh, 1, N, C);
    gemm(&ao, &ya, &wp, 0, 1, s24, 0);
    add(T_(xm[l]), T_(x0[l]), T_(dh));
    rms(T_(h2[l]), T_(r2[l]), T_(xm[l]));
    sr_tensor ha = as3(h2[l], 1, N, C), wf = as3(w[2], 1, 4 * C, C), fo = as3(fc[l], 1, N, 4 * C);
    gemm(&fo, &ha, &wf, 0, 1, 1, 0);
    K("gelu", sr_cuda_unary, 2, (sr_tensor *[]){T_(gl[l]), T_(fc[l])}, 0, 0, SR_UNARY_GELU_ERF, 0);
    sr_tensor ga = as3(gl[l], 1, N, 4 * C), wm = as3(w[3], 1, C, 4 * C), mo = as3(dh, 1, N, C);
    gemm(&mo, &ga, &wm, 0, 1, 1, 0);
    add(T_(x0[l + 1]), T_(xm[l]), T_(dh));
  }
  mark("rest of the 12 layers forward");
  rms(T_(hf), T_(rf), T_(x0[L]));
  /* logits [N, VP]: the padded vocabulary keeps every matmul dimension a multiple of 128 */
  sr_tensor hfa = as3(hf, 1, N, C), wtep = as3(Pb[0], 1, VP, C), lop = as3(logits, 1, N, VP);
  gemm(&lop, &hfa, &wtep, 0, 1, 1, 0);
  int64_t lsh[3] = {1, N, V}, lst[3] = {(int64_t)N * VP, VP, 1};
  sr_tensor lo = view(logits, 3, lsh, lst, 0);
  K("cross_entropy", sr_cuda_cross_entropy, 4, (sr_tensor *[]){T_(losses), T_(llse), &lo, T_(tgt)}, 0, 0, -1, 0);
  /* ---- backward: mean loss -> dlosses = 1/N; dlogits in place over logits */
  fill(T_(dlosses), 1.0 / N);
  K("xent_bwd", sr_cuda_cross_entropy_backward, 5, (sr_tensor *[]){&lo, T_(dlosses), &lo, T_(tgt), T_(llse)}, 0, 0, -1, 0);
  sr_tensor dhf = as3(dh, 1, N, C), dwte = as3(G[0], 1, V, C);
  gemm(&dhf, &lop, &wtep, 0, 0, 1, 0);   /* dhf = dlogits @ wte (padded columns are 0) */
  gemm(&dwte, &lo, &hfa, 1, 0, 1, 1);    /* dwte += dlogits^T @ hf */
  mark("lm_head + cross-entropy fwd/bwd + lm_head bwd");
  rms_bwd(T_(dx), T_(dh), T_(x0[L]), T_(rf));
  for (int l = L - 1; l >= 0; l--) {
    Tn **w = &Pb[2 + 4 * l], **gw = &G[2 + 4 * l];
    /* MLP */
    sr_tensor dxa = as3(dx, 1, N, C), wm = as3(w[3], 1, C, 4 * C), dg = as3(dbig, 1, N, 4 * C), ga = as3(gl[l], 1, N, 4 * C);
    sr_tensor gwm = as3(gw[3], 1, C, 4 * C);
    gemm(&dg, &dxa, &wm, 0, 0, 1, 0);
    gemm(&gwm, &dxa, &ga, 1, 0, 1, 1);
    K("gelu_bwd", sr_cuda_unary_backward, 3, (sr_tensor *[]){T_(dbig2), T_(dbig), T_(fc[l])}, 0, 0, SR_UNARY_GELU_ERF, 0);
    sr_tensor dfc = as3(dbig2, 1, N, 4 * C), wf = as3(w[2], 1, 4 * C, C), dha = as3(dh, 1, N, C), ha = as3(h2[l], 1, N, C);
    sr_tensor gwf = as3(gw[2], 1, 4 * C, C);
    gemm(&dha, &dfc, &wf, 0, 0, 1, 0);
    gemm(&gwf, &dfc, &ha, 1, 0, 1, 1);
    rms_bwd(T_(dtmp), T_(dh), T_(xm[l]), T_(r2[l]));
    add(T_(dx), T_(dx), T_(dtmp));
    /* attention */
    double s24 = 1.0 / sqrt(24.0);
    sr_tensor wp = as3(w[1], 1, C, C), dyc = as3(dycat, 1, N, C), ya = as3(ycat[l], 1, N, C), gwp = as3(gw[1], 1, C, C);
    dxa = as3(dx, 1, N, C);
    gemm(&dyc, &dxa, &wp, 0, 0, s24, 0);
    gemm(&gwp, &dxa, &ya, 1, 0, s24, 1);
    sr_tensor dyv = bthd_view(dycat), yv = bthd_view(ycat[l]), qv[3], dv3[3];
    qkv_views(qkv[l], qv);
    qkv_views(dqkv, dv3);
    if (l == 0) mark("layers 11..1 backward + layer 0 to attention");
    K("attention_bwd", sr_cuda_attention_backward, 9,
      (sr_tensor *[]){&dv3[0], &dv3[1], &dv3[2], &dyv, &qv[0], &qv[1], &qv[2], &yv, T_(lse[l])}, 1.0 / sqrt(HD), 0, 1, 0);
    if (l == 0) mark("attention backward (layer 0)");
    sr_tensor dqa = as3(dqkv, 1, N, 3 * C), wq = as3(w[0], 1, 3 * C, C), h1a = as3(h1[l], 1, N, C), gwq = as3(gw[0], 1, 3 * C, C);
    gemm(&dha, &dqa, &wq, 0, 0, 1, 0);
    gemm(&gwq, &dqa, &h1a, 1, 0, 1, 1);
    rms_bwd(T_(dtmp), T_(dh), T_(x0[l]), T_(r1[l]));
    add(T_(dx), T_(dx), T_(dtmp));
  }
  K("emb_bwd", sr_cuda_embedding_backward, 3, (sr_tensor *[]){T_(G[0]), T_(dx), T_(idx)}, 0, 0, 0, 0);
  mark("rest of layer 0 backward + embedding backward");
  K("emb_bwd", sr_cuda_embedding_backward, 3, (sr_tensor *[]){T_(G[1]), T_(dx), T_(pos)}, 0, 0, 0, 0);
}

static void step_opt(int step, double lr) {
  for (int i = 0; i < NP; i++) {  /* grad norm (computed, not applied: see the header) */
    int64_t n = nel(T_(G[i]));
    int64_t sh[2] = {1, n}, st[2] = {n, 1};
    sr_tensor g2 = view(G[i], 2, sh, st, 0);
    int64_t s1[2] = {1, 1}, ss[2] = {1, 1};
    sr_tensor o = view(sumsq, 2, s1, ss, i);
    K("sumsq", sr_cuda_reduce, 2, (sr_tensor *[]){&o, &g2}, 0, 0, SR_REDUCE_SUMSQ, 1);
  }
  for (int i = 0; i < NP; i++)
  {
    sr_kcall c;
    memset(&c, 0, sizeof c);
    c.nt = 4;
    c.t[0] = T_(P[i]); c.t[1] = T_(G[i]); c.t[2] = T_(M[i]); c.t[3] = T_(Vv[i]);
    c.f[0] = lr; c.f[1] = 0.9; c.f[2] = 0.95; c.f[3] = 1e-8; c.f[4] = 0.1; c.i[0] = step;
    const char *e = sr_cuda_adamw(&c);
    if (e) { fprintf(stderr, "adamw: %s\n", e); exit(1); }
  }
}

static uint64_t rs = 88172645463325252ull;
static uint32_t xr(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)rs; }

static void upload_f32(Tn *t, float (*gen)(void)) {
  int64_t n = nel(&t->t);
  float *h = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) h[i] = gen();
  cudaMemcpy(t->s.data, h, (size_t)n * 4, cudaMemcpyHostToDevice);
  free(h);
}
static float gen_normal02(void) {  /* ~N(0, 0.02) via sum of uniforms */
  float s = 0; for (int i = 0; i < 4; i++) s += (float)(xr() >> 8) / 16777216.0f - 0.5f;
  return s * 0.02f * 1.7320508f;
}
static float gen_lin(void) { return ((float)(xr() >> 8) / 16777216.0f * 2 - 1) / sqrtf(768.0f); }
static float gen_zero(void) { return 0; }

int main(int argc, char **argv) {
  double t_start = now();
  int steps = argc > 1 ? atoi(argv[1]) : 60;
  B = argc > 2 ? atoi(argv[2]) : 32;
  Tt = argc > 3 ? atoi(argv[3]) : 1024;
  int use_graph = argc > 4 ? atoi(argv[4]) : 1;
  N = B * Tt;
  const char *why = sr_cuda_probe();
  if (why) { printf("skip: %s\n", why); return 77; }
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  /* parameters */
  int64_t shp[2 + 4 * L][2];
  shp[0][0] = V; shp[0][1] = C; shp[1][0] = MAXT; shp[1][1] = C;
  for (int l = 0; l < L; l++) {
    int64_t (*p)[2] = &shp[2 + 4 * l];
    p[0][0] = 3 * C; p[0][1] = C; p[1][0] = C; p[1][1] = C; p[2][0] = 4 * C; p[2][1] = C; p[3][0] = C; p[3][1] = 4 * C;
  }
  NP = 2 + 4 * L;
  int64_t nparams = 0;
  for (int i = 0; i < NP; i++) {
    P[i] = mk(SR_F32, 2, shp[i][0], shp[i][1], 0, 0);
    G[i] = mk(SR_F32, 2, shp[i][0], shp[i][1], 0, 0);
    M[i] = mk(SR_F32, 2, shp[i][0], shp[i][1], 0, 0);
    Vv[i] = mk(SR_F32, 2, shp[i][0], shp[i][1], 0, 0);
    Pb[i] = mk(SR_BF16, 2, i == 0 ? VP : shp[i][0], shp[i][1], 0, 0);
    if (i == 0) fill(T_(Pb[0]), 0);
    upload_f32(P[i], i < 2 ? gen_normal02 : gen_lin);
    upload_f32(M[i], gen_zero);
    upload_f32(Vv[i], gen_zero);
    nparams += shp[i][0] * shp[i][1];
  }
  /* activations */
  idx = mk(SR_I32, 1, N, 0, 0, 0); tgt = mk(SR_I32, 1, N, 0, 0, 0); pos = mk(SR_I32, 1, N, 0, 0, 0);
  {
    int *h = malloc((size_t)N * 4 * 3);
    for (int i = 0; i < N; i++) { h[i] = (int)(xr() % V); h[N + i] = (int)(xr() % V); h[2 * N + i] = i % Tt; }
    cudaMemcpy(idx->s.data, h, (size_t)N * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(tgt->s.data, h + N, (size_t)N * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(pos->s.data, h + 2 * N, (size_t)N * 4, cudaMemcpyHostToDevice);
    free(h);
  }
  for (int l = 0; l <= L; l++) x0[l] = mk(SR_BF16, 2, N, C, 0, 0);
  for (int l = 0; l < L; l++) {
    xm[l] = mk(SR_BF16, 2, N, C, 0, 0); h1[l] = mk(SR_BF16, 2, N, C, 0, 0); r1[l] = mk(SR_F32, 1, N, 0, 0, 0);
    qkv[l] = mk(SR_BF16, 2, N, 3 * C, 0, 0);
    lse[l] = mk(SR_F32, 3, B, NH, Tt, 0); ycat[l] = mk(SR_BF16, 2, N, C, 0, 0);
    h2[l] = mk(SR_BF16, 2, N, C, 0, 0); r2[l] = mk(SR_F32, 1, N, 0, 0, 0);
    fc[l] = mk(SR_BF16, 2, N, 4 * C, 0, 0); gl[l] = mk(SR_BF16, 2, N, 4 * C, 0, 0);
  }
  hf = mk(SR_BF16, 2, N, C, 0, 0); rf = mk(SR_F32, 1, N, 0, 0, 0); logits = mk(SR_BF16, 2, N, VP, 0, 0);
  losses = mk(SR_F32, 1, N, 0, 0, 0); llse = mk(SR_F32, 1, N, 0, 0, 0); dlosses = mk(SR_F32, 1, N, 0, 0, 0);
  dx = mk(SR_BF16, 2, N, C, 0, 0); dtmp = mk(SR_BF16, 2, N, C, 0, 0); dh = mk(SR_BF16, 2, N, C, 0, 0);
  dbig = mk(SR_BF16, 2, N, 4 * C, 0, 0); dbig2 = mk(SR_BF16, 2, N, 4 * C, 0, 0);
  dqkv = mk(SR_BF16, 2, N, 3 * C, 0, 0); dycat = mk(SR_BF16, 2, N, C, 0, 0);
  sumsq = mk(SR_F32, 1, NP, 0, 0, 0);
  printf("GPT-2 124M record-1 shape: %lld params, B=%d T=%d (%d tokens/step)\n", (long long)nparams, B, Tt, N);

  float *hl = malloc((size_t)N * 4);
  double first_step = 0;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0); cudaEventCreate(&e1);
  /* eager steps */
  int warm = 5, eager_steps = steps;
  float eager_ms = 0;
  for (int it = 0; it < warm + eager_steps; it++) {
    if (it == warm) { cudaEventRecord(e0, s); }
    step_fwd_bwd();
    step_opt(it + 1, 6e-4);
    if (it == 0) {
      const char *e = sr_cuda_sync();
      if (e) { printf("error: %s\n", e); return 1; }
      first_step = now() - t_start;
      cudaMemcpy(hl, losses->s.data, (size_t)N * 4, cudaMemcpyDeviceToHost);
      double sl = 0; for (int i = 0; i < N; i++) sl += hl[i];
      printf("step 1 loss %.4f (ln V = %.4f); start-up to first finished step %.2f s\n", sl / N, log((double)V), first_step);
    }
  }
  cudaEventRecord(e1, s);
  cudaEventSynchronize(e1);
  cudaEventElapsedTime(&eager_ms, e0, e1);
  eager_ms /= eager_steps;
  const char *e = sr_cuda_sync();
  if (e) { printf("error: %s\n", e); return 1; }
  cudaMemcpy(hl, losses->s.data, (size_t)N * 4, cudaMemcpyDeviceToHost);
  double sl = 0; for (int i = 0; i < N; i++) sl += hl[i];
  printf("eager: %.2f ms/step, %.0f tokens/s (loss after %d steps %.4f, same batch each step)\n", eager_ms, N / (eager_ms / 1e3),
         warm + eager_steps, sl / N);
  /* phase breakdown of one eager step */
  for (int i = 0; i < 16; i++) cudaEventCreate(&pev[i]);
  prof = 1; npev = 0;
  mark("start");
  step_fwd_bwd();
  step_opt(50, 6e-4);
  mark("grad norm + AdamW");
  prof = 0;
  cudaEventSynchronize(pev[npev - 1]);
  for (int i = 1; i < npev; i++) {
    float ms; cudaEventElapsedTime(&ms, pev[i - 1], pev[i]);
    printf("  %-52s %7.2f ms\n", pname[i], ms);
  }
  /* host time of issuing one step (no sync): the launch overhead the graph removes */
  double th = now();
  step_fwd_bwd(); step_opt(100, 6e-4);
  double issue_ms = (now() - th) * 1e3;
  sr_cuda_sync();
  printf("host time to issue one eager step: %.2f ms\n", issue_ms);
  float graph_ms = 0;
  if (use_graph) {
    const char *ge = sr_cuda_graph_begin();
    sr_cuda_graph *g = NULL;
    if (!ge) {
      step_fwd_bwd();
      step_opt(200, 6e-4);  /* step number baked into the graph: fine for timing */
      ge = sr_cuda_graph_end(&g);
    }
    if (ge) printf("graph capture failed: %s\n", ge);
    else {
      for (int i = 0; i < 3; i++) sr_cuda_graph_replay(g);
      cudaEventRecord(e0, s);
      for (int i = 0; i < steps; i++) sr_cuda_graph_replay(g);
      cudaEventRecord(e1, s);
      cudaEventSynchronize(e1);
      cudaEventElapsedTime(&graph_ms, e0, e1);
      graph_ms /= steps;
      e = sr_cuda_sync();
      if (e) { printf("error: %s\n", e); return 1; }
      printf("graph replay: %.2f ms/step, %.0f tokens/s; host overhead of eager = %.1f%%\n", graph_ms, N / (graph_ms / 1e3),
             100.0 * (eager_ms - graph_ms) / eager_ms);
    }
  }
  printf("peak GPU memory (allocator, handed out): %.2f GB; held from driver: %.2f GB; driver allocations: %lld\n",
         sr_cuda_peak_bytes() / 1e9, sr_cuda_reserved_bytes() / 1e9, (long long)sr_cuda_driver_allocs());
  printf("RESULT eager_ms=%.2f graph_ms=%.2f tokens_per_s=%.0f peak_gb=%.2f first_step_s=%.2f\n", eager_ms, graph_ms,
         N / ((use_graph && graph_ms > 0 ? graph_ms : eager_ms) / 1e3), sr_cuda_peak_bytes() / 1e9, first_step);
  return 0;
}
