#!/usr/bin/python3
"""Write a random LoRA adapter for a Baichuan model in the layout PEFT's
save_pretrained gives it (PEFT itself is not needed):

    tools/make_lora.py --model DIR --out ADAPTER [--rank 16] [--alpha 32]
        [--modules W_pack,o_proj,gate_proj,up_proj,down_proj] [--format st|bin]
        [--dtype f32|f16|bf16] [--rslora] [--seed N] [--strength S]

ADAPTER/adapter_config.json holds the LoraConfig fields PEFT writes
(peft_type LORA, r, lora_alpha, target_modules, use_rslora, fan_in_fan_out,
bias, ...); ADAPTER/adapter_model.safetensors (--format st) or
ADAPTER/adapter_model.bin (--format bin, torch.save of a dict) holds
base_model.model.model.layers.N.<module>.lora_A.weight (r, in) and
.lora_B.weight (out, r) for every layer and module, as
get_peft_model_state_dict names them (the adapter name "default" removed).
The shapes come from DIR/config.json, or from --shape (the real model
shapes, for memory measurements without a checkpoint).

The factors are random: A ~ N(0, 0.1), B scaled so that the update
scale * B A has entries of about --strength (default 0.5) times 0.02, the
spread of the fixtures' weights: a change the logits show clearly. PEFT
initializes B to zero; a trained adapter's B is not.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

MODULES = {
    "W_pack": "self_attn.W_pack",
    "o_proj": "self_attn.o_proj",
    "gate_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}

SHAPES = {  # name: (hidden, ff, layers)
    "7b": (4096, 11008, 32),
    "13b": (5120, 13696, 40),
    "1b": (1536, 4096, 32),
}


def dims(module, hidden, ff):
    """(in_features, out_features) of a module."""
    return {
        "W_pack": (hidden, 3 * hidden),
        "o_proj": (hidden, hidden),
        "gate_proj": (hidden, ff),
        "up_proj": (hidden, ff),
        "down_proj": (ff, hidden),
    }[module]


def lora_scale(alpha, rank, rslora):
    return alpha / math.sqrt(rank) if rslora else alpha / rank


def make_factors(hidden, ff, layers, modules, rank, alpha, rslora, seed, strength):
    """name -> float32 array, in the order PEFT's state dict gives them."""
    rng = np.random.default_rng(seed)
    scale = lora_scale(alpha, rank, rslora)
    a_std = 0.1
    # entries of scale * B A: sqrt(rank) * a_std * b_std * scale
    b_std = strength * 0.02 / (math.sqrt(rank) * a_std * abs(scale))
    out = {}
    for i in range(layers):
        for m in modules:
            fin, fout = dims(m, hidden, ff)
            p = "base_model.model.model.layers.%d.%s." % (i, MODULES[m])
            out[p + "lora_A.weight"] = rng.normal(0.0, a_std, (rank, fin)).astype(np.float32)
            out[p + "lora_B.weight"] = rng.normal(0.0, b_std, (fout, rank)).astype(np.float32)
    return out


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    st = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[dtype]
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        if dtype == "f32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "f16":
            raw = a.astype("<f2").tobytes()
        else:
            raw = bf16_bits(a).astype("<u2").tobytes()
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_bin(path, tensors, dtype):
    import torch

    tdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    sd = {name: torch.from_numpy(a).to(tdt) for name, a in tensors.items()}
    torch.save(sd, path)


def adapter_config(modules, rank, alpha, rslora, base):
    """The fields PEFT 0.x's LoraConfig.to_dict() writes, as Baichuan2's
    fine-tune.py --use_lora makes them (task_type CAUSAL_LM)."""
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": base,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_dropout": 0.1,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": None,
        "target_modules": list(modules),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": rslora,
    }


def write_adapter(out, hidden, ff, layers, modules, rank=16, alpha=32, rslora=False, fmt="st", dtype="f32",
                  seed=0, strength=0.5, base="baichuan-inc/Baichuan2-7B-Base"):
    os.makedirs(out, exist_ok=True)
    tensors = make_factors(hidden, ff, layers, modules, rank, alpha, rslora, seed, strength)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(adapter_config(modules, rank, alpha, rslora, base), f, indent=2)
    if fmt == "st":
        write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors, dtype)
    else:
        write_bin(os.path.join(out, "adapter_model.bin"), tensors, dtype)
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="the base model's directory (its config.json gives the shapes)")
    src.add_argument("--shape", choices=SHAPES, help="a real model's shape instead")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--modules", default="W_pack,o_proj,gate_proj,up_proj,down_proj")
    ap.add_argument("--format", choices=["st", "bin"], default="st")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--rslora", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strength", type=float, default=0.5)
    a = ap.parse_args()
    if a.model:
        with open(os.path.join(a.model, "config.json")) as f:
            cfg = json.load(f)
        hidden, ff, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    else:
        hidden, ff, layers = SHAPES[a.shape]
    modules = [m for m in a.modules.split(",") if m]
    for m in modules:
        if m not in MODULES:
            sys.exit("make_lora.py: unknown module %r (known: %s)" % (m, ", ".join(MODULES)))
    alpha = int(a.alpha) if a.alpha == int(a.alpha) else a.alpha
    write_adapter(a.out, hidden, ff, layers, modules, a.rank, alpha, a.rslora, a.format, a.dtype, a.seed, a.strength)


if __name__ == "__main__":
    main()
