/*
** lua/lsr.c: the Lua state of the host: standard libraries, the speedrun C modules (preloaded),
** the package path to lua/, error reporting with a traceback (as lua.c's docall), and the
** `speedrun run FILE.lua` command.
*/
#define _DEFAULT_SOURCE        /* readlink */
#include <stdarg.h>    /* defines: va_list */
#include <stdio.h>     /* defines: fprintf */
#include <stdlib.h>    /* defines: getenv, realpath */
#include <string.h>    /* defines: strcmp, strrchr */
#include <unistd.h>    /* defines: readlink, access */
#include <limits.h>    /* defines: PATH_MAX */

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>    /* defines: luaL_openlibs */

#include "cli/cli.h"       /* defines: cmd_run */
#include "lua/lsr.h"       /* defines: sr_open_modules, sr_docall */
#include "util/fileio.h"   /* defines: sr_source_dir */

/* every C module of the host; require "speedrun.<name>" */
static const luaL_Reg sr_modules[] = {
  {"speedrun.core", luaopen_speedrun_core},
  {"speedrun.tokenizer", luaopen_speedrun_tokenizer},
  {"speedrun.data", luaopen_speedrun_data},
  {"speedrun.kernel_core", luaopen_speedrun_kernel_core},
  {"speedrun.json", luaopen_speedrun_json},
  {"speedrun.stats", luaopen_speedrun_stats},
  {"speedrun.harness_core", luaopen_speedrun_harness_core},
  {"speedrun.process", luaopen_speedrun_process},
  {"speedrun.cuda", luaopen_speedrun_cuda},
  {"speedrun.fuse", luaopen_speedrun_fuse},
  {"speedrun.profile_core", luaopen_speedrun_profile_core},
  {"speedrun.http", luaopen_speedrun_http},
  {NULL, NULL}
};

void sr_open_modules(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = sr_modules; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}


const char *sr_self_exe(void) {
  static char exe[PATH_MAX];
  if (!exe[0]) {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) snprintf(exe, sizeof exe, "speedrun");
    else exe[n] = '\0';
  }
  return exe;
}

const char *sr_lua_dir(void) {
  static char dir[PATH_MAX + 8];
  if (!dir[0]) snprintf(dir, sizeof dir, "%s/lua", sr_source_dir());
  return dir;
}

void sr_setup_package_path(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", sr_lua_dir(), sr_lua_dir(), old ? old : "");
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

int sr_argerror(lua_State *L, int arg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return luaL_argerror(L, arg, msg);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int sr_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  if (status != LUA_OK) {
    fprintf(stderr, "speedrun: %s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

lua_State *sr_new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "speedrun: cannot create the Lua state (out of memory)\n");
    return NULL;
  }
  luaL_openlibs(L);
  sr_open_modules(L);
  sr_setup_package_path(L);
  sr_lua_bind_errors(L);
  return L;
}

int sr_call_module(const char *module, const char *fn, int nfirst, const char *const *first, int argc, char **argv) {
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (sr_docall(L, 1, 1) != LUA_OK) goto done;
  lua_getfield(L, -1, fn);
  for (int i = 0; i < nfirst; i++) lua_pushstring(L, first[i]);
  if (argv) {
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
  }
  if (sr_docall(L, nfirst + (argv != NULL), 1) == LUA_OK) rc = (int)luaL_optinteger(L, -1, 0);
done:
  lua_close(L);
  return rc;
}

static int load_speedrun_global(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun");
  if (sr_docall(L, 1, 1) != LUA_OK) return 0;
  lua_setglobal(L, "speedrun");
  return 1;
}

int cmd_run(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help")) {
    fprintf(argc < 2 ? stderr : stdout,
            "usage: speedrun run FILE.lua [args...]\n"
            "Runs FILE.lua with the speedrun module loaded as the global `speedrun`.\n"
            "The script sees its arguments in `arg` (arg[0] = FILE.lua), as with lua.\n");
    return argc < 2 ? 2 : 0;
  }
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  if (!load_speedrun_global(L)) goto done;
  lua_createtable(L, argc - 2, 2);
  lua_pushstring(L, sr_self_exe());
  lua_rawseti(L, -2, -1);                     /* arg[-1]: this program, as lua.c gives the interpreter */
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "speedrun: %s\n", lua_tostring(L, -1));
    goto done;
  }
  for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  if (sr_docall(L, argc - 2, 0) == LUA_OK) rc = 0;
done:
  lua_close(L);
  return rc;
}

void sr_new_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, metamethods, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
