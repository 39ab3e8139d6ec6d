/*
** lua/linplace.c: the Tensor's in-place methods (copy_, fill_, zero_, add_, sub_, mul_, div_, and
** x:<f>_() for every unary op of the registry), for optimizers and initialisation (not recorded)
** and, while gradients are recorded, the element-wise ops whose gradient survives the write
** (core/ops.c sr_unary_: x:div_(c):tanh_()); a write that would leave a gradient silently wrong
** is an error, as PyTorch's autograd makes it. ltensor.c adds sr_inplace_methods to the methods.
*/
#include <lua.h>
#include <lauxlib.h>

#include "core/autograd.h"  /* defines: sr_grad_enabled */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_fill_ */
#include "core/ops.h"       /* defines: sr_unary_, sr_unary_raw, sr_binary_inplace, SR_UNARY_OPS */
#include "lua/lsr.h"

/* an in-place write into a layout whose elements share memory (an expand) would apply the op
** several times to one element, or copy several sources into it: refused, as PyTorch does
** (fill_ writes one value, so it stays allowed) */
static void writable(lua_State *L, const char *op, sr_tensor *t) {
  if (!sr_layout_non_overlapping(t->ndim, t->shape, t->stride))
    luaL_error(L, "%s: more than one element of the written tensor refers to one memory location (an expand); "
                  "clone() it first", op);
}

/* while recording: an unrecorded write into a tensor with a history, or out of one that needs its
** gradient, would lose that gradient without a word */
static void unrecorded_write(lua_State *L, const char *op, sr_tensor *t, sr_tensor *src) {
  if (!sr_grad_enabled()) return;
  if (t->grad_fn)
    luaL_error(L, "%s: in-place write to a tensor that records gradients (it has a history) is not differentiable; "
                  "use the out-of-place op", op);
  if (src && src->requires_grad)
    luaL_error(L, "%s: the source requires grad, and an in-place write does not carry its gradient; "
                  "use the out-of-place op, or detach() the source", op);
}

/* the target of an in-place method, checked: not a leaf that requires grad (outside no_grad), not
** written inside eval, not an expanded layout */
static sr_tensor *inplace_target(lua_State *L, const char *op) {
  sr_tensor *t = sr_check_tensor(L, 1);
  luaL_argcheck(L, !(t->requires_grad && !t->grad_fn && sr_grad_enabled()), 1,
                "in-place update of a leaf that requires grad; wrap it in speedrun.no_grad");
  if (t->requires_grad) sr_eval_guard(L, "an in-place write to a tensor that requires grad");
  writable(L, op, t);
  return t;
}

/* copy_(src): src broadcast to this tensor's shape; any dtype/device */
static int m_copy_(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1), *s = sr_check_tensor(L, 2);
  if (t->requires_grad) sr_eval_guard(L, "an in-place write to a tensor that requires grad");
  unrecorded_write(L, "copy_", t, s);
  writable(L, "copy_", t);
  sr_tensor *e = sr_expand(s, t->ndim, t->shape);  /* fails naming both shapes */
  sr_push_tensor(L, e);
  sr_copy_(t, e);
  lua_settop(L, 1);
  return 1;
}

static int fill(lua_State *L, double v) {
  sr_tensor *t = sr_check_tensor(L, 1);
  if (t->requires_grad) sr_eval_guard(L, "an in-place write to a tensor that requires grad");
  unrecorded_write(L, "fill_", t, NULL);   /* one value: an expanded layout is fine */
  sr_fill_(t, v);
  lua_settop(L, 1);
  return 1;
}
static int m_fill_(lua_State *L) { return fill(L, luaL_checknumber(L, 2)); } static int m_zero_(lua_State *L) { return fill(L, 0.0); }

/* add_(other [, alpha]) / mul_ / sub_ / div_: other is a tensor (broadcast) or a number; with a
** number, recorded while gradients are (sr_unary_); with a tensor, only an add or subtract of one
** that needs no gradient leaves a history right (the gradient passes through unchanged) */
static int inplace(lua_State *L, sr_binary_fn fn) {
  static const char *const names[] = {[SR_BINARY_ADD] = "add_", [SR_BINARY_SUB] = "sub_", [SR_BINARY_MUL] = "mul_",
                                      [SR_BINARY_DIV] = "div_"};
  sr_tensor *t = inplace_target(L, names[fn]);
  if (lua_isnumber(L, 2)) {
    double v = lua_tonumber(L, 2) * luaL_optnumber(L, 3, 1.0);
    switch (fn) {
      case SR_BINARY_ADD: sr_unary_(SR_UNARY_ADD_SCALAR, t, v); break;
      case SR_BINARY_SUB: sr_unary_(SR_UNARY_ADD_SCALAR, t, -v); break;
      case SR_BINARY_MUL: sr_unary_(SR_UNARY_MUL_SCALAR, t, v); break;
      default: sr_unary_(SR_UNARY_MUL_SCALAR, t, 1.0 / v); break;
    }
  } else {
    sr_tensor *o = sr_check_tensor(L, 2);
    if (!((fn == SR_BINARY_ADD || fn == SR_BINARY_SUB) && !o->requires_grad)) unrecorded_write(L, names[fn], t, o);
    if (!lua_isnoneornil(L, 3)) {
      sr_tensor *scaled = sr_unary_raw(SR_UNARY_MUL_SCALAR, o, luaL_checknumber(L, 3));
      sr_push_tensor(L, scaled);
      o = scaled;
    }
    if (o->dtype != t->dtype) {
      o = sr_to_raw(o, t->storage->device, t->dtype);
      sr_push_tensor(L, o);
    }
    sr_binary_inplace(fn, t, o);
  }
  lua_settop(L, 1);
  return 1;
}

static int m_add_(lua_State *L) { return inplace(L, SR_BINARY_ADD); }
static int m_sub_(lua_State *L) { return inplace(L, SR_BINARY_SUB); }
static int m_mul_(lua_State *L) { return inplace(L, SR_BINARY_MUL); }
static int m_div_(lua_State *L) { return inplace(L, SR_BINARY_DIV); }

/* x:<f>_() for every F.<f> of the registry's unary ops (x:tanh_(), x:exp_(), ...) */
#define SR_X(FN, name) static int m_##name##_(lua_State *L) { \
    sr_unary_(SR_UNARY_##FN, inplace_target(L, #name "_"), 0.0); \
    lua_settop(L, 1); \
    return 1; }
SR_UNARY_OPS(SR_X)
#undef SR_X

const luaL_Reg sr_inplace_methods[] = {
  {"copy_", m_copy_}, {"fill_", m_fill_}, {"zero_", m_zero_}, {"add_", m_add_}, {"sub_", m_sub_}, {"mul_", m_mul_},
  {"div_", m_div_},
#define SR_X(FN, name) {#name "_", m_##name##_},
  SR_UNARY_OPS(SR_X)
#undef SR_X
  {NULL, NULL}
};
