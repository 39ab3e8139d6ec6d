/*
** lua/lops.c: speedrun.F, the differentiable functions, as thin Lua bindings over host/core/ops.c,
** and custom autograd functions written in Lua (forward and backward as Lua functions).
** Dimensions are 1-based as in the shape table; negative ones count from the end. Index
** values held in tensors (token ids, embedding rows, targets, argmax) are 0-based.
*/
#include <math.h>      /* defines: NAN */
#include <stdint.h>    /* defines: INT32_MIN, INT32_MAX */
#include <stdio.h>     /* defines: snprintf */
#include <string.h>    /* defines: strcmp */

#include <lua.h>
#include <lauxlib.h>

#include "core/autograd.h"  /* defines: sr_node_new, sr_set_lua_backward_hook */
#include "lua/lsr.h"
#include "core/copy.h"      /* defines: sr_fill_ */
#include "core/ops.h"

/* a number argument becomes a 0-d tensor like `like` (float for an int32 `like`, as arithmetic
** wants; with keep_int an integer beside an int32 `like` stays int32, as torch.where picks) */
static sr_tensor *tensor_or_scalar(lua_State *L, int arg, sr_tensor *like, bool keep_int) {
  sr_tensor *t = sr_to_tensor(L, arg);
  if (t) return t;
  double v = luaL_checknumber(L, arg);
  if (keep_int && like->dtype == SR_I32 && lua_isinteger(L, arg) && v >= INT32_MIN && v <= INT32_MAX) {
    t = sr_tensor_new(SR_I32, like->storage->device, 0, NULL);
    sr_push_tensor(L, t);  /* owned by the stack while it is filled (on the device) */
    sr_fill_(t, v);
  } else {
    t = sr_scalar_like(like, v);
    sr_push_tensor(L, t);  /* owned by the stack */
  }
  lua_replace(L, arg);
  return t;
}

/* ------------------------------------------------------------------------------------------ */
/* element-wise */

static int unary(lua_State *L, sr_unary_fn fn) {
  sr_push_tensor(L, sr_unary(fn, sr_check_tensor(L, 1), 0.0));
  return 1;
}

/* F.neg, F.exp, ...: one per SR_UNARY_OPS entry (core/registry.h) */
#define SR_X(FN, name) static int F_##name(lua_State *L) { return unary(L, SR_UNARY_##FN); }
SR_UNARY_OPS(SR_X)
#undef SR_X

/* gelu(x [, approximate]): approximate = "tanh" for the tanh form, else exact (erf) */
static int F_gelu(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  const char *approx = luaL_optstring(L, 2, "none");
  luaL_argcheck(L, !strcmp(approx, "none") || !strcmp(approx, "tanh"), 2, "approximate must be 'none' or 'tanh'");
  sr_push_tensor(L, sr_unary(strcmp(approx, "tanh") ? SR_UNARY_GELU_ERF : SR_UNARY_GELU_TANH, x, 0.0));
  return 1;
}

/* binary with numbers on either side: tensor op number uses the scalar unary kernels */
static int binary(lua_State *L, sr_binary_fn fn) {
  sr_tensor *a = sr_to_tensor(L, 1), *b = sr_to_tensor(L, 2);
  if (a && !b && lua_isnumber(L, 2)) {
    double v = lua_tonumber(L, 2);
    switch (fn) {
      case SR_BINARY_ADD: sr_push_tensor(L, sr_unary(SR_UNARY_ADD_SCALAR, a, v)); return 1;
      case SR_BINARY_SUB: sr_push_tensor(L, sr_unary(SR_UNARY_ADD_SCALAR, a, -v)); return 1;
      case SR_BINARY_MUL: sr_push_tensor(L, sr_unary(SR_UNARY_MUL_SCALAR, a, v)); return 1;
      case SR_BINARY_DIV: sr_push_tensor(L, sr_unary(SR_UNARY_MUL_SCALAR, a, 1.0 / v)); return 1;
      case SR_BINARY_POW: sr_push_tensor(L, sr_unary(SR_UNARY_POW_SCALAR, a, v)); return 1;
      default: break;
    }
  }
  if (b && !a && lua_isnumber(L, 1)) {
    double v = lua_tonumber(L, 1);
    switch (fn) {
      case SR_BINARY_ADD: sr_push_tensor(L, sr_unary(SR_UNARY_ADD_SCALAR, b, v)); return 1;
      case SR_BINARY_MUL: sr_push_tensor(L, sr_unary(SR_UNARY_MUL_SCALAR, b, v)); return 1;
      case SR_BINARY_SUB: sr_push_tensor(L, sr_unary(SR_UNARY_RSUB_SCALAR, b, v)); return 1;
      case SR_BINARY_DIV: sr_push_tensor(L, sr_unary(SR_UNARY_RDIV_SCALAR, b, v)); return 1;
      default: break;
    }
  }
  if (!a && !b) luaL_argerror(L, 1, "one of the two arguments must be a tensor");
  sr_tensor *like = a ? a : b;
  a = tensor_or_scalar(L, 1, like, false);
  b = tensor_or_scalar(L, 2, like, false);
  sr_push_tensor(L, sr_binary(fn, a, b));
  return 1;
}

