/*
** cli/cmd_agent.c: `speedrun agent run | resume | report`, the LLM research loop over a task (a
** version tree of recipes, each scored by `speedrun score`). A thin shell over the Lua module
** speedrun.agent.cli (lua/speedrun/agent/cli.lua); docs/agent.md.
*/
#include "cli/cli.h"
#include "lua/lsr.h"     /* defines: sr_call_module */

int cmd_agent(int argc, char **argv) { return sr_call_module("speedrun.agent.cli", "main", 0, NULL, argc, argv); }
