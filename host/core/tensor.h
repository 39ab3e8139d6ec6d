/*
** core/tensor.h: the engine's tensor, with no Lua in it.
** A tensor is a refcounted N-d strided view (shape, strides, element offset) of a refcounted
** storage on one device. Views share storage; every op writes fresh or caller-given outputs.
** Errors inside the core go through sr_fail(), which never returns (the Lua layer installs a
** handler that turns it into a Lua error; see host/lua/lsr.h).
*/
#ifndef SR_TENSOR_H
#define SR_TENSOR_H

#include <stdbool.h>  /* defines: bool */
#include <stddef.h>   /* defines: size_t */
#include <stdint.h>   /* defines: int64_t, uint16_t */

#ifdef __cplusplus
extern "C" {
#endif

#define SR_MAXDIM 8

typedef enum sr_dtype {
  SR_F32, SR_F64, SR_BF16, SR_I32, SR_F8E4M3, SR_F8E5M2, SR_NDTYPES
} sr_dtype;

typedef enum sr_device { SR_CPU, SR_CUDA } sr_device;

typedef struct sr_storage {
  void *data;
  size_t nbytes;
  sr_device device;
  int refcount;
  int version;         /* bumped by every in-place write through any view */
  uint64_t serial;     /* unique per storage over the process (1, 2, ...): its identity */
  struct sr_watch *watchers;  /* weak references to tensors over it (sr_watch_set), told at its end */
  bool elided;         /* lazy, and a fused group did not store it: any later use fails (core/fuse_exec.c) */
} sr_storage;

typedef struct sr_node sr_node;  /* autograd tape node, host/core/autograd.h */

typedef struct sr_tensor {
  int refcount;
  sr_storage *storage;
  int64_t offset;                  /* in elements, into storage */
  int ndim;
  int64_t shape[SR_MAXDIM];
  int64_t stride[SR_MAXDIM];       /* in elements */
  sr_dtype dtype;
  bool requires_grad;              /* a leaf that wants .grad, or a result of such */
  struct sr_tensor *grad;          /* accumulated gradient of a leaf (owned), or NULL */
  sr_node *grad_fn;                /* the tape node that produced this tensor (owned ref), or NULL */
  int grad_slot;                   /* which output of grad_fn this tensor is */
  uint64_t serial;                 /* unique per tensor over the process (1, 2, ...): its identity */
} sr_tensor;

/* ---- failure: formats a message and calls the installed handler (never returns) */
typedef void (*sr_fail_handler)(const char *msg);
void sr_set_fail_handler(sr_fail_handler h);
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 1, 2)))
#endif
void sr_fail(const char *fmt, ...);

/* ---- dtypes */
const char *sr_dtype_name(sr_dtype t);
int sr_dtype_from_name(const char *name);          /* -1 when unknown */
size_t sr_dtype_size(sr_dtype t);
bool sr_dtype_is_float(sr_dtype t);
const char *sr_device_name(sr_device d);

/* bf16 <-> f32, round to nearest even; NaN stays NaN */
static inline float sr_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v; v.u = (uint32_t)h << 16; return v.f;
}
static inline uint16_t sr_f32_to_bf16(float f) {
  union { uint32_t u; float f; } v; v.f = f;
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);  /* quiet NaN */
  uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
  return (uint16_t)((v.u + rounding) >> 16);
}

/* element i of a raw buffer of dtype t, as double / stored from double (CPU memory only) */
double sr_load(const void *data, sr_dtype t, int64_t i);
void sr_store(void *data, sr_dtype t, int64_t i, double v);

/* ---- lifetime */
sr_tensor *sr_tensor_new(sr_dtype t, sr_device d, int ndim, const int64_t *shape);  /* uninitialised, contiguous */
sr_tensor *sr_tensor_new_like(const sr_tensor *x);                                 /* same dtype/device/shape, contiguous */
sr_tensor *sr_tensor_retain(sr_tensor *x);
void sr_tensor_release(sr_tensor *x);             /* NULL is fine */
/* ---- weak references: a watch remembers a tensor (its geometry over its storage) without keeping
** the storage alive; when the storage's last reference goes, the watch is told (ended) with the
** storage's version at that moment. The autograd tape saves tensors it can recompute this way. */
typedef struct sr_watch {
  sr_tensor view;                  /* the tensor's fields; view.storage is NULL once it ended */
  int end_version;                 /* the storage's version when it ended */
  bool ended;
  struct sr_watch *next, **pprev;  /* the storage's list */
} sr_watch;
void sr_watch_set(sr_watch *w, const sr_tensor *t);  /* w (cleared or new) watches t */
void sr_watch_clear(sr_watch *w);                    /* stops watching (safe when ended or never set) */
/* how a tensor's grad_fn is released: set by the autograd tape (host/core/autograd.c) */
typedef void (*sr_node_release_fn)(sr_node *n);
void sr_set_node_release(sr_node_release_fn f);

