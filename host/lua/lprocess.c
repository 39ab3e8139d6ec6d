/*
** lua/lprocess.c: the Lua module speedrun.process: child processes and this process's limits
** (host-only: score-mode recipes cannot require it).
**   spawn{argv=, env=, as_limit=, cwd=, hide=} -> Process (own process group; stdout, stderr and the
**     event channel (fd SR_EVENT_FD in the child) are pipes read with p:read(timeout) -> list of
**     {stream, data}); hide = {dir, ...}: the command sees those folders empty (its own mount, PID
**     and, not as root, user namespaces; a fresh /proc), or does not run (exit 126, why on stderr);
**   hiding() -> true | nil, why: whether this system lets spawn hide folders;
**   Process: pid(), open(), wait() -> nil | ("exited", code) | ("signaled", signo, name),
**     kill([sig]), rss() -> bytes, close();
**   trap_signals() (SIGINT/SIGTERM set a flag) and interrupted(); isatty(fd); ram_bytes();
**   peak_rss() -> bytes; hostname(); getpid(); set_as_limit(bytes); sleep(seconds);
**   environ_names() -> the names of this process's environment variables.
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
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

extern char **environ;
#define SPAWN_MAX_ENV 256   /* spawn's env entries (the harness scrubs the engine switches through them) */

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

/* ---- hiding folders from a command (the agent loop's external coder: the checkout's records and
** hints are the tasks' answers). A mount namespace where each folder is an empty read-only tmpfs,
** a PID namespace so that the command's /proc shows no process outside it (another process's
** /proc/PID/root is a way around a mount), and a user namespace when not root. In the forked child,
** before exec: returns 0, or -1 with why in msg. */
static int write_text(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int enter_namespaces(char *msg, size_t n) {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWNS | CLONE_NEWPID | (uid == 0 ? 0 : CLONE_NEWUSER)) != 0) {
    snprintf(msg, n, "unshare: %s (user or mount namespaces unavailable here)", strerror(errno));
    return -1;
  }
  if (uid != 0) {
    char map[64];
    snprintf(map, sizeof map, "%u %u 1", (unsigned)uid, (unsigned)uid);
    int bad = write_text("/proc/self/uid_map", map) != 0 || write_text("/proc/self/setgroups", "deny") != 0;
    snprintf(map, sizeof map, "%u %u 1", (unsigned)gid, (unsigned)gid);
    if (bad || write_text("/proc/self/gid_map", map) != 0) {
      snprintf(msg, n, "user namespace id maps: %s", strerror(errno));
      return -1;
    }
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
    snprintf(msg, n, "private mounts: %s", strerror(errno));
    return -1;
  }
  return 0;
}

static int hide_dirs(char **hide, int nhide, char *msg, size_t n) {
  for (int i = 0; i < nhide; i++) {
    if (mount("none", hide[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555") != 0) {
      snprintf(msg, n, "%s: %s", hide[i], strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* the new PID namespace starts with the next fork: that child (its PID 1, in this process group)
** gets a /proc of its own and returns to exec; this process waits and exits as it did */
static int enter_pid_namespace(char *msg, size_t n) {
  pid_t pid = fork();
  if (pid < 0) { snprintf(msg, n, "fork: %s", strerror(errno)); return -1; }
  if (pid == 0) {
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
      snprintf(msg, n, "a fresh /proc: %s", strerror(errno));
      return -1;
    }
    return 0;
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (WIFSIGNALED(st)) { signal(WTERMSIG(st), SIG_DFL); raise(WTERMSIG(st)); }
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 127);
}

/* the namespaces, the folders hidden (none for hiding()'s probe), then the PID namespace's child:
** 0, or -1 with why in msg */
static int isolate(char **hide, int nhide, char *msg, size_t n) {
  return enter_namespaces(msg, n) != 0 || hide_dirs(hide, nhide, msg, n) != 0 || enter_pid_namespace(msg, n) != 0
    ? -1 : 0;
}

/* spawn's child: hide the folders, or exit 126 saying why */
static void hide_or_exit(char **hide, int nhide) {
  char msg[512];
  if (isolate(hide, nhide, msg, sizeof msg) != 0) {
    fprintf(stderr, "spawn: cannot hide folders from the command: %s\n", msg);
    _exit(126);
  }
}

/* the folders of spawn's `hide` (absolute paths), NULL-free copies; *n their count */
static char **hide_list(lua_State *L, int *n) {
  *n = 0;
  lua_getfield(L, 1, "hide");
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (!lua_istable(L, -1)) { sr_argerror(L, 1, "field 'hide' must be a list of folders, got %s", luaL_typename(L, -1)); return NULL; }
  int k = (int)luaL_len(L, -1);
  char **out = calloc((size_t)k + 1, sizeof *out);
  for (int i = 0; i < k; i++) {
    lua_geti(L, -1, i + 1);
    const char *d = lua_tostring(L, -1);
    if (!d || d[0] != '/') {
      for (int j = 0; j < *n; j++) free(out[j]);
      free(out);
      sr_argerror(L, 1, "field 'hide': entry %d must be an absolute path", i + 1);
      return NULL;
    }
    out[(*n)++] = strdup(d);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

/* hiding() -> true | nil, why: a child that isolates itself and hides nothing */
static int h_hiding(lua_State *L) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return luaL_error(L, "hiding: pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return luaL_error(L, "hiding: fork: %s", strerror(errno));
  if (pid == 0) {
    char msg[512] = "";
    int rc = isolate(NULL, 0, msg, sizeof msg);
    if (rc) { ssize_t w = write(p[1], msg, strlen(msg)); (void)w; }
    _exit(rc ? 1 : 0);
  }
  close(p[1]);
  char msg[512];
  ssize_t k = read(p[0], msg, sizeof msg - 1);
  close(p[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) { lua_pushboolean(L, 1); return 1; }
  msg[k > 0 ? k : 0] = 0;
  luaL_pushfail(L);
  lua_pushstring(L, k > 0 ? msg : "the namespace probe failed");
  return 2;
}

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
  char *envset[SPAWN_MAX_ENV][2];
  lua_getfield(L, 1, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (nenv == SPAWN_MAX_ENV) {
        for (int i = 0; i < argc; i++) free(argv[i]);
        free(argv);
        for (int i = 0; i < nenv; i++) { free(envset[i][0]); free(envset[i][1]); }
        return sr_argerror(L, 1, "field 'env' has more than %d entries", SPAWN_MAX_ENV);
      }
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
  int nhide;
  char **hide = hide_list(L, &nhide);

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
    if (nhide > 0) hide_or_exit(hide, nhide);
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
  for (int i = 0; i < nhide; i++) free(hide[i]);
  free(hide);
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

/* environ_names() -> the names of this process's environment variables, in environ's order */
static int h_environ_names(lua_State *L) {
  lua_newtable(L);
  int n = 0;
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

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
    {"spawn", h_spawn}, {"hiding", h_hiding}, {"trap_signals", h_trap_signals}, {"interrupted", h_interrupted}, {"isatty", h_isatty},
    {"ram_bytes", h_ram_bytes}, {"peak_rss", h_peak_rss}, {"hostname", h_hostname}, {"getpid", h_getpid},
    {"set_as_limit", h_set_as_limit}, {"sleep", h_sleep}, {"environ_names", h_environ_names}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
