#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/.

Run from anywhere: python3 fuzz/seeds/gen_seeds.py. The checkpoint seeds are
tiny hand-made files in the real layouts (a torch.save-shaped zip with a
pickle naming torch's globals through stand-in modules, so torch itself is
not needed); the JSON seeds are the shapes the CLI, the server and the
model directory use.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, meta=None):
    header, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


# Stand-ins for the torch globals a checkpoint's pickle names.
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


def _rebuild_tensor_v2(*args):
    pass


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
for name in ("FloatStorage", "HalfStorage", "BFloat16Storage", "ByteStorage", "IntStorage"):
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)


class Size(tuple):
    """torch.Size: pickles as Size((d0, d1, ...))."""
    __module__ = "torch"

    def __reduce__(self):
        return (Size, (tuple(self),))


class _Dtype:
    """torch.float16 and kin: pickled by name."""
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name


_Dtype.__module__ = "torch"
torch.Size = Size
for name in ("float16", "float32"):
    setattr(torch, name, _Dtype(name))


class Tensor:
    def __init__(self, storage, key, offset, size, stride, numel):
        self.storage, self.key, self.offset, self.size, self.stride, self.numel = storage, key, offset, size, stride, numel

    def __reduce__(self):
        return (_rebuild_tensor_v2, (Storage(self.storage, self.key, self.numel), self.offset, self.size,
                                     self.stride, False, collections.OrderedDict()))


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def data_pkl(state, protocol=2):
    out = io.BytesIO()
    Pickler(out, protocol=protocol).dump(state)
    return out.getvalue()


