-- speedrun.profile on the CPU: the exact keys and call counts of a few known ops (forward, the
-- autograd rules' phases, gradient accumulation), times, start/stop misuse, profile.run's error
-- path, the report, a step run with the step compiler's plan (a fused group one row, the launches
-- it holds uncounted), and bench/profile_recipe.lua on record 5's micro scale, unfused and fused.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F
local profile = sr.profile

-- rows keyed "name[.sub] dtype phase" -> row
local function by_key(rows)
  local m = {}
  for _, r in ipairs(rows) do
    local key = (r.sub and r.name .. "." .. r.sub or r.name) .. " " .. r.dtype .. " " .. r.phase
    T.ok(not m[key], "duplicate key " .. key)
    m[key] = r
  end
  return m
end

local function keys(m)
  local ks = {}
  for k in pairs(m) do ks[#ks + 1] = k end
  table.sort(ks)
  return table.concat(ks, ", ")
end

T.case("matmul, add, mul, sum and their backward: exact keys, calls and numel", function()
  local a = sr.randn(4, 8, {requires_grad = true})
  local b = sr.randn(8, 3, {requires_grad = true})
  local c = sr.randn(4, 3)
  local bf = sr.randn(4, 8)
  local rows = profile.run(function()
    F.sum(F.mul(F.add(F.matmul(a, b), c), c)):backward()
    F.exp(bf:bf16())
  end)
  local m = by_key(rows)
  local want = {
    ["gemm float32 fwd"] = {1, 12}, ["binary.add float32 fwd"] = {1, 12}, ["binary.mul float32 fwd"] = {1, 12},
    ["reduce.sum float32 fwd"] = {1, 1}, ["fill float32 fwd"] = {1, 1},            -- the implicit seed
    ["copy float32 bwd:sum"] = {1, 12}, ["binary.mul float32 bwd:mul"] = {1, 12},
    ["gemm float32 bwd:matmul"] = {2, 32},                                         -- da [4,8], db [8,3]
    ["copy bfloat16 fwd"] = {1, 32}, ["unary.exp bfloat16 fwd"] = {1, 32},
  }
  local wanted = {}
  for k in pairs(want) do wanted[k] = true end
  T.eq(keys(m), keys(wanted), "keys")
  for k, w in pairs(want) do
    T.eq(m[k].calls, w[1], k .. " calls")
    T.eq(m[k].numel, w[2], k .. " numel")
  end
end)

T.case("a leaf used twice: its second gradient is added in bwd:accumulate", function()
  local w = sr.randn(5, {requires_grad = true})
  local rows = profile.run(function() F.sum(F.mul(w, w)):backward() end)
  local m = by_key(rows)
  T.eq(m["binary.add float32 bwd:accumulate"].calls, 1)
  T.eq(m["binary.mul float32 bwd:mul"].calls, 2)
end)

T.case("ms are >= 0, sorted, and the report's total is their sum", function()
  local x = sr.randn(64, 64)
  local rows = profile.run(function()
    for _ = 1, 3 do F.matmul(x, x) end
    F.sum(x)
  end)
  local total, calls = 0, 0
  for i, r in ipairs(rows) do
    T.ok(r.ms >= 0, "ms >= 0")
    if i > 1 then T.ok(rows[i - 1].ms >= r.ms, "sorted by ms") end
    total, calls = total + r.ms, calls + r.calls
  end
  T.eq(calls, 4)
  local text = profile.report(rows)
  local line = text:match("\ntotal[^\n]*$")
  T.ok(line, "a total line:\n" .. text)
  local c, ms = line:match("total%s+(%d+)%s+([%d.]+)")
  T.eq(tonumber(c), 4, "total calls")
  T.eq(ms, ("%.3f"):format(total), "total ms")
  T.ok(text:find("mean µs", 1, true), "header")
end)

T.case("report by op merges phases; top N folds the rest into one line", function()
  local a = sr.randn(4, 8, {requires_grad = true})
  local rows = profile.run(function() F.sum(F.matmul(a, a:transpose())):backward() end)
  local text = profile.report(rows, {by = "op"})
  local gemm = text:match("\n(gemm%s+all[^\n]*)")
  T.ok(gemm, "a merged gemm line:\n" .. text)
  T.eq(tonumber(gemm:match("float32%s+(%d+)")), 3, "gemm calls over both phases")
  local short = profile.report(rows, {top = 1})
  T.ok(short:find("more)", 1, true), "a line for the rest:\n" .. short)
  T.raises(function() profile.report(rows, {by = "kernel"}) end, "by must be")
end)

T.case("start twice and stop without start raise; no profile, no rows", function()
  T.ok(not profile.active())
  T.raises(function() profile.stop() end, "no profile is running")
  F.add(sr.randn(3), 1)                        -- off: nothing is recorded
  profile.start()
  T.ok(profile.active())
  T.raises(function() profile.start() end, "already running")
  T.eq(#profile.stop(), 0, "rows of an empty profile")
  T.ok(not profile.active())
end)

T.case("profile.run re-raises and leaves the profiler off; returns rows and fn's results", function()
  T.raises(function() profile.run(function() F.exp(sr.randn(2)); error("boom") end) end, "boom")
  T.ok(not profile.active(), "off after an error")
  local rows, r1, r2 = profile.run(function(p, q) return p + q, "two" end, 1, 2)
  T.eq(#rows, 0)
  T.eq(r1, 3)
  T.eq(r2, "two")
end)

T.case("profile.time: two warm-up calls, iters timed, iters profiled; op_name joins the sub-function", function()
  local n, synced = 0, 0
  local x = sr.randn(64)
  local ms, rows = profile.time(function() n = n + 1; return F.exp(x) end, 3, function() synced = synced + 1 end)
  T.eq(n, 2 + 3 + 3, "warm-up, timed, profiled")
  T.eq(synced, 2, "the device drained before and after the timed calls")
  T.ok(ms >= 0, tostring(ms))
  T.eq(#rows, 1); T.eq(rows[1].calls, 3, "only the profiled calls")
  T.eq(profile.op_name(rows[1]), "unary.exp")
  T.eq(profile.op_name({name = "gemm"}), "gemm")
  T.ok(not profile.active())
end)

T.case("with a fused plan installed: a group is one \"fused\" row named by its ops, its held launches uncounted", function()
  local fuse = require "speedrun.fuse"
  local a, x = sr.randn({8, 33}):to("bfloat16"), sr.randn({8, 33})
  local function step() return {F.exp(x + F.cast(a, "float32")) * 2, F.sum(x)} end
  local plan = T.fuse_plan(step)
  local label = "cast:float32 -> add:float32 -> exp:float32 -> mul_scalar:float32"
  T.ok(plan:dump():find(label, 1, true), plan:dump())
  T.eq(keys(by_key(profile.run(step))), "binary.add float32 fwd, copy float32 fwd, reduce.sum float32 fwd, "
    .. "unary.exp float32 fwd, unary.mul_scalar float32 fwd", "unfused: one row per launch")
  local m = by_key(profile.run(fuse.run, plan, step))
  T.eq(fuse.last(), 1, "the group ran fused")
  T.eq(keys(m), "fused." .. label .. " float32 fwd, reduce.sum float32 fwd", "fused: the group and the launch after it")
  T.eq(m["fused." .. label .. " float32 fwd"].calls, 1)
  T.eq(m["fused." .. label .. " float32 fwd"].numel, 8 * 33)
  -- the plan removed, the same step profiles launch by launch again
  T.eq(#profile.run(step), 5)
end)

T.case("bench/profile_recipe.lua on record 5 (micro, cpu)", function()
  local sh = T.shell_quote
  local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/profile"
  os.execute("mkdir -p " .. sh(tmp))
  local out = tmp .. "/out.txt"
  local ok, how, code = os.execute(sh(arg[-1]) .. " run ../bench/profile_recipe.lua ../tasks/record_05/recipe.lua "
    .. "--scale micro --device cpu --steps 2 --warmup 1 --top 1000 > " .. sh(out) .. " 2>&1")
  local text = io.open(out):read("a")
  T.ok(ok and how == "exit" and code == 0, "exit 0:\n" .. text)
  T.ok(text:find("ms/step without the profiler", 1, true), text)
  local _, totals = text:gsub("\ntotal ", "")
  T.eq(totals, 2, "a total line in both reports")
  -- every row is printed (--top 1000), so the check does not depend on which ops the clock ranks first
  T.ok(text:find("bwd:scaled_dot_product_attention", 1, true), "backward phases are named")
  -- --fuse on: the profiled steps run with the step compiler's plan: fused groups are rows;
  -- --tokens 64: one micro-batch of 64 tokens (2 rows of the micro scale's 32)
  ok, how, code = os.execute(sh(arg[-1]) .. " run ../bench/profile_recipe.lua ../tasks/record_05/recipe.lua "
    .. "--scale micro --device cpu --steps 2 --warmup 1 --top 1000 --fuse on --tokens 64 > " .. sh(out) .. " 2>&1")
  text = io.open(out):read("a")
  T.ok(ok and how == "exit" and code == 0, "exit 0:\n" .. text)
  T.ok(text:find("batch 2 x 32 (bt mode, micro-batch 2, 1 per step)", 1, true), text)
  local groups = tonumber(text:match("fused groups in the last profiled step: (%d+)\n"))
  T.ok(groups and groups > 0, "the last profiled step ran fused groups, and nothing unfused:\n" .. text)
  T.ok(text:find("\nfused%.[%w_]+:%a+%d* %->"), "a fused group's row:\n" .. text)
end)

-- bench/sass_stalls.py on a hand-made source page (Nsight Compute's CSV: a banner line, then the
-- header): sums by opcode (predicates stripped), per unit of work, blocks in address order, and its
-- refusals (no sampling column; a unit opcode that never ran)
if T.run("python3 -c 'import csv'") then
  T.case("bench/sass_stalls.py: opcodes, per-unit counts, blocks, refusals", function()
    local dir = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/sass-stalls"
    os.execute("mkdir -p " .. T.shell_quote(dir))
    local csv = dir .. "/k.csv"
    local f = assert(io.open(csv, "w"))
    f:write('"Kernel Name","void k(int)",\n',
      '"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed","stall_wait"\n',
      '"0x10","IMAD R1, R2, 0x8, RZ","10","2000","4"\n',
      '"0x20","@!P0 IMAD.IADD R3, R1, 0x1, R4","30","2000","6"\n',
      '"0x30","HMMA.16816.F32.BF16 R8, R4, R12, R8","60","1000","0"\n')
    f:close()
    local ok, out = T.run("python3 ../bench/sass_stalls.py " .. T.shell_quote(csv) .. " 2 --unit HMMA=10 --blocks 2")
    T.ok(ok, out)
    T.ok(out:find("3 instructions, 100 stall samples, 5000 executed, 50.0 a unit (100 units)", 1, true), out)
    T.ok(out:find("IMAD +40 +40.0%% +40.0"), "IMAD: both rows (the predicated one too), 4000 / 100 units:\n" .. out)
    T.ok(out:find("HMMA +60 +60.0%% +10.0"), out)
    T.ok(out:find("0%-1 +40.0%% +40.0 +40.0 +0.0"), "block 0-1: two integer rows:\n" .. out)
    T.ok(out:find("stall_wait +10"), out)
    local bad = dir .. "/bad.csv"
    f = assert(io.open(bad, "w")); f:write('"Address","Source"\n"0x10","NOP"\n'); f:close()
    local ok2, out2 = T.run("python3 ../bench/sass_stalls.py " .. T.shell_quote(bad))
    T.ok(not ok2 and out2:find("no Source / stall%-sampling column"), out2)
    local ok3, out3 = T.run("python3 ../bench/sass_stalls.py " .. T.shell_quote(csv) .. " --unit HGMMA=1")
    T.ok(not ok3 and out3:find("no HGMMA executed"), out3)
  end)
end

T.done()
