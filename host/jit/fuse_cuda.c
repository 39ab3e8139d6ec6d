/*
** jit/fuse_cuda.c: the step compiler's CUDA runner (core/fuse.h): one generated kernel per fused
** element-wise group, compiled with NVRTC (--use_fast_math, as the built-in kernels) through the agent
** kernels' compiler and disk cache (host/jit/compile.c), loaded once per process.
**
** The source depends on the group's structure only (ops, functions, dtypes, which value each
** store takes), never on addresses, shapes or scalars: those travel in one kernel argument
** (struct sr_fuse_kargs, by value), so one compile serves every group of that structure. Two entry
** points: sr_fuse_vec (every operand contiguous or a broadcast scalar, 16-byte aligned, f32/bf16:
** 8 elements per thread, 16-byte accesses) and sr_fuse_strided (any strides, dims merged as
** kernels/common.cuh's sr_ew_make does). Values are computed in f32 by the formulas of
** kernels/include/speedrun_ew.cuh (those of kernels/elementwise.cu) and rounded to their dtype
** after every op, as the unfused kernels store them.
** A loss group (a chain into an in-place cross_entropy, core/fuse.h 4.) gets the three functions
** the row driver of kernels/include/speedrun_xent.cuh calls (values of N elements, the epilogue on
** the gradient, the live stores) and an entry with the threads a row the unfused cross-entropy
** uses (sr_xent_512 or sr_xent_1024), launched one block per row.
*/
#include <stdarg.h>      /* defines: va_list */
#include <stdio.h>       /* defines: snprintf, vsnprintf */
#include <stdlib.h>      /* defines: malloc, realloc, free, getenv */
#include <string.h>      /* defines: strcmp, strncmp, memcpy */
#include <stdint.h>      /* defines: uintptr_t */

#include "core/fuse.h"   /* defines: sr_fuse_group, sr_fuse_run_cuda */
#include "jit/jit.h"     /* defines: sr_jit_compile, sr_jit_load, sr_jit_launch_kernel */
#ifdef SPEEDRUN_CUDA
#include "cuda/backend.h" /* defines: sr_cuda_dev_error_ptr, sr_cuda_xent_threads */
#endif

/* the kernel argument; the generated struct below has the same layout */
typedef struct sr_fuse_kargs {
  int64_t n;
  int64_t shape[SR_MAXDIM];
  int64_t stride[SR_FUSE_MAXIO][SR_MAXDIM];
  void *ptr[SR_FUSE_MAXIO];
  float p[SR_FUSE_MAXOPS];
  int32_t ndim, pad;
} sr_fuse_kargs;

/* a loss group's kernel argument: struct sr_xent_kargs of kernels/include/speedrun_xent.cuh */
typedef struct sr_xent_kargs {
  int64_t N, V;
  void *ptr[32];
  int64_t bcast;
  float p[16], q[16];
  float *losses, *lse;
  const int32_t *targets;
  void *logits;
  const float *dscale;
  void *err;
  int32_t ignore, pad;
} sr_xent_kargs;
_Static_assert(SR_FUSE_MAXIO <= 16 && SR_FUSE_MAXOPS <= 16, "sr_xent_kargs holds 16 pointers and scalars");

/* ------------------------------------------------------------------------------------------
** source generation */

typedef struct sbuf { char *s; size_t n, cap; } sbuf;

static void put(sbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    b->cap = b->cap * 2 + (size_t)k + 256;
    b->s = realloc(b->s, b->cap);
    if (!b->s) sr_fail("fuse: out of host memory generating a kernel");
  }
}

static const char *ctype(int dt) { return dt == SR_BF16 ? "__nv_bfloat16" : dt == SR_I32 ? "int" : "float"; }

static void load_expr(sbuf *b, int dt, int k, const char *off) {
  if (dt == SR_BF16) put(b, "__bfloat162float(((const __nv_bfloat16 *)a.ptr[%d])[%s])", k, off);
  else if (dt == SR_I32) put(b, "(float)((const int *)a.ptr[%d])[%s]", k, off);
  else put(b, "((const float *)a.ptr[%d])[%s]", k, off);
}