/* F.add, F.sub, ...: one per SR_BINARY_FNS entry */
#define SR_X(FN, name) static int F_##name(lua_State *L) { return binary(L, SR_BINARY_##FN); }
SR_BINARY_FNS(SR_X)
#undef SR_X

/* where(cond, a, b): a or b may be numbers */
static int F_where(lua_State *L) {
  sr_tensor *cond = sr_check_tensor(L, 1);
  sr_tensor *a = sr_to_tensor(L, 2), *b = sr_to_tensor(L, 3);
  luaL_argcheck(L, a || b, 2, "a or b must be a tensor");
  sr_tensor *like = a ? a : b;
  /* where(cond, 9, ids) with int32 ids picks between int32 values (torch.where, masked_fill) */
  a = tensor_or_scalar(L, 2, like, true);
  b = tensor_or_scalar(L, 3, like, true);
  sr_push_tensor(L, sr_where(cond, a, b));
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* reductions: f(x) over everything, f(x, dim [, keepdim]) along one dim */

static int max_dim(lua_State *L);
static int reduce(lua_State *L, sr_reduce_fn fn) {
  sr_tensor *x = sr_check_tensor(L, 1);
  if (fn == SR_REDUCE_MAX && !lua_isnoneornil(L, 2)) return max_dim(L);
  if (lua_isnoneornil(L, 2)) {
    sr_tensor *flat = sr_reshape(x, 1, (int64_t[]){-1});
    sr_push_tensor(L, flat);
    sr_push_tensor(L, sr_reduce(fn, flat, 0, false));
    return 1;
  }
  int d = sr_check_dim(L, 2, x->ndim);
  sr_push_tensor(L, sr_reduce(fn, x, d, lua_toboolean(L, 3)));
  return 1;
}

/* max(x) -> value; max(x, dim [, keepdim]) -> values, indices (0-based int32, like token ids) */
static int max_dim(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  int d = sr_check_dim(L, 2, x->ndim);
  bool keep = lua_toboolean(L, 3);
  sr_push_tensor(L, sr_reduce(SR_REDUCE_MAX, x, d, keep));
  sr_push_tensor(L, sr_argmax(x, d, keep));
  return 2;
}

/* F.sum, F.mean, F.max, F.sumsq: one per SR_REDUCE_FNS entry */
#define SR_X(FN, name) static int F_##name(lua_State *L) { return reduce(L, SR_REDUCE_##FN); }
SR_REDUCE_FNS(SR_X)
#undef SR_X

/* cumsum(x, dim): inclusive prefix sums along dim (float or int32) */
static int F_cumsum(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  sr_push_tensor(L, sr_cumsum(x, sr_check_dim(L, 2, x->ndim)));
  return 1;
}

/* argsort(x [, dim = -1 [, {descending = false, stable = true}]]) -> 0-based int32 indices, the
** stable order (equal keys in index order, so stable = false gives the same answer) */
static int F_argsort(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  int d = lua_isnoneornil(L, 2) ? x->ndim - 1 : sr_check_dim(L, 2, x->ndim);
  bool desc = false;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "descending");
    desc = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  sr_push_tensor(L, sr_argsort(x, d, desc));
  return 1;
}

