/*
** test_gpu_registry.c: every row of the kernel registry (sr_kernels[], host/core/registry.h), its
** CUDA launcher against its CPU reference. Each row has a case generator (cases[] below, built
** from the SR_KERNELS X-macro: a row without a generator does not link, a generator that makes
** no case fails the run naming the row); the unary, binary and reduce rows must also cover every
** function of SR_UNARY_FNS / SR_BINARY_FNS / SR_REDUCE_FNS.
**
** A case is one sr_kcall on CPU tensors (views at odd sizes, transposed, padded, broadcast with
** stride 0, outputs poisoned with NaN bits). The test copies every storage the call touches to the
** device (views that share a storage share it there too), runs the launcher there, runs the CPU
** reference (the same sr_kcall) on the originals, and compares every tensor of the call (outputs,
** in-place updates, and inputs, which must come back unchanged): ||dev - ref|| / ||ref|| over
** the logical elements, NaN never passes. Tolerances by dtype: i32 exact, f64 1e-6 (the GPU
** computes in f32), f32 2e-5 and bf16 1e-2 unless a case says otherwise. The expected values
** are the CPU reference kernels' own results: no formula is copied here.
**
** Also: a second launch gives the same bits (sumsq_multi), adamw_multi gives adamw's bits per
** parameter, a bad index is reported (embedding, cross_entropy), and, with a GPU, the caching
** allocator's steady state and a CUDA graph replay (group "backend").
**
** Device: a GPU when one is usable (SR_TEST_DEVICE=cuda insists on one and fails without it);
** otherwise, or with SR_TEST_DEVICE=cpu, a dry run: the CPU reference on both sides, with small
** shapes, so the generators, the coverage check and the comparison run in CI.
** Usage: test_gpu_registry [row|backend ...]  (e.g. `test_gpu_registry rotary gemm`);
** SR_TEST_VERBOSE=1 prints every case. Each row draws its random values from a seed of its name: a
** row run alone sees the values it sees in the whole run.
*/
#include <math.h>    /* defines: sqrt, isnan */
#include <stdarg.h>  /* defines: va_list */
#include <stdio.h>   /* defines: printf, vsnprintf */
#include <stdlib.h>  /* defines: getenv, malloc, free */
#include <string.h>  /* defines: memset, memcmp, strcmp, strstr */

#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_tensor_zeros */
#include "core/flex.h"      /* defines: sr_flex_count_at, sr_flex_index_at */
#include "core/registry.h"  /* defines: sr_kernels, sr_kcall, SR_K_*, SR_*_FNS */
#ifdef SPEEDRUN_CUDA
#include "cuda/backend.h"   /* defines: sr_cuda_probe, sr_cuda_sync, sr_cuda_graph_begin */
#endif

static sr_device DEV = SR_CPU;  /* the side under test: SR_CUDA, or SR_CPU for the dry run */
static int big;                 /* GPU shapes (large, many); the dry run uses the small ones */
static int verbose;
static int failures, checks, ncases;
static int row_cases[SR_KERNEL_COUNT];
static unsigned char fn_seen[SR_KERNEL_COUNT][32];

static const char *unary_names[] = {
#define SR_X(E, n) #n,
  SR_UNARY_FNS(SR_X)
#undef SR_X
};
static const char *binary_names[] = {
#define SR_X(E, n) #n,
  SR_BINARY_FNS(SR_X)
#undef SR_X
};
static const char *reduce_names[] = {
#define SR_X(E, n) #n,
  SR_REDUCE_FNS(SR_X)
#undef SR_X
};

static void fail_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  failures++;
}

/* ---------------------------------------------------------------- CPU tensors of a case */

/* every tensor made since mark() is released by release_to() */
static sr_tensor **pool;
static int npool, cappool;
static int mark(void) { return npool; }
static void release_to(int m) {
  while (npool > m) sr_tensor_release(pool[--npool]);
}
static sr_tensor *keep(sr_tensor *t) {
  if (npool == cappool) pool = realloc(pool, (size_t)(cappool = cappool ? 2 * cappool : 256) * sizeof *pool);
  return pool[npool++] = t;
}

/* the cases' random values: each row starts from a state of its own name (row_seed), so a row run
** alone draws what it draws in the whole run, and cases added to one row move no other's values (an
** adamw_multi case failed in the whole run of 2026-12-07 and not alone: the rows before it had
** drawn more) */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static void row_seed(const char *name) {
  uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
  for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
  rng_state = h ? h : 0x9E3779B97F4A7C15ull;   /* xorshift needs a nonzero state */
}
static double urand(void) { /* [0,1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}
static const char *dn(sr_dtype d) {
  return d == SR_F32 ? "f32" : d == SR_BF16 ? "bf16" : d == SR_I32 ? "i32" : d == SR_F64 ? "f64" : d == SR_F8E4M3 ? "e4m3" : d == SR_F8E5M2 ? "e5m2" : "?";
}

/* a view over a fresh CPU storage of nel elements */
static sr_tensor *tview(sr_dtype dt, int64_t nel, int nd, const int64_t *sh, const int64_t *st, int64_t off) {
  int64_t n = nel ? nel : 1;
  sr_tensor *base = sr_tensor_zeros(dt, SR_CPU, 1, &n);
  sr_tensor *v = sr_as_strided(base, nd, sh, st, off);
  sr_tensor_release(base);
  return keep(v);
}
static sr_tensor *tnew(sr_dtype dt, int nd, const int64_t *sh) {
  int64_t st[SR_MAXDIM], n = 1;
  for (int k = nd - 1; k >= 0; k--) { st[k] = n; n *= sh[k]; }
  return tview(dt, n, nd, sh, st, 0);
}
/* the last two dims swapped in memory (a transposed view) */
static sr_tensor *tnew_t(sr_dtype dt, int nd, const int64_t *sh) {
  int64_t st[SR_MAXDIM], n = 1;
  int perm[SR_MAXDIM];
  for (int k = 0; k < nd; k++) perm[k] = k;
  if (nd >= 2) { perm[nd - 1] = nd - 2; perm[nd - 2] = nd - 1; }
  for (int k = nd - 1; k >= 0; k--) { st[perm[k]] = n; n *= sh[perm[k]]; }
  return tview(dt, n, nd, sh, st, 0);
}
/* rows padded by 3 elements, the view starting at element 2 */
static sr_tensor *tnew_pad(sr_dtype dt, int nd, const int64_t *sh) {
  int64_t st[SR_MAXDIM], n = 1;
  for (int k = nd - 1; k >= 0; k--) { st[k] = n; n *= sh[k] + (k == nd - 1 ? 3 : 0); }
  return tview(dt, n + 2, nd, sh, st, 2);
}
/* layout 0 contiguous, 1 transposed, 2 padded */
static sr_tensor *tlay(int layout, sr_dtype dt, int nd, const int64_t *sh) {
  return layout == 1 ? tnew_t(dt, nd, sh) : layout == 2 ? tnew_pad(dt, nd, sh) : tnew(dt, nd, sh);
}
static const char *layname(int layout) { return layout == 1 ? "transposed" : layout == 2 ? "padded" : "contig"; }
static int64_t snel(const sr_tensor *x) { return (int64_t)(x->storage->nbytes / sr_dtype_size(x->dtype)); }

/* uniform values in [lo,hi) over the whole storage (padding included), as stored */
static sr_tensor *rnd(sr_tensor *x, double lo, double hi) {
  for (int64_t i = 0; i < snel(x); i++) sr_store(x->storage->data, x->dtype, i, lo + (hi - lo) * urand());
  return x;
}
static sr_tensor *rint_(sr_tensor *x, int lo, int hi) {
  for (int64_t i = 0; i < snel(x); i++) sr_store(x->storage->data, x->dtype, i, lo + (int)((hi - lo) * urand()));
  return x;
}
/* all bits set: NaN for floats, -1 for i32; an output that is not written fails */
static sr_tensor *poison(sr_tensor *x) {
  memset(x->storage->data, 0xff, x->storage->nbytes);
  return x;
}
static void set1(sr_tensor *x, int64_t i, double v) { sr_store(x->storage->data, x->dtype, sr_offset_of(x, i), v); }

static sr_kcall kc_(int nt, sr_tensor *const *t) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.nt = nt;
  for (int j = 0; j < nt; j++) c.t[j] = t[j];
  return c;
}
#define KC(...) kc_((int)(sizeof((sr_tensor *[]){__VA_ARGS__}) / sizeof(sr_tensor *)), (sr_tensor *[]){__VA_ARGS__})

/* ---------------------------------------------------------------- the device side */

/* copies of CPU storages on DEV, one per storage (views of one storage share it there too) */
typedef struct {
  const sr_storage *src[1024];
  sr_tensor *base[1024];
  int n;
} mirror;
static sr_tensor *mir(mirror *m, sr_tensor *x) {
  if (!x) return NULL;
  int k = 0;
  while (k < m->n && m->src[k] != x->storage) k++;
  if (k == m->n) {
    if (m->n == 1024) { printf("FATAL: more than 1024 storages in one case\n"); exit(1); }
    int64_t n = snel(x);
    sr_tensor *cpu = sr_as_strided(x, 1, &n, (int64_t[]){1}, 0);
    m->base[k] = sr_to_raw(cpu, DEV, x->dtype);
    sr_tensor_release(cpu);
    m->src[k] = x->storage;
    m->n++;
  }
  return sr_as_strided(m->base[k], x->ndim, x->shape, x->stride, x->offset);
}
static void mirror_free(mirror *m) {
  for (int k = 0; k < m->n; k++) sr_tensor_release(m->base[k]);
  m->n = 0;
}
/* the call c with every tensor mirrored; list holds the mirrored list (c->nlist entries) */
static sr_kcall mirror_call(mirror *m, const sr_kcall *c, sr_tensor **list) {
  sr_kcall d = *c;
  for (int j = 0; j < c->nt; j++) d.t[j] = mir(m, c->t[j]);
  for (int j = 0; j < c->nlist; j++) list[j] = mir(m, c->list[j]);
  d.list = c->nlist ? list : NULL;
  return d;
}
static void call_free(sr_kcall *d, sr_tensor **list) {
  for (int j = 0; j < d->nt; j++) sr_tensor_release(d->t[j]);
  for (int j = 0; j < d->nlist; j++) sr_tensor_release(list[j]);
}
/* runs kernel id on DEV (waiting for it: a deferred error shows here); NULL or the error */
static const char *run_dev(sr_kernel_id id, const sr_kcall *d) {
  sr_kernel_fn fn = DEV == SR_CUDA ? sr_kernels[id].cuda : sr_kernels[id].cpu;
  if (!fn) return "no launcher for this device";
  const char *e = fn(d);
#ifdef SPEEDRUN_CUDA
  if (DEV == SR_CUDA) {
    const char *s = sr_cuda_sync();
    if (!e) e = s;
  }
#endif
  return e;
}
/* the storage of a (device or CPU) view, as a CPU copy */
static sr_tensor *fetch(const sr_tensor *x) {
  int64_t n = snel(x);
  sr_tensor *flat = sr_as_strided((sr_tensor *)x, 1, &n, (int64_t[]){1}, 0);
  sr_tensor *h = sr_to_raw(flat, SR_CPU, x->dtype);
  sr_tensor_release(flat);
  return h;
}
static double at(const sr_tensor *view, const sr_tensor *host, int64_t i) {
  return sr_load(host->storage->data, view->dtype, sr_offset_of(view, i));
}
/* bitwise equality of the logical elements of two views (any devices) */
static int same_bits(const sr_tensor *a, const sr_tensor *b) {
  sr_tensor *ha = fetch(a), *hb = fetch(b);
  size_t es = sr_dtype_size(a->dtype);
  int same = a->dtype == b->dtype && sr_numel(a) == sr_numel(b);
  for (int64_t i = 0; same && i < sr_numel(a); i++)
    same = !memcmp((char *)ha->storage->data + sr_offset_of(a, i) * es, (char *)hb->storage->data + sr_offset_of(b, i) * es, es);
  sr_tensor_release(ha);
  sr_tensor_release(hb);
  return same;
}

/* ---------------------------------------------------------------- one case */

typedef struct {
  double t32, t16;        /* tolerances of f32 and bf16 tensors (0: 2e-5 and 1e-2) */
  double tol[SR_KMAXT];   /* per tensor of c->t (> 0 overrides the dtype's) */
  unsigned exact;         /* bit j: tensor j must match exactly */
  const char *want_err;   /* both sides must fail with a message containing this */
  int rerun;              /* a second launch on DEV must give the same bits */
  int contig_ref;         /* the CPU reference reads these views as contiguous: give it copies */
} opt;

