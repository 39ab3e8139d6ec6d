/*
** cli/cmd_agent.c: `speedrun agent run | resume | report`, the LLM research loop over a task (a
** version tree of recipes, each scored by `speedrun score`). A thin shell over the Lua module
** speedrun.agent.cli (lua/speedrun/agent/cli.lua); docs/agent.md.
*/
#include <lua.h>
#include <lauxlib.h>

#include "cli/cli.h"
#include "lua/lsr.h"     /* defines: sr_new_state, sr_docall */

int cmd_agent(int argc, char **argv) {
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.agent.cli");
  if (sr_docall(L, 1, 1) == LUA_OK) {
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    if (sr_docall(L, 1, 1) == LUA_OK) rc = (int)luaL_optinteger(L, -1, 0);
  }
  lua_close(L);
  return rc;
}
