/*
** jit/compile.c: agent kernels compiled at run time: NVRTC, the disk cache keyed by the source and
** every file it includes, the include and cache directories. Signatures are host/jit/signature.c,
** loading and launching host/jit/launch.c; the contract is host/jit/jit.h, user docs
** docs/kernels.md.
*/
#define _GNU_SOURCE            /* dladdr */
#include <dlfcn.h>             /* defines: dlopen, dlsym, dladdr */
#include <errno.h>             /* defines: errno */
#include <fcntl.h>             /* defines: open, O_RDWR */
#include <pthread.h>           /* defines: pthread_create, pthread_mutex_t */
#include <stdio.h>             /* defines: snprintf, fopen */
#include <stdlib.h>            /* defines: malloc, free, getenv */
#include <string.h>            /* defines: strlen, memcpy, strncmp */
#include <sys/mman.h>          /* defines: mmap */
#include <sys/stat.h>          /* defines: mkdir, stat */
#include <unistd.h>            /* defines: getpid, rename, ftruncate, _exit, sysconf */

#include "jit/jit.h"               /* defines: the API implemented here */
#include "util/clock.h"         /* defines: sr_monotonic_s */
#include "util/fileio.h"        /* defines: sr_source_dir */

#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>      /* defines: cudaStreamSynchronize, cudaDeviceGetAttribute */
#include <nvrtc.h>             /* defines: nvrtcCreateProgram, nvrtcCompileProgram */
#include "cuda/backend.h"      /* defines: sr_cuda_stream, sr_cuda_probe, sr_cuda_capturing */
#endif




/* ------------------------------------------------------------------------------------------
** small helpers */

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* whole file into a malloc'd NUL-terminated buffer; NULL if unreadable */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); fclose(f); return NULL; }
      buf = nb;
    }
    size_t k = fread(buf + n, 1, 4096, f);
    n += k;
    if (k < 4096) break;
  }
  fclose(f);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* mkdir -p */
SR_CUDA_ONLY static int make_dirs(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
  return 0;
}

static void dirname_of(const char *path, char *out, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(out, n, ".");
  else if (slash == path) snprintf(out, n, "/");
  else snprintf(out, n, "%.*s", (int)(slash - path), path);
}

/* ------------------------------------------------------------------------------------------
** the cache key: two independent 64-bit hashes (FNV-1a, and a multiply-rotate mix) */

typedef struct hash128 { uint64_t a, b; } hash128;

SR_CUDA_ONLY static void hash_init(hash128 *h) { h->a = 0xcbf29ce484222325ull; h->b = 0x9e3779b97f4a7c15ull; }

static void hash_bytes(hash128 *h, const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t a = h->a, b = h->b;
  for (size_t i = 0; i < n; i++) {
    a = (a ^ p[i]) * 0x100000001b3ull;
    b = (b ^ p[i]) * 0xff51afd7ed558ccdull;
    b = (b << 31) | (b >> 33);
  }
  h->a = a;
  h->b = b;
}

/* a string with its length, so ("ab","c") and ("a","bc") differ */
static void hash_str(hash128 *h, const char *s) {
  uint64_t n = s ? strlen(s) : (uint64_t)-1;
  hash_bytes(h, &n, sizeof n);
  if (s) hash_bytes(h, s, (size_t)n);
}

/* ------------------------------------------------------------------------------------------
** folders */

const char *sr_jit_cache_dir(void) {
  static char dir[1024];
  if (dir[0]) return dir;
  const char *e = getenv("SPEEDRUN_KERNEL_CACHE");
  if (e && *e) snprintf(dir, sizeof dir, "%s", e);
  else if ((e = getenv("XDG_CACHE_HOME")) && *e) snprintf(dir, sizeof dir, "%s/speedrun/kernels", e);
  else if ((e = getenv("HOME")) && *e) snprintf(dir, sizeof dir, "%s/.cache/speedrun/kernels", e);
  else snprintf(dir, sizeof dir, "/tmp/speedrun-kernels-%d", (int)getuid());
  return dir;
}

