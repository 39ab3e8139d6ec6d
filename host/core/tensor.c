/*
** core/tensor.c: storage, tensor lifetime, views and broadcasting: the bottom of the core, which
** runs no kernel (copies, fills and transfers are host/core/copy.c, the RNG host/core/random.c).
** No Lua here; failures go through sr_fail().
*/
#include <stdarg.h>    /* defines: va_list */
#include <stdio.h>     /* defines: vsnprintf */
#include <stdlib.h>    /* defines: aligned_alloc, free */
#include <string.h>    /* defines: memset, memcpy, strcmp */

#include <pthread.h>   /* defines: pthread_mutex_t */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>  /* defines: RUNNING_ON_VALGRIND */
#define SR_RUNNING_ON_VALGRIND RUNNING_ON_VALGRIND
#endif
#endif
#ifndef SR_RUNNING_ON_VALGRIND
#define SR_RUNNING_ON_VALGRIND 0
#endif

#include "core/tensor.h"
#include "core/fp8.h"     /* defines: sr_fp8_to_f32, sr_f64_to_fp8 */

/* ------------------------------------------------------------------------------------------ */
/* failure */

static void default_fail(const char *msg) {
  fprintf(stderr, "speedrun: fatal: %s\n", msg);
  abort();
}
static sr_fail_handler fail_handler = default_fail;

void sr_set_fail_handler(sr_fail_handler h) { fail_handler = h ? h : default_fail; }

void sr_fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sr_scratch_unwind();  /* the failing call's scratch references go before the handler longjmps */
  fail_handler(msg);
  abort();  /* a handler must not return */
}

/* ------------------------------------------------------------------------------------------ */
/* dtypes */

static const struct { const char *name; size_t size; } dtype_info[SR_NDTYPES] = {
  [SR_F32] = {"float32", 4}, [SR_F64] = {"float64", 8}, [SR_BF16] = {"bfloat16", 2},
  [SR_I32] = {"int32", 4}, [SR_F8E4M3] = {"float8_e4m3", 1}, [SR_F8E5M2] = {"float8_e5m2", 1},
};

const char *sr_dtype_name(sr_dtype t) { return (unsigned)t < SR_NDTYPES ? dtype_info[t].name : "?"; }
size_t sr_dtype_size(sr_dtype t) { return dtype_info[t].size; }
bool sr_dtype_is_float(sr_dtype t) { return t != SR_I32; }
const char *sr_device_name(sr_device d) { return d == SR_CUDA ? "cuda" : "cpu"; }

int sr_dtype_from_name(const char *name) {
  static const struct { const char *alias; sr_dtype t; } aliases[] = {
    {"float32", SR_F32}, {"f32", SR_F32}, {"float", SR_F32}, {"float64", SR_F64}, {"f64", SR_F64},
    {"double", SR_F64}, {"bfloat16", SR_BF16}, {"bf16", SR_BF16}, {"int32", SR_I32}, {"i32", SR_I32},
    {"int", SR_I32}, {"float8_e4m3", SR_F8E4M3}, {"float8_e4m3fn", SR_F8E4M3}, {"e4m3", SR_F8E4M3},
    {"float8_e5m2", SR_F8E5M2}, {"e5m2", SR_F8E5M2},
  };
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (!strcmp(name, aliases[i].alias)) return (int)aliases[i].t;
  return -1;
}

double sr_load(const void *data, sr_dtype t, int64_t i) {
  switch (t) {
    case SR_F32: return ((const float *)data)[i];
    case SR_F64: return ((const double *)data)[i];
    case SR_BF16: return sr_bf16_to_f32(((const uint16_t *)data)[i]);
    case SR_I32: return ((const int32_t *)data)[i];
    case SR_F8E4M3: return sr_fp8_to_f32(((const uint8_t *)data)[i], 0);
    case SR_F8E5M2: return sr_fp8_to_f32(((const uint8_t *)data)[i], 1);
    default: sr_fail("%s tensors are storage-only (no CPU arithmetic yet)", sr_dtype_name(t));
  }
}

