/*
** core/profile.c: the per-op profiler (profile.h). Aggregates live in an array indexed by an
** open-addressing hash table of their keys; CPU calls are timed by the monotonic clock, CUDA calls
** by a reusable pool of event pairs recorded on the stream, read (after waiting for the stream)
** when the profile stops or the pool is full. Every CUDA call is checked.
*/
#include <stdio.h>     /* defines: snprintf */
#include <stdlib.h>    /* defines: realloc, calloc, malloc, free, qsort */
#include <string.h>    /* defines: strcmp, memset */

#include "core/profile.h"   /* defines: the API implemented here */
#include "util/clock.h"     /* defines: sr_monotonic_s */
#include "core/tensor.h"    /* defines: sr_fail, sr_numel, sr_dtype_name */
#include "core/fuse.h"      /* defines: sr_fuse_last_dispatch, SR_FUSE_HELD, SR_FUSE_GROUP */
#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>  /* defines: cudaEvent_t, cudaEventRecord, cudaEventElapsedTime */
#include "cuda/backend.h"  /* defines: sr_cuda_stream, sr_cuda_capturing */
#endif

bool sr_profile_on;

/* ---- the aggregates */

typedef struct entry {
  sr_profile_row row;
  uint64_t hash;
} entry;

static entry *entries;
static int nentries, entries_cap;
static int *slots;   /* [nslots] (a power of 2): 1 + the index of an entry, 0 when empty */
static int nslots;

static void *grow(void *p, size_t nbytes) {
  void *q = realloc(p, nbytes);
  if (!q) sr_fail("profile: out of host memory (%zu bytes)", nbytes);
  return q;
}

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

/* name, sub and dtype are static strings: their addresses identify them */
static uint64_t key_hash(const char *name, const char *sub, const char *dtype, const char *phase) {
  uint64_t h = mix(mix(mix(0xcbf29ce484222325ull, (uintptr_t)name), (uintptr_t)sub), (uintptr_t)dtype);
  for (const char *p = phase; *p; p++) h = mix(h, (unsigned char)*p);
  return h;
}

static void rehash(int n) {
  free(slots);
  slots = calloc((size_t)n, sizeof *slots);
  if (!slots) sr_fail("profile: out of host memory");
  nslots = n;
  for (int k = 0; k < nentries; k++) {
    size_t s = entries[k].hash & (size_t)(nslots - 1);
    while (slots[s]) s = (s + 1) & (size_t)(nslots - 1);
    slots[s] = k + 1;
  }
}

/* the index of the key's entry, made (with no calls yet) when it is new */
static int entry_for(const char *name, const char *sub, const char *dtype, const char *phase) {
  uint64_t h = key_hash(name, sub, dtype, phase);
  if (2 * (nentries + 1) > nslots) rehash(nslots ? 2 * nslots : 256);
  size_t s = h & (size_t)(nslots - 1);
  for (; slots[s]; s = (s + 1) & (size_t)(nslots - 1)) {
    const entry *e = &entries[slots[s] - 1];
    if (e->hash == h && e->row.name == name && e->row.sub == sub && e->row.dtype == dtype && !strcmp(e->row.phase, phase))
      return slots[s] - 1;
  }
  if (nentries == entries_cap) {
    entries_cap = entries_cap ? 2 * entries_cap : 256;
    entries = grow(entries, (size_t)entries_cap * sizeof *entries);
  }
  entry *e = &entries[nentries];
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->row.name = name;
  e->row.sub = sub;
  e->row.dtype = dtype;
  snprintf(e->row.phase, sizeof e->row.phase, "%s", phase);
  slots[s] = ++nentries;
  return nentries - 1;
}

/* the call's aggregate, its calls and largest numel updated (its time is added by the caller); a
** call that ran a fused group of the step compiler counts as "fused", its sub the group's label */
static entry *count_call(sr_kernel_id id, const sr_kcall *c) {
  const char *sub = NULL, *label, *name = sr_kernels[id].name;
  if (sr_fuse_last_dispatch(&label) == SR_FUSE_GROUP) name = "fused", sub = label;
  else if (id == SR_K_unary || id == SR_K_unary_backward) sub = sr_unary_name((int)c->i[0]);
  else if (id == SR_K_binary) sub = sr_binary_name((int)c->i[0]);
  else if (id == SR_K_reduce) sub = sr_reduce_name((int)c->i[0]);
  const sr_tensor *first = c->nt > 0 && c->t[0] ? c->t[0] : c->nlist > 0 ? c->list[0] : NULL;
  char phase[64];
  const char *node = sr_phase_node();
  if (node) snprintf(phase, sizeof phase, "bwd:%s", node);
  else snprintf(phase, sizeof phase, "%s", sr_phase_backward() ? "bwd:accumulate" : "fwd");
  int k = entry_for(name, sub, first ? sr_dtype_name(first->dtype) : "-", phase);  /* may move entries */
  entry *e = &entries[k];
  e->row.calls++;
  int64_t numel = first ? sr_numel(first) : 0;
  if (numel > e->row.numel) e->row.numel = numel;
  return e;
}

/* the step compiler held the call for a group: nothing ran, nothing to count (the group's time goes
** to the call that runs it) */
static bool held_for_group(void) {
  const char *label;
  return sr_fuse_last_dispatch(&label) == SR_FUSE_HELD;
}

/* ---- CUDA: event pairs, read in order when the pool is full or the profile stops */

#ifdef SPEEDRUN_CUDA
#define SR_PROFILE_MAX_PAIRS 16384

static cudaEvent_t *ev_before, *ev_after;  /* [pairs_made] */
static int *pair_entry;                    /* [pairs_made] the entry each used pair times */
static int pairs_made, pairs_used;
static char cuda_errbuf[256];

