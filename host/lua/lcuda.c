/*
** lua/lcuda.c: speedrun.cuda, the CUDA device from Lua: memory statistics of the caching allocator,
** synchronize, and CUDA graphs of a whole step (host/cuda/backend.h underneath).
**
**   local cuda = require "speedrun.cuda"      -- also speedrun.cuda
**   cuda.available()      -> true, or false and the reason
**   cuda.memory()         -> {current=, peak=, reserved=, driver_allocs=} (bytes; allocs a count)
**   cuda.setup_stats()    -> {driver_allocs=, driver_alloc_ms=, gemm_plans=, gemm_plan_ms=, module_loads=,
**                            module_load_ms=, graph_builds=, graph_build_ms=, driver_frees=,
**                            driver_free_ms=, gemm_algos_stored=, gemm_algos_asked=}: the engine's
**                            one-time setup so far (cudaMalloc calls, new cuBLASLt plans and where their
**                            algorithms came from: the disk cache of cuda/lt_algo.c or the heuristic,
**                            generated modules loaded, graphs built, cached blocks given back by
**                            cudaFree; zeros without CUDA)
**   cuda.reset_peak(); cuda.empty_cache(); cuda.synchronize(); cuda.capturing()
**   cuda.log_allocs(on)   -- the allocator's log, on for the step before a capture: the capture then
**                         -- takes the cached blocks of the sizes that step held (no cudaMalloc)
**   local g = cuda.graph(step [, ...])        -- captures ONE call step(...); runs nothing yet
**   local loss = g:replay()                   -- runs the captured work; returns step's results
**   g.captured, g.reason                      -- false + why when it fell back to eager
**   g:snapshot([where]) -> bytes | nil, err   -- copies the state the captured launches use
**                                             -- (where: "device", default, or "host")
**   g:restore(); g:drop_snapshot()            -- puts it back / frees the copies
**   g:free()                                  -- (also __gc / <close>)
**
** Capture semantics (as torch.cuda.graph): the call of step(...) records the kernels it issues
** without running them; every replay runs them again on the same memory. Tensors created inside
** step come from the graph's private pool and keep their addresses, so step's results (say the
** loss) are overwritten by each replay. Inputs must live in tensors made before the capture and
** be updated in place (x:copy_(batch)) between replays. Host<->device copies, :item(), tolist()
** and synchronize inside step fail the capture. Run one eager step first so that lazily created
** state (optimizer moments, cuBLASLt plans) exists.
**
** Eager fallback: when the capture cannot start (no GPU, SPEEDRUN_NO_GRAPHS=1) or step raises an
** error during it (an uncapturable operation, or a bug), the capture is abandoned and the object
** runs step(...) eagerly on each replay instead; g.captured is false and g.reason says why. A
** genuine bug in step then surfaces at the first replay.
*/
#include <stdlib.h>      /* defines: getenv */
#include <string.h>      /* defines: strcmp */

#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"         /* defines: luaopen_speedrun_cuda, sr_eval_guard */
#include "core/tensor.h"      /* defines: sr_cuda_available, sr_cuda_backend */
#ifdef SPEEDRUN_CUDA
#include "cuda/backend.h"  /* defines: sr_cuda_graph_begin, sr_cuda_peak_bytes */
#include "cuda/lt_algo.h"  /* defines: sr_lt_algo_stats */
#endif

#define SR_GRAPH_MT "speedrun.cuda.Graph"

typedef struct graph_box {
#ifdef SPEEDRUN_CUDA
  sr_cuda_graph *g;
#else
  void *g;
#endif
  int nres;   /* results of the captured call (kept in the uservalue table) */
} graph_box;

