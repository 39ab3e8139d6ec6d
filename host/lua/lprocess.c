/*
** lua/lprocess.c: the Lua module speedrun.process: child processes and this process's limits
** (host-only: score-mode recipes cannot require it).
**   spawn{argv=, env=, as_limit=, cwd=} -> Process (own process group; stdout, stderr and the
**     event channel (fd SR_EVENT_FD in the child) are pipes read with p:read(timeout) -> list of
**     {stream, data});
**   Process: pid(), open(), wait() -> nil | ("exited", code) | ("signaled", signo, name),
**     kill([sig]), rss() -> bytes, close();
**   trap_signals() (SIGINT/SIGTERM set a flag) and interrupted(); isatty(fd); ram_bytes();
**   peak_rss() -> bytes; hostname(); getpid(); set_as_limit(bytes); sleep(seconds).
*/
#define _GNU_SOURCE            /* pipe2, strsignal */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "lua/lsr.h"           /* defines: sr_argerror, SR_EVENT_FD, luaopen_speedrun_process */
#include "util/clock.h"        /* defines: sr_monotonic_s */

#define PROCESS_MT "speedrun.Process"

typedef struct proc_box {
  pid_t pid;
  int fd[3];          /* stdout, stderr, events; -1 when closed */
  int done;
  int status;
} proc_box;

static const char *const stream_names[3] = {"stdout", "stderr", "events"};

static int h_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "argv");
  if (!lua_istable(L, -1)) return sr_argerror(L, 1, "field 'argv' must be a table, got %s", luaL_typename(L, -1));
  int argc = (int)luaL_len(L, -1);
  if (argc < 1) return sr_argerror(L, 1, "field 'argv' is empty");
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  for (int i = 0; i < argc; i++) {
    lua_geti(L, -1, i + 1);
    argv[i] = strdup(luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* env additions: name -> value (false removes) */
  int nenv = 0;
  char *envset[64][2];
  lua_getfield(L, 1, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) && nenv < 64) {
      envset[nenv][0] = strdup(lua_tostring(L, -2));
      envset[nenv][1] = lua_toboolean(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
      nenv++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "as_limit");
  lua_Integer as_limit = lua_isnil(L, -1) ? 0 : lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "cwd");
  const char *cwd = lua_tostring(L, -1);
  char *cwd_copy = cwd ? strdup(cwd) : NULL;
  lua_pop(L, 1);

  int p[3][2];
  for (int i = 0; i < 3; i++)
    if (pipe2(p[i], O_CLOEXEC) != 0) return luaL_error(L, "spawn: pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return luaL_error(L, "spawn: fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    dup2(p[0][1], 1);
    dup2(p[1][1], 2);
    dup2(p[2][1], SR_EVENT_FD);   /* dup2 clears FD_CLOEXEC on the copy */
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) { dup2(devnull, 0); close(devnull); }
    for (int i = 0; i < nenv; i++) {
      if (envset[i][1]) setenv(envset[i][0], envset[i][1], 1);
      else unsetenv(envset[i][0]);
    }
    if (as_limit > 0) {
      struct rlimit rl = {(rlim_t)as_limit, (rlim_t)as_limit};
      setrlimit(RLIMIT_AS, &rl);
    }
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
    if (cwd_copy && chdir(cwd_copy) != 0) { fprintf(stderr, "spawn: chdir %s: %s\n", cwd_copy, strerror(errno)); _exit(127); }
    execv(argv[0], argv);
    fprintf(stderr, "spawn: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);   /* both sides, as shells do, so kill(-pid) works at once */
  for (int i = 0; i < argc; i++) free(argv[i]);
  free(argv);
  for (int i = 0; i < nenv; i++) { free(envset[i][0]); free(envset[i][1]); }
  free(cwd_copy);
  proc_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->pid = pid;
  b->done = 0;
  b->status = 0;
  for (int i = 0; i < 3; i++) {
    close(p[i][1]);
    b->fd[i] = p[i][0];
    fcntl(b->fd[i], F_SETFL, O_NONBLOCK);
  }
  luaL_setmetatable(L, PROCESS_MT);
  return 1;
}

static proc_box *check_proc(lua_State *L) { return luaL_checkudata(L, 1, PROCESS_MT); }

/* read(timeout) -> list of {stream, data}; an empty list when nothing came; closed pipes drop out */
static int p_read(lua_State *L) {
  proc_box *b = check_proc(L);
  double timeout = luaL_optnumber(L, 2, 0.1);
  struct pollfd pf[3];
  int map[3], n = 0;
  for (int i = 0; i < 3; i++)
    if (b->fd[i] >= 0) { pf[n].fd = b->fd[i]; pf[n].events = POLLIN; pf[n].revents = 0; map[n] = i; n++; }
  lua_newtable(L);
  if (n == 0) {
    if (timeout > 0) usleep((useconds_t)(timeout * 1e6 > 2e5 ? 2e5 : timeout * 1e6));
    return 1;
  }
  int r = poll(pf, (nfds_t)n, (int)(timeout * 1000));
  if (r <= 0) return 1;
  int k = 1;
  char buf[65536];
  for (int j = 0; j < n; j++) {
    if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    int i = map[j];
    ssize_t got = read(b->fd[i], buf, sizeof buf);
    if (got > 0) {
      lua_createtable(L, 2, 0);
      lua_pushstring(L, stream_names[i]);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, buf, (size_t)got);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, k++);
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      close(b->fd[i]);
      b->fd[i] = -1;
    }
  }
  return 1;
}

