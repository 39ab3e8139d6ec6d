/*
** data/shard.h: the speedrun token shard, as llm.c and modded-nanogpt write it: a header of 256
** little-endian int32 (1024 bytes) with [0] = 20240520, [1] = 1, [2] = the token count n, the
** rest zero; then n GPT-2 tokens as little-endian uint16. The file is exactly 1024 + 2n bytes.
** Shards are read through mmap, or (sr_shard_open_unmapped: the validation data) left in the file and
** read on demand; opening validates the header against the file size.
*/
#ifndef SR_SHARD_H
#define SR_SHARD_H

#include <stddef.h>  /* defines: size_t */
#include <stdint.h>  /* defines: int64_t, uint16_t */

#define SR_SHARD_MAGIC 20240520
#define SR_SHARD_VERSION 1
#define SR_SHARD_HEADER_BYTES 1024

typedef struct sr_shard {
  const uint16_t *tokens;   /* ntok tokens inside the mapping; NULL when unmapped */
  int64_t ntok;
  void *map;                /* the whole file, read-only */
  size_t maplen;
  int fd;                   /* unmapped: the open file (sr_shard_read), else -1 */
} sr_shard;

/* the header: 0, or -1 with a message naming path and the problem (bad magic, version,
** or a size that does not match the count: truncated or trailing bytes) */
int sr_shard_check(const void *header, size_t hdrlen, long long filesize, const char *path,
                   int64_t *ntok, char *err, size_t errlen);
/* maps and validates; 0, or -1 with a message */
int sr_shard_open(sr_shard *s, const char *path, char *err, size_t errlen);
/* validates and keeps the file open, unmapped: no token is in the process's memory until
** sr_shard_read copies it out (the harness's validation shards: native agent code on a GPU that
** reads host memory must find no later validation token there; docs/harness.md, threat model) */
int sr_shard_open_unmapped(sr_shard *s, const char *path, char *err, size_t errlen);
/* n tokens of an unmapped shard from token `first` (0 <= first, first + n <= ntok) into dst; 0, or
** -1 with a message (a read error, a file cut short since it was opened); a mapped one's are in tokens */
int sr_shard_read(const sr_shard *s, int64_t first, int64_t n, uint16_t *dst, char *err, size_t errlen);
void sr_shard_close(sr_shard *s);
/* reads and validates only the header; the token count, or -1 with a message */
int64_t sr_shard_peek(const char *path, char *err, size_t errlen);
/* writes a shard atomically (temporary file + rename); 0, or -1 with a message */
int sr_shard_write(const char *path, const uint16_t *tokens, size_t n, char *err, size_t errlen);
/* the 1024-byte header for n tokens */
void sr_shard_header(int32_t header[256], int64_t n);

#endif
