/*
** core/fuse.h: the step compiler (issue 20): element-wise fusion over a recorded training step.
**
** 1. Record (host/core/fuse_record.c): a dispatch observer notes every launch of a step with what
**    is needed to plan it: kernel, scalars, and for each tensor its storage (by identity, the
**    storage's serial), dtype, shape, strides and offset; a storage hook notes which storages die
**    during the step. The caller ends the recording after a full garbage collection, so a storage
**    still alive then is held by something (a parameter, a gradient, optimizer state, the loss,
**    anything Lua keeps).
** 2. Plan (host/core/fuse_plan.c): groups of adjacent launches that one kernel can do:
**    - element-wise chains: fill, copy (casts), unary, unary_backward, binary, where, over one
**      iteration shape; values flow between members in registers; a member's output is not
**      stored when its storage is proven dead: born during the step, freed before its end, and
**      touched by no launch after the group (in every recording given). Outputs that live on are
**      stored as before. Every storage a member writes is accessed by the group through one
**      layout only (element i of the loop touches element i), so the fused order is the unfused
**      order, element by element.
**    - cast folding: a norm (rms_norm, layer_norm), rotary or a beta-0 gemm whose output is read
**      only by the next launch, a narrowing copy (f32 -> bf16, f64 -> f32/bf16), writes the copy's
**      destination itself; and a widening copy (bf16 -> f32, ...) whose output only the next
**      launch, a norm's backward, reads as its upstream gradient: the backward reads the copy's
**      source itself (the same values: widening is exact).
** 3. Execute (host/core/fuse_exec.c): the step runs again (eagerly, or under CUDA-graph capture)
**    with the plan installed in the dispatcher: each launch is matched to the recorded one (kernel,
**    scalars, layouts); a group's members are held until its last member arrives, then run as one
**    fused call: the CPU interpreter (computes as host/cpu/elementwise.c: double, rounding every
**    value to its dtype), or a generated CUDA kernel (host/jit/fuse_cuda.c: NVRTC, disk cache,
**    the formulas of kernels/elementwise.cu from kernels/include/speedrun_ew.cuh). Any mismatch
**    (another launch, a different aliasing of a group's tensors) runs the held launches unfused
**    and turns the plan off for the rest of the step, with the reason.
** 4. The loss (issue 20): an element-wise group whose output is the logits of the cross_entropy that
**    follows it, in place (it writes its gradient over the logits), becomes one group with it: the
**    kernel computes the logits from the group's loads row by row and never stores them. When the
**    backward's first touch of those logits is an element-wise group on the gradient (a softcap's
**    backward: mul', tanh'(y), mul') that reads only them and values the loss group computed, that
**    chain runs inside the same kernel on the gradient before it is stored (its "epilogue"), and
**    the later group becomes a relay: one copy of what the kernel left in the logits' storage to
**    its output. Values it read that nothing else reads (the tanh) are then never stored.
**    When that chain also reads what the backward computed in between (micro-batches: loss / n
**    scales the gradient first), the loss kernel computes only the loss and lse (defer), keeps
**    its loads, and the relay becomes the loss's backward: the logits recomputed from the kept
**    loads, their gradient from the kept lse, then the chain, one kernel.
** Values are rounded to their dtype after every op, as the unfused kernels store them, so a fused
** step gives the unfused step's numbers (bit for bit on the CPU; on cuda up to the compiler's
** choices inside one op).
*/
#ifndef SR_FUSE_H
#define SR_FUSE_H

#include <stddef.h>         /* defines: size_t */
#include <stdint.h>         /* defines: int64_t, uint64_t */

#include "core/registry.h"  /* defines: sr_kernel_id, sr_kcall, sr_tensor */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- recording */

typedef struct sr_fuse_arg {  /* one tensor of a recorded launch */
  int sid;                    /* storage index in the recording; -1: absent (NULL) */
  int dtype, ndim;
  int64_t shape[SR_MAXDIM], stride[SR_MAXDIM], offset;
} sr_fuse_arg;

