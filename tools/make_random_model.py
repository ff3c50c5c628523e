#!/usr/bin/python3
"""Write a random-weight Baichuan checkpoint with real shapes, for speed and
memory measurements (not for correctness: see tools/gen_fixtures.py).

    tools/make_random_model.py --shape baichuan2-7b --dtype bf16 --out /tmp/b2-7b

Shapes: baichuan2-7b, baichuan2-13b, baichuan-7b, baichuan-13b, and 1b
(hidden 1536, ff 4096, 12 heads, 32 layers, vocab 125696: 1.29 B parameters,
a depth llama.cpp's Baichuan graph accepts). Weights are N(0, 0.02) values
(norm weights 1.0) drawn once into a pool and reused at random offsets, so a
15 GB file is written at disk speed. Output: config.json and a single
model.safetensors (or shards with --shard-gb), and a synthetic tokenizer.model
with the shape's vocabulary size (byte pieces plus made-up words) so that GGUF
files made from the checkpoint carry a vocabulary llama.cpp accepts.
--tokenizer-only writes just that file into an existing directory.
"""
import argparse
import json
import os
import struct

import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import spm_proto  # noqa: E402

SHAPES = {
    # name: (arch, hidden, ff, layers, heads, vocab, rope)
    "baichuan2-7b": ("BaichuanForCausalLM", 4096, 11008, 32, 32, 125696, True),
    "baichuan2-13b": ("BaichuanForCausalLM", 5120, 13696, 40, 40, 125696, False),
    "baichuan-7b": ("BaiChuanForCausalLM", 4096, 11008, 32, 32, 64000, True),
    "baichuan-13b": ("BaichuanForCausalLM", 5120, 13696, 40, 40, 64000, False),
    "1b": ("BaichuanForCausalLM", 1536, 4096, 32, 12, 125696, True),
}
DTYPES = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2)}
POOL = 1 << 26


def tensor_list(hidden, ff, layers, vocab):
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (hidden,)),
            (p + "self_attn.W_pack.weight", (3 * hidden, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "post_attention_layernorm.weight", (hidden,)),
            (p + "mlp.gate_proj.weight", (ff, hidden)),
            (p + "mlp.up_proj.weight", (ff, hidden)),
            (p + "mlp.down_proj.weight", (hidden, ff)),
        ]
    out += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return out


def encode(values, dtype):
    if dtype == "f32":
        return values.astype("<f4")
    if dtype == "f16":
        return values.astype("<f2")
    # bf16: round-to-nearest-even of the f32 bits
    bits = values.astype("<f4").view("<u4")
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).astype("<u2")


def write_tokenizer(path, vocab):
    """A byte-fallback BPE tokenizer.model with exactly `vocab` pieces:
    <unk>, <s>, </s>, the 256 byte pieces, then words with falling scores."""
    P = spm_proto
    pieces = [P.Piece("<unk>", 0.0, P.UNKNOWN), P.Piece("<s>", 0.0, P.CONTROL), P.Piece("</s>", 0.0, P.CONTROL)]
    pieces += [P.Piece(f"<0x{b:02X}>", 0.0, P.BYTE) for b in range(256)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(pieces) < vocab:
        word, k = "", i
        while True:
            word, k = letters[k % 26] + word, k // 26
            if k == 0:
                break
        pieces.append(P.Piece("\u2581" + word, -float(i), P.NORMAL))
        i += 1
    trainer = [[3, P.VARINT, 2], [35, P.VARINT, 1]]  # model_type BPE, byte_fallback
    normalizer = [[1, P.LEN, b"identity"], [3, P.VARINT, 0], [4, P.VARINT, 0], [5, P.VARINT, 1]]
    data = P.serialize([[1, P.LEN, p.encode()] for p in pieces] +
                       [[2, P.LEN, P.serialize(trainer)], [3, P.LEN, P.serialize(normalizer)]])
    with open(path, "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=SHAPES, required=True)
    ap.add_argument("--dtype", choices=DTYPES, default="bf16")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-only", action="store_true", help="write only tokenizer.model")
    args = ap.parse_args()

    arch, hidden, ff, layers, heads, vocab, rope = SHAPES[args.shape]
    os.makedirs(args.out, exist_ok=True)
    write_tokenizer(os.path.join(args.out, "tokenizer.model"), vocab)
    if args.tokenizer_only:
        return
    config = {
        "architectures": [arch], "model_type": "baichuan", "hidden_act": "silu",
        "hidden_size": hidden, "intermediate_size": ff, "num_hidden_layers": layers,
        "num_attention_heads": heads, "vocab_size": vocab, "rms_norm_eps": 1e-6,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "model_max_length": 4096,
        "tie_word_embeddings": False, "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[args.dtype],
    }
    if rope:
        config["max_position_embeddings"] = 4096
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    rng = np.random.default_rng(args.seed)
    pool = encode(rng.normal(0.0, 0.02, POOL).astype(np.float32), args.dtype)
    one = encode(np.ones(max(hidden, 1), np.float32), args.dtype)
    tag, size = DTYPES[args.dtype]

    tensors = tensor_list(hidden, ff, layers, vocab)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path = os.path.join(args.out, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in tensors:
            count = int(np.prod(shape))
            if len(shape) == 1:
                f.write(one[:count].tobytes())
                continue
            while count > 0:
                start = int(rng.integers(0, POOL // 2))
                take = min(count, POOL - start)
                f.write(pool[start:start + take].tobytes())
                count -= take
    params = sum(int(np.prod(s)) for _, s in tensors)
    print(f"{path}: {params / 1e9:.3f} B parameters, {os.path.getsize(path) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
