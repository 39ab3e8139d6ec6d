/*
** harness/stats.c: statistics for scoring (host/harness/stats.h) and the Lua module speedrun.stats:
**   betainc(a, b, x), t_cdf(t, df), ttest_less(values, target) -> {n, mean, std, t, p},
**   fsr(t_i, t_next, t).
*/
#include <math.h>     /* defines: lgamma, exp, log, sqrt, NAN */

#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"     /* defines: sr_argerror */

#include "harness/stats.h"

/* continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified Lentz) */
static double betacf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; m++) {
    int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (fabs(del - 1) < eps) break;
  }
  return h;
}

double sr_betainc(double a, double b, double x) {
  if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return NAN;
  if (x == 0) return 0;
  if (x == 1) return 1;
  double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
  /* the fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise */
  if (x < (a + 1) / (a + b + 2)) return exp(lbt) * betacf(a, b, x) / a;
  return 1 - exp(lbt) * betacf(b, a, 1 - x) / b;
}

double sr_t_cdf(double t, double df) {
  if (!(df > 0) || isnan(t)) return NAN;
  if (isinf(t)) return t > 0 ? 1 : 0;
  double x = df / (df + t * t);
  double tail = 0.5 * sr_betainc(df / 2, 0.5, x);   /* P(T > |t|) */
  return t > 0 ? 1 - tail : tail;
}

sr_ttest sr_ttest_less(const double *x, int n, double target) {
  sr_ttest r = {n, NAN, NAN, NAN, NAN};
  if (n < 1) return r;
  double s = 0;
  for (int i = 0; i < n; i++) s += x[i];
  r.mean = s / n;
  if (n < 2) return r;
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (x[i] - r.mean) * (x[i] - r.mean);
  r.std = sqrt(ss / (n - 1));
  if (r.std > 0) {
    r.t = (r.mean - target) / (r.std / sqrt((double)n));
    r.p = sr_t_cdf(r.t, n - 1);
  } else {
    r.t = r.mean < target ? -INFINITY : r.mean > target ? INFINITY : NAN;
    r.p = r.mean < target ? 0 : r.mean > target ? 1 : NAN;
  }
  return r;
}

double sr_fsr(double t_i, double t_next, double t) {
  if (!(t_i > t_next)) return NAN;
  return (t_i - t) / (t_i - t_next);
}

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
