/*
** lua/lkernel.c: the C module speedrun.kernel_core under the Lua module speedrun.kernel
** (lua/speedrun/kernel.lua, which adds op, compare and the `kernel check` driver): agent kernels
** compiled at run time (host/jit/).
**
**   local K = require "speedrun.kernel"
**   local k = assert(K.compile("act.cu", {kernels = {gelu = "ptr float* y, ptr const float* x, int n"}}))
**   k.gelu{grid = (n + 255) // 256, block = 256, args = {y, x, n}}
**
** compile() returns a table: one launcher per declared kernel plus `info`; launches go on the
** engine's stream. Compile errors return nil, log (file:line: error: ...). Argument mistakes
** raise "bad argument #1 to 'gelu' (args[2] 'x' (ptr const float*): ...)". Docs: docs/kernels.md.
*/
#include <math.h>       /* defines: floor */
#include <stdarg.h>     /* defines: va_list */
#include <stdio.h>      /* defines: vsnprintf */
#include <stdlib.h>     /* defines: calloc, free, qsort */
#include <string.h>     /* defines: strcmp, strchr, strlen */

#include <lua.h>
#include <lauxlib.h>

#include "jit/jit.h"        /* defines: sr_jit_compile, sr_jit_parse_sig, sr_jit_launch_kernel */
#include "lua/lsr.h"        /* defines: sr_to_tensor, sr_argerror, luaopen_speedrun_kernel_core */

#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>   /* defines: cudaEvent_t, cudaMemsetAsync, cudaDeviceGetAttribute */
#include "cuda/backend.h"   /* defines: sr_cuda_stream, sr_cuda_malloc, sr_cuda_graph_begin */
#endif

#define KMOD_MT "speedrun.KernelState"
#define KTABLE_MT "speedrun.KernelModule"

/* the C state behind one compiled module (upvalue of its launchers) */
typedef struct kmod {
  sr_jit_binary bin;
  sr_jit_module *mod;                 /* NULL when not loaded (no GPU, or load = false) */
  char load_err[512];
  char file[512];
  int nk;
  char names[SR_JIT_MAXKERN][128];
  sr_jit_sig sig[SR_JIT_MAXKERN];
  void *fn[SR_JIT_MAXKERN];
} kmod;

typedef struct kmod_box { kmod *m; } kmod_box;

/* modules stay loaded for the life of the process (a captured graph may still launch their
** kernels); one load per cache key */
#ifdef SPEEDRUN_CUDA
typedef struct loaded { char key[33]; sr_jit_module *mod; } loaded;
static loaded *loads;
static int nloads;
#endif

/* who an argument error names: the function (a kernel's name for its launcher) and the Lua
** argument (the launch table, or check_args' args) */
typedef struct kwho { const char *fname; int arg; } kwho;

/* raises "bad argument #<arg> to '<fname>' (...)", with the C formats (%g, %u, %lld) that
** lua_pushfstring lacks */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int kerr(lua_State *L, const kwho *w, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return luaL_error(L, "bad argument #%d to '%s' (%s)", w->arg, w->fname, buf);
}

