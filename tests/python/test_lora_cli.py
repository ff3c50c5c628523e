#!/usr/bin/python3
"""test_lora_cli.py - LoRA adapters (PEFT files) through the CLI, against the
float64 reference on the merged weights.

    test_lora_cli.py --bin PATH_TO_baichuan --fixtures DIR

Adapters are written by tools/make_lora.py in PEFT's layout (adapter_config.json,
adapter_model.safetensors or a torch.save adapter_model.bin). Checks:

  - `baichuan logits --lora A` against tools/reference.py with A merged into
    the float64 weights (W + scale * B A, written from PEFT's definition): r = 1
    on W_pack with alpha 32 (Baichuan2's fine-tune.py recipe) and r = 16 on all
    five modules, .bin and safetensors, f32 / f16 / bf16 factors, rslora, a
    user scale, two adapters at once; RoPE and ALiBi; within 1e-4 on f32 bases
    and 2e-2 on bf16 / f16 bases, GGUF q8_0 and q4_0 bases (Q/K split and
    permuted as llama.cpp's converter writes them), a bitsandbytes NF4 and a
    GPTQ (desc_act) checkpoint (against the reference on their dequantized
    weights); the
    adapter's own change of the logits within the same tolerance of the
    reference's where the base alone is exact (the 8-bit q8_0 / q4_0 bases are
    already near 2e-2 from their reference on this tiny model, so there only
    the whole is held to 2e-2);
  - `baichuan merge` (a safetensors directory and a GGUF, f32) gives the
    unmerged run's logits within f32 rounding (1e-5);
  - what is refused, each with a one-line error naming the field or tensor and
    exit status 1: DoRA (use_dora, a magnitude vector), bias, another
    peft_type, fan_in_fan_out, modules_to_save, an unknown module (config and
    tensor), a rank or shape that does not match, a missing factor, a
    truncated file, no weights file.
Prints one line per case and `N passed, M failed`; exits non-zero on failure.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import Tally, rel_err, token_sequence  # noqa: E402

import gen_fixtures as gf  # noqa: E402
import gguf_writer as gw  # noqa: E402
import make_bnb4  # noqa: E402
import make_gptq  # noqa: E402
import make_lora  # noqa: E402
import reference  # noqa: E402

TIMEOUT_S = 300
N_TOKENS = 24
ALL = ["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"]

# A base whose rows are whole 32-blocks, for the quantized GGUF cases.
QFIX = gf._fixture("lora_q", "baichuan2-7b", "f32", "st", n_embd=64, n_head=2, n_ff=128, n_layer=2, vocab=300,
                   extra={"norm_head": True})


def run(args, check=True):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode(errors="replace")))
    return p


def engine_logits(binary, model, tokens, loras, out, n_vocab):
    args = [binary, "logits", "-m", model, "--tokens", " ".join(map(str, tokens)), "-o", out, "--cache-type", "f32"]
    for spec in loras:
        args += ["--lora", spec]
    run(args)
    return np.fromfile(out, dtype="<f4").reshape(len(tokens), n_vocab)


def ref_logits(model, tokens, loras):
    pairs = []
    for spec in loras:
        path, _, scale = spec.rpartition(":") if ":" in spec else (spec, "", "1")
        pairs.append((path, float(scale)))
    return reference.reference_logits(model, tokens, loras=pairs)


def shape_of(model):
    with open(os.path.join(model, "config.json")) as f:
        c = json.load(f)
    return c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]


def adapter(work, model, name, **kw):
    """make_lora.write_adapter for model's shape into work/name."""
    e, f, nl, _ = shape_of(model)
    out = os.path.join(work, name)
    if not os.path.exists(out):
        make_lora.write_adapter(out, e, f, nl, **kw)
    return out