void sr_store(void *data, sr_dtype t, int64_t i, double v) {
  switch (t) {
    case SR_F32: ((float *)data)[i] = (float)v; break;
    case SR_F64: ((double *)data)[i] = v; break;
    case SR_BF16: ((uint16_t *)data)[i] = sr_f32_to_bf16((float)v); break;
    case SR_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    /* float8: rounded once from the double (an f32 rounding first could round twice); beyond the
    ** range as torch's .to (NaN for e4m3fn, inf for e5m2), so a float8 value stores as itself */
    case SR_F8E4M3: ((uint8_t *)data)[i] = sr_f64_to_fp8(v, 0, 0); break;
    case SR_F8E5M2: ((uint8_t *)data)[i] = sr_f64_to_fp8(v, 1, 0); break;
    default: sr_fail("%s tensors are storage-only (no CPU arithmetic yet)", sr_dtype_name(t));
  }
}

/* ------------------------------------------------------------------------------------------ */
/* devices */

static const sr_device_backend *cuda_backend;

void sr_register_cuda_backend(const sr_device_backend *b) { cuda_backend = b; }

bool sr_cuda_available(void) {
  if (getenv("SPEEDRUN_NO_CUDA")) return false;
  return cuda_backend && cuda_backend->available() == NULL;
}

const sr_device_backend *sr_cuda_backend(void) {
  if (!cuda_backend) sr_fail("cuda: this speedrun was built without the CUDA backend (-DSPEEDRUN_CUDA=OFF or no toolkit)");
  if (getenv("SPEEDRUN_NO_CUDA")) sr_fail("cuda: disabled by SPEEDRUN_NO_CUDA");
  const char *why = cuda_backend->available();
  if (why) sr_fail("cuda: no usable GPU: %s", why);
  return cuda_backend;
}

/* ------------------------------------------------------------------------------------------ */
/* storage and lifetime */

static sr_alloc_hook alloc_hook;

void sr_set_alloc_hook(sr_alloc_hook h) { alloc_hook = h; }

/* CPU block cache. A training step frees and reallocates the same large buffers (logits,
** their gradient, the tied table's gradient: ~100 MB each at GPT-2 vocabulary); glibc serves
** blocks that big with mmap/munmap, so every step would fault in fresh zeroed pages again. Freed
** CPU blocks of HOST_CACHE_MIN bytes or more are kept instead, by size class (8 classes per power
** of two, the block allocated at its class size), up to HOST_CACHE_SLOTS blocks and
** HOST_CACHE_CAP bytes; beyond that they go back to free(). Emptied at exit. Off under valgrind
** (so memcheck still sees every block's lifetime) or with SPEEDRUN_HOST_CACHE=0. */
#define HOST_CACHE_MIN ((size_t)256 << 10)
#define HOST_CACHE_CAP ((size_t)1 << 30)
#define HOST_CACHE_SLOTS 64

static struct { void *p; size_t n; } host_cache[HOST_CACHE_SLOTS];
static int host_ncached;                 /* entries in use: host_cache[0 .. host_ncached) */
static size_t host_cached_bytes;
static int host_cache_state;             /* 0 not set up, 1 on, -1 off (disabled or after exit) */
static pthread_mutex_t host_cache_mu = PTHREAD_MUTEX_INITIALIZER;

static void host_cache_drain(void) {
  pthread_mutex_lock(&host_cache_mu);
  for (int k = 0; k < host_ncached; k++) free(host_cache[k].p);
  host_ncached = 0;
  host_cached_bytes = 0;
  host_cache_state = -1;
  pthread_mutex_unlock(&host_cache_mu);
}

/* the size class of an n-byte block: n rounded up to 1/8 of its power of two (64-byte multiple) */
static size_t host_class(size_t n) {
  size_t top = (size_t)1 << (63 - __builtin_clzll((unsigned long long)n));
  size_t step = top >= 512 ? top / 8 : 64;
  return (n + step - 1) / step * step;
}

/* a cached block of class size n, or NULL; called with the mutex held */
static void *host_cache_take(size_t n) {
  if (host_cache_state == 0) {
    const char *env = getenv("SPEEDRUN_HOST_CACHE");
    host_cache_state = (env && strcmp(env, "0") == 0) || SR_RUNNING_ON_VALGRIND ? -1 : 1;
    if (host_cache_state > 0) atexit(host_cache_drain);
  }
  if (host_cache_state < 0) return NULL;
  for (int k = host_ncached - 1; k >= 0; k--)  /* newest first: its pages are the warmest */
    if (host_cache[k].n == n) {
      void *p = host_cache[k].p;
      host_cache[k] = host_cache[--host_ncached];
      host_cached_bytes -= n;
      return p;
    }
  return NULL;
}

static void *host_alloc(size_t nbytes) {
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n == 0) n = 64;
  if (n < HOST_CACHE_MIN) return aligned_alloc(64, n);
  n = host_class(n);
  pthread_mutex_lock(&host_cache_mu);
  void *p = host_cache_take(n);
  pthread_mutex_unlock(&host_cache_mu);
  return p ? p : aligned_alloc(64, n);
}

