#!/usr/bin/env python3
"""patches.py: the source patches that run a benchmark record script (llm-speedrunner
record_N/train_gpt2.py, N = 1..21) as the PyTorch side of the fidelity comparison on one GPU
(tasks/fidelity/README.md). No torch import: tests run it over every script without a GPU.

patch(src, record, accum) -> (patched source, info) or raises PatchError naming the patch that
did not apply. info: loader kind, micro-batch shape (B sequences of T tokens), accum (micro-batches
per optimizer step), windows_per_call (micro-batches one recorded read covers), val_tokens,
and the applied patches with their counts.

The patches (each is listed with the records it applies to in PATCHES):
  batch_assert   records 1-2 assert the 8-GPU global batch; removed (their step is B x T on one GPU)
  tokenizer      record 1 builds an unused tiktoken encoder (it would download its BPE file)
  windows        records (loader key, shard, position) for every read of the loaders, the key
                 being the loader's first file (records 1-18) or its glob pattern (19-21):
                 records 1-17 at the top of DistributedDataLoader.next_batch(self) (the read
                 position; the shard switch comes after the read), record 18 after its read
                 position `pos = ...` (the switch comes before), records 19-21 inside
                 distributed_data_generator after `buf = ...`
  cycle          records 19-21: the generator cycles over the shards (itertools.cycle, as the
                 scripts' own comment suggests) and tells which shard it reads; changes nothing
                 while the data lasts (FineWeb: 100M tokens a shard), lets a small corpus wrap
  accum          the global batch per optimizer step: records 4-11 `batch_size : int = 8*64`
                 (sequences), 12-14 and 16-17 `batch_size : int = 8` (64K-token sequences),
                 15 the same forced to 1 (the script asserts one micro-batch per step per GPU),
                 18-20 `batch_size = 8*64*1024` (tokens), 21 `train_batch_size = world_size *
                 args.seq_len` (x accum): on one GPU, accum micro-batches as the 8 ranks' windows
  flex_mode      record 12 compiles flex_attention with mode="max-autotune-no-cudagraphs" (the
                 speedrunner copy; the official record log does not): dropped (minutes of autotuning)
  load           `__fidelity_load__(model)` (the speedrun initial weights) right before the model
                 is handed to DDP (records 1-18) or broadcast from rank 0 (records 19-21)
  fp8_fake       records 19-21: the fake (meta) kernel of the FP8 head's nanogpt::mm_backward says its
                 grad_w is row-major where the op returns a transpose (strides (1, 50304)); PyTorch 2.11's
                 compiled graph asserts the strides and stops in the first backward (H100, 2026-12-06):
                 the fake now declares the op's real strides (no change to what is computed)

Experiments (only when asked: patch(..., experiments=[name])), each changing what the script computes:
  rope_fp32      records 14-16: the rotary angles in fp32. Their inv_freq is a registered buffer, so
                 the model's .bfloat16() makes it bf16 and torch.outer(arange(T), inv_freq) promotes
                 the positions to bf16 (rounded 256 apart from 32,768). Record 16's eager comparison
                 DIFFERed by 0.34 (2026-12-06) while the recipes computed fp32 angles: this patch
                 gives the script those (FID_EXPERIMENT=rope_fp32, tasks/fidelity/README.md)
  rope_compiled  records 14-16: the rotary arithmetic as the compiled script does it, in eager mode:
                 bf16 positions times the bf16 inv_freq in fp32, cos / sin stored bf16, the rotation
                 in fp32 rounded once (eager rounds the product and each rotation term to bf16);
                 what the recipes compute since 2026-12-06 (FID_EXPERIMENT=rope_compiled with NO_COMPILE=1)
  val_short      record 21: validation on sequences of 65,536 tokens, not 262,144 (val_seq_len; the
                 training sequences, 49,152, and what training computes are unchanged: the rotary
                 tables are per position, only shorter). Eager PyTorch's step-0 validation at 262,144
                 tokens allocates the [262,144, 50,304] f32 logits (49 GiB) and runs out of memory on an
                 80 GB card (H100, 2026-12-06); the comparison is of the training losses
                 (FID_EXPERIMENT=val_short with NO_COMPILE=1)
  no_val         records 1-21: no validation pass (val_loss_every 0: records 3-21 validate only at the
                 last step, which a fidelity run never reaches; 1-2 not at all). The step-0 validation
                 runs the model in eval mode under no_grad, a graph torch.compile compiles on its own
                 before the first training step: part of the cold compile that outlasted a call for
                 records 17-21 (>520 s on an H100, 2026-12-07). Training, its losses and its timed
                 steps are unchanged; PyTorch's start-up and peak memory then leave the validation out
                 (as speedrun's side has none). (FID_EXPERIMENT=no_val; compile artifacts saved under it
                 hold the training graphs only)
"""
import re
import sys