/* op's value, unrounded: its inputs as value(k) ("v%d", or "v[%d][e]" in a loss kernel), its
** scalar as scalar (e.g. "P[3]") */
static void gen_expr(sbuf *b, const sr_fuse_op *op, const char *value, const char *scalar) {
  const int *in = op->in;
  char x[3][32];
  for (int j = 0; j < 3; j++) snprintf(x[j], sizeof x[j], value, j < op->nin ? in[j] : 0);
  switch (op->kind) {
    case SR_K_fill: put(b, "%s", scalar); break;
    case SR_K_copy: put(b, "%s", x[0]); break;
    case SR_K_unary: put(b, "unary_f(%d, %s, %s)", op->fn, x[0], scalar); break;
    case SR_K_unary_backward: put(b, "%s * unary_df(%d, %s, %s)", x[0], op->fn, x[1], scalar); break;
    case SR_K_binary: put(b, "binary_f(%d, %s, %s)", op->fn, x[0], x[1]); break;
    default: put(b, "%s != 0.f ? %s : %s", x[0], x[1], x[2]); break;
  }
}

/* op's value rounded to its dtype, the statement's end */
static void gen_op(sbuf *b, const sr_fuse_op *op, const char *value, const char *scalar) {
  put(b, "%s(", op->dtype == SR_BF16 ? "sr_round_bf16" : "sr_ew_keep");
  gen_expr(b, op, value, scalar);
  put(b, ");  // %s\n", sr_kernels[op->kind].name);
}

/* the group's arithmetic: L[] the loaded values, S[] the values to store, P[] the scalars */
static void gen_body(sbuf *b, const sr_fuse_group *g) {
  put(b, "__device__ __forceinline__ void sr_fuse_body(const float *L, float *S, const float *P) {\n");
  for (int k = 0; k < g->nload; k++) put(b, "  float v%d = L[%d];\n", k, k);
  for (int m = 0; m < g->nop; m++) {
    char p[16];
    snprintf(p, sizeof p, "P[%d]", m);
    put(b, "  float v%d = ", g->nload + m);
    gen_op(b, &g->op[m], "v%d", p);
  }
  for (int k = g->nload; k < g->nio; k++) put(b, "  S[%d] = v%d;\n", k - g->nload, g->io[k].src);
  put(b, "}\n\n");
}

static void gen_strided(sbuf *b, const sr_fuse_group *g) {
  put(b, "extern \"C\" __global__ void __launch_bounds__(256) sr_fuse_strided(const sr_fuse_kargs a) {\n"
         "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < a.n;"
         " i += (long long)gridDim.x * blockDim.x) {\n"
         "    long long o[%d], r = i;\n"
         "    for (int j = 0; j < %d; j++) o[j] = 0;\n"
         "    for (int d = a.ndim - 1; d >= 0; d--) {\n"
         "      long long s = a.shape[d], q = r / s, x = r - q * s;\n"
         "      for (int j = 0; j < %d; j++) o[j] += x * a.stride[j][d];\n"
         "      r = q;\n"
         "    }\n"
         "    float L[%d], S[%d];\n", g->nio, g->nio, g->nio, g->nload ? g->nload : 1, g->nio - g->nload);
  for (int k = 0; k < g->nload; k++) {
    char off[16];
    snprintf(off, sizeof off, "o[%d]", k);
    put(b, "    L[%d] = ", k);
    load_expr(b, g->io[k].dtype, k, off);
    put(b, ";\n");
  }
  put(b, "    sr_fuse_body(L, S, a.p);\n");
  for (int k = g->nload; k < g->nio; k++)
    put(b, "    ((%s *)a.ptr[%d])[o[%d]] = %s(S[%d]);\n", ctype(g->io[k].dtype), k, k,
        g->io[k].dtype == SR_BF16 ? "__float2bfloat16" : "", k - g->nload);
  put(b, "  }\n}\n\n");
}

static int vec_ok(const sr_fuse_group *g) {
  for (int k = 0; k < g->nio; k++)
    if (g->io[k].dtype != SR_F32 && g->io[k].dtype != SR_BF16) return 0;
  return 1;
}

/* the kernels a group needs: element-wise, the strided one (variant 0) and the 8-wide one (1);
** a loss group, its forward with 512 and 1024 threads a row (0, 1) and a deferred one's backward (2) */
static int variants(const sr_fuse_group *g) { return g->xent ? (g->defer ? 3 : 2) : vec_ok(g) ? 2 : 1; }

/* a one-digit switch's value from lo to hi, else -1 (unset or any other value) */
static int xl_digit(const char *e, char lo, char hi) {
  return e && e[0] >= lo && e[0] <= hi && !e[1] ? e[0] - '0' : -1;
}

