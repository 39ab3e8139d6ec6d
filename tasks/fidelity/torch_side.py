#!/usr/bin/env python3
"""torch_side.py: the PyTorch side of the fidelity comparison (README.md here).

Runs one benchmark record script (llm-speedrunner workspace_templates/nanogpt_speedrun/
record_N/train_gpt2.py, N = 1..21, given by path; nothing is fetched) in this process as a
single-GPU torchrun job (RANK 0 of WORLD_SIZE 1), starting from a speedrun weight file, and records:
  * the loss of every backward pass (one per micro-batch) for the first STEPS optimizer steps;
  * the token window of every training micro-batch: (shard index, start position), so the speedrun
    side can feed exactly the same tokens (this also reproduces the scripts' quirks, such as records
    4-17 using their first batch twice after train_loader.reset());
  * tokens/s over steps 11..STEPS (wall clock, CUDA-synchronised) and the peak of allocated GPU
    memory (torch.cuda.max_memory_allocated);
  * the start-up: seconds from the process's start to the end of step 1 (read when step 2's first
    backward begins, so one micro-batch's forward more; compilation included), first_step_s.

The script runs with the source patches of patches.py (printed when applied; a patch that does not
apply stops the run and names itself): the global batch follows --accum, the loaders record their
windows, the initial weights are loaded where the model is handed to DDP or broadcast.
torch.Tensor.backward is wrapped to record each micro-batch loss and to stop the run after
STEPS x ACCUM micro-batches. --no-compile replaces torch.compile by the identity, except for
flex_attention and create_block_mask (records 12+), which have no usable eager form at 64K tokens.

usage: torch_side.py --script train_gpt2.py --record N --weights init.srw --train-files GLOB
                     --val-files GLOB --steps 50 --accum 8 --out torch.json [--no-compile]
"""
import argparse
import contextlib
import faulthandler
import glob
import itertools
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert  # noqa: E402
import patches  # noqa: E402


class StopRun(Exception):
    pass


def seconds_since_start():
    """seconds since this process started (/proc/self/stat's start time against /proc/uptime): the
    interpreter's start and the imports count, as they do for a user; None without /proc"""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--record", type=int, required=True, help="the record number N of record_N/train_gpt2.py")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--train-files", required=True)
    ap.add_argument("--val-files", required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--accum", type=int, default=8,
                    help="micro-batches per optimizer step (8: the records' global batch; records 1-3 and 15: always 1)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-compile", action="store_true", help="replace torch.compile by the identity (not flex attention)")
    ap.add_argument("--experiment", action="append", default=[], help="an experiment patch of patches.py (e.g. rope_fp32)")
    return ap.parse_args()


def no_compile():
    """torch.compile made the identity, but for flex attention, which stays compiled: records 12+
    call it inside the compiled model (16-21: never compiled on its own), and eager flex attention
    materialises the whole score matrix (65,536^2 a head at full scale)"""
    real = torch.compile
    import torch.nn.attention.flex_attention as fa
    flex = real(fa.flex_attention, dynamic=False)
    fa.flex_attention = flex   # before the script's `from ... import flex_attention`
    # records 16-17 skip the compiled code's guards from step 5 (set_stance(skip_guard_eval_unsafe=
    # True)): safe for their whole compiled model, not for flex compiled alone, whose block mask's
    # mask_mod closes over each batch's document ids (suspected: record 16's eager side drifted from
    # step 5 to 0.35 above speedrun's losses by step 50, H100, 2026-12-06); kept guarded here
    real_stance = torch.compiler.set_stance

    def set_stance(*args, **kw):
        if kw.get("skip_guard_eval_unsafe"):
            return contextlib.nullcontext()
        return real_stance(*args, **kw)
    torch.compiler.set_stance = set_stance

    def compile_(m=None, *args, **kw):
        if m is None:
            return lambda f: compile_(f, *args, **kw)
        if m is flex:
            return m
        if getattr(m, "__name__", "") in ("flex_attention", "create_block_mask"):
            return real(m, *args, **kw)
        return m
    torch.compile = compile_


def shard_cycle(shards):
    """records 19-21: the generator's file iterator; cycles and tells the shard it reads"""
    def cycle(files, key):
        for i, f in itertools.cycle(enumerate(files)):
            shards[key] = i
            yield f
    return cycle


