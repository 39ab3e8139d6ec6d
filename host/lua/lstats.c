/*
** lua/lstats.c: the Lua module speedrun.stats over host/harness/stats.c:
**   betainc(a, b, x), t_cdf(t, df), ttest_less(values, target) -> {n, mean, std, t, p},
**   fsr(t_i, t_next, t).
*/
#include <math.h>      /* defines: isnan */

#include <lua.h>
#include <lauxlib.h>

#include "harness/stats.h"  /* defines: sr_betainc, sr_t_cdf, sr_ttest_less, sr_fsr */
#include "lua/lsr.h"        /* defines: sr_argerror, luaopen_speedrun_stats */

/* ---- Lua ---- */
static int l_betainc(lua_State *L) {
  lua_pushnumber(L, sr_betainc(luaL_checknumber(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3)));
  return 1;
}

static int l_t_cdf(lua_State *L) {
  lua_pushnumber(L, sr_t_cdf(luaL_checknumber(L, 1), luaL_checknumber(L, 2)));
  return 1;
}

static void setnum(lua_State *L, const char *k, double v) {
  if (isnan(v)) return;   /* absent = not defined */
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static int l_ttest_less(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double target = luaL_checknumber(L, 2);
  int n = (int)luaL_len(L, 1);
  double *x = lua_newuserdatauv(L, sizeof(double) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    int ok;
    x[i] = lua_tonumberx(L, -1, &ok);
    if (!ok) sr_argerror(L, 1, "entry %d is a %s, not a number", i + 1, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  sr_ttest r = sr_ttest_less(x, n, target);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, r.n);
  lua_setfield(L, -2, "n");
  setnum(L, "mean", r.mean);
  setnum(L, "std", r.std);
  setnum(L, "t", r.t);
  setnum(L, "p", r.p);
  return 1;
}

static int l_fsr(lua_State *L) {
  double v = sr_fsr(luaL_checknumber(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3));
  if (isnan(v)) return 0;
  lua_pushnumber(L, v);
  return 1;
}

int luaopen_speedrun_stats(lua_State *L) {
  static const luaL_Reg f[] = {{"betainc", l_betainc}, {"t_cdf", l_t_cdf}, {"ttest_less", l_ttest_less},
                               {"fsr", l_fsr}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
