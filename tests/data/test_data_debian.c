/*
** test_data_debian.c: the readers behind the `large` corpus on small synthetic inputs, no Debian
** packages needed: R lazy-load databases (zlib + R XDR character vectors, versions 2 and 3, NA,
** other object types skipped, corruption reported) and the SWORD imp stripper, whose expected
** outputs come from deps.md's strip_imp.py (Python's re + html.unescape) on the same lines.
*/
#include <stdint.h>         /* defines: int32_t, uint32_t */
#include <stdio.h>          /* defines: fprintf */
#include <stdlib.h>         /* defines: malloc, free */
#include <string.h>         /* defines: memcmp, strlen, strstr */

#include <zlib.h>           /* defines: compress2 */

#include "data/corpus_debian.h"  /* defines: sr_rdb_strings, sr_imp_strip_line, sr_imp_walk */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* a growing byte buffer */
typedef struct buf { unsigned char *p; size_t n; } buf;
static void put(buf *b, const void *s, size_t n) {
  b->p = realloc(b->p, b->n + n);
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void put32(buf *b, int32_t v) {
  unsigned char c[4] = {(unsigned char)((uint32_t)v >> 24), (unsigned char)((uint32_t)v >> 16),
                        (unsigned char)((uint32_t)v >> 8), (unsigned char)v};
  put(b, c, 4);
}

/* an R XDR serialisation of a character vector (NULL entries: NA), or of an integer vector */
static buf xdr(int version, const char *const *s, int n, int strings) {
  buf b = {0};
  put(&b, "X\n", 2);
  put32(&b, version);
  put32(&b, 0x40100);               /* writer R 4.1.0 */
  put32(&b, version == 3 ? 0x30500 : 0x20300);
  if (version == 3) {
    put32(&b, 5);
    put(&b, "UTF-8", 5);
  }
  put32(&b, strings ? 16 : 13);     /* STRSXP, INTSXP */
  put32(&b, n);
  for (int i = 0; i < n; i++) {
    if (!strings) { put32(&b, i); continue; }
    put32(&b, 0x00040009);          /* CHARSXP, UTF-8 */
    put32(&b, s[i] ? (int32_t)strlen(s[i]) : -1);
    if (s[i]) put(&b, s[i], strlen(s[i]));
  }
  return b;
}

/* appends the lazy-load record of x (big-endian length + zlib stream) to db */
static void record(buf *db, buf x) {
  uLongf cn = compressBound(x.n);
  unsigned char *c = malloc(cn);
  compress2(c, &cn, x.p, x.n, 6);
  put32(db, (int32_t)x.n);
  put(db, c, cn);
  free(c);
  free(x.p);
}

static void test_rdb(void) {
  const char *book1[] = {"EMMA", "", "CHAPTER I", "Emma Woodhouse, handsome, clever, and rich\xe2\x80\x94"};
  const char *book2[] = {"Persuasion", NULL, "Chapter 1"};
  buf db = {0};
  record(&db, xdr(3, book1, 4, 1));
  record(&db, xdr(2, NULL, 7, 0));  /* not a character vector: skipped */
  record(&db, xdr(2, book2, 3, 1));
  sr_strvec *v;
  int nv;
  char err[512] = "";
  CHECK(sr_rdb_strings(db.p, db.n, &v, &nv, err, sizeof err) == 0, "rdb: %s", err);
  CHECK(nv == 2, "%d vectors, expected 2", nv);
  if (nv == 2) {
    CHECK(v[0].n == 4 && v[1].n == 3, "lengths %d %d", v[0].n, v[1].n);
    for (int i = 0; i < 4 && i < v[0].n; i++)
      CHECK(!strcmp(v[0].s[i], book1[i]) && v[0].len[i] == strlen(book1[i]), "book1[%d] = '%s'", i, v[0].s[i]);
    CHECK(v[1].n == 3 && !strcmp(v[1].s[0], "Persuasion") && !strcmp(v[1].s[1], "") && v[1].len[1] == 0 &&
          !strcmp(v[1].s[2], "Chapter 1"), "book2 (NA must read as \"\")");
  }
  sr_strvecs_free(v, nv);

  /* corruption: a cut stream, a bad header */
  CHECK(sr_rdb_strings(db.p, db.n - 5, &v, &nv, err, sizeof err) == -1 && strstr(err, "object 2"),
        "truncated: '%s'", err);
  buf bad = {0}, junk = {0};
  put(&junk, "Y\nxxxxxxxxxxxxxxxx", 18);
  record(&bad, junk);
  CHECK(sr_rdb_strings(bad.p, bad.n, &v, &nv, err, sizeof err) == -1 && strstr(err, "not an R XDR"),
        "bad header: '%s'", err);
  buf cut = {0};
  buf x = xdr(2, book1, 4, 1);
  x.n -= 10;                         /* the last string is cut short */
  record(&cut, x);
  CHECK(sr_rdb_strings(cut.p, cut.n, &v, &nv, err, sizeof err) == -1 && strstr(err, "ends early"),
        "short object: '%s'", err);
  free(db.p);
  free(bad.p);
  free(cut.p);
}

/* {line, what strip_imp.py makes of it} */
static const char *const CASES[][2] = {
  {"<div type=\"x-p\"/>Hello <hi type=\"italic\">world</hi>.<note n=\"a\">foot <hi>x</hi></note> end",
   "Hello world. end"},
  {"&amp; &gt; &lt;tag&gt; &#65;&#x42; &#0; &#150; &apos; &ampx &unknown; &#xD800; &quot",
   "& > <tag> AB \xef\xbf\xbd \xe2\x80\x93 ' &x &unknown; \xef\xbf\xbd \""},
  {"a\xc2\xa0\xc2\xa0" "b\xe3\x80\x80" "c \x1c d\xe2\x80\xaf" "e  ",
   "a b c d e"},
  {"x\xff y\xe2\x82 z\xed\xa0\x80!",
   "x\xef\xbf\xbd y\xef\xbf\xbd z\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"},
  {"<lg><l>line</l></lg><lb/>x<list>y<listx>z<lbl>w</lb >v",
   "line x yzw v"},
  {"a<note>b",
   "ab"},
  {"<notes>x</note>",
   "x"},
  {"a <> b",
   "a <> b"},
  {"a < b > c",
   "a c"},
  {"<title>Psalm</title><verse osisID=\"x\">In</verse>",
   "Psalm In"},
  {"   ",
   ""},
  {"&#x110000; &#1;",
   "\xef\xbf\xbd"},
  {"<note a>x</note>y</note>",
   "y"},
  {"<chapter n=\"1\"/>",
   ""},
  {"<p>caf\xc3\xa9 \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d</p>",
   "caf\xc3\xa9 \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d"},
};

static void test_strip(void) {
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    size_t n = strlen(CASES[i][0]);
    char *out = malloc(3 * n + 1);
    size_t m = sr_imp_strip_line(CASES[i][0], n, out);
    CHECK(m == strlen(CASES[i][1]) && !memcmp(out, CASES[i][1], m), "case %zu: '%s' -> '%.*s', expected '%s'",
          i, CASES[i][0], (int)m, out, CASES[i][1]);
    free(out);
  }
}

