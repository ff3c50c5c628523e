#!/usr/bin/python3
"""gen_fixtures.py - tiny random Baichuan checkpoints in the official Hugging Face layout.

    gen_fixtures.py --out DIR [--only NAME ...] [--list]

Writes DIR/<name>/ for every fixture (or only the named ones): config.json,
generation_config.json (chat models), tokenizer_config.json and the weights,
as safetensors (written here, from the format's specification) or PyTorch
.bin (torch.save), single-file or sharded with an index. Everything is seeded
from the fixture's name, so two runs write identical bytes.

The weights are random but scaled so that the model is well conditioned and
every part of it matters for the logits: attention scores of order one (so
position encoding changes the result), lm_head rows of widely varied norms (so
NormHead changes the result), RMSNorm weights near one.

Other tools import this module: FIXTURES (the table below), generate_weights()
(the float32 master weights of a fixture, before rounding to its dtype) and
write_safetensors().
"""

import argparse
import collections
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np

VOCAB_BAICHUAN1 = 64000
VOCAB_BAICHUAN2 = 125696

# ---------------------------------------------------------------------------
# The fixture table
# ---------------------------------------------------------------------------
#
# kind:    which official model the config mirrors
# dtype:   f32 | f16 | bf16 (what the weight files store)
# format:  st (safetensors) | bin (torch.save)
# shards:  1, or the names after which a new shard starts (HF order)
# extra:   keys added to (or, with None, removed from) config.json


def _fixture(name, kind, dtype, fmt, n_embd, n_head, n_ff, n_layer, vocab, split_after=(), extra=None,
             st_metadata=True, bin_tricks=False, tokenizer=None):
    return dict(name=name, kind=kind, dtype=dtype, format=fmt, n_embd=n_embd, n_head=n_head, n_ff=n_ff,
                n_layer=n_layer, n_vocab=vocab, split_after=list(split_after), extra=extra or {},
                st_metadata=st_metadata, bin_tricks=bin_tricks, tokenizer=tokenizer)


# A real 400-piece SentencePiece BPE model (tests/data/README.md says how it
# was trained): the generation fixtures' vocabulary is exactly its pieces.
TINY_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tiny_bpe.model")
TINY_VOCAB = 400


FIXTURES = collections.OrderedDict((f["name"], f) for f in [
    # Baichuan2-7B: RoPE + NormHead.
    _fixture("b2_7b_f32_st", "baichuan2-7b", "f32", "st", n_embd=32, n_head=4, n_ff=88, n_layer=2,
             vocab=VOCAB_BAICHUAN2),
    _fixture("b2_7b_bf16_bin_sharded", "baichuan2-7b", "bf16", "bin", n_embd=32, n_head=4, n_ff=88, n_layer=2,
             vocab=VOCAB_BAICHUAN2, split_after=["model.layers.0.mlp.gate_proj.weight"]),
    # Baichuan2-13B: ALiBi + NormHead; 40 heads exercise the non-power-of-two slope rule.
    _fixture("b2_13b_f16_st_sharded", "baichuan2-13b", "f16", "st", n_embd=160, n_head=40, n_ff=432, n_layer=2,
             vocab=VOCAB_BAICHUAN2,
             split_after=["model.layers.0.self_attn.o_proj.weight", "model.layers.1.mlp.up_proj.weight"]),
    # Baichuan-13B: ALiBi, plain head; 6 heads (not a power of two). Its .bin
    # stores a tensor that is a slice of a bigger storage and two tensors that
    # share one storage.
    _fixture("b1_13b_f32_bin", "baichuan-13b", "f32", "bin", n_embd=48, n_head=6, n_ff=136, n_layer=2,
             vocab=VOCAB_BAICHUAN1, bin_tricks=True),
    # Baichuan-7B: RoPE, plain head, rotary_emb.inv_freq buffers in the files.
    _fixture("b1_7b_bf16_bin", "baichuan-7b", "bf16", "bin", n_embd=32, n_head=4, n_ff=88, n_layer=3,
             vocab=VOCAB_BAICHUAN1),
    _fixture("b1_7b_f16_st", "baichuan-7b", "f16", "st", n_embd=32, n_head=4, n_ff=88, n_layer=3,
             vocab=VOCAB_BAICHUAN1, st_metadata=False),
    # Baichuan2-7B config whose explicit keys override detection.
    _fixture("override_alibi", "baichuan2-7b", "f32", "st", n_embd=32, n_head=4, n_ff=88, n_layer=2,
             vocab=VOCAB_BAICHUAN2, extra={"position_encoding": "alibi", "norm_head": False}),
    # head_dim 32: the smallest head a q8_0 KV cache can hold.
    _fixture("kv_hd32", "baichuan2-7b", "f32", "st", n_embd=64, n_head=2, n_ff=88, n_layer=2,
             vocab=TINY_VOCAB, extra={"norm_head": True}),
    # With a tokenizer, for generation: greedy text must equal the reference's.
    # The vocabulary is the tokenizer's 400 pieces, so NormHead is set explicitly.
    _fixture("gen_rope", "baichuan2-7b", "f32", "st", n_embd=32, n_head=4, n_ff=88, n_layer=2,
             vocab=TINY_VOCAB, extra={"norm_head": True}, tokenizer=TINY_TOKENIZER),
    _fixture("gen_alibi", "baichuan2-13b", "f32", "st", n_embd=48, n_head=6, n_ff=88, n_layer=2,
             vocab=TINY_VOCAB, extra={"norm_head": True}, tokenizer=TINY_TOKENIZER),
])

