/*
** lua/lfuse.c: speedrun.fuse, the step compiler from Lua (host/core/fuse.h underneath).
**
**   local fuse = require "speedrun.fuse"
**   local rec = fuse.record()          -- records every launch from now on
**   step()                             -- one training step
**   rec:stop()                         -- collects garbage (so what dies with the step is seen dead), stops
**   rec:launches()                     -- {"gemm", "unary.relu2", "unary_backward.relu2", ...}: the order
**   local plan = fuse.plan(rec [, rec2] [, {loss = false}])   -- or nil, why; rec2: the next step's, both
**                                      -- must agree; loss = false: no loss groups (A/B measurements)
**   print(plan:dump())                 -- groups, ops, dtypes, stores, bytes saved
**   plan:stats()                       -- {device=, launches=, groups=, folds=, losses=, relays=,
**                                      --  fused_launches=, saved_bytes=, ...}
**   plan:prepare()                     -- cuda: compiles and loads every group's kernel (before a
**                                      -- capture); returns the groups disabled and the first error
**   local r1, r2 = fuse.run(plan, step, ...)  -- step(...) with the plan installed (eager, or inside
**                                      -- cuda.graph's capture); fuse.last() -> groups fused, reason|nil
**   fuse.begin(plan); ...; fuse.finish() -> groups fused, reason|nil   -- the same, by hand
**   plan:check_compile()               -- true, or false and the NVRTC log (no GPU needed)
**   local r1, r2 = fuse.dry(fn, ...)   -- fn(...) in a forked process in dry mode (no kernel runs, no
**                                      -- memory is allocated: core/tensor.h); the Recordings fn returns
**                                      -- come back (or nil, why: fn failed, read a value, ran past
**                                      -- {timeout = s} given as the last argument, default 120 s)
**   fuse.lazy([on])                    -- lazy outputs (SPEEDRUN_FUSE_LAZY=1): storages made while a plan
**                                      -- is installed get memory when first used, so what a group never
**                                      -- stores is never allocated; returns the previous setting
** A recording or plan is freed by the collector (or :free()).
*/
#include <errno.h>       /* defines: errno, EINTR */
#include <stdarg.h>      /* defines: va_list */
#include <poll.h>        /* defines: poll */
#include <signal.h>      /* defines: kill, SIGKILL */
#include <stdio.h>       /* defines: snprintf, fflush */
#include <stdlib.h>      /* defines: free, realloc */
#include <string.h>      /* defines: memset, strerror */
#include <sys/wait.h>    /* defines: waitpid */
#include <time.h>        /* defines: clock_gettime */
#include <unistd.h>      /* defines: fork, pipe, read, write, close, _exit */

#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"         /* defines: luaopen_speedrun_fuse */
#include "core/fuse.h"       /* defines: sr_fuse_rec, sr_fuse_plan */

#define REC_MT "speedrun.fuse.Recording"
#define PLAN_MT "speedrun.fuse.Plan"

typedef struct plan_box { sr_fuse_plan *p; } plan_box;

static int installed_ref = LUA_NOREF;   /* the plan installed by begin(), kept alive until finish() */
static int last_groups;
static char last_reason[400];

static sr_fuse_rec *check_rec(lua_State *L, int i) { return luaL_checkudata(L, i, REC_MT); }
static sr_fuse_plan *check_plan(lua_State *L, int i) {
  plan_box *b = luaL_checkudata(L, i, PLAN_MT);
  luaL_argcheck(L, b->p != NULL, i, "the plan was freed");
  return b->p;
}

/* fuse.record() */
static int f_record(lua_State *L) {
  sr_fuse_rec *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  r->device = -1;
  luaL_setmetatable(L, REC_MT);
  sr_fuse_record_start(r);
  return 1;
}

/* rec:stop(): two full collections (finalizers may free more), then the recording ends */
static int r_stop(lua_State *L) {
  sr_fuse_rec *r = check_rec(L, 1);
  if (r->recording) {
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCCOLLECT);
    sr_fuse_record_stop();
  }
  lua_settop(L, 1);
  return 1;
}

