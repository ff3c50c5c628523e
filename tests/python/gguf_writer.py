"""gguf_writer.py - an independent GGUF v2/v3 writer for the tests (numpy only).

Written from the GGUF specification (llama.cpp's docs/gguf.md), not from the
engine:

    u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv
    n_kv      x (string key, u32 type, value)
    n_tensors x (string name, u32 n_dims, u64 ne[n_dims] innermost first,
                 u32 ggml_type, u64 offset relative to the data section)
    zero padding to the alignment, then the tensor data, each tensor at a
    multiple of the alignment.

And the conversion llama.cpp's convert_hf_to_gguf.py applies to Baichuan
(BaichuanModel.modify_tensors): W_pack is split into attn_q / attn_k / attn_v,
and Q and K go through _reverse_hf_permute:

    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)

i.e. GGUF row h*D + 2*i + j is W_pack row h*D + j*D/2 + i.
"""

import struct

import numpy as np

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q",
           I64: "<q", F64: "<d"}

GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
GGML_OF_DTYPE = {"f32": GGML_F32, "f16": GGML_F16, "bf16": GGML_BF16}


def _string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def encode_value(vtype, value):
    """Bytes of a value (without its type tag). Arrays: value = (elem_type, [items])."""
    if vtype in _SCALAR:
        return struct.pack(_SCALAR[vtype], value)
    if vtype == STRING:
        return _string(value)
    if vtype == ARRAY:
        et, items = value
        out = [struct.pack("<IQ", et, len(items))]
        if et in _SCALAR and et != BOOL:
            out.append(np.asarray(items, dtype=_SCALAR[et]).tobytes())
        else:
            out += [encode_value(et, it) for it in items]
        return b"".join(out)
    raise ValueError(vtype)