static int kstate_gc(lua_State *L) {
  kmod_box *b = (kmod_box *)luaL_checkudata(L, 1, KMOD_MT);
  if (b->m) {
    sr_jit_binary_free(&b->m->bin);
    free(b->m);
    b->m = NULL;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------
** argument conversion, shared by launches and check_args */

typedef union argval { int32_t i32; uint32_t u32; int64_t i64; uint64_t u64; float f32; double f64; void *ptr; } argval;

static const char *kind_expect(sr_jit_argkind k) {
  switch (k) {
    case SR_ARG_I32: case SR_ARG_I64: return "an integer";
    case SR_ARG_U32: case SR_ARG_U64: return "a non-negative integer";
    default: return "a number";
  }
}

/* converts the Lua value at idx for parameter i of sig; raises "bad argument #.. (args[i] ...)" */
static void convert_arg(lua_State *L, int idx, const kwho *who, const sr_jit_sig *sig, int i, argval *out,
                        int allow_cpu) {
  char label[128];
  const sr_jit_param *p = &sig->p[i];
  sr_jit_param_label(sig, i, label, sizeof label);
  if (p->kind == SR_ARG_PTR) {
    sr_tensor *t = sr_to_tensor(L, idx);
    if (!t) kerr(L, who, "%s: expected a tensor, got %s", label, luaL_typename(L, idx));
    if (p->dtype >= 0 && (int)t->dtype != p->dtype)
      kerr(L, who, "%s: expected a %s tensor, got %s", label, sr_dtype_name((sr_dtype)p->dtype),
                 sr_dtype_name(t->dtype));
    if (!sr_is_contiguous(t)) kerr(L, who, "%s: the tensor is not contiguous (use :contiguous())", label);
    if (t->storage->device != SR_CUDA && !allow_cpu)
      kerr(L, who, "%s: expected a cuda tensor, got a %s tensor", label, sr_device_name(t->storage->device));
    out->ptr = sr_data(t);
    return;
  }
  if (lua_type(L, idx) != LUA_TNUMBER)
    kerr(L, who, "%s: expected %s, got %s", label, kind_expect(p->kind), luaL_typename(L, idx));
  if (p->kind == SR_ARG_F32) { out->f32 = (float)lua_tonumber(L, idx); return; }
  if (p->kind == SR_ARG_F64) { out->f64 = lua_tonumber(L, idx); return; }
  lua_Integer v;
  if (lua_isinteger(L, idx)) v = lua_tointeger(L, idx);
  else {
    double d = lua_tonumber(L, idx);
    if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
      kerr(L, who, "%s: expected %s, got %g", label, kind_expect(p->kind), d);
    v = (lua_Integer)d;
  }
  switch (p->kind) {
    case SR_ARG_I32:
      if (v < INT32_MIN || v > INT32_MAX) kerr(L, who, "%s: %lld does not fit in 32 bits", label, (long long)v);
      out->i32 = (int32_t)v; break;
    case SR_ARG_U32:
      if (v < 0 || v > (lua_Integer)UINT32_MAX) kerr(L, who, "%s: %lld does not fit in 32 unsigned bits", label, (long long)v);
      out->u32 = (uint32_t)v; break;
    case SR_ARG_I64: out->i64 = (int64_t)v; break;
    case SR_ARG_U64:
      if (v < 0) kerr(L, who, "%s: %lld is negative", label, (long long)v);
      out->u64 = (uint64_t)v; break;
    default: break;
  }
}

static void sig_text(const sr_jit_sig *sig, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = '\0';
  for (int i = 0; i < sig->nparams && k + 80 < n; i++) {
    const sr_jit_param *p = &sig->p[i];
    k += (size_t)snprintf(buf + k, n - k, "%s%s%s%s%s", i ? ", " : "", p->kind == SR_ARG_PTR ? "ptr " : "", p->ctype,
                          p->name[0] ? " " : "", p->name);
  }
}

/* converts the array args (at idx) against sig into vals/ptrs */
static void convert_args(lua_State *L, int idx, const kwho *who, const sr_jit_sig *sig, argval *vals, void **ptrs,
                         int allow_cpu) {
  if (lua_type(L, idx) != LUA_TTABLE) kerr(L, who, "'args' must be a table (a list of arguments)");
  lua_Integer n = luaL_len(L, idx);
  if (n != sig->nparams) {
    char st[1024];
    sig_text(sig, st, sizeof st);
    kerr(L, who, "expected %d argument%s (%s), got %d", sig->nparams, sig->nparams == 1 ? "" : "s", st, (int)n);
  }
  for (int i = 0; i < sig->nparams; i++) {
    lua_geti(L, idx, i + 1);
    convert_arg(L, lua_gettop(L), who, sig, i, &vals[i], allow_cpu);
    ptrs[i] = &vals[i];
    lua_pop(L, 1);
  }
}

/* grid/block: an integer or a list of 1 to 3 integers */
static void get_dim3(lua_State *L, int t, const char *field, const kwho *who, unsigned out[3], int required) {
  out[0] = out[1] = out[2] = 1;
  int ty = lua_getfield(L, t, field);
  if (ty == LUA_TNIL) {
    if (required) kerr(L, who, "'%s' is required (an integer or {x, y, z})", field);
    lua_pop(L, 1);
    return;
  }
  int n = 0;
  lua_Integer v[3] = {1, 1, 1};
  if (ty == LUA_TNUMBER) {
    if (!lua_isinteger(L, -1)) {
      double d = lua_tonumber(L, -1);
      if (d != floor(d)) kerr(L, who, "'%s' must be an integer, got %g", field, d);
    }
    v[0] = (lua_Integer)lua_tonumber(L, -1);
    n = 1;
  } else if (ty == LUA_TTABLE) {
    n = (int)luaL_len(L, -1);
    if (n < 1 || n > 3) kerr(L, who, "'%s' must have 1 to 3 entries", field);
    for (int i = 0; i < n; i++) {
      lua_geti(L, -1, i + 1);
      int isnum = 0;
      v[i] = lua_tointegerx(L, -1, &isnum);
      if (!isnum) kerr(L, who, "'%s'[%d] must be an integer", field, i + 1);
      lua_pop(L, 1);
    }
  } else {
    kerr(L, who, "'%s' must be an integer or {x, y, z}, got %s", field, luaL_typename(L, -1));
  }
  for (int i = 0; i < 3; i++) {
    if (v[i] < 1 || v[i] > 2147483647)
      kerr(L, who, "'%s' %c is %lld (must be at least 1)", field, "xyz"[i], (long long)v[i]);
    out[i] = (unsigned)v[i];
  }
  lua_pop(L, 1);
}

/* launcher: upvalue 1 = the state box, 2 = kernel index */
static int k_launch(lua_State *L) {
  /* native code reads and keeps any memory of the process, outside every tensor the harness's checks
     see (round 19, docs/harness.md): under score eval runs the engine's ops (K.op: its reference) */
  sr_eval_guard(L, "an agent kernel's launch (native code can keep or read any memory; K.op runs its reference in eval)");
  kmod_box *b = (kmod_box *)lua_touserdata(L, lua_upvalueindex(1));
  int ki = (int)lua_tointeger(L, lua_upvalueindex(2));
  kmod *m = b->m;
  const kwho w = {m->names[ki], 1}, *who = &w;
  if (lua_type(L, 1) != LUA_TTABLE)
    return kerr(L, who, "expected a table {grid=, block=, shared=, args={...}}, got %s", luaL_typename(L, 1));
  sr_jit_launch l;
  memset(&l, 0, sizeof l);
  get_dim3(L, 1, "grid", who, l.grid, 1);
  get_dim3(L, 1, "block", who, l.block, 1);
  if ((uint64_t)l.block[0] * l.block[1] * l.block[2] > 1024)
    return kerr(L, who, "block %ux%ux%u has more than 1024 threads", l.block[0], l.block[1], l.block[2]);
  if (l.grid[1] > 65535 || l.grid[2] > 65535) return kerr(L, who, "grid y and z must be at most 65535");
  lua_getfield(L, 1, "shared");
  if (!lua_isnil(L, -1)) {
    int isnum = 0;
    lua_Integer s = lua_tointegerx(L, -1, &isnum);
    if (!isnum || s < 0 || s > 232448) return kerr(L, who, "'shared' must be a byte count in [0, 232448]");
    l.shared = (unsigned)s;
  }
  lua_pop(L, 1);
  argval vals[SR_JIT_MAXARG];
  void *ptrs[SR_JIT_MAXARG];
  lua_getfield(L, 1, "args");
  if (lua_isnil(L, -1) && m->sig[ki].nparams == 0) { lua_pop(L, 1); lua_newtable(L); }
  convert_args(L, lua_gettop(L), who, &m->sig[ki], vals, ptrs, 0);
  /* in-place writes through non-const pointers: bump the storage version, so autograd sees
  ** that a tensor saved for a backward was modified */
  for (int i = 0; i < m->sig[ki].nparams; i++) {
    if (m->sig[ki].p[i].kind != SR_ARG_PTR || m->sig[ki].p[i].is_const) continue;
    lua_geti(L, -1, i + 1);
    sr_tensor *t = sr_to_tensor(L, -1);
    if (t) t->storage->version++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!m->mod) return luaL_error(L, "kernel '%s': cannot launch: %s", m->names[ki], m->load_err);
  l.kernel = m->names[ki];
  l.file = m->file;
  l.function = m->fn[ki];
  l.args = ptrs;
  const char *e = sr_jit_launch_kernel(&l);
  if (e) return luaL_error(L, "kernel '%s': %s", m->names[ki], e);
  return 0;
}

/* ------------------------------------------------------------------------------------------
** compile */

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && !strcmp(s + n - k, suf);
}

static void push_info(lua_State *L, kmod *m) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, m->file); lua_setfield(L, -2, "file");
  lua_pushstring(L, m->bin.arch); lua_setfield(L, -2, "arch");
  lua_pushstring(L, m->bin.is_cubin ? "cubin" : "ptx"); lua_setfield(L, -2, "kind");
  lua_pushboolean(L, m->bin.cache_hit); lua_setfield(L, -2, "cache_hit");
  lua_pushstring(L, m->bin.cache_path); lua_setfield(L, -2, "cache_path");
  lua_pushstring(L, m->bin.key); lua_setfield(L, -2, "key");
  lua_pushstring(L, m->bin.log ? m->bin.log : ""); lua_setfield(L, -2, "log");
  lua_pushnumber(L, m->bin.compile_ms); lua_setfield(L, -2, "compile_ms");
  lua_pushinteger(L, (lua_Integer)m->bin.size); lua_setfield(L, -2, "size");
  lua_pushboolean(L, m->mod != NULL); lua_setfield(L, -2, "loaded");
  if (!m->mod) { lua_pushstring(L, m->load_err); lua_setfield(L, -2, "not_loaded_because"); }
  if (!m->bin.is_cubin && m->bin.image) { lua_pushstring(L, m->bin.image); lua_setfield(L, -2, "ptx"); }
  lua_createtable(L, m->nk, 0);
  for (int i = 0; i < m->nk; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, m->names[i]); lua_setfield(L, -2, "name");
    lua_pushstring(L, m->bin.lowered[i]); lua_setfield(L, -2, "lowered");
    char st[1024];
    sig_text(&m->sig[i], st, sizeof st);
    lua_pushstring(L, st); lua_setfield(L, -2, "signature");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "kernels");
}

