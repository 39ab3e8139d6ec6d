/*
** lua/ltensor.c: the "speedrun.Tensor" userdata (after liolib.c: a named metatable, method and
** metamethod tables, __gc/__close/__tostring), factories, conversions to and from Lua tables,
** the RNG and the autograd entry points. The differentiable functions (F) are in lops.c, the
** in-place methods in linplace.c, the view methods in lshape.c.
*/
#include <math.h>      /* defines: isnan, isinf */
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: getenv */
#include <string.h>    /* defines: strcmp */

#include <omp.h>       /* defines: omp_set_num_threads */

#include <lua.h>
#include <lauxlib.h>

#include "core/autograd.h"  /* defines: sr_backward, sr_set_grad_enabled */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw, sr_fill_, sr_tensor_zeros */
#include "core/random.h"    /* defines: sr_normal_, sr_uniform_, sr_randint_, sr_global_rng */
#include "core/registry.h"  /* defines: sr_phase_node */
#include "util/clock.h"     /* defines: sr_monotonic_s */
#include "lua/lsr.h"
#include "core/ops.h"       /* defines: sr_view_op, ... */

#ifdef SPEEDRUN_CUDA
#include "cuda/backend.h"  /* defines: sr_cuda_init */
#endif

/* ------------------------------------------------------------------------------------------ */
/* errors: sr_fail() in the core becomes a Lua error in the running state */

static lua_State *error_state;

static void lua_fail(const char *msg) {
  luaL_error(error_state, "%s", msg);
}

/* Lua sees only small boxes, so its collector would let tensors pile up: after every
** SR_GC_BYTES of new storage (host or device) run a full collection, which releases the
** tensors no Lua value refers to any more. */
#define SR_GC_BYTES ((size_t)256 << 20)
static size_t bytes_since_gc;
static bool in_gc;

static void alloc_pressure(size_t nbytes, sr_device d) {
  (void)d;
  bytes_since_gc += nbytes;
  if (bytes_since_gc < SR_GC_BYTES || in_gc) return;
  bytes_since_gc = 0;
  in_gc = true;
  /* finalizers run Lua code inside the allocating op: an op failing there (under a pcall of
  ** theirs) must leave the enclosing op's scratch entries alone */
  int floor = sr_scratch_set_floor(sr_scratch_mark());
  lua_gc(error_state, LUA_GCCOLLECT);
  sr_scratch_set_floor(floor);
  in_gc = false;
}

/* SPEEDRUN_MEMLOG=<MiB>: one stderr line per new storage of at least that size: its serial, where
** in Lua it was made (and which tape node's backward made it), and the device's live bytes after
** it; one line when such a storage is freed (bench/memlog_live.py reads the live set back) */
static void memlog(size_t nbytes, sr_device d, size_t live, uint64_t serial, int freed) {
  if (freed) {
    fprintf(stderr, "memlog: %9.1f MiB %-4s live %9.1f MiB  #%llu freed\n", (double)nbytes / 1048576.0, sr_device_name(d),
            (double)live / 1048576.0, (unsigned long long)serial);
    return;
  }
  const char *node = sr_phase_node();
  luaL_where(error_state, 1);
  fprintf(stderr, "memlog: %9.1f MiB %-4s live %9.1f MiB  #%llu %s%s%s\n", (double)nbytes / 1048576.0, sr_device_name(d),
          (double)live / 1048576.0, (unsigned long long)serial, lua_tostring(error_state, -1), node ? " backward of " : "",
          node ? node : "");
  lua_pop(error_state, 1);
}

void sr_lua_bind_errors(lua_State *L) {
  error_state = L;
  sr_set_fail_handler(lua_fail);
  sr_set_alloc_hook(alloc_pressure);
  sr_set_memlog_hook(memlog);
}

/* ------------------------------------------------------------------------------------------ */
/* the userdata */

static sr_tensor_box *check_box(lua_State *L, int arg) {
  return (sr_tensor_box *)luaL_checkudata(L, arg, SR_TENSOR_MT);
}

sr_tensor *sr_check_tensor(lua_State *L, int arg) {
  sr_tensor_box *b = check_box(L, arg);
  luaL_argcheck(L, b->t != NULL, arg, "tensor was closed");
  return b->t;
}

sr_tensor *sr_to_tensor(lua_State *L, int arg) {
  sr_tensor_box *b = (sr_tensor_box *)luaL_testudata(L, arg, SR_TENSOR_MT);
  return b ? b->t : NULL;
}

sr_tensor *sr_opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : sr_check_tensor(L, arg);
}

