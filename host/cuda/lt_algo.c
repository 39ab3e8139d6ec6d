/*
** cuda/lt_algo.c: cuBLASLt's algorithm choice, remembered on disk (cuda/lt_algo.h).
**
** A new GEMM plan (kernels/matmul.cu, kernels/fp8.cu) asks cuBLASLt's heuristic for an algorithm,
** and every run of a recipe makes the same queries in its first step. Measured on an H200
** (2026-12-04, tasks/CALIBRATION.md): taking all 18 answers from this file saved no time (a proxy
** record's 18 plans 53-56 ms, against 58-62 ms asking): the query is not what a first plan costs.
** Kept as a cache that changes nothing but the time; a candidate for removal once the first GEMMs'
** real cost is found. cublasLtMatmulAlgo_t is a plain struct that cuBLASLt's documentation allows to be stored
** and restored for the same library version, so the heuristic's answer is appended to
** <kernel cache>/gemm-<fingerprint>.algos (the kernel cache of jit/: $SPEEDRUN_KERNEL_CACHE, ...;
** the fingerprint hashes the cuBLASLt version, the device's name and compute capability, the
** workspace size and the record layout) and a later run takes it after cublasLtMatmulAlgoCheck
** accepts it for the plan's descriptors within the workspace. The plan key (shape, strides, dtypes,
** pointer alignment, ...) holds everything the heuristic was asked under, so a stored answer is
** the answer the heuristic gave for that same question: what runs is unchanged, it is only found
** without asking. A record that is torn, corrupt (checksum) or refused by the check is ignored and
** the heuristic asked again. SPEEDRUN_GEMM_CACHE=0 (or off) turns the file off. The file is a
** cache: failing to read or write it changes nothing but the time. SPEEDRUN_GEMM_CACHE=trust (a
** measurement, not for use): a stored answer without the check, to see whether the check costs
** what the query did (the fingerprint still guards library, device and workspace).
*/
#ifdef SPEEDRUN_CUDA

#include <fcntl.h>          /* defines: open, O_WRONLY, O_APPEND, O_CREAT */
#include <stddef.h>         /* defines: offsetof */
#include <stdint.h>         /* defines: uint32_t, uint64_t */
#include <stdio.h>          /* defines: snprintf, fopen, fread */
#include <stdlib.h>         /* defines: getenv, realloc */
#include <string.h>         /* defines: memcmp, memcpy, memset, strcmp, strncmp, strlen */
#include <unistd.h>         /* defines: write, close */

#include <cuda_runtime.h>   /* defines: cudaGetDevice, cudaGetDeviceProperties */

#include "cuda/lt_algo.h"   /* defines: the API implemented here */
#include "cuda/backend.h"   /* defines: sr_cuda_blaslt, sr_cuda_workspace */
#include "jit/jit.h"        /* defines: sr_jit_cache_dir */
#include "util/fileio.h"    /* defines: sr_mkdir_p */
#include "util/hash.h"      /* defines: sr_fnv1a, SR_FNV_SEED */

#define REC_MAGIC 0x414c5253u   /* "SRLA" */
#define REC_KEY 128

/* one stored answer: fixed size, appended with one write(); sum covers every byte before it */
struct rec {
  uint32_t magic, key_len;
  char kind[8];
  unsigned char key[REC_KEY];
  cublasLtMatmulAlgo_t algo;
  uint64_t sum;
};

static struct {
  int loaded, off, trust;
  size_t ws;   /* the workspace a stored algorithm must fit */
  char path[1200];
  struct rec *recs;
  int n, cap;
  long stored, asked;
} S;

static uint64_t fnv1a(const void *p, size_t n) { return sr_fnv1a(SR_FNV_SEED, p, n); }

static int rec_ok(const struct rec *r) {
  return r->magic == REC_MAGIC && r->key_len <= REC_KEY && r->sum == fnv1a(r, offsetof(struct rec, sum));
}

static void remember(const struct rec *r) {
  if (S.n == S.cap) {
    int cap = S.cap ? 2 * S.cap : 64;
    struct rec *m = (struct rec *)realloc(S.recs, (size_t)cap * sizeof *m);
    if (!m) return;
    S.recs = m;
    S.cap = cap;
  }
  S.recs[S.n++] = *r;
}

