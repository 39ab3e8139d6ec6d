/*
** data/corpus_debian.c: readers for the Debian-packaged texts of the `large` corpus (see
** corpus_debian.h): R lazy-load databases (zlib + R XDR), SWORD mod2imp output (OSIS stripped as
** the corpus's reference strip_imp.py does (docs/data.md)), and fetching / unpacking .deb files with apt-get and dpkg.
*/
#define _GNU_SOURCE          /* mkdtemp, nftw */
#include <errno.h>           /* defines: errno */
#include <fcntl.h>           /* defines: open, O_WRONLY */
#include <ftw.h>             /* defines: nftw */
#include <glob.h>            /* defines: glob */
#include <stdint.h>          /* defines: uint32_t */
#include <stdio.h>           /* defines: snprintf */
#include <stdlib.h>          /* defines: malloc, free, getenv */
#include <string.h>          /* defines: memcpy, strcmp */
#include <sys/wait.h>        /* defines: waitpid */
#include <unistd.h>          /* defines: fork, execvp, chdir */

#include <zlib.h>            /* defines: inflate */

#include "data/corpus_debian.h"
#include "util/fileio.h"          /* defines: sr_read_file, sr_mkdir_p, sr_path_join */

/* ---------------------------------------------------------------------------------------------
** R lazy-load database */

static int32_t be32(const unsigned char *p) {
  return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/* inflates the zlib stream at in[0..n); *used = its compressed length */
static unsigned char *inflate_one(const unsigned char *in, size_t n, size_t hint, size_t *outn, size_t *used,
                                  char *err, size_t errlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) {
    snprintf(err, errlen, "zlib: inflateInit failed");
    return NULL;
  }
  size_t cap = hint ? hint : 1 << 16, len = 0;
  unsigned char *out = malloc(cap);
  int zr = Z_OK;
  z.next_in = (unsigned char *)in;
  while (out && zr == Z_OK) {
    if (len == cap) {
      unsigned char *o2 = realloc(out, cap * 2);
      if (!o2) break;
      out = o2;
      cap *= 2;
    }
    size_t in_left = n - (size_t)((const unsigned char *)z.next_in - in);
    z.avail_in = in_left > 1u << 30 ? 1u << 30 : (uInt)in_left;
    z.next_out = out + len;
    z.avail_out = cap - len > 1u << 30 ? 1u << 30 : (uInt)(cap - len);
    uInt before = z.avail_out;
    zr = inflate(&z, Z_NO_FLUSH);
    len += before - z.avail_out;
    if (zr == Z_BUF_ERROR && z.avail_out > 0) break;     /* input ended inside the stream */
    if (zr == Z_BUF_ERROR) zr = Z_OK;
  }
  *used = (size_t)((const unsigned char *)z.next_in - in);
  inflateEnd(&z);
  if (!out || zr != Z_STREAM_END) {
    snprintf(err, errlen, "zlib: %s", !out ? "out of memory" : z.msg ? z.msg : "truncated or corrupt stream");
    free(out);
    return NULL;
  }
  *outn = len;
  return out;
}

