-- bench/cpu_train.lua: trains speedrun.gpt.GPT on the CPU for a fixed number of steps and prints
-- the time of each step and the mean tokens/s over the steps after the warm-up. The timed
-- region of a step matches llm.c's train_gpt2.c: next batch, forward with loss, zero_grad,
-- backward, AdamW update (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0).
--
-- usage: speedrun run bench/cpu_train.lua [key=value ...]
--   B=4 T=128 L=2 NH=2 C=128 V=50257 steps=10 warmup=2 threads=<all> seed=1337
--   data=FILE        train on this token shard (speedrun/llm.c format: 256 int32 header with
--                    magic 20240520, version 1, count; then uint16 tokens); default: random ids
--   write_llmc=DIR   instead of training, write the model's initial weights as DIR/gpt2_124M.bin
--                    (llm.c checkpoint v3, vocab padded to Vp) and random token shards as
--                    DIR/dev/data/tinyshakespeare/tiny_shakespeare_{train,val}.bin, then exit
--   Vp=50304 maxT=128 ntok=65536   (only for write_llmc)
--   val=FILE         before training, print the loss of the first B*T tokens of FILE, as
--                    llm.c's first "val loss" line (the same weights give the same number, up to
--                    GELU: ours is the erf form, llm.c's the tanh form)
-- Each step line also gives its CPU time (os.clock: all threads, user + system), which a busy
-- machine inflates much less than wall time. The last line is machine-readable:
-- "RESULT ms_per_step=... tokens_per_s=... cpu_ms_per_step=... steps=... threads=..."
local sr = require "speedrun"
local gpt = require "speedrun.gpt"
local optim = require "speedrun.optim"
local F = sr.F

local opt = {B = 4, T = 128, L = 2, NH = 2, C = 128, V = 50257, Vp = 50304, maxT = 128,
             steps = 10, warmup = 2, seed = 1337, ntok = 65536}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "bad argument '" .. a .. "' (want key=value)")
  opt[k] = tonumber(v) or v
end
if opt.threads then sr.set_num_threads(opt.threads) end

-- wall clock in seconds: the engine's monotonic clock (clock_gettime(CLOCK_MONOTONIC))
local now = sr.clock

sr.manual_seed(opt.seed)
local model = gpt.GPT{vocab_size = opt.V, block_size = opt.maxT, n_layer = opt.L, n_head = opt.NH,
                      n_embd = opt.C}

