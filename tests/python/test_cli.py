#!/usr/bin/python3
"""The CLI's contract: --help on every command, errors on stderr with a
non-zero exit, and `info` reporting the variant each fixture's config.json
implies (rules from DESIGN.md, restated here independently of the engine)."""
import argparse
import json
import os
import subprocess
import sys
import bc_testlib  # noqa: E402  (tests/python is on sys.path: the script's own directory)

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
    r = run(args.bin, "quantize", m)
    c.check("quantize without OUT", r.returncode == 1 and "OUT" in r.stderr, r.stderr)

    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