/* a loss kernel's ops op[0..n) into value slots first.., op by op over the N elements: an f32 op's
** values kept from contraction one by one, a bf16 op's rounded together (sr_round_bf16_n: in
** pairs by one packed conversion); scalars from the array sc (a.p or a.q) */
static void gen_xl_ops(sbuf *b, const sr_fuse_op *op, int n, int first, const char *sc) {
  for (int m = 0; m < n; m++) {
    char p[16];
    snprintf(p, sizeof p, "%s[%d]", sc, m);
    int bf = op[m].dtype == SR_BF16;
    put(b, "#pragma unroll\n  for (int e = 0; e < N; e++) v[%d][e] = %s", first + m, bf ? "" : "sr_ew_keep(");
    gen_expr(b, &op[m], "v[%d][e]", p);
    put(b, "%s;  // %s\n", bf ? "" : ")", sr_kernels[op[m].kind].name);
    if (bf) put(b, "  sr_round_bf16_n<N>(v[%d]);\n", first + m);
  }
}

static void gen_vec(sbuf *b, const sr_fuse_group *g) {
  int ns = g->nio - g->nload, nl = g->nload ? g->nload : 1;
  put(b, "extern \"C\" __global__ void __launch_bounds__(256) sr_fuse_vec(const sr_fuse_kargs a) {\n"
         "  long long n8 = a.n >> 3, t = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
         "  long long step = (long long)gridDim.x * blockDim.x;\n"
         "  for (long long i = t; i < n8; i += step) {\n"
         "    float L8[%d][8], S8[%d][8];\n", nl, ns);
  for (int k = 0; k < g->nload; k++) {
    put(b, "    if (a.stride[%d][0] == 0) { float s = ", k);
    load_expr(b, g->io[k].dtype, k, "0");
    put(b, "; for (int e = 0; e < 8; e++) L8[%d][e] = s; }\n"
           "    else ld8((const %s *)a.ptr[%d], i, L8[%d]);\n", k, ctype(g->io[k].dtype), k, k);
  }
  put(b, "#pragma unroll\n"
         "    for (int e = 0; e < 8; e++) {\n"
         "      float L[%d], S[%d];\n"
         "      for (int k = 0; k < %d; k++) L[k] = L8[k][e];\n"
         "      sr_fuse_body(L, S, a.p);\n"
         "      for (int k = 0; k < %d; k++) S8[k][e] = S[k];\n"
         "    }\n", nl, ns, g->nload, ns);
  for (int k = g->nload; k < g->nio; k++)
    put(b, "    st8((%s *)a.ptr[%d], i, S8[%d]);\n", ctype(g->io[k].dtype), k, k - g->nload);
  put(b, "  }\n"
         "  for (long long j = n8 * 8 + t; j < a.n; j += step) {  // the last n %% 8\n"
         "    float L[%d], S[%d];\n", nl, ns);
  for (int k = 0; k < g->nload; k++) {
    char off[32];
    snprintf(off, sizeof off, "a.stride[%d][0] ? j : 0", k);
    put(b, "    L[%d] = ", k);
    load_expr(b, g->io[k].dtype, k, off);
    put(b, ";\n");
  }
  put(b, "    sr_fuse_body(L, S, a.p);\n");
  for (int k = g->nload; k < g->nio; k++)
    put(b, "    ((%s *)a.ptr[%d])[j] = %s(S[%d]);\n", ctype(g->io[k].dtype), k,
        g->io[k].dtype == SR_BF16 ? "__float2bfloat16" : "", k - g->nload);
  put(b, "  }\n}\n");
}

/* a load of a loss kernel: value slot v of N elements from a.ptr[k] + i, or its one element */
static void gen_xl_load(sbuf *b, int k, int dt, int v) {
  put(b, "  if ((a.bcast >> %d) & 1) {\n    float s = ", k);
  load_expr(b, dt, k, "0");
  put(b, ";\n    for (int e = 0; e < N; e++) v[%d][e] = s;\n  } else {\n", v);
  if (dt == SR_I32) put(b, "    for (int e = 0; e < N; e++) v[%d][e] = (float)((const int *)a.ptr[%d])[i + e];\n", v, k);
  else put(b, "    sr_xl_ld<N>((const %s *)a.ptr[%d] + i, v[%d]);\n", ctype(dt), k, v);
  put(b, "  }\n");
}