def dequantize(gtype, raw, n):
    """n float64 values of a GGUF tensor's bytes: f32, or llama.cpp's q8_0
    (f16 d, 32 int8: d * q) and q4_0 (f16 d, 16 bytes: element j in the low
    nibble of byte j, element j + 16 in the high one, d * (q - 8)) blocks
    (ggml-quants.c, dequantize_row_q8_0 / _q4_0)."""
    if gtype == gw.GGML["f32"]:
        return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float64)
    nb = n // 32
    if gtype == gw.GGML["q8_0"]:
        b = np.frombuffer(raw, dtype=np.uint8, count=nb * 34).reshape(nb, 34)
        d = b[:, :2].copy().view("<f2").astype(np.float64)
        return (d * b[:, 2:].view(np.int8).astype(np.float64)).reshape(n)
    if gtype == gw.GGML["q4_0"]:
        b = np.frombuffer(raw, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
        d = b[:, :2].copy().view("<f2").astype(np.float64)
        q = np.concatenate([b[:, 2:] & 0xF, b[:, 2:] >> 4], axis=1).astype(np.float64) - 8.0
        return (d * q).reshape(n)
    raise ValueError("ggml type %d: no dequantizer here" % gtype)


def dequantized_dir(gguf, src, out):
    """A Hugging Face directory (src's config.json, f32 safetensors) holding
    the GGUF's weights dequantized, W_pack put back together from attn_q/k/v
    (Q and K rows back from llama.cpp's RoPE order): the reference's base."""
    with open(gguf, "rb") as fp:
        blob = fp.read()
    infos, data = gw._read_header(blob)
    e, f, nl, v = shape_of(src)
    with open(os.path.join(src, "config.json")) as fp:
        n_head = json.load(fp)["num_attention_heads"]

    def get(name):
        gtype, ne, off = infos[name]
        n = int(np.prod(ne))
        return dequantize(gtype, memoryview(blob)[data + off:], n).reshape(ne[::-1])

    def unpermute(w):
        rows, cols = w.shape
        return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)

    t = {"model.embed_tokens.weight": get("token_embd.weight"), "model.norm.weight": get("output_norm.weight"),
         "lm_head.weight": get("output.weight")}
    for i in range(nl):
        p, g = "model.layers.%d." % i, "blk.%d." % i
        t[p + "input_layernorm.weight"] = get(g + "attn_norm.weight")
        t[p + "self_attn.W_pack.weight"] = np.concatenate(
            [unpermute(get(g + "attn_q.weight")), unpermute(get(g + "attn_k.weight")), get(g + "attn_v.weight")])
        t[p + "self_attn.o_proj.weight"] = get(g + "attn_output.weight")
        t[p + "post_attention_layernorm.weight"] = get(g + "ffn_norm.weight")
        t[p + "mlp.gate_proj.weight"] = get(g + "ffn_gate.weight")
        t[p + "mlp.up_proj.weight"] = get(g + "ffn_up.weight")
        t[p + "mlp.down_proj.weight"] = get(g + "ffn_down.weight")
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(src, "config.json"), os.path.join(out, "config.json"))
    make_lora.write_safetensors(os.path.join(out, "model.safetensors"),
                                {k: a.astype(np.float32) for k, a in t.items()}, "f32")
    return out


