/*
** cli/cmd_task.c: `speedrun task list | show N [--hint L] | init N DIR [--hint L]`, the benchmark's
** tasks (start from record N, reach record N+1). A thin shell over the Lua module speedrun.task
** (lua/speedrun/task.lua), which reads tasks/tasks.lua, the records' meta.lua and hints/.
*/
#include <lua.h>
#include <lauxlib.h>

#include "cli/cli.h"
#include "lua/lsr.h"     /* defines: sr_new_state, sr_docall */

int cmd_task(int argc, char **argv) {
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.task");
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
