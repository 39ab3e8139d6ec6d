/*
** lua/lharness.c: the C side of the harness (docs/harness.md), as two Lua modules.
**
**   require "speedrun.json": encode(v [, pretty]) -> string (object keys sorted; NaN/inf -> null;
**     a table is an array when it has keys 1..n only, `json.array` marks an empty one);
**     decode(s) -> value | nil, msg; null (a light userdata standing for JSON null).
**
**   require "speedrun.harness_core" (host-only: score-mode recipes cannot require it):
**     now() -> monotonic seconds; sync() -> nil | message (waits for the GPU when one is in use);
**     checksum(t) -> integer (FNV-1a over the tensor's values, any device);
**     ce_sum(logits, targets) -> sum, count, nonfinite (cross-entropy in double precision over
**       the last dimension; targets are 0-based ids; raises on a shape or id mismatch);
**     sum_finite(t) -> sum, count, nonfinite; int_range(t) -> min, max;
**     causal_diff(a, b, row, pos) -> max |a-b| at positions < pos of `row` and everywhere in the
**       other rows, max |a| (a, b: [B, T, V] logits of the same inputs but for token (row, pos));
**     shape(t) -> {sizes} (read in C); emit(s) writes one line to the event channel (fd SR_EVENT_FD in the child, else ignored);
**     spawn{argv=, env=, as_limit=, cwd=} -> Process (own process group; stdout, stderr and
**       the event channel are pipes read with p:read(timeout) -> list of {stream, data});
**     Process: pid, wait() -> nil | ("exited", code) | ("signaled", signo, name), kill([sig]),
**       rss() -> bytes; trap_signals() (SIGINT/SIGTERM set a flag) and interrupted();
**     isatty(fd); ram_bytes(); peak_rss() -> bytes; cuda_peak() -> bytes | nil;
**     card() -> description of the device in use; hostname(); getpid(); set_as_limit(bytes);
**     trace_start() -> Trace (records every kernel launch until trace_stop(): host/core/registry.h);
**       Trace: count() -> launches, diff(other) -> nil | the first difference (a sentence).
*/
#define _GNU_SOURCE            /* pipe2, strsignal */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <lua.h>
#include <lauxlib.h>

#include "util/clock.h"          /* defines: sr_monotonic_s */
#include "lua/lsr.h"            /* defines: sr_check_tensor, sr_to_tensor */
#include "core/tensor.h"         /* defines: sr_to_raw, sr_data */
#include "core/copy.h"        /* defines: sr_to_raw */
#include "util/fileio.h"      /* defines: sr_source_dir */
#include "core/trace.h"          /* defines: sr_trace, sr_trace_start, sr_trace_diff */
#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>   /* defines: cudaGetDeviceProperties */
#include "cuda/backend.h"   /* defines: sr_cuda_sync, sr_cuda_peak_bytes */
#endif

#define SR_EVENT_FD 3
#define PROCESS_MT "speedrun.Process"

/* =============================================================================================
** JSON */

static char json_null_key, json_array_key;

static cJSON *to_json(lua_State *L, int idx, int depth);

