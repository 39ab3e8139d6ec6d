/*
** test_data_fetch.c: sr_fetch against a local server that misbehaves on purpose
** (tests/data/http_server.js, run with node on 127.0.0.1; nothing touches the internet):
** 404, 500 then success, a connection cut mid-file (the resume must be byte-identical, with a
** Range request), a server that ignores Range on the retry, a wrong header, a stall (timeout,
** then resume), a slow link with parallel transfers limited by `jobs`, a leftover .part, files
** already in place, and a proxy taken from http_proxy. Skips (77) without node.
*/
#include <signal.h>        /* defines: kill, SIGTERM */
#include <stdio.h>         /* defines: printf, fprintf, fdopen */
#include <stdlib.h>        /* defines: setenv, unsetenv, mkdtemp */
#include <string.h>        /* defines: strstr, memcmp */
#include <sys/wait.h>      /* defines: waitpid */
#include <unistd.h>        /* defines: fork, pipe, execlp */

#include <cjson/cJSON.h>   /* defines: cJSON_Parse */
#include <curl/curl.h>     /* defines: curl_easy_* */

#include "util/fileio.h"        /* defines: sr_read_file, sr_path_join */
#include "data/fetch.h"         /* defines: sr_fetch */
#include "data/shard.h"         /* defines: sr_shard_write */
#include "data/tokenizer.h"     /* defines: sr_bytes */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static char root[] = "/tmp/speedrun-fetch-XXXXXX";
static char src[4096], base[256];
static int port;

static size_t collect(char *p, size_t s, size_t n, void *ud) {
  sr_bytes_append(ud, p, s * n);
  return s * n;
}

/* GET http://127.0.0.1:port/what as JSON */
static cJSON *server(const char *what) {
  char url[512];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/%s", port, what);
  sr_bytes b = {0};
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_perform(e);
  curl_easy_cleanup(e);
  cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
  sr_bytes_free(&b);
  return j;
}

static int count_of(const char *path) {
  cJSON *s = server("stats");
  int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "counts"), path));
  cJSON_Delete(s);
  return n;
}

/* the Range header of request k (0-based) to path, or "" */
static void range_of(const char *path, int k, char *buf, size_t n) {
  cJSON *s = server("stats");
  const char *r = cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "ranges"), path), k));
  snprintf(buf, n, "%s", r ? r : "");
  cJSON_Delete(s);
}

static void make_shard(const char *name, int ntok, int seed) {
  uint16_t *t = malloc((size_t)ntok * 2);
  for (int i = 0; i < ntok; i++) t[i] = (uint16_t)((i * 31 + seed) % 50257);
  char path[4096], err[512];
  sr_shard_write(sr_path_join(path, sizeof path, src, name), t, (size_t)ntok, err, sizeof err);
  free(t);
}