static int c_available(lua_State *L) {
  if (sr_cuda_available()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
#ifdef SPEEDRUN_CUDA
  const char *why = sr_cuda_probe();
  lua_pushstring(L, why ? why : "CUDA is not usable");
#else
  lua_pushstring(L, "built without the CUDA backend");
#endif
  return 2;
}

static int c_memory(lua_State *L) {
  sr_eval_guard(L, "reading memory statistics");   /* C-side state eval could keep between its calls */
  lua_createtable(L, 0, 4);
  double cur = 0, peak = 0, res = 0, allocs = 0;
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_available()) {
    cur = (double)sr_cuda_current_bytes();
    peak = (double)sr_cuda_peak_bytes();
    res = (double)sr_cuda_reserved_bytes();
    allocs = (double)sr_cuda_driver_allocs();
  }
#endif
  lua_pushinteger(L, (lua_Integer)cur); lua_setfield(L, -2, "current");
  lua_pushinteger(L, (lua_Integer)peak); lua_setfield(L, -2, "peak");
  lua_pushinteger(L, (lua_Integer)res); lua_setfield(L, -2, "reserved");
  lua_pushinteger(L, (lua_Integer)allocs); lua_setfield(L, -2, "driver_allocs");
  return 1;
}

/* cuda.setup_stats's kinds, in cuda/backend.h's order (SR_SETUP_DRIVER_ALLOC, SR_SETUP_GEMM_PLAN,
** SR_SETUP_MODULE_LOAD, SR_SETUP_GRAPH_BUILD, SR_SETUP_DRIVER_FREE, SR_SETUP_GEMM_TUNE); every `_ms` field is one kind's
** time (harness/steps.lua takes the kinds of its OFF_CLOCK list off the warm-up's clock) */
enum { SETUP_KINDS = 6 };
#ifdef SPEEDRUN_CUDA
_Static_assert((int)SETUP_KINDS == (int)SR_SETUP_KINDS, "cuda.setup_stats names every setup kind");
#endif

static int c_setup_stats(lua_State *L) {
  sr_eval_guard(L, "reading setup statistics");   /* C-side state eval could keep between its calls */
  static const char *const names[SETUP_KINDS][2] = {{"driver_allocs", "driver_alloc_ms"},
                                                           {"gemm_plans", "gemm_plan_ms"},
                                                           {"module_loads", "module_load_ms"},
                                                           {"graph_builds", "graph_build_ms"},
                                                           {"driver_frees", "driver_free_ms"},
                                                           {"gemm_tunes", "gemm_tune_ms"}};
  lua_createtable(L, 0, 2 * SETUP_KINDS);
  for (int k = 0; k < SETUP_KINDS; k++) {
    int64_t n = 0;
    double s = 0;
#ifdef SPEEDRUN_CUDA
    if (sr_cuda_available()) sr_cuda_setup_stats(k, &n, &s);
#endif
    lua_pushinteger(L, (lua_Integer)n); lua_setfield(L, -2, names[k][0]);
    lua_pushnumber(L, s * 1000); lua_setfield(L, -2, names[k][1]);
  }
  long stored = 0, asked = 0;   /* the plans' algorithms: from the disk cache, from the heuristic */
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_available()) sr_lt_algo_stats(&stored, &asked);
#endif
  lua_pushinteger(L, (lua_Integer)stored); lua_setfield(L, -2, "gemm_algos_stored");
  lua_pushinteger(L, (lua_Integer)asked); lua_setfield(L, -2, "gemm_algos_asked");
  return 1;
}

static int c_reset_peak(lua_State *L) {
  sr_eval_guard(L, "resetting memory statistics");   /* C-side state eval could keep between its calls */
  (void)L;
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_available()) sr_cuda_reset_peak();
#endif
  return 0;
}

static int c_empty_cache(lua_State *L) {
  sr_eval_guard(L, "emptying the memory cache");   /* C-side state eval could keep between its calls */
  (void)L;
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_available()) sr_cuda_empty_cache();
#endif
  return 0;
}

static int c_synchronize(lua_State *L) {
  (void)L;
  if (sr_cuda_available() && !sr_dry()) sr_cuda_backend()->synchronize();   /* a dry run queues nothing */
  return 0;
}