def torch_zip(pkl, storages):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            z.writestr("archive/data/" + key, data)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def main():
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    write("fuzz_safetensors", "two.safetensors",
          safetensors({"w": ("F32", [2, 2], f32), "b": ("F16", [2], b"\x00\x3c\x00\x40")}, {"format": "pt"}))
    write("fuzz_safetensors", "bf16.safetensors", safetensors({"x.weight": ("BF16", [1, 3], b"\x80\x3f" * 3)}))
    write("fuzz_safetensors", "empty.safetensors", safetensors({}))
    # Ranges that do not tile the data (refused): b's first byte is also a's last.
    overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [7, 15]}}
    h = json.dumps(overlap).encode()
    write("fuzz_safetensors", "overlap.safetensors", struct.pack("<Q", len(h)) + h + bytes(range(15)))
    # Dtypes the model cannot use and an empty tensor (accepted).
    write("fuzz_safetensors", "foreign.safetensors",
          safetensors({"i": ("I32", [2], b"\x01\x00\x00\x00" * 2), "z": ("F8_E4M3", [0], b""),
                       "u": ("U8", [3], b"abc")}))
    # A GPTQ int4 linear in AutoGPTQ's layout (in 32, out 8, one group of
    # 32): qweight I32 [32/8, 8], qzeros I32 [1, 8/8], scales F16 [1, 8],
    # g_idx I32 [32].
    gptq = safetensors({"l.qweight": ("I32", [4, 8], struct.pack("<32I", *[0x76543210 + i for i in range(32)])),
                        "l.qzeros": ("I32", [1, 1], struct.pack("<I", 0x77777777)),
                        "l.scales": ("F16", [1, 8], b"\x00\x3c" * 8),
                        "l.g_idx": ("I32", [32], bytes(128))}, {"format": "pt"})
    write("fuzz_safetensors", "gptq.safetensors", gptq)
    # fuzz_gptq: a config byte (group size 32, 64, 128 or -1 by its low two
    # bits; bit 2 desc_act), then the file. The second seed has 64 inputs in
    # two groups of 32 dealt out in an interleaved (desc_act) order, and a
    # zero bias.
    write("fuzz_gptq", "g32", b"\x00" + gptq)
    g_idx = [(k * 5) % 64 // 32 for k in range(64)]
    write("fuzz_gptq", "desc_act",
          b"\x04" + safetensors({
              "l.qweight": ("I32", [8, 8], struct.pack("<64I", *[(0x13579bdf * (i + 1)) & 0xFFFFFFFF for i in range(64)])),
              "l.qzeros": ("I32", [2, 1], struct.pack("<2I", 0x01234567, 0x89abcdef)),
              "l.scales": ("F16", [2, 8], b"\x00\x38" * 16),
              "l.g_idx": ("I32", [64], struct.pack("<64i", *g_idx)),
              "l.bias": ("F16", [8], bytes(16))}))

    index = {"metadata": {"total_size": 24}, "weight_map": {"a": "model-00001-of-00001.safetensors",
                                                            "b": "model-00001-of-00001.safetensors"}}
    write("fuzz_st_index", "safetensors_index", b"\x00" + json.dumps(index).encode())
    write("fuzz_st_index", "missing_shard", b"\x00" + json.dumps({"weight_map": {"a": "other.safetensors"}}).encode())
    write("fuzz_st_index", "torch_index", b"\x01" + json.dumps({"weight_map": {"a": "pytorch_model-1.bin"}}).encode())
    write("fuzz_st_index", "torch_index_valid",
          b"\x01" + json.dumps({"weight_map": {"x": "pytorch_model-00001-of-00001.bin"}}).encode())

    F, H = torch.FloatStorage, torch.HalfStorage
    state = collections.OrderedDict()
    state["w"] = Tensor(F, "0", 0, (2, 4), (4, 1), 64)
    state["b"] = Tensor(F, "0", 8, (4,), (1,), 64)
    state["h"] = Tensor(H, "1", 0, (2, 3), (3, 1), 32)
    pkl = data_pkl(state)
    write("fuzz_torch_pickle", "state_dict.pkl", pkl)
    write("fuzz_torch_pickle", "state_dict_p4.pkl", data_pkl(state, protocol=4))
    write("fuzz_torch_pickle", "empty_dict.pkl", data_pkl(collections.OrderedDict()))
    # A bitsandbytes 4-bit weight as Baichuan2's 4bits checkpoints store it:
    # "<w>.data" (uint8 codes) and "<w>.quant_state" [absmax, shape, dtype,
    # blocksize, [offset, [absmax2, code2, blocksize2, nested, dtype, None,
    # None]], quant type, code] (bitsandbytes 0.41).
    U = torch.ByteStorage
    bnb = collections.OrderedDict()
    bnb["w.data"] = Tensor(U, "1", 0, (32, 1), (1, 1), 64)
    bnb["w.quant_state"] = [Tensor(U, "1", 32, (1,), (1,), 64), Size((8, 8)), torch.float16, 64,
                            [Tensor(F, "0", 0, (), (), 64),
                             [Tensor(F, "0", 1, (1,), (1,), 64), Tensor(F, "0", 2, (16,), (1,), 64), 256, False,
                              torch.float32, None, None]],
                            "nf4", Tensor(F, "0", 18, (16,), (1,), 64)]
    write("fuzz_torch_pickle", "bnb4_state.pkl", data_pkl(bnb, protocol=2))
    # A GPTQ linear saved with torch.save: int32 qweight / qzeros / g_idx, f16 scales.
    I = torch.IntStorage
    gptq = collections.OrderedDict()
    gptq["l.qweight"] = Tensor(I, "0", 0, (4, 8), (8, 1), 64)
    gptq["l.qzeros"] = Tensor(I, "0", 32, (1, 1), (1, 1), 64)
    gptq["l.scales"] = Tensor(H, "1", 0, (1, 8), (8, 1), 32)
    gptq["l.g_idx"] = Tensor(I, "0", 33, (32,), (1,), 64)
    write("fuzz_torch_pickle", "gptq_int32.pkl", data_pkl(gptq, protocol=2))
    write("fuzz_torch_zip", "pytorch_model.bin", torch_zip(pkl, {"0": bytes(256), "1": bytes(64)}))
    one = collections.OrderedDict(x=Tensor(F, "0", 0, (2,), (1,), 2))
    write("fuzz_torch_zip", "one.bin", torch_zip(data_pkl(one), {"0": f32[:8]}))

    config = {"model_type": "baichuan", "architectures": ["BaichuanForCausalLM"], "hidden_act": "silu",
              "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "max_position_embeddings": 128, "model_max_length": 128,
              "rms_norm_eps": 1e-6, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
              "tie_word_embeddings": False}
    write("fuzz_config", "config", b"\x00" + json.dumps(config).encode())
    write("fuzz_config", "config_alibi", b"\x00" + json.dumps(dict(config, position_encoding="alibi",
                                                                   norm_head=True)).encode())
    gen = {"user_token_id": 3, "assistant_token_id": 4, "max_new_tokens": 64, "temperature": 0.3, "top_k": 5,
           "top_p": 0.85, "repetition_penalty": 1.05, "do_sample": True}
    write("fuzz_config", "generation_config", b"\x01" + json.dumps(gen).encode())
    write("fuzz_config", "tokenizer_config", b"\x02" + json.dumps({"add_bos_token": False, "add_eos_token": False,
                                                                    "model_max_length": 4096}).encode())

    conv = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello 你好"},
            {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Tell me more."}]
    write("fuzz_chat", "conversation.json", json.dumps(conv, ensure_ascii=False))
    write("fuzz_chat", "one_user.json", json.dumps([{"role": "user", "content": "床前明月光，"}], ensure_ascii=False))
    write("fuzz_chat", "bad_role.json", json.dumps([{"role": "tool", "content": "x"}]))

    chat = {"model": "tiny", "messages": conv, "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "stream": True,
            "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2, "stop": ["\n", "end"],
            "seed": 42}
    write("fuzz_openai", "chat", b"\x01" + json.dumps(chat, ensure_ascii=False).encode())
    write("fuzz_openai", "chat_parts", b"\x01" + json.dumps({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}],
        "max_completion_tokens": 4}).encode())
    write("fuzz_openai", "completion", b"\x00" + json.dumps({"prompt": "Once upon a time", "max_tokens": 16,
                                                             "logprobs": 3, "top_k": 4, "min_p": 0.05,
                                                             "presence_penalty": 0.5, "stop": "."}).encode())
    write("fuzz_openai", "completion_ids", b"\x00" + json.dumps({"prompt": [1, 5, 9, 12], "n": 1}).encode())
    write("fuzz_openai", "completion_empty", b"\x00" + json.dumps({"prompt": ""}).encode())

    tenants = {"tenants": [{"name": "alice", "keys": ["sk-alice-0001", "sk-alice-0002"], "requests_per_minute": 3,
                            "tokens_per_day": 1000},
                           {"name": "bob", "keys": ["sk-bob-00001"]}]}
    write("fuzz_tenants", "tenants.json", json.dumps(tenants, indent=1))
    write("fuzz_tenants", "dup_key.json", json.dumps({"tenants": [{"name": "a", "keys": ["12345678"]},
                                                                  {"name": "b", "keys": ["12345678"]}]}))

    http_seeds(chat)
    json_schema_seeds()
    lora_seeds()


