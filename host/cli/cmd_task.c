/*
** cli/cmd_task.c: `speedrun task list | show N [--hint L] | init N DIR [--hint L]`, the benchmark's
** tasks (start from record N, reach record N+1). A thin shell over the Lua module speedrun.task
** (lua/speedrun/task.lua), which reads tasks/tasks.lua, the records' meta.lua and hints/.
*/
#include "cli/cli.h"
#include "lua/lsr.h"     /* defines: sr_call_module */

int cmd_task(int argc, char **argv) { return sr_call_module("speedrun.task", "main", 0, NULL, argc, argv); }