static void host_free(void *p, size_t nbytes) {
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (!p) return;
  if (n < HOST_CACHE_MIN) { free(p); return; }
  n = host_class(n);
  pthread_mutex_lock(&host_cache_mu);
  if (host_cache_state > 0 && n <= HOST_CACHE_CAP) {
    if (host_ncached == HOST_CACHE_SLOTS || host_cached_bytes + n > HOST_CACHE_CAP) {
      /* full: drop the oldest blocks until this one fits */
      int drop = 0;
      size_t freed = 0;
      while (drop < host_ncached && (host_ncached - drop == HOST_CACHE_SLOTS || host_cached_bytes - freed + n > HOST_CACHE_CAP)) {
        free(host_cache[drop].p);
        freed += host_cache[drop].n;
        drop++;
      }
      memmove(host_cache, host_cache + drop, sizeof host_cache[0] * (size_t)(host_ncached - drop));
      host_ncached -= drop;
      host_cached_bytes -= freed;
    }
    host_cache[host_ncached].p = p;
    host_cache[host_ncached].n = n;
    host_ncached++;
    host_cached_bytes += n;
    p = NULL;
  }
  pthread_mutex_unlock(&host_cache_mu);
  free(p);
}

/* live storage bytes per device (atomics: CPU kernels free nothing, but data loaders may run
** tensors on other threads) */
static size_t mem_current[2], mem_peak[2];
static int64_t mem_allocs[2];
static int64_t live_tensors, live_storages;

void sr_live_counts(int64_t *tensors, int64_t *storages) {
  *tensors = __atomic_load_n(&live_tensors, __ATOMIC_RELAXED);
  *storages = __atomic_load_n(&live_storages, __ATOMIC_RELAXED);
}
static sr_memlog_hook memlog_hook;
static size_t memlog_min = (size_t)-1;

void sr_set_memlog_hook(sr_memlog_hook h) {
  memlog_hook = h;
  const char *env = getenv("SPEEDRUN_MEMLOG");
  memlog_min = h && env && *env ? (size_t)(atof(env) * 1048576.0) : (size_t)-1;
}

sr_mem_stats sr_mem_stats_of(sr_device d) {
  sr_mem_stats s = {__atomic_load_n(&mem_current[d], __ATOMIC_RELAXED), __atomic_load_n(&mem_peak[d], __ATOMIC_RELAXED),
                    __atomic_load_n(&mem_allocs[d], __ATOMIC_RELAXED)};
  return s;
}

void sr_mem_reset_peak(sr_device d) { __atomic_store_n(&mem_peak[d], __atomic_load_n(&mem_current[d], __ATOMIC_RELAXED), __ATOMIC_RELAXED); }

