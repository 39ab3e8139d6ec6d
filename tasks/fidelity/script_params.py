#!/usr/bin/env python3
"""script_params.py: the parameters (names, shapes, dtypes) of a benchmark record script's model,
read from the script's own source without PyTorch (tasks/fidelity/README.md).

The script is parsed (ast); its module-level classes and functions are executed against a small
stand-in for torch (fake_torch below: nn.Module with parameter/child registration, nn.Linear,
nn.Embedding, nn.ModuleList/ModuleDict, nn.Parameter, torch.empty/zeros/ones/tensor/randn with
shapes; every other torch call is absorbed). The model is then built with the script's own
constructor call (`model = GPT(...)`, records 1-3 `GPT(model_config)` with args.model = "d12")
and the statements that follow it up to torch.compile/DDP/broadcast (`.bfloat16()`, `m.float()`
on CastedLinear, `m.bfloat16()` on nn.Embedding). named_parameters() then lists what
the real model would hold: names in registration order, tied weights once.

    python3 script_params.py SCRIPT.py            # "name shape dtype" per line
    python3 script_params.py --table DIR          # every DIR/record_N/train_gpt2.py, as params.txt
Library use: extract(src) -> [(name, shape tuple, dtype str)].
"""
import ast
import dataclasses
import math
import sys
import types


class Anything:
    """absorbs every operation (buffers, rotary tables, dtype names, decorators...)"""
    def __init__(self, *a, **k): pass
    def __getattr__(self, name): return Anything()
    def __call__(self, *a, **k): return Anything()
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def __iter__(self): return iter(())
    def __getitem__(self, k): return Anything()
    def __bool__(self): return True
    def __mro_entries__(self, bases): return ()   # class X(torch.optim.Optimizer): a plain class
    def _op(self, *a): return Anything()
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _op
    __pow__ = __rpow__ = __floordiv__ = __neg__ = __matmul__ = _op


class FakeTensor:
    def __init__(self, shape, dtype="float32"):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
    def _self(self, *a, **k): return self
    uniform_ = normal_ = zero_ = fill_ = copy_ = detach = cuda = contiguous = _self
    def bfloat16(self): self.dtype = "bfloat16"; return self
    def float(self): self.dtype = "float32"; return self
    @property
    def data(self): return self
    @property
    def ndim(self): return len(self.shape)
    def dim(self): return len(self.shape)
    def size(self, i=None): return self.shape if i is None else self.shape[i]
    def numel(self): return math.prod(self.shape)
    def __getattr__(self, name): return Anything()


class Parameter(FakeTensor):
    def __init__(self, t=None, requires_grad=True):
        if not isinstance(t, FakeTensor):
            raise TypeError("nn.Parameter of a value whose shape is not known: %r" % (t,))
        super().__init__(t.shape, t.dtype)
        self.src = t


class Module:
    def __init__(self, *a, **k):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            Module.__init__(self)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif value is None and name in ("bias",):
            self._parameters[name] = None
        else:
            object.__setattr__(self, name, value)
    def __getattr__(self, name):
        d = self.__dict__
        if name in d.get("_parameters", {}):
            return d["_parameters"][name]
        if name in d.get("_modules", {}):
            return d["_modules"][name]
        raise AttributeError(name)
    def register_buffer(self, name, value, persistent=True): object.__setattr__(self, name, value)
    def named_modules(self, prefix=""):
        yield prefix, self
        for n, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(prefix + ("." if prefix else "") + n)
    def modules(self):
        for _, m in self.named_modules():
            yield m
    def named_parameters(self, remove_duplicate=True):
        seen = set()
        for mp, m in self.named_modules():
            for n, p in m._parameters.items():
                if p is not None and (id(p) not in seen or not remove_duplicate):
                    seen.add(id(p))
                    yield (mp + "." if mp else "") + n, p
    def parameters(self):
        return [p for _, p in self.named_parameters()]
    def apply(self, fn):
        for m in list(self.modules()):
            fn(m)
        return self
    def _cast(self, dtype):
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.dtype = dtype
        return self
    def bfloat16(self): return self._cast("bfloat16")
    def float(self): return self._cast("float32")
    def _self(self, *a, **k): return self
    cuda = train = eval = to = _self
    def __call__(self, *a, **k): return Anything()


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, **k):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(FakeTensor((out_features, in_features)))
        self.bias = Parameter(FakeTensor((out_features,))) if bias else None
        self.reset_parameters()
    def reset_parameters(self): pass


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, **k):
        super().__init__()
        self.weight = Parameter(FakeTensor((num_embeddings, embedding_dim)))


