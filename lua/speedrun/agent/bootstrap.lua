-- speedrun.agent.bootstrap: the statistics of a study (docs/agent.md "Reading a study"): mean,
-- median, IQM (scipy's trim_mean at 25 %, as rliable), the optimality gap, the population std and
-- the SEM, and percentile confidence intervals from a seeded stratified bootstrap (rliable's
-- StratifiedBootstrap: each row of the score matrix, one task of one configuration, has its
-- scores resampled with replacement; rows are never resampled). The random stream is a
-- splitmix64 of its own, so a seed gives the same intervals on every machine and nothing else
-- touches math.random.
local M = {}

local function sorted(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  return s
end

function M.mean(xs)
  if #xs == 0 then return nil end
  local s = 0
  for _, v in ipairs(xs) do s = s + v end
  return s / #xs
end

function M.median(xs)
  local n = #xs
  if n == 0 then return nil end
  local s = sorted(xs)
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- the interquartile mean: scipy.stats.trim_mean(xs, 0.25): floor(n / 4) values cut from each end
function M.iqm(xs)
  local n = #xs
  if n == 0 then return nil end
  local s = sorted(xs)
  local cut = math.floor(0.25 * n)
  local sum = 0
  for i = cut + 1, n - cut do sum = sum + s[i] end
  return sum / (n - 2 * cut)
end

-- rliable's optimality gap with gamma = 1: the mean of max(1 - x, 0)
function M.optimality_gap(xs)
  if #xs == 0 then return nil end
  local s = 0
  for _, v in ipairs(xs) do s = s + math.max(1 - v, 0) end
  return s / #xs
end

-- the population standard deviation (numpy's np.std, ddof = 0)
function M.std(xs)
  local m = M.mean(xs)
  if not m then return nil end
  local s = 0
  for _, v in ipairs(xs) do s = s + (v - m) ^ 2 end
  return math.sqrt(s / #xs)
end

M.STATS = {mean = M.mean, median = M.median, iqm = M.iqm, optimality_gap = M.optimality_gap}
M.STAT_NAMES = {"median", "iqm", "mean", "optimality_gap"}

-- a splitmix64 stream: rng() -> a float in [0, 1)
function M.rng(seed)
  local state = math.tointeger(seed) or 0
  return function()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) / 9007199254740992.0   -- the top 53 bits
  end
end

local function flatten(rows)
  local out = {}
  for _, r in ipairs(rows) do for _, v in ipairs(r) do out[#out + 1] = v end end
  return out
end

-- the q-quantile of a sorted list, linear between order statistics (numpy's default, as rliable)
function M.quantile(s, q)
  local n = #s
  if n == 0 then return nil end
  local h = (n - 1) * q + 1
  local lo = math.floor(h)
  if lo >= n then return s[n] end
  return s[lo] + (h - lo) * (s[lo + 1] - s[lo])
end

-- the named statistics of one sample, sorted once (median and IQM read the sorted copy)
local SORTED = {median = true, iqm = true}
local function stats_of(xs, names, fns)
  local need_sort = false
  for _, n in ipairs(names) do if SORTED[n] then need_sort = true end end
  if need_sort then table.sort(xs) end
  local out = {}
  for i, n in ipairs(names) do out[i] = fns[i](xs) end
  return out
end

-- cis(rows, names, {reps = 2000, seed = 1, level = 0.95}) -> {[name] = {estimate, lo, hi, reps, seed,
-- level}}: every statistic from the same resamples. rows: a list of score lists (the strata);
-- names: statistics in M.STATS (or {name, function of a flat list})
function M.cis(rows, names, opts)
  opts = opts or {}
  local reps, level, seed = opts.reps or 2000, opts.level or 0.95, opts.seed or 1
  local keys, fns = {}, {}
  for i, n in ipairs(names) do
    if type(n) == "table" then keys[i], fns[i] = n[1], n[2]
    else keys[i], fns[i] = n, M.STATS[n] end
    assert(fns[i], "bootstrap: unknown statistic " .. tostring(keys[i]))
  end
  local flat = flatten(rows)
  local est = stats_of(flat, keys, fns)
  local out = {}
  for i, k in ipairs(keys) do out[k] = {estimate = est[i], reps = reps, seed = seed, level = level, draws = {}} end
  if #flat == 0 then
    for _, k in ipairs(keys) do out[k].draws = nil end
    return out
  end
  local rand = M.rng(seed)
  local buf = {}
  for _ = 1, reps do
    local j = 0
    for _, r in ipairs(rows) do
      local n = #r
      for _ = 1, n do
        j = j + 1
        buf[j] = r[math.floor(rand() * n) + 1]
      end
    end
    local v = stats_of(buf, keys, fns)
    for i, k in ipairs(keys) do local d = out[k].draws d[#d + 1] = v[i] end
  end
  local a = (1 - level) / 2
  for _, k in ipairs(keys) do
    local d = out[k].draws
    table.sort(d)
    out[k].lo, out[k].hi, out[k].draws = M.quantile(d, a), M.quantile(d, 1 - a), nil
  end
  return out
end

-- ci(rows, stat, opts) -> {estimate, lo, hi, reps, seed, level}: one statistic (see cis)
function M.ci(rows, stat, opts)
  local name = type(stat) == "function" and {"f", stat} or stat
  local r = M.cis(rows, {name}, opts)
  return r[type(stat) == "function" and "f" or stat]
end

return M