TORCH_DTYPE_NAME = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}

# ---------------------------------------------------------------------------
# Config files, as the official repositories spell them
# ---------------------------------------------------------------------------


def make_config(fx):
    kind = fx["kind"]
    if kind == "baichuan-7b":
        arch, cfg_class = "BaiChuanForCausalLM", "BaiChuanConfig"
    else:
        arch, cfg_class = "BaichuanForCausalLM", "BaichuanConfig"
    cfg = collections.OrderedDict()
    if kind in ("baichuan-13b", "baichuan2-13b"):
        cfg["_from_model_config"] = True
    cfg["architectures"] = [arch]
    cfg["auto_map"] = {
        "AutoConfig": "configuration_baichuan." + cfg_class,
        "AutoModelForCausalLM": "modeling_baichuan." + arch,
    }
    if kind.startswith("baichuan2"):
        cfg["tokenizer_class"] = "BaichuanTokenizer"
    cfg["bos_token_id"] = 1
    cfg["eos_token_id"] = 2
    if kind == "baichuan-13b":
        cfg["gradient_checkpointing"] = [False]  # sic: a list in the official file
    elif kind == "baichuan2-13b":
        cfg["gradient_checkpointing"] = False
    cfg["hidden_act"] = "silu"
    cfg["hidden_size"] = fx["n_embd"]
    cfg["initializer_range"] = 0.02
    cfg["intermediate_size"] = fx["n_ff"]
    if kind in ("baichuan-7b", "baichuan2-7b"):
        cfg["max_position_embeddings"] = 4096
    if kind != "baichuan-7b":  # Baichuan-7B's config has no model_max_length
        cfg["model_max_length"] = 4096
    cfg["model_type"] = "baichuan"
    cfg["num_attention_heads"] = fx["n_head"]
    cfg["num_hidden_layers"] = fx["n_layer"]
    cfg["pad_token_id"] = 0
    cfg["rms_norm_eps"] = 1e-06
    cfg["tie_word_embeddings"] = False
    cfg["torch_dtype"] = TORCH_DTYPE_NAME[fx["dtype"]]
    cfg["transformers_version"] = "4.29.1" if kind == "baichuan-7b" else "4.29.2"
    cfg["use_cache"] = True
    cfg["vocab_size"] = fx["n_vocab"]
    if kind.startswith("baichuan2"):
        cfg["z_loss_weight"] = 0
    for k, v in fx["extra"].items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def make_generation_config(fx):
    """generation_config.json of the chat models; None for Baichuan-7B (base only)."""
    if fx["kind"] == "baichuan-7b":
        return None
    g = collections.OrderedDict()
    g["pad_token_id"] = 0
    g["bos_token_id"] = 1
    g["eos_token_id"] = 2
    g["user_token_id"] = 195
    g["assistant_token_id"] = 196
    g["max_new_tokens"] = 2048
    g["temperature"] = 0.3
    g["top_k"] = 5
    g["top_p"] = 0.85
    g["repetition_penalty"] = 1.1 if fx["kind"] == "baichuan-13b" else 1.05
    g["do_sample"] = True
    g["transformers_version"] = "4.29.2"
    return g


