#!/usr/bin/env python3
"""fidelity_patches_check.py: the Python half of tests/harness/test_fidelity_names.lua (no torch).

    python3 fidelity_patches_check.py SCRIPTS_DIR   # every record_N/train_gpt2.py, N = 1..21
    python3 fidelity_patches_check.py --negative    # a script the patches do not fit is refused
Applies tasks/fidelity/patches.py to each script at accum 8 and 1, compiles the patched source,
checks the loader shapes against EXPECT (read off the scripts by hand: Hyperparameters, the
loaders, the training loops) and that each inserted hook is present once.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tasks", "fidelity"))
import patches  # noqa: E402

# record -> (loader, B, T, accum at --accum 8, windows per read, val tokens per val step)
EXPECT = {1: ("bt", 32, 1024, 1, 1, 32768), 2: ("bt", 64, 1024, 1, 1, 65536), 3: ("bt", 64, 1024, 1, 1, 65536)}
EXPECT.update({n: ("bt", 64, 1024, 8, 1, 65536) for n in range(4, 12)})
EXPECT.update({n: ("seq", 1, 65536, 8, 1, 65536) for n in (12, 13, 14, 16, 17)})
EXPECT[15] = ("seq", 1, 65536, 1, 1, 65536)
EXPECT.update({n: ("seq", 1, 65536, 8, 8, 65536) for n in (18, 19, 20)})
EXPECT[21] = ("seq", 1, 49152, 8, 8, 262144)

HOOKS = ["__fidelity_windows__.append(", "__fidelity_load__(model)"]


def check(scripts):
    for n in range(1, 22):
        src = open(os.path.join(scripts, f"record_{n}", "train_gpt2.py")).read()
        for acc in (8, 1):
            out, info = patches.patch(src, n, acc)
            compile(out, f"record_{n}", "exec")
            e = EXPECT[n]
            got = (info["loader"], info["micro_batch"], info["T"], info["accum"], info["windows_per_call"], info["val_tokens"])
            want = (e[0], e[1], e[2], min(e[3], acc), e[4] if acc == 8 else min(e[4], acc), e[5])
            if got != want:
                sys.exit(f"record {n} accum {acc}: {got} != expected {want}")
            for h in HOOKS:
                if out.count(h) != 1:
                    sys.exit(f"record {n}: hook {h} present {out.count(h)} times")
            if n >= 19 and "__fidelity_cycle__(files, filename_pattern)" not in out:
                sys.exit(f"record {n}: the shard cycle is missing")
            if (n >= 19) != ("w_f8.to(torch.float32).t().contiguous().t()" in out):
                sys.exit(f"record {n}: the FP8 head's fake backward strides {'unpatched' if n >= 19 else 'patched'}")
            if n == 12 and "max-autotune" in out:
                sys.exit("record 12: flex_attention still compiled with max-autotune")
        base = patches.patch(src, n, 8)[0]  # no experiment
        # the rope_fp32 experiment (records 14-16): the angles in fp32, only when asked
        out, _ = patches.patch(src, n, 8, ["rope_fp32"])
        compile(out, f"record_{n}", "exec")
        has = "torch.outer(t.float(), self.inv_freq.float())" in out
        if has != (14 <= n <= 16) or "torch.outer(t.float()" in base:
            sys.exit(f"record {n}: rope_fp32 {'missing' if 14 <= n <= 16 else 'applied'}")
        # rope_compiled (records 14-16): bf16 positions, fp32 product, bf16 tables, fp32 rotation
        out, info = patches.patch(src, n, 8, ["rope_compiled"])
        compile(out, f"record_{n}", "exec")
        marks = ["t.to(self.inv_freq.dtype).float()", "freqs.cos().to(self.inv_freq.dtype)",
                 "freqs.sin().to(self.inv_freq.dtype)", "x1, x2 = x.float().chunk(2, dim=3)"]
        if any((m in out) != (14 <= n <= 16) for m in marks):
            sys.exit(f"record {n}: rope_compiled {'incomplete' if 14 <= n <= 16 else 'applied'}")
        # val_short (record 21): validation sequences of 64K tokens, the validation step's tokens with them
        out, info = patches.patch(src, n, 8, ["val_short"])
        compile(out, f"record_{n}", "exec")
        if n == 21 and (info["val_tokens"] != 65536 or "val_seq_len = 64*1024" not in out or info["T"] != 49152):
            sys.exit(f"record 21: val_short gave val_tokens {info['val_tokens']}, T {info['T']}")
        if n != 21 and out != base:
            sys.exit(f"record {n}: val_short changed the script")
        # no_val (records 1-21): val_loss_every 0, the one change
        out, info = patches.patch(src, n, 8, ["no_val"])
        compile(out, f"record_{n}", "exec")
        if len(out.splitlines()) != len(base.splitlines()) or \
                sum(a != b for a, b in zip(out.splitlines(), base.splitlines())) != 1 or \
                not re.search(r"\n\s*val_loss_every(\s*:\s*int)?\s*=\s*0\b", out):
            sys.exit(f"record {n}: no_val did not set val_loss_every to 0 alone")
    print("21 scripts ok")


def negative():
    src = "class DistributedDataLoader:\n    def next_batch(self):\n        pass\nmodel = DDP(model)\n"
    try:
        patches.patch(src, 9, 8)
    except patches.PatchError as e:
        if "'accum'" not in str(e):
            sys.exit(f"the error does not name the patch: {e}")
    else:
        sys.exit("a script without the batch size was patched")
    try:
        patches.patch(src, 9, 8, ["nope"])
    except patches.PatchError as e:
        if "unknown experiment" not in str(e):
            sys.exit(f"the error does not name the experiment: {e}")
    else:
        sys.exit("an unknown experiment was accepted")
    try:
        patches.patch(src, 22, 8)
    except patches.PatchError:
        pass
    else:
        sys.exit("record 22 was accepted")
    print("negative ok")


if __name__ == "__main__":
    negative() if sys.argv[1:] == ["--negative"] else check(sys.argv[1])
