/*
** test_pool.c: the CUDA caching allocator's bookkeeping (cuda/pool.c) on the CPU, malloc as the
** driver: size classes; small blocks carved from shared segments (one driver call for many
** blocks); reuse of the lowest-index free block of a size; pools kept apart; large blocks reused
** up to 1/8 larger and no more; segments given back only when wholly free; a dead pool's
** leftovers joining pool 0; a refusing driver; a capture adopting the cached blocks the step before
** it logged; a graph pool's free blocks lent to other work (no driver call, back to the graph when
** freed, counted while in use); and a random workload checked against a model (live blocks disjoint, inside what the
** driver gave, reserved bytes = what the driver holds).
*/
#include <stdio.h>      /* defines: fprintf */
#include <stdlib.h>     /* defines: malloc, free, rand */
#include <string.h>     /* defines: memset */

#include "cuda/pool.h"  /* defines: sr_pool_alloc, sr_pool_free, sr_pool_release_free */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* the driver: malloc, with the live allocations listed and a switch to refuse */
#define MAXDRV 4096
static struct { char *p; size_t n; } held[MAXDRV];
static int nheld, refuse, calls;

static void *drv_alloc(size_t n, void *ctx) {
  (void)ctx;
  calls++;
  if (refuse || nheld == MAXDRV) return NULL;
  char *p = malloc(n);
  held[nheld].p = p;
  held[nheld++].n = n;
  return p;
}

static void drv_release(void *p, void *ctx) {
  (void)ctx;
  for (int i = 0; i < nheld; i++)
    if (held[i].p == p) { free(p); held[i] = held[--nheld]; return; }
  CHECK(0, "released %p, which the driver never gave", p);
}

static size_t held_bytes(void) { size_t s = 0; for (int i = 0; i < nheld; i++) s += held[i].n; return s; }

/* [p, p + n) inside one driver allocation */
static int inside(const char *p, size_t n) {
  for (int i = 0; i < nheld; i++)
    if (p >= held[i].p && p + n <= held[i].p + held[i].n) return 1;
  return 0;
}

static void fresh(void) {
  sr_pool_release_free(0, 0);
  sr_pool_reset();
  for (int i = 0; i < nheld; i++) free(held[i].p);
  nheld = refuse = calls = 0;
}

static void test_size_classes(void) {
  CHECK(sr_pool_size_for(0) == 512 && sr_pool_size_for(1) == 512 && sr_pool_size_for(513) == 1024, "alignment");
  CHECK(sr_pool_size_for(4096) == 4096 && sr_pool_size_for(4097) == 4608, "512-byte steps up to 4 KiB");
  CHECK(sr_pool_size_for(100000) == 106496, "8 classes an octave: 100000 -> %zu", sr_pool_size_for(100000));
  for (size_t n = 1; n < ((size_t)3 << 20); n = n * 5 / 4 + 7) {
    size_t c = sr_pool_size_for(n);
    CHECK(c >= n && c % 512 == 0 && (c <= 4096 || c - n <= n / 8 + 512), "class of %zu is %zu", n, c);
  }
  CHECK(sr_pool_size_for(((size_t)3 << 20) + 1) == ((size_t)3 << 20) + 512, "large: 512-aligned only");
}

static void test_small_carved(void) {
  fresh();
  void *p[100];
  for (int i = 0; i < 100; i++) p[i] = sr_pool_alloc(1000, 0, NULL);
  CHECK(sr_pool_driver_allocs() == 1 && calls == 1, "100 blocks of 1 KiB from one segment: %d driver calls", calls);
  CHECK(sr_pool_reserved() == SR_POOL_SEGMENT, "reserved %zu", sr_pool_reserved());
  for (int i = 0; i < 100; i++) {
    CHECK(inside(p[i], 1024), "block %d outside the segment", i);
    if (i) CHECK((char *)p[i] - (char *)p[i - 1] == 1024, "blocks carved one after the other");
    CHECK(sr_pool_find(p[i]) == i && sr_pool_at(i)->size == 1024 && sr_pool_at(i)->seg == 0, "block %d", i);
  }
  /* the lowest-index free block of the size comes back first, whatever the order of frees */
  sr_pool_free(p[70]); sr_pool_free(p[3]); sr_pool_free(p[40]);
  CHECK(sr_pool_alloc(1000, 0, NULL) == p[3] && sr_pool_alloc(900, 0, NULL) == p[40] && sr_pool_alloc(1024, 0, NULL) == p[70], "lowest index first");
  CHECK(sr_pool_free(p[5]) == 5 && sr_pool_free(p[5]) == -1, "a double free is refused");
  CHECK(sr_pool_free((char *)p[6] + 8) == -1, "a pointer inside a block is not a block");
  /* another class, another segment; another pool, another segment */
  void *q = sr_pool_alloc(3000, 0, NULL), *r = sr_pool_alloc(1000, 1, NULL);
  CHECK(calls == 3 && q != r && inside(q, 3072) && inside(r, 1024), "a segment per class and pool: %d calls", calls);
  CHECK(sr_pool_alloc(1000, 1, NULL) != p[5], "pool 1 never gets pool 0's free block");
  CHECK(sr_pool_alloc(1000, 0, NULL) == p[5], "pool 0 does");
  /* a full segment opens the next: 2 MiB / 1 KiB = 2048 blocks per segment */
  for (int i = 0; i < 2048; i++) sr_pool_alloc(1024, 0, NULL);
  CHECK(calls == 4, "the 2049th 1-KiB block opened a second segment: %d calls", calls);
}

