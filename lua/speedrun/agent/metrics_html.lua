-- speedrun.agent.metrics_html: a study's page (docs/agent.md "Reading a study"): one
-- self-contained HTML file, plots as inline SVG (no scripts): median / IQM / mean of FSR with
-- their bootstrap CIs by hint regime, scaffold and model; the top-3 mean +- SEM per configuration;
-- the FSR heat map task x hint regime; node outcomes as stacked bars; then the tables.
local M = {}
local fmt = string.format

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"))
end

local function f3(v) return type(v) == "number" and fmt("%.3f", v) or "-" end

local STAT_COLOURS = {median = "#4c72b0", iqm = "#dd8452", mean = "#55a868"}
local STATS = {"median", "iqm", "mean"}

-- y axis: 0 .. top, gridlines every quarter; returns the y mapping
local function axis(out, x0, y0, w, h, top, label)
  local function Y(v) return y0 + h - h * math.max(0, math.min(v, top)) / top end
  for i = 0, 4 do
    local v = top * i / 4
    out[#out + 1] = fmt('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>', x0, Y(v), x0 + w, Y(v))
    out[#out + 1] = fmt('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%.2f</text>', x0 - 4, Y(v) + 3, v)
  end
  out[#out + 1] = fmt('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>', x0, y0 + h, x0 + w, y0 + h)
  out[#out + 1] = fmt('<text x="12" y="%d" font-size="11" transform="rotate(-90 12 %d)" text-anchor="middle">%s</text>',
    y0 + h // 2, y0 + h // 2, esc(label))
  return Y
end

local function top_of(vals)
  local top = 1
  for _, v in ipairs(vals) do if type(v) == "number" and v > top then top = v end end
  return math.ceil(top * 4) / 4
end

-- bars of groups: groups = {{label, bars = {{value, lo, hi, colour, title}}}}
function M.bars(groups, opts)
  opts = opts or {}
  local nb = 0
  local vals = {}
  for _, g in ipairs(groups) do
    nb = math.max(nb, #g.bars)
    for _, b in ipairs(g.bars) do vals[#vals + 1] = b.hi or b.value end
  end
  local bw, gap = 18, 22
  local gw = nb * bw + gap
  local x0, y0, h = 90, 20, 200
  local W = math.max(300, x0 + gw * #groups + 20)
  local Hh = y0 + h + 70
  local out = {fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">', W, Hh)}
  local top = top_of(vals)
  local Y = axis(out, x0, y0, W - x0 - 10, h, top, opts.ylabel or "FSR")
  for gi, g in ipairs(groups) do
    local gx = x0 + gap / 2 + (gi - 1) * gw
    for bi, b in ipairs(g.bars) do
      local x = gx + (bi - 1) * bw
      if type(b.value) == "number" then
        out[#out + 1] = fmt('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s</title></rect>', x,
          Y(b.value), bw - 2, y0 + h - Y(b.value), b.colour or "#4c72b0", esc(b.title or f3(b.value)))
      end
      if type(b.lo) == "number" and type(b.hi) == "number" then
        local cx = x + (bw - 2) / 2
        out[#out + 1] = fmt('<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="#222" fill="none"/>',
          cx, Y(b.lo), Y(b.hi), cx - 4, Y(b.lo), cx + 4, cx - 4, Y(b.hi), cx + 4)
      end
    end
    local lx = gx + nb * bw / 2
    out[#out + 1] = fmt('<text x="%.1f" y="%d" font-size="10" text-anchor="end" transform="rotate(-30 %.1f %d)">%s</text>',
      lx, y0 + h + 14, lx, y0 + h + 14, esc(g.label))
  end
  if opts.legend then
    local lx = x0 + 10
    for _, l in ipairs(opts.legend) do
      out[#out + 1] = fmt('<rect x="%d" y="4" width="10" height="10" fill="%s"/><text x="%d" y="13" font-size="11">%s</text>',
        lx, l[2], lx + 14, esc(l[1]))
      lx = lx + 20 + 7 * #l[1]
    end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- median / IQM / mean with CIs for each level of a factor
function M.interval_plot(entries)
  local groups = {}
  for _, e in ipairs(entries) do
    local g = {label = tostring(e.level), bars = {}}
    for _, s in ipairs(STATS) do
      local c = e[s]
      g.bars[#g.bars + 1] = {value = c.estimate, lo = c.lo, hi = c.hi, colour = STAT_COLOURS[s],
                             title = fmt("%s %s: %s [%s, %s]", e.level, s, f3(c.estimate), f3(c.lo), f3(c.hi))}
    end
    groups[#groups + 1] = g
  end
  return M.bars(groups, {legend = {{"median", STAT_COLOURS.median}, {"IQM", STAT_COLOURS.iqm}, {"mean", STAT_COLOURS.mean}}})
end

-- top-3 mean +- SEM per configuration
function M.config_plot(configs)
  local groups = {}
  for _, c in ipairs(configs) do
    local label = fmt("%s / %s / %s", c.hint, c.scaffold, c.model)
    groups[#groups + 1] = {label = label, bars = {{value = c.mean, lo = c.mean - c.sem, hi = c.mean + c.sem,
      colour = "#8172b3", title = fmt("%s: %.3f +- %.3f", label, c.mean, c.sem)}}}
  end
  return M.bars(groups, {ylabel = "mean FSR (top 3)"})
end

-- white (0) to green (1 and above)
local function shade(v)
  local t = math.max(0, math.min(1, v))
  local r = math.floor(255 - t * (255 - 26) + 0.5)
  local g = math.floor(255 - t * (255 - 152) + 0.5)
  local b = math.floor(255 - t * (255 - 80) + 0.5)
  return fmt("#%02x%02x%02x", r, g, b)
end

function M.heat_map(heat)
  local cw, ch, x0, y0 = 70, 26, 60, 40
  local W, Hh = math.max(340, x0 + cw * #heat.regimes + 20), y0 + ch * #heat.tasks + 20
  local out = {fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">', W, Hh)}
  out[#out + 1] = '<text x="4" y="14" font-size="11">task \\ hint regime (mean of the top-3 FSRs)</text>'
  for j, r in ipairs(heat.regimes) do
    out[#out + 1] = fmt('<text x="%d" y="%d" font-size="11" text-anchor="middle">%s</text>', x0 + (j - 0.5) * cw, y0 - 6, esc(r))
  end
  for i, t in ipairs(heat.tasks) do
    local y = y0 + (i - 1) * ch
    out[#out + 1] = fmt('<text x="%d" y="%d" font-size="11" text-anchor="end">task %s</text>', x0 - 6, y + 17, esc(t))
    for j, r in ipairs(heat.regimes) do
      local v = heat.get(t, r)
      local x = x0 + (j - 1) * cw
      out[#out + 1] = fmt('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#fff"><title>task %s, %s: %s</title></rect>',
        x, y, cw, ch, v and shade(v) or "#f0f0f0", esc(t), esc(r), f3(v))
      out[#out + 1] = fmt('<text x="%d" y="%d" font-size="11" text-anchor="middle">%s</text>', x + cw // 2, y + 17, f3(v))
    end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- node outcomes (buggy / no improvement / improved) as one stacked bar per level
function M.node_plot(entries)
  local x0, y0, bh, w = 110, 24, 20, 420
  local Hh = y0 + (bh + 8) * #entries + 10
  local out = {fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">', x0 + w + 20, Hh)}
  local parts = {{"buggy", "#c44e52"}, {"no_improvement", "#aaaaaa"}, {"improved", "#55a868"}}
  local lx = x0
  for _, p in ipairs(parts) do
    out[#out + 1] = fmt('<rect x="%d" y="4" width="10" height="10" fill="%s"/><text x="%d" y="13" font-size="11">%s</text>',
      lx, p[2], lx + 14, p[1]:gsub("_", " "))
    lx = lx + 120
  end
  for i, e in ipairs(entries) do
    local y, x = y0 + (i - 1) * (bh + 8), x0
    out[#out + 1] = fmt('<text x="%d" y="%d" font-size="11" text-anchor="end">%s (%d)</text>', x0 - 6, y + 14,
      esc(e.level), e.nodes)
    for _, p in ipairs(parts) do
      local wd = w * e.frac[p[1]]
      out[#out + 1] = fmt('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %.3f</title></rect>', x, y,
        wd, bh, p[2], p[1], e.frac[p[1]])
      x = x + wd
    end
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

local function html_table(header, rows)
  local out = {"<table><tr>"}
  for _, h in ipairs(header) do out[#out + 1] = "<th>" .. esc(h) .. "</th>" end
  out[#out + 1] = "</tr>"
  for _, r in ipairs(rows) do
    out[#out + 1] = "<tr>"
    for _, c in ipairs(r) do out[#out + 1] = "<td>" .. esc(c) .. "</td>" end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

local function ci(c) return c.estimate and fmt("%.3f [%.3f, %.3f]", c.estimate, c.lo, c.hi) or "-" end

local CSS = [[body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}th{background:#f3f3f3}.plots{display:flex;flex-wrap:wrap;gap:2em}
h3{margin-bottom:.2em}.note{color:#555;font-size:13px}]]

local TITLES = {hint = "By hint regime", scaffold = "By scaffold", model = "By model", all = "All runs"}

function M.page(R, title)
  local p = {"<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"/>',
    fmt("<title>%s</title><style>%s</style></head><body>", esc(title or "speedrun agent metrics"), CSS),
    fmt("<h1>%s</h1>", esc(title or "speedrun agent metrics")),
    fmt('<p class="note">%d runs, %d configurations. FSR per run by the benchmark\'s rules (threshold 3.29 at full '
      .. 'scale, else the scale\'s target; 0 when no node is valid or outside [0, 3]; task 6 dropped). Intervals: %d%% '
      .. 'percentile stratified bootstrap, %d reps, seed %d, over the top-3 scores of each (task, configuration).</p>',
      #R.runs, #R.configs, math.floor((R.opts.level or 0.95) * 100 + 0.5), R.opts.reps, R.opts.seed),
    fmt('<p class="note">Cells by status: %s.</p>', esc(require("speedrun.agent.metrics_out").statuses(R))),
    "<h2>FSR: median, IQM and mean with 95% CIs</h2>", '<div class="plots">'}
  for _, f in ipairs {"hint", "scaffold", "model"} do
    p[#p + 1] = fmt("<div><h3>%s</h3>%s</div>", TITLES[f], M.interval_plot(R.intervals[f]))
  end
  p[#p + 1] = "</div><h2>FSR per task and hint regime</h2>" .. M.heat_map(R.heat)
  p[#p + 1] = "<h2>Top-3 mean FSR per configuration (+- SEM over tasks)</h2>" .. M.config_plot(R.configs)
  p[#p + 1] = '<h2>Node outcomes</h2><div class="plots">'
  for _, f in ipairs {"hint", "scaffold", "model"} do
    p[#p + 1] = fmt("<div><h3>%s</h3>%s</div>", TITLES[f], M.node_plot(R.node_types[f]))
  end
  local fk = {}
  for _, e in ipairs(R.first_k) do
    if e.types then fk[#fk + 1] = {frac = e.types.frac, nodes = e.types.nodes, level = "first " .. e.k} end
  end
  p[#p + 1] = "<div><h3>Among each run's first k nodes</h3>" .. M.node_plot(fk) .. "</div>"
  p[#p + 1] = "</div><h2>Tables</h2><h3>Intervals</h3>"
  local rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for _, e in ipairs(R.intervals[f]) do
      rows[#rows + 1] = {f, tostring(e.level), tostring(e.n_scores), ci(e.median), ci(e.iqm), ci(e.mean), ci(e.optimality_gap)}
    end
  end
  p[#p + 1] = html_table({"factor", "level", "scores", "median", "IQM", "mean", "optimality gap"}, rows)
  rows = {}
  for _, c in ipairs(R.configs) do
    rows[#rows + 1] = {c.hint, c.scaffold, c.model, tostring(c.n_tasks), tostring(c.n_runs), f3(c.positions[1]),
                       f3(c.positions[2]), f3(c.positions[3]), fmt("%.3f +- %.3f", c.mean, c.sem)}
  end
  p[#p + 1] = "<h3>Configurations (top-3 aggregation)</h3>"
    .. html_table({"hint", "scaffold", "model", "tasks", "runs", "top1", "top2", "top3", "mean FSR"}, rows)
  rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for i, e in ipairs(R.judge[f]) do
      local s = R.similarity[f][i]
      rows[#rows + 1] = {f, tostring(e.level), tostring(e.n), e.mean and fmt("%.3f +- %s", e.mean, f3(e.sem)) or "-",
                         tostring(s.n), s.mean and fmt("%.3f +- %s", s.mean, f3(s.sem)) or "-"}
    end
  end
  p[#p + 1] = "<h3>LLM judge and code similarity</h3>"
    .. html_table({"factor", "level", "judged", "reproducibility score", "runs", "token similarity"}, rows)
  rows = {}
  for _, r in ipairs(R.runs) do
    rows[#rows + 1] = {tostring(r.task), r.hint, r.scaffold, r.model, tostring(r.seed), f3(r.fsr), f3(r.raw), r.reason,
                       r.agent_best_id and ("v_" .. r.agent_best_id) or "-", f3(r.judge), r.judge_error or "",
                       f3(r.similarity)}
  end
  p[#p + 1] = "<h3>Runs</h3>" .. html_table({"task", "hint", "scaffold", "model", "seed", "FSR", "raw", "why", "best node",
                                             "judge", "judge error", "similarity"}, rows)
  if #R.warnings > 0 then
    rows = {}
    for _, w in ipairs(R.warnings) do rows[#rows + 1] = {w} end
    p[#p + 1] = "<h3>Warnings</h3>" .. html_table({"warning"}, rows)
  end
  p[#p + 1] = "</body></html>"
  return table.concat(p, "\n") .. "\n"
end

return M
