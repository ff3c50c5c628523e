#!/usr/bin/python3
"""Checks the PyTorch checkpoint reader against real torch.save output.

Writes checkpoints with Debian's torch (python3-torch) into a directory, with
a manifest of what each holds (tensor names in order, dtype, shape, and the
expected raw little-endian bytes in a side file) or which error it must give,
then runs the cmocka program `test_torch --manifest DIR`, whose
test_real_torch_files reads every file with bc__torch_read and compares.

Registered in tests/CMakeLists.txt as

    add_test(NAME torch_save_check
      COMMAND ${BC_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/torch_save_check.py
              --test-bin $<TARGET_FILE:test_torch>)
    set_tests_properties(torch_save_check PROPERTIES TIMEOUT 600)

Usage:
    torch_save_check.py --test-bin build/tests/test_torch        write to a temporary directory, check, clean up
    torch_save_check.py --out DIR                                 only write DIR (then: test_torch --manifest DIR)
    torch_save_check.py --test-bin BIN --huge                     also a checkpoint over 4 GiB (zip64 offsets;
                                                                  needs ~10 GB of memory and disk, takes minutes)
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError as e:  # the project's test dependencies include python3-torch
    sys.exit(f"torch_save_check: cannot import torch ({e}); install python3-torch and run with /usr/bin/python3")

DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def raw_bytes(t):
    """The tensor's elements as little-endian bytes, row-major."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16; the bits are what matter
    return t.numpy().tobytes()


