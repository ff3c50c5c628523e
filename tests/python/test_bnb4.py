#!/usr/bin/python3
"""test_bnb4.py - bitsandbytes 4-bit checkpoints (the layout of Baichuan2-*-Chat-4bits).

    test_bnb4.py --bin PATH_TO_baichuan

Fixtures are written here by tools/make_bnb4.py: a 7B-like RoPE model and a
13B-like ALiBi one (both NormHead), NF4 and FP4, with and without double
quantization, block sizes 64 and 128, quantized by an independent NumPy
rendering of bitsandbytes and saved with torch.save in the published layout;
beside each, the same model with the dequantized weights as float32.

Checks:
  - logits == tools/reference.py (float64) on the dequantized model, within
    the f16 tolerance (2e-2; measured about 5e-4);
  - the weights the engine computes with are exactly the NumPy dequantization:
    `baichuan quantize DIR out.gguf --type f32` writes them, bit for bit;
  - `info` names the quantization; `quantize --type T` converts too, and
    `-q T` gives bit for bit the logits of that GGUF;
  - corrupt files (truncated state lists, wrong code tables, absmax counts
    that do not match the shape, ...) give one-line errors naming the tensor.
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
from bc_testlib import Tally, rel_err, token_sequence  # noqa: E402

import gguf_writer  # noqa: E402
import make_bnb4  # noqa: E402  (tools/ is on the path through bc_testlib)
import reference  # noqa: E402

TIMEOUT_S = 300
TOL = bc_testlib.TOLERANCE["f16"]
LENGTHS = [1, 17, 40]

# (fixture, quant type, double quantization, block size)
CASES = [("bnb_7b", "nf4", True, 64), ("bnb_7b", "fp4", True, 64), ("bnb_13b", "nf4", True, 64),
         ("bnb_13b", "fp4", False, 64), ("bnb_7b", "nf4", True, 128)]


def run(binary, *args):
    return subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S)


def engine_logits(binary, model, tokens, work, *extra):
    out = os.path.join(work, "logits.f32")
    p = run(binary, "logits", "-m", model, "--tokens", " ".join(map(str, tokens)), "-o", out, "--cache-type", "f32",
            *extra)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode().strip())
    return np.fromfile(out, dtype="<f4").reshape(len(tokens), -1)


def exactness_case(t, binary, qdir, rdir, fx, work):
    """quantize --type f32 writes the engine's dequantized weights: they must
    equal the NumPy dequantization bit for bit. o_proj, gate, up, down and
    the V rows of W_pack are written unpermuted (Q and K rows are permuted
    for llama.cpp's RoPE layout, so they are compared through the logits)."""
    out = os.path.join(work, "deq.gguf")
    p = run(binary, "quantize", qdir, out, "--type", "f32")
    if p.returncode != 0:
        t.record(False, "%s: quantize --type f32: %s" % (qdir, p.stderr.decode().strip()))
        return
    t.record("dequantiz" in p.stderr.decode() + p.stdout.decode(),
             "%s: quantize says it dequantizes the 4-bit weights: %s" % (os.path.basename(qdir),
                                                                       p.stderr.decode().strip()[-200:]))
    ref = reference.load_tensors(rdir)
    e = fx["n_embd"]
    pairs = []
    for i in range(fx["n_layer"]):
        p_ = "model.layers.%d." % i
        pairs += [("blk.%d.attn_output.weight" % i, ref[p_ + "self_attn.o_proj.weight"]),
                  ("blk.%d.ffn_gate.weight" % i, ref[p_ + "mlp.gate_proj.weight"]),
                  ("blk.%d.ffn_up.weight" % i, ref[p_ + "mlp.up_proj.weight"]),
                  ("blk.%d.ffn_down.weight" % i, ref[p_ + "mlp.down_proj.weight"]),
                  ("blk.%d.attn_v.weight" % i, ref[p_ + "self_attn.W_pack.weight"][2 * e:])]
    got = gguf_writer.read_f32_tensors(out)
    bad = [n for n, want in pairs
           if got[n].shape != want.shape
           or not np.array_equal(got[n].view(np.uint32), np.asarray(want, dtype=np.float32).view(np.uint32))]
    t.record(not bad, "%s: dequantized weights equal the NumPy dequantization bit for bit (%d matrices) %s"
             % (os.path.basename(qdir), len(pairs), bad[:3]))


def good_cases(t, binary, work):
    for fname, qtype, dq, bs in CASES:
        fx = make_bnb4.FIXTURES[fname]
        suffix = "%s%s-b%d" % (qtype, "-dq" if dq else "", bs)
        qdir, rdir = make_bnb4.write_pair(fx, work, qtype, dq, bs, suffix)
        label = os.path.basename(qdir)
        model = reference.load_model(rdir)
        for n in LENGTHS:
            tokens = token_sequence(label, n, fx["n_vocab"])
            try:
                got = engine_logits(binary, qdir, tokens, work)
            except RuntimeError as e:
                t.record(False, "%s n_tokens=%d: %s" % (label, n, e))
                continue
            want = model.logits(tokens)
            err = rel_err(got, want)
            t.record(err <= TOL, "%s n_tokens=%d: err %.3g (tol %.0e)" % (label, n, err, TOL))
            # --head-type: the f16 head converted at load; the same tolerance
            # against the reference on the checkpoint's own head
            for head in (["q8_0"] if (fname, qtype, bs) == ("bnb_7b", "nf4", 64) and n == LENGTHS[-1] else []):
                try:
                    got_h = engine_logits(binary, qdir, tokens, work, "--head-type", head)
                except RuntimeError as e:
                    t.record(False, "%s --head-type %s: %s" % (label, head, e))
                    continue
                err_h = rel_err(got_h, want)
                t.record(err_h <= TOL and not np.array_equal(got_h, got),
                         "%s n_tokens=%d --head-type %s: err %.3g (exact head %.3g; tol %.0e)"
                         % (label, n, head, err_h, err, TOL))
        if (fname, qtype, bs) == ("bnb_7b", "nf4", 64):
            # a head of 64 columns has no whole q6_k blocks: refused, naming the tensor
            p = run(binary, "logits", "-m", qdir, "--tokens", "1 2", "-o", os.path.join(work, "x.f32"), "--head-type", "q6_k")
            t.record(p.returncode == 1 and b"lm_head.weight" in p.stderr and b"q6_k blocks" in p.stderr,
                     "%s --head-type q6_k on 64 columns refused: %s" % (label, p.stderr.decode().strip()))
            p = run(binary, "logits", "-m", qdir, "--tokens", "1 2", "-o", os.path.join(work, "x.f32"), "--head-type", "nf4")
            t.record(p.returncode == 1 and b"head_type: nf4" in p.stderr,
                     "%s --head-type nf4 refused: %s" % (label, p.stderr.decode().strip()))
        exactness_case(t, binary, qdir, rdir, fx, work)
        p = run(binary, "info", "-m", qdir)
        out = p.stdout.decode()
        want = "quantization:   bitsandbytes %s, blocks of %d, %s" % (
            qtype, bs, "double quantization" if dq else "float32 absmax")
        t.record(p.returncode == 0 and want in out and ("%s x%d" % (qtype, 5 * fx["n_layer"])) in out,
                 "%s: info names the quantization (%r)" % (label, [ln for ln in out.splitlines()
                                                                   if ln.startswith(("quant", "dtypes"))]))
        shutil.rmtree(rdir)
        if (fname, qtype) != ("bnb_7b", "nf4") or bs != 64:
            shutil.rmtree(qdir)


def corrupt_cases(t, binary, work):
    """Each file differs from a good one in one thing; each gives exit status
    1 and one line on stderr naming the file and what is wrong."""
    import torch

    good = os.path.join(work, "bnb_7b-nf4-dq-b64")
    sd0 = torch.load(os.path.join(good, "pytorch_model.bin"), weights_only=False)
    w = "model.layers.1.mlp.up_proj.weight"

    def edit_state(i, v):
        def f(sd):
            sd[w + ".quant_state"][i] = v
        return f

    cases = [
        ("truncated state list", lambda sd: sd.__setitem__(w + ".quant_state", sd[w + ".quant_state"][:5]),
         "list of 5 items"),
        ("code table of 15", edit_state(6, sd0[w + ".quant_state"][6][:15].clone()), "16 float32 values"),
        ("code table of another type", edit_state(6, torch.from_numpy(make_bnb4.FP4.copy())), "not the nf4 table"),
        ("absmax count", edit_state(0, sd0[w + ".quant_state"][0][:-1].clone()), "holds"),
        ("quant type", edit_state(5, "int4"), "quant type"),
        ("state shape", edit_state(1, torch.Size([129, 64])), "expected [128, 64]"),
        ("blocksize", edit_state(3, 32), "block size 32"),
        ("missing data", lambda sd: sd.pop(w + ".data"), "is missing"),
        ("data dtype", lambda sd: sd.__setitem__(w + ".data", sd[w + ".data"].to(torch.float16)), "uint8"),
        ("nested state", lambda sd: sd[w + ".quant_state"].__setitem__(4, [sd[w + ".quant_state"][4][0]]),
         "compressed statistics"),
    ]
    for label, edit, needle in cases:
        d = os.path.join(work, "corrupt")
        if os.path.exists(d):
            shutil.rmtree(d)
        shutil.copytree(good, d)
        sd = torch.load(os.path.join(good, "pytorch_model.bin"), weights_only=False)
        edit(sd)
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
        p = run(binary, "info", "-m", d)
        err = p.stderr.decode().strip()
        t.record(p.returncode == 1 and len(err.splitlines()) == 1 and needle in err and "up_proj" in err,
                 "corrupt: %s: %s" % (label, err))
    # config.json and the states disagree on the quant type.
    d = os.path.join(work, "corrupt")
    shutil.rmtree(d)
    shutil.copytree(good, d)
    cfg = open(os.path.join(d, "config.json")).read().replace('"nf4"', '"fp4"')
    open(os.path.join(d, "config.json"), "w").write(cfg)
    p = run(binary, "info", "-m", d)
    err = p.stderr.decode().strip()
    t.record(p.returncode == 1 and len(err.splitlines()) == 1 and "config.json" in err,
             "corrupt: config.json says fp4: %s" % err)
    # Truncated archive.
    shutil.rmtree(d)
    shutil.copytree(good, d)
    path = os.path.join(d, "pytorch_model.bin")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    p = run(binary, "info", "-m", d)
    err = p.stderr.decode().strip()
    t.record(p.returncode == 1 and len(err.splitlines()) == 1 and "pytorch_model.bin" in err,
             "corrupt: truncated file: %s" % err)
    shutil.rmtree(d)


def convert_case(t, binary, work):
    """quantize --type T from the 4-bit checkpoint (dequantize, then quantize)
    writes a GGUF that loads, and -q T on the checkpoint gives bit for bit the
    logits of that GGUF (the same bytes, made in memory)."""
    good = os.path.join(work, "bnb_7b-nf4-dq-b64")
    tokens = token_sequence("bnb_convert", 9, make_bnb4.FIXTURES["bnb_7b"]["n_vocab"])
    for qtype in ("q8_0", "q4_k_m"):
        out = os.path.join(work, "conv.gguf")
        p = run(binary, "quantize", good, out, "--type", qtype)
        ok = p.returncode == 0
        t.record(ok, "quantize a 4-bit checkpoint --type %s: %s" % (qtype, p.stderr.decode().strip()[-200:]))
        if not ok:
            continue
        try:
            a = engine_logits(binary, out, tokens, work)
        except RuntimeError as e:
            t.record(False, "logits of the %s GGUF: %s" % (qtype, e))
            continue
        qout = os.path.join(work, "logits_q.f32")
        p = run(binary, "logits", "-m", good, "-q", qtype, "--tokens", " ".join(map(str, tokens)), "-o", qout,
                "--cache-type", "f32")
        if p.returncode != 0:
            t.record(False, "-q %s on the 4-bit checkpoint: %s" % (qtype, p.stderr.decode().strip()))
            continue
        b = np.fromfile(qout, dtype="<f4").reshape(len(tokens), -1)
        t.record(np.array_equal(a.view(np.uint32), b.view(np.uint32)),
                 "-q %s on the 4-bit checkpoint == its %s GGUF, bit for bit" % (qtype, qtype))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.bin)
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_bnb4_")
    try:
        good_cases(t, binary, work)
        corrupt_cases(t, binary, work)
        convert_case(t, binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
