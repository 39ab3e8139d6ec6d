/*
** cuda/backend.c: the CUDA device behind sr_device_backend (core/tensor.h) and cuda/backend.h.
**
** - Lazy start: nothing touches the driver until a tensor or kernel needs the GPU; the probe
**   turns "no libcuda", "no device" and friends into a sentence, so CPU work is unaffected.
** - One non-blocking stream; every kernel, copy and cuBLASLt call is issued on it in order.
** - A caching allocator (its bookkeeping in cuda/pool.c): blocks are kept on free lists after
**   sr_cuda_free and handed out again for requests of nearly the same size (at most 1/8 larger),
**   so steady-state training steps make no cudaMalloc/cudaFree; requests up to 1 MiB are carved
**   from 2-MiB segments per size class (a step's thousands of small tensors cost a few
**   cudaMalloc calls, where each cost one). Pool 0 is the ordinary pool; each CUDA graph capture gets a
**   private pool whose blocks are never handed out outside it (its replays write them). A capture
**   also notes the ordinary blocks its launches use (the state a replay reads and writes), so the
**   harness can snapshot and restore them to check a replay against an eager step.
** - Host <-> device copies go through a ring of pinned staging slots. Host-to-device: each
**   chunk is copied into the next slot and sent with cudaMemcpyAsync; an event recorded after it
**   is waited on only before that slot is reused, so the host returns while the GPU still works
**   (batch loading overlaps compute). Device-to-host: chunks are fetched through the slots and
**   the call returns once the last one has landed (it must: the caller reads the data).
** - Deferred kernel errors (bad embedding index, bad target) land in a mapped host record and
**   are reported at the next synchronize or device-to-host copy.
** Not thread-safe: the host drives the GPU from one thread.
*/
#ifdef SPEEDRUN_CUDA

#include <stdio.h>          /* defines: snprintf */
#include <stdlib.h>         /* defines: getenv, atoi, calloc, realloc, free */
#include <string.h>         /* defines: memcpy, memset, strcmp */

#include <cuda_runtime.h>   /* defines: cudaMalloc, cudaStream_t, cudaGraph_t */
#include <cublasLt.h>       /* defines: cublasLtHandle_t, cublasLtCreate */

#include "cuda/backend.h"   /* defines: the API implemented here */
#include "cuda/pool.h"      /* defines: sr_pool_alloc, sr_pool_free, sr_pool_find, sr_pool_at */
#include "core/registry.h"  /* defines: sr_kcall, sr_observer, sr_cuda_copy, sr_cuda_fill */
#include "core/tensor.h"    /* defines: sr_device_backend, sr_fail, sr_register_cuda_backend */
#include "util/clock.h"     /* defines: sr_monotonic_s */

#define SR_WORKSPACE_BYTES ((size_t)32 << 20)   /* cuBLASLt workspace (Hopper wants >= 32 MiB) */
#define SR_SLOTS 4                              /* pinned host staging slots ... */
#define SR_SLOT_BYTES ((size_t)4 << 20)         /* ... of 4 MiB each */

static _Thread_local char errbuf[512];
char *sr_cuda_errbuf(void) { return errbuf; }

/* ------------------------------------------------------------------------------------------
** device state */

static int state;            /* 0: not tried, 1: ready, -1: unusable (why[]) */
static char why[320];
static int device;
static cudaStream_t stream;
static cublasLtHandle_t blaslt;
static void *workspace;
static struct slot {
  void *p;                   /* pinned, SR_SLOT_BYTES */
  cudaEvent_t done;          /* recorded after the last copy through p */
} ring[SR_SLOTS];
static int ring_next;
static void *dev_error_host; /* mapped pinned record (struct sr_dev_error) */
static void *dev_error_dev;

