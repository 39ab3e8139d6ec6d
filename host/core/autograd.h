/*
** core/autograd.h: the tape. Every differentiable op that sees an input with requires_grad (while
** grad mode is on) creates a node holding: edges to where its inputs' gradients go (the
** producing node's output slot, or a leaf's .grad), tensors saved for the backward, scalar
** parameters, and the backward rule. sr_backward() walks the nodes in reverse topological
** order, summing gradients per output slot, then calls each rule once.
*/
#ifndef SR_AUTOGRAD_H
#define SR_AUTOGRAD_H

#include "core/tensor.h"  /* defines: sr_tensor, sr_node */

#define SR_NODE_MAXIN 6
#define SR_NODE_MAXOUT 4
#define SR_NODE_MAXSAVED 8

/* grads_out[k]: gradient of output k (NULL when nothing flowed into it; treat as zeros).
** grads_in[i]: set to a new reference holding input i's gradient (same shape as the input),
** or leave NULL; only needed when n->needs[i]. */
typedef void (*sr_backward_fn)(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);

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
  double f[6];
  int64_t i[6];
  int lua_ref;                    /* custom Lua function: registry ref of its backward, else 0 */
  /* backward-pass scratch */
  sr_tensor *grad_acc[SR_NODE_MAXOUT];
  int pending;
  unsigned epoch;                 /* the backward pass that last visited this node */
};

bool sr_grad_enabled(void);
bool sr_set_grad_enabled(bool on);       /* returns the previous mode */

/* does any of these inputs need a tape entry? */
bool sr_needs_grad(int n, sr_tensor *const *inputs);

/* create a node for inputs (NULL entries allowed) and attach outputs to it */
sr_node *sr_node_new(const char *name, sr_backward_fn bw, int nin, sr_tensor *const *inputs);
void sr_node_attach(sr_node *n, int nout, sr_tensor *const *outputs);
void sr_node_save(sr_node *n, int k, sr_tensor *t);
sr_tensor *sr_node_saved(sr_node *n, int k);  /* checks it was not modified in place since */
void sr_node_release(sr_node *n);

/* g is the implicit all-ones gradient a backward() without a gradient started from (a rule may
** skip multiplying by it) */
bool sr_grad_is_implicit_one(const sr_tensor *g);
/* forget the autograd phase and the implicit seed after a backward that failed (sr_fail left it
** halfway) */
void sr_backward_reset(void);

/* root.backward(grad): grad NULL means ones (root must then have one element) */
void sr_backward(sr_tensor *root, sr_tensor *grad);
/* custom Lua functions need the state during backward; set by the binding */
typedef void (*sr_lua_backward_hook)(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);
void sr_set_lua_backward_hook(sr_lua_backward_hook h);
void sr_lua_node_backward(sr_node *n, sr_tensor **grads_out, sr_tensor **grads_in);

#endif