class PatchError(Exception):
    pass


def _records(spec):
    out = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


# (name, records, pattern, replacement (str or function of accum), expected count)
PATCHES = [
    ("batch_assert", "1-2", r"\n(\s*)assert args\.total_batch_size == tokens_per_fwdbwd\n", r"\n\1pass\n", 1),
    ("tokenizer", "1", r"tiktoken\.get_encoding\([^)]*\)", "None", 1),
    ("windows", "1-17", r"(\n(\s*)def next_batch\(self\):\n)",
     r"\1\2    __fidelity_windows__.append((self.files[0], int(self.current_shard), int(self.current_position)))\n", 1),
    ("windows", "18", r"(\n(\s*)pos = self\.current_position \+ self\.rank \* device_batch_size\n)",
     r"\1\2__fidelity_windows__.append((self.files[0], int(self.current_shard), int(pos)))\n", 1),
    ("windows", "19-21", r"(\n(\s*)buf = tokens\[pos \+ rank \* local_batch_size:\]\[:local_batch_size \+ 1\]\n)",
     r"\1\2__fidelity_windows__.append((filename_pattern, __fidelity_shard__[filename_pattern], "
     r"int(pos + rank * local_batch_size)))\n", 1),
    ("cycle", "19-21", r"file_iter = iter\(files\)", "file_iter = __fidelity_cycle__(files, filename_pattern)", 1),
    ("accum", "4-11", r"(\n\s*batch_size\s*:\s*int\s*=\s*)8\*64\b", lambda acc: rf"\g<1>{acc}*64", 1),
    ("accum", "12-14,16-17", r"(\n\s*batch_size\s*:\s*int\s*=\s*)8\b", lambda acc: rf"\g<1>{acc}", 1),
    ("accum", "15", r"(\n\s*batch_size\s*:\s*int\s*=\s*)8\b", r"\g<1>1", 1),
    ("accum", "18-20", r"(\n\s*batch_size\s*=\s*)8\*64\*1024\b", lambda acc: rf"\g<1>{acc}*64*1024", 1),
    ("accum", "21", r"\ntrain_batch_size = world_size \* args\.seq_len\n",
     lambda acc: f"\ntrain_batch_size = {acc} * args.seq_len\n", 1),
    ("flex_mode", "12", r',\s*mode="max-autotune-no-cudagraphs"', "", 2),
    ("load", "1-17", r"\n(\s*)(model = DDP\(model)", r"\n\1__fidelity_load__(model)\n\1\2", 1),
    ("load", "18", r"\n(\s*)(ddp_model = DDP\(model)", r"\n\1__fidelity_load__(model)\n\1\2", 1),
    ("load", "19-21", r"\n(for param in model\.parameters\(\):\n\s*dist\.broadcast\()", r"\n__fidelity_load__(model)\n\1", 1),
    ("fp8_fake", "19-21", r"return x_f8\.to\(torch\.bfloat16\), w_f8\.to\(torch\.float32\)\n",
     "return x_f8.to(torch.bfloat16), w_f8.to(torch.float32).t().contiguous().t()\n", 1),
]

