#!/usr/bin/python3
"""make_bnb4.py - tiny checkpoints in the layout of Baichuan2-*-Chat-4bits (bitsandbytes 4-bit).

    make_bnb4.py --out DIR --fixture NAME [--quant-type nf4|fp4] [--no-double-quant] [--blocksize 64]
    make_bnb4.py --out DIR --random-shape 7b|13b [--quant-type nf4|fp4]   (a benchmark model)

Writes two model directories from one tiny fixture of gen_fixtures.py:

    DIR/NAME-<type>/      config.json with quantization_config, pytorch_model.bin
                          in the published layout (below), tokenizer files as the
                          fixture has them
    DIR/NAME-<type>-ref/  the same model with every quantized matrix replaced by
                          its dequantization (float32 safetensors): what
                          reference.py computes logits from

The published layout (the repos' quantizer.py, init_model_weight_int4 and
Params4bitCuda): the state dict holds, for each linear layer's weight
"<p>.weight" of W_pack, o_proj, gate_proj, up_proj and down_proj,

    "<p>.weight.data"         uint8 [numel / 2, 1]: two 4-bit codes per byte,
                              element 2i in the high nibble, 2i+1 in the low
    "<p>.weight.quant_state"  a list, as bitsandbytes 0.41's quantize_4bit builds it:
        [absmax, shape, dtype, blocksize, compressed_stats, quant_type, code]
          absmax            uint8 [numel / blocksize] with double quantization
                            (else float32)
          shape             torch.Size([rows, cols])
          dtype             torch.float16 (what was quantized)
          blocksize         64
          compressed_stats  [offset, state2] with double quantization, else None:
                            offset = mean of the float32 absmax (a 0-dim tensor),
                            state2 = [absmax2 (float32 per 256), code2 (float32
                            [256], the signed dynamic map), 256, False,
                            torch.float32, None, None]
          quant_type        "nf4" or "fp4"
          code              float32 [16]: the 4-bit value table
Every other tensor (embeddings, norms, lm_head) is float16.

Quantization and dequantization here are a NumPy rendering of bitsandbytes'
functional.py (quantize_4bit, dequantize_4bit, quantize_blockwise,
dequantize_blockwise, create_dynamic_map, get_4bit_type) and its CUDA
kernels' arithmetic, in float32 step by step:
    absmax_b = max |w| over block b (blocksize elements of the flattened weight)
    q        = the code nearest w / absmax_b
    with double quantization: offset = mean(absmax); c = absmax - offset;
        absmax2_j = max |c| over 256 blocks; q2 = the code2 entry nearest c / absmax2_j
    dequantized: absmax_b = code2[q2_b] * absmax2_(b/256) + offset (two float32
        roundings, as dequantize_blockwise then "absmax += offset"),
        w = code[q] * absmax_b (one float32 rounding)
It shares nothing with the C loader: it is the independent side of the test.
"""

import argparse
import collections
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402

QUANTIZED = ("self_attn.W_pack.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
             "mlp.down_proj.weight")

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
# get_4bit_type("fp4"): sign bit 3, then the values below, divided by their max.
FP4 = (np.array([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0],
                dtype=np.float32) / np.float32(12.0)).astype(np.float32)


