/*
** cuda/lt_algo.h: cuBLASLt's algorithm for a GEMM plan, remembered on disk across runs
** (host/cuda/lt_algo.c). A plan's heuristic query is most of what a new GEMM shape costs (18 plans:
** ~60 ms of a proxy run's first step on an H200, on the clock); its answer can be stored and
** restored for the same library version, so the next run checks the stored one instead.
*/
#ifndef SR_CUDA_LT_ALGO_H
#define SR_CUDA_LT_ALGO_H

#include <stddef.h>     /* defines: size_t */
#include <cublasLt.h>   /* defines: cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatmulAlgo_t */

#ifdef __cplusplus
extern "C" {
#endif

/* the algorithm of the GEMM described by desc and the A, B, C (= D) layouts under pref, for the
** plan key (kind, key bytes, zero-initialised structs: padding included): a stored record that
** cublasLtMatmulAlgoCheck accepts within the workspace, else the heuristic's first answer, stored
** for the next run. cuBLASLt's status on failure (*algo untouched). */
cublasStatus_t sr_lt_algo(const char *kind, const void *key, size_t key_len, cublasLtMatmulDesc_t desc,
                          cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                          cublasLtMatmulPreference_t pref, cublasLtMatmulAlgo_t *algo);

/* a stored answer for (kind, key) that cublasLtMatmulAlgoCheck accepts for these descriptors within
** the workspace, into *algo (1), or 0: the lookup half of sr_lt_algo, for a choice made otherwise
** (kernels/matmul.cu's timed one, kind "gemm-t") */
int sr_lt_algo_recall(const char *kind, const void *key, size_t key_len, cublasLtMatmulDesc_t desc,
                      cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                      cublasLtMatmulAlgo_t *algo);

/* algo stored as (kind, key)'s answer for the next run (nothing when the file is off) */
void sr_lt_algo_remember(const char *kind, const void *key, size_t key_len, const cublasLtMatmulAlgo_t *algo);

/* counts since start: algorithms taken from the file, asked of the heuristic (tests, the harness) */
void sr_lt_algo_stats(long *stored, long *asked);

#ifdef __cplusplus
}
#endif
#endif