def accuracy(t, binary, work, fixtures):
    cases = []  # (label, engine model, reference model, adapter specs, tolerance)
    f32 = os.path.join(fixtures, "b2_7b_f32_st")
    official = adapter(work, f32, "b2_official", modules=["W_pack"], rank=1, alpha=32, fmt="st", seed=1)
    all16_bin = adapter(work, f32, "b2_all16_bin", modules=ALL, rank=16, alpha=32, fmt="bin", dtype="f16", seed=2)
    rs_bf16 = adapter(work, f32, "b2_rs_bf16", modules=ALL, rank=8, alpha=16, rslora=True, fmt="st", dtype="bf16",
                      seed=3)
    cases += [
        ("rope f32 base, r1 W_pack alpha 32 (st f32)", f32, f32, [official], 1e-4),
        ("rope f32 base, r16 all (bin f16)", f32, f32, [all16_bin], 1e-4),
        ("rope f32 base, r8 all rslora (st bf16)", f32, f32, [rs_bf16], 1e-4),
        ("rope f32 base, two adapters, scale 0.5", f32, f32, [official, all16_bin + ":0.5"], 1e-4),
    ]
    alibi = os.path.join(fixtures, "b1_13b_f32_bin")
    cases += [
        ("alibi f32 base, r1 W_pack alpha 32 (bin f32)", alibi, alibi,
         [adapter(work, alibi, "b1_official", modules=["W_pack"], rank=1, alpha=32, fmt="bin", seed=4)], 1e-4),
        ("alibi f32 base, r16 all (st f32)", alibi, alibi,
         [adapter(work, alibi, "b1_all16", modules=ALL, rank=16, alpha=32, fmt="st", seed=5)], 1e-4),
    ]
    bf16 = os.path.join(fixtures, "b2_7b_bf16_bin_sharded")
    cases.append(("rope bf16 base, r16 all (st f32)", bf16, bf16,
                  [adapter(work, bf16, "bf_all16", modules=ALL, rank=16, alpha=32, seed=6)], 2e-2))
    f16 = os.path.join(fixtures, "b2_13b_f16_st_sharded")
    cases.append(("alibi f16 base (40 heads), r1 W_pack alpha 32", f16, f16,
                  [adapter(work, f16, "f16_official", modules=["W_pack"], rank=1, alpha=32, seed=7)], 2e-2))

    # GGUF bases: Q and K split from W_pack and permuted by the writer; the
    # quantized ones against the reference on their dequantized weights.
    qsrc = gf.write_fixture(QFIX, work) if not os.path.isdir(os.path.join(work, "lora_q")) else os.path.join(
        work, "lora_q")
    qa = adapter(work, qsrc, "q_all16", modules=ALL, rank=16, alpha=32, seed=8)
    for typ, tol in (("f32", 1e-4), ("q8_0", 2e-2), ("q4_0", 2e-2)):
        g = os.path.join(work, "lora_q.%s.gguf" % typ)
        run([binary, "quantize", qsrc, g, "--type", typ, "-q"])
        ref_dir = qsrc if typ == "f32" else dequantized_dir(g, qsrc, os.path.join(work, "lora_q.%s.ref" % typ))
        cases.append(("gguf %s base, r16 all" % typ, g, ref_dir, [qa], tol))

    # A bitsandbytes NF4 checkpoint: the reference runs on its dequantized weights.
    fx = make_bnb4.FIXTURES["bnb_7b"]
    qdir, rdir = make_bnb4.write_pair(fx, work, "nf4", True, 64, None)
    cases.append(("nf4 4-bit base, r16 all", qdir, rdir,
                  [adapter(work, rdir, "nf4_all16", modules=ALL, rank=16, alpha=32, seed=9)], 2e-2))

    # A GPTQ checkpoint with desc_act (a column order per layer), ALiBi.
    gdir, ddir = make_gptq.write_case(make_gptq.CASES["gptq_b2_13b_act"], work)
    cases.append(("gptq 4-bit base (desc_act, alibi), r16 all", gdir, ddir,
                  [adapter(work, ddir, "gptq_all16", modules=ALL, rank=16, alpha=32, seed=10)], 2e-2))

    for label, model, ref_model, loras, tol in cases:
        n_vocab = shape_of(ref_model)[3]
        tokens = token_sequence(label, N_TOKENS, n_vocab)
        try:
            got = engine_logits(binary, model, tokens, loras, os.path.join(work, "out.f32"), n_vocab)
            ref = ref_logits(ref_model, tokens, loras)
            base = reference.reference_logits(ref_model, tokens)
            got_base = engine_logits(binary, model, tokens, [], os.path.join(work, "out.f32"), n_vocab)
        except Exception as e:  # noqa: BLE001
            t.record(False, "%s: %s" % (label, e))
            continue
        err = rel_err(got, ref)
        # The adapter must matter: its change is far above the tolerance.
        effect = rel_err(base, ref)
        # What the adapter changes, engine against reference: held to the
        # tolerance too where the base alone is exact. On the 8-bit (q8_0,
        # q4_0) bases the base alone is already about 2e-2 from its reference
        # (activations quantized to 8 bits per 32 on this tiny model; the two
        # runs carry that error in different places), so there the whole run
        # is held to the tolerance and the change is only reported.
        scale = max(1.0, float(np.abs(ref).max()))
        delta_err = float(np.abs((got.astype(np.float64) - got_base) - (ref - base)).max()) / scale
        base_err = rel_err(got_base, base)
        exact_base = base_err <= tol / 10
        t.check("%s: err %.2e <= %.1e (base alone %.2e; the adapter's change %.2e from the reference's; it moves "
                "the logits by %.2e)" % (label, err, tol, base_err, delta_err, effect),
                err <= tol and (delta_err <= tol or not exact_base) and effect > 5 * tol)


