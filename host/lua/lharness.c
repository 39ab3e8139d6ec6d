/*
** lua/lharness.c: the Lua module speedrun.harness_core, the C side of the harness's measurements
** (docs/harness.md); host-only: score-mode recipes cannot require it.
**
**   now() -> monotonic seconds; sync() -> nil | message (waits for the GPU when one is in use);
**   checksum(t) -> integer (a hash of the tensor's values and shape, keyed per process, any device);
**   ce_sum(logits, targets) -> sum, count, nonfinite (cross-entropy in double precision over the
**     last dimension; targets are 0-based ids; raises on a shape or id mismatch);
**   sum_finite(t) -> sum, count, nonfinite; int_range(t) -> min, max;
**   causal_diff(a, b, row, pos) -> max |a-b| at positions < pos of `row` and everywhere in the
**     other rows, max |a| (a, b: [B, T, V] logits of the same inputs but for token (row, pos));
**   causal_diff(a, b, {pos_1, ..., pos_B} [, y]): the same with one limit per row (nil: the whole
**     row); nil and why when b is not comparable with a (another shape, dtype or device); with y
**     ([B, T] int32 targets) a third result: the largest change of a token's cross-entropy there,
**     relative to max(1, its loss under a) (f32 row statistics: a column no target names cannot
**     widen it as it widens max |a|);
**   eval_guard(on) / eval_check(what) / eval_epoch(): the eval guard (below); notrain(where | nil):
**     the no-training guard of the untimed load and setup (below); zero_empty(on): speedrun.empty
**     zeroes its memory (restricted runs); version(t) -> its storage's write counter; serial(t)
**     -> its identity (unique over the process); shape(t) -> {sizes} (read in C); emit(s) writes one
**     line to the event channel (fd SR_EVENT_FD in the child, else ignored);
**   cuda_peak() -> bytes | nil; card() -> description of the device in use; realpath(p);
**   mkdir(p); self_exe(); source_dir(); build_info();
**   trace_start() -> Trace (records every kernel launch until trace_stop(): host/core/trace.h);
**     Trace: count() -> launches, diff(other) -> nil | the first difference (a sentence).
** Child processes and process limits are speedrun.process (host/lua/lprocess.c); JSON is
** speedrun.json (host/lua/ljson.c).
*/
#define _GNU_SOURCE            /* pipe2, strsignal */
#include <dirent.h>
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

#include <lua.h>
#include <lauxlib.h>

#include "util/clock.h"          /* defines: sr_monotonic_s */
#include "util/sha256.h"         /* defines: sr_sha256_hex */
#include "util/hash.h"           /* defines: sr_fnv1a */
#include "lua/lsr.h"            /* defines: sr_check_tensor, sr_to_tensor */
#include "core/tensor.h"         /* defines: sr_to_raw, sr_data, sr_cuda_available */
#include "core/copy.h"        /* defines: sr_to_raw */
#include "core/ops.h"         /* defines: sr_binary_raw, sr_unary_raw, sr_reduce_raw */
#include "util/fileio.h"      /* defines: sr_source_dir */
#include "core/trace.h"          /* defines: sr_trace, sr_trace_start, sr_trace_diff */
#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>   /* defines: cudaGetDeviceProperties, cudaDeviceGetAttribute */
#include "cuda/backend.h"   /* defines: sr_cuda_sync, sr_cuda_peak_bytes */
#endif


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

/* the checksums' key: drawn once per process from the kernel, never exposed, so a recipe cannot
** craft a change to its state that leaves the digest as it was */
static uint64_t checksum_key(void) {
  static uint64_t key;
  static bool drawn;
  if (drawn) return key;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, &key, sizeof key) != (ssize_t)sizeof key) key = (uint64_t)(sr_monotonic_s() * 1e9) ^ (uint64_t)getpid() << 32;
  if (fd >= 0) close(fd);
  drawn = true;
  return key;
}

