-- speedrun.harness.svg: the loss curve of a run as a standalone SVG: two panels, loss against
-- training time and loss against tokens; training loss as a line, validation loss as dots joined
-- by a line, the target as a dashed line.
local M = {}
local fmt = string.format

local function esc(s) return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end

local function nice(v)
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 1e9 then return fmt("%.3gG", v / 1e9) end
  if a >= 1e6 then return fmt("%.3gM", v / 1e6) end
  if a >= 1e3 then return fmt("%.3gk", v / 1e3) end
  return fmt("%.3g", v)
end

local function panel(out, x0, y0, w, h, train, val, xkey, xlabel, ylo, yhi, target)
  local xmax = 0
  for _, p in ipairs(train) do if p[xkey] > xmax then xmax = p[xkey] end end
  for _, p in ipairs(val) do if p[xkey] > xmax then xmax = p[xkey] end end
  if xmax <= 0 then xmax = 1 end
  local function X(v) return x0 + w * v / xmax end
  local function Y(v) return y0 + h - h * (v - ylo) / (yhi - ylo) end
  out[#out + 1] = fmt('<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>', x0, y0, w, h)
  for i = 0, 4 do
    local yv = ylo + (yhi - ylo) * i / 4
    local xv = xmax * i / 4
    out[#out + 1] = fmt('<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#eee"/>', x0, Y(yv), x0 + w, Y(yv))
    out[#out + 1] = fmt('<text x="%g" y="%.1f" font-size="10" text-anchor="end">%s</text>', x0 - 4, Y(yv) + 3, fmt("%.2f", yv))
    out[#out + 1] = fmt('<text x="%.1f" y="%g" font-size="10" text-anchor="middle">%s</text>', X(xv), y0 + h + 14, nice(xv))
  end
  out[#out + 1] = fmt('<text x="%g" y="%g" font-size="11" text-anchor="middle">%s</text>', x0 + w / 2, y0 + h + 30, esc(xlabel))
  if target and target >= ylo and target <= yhi then
    out[#out + 1] = fmt('<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#c33" stroke-dasharray="4 3"/>', x0, Y(target), x0 + w, Y(target))
  end
  local function line(pts, color, key)
    local s = {}
    for _, p in ipairs(pts) do
      local v = p[key]
      if v and v == v then s[#s + 1] = fmt("%.1f,%.1f", X(p[xkey]), Y(math.max(ylo, math.min(yhi, v)))) end
    end
    if #s > 1 then out[#out + 1] = fmt('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', color, table.concat(s, " ")) end
  end
  line(train, "#1f77b4", "loss")
  line(val, "#ff7f0e", "val_loss")
  for _, p in ipairs(val) do
    local v = p.val_loss
    if v and v == v then
      out[#out + 1] = fmt('<circle cx="%.1f" cy="%.1f" r="3" fill="#ff7f0e"/>', X(p[xkey]), Y(math.max(ylo, math.min(yhi, v))))
    end
  end
end

-- write(path, {train = {{time_ms=, tokens=, loss=}...}, val = {{time_ms=, tokens=, val_loss=}...}, title=, target=})
function M.write(path, c)
  local lo, hi = math.huge, -math.huge
  local function see(v) if v and v == v and v ~= math.huge then lo = math.min(lo, v); hi = math.max(hi, v) end end
  for _, p in ipairs(c.train) do see(p.loss) end
  for _, p in ipairs(c.val) do see(p.val_loss) end
  see(c.target)
  if lo > hi then lo, hi = 0, 1 end
  if hi - lo < 1e-6 then hi = lo + 1 end
  local pad = (hi - lo) * 0.05
  lo, hi = lo - pad, hi + pad
  local W, Hh = 900, 360
  local out = {fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">', W, Hh),
               fmt('<rect width="%d" height="%d" fill="white"/>', W, Hh),
               fmt('<text x="%d" y="20" font-size="14" text-anchor="middle">%s</text>', W / 2, esc(c.title or "loss"))}
  panel(out, 60, 40, 360, 260, c.train, c.val, "time_ms", "training time (ms)", lo, hi, c.target)
  panel(out, 510, 40, 360, 260, c.train, c.val, "tokens", "tokens", lo, hi, c.target)
  out[#out + 1] = fmt('<text x="15" y="%d" font-size="11" transform="rotate(-90 15 %d)" text-anchor="middle">loss</text>', 170, 170)
  out[#out + 1] = '<g font-size="11"><line x1="640" y1="14" x2="660" y2="14" stroke="#1f77b4" stroke-width="2"/><text x="664" y="18">train</text>'
  out[#out + 1] = '<circle cx="710" cy="14" r="3" fill="#ff7f0e"/><text x="717" y="18">validation</text>'
  out[#out + 1] = '<line x1="785" y1="14" x2="805" y2="14" stroke="#c33" stroke-dasharray="4 3"/><text x="809" y="18">target</text></g>'
  out[#out + 1] = "</svg>\n"
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(table.concat(out, "\n"))
  f:close()
  return true
end

return M