const char *sr_jit_include_dir(void) {
  static char dir[1024];
  if (dir[0]) return dir;
  const char *e = getenv("SPEEDRUN_KERNEL_INCLUDE");
  if (e && *e) snprintf(dir, sizeof dir, "%s", e);
  else snprintf(dir, sizeof dir, "%s/kernels/include", sr_source_dir());
  return dir;
}

#ifdef SPEEDRUN_CUDA

static int cuda_include_ok(const char *dir) {
  char probe[1100];
  snprintf(probe, sizeof probe, "%s/cuda_bf16.h", dir);
  return file_exists(probe);
}

const char *sr_jit_cuda_include_dir(void) {
  static char dir[1024];
  static int tried;
  if (tried) return dir[0] ? dir : NULL;
  tried = 1;
  const char *cands[8];
  int nc = 0;
  char fromlib[1100] = "", fromlib2[1100] = "", home[1100] = "", path[1100] = "";
  const char *e = getenv("SPEEDRUN_CUDA_INCLUDE");
  if (e && *e) cands[nc++] = e;
#ifdef SPEEDRUN_CUDA_INCLUDE
  cands[nc++] = SPEEDRUN_CUDA_INCLUDE;   /* CUDAToolkit_INCLUDE_DIRS, when CMake passes it */
#endif
  Dl_info info;  /* libnvrtc.so lives in <toolkit>/lib64 or <toolkit>/targets/<arch>/lib */
  if (dladdr((void *)nvrtcCompileProgram, &info) && info.dli_fname) {
    char d1[1024], d2[1024];  /* the folder of the library, and its parent */
    dirname_of(info.dli_fname, d1, sizeof d1);
    dirname_of(d1, d2, sizeof d2);
    snprintf(fromlib, sizeof fromlib, "%s/include", d2);
    cands[nc++] = fromlib;
    snprintf(fromlib2, sizeof fromlib2, "%s/targets/x86_64-linux/include", d2);
    cands[nc++] = fromlib2;
  }
  if ((e = getenv("CUDA_HOME")) && *e) { snprintf(home, sizeof home, "%s/include", e); cands[nc++] = home; }
  if ((e = getenv("CUDA_PATH")) && *e) { snprintf(path, sizeof path, "%s/include", e); cands[nc++] = path; }
  cands[nc++] = "/usr/local/cuda/include";
  for (int i = 0; i < nc; i++)
    if (cuda_include_ok(cands[i])) {
      snprintf(dir, sizeof dir, "%s", cands[i]);
      return dir;
    }
  return NULL;
}

const char *sr_jit_nvrtc_version(void) {
  static char v[16];
  if (!v[0]) {
    int maj = 0, min = 0;
    nvrtcVersion(&maj, &min);
    snprintf(v, sizeof v, "%d.%d", maj, min);
  }
  return v;
}

const char *sr_jit_compiler_unavailable(void) { return NULL; }

#else

const char *sr_jit_cuda_include_dir(void) { return NULL; }
const char *sr_jit_nvrtc_version(void) { return NULL; }
const char *sr_jit_compiler_unavailable(void) {
  return "the CUDA backend is not built (configure with the CUDA toolkit and -DSPEEDRUN_CUDA=ON)";
}

#endif

/* ------------------------------------------------------------------------------------------
** include scanning for the cache key: every file reached by #include "..." or <...> that
** resolves to a real file in the including file's folder (quotes only) or the include dirs */

typedef struct inc_scan {
  hash128 *h;
  const char **dirs;
  int ndirs;
  char seen[64][1024];
  int nseen;
} inc_scan;

static void scan_includes(inc_scan *s, const char *text, const char *selfdir);

static void scan_one(inc_scan *s, const char *path) {
  for (int i = 0; i < s->nseen; i++)
    if (!strcmp(s->seen[i], path)) return;
  if (s->nseen == 64) return;
  snprintf(s->seen[s->nseen++], 1024, "%s", path);
  size_t n = 0;
  char *text = read_file(path, &n);
  if (!text) return;
  hash_str(s->h, path);
  hash_str(s->h, text);
  char dir[1024];
  dirname_of(path, dir, sizeof dir);
  scan_includes(s, text, dir);
  free(text);
}