/* a loss group's kernels (core/fuse.h, 4.): the functions the drivers of
** kernels/include/speedrun_xent.cuh call, and an entry: variant 0 and 1 the forward with 512 or
** 1024 threads a row (the unfused cross-entropy's), 2 a deferred group's backward */
static void gen_xent(sbuf *b, const sr_fuse_group *g, int variant) {
  int d = g->nload + g->nop, nepi = g->epi >= 0 ? g->nepi : 0, nfor = g->defer ? g->nfor : 0;
  const char *lt = ctype(g->op[g->lval - g->nload].dtype);
  put(b, "#define SR_XL_NV %d\n#define SR_XL_LVAL %d\n#define SR_XL_D %d\n#define SR_XL_OUT %d\n#define SR_XL_STORES %d\n"
         "#include \"speedrun_xent.cuh\"\n\n", d + 1 + nfor + nepi, g->lval, d, d + nfor + nepi, g->nio - g->nload);
  put(b, "template <int N> __device__ void sr_xl_vals(const sr_xent_kargs &a, long long i, float (*v)[N]) {\n");
  for (int k = 0; k < g->nload; k++) gen_xl_load(b, k, g->io[k].dtype, k);
  gen_xl_ops(b, g->op, g->nop, g->nload, "a.p");
  put(b, "}\n\ntemplate <int N> __device__ void sr_xl_epi(const sr_xent_kargs &a, long long i, float (*v)[N]) {\n");
  for (int f = 0; f < nfor; f++) gen_xl_load(b, g->nload + f, g->for_dtype[f], d + 1 + f);
  gen_xl_ops(b, g->epi_op, nepi, d + 1 + nfor, "a.q");
  put(b, "}\n\ntemplate <int N> __device__ void sr_xl_store(const sr_xent_kargs &a, long long i, float (*v)[N]) {\n");
  for (int k = g->nload; k < g->nio; k++)
    put(b, "  sr_xl_st<N>((%s *)a.ptr[%d] + i, v[%d]);\n", ctype(g->io[k].dtype), k, g->io[k].src);
  put(b, "}\n\ntemplate <int N> __device__ void sr_xl_out(const sr_xent_kargs &a, long long i, float (*v)[N]) {\n");
  if (g->defer) put(b, "  sr_xl_st<N>((%s *)a.ptr[%d] + i, v[SR_XL_OUT]);\n", ctype(g->out_dtype), g->nload + nfor);
  put(b, "}\n\n");
  if (variant == 2)
    put(b, "extern \"C\" __global__ void __launch_bounds__(512) sr_xent_bwd(const sr_xent_kargs a) {\n"
           "  sr_xent_back<%s, 512>(a);\n}\n", lt);
  else
    put(b, "extern \"C\" __global__ void __launch_bounds__(%d) sr_xent_%d(const sr_xent_kargs a) {\n"
           "  sr_xent_fused<%s, %d, %s>(a);\n}\n", variant ? 1024 : 512, variant ? 1024 : 512, lt,
        variant ? 1024 : 512, g->defer ? "true" : "false");
}

char *sr_fuse_cuda_source(const sr_fuse_group *g, int contig, char *name, size_t nname) {
  sbuf b = {malloc(4096), 0, 4096};
  if (!b.s) sr_fail("fuse: out of host memory generating a kernel");
  put(&b, "// a fused element-wise group of the speedrun step compiler (host/jit/fuse_cuda.c)\n"
          "#include <cuda_bf16.h>\n");
#define SR_X(E, n) "SR_UNARY_" #E ", "
  put(&b, "enum { %s};\n", SR_UNARY_FNS(SR_X) "SR_UNARY_COUNT ");
#undef SR_X
#define SR_X(E, n) "SR_BINARY_" #E ", "
  put(&b, "enum { %s};\n", SR_BINARY_FNS(SR_X) "SR_BINARY_COUNT ");
#undef SR_X
  put(&b, "#include \"speedrun_ew.cuh\"\n\n"
          "struct sr_fuse_kargs {\n  long long n, shape[%d], stride[%d][%d];\n  void *ptr[%d];\n"
          "  float p[%d];\n  int ndim, pad;\n};\n\n", SR_MAXDIM, SR_FUSE_MAXIO, SR_MAXDIM, SR_FUSE_MAXIO, SR_FUSE_MAXOPS);
  if (g->xent) {  /* contig is the variant: the forward with 512 or 1024 threads a row, or the backward */
    gen_xent(&b, g, contig);
    if (name) snprintf(name, nname, contig == 2 ? "sr_xent_bwd" : contig ? "sr_xent_1024" : "sr_xent_512");
    return b.s;
  }
  gen_body(&b, g);
  if (contig) gen_vec(&b, g);
  else gen_strided(&b, g);
  if (name) snprintf(name, nname, "%s", contig ? "sr_fuse_vec" : "sr_fuse_strided");
  return b.s;
}

