/*
** lua/ldata.c: the Lua module speedrun.data (shards, loaders, corpora; host/data/). The tokenizer is
** speedrun.tokenizer (host/lua/ltokenizer.c).
**   require "speedrun.data": dir(); files(corpus, split) -> glob pattern;
**     open_shard(path) -> Shard | nil, msg (#s, s:get(i), s:tensor([first [, n]]), s:close());
**     write_shard(path, ids) -> true | nil, msg;
**     loader{files=, mode="bt"|"seq"|"global", B=, T=, batch=, rank=0, world=1, tokens=, device=}
**       -> Loader | nil, msg (next() -> x, y | nil at the end; targets() -> y of the last window;
**       reset([start]); position(); info());
**     val_loader{...}: a loader of `tokens` (default 10485760) from the start of the shards, its
**       shards never mapped: next() -> x alone (its tokens read from the file then), targets() -> y
**       (read when asked: the harness asks after eval has answered; data/loader.h);
**     prepare{corpus=, out=, threads=, piece_bytes=} -> true, made | nil, msg (piece_bytes absent:
**       the corpus's own); piece_bytes(corpus) -> the piece size it is prepared with by default;
**     command(args...) -> the exit status of `speedrun data args...` run in this process.
** Loader semantics are those of host/data/loader.h; batches are int32 tensors ((B, T) in "bt" mode,
** 1-D otherwise) on the requested device.
*/
#include <stdlib.h>      /* defines: free, malloc */
#include <string.h>      /* defines: strcmp */

#include <lua.h>
#include <lauxlib.h>

#include "cli/cli.h"         /* defines: cmd_data */
#include "data/corpus.h"      /* defines: sr_corpus_prepare, sr_data_dir */
#include "data/loader.h"      /* defines: sr_loader */
#include "core/copy.h"      /* defines: sr_copy_, sr_to_raw */
#include "lua/lsr.h"         /* defines: sr_push_tensor, sr_to_tensor */
#include "util/fileio.h"      /* defines: sr_source_dir */
#include "data/shard.h"       /* defines: sr_shard */
#include "data/tokenizer.h"   /* defines: sr_tokens */

#define SHARD_MT "speedrun.Shard"
#define LOADER_MT "speedrun.Loader"

typedef struct shard_box { sr_shard s; int open; char path[512]; } shard_box;
typedef struct loader_box { sr_loader *ld; sr_loader_mode mode; int64_t B, T; sr_device device; int later; } loader_box;


/* ============================================================================================
** speedrun.data: shards */

static shard_box *check_shard(lua_State *L) {
  shard_box *b = luaL_checkudata(L, 1, SHARD_MT);
  luaL_argcheck(L, b->open, 1, "shard was closed");
  return b;
}

static int data_open_shard(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char err[4096];
  shard_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->open = 0;
  luaL_setmetatable(L, SHARD_MT);
  if (sr_shard_open(&b->s, path, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  b->open = 1;
  snprintf(b->path, sizeof b->path, "%s", path);
  return 1;
}

static int shard_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_shard(L)->s.ntok);
  return 1;
}

static int shard_get(lua_State *L) {
  shard_box *b = check_shard(L);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= b->s.ntok, 2, "index out of range");
  lua_pushinteger(L, b->s.tokens[i - 1]);
  return 1;
}

static int shard_tensor(lua_State *L) {
  shard_box *b = check_shard(L);
  lua_Integer first = luaL_optinteger(L, 2, 1);
  lua_Integer n = luaL_optinteger(L, 3, b->s.ntok - first + 1);
  luaL_argcheck(L, first >= 1 && first <= b->s.ntok + 1, 2, "first token out of range");
  luaL_argcheck(L, n >= 0 && first - 1 + n <= b->s.ntok, 3, "count runs past the end of the shard");
  int64_t shape[1] = {n};
  sr_tensor *x = sr_tensor_new(SR_I32, SR_CPU, 1, shape);
  sr_push_tensor(L, x);
  int32_t *v = sr_data(x);
  for (lua_Integer i = 0; i < n; i++) v[i] = b->s.tokens[first - 1 + i];
  return 1;
}

static int shard_close(lua_State *L) {
  shard_box *b = luaL_checkudata(L, 1, SHARD_MT);
  if (b->open) sr_shard_close(&b->s);
  b->open = 0;
  return 0;
}

static int shard_tostring(lua_State *L) {
  shard_box *b = luaL_checkudata(L, 1, SHARD_MT);
  if (b->open) lua_pushfstring(L, "Shard(%s, %I tokens)", b->path, (lua_Integer)b->s.ntok);
  else lua_pushstring(L, "Shard(closed)");
  return 1;
}