static int is_array(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1) { lua_pop(L, 1); return 0; }
    if (k > max) max = k;
    count++;
  }
  *n = max;
  if (count == 0) {
    /* empty: an array only if marked */
    if (!lua_getmetatable(L, idx)) return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &json_array_key);
    int marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
  }
  return count == max;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cJSON *to_json(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 64) sr_argerror(L, 1, "nesting deeper than 64 (a cycle?)");
  luaL_checkstack(L, 4, "json: nesting too deep");  /* each level holds a key, a value and is_array's pair */
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
      double v = lua_tonumber(L, idx);
      if (!isfinite(v)) return cJSON_CreateNull();
      return cJSON_CreateNumber(v);
    }
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == &json_null_key) return cJSON_CreateNull();
      break;
    case LUA_TTABLE: {
      lua_Integer n;
      if (is_array(L, idx, &n)) {
        cJSON *a = cJSON_CreateArray();
        for (lua_Integer i = 1; i <= n; i++) {
          lua_geti(L, idx, i);
          cJSON_AddItemToArray(a, to_json(L, -1, depth + 1));
          lua_pop(L, 1);
        }
        return a;
      }
      /* object with sorted keys */
      size_t nk = 0, cap = 16;
      char **keys = malloc(cap * sizeof *keys);
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        char buf[64];
        const char *k;
        if (lua_type(L, -1) == LUA_TSTRING) k = lua_tostring(L, -1);
        else if (lua_type(L, -1) == LUA_TNUMBER) {
          if (lua_isinteger(L, -1)) snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, -1));
          else snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, -1));
          k = buf;
        } else continue;
        if (nk == cap) keys = realloc(keys, (cap *= 2) * sizeof *keys);
        keys[nk++] = strdup(k);
      }
      qsort(keys, nk, sizeof *keys, cmp_str);
      cJSON *o = cJSON_CreateObject();
      for (size_t i = 0; i < nk; i++) {
        lua_getfield(L, idx, keys[i]);
        if (lua_isnil(L, -1)) {   /* a numeric key */
          lua_pop(L, 1);
          char *end;
          long long iv = strtoll(keys[i], &end, 10);
          if (*end == '\0') lua_geti(L, idx, iv);
          else lua_pushnil(L);
        }
        cJSON_AddItemToObject(o, keys[i], to_json(L, -1, depth + 1));
        lua_pop(L, 1);
        free(keys[i]);
      }
      free(keys);
      return o;
    }
    default: break;
  }
  return cJSON_CreateString(luaL_tolstring(L, idx, NULL));  /* functions, userdata: their name */
}

static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  cJSON *j = to_json(L, 1, 0);
  char *s = lua_toboolean(L, 2) ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s) return luaL_error(L, "json.encode: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static void push_json(lua_State *L, const cJSON *j, int depth) {
  luaL_checkstack(L, 4, "json too deep");
  if (cJSON_IsNull(j)) lua_pushlightuserdata(L, &json_null_key);
  else if (cJSON_IsFalse(j)) lua_pushboolean(L, 0);
  else if (cJSON_IsTrue(j)) lua_pushboolean(L, 1);
  else if (cJSON_IsNumber(j)) {
    double v = j->valuedouble;
    if (v == floor(v) && fabs(v) < 9.007199254740992e15) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
  } else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
  else if (cJSON_IsArray(j)) {
    lua_createtable(L, cJSON_GetArraySize(j), 0);
    int i = 1;
    for (const cJSON *c = j->child; c; c = c->next) {
      push_json(L, c, depth + 1);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsObject(j)) {
    lua_newtable(L);
    for (const cJSON *c = j->child; c; c = c->next) {
      if (cJSON_IsNull(c)) continue;   /* absent in Lua */
      push_json(L, c, depth + 1);
      lua_setfield(L, -2, c->string);
    }
  } else lua_pushnil(L);
}

static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  cJSON *j = cJSON_ParseWithLength(s, len);
  if (!j) {
    luaL_pushfail(L);
    const char *at = cJSON_GetErrorPtr();
    lua_pushfstring(L, "invalid JSON near byte %d", at ? (int)(at - s) + 1 : 0);
    return 2;
  }
  push_json(L, j, 0);
  cJSON_Delete(j);
  return 1;
}

static int json_array(lua_State *L) {  /* array([t]) -> t marked as a JSON array */
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  lua_settop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &json_array_key);
  lua_setmetatable(L, 1);
  return 1;
}

int luaopen_speedrun_json(lua_State *L) {
  static const luaL_Reg f[] = {{"encode", json_encode}, {"decode", json_decode}, {"array", json_array}, {NULL, NULL}};
  lua_rawgetp(L, LUA_REGISTRYINDEX, &json_array_key);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_pushstring(L, "json.array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &json_array_key);
  }
  lua_pop(L, 1);
  luaL_newlib(L, f);
  lua_pushlightuserdata(L, &json_null_key);
  lua_setfield(L, -2, "null");
  return 1;
}