static const char *start(void) {
  if (state == 1) return NULL;
  if (state == -1) return why;
  state = -1;
  if (getenv("SPEEDRUN_NO_CUDA")) {
    snprintf(why, sizeof why, "disabled by SPEEDRUN_NO_CUDA");
    return why;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice || e == cudaErrorInitializationError ||
      e == cudaErrorCompatNotSupportedOnDevice || e == cudaErrorSystemDriverMismatch) {
    snprintf(why, sizeof why, "%s (%s): no NVIDIA driver (libcuda) or no GPU on this machine",
             cudaGetErrorString(e), cudaGetErrorName(e));
    return why;
  }
  if (e != cudaSuccess) {
    snprintf(why, sizeof why, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return why;
  }
  if (n == 0) {
    snprintf(why, sizeof why, "the CUDA driver sees no GPU");
    return why;
  }
  const char *dv = getenv("SPEEDRUN_DEVICE");
  if (!dv) dv = getenv("LOCAL_RANK");
  device = dv ? atoi(dv) % n : 0;
#define TRY(call, what)                                                                          \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      snprintf(why, sizeof why, "%s failed: %s (%s)", what, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
      return why;                                                                                \
    }                                                                                            \
  } while (0)
  TRY(cudaSetDevice(device), "cudaSetDevice");
  TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cublasStatus_t s = cublasLtCreate(&blaslt);
  if (s != CUBLAS_STATUS_SUCCESS) {
    snprintf(why, sizeof why, "cublasLtCreate failed: %s", cublasLtGetStatusString(s));
    return why;
  }
  TRY(cudaMalloc(&workspace, SR_WORKSPACE_BYTES), "cudaMalloc (cuBLASLt workspace)");
  for (int k = 0; k < SR_SLOTS; k++) {
    TRY(cudaMallocHost(&ring[k].p, SR_SLOT_BYTES), "cudaMallocHost (staging)");
    TRY(cudaEventCreateWithFlags(&ring[k].done, cudaEventDisableTiming), "cudaEventCreate (staging)");
  }
  TRY(cudaHostAlloc(&dev_error_host, 64, cudaHostAllocMapped), "cudaHostAlloc (error record)");
  memset(dev_error_host, 0, 64);
  TRY(cudaHostGetDevicePointer(&dev_error_dev, dev_error_host, 0), "cudaHostGetDevicePointer");
#undef TRY
  state = 1;
  return NULL;
}

const char *sr_cuda_probe(void) { return start(); }

static void need(void) {
  const char *w = start();
  if (w) sr_fail("cuda: no usable GPU: %s", w);
}

void *sr_cuda_stream(void) { need(); return (void *)stream; }
int sr_cuda_started(void) { return stream != NULL; }
void *sr_cuda_blaslt(void) { need(); return (void *)blaslt; }
void *sr_cuda_workspace(size_t *nbytes) { need(); if (nbytes) *nbytes = SR_WORKSPACE_BYTES; return workspace; }
void *sr_cuda_dev_error_ptr(void) { return dev_error_dev; }

/* ------------------------------------------------------------------------------------------
** caching allocator */

static size_t cur_bytes, peak_bytes;
static int cur_pool, next_pool = 1;
static int capturing;

/* SPEEDRUN_CUDA_MEM_LIMIT=<bytes>: a cap on memory held from the driver (the harness's GPU
** memory limit); 0 = none */
static size_t mem_limit(void) {
  static int read;
  static size_t limit;
  if (!read) {
    const char *e = getenv("SPEEDRUN_CUDA_MEM_LIMIT");
    limit = e && *e ? (size_t)strtoull(e, NULL, 10) : 0;
    read = 1;
  }
  return limit;
}

/* the pool's driver: cudaMalloc under the cap and cudaFree, each timed from an idle device (a
   free: the cached blocks given back before a capture, on running out of memory, or by
   empty_cache; no recipe code runs in either; harness/steps.lua OFF_CLOCK says which come off) */
static void *driver_alloc(size_t n, void *ctx) {
  (void)ctx;
  size_t cap = mem_limit();
  if (cap && sr_pool_reserved() + n > cap) return NULL;
  void *p = NULL;
  double t0 = sr_cuda_setup_clock();
  cudaError_t e = cudaMalloc(&p, n);
  sr_cuda_note_setup(SR_SETUP_DRIVER_ALLOC, sr_monotonic_s() - t0);
  if (e != cudaSuccess) {
    cudaGetLastError();  /* clear the (non-sticky) out-of-memory error */
    return NULL;
  }
  return p;
}
static void driver_release(void *p, void *ctx) {
  (void)ctx;
  double t0 = sr_cuda_setup_clock();
  cudaFree(p);
  sr_cuda_note_setup(SR_SETUP_DRIVER_FREE, sr_monotonic_s() - t0);
}

