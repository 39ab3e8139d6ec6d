/*
** lua/lsr.h: the Lua side of the host. Conventions (after Lua's liolib.c):
**  - one named metatable per userdata type ("speedrun.Tensor", ...), checked with luaL_checkudata;
**  - caller mistakes raise luaL_argerror/luaL_error naming the function and the argument;
**  - expected failures (a file that will not open, a kernel that will not compile) return
**    nil, message;
**  - every C module is a luaopen_speedrun_<name> listed in sr_modules (host/lua/lsr.c) and is
**    reachable as require "speedrun.<name>".
*/
#ifndef SR_LSR_H
#define SR_LSR_H

#include <lua.h>      /* defines: lua_State */
#include <lauxlib.h>  /* defines: luaL_Reg, luaL_checkudata */

#include "core/tensor.h"   /* defines: sr_tensor */

#define SR_TENSOR_MT "speedrun.Tensor"

/* Tensor userdata: a box holding one reference to a C tensor */
typedef struct sr_tensor_box { sr_tensor *t; } sr_tensor_box;

sr_tensor *sr_check_tensor(lua_State *L, int arg);         /* raises if not a live Tensor */
sr_tensor *sr_opt_tensor(lua_State *L, int arg);           /* NULL for nil/none */
sr_tensor *sr_to_tensor(lua_State *L, int arg);            /* NULL if not a Tensor */
void sr_push_tensor(lua_State *L, sr_tensor *t);           /* takes over the caller's reference */
int sr_check_dtype(lua_State *L, int arg, sr_dtype def);    /* "float32"/"f32"/"bfloat16"/... */
sr_device sr_check_device(lua_State *L, int arg, sr_device def);  /* "cpu" or "cuda" */
int sr_check_dim(lua_State *L, int arg, int ndim);         /* 1-based (negative from the end) -> 0-based */
/* shapes from Lua (host/lua/lshape.c): f(2, 3) or f({2, 3}) at arg into shape[SR_MAXDIM], *last
** the last argument taken; every size an integer >= min (-1 where a size may be inferred), and
** for min >= 0 a product within SR_MAX_NUMEL; returns ndim. Mistakes raise bad-argument errors */
int sr_check_shape_arg(lua_State *L, int arg, int64_t *shape, int *last, int64_t min);
int64_t sr_check_size(lua_State *L, int arg, int idx, int d, int64_t min);  /* one size (stack idx, dim d) */
int64_t sr_check_numel_arg(lua_State *L, int arg, int ndim, const int64_t *shape);
extern const luaL_Reg sr_view_methods[];                   /* view, reshape, transpose, ...: lshape.c */
extern const luaL_Reg sr_inplace_methods[];                /* copy_, fill_, add_, x:tanh_(), ...: linplace.c */

/* caller mistakes in an argument, in the one style of Lua's own libraries:
** "bad argument #arg to 'fname' (message)" (luaL_argerror with a lua_pushfstring format); never returns */
int sr_argerror(lua_State *L, int arg, const char *fmt, ...);

/* the harness's eval guard (speedrun.harness_core.eval_guard, host/lua/lharness.c): while it is on
** (restricted runs, around eval), this raises a "rejected:" error naming `what` and counts it */
void sr_eval_guard(lua_State *L, const char *what);
void sr_train_guard(lua_State *L, const char *what);  /* sr_eval_guard, and refused in the untimed setup */
/* restricted runs: speedrun.empty zeroes its memory (host/lua/ltensor.c) */
void sr_empty_zeroed(bool on);

/* sr_fail() inside a binding becomes a Lua error through this state */
void sr_lua_bind_errors(lua_State *L);

/* module openers */
/* a userdata class: metatable `name` with metamethods, and methods as its __index table */
void sr_new_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods);
/* GPT-2 ids from argument arg (a table of integers or a tensor) appended to t; on a bad id t is
** freed and an argument error raised (host/lua/ltokenizer.c) */
struct sr_tokens;
void sr_check_token_ids(lua_State *L, int arg, struct sr_tokens *t);

int luaopen_speedrun_core(lua_State *L);     /* Tensor, F, autograd, rng: host/lua/ltensor.c, host/lua/lops.c */
int luaopen_speedrun_F(lua_State *L);        /* pushes the F table: host/lua/lops.c */
void sr_push_op_names(lua_State *L);         /* pushes the op_names table: host/lua/lops.c */
void sr_open_custom_functions(lua_State *L); /* adds custom-function entry points to the module at -1: host/lua/lops.c */
int luaopen_speedrun_tokenizer(lua_State *L);  /* GPT-2 BPE: host/lua/ltokenizer.c */
int luaopen_speedrun_data(lua_State *L);       /* shards, loaders, corpora: host/lua/ldata.c */
int luaopen_speedrun_kernel_core(lua_State *L);  /* agent kernels (NVRTC): host/lua/lkernel.c */
int luaopen_speedrun_json(lua_State *L);       /* JSON encode/decode: host/lua/ljson.c */
int luaopen_speedrun_stats(lua_State *L);      /* t-test, FSR: host/lua/lstats.c */
int luaopen_speedrun_harness_core(lua_State *L);  /* clock, checks, traces: host/lua/lharness.c */
int luaopen_speedrun_process(lua_State *L);    /* child processes, limits, signals: host/lua/lprocess.c */
#define SR_EVENT_FD 3  /* the harness child's event channel (lprocess.c makes it, lharness.c writes it) */
int luaopen_speedrun_fuse(lua_State *L);       /* the step compiler: host/lua/lfuse.c */
int luaopen_speedrun_cuda(lua_State *L);       /* memory, synchronize, graphs: host/lua/lcuda.c */
int luaopen_speedrun_profile_core(lua_State *L);  /* per-op profiler: host/lua/lprofile.c */
int luaopen_speedrun_http(lua_State *L);       /* HTTP requests with retries (libcurl): host/lua/lhttp.c */
void sr_open_modules(lua_State *L);          /* puts every C module in package.preload */
void sr_setup_package_path(lua_State *L);    /* adds the lua/ folder of the install/checkout */
const char *sr_lua_dir(void);
const char *sr_self_exe(void);               /* absolute path of the running binary */

/* run a chunk with a traceback handler; prints the error; returns the Lua status */
/* a command written in Lua: in a new state, require(module)[fn](first..., {argv[1..argc-1]}) (no
** table when argv is NULL); its integer result (nil: 0) is the exit status, 1 on a Lua error
** (reported with its traceback) */
int sr_call_module(const char *module, const char *fn, int nfirst, const char *const *first, int argc, char **argv);
int sr_docall(lua_State *L, int narg, int nres);
lua_State *sr_new_state(void);               /* libs + modules + package path + `speedrun` global */

#endif