/* the call with every tensor (and list tensor) replaced by a contiguous CPU copy; a tensor given
** twice (in place) gets one copy */
static sr_kcall contig_call(const sr_kcall *c, sr_tensor **list) {
  sr_kcall d = *c;
  for (int j = 0; j < c->nt + c->nlist; j++) {
    sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt], *y = NULL;
    for (int k = 0; k < j && x && !y; k++)
      if ((k < c->nt ? c->t[k] : c->list[k - c->nt]) == x) y = sr_tensor_retain(k < c->nt ? d.t[k] : list[k - c->nt]);
    if (x && !y) y = sr_to_raw(x, SR_CPU, x->dtype);
    if (j < c->nt) d.t[j] = y;
    else list[j - c->nt] = y;
  }
  d.list = c->nlist ? list : NULL;
  return d;
}

static double tol_for(const opt *o, int j, sr_dtype dt) {
  if (j >= 0 && j < SR_KMAXT && (o->exact >> j & 1)) return 0;
  if (j >= 0 && j < SR_KMAXT && o->tol[j] > 0) return o->tol[j];
  switch (dt) {
    case SR_I32: return 0;
    case SR_F64: return 1e-6;
    case SR_BF16: return o->t16 > 0 ? o->t16 : 1e-2;
    default: return o->t32 > 0 ? o->t32 : 2e-5;
  }
}

/* the CPU reference of kernel id on contiguous copies of c's tensors, the results copied back
** into c's views: the set-up of backward cases (a forward's output, saved statistics) */
static void ref_run(sr_kernel_id id, const sr_kcall *c) {
  sr_tensor **list = malloc((size_t)(c->nlist + 1) * sizeof *list);
  sr_kcall r = contig_call(c, list);
  const char *e = sr_kernels[id].cpu(&r);
  if (e) { printf("FATAL: set-up with %s: %s\n", sr_kernels[id].name, e); exit(1); }
  for (int j = 0; j < c->nt; j++)
    if (c->t[j]) sr_copy_(c->t[j], r.t[j]);
  for (int j = 0; j < c->nlist; j++) sr_copy_(c->list[j], list[j]);
  call_free(&r, list);
  free(list);
}

/* compares view d (on DEV, storage copy hd) with the reference view r; returns ok */
static int compare(const char *name, const char *what, const sr_tensor *d, const sr_tensor *hd, const sr_tensor *r,
                   double tol, double *worst) {
  int64_t n = sr_numel(r);
  double num = 0, den = 0;
  int64_t nan = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = at(d, hd, i), y = sr_load(r->storage->data, r->dtype, sr_offset_of(r, i));
    if (isnan(x) || isnan(y)) { nan++; continue; }
    num += (x - y) * (x - y);
    den += y * y;
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  int ok = !nan && rel <= tol;
  checks++;
  if (rel > *worst) *worst = rel;
  if (!ok) fail_line("%s: %s rel %.2e (tol %.0e)%s", name, what, rel, tol, nan ? " NaN in the result or reference" : "");
  return ok;
}

static void check(sr_kernel_id id, const sr_kcall *c, opt o, const char *fmt, ...) {
  char name[256];
  int n0 = snprintf(name, sizeof name, "%s ", sr_kernels[id].name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name + n0, sizeof name - (size_t)n0, fmt, ap);
  va_end(ap);
  ncases++;
  row_cases[id]++;
  if ((id == SR_K_unary || id == SR_K_unary_backward || id == SR_K_binary || id == SR_K_reduce) && c->i[0] >= 0 &&
      c->i[0] < 32)
    fn_seen[id][c->i[0]] = 1;
  int f0 = failures;

  /* the dry run gives the device side contiguous copies, so it checks that the reference reads
  ** every view of the case as it reads a contiguous tensor */
  sr_tensor **clist = malloc((size_t)(c->nlist + 1) * sizeof *clist), **rlist = malloc((size_t)(c->nlist + 1) * sizeof *rlist);
  sr_kcall cc = DEV == SR_CPU ? contig_call(c, clist) : *c;
  sr_kcall rc = o.contig_ref ? contig_call(c, rlist) : *c;
  const sr_kcall *ref = &rc;
  mirror m = {.n = 0};
  sr_tensor **dlist = malloc((size_t)(c->nlist + 1) * sizeof *dlist);
  sr_kcall d = mirror_call(&m, DEV == SR_CPU ? &cc : c, dlist);
  const char *ed = run_dev(id, &d);
  char edbuf[512];
  snprintf(edbuf, sizeof edbuf, "%s", ed ? ed : "");
  const char *er = sr_kernels[id].cpu(ref);
  c = ref;
  double worst = 0;
  if (o.want_err) {
    checks++;
    if (!ed || !er || !strstr(edbuf, o.want_err) || !strstr(er, o.want_err))
      fail_line("%s: wanted errors with \"%s\", got \"%s\" (device) and \"%s\" (reference)", name, o.want_err,
                ed ? edbuf : "none", er ? er : "none");
  } else if (ed || er) {
    checks++;
    fail_line("%s: kernel error: %s%s%s", name, ed ? edbuf : "", ed && er ? " / reference: " : "", er ? er : "");
  } else {
    /* every tensor of the call, once */
    sr_tensor *hd[SR_KMAXT + 1] = {NULL};
    for (int j = 0; j < c->nt + c->nlist; j++) {
      const sr_tensor *r = j < c->nt ? c->t[j] : c->list[j - c->nt];
      const sr_tensor *dv = j < c->nt ? d.t[j] : dlist[j - c->nt];
      if (!r) continue;
      int dup = 0;
      for (int k = 0; k < j && !dup; k++) dup = (k < c->nt ? c->t[k] : c->list[k - c->nt]) == r;
      if (dup) continue;
      char what[32];
      if (j < c->nt) snprintf(what, sizeof what, "t%d %s", j, dn(r->dtype));
      else snprintf(what, sizeof what, "list[%d] %s", j - c->nt, dn(r->dtype));
      sr_tensor *h = fetch(dv);
      compare(name, what, dv, h, r, tol_for(&o, j < c->nt ? j : -1, r->dtype), &worst);
      if (j < c->nt) hd[j] = h;
      else sr_tensor_release(h);
    }
    if (o.rerun) {  /* same bits again: the outputs of the first launch are still in hd */
      const char *e2 = run_dev(id, &d);
      checks++;
      int same = !e2;
      for (int j = 0; j < c->nt && same; j++) {
        if (!hd[j]) continue;
        sr_tensor *h2 = fetch(d.t[j]);
        size_t es = sr_dtype_size(d.t[j]->dtype);
        for (int64_t i = 0; i < sr_numel(d.t[j]) && same; i++)
          same = !memcmp((char *)hd[j]->storage->data + sr_offset_of(d.t[j], i) * es,
                         (char *)h2->storage->data + sr_offset_of(d.t[j], i) * es, es);
        sr_tensor_release(h2);
      }
      if (!same) fail_line("%s: a second launch gave other bits%s%s", name, e2 ? ": " : "", e2 ? e2 : "");
    }
    for (int j = 0; j < c->nt; j++)
      if (c->t[j] && hd[j]) {
        int dup = 0;
        for (int k = 0; k < j && !dup; k++) dup = c->t[k] == c->t[j];
        if (!dup) sr_tensor_release(hd[j]);
      }
  }
  if (verbose && failures == f0) printf("ok   %-90s max rel %.1e\n", name, worst);
  call_free(&d, dlist);
  if (DEV == SR_CPU) call_free(&cc, clist);
  if (o.contig_ref) call_free(&rc, rlist);
  free(dlist);
  free(clist);
  free(rlist);
  mirror_free(&m);
}

/* ---------------------------------------------------------------- element-wise rows */

static const int64_t EW_SHAPES[][3] = {{7, 13, 1}, {3, 5, 9}, {3, 33, 65}, {2, 64, 128}};
#define EW_NSHAPES (big ? 4 : 2)
static int ew_nd(const int64_t *sh) { return sh[2] == 1 ? 2 : 3; }
static const sr_dtype FLOATS[2] = {SR_F32, SR_BF16};

static void cases_fill(void) {
  const sr_dtype dts[4] = {SR_F32, SR_BF16, SR_I32, SR_F64};
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int di = 0; di < 4; di++)
      for (int layout = 0; layout < 3; layout++) {
        int m = mark();
        sr_tensor *o = poison(tlay(layout, dts[di], ew_nd(EW_SHAPES[si]), EW_SHAPES[si]));
        sr_kcall c = KC(o);
        c.f[0] = dts[di] == SR_I32 ? -3 : 1.5;
        check(SR_K_fill, &c, (opt){.exact = 1}, "%s %s [%lld,%lld,%lld]", dn(dts[di]), layname(layout),
              (long long)EW_SHAPES[si][0], (long long)EW_SHAPES[si][1], (long long)EW_SHAPES[si][2]);
        release_to(m);
      }
}

static void cases_copy(void) {
  const sr_dtype dts[4] = {SR_F32, SR_BF16, SR_I32, SR_F64};
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int od = 0; od < 4; od++)
      for (int xd = 0; xd < 4; xd++)
        for (int layout = 0; layout < 3; layout++) {
          /* f64 contiguous only: the GPU's strided path goes through f32 (f64 is storage-only there) */
          if (layout && (dts[od] == SR_F64 || dts[xd] == SR_F64)) continue;
          int m = mark(), nd = ew_nd(EW_SHAPES[si]);
          sr_tensor *x = tlay(layout, dts[xd], nd, EW_SHAPES[si]);
          if (dts[xd] == SR_I32) rint_(x, -1000, 1000); else rnd(x, -100, 100);
          sr_tensor *o = poison(tlay(layout == 1 ? 0 : layout, dts[od], nd, EW_SHAPES[si]));
          sr_kcall c = KC(o, x);
          /* to i32: truncation of the float; to bf16 from f32/f64: one rounding (both exact) */
          check(SR_K_copy, &c, (opt){.exact = 3}, "%s<-%s %s n=%lld", dn(dts[od]), dn(dts[xd]), layname(layout),
                (long long)sr_numel(o));
          release_to(m);
        }
}

static void cases_arange(void) {
  const sr_dtype dts[4] = {SR_F32, SR_BF16, SR_I32, SR_F64};
  const int64_t ns[3] = {1, 37, 5000};
  for (int k = 0; k < 4; k++)
    for (int ni = 0; ni < 3; ni++) {
      int m = mark();
      sr_tensor *o = poison(tnew(dts[k], 1, &ns[ni]));
      sr_kcall c = KC(o);
      c.f[0] = 3;
      c.f[1] = dts[k] == SR_I32 ? 2 : 0.5;
      check(SR_K_arange, &c, (opt){0}, "%s n=%lld", dn(dts[k]), (long long)ns[ni]);
      release_to(m);
    }
}

static int unary_positive(int fn) {
  return fn == SR_UNARY_LOG || fn == SR_UNARY_SQRT || fn == SR_UNARY_RSQRT || fn == SR_UNARY_POW_SCALAR ||
         fn == SR_UNARY_RDIV_SCALAR;
}