class ModuleList(Module):
    def __init__(self, mods=()):
        super().__init__()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m
    def __getitem__(self, i): return list(self._modules.values())[i]
    def __iter__(self): return iter(self._modules.values())
    def __len__(self): return len(self._modules)


class ModuleDict(Module):
    def __init__(self, mods=None):
        super().__init__()
        for k, m in (mods or {}).items():
            self._modules[k] = m
    def __getitem__(self, k): return self._modules[k]


def fake_torch():
    """a module tree named torch, torch.nn, torch.nn.functional, ... (anything else absorbed)"""
    class Mod(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Anything()
    torch, nn = Mod("torch"), Mod("torch.nn")
    for name, cls in [("Module", Module), ("Linear", Linear), ("Embedding", Embedding), ("ModuleList", ModuleList),
                      ("ModuleDict", ModuleDict), ("Parameter", Parameter), ("Buffer", lambda t, persistent=True: t)]:
        setattr(nn, name, cls)
    torch.nn = nn
    torch.Tensor = FakeTensor
    for name in ("empty", "zeros", "ones", "randn", "rand"):
        setattr(torch, name, lambda *s, dtype=None, **k: FakeTensor(s[0] if len(s) == 1 and isinstance(s[0], (tuple, list)) else s))
    torch.tensor = lambda v, dtype=None, **k: FakeTensor((len(v),) if isinstance(v, (list, tuple)) else ())
    torch.no_grad = lambda *a, **k: Anything()
    torch.compile = lambda f=None, *a, **k: f if f is not None else (lambda g: g)
    return torch, nn


class Importer:
    """resolves every `import torch...` / `from torch... import ...` to the stand-in"""
    def __init__(self):
        self.torch, self.nn = fake_torch()
    def module(self, name):
        if name == "torch":
            return self.torch
        if name == "torch.nn":
            return self.nn
        return Anything()


def _exec_node(node, g, imp):
    if isinstance(node, ast.Import):
        for a in node.names:
            top = a.name.split(".")[0]
            try:
                if a.asname:
                    g[a.asname] = imp.module(a.name) if top == "torch" else __import__(a.name, fromlist=["x"])
                else:
                    g[top] = imp.module(top) if top == "torch" else __import__(top)
            except ImportError:   # numpy, tiktoken...: not needed to build the model
                g[a.asname or top] = Anything()
        return
    if isinstance(node, ast.ImportFrom):
        for a in node.names:
            if (node.module or "").split(".")[0] == "torch":
                mod = imp.module(node.module)
                g[a.asname or a.name] = getattr(mod, a.name) if node.module == "torch" or node.module == "torch.nn" else Anything()
            else:
                try:
                    g[a.asname or a.name] = getattr(__import__(node.module, fromlist=[a.name]), a.name)
                except Exception:
                    g[a.asname or a.name] = Anything()
        return
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        node.decorator_list = [d for d in node.decorator_list if ast.unparse(d) == "dataclass"]
    exec(compile(ast.Module([node], []), "<script>", "exec"), g)


def _gpt_statement(tree):
    """index of the top-level statement that builds the model (a call to GPT), and that call"""
    for i, node in enumerate(tree.body):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "GPT":
                return i, sub
    raise ValueError("no call to GPT(...) in the script")


def build(src):
    """the script's model, built against the stand-in torch"""
    import os
    for k, v in (("NANOGPT_TRAIN_FILES", "train_*.bin"), ("NANOGPT_VAL_FILES", "val_*.bin"),
                 ("NANOGPT_VAL_TOKENS", "10485760"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)   # the Hyperparameters classes read these
    tree = ast.parse(src)
    g = {"__name__": "script_params", "dataclass": dataclasses.dataclass}
    imp = Importer()
    at, call = _gpt_statement(tree)
    for node in tree.body[:at]:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            _exec_node(node, g, imp)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            try:   # constants such as num_vocab; statements needing the real torch are skipped
                _exec_node(node, g, imp)
            except Exception:
                pass
    if "args" not in g or isinstance(g.get("args"), Anything):
        g["args"] = g["Hyperparameters"]() if "Hyperparameters" in g else types.SimpleNamespace(model="d12")
    # records 1-3 build in main(): GPT(model_config), model_config = {...}[args.model]
    if call.args and isinstance(call.args[0], ast.Name) and call.args[0].id == "model_config":
        g["args"] = types.SimpleNamespace(model="d12")
        for sub in ast.walk(tree.body[at]):
            if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Constant):   # num_vocab = 50304
                _exec_node(sub, g, imp)
            if isinstance(sub, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "model_config" for t in sub.targets):
                g["model_config"] = eval(compile(ast.Expression(sub.value), "<script>", "eval"), g)
    g["model"] = eval(compile(ast.Expression(call), "<script>", "eval"), g)
    # what follows the construction up to compile/DDP: dtype casts of the model's modules
    for node in tree.body[at + 1:]:
        text = ast.unparse(node)
        if any(w in text for w in ("compile", "DDP", "broadcast", "optim", "hidden_matrix_params")):
            break
        if "model" in text and not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            _exec_node(node, g, imp)
    return g["model"]


def extract(src):
    """[(name, shape, dtype)]: the model's named_parameters(), tied weights once"""
    return [(n, p.shape, p.dtype) for n, p in build(src).named_parameters()]


def ties(model):
    """[(alias, name)]: parameters reached under a second name (tied weights: lm_head.weight is
    transformer.wte.weight in records 1-7); named_parameters() lists them once, under name"""
    first, out = {}, []
    for n, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            out.append((n, first[id(p)]))
        else:
            first[id(p)] = n
    return out


def _ranges(ix):
    ix, out, i = sorted(ix), [], 0
    while i < len(ix):
        j = i
        while j + 1 < len(ix) and ix[j + 1] == ix[j] + 1:
            j += 1
        out.append(str(ix[i]) if i == j else f"{ix[i]}-{ix[j]}")
        i = j + 1
    return ",".join(out)


def collapse(params):
    """[(name, shape, dtype)] -> lines "name shape dtype", the first integer component of a name
    collapsed over layers: transformer.h.[0-11].attn.c_q.weight 768x768 float32 (params.txt)"""
    groups, order = {}, []
    for name, shape, dtype in params:
        parts = name.split(".")
        at = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        key = (".".join(parts[:at] + ["#"] + parts[at + 1:]) if at is not None else name,
               "x".join(map(str, shape)) or "scalar", dtype)
        if key not in groups:
            groups[key] = []
            order.append(key)
        if at is not None:
            groups[key].append(int(parts[at]))
    return [f"{k[0].replace('#', '[' + _ranges(groups[k]) + ']')} {k[1]} {k[2]}" for k in order]


HEADER = """# tasks/fidelity/params.txt: the parameters of each benchmark record script's model (llm-speedrunner
# workspace_templates/nanogpt_speedrun/record_N/train_gpt2.py), as `python3 tasks/fidelity/script_params.py
# --table SCRIPTS` reads them from the scripts (names, shapes, dtypes after the scripts' own casts; the
# first integer of a name collapsed over layers). `tied ALIAS NAME`: ALIAS is the same tensor as NAME.
# The recipes' parameters must map 1:1 onto these (tests/harness/test_fidelity_names.lua).
"""


def table(scripts_dir, records=range(1, 22)):
    out = []
    for n in records:
        src = open(f"{scripts_dir}/record_{n}/train_gpt2.py").read()
        model = build(src)
        out.append(f"record {n}")
        out.extend(collapse([(n, p.shape, p.dtype) for n, p in model.named_parameters()]))
        out.extend(f"tied {alias} {name}" for alias, name in ties(model))
    return HEADER + "\n".join(out) + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "--table":
        sys.stdout.write(table(argv[2]))
        return 0
    if len(argv) != 2:
        print(__doc__)
        return 2
    for name, shape, dtype in extract(open(argv[1]).read()):
        print(f"{name} {'x'.join(map(str, shape)) or 'scalar'} {dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
