/*
** cpu/matmul.c: CPU reference of gemm, the batched matrix multiply behind matmul and linear:
**   out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b]
** out [B,M,N] contiguous; a [B,M,K] (i0 = 0) or [B,K,M] (i0 = 1); b [B,K,N] (i1 = 0) or [B,N,K]
** (i1 = 1); unit stride in the last dim of a and b, any row and batch strides (0 = broadcast).
** 2-D tensors are one batch. beta == 0 never reads out (it may hold NaN garbage).
**
** f32/bf16 (the trainer's hot path): a packed, cache-blocked sgemm in the BLIS layout, with two
** barriers per batch so it stays fast when a core is shared. Phase 1: all threads pack the whole
** of op(b) (or a super-block of BSUPER elements' worth of columns) into NR-wide slivers, bf16
** converted here. Phase 2: tasks (NC column block, MC row block), NC-major so neighbouring
** tasks share a B panel in cache, are taken dynamically; a task walks K in KC blocks, packs its
** A block into MR-tall slivers and runs an MR x NR register-tile micro-kernel written with
** GCC/Clang vector types (NR = 2 vectors, so the 12 accumulators stay in AVX2's 16 registers).
** Packing reads along each operand's unit-stride dim (transposed f32 operands included). Each
** output element is summed by one task in a fixed order (KC blocks in order, k in order inside),
** so results do not depend on the thread count. fp32 accumulation; a bf16 out goes through an
** f32 buffer so rounding happens once.
** f64 (gradcheck) or any mix with f64: a plain triple loop in double, parallel over rows.
*/
#include <stdint.h>      /* defines: int64_t */
#include <stdlib.h>      /* defines: malloc, free */
#include <string.h>      /* defines: memcpy */

#include "cpu/common.h"  /* defines: cpu_ld, cpu_st, cpu_check_floats */

#define MR 6      /* micro-tile rows */
#ifdef __AVX512F__
#define VL 16     /* floats per vector register */
#else
#define VL 8      /* AVX2 (the default build: -march=native -mno-avx512f), or narrower targets */
#endif
#define NV 2      /* vectors per micro-tile row */
#define NR (VL * NV)  /* micro-tile columns: MR x NV = 12 accumulator registers (AVX2 has 16) */
typedef float vfloat __attribute__((vector_size(VL * 4)));
#define MC 96     /* rows per packed A block (multiple of MR) */
#define KC 256    /* depth per block */
#define NC 2048   /* columns per B panel of a task (multiple of NR) */
#define BSUPER (16 << 20)  /* most packed-B floats at a time (64 MiB) */
#define GEMM_PAR_MIN ((int64_t)1 << 26)  /* multiply-adds below which one thread does it all
                                         ** (~1 ms; see CPU_PAR_MIN for why) */

/* one matrix operand of a batch: element (r, k) of op(x) for a (rows = M) or (k, col) for b */
typedef struct {
  const void *data;   /* storage base */
  sr_dtype dtype;
  int64_t off;        /* element offset of this batch's [0,0] */
  int64_t ld;         /* stride of the non-unit dim */
  int trans;          /* i0 / i1 */
} gemm_operand;

/* ---------------------------------------------------------------------------------------------
** packing */

/* element j of a contiguous f32 or bf16 run as float */
static inline float ldf(const void *base, sr_dtype t, int64_t i) {
  return t == SR_F32 ? ((const float *)base)[i] : sr_bf16_to_f32(((const uint16_t *)base)[i]);
}