static void scan_includes(inc_scan *s, const char *text, const char *selfdir) {
  for (const char *p = text; *p; ) {
    const char *line = p;
    while (*p && *p != '\n') p++;
    const char *q = line;
    while (q < p && (*q == ' ' || *q == '\t')) q++;
    if (q < p && *q == '#') {
      q++;
      while (q < p && (*q == ' ' || *q == '\t')) q++;
      if (p - q > 7 && !strncmp(q, "include", 7)) {
        q += 7;
        while (q < p && (*q == ' ' || *q == '\t')) q++;
        char open = q < p ? *q : 0, close = open == '"' ? '"' : open == '<' ? '>' : 0;
        if (close) {
          const char *nb = ++q;
          while (q < p && *q != close) q++;
          char name[256];
          snprintf(name, sizeof name, "%.*s", (int)(q - nb), nb);
          char cand[1024];
          int found = 0;
          if (open == '"' && selfdir) {
            snprintf(cand, sizeof cand, "%s/%s", selfdir, name);
            found = file_exists(cand);
          }
          for (int i = 0; !found && i < s->ndirs; i++) {
            snprintf(cand, sizeof cand, "%s/%s", s->dirs[i], name);
            found = file_exists(cand);
          }
          if (found) scan_one(s, cand);
        }
      }
    }
    if (*p) p++;
  }
}

/* ------------------------------------------------------------------------------------------
** logs: NVRTC writes "file(12): error: ..."; editors and people want "file:12: error: ...".
** Lines about the name-expression map (a kernel named in opts but missing from the source)
** become one clear line per missing kernel. */

SR_CUDA_ONLY static char *rewrite_log(const char *log, const char *filename) {
  size_t cap = strlen(log) * 2 + 256, n = 0;
  char *out = malloc(cap);
  int skip = 0;
  for (const char *p = log; *p; ) {
    const char *line = p;
    while (*p && *p != '\n') p++;
    size_t len = (size_t)(p - line);
    if (*p) p++;
    if (n + len + 512 > cap) { cap = 2 * cap + len + 512; out = realloc(out, cap); }
    if (!strncmp(line, "__nv_name_map(", 14)) {
      const char *id = strstr(line, "identifier \"");
      if (id && id < line + len) {
        id += 12;
        const char *end = memchr(id, '"', (size_t)(line + len - id));
        if (end)
          n += (size_t)snprintf(out + n, cap - n, "%s: error: no kernel named '%.*s' in this source "
                                "(check the name, or declare it extern \"C\" __global__)\n",
                                filename, (int)(end - id), id);
      }
      skip = 3;  /* NVRTC echoes the source line, a caret and a blank line after each message */
      continue;
    }
    if (skip > 0 && (len == 0 || line[0] == ' ')) { skip--; continue; }
    skip = 0;
    /* "name(123): " at the start of the line */
    const char *lp = memchr(line, '(', len);
    if (lp && lp > line) {
      const char *d = lp + 1;
      while (d < line + len && *d >= '0' && *d <= '9') d++;
      if (d > lp + 1 && d + 2 < line + len && d[0] == ')' && d[1] == ':') {
        memcpy(out + n, line, (size_t)(lp - line));
        n += (size_t)(lp - line);
        out[n++] = ':';
        memcpy(out + n, lp + 1, (size_t)(d - lp - 1));
        n += (size_t)(d - lp - 1);
        memcpy(out + n, d + 1, (size_t)(line + len - d - 1));
        n += (size_t)(line + len - d - 1);
        out[n++] = '\n';
        continue;
      }
    }
    memcpy(out + n, line, len);
    n += len;
    out[n++] = '\n';
  }
  /* trim trailing blank lines */
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) n--;
  out[n] = '\0';
  return out;
}

/* ------------------------------------------------------------------------------------------
** cache entries: "SRK1\n" "kind cubin|ptx\n" "arch ARCH\n" "name NAME LOWERED\n"... then
** "log N\n" N bytes, "image N\n" N bytes */

