-- speedrun.harness.kernels: agent kernels in restricted runs (threat class 8, docs/harness.md).
-- install(state) sets the policy speedrun.kernel.compile applies before it reads or compiles
-- anything (state: sandbox.install's; its check_path raises and records the violation):
--   * a source given by path is read only where recipes may read; no NUL byte in the source or
--     its name (the C side stops there: a path hidden as text);
--   * every include is a plain `#include "name"` or `#include <name>` after line splicing and
--     comment removal (no macro-computed names, no absolute or `..` names, no raw string
--     literals or trigraphs that could hide a directive from this scan), resolved as NVRTC
--     resolves it (the including file's folder for quotes, then the engine's kernel header, the
--     CUDA toolkit's headers, the -I folders); it must be the engine's or the toolkit's header or
--     a file recipes may read, whose own includes are checked in turn;
--   * compiler options from an allow-list; -I folders readable by recipes;
--   * a cache_dir only inside the run's output folder (a planted cache entry would stand in
--     for the source);
--   * no agent kernel at all on a GPU that reads and writes the process's memory (HMM, ATS:
--     H.host_reach): its code would be native code in the child, which could rewrite the clock or
--     read what the harness holds; round 19, docs/harness.md.
local K = require "speedrun.kernel"
local H = require "speedrun.harness_core"

local M = {}

local sfind, sgsub, smatch, sformat, ssub = string.find, string.gsub, string.match, string.format, string.sub

local OPTIONS = {"^%-D", "^%-U", "^%-%-?use_fast_math$", "^%-%-ftz=", "^%-%-prec%-div=", "^%-%-prec%-sqrt=",
                 "^%-%-fmad=", "^%-%-?maxrregcount=", "^%-lineinfo$", "^%-%-?std=", "^%-%-restrict$",
                 "^%-%-extra%-device%-vectorization$", "^%-%-expt%-relaxed%-constexpr$",
                 "^%-%-expt%-extended%-lambda$", "^%-%-?dopt"}