void sr_push_tensor(lua_State *L, sr_tensor *t) {
  /* two-phase: the box exists (empty, collectable) before it owns the tensor */
  sr_tensor_box *b = (sr_tensor_box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->t = NULL;
  luaL_setmetatable(L, SR_TENSOR_MT);
  b->t = t;
}

int sr_check_dtype(lua_State *L, int arg, sr_dtype def) {
  if (lua_isnoneornil(L, arg)) return (int)def;
  const char *name = luaL_checkstring(L, arg);
  int t = sr_dtype_from_name(name);
  if (t < 0) luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' (float32, float64, bfloat16, int32)", name));
  return t;
}

sr_device sr_check_device(lua_State *L, int arg, sr_device def) {
  if (lua_isnoneornil(L, arg)) return def;
  const char *name = luaL_checkstring(L, arg);
  if (!strcmp(name, "cpu")) return SR_CPU;
  if (!strcmp(name, "cuda") || !strcmp(name, "cuda:0") || !strcmp(name, "gpu")) return SR_CUDA;
  luaL_argerror(L, arg, lua_pushfstring(L, "unknown device '%s' (cpu or cuda)", name));
  return SR_CPU;
}

static int t_gc(lua_State *L) {
  sr_tensor_box *b = check_box(L, 1);
  sr_tensor_release(b->t);
  b->t = NULL;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* options table {dtype=, device=, requires_grad=} at arg (or none) */
typedef struct tensor_opts { sr_dtype dtype; sr_device device; bool requires_grad; } tensor_opts;

static tensor_opts check_opts(lua_State *L, int arg, sr_dtype def_dtype) {
  tensor_opts o = {def_dtype, SR_CPU, false};
  if (lua_isnoneornil(L, arg)) return o;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, "dtype");
  if (!lua_isnil(L, -1)) {
    const char *name = luaL_checkstring(L, -1);
    int t = sr_dtype_from_name(name);
    if (t < 0) sr_argerror(L, arg, "bad option dtype '%s' (float32, float64, bfloat16, int32)", name);
    o.dtype = (sr_dtype)t;
  }
  lua_getfield(L, arg, "device");
  if (!lua_isnil(L, -1)) {
    const char *name = lua_tostring(L, -1);
    if (!name) sr_argerror(L, arg, "option device must be a string, got %s", luaL_typename(L, -1));
    if (!strcmp(name, "cpu")) o.device = SR_CPU;
    else if (!strcmp(name, "cuda") || !strcmp(name, "cuda:0") || !strcmp(name, "gpu")) o.device = SR_CUDA;
    else sr_argerror(L, arg, "bad option device '%s' (cpu or cuda)", name);
  }
  lua_getfield(L, arg, "requires_grad");
  o.requires_grad = lua_toboolean(L, -1);
  if (o.requires_grad && !sr_dtype_is_float(o.dtype))  /* before anything is allocated */
    sr_argerror(L, arg, "option requires_grad needs a float dtype, not %s", sr_dtype_name(o.dtype));
  lua_pop(L, 3);
  return o;
}

static sr_tensor *finish(lua_State *L, sr_tensor *t, tensor_opts o) {
  if (o.requires_grad) {
    if (!sr_dtype_is_float(t->dtype)) {  /* check_opts rules this out before allocating */
      sr_tensor_release(t);
      sr_argerror(L, 1, "option requires_grad needs a float dtype, not %s", sr_dtype_name(t->dtype));
    }
    t->requires_grad = true;
  }
  sr_push_tensor(L, t);
  return t;
}

/* restricted runs (the sandbox sets it): empty() zeroes its memory too, so no recipe reads what
** freed storage held before (the validation batches the harness counted before setup, say) */
static bool empty_zeroed;
void sr_empty_zeroed(bool on) { empty_zeroed = on; }

static int new_filled(lua_State *L, double v, bool fill) {
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 1, shape, &last, 0);
  tensor_opts o = check_opts(L, last + 1, SR_F32);
  sr_tensor *t = sr_tensor_new(o.dtype, o.device, nd, shape);
  if (fill || empty_zeroed) sr_fill_(t, fill ? v : 0.0);
  finish(L, t, o);
  return 1;
}

static int f_zeros(lua_State *L) { return new_filled(L, 0.0, true); }
static int f_ones(lua_State *L) { return new_filled(L, 1.0, true); }
static int f_empty(lua_State *L) { return new_filled(L, 0.0, false); }

