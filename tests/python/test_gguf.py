#!/usr/bin/python3
"""test_gguf.py - GGUF files: logits against the float64 reference, the
variant rules, `baichuan quantize` round trips, and corrupt files.

    test_gguf.py --bin PATH_TO_baichuan --fixtures DIR

GGUF files are written here from the fixtures' master weights by an
independent writer (gguf_writer.py) that splits W_pack and permutes Q/K rows
exactly as llama.cpp's converter does. `baichuan logits -m FILE.gguf` must
match tools/reference.py on the original Hugging Face fixture (tolerances of
test_logits: 1e-4 for f32, 2e-2 for f16/bf16).

Variant cases: a llama.cpp-style file (no explicit keys) is RoPE unless it has
40 blocks (llama.cpp's rule); explicit baichuan.position_encoding /
baichuan.norm_head keys win over the rules.

Corrupt files (truncated at many offsets, absurd counts, bad type ids,
offsets past the end, misaligned data) must give a one-line error naming the
file, exit status 1, and no sanitizer report.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import Tally, rel_err, token_sequence  # noqa: E402

import gen_fixtures as gf  # noqa: E402
import gguf_writer as gw  # noqa: E402
import reference  # noqa: E402

TIMEOUT_S = 300
N_TOKENS = 24


def run(binary, *args, timeout=TIMEOUT_S):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def engine_logits(binary, model, tokens, out, n_vocab, flags=()):
    if os.path.exists(out):
        os.unlink(out)
    p = run(binary, "logits", "-m", model, "--tokens", " ".join(map(str, tokens)), "-o", out, "--cache-type", "f32",
            *flags)
    if p.returncode != 0:
        raise RuntimeError("exit %d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace").strip()))
    return np.fromfile(out, dtype="<f4").reshape(len(tokens), n_vocab)


def write_gguf(path, fx, weights, extra=(), tokens=True, alignment=32, version=3, dtype=None):
    dtype = dtype or fx["dtype"]
    t = gw.baichuan_tensors(weights, fx["n_layer"], fx["n_head"], gf.to_bytes, dtype)
    kvs = gw.baichuan_kvs(fx["n_embd"], fx["n_ff"], fx["n_layer"], fx["n_head"], fx["n_vocab"], tokens=tokens,
                          extra=extra)
    if alignment != 32:
        kvs.append(("general.alignment", gw.U32, alignment))
    blob, offsets = gw.build_gguf(kvs, t, alignment=alignment, version=version)
    with open(path, "wb") as fp:
        fp.write(blob)
    return blob, offsets


def check_logits(t, binary, label, gguf_path, ref_dir, tol, work, pe=None, nh=None, flags=()):
    try:
        model = reference.load_model(ref_dir, pe, nh)
        tokens = token_sequence(label, N_TOKENS, model.hp.n_vocab)
        ref = model.logits(tokens)
        got = engine_logits(binary, gguf_path, tokens, os.path.join(work, "logits.f32"), model.hp.n_vocab, flags)
    except Exception as e:  # noqa: BLE001 - a failure is a failed case
        t.record(False, "%s: %s" % (label, e))
        return
    err = rel_err(got, ref)
    t.record(err <= tol, "%s err %.3g (tol %.0e)" % (label, err, tol))


def info_fields(binary, path):
    p = run(binary, "info", "-m", path)
    out = {}
    for line in p.stdout.decode().splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------------
# Logits and variants
# ---------------------------------------------------------------------------

def logits_cases(t, binary, fixtures, work):
    # llama.cpp-style files (no explicit keys) of the RoPE fixtures.
    for name in ["b2_7b_f32_st", "b2_7b_bf16_bin_sharded", "b1_7b_f16_st", "b1_7b_bf16_bin"]:
        fx = gf.FIXTURES[name]
        path = os.path.join(work, name + ".gguf")
        write_gguf(path, fx, gf.generate_weights(fx))
        check_logits(t, binary, "gguf %s (llama.cpp style)" % name, path, os.path.join(fixtures, name),
                     bc_testlib.TOLERANCE[fx["dtype"]], work)
    # ALiBi fixtures with 2 blocks need our explicit key.
    for name in ["b2_13b_f16_st_sharded", "b1_13b_f32_bin"]:
        fx = gf.FIXTURES[name]
        path = os.path.join(work, name + ".gguf")
        write_gguf(path, fx, gf.generate_weights(fx), extra=[("baichuan.position_encoding", gw.STRING, "alibi")])
        check_logits(t, binary, "gguf %s (explicit alibi)" % name, path, os.path.join(fixtures, name),
                     bc_testlib.TOLERANCE[fx["dtype"]], work)
        f = info_fields(binary, path)
        t.record(f.get("position") == "alibi (explicit)", "gguf %s: info says %r" % (name, f.get("position")))

    # Explicit keys win over the rules: a Baichuan2-7B fixture as ALiBi without NormHead.
    name = "b2_7b_f32_st"
    fx = gf.FIXTURES[name]
    path = os.path.join(work, "explicit.gguf")
    write_gguf(path, fx, gf.generate_weights(fx), extra=[("baichuan.position_encoding", gw.STRING, "alibi"),
                                                         ("baichuan.norm_head", gw.BOOL, False)])
    check_logits(t, binary, "gguf explicit keys (alibi, no norm head)", path, os.path.join(fixtures, name), 1e-4,
                 work, pe="alibi", nh="off")
    f = info_fields(binary, path)
    t.record(f.get("position") == "alibi (explicit)" and f.get("norm head") == "off (explicit)",
             "gguf explicit keys: info %r / %r" % (f.get("position"), f.get("norm head")))
    # CLI flags win over the keys.
    check_logits(t, binary, "gguf flags over keys", path, os.path.join(fixtures, name), 1e-4, work, pe="rope",
                 nh="on", flags=["--pos-encoding", "rope", "--norm-head", "on"])

    # GGUF v2, a larger alignment, and no token list (vocab from token_embd).
    path = os.path.join(work, "v2.gguf")
    write_gguf(path, fx, gf.generate_weights(fx), version=2, alignment=64, tokens=False)
    check_logits(t, binary, "gguf v2, alignment 64, no token list", path, os.path.join(fixtures, name), 1e-4, work)

    # 40 blocks: llama.cpp's rule makes it ALiBi; vocab 125696 makes NormHead.
    deep = gf._fixture("deep40", "baichuan2-13b", "f32", "st", n_embd=16, n_head=2, n_ff=40, n_layer=40,
                       vocab=gf.VOCAB_BAICHUAN2)
    deep_dir = gf.write_fixture(deep, work)
    w = gf.generate_weights(deep)
    path = os.path.join(work, "deep40.gguf")
    write_gguf(path, deep, w)
    check_logits(t, binary, "gguf 40 blocks (llama.cpp rule: alibi)", path, deep_dir, 1e-4, work)
    f = info_fields(binary, path)
    t.record(f.get("position") == "alibi (detected)" and f.get("norm head") == "on (detected)",
             "gguf 40 blocks: info %r / %r" % (f.get("position"), f.get("norm head")))
    path = os.path.join(work, "deep40_rope.gguf")
    write_gguf(path, deep, w, extra=[("baichuan.position_encoding", gw.STRING, "rope")])
    check_logits(t, binary, "gguf 40 blocks with explicit rope", path, deep_dir, 1e-4, work, pe="rope")


# ---------------------------------------------------------------------------
# Corrupt files
# ---------------------------------------------------------------------------

def expect_error(t, binary, label, path, needle=None):
    p = run(binary, "info", "-m", path, timeout=60)
    err = p.stderr.decode("utf-8", "replace")
    lines = err.strip().splitlines()
    ok = (p.returncode == 1 and len(lines) == 1 and path in lines[0] and "Sanitizer" not in err
          and "runtime error" not in err and (needle is None or needle in err))
    return t.record(ok, "%s: %s" % (label, lines[0] if lines else "(no message, exit %d)" % p.returncode))


def corrupt_cases(t, binary, work):
    fx = gf._fixture("tiny", "baichuan2-7b", "f32", "st", n_embd=8, n_head=2, n_ff=16, n_layer=1, vocab=40)
    w = gf.generate_weights(fx)
    good = os.path.join(work, "good.gguf")
    extra = [("test.nested", gw.ARRAY, (gw.ARRAY, [(gw.U8, [1, 2]), (gw.STRING, ["a", "bc"])])),
             ("test.flag", gw.BOOL, True)]
    blob, offsets = write_gguf(good, fx, w, extra=extra)
    p = run(binary, "info", "-m", good)
    t.record(p.returncode == 0, "corrupt: the uncorrupted file loads (nested arrays too) %s"
             % p.stderr.decode().strip())
    bad = os.path.join(work, "bad.gguf")

    def write(b):
        with open(bad, "wb") as fp:
            fp.write(b)

    # Truncations at many offsets, every one refused with one line.
    cuts = sorted(set(list(range(1, 64)) + list(range(64, len(blob), max(1, len(blob) // 97)))))
    failures = 0
    for cut in cuts:
        write(blob[:cut])
        p = run(binary, "info", "-m", bad, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        if not (p.returncode == 1 and len(err.strip().splitlines()) == 1 and bad in err and "Sanitizer" not in err
                and "runtime error" not in err):
            failures += 1
            if failures <= 3:
                print("  truncated at %d: exit %d: %s" % (cut, p.returncode, err.strip()))
    t.record(failures == 0, "corrupt: %d truncations refused with one line each (%d bad)" % (len(cuts), failures))

    def patched(pos, fmt, value):
        b = bytearray(blob)
        struct.pack_into(fmt, b, pos, value)
        return bytes(b)

    n_kv_pos, n_tensor_pos = 16, 8
    # Find the first tensor info: after the kvs. Walk the header as the spec says.
    pos = 24
    n_kv = struct.unpack_from("<Q", blob, 16)[0]

    def skip(pos, vtype):
        if vtype in gw._SCALAR:
            return pos + struct.calcsize(gw._SCALAR[vtype])
        if vtype == gw.STRING:
            return pos + 8 + struct.unpack_from("<Q", blob, pos)[0]
        et, n = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        for _ in range(n):
            pos = skip(pos, et)
        return pos

    first_kv_type = None
    kv_type_pos = {}
    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", blob, pos)[0]
        key = blob[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        kv_type_pos[key] = pos
        vtype = struct.unpack_from("<I", blob, pos)[0]
        first_kv_type = first_kv_type or pos
        pos = skip(pos + 4, vtype)
    tinfo = pos  # first tensor info: name, n_dims, ne..., type, offset
    nlen = struct.unpack_from("<Q", blob, tinfo)[0]
    ndims_pos = tinfo + 8 + nlen
    ndims = struct.unpack_from("<I", blob, ndims_pos)[0]
    type_pos = ndims_pos + 4 + 8 * ndims
    off_pos = type_pos + 4

    tokens_pos = kv_type_pos["tokenizer.ggml.tokens"]
    cases = [
        ("bad magic", patched(0, "<4s", b"GGUX"), "not a GGUF file"),
        ("version 1", patched(4, "<I", 1), "version 1"),
        ("version 99", patched(4, "<I", 99), "version 99"),
        ("absurd tensor count", patched(n_tensor_pos, "<Q", 1 << 60), "tensor count"),
        ("absurd metadata count", patched(n_kv_pos, "<Q", 1 << 60), "metadata count"),
        ("tensor count one too many", patched(n_tensor_pos, "<Q", struct.unpack_from("<Q", blob, 8)[0] + 1), None),
        ("absurd key length", patched(24, "<Q", 1 << 62), "length"),
        ("unknown value type", patched(first_kv_type, "<I", 77), "unknown value type 77"),
        ("absurd array count", patched(tokens_pos + 8, "<Q", 1 << 61), "does not fit"),
        ("unknown array element type", patched(tokens_pos + 4, "<I", 13), "element type 13"),
        ("absurd string length in an array", patched(tokens_pos + 16, "<Q", 1 << 40), None),
        ("zero dimensions", patched(ndims_pos, "<I", 0), "dimensions"),
        ("five dimensions", patched(ndims_pos, "<I", 5), "dimensions"),
        ("huge dimension", patched(ndims_pos + 4, "<Q", 1 << 62), None),
        ("bad ggml type id", patched(type_pos, "<I", 99), "ggml type 99"),
        ("unsupported ggml type (q2_K)", patched(type_pos, "<I", 10), "ggml type 10"),
        ("offset past the end", patched(off_pos, "<Q", 1 << 40), "past the end"),
        ("misaligned offset", patched(off_pos, "<Q", 4), "alignment"),
        ("offset overflow", patched(off_pos, "<Q", (1 << 64) - 32), None),
    ]
    for label, data, needle in cases:
        write(data)
        expect_error(t, binary, "corrupt: " + label, bad, needle)

    # Alignment that is not a power of two, and of the wrong type.
    path = os.path.join(work, "align.gguf")
    kvs = gw.baichuan_kvs(8, 16, 1, 2, 40, extra=[("general.alignment", gw.U32, 24)])
    b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "corrupt: alignment 24", path, "power of two")
    kvs = gw.baichuan_kvs(8, 16, 1, 2, 40, extra=[("general.alignment", gw.STRING, "32")])
    b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "corrupt: alignment as a string", path, "general.alignment")
    # Arrays nested 8 deep load; 9 deep pass the reader's nesting limit.
    for depth, ok in ((8, True), (9, False)):
        value = (gw.U8, [1, 2])
        for _ in range(depth - 1):
            value = (gw.ARRAY, [value])
        kvs = gw.baichuan_kvs(8, 16, 1, 2, 40, extra=[("test.deep", gw.ARRAY, value)])
        b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
        with open(path, "wb") as fp:
            fp.write(b)
        if ok:
            p = run(binary, "info", "-m", path)
            t.record(p.returncode == 0, "corrupt: arrays nested %d deep load" % depth)
        else:
            expect_error(t, binary, "corrupt: arrays nested %d deep" % depth, path, "nested deeper than 8")
    # Another architecture, a missing key, a wrong key type, a missing tensor.
    kvs = [kv if kv[0] != "general.architecture" else (kv[0], gw.STRING, "llama") for kv in
           gw.baichuan_kvs(8, 16, 1, 2, 40)]
    b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "model: architecture llama", path, 'not "baichuan"')
    kvs = [kv for kv in gw.baichuan_kvs(8, 16, 1, 2, 40) if kv[0] != "baichuan.block_count"]
    b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "model: missing block_count", path, "baichuan.block_count")
    kvs = [kv if kv[0] != "baichuan.embedding_length" else (kv[0], gw.STRING, "8") for kv in
           gw.baichuan_kvs(8, 16, 1, 2, 40)]
    b, _ = gw.build_gguf(kvs, gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32"))
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "model: embedding_length as a string", path, "embedding_length")
    tensors = [x for x in gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32") if x[0] != "blk.0.attn_k.weight"]
    b, _ = gw.build_gguf(gw.baichuan_kvs(8, 16, 1, 2, 40), tensors)
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "model: missing attn_k", path, "blk.0.attn_k.weight")
    tensors = gw.baichuan_tensors(w, 1, 2, gf.to_bytes, "f32")
    tensors = tensors + [tensors[0]]
    b, _ = gw.build_gguf(gw.baichuan_kvs(8, 16, 1, 2, 40), tensors)
    with open(path, "wb") as fp:
        fp.write(b)
    expect_error(t, binary, "corrupt: a tensor twice", path, "twice")


# ---------------------------------------------------------------------------
# baichuan quantize round trips
# ---------------------------------------------------------------------------

def quantize_cases(t, binary, fixtures, work):
    p = run(binary, "quantize", "--help")
    if p.returncode != 0:
        t.record(False, "quantize: not available")
        return
    for name, qtype, tol in [("b2_7b_f32_st", "f32", 1e-4), ("b2_7b_f32_st", "f16", 2e-2),
                             ("b2_7b_bf16_bin_sharded", "bf16", 2e-2), ("b2_13b_f16_st_sharded", "f16", 2e-2),
                             ("b1_13b_f32_bin", "f16", 2e-2), ("b1_7b_f16_st", "f32", 2e-2),
                             ("override_alibi", "f32", 1e-4)]:
        src = os.path.join(fixtures, name)
        out = os.path.join(work, "%s.%s.gguf" % (name, qtype))
        p = run(binary, "quantize", src, out, "--type", qtype)
        if p.returncode != 0:
            t.record(False, "quantize %s --type %s: %s" % (name, qtype, p.stderr.decode().strip()))
            continue
        check_logits(t, binary, "quantize %s --type %s, then logits" % (name, qtype), out, src, tol, work)
        # The variant travels with the file.
        want, got = info_fields(binary, src), info_fields(binary, out)
        ok = (want["position"].split()[0] == got.get("position", "").split()[0]
              and want["norm head"].split()[0] == got.get("norm head", "").split()[0]
              and "explicit" in got.get("position", "") and "explicit" in got.get("norm head", ""))
        t.record(ok, "quantize %s: variant %s / %s carried explicitly" % (name, got.get("position"),
                                                                         got.get("norm head")))
    # GGUF in, GGUF out.
    src = os.path.join(work, "b2_7b_f32_st.f32.gguf")
    out = os.path.join(work, "again.gguf")
    if not os.path.exists(src):
        t.record(False, "quantize GGUF -> GGUF: no %s to start from" % os.path.basename(src))
    else:
        p = run(binary, "quantize", src, out, "--type", "f32")
        if p.returncode == 0:
            check_logits(t, binary, "quantize GGUF -> GGUF f32", out, os.path.join(fixtures, "b2_7b_f32_st"), 1e-4,
                         work)
        else:
            t.record(False, "quantize GGUF -> GGUF: %s" % p.stderr.decode().strip())
    # Tokenizer vocabulary from tokenizer.model.
    src = os.path.join(fixtures, "gen_rope")
    out = os.path.join(work, "gen_rope.gguf")
    p = run(binary, "quantize", src, out, "--type", "f16")
    ok = p.returncode == 0
    if ok:
        data = open(out, "rb").read()
        ok = b"tokenizer.ggml.tokens" in data and b"tokenizer.ggml.scores" in data and b"<0x0A>" in data
    t.record(ok, "quantize writes the tokenizer vocabulary %s" % p.stderr.decode().strip()[-200:])
    # Per-tensor types of every --type, against llama.cpp's rules restated in
    # gguf_writer.llama_quant_type: on rows of 32 (k-quants fall back) and of
    # 256, with 16 layers for the more-bits pattern. Types this build cannot
    # write yet must be refused with a message saying so.
    for fx in [gf.FIXTURES["b2_7b_f32_st"],
               gf._fixture("k256", "baichuan2-7b", "f32", "st", n_embd=256, n_head=2, n_ff=512, n_layer=16,
                           vocab=400, extra={"norm_head": True})]:
        src = fx["name"] if fx["name"] in gf.FIXTURES else gf.write_fixture(fx, work)
        src = os.path.join(fixtures, src) if fx["name"] in gf.FIXTURES else src
        for qtype in ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"]:
            out = os.path.join(work, "types.gguf")
            p = run(binary, "quantize", src, out, "--type", qtype, "-q")
            err = p.stderr.decode().strip()
            if p.returncode != 0:
                # Refused: the block formats are not in this build, or (as in
                # llama.cpp) a row length is not a whole number of 32-blocks.
                ragged = fx["n_ff"] % 32 != 0 or fx["n_embd"] % 32 != 0
                t.record(p.returncode == 1 and qtype.startswith("q") and len(err.splitlines()) == 1
                         and ("not available in this build" in err
                              or (ragged and qtype in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1") and "not whole" in err)),
                         "quantize %s --type %s: refused: %s" % (fx["name"], qtype, err))
                continue
            infos = gw.read_tensor_infos(out)
            bad = [(n, gt, gw.GGML[gw.llama_quant_type(qtype, n, ne[0], fx["n_layer"])])
                   for n, (gt, ne) in infos.items()
                   if gt != gw.GGML[gw.llama_quant_type(qtype, n, ne[0], fx["n_layer"])]]
            t.record(not bad and len(infos) == 9 * fx["n_layer"] + 3,
                     "quantize %s --type %s: tensor types as llama.cpp's rules %s" % (fx["name"], qtype, bad[:3]))
            p = run(binary, "info", "-m", out)
            t.record(p.returncode == 0, "quantize %s --type %s: loads %s" % (fx["name"], qtype,
                                                                           p.stderr.decode().strip()))

    # Errors.
    for label, argv, needle in [
        ("unknown type", [os.path.join(fixtures, "b2_7b_f32_st"), os.path.join(work, "x.gguf"), "--type", "q3_x"],
         "q3_x"),
        ("missing input", [os.path.join(work, "nope"), os.path.join(work, "x.gguf"), "--type", "f16"], "nope"),
        ("unwritable output", [os.path.join(fixtures, "b2_7b_f32_st"), "/nonexistent/x.gguf", "--type", "f16"],
         "/nonexistent/x.gguf"),
    ]:
        p = run(binary, "quantize", *argv)
        err = p.stderr.decode()
        t.record(p.returncode == 1 and needle in err and len(err.strip().splitlines()) == 1,
                 "quantize error: %s: %s" % (label, err.strip()))


def main(argv=None):
    ap = argparse.ArgumentParser(description="GGUF reading, writing and corrupt files")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.bin)
    bc_testlib.ensure_fixtures(args.fixtures)
    t = Tally()
    work = tempfile.mkdtemp(prefix="bc_gguf_")
    try:
        logits_cases(t, binary, args.fixtures, work)
        corrupt_cases(t, binary, work)
        quantize_cases(t, binary, args.fixtures, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
