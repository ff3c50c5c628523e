#!/usr/bin/python3
"""test_logits.py - the engine's logits against the float64 reference, on every fixture.

    test_logits.py --bin PATH_TO_baichuan --fixtures DIR [--only NAME ...]

For each fixture and each sequence length in bc_testlib.SEQ_LENGTHS (seeded
random token ids), runs

    baichuan logits -m DIR/<name> --tokens "..." -o OUT [overrides]

and compares OUT (float32 LE, n_tokens x n_vocab) with tools/reference.py:
err = max|engine - ref| / max(1, max|ref|) must be <= 1e-4 for f32 fixtures
and <= 2e-2 for f16/bf16 ones. Further cases run 64 tokens with the CLI
overrides (--pos-encoding, --norm-head) against the reference with the same
overrides. For some fixtures the long sequence runs in chunks (-b N), which
exercises the KV cache across forward passes; two fixtures also run 2,100
tokens in chunks of 300 with the f32, f16 and q8_0 caches. The engine runs while the
reference computes; cases that differ only in engine flags share one
reference computation.
Missing fixtures are generated first. Prints one line per case and a final
`N passed, M failed`; exits non-zero on any failure.
"""

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import SEQ_LENGTHS, Tally, rel_err, token_sequence, tolerance  # noqa: E402

import gen_fixtures  # noqa: E402
import reference  # noqa: E402

ENGINE_TIMEOUT_S = 300

# (fixture, CLI flags), run with OVERRIDE_LENGTH tokens after every fixture has
# run as detected. The CLI flags also win over override_alibi's config keys.
OVERRIDE_LENGTH = 64
OVERRIDE_CASES = [
    ("b2_7b_f32_st", {"pos_encoding": "alibi"}),
    ("b2_7b_f32_st", {"norm_head": "off"}),
    ("b2_7b_f32_st", {"pos_encoding": "alibi", "norm_head": "off"}),
    ("b1_13b_f32_bin", {"pos_encoding": "rope", "norm_head": "on"}),
    ("override_alibi", {"pos_encoding": "rope", "norm_head": "on"}),
]


# Fixtures whose long sequence runs in chunks of this many tokens (-b), so that
# later chunks attend to keys and values cached by earlier forward passes. The
# other fixtures run it in one pass.
CHUNKED_LONG = {"b2_7b_bf16_bin_sharded": 61, "b1_13b_f32_bin": 61, "b1_7b_f16_st": 100}


# Exactness is checked with an f32 KV cache (--cache-type f32). The default
# f16 cache rounds every cached key and value to 11 significant bits, which
# these small random models (peaked attention, widely varied lm_head norms)
# amplify to up to 1.8e-3 at 211 tokens; q8_0 to about 2e-2.
KV_TOLERANCE = {"f16": 2.5e-3, "q8_0": 3e-2}

# Long contexts: LONG_LENGTH tokens (nine of the attention's 256-position key
# segments) in chunks of LONG_BATCH, with every cache type, on a RoPE fixture
# whose head_dim runs the SIMD attention kernels (32) and on an ALiBi one
# (head_dim 8: the portable kernel). Small vocabularies keep the logits small.
LONG_LENGTH = 2100
LONG_BATCH = 300
LONG_CASES = [
    ("kv_hd32", {"batch": LONG_BATCH, "cache_type": "f32"}),
    ("kv_hd32", {"batch": LONG_BATCH, "cache_type": "f16"}),
    ("kv_hd32", {"batch": LONG_BATCH, "cache_type": "q8_0"}),
    ("gen_alibi", {"batch": LONG_BATCH, "cache_type": "f32"}),
    ("gen_alibi", {"batch": LONG_BATCH, "cache_type": "f16"}),
]


def cli_flags(overrides):
    """CLI flags for a case: the reference's overrides and, under "batch",
    the engine's -b (which the reference has no use for)."""
    flags = ["--cache-type", overrides.get("cache_type", "f32")]
    if "batch" in overrides:
        flags += ["-b", str(overrides["batch"])]
    if "pos_encoding" in overrides:
        flags += ["--pos-encoding", overrides["pos_encoding"]]
    if "norm_head" in overrides:
        flags += ["--norm-head", overrides["norm_head"]]
    return flags


