-- `data prepare --corpus large`: default + Jane Austen (r-cran-janeaustenr), the Treasury of David
-- (sword-comm-tdavid) and the World English Bible (sword-text-web), from Debian packages.
-- The readers themselves are tested on synthetic inputs by test_data_debian (always). The full
-- prepare fetches about 10.7 MB of .deb files with `apt-get download` (kept in
-- $SPEEDRUN_TEST_TMP/data_large/debian between runs) and needs dpkg and mod2imp (libsword-utils):
-- it runs only with SPEEDRUN_TEST_LARGE=1 and is skipped (77) otherwise or when a tool is missing.
local T = require "speedrun.testing"
local tokenizer = require "speedrun.tokenizer"
local data = require "speedrun.data"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/data_large"

T.case("the corpus list names large", function()
  local none, msg = data.prepare{corpus = "huge", out = tmp}
  T.eq(none, nil); T.ok(msg:find("tiny, default or large", 1, true), msg)
end)

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end

if os.getenv("SPEEDRUN_TEST_LARGE") ~= "1" then
  T.skip("the large corpus prepare runs only with SPEEDRUN_TEST_LARGE=1 (it downloads 10.7 MB of Debian packages)")
end
for _, cmd in ipairs{"dpkg", "mod2imp"} do
  if not have(cmd) then T.skip(cmd .. " not found (apt-get install dpkg libsword-utils)") end
end
local tok, why = tokenizer.load()
if not tok then T.skip("GPT-2 files missing (run `npm ci` in the checkout): " .. why) end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

os.execute("mkdir -p '" .. tmp .. "' && rm -rf '" .. tmp .. "/large'")   -- keeps debian/ (the .debs)

T.case("data prepare --corpus large: sources, licences, counts, idempotence", function()
  local have_debs = io.open(tmp .. "/debian/sword-text-web_426.0-1_all.deb", "rb")
  if have_debs then have_debs:close() elseif not have("apt-get") then T.skip("no apt-get to fetch the .debs") end
  -- whole documents (the counts below; `large` is cut in pieces unless told: test_data_lua)
  local ok, made = data.prepare{corpus = "large", out = tmp, piece_bytes = 0}
  T.ok(ok, made); T.eq(made, true)
  local m = slurp(tmp .. "/large/manifest.json")
  for _, src in ipairs{
    {"moby_dick", 135, 317354}, {"state_of_the_union", 233, 2074281}, {"jane_austen", 269, 992801},
    {"treasury_of_david", 792, 2760146}, {"world_english_bible", 1389, 1251147}} do
    local block = m:match('"name":%s*"' .. src[1] .. '"(.-)}')
    T.ok(block, "source " .. src[1])
    T.ok(block:find('"licence":%s*"[^"]*public domain'), src[1] .. " licence")
    T.eq(tonumber(block:match('"documents":%s*(%d+)')), src[2], src[1] .. " documents")
    T.eq(tonumber(block:match('"tokens":%s*(%d+)')), src[3], src[1] .. " tokens")
  end
  T.ok(m:find('"origin":%s*"Debian sword%-text%-web 426%.0%-1'), "origin names the package and version")
  local train = assert(data.open_shard(tmp .. "/large/large_train_000001.bin"))
  local val = assert(data.open_shard(tmp .. "/large/large_val_000000.bin"))
  T.eq(#train, 6572560, "train tokens"); T.eq(#val, 823169, "val tokens")
  -- validation holds whole books of the Bible (book 5 = Joshua) and whole psalms (5, 15, ...)
  local v = tok:decode(val:tensor(1, #val))
  T.ok(v:find("<|endoftext|>The Book of Joshua\nNow after the death of Moses", 1, true), "Joshua 1 in val")
  T.ok(not v:find("<|endoftext|>In the beginning, God created", 1, true), "Genesis 1 is not in val")
  train:close(); val:close()
  ok, made = data.prepare{corpus = "large", out = tmp, piece_bytes = 0}
  T.ok(ok, made); T.eq(made, false, "second run does nothing")
  T.eq(data.command("prepare", "--corpus", "large", "--out", tmp, "--piece-bytes", "0"), 0)
  T.ok(data.files("large", "train"):find("large/large_train_%*%.bin$"), data.files("large", "train"))
end)

T.done()