/* unary (bw = 0) and unary_backward (bw = 1): every function, f32 and bf16, contiguous,
** transposed and padded inputs; out aliasing x (in place) for the forward */
static void unary_cases(int bw) {
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int di = 0; di < 2; di++)
      for (int fn = 0; fn < SR_UNARY_COUNT; fn++)
        for (int layout = 0; layout < 4; layout++) {
          int m = mark(), nd = ew_nd(EW_SHAPES[si]), pos = unary_positive(fn);
          sr_dtype dt = FLOATS[di];
          sr_tensor *x = rnd(tlay(layout % 3, dt, nd, EW_SHAPES[si]), pos ? 0.2 : -3, 3);
          sr_tensor *o = layout == 3 ? x : poison(tnew(dt, nd, EW_SHAPES[si]));
          sr_kcall c = bw ? KC(o, rnd(tlay(layout == 1 ? 2 : 0, dt, nd, EW_SHAPES[si]), -1, 1), x) : KC(o, x);
          c.i[0] = fn;
          c.f[0] = fn == SR_UNARY_POW_SCALAR ? 1.7 : 0.75;
          check(bw ? SR_K_unary_backward : SR_K_unary, &c, (opt){.t32 = bw ? 1e-4 : 2e-5}, "%s %s %s n=%lld",
                unary_names[fn], dn(dt), layout == 3 ? "in place" : layname(layout), (long long)sr_numel(x));
          release_to(m);
        }
  /* cos and sin at rotary-table angles (up to the sequence length in radians): not fast math's
  ** __cosf / __sinf, whose error grows with |x| */
  for (int fn = SR_UNARY_COS; fn <= SR_UNARY_SIN; fn++) {
    int m = mark();
    const int64_t n[1] = {4099};
    sr_tensor *x = rnd(tnew(SR_F32, 1, n), -70000, 70000), *o = poison(tnew(SR_F32, 1, n));
    sr_kcall c = bw ? KC(o, rnd(tnew(SR_F32, 1, n), -1, 1), x) : KC(o, x);
    c.i[0] = fn;
    check(bw ? SR_K_unary_backward : SR_K_unary, &c, (opt){.t32 = 2e-5}, "%s f32 |x| up to 70,000", unary_names[fn]);
    release_to(m);
  }
  if (!bw) return;
  /* i1 = 1: the gradient from the forward's output (tanh, sigmoid, exp); dx fresh, over dy (the
  ** autograd rule reuses a private upstream gradient) and over y */
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int di = 0; di < 2; di++)
      for (int fn = 0; fn < SR_UNARY_COUNT; fn++)
        for (int where = 0; where < 3 && sr_unary_output_grad(fn); where++) {
          int m = mark(), nd = ew_nd(EW_SHAPES[si]);
          sr_dtype dt = FLOATS[di];
          sr_tensor *y = rnd(tnew(dt, nd, EW_SHAPES[si]), fn == SR_UNARY_TANH ? -1 : 0, fn == SR_UNARY_EXP ? 5 : 1);
          sr_tensor *dy = rnd(tnew(dt, nd, EW_SHAPES[si]), -1, 1);
          sr_tensor *o = where == 1 ? dy : where == 2 ? y : poison(tnew(dt, nd, EW_SHAPES[si]));
          sr_kcall c = KC(o, dy, y);
          c.i[0] = fn;
          c.i[1] = 1;
          check(SR_K_unary_backward, &c, (opt){.t32 = 1e-5}, "%s from y %s %s n=%lld", unary_names[fn], dn(dt),
                where == 1 ? "over dy" : where == 2 ? "over y" : "fresh", (long long)sr_numel(y));
          release_to(m);
        }
}
static void cases_unary(void) { unary_cases(0); }
static void cases_unary_backward(void) { unary_cases(1); }

/* every function; f32, bf16 and i32 (i32 not for div and pow: the GPU computes through float);
** b contiguous, broadcast along dim 0 (stride 0), one broadcast element, or transposed; or a one
** broadcast element (a learned scalar first: s * x, swapped onto the vectorised path) */
static void cases_binary(void) {
  const sr_dtype dts[3] = {SR_F32, SR_BF16, SR_I32};
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int di = 0; di < 3; di++)
      for (int fn = 0; fn < SR_BINARY_COUNT; fn++)
        for (int layout = 0; layout < 5; layout++) {
          sr_dtype dt = dts[di];
          if (dt == SR_I32 && (fn == SR_BINARY_DIV || fn == SR_BINARY_POW)) continue;
          int m = mark(), nd = ew_nd(EW_SHAPES[si]), pos = fn == SR_BINARY_POW || fn == SR_BINARY_DIV;
          const int64_t *sh = EW_SHAPES[si];
          double lo = pos ? 0.3 : -2, hi = 2;
          sr_tensor *a = layout == 4 ? tview(dt, 1, nd, sh, (int64_t[]){0, 0, 0}, 0) : tnew(dt, nd, sh), *b;
          if (layout == 1) b = tview(dt, sh[1] * sh[2], nd, sh, (int64_t[]){0, nd == 3 ? sh[2] : 1, 1}, 0);
          else if (layout == 2) b = tview(dt, 1, nd, sh, (int64_t[]){0, 0, 0}, 0);
          else b = tlay(layout == 3 ? 1 : 0, dt, nd, sh);  /* layout 4: b contiguous */
          if (dt == SR_I32) { rint_(a, -20, 20); rint_(b, -20, 20); }
          else { rnd(a, lo, hi); rnd(b, lo, hi); }
          if (layout == 0) /* equal elements for the comparisons */
            for (int64_t i = 0; i < sr_numel(a); i += 3)
              set1(b, i, sr_load(a->storage->data, dt, sr_offset_of(a, i)));
          sr_tensor *o = poison(tnew(dt, nd, sh));
          sr_kcall c = KC(o, a, b);
          c.i[0] = fn;
          static const char *bl[5] = {"contig", "b broadcast dim 0", "b one element", "b transposed", "a one element"};
          check(SR_K_binary, &c, (opt){0}, "%s %s %s n=%lld", binary_names[fn], dn(dt), bl[layout], (long long)sr_numel(o));
          release_to(m);
        }
}

/* cond i32 or f32 (broadcast along dim 0 for f32), a transposed */
static void cases_where(void) {
  for (int si = 0; si < EW_NSHAPES; si++)
    for (int di = 0; di < 2; di++)
      for (int cd = 0; cd < 2; cd++) {
        int m = mark(), nd = ew_nd(EW_SHAPES[si]);
        const int64_t *sh = EW_SHAPES[si];
        sr_dtype dt = FLOATS[di];
        sr_tensor *cond = cd ? rint_(tview(SR_F32, sh[1] * sh[2], nd, sh, (int64_t[]){0, nd == 3 ? sh[2] : 1, 1}, 0), 0, 2)
                             : rint_(tnew(SR_I32, nd, sh), 0, 2);
        sr_tensor *a = rnd(tnew_t(dt, nd, sh), -1, 1), *b = rnd(tnew(dt, nd, sh), -1, 1), *o = poison(tnew(dt, nd, sh));
        sr_kcall c = KC(o, cond, a, b);
        check(SR_K_where, &c, (opt){.exact = 1}, "%s cond %s n=%lld", dn(dt), cd ? "f32 broadcast" : "i32",
              (long long)sr_numel(o));
        release_to(m);
      }
}

/* ---------------------------------------------------------------- reductions, softmax */

static void cases_reduce(void) {
  const int64_t shapes[][3] = {{5, 7, 9}, {2, 40, 3}, {3, 300, 31}, {2, 2000, 1}, {8, 5, 3000}, {1, 3, 70000}};
  int nsh = big ? 6 : 2;
  for (int si = 0; si < nsh; si++)
    for (int di = 0; di < 2; di++)
      for (int layout = 0; layout < 2; layout++)
        for (int dim = 0; dim < 3; dim++)
          for (int fn = 0; fn < SR_REDUCE_COUNT; fn++) {
            int m = mark();
            const int64_t *sh = shapes[si];
            sr_dtype dt = FLOATS[di];
            sr_tensor *x = rnd(layout ? tnew_t(dt, 3, sh) : tnew(dt, 3, sh), -2, 2);
            int64_t osh[3] = {sh[0], sh[1], sh[2]};
            osh[dim] = 1;
            sr_tensor *o = poison(tnew(dt, 3, osh));
            sr_tensor *idx = fn == SR_REDUCE_MAX ? poison(tnew(SR_I32, 3, osh)) : NULL;
            sr_kcall c = KC(o, x, idx);
            c.i[0] = fn;
            c.i[1] = dim;
            check(SR_K_reduce, &c, (opt){.t32 = 1e-5}, "%s %s dim %d [%lld,%lld,%lld] %s", reduce_names[fn], dn(dt), dim,
                  (long long)sh[0], (long long)sh[1], (long long)sh[2], layout ? "transposed" : "contig");
            release_to(m);
          }
}

/* dot: sizes from 1 to past the 1024-block cap (grid-stride blocks), f32 and bf16; positive
** products (a sum of O(N), not a cancelling one, so 1e-5 relative holds for f32 accumulation) and
** one signed case; a rerun gives the same bits */
/* n a multiple of 8 and not; b (or a) one element off a 16-byte boundary: kernel 2's fallback */
static void cases_dot(void) {
  const int64_t sizes[] = {1, 7, 1000, 4099, 70001, 3 * 1024 * 2048 + 5, 3 * 1024 * 2048};
  for (int si = 0; si < (big ? 7 : 4); si++)
    for (int di = 0; di < 2; di++)
      for (int off = 0; off < (si >= 2 ? 3 : 1); off++) {
        int m = mark();
        int64_t n = sizes[si];
        int sgn = si == 2;  /* n = 1000: products of both signs (a sum of about 60), a looser tolerance */
        sr_tensor *a = rnd(tview(FLOATS[di], n + 1, 1, &n, (int64_t[]){1}, off == 2), sgn ? -0.5 : 0, 1);
        sr_tensor *b = rnd(tview(FLOATS[di], n + 1, 1, &n, (int64_t[]){1}, off == 1), sgn ? -0.5 : 0.5, 1);
        sr_tensor *o = poison(tnew(SR_F32, 1, (int64_t[]){1}));
        sr_kcall c = KC(o, a, b);
        check(SR_K_dot, &c, (opt){.t32 = sgn ? 1e-4 : 1e-5, .rerun = 1}, "%s n=%lld%s%s", dn(FLOATS[di]), (long long)n,
              sgn ? " signed" : "", off ? (off == 1 ? " b misaligned" : " a misaligned") : "");
        release_to(m);
      }
}

static const int64_t SM_ROWS[][2] = {{7, 33}, {3, 200}, {64, 1000}, {5, 50257}};
#define SM_N (big ? 4 : 2)

static void cases_softmax(void) {
  for (int si = 0; si < SM_N; si++)
    for (int di = 0; di < 2; di++)
      for (int lg = 0; lg < 2; lg++) {
        int m = mark();
        sr_tensor *x = rnd(tnew(FLOATS[di], 2, SM_ROWS[si]), -4, 4), *y = poison(tnew(FLOATS[di], 2, SM_ROWS[si]));
        sr_kcall c = KC(y, x);
        c.i[0] = lg;
        check(SR_K_softmax, &c, (opt){0}, "%s%s [%lld,%lld]", lg ? "log " : "", dn(FLOATS[di]), (long long)SM_ROWS[si][0],
              (long long)SM_ROWS[si][1]);
        release_to(m);
      }
}

/* cumsum and argsort rows: tile edges of the scan (2,048), the records' shapes (one 64K row of
** document flags; 512 x 512 block-mask rows) */
static const int64_t ORDER_ROWS[][2] = {{7, 33}, {3, 2049}, {1, 4096}, {64, 1000}, {1, 65536}, {512, 512}};
#define ORDER_N (big ? 6 : 3)
static const sr_dtype ORDER_DTS[3] = {SR_F32, SR_BF16, SR_I32};

static void cases_cumsum(void) {
  for (int si = 0; si < ORDER_N; si++)
    for (int di = 0; di < 3; di++)
      for (int rev = 0; rev < 2; rev++) {
        int m = mark();
        sr_dtype dt = ORDER_DTS[di];
        sr_tensor *x = tnew(dt, 2, ORDER_ROWS[si]), *y = poison(tnew(dt, 2, ORDER_ROWS[si]));
        /* floats in [0, 1): monotone sums, so the tolerance is about accumulation, not cancellation;
        ** i32 the records' 0/1 flags and signed values */
        if (dt == SR_I32) rint_(x, si & 1 ? -1000 : 0, si & 1 ? 1000 : 2); else rnd(x, 0, 1);
        sr_kcall c = KC(y, x);
        c.i[0] = rev;
        check(SR_K_cumsum, &c, (opt){.t32 = 1e-4}, "%s [%lld,%lld]%s", dn(dt), (long long)ORDER_ROWS[si][0],
              (long long)ORDER_ROWS[si][1], rev ? " reverse" : "");
        release_to(m);
      }
}

static void cases_argsort(void) {
  for (int si = 0; si < ORDER_N; si++)
    for (int di = 0; di < 3; di++)
      for (int kind = 0; kind < 3; kind++) {  /* distinct-ish values, many ties, 0/1 flags */
        int m = mark();
        sr_dtype dt = ORDER_DTS[di];
        sr_tensor *x = tnew(dt, 2, ORDER_ROWS[si]), *y = poison(tnew(SR_I32, 2, ORDER_ROWS[si]));
        if (kind == 0 && dt != SR_I32) rnd(x, -100, 100);
        else rint_(x, kind == 2 ? 0 : -5, kind == 2 ? 2 : kind == 0 ? 1 << 30 : 5);
        if (dt != SR_I32)  /* signed zeros are equal: their order is their index order */
          for (int64_t i = 0; i < sr_numel(x); i += 7) set1(x, i, i % 2 ? -0.0 : 0.0);
        for (int desc = 0; desc < 2; desc++) {
          sr_kcall c = KC(y, x);
          c.i[0] = desc;
          check(SR_K_argsort, &c, (opt){0}, "%s [%lld,%lld] kind %d%s", dn(dt), (long long)ORDER_ROWS[si][0],
                (long long)ORDER_ROWS[si][1], kind, desc ? " descending" : "");
          poison(y);
        }
        release_to(m);
      }
}