static void test_large(void) {
  fresh();
  size_t m = (size_t)4 << 20;
  void *a = sr_pool_alloc(m, 0, NULL);
  CHECK(calls == 1 && sr_pool_reserved() == m && sr_pool_at(sr_pool_find(a))->seg == -1, "a large block: its own allocation");
  sr_pool_free(a);
  size_t got = 0;
  CHECK(sr_pool_alloc(m - m / 10, 0, &got) == a && got == m, "reused for a request at most 1/8 smaller, its size said");
  sr_pool_free(a);
  void *b = sr_pool_alloc(m / 2 + 4096, 0, NULL);
  CHECK(b != a && calls == 2, "not for one half its size");
  void *c = sr_pool_alloc(m, 1, NULL);
  CHECK(c != a && calls == 3, "nor for another pool");
  /* the smallest fitting block wins */
  void *big = sr_pool_alloc(m + m / 16, 0, NULL);
  sr_pool_free(big);
  CHECK(sr_pool_alloc(m - 512, 0, NULL) == a, "the smaller of two fitting blocks");
}

static void test_release(void) {
  fresh();
  void *x = sr_pool_alloc(2000, 0, NULL), *y = sr_pool_alloc(2000, 0, NULL), *big = sr_pool_alloc((size_t)5 << 20, 0, NULL);
  sr_pool_free(x);
  sr_pool_free(big);
  sr_pool_release_free(1, 0);
  CHECK(nheld == 1 && sr_pool_reserved() == SR_POOL_SEGMENT, "the free large block went, the segment with y stays");
  CHECK(sr_pool_find(y) >= 0 && sr_pool_find(x) >= 0 && sr_pool_find(big) < 0, "x stays with its segment");
  CHECK(sr_pool_alloc(2000, 0, NULL) == x && calls == 2, "and is handed out again");
  sr_pool_free(x);
  sr_pool_free(y);
  sr_pool_release_free(1, 0);
  CHECK(nheld == 0 && sr_pool_reserved() == 0 && sr_pool_count() == 0, "a wholly free segment goes");
  /* a graph's pool dies with one carved block alive (the backend moves it to pool 0 first) */
  void *g1 = sr_pool_alloc(2000, 7, NULL), *g2 = sr_pool_alloc(2000, 7, NULL);
  sr_pool_at(sr_pool_find(g1))->pool = 0;
  sr_pool_free(g2);
  void *o = sr_pool_alloc(2000, 0, NULL);          /* pool 0's own segment for this class */
  sr_pool_release_free(1, 7);
  CHECK(sr_pool_find(g2) >= 0 && sr_pool_at(sr_pool_find(g2))->pool == 0, "the dead pool's leftover joins pool 0");
  int before = calls;
  void *n2 = sr_pool_alloc(2000, 0, NULL);
  CHECK(n2 == g2 && calls == before, "pool 0 reuses it without the driver");
  (void)o;
  /* release while another pool's blocks of the segment are free: they are not pool 0's to give */
  fresh();
  void *k = sr_pool_alloc(2000, 3, NULL);
  sr_pool_free(k);
  sr_pool_release_free(1, 0);
  CHECK(nheld == 1 && sr_pool_find(k) >= 0, "pool 3's free block survives a release of pool 0");
  sr_pool_release_free(1, 3);
  CHECK(nheld == 0, "and goes when pool 3 dies");
}