static void mem_count(size_t nbytes, sr_device d, uint64_t serial) {
  size_t now = __atomic_add_fetch(&mem_current[d], nbytes, __ATOMIC_RELAXED);
  size_t pk = __atomic_load_n(&mem_peak[d], __ATOMIC_RELAXED);
  while (now > pk && !__atomic_compare_exchange_n(&mem_peak[d], &pk, now, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  __atomic_add_fetch(&mem_allocs[d], 1, __ATOMIC_RELAXED);
  if (nbytes >= memlog_min && memlog_hook) memlog_hook(nbytes, d, now, serial, 0);
}

static uint64_t next_serial = 1;
static sr_storage_death_hook death_hook;
uint64_t sr_storage_next_serial(void) { return __atomic_load_n(&next_serial, __ATOMIC_RELAXED); }
void sr_set_storage_death_hook(sr_storage_death_hook h) { death_hook = h; }

static bool lazy_on, dry_on;
bool sr_set_lazy(bool on) {
  bool old = lazy_on;
  lazy_on = on;
  return old;
}

bool sr_set_dry(bool on) {
  bool old = dry_on;
  dry_on = on;
  return old;
}

bool sr_dry(void) { return dry_on; }

static void dry_touch(void) {
  sr_fail("a dry run (the step compiler's plan made before the first step) touched a tensor's memory outside a "
          "kernel: the step reads or writes values on the host");
}

/* s's memory, allocated and counted now; false when the host has none (the device's allocator
** fails by itself) */
static bool storage_try_alloc(sr_storage *s) {
  size_t n = s->nbytes ? s->nbytes : 1;
  s->data = s->device == SR_CUDA ? sr_cuda_backend()->alloc(n) : host_alloc(n);
  if (!s->data) return false;
  mem_count(s->nbytes, s->device, s->serial);
  return true;
}

static void storage_alloc(sr_storage *s) {
  if (dry_on) dry_touch();
  if (s->elided)   /* never stored: its memory would hold whatever the allocator's block held */
    sr_fail("step compiler: the step uses a tensor that its fused plan did not store (the recorded steps "
            "showed it dead); SPEEDRUN_FUSE_LAZY=0 and SPEEDRUN_FUSE_EARLY=0 run without lazy outputs");
  if (!storage_try_alloc(s)) sr_fail("out of host memory allocating %zu bytes", s->nbytes);
}

static sr_storage *storage_new(size_t nbytes, sr_device d) {
  if (alloc_hook) alloc_hook(nbytes, d);
  sr_storage *s = calloc(1, sizeof *s);
  if (!s) sr_fail("out of host memory");
  s->nbytes = nbytes;
  s->device = d;
  s->refcount = 1;
  s->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
  if (!lazy_on && !dry_on && !storage_try_alloc(s)) {
    free(s);
    sr_fail("out of host memory allocating %zu bytes", nbytes);
  }
  __atomic_add_fetch(&live_storages, 1, __ATOMIC_RELAXED);
  return s;
}

void sr_tensor_materialize(const sr_tensor *x) {
  if (x && !x->storage->data) storage_alloc(x->storage);
}

bool sr_tensor_materialized(const sr_tensor *x) { return x->storage->data != NULL; }

static void storage_free(sr_storage *s) {
  __atomic_sub_fetch(&live_storages, 1, __ATOMIC_RELAXED);
  if (s->data) {
    size_t now = __atomic_sub_fetch(&mem_current[s->device], s->nbytes, __ATOMIC_RELAXED);
    if (s->nbytes >= memlog_min && memlog_hook) memlog_hook(s->nbytes, s->device, now, s->serial, 1);
    if (s->device == SR_CUDA) cuda_backend->free(s->data);
    else host_free(s->data, s->nbytes ? s->nbytes : 1);
  }
  free(s);
}

void sr_storage_free_adopted(sr_storage *s) { storage_free(s); }

static void storage_release(sr_storage *s) {
  if (!s || --s->refcount > 0) return;
  for (sr_watch *w = s->watchers, *next; w; w = next) {  /* weak references end here */
    next = w->next;
    w->end_version = s->version;
    w->ended = true;
    w->view.storage = NULL;
    w->next = NULL;
    w->pprev = NULL;
  }
  s->watchers = NULL;
  if (death_hook && death_hook(s)) return;  /* adopted: freed later by sr_storage_free_adopted */
  storage_free(s);
}

static uint64_t next_tensor_serial = 1;

static sr_tensor *tensor_alloc(void) {
  sr_tensor *t = calloc(1, sizeof *t);
  if (!t) sr_fail("out of host memory");
  t->refcount = 1;
  t->serial = __atomic_fetch_add(&next_tensor_serial, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
  return t;
}

static void set_contiguous_strides(sr_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) { t->stride[d] = s; s *= t->shape[d]; }
}

int64_t sr_check_alloc(const char *op, sr_dtype dt, int ndim, const int64_t *shape) {
  int64_t n = sr_check_shape(op, ndim, shape), nbytes;
  char b[192];
  if (__builtin_mul_overflow(n, (int64_t)sr_dtype_size(dt), &nbytes) || nbytes > SR_MAX_BYTES)
    sr_fail("%s: shape %s of %s is too large (%lld elements; at most 2^48 bytes)", op, sr_dims_str(ndim, shape, b, sizeof b),
            sr_dtype_name(dt), (long long)n);
  return nbytes;
}

sr_tensor *sr_tensor_new(sr_dtype dt, sr_device dev, int ndim, const int64_t *shape) {
  int64_t nbytes = sr_check_alloc("tensor", dt, ndim, shape);
  sr_storage *s = storage_new((size_t)nbytes, dev);
  sr_tensor *t = tensor_alloc();
  t->storage = s;
  t->dtype = dt;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
  set_contiguous_strides(t);
  return t;
}

sr_tensor *sr_tensor_new_like(const sr_tensor *x) {
  return sr_tensor_new(x->dtype, x->storage->device, x->ndim, x->shape);
}

sr_tensor *sr_tensor_retain(sr_tensor *x) {
  if (x) x->refcount++;
  return x;
}

void sr_watch_set(sr_watch *w, const sr_tensor *t) {
  sr_watch_clear(w);
  w->view = *t;
  w->view.refcount = 0;
  w->view.grad = NULL;
  w->view.grad_fn = NULL;
  w->view.requires_grad = false;
  w->ended = false;
  sr_storage *s = t->storage;
  w->next = s->watchers;
  if (w->next) w->next->pprev = &w->next;
  w->pprev = &s->watchers;
  s->watchers = w;
}

void sr_watch_clear(sr_watch *w) {
  if (w->pprev) {  /* linked: the storage is alive */
    *w->pprev = w->next;
    if (w->next) w->next->pprev = w->pprev;
  }
  w->next = NULL;
  w->pprev = NULL;
  w->view.storage = NULL;
}

/* the autograd tape registers how its nodes are released (host/core/autograd.c, with its first
** node), so the tensor layer does not depend on the tape */
static sr_node_release_fn node_release;
void sr_set_node_release(sr_node_release_fn f) { node_release = f; }

void sr_tensor_release(sr_tensor *x) {
  if (!x || --x->refcount > 0) return;
  sr_tensor_release(x->grad);
  if (x->grad_fn) node_release(x->grad_fn);
  storage_release(x->storage);
  __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
  free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* the per-call scratch list */

typedef struct entry { sr_cleanup_fn fn; void *p; } entry;

static _Thread_local entry *stack;
static _Thread_local int depth, cap, floor_;

static void release_tensor(void *p) { sr_tensor_release((sr_tensor *)p); }

int sr_scratch_mark(void) { return depth; }

static void push(sr_cleanup_fn fn, void *p) {
  if (depth == cap) {
    int ncap = cap ? 2 * cap : 64;
    entry *s = realloc(stack, (size_t)ncap * sizeof *s);
    if (!s) { fn(p); sr_fail("out of host memory"); }
    stack = s;
    cap = ncap;
  }
  stack[depth].fn = fn;
  stack[depth].p = p;
  depth++;
}

sr_tensor *sr_scratch_push(sr_tensor *t) {
  if (t) push(release_tensor, t);
  return t;
}

void sr_scratch_defer(sr_cleanup_fn fn, void *p) { push(fn, p); }

void sr_scratch_pop(int mark) {
  if (mark < 0) mark = 0;
  while (depth > mark) {
    entry e = stack[--depth];  /* off the list before it runs: a cleanup never runs twice */
    e.fn(e.p);
  }
  if (floor_ > depth) floor_ = depth;
}

sr_tensor *sr_scratch_return(int mark, sr_tensor *y) {
  sr_tensor_retain(y);
  sr_scratch_pop(mark);
  return y;
}

void sr_scratch_unwind(void) { sr_scratch_pop(floor_); }

int sr_scratch_set_floor(int f) {
  int old = floor_;
  floor_ = f < 0 ? 0 : f > depth ? depth : f;
  return old;
}

/* ------------------------------------------------------------------------------------------ */
/* queries */

int64_t sr_numel(const sr_tensor *x) {
  int64_t n = 1;
  for (int d = 0; d < x->ndim; d++)
    if (__builtin_mul_overflow(n, x->shape[d], &n)) sr_fail("numel: the shape's product overflows");
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* shape limits (see tensor.h) */

int64_t sr_shape_numel(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > SR_MAXDIM) return -1;
  int64_t extent = 1;
  bool empty = false;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return -1;
    if (shape[d] == 0) empty = true;
    else if (__builtin_mul_overflow(extent, shape[d], &extent) || extent > SR_MAX_NUMEL) return -1;
  }
  return empty ? 0 : extent;
}

int64_t sr_check_shape(const char *op, int ndim, const int64_t *shape) {
  char b[192];
  if (ndim < 0 || ndim > SR_MAXDIM) sr_fail("%s: %d dimensions (at most %d)", op, ndim, SR_MAXDIM);
  for (int d = 0; d < ndim; d++)
    if (shape[d] < 0) sr_fail("%s: negative size %lld in dimension %d", op, (long long)shape[d], d + 1);
  int64_t n = sr_shape_numel(ndim, shape);
  if (n < 0) sr_fail("%s: shape %s is too large (more than 2^48 elements)", op, sr_dims_str(ndim, shape, b, sizeof b));
  return n;
}

const char *sr_view_error(const sr_tensor *t, char *buf, size_t n) {
  int64_t cap = (int64_t)(t->storage->nbytes / sr_dtype_size(t->dtype)), last = t->offset, numel;
  if (t->ndim < 0 || t->ndim > SR_MAXDIM) return "bad number of dimensions";
  if ((numel = sr_shape_numel(t->ndim, t->shape)) < 0) return "negative size or more than 2^48 elements";
  if (t->offset < 0) return "negative offset";
  for (int d = 0; d < t->ndim; d++) {
    int64_t reach;
    if (t->stride[d] < 0) return "negative stride";
    if (numel == 0) continue;
    if (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &reach) || __builtin_add_overflow(last, reach, &last))
      return "element offsets overflow";
  }
  if (numel > 0 && last >= cap) {
    snprintf(buf, n, "reaches element %lld of a storage of %lld elements", (long long)last, (long long)cap);
    return buf;
  }
  return NULL;
}

/* no two elements of the layout share memory (an output may be written element-wise) */
bool sr_layout_non_overlapping(int nd, const int64_t *shape, const int64_t *st) {
  int idx[SR_MAXDIM], m = 0;
  for (int d = 0; d < nd; d++)
    if (shape[d] > 1) idx[m++] = d;
  for (int x = 1; x < m; x++)  /* sort by stride */
    for (int y = x; y > 0 && st[idx[y]] < st[idx[y - 1]]; y--) { int t = idx[y]; idx[y] = idx[y - 1]; idx[y - 1] = t; }
  int64_t extent = 1;
  for (int x = 0; x < m; x++) {
    if (st[idx[x]] < extent) return false;
    extent = st[idx[x]] * shape[idx[x]];
  }
  return true;
}

bool sr_is_contiguous(const sr_tensor *x) {
  int64_t s = 1;
  for (int d = x->ndim - 1; d >= 0; d--) {
    if (x->shape[d] != 1 && x->stride[d] != s) return false;
    s *= x->shape[d];
  }
  return true;
}

bool sr_same_shape(const sr_tensor *a, const sr_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

void *sr_data(const sr_tensor *x) {
  if (dry_on) dry_touch();
  if (!x->storage->data) storage_alloc(x->storage);   /* a lazy storage's first use */
  return (char *)x->storage->data + (size_t)x->offset * sr_dtype_size(x->dtype);
}

sr_device sr_device_of(const sr_tensor *x) { return x->storage->device; }

const char *sr_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "[");
  for (int d = 0; d < ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

const char *sr_shape_str(const sr_tensor *x, char *buf, size_t n) { return sr_dims_str(x->ndim, x->shape, buf, n); }

/* ------------------------------------------------------------------------------------------ */
/* views */

static sr_tensor *view_of(sr_tensor *x) {
  sr_tensor *t = tensor_alloc();
  t->storage = x->storage;
  x->storage->refcount++;
  t->offset = x->offset;
  t->dtype = x->dtype;
  t->ndim = x->ndim;
  memcpy(t->shape, x->shape, sizeof t->shape);
  memcpy(t->stride, x->stride, sizeof t->stride);
  return t;
}

/* t, once every element it reaches is inside its storage; else t is released and op fails */
static sr_tensor *checked(const char *op, sr_tensor *t) {
  char why[128], b1[192], b2[192];
  const char *e = sr_view_error(t, why, sizeof why);
  if (!e) return t;
  int nd = t->ndim < 0 || t->ndim > SR_MAXDIM ? 0 : t->ndim;
  sr_dims_str(nd, t->shape, b1, sizeof b1);
  sr_dims_str(nd, t->stride, b2, sizeof b2);
  long long off = (long long)t->offset;
  sr_tensor_release(t);
  sr_fail("%s: view of shape %s, strides %s, offset %lld: %s", op, b1, b2, off, e);
}

static int wrap_dim(const char *op, int dim, int ndim) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim) sr_fail("%s: dimension %d out of range for a %d-d tensor", op, dim, ndim);
  return d;
}

