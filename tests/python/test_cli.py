#!/usr/bin/python3
"""The CLI's contract: --help on every command, errors on stderr with a
non-zero exit, and `info` reporting the variant each fixture's config.json
implies (rules from DESIGN.md, restated here independently of the engine)."""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import bc_testlib  # noqa: E402  (tests/python is on sys.path: the script's own directory)

# The embedded default model (RoPE, NormHead, a 1,024-position context).
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "default")
DEFAULT_CONTEXT = 1024  # its config.json's model_max_length

COMMANDS = ["info", "logits", "tokenize", "detokenize", "chat-template", "run", "chat", "quantize", "bench"]

# fixture -> (position encoding, norm head, format, explicit flags) as DESIGN.md defines them
EXPECTED = {
    "b2_7b_f32_st": ("rope", "on", "safetensors", False),
    "b2_7b_bf16_bin_sharded": ("rope", "on", "pytorch", False),
    "b2_13b_f16_st_sharded": ("alibi", "on", "safetensors", False),
    "b1_13b_f32_bin": ("alibi", "off", "pytorch", False),
    "b1_7b_bf16_bin": ("rope", "off", "pytorch", False),
    "b1_7b_f16_st": ("rope", "off", "safetensors", False),
    "override_alibi": ("alibi", "off", "safetensors", True),
}


def run(binary, *args, stdin=None):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, input=stdin)



PROFILE_OPS = ["embedding", "attn_norm", "qkv", "rope", "kv_store", "attention", "o_proj", "residual", "ffn_norm",
               "gate_up", "down", "output_norm", "lm_head", "norm_head", "other"]


def bench_json(binary, *args):
    """(result, parsed --json output or None)."""
    r = run(binary, "bench", *args, "--json")
    try:
        return r, json.loads(r.stdout)
    except ValueError:
        return r, None


def mean_stddev(x):
    m = sum(x) / len(x)
    return m, math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else 0.0


def close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


def stddev_matches(printed, samples):
    """bench prints 6 significant digits: each sample is off by up to 5e-6 of
    its size, which moves the recomputed stddev by about that much of the
    largest sample (a small stddev of large samples is not known to 1e-4)."""
    return abs(printed - mean_stddev(samples)[1]) <= 1e-4 * printed + 2e-5 * max(samples)


