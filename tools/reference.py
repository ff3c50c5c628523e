#!/usr/bin/python3
"""reference.py - an independent float64 reference of the Baichuan forward pass.

    reference.py DIR --tokens "1 2 3" -o FILE [--pos-encoding rope|alibi] [--norm-head on|off]

Loads the Hugging Face checkpoint directory DIR (config.json; model.safetensors
or its shards, read by the small reader below; pytorch_model.bin or its shards,
read with torch.load) and writes the logits of the token sequence as float32
little-endian, n_tokens rows of n_vocab, the layout `baichuan logits` writes.

Written from the model definition in DESIGN.md, not from the engine. All the
arithmetic is float64; weights are upcast exactly from their stored dtype.

As a module:

    model = reference.load_model(DIR, pos_encoding=None, norm_head=None)
    logits = model.logits([1, 2, 3])        # float64 [n_tokens, n_vocab]
    reference.reference_logits(DIR, tokens, pos_encoding=..., norm_head=...)
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

NORM_HEAD_VOCAB = 125696  # Baichuan2's vocabulary size: NormHead is on for it
ROPE_THETA = 10000.0
NORM_HEAD_EPS = 1e-12

# ---------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------


def _bf16_to_f64(raw):
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64)


_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1"}


def read_safetensors(path):
    """name -> float64 array, for every tensor of one safetensors file."""
    with open(path, "rb") as fp:
        blob = fp.read()
    if len(blob) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError("%s: header size %d runs past the end of the file" % (path, n))
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        raw = data[begin:end]
        if end > len(data) or end < begin:
            raise ValueError("%s: tensor %r: data_offsets out of range" % (path, name))
        dt = info["dtype"]
        if dt == "BF16":
            a = _bf16_to_f64(raw)
        elif dt in _ST_NUMPY:
            a = np.frombuffer(raw, dtype=_ST_NUMPY[dt]).astype(np.float64)
        else:
            raise ValueError("%s: tensor %r: unsupported dtype %s" % (path, name, dt))
        if a.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: tensor %r: %d elements for shape %s" % (path, name, a.size, shape))
        out[name] = a.reshape(shape)
    return out


def read_torch_bin(path):
    """name -> float64 array, for every tensor of one torch.save file."""
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().to(torch.float64).numpy().copy() for k, v in sd.items()}


def _weight_files(d):
    """(reader, [paths]) for the checkpoint in directory d."""
    candidates = [
        ("model.safetensors.index.json", "model.safetensors", read_safetensors),
        ("pytorch_model.bin.index.json", "pytorch_model.bin", read_torch_bin),
    ]
    for index_name, single, reader in candidates:
        index = os.path.join(d, index_name)
        if os.path.exists(index):
            with open(index) as fp:
                wm = json.load(fp)["weight_map"]
            return reader, [os.path.join(d, f) for f in sorted(set(wm.values()))], wm
        if os.path.exists(os.path.join(d, single)):
            return reader, [os.path.join(d, single)], None
    raise FileNotFoundError("%s: no model.safetensors, pytorch_model.bin or index file" % d)


def load_tensors(d):
    """name -> float64 array over all weight files of checkpoint directory d."""
    reader, paths, weight_map = _weight_files(d)
    tensors = {}
    for p in paths:
        for name, a in reader(p).items():
            if name in tensors:
                raise ValueError("%s: tensor %r appears twice" % (p, name))
            if weight_map is not None and weight_map.get(name) != os.path.basename(p):
                raise ValueError("%s: tensor %r not where the index says" % (p, name))
            tensors[name] = a
    return tensors


# ---------------------------------------------------------------------------
# Hyper-parameters and variant
# ---------------------------------------------------------------------------


class Hparams:
    pass


def detect_variant(cfg, pos_encoding=None, norm_head=None):
    """(pos_encoding "rope"|"alibi", norm_head bool) per DESIGN.md.

    Precedence: the arguments (the CLI flags), then the config keys
    position_encoding / norm_head, then detection from architectures,
    max_position_embeddings and vocab_size."""
    if pos_encoding is None:
        pos_encoding = cfg.get("position_encoding")
    if pos_encoding is None:
        arch = (cfg.get("architectures") or [""])[0]
        if arch == "BaiChuanForCausalLM" or "max_position_embeddings" in cfg:
            pos_encoding = "rope"
        else:
            pos_encoding = "alibi"
    if pos_encoding not in ("rope", "alibi"):
        raise ValueError("position encoding must be rope or alibi, not %r" % (pos_encoding,))
    if norm_head is None:
        norm_head = cfg.get("norm_head")
    if norm_head is None:
        norm_head = cfg["vocab_size"] == NORM_HEAD_VOCAB
    if isinstance(norm_head, str):
        norm_head = {"on": True, "off": False}[norm_head]
    return pos_encoding, bool(norm_head)


def read_hparams(d, pos_encoding=None, norm_head=None):
    with open(os.path.join(d, "config.json")) as fp:
        cfg = json.load(fp)
    hp = Hparams()
    hp.n_vocab = int(cfg["vocab_size"])
    hp.n_embd = int(cfg["hidden_size"])
    hp.n_ff = int(cfg["intermediate_size"])
    hp.n_layer = int(cfg["num_hidden_layers"])
    hp.n_head = int(cfg["num_attention_heads"])
    if hp.n_embd % hp.n_head:
        raise ValueError("num_attention_heads does not divide hidden_size")
    hp.head_dim = hp.n_embd // hp.n_head
    hp.eps = float(cfg.get("rms_norm_eps", 1e-6))
    hp.pos_encoding, hp.norm_head = detect_variant(cfg, pos_encoding, norm_head)
    return hp


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def rms_norm(x, w, eps):
    # x: (T, C), w: (C,)
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope_inv_freq(head_dim, theta=ROPE_THETA):
    # (head_dim/2,): theta^(-2i/d)
    return theta ** (-2.0 * np.arange(head_dim // 2, dtype=np.float64) / head_dim)


def apply_rope(x, positions, theta=ROPE_THETA):
    """Rotate-half (NeoX) RoPE. x: (T, H, D); element i pairs with i + D/2."""
    d = x.shape[-1]
    half = d // 2
    angle = np.asarray(positions, dtype=np.float64)[:, None] * rope_inv_freq(d, theta)[None, :]  # (T, D/2)
    c = np.cos(angle)[:, None, :]
    s = np.sin(angle)[:, None, :]
    lo, hi = x[..., :half], x[..., half:]
    return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1)


def alibi_slopes(n_head):
    """The standard ALiBi slopes (Press et al.): for n a power of two,
    slope_h = 2^(-8 (h+1) / n); otherwise the slopes of the largest power of
    two p < n, followed by every other slope of 2p (the odd-numbered ones)
    until n are given."""

    def geometric(n):
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    p = 1 << (n_head.bit_length() - 1)  # 2^floor(log2 n)
    if p == n_head:
        return np.array(geometric(n_head), dtype=np.float64)
    extra = geometric(2 * p)[0::2][: n_head - p]
    return np.array(geometric(p) + extra, dtype=np.float64)


def attention(q, k, v, pos_encoding, positions):
    """Causal multi-head attention. q, k, v: (T, H, D); returns (T, H*D)."""
    n_tokens, n_head, head_dim = q.shape
    if pos_encoding == "rope":
        q = apply_rope(q, positions)
        k = apply_rope(k, positions)
    scores = np.einsum("ihd,jhd->hij", q, k) / math.sqrt(head_dim)  # (H, T, T)
    pos = np.asarray(positions, dtype=np.float64)
    if pos_encoding == "alibi":
        rel = pos[None, :] - pos[:, None]  # j - i
        scores = scores + alibi_slopes(n_head)[:, None, None] * rel[None, :, :]
    future = pos[None, :] > pos[:, None]
    scores = np.where(future[None, :, :], -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = np.einsum("hij,jhd->ihd", p, v)
    return out.reshape(n_tokens, n_head * head_dim)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class Model:
    def __init__(self, hp, tensors):
        self.hp = hp
        e, f, v = hp.n_embd, hp.n_ff, hp.n_vocab

        def get(name, shape):
            if name not in tensors:
                raise KeyError("missing tensor %s" % name)
            a = tensors[name]
            if a.shape != tuple(shape):
                raise ValueError("tensor %s: shape %s, expected %s" % (name, a.shape, tuple(shape)))
            return a

        self.embed = get("model.embed_tokens.weight", (v, e))  # (V, C)
        self.layers = []
        for i in range(hp.n_layer):
            p = "model.layers.%d." % i
            self.layers.append(dict(
                attn_norm=get(p + "input_layernorm.weight", (e,)),
                w_pack=get(p + "self_attn.W_pack.weight", (3 * e, e)),  # (3C, C)
                o_proj=get(p + "self_attn.o_proj.weight", (e, e)),
                mlp_norm=get(p + "post_attention_layernorm.weight", (e,)),
                gate=get(p + "mlp.gate_proj.weight", (f, e)),
                up=get(p + "mlp.up_proj.weight", (f, e)),
                down=get(p + "mlp.down_proj.weight", (e, f)),
            ))
        self.norm = get("model.norm.weight", (e,))
        head = get("lm_head.weight", (v, e))  # (V, C)
        if hp.norm_head:
            norms = np.sqrt(np.sum(head * head, axis=1, keepdims=True))
            head = head / np.maximum(norms, NORM_HEAD_EPS)
        self.lm_head = head

    def logits(self, tokens):
        """float64 (n_tokens, n_vocab) logits for one sequence starting at position 0."""
        hp = self.hp
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("tokens must be a non-empty list")
        if tokens.min() < 0 or tokens.max() >= hp.n_vocab:
            raise ValueError("token id out of range [0, %d)" % hp.n_vocab)
        positions = np.arange(tokens.size)
        e, nh, hd = hp.n_embd, hp.n_head, hp.head_dim
        x = self.embed[tokens]  # (T, C)
        for L in self.layers:
            h = rms_norm(x, L["attn_norm"], hp.eps)
            qkv = h @ L["w_pack"].T  # (T, 3C)
            q = qkv[:, 0 * e:1 * e].reshape(-1, nh, hd)
            k = qkv[:, 1 * e:2 * e].reshape(-1, nh, hd)
            v = qkv[:, 2 * e:3 * e].reshape(-1, nh, hd)
            x = x + attention(q, k, v, hp.pos_encoding, positions) @ L["o_proj"].T
            h = rms_norm(x, L["mlp_norm"], hp.eps)
            x = x + (silu(h @ L["gate"].T) * (h @ L["up"].T)) @ L["down"].T
        x = rms_norm(x, self.norm, hp.eps)
        return x @ self.lm_head.T  # (T, V)


def load_model(d, pos_encoding=None, norm_head=None):
    """pos_encoding: None | "rope" | "alibi"; norm_head: None | bool | "on" | "off"."""
    hp = read_hparams(d, pos_encoding, norm_head)
    return Model(hp, load_tensors(d))


def merge_lora(tensors, adapter_dir, user_scale=1.0):
    """Adds a PEFT LoRA adapter's update to the float64 weights in place:
    W += scale * B @ A for every base_model.model.<weight name minus
    .weight>.lora_A.weight / lora_B.weight pair of the adapter, scale =
    lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) times user_scale.
    Written from PEFT's LoraLayer definition (merge: W + B A * scaling)."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as fp:
        cfg = json.load(fp)
    r, alpha = cfg["r"], cfg.get("lora_alpha", 8)
    scale = (alpha / np.sqrt(r) if cfg.get("use_rslora") else alpha / r) * user_scale
    st = os.path.join(adapter_dir, "adapter_model.safetensors")
    factors = read_safetensors(st) if os.path.exists(st) else read_torch_bin(
        os.path.join(adapter_dir, "adapter_model.bin"))
    prefix = "base_model.model."
    for name, a in factors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        base = name[len(prefix):-len(".lora_A.weight")] + ".weight"
        b = factors[name[:-len("lora_A.weight")] + "lora_B.weight"]
        tensors[base] = tensors[base] + scale * (b @ a)
    return tensors