/* A rows [i0, i0+mc) x depth [p0, p0+kc) into MR-row slivers: Ap[s*kc + k*MR + r], zero-padded.
** Reads run along a's unit-stride dim: k for a [M,K], rows for a transposed [K,M]. */
static void pack_a(float *Ap, const gemm_operand *a, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  for (int64_t s = 0; s < mc; s += MR) {
    float *dst = Ap + s * kc;
    int64_t rows = mc - s < MR ? mc - s : MR;
    if (a->trans && a->dtype == SR_F32) {  /* [K,M]: the sliver's rows are contiguous at each depth */
      const float *src = (const float *)a->data + a->off + p0 * a->ld + i0 + s;
      if (rows == MR)
        for (int64_t k = 0; k < kc; k++, src += a->ld) memcpy(dst + k * MR, src, sizeof(float) * MR);
      else
        for (int64_t k = 0; k < kc; k++, src += a->ld)
          for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < rows ? src[r] : 0.0f;
    } else if (a->trans) {
      for (int64_t k = 0; k < kc; k++) {
        int64_t base = a->off + (p0 + k) * a->ld + i0 + s;
        for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = r < rows ? ldf(a->data, a->dtype, base + r) : 0.0f;
      }
    } else if (a->dtype == SR_F32 && rows == MR) {  /* [M,K]: MR rows read side by side */
      const float *src = (const float *)a->data + a->off + (i0 + s) * a->ld + p0;
      for (int64_t k = 0; k < kc; k++)
        for (int64_t r = 0; r < MR; r++) dst[k * MR + r] = src[r * a->ld + k];
    } else {
      for (int64_t r = 0; r < MR; r++) {
        int64_t base = a->off + (i0 + s + r) * a->ld + p0;
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = r < rows ? ldf(a->data, a->dtype, base + k) : 0.0f;
      }
    }
  }
}

/* B depth [p0, p0+kc) x one NR-column sliver starting at j0 (nr valid columns) into
** Bp[k*NR + c], zero-padded. Reads run along b's unit-stride dim: columns for b [K,N], depth
** for b transposed [N,K]. */
static void pack_b_sliver(float *Bp, const gemm_operand *b, int64_t p0, int64_t kc, int64_t j0, int64_t nr) {
  if (b->trans && b->dtype == SR_F32) {  /* [N,K]: column c of op(b) is row j0+c, read along k */
    for (int64_t c = 0; c < nr; c++) {
      const float *src = (const float *)b->data + b->off + (j0 + c) * b->ld + p0;
      for (int64_t k = 0; k < kc; k++) Bp[k * NR + c] = src[k];
    }
    if (nr < NR)
      for (int64_t k = 0; k < kc; k++)
        for (int64_t c = nr; c < NR; c++) Bp[k * NR + c] = 0.0f;
  } else if (b->trans) {
    for (int64_t c = 0; c < NR; c++) {
      int64_t base = b->off + (j0 + c) * b->ld + p0;
      for (int64_t k = 0; k < kc; k++) Bp[k * NR + c] = c < nr ? ldf(b->data, b->dtype, base + k) : 0.0f;
    }
  } else {
    for (int64_t k = 0; k < kc; k++) {
      int64_t base = b->off + (p0 + k) * b->ld + j0;
      for (int64_t c = 0; c < NR; c++) Bp[k * NR + c] = c < nr ? ldf(b->data, b->dtype, base + c) : 0.0f;
    }
  }
}

/* ---------------------------------------------------------------------------------------------
** micro-kernel: C[0..mr, 0..nr) (row stride ldc) = alpha*Ap@Bp + (first ? beta*C : C), where
** Ap is an MR-row sliver and Bp an NR-column sliver of depth kc. Written with vector types so
** the MR x NV accumulators stay in registers (per k: NV loads, MR broadcasts, MR*NV FMAs); each
** element of C sums k in order, as a scalar loop would. */
static inline vfloat vload(const float *p) {
  vfloat v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float *p, vfloat v) { memcpy(p, &v, sizeof v); }

static void micro_kernel(int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                         int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta, int first) {
  vfloat acc[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = (vfloat){0};
  for (int64_t k = 0; k < kc; k++) {
    const float *a = Ap + k * MR, *b = Bp + k * NR;
    vfloat bv[NV];
    for (int v = 0; v < NV; v++) bv[v] = vload(b + v * VL);
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++) acc[r][v] += bv[v] * a[r];
  }
  if (mr == MR && nr == NR) {
    for (int r = 0; r < MR; r++) {
      float *c = C + r * ldc;
      for (int v = 0; v < NV; v++) {
        vfloat x = acc[r][v] * alpha;
        if (!first) x += vload(c + v * VL);
        else if (beta != 0.0f) x += vload(c + v * VL) * beta;
        vstore(c + v * VL, x);
      }
    }
  } else {
    float t[MR][NR];
    memcpy(t, acc, sizeof t);
    for (int64_t r = 0; r < mr; r++) {
      float *c = C + r * ldc;
      for (int64_t j = 0; j < nr; j++)
        c[j] = !first ? c[j] + alpha * t[r][j] : beta == 0.0f ? alpha * t[r][j] : alpha * t[r][j] + beta * c[j];
    }
  }
}