static int same_file(const char *a, const char *b) {
  char err[512];
  size_t na, nb;
  char *x = sr_read_file(a, &na, err, sizeof err), *y = sr_read_file(b, &nb, err, sizeof err);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

/* fetches names from /mode into root/out_<tag>; returns sr_fetch's result, message in err */
static int fetch(const char *mode, const char *tag, char *const *names, int n, int jobs, int retries,
                 long stall, FILE *progress, char *err, size_t errlen) {
  char url[512], out[4096];
  snprintf(url, sizeof url, "%s/%s", base, mode);
  snprintf(out, sizeof out, "%s/out_%s", root, tag);
  sr_fetch_opts o = {url, out, names, n, jobs, retries, 0.05, stall, 5, 1, progress};
  return sr_fetch(&o, err, errlen);
}

/* the fetched file equals the source and no .part is left */
static void check_fetched(const char *tag, const char *name) {
  char a[8192], b[4096], part[8192];
  snprintf(a, sizeof a, "%s/%s", src, name);
  snprintf(b, sizeof b, "%s/out_%s/%s", root, tag, name);
  snprintf(part, sizeof part, "%s.part", b);
  CHECK(same_file(a, b), "%s: %s differs from the source", tag, name);
  CHECK(!sr_file_exists(part), "%s: %s left behind", tag, part);
}

static void check_absent(const char *tag, const char *name) {
  char b[4096], part[4200];
  snprintf(b, sizeof b, "%s/out_%s/%s", root, tag, name);
  snprintf(part, sizeof part, "%s.part", b);
  CHECK(!sr_file_exists(b) && !sr_file_exists(part), "%s: %s (or its .part) exists after a failure", tag, name);
}

int main(void) {
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("skip: node is not installed, so the local test server cannot run\n");
    return 77;
  }
  if (!mkdtemp(root)) return 1;
  snprintf(src, sizeof src, "%s/src", root);
  char err[16384];
  sr_mkdir_p(src, err, sizeof err);
  make_shard("a.bin", 150000, 1);
  make_shard("b.bin", 150000, 2);
  make_shard("c.bin", 150001, 3);
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof name, "s%d.bin", i);
    make_shard(name, 60000, 10 + i);
  }
  make_shard("bad.bin", 1000, 4);
  FILE *f = fopen(sr_path_join(err, sizeof err, src, "bad.bin"), "r+b");
  fputc(0x42, f);
  fclose(f);

  /* start the server; its port comes on the first line of its stdout */
  int to_child[2], from_child[2];
  if (pipe(to_child) || pipe(from_child)) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    execlp("node", "node", SPEEDRUN_SOURCE_DIR "/tests/data/http_server.js", src, (char *)NULL);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE *fromf = fdopen(from_child[0], "r");
  if (!fromf || fscanf(fromf, "%d", &port) != 1) {
    fprintf(stderr, "FAIL: the test server did not start\n");
    return 1;
  }
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  unsetenv("http_proxy"); unsetenv("HTTP_PROXY"); unsetenv("https_proxy"); unsetenv("ALL_PROXY");
  unsetenv("all_proxy");
  setenv("no_proxy", "127.0.0.1,localhost", 1);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  char *ab[] = {"a.bin", "b.bin"};
  char *a[] = {"a.bin"}, *c[] = {"c.bin"}, *bad[] = {"bad.bin"};
  char r[128];

  /* plain, two in parallel; a second run finds them in place and sends nothing */
  CHECK(fetch("ok", "ok", ab, 2, 2, 0, 5, NULL, err, sizeof err) == 0, "ok: %s", err);
  check_fetched("ok", "a.bin");
  check_fetched("ok", "b.bin");
  CHECK(fetch("ok", "ok", ab, 2, 2, 0, 5, NULL, err, sizeof err) == 0, "ok again: %s", err);
  CHECK(count_of("/ok/a.bin") == 1 && count_of("/ok/b.bin") == 1, "files in place were fetched again");

  /* 404 fails at once, naming the file */
  char *missing[] = {"nothere.bin"};
  CHECK(fetch("missing", "404", missing, 1, 1, 3, 5, NULL, err, sizeof err) == -1 &&
        strstr(err, "nothere.bin") && strstr(err, "HTTP 404"), "404: '%s'", err);
  CHECK(count_of("/missing/nothere.bin") == 1, "404 was retried");
  check_absent("404", "nothere.bin");

  /* 500, 500, then success; with one retry only it gives up */
  CHECK(fetch("flaky", "flaky", a, 1, 1, 3, 5, NULL, err, sizeof err) == 0, "flaky: %s", err);
  CHECK(count_of("/flaky/a.bin") == 3, "flaky: %d requests, expected 3", count_of("/flaky/a.bin"));
  check_fetched("flaky", "a.bin");
  CHECK(fetch("flaky", "flaky1", c, 1, 1, 1, 5, NULL, err, sizeof err) == -1 && strstr(err, "HTTP 500") &&
        strstr(err, "gave up after 2 attempts"), "flaky, 1 retry: '%s'", err);
  check_absent("flaky1", "c.bin");

  /* cut halfway: the retry asks for the rest and the result is byte-identical */
  CHECK(fetch("cut", "cut", c, 1, 1, 3, 5, NULL, err, sizeof err) == 0, "cut: %s", err);
  check_fetched("cut", "c.bin");
  long long half = (1024 + 2 * 150001) / 2;
  char want[64];
  snprintf(want, sizeof want, "bytes=%lld-", half);
  range_of("/cut/c.bin", 1, r, sizeof r);
  CHECK(count_of("/cut/c.bin") == 2 && !strcmp(r, want), "cut: resume sent '%s', expected '%s'", r, want);
  CHECK(fetch("cutnorange", "cutnorange", c, 1, 1, 3, 5, NULL, err, sizeof err) == 0, "cutnorange: %s", err);
  check_fetched("cutnorange", "c.bin");

  /* a leftover .part from an earlier run is resumed */
  char part[4200], srcb[4096];
  snprintf(part, sizeof part, "%s/out_part/b.bin.part", root);
  sr_mkdir_p(strcat(strcpy(srcb, root), "/out_part"), err, sizeof err);
  size_t nb;
  char *bdata = sr_read_file(sr_path_join(srcb, sizeof srcb, src, "b.bin"), &nb, err, sizeof err);
  const void *parts[] = {bdata};
  size_t first = 1000;
  sr_write_file_atomic(part, parts, &first, 1, err, sizeof err);
  free(bdata);
  char *b[] = {"b.bin"};
  server("reset");
  CHECK(fetch("ok", "part", b, 1, 1, 0, 5, NULL, err, sizeof err) == 0, "part: %s", err);
  range_of("/ok/b.bin", 0, r, sizeof r);
  CHECK(!strcmp(r, "bytes=1000-"), "leftover .part: range '%s'", r);
  check_fetched("part", "b.bin");

  /* a wrong header is refused and nothing is left under the final name */
  CHECK(fetch("ok", "bad", bad, 1, 1, 3, 5, NULL, err, sizeof err) == -1 && strstr(err, "bad magic"),
        "bad header: '%s'", err);
  check_absent("bad", "bad.bin");

  /* a stall: 4 kB then silence; the low-speed timeout fires and the retry resumes */
  double t0 = (double)time(NULL);
  CHECK(fetch("stall", "stall", a, 1, 1, 3, 1, NULL, err, sizeof err) == 0, "stall: %s", err);
  check_fetched("stall", "a.bin");
  range_of("/stall/a.bin", 1, r, sizeof r);
  CHECK(!strcmp(r, "bytes=4096-"), "stall: resume range '%s'", r);
  CHECK((double)time(NULL) - t0 < 20, "stall took too long");

  /* a slow link, 4 files, at most 2 at a time; progress lines */
  char *slow[] = {"s0.bin", "s1.bin", "s2.bin", "s3.bin"};
  server("reset");
  FILE *prog = tmpfile();
  CHECK(fetch("slow", "slow", slow, 4, 2, 0, 5, prog, err, sizeof err) == 0, "slow: %s", err);
  for (int i = 0; i < 4; i++) check_fetched("slow", slow[i]);
  cJSON *st = server("stats");
  int maxa = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(st, "maxActive"));
  cJSON_Delete(st);
  CHECK(maxa == 2, "slow: %d transfers at once, expected 2", maxa);
  rewind(prog);
  char line[512], lastline[512] = "";
  while (fgets(line, sizeof line, prog)) strcpy(lastline, line);
  fclose(prog);
  CHECK(strstr(lastline, "fetch: 4/4 files") != NULL, "progress: last line '%s'", lastline);

  /* the proxy comes from http_proxy, as with curl: the test server answers as the proxy */
  char proxy[128];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
  setenv("http_proxy", proxy, 1);
  unsetenv("no_proxy");
  char out[4096];
  snprintf(out, sizeof out, "%s/out_proxy", root);
  sr_fetch_opts po = {"http://speedrun-test.invalid/ok", out, a, 1, 1, 0, 0.05, 5, 5, 1, NULL};
  CHECK(sr_fetch(&po, err, sizeof err) == 0, "proxy: %s", err);
  check_fetched("proxy", "a.bin");
  unsetenv("http_proxy");
  setenv("no_proxy", "127.0.0.1,localhost", 1);
  st = server("stats");
  CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(st, "proxied")) >= 1, "the proxy was not used");
  cJSON_Delete(st);

  close(to_child[1]);                  /* the server exits when its stdin closes */
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  curl_global_cleanup();
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("ok\n");
  return failures ? 1 : 0;
}
