/*
** cli/cmd_kernel.c: `speedrun kernel check|compile|ops ...`. The work is done in Lua
** (K.cli in lua/speedrun/kernel.lua, on top of host/lua/lkernel.c); this file makes the state,
** hands over the arguments and returns the exit status K.cli gives.
*/
#include <stdio.h>     /* defines: fprintf */

#include <lua.h>
#include <lauxlib.h>

#include "cli/cli.h"       /* defines: cmd_kernel */
#include "lua/lsr.h"       /* defines: sr_new_state, sr_docall */

int cmd_kernel(int argc, char **argv) {
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun");
  if (sr_docall(L, 1, 1) != LUA_OK) goto done;
  lua_setglobal(L, "speedrun");
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.kernel");
  if (sr_docall(L, 1, 1) != LUA_OK) goto done;
  lua_getfield(L, -1, "cli");
  lua_createtable(L, argc - 1, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (sr_docall(L, 1, 1) != LUA_OK) goto done;
  rc = (int)luaL_optinteger(L, -1, 1);
done:
  lua_close(L);
  return rc;
}
