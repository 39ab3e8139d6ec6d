-- speedrun.harness.rules: the host's validation and the rule checks, in the child
-- (docs/harness.md "Host-owned measurement"). Validation: cross-entropy computed by the host
-- from eval's logits over the fixed validation tokens (eval sees copies of the inputs, never
-- the targets). Checks: eval is stateless and the model is causal, both on full-size validation
-- chunks drawn at random after validation (so eval cannot tell a checked call from another);
-- batches are read-only; a broken rule raises a `rejected` failure and is noted in R.checks.
local H = require "speedrun.harness_core"
local sr = require "speedrun"
local core = require "speedrun.core"
local report = require "speedrun.harness.report"
local state = require "speedrun.harness.state"

local fail, call = report.fail, report.call
local now, sync, checksum, causal_diff, eval_guard = H.now, H.sync, H.checksum, H.causal_diff, H.eval_guard
local shape_of, sum_finite, int_range = H.shape, H.sum_finite, H.int_range
local no_grad, is_tensor, tensor_new = sr.no_grad, sr.is_tensor, sr.tensor
local F_cross_entropy, F_cat, F_cast = sr.F.cross_entropy, sr.F.cat, sr.F.cast
local library_changed, picture, moved = state.library_changed, state.picture, state.moved
-- Tensor methods, captured: the recipe can replace entries of the shared methods table
local methods = core.Tensor.methods
local m_clone, m_narrow, m_to, m_tolist, m_reshape = methods.clone, methods.narrow, methods.to, methods.tolist, methods.reshape
local m_zero = methods.zero_
local fmt, tconcat, sunpack = string.format, table.concat, string.unpack
local mfloor, mmin, mmax, mabs = math.floor, math.min, math.max, math.abs
local real_open = io.open     -- captured before the sandbox replaces io.open
local error, type, ipairs, setmetatable, pcall, select = error, type, ipairs, setmetatable, pcall, select

local RTOL = 1e-3       -- the stateless-eval check (per token, relative to the loss) and the
                        -- causality check (relative to the largest logit)
