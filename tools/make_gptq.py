#!/usr/bin/python3
"""make_gptq.py - tiny GPTQ int4 checkpoints in AutoGPTQ's layout, and their dequantized twins.

    make_gptq.py --out DIR [--only NAME ...] [--list]
    make_gptq.py --out DIR --random-shape 7b|13b [--group-size 128]   (a benchmark model)

For each case writes DIR/<name>/ (the GPTQ checkpoint) and DIR/<name>_deq/
(the same model with every matrix dequantized, as an ordinary f32
safetensors checkpoint that tools/reference.py reads). The weights are
tools/gen_fixtures.py's master weights for the case's shape; each linear
layer (W_pack, o_proj, gate_proj, up_proj, down_proj) is quantized per group
with NumPy and packed as AutoGPTQ's QuantLinear (qlinear_cuda_old.py) stores
it, for in_features K and out_features N:

    qweight  I32 [K/8, N]   code of weight (n, k) at bits 4*(k%8) of qweight[k//8][n]
    qzeros   I32 [G, N/8]   zero(g, n) - 1 at bits 4*(n%8) of qzeros[g][n//8]
    scales   F16 [G, N]
    g_idx    I32 [K]        group of input column k

    w(n, k) = scales[g][n] * (q - zero),  g = g_idx[k]

(AutoGPTQ's pack() stores `zeros - 1`, its forward() adds the 1 back.)
Embeddings, norms and lm_head stay float (f16, like published GPTQ files;
the twin holds the same f16 values as f32). dequantize() is the NumPy
definition the tests compare the engine with.
"""

import argparse
import collections
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures  # noqa: E402

