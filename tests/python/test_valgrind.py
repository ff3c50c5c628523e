#!/usr/bin/python3
"""test_valgrind.py - the CLI and the server under valgrind's memcheck.

    test_valgrind.py --bin PATH_TO_baichuan --fixtures DIR

The sanitizer tree runs the whole suite under ASan + UBSan + LeakSanitizer;
this test runs the release binary (the one users get) under a second,
independent checker, which also sees reads of uninitialised memory that
ASan does not. Each command runs as

    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible

and must end with its own expected exit status (0, or 1 for the error paths:
leaks hide there), "ERROR SUMMARY: 0 errors" and no leak. The commands cover
every container format, quantization, the tokenizer, generation, chat, the
error paths of corrupt files, and the server (requests of every kind, then
SIGTERM). One thread each (-t 1): valgrind serialises threads anyway.
Prints one line per command with its time and `N passed, M failed`.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import Tally  # noqa: E402
import server_util  # noqa: E402

ROOT = server_util.ROOT
DATA = os.path.join(ROOT, "tests", "data")
VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible"]
FIXTURES = ["b2_7b_f32_st", "b1_7b_bf16_bin", "b2_13b_f16_st_sharded"]


def verdict(rc, expect_rc, log):
    """Problems with one valgrind run ('' if none)."""
    problems = []
    if rc != expect_rc:
        problems.append("exit %s, expected %s" % (rc, expect_rc))
    m = re.search(r"ERROR SUMMARY: (\d+) errors", log)
    if m is None:
        problems.append("no valgrind summary")
    elif m.group(1) != "0":
        problems.append("%s valgrind errors" % m.group(1))
    for kind in ("definitely lost", "indirectly lost", "possibly lost"):
        m = re.search(r"%s: ([\d,]+) bytes" % kind, log)
        if m and m.group(1) != "0":
            problems.append("%s: %s bytes" % (kind, m.group(1)))
    return "; ".join(problems)


def check(t, label, args, expect_rc=0, stdin=b""):
    t0 = time.monotonic()
    p = subprocess.run(VALGRIND + args, input=stdin, capture_output=True, timeout=900)
    log = p.stderr.decode("utf-8", "replace")
    problems = verdict(p.returncode, expect_rc, log)
    detail = ""
    if problems:
        errs = [line for line in log.splitlines() if line.startswith("==") and ("lost" in line or "Invalid" in line
                                                                               or "uninitialised" in line)]
        detail = ": " + problems + " | " + " | ".join(errs[:6])
    t.record(not problems, "%s: exit %d in %.1f s%s" % (label, p.returncode, time.monotonic() - t0, detail))


def check_server(t, binary):
    """serve under valgrind: every kind of request, then SIGTERM."""
    t0 = time.monotonic()
    log_path = tempfile.mktemp(prefix="bc_vg_serve_", suffix=".log")
    # The server's own log goes to stderr, valgrind's to a file of its own.
    s = server_util.Server(binary, wrapper=["valgrind", "--log-file=" + log_path] + VALGRIND[1:])
    try:
        ok = s.request("GET", "/health")[0] == 200
        ok &= s.post("/v1/completions", {"prompt": "床前", "max_tokens": 3, "logprobs": 2})[0] == 200
        ok &= s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                                              "stop": ["x"]})[0] == 200
        events = s.stream("/v1/completions", {"prompt": "月", "max_tokens": 3, "stream": True})
        ok &= len(events) > 0
        ok &= s.post("/tokenize", {"content": "hello"})[0] == 200
        ok &= s.post("/detokenize", {"tokens": [1, 2, 3]})[0] == 200
        ok &= s.request("POST", "/v1/completions", raw=b"{not json")[0] == 400
        ok &= s.request("GET", "/nothing")[0] == 404
        ok &= s.request("GET", "/metrics")[0] == 200
    except Exception as e:  # the verdict below says what valgrind saw
        print("  request failed: %r" % e)
        ok = False
    rc = s.stop(timeout=300)
    log = open(log_path, encoding="utf-8", errors="replace").read()
    os.unlink(log_path)
    problems = verdict(rc, 0, log)
    if not ok:
        problems = "a request got a wrong answer" + ("; " + problems if problems else "")
    t.record(not problems, "serve (9 requests, SIGTERM): exit %s in %.1f s%s"
             % (rc, time.monotonic() - t0, ": " + problems if problems else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description="the CLI and the server under valgrind")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("FAIL valgrind is not installed (make test installs it)")
        return 1
    b = os.path.abspath(args.bin)
    bc_testlib.ensure_fixtures(args.fixtures, FIXTURES)
    fx = lambda name: os.path.join(args.fixtures, name)  # noqa: E731
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_valgrind_")
    try:
        out = os.path.join(work, "logits.bin")
        check(t, "run (default model)", [b, "run", "-t", "1", "-n", "4", "-p", "床前明月光"])
        check(t, "chat (two turns on stdin)", [b, "chat", "-t", "1", "-n", "3"], stdin="你好\n再见\n".encode())
        for name in FIXTURES:
            check(t, "logits " + name, [b, "logits", "-t", "1", "-m", fx(name), "--tokens", "1 2 3", "-o", out])
        q4 = os.path.join(work, "q4.gguf")
        check(t, "quantize the default model to q4_k_m",
              [b, "quantize", "-q", server_util.DEFAULT_MODEL, q4, "--type", "q4_k_m"])
        check(t, "run the q4_k_m GGUF", [b, "run", "-t", "1", "-m", q4, "-n", "3", "-p", "床前"])
        check(t, "tokenize", [b, "tokenize", "-m", server_util.DEFAULT_MODEL], stdin="Hello 你好 \xff".encode("utf-8",
                                                                                                          "replace"))
        check(t, "detokenize", [b, "detokenize", "-m", server_util.DEFAULT_MODEL], stdin=b"1 100 2000 3")
        check(t, "info GGUF", [b, "info", "-m", os.path.join(DATA, "tiny.gguf")])

        # Error paths: each ends in one error line and must free what it made.
        bad = os.path.join(work, "bad")
        shutil.copytree(fx("b2_7b_f32_st"), bad)
        st = os.path.join(bad, "model.safetensors")
        blob = open(st, "rb").read()
        open(st, "wb").write(blob[: len(blob) // 2])
        check(t, "error: truncated safetensors", [b, "info", "-m", bad], expect_rc=1)
        open(os.path.join(bad, "config.json"), "w").write('{"hidden_size": 32,')
        check(t, "error: malformed config.json", [b, "info", "-m", bad], expect_rc=1)
        binbad = os.path.join(work, "binbad")
        shutil.copytree(fx("b1_7b_bf16_bin"), binbad)
        pt = os.path.join(binbad, "pytorch_model.bin")
        blob = bytearray(open(pt, "rb").read())
        blob[200:260] = b"\xff" * 60  # inside data.pkl
        open(pt, "wb").write(bytes(blob))
        check(t, "error: damaged pickle", [b, "info", "-m", binbad], expect_rc=1)
        gguf = open(os.path.join(DATA, "tiny.gguf"), "rb").read()
        cut = os.path.join(work, "cut.gguf")
        open(cut, "wb").write(gguf[:1500])
        check(t, "error: truncated GGUF", [b, "info", "-m", cut], expect_rc=1)
        spm = os.path.join(work, "tokenizer.model")
        open(spm, "wb").write(open(os.path.join(DATA, "tiny_bpe.model"), "rb").read()[:3000])
        check(t, "error: truncated tokenizer.model", [b, "tokenize", "-m", spm], expect_rc=1, stdin=b"x")
        check(t, "error: prompt longer than the context",
              [b, "run", "-t", "1", "-c", "16", "-n", "4", "-p", "床前明月光" * 20], expect_rc=1)

        check_server(t, b)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