local CHUNKS = 3        -- validation chunks checked after validation, drawn at random
-- tokens changed in all (each a causality probe: a peek at a fraction f of positions escapes a run
-- with (1 - f)^probes): every row of a checked chunk gets one at a random position, and each checked
-- chunk is perturbed afresh until the run has at least this many, whatever val_batch's shape (a
-- one-row chunk gave one probe a run: a 25 % peek escaped 3 scores in 5)
local MIN_PROBES = 64
local PROBE_TOKENS = 65536  -- the most tokens of a training batch the graph verification evaluates
local CE_ROWS = 8192        -- positions whose logits are widened to f32 at a time (validation's loss)

local M = {}

-- validation cross-entropy of one chunk: the engine's fused cross-entropy (captured above, on
-- the logits' device, f64 row statistics) per token in f32 or f64, summed on the host in double
-- precision; the shapes and target ids are checked first
local function chunk_ce(logits, y)
  local ls, ys = shape_of(logits), shape_of(y)
  if #ls ~= #ys + 1 then error(fmt("eval returned logits with %d dimensions for inputs with %d (want one more: the vocabulary)", #ls, #ys), 0) end
  for d = 1, #ys do
    if ls[d] ~= ys[d] then error(fmt("eval returned logits of shape [%s] for inputs of shape [%s]", tconcat(ls, ", "), tconcat(ys, ", ")), 0) end
  end
  local _, hi = int_range(y)
  local V = ls[#ls]
  if hi >= V then error(fmt("a validation target is token %d but the logits have only %d columns (vocab_size too small)", hi, V), 0) end
  local dt = logits.dtype
  if dt == "float32" or dt == "float64" then return sum_finite(F_cross_entropy(logits, y, {reduction = "none"})) end
  -- narrower logits (bf16) widened first, a slice of positions at a time: the per-token losses
  -- come in the logits' dtype, and bf16 ones round by up to 2^-8 of the loss, which logits chosen
  -- to sit on bf16's grid turn into a loss that always rounds down (round 11's cheat_bf16round)
  local n = 1
  for d = 1, #ys do n = n * ys[d] end
  local flat, yf = m_reshape(logits, n, V), m_reshape(y, n)
  local sum, count, bad = 0, 0, 0
  for i = 1, n, CE_ROWS do
    local k = mmin(CE_ROWS, n - i + 1)
    local s, c, b = sum_finite(F_cross_entropy(F_cast(m_narrow(flat, 1, i, k), "float32"), m_narrow(yf, 1, i, k),
                                               {reduction = "none"}))
    sum, count, bad = sum + s, count + c, bad + b
  end
  return sum, count, bad
end

local Rules = {}
Rules.__index = Rules

-- the checker of one run: ctx and eval of the recipe, the validation loader, R (results), the
-- device; guarded: eval runs under the eval guard (restricted runs: no grad mode, no backward,
-- no optimizer step, no in-place write to a tensor that requires grad, even if caught)
function M.new(ctx, eval_fn, vloader, R, device, guarded, roots)
  return setmetatable({ctx = ctx, eval_fn = eval_fn, vloader = vloader, R = R, device = device,
                       is_cuda = device == "cuda", eval_ms = 0, watch_s = 0, guarded = guarded, roots = roots}, Rules)
end

-- eval's logits for x, under no_grad (and the guard); with roots (restricted runs: {ctx, recipe})
-- the state reachable from them must be as before the call (state.picture: no memory kept between
-- calls, no training by hand in eval), and the library unchanged
function Rules:eval(x)
  local p0 = now()
  local before = self.roots and picture(self.roots)
  local p1 = now()
  if self.guarded then eval_guard(true) end
  local ok, logits = pcall(call, no_grad, self.eval_fn, self.ctx, x)
  local hits, first = eval_guard(false)
  -- the device work eval queued is eval's time: unsynchronised it ran on during the state checks
  -- below, whose time is not eval's (round 17: a large ctx to walk hid an eval that trains)
  local es = sync(self.is_cuda)
  if self.guarded and hits > 0 then
    self.R.checks.eval_guard = {ok = false, attempts = hits, first = first}
    fail("rejected", fmt("%s inside eval (%d attempt(s), even if caught): eval runs without gradients and must not change the model", first, hits))
  end
  local p2 = now()
  M.check_library("after an eval call")
  local why = before and moved(before, picture(self.roots))
  self.watch_s = self.watch_s + (p1 - p0) + (now() - p2)   -- the harness's own checks: not eval's time
  if why then
    self.R.checks.eval_state = {ok = false, reason = why}
    fail("rejected", "eval changed the recipe's state (" .. why .. "): eval must not change the model")
  end
  if not ok then error(logits, 0) end
  if es then fail("cuda_fault", "in eval: " .. es) end
  if not is_tensor(logits) then fail("lua_error", "recipe contract: eval must return a logits tensor (got " .. type(logits) .. ")") end
  return logits
end

-- the library tables unchanged (state.library_changed), checked where the clock stops and after
-- every eval call: `where` names the place in the failure
function M.check_library(where)
  local why = library_changed()
  if why then
    fail("rejected", fmt("the recipe changed the speedrun library (%s, seen %s): the library's tables are read-only "
                         .. "for recipes (keep state in ctx; write your own functions instead of replacing the library's)", why, where))
  end
end

-- mean cross-entropy of eval on (x, y) (a copy of x): how the CUDA graph verification sees the
-- model; on at most PROBE_TOKENS tokens of the batch (whole rows of [B, T], the head of a flat
-- sequence): a full-scale step's batch (524,288 tokens) would need ~100 GB of f32 logits
function Rules:loss(x, y)
  local sx = shape_of(x)
  local keep = #sx == 2 and mmax(1, PROBE_TOKENS // sx[2]) or #sx == 1 and PROBE_TOKENS or nil  -- rows, tokens
  if keep and sx[1] > keep then x, y = m_narrow(x, 1, 1, keep), m_narrow(y, 1, 1, keep) end
  -- a flat sequence (seq-mode batches, [T]) goes to eval as one row [1, T], as validation's inputs
  -- do: eval's contract is inputs [B, T]
  if #sx == 1 then local n = shape_of(x)[1]; x, y = m_reshape(x, 1, n), m_reshape(y, 1, n) end
  local s, n = chunk_ce(self:eval(m_clone(x)), y)
  return s / n
end

-- random integers in 1..n from the kernel (not Lua's generator, which the recipe can seed),
-- drawn after validation, so eval cannot know which of its calls are checked
local function rand(n)
  local f = real_open("/dev/urandom", "rb")
  local b = f and f:read(4)
  if f then f:close() end
  local v = b and #b == 4 and sunpack("<I4", b) or mfloor(now() * 1e6)
  return v % n + 1
end

-- k distinct random integers in 1..n
local function pick(k, n)
  local got, out = {}, {}
  while #out < mmin(k, n) do
    local i = rand(n)
    if not got[i] then got[i] = true; out[#out + 1] = i end
  end
  return out
end

-- The validation loader is on the host (child.lua) and maps no shard: eval gets a device copy of a
-- chunk's inputs, read from the file just before; its targets are read only after eval has answered
-- (vloader:targets()), reach the device then, and are zeroed there (and on the host, with the
-- inputs) once used, so no code of the recipe finds a chunk's targets, or any later token, while it
-- answers for that chunk: not on the device (an agent kernel reads any device memory), not in the
-- process's memory (one that reads host memory through HMM or ATS: round 19, docs/harness.md).

-- a copy of a chunk's inputs or targets where eval answers (the device, or a clone on the CPU)
function Rules:copy(t)
  if self.is_cuda then return m_to(t, "cuda") end
  return m_clone(t)
end

-- a chunk's tensors once used: zeroed (freed memory keeps what it held)
function Rules:forget(...)
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if t then m_zero(t) end
  end
end

-- the inputs of validation chunk i again (the loader from the start; the chunks before it zeroed)
function Rules:chunk(i)
  local vloader = self.vloader
  vloader:reset()
  local x
  for _ = 1, i do
    self:forget(x)
    x = vloader:next()
  end
  return x
end

-- eval must be a pure function of its inputs: chunk i evaluated again gives the loss it gave
-- during validation; returns the logits, the difference per token and the mean, and the chunk's
-- targets (read after eval answered)
function Rules:recheck(i, x)
  local logits = self:eval(self:copy(x))
  local y = self.vloader:targets()
  local yd = self:copy(y)
  local s, n = chunk_ce(logits, yd)
  self:forget(yd)
  return logits, mabs(s - self.sums[i]) / n, self.sums[i] / n, y
end

-- a copy of chunk x with one token changed in every row, at a random position of each, the first
-- included (to a token found elsewhere in the chunk); returns it and the per-row positions (a
-- row's earlier positions must not move; a row that reads the next row's first token, its own last
-- target, is caught by the rotated rows)
local function perturbed(x, device)
  local ids = m_tolist(m_to(x, "cpu"))
  local B, T = #ids, #ids[1]
  local limits, positions = {}, {}
  for r = 1, B do
    local pos = rand(T)
    local old, new = ids[r][pos], nil
    for _ = 1, 16 do
      local v = ids[rand(B)][rand(T)]
      if v ~= old then new = v; break end
    end
    if new then ids[r][pos], limits[r] = new, pos; positions[#positions + 1] = {r, pos} end
  end
  if #positions == 0 then return nil end
  return tensor_new(ids, {dtype = "int32", device = device}), limits, positions
end

-- chunk x with its rows rotated by one (row k moves to k - 1, the first to the end), and the
-- logits of such a chunk put back in x's order
local function rotated(x)
  local B = shape_of(x)[1]
  return F_cat({m_narrow(x, 1, 2, B - 1), m_narrow(x, 1, 1, 1)}, 1)
end
local function unrotated(logits)
  local B = shape_of(logits)[1]
  return F_cat({m_narrow(logits, 1, B, 1), m_narrow(logits, 1, 1, B - 1)}, 1)
end

-- after the final validation: CHUNKS chunks drawn at random are evaluated again (same loss:
-- eval is stateless), with later tokens changed in random rows and positions (earlier logits
-- unmoved: the model is causal) and with their rows in another order (each row's logits unmoved:
-- a row sees no other row); full-size chunks of the real stream, as validation sees them
function Rules:checks()
  local worst_s, worst_c, worst_l, amax_all, tested, where = 0, 0, 0, 0, {}, {}
  local chunks = pick(CHUNKS, #self.sums)
  for _, i in ipairs(chunks) do
    local x = self:chunk(i)
    local base, d, mean, y = self:recheck(i, x)
    worst_s = mmax(worst_s, d)
    if not (d <= RTOL * mmax(1, mabs(mean))) then
      self.R.checks.eval_stateless = {ok = false, max_diff = worst_s, chunks = tested}
      fail("rejected", fmt("eval is not a pure function of its inputs: validation chunk %d, evaluated again after validation, gave a loss differing by %.3g per token (eval must not learn from validation data, nor behave differently on some calls)", i, d))
    end
    tested[#tested + 1] = i
    for _ = 1, mmax(1, math.ceil(MIN_PROBES / (shape_of(x)[1] * #chunks))) do
      local xp, limits, positions = perturbed(x, self.device)
      if xp then
        local answer = self:eval(xp)
        local yd = self:copy(y)
        local cd, amax, ld = causal_diff(base, answer, limits, yd)
        self:forget(yd, xp)
        if not cd then   -- amax: what differed
          fail("rejected", fmt("eval answered validation chunk %d with %s once a later token was changed (eval must treat every call alike)", i, amax))
        end
        worst_c, amax_all, worst_l = mmax(worst_c, cd), mmax(amax_all, amax), mmax(worst_l, ld)
        for _, p in ipairs(positions) do where[#where + 1] = {chunk = i, row = p[1], pos = p[2]} end
      end
    end
    if shape_of(x)[1] > 1 then   -- the same rows in another order: each row's answer its own
      local answer = unrotated(self:eval(self:copy(rotated(x))))
      local yd = self:copy(y)
      local cd, amax, ld = causal_diff(base, answer, {}, yd)
      self:forget(yd)
      if not cd then
        fail("rejected", fmt("eval answered validation chunk %d with %s once its rows were reordered (eval must treat every call alike)", i, amax))
      end
      worst_c, amax_all, worst_l = mmax(worst_c, cd), mmax(amax_all, amax), mmax(worst_l, ld)
      where[#where + 1] = {chunk = i, rows_rotated = true}
    end
    self:forget(x, y)
  end
  self.R.checks.eval_stateless = {ok = true, max_diff = worst_s, chunks = tested}
  -- the logits within RTOL of the largest one compared, and each earlier token's loss within RTOL
  -- of itself (an extra column of huge logits widens the first tolerance, never the second)
  local ok = worst_c <= RTOL * mmax(1, amax_all) and worst_l <= RTOL
  self.R.checks.causality = {ok = ok, max_diff = worst_c, max_loss_change = worst_l, perturbed = where}
  if not ok then
    fail("rejected", fmt("non-causal model: changing later tokens of validation chunks moved earlier logits by up to %.3g and earlier tokens' losses by up to %.3g of themselves (a model may use only tokens at or before each position)", worst_c, worst_l))
  end
end

-- the validation loss over the fixed tokens, the token count and the cross-entropy sum (nats);
-- final: the per-chunk sums are kept for the checks
function Rules:validate(final)
  local t0, w0 = now(), self.watch_s
  local vloader = self.vloader
  vloader:reset()
  local sum, count, nonfinite, sums = 0, 0, 0, {}
  while true do
    local x = vloader:next()
    if not x then break end
    local logits = self:eval(self:copy(x))
    local y = vloader:targets()
    local yd = self:copy(y)
    local s, n, nf = chunk_ce(logits, yd)
    self:forget(yd, x, y)
    sum, count, nonfinite = sum + s, count + n, nonfinite + nf
    sums[#sums + 1] = s
    logits = nil
  end
  if final then self.sums = sums end
  local es = sync(self.is_cuda)
  if es then fail("cuda_fault", "during validation: " .. es) end
  self.eval_ms = self.eval_ms + (now() - t0 - (self.watch_s - w0)) * 1000   -- without the state checks
  if nonfinite > 0 then return 0 / 0, count, 0 / 0 end
  return sum / count, count, sum
end

-- batches are read-only: checksums before train_step ...
function M.batch_sums(x, y) return checksum(x), checksum(y) end

-- ... and the same checksums after it, of the tensors the step read
function M.check_batch(step, x, y, hx, hy)
  if checksum(x) ~= hx or checksum(y) ~= hy then
    fail("rejected", fmt("train_step modified its batch tensors at step %d (batches are read-only)", step))
  end
end

return M
