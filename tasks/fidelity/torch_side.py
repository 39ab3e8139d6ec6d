#!/usr/bin/env python3
"""torch_side.py: the PyTorch side of the fidelity comparison (README.md here).

Runs one benchmark record script (llm-speedrunner workspace_templates/nanogpt_speedrun/
record_N/train_gpt2.py, given by path; nothing is fetched) in this process as a single-GPU
torchrun job (RANK 0 of WORLD_SIZE 1), starting from a speedrun weight file, and records:
  * the loss of every backward pass (one per micro-batch) for the first STEPS optimizer steps;
  * the token window of every training batch: (shard index, start position), so the speedrun side
    can feed exactly the same tokens (this also reproduces the scripts' quirks, such as records
    4-5 using their first batch twice after train_loader.reset());
  * tokens/s over steps 11..STEPS (wall clock, CUDA-synchronised) and the peak of allocated GPU
    memory (torch.cuda.max_memory_allocated).

The script is run with small source patches, printed when applied:
  1. records 1-2 assert total_batch_size == B*T*world, which fails on one GPU: the assert is
     removed (the step then has B*T tokens; records 4-5 reach the global batch by accumulation);
  2. DistributedDataLoader.next_batch records (loader, shard, position) before reading;
  3. record 1's unused tiktoken encoder is not built (it would download its BPE file);
  4. DDP(...) is wrapped so the freshly built model is loaded from the weight file first.
torch.Tensor.backward is wrapped to record each micro-batch loss and to stop the run after
STEPS x ACCUM micro-batches.

usage: torch_side.py --script train_gpt2.py --weights init.srw --train-files GLOB --val-files GLOB
                     --steps 50 --accum 1 --out torch.json [--no-compile]
"""
import argparse
import json
import os
import re
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert  # noqa: E402


class StopRun(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--train-files", required=True)
    ap.add_argument("--val-files", required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step (records 4-5 on one GPU: 8)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-compile", action="store_true", help="replace torch.compile by the identity")
    a = ap.parse_args()

    src = open(a.script).read()
    # 1. one GPU: no assert on the global batch
    src, n1 = re.subn(r"\n(\s*)assert args\.total_batch_size == tokens_per_fwdbwd\n", r"\n\1pass\n", src)
    # 2. record the windows
    src, n2 = re.subn(r"(\n(\s*)def next_batch\(self\):\n)",
                      r"\1\2    __fidelity_windows__.append((id(self), int(self.current_shard), int(self.current_position)))\n", src)
    if n2 != 1:
        sys.exit("torch_side.py: could not find DistributedDataLoader.next_batch in the script")
    # records 4-5: the global batch follows --accum (8 x 64 sequences on one GPU is the script's own)
    src, n4 = re.subn(r"(\n\s*batch_size\s*:\s*int\s*=\s*)8\*64", lambda m: f"{m.group(1)}{a.accum}*64", src)
    # 3. record 1 builds a tiktoken encoder it never uses for training; it would fetch the BPE file
    src, n3 = re.subn(r"tiktoken\.get_encoding\([^)]*\)", "None", src)
    print(f"patches: batch assert removed: {n1}, next_batch instrumented: {n2}, unused tokenizer dropped: {n3}, "
          f"global batch set to {a.accum}x64 sequences: {n4}, "
          "DDP wrapped", file=sys.stderr)

    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=os.environ.get("MASTER_PORT", "29517"),
                      NANOGPT_TRAIN_FILES=a.train_files, NANOGPT_VAL_FILES=a.val_files,
                      NANOGPT_VAL_TOKENS=os.environ.get("NANOGPT_VAL_TOKENS", str(64 * 1024)))
    if a.no_compile:
        torch.compile = lambda m=None, *args, **kw: (m if m is not None else (lambda f: f))

    # 4. load our initial weights into the model handed to DDP
    import torch.nn.parallel as par
    real_ddp = par.DistributedDataParallel

    def ddp(model, *args, **kw):
        convert.load_into(model, a.weights)
        return real_ddp(model, *args, **kw)
    par.DistributedDataParallel = ddp

    windows, losses, times = [], [], {}
    limit = a.steps * a.accum
    real_backward = torch.Tensor.backward

    def backward(self, *args, **kw):
        if self.dim() == 0 and self.requires_grad:
            if len(losses) >= limit:
                torch.cuda.synchronize()
                times["end"] = time.time()
                raise StopRun()
            if len(losses) == 10 * a.accum:
                torch.cuda.synchronize()
                times["start"] = time.time()
            losses.append(float(self.detach().float().item()))
        return real_backward(self, *args, **kw)
    torch.Tensor.backward = backward

    g = {"__name__": "__main__", "__file__": a.script, "__fidelity_windows__": windows}
    sys.argv = [a.script]
    try:
        exec(compile(src, a.script, "exec"), g)
    except StopRun:
        pass
    finally:
        torch.Tensor.backward = real_backward
        par.DistributedDataParallel = real_ddp
    if len(losses) < limit:
        sys.exit(f"torch_side.py: the script stopped after {len(losses)} micro-batches (wanted {limit})")
    # the train loader is the first loader whose next_batch ran (every record prefetches x, y first)
    train_id = windows[0][0]
    pos = [[w[1], w[2]] for w in windows if w[0] == train_id][:limit]
    steps = [sum(losses[i * a.accum:(i + 1) * a.accum]) / a.accum for i in range(a.steps)]
    B = T = None
    m = re.search(r"sequence_length\s*(?::\s*int)?\s*=\s*(\d+)", src)
    T = int(m.group(1)) if m else 1024
    m = re.search(r"device_batch_size\s*:\s*int\s*=\s*(\d+)", src) or re.search(r"\n\s*batch_size\s*=\s*(\d+)", src)
    B = int(m.group(1))
    tps = (a.steps - 10) * a.accum * B * T / (times["end"] - times["start"]) if "start" in times and "end" in times else None
    try:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    json.dump({"side": "pytorch", "script": os.path.abspath(a.script), "torch": torch.__version__,
               "device": torch.cuda.get_device_name(0), "steps": a.steps, "accum": a.accum, "micro_batch": B, "T": T,
               "losses": steps, "micro_losses": losses[:limit], "positions": pos, "tokens_per_s": tps,
               "peak_memory_bytes": torch.cuda.max_memory_allocated()},
              open(a.out, "w"), indent=1)
    print(f"pytorch: {a.steps} steps, first loss {steps[0]:.4f}, last {steps[-1]:.4f}, tokens/s {tps}", file=sys.stderr)


if __name__ == "__main__":
    main()