static int p_open(lua_State *L) {  /* open() -> true while any pipe is open */
  proc_box *b = check_proc(L);
  lua_pushboolean(L, b->fd[0] >= 0 || b->fd[1] >= 0 || b->fd[2] >= 0);
  return 1;
}

static int p_wait(lua_State *L) {
  proc_box *b = check_proc(L);
  int block = lua_toboolean(L, 2);
  if (!b->done) {
    int st;
    pid_t r;
    do r = waitpid(b->pid, &st, block ? 0 : WNOHANG); while (r < 0 && errno == EINTR);
    if (r == b->pid) { b->done = 1; b->status = st; }
    else return 0;
  }
  if (WIFEXITED(b->status)) {
    lua_pushstring(L, "exited");
    lua_pushinteger(L, WEXITSTATUS(b->status));
    return 2;
  }
  lua_pushstring(L, "signaled");
  lua_pushinteger(L, WTERMSIG(b->status));
  lua_pushstring(L, strsignal(WTERMSIG(b->status)));
  return 3;
}

static int p_kill(lua_State *L) {
  proc_box *b = check_proc(L);
  int sig = (int)luaL_optinteger(L, 2, SIGKILL);
  if (!b->done) {
    kill(-b->pid, sig);   /* the whole process group */
    kill(b->pid, sig);
  }
  return 0;
}

static int p_pid(lua_State *L) { lua_pushinteger(L, check_proc(L)->pid); return 1; }

/* resident memory of the process group's leader */
static int p_rss(lua_State *L) {
  proc_box *b = check_proc(L);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/statm", (int)b->pid);
  FILE *f = fopen(path, "r");
  long long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lld %lld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  lua_pushinteger(L, (lua_Integer)(res * sysconf(_SC_PAGESIZE)));
  return 1;
}

static int p_gc(lua_State *L) {
  proc_box *b = check_proc(L);
  if (!b->done) {
    kill(-b->pid, SIGKILL);
    kill(b->pid, SIGKILL);
    int st;
    while (waitpid(b->pid, &st, 0) < 0 && errno == EINTR) {}
    b->done = 1;
    b->status = st;
  }
  for (int i = 0; i < 3; i++) if (b->fd[i] >= 0) { close(b->fd[i]); b->fd[i] = -1; }
  return 0;
}

static volatile sig_atomic_t interrupted_sig = 0;
static void on_signal(int s) { interrupted_sig = s; }

static int h_trap_signals(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int h_interrupted(lua_State *L) {
  if (!interrupted_sig) return 0;
  lua_pushinteger(L, interrupted_sig);
  return 1;
}

static int h_isatty(lua_State *L) { lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1))); return 1; }

static int h_ram_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sysconf(_SC_PHYS_PAGES) * (lua_Integer)sysconf(_SC_PAGESIZE));
  return 1;
}

static int h_peak_rss(lua_State *L) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
  return 1;
}

static int h_hostname(lua_State *L) {
  char buf[256];
  if (gethostname(buf, sizeof buf) != 0) strcpy(buf, "unknown");
  buf[sizeof buf - 1] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

static int h_getpid(lua_State *L) { lua_pushinteger(L, getpid()); return 1; }

static int h_set_as_limit(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  struct rlimit rl = {(rlim_t)n, (rlim_t)n};
  lua_pushboolean(L, setrlimit(RLIMIT_AS, &rl) == 0);
  return 1;
}

static int h_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (s > 0) usleep((useconds_t)(s * 1e6));
  return 0;
}

int luaopen_speedrun_process(lua_State *L) {
  static const luaL_Reg pm[] = {
    {"read", p_read}, {"open", p_open}, {"wait", p_wait}, {"kill", p_kill}, {"pid", p_pid}, {"rss", p_rss},
    {"close", p_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, PROCESS_MT)) {
    lua_pushcfunction(L, p_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, pm);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg f[] = {
    {"spawn", h_spawn}, {"trap_signals", h_trap_signals}, {"interrupted", h_interrupted}, {"isatty", h_isatty},
    {"ram_bytes", h_ram_bytes}, {"peak_rss", h_peak_rss}, {"hostname", h_hostname}, {"getpid", h_getpid},
    {"set_as_limit", h_set_as_limit}, {"sleep", h_sleep}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
