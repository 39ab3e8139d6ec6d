/*
** data/shard.c: speedrun token shards (format in shard.h): header checks, mmap or reads on demand,
** atomic writes.
*/
#include <errno.h>      /* defines: errno */
#include <fcntl.h>      /* defines: open, O_RDONLY */
#include <stdio.h>      /* defines: snprintf */
#include <string.h>     /* defines: strerror, memset */
#include <sys/mman.h>   /* defines: mmap, munmap */
#include <sys/stat.h>   /* defines: fstat */
#include <unistd.h>     /* defines: close, read, pread */

#include "util/fileio.h"     /* defines: sr_write_file_atomic */
#include "data/shard.h"      /* defines: sr_shard */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shards are little-endian; this host is not"
#endif

void sr_shard_header(int32_t header[256], int64_t n) {
  memset(header, 0, 256 * sizeof *header);
  header[0] = SR_SHARD_MAGIC;
  header[1] = SR_SHARD_VERSION;
  header[2] = (int32_t)n;
}

int sr_shard_check(const void *header, size_t hdrlen, long long filesize, const char *path,
                   int64_t *ntok, char *err, size_t errlen) {
  if (hdrlen < SR_SHARD_HEADER_BYTES || filesize < SR_SHARD_HEADER_BYTES) {
    snprintf(err, errlen, "%s: %lld bytes, too short for the %d-byte shard header", path, filesize,
             SR_SHARD_HEADER_BYTES);
    return -1;
  }
  int32_t h[3];
  memcpy(h, header, sizeof h);
  if (h[0] != SR_SHARD_MAGIC) {
    snprintf(err, errlen, "%s: bad magic %d in the header (a speedrun shard has %d)", path, (int)h[0],
             SR_SHARD_MAGIC);
    return -1;
  }
  if (h[1] != SR_SHARD_VERSION) {
    snprintf(err, errlen, "%s: header version %d, expected %d (uint16 GPT-2 tokens)", path, (int)h[1],
             SR_SHARD_VERSION);
    return -1;
  }
  if (h[2] < 0) {
    snprintf(err, errlen, "%s: negative token count %d in the header", path, (int)h[2]);
    return -1;
  }
  long long want = SR_SHARD_HEADER_BYTES + 2LL * h[2];
  if (filesize != want) {
    snprintf(err, errlen, "%s: the header counts %d tokens (%lld bytes) but the file has %lld bytes (%s)",
             path, (int)h[2], want, filesize, filesize < want ? "truncated" : "trailing bytes");
    return -1;
  }
  *ntok = h[2];
  return 0;
}

/* opens path and validates its header against its size: the open descriptor, or -1 with a message */
static int open_checked(sr_shard *s, const char *path, struct stat *st, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open shard (%s)", path, strerror(errno));
    return -1;
  }
  char h[SR_SHARD_HEADER_BYTES];
  ssize_t got = fstat(fd, st) == 0 ? pread(fd, h, sizeof h, 0) : -1;
  if (got < 0) {
    snprintf(err, errlen, "%s: cannot read shard header (%s)", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (sr_shard_check(h, (size_t)got, (long long)st->st_size, path, &s->ntok, err, errlen) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int sr_shard_open(sr_shard *s, const char *path, char *err, size_t errlen) {
  struct stat st;
  int fd = open_checked(s, path, &st, err, errlen);
  if (fd < 0) return -1;
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    snprintf(err, errlen, "%s: cannot map shard (%s)", path, strerror(errno));
    return -1;
  }
  s->map = map;
  s->maplen = (size_t)st.st_size;
  s->tokens = (const uint16_t *)((const char *)map + SR_SHARD_HEADER_BYTES);
  return 0;
}

int sr_shard_open_unmapped(sr_shard *s, const char *path, char *err, size_t errlen) {
  struct stat st;
  int fd = open_checked(s, path, &st, err, errlen);
  if (fd < 0) return -1;
  s->fd = fd;
  return 0;
}

int sr_shard_read(const sr_shard *s, int64_t first, int64_t n, uint16_t *dst, char *err, size_t errlen) {
  char *p = (char *)dst;
  size_t left = (size_t)n * sizeof *dst;
  off_t at = SR_SHARD_HEADER_BYTES + (off_t)first * (off_t)sizeof *dst;
  while (left > 0) {
    ssize_t got = pread(s->fd, p, left, at);
    if (got <= 0) {
      snprintf(err, errlen, "shard read of %lld tokens at token %lld: %s", (long long)n, (long long)first,
               got < 0 ? strerror(errno) : "the file ended early (changed since it was opened)");
      return -1;
    }
    p += got, left -= (size_t)got, at += got;
  }
  return 0;
}

void sr_shard_close(sr_shard *s) {
  if (s->map) munmap(s->map, s->maplen);
  if (s->fd >= 0) close(s->fd);   /* set by every open: -1 unless unmapped */
  memset(s, 0, sizeof *s);
  s->fd = -1;
}

int64_t sr_shard_peek(const char *path, char *err, size_t errlen) {
  sr_shard s;
  struct stat st;
  int fd = open_checked(&s, path, &st, err, errlen);
  if (fd < 0) return -1;
  close(fd);
  return s.ntok;
}

int sr_shard_write(const char *path, const uint16_t *tokens, size_t n, char *err, size_t errlen) {
  if (n > INT32_MAX) {
    snprintf(err, errlen, "%s: %zu tokens do not fit one shard (at most %d)", path, n, INT32_MAX);
    return -1;
  }
  int32_t header[256];
  sr_shard_header(header, (int64_t)n);
  const void *parts[] = {header, tokens};
  size_t lens[] = {sizeof header, n * sizeof *tokens};
  return sr_write_file_atomic(path, parts, lens, 2, err, errlen);
}