/* =============================================================================================
** measurement */

static int h_now(lua_State *L) {
  lua_pushnumber(L, sr_monotonic_s());
  return 1;
}

static int h_sync(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  if (lua_toboolean(L, 1)) {
    const char *e = sr_cuda_sync();
    if (e) { lua_pushstring(L, e); return 1; }
  }
#endif
  return 0;
}

/* a CPU contiguous copy of any tensor in its own dtype (released by the caller) */
static sr_tensor *host_copy(sr_tensor *t, sr_dtype dt) { return sr_to_raw(t, SR_CPU, dt); }

static int h_checksum(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_tensor *c = host_copy(t, t->dtype);
  const unsigned char *p = sr_data(c);
  size_t n = (size_t)sr_numel(c) * sr_dtype_size(c->dtype);
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
  for (int d = 0; d < c->ndim; d++) { h ^= (uint64_t)c->shape[d]; h *= 1099511628211ULL; }
  sr_tensor_release(c);
  lua_pushinteger(L, (lua_Integer)(h >> 1));
  return 1;
}

static int h_ce_sum(lua_State *L) {
  sr_tensor *lg = sr_check_tensor(L, 1), *tg = sr_check_tensor(L, 2);
  if (lg->ndim != tg->ndim + 1) return luaL_error(L, "eval returned logits with %d dimensions for inputs with %d (want one more: the vocabulary)", lg->ndim, tg->ndim);
  for (int d = 0; d < tg->ndim; d++)
    if (lg->shape[d] != tg->shape[d]) {
      char a[96], b[96];
      return luaL_error(L, "eval returned logits of shape %s for inputs of shape %s", sr_shape_str(lg, a, sizeof a), sr_shape_str(tg, b, sizeof b));
    }
  if (!sr_dtype_is_float(lg->dtype)) return luaL_error(L, "eval returned %s logits (want a float type)", sr_dtype_name(lg->dtype));
  int64_t V = lg->shape[lg->ndim - 1], n = sr_numel(tg);
  sr_tensor *l = host_copy(lg, SR_F32), *t = host_copy(tg, SR_I32);
  const float *lp = sr_data(l);
  const int32_t *tp = sr_data(t);
  double sum = 0;
  int64_t nonfinite = 0, bad = -1;
  for (int64_t i = 0; i < n; i++) {
    int32_t y = tp[i];
    if (y < 0 || y >= V) { bad = i; break; }
    const float *row = lp + i * V;
    double m = -INFINITY;
    for (int64_t v = 0; v < V; v++) if (row[v] > m) m = row[v];
    double s = 0;
    for (int64_t v = 0; v < V; v++) s += exp((double)row[v] - m);
    double ce = m + log(s) - (double)row[y];
    if (!isfinite(ce)) nonfinite++;
    else sum += ce;
  }
  int32_t badv = bad >= 0 ? tp[bad] : 0;
  sr_tensor_release(l);
  sr_tensor_release(t);
  if (bad >= 0) return luaL_error(L, "a validation target is token %d but the logits have only %d columns (vocab_size too small)", (int)badv, (int)V);
  lua_pushnumber(L, sum);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)nonfinite);
  return 3;
}

/* sum_finite(t) -> sum of the finite values (double), count, number of non-finite values */
static int h_sum_finite(lua_State *L) {
  sr_tensor *c = host_copy(sr_check_tensor(L, 1), SR_F64);
  const double *p = sr_data(c);
  int64_t n = sr_numel(c), bad = 0;
  double s = 0;
  for (int64_t i = 0; i < n; i++) { if (isfinite(p[i])) s += p[i]; else bad++; }
  sr_tensor_release(c);
  lua_pushnumber(L, s);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)bad);
  return 3;
}