class Manifest:
    def __init__(self, out):
        self.out = out
        self.lines = ["# written by tests/python/torch_save_check.py (torch %s)" % torch.__version__]

    def ok(self, file_name, obj, check_bytes=True, **save_args):
        """Saves obj (a dict of name -> tensor) and records what the reader must find."""
        torch.save(obj, os.path.join(self.out, file_name), **save_args)
        self.lines.append("ok %s %d" % (file_name, len(obj)))
        for i, (name, t) in enumerate(obj.items()):
            assert " " not in name
            raw = "-"
            if check_bytes or t.numel() < 1 << 20:
                raw = "%s.%d.raw" % (file_name, i)
                with open(os.path.join(self.out, raw), "wb") as f:
                    f.write(raw_bytes(t))
            dims = " ".join(str(d) for d in t.shape)
            self.lines.append("t %s %s %d %s%s%s" % (name, DTYPES[t.dtype], t.dim(), dims, " " if dims else "", raw))

    def err(self, file_name, obj, text, **save_args):
        """Saves obj and records that reading it must fail with text in the message."""
        torch.save(obj, os.path.join(self.out, file_name), **save_args)
        self.lines.append("err %s %s" % (file_name, text))

    def write(self):
        with open(os.path.join(self.out, "manifest.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def baichuan_like(dtype, n_layer=2, n_embd=32, n_ff=48, n_vocab=64):
    """Random weights under the official Baichuan tensor names."""
    g = torch.Generator().manual_seed(1234)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = r(n_vocab, n_embd)
    for i in range(n_layer):
        p = "model.layers.%d." % i
        sd[p + "input_layernorm.weight"] = r(n_embd)
        sd[p + "self_attn.W_pack.weight"] = r(3 * n_embd, n_embd)
        sd[p + "self_attn.o_proj.weight"] = r(n_embd, n_embd)
        sd[p + "post_attention_layernorm.weight"] = r(n_embd)
        sd[p + "mlp.gate_proj.weight"] = r(n_ff, n_embd)
        sd[p + "mlp.up_proj.weight"] = r(n_ff, n_embd)
        sd[p + "mlp.down_proj.weight"] = r(n_embd, n_ff)
    sd["model.norm.weight"] = r(n_embd)
    sd["lm_head.weight"] = r(n_vocab, n_embd)
    return sd


def write_files(out, huge):
    torch.manual_seed(0)
    m = Manifest(out)

    # nn.Module.state_dict(): an OrderedDict with _metadata, pickled with BUILD.
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4, bias=False))
    m.ok("module_state_dict.bin", net.state_dict())
    m.ok("module_state_dict_f16.bin", net.half().state_dict())

    # Official layout in each dtype, as plain dict and OrderedDict, protocols 2 to 5.
    m.ok("baichuan_f32.bin", dict(baichuan_like(torch.float32)))
    m.ok("baichuan_f16.bin", baichuan_like(torch.float16))
    m.ok("baichuan_bf16.bin", baichuan_like(torch.bfloat16))
    m.ok("baichuan_bf16_proto3.bin", dict(baichuan_like(torch.bfloat16)), pickle_protocol=3)
    m.ok("baichuan_bf16_proto4.bin", baichuan_like(torch.bfloat16), pickle_protocol=4)
    m.ok("baichuan_f16_proto5.bin", dict(baichuan_like(torch.float16)), pickle_protocol=5)

    # Views sharing one storage at different offsets, as when a fused W_pack is
    # split into Q, K and V, or weights are tied.
    h = 8
    w_pack = torch.randn(3 * h, h)
    q, k, v = w_pack.split(h)
    views = {
        "W_pack": w_pack,
        "q": q,
        "k": k,
        "v": v,
        "row": w_pack[5],
        "rows": w_pack.narrow(0, 2, 3),
        "unsqueezed": v.unsqueeze(0),
        "tied": w_pack,
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 4),
    }
    m.ok("shared_views.bin", views)
    bf = torch.randn(3 * h, h).bfloat16()
    m.ok("shared_views_bf16_proto4.bin", dict(zip("qkv", bf.split(h))), pickle_protocol=4)

    # nn.Parameter pickles through torch._utils._rebuild_parameter.
    params = {
        "weight": torch.nn.Parameter(torch.randn(4, 4)),
        "frozen": torch.nn.Parameter(torch.randn(4).half(), requires_grad=False),
    }
    m.ok("parameters.bin", params)

    # A large-ish checkpoint: 16 MiB of f32 and 8 MiB of bf16.
    m.ok("large.bin", {"big.f32": torch.randn(1024, 4096), "big.bf16": torch.randn(4096, 1024).bfloat16()})

    # What must be refused, with the message it must give.
    m.err("transposed.bin", {"w": torch.randn(3, 4).t()}, "tensor 'w' is not contiguous")
    m.err("double.bin", {"inv_freq": torch.randn(4, dtype=torch.float64)},
          "tensor 'inv_freq': unsupported dtype (storage torch.DoubleStorage")
    m.err("batchnorm.bin", torch.nn.BatchNorm1d(4).state_dict(), "tensor 'num_batches_tracked': unsupported dtype")
    m.err("whole_module.bin", torch.nn.Linear(2, 2), "forbidden global 'torch.nn.modules.linear.Linear'")
    m.err("nested.bin", {"model": net.state_dict(), "step": 3}, "state dict entry 'model' is a dict, not a tensor")
    m.err("bare_tensor.bin", torch.randn(3), "holds a tensor, not a state dict")
    m.err("legacy.bin", {"w": torch.randn(2)}, "legacy torch.save format", _use_new_zipfile_serialization=False)

    if huge:
        # Past 4 GiB the archive needs zip64 sizes and offsets in its headers.
        n = (4 << 30) // 2 + (64 << 20)
        big = torch.zeros(n, dtype=torch.bfloat16)
        big[::4096] = 1.0
        m.ok("huge.bin", {"before": torch.randn(16), "huge": big, "after": torch.randn(4, 4)}, check_bytes=False)
        del big

    m.write()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--test-bin", help="the test_torch program to run with --manifest")
    ap.add_argument("--out", help="write here and keep the files (default: a temporary directory)")
    ap.add_argument("--huge", action="store_true", help="also write and check a checkpoint over 4 GiB")
    args = ap.parse_args()
    if not args.test_bin and not args.out:
        ap.error("give --test-bin, --out, or both")

    # About 50 MB: memory-backed /dev/shm spares a busy disk (not for --huge, which needs ~5 GB).
    shm = "/dev/shm" if not args.huge and os.access("/dev/shm", os.W_OK) else None
    out = args.out or tempfile.mkdtemp(prefix="bc_torch_save_check_", dir=shm)
    os.makedirs(out, exist_ok=True)
    try:
        write_files(out, args.huge)
        if not args.test_bin:
            print("wrote %s; check with: test_torch --manifest %s" % (out, out))
            return 0
        r = subprocess.run([args.test_bin, "--manifest", out])
        return r.returncode
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