-- token shard: 256 int32 header, then uint16 tokens
local function write_shard(path, n)
  local f = assert(io.open(path, "wb"))
  local h = {20240520, 1, n}
  for i = 4, 256 do h[i] = 0 end
  f:write(string.pack("<" .. string.rep("i4", 256), table.unpack(h)))
  local ids = sr.randint(0, opt.V, {n}, {dtype = "int32"}):tolist()
  local parts = {}
  for i = 1, n, 4096 do
    local chunk = {}
    for j = i, math.min(i + 4095, n) do chunk[#chunk + 1] = ids[j] end
    parts[#parts + 1] = string.pack("<" .. string.rep("I2", #chunk), table.unpack(chunk))
  end
  f:write(table.concat(parts))
  f:close()
end

local function read_shard(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  local magic, version, n = string.unpack("<i4i4i4", data)
  assert(magic == 20240520 and version == 1, path .. ": not a token shard")
  local toks, pos = {}, 256 * 4 + 1
  for i = 1, n do toks[i], pos = string.unpack("<I2", data, pos) end
  return toks
end

if opt.write_llmc then
  -- llm.c's checkpoint: header {20240326, 3, maxT, V, L, NH, C, Vp}, then the parameters in
  -- ParameterTensors order, each layer-stacked: wte (Vp,C) wpe (maxT,C) ln1w ln1b qkvw qkvb
  -- attprojw attprojb ln2w ln2b fcw fcb fcprojw fcprojb lnfw lnfb
  local dir = opt.write_llmc
  local f = assert(io.open(dir .. "/gpt2_124M.bin", "wb"))
  local h = {20240326, 3, opt.maxT, opt.V, opt.L, opt.NH, opt.C, opt.Vp}
  for i = 9, 256 do h[i] = 0 end
  f:write(string.pack("<" .. string.rep("i4", 256), table.unpack(h)))
  f:write(model.wte.weight:tobytes())
  f:write(sr.zeros((opt.Vp - opt.V) * opt.C):tobytes())
  f:write(model.wpe.weight:tobytes())
  local per_layer = {{"ln_1", "weight"}, {"ln_1", "bias"}, {"c_attn", "weight"}, {"c_attn", "bias"},
                     {"c_proj", "weight"}, {"c_proj", "bias"}, {"ln_2", "weight"}, {"ln_2", "bias"},
                     {"c_fc", "weight"}, {"c_fc", "bias"}, {"c_fc_proj", "weight"}, {"c_fc_proj", "bias"}}
  for _, pn in ipairs(per_layer) do
    for l = 1, opt.L do f:write(model.blocks[l][pn[1]][pn[2]]:tobytes()) end
  end
  f:write(model.ln_f.weight:tobytes())
  f:write(model.ln_f.bias:tobytes())
  f:close()
  local ddir = dir .. "/dev/data/tinyshakespeare/"
  write_shard(ddir .. "tiny_shakespeare_train.bin", opt.ntok)
  write_shard(ddir .. "tiny_shakespeare_val.bin", opt.ntok // 4)
  print(("wrote %s/gpt2_124M.bin (%d params) and token shards"):format(dir, model:num_parameters()))
  return
end

local B, T = opt.B, opt.T
local toks = opt.data and read_shard(opt.data)
local cursor = 1
-- next batch, as llm.c's dataloader: B*T+1 consecutive tokens, targets shifted by one
local function next_batch()
  if not toks then
    local x = sr.randint(0, opt.V, {B, T + 1}, {dtype = "int32"})
    return x:narrow(2, 1, T):contiguous(), x:narrow(2, 2, T):contiguous()
  end
  if cursor + B * T > #toks then cursor = 1 end
  local xs, ys = {}, {}
  for i = 0, B * T - 1 do
    xs[i + 1] = toks[cursor + i]
    ys[i + 1] = toks[cursor + i + 1]
  end
  cursor = cursor + B * T
  return sr.tensor(xs, {dtype = "int32"}):view(B, T), sr.tensor(ys, {dtype = "int32"}):view(B, T)
end

if opt.val then
  local vt = read_shard(opt.val)
  local xs, ys = {}, {}
  for i = 1, B * T do xs[i], ys[i] = vt[i], vt[i + 1] end
  local vl = sr.no_grad(function()
    local _, l = model:forward(sr.tensor(xs, {dtype = "int32"}):view(B, T), sr.tensor(ys, {dtype = "int32"}):view(B, T))
    return l:item()
  end)
  print(("val loss %f"):format(vl))
end

local opt_adam = optim.AdamW(model:parameters(), {lr = 1e-4, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.0})
print(("speedrun cpu_train: B=%d T=%d L=%d NH=%d C=%d V=%d params=%d threads=%d"):format(
  B, T, opt.L, opt.NH, opt.C, opt.V, model:num_parameters(), sr.get_num_threads()))

local total, cpu_total = 0, 0
for step = 0, opt.steps - 1 do
  local t0, c0 = now(), os.clock()
  local x, y = next_batch()
  local _, loss = model:forward(x, y)
  opt_adam:zero_grad()
  loss:backward()
  opt_adam:step()
  local lv = loss:item()
  x, y, loss = nil, nil, nil
  collectgarbage()  -- free this step's activations now (llm.c reuses one preallocated slab)
  local dt, cpu = now() - t0, os.clock() - c0
  if step >= opt.warmup then total, cpu_total = total + dt, cpu_total + cpu end
  print(("step %d: train loss %f (took %f ms) cpu %.1f ms%s"):format(step, lv, dt * 1000, cpu * 1000,
    step < opt.warmup and " [warm-up]" or ""))
end
local n = opt.steps - opt.warmup
local ms = total / n * 1000
print(("RESULT ms_per_step=%.3f tokens_per_s=%.1f cpu_ms_per_step=%.3f steps=%d threads=%d"):format(ms,
  B * T / (ms / 1000), cpu_total / n * 1000, n, sr.get_num_threads()))