static void test_no_carving(void) {
  fresh();
  sr_pool_set_carving(0);
  void *a = sr_pool_alloc(1000, 0, NULL), *b = sr_pool_alloc(1000, 0, NULL);
  CHECK(calls == 2 && sr_pool_at(sr_pool_find(a))->seg == -1 && sr_pool_reserved() == 2048, "carving off: a driver call a block");
  sr_pool_free(a);
  CHECK(sr_pool_alloc(1000, 0, NULL) == a, "reused for its class");
  sr_pool_free(a);
  CHECK(sr_pool_alloc(1100, 0, NULL) != a && calls == 3, "not for a larger one");
  (void)b;
  sr_pool_set_carving(1);
}

static void test_refusal(void) {
  fresh();
  refuse = 1;
  CHECK(sr_pool_alloc(100, 0, NULL) == NULL && sr_pool_alloc((size_t)8 << 20, 0, NULL) == NULL, "a refusing driver: NULL");
  CHECK(sr_pool_reserved() == 0 && sr_pool_count() == 0, "and nothing recorded");
  refuse = 0;
  CHECK(sr_pool_alloc(100, 0, NULL) != NULL, "then it works");
}

/* one "step": a state block kept from before, temporaries of three sizes (two of one held at once),
** one freed and asked for again, the previous step's output freed; returns the new output */
static void *step(void *prev_out, void **state) {
  if (!*state) *state = sr_pool_alloc((size_t)9 << 20, 0, NULL);
  void *a = sr_pool_alloc((size_t)3 << 20, 0, NULL), *b = sr_pool_alloc((size_t)3 << 20, 0, NULL);
  void *c = sr_pool_alloc(5000, 0, NULL);
  sr_pool_free(a);
  void *d = sr_pool_alloc((size_t)3 << 20, 0, NULL);
  if (prev_out) sr_pool_free(prev_out);
  void *out = sr_pool_alloc((size_t)2 << 20, 0, NULL);
  sr_pool_free(b); sr_pool_free(c); sr_pool_free(d);
  return out;
}

/* the same requests in a capture's pool (the backend allocates there while capturing) */
static void *captured_step(int pool) {
  void *a = sr_pool_alloc((size_t)3 << 20, pool, NULL), *b = sr_pool_alloc((size_t)3 << 20, pool, NULL);
  void *c = sr_pool_alloc(5000, pool, NULL);
  sr_pool_free(a);
  void *d = sr_pool_alloc((size_t)3 << 20, pool, NULL);
  void *out = sr_pool_alloc((size_t)2 << 20, pool, NULL);
  sr_pool_free(b); sr_pool_free(c); sr_pool_free(d);
  return out;
}