static int c_log_allocs(lua_State *L) {
  sr_eval_guard(L, "logging allocations");   /* C-side state eval could keep between its calls */
  int on = lua_toboolean(L, 1);
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_started()) sr_cuda_log_allocs(on);   /* no context, no allocations to log */
#else
  (void)on;
#endif
  return 0;
}

static int c_capturing(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  lua_pushboolean(L, sr_cuda_capturing());
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* graphs. Uservalue table: [1] fn, [2] {args}, [3] {results}, captured, reason */

static graph_box *check_graph(lua_State *L) { return (graph_box *)luaL_checkudata(L, 1, SR_GRAPH_MT); }

static void set_fallback(lua_State *L, int ud, const char *why) {
  lua_getiuservalue(L, ud, 1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "captured");
  lua_pushstring(L, why);
  lua_setfield(L, -2, "reason");
  lua_pop(L, 1);
}

/* graph(fn, ...) */
static int c_graph(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  graph_box *b = (graph_box *)lua_newuserdatauv(L, sizeof *b, 1);
  int ud = lua_gettop(L);
  b->g = NULL;
  b->nres = 0;
  luaL_setmetatable(L, SR_GRAPH_MT);
  lua_createtable(L, 3, 2);  /* the uservalue */
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_createtable(L, nargs, 0);
  for (int i = 0; i < nargs; i++) {
    lua_pushvalue(L, 2 + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_rawseti(L, -2, 2);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "captured");
  lua_setiuservalue(L, ud, 1);

  const char *why = NULL;
  const char *env = getenv("SPEEDRUN_NO_GRAPHS");
  if (env && *env && strcmp(env, "0")) why = "SPEEDRUN_NO_GRAPHS is set";
  else if (!sr_cuda_available()) why = "CUDA is not usable";
#ifndef SPEEDRUN_CUDA
  if (!why) why = "built without the CUDA backend";
#else
  if (!why) why = sr_cuda_graph_begin();
#endif
  if (why) {
    set_fallback(L, ud, why);
    lua_settop(L, ud);
    return 1;
  }
#ifdef SPEEDRUN_CUDA
  int top = lua_gettop(L);
  lua_pushvalue(L, 1);
  for (int i = 0; i < nargs; i++) lua_pushvalue(L, 2 + i);
  int st = lua_pcall(L, nargs, LUA_MULTRET, 0);
  sr_cuda_graph *g = NULL;
  const char *e = sr_cuda_graph_end(&g);
  if (st != LUA_OK) {
    if (g) sr_cuda_graph_free(g);
    lua_pushfstring(L, "the step raised an error during capture: %s", lua_tostring(L, -1));
    set_fallback(L, ud, lua_tostring(L, -1));
    lua_settop(L, ud);
    return 1;
  }
  if (e) {
    set_fallback(L, ud, e);
    lua_settop(L, ud);
    return 1;
  }
  int nres = lua_gettop(L) - top;
  b->g = g;
  b->nres = nres;
  lua_getiuservalue(L, ud, 1);
  lua_createtable(L, nres, 0);
  for (int i = 0; i < nres; i++) {
    lua_pushvalue(L, top + 1 + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_rawseti(L, -2, 3);
#endif
  lua_settop(L, ud);
  return 1;
}

/* g:replay() -> the step's results */
static int g_replay(lua_State *L) {
  graph_box *b = check_graph(L);
  sr_eval_guard(L, "a CUDA graph replay");   /* captured work writes memory the dispatcher never sees */
  lua_getiuservalue(L, 1, 1);
  int uv = lua_gettop(L);
  if (!b->g) {
    lua_getfield(L, uv, "captured");
    bool captured = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (captured) return luaL_error(L, "cuda graph: replay of a freed graph");
    /* eager fallback: call fn(args...) */
    int base = lua_gettop(L);
    lua_rawgeti(L, uv, 1);
    lua_rawgeti(L, uv, 2);
    int nargs = (int)luaL_len(L, -1);
    int at = lua_gettop(L);
    for (int i = 1; i <= nargs; i++) lua_rawgeti(L, at, i);
    lua_remove(L, at);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L) - base;
  }
#ifdef SPEEDRUN_CUDA
  const char *e = sr_cuda_graph_replay(b->g);
  if (e) return luaL_error(L, "%s", e);
#endif
  lua_rawgeti(L, uv, 3);
  int res = lua_gettop(L);
  for (int i = 1; i <= b->nres; i++) lua_rawgeti(L, res, i);
  return b->nres;
}

/* g:snapshot([where]) -> bytes copied, or nil and the reason (also for an eager fallback);
** where: "device" (default) or "host" */
static int g_snapshot(lua_State *L) {
  graph_box *b = check_graph(L);
  static const char *const wheres[] = {"device", "host", NULL};
  int host = luaL_checkoption(L, 2, "device", wheres);
  (void)host;
  if (!b->g) {
    luaL_pushfail(L);
    lua_pushstring(L, "cuda graph: no captured graph to snapshot");
    return 2;
  }
#ifdef SPEEDRUN_CUDA
  size_t n = 0;
  const char *e = sr_cuda_graph_snapshot(b->g, host, &n);
  if (e) {
    luaL_pushfail(L);
    lua_pushstring(L, e);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)n);
#endif
  return 1;
}

static int g_restore(lua_State *L) {
  graph_box *b = check_graph(L);
  sr_eval_guard(L, "a CUDA graph restore");
  if (!b->g) return luaL_error(L, "cuda graph: no captured graph to restore");
#ifdef SPEEDRUN_CUDA
  const char *e = sr_cuda_graph_restore(b->g);
  if (e) return luaL_error(L, "%s", e);
#endif
  return 0;
}

static int g_drop_snapshot(lua_State *L) {
  graph_box *b = check_graph(L);
#ifdef SPEEDRUN_CUDA
  if (b->g) sr_cuda_graph_drop_snapshot(b->g);
#endif
  (void)b;
  return 0;
}

/* g:lent() -> the blocks of g's memory lent to tensors made beside it still in use (SR_GRAPH_LEND;
** g:replay() refuses while there are any); 0 for an eager fallback */
static int g_lent(lua_State *L) {
  graph_box *b = check_graph(L);
  int n = 0;
#ifdef SPEEDRUN_CUDA
  if (b->g) n = sr_cuda_graph_lent(b->g);
#endif
  (void)b;
  lua_pushinteger(L, n);
  return 1;
}

static int g_free(lua_State *L) {
  graph_box *b = check_graph(L);
#ifdef SPEEDRUN_CUDA
  if (b->g) sr_cuda_graph_free(b->g);
#endif
  b->g = NULL;
  return 0;
}

/* g.captured, g.reason */
static int g_index(lua_State *L) {
  check_graph(L);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "captured") || !strcmp(k, "reason")) {
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, k);
    return 1;
  }
  luaL_getmetatable(L, SR_GRAPH_MT);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

static int g_tostring(lua_State *L) {
  graph_box *b = check_graph(L);
  lua_pushfstring(L, "cuda.Graph(%s)", b->g ? "captured" : "eager fallback");
  return 1;
}

static const luaL_Reg graph_methods[] = {{"replay", g_replay}, {"snapshot", g_snapshot}, {"restore", g_restore},
                                         {"drop_snapshot", g_drop_snapshot}, {"lent", g_lent}, {"free", g_free},
                                         {NULL, NULL}};

static const luaL_Reg cuda_functions[] = {
  {"available", c_available}, {"memory", c_memory}, {"setup_stats", c_setup_stats}, {"reset_peak", c_reset_peak},
  {"empty_cache", c_empty_cache}, {"synchronize", c_synchronize}, {"capturing", c_capturing},
  {"log_allocs", c_log_allocs}, {"graph", c_graph}, {NULL, NULL}
};

int luaopen_speedrun_cuda(lua_State *L) {
  if (luaL_newmetatable(L, SR_GRAPH_MT)) {
    luaL_newlib(L, graph_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, g_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, g_free);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, cuda_functions);
  return 1;
}