local function inside(path, dir)
  return dir ~= nil and (path == dir or ssub(path, 1, #dir + 1) == dir .. "/")
end

-- the text with lines spliced and comments replaced by one space (strings and character
-- literals kept; they end at a newline, as no valid one spans lines)
local function strip_comments(text)
  text = sgsub(text, "\\\r?\n", "")
  local out, i, n = {}, 1, #text
  while i <= n do
    local c, two = ssub(text, i, i), ssub(text, i, i + 1)
    if two == "//" then
      i = (sfind(text, "\n", i, true) or n + 1)
      out[#out + 1] = " "
    elseif two == "/*" then
      local e = sfind(text, "*/", i + 2, true)
      i = e and e + 2 or n + 1
      out[#out + 1] = " "
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = ssub(text, j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      out[#out + 1] = ssub(text, i, j)
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- the includes of text: a list of {quote = bool, name = string}; raises through violation on
-- anything this scan could not follow exactly
local function includes(text, where, violation)
  if sfind(text, "%f[%w_]u?8?[LuU]?R\"") or sfind(text, "%?%?[=/'()!<>%-]") then
    violation(sformat("kernel %s: raw string literals and trigraphs are not allowed in restricted runs", where))
  end
  local list = {}
  for line in (strip_comments(text) .. "\n"):gmatch("([^\n]*)\n") do
    local rest = smatch(line, "^%s*#(.*)$") or smatch(line, "^%s*%%:(.*)$")
    local name = rest and smatch(rest, "^%s*([%a_][%w_]*)")
    if name == "include" or name == "include_next" or name == "import" or name == "embed" then
      local q, file = smatch(rest, '^%s*include%s*(")([^"]+)"%s*$')
      if not q then q, file = smatch(rest, "^%s*include%s*(<)([^>]+)>%s*$") end
      if not q then
        violation(sformat("kernel %s: #%s must name a file as \"name\" or <name> (got %q)", where, name, line))
      end
      if ssub(file, 1, 1) == "/" or sfind("/" .. file .. "/", "/../", 1, true) then
        violation(sformat("kernel %s: #include \"%s\": absolute and '..' names are not allowed", where, file))
      end
      list[#list + 1] = {quote = q == '"', name = file}
    end
  end
  return list
end

local read = require("speedrun.util").read_file
-- the first existing dir/name over dirs, or nil
local function resolve(name, dirs)
  for _, d in ipairs(dirs) do
    local p = H.realpath(d .. "/" .. name)
    if p then return p end
  end
end

local function system_dirs()
  local dirs = {H.realpath(K.include_dir())}
  local cuda = K.cuda_include_dir()
  if cuda then dirs[#dirs + 1] = H.realpath(cuda) end
  return dirs
end

-- checks text's includes (and theirs) against the policy; selfdir: its folder
local function check_includes(state, text, where, selfdir, idirs, seen)
  local sys = system_dirs()
  for _, inc in ipairs(includes(text, where, state.violation)) do
    local dirs = {}
    if inc.quote then dirs[1] = selfdir end
    for _, d in ipairs(sys) do dirs[#dirs + 1] = d end
    for _, d in ipairs(idirs) do dirs[#dirs + 1] = d end
    local path = resolve(inc.name, dirs)
    local system = false
    for _, d in ipairs(sys) do system = system or (path ~= nil and inside(path, d)) end
    if path and not system and not seen[path] then
      seen[path] = true
      state.check_path(path, false)
      local sub = read(path)
      if sub then check_includes(state, sub, path, smatch(path, "^(.*)/[^/]*$"), idirs, seen) end
    end
  end
end

-- a plain copy of opts, read once with raw access: what the policy checks is what compile gets (a
-- table with metamethods could show the check one thing and the compiler another); option
-- entries as strings (compile takes numbers as strings too)
local PLAIN = {name = "string", arch = "string", cache_dir = "string", cache = "boolean", load = "boolean"}
local function plain(opts)
  local c = {}
  for k, t in pairs(PLAIN) do
    local v = rawget(opts, k)
    if type(v) == t or (t == "string" and type(v) == "number") then c[k] = v end
  end
  for _, k in ipairs {"kernels", "defines"} do
    local t = rawget(opts, k)
    if type(t) == "table" then
      c[k] = {}
      for name, v in next, t do c[k][name] = v end
    elseif t ~= nil then c[k] = t end  -- compile reports the bad type
  end
  local o = rawget(opts, "options")
  if type(o) == "table" then
    c.options = {}
    for i = 1, rawlen(o) do
      local v = rawget(o, i)
      c.options[i] = type(v) == "number" and tostring(v) or v
    end
  elseif o ~= nil then c.options = o end
  return c
end

-- the -I folders of opts.options (each readable by recipes); other options from the allow-list
local function check_options(state, options)
  local idirs = {}
  for _, o in ipairs(options or {}) do
    if type(o) ~= "string" then break end  -- compile raises on it before anything is read
    local dir = smatch(o, "^%-I(.+)$") or smatch(o, "^%-%-include%-path=(.+)$")
    if dir then
      idirs[#idirs + 1] = state.check_path(dir, false)
    else
      local ok = false
      for _, pat in ipairs(OPTIONS) do ok = ok or sfind(o, pat) ~= nil end
      if not ok then state.violation(sformat("kernel compiler option %s is not allowed in restricted runs", o)) end
    end
  end
  return idirs
end

-- checks a compile's source and options; returns the options compile is to use (a plain copy)
local function policy(state, src, opts)
  if type(src) ~= "string" or type(opts) ~= "table" then return opts end  -- compile raises on these
  if H.host_reach() then
    state.violation("an agent kernel on a GPU that reaches the process's memory (HMM or ATS: pageable memory access), "
                    .. "where no check confines native code; score on a machine without it (x86: the nvidia-uvm "
                    .. "module's uvm_disable_hmm=1)")
  end
  opts = plain(opts)
  -- the C side reads both up to a NUL byte: "x.cu\0" was text to this check and the path x.cu to the
  -- compile, which read it unchecked, its includes too (round 16)
  for what, v in pairs {source = src, name = opts.name} do
    if sfind(tostring(v), "\0", 1, true) then state.violation(sformat("kernel %s with a NUL byte in restricted runs", what)) end
  end
  local cwd = state.workspace
  local is_path = not sfind(src, "\n", 1, true) and (smatch(src, "%.cu$") or smatch(src, "%.cuh$"))
  -- an in-memory source's name is also its folder for quoted includes (-I of its dirname)
  if opts.name ~= nil and sfind(tostring(opts.name), "/", 1, true) then
    state.violation(sformat("kernel name %s: a file name, not a path, in restricted runs", tostring(opts.name)))
  end
  local text, where, selfdir = src, opts.name or "kernel.cu", cwd
  if is_path then
    local path = state.check_path(src, false)
    if not path then return opts end  -- no such file: compile says so
    text, where, selfdir = read(path) or "", src, smatch(path, "^(.*)/[^/]*$")
  end
  if opts.cache_dir ~= nil then
    local c = state.check_path(tostring(opts.cache_dir) .. "/.probe", true)
    if not inside(c, state.out) then state.violation("kernel cache_dir outside the run's output folder") end
  end
  local idirs = check_options(state, type(opts.options) == "table" and opts.options or nil)
  check_includes(state, text, where, selfdir, idirs, {})
  return opts
end

function M.install(state)
  K.restrict(function(src, opts) return policy(state, src, opts) end)
end

return M