typedef struct walk { char got[1024]; } walk;
static int on_line(void *ctx, const char *key, const char *text, size_t len) {
  walk *w = ctx;
  size_t l = strlen(w->got);
  snprintf(w->got + l, sizeof w->got - l, "[%s]%.*s|", key, (int)len, text);
  return 0;
}
static int stop_at_two(void *ctx, const char *key, const char *text, size_t len) {
  return ++*(int *)ctx == 2 ? 42 : 0;
}

static void test_walk(void) {
  const char *imp = "before\n$$$[ Module Heading ]\n<milestone type=\"x\"/>\n$$$Genesis 1:1\r\n"
                    "<verse>In the beginning</verse>\r\n  second  line \r$$$Genesis 1:2\rThe earth &amp; sky\n\n";
  walk w = {""};
  CHECK(sr_imp_walk(imp, strlen(imp), on_line, &w) == 0, "walk failed");
  const char *want = "[]before|[Genesis 1:1]In the beginning|[Genesis 1:1]second line|[Genesis 1:2]The earth & sky|";
  CHECK(!strcmp(w.got, want), "walk: '%s', expected '%s'", w.got, want);
  int count = 0;
  CHECK(sr_imp_walk(imp, strlen(imp), stop_at_two, &count) == 42 && count == 2, "the callback's stop");
}

int main(void) {
  test_rdb();
  test_strip();
  test_walk();
  if (!failures) printf("test_data_debian: ok\n");
  return failures ? 1 : 0;
}
