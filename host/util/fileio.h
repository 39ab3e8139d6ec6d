/*
** util/fileio.h: small file helpers shared by the data code (tokenizer, shards, corpora, fetch):
** whole-file reads, atomic writes (temporary file + rename), mkdir -p, path joins.
** Failures return -1 (or NULL) with a message naming the path in err.
*/
#ifndef SR_DATAIO_H
#define SR_DATAIO_H

#include <stddef.h>  /* defines: size_t */

/* the whole file, NUL-terminated (the NUL is not counted in *len); free() it */
char *sr_read_file(const char *path, size_t *len, char *err, size_t errlen);
/* writes parts[0..nparts) to path.tmp.PID, fsyncs, renames onto path */
int sr_write_file_atomic(const char *path, const void *const *parts, const size_t *lens, int nparts,
                         char *err, size_t errlen);
int sr_mkdir_p(const char *path, char *err, size_t errlen);
int sr_file_exists(const char *path);
long long sr_file_size(const char *path);   /* -1 when it cannot be stat'ed */
/* a/b into buf; returns buf */
const char *sr_path_join(char *buf, size_t n, const char *a, const char *b);

/* the checkout (or install prefix) holding lua/, tasks/ and hints/ (util/fileio.c) */
const char *sr_source_dir(void);

#endif
