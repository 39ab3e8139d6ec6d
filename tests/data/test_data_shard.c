/*
** test_data_shard.c: shard write/read round trip, and the errors for a corrupted header (magic,
** version), a truncated file, trailing bytes, a file shorter than the header and a missing file.
*/
#include <stdio.h>      /* defines: printf, fprintf, FILE */
#include <stdlib.h>     /* defines: mkdtemp */
#include <string.h>     /* defines: strstr */
#include <unistd.h>     /* defines: truncate */

#include "util/fileio.h"     /* defines: sr_path_join, sr_file_size */
#include "data/shard.h"      /* defines: sr_shard_write, sr_shard_open */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void poke(const char *path, long off, const void *bytes, size_t n) {
  FILE *f = fopen(path, "r+b");
  fseek(f, off, SEEK_SET);
  fwrite(bytes, 1, n, f);
  fclose(f);
}

/* opening path must fail with a message containing the file's name and want */
static void expect_error(const char *path, const char *want) {
  char err[1024] = "";
  sr_shard s;
  CHECK(sr_shard_open(&s, path, err, sizeof err) == -1, "%s opened, expected '%s'", path, want);
  CHECK(strstr(err, path) && strstr(err, want), "error '%s' lacks '%s'", err, want);
  CHECK(sr_shard_peek(path, err, sizeof err) == -1 && strstr(err, want), "peek: '%s' lacks '%s'", err, want);
}

int main(void) {
  char dir[] = "/tmp/speedrun-shard-XXXXXX", path[4096], err[1024];
  if (!mkdtemp(dir)) return 1;
  sr_path_join(path, sizeof path, dir, "t_train_000001.bin");
  uint16_t tok[1000];
  for (int i = 0; i < 1000; i++) tok[i] = (uint16_t)(i * 50 + 7);
  CHECK(sr_shard_write(path, tok, 1000, err, sizeof err) == 0, "write: %s", err);
  CHECK(sr_file_size(path) == 1024 + 2000, "file size %lld", sr_file_size(path));

  sr_shard s;
  CHECK(sr_shard_open(&s, path, err, sizeof err) == 0, "open: %s", err);
  CHECK(s.ntok == 1000 && memcmp(s.tokens, tok, sizeof tok) == 0, "tokens read back");
  const int32_t *h = s.map;
  CHECK(h[0] == 20240520 && h[1] == 1 && h[2] == 1000 && h[3] == 0 && h[255] == 0, "header words");
  sr_shard_close(&s);
  CHECK(sr_shard_peek(path, err, sizeof err) == 1000, "peek");

  /* an empty shard is valid */
  char empty[4096];
  sr_path_join(empty, sizeof empty, dir, "empty.bin");
  CHECK(sr_shard_write(empty, tok, 0, err, sizeof err) == 0 && sr_shard_peek(empty, err, sizeof err) == 0,
        "empty shard");

  /* truncated by one token, then one stray byte */
  CHECK(truncate(path, 1024 + 1998) == 0, "truncate");
  expect_error(path, "truncated");
  CHECK(truncate(path, 1024 + 2001) == 0, "extend");
  expect_error(path, "trailing bytes");
  CHECK(truncate(path, 1024 + 2000) == 0, "restore");
  CHECK(sr_shard_peek(path, err, sizeof err) == 1000, "restored: %s", err);

  int32_t bad = 20240801;
  poke(path, 0, &bad, 4);
  expect_error(path, "bad magic 20240801");
  int32_t magic = 20240520, version = 7;
  poke(path, 0, &magic, 4);
  poke(path, 4, &version, 4);
  expect_error(path, "header version 7");
  int32_t one = 1, count = 5000;
  poke(path, 4, &one, 4);
  poke(path, 8, &count, 4);
  expect_error(path, "counts 5000 tokens");

  CHECK(truncate(path, 100) == 0, "truncate to 100");
  expect_error(path, "too short for the 1024-byte shard header");
  remove(path);
  expect_error(path, "cannot open shard");
  remove(empty);
  remove(dir);

  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("ok\n");
  return failures ? 1 : 0;
}