static int r_gc(lua_State *L) {
  sr_fuse_rec_free(check_rec(L, 1));
  return 0;
}

/* rec:launches() -> the recorded launches in order, each "kernel" or "kernel.function" (unary,
** unary_backward, binary, reduce: their function's name) */
static int r_launches(lua_State *L) {
  sr_fuse_rec *r = check_rec(L, 1);
  lua_createtable(L, (int)r->n, 0);
  for (int64_t k = 0; k < r->n; k++) {
    const sr_fuse_launch *l = &r->l[k];
    const char *sub = l->id == SR_K_unary || l->id == SR_K_unary_backward ? sr_unary_name((int)l->i[0])
                      : l->id == SR_K_binary ? sr_binary_name((int)l->i[0])
                      : l->id == SR_K_reduce ? sr_reduce_name((int)l->i[0]) : NULL;
    if (sub) lua_pushfstring(L, "%s.%s", sr_kernels[l->id].name, sub);
    else lua_pushstring(L, sr_kernels[l->id].name);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

static int r_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_rec(L, 1)->n);
  return 1;
}

/* fuse.plan(rec [, rec2] [, {loss = false}]) -> Plan | nil, why */
static int f_plan(lua_State *L) {
  sr_fuse_rec *a = check_rec(L, 1), *b = NULL;
  int oi = 2;
  if (luaL_testudata(L, 2, REC_MT)) b = check_rec(L, 2), oi = 3;
  else if (lua_isnil(L, 2)) oi = 3;
  sr_fuse_opts o = {0};
  if (!lua_isnoneornil(L, oi)) {
    luaL_checktype(L, oi, LUA_TTABLE);
    lua_getfield(L, oi, "loss");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) return luaL_argerror(L, oi, "loss must be a boolean");
    o.no_loss = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  char err[256];
  sr_fuse_plan *p = sr_fuse_plan_build(a, b, &o, err, sizeof err);
  if (!p) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  plan_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->p = p;
  luaL_setmetatable(L, PLAN_MT);
  return 1;
}

static int p_free(lua_State *L) {
  plan_box *b = luaL_checkudata(L, 1, PLAN_MT);
  sr_fuse_plan_free(b->p);
  b->p = NULL;
  return 0;
}