/* ---------------------------------------------------------------------------------------------
** sgemm over one batch: C [M,N] f32 (row stride N) = alpha*op(a)@op(b) + beta*C. Called inside
** an OpenMP parallel region by every thread. Bp (shared) holds sliver s of the current column
** super-block [j0, j0+ncols) at Bp + s*K*NR, as K rows of NR; Ap is this thread's A block. */
static void sgemm_batch(float *C, const gemm_operand *a, const gemm_operand *b, int64_t M, int64_t N, int64_t K,
                        float alpha, float beta, float *Bp, float *Ap, int64_t ncols, int64_t mc) {
  if (K == 0) {  /* nothing to accumulate: C = beta*C */
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * N + j] = beta == 0.0f ? 0.0f : beta * C[i * N + j];
    return;
  }
  int64_t npc = (K + KC - 1) / KC, nic = (M + mc - 1) / mc;
  for (int64_t j0 = 0; j0 < N; j0 += ncols) {
    int64_t nsb = N - j0 < ncols ? N - j0 : ncols, nsl = (nsb + NR - 1) / NR, njc = (nsb + NC - 1) / NC;
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < nsl * npc; t++) {
      int64_t s = t / npc, p0 = (t % npc) * KC;
      pack_b_sliver(Bp + (s * K + p0) * NR, b, p0, K - p0 < KC ? K - p0 : KC, j0 + s * NR,
                    nsb - s * NR < NR ? nsb - s * NR : NR);
    }
    /* implicit barrier: the packed B is complete */
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < njc * nic; t++) {
      int64_t jc = (t / nic) * NC, ic = (t % nic) * mc;
      int64_t nc = nsb - jc < NC ? nsb - jc : NC, mcur = M - ic < mc ? M - ic : mc;
      for (int64_t p0 = 0; p0 < K; p0 += KC) {
        int64_t kc = K - p0 < KC ? K - p0 : KC;
        pack_a(Ap, a, ic, mcur, p0, kc);
        for (int64_t s = jc / NR; s * NR < jc + nc; s++) {
          int64_t nr = nsb - s * NR < NR ? nsb - s * NR : NR;
          for (int64_t ir = 0; ir < mcur; ir += MR)
            micro_kernel(kc, Ap + ir * kc, Bp + (s * K + p0) * NR, C + (ic + ir) * N + j0 + s * NR, N,
                         mcur - ir < MR ? mcur - ir : MR, nr, alpha, beta, p0 == 0);
        }
      }
    }
    /* implicit barrier: the packed B may be overwritten */
  }
}

/* ---------------------------------------------------------------------------------------------
** f64 path: out[i,j] = alpha * sum_k op(a)[i,k] op(b)[k,j] + beta*out[i,j], in double, rows
** split across threads; operands of any float dtype */
static void dgemm_batch(sr_tensor *out, int64_t ooff, const gemm_operand *a, const gemm_operand *b, int64_t M,
                        int64_t N, int64_t K, double alpha, double beta, double *rows) {
#pragma omp for schedule(static)
  for (int64_t i = 0; i < M; i++) {
    double *acc = rows + (int64_t)omp_get_thread_num() * N;
    for (int64_t j = 0; j < N; j++) acc[j] = 0;
    for (int64_t p = 0; p < K; p++) {
      double av = cpu_ld(a->data, a->dtype, a->off + (a->trans ? p * a->ld + i : i * a->ld + p));
      if (b->trans)
        for (int64_t j = 0; j < N; j++) acc[j] += av * cpu_ld(b->data, b->dtype, b->off + j * b->ld + p);
      else if (b->dtype == SR_F64) {
        const double *br = (const double *)b->data + b->off + p * b->ld;
        for (int64_t j = 0; j < N; j++) acc[j] += av * br[j];
      } else
        for (int64_t j = 0; j < N; j++) acc[j] += av * cpu_ld(b->data, b->dtype, b->off + p * b->ld + j);
    }
    for (int64_t j = 0; j < N; j++) {
      int64_t o = ooff + i * N + j;
      double old = beta == 0.0 ? 0.0 : beta * cpu_ld(out->storage->data, out->dtype, o);
      cpu_st(out->storage->data, out->dtype, o, alpha * acc[j] + old);
    }
  }
}