# the experiments: (name, records, pattern, replacement, expected count), applied only when asked
EXPERIMENTS = [
    ("rope_fp32", "14-16", r"freqs = torch\.outer\(t, self\.inv_freq\)",
     "freqs = torch.outer(t.float(), self.inv_freq.float())", 1),
    ("rope_compiled", "14-16",
     r"freqs = torch\.outer\(t, self\.inv_freq\)\n(\s*)self\.seq_len_cached = seq_len\n\s*self\.cos_cached = freqs\.cos\(\)\n"
     r"\s*self\.sin_cached = freqs\.sin\(\)",
     r"freqs = torch.outer(t.to(self.inv_freq.dtype).float(), self.inv_freq.float())\n\1self.seq_len_cached = seq_len\n"
     r"\1self.cos_cached = freqs.cos().to(self.inv_freq.dtype)\n\1self.sin_cached = freqs.sin().to(self.inv_freq.dtype)", 1),
    ("rope_compiled_rotation", "14-16", r"x1, x2 = x\.chunk\(2, dim=3\)", "x1, x2 = x.float().chunk(2, dim=3)", 1),
    ("val_short", "21", r"\n(\s*)val_seq_len = 4\*64\*1024\b", r"\n\1val_seq_len = 64*1024", 1),
    ("no_val", "1-21", r"\n(\s*)val_loss_every(\s*:\s*int)?\s*=\s*\d+", r"\n\1val_loss_every\2 = 0", 1),
]
# experiments applied together under one name
EXPERIMENT_GROUPS = {"rope_compiled": ["rope_compiled", "rope_compiled_rotation"]}


def accum_of(record, accum):
    """micro-batches per step the patched script runs: records 1-3 have no accumulation loop and
    15 asserts one micro-batch per step, so 1; the others as asked (8 = the records' global batch)"""
    return 1 if record <= 3 or record == 15 else accum


def _int_expr(src, pattern, default=None):
    m = re.search(pattern, src)
    if not m:
        if default is None:
            raise PatchError(f"shape: no match for {pattern!r}")
        return default
    if not re.fullmatch(r"[\d\s*]+", m.group(1)):
        raise PatchError(f"shape: {m.group(1)!r} is not a product of integers")
    out = 1
    for f in m.group(1).split("*"):
        out *= int(f)
    return out


def shapes(src, record):
    """(B sequences, T tokens) of one micro-batch and the validation tokens a val step needs"""
    if record <= 17:
        T = _int_expr(src, r"\n\s*sequence_length\s*(?::\s*int)?\s*=\s*([\d*]+)", 1024)
        if record >= 14:
            B = 1
        else:
            m = re.search(r"device_batch_size\s*:\s*int\s*=\s*(\d+)", src) or re.search(r"\n\s*batch_size\s*=\s*(\d+)", src)
            if not m:
                raise PatchError("shape: no device_batch_size / batch_size in the script")
            B = int(m.group(1))
        return B, T, B * T
    if record == 18:
        T = _int_expr(src, r"\n\s*max_device_batch_size\s*=\s*([\d*]+)")
        return 1, T, T
    T = _int_expr(src, r"\n\s*seq_len\s*=\s*([\d*]+)")
    val = _int_expr(src, r"\n\s*val_seq_len\s*=\s*([\d*]+)", T)
    return 1, T, val


def patch(src, record, accum=8, experiments=()):
    if not 1 <= record <= 21:
        raise PatchError(f"record {record}: records 1-21 are supported")
    experiments = [x for e in experiments for x in EXPERIMENT_GROUPS.get(e, [e])]
    unknown = set(experiments) - {e[0] for e in EXPERIMENTS}
    if unknown:
        raise PatchError(f"unknown experiment(s) {sorted(unknown)} (known: {[e[0] for e in EXPERIMENTS]})")
    acc = accum_of(record, accum)
    applied = []
    for name, spec, pattern, repl, want in PATCHES + [e for e in EXPERIMENTS if e[0] in experiments]:
        if record not in _records(spec):
            continue
        r = repl(acc) if callable(repl) else repl
        src, n = re.subn(pattern, r, src)
        if n != want:
            raise PatchError(f"record {record}: patch '{name}' matched {n} time(s), expected {want} "
                             f"(pattern {pattern!r}); the script differs from the one the patch was written for")
        applied.append((name, n))
    B, T, val = shapes(src, record)
    info = {"record": record, "loader": "bt" if record <= 11 else "seq", "micro_batch": B, "T": T,
            "accum": acc, "windows_per_call": 1 if record <= 17 else acc,
            "val_tokens": val, "patches": applied}
    return src, info


def main(argv):
    """patches.py SCRIPT RECORD [ACCUM]: prints the applied patches and the loader shape"""
    if len(argv) < 3:
        print(__doc__)
        return 2
    try:
        _, info = patch(open(argv[1]).read(), int(argv[2]), int(argv[3]) if len(argv) > 3 else 8)
    except PatchError as e:
        print(f"patches.py: {e}", file=sys.stderr)
        return 1
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