static void test_adopt(void) {
  fresh();
  void *state = NULL, *out = step(NULL, &state);
  out = step(out, &state);   /* the warm-up's eager steps */
  void *junk = sr_pool_alloc((size_t)7 << 20, 0, NULL);   /* a validation's buffer, say: no step's */
  void *h1 = sr_pool_alloc((size_t)3 << 20, 0, NULL), *h2 = sr_pool_alloc((size_t)3 << 20, 0, NULL);
  void *third = sr_pool_alloc((size_t)3 << 20, 0, NULL);  /* a third of the step's size, held once */
  sr_pool_free(junk); sr_pool_free(h1); sr_pool_free(h2); sr_pool_free(third);
  sr_pool_log(1);
  CHECK(sr_pool_log_peak() == 0, "a log starts empty");
  out = step(out, &state);   /* the step before the capture, logged */
  sr_pool_log(0);
  size_t peak = sr_pool_log_peak();   /* what the capture reads before adopting (backend.c room_for) */
  CHECK(peak >= ((size_t)6 << 20) && peak < ((size_t)9 << 20), "the logged step held %zu bytes at most at once", peak);
  int before = calls;
  int moved = sr_pool_adopt(5);
  CHECK(sr_pool_log_peak() == 0, "the adoption clears the log");
  /* the two 3-MiB temporaries held at once and the small one; not the output's block (the step
     reused the previous output's, freed in it, and holds it still) */
  CHECK(moved == 3, "adopted %d blocks", moved);
  sr_pool_release_free(1, 0);
  CHECK(sr_pool_find(junk) < 0, "the block no step held went back to the driver");
  CHECK(sr_pool_find(third) < 0, "so did a third block of a size the step held two of at once");
  CHECK(sr_pool_find(state) >= 0 && sr_pool_at(sr_pool_find(state))->pool == 0, "the live state stays pool 0's");
  for (int i = 0; i < sr_pool_count(); i++)
    if (sr_pool_at(i)->adopted) CHECK(sr_pool_at(i)->pool == 5 && !sr_pool_at(i)->inuse, "an adopted block is pool 5's, free");
  void *gout = captured_step(5);
  CHECK(calls == before + 1, "the capture made %d driver calls (1: its output)", calls - before);
  CHECK(sr_pool_at(sr_pool_find(gout))->pool == 5 && gout != out, "its output from pool 5");
  CHECK(sr_pool_unadopt(5) == 0, "every adopted block was taken");
  /* eager steps after the capture allocate their own again; the next capture takes less than it adopted */
  out = step(out, &state);
  sr_pool_log(1); out = step(out, &state); sr_pool_log(0);
  CHECK(sr_pool_adopt(6) == 3, "adopted for pool 6");
  void *x = sr_pool_alloc((size_t)3 << 20, 6, NULL);
  CHECK(sr_pool_unadopt(6) == 2, "the two not taken go back");
  CHECK(sr_pool_at(sr_pool_find(x))->pool == 6 && !sr_pool_at(sr_pool_find(x))->adopted, "the taken one stays pool 6's");
  before = calls;
  void *y = sr_pool_alloc((size_t)3 << 20, 0, NULL), *z = sr_pool_alloc(5000, 0, NULL);
  CHECK(calls == before && sr_pool_at(sr_pool_find(y))->pool == 0 && sr_pool_at(sr_pool_find(z))->pool == 0,
        "pool 0 reuses the returned blocks");
  /* sizes whose maxima fall at different times: no more than the step held at once is adopted */
  sr_pool_log(1);
  void *a3 = sr_pool_alloc((size_t)13 << 20, 0, NULL);
  sr_pool_free(a3);
  void *b5 = sr_pool_alloc((size_t)15 << 20, 0, NULL);
  sr_pool_free(b5);
  sr_pool_log(0);
  CHECK(sr_pool_adopt(8) == 1, "one of the two (13 + 15 MiB were never held at once)");
  CHECK(sr_pool_at(sr_pool_find(a3))->pool == 8 && sr_pool_at(sr_pool_find(b5))->pool == 0,
        "the first that fits under the 15 MiB the step held at once");
  sr_pool_unadopt(8);
  /* nothing logged: a capture adopts nothing (the release at its start as before) */
  sr_pool_free(y);
  CHECK(sr_pool_adopt(7) == 0, "no log, no adoption");
  sr_pool_log(1); sr_pool_log(0);
  CHECK(sr_pool_adopt(7) == 0, "an empty log, no adoption");
}

/* lending: a graph pool's free blocks to work beside the graph that the driver refused */
static void test_lend(void) {
  fresh();
  void *big = sr_pool_alloc((size_t)8 << 20, 3, NULL), *small = sr_pool_alloc(5000, 3, NULL);
  void *kept = sr_pool_alloc((size_t)8 << 20, 3, NULL);   /* a tensor the capture made, still held */
  sr_pool_free(big); sr_pool_free(small);
  CHECK(sr_pool_alloc_lent(100, 0, NULL) == NULL, "pool 0 lends nothing");
  CHECK(sr_pool_alloc_lent((size_t)20 << 20, 3, NULL) == NULL, "no free block of pool 3 that large");
  CHECK(sr_pool_alloc_lent(100000, 3, NULL) == NULL, "no free block of that small class (none carved for it)");
  refuse = 1;
  int before = calls;
  size_t got = 0;
  void *a = sr_pool_alloc_lent((size_t)7800 << 10, 3, &got);   /* within 1/8 of the free 8 MiB block */
  void *b = sr_pool_alloc_lent(4900, 3, NULL);                 /* the small block's class */
  CHECK(a == big && got == ((size_t)8 << 20), "the large free block lent (%zu bytes)", got);
  CHECK(b == small, "the small free block lent");
  CHECK(calls == before, "lending asks the driver nothing");
  CHECK(sr_pool_alloc_lent((size_t)8 << 20, 3, NULL) == NULL, "the block the graph still holds is not lent");
  CHECK(sr_pool_at(sr_pool_find(a))->pool == 3 && sr_pool_at(sr_pool_find(a))->lent, "a lent block stays the graph's");
  CHECK(sr_pool_lent_live(3) == 2 && sr_pool_lent_live(0) == 0, "two lent blocks in use");
  CHECK(sr_pool_alloc((size_t)8 << 20, 0, NULL) == NULL, "pool 0 cannot take it otherwise (the driver refuses)");
  sr_pool_free(a);
  CHECK(sr_pool_lent_live(3) == 1 && !sr_pool_at(sr_pool_find(a))->lent, "freed: the graph's free block again");
  CHECK(sr_pool_alloc((size_t)8 << 20, 3, NULL) == a, "the graph's next request gets it back");
  sr_pool_free(b);
  CHECK(sr_pool_lent_live(3) == 0, "none in use");
  refuse = 0;
  CHECK(sr_pool_alloc(4900, 0, NULL) != small, "pool 0's own requests never take a graph's block");
  sr_pool_free(kept);
}