static int p_dump(lua_State *L) {
  char *s = sr_fuse_plan_dump(check_plan(L, 1));
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int p_stats(lua_State *L) {
  sr_fuse_plan *p = check_plan(L, 1);
  int folds = 0, disabled = 0, dead = 0, losses = 0, relays = 0;
  for (int k = 0; k < p->ng; k++) {
    const sr_fuse_group *g = &p->g[k];
    folds += g->fold != 0, disabled += g->disabled, dead += g->dead, losses += g->xent, relays += g->relay;
  }
  lua_createtable(L, 0, 10);
  lua_pushstring(L, sr_device_name((sr_device)p->device));
  lua_setfield(L, -2, "device");
  set_int(L, "launches", p->nlaunch);
  set_int(L, "groups", p->ng);
  set_int(L, "folds", folds);
  set_int(L, "losses", losses);
  set_int(L, "relays", relays);
  set_int(L, "disabled", disabled);
  set_int(L, "not_stored", dead);
  set_int(L, "fused_launches", p->fused_launches);
  set_int(L, "launches_saved", p->fused_launches - p->ng);
  set_int(L, "saved_bytes", p->saved_bytes);
  return 1;
}

/* plan:prepare() -> groups disabled, first error | nil (cuda plans; a no-op on the CPU) */
static int p_prepare(lua_State *L) {
  sr_fuse_plan *p = check_plan(L, 1);
  int off = 0;
  const char *first = NULL;
  if (p->device == SR_CUDA) {
    sr_fuse_cuda_precompile(p->g, p->ng);   /* every kernel at once; the loop below finds them */
    for (int k = 0; k < p->ng; k++) {
      if (p->g[k].fold || p->g[k].disabled) continue;
      const char *e = sr_fuse_cuda_prepare(&p->g[k]);
      if (e) {
        p->g[k].disabled = 1;
        off++;
        if (!first) lua_pushstring(L, e), first = lua_tostring(L, -1);
      }
    }
  }
  lua_pushinteger(L, off);
  if (first) lua_pushstring(L, first);
  else lua_pushnil(L);
  return 2;
}

/* plan:check_compile() -> true | false, log: NVRTC over every element-wise group (no GPU needed) */
static int p_check_compile(lua_State *L) {
  sr_fuse_plan *p = check_plan(L, 1);
  int k = 0;
  const char *e = sr_fuse_cuda_compile_all(p->g, p->ng, &k);
  if (e) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "group %d: %s", k + 1, e);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int f_begin(lua_State *L) {
  sr_fuse_plan *p = check_plan(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, installed_ref);
  lua_pushvalue(L, 1);
  installed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sr_fuse_begin(p);
  return 0;
}

/* fuse.finish() -> groups fused, reason | nil */
static int f_finish(lua_State *L) {
  const char *why = sr_fuse_end(&last_groups);
  snprintf(last_reason, sizeof last_reason, "%s", why ? why : "");
  luaL_unref(L, LUA_REGISTRYINDEX, installed_ref);
  installed_ref = LUA_NOREF;
  lua_pushinteger(L, last_groups);
  if (why) lua_pushstring(L, why);
  else lua_pushnil(L);
  return 2;
}

/* fuse.run(plan, fn, ...) -> fn's results; fuse.last() says how it went */
static int f_run(lua_State *L) {
  check_plan(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushcfunction(L, f_begin);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  int base = 1;
  int st = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  lua_pushcfunction(L, f_finish);
  lua_call(L, 0, 2);
  lua_pop(L, 2);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - base;
}

/* ---- fuse.dry: a recording made in a forked process that runs no kernel and allocates nothing */

static int write_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w, n -= (size_t)w;
  }
  return 0;
}

/* in the child: a tagged message ('E' an error, 'R' a recording), its length, its bytes */
static void send_msg(int fd, char tag, const void *p, size_t n) {
  if (write_all(fd, &tag, 1) || write_all(fd, &n, sizeof n) || (n && write_all(fd, p, n))) _exit(3);
}

/* the child: fn(...) in dry mode, then each Recording it returned, or the error */
static void dry_child(lua_State *L, int fd, int nargs) {
  sr_set_dry(true);
  int top = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
    size_t n;
    const char *m = luaL_tolstring(L, -1, &n);
    send_msg(fd, 'E', m, n);
    _exit(1);
  }
  for (int i = top + 1; i <= lua_gettop(L); i++) {
    sr_fuse_rec *r = luaL_testudata(L, i, REC_MT);
    if (!r) continue;
    if (r->recording) sr_fuse_record_stop();
    size_t n;
    char *b = sr_fuse_rec_pack(r, &n);
    send_msg(fd, 'R', b, n);
  }
  _exit(0);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* everything the child writes until it closes the pipe, or until `limit` seconds pass (*late = 1) */
static char *read_child(int fd, double limit, size_t *len, int *late) {
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  double t0 = now_s();
  *late = 0;
  while (b) {
    int left = (int)((limit - (now_s() - t0)) * 1000);
    if (left <= 0) { *late = 1; break; }
    struct pollfd p = {fd, POLLIN, 0};
    int k = poll(&p, 1, left);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) { *late = k == 0; break; }
    if (n == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) { free(b); return NULL; }
      b = nb;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  *len = n;
  return b;
}