def reference_logits(d, tokens, pos_encoding=None, norm_head=None, loras=()):
    """loras: (adapter directory, scale) pairs merged into the weights first."""
    if not loras:
        return load_model(d, pos_encoding, norm_head).logits(tokens)
    hp = read_hparams(d, pos_encoding, norm_head)
    tensors = load_tensors(d)
    for path, scale in loras:
        merge_lora(tensors, path, scale)
    return Model(hp, tensors).logits(tokens)


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 reference logits of a Baichuan checkpoint")
    ap.add_argument("dir", help="Hugging Face checkpoint directory")
    ap.add_argument("--tokens", required=True, help='token ids, e.g. "1 2 3"')
    ap.add_argument("-o", "--output", required=True, help="float32 LE n_tokens x n_vocab")
    ap.add_argument("--pos-encoding", choices=["rope", "alibi"])
    ap.add_argument("--norm-head", choices=["on", "off"])
    ap.add_argument("--lora", action="append", default=[], metavar="DIR[:SCALE]",
                    help="merge a PEFT LoRA adapter into the weights first (repeatable)")
    args = ap.parse_args(argv)
    tokens = [int(t) for t in args.tokens.replace(",", " ").split()]
    loras = []
    for spec in args.lora:
        path, _, scale = spec.rpartition(":") if ":" in spec else (spec, "", "1")
        loras.append((path, float(scale)))
    logits = reference_logits(args.dir, tokens, args.pos_encoding, args.norm_head, loras)
    logits.astype("<f4").tofile(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