/* argmax(x, dim [, keepdim]) -> 0-based int32 indices */
static int F_argmax(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  sr_push_tensor(L, sr_argmax(x, sr_check_dim(L, 2, x->ndim), lua_toboolean(L, 3)));
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* linear algebra and layers */

static int F_matmul(lua_State *L) {
  sr_push_tensor(L, sr_matmul(sr_check_tensor(L, 1), sr_check_tensor(L, 2)));
  return 1;
}

static int F_linear(lua_State *L) {
  sr_push_tensor(L, sr_linear(sr_check_tensor(L, 1), sr_check_tensor(L, 2), sr_opt_tensor(L, 3)));
  return 1;
}

/* embedding(idx, weight): as torch.nn.functional.embedding */
static int F_embedding(lua_State *L) {
  sr_push_tensor(L, sr_embedding(sr_check_tensor(L, 2), sr_check_tensor(L, 1)));
  return 1;
}

/* rms_norm(x [, weight [, eps]]); eps defaults to 1e-6 */
static int F_rms_norm(lua_State *L) {
  double eps = luaL_optnumber(L, 3, 1e-6);
  luaL_argcheck(L, eps >= 0, 3, "eps must be >= 0");
  sr_push_tensor(L, sr_rms_norm(sr_check_tensor(L, 1), sr_opt_tensor(L, 2), eps));
  return 1;
}

/* layer_norm(x [, weight [, bias [, eps]]]); eps defaults to 1e-5 */
static int F_layer_norm(lua_State *L) {
  double eps = luaL_optnumber(L, 4, 1e-5);
  luaL_argcheck(L, eps >= 0, 4, "eps must be >= 0");
  sr_push_tensor(L, sr_layer_norm(sr_check_tensor(L, 1), sr_opt_tensor(L, 2), sr_opt_tensor(L, 3), eps));
  return 1;
}

static int softmax(lua_State *L, bool log) {
  sr_tensor *x = sr_check_tensor(L, 1);
  int d = lua_isnoneornil(L, 2) ? x->ndim - 1 : sr_check_dim(L, 2, x->ndim);
  sr_push_tensor(L, sr_softmax(x, d, log));
  return 1;
}

static int F_softmax(lua_State *L) { return softmax(L, false); }
static int F_log_softmax(lua_State *L) { return softmax(L, true); }

/* cross_entropy(logits [..., V], targets [...] int32 [, {ignore_index=-100, reduction="mean",
** inplace=false}]); inplace: when recording, the forward writes the gradient over logits (one
** pass over them, no second buffer); the caller must not read logits afterwards */
static int F_cross_entropy(lua_State *L) {
  sr_tensor *logits = sr_check_tensor(L, 1), *targets = sr_check_tensor(L, 2);
  int64_t ignore = -100;
  int reduction = 0;
  bool inplace = false;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "ignore_index");
    if (!lua_isnil(L, -1)) ignore = luaL_checkinteger(L, -1);
    lua_getfield(L, 3, "reduction");
    const char *r = luaL_optstring(L, -1, "mean");
    if (!strcmp(r, "mean")) reduction = 0;
    else if (!strcmp(r, "sum")) reduction = 1;
    else if (!strcmp(r, "none")) reduction = 2;
    else luaL_argerror(L, 3, "reduction must be 'mean', 'sum' or 'none'");
    lua_getfield(L, 3, "inplace");
    inplace = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  sr_push_tensor(L, sr_cross_entropy(logits, targets, ignore, reduction, inplace));
  return 1;
}

/* rotary(x, cos, sin): x [B,T,H,D], cos and sin of T*D/2 elements (e.g. [1,T,1,D/2]) */
static int F_rotary(lua_State *L) {
  sr_push_tensor(L, sr_rotary(sr_check_tensor(L, 1), sr_check_tensor(L, 2), sr_check_tensor(L, 3)));
  return 1;
}

/* scaled_dot_product_attention(q, k, v [, {causal=true, scale=1/sqrt(D)}]) q,k,v [B,H,T,D] */
static int F_sdpa(lua_State *L) {
  bool causal = true;
  double scale = 0;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "causal");
    if (!lua_isnil(L, -1)) causal = lua_toboolean(L, -1);
    lua_getfield(L, 4, "scale");
    if (!lua_isnil(L, -1)) { scale = luaL_checknumber(L, -1); luaL_argcheck(L, scale > 0, 4, "scale must be > 0"); }
    lua_pop(L, 2);
  }
  sr_push_tensor(L, sr_sdpa(sr_check_tensor(L, 1), sr_check_tensor(L, 2), sr_check_tensor(L, 3), causal, scale));
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* flex attention (lua/speedrun/attention.lua makes the mask objects over these) */

