/*
** core/registry.h: the one kernel registry. A kernel is a row {name, cpu, cuda}; front-end ops
** (host/core/ops.c) check arguments, allocate outputs and call sr_kernel_run(), which picks the
** implementation by the device of the tensors. Kernels never see Lua; they return NULL on
** success or an error message (static or thread-local storage), and the dispatcher raises
** "<kernel>: <message>".
**
** Calling convention of every kernel: c->t[] holds outputs first, then inputs, in the order
** documented for each row in SR_KERNELS below; c->f[] float parameters, c->i[] integer
** parameters; c->list[] (c->nlist entries) a tensor list, for the multi-tensor kernels (one launch
** over many tensors: their rows document the list's layout). Shapes are checked by the front-end
** before the call. Unless stated otherwise,
** tensors may be any float dtype (f32, f64, bf16; CPU computes in f32 or f64, accumulating
** in at least f32) and any strides; "contig" marks tensors the front-end makes contiguous.
** Element-wise kernels (unary, binary, where, copy) must allow out to alias an input with the
** same layout (in-place updates use this).
** Per-row statistics (rstd, mean, lse, losses) and norm-parameter gradients are f32, or f64
** when the inputs are f64.
** Gradient contract (as llm.c): activation grads are written (=), parameter grads are
** accumulated (+=) where stated.
*/
#ifndef SR_REGISTRY_H
#define SR_REGISTRY_H

#include "core/tensor.h"  /* defines: sr_tensor */

#ifdef __cplusplus
extern "C" {
#endif

#define SR_KMAXT 12

typedef struct sr_kcall {
  sr_tensor *t[SR_KMAXT];  /* outputs, then inputs; NULL for an absent optional tensor */
  int nt;
  double f[6];
  int64_t i[4];
  sr_tensor *const *list;  /* multi-tensor kernels: the tensor list (none NULL), else NULL */
  int nlist;
} sr_kcall;

typedef const char *(*sr_kernel_fn)(const sr_kcall *c);

/* element-wise functions of the unary kernels; p = c->f[0]. SR_UNARY_OPS are the one-to-one Lua
** functions F.<name>(x) (host/lua/lops.c makes them, and speedrun.core.op_names.unary lists them);
** the others are reached through F.gelu and the binary ops with a number */
#define SR_UNARY_OPS(X) \
  X(NEG, neg) X(EXP, exp) X(LOG, log) X(TANH, tanh) X(SIGMOID, sigmoid) X(RELU, relu) \
  X(SQUARE, square) X(SQRT, sqrt) X(RSQRT, rsqrt) X(ABS, abs) X(RELU2, relu2) X(SIGN, sign) \
  X(COS, cos) X(SIN, sin)
#define SR_UNARY_FNS(X) \
  SR_UNARY_OPS(X) X(GELU_ERF, gelu_erf) X(GELU_TANH, gelu_tanh) \
  X(ADD_SCALAR, add_scalar) X(MUL_SCALAR, mul_scalar) X(POW_SCALAR, pow_scalar) \
  X(RSUB_SCALAR, rsub_scalar) X(RDIV_SCALAR, rdiv_scalar)
typedef enum sr_unary_fn {
#define SR_X(E, n) SR_UNARY_##E,
  SR_UNARY_FNS(SR_X)
#undef SR_X
  SR_UNARY_COUNT
} sr_unary_fn;

/* the functions whose derivative is a function of their output (as PyTorch, whose tanh, sigmoid
** and exp backward read the result): unary_backward with i1 = 1 takes y instead of x */
static inline int sr_unary_output_grad(int64_t fn) {
  return fn == SR_UNARY_TANH || fn == SR_UNARY_SIGMOID || fn == SR_UNARY_EXP;
}

/* binary element-wise functions, each a Lua function F.<name>(a, b); a and b already broadcast
** (expanded) to out's shape, all three of one dtype (floats or i32); the comparisons
** (SR_BINARY_CMP) give 1 or 0 */
#define SR_BINARY_ARITH(X) \
  X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div) X(POW, pow) X(MAX, maximum) X(MIN, minimum)