/* random alloc/lend/free/release/log/adopt in three pools and many sizes, against what is live */
static void test_random(void) {
  fresh();
  enum { N = 600 };
  struct { char *p; size_t n; int pool; } live[N];
  int nlive = 0, nlent = 0;
  srand(12345);
  for (int it = 0; it < 20000; it++) {
    int r = rand() % 100;
    if (r < 55 && nlive < N) {
      size_t n = rand() % 4 == 0 ? (size_t)(rand() % (6 << 20)) + 1 : (size_t)(rand() % 70000) + 1;
      int pool = rand() % 3, lend = rand() % 8 == 0;   /* one in eight: borrowed from graph pool 1 or 2 */
      size_t got = 0;
      char *p = lend ? sr_pool_alloc_lent(n, 1 + rand() % 2, &got) : sr_pool_alloc(n, pool, &got);
      if (!p && lend) continue;   /* no free block of that size there */
      if (!p) { CHECK(0, "allocation of %zu failed", n); continue; }
      CHECK(!lend || sr_pool_at(sr_pool_find(p))->lent, "a lent block marked");
      nlent += lend;
      CHECK(got >= n && got == sr_pool_at(sr_pool_find(p))->size, "size %zu for a request of %zu", got, n);
      CHECK(inside(p, n), "block outside the driver's memory");
      memset(p, nlive & 0xff, n < 64 ? n : 64);
      live[nlive].p = p; live[nlive].n = n; live[nlive++].pool = pool;
    } else if (r < 97 && nlive) {
      int k = rand() % nlive;
      CHECK(sr_pool_free(live[k].p) >= 0, "free of a live block refused");
      live[k] = live[--nlive];
    } else if (r == 97) {   /* the allocation log on or off, or a capture into pool 1 or 2 adopting from it */
      int pool = 1 + rand() % 2;
      if (rand() % 2) sr_pool_log(rand() % 2);
      else if (sr_pool_adopt(pool) && rand() % 2) sr_pool_unadopt(pool);
    } else {   /* pool 0 gives back, or pool 1 or 2 dies: the backend first moves its live blocks to pool 0 */
      int pool = rand() % 2 ? 0 : 1 + rand() % 2;
      for (int i = 0; pool && i < sr_pool_count(); i++)
        if (sr_pool_at(i)->pool == pool && sr_pool_at(i)->inuse) sr_pool_at(i)->pool = 0;
      sr_pool_release_free(1, pool);
    }
  }
  for (int a = 0; a < nlive; a++) {
    int i = sr_pool_find(live[a].p);
    CHECK(i >= 0 && sr_pool_at(i)->inuse && sr_pool_at(i)->size >= live[a].n, "live block %d lost", a);
    for (int b = a + 1; b < nlive; b++)
      CHECK(live[a].p + live[a].n <= live[b].p || live[b].p + live[b].n <= live[a].p, "live blocks %d and %d overlap", a, b);
  }
  CHECK(sr_pool_reserved() == held_bytes(), "reserved %zu, the driver holds %zu", sr_pool_reserved(), held_bytes());
  CHECK(nlent > 100, "blocks were lent: %d", nlent);
  for (int a = 0; a < nlive; a++) sr_pool_free(live[a].p);
  sr_pool_release_free(1, 0); sr_pool_release_free(1, 1); sr_pool_release_free(1, 2);
  CHECK(nheld == 0 && sr_pool_reserved() == 0, "everything given back: %d allocations held", nheld);
}

int main(void) {
  sr_pool_set_driver(&(sr_pool_driver){drv_alloc, drv_release, NULL});
  test_size_classes();
  test_small_carved();
  test_large();
  test_release();
  test_no_carving();
  test_refusal();
  test_adopt();
  test_lend();
  test_random();
  fresh();
  if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
  printf("ok: cuda pool\n");
  return 0;
}
