/*
** util/fileio.c: file helpers (see util/fileio.h) and where the checkout is.
*/
#include <errno.h>     /* defines: errno, EEXIST */
#include <stdio.h>     /* defines: FILE, fopen, snprintf, rename */
#include <stdlib.h>    /* defines: malloc, free */
#include <string.h>    /* defines: strerror, strlen */
#include <sys/stat.h>  /* defines: stat, mkdir */
#include <unistd.h>    /* defines: fsync, getpid, readlink, access */
#include <limits.h>    /* defines: PATH_MAX */

#include "util/fileio.h"    /* defines: sr_read_file */

char *sr_read_file(const char *path, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    snprintf(err, errlen, "%s: cannot stat (%s)", path, strerror(errno));
    fclose(f);
    return NULL;
  }
  size_t n = (size_t)st.st_size;
  char *buf = malloc(n + 1);
  if (!buf) {
    snprintf(err, errlen, "%s: out of memory reading %zu bytes", path, n);
    fclose(f);
    return NULL;
  }
  size_t got = fread(buf, 1, n, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || got != n) {
    snprintf(err, errlen, "%s: read error (got %zu of %zu bytes)", path, got, n);
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int sr_write_file_atomic(const char *path, const void *const *parts, const size_t *lens, int nparts,
                         char *err, size_t errlen) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot create (%s)", tmp, strerror(errno));
    return -1;
  }
  int ok = 1;
  for (int i = 0; i < nparts && ok; i++)
    if (lens[i] && fwrite(parts[i], 1, lens[i], f) != lens[i]) ok = 0;
  if (ok && fflush(f) != 0) ok = 0;
  if (ok && fsync(fileno(f)) != 0) ok = 0;
  int saved = errno;
  if (fclose(f) != 0) ok = 0;
  if (!ok) {
    snprintf(err, errlen, "%s: write failed (%s)", tmp, strerror(saved ? saved : errno));
    remove(tmp);
    return -1;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "%s: cannot rename into place (%s)", path, strerror(errno));
    remove(tmp);
    return -1;
  }
  return 0;
}

int sr_mkdir_p(const char *path, char *err, size_t errlen) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) {
    snprintf(err, errlen, "%s: bad directory name", path);
    return -1;
  }
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "%s: cannot create directory (%s)", buf, strerror(errno));
      return -1;
    }
    buf[i] = c;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: not a directory", path);
    return -1;
  }
  return 0;
}

int sr_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

long long sr_file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

const char *sr_path_join(char *buf, size_t n, const char *a, const char *b) {
  size_t la = strlen(a);
  snprintf(buf, n, "%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
  return buf;
}

/* the checkout (or install prefix) holding lua/: $SPEEDRUN_HOME, else next to the binary
** (../lua from build/, ../share/speedrun from bin/), else the source dir compiled in */
const char *sr_source_dir(void) {
  static char dir[PATH_MAX];
  if (dir[0]) return dir;
  const char *env = getenv("SPEEDRUN_HOME");
  if (env && *env) {
    snprintf(dir, sizeof dir, "%s", env);
    return dir;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    for (int up = 0; up < 3; up++) {
      char *slash = strrchr(exe, '/');
      if (!slash) break;
      *slash = '\0';
      char probe[2 * PATH_MAX];
      snprintf(probe, sizeof probe, "%s/lua/speedrun/init.lua", exe);
      if (access(probe, R_OK) == 0) { snprintf(dir, sizeof dir, "%s", exe); return dir; }
      snprintf(probe, sizeof probe, "%s/share/speedrun/lua/speedrun/init.lua", exe);
      if (access(probe, R_OK) == 0 && strlen(exe) + 16 < sizeof dir) {
        snprintf(dir, sizeof dir, "%.*s/share/speedrun", (int)(sizeof dir - 16), exe);
        return dir;
      }
    }
  }
  snprintf(dir, sizeof dir, "%s", SPEEDRUN_SOURCE_DIR);
  return dir;
}