/* ------------------------------------------------------------------------------------------
** compiling and running */

/* the loss kernels' NVRTC options from their A/B switches (xl_digit; other values: off), each
** a kernel of its own in the cache, the same numbers: SR_FUSE_XL_UNROLL=U (2 to 8) the forwards'
** first pass over a row unrolled U times, U vectors' loads in flight a thread (kernel 3 keeps 4; the
** fused driver one); SR_FUSE_BF16_CVT=0 bf16 values rounded one conversion each (the default: two
** by one packed conversion, sr_round_bf16_n) */
static int xl_opts(const char **opt) {
  static char buf[2][24];
  static int n = -1;
  if (n < 0) {
    int u = xl_digit(getenv("SR_FUSE_XL_UNROLL"), '2', '8'), cv = xl_digit(getenv("SR_FUSE_BF16_CVT"), '0', '0');
    n = 0;
    if (u > 0) snprintf(buf[n++], sizeof buf[0], "-DSR_XL_UNROLL=%d", u);
    if (cv == 0) snprintf(buf[n++], sizeof buf[0], "-DSR_EW_BF16_CVT=0");
  }
  for (int i = 0; i < n; i++) opt[i] = buf[i];
  return n;
}

/* SR_FUSE_XL_OCC=1: a deferred loss group's forward launched without the shared memory it does not use */
static int xl_occ(void) {
  static int on = -1;
  if (on < 0) on = xl_digit(getenv("SR_FUSE_XL_OCC"), '1', '1') == 1;
  return on;
}

static void set_opts(sr_jit_opts *o, const char *src, const char *kernel) {
  memset(o, 0, sizeof *o);
  o->source = src;
  o->filename = "fused_group.cu";
  o->options[o->noptions++] = "--use_fast_math";
  if (!strncmp(kernel, "sr_xent_", 8)) o->noptions += xl_opts(o->options + o->noptions);
  o->kernels[o->nkernels++] = kernel;
  o->use_cache = 1;
}

SR_CUDA_ONLY static void compile(const char *src, const char *kernel, sr_jit_binary *bin) {
  sr_jit_opts o;
  set_opts(&o, src, kernel);
  sr_jit_compile(&o, bin);
}

/* the distinct kernels of groups g[0..ng) (every variant; folds, disabled groups and relays have
** none), those `skip` says are there already left out: sources, entry points, the first group of each */
typedef struct kbatch { char **src; char (*name)[32]; int *group; int n, cap; } kbatch;

static void batch_free(kbatch *kb) {
  for (int i = 0; i < kb->n; i++) free(kb->src[i]);
  free(kb->src), free(kb->name), free(kb->group);
  memset(kb, 0, sizeof *kb);
}

static kbatch batch_of(const sr_fuse_group *g, int ng, int (*skip)(const char *src)) {
  kbatch kb = {0};
  for (int k = 0; k < ng; k++) {
    if (g[k].fold || g[k].disabled || (!g[k].nop && !g[k].xent)) continue;
    for (int contig = 0; contig < variants(&g[k]); contig++) {
      char name[32];
      char *src = sr_fuse_cuda_source(&g[k], contig, name, sizeof name);
      int dup = skip && skip(src);
      for (int i = 0; i < kb.n && !dup; i++) dup = !strcmp(kb.src[i], src);
      if (dup) { free(src); continue; }
      if (kb.n == kb.cap) {
        kb.cap = kb.cap ? 2 * kb.cap : 32;
        kb.src = realloc(kb.src, (size_t)kb.cap * sizeof *kb.src);
        kb.name = realloc(kb.name, (size_t)kb.cap * sizeof *kb.name);
        kb.group = realloc(kb.group, (size_t)kb.cap * sizeof *kb.group);
        if (!kb.src || !kb.name || !kb.group) sr_fail("fuse: out of host memory");
      }
      kb.src[kb.n] = src;
      memcpy(kb.name[kb.n], name, sizeof name);
      kb.group[kb.n++] = k;
    }
  }
  return kb;
}

/* a batch compiled at once (sr_jit_compile_many: NVRTC on several threads); b[i] is kb->src[i]'s */
static sr_jit_binary *batch_compile(const kbatch *kb) {
  sr_jit_opts *o = calloc((size_t)kb->n + 1, sizeof *o);
  sr_jit_binary *b = calloc((size_t)kb->n + 1, sizeof *b);
  if (!o || !b) sr_fail("fuse: out of host memory");
  for (int i = 0; i < kb->n; i++) set_opts(&o[i], kb->src[i], kb->name[i]);
  sr_jit_compile_many(o, b, kb->n);
  free(o);
  return b;
}