/* full(shape..., value [, opts]): the last number is the value */
static int f_full(lua_State *L) {
  int64_t shape[SR_MAXDIM];
  int last, nd;
  if (lua_istable(L, 1)) nd = sr_check_shape_arg(L, 1, shape, &last, 0);
  else {
    int nnum = 0;
    while (lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
    luaL_argcheck(L, nnum >= 1 && nnum <= SR_MAXDIM + 1, 1, "expected full(shape..., value)");
    for (nd = 0; nd < nnum - 1; nd++) shape[nd] = sr_check_size(L, nd + 1, nd + 1, nd, 0);
    sr_check_numel_arg(L, 1, nd, shape);
    last = nnum - 1;
  }
  double v = luaL_checknumber(L, last + 1);
  tensor_opts o = check_opts(L, last + 2, SR_F32);
  sr_tensor *t = sr_tensor_new(o.dtype, o.device, nd, shape);
  sr_fill_(t, v);
  finish(L, t, o);
  return 1;
}

/* arange(stop) / arange(start, stop[, step]) [, opts] */
static int f_arange(lua_State *L) {
  int nnum = 0;
  while (lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
  luaL_argcheck(L, nnum >= 1 && nnum <= 3, 1, "expected arange(stop), arange(start, stop) or arange(start, stop, step)");
  double start = nnum >= 2 ? lua_tonumber(L, 1) : 0, stop = nnum >= 2 ? lua_tonumber(L, 2) : lua_tonumber(L, 1);
  double step = nnum == 3 ? lua_tonumber(L, 3) : 1;
  luaL_argcheck(L, step != 0, 3, "step must not be 0");
  bool all_int = lua_isinteger(L, 1) && (nnum < 2 || lua_isinteger(L, 2)) && (nnum < 3 || lua_isinteger(L, 3));
  tensor_opts o = check_opts(L, nnum + 1, all_int ? SR_I32 : SR_F32);
  double len = ceil((stop - start) / step);  /* NaN or beyond any tensor: refused before the cast */
  if (!(len <= (double)SR_MAX_NUMEL)) sr_argerror(L, 1, "range [%f, %f) with step %f has too many elements", start, stop, step);
  int64_t n = len > 0 ? (int64_t)len : 0;
  sr_tensor *t = sr_tensor_new(o.dtype, o.device, 1, &n);
  sr_push_tensor(L, t);  /* owned by Lua while the kernel runs, so its failure cannot leak it */
  sr_kcall c = {.t = {t}, .nt = 1, .f = {start, step}};
  sr_kernel_run(SR_K_arange, &c);
  lua_pop(L, 1);
  finish(L, sr_tensor_retain(t), o);
  return 1;
}

/* tensor(nested table or number [, opts]) */

/* the length of the table at idx (its __len may answer anything): an integer >= 0 */
static int64_t nested_len(lua_State *L, int idx) {
  int ok;
  lua_len(L, idx);
  lua_Integer len = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok || len < 0) sr_argerror(L, 1, "a nested table's length is not an integer >= 0");
  return (int64_t)len;
}

static void infer_shape(lua_State *L, int idx, int *nd, int64_t *shape) {
  lua_pushvalue(L, idx);
  *nd = 0;
  while (lua_istable(L, -1)) {
    if (*nd >= SR_MAXDIM) sr_argerror(L, idx, "more than %d nested levels", SR_MAXDIM);
    int64_t len = nested_len(L, -1);
    shape[(*nd)++] = len;
    if (len == 0) break;
    lua_geti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

static void fill_from_table(lua_State *L, int idx, int d, int nd, const int64_t *shape, sr_tensor *t, int64_t *pos) {
  if (d == nd) {
    int ok;
    double v = lua_tonumberx(L, idx, &ok);
    if (!ok) {
      if (lua_isboolean(L, idx)) v = lua_toboolean(L, idx);
      else sr_argerror(L, 1, "element %d is a %s, not a number", (int)*pos + 1, luaL_typename(L, idx));
    }
    sr_store(sr_data(t), t->dtype, (*pos)++, v);
    return;
  }
  if (!lua_istable(L, idx) || nested_len(L, idx) != shape[d])
    sr_argerror(L, 1, "ragged nested table (dimension %d should have %d entries)", d + 1, (int)shape[d]);
  for (int64_t i = 1; i <= shape[d]; i++) {
    lua_geti(L, idx, i);
    fill_from_table(L, lua_gettop(L), d + 1, nd, shape, t, pos);
    lua_pop(L, 1);
  }
}

static int f_tensor(lua_State *L) {
  int nd;
  int64_t shape[SR_MAXDIM];
  luaL_argcheck(L, lua_istable(L, 1) || lua_isnumber(L, 1), 1, "expected a (nested) table of numbers or a number");
  infer_shape(L, 1, &nd, shape);
  sr_check_numel_arg(L, 1, nd, shape);
  tensor_opts o = check_opts(L, 2, SR_F32);
  sr_tensor *cpu = sr_tensor_new(o.dtype, SR_CPU, nd, shape);
  sr_push_tensor(L, cpu);  /* owned by Lua while filling, so an error cannot leak it */
  int64_t pos = 0;
  fill_from_table(L, 1, 0, nd, shape, cpu, &pos);
  sr_tensor *t = o.device == SR_CPU ? sr_tensor_retain(cpu) : sr_to_raw(cpu, o.device, o.dtype);
  finish(L, t, o);
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* RNG */

static int f_manual_seed(lua_State *L) {
  sr_eval_guard(L, "seeding the random generator");   /* C-side state eval could keep between its calls */
  sr_rng *g = sr_global_rng();
  g->seed = (uint64_t)luaL_checkinteger(L, 1);
  g->counter = 0;
  return 0;
}

/* randn/rand(shape... [, opts]): a fresh float tensor filled by one of the RNG's fills */
static int random_float(lua_State *L, void (*fill)(sr_tensor *, double, double, sr_rng *), double a, double b) {
  sr_eval_guard(L, "a random draw");   /* C-side state eval could keep between its calls */
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 1, shape, &last, 0);
  tensor_opts o = check_opts(L, last + 1, SR_F32);
  sr_tensor *t = sr_tensor_new(o.dtype, o.device, nd, shape);
  sr_push_tensor(L, t);  /* owned by Lua while filling, so an error cannot leak it */
  fill(t, a, b, sr_global_rng());
  lua_pop(L, 1);
  finish(L, sr_tensor_retain(t), o);
  return 1;
}

static int f_randn(lua_State *L) { return random_float(L, sr_normal_, 0.0, 1.0); }
static int f_rand(lua_State *L) { return random_float(L, sr_uniform_, 0.0, 1.0); }

/* randint(lo, hi, shape [, opts]) in [lo, hi) */
static int f_randint(lua_State *L) {
  sr_eval_guard(L, "a random draw");   /* C-side state eval could keep between its calls */
  int64_t lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
  luaL_argcheck(L, hi > lo, 2, "empty range");
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 3, shape, &last, 0);
  tensor_opts o = check_opts(L, last + 1, SR_I32);
  sr_tensor *t = sr_tensor_new(o.dtype, o.device, nd, shape);
  sr_push_tensor(L, t);
  sr_randint_(t, lo, hi, sr_global_rng());
  return 1;
}

static int m_normal_(lua_State *L) {
  sr_eval_guard(L, "a random draw");   /* C-side state eval could keep between its calls */
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_normal_(t, luaL_optnumber(L, 2, 0.0), luaL_optnumber(L, 3, 1.0), sr_global_rng());
  lua_settop(L, 1);
  return 1;
}

static int m_uniform_(lua_State *L) {
  sr_eval_guard(L, "a random draw");   /* C-side state eval could keep between its calls */
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_uniform_(t, luaL_optnumber(L, 2, 0.0), luaL_optnumber(L, 3, 1.0), sr_global_rng());
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* properties and small methods */

static void push_shape(lua_State *L, const sr_tensor *t) {
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

static int m_size(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) { push_shape(L, t); return 1; }
  lua_Integer d = luaL_checkinteger(L, 2);
  lua_Integer dd = d < 0 ? d + t->ndim : d - 1;  /* 1-based from the front, negative from the back */
  luaL_argcheck(L, dd >= 0 && dd < t->ndim, 2, "dimension out of range");
  lua_pushinteger(L, t->shape[dd]);
  return 1;
}

static int m_dim(lua_State *L) { lua_pushinteger(L, sr_check_tensor(L, 1)->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, sr_numel(sr_check_tensor(L, 1))); return 1; }
static int m_is_contiguous(lua_State *L) { lua_pushboolean(L, sr_is_contiguous(sr_check_tensor(L, 1))); return 1; }

static int m_close(lua_State *L) { return t_gc(L); }

static int m_item(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  if (sr_numel(t) != 1) {
    char b[96];
    return sr_argerror(L, 1, "the tensor has %d elements (shape %s); item needs exactly one", (int)sr_numel(t), sr_shape_str(t, b, 96));
  }
  sr_tensor *c = sr_to_raw(t, SR_CPU, t->dtype == SR_I32 ? SR_I32 : SR_F64);
  double v = sr_load(sr_data(c), c->dtype, 0);
  sr_tensor_release(c);
  if (t->dtype == SR_I32) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnumber(L, v);
  return 1;
}

static void push_nested(lua_State *L, const sr_tensor *c, int d, int64_t *pos) {
  if (d == c->ndim) {
    double v = sr_load(sr_data(c), c->dtype, (*pos)++);
    if (c->dtype == SR_I32) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
    return;
  }
  lua_createtable(L, c->shape[d] < 4096 ? (int)c->shape[d] : 4096, 0);  /* a hint: never a huge or negative int */
  for (int64_t i = 0; i < c->shape[d]; i++) {
    push_nested(L, c, d + 1, pos);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_tolist(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_tensor *c = sr_to_raw(t, SR_CPU, t->dtype == SR_I32 ? SR_I32 : SR_F64);
  int64_t pos = 0;
  push_nested(L, c, 0, &pos);
  sr_tensor_release(c);
  return 1;
}

/* like a small numpy print; long dims are summarised with ... */
static void fmt_number(luaL_Buffer *b, double v, sr_dtype dt) {
  char s[64];
  if (dt == SR_I32) snprintf(s, sizeof s, "%lld", (long long)v);
  else if (isnan(v)) snprintf(s, sizeof s, "nan");
  else if (isinf(v)) snprintf(s, sizeof s, v > 0 ? "inf" : "-inf");
  else if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-4)) snprintf(s, sizeof s, "%.4e", v);
  else snprintf(s, sizeof s, "%.4f", v);
  luaL_addstring(b, s);
}

static void fmt_dim(luaL_Buffer *b, const sr_tensor *c, int d, int64_t base, int indent) {
  if (c->ndim == 0) { fmt_number(b, sr_load(sr_data(c), c->dtype, 0), c->dtype); return; }
  luaL_addchar(b, '[');
  int64_t n = c->shape[d], stride = 1;
  for (int k = d + 1; k < c->ndim; k++) stride *= c->shape[k];
  bool summarise = sr_numel(c) > 1000 && n > 6;
  for (int64_t i = 0; i < n; i++) {
    if (summarise && i == 3) {
      luaL_addstring(b, d == c->ndim - 1 ? "..., " : "...,\n");
      if (d < c->ndim - 1) for (int s = 0; s < indent + 1; s++) luaL_addchar(b, ' ');
      i = n - 3;
    }
    if (d == c->ndim - 1) fmt_number(b, sr_load(sr_data(c), c->dtype, base + i), c->dtype);
    else fmt_dim(b, c, d + 1, base + i * stride, indent + 1);
    if (i < n - 1) {
      luaL_addchar(b, ',');
      if (d == c->ndim - 1) luaL_addchar(b, ' ');
      else {
        luaL_addchar(b, '\n');
        for (int s = 0; s < indent + 1; s++) luaL_addchar(b, ' ');
      }
    }
  }
  luaL_addchar(b, ']');
}

static int t_tostring(lua_State *L) {
  sr_tensor_box *bx = check_box(L, 1);
  if (!bx->t) { lua_pushliteral(L, "tensor(closed)"); return 1; }
  sr_tensor *t = bx->t;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor(");
  if (t->dtype == SR_F8E4M3 || t->dtype == SR_F8E5M2) {
    char s[96];
    luaL_addstring(&b, sr_shape_str(t, s, 96));
  } else {
    sr_tensor *c = sr_to_raw(t, SR_CPU, t->dtype == SR_I32 ? SR_I32 : SR_F64);
    fmt_dim(&b, c, 0, 0, 7);
    sr_tensor_release(c);
  }
  char tail[160];
  snprintf(tail, sizeof tail, ", dtype=%s%s%s%s)", sr_dtype_name(t->dtype), t->storage->device == SR_CUDA ? ", device=cuda" : "",
           t->grad_fn ? ", grad_fn=" : (t->requires_grad ? ", requires_grad=true" : ""), t->grad_fn ? t->grad_fn->name : "");
  luaL_addstring(&b, tail);
  luaL_pushresult(&b);
  return 1;
}

static int t_len(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  lua_pushinteger(L, t->ndim ? t->shape[0] : 1);
  return 1;
}

/* raw little-endian bytes of the elements in row-major order (for weight files) */
static int m_tobytes(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_tensor *c = sr_to_raw(t, SR_CPU, t->dtype);
  lua_pushlstring(L, sr_data(c), (size_t)sr_numel(c) * sr_dtype_size(c->dtype));
  sr_tensor_release(c);
  return 1;
}

/* frombytes(string, dtype, shape [, opts]) */
static int f_frombytes(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  sr_dtype dt = (sr_dtype)sr_check_dtype(L, 2, SR_F32);
  int64_t shape[SR_MAXDIM];
  int last;
  int nd = sr_check_shape_arg(L, 3, shape, &last, 0);
  tensor_opts o = check_opts(L, last + 1, dt);
  int64_t n = sr_check_numel_arg(L, 3, nd, shape);  /* at most 2^48: the product below fits */
  if ((size_t)n * sr_dtype_size(dt) != len)
    return sr_argerror(L, 1, "%I bytes do not hold %I %s elements", (lua_Integer)len, (lua_Integer)n, sr_dtype_name(dt));
  sr_tensor *cpu = sr_tensor_new(dt, SR_CPU, nd, shape);
  memcpy(sr_data(cpu), s, len);
  sr_push_tensor(L, cpu);
  sr_tensor *t = o.device == SR_CPU ? sr_tensor_retain(cpu) : sr_to_raw(cpu, o.device, dt);
  finish(L, t, o);
  return 1;
}

static int m_contiguous(lua_State *L) { sr_push_tensor(L, sr_contiguous(sr_check_tensor(L, 1))); return 1; }
static int m_clone(lua_State *L) { sr_push_tensor(L, sr_clone(sr_check_tensor(L, 1))); return 1; }

/* to(device), to(dtype), to(device, dtype), to{device=, dtype=} */
static int m_to(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_device dev = t->storage->device;
  sr_dtype dt = t->dtype;
  for (int a = 2; a <= lua_gettop(L); a++) {
    if (lua_istable(L, a)) {
      tensor_opts o = check_opts(L, a, dt);
      lua_getfield(L, a, "device");
      if (!lua_isnil(L, -1)) dev = o.device;
      lua_pop(L, 1);
      dt = o.dtype;
      continue;
    }
    const char *s = luaL_checkstring(L, a);
    int t2 = sr_dtype_from_name(s);
    if (t2 >= 0) dt = (sr_dtype)t2;
    else dev = sr_check_device(L, a, dev);
  }
  if (dev == t->storage->device && dt == t->dtype) { sr_push_tensor(L, sr_tensor_retain(t)); return 1; }
  sr_tensor *y = dev != t->storage->device ? sr_to_device(t, dev) : t;
  if (y != t) sr_push_tensor(L, y);  /* owned by the stack: the cast below can fail (NaN into int32) */
  if (dt != y->dtype) sr_push_tensor(L, sr_cast(y, dt));
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* autograd */

static int backward_call(lua_State *L) {
  sr_backward(sr_check_tensor(L, 1), sr_opt_tensor(L, 2));
  return 0;
}

/* backward([grad]): the pass runs with grad mode off; an error inside restores the mode. A full
** collection first: forward temporaries only Lua still refers to are released, so every saved
** tensor's memory goes back as soon as its node's backward has run (and the cross-entropy
** backward can write the gradient over logits nothing else holds) */
static int m_backward(lua_State *L) {
  sr_check_tensor(L, 1);
  sr_train_guard(L, "backward");
  lua_settop(L, 2);
  if (!in_gc) { bytes_since_gc = 0; lua_gc(L, LUA_GCCOLLECT); }
  bool mode = sr_grad_enabled();
  lua_pushcfunction(L, backward_call);
  lua_insert(L, 1);
  int status = lua_pcall(L, 2, 0, 0);
  sr_set_grad_enabled(mode);
  sr_backward_reset();
  if (status != LUA_OK) return lua_error(L);
  return 0;
}

static int m_detach(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_push_tensor(L, sr_as_strided(t, t->ndim, t->shape, t->stride, t->offset));
  return 1;
}

static int m_requires_grad_(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
  luaL_argcheck(L, !on || sr_dtype_is_float(t->dtype), 1, "only float tensors can require grad");
  luaL_argcheck(L, !t->grad_fn || on, 1, "requires_grad cannot be turned off on a non-leaf; use detach");
  if (t->requires_grad != on) sr_eval_guard(L, "changing requires_grad");   /* a bit a tensor eval could keep */
  t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static int t_index(lua_State *L) {
  /* methods first (the metatable's "methods" table, extended from Lua), then properties */
  lua_getfield(L, lua_upvalueindex(1), luaL_checkstring(L, 2));
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  sr_tensor *t = sr_check_tensor(L, 1);
  const char *k = lua_tostring(L, 2);
  if (!strcmp(k, "shape")) push_shape(L, t);
  else if (!strcmp(k, "ndim")) lua_pushinteger(L, t->ndim);
  else if (!strcmp(k, "dtype")) lua_pushstring(L, sr_dtype_name(t->dtype));
  else if (!strcmp(k, "device")) lua_pushstring(L, sr_device_name(t->storage->device));
  else if (!strcmp(k, "requires_grad")) lua_pushboolean(L, t->requires_grad);
  else if (!strcmp(k, "is_leaf")) lua_pushboolean(L, t->grad_fn == NULL);
  else if (!strcmp(k, "grad_fn")) { if (t->grad_fn) lua_pushstring(L, t->grad_fn->name); else lua_pushnil(L); }
  else if (!strcmp(k, "grad")) { if (t->grad) sr_push_tensor(L, sr_tensor_retain(t->grad)); else lua_pushnil(L); }
  else lua_pushnil(L);
  return 1;
}

static int t_newindex(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "requires_grad")) {
    lua_settop(L, 3);
    lua_remove(L, 2);
    return m_requires_grad_(L);
  }
  if (!strcmp(k, "grad")) {
    sr_tensor *g = sr_opt_tensor(L, 3);
    char b1[96], b2[96];
    if (g && !sr_same_shape(g, t))
      return luaL_error(L, "grad: shape %s does not match the tensor's %s", sr_shape_str(g, b1, 96), sr_shape_str(t, b2, 96));
    if (g != t->grad) sr_eval_guard(L, "setting a tensor's grad");   /* a tensor eval could keep between its calls */
    sr_tensor_retain(g);
    sr_tensor_release(t->grad);
    t->grad = g;
    return 0;
  }
  return luaL_error(L, "cannot set field '%s' of a tensor (settable: requires_grad, grad)", k);
}

static int f_no_grad(lua_State *L) {  /* no_grad(fn, ...) -> fn's results, grad mode restored even on error */
  luaL_checktype(L, 1, LUA_TFUNCTION);
  bool old = sr_set_grad_enabled(false);
  int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  sr_set_grad_enabled(old);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static int f_set_grad_enabled(lua_State *L) {
  if (lua_toboolean(L, 1)) sr_eval_guard(L, "switching grad mode on");
  lua_pushboolean(L, sr_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}

static int f_is_grad_enabled(lua_State *L) { lua_pushboolean(L, sr_grad_enabled()); return 1; }

/* grad_fusion(name [, on]) -> whether the backward-pass fusion name ("slices", "cast_gemm", "recompute", "scale", "accum", "defer";
** core/autograd.h) was on; with on, sets it */
static int f_grad_fusion(lua_State *L) {
  sr_eval_guard(L, "switching a backward fusion");   /* C-side state eval could keep between its calls */
  const char *name = luaL_checkstring(L, 1);
  int which = 0;
  while (sr_grad_fusion_name(which) && strcmp(sr_grad_fusion_name(which), name)) which++;
  if (!sr_grad_fusion_name(which)) {
    luaL_Buffer b;   /* the names, from the tape's list */
    luaL_buffinit(L, &b);
    for (int i = 0; sr_grad_fusion_name(i); i++) { if (i) luaL_addstring(&b, ", "); luaL_addstring(&b, sr_grad_fusion_name(i)); }
    luaL_pushresult(&b);
    return luaL_argerror(L, 1, lua_pushfstring(L, "unknown fusion '%s' (%s)", name, lua_tostring(L, -1)));
  }
  lua_pushboolean(L, lua_isnoneornil(L, 2) ? sr_grad_fusion(which) : sr_set_grad_fusion(which, lua_toboolean(L, 2)));
  return 1;
}

static int f_is_tensor(lua_State *L) { lua_pushboolean(L, sr_to_tensor(L, 1) != NULL); return 1; }

/* monotonic wall-clock seconds (not the scoring clock: the harness keeps its own in C) */
static int f_clock(lua_State *L) {
  lua_pushnumber(L, sr_monotonic_s());
  return 1;
}

/* waits for queued device work (a no-op without a usable GPU) */
static int f_synchronize(lua_State *L) {
  if (sr_cuda_available() && !sr_dry()) sr_cuda_backend()->synchronize();   /* a dry run queues nothing */
  return 0;
}

/* CPU threads of the reference kernels (results do not depend on it) */
static int f_set_num_threads(lua_State *L) {
  sr_eval_guard(L, "setting the thread count");   /* C-side state eval could keep between its calls */
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1, 1, "need at least 1 thread");
  omp_set_num_threads((int)n);
  return 0;
}

static int f_get_num_threads(lua_State *L) {
  lua_pushinteger(L, omp_get_max_threads());
  return 1;
}

/* memory([device]) -> {current=, peak=, allocs=}: bytes of tensor storage alive on the device
** ("cpu" default) now and at most since reset_peak_memory; allocs counts storages made */
static int f_memory(lua_State *L) {
  sr_eval_guard(L, "reading memory statistics");   /* C-side state eval could keep between its calls */
  sr_mem_stats s = sr_mem_stats_of(sr_check_device(L, 1, SR_CPU));
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)s.current); lua_setfield(L, -2, "current");
  lua_pushinteger(L, (lua_Integer)s.peak); lua_setfield(L, -2, "peak");
  lua_pushinteger(L, (lua_Integer)s.allocs); lua_setfield(L, -2, "allocs");
  return 1;
}

/* live_tensors() -> tensors, storages, bytes: tensors (views included) and storages alive now
** over every device, and the bytes those storages hold (a leak check: an error must leave all
** three where they were, once Lua's garbage is collected) */
static int f_live_tensors(lua_State *L) {
  sr_eval_guard(L, "reading memory statistics");   /* C-side state eval could keep between its calls */
  int64_t nt, ns;
  sr_live_counts(&nt, &ns);
  lua_pushinteger(L, (lua_Integer)nt);
  lua_pushinteger(L, (lua_Integer)ns);
  lua_pushinteger(L, (lua_Integer)(sr_mem_stats_of(SR_CPU).current + sr_mem_stats_of(SR_CUDA).current));
  return 3;
}

static int f_reset_peak_memory(lua_State *L) {
  sr_eval_guard(L, "resetting memory statistics");   /* C-side state eval could keep between its calls */
  sr_mem_reset_peak(sr_check_device(L, 1, SR_CPU));
  return 0;
}

static int f_cuda_available(lua_State *L) {
  lua_pushboolean(L, sr_cuda_available());
  return 1;
}

static const luaL_Reg tensor_methods[] = {
  {"size", m_size}, {"dim", m_dim}, {"numel", m_numel}, {"is_contiguous", m_is_contiguous},
  {"item", m_item}, {"tolist", m_tolist}, {"contiguous", m_contiguous}, {"clone", m_clone},
  {"to", m_to}, {"normal_", m_normal_}, {"uniform_", m_uniform_},
  {"tobytes", m_tobytes}, {"backward", m_backward}, {"detach", m_detach}, {"requires_grad_", m_requires_grad_}, {"close", m_close},
  {NULL, NULL}
};

static const luaL_Reg tensor_metamethods[] = {
  {"__newindex", t_newindex}, {"__gc", t_gc}, {"__close", t_gc}, {"__tostring", t_tostring}, {"__len", t_len},
  {"__index", NULL}, {NULL, NULL}
};

static const luaL_Reg core_functions[] = {
  {"tensor", f_tensor}, {"zeros", f_zeros}, {"ones", f_ones}, {"empty", f_empty}, {"full", f_full},
  {"arange", f_arange}, {"frombytes", f_frombytes}, {"randn", f_randn}, {"rand", f_rand}, {"randint", f_randint},
  {"manual_seed", f_manual_seed}, {"no_grad", f_no_grad}, {"set_grad_enabled", f_set_grad_enabled},
  {"is_grad_enabled", f_is_grad_enabled}, {"grad_fusion", f_grad_fusion}, {"is_tensor", f_is_tensor}, {"cuda_available", f_cuda_available},
  {"clock", f_clock}, {"synchronize", f_synchronize}, {"set_num_threads", f_set_num_threads}, {"get_num_threads", f_get_num_threads},
  {"memory", f_memory}, {"reset_peak_memory", f_reset_peak_memory},
  {"live_tensors", f_live_tensors}, {NULL, NULL}
};

int luaopen_speedrun_core(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  if (!getenv("SPEEDRUN_NO_CUDA")) sr_cuda_init();  /* SPEEDRUN_NO_CUDA: never touch the driver */
#endif
  luaL_newmetatable(L, SR_TENSOR_MT);
  luaL_setfuncs(L, tensor_metamethods, 0);
  luaL_newlib(L, tensor_methods);
  luaL_setfuncs(L, sr_view_methods, 0);   /* view, reshape, ...: host/lua/lshape.c */
  luaL_setfuncs(L, sr_inplace_methods, 0);  /* copy_, fill_, add_, ..., x:<f>_(): host/lua/linplace.c */
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");          /* metatable.methods: Lua adds op methods here */
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, core_functions);
  luaopen_speedrun_F(L);
  lua_setfield(L, -2, "F");
  sr_push_op_names(L);
  lua_setfield(L, -2, "op_names");
  lua_pushinteger(L, SR_NODE_MAXOUT);  /* the most pieces F.split_views makes under one tape node */
  lua_setfield(L, -2, "split_max");
  sr_open_custom_functions(L);
  luaL_getmetatable(L, SR_TENSOR_MT);
  lua_setfield(L, -2, "Tensor");
  return 1;
}