/* a keyed hash over the tensor's bytes and shape, 8 bytes a step (a bytewise FNV-1a ran at ~1 GB/s:
** seconds for a model's state): each step maps the running value one-to-one for a given word, so a
** change of one word always changes the result */
static int h_checksum(lua_State *L) {
  sr_tensor *t = sr_check_tensor(L, 1);
  sr_tensor *c = host_copy(t, t->dtype);
  const unsigned char *p = sr_data(c);
  size_t n = (size_t)sr_numel(c) * sr_dtype_size(c->dtype), i = 0;
  uint64_t h = checksum_key(), w;
  for (; i + 8 <= n; i += 8) { memcpy(&w, p + i, 8); h = (h ^ w) * 0x9E3779B97F4A7C15ULL; h ^= h >> 29; }
  h = sr_fnv1a(h, p + i, n - i);                                        /* the last 0-7 bytes */
  h = sr_fnv1a(h, c->shape, (size_t)c->ndim * sizeof c->shape[0]);
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

/* per position of one [T, V] row pair: max |x - y| (NaN where one is: the engine's max lets NaN
** win), max |x|, each [T] f32 on the host; computed where the tensors are (a GPU's logits never
** cross to the host: at proxy scale that copy and a host loop over them cost ~5 s a run) */
static void row_stats(sr_tensor *x, sr_tensor *y, sr_tensor *out[2]) {
  sr_tensor *d = sr_binary_raw(SR_BINARY_SUB, x, y);
  sr_unary_inplace(SR_UNARY_ABS, d, 0);
  sr_tensor *ax = sr_unary_raw(SR_UNARY_ABS, x, 0);
  sr_tensor *r[2] = {sr_reduce_raw(SR_REDUCE_MAX, d, 1, NULL), sr_reduce_raw(SR_REDUCE_MAX, ax, 1, NULL)};
  for (int i = 0; i < 2; i++) { out[i] = host_copy(r[i], SR_F32); sr_tensor_release(r[i]); }
  sr_tensor_release(d);
  sr_tensor_release(ax);
}

/* the limit of row r (1-based positions; positions >= limit are skipped): from the table at 3,
** or the (row, pos) pair, or T + 1 (the whole row) */
static int64_t row_limit(lua_State *L, bool rows, int64_t r, lua_Integer row, lua_Integer pos, int64_t T) {
  if (!rows) return r == row - 1 ? pos : T + 1;
  lua_rawgeti(L, 3, r + 1);
  int64_t lim = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : T + 1;
  lua_pop(L, 1);
  return lim;
}

/* per position of one [T, V] row: the cross-entropy against targets y [T] (0-based), f32 on the host */
static sr_tensor *row_losses(sr_tensor *x, sr_tensor *y) {
  int64_t T = x->shape[0];
  sr_tensor *loss = sr_tensor_new(SR_F32, x->storage->device, 1, &T), *lse = sr_tensor_new(SR_F32, x->storage->device, 1, &T);
  sr_kcall c = {.t = {loss, lse, x, y}, .nt = 4, .i = {-1}};
  sr_kernel_run(SR_K_cross_entropy, &c);
  sr_tensor *h = host_copy(loss, SR_F32);
  sr_tensor_release(loss);
  sr_tensor_release(lse);
  return h;
}

/* the largest |la - lb| / max(1, |la|) over positions t < lim - 1 of one row's losses */
static double loss_change(sr_tensor *x2, sr_tensor *y2, sr_tensor *yr, int64_t lim) {
  sr_tensor *la = row_losses(x2, yr), *lb = row_losses(y2, yr);
  const float *pa = sr_data(la), *pb = sr_data(lb);
  double worst = 0;
  for (int64_t t = 0; t < la->shape[0] && t < lim - 1; t++) {
    double d = fabs((double)pa[t] - pb[t]) / fmax(1.0, fabs((double)pa[t]));
    if (!(d <= worst)) worst = d;   /* NaN wins */
  }
  sr_tensor_release(la);
  sr_tensor_release(lb);
  return worst;
}

static int h_causal_diff(lua_State *L) {
  sr_tensor *a = sr_check_tensor(L, 1), *b = sr_check_tensor(L, 2);
  bool rows = lua_istable(L, 3);     /* {pos of row 1, pos of row 2, ...}: per-row limits */
  sr_tensor *tg = rows && !lua_isnoneornil(L, 4) ? sr_check_tensor(L, 4) : NULL;   /* targets */
  lua_Integer row = rows ? 0 : luaL_checkinteger(L, 3), pos = rows ? 0 : luaL_checkinteger(L, 4);   /* 1-based */
  if (a->ndim != 3 || !sr_dtype_is_float(a->dtype)) return sr_argerror(L, 1, "want [B, T, V] float logits");
  if (!sr_same_shape(a, b) || a->dtype != b->dtype || a->storage->device != b->storage->device) {
    char sa[96], sb[96];   /* eval answered the two calls differently: not comparable, the caller's verdict */
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s logits on %s, then %s %s logits on %s", sr_shape_str(a, sa, sizeof sa), sr_dtype_name(a->dtype),
                    sr_device_name(a->storage->device), sr_shape_str(b, sb, sizeof sb), sr_dtype_name(b->dtype),
                    sr_device_name(b->storage->device));
    return 2;
  }
  int64_t B = a->shape[0], T = a->shape[1];
  if (tg && (tg->ndim != 2 || tg->shape[0] != B || tg->shape[1] != T || tg->dtype != SR_I32))
    return sr_argerror(L, 4, "want [B, T] int32 targets for [B, T, V] logits");
  double dmax = 0, amax = 0, lmax = 0;
  int nan = 0;
  for (int64_t r = 0; r < B; r++) {   /* one row at a time: temporaries of [T, V], not [B, T, V] */
    int64_t lim = row_limit(L, rows, r, row, pos, T);
    sr_tensor *xn = sr_narrow(a, 0, r, 1), *yn = sr_narrow(b, 0, r, 1), *st[2];
    sr_tensor *x = sr_contiguous_raw(xn), *y = sr_contiguous_raw(yn);   /* eval may return a view */
    sr_tensor *x2 = sr_view(x, 2, (int64_t[]){T, -1}), *y2 = sr_view(y, 2, (int64_t[]){T, -1});
    row_stats(x2, y2, st);
    const float *mx = sr_data(st[0]), *ab = sr_data(st[1]);
    for (int64_t t = 0; t < T && t < lim - 1; t++) {
      if (isnan(mx[t])) nan = 1;
      if (mx[t] > dmax) dmax = mx[t];
      if (ab[t] > amax) amax = ab[t];
    }
    if (tg) {
      sr_tensor *tn = sr_narrow(tg, 0, r, 1), *tc = sr_contiguous_raw(tn), *tr = sr_view(tc, 1, &T);
      double lc = loss_change(x2, y2, tr, lim);
      if (!(lc <= lmax)) lmax = lc;
      sr_tensor_release(tn); sr_tensor_release(tc); sr_tensor_release(tr);
    }
    for (int i = 0; i < 2; i++) sr_tensor_release(st[i]);
    sr_tensor_release(xn); sr_tensor_release(yn);
    sr_tensor_release(x); sr_tensor_release(y); sr_tensor_release(x2); sr_tensor_release(y2);
  }
  lua_pushnumber(L, nan ? INFINITY : dmax);
  lua_pushnumber(L, amax);
  if (!tg) return 2;
  lua_pushnumber(L, lmax != lmax ? INFINITY : lmax);
  return 3;
}