/* int_range(t) -> min, max of an integer tensor */
static int h_int_range(lua_State *L) {
  sr_tensor *c = host_copy(sr_check_tensor(L, 1), SR_I32);
  const int32_t *p = sr_data(c);
  int64_t n = sr_numel(c);
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (int64_t i = 0; i < n; i++) { if (p[i] < lo) lo = p[i]; if (p[i] > hi) hi = p[i]; }
  sr_tensor_release(c);
  lua_pushinteger(L, lo);
  lua_pushinteger(L, hi);
  return 2;
}

static int h_causal_diff(lua_State *L) {
  sr_tensor *a = sr_check_tensor(L, 1), *b = sr_check_tensor(L, 2);
  lua_Integer row = luaL_checkinteger(L, 3), pos = luaL_checkinteger(L, 4);   /* 1-based */
  if (a->ndim != 3 || !sr_same_shape(a, b)) return sr_argerror(L, a->ndim != 3 ? 1 : 2, "want two [B, T, V] tensors of one shape");
  int64_t B = a->shape[0], T = a->shape[1], V = a->shape[2];
  sr_tensor *x = host_copy(a, SR_F32), *y = host_copy(b, SR_F32);
  const float *xp = sr_data(x), *yp = sr_data(y);
  double dmax = 0, amax = 0;
  int nan = 0;
  for (int64_t r = 0; r < B; r++)
    for (int64_t t = 0; t < T; t++) {
      if (r == row - 1 && t >= pos - 1) continue;
      const float *p = xp + (r * T + t) * V, *q = yp + (r * T + t) * V;
      for (int64_t v = 0; v < V; v++) {
        double d = fabs((double)p[v] - (double)q[v]);
        if (isnan(d)) nan = 1;
        if (d > dmax) dmax = d;
        if (fabs(p[v]) > amax) amax = fabs(p[v]);
      }
    }
  sr_tensor_release(x);
  sr_tensor_release(y);
  lua_pushnumber(L, nan ? INFINITY : dmax);
  lua_pushnumber(L, amax);
  return 2;
}