/* field k of the table at arg: an integer >= 0 (nil: def) */
static int64_t opt_count(lua_State *L, int arg, const char *k, int64_t def) {
  lua_getfield(L, arg, k);
  int64_t v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = (int64_t)lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0) sr_argerror(L, arg, "%s must be an integer >= 0", k);
  }
  lua_pop(L, 1);
  return v;
}
/* field k of the table at arg: an integer >= min (nil: def) into *n, or a one-int32 tensor (left
** on the stack, so it stays referenced; read on its device when the kernels run) returned */
static sr_tensor *opt_count_or_tensor(lua_State *L, int arg, const char *k, int64_t min, int64_t def, int64_t *n) {
  lua_getfield(L, arg, k);
  *n = def;
  sr_tensor *t = lua_isnil(L, -1) ? NULL : sr_to_tensor(L, -1);
  if (!t && !lua_isnil(L, -1)) {
    int ok;
    *n = (int64_t)lua_tointegerx(L, -1, &ok);
    if (!ok || *n < min) sr_argerror(L, arg, "%s must be an integer >= %d or an int32 tensor", k, (int)min);
  }
  if (!t) lua_pop(L, 1);
  return t;
}
/* field k of the table at arg: a tensor or nil (left on the stack, so it stays referenced) */
static sr_tensor *opt_field_tensor(lua_State *L, int arg, const char *k) {
  lua_getfield(L, arg, k);
  if (lua_isnil(L, -1)) return NULL;
  sr_tensor *t = sr_to_tensor(L, -1);
  if (!t) sr_argerror(L, arg, "%s must be a tensor", k);
  return t;
}
static bool opt_bool(lua_State *L, int arg, const char *k, bool def) {
  lua_getfield(L, arg, k);
  bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}
/* the mask's device: opts.device, else that of `like` (when not NULL), else cpu */
static sr_device mask_device(lua_State *L, int arg, const sr_tensor *like) {
  lua_getfield(L, arg, "device");
  sr_device d = sr_check_device(L, lua_gettop(L), like ? like->storage->device : SR_CPU);
  lua_pop(L, 1);
  return d;
}

/* flex_block_mask{T=, block=128, causal=true, doc_ids=, window=, window_blocks=, device=} -> the
** packed block mask (core/flex.h); window and window_blocks a number or one int32 tensor */
static int F_flex_block_mask(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t T = opt_count(L, 1, "T", -1), block = opt_count(L, 1, "block", 128);
  if (T < 0) sr_argerror(L, 1, "T is required");
  bool causal = opt_bool(L, 1, "causal", true);
  int64_t window, wb;
  sr_tensor *doc = opt_field_tensor(L, 1, "doc_ids");
  sr_tensor *wt = opt_count_or_tensor(L, 1, "window", 0, 0, &window);
  sr_tensor *wbt = opt_count_or_tensor(L, 1, "window_blocks", 1, 0, &wb);
  sr_tensor *like = doc ? doc : wbt ? wbt : wt;
  sr_push_tensor(L, sr_flex_block_mask(T, block, mask_device(L, 1, like), causal, doc, window, wt, wb, wbt));
  return 1;
}

/* flex_block_mask_lists{T=, block=128, kv_num_blocks=, kv_indices=, full_kv_num_blocks=,
** full_kv_indices=, doc_ids=, device=} -> the packed block mask */
static int F_flex_block_mask_lists(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t T = opt_count(L, 1, "T", -1), block = opt_count(L, 1, "block", 128);
  if (T < 0) sr_argerror(L, 1, "T is required");
  sr_tensor *kn = opt_field_tensor(L, 1, "kv_num_blocks"), *ki = opt_field_tensor(L, 1, "kv_indices");
  if (!kn || !ki) sr_argerror(L, 1, "kv_num_blocks and kv_indices are required");
  sr_tensor *fn = opt_field_tensor(L, 1, "full_kv_num_blocks"), *fi = opt_field_tensor(L, 1, "full_kv_indices");
  sr_tensor *doc = opt_field_tensor(L, 1, "doc_ids");
  sr_push_tensor(L, sr_flex_block_mask_lists(T, block, mask_device(L, 1, kn), kn, ki, fn, fi, doc));
  return 1;
}