def main():
    a = parse_args()
    try:
        src, info = patches.patch(open(a.script).read(), a.record, a.accum, a.experiment)
    except patches.PatchError as e:
        sys.exit(f"torch_side.py: {e}")
    a.accum = info["accum"]
    print("patches: " + ", ".join(f"{n} x{c}" for n, c in info["patches"]) +
          f"; micro-batch {info['micro_batch']}x{info['T']}, {a.accum} per step", file=sys.stderr)

    val_tokens = max(info["val_tokens"], 64 * 1024)
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=os.environ.get("MASTER_PORT", "29517"),
                      NANOGPT_TRAIN_FILES=a.train_files, NANOGPT_VAL_FILES=a.val_files,
                      NANOGPT_VAL_TOKENS=os.environ.get("NANOGPT_VAL_TOKENS", str(val_tokens)))
    if a.no_compile:
        no_compile()
    if int(os.environ.get("FID_STACK_AFTER", "0")) > 0:   # where a run that stalls is stuck: every
        faulthandler.dump_traceback_later(int(os.environ["FID_STACK_AFTER"]), repeat=True)  # N s, to stderr

    loaded_bytes, found, nxt = 0, [], 0   # the artifacts' size loaded (save_cache: the same again is not new)
    if mega_cache_path(a.record):
        found, nxt = read_caches(a.record)
    for where, art in found:   # compiled artifacts of earlier runs (other machines), set by set
        try:
            torch.compiler.load_cache_artifacts(art)
            loaded_bytes += len(art)
            print(f"compile caches: loaded {len(art)} bytes from {where}", file=sys.stderr)
        except Exception as e:  # a stale or foreign file: compiled as if absent
            print(f"compile caches: {where} not loaded ({e})", file=sys.stderr)
    # what this run compiles beyond them goes to a set of its own (set 0 when none was loaded): a set
    # saved by a run its limit cut holds that run's compiles only, so every set is kept and loaded
    cache = mega_cache_path(a.record, nxt if loaded_bytes else 0)

    if cache:   # a run stopped by its time limit (all.sh's `timeout` signals the whole group) or failing keeps
        keep_on_term(cache, loaded_bytes)   # what it compiled: the next call starts from it

    loaded = []

    def load(model):   # the patched script calls this with its model before DDP / the broadcast
        convert.load_into(model, a.weights, a.record)
        loaded.append(True)

    windows, losses, times, shards = [], [], {}, {}
    limit = a.steps * a.accum
    real_backward = torch.Tensor.backward

    def backward(self, *args, **kw):
        if self.dim() == 0 and self.requires_grad:
            if len(losses) >= limit:
                torch.cuda.synchronize()
                times["end"] = time.time()
                raise StopRun()
            if len(losses) == a.accum:   # step 2's first backward: step 1 is done
                torch.cuda.synchronize()
                times["first_step"] = seconds_since_start()
                if cache:   # step 1 compiled the training graphs: kept now, before the timed steps (11+),
                    save_cache(cache, loaded_bytes)   # so a run cut later still brings them back
            if len(losses) == 10 * a.accum:
                torch.cuda.synchronize()
                times["start"] = time.time()
            losses.append(float(self.detach().float().item()))
        return real_backward(self, *args, **kw)
    torch.Tensor.backward = backward

    g = {"__name__": "__main__", "__file__": a.script, "__fidelity_windows__": windows,
         "__fidelity_load__": load, "__fidelity_shard__": shards, "__fidelity_cycle__": shard_cycle(shards)}
    sys.argv = [a.script]
    try:
        exec(compile(src, a.script, "exec"), g)
    except StopRun:
        pass
    except BaseException:
        if cache:
            save_cache(cache, loaded_bytes)
        raise
    finally:
        torch.Tensor.backward = real_backward
    if cache:   # again: the validation's graphs and any recompile since step 2
        save_cache(cache, loaded_bytes)
    if not loaded:
        sys.exit("torch_side.py: the script never reached the weight-loading point")
    if len(losses) < limit:
        sys.exit(f"torch_side.py: the script stopped after {len(losses)} micro-batches (wanted {limit})")
    pos = train_windows(windows, a, info)[:limit]
    if len(pos) < limit:
        sys.exit(f"torch_side.py: {len(pos)} training windows recorded for {limit} micro-batches")
    steps = [sum(losses[i * a.accum:(i + 1) * a.accum]) / a.accum for i in range(a.steps)]
    B, T = info["micro_batch"], info["T"]
    tps = (a.steps - 10) * a.accum * B * T / (times["end"] - times["start"]) if "start" in times and "end" in times else None
    try:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    json.dump({"side": "pytorch", "script": os.path.abspath(a.script), "record": a.record, "torch": torch.__version__,
               "device": torch.cuda.get_device_name(0), "steps": a.steps, "accum": a.accum, "micro_batch": B, "T": T,
               "loader": info["loader"], "patches": info["patches"], "no_compile": a.no_compile,
               "losses": steps, "micro_losses": losses[:limit], "positions": pos, "tokens_per_s": tps,
               "first_step_s": times.get("first_step"),
               "peak_memory_bytes": torch.cuda.max_memory_allocated()},
              open(a.out, "w"), indent=1)
    print(f"pytorch: {a.steps} steps, first loss {steps[0]:.4f}, last {steps[-1]:.4f}, tokens/s {tps}", file=sys.stderr)


PART_BYTES = 15 << 20   # a file back from a device call is at most 16 MiB


