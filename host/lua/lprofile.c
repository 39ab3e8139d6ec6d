/*
** lua/lprofile.c: speedrun.profile_core, the per-op profiler from Lua (host/core/profile.h underneath;
** lua/speedrun/profile.lua adds profile.run and profile.report on top and is what scripts use).
**
**   local P = require "speedrun.profile_core"
**   P.start()            -- every kernel call from now on is timed (an error if already running)
**   P.active()           -> true while a profile runs
**   P.stop()             -> rows (an error if none runs); waits for the CUDA stream first
**
** A row is {name=, sub=, dtype=, phase=, calls=, ms=, numel=}: the kernel, its sub-function (nil
** for kernels without one), the dtype of its first tensor, "fwd" | "bwd:<node>" | "bwd:accumulate",
** the number of calls, their total milliseconds and the largest numel of the first tensor; the
** rows come sorted by ms, largest first.
*/
#include <stdlib.h>      /* defines: free */
#include <string.h>      /* defines: memcpy */

#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"         /* defines: luaopen_speedrun_profile_core */
#include "core/profile.h"     /* defines: sr_profile_start, sr_profile_stop, sr_profile_on */

static int p_start(lua_State *L) {
  sr_eval_guard(L, "starting the profiler");   /* C-side state eval could keep between its calls */
  const char *err = sr_profile_start();
  if (err) return luaL_error(L, "%s", err);
  return 0;
}

static int p_active(lua_State *L) {
  lua_pushboolean(L, sr_profile_on);
  return 1;
}

static int p_stop(lua_State *L) {
  sr_eval_guard(L, "reading the profiler");   /* C-side state eval could keep between its calls */
  sr_profile_row *rows;
  int n;
  const char *err = sr_profile_stop(&rows, &n);
  if (err) return luaL_error(L, "%s", err);
  /* moved into a userdata before anything may raise, so a memory error leaks nothing */
  sr_profile_row *held = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *held, 0);
  memcpy(held, rows, (size_t)n * sizeof *held);
  free(rows);
  lua_createtable(L, n, 0);
  for (int k = 0; k < n; k++) {
    const sr_profile_row *r = &held[k];
    lua_createtable(L, 0, 7);
    lua_pushstring(L, r->name); lua_setfield(L, -2, "name");
    if (r->sub) { lua_pushstring(L, r->sub); lua_setfield(L, -2, "sub"); }
    lua_pushstring(L, r->dtype); lua_setfield(L, -2, "dtype");
    lua_pushstring(L, r->phase); lua_setfield(L, -2, "phase");
    lua_pushinteger(L, (lua_Integer)r->calls); lua_setfield(L, -2, "calls");
    lua_pushnumber(L, r->ms); lua_setfield(L, -2, "ms");
    lua_pushinteger(L, (lua_Integer)r->numel); lua_setfield(L, -2, "numel");
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static const luaL_Reg profile_functions[] = {
  {"start", p_start}, {"stop", p_stop}, {"active", p_active}, {NULL, NULL}
};

int luaopen_speedrun_profile_core(lua_State *L) {
  luaL_newlib(L, profile_functions);
  return 1;
}
