/*
** data/corpus_debian.h: the Debian-packaged texts of the `large` corpus (docs/data.md), read without R or
** Python:
**   - R lazy-load databases (r-cran-janeaustenr's data/Rdata.rdb): a run of objects, each a
**     4-byte big-endian length and a zlib stream of R's XDR serialisation; the character vectors
**     (STRSXP) among them are the books, one string per line;
**   - SWORD modules dumped by `mod2imp` (libsword-utils) as `$$$key` lines followed by OSIS
**     markup, stripped to plain text line by line exactly as the corpus's reference strip_imp.py does (docs/data.md);
**   - the .deb files themselves: found in a cache folder or fetched with `apt-get download`,
**     unpacked with `dpkg -x` into a temporary folder (no root, nothing installed).
*/
#ifndef SR_CORPUS_DEBIAN_H
#define SR_CORPUS_DEBIAN_H

#include <stddef.h>   /* defines: size_t */

/* one R character vector: n strings (NA reads as ""), each NUL-terminated, with its length */
typedef struct sr_strvec {
  int n;
  char **s;
  size_t *len;
} sr_strvec;

/* the character vectors of an R lazy-load database (the bytes of a .rdb file), in file order;
** objects of other types are skipped. 0 with *vecs / *nvecs set (free with sr_strvecs_free), or
** -1 with a message */
int sr_rdb_strings(const unsigned char *rdb, size_t n, sr_strvec **vecs, int *nvecs, char *err,
                   size_t errlen);
void sr_strvecs_free(sr_strvec *vecs, int nvecs);

/* one line of mod2imp output (no line break) stripped to plain text into out (room for 3n + 1
** bytes: each invalid UTF-8 byte may become 3): invalid UTF-8 becomes U+FFFD, <note>..</note>
** goes, block tags (div, title, milestone, chapter, lb, l, lg, p, q, verse, list, item, head)
** become a space, other tags go, HTML character references are decoded, runs of Unicode white
** space become one space, and the ends are trimmed. Returns the length (0: the line is dropped). */
size_t sr_imp_strip_line(const char *line, size_t n, char *out);

/* walks mod2imp output: lines are split at \n, \r\n and \r; `$$$KEY` lines set the key; every
** other line is stripped and, when not empty, passed to fn with the current key ("" before the
** first). A non-zero return from fn stops the walk and is returned; -1 when out of memory. */
typedef int (*sr_imp_line_fn)(void *ctx, const char *key, const char *text, size_t len);
int sr_imp_walk(const char *imp, size_t n, sr_imp_line_fn fn, void *ctx);

/* the cache for .deb files: $SPEEDRUN_DEBS, else DATA/debian; written into buf */
const char *sr_deb_cache_dir(const char *data_dir, char *buf, size_t n);

/* finds PKG_VERSION_*.deb in cache (fetching it with `apt-get download PKG=VERSION` when absent)
** and unpacks it with `dpkg -x` into a new temporary folder under cache, written into xdir; the
** caller removes it with sr_remove_tree. deb (may be NULL) receives the .deb's path. 0 or -1 with
** a message */
int sr_deb_unpack(const char *cache, const char *pkg, const char *version, char *xdir, size_t xn,
                  char *deb, size_t dn, char *err, size_t errlen);

/* runs `SWORD_PATH=SWORD mod2imp MODULE` and returns its output (malloc'd, *n bytes), or NULL
** with a message (naming libsword-utils when mod2imp is missing) */
char *sr_mod2imp(const char *sword_path, const char *module, const char *tmpdir, size_t *n, char *err,
                 size_t errlen);

/* rm -rf path (no symlinks followed); 0 or -1 */
int sr_remove_tree(const char *path);

#endif