/* Lending (on; SR_GRAPH_LEND=0 off): work beside a live graph that the device has
** no room for borrows the graph's free blocks (cuda/pool.h, Lending): the pools of the graphs that
** have replayed at least once (one freed before its first replay zeroes its live blocks,
** abandon_pool: no lent block may be among them), newest last. A replay refuses while a block lent
** from its pool is in use (sr_cuda_graph_replay). */
enum { SR_LEND_MAX = 16 };
static int lend_pools[SR_LEND_MAX], nlend;

static int lend_on(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("SR_GRAPH_LEND");
    v = !(e && !strcmp(e, "0"));
  }
  return v;
}

static void lend_pool(int pool, int on) {
  for (int i = 0; i < nlend; i++)
    if (lend_pools[i] == pool) {
      if (!on) lend_pools[i] = lend_pools[--nlend];
      return;
    }
  if (on && nlend < SR_LEND_MAX) lend_pools[nlend++] = pool;
}

/* a block of a live graph's pool for ordinary work the device refused, or NULL */
static void *malloc_lent(size_t nbytes, size_t *size) {
  void *p = NULL;
  for (int i = nlend - 1; i >= 0 && !p && lend_on(); i--) p = sr_pool_alloc_lent(nbytes, lend_pools[i], size);
  return p;
}

void *sr_cuda_malloc(size_t nbytes) {
  if (start()) return NULL;
  static int driver_set;
  if (!driver_set) {  /* SPEEDRUN_CUDA_SEGMENTS=0: no carving, a cudaMalloc per block (to measure against) */
    sr_pool_set_driver(&(sr_pool_driver){driver_alloc, driver_release, NULL});
    const char *e = getenv("SPEEDRUN_CUDA_SEGMENTS");
    sr_pool_set_carving(!(e && !strcmp(e, "0")));
    driver_set = 1;
  }
  size_t size;
  void *p = sr_pool_alloc(nbytes, cur_pool, &size);
  if (!p && !capturing) {  /* out of memory or over the cap: give cached blocks back, then once more */
    cudaStreamSynchronize(stream);
    sr_pool_release_free(1, 0);
    p = sr_pool_alloc(nbytes, cur_pool, &size);
    if (!p && cur_pool == 0) p = malloc_lent(nbytes, &size);
  }
  if (!p) return NULL;
  cur_bytes += size;
  if (cur_bytes > peak_bytes) peak_bytes = cur_bytes;
  return p;
}

void sr_cuda_free(void *p) {
  int i = sr_pool_free(p);  /* -1: not ours, or freed twice: ignored */
  if (i >= 0) cur_bytes -= sr_pool_at(i)->size;
}

size_t sr_cuda_current_bytes(void) { return cur_bytes; }
size_t sr_cuda_peak_bytes(void) { return peak_bytes; }
size_t sr_cuda_reserved_bytes(void) { return sr_pool_reserved(); }
void sr_cuda_reset_peak(void) { peak_bytes = cur_bytes; }
int64_t sr_cuda_driver_allocs(void) { return sr_pool_driver_allocs(); }

static int64_t setup_count[SR_SETUP_KINDS];
static double setup_seconds[SR_SETUP_KINDS];

double sr_cuda_setup_clock(void) {
  if (state == 1 && !capturing) cudaStreamSynchronize(stream);  /* an error stays for the next check */
  return sr_monotonic_s();
}

void sr_cuda_note_setup(int kind, double seconds) {
  if (kind < 0 || kind >= SR_SETUP_KINDS) return;
  setup_count[kind]++;
  setup_seconds[kind] += seconds;
}

void sr_cuda_setup_stats(int kind, int64_t *count, double *seconds) {
  int ok = kind >= 0 && kind < SR_SETUP_KINDS;
  if (count) *count = ok ? setup_count[kind] : 0;
  if (seconds) *seconds = ok ? setup_seconds[kind] : 0;
}
void sr_cuda_log_allocs(int on) { sr_pool_log(on != 0); }

