/*
** jit/launch.c: agent kernels loaded and launched through the CUDA driver API, the last-launch
** record (shared with a parent process through a file mapping) and fault reporting. Contract in
** host/jit/jit.h; user docs in docs/kernels.md.
**
** The CUDA driver API is reached through dlopen("libcuda.so.1"), never linked: CI and build
** machines have the toolkit (and NVRTC) but no driver, and a binary linking libcuda would not
** start there.
*/
#include <dlfcn.h>             /* defines: dlopen, dlsym */
#include <fcntl.h>             /* defines: open, O_RDWR */
#include <stdio.h>             /* defines: snprintf */
#include <stdlib.h>            /* defines: getenv, atexit */
#include <string.h>            /* defines: memset */
#include <sys/mman.h>          /* defines: mmap */
#include <unistd.h>            /* defines: ftruncate, close, _exit */

#include "jit/jit.h"           /* defines: the API implemented here, SR_CUDA_ONLY */

#ifdef SPEEDRUN_CUDA
#include <cuda_runtime.h>      /* defines: cudaStreamSynchronize, cudaDeviceGetAttribute */
#include "cuda/backend.h"      /* defines: sr_cuda_stream, sr_cuda_probe, sr_cuda_capturing, sr_cuda_note_setup */
#include "util/clock.h"         /* defines: sr_monotonic_s */
#endif

SR_CUDA_ONLY static _Thread_local char msgbuf[1024];

/* ------------------------------------------------------------------------------------------
** the last-launch record: in memory, and in a shared file mapping when SPEEDRUN_KERNEL_RECORD
** names one (so a parent process can read it even after the child dies) */

static sr_jit_record last;
static char *record_map;      /* 4096 bytes of the record file, or NULL */
static int record_tried;
#define SR_RECORD_BYTES 4096

static void record_open(void) {
  record_tried = 1;
  const char *path = getenv("SPEEDRUN_KERNEL_RECORD");
  if (!path || !*path) return;
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return;
  if (ftruncate(fd, SR_RECORD_BYTES) == 0) {
    void *m = mmap(NULL, SR_RECORD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) record_map = m;
  }
  close(fd);
}

SR_CUDA_ONLY static void record_write(const char *fault) {
  if (!record_tried) record_open();
  if (!record_map) return;
  int n = snprintf(record_map, SR_RECORD_BYTES,
                   "kernel=%s\nfile=%s\nlaunches=%lld\ngrid=%u,%u,%u\nblock=%u,%u,%u\nshared=%u\n%s%s%s",
                   last.kernel, last.file, (long long)last.launches, last.grid[0], last.grid[1], last.grid[2],
                   last.block[0], last.block[1], last.block[2], last.shared, fault ? "fault=" : "",
                   fault ? fault : "", fault ? "\n" : "");
  if (n >= 0 && n < SR_RECORD_BYTES) memset(record_map + n, 0, (size_t)(SR_RECORD_BYTES - n));
}

int sr_jit_last_launch(sr_jit_record *r) {
  if (last.launches == 0) return 0;
  if (r) *r = last;
  return 1;
}

/* ------------------------------------------------------------------------------------------
** the driver API, through dlopen */

#ifdef SPEEDRUN_CUDA

typedef int CUres;  /* CUresult */
typedef void *CUmod, *CUfunc;
static struct {
  int tried;
  char why[256];
  CUres (*ModuleLoadData)(CUmod *, const void *);
  CUres (*ModuleUnload)(CUmod);
  CUres (*ModuleGetFunction)(CUfunc *, CUmod, const char *);
  CUres (*LaunchKernel)(CUfunc, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                        void **, void **);
  CUres (*FuncSetAttribute)(CUfunc, int, int);
  CUres (*GetErrorString)(CUres, const char **);
  CUres (*GetErrorName)(CUres, const char **);
  CUres (*CtxGetCurrent)(void **);
} drv;
#define SR_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

static const char *driver(void) {
  if (drv.tried) return drv.why[0] ? drv.why : NULL;
  drv.tried = 1;
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    snprintf(drv.why, sizeof drv.why, "cannot open libcuda.so.1 (no NVIDIA driver): %s", dlerror());
    return drv.why;
  }
#define SYM(field, name)                                                                  \
  do {                                                                                    \
    *(void **)&drv.field = dlsym(h, name);                                                \
    if (!drv.field) {                                                                     \
      snprintf(drv.why, sizeof drv.why, "libcuda.so.1 lacks %s", name);                   \
      return drv.why;                                                                     \
    }                                                                                     \
  } while (0)
  SYM(ModuleLoadData, "cuModuleLoadData");
  SYM(ModuleUnload, "cuModuleUnload");
  SYM(ModuleGetFunction, "cuModuleGetFunction");
  SYM(LaunchKernel, "cuLaunchKernel");
  SYM(FuncSetAttribute, "cuFuncSetAttribute");
  SYM(GetErrorString, "cuGetErrorString");
  SYM(GetErrorName, "cuGetErrorName");
  SYM(CtxGetCurrent, "cuCtxGetCurrent");
#undef SYM
  return NULL;
}

static const char *cu_msg(const char *what, CUres r) {
  const char *s = "unknown error", *n = "?";
  if (drv.GetErrorString) drv.GetErrorString(r, &s);
  if (drv.GetErrorName) drv.GetErrorName(r, &n);
  snprintf(msgbuf, sizeof msgbuf, "%s: %s (%s)", what, s ? s : "unknown error", n ? n : "?");
  return msgbuf;
}

