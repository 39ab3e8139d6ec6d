/*
** data/loader.c: the records' three loader semantics over shards, mapped or read on demand (see
** loader.h). Each loader keeps one cursor: the current shard and the position of its rank in it.
*/
#define _DEFAULT_SOURCE  /* explicit_bzero */
#include <glob.h>      /* defines: glob, globfree */
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: calloc, free */
#include <string.h>    /* defines: strdup, explicit_bzero */

#include "data/loader.h"    /* defines: sr_loader_config */
#include "data/shard.h"     /* defines: sr_shard_open */

struct sr_loader {
  sr_loader_config cfg;
  int nshards;
  sr_shard *shards;
  char **paths;
  int64_t local;        /* tokens in this rank's x */
  int64_t step;         /* tokens per step over all ranks */
  int64_t max_batches;  /* 0: unlimited */
  int64_t batches;      /* yielded since the last reset */
  int64_t start;        /* the stream's start: a token of the shards' concatenation (sr_loader_seek) */
  int ring;             /* since sr_loader_seek: the shards read as one ring from start */
  int shard;            /* cursor */
  int64_t pos;          /* BT/SEQ: this rank's offset; GLOBAL: the step's offset; ring: the step's
                           token of the concatenation */
  int ended;
  int last_shard;       /* the window last read starts at token last_off of shard last_shard */
  int64_t last_off;     /* (-1: none since the last reset) */
  uint16_t *buf;        /* unmapped shards: the tokens on their way, zeroed after each read */
  int64_t bufn;
  char err[512];        /* the last read error */
};

int sr_glob_sorted(const char *pattern, char ***files, int *nfiles, char *err, size_t errlen) {
  glob_t g;
  int rc = glob(pattern, 0, NULL, &g);     /* glob sorts its results */
  if (rc != 0 || g.gl_pathc == 0) {
    snprintf(err, errlen, "%s: no files match", pattern);
    if (rc == 0) globfree(&g);
    return -1;
  }
  *files = calloc(g.gl_pathc, sizeof **files);
  for (size_t i = 0; *files && i < g.gl_pathc; i++) (*files)[i] = strdup(g.gl_pathv[i]);
  *nfiles = (int)g.gl_pathc;
  globfree(&g);
  if (!*files) {
    snprintf(err, errlen, "%s: out of memory", pattern);
    return -1;
  }
  return 0;
}

void sr_free_files(char **files, int nfiles) {
  for (int i = 0; files && i < nfiles; i++) free(files[i]);
  free(files);
}

void sr_loader_free(sr_loader *ld) {
  if (!ld) return;
  for (int i = 0; i < ld->nshards; i++) sr_shard_close(&ld->shards[i]);
  sr_free_files(ld->paths, ld->nshards);
  free(ld->shards);
  free(ld->buf);
  free(ld);
}

void sr_loader_reset(sr_loader *ld) {
  const sr_loader_config *c = &ld->cfg;
  ld->batches = 0;
  ld->ended = 0;
  ld->shard = 0;
  ld->last_off = -1;
  /* a ring (since sr_loader_seek) starts at its start: every window moves with it, nothing falls
     back to a shard's start; the records' stream at the first shard's start (this rank's offset) */
  ld->pos = ld->ring ? ld->start : c->mode == SR_LOAD_GLOBAL ? 0 : c->rank * ld->local;
}

int sr_loader_seek(sr_loader *ld, int64_t start) {
  if (start < 0 || start >= sr_loader_total_tokens(ld)) return -1;
  ld->start = start;
  ld->ring = 1;
  sr_loader_reset(ld);
  return 0;
}