void sr_cuda_empty_cache(void) {
  if (state != 1 || capturing) return;
  cudaStreamSynchronize(stream);
  sr_pool_release_free(1, 0);
}

/* ------------------------------------------------------------------------------------------
** synchronisation and deferred errors */

static const char *deferred(void) {
  if (!dev_error_host) return NULL;
  volatile int *code = (volatile int *)dev_error_host;
  if (*code == 0) return NULL;
  /* layout of struct sr_dev_error: int code; (pad) int64 row, value, limit */
  int64_t *r = (int64_t *)((char *)dev_error_host + 8);
  if (*code == 1)
    snprintf(errbuf, sizeof errbuf, "embedding: index %lld at position %lld is out of range [0,%lld)",
             (long long)r[1], (long long)r[0], (long long)r[2]);
  else
    snprintf(errbuf, sizeof errbuf, "cross_entropy: target %lld at row %lld is out of range [0,%lld)",
             (long long)r[1], (long long)r[0], (long long)r[2]);
  *code = 0;
  return errbuf;
}

const char *sr_cuda_sync(void) {
  const char *w = start();
  if (w) return w;
  cudaError_t e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) {
    snprintf(errbuf, sizeof errbuf, "cudaStreamSynchronize: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return errbuf;
  }
  return deferred();
}

/* ------------------------------------------------------------------------------------------
** the sr_device_backend table */

static const char *be_available(void) { return start(); }

static void *be_alloc(size_t n) {
  need();
  void *p = sr_cuda_malloc(n);
  if (!p)
    sr_fail("cuda: out of memory allocating %zu bytes (%zu in use, %zu held from the driver%s)", n, cur_bytes,
            sr_pool_reserved(), mem_limit() ? ", SPEEDRUN_CUDA_MEM_LIMIT reached" : "");
  return p;
}

static void be_free(void *p) { sr_cuda_free(p); }

static void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) sr_fail("cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* the next staging slot, once the copy that last used it has finished */
static struct slot *take_slot(const char *what) {
  struct slot *sl = &ring[ring_next];
  ring_next = (ring_next + 1) % SR_SLOTS;
  check(cudaEventSynchronize(sl->done), what);
  return sl;
}

static void be_copy(void *dst, sr_device dd, const void *src, sr_device sd, size_t n) {
  if (n == 0) return;
  if (dd == SR_CPU && sd == SR_CPU) {
    memcpy(dst, src, n);
    return;
  }
  need();
  if (capturing && (dd == SR_CPU || sd == SR_CPU)) sr_fail("cuda: host<->device copy inside a CUDA graph capture");
  if (dd == SR_CUDA && sd == SR_CUDA) {
    check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream), "device-to-device copy");
    return;
  }
  if (sd == SR_CPU) {  /* host -> device: no wait beyond a slot's reuse */
    for (size_t off = 0; off < n; off += SR_SLOT_BYTES) {
      size_t k = n - off < SR_SLOT_BYTES ? n - off : SR_SLOT_BYTES;
      struct slot *sl = take_slot("host-to-device copy");
      memcpy(sl->p, (const char *)src + off, k);
      check(cudaMemcpyAsync((char *)dst + off, sl->p, k, cudaMemcpyHostToDevice, stream), "host-to-device copy");
      check(cudaEventRecord(sl->done, stream), "host-to-device copy");
    }
    return;
  }
  /* device -> host: up to SR_SLOTS chunks in flight; each is unpacked once its event fired */
  struct slot *pend[SR_SLOTS];
  size_t pend_off[SR_SLOTS], pend_k[SR_SLOTS];
  int np = 0, first = 0;
  for (size_t off = 0; off < n || np > 0;) {
    if (off < n && np < SR_SLOTS) {
      size_t k = n - off < SR_SLOT_BYTES ? n - off : SR_SLOT_BYTES;
      struct slot *sl = take_slot("device-to-host copy");
      check(cudaMemcpyAsync(sl->p, (const char *)src + off, k, cudaMemcpyDeviceToHost, stream), "device-to-host copy");
      check(cudaEventRecord(sl->done, stream), "device-to-host copy");
      int at = (first + np) % SR_SLOTS;
      pend[at] = sl, pend_off[at] = off, pend_k[at] = k;
      np++;
      off += k;
      continue;
    }
    check(cudaEventSynchronize(pend[first]->done), "device-to-host copy");
    memcpy((char *)dst + pend_off[first], pend[first]->p, pend_k[first]);
    first = (first + 1) % SR_SLOTS;
    np--;
  }
  const char *w = deferred();
  if (w) sr_fail("%s", w);
}