const char *sr_fuse_cuda_compile_all(const sr_fuse_group *g, int ng, int *group) {
  static char msg[2048];
  kbatch kb = batch_of(g, ng, NULL);
  sr_jit_binary *b = batch_compile(&kb);
  const char *err = NULL;
  for (int i = 0; i < kb.n; i++) {
    if (!err && !b[i].ok) {
      snprintf(msg, sizeof msg, "%s", b[i].log ? b[i].log : "compile failed");
      if (group) *group = kb.group[i];
      err = msg;
    }
    sr_jit_binary_free(&b[i]);
  }
  free(b);
  batch_free(&kb);
  return err;
}

#ifdef SPEEDRUN_CUDA

/* the kernels compiled and loaded in this process, by source */
typedef struct kentry {
  char *src;
  void *fn;
  sr_jit_module *mod;
  char *err;
} kentry;
static kentry *kc;
static int nkc, capkc;

static char *dup_str(const char *s) {
  size_t n = strlen(s ? s : "") + 1;
  char *d = malloc(n);
  if (!d) sr_fail("fuse: out of host memory");
  memcpy(d, s ? s : "", n);
  return d;
}

static kentry *find_entry(const char *src) {
  for (int k = 0; k < nkc; k++)
    if (!strcmp(kc[k].src, src)) return &kc[k];
  return NULL;
}

static int loaded(const char *src) { return find_entry(src) != NULL; }

/* a new entry for src (the entry keeps it), its kernel loaded from bin (or why not) */
static kentry *add_entry(char *src, const sr_jit_binary *bin) {
  if (nkc == capkc) {
    capkc = capkc ? 2 * capkc : 32;
    kc = realloc(kc, (size_t)capkc * sizeof *kc);
    if (!kc) sr_fail("fuse: out of host memory");
  }
  kentry *e = &kc[nkc++];
  memset(e, 0, sizeof *e);
  e->src = src;
  const char *err = NULL;
  if (!bin->ok) e->err = dup_str(bin->log && *bin->log ? bin->log : "NVRTC failed");
  else if (!(e->mod = sr_jit_load(bin, &err))) e->err = dup_str(err);
  else if (!(e->fn = sr_jit_function(e->mod, bin->lowered[0], &err))) e->err = dup_str(err);
  return e;
}

static kentry *kernel_for(const sr_fuse_group *g, int contig) {
  char name[32];
  char *src = sr_fuse_cuda_source(g, contig, name, sizeof name);
  kentry *e = find_entry(src);
  if (e) {
    free(src);
    return e;
  }
  sr_jit_binary bin;
  compile(src, name, &bin);
  e = add_entry(src, &bin);
  sr_jit_binary_free(&bin);
  return e;
}

void sr_fuse_cuda_precompile(const sr_fuse_group *g, int ng) {
  kbatch kb = batch_of(g, ng, loaded);
  sr_jit_binary *b = batch_compile(&kb);
  for (int i = 0; i < kb.n; i++) {
    add_entry(kb.src[i], &b[i]);   /* the entry owns the source now */
    kb.src[i] = NULL;
    sr_jit_binary_free(&b[i]);
  }
  free(b);
  batch_free(&kb);
}

const char *sr_fuse_cuda_prepare(const sr_fuse_group *g) {
  if (!g->nop && !g->xent) return NULL;  /* a relay with nothing left to do (or the loss group's) */
  for (int contig = 0; contig < variants(g); contig++) {
    kentry *e = kernel_for(g, contig);
    if (e->err) return e->err;
  }
  return NULL;
}

