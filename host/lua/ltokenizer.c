/*
** lua/ltokenizer.c: the Lua module speedrun.tokenizer (GPT-2 BPE in C: host/data/tokenizer.c).
**   load([dir]) -> Tokenizer | nil, msg; default_dir(); EOT; NVOCAB.
**   Tokenizer: encode(s [, {threads=, tensor=}]) -> ids (table, or 1-D int32 tensor);
**     decode(ids) -> string (ids a table or a tensor); token(id) -> its bytes;
**     byte_count(ids) -> bytes, specials: the byte length of what ids decode to, <|endoftext|>
**       counted as 0 bytes (a document boundary, no text), and the number of those; close().
*/
#include <stdlib.h>           /* defines: free, malloc */
#include <string.h>           /* defines: strcmp */

#include <lua.h>
#include <lauxlib.h>

#include "core/copy.h"        /* defines: sr_to_raw */
#include "data/tokenizer.h"   /* defines: sr_tokenizer, sr_tokens */
#include "lua/lsr.h"          /* defines: sr_push_tensor, sr_to_tensor, sr_new_class */
#include "util/fileio.h"      /* defines: sr_source_dir */

#define TOKENIZER_MT "speedrun.Tokenizer"

typedef struct tok_box { sr_tokenizer *tk; } tok_box;

/* the int32 copy a tensor's ids were read through, zeroed and released */
static void release_ids(sr_tensor *c) {
  memset(sr_data(c), 0, (size_t)sr_numel(c) * sizeof(int32_t));
  sr_tensor_release(c);
}

/* ids from a table of integers or a tensor, into t. A tensor's ids (the harness's validation targets
** among them) leave no copy behind: t grows once, its int32 copy is zeroed, sr_tokens_free zeroes t */
void sr_check_token_ids(lua_State *L, int arg, sr_tokens *t) {
  sr_tensor *x = sr_to_tensor(L, arg);
  if (x) {
    sr_tensor *c = sr_to_raw(x, SR_CPU, SR_I32);
    const int32_t *v = sr_data(c);
    int64_t n = sr_numel(c);
    if (sr_tokens_reserve(t, (size_t)n) != 0) {
      release_ids(c);
      luaL_error(L, "out of memory (%d token ids)", (int)n);
    }
    for (int64_t i = 0; i < n; i++) {
      if (v[i] < 0 || v[i] >= SR_GPT2_NVOCAB) {
        int bad = (int)v[i];
        release_ids(c);
        sr_tokens_free(t);
        luaL_argerror(L, arg, lua_pushfstring(L, "element %d is %d, not a GPT-2 id", (int)(i + 1), bad));
      }
      sr_tokens_push(t, (uint16_t)v[i]);
    }
    release_ids(c);
    return;
  }
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_Integer n = luaL_len(L, arg);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arg, i);
    int ok;
    lua_Integer id = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || id < 0 || id >= SR_GPT2_NVOCAB) {
      sr_tokens_free(t);
      luaL_argerror(L, arg, lua_pushfstring(L, "element %d is not a GPT-2 id (0..%d)", (int)i, SR_GPT2_NVOCAB - 1));
    }
    sr_tokens_push(t, (uint16_t)id);
  }
}

static sr_tokenizer *check_tok(lua_State *L) {
  tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
  luaL_argcheck(L, b->tk != NULL, 1, "tokenizer was closed");
  return b->tk;
}

