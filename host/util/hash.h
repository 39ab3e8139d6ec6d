/*
** util/hash.h: FNV-1a 64, the one non-cryptographic byte hash of the host (launch layouts in
** core/trace.c, cuBLASLt's algorithm records in cuda/lt_algo.c, the tail and shape of the
** harness's keyed tensor checksum in lua/lharness.c). Chain calls to hash several
** pieces: h = sr_fnv1a(sr_fnv1a(SR_FNV_SEED, a, na), b, nb). Content identity that must resist
** tampering uses util/sha256.h instead.
*/
#ifndef SR_HASH_H
#define SR_HASH_H

#include <stddef.h>  /* defines: size_t */
#include <stdint.h>  /* defines: uint64_t */

#define SR_FNV_SEED 0xcbf29ce484222325ull

static inline uint64_t sr_fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 0x100000001b3ull;
  return h;
}

#endif