static sr_tensor *as_strided(const char *op, sr_tensor *x, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  if (ndim < 0 || ndim > SR_MAXDIM) sr_fail("%s: %d dimensions (at most %d)", op, ndim, SR_MAXDIM);
  sr_tensor *t = view_of(x);
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) { t->shape[d] = shape[d]; t->stride[d] = stride[d]; }
  t->offset = offset;
  return checked(op, t);
}

sr_tensor *sr_as_strided(sr_tensor *x, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  return as_strided("as_strided", x, ndim, shape, stride, offset);
}

/* the strides of x viewed as shape (numel already checked equal), as torch's computeStride:
** split the old dims into chunks that are contiguous among themselves; each chunk must be
** covered exactly by a run of new dims. false when no view exists. */
static bool view_strides(const sr_tensor *x, int64_t n, int ndim, const int64_t *shape, int64_t *stride) {
  if (x->ndim == 0 || n == 0) {  /* any shape of a scalar or an empty tensor is contiguous */
    int64_t st = 1;
    for (int d = ndim - 1; d >= 0; d--) { stride[d] = st; st *= shape[d]; }
    return true;
  }
  int vd = ndim - 1;
  int64_t base = x->stride[x->ndim - 1], tnumel = 1, vnumel = 1;
  for (int td = x->ndim - 1; td >= 0; td--) {
    tnumel *= x->shape[td];
    if (td == 0 || (x->shape[td - 1] != 1 && x->stride[td - 1] != tnumel * base)) {
      while (vd >= 0 && (vnumel < tnumel || shape[vd] == 1)) {
        stride[vd] = vnumel * base;
        vnumel *= shape[vd];
        vd--;
      }
      if (vnumel != tnumel) return false;
      if (td > 0) { base = x->stride[td - 1]; tnumel = 1; vnumel = 1; }
    }
  }
  return vd == -1;
}