/* one serialised object: appends it to vecs when it is a character vector */
static int rdb_object(const unsigned char *raw, size_t n, sr_strvec **vecs, int *nvecs, int *cap,
                      char *err, size_t errlen) {
  if (n < 2 || raw[0] != 'X' || raw[1] != '\n') {
    snprintf(err, errlen, "not an R XDR serialisation (no 'X\\n' header)");
    return -1;
  }
  size_t p = 2;
  if (p + 12 > n) goto short_;
  int32_t ver = be32(raw + p);
  p += 12;                                      /* version, writer version, minimal reader version */
  if (ver == 3) {                               /* native encoding */
    if (p + 4 > n) goto short_;
    int32_t l = be32(raw + p);
    if (l < 0 || p + 4 + (size_t)l > n) goto short_;
    p += 4 + (size_t)l;
  }
  if (p + 4 > n) goto short_;
  int32_t flags = be32(raw + p);
  p += 4;
  if ((flags & 0xFF) != 16) return 0;          /* not a STRSXP */
  if (p + 4 > n) goto short_;
  int32_t len = be32(raw + p);
  p += 4;
  if (len < 0) {
    snprintf(err, errlen, "R long vectors are not supported");
    return -1;
  }
  if (*nvecs == *cap) {
    int c = *cap ? 2 * *cap : 8;
    sr_strvec *v = realloc(*vecs, (size_t)c * sizeof *v);
    if (!v) goto oom;
    *vecs = v;
    *cap = c;
  }
  sr_strvec *sv = &(*vecs)[*nvecs];
  sv->n = 0;
  sv->s = calloc((size_t)len + 1, sizeof *sv->s);
  sv->len = calloc((size_t)len + 1, sizeof *sv->len);
  (*nvecs)++;
  if (!sv->s || !sv->len) goto oom;
  for (int32_t i = 0; i < len; i++) {
    if (p + 8 > n) goto short_;
    int32_t l = be32(raw + p + 4);              /* after the CHARSXP's flags */
    p += 8;
    if (l < 0) l = 0;                           /* NA_STRING */
    else if (p + (size_t)l > n) goto short_;
    if (!(sv->s[i] = malloc((size_t)l + 1))) goto oom;
    memcpy(sv->s[i], raw + p, (size_t)l);
    sv->s[i][l] = '\0';
    sv->len[i] = (size_t)l;
    sv->n++;
    p += (size_t)l;
  }
  return 0;
short_:
  snprintf(err, errlen, "R serialisation ends early (at byte %zu of %zu)", p, n);
  return -1;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

void sr_strvecs_free(sr_strvec *vecs, int nvecs) {
  for (int i = 0; i < nvecs; i++) {
    for (int k = 0; k < vecs[i].n; k++) free(vecs[i].s[k]);
    free(vecs[i].s);
    free(vecs[i].len);
  }
  free(vecs);
}

int sr_rdb_strings(const unsigned char *rdb, size_t n, sr_strvec **vecs, int *nvecs, char *err,
                   size_t errlen) {
  int cap = 0;
  *vecs = NULL;
  *nvecs = 0;
  for (size_t pos = 0, k = 0; pos < n; k++) {
    if (pos + 4 > n) {
      snprintf(err, errlen, "object %zu at byte %zu: the length is cut short", k, pos);
      goto fail;
    }
    size_t hint = (size_t)(uint32_t)be32(rdb + pos), used, rawn;
    pos += 4;
    char e[256];
    unsigned char *raw = inflate_one(rdb + pos, n - pos, hint, &rawn, &used, e, sizeof e);
    if (!raw) {
      snprintf(err, errlen, "object %zu at byte %zu: %s", k, pos - 4, e);
      goto fail;
    }
    int rc = rdb_object(raw, rawn, vecs, nvecs, &cap, e, sizeof e);
    free(raw);
    if (rc) {
      snprintf(err, errlen, "object %zu at byte %zu: %s", k, pos - 4, e);
      goto fail;
    }
    pos += used;
  }
  return 0;
fail:
  sr_strvecs_free(*vecs, *nvecs);
  *vecs = NULL;
  *nvecs = 0;
  return -1;
}

/* ---------------------------------------------------------------------------------------------
** SWORD imp -> text (the reference strip_imp.py, byte for byte; docs/data.md) */

/* the length of the well-formed UTF-8 sequence at s (RFC 3629), or 0 with *bad = the length of
** its maximal valid prefix (at least 1), which Python's 'replace' turns into one U+FFFD */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
  unsigned c = s[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  size_t i = 1;
  for (; i < need && i < n; i++) {
    unsigned b = s[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) break;
  }
  if (i == need) return need;
  *bad = i;
  return 0;
}

/* Python's str.isspace() for the character at s: its length, else 0 */
static size_t uspace(const unsigned char *s, size_t n) {
  if ((s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x20)) return 1;
  if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
  if (n >= 3) {
    if (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3;                        /* U+1680 */
    if (s[0] == 0xE2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 ||
                                         s[2] == 0xA9 || s[2] == 0xAF)) return 3;   /* U+2000.. */
    if (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3;                        /* U+205F */
    if (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;                        /* U+3000 */
  }
  return 0;
}

/* a regex word character (\w); any non-ASCII byte counts as one (letters, in practice) */
static int wordc(unsigned char c) {
  return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
  o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
  return 4;
}

/* html.unescape's table for &#128;..&#159; (windows-1252); 0: the code point itself */
static const uint16_t CP1252[32] = {
  0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152,
  0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
  0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178};

/* the named references html.unescape knows that can occur in these texts; `legacy`: also
** recognised without the ';' (HTML5's legacy names). Other names are left as they are. */
static const struct { const char *name; uint32_t cp; int legacy; } NAMED[] = {
  {"amp", '&', 1}, {"lt", '<', 1}, {"gt", '>', 1}, {"quot", '"', 1}, {"apos", '\'', 0},
  {"nbsp", 0xA0, 1}, {"shy", 0xAD, 1}, {"copy", 0xA9, 1}, {"reg", 0xAE, 1}, {"deg", 0xB0, 1},
  {"mdash", 0x2014, 0}, {"ndash", 0x2013, 0}, {"hellip", 0x2026, 0}, {"lsquo", 0x2018, 0},
  {"rsquo", 0x2019, 0}, {"ldquo", 0x201C, 0}, {"rdquo", 0x201D, 0},
};

/* html.unescape of s[0..n) into o (never longer); returns the length */
static size_t html_unescape(const char *s, size_t n, char *o) {
  size_t w = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] != '&') { o[w++] = s[i++]; continue; }
    size_t j = i + 1;
    if (j < n && s[j] == '#') {                                 /* &#123; &#x1F; (';' optional) */
      int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t k = j + 1 + (size_t)hex, d = k;
      uint64_t v = 0;
      while (k < n && (hex ? ((s[k] >= '0' && s[k] <= '9') || ((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'f'))
                            : (s[k] >= '0' && s[k] <= '9'))) {
        int dig = s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
        if (v <= 0x110000) v = v * (hex ? 16 : 10) + (uint64_t)dig;
        k++;
      }
      if (k == d) { o[w++] = s[i++]; continue; }                /* no digits: not a reference */
      if (k < n && s[k] == ';') k++;
      i = k;
      if (v == 0) w += put_utf8(o + w, 0xFFFD);
      else if (v == 0x0D) o[w++] = '\r';
      else if (v >= 0x80 && v <= 0x9F && CP1252[v - 0x80] != v) w += put_utf8(o + w, CP1252[v - 0x80]);
      else if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) w += put_utf8(o + w, 0xFFFD);
      else if ((v >= 0x1 && v <= 0x8) || v == 0xB || (v >= 0xE && v <= 0x1F) || (v >= 0x7F && v <= 0x9F) ||
               (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE) continue;   /* dropped */
      else w += put_utf8(o + w, (uint32_t)v);
      continue;
    }
    size_t k = j;                                               /* a name: [^\t\n\f <&#;]{1,32} */
    while (k < n && k - j < 32 && !strchr("\t\n\f <&#;", s[k])) k++;
    int done = 0;
    for (size_t t = 0; t < sizeof NAMED / sizeof NAMED[0] && !done && k > j; t++) {
      size_t l = strlen(NAMED[t].name);
      if (l > k - j || memcmp(s + j, NAMED[t].name, l) != 0) continue;
      if (l == k - j && k < n && s[k] == ';') {                 /* &name; */
        w += put_utf8(o + w, NAMED[t].cp);
        i = k + 1;
        done = 1;
      } else if (NAMED[t].legacy) {                             /* &name without ';' (longest prefix) */
        w += put_utf8(o + w, NAMED[t].cp);
        i = j + l;
        done = 1;
      }
    }
    if (!done) o[w++] = s[i++];
  }
  return w;
}

static const char *const BLOCK_TAGS[] = {"div", "title", "milestone", "chapter", "lb", "l", "lg", "p", "q",
                                         "verse", "list", "item", "head"};

static int block_tag(const char *s, size_t n) {
  for (size_t t = 0; t < sizeof BLOCK_TAGS / sizeof BLOCK_TAGS[0]; t++)
    if (strlen(BLOCK_TAGS[t]) == n && memcmp(BLOCK_TAGS[t], s, n) == 0) return 1;
  return 0;
}

static const char *find(const char *s, size_t from, size_t n, const char *needle) {
  size_t l = strlen(needle);
  for (size_t i = from; i + l <= n; i++)
    if (s[i] == needle[0] && memcmp(s + i, needle, l) == 0) return s + i;
  return NULL;
}

size_t sr_imp_strip_line(const char *line, size_t n, char *out) {
  /* 0: decode ('replace') into out */
  size_t w = 0;
  for (size_t i = 0; i < n;) {
    size_t bad = 0, l = utf8_seq((const unsigned char *)line + i, n - i, &bad);
    if (l) { memcpy(out + w, line + i, l); w += l; i += l; }
    else { w += put_utf8(out + w, 0xFFFD); i += bad; }          /* 1..3 bytes -> 3: may grow */
  }
  char *s = out;
  n = w;
  /* 1: <note\b.*?</note> -> '' */
  w = 0;
  for (size_t i = 0, closed = 1; i < n;) {   /* closed = 0: no "</note>" is left */
    if (closed && s[i] == '<' && i + 5 <= n && memcmp(s + i, "<note", 5) == 0 &&
        (i + 5 == n || !wordc((unsigned char)s[i + 5]))) {
      const char *e = find(s, i + 5, n, "</note>");
      if (e) { i = (size_t)(e - s) + 7; continue; }
      closed = 0;
    }
    s[w++] = s[i++];
  }
  n = w;
  /* 2: block tags -> ' '; 3: other tags <[^>]+> -> '' (two passes, as the two regexes) */
  w = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] == '<') {
      size_t a = i + 1 + (i + 1 < n && s[i + 1] == '/'), b = a;
      while (b < n && wordc((unsigned char)s[b])) b++;
      const char *gt = b > a && block_tag(s + a, b - a) ? memchr(s + b, '>', n - b) : NULL;
      if (gt) { s[w++] = ' '; i = (size_t)(gt - s) + 1; continue; }
    }
    s[w++] = s[i++];
  }
  n = w;
  w = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] == '<' && i + 1 < n && s[i + 1] != '>') {
      const char *gt = memchr(s + i + 1, '>', n - i - 1);
      if (gt) { i = (size_t)(gt - s) + 1; continue; }
    }
    s[w++] = s[i++];
  }
  n = w;
  /* 4: html.unescape (in place: never longer) */
  n = html_unescape(s, n, s);
  /* 5: \s+ -> ' ', strip */
  w = 0;
  int pending = 0;
  for (size_t i = 0; i < n;) {
    size_t l = uspace((const unsigned char *)s + i, n - i);
    if (l) { pending = w > 0; i += l; continue; }
    if (pending) { s[w++] = ' '; pending = 0; }
    s[w++] = s[i++];
  }
  s[w] = '\0';
  return w;
}