/* flex_attention(q, k, v, mask [, {scale = 1/sqrt(D)}]): q, k, v [B,H,T,D]; mask a table with
** data (the packed mask), causal, window (a number or one int32 tensor), doc_ids (its element
** mask) */
static int F_flex_attention(lua_State *L) {
  lua_settop(L, 5);  /* the fields read below go above the arguments */
  luaL_checktype(L, 4, LUA_TTABLE);
  sr_tensor *bm = opt_field_tensor(L, 4, "data");
  if (!bm) sr_argerror(L, 4, "not a block mask (speedrun.attention.block_mask makes one)");
  bool causal = opt_bool(L, 4, "causal", false), has_doc = opt_bool(L, 4, "has_doc", false);
  int64_t window;
  sr_tensor *wt = opt_count_or_tensor(L, 4, "window", 0, 0, &window);
  double scale = 0;
  if (!lua_isnil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    lua_getfield(L, 5, "scale");
    if (!lua_isnil(L, -1)) { scale = luaL_checknumber(L, -1); luaL_argcheck(L, scale > 0, 5, "scale must be > 0"); }
    lua_pop(L, 1);
  }
  sr_push_tensor(L, sr_flex_attention(sr_check_tensor(L, 1), sr_check_tensor(L, 2), sr_check_tensor(L, 3), bm, causal, window, wt, has_doc, scale));
  return 1;
}

static int F_cast(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  sr_dtype dt = (sr_dtype)sr_check_dtype(L, 2, x->dtype);
  sr_push_tensor(L, dt == x->dtype ? sr_tensor_retain(x) : sr_cast(x, dt));
  return 1;
}

/* to_fp8(x, dtype, scale [, {saturate=true}]): x.mul(scale).to(dtype) for dtype "float8_e4m3fn"
** (or "float8_e4m3", "e4m3") or "float8_e5m2" ("e5m2"), rounded to nearest even; saturating at
** +-448 / +-57344 unless saturate = false (then torch's .to: NaN / +-inf beyond) */
static int F_to_fp8(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  sr_dtype dt = (sr_dtype)sr_check_dtype(L, 2, SR_F8E4M3);
  double scale = luaL_checknumber(L, 3);
  bool sat = true;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "saturate");
    if (!lua_isnil(L, -1)) sat = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  sr_push_tensor(L, sr_to_fp8(x, dt, scale, sat));
  return 1;
}

/* field key of the options table at arg: a number into *v, or a tensor (returned), or absent (1) */
static sr_tensor *scale_field(lua_State *L, int arg, const char *key, double *v) {
  lua_getfield(L, arg, key);
  sr_tensor *t = NULL;
  if (lua_type(L, -1) == LUA_TNUMBER) *v = lua_tonumber(L, -1);
  else if (!lua_isnil(L, -1)) t = sr_check_tensor(L, lua_absindex(L, -1));
  lua_pop(L, 1);  /* the userdata stays referenced by the options table during the call */
  return t;
}

/* scaled_mm(a, b, {scale_a=, scale_b=, out_dtype="bfloat16", use_fast_accum=false}):
** torch._scaled_mm; a [M,K] row-major float8, b [K,N] column-major float8 (W:t()), the scales
** numbers or one-element float32 tensors (default 1), out "bfloat16" or "float32" */
static int F_scaled_mm(lua_State *L) {
  sr_tensor *a = sr_check_tensor(L, 1), *b = sr_check_tensor(L, 2), *sa = NULL, *sb = NULL;
  double va = 1, vb = 1;
  sr_dtype odt = SR_BF16;
  bool fast = false;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    sa = scale_field(L, 3, "scale_a", &va);
    sb = scale_field(L, 3, "scale_b", &vb);
    lua_getfield(L, 3, "out_dtype");
    if (!lua_isnil(L, -1)) {
      int d = sr_dtype_from_name(luaL_checkstring(L, -1));
      if (d != SR_BF16 && d != SR_F32) luaL_argerror(L, 3, "out_dtype must be \"bfloat16\" or \"float32\"");
      odt = (sr_dtype)d;
    }
    lua_getfield(L, 3, "use_fast_accum");
    fast = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  sr_push_tensor(L, sr_scaled_mm(a, b, va, vb, sa, sb, odt, fast));
  return 1;
}

