/*
** core/autograd.h: the tape. Every differentiable op that sees an input with requires_grad (while
** grad mode is on) creates a node holding: edges to where its inputs' gradients go (the
** producing node's output slot, or a leaf's .grad), tensors saved for the backward, scalar
** parameters, and the backward rule. sr_backward() walks the nodes in reverse topological
** order, summing gradients per output slot, then calls each rule once.
**
** Gradient routing (the fusions of the backward pass; docs/cuda.md "Fused in autograd"):
** - destinations: a node whose outputs are views of its input 0 (split, narrow: pieces of a
**   buffer of its own; view, transpose, permute: a view of the destination offered for their
**   input) sets dest_map. Before output k has any gradient, the pass offers the rule of a consumer
**   a place to write that gradient (sr_grad_dest): a strided view into one gradient buffer of the
**   split's base, so the pieces' gradients land in their slices and the split's backward copies
**   nothing. Offered once per output per pass; a rule that writes it returns it as its gradient.
** - cast into a leaf: a matmul rule whose operand is a float cast of an fp32 leaf (the records'
**   F.cast(w, "bfloat16")) may write the weight gradient with an fp32-output GEMM straight into
**   the leaf's .grad, beta = 1 (sr_grad_cast_leaf, sr_grad_leaf_target): no bf16 gradient, no
**   cast back, no add.
** - recompute: a rule that saves an input which is the whole output of a node able to compute it
**   again from what that node saves anyway (an element-wise function of a saved input: relu2, gelu,
**   square...; rms_norm from its saved input and rstd) saves it weakly (sr_node_save_output_of): the
**   output's memory goes when the forward drops it, and the backward recomputes it once from the
**   producer (kept on the producer until its own backward; recomputed even when the recipe still
**   holds it, so the launches do not depend on when Lua collected it). torch.compile's
**   partitioner makes the same trade: the MLP's relu(x)^2 and the norms' outputs are not kept for
**   the linear layers' weight gradients. Modified in place after the save: the backward fails as
**   for any saved tensor, whether it was still alive or not.
** - scale: a gradient the pass knows on the host to be a constant c (the implicit seed of
**   loss:backward(), then the rules of x * s, x + s, -x on it: the `loss / n` of micro-batch
**   accumulation; sr_grad_constant) lets an in-place cross_entropy return its gradient with c
**   still to apply (sr_grad_mark_scaled) instead of a pass over the [N, V] logits: a linear rule
**   (SR_NODE_TAKES_SCALE) makes it its GEMMs' alpha; any other consumer, a sum of two gradients
**   or a leaf gets it applied first (the pass as before).
** - accumulate: a gradient arriving at an output slot that already holds one is summed by an add
**   kernel; a rule whose input gradient is a GEMM's output (linear's dX, matmul's operands) adds it
**   into the slot's sum instead, beta = 1 (sr_grad_acc_target; the sum made private first, as
**   the add does), and so does a norm's dx (the kernels' dx +=): the records' q, k and v
**   projections of one normed input and the residual stream's norms, 4 adds a layer. The GEMM rounds
**   alpha*A*B + C once where the add rounded the product first: within one rounding of the unfused
**   sum.
** - defer: a linear whose input is recomputed (above) by an element-wise producer, relu2(h) or a
**   float cast of it (SR_NODE_EW_PAIR), computes dX, then leaves its weight gradient for later
**   (sr_node_defer): the pass recomputes the input just before the producer's own backward and runs
**   the dW GEMM just after it, so the recompute (h -> relu2(h)) and the backward (h, g -> dh) are
**   adjacent launches over the same h, which the step compiler fuses into one pass (h read once, as
**   torch.compile's backward does). The same kernels on the same inputs: gradients bit for bit.
**   Only where the linear is the producer's last consumer and dW goes straight into an fp32 leaf
**   (cast_gemm), so no other gradient waits on it.
** Each can be turned off (sr_set_grad_fusion; SPEEDRUN_GRAD_SLICES=0, SPEEDRUN_GRAD_CAST_GEMM=0,
** SPEEDRUN_GRAD_RECOMPUTE=0, SPEEDRUN_GRAD_SCALE=0, SPEEDRUN_GRAD_ACCUM=0, SPEEDRUN_GRAD_DEFER=0).
*/
#ifndef SR_AUTOGRAD_H
#define SR_AUTOGRAD_H

#include "core/tensor.h"  /* defines: sr_tensor, sr_node */

#define SR_NODE_MAXIN 6
#define SR_NODE_MAXOUT 16  /* split/chunk pieces under one node (record 14 chunks 12 ways) */
#define SR_NODE_MAXSAVED 8