def make_tokenizer_config(fx):
    def token(s):
        return collections.OrderedDict([("__type", "AddedToken"), ("content", s), ("lstrip", False),
                                         ("normalized", True), ("rstrip", False), ("single_word", False)])

    t = collections.OrderedDict()
    t["add_bos_token"] = False
    t["add_eos_token"] = False
    t["auto_map"] = {"AutoTokenizer": ["tokenization_baichuan.%s" % (
        "BaiChuanTokenizer" if fx["kind"] == "baichuan-7b" else "BaichuanTokenizer"), None]}
    t["bos_token"] = token("<s>")
    t["clean_up_tokenization_spaces"] = False
    t["eos_token"] = token("</s>")
    t["model_max_length"] = 4096
    t["pad_token"] = token("<unk>")
    t["sp_model_kwargs"] = {}
    t["tokenizer_class"] = "BaiChuanTokenizer" if fx["kind"] == "baichuan-7b" else "BaichuanTokenizer"
    t["unk_token"] = token("<unk>")
    return t


# ---------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------


def tensor_names(fx):
    """Every tensor of the checkpoint in the order nn.Module.state_dict() gives."""
    names = ["model.embed_tokens.weight"]
    for i in range(fx["n_layer"]):
        p = "model.layers.%d." % i
        names.append(p + "self_attn.W_pack.weight")
        names.append(p + "self_attn.o_proj.weight")
        if fx["kind"] == "baichuan-7b":
            names.append(p + "self_attn.rotary_emb.inv_freq")
        names += [p + "mlp.gate_proj.weight", p + "mlp.down_proj.weight", p + "mlp.up_proj.weight",
                  p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names += ["model.norm.weight", "lm_head.weight"]
    return names


def seed_of(name):
    return zlib.crc32(name.encode("utf-8"))


def generate_weights(fx):
    """name -> float32 numpy array: the master weights, before any rounding to fx's dtype.

    Scales (x = an RMS-normalized activation, elements of order one):
      embeddings        N(0, 0.4^2): small beside what the layers add, so
                        attention (and its position encoding) weighs on the logits
      W_pack Q, K       N(0, 1.2^2 / n_embd): q.k / sqrt(head_dim) has spread ~1.4
      W_pack V, o_proj  N(0, 1 / n_embd)
      gate, up          N(0, 1 / n_embd); down N(0, 1 / n_ff)
      norms             1 + N(0, 0.1^2)
      lm_head           row r = N(0, 1/n_embd) * exp(U(-1.2, 1.2)): norms vary ~11x
    """
    rng = np.random.Generator(np.random.PCG64(seed_of(fx["name"])))
    e, f, v, nh = fx["n_embd"], fx["n_ff"], fx["n_vocab"], fx["n_head"]
    hd = e // nh

    def normal(shape, std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    w = collections.OrderedDict()
    for name in tensor_names(fx):
        if name == "model.embed_tokens.weight":
            w[name] = normal((v, e), 0.4)
        elif name.endswith("W_pack.weight"):
            qk = normal((2 * e, e), 1.2 / np.sqrt(e))
            vv = normal((e, e), 1.0 / np.sqrt(e))
            w[name] = np.concatenate([qk, vv], axis=0)
        elif name.endswith("o_proj.weight"):
            w[name] = normal((e, e), 1.0 / np.sqrt(e))
        elif name.endswith("rotary_emb.inv_freq"):
            # What Baichuan-7B's module registers: 1 / 10000^(2i/d), float32.
            w[name] = (1.0 / (10000.0 ** (np.arange(0, hd, 2, dtype=np.float32) / hd))).astype(np.float32)
        elif name.endswith("gate_proj.weight") or name.endswith("up_proj.weight"):
            w[name] = normal((f, e), 1.0 / np.sqrt(e))
        elif name.endswith("down_proj.weight"):
            w[name] = normal((e, f), 1.0 / np.sqrt(f))
        elif name.endswith("norm.weight"):
            w[name] = (1.0 + normal((e,), 0.1)).astype(np.float32)
        elif name == "lm_head.weight":
            rows = normal((v, e), 1.0 / np.sqrt(e))
            scale = np.exp(rng.uniform(-1.2, 1.2, size=(v, 1))).astype(np.float32)
            w[name] = (rows * scale).astype(np.float32)
        else:
            raise AssertionError(name)
    return w


def stored_dtype(fx, name):
    """The dtype a tensor is stored in: inv_freq buffers stay float32."""
    return "f32" if name.endswith("rotary_emb.inv_freq") else fx["dtype"]


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16, as uint16 bit patterns."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def to_bytes(a, dtype):
    """Little-endian bytes of float32 array a stored as dtype."""
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "f16":
        return np.ascontiguousarray(a.astype("<f2")).tobytes()
    if dtype == "bf16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(dtype)


# ---------------------------------------------------------------------------
# safetensors writer (from the format's specification)
# ---------------------------------------------------------------------------
#
#   u64 LE  N = header size
#   N bytes JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
#           padded with spaces so that 8 + N is a multiple of 8
#   data    offsets are relative to the first byte after the header

ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def write_safetensors(path, entries, metadata=None):
    """entries: list of (name, st_dtype, shape, raw bytes), in data order."""
    header = collections.OrderedDict()
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, st_dtype, shape, raw in entries:
        header[name] = collections.OrderedDict(
            [("dtype", st_dtype), ("shape", list(shape)), ("data_offsets", [offset, offset + len(raw)])])
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fp:
        fp.write(struct.pack("<Q", len(text)))
        fp.write(text)
        for _, _, _, raw in entries:
            fp.write(raw)
    os.replace(tmp, path)
    return offset


def _safetensors_entries(fx, weights, names):
    # Like the reference implementation: larger element types first, then by
    # name, which keeps every tensor aligned to its element size.
    def key(n):
        return (-ST_ITEMSIZE[ST_DTYPE[stored_dtype(fx, n)]], n)

    out = []
    for n in sorted(names, key=key):
        dt = stored_dtype(fx, n)
        out.append((n, ST_DTYPE[dt], weights[n].shape, to_bytes(weights[n], dt)))
    return out


# ---------------------------------------------------------------------------
# Shards and index files
# ---------------------------------------------------------------------------


def split_names(fx):
    """The state_dict order cut into shards after the names in split_after."""
    groups, cur = [], []
    for n in tensor_names(fx):
        cur.append(n)
        if n in fx["split_after"]:
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    return groups


def write_index(path, weight_map, total_size):
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    with open(path, "w") as fp:
        json.dump(index, fp, indent=2, sort_keys=True)
        fp.write("\n")


def write_safetensors_checkpoint(fx, weights, out):
    meta = {"format": "pt"} if fx["st_metadata"] else None
    groups = split_names(fx)
    if len(groups) == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), _safetensors_entries(fx, weights, groups[0]),
                          meta)
        return
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        total += write_safetensors(os.path.join(out, fname), _safetensors_entries(fx, weights, g), meta)
        for n in g:
            weight_map[n] = fname
    write_index(os.path.join(out, "model.safetensors.index.json"), weight_map, total)