/* cat({tensors}, dim) */
static int F_cat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "expected 1 to 64 tensors");
  sr_tensor *xs[64];
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    xs[i] = sr_to_tensor(L, -1);
    if (!xs[i]) luaL_argerror(L, 1, lua_pushfstring(L, "entry %d is not a tensor", i + 1));
    lua_pop(L, 1);  /* still referenced by the table */
  }
  int d = lua_isnoneornil(L, 2) ? 0 : sr_check_dim(L, 2, xs[0]->ndim);
  sr_push_tensor(L, sr_cat(n, xs, d));
  return 1;
}

static bool has_sched(lua_State *L) {
  lua_getfield(L, 5, "sched");
  bool r = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return r;
}

/* split(x, dim, {sizes}) -> views (at most split_max = SR_NODE_MAXOUT pieces; one tape node).
** F.split/F.chunk use it */
static int F_split_views(lua_State *L) {
  sr_tensor *x = sr_check_tensor(L, 1);
  int d = sr_check_dim(L, 2, x->ndim);
  luaL_checktype(L, 3, LUA_TTABLE);
  int n = (int)luaL_len(L, 3);
  if (n < 1 || n > SR_NODE_MAXOUT) return luaL_argerror(L, 3, lua_pushfstring(L, "1 to %d pieces", SR_NODE_MAXOUT));
  int64_t sizes[SR_NODE_MAXOUT];
  for (int k = 0; k < n; k++) { lua_geti(L, 3, k + 1); sizes[k] = luaL_checkinteger(L, -1); lua_pop(L, 1); }
  sr_tensor *out[SR_NODE_MAXOUT];
  sr_split_op(x, d, n, sizes, out);
  for (int k = 0; k < n; k++) sr_push_tensor(L, out[k]);
  return n;
}

/* the options table at index 5 of adamw_ and adamw_multi_: {lr=, beta1=, beta2=, eps=,
** weight_decay=, step= [, sched=]} into val[6] (lr and step optional with sched); returns sched */
static sr_tensor *adamw_opts(lua_State *L, double val[6]) {
  luaL_checktype(L, 5, LUA_TTABLE);
  static const char *keys[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "step"};
  const double dflt[6] = {NAN, 0.9, 0.999, 1e-8, 0.0, NAN};
  for (int k = 0; k < 6; k++) {
    val[k] = dflt[k];
    lua_getfield(L, 5, keys[k]);
    if (!lua_isnil(L, -1)) val[k] = luaL_checknumber(L, -1);
    else if (isnan(val[k]) && !(k != 4 && has_sched(L))) sr_argerror(L, 5, "option '%s' is required", keys[k]);
    lua_pop(L, 1);
  }
  lua_getfield(L, 5, "sched");
  sr_tensor *sched = lua_isnil(L, -1) ? NULL : sr_check_tensor(L, -1);
  lua_pop(L, 1);  /* still referenced by the options table */
  return sched;
}

/* adamw_(param, grad, m, v, opts) in place; opts.sched: a float32 tensor {lr, step} on the
** param's device that replaces lr and step */
static int F_adamw_(lua_State *L) {
  sr_train_guard(L, "an optimizer step");
  sr_tensor *p = sr_check_tensor(L, 1), *g = sr_check_tensor(L, 2), *m = sr_check_tensor(L, 3), *v = sr_check_tensor(L, 4);
  double val[6];
  sr_tensor *sched = adamw_opts(L, val);
  sr_adamw_(p, g, m, v, val[0], val[1], val[2], val[3], val[4], sched ? 1 : (int64_t)val[5], sched);
  return 0;
}

/* the tensors of the list at stack index arg, from its position `at` of a tensor array (a full
** userdata the caller pushed, so the GC owns it) with stride `every` */
static void tensor_list(lua_State *L, int arg, sr_tensor **out, int at, int every, int n) {
  for (int i = 0; i < n; i++) {
    lua_geti(L, arg, i + 1);
    sr_tensor *x = sr_to_tensor(L, -1);
    if (!x) luaL_argerror(L, arg, lua_pushfstring(L, "entry %d is not a tensor", i + 1));
    lua_pop(L, 1);  /* still referenced by the table */
    out[at + every * i] = x;
  }
}

