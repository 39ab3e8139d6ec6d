/*
** core/ops_cast.c: the differentiable conversions: float casts, device transfers, clones (and
** contiguous, a clone where needed). The gradient goes back converted (cast_backward). A float
** cast of a recomputable output (relu2's, rms_norm's: autograd.h "recompute") is recomputable in
** turn, so a linear under autocast, F.linear(F.cast(rms_norm(x), bf16), w), keeps no bf16 copy.
*/
#include "core/autograd.h"    /* defines: sr_node, sr_node_recomputable, sr_node_recomputed */
#include "core/copy.h"        /* defines: sr_to_raw */
#include "core/ops.h"
#include "core/ops_common.h"  /* defines: record */

/* the gradient converted back; a clone's (same device and dtype) passes as it is, as PyTorch's */
static void cast_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  if (!go[0]) return;
  bool same = go[0]->storage->device == n->in_device[0] && go[0]->dtype == n->in_dtype[0];
  gi[0] = same ? sr_tensor_retain(go[0]) : sr_to_raw(go[0], n->in_device[0], n->in_dtype[0]);
}

/* a float cast of a recomputable output, again from its producer's recomputation (autograd.h) */
static sr_tensor *cast_recompute(sr_node *n) {
  return sr_to_raw(sr_node_recomputed(n->in[0].node), n->in_device[0], (sr_dtype)n->i[0]);
}

static sr_tensor *convert(const char *op, sr_tensor *x, sr_device d, sr_dtype dt) {
  sr_tensor *y = sr_to_raw(x, d, dt);
  if (sr_dtype_is_float(dt) && sr_dtype_is_float(x->dtype)) {
    sr_node *n = record(op, cast_backward, 1, &x, y);
    if (n && d == x->storage->device && dt != x->dtype) {
      n->flags |= SR_NODE_CAST;
      if (sr_node_recomputable(x)) { n->recompute = cast_recompute; n->i[0] = dt; }
    }
  }
  return y;
}

sr_tensor *sr_cast(sr_tensor *x, sr_dtype dt) { return convert("cast", x, x->storage->device, dt); }
sr_tensor *sr_to_device(sr_tensor *x, sr_device d) { return convert("to", x, d, x->dtype); }
sr_tensor *sr_clone(sr_tensor *x) { return convert("clone", x, x->storage->device, x->dtype); }

sr_tensor *sr_contiguous(sr_tensor *x) {
  if (sr_is_contiguous(x)) return sr_tensor_retain(x);
  return sr_clone(x);
}