/* nil and "dry run: <fmt ...>" on the stack; returns 2 (the caller returns the top two values) */
static int dry_fail(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushliteral(L, "dry run: ");
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* the child's messages as results: the Recordings, or nil and why (*failed set) */
static int dry_results(lua_State *L, const char *b, size_t n, int *failed) {
  int nres = 0;
  *failed = 1;
  for (size_t at = 0; at < n;) {
    size_t len;
    if (n - at < 1 + sizeof len) return dry_fail(L, "its message cut short");
    char tag = b[at];
    memcpy(&len, b + at + 1, sizeof len);
    at += 1 + sizeof len;
    if (len > n - at) return dry_fail(L, "its message cut short");
    if (tag == 'E') return dry_fail(L, "%s", lua_pushlstring(L, b + at, len));
    sr_fuse_rec *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->device = -1;
    luaL_setmetatable(L, REC_MT);
    size_t used;
    const char *err = sr_fuse_rec_unpack(r, b + at, len, &used);
    if (err) return dry_fail(L, "%s", err);
    at += len;
    nres++;
  }
  *failed = 0;
  return nres;
}

/* fuse.dry(fn, ... [, {timeout = s}]) -> the Recordings fn returned, or nil, why */
static int f_dry(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  double limit = 120;
  int nargs = lua_gettop(L) - 1;
  if (nargs > 0 && lua_istable(L, -1) && !luaL_testudata(L, -1, REC_MT)) {
    lua_getfield(L, -1, "timeout");
    if (!lua_isnil(L, -1)) {
      limit = luaL_checknumber(L, -1);
      luaL_argcheck(L, limit > 0, nargs + 1, "timeout must be positive");
    }
    lua_pop(L, 2);
    nargs--;
  }
  int fd[2];
  if (pipe(fd)) return luaL_error(L, "fuse.dry: pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]), close(fd[1]);
    return luaL_error(L, "fuse.dry: fork: %s", strerror(errno));
  }
  if (pid == 0) {
    close(fd[0]);
    dry_child(L, fd[1], nargs);
  }
  close(fd[1]);
  size_t n = 0;
  int late, failed;
  char *b = read_child(fd[0], limit, &n, &late);
  close(fd[0]);
  int status = 0;
  if (late) kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  lua_settop(L, 0);
  int nres;
  if (!b) nres = dry_fail(L, "out of host memory");
  else if (late) nres = dry_fail(L, "no result in %f s (killed)", limit);
  else {
    nres = dry_results(L, b, n, &failed);
    if (!failed && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))   /* recordings, yet the child failed */
      nres = dry_fail(L, "the process ended %s %d", WIFEXITED(status) ? "with status" : "by signal",
                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  free(b);
  return nres;
}

/* fuse.lazy([on]) -> the previous setting */
static int f_lazy(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_pushboolean(L, sr_fuse_lazy_on());
    return 1;
  }
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, sr_fuse_set_lazy(lua_toboolean(L, 1)));
  return 1;
}

static int f_last(lua_State *L) {
  lua_pushinteger(L, last_groups);
  if (last_reason[0]) lua_pushstring(L, last_reason);
  else lua_pushnil(L);
  return 2;
}

static const luaL_Reg rec_methods[] = {{"stop", r_stop}, {"launches", r_launches}, {"free", r_gc}, {NULL, NULL}};
static const luaL_Reg plan_methods[] = {{"dump", p_dump}, {"stats", p_stats}, {"prepare", p_prepare},
                                        {"check_compile", p_check_compile}, {"free", p_free}, {NULL, NULL}};
static const luaL_Reg fuse_functions[] = {{"record", f_record}, {"plan", f_plan}, {"begin", f_begin},
                                          {"finish", f_finish}, {"run", f_run}, {"last", f_last}, {"lazy", f_lazy}, {"dry", f_dry},
                                          {NULL, NULL}};

static void new_meta(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int luaopen_speedrun_fuse(lua_State *L) {
  new_meta(L, REC_MT, rec_methods, r_gc);
  luaL_getmetatable(L, REC_MT);
  lua_pushcfunction(L, r_len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);
  new_meta(L, PLAN_MT, plan_methods, p_free);
  luaL_newlib(L, fuse_functions);
  return 1;
}