# ---------------------------------------------------------------------------
# PyTorch .bin (torch.save zip archives)
# ---------------------------------------------------------------------------


def _torch_tensor(torch, a, dtype):
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]).clone()


def module_metadata(fx):
    """The _metadata nn.Module.state_dict() attaches: module prefix -> {"version": 1}."""
    md = collections.OrderedDict()
    md[""] = {"version": 1}
    md["model"] = {"version": 1}
    md["model.embed_tokens"] = {"version": 1}
    md["model.layers"] = {"version": 1}
    for i in range(fx["n_layer"]):
        p = "model.layers.%d" % i
        subs = ["", ".self_attn", ".self_attn.W_pack", ".self_attn.o_proj"]
        if fx["kind"] == "baichuan-7b":
            subs.append(".self_attn.rotary_emb")
        subs += [".mlp", ".mlp.gate_proj", ".mlp.down_proj", ".mlp.up_proj", ".mlp.act_fn", ".input_layernorm",
                 ".post_attention_layernorm"]
        for s in subs:
            md[p + s] = {"version": 1}
    md["model.norm"] = {"version": 1}
    md["lm_head"] = {"version": 1}
    return md


def write_bin_checkpoint(fx, weights, out):
    import torch

    tensors = collections.OrderedDict()
    for n in tensor_names(fx):
        tensors[n] = _torch_tensor(torch, weights[n], stored_dtype(fx, n))

    if fx["bin_tricks"]:
        # Layer 0's W_pack: the last 3*n_embd rows of a (4*n_embd, n_embd)
        # storage, so its storage offset is n_embd*n_embd elements and the
        # storage holds bytes no tensor uses.
        e = fx["n_embd"]
        wp = tensors["model.layers.0.self_attn.W_pack.weight"]
        big = torch.full((4 * e, e), 1.0e4, dtype=wp.dtype)
        big[e:] = wp
        tensors["model.layers.0.self_attn.W_pack.weight"] = big[e:]
        # Layer 1's gate and up projections: two views of one storage.
        g, u = tensors["model.layers.1.mlp.gate_proj.weight"], tensors["model.layers.1.mlp.up_proj.weight"]
        both = torch.cat([u, g], dim=0)
        f = g.shape[0]
        tensors["model.layers.1.mlp.up_proj.weight"] = both[:f]
        tensors["model.layers.1.mlp.gate_proj.weight"] = both[f:]

    groups = split_names(fx)
    if len(groups) == 1:
        sd = collections.OrderedDict(tensors)
        sd._metadata = module_metadata(fx)
        torch.save(sd, os.path.join(out, "pytorch_model.bin"))
        return
    # Hugging Face's sharding saves plain dicts, one per shard.
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        fname = "pytorch_model-%05d-of-%05d.bin" % (i + 1, len(groups))
        shard = {n: tensors[n] for n in g}
        torch.save(shard, os.path.join(out, fname))
        for n in g:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
    write_index(os.path.join(out, "pytorch_model.bin.index.json"), weight_map, total)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def _write_json(path, obj):
    with open(path, "w") as fp:
        json.dump(obj, fp, indent=2)
        fp.write("\n")


