-- speedrun.nn: a small Module base (after torch/nn's Module.lua) and the layers recipes share:
-- Linear, Embedding, LayerNorm, RMSNorm; state save/load to a file.
local sr = require "speedrun"
local F = sr.F

local nn = {}

-- Module ---------------------------------------------------------------------------------------
local Module = {}
Module.__index = Module
nn.Module = Module

-- class(name [, parent]): a new module class; instances come from Class(...) calling :init(...)
function nn.class(name, parent)
  parent = parent or Module
  local cls = setmetatable({}, {
    __index = parent,
    __call = function(c, ...)
      local self = setmetatable({_params = {}, _param_order = {}, _children = {}, _child_order = {}, training = true}, c)
      self:init(...)
      return self
    end,
  })
  cls.__index = cls
  cls.__name = name
  cls.__call = function(self, ...) return self:forward(...) end
  return cls
end

function Module:init() end

-- register a parameter (a float tensor; it is marked requires_grad)
function Module:param(name, t)
  assert(sr.is_tensor(t), "param: expected a tensor for '" .. name .. "'")
  t.requires_grad = true
  if not self._params[name] then self._param_order[#self._param_order + 1] = name end
  self._params[name] = t
  self[name] = t
  return t
end

-- register a child module
function Module:child(name, m)
  if not self._children[name] then self._child_order[#self._child_order + 1] = name end
  self._children[name] = m
  self[name] = m
  return m
end

-- named_parameters(): list of {name, tensor} in registration order, children after own params
function Module:named_parameters(prefix, out)
  out = out or {}
  prefix = prefix or ""
  for _, n in ipairs(self._param_order) do out[#out + 1] = {prefix .. n, self._params[n]} end
  for _, n in ipairs(self._child_order) do self._children[n]:named_parameters(prefix .. n .. ".", out) end
  return out
end

function Module:parameters()
  local ps = {}
  for i, np in ipairs(self:named_parameters()) do ps[i] = np[2] end
  return ps
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:apply(fn)
  for _, n in ipairs(self._child_order) do self._children[n]:apply(fn) end
  fn(self)
  return self
end

function Module:train(on)
  if on == nil then on = true end
  return self:apply(function(m) m.training = on end)
end

function Module:eval() return self:train(false) end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

-- move every parameter to a device/dtype (replaces the tensors; call before building optimizers)
function Module:to(...)
  local args = {...}
  self:apply(function(m)
    for _, n in ipairs(m._param_order) do
      local t = sr.no_grad(function() return m._params[n]:to(table.unpack(args)) end)
      m:param(n, t)
    end
  end)
  return self
end

function Module:state_dict()
  local sd = {}
  for _, np in ipairs(self:named_parameters()) do sd[np[1]] = np[2] end
  return sd
end

-- load values into the existing parameters (shapes must match)
function Module:load_state_dict(sd, strict)
  if strict == nil then strict = true end
  for _, np in ipairs(self:named_parameters()) do
    local name, p = np[1], np[2]
    local v = sd[name]
    if v == nil then
      if strict then error("load_state_dict: missing parameter '" .. name .. "'", 2) end
    else
      local ps, vs = table.concat(p.shape, ","), table.concat(v.shape, ",")
      if ps ~= vs then error(("load_state_dict: '%s' has shape [%s], the file has [%s]"):format(name, ps, vs), 2) end
      sr.no_grad(function() p:copy_(v) end)
    end
  end
  return self
end

-- Weight files: "SRW1", u32 count, then per tensor: u16 name length, name, u8 dtype length,
-- dtype name, u8 ndim, i64 dims, the raw little-endian elements.
function nn.save(path, sd)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local names = {}
  for k in pairs(sd) do names[#names + 1] = k end
  table.sort(names)
  f:write("SRW1", string.pack("<I4", #names))
  for _, name in ipairs(names) do
    local t = sd[name]
    f:write(string.pack("<s2s1B", name, t.dtype, t:dim()))
    for _, d in ipairs(t.shape) do f:write(string.pack("<i8", d)) end
    f:write(t:tobytes())
  end
  f:close()
  return true
end

function nn.load(path, opts)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("a")
  f:close()
  if data:sub(1, 4) ~= "SRW1" then return nil, path .. ": not a speedrun weight file (bad magic)" end
  local n, pos = string.unpack("<I4", data, 5)
  local sd = {}
  for _ = 1, n do
    local name, dtype, nd
    name, dtype, nd, pos = string.unpack("<s2s1B", data, pos)
    local shape, count = {}, 1
    for i = 1, nd do
      shape[i], pos = string.unpack("<i8", data, pos)
      count = count * shape[i]
    end
    local size = ({float32 = 4, float64 = 8, bfloat16 = 2, int32 = 4})[dtype]
    if not size then return nil, path .. ": unknown dtype '" .. dtype .. "' for " .. name end
    local bytes = data:sub(pos, pos + count * size - 1)
    if #bytes ~= count * size then return nil, path .. ": truncated at tensor '" .. name .. "'" end
    pos = pos + count * size
    sd[name] = sr.frombytes(bytes, dtype, shape, opts)
  end
  return sd
end

function Module:save(path) return nn.save(path, self:state_dict()) end

function Module:load(path)
  local sd, err = nn.load(path)
  if not sd then return nil, err end
  return self:load_state_dict(sd)
end

-- Layers ---------------------------------------------------------------------------------------

-- Linear(in, out [, {bias=true, dtype=, device=, std=}]): y = x W^T + b; W [out, in]
local Linear = nn.class("Linear")
nn.Linear = Linear
function Linear:init(n_in, n_out, opts)
  opts = opts or {}
  local o = {dtype = opts.dtype, device = opts.device}
  local bound = 1 / math.sqrt(n_in)
  local w = sr.empty(n_out, n_in, o)
  if opts.std then w:normal_(0, opts.std) else w:uniform_(-bound, bound) end
  self:param("weight", w)
  if opts.bias ~= false then
    local b = sr.empty(n_out, o)
    if opts.std then b:zero_() else b:uniform_(-bound, bound) end
    self:param("bias", b)
  end
end
function Linear:forward(x) return F.linear(x, self.weight, self.bias) end

-- Embedding(num, dim [, {std=1, dtype=, device=}]); forward(idx int32) -> [..., dim]
local Embedding = nn.class("Embedding")
nn.Embedding = Embedding
function Embedding:init(num, dim, opts)
  opts = opts or {}
  self:param("weight", sr.empty(num, dim, {dtype = opts.dtype, device = opts.device}):normal_(0, opts.std or 1))
end
function Embedding:forward(idx) return F.embedding(idx, self.weight) end

-- LayerNorm(dim [, {eps=1e-5, bias=true}])
local LayerNorm = nn.class("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:init(dim, opts)
  opts = opts or {}
  self.eps = opts.eps or 1e-5
  local o = {dtype = opts.dtype, device = opts.device}
  self:param("weight", sr.ones(dim, o))
  if opts.bias ~= false then self:param("bias", sr.zeros(dim, o)) end
end
function LayerNorm:forward(x) return F.layer_norm(x, self.weight, self.bias, self.eps) end

-- RMSNorm(dim [, {eps=1e-6, weight=true}])
local RMSNorm = nn.class("RMSNorm")
nn.RMSNorm = RMSNorm
function RMSNorm:init(dim, opts)
  opts = opts or {}
  self.eps = opts.eps or 1e-6
  if opts.weight ~= false then self:param("weight", sr.ones(dim, {dtype = opts.dtype, device = opts.device})) end
end
function RMSNorm:forward(x) return F.rms_norm(x, self.weight, self.eps) end

return nn