struct sr_jit_module { CUmod mod; };

sr_jit_module *sr_jit_load(const sr_jit_binary *b, const char **err) {
  const char *w = sr_cuda_probe();
  if (w) {
    snprintf(msgbuf, sizeof msgbuf, "no usable GPU: %s", w);
    *err = msgbuf;
    return NULL;
  }
  if ((w = driver())) { *err = w; return NULL; }
  sr_cuda_stream();  /* the engine's device and primary context, current on this thread */
  void *ctx = NULL;
  drv.CtxGetCurrent(&ctx);
  if (!ctx) {
    cudaFree(0);
    drv.CtxGetCurrent(&ctx);
    if (!ctx) { *err = "no current CUDA context after the runtime started"; return NULL; }
  }
  CUmod mod = NULL;
  double t0 = sr_cuda_setup_clock();
  CUres r = drv.ModuleLoadData(&mod, b->image);
  sr_cuda_note_setup(SR_SETUP_MODULE_LOAD, sr_monotonic_s() - t0);
  if (r != 0) {
    cu_msg(b->is_cubin ? "cuModuleLoadData (cubin)" : "cuModuleLoadData (PTX)", r);
    if (r == 209 /* CUDA_ERROR_NO_BINARY_FOR_GPU */ || r == 222 /* UNSUPPORTED_PTX_VERSION */) {
      size_t k = strlen(msgbuf);
      snprintf(msgbuf + k, sizeof msgbuf - k, "; the image was built for %s", b->arch);
    }
    *err = msgbuf;
    return NULL;
  }
  sr_jit_module *m = calloc(1, sizeof *m);
  m->mod = mod;
  return m;
}

void sr_jit_unload(sr_jit_module *m) {
  if (!m) return;
  if (drv.ModuleUnload && m->mod) drv.ModuleUnload(m->mod);
  free(m);
}

void *sr_jit_function(sr_jit_module *m, const char *lowered, const char **err) {
  CUfunc f = NULL;
  CUres r = drv.ModuleGetFunction(&f, m->mod, lowered);
  if (r != 0) { *err = cu_msg("cuModuleGetFunction", r); return NULL; }
  return f;
}

static int registered_exit_check;
static void exit_check(void);

const char *sr_jit_launch_kernel(const sr_jit_launch *l) {
  if (!registered_exit_check) {  /* after the runtime started, so this runs before its teardown */
    registered_exit_check = 1;
    atexit(exit_check);
  }
  snprintf(last.kernel, sizeof last.kernel, "%s", l->kernel);
  snprintf(last.file, sizeof last.file, "%s", l->file);
  memcpy(last.grid, l->grid, sizeof last.grid);
  memcpy(last.block, l->block, sizeof last.block);
  last.shared = l->shared;
  last.launches++;
  record_write(NULL);
  if (l->shared > 48 * 1024) {
    CUres r = drv.FuncSetAttribute(l->function, SR_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)l->shared);
    if (r != 0) return cu_msg("cuFuncSetAttribute (dynamic shared memory)", r);
  }
  CUres r = drv.LaunchKernel(l->function, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1],
                             l->block[2], l->shared, sr_cuda_stream(), l->args, NULL);
  if (r != 0) return cu_msg("cuLaunchKernel", r);
  static int sync_each = -1;
  if (sync_each < 0) {
    const char *e = getenv("SPEEDRUN_KERNEL_SYNC");
    sync_each = e && *e && strcmp(e, "0") ? 1 : 0;
  }
  if (sync_each && !sr_cuda_capturing()) return sr_jit_fault();
  return NULL;
}

const char *sr_jit_fault(void) {
  if (last.launches == 0 || sr_cuda_capturing()) return NULL;
  cudaError_t e = cudaStreamSynchronize((cudaStream_t)sr_cuda_stream());
  if (e == cudaSuccess) return NULL;
  snprintf(msgbuf, sizeof msgbuf,
           "cuda_fault: kernel=%s file=%s launch=%lld grid=%u,%u,%u block=%u,%u,%u: %s (%s)", last.kernel,
           last.file, (long long)last.launches, last.grid[0], last.grid[1], last.grid[2], last.block[0],
           last.block[1], last.block[2], cudaGetErrorString(e), cudaGetErrorName(e));
  return msgbuf;
}

/* at exit: a fault still pending (never synchronized, or raised as a plain Lua error) must not
** end as success; print it and exit with SR_EXIT_CUDA_FAULT */
static void exit_check(void) {
  const char *f = sr_jit_fault();
  if (!f) return;
  record_write(f);
  fprintf(stderr, "speedrun: %s\n", f);
  fflush(stderr);
  _exit(SR_EXIT_CUDA_FAULT);
}

#else  /* !SPEEDRUN_CUDA */

struct sr_jit_module { int unused; };
sr_jit_module *sr_jit_load(const sr_jit_binary *b, const char **err) {
  *err = sr_jit_compiler_unavailable();
  return NULL;
}
void sr_jit_unload(sr_jit_module *m) { (void)m; }
void *sr_jit_function(sr_jit_module *m, const char *lowered, const char **err) {
  *err = sr_jit_compiler_unavailable();
  return NULL;
}
const char *sr_jit_launch_kernel(const sr_jit_launch *l) { return sr_jit_compiler_unavailable(); }
const char *sr_jit_fault(void) { return NULL; }

#endif