/* ---------------------------------------------------------------------------------------------
** gemm: the kernel entry */
const char *sr_cpu_gemm(const sr_kcall *c) {
  sr_tensor *out = c->t[0], *ta = c->t[1], *tb = c->t[2];
  const char *e = cpu_check_floats(c, 0, 3);
  if (e) return e;
  int nd = out->ndim;
  if (nd < 2 || nd > 3 || ta->ndim != nd || tb->ndim != nd) return "gemm wants 2-D or 3-D out, a and b";
  int ta_t = c->i[0] != 0, tb_t = c->i[1] != 0;
  int64_t B = nd == 3 ? out->shape[0] : 1, M = out->shape[nd - 2], N = out->shape[nd - 1];
  int64_t K = ta->shape[nd - (ta_t ? 2 : 1)];
  int64_t sa = nd == 3 ? ta->stride[0] : 0, sb = nd == 3 ? tb->stride[0] : 0;
  gemm_operand a = {ta->storage->data, ta->dtype, ta->offset, ta->stride[nd - 2], ta_t};
  gemm_operand b = {tb->storage->data, tb->dtype, tb->offset, tb->stride[nd - 2], tb_t};
  if (B == 0 || M == 0 || N == 0) return NULL;
  int nt = omp_get_max_threads();
  int64_t work = M * N * (K + 1);
  int par = work > GEMM_PAR_MIN;

  if (out->dtype == SR_F64 || ta->dtype == SR_F64 || tb->dtype == SR_F64) {
    par = work > GEMM_PAR_MIN / 16;  /* the plain double loop is ~16x slower per multiply-add */
    double *rows = (double *)malloc(sizeof(double) * (size_t)(N * nt));
    if (!rows) return CPU_OOM;
#pragma omp parallel if (par)
    for (int64_t bi = 0; bi < B; bi++) {
      gemm_operand ab = a, bb = b;
      ab.off += bi * sa;
      bb.off += bi * sb;
      dgemm_batch(out, out->offset + bi * M * N, &ab, &bb, M, N, K, c->f[0], c->f[1], rows);
    }
    free(rows);
    return NULL;
  }

  /* f32 / bf16: the packed B (whole, or super-blocks of columns when huge), one A block per
  ** thread, an f32 out buffer for bf16. Row blocks shrink (in MR steps) until there are 4 tasks
  ** a thread, for balance when M is small. */
  int64_t npad = (N + NR - 1) / NR * NR, ncols = npad;
  if (K * npad > BSUPER) ncols = BSUPER / K / NC * NC < NC ? NC : BSUPER / K / NC * NC;
  int64_t bcols = ncols < npad ? ncols : npad, mc = MC, kmax = K < KC ? K : KC;
  if (!par) nt = 1;
  while (mc > MR && (bcols + NC - 1) / NC * ((M + mc - 1) / mc) < 4 * nt) mc -= MR;
  float *Bp = (float *)malloc(sizeof(float) * (size_t)(bcols * K + 1));
  float *Ap = (float *)malloc(sizeof(float) * (size_t)(mc * kmax + 1) * (size_t)nt);
  float *Cf = out->dtype == SR_F32 ? NULL : (float *)malloc(sizeof(float) * (size_t)(M * N));
  if (!Bp || !Ap || (out->dtype != SR_F32 && !Cf)) { free(Bp); free(Ap); free(Cf); return CPU_OOM; }
  float alpha = (float)c->f[0], beta = Cf ? 0.0f : (float)c->f[1];
#pragma omp parallel if (par)
  {
    float *myA = Ap + (mc * kmax + 1) * (int64_t)omp_get_thread_num();
    for (int64_t bi = 0; bi < B; bi++) {
      gemm_operand ab = a, bb = b;
      ab.off += bi * sa;
      bb.off += bi * sb;
      float *C = Cf ? Cf : (float *)sr_data(out) + bi * M * N;
      sgemm_batch(C, &ab, &bb, M, N, K, alpha, beta, Bp, myA, ncols, mc);
      if (Cf) {  /* round the f32 result once into out, adding beta*out */
        int64_t o0 = out->offset + bi * M * N;
        double ob = c->f[1];
#pragma omp for schedule(static)
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            int64_t o = o0 + i * N + j;
            double old = ob == 0.0 ? 0.0 : ob * cpu_ld(out->storage->data, out->dtype, o);
            cpu_st(out->storage->data, out->dtype, o, (double)Cf[i * N + j] + old);
          }
      }
    }
  }
  free(Bp);
  free(Ap);
  free(Cf);
  return NULL;
}
