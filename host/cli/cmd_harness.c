/*
** cli/cmd_harness.c: `speedrun train`, `speedrun score` and `speedrun calibrate` (docs/harness.md).
** The commands are written in Lua (lua/speedrun/harness/) over the C primitives of
** host/lua/lharness.c (clock, checks, child processes) and host/harness/stats.c (statistics). Every
** recipe run happens in a child process: the internal command `speedrun _child JOB.json`.
*/
#include <stdio.h>    /* defines: fprintf */


#include "cli/cli.h"      /* defines: cmd_train, cmd_score, cmd_calibrate, cmd_harness_child */
#include "lua/lsr.h"      /* defines: sr_call_module */

static int run_harness(const char *command, int argc, char **argv) {
  return sr_call_module("speedrun.harness.cli", "main", 1, &command, argc, argv);
}

int cmd_train(int argc, char **argv) { return run_harness("train", argc, argv); }
int cmd_score(int argc, char **argv) { return run_harness("score", argc, argv); }
int cmd_calibrate(int argc, char **argv) { return run_harness("calibrate", argc, argv); }

/* `speedrun _child JOB.json` (internal, spawned by the harness): speedrun.harness.child.main(JOB) */
int cmd_harness_child(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: speedrun _child JOB.json (internal: spawned by the harness)\n"); return 2; }
  const char *job = argv[1];
  return sr_call_module("speedrun.harness.child", "main", 1, &job, 0, NULL);
}