int sr_imp_walk(const char *imp, size_t n, sr_imp_line_fn fn, void *ctx) {
  char *key = calloc(1, 1), *buf = NULL;
  size_t cap = 0;
  int rc = key ? 0 : -1;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t e = i;
    while (e < n && imp[e] != '\n' && imp[e] != '\r') e++;
    size_t next = e < n ? e + 1 + (imp[e] == '\r' && e + 1 < n && imp[e + 1] == '\n') : n;
    size_t l = e - i;
    if (l >= 3 && memcmp(imp + i, "$$$", 3) == 0) {
      char *k = malloc(l - 2);
      if (!k) { rc = -1; break; }
      memcpy(k, imp + i + 3, l - 3);
      k[l - 3] = '\0';
      free(key);
      key = k;
    } else {
      if (3 * l + 1 > cap) {
        cap = 3 * l + 1;
        free(buf);
        if (!(buf = malloc(cap))) { rc = -1; break; }
      }
      size_t m = sr_imp_strip_line(imp + i, l, buf);
      if (m) rc = fn(ctx, key, buf, m);
    }
    i = next;
  }
  free(key);
  free(buf);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
** .deb files */

const char *sr_deb_cache_dir(const char *data_dir, char *buf, size_t n) {
  const char *env = getenv("SPEEDRUN_DEBS");
  if (env && *env) snprintf(buf, n, "%s", env);
  else snprintf(buf, n, "%s/debian", data_dir);
  return buf;
}