SR_CUDA_ONLY static int cache_read(const char *path, sr_jit_binary *b, const sr_jit_opts *o) {
  size_t n = 0;
  char *buf = read_file(path, &n);
  if (!buf) return 0;
  char *p = buf, *end = buf + n;
  int ok = 0, nk = 0;
  if (strncmp(p, "SRK1\n", 5)) goto done;
  p += 5;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) goto done;
    *nl = '\0';
    if (!strncmp(p, "kind ", 5)) b->is_cubin = !strcmp(p + 5, "cubin");
    else if (!strncmp(p, "arch ", 5)) snprintf(b->arch, sizeof b->arch, "%s", p + 5);
    else if (!strncmp(p, "name ", 5)) {
      char *sp = strchr(p + 5, ' ');
      if (!sp || nk >= SR_JIT_MAXKERN) goto done;
      *sp = '\0';
      if (nk >= o->nkernels || strcmp(p + 5, o->kernels[nk])) goto done;
      b->lowered[nk++] = xstrdup(sp + 1);
    } else if (!strncmp(p, "log ", 4) || !strncmp(p, "image ", 6)) {
      int is_log = p[0] == 'l';
      size_t len = (size_t)strtoull(p + (is_log ? 4 : 6), NULL, 10);
      p = nl + 1;
      if ((size_t)(end - p) < len) goto done;
      char *blob = malloc(len + 1);
      memcpy(blob, p, len);
      blob[len] = '\0';
      p += len;
      if (is_log) b->log = blob;
      else { b->image = blob; b->size = len; ok = nk == o->nkernels; break; }
      continue;
    } else goto done;
    p = nl + 1;
  }
done:
  b->nkernels = nk;
  free(buf);
  if (!ok) {  /* a damaged or foreign entry: forget what was read, recompile */
    for (int i = 0; i < nk; i++) { free(b->lowered[i]); b->lowered[i] = NULL; }
    free(b->log); b->log = NULL;
    free(b->image); b->image = NULL;
    b->nkernels = 0;
  }
  return ok;
}

SR_CUDA_ONLY static void cache_write(const char *path, const sr_jit_binary *b, const sr_jit_opts *o) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  fprintf(f, "SRK1\nkind %s\narch %s\n", b->is_cubin ? "cubin" : "ptx", b->arch);
  for (int i = 0; i < b->nkernels; i++) fprintf(f, "name %s %s\n", o->kernels[i], b->lowered[i]);
  size_t ll = b->log ? strlen(b->log) : 0;
  fprintf(f, "log %zu\n", ll);
  if (ll) fwrite(b->log, 1, ll, f);
  fprintf(f, "image %zu\n", b->size);
  size_t w = fwrite(b->image, 1, b->size, f);
  int bad = fclose(f) != 0 || w != b->size;
  if (bad || rename(tmp, path) != 0) remove(tmp);
}

/* ------------------------------------------------------------------------------------------
** compiling */

void sr_jit_binary_free(sr_jit_binary *b) {
  if (!b) return;
  free(b->image);
  free(b->log);
  for (int i = 0; i < SR_JIT_MAXKERN; i++) free(b->lowered[i]);
  memset(b, 0, sizeof *b);
}

static void fail_log(sr_jit_binary *b, const char *fmt, const char *a, const char *c) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, fmt, a, c);
  free(b->log);
  b->log = xstrdup(tmp);
  b->ok = 0;
}

#ifdef SPEEDRUN_CUDA

