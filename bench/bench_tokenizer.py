#!/usr/bin/python3
"""Tokenizer speed beside SentencePiece, on the same multi-MB input.

    bench/bench_tokenizer.py [--build build] [--mb 16] [--model tokenizer.model] [--input FILE]

Without --model, trains a Baichuan-like BPE model (identity normalizer, byte
fallback, split digits, whitespace-only pieces; 8000 pieces) on the test
corpus and the project's sources, and also measures a copy grown to 125,696
pieces (Baichuan2's vocabulary size; the extra pieces are random strings of
the corpus' characters, so the tables have Baichuan2's size). Without
--input, the input is lines drawn at random from the same text until it
holds --mb megabytes.

Figures (best of --repeat runs; MB = 10^6 bytes of input):
  baichuan tokenize --lines   the CLI: read, encode every line, print ids
  spm_encode                  SentencePiece's CLI doing the same (--output_format=id)
  library encode / decode     bench_tokenizer: the library alone, no I/O
The two CLIs' outputs are compared byte for byte.
"""
import argparse
import glob
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "python"))
import spm_proto as P  # noqa: E402


def text_lines():
    files = [os.path.join(SRC, "tests", "data", "tok_corpus.txt")]
    for pattern in ("src/*.c", "src/*.h", "include/*.h", "cli/*.c", "README.md"):
        files += sorted(glob.glob(os.path.join(SRC, pattern)))
    lines = []
    for f in files:
        lines += [l for l in open(f, encoding="utf-8").read().split("\n") if l.strip()]
    return lines


def timed(cmd, stdin_path, stdout_path):
    """Wall and CPU seconds of one run of cmd (stdin/stdout from/to files)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(stdin_path, "rb") as fin, open(stdout_path, "wb") as fout:
        r = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def best(cmd, stdin_path, stdout_path, repeat):
    runs = [timed(cmd, stdin_path, stdout_path) for _ in range(repeat)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def grow_vocabulary(src, dst, size, chars):
    m = P.Model.load(src)
    rng = random.Random(3)
    have = {p.piece for p in m.pieces}
    score = min(p.score for p in m.pieces)
    while len(m.pieces) < size:
        s = "".join(rng.choice(chars) for _ in range(rng.randint(2, 6)))
        if s in have:
            continue
        have.add(s)
        score -= 1
        m.pieces.append(P.Piece(s, score))
    m.save(dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SRC, "build"), help="build tree with baichuan and bench_tokenizer")
    ap.add_argument("--mb", type=float, default=16, help="size of the generated input in MB")
    ap.add_argument("--model", help="a tokenizer.model (or model directory) to use instead of training one")
    ap.add_argument("--input", help="a text file to use instead of the generated one")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cli = os.path.join(args.build, "baichuan")
    lib = os.path.join(args.build, "bench_tokenizer")
    work = tempfile.mkdtemp(prefix="bc_bench_tok_")
    try:
        lines = text_lines()
        if args.input:
            data_path = args.input
        else:
            data_path = os.path.join(work, "input.txt")
            rng = random.Random(1)
            out, size = [], 0
            while size < args.mb * 1e6:
                line = rng.choice(lines)
                out.append(line)
                size += len(line.encode("utf-8")) + 1
            open(data_path, "w", encoding="utf-8").write("\n".join(out) + "\n")
        models = []
        if args.model:
            models.append(("given", args.model))
        else:
            train = os.path.join(work, "train.txt")
            open(train, "w", encoding="utf-8").write("\n".join(lines) + "\n")
            prefix = os.path.join(work, "bpe8k")
            subprocess.run(["spm_train", f"--input={train}", f"--model_prefix={prefix}", "--model_type=bpe",
                            "--vocab_size=8000", "--normalization_rule_name=identity", "--add_dummy_prefix=false",
                            "--remove_extra_whitespaces=false", "--byte_fallback=true", "--split_digits=true",
                            "--allow_whitespace_only_pieces=true", "--max_sentence_length=100000",
                            "--hard_vocab_limit=false", "--minloglevel=2"], check=True, capture_output=True)
            models.append(("trained, 8000 pieces", prefix + ".model"))
            chars = sorted(set("".join(lines)))
            big = os.path.join(work, "bpe125k.model")
            grow_vocabulary(prefix + ".model", big, 125696, chars)
            models.append(("grown to 125,696 pieces", big))

        mb = os.path.getsize(data_path) / 1e6
        print(f"input: {data_path if args.input else 'generated'}, {mb:.2f} MB, "
              f"{sum(1 for _ in open(data_path, 'rb'))} lines; best of {args.repeat} runs; "
              f"{os.cpu_count()} CPUs")
        for label, model in models:
            spm_model = model if os.path.isfile(model) else os.path.join(model, "tokenizer.model")
            ours_out, spm_out = os.path.join(work, "ours.txt"), os.path.join(work, "spm.txt")
            ours = best([cli, "tokenize", "-m", model, "--lines"], data_path, ours_out, args.repeat)
            spm = best(["spm_encode", f"--model={spm_model}", "--output_format=id"], data_path, spm_out, args.repeat)
            same = open(ours_out, "rb").read() == open(spm_out, "rb").read()
            r = subprocess.run([lib, model, data_path, str(args.repeat)], capture_output=True, text=True, check=True)
            print(f"\nmodel: {label}")
            print(f"  baichuan tokenize --lines : {mb / ours[0]:7.2f} MB/s wall  {mb / ours[1]:7.2f} MB/s cpu")
            print(f"  spm_encode                : {mb / spm[0]:7.2f} MB/s wall  {mb / spm[1]:7.2f} MB/s cpu")
            print(f"  speed-up (cpu)            : {spm[1] / ours[1]:7.2f}x   outputs identical: {same}")
            for line in r.stdout.splitlines():
                if line.startswith(("library", "model:")):
                    print("  " + line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