/* x viewed as shape (every size given), or NULL when the strides allow no view */
sr_tensor *sr_view_try(sr_tensor *x, int ndim, const int64_t *shape) {
  int64_t stride[SR_MAXDIM];
  if (ndim < 0 || ndim > SR_MAXDIM || sr_shape_numel(ndim, shape) != sr_numel(x)) return NULL;
  if (!view_strides(x, sr_numel(x), ndim, shape, stride)) return NULL;
  return as_strided("view", x, ndim, shape, stride, x->offset);
}

/* view with a new shape: works when each new dim maps onto a run of old dims that is
** contiguous among itself (as torch.view) */
sr_tensor *sr_view(sr_tensor *x, int ndim, const int64_t *shape_in) {
  int64_t shape[SR_MAXDIM], n = sr_numel(x), known = 1;
  int infer = -1;
  char b1[96], b2[96];
  if (ndim < 0 || ndim > SR_MAXDIM) sr_fail("view: %d dimensions (at most %d)", ndim, SR_MAXDIM);
  for (int d = 0; d < ndim; d++) {
    shape[d] = shape_in[d];
    if (shape[d] == -1) {
      if (infer >= 0) sr_fail("view: only one dimension can be -1");
      infer = d;
    } else if (shape[d] < 0) sr_fail("view: bad size %lld", (long long)shape[d]);
    else if (__builtin_mul_overflow(known, shape[d], &known) || known > SR_MAX_NUMEL) known = -1;  /* fits no tensor */
  }
  if (infer >= 0) {
    if (known <= 0 || n % known) sr_fail("view: shape %s does not fit %lld elements", sr_dims_str(ndim, shape_in, b1, 96), (long long)n);
    shape[infer] = n / known;
    known *= shape[infer];
  }
  if (known != n || sr_shape_numel(ndim, shape) != n)
    sr_fail("view: shape %s is invalid for a tensor of shape %s (%lld elements)", sr_dims_str(ndim, shape, b1, 96),
            sr_shape_str(x, b2, 96), (long long)n);
  int64_t stride[SR_MAXDIM];
  if (!view_strides(x, n, ndim, shape, stride))
    sr_fail("view: shape %s is not a view of this %s tensor's strides; use reshape (which copies)",
            sr_dims_str(ndim, shape, b1, 96), sr_shape_str(x, b2, 96));
  return as_strided("view", x, ndim, shape, stride, x->offset);
}

