#!/usr/bin/python3
"""lora_memory.py - what many LoRA adapters cost in memory: N adapters
(default 100, r = 16 on all five modules, f16 factors, the 7B shape) loaded at
once beside one base model, measured as the process's resident memory before
and after loading them (`baichuan info --lora ...` prints both), against the
adapters' own bytes (r x (in + out) per matrix).

    bench/lora_memory.py --bin build/baichuan --base MODEL [--shape 7b] [-n 100] [--work DIR]

The adapters are written once into DIR (tools/make_lora.py, distinct seeds;
76 MB each at the 7B shape) and reused by later runs. The check: the resident
memory the adapters add is within BOUND of their bytes (BOUND = 2% + 64 MiB:
allocator rounding and page granularity; the mapped adapter files are
unmapped once their factors are copied), and no copy of the base is made.
Prints the figures and PASS/FAIL; exits non-zero on FAIL.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import make_lora  # noqa: E402

GIB = 1024.0 ** 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--base", required=True, help="the base model (a 7B-shape GGUF or directory)")
    ap.add_argument("--shape", default="7b", choices=sorted(make_lora.SHAPES))
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--work", default="/tmp/lora_memory")
    a = ap.parse_args()
    hidden, ff, layers = make_lora.SHAPES[a.shape]
    paths = []
    for i in range(a.n):
        d = os.path.join(a.work, "%s_r%d_%03d" % (a.shape, a.rank, i))
        if not os.path.exists(os.path.join(d, "adapter_model.safetensors")):
            make_lora.write_adapter(d, hidden, ff, layers, list(make_lora.MODULES), rank=a.rank, alpha=32,
                                    dtype="f16", seed=1000 + i)
        paths.append(d)
    per = a.rank * sum(sum(make_lora.dims(m, hidden, ff)) for m in make_lora.MODULES) * layers * 2
    args = [a.bin, "info", "-m", a.base]
    for p in paths:
        args += ["--lora", p]
    out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout.decode()
    m = re.search(r"lora total: +(\d+) adapters?, ([0-9.]+) GiB; resident memory ([0-9.]+) -> ([0-9.]+) GiB", out)
    if m is None:
        sys.exit("lora_memory.py: no 'lora total' line in:\n" + out)
    held, before, after = float(m.group(2)), float(m.group(3)), float(m.group(4))
    added = after - before
    bound = held * 1.02 + 64 / 1024.0
    print("%d adapters, r %d, all modules, %s shape, f16 factors: %.1f MB each by r x (in + out) x 2 bytes"
          % (a.n, a.rank, a.shape, per / 1e6))
    print("held by the adapters (bc_lora_info.bytes): %.3f GiB (factors: %.3f GiB)" % (held, a.n * per / GIB))
    print("resident: base loaded %.3f GiB -> with the adapters %.3f GiB: +%.3f GiB (bound %.3f GiB)"
          % (before, after, added, bound))
    ok = added <= bound
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
