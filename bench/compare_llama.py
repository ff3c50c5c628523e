#!/usr/bin/python3
"""Side-by-side speed of `baichuan bench` and llama.cpp's `llama-bench` on the
same model files, in one run, reported as ratios.

    bench/compare_llama.py --llama-bench /tmp/llama.cpp/build/bin/llama-bench \\
        -m /tmp/b1b-q4_0.gguf -m /tmp/b1b-q8_0.gguf [-t 2] [-p 128] [-n 32] [--rounds 5]

    bench/compare_llama.py ... -m /tmp/b1b-f16.gguf --ours /tmp/b1b
        (our figure from another file of the same model, e.g. bf16 safetensors
        against llama.cpp's F16 GGUF)

The tools alternate (ours, llama.cpp, ours, ...) for --rounds rounds of
--reps repetitions each, so that load from other processes on a shared
machine hits both alike. Every per-repetition tokens/s figure is kept; the
report gives the median and the best of each tool and their ratios (ours /
llama.cpp). The best is the least disturbed run on a noisy machine; the
median is what a user sees. llama.cpp is not part of this project: build it
yourself and pass the path of its llama-bench.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_ours(exe, model, args):
    cmd = [exe, "bench", "-m", model, "-p", str(args.p), "-n", str(args.n), "-t", str(args.t),
           "-r", str(args.reps), "--json"] + args.ours_flag
    d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return d.get("pp_samples", []), d.get("tg_samples", [])


def run_llama(exe, model, args):
    cmd = [exe, "-m", model, "-p", str(args.p), "-n", str(args.n), "-t", str(args.t),
           "-r", str(args.reps), "-o", "jsonl"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    pp, tg = [], []
    for line in out.splitlines():
        d = json.loads(line)
        (pp if d["n_prompt"] > 0 else tg).extend(d["samples_ts"])
    return pp, tg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-bench", required=True, help="path of llama.cpp's llama-bench")
    ap.add_argument("--baichuan", default=os.path.join(HERE, "..", "build", "baichuan"))
    ap.add_argument("-m", action="append", required=True, help="GGUF file (repeatable)")
    ap.add_argument("--ours", action="append", help="our model for the matching -m (default: the same file)")
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--ours-flag", action="append", default=[], help="extra flag for baichuan bench (repeatable)")
    args = ap.parse_args()
    ours_models = args.ours or []
    if len(ours_models) not in (0, len(args.m)):
        sys.exit("compare_llama: give --ours once per -m, or not at all")

    print(f"threads {args.t}, pp{args.p}, tg{args.n}, {args.rounds} rounds x {args.reps} repetitions, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'model':<28} {'test':<6} {'ours med':>9} {'llama med':>9} {'ratio':>6}   "
          f"{'ours best':>9} {'llama best':>10} {'ratio':>6}")
    for i, model in enumerate(args.m):
        ours_model = ours_models[i] if ours_models else model
        samples = {("ours", "pp"): [], ("ours", "tg"): [], ("llama", "pp"): [], ("llama", "tg"): []}
        for _ in range(args.rounds):
            pp, tg = run_ours(args.baichuan, ours_model, args)
            samples["ours", "pp"] += pp
            samples["ours", "tg"] += tg
            pp, tg = run_llama(args.llama_bench, model, args)
            samples["llama", "pp"] += pp
            samples["llama", "tg"] += tg
        name = os.path.basename(model) if not ours_models else \
            f"{os.path.basename(ours_model.rstrip('/'))}|{os.path.basename(model)}"
        for test, size in (("pp", args.p), ("tg", args.n)):
            o, l = samples["ours", test], samples["llama", test]
            if not o or not l:
                continue
            om, lm, ob, lb = statistics.median(o), statistics.median(l), max(o), max(l)
            print(f"{name:<28} {test}{size:<4} {om:9.2f} {lm:9.2f} {om / lm:6.2f}   {ob:9.2f} {lb:10.2f} "
                  f"{ob / lb:6.2f}")
        sys.stdout.flush()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