/* the source: a path (one line naming a .cu/.cuh file, read and kept on the stack), else the
** text itself; m->file names it. 0, or the count of a pushed fail, message */
static int read_source(lua_State *L, const char *arg, size_t slen, kmod *m, const char **source) {
  int is_path = memchr(arg, '\n', slen) == NULL && (has_suffix(arg, ".cu") || has_suffix(arg, ".cuh"));
  if (!is_path) {
    *source = arg;
    lua_getfield(L, 2, "name");
    snprintf(m->file, sizeof m->file, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "kernel.cu");
    lua_pop(L, 1);
    return 0;
  }
  FILE *f = fopen(arg, "rb");
  if (!f) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: cannot open the kernel source", arg);
    return 2;
  }
  luaL_Buffer bb;
  luaL_buffinit(L, &bb);
  char chunk[4096];
  size_t k;
  while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&bb, chunk, k);
  fclose(f);
  luaL_pushresult(&bb);
  *source = lua_tostring(L, -1);  /* kept on the stack */
  snprintf(m->file, sizeof m->file, "%s", arg);
  return 0;
}

/* opts.kernels = {name = "signature"}: sorted by name, so the cache key does not depend on table
** order */
static void read_kernels(lua_State *L, kmod *m, sr_jit_opts *o) {
  lua_getfield(L, 2, "kernels");
  if (!lua_istable(L, -1)) sr_argerror(L, 2, "opts.kernels must be a table {name = \"signature\", ...}");
  int kt = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, kt)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      sr_argerror(L, 2, "opts.kernels entries must be name = \"signature\" strings");
    if (m->nk == SR_JIT_MAXKERN) sr_argerror(L, 2, "more than %d kernels", SR_JIT_MAXKERN);
    const char *name = lua_tostring(L, -2);
    if (!strcmp(name, "info")) sr_argerror(L, 2, "opts.kernels: 'info' is reserved; rename the kernel");
    if (strlen(name) >= sizeof m->names[0]) sr_argerror(L, 2, "opts.kernels: kernel name '%s' too long", name);
    int at = m->nk;
    while (at > 0 && strcmp(m->names[at - 1], name) > 0) {
      memcpy(m->names[at], m->names[at - 1], sizeof m->names[0]);
      m->sig[at] = m->sig[at - 1];
      at--;
    }
    snprintf(m->names[at], sizeof m->names[0], "%s", name);
    const char *e = sr_jit_parse_sig(lua_tostring(L, -1), &m->sig[at]);
    if (e) sr_argerror(L, 2, "opts.kernels: kernel '%s': bad signature: %s", name, e);
    m->nk++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (int i = 0; i < m->nk; i++) o->kernels[i] = m->names[i];
  o->nkernels = m->nk;
}

