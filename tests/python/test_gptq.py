#!/usr/bin/python3
"""test_gptq.py - GPTQ int4 checkpoints (AutoGPTQ layout) against NumPy.

    test_gptq.py --bin PATH_TO_baichuan --fixtures DIR

The checkpoints come from tools/make_gptq.py (written under DIR/gptq/):
each case is a GPTQ directory and its dequantized f32 twin. Checks:
  logits     `baichuan logits` on the GPTQ directory against tools/reference.py
             on the twin (float64), err <= 2e-2 as for f16 fixtures
  quantize   `baichuan quantize GPTQDIR OUT.gguf --type f32`: every matrix
             bit-equal to make_gptq.dequantize (Q and K in llama.cpp's row order)
  info       `baichuan info` names the layout
  -q         quantizing at load gives the logits of the GGUF `quantize` writes
  corrupt    broken GPTQ files are refused with one line naming the tensor, exit 1
Prints one line per case and a final `N passed, M failed`.
"""

import argparse
import collections
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402,F401  (puts tools/ on sys.path)
from bc_testlib import Tally, rel_err, token_sequence  # noqa: E402
import gguf_writer  # noqa: E402
from gguf_writer import hf_to_gguf_permute  # noqa: E402

import gen_fixtures  # noqa: E402
import make_gptq  # noqa: E402
import reference  # noqa: E402

# Largest accepted max|engine - ref| / max(1, max|ref|). Against the float64
# reference: the f16 tolerance (the q4_gptq kernels multiply 13-bit
# activations, per 32 amax / 8191, measured about 5e-4 here; with 8-bit ones,
# as the GGUF kernels use, these small random models showed up to 3e-2).
# Against the reference that rounds the activations the same way, only f32
# arithmetic is left (about 2e-7), save where an activation lies so near a
# rounding boundary that f32 and float64 round it apart (one step of 1/8191
# of one block). A wrong column order or zero point gives errors of order one.
TOL = bc_testlib.TOLERANCE["f16"]
A16_TOL = 1e-3


def run(cmd, timeout=300):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


class A16Product:
    """W^T for the reference's `h @ W.T`, with the activations rounded as the
    engine's q4_gptq kernels round them (kernels.h, a16d): in the stored column order
    (input columns stably sorted by g_idx), per 32 values d = amax / 8191 and
    x ~ d * round-half-even(x / d), in f32. The products are then exact
    (float64), so what remains against the engine is f32 arithmetic."""
    __array_ufunc__ = None  # numpy defers `h @ self` to __rmatmul__

    def __init__(self, w, g_idx):
        self.perm = np.argsort(g_idx, kind="stable")
        self.w_stored = w[:, self.perm]

    def __rmatmul__(self, h):
        x = np.asarray(h, dtype=np.float32)[:, self.perm]
        blocks = x.reshape(x.shape[0], -1, 32)
        d = (np.abs(blocks).max(axis=2, keepdims=True) / np.float32(8191)).astype(np.float32)
        inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
        q = np.rint(blocks * inv)
        xq = (d.astype(np.float64) * q).reshape(x.shape)
        return xq @ self.w_stored.T.astype(np.float64)


class A16Weight:
    def __init__(self, w, g_idx):
        self.T = A16Product(w, g_idx)


def a16_model(ddir, gdir):
    """The reference on the dequantized twin, its linear layers reading the
    activations as the engine does (A16Product); g_idx from the GPTQ file."""
    model = reference.load_model(ddir)
    tensors = reference.load_tensors(gdir)
    keys = {"w_pack": "self_attn.W_pack", "o_proj": "self_attn.o_proj", "gate": "mlp.gate_proj",
            "up": "mlp.up_proj", "down": "mlp.down_proj"}
    for il, L in enumerate(model.layers):
        for k, prefix in keys.items():
            g = tensors["model.layers.%d.%s.g_idx" % (il, prefix)].astype(np.int64)
            L[k] = A16Weight(L[k], g)
    return model


def check_logits(t, binary, gdir, ddir, name, work):
    """Against the float64 reference (TOL, the error of the 13-bit
    activations included) and against the reference with the engine's
    activation rounding (A16_TOL: a wrong column order or zero point is far
    above it)."""
    model = reference.load_model(ddir)
    model_a16 = a16_model(ddir, gdir)
    for length, flags in ((8, []), (8, ["-b", "1"]), (64, ["-b", "5"])):
        tokens = token_sequence(name, length, model.hp.n_vocab)
        out = os.path.join(work, "logits.f32")
        p = run([binary, "logits", "-m", gdir, "--tokens", " ".join(map(str, tokens)), "-o", out, "--cache-type",
                 "f32"] + flags)
        label = "logits %s n_tokens=%d%s" % (name, length, " " + " ".join(flags) if flags else "")
        if p.returncode != 0:
            t.record(False, "%s: exit %d: %s" % (label, p.returncode, p.stderr.decode().strip()))
            continue
        got = np.fromfile(out, dtype="<f4").reshape(length, model.hp.n_vocab)
        err = rel_err(got, model.logits(tokens))
        err_a16 = rel_err(got, model_a16.logits(tokens))
        t.record(err <= TOL and err_a16 <= A16_TOL,
                 "%s err %.3g (tol %.0e), with the kernels' 13-bit activations %.3g (tol %.0e)"
                 % (label, err, TOL, err_a16, A16_TOL))


