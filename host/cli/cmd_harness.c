/*
** cli/cmd_harness.c: `speedrun train`, `speedrun score` and `speedrun calibrate` (docs/harness.md).
** The commands are written in Lua (lua/speedrun/harness/) over the C primitives of
** host/lua/lharness.c (clock, checks, child processes) and host/harness/stats.c (statistics). Every
** recipe run happens in a child process: the internal command `speedrun _child JOB.json`.
*/
#include <stdio.h>    /* defines: fprintf */

#include <lua.h>
#include <lauxlib.h>

#include "cli/cli.h"      /* defines: cmd_train, cmd_score, cmd_calibrate, cmd_harness_child */
#include "lua/lsr.h"      /* defines: sr_new_state, sr_docall */

static int run_harness(const char *command, int argc, char **argv) {
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.harness.cli");
  if (sr_docall(L, 1, 1) != LUA_OK) goto done;
  lua_getfield(L, -1, "main");
  lua_pushstring(L, command);
  lua_createtable(L, argc, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (sr_docall(L, 2, 1) != LUA_OK) goto done;
  rc = (int)luaL_optinteger(L, -1, 0);
done:
  lua_close(L);
  return rc;
}

int cmd_train(int argc, char **argv) { return run_harness("train", argc, argv); }
int cmd_score(int argc, char **argv) { return run_harness("score", argc, argv); }
int cmd_calibrate(int argc, char **argv) { return run_harness("calibrate", argc, argv); }

/* `speedrun _child JOB.json` (internal, spawned by the harness): speedrun.harness.child.main(JOB) */
int cmd_harness_child(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: speedrun _child JOB.json (internal: spawned by the harness)\n"); return 2; }
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.harness.child");
  if (sr_docall(L, 1, 1) == LUA_OK) {
    lua_getfield(L, -1, "main");
    lua_pushstring(L, argv[1]);
    if (sr_docall(L, 1, 1) == LUA_OK) rc = (int)luaL_optinteger(L, -1, 0);
  }
  lua_close(L);
  return rc;
}
