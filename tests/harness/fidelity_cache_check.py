#!/usr/bin/env python3
"""fidelity_cache_check.py: torch_side.py's compile-cache parts (no torch; a stand-in module).

    python3 fidelity_cache_check.py TMPDIR
save_cache writes 40 MiB of artifacts (half random, half repeated) as xz parts of at most 15 MiB;
read_caches joins them back from FID_COMPILE_CACHE_FROM byte for byte, reads a plain record_N.bin,
leaves out a set with a part missing (compiled as if absent), reads sets 0 and K in order and names
the next index; a save after loading writes nothing when the artifacts are the loaded ones again
(within 1 %); a SIGTERM (a time limit) saves the artifacts made so far and exits 143
(keep_on_term), and tasks/fidelity/waited.sh holds its caller's `timeout` until that save is done
(run as a child of it: `fidelity_cache_check.py TMPDIR --child`). Prints "cache ok".
"""
import os
import random
import signal
import subprocess
import sys
import time
import types

tmp = sys.argv[1]
fake = types.ModuleType("torch")   # what torch_side's imports (convert.py) touch at load time
for name in ("float32", "float64", "bfloat16", "float16", "int32", "int64", "uint16", "int8", "uint8"):
    setattr(fake, name, name)
art = random.Random(7).randbytes(20 << 20) + b"artifact" * (20 << 17)   # the --child's too
fake.compiler = types.SimpleNamespace(save_cache_artifacts=lambda: (art, None))
sys.modules["torch"] = fake
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tasks", "fidelity"))
import torch_side  # noqa: E402

if sys.argv[2:] == ["--child"]:   # a PyTorch side that a time limit stops while it compiles
    torch_side.keep_on_term(torch_side.mega_cache_path(21))
    time.sleep(60)
    sys.exit(0)

out, back, plain = (os.path.join(tmp, d) for d in ("out", "back", "plain"))
os.environ["FID_COMPILE_CACHE"] = out
torch_side.save_cache(torch_side.mega_cache_path(15))
parts = sorted(os.listdir(out))
sizes = [os.path.getsize(os.path.join(out, p)) for p in parts]
assert parts == ["record_15.bin.xz.00", "record_15.bin.xz.01"], parts
assert max(sizes) <= 15 << 20, sizes
os.rename(out, back)                       # carried to the next call: read from there, not DIR
os.environ["FID_COMPILE_CACHE_FROM"] = back
sets, nxt = torch_side.read_caches(15)
assert len(sets) == 1 and sets[0][1] == art and sets[0][0].startswith(back) and nxt == 1, (len(sets), nxt)
assert torch_side.read_caches(14) == ([], 0)
os.makedirs(plain)
open(os.path.join(plain, "record_14.bin"), "wb").write(b"plain")
os.environ["FID_COMPILE_CACHE"] = plain
assert torch_side.read_caches(14)[0][0][1] == b"plain"
# a second set (a run that had loaded set 0) beside the first: both, in order; the next is 2
assert torch_side.mega_cache_path(15, 1).endswith("record_15.1.bin")
open(os.path.join(back, "record_15.1.bin"), "wb").write(b"second")
sets, nxt = torch_side.read_caches(15)
assert [len(b) for _, b in sets] == [len(art), 6] and nxt == 2, ([len(b) for _, b in sets], nxt)
# the loaded artifacts again (within 1 %): nothing written
again = os.path.join(tmp, "again")
os.environ["FID_COMPILE_CACHE"] = again
torch_side.save_cache(torch_side.mega_cache_path(15, 2), len(art) + 1000)
assert not os.path.exists(again) or not os.listdir(again), "the same artifacts written again"
torch_side.save_cache(torch_side.mega_cache_path(15, 2), len(art) // 2)
assert sorted(os.listdir(again))[0] == "record_15.2.bin.xz.00", os.listdir(again)
os.remove(os.path.join(back, "record_15.bin.xz.01"))
sets, nxt = torch_side.read_caches(15)
assert [b for _, b in sets] == [b"second"] and nxt == 2, "a cut set of parts is left out"
# a run stopped by its time limit keeps what it compiled
term = os.path.join(tmp, "term")
os.environ["FID_COMPILE_CACHE"] = term
pid = os.fork()
if pid == 0:
    torch_side.keep_on_term(torch_side.mega_cache_path(20))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 143, status
os.environ["FID_COMPILE_CACHE_FROM"] = term
assert torch_side.read_caches(20)[0][0][1] == art, "the artifacts saved on SIGTERM"
# through waited.sh (as run.sh runs torch_side.py) under a 1-s `timeout`: the artifacts are
# there when timeout returns (without waited.sh's wait the shell dies at once and they come later)
waited = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tasks", "fidelity", "waited.sh")
os.environ["FID_COMPILE_CACHE"] = os.path.join(tmp, "waited")
os.environ.pop("FID_COMPILE_CACHE_FROM")
r = subprocess.run(["timeout", "1", "bash", waited, sys.executable, os.path.abspath(__file__), tmp, "--child"])
assert r.returncode == 124, r.returncode
assert torch_side.read_caches(21)[0][0][1] == art, "the artifacts saved before the time limit's timeout returned"
print("cache ok")
