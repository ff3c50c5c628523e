#!/usr/bin/python3
"""`baichuan chat-template` against an independent implementation of the
Baichuan chat format (the rules of DESIGN.md, written the way the Chat
models' build_chat_input states them), with SentencePiece doing the encoding.

Model directories with the official settings, with custom role ids and a
small model_max_length (so that history truncation and the left cut happen
often), and without any JSON (defaults); random conversations of every shape
(system or not, assistant first, consecutive users, ending on either role,
empty contents, newlines), several --max-new-tokens; then every documented
error.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys

import sentencepiece as spm
import bc_testlib  # noqa: E402  (tests/python is on sys.path: the script's own directory)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))



def reference(sp, messages, user_id, assistant_id, max_length, max_new_tokens):
    """The chat input, restated from the rules (not from the engine)."""
    system, rounds, current = "", [], []
    for i, m in enumerate(messages):
        if m["role"] == "system":
            assert i == 0
            system = m["content"]
            continue
        if m["role"] == "user" and current:
            rounds.append(current)
            current = []
        current.append(m)
    if current:
        rounds.append(current)
    max_input = max_length - max_new_tokens
    system_tokens = sp.encode(system)
    max_history = max_input - len(system_tokens)
    history = []
    for r in reversed(rounds):
        tokens = []
        for m in r:
            tokens.append(user_id if m["role"] == "user" else assistant_id)
            tokens += sp.encode(m["content"])
        if not history or len(history) + len(tokens) <= max_history:
            history = tokens + history
            if len(history) < max_history:
                continue
        break
    ids = system_tokens + history
    if messages[-1]["role"] != "assistant":
        ids.append(assistant_id)
    return ids[-max_input:]


def run(args, data):
    return subprocess.run(args, input=data, capture_output=True, timeout=120)


def one_error_line(r):
    err = r.stderr.decode(errors="replace")
    return r.returncode == 1 and err.startswith("baichuan: error: ") and err.count("\n") == 1 and r.stdout == b""


def conversation(rng, texts):
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(texts) if rng.random() < 0.9 else ""})
    n = rng.randint(1, 9)
    role = "user" if rng.random() < 0.85 else "assistant"
    for _ in range(n):
        k = rng.randint(1, 4)
        content = "\n".join(rng.choice(texts) for _ in range(k)) if rng.random() < 0.95 else ""
        msgs.append({"role": role, "content": content})
        r = rng.random()
        role = ("assistant" if role == "user" else "user") if r < 0.85 else role
    return msgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cache", help="keep the trained SentencePiece model here (keyed by its inputs)")
    args = ap.parse_args()
    c = bc_testlib.Tally()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)

    corpus = open(os.path.join(SRC, "tests", "data", "tok_corpus.txt"), encoding="utf-8").read().split("\n")
    texts = [t for t in corpus if t.strip()]
    train = os.path.join(args.work, "train.txt")
    open(train, "w", encoding="utf-8").write("\n".join(texts) + "\n")
    try:
        model = bc_testlib.spm_train(
            train, os.path.join(args.work, "tok"),
            ["--model_type=bpe", "--vocab_size=3000", "--normalization_rule_name=identity", "--add_dummy_prefix=false",
             "--remove_extra_whitespaces=false", "--byte_fallback=true", "--split_digits=true",
             "--allow_whitespace_only_pieces=true", "--minloglevel=2",
             "--control_symbols=" + ",".join(f"<reserved_{i}>" for i in range(2, 200))], cache=args.cache)
    except RuntimeError as e:
        print(e)
        return 1
    sp = spm.SentencePieceProcessor(model_file=model)

    def make_dir(name, gen=None, cfg=None):
        d = os.path.join(args.work, name)
        os.makedirs(d)
        shutil.copy(model, os.path.join(d, "tokenizer.model"))
        if gen is not None:
            json.dump(gen, open(os.path.join(d, "generation_config.json"), "w"))
        if cfg is not None:
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        json.dump({"add_bos_token": False, "add_eos_token": False}, open(os.path.join(d, "tokenizer_config.json"), "w"))
        return d

    # name -> (path, user id, assistant id, model_max_length, default max_new_tokens)
    dirs = {
        "official": (make_dir("official", {"user_token_id": 195, "assistant_token_id": 196, "max_new_tokens": 2048},
                              {"model_max_length": 4096}), 195, 196, 4096, 2048),
        "small_context": (make_dir("small", {"user_token_id": 7, "assistant_token_id": 8, "max_new_tokens": 32},
                                   {"model_max_length": 96}), 7, 8, 96, 32),
        "tiny_context": (make_dir("tiny", {"user_token_id": 195, "assistant_token_id": 196, "max_new_tokens": 8},
                                  {"max_position_embeddings": 40}), 195, 196, 40, 8),
        "no_json": (make_dir("nojson"), 195, 196, 4096, 2048),
        "bare_file": (model, 195, 196, 4096, 2048),
    }
    rng = random.Random(195196)
    for name, (path, uid, aid, max_len, default_new) in dirs.items():
        budgets = [None] + sorted({1, max_len // 4, max_len // 2, max_len - 20, max_len - 2, max_len - 1} - {0})
        budgets = [b for b in budgets if b is None or 0 < b < max_len]
        n_ok = n_total = n_cut = 0
        first_bad = ""
        for i in range(240):
            msgs = conversation(rng, texts)
            budget = budgets[i % len(budgets)]
            cmd = [args.bin, "chat-template", "-m", path]
            if budget is not None:
                cmd += ["--max-new-tokens", str(budget)]
            r = run(cmd, json.dumps(msgs, ensure_ascii=rng.random() < 0.5).encode())
            exp = reference(sp, msgs, uid, aid, max_len, default_new if budget is None else budget)
            full = reference(sp, msgs, uid, aid, 10 ** 9, 0)
            n_cut += len(exp) < len(full)
            got = [int(x) for x in r.stdout.split()] if r.returncode == 0 else None
            n_total += 1
            if got == exp and r.stdout.endswith(b"\n"):
                n_ok += 1
            elif not first_bad:
                first_bad = (f"\n      messages {json.dumps(msgs, ensure_ascii=False)[:300]}\n      budget {budget}"
                             f"\n      want {exp[:40]}\n      got  {(got or [])[:40]} {r.stderr.decode()[:200]}")
        c.check(f"{name}: {n_ok}/{n_total} conversations identical to the reference ({n_cut} truncated)",
                n_ok == n_total, first_bad)

    # Hand-picked shapes on the official directory.
    path = dirs["official"][0]
    cases = {
        "single user message": [{"role": "user", "content": "你好"}],
        "system only": [{"role": "system", "content": "You are helpful."}],
        "ends with assistant (no trailing 196)": [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "hello"}],
        "assistant first": [{"role": "assistant", "content": "How can I help?"}, {"role": "user", "content": "x"}],
        "empty contents": [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
        "text that looks like special tokens": [{"role": "user", "content": "<s></s><reserved_106> <unk>"}],
        "NUL and newlines in content": [{"role": "user", "content": "a\u0000b\n\nc"}],
        "extra keys ignored": [{"role": "user", "content": "hi", "name": "bob"}],
    }
    for label, msgs in cases.items():
        r = run([args.bin, "chat-template", "-m", path], json.dumps(msgs).encode())
        exp = reference(sp, msgs, 195, 196, 4096, 2048)
        c.check(f"{label}: {exp[:12]}", r.returncode == 0 and [int(x) for x in r.stdout.split()] == exp,
                r.stdout.decode()[:200] + r.stderr.decode())
    # The system message is kept and the history cut: a long history with
    # room for only the newest round.
    long_msgs = [{"role": "system", "content": "Be brief."}]
    for i in range(30):
        long_msgs += [{"role": "user", "content": texts[i]}, {"role": "assistant", "content": texts[i + 30]}]
    long_msgs.append({"role": "user", "content": texts[99]})
    for budget in (4000, 4050, 4090, 3000):
        r = run([args.bin, "chat-template", "-m", path, "--max-new-tokens", str(budget)], json.dumps(long_msgs).encode())
        exp = reference(sp, long_msgs, 195, 196, 4096, budget)
        c.check(f"long history, --max-new-tokens {budget}: {len(exp)} ids",
                [int(x) for x in r.stdout.split()] == exp, r.stderr.decode())

    # Errors: one line on stderr, exit 1, nothing on stdout.
    errors = {
        "bad JSON": (b"[{\"role\": \"user\", ", [], "invalid JSON"),
        "not an array": (b"{\"role\": \"user\"}", [], "array"),
        "empty array": (b"[]", [], "no messages"),
        "unknown role": (json.dumps([{"role": "bot", "content": "x"}]).encode(), [], "unknown role \"bot\""),
        "system not first": (json.dumps([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}])
                             .encode(), [], "system message must be the first"),
        "content not a string": (json.dumps([{"role": "user", "content": 5}]).encode(), [], "content"),
        "no role": (json.dumps([{"content": "x"}]).encode(), [], "role"),
        "message not an object": (b"[\"hello\"]", [], "not a JSON object"),
        "budget leaves no room": (json.dumps([{"role": "user", "content": "x"}]).encode(),
                                  ["--max-new-tokens", "4096"], "no room"),
        "budget not a number": (json.dumps([{"role": "user", "content": "x"}]).encode(),
                                ["--max-new-tokens", "lots"], "--max-new-tokens"),
    }
    for label, (data, extra, needle) in errors.items():
        r = run([args.bin, "chat-template", "-m", path, *extra], data)
        c.check(f"error: {label}", one_error_line(r) and needle.encode() in r.stderr, r.stderr.decode())
    # Role ids outside the vocabulary in generation_config.json are refused at load.
    bad = make_dir("bad_roles", {"user_token_id": 195, "assistant_token_id": 99999}, {"model_max_length": 4096})
    r = run([args.bin, "chat-template", "-m", bad], b"[]")
    c.check("generation_config.json role id outside the vocabulary refused",
            one_error_line(r) and b"assistant_token_id" in r.stderr, r.stderr.decode())

    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