LINEARS = ("self_attn.W_pack", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _case(name, kind, n_embd, n_head, n_ff, n_layer, group_size, sym, desc_act, where="config", extra=None,
          zero_bias=False):
    fx = gen_fixtures._fixture(name, kind, "f16", "st", n_embd=n_embd, n_head=n_head, n_ff=n_ff, n_layer=n_layer,
                               vocab=gen_fixtures.TINY_VOCAB, extra=extra)
    fx.update(group_size=group_size, sym=sym, desc_act=desc_act, where=where, zero_bias=zero_bias)
    return fx


CASES = collections.OrderedDict((c["name"], c) for c in [
    # Baichuan-7B shape: RoPE, plain head; group size 32, asymmetric, quantization_config in config.json.
    _case("gptq_b1_7b_g32", "baichuan-7b", 64, 4, 160, 2, group_size=32, sym=False, desc_act=False),
    # Baichuan2-13B shape: ALiBi, NormHead; group size 64 with desc_act (a random
    # column order per layer), symmetric, AutoGPTQ's quantize_config.json.
    _case("gptq_b2_13b_act", "baichuan2-13b", 128, 4, 192, 2, group_size=64, sym=True, desc_act=True,
          where="quantize_config", extra={"norm_head": True}),
    # Baichuan2-7B shape: RoPE, NormHead; one group per row (group_size -1),
    # asymmetric, desc_act order with a single group, all-zero biases stored.
    _case("gptq_b2_7b_nogroup", "baichuan2-7b", 64, 2, 128, 2, group_size=-1, sym=False, desc_act=False,
          extra={"norm_head": True}, zero_bias=True),
])


def f16(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16)


def make_g_idx(K, group_size, desc_act, rng):
    """Group of each input column: k // group_size, or with desc_act the
    groups handed out along a random column order (GPTQ's activation order)."""
    gs = K if group_size < 0 else group_size
    if not desc_act:
        return (np.arange(K) // gs).astype(np.int32)
    order = rng.permutation(K)
    g = np.empty(K, dtype=np.int32)
    g[order] = np.arange(K) // gs
    return g


def quantize(w, g_idx, n_groups, sym):
    """w (N, K) float32 -> codes (N, K) in 0..15, scales f16 (G, N), zeros (G, N) in 1..15."""
    N, K = w.shape
    q = np.zeros((N, K), dtype=np.int64)
    scales = np.zeros((n_groups, N), dtype=np.float16)
    zeros = np.zeros((n_groups, N), dtype=np.int64)
    for g in range(n_groups):
        cols = np.nonzero(g_idx == g)[0]
        x = w[:, cols].astype(np.float64)
        if sym:
            s = np.maximum(np.abs(x).max(axis=1), 1e-8) / 7.0
            z = np.full(N, 8, dtype=np.int64)
        else:
            lo = np.minimum(x.min(axis=1), 0.0)
            hi = np.maximum(x.max(axis=1), 0.0)
            s = np.maximum(hi - lo, 1e-8) / 15.0
            z = np.clip(np.round(-lo / s), 1, 15).astype(np.int64)  # zero - 1 must fit 4 bits
        s16 = f16(s)
        scales[g] = s16
        zeros[g] = z
        q[:, cols] = np.clip(np.round(x / s16.astype(np.float64)[:, None]) + z[:, None], 0, 15)
    return q, scales, zeros


def dequantize(q, scales, zeros, g_idx):
    """The float32 weights: scales[g][n] * (q - zero[g][n]), one f32 rounding."""
    s = scales.astype(np.float32)[g_idx].T  # (N, K)
    z = zeros[g_idx].T
    return (s * (q - z).astype(np.float32)).astype(np.float32)


def pack(q, scales, zeros, g_idx):
    """AutoGPTQ tensors (qweight, qzeros, scales, g_idx) as numpy arrays."""
    N, K = q.shape
    qt = q.T.astype(np.uint32)  # (K, N)
    qweight = np.zeros((K // 8, N), dtype=np.uint32)
    for j in range(8):
        qweight |= qt[j::8] << np.uint32(4 * j)
    stored = (zeros - 1).astype(np.uint32)  # (G, N)
    qzeros = np.zeros((zeros.shape[0], N // 8), dtype=np.uint32)
    for j in range(8):
        qzeros |= stored[:, j::8] << np.uint32(4 * j)
    return qweight.view(np.int32), qzeros.view(np.int32), scales, g_idx.astype(np.int32)


def build(fx):
    """(gptq tensors {name: (st_dtype, array)}, dequantized f32 weights {name: array})."""
    master = gen_fixtures.generate_weights(fx)
    rng = np.random.Generator(np.random.PCG64(gen_fixtures.seed_of(fx["name"] + "/gptq")))
    gptq, deq = collections.OrderedDict(), collections.OrderedDict()
    for name, w in master.items():
        prefix = name[:-len(".weight")]
        if not any(prefix.endswith(l) for l in LINEARS):
            if name.endswith("inv_freq"):
                gptq[name] = ("F32", w)
                deq[name] = w
            else:
                gptq[name] = ("F16", f16(w))
                deq[name] = f16(w).astype(np.float32)
            continue
        N, K = w.shape
        n_groups = 1 if fx["group_size"] < 0 else -(-K // fx["group_size"])
        g_idx = make_g_idx(K, fx["group_size"], fx["desc_act"], rng)
        q, scales, zeros = quantize(w, g_idx, n_groups, fx["sym"])
        qweight, qzeros, scales, g_idx = pack(q, scales, zeros, g_idx)
        gptq[prefix + ".qweight"] = ("I32", qweight)
        gptq[prefix + ".qzeros"] = ("I32", qzeros)
        gptq[prefix + ".scales"] = ("F16", scales)
        gptq[prefix + ".g_idx"] = ("I32", g_idx)
        if fx["zero_bias"]:
            gptq[prefix + ".bias"] = ("F16", np.zeros(N, dtype=np.float16))
        deq[name] = dequantize(q, scales, zeros, g_idx)
    return gptq, deq


def quant_fields(fx):
    return collections.OrderedDict([("bits", 4), ("group_size", fx["group_size"]), ("damp_percent", 0.01),
                                    ("desc_act", fx["desc_act"]), ("sym", fx["sym"]), ("true_sequential", True)])


def write_st(path, tensors):
    """tensors: {name: (st_dtype, array)}, written larger items first (aligned)."""
    size = {"F32": 4, "I32": 4, "F16": 2}
    entries = []
    for name in sorted(tensors, key=lambda n: (-size[tensors[n][0]], n)):
        dt, a = tensors[name]
        np_dt = {"F32": "<f4", "I32": "<i4", "F16": "<f2"}[dt]
        entries.append((name, dt, a.shape, np.ascontiguousarray(a, dtype=np_dt).tobytes()))
    gen_fixtures.write_safetensors(path, entries, {"format": "pt"})


def write_json(path, obj):
    with open(path, "w") as fp:
        json.dump(obj, fp, indent=2)
        fp.write("\n")


def write_case(fx, out_root):
    gptq, deq = build(fx)
    for d in (fx["name"], fx["name"] + "_deq"):
        p = os.path.join(out_root, d)
        if os.path.exists(p):
            shutil.rmtree(p)
        os.makedirs(p)
    gdir, ddir = os.path.join(out_root, fx["name"]), os.path.join(out_root, fx["name"] + "_deq")
    cfg = gen_fixtures.make_config(fx)
    write_json(os.path.join(ddir, "config.json"), cfg)
    write_st(os.path.join(ddir, "model.safetensors"), collections.OrderedDict((n, ("F32", a)) for n, a in deq.items()))
    if fx["where"] == "config":
        qc = quant_fields(fx)
        qc["quant_method"] = "gptq"
        cfg["quantization_config"] = qc
    else:
        write_json(os.path.join(gdir, "quantize_config.json"), quant_fields(fx))
    write_json(os.path.join(gdir, "config.json"), cfg)
    write_st(os.path.join(gdir, "model.safetensors"), gptq)
    return gdir, ddir


SHAPES = {"7b": dict(n_embd=4096, n_ff=11008, n_layer=32, n_head=32, vocab=125696),
          "13b": dict(n_embd=5120, n_ff=13696, n_layer=40, n_head=40, vocab=125696)}


def write_random(out, shape, group_size):
    """A benchmark model of an official shape in AutoGPTQ's layout: random
    codes, zeros 7 (stored), scales and f16 tensors (the values mean nothing,
    only the bytes per token matter)."""
    sh = SHAPES[shape]
    e, f, nl, v = sh["n_embd"], sh["n_ff"], sh["n_layer"], sh["vocab"]
    rng = np.random.Generator(np.random.PCG64(11))
    t = collections.OrderedDict()

    def half(shape_, std):
        return ("F16", (rng.standard_normal(shape_, dtype=np.float32) * std).astype(np.float16))

    t["model.embed_tokens.weight"] = half((v, e), 0.02)
    t["lm_head.weight"] = half((v, e), 0.02)
    t["model.norm.weight"] = ("F16", np.ones(e, np.float16))
    for i in range(nl):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = ("F16", np.ones(e, np.float16))
        t[p + "post_attention_layernorm.weight"] = ("F16", np.ones(e, np.float16))
        for name, (n, k) in (("self_attn.W_pack", (3 * e, e)), ("self_attn.o_proj", (e, e)),
                             ("mlp.gate_proj", (f, e)), ("mlp.up_proj", (f, e)), ("mlp.down_proj", (e, f))):
            g = k // group_size
            t[p + name + ".qweight"] = ("I32", rng.integers(-2 ** 31, 2 ** 31, (k // 8, n), dtype=np.int64)
                                        .astype(np.int32))
            t[p + name + ".qzeros"] = ("I32", np.full((g, n // 8), 0x77777777, np.int32))
            t[p + name + ".scales"] = ("F16", np.full((g, n), 0.002, np.float16))
            t[p + name + ".g_idx"] = ("I32", (np.arange(k) // group_size).astype(np.int32))
    os.makedirs(out, exist_ok=True)
    write_st(os.path.join(out, "model.safetensors"), t)
    fx = gen_fixtures._fixture("random", "baichuan2-13b" if shape == "13b" else "baichuan2-7b", "f16", "st",
                               n_embd=e, n_head=sh["n_head"], n_ff=f, n_layer=nl, vocab=v)
    cfg = gen_fixtures.make_config(fx)
    cfg["quantization_config"] = collections.OrderedDict([("bits", 4), ("group_size", group_size),
                                                          ("desc_act", False), ("sym", True),
                                                          ("quant_method", "gptq")])
    write_json(os.path.join(out, "config.json"), cfg)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="directory to write the checkpoints into")
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--random-shape", choices=list(SHAPES),
                    help="instead of the cases: a benchmark model of this shape with random codes")
    ap.add_argument("--group-size", type=int, default=128, help="with --random-shape (default 128)")
    args = ap.parse_args(argv)
    if args.random_shape:
        if not args.out:
            ap.error("--out is required")
        write_random(args.out, args.random_shape, args.group_size)
        print(args.out)
        return 0
    if args.list:
        print("\n".join(CASES))
        return 0
    if not args.out:
        ap.error("--out is required")
    for n in args.only or list(CASES):
        if n not in CASES:
            print("make_gptq: unknown case %r (known: %s)" % (n, ", ".join(CASES)), file=sys.stderr)
            return 2
        os.makedirs(args.out, exist_ok=True)
        print("%s" % " ".join(write_case(CASES[n], args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
