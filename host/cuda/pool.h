/*
** cuda/pool.h: the bookkeeping of the CUDA caching allocator (cuda/backend.c), device-agnostic so
** that the CPU tests drive it with malloc (tests/cuda/test_pool.c).
**
** Blocks are handed out and kept on free lists per (pool, size) when freed. A request of at most
** SR_POOL_SMALL_MAX bytes is rounded up to a size class (eight per octave: at most 1/8 larger) and
** carved with its class's siblings from one SR_POOL_SEGMENT-byte driver allocation (a step's
** thousands of small tensors cost a few driver calls, not one each); a larger request gets a
** driver allocation of its own and reuses a free block at most 1/8 larger. Pool 0 is the ordinary
** pool; other pools are CUDA graphs' private pools, whose blocks are never handed out elsewhere.
** A capture starts from what the step before it used: with the allocation log on for that step,
** sr_pool_adopt moves the ordinary pool's free blocks of the sizes it logged (as many of each as
** the step held at once) into the capture's pool, so the captured step (the same requests) makes
** no driver calls, and sr_pool_unadopt gives the ones it did not take back to pool 0.
** Lending: between a graph's replays its pool's free blocks hold nothing (the captured step writes
** each before it reads it), so work beside the graph that finds no memory elsewhere may borrow one
** (sr_pool_alloc_lent: marked lent, still the graph's); freed, it is the graph's free block again.
** The graph must not replay while a block lent from its pool is in use (sr_pool_lent_live).
** Not thread-safe: one host thread drives the device.
*/
#ifndef SR_CUDA_POOL_H
#define SR_CUDA_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SR_POOL_ALIGN 512                       /* every block size is a multiple of this */
#define SR_POOL_SMALL_MAX ((size_t)1 << 20)     /* requests up to this are carved from segments */
#define SR_POOL_SEGMENT ((size_t)2 << 20)       /* ... of this many bytes */

typedef struct sr_pool_blk {
  void *p;
  size_t size;
  int pool;   /* 0 ordinary, >0 a graph's private pool (the backend moves live blocks between pools) */
  int inuse;
  int noted;  /* the backend's mark: the capture (its pool) that noted this ordinary block */
  int seg;    /* the segment it was carved from, -1: a driver allocation of its own */
  int adopted;  /* moved from pool 0 by sr_pool_adopt, not handed out since */
  int logged;   /* handed out while the allocation log was on (its free counts against the log) */
  int lent;     /* a graph pool's free block handed out to other work (sr_pool_alloc_lent), in use */
} sr_pool_blk;

typedef struct sr_pool_driver {
  void *(*alloc)(size_t nbytes, void *ctx);   /* NULL when refused (out of memory, a cap) */
  void (*release)(void *p, void *ctx);
  void *ctx;
} sr_pool_driver;

void sr_pool_set_driver(const sr_pool_driver *d);
void sr_pool_set_carving(bool on);             /* off: every block its own driver allocation (A/B) */
size_t sr_pool_size_for(size_t nbytes);        /* the block size a request of nbytes gets */
/* a block of at least nbytes for `pool`, reused or from the driver (its size in *size when not
** NULL); NULL when the driver refuses */
void *sr_pool_alloc(size_t nbytes, int pool, size_t *size);
/* a free block of graph pool `pool` (> 0) for other work, of the size sr_pool_alloc would give
** (a large request: at most 1/8 larger), lent: no driver call, no carving; NULL when it has none */
void *sr_pool_alloc_lent(size_t nbytes, int pool, size_t *size);
/* the blocks lent from `pool` that are still in use (while any is, the graph must not replay) */
int sr_pool_lent_live(int pool);
int sr_pool_free(void *p);                     /* the freed block's index, -1: not ours or not in use */
int sr_pool_find(const void *p);               /* the index of the block starting at p, or -1 */
sr_pool_blk *sr_pool_at(int i);
int sr_pool_count(void);
/* gives free memory back to the driver: every free block of its own, every segment whose blocks
** are all free (pool_only: of `pool` only). A pool other than 0 is released when it dies: its
** free blocks that must stay (siblings of live ones in a segment) join pool 0 */
void sr_pool_release_free(bool pool_only, int pool);
/* the allocation log: on, it starts empty and counts, per block size, the blocks handed out and
** not yet freed, keeping each size's most at once; off, it keeps what it counted */
void sr_pool_log(bool on);
/* at the start of a capture into `pool` (> 0): free blocks of pool 0 move to `pool`, per size as
** many as the log's most at once (lowest index first), in all at most the bytes the logged blocks
** held at once; the log is cleared and off. Returns how many moved */
int sr_pool_adopt(int pool);
/* the most bytes the logged blocks held at once (0: nothing logged since the log was last cleared) */
size_t sr_pool_log_peak(void);
/* after the capture: the blocks sr_pool_adopt moved to `pool` that were not handed out since go
** back to pool 0. Returns how many */
int sr_pool_unadopt(int pool);
size_t sr_pool_reserved(void);                 /* bytes held from the driver */
int64_t sr_pool_driver_allocs(void);           /* driver allocations made so far */
void sr_pool_reset(void);                      /* forgets everything without releasing (tests) */

#endif