/* the target: opts->arch, else the GPU's sm_XY, else compute_90 (PTX) */
static void pick_arch(const sr_jit_opts *o, char *arch, size_t n) {
  if (o->arch && *o->arch) { snprintf(arch, n, "%s", o->arch); return; }
  if (!sr_cuda_probe()) {
    int dev = 0, maj = 0, min = 0;
    cudaGetDevice(&dev);
    if (cudaDeviceGetAttribute(&maj, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&min, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess) {
      snprintf(arch, n, "sm_%d%d", maj, min);
      return;
    }
  }
  snprintf(arch, n, "compute_90");
}

static double compile_seconds;   /* NVRTC wall time in this process */

double sr_jit_compile_seconds(void) { return compile_seconds; }

/* NVRTC itself: compiles o->source into b (log, lowered names, image); 1 when the image is built */
static int nvrtc_build(const sr_jit_opts *o, const char *fname, const char **opts, int no, sr_jit_binary *b) {
  nvrtcProgram prog;
  nvrtcResult r = nvrtcCreateProgram(&prog, o->source, fname, 0, NULL, NULL);
  if (r != NVRTC_SUCCESS) { fail_log(b, "%s: error: nvrtcCreateProgram: %s", fname, nvrtcGetErrorString(r)); return 0; }
  for (int i = 0; i < o->nkernels; i++) nvrtcAddNameExpression(prog, o->kernels[i]);
  r = nvrtcCompileProgram(prog, no, opts);
  size_t ln = 0;
  nvrtcGetProgramLogSize(prog, &ln);
  char *raw = malloc(ln + 1);
  raw[0] = '\0';
  if (ln) nvrtcGetProgramLog(prog, raw);
  raw[ln] = '\0';
  b->log = rewrite_log(raw, fname);
  free(raw);
  if (r != NVRTC_SUCCESS) {
    if (!strstr(b->log, fname)) {  /* option errors name no file: say which compile failed */
      char *l2 = malloc(strlen(b->log) + strlen(fname) + 4);
      sprintf(l2, "%s: %s", fname, b->log);
      free(b->log);
      b->log = l2;
    }
    if (!b->log[0]) {
      free(b->log);
      char tmp[512];
      snprintf(tmp, sizeof tmp, "%s: error: %s", fname, nvrtcGetErrorString(r));
      b->log = xstrdup(tmp);
    }
    nvrtcDestroyProgram(&prog);
    return 0;
  }
  for (int i = 0; i < o->nkernels; i++) {
    const char *lowered = NULL;
    if (nvrtcGetLoweredName(prog, o->kernels[i], &lowered) != NVRTC_SUCCESS || !lowered) {
      fail_log(b, "%s: error: no kernel named '%s' in this source", fname, o->kernels[i]);
      nvrtcDestroyProgram(&prog);
      return 0;
    }
    b->lowered[i] = xstrdup(lowered);
  }
  b->nkernels = o->nkernels;
  size_t sz = 0;
  if (b->is_cubin) r = nvrtcGetCUBINSize(prog, &sz);
  else r = nvrtcGetPTXSize(prog, &sz);
  if (r == NVRTC_SUCCESS) {
    b->image = malloc(sz + 1);
    r = b->is_cubin ? nvrtcGetCUBIN(prog, b->image) : nvrtcGetPTX(prog, b->image);
    b->image[sz] = '\0';
    b->size = sz;
  }
  nvrtcDestroyProgram(&prog);
  if (r != NVRTC_SUCCESS) { fail_log(b, "%s: error: reading the compiled image: %s", fname, nvrtcGetErrorString(r)); return 0; }
  return 1;
}

/* one compile in flight: the caller's opts and binary, NVRTC's options (their buffers here) */
typedef struct jit_job {
  const sr_jit_opts *o;
  sr_jit_binary *b;
  const char *fname;
  char o_arch[64], o_self[1100], o_agent[1100], o_cuda[1100], o_cccl[1100], selfdir[1024];
  const char *opts[SR_JIT_MAXOPT + 8];
  int no, built;
  double ms;          /* its NVRTC time */
} jit_job;

/* the cache folder of a compile: the caller's, else the default */
static const char *cache_dir_of(const sr_jit_opts *o) {
  return o->cache_dir && *o->cache_dir ? o->cache_dir : sr_jit_cache_dir();
}

/* the options, the key and the cache: 1 when NVRTC must run (j->b filled otherwise: a hit or an error) */
static int job_start(jit_job *j) {
  const sr_jit_opts *o = j->o;
  sr_jit_binary *b = j->b;
  memset(b, 0, sizeof *b);
  const char *fname = j->fname = o->filename && *o->filename ? o->filename : "kernel.cu";
  if (!o->source) { fail_log(b, "%s: error: no source%s", fname, ""); return 0; }
  if (o->nkernels > SR_JIT_MAXKERN || o->noptions > SR_JIT_MAXOPT) {
    fail_log(b, "%s: error: too many kernels or options%s", fname, "");
    return 0;
  }
  pick_arch(o, b->arch, sizeof b->arch);
  b->is_cubin = !strncmp(b->arch, "sm_", 3);

  /* options: target, C++17, line info, include dirs (the file's folder, the agent header's,
  ** the CUDA toolkit's), then the caller's */
  const char **opts = j->opts;
  int no = 0;
  snprintf(j->o_arch, sizeof j->o_arch, "--gpu-architecture=%s", b->arch);
  opts[no++] = j->o_arch;
  opts[no++] = "-std=c++17";
  opts[no++] = "-lineinfo";
  opts[no++] = "-DSPEEDRUN_KERNEL=1";
  dirname_of(fname, j->selfdir, sizeof j->selfdir);
  snprintf(j->o_self, sizeof j->o_self, "-I%s", j->selfdir);
  opts[no++] = j->o_self;
  snprintf(j->o_agent, sizeof j->o_agent, "-I%s", sr_jit_include_dir());
  opts[no++] = j->o_agent;
  const char *cinc = sr_jit_cuda_include_dir();
  if (cinc) {
    snprintf(j->o_cuda, sizeof j->o_cuda, "-I%s", cinc);
    opts[no++] = j->o_cuda;
    char cccl[1100];
    snprintf(cccl, sizeof cccl, "%s/cccl/cuda/std/version", cinc);
    if (file_exists(cccl)) {  /* CUDA 13 keeps <cuda/std/...> and cub in include/cccl */
      snprintf(j->o_cccl, sizeof j->o_cccl, "-I%s/cccl", cinc);
      opts[no++] = j->o_cccl;
    }
  }
  for (int i = 0; i < o->noptions; i++) opts[no++] = o->options[i];
  j->no = no;

  /* the key */
  hash128 h;
  hash_init(&h);
  hash_str(&h, "speedrun-jit-1");
  hash_str(&h, sr_jit_nvrtc_version());
  hash_str(&h, fname);
  hash_str(&h, o->source);
  for (int i = 0; i < no; i++) hash_str(&h, opts[i]);
  for (int i = 0; i < o->nkernels; i++) hash_str(&h, o->kernels[i]);
  {
    const char *dirs[SR_JIT_MAXOPT + 2];
    int nd = 0;
    dirs[nd++] = j->selfdir;
    dirs[nd++] = sr_jit_include_dir();
    for (int i = 0; i < o->noptions; i++)
      if (!strncmp(o->options[i], "-I", 2) && o->options[i][2]) dirs[nd++] = o->options[i] + 2;
    inc_scan *s = calloc(1, sizeof *s);
    s->h = &h;
    s->dirs = dirs;
    s->ndirs = nd;
    scan_includes(s, o->source, j->selfdir);
    free(s);
  }
  snprintf(b->key, sizeof b->key, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);

  if (o->use_cache) {
    snprintf(b->cache_path, sizeof b->cache_path, "%s/%s.srk", cache_dir_of(o), b->key);
    if (cache_read(b->cache_path, b, o)) {
      b->ok = 1;
      b->cache_hit = 1;
      if (!b->log) b->log = xstrdup("");
      return 0;
    }
  }
  return 1;
}

/* NVRTC, timed (thread-safe: each job its own program and buffers) */
static void job_build(jit_job *j) {
  double t0 = sr_monotonic_s();
  j->built = nvrtc_build(j->o, j->fname, j->opts, j->no, j->b);
  j->ms = 1e3 * (sr_monotonic_s() - t0);
}

/* after NVRTC: the binary's state, and the cache entry */
static void job_finish(jit_job *j) {
  if (!j->built) return;
  const sr_jit_opts *o = j->o;
  j->b->compile_ms = j->ms;
  j->b->ok = 1;
  if (o->use_cache && make_dirs(cache_dir_of(o)) == 0) cache_write(j->b->cache_path, j->b, o);
}

/* NVRTC's time is the harness's compile account (sr_jit_compile_seconds): the device is idle
** first (outside a capture), so no queued GPU work can hide under it */
static void device_idle(void) {
  if (sr_cuda_started() && !sr_cuda_capturing()) cudaStreamSynchronize((cudaStream_t)sr_cuda_stream());
}

void sr_jit_compile(const sr_jit_opts *o, sr_jit_binary *b) {
  jit_job *j = calloc(1, sizeof *j);
  if (!j) { memset(b, 0, sizeof *b); fail_log(b, "%s: error: out of host memory%s", "kernel.cu", ""); return; }
  j->o = o, j->b = b;
  if (job_start(j)) {
    device_idle();
    job_build(j);
    compile_seconds += j->ms / 1e3;
    job_finish(j);
  }
  free(j);
}

/* compile_many's workers: jobs taken in turn from a shared counter */
typedef struct jit_pool { jit_job **todo; int n, next; pthread_mutex_t mu; } jit_pool;

static void *pool_worker(void *arg) {
  jit_pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    int k = p->next++;
    pthread_mutex_unlock(&p->mu);
    if (k >= p->n) return NULL;
    job_build(p->todo[k]);
  }
}

