/*
** cmd_demo.c: `speedrun demo [--steps N]`, the README's main job until the harness's
** `speedrun train` replaces it: runs require("speedrun.demo").main{steps = N}.
*/
#include <stdio.h>   /* defines: fprintf */
#include <string.h>  /* defines: strcmp */

#include <lua.h>
#include <lauxlib.h>

#include "cli.h"
#include "lsr.h"     /* defines: sr_new_state, sr_docall */

int cmd_demo(int argc, char **argv) {
  const char *steps = "";  /* the demo's default: 50 on the CPU, 300 on a GPU */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = argv[++i];
    else {
      fprintf(!strcmp(argv[i], "--help") ? stdout : stderr,
              "usage: speedrun demo [--steps N]\n"
              "Trains a tiny GPT on the embedded default corpus (prepared on first use), on the GPU\n"
              "when one is usable, else on the CPU, and prints the losses and tokens/s.\n");
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  lua_State *L = sr_new_state();
  if (!L) return 1;
  int rc = 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "speedrun.demo");
  if (sr_docall(L, 1, 1) == LUA_OK) {
    lua_getfield(L, -1, "main");
    lua_createtable(L, 0, 1);
    if (*steps) {
      lua_pushstring(L, steps);
      lua_setfield(L, -2, "steps");
    }
    if (sr_docall(L, 1, 1) == LUA_OK) rc = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  return rc;
}