/* shape(t) -> {d1, d2, ...}: read from C, so a recipe cannot shadow the `shape` property */
static int h_shape(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, (lua_Integer)t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int h_emit(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  static int ok = -1;
  if (ok < 0) ok = fcntl(SR_EVENT_FD, F_GETFD) != -1 && getenv("SPEEDRUN_HARNESS_CHILD") != NULL;
  if (!ok) return 0;
  char *buf = malloc(n + 1);
  memcpy(buf, s, n);
  buf[n] = '\n';
  size_t off = 0;
  while (off < n + 1) {
    ssize_t w = write(SR_EVENT_FD, buf + off, n + 1 - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  free(buf);
  return 0;
}

/* =============================================================================================
** child processes */

typedef struct proc_box {
  pid_t pid;
  int fd[3];          /* stdout, stderr, events; -1 when closed */
  int done;
  int status;
} proc_box;

static const char *const stream_names[3] = {"stdout", "stderr", "events"};

static int h_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "argv");
  if (!lua_istable(L, -1)) return sr_argerror(L, 1, "field 'argv' must be a table, got %s", luaL_typename(L, -1));
  int argc = (int)luaL_len(L, -1);
  if (argc < 1) return sr_argerror(L, 1, "field 'argv' is empty");
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  for (int i = 0; i < argc; i++) {
    lua_geti(L, -1, i + 1);
    argv[i] = strdup(luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* env additions: name -> value (false removes) */
  int nenv = 0;
  char *envset[64][2];
  lua_getfield(L, 1, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) && nenv < 64) {
      envset[nenv][0] = strdup(lua_tostring(L, -2));
      envset[nenv][1] = lua_toboolean(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
      nenv++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "as_limit");
  lua_Integer as_limit = lua_isnil(L, -1) ? 0 : lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "cwd");
  const char *cwd = lua_tostring(L, -1);
  char *cwd_copy = cwd ? strdup(cwd) : NULL;
  lua_pop(L, 1);

  int p[3][2];
  for (int i = 0; i < 3; i++)
    if (pipe2(p[i], O_CLOEXEC) != 0) return luaL_error(L, "spawn: pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return luaL_error(L, "spawn: fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    dup2(p[0][1], 1);
    dup2(p[1][1], 2);
    dup2(p[2][1], SR_EVENT_FD);   /* dup2 clears FD_CLOEXEC on the copy */
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) { dup2(devnull, 0); close(devnull); }
    for (int i = 0; i < nenv; i++) {
      if (envset[i][1]) setenv(envset[i][0], envset[i][1], 1);
      else unsetenv(envset[i][0]);
    }
    if (as_limit > 0) {
      struct rlimit rl = {(rlim_t)as_limit, (rlim_t)as_limit};
      setrlimit(RLIMIT_AS, &rl);
    }
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    if (cwd_copy && chdir(cwd_copy) != 0) { fprintf(stderr, "spawn: chdir %s: %s\n", cwd_copy, strerror(errno)); _exit(127); }
    execv(argv[0], argv);
    fprintf(stderr, "spawn: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);   /* both sides, as shells do, so kill(-pid) works at once */
  for (int i = 0; i < argc; i++) free(argv[i]);
  free(argv);
  for (int i = 0; i < nenv; i++) { free(envset[i][0]); free(envset[i][1]); }
  free(cwd_copy);
  proc_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->pid = pid;
  b->done = 0;
  b->status = 0;
  for (int i = 0; i < 3; i++) {
    close(p[i][1]);
    b->fd[i] = p[i][0];
    fcntl(b->fd[i], F_SETFL, O_NONBLOCK);
  }
  luaL_setmetatable(L, PROCESS_MT);
  return 1;
}

static proc_box *check_proc(lua_State *L) { return luaL_checkudata(L, 1, PROCESS_MT); }

/* read(timeout) -> list of {stream, data}; an empty list when nothing came; closed pipes drop out */
static int p_read(lua_State *L) {
  proc_box *b = check_proc(L);
  double timeout = luaL_optnumber(L, 2, 0.1);
  struct pollfd pf[3];
  int map[3], n = 0;
  for (int i = 0; i < 3; i++)
    if (b->fd[i] >= 0) { pf[n].fd = b->fd[i]; pf[n].events = POLLIN; pf[n].revents = 0; map[n] = i; n++; }
  lua_newtable(L);
  if (n == 0) {
    if (timeout > 0) usleep((useconds_t)(timeout * 1e6 > 2e5 ? 2e5 : timeout * 1e6));
    return 1;
  }
  int r = poll(pf, (nfds_t)n, (int)(timeout * 1000));
  if (r <= 0) return 1;
  int k = 1;
  char buf[65536];
  for (int j = 0; j < n; j++) {
    if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    int i = map[j];
    ssize_t got = read(b->fd[i], buf, sizeof buf);
    if (got > 0) {
      lua_createtable(L, 2, 0);
      lua_pushstring(L, stream_names[i]);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, buf, (size_t)got);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, k++);
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      close(b->fd[i]);
      b->fd[i] = -1;
    }
  }
  return 1;
}

static int p_open(lua_State *L) {  /* open() -> true while any pipe is open */
  proc_box *b = check_proc(L);
  lua_pushboolean(L, b->fd[0] >= 0 || b->fd[1] >= 0 || b->fd[2] >= 0);
  return 1;
}

static int p_wait(lua_State *L) {
  proc_box *b = check_proc(L);
  int block = lua_toboolean(L, 2);
  if (!b->done) {
    int st;
    pid_t r;
    do r = waitpid(b->pid, &st, block ? 0 : WNOHANG); while (r < 0 && errno == EINTR);
    if (r == b->pid) { b->done = 1; b->status = st; }
    else return 0;
  }
  if (WIFEXITED(b->status)) {
    lua_pushstring(L, "exited");
    lua_pushinteger(L, WEXITSTATUS(b->status));
    return 2;
  }
  lua_pushstring(L, "signaled");
  lua_pushinteger(L, WTERMSIG(b->status));
  lua_pushstring(L, strsignal(WTERMSIG(b->status)));
  return 3;
}

static int p_kill(lua_State *L) {
  proc_box *b = check_proc(L);
  int sig = (int)luaL_optinteger(L, 2, SIGKILL);
  if (!b->done) {
    kill(-b->pid, sig);   /* the whole process group */
    kill(b->pid, sig);
  }
  return 0;
}

static int p_pid(lua_State *L) { lua_pushinteger(L, check_proc(L)->pid); return 1; }

/* resident memory of the process group's leader */
static int p_rss(lua_State *L) {
  proc_box *b = check_proc(L);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/statm", (int)b->pid);
  FILE *f = fopen(path, "r");
  long long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lld %lld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  lua_pushinteger(L, (lua_Integer)(res * sysconf(_SC_PAGESIZE)));
  return 1;
}

static int p_gc(lua_State *L) {
  proc_box *b = check_proc(L);
  if (!b->done) {
    kill(-b->pid, SIGKILL);
    kill(b->pid, SIGKILL);
    int st;
    while (waitpid(b->pid, &st, 0) < 0 && errno == EINTR) {}
    b->done = 1;
    b->status = st;
  }
  for (int i = 0; i < 3; i++) if (b->fd[i] >= 0) { close(b->fd[i]); b->fd[i] = -1; }
  return 0;
}

static volatile sig_atomic_t interrupted_sig = 0;
static void on_signal(int s) { interrupted_sig = s; }

static int h_trap_signals(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int h_interrupted(lua_State *L) {
  if (!interrupted_sig) return 0;
  lua_pushinteger(L, interrupted_sig);
  return 1;
}

static int h_isatty(lua_State *L) { lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1))); return 1; }