static void cases_softmax_backward(void) {
  for (int si = 0; si < SM_N; si++)
    for (int di = 0; di < 2; di++)
      for (int lg = 0; lg < 2; lg++) {
        int m = mark();
        sr_dtype dt = FLOATS[di];
        sr_tensor *x = rnd(tnew(dt, 2, SM_ROWS[si]), -4, 4), *y = tnew(dt, 2, SM_ROWS[si]);
        sr_kcall f = KC(y, x);
        f.i[0] = lg;
        ref_run(SR_K_softmax, &f);  /* the forward's output, from the reference */
        sr_tensor *dy = rnd(tnew(dt, 2, SM_ROWS[si]), -1, 1), *dx = poison(tnew(dt, 2, SM_ROWS[si]));
        sr_kcall c = KC(dx, dy, y);
        c.i[0] = lg;
        check(SR_K_softmax_backward, &c, (opt){0}, "%s%s [%lld,%lld]", lg ? "log " : "", dn(dt),
              (long long)SM_ROWS[si][0], (long long)SM_ROWS[si][1]);
        release_to(m);
      }
}

/* ---------------------------------------------------------------- gemm */

/* a, b, out and the modes: f32->f32, bf16->bf16, bf16->f32; transposes; a and b with padded rows
** and beta = 0.5 (out read), or contiguous and beta = 0 (out poisoned); b broadcast over the batch */
static void gemm_case(int64_t B, int64_t M, int64_t N, int64_t K, int bcast, int mode, int ta, int tb, int pad, int nd) {
  int mk = mark();
  sr_dtype idt = mode == 0 ? SR_F32 : SR_BF16, odt = mode == 1 ? SR_BF16 : SR_F32;
  int64_t ash[3] = {B, ta ? K : M, ta ? M : K}, bsh[3] = {B, tb ? N : K, tb ? K : N}, osh[3] = {B, M, N};
  int o3 = nd == 3 ? 0 : 1;  /* 2-D: the shapes without the batch */
  sr_tensor *a = rnd(pad ? tnew_pad(idt, nd, ash + o3) : tnew(idt, nd, ash + o3), -1, 1), *b;
  if (bcast) b = rnd(tview(idt, bsh[1] * bsh[2], 3, bsh, (int64_t[]){0, bsh[2], 1}, 0), -1, 1);
  else b = rnd(pad ? tnew_pad(idt, nd, bsh + o3) : tnew(idt, nd, bsh + o3), -1, 1);
  sr_tensor *o = tnew(odt, nd, osh + o3);
  double beta = pad ? 0.5 : 0.0;
  if (beta != 0) rnd(o, -1, 1); else poison(o);
  sr_kcall c = KC(o, a, b);
  c.i[0] = ta;
  c.i[1] = tb;
  c.f[0] = 0.8;
  c.f[1] = beta;
  check(SR_K_gemm, &c, (opt){.t32 = mode == 0 ? 1e-5 : 1e-2}, "%s->%s [%lld]x[%lld,%lld,%lld] ta=%d tb=%d %s%s", dn(idt),
        dn(odt), (long long)B, (long long)M, (long long)N, (long long)K, ta, tb, pad ? "padded beta=0.5" : "contig",
        bcast ? " b broadcast" : "");
  release_to(mk);
}

static void cases_gemm(void) {
  const struct { int64_t B, M, N, K; int bcast; } cs[] = {
    {1, 37, 29, 51, 0}, {3, 17, 40, 24, 0}, {2, 9, 16, 8, 1},
    {1, 128, 256, 64, 0}, {4, 64, 96, 80, 1}, {2, 256, 768, 768, 0},
  };
  int n = big ? 6 : 3;
  for (int ci = 0; ci < n; ci++)
    for (int mode = 0; mode < 3; mode++)
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
          for (int pad = 0; pad < 2; pad++)
            gemm_case(cs[ci].B, cs[ci].M, cs[ci].N, cs[ci].K, cs[ci].bcast, mode, ta, tb, pad, 3);
  /* 2-D, and the zero-padded path of large GEMMs with odd sizes (kernels/matmul.cu: M*N*K >= 2^26
  ** with N, K not multiples of 8) */
  const int64_t pd[2][3] = {{130, 1001, 517}, {1001, 136, 517}};
  for (int sh = 0; sh < 2; sh++)
    for (int mode = 0; mode < 3; mode++)
      for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
          if (big) gemm_case(1, pd[sh][0], pd[sh][1], pd[sh][2], 0, mode, ta, tb, ta ^ tb, 2);
          else gemm_case(1, sh ? 13 : 21, 11, 7, 0, mode, ta, tb, ta ^ tb, 2);
        }
}

/* ---------------------------------------------------------------- embedding, norms */

static const int64_t EMB[][3] = {{50, 17, 33}, {1000, 512, 768}};  /* V, N, C */

static void cases_embedding(void) {
  for (int ci = 0; ci < (big ? 2 : 1); ci++)
    for (int di = 0; di < 2; di++) {
      int m = mark();
      int64_t V = EMB[ci][0], N = EMB[ci][1], C = EMB[ci][2];
      sr_tensor *w = rnd(tnew(FLOATS[di], 2, (int64_t[]){V, C}), -1, 1), *idx = rint_(tnew(SR_I32, 1, &N), 0, (int)V);
      sr_tensor *o = poison(tnew(FLOATS[di], 2, (int64_t[]){N, C}));
      sr_kcall c = KC(o, w, idx);
      check(SR_K_embedding, &c, (opt){.exact = 7}, "%s V=%lld N=%lld C=%lld", dn(FLOATS[di]), (long long)V, (long long)N,
            (long long)C);
      /* an index out of range: reported (at the next synchronize on the GPU) */
      set1(idx, N / 2, (double)V + 2);
      check(SR_K_embedding, &c, (opt){.want_err = "out of range"}, "%s index out of range", dn(FLOATS[di]));
      release_to(m);
    }
}

static void cases_embedding_backward(void) {
  for (int ci = 0; ci < (big ? 2 : 1); ci++)
    for (int di = 0; di < 2; di++) {
      int m = mark();
      int64_t V = EMB[ci][0], N = EMB[ci][1], C = EMB[ci][2];
      /* dweight f32 (+=, from random values); bf16 atomics lose too much */
      sr_tensor *dw = rnd(tnew(SR_F32, 2, (int64_t[]){V, C}), -1, 1), *idx = rint_(tnew(SR_I32, 1, &N), 0, (int)V);
      sr_tensor *dout = rnd(tnew(FLOATS[di], 2, (int64_t[]){N, C}), -1, 1);
      sr_kcall c = KC(dw, dout, idx);
      check(SR_K_embedding_backward, &c, (opt){.t32 = 1e-5}, "dout %s V=%lld N=%lld C=%lld", dn(FLOATS[di]),
            (long long)V, (long long)N, (long long)C);
      release_to(m);
    }
  /* dweight bf16 (record 10's bf16 embedding): summed in f32 and rounded once; hot rows (4 ids
  ** for 4096 positions, as frequent tokens) would lose their small terms to bf16 atomics */
  for (int hot = 0; hot < 2; hot++)
    for (int di = 0; di < 2; di++) {
      int m = mark();
      int64_t V = hot ? 16 : EMB[0][0], N = hot ? 4096 : EMB[0][1], C = hot ? 96 : EMB[0][2];
      sr_tensor *dw = rnd(tnew(SR_BF16, 2, (int64_t[]){V, C}), -1, 1), *idx = rint_(tnew(SR_I32, 1, &N), 0, hot ? 4 : (int)V);
      sr_tensor *dout = rnd(tnew(FLOATS[di], 2, (int64_t[]){N, C}), hot ? 0 : -1, 1);
      sr_kcall c = KC(dw, dout, idx);
      check(SR_K_embedding_backward, &c, (opt){.t16 = 4e-3}, "dweight bf16 dout %s V=%lld N=%lld C=%lld%s", dn(FLOATS[di]),
            (long long)V, (long long)N, (long long)C, hot ? " (hot rows)" : "");
      release_to(m);
    }
}

static const int64_t NORMS[][2] = {{7, 77}, {5, 64}, {300, 768}, {64, 2048}, {384, 128}};  /* the last: QK-norm rows (hd 128) */
#define NORMS_N (big ? 5 : 2)

/* rms_norm (ln = 0) or layer_norm (ln = 1) forward (bw = 0) or backward; with and without weight
** (and bias); x f32 or bf16, weight f32 */
/* dtypes: f32, bf16, and (di = 2) the autocast mix of the step compiler's cast folding: an f32 x
** normed into a bf16 out, its backward reading a bf16 dout */
static void norm_cases(int ln, int bw) {
  for (int ci = 0; ci < NORMS_N; ci++)
    for (int di = 0; di < 3; di++)
      for (int affine = 0; affine < 2; affine++) {
        int m = mark();
        sr_dtype dt = di < 2 ? FLOATS[di] : SR_F32, mixed = di == 2 ? SR_BF16 : dt;
        int64_t N = NORMS[ci][0], C = NORMS[ci][1];
        const int64_t *sh = NORMS[ci];
        sr_tensor *x = rnd(tnew(dt, 2, sh), -2, 2), *o = poison(tnew(bw ? dt : mixed, 2, sh));
        sr_tensor *w = affine ? rnd(tnew(SR_F32, 1, &C), 0.5, 1.5) : NULL;
        sr_tensor *b = affine && ln ? rnd(tnew(SR_F32, 1, &C), -0.5, 0.5) : NULL;
        sr_tensor *mean = ln ? poison(tnew(SR_F32, 1, &N)) : NULL, *rstd = poison(tnew(SR_F32, 1, &N));
        sr_kcall f = ln ? KC(o, mean, rstd, x, w, b) : KC(o, rstd, x, w);
        f.f[0] = 1e-5;
        sr_kernel_id id = ln ? (bw ? SR_K_layer_norm_backward : SR_K_layer_norm) : (bw ? SR_K_rms_norm_backward : SR_K_rms_norm);
        const char *nm = affine ? (ln ? " weight, bias" : " weight") : "", *mx = di == 2 ? " (bf16 out/dout)" : "";
        if (!bw) {
          check(id, &f, (opt){0}, "%s [%lld,%lld]%s%s", dn(dt), (long long)N, (long long)C, nm, mx);
        } else {
          ref_run(ln ? SR_K_layer_norm : SR_K_rms_norm, &f);  /* mean, rstd from the reference */
          sr_tensor *dout = rnd(tnew(mixed, 2, sh), -1, 1);
          for (int acc = 0; acc < 2; acc++) {   /* dx written, or added to (i0 = 1) */
            sr_tensor *dx = acc ? rnd(tnew(dt, 2, sh), -1, 1) : poison(tnew(dt, 2, sh));
            sr_tensor *dw = affine ? rnd(tnew(SR_F32, 1, &C), -1, 1) : NULL;
            sr_tensor *db = affine && ln ? rnd(tnew(SR_F32, 1, &C), -1, 1) : NULL;
            sr_kcall c = ln ? KC(dx, dw, db, dout, x, w, mean, rstd) : KC(dx, dw, dout, x, w, rstd);
            c.i[0] = acc;
            /* dweight, dbias: f32 sums over N rows of bf16 products */
            check(id, &c, (opt){.t32 = dt == SR_BF16 ? 1e-2 : 5e-5}, "%s [%lld,%lld]%s%s%s",
                  dn(dt), (long long)N, (long long)C, nm, mx, acc ? " dx +=" : "");
          }
        }
        release_to(m);
      }
}
static void cases_rms_norm(void) { norm_cases(0, 0); }
static void cases_rms_norm_backward(void) { norm_cases(0, 1); }
static void cases_layer_norm(void) { norm_cases(1, 0); }
static void cases_layer_norm_backward(void) { norm_cases(1, 1); }

/* ---------------------------------------------------------------- cross-entropy */

/* Row shapes and the paths of kernels/softmax_xent.cu's kernel 3 they take (bf16 / f32):
** {13,37}, {6,300} and {64,1000} with padded rows (a stride of V+3 from element 2: every row in
** another 16-byte phase, head and tail elements); {8,50257}: the GPT-2 vocabulary, contiguous,
** rows at every phase (bf16: the row cached, two blocks an SM; f32: cached, 1024 threads);
** {16,50304}: the padded vocabulary, 16-byte rows; {4,60001}: bf16 cached with 1024 threads, f32
** too long for shared memory (read twice); {3,120007}: both read twice. */
static const int64_t XENT[][2] = {{13, 37}, {6, 300}, {64, 1000}, {8, 50257}, {16, 50304}, {4, 60001}, {3, 120007}};
#define XENT_N (big ? 7 : 2)
static int xent_padded(int ci) { return ci == 1 || ci == 2; }