def run_engine(binary, model_dir, tokens, flags, out_path, n_vocab):
    """(logits float32 [n_tokens, n_vocab], seconds) or raises RuntimeError."""
    if os.path.exists(out_path):
        os.unlink(out_path)
    cmd = [binary, "logits", "-m", model_dir, "--tokens", " ".join(map(str, tokens)), "-o", out_path] + flags
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after %d s" % ENGINE_TIMEOUT_S)
    except OSError as e:
        raise RuntimeError("cannot run %s: %s" % (binary, e))
    dt = time.monotonic() - t0
    if p.returncode != 0:
        tail = p.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError("exit status %d: %s" % (p.returncode, " | ".join(tail)))
    if not os.path.exists(out_path):
        raise RuntimeError("exit status 0 but no output file")
    want = len(tokens) * n_vocab * 4
    got = os.path.getsize(out_path)
    if got != want:
        raise RuntimeError("output has %d bytes, expected %d (%d tokens x %d vocab x 4)"
                           % (got, want, len(tokens), n_vocab))
    return np.fromfile(out_path, dtype="<f4").reshape(len(tokens), n_vocab), dt


def describe(overrides):
    if not overrides:
        return ""
    return " " + " ".join(cli_flags(overrides)[2 if "cache_type" not in overrides else 0:])


class ReferenceCache:
    """The last reference model and logits. The cases of one fixture follow
    each other and differ in what only the engine sees (-b, --cache-type), so
    they share the reference's logits: computed once, not per case. One
    entry, as a 211-token reference of a 125,696-id vocabulary is 212 MB."""

    def __init__(self):
        self.model_key, self.model = None, None
        self.ref_key, self.ref = None, None

    def load_model(self, d, pos_encoding, norm_head):
        key = (d, pos_encoding, norm_head)
        if key != self.model_key:
            self.model_key, self.model = None, None
            self.model = reference.load_model(d, pos_encoding, norm_head)
            self.model_key = key
        return self.model

    def logits(self, tokens):
        key = (self.model_key, tuple(tokens))
        if key != self.ref_key:
            self.ref_key, self.ref = None, None
            self.ref = self.model.logits(tokens)
            self.ref_key = key
        return self.ref


REFERENCE = ReferenceCache()


def run_cases(t, binary, fixtures, name, overrides, lengths, work):
    d = os.path.join(fixtures, name)
    tol = max(tolerance(name), KV_TOLERANCE.get(overrides.get("cache_type"), 0))
    try:
        model = REFERENCE.load_model(d, overrides.get("pos_encoding"), overrides.get("norm_head"))
    except Exception as e:  # a broken fixture fails its cases, not the run
        for length in lengths:
            t.record(False, "%s n_tokens=%d%s: reference failed: %s" % (name, length, describe(overrides), e))
        return
    for length in lengths:
        label = "%s n_tokens=%d%s" % (name, length, describe(overrides))
        tokens = token_sequence(name, length, model.hp.n_vocab)
        # The reference computes in a thread (numpy releases the GIL) while
        # the engine runs.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            ref_future = pool.submit(REFERENCE.logits, tokens)
            try:
                got, dt = run_engine(binary, d, tokens, cli_flags(overrides), os.path.join(work, "logits.f32"),
                                     model.hp.n_vocab)
                engine_error = None
            except RuntimeError as e:
                engine_error = e
            ref = ref_future.result()
        if engine_error is not None:
            t.record(False, "%s: engine failed: %s" % (label, engine_error))
            continue
        if not np.all(np.isfinite(got)):
            t.record(False, "%s: engine logits contain NaN or Inf" % label)
            continue
        err = rel_err(got, ref)
        t.record(err <= tol, "%s err %.3g (tol %.0e, %.2f s)" % (label, err, tol, dt))


def main(argv=None):
    ap = argparse.ArgumentParser(description="engine logits vs the float64 reference")
    ap.add_argument("--bin", required=True, help="the baichuan executable")
    ap.add_argument("--fixtures", required=True, help="fixture directory (missing fixtures are generated)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these fixtures")
    args = ap.parse_args(argv)
    names = args.only or list(gen_fixtures.FIXTURES)
    binary = os.path.abspath(args.bin)
    bc_testlib.ensure_fixtures(args.fixtures, names)
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_logits_")
    try:
        for name in names:
            run_cases(t, binary, args.fixtures, name, {}, SEQ_LENGTHS[:-1], work)
            chunked = {"batch": CHUNKED_LONG[name]} if name in CHUNKED_LONG else {}
            run_cases(t, binary, args.fixtures, name, chunked, SEQ_LENGTHS[-1:], work)
            # The default f16 KV cache (and q8_0 where head_dim allows it).
            run_cases(t, binary, args.fixtures, name, {"cache_type": "f16"}, SEQ_LENGTHS[-1:], work)
            if name == "kv_hd32":
                run_cases(t, binary, args.fixtures, name, {"cache_type": "q8_0"}, SEQ_LENGTHS[-1:], work)
        for name, overrides in OVERRIDE_CASES:
            if name in names:
                run_cases(t, binary, args.fixtures, name, overrides, [OVERRIDE_LENGTH], work)
        for name, overrides in LONG_CASES:
            if name in names:
                run_cases(t, binary, args.fixtures, name, overrides, [LONG_LENGTH], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