def mega_cache_path(record, index=0):
    """FID_COMPILE_CACHE=DIR: torch.compiler's portable cache artifacts of record N, set `index`,
    xz-compressed in parts of at most 15 MiB, DIR/record_N.bin.xz.00, .01, ... (set 0; set K:
    record_N.K.bin...): they come back from a device call and can be carried to the next (folder
    FID_COMPILE_CACHE_FROM, e.g. runs/cc), where every set is loaded before the script compiles: a
    fresh machine (every device session starts one) then skips most of a 2-6 minute cold compile. A
    run writes one set, after step 1 (its compiles: a run cut by a time limit after that still leaves
    them; record 12's cold run outlasted 430 s on the H200, 2026-12-05), again after the run, and when
    it fails or its time limit stops it (SIGTERM); a run that loaded sets 0..K-1 writes set K. The
    timed steps (11-50) come after the compiles and the first write, so tokens/s does not depend on it."""
    d = os.environ.get("FID_COMPILE_CACHE")
    return os.path.join(d, f"record_{record}.bin" if index == 0 else f"record_{record}.{index}.bin") if d else None


def read_caches(record):
    """([(where, bytes)...], next index) of record N's artifact sets in FID_COMPILE_CACHE_FROM, else
    FID_COMPILE_CACHE: record_N.bin (set 0) and record_N.K.bin (set K, saved by a run that had loaded
    sets below K), each as xz parts joined and decompressed or a plain file, in index order; a set
    with a part missing or cut is left out (compiled as if absent). ([], 0) when there are none."""
    pat = re.compile(rf"record_{record}(?:\.(\d+))?\.bin(\.xz\.\d\d)?$")
    for d in (os.environ.get("FID_COMPILE_CACHE_FROM"), os.environ.get("FID_COMPILE_CACHE")):
        if not d or not os.path.isdir(d):
            continue
        sets = {}
        for name in sorted(os.listdir(d)):
            m = pat.match(name)
            if m:
                sets.setdefault(int(m.group(1) or 0), []).append(os.path.join(d, name))
        out = []
        for k in sorted(sets):
            files, where = sets[k], sets[k][0].split(".xz.")[0]
            parts = [f for f in files if ".xz." in f]
            try:
                out.append((where + (".xz.*" if parts else ""), lzma.decompress(b"".join(open(f, "rb").read() for f in parts))
                            if parts else open(files[0], "rb").read()))
            except lzma.LZMAError as e:   # a part missing or cut
                print(f"compile caches: {where}.xz.* not readable ({e})", file=sys.stderr)
        if sets:
            return out, max(sets) + 1
    return [], 0


def keep_on_term(path, loaded_bytes=0):
    """SIGTERM (a time limit) saves the compile artifacts made so far, then exits 143: a record whose
    cold compile outlasts one device call (record 20's: more than 450 s on an H100) keeps its graphs
    compiled by then for the next call"""
    def handler(signum, frame):
        print(f"compile caches: signal {signum}: saving what was compiled", file=sys.stderr)
        save_cache(path, loaded_bytes)
        sys.stderr.flush()
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def save_cache(path, loaded_bytes=0):
    """the compile artifacts this process recorded, as xz parts at path.xz.NN. After sets were loaded
    (loaded_bytes of them) the process records what it compiled beyond them (and, should PyTorch
    record its cache hits too, those again): a size within 1 % of what was loaded is taken as the
    same artifacts again and not written, so a warm run sends nothing back a second time"""
    try:
        art = torch.compiler.save_cache_artifacts()
    except Exception as e:
        print(f"compile caches: not saved ({e})", file=sys.stderr)
        return
    if art is None or (loaded_bytes and abs(len(art[0]) - loaded_bytes) <= loaded_bytes // 100):
        print("compile caches: nothing new to save", file=sys.stderr)
        return
    t = time.time()
    if shutil.which("xz"):   # every core (the machine's 16); the Python module compresses on one
        packed = subprocess.run(["xz", "-T0", "-6", "-c"], input=art[0], stdout=subprocess.PIPE, check=True).stdout
    else:
        packed = lzma.compress(art[0], preset=6)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for old in glob.glob(glob.escape(path) + ".xz.*"):
        os.remove(old)
    for k in range(0, len(packed), PART_BYTES):
        part = f"{path}.xz.{k // PART_BYTES:02d}"
        with open(part + ".tmp", "wb") as f:
            f.write(packed[k:k + PART_BYTES])
        os.replace(part + ".tmp", part)
    print(f"compile caches: saved {len(art[0])} bytes as {len(packed)} bytes of xz "
          f"({-(-len(packed) // PART_BYTES)} part(s), {time.time() - t:.1f} s) to {path}.xz.*", file=sys.stderr)


def train_windows(windows, a, info):
    """[[shard, position]] per training micro-batch: the reads of the training loader (key: its
    first file or its glob), a read of records 18-21 covering accum micro-batches of B x T tokens"""
    import glob
    files = sorted(glob.glob(a.train_files))
    keys = {a.train_files, files[0] if files else None}
    per, size = info["windows_per_call"], info["micro_batch"] * info["T"]
    out = []
    for key, shard, at in windows:
        if key in keys:
            out.extend([shard, at + i * size] for i in range(per))
    return out


if __name__ == "__main__":
    main()