def http_request(method, path, body=None, key="sk-fuzz-open", headers=(), chunked=False, version="1.1"):
    """One raw HTTP request as a client sends it (fuzz_http's input)."""
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    lines += list(headers)
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(data)}")
        if chunked:
            half = len(data) // 2
            data = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:half], data[half:]) if part)
            data += b"0\r\n\r\n"
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + data


def http_seeds(chat):
    """Requests on every route of the server fuzz_http runs (keys: its tenants)."""
    write("fuzz_http", "health", http_request("GET", "/health", key=None))
    write("fuzz_http", "page_head", http_request("HEAD", "/", key=None, version="1.0"))
    write("fuzz_http", "models", http_request("GET", "/v1/models"))
    write("fuzz_http", "metrics", http_request("GET", "/metrics"))
    write("fuzz_http", "admin_page", http_request("GET", "/admin", key=None))
    write("fuzz_http", "admin_usage", http_request("GET", "/admin/usage?from=2026-02-30&to=2026-03-01&bucket=hour"))
    write("fuzz_http", "tokenize", http_request("POST", "/tokenize", {"content": "Hello 你好", "add_special": True}))
    write("fuzz_http", "detokenize", http_request("POST", "/detokenize", {"tokens": [1, 5, 9, 12]}))
    write("fuzz_http", "completion", http_request("POST", "/v1/completions",
                                                  {"prompt": "Once upon", "max_tokens": 4, "logprobs": 2}))
    write("fuzz_http", "completion_stream_chunked",
          http_request("POST", "/v1/completions", {"prompt": [1, 5, 9], "max_tokens": 3, "stream": True,
                                                   "stop": ["a", "b"]}, chunked=True))
    write("fuzz_http", "chat_stream", http_request("POST", "/v1/chat/completions", dict(chat, max_tokens=4)))
    write("fuzz_http", "chat_tight", http_request("POST", "/v1/chat/completions",
                                                  {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                                                  key="sk-fuzz-tight"))
    write("fuzz_http", "bad_key", http_request("GET", "/v1/models", key="sk-wrong"))
    write("fuzz_http", "wrong_method", http_request("DELETE", "/v1/completions"))
    write("fuzz_http", "unknown_url", http_request("GET", "/v2/nothing"))
    write("fuzz_http", "too_large", http_request("POST", "/v1/completions", b"{" + b" " * 5000 + b"}"))
    write("fuzz_http", "livez", http_request("GET", "/livez", key=None))
    write("fuzz_http", "readyz", http_request("GET", "/readyz", key=None))
    write("fuzz_http", "completion_unknown_model",
          http_request("POST", "/v1/completions", {"model": "no-such-adapter", "prompt": "a", "max_tokens": 2}))
    write("fuzz_http", "load_adapter",
          http_request("POST", "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": "/nonexistent"}))
    write("fuzz_http", "unload_adapter", http_request("POST", "/v1/unload_lora_adapter", {"lora_name": "a"}))
    write("fuzz_http", "pipelined", http_request("GET", "/health", key=None) +
          http_request("POST", "/tokenize", {"content": "x"}) + http_request("GET", "/metrics"))


