/*
** test_jit_many.c: sr_jit_compile_many (jit/compile.c), the batch compile the step compiler uses
** for a plan's kernels: on 1 and on 3 threads, each result is what sr_jit_compile gives alone
** (the same success, image bytes, lowered names, cache key; a broken source's error in its own
** log, file:line form, the others unharmed); compiled entries land in the cache and a second batch
** hits them (the broken one compiles again); the NVRTC time is counted. Without NVRTC (a CPU-only
** build) every result is the "not built" failure, as sr_jit_compile's.
*/
#include <stdio.h>      /* defines: fprintf, snprintf */
#include <stdlib.h>     /* defines: setenv, system */
#include <string.h>     /* defines: strstr, memcmp, strcmp */

#include "jit/jit.h"    /* defines: sr_jit_compile_many, sr_jit_compile, sr_jit_threads */

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define N 6
static char src[N][512];
static const char *name[N];

/* N sources: five kernels that differ in a constant, and one (index 3) that does not compile */
static void make_sources(void) {
  for (int i = 0; i < N; i++) {
    if (i == 3) snprintf(src[i], sizeof src[i], "extern \"C\" __global__ void k3(float *x) {\n  x[0] = undeclared;\n}\n");
    else snprintf(src[i], sizeof src[i], "#include <cuda_bf16.h>\nextern \"C\" __global__ void k%d(float *x, int n) {\n"
                  "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n  if (i < n) x[i] = x[i] * %d.5f + 1.0f;\n}\n", i, i);
    static char names[N][8];
    snprintf(names[i], sizeof names[i], "k%d", i);
    name[i] = names[i];
  }
}

static void set_opts(sr_jit_opts *o, int i, const char *cache) {
  memset(o, 0, sizeof *o);
  o->source = src[i];
  o->filename = "many.cu";
  o->kernels[o->nkernels++] = name[i];
  o->use_cache = 1;
  o->cache_dir = cache;
}

/* a batch into `cache` on `threads` threads; b[] receives the results */
static void batch(const char *threads, const char *cache, sr_jit_binary *b) {
  setenv("SPEEDRUN_JIT_THREADS", threads, 1);
  sr_jit_opts o[N];
  for (int i = 0; i < N; i++) set_opts(&o[i], i, cache);
  sr_jit_compile_many(o, b, N);
}

static void same(const sr_jit_binary *a, const sr_jit_binary *b, int i, const char *what) {
  CHECK(a->ok == b->ok, "%s, source %d: ok %d against %d alone", what, i, a->ok, b->ok);
  CHECK(!strcmp(a->key, b->key), "%s, source %d: another cache key", what, i);
  if (!a->ok || !b->ok) return;
  CHECK(a->size == b->size && !memcmp(a->image, b->image, a->size), "%s, source %d: another image", what, i);
  CHECK(a->nkernels == 1 && !strcmp(a->lowered[0], b->lowered[0]), "%s, source %d: another lowered name", what, i);
}

int main(void) {
  make_sources();
  char root[256], c_alone[300], c1[300], c3[300], cmd[700];
  snprintf(root, sizeof root, "%s/jit_many", getenv("SPEEDRUN_TEST_TMP") ? getenv("SPEEDRUN_TEST_TMP") : "/tmp");
  snprintf(c_alone, sizeof c_alone, "%s/alone", root);
  snprintf(c1, sizeof c1, "%s/t1", root);
  snprintf(c3, sizeof c3, "%s/t3", root);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
  if (system(cmd) != 0) { fprintf(stderr, "cannot make %s\n", root); return 1; }

  sr_jit_binary alone[N], b1[N], b3[N], again[N];
  for (int i = 0; i < N; i++) {
    sr_jit_opts o;
    set_opts(&o, i, c_alone);
    sr_jit_compile(&o, &alone[i]);
  }
  if (sr_jit_compiler_unavailable()) {
    batch("3", c3, b3);
    for (int i = 0; i < N; i++) {
      CHECK(!b3[i].ok && b3[i].log && strstr(b3[i].log, "not built"), "source %d: %s", i, b3[i].log ? b3[i].log : "(no log)");
      sr_jit_binary_free(&b3[i]);
      sr_jit_binary_free(&alone[i]);
    }
    printf("%s (%s)\n", failures ? "FAILED" : "ok: no NVRTC, every result the compiler's absence",
           sr_jit_compiler_unavailable());
    return failures != 0;
  }

  double s0 = sr_jit_compile_seconds();
  batch("1", c1, b1);
  double s1 = sr_jit_compile_seconds();
  batch("3", c3, b3);
  double s3 = sr_jit_compile_seconds();
  for (int i = 0; i < N; i++) {
    same(&b1[i], &alone[i], i, "1 thread");
    same(&b3[i], &alone[i], i, "3 threads");
    CHECK(b3[i].ok == (i != 3), "source %d: ok %d", i, b3[i].ok);
    CHECK(!b3[i].cache_hit, "source %d: a fresh cache cannot hit", i);
    CHECK(b3[i].ok ? b3[i].compile_ms > 0 : 1, "source %d: its NVRTC time", i);
  }
  CHECK(b3[3].log && strstr(b3[3].log, "many.cu:2: error") && strstr(b3[3].log, "undeclared"),
        "the broken source's log: %s", b3[3].log ? b3[3].log : "(none)");
  for (int i = 0; i < N; i++)
    CHECK(i == 3 || !b3[i].log || !strstr(b3[i].log, "undeclared"), "source %d carries another's error", i);
  CHECK(s1 > s0 && s3 > s1, "the batches' NVRTC time is counted (%.3f, %.3f, %.3f)", s0, s1, s3);

  batch("3", c3, again);   /* the same batch again: every compiled entry from the cache */
  for (int i = 0; i < N; i++) {
    same(&again[i], &alone[i], i, "from the cache");
    CHECK(again[i].cache_hit == (i != 3), "source %d: cache hit %d", i, again[i].cache_hit);
  }
  for (int i = 0; i < N; i++) {
    sr_jit_binary_free(&alone[i]);
    sr_jit_binary_free(&b1[i]);
    sr_jit_binary_free(&b3[i]);
    sr_jit_binary_free(&again[i]);
  }
  printf("%s: %d sources on 1 and 3 threads (NVRTC %s)\n", failures ? "FAILED" : "ok", N, sr_jit_nvrtc_version());
  return failures != 0;
}