static sr_tensor *xent_logits(int ci, sr_dtype dt) {
  return rnd(xent_padded(ci) ? tnew_pad(dt, 2, XENT[ci]) : tnew(dt, 2, XENT[ci]), -5, 5);
}
static sr_tensor *xent_targets(int ci) {
  int64_t N = XENT[ci][0];
  sr_tensor *tg = rint_(tnew(SR_I32, 1, &N), 0, (int)XENT[ci][1]);
  set1(tg, 1, -100);  /* an ignored row */
  set1(tg, 0, 0);     /* the first element of a row (a head element when rows are misaligned) */
  if (N > 3) set1(tg, 3, (double)(XENT[ci][1] - 1));  /* the last (a tail element) */
  return tg;
}
/* a dlogits buffer for logits of case ci: the logits' layout, or (other) contiguous rows one
** element after a 16-byte boundary, so that its rows are in another 16-byte phase than the
** logits' (element by element writes) */
static sr_tensor *xent_dlogits(int ci, sr_dtype dt, int other) {
  if (!other) return poison(xent_padded(ci) ? tnew_pad(dt, 2, XENT[ci]) : tnew(dt, 2, XENT[ci]));
  int64_t N = XENT[ci][0], V = XENT[ci][1];
  return poison(tview(dt, N * V + 1, 2, XENT[ci], (int64_t[]){V, 1}, 1));
}

static void cases_cross_entropy(void) {
  for (int ci = 0; ci < XENT_N; ci++)
    for (int di = 0; di < 2; di++)
      for (int mode = 0; mode < 4; mode++) {  /* loss only; with dlogits into a buffer; in place; into a buffer in another phase */
        int m = mark();
        sr_dtype dt = FLOATS[di];
        int64_t N = XENT[ci][0];
        sr_tensor *lg = xent_logits(ci, dt), *tg = xent_targets(ci);
        sr_tensor *loss = poison(tnew(SR_F32, 1, &N)), *lse = poison(tnew(SR_F32, 1, &N));
        sr_tensor *ds = rnd(tnew(SR_F32, 0, NULL), 0.2, 0.5);
        sr_tensor *dlg = mode == 1 || mode == 3 ? xent_dlogits(ci, dt, mode == 3) : mode == 2 ? lg : NULL;
        sr_kcall c = mode ? KC(loss, lse, lg, tg, dlg, ds) : KC(loss, lse, lg, tg);
        c.i[0] = -100;
        static const char *mn[4] = {"", " with dlogits", " with dlogits in place", " with dlogits in another phase"};
        check(SR_K_cross_entropy, &c, (opt){.contig_ref = xent_padded(ci) || mode == 3, .rerun = mode != 2},
              "%s [%lld,%lld]%s%s", dn(dt), (long long)N, (long long)XENT[ci][1], xent_padded(ci) ? " padded rows" : "",
              mn[mode]);
        if (mode == 0) { /* a target out of range */
          set1(tg, 2, (double)XENT[ci][1]);
          check(SR_K_cross_entropy, &c, (opt){.want_err = "out of range"}, "%s target out of range", dn(dt));
        }
        release_to(m);
      }
}

static void cases_cross_entropy_backward(void) {
  for (int ci = 0; ci < XENT_N; ci++)
    for (int di = 0; di < 2; di++)
      for (int mode = 0; mode < 4; mode++) {  /* into a buffer; in place; dlosses broadcast (stride 0); into a buffer in another phase */
        int m = mark();
        sr_dtype dt = FLOATS[di];
        int64_t N = XENT[ci][0];
        sr_tensor *lg = xent_logits(ci, dt), *tg = xent_targets(ci);
        sr_tensor *loss = tnew(SR_F32, 1, &N), *lse = tnew(SR_F32, 1, &N);
        sr_kcall f = KC(loss, lse, lg, tg);
        f.i[0] = -100;
        ref_run(SR_K_cross_entropy, &f);  /* lse from the reference */
        sr_tensor *dl = mode == 2 ? rnd(tview(SR_F32, 1, 1, &N, (int64_t[]){0}, 0), 0.5, 1.5) : rnd(tnew(SR_F32, 1, &N), 0.5, 1.5);
        sr_tensor *dlg = mode == 1 ? lg : xent_dlogits(ci, dt, mode == 3);
        sr_kcall c = KC(dlg, dl, lg, tg, lse);
        c.i[0] = -100;
        static const char *mn[4] = {"", " in place", " dlosses broadcast", " into another phase"};
        check(SR_K_cross_entropy_backward, &c, (opt){.contig_ref = xent_padded(ci) || mode == 3}, "%s [%lld,%lld]%s",
              dn(dt), (long long)N, (long long)XENT[ci][1], mn[mode]);
        release_to(m);
      }
}

/* ---------------------------------------------------------------- rotary */

static void cases_rotary(void) {
  const int64_t sh[][4] = {{2, 5, 3, 8}, {1, 7, 2, 32}, {2, 64, 4, 64}, {4, 256, 12, 128}};
  /* D/2 = 4: kernel 1 only; 16, 32, 64 (and 16-byte aligned): kernel 2; the output in either dtype
  ** (a folded cast writes bf16 from an f32 rotation, or the other way round) */
  for (int si = 0; si < (big ? 4 : 2); si++)
    for (int di = 0; di < 2; di++)
      for (int oi = 0; oi < 2; oi++)
        for (int cd = 0; cd < 2; cd++)  /* cos, sin f32, or the dtype of x */
          for (int inv = 0; inv < 2; inv++) {
            int m = mark();
            sr_dtype dt = FLOATS[di], od = FLOATS[oi], ct = cd ? dt : SR_F32;
            int64_t cs_sh[2] = {sh[si][1], sh[si][3] / 2};
            sr_tensor *x = rnd(tnew(dt, 4, sh[si]), -2, 2), *o = poison(tnew(od, 4, sh[si]));
            sr_tensor *cs = rnd(tnew(ct, 2, cs_sh), -1, 1), *sn = rnd(tnew(ct, 2, cs_sh), -1, 1);
            sr_kcall c = KC(o, x, cs, sn);
            c.i[0] = inv;
            check(SR_K_rotary, &c, (opt){0}, "%s -> %s cos/sin %s [%lld,%lld,%lld,%lld]%s", dn(dt), dn(od), dn(ct),
                  (long long)sh[si][0], (long long)sh[si][1], (long long)sh[si][2], (long long)sh[si][3],
                  inv ? " inverse" : "");
            release_to(m);
          }
}

/* ---------------------------------------------------------------- attention */

typedef struct { int64_t B, H, T, D; sr_dtype dt; int fused; } att_shape;
static const att_shape ATT[] = {
  /* strided (fused) inputs: the CUDA kernels take them in bf16 with head dim 64 or 128 only */
  {1, 2, 9, 16, SR_F32, 0}, {2, 1, 12, 64, SR_BF16, 1}, {1, 2, 33, 64, SR_BF16, 0},
  {2, 3, 64, 64, SR_BF16, 0}, {1, 2, 100, 64, SR_BF16, 0}, {2, 2, 256, 128, SR_BF16, 0}, {1, 1, 77, 128, SR_BF16, 0},
  {2, 2, 50, 16, SR_F32, 0}, {1, 3, 70, 64, SR_F32, 0}, {1, 2, 33, 32, SR_BF16, 0},
  {2, 3, 100, 64, SR_BF16, 1}, {1, 2, 130, 128, SR_BF16, 1},
  /* several 128-query forward tiles and pipelined backward tiles, a partial last one; T < 16 */
  {1, 2, 300, 64, SR_BF16, 1}, {1, 1, 200, 128, SR_BF16, 0}, {2, 1, 5, 64, SR_BF16, 0},
};
#define ATT_N (big ? (int)(sizeof ATT / sizeof ATT[0]) : 3)

/* fused: a [B,H,T,D] view with the layout of part j of a [B,T,3,H,D] qkv projection */
static sr_tensor *att_new(const att_shape *a, int j) {
  int64_t sh[4] = {a->B, a->H, a->T, a->D};
  if (!a->fused) return tnew(a->dt, 4, sh);
  int64_t st[4] = {a->T * 3 * a->H * a->D, a->D, 3 * a->H * a->D, 1};
  return tview(a->dt, a->B * a->T * 3 * a->H * a->D, 4, sh, st, j * a->H * a->D);
}

static void attention_cases(int bw) {
  for (int ci = 0; ci < ATT_N; ci++)
    for (int causal = 0; causal < 2; causal++) {
      int m = mark();
      const att_shape *a = &ATT[ci];
      sr_tensor *q = rnd(att_new(a, 0), -1, 1), *k = rnd(att_new(a, 1), -1, 1), *v = rnd(att_new(a, 2), -1, 1);
      sr_tensor *o = poison(att_new(a, 1)), *lse = poison(tnew(SR_F32, 3, (int64_t[]){a->B, a->H, a->T}));
      sr_kcall f = KC(o, lse, q, k, v);
      f.f[0] = 1.0 / sqrt((double)a->D);
      f.i[0] = causal;
      int bf = a->dt == SR_BF16;
      if (!bw) {
        check(SR_K_attention, &f, (opt){.t32 = bf ? 1e-3 : 2e-5, .contig_ref = a->fused}, "%s B=%lld H=%lld T=%lld D=%lld%s%s", dn(a->dt),
              (long long)a->B, (long long)a->H, (long long)a->T, (long long)a->D, causal ? " causal" : "",
              a->fused ? " strided (fused qkv layout)" : "");
      } else {
        ref_run(SR_K_attention, &f);  /* out and lse from the reference */
        sr_tensor *dO = rnd(att_new(a, 2), -1, 1);
        sr_tensor *dq = poison(att_new(a, 0)), *dk = poison(att_new(a, 1)), *dv = poison(att_new(a, 2));
        sr_kcall c = KC(dq, dk, dv, dO, q, k, v, o, lse);
        c.f[0] = f.f[0];
        c.i[0] = causal;
        check(SR_K_attention_backward, &c, (opt){.t32 = 5e-5, .contig_ref = a->fused}, "%s B=%lld H=%lld T=%lld D=%lld%s%s", dn(a->dt),
              (long long)a->B, (long long)a->H, (long long)a->T, (long long)a->D, causal ? " causal" : "",
              a->fused ? " strided (fused qkv layout)" : "");
      }
      release_to(m);
    }
}
static void cases_attention(void) { attention_cases(0); }
static void cases_attention_backward(void) { attention_cases(1); }

/* ---------------------------------------------------------------- flex attention */

/* block-mask shapes: T, block; mask kinds by bits: 1 causal, 2 doc ids, 4 window in tokens,
** 8 window in blocks (a number), 16 window in blocks (a device tensor), 32 the window in tokens
** as a device tensor (i1 then says 0: a device that read i1 would see no window) */
typedef struct { int64_t T, block; } flex_shape;
static const flex_shape FLEXS[] = {{32, 8}, {48, 16}, {1024, 128}, {4096, 128}, {2048, 64}, {8192, 128}};
#define FLEXS_N (big ? (int)(sizeof FLEXS / sizeof FLEXS[0]) : 2)
static const int FLEX_KINDS[] = {0, 1, 3, 5, 7, 9, 11, 17, 19, 2, 6, 37, 39};
#define FLEX_NKINDS (int)(sizeof FLEX_KINDS / sizeof FLEX_KINDS[0])

/* doc ids [T]: sorted, a new document with probability 1/avg per token */
static sr_tensor *flex_docs(int64_t T, double avg) {
  sr_tensor *d = tnew(SR_I32, 1, &T);
  int id = 0;
  for (int64_t t = 0; t < T; t++) {
    if (t && urand() * avg < 1) id++;
    set1(d, t, id);
  }
  return d;
}

/* the mask call of kind `kind` (its output poisoned); window sizes drawn around the block size */
static sr_kcall flex_mask_call(const flex_shape *f, int kind) {
  int64_t nb = f->T / f->block;
  sr_tensor *bm = poison(tnew(SR_I32, 2, (int64_t[]){nb, 4 * nb + 4 + f->block}));
  sr_tensor *doc = kind & 2 ? flex_docs(f->T, f->block * (0.5 + 4 * urand())) : NULL, *wbt = NULL;
  int64_t window = kind & 4 ? 1 + (int64_t)(urand() * 3 * f->block) : 0, wb = 0;
  if (kind & 8) wb = 1 + (int64_t)(urand() * nb / 2);
  if (kind & 16) { wbt = tnew(SR_I32, 0, NULL); set1(wbt, 0, 1 + (int)(urand() * nb / 2)); }
  sr_tensor *wt = NULL;
  if (kind & 32) { wt = tnew(SR_I32, 0, NULL); set1(wt, 0, (double)window); window = 0; }
  sr_kcall c = KC(bm, doc, wbt, wt);
  c.i[0] = kind & 1;
  c.i[1] = window;
  c.i[2] = wb;
  return c;
}