static void be_copy_strided(sr_tensor *dst, const sr_tensor *src) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.t[0] = dst;
  c.t[1] = (sr_tensor *)src;
  c.nt = 2;
  const char *e = sr_cuda_copy(&c);
  if (e) sr_fail("copy: %s", e);
}

static void be_fill(sr_tensor *x, double v) {
  sr_kcall c;
  memset(&c, 0, sizeof c);
  c.t[0] = x;
  c.nt = 1;
  c.f[0] = v;
  const char *e = sr_cuda_fill(&c);
  if (e) sr_fail("fill: %s", e);
}

static void be_synchronize(void) {
  const char *e = sr_cuda_sync();
  if (e) sr_fail("cuda: %s", e);
}

static const sr_device_backend backend = {
  be_available, be_alloc, be_free, be_copy, be_copy_strided, be_fill, be_synchronize,
};

void sr_cuda_init(void) { sr_register_cuda_backend(&backend); }

/* ------------------------------------------------------------------------------------------
** CUDA graphs */

struct sr_cuda_graph {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  int pool;
  int64_t replays;
  void **used;        /* ordinary blocks the captured launches use (nused) */
  size_t *used_size;
  void **saved;       /* their snapshot, or NULL */
  int saved_host;     /* 1: the snapshot is in host memory (malloc), 0: on the device */
  int nused;
};

static void **noted;  /* the capture under way: ordinary blocks its launches use */
static size_t *noted_size;
static int nnoted, capnoted;

int sr_cuda_capturing(void) { return capturing; }

/* the dispatch observer while capturing: notes the ordinary (pool 0) blocks each launch uses */
static void graph_note(sr_kernel_id id, const sr_kcall *c, int dev) {
  if (!capturing || dev != SR_CUDA) return;
  for (int j = 0; j < c->nt + c->nlist; j++) {
    const sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt];
    if (!x) continue;
    sr_pool_blk *b = sr_pool_at(sr_pool_find(x->storage->data));
    if (!b || b->pool != 0 || b->noted == cur_pool) continue;
    b->noted = cur_pool;
    if (nnoted == capnoted) {
      capnoted = capnoted ? 2 * capnoted : 256;
      noted = realloc(noted, (size_t)capnoted * sizeof *noted);
      noted_size = realloc(noted_size, (size_t)capnoted * sizeof *noted_size);
    }
    noted[nnoted] = b->p;
    noted_size[nnoted++] = b->size;
  }
}
static const sr_observer graph_observer = {.before = graph_note};

/* a pool whose kernels never ran (a failed capture, or a graph freed before its first replay):
** its live tensors hold garbage, so they are zeroed (a gradient then accumulates from 0) and
** join pool 0; its free blocks go back to the driver */
static void abandon_pool(int pool) {
  for (int i = 0; i < sr_pool_count(); i++) {
    sr_pool_blk *b = sr_pool_at(i);
    if (b->pool == pool && b->inuse) {
      cudaMemsetAsync(b->p, 0, b->size, stream);
      b->pool = 0;
    }
  }
  sr_pool_release_free(1, pool);
}

/* whether the device has room for a capture of the logged step (`need`: the log's peak, what the
** capture could ask of the driver were nothing adopted) with a margin (its blocks carve segments; an
** eighth, at least 512 MiB), under SPEEDRUN_CUDA_MEM_LIMIT too; need 0 (no log): unknown, no */
static int room_for(size_t need) {
  size_t fr = 0, total = 0, cap = mem_limit();
  if (!need || cudaMemGetInfo(&fr, &total) != cudaSuccess) return 0;
  if (cap) {
    size_t left = cap > sr_pool_reserved() ? cap - sr_pool_reserved() : 0;
    if (left < fr) fr = left;
  }
  size_t margin = need / 8 > ((size_t)512 << 20) ? need / 8 : ((size_t)512 << 20);
  return fr >= need + margin;
}