def check_quantize(t, binary, gdir, fx, work):
    out = os.path.join(work, "q.gguf")
    p = run([binary, "quantize", gdir, out, "--type", "f32"])
    if p.returncode != 0:
        t.record(False, "quantize %s: exit %d: %s" % (fx["name"], p.returncode, p.stderr.decode().strip()))
        return
    got = gguf_writer.read_f32_tensors(out)
    _, deq = make_gptq.build(fx)
    E, n_head = fx["n_embd"], fx["n_head"]
    bad = []
    for il in range(fx["n_layer"]):
        pre = "model.layers.%d." % il
        wp = deq[pre + "self_attn.W_pack.weight"]
        want = {
            "attn_q": hf_to_gguf_permute(wp[:E], n_head),
            "attn_k": hf_to_gguf_permute(wp[E:2 * E], n_head),
            "attn_v": wp[2 * E:],
            "attn_output": deq[pre + "self_attn.o_proj.weight"],
            "ffn_gate": deq[pre + "mlp.gate_proj.weight"],
            "ffn_up": deq[pre + "mlp.up_proj.weight"],
            "ffn_down": deq[pre + "mlp.down_proj.weight"],
        }
        for k, w in want.items():
            g = got.get("blk.%d.%s.weight" % (il, k))
            if g is None or g.shape != w.shape or g.tobytes() != np.ascontiguousarray(w, dtype="<f4").tobytes():
                bad.append("blk.%d.%s" % (il, k))
    t.check("quantize %s --type f32: matrices bit-equal to the NumPy dequantization" % fx["name"], not bad,
            "(differ: %s)" % ", ".join(bad))


def check_info(t, binary, gdir, fx):
    p = run([binary, "info", "-m", gdir])
    text = p.stdout.decode()
    line = next((ln for ln in text.splitlines() if ln.startswith("quantization:")), "")
    ok = p.returncode == 0 and "GPTQ int4" in line and "q4_gptq" in line and "10 matrices" in line
    ok = ok and (("desc_act" in line) == fx["desc_act"])
    t.check("info %s: %s" % (fx["name"], line.strip()), ok, "(exit %d)" % p.returncode)


def check_quantize_at_load(t, binary, gdir, name, work):
    """-q TYPE on a GPTQ directory gives the logits of the GGUF that
    `baichuan quantize --type TYPE` writes from it, bit for bit (both encode
    the rows bc__weight_row_f32 reads, in the input order)."""
    tokens = token_sequence(name, 8, gen_fixtures.TINY_VOCAB)
    for qtype in ("q8_0", "q4_k_m"):
        gguf = os.path.join(work, "q.%s.gguf" % qtype)
        a, b = os.path.join(work, "a.f32"), os.path.join(work, "b.f32")
        p1 = run([binary, "quantize", gdir, gguf, "--type", qtype])
        p2 = run([binary, "logits", "-m", gguf, "--tokens", " ".join(map(str, tokens)), "-o", a])
        p3 = run([binary, "logits", "-m", gdir, "--tokens", " ".join(map(str, tokens)), "-o", b, "-q", qtype])
        ok = p1.returncode == 0 and p2.returncode == 0 and p3.returncode == 0
        same = ok and open(a, "rb").read() == open(b, "rb").read()
        t.check("%s -q %s: logits bit-identical to its quantized GGUF's" % (name, qtype), same,
                "(exit %d %d %d: %s)" % (p1.returncode, p2.returncode, p3.returncode,
                                         (p1.stderr + p2.stderr + p3.stderr).decode().strip()[-300:]))


def expect_refusal(t, binary, d, label, needles, extra=()):
    p = run([binary, "logits", "-m", d, "--tokens", "1 2 3", "-o", os.devnull] + list(extra))
    err = p.stderr.decode()
    lines = err.strip().splitlines()
    ok = p.returncode == 1 and len(lines) == 1 and all(n in err for n in needles)
    t.check("corrupt %s: refused" % label, ok, "(exit %d, stderr %r)" % (p.returncode, err))