def check_bench(c, binary, m):
    """bench's lists, --batch-decode and --profile on a RoPE + NormHead fixture."""
    # Each list value is a test, in llama-bench's order; 0 skips; -p repeats add up.
    r, j = bench_json(binary, "-m", m, "-p", "4,0,8", "-p", "6", "-n", "2,3", "-r", "3", "-t", "2")
    want = [("pp4", 4, 0), ("pp8", 8, 0), ("pp6", 6, 0), ("tg2", 0, 2), ("tg3", 0, 3)]
    try:
        tests = j["tests"]
        ok = (r.returncode == 0 and [(t["test"], t["n_prompt"], t["n_gen"]) for t in tests] == want
              and all(t["n_seq"] == 1 and len(t["samples"]) == 3 and min(t["samples"]) > 0 for t in tests)
              and all(close(t["tokens_per_s"], mean_stddev(t["samples"])[0])
                      and stddev_matches(t["stddev"], t["samples"]) for t in tests)
              # several of a kind: the single-test fields stay empty
              and j["pp_tokens_per_s"] is None and j["pp_samples"] == [] and j["n_prompt"] is None
              and j["tg_tokens_per_s"] is None and j["n_gen"] is None and j["bd_tokens_per_s"] is None)
    except (TypeError, KeyError):
        ok = False
    c.check("bench -p/-n lists: one test per value", ok, r.stdout + r.stderr)
    r = run(binary, "bench", "-m", m, "-p", "4,8", "-n", "2,0,3", "-r", "1", "-t", "2")
    rows = re.findall(r"^\| \S+ .*\|\s+(\w+) \|\s+([\d.]+) ± ([\d.]+) \|$", r.stdout, re.M)
    c.check("bench table: a row per test", r.returncode == 0 and [t for t, _, _ in rows] == ["pp4", "pp8", "tg2", "tg3"]
            and all(float(v) > 0 for _, v, _ in rows), r.stdout + r.stderr)
    # One value of a kind keeps the fields compare_llama.py reads.
    r, j = bench_json(binary, "-m", m, "-p", "0,5", "-n", "0", "-r", "2", "-t", "2")
    try:
        ok = (r.returncode == 0 and [t["test"] for t in j["tests"]] == ["pp5"] and j["n_prompt"] == 5
              and j["pp_samples"] == j["tests"][0]["samples"] and j["pp_tokens_per_s"] == j["tests"][0]["tokens_per_s"]
              and j["tg_tokens_per_s"] is None and j["tg_samples"] == [] and j["n_gen"] == 0)
    except (TypeError, KeyError, IndexError):
        ok = False
    c.check("bench single values keep pp_tokens_per_s / pp_samples", ok, r.stdout + r.stderr)

    # Bad values: a one-line error naming the value, exit 1, nothing on stdout.
    for opt, value, needle in [("-p", "12,,3", "empty value in '12,,3'"), ("-p", "x", "'x'"), ("-p", "-3", "'-3'"),
                               ("-n", "4,-1", "'-1' in '4,-1'"), ("-p", "8,", "empty value"), ("-n", ",8", "empty"),
                               ("-p", "1048577", "1048577"), ("-p", "3.5", "'3.5'"), ("-n", " 4", "' 4'"),
                               ("-p", "", "empty value"), ("--batch-decode", "0", "'0'"),
                               ("--batch-decode", "two", "'two'"), ("-d", "64,x", "'x' in '64,x'"),
                               ("--n-depth", "-1", "'-1'")]:
        r = run(binary, "bench", "-m", m, opt, value, "-r", "1")
        c.check(f"bench {opt} {value!r} refused", r.returncode == 1 and r.stdout == "" and needle in r.stderr
                and len(r.stderr.strip().splitlines()) == 1 and opt in r.stderr, r.stderr)
    r = run(binary, "bench", "-m", m, "-p", "4", "-n", "0,0", "--batch-decode", "2")
    c.check("bench --batch-decode without -n", r.returncode == 1 and "--batch-decode needs -n" in r.stderr
            and len(r.stderr.strip().splitlines()) == 1, r.stderr)

    # --batch-decode N: N sequences, one decode call of N entries per step, the
    # 16-token prompts not timed; N * n_gen / seconds.
    r, j = bench_json(binary, "-m", m, "-p", "0", "-n", "5", "--batch-decode", "3", "-r", "2", "-t", "2",
                      "--profile")
    try:
        bd = [t for t in j["tests"] if t["test"] == "bd3"]
        ok = (r.returncode == 0 and len(bd) == 1 and bd[0]["n_seq"] == 3 and bd[0]["n_gen"] == 5
              and bd[0]["n_prompt"] == 16 and j["batch_decode"] == 3
              and j["bd_tokens_per_s"] > 0 and j["bd_samples"] == bd[0]["samples"] and len(j["bd_samples"]) == 2
              and close(j["bd_tokens_per_s"], mean_stddev(j["bd_samples"])[0])
              and bd[0]["profile"]["decode_calls"] == 2 * 5 and bd[0]["profile"]["tokens"] == 2 * 5 * 3
              # the figure is the steps' tokens over their time
              and close(bd[0]["profile"]["measured_ms_per_token"],
                        sum(15 / v for v in j["bd_samples"]) * 1e3 / 30, 1e-4)
              and [t["test"] for t in j["tests"]] == ["tg5", "bd3"])
    except (TypeError, KeyError, ZeroDivisionError):
        ok = False
    c.check("bench --batch-decode: bd figure, N entries per decode call", ok, r.stdout + r.stderr)
    r = run(binary, "bench", "-m", m, "-p", "0", "-n", "2,3", "--batch-decode", "2", "-r", "1", "-t", "2")
    c.check("bench --batch-decode with an -n list names bd2x2, bd2x3",
            r.returncode == 0 and "bd2x2" in r.stdout and "bd2x3" in r.stdout, r.stdout + r.stderr)

    # --profile: every op, non-negative, adding up (other is the rest) to the
    # time inside the decode calls, which the time around them bounds.
    r, j = bench_json(binary, "-m", m, "-p", "8", "-n", "4", "--batch-decode", "2", "-r", "2", "-t", "2",
                      "--profile")
    try:
        ok = r.returncode == 0 and [t["test"] for t in j["tests"]] == ["pp8", "tg4", "bd2"]
        why = []
        for t in j["tests"]:
            p = t["profile"]
            ops = p["ms_per_token"]
            total, measured = p["total_ms_per_token"], p["measured_ms_per_token"]
            if sorted(ops) != sorted(PROFILE_OPS):
                why.append(f"{t['test']}: ops {sorted(ops)}")
            if min(ops.values()) < 0:
                why.append(f"{t['test']}: negative {ops}")
            if not close(sum(ops.values()), total, 1e-4):
                why.append(f"{t['test']}: sum {sum(ops.values())} != total {total}")
            if not (0.5 * measured <= total <= measured * (1 + 1e-5)):
                why.append(f"{t['test']}: total {total} vs measured {measured}")
            if min(ops[k] for k in ("qkv", "attention", "gate_up", "down", "lm_head", "norm_head", "rope")) <= 0:
                why.append(f"{t['test']}: a step that ran shows no time: {ops}")
        ok = ok and not why
    except (TypeError, KeyError):
        ok, why = False, []
    c.check("bench --profile --json: figures add up", ok, "\n".join(why) + r.stdout + r.stderr)

    # The table: a block per test whose printed rows add up to the total.
    r = run(binary, "bench", "-m", m, "-p", "8", "-n", "4", "--batch-decode", "2", "-r", "1", "-t", "2", "--profile")
    blocks = re.split(r"^profile of (\w+):.*$", r.stdout, flags=re.M)
    names, why = blocks[1::2], []
    for name, body in zip(names, blocks[2::2]):
        rows = re.findall(r"^\| (\w+)\s+\|\s+(-?[\d.]+) \|\s+(-?[\d.]+) \|$", body, re.M)
        if [k for k, _, _ in rows] != PROFILE_OPS + ["total"]:
            why.append(f"{name}: rows {[k for k, _, _ in rows]}")
            continue
        decimals = len(rows[0][1].split(".")[1])
        ms = [float(v) for _, v, _ in rows[:-1]]
        pct = [float(v) for _, _, v in rows[:-1]]
        if min(ms) < 0 or min(pct) < 0:
            why.append(f"{name}: a negative figure")
        if abs(sum(ms) - float(rows[-1][1])) > (len(ms) + 1) * 0.5 * 10 ** -decimals:
            why.append(f"{name}: ms rows add up to {sum(ms)}, total {rows[-1][1]}")
        if abs(sum(pct) - 100) > (len(pct) + 1) * 0.005:
            why.append(f"{name}: % rows add up to {sum(pct)}")
    c.check("bench --profile table: rows add up to the total per test",
            r.returncode == 0 and names == ["pp8", "tg4", "bd2"] and not why, "\n".join(why) + r.stdout + r.stderr)