/* shape(t) -> {d1, d2, ...}: read from C, so a recipe cannot shadow the `shape` property */
/* eval_guard(on) -> attempts counted since it was last switched on, the first one's name; while
** on, sr_eval_guard() (grad mode on, backward, optimizer steps, in-place writes to tensors that
** require grad) raises and counts, so a recipe that catches the error is still found out */
static bool guard_on;
static int guard_hits;
static char guard_first[160];
static lua_Integer guard_epoch;   /* how many times the guard was switched on: which eval call this is */

void sr_eval_guard(lua_State *L, const char *what) {
  if (!guard_on) return;
  if (guard_hits++ == 0) snprintf(guard_first, sizeof guard_first, "%s", what);
  luaL_error(L, "rejected: %s inside eval (eval runs without gradients and must not change the model)", what);
}

/* the no-training guard (restricted runs): on for the child's whole life but the timed steps (the
** recipe's loading, its setup, the harness's work between steps), backward and optimizer steps
** (sr_train_guard) raise and count there, so training cannot move off the clock */
static const char *notrain_where;
static int notrain_hits;
static char notrain_first[160];

void sr_train_guard(lua_State *L, const char *what) {
  sr_eval_guard(L, what);
  if (!notrain_where) return;
  if (notrain_hits++ == 0) snprintf(notrain_first, sizeof notrain_first, "%s", what);
  luaL_error(L, "rejected: %s inside %s (untimed: training belongs in train_step)", what, notrain_where);
}