sr_tensor *sr_transpose(sr_tensor *x, int d0, int d1) {
  d0 = wrap_dim("transpose", d0, x->ndim);
  d1 = wrap_dim("transpose", d1, x->ndim);
  sr_tensor *t = view_of(x);
  t->shape[d0] = x->shape[d1]; t->shape[d1] = x->shape[d0];
  t->stride[d0] = x->stride[d1]; t->stride[d1] = x->stride[d0];
  return checked("transpose", t);
}

sr_tensor *sr_permute(sr_tensor *x, const int *perm) {
  int seen[SR_MAXDIM] = {0};
  for (int d = 0; d < x->ndim; d++)  /* before the view: a failure leaks nothing */
    if (seen[wrap_dim("permute", perm[d], x->ndim)]++) sr_fail("permute: dimension %d repeated", perm[d]);
  sr_tensor *t = view_of(x);
  for (int d = 0; d < x->ndim; d++) {
    int p = wrap_dim("permute", perm[d], x->ndim);
    t->shape[d] = x->shape[p];
    t->stride[d] = x->stride[p];
  }
  return checked("permute", t);
}

sr_tensor *sr_narrow(sr_tensor *x, int dim, int64_t start, int64_t length) {
  dim = wrap_dim("narrow", dim, x->ndim);
  if (start < 0) start += x->shape[dim];
  if (start < 0 || length < 0 || start > x->shape[dim] || length > x->shape[dim] - start)
    sr_fail("narrow: range [%lld, %lld) out of bounds for dimension %d of size %lld", (long long)start,
            (long long)(length > INT64_MAX - start ? INT64_MAX : start + length), dim + 1, (long long)x->shape[dim]);
  int64_t skip;
  if (__builtin_mul_overflow(start, x->stride[dim], &skip)) sr_fail("narrow: element offsets overflow");
  sr_tensor *t = view_of(x);
  t->shape[dim] = length;
  if (__builtin_add_overflow(t->offset, skip, &t->offset)) t->offset = -1;  /* refused below */
  return checked("narrow", t);
}