static int tok_load(lua_State *L) {
  char dir[4096], err[4096];
  const char *d = luaL_optstring(L, 1, NULL);
  if (!d) d = sr_tokenizer_default_dir(sr_source_dir(), dir, sizeof dir);
  tok_box *b = lua_newuserdatauv(L, sizeof *b, 0);   /* two-phase: empty box first */
  b->tk = NULL;
  luaL_setmetatable(L, TOKENIZER_MT);
  b->tk = sr_tokenizer_load(d, err, sizeof err);
  if (!b->tk) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int tok_default_dir(lua_State *L) {
  char dir[4096];
  lua_pushstring(L, sr_tokenizer_default_dir(sr_source_dir(), dir, sizeof dir));
  return 1;
}

static int tok_encode(lua_State *L) {
  sr_tokenizer *tk = check_tok(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int threads = 1, as_tensor = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "threads");
    threads = (int)luaL_optinteger(L, -1, 1);
    lua_getfield(L, 3, "tensor");
    as_tensor = lua_toboolean(L, -1);
    lua_pop(L, 2);
    luaL_argcheck(L, threads >= 0, 3, "threads must be >= 0 (0: all)");
  }
  sr_tokens t = {0};
  if (sr_encode_parallel(tk, s, len, &t, threads) != 0) {
    sr_tokens_free(&t);
    return luaL_error(L, "encode: out of memory");
  }
  if (as_tensor) {
    int64_t shape[1] = {(int64_t)t.n};
    sr_tensor *x = sr_tensor_new(SR_I32, SR_CPU, 1, shape);
    int32_t *v = sr_data(x);
    for (size_t i = 0; i < t.n; i++) v[i] = t.v[i];
    sr_tokens_free(&t);
    sr_push_tensor(L, x);
    return 1;
  }
  lua_createtable(L, (int)t.n, 0);
  for (size_t i = 0; i < t.n; i++) {
    lua_pushinteger(L, t.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  sr_tokens_free(&t);
  return 1;
}

static int tok_decode(lua_State *L) {
  sr_tokenizer *tk = check_tok(L);
  sr_tokens t = {0};
  sr_check_token_ids(L, 2, &t);
  sr_bytes b = {0};
  int rc = sr_decode(tk, t.v, t.n, &b, NULL);
  sr_tokens_free(&t);
  if (rc != 0) {
    sr_bytes_free(&b);
    return luaL_error(L, "decode: out of memory");
  }
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  sr_bytes_free(&b);
  return 1;
}

static int tok_token(lua_State *L) {
  sr_tokenizer *tk = check_tok(L);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t len;
  const char *p = sr_token_bytes(tk, (int)id, &len);
  luaL_argcheck(L, id >= 0 && id < SR_GPT2_NVOCAB && p, 2, "not a GPT-2 id (0..50256)");
  lua_pushlstring(L, p, len);
  return 1;
}

/* the bytes ids decode to (the sum of their token byte strings: exact, even where a UTF-8
** sequence spans tokens), the end-of-text token excluded; and the number of end-of-text tokens */
static int tok_byte_count(lua_State *L) {
  sr_tokenizer *tk = check_tok(L);
  sr_tokens t = {0};
  sr_check_token_ids(L, 2, &t);
  lua_Integer bytes = 0, specials = 0;
  for (size_t i = 0; i < t.n; i++) {
    size_t len = 0;
    if (t.v[i] == SR_GPT2_EOT) { specials++; continue; }
    sr_token_bytes(tk, t.v[i], &len);
    bytes += (lua_Integer)len;
  }
  sr_tokens_free(&t);
  lua_pushinteger(L, bytes);
  lua_pushinteger(L, specials);
  return 2;
}

static int tok_close(lua_State *L) {
  tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
  sr_tokenizer_free(b->tk);
  b->tk = NULL;
  return 0;
}

static int tok_tostring(lua_State *L) {
  tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
  lua_pushstring(L, b->tk ? "Tokenizer(gpt2, 50257 ids)" : "Tokenizer(closed)");
  return 1;
}

static const luaL_Reg tok_meth[] = {
  {"encode", tok_encode}, {"decode", tok_decode}, {"token", tok_token}, {"byte_count", tok_byte_count},
  {"close", tok_close},
  {NULL, NULL}
};
static const luaL_Reg tok_metameth[] = {
  {"__gc", tok_close}, {"__close", tok_close}, {"__tostring", tok_tostring}, {NULL, NULL}
};
static const luaL_Reg tok_lib[] = {
  {"load", tok_load}, {"default_dir", tok_default_dir}, {NULL, NULL}
};

int luaopen_speedrun_tokenizer(lua_State *L) {
  sr_new_class(L, TOKENIZER_MT, tok_meth, tok_metameth);
  luaL_newlib(L, tok_lib);
  lua_pushinteger(L, SR_GPT2_EOT);
  lua_setfield(L, -2, "EOT");
  lua_pushinteger(L, SR_GPT2_NVOCAB);
  lua_setfield(L, -2, "NVOCAB");
  return 1;
}
