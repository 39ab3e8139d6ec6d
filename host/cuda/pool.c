/*
** cuda/pool.c: the caching allocator's bookkeeping (see cuda/pool.h), kept free of CUDA so the CPU
** tests run it. Three tables:
** - blocks[]: every block handed out at least once (pointer, size, pool, in use), with a pointer
**   map (open addressing) from a block's start to its index;
** - the size lists: per (pool, size), a min-heap of the indices of its free blocks, so a request
**   takes the lowest-index free block of its size, as a scan over blocks[] would (the same
**   request sequence gets the same blocks, step after step), in O(log n); small classes also
**   remember the segment they are carving;
** - segs[]: the driver allocations small blocks are carved from, one size class each, carved one
**   block at a time as requests miss (a class costs one driver call per SR_POOL_SEGMENT bytes);
** and the allocation log (per block size: held now, most held at once) a capture adopts from.
*/
#include <stdlib.h>   /* defines: calloc, realloc, free, abort */
#include <string.h>   /* defines: memset */

#include "cuda/pool.h"

typedef struct sizelist {
  size_t size;  /* 0: an empty slot of the table */
  int pool;
  int *heap, n, cap;
  int open;     /* small classes: the segment being carved for this list, -1 */
} sizelist;

typedef struct seg {
  char *base;
  size_t size, used;
  int pool;
  size_t cls;
} seg;

static sr_pool_driver drv;
static sr_pool_blk *blocks;
static int nblocks, capblocks;
static int *slot, capslot;            /* pointer -> index in blocks[] (+1; 0 empty) */
static sizelist *lists;
static int nlists, caplists;
static seg *segs;
static int nsegs, capsegs;
static size_t reserved;
static int64_t driver_allocs;
static bool carving = true;

typedef struct logent { size_t size; int now, most; } logent;
static logent *logv;                  /* the allocation log, one entry per block size */
static int nlog, caplog;
static bool logging;
static size_t log_bytes, log_peak;    /* the logged blocks' bytes held now, and at most at once */

static void *grow(void *p, int *cap, size_t elem) {
  int n = *cap ? 2 * *cap : 256;
  void *q = realloc(p, (size_t)n * elem);
  if (!q) abort();   /* host bookkeeping out of memory: nothing sensible is left to do */
  *cap = n;
  return q;
}

void sr_pool_set_driver(const sr_pool_driver *d) { drv = *d; }
void sr_pool_set_carving(bool on) { carving = on; }

size_t sr_pool_size_for(size_t nbytes) {
  size_t want = nbytes ? (nbytes + SR_POOL_ALIGN - 1) / SR_POOL_ALIGN * SR_POOL_ALIGN : SR_POOL_ALIGN;
  if (want > SR_POOL_SMALL_MAX || want <= 8 * SR_POOL_ALIGN) return want;
  int b = 63 - __builtin_clzll((unsigned long long)want);
  size_t step = (size_t)1 << (b - 3);   /* eight classes per octave: at most 1/8 larger */
  return (want + step - 1) / step * step;
}

/* ---- the pointer map */

static size_t hash_ptr(const void *p) { return (size_t)(((uintptr_t)p >> 9) * 0x9E3779B97F4A7C15ull); }

static void map_put(const void *p, int idx) {
  size_t m = (size_t)capslot - 1, h = hash_ptr(p) & m;
  while (slot[h] > 0 && blocks[slot[h] - 1].p != p) h = (h + 1) & m;
  slot[h] = idx + 1;
}

static void map_rebuild(int cap) {
  free(slot);
  slot = calloc((size_t)cap, sizeof *slot);
  if (!slot) abort();
  capslot = cap;
  for (int i = 0; i < nblocks; i++) map_put(blocks[i].p, i);
}

int sr_pool_find(const void *p) {
  if (!capslot) return -1;
  size_t m = (size_t)capslot - 1, h = hash_ptr(p) & m;
  while (slot[h] != 0) {
    if (blocks[slot[h] - 1].p == p) return slot[h] - 1;
    h = (h + 1) & m;
  }
  return -1;
}

/* ---- the size lists */