/* runs argv in cwd (NULL: here) with stdout to out_path (NULL: log_path) and stderr to log_path
** (NULL: inherited); env "K=V" added when given. The exit status, 127 when it could not start. */
static int run(char *const argv[], const char *cwd, const char *out_path, const char *log_path,
               const char *env) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (env) putenv((char *)env);
    if (log_path) {  /* opened before the chdir: the paths may be relative to here */
      int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd < 0) _exit(126);
      dup2(fd, 2);
      if (!out_path) dup2(fd, 1);
      close(fd);
    }
    if (out_path) {
      int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) _exit(126);
      dup2(fd, 1);
      close(fd);
    }
    if (cwd && chdir(cwd) != 0) _exit(126);
    execvp(argv[0], argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int find_deb(const char *cache, const char *pkg, const char *version, char *deb, size_t dn) {
  char pat[4096];
  snprintf(pat, sizeof pat, "%s/%s_%s_*.deb", cache, pkg, version);
  glob_t g;
  int found = glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0;
  if (found) snprintf(deb, dn, "%s", g.gl_pathv[0]);
  globfree(&g);
  return found;
}

int sr_deb_unpack(const char *cache, const char *pkg, const char *version, char *xdir, size_t xn,
                  char *deb, size_t dn, char *err, size_t errlen) {
  char path[4096], log[4096], spec[512];
  if (sr_mkdir_p(cache, err, errlen) != 0) return -1;
  sr_path_join(log, sizeof log, cache, "apt-dpkg.log");
  if (!find_deb(cache, pkg, version, path, sizeof path)) {
    snprintf(spec, sizeof spec, "%s=%s", pkg, version);
    char *argv[] = {"apt-get", "download", "-q", spec, NULL};
    int rc = run(argv, cache, NULL, log, NULL);
    if (rc != 0 || !find_deb(cache, pkg, version, path, sizeof path)) {
      snprintf(err, errlen, "%s %s: not in %s and `apt-get download %s` %s (see %s); put the .deb "
               "there (or in $SPEEDRUN_DEBS) by hand on a machine without Debian's archive",
               pkg, version, cache, spec, rc == 127 ? "could not run" : "failed", log);
      return -1;
    }
  }
  if (deb) snprintf(deb, dn, "%s", path);
  snprintf(xdir, xn, "%s/x-%s.XXXXXX", cache, pkg);
  if (!mkdtemp(xdir)) {
    snprintf(err, errlen, "%s: cannot make a temporary folder: %s", xdir, strerror(errno));
    return -1;
  }
  char *argv[] = {"dpkg", "-x", path, xdir, NULL};
  int rc = run(argv, NULL, NULL, log, NULL);
  if (rc != 0) {
    sr_remove_tree(xdir);
    snprintf(err, errlen, "`dpkg -x %s` %s (see %s)", path, rc == 127 ? "could not run (no dpkg)" : "failed", log);
    return -1;
  }
  return 0;
}

char *sr_mod2imp(const char *sword_path, const char *module, const char *tmpdir, size_t *n, char *err,
                 size_t errlen) {
  char out[4096], log[4096], env[4200];
  snprintf(out, sizeof out, "%s/%s.imp", tmpdir, module);
  snprintf(log, sizeof log, "%s/mod2imp.log", tmpdir);
  snprintf(env, sizeof env, "SWORD_PATH=%s", sword_path);
  char *argv[] = {"mod2imp", (char *)module, NULL};
  int rc = run(argv, NULL, out, log, env);
  if (rc != 0) {
    if (rc == 127) snprintf(err, errlen, "mod2imp not found: install libsword-utils (apt-get install libsword-utils)");
    else snprintf(err, errlen, "`SWORD_PATH=%s mod2imp %s` failed with status %d", sword_path, module, rc);
    return NULL;
  }
  char *text = sr_read_file(out, n, err, errlen);
  if (text && *n < 1000) {
    snprintf(err, errlen, "`SWORD_PATH=%s mod2imp %s` gave only %zu bytes (module not found?)", sword_path,
             module, *n);
    free(text);
    return NULL;
  }
  return text;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *f) {
  return remove(path);
}

int sr_remove_tree(const char *path) {
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