const char *sr_cuda_graph_begin(void) {
  const char *w = start();
  if (w) return w;
  if (capturing) return "cuda graph: a capture is already under way";
  cudaError_t e = cudaStreamSynchronize(stream);
  /* the capture allocates from a pool of its own, and no cached block can be given back while it
     runs (sr_cuda_malloc's retry is off then): the ordinary pool's free blocks of the sizes the
     step before it logged (sr_cuda_log_allocs) become the capture's, and the rest go back first
     unless the device has room for the whole logged step besides (room_for): records 19-20 at full
     scale on an H100 held 61 GB of them and their capture ran out of memory, where a proxy run's
     release cost ~330 cudaFree calls (15-20 ms on the warm-up's clock) and as many cudaMalloc after */
  if (e == cudaSuccess) {
    size_t need = sr_pool_log_peak();   /* read before the adoption clears the log */
    sr_pool_adopt(next_pool);
    if (!room_for(need)) sr_pool_release_free(1, 0);
    e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed);
  }
  if (e != cudaSuccess) {
    sr_pool_unadopt(next_pool);
    snprintf(errbuf, sizeof errbuf, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    return errbuf;
  }
  capturing = 1;
  cur_pool = next_pool++;
  nnoted = 0;
  sr_observer_add(&graph_observer);
  return NULL;
}

