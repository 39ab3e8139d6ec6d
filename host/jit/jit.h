/*
** jit/jit.h: agent kernels. Compiles CUDA C++ source at run time with NVRTC, caches the result on
** disk, loads it through the CUDA driver API and launches it on the engine's stream. No Lua
** here: host/lua/lkernel.c is the Lua face (speedrun.kernel), host/cli/cmd_kernel.c the CLI.
**
** - NVRTC is linked (CUDA::nvrtc) and runs without a GPU, so compiling to PTX works on CI.
** - The driver API (libcuda.so.1) is opened with dlopen on first load, so the binary starts on
**   machines without a driver; only loading and launching need it.
** - Target: sm_XY cubin for the GPU in use; compute_90 PTX when there is no usable GPU (or
**   whatever opts->arch says: "sm_90a", "compute_90", ...).
** - Cache key: a 128-bit hash of the source, every file it includes with "..." (found next to
**   the including file or in the include dirs), the agent header, the options, the target and
**   the NVRTC version. Entries live in sr_jit_cache_dir() as <key>.srk; writes are atomic.
** - Compile errors: the log with NVRTC's "file(12): error" rewritten as "file:12: error", the
**   file being the path the caller gave (never a temporary).
** - Faults: every launch updates the "last launched agent kernel" record (sr_jit_last_launch);
**   sr_jit_fault() tells whether the context holds a sticky fault and names that kernel. See
**   docs/kernels.md, "Faults", for what the harness does with it.
** Not thread-safe: the host drives the GPU from one thread. sr_jit_compile_many runs NVRTC itself
** on several threads (SPEEDRUN_JIT_THREADS, default the cores up to 16), one program each.
*/
#ifndef SR_JIT_H
#define SR_JIT_H

/* marks helpers of host/jit/ that only the CUDA build calls (unused in a CPU-only build) */
#ifdef SPEEDRUN_CUDA
#define SR_CUDA_ONLY
#else
#define SR_CUDA_ONLY __attribute__((unused))
#endif

#include <stddef.h>   /* defines: size_t */
#include <stdint.h>   /* defines: int64_t, uint64_t */

#include "core/tensor.h"   /* defines: sr_dtype */

