-- speedrun.testing: the small harness the Lua tests use (and recipes' own checks may use).
--   local T = require "speedrun.testing"
--   T.case("name", function() T.close(x, {1, 2}, 1e-6) end)
--   T.done()   -- prints a summary; exits 1 when a case failed
-- T.skip(msg) exits with 77, which CTest reports as skipped.
local sr = require "speedrun"

local T = {passed = 0, failed = 0}

local function flatten(v, out)
  out = out or {}
  if sr.is_tensor(v) then v = v:tolist() end
  if type(v) == "table" then
    for _, x in ipairs(v) do flatten(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

function T.case(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    T.passed = T.passed + 1
  else
    T.failed = T.failed + 1
    io.stderr:write(("FAIL %s\n%s\n"):format(name, tostring(err)))
  end
end

function T.ok(cond, msg)
  if not cond then error(msg or "assertion failed", 2) end
end

function T.eq(a, b, msg)
  if a ~= b then error(("%s: expected %s, got %s"):format(msg or "eq", tostring(b), tostring(a)), 2) end
end

-- close(actual, expected, tol [, msg]): element-wise |a - e| <= tol * max(1, |e|); NaN never passes
function T.close(actual, expected, tol, msg)
  tol = tol or 1e-6
  local a, e = flatten(actual), flatten(expected)
  if #a ~= #e then error(("%s: %d elements, expected %d"):format(msg or "close", #a, #e), 2) end
  for i = 1, #a do
    local d = math.abs(a[i] - e[i])
    if a[i] ~= e[i] and not (d <= tol * math.max(1, math.abs(e[i]))) then
      error(("%s: element %d is %.9g, expected %.9g (tol %g)"):format(msg or "close", i, a[i], e[i], tol), 2)
    end
  end
end

-- relative error ||a - b|| / ||b|| of two tensors (any device/dtype), computed in float64
function T.rel_err(a, b)
  local F = sr.F
  local x, y = a:to("cpu", "float64"), b:to("cpu", "float64")
  local num = F.norm(F.sub(x, y)):item()
  local den = F.norm(y):item()
  if num ~= num then return math.huge end
  return den > 0 and num / den or num
end

-- the largest |a - b| and |a| of tensors (any device/dtype), in float64
function T.max_diff(a, b)
  local F = sr.F
  return F.max(F.abs(F.sub(a:to("cpu", "float64"), b:to("cpu", "float64")))):item()
end
function T.max_abs(a) return sr.F.max(sr.F.abs(a:to("cpu", "float64"))):item() end

-- fn() with the autograd fusion `name` (speedrun.grad_fusion) set to on, the previous setting
-- restored after, even when fn raises; returns fn's first two results
function T.with_grad_fusion(name, on, fn)
  local old = sr.grad_fusion(name, on)
  local ok, a, b = pcall(fn)
  sr.grad_fusion(name, old)
  if not ok then error(a, 0) end
  return a, b
end

-- the step compiler's plan of step() (speedrun.fuse): step run once, then recorded twice and
-- planned from both recordings; what step returns is held while a recording stops (as the harness
-- holds the loss), the rest of the step is garbage by then; opts as fuse.plan's
function T.fuse_plan(step, opts)
  local fuse = require "speedrun.fuse"
  step()
  local r1 = fuse.record(); local keep = step(); r1:stop()
  local r2 = fuse.record(); keep = step(); r2:stop()
  keep = nil
  return assert(fuse.plan(r1, r2, opts))
end

-- a random softcap for the step compiler's loss-group tests (math.random: the caller seeds it):
-- sometimes an in-place op first, on the head's output as the records write it (an in-place op
-- after one that saved its output for the backward is refused by autograd), then 1-3 ops; returns
-- the chain as a function and its length
function T.random_softcap()
  local F = require("speedrun").F
  local menu = {
    function(z) return F.mul(z, 0.5) end, function(z) return F.add(z, 0.25) end, function(z) return F.tanh(z) end,
    function(z) return F.sigmoid(z) end, function(z) return F.cast(z, "float32") end, function(z) return F.square(z) end,
  }
  local first = {function(z) return z:mul_(1.5) end, function(z) return z:div_(30):tanh_() end}
  local chain = {}
  if math.random(2) == 1 then chain[1] = first[math.random(#first)] end
  for _ = 1, math.random(1, 3) do chain[#chain + 1] = menu[math.random(#menu)] end
  return function(z)
    for _, f in ipairs(chain) do z = f(z) end
    return z
  end, #chain
end

-- a loss-group test's step: loss = forward(), times scale (a micro-batch's 1/n) when given, then
-- the backward; after() when given (e.g. letting go of held logits); returns {loss, W's gradient}
-- and clears W.grad
function T.loss_grad_step(forward, W, scale, after)
  return function()
    local loss = forward()
    ;(scale and loss * scale or loss):backward()
    if after then after() end
    local g = W.grad:clone()
    W.grad = nil
    return {loss, g}
  end
end

-- raises(fn, pattern): fn must raise an error whose message contains pattern (plain text)
function T.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then error((msg or "raises") .. ": no error raised (expected '" .. pattern .. "')", 2) end
  if pattern and not tostring(err):find(pattern, 1, true) then
    error(("%s: error '%s' does not contain '%s'"):format(msg or "raises", tostring(err), pattern), 2)
  end
  return err
end

-- shell_quote(s): s as one single-quoted word for os.execute / io.popen command lines
T.shell_quote = require("speedrun.util").shell_quote

-- run(cmd): cmd through the shell, its stdout and stderr together: ok (exit status 0), the output,
-- the exit code
function T.run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

-- token_stream(n, seed): n token ids of a learnable stream over 32 tokens, (k * 7) mod 23 with
-- noise tokens 23..31 at random places (an LCG from seed), for synthetic shards in tests
function T.token_stream(n, seed)
  local ids, s = {}, seed
  for k = 1, n do
    s = (s * 1103515245 + 12345) % 2147483648
    ids[k] = (s % 10 == 0) and (23 + s % 9) or (k * 7) % 23
  end
  return ids
end

-- read(path): the file's text, or nil; write(path, s): writes it or raises (speedrun.util's)
T.read = require("speedrun.util").read_file
function T.write(path, s) assert(require("speedrun.util").write_file(path, s)) end

-- workspace(name, recipes): a fresh test workspace for the harness tests: <tmp>/<name>/ws with the
-- recipes copied from tests/harness/recipes/ (run from tests/) and a data folder inside it (off
-- limits to recipes) holding two synthetic shards. Returns {tmp =, ws =, data = the
-- --train-files/--val-files arguments, run = function(args) -> exit code, output of
-- `speedrun <args>`, restricted = function(recipe [, extra]) -> results.json, output of a
-- score-mode (`--restricted`) micro run on the CPU, rejected = function(recipe, pattern) ->
-- results.json of such a run, which must be rejected with a message matching pattern}.
function T.workspace(name, recipes)
  local H, data = require "speedrun.harness_core", require "speedrun.data"
  local sh = T.shell_quote
  local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/" .. name
  local ws = tmp .. "/ws"
  H.mkdir(tmp)
  os.execute("rm -rf " .. sh(ws))
  H.mkdir(ws .. "/data")
  for _, r in ipairs(recipes or {}) do
    local src = assert(io.open("harness/recipes/" .. r .. ".lua")):read("a")
    local f = assert(io.open(ws .. "/" .. r .. ".lua", "w"))
    f:write(src)
    f:close()
  end
  assert(data.write_shard(ws .. "/data/syn_train_000001.bin", T.token_stream(20000, 1)))
  assert(data.write_shard(ws .. "/data/syn_val_000000.bin", T.token_stream(4000, 2)))
  local exe = arg[-1]
  local function run(args)
    local _, how, code = os.execute(sh(exe) .. " " .. args .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1")
    local f = io.open(tmp .. "/out.txt")
    local out = f:read("a")
    f:close()
    return how == "exit" and code or 128 + code, out
  end
  local W = {tmp = tmp, ws = ws, run = run,
             data = "--train-files " .. sh(ws .. "/data/syn_train_*.bin") .. " --val-files " .. sh(ws .. "/data/syn_val_*.bin")}
  function W.restricted(recipe, extra)
    local out = tmp .. "/run-" .. recipe
    os.execute("rm -rf " .. sh(out))
    local _, text = run("train " .. sh(ws .. "/" .. recipe .. ".lua") .. " --scale micro --restricted --device cpu"
                        .. " --threads 1 " .. W.data .. " --out " .. sh(out) .. " " .. (extra or ""))
    local f = io.open(out .. "/results.json")
    T.ok(f, "results.json for " .. recipe .. "\n" .. text)
    local r = require("speedrun.json").decode(f:read("a"))
    f:close()
    return r, text
  end
  function W.rejected(recipe, pattern)
    local r, text = W.restricted(recipe)
    local msg = tostring(r.failure and r.failure.message)
    T.eq(r.status, "rejected", recipe .. ": " .. msg .. "\n" .. text)
    T.ok(msg:find(pattern), ("%s: message %q should match %q"):format(recipe, msg, pattern))
    return r
  end
  return W
end

function T.skip(msg)
  io.stdout:write("SKIP: " .. msg .. "\n")
  os.exit(77)
end

function T.done()
  io.stdout:write(("%d passed, %d failed\n"):format(T.passed, T.failed))
  os.exit(T.failed == 0 and 0 or 1)
end

return T
