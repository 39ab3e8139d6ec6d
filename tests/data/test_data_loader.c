/*
** test_data_loader.c: the three loader semantics against hand-computed slice offsets, each over
** mapped shards and again unmapped (read on demand, the targets asked for apart). Shard s holds
** token values 1000*s + i at position i, so every batch tells where it came from. Shard 0 has 100
** tokens and shard 1 has 70.
*/
#include <stdio.h>      /* defines: printf, fprintf */
#include <stdlib.h>     /* defines: mkdtemp, free */
#include <string.h>     /* defines: strstr */
#include <unistd.h>     /* defines: truncate */

#include "util/fileio.h"     /* defines: sr_path_join */
#include "data/loader.h"     /* defines: sr_loader_open, sr_loader_next */
#include "data/shard.h"      /* defines: sr_shard_write */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static char **files;
static int nfiles;

/* how many lines of /proc/self/maps name a shard of this test (Linux) */
static int mapped_shards(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[8192];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) n += strstr(line, "t_train_") != NULL;
  if (f) fclose(f);
  return n;
}

/* the next batch: x and y at once, or (unmapped) x, then y asked for apart */
static int next_batch(sr_loader *ld, int unmapped, int32_t *x, int32_t *y) {
  if (!unmapped) return sr_loader_next(ld, x, y);
  int ok = sr_loader_next(ld, x, NULL);
  return ok == 1 && sr_loader_targets(ld, y) != 0 ? -1 : ok;
}

/* expected (shard, start) per batch, then the end (-1) or a further batch that must cycle */
static void run_one(const char *what, sr_loader_config cfg, const int (*want)[2], int nwant, int ends) {
  char err[1024];
  int unmapped = cfg.unmapped;
  sr_loader *ld = sr_loader_open(files, nfiles, &cfg, err, sizeof err);
  CHECK(ld != NULL, "%s: %s", what, err);
  if (!ld) return;
  CHECK((mapped_shards() > 0) == !unmapped, "%s: %d shard mappings with unmapped = %d", what, mapped_shards(), unmapped);
  int64_t n = sr_loader_rank_tokens(ld);
  int32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
  CHECK(sr_loader_targets(ld, y) == -1 && strstr(sr_loader_error(ld), "no window"), "%s: targets before a window", what);
  for (int pass = 0; pass < 2; pass++) {          /* reset() replays the same batches */
    for (int b = 0; b < nwant; b++) {
      int ok = next_batch(ld, unmapped, x, y);
      CHECK(ok == 1, "%s: batch %d missing", what, b);
      int32_t first = want[b][0] * 1000 + want[b][1];
      int good = 1;
      for (int64_t i = 0; i < n; i++) good &= x[i] == first + i && y[i] == first + i + 1;
      CHECK(good, "%s: batch %d starts at %d, expected shard %d pos %d", what, b, x[0], want[b][0], want[b][1]);
    }
    int ok = next_batch(ld, unmapped, x, y);
    if (ends) CHECK(ok == 0 && sr_loader_next(ld, x, y) == 0, "%s: no end of data", what);
    else CHECK(ok == 1 && x[0] == want[0][0] * 1000 + want[0][1], "%s: did not cycle to the start", what);
    sr_loader_reset(ld);
    CHECK(sr_loader_targets(ld, y) == -1, "%s: targets after a reset", what);
  }
  free(x);
  free(y);
  sr_loader_free(ld);
}

/* run_one mapped, then unmapped (no shard in the process's mappings) */
static void run(const char *what, sr_loader_config cfg, const int (*want)[2], int nwant, int ends) {
  for (int unmapped = 0; unmapped < 2; unmapped++) {
    cfg.unmapped = unmapped;
    run_one(what, cfg, want, nwant, ends);
  }
}

/* an unmapped shard cut short after the open: the read fails, naming the file */
static void read_error(void) {
  char err[1024];
  sr_loader_config cfg = {SR_LOAD_BT, 2, 4, 0, 0, 1, 0, 1};
  sr_loader *ld = sr_loader_open(files, 1, &cfg, err, sizeof err);
  CHECK(ld != NULL, "read error: %s", err);
  if (!ld) return;
  int32_t x[8];
  CHECK(truncate(files[0], 1024 + 2 * 4) == 0, "truncate");
  int ok = sr_loader_next(ld, x, NULL);
  CHECK(ok == -1 && strstr(sr_loader_error(ld), "ended early") && strstr(sr_loader_error(ld), "t_train_000001.bin"),
        "read error: next gave %d, '%s'", ok, sr_loader_error(ld));
  sr_loader_free(ld);
}

static void expect_open_error(const char *what, sr_loader_config cfg, const char *want) {
  char err[1024] = "";
  sr_loader *ld = sr_loader_open(files, nfiles, &cfg, err, sizeof err);
  CHECK(ld == NULL && strstr(err, want), "%s: got '%s', expected '%s'", what, err, want);
  sr_loader_free(ld);
}