/* notrain(where | nil) -> attempts counted in the process so far, the first one's name, and the
** guard's place before the call (nil: off): where ("setup", "the recipe's loading") switches the
** no-training guard on there, nil off */
static int h_notrain(lua_State *L) {
  static char where[2][64];
  static int cur;
  lua_pushinteger(L, notrain_hits);
  lua_pushstring(L, notrain_first);
  if (notrain_where) lua_pushstring(L, notrain_where);
  else lua_pushnil(L);
  if (lua_isnoneornil(L, 1)) {
    notrain_where = NULL;
  } else {
    cur ^= 1;  /* the other buffer: the previous place, just pushed, stays intact */
    snprintf(where[cur], sizeof where[cur], "%s", luaL_checkstring(L, 1));
    notrain_where = where[cur];
  }
  return 3;
}

/* eval_check(what): raises (and counts) as sr_eval_guard while the guard is on; for checks made in
** Lua (the sandbox's file writes) */
static int h_eval_check(lua_State *L) {
  sr_eval_guard(L, luaL_checkstring(L, 1));
  return 0;
}

/* zero_empty(on): speedrun.empty zeroes its memory (the sandbox's, for restricted runs) */
static int h_zero_empty(lua_State *L) {
  sr_empty_zeroed(lua_toboolean(L, 1));
  return 0;
}

static int h_eval_guard(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  lua_pushinteger(L, guard_hits);
  lua_pushstring(L, guard_first);
  if (on) { guard_hits = 0; guard_first[0] = 0; guard_epoch++; }
  guard_on = on;
  return 2;
}

/* eval_epoch() -> the number of the eval call under way (the guard's count of switches on), or nil
** when the guard is off: what the sandbox tells apart objects made during this call by (coroutines) */
static int h_eval_epoch(lua_State *L) {
  if (guard_on) lua_pushinteger(L, guard_epoch);
  else lua_pushnil(L);
  return 1;
}

/* version(t) -> the storage's in-place write counter */
static int h_version(lua_State *L) { lua_pushinteger(L, sr_check_tensor(L, 1)->storage->version); return 1; }
/* serial(t): the tensor's identity (unique over the process; a Lua value for it may be made anew each
** time it is reached, as t.grad is) */
static int h_serial(lua_State *L) { lua_pushinteger(L, (lua_Integer)sr_check_tensor(L, 1)->serial); return 1; }

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





static int h_cuda_peak(lua_State *L) {
#ifdef SPEEDRUN_CUDA
  if (lua_toboolean(L, 1)) { lua_pushinteger(L, (lua_Integer)sr_cuda_peak_bytes()); return 1; }
#endif
  return 0;
}