int sr_jit_threads(void) {
  const char *e = getenv("SPEEDRUN_JIT_THREADS");
  if (e && *e) {
    char *end;
    long n = strtol(e, &end, 10);
    if (*end || n < 1 || n > 16) sr_fail("SPEEDRUN_JIT_THREADS must be an integer from 1 to 16 (got '%s')", e);
    return (int)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

void sr_jit_compile_many(const sr_jit_opts *o, sr_jit_binary *b, int n) {
  int threads = sr_jit_threads();
  jit_job *jobs = calloc((size_t)(n > 0 ? n : 1), sizeof *jobs);
  jit_job **todo = calloc((size_t)(n > 0 ? n : 1), sizeof *todo);
  if (!jobs || !todo) sr_fail("jit: out of host memory compiling %d kernels", n);
  /* options, keys and cache reads here, on this thread; the workers only run NVRTC */
  int nt = 0;
  for (int i = 0; i < n; i++) {
    jobs[i].o = &o[i], jobs[i].b = &b[i];
    if (job_start(&jobs[i])) todo[nt++] = &jobs[i];
  }
  if (nt) {
    device_idle();
    double t0 = sr_monotonic_s();
    jit_pool pool = {todo, nt, 0, PTHREAD_MUTEX_INITIALIZER};
    int nw = threads < nt ? threads : nt, started = 0;
    pthread_t tid[16];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64u << 20);   /* NVRTC's front end recurses deeply */
    for (int w = 1; w < nw; w++)
      if (pthread_create(&tid[started], &attr, pool_worker, &pool) == 0) started++;
    pthread_attr_destroy(&attr);
    pool_worker(&pool);    /* this thread works too (and alone when no thread could start) */
    for (int w = 0; w < started; w++) pthread_join(tid[w], NULL);
    compile_seconds += sr_monotonic_s() - t0;   /* wall time, the device idle throughout */
    for (int k = 0; k < nt; k++) job_finish(todo[k]);
  }
  free(todo);
  free(jobs);
}

#else  /* !SPEEDRUN_CUDA */

void sr_jit_compile(const sr_jit_opts *o, sr_jit_binary *b) {
  memset(b, 0, sizeof *b);
  fail_log(b, "%s: %s", o->filename ? o->filename : "kernel.cu", sr_jit_compiler_unavailable());
}

double sr_jit_compile_seconds(void) { return 0; }

int sr_jit_threads(void) { return 1; }

void sr_jit_compile_many(const sr_jit_opts *o, sr_jit_binary *b, int n) {
  for (int i = 0; i < n; i++) sr_jit_compile(&o[i], &b[i]);
}

#endif