/* grads_out[k]: gradient of output k (NULL when nothing flowed into it; treat as zeros).
** grads_in[i]: set to a new reference holding input i's gradient (same shape as the input),
** or leave NULL; only needed when n->needs[i]. */
typedef void (*sr_backward_fn)(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);
/* output k's gradient place as a view of d, a buffer shaped like input 0 (see above), or NULL */
typedef sr_tensor *(*sr_dest_map_fn)(sr_node *n, int k, sr_tensor *d);
/* output 0 of n again (a new contiguous tensor, bit-identical to the forward's) from n's saved tensors */
typedef sr_tensor *(*sr_recompute_fn)(sr_node *n);

/* node flags */
#define SR_NODE_CAST 1u      /* a float cast (same device): its input's gradient is its own, converted */
#define SR_NODE_TAKES_SCALE 4u  /* its rule applies its upstream gradients' pending scales itself
                                 ** (sr_grad_scale_of) and returns none of them as an input's gradient */
#define SR_NODE_DEST_OWN 2u  /* dest_map maps n->gbuf, a buffer of the node's own (split, narrow) */
#define SR_NODE_EW_PAIR 8u   /* its recompute rule and its backward are element-wise over the same saved
                              ** input (unary relu2, gelu...): worth running back to back (the defer fusion) */

typedef struct sr_edge {
  sr_node *node;       /* producing node (owned ref), or NULL */
  int slot;            /* output slot of that node */
  sr_tensor *leaf;     /* leaf with requires_grad (owned ref), or NULL */
} sr_edge;

struct sr_node {
  int refcount;
  const char *name;               /* op name, for messages */
  sr_backward_fn backward;
  int nin, nout;
  sr_edge in[SR_NODE_MAXIN];
  bool needs[SR_NODE_MAXIN];      /* input i wants a gradient */
  int in_ndim[SR_NODE_MAXIN];     /* input shapes and dtypes (for broadcast reduction, casts) */
  int64_t in_shape[SR_NODE_MAXIN][SR_MAXDIM];
  sr_dtype in_dtype[SR_NODE_MAXIN];
  sr_device in_device[SR_NODE_MAXIN];
  sr_tensor *saved[SR_NODE_MAXSAVED];  /* owned refs; released after the backward */
  int saved_version[SR_NODE_MAXSAVED];
  sr_watch *weak[SR_NODE_MAXSAVED];    /* saved weakly (recompute): the tensor, while it lives */
  sr_node *weak_src[SR_NODE_MAXSAVED]; /* ... and the node that recomputes it (owned ref) */
  sr_recompute_fn recompute;      /* output 0 again from the saved tensors, or NULL */
  int out0_version;               /* output 0's storage version when attached (unchanged since: recomputable) */
  sr_tensor *recomputed;          /* that output, once a consumer's backward asked (until this backward) */
  double f[6];
  int64_t i[6];
  int lua_ref;                    /* custom Lua function: registry ref of its backward, else 0 */
  unsigned flags;                 /* SR_NODE_* */
  sr_dest_map_fn dest_map;        /* outputs are views of input 0 (gradient destinations), or NULL */
  int out_ndim[SR_NODE_MAXOUT];   /* output shapes (sr_node_attach) */
  int64_t out_shape[SR_NODE_MAXOUT][SR_MAXDIM];
  /* backward-pass scratch */
  sr_tensor *grad_acc[SR_NODE_MAXOUT];
  int pending;
  unsigned epoch;                 /* the backward pass that last visited this node */
  sr_tensor *gbuf;                /* SR_NODE_DEST_OWN: input 0's gradient buffer, made on demand */
  sr_tensor *grad_dest[SR_NODE_MAXOUT];  /* where output k's gradient may be written */
  unsigned dest_taken;            /* bit k: output k's destination was handed out (or given up) */
};

bool sr_grad_enabled(void);
bool sr_set_grad_enabled(bool on);       /* returns the previous mode */

/* does any of these inputs need a tape entry? */
bool sr_needs_grad(int n, sr_tensor *const *inputs);

/* create a node for inputs (NULL entries allowed) and attach outputs to it */
sr_node *sr_node_new(const char *name, sr_backward_fn bw, int nin, sr_tensor *const *inputs);
void sr_node_attach(sr_node *n, int nout, sr_tensor *const *outputs);
void sr_node_save(sr_node *n, int k, sr_tensor *t);
/* as sr_node_save for t, input x of n or a view of it over x's whole storage: weakly, to be
** recomputed when gone, where x is the whole output 0 of a node with a recompute rule (above) */
void sr_node_save_output_of(sr_node *n, int k, sr_tensor *t, sr_tensor *x);
/* x is the whole output 0 of a node with a recompute rule, unchanged since it was made, and the
** recompute fusion is on; then sr_node_recomputed(x->grad_fn) gives it again (made once, kept on
** the node until its backward) */
bool sr_node_recomputable(const sr_tensor *x);
sr_tensor *sr_node_recomputed(sr_node *p);
sr_tensor *sr_node_saved(sr_node *n, int k);  /* checks it was not modified in place since */
void sr_node_release(sr_node *n);