#define SR_BINARY_CMP(X) X(EQ, eq) X(NE, ne) X(LT, lt) X(LE, le) X(GT, gt) X(GE, ge)
#define SR_BINARY_FNS(X) SR_BINARY_ARITH(X) SR_BINARY_CMP(X)
typedef enum sr_binary_fn {
#define SR_X(E, n) SR_BINARY_##E,
  SR_BINARY_FNS(SR_X)
#undef SR_X
  SR_BINARY_COUNT
} sr_binary_fn;

/* reductions over one dim; out keeps the dim with size 1; each a Lua function
** F.<name>(x [, dim [, keepdim]]) */
#define SR_REDUCE_FNS(X) X(SUM, sum) X(MEAN, mean) X(MAX, max) X(SUMSQ, sumsq)
typedef enum sr_reduce_fn {
#define SR_X(E, n) SR_REDUCE_##E,
  SR_REDUCE_FNS(SR_X)
#undef SR_X
  SR_REDUCE_COUNT
} sr_reduce_fn;

/*
** The kernels. X(name, doc) rows; the doc is the calling convention.
*/
#define SR_KERNELS(X) \
  X(fill, "t0 out; f0 value. Any dtype incl. i32.") \
  X(copy, "t0 out, t1 x: same shape; converts dtypes (i32<->float too), any strides.") \
  X(arange, "t0 out (1-D, contig); f0 start, f1 step.") \
  X(unary, "t0 out, t1 x; i0 sr_unary_fn, f0 p.") \
  X(unary_backward, \
    "t0 dx, t1 dy, t2 x; i0 sr_unary_fn, f0 p. dx = dy * f'(x). i1 = 1 (only the functions of " \
    "sr_unary_output_grad: tanh, sigmoid, exp): t2 is the forward's output y = f(x) and f' is " \
    "computed from it (1 - y^2, y (1 - y), y), so the tape keeps y instead of x.") \
  X(binary, "t0 out, t1 a, t2 b (expanded to out's shape); i0 sr_binary_fn.") \
  X(where, \
    "t0 out, t1 cond (any dtype; nonzero = true), t2 a, t3 b, all expanded to out's shape. out = " \
    "cond ? a : b.") \
  X(reduce, \
    "t0 out (dim kept, size 1), t1 x; i0 sr_reduce_fn, i1 dim. MAX also writes t2 idx (i32, same " \
    "shape as out) when not NULL.") \
  X(to_fp8, \
    "t0 out (float8_e4m3 or float8_e5m2, contig), t1 x (f32 or bf16; any strides, same shape); f0 " \
    "scale, i0 = 1 saturates (+-448 / +-57344; else torch's .to: NaN / +-inf beyond). out = " \
    "fp8(fp32(x) * fp32(scale)), rounded to nearest even (host/core/fp8.h, bit for bit on both " \
    "devices).") \
  X(scaled_mm, \
    "t0 out [M,N] contig (bf16 or f32), t1 a [M,K] float8 (unit stride in K, row stride and start" \
    " multiples of 16 bytes), t2 b [K,N] float8, column-major (unit stride in K: b = W^T of a " \
    "row-major W [N,K]); not both e5m2; K and N multiples of 16; t3 scale_a, t4 scale_b: one-" \
    "element f32 tensors or NULL for f0, f1. out = scale_a * scale_b * a @ b, fp32 accumulation " \
    "(torch._scaled_mm; i0 = 1: cuBLASLt's fast accumulation, use_fast_accum).") \
  X(gemm, \
    "t0 out [B,M,N] contig, t1 a, t2 b; a is [B,M,K] (i0=0) or [B,K,M] (i0=1), b is [B,K,N] (i1=0) " \
    "or [B,N,K] (i1=1); a and b have unit stride in their last dim; batch stride may be 0 " \
    "(broadcast). out = f0*op(a)@op(b) + f1*out. fp32 accumulation.") \
  X(embedding, \
    "t0 out [N,C] contig, t1 weight [V,C] contig, t2 idx [N] i32 contig. Fails on idx out of [0,V).") \
  X(embedding_backward, "t0 dweight [V,C] contig (+=), t1 dout [N,C] contig, t2 idx [N] i32 contig.") \
  X(rms_norm, "t0 out [N,C], t1 rstd [N] f32, t2 x [N,C], t3 weight [C] or NULL; all contig; f0 eps.") \
  X(rms_norm_backward, \
    "t0 dx [N,C] (=; += with i0 = 1), t1 dweight [C] or NULL (+=), t2 dout, t3 x, t4 weight or " \
    "NULL, t5 rstd [N] f32; all contig.") \
  X(layer_norm, \
    "t0 out [N,C], t1 mean [N] f32, t2 rstd [N] f32, t3 x, t4 weight [C] or NULL, t5 bias [C] or " \
    "NULL; contig; f0 eps.") \
  X(layer_norm_backward, \
    "t0 dx (=; += with i0 = 1), t1 dweight or NULL (+=), t2 dbias or NULL (+=), t3 dout, t4 x, " \
    "t5 weight or NULL, t6 mean, t7 rstd; contig.") \
  X(dot, \
    "t0 out [1] (=; f32, f64 when a and b are f64), t1 a, t2 b: same numel, contig, one float dtype." \
    " out = sum(a * b), accumulated in f32 on cuda (f64 on the CPU), deterministic: the gradient of" \
    " a learned scalar s in s * x (records 9-11), the full sum of dy * x, in one pass.") \
  X(softmax, "t0 out [N,C], t1 x [N,C]; contig; i0 = 1 for log_softmax.") \
  X(softmax_backward, \
    "t0 dx [N,C] (=), t1 dout, t2 out (the forward's output); contig; i0 = 1 for log_softmax.") \
  X(cumsum, \
    "t0 out [R,N], t1 x [R,N]: one dtype (f32, bf16, i32; f64 on the CPU), contig; i0 = 1 for " \
    "suffix sums (the backward). Inclusive prefix sums along the rows; floats accumulate in f32 " \
    "(f64 on the CPU), int32 wraps.") \
  X(argsort, \
    "t0 out [R,N] i32 (=), t1 x [R,N] (f32, bf16, i32; f64 on the CPU); contig; i0 = 1 for " \
    "descending. The stable order of each row (equal keys in index order): floats by value with " \
    "-0.0 == +0.0 and a NaN by its bits, as CUB's radix sort.") \
  X(cross_entropy, \
    "t0 losses [N] f32 (f64 when logits are f64), t1 lse [N] (same dtype as losses), t2 logits " \
    "[N,V] contig, t3 targets [N] i32; i0 ignore_index (loss 0 there). Optional t4 dlogits [N,V] " \
    "(=; may be t2 itself; the dtype of logits on cuda) and t5 dscale (one element of lse's dtype, " \
    "or NULL for 1): the same pass writes dlogits = dscale*(softmax - onehot), 0 on ignored rows. " \
    "Fails on a target out of [0,V) other than ignore_index.") \
  X(cross_entropy_backward, \
    "t0 dlogits [N,V] (=; may be t2 itself; the dtype of logits on cuda), t1 dlosses [N] (the dtype" \
    " of lse; stride 0 allowed), t2 logits, t3 targets, t4 lse; i0 ignore_index. dlogits = " \
    "dloss*(softmax - onehot); 0 on ignored rows.") \
  X(rotary, \
    "t0 out [N,T,H,D], t1 x [N,T,H,D], t2 cos [T,D/2], t3 sin [T,D/2]; all contig, any float " \
    "dtypes, computed in f32 (f64 on the CPU) and rounded once. Half-split rotary embedding of the " \
    "pairs (x1, x2) = (x[i], x[i+D/2]): out1 = x1*cos + s*x2*sin, out2 = x2*cos - s*x1*sin with s =" \
    " 1, or s = -1 for i0 = 1 (the inverse rotation: the backward). out may not alias x.") \
  X(attention, \
    "t0 out [B,H,T,D], t1 lse [B,H,T] f32, t2 q, t3 k, t4 v [B,H,T,D]; all contig; f0 scale; i0 " \
    "causal.") \
  X(attention_backward, \
    "t0 dq, t1 dk, t2 dv (=), t3 dout, t4 q, t5 k, t6 v, t7 out, t8 lse; contig (dq, dk, dv: any " \
    "strides on the CPU, and on cuda's bf16 flash path its layouts: slices of a qkv gradient); f0 " \
    "scale; i0 causal.") \
  X(flex_block_mask, \
    "t0 bm: a block mask (core/flex.h: i32 [NB, 4 NB + 4 + block] contig), written whole; t1 doc " \
    "ids [T] i32 contig or NULL; t2 window_blocks (one i32, >= 1; the device value, so it can " \
    "change between steps) or NULL; i0 causal, i1 window in tokens (0: none), i2 window in blocks " \
    "(0: none; t2 replaces it); t3 the window in tokens as one i32 on the device (read there; " \
    "replaces i1) or NULL. The lists from the components (block-causal and window limits, " \
    "per-block doc id min/max), as create_block_mask.") \
  X(flex_block_mask_lists, \
    "t0 bm (as flex_block_mask), t1 kv_num_blocks [NB] i32, t2 kv_indices [NB,NB] i32, t3 " \
    "full_kv_num_blocks [NB] or NULL, t4 full_kv_indices [NB,NB] or NULL, t5 doc ids [T] or NULL;" \
    " all contig. The mask from FlexAttention's lists (BlockMask.from_kv_blocks): lists sorted, " \
    "transposes built; a block in both lists is partial. CPU fails on a count or index out of " \
    "range; cuda ignores such entries.") \
  X(flex_attention, \
    "t0 out [B,H,T,D], t1 lse [B,H,T] f32, t2 q, t3 k, t4 v [B,H,T,D] (contig; cuda bf16 D " \
    "64/128: unit stride in D), t5 bm (flex_block_mask's); f0 scale; i0 causal, i1 window (tokens, " \
    "0: none), i2 1 to mask by the doc ids of bm: the element mask on partial blocks; t6 the " \
    "window as one i32 on the device (replaces i1: it may change between steps) or NULL. Only " \
    "listed blocks are visited; a query seeing no key gets out 0, lse -inf.") \
  X(flex_attention_backward, \
    "t0 dq, t1 dk, t2 dv (=), t3 dout, t4 q, t5 k, t6 v, t7 out, t8 lse, t9 bm, t10 the window " \
    "tensor or NULL; as flex_attention.") \
  X(adamw, \
    "t0 param (updated), t1 grad, t2 m, t3 v (state, updated: f32, or bf16 as torch keeps for a " \
    "bf16 param; m and v of one dtype); all contig, same numel; f0 lr, " \
    "f1 beta1, f2 beta2, f3 eps, f4 weight_decay (decoupled: p -= lr*wd*p); i0 step (1-based, for " \
    "bias correction). param may be f32 or bf16; bf16 values are computed in f32 (f64 on the CPU) " \
    "and rounded once when stored. Optional t4 sched: f32 [2] {lr, step} on the " \
    "device, overriding f0 and i0 (a CUDA graph replay reads the current values).") \
  X(adamw_multi, \
    "adamw over a list of parameters in one launch (CUDA: one per 64 parameters): list = k groups " \
    "of 4 (param, grad, m, v), each as adamw's t0..t3; every param of one dtype, every grad of one " \
    "dtype, every m and v of one dtype. f0..f4 and i0 as adamw; optional t0 sched as adamw's t4. " \
    "Each parameter's update is adamw's (any size: 1-element parameters cost a block each, not a " \
    "launch).") \
  X(sumsq_multi, \
    "t0 out [1] (=; f32, f64 when every list tensor is f64): the sum of squares of every element of" \
    " the list's tensors (contig, float; f32 accumulation on cuda, deterministic).") \
  X(clip_multi, \
    "list: tensors (contig, float) scaled in place by min(1, f0 / (sqrt(t0[0]) + f1)); t0 [1] f32 " \
    "or f64, a sum of squares (sumsq_multi's out): global gradient-norm clipping without a host " \
    "read.")