/* the group's operands in its shape, size-1 dims dropped and dims merged where every operand
** allows (as sr_ew_make); 0 when a tensor is not viewable in the group's shape */
static int make_args(const sr_fuse_group *g, sr_tensor *const *t, sr_fuse_kargs *a) {
  int64_t st[SR_FUSE_MAXIO][SR_MAXDIM];
  memset(a, 0, sizeof *a);
  for (int k = 0; k < g->nio; k++) {
    if (!sr_fuse_view_strides(t[k]->ndim, t[k]->shape, t[k]->stride, g->ndim, g->shape, st[k])) return 0;
    a->ptr[k] = sr_data(t[k]);
  }
  int nd = 0;
  a->n = 1;
  for (int d = 0; d < g->ndim; d++) {
    a->n *= g->shape[d];
    if (g->shape[d] == 1) continue;
    int merge = nd > 0;
    for (int k = 0; k < g->nio && merge; k++) merge = a->stride[k][nd - 1] == st[k][d] * g->shape[d];
    if (merge) {
      a->shape[nd - 1] *= g->shape[d];
      for (int k = 0; k < g->nio; k++) a->stride[k][nd - 1] = st[k][d];
      continue;
    }
    a->shape[nd] = g->shape[d];
    for (int k = 0; k < g->nio; k++) a->stride[k][nd] = st[k][d];
    nd++;
  }
  if (nd == 0) {
    nd = 1, a->shape[0] = 1;
    for (int k = 0; k < g->nio; k++) a->stride[k][0] = 1;
  }
  a->ndim = nd;
  for (int m = 0; m < g->nop; m++) a->p[m] = (float)g->op[m].p;
  return 1;
}

/* the 8-wide kernel applies: one dim, unit strides (loads may be one broadcast element), aligned */
static int contiguous(const sr_fuse_group *g, const sr_fuse_kargs *a) {
  if (!vec_ok(g) || a->ndim != 1) return 0;
  for (int k = 0; k < g->nio; k++) {
    int64_t s = a->stride[k][0];
    if (s == 0 && k < g->nload) continue;
    if (s != 1 || ((uintptr_t)a->ptr[k] & 15)) return 0;
  }
  return 1;
}

const char *sr_fuse_run_cuda(const sr_fuse_group *g, sr_tensor *const *t) {
  sr_fuse_kargs a;
  if (!make_args(g, t, &a)) return "a tensor is not viewable in the group's shape";
  int contig = contiguous(g, &a);
  kentry *e = kernel_for(g, contig);
  if (e->err) return e->err;
  int64_t blocks = ((contig ? (a.n + 7) / 8 : a.n) + 255) / 256;
  if (blocks > 132 * 32) blocks = 132 * 32;
  if (blocks < 1) blocks = 1;
  void *args[1] = {&a};
  sr_jit_launch l = {"fused element-wise group", "fused_group.cu", e->fn, {(unsigned)blocks, 1, 1}, {256, 1, 1},
                     0, args};
  return sr_jit_launch_kernel(&l);
}

static int flat(const sr_tensor *t, int64_t n) { return sr_is_contiguous(t) && sr_numel(t) == n; }

/* one element, seen through any shape (strides 0): a broadcast load */
static int one_elem(const sr_tensor *t) {
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] != 1 && t->stride[d] != 0) return 0;
  return 1;
}

/* a loss kernel's argument: rows N of V; its first n tensors t[k] (loads, then stores) each its
** N * V elements, or (loads, k < nload) one broadcast element; the group's scalars; NULL or why not */
static const char *xent_args(sr_xent_kargs *a, const sr_fuse_group *g, sr_tensor *const *t, int n, int nload, int64_t N,
                             int64_t V) {
  memset(a, 0, sizeof *a);
  for (int k = 0; k < n; k++) {
    int one = k < nload && one_elem(t[k]);
    if (!one && !flat(t[k], N * V)) return "a tensor of the loss group is not laid out as recorded";
    if (one) a->bcast |= (int64_t)1 << k;
    a->ptr[k] = sr_data(t[k]);
  }
  for (int m = 0; m < g->nop; m++) a->p[m] = (float)g->op[m].p;
  for (int m = 0; g->epi >= 0 && m < g->nepi; m++) a->q[m] = (float)g->epi_op[m].p;
  a->N = N, a->V = V;
  a->err = sr_cuda_dev_error_ptr();
  return NULL;
}

/* the logits' address for a loss kernel: a deferred group's forward only splits its rows by the
** address's alignment (speedrun_xent.cuh, xent_split) and writes nothing there, so a lazy storage
** (core/tensor.h) stays unallocated: an address of the same alignment, never dereferenced */
static void *logits_at(const sr_fuse_group *g, const sr_tensor *lg) {
  if (!g->defer || sr_tensor_materialized(lg)) return sr_data(lg);
  return (char *)(uintptr_t)4096 + (size_t)lg->offset * sr_dtype_size(lg->dtype);
}