/* g is the implicit all-ones gradient a backward() without a gradient started from (a rule may
** skip multiplying by it) */
bool sr_grad_is_implicit_one(const sr_tensor *g);
/* during a backward pass, with the scale fusion on: g is known to hold the constant *c in every
** element (the implicit seed: 1; a gradient a rule marked with sr_grad_mark_constant) */
bool sr_grad_constant(const sr_tensor *g, double *c);
void sr_grad_mark_constant(sr_tensor *g, double c);
/* *g, returned by a rule, still has to be multiplied by s (scale fusion: the pass applies it unless
** the consumer's node has SR_NODE_TAKES_SCALE); when it cannot be marked, *g is scaled now */
void sr_grad_mark_scaled(sr_tensor **g, double s);
double sr_grad_scale_of(const sr_tensor *g);  /* the pending scale of an upstream gradient, 1 if none */
/* forget the autograd phase and the implicit seed after a backward that failed (sr_fail left it
** halfway) */
void sr_backward_reset(void);

/* root.backward(grad): grad NULL means ones (root must then have one element) */
void sr_backward(sr_tensor *root, sr_tensor *grad);
/* custom Lua functions need the state during backward; set by the binding */
typedef void (*sr_lua_backward_hook)(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);
void sr_set_lua_backward_hook(sr_lua_backward_hook h);
void sr_lua_node_backward(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);

/* gradient routing (see the top of this file) */
enum { SR_GRAD_SLICES, SR_GRAD_CAST_GEMM, SR_GRAD_RECOMPUTE, SR_GRAD_SCALE, SR_GRAD_ACCUM, SR_GRAD_DEFER,
       SR_GRAD_FUSION_COUNT };
bool sr_grad_fusion(int which);                 /* on? (default on; the env vars turn it off) */
bool sr_set_grad_fusion(int which, bool on);    /* returns the previous setting */
const char *sr_grad_fusion_name(int which);     /* "slices", "cast_gemm", "recompute", "scale", "accum", "defer" */

/* the defer fusion (top of this file): what is left of a rule, run after its input's producer's
** backward with x, the rule's weakly saved slot recomputed (viewed as it was saved); keep is what
** the rule kept for it. Returns NULL, or a gradient the pass adds into leaf. */
typedef sr_tensor *(*sr_deferred_fn)(sr_tensor *x, sr_tensor *keep, sr_tensor *leaf, double f);
/* For a backward rule of n: defers fn(x, keep, leaf, f) where x is n's weakly saved slot k, or
** returns false (the rule does the work now): the fusion is off, slot k is not saved weakly by an
** SR_NODE_EW_PAIR producer (or a float cast of one) whose last consumer is n, or leaf (where the
** deferred work adds its gradient) is not an fp32 leaf whose .grad can take it in place. */
bool sr_node_defer(sr_node *n, int k, sr_deferred_fn fn, sr_tensor *keep, sr_tensor *leaf, double f);

/* For a backward rule of n: a tensor shaped and typed as input i, any strides, whose memory is
** where input i's gradient ends up, or NULL. Borrowed (the node upstream holds it). A rule that
** writes the whole gradient into it (=) sets grads_in[i] to it (retained); one that does not leaves it
** untouched. Offered at most once per gradient per pass. */
sr_tensor *sr_grad_dest(sr_node *n, int i);
/* For a backward rule of n: the fp32 leaf whose float cast (a SR_NODE_CAST node) is input i, when
** the rule may add input i's gradient straight into the leaf's .grad instead of returning it (the
** cast_gemm fusion is on); else NULL. Borrowed. Other readers of the cast still send their
** gradients through it: the leaf gets the sum either way. */
sr_tensor *sr_grad_cast_leaf(sr_node *n, int i);
/* where to add a gradient of leaf: its .grad (contiguous, its dtype and device; *beta = 1), or a
** new uninitialised tensor made its .grad now (*beta = 0: the caller must write all of it); NULL
** when .grad cannot be written in place (the caller falls back). The caller bumps the version. */
sr_tensor *sr_grad_leaf_target(sr_tensor *leaf, double *beta);
/* For a backward rule of n: the gradient input i has received so far (its producer's output slot),
** for the rule to add input i's gradient into (beta = 1) and leave grads_in[i] NULL: the accumulate
** fusion is on and the sum is in input i's dtype, device and shape; its pending scale applied, made
** private first (a contiguous copy) when another tensor holds it or shares its memory, as the add
** would; the slot's own destination only when contiguous. Else NULL (the rule returns the
** gradient, summed by an add). Borrowed. The caller bumps the version. */
sr_tensor *sr_grad_acc_target(sr_node *n, int i);

#endif