static void cases_flex_block_mask(void) {
  for (int si = 0; si < FLEXS_N; si++)
    for (int ki = 0; ki < FLEX_NKINDS; ki++) {
      int m = mark();
      sr_kcall c = flex_mask_call(&FLEXS[si], FLEX_KINDS[ki]);
      check(SR_K_flex_block_mask, &c, (opt){0}, "T=%lld block=%lld kind=%d window=%lld wb=%lld", (long long)FLEXS[si].T,
            (long long)FLEXS[si].block, FLEX_KINDS[ki], (long long)c.i[1], (long long)c.i[2]);
      release_to(m);
    }
}

/* lists from a component mask's own lists (copied out of the packed tensor), with and without
** full lists, padding entries scrambled */
static void cases_flex_block_mask_lists(void) {
  for (int si = 0; si < FLEXS_N; si++)
    for (int ki = 0; ki < 4; ki++) {
      int m = mark();
      const flex_shape *f = &FLEXS[si];
      int64_t nb = f->T / f->block;
      sr_kcall b = flex_mask_call(f, FLEX_KINDS[ki * 2 + 1]);
      ref_run(SR_K_flex_block_mask, &b);
      sr_tensor *L[4];
      for (int l = 0; l < 4; l++) L[l] = tnew(SR_I32, l & 1 ? 2 : 1, (int64_t[]){nb, nb});
      for (int l = 0; l < 2; l++) {
        for (int64_t x = 0; x < nb; x++) set1(L[2 * l], x, sr_load(b.t[0]->storage->data, SR_I32, sr_flex_count_at(nb, l) + x));
        for (int64_t x = 0; x < nb * nb; x++) {
          int64_t r = x / nb, n = (int64_t)sr_load(b.t[0]->storage->data, SR_I32, sr_flex_count_at(nb, l) + r);
          double val = x % nb < n ? sr_load(b.t[0]->storage->data, SR_I32, sr_flex_index_at(nb, l) + x) : (int)(urand() * nb);
          set1(L[2 * l + 1], x, val);
        }
      }
      int full = ki & 1;
      sr_tensor *bm = poison(tnew(SR_I32, 2, (int64_t[]){nb, 4 * nb + 4 + f->block}));
      sr_kcall c = KC(bm, L[0], L[1], full ? L[2] : NULL, full ? L[3] : NULL, b.t[1]);
      check(SR_K_flex_block_mask_lists, &c, (opt){0}, "T=%lld block=%lld%s%s", (long long)f->T, (long long)f->block,
            full ? " full lists" : " partial lists only", b.t[1] ? " doc ids" : "");
      release_to(m);
    }
}

/* fused: 1 every tensor a view of a fused qkv buffer; 2 q, k, v and out such views, dO and the
   gradients contiguous (autograd's layout in the records: each tensor its own row/head order) */
typedef struct { int64_t B, H, T, D, block; sr_dtype dt; int fused; } flex_att;
static const flex_att FLEXA[] = {
  {1, 2, 32, 16, 8, SR_F32, 0}, {2, 1, 48, 8, 16, SR_F32, 0},
  /* the flash path: bf16, D 64/128, block 128, strided (fused qkv) inputs too */
  {1, 2, 512, 64, 128, SR_BF16, 0}, {2, 3, 1024, 128, 128, SR_BF16, 1}, {1, 6, 2048, 128, 128, SR_BF16, 0},
  {1, 2, 1024, 64, 128, SR_BF16, 1}, {1, 2, 256, 32, 64, SR_F32, 0}, {1, 1, 384, 64, 128, SR_BF16, 0},
  {2, 2, 1024, 128, 128, SR_BF16, 2},
};
#define FLEXA_N (big ? (int)(sizeof FLEXA / sizeof FLEXA[0]) : 2)

static void flex_attention_cases(int bw) {
  for (int ci = 0; ci < FLEXA_N; ci++)
    for (int ki = 0; ki < FLEX_NKINDS; ki++) {
      int m = mark();
      const flex_att *a = &FLEXA[ci];
      flex_shape fs = {a->T, a->block};
      int kind = FLEX_KINDS[ki];
      sr_kcall b = flex_mask_call(&fs, kind);
      ref_run(SR_K_flex_block_mask, &b);
      att_shape as = {a->B, a->H, a->T, a->D, a->dt, a->fused};
      sr_tensor *q = rnd(att_new(&as, 0), -1, 1), *k = rnd(att_new(&as, 1), -1, 1), *v = rnd(att_new(&as, 2), -1, 1);
      sr_tensor *o = poison(att_new(&as, 1)), *lse = poison(tnew(SR_F32, 3, (int64_t[]){a->B, a->H, a->T}));
      sr_kcall f = KC(o, lse, q, k, v, b.t[0], b.t[3]);
      f.f[0] = ci & 1 ? 0.12 : 1.0 / sqrt((double)a->D);
      f.i[0] = kind & 1;
      f.i[1] = b.i[1];
      f.i[2] = (kind & 2) != 0;
      int bf = a->dt == SR_BF16;
      if (!bw) {
        check(SR_K_flex_attention, &f, (opt){.t32 = bf ? 1e-3 : 2e-5, .contig_ref = a->fused},
              "%s B=%lld H=%lld T=%lld D=%lld block=%lld kind=%d window=%lld%s", dn(a->dt), (long long)a->B, (long long)a->H,
              (long long)a->T, (long long)a->D, (long long)a->block, kind, (long long)b.i[1], a->fused ? " strided" : "");
      } else {
        ref_run(SR_K_flex_attention, &f);
        att_shape gs = as;
        gs.fused = a->fused == 1;
        sr_tensor *dO = rnd(att_new(&gs, 2), -1, 1);
        sr_tensor *dq = poison(att_new(&gs, 0)), *dk = poison(att_new(&gs, 1)), *dv = poison(att_new(&gs, 2));
        sr_kcall c = KC(dq, dk, dv, dO, q, k, v, o, lse, b.t[0], b.t[3]);
        c.f[0] = f.f[0];
        memcpy(c.i, f.i, sizeof c.i);
        check(SR_K_flex_attention_backward, &c, (opt){.t32 = 5e-5, .contig_ref = a->fused},
              "%s B=%lld H=%lld T=%lld D=%lld block=%lld kind=%d window=%lld%s", dn(a->dt), (long long)a->B, (long long)a->H,
              (long long)a->T, (long long)a->D, (long long)a->block, kind, (long long)b.i[1],
              a->fused == 2 ? " strided q/k/v, dO and gradients contiguous" : a->fused ? " strided" : "");
      }
      release_to(m);
    }
}
static void cases_flex_attention(void) { flex_attention_cases(0); }
static void cases_flex_attention_backward(void) { flex_attention_cases(1); }

/* ---------------------------------------------------------------- optimizer rows */

static const double ADAM_F[5] = {1e-2, 0.9, 0.95, 1e-8, 0.1};

/* m takes g's sign: m' = b1 m + (1 - b1) g then cannot cancel, so the normwise error of m'
** measures the kernel's arithmetic (with cancellation a one-element m' can lose every digit in
** float, on any correct kernel) */
static sr_tensor *same_sign(sr_tensor *m, const sr_tensor *g) {
  for (int64_t i = 0; i < sr_numel(m); i++) {
    double gi = sr_load(g->storage->data, g->dtype, sr_offset_of(g, i));
    double mi = sr_load(m->storage->data, m->dtype, sr_offset_of(m, i));
    set1(m, i, gi < 0 ? -fabs(mi) : fabs(mi));
  }
  return m;
}

/* f32 states: 1e-6. bf16 states: the reference rounds its double m, v to bf16, the device its fp32
** ones; at a near-tie they round one bf16 step (2^-8 of m) apart and the parameter moves by that
** much of lr * update differently (8.4e-6 measured on an H200, 70 parameters): 5e-5 */
#define ADAM_TOL(sd) ((sd) == SR_BF16 ? 5e-5 : 1e-6)

static void cases_adamw(void) {
  const int64_t sizes[] = {1, 1003, 4096 * 3};
  for (int si = 0; si < 3; si++)
    for (int pd = 0; pd < 2; pd++)
      for (int gd = 0; gd < 2; gd++)
        for (int sd = 0; sd < 2; sd++)  /* m, v f32 or bf16 */
          for (int sched = 0; sched < 2; sched++) {
            int m = mark();
            int64_t n = sizes[si];
            sr_tensor *p = rnd(tnew(FLOATS[pd], 1, &n), -1, 1), *g = rnd(tnew(FLOATS[gd], 1, &n), -1, 1);
            sr_tensor *mm = same_sign(rnd(tnew(FLOATS[sd], 1, &n), -0.1, 0.1), g), *v = rnd(tnew(FLOATS[sd], 1, &n), 0, 0.01);
            sr_tensor *s = NULL;
            if (sched) {
              s = tnew(SR_F32, 1, (int64_t[]){2});
              set1(s, 0, 0.02);
              set1(s, 1, 5);
            }
            sr_kcall c = KC(p, g, mm, v, s);
            memcpy(c.f, ADAM_F, sizeof ADAM_F);
            c.i[0] = 3;
            check(SR_K_adamw, &c, (opt){.t32 = ADAM_TOL(FLOATS[sd])}, "param %s grad %s state %s n=%lld%s", dn(FLOATS[pd]), dn(FLOATS[gd]),
                  dn(FLOATS[sd]), (long long)n, sched ? " sched" : "");
            release_to(m);
          }
}

/* a parameter's values: in [-1, 1]; or (scalar cases) of magnitude [0.5, 1], either sign */
static sr_tensor *adam_param(sr_tensor *p, int scalar) {
  if (!scalar) return rnd(p, -1, 1);
  for (int64_t i = 0; i < sr_numel(p); i++) set1(p, i, (urand() < 0.5 ? -1 : 1) * (0.5 + 0.5 * urand()));
  return p;
}

/* one adamw_multi case: np parameters of sizes base[k % nbase] (parameter 3 at an odd offset: the
** scalar path of an f32 chunk), param/grad/state dtypes pd/gd/sd; against the reference, and bit
** for bit against adamw per parameter on the device. scalar: tensors of one or two elements, whose
** normwise error is an element's: v in [1e-3, 1e-2] (|m / sqrt v| under ~8, the step well under 0.5) and
** |p| >= 0.5, so p - step cannot cancel (with v near 0 and p near the step, an f32 parameter lost
** digits on a correct kernel: rel 1.01e-6, one case in 20,369 checks on an H100, 2026-12-07) */
enum { ADAM_MAXP = 200 };
static void adamw_multi_case(int pd, int gd, int sd, int sched, int np, const int64_t *base, int nbase, int scalar,
                             const char *what) {
  int mk = mark();
  sr_tensor *list[4 * ADAM_MAXP];
  for (int k = 0; k < np; k++) {
    int64_t n = base[k % nbase];
    list[4 * k] = adam_param(k == 3 ? tview(FLOATS[pd], n + 1, 1, &n, (int64_t[]){1}, 1) : tnew(FLOATS[pd], 1, &n), scalar);
    list[4 * k + 1] = rnd(tnew(FLOATS[gd], 1, &n), -1, 1);
    list[4 * k + 2] = same_sign(rnd(tnew(FLOATS[sd], 1, &n), -0.1, 0.1), list[4 * k + 1]);
    list[4 * k + 3] = rnd(tnew(FLOATS[sd], 1, &n), scalar ? 1e-3 : 0, 0.01);
  }
  sr_tensor *s = NULL;
  if (sched) {
    s = tnew(SR_F32, 1, (int64_t[]){2});
    set1(s, 0, 0.02);
    set1(s, 1, 2);
  }
  sr_kcall c = {.t = {s}, .nt = 1, .i = {4}, .list = list, .nlist = 4 * np};
  memcpy(c.f, ADAM_F, sizeof ADAM_F);
  /* on the device: the multi launch on one copy, adamw per parameter on another */
  mirror ma = {.n = 0}, mb = {.n = 0};
  sr_tensor *la[4 * ADAM_MAXP];
  sr_kcall da = mirror_call(&ma, &c, la);
  const char *e = run_dev(SR_K_adamw_multi, &da);
  int same = !e;
  for (int k = 0; k < np && same; k++) {
    sr_kcall one = KC(mir(&mb, list[4 * k]), mir(&mb, list[4 * k + 1]), mir(&mb, list[4 * k + 2]),
                      mir(&mb, list[4 * k + 3]), mir(&mb, s));
    memcpy(one.f, c.f, sizeof c.f);
    one.i[0] = c.i[0];
    e = run_dev(SR_K_adamw, &one);
    same = !e;
    for (int j = 0; j < 4 && same; j++) same = same_bits(la[4 * k + j], one.t[j]);
    for (int j = 0; j < 5; j++) sr_tensor_release(one.t[j]);
  }
  checks++;
  if (!same) fail_line("adamw_multi param %s grad %s state %s sched=%d %s: not adamw's bits%s%s", dn(FLOATS[pd]),
                       dn(FLOATS[gd]), dn(FLOATS[sd]), sched, what, e ? ": " : "", e ? e : "");
  call_free(&da, la);
  mirror_free(&ma);
  mirror_free(&mb);
  check(SR_K_adamw_multi, &c, (opt){.t32 = ADAM_TOL(FLOATS[sd])}, "param %s grad %s state %s %s%s", dn(FLOATS[pd]), dn(FLOATS[gd]),
        dn(FLOATS[sd]), what, sched ? " sched" : "");
  release_to(mk);
}