sr_tensor *sr_unsqueeze(sr_tensor *x, int dim) {
  if (x->ndim >= SR_MAXDIM) sr_fail("unsqueeze: already %d dimensions", SR_MAXDIM);
  dim = wrap_dim("unsqueeze", dim, x->ndim + 1);
  sr_tensor *t = view_of(x);
  for (int d = x->ndim; d > dim; d--) { t->shape[d] = x->shape[d - 1]; t->stride[d] = x->stride[d - 1]; }
  t->shape[dim] = 1;
  int64_t st = 1;
  if (dim < x->ndim && __builtin_mul_overflow(x->stride[dim], x->shape[dim], &st)) st = -1;  /* refused below */
  t->stride[dim] = st;
  t->ndim = x->ndim + 1;
  return checked("unsqueeze", t);
}

sr_tensor *sr_squeeze(sr_tensor *x, int dim) {
  if (dim != -100) dim = wrap_dim("squeeze", dim, x->ndim);  /* before the view: a failure leaks nothing */
  sr_tensor *t = view_of(x);
  int k = 0;
  for (int d = 0; d < x->ndim; d++) {
    bool drop = x->shape[d] == 1 && (dim == -100 || d == dim);
    if (!drop) { t->shape[k] = x->shape[d]; t->stride[k] = x->stride[d]; k++; }
  }
  t->ndim = k;
  return checked("squeeze", t);
}

sr_tensor *sr_expand(sr_tensor *x, int ndim, const int64_t *shape) {
  char b1[96], b2[96];
  if (ndim > SR_MAXDIM) sr_fail("expand: %d dimensions (at most %d)", ndim, SR_MAXDIM);
  if (ndim < x->ndim) sr_fail("expand: cannot expand %s to fewer dimensions %s", sr_shape_str(x, b1, 96), sr_dims_str(ndim, shape, b2, 96));
  sr_tensor *t = view_of(x);
  t->ndim = ndim;
  for (int d = ndim - 1, s = x->ndim - 1; d >= 0; d--, s--) {
    int64_t xs = s >= 0 ? x->shape[s] : 1, xst = s >= 0 ? x->stride[s] : 0;
    int64_t want = shape[d] == -1 ? xs : shape[d];
    if (want < 0) {
      sr_tensor_release(t);
      sr_fail("expand: bad size %lld in dimension %d of %s", (long long)shape[d], d + 1, sr_dims_str(ndim, shape, b2, 96));
    }
    if (xs == want) { t->shape[d] = xs; t->stride[d] = xst; }
    else if (xs == 1) { t->shape[d] = want; t->stride[d] = 0; }
    else {
      sr_tensor_release(t);
      sr_fail("expand: shape %s cannot be broadcast to %s", sr_shape_str(x, b1, 96), sr_dims_str(ndim, shape, b2, 96));
    }
  }
  return checked("expand", t);
}

int sr_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int64_t *out) {
  int n = na > nb ? na : nb;
  for (int d = 0; d < n; d++) {
    int64_t x = d < n - na ? 1 : a[d - (n - na)];
    int64_t y = d < n - nb ? 1 : b[d - (n - nb)];
    if (x != y && x != 1 && y != 1) return -1;
    out[d] = x == 1 ? y : x;
  }
  return n;
}