/* host_reach() -> true when this process's GPU reads and writes its pageable host memory (HMM on x86
** with NVIDIA's open kernel modules, ATS on Grace Hopper: cudaDevAttrPageableMemoryAccess): an agent
** kernel there is native code in the process, outside every check of the harness (docs/harness.md,
** round 19); SPEEDRUN_HOST_REACH=1 says so whatever the device (the tests'; it can only refuse more) */
static int h_host_reach(lua_State *L) {
  const char *e = getenv("SPEEDRUN_HOST_REACH");
  int reach = e && strcmp(e, "1") == 0;
#ifdef SPEEDRUN_CUDA
  int dev = 0, v = 0;
  if (!reach && sr_cuda_available() && cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&v, cudaDevAttrPageableMemoryAccess, dev) == cudaSuccess)
    reach = v != 0;
#endif
  lua_pushboolean(L, reach);
  return 1;
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




/* realpath(path) -> the canonical absolute path | nil, msg */
static int h_realpath(lua_State *L) {
  char *r = realpath(luaL_checkstring(L, 1), NULL);
  if (!r) { luaL_pushfail(L); lua_pushstring(L, strerror(errno)); return 2; }
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* stat(path [, nofollow]) -> {id = "DEV:INO", dev, ino, nlink, size, type, changed} | nil, msg: the
   file's identity (device and inode: two names of one file, a hard link, have the same id); type is
   "file", "dir", "link" (nofollow: lstat, the link itself) or "other"; changed: "MTIME CTIME" in
   seconds.nanoseconds (a write moves both; only root can set the ctime) */
static int h_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  int rc = lua_toboolean(L, 2) ? lstat(path, &st) : stat(path, &st);
  if (rc != 0) { luaL_pushfail(L); lua_pushfstring(L, "%s: %s", path, strerror(errno)); return 2; }
  lua_createtable(L, 0, 7);
  lua_pushfstring(L, "%I:%I", (lua_Integer)st.st_dev, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, (lua_Integer)st.st_dev); lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)st.st_ino); lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_nlink); lua_setfield(L, -2, "nlink");
  lua_pushinteger(L, (lua_Integer)st.st_size); lua_setfield(L, -2, "size");
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "link" : "other");
  lua_setfield(L, -2, "type");
  char changed[64];
  snprintf(changed, sizeof changed, "%lld.%09ld %lld.%09ld", (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec,
           (long long)st.st_ctim.tv_sec, (long)st.st_ctim.tv_nsec);
  lua_pushstring(L, changed);
  lua_setfield(L, -2, "changed");
  return 1;
}

/* listdir(path) -> {name, ...} (without . and ..) | nil, msg */
static int h_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) { luaL_pushfail(L); lua_pushfstring(L, "%s: %s", path, strerror(errno)); return 2; }
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
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

/* sha256_file(path) -> lowercase hex of a file's SHA-256, read in pieces | nil, message
** (harness/dataid.lua: the training shards' contents) */
static int h_sha256_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char hex[65];
  if (sr_sha256_file(path, hex)) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushstring(L, hex);
  return 1;
}

/* sha256(s) -> lowercase hex of a string's SHA-256 (the engine's fingerprint: harness/engine.lua) */
static int h_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[65];
  sr_sha256_hex(s, n, hex);
  lua_pushstring(L, hex);
  return 1;
}

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


int luaopen_speedrun_harness_core(lua_State *L) {
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
    {"causal_diff", h_causal_diff}, {"eval_guard", h_eval_guard}, {"eval_check", h_eval_check}, {"eval_epoch", h_eval_epoch}, {"notrain", h_notrain}, {"zero_empty", h_zero_empty}, {"version", h_version}, {"serial", h_serial}, {"sum_finite", h_sum_finite}, {"int_range", h_int_range}, {"shape", h_shape}, {"emit", h_emit},
    {"cuda_peak", h_cuda_peak}, {"card", h_card}, {"host_reach", h_host_reach}, {"realpath", h_realpath}, {"mkdir", h_mkdir},
    {"stat", h_stat}, {"listdir", h_listdir},
    {"self_exe", h_self_exe}, {"source_dir", h_source_dir}, {"build_info", h_build_info}, {"sha256", h_sha256}, {"sha256_file", h_sha256_file},
    {"trace_start", h_trace_start}, {"trace_stop", h_trace_stop}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