def write_fixture(fx, out_root):
    """Writes out_root/<name>/ whole: built beside it, then renamed into place,
    so that a reader never sees half a fixture (or a stale file of another
    format left from an earlier version)."""
    final = os.path.join(out_root, fx["name"])
    out = os.path.join(out_root, ".%s.tmp-%d" % (fx["name"], os.getpid()))
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    _write_fixture_files(fx, out)
    old = None
    if os.path.exists(final):
        old = os.path.join(out_root, ".%s.old-%d" % (fx["name"], os.getpid()))
        os.rename(final, old)
    os.rename(out, final)
    if old:
        shutil.rmtree(old)
    return final


def _write_fixture_files(fx, out):
    weights = generate_weights(fx)
    _write_json(os.path.join(out, "config.json"), make_config(fx))
    gen = make_generation_config(fx)
    if gen is not None:
        _write_json(os.path.join(out, "generation_config.json"), gen)
    _write_json(os.path.join(out, "tokenizer_config.json"), make_tokenizer_config(fx))
    if fx["tokenizer"]:
        shutil.copyfile(fx["tokenizer"], os.path.join(out, "tokenizer.model"))
    if fx["format"] == "st":
        write_safetensors_checkpoint(fx, weights, out)
    else:
        write_bin_checkpoint(fx, weights, out)


def dir_size(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="directory to write the fixtures into")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these fixtures")
    ap.add_argument("--list", action="store_true", help="print the fixture names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(FIXTURES))
        return 0
    if not args.out:
        ap.error("--out is required")
    names = args.only or list(FIXTURES)
    for n in names:
        if n not in FIXTURES:
            print("gen_fixtures: unknown fixture %r (known: %s)" % (n, ", ".join(FIXTURES)), file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    for n in names:
        d = write_fixture(FIXTURES[n], args.out)
        print("%-24s %8.1f MB  %s" % (n, dir_size(d) / 1e6, d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