def build_gguf(kvs, tensors, alignment=32, version=3):
    """kvs: list of (key, type, value); tensors: list of (name, ne list innermost first, ggml_type, raw bytes).
    Returns (bytes of the whole file, {name: absolute data offset})."""
    head = [struct.pack("<4sIQQ", b"GGUF", version, len(tensors), len(kvs))]
    for key, vtype, value in kvs:
        head.append(_string(key) + struct.pack("<I", vtype) + encode_value(vtype, value))
    offset, offsets = 0, []
    for name, ne, gtype, raw in tensors:
        offsets.append(offset)
        head.append(_string(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
                    + struct.pack("<IQ", gtype, offset))
        offset += len(raw)
        offset += (alignment - offset % alignment) % alignment
    blob = b"".join(head)
    blob += b"\0" * ((alignment - len(blob) % alignment) % alignment)
    data_start = len(blob)
    parts = [blob]
    pos = 0
    for (name, ne, gtype, raw), off in zip(tensors, offsets):
        parts.append(b"\0" * (off - pos))
        parts.append(raw)
        pos = off + len(raw)
    return b"".join(parts), {t[0]: data_start + o for t, o in zip(tensors, offsets)}


def hf_to_gguf_permute(w, n_head):
    """llama.cpp's _reverse_hf_permute of a (rows, cols) Q or K block."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def baichuan_tensors(weights, n_layer, n_head, to_bytes, dtype):
    """llama.cpp-named tensors from HF-named float32 weights; matrices in
    `dtype`, vectors in f32 (as llama.cpp's converter stores 1-D tensors)."""

    def mat(name, a):
        return (name, list(a.shape[::-1]), GGML_OF_DTYPE[dtype], to_bytes(np.ascontiguousarray(a), dtype))

    def vec(name, a):
        return (name, [a.shape[0]], GGML_F32, to_bytes(a, "f32"))

    out = [mat("token_embd.weight", weights["model.embed_tokens.weight"])]
    for i in range(n_layer):
        p, b = "model.layers.%d." % i, "blk.%d." % i
        wp = weights[p + "self_attn.W_pack.weight"]
        e = wp.shape[0] // 3
        out += [
            vec(b + "attn_norm.weight", weights[p + "input_layernorm.weight"]),
            mat(b + "attn_q.weight", hf_to_gguf_permute(wp[:e], n_head)),
            mat(b + "attn_k.weight", hf_to_gguf_permute(wp[e:2 * e], n_head)),
            mat(b + "attn_v.weight", wp[2 * e:]),
            mat(b + "attn_output.weight", weights[p + "self_attn.o_proj.weight"]),
            vec(b + "ffn_norm.weight", weights[p + "post_attention_layernorm.weight"]),
            mat(b + "ffn_gate.weight", weights[p + "mlp.gate_proj.weight"]),
            mat(b + "ffn_up.weight", weights[p + "mlp.up_proj.weight"]),
            mat(b + "ffn_down.weight", weights[p + "mlp.down_proj.weight"]),
        ]
    out += [vec("output_norm.weight", weights["model.norm.weight"]), mat("output.weight", weights["lm_head.weight"])]
    return out


def baichuan_kvs(n_embd, n_ff, n_layer, n_head, n_vocab, ctx=4096, eps=1e-6, tokens=True, extra=()):
    """The metadata llama.cpp's converter writes for arch baichuan (minus the tokenizer
    scores and types, which the engine does not read), plus `extra`."""
    kvs = [
        ("general.architecture", STRING, "baichuan"),
        ("general.name", STRING, "test"),
        ("baichuan.tensor_data_layout", STRING, "Meta AI original pth"),
        ("baichuan.context_length", U32, ctx),
        ("baichuan.embedding_length", U32, n_embd),
        ("baichuan.block_count", U32, n_layer),
        ("baichuan.feed_forward_length", U32, n_ff),
        ("baichuan.rope.dimension_count", U32, n_embd // n_head),
        ("baichuan.attention.head_count", U32, n_head),
        ("baichuan.attention.head_count_kv", U32, n_head),
        ("baichuan.attention.layer_norm_rms_epsilon", F32, eps),
        ("general.file_type", U32, 1),
    ]
    if tokens:
        kvs += [
            ("tokenizer.ggml.model", STRING, "llama"),
            ("tokenizer.ggml.tokens", ARRAY, (STRING, ["[PAD%d]" % i for i in range(n_vocab)])),
            ("tokenizer.ggml.bos_token_id", U32, 1),
            ("tokenizer.ggml.eos_token_id", U32, 2),
        ]
    return kvs + list(extra)


def _read_header(blob):
    """({name: (ggml_type, ne, offset)}, first data byte) of a GGUF file's
    bytes, from the specification: header, key/values (general.alignment
    read, the rest skipped), tensor infos."""
    magic, _version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", blob, 0)
    assert magic == b"GGUF"
    pos, alignment = 24, 32

    def value(pos, vtype):
        if vtype in _SCALAR:
            return struct.unpack_from(_SCALAR[vtype], blob, pos)[0], pos + struct.calcsize(_SCALAR[vtype])
        if vtype == STRING:
            n = struct.unpack_from("<Q", blob, pos)[0]
            return None, pos + 8 + n
        et, n = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        if et in _SCALAR:
            return None, pos + n * struct.calcsize(_SCALAR[et])
        for _ in range(n):
            _, pos = value(pos, et)
        return None, pos

    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", blob, pos)[0]
        key = blob[pos + 8:pos + 8 + klen]
        vtype = struct.unpack_from("<I", blob, pos + 8 + klen)[0]
        v, pos = value(pos + 12 + klen, vtype)
        if key == b"general.alignment":
            alignment = v
    infos = {}
    for _ in range(n_tensors):
        nlen = struct.unpack_from("<Q", blob, pos)[0]
        name = blob[pos + 8:pos + 8 + nlen].decode()
        pos += 8 + nlen
        nd = struct.unpack_from("<I", blob, pos)[0]
        ne = struct.unpack_from("<%dQ" % nd, blob, pos + 4)
        pos += 4 + 8 * nd
        gtype, off = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        infos[name] = (gtype, list(ne), off)
    return infos, (pos + alignment - 1) // alignment * alignment


def read_tensor_infos(path):
    """{name: (ggml_type, ne)} of a GGUF file (header only)."""
    with open(path, "rb") as fp:
        blob = fp.read(64 << 20)
    infos, _ = _read_header(blob)
    return {name: (gtype, ne) for name, (gtype, ne, _off) in infos.items()}


def read_f32_tensors(path):
    """{name: float32 array, outermost dimension first} of the f32 tensors of a GGUF file."""
    with open(path, "rb") as fp:
        blob = fp.read()
    infos, data = _read_header(blob)
    return {name: np.frombuffer(blob, dtype="<f4", count=int(np.prod(ne)), offset=data + off).reshape(ne[::-1])
            for name, (gtype, ne, off) in infos.items() if gtype == 0}


# ggml type ids and block sizes of the types `baichuan quantize` writes.
GGML = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q4_K": 12, "q5_K": 13,
        "q6_K": 14, "bf16": 30}
BLOCK = {"f32": 1, "f16": 1, "bf16": 1, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "q4_K": 256,
         "q5_K": 256, "q6_K": 256}


def llama_quant_type(ftype, name, ne0, n_layer):
    """The type llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) gives a
    Baichuan tensor (no GQA, no experts) for these ftypes, restated here."""
    if name.endswith("_norm.weight"):
        return "f32"
    base = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0", "q4_1": "q4_1",
            "q5_0": "q5_0", "q5_1": "q5_1", "q4_k_m": "q4_K", "q5_k_m": "q5_K", "q6_k": "q6_K"}[ftype]
    if base in ("f32", "f16", "bf16"):
        return base

    def more_bits(i, n):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    t = base
    layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
    if name == "output.weight":
        t = "q8_0" if ne0 % BLOCK[base] else ("q6_K" if base != "q8_0" else "q8_0")
    elif ("attn_v.weight" in name or "ffn_down" in name) and ftype in ("q4_k_m", "q5_k_m") \
            and more_bits(layer, n_layer):
        t = "q6_K"
    if ne0 % BLOCK[t]:
        t = {"q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0"}[t]
        if ne0 % BLOCK[t]:
            t = "f16"
    return t