sr_loader *sr_loader_open(char *const *files, int nfiles, const sr_loader_config *cfg,
                          char *err, size_t errlen) {
  const sr_loader_config *c = cfg;
  if (nfiles < 1) {
    snprintf(err, errlen, "loader: no shard files");
    return NULL;
  }
  if (c->world < 1 || c->rank < 0 || c->rank >= c->world) {
    snprintf(err, errlen, "loader: rank %d is not in [0, world = %d)", c->rank, c->world);
    return NULL;
  }
  if (c->T < 1 && c->mode != SR_LOAD_GLOBAL) {
    snprintf(err, errlen, "loader: T must be positive (got %lld)", (long long)c->T);
    return NULL;
  }
  if (c->mode == SR_LOAD_BT && c->B < 1) {
    snprintf(err, errlen, "loader: B must be positive (got %lld)", (long long)c->B);
    return NULL;
  }
  if (c->mode == SR_LOAD_GLOBAL && (c->batch < c->world || c->batch % c->world != 0)) {
    snprintf(err, errlen, "loader: the global batch (%lld tokens) must be a positive multiple of "
             "world = %d", (long long)c->batch, c->world);
    return NULL;
  }
  sr_loader *ld = calloc(1, sizeof *ld);
  if (!ld) goto oom;
  ld->cfg = *c;
  ld->local = c->mode == SR_LOAD_BT ? c->B * c->T : c->mode == SR_LOAD_SEQ ? c->T : c->batch / c->world;
  ld->step = c->mode == SR_LOAD_GLOBAL ? c->batch : ld->local * c->world;
  ld->max_batches = c->max_tokens > 0 ? c->max_tokens / ld->step : 0;
  if (c->max_tokens > 0 && ld->max_batches == 0) {
    snprintf(err, errlen, "loader: max_tokens = %lld is less than one step (%lld tokens)",
             (long long)c->max_tokens, (long long)ld->step);
    sr_loader_free(ld);
    return NULL;
  }
  ld->shards = calloc((size_t)nfiles, sizeof *ld->shards);
  ld->paths = calloc((size_t)nfiles, sizeof *ld->paths);
  if (!ld->shards || !ld->paths) goto oom;
  if (c->unmapped) {
    ld->bufn = ld->local + 1 < 65536 ? ld->local + 1 : 65536;
    if (!(ld->buf = malloc((size_t)ld->bufn * sizeof *ld->buf))) goto oom;
  }
  for (int i = 0; i < nfiles; i++) {
    if (!(ld->paths[i] = strdup(files[i]))) goto oom;
    ld->nshards = i + 1;
    int rc = c->unmapped ? sr_shard_open_unmapped(&ld->shards[i], files[i], err, errlen)
                         : sr_shard_open(&ld->shards[i], files[i], err, errlen);
    if (rc != 0) {
      sr_loader_free(ld);
      return NULL;
    }
    /* the records assert this of every shard: one step must fit */
    if (ld->shards[i].ntok < ld->step + 1) {
      snprintf(err, errlen, "%s: %lld tokens, fewer than one step needs (%lld + 1)", files[i],
               (long long)ld->shards[i].ntok, (long long)ld->step);
      sr_loader_free(ld);
      return NULL;
    }
  }
  if (c->max_tokens > sr_loader_total_tokens(ld)) {
    snprintf(err, errlen, "%s...: the shards hold %lld tokens, fewer than the %lld asked for", files[0],
             (long long)sr_loader_total_tokens(ld), (long long)c->max_tokens);
    sr_loader_free(ld);
    return NULL;
  }
  sr_loader_reset(ld);
  return ld;
oom:
  snprintf(err, errlen, "loader: out of memory");
  sr_loader_free(ld);
  return NULL;
}

int64_t sr_loader_rank_tokens(const sr_loader *ld) { return ld->local; }
int64_t sr_loader_step_tokens(const sr_loader *ld) { return ld->step; }

int64_t sr_loader_total_tokens(const sr_loader *ld) {
  int64_t n = 0;
  for (int i = 0; i < ld->nshards; i++) n += ld->shards[i].ntok;
  return n;
}

/* the shard holding token g of the concatenation (0 <= g < total), and g's offset in it */
static int ring_locate(const sr_loader *ld, int64_t g, int64_t *off) {
  int s = 0;
  while (g >= ld->shards[s].ntok) g -= ld->shards[s++].ntok;
  *off = g;
  return s;
}

/* this rank's first token of the next window in a ring (a token of the concatenation) */
static int64_t ring_at(const sr_loader *ld) {
  return (ld->pos + ld->cfg.rank * ld->local) % sr_loader_total_tokens(ld);
}