typedef enum sr_kernel_id {
#define SR_X(n, doc) SR_K_##n,
  SR_KERNELS(SR_X)
#undef SR_X
  SR_KERNEL_COUNT
} sr_kernel_id;

typedef struct sr_kernel {
  const char *name;
  const char *doc;
  sr_kernel_fn cpu;
  sr_kernel_fn cuda;   /* NULL when the CUDA backend is not built */
} sr_kernel;

extern const sr_kernel sr_kernels[SR_KERNEL_COUNT];

/* CPU reference of every kernel: host/cpu/<family>.c, named sr_cpu_<name> */
#define SR_X(n, doc) const char *sr_cpu_##n(const sr_kcall *c);
SR_KERNELS(SR_X)
#undef SR_X
/* CUDA launchers: kernels/<family>.cu, named sr_cuda_<name> (only with SPEEDRUN_CUDA) */
#define SR_X(n, doc) const char *sr_cuda_##n(const sr_kcall *c);
SR_KERNELS(SR_X)
#undef SR_X

/* run kernel id on the device of its tensors (all must agree); fails "<name>: <message>" */
void sr_kernel_run(sr_kernel_id id, const sr_kcall *c);

/* Dispatch observers: the launch trace (host/core/trace.c), CUDA-graph capture (host/cuda/backend.c)
** and the profiler (host/core/profile.c) watch kernel calls through this one list. before() runs
** ahead of the kernel, after() once it returned (in reverse order of registration; also when it
** failed, before the failure is raised); either may be NULL. dev is SR_CPU or SR_CUDA. With no
** observer the dispatcher pays one branch. An observer is added once (adding it again is a no-op)
** and must stay alive until removed. */
typedef struct sr_observer {
  void (*before)(sr_kernel_id id, const sr_kcall *c, int dev);
  void (*after)(sr_kernel_id id, const sr_kcall *c, int dev);
} sr_observer;
#define SR_MAX_OBSERVERS 8
void sr_observer_add(const sr_observer *o);
void sr_observer_remove(const sr_observer *o);

