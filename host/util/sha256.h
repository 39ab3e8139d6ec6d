/*
** util/sha256.h: SHA-256 (FIPS 180-4) for checking downloaded and shipped files and for the shard
** manifest. Streaming: init, update any number of times, final.
*/
#ifndef SR_SHA256_H
#define SR_SHA256_H

#include <stddef.h>  /* defines: size_t */
#include <stdint.h>  /* defines: uint32_t, uint64_t, uint8_t */

typedef struct sr_sha256 {
  uint32_t h[8];
  uint64_t nbytes;
  uint8_t block[64];
  size_t used;
} sr_sha256;

void sr_sha256_init(sr_sha256 *s);
void sr_sha256_update(sr_sha256 *s, const void *data, size_t n);
void sr_sha256_final(sr_sha256 *s, uint8_t digest[32]);
/* one-shot helpers: 65-byte lowercase hex (with the terminating NUL) */
void sr_sha256_hex(const void *data, size_t n, char hex[65]);
void sr_sha256_digest_hex(const uint8_t digest[32], char hex[65]);
/* hash of a whole file; returns 0, or -1 with errno set */
int sr_sha256_file(const char *path, char hex[65]);

#endif