static int h_ram_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sysconf(_SC_PHYS_PAGES) * (lua_Integer)sysconf(_SC_PAGESIZE));
  return 1;
}

static int h_peak_rss(lua_State *L) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
  return 1;
}

static int h_cuda_peak(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  if (lua_toboolean(L, 1)) { lua_pushinteger(L, (lua_Integer)sr_cuda_peak_bytes()); return 1; }
#endif
  return 0;
}

static int h_card(lua_State *L) {
  int cuda = lua_toboolean(L, 1);
#ifdef SPEEDRUN_CUDA
  if (cuda) {
    struct cudaDeviceProp prop;
    int dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess) {
      lua_pushfstring(L, "%s (%d MiB)", prop.name, (int)(prop.totalGlobalMem >> 20));
      return 1;
    }
  }
#endif
  (void)cuda;
  char line[512], model[256] = "unknown CPU";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "model name", 10)) {
        char *c = strchr(line, ':');
        if (c) {
          c++;
          while (*c == ' ') c++;
          c[strcspn(c, "\n")] = '\0';
          snprintf(model, sizeof model, "%s", c);
        }
        break;
      }
    fclose(f);
  }
  lua_pushfstring(L, "CPU: %s (%d cores)", model, (int)sysconf(_SC_NPROCESSORS_ONLN));
  return 1;
}