def json_schema_seeds():
    """The JSON Schema test's suite (tests/python/test_json_schema.py), a few of
    its schemas each on one line."""
    sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
    import test_json_schema  # noqa: E402  (the suite lives beside the test that uses it)
    pick = {"person", "tree", "linked_list", "recursive_root", "open_object", "integer_range", "number_range",
            "formats", "pattern_classes", "enum_mixed", "prefix_min", "any_of", "keys_escaped"}
    for name, schema, _ in test_json_schema.SUITE:
        if name in pick:
            write("fuzz_json_schema", name + ".json", json.dumps(schema, ensure_ascii=False) + "\n")


def lora_seeds():
    """fuzz_lora: a byte (bit 0: the weights are adapter_model.bin), the
    config's length (u16 LE), adapter_config.json, the weights file; adapters
    for tests/data/tiny.gguf (n_embd 8, n_ff 16, one layer)."""
    def seed(bin_, config, weights):
        c = json.dumps(config).encode()
        return bytes([1 if bin_ else 0]) + struct.pack("<H", len(c)) + c + weights

    dims = {"self_attn.W_pack": (8, 24), "self_attn.o_proj": (8, 8), "mlp.gate_proj": (8, 16),
            "mlp.up_proj": (8, 16), "mlp.down_proj": (16, 8)}
    key = "base_model.model.model.layers.0.%s.lora_%s.weight"

    def factors(modules, r, dtype):
        size = 4 if dtype == "F32" else 2
        out = {}
        for m in modules:
            fin, fout = dims[m]
            out[key % (m, "A")] = (dtype, [r, fin], bytes((i * 37 + 11) % 61 for i in range(r * fin * size)))
            out[key % (m, "B")] = (dtype, [fout, r], bytes((i * 53 + 7) % 59 for i in range(fout * r * size)))
        return out

    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 32, "target_modules": ["W_pack", "down_proj"], "bias": "none",
           "use_rslora": False, "fan_in_fan_out": False, "modules_to_save": None}
    write("fuzz_lora", "w_pack_down_f32",
          seed(False, cfg, safetensors(factors(["self_attn.W_pack", "mlp.down_proj"], 2, "F32"), {"format": "pt"})))
    cfg_all = dict(cfg, r=1, target_modules=["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"], use_rslora=True)
    write("fuzz_lora", "all_f16", seed(False, cfg_all, safetensors(factors(list(dims), 1, "F16"))))
    write("fuzz_lora", "dora", seed(False, dict(cfg, use_dora=True), safetensors(factors(["self_attn.W_pack"], 2, "F32"))))
    # The same W_pack factors saved by torch.save (a plain dict, as PEFT's state dict).
    F = torch.FloatStorage
    state = {key % ("self_attn.W_pack", "A"): Tensor(F, "0", 0, (2, 8), (8, 1), 16),
             key % ("self_attn.W_pack", "B"): Tensor(F, "1", 0, (24, 2), (2, 1), 48)}
    storages = {"0": struct.pack("<16f", *[(i % 5 - 2) * 0.1 for i in range(16)]),
                "1": struct.pack("<48f", *[(i % 7 - 3) * 0.01 for i in range(48)])}
    write("fuzz_lora", "w_pack.bin", seed(True, dict(cfg, target_modules=["W_pack"]), torch_zip(data_pkl(state), storages)))


if __name__ == "__main__":
    main()
