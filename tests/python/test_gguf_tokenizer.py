#!/usr/bin/python3
"""The tokenizer read from a GGUF's tokenizer.ggml.* metadata.

- Every line of tests/data/tok_corpus.txt encodes to SentencePiece's own ids
  through: a GGUF that `baichuan quantize` writes from a directory with
  tokenizer.model (tests/data/tiny_bpe.model: dummy prefix on; and the
  default model's: dummy prefix off), and a vocabulary-only GGUF written here
  with the independent tests/python/gguf_writer.py the way llama.cpp's
  converter (_create_vocab_sentencepiece) fills it from SentencePiece's API,
  with add_space_prefix from the model's normalizer_spec.
- Decoding through the GGUF gives SentencePiece's text.
- Chat ids: the quantized default model's GGUF gives the role ids of its
  generation_config.json (3, 4), a GGUF without baichuan.* keys 195/196.
- Bad metadata (counts that disagree, no tokens, wrong element types, an
  unknown type id, a non-SentencePiece model, an out-of-range special id)
  is one line on stderr naming the file and the key, exit status 1.

    test_gguf_tokenizer.py --bin build/baichuan [--fixtures DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import sentencepiece

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
import gguf_writer as gw  # noqa: E402
import spm_proto  # noqa: E402

CORPUS = os.path.join(bc_testlib.ROOT, "tests", "data", "tok_corpus.txt")
TINY = os.path.join(bc_testlib.ROOT, "tests", "data", "tiny_bpe.model")
DEFAULT = os.path.join(bc_testlib.ROOT, "models", "default")


def run(args, stdin=b""):
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=300)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def add_dummy_prefix(model_path):
    """normalizer_spec (field 3).add_dummy_prefix (field 3), default true."""
    with open(model_path, "rb") as f:
        top = spm_proto.parse(f.read())
    ns = spm_proto.get(top, 3)
    if ns is None:
        return True
    return bool(spm_proto.get(spm_proto.parse(ns), 3, 1))


def piece_types(model_path):
    """ModelProto.pieces (field 1) .type (field 3, default NORMAL), read with spm_proto."""
    with open(model_path, "rb") as f:
        top = spm_proto.parse(f.read())
    return [spm_proto.get(spm_proto.parse(v), 3, spm_proto.NORMAL) for num, _, v in top if num == 1]


def vocab_kvs(sp, prefix, types, extra=(), drop=()):
    """tokenizer.ggml.* as llama.cpp's converter writes them from a SentencePiece model.
    (Its _create_vocab_sentencepiece asks IsUnknown/IsControl/IsUnused/IsByte and
    so writes user-defined pieces as normal; the types here are the model's own.)"""
    n = sp.get_piece_size()
    kvs = [
        ("general.architecture", gw.STRING, "baichuan"),
        ("tokenizer.ggml.model", gw.STRING, "llama"),
        ("tokenizer.ggml.tokens", gw.ARRAY, (gw.STRING, [sp.id_to_piece(i) for i in range(n)])),
        ("tokenizer.ggml.scores", gw.ARRAY, (gw.F32, [sp.get_score(i) for i in range(n)])),
        ("tokenizer.ggml.token_type", gw.ARRAY, (gw.I32, types)),
        ("tokenizer.ggml.bos_token_id", gw.U32, sp.bos_id()),
        ("tokenizer.ggml.eos_token_id", gw.U32, sp.eos_id()),
        ("tokenizer.ggml.unknown_token_id", gw.U32, sp.unk_id()),
        ("tokenizer.ggml.add_bos_token", gw.BOOL, False),
        ("tokenizer.ggml.add_eos_token", gw.BOOL, False),
        ("tokenizer.ggml.add_space_prefix", gw.BOOL, prefix),
    ]
    kvs = [kv for kv in kvs if kv[0] not in drop]
    replaced = {k for k, _, _ in extra}
    return [kv for kv in kvs if kv[0] not in replaced] + list(extra)


def write_gguf(path, kvs):
    blob, _ = gw.build_gguf(kvs, [])
    with open(path, "wb") as f:
        f.write(blob)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", help="unused")
    args = ap.parse_args()
    exe = args.bin
    t = bc_testlib.Tally()
    tmp = tempfile.mkdtemp(prefix="bc_gguf_tok_")
    try:
        with open(CORPUS, encoding="utf-8") as f:
            lines = f.read().split("\n")
        corpus = "\n".join(lines).encode("utf-8")

        # A directory with tiny_bpe.model (the gen_rope fixture's shape, written here).
        fx_spec = bc_testlib.gen_fixtures._fixture(
            "tok_rope", "baichuan2-7b", "f32", "st", n_embd=32, n_head=4, n_ff=88, n_layer=1,
            vocab=bc_testlib.gen_fixtures.TINY_VOCAB, extra={"norm_head": True},
            tokenizer=bc_testlib.gen_fixtures.TINY_TOKENIZER)
        fx = bc_testlib.gen_fixtures.write_fixture(fx_spec, tmp)

        sources = []
        for name, d in (("tiny_bpe", fx), ("default model", DEFAULT)):
            out = os.path.join(tmp, name.replace(" ", "_") + ".gguf")
            rc, _, err = run([exe, "quantize", d, out, "--type", "f32" if d == fx else "q8_0"])
            if t.check("quantize %s" % name, rc == 0, err):
                sources.append(("quantize GGUF (%s)" % name, out, os.path.join(d, "tokenizer.model")))
        for name, model in (("tiny_bpe", TINY), ("default model", os.path.join(DEFAULT, "tokenizer.model"))):
            sp = sentencepiece.SentencePieceProcessor(model_file=model)
            out = os.path.join(tmp, "vocab_" + name.replace(" ", "_") + ".gguf")
            write_gguf(out, vocab_kvs(sp, add_dummy_prefix(model), piece_types(model)))
            sources.append(("converter-style GGUF (%s)" % name, out, model))

        for label, gguf, model in sources:
            sp = sentencepiece.SentencePieceProcessor(model_file=model)
            rc, out, err = run([exe, "tokenize", "-m", gguf, "--lines"], corpus)
            if not t.check("%s: tokenize runs" % label, rc == 0, err):
                continue
            got = out.split("\n")
            bad = [i for i, line in enumerate(lines)
                   if i >= len(got) or got[i].split() != [str(x) for x in sp.encode(line)]]
            t.check("%s: %d corpus lines give SentencePiece's ids" % (label, len(lines)), not bad,
                    "first differing line %s" % (bad[:1]))
            ids = sp.encode("\n".join(lines[:40]))
            rc, out, err = run([exe, "detokenize", "-m", gguf], " ".join(map(str, ids)).encode())
            t.check("%s: decode gives SentencePiece's text" % label,
                    rc == 0 and out == sp.decode(ids), err)

        # Chat role ids: from generation_config.json via baichuan.* keys, else Baichuan's.
        conv = json.dumps([{"role": "user", "content": "hi"}]).encode()
        rc, out, err = run([exe, "chat-template", "-m", os.path.join(tmp, "default_model.gguf")], conv)
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(DEFAULT, "tokenizer.model"))
        with open(os.path.join(DEFAULT, "generation_config.json")) as f:
            gen = json.load(f)
        want = [gen["user_token_id"]] + sp.encode("hi") + [gen["assistant_token_id"]]
        t.check("quantized default model: chat ids from its generation_config.json", rc == 0 and
                out.split() == [str(x) for x in want], "rc %d out %r err %r" % (rc, out, err))
        rc, out, err = run([exe, "chat-template", "-m", os.path.join(tmp, "vocab_tiny_bpe.gguf")], conv)
        sp = sentencepiece.SentencePieceProcessor(model_file=TINY)
        want = [195] + sp.encode("hi") + [196]
        t.check("GGUF without baichuan.* chat keys: roles 195/196", rc == 0 and out.split() == [str(x) for x in want],
                "rc %d out %r err %r" % (rc, out, err))

        # Bad metadata.
        sp = sentencepiece.SentencePieceProcessor(model_file=TINY)
        n = sp.get_piece_size()
        cases = [
            ("scores count", [("tokenizer.ggml.scores", gw.ARRAY, (gw.F32, [0.0] * (n - 1)))], (),
             ["tokenizer.ggml.scores", str(n - 1)]),
            ("token_type count", [("tokenizer.ggml.token_type", gw.ARRAY, (gw.I32, [1] * (n + 1)))], (),
             ["tokenizer.ggml.token_type", str(n + 1)]),
            ("no tokens", [], ("tokenizer.ggml.tokens",), ["no tokenizer.ggml.tokens"]),
            ("no model", [], ("tokenizer.ggml.model",), ["no tokenizer.ggml.model"]),
            ("tokens not strings", [("tokenizer.ggml.tokens", gw.ARRAY, (gw.I32, list(range(n))))], (),
             ["tokenizer.ggml.tokens", "array of"]),
            ("scores as a scalar", [("tokenizer.ggml.scores", gw.F32, 0.0)], (),
             ["tokenizer.ggml.scores", "not an array"]),
            ("token type 9", [("tokenizer.ggml.token_type", gw.ARRAY, (gw.I32, [1] * (n - 1) + [9]))], (),
             ["tokenizer.ggml.token_type", "is 9"]),
            ("gpt2 model", [("tokenizer.ggml.model", gw.STRING, "gpt2")], (), ["'gpt2'"]),
            ("bos id out of range", [("tokenizer.ggml.bos_token_id", gw.U32, n + 5)], (),
             ["tokenizer.ggml.bos_token_id", str(n + 5)]),
            ("add_bos_token not a bool", [("tokenizer.ggml.add_bos_token", gw.STRING, "yes")], (),
             ["tokenizer.ggml.add_bos_token"]),
        ]
        for name, extra, drop, needles in cases:
            path = os.path.join(tmp, "bad.gguf")
            write_gguf(path, vocab_kvs(sp, True, piece_types(TINY), extra, drop))
            rc, out, err = run([exe, "tokenize", "-m", path], b"hello")
            lines_err = err.strip().split("\n")
            ok = rc == 1 and len(lines_err) == 1 and path in lines_err[0] and all(s in lines_err[0] for s in needles)
            t.check("bad GGUF vocabulary: %s -> one-line error" % name, ok, "rc %d stderr %r" % (rc, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