def dynamic_map_signed():
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
    each exponent i < 7, the midpoints of linspace(0.1, 1, 2^i + 1) times
    10^(i - 6), with both signs; then 0 and 1, sorted (256 values)."""
    data = []
    for i in range(7):
        bounds = np.linspace(0.1, 1, 2 ** i + 1, dtype=np.float32)
        means = (bounds[:-1] + bounds[1:]) / np.float32(2.0)
        data += list((np.float32(10.0 ** (-6 + i)) * means).astype(np.float32))
        data += list((-np.float32(10.0 ** (-6 + i)) * means).astype(np.float32))
    data += [0.0, 1.0]
    data += [0.0] * (256 - len(data))
    return np.array(sorted(data), dtype=np.float32)


def nearest(code, v):
    """Index of the entry of code nearest each value of v (the first on ties)."""
    return np.argmin(np.abs(v[..., None].astype(np.float64) - code.astype(np.float64)[None, :]), axis=-1)


def quantize_4bit(w, code, blocksize, double_quant, code2):
    """Returns the stored pieces and the float32 dequantization of w."""
    flat = np.ascontiguousarray(w, dtype=np.float32).reshape(-1)
    assert flat.size % blocksize == 0 and flat.size % 2 == 0
    blocks = flat.reshape(-1, blocksize)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    safe = np.where(absmax == 0, np.float32(1), absmax)
    q = nearest(code, (blocks / safe[:, None]).astype(np.float32)).reshape(-1).astype(np.uint8)
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8)
    st = dict(packed=packed, q=q)
    if double_quant:
        offset = np.float32(absmax.astype(np.float32).mean(dtype=np.float32))
        c = (absmax - offset).astype(np.float32)
        pad = (-c.size) % 256
        cp = np.concatenate([c, np.zeros(pad, np.float32)]).reshape(-1, 256)
        absmax2 = np.abs(cp).max(axis=1).astype(np.float32)
        safe2 = np.where(absmax2 == 0, np.float32(1), absmax2)
        q2 = nearest(code2, (cp / safe2[:, None]).astype(np.float32)).reshape(-1)[:c.size].astype(np.uint8)
        st.update(offset=offset, absmax2=absmax2, q2=q2)
        deq_absmax = (code2[q2] * np.repeat(absmax2, 256)[:c.size]).astype(np.float32)
        deq_absmax = (deq_absmax + offset).astype(np.float32)
    else:
        st.update(absmax=absmax)
        deq_absmax = absmax
    deq = (code[q] * np.repeat(deq_absmax, blocksize)).astype(np.float32)
    return st, deq.reshape(w.shape)


def quant_state_list(torch, st, shape, quant_type, code, blocksize, double_quant, code2):
    t = torch.from_numpy
    if double_quant:
        state2 = [t(st["absmax2"].copy()), t(code2.copy()), 256, False, torch.float32, None, None]
        return [t(st["q2"].copy()), torch.Size(shape), torch.float16, blocksize,
                [torch.tensor(st["offset"], dtype=torch.float32), state2], quant_type, t(code.copy())]
    return [t(st["absmax"].copy()), torch.Size(shape), torch.float16, blocksize, None, quant_type, t(code.copy())]


def write_pair(fx, out_root, quant_type="nf4", double_quant=True, blocksize=64, suffix=None):
    """Writes out_root/<name>-<suffix> (4-bit) and out_root/<name>-<suffix>-ref; returns both paths."""
    import torch

    suffix = suffix or quant_type
    qdir = os.path.join(out_root, "%s-%s" % (fx["name"], suffix))
    rdir = qdir + "-ref"
    for d in (qdir, rdir):
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
    code = NF4 if quant_type == "nf4" else FP4
    code2 = dynamic_map_signed()
    weights = gf.generate_weights(fx)
    sd = collections.OrderedDict()
    ref = collections.OrderedDict()
    for name in gf.tensor_names(fx):
        w16 = weights[name].astype(np.float16)
        if name.endswith(QUANTIZED):
            st, deq = quantize_4bit(w16.astype(np.float32), code, blocksize, double_quant, code2)
            sd[name + ".data"] = torch.from_numpy(st["packed"].reshape(-1, 1).copy())
            sd[name + ".quant_state"] = quant_state_list(torch, st, list(w16.shape), quant_type, code, blocksize,
                                                         double_quant, code2)
            ref[name] = deq
        else:
            sd[name] = torch.from_numpy(w16.copy())
            ref[name] = w16.astype(np.float32)
    torch.save(sd, os.path.join(qdir, "pytorch_model.bin"))

    cfg = gf.make_config(fx)
    cfg["torch_dtype"] = "float16"
    qcfg = dict(cfg)
    qcfg["quantization_config"] = {
        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_type": quant_type,
        "bnb_4bit_use_double_quant": double_quant, "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None, "llm_int8_threshold": 6.0,
        "load_in_4bit": True, "load_in_8bit": False, "quant_method": "bitsandbytes"}
    cfg["torch_dtype"] = "float32"
    for d, c in ((qdir, qcfg), (rdir, cfg)):
        gf._write_json(os.path.join(d, "config.json"), c)
        gen = gf.make_generation_config(fx)
        if gen is not None:
            gf._write_json(os.path.join(d, "generation_config.json"), gen)
        gf._write_json(os.path.join(d, "tokenizer_config.json"), gf.make_tokenizer_config(fx))
        if fx["tokenizer"]:
            shutil.copyfile(fx["tokenizer"], os.path.join(d, "tokenizer.model"))
    entries = [(n, "F32", list(a.shape), np.ascontiguousarray(a, dtype="<f4").tobytes()) for n, a in ref.items()]
    gf.write_safetensors(os.path.join(rdir, "model.safetensors"), entries, {"format": "pt"})
    return qdir, rdir


# Tiny shapes whose rows are whole 64-blocks, as every official model's are
# (4096, 5120, 11008, 13696 columns): a 7B-like RoPE model and a 13B-like
# ALiBi one, both Baichuan2 (NormHead).
FIXTURES = collections.OrderedDict((f["name"], f) for f in [
    gf._fixture("bnb_7b", "baichuan2-7b", "f16", "bin", n_embd=64, n_head=2, n_ff=128, n_layer=2, vocab=300,
                extra={"norm_head": True}),
    gf._fixture("bnb_13b", "baichuan2-13b", "f16", "bin", n_embd=128, n_head=4, n_ff=192, n_layer=2, vocab=300,
                extra={"norm_head": True}),
])


SHAPES = {"7b": dict(n_embd=4096, n_ff=11008, n_layer=32, n_head=32, vocab=125696),
          "13b": dict(n_embd=5120, n_ff=13696, n_layer=40, n_head=40, vocab=125696)}


def write_random(out, shape, quant_type="nf4"):
    """A benchmark model of an official shape in the 4bits layout: random
    codes, absmax and float16 tensors (the values mean nothing, only the
    bytes per token matter), written with torch.save like the real ones."""
    import torch

    sh = SHAPES[shape]
    e, f, nl, v = sh["n_embd"], sh["n_ff"], sh["n_layer"], sh["vocab"]
    rng = np.random.Generator(np.random.PCG64(7))
    code = NF4 if quant_type == "nf4" else FP4
    code2 = dynamic_map_signed()
    sd = collections.OrderedDict()

    def half(shape_, std):
        return torch.from_numpy((rng.standard_normal(shape_, dtype=np.float32) * std).astype(np.float16))

    sd["model.embed_tokens.weight"] = half((v, e), 0.02)
    for i in range(nl):
        p = "model.layers.%d." % i
        for name, (rows, cols) in (("self_attn.W_pack.weight", (3 * e, e)), ("self_attn.o_proj.weight", (e, e)),
                                   ("mlp.gate_proj.weight", (f, e)), ("mlp.down_proj.weight", (e, f)),
                                   ("mlp.up_proj.weight", (f, e))):
            n = rows * cols
            nb = n // 64
            sd[p + name + ".data"] = torch.from_numpy(rng.integers(0, 256, (n // 2, 1), dtype=np.uint8))
            state2 = [torch.from_numpy(np.full((nb + 255) // 256, 0.01, np.float32)), torch.from_numpy(code2.copy()),
                      256, False, torch.float32, None, None]
            sd[p + name + ".quant_state"] = [torch.from_numpy(rng.integers(0, 256, nb, dtype=np.uint8)),
                                             torch.Size([rows, cols]), torch.float16, 64,
                                             [torch.tensor(0.02, dtype=torch.float32), state2], quant_type,
                                             torch.from_numpy(code.copy())]
        sd[p + "input_layernorm.weight"] = torch.ones(e, dtype=torch.float16)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(e, dtype=torch.float16)
    sd["model.norm.weight"] = torch.ones(e, dtype=torch.float16)
    sd["lm_head.weight"] = half((v, e), 0.02)
    os.makedirs(out, exist_ok=True)
    torch.save(sd, os.path.join(out, "pytorch_model.bin"))
    fx = gf._fixture("random", "baichuan2-13b" if shape == "13b" else "baichuan2-7b", "f16", "bin", n_embd=e,
                     n_head=sh["n_head"], n_ff=f, n_layer=nl, vocab=v)
    cfg = gf.make_config(fx)
    cfg["quantization_config"] = {"bnb_4bit_quant_type": quant_type, "bnb_4bit_use_double_quant": True,
                                  "load_in_4bit": True, "load_in_8bit": False, "quant_method": "bitsandbytes"}
    gf._write_json(os.path.join(out, "config.json"), cfg)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--fixture", choices=list(FIXTURES))
    ap.add_argument("--random-shape", choices=list(SHAPES),
                    help="instead of a fixture pair: a benchmark model of this shape with random 4-bit codes")
    ap.add_argument("--quant-type", default="nf4", choices=["nf4", "fp4"])
    ap.add_argument("--no-double-quant", action="store_true")
    ap.add_argument("--blocksize", type=int, default=64)
    args = ap.parse_args(argv)
    if args.random_shape:
        write_random(args.out, args.random_shape, args.quant_type)
        print(args.out)
        return
    if not args.fixture:
        ap.error("--fixture or --random-shape is required")
    q, r = write_pair(FIXTURES[args.fixture], args.out, args.quant_type, not args.no_double_quant, args.blocksize)
    print(q)
    print(r)


if __name__ == "__main__":
    main()