static size_t hash_key(size_t size, int pool) { return (size_t)((size / SR_POOL_ALIGN) * 0x9E3779B97F4A7C15ull) ^ (size_t)pool; }

static sizelist *list_slot(size_t size, int pool) {
  size_t m = (size_t)caplists - 1, h = hash_key(size, pool) & m;
  while (lists[h].size && !(lists[h].size == size && lists[h].pool == pool)) h = (h + 1) & m;
  return &lists[h];
}

static void lists_clear(int cap) {
  for (int i = 0; i < caplists; i++) free(lists[i].heap);
  free(lists);
  lists = calloc((size_t)cap, sizeof *lists);
  if (!lists) abort();
  caplists = cap;
  nlists = 0;
}

/* the list of (size, pool), made when `make` (the table doubles at half full, lists kept) */
static sizelist *list_of(size_t size, int pool, int make) {
  if (!caplists) { if (!make) return NULL; lists_clear(256); }
  sizelist *l = list_slot(size, pool);
  if (l->size || !make) return l->size ? l : NULL;
  if (2 * (nlists + 1) > caplists) {
    sizelist *old = lists;
    int oldcap = caplists;
    lists = calloc((size_t)(2 * oldcap), sizeof *lists);
    if (!lists) abort();
    caplists = 2 * oldcap;
    for (int i = 0; i < oldcap; i++)
      if (old[i].size) *list_slot(old[i].size, old[i].pool) = old[i];
    free(old);
    l = list_slot(size, pool);
  }
  *l = (sizelist){.size = size, .pool = pool, .open = -1};
  nlists++;
  return l;
}

static void heap_swap(sizelist *l, int a, int b) { int t = l->heap[a]; l->heap[a] = l->heap[b]; l->heap[b] = t; }

static void heap_down(sizelist *l, int k) {
  for (;;) {
    int c = 2 * k + 1;
    if (c >= l->n) return;
    if (c + 1 < l->n && l->heap[c + 1] < l->heap[c]) c++;
    if (l->heap[k] <= l->heap[c]) return;
    heap_swap(l, k, c);
    k = c;
  }
}

static void heap_push(sizelist *l, int i) {
  if (l->n == l->cap) l->heap = grow(l->heap, &l->cap, sizeof *l->heap);
  int k = l->n++;
  l->heap[k] = i;
  while (k > 0 && l->heap[(k - 1) / 2] > l->heap[k]) { heap_swap(l, k, (k - 1) / 2); k = (k - 1) / 2; }
}

static int heap_pop(sizelist *l) {
  int top = l->heap[0];
  l->heap[0] = l->heap[--l->n];
  heap_down(l, 0);
  return top;
}

static void push_free(int i) { heap_push(list_of(blocks[i].size, blocks[i].pool, 1), i); }

/* ---- blocks and segments */

static int add_block(void *p, size_t size, int pool, int sg) {
  if (nblocks == capblocks) blocks = grow(blocks, &capblocks, sizeof *blocks);
  if (2 * (nblocks + 1) > capslot) map_rebuild(capslot ? 2 * capslot : 1024);
  blocks[nblocks] = (sr_pool_blk){.p = p, .size = size, .pool = pool, .seg = sg};
  map_put(p, nblocks);
  return nblocks++;
}

static void *driver_alloc(size_t n) {
  void *p = drv.alloc ? drv.alloc(n, drv.ctx) : NULL;
  if (p) { reserved += n; driver_allocs++; }
  return p;
}

/* the next block of a small class: from the segment the class is carving, else a new one */
static int carve(sizelist *l, size_t cls, int pool) {
  seg *s = l->open >= 0 ? &segs[l->open] : NULL;
  if (!s || s->used + cls > s->size) {
    char *base = driver_alloc(SR_POOL_SEGMENT);
    if (!base) return -1;
    if (nsegs == capsegs) segs = grow(segs, &capsegs, sizeof *segs);
    segs[nsegs] = (seg){base, SR_POOL_SEGMENT, 0, pool, cls};
    l->open = nsegs++;
    s = &segs[l->open];
  }
  int i = add_block(s->base + s->used, cls, pool, l->open);
  s->used += cls;
  return i;
}