/* ---- memory pressure: called with the size of every new storage, so the Lua layer can run
** its collector when much memory hides behind small userdata (style lesson 14, as Torch's
** THSetGCHandler) */
typedef void (*sr_alloc_hook)(size_t nbytes, sr_device d);
void sr_set_alloc_hook(sr_alloc_hook h);

/* ---- live tensor memory per device: bytes of storage alive now and the most alive at once
** since the last reset (what tensors hold, before any allocator rounding or caching) */
typedef struct sr_mem_stats { size_t current, peak; int64_t allocs; } sr_mem_stats;
sr_mem_stats sr_mem_stats_of(sr_device d);
void sr_mem_reset_peak(sr_device d);
/* tensors (views included) and storages alive now, over every device */
void sr_live_counts(int64_t *tensors, int64_t *storages);
/* SPEEDRUN_MEMLOG=<MiB>: every new storage of at least that many MiB is reported through this
** hook (the Lua layer prints where it came from), and again when it is freed (freed = 1): serial
** names the storage in both; NULL turns it off */
typedef void (*sr_memlog_hook)(size_t nbytes, sr_device d, size_t live_after, uint64_t serial, int freed);
void sr_set_memlog_hook(sr_memlog_hook h);
/* ---- storage lifetimes for the step compiler (host/core/fuse_record.c, fuse_exec.c): the serial
** the next storage gets, and a hook called when a storage's last reference goes (NULL turns it
** off). A hook that returns 1 adopts the storage: its memory stays until the hook's owner calls
** sr_storage_free_adopted (the executor keeps held launches' memory this way). */
uint64_t sr_storage_next_serial(void);
/* ---- lazy storages (the step compiler's outputs it never stores, host/core/fuse_exec.c): while
** lazy mode is on, a new storage gets its memory only when first used (sr_data, or as an argument
** of a kernel the dispatcher runs: sr_kcall_materialize); one nothing uses is never allocated and
** never counted. sr_set_lazy returns the previous mode. */
bool sr_set_lazy(bool on);
/* dry mode (the step compiler's dry recording, core/fuse.h): new storages are lazy for good, the
** dispatcher runs no kernel (its observers still see each launch), and any use of a tensor's
** memory (sr_data, a materialization) fails naming the dry run */
bool sr_set_dry(bool on);
bool sr_dry(void);
void sr_tensor_materialize(const sr_tensor *x);   /* NULL, or memory already there: nothing */
bool sr_tensor_materialized(const sr_tensor *x);
typedef int (*sr_storage_death_hook)(sr_storage *s);
void sr_set_storage_death_hook(sr_storage_death_hook h);
void sr_storage_free_adopted(sr_storage *s);

/* ---- the per-call scratch list, so that a failure leaks nothing.
** sr_fail() longjmps (through the Lua handler) past every C frame between the failure and the
** protected call; references those frames held in locals would stay alive. An op that holds
** references across a call that can fail (a kernel run, a view, a nested op) hands them to the
** scratch list instead: a thread-local stack of cleanups. On success the op pops its own
** entries (running them, newest first); on failure sr_fail() runs every entry above the floor
** before the handler longjmps, while the frames they point into are still alive.
**
**   int m = sr_scratch_mark();
**   sr_tensor *tmp = sr_scratch_push(sr_contiguous_raw(x));   // the list holds tmp's reference
**   sr_tensor *y = sr_scratch_push(sr_tensor_new(...));       // released too if a later step fails
**   sr_kernel_run(...);                                       // may fail: tmp and y go
**   return sr_scratch_return(m, y);                           // y's reference to the caller, tmp released
**
** Nested ops nest naturally (each pops to its own mark). Code that calls back into Lua from
** inside an op (the custom-function backward hook, a collection run by the allocation hook)
** raises the floor around the call with sr_scratch_set_floor(sr_scratch_mark()), so a failure
** caught by a pcall inside that Lua code leaves the enclosing op's entries alone.
** Cost on the hot path: a thread-local array store per entry, no allocation after warm-up.
*/
typedef void (*sr_cleanup_fn)(void *p);