static int h_hostname(lua_State *L) {
  char buf[256];
  if (gethostname(buf, sizeof buf) != 0) strcpy(buf, "unknown");
  buf[sizeof buf - 1] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

static int h_getpid(lua_State *L) { lua_pushinteger(L, getpid()); return 1; }

static int h_set_as_limit(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  struct rlimit rl = {(rlim_t)n, (rlim_t)n};
  lua_pushboolean(L, setrlimit(RLIMIT_AS, &rl) == 0);
  return 1;
}

/* realpath(path) -> the canonical absolute path | nil, msg */
static int h_realpath(lua_State *L) {
  char *r = realpath(luaL_checkstring(L, 1), NULL);
  if (!r) { luaL_pushfail(L); lua_pushstring(L, strerror(errno)); return 2; }
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* mkdir(path) -> true | nil, msg: creates the folder and its parents (as mkdir -p) */
static int h_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", buf, strerror(errno));
        return 2;
      }
      *p = c;
      if (c == '\0') break;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int h_self_exe(lua_State *L) { lua_pushstring(L, sr_self_exe()); return 1; }
static int h_source_dir(lua_State *L) { lua_pushstring(L, sr_source_dir()); return 1; }

static int h_build_info(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, SPEEDRUN_VERSION);
  lua_setfield(L, -2, "speedrun");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
#ifdef SPEEDRUN_CUDA
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  lua_pushfstring(L, "CUDA runtime %d.%d", rt / 1000, (rt % 1000) / 10);
#else
  lua_pushstring(L, "CPU only");
#endif
  lua_setfield(L, -2, "backend");
  lua_pushstring(L, __DATE__);
  lua_setfield(L, -2, "built");
  return 1;
}

/* launch traces (host/core/registry.h) */
#define TRACE_MT "speedrun.harness.Trace"

static int t_gc(lua_State *L) {
  sr_trace_free((sr_trace *)luaL_checkudata(L, 1, TRACE_MT));
  return 0;
}

static int t_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)((sr_trace *)luaL_checkudata(L, 1, TRACE_MT))->n);
  return 1;
}

static int t_diff(lua_State *L) {
  sr_trace *a = luaL_checkudata(L, 1, TRACE_MT), *b = luaL_checkudata(L, 2, TRACE_MT);
  char buf[256];
  const char *d = sr_trace_diff(a, b, buf, sizeof buf);
  if (d) lua_pushstring(L, d);
  else lua_pushnil(L);
  return 1;
}

static int h_trace_start(lua_State *L) {
  sr_trace *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TRACE_MT);
  sr_trace_start(t);
  return 1;
}

static int h_trace_stop(lua_State *L) {
  (void)L;
  sr_trace_stop();
  return 0;
}

static int h_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (s > 0) usleep((useconds_t)(s * 1e6));
  return 0;
}

int luaopen_speedrun_harness_core(lua_State *L) {
  static const luaL_Reg pm[] = {
    {"read", p_read}, {"open", p_open}, {"wait", p_wait}, {"kill", p_kill}, {"pid", p_pid}, {"rss", p_rss},
    {"close", p_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, PROCESS_MT)) {
    lua_pushcfunction(L, p_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, pm);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg tm[] = {{"count", t_count}, {"diff", t_diff}, {NULL, NULL}};
  if (luaL_newmetatable(L, TRACE_MT)) {
    lua_pushcfunction(L, t_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, tm);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg f[] = {
    {"now", h_now}, {"sync", h_sync}, {"checksum", h_checksum}, {"ce_sum", h_ce_sum},
    {"causal_diff", h_causal_diff}, {"sum_finite", h_sum_finite}, {"int_range", h_int_range}, {"shape", h_shape}, {"emit", h_emit}, {"spawn", h_spawn}, {"trap_signals", h_trap_signals},
    {"interrupted", h_interrupted}, {"isatty", h_isatty}, {"ram_bytes", h_ram_bytes}, {"peak_rss", h_peak_rss},
    {"cuda_peak", h_cuda_peak}, {"card", h_card}, {"hostname", h_hostname}, {"getpid", h_getpid},
    {"set_as_limit", h_set_as_limit}, {"sleep", h_sleep}, {"realpath", h_realpath}, {"mkdir", h_mkdir}, {"self_exe", h_self_exe},
    {"source_dir", h_source_dir}, {"build_info", h_build_info}, {"trace_start", h_trace_start},
    {"trace_stop", h_trace_stop}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