/* a free block of `pool` larger than want by at most 1/8: the smallest, then the lowest index */
static int best_fit(size_t want, int pool) {
  sizelist *best = NULL;
  for (int k = 0; k < caplists; k++) {
    sizelist *l = &lists[k];
    if (!l->size || !l->n || l->pool != pool || l->size < want || l->size > want + want / 8) continue;
    if (!best || l->size < best->size) best = l;
  }
  return best ? heap_pop(best) : -1;
}

/* the log's entry for blocks of `size` (made when `make`), or NULL */
static logent *log_of(size_t size, int make) {
  for (int k = 0; k < nlog; k++)
    if (logv[k].size == size) return &logv[k];
  if (!make) return NULL;
  if (nlog == caplog) logv = grow(logv, &caplog, sizeof *logv);
  logv[nlog] = (logent){size, 0, 0};
  return &logv[nlog++];
}

static void rebuild(void);

/* block i handed out: in use, counted in the log when it is on; its pointer */
static void *hand_out(int i, size_t *size) {
  blocks[i].inuse = 1;
  blocks[i].adopted = 0;
  if (logging) {
    logent *e = log_of(blocks[i].size, 1);
    if (++e->now > e->most) e->most = e->now;
    blocks[i].logged = 1;
    log_bytes += blocks[i].size;
    if (log_bytes > log_peak) log_peak = log_bytes;
  }
  if (size) *size = blocks[i].size;
  return blocks[i].p;
}

void *sr_pool_alloc(size_t nbytes, int pool, size_t *size) {
  size_t want = sr_pool_size_for(nbytes);
  bool small = carving && want <= SR_POOL_SMALL_MAX;
  sizelist *l = list_of(want, pool, 1);
  int i = l->n ? heap_pop(l) : -1;
  if (i < 0 && !small) i = best_fit(want, pool);
  if (i < 0 && small) i = carve(l, want, pool);
  if (i < 0 && !small) {
    void *p = driver_alloc(want);
    if (p) i = add_block(p, want, pool, -1);
  }
  return i < 0 ? NULL : hand_out(i, size);
}

void *sr_pool_alloc_lent(size_t nbytes, int pool, size_t *size) {
  if (pool <= 0) return NULL;
  size_t want = sr_pool_size_for(nbytes);
  sizelist *l = list_of(want, pool, 0);
  int i = l && l->n ? heap_pop(l) : -1;
  if (i < 0 && !(carving && want <= SR_POOL_SMALL_MAX)) i = best_fit(want, pool);
  if (i < 0) return NULL;
  blocks[i].lent = 1;
  return hand_out(i, size);
}

int sr_pool_lent_live(int pool) {
  int n = 0;
  for (int i = 0; i < nblocks; i++) n += blocks[i].pool == pool && blocks[i].inuse && blocks[i].lent;
  return n;
}

int sr_pool_free(void *p) {
  int i = p ? sr_pool_find(p) : -1;
  if (i < 0 || !blocks[i].inuse) return -1;   /* not ours, or freed twice */
  blocks[i].inuse = 0;
  blocks[i].lent = 0;   /* a lent block is its graph's free block again */
  if (logging && blocks[i].logged) {
    log_of(blocks[i].size, 1)->now--;
    log_bytes -= blocks[i].size;
  }
  blocks[i].logged = 0;
  push_free(i);
  return i;
}

/* ---- the allocation log and the adoption of its blocks by a capture */

void sr_pool_log(bool on) {
  if (on) {
    nlog = 0;
    log_bytes = log_peak = 0;
    for (int i = 0; i < nblocks; i++) blocks[i].logged = 0;
  }
  logging = on;
}