static int data_write_shard(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sr_tokens t = {0};
  char err[4096];
  sr_check_token_ids(L, 2, &t);
  int rc = sr_shard_write(path, t.v ? t.v : (const uint16_t *)"", t.n, err, sizeof err);
  sr_tokens_free(&t);
  if (rc != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg shard_meth[] = {
  {"get", shard_get}, {"count", shard_len}, {"tensor", shard_tensor}, {"close", shard_close},
  {NULL, NULL}
};
static const luaL_Reg shard_metameth[] = {
  {"__len", shard_len}, {"__gc", shard_close}, {"__close", shard_close}, {"__tostring", shard_tostring},
  {NULL, NULL}
};

/* ============================================================================================
** speedrun.data: loaders */

static loader_box *check_loader(lua_State *L) {
  loader_box *b = luaL_checkudata(L, 1, LOADER_MT);
  luaL_argcheck(L, b->ld != NULL, 1, "loader was closed");
  return b;
}

static lua_Integer opt_field(lua_State *L, const char *name, lua_Integer def) {
  lua_getfield(L, 1, name);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) sr_argerror(L, 1, "field '%s' must be an integer, got %s", name, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

/* val: the validation loader (a default token count, unmapped, targets asked for apart) */
static int make_loader(lua_State *L, int val) {
  luaL_checktype(L, 1, LUA_TTABLE);
  sr_loader_config c = {SR_LOAD_BT, 0, 0, 0, 0, 1, 0, val};
  lua_getfield(L, 1, "mode");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) sr_argerror(L, 1, "field 'mode' must be a string, got %s", luaL_typename(L, -1));
  const char *mode = lua_isnil(L, -1) ? "bt" : lua_tostring(L, -1);
  if (!strcmp(mode, "bt")) c.mode = SR_LOAD_BT;
  else if (!strcmp(mode, "seq")) c.mode = SR_LOAD_SEQ;
  else if (!strcmp(mode, "global")) c.mode = SR_LOAD_GLOBAL;
  else return sr_argerror(L, 1, "bad field 'mode' ('%s': bt, seq or global)", mode);
  lua_pop(L, 1);
  c.B = opt_field(L, "B", c.mode == SR_LOAD_BT ? 0 : 1);
  c.T = opt_field(L, "T", 0);
  c.batch = opt_field(L, "batch", 0);
  c.rank = (int)opt_field(L, "rank", 0);
  c.world = (int)opt_field(L, "world", 1);
  c.max_tokens = opt_field(L, "tokens", val ? 10485760 : 0);
  if (c.mode == SR_LOAD_GLOBAL && c.batch < 1) return sr_argerror(L, 1, "mode 'global' needs field 'batch' (tokens per step)");
  if (c.mode != SR_LOAD_GLOBAL && c.T < 1) return sr_argerror(L, 1, "mode '%s' needs field 'T' (a positive integer)", mode);
  if (c.mode == SR_LOAD_BT && c.B < 1) return sr_argerror(L, 1, "mode 'bt' needs field 'B' (a positive integer)");
  lua_getfield(L, 1, "device");
  sr_device dev = SR_CPU;
  if (!lua_isnil(L, -1)) {
    const char *dn = lua_tostring(L, -1);
    if (dn && !strcmp(dn, "cpu")) dev = SR_CPU;
    else if (dn && (!strcmp(dn, "cuda") || !strcmp(dn, "cuda:0") || !strcmp(dn, "gpu"))) dev = SR_CUDA;
    else sr_argerror(L, 1, "bad field 'device' (cpu or cuda)");
  }
  lua_pop(L, 1);

  /* files: a glob pattern or a list of paths */
  char **files = NULL, err[4096];
  int nfiles = 0;
  lua_getfield(L, 1, "files");
  int ft = lua_type(L, -1);
  if (ft != LUA_TSTRING && ft != LUA_TTABLE) return sr_argerror(L, 1, "field 'files' must be a glob pattern or a list of paths");
  loader_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->ld = NULL;
  luaL_setmetatable(L, LOADER_MT);
  lua_insert(L, -2);
  if (ft == LUA_TSTRING) {
    if (sr_glob_sorted(lua_tostring(L, -1), &files, &nfiles, err, sizeof err) != 0) {
      luaL_pushfail(L);
      lua_pushstring(L, err);
      return 2;
    }
  } else {
    nfiles = (int)luaL_len(L, -1);
    files = calloc((size_t)(nfiles ? nfiles : 1), sizeof *files);
    for (int i = 0; files && i < nfiles; i++) {
      lua_geti(L, -1, i + 1);
      const char *p = lua_tostring(L, -1);
      files[i] = strdup(p ? p : "");
      lua_pop(L, 1);
    }
  }
  b->ld = sr_loader_open(files, nfiles, &c, err, sizeof err);
  sr_free_files(files, nfiles);
  lua_pop(L, 1);
  if (!b->ld) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  b->mode = c.mode;
  b->B = c.B;
  b->T = c.T;
  b->device = dev;
  b->later = val;
  return 1;
}

static int data_loader(lua_State *L) { return make_loader(L, 0); }
static int data_val_loader(lua_State *L) { return make_loader(L, 1); }

/* a host batch tensor pushed: (B, T) in bt mode, flat otherwise */
static sr_tensor *push_batch(lua_State *L, const loader_box *b) {
  int64_t shape[2] = {b->B, b->T}, flat[1] = {sr_loader_rank_tokens(b->ld)};
  int bt = b->mode == SR_LOAD_BT;
  sr_tensor *t = sr_tensor_new(SR_I32, SR_CPU, bt ? 2 : 1, bt ? shape : flat);
  sr_push_tensor(L, t);
  return t;
}

/* the host batch at index i on the loader's device (pushed over it) */
static void to_device(lua_State *L, const loader_box *b, int i, sr_tensor *t) {
  if (b->device == SR_CPU) return;
  sr_push_tensor(L, sr_to_raw(t, b->device, SR_I32));
  lua_replace(L, i);
}

static int loader_next(lua_State *L) {
  loader_box *b = check_loader(L);
  sr_tensor *x = push_batch(L, b), *y = b->later ? NULL : push_batch(L, b);
  int rc = sr_loader_next(b->ld, sr_data(x), y ? sr_data(y) : NULL);
  if (rc < 0) return luaL_error(L, "loader: %s", sr_loader_error(b->ld));
  if (rc == 0) {
    lua_pushnil(L);
    return 1;
  }
  to_device(L, b, 2, x);
  if (y) to_device(L, b, 3, y);
  return y ? 2 : 1;
}

/* targets(): y of the window next() gave last */
static int loader_targets(lua_State *L) {
  loader_box *b = check_loader(L);
  sr_tensor *y = push_batch(L, b);
  if (sr_loader_targets(b->ld, sr_data(y)) != 0) return luaL_error(L, "loader: %s", sr_loader_error(b->ld));
  to_device(L, b, 2, y);
  return 1;
}

/* reset([start]): back to the stream's start; with start (a token of the shards' concatenation,
   0-based), the stream's start moves there first and the shards are read as a ring from it
   (sr_loader_seek) */
static int loader_reset(lua_State *L) {
  loader_box *b = check_loader(L);
  if (lua_isnoneornil(L, 2)) {
    sr_loader_reset(b->ld);
    return 0;
  }
  lua_Integer start = luaL_checkinteger(L, 2);
  if (sr_loader_seek(b->ld, (int64_t)start) != 0)
    return sr_argerror(L, 2, "start %I is not a token of the shards (0 to %I)", start,
                       (lua_Integer)sr_loader_total_tokens(b->ld) - 1);
  return 0;
}

static int loader_position(lua_State *L) {
  loader_box *b = check_loader(L);
  int shard;
  int64_t pos;
  sr_loader_position(b->ld, &shard, &pos);
  lua_pushinteger(L, shard + 1);
  lua_pushinteger(L, (lua_Integer)pos);
  lua_pushstring(L, sr_loader_shard_path(b->ld, shard));
  return 3;
}

static int loader_info(lua_State *L) {
  loader_box *b = check_loader(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)sr_loader_rank_tokens(b->ld));
  lua_setfield(L, -2, "rank_tokens");
  lua_pushinteger(L, (lua_Integer)sr_loader_step_tokens(b->ld));
  lua_setfield(L, -2, "step_tokens");
  lua_pushinteger(L, (lua_Integer)sr_loader_total_tokens(b->ld));
  lua_setfield(L, -2, "total_tokens");
  lua_pushstring(L, b->mode == SR_LOAD_BT ? "bt" : b->mode == SR_LOAD_SEQ ? "seq" : "global");
  lua_setfield(L, -2, "mode");
  return 1;
}

static int loader_close(lua_State *L) {
  loader_box *b = luaL_checkudata(L, 1, LOADER_MT);
  sr_loader_free(b->ld);
  b->ld = NULL;
  return 0;
}

static int loader_tostring(lua_State *L) {
  loader_box *b = luaL_checkudata(L, 1, LOADER_MT);
  if (b->ld) lua_pushfstring(L, "Loader(%s, %I tokens per rank)", b->mode == SR_LOAD_BT ? "bt" :
                             b->mode == SR_LOAD_SEQ ? "seq" : "global", (lua_Integer)sr_loader_rank_tokens(b->ld));
  else lua_pushstring(L, "Loader(closed)");
  return 1;
}

static const luaL_Reg loader_meth[] = {
  {"next", loader_next}, {"targets", loader_targets}, {"reset", loader_reset}, {"position", loader_position}, {"info", loader_info},
  {"close", loader_close}, {NULL, NULL}
};
static const luaL_Reg loader_metameth[] = {
  {"__gc", loader_close}, {"__close", loader_close}, {"__tostring", loader_tostring}, {NULL, NULL}
};

/* ============================================================================================
** speedrun.data: folders, prepare, the CLI */

static int data_dir(lua_State *L) {
  char buf[4096];
  lua_pushstring(L, sr_data_dir(sr_source_dir(), buf, sizeof buf));
  return 1;
}

static int data_files(lua_State *L) {
  const char *corpus = luaL_checkstring(L, 1);
  const char *split = luaL_optstring(L, 2, "train");
  luaL_argcheck(L, !strcmp(split, "train") || !strcmp(split, "val"), 2, "'train' or 'val'");
  char buf[4096];
  const char *dir = sr_data_dir(sr_source_dir(), buf, sizeof buf);
  if (!strcmp(corpus, "fineweb10B")) lua_pushfstring(L, "%s/fineweb10B/fineweb_%s_*.bin", dir, split);
  else lua_pushfstring(L, "%s/%s/%s_%s_*.bin", dir, corpus, corpus, split);
  return 1;
}

static int data_prepare(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  char out[4096], gpt2[4096], err[4096];
  sr_prepare_opts o = sr_prepare_defaults(out, sizeof out, gpt2, sizeof gpt2, NULL);
  lua_getfield(L, 1, "corpus");
  o.corpus = luaL_optstring(L, -1, "default");
  lua_getfield(L, 1, "out");
  o.out = luaL_optstring(L, -1, o.out);
  o.threads = (int)opt_field(L, "threads", 0);
  int own = lua_getfield(L, 1, "piece_bytes") == LUA_TNIL;  /* absent: the corpus's own size */
  lua_pop(L, 1);
  lua_Integer pb = opt_field(L, "piece_bytes", -1);
  if (!own && (pb < 0 || pb > (1 << 30))) sr_argerror(L, 1, "field 'piece_bytes' must be 0 or 256 to 2^30, got %I", pb);
  o.piece_bytes = (int)pb;
  int made;
  if (sr_corpus_prepare(&o, &made, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_pushboolean(L, made);
  return 2;
}

static int data_command(lua_State *L) {
  int n = lua_gettop(L);
  char **argv = lua_newuserdatauv(L, (size_t)(n + 2) * sizeof *argv, 0);   /* freed by the GC */
  argv[0] = "data";
  for (int i = 1; i <= n; i++) argv[i] = (char *)luaL_checkstring(L, i);
  argv[n + 1] = NULL;
  fflush(stdout);
  int rc = cmd_data(n + 1, argv);
  fflush(stdout);
  fflush(stderr);
  lua_pushinteger(L, rc);
  return 1;
}

static int data_piece_bytes(lua_State *L) {
  const char *corpus = luaL_checkstring(L, 1);
  int n = sr_corpus_piece_bytes(corpus);
  if (n < 0) return sr_argerror(L, 1, "unknown corpus '%s' (tiny, default or large)", corpus);
  lua_pushinteger(L, n);
  return 1;
}

static const luaL_Reg data_lib[] = {
  {"dir", data_dir}, {"piece_bytes", data_piece_bytes}, {"files", data_files}, {"open_shard", data_open_shard},
  {"write_shard", data_write_shard}, {"loader", data_loader}, {"val_loader", data_val_loader},
  {"prepare", data_prepare}, {"command", data_command}, {NULL, NULL}
};

int luaopen_speedrun_data(lua_State *L) {
  sr_new_class(L, SHARD_MT, shard_meth, shard_metameth);
  sr_new_class(L, LOADER_MT, loader_meth, loader_metameth);
  luaL_newlib(L, data_lib);
  return 1;
}