static void add_option(lua_State *L, sr_jit_opts *o, const char *opt) {
  if (o->noptions == SR_JIT_MAXOPT) sr_argerror(L, 2, "more than %d compiler options", SR_JIT_MAXOPT);
  o->options[o->noptions++] = opt;
}

/* opts.options (strings, anchored in their table) and opts.defines ({K = V}: sorted "-DK=V"
** strings, anchored in a new table left on the stack) */
static void read_options(lua_State *L, sr_jit_opts *o) {
  lua_getfield(L, 2, "options");
  if (lua_istable(L, -1)) {
    int n = (int)luaL_len(L, -1);
    for (int i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      if (!lua_isstring(L, -1)) sr_argerror(L, 2, "opts.options[%d] must be a string", i);
      add_option(L, o, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) sr_argerror(L, 2, "opts.options must be a list of strings");
  lua_getfield(L, 2, "defines");
  if (!lua_istable(L, -1)) return;
  int dt = lua_gettop(L);
  lua_newtable(L);
  int lt = lua_gettop(L), nd = 0;
  lua_pushnil(L);
  while (lua_next(L, dt)) {
    if (lua_type(L, -2) != LUA_TSTRING) sr_argerror(L, 2, "opts.defines keys must be names");
    if (lua_type(L, -1) == LUA_TBOOLEAN) {
      if (lua_toboolean(L, -1)) lua_pushfstring(L, "-D%s", lua_tostring(L, -2));
      else { lua_pop(L, 1); continue; }
    } else {
      const char *key = lua_tostring(L, -2);
      const char *val = luaL_tolstring(L, -1, NULL);
      lua_pushfstring(L, "-D%s=%s", key, val);
      lua_remove(L, -2);
    }
    lua_rawseti(L, lt, ++nd);
    lua_pop(L, 1);
  }
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, lt);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  for (int i = 1; i <= nd; i++) {
    lua_rawgeti(L, lt, i);
    add_option(L, o, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

#ifdef SPEEDRUN_CUDA
/* loads m's image (once per cache key in this process) and looks up its kernels: 0, or the count
** of a pushed fail, message */
static int load_module(lua_State *L, kmod *m) {
  for (int i = 0; i < nloads && !m->mod; i++)
    if (!strcmp(loads[i].key, m->bin.key)) m->mod = loads[i].mod;
  const char *err = NULL;
  if (!m->mod && !(m->mod = sr_jit_load(&m->bin, &err))) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: cannot load: %s", m->file, err);
    return 2;
  }
  if (nloads == 0 || strcmp(loads[nloads - 1].key, m->bin.key)) {
    loads = realloc(loads, (size_t)(nloads + 1) * sizeof *loads);
    snprintf(loads[nloads].key, sizeof loads[nloads].key, "%s", m->bin.key);
    loads[nloads++].mod = m->mod;
  }
  for (int i = 0; i < m->nk; i++)
    if (!(m->fn[i] = sr_jit_function(m->mod, m->bin.lowered[i], &err))) {
      luaL_pushfail(L);
      lua_pushfstring(L, "%s: kernel '%s': %s", m->file, m->names[i], err);
      return 2;
    }
  return 0;
}
#endif

/* load when asked (want 1), or by default (want -1) when a GPU is usable: 0, or the count of a
** pushed fail, message */
static int maybe_load(lua_State *L, kmod *m, int want) {
  snprintf(m->load_err, sizeof m->load_err, "not loaded (load = false)");
#ifdef SPEEDRUN_CUDA
  if (want == 0) return 0;
  const char *why = sr_cuda_probe();
  if (!why) return load_module(L, m);
  snprintf(m->load_err, sizeof m->load_err, "no usable GPU: %s", why);
  if (want == 1) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: cannot load: %s", m->file, m->load_err);
    return 2;
  }
#else
  (void)L, (void)want;
#endif
  return 0;
}

/* the module table: launchers + info (unknown names raise); the state box at boxidx rides along */
static void push_module(lua_State *L, kmod *m, int boxidx) {
  lua_createtable(L, 0, m->nk + 1);
  for (int i = 0; i < m->nk; i++) {
    lua_pushvalue(L, boxidx);
    lua_pushinteger(L, i);
    lua_pushcclosure(L, k_launch, 2);
    lua_setfield(L, -2, m->names[i]);
  }
  push_info(L, m);
  lua_setfield(L, -2, "info");
  lua_pushvalue(L, boxidx);
  lua_setfield(L, -2, "_state");   /* keeps the state alive with the table */
  luaL_setmetatable(L, KTABLE_MT);
}

/* compile(path_or_source, {kernels = {name = "signature", ...}, name=, arch=, options={...},
** defines={K=V}, cache=true, cache_dir=, load=}) -> module table | nil, log */
static int k_compile(lua_State *L) {
  sr_eval_guard(L, "compiling a kernel");   /* C-side state eval could keep between its calls */
  size_t slen = 0;
  const char *arg = luaL_checklstring(L, 1, &slen);
  luaL_checktype(L, 2, LUA_TTABLE);
  /* C reads the source (or its path) up to a NUL: "x.cu\0..." would be text to Lua and a path here */
  luaL_argcheck(L, memchr(arg, '\0', slen) == NULL, 1, "source or path with a NUL byte");
  int top = lua_gettop(L), nr;
  if (sr_jit_compiler_unavailable()) {
    luaL_pushfail(L);
    lua_pushfstring(L, "speedrun.kernel: %s", sr_jit_compiler_unavailable());
    return 2;
  }
  /* the state box first (two-phase: collectable before it owns anything) */
  kmod_box *box = (kmod_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->m = NULL;
  luaL_setmetatable(L, KMOD_MT);
  int boxidx = lua_gettop(L);
  kmod *m = box->m = calloc(1, sizeof *m);
  if (!m) return luaL_error(L, "compile: out of host memory");
  sr_jit_opts o;
  memset(&o, 0, sizeof o);
  if ((nr = read_source(L, arg, slen, m, &o.source))) return nr;
  o.filename = m->file;
  o.use_cache = 1;
  read_kernels(L, m, &o);
  read_options(L, &o);
  lua_getfield(L, 2, "arch");
  o.arch = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_getfield(L, 2, "cache_dir");
  o.cache_dir = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_getfield(L, 2, "cache");
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) o.use_cache = 0;
  lua_getfield(L, 2, "load");
  int want_load = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
  sr_jit_compile(&o, &m->bin);
  if (!m->bin.ok) {
    luaL_pushfail(L);
    lua_pushstring(L, m->bin.log ? m->bin.log : "compile failed");
    return 2;
  }
  if ((nr = maybe_load(L, m, want_load))) return nr;
  push_module(L, m, boxidx);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

static int ktable_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  lua_getfield(L, 1, "info");
  lua_getfield(L, -1, "file");
  return luaL_error(L, "kernel module %s has no kernel '%s' (declare it in opts.kernels)", lua_tostring(L, -1),
                    k ? k : "?");
}

static int ktable_tostring(lua_State *L) {
  lua_getfield(L, 1, "info");
  lua_getfield(L, -1, "file");
  lua_getfield(L, -2, "kind");
  lua_getfield(L, -3, "arch");
  lua_pushfstring(L, "kernel module %s (%s, %s)", lua_tostring(L, -3), lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}

/* ------------------------------------------------------------------------------------------
** signatures and argument checks without a module */

static int k_signature(lua_State *L) {
  sr_jit_sig sig;
  const char *e = sr_jit_parse_sig(luaL_checkstring(L, 1), &sig);
  if (e) return sr_argerror(L, 1, "bad signature: %s", e);
  lua_createtable(L, sig.nparams, 0);
  for (int i = 0; i < sig.nparams; i++) {
    const sr_jit_param *p = &sig.p[i];
    lua_createtable(L, 0, 5);
    static const char *kinds[] = {"ptr", "int32", "uint32", "int64", "uint64", "float32", "float64"};
    lua_pushstring(L, kinds[p->kind]); lua_setfield(L, -2, "kind");
    if (p->kind == SR_ARG_PTR) {
      lua_pushstring(L, p->dtype < 0 ? "any" : sr_dtype_name((sr_dtype)p->dtype)); lua_setfield(L, -2, "dtype");
      lua_pushboolean(L, p->is_const); lua_setfield(L, -2, "const");
    }
    lua_pushstring(L, p->ctype); lua_setfield(L, -2, "ctype");
    if (p->name[0]) { lua_pushstring(L, p->name); lua_setfield(L, -2, "name"); }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* check_args(signature, args [, {allow_cpu = true}]): the checks of a launch; true or raises */
static int k_check_args(lua_State *L) {
  sr_jit_sig sig;
  const char *e = sr_jit_parse_sig(luaL_checkstring(L, 1), &sig);
  if (e) return sr_argerror(L, 1, "bad signature: %s", e);
  int allow_cpu = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "allow_cpu");
    allow_cpu = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  argval vals[SR_JIT_MAXARG];
  void *ptrs[SR_JIT_MAXARG];
  const kwho w = {"check_args", 2};
  convert_args(L, 2, &w, &sig, vals, ptrs, allow_cpu);
  lua_pushboolean(L, 1);
  return 1;
}

/* ------------------------------------------------------------------------------------------
** faults, synchronisation, the last-launch record */

static void push_record(lua_State *L, const sr_jit_record *r) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, r->kernel); lua_setfield(L, -2, "kernel");
  lua_pushstring(L, r->file); lua_setfield(L, -2, "file");
  lua_pushinteger(L, r->launches); lua_setfield(L, -2, "launches");
  lua_pushinteger(L, r->shared); lua_setfield(L, -2, "shared");
  for (int w = 0; w < 2; w++) {
    const unsigned *d = w ? r->block : r->grid;
    lua_createtable(L, 3, 0);
    for (int i = 0; i < 3; i++) { lua_pushinteger(L, d[i]); lua_rawseti(L, -2, i + 1); }
    lua_setfield(L, -2, w ? "block" : "grid");
  }
}

static int k_last_launch(lua_State *L) {
  sr_jit_record r;
  if (!sr_jit_last_launch(&r)) { lua_pushnil(L); return 1; }
  push_record(L, &r);
  return 1;
}

/* fault() -> nil | message, record: synchronizes; a message when an agent kernel ran and the
** context holds an error */
static int k_fault(lua_State *L) {
  const char *f = sr_jit_fault();
  if (!f) { lua_pushnil(L); return 1; }
  lua_pushstring(L, f);
  sr_jit_record r;
  sr_jit_last_launch(&r);
  push_record(L, &r);
  return 2;
}

/* synchronize(): waits for the stream; raises a "cuda_fault: kernel=..." error for a fault after
** an agent kernel, else the engine's error (deferred index errors, CUDA errors) */
static int k_synchronize(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_probe()) return 0;
  const char *f = sr_jit_fault();
  if (f) return luaL_error(L, "%s", f);
  const char *e = sr_cuda_sync();
  if (e) return luaL_error(L, "cuda: %s", e);
#endif
  return 0;
}

/* ------------------------------------------------------------------------------------------
** timing: time(fn [, {reps=50, warmup=5, flush_l2=true}]) -> median ms, {all ms} */

static int k_time(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int reps = 50, warmup = 5, flush = 1;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "reps"); if (lua_isinteger(L, -1)) reps = (int)lua_tointeger(L, -1);
    lua_getfield(L, 2, "warmup"); if (lua_isinteger(L, -1)) warmup = (int)lua_tointeger(L, -1);
    lua_getfield(L, 2, "flush_l2"); if (lua_isboolean(L, -1)) flush = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  luaL_argcheck(L, reps >= 1 && reps <= 100000 && warmup >= 0, 2, "reps must be in [1, 100000]");
#ifdef SPEEDRUN_CUDA
  const char *why = sr_cuda_probe();
  if (why) return luaL_error(L, "speedrun.kernel.time: no usable GPU: %s", why);
  cudaStream_t s = (cudaStream_t)sr_cuda_stream();
  static void *l2buf;
  static size_t l2bytes;
  if (flush && !l2buf) {
    int dev = 0, l2 = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    l2bytes = (size_t)(l2 > 0 ? l2 : 64 << 20) * 2;   /* twice L2: every line is evicted */
    l2buf = sr_cuda_malloc(l2bytes);
    if (!l2buf) return luaL_error(L, "speedrun.kernel.time: cannot allocate the L2 flush buffer");
  }
  double *ms = malloc(sizeof(double) * (size_t)reps);
  cudaEvent_t *ev = malloc(sizeof(cudaEvent_t) * 2 * (size_t)reps);
  for (int i = 0; i < 2 * reps; i++) cudaEventCreate(&ev[i]);
  for (int i = 0; i < warmup; i++) {
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) goto fail;
  }
  for (int i = 0; i < reps; i++) {
    if (flush) cudaMemsetAsync(l2buf, i & 0xff, l2bytes, s);
    cudaEventRecord(ev[2 * i], s);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) goto fail;
    cudaEventRecord(ev[2 * i + 1], s);
  }
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    for (int i = 0; i < 2 * reps; i++) cudaEventDestroy(ev[i]);
    free(ev); free(ms);
    const char *f = sr_jit_fault();
    return luaL_error(L, "speedrun.kernel.time: %s", f ? f : cudaGetErrorString(e));
  }
  for (int i = 0; i < reps; i++) {
    float t = 0;
    cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]);
    ms[i] = t;
  }
  for (int i = 0; i < 2 * reps; i++) cudaEventDestroy(ev[i]);
  free(ev);
  lua_createtable(L, reps, 0);
  for (int i = 0; i < reps; i++) { lua_pushnumber(L, ms[i]); lua_rawseti(L, -2, i + 1); }
  /* median (insertion sort: reps is small) */
  for (int i = 1; i < reps; i++)
    for (int j = i; j > 0 && ms[j - 1] > ms[j]; j--) { double t = ms[j]; ms[j] = ms[j - 1]; ms[j - 1] = t; }
  double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
  free(ms);
  lua_pushnumber(L, med);
  lua_insert(L, -2);
  return 2;