typedef struct sr_fuse_launch {
  int id, nt, nlist;
  double f[6];
  int64_t i[4];
  uint64_t layout;            /* hash of the tensors' dtypes and layouts (as core/trace.c) */
  int64_t arg0;               /* index of its first tensor in the recording's args */
} sr_fuse_launch;

typedef struct sr_fuse_storage {
  uint64_t serial;
  int born;                   /* 1: created during the recording */
  int64_t died;               /* launches recorded when it was freed; -1: alive at the end */
  int64_t first, last;        /* first and last launch that touched it */
  size_t nbytes;
} sr_fuse_storage;

typedef struct sr_fuse_rec {
  int device;                 /* of the launches (-1: none yet); mixed: launches on both */
  int mixed;
  sr_fuse_launch *l;
  int64_t n, lcap;
  sr_fuse_arg *a;
  int64_t na, acap;
  sr_fuse_storage *s;
  int ns, scap;
  int *map;                   /* serial -> sid + 1, open addressing */
  int mapcap;
  uint64_t serial0;           /* storages with a serial >= serial0 were born while recording */
  int recording;
} sr_fuse_rec;

void sr_fuse_record_start(sr_fuse_rec *r);  /* empties r and records into it (one at a time) */
void sr_fuse_record_stop(void);             /* call after a full garbage collection */
void sr_fuse_rec_free(sr_fuse_rec *r);      /* frees what r holds (not r) */
/* a stopped recording as bytes (malloc'd, *n its size), and back into an empty r: NULL, or why the
** bytes are not one (the dry recording sends its recordings from a forked process this way) */
char *sr_fuse_rec_pack(const sr_fuse_rec *r, size_t *n);
const char *sr_fuse_rec_unpack(sr_fuse_rec *r, const char *b, size_t n, size_t *used);
/* what a launch is matched by: kernel, scalars, layout hash (arg0 left 0) */
void sr_fuse_signature(sr_kernel_id id, const sr_kcall *c, sr_fuse_launch *l);

/* ---- plans */

#define SR_FUSE_MAXOPS 16     /* launches in one group */
#define SR_FUSE_MAXIO 16      /* memory operands (loads + stores) of one group */
#define SR_FUSE_MAXVALS (SR_FUSE_MAXIO + 2 * SR_FUSE_MAXOPS + 1)  /* values of a loss group and its chain */

/* value v of a group: 0..nload-1 the loads, nload + k the result of op k */
typedef struct sr_fuse_op {
  int kind;                   /* SR_K_fill, copy, unary, unary_backward, binary, where */
  int fn;                     /* i0; unary_backward from the output (i1 = 1): fn + SR_UNARY_COUNT */
  double p;                   /* f0 */
  int in[3], nin;             /* values read */
  int dtype;                  /* the dtype its result is rounded to (its output's) */
} sr_fuse_op;

typedef struct sr_fuse_io {
  int member, arg;            /* the tensor: argument `arg` of launch first + member */
  int dtype;
  int src;                    /* stores: the value stored; loads: -1 */
} sr_fuse_io;

