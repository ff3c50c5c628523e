#!/usr/bin/python3
"""Generation end to end: `baichuan run` and `baichuan chat` against the
independent reference (tools/reference.py forward pass in float64, an argmax
loop, SentencePiece's own decoder), for RoPE and ALiBi models.

    test_generate.py --bin build/baichuan --fixtures DIR
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import sentencepiece

import bc_testlib
import reference

FIXTURES = ["gen_rope", "gen_alibi"]
PROMPTS = ["The quick brown fox", "def main():", "Hello world, this is"]
N_TOKENS = 40
USER, ASSISTANT, EOS = 195, 196, 2


class Result:
    """A finished command with its output decoded as UTF-8 (no newline translation:
    a generated "\r" must stay "\r")."""

    def __init__(self, r):
        self.returncode = r.returncode
        self.stdout = r.stdout.decode("utf-8", errors="replace")
        self.stderr = r.stderr.decode("utf-8", errors="replace")


def run(binary, *args, stdin=None):
    data = stdin.encode("utf-8") if stdin is not None else None
    return Result(subprocess.run([binary, *args], capture_output=True, timeout=120, input=data))


def greedy_reference(model, prompt_ids, n, penalty=1.0):
    """argmax loop over full forward passes; HF repetition penalty over prompt + output."""
    ids = list(prompt_ids)
    out = []
    for _ in range(n):
        logits = model.logits(ids)[-1].copy()
        if penalty != 1.0:
            for t in set(ids):
                logits[t] = logits[t] * penalty if logits[t] < 0 else logits[t] / penalty
        nxt = int(np.argmax(logits))
        if nxt == EOS:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def chat_input(sp, turns):
    """The Baichuan chat format (DESIGN.md), without truncation: the inputs here are short."""
    ids = []
    for user, assistant in turns:
        ids += [USER] + sp.encode(user)
        ids += [ASSISTANT] + (sp.encode(assistant) if assistant is not None else [])
    return ids


def stats_of(line):
    """'[R tokens reused from the cache, N new prompt tokens, G generated, ...]' -> (R, N, G)."""
    words = line.strip("[]").replace(",", "").split()
    return int(words[0]), int(words[6]), int(words[10])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args()
    bc_testlib.ensure_fixtures(args.fixtures, FIXTURES)
    t = bc_testlib.Tally()

    for name in FIXTURES:
        d = os.path.join(args.fixtures, name)
        model = reference.load_model(d)
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        long_enough = 0
        for prompt in PROMPTS:
            for penalty in (1.0, 1.3):
                want_ids = greedy_reference(model, sp.encode(prompt), N_TOKENS, penalty)
                want = sp.decode(want_ids)
                r = run(args.bin, "run", "-m", d, "-p", prompt, "-n", str(N_TOKENS), "--temp", "0",
                        "--repeat-penalty", str(penalty))
                got = r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout
                long_enough += len(want_ids) >= 32
                t.record(r.returncode == 0 and got == want,
                         "%s greedy %r penalty %g: %d tokens, %s" % (name, prompt, penalty, len(want_ids),
                                                                   "identical" if got == want else
                                                                   "engine %r vs reference %r %s" % (got, want, r.stderr)))
                t.record("generation:" in r.stderr and "tokens/s" in r.stderr, "%s run prints timings on stderr" % name)
        t.record(long_enough >= 2, "%s: %d greedy runs reached 32+ tokens" % (name, long_enough))

        # A stop string cuts the text before its first occurrence and is not printed.
        full = run(args.bin, "run", "-m", d, "-p", PROMPTS[0], "-n", str(N_TOKENS), "--temp", "0",
                   "--repeat-penalty", "1").stdout[:-1]
        stop = full[len(full) // 2:len(full) // 2 + 3]
        r = run(args.bin, "run", "-m", d, "-p", PROMPTS[0], "-n", str(N_TOKENS), "--temp", "0",
                "--repeat-penalty", "1", "--stop", "zzzq", "--stop", stop)
        want = full[:full.index(stop)]
        t.record(r.returncode == 0 and r.stdout[:-1] == want, "%s --stop %r: %r" % (name, stop, r.stdout[:-1]))

        # Same seed: same text across runs and thread counts; another seed: other text.
        outs = [run(args.bin, "run", "-m", d, "-p", "Once", "-n", "24", "--temp", "1.0", "--top-k", "0",
                    "--seed", "11", "-t", str(th)).stdout for th in (1, 2, 1)]
        t.record(outs[0] == outs[1] == outs[2] and len(outs[0]) > 1, "%s sampling reproducible over runs and "
                 "thread counts" % name)
        other = run(args.bin, "run", "-m", d, "-p", "Once", "-n", "24", "--temp", "1.0", "--top-k", "0",
                    "--seed", "12").stdout
        t.record(other != outs[0], "%s another seed gives other text" % name)

        # Chat through stdin: a reply per line; the second turn runs only the new tokens.
        lines = ["hello there", "and what next"]
        r = run(args.bin, "chat", "-m", d, "--temp", "0", "-n", "12", "--stop", "\n",
                stdin="".join(l + "\n" for l in lines))
        replies = r.stdout.split("\n")[:-1]
        stats = [l for l in r.stderr.splitlines() if l.startswith("[") and "reused" in l]
        ok = r.returncode == 0 and len(replies) == 2 and len(stats) == 2
        t.record(ok, "%s chat: one reply per input line (%d replies, %d stats lines) %s" % (
            name, len(replies), len(stats), r.stderr if not ok else ""))
        if ok:
            first = chat_input(sp, [(lines[0], None)])
            second = chat_input(sp, [(lines[0], replies[0]), (lines[1], None)])
            reused1, new1, _ = stats_of(stats[0])
            reused2, new2, _ = stats_of(stats[1])
            t.record(reused1 == 0 and new1 == len(first), "%s chat turn 1 runs its %d input tokens" % (name, len(first)))
            t.record(reused2 >= len(first) and reused2 + new2 == len(second),
                     "%s chat turn 2 reuses %d cached tokens and runs only %d of its %d" % (
                         name, reused2, new2, len(second)))
            # The first reply is the reference's greedy continuation of the chat input.
            want = sp.decode(greedy_reference(model, first, 12, 1.05)).split("\n")[0]
            t.record(replies[0] == want, "%s chat reply 1 equals the reference: %r vs %r" % (name, replies[0], want))

    # Bad input: one clear line on stderr, exit 1.
    d = os.path.join(args.fixtures, FIXTURES[0])
    for label, argv, needle in [
        ("unknown flag", ["run", "-m", d, "-p", "x", "--frobnicate"], "--frobnicate"),
        ("missing model", ["run", "-m", os.path.join(args.fixtures, "nope"), "-p", "x"], "nope"),
        ("no prompt", ["run", "-m", d], "-p"),
        ("prompt over the context", ["run", "-m", d, "-c", "8", "-p", "a long prompt that is many tokens long"],
         "exceeds the context"),
        ("n beyond the context", ["run", "-m", d, "-c", "64", "-n", "100", "-p", "x"], "exceeds the context"),
        ("empty stop string", ["run", "-m", d, "-p", "x", "--stop", ""], "stop string 1 is empty"),
        ("negative temperature", ["run", "-m", d, "-p", "x", "--temp", "-1"], "temperature"),
        ("top-p out of range", ["run", "-m", d, "-p", "x", "--top-p", "1.5"], "top_p"),
        ("chat unknown flag", ["chat", "-m", d, "--frobnicate"], "--frobnicate"),
    ]:
        r = run(*[args.bin] + argv)
        lines_err = r.stderr.strip().splitlines()
        t.record(r.returncode == 1 and len(lines_err) == 1 and needle in r.stderr and r.stdout == "",
                 "bad input: %s: %s" % (label, r.stderr.strip()))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
