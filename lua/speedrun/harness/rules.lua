-- speedrun.harness.rules: the host's validation and the rule checks, in the child
-- (docs/harness.md "Host-owned measurement"). Validation: cross-entropy computed by the host
-- from eval's logits over the fixed validation tokens (eval sees copies of the inputs, never
-- the targets). Checks: eval is stateless, the model is causal, batches are read-only; a
-- broken rule raises a `rejected` failure and is noted in R.checks.
local H = require "speedrun.harness_core"
local sr = require "speedrun"
local core = require "speedrun.core"
local report = require "speedrun.harness.report"

local fail, call = report.fail, report.call
local now, sync, checksum, causal_diff = H.now, H.sync, H.checksum, H.causal_diff
local shape_of, sum_finite, int_range = H.shape, H.sum_finite, H.int_range
local no_grad, is_tensor, tensor_new = sr.no_grad, sr.is_tensor, sr.tensor
local F_cross_entropy = sr.F.cross_entropy
-- Tensor methods, captured: the recipe can replace entries of the shared methods table
local methods = core.Tensor.methods
local m_clone, m_narrow, m_to, m_tolist = methods.clone, methods.narrow, methods.to, methods.tolist
local fmt, tconcat = string.format, table.concat
local mfloor, mmin, mmax = math.floor, math.min, math.max
local error, type, ipairs, setmetatable = error, type, ipairs, setmetatable

local RTOL = 1e-3       -- the stateless-eval and causality checks: relative to the largest logit

local M = {}

-- validation cross-entropy of one chunk: the engine's fused cross-entropy (captured above, on
-- the logits' device, f64 row statistics) per token, summed on the host in double precision;
-- the shapes and target ids are checked first
local function chunk_ce(logits, y)
  local ls, ys = shape_of(logits), shape_of(y)
  if #ls ~= #ys + 1 then error(fmt("eval returned logits with %d dimensions for inputs with %d (want one more: the vocabulary)", #ls, #ys), 0) end
  for d = 1, #ys do
    if ls[d] ~= ys[d] then error(fmt("eval returned logits of shape [%s] for inputs of shape [%s]", tconcat(ls, ", "), tconcat(ys, ", ")), 0) end
  end
  local _, hi = int_range(y)
  if hi >= ls[#ls] then error(fmt("a validation target is token %d but the logits have only %d columns (vocab_size too small)", hi, ls[#ls]), 0) end
  return sum_finite(F_cross_entropy(logits, y, {reduction = "none"}))
end

local Rules = {}
Rules.__index = Rules

-- the checker of one run: ctx and eval of the recipe, the validation loader, R (results), the device
function M.new(ctx, eval_fn, vloader, R, device)
  return setmetatable({ctx = ctx, eval_fn = eval_fn, vloader = vloader, R = R, device = device,
                       is_cuda = device == "cuda", eval_ms = 0}, Rules)
end

-- eval's logits for x, under no_grad
function Rules:eval(x)
  local logits = call(no_grad, self.eval_fn, self.ctx, x)
  if not is_tensor(logits) then fail("lua_error", "recipe contract: eval must return a logits tensor (got " .. type(logits) .. ")") end
  return logits
end

-- mean cross-entropy of eval on (x, y) (a copy of x): how the CUDA graph verification sees the model
function Rules:loss(x, y)
  local s, n = chunk_ce(self:eval(m_clone(x)), y)
  return s / n
end

-- eval must be a pure function of its inputs: the first chunk again gives the same logits
function Rules:check_stateless(x, logits)
  local again = self:eval(m_clone(x))
  local d, amax = causal_diff(logits, again, 1, 1 + shape_of(x)[2])
  local ok = d <= RTOL * mmax(1, amax)
  self.R.checks.eval_stateless = {ok = ok, max_diff = d}
  if not ok then
    fail("rejected", fmt("eval is not a pure function of its inputs: the first validation chunk gave logits differing by %.3g on a second call (eval must not learn from validation data)", d))
  end
end

-- the validation loss over the fixed tokens and the token count; final: with the stateless check
function Rules:validate(final)
  local t0 = now()
  local vloader = self.vloader
  vloader:reset()
  local sum, count, nonfinite = 0, 0, 0
  local first_x, first_logits
  while true do
    local x, y = vloader:next()
    if not x then break end
    local logits = self:eval(m_clone(x))
    local s, n, nf = chunk_ce(logits, y)
    sum, count, nonfinite = sum + s, count + n, nonfinite + nf
    if final and not first_x then first_x, first_logits = x, logits end
    logits = nil
  end
  if final and first_x then self:check_stateless(first_x, first_logits) end
  local es = sync(self.is_cuda)
  if es then fail("cuda_fault", "during validation: " .. es) end
  self.eval_ms = self.eval_ms + (now() - t0) * 1000
  if nonfinite > 0 then return 0 / 0, count end
  return sum / count, count
end

-- ids with the token at row 1, position pos, changed (to another token of that row if any)
local function perturbed(ids, rows, T, pos)
  local row = ids[1]
  local old = row[pos]
  local new = old
  for j = 1, T do if row[j] ~= old then new = row[j]; break end end
  if new == old then new = (old + 1) % 50257 end
  local copy = {}
  for r = 1, rows do
    copy[r] = {}
    for j = 1, T do copy[r][j] = ids[r][j] end
  end
  copy[1][pos] = new
  return copy
end

-- causality: change a later token; earlier logits (and other rows) must not move
function Rules:causality()
  self.vloader:reset()
  local x = self.vloader:next()
  local rows = mmin(2, shape_of(x)[1])
  x = m_clone(m_narrow(x, 1, 1, rows))
  local T = shape_of(x)[2]
  local ids = m_tolist(m_to(x, "cpu"))
  local base = self:eval(m_clone(x))
  local worst, amax_all = 0, 0
  local positions = {T, mmax(2, mfloor(T / 2) + 1)}
  if T < 2 then positions = {} end
  for _, pos in ipairs(positions) do
    local xp = tensor_new(perturbed(ids, rows, T, pos), {dtype = "int32", device = self.device})
    local d, amax = causal_diff(base, self:eval(xp), 1, pos)
    if d > worst then worst = d end
    if amax > amax_all then amax_all = amax end
  end
  local ok = worst <= RTOL * mmax(1, amax_all)
  self.R.checks.causality = {ok = ok, max_diff = worst, positions = positions}
  if not ok then
    fail("rejected", fmt("non-causal model: changing a later token moved earlier logits by up to %.3g (a model may use only tokens at or before each position)", worst))
  end
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
