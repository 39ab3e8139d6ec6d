/*
** lua/lshape.c: shapes and dimensions from Lua arguments, and the view methods (view, reshape,
** transpose, permute, narrow, unsqueeze, squeeze, expand). Every size a recipe passes is
** checked here before the core sees it: an integer (not NaN, not a float beyond int64 such as
** 2^63 or 1e300), >= 0 (or -1 where a size is inferred or kept), and a shape whose product fits
** the core's limits (SR_MAX_NUMEL, host/core/tensor.h); a mistake raises "bad argument #N to
** 'fname' (...)". The core checks again and refuses any view that reaches outside its storage.
*/
#include <lua.h>
#include <lauxlib.h>

#include "core/ops.h"       /* defines: sr_view_op, sr_reshape, sr_transpose_op, ... */
#include "lua/lsr.h"

/* the size at stack index idx (dimension d of argument arg): an integer >= min */
int64_t sr_check_size(lua_State *L, int arg, int idx, int d, int64_t min) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  if (!ok) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      sr_argerror(L, arg, "size %s of dimension %d is not an integer in range", lua_tostring(L, idx), d + 1);
    sr_argerror(L, arg, "size of dimension %d must be an integer, got %s", d + 1, luaL_typename(L, idx));
  }
  if (v < min)
    sr_argerror(L, arg, "size %I of dimension %d is negative%s", (lua_Integer)v, d + 1, min < 0 ? " (only -1 may be, to infer or keep it)" : "");
  return (int64_t)v;
}

/* a shape f(2, 3) or f({2, 3}) starting at arg into shape[SR_MAXDIM]; *last is the last
** argument it took; sizes >= min (0 for new tensors, -1 where -1 means inferred or kept) */
int sr_check_shape_arg(lua_State *L, int arg, int64_t *shape, int *last, int64_t min) {
  int n = 0;
  if (lua_istable(L, arg) && !sr_to_tensor(L, arg)) {
    lua_Integer len = luaL_len(L, arg);
    luaL_argcheck(L, len >= 0 && len <= SR_MAXDIM, arg, "too many dimensions");
    n = (int)len;
    for (int i = 0; i < n; i++) {
      lua_geti(L, arg, i + 1);
      shape[i] = sr_check_size(L, arg, -1, i, min);
      lua_pop(L, 1);
    }
    *last = arg;
  } else {
    int top = lua_gettop(L);
    for (int a = arg; a <= top && lua_type(L, a) == LUA_TNUMBER; a++) {
      luaL_argcheck(L, n < SR_MAXDIM, a, "too many dimensions");
      shape[n] = sr_check_size(L, a, a, n, min);
      n++;
    }
    *last = arg + n - 1;
  }
  if (min >= 0) sr_check_numel_arg(L, arg, n, shape);
  return n;
}

/* the element count of a new tensor's shape, or a bad-argument error naming it */
int64_t sr_check_numel_arg(lua_State *L, int arg, int ndim, const int64_t *shape) {
  int64_t n = sr_shape_numel(ndim, shape);
  if (n < 0) {
    char b[192];
    sr_argerror(L, arg, "shape %s is too large (more than 2^48 elements)", sr_dims_str(ndim, shape, b, sizeof b));
  }
  return n;
}

/* dims are 1-based in Lua (as the shape table); negative counts from the end */
int sr_check_dim(lua_State *L, int arg, int ndim) {
  lua_Integer d = luaL_checkinteger(L, arg);
  lua_Integer r = d < 0 ? d + ndim : d - 1;
  if (r < 0 || r >= (ndim ? ndim : 1))
    sr_argerror(L, arg, "dimension %I out of range for a %d-d tensor", d, ndim);
  return (int)r;
}

/* ------------------------------------------------------------------------------------------ */
/* views (differentiable) */

static int m_view(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 2, shape, &last, -1);
  sr_push_tensor(L, sr_view_op(t, nd, shape));
  return 1;
}

static int m_reshape(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 2, shape, &last, -1);
  sr_push_tensor(L, sr_reshape(t, nd, shape));
  return 1;
}

static int m_transpose(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int d0 = lua_isnoneornil(L, 2) ? t->ndim - 2 : sr_check_dim(L, 2, t->ndim);
  int d1 = lua_isnoneornil(L, 3) ? t->ndim - 1 : sr_check_dim(L, 3, t->ndim);
  luaL_argcheck(L, t->ndim >= 1, 1, "transpose needs at least 1 dimension");
  if (t->ndim == 1) { sr_push_tensor(L, sr_tensor_retain(t)); return 1; }
  sr_push_tensor(L, sr_transpose_op(t, d0, d1));
  return 1;
}

static int m_permute(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int perm[SR_MAXDIM];
  bool tbl = lua_istable(L, 2);
  lua_Integer n = tbl ? luaL_len(L, 2) : lua_gettop(L) - 1;
  luaL_argcheck(L, n == t->ndim, 2, "permute needs one entry per dimension");
  for (int d = 0; d < n; d++) {
    if (tbl) { lua_geti(L, 2, d + 1); perm[d] = sr_check_dim(L, -1, t->ndim); lua_pop(L, 1); }
    else perm[d] = sr_check_dim(L, d + 2, t->ndim);
  }
  sr_push_tensor(L, sr_permute_op(t, perm));
  return 1;
}

/* narrow(dim, start, length): start is 1-based, negative from the end */
static int m_narrow(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int d = sr_check_dim(L, 2, t->ndim);
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  int64_t n = t->ndim ? t->shape[d] : 1;
  luaL_argcheck(L, start >= -n && start <= n + 1, 3, "start out of range");
  luaL_argcheck(L, len >= 0, 4, "length must be >= 0");
  int64_t s0 = start < 0 ? start + n : start - 1;
  sr_push_tensor(L, sr_narrow_op(t, d, s0, len));
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  lua_Integer d = luaL_checkinteger(L, 2);
  lua_Integer dd = d < 0 ? d + t->ndim + 1 : d - 1;
  luaL_argcheck(L, dd >= 0 && dd <= t->ndim, 2, "dimension out of range");
  sr_push_tensor(L, sr_unsqueeze_op(t, (int)dd));
  return 1;
}

static int m_squeeze(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int d = lua_isnoneornil(L, 2) ? -100 : sr_check_dim(L, 2, t->ndim);
  sr_push_tensor(L, sr_squeeze_op(t, d));
  return 1;
}

static int m_expand(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 2, shape, &last, -1);
  sr_push_tensor(L, sr_expand_op(t, nd, shape));
  return 1;
}

const luaL_Reg sr_view_methods[] = {
  {"view", m_view}, {"reshape", m_reshape}, {"transpose", m_transpose}, {"permute", m_permute},
  {"narrow", m_narrow}, {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze}, {"expand", m_expand},
  {NULL, NULL}
};