void sr_loader_position(const sr_loader *ld, int *shard, int64_t *pos) {
  if (ld->ring) {
    *shard = ring_locate(ld, ring_at(ld), pos);
    return;
  }
  *shard = ld->shard;
  *pos = ld->cfg.mode == SR_LOAD_GLOBAL ? ld->pos + ld->cfg.rank * ld->local : ld->pos;
}

const char *sr_loader_shard_path(const sr_loader *ld, int shard) {
  return shard >= 0 && shard < ld->nshards ? ld->paths[shard] : NULL;
}

const char *sr_loader_error(const sr_loader *ld) { return ld->err; }

/* n tokens from token off of shard s on, widened into out: on into the next shard at a shard's
   end and from the last to the first (only a ring's windows cross one); unmapped shards through
   ld->buf, which holds none of them afterwards. 0, or -1 with ld->err */
static int read_run(sr_loader *ld, int s, int64_t off, int64_t n, int32_t *out) {
  int rc = 0;
  while (n > 0 && rc == 0) {
    if (off == ld->shards[s].ntok) {
      s = (s + 1) % ld->nshards;
      off = 0;
    }
    const sr_shard *sh = &ld->shards[s];
    int64_t k = n < sh->ntok - off ? n : sh->ntok - off;
    if (sh->tokens) {
      for (int64_t i = 0; i < k; i++) out[i] = sh->tokens[off + i];
    } else {
      for (int64_t i = 0; i < k && rc == 0; i += ld->bufn) {
        int64_t m = k - i < ld->bufn ? k - i : ld->bufn;
        rc = sr_shard_read(sh, off + i, m, ld->buf, ld->err, sizeof ld->err);
        for (int64_t j = 0; j < m && rc == 0; j++) out[i + j] = ld->buf[j];
      }
    }
    out += k, n -= k, off += k;
  }
  if (ld->buf) explicit_bzero(ld->buf, (size_t)ld->bufn * sizeof *ld->buf);
  if (rc != 0) {
    size_t len = strlen(ld->err);
    snprintf(ld->err + len, sizeof ld->err - len, " (%s)", ld->paths[s]);
  }
  return rc;
}

/* this rank's window at token off of shard s: x, and y (the same shifted by one) unless NULL */
static int read_window(sr_loader *ld, int s, int64_t off, int32_t *x, int32_t *y) {
  ld->last_shard = s;
  ld->last_off = off;
  if (read_run(ld, s, off, ld->local, x) != 0) return -1;
  return y ? read_run(ld, s, off + 1, ld->local, y) : 0;
}

int sr_loader_targets(sr_loader *ld, int32_t *y) {
  if (ld->last_off < 0) {
    snprintf(ld->err, sizeof ld->err, "no window has been read since the loader's start or reset");
    return -1;
  }
  return read_run(ld, ld->last_shard, ld->last_off + 1, ld->local, y);
}

int sr_loader_next(sr_loader *ld, int32_t *x, int32_t *y) {
  if (ld->ended || (ld->max_batches && ld->batches >= ld->max_batches)) return 0;
  const sr_loader_config *c = &ld->cfg;
  int s = ld->shard;
  int64_t off = ld->pos;
  if (ld->ring) {
    s = ring_locate(ld, ring_at(ld), &off);
    ld->pos = (ld->pos + ld->step) % sr_loader_total_tokens(ld);
  } else if (c->mode == SR_LOAD_GLOBAL) {
    /* leave a shard before reading when the step would reach its end; never cycle */
    while (ld->pos + ld->step + 1 >= ld->shards[ld->shard].ntok) {
      if (ld->shard + 1 >= ld->nshards) {
        ld->ended = 1;
        return 0;
      }
      ld->shard++;
      ld->pos = 0;
    }
    s = ld->shard;
    off = ld->pos + c->rank * ld->local;
    ld->pos += ld->step;
  } else {
    ld->pos += ld->step;
    int64_t len = ld->shards[ld->shard].ntok;
    int next = c->mode == SR_LOAD_BT ? ld->pos + ld->step + 1 > len : ld->pos + ld->step >= len;
    if (next) {
      ld->shard = (ld->shard + 1) % ld->nshards;
      ld->pos = c->rank * ld->local;
    }
  }
  ld->batches++;
  return read_window(ld, s, off, x, y) == 0 ? 1 : -1;
}
