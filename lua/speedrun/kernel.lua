-- speedrun.kernel: agent CUDA kernels compiled at run time. The C module speedrun.kernel_core
-- (host/lua/lkernel.c: compile, launch, signatures, timing, faults) under the Lua additions:
--   K.op{name=, forward=, backward=, reference=}  a differentiable op made of agent kernels
--   K.compare(fn, ref, inputs [, opts])           outputs and input gradients of fn vs ref
--   K.check(path, opts)                           the `speedrun kernel check` driver
--   K.cli(args)                                   the `speedrun kernel ...` command line
-- Docs: docs/kernels.md.
local sr = require "speedrun"
local F = sr.F

local K = {}
for k, v in pairs(require "speedrun.kernel_core") do K[k] = v end
local eval_epoch = require("speedrun.harness_core").eval_epoch

-- K.eval_refuses_kernels(): true inside eval under score (the harness's eval guard on), where an
-- agent kernel's launch is refused (docs/kernels.md, docs/harness.md round 19)
local function refuses() return eval_epoch() ~= nil end
K.eval_refuses_kernels = refuses

-- K.restrict(check): from now on compile(src, opts) first calls check(src, opts), which raises
-- to refuse and returns the options compile then uses; set once (the harness child's restricted
-- runs: harness/kernels.lua)
local core_compile, policy = K.compile, nil
function K.restrict(check)
  assert(policy == nil, "speedrun.kernel.restrict: a policy is already set")
  assert(type(check) == "function", "speedrun.kernel.restrict: a function expected")
  policy = check
end
function K.compile(src, opts)
  if policy then opts = policy(src, opts) end
  return core_compile(src, opts)
end

K.ops = {}

local function first_tensor(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if sr.is_tensor(v) then return v end
  end
end

-- op{name=, forward=function(ctx, ...) -> tensor(s), backward=function(ctx, grad...) -> grads,
-- reference=function(...) -> tensor(s)}: forward/backward launch agent kernels (CUDA);
-- reference (optional) is the same op written with F functions: it runs instead when the
-- first tensor argument is on the CPU (so a recipe's micro scale trains on CPU), and
-- K.compare / the GPU tests check the kernels against it. Registered in K.ops[name].
function K.op(def)
  assert(type(def) == "table", "speedrun.kernel.op: expects a table {name=, forward=, backward=}")
  assert(type(def.name) == "string", "speedrun.kernel.op: name is required (it names the tape node)")
  assert(type(def.forward) == "function" and type(def.backward) == "function",
         "speedrun.kernel.op: forward and backward functions are required")
  local fn = sr.autograd.Function {name = def.name, forward = def.forward, backward = def.backward}
  local ref = def.reference
  -- the reference on the CPU, and inside eval under score, where agent kernels may not run
  -- (native code could keep or read any memory there: docs/harness.md, round 19)
  local function call(...)
    if ref then
      local t = first_tensor(...)
      if (t and t.device == "cpu") or refuses() then return ref(...) end
    end
    return fn(...)
  end
  K.ops[def.name] = {call = call, def = def}
  return call
end

-- max over elements of |a - r| / max(|r|, 1), in float64 on the CPU; math.huge on NaN
local function max_err(a, r)
  local x, y = a:to("cpu", "float64"), r:to("cpu", "float64")
  local den = F.maximum(F.abs(y), 1)
  local e = F.max(F.div(F.abs(F.sub(x, y)), den)):item()
  if e ~= e then return math.huge end
  return e
end
K.max_err = max_err

K.tolerance = {float32 = 1e-4, bfloat16 = 1.6e-2, float64 = 1e-9}

-- compare(fn, ref, inputs [, {tol=}]): runs fn and ref on copies of inputs (tensors that require
-- grad keep requiring it), backpropagates sum(out * r) with one fixed random r, and compares
-- outputs and input gradients. Returns ok, report {out=err, grads={[i]=err}, tol=}.
function K.compare(fn, ref, inputs, opts)
  opts = opts or {}
  local function copies()
    local xs = {}
    for i, x in ipairs(inputs) do
      if sr.is_tensor(x) then
        local c = sr.no_grad(function() return x:clone() end)
        c.requires_grad = x.requires_grad
        xs[i] = c
      else
        xs[i] = x
      end
    end
    return xs
  end
  local a_in, r_in = copies(), copies()
  local a = fn(table.unpack(a_in))
  local r = ref(table.unpack(r_in))
  local dtype = a.dtype
  local tol = opts.tol or K.tolerance[dtype] or 1e-4
  local proj = sr.randn(a.shape, {dtype = "float32"}):to(a.device, a.dtype)
  local report = {out = max_err(a, r), grads = {}, tol = tol}
  local ok = report.out <= tol
  local any = false
  for _, x in ipairs(a_in) do any = any or (sr.is_tensor(x) and x.requires_grad) end
  if any then
    F.sum(F.mul(a, proj)):backward()
    F.sum(F.mul(r, proj:to(r.device, r.dtype))):backward()
    for i, x in ipairs(a_in) do
      if sr.is_tensor(x) and x.requires_grad then
        local ga, gr = x.grad, r_in[i].grad
        if not ga or not gr then
          report.grads[i] = math.huge
        else
          report.grads[i] = max_err(ga, gr)
        end
        ok = ok and report.grads[i] <= tol
      end
    end
  end
  return ok, report
end

---------------------------------------------------------------------------------------------
-- kernel check: specs of the ops a kernel can be checked against. Each spec gives the kernel
-- signature (T = the element type), how to make inputs for a shape, the op (run on the CPU in
-- float64 as the reference and on CUDA as the built-in) and how to launch the kernel.

local ctype = {float32 = "float", bfloat16 = "bf16", float64 = "double"}

local function numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

local function elementwise(fn)
  return {
    signature = "ptr T* y, ptr const T* x, int n",
    shapes = {{4096}, {1 << 20}, {8192, 768}},
    inputs = function(shape) return {sr.randn(shape, {dtype = "float64"})} end,
    op = fn,
    launch = function(k, out, ins, shape, block)
      local n = numel(shape)
      k {grid = (n + block - 1) // block, block = block, args = {out, ins[1], n}}
    end,
    about = "one thread per element: y[i] = f(x[i]), i < n",
  }
end

local function binary(fn)
  return {
    signature = "ptr T* y, ptr const T* a, ptr const T* b, int n",
    shapes = {{4096}, {1 << 20}, {8192, 768}},
    inputs = function(shape) return {sr.randn(shape, {dtype = "float64"}), sr.randn(shape, {dtype = "float64"})} end,
    op = fn,
    launch = function(k, out, ins, shape, block)
      local n = numel(shape)
      k {grid = (n + block - 1) // block, block = block, args = {out, ins[1], ins[2], n}}
    end,
    about = "one thread per element: y[i] = f(a[i], b[i]), i < n (same shapes)",
  }
end

local rows_shapes = {{64, 768}, {1024, 768}, {8192, 1024}}
local function rows_launch(extra)
  return function(k, out, ins, shape, block)
    local N, C = shape[1], shape[2]
    local args = {out}
    for _, x in ipairs(ins) do args[#args + 1] = x end
    args[#args + 1] = N
    args[#args + 1] = C
    if extra then args[#args + 1] = extra end
    k {grid = N, block = block, args = args}
  end
end

K.check_specs = {
  gelu = elementwise(function(x) return F.gelu(x) end),
  gelu_tanh = elementwise(function(x) return F.gelu(x, "tanh") end),
  relu = elementwise(F.relu), relu2 = elementwise(F.relu2), tanh = elementwise(F.tanh),
  sigmoid = elementwise(F.sigmoid), exp = elementwise(F.exp), square = elementwise(F.square),
  neg = elementwise(F.neg),
  add = binary(F.add), mul = binary(F.mul), sub = binary(F.sub),
  rms_norm = {
    signature = "ptr T* y, ptr const T* x, ptr const T* w, int N, int C, float eps",
    shapes = rows_shapes,
    inputs = function(shape)
      return {sr.randn(shape, {dtype = "float64"}), F.add(F.mul(sr.randn({shape[2]}, {dtype = "float64"}), 0.1), 1)}
    end,
    op = function(x, w) return F.rms_norm(x, w, 1e-6) end,
    launch = rows_launch(1e-6),
    about = "one block per row of x [N, C]: y = x / sqrt(mean(x^2) + eps) * w, eps = 1e-6",
    rows = true,
  },
  softmax = {
    signature = "ptr T* y, ptr const T* x, int N, int C",
    shapes = rows_shapes,
    inputs = function(shape) return {F.mul(sr.randn(shape, {dtype = "float64"}), 3)} end,
    op = function(x) return F.softmax(x, -1) end,
    launch = rows_launch(nil),
    about = "one block per row of x [N, C]: softmax over the last dim",
    rows = true,
  },
}

local function shape_str(shape)
  local t = {}
  for i, s in ipairs(shape) do t[i] = tostring(s) end
  return table.concat(t, "x")
end

local function parse_shapes(text)
  local shapes = {}
  for item in text:gmatch("[^,;%s]+") do
    if not item:match("^%d+$") and not item:match("^%d+[x%d]*%d$") or item:find("xx", 1, true) then
      return nil, "bad shape '" .. item .. "' (write 4096 or 1024x768)"
    end
    local shape = {}
    for d in item:gmatch("[^x]+") do
      local n = tonumber(d)
      if not n or n < 1 or n ~= math.floor(n) then return nil, "bad shape '" .. item .. "' (write 4096 or 1024x768)" end
      shape[#shape + 1] = math.floor(n)
    end
    shapes[#shapes + 1] = shape
  end
  if #shapes == 0 then return nil, "no shapes in '" .. text .. "'" end
  return shapes
end

local function spec_names()
  local names = {}
  for k in pairs(K.check_specs) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

-- check(path, {op=, kernel=, dtype=, shapes=, block=, reps=, time=, arch=, out=io.stdout}):
-- prints the table; returns ok (all shapes pass), rows | nil, message on a setup error
function K.check(path, o)
  local out = o.out or io.stdout
  local spec = K.check_specs[o.op or ""]
  if not spec then return nil, ("unknown op '%s' (known: %s)"):format(tostring(o.op), spec_names()) end
  local dtype = o.dtype or "float32"
  if not ctype[dtype] then return nil, "dtype must be float32, bfloat16 or float64" end
  local kname = o.kernel or o.op
  local sig = spec.signature:gsub("T%*", ctype[dtype] .. "*")
  local shapes = o.shapes or spec.shapes
  if spec.rows then
    for _, s in ipairs(shapes) do
      if #s ~= 2 then return nil, ("op %s takes 2-D shapes N x C, got %s"):format(o.op, shape_str(s)) end
    end
  end
  local k, log = K.compile(path, {kernels = {[kname] = sig}, arch = o.arch})
  if not k then return nil, log end
  if log and #k.info.log > 0 then out:write(k.info.log, "\n") end
  if not k.info.loaded then return nil, ("%s: compiled (%s, %s) but cannot run: %s"):format(path, k.info.kind, k.info.arch, k.info.not_loaded_because), 3 end
  local block = o.block or 256
  local tol = K.tolerance[dtype]
  local reps = o.reps or 100
  out:write(("kernel check: op %s, kernel '%s' from %s (%s %s%s), %s, block %d\n"):format(
    o.op, kname, path, k.info.kind, k.info.arch, k.info.cache_hit and ", cached" or "", dtype, block))
  out:write(("signature: %s\n"):format(sig))
  out:write(("%-14s %12s %12s %9s %6s %11s %11s %8s\n"):format("shape", "err kernel", "err builtin", "tol",
    "result", "kernel us", "builtin us", "speedup"))
  local rows, all = {}, true
  for i, shape in ipairs(shapes) do
    sr.manual_seed(1000 + i)
    local raw = spec.inputs(shape)
    local ins, ref_ins = {}, {}
    for j, x in ipairs(raw) do
      ins[j] = x:to("cuda", dtype)
      ref_ins[j] = ins[j]:to("cpu", "float64")   -- the reference sees the rounded inputs
    end
    local ref = spec.op(table.unpack(ref_ins))
    local builtin = spec.op(table.unpack(ins))
    local y = sr.empty(ref.shape, {dtype = dtype, device = "cuda"})
    local launch = function() spec.launch(k[kname], y, ins, shape, block) end
    local ok, err = pcall(launch)
    if not ok then return nil, err end
    K.synchronize()
    local ek, eb = max_err(y, ref), max_err(builtin, ref)
    local pass = ek <= tol
    all = all and pass
    local row = {shape = shape, err = ek, err_builtin = eb, tol = tol, pass = pass}
    if o.time ~= false then
      row.us = K.time(launch, {reps = reps}) * 1e3
      row.us_builtin = K.time(function() spec.op(table.unpack(ins)) end, {reps = reps}) * 1e3
    end
    rows[#rows + 1] = row
    out:write(("%-14s %12.3e %12.3e %9.1e %6s %11s %11s %8s\n"):format(shape_str(shape), ek, eb, tol,
      pass and "PASS" or "FAIL", row.us and ("%.2f"):format(row.us) or "-",
      row.us_builtin and ("%.2f"):format(row.us_builtin) or "-",
      row.us and ("%.2fx"):format(row.us_builtin / row.us) or "-"))
  end
  out:write(all and ("PASS: all %d shapes within tolerance\n"):format(#rows)
                or "FAIL: the kernel is outside the tolerance at some shape\n")
  if o.time ~= false then
    out:write(("timing: CUDA events, median of %d runs after 5 warm-ups, L2 flushed before each run\n"):format(reps))
  end
  return all, rows
end

---------------------------------------------------------------------------------------------
-- the command line: speedrun kernel check|compile|ops ...

local usage = [[
usage: speedrun kernel check FILE.cu --op NAME [--kernel NAME] [--dtype float32|bfloat16]
                                  [--shapes 4096,1024x768] [--block N] [--reps N] [--no-time] [--arch ARCH]
     speedrun kernel compile FILE.cu [--kernel NAME]... [--arch ARCH] [-DNAME=VALUE]... [--option OPT]...
     speedrun kernel ops
check: runs the kernel and the op (CPU reference in float64; built-in CUDA op) on random inputs at
several shapes, prints the max error of each against the reference and PASS/FAIL by the dtype's
tolerance (float32 1e-4, bfloat16 1.6e-2), then times kernel and built-in (CUDA events, median,
L2 flushed). The kernel's name defaults to the op's; `ops` lists the ops and their signatures.
compile: compiles (or finds in the cache) and reports; errors print as FILE:LINE: error: ...
Exit status: 0 ok, 1 check failed or compile error, 2 usage, 3 no usable GPU for check.
See docs/kernels.md.]]

function K.cli(args)
  local sub = args[1]
  if not sub or sub == "--help" or sub == "-h" or sub == "help" then
    io.stdout:write(usage, "\n")
    return sub and 0 or 2
  end
  if sub == "ops" then
    local names = {}
    for n in pairs(K.check_specs) do names[#names + 1] = n end
    table.sort(names)
    for _, n in ipairs(names) do
      local s = K.check_specs[n]
      io.stdout:write(("%-10s %s\n           %s\n"):format(n, s.signature, s.about))
    end
    return 0
  end
  if sub ~= "check" and sub ~= "compile" then
    io.stderr:write(("speedrun kernel: unknown subcommand '%s'\n"):format(sub), usage, "\n")
    return 2
  end
  local o = {kernels = {}, options = {}}
  local path
  local i = 2
  local function value(flag)
    i = i + 1
    if args[i] == nil then error({usage = flag .. " needs a value"}) end
    return args[i]
  end
  local ok, perr = pcall(function()
    while i <= #args do
      local a = args[i]
      if a == "--op" then o.op = value(a)
      elseif a == "--kernel" then o.kernels[#o.kernels + 1] = value(a)
      elseif a == "--dtype" then o.dtype = value(a)
      elseif a == "--shapes" then
        local s, e = parse_shapes(value(a))
        if not s then error({usage = e}) end
        o.shapes = s
      elseif a == "--block" then o.block = math.tointeger(tonumber(value(a)))
      elseif a == "--reps" then o.reps = math.tointeger(tonumber(value(a)))
      elseif a == "--arch" then o.arch = value(a)
      elseif a == "--no-time" then o.time = false
      elseif a == "--option" then o.options[#o.options + 1] = value(a)
      elseif a:sub(1, 2) == "-D" then o.options[#o.options + 1] = a
      elseif a:sub(1, 1) == "-" then error({usage = "unknown option " .. a})
      elseif not path then path = a
      else error({usage = "more than one file: " .. path .. ", " .. a}) end
      i = i + 1
    end
  end)
  if not ok then
    io.stderr:write("speedrun kernel: ", type(perr) == "table" and perr.usage or tostring(perr), "\n")
    return 2
  end
  if not path then
    io.stderr:write("speedrun kernel ", sub, ": no FILE.cu given\n")
    return 2
  end
  if sub == "compile" then
    local kernels = {}
    for _, n in ipairs(o.kernels) do kernels[n] = "" end
    local k, log = K.compile(path, {kernels = kernels, arch = o.arch, options = o.options, load = false})
    if not k then
      io.stderr:write(log, "\n")
      return 1
    end
    if #k.info.log > 0 then io.stderr:write(k.info.log, "\n") end
    io.stdout:write(("%s: ok (%s for %s, %d bytes, %s)\n"):format(path, k.info.kind, k.info.arch, k.info.size,
      k.info.cache_hit and "cache hit" or ("compiled in %.0f ms"):format(k.info.compile_ms)))
    io.stdout:write(("cache: %s\n"):format(k.info.cache_path))
    for _, kk in ipairs(k.info.kernels) do io.stdout:write(("kernel %s -> %s\n"):format(kk.name, kk.lowered)) end
    return 0
  end
  if not o.op then
    io.stderr:write("speedrun kernel check: --op NAME is required (speedrun kernel ops lists them)\n")
    return 2
  end
  o.kernel = o.kernels[1]
  local good, res, code = K.check(path, o)
  if good == nil then
    io.stderr:write(tostring(res), "\n")
    return code or 1
  end
  return good and 0 or 1
end

return K