int sr_scratch_mark(void);                          /* the current depth */
sr_tensor *sr_scratch_push(sr_tensor *t);           /* takes over t's reference (NULL is fine); returns t */
void sr_scratch_defer(sr_cleanup_fn fn, void *p);   /* fn(p) at pop or failure (p may point into the caller's frame) */
void sr_scratch_pop(int mark);                      /* runs the entries above mark, newest first */
sr_tensor *sr_scratch_return(int mark, sr_tensor *y);  /* a new reference to y for the caller, then pop(mark) */
void sr_scratch_unwind(void);                       /* the failure path: pop(floor); sr_fail() calls it */
int sr_scratch_set_floor(int floor);                /* returns the previous floor */


/* ---- shape limits. Every tensor and view has sizes >= 0 whose non-zero product (its "extent")
** is at most SR_MAX_NUMEL, so every partial product of its sizes fits an int64; every storage
** holds at most SR_MAX_BYTES; strides and offsets are >= 0, and every element of a view with
** elements lies inside its storage: offset + sum((shape[d]-1)*stride[d]) < storage elements.
** Each view constructor checks this (overflow-checked) and fails naming the op otherwise. */
#define SR_MAX_NUMEL ((int64_t)1 << 48)
#define SR_MAX_BYTES ((int64_t)1 << 48)
/* the element count of a shape; -1 for a bad ndim, a negative size or an extent over SR_MAX_NUMEL */
int64_t sr_shape_numel(int ndim, const int64_t *shape);
/* the element count of a shape, or fails "op: ..." naming the bad size or the too-large shape */
int64_t sr_check_shape(const char *op, int ndim, const int64_t *shape);
/* the bytes a new tensor of that shape and dtype needs, or fails "op: ..." (shape, or over SR_MAX_BYTES) */
int64_t sr_check_alloc(const char *op, sr_dtype dt, int ndim, const int64_t *shape);
/* NULL when every element of view t lies inside its storage (strides, offset >= 0), else why not */
const char *sr_view_error(const sr_tensor *t, char *buf, size_t n);

/* ---- queries */
int64_t sr_numel(const sr_tensor *x);
bool sr_is_contiguous(const sr_tensor *x);
bool sr_layout_non_overlapping(int nd, const int64_t *shape, const int64_t *stride);  /* no two elements share memory */
bool sr_same_shape(const sr_tensor *a, const sr_tensor *b);
void *sr_data(const sr_tensor *x);                /* pointer to element 0 of the view (device pointer on CUDA) */
sr_device sr_device_of(const sr_tensor *x);
/* "[2,3,4]" into buf; returns buf */
const char *sr_shape_str(const sr_tensor *x, char *buf, size_t n);
const char *sr_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* ---- views (share storage; no copy) */
sr_tensor *sr_view(sr_tensor *x, int ndim, const int64_t *shape);  /* -1 allowed once; needs compatible strides */
sr_tensor *sr_view_try(sr_tensor *x, int ndim, const int64_t *shape);  /* NULL where sr_view fails on strides */
sr_tensor *sr_as_strided(sr_tensor *x, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
sr_tensor *sr_transpose(sr_tensor *x, int d0, int d1);
sr_tensor *sr_permute(sr_tensor *x, const int *perm);
sr_tensor *sr_narrow(sr_tensor *x, int dim, int64_t start, int64_t length);
sr_tensor *sr_unsqueeze(sr_tensor *x, int dim);
sr_tensor *sr_squeeze(sr_tensor *x, int dim);                      /* dim = -100: all size-1 dims */
sr_tensor *sr_expand(sr_tensor *x, int ndim, const int64_t *shape); /* broadcast view, stride 0 */

/* ---- devices: the CUDA backend registers these at start-up (host/cuda/backend.c) */
typedef struct sr_device_backend {
  const char *(*available)(void);                        /* NULL when usable, else why not */
  void *(*alloc)(size_t nbytes);
  void (*free)(void *p);
  void (*copy)(void *dst, sr_device dd, const void *src, sr_device sd, size_t nbytes);
  void (*copy_strided)(sr_tensor *dst, const sr_tensor *src);  /* within the device, any dtypes */
  void (*fill)(sr_tensor *x, double v);
  void (*synchronize)(void);
} sr_device_backend;
void sr_register_cuda_backend(const sr_device_backend *b);
const sr_device_backend *sr_cuda_backend(void);           /* fails with a clear message if unusable */
bool sr_cuda_available(void);

/* ---- N-d index iteration over a view (CPU helpers) */
/* offset in elements of the flat (row-major) index i of view x */
static inline int64_t sr_offset_of(const sr_tensor *x, int64_t i) {
  int64_t off = x->offset;
  for (int d = x->ndim - 1; d >= 0; d--) {
    int64_t s = x->shape[d];
    off += (i % s) * x->stride[d];
    i /= s;
  }
  return off;
}

/* broadcast two shapes (numpy rules); returns ndim, or -1 if incompatible */
int sr_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif
