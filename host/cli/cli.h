/*
** cli/cli.h: the `speedrun` subcommands. Each is int cmd_<name>(int argc, char **argv) with
** argv[0] = the subcommand's name; it returns the process exit status. Listed in host/cli/main.c.
*/
#ifndef SR_CLI_H
#define SR_CLI_H

typedef struct sr_command {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *usage;     /* its synopsis for --help; NULL: internal, not listed */
  const char *what;      /* what it does, one line for --help */
} sr_command;

int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);      /* host/cli/cmd_harness.c */
int cmd_score(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_harness_child(int argc, char **argv);   /* internal `_child JOB.json`: the isolated run */
int cmd_data(int argc, char **argv);    /* host/cli/cmd_data.c */
int cmd_kernel(int argc, char **argv);   /* host/cli/cmd_kernel.c */
int cmd_task(int argc, char **argv);    /* host/cli/cmd_task.c */
int cmd_agent(int argc, char **argv);   /* host/cli/cmd_agent.c */

#endif