fail:
  for (int i = 0; i < 2 * reps; i++) cudaEventDestroy(ev[i]);
  free(ev); free(ms);
  return lua_error(L);
#else
  (void)flush;
  return luaL_error(L, "speedrun.kernel.time: %s", sr_jit_compiler_unavailable());
#endif
}

/* ------------------------------------------------------------------------------------------
** facts */

static int k_compiler(lua_State *L) {
  const char *why = sr_jit_compiler_unavailable();
  if (why) { luaL_pushfail(L); lua_pushstring(L, why); return 2; }
  lua_pushstring(L, sr_jit_nvrtc_version());
  return 1;
}

static int k_compile_seconds(lua_State *L) { lua_pushnumber(L, sr_jit_compile_seconds()); return 1; }
static int k_cache_dir(lua_State *L) { lua_pushstring(L, sr_jit_cache_dir()); return 1; }
static int k_include_dir(lua_State *L) { lua_pushstring(L, sr_jit_include_dir()); return 1; }
static int k_cuda_include_dir(lua_State *L) {
  const char *d = sr_jit_cuda_include_dir();
  if (d) lua_pushstring(L, d); else lua_pushnil(L);
  return 1;
}

static const luaL_Reg kernel_functions[] = {
  {"compile", k_compile}, {"signature", k_signature}, {"check_args", k_check_args},
  {"last_launch", k_last_launch}, {"fault", k_fault}, {"synchronize", k_synchronize},
  {"time", k_time}, {"compiler", k_compiler}, {"cache_dir", k_cache_dir},
  {"include_dir", k_include_dir}, {"cuda_include_dir", k_cuda_include_dir},
  {"compile_seconds", k_compile_seconds}, {NULL, NULL}
};

int luaopen_speedrun_kernel_core(lua_State *L) {
  luaL_newmetatable(L, KMOD_MT);
  lua_pushcfunction(L, kstate_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, KTABLE_MT);
  lua_pushcfunction(L, ktable_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ktable_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, kernel_functions);
  lua_pushinteger(L, SR_EXIT_CUDA_FAULT);
  lua_setfield(L, -2, "EXIT_CUDA_FAULT");
  return 1;
}
