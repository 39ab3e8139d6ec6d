/*
** data/loader.h: the training and validation data loaders of the speedrun records, over mapped
** shards (no shuffling anywhere, as in the records; deterministic for a rank and world size).
**  SR_LOAD_BT (records 1-11): rank r reads B*T+1 contiguous tokens at pos + r*B*T; x is the
**    first B*T, y the same shifted by one, both (B, T). pos += B*T*world; when
**    pos + B*T*world + 1 > shard length the next shard starts (cycling) at r*B*T.
**  SR_LOAD_SEQ (records 12-17): as BT with B = 1, one flat window of T tokens; the shard
**    switches when pos + T*world >= length.
**  SR_LOAD_GLOBAL (records 18+): `batch` tokens per step over all ranks; rank r takes
**    tokens[pos + r*batch/world ...] (batch/world + 1 tokens), then pos += batch. Before each
**    read, a shard is left when pos + batch + 1 >= its length; there is no cycling: after the
**    last shard the loader reports the end of the data.
** With max_tokens > 0 a loader yields max_tokens / (tokens per step over all ranks) batches and
** then ends (the validation loader: a fixed token count from the start of the val shards;
** the shards must hold at least max_tokens); reset() starts it again.
** The stream starts at token 0 of the first shard, as in the records; sr_loader_seek moves its
** start to any token of the shards' concatenation (the harness's random start of a scored run,
** docs/harness.md) and reads the shards as one ring from there, in every mode: rank r's window
** is the local + 1 tokens at pos + r*local (across a shard's end, and from the last shard's end
** to the first's start), then pos += step; a ring cycles, GLOBAL too. Every window moves with the
** start: a cursor that fell back to a shard's start (a start too late in its shard, a cycle's
** next pass) read the same tokens whatever the start, and a recipe's batch size chose how many.
** Unmapped (the harness's validation loader): no shard is mapped; a window's tokens are read from the
** file when asked for, through a buffer zeroed afterwards, and its targets (y) may be asked for
** later (sr_loader_targets): while eval answers for a chunk, the process holds none of the tokens
** after its inputs (native agent code on a GPU that reads host memory: docs/harness.md).
*/
#ifndef SR_LOADER_H
#define SR_LOADER_H

#include <stddef.h>  /* defines: size_t */
#include <stdint.h>  /* defines: int32_t, int64_t */

typedef enum sr_loader_mode { SR_LOAD_BT, SR_LOAD_SEQ, SR_LOAD_GLOBAL } sr_loader_mode;

typedef struct sr_loader_config {
  sr_loader_mode mode;
  int64_t B, T;          /* BT: B rows of T tokens; SEQ: T tokens (B is ignored) */
  int64_t batch;         /* GLOBAL: tokens per step over all ranks, divisible by world */
  int rank, world;
  int64_t max_tokens;    /* > 0: stop after max_tokens / step tokens batches */
  int unmapped;          /* shards read on demand, never mapped (above) */
} sr_loader_config;

typedef struct sr_loader sr_loader;

/* files in sorted order, as the records' sorted(glob(pattern)); an empty match is an error */
int sr_glob_sorted(const char *pattern, char ***files, int *nfiles, char *err, size_t errlen);
void sr_free_files(char **files, int nfiles);

/* opens (maps, unless unmapped) every shard and checks it holds at least one step; NULL with a
   message on failure */
sr_loader *sr_loader_open(char *const *files, int nfiles, const sr_loader_config *cfg,
                          char *err, size_t errlen);
void sr_loader_free(sr_loader *ld);
int64_t sr_loader_rank_tokens(const sr_loader *ld);   /* tokens in this rank's x (and y) */
int64_t sr_loader_step_tokens(const sr_loader *ld);   /* tokens per step over all ranks */
int64_t sr_loader_total_tokens(const sr_loader *ld);  /* tokens in all shards */
/* fills x and y (rank_tokens int32 each; y NULL: x alone): 1, 0 at the end of the data, or -1 for a
   read error (sr_loader_error) */
int sr_loader_next(sr_loader *ld, int32_t *x, int32_t *y);
/* the targets of the window sr_loader_next read last (x shifted by one): 0, or -1 (none read since
   the start or the last reset, a read error: sr_loader_error) */
int sr_loader_targets(sr_loader *ld, int32_t *y);
const char *sr_loader_error(const sr_loader *ld);
void sr_loader_reset(sr_loader *ld);
/* sets the stream's start (0 <= start < total tokens; -1 otherwise), reads the shards as a ring
   from it from now on, and resets the loader there */
int sr_loader_seek(sr_loader *ld, int64_t start);
/* where the next batch comes from: shard index and this rank's token offset in it */
void sr_loader_position(const sr_loader *ld, int *shard, int64_t *pos);
const char *sr_loader_shard_path(const sr_loader *ld, int shard);

#endif