/* 70 parameters of mixed sizes (two launches of 64), every param/grad/state dtype triple, with and
** without sched; and 150 scalar parameters (1 or 2 elements: the lambdas and skip weights of
** records 9-11, three launches of 64 instead of 150) in f32 and in bf16 with bf16 state (record 10) */
static void cases_adamw_multi(void) {
  const int64_t base[6] = {1, 7, 1003, 16384 * 2 + 5, 4096, 3}, scalars[3] = {1, 2, 1};
  for (int pd = 0; pd < 2; pd++)
    for (int gd = 0; gd < 2; gd++)
      for (int sd = 0; sd < 2; sd++)
        for (int sched = 0; sched < 2; sched++) adamw_multi_case(pd, gd, sd, sched, 70, base, 6, 0, "(70 params)");
  for (int d = 0; d < 2; d++)
    for (int sched = 0; sched < 2; sched++) adamw_multi_case(d, d, d, sched, 150, scalars, 3, 1, "(150 scalar params)");
}

/* the sum-of-squares list: 170 tensors (two launches of 160), f32 and bf16 mixed, or f64 */
enum { NX = 170 };
static void sumsq_list(sr_tensor **list, int f64, int nx) {
  const int64_t base[5] = {1, 7, 1003, 16384 * 3 + 1, 64};
  for (int k = 0; k < nx; k++) {
    int64_t n = base[k % 5];
    list[k] = rnd(tnew(f64 ? SR_F64 : k % 2 ? SR_BF16 : SR_F32, 1, &n), -1, 1);
  }
}

static void cases_sumsq_multi(void) {
  for (int f64 = 0; f64 < (DEV == SR_CPU ? 2 : 1); f64++)  /* f64: the CPU only */
    for (int nx = 1; nx <= NX; nx += NX - 1) {
      int m = mark();
      sr_tensor *list[NX];
      sumsq_list(list, f64, nx);
      sr_tensor *ss = poison(tnew(f64 ? SR_F64 : SR_F32, 1, (int64_t[]){1}));
      sr_kcall c = {.t = {ss}, .nt = 1, .list = list, .nlist = nx};
      check(SR_K_sumsq_multi, &c, (opt){.t32 = 1e-5, .rerun = 1}, "%d tensors %s", nx, f64 ? "f64" : "f32 and bf16");
      release_to(m);
    }
}

static void cases_clip_multi(void) {
  const double limits[3] = {1.0, 30.0, 1e9};  /* 1e9: under the limit, nothing changes */
  for (int li = 0; li < 3; li++) {
    int m = mark();
    sr_tensor *list[NX];
    sumsq_list(list, 0, NX);
    sr_tensor *ss = tnew(SR_F32, 1, (int64_t[]){1});
    sr_kcall s = {.t = {ss}, .nt = 1, .list = list, .nlist = NX};
    ref_run(SR_K_sumsq_multi, &s);  /* the sum of squares from the reference */
    sr_kcall c = {.t = {ss}, .nt = 1, .f = {limits[li], 1e-6}, .list = list, .nlist = NX};
    check(SR_K_clip_multi, &c, (opt){.t32 = 1e-6}, "170 tensors f32 and bf16, max norm %g", limits[li]);
    release_to(m);
  }
}

/* ---------------------------------------------------------------- float8 */

/* a float8 CPU tensor of nel elements, zero bytes, as a view (fill has no float8 path) */
static sr_tensor *tview8(sr_dtype dt, int64_t nel, int nd, const int64_t *sh, const int64_t *st) {
  sr_tensor *base = sr_tensor_new(dt, SR_CPU, 1, &nel);
  memset(base->storage->data, 0, base->storage->nbytes);
  sr_tensor *v = sr_as_strided(base, nd, sh, st, 0);
  sr_tensor_release(base);
  return keep(v);
}

static void cases_to_fp8_paths(void);

/* x f32/bf16 (contiguous or transposed) -> e4m3/e5m2, saturating or not; values spread over the
** format's whole range at each scale (subnormals, ties, saturation); every bit must match */
static void cases_to_fp8(void) {
  const int64_t shp[3][2] = {{7, 13}, {64, 96}, {300, 1000}};
  const double scales[3] = {1.0, 32.0, 1.0 / 1024};
  for (int si = 0; si < (big ? 3 : 2); si++)
    for (int xd = 0; xd < 2; xd++)
      for (int e5 = 0; e5 < 2; e5++)
        for (int sat = 0; sat < 2; sat++)
          for (int lay = 0; lay < 2; lay++)
            for (int sc = 0; sc < 3; sc++) {
              int m = mark();
              sr_dtype dt = e5 ? SR_F8E5M2 : SR_F8E4M3;
              double top = (e5 ? 57344.0 : 448.0) / scales[sc] * (sat ? 1.5 : 0.99);
              sr_tensor *x = rnd(tlay(lay, FLOATS[xd], 2, shp[si]), -top, top), *o = poison(tview8(dt, shp[si][0] * shp[si][1], 2, shp[si], (int64_t[]){shp[si][1], 1}));
              /* a few values near the bottom of the range (subnormals, the half-smallest tie) */
              for (int64_t i = 0; i < sr_numel(x) && i < 64; i++)
                set1(x, i, (double)(i - 32) * (e5 ? 0x1p-18 : 0x1p-11) / scales[sc]);
              sr_kcall c = KC(o, x);
              c.f[0] = scales[sc];
              c.i[0] = sat;
              check(SR_K_to_fp8, &c, (opt){.exact = 1}, "%s->%s [%lld,%lld] %s scale %g%s", dn(FLOATS[xd]), dn(dt),
                    (long long)shp[si][0], (long long)shp[si][1], layname(lay), scales[sc], sat ? " saturating" : "");
              release_to(m);
            }
  cases_to_fp8_paths();
}

/* ---- to_fp8 by layout: each launcher path (kernels/fp8.cu) at odd sizes, with NaN (both signs),
** +-inf, +-0, f32 subnormals, ties and the overflow thresholds scattered over the tensor; compared
** byte for byte (NaN and infinity included, which check()'s relative error cannot) */

/* writes f32 bits u into element i of x (bf16: the upper half) */
static void set_bits(sr_tensor *x, int64_t i, uint32_t u) {
  int64_t o = sr_offset_of(x, i);
  if (x->dtype == SR_F32) memcpy((char *)x->storage->data + 4 * o, &u, 4);
  else { uint16_t h = (uint16_t)(u >> 16); memcpy((char *)x->storage->data + 2 * o, &h, 2); }
}

/* runs c on DEV and the CPU; out's bytes must be equal */
static void fp8_bytes_case(const sr_kcall *c, const char *fmt, ...) {
  char name[256], ed[512];
  int n0 = snprintf(name, sizeof name, "to_fp8 ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name + n0, sizeof name - (size_t)n0, fmt, ap);
  va_end(ap);
  ncases++;
  row_cases[SR_K_to_fp8]++;
  checks++;
  mirror m = {.n = 0};
  sr_tensor *dl[1];
  sr_kcall d = mirror_call(&m, c, dl);
  const char *e = run_dev(SR_K_to_fp8, &d);
  snprintf(ed, sizeof ed, "%s", e ? e : "");
  const char *er = sr_kernels[SR_K_to_fp8].cpu(c);
  if (e || er) fail_line("%s: kernel error: %s / reference: %s", name, e ? ed : "none", er ? er : "none");
  else {
    sr_tensor *h = fetch(d.t[0]);
    const sr_tensor *o = c->t[0];
    int64_t bad = -1, n = sr_numel(o);
    for (int64_t i = 0; i < n && bad < 0; i++)
      if (((uint8_t *)h->storage->data)[sr_offset_of(o, i)] != ((uint8_t *)o->storage->data)[sr_offset_of(o, i)]) bad = i;
    if (bad >= 0)
      fail_line("%s: bytes differ, first at element %lld: x %.9g -> 0x%02x, reference 0x%02x", name, (long long)bad,
                sr_load(c->t[1]->storage->data, c->t[1]->dtype, sr_offset_of(c->t[1], bad)),
                ((uint8_t *)h->storage->data)[sr_offset_of(o, bad)], ((uint8_t *)o->storage->data)[sr_offset_of(o, bad)]);
    else if (verbose) printf("ok   %s\n", name);
    sr_tensor_release(h);
  }
  call_free(&d, dl);
  mirror_free(&m);
}

/* x [R,C] (B > 1: [B,R,C]) in layout lay: 0 contiguous (the vectorised path), 1 the transpose of a
** row-major [C,R] (tiled), 2 contiguous from element 1 (unaligned: the generic path), 3 transposed
** with row stride R + 3 from element 1 (tiled, unaligned loads), 4 strided columns (generic) */
static sr_tensor *fp8_x(int lay, sr_dtype dt, int64_t B, int64_t R, int64_t C) {
  int nd = B > 1 ? 3 : 2;
  int64_t sh[3] = {B, R, C}, *s = sh + 3 - nd, st[3];
  int64_t ld = lay == 3 ? R + 3 : R, n;
  if (lay == 0 || lay == 2) { st[2] = 1; st[1] = C; st[0] = R * C; n = B * R * C; }
  else if (lay == 4) { st[2] = 2; st[1] = 2 * C + 1; st[0] = R * (2 * C + 1); n = B * R * (2 * C + 1); }
  else { st[2] = ld; st[1] = 1; st[0] = C * ld; n = B * C * ld; }
  int off = lay == 2 || lay == 3;
  return tview(dt, n + off, nd, s, st + 3 - nd, off);
}

static void cases_to_fp8_paths(void) {
  const int64_t shp[6][3] = {{1, 1, 1}, {1, 7, 13}, {1, 129, 67}, {3, 67, 129}, {1, 1000, 1025}, {2, 256, 1000}};
  const char *lays[5] = {"contig", "transposed", "unaligned", "transposed ld+3 unaligned", "strided"};
  const double scales[3] = {1.0, 1.0 / 1024, 1.0 / 3};
  for (int si = 0; si < (big ? 6 : 4); si++)
    for (int lay = 0; lay < 5; lay++)
      for (int xd = 0; xd < 2; xd++)
        for (int e5 = 0; e5 < 2; e5++)
          for (int sat = 0; sat < 2; sat++) {
            int m = mark(), sc = (si + lay + xd + e5 + sat) % 3;
            int64_t B = shp[si][0], R = shp[si][1], C = shp[si][2], n = B * R * C;
            sr_dtype dt = e5 ? SR_F8E5M2 : SR_F8E4M3;
            double top = (e5 ? 57344.0 : 448.0) / scales[sc] * 1.5;
            sr_tensor *x = rnd(fp8_x(lay, FLOATS[xd], B, R, C), -top, top);
            /* specials at scattered elements: NaN, -NaN, a NaN payload, +-inf, +-0, f32 subnormals */
            const uint32_t bits[9] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f800000u, 0xff800000u, 0, 0x80000000u,
                                      0x00000001u, 0x807fffffu};
            /* ties and thresholds before the scale: e4m3 464 (-> 448), 465 (overflow), 1.0625, 1.1875,
            ** 1.5 * 2^-9 (a subnormal tie); e5m2 57344, 61440 (overflow), 1.125, 1.375, 1.5 * 2^-16 */
            const double vals[2][6] = {{464, -465, 1.0625, 1.1875, 0x1.8p-9, -0x1p-10},
                                       {57344, -61440, 1.125, 1.375, 0x1.8p-16, -0x1p-17}};
            for (int k = 0; k < 15 && k < n; k++) {
              int64_t i = (k * 7919 + 3 * k * k) % n;
              if (k < 9) set_bits(x, i, bits[k]);
              else set1(x, i, vals[e5][k - 9] / scales[sc]);
            }
            sr_tensor *o = poison(tview8(dt, n, B > 1 ? 3 : 2, B > 1 ? shp[si] : shp[si] + 1,
                                         B > 1 ? (int64_t[]){R * C, C, 1} : (int64_t[]){C, 1}));
            sr_kcall c = KC(o, x);
            c.f[0] = scales[sc];
            c.i[0] = sat;
            fp8_bytes_case(&c, "%s->%s [%lld,%lld,%lld] %s scale %g%s", dn(FLOATS[xd]), dn(dt), (long long)B,
                           (long long)R, (long long)C, lays[lay], scales[sc], sat ? " saturating" : "");
            release_to(m);
          }
  if (!big) return;
  /* GPU only: 2^24 f32 bit patterns (every sign, exponent and top 15 mantissa bits; the low byte
  ** 0 for even i, so every tie of both formats is there, else mixed), contiguous and transposed */
  for (int lay = 0; lay < 2; lay++)
    for (int e5 = 0; e5 < 2; e5++)
      for (int sat = 0; sat < 2; sat++) {
        int m = mark();
        int64_t R = 4096, C = 4096, n = R * C;
        sr_tensor *x = fp8_x(lay, SR_F32, 1, R, C);
        for (int64_t i = 0; i < n; i++)
          set_bits(x, i, (uint32_t)i << 8 | (i & 1 ? (uint32_t)((uint64_t)i * 0x9E3779B97F4A7C15ull >> 56) : 0));
        sr_dtype dt = e5 ? SR_F8E5M2 : SR_F8E4M3;
        sr_tensor *o = poison(tview8(dt, n, 2, (int64_t[]){R, C}, (int64_t[]){C, 1}));
        sr_kcall c = KC(o, x);
        c.f[0] = 1;
        c.i[0] = sat;
        fp8_bytes_case(&c, "f32->%s every 2^24 bit prefix %s%s", dn(dt), lay ? "transposed" : "contig",
                       sat ? " saturating" : "");
        release_to(m);
      }
}

