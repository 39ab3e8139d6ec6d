-- speedrun.agent.report: `speedrun agent report DIR` -> DIR/report.html (one self-contained page:
-- the version tree as inline SVG, node colour by status and radius by speed-up over v_0; per node
-- its hypothesis, metrics, outcome summary and the diff of its files against the parent's; the
-- best node's FSR) and DIR/summary.json. docs/agent.md "Report".
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local loop = require "speedrun.agent.loop"

local M = {}
local fmt = string.format
local null = json.null

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"))
end

local function num(v) return type(v) == "number" and v or nil end

local function lines(s)
  local out = {}
  for l in ((s or "") .. (s and s:sub(-1) ~= "\n" and "\n" or "")):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- a unified-style line diff (LCS); long files fall back to a note
function M.diff(a, b)
  local A, B = lines(a), lines(b)
  if #A * #B > 4e6 then return {{" ", "(files too large to diff)"}} end
  local L = {}
  for i = #A + 1, 1, -1 do
    L[i] = {}
    for j = #B + 1, 1, -1 do
      if i > #A or j > #B then L[i][j] = 0
      elseif A[i] == B[j] then L[i][j] = L[i + 1][j + 1] + 1
      else L[i][j] = math.max(L[i + 1][j], L[i][j + 1]) end
    end
  end
  local out, i, j = {}, 1, 1
  while i <= #A or j <= #B do
    if i <= #A and j <= #B and A[i] == B[j] then out[#out + 1] = {" ", A[i]} i, j = i + 1, j + 1
    elseif j <= #B and (i > #A or L[i][j + 1] >= L[i + 1][j]) then out[#out + 1] = {"+", B[j]} j = j + 1
    else out[#out + 1] = {"-", A[i]} i = i + 1 end
  end
  return out
end

-- the changed lines with 2 lines of context, as HTML
local function diff_html(a, b)
  local d = M.diff(a, b)
  local keep, out = {}, {}
  for k, e in ipairs(d) do
    if e[1] ~= " " then for q = k - 2, k + 2 do keep[q] = true end end
  end
  local gap = false
  for k, e in ipairs(d) do
    if keep[k] then
      local cls = e[1] == "+" and "add" or e[1] == "-" and "del" or "ctx"
      out[#out + 1] = fmt('<span class="%s">%s %s</span>', cls, e[1], esc(e[2]))
      gap = false
    elseif not gap then out[#out + 1] = '<span class="gap">...</span>' gap = true end
  end
  return #out > 0 and table.concat(out, "\n") or "(no change)"
end

local function files_diff(J, n)
  if n.id == 0 then return "(the task's start workspace)" end
  local mine, theirs = journal.code_files(J:workspace(n.id)), journal.code_files(J:workspace(n.meta.parent))
  local names, seen = {}, {}
  for k in pairs(mine) do names[#names + 1] = k seen[k] = true end
  for k in pairs(theirs) do if not seen[k] then names[#names + 1] = k end end
  table.sort(names)
  local out = {}
  for _, f in ipairs(names) do
    if mine[f] ~= theirs[f] then out[#out + 1] = "<b>" .. esc(f) .. "</b>\n" .. diff_html(theirs[f], mine[f]) end
  end
  return #out > 0 and table.concat(out, "\n") or "(no change)"
end

local COLOURS = {valid = "#2e9d4a", invalid = "#e0a526", timeout = "#8e44ad", no_edit = "#999999",
                 coder_error = "#666666", rejected = "#c0392b"}
local function colour(status) return COLOURS[status] or "#e74c3c" end

-- layout: depth -> y, leaves in order -> x; parents centred over their children
local function layout(J)
  local pos, nextx = {}, 0
  local function place(id, depth)
    local kids = J.nodes[id].meta.children or {}
    if #kids == 0 then pos[id] = {x = nextx, y = depth} nextx = nextx + 1 return end
    for _, c in ipairs(kids) do place(c, depth + 1) end
    pos[id] = {x = (pos[kids[1]].x + pos[kids[#kids]].x) / 2, y = depth}
  end
  place(0, 0)
  return pos, math.max(nextx, 1)
end

local function speedup(J, n)
  local t0 = J.nodes[0].results and num(J.nodes[0].results.metrics.train_time_ms)
  local t = n.results and not journal.buggy(n) and num(n.results.metrics.train_time_ms)
  return (t0 and t and t > 0) and t0 / t or nil
end

function M.svg(J)
  local pos, width = layout(J)
  local depth = 0
  for _, p in pairs(pos) do depth = math.max(depth, p.y) end
  local W, Hh = 80 * width + 40, 80 * (depth + 1) + 20
  local out = {fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">', W, Hh, W, Hh)}
  local function xy(id) return 40 + 80 * pos[id].x, 40 + 80 * pos[id].y end
  for _, n in ipairs(J:list()) do
    if n.id > 0 and pos[n.meta.parent] then
      local x1, y1 = xy(n.meta.parent)
      local x2, y2 = xy(n.id)
      out[#out + 1] = fmt('<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888" stroke-width="1.5"/>', x1, y1, x2, y2)
    end
  end
  for _, n in ipairs(J:list()) do
    if pos[n.id] then
      local x, y = xy(n.id)
      local s = speedup(J, n)
      local r = 10 + math.min(16, math.max(0, ((s or 1) - 1) * 20))
      local status = n.results and n.results.status or "pending"
      out[#out + 1] = fmt('<a href="#node-%d"><circle id="svg-node-%d" cx="%.0f" cy="%.0f" r="%.1f" fill="%s"><title>v_%d %s%s</title></circle>'
        .. '<text x="%.0f" y="%.0f" font-size="11" text-anchor="middle">v_%d</text></a>', n.id, n.id, x, y, r,
        colour(status), n.id, esc(status), s and fmt(" x%.2f", s) or "", x, y + r + 12, n.id)
    end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

local function metric(v, f) return num(v) and fmt(f, v) or "-" end

local function node_html(J, n)
  local r = n.results or {}
  local m = r.metrics or {}
  return table.concat({
    fmt('<section class="node" id="node-%d"><h3>v_%d <small>%s, parent %s, %s</small></h3>', n.id, n.id,
        esc(n.meta.kind or "?"), n.id == 0 and "-" or ("v_" .. tostring(n.meta.parent)), esc(r.status or "pending")),
    fmt("<p><b>Hypothesis:</b> %s</p>", esc(r.hypothesis or "")),
    fmt("<table><tr><th>val_loss</th><th>train_time_ms</th><th>valid</th><th>FSR</th><th>bug depth</th><th>run s</th></tr>"
        .. "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr></table>",
        metric(m.val_loss, "%.4f"), metric(m.train_time_ms, "%.0f"), tostring(m.is_valid == true), metric(m.fsr, "%.3f"),
        tostring(n.meta.bug_depth), metric(r.run_seconds, "%.1f")),
    fmt("<details><summary>Outcome summary</summary><pre>%s</pre></details>", esc(r.outcome_summary or "")),
    fmt("<details><summary>Diff against the parent</summary><pre>%s</pre></details>", files_diff(J, n)),
    "</section>"}, "\n")
end

-- summary.json's table
function M.summary(J)
  local best = loop.best(J)
  local counts = {}
  for _, n in ipairs(J:list()) do
    local s = n.results and n.results.status or "pending"
    counts[s] = (counts[s] or 0) + 1
  end
  local bm = best.results and best.results.metrics or {}
  local nodes = {}
  for _, n in ipairs(J:list()) do
    local r = n.results or {}
    nodes[#nodes + 1] = {id = n.id, parent = n.meta.parent, kind = n.meta.kind, status = r.status or "pending",
                         metrics = r.metrics or null, bug_depth = n.meta.bug_depth}
  end
  return {schema = "speedrun.agent.summary/1", task = J.config.task, scale = J.config.scale, model = J.config.model or null,
          scaffold = J.config.scaffold, seed = J.config.seed, nodes = nodes, counts = counts, best = {id = best.id,
          train_time_ms = bm.train_time_ms or null, val_loss = bm.val_loss or null, fsr = bm.fsr or null,
          is_valid = bm.is_valid == true}, state = J.state}
end

local CSS = [[body{font-family:sans-serif;margin:2em;max-width:1100px}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}
.add{color:#1a7f37}.del{color:#c0392b}.gap{color:#999}.node{border-top:1px solid #ddd;margin-top:1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}]]

function M.html(J)
  local S = M.summary(J)
  local st = J.state
  local parts = {"<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"/>',
    fmt("<title>speedrun agent: task %s</title><style>%s</style></head><body>", esc(J.config.task), CSS),
    fmt("<h1>speedrun agent run: task %s at %s scale</h1>", esc(J.config.task), esc(J.config.scale)),
    fmt("<p>Model %s, scaffold %s, seed %s. Nodes %d; tokens %d; GPU seconds %.1f; wall seconds %.0f; stopped: %s.</p>",
        esc(J.config.model or "-"), esc(J.config.scaffold), esc(J.config.seed), J:count(), st.total_tokens or 0,
        st.gpu_seconds or 0, st.wall_seconds or 0, esc(type(st.stopped) == "table" and st.stopped.reason or "no")),
    fmt('<p id="best">Best node: <a href="#node-%d">v_%d</a>, train time %s ms, val loss %s, FSR %s.</p>', S.best.id,
        S.best.id, metric(S.best.train_time_ms, "%.0f"), metric(S.best.val_loss, "%.4f"), metric(S.best.fsr, "%.3f")),
    "<h2>Version tree</h2>", M.svg(J), "<h2>Nodes</h2>"}
  for _, n in ipairs(J:list()) do parts[#parts + 1] = node_html(J, n) end
  parts[#parts + 1] = "</body></html>"
  return table.concat(parts, "\n") .. "\n", S
end

-- writes DIR/report.html and DIR/summary.json; returns their paths
function M.write(dir)
  local J, err = journal.open(dir, true)
  if not J then return nil, err end
  local html, S = M.html(J)
  journal.write_atomic(dir .. "/report.html", html)
  journal.write_json(dir .. "/summary.json", S)
  return dir .. "/report.html", dir .. "/summary.json"
end

-- the end of a run that stopped for `reason`: the report written, and the closing line that
-- `speedrun agent run` / `resume` print (a sweep writes it for a cell whose process died first)
function M.finish(dir, reason)
  local html = M.write(dir)
  return string.format("agent run in %s stopped: %s; report: %s", dir, reason, tostring(html))
end

return M