int main(void) {
  char dir[] = "/tmp/speedrun-loader-XXXXXX", path[4096], err[1024];
  if (!mkdtemp(dir)) return 1;
  uint16_t tok[100];
  for (int s = 0; s < 2; s++) {
    for (int i = 0; i < 100; i++) tok[i] = (uint16_t)(1000 * s + i);
    char name[64];
    snprintf(name, sizeof name, "t_train_%06d.bin", s + 1);
    sr_shard_write(sr_path_join(path, sizeof path, dir, name), tok, s ? 70 : 100, err, sizeof err);
  }
  char pattern[4096];
  snprintf(pattern, sizeof pattern, "%s/t_train_*.bin", dir);
  CHECK(sr_glob_sorted(pattern, &files, &nfiles, err, sizeof err) == 0 && nfiles == 2, "glob: %s", err);
  CHECK(strstr(files[0], "000001") && strstr(files[1], "000002"), "sorted order");

  /* (a) B=2, T=4, world 2: 8 tokens per rank, step 16; next shard when pos + 17 > length */
  static const int bt0[][2] = {{0, 0}, {0, 16}, {0, 32}, {0, 48}, {0, 64}, {0, 80},
                               {1, 0}, {1, 16}, {1, 32}, {1, 48}};
  static const int bt1[][2] = {{0, 8}, {0, 24}, {0, 40}, {0, 56}, {0, 72},
                               {1, 8}, {1, 24}, {1, 40}};
  run("BT rank 0", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 0, 2, 0, 0}, bt0, 10, 0);
  run("BT rank 1", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 1, 2, 0, 0}, bt1, 8, 0);
  /* world 1: 8-token steps; shard 0 up to 88 (pos 96 + 9 > 100), shard 1 up to 56 */
  static const int bt_single[][2] = {{0, 0}, {0, 8}, {0, 16}, {0, 24}, {0, 32}, {0, 40}, {0, 48},
                                     {0, 56}, {0, 64}, {0, 72}, {0, 80}, {0, 88}, {1, 0}, {1, 8},
                                     {1, 16}, {1, 24}, {1, 32}, {1, 40}, {1, 48}, {1, 56}};
  run("BT world 1", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 0, 1, 0, 0}, bt_single, 20, 0);

  /* (b) T=10, world 2: step 20; next shard when pos + 20 >= length */
  static const int seq0[][2] = {{0, 0}, {0, 20}, {0, 40}, {0, 60}, {1, 0}, {1, 20}, {1, 40}};
  static const int seq1[][2] = {{0, 10}, {0, 30}, {0, 50}, {0, 70}, {1, 10}, {1, 30}};
  run("SEQ rank 0", (sr_loader_config){SR_LOAD_SEQ, 0, 10, 0, 0, 2, 0, 0}, seq0, 7, 0);
  run("SEQ rank 1", (sr_loader_config){SR_LOAD_SEQ, 0, 10, 0, 1, 2, 0, 0}, seq1, 6, 0);

  /* (c) global batch 24, world 2: 12 tokens per rank; leave a shard when pos + 25 >= length;
  ** no cycling */
  static const int g0[][2] = {{0, 0}, {0, 24}, {0, 48}, {0, 72}, {1, 0}, {1, 24}};
  static const int g1[][2] = {{0, 12}, {0, 36}, {0, 60}, {0, 84}, {1, 12}, {1, 36}};
  run("GLOBAL rank 0", (sr_loader_config){SR_LOAD_GLOBAL, 0, 0, 24, 0, 2, 0, 0}, g0, 6, 1);
  run("GLOBAL rank 1", (sr_loader_config){SR_LOAD_GLOBAL, 0, 0, 24, 1, 2, 0, 0}, g1, 6, 1);

  /* validation: 50 tokens of 16-token steps = 3 batches from the start, then the end */
  static const int v1[][2] = {{0, 8}, {0, 24}, {0, 40}};
  run("BT val rank 1", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 1, 2, 50, 0}, v1, 3, 1);
  static const int gv[][2] = {{0, 0}, {0, 24}};
  run("GLOBAL val", (sr_loader_config){SR_LOAD_GLOBAL, 0, 0, 24, 0, 2, 48, 0}, gv, 2, 1);

  expect_open_error("rank", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 2, 2, 0, 0}, "rank 2 is not in [0, world = 2)");
  expect_open_error("too big", (sr_loader_config){SR_LOAD_BT, 8, 8, 0, 0, 2, 0, 0},
                    "t_train_000001.bin: 100 tokens, fewer than one step needs (128 + 1)");
  expect_open_error("batch", (sr_loader_config){SR_LOAD_GLOBAL, 0, 0, 25, 0, 2, 0, 0}, "multiple of world = 2");
  expect_open_error("val", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 0, 2, 10, 0}, "less than one step");
  snprintf(pattern, sizeof pattern, "%s/nothing_*.bin", dir);
  char **none;
  int nnone;
  CHECK(sr_glob_sorted(pattern, &none, &nnone, err, sizeof err) == -1 && strstr(err, "no files match"),
        "empty glob: %s", err);

  /* a corrupt shard fails the open, naming the file */
  FILE *f = fopen(files[1], "r+b");
  fputc(0, f);
  fclose(f);
  expect_open_error("corrupt", (sr_loader_config){SR_LOAD_BT, 2, 4, 0, 0, 1, 0, 0}, "t_train_000002.bin: bad magic");
  read_error();   /* (cuts shard 0 short: the last check) */

  for (int i = 0; i < nfiles; i++) remove(files[i]);
  sr_free_files(files, nfiles);
  remove(dir);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("ok\n");
  return failures ? 1 : 0;
}
