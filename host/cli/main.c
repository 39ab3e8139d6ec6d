/*
** cli/main.c: the `speedrun` command line. Dispatches to the subcommands of host/cli/cli.h.
*/
#include <stdio.h>   /* defines: printf, fprintf */
#include <string.h>  /* defines: strcmp */

#include <lua.h>     /* defines: LUA_RELEASE */

#include "cli/cli.h"     /* defines: sr_command, cmd_* */

#define LUA_VERSION_STRING_FOR_CLI LUA_RELEASE

static int cmd_help(int argc, char **argv);

static const sr_command commands[] = {
  {"train", cmd_train, "train [RECIPE] [options]", "train a recipe (default: tasks/default on the default corpus)"},
  {"score", cmd_score, "score WORKSPACE [options]", "score a workspace's recipe: K seeds, t-test, FSR"},
  {"calibrate", cmd_calibrate, "calibrate [options]", "time the reference recipes on this machine"},
  {"task", cmd_task, "task list|show|init ...", "the benchmark's tasks: statement, hints, a workspace"},
  {"agent", cmd_agent, "agent run|resume|report ...", "an LLM research loop over a task (docs/agent.md)"},
  {"data", cmd_data, "data prepare|tokenize|fetch|check", "corpora, tokenizer, shards, FineWeb download"},
  {"kernel", cmd_kernel, "kernel check|compile|ops", "agent CUDA kernels: check against an op, compile"},
  {"run", cmd_run, "run FILE.lua [args...]", "run a Lua script with the speedrun module (arg as in lua)"},
  {"help", cmd_help, "help", "this text"},
  {"_child", cmd_harness_child, NULL, NULL},   /* internal: one harness run (harness/child.lua) */
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f) {
  fprintf(f, "usage: speedrun <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (commands[i].usage) fprintf(f, "  speedrun %-34s %s\n", commands[i].usage, commands[i].what);
  fprintf(f, "\n  speedrun %-34s %s\n", "--version", "print the version");
  fprintf(f, "\nEach command takes --help. Documentation: README.md and docs/ in the checkout.\n");
}

static int cmd_help(int argc, char **argv) {
  (void)argc; (void)argv;
  usage(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(argc - 1, argv + 1);
  if (!strcmp(argv[1], "--version")) {
    printf("speedrun %s (%s, %s)\n", SPEEDRUN_VERSION, LUA_VERSION_STRING_FOR_CLI,
#ifdef SPEEDRUN_CUDA
           "CUDA backend built"
#else
           "CPU only"
#endif
    );
    return 0;
  }
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "speedrun: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