typedef struct sr_fuse_group {
  int64_t first;              /* launches first .. first + n - 1 */
  int n;
  int fold;                   /* cast folding: SR_FUSE_FOLD_OUT (launch first writes launch first+1's
                              ** output) or SR_FUSE_FOLD_IN (launch first+1 reads launch first's input) */
  int nop;
  sr_fuse_op op[SR_FUSE_MAXOPS];
  int nload, nio;             /* io[0..nload) loads, io[nload..nio) stores */
  sr_fuse_io io[SR_FUSE_MAXIO];
  int ndim;                   /* the iteration shape: member 0's output */
  int64_t shape[SR_MAXDIM];
  signed char cls[SR_FUSE_MAXOPS][SR_KMAXT];  /* storage class of each member tensor (-1 absent) */
  int dead;                   /* outputs not stored */
  int disabled;               /* 1: runs unfused (its kernel could not be built) */
  int64_t saved_bytes;        /* memory traffic saved per step */
  /* the loss (4. above): xent: 1 when the last member is a cross_entropy writing its gradient over
  ** the logits, value lval; the kernel stores no logits. epi: the relay group whose chain it
  ** applies to the gradient (-1: none); then value nload + nop is the gradient as the
  ** cross_entropy stores it (the logits' dtype) and epi_op[k] makes value nload + nop + 1 + k, the
  ** last one stored over the logits. relay: 1 for that later group, run as planned only after its
  ** loss group ran fused: one copy (op[0]) of the logits' storage (its load 0) to its output;
  ** nothing (nop 0) when its output is that storage; or (defer) the loss's backward. */
  int xent, lval, epi, nepi, relay;
  int64_t ce;                 /* xent: the cross_entropy's launch (members first .. first + n - 2, then
                              ** it; the launches between touch none of the group's storages) */
  sr_fuse_op epi_op[SR_FUSE_MAXOPS];
  /* defer (1 on a loss group and on its relay): the gradient and the chain run at the relay. The chain's
  ** values: nload + nop the gradient, then its nfor own loads (the relay's io loads, dtypes
  ** for_dtype), then epi_op[k] at nload + nop + 1 + nfor + k, the last one stored (out_dtype:
  ** the relay's io store) */
  int defer, nfor, out_dtype;
  int for_dtype[SR_FUSE_MAXIO];
  const char *label;          /* its ops as text, e.g. "cast:bfloat16 -> mul:bfloat16" (interned: lives
                              ** as long as the process, so profile rows may point at it) */
} sr_fuse_group;

enum { SR_FUSE_FOLD_OUT = 1, SR_FUSE_FOLD_IN = 2 };

/* the argument of launch kind id that an input fold replaces (a norm backward's upstream gradient),
** or -1 when id takes none */
int sr_fuse_fold_in_arg(int id);

typedef struct sr_fuse_plan {
  int device;
  int64_t nlaunch;
  sr_fuse_launch *l;          /* the recorded launches (matching at run time; arg0 unused) */
  int *group_of;              /* per launch: its group, or -1 */
  sr_fuse_group *g;
  int ng;
  int64_t fused_launches, saved_bytes;
  int refused[8];             /* why candidate chains were cut (reasons in sr_fuse_refusal) */
} sr_fuse_plan;

/* what a plan may do (NULL: everything) */
typedef struct sr_fuse_opts {
  int no_loss;                /* 1: no loss groups (4. above; for measuring what they are worth) */
} sr_fuse_opts;
/* a plan from one recording, or two recordings of consecutive steps (a group then needs its
** proof in both); NULL and a message in err when the recordings cannot be planned */
sr_fuse_plan *sr_fuse_plan_build(const sr_fuse_rec *a, const sr_fuse_rec *b, const sr_fuse_opts *o, char *err,
                                 size_t nerr);
void sr_fuse_plan_free(sr_fuse_plan *p);
/* the plan as text (groups, ops, dtypes, what is stored, bytes saved); malloc'd */
char *sr_fuse_plan_dump(const sr_fuse_plan *p);
const char *sr_fuse_refusal(int why);
/* the strides of a layout's elements seen in shape gshape (same count, row-major order), as a view
** would have them; 0 when that needs a copy */
int sr_fuse_view_strides(int nd, const int64_t *shape, const int64_t *stride, int gnd, const int64_t *gshape,
                         int64_t *out);

/* ---- execution */

