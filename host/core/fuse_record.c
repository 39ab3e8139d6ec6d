/*
** core/fuse_record.c: the step compiler's recorder (core/fuse.h): a dispatch observer that notes
** every launch with its tensors (storage identity by serial, dtype, layout) and a storage hook
** that notes when each storage seen dies; what the planner needs to prove an output dead.
*/
#include <stdlib.h>      /* defines: realloc, calloc, free */
#include <stdint.h>      /* defines: int32_t */
#include <string.h>      /* defines: memset, memcpy, memcmp */

#include "core/fuse.h"
#include "core/trace.h"  /* defines: sr_kcall_layout */

static sr_fuse_rec *recording;
static void record_launch(sr_kernel_id id, const sr_kcall *c, int dev);
static const sr_observer record_observer = {.before = record_launch};

static void *grow(void *p, int64_t *cap, int64_t need, size_t elt) {
  if (need <= *cap) return p;
  int64_t n = *cap ? *cap : 256;
  while (n < need) n *= 2;
  void *q = realloc(p, (size_t)n * elt);
  if (!q) sr_fail("fuse: out of host memory recording a step");
  *cap = n;
  return q;
}

static size_t hash_serial(uint64_t s) { return (size_t)(s * 0x9E3779B97F4A7C15ull >> 17); }

static void map_insert(sr_fuse_rec *r, uint64_t serial, int sid);
static void map_rehash(sr_fuse_rec *r, int cap) {
  int *old = r->map, oldcap = r->mapcap;
  r->map = calloc((size_t)cap, sizeof *r->map);
  if (!r->map) sr_fail("fuse: out of host memory recording a step");
  r->mapcap = cap;
  for (int k = 0; k < oldcap; k++)
    if (old[k]) map_insert(r, r->s[old[k] - 1].serial, old[k] - 1);
  free(old);
}
static void map_insert(sr_fuse_rec *r, uint64_t serial, int sid) {
  size_t m = (size_t)r->mapcap - 1, h = hash_serial(serial) & m;
  while (r->map[h]) h = (h + 1) & m;
  r->map[h] = sid + 1;
}
/* the storage's index, or -1 */
static int map_find(const sr_fuse_rec *r, uint64_t serial) {
  if (!r->mapcap) return -1;
  size_t m = (size_t)r->mapcap - 1, h = hash_serial(serial) & m;
  while (r->map[h]) {
    if (r->s[r->map[h] - 1].serial == serial) return r->map[h] - 1;
    h = (h + 1) & m;
  }
  return -1;
}

static int storage_id(sr_fuse_rec *r, const sr_storage *st) {
  int sid = map_find(r, st->serial);
  if (sid >= 0) return sid;
  if (2 * (r->ns + 1) > r->mapcap) map_rehash(r, r->mapcap ? 2 * r->mapcap : 1024);
  int64_t cap = r->scap;
  r->s = grow(r->s, &cap, r->ns + 1, sizeof *r->s);
  r->scap = (int)cap;
  sid = r->ns++;
  r->s[sid] = (sr_fuse_storage){st->serial, st->serial >= r->serial0, -1, r->n, r->n, st->nbytes};
  map_insert(r, st->serial, sid);
  return sid;
}

static int storage_died(sr_storage *st) {
  sr_fuse_rec *r = recording;
  if (!r) return 0;
  int sid = map_find(r, st->serial);
  if (sid >= 0) r->s[sid].died = r->n;
  return 0;
}

void sr_fuse_signature(sr_kernel_id id, const sr_kcall *c, sr_fuse_launch *l) {
  memset(l, 0, sizeof *l);
  l->id = (int)id, l->nt = c->nt, l->nlist = c->nlist;
  memcpy(l->f, c->f, sizeof l->f);
  memcpy(l->i, c->i, sizeof l->i);
  if ((id == SR_K_adamw && c->nt > 4 && c->t[4]) || (id == SR_K_adamw_multi && c->nt > 0 && c->t[0]))
    l->f[0] = 0, l->i[0] = 0;  /* read from the device-side schedule */
  l->layout = sr_kcall_layout(c);   /* the launch trace's layout hash (core/trace.h) */
}

static void record_launch(sr_kernel_id id, const sr_kcall *c, int dev) {
  sr_fuse_rec *r = recording;
  if (!r) return;
  if (r->device < 0) r->device = dev;
  else if (r->device != dev) r->mixed = 1;
  r->l = grow(r->l, &r->lcap, r->n + 1, sizeof *r->l);
  int nall = c->nt + c->nlist;
  r->a = grow(r->a, &r->acap, r->na + nall, sizeof *r->a);
  sr_fuse_launch *l = &r->l[r->n];
  sr_fuse_signature(id, c, l);
  l->arg0 = r->na;
  for (int j = 0; j < nall; j++) {
    const sr_tensor *x = j < c->nt ? c->t[j] : c->list[j - c->nt];
    sr_fuse_arg *a = &r->a[r->na++];
    memset(a, 0, sizeof *a);
    a->sid = -1;
    if (!x) continue;
    a->sid = storage_id(r, x->storage);
    r->s[a->sid].last = r->n;
    a->dtype = (int)x->dtype, a->ndim = x->ndim, a->offset = x->offset;
    memcpy(a->shape, x->shape, (size_t)x->ndim * sizeof x->shape[0]);
    memcpy(a->stride, x->stride, (size_t)x->ndim * sizeof x->stride[0]);
  }
  r->n++;
}

