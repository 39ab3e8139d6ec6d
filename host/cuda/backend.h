/*
** cuda/backend.h: the CUDA device for the rest of the host (host/cuda/backend.c).
** The device, stream, cuBLASLt handle and workspace are created lazily on first use; nothing
** here touches the driver before that, so a binary without a GPU or libcuda starts fine and
** sr_cuda_probe() says why the GPU is unusable.
**
** Memory comes from a caching allocator: freed blocks are kept per size and reused, so a
** training step makes no cudaMalloc/cudaFree after warm-up. All work runs on one stream in
** issue order, so a block freed by the host can be reused by the next launch at once.
**
** CUDA graphs: sr_cuda_graph_begin() starts capturing the stream; allocations made while
** capturing come from a private pool owned by the graph (reused only inside that capture and by
** its replays), so replays never overwrite memory handed out to anything else.
**
** Host copies go through a ring of pinned staging slots: a host-to-device copy returns once its
** chunks are queued (it waits only for a slot's previous copy); device-to-host waits for the data.
*/
#ifndef SR_CUDA_BACKEND_H
#define SR_CUDA_BACKEND_H

#include <stddef.h>  /* defines: size_t */
#include <stdint.h>  /* defines: int64_t */

#ifdef __cplusplus
extern "C" {
#endif

/* registers the backend with the tensor core (sr_register_cuda_backend); touches no driver */
void sr_cuda_init(void);
/* NULL when a GPU is usable, else a sentence saying why not (no driver, no device, ...) */
const char *sr_cuda_probe(void);

/* the stream everything runs on (a cudaStream_t); creates the device context on first call */
void *sr_cuda_stream(void);
int sr_cuda_started(void);   /* 1 once the stream exists (the context is up); touches no driver */
/* the cuBLASLt handle (a cublasLtHandle_t) and the one matmul workspace */
void *sr_cuda_blaslt(void);
void *sr_cuda_workspace(size_t *nbytes);

/* caching allocator: NULL only when the device is out of memory even after emptying the cache */
void *sr_cuda_malloc(size_t nbytes);
void sr_cuda_free(void *p);
size_t sr_cuda_current_bytes(void);   /* bytes handed out now */
size_t sr_cuda_peak_bytes(void);      /* most bytes handed out at once since the last reset */
size_t sr_cuda_reserved_bytes(void);  /* bytes held from the driver (handed out + cached) */
void sr_cuda_reset_peak(void);
void sr_cuda_empty_cache(void);       /* returns cached free blocks to the driver */
/* the allocation log (cuda/pool.h): on for the step before a capture, so that the capture takes
** the cached blocks of the sizes that step held instead of allocating anew */
void sr_cuda_log_allocs(int on);
int64_t sr_cuda_driver_allocs(void);  /* cudaMalloc calls so far (tests: steady state adds none) */
/* one-time setup the engine does on first use, counted and timed (host wall clock) so the harness
** can say what a run's warm-up spends on it: the allocator's cudaMalloc calls (timed here), new
** cuBLASLt GEMM plans (the heuristic query; noted by kernels/matmul.cu and kernels/fp8.cu), the
** loading of generated modules (cuModuleLoadData; jit/launch.c), the building of captured
** graphs (end of capture + instantiation, timed here), the allocator's cudaFree calls (timed
** here; counted, not taken off: harness/steps.lua OFF_CLOCK) and the timing of a new GEMM plan's
** candidate algorithms (kernels/matmul.cu, SR_GEMM_TUNE) */
enum { SR_SETUP_DRIVER_ALLOC, SR_SETUP_GEMM_PLAN, SR_SETUP_MODULE_LOAD, SR_SETUP_GRAPH_BUILD, SR_SETUP_DRIVER_FREE,
       SR_SETUP_GEMM_TUNE, SR_SETUP_KINDS };
void sr_cuda_note_setup(int kind, double seconds);
/* the start of a setup step's timing: the stream drained first (not while a graph is captured:
** nothing runs then), so GPU work queued before it is not timed as setup (the harness takes setup
** time off the recipe's untimed work: red team round 12) */
double sr_cuda_setup_clock(void);
void sr_cuda_setup_stats(int kind, int64_t *count, double *seconds);

/* waits for the stream; reports a deferred kernel error (bad index) or a CUDA error: NULL if none */
const char *sr_cuda_sync(void);
/* thread-local message buffer for launchers (512 bytes) */
char *sr_cuda_errbuf(void);
/* device pointer of the deferred-error record (struct sr_dev_error in kernels/include/speedrun_device.cuh) */
void *sr_cuda_dev_error_ptr(void);
/* the threads a row of the in-place cross-entropy forward gets (kernels/softmax_xent.cu) and the
** dynamic shared memory it asks for (*smem), which the step compiler's loss kernels use too (the
** same reduction order, as many rows an SM); 0 when the device cannot be queried */
int sr_cuda_xent_threads(int64_t V, int elem_bytes, size_t *smem);

/* CUDA graphs of a whole step. begin/end return NULL or an error message; on failure the
** caller runs eagerly. A graph keeps its private memory pool until freed. */
typedef struct sr_cuda_graph sr_cuda_graph;
const char *sr_cuda_graph_begin(void);
const char *sr_cuda_graph_end(sr_cuda_graph **out);
const char *sr_cuda_graph_replay(sr_cuda_graph *g);
void sr_cuda_graph_free(sr_cuda_graph *g);  /* never replayed: its live tensors are zeroed */
int sr_cuda_capturing(void);          /* 1 between begin and end */
/* while capturing, a dispatch observer notes the ordinary (pool 0) blocks each launch uses: the
** state a replay reads and writes */
/* copies of the noted blocks (nbytes: their size), put back by restore; the harness checks a
** replay against an eager step from the same state with them. host: the copies in host memory
** (none of the device's: kept while eager work that may not fit runs beside the graph) */
const char *sr_cuda_graph_snapshot(sr_cuda_graph *g, int host, size_t *nbytes);
const char *sr_cuda_graph_restore(sr_cuda_graph *g);
void sr_cuda_graph_drop_snapshot(sr_cuda_graph *g);
/* lending (SR_GRAPH_LEND=0 turns it off): ordinary work the device has no room for borrows free blocks of the graphs that
** have replayed (their temporaries, rewritten by each replay before they are read); the blocks
** lent from g's pool still in use, while which g:replay refuses (the harness collects garbage,
** then goes on without the graph) */
int sr_cuda_graph_lent(const sr_cuda_graph *g);

#ifdef __cplusplus
}
#endif
#endif