/* The step compiler's executor (host/core/fuse_exec.c) may take launches over: while a hook is
** set, the dispatcher calls it in place of the kernel (between the observers' before() and
** after()), and it runs fn, holds the launch for later, or runs a fused group in its place; it
** returns what the kernel would (NULL or a message). NULL removes the hook. */
typedef const char *(*sr_dispatch_hook)(sr_kernel_id id, const sr_kcall *c, int dev, sr_kernel_fn fn);
/* a kernel function on c, every tensor of c given its memory first (lazy storages, core/tensor.h):
** how the dispatcher and the hook run a launch as it is */
const char *sr_kernel_call(sr_kernel_fn fn, const sr_kcall *c);
void sr_kcall_materialize(const sr_kcall *c);
void sr_set_dispatch_hook(sr_dispatch_hook h);

/* The autograd phase of the calls dispatched now, for observers (set by host/core/autograd.c):
** node is the name of the backward rule running (NULL outside one), backward whether a backward
** pass is running (between rules: gradient accumulation). */
void sr_phase_set(const char *node, bool backward);
const char *sr_phase_node(void);
bool sr_phase_backward(void);

const char *sr_unary_name(int fn);
const char *sr_binary_name(int fn);
const char *sr_reduce_name(int fn);

#ifdef __cplusplus
}
#endif
#endif