/* adamw_multi_({params}, {grads}, {ms}, {vs}, opts): adamw_ on every parameter in one kernel call */
static int F_adamw_multi_(lua_State *L) {
  sr_train_guard(L, "an optimizer step");
  for (int a = 1; a <= 4; a++) luaL_checktype(L, a, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  for (int a = 2; a <= 4; a++)
    luaL_argcheck(L, luaL_len(L, a) == n, a, "the four lists must have the same length");
  double val[6];
  sr_tensor *sched = adamw_opts(L, val);
  sr_tensor **list = lua_newuserdatauv(L, (size_t)(4 * n + 1) * sizeof *list, 0);
  for (int a = 1; a <= 4; a++) tensor_list(L, a, list, a - 1, 4, n);
  sr_adamw_multi_(n, list, val[0], val[1], val[2], val[3], val[4], sched ? 1 : (int64_t)val[5], sched);
  return 0;
}

/* sumsq_multi({tensors}) -> [1] tensor: the sum of squares of all their elements */
static int F_sumsq_multi(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  sr_tensor **xs = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *xs, 0);
  tensor_list(L, 1, xs, 0, 1, n);
  sr_push_tensor(L, sr_sumsq_multi(n, xs));
  return 1;
}

/* clip_multi_({tensors}, sumsq, max_norm [, eps = 1e-6]): every tensor *= min(1, max_norm /
** (sqrt(sumsq) + eps)), on the device */
static int F_clip_multi_(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  sr_tensor *ss = sr_check_tensor(L, 2);
  double max_norm = luaL_checknumber(L, 3), eps = luaL_optnumber(L, 4, 1e-6);
  int n = (int)luaL_len(L, 1);
  sr_tensor **xs = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *xs, 0);
  tensor_list(L, 1, xs, 0, 1, n);
  sr_clip_multi_(n, xs, ss, max_norm, eps);
  return 0;
}

static const luaL_Reg F_functions[] = {
#define SR_X(FN, name) {#name, F_##name},
  SR_UNARY_OPS(SR_X) SR_BINARY_FNS(SR_X) SR_REDUCE_FNS(SR_X)
#undef SR_X
  {"gelu", F_gelu}, {"where", F_where}, {"argmax", F_argmax}, {"cumsum", F_cumsum}, {"argsort", F_argsort}, {"matmul", F_matmul}, {"linear", F_linear}, {"embedding", F_embedding},
  {"rms_norm", F_rms_norm}, {"layer_norm", F_layer_norm}, {"softmax", F_softmax}, {"log_softmax", F_log_softmax},
  {"cross_entropy", F_cross_entropy}, {"scaled_dot_product_attention", F_sdpa},
  {"flex_attention", F_flex_attention}, {"flex_block_mask", F_flex_block_mask}, {"flex_block_mask_lists", F_flex_block_mask_lists}, {"rotary", F_rotary}, {"cast", F_cast}, {"cat", F_cat},
  {"adamw_", F_adamw_}, {"adamw_multi_", F_adamw_multi_}, {"sumsq_multi", F_sumsq_multi},
  {"clip_multi_", F_clip_multi_}, {"split_views", F_split_views}, {"to_fp8", F_to_fp8}, {"scaled_mm", F_scaled_mm},
  {NULL, NULL}
};

int luaopen_speedrun_F(lua_State *L) {
  luaL_newlib(L, F_functions);
  return 1;
}

/* speedrun.core.op_names: {unary = {"neg", ...}, binary = {...}, compare = {...}, reduce = {...}},
** the F functions of each registry list (compare: the binary ones that give 1 or 0), so Lua code
** and tests iterate them instead of repeating the names */
static void push_names(lua_State *L, const char *const *names, int n, const char *key) {
  lua_createtable(L, n, 0);
  for (int k = 0; k < n; k++) {
    lua_pushstring(L, names[k]);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, key);
}
void sr_push_op_names(lua_State *L) {
#define SR_X(FN, name) #name,
  static const char *const unary[] = {SR_UNARY_OPS(SR_X)}, *const binary[] = {SR_BINARY_FNS(SR_X)},
                           *const compare[] = {SR_BINARY_CMP(SR_X)}, *const reduce[] = {SR_REDUCE_FNS(SR_X)};
#undef SR_X
  lua_createtable(L, 0, 4);
  push_names(L, unary, (int)(sizeof unary / sizeof *unary), "unary");
  push_names(L, binary, (int)(sizeof binary / sizeof *binary), "binary");
  push_names(L, compare, (int)(sizeof compare / sizeof *compare), "compare");
  push_names(L, reduce, (int)(sizeof reduce / sizeof *reduce), "reduce");
}

