#!/usr/bin/env python3
"""convert.py: speedrun weight files <-> PyTorch state dicts.

speedrun weight file (lua/speedrun/nn.lua, nn.save/nn.load), little-endian:
    b"SRW1", u32 count, then per tensor (names sorted):
    u16 name length, name, u8 dtype-name length, dtype name ("float32", "float64", "bfloat16",
    "int32"), u8 ndim, ndim x i64 dims, the raw elements (row-major, contiguous).

Parameter names: the record recipes (tasks/record_NN/recipe.lua, records 1-21) use the PyTorch
scripts' names, shapes and dtypes (transformer.wte.weight, transformer.h.0.attn.c_attn.weight,
blocks.0.attn.qkv_w, value_embeds.embed.0.weight, skip_weights, ...): params.txt lists each
script's parameters as script_params.py reads them from the script, and
tests/harness/test_fidelity_names.lua checks every recipe against it. The mapping is therefore the
identity except for tied weights (`tied` lines of params.txt): in records 1-7 PyTorch's model
reaches one tensor as both lm_head.weight and transformer.wte.weight; the speedrun file holds only
transformer.wte.weight. Buffers (rotary tables) are not parameters and are skipped.

    python3 convert.py to-torch  IN.srw OUT.pt      # torch.save of a state dict
    python3 convert.py to-speedrun IN.pt OUT.srw    # a state dict (or {"model": state_dict}) -> SRW1
    python3 convert.py show IN.srw                  # names, dtypes, shapes
Library use: read_srw(path) -> {name: tensor}, write_srw(path, sd), load_into(module, path).
"""
import os
import struct
import sys

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "int32": torch.int32}
NAMES = {v: k for k, v in DTYPES.items()}
TIED = {"lm_head.weight": "transformer.wte.weight"}
PARAMS_TXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "params.txt")


def ties(record):
    """{alias: name} of record N's script (params.txt `tied` lines); TIED when N is None"""
    if record is None:
        return dict(TIED)
    out, cur = {}, None
    for line in open(PARAMS_TXT):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if f[0] == "record":
            cur = int(f[1])
        elif f[0] == "tied" and cur == record:
            out[f[1]] = f[2]
    return out


def read_srw(path):
    data = open(path, "rb").read()
    if data[:4] != b"SRW1":
        raise ValueError(f"{path}: not a speedrun weight file (bad magic)")
    (n,) = struct.unpack_from("<I", data, 4)
    pos, sd = 8, {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", data, pos); pos += 2
        name = data[pos:pos + ln].decode(); pos += ln
        dl = data[pos]; pos += 1
        dtype = data[pos:pos + dl].decode(); pos += dl
        nd = data[pos]; pos += 1
        shape = struct.unpack_from("<%dq" % nd, data, pos); pos += 8 * nd
        dt = DTYPES[dtype]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * torch.tensor([], dtype=dt).element_size()
        buf = bytearray(data[pos:pos + nbytes]); pos += nbytes
        if len(buf) != nbytes:
            raise ValueError(f"{path}: truncated at {name}")
        t = torch.frombuffer(buf, dtype=dt) if nbytes else torch.empty(0, dtype=dt)
        sd[name] = t.reshape(shape).clone()
    return sd


def write_srw(path, sd):
    names = sorted(k for k, v in sd.items() if torch.is_tensor(v))
    with open(path, "wb") as f:
        f.write(b"SRW1" + struct.pack("<I", len(names)))
        for name in names:
            t = sd[name].detach().cpu().contiguous()
            if t.dtype not in NAMES:
                t = t.float()
            nb, db = name.encode(), NAMES[t.dtype].encode()
            f.write(struct.pack("<H", len(nb)) + nb + struct.pack("<B", len(db)) + db + struct.pack("<B", t.dim()))
            f.write(struct.pack("<%dq" % t.dim(), *t.shape))
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def strip_prefix(sd):
    """drops torch.compile's _orig_mod. and DDP's module. prefixes"""
    out = {}
    for k, v in sd.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def to_speedrun(sd, param_names=None):
    """a PyTorch state dict -> the speedrun parameter dict (tied duplicates and buffers dropped)"""
    sd = strip_prefix(sd)
    out = {}
    for k, v in sd.items():
        if k in TIED and TIED[k] in sd and sd[TIED[k]].data_ptr() == v.data_ptr():
            continue
        if k.endswith("inv_freq") or (param_names is not None and k not in param_names):
            continue
        out[k] = v.detach().float().cpu()
    return out


def load_into(module, path, record=None):
    """loads a speedrun weight file into a PyTorch module (strict on names, shapes; ties of record
    N filled in); values are cast to each parameter's dtype (equal to the file's: params.txt)"""
    m = getattr(module, "_orig_mod", module)
    m = getattr(m, "module", m)
    m = getattr(m, "_orig_mod", m)
    tied = ties(record)
    src = read_srw(path)
    params = dict(m.named_parameters(remove_duplicate=False))
    missing = []
    with torch.no_grad():
        for name, p in params.items():
            key = name if name in src else tied.get(name)
            if key is None or key not in src:
                missing.append(name)
                continue
            v = src[key]
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{name}: file shape {tuple(v.shape)} != model shape {tuple(p.shape)}")
            p.copy_(v.to(p.dtype))
    extra = set(src) - set(params)
    if missing or extra:
        raise ValueError(f"weight mismatch: missing in file {missing}, not in model {sorted(extra)}")
    return m


def main(argv):
    if len(argv) < 3 or argv[1] not in ("to-torch", "to-speedrun", "show"):
        print(__doc__)
        return 2
    if argv[1] == "show":
        for k, v in read_srw(argv[2]).items():
            print(f"{k:50s} {str(v.dtype):16s} {tuple(v.shape)}")
        return 0
    if argv[1] == "to-torch":
        sd = read_srw(argv[2])
        if "transformer.wte.weight" in sd and "lm_head.weight" not in sd:
            sd["lm_head.weight"] = sd["transformer.wte.weight"]
        torch.save(sd, argv[3])
    else:
        obj = torch.load(argv[2], map_location="cpu")
        sd = obj.get("model", obj) if isinstance(obj, dict) else obj.state_dict()
        write_srw(argv[3], to_speedrun(sd))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