void sr_fuse_rec_free(sr_fuse_rec *r) {
  if (recording == r) sr_fuse_record_stop();
  free(r->l);
  free(r->a);
  free(r->s);
  free(r->map);
  memset(r, 0, sizeof *r);
  r->device = -1;
}

void sr_fuse_record_start(sr_fuse_rec *r) {
  if (recording) sr_fuse_record_stop();
  sr_fuse_rec_free(r);
  r->serial0 = sr_storage_next_serial();
  r->recording = 1;
  recording = r;
  sr_observer_add(&record_observer);
  sr_set_storage_death_hook(storage_died);
}

void sr_fuse_record_stop(void) {
  if (!recording) return;
  recording->recording = 0;
  recording = NULL;
  sr_observer_remove(&record_observer);
  sr_set_storage_death_hook(NULL);
}

/* ---- a recording as bytes: a header, then the launches, arguments and storages as they are in
** memory (the same binary on both ends: a forked process) */

typedef struct rec_header {
  char magic[8];
  int32_t device, mixed, ns, pad;
  int64_t n, na;
  uint64_t serial0;
} rec_header;

static const char REC_MAGIC[8] = "srfrec1";

char *sr_fuse_rec_pack(const sr_fuse_rec *r, size_t *n) {
  rec_header h = {{0}, r->device, r->mixed, r->ns, 0, r->n, r->na, r->serial0};
  memcpy(h.magic, REC_MAGIC, sizeof h.magic);
  size_t bl = (size_t)r->n * sizeof *r->l, ba = (size_t)r->na * sizeof *r->a, bs = (size_t)r->ns * sizeof *r->s;
  char *b = malloc(sizeof h + bl + ba + bs);
  if (!b) sr_fail("fuse: out of host memory packing a recording");
  memcpy(b, &h, sizeof h);
  if (bl) memcpy(b + sizeof h, r->l, bl);
  if (ba) memcpy(b + sizeof h + bl, r->a, ba);
  if (bs) memcpy(b + sizeof h + bl + ba, r->s, bs);
  *n = sizeof h + bl + ba + bs;
  return b;
}

/* a copy of n bytes from b (NULL for none) */
static void *copy_of(const char *b, size_t n) {
  if (!n) return NULL;
  void *p = malloc(n);
  if (!p) sr_fail("fuse: out of host memory unpacking a recording");
  memcpy(p, b, n);
  return p;
}

const char *sr_fuse_rec_unpack(sr_fuse_rec *r, const char *b, size_t n, size_t *used) {
  rec_header h;
  if (n < sizeof h) return "a recording's bytes cut short";
  memcpy(&h, b, sizeof h);
  if (memcmp(h.magic, REC_MAGIC, sizeof h.magic) || h.n < 0 || h.na < 0 || h.ns < 0) return "not a recording's bytes";
  size_t bl = (size_t)h.n * sizeof *r->l, ba = (size_t)h.na * sizeof *r->a, bs = (size_t)h.ns * sizeof *r->s;
  if (n - sizeof h < bl + ba + bs) return "a recording's bytes cut short";
  sr_fuse_rec_free(r);
  b += sizeof h;
  r->l = copy_of(b, bl), r->a = copy_of(b + bl, ba), r->s = copy_of(b + bl + ba, bs);
  r->n = r->lcap = h.n, r->na = r->acap = h.na, r->ns = r->scap = h.ns;
  r->device = h.device, r->mixed = h.mixed, r->serial0 = h.serial0;
  for (int k = 0; k < r->ns; k++)
    if (r->s[k].died > r->n || r->s[k].first > r->s[k].last || r->s[k].last >= r->n) return "a recording's storages out of range";
  for (int64_t k = 0; k < r->na; k++)
    if (r->a[k].sid < -1 || r->a[k].sid >= r->ns || r->a[k].ndim < 0 || r->a[k].ndim > SR_MAXDIM)
      return "a recording's arguments out of range";
  for (int64_t k = 0; k < r->n; k++)
    if (r->l[k].id < 0 || r->l[k].id >= SR_KERNEL_COUNT || r->l[k].arg0 < 0 || r->l[k].arg0 + r->l[k].nt + r->l[k].nlist > r->na)
      return "a recording's launches out of range";
  *used = sizeof h + bl + ba + bs;
  return NULL;
}
