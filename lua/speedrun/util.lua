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

-- a copy of a table and of every table inside it (no cycles, metatables not copied)
function util.deepcopy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = util.deepcopy(v) end
  return c
end

return util