/* NULL, or "profile: <what>: <CUDA's message>" */
static const char *cuda_check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return NULL;
  snprintf(cuda_errbuf, sizeof cuda_errbuf, "profile: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return cuda_errbuf;
}

static void cuda_must(cudaError_t e, const char *what) {
  const char *err = cuda_check(e, what);
  if (err) sr_fail("%s", err);
}

/* waits for the stream and adds every used pair's time to its entry */
static const char *read_pairs(void) {
  if (!pairs_used) return NULL;
  const char *err = cuda_check(cudaStreamSynchronize((cudaStream_t)sr_cuda_stream()), "cudaStreamSynchronize");
  for (int k = 0; k < pairs_used && !err; k++) {
    float ms = 0;
    err = cuda_check(cudaEventElapsedTime(&ms, ev_before[k], ev_after[k]), "cudaEventElapsedTime");
    entries[pair_entry[k]].row.ms += ms;
  }
  pairs_used = 0;
  return err;
}

/* a free pair: made once and reused; a full pool is read first */
static int take_pair(void) {
  if (pairs_used == SR_PROFILE_MAX_PAIRS) {
    const char *err = read_pairs();
    if (err) sr_fail("%s", err);
  }
  if (pairs_used == pairs_made) {
    int n = pairs_made ? 2 * pairs_made : 256;
    if (n > SR_PROFILE_MAX_PAIRS) n = SR_PROFILE_MAX_PAIRS;
    ev_before = grow(ev_before, (size_t)n * sizeof *ev_before);
    ev_after = grow(ev_after, (size_t)n * sizeof *ev_after);
    pair_entry = grow(pair_entry, (size_t)n * sizeof *pair_entry);
    for (; pairs_made < n; pairs_made++) {
      cuda_must(cudaEventCreate(&ev_before[pairs_made]), "cudaEventCreate");
      cuda_must(cudaEventCreate(&ev_after[pairs_made]), "cudaEventCreate");
    }
  }
  return pairs_used;
}

static int pending_pair = -1;  /* the pair of the call under way, -1 when it is not timed */

static void cuda_before(void) {
  if (sr_cuda_capturing()) return;  /* a captured call runs at replay: not timed */
  pending_pair = take_pair();
  cuda_must(cudaEventRecord(ev_before[pending_pair], (cudaStream_t)sr_cuda_stream()), "cudaEventRecord");
}

static void cuda_after(sr_kernel_id id, const sr_kcall *c) {
  int k = pending_pair;
  if (k < 0) return;
  pending_pair = -1;
  if (held_for_group()) return;  /* the pair is taken again by the next call */
  cuda_must(cudaEventRecord(ev_after[k], (cudaStream_t)sr_cuda_stream()), "cudaEventRecord");
  pair_entry[k] = (int)(count_call(id, c) - entries);
  pairs_used++;
}
#endif

/* ---- the API */

/* ---- the dispatch observer: CPU calls by the wall clock, CUDA calls by event pairs */

static double cpu_t0;

static void profile_before(sr_kernel_id id, const sr_kcall *c, int dev) {
#ifdef SPEEDRUN_CUDA
  if (dev == SR_CUDA) { cuda_before(); return; }
#endif
  cpu_t0 = sr_monotonic_s();
}

static void profile_after(sr_kernel_id id, const sr_kcall *c, int dev) {
#ifdef SPEEDRUN_CUDA
  if (dev == SR_CUDA) { cuda_after(id, c); return; }
#endif
  double ms = 1e3 * (sr_monotonic_s() - cpu_t0);
  if (held_for_group()) return;
  count_call(id, c)->row.ms += ms;
}

static const sr_observer profile_observer = {.before = profile_before, .after = profile_after};

const char *sr_profile_start(void) {
  if (sr_profile_on) return "profile.start: a profile is already running (call profile.stop() first)";
  nentries = 0;
  if (slots) memset(slots, 0, (size_t)nslots * sizeof *slots);
#ifdef SPEEDRUN_CUDA
  pairs_used = 0;
  pending_pair = -1;
#endif
  sr_profile_on = true;
  sr_observer_add(&profile_observer);
  return NULL;
}

static int by_ms_desc(const void *pa, const void *pb) {
  const sr_profile_row *a = pa, *b = pb;
  if (a->ms != b->ms) return a->ms > b->ms ? -1 : 1;
  int d = strcmp(a->name, b->name);
  if (!d) d = strcmp(a->sub ? a->sub : "", b->sub ? b->sub : "");
  if (!d) d = strcmp(a->dtype, b->dtype);
  return d ? d : strcmp(a->phase, b->phase);
}

const char *sr_profile_stop(sr_profile_row **rows, int *nrows) {
  *rows = NULL;
  *nrows = 0;
  if (!sr_profile_on) return "profile.stop: no profile is running (call profile.start() first)";
#ifdef SPEEDRUN_CUDA
  if (sr_cuda_capturing()) return "profile.stop: a CUDA graph is being captured (the profile keeps running; stop it after the capture)";
#endif
  sr_profile_on = false;
  sr_observer_remove(&profile_observer);
#ifdef SPEEDRUN_CUDA
  const char *err = read_pairs();
  if (err) return err;
#endif
  sr_profile_row *out = malloc((size_t)(nentries ? nentries : 1) * sizeof *out);
  if (!out) return "profile.stop: out of host memory";
  for (int k = 0; k < nentries; k++) out[k] = entries[k].row;
  qsort(out, (size_t)nentries, sizeof *out, by_ms_desc);
  *rows = out;
  *nrows = nentries;
  return NULL;
}