const char *sr_fuse_run_xent_cuda(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce) {
  sr_tensor *lo = ce->t[0], *ls = ce->t[1], *lg = ce->t[2], *tg = ce->t[3], *ds = ce->t[5];
  int64_t V = lg->shape[lg->ndim - 1], N = V ? sr_numel(lg) / V : 0;
  if (N == 0) return NULL;
  bool same = ce->t[4]->storage == lg->storage && ce->t[4]->offset == lg->offset && ce->t[4]->dtype == lg->dtype;
  if ((lg->dtype != SR_F32 && lg->dtype != SR_BF16) || !flat(lg, N * V) || !same ||
      lo->dtype != SR_F32 || ls->dtype != SR_F32 || tg->dtype != SR_I32 || !flat(lo, N) || !flat(ls, N) ||
      !flat(tg, N) || (ds && (ds->dtype != SR_F32 || sr_numel(ds) != 1)) || V > INT32_MAX / 2)
    return "the cross-entropy's tensors are not the kind the fused loss kernel takes";
  sr_xent_kargs a;
  const char *err = xent_args(&a, g, t, g->nio, g->nload, N, V);
  if (err) return err;
  a.ignore = (int32_t)ce->i[0];
  a.losses = sr_data(lo), a.lse = sr_data(ls), a.targets = sr_data(tg), a.logits = logits_at(g, lg);
  a.dscale = ds ? sr_data(ds) : NULL;
  /* the unfused kernel's threads a row and shared memory: the same reduction order, and as many
  ** rows in flight an SM (the memory is not used: the rows' second read comes from L2). A deferred
  ** group's forward reads a row once: SR_FUSE_XL_OCC=1 asks no memory there, more rows an SM */
  size_t smem = 0;
  int nt = sr_cuda_xent_threads(V, (int)sr_dtype_size(lg->dtype), &smem);
  if (nt != 512 && nt != 1024) return "the device's shared memory could not be queried";
  if (g->defer && xl_occ()) smem = 0;
  kentry *e = kernel_for(g, nt == 1024);
  if (e->err) return e->err;
  void *args[1] = {&a};
  sr_jit_launch l = {"fused cross-entropy", "fused_group.cu", e->fn, {(unsigned)N, 1, 1}, {(unsigned)nt, 1, 1},
                     (unsigned)smem, args};
  return sr_jit_launch_kernel(&l);
}

/* a deferred loss group's backward (core/fuse.h): one block of 512 threads a row */
const char *sr_fuse_run_xent_back_cuda(const sr_fuse_group *g, const sr_fuse_back *b) {
  sr_tensor *out = b->et[g->nfor];
  int64_t N = sr_numel(b->targets), V = N ? sr_numel(out) / N : 0;
  if (N == 0 || V == 0) return NULL;
  if (b->lse->dtype != SR_F32 || !flat(b->lse, N) || b->targets->dtype != SR_I32 || !flat(b->targets, N) ||
      !flat(out, N * V) || (b->dscale && (b->dscale->dtype != SR_F32 || sr_numel(b->dscale) != 1)) ||
      V > INT32_MAX / 2)
    return "the loss's backward got tensors of another kind than its forward";
  sr_tensor *t[SR_FUSE_MAXIO * 2 + 1];  /* the group's loads, the chain's own, the output */
  int n = 0;
  for (int k = 0; k < g->nload; k++) t[n++] = b->gl[k];
  for (int k = 0; k <= g->nfor; k++) t[n++] = b->et[k];
  sr_xent_kargs a;
  const char *err = xent_args(&a, g, t, n, n - 1, N, V);
  if (err) return err;
  a.ignore = (int32_t)b->ignore;
  a.lse = sr_data(b->lse), a.targets = sr_data(b->targets), a.logits = sr_data(out);
  a.dscale = b->dscale ? sr_data(b->dscale) : NULL;
  kentry *e = kernel_for(g, 2);
  if (e->err) return e->err;
  void *args[1] = {&a};
  sr_jit_launch l = {"fused cross-entropy backward", "fused_group.cu", e->fn, {(unsigned)N, 1, 1}, {512, 1, 1}, 0, args};
  return sr_jit_launch_kernel(&l);
}

#else
const char *sr_fuse_run_xent_cuda(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce) {
  return "fused kernels need the CUDA backend (built without it)";
}
const char *sr_fuse_run_xent_back_cuda(const sr_fuse_group *g, const sr_fuse_back *b) {
  return "fused kernels need the CUDA backend (built without it)";
}
const char *sr_fuse_cuda_prepare(const sr_fuse_group *g) {
  return "fused kernels need the CUDA backend (built without it)";
}
void sr_fuse_cuda_precompile(const sr_fuse_group *g, int ng) {}
const char *sr_fuse_run_cuda(const sr_fuse_group *g, sr_tensor *const *t) {
  return "fused kernels need the CUDA backend (built without it)";
}
#endif