#ifdef __cplusplus
extern "C" {
#endif

/* exit status of a process that ends with a fault in an agent kernel still pending */
#define SR_EXIT_CUDA_FAULT 70

/* ---- compiling */

#define SR_JIT_MAXOPT 64
#define SR_JIT_MAXKERN 32

typedef struct sr_jit_opts {
  const char *source;             /* the CUDA C++ text */
  const char *filename;           /* shown in errors and line info: the user's path, or a name */
  const char *arch;               /* "sm_90", "sm_90a", "compute_90"...; NULL: the GPU's, else compute_90 */
  const char *options[SR_JIT_MAXOPT];  /* extra NVRTC options ("-DX=1", "--use_fast_math", "-I..") */
  int noptions;
  const char *kernels[SR_JIT_MAXKERN]; /* entry points to resolve (C++ names allowed: lowered names are kept) */
  int nkernels;
  int use_cache;                  /* 0: always compile, never write the cache */
  const char *cache_dir;          /* NULL: sr_jit_cache_dir() */
} sr_jit_opts;

typedef struct sr_jit_binary {
  int ok;                         /* 1 compiled (or found in the cache) */
  int is_cubin;                   /* 1 cubin, 0 PTX */
  char arch[32];                  /* the target used */
  char *image;                    /* the cubin or the NUL-terminated PTX (malloc'd) */
  size_t size;
  char *lowered[SR_JIT_MAXKERN];  /* lowered (mangled) name of each kernels[i] (malloc'd) */
  int nkernels;
  char *log;                      /* compile log, file:line form (malloc'd; "" when quiet) */
  int cache_hit;
  char key[33];                   /* hex of the cache key */
  char cache_path[1024];          /* where the entry is ("" when the cache is off) */
  double compile_ms;              /* NVRTC time (0 on a hit) */
} sr_jit_binary;

/* compiles (or finds in the cache); on failure b->ok = 0 and b->log says why. Frees nothing of opts. */
void sr_jit_compile(const sr_jit_opts *opts, sr_jit_binary *b);
/* n compiles at once (o[i] into b[i], each as sr_jit_compile, cache included): the misses' NVRTC
** runs on sr_jit_threads() threads; their wall time counts once in sr_jit_compile_seconds */
void sr_jit_compile_many(const sr_jit_opts *o, sr_jit_binary *b, int n);
/* threads for sr_jit_compile_many: $SPEEDRUN_JIT_THREADS, else the online cores; 1..16 */
int sr_jit_threads(void);
/* seconds this process spent in NVRTC (cache misses), the device idle at each start: the
** harness keeps them off the clock (harness/steps.lua) */
double sr_jit_compile_seconds(void);
void sr_jit_binary_free(sr_jit_binary *b);

const char *sr_jit_cache_dir(void);        /* $SPEEDRUN_KERNEL_CACHE, $XDG_CACHE_HOME/speedrun/kernels, ~/.cache/... */
const char *sr_jit_include_dir(void);      /* the folder holding speedrun_kernel.cuh */
const char *sr_jit_cuda_include_dir(void); /* the CUDA toolkit's include folder, or NULL if not found */
const char *sr_jit_nvrtc_version(void);    /* "13.0"; NULL when NVRTC is not built in */
/* NULL when kernels can be compiled (NVRTC built in), else why not */
const char *sr_jit_compiler_unavailable(void);

/* ---- signatures: "ptr float* out, ptr const bf16* x, int n, float eps" */

typedef enum sr_jit_argkind {
  SR_ARG_PTR,                     /* a tensor, passed as a device pointer */
  SR_ARG_I32, SR_ARG_U32, SR_ARG_I64, SR_ARG_U64, SR_ARG_F32, SR_ARG_F64
} sr_jit_argkind;

#define SR_JIT_MAXARG 32

typedef struct sr_jit_param {
  sr_jit_argkind kind;
  int dtype;                      /* pointers: an sr_dtype, or -1 for void* (any dtype) */
  int is_const;                   /* pointers: declared const (the kernel only reads it) */
  char ctype[32];                 /* as written, for messages ("const bf16*", "int") */
  char name[32];                  /* "" when the signature gives none */
} sr_jit_param;

typedef struct sr_jit_sig {
  int nparams;
  sr_jit_param p[SR_JIT_MAXARG];
} sr_jit_sig;

/* parses a signature; returns NULL or an error message (static storage) */
const char *sr_jit_parse_sig(const char *text, sr_jit_sig *sig);
/* "args[2] 'x' (ptr const bf16*)" into buf */
const char *sr_jit_param_label(const sr_jit_sig *sig, int i, char *buf, size_t n);

/* ---- loading and launching (CUDA builds with a GPU) */

typedef struct sr_jit_module sr_jit_module;

/* loads an image into the engine's context; NULL and *err on failure */
sr_jit_module *sr_jit_load(const sr_jit_binary *b, const char **err);
void sr_jit_unload(sr_jit_module *m);
/* the function of kernel i of the binary; NULL and *err on failure */
void *sr_jit_function(sr_jit_module *m, const char *lowered, const char **err);

typedef struct sr_jit_launch {
  const char *kernel;             /* the name the user knows (for records and messages) */
  const char *file;               /* the .cu path or source name */
  void *function;                 /* from sr_jit_function */
  unsigned grid[3], block[3];
  unsigned shared;                /* dynamic shared memory in bytes */
  void **args;                    /* cuLaunchKernel's kernelParams */
} sr_jit_launch;

/* launches on sr_cuda_stream(); NULL or an error message. With SPEEDRUN_KERNEL_SYNC=1 it also
** synchronizes and reports a fault of this kernel as "cuda_fault in agent kernel ...". */
const char *sr_jit_launch_kernel(const sr_jit_launch *l);

/* ---- the last launched agent kernel, and faults */

typedef struct sr_jit_record {
  char kernel[128];
  char file[512];
  unsigned grid[3], block[3], shared;
  int64_t launches;               /* launches of agent kernels in this process so far */
} sr_jit_record;

/* 1 and *r filled when an agent kernel was launched in this process, else 0 */
int sr_jit_last_launch(sr_jit_record *r);
/* synchronizes the engine's stream; returns NULL when the context is healthy, else a message
** "cuda_fault: kernel=NAME file=PATH launch=N grid=... block=...: <CUDA error>" (thread-local
** storage). The kernel named is the last agent kernel launched ("none" if no agent kernel ran). */
const char *sr_jit_fault(void);

#ifdef __cplusplus
}
#endif
#endif