def check_bench_depth(c, binary):
    """bench -d: every test runs after N positions already in the cache,
    named as llama-bench names it, the filling never timed."""
    m = DEFAULT_MODEL
    r, j = bench_json(binary, "-m", m, "-d", "64", "-p", "16", "-n", "4", "-r", "1")
    try:
        ok = (r.returncode == 0
              and [(t["test"], t["n_depth"], t["n_prompt"], t["n_gen"]) for t in j["tests"]]
              == [("pp16 @ d64", 64, 16, 0), ("tg4 @ d64", 64, 0, 4)]
              and all(len(t["samples"]) == 1 and t["samples"][0] > 0 for t in j["tests"])
              # one depth, one test of each kind: the single-test fields carry them
              and j["n_depth"] == 64 and j["n_prompt"] == 16 and j["n_gen"] == 4
              and j["pp_samples"] == j["tests"][0]["samples"] and j["tg_samples"] == j["tests"][1]["samples"])
    except (TypeError, KeyError):
        ok = False
    c.check("bench -d 64: tests at depth 64", ok, r.stdout + r.stderr)

    # Several depths: depth by depth, pp then tg then bd (llama-bench's order),
    # d0 named plainly. The profile counts only the timed decode calls: the
    # depth fill, the warm-up and the bd prompts are not in it.
    r, j = bench_json(binary, "-m", m, "-d", "0,48", "-p", "8", "-n", "3", "--batch-decode", "2", "-r", "2",
                      "-t", "2", "--profile")
    want = [("pp8", 0, 1, 8), ("tg3", 0, 3, 3), ("bd2", 0, 3, 6),
            ("pp8 @ d48", 48, 1, 8), ("tg3 @ d48", 48, 3, 3), ("bd2 @ d48", 48, 3, 6)]
    try:
        got = [(t["test"], t["n_depth"], t["profile"]["decode_calls"] // 2, t["profile"]["tokens"] // 2)
               for t in j["tests"]]
        ok = (r.returncode == 0 and got == want and j["n_depth"] is None and j["pp_tokens_per_s"] is None
              and all(min(t["samples"]) > 0 for t in j["tests"])
              and all(t["profile"]["decode_calls"] % 2 == 0 and t["profile"]["tokens"] % 2 == 0 for t in j["tests"]))
    except (TypeError, KeyError):
        ok, got = False, None
    c.check("bench -d 0,48 --batch-decode 2: a test per depth, fill not timed", ok, f"{got}\n{r.stdout}{r.stderr}")

    # The depth is in the cache: a generated token at position 1020 attends
    # to 1,021-1,024 keys, at position 0 to 1-4 (attention per token at least
    # 4x). 1020 + 4 positions is the whole context: the last that fits.
    depth = DEFAULT_CONTEXT - 4
    r, j = bench_json(binary, "-m", m, "-d", f"0,{depth}", "-p", "0", "-n", "4", "-r", "2", "-t", "1", "--profile")
    try:
        att = {t["test"]: t["profile"]["ms_per_token"]["attention"] for t in j["tests"]}
        ok = (r.returncode == 0 and sorted(att) == ["tg4", f"tg4 @ d{depth}"]
              and att[f"tg4 @ d{depth}"] > 4 * att["tg4"])
    except (TypeError, KeyError):
        ok, att = False, None
    c.check(f"bench -d {depth} -n 4 (the whole context): attention per generated token grows with the depth", ok,
            f"{att}\n{r.stderr}")

    # The table names the tests as llama-bench does.
    r = run(binary, "bench", "-m", m, "-d", "0,32", "-p", "8", "-n", "2", "-r", "1", "-t", "2")
    rows = re.findall(r"^\| \S+ .*\|\s+(\w+(?: @ d\d+)?) \|\s+([\d.]+) ± ([\d.]+) \|$", r.stdout, re.M)
    c.check("bench -d table: 'pp8 @ d32' rows",
            r.returncode == 0 and [t for t, _, _ in rows] == ["pp8", "tg2", "pp8 @ d32", "tg2 @ d32"],
            r.stdout + r.stderr)

    # Depth + the test's tokens must fit the model's context (1,024; the whole
    # of it was accepted above): one position more is refused with a line
    # naming -d.
    for argv in (["-d", str(DEFAULT_CONTEXT), "-p", "16", "-n", "0"],
                 ["-d", "0," + str(DEFAULT_CONTEXT - 20), "-p", "0", "-n", "21"],
                 ["-d", str(DEFAULT_CONTEXT - 16), "-p", "0", "-n", "1", "--batch-decode", "2"]):
        r = run(binary, "bench", "-m", m, *argv, "-r", "1")
        c.check(f"bench {' '.join(argv)}: past the context, refused",
                r.returncode == 1 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
                and f"-d {argv[1].split(',')[-1]}" in r.stderr and str(DEFAULT_CONTEXT) in r.stderr, r.stderr)


def parse_info(text):
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args()
    c = bc_testlib.Tally()

    r = run(args.bin, "--help")
    c.check("baichuan --help", r.returncode == 0 and all(cmd in r.stdout for cmd in COMMANDS), r.stderr)
    r = run(args.bin)
    c.check("no command is an error", r.returncode != 0 and "usage" in r.stderr)
    r = run(args.bin, "frobnicate")
    c.check("unknown command", r.returncode == 1 and "unknown command 'frobnicate'" in r.stderr, r.stderr)
    for cmd in COMMANDS:
        r = run(args.bin, cmd, "--help")
        c.check(f"{cmd} --help", r.returncode == 0 and r.stdout.startswith("usage: baichuan " + cmd), r.stderr)
        r = run(args.bin, cmd, "--no-such-flag")
        c.check(f"{cmd} unknown flag", r.returncode == 1 and "--no-such-flag" in r.stderr and r.stdout == "",
                r.stderr)
        r = run(args.bin, cmd, "-m")
        c.check(f"{cmd} -m without value", r.returncode == 1 and "needs a value" in r.stderr, r.stderr)

    fx = lambda name: os.path.join(args.fixtures, name)
    for name, (pos, nh, fmt, explicit) in EXPECTED.items():
        r = run(args.bin, "info", "-m", fx(name))
        info = parse_info(r.stdout)
        how = "explicit" if explicit else "detected"
        ok = (r.returncode == 0 and info.get("position") == f"{pos} ({how})"
              and info.get("norm head") == f"{nh} ({how})" and info.get("format", "").startswith(fmt))
        c.check(f"info {name}: {pos}, norm head {nh}, {fmt}", ok, r.stdout + r.stderr)
        cfg = json.load(open(os.path.join(fx(name), "config.json")))
        ok = (info.get("n_vocab") == str(cfg["vocab_size"]) and info.get("n_embd") == str(cfg["hidden_size"])
              and info.get("n_layer") == str(cfg["num_hidden_layers"]))
        c.check(f"info {name}: shapes match config.json", ok, r.stdout)

    # Baichuan-7B stores rotary_emb.inv_freq per layer: loaded and ignored.
    r = run(args.bin, "info", "-m", fx("b1_7b_bf16_bin"))
    n_layer = json.load(open(os.path.join(fx("b1_7b_bf16_bin"), "config.json")))["num_hidden_layers"]
    c.check("inv_freq tensors ignored", parse_info(r.stdout).get("ignored", "").startswith(f"{n_layer} tensors"),
            r.stdout + r.stderr)

    # Flags win over config.json.
    r = run(args.bin, "info", "-m", fx("b2_7b_f32_st"), "--pos-encoding", "alibi", "--norm-head", "off")
    info = parse_info(r.stdout)
    c.check("flags override detection", info.get("position") == "alibi (explicit)"
            and info.get("norm head") == "off (explicit)", r.stdout + r.stderr)
    r = run(args.bin, "info", "-m", fx("b2_7b_f32_st"), "--pos-encoding", "sideways")
    c.check("bad --pos-encoding value", r.returncode == 1 and "sideways" in r.stderr, r.stderr)

    # logits argument errors
    out = os.path.join(args.fixtures, "cli_test_out.f32")
    m = fx("b2_7b_f32_st")
    for label, argv, needle in [
        ("logits without --tokens", ["-m", m, "-o", out], "--tokens"),
        ("logits without -o", ["-m", m, "--tokens", "1 2"], "-o"),
        ("logits bad token text", ["-m", m, "--tokens", "1 two", "-o", out], "two"),
        ("logits token outside vocab", ["-m", m, "--tokens", "1 125696", "-o", out], "125696"),
        ("logits empty tokens", ["-m", m, "--tokens", " ", "-o", out], "no token"),
        ("logits unwritable output", ["-m", m, "--tokens", "1", "-o", "/nonexistent/dir/x"], "/nonexistent/dir/x"),
        ("logits missing model", ["-m", fx("no_such_model"), "--tokens", "1", "-o", out], "no_such_model"),
    ]:
        r = run(args.bin, "logits", *argv)
        c.check(label, r.returncode == 1 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1,
                r.stderr)

    # A logits file has exactly n_tokens x n_vocab floats.
    r = run(args.bin, "logits", "-m", m, "--tokens", "5,6 7", "-o", out)
    c.check("logits file size", r.returncode == 0 and os.path.getsize(out) == 3 * 125696 * 4, r.stderr)
    os.remove(out)

    # bench --json: one JSON object with the fields checks rely on.
    r = run(args.bin, "bench", "-m", m, "-p", "8", "-n", "4", "-r", "2", "-t", "2", "--json")
    try:
        j = json.loads(r.stdout)
        ok = (r.returncode == 0 and all(k in j for k in ("pp_tokens_per_s", "tg_tokens_per_s", "model_bytes",
                                                             "n_params", "threads"))
              and j["pp_tokens_per_s"] > 0 and j["tg_tokens_per_s"] > 0 and j["threads"] == 2
              and j["n_params"] > 0 and j["model_bytes"] > 0 and len(r.stdout.strip().splitlines()) == 1)
    except (ValueError, TypeError, KeyError):
        ok = False
    c.check("bench --json fields", ok, r.stdout + r.stderr)
    r = run(args.bin, "bench", "-m", m, "-p", "8", "-n", "4", "-r", "2")
    c.check("bench table", r.returncode == 0 and "pp8" in r.stdout and "tg4" in r.stdout, r.stdout + r.stderr)
    r = run(args.bin, "bench", "-m", m, "-p", "0", "-n", "0")
    c.check("bench with nothing to measure", r.returncode == 1 and "nothing to measure" in r.stderr, r.stderr)
    check_bench(c, args.bin, m)
    check_bench_depth(c, args.bin)
    r = run(args.bin, "quantize", m)
    c.check("quantize without OUT", r.returncode == 1 and "OUT" in r.stderr, r.stderr)

    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