def merge(t, binary, work, fixtures):
    base = os.path.join(fixtures, "b2_7b_f32_st")
    n_vocab = shape_of(base)[3]
    loras = [adapter(work, base, "b2_all16_bin", modules=ALL, rank=16, alpha=32, fmt="bin", dtype="f16", seed=2),
             adapter(work, base, "b2_official", modules=["W_pack"], rank=1, alpha=32, fmt="st", seed=1) + ":0.5"]
    tokens = token_sequence("merge", N_TOKENS, n_vocab)
    unmerged = engine_logits(binary, base, tokens, loras, os.path.join(work, "u.f32"), n_vocab)
    for out in (os.path.join(work, "merged_st"), os.path.join(work, "merged.gguf")):
        args = [binary, "merge", "-m", base, "-o", out, "--type", "f32"]
        for spec in loras:
            args += ["--lora", spec]
        p = run(args, check=False)
        if p.returncode != 0:
            t.record(False, "merge -o %s: %s" % (os.path.basename(out), p.stderr.decode(errors="replace").strip()))
            continue
        got = engine_logits(binary, out, tokens, [], os.path.join(work, "m.f32"), n_vocab)
        err = rel_err(got, unmerged)
        t.check("merge -o %s (f32): logits equal the unmerged run's within %.2e <= 1e-5" % (
            os.path.basename(out), err), err <= 1e-5)
    # The directory says what it is: the variant explicit, no quantization_config.
    with open(os.path.join(work, "merged_st", "config.json")) as f:
        cfg = json.load(f)
    t.check("merged config.json: position_encoding rope, norm_head true, torch_dtype float32",
            cfg.get("position_encoding") == "rope" and cfg.get("norm_head") is True
            and cfg.get("torch_dtype") == "float32", str(cfg))
    p = run([binary, "merge", "-m", base, "-o", os.path.join(work, "merged_q"), "--type", "q4_0", "--lora", loras[1]],
            check=False)
    t.check("merge to a directory at q4_0 is refused", p.returncode == 1 and b"f32, f16 or bf16" in p.stderr,
            p.stderr.decode(errors="replace"))


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------


def edit_config(d, **changes):
    p = os.path.join(d, "adapter_config.json")
    with open(p) as f:
        c = json.load(f)
    c.update(changes)
    with open(p, "w") as f:
        json.dump(c, f)


def rewrite_st(d, fn):
    """Rewrites d/adapter_model.safetensors with fn(name -> float32 array) applied."""
    p = os.path.join(d, "adapter_model.safetensors")
    tensors = {k: v.astype(np.float32) for k, v in reference.read_safetensors(p).items()}
    make_lora.write_safetensors(p, fn(tensors), "f32")