/* the file of this library, device and workspace; its records into memory */
static void load(void) {
  S.loaded = 1;
  const char *e = getenv("SPEEDRUN_GEMM_CACHE");
  if (e && (!strcmp(e, "0") || !strcmp(e, "off"))) { S.off = 1; return; }
  S.trust = e && !strcmp(e, "trust");   /* a stored answer taken without cublasLtMatmulAlgoCheck */
  int dev = 0;
  struct cudaDeviceProp p;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
    cudaGetLastError();
    S.off = 1;
    return;
  }
  sr_cuda_workspace(&S.ws);
  char fp[512];
  snprintf(fp, sizeof fp, "cublasLt %zu|%s|sm %d.%d|ws %zu|rec %zu", cublasLtGetVersion(), p.name, p.major, p.minor, S.ws,
           sizeof(struct rec));
  snprintf(S.path, sizeof S.path, "%s/gemm-%016llx.algos", sr_jit_cache_dir(), (unsigned long long)fnv1a(fp, strlen(fp)));
  FILE *f = fopen(S.path, "rb");
  if (!f) return;
  struct rec r;
  while (fread(&r, sizeof r, 1, f) == 1)
    if (rec_ok(&r)) remember(&r);
  fclose(f);
}

/* the latest stored answer for (kind, key), or 0 */
static int find(const char *kind, const void *key, size_t len, cublasLtMatmulAlgo_t *algo) {
  for (int i = S.n - 1; i >= 0; i--) {
    const struct rec *r = &S.recs[i];
    if (r->key_len == len && !strncmp(r->kind, kind, sizeof r->kind) && !memcmp(r->key, key, len)) {
      *algo = r->algo;
      return 1;
    }
  }
  return 0;
}

/* appended with one O_APPEND write (concurrent runs interleave whole records) */
static void store(const char *kind, const void *key, size_t len, const cublasLtMatmulAlgo_t *algo) {
  struct rec r;
  memset(&r, 0, sizeof r);
  r.magic = REC_MAGIC;
  r.key_len = (uint32_t)len;
  size_t kl = strlen(kind);
  memcpy(r.kind, kind, kl < sizeof r.kind ? kl : sizeof r.kind);
  memcpy(r.key, key, len);
  r.algo = *algo;
  r.sum = fnv1a(&r, offsetof(struct rec, sum));
  remember(&r);
  char err[256];
  if (sr_mkdir_p(sr_jit_cache_dir(), err, sizeof err) != 0) return;
  int fd = open(S.path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, &r, sizeof r);
  (void)w;   /* a short write leaves a torn record, which rec_ok ignores */
  close(fd);
}

int sr_lt_algo_recall(const char *kind, const void *key, size_t key_len, cublasLtMatmulDesc_t desc,
                      cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                      cublasLtMatmulAlgo_t *algo) {
  if (!S.loaded) load();
  cublasLtMatmulAlgo_t a;
  if (S.off || key_len > REC_KEY || !find(kind, key, key_len, &a)) return 0;
  cublasLtMatmulHeuristicResult_t r;
  memset(&r, 0, sizeof r);
  if (!S.trust && (cublasLtMatmulAlgoCheck((cublasLtHandle_t)sr_cuda_blaslt(), desc, la, lb, lc, lc, &a, &r) !=
                       CUBLAS_STATUS_SUCCESS || r.workspaceSize > S.ws))
    return 0;
  *algo = a;
  return 1;
}

void sr_lt_algo_remember(const char *kind, const void *key, size_t key_len, const cublasLtMatmulAlgo_t *algo) {
  if (!S.loaded) load();
  if (!S.off && key_len <= REC_KEY) store(kind, key, key_len, algo);
}

cublasStatus_t sr_lt_algo(const char *kind, const void *key, size_t key_len, cublasLtMatmulDesc_t desc,
                          cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                          cublasLtMatmulPreference_t pref, cublasLtMatmulAlgo_t *algo) {
  if (sr_lt_algo_recall(kind, key, key_len, desc, la, lb, lc, algo)) {
    S.stored++;
    return CUBLAS_STATUS_SUCCESS;
  }
  cublasLtMatmulHeuristicResult_t res;
  int nres = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)sr_cuda_blaslt(), desc, la, lb, lc, lc, pref,
                                                     1, &res, &nres);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (nres == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  S.asked++;
  *algo = res.algo;
  sr_lt_algo_remember(kind, key, key_len, algo);
  return CUBLAS_STATUS_SUCCESS;
}

void sr_lt_algo_stats(long *stored, long *asked) {
  if (stored) *stored = S.stored;
  if (asked) *asked = S.asked;
}

#endif