def corrupt_cases(t, binary, fixtures, work):
    """Each case: a copy of a GPTQ checkpoint with one tensor (or the config) broken."""
    def write_variant(fx, edit, label):
        gptq, _ = make_gptq.build(fx)
        edit(gptq)
        d = os.path.join(work, label)
        if os.path.exists(d):
            shutil.rmtree(d)
        shutil.copytree(os.path.join(fixtures, fx["name"]), d)
        make_gptq.write_st(os.path.join(d, "model.safetensors"), gptq)
        return d

    g32 = make_gptq.CASES["gptq_b1_7b_g32"]
    act = make_gptq.CASES["gptq_b2_13b_act"]
    nog = make_gptq.CASES["gptq_b2_7b_nogroup"]
    o = "model.layers.0.self_attn.o_proj."
    gate = "model.layers.0.mlp.gate_proj."

    def g_idx_out_of_range(g):
        a = g[o + "g_idx"][1].copy()
        a[5] = 2  # o_proj of 64 inputs in groups of 32: groups 0 and 1
        g[o + "g_idx"] = ("I32", a)

    def qweight_shape(g):
        g[gate + "qweight"] = ("I32", g[gate + "qweight"][1][:-1])

    def qzeros_shape(g):
        g[gate + "qzeros"] = ("I32", g[gate + "qzeros"][1][:, :-1])

    def mixed_run(g):
        a = g[o + "g_idx"][1].copy()
        a[0] = 1  # group 0 keeps 31 columns: the first run of 32 takes one of group 1
        g[o + "g_idx"] = ("I32", a)

    def bias(g):
        g[o + "bias"] = ("F16", np.full(64, 0.5, dtype=np.float16))

    def missing_scales(g):
        del g[gate + "scales"]

    cases = [
        (g32, g_idx_out_of_range, "g_idx_range", [o + "g_idx", "outside"]),
        (g32, qweight_shape, "qweight_shape", [gate + "qweight", "[7, 160]", "expected [8, 160]"]),
        (g32, qzeros_shape, "qzeros_shape", [gate + "qzeros", "[2, 19]", "expected [2, 20]"]),
        (g32, mixed_run, "mixed_run", [o + "g_idx", "mix groups"]),
        (nog, bias, "bias", [o + "bias", "bias"]),
        (g32, missing_scales, "missing_scales", [gate + "scales", "missing"]),
    ]
    for fx, edit, label, needles in cases:
        expect_refusal(t, binary, write_variant(fx, edit, label), label, needles)

    # bits 3 in AutoGPTQ's quantize_config.json.
    d = os.path.join(work, "bits3")
    if os.path.exists(d):
        shutil.rmtree(d)
    shutil.copytree(os.path.join(fixtures, act["name"]), d)
    qc = make_gptq.quant_fields(act)
    qc["bits"] = 3
    make_gptq.write_json(os.path.join(d, "quantize_config.json"), qc)
    expect_refusal(t, binary, d, "bits3", ["quantize_config.json", "3 bits"])



def check_bin(t, binary, gdir, name, work):
    """The same checkpoint saved with torch.save (qweight, qzeros, g_idx as
    IntStorage, scales as HalfStorage), as some GPTQ repositories publish it:
    logits bit-identical to the safetensors copy's."""
    import torch

    bdir = os.path.join(work, name + "_bin")
    shutil.rmtree(bdir, ignore_errors=True)
    os.makedirs(bdir)
    for f in os.listdir(gdir):
        if not f.endswith(".safetensors"):
            shutil.copy(os.path.join(gdir, f), bdir)
    sd = collections.OrderedDict((n, torch.from_numpy(a.copy()))
                                 for n, a in safetensors_raw(os.path.join(gdir, "model.safetensors")))
    torch.save(sd, os.path.join(bdir, "pytorch_model.bin"))
    tokens = token_sequence(name + "_bin", 7, gen_fixtures_vocab(gdir))
    outs = []
    for d in (gdir, bdir):
        out = os.path.join(work, "logits_%d.f32" % len(outs))
        p = run([binary, "logits", "-m", d, "--tokens", " ".join(map(str, tokens)), "-o", out, "--cache-type", "f32"])
        if p.returncode != 0:
            t.record(False, "%s as torch.save .bin: %s" % (name, p.stderr.decode().strip()))
            return
        outs.append(open(out, "rb").read())
    t.record(outs[0] == outs[1], "%s as torch.save .bin (IntStorage): logits bit-identical to the safetensors copy"
             % name)


def safetensors_raw(path):
    """(name, array in its stored dtype) of a safetensors file, in file order."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    types = {"I32": "<i4", "F16": "<f2", "F32": "<f4"}
    items = sorted((v["data_offsets"][0], k, v) for k, v in header.items() if k != "__metadata__")
    return [(k, np.frombuffer(blob, dtype=types[v["dtype"]], count=int(np.prod(v["shape"], dtype=np.int64)),
                              offset=8 + n + off).reshape(v["shape"])) for off, k, v in items]


def gen_fixtures_vocab(d):
    return json.load(open(os.path.join(d, "config.json")))["vocab_size"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="GPTQ int4 checkpoints against NumPy")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.bin)
    fixtures = os.path.join(args.fixtures, "gptq")
    os.makedirs(fixtures, exist_ok=True)
    for fx in make_gptq.CASES.values():  # cheap (under a second): always written afresh
        make_gptq.write_case(fx, fixtures)
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_gptq_")
    try:
        for name, fx in make_gptq.CASES.items():
            gdir, ddir = os.path.join(fixtures, name), os.path.join(fixtures, name + "_deq")
            check_logits(t, binary, gdir, ddir, name, work)
            check_quantize(t, binary, gdir, fx, work)
            check_info(t, binary, gdir, fx)
            check_quantize_at_load(t, binary, gdir, name, work)
        check_bin(t, binary, os.path.join(fixtures, "gptq_b2_13b_act"), "gptq_b2_13b_act", work)
        corrupt_cases(t, binary, fixtures, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
