/*
** lua/ljson.c: the Lua module speedrun.json (cJSON underneath).
**   encode(v [, pretty]) -> string (object keys sorted; NaN/inf -> null; a table is an array when
**     it has keys 1..n only, `json.array` marks an empty one);
**   decode(s) -> value | nil, msg; null (a light userdata standing for JSON null).
*/
#include <math.h>      /* defines: isfinite */
#include <stdlib.h>    /* defines: malloc, free, qsort */
#include <string.h>    /* defines: strcmp */

#include <cjson/cJSON.h>
#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"   /* defines: sr_argerror, luaopen_speedrun_json */

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

/* an object's key: its text, and the Lua key it was found with (num 0: the string, 1: integer ik,
** 2: float fk) */
typedef struct jkey { char *name; int num; lua_Integer ik; lua_Number fk; } jkey;

static int cmp_key(const void *a, const void *b) { return strcmp(((const jkey *)a)->name, ((const jkey *)b)->name); }

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
          lua_rawgeti(L, idx, i);   /* raw: no metamethod (a recipe's table may be encoded off its clock) */
          cJSON_AddItemToArray(a, to_json(L, -1, depth + 1));
          lua_pop(L, 1);
        }
        return a;
      }
      /* object with sorted keys; each value read raw, under the key it was found with (no
      ** metamethod: a recipe's table may be encoded off its clock) */
      size_t nk = 0, cap = 16;
      jkey *keys = malloc(cap * sizeof *keys);
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        char buf[64];
        jkey k = {NULL, 0, 0, 0};
        if (lua_type(L, -1) == LUA_TSTRING) {
          k.name = strdup(lua_tostring(L, -1));
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
          if (lua_isinteger(L, -1)) k.num = 1, k.ik = lua_tointeger(L, -1), snprintf(buf, sizeof buf, "%lld", (long long)k.ik);
          else k.num = 2, k.fk = lua_tonumber(L, -1), snprintf(buf, sizeof buf, "%.17g", k.fk);
          k.name = strdup(buf);
        } else {
          continue;
        }
        if (nk == cap) keys = realloc(keys, (cap *= 2) * sizeof *keys);
        keys[nk++] = k;
      }
      qsort(keys, nk, sizeof *keys, cmp_key);
      cJSON *o = cJSON_CreateObject();
      for (size_t i = 0; i < nk; i++) {
        if (keys[i].num == 1) lua_pushinteger(L, keys[i].ik);
        else if (keys[i].num == 2) lua_pushnumber(L, keys[i].fk);
        else lua_pushstring(L, keys[i].name);
        lua_rawget(L, idx);
        cJSON_AddItemToObject(o, keys[i].name, to_json(L, -1, depth + 1));
        lua_pop(L, 1);
        free(keys[i].name);
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
