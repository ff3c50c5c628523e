#!/usr/bin/python3
"""test_quantize_at_load.py - `-q TYPE` (bc_model_params.quantize) computes
exactly what the GGUF `baichuan quantize --type TYPE` writes computes.

    test_quantize_at_load.py --bin PATH_TO_baichuan --fixtures DIR

For each fixture and type: `baichuan logits -m FIXTURE -q TYPE` and
`baichuan logits -m FIXTURE.TYPE.gguf` must give bit-identical logits (f32 KV
cache): both encode the same f32 rows with the same quantizer, the loader
splitting W_pack and normalizing the NormHead head as the writer does. The
fixtures have rows of 256 (k-quants whole) and 96 (k-quants fall back as
llama.cpp does), RoPE and ALiBi, NormHead on and off, f32, f16 and bf16, and
16 layers for the _M mixes' more-bits pattern.

Errors: an unknown type and -q on an already-quantized GGUF are one-line
errors with exit status 1.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import Tally  # noqa: E402

import gen_fixtures as gf  # noqa: E402

TIMEOUT_S = 300
TOKENS = [1, 5, 17, 3, 99, 42, 7, 250, 11, 64, 2, 300]

FIXTURES = [
    gf._fixture("qal_k256", "baichuan2-7b", "f32", "st", n_embd=256, n_head=2, n_ff=512, n_layer=16, vocab=400,
                extra={"norm_head": True}),
    gf._fixture("qal_bf16", "baichuan-7b", "bf16", "bin", n_embd=64, n_head=2, n_ff=96, n_layer=2, vocab=400),
    gf._fixture("qal_alibi", "baichuan2-13b", "f16", "st", n_embd=64, n_head=2, n_ff=96, n_layer=3, vocab=400,
                extra={"norm_head": True}),
]
TYPES = {
    "qal_k256": ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k", "f16", "bf16"],
    "qal_bf16": ["q8_0", "q4_0", "q4_k_m", "f32"],
    "qal_alibi": ["q8_0", "q4_0", "q4_k_m", "q5_k_m", "bf16"],
}


def run(binary, *args):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S)


def logits(binary, model, out, flags=()):
    if os.path.exists(out):
        os.unlink(out)
    p = run(binary, "logits", "-m", model, "--tokens", " ".join(map(str, TOKENS)), "-o", out, "--cache-type", "f32",
            *flags)
    if p.returncode != 0:
        return None, p.stderr.decode("utf-8", "replace").strip()
    return np.fromfile(out, dtype="<f4"), ""


def main(argv=None):
    ap = argparse.ArgumentParser(description="quantize at load == quantize to GGUF, then load")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.bin)
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_qal_")
    try:
        for fx in FIXTURES:
            src = gf.write_fixture(fx, work)
            for qtype in TYPES[fx["name"]]:
                gguf = os.path.join(work, "%s.%s.gguf" % (fx["name"], qtype))
                p = run(binary, "quantize", src, gguf, "--type", qtype, "-q")
                if p.returncode != 0:
                    t.record(False, "%s: quantize --type %s: %s" % (fx["name"], qtype, p.stderr.decode().strip()))
                    continue
                want, err_w = logits(binary, gguf, os.path.join(work, "want.bin"))
                got, err_g = logits(binary, src, os.path.join(work, "got.bin"), ["-q", qtype])
                ok = want is not None and got is not None and want.shape == got.shape and \
                    np.array_equal(want.view("<u4"), got.view("<u4"))
                detail = err_w or err_g
                if not ok and not detail and want is not None and got is not None and want.shape == got.shape:
                    detail = "max |diff| %g" % float(np.max(np.abs(want - got)))
                t.record(ok, "%s -q %s: logits bit-identical to the quantized GGUF's %s" % (fx["name"], qtype, detail))
                if qtype == "q4_0":
                    plain, _ = logits(binary, src, os.path.join(work, "plain.bin"))
                    t.record(plain is not None and got is not None and not np.array_equal(plain, got),
                             "%s -q q4_0: logits differ from the unquantized model's" % fx["name"])
                    # An already-quantized GGUF is refused.
                    p = run(binary, "logits", "-m", gguf, "--tokens", "1 2", "-o", os.path.join(work, "x.bin"),
                            "-q", "q8_0")
                    err = p.stderr.decode().strip()
                    t.record(p.returncode == 1 and len(err.splitlines()) == 1 and "f32/f16/bf16" in err
                             and "q4_0" in err, "-q on a q4_0 GGUF refused: %s" % err)
            # info says what happened.
            p = run(binary, "info", "-m", src, "-q", "q8_0")
            out = p.stdout.decode()
            t.record(p.returncode == 0 and "quantized:      at load as q8_0" in out,
                     "%s: info -q q8_0 reports it %s" % (fx["name"], p.stderr.decode().strip()))
        # The same fixture with --no-repack: the row-major kernels on the heap copies.
        src = os.path.join(work, "qal_k256")
        gguf = os.path.join(work, "qal_k256.q4_0.gguf")
        want, _ = logits(binary, gguf, os.path.join(work, "want.bin"), ["--no-repack"])
        got, err = logits(binary, src, os.path.join(work, "got.bin"), ["-q", "q4_0", "--no-repack"])
        t.record(want is not None and got is not None and np.array_equal(want.view("<u4"), got.view("<u4")),
                 "qal_k256 -q q4_0 --no-repack: bit-identical %s" % err)
        # A bad type: one line.
        p = run(binary, "logits", "-m", src, "--tokens", "1", "-o", os.path.join(work, "x.bin"), "-q", "q3_x")
        err = p.stderr.decode().strip()
        t.record(p.returncode == 1 and len(err.splitlines()) == 1 and "q3_x" in err, "-q q3_x refused: %s" % err)
        # A type whose rows do not fit: q4_0 on rows of 88 (b2_7b_f32_st's n_ff).
        bc_testlib.ensure_fixtures(args.fixtures, ["b2_7b_f32_st"])
        p = run(binary, "logits", "-m", os.path.join(args.fixtures, "b2_7b_f32_st"), "--tokens", "1", "-o",
                os.path.join(work, "x.bin"), "-q", "q4_0")
        err = p.stderr.decode().strip()
        t.record(p.returncode == 1 and len(err.splitlines()) == 1 and "not whole" in err,
                 "-q q4_0 on rows of 88 refused: %s" % err)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