/* ------------------------------------------------------------------------------------------ */
/* custom autograd functions: the Lua side (lua/speedrun/autograd.lua) runs forward under
** no_grad, then calls record_custom(backward, ctx, {inputs}, {outputs}); the node keeps a
** registry reference to {backward, ctx} and calls backward(ctx, grad_outputs...) */

static lua_State *custom_state;

static void lua_backward_hook(sr_node *n, sr_tensor **go, sr_tensor **gi) {
  lua_State *L = custom_state;
  if (!go) {  /* node freed: drop the reference */
    luaL_unref(L, LUA_REGISTRYINDEX, n->lua_ref);
    n->lua_ref = 0;
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, n->lua_ref);
  lua_geti(L, -1, 1);  /* backward */
  lua_geti(L, -2, 2);  /* ctx */
  for (int k = 0; k < n->nout; k++) {
    if (go[k]) sr_push_tensor(L, sr_tensor_retain(go[k]));
    else lua_pushnil(L);
  }
  /* protected, with the scratch floor raised: an op failing inside the Lua backward (caught
  ** there or not) releases only its own scratch entries; an error re-raised through sr_fail
  ** releases the pass's (the scratch list, host/core/tensor.h) */
  int floor = sr_scratch_set_floor(sr_scratch_mark());
  int status = lua_pcall(L, 1 + n->nout, n->nin, 0);
  sr_scratch_set_floor(floor);
  if (status != LUA_OK) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_pop(L, 2);
    sr_fail("%s", msg);
  }
  int base = lua_gettop(L) - n->nin;
  for (int i = 0; i < n->nin; i++) {  /* every result checked before any is kept */
    if (!sr_to_tensor(L, base + 1 + i) && !lua_isnil(L, base + 1 + i)) {
      const char *type = luaL_typename(L, base + 1 + i);
      lua_pop(L, n->nin + 1);
      sr_fail("custom function backward: result %d is a %s, expected a tensor or nil", i + 1, type);
    }
  }
  for (int i = 0; i < n->nin; i++) gi[i] = n->needs[i] ? sr_tensor_retain(sr_to_tensor(L, base + 1 + i)) : NULL;
  lua_pop(L, n->nin + 1);
}

static void custom_backward(sr_node *n, sr_tensor **go, sr_tensor **gi) { sr_lua_node_backward(n, go, gi); }

static int f_record_custom(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  const char *name = luaL_optstring(L, 5, "custom");
  int nin = (int)luaL_len(L, 3), nout = (int)luaL_len(L, 4);
  luaL_argcheck(L, nin <= SR_NODE_MAXIN, 3, "too many tensor inputs for a custom function");
  if (nout < 1 || nout > SR_NODE_MAXOUT)
    return luaL_argerror(L, 4, lua_pushfstring(L, "a custom function returns 1 to %d tensors", SR_NODE_MAXOUT));
  sr_tensor *in[SR_NODE_MAXIN] = {0}, *out[SR_NODE_MAXOUT] = {0};
  for (int i = 0; i < nin; i++) { lua_geti(L, 3, i + 1); in[i] = sr_to_tensor(L, -1); lua_pop(L, 1); }
  for (int k = 0; k < nout; k++) {
    lua_geti(L, 4, k + 1);
    out[k] = sr_to_tensor(L, -1);
    if (!out[k]) luaL_argerror(L, 4, "outputs must be tensors");
    lua_pop(L, 1);
  }
  if (!sr_needs_grad(nin, in)) return 0;
  sr_node *n = sr_node_new(name, custom_backward, nin, in);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  n->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  custom_state = L;
  sr_node_attach(n, nout, out);
  sr_node_release(n);
  return 0;
}

void sr_open_custom_functions(lua_State *L) {
  custom_state = L;
  sr_set_lua_backward_hook(lua_backward_hook);
  lua_pushcfunction(L, f_record_custom);
  lua_setfield(L, -2, "record_custom");
}