/* a [M,K] row-major (row stride lda), b [K,N] column-major (column stride ldb); e4m3 x e4m3, e5m2
** x e4m3, e4m3 x e5m2; out bf16 / f32; scales as numbers or one-element tensors; fast accum */
static void cases_scaled_mm(void) {
  const int64_t sh[5][3] = {{7, 32, 16}, {33, 64, 48}, {128, 256, 512}, {1000, 768, 2048}, {256, 4096, 304}};
  const sr_dtype pairs[3][2] = {{SR_F8E4M3, SR_F8E4M3}, {SR_F8E5M2, SR_F8E4M3}, {SR_F8E4M3, SR_F8E5M2}};
  for (int si = 0; si < (big ? 5 : 2); si++)
    for (int pr = 0; pr < 3; pr++)
      for (int od = 0; od < 2; od++)
        for (int var = 0; var < 3; var++) {  /* 0: numbers; 1: tensors, padded rows; 2: fast accumulation */
          int m = mark();
          int64_t M = sh[si][0], K = sh[si][1], N = sh[si][2], lda = K + (var == 1 ? 16 : 0), ldb = K + (var == 1 ? 32 : 0);
          sr_tensor *a = tview8(pairs[pr][0], M * lda, 2, (int64_t[]){M, K}, (int64_t[]){lda, 1});
          sr_tensor *b = tview8(pairs[pr][1], N * ldb, 2, (int64_t[]){K, N}, (int64_t[]){1, ldb});
          rnd(a, -6, 6);
          rnd(b, -6, 6);
          sr_dtype odt = od ? SR_F32 : SR_BF16;
          sr_tensor *o = poison(tnew(odt, 2, (int64_t[]){M, N})), *sa = NULL, *sb = NULL;
          if (var == 1) {
            sa = tnew(SR_F32, 1, (int64_t[]){1});
            sb = tnew(SR_F32, 1, (int64_t[]){1});
            set1(sa, 0, 0.5);
            set1(sb, 0, 1.0 / 32);
          }
          sr_kcall c = KC(o, a, b, sa, sb);
          c.f[0] = 0.5;
          c.f[1] = 1.0 / 512;
          c.i[0] = var == 2;
          /* Hopper's FP8 MMA adds in reduced precision between promotions to fp32 (cuBLASLt promotes
          ** often unless fast accumulation is on), so f32 out gets 3e-4 (1.08e-4 measured on an H200 at
          ** K 4096) and fast accumulation 1e-2 */
          check(SR_K_scaled_mm, &c, (opt){.t32 = var == 2 ? 1e-2 : 3e-4, .t16 = 1e-2},
                "%s x %s -> %s [%lld,%lld]x[%lld,%lld]%s", dn(pairs[pr][0]), dn(pairs[pr][1]), dn(odt), (long long)M,
                (long long)K, (long long)K, (long long)N,
                var == 1 ? " tensor scales, padded ld" : var == 2 ? " fast accum" : "");
          release_to(m);
        }
}

/* ---------------------------------------------------------------- the table */

#define SR_X(n, doc) static void cases_##n(void);
SR_KERNELS(SR_X)
#undef SR_X
/* one generator per registry row: a row without one is an undefined function (the build fails) */
static void (*const cases[SR_KERNEL_COUNT])(void) = {
#define SR_X(n, doc) [SR_K_##n] = cases_##n,
  SR_KERNELS(SR_X)
#undef SR_X
};

/* ---------------------------------------------------------------- backend (GPU only) */

#ifdef SPEEDRUN_CUDA
static void test_backend(void) {
  /* steady state: the same sequence of sizes allocates nothing new from the driver */
  size_t sizes[] = {1000, 4 << 20, 123457, 64, 50 << 20};
  for (int it = 0; it < 3; it++) {
    void *p[5];
    for (int k = 0; k < 5; k++) p[k] = sr_cuda_malloc(sizes[k]);
    for (int k = 0; k < 5; k++) sr_cuda_free(p[k]);
  }
  int64_t before = sr_cuda_driver_allocs();
  for (int it = 0; it < 10; it++) {
    void *p[5];
    for (int k = 0; k < 5; k++) p[k] = sr_cuda_malloc(sizes[k]);
    for (int k = 4; k >= 0; k--) sr_cuda_free(p[k]);
  }
  checks++;
  if (sr_cuda_driver_allocs() != before)
    fail_line("allocator: steady state made %lld driver allocations", (long long)(sr_cuda_driver_allocs() - before));
  printf("allocator: %lld driver allocations, current %zu B, peak %zu B, reserved %zu B\n",
         (long long)sr_cuda_driver_allocs(), sr_cuda_current_bytes(), sr_cuda_peak_bytes(), sr_cuda_reserved_bytes());

  /* graph: o = gelu(a @ b) + a @ b, with a scratch tensor allocated inside the capture; three
  ** replays give eager's bits */
  int m = mark();
  int64_t ash[3] = {1, 64, 96}, bsh[3] = {1, 96, 80}, osh[3] = {1, 64, 80};
  mirror mm = {.n = 0};
  sr_tensor *a = mir(&mm, rnd(tnew(SR_BF16, 3, ash), -1, 1)), *b = mir(&mm, rnd(tnew(SR_BF16, 3, bsh), -1, 1));
  sr_tensor *o = mir(&mm, poison(tnew(SR_BF16, 3, osh))), *eager = mir(&mm, poison(tnew(SR_BF16, 3, osh)));
  sr_cuda_graph *g = NULL;
  for (int pass = 0; pass < 2; pass++) {
    const char *e = pass ? sr_cuda_graph_begin() : NULL;
    if (e) { fail_line("graph begin: %s", e); break; }
    sr_tensor *out = pass ? o : eager;
    sr_tensor *mmul = sr_tensor_new(SR_BF16, SR_CUDA, 3, osh);  /* inside the capture: from the graph's pool */
    sr_kcall c = KC(mmul, a, b);
    c.f[0] = 1;
    e = sr_cuda_gemm(&c);
    sr_kcall u = KC(out, mmul);
    u.i[0] = SR_UNARY_GELU_TANH;
    if (!e) e = sr_cuda_unary(&u);
    sr_kcall ad = KC(out, out, mmul);
    ad.i[0] = SR_BINARY_ADD;
    if (!e) e = sr_cuda_binary(&ad);
    sr_tensor_release(mmul);
    if (e) fail_line("graph pass %d: %s", pass, e);
    if (pass == 1) {
      e = sr_cuda_graph_end(&g);
      if (e) { fail_line("graph end: %s", e); break; }
      for (int r = 0; r < 3 && !e; r++) e = sr_cuda_graph_replay(g);
      if (!e) e = sr_cuda_sync();
      checks++;
      if (e) fail_line("graph replay: %s", e);
      else if (!same_bits(o, eager)) fail_line("cuda graph replay != eager");
      else if (verbose) printf("ok   cuda graph replay == eager\n");
      sr_cuda_graph_free(g);
    }
  }
  sr_tensor_release(a); sr_tensor_release(b); sr_tensor_release(o); sr_tensor_release(eager);
  mirror_free(&mm);
  release_to(m);
}
#endif

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
  verbose = getenv("SR_TEST_VERBOSE") && strcmp(getenv("SR_TEST_VERBOSE"), "0");
  const char *want = getenv("SR_TEST_DEVICE");
  const char *why = "built without the CUDA backend";
#ifdef SPEEDRUN_CUDA
  if (!want || strcmp(want, "cpu")) {
    sr_cuda_init();
    why = sr_cuda_probe();
  }
#endif
  if (want && !strcmp(want, "cpu")) why = "SR_TEST_DEVICE=cpu";
  if (want && !strcmp(want, "cuda") && why) {
    printf("FAIL SR_TEST_DEVICE=cuda but no usable GPU: %s\n", why);
    return 1;
  }
  DEV = why ? SR_CPU : SR_CUDA;
  big = DEV == SR_CUDA;
  if (why) printf("dry run (the CPU reference on both sides, small shapes): %s\n", why);

  int sel[SR_KERNEL_COUNT + 1], any = argc > 1;
  for (int id = 0; id <= SR_KERNEL_COUNT; id++) sel[id] = !any;
  for (int a = 1; a < argc; a++) {
    int found = !strcmp(argv[a], "backend");
    if (found) sel[SR_KERNEL_COUNT] = 1;
    for (int id = 0; id < SR_KERNEL_COUNT; id++)
      if (!strcmp(argv[a], sr_kernels[id].name)) sel[id] = found = 1;
    if (!found) {
      printf("unknown row '%s'; the rows:", argv[a]);
      for (int id = 0; id < SR_KERNEL_COUNT; id++) printf(" %s", sr_kernels[id].name);
      printf(" (and backend, GPU only)\n");
      return 2;
    }
  }

  int rows = 0;
  for (int id = 0; id < SR_KERNEL_COUNT; id++) {
    if (!sel[id]) continue;
    rows++;
    int f0 = failures, c0 = checks;
    row_seed(sr_kernels[id].name);
    if (DEV == SR_CUDA && !sr_kernels[id].cuda) fail_line("%s: the registry row has no CUDA launcher", sr_kernels[id].name);
    else cases[id]();
    /* coverage: every row has cases; the function rows have a case for every function */
    if (!row_cases[id])
      fail_line("%s: no test cases (every registry row needs cases: cases_%s in tests/cuda/test_gpu_registry.c)",
                sr_kernels[id].name, sr_kernels[id].name);
    int nfn = id == SR_K_unary || id == SR_K_unary_backward ? SR_UNARY_COUNT
            : id == SR_K_binary ? SR_BINARY_COUNT : id == SR_K_reduce ? SR_REDUCE_COUNT : 0;
    for (int fn = 0; fn < nfn; fn++)
      if (!fn_seen[id][fn])
        fail_line("%s: no test case for function %s", sr_kernels[id].name,
                  id == SR_K_binary ? binary_names[fn] : id == SR_K_reduce ? reduce_names[fn] : unary_names[fn]);
    printf("== %-24s %4d cases %5d checks, %d failed\n", sr_kernels[id].name, row_cases[id], checks - c0, failures - f0);
    fflush(stdout);
  }
#ifdef SPEEDRUN_CUDA
  if (sel[SR_KERNEL_COUNT] && DEV == SR_CUDA) {
    int f0 = failures, c0 = checks;
    row_seed("backend");
    test_backend();
    printf("== %-24s %5d checks, %d failed\n", "backend", checks - c0, failures - f0);
  }
#endif
  release_to(0);
  free(pool);
  printf("%d rows, %d cases, %d checks, %d failed (%s)\n", rows, ncases, checks, failures,
         DEV == SR_CUDA ? "cuda against the CPU reference" : "dry run: CPU against CPU");
  return failures ? 1 : 0;
}
