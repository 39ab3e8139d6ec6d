-- speedrun.util: small helpers the harness, the task commands and the tools share.
local util = {}

-- the whole file as a string, or nil and the error message
function util.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- writes s to path (replacing it): true, or nil and the error message (a partly written file is
-- removed)
function util.write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(s)
  local cok, cerr = f:close()
  if not ok or not cok then os.remove(path) return nil, werr or cerr end
  return true
end

-- a copy of a table and of every table inside it (no cycles, metatables not copied)
function util.deepcopy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = util.deepcopy(v) end
  return c
end

-- a recipe file loaded outside the harness (the tools that drive a recipe's step themselves:
-- tasks/fidelity/ours.lua, bench/profile_recipe.lua), with `speedrun` in its environment: the
-- recipe table, or nil and the error message
function util.load_recipe(path)
  local chunk, err = loadfile(path, "t", setmetatable({speedrun = require "speedrun"}, {__index = _G}))
  if not chunk then return nil, err end
  return chunk()
end

-- the context of a recipe at one scale, set up (recipe.setup run): a copy of the scale's config
-- with `overrides` applied, seeded with `seed`. Nil and a message when the scale does not exist.
function util.recipe_context(recipe, scale, device, seed, overrides)
  local base = recipe.config[scale]
  if not base then return nil, "the recipe has no scale " .. scale end
  local cfg = util.deepcopy(base)
  for k, v in pairs(overrides or {}) do cfg[k] = v end
  local b = cfg.batch
  local sr = require "speedrun"
  sr.manual_seed(seed)
  local ctx = {scale = scale, config = cfg, device = device, seed = seed, steps = cfg.steps,
               tokens_per_step = (b.mode == "seq" and b.T) or (b.mode == "global" and b.batch) or b.B * b.T, out_dir = "/tmp", workspace = "."}
  recipe.setup(ctx)
  return ctx
end

-- the overrides (for recipe_context) that make a scale's config train `tokens` tokens a step in
-- one micro-batch, its model and optimizer unchanged: seq mode one flat sequence of `tokens`, bt
-- mode tokens / T rows of the scale's T; and the batch's shape. Nil and a message when that cannot be.
-- For the tools that study a record's full model on the CPU (bench/memory_recipe.lua, profile_recipe.lua).
function util.one_micro_batch(cfg, tokens)
  local b = cfg.batch
  local over = {batch = util.deepcopy(b)}
  if b.mode == "seq" then
    over.batch.T, over.micro_batch = tokens, tokens
    if cfg.val_batch then over.val_batch = {B = 1, T = tokens} end
    return over, {tokens}
  elseif b.mode == "bt" then
    if tokens % b.T ~= 0 then return nil, ("--tokens must be a multiple of the scale's T (%d)"):format(b.T) end
    over.batch.B, over.micro_batch = tokens // b.T, tokens // b.T
    return over, {tokens // b.T, b.T}
  end
  return nil, "batch modes bt and seq are supported (this scale uses " .. tostring(b.mode) .. ")"
end

-- random training tokens x, y of `shape` (on the CPU) for a recipe's config, for the tools that
-- drive its step (bench/profile_recipe.lua, bench/memory_recipe.lua): ids in [0, min(vocab_size,
-- 50257)) (the GPT-2 ids the harness feeds); a flat sequence ([T], seq mode) gets the config's
-- end-of-text token at a random ~1 in 600 positions, FineWeb's mean document length, so the
-- records' document masks have their sparsity (~100 documents per 64K) where uniform tokens
-- would make one document
function util.random_batch(cfg, shape)
  local sr = require "speedrun"
  local vocab = math.min((cfg.model or {}).vocab_size or 50257, 50257)
  local x, y = sr.randint(0, vocab, shape), sr.randint(0, vocab, shape)
  if #shape == 1 and cfg.eot then x = sr.F.masked_fill(x, sr.F.lt(sr.rand(shape), 1 / 600), cfg.eot) end
  return x, y
end

-- s as one single-quoted shell word (for os.execute and io.popen command lines)
function util.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

return util
