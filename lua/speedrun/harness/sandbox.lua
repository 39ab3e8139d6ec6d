-- speedrun.harness.sandbox: the restricted Lua environment of score mode (docs/harness.md).
--
-- install(opts) changes the process's own io/os/package tables in place, so the rules also hold
-- for library code the recipe calls (speedrun.nn.save, ...):
--   * os.execute, io.popen, package.loadlib, os.exit, os.tmpname, io.input/io.output with a
--     name: a violation (recorded even if the recipe catches the error);
--   * io.open / io.lines: reads only inside the workspace (or the run's output folder), never
--     inside a denied folder (the data); in the workspace only its source files (M.SOURCE:
--     .lua, .cu, .cuh, .h, .hpp): a recipe is code, and weights or data brought into the
--     workspace would let it skip training; writes (and os.remove/os.rename) only inside the
--     output folder. Paths are resolved with realpath, so links do not escape.
--   * C modules: package.cpath is emptied and the C searchers removed.
--   * package.path: the checkout's lua/ folder only (not ./?.lua: the child's working directory is
--     the workspace, whose speedrun/x.lua would load with the process's real globals).
--   * sealed shared tables (M.seal): every named metatable (the tensors', files', ...) answers
--     getmetatable with its name, and speedrun.Tensor / speedrun.core.Tensor are removed, so a
--     recipe cannot put a hook (__gc, __index, a method) where the harness calls it off the clock;
--     the library modules recipes may load are loaded, and their tables are then checked unchanged
--     (harness/state.lua library_changed) wherever the clock stops and after every eval call.
-- env(opts) returns the recipe's global table: the safe base functions, copies of string, table,
-- math, utf8 and coroutine, a small os (time, clock, date, difftime), a checked io, load in text
-- mode, loadfile/dofile/require confined to the workspace and the modules of M.LIBRARY (by exact
-- name: not speedrun.data, speedrun.testing, the tokenizer, the harness or the agent), and no
-- debug library.
local H = require "speedrun.harness_core"
local state_lib = require "speedrun.harness.state"   -- loaded before install takes debug away (it keeps its functions)

local M = {}

-- the workspace files a recipe may read in score mode (by extension); guard.check_workspace caps
-- their total size
M.SOURCE = {lua = true, cu = true, cuh = true, h = true, hpp = true}

-- the library modules a recipe may require, by exact name (docs/recipes.md); every other
-- speedrun.* name is refused as a violation (the data, the tokenizer's file reader, processes,
-- HTTP, the harness, the agent, the step compiler's controls, speedrun.util: the tools' recipe
-- loader there runs a file with the process's own globals)
M.LIBRARY = {}
for _, name in ipairs {"speedrun", "speedrun.core", "speedrun.nn", "speedrun.optim", "speedrun.autograd",
                       "speedrun.gpt", "speedrun.kernel", "speedrun.cuda", "speedrun.profile", "speedrun.attention"} do
  M.LIBRARY[name] = true
end

local realpath, eval_check, eval_epoch = H.realpath, H.eval_check, H.eval_epoch
local getregistry, dgetmetatable = debug.getregistry, debug.getmetatable   -- debug leaves the process's globals (install)
local sfind, ssub, smatch, sformat = string.find, string.sub, string.match, string.format
local error, type, pairs, tostring = error, type, pairs, tostring

-- is path inside dir (both canonical)?
local function inside(path, dir)
  if not dir then return false end
  return path == dir or ssub(path, 1, #dir + 1) == dir .. "/"
end

-- canonical form of a path that may not exist yet (its folder must)
local function canonical(path, cwd)
  if ssub(path, 1, 1) ~= "/" then path = cwd .. "/" .. path end
  local r = realpath(path)
  if r then return r end
  local dir, base = smatch(path, "^(.*)/([^/]*)$")
  if not dir then return nil end
  if dir == "" then dir = "/" end
  local rd = realpath(dir)
  if not rd or base == "" or base == "." or base == ".." then return nil end
  return (rd == "/" and "" or rd) .. "/" .. base
end

-- Objects with a position are state eval could keep between its calls, which no picture taken
-- from Lua sees: inside eval, only those made during that same call may be used (born[x]: the eval
-- call x was made in, harness_core.eval_epoch; nil outside eval)
local born = setmetatable({}, {__mode = "k"})   -- handle or iterator -> the eval call it was made in
local function this_call(x, what)
  local e = eval_epoch()
  if e and born[x] ~= e then eval_check(what .. " made outside this eval call") end
end
local function iterator(it, what)
  local function step(...)
    this_call(step, what)
    return it(...)
  end
  born[step] = eval_epoch()
  return step
end

-- the process's io (the recipe's and the library's): paths through check_path; a file handle's
-- position and contents are state: inside eval, only handles (and line iterators) opened during
-- that same call may be used, and the default input and output (which setup may have pointed at a
-- file) not at all
local function install_io(check_path, violation)
  local real_open, real_lines = io.open, io.lines
  local real_input, real_output, real_read, real_write = io.input, io.output, io.read, io.write
  io.open = function(path, mode)
    mode = mode or "r"
    local write = type(mode) == "string" and (sfind(mode, "[wa+]") ~= nil)
    local c = check_path(path, write)
    if not c then return nil, tostring(path) .. ": No such file or directory", 2 end
    local f, err, code = real_open(c, mode)
    if f then born[f] = eval_epoch() end
    return f, err, code
  end
  io.lines = function(path, ...)
    if path == nil then eval_check("reading the default input"); return real_lines() end
    local c = check_path(path, false)
    if not c then error(tostring(path) .. ": No such file or directory", 2) end
    return iterator(real_lines(c, ...), "a line iterator")
  end
  io.read = function(...) eval_check("reading the default input"); return real_read(...) end
  io.write = function(...)   -- printing is fine: stdout is a pipe to the parent (recipe.log)
    if real_output() ~= io.stdout then eval_check("writing the default output once it is a file") end
    return real_write(...)
  end
  io.input = function(f)
    if type(f) == "string" then violation("io.input with a file name") end
    if f ~= nil then eval_check("setting the default input") end
    return real_input(f)
  end
  io.output = function(f)
    if type(f) == "string" then violation("io.output with a file name") end
    if f ~= nil then eval_check("setting the default output") end
    return real_output(f)
  end
  -- the standard streams (pipes to the parent: nothing written there can be read back) may be
  -- written to in eval; every other use of a handle made outside the call is refused
  local std = {[io.stdout] = true, [io.stderr] = true}
  local writes = {write = true, flush = true, setvbuf = true}
  local fmt_ = dgetmetatable(io.stdout)
  local methods = fmt_.__index   -- the handles' methods, for every handle
  for name, fn in pairs(methods) do
    if name == "lines" then
      methods.lines = function(f, ...) this_call(f, "a file handle"); return iterator(fn(f, ...), "a line iterator") end
    elseif writes[name] then
      methods[name] = function(f, ...) if not std[f] then this_call(f, "a file handle") end; return fn(f, ...) end
    else
      methods[name] = function(f, ...) this_call(f, "a file handle"); return fn(f, ...) end
    end
  end
  local real_close = fmt_.__close   -- a to-be-closed variable closes without the methods
  if real_close then fmt_.__close = function(f, e) this_call(f, "a file handle"); return real_close(f, e) end end
end

-- the process's other objects with hidden positions: gmatch iterators, and a table's removed keys
local function install_positions()
  -- string.gmatch's iterator keeps its position (a C closure's state the picture cannot see): the
  -- process's own string table, which strings' methods (("s"):gmatch) reach as well
  local real_gmatch = string.gmatch
  string.gmatch = function(...) return iterator(real_gmatch(...), "a string.gmatch iterator") end
  -- a table keeps a removed key in its node until it is resized, and next(t, k) tells such a key
  -- from one never there (no error): inside eval, next may not be asked from a key the table does
  -- not hold (the picture sees an empty table either way); pairs hands out the checked next
  -- (the key next last handed out for t in this call is fine: a loop clearing what it walks)
  local real_next, real_pairs = next, pairs
  local last_key, last_call = setmetatable({}, {__mode = "k"}), setmetatable({}, {__mode = "k"})
  local function checked_next(t, k)
    local e = eval_epoch()
    if e and k ~= nil and type(t) == "table" and rawget(t, k) == nil and not (last_call[t] == e and rawequal(last_key[t], k)) then
      eval_check("next from a key the table does not hold")
    end
    local nk, v = real_next(t, k)
    if e and type(t) == "table" then last_key[t], last_call[t] = nk, e end
    return nk, v
  end
  _G.next = checked_next
  _G.pairs = function(t)
    local f, st, c = real_pairs(t)
    if f == real_next then f = checked_next end
    return f, st, c
  end
end

function M.install(opts)
  local state = {violations = {}, workspace = opts.workspace, out = opts.out, deny = opts.deny or {},
                 readable = opts.readable or {}}
  local on_violation = opts.on_violation
  local cwd = opts.cwd or opts.workspace

  local function violation(what)
    local msg = "rejected: " .. what
    state.violations[#state.violations + 1] = what
    if on_violation then on_violation(what) end
    error(msg, 3)
  end
  state.violation = violation

  local function check_path(path, write)
    if write then eval_check("writing a file") end   -- a file is memory eval could keep between its calls
    -- Lua's io.open, io.lines, loadfile, os.remove and os.rename take a number as its string: the
    -- file named "1" in the working folder (the workspace) was opened unchecked (round 16,
    -- cheat_numpath); checked as that name. Other types: the C function raises
    if type(path) == "number" then path = tostring(path) end
    if type(path) ~= "string" then return path end
    local c = canonical(path, cwd)
    if not c then
      if write then violation(sformat("writing %s (its folder does not exist or is not allowed)", path)) end
      return nil
    end
    for _, d in pairs(state.deny) do
      if inside(c, d) then violation(sformat("opening %s: the data folder %s is off limits to recipes", path, d)) end
    end
    if write then
      if not inside(c, state.out) then
        violation(sformat("writing %s: recipes may write only inside the run's output folder %s", path, state.out))
      end
    else
      local in_out = inside(c, state.out)
      local ok = inside(c, state.workspace) or in_out
      for _, d in pairs(state.readable) do ok = ok or inside(c, d) end
      if not ok then
        violation(sformat("reading %s: recipes may read only inside the workspace %s", path, state.workspace))
      end
      if not in_out and inside(c, state.workspace) and not M.SOURCE[smatch(c, "%.(%w+)$") or ""] then
        violation(sformat("reading %s: in the workspace a recipe reads only its source files (.lua, .cu, .cuh, .h, "
          .. ".hpp); weights or data brought into the workspace are not allowed", path))
      end
    end
    return c
  end
  state.check_path = check_path

  install_io(check_path, violation)
  install_positions()
  local real_remove, real_rename = os.remove, os.rename
  io.popen = function() violation("io.popen is not allowed") end
  os.execute = function() violation("os.execute is not allowed") end
  os.exit = function() violation("os.exit is not allowed") end
  os.tmpname = function() violation("os.tmpname is not allowed") end
  os.remove = function(path)
    local c = check_path(path, true)
    return real_remove(c)
  end
  os.rename = function(a, b)
    local ca, cb = check_path(a, true), check_path(b, true)
    return real_rename(ca, cb)
  end
  package.loadlib = function() violation("package.loadlib is not allowed") end
  package.cpath = ""
  package.path = M.library_path()
  local searchers = package.searchers or package.loaders
  if searchers then searchers[4] = nil; searchers[3] = nil end
  package.loaded.debug = nil
  _G.debug = nil   -- the harness's modules keep the functions they use; a library function that
                   -- lends its globals to code it loads (as speedrun.util's tool loader) lends no debug
  local real_load, real_loadfile = load, loadfile
  _G.load = function(chunk, name, mode, ...) return real_load(chunk, name, "t", ...) end   -- env as given (or none)
  _G.loadfile = function(path, mode, ...)
    local c = check_path(path, false)
    if not c then return nil, tostring(path) .. ": No such file or directory" end
    return real_loadfile(c, "t", ...)
  end
  _G.dofile = function(path)
    local f, err = _G.loadfile(path)
    if not f then error(err, 2) end
    return f()
  end
  -- finalizers run whenever the collector does (in eval, after the clock stops): a metatable
  -- with __gc is refused, for the recipe and the library code it calls (_G.setmetatable)
  local real_setmetatable = setmetatable
  _G.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then violation("setmetatable with a __gc finalizer (finalizers run outside the clock)") end
    return real_setmetatable(t, mt)
  end
  -- strings' metatable: reachable as getmetatable(""); hide it so the shared string table
  -- cannot be changed through it
  local smt = getmetatable("")
  if smt then smt.__metatable = false end
  -- agent kernels: what a compile may read (harness/kernels.lua)
  require("speedrun.harness.kernels").install(state)
  -- no uninitialised memory for the recipe: what freed storage held (the validation batches the
  -- harness counted before setup) must not reach it through speedrun.empty
  H.zero_empty(true)
  -- the CPU threads are the scorer's (--threads), as the references were timed with them
  local function threads() violation("speedrun.set_num_threads (the scorer's --threads sets the CPU threads)") end
  rawset(require "speedrun.core", "set_num_threads", threads)
  rawset(require "speedrun", "set_num_threads", threads)
  M.seal()
  return state
end

-- the checkout's lua/ folder as a package.path (where this file was found)
function M.library_path()
  local here = package.searchpath("speedrun.harness.sandbox", package.path)
  local lib = here and smatch(here, "^(.*)/speedrun/harness/sandbox%.lua$")
  if not lib then error("sandbox: the speedrun library's folder cannot be found from package.path", 2) end
  return lib .. "/?.lua;" .. lib .. "/?/init.lua"
end

-- the library tables a recipe fills through library calls (K.op registers its ops in
-- speedrun.kernel.ops): part of the recipe's state, not of the sealed library
function M.recipe_tables() return {require("speedrun.kernel").ops} end

-- seals what recipes share with the harness (see the top of the file): the named metatables of
-- the registry answer getmetatable with their name, the tensors' metatable leaves the module
-- tables (the harness and the library captured it when they loaded), and the modules of M.LIBRARY
-- are loaded now, so none appears or grows later
function M.seal()
  for k, mt in pairs(getregistry()) do
    if type(k) == "string" and type(mt) == "table" and rawget(mt, "__name") == k and rawget(mt, "__metatable") == nil then
      rawset(mt, "__metatable", k)
    end
  end
  local core, sr = require "speedrun.core", require "speedrun"
  rawset(core, "Tensor", nil)
  rawset(sr, "Tensor", nil)
  for name in pairs(M.LIBRARY) do   -- loaded, and speedrun.x set now (the module loads them on first use)
    require(name)
    local k = smatch(name, "^speedrun%.(.+)$")
    if k then local _ = sr[k] end
  end
  local open = {}
  for _, t in ipairs(M.recipe_tables()) do open[t] = true end
  state_lib.seal_library(M.LIBRARY, open)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- the recipe's globals; state from install() (nil: no restrictions on files)
function M.env(opts, state)
  local env = {}
  for _, k in ipairs {"assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget",
                      "rawlen", "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring",
                      "type", "xpcall", "_VERSION", "warn"} do
    env[k] = _G[k]
  end
  -- the collector: run, stepped or measured, never set (its mode and parameters are process-wide
  -- state eval could keep between calls; a stopped collector moves the recipe's garbage off the clock)
  local real_collect = collectgarbage
  env.collectgarbage = function(opt, ...)
    if opt == "count" then eval_check("reading memory statistics") end   -- garbage left by one call, read by the next
    if opt == nil or opt == "collect" or opt == "count" or opt == "step" or opt == "isrunning" then
      return real_collect(opt, ...)
    end
    if state then state.violation(sformat("collectgarbage(%q) (the collector's settings are the harness's)", tostring(opt))) end
    return real_collect(opt, ...)
  end
  env.string = copy(string)
  env.string.dump = nil
  env.table, env.math, env.utf8, env.coroutine = copy(table), copy(math), copy(utf8), copy(coroutine)
  -- where a suspended coroutine stands is state the picture cannot see (one line may hold many
  -- yields): inside eval, only coroutines made during that same call may be resumed or closed
  local co_born = setmetatable({}, {__mode = "k"})
  local real_create, real_resume, real_close = coroutine.create, coroutine.resume, coroutine.close
  local function co_check(co)
    local e = eval_epoch()
    if e and co_born[co] ~= e then eval_check("resuming a coroutine made outside this eval call") end
  end
  env.coroutine.create = function(f)
    local co = real_create(f)
    co_born[co] = eval_epoch()
    return co
  end
  env.coroutine.resume = function(co, ...) co_check(co); return real_resume(co, ...) end
  env.coroutine.close = function(co) co_check(co); return real_close(co) end
  env.coroutine.wrap = function(f)
    local co = env.coroutine.create(f)
    return function(...)
      local r = table.pack(env.coroutine.resume(co, ...))
      if not r[1] then error(r[2], 0) end
      return table.unpack(r, 2, r.n)
    end
  end
  -- Lua's generator is process-wide state (xoshiro256**: its outputs give its 256 bits back): eval
  -- may neither draw nor seed, as with the tensors' generator (the eval guard)
  local real_random, real_randomseed = math.random, math.randomseed
  env.math.random = function(...) eval_check("a random draw"); return real_random(...) end
  env.math.randomseed = function(...) eval_check("seeding the random generator"); return real_randomseed(...) end
  env.os = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime,
            getenv = function() return nil end}
  for _, k in ipairs {"exit", "execute", "remove", "rename", "tmpname"} do env.os[k] = os[k] end
  env.io = {open = io.open, lines = io.lines, write = io.write, read = io.read, stdout = io.stdout,
            stderr = io.stderr, type = io.type, popen = io.popen, input = io.input, output = io.output}
  local real_load, real_loadfile = load, loadfile
  env.load = function(chunk, name, mode, e) return real_load(chunk, name, "t", e or env) end
  local function loadfile_(path, mode, e)
    if state then
      local c = state.check_path(path, false)
      if not c then return nil, tostring(path) .. ": No such file or directory" end
      path = c
    end
    return real_loadfile(path, "t", e or env)
  end
  env.loadfile = loadfile_
  env.dofile = function(path)
    local f, err = loadfile_(path)
    if not f then error(err, 2) end
    return f()
  end
  -- require: the speedrun library (trusted code, loaded as usual) and the workspace's modules
  local loaded = {string = env.string, table = env.table, math = env.math, utf8 = env.utf8,
                  coroutine = env.coroutine, os = env.os, io = env.io}
  env.require = function(name)
    if type(name) ~= "string" then error("require: a module name expected", 2) end
    if loaded[name] ~= nil then return loaded[name] end
    if M.LIBRARY[name] then
      local m = require(name)
      loaded[name] = m
      return m
    end
    if name == "speedrun" or ssub(name, 1, 8) == "speedrun" then
      if state then state.violation("require '" .. name .. "' (not a library module recipes may load)") end
      error("module '" .. name .. "' is not available to recipes", 2)
    end
    if name == "debug" or name == "package" then
      if state then state.violation("require '" .. name .. "'") end
      error("module '" .. name .. "' is not available to recipes", 2)
    end
    local rel = name:gsub("%.", "/")
    for _, pat in ipairs {"%s.lua", "%s/init.lua"} do
      local path = opts.workspace .. "/" .. sformat(pat, rel)
      local f = io.open(path, "r")
      if f then
        f:close()
        local chunk, err = loadfile_(path)
        if not chunk then error(err, 2) end
        local m = chunk(name, path)
        if m == nil then m = true end
        loaded[name] = m
        return m
      end
    end
    error("module '" .. name .. "' not found in the workspace or the speedrun library", 2)
  end
  env.speedrun = require "speedrun"
  env._G = env
  return env, loaded   -- loaded: the modules required (the workspace's are the recipe's state)
end

return M