def refusals(t, binary, work, fixtures):
    base = os.path.join(fixtures, "b2_7b_f32_st")
    e, f, nl, _ = shape_of(base)
    root = os.path.join(work, "bad")

    def fresh(name, **kw):
        d = os.path.join(root, name)
        shutil.rmtree(d, ignore_errors=True)
        make_lora.write_adapter(d, e, f, nl, ["W_pack", "o_proj"], rank=4, alpha=8, seed=11, **kw)
        return d

    def first(tensors):
        return next(iter(tensors))

    cases = []
    d = fresh("dora")
    edit_config(d, use_dora=True)
    cases.append(("use_dora true", d, ["use_dora", "adapter_config.json"]))
    d = fresh("dora_vec")
    rewrite_st(d, lambda ts: dict(ts, **{
        "base_model.model.model.layers.0.self_attn.W_pack.lora_magnitude_vector": np.ones(3 * e, np.float32)}))
    cases.append(("a DoRA magnitude vector", d, ["DoRA", "lora_magnitude_vector"]))
    d = fresh("bias")
    edit_config(d, bias="all")
    cases.append(("bias all", d, ["\"bias\"", "none"]))
    d = fresh("peft_type")
    edit_config(d, peft_type="PREFIX_TUNING")
    cases.append(("peft_type PREFIX_TUNING", d, ["peft_type", "LORA"]))
    d = fresh("fan_in")
    edit_config(d, fan_in_fan_out=True)
    cases.append(("fan_in_fan_out true", d, ["fan_in_fan_out"]))
    d = fresh("mts")
    edit_config(d, modules_to_save=["lm_head"])
    cases.append(("modules_to_save", d, ["modules_to_save"]))
    d = fresh("unknown_cfg")
    edit_config(d, target_modules=["W_pack", "q_proj"])
    cases.append(("target_modules q_proj", d, ["q_proj", "target_modules"]))
    d = fresh("unknown_tensor")
    rewrite_st(d, lambda ts: dict(ts, **{
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, e), np.float32),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((e, 4), np.float32)}))
    cases.append(("a tensor of module q_proj", d, ["q_proj", "does not have"]))
    d = fresh("rank")
    edit_config(d, r=8)
    cases.append(("r 8 in the config, rank 4 tensors", d, ["rank", "r = 8"]))
    d = fresh("shape")
    rewrite_st(d, lambda ts: {k: (np.zeros((4, e + 1), np.float32) if k.endswith("W_pack.lora_A.weight") else v)
                              for k, v in ts.items()})
    cases.append(("A of another model's width", d, ["W_pack.lora_A.weight", "expected [4, %d]" % e]))
    d = fresh("missing_b")
    rewrite_st(d, lambda ts: {k: v for k, v in ts.items() if not k.endswith("layers.1.self_attn.o_proj.lora_B.weight")})
    cases.append(("a missing lora_B", d, ["lora_B", "layers.1.self_attn.o_proj"]))
    d = fresh("layer")
    rewrite_st(d, lambda ts: dict(ts, **{
        "base_model.model.model.layers.%d.self_attn.o_proj.lora_A.weight" % nl: np.zeros((4, e), np.float32),
        "base_model.model.model.layers.%d.self_attn.o_proj.lora_B.weight" % nl: np.zeros((e, 4), np.float32)}))
    cases.append(("a layer past the model's", d, ["layer %d" % nl]))
    d = fresh("truncated")
    p = os.path.join(d, "adapter_model.safetensors")
    with open(p, "r+b") as fh:
        fh.truncate(os.path.getsize(p) - 100)
    cases.append(("a truncated safetensors file", d, ["adapter_model.safetensors"]))
    d = fresh("truncated_bin", fmt="bin")
    p = os.path.join(d, "adapter_model.bin")
    with open(p, "r+b") as fh:
        fh.truncate(os.path.getsize(p) // 2)
    cases.append(("a truncated .bin file", d, ["adapter_model.bin"]))
    d = fresh("no_weights")
    os.remove(os.path.join(d, "adapter_model.safetensors"))
    cases.append(("no weights file", d, ["adapter_model.safetensors", "adapter_model.bin"]))
    cases.append(("no adapter directory", os.path.join(root, "nothing_here"), ["nothing_here"]))

    tokens = "1 2 3"
    for label, d, needles in cases:
        p = run([binary, "logits", "-m", base, "--tokens", tokens, "-o", os.path.join(work, "bad.f32"), "--lora", d],
                check=False)
        err = p.stderr.decode(errors="replace")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        ok = p.returncode == 1 and len(lines) == 1 and all(n in err for n in needles) and "Sanitizer" not in err
        t.check("refused: %s: %s" % (label, lines[0] if lines else "(no message)"), ok,
                "(exit %d, wanted %s in one line)" % (p.returncode, needles))
    # The same refusals through bench (another command, the same loader).
    p = run([binary, "bench", "-m", base, "-p", "0", "-n", "1", "-r", "1", "--lora", cases[0][1]], check=False)
    t.check("bench --lora refuses the same (use_dora)", p.returncode == 1 and b"use_dora" in p.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    a = ap.parse_args(argv)
    bc_testlib.ensure_fixtures(a.fixtures, ["b2_7b_f32_st", "b1_13b_f32_bin", "b2_7b_bf16_bin_sharded",
                                            "b2_13b_f16_st_sharded"])
    t = Tally()
    work = tempfile.mkdtemp(prefix="test_lora.")
    try:
        accuracy(t, a.bin, work, a.fixtures)
        merge(t, a.bin, work, a.fixtures)
        refusals(t, a.bin, work, a.fixtures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