/* installs p in the dispatcher (NULL removes it); the step's launches are counted from 0. With lazy
** outputs on, storages made while it is installed are lazy (core/tensor.h): an output the plan does
** not store, and nothing else touches, is never allocated */
void sr_fuse_begin(sr_fuse_plan *p);
/* lazy outputs: off unless SPEEDRUN_FUSE_LAZY=1 (not yet run on a GPU); sr_fuse_set_lazy returns
** the previous setting */
bool sr_fuse_lazy_on(void);
bool sr_fuse_set_lazy(bool on);
/* removes the plan; returns NULL when every group ran fused, else why not (static storage).
** *groups: groups run fused */
const char *sr_fuse_end(int *groups);
/* runs the launches held for a group unfused (before anything the dispatcher does not see) */
void sr_fuse_flush(void);
/* what the executor did with the launch the dispatcher last handed it, for the profiler, which
** times each dispatch: SR_FUSE_RAN (it ran, as itself; also when no plan is installed),
** SR_FUSE_HELD (held for a group: nothing ran), SR_FUSE_GROUP (its group ran fused: *label is the
** group's label) */
enum { SR_FUSE_RAN, SR_FUSE_HELD, SR_FUSE_GROUP };
int sr_fuse_last_dispatch(const char **label);

/* one group run: the CPU interpreter (host/core/fuse_exec.c) and the CUDA runner
** (host/jit/fuse_cuda.c; "not built" without the CUDA backend). t[k] is io[k]'s tensor.
** NULL or an error message. */
const char *sr_fuse_run_cpu(const sr_fuse_group *g, sr_tensor *const *t);
const char *sr_fuse_run_cuda(const sr_fuse_group *g, sr_tensor *const *t);
/* a loss group (xent): t[k] is io[k]'s tensor, ce the cross_entropy's own call (losses, lse,
** logits, targets, dlogits = logits, dscale); lse64: a deferred group's lse in f64 on the CPU
** (kept for its backward), else NULL */
const char *sr_fuse_run_xent_cpu(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce, sr_tensor *lse64);
const char *sr_fuse_run_xent_cuda(const sr_fuse_group *g, sr_tensor *const *t, const sr_kcall *ce);
/* a deferred loss group's backward, run at its relay: gl[k] its load k (kept), lse (cuda: the
** cross_entropy's own f32; the CPU: lse64 of the forward, f64, so the gradient is the unfused one
** to the bit), targets, dscale (or NULL), ignore; et: the relay's loads, then its output */
typedef struct sr_fuse_back {
  sr_tensor *gl[SR_FUSE_MAXIO];
  sr_tensor *lse, *targets, *dscale;
  int64_t ignore;
  sr_tensor *et[SR_FUSE_MAXIO + 1];
} sr_fuse_back;
const char *sr_fuse_run_xent_back_cpu(const sr_fuse_group *g, const sr_fuse_back *b);
const char *sr_fuse_run_xent_back_cuda(const sr_fuse_group *g, const sr_fuse_back *b);
/* the CUDA source of a group's kernel (malloc'd; the text depends on the group's structure
** only: ops, dtypes, which io is which); name receives the kernel's entry point. contig: the
** variant (element-wise: 0 strided, 1 8-wide; a loss group: 0 and 1 its forward with 512 and 1024
** threads a row, 2 a deferred group's backward) */
char *sr_fuse_cuda_source(const sr_fuse_group *g, int contig, char *name, size_t nname);
/* compiles and loads a group's kernels (before a capture); NULL or why they cannot run */
const char *sr_fuse_cuda_prepare(const sr_fuse_group *g);
/* compiles and loads every kernel of groups g[0..ng) not loaded yet, at once (NVRTC on several
** threads: sr_jit_compile_many); sr_fuse_cuda_prepare then finds them (and each group's error) */
void sr_fuse_cuda_precompile(const sr_fuse_group *g, int ng);
/* compiles the kernels of groups g[0..ng) without running them (NVRTC, several threads; works
** without a GPU): NULL, or the first failure's log and its group in *group */
const char *sr_fuse_cuda_compile_all(const sr_fuse_group *g, int ng, int *group);

#ifdef __cplusplus
}
#endif
#endif