int sr_pool_adopt(int pool) {
  int moved = 0;
  size_t bytes = 0;   /* at most what the step held at once: the sizes' maxima need not coincide */
  for (int i = 0; pool > 0 && i < nblocks; i++) {
    sr_pool_blk *b = &blocks[i];
    logent *e = b->inuse || b->pool != 0 ? NULL : log_of(b->size, 0);
    if (!e || e->most <= 0 || bytes + b->size > log_peak) continue;
    e->most--;
    bytes += b->size;
    b->pool = pool;
    b->adopted = 1;
    moved++;
  }
  nlog = 0;
  log_bytes = log_peak = 0;
  logging = false;
  if (moved) rebuild();
  return moved;
}

size_t sr_pool_log_peak(void) { return log_peak; }

int sr_pool_unadopt(int pool) {
  int moved = 0;
  for (int i = 0; i < nblocks; i++) {
    sr_pool_blk *b = &blocks[i];
    if (b->pool != pool || !b->adopted) continue;
    b->adopted = 0;
    if (!b->inuse) { b->pool = 0; moved++; }
  }
  if (moved) rebuild();
  return moved;
}

sr_pool_blk *sr_pool_at(int i) { return i >= 0 && i < nblocks ? &blocks[i] : NULL; }
int sr_pool_count(void) { return nblocks; }
size_t sr_pool_reserved(void) { return reserved; }
int64_t sr_pool_driver_allocs(void) { return driver_allocs; }

/* the map and the size lists from blocks[] and segs[] (after a compaction) */
static void rebuild(void) {
  map_rebuild(capslot ? capslot : 1024);
  lists_clear(caplists ? caplists : 256);
  for (int i = 0; i < nblocks; i++)
    if (!blocks[i].inuse) push_free(i);
  for (int s = 0; s < nsegs; s++)
    if (segs[s].used + segs[s].cls <= segs[s].size) list_of(segs[s].cls, segs[s].pool, 1)->open = s;
}

void sr_pool_release_free(bool pool_only, int pool) {
  char *drop = calloc((size_t)nsegs + 1, 1);
  int *remap = calloc((size_t)nsegs + 1, sizeof *remap);
  if (!drop || !remap) abort();
  for (int s = 0; s < nsegs; s++) drop[s] = 1;
  for (int i = 0; i < nblocks; i++) {   /* a segment goes only when every block carved from it is free and of the pool */
    sr_pool_blk *b = &blocks[i];
    if (b->seg >= 0 && (b->inuse || (pool_only && b->pool != pool))) drop[b->seg] = 0;
  }
  int j = 0;
  for (int i = 0; i < nblocks; i++) {
    sr_pool_blk b = blocks[i];
    int gone = b.seg >= 0 ? drop[b.seg] : !b.inuse && (!pool_only || b.pool == pool);
    if (gone && b.seg < 0) { drv.release(b.p, drv.ctx); reserved -= b.size; }
    if (!gone) blocks[j++] = b;
  }
  nblocks = j;
  int k = 0;
  for (int s = 0; s < nsegs; s++) {
    if (drop[s]) { drv.release(segs[s].base, drv.ctx); reserved -= segs[s].size; remap[s] = -1; }
    else { segs[k] = segs[s]; remap[s] = k++; }
  }
  nsegs = k;
  for (int i = 0; i < nblocks; i++) {
    if (blocks[i].seg >= 0) blocks[i].seg = remap[blocks[i].seg];
    /* a dead pool's blocks that stay (siblings of live blocks) are ordinary from now on */
    if (pool_only && pool != 0 && !blocks[i].inuse && blocks[i].pool == pool) blocks[i].pool = 0, blocks[i].adopted = 0;
  }
  if (pool_only && pool != 0)
    for (int s = 0; s < nsegs; s++)
      if (segs[s].pool == pool) segs[s].pool = 0;
  free(drop);
  free(remap);
  rebuild();
}

void sr_pool_reset(void) {
  free(blocks); blocks = NULL; nblocks = capblocks = 0;
  free(slot); slot = NULL; capslot = 0;
  for (int i = 0; i < caplists; i++) free(lists[i].heap);
  free(lists); lists = NULL; caplists = nlists = 0;
  free(segs); segs = NULL; nsegs = capsegs = 0;
  reserved = 0; driver_allocs = 0;
  free(logv); logv = NULL; nlog = caplog = 0; logging = false; log_bytes = log_peak = 0;
}