const char *sr_cuda_graph_end(sr_cuda_graph **out) {
  *out = NULL;
  if (!capturing) return "cuda graph: no capture under way";
  int pool = cur_pool;
  capturing = 0;
  cur_pool = 0;
  sr_pool_unadopt(pool);   /* the adopted blocks the capture did not take: pool 0's again */
  sr_observer_remove(&graph_observer);
  cudaGraph_t g = NULL;
  double t0 = sr_monotonic_s();
  cudaError_t e = cudaStreamEndCapture(stream, &g);
  if (e != cudaSuccess) {
    cudaGetLastError();
    snprintf(errbuf, sizeof errbuf, "cudaStreamEndCapture: %s (an operation in the step cannot be captured)",
             cudaGetErrorString(e));
    if (g) cudaGraphDestroy(g);
    abandon_pool(pool);
    return errbuf;
  }
  cudaGraphExec_t x = NULL;
  e = cudaGraphInstantiate(&x, g, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    snprintf(errbuf, sizeof errbuf, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    cudaGraphDestroy(g);
    abandon_pool(pool);
    return errbuf;
  }
  sr_cuda_note_setup(SR_SETUP_GRAPH_BUILD, sr_monotonic_s() - t0);
  sr_cuda_graph *r = calloc(1, sizeof *r);
  r->graph = g;
  r->exec = x;
  r->pool = pool;
  r->nused = nnoted;
  r->used = malloc((size_t)nnoted * sizeof *r->used + 1);
  r->used_size = malloc((size_t)nnoted * sizeof *r->used_size + 1);
  memcpy(r->used, noted, (size_t)nnoted * sizeof *r->used);
  memcpy(r->used_size, noted_size, (size_t)nnoted * sizeof *r->used_size);
  *out = r;
  return NULL;
}

const char *sr_cuda_graph_replay(sr_cuda_graph *g) {
  if (!g) return "cuda graph: NULL graph";
  int lent = lend_on() ? sr_pool_lent_live(g->pool) : 0;   /* none can be without lending */
  if (lent > 0) {
    snprintf(errbuf, sizeof errbuf, "cuda graph: %d block(s) of its memory lent to tensors made beside it are still in use "
             "(a replay would overwrite them)", lent);
    return errbuf;
  }
  cudaError_t e = cudaGraphLaunch(g->exec, stream);
  if (e != cudaSuccess) {
    snprintf(errbuf, sizeof errbuf, "cudaGraphLaunch: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return errbuf;
  }
  if (g->replays++ == 0) lend_pool(g->pool, 1);
  return NULL;
}

/* the noted blocks still held by a live tensor (a block freed since may belong to another) */
static int used_live(const sr_cuda_graph *g, int k) {
  sr_pool_blk *b = sr_pool_at(sr_pool_find(g->used[k]));
  return b && b->inuse && b->pool == 0;
}

const char *sr_cuda_graph_snapshot(sr_cuda_graph *g, int host, size_t *nbytes) {
  size_t total = 0;
  sr_cuda_graph_drop_snapshot(g);
  g->saved = calloc((size_t)g->nused + 1, sizeof *g->saved);
  g->saved_host = host;
  if (host) cudaStreamSynchronize(stream);   /* the state as the queued work leaves it */
  for (int k = 0; k < g->nused; k++) {
    if (!used_live(g, k)) continue;
    g->saved[k] = host ? malloc(g->used_size[k]) : sr_cuda_malloc(g->used_size[k]);
    if (!g->saved[k]) {
      sr_cuda_graph_drop_snapshot(g);
      snprintf(errbuf, sizeof errbuf, "cuda graph: out of %s memory for a snapshot of the step's state (%zu bytes so far)",
               host ? "host" : "device", total);
      return errbuf;
    }
    cudaError_t e = host ? cudaMemcpy(g->saved[k], g->used[k], g->used_size[k], cudaMemcpyDeviceToHost)
                         : cudaMemcpyAsync(g->saved[k], g->used[k], g->used_size[k], cudaMemcpyDeviceToDevice, stream);
    if (e != cudaSuccess) {
      sr_cuda_graph_drop_snapshot(g);
      snprintf(errbuf, sizeof errbuf, "cuda graph: snapshot: %s", cudaGetErrorString(e));
      return errbuf;
    }
    total += g->used_size[k];
  }
  if (nbytes) *nbytes = total;
  return NULL;
}

int sr_cuda_graph_lent(const sr_cuda_graph *g) { return g ? sr_pool_lent_live(g->pool) : 0; }

const char *sr_cuda_graph_restore(sr_cuda_graph *g) {
  if (!g->saved) return "cuda graph: restore without a snapshot";
  for (int k = 0; k < g->nused; k++) {
    if (!g->saved[k] || !used_live(g, k)) continue;
    cudaError_t e = cudaMemcpyAsync(g->used[k], g->saved[k], g->used_size[k],
                                    g->saved_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice, stream);
    if (e != cudaSuccess) {
      snprintf(errbuf, sizeof errbuf, "cuda graph: restore: %s", cudaGetErrorString(e));
      return errbuf;
    }
  }
  /* pageable host memory: the copies read it before returning; the device's queue as before */
  return NULL;
}

void sr_cuda_graph_drop_snapshot(sr_cuda_graph *g) {
  if (!g->saved) return;
  if (g->saved_host) cudaStreamSynchronize(stream);   /* no copy still reading it */
  for (int k = 0; k < g->nused; k++) {
    if (g->saved_host) free(g->saved[k]);
    else sr_cuda_free(g->saved[k]);
  }
  free(g->saved);
  g->saved = NULL;
}

void sr_cuda_graph_free(sr_cuda_graph *g) {
  if (!g) return;
  cudaStreamSynchronize(stream);
  cudaGraphExecDestroy(g->exec);
  cudaGraphDestroy(g->graph);
  sr_cuda_graph_drop_snapshot(g);
  free(g->used);
  free(g->used_size);
  lend_pool(g->pool, 0);
  /* live blocks (tensors made during capture, blocks lent) join pool 0; free ones go back to the driver */
  if (g->replays == 0) abandon_pool(g->pool);
  else {
    for (int i = 0; i < sr_pool_count(); i++)
      if (sr_pool_at(i)->pool == g->pool && sr_pool_at(i)->inuse) sr_pool_at(i)->pool = 0, sr_pool_at(i)->lent = 0;
    sr_pool_release_free(1, g->pool);
  }
  free(g);
}

#else  /* !SPEEDRUN_CUDA: keeps the glob-compiled file valid in CPU-only builds */
typedef int sr_cuda_backend_unused;
#endif
