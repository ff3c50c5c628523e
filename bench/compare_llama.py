#!/usr/bin/python3
"""Side-by-side speed of `baichuan bench` and llama.cpp's `llama-bench` on the
same model files, in one run, reported as ratios.

    bench/compare_llama.py --llama-bench /tmp/llama.cpp/build/bin/llama-bench \\
        -m /tmp/b1b-q4_0.gguf -m /tmp/b1b-q8_0.gguf [-t 2] [-p 128,512] [-n 32] [--rounds 5]

    bench/compare_llama.py ... -m /tmp/b1b-f16.gguf --ours /tmp/b1b
        (our figure from another file of the same model, e.g. bf16 safetensors
        against llama.cpp's F16 GGUF)

    bench/compare_llama.py --llama-batched-bench /tmp/llama.cpp/build/bin/llama-batched-bench \\
        --batch-decode 4 -m /tmp/b1b-q4_0.gguf [-n 32]
        (batched generation: `llama-batched-bench -npp 16 -ntg n -npl 4`'s
        S_TG against our bd4 test, `baichuan bench --batch-decode 4 -p 0 -n n`:
        generated tokens/s of 4 sequences decoding together)

    bench/compare_llama.py --llama-batched-bench /tmp/llama.cpp/build/bin/llama-batched-bench \\
        --depth-prompt 3953 -n 64 [--llama-fa] -m /tmp/b1b-q4_0.gguf
        (long context: `llama-batched-bench -npp 3953 -ntg 64 -npl 1`'s S_PP
        against our pp3953, `baichuan bench -p 3953 -n 0` (a prompt from an
        empty cache), and its S_TG, generated tokens/s after the 3953-token
        prompt, against our `tg64 @ d3953`, `baichuan bench -d 3953 -p 0
        -n 64`; this llama.cpp's llama-bench has no -d. --llama-fa runs
        llama.cpp a second time with flash attention, `-fa` (a newer
        llama.cpp, whose -fa takes on/off/auto and defaults to auto:
        --llama-fa='-fa on' --llama-nofa='-fa off'); the report gives both
        and the ratio to the better of the two)

-p and -n take comma-separated lists, passed to both tools; each value is a
test (pp<n>, tg<n>; bd<N>, or bd<N>x<n> for several -n values). With both
--llama-bench and --llama-batched-bench, one run of ours gives every test.

The tools alternate (ours, llama.cpp, ours, ...) for --rounds rounds of
--reps repetitions each, so that load from other processes on a shared
machine hits both alike. Every per-repetition tokens/s figure is kept; the
report gives the median and the best of each tool and their ratios (ours /
llama.cpp). The best is the least disturbed run on a noisy machine; the
median is what a user sees. llama.cpp is not part of this project: build it
yourself and pass the paths of its llama-bench and llama-batched-bench.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BD_PROMPT = 16  # prompt tokens per sequence of a bd test, as baichuan bench uses


def int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' has a negative value")
    return values


def list_arg(values):
    return ",".join(str(v) for v in values)


def bd_name(n_seq, n_gen, gens):
    """Our name of a bd test (cli/cmd_bench.c): bd<N>, or bd<N>x<n> when -n has several values."""
    return f"bd{n_seq}" if len([g for g in gens if g > 0]) == 1 else f"bd{n_seq}x{n_gen}"


def depth_names(depth, gens):
    """Our names of the --depth-prompt tests: pp<D>, then tg<n> @ d<D> (cli/cmd_bench.c)."""
    return [f"pp{depth}"] + [f"tg{n} @ d{depth}" for n in gens if n > 0]


def run_ours(exe, model, args, prompts, gens, batch_decode, depth=0):
    """{test name: [tokens/s per repetition]} from `baichuan bench --json`."""
    cmd = [exe, "bench", "-m", model, "-p", list_arg(prompts), "-n", list_arg(gens), "-t", str(args.t),
           "-r", str(args.reps), "--json"] + (["--batch-decode", str(batch_decode)] if batch_decode else []) \
        + (["-d", str(depth)] if depth else []) + args.ours_flag
    d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    samples = {}
    for t in d["tests"]:
        samples.setdefault(t["test"], []).extend(t["samples"])
    return samples


def run_llama(exe, model, args):
    """{pp<n> / tg<n>: [tokens/s per repetition]} from llama-bench's jsonl."""
    cmd = [exe, "-m", model, "-p", list_arg(args.p), "-n", list_arg(args.n), "-t", str(args.t),
           "-r", str(args.reps), "-o", "jsonl"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    samples = {}
    for line in out.splitlines():
        d = json.loads(line)
        name = f"pp{d['n_prompt']}" if d["n_gen"] == 0 else f"tg{d['n_gen']}"
        samples.setdefault(name, []).extend(d["samples_ts"])
    return samples


def run_llama_batched(exe, model, args, flags):
    """{bd name: [S_TG per repetition]} from llama-batched-bench's jsonl: N
    sequences with their own (not shared) 16-token prompt, then n steps of N
    tokens; speed_tg = N * n / (time of the steps). Each -ntg value is listed
    --reps times, so that one run gives every repetition. The KV cache is
    shared by the sequences, so -c must hold N * (16 + n) cells, or
    llama-batched-bench skips the test without a word."""
    gens = [g for g in args.n if g > 0]
    n_seq = args.batch_decode
    cmd = [exe, "-m", model, "-npp", str(BD_PROMPT), "-ntg", list_arg([g for g in gens for _ in range(args.reps)]),
           "-npl", str(n_seq), "-t", str(args.t), "-c", str(n_seq * (BD_PROMPT + max(gens))),
           "-b", str(max(2048, n_seq * BD_PROMPT)), "--output-format", "jsonl"] + flags
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    samples = {}
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            samples.setdefault(bd_name(d["pl"], d["tg"], args.n), []).append(d["speed_tg"])
    if sum(len(v) for v in samples.values()) != len(gens) * args.reps:
        sys.exit(f"compare_llama: llama-batched-bench gave {samples} for {' '.join(cmd)}")
    return samples


def run_ours_depth(exe, model, args):
    """pp<D> (a D-token prompt from an empty cache) and tg<n> @ d<D> (n tokens
    generated after D in the cache): two runs of ours, as llama-batched-bench
    measures both in one."""
    samples = run_ours(exe, model, args, [args.depth_prompt], [0], 0)
    samples.update(run_ours(exe, model, args, [0], args.n, 0, depth=args.depth_prompt))
    return samples


def run_llama_batched_depth(exe, model, args, flags):
    """{pp<D>: [S_PP], tg<n> @ d<D>: [S_TG]} from llama-batched-bench -npp D
    -ntg n -npl 1, one sequence: each line a D-token prompt from an empty
    cache (S_PP = D / T_PP) and then n single-token steps from position D
    (S_TG = n / T_TG). Each -ntg value is listed --reps times, so that one run
    gives every repetition; -c holds D + the largest n (llama-batched-bench
    skips a test that does not fit without a word)."""
    gens = [g for g in args.n if g > 0]
    depth = args.depth_prompt
    cmd = [exe, "-m", model, "-npp", str(depth), "-ntg", list_arg([g for g in gens for _ in range(args.reps)]),
           "-npl", "1", "-t", str(args.t), "-c", str(depth + max(gens)), "--output-format", "jsonl"] + flags
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    samples = {}
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            samples.setdefault(f"pp{d['pp']}", []).append(d["speed_pp"])
            samples.setdefault(f"tg{d['tg']} @ d{d['pp']}", []).append(d["speed_tg"])
    if sorted(samples) != sorted(depth_names(depth, gens)) or \
            sum(len(v) for v in samples.values()) != 2 * len(gens) * args.reps:
        sys.exit(f"compare_llama: llama-batched-bench gave {samples} for {' '.join(cmd)}")
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-bench", help="path of llama.cpp's llama-bench (pp and tg tests)")
    ap.add_argument("--llama-batched-bench",
                    help="path of llama.cpp's llama-batched-bench (with --batch-decode or --depth-prompt)")
    ap.add_argument("--batch-decode", type=int, default=0, metavar="N",
                    help="sequences decoding together for the bd test (with --llama-batched-bench)")
    ap.add_argument("--depth-prompt", type=int, default=0, metavar="D",
                    help="long context (with --llama-batched-bench): a D-token prompt, then -n tokens generated "
                         "at depth D")
    ap.add_argument("--llama-fa", nargs="?", const="-fa", default=None, metavar="FLAGS",
                    help="also run llama-batched-bench with flash attention: these flags (default -fa) added")
    ap.add_argument("--llama-nofa", default="", metavar="FLAGS",
                    help="flags for llama-batched-bench's run without flash attention (default none; "
                         "'-fa off' for a llama.cpp whose -fa defaults to auto)")
    ap.add_argument("--baichuan", default=os.path.join(HERE, "..", "build", "baichuan"))
    ap.add_argument("-m", action="append", required=True, help="GGUF file (repeatable)")
    ap.add_argument("--ours", action="append", help="our model for the matching -m (default: the same file)")
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-p", type=int_list, default=None, help="prompt sizes, comma-separated (default 128)")
    ap.add_argument("-n", type=int_list, default=[32], help="generation sizes, comma-separated (default 32)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--ours-flag", action="append", default=[], help="extra flag for baichuan bench (repeatable)")
    args = ap.parse_args()
    ours_models = args.ours or []
    if len(ours_models) not in (0, len(args.m)):
        sys.exit("compare_llama: give --ours once per -m, or not at all")
    if not args.llama_bench and not args.llama_batched_bench:
        sys.exit("compare_llama: give --llama-bench, --llama-batched-bench, or both")
    if args.batch_decode < 0 or args.depth_prompt < 0:
        sys.exit("compare_llama: --batch-decode and --depth-prompt take N >= 1")
    if args.batch_decode and args.depth_prompt:
        sys.exit("compare_llama: --batch-decode and --depth-prompt are separate comparisons: give one")
    if bool(args.llama_batched_bench) != bool(args.batch_decode or args.depth_prompt):
        sys.exit("compare_llama: --llama-batched-bench goes with --batch-decode N or --depth-prompt D (N, D >= 1)")
    if (args.batch_decode or args.depth_prompt) and not any(g > 0 for g in args.n):
        sys.exit(f"compare_llama: {'--batch-decode' if args.batch_decode else '--depth-prompt'} needs -n > 0")
    if args.depth_prompt and (args.llama_bench or args.p is not None):
        sys.exit("compare_llama: --depth-prompt D is its own comparison (the prompt is D tokens): "
                 "no --llama-bench or -p with it")
    if args.llama_fa is not None and not args.llama_batched_bench:
        sys.exit("compare_llama: --llama-fa goes with --llama-batched-bench")
    if args.p is None:
        args.p = [128]
    # llama.cpp's runs per round: (key, flags, label); with --llama-fa, without and with flash attention.
    llama_runs = [("llama", shlex.split(args.llama_nofa), "fa off")]
    if args.llama_fa is not None:
        llama_runs.append(("llama-fa", shlex.split(args.llama_fa), "fa on"))

    # Ours in one run per round: every test when llama-bench runs too, else only bd (and its tg, ignored).
    ours_prompts = args.p if args.llama_bench else [0]
    names = ([f"pp{p}" for p in args.p if p > 0] + [f"tg{n}" for n in args.n if n > 0] if args.llama_bench else []) \
        + ([bd_name(args.batch_decode, n, args.n) for n in args.n if n > 0] if args.batch_decode else []) \
        + (depth_names(args.depth_prompt, args.n) if args.depth_prompt else [])
    names = list(dict.fromkeys(names))
    w = max(6, *(len(n) for n in names))
    print(f"threads {args.t}, tests {', '.join(names)}, {args.rounds} rounds x {args.reps} repetitions, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    # With --llama-fa a row per llama.cpp run and one against the better of them (by median, and by best).
    labels = len(llama_runs) > 1
    print(f"{'model':<28} {'test':<{w}} " + (f"{'llama.cpp':<9} " if labels else "")
          + f"{'ours med':>9} {'llama med':>9} {'ratio':>6}   {'ours best':>9} {'llama best':>10} {'ratio':>6}")
    for i, model in enumerate(args.m):
        ours_model = ours_models[i] if ours_models else model
        samples = {(tool, name): [] for tool in ["ours"] + [k for k, _, _ in llama_runs] for name in names}
        for _ in range(args.rounds):
            if args.depth_prompt:
                runs = [("ours", run_ours_depth(args.baichuan, ours_model, args))]
                runs += [(key, run_llama_batched_depth(args.llama_batched_bench, model, args, flags))
                         for key, flags, _ in llama_runs]
            else:
                runs = [("ours", run_ours(args.baichuan, ours_model, args, ours_prompts, args.n, args.batch_decode))]
                if args.llama_bench:
                    runs.append(("llama", run_llama(args.llama_bench, model, args)))
                if args.llama_batched_bench:
                    runs += [(key, run_llama_batched(args.llama_batched_bench, model, args, flags))
                             for key, flags, _ in llama_runs]
            for tool, got in runs:
                for name in names:
                    samples[tool, name] += got.get(name, [])
        name = os.path.basename(model) if not ours_models else \
            f"{os.path.basename(ours_model.rstrip('/'))}|{os.path.basename(model)}"
        for test in names:
            o = samples["ours", test]
            ls = [(label, samples[key, test]) for key, _, label in llama_runs if samples[key, test]]
            if not o or not ls:
                continue
            om, ob = statistics.median(o), max(o)
            rows = [(label, statistics.median(l), max(l)) for label, l in ls]
            if labels:
                rows.append(("better", max(lm for _, lm, _ in rows), max(lb for _, _, lb in rows)))
            for label, lm, lb in rows:
                print(f"{name:<28} {test:<{w}} " + (f"{label:<9} " if labels else "")
                      + f"{om:9.2f} {lm:9.2f} {om / lm:6.2f}   {ob:9.2f} {lb:10.2f} {ob / lb:6.2f}")
        sys.stdout.flush()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
