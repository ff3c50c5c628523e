#!/usr/bin/python3
"""The tokenizer against SentencePiece itself.

Trains several BPE models with Debian's sentencepiece (Baichuan-like,
LLaMA-like, NFKC with user-defined symbols, user-defined symbols with
multi-space and newline pieces, whitespace as suffix, no byte fallback),
derives more from them by rewriting the protobuf (tied scores, unused
pieces, all scores equal), and checks on a broad corpus (tests/data plus the
project's own sources, random text, very long lines) that:

  - `baichuan tokenize` gives exactly SentencePiece's ids, line by line and
    for whole multi-line texts, with and without --bos/--eos;
  - `baichuan detokenize` gives exactly SentencePiece's decode, of the ids
    of every line and of random id sequences (byte pieces that do not form
    UTF-8, control and unknown pieces included), and decode(encode(x)) == x
    where the model is lossless;
  - the streaming detokenizer equals the whole decode and never returns part
    of a character (tests/tools/tok_stream_check);
  - models SentencePiece BPE does not cover, and broken files, are refused
    with one clear error line.
"""
import argparse
import glob
import hashlib
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import time
import unicodedata

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spm_proto as P  # noqa: E402
import bc_testlib  # noqa: E402  (tests/python is on sys.path: the script's own directory)

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))



def run(args, data=b"", timeout=600):
    return subprocess.run(args, input=data, capture_output=True, timeout=timeout)


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------

def source_lines():
    """The project's own text files: code with indentation and tabs."""
    files = []
    for pattern in ("src/**/*.c", "src/**/*.h", "include/*.h", "cli/*.c", "cli/*.h", "tests/unit/*.c",
                    "tests/python/*.py", "tools/*.py", "README.md", "Makefile", "CMakeLists.txt"):
        files += sorted(glob.glob(os.path.join(SRC, pattern), recursive=True))
    lines = []
    for f in files:
        try:
            lines += open(f, encoding="utf-8").read().split("\n")
        except UnicodeDecodeError:
            pass
    return lines


def alphabet(lines):
    chars = sorted(set("".join(lines)))
    extra = [" ", "\t", "\u3000", "\u00a0", "\u2581", "\ufffd", "\u200d", "\ufe0f", "\u0301", "\x00", "\x01",
             "\x1f", "\x7f", "\r", "<", ">", "s", "/", "0", "x"]
    ranges = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
              (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x2190, 0x22ff),
              (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xe0ff), (0xff00, 0xffef),
              (0x1f300, 0x1faff), (0x20000, 0x2a6df), (0x30000, 0x3134f), (0xf0000, 0xf00ff), (0x10fff0, 0x10ffff)]
    return chars + extra, ranges


def random_text(rng, chars, ranges, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            out.append(rng.choice(chars))
        elif r < 0.75:
            out.append(" " * rng.randint(1, 6))
        elif r < 0.8:
            out.append("\t")
        else:
            lo, hi = rng.choice(ranges)
            out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def build_inputs(data_dir):
    corpus = open(os.path.join(data_dir, "tok_corpus.txt"), encoding="utf-8").read().split("\n")
    src = source_lines()
    lines = corpus + src
    rng = random.Random(20240906)
    chars, ranges = alphabet(corpus)
    fuzz = [random_text(rng, chars, ranges, rng.randint(1, 120)) for _ in range(3000)]
    fuzz = [s.replace("\n", " ") for s in fuzz]
    cjk = [c for c in chars if "\u4e00" <= c <= "\u9fff"]
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"
    long_lines = [
        " ".join(corpus),
        "".join(rng.choice(cjk) for _ in range(40000)),
        " " * 20000,
        "\t" * 5000 + "x",
        "1234567890" * 3000,
        family * 3000,
        random_text(rng, chars, ranges, 60000).replace("\n", " "),
        "a" * 50000,
        "ab" * 25000,
        "\u2581" * 3000,
        ("<s>" + "</s>" + "<reserved_5>") * 2000,
    ]
    texts = [  # whole inputs, newlines included
        open(os.path.join(data_dir, "tok_corpus.txt"), encoding="utf-8").read(),
        "line one\nline two\n\n  indented\n\ttabbed\n",
        "a\r\nb\r\n",
        "\n\n\n",
        "    def f():\n        return 1\n",
        "".join(random_text(rng, chars, ranges, 300) + "\n" for _ in range(20)),
    ]
    return lines, fuzz, long_lines, texts


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

BAICHUAN_LIKE = dict(model_type="bpe", normalization_rule_name="identity", add_dummy_prefix="false",
                     remove_extra_whitespaces="false", byte_fallback="true", split_digits="true",
                     allow_whitespace_only_pieces="true", character_coverage="0.9995",
                     max_sentencepiece_length="16", control_symbols="<reserved_106>,<reserved_107>")


# Where trained models and SentencePiece's answers are kept between runs and
# build trees (--cache).
CACHE = None


def train(work, name, training_file, vocab_size, **flags):
    args = [f"--vocab_size={vocab_size}", "--max_sentence_length=100000", "--num_threads=2", "--minloglevel=2"]
    args += [f"--{k}={v}" for k, v in flags.items()]
    try:
        return bc_testlib.spm_train(training_file, os.path.join(work, name), args, cache=CACHE)
    except RuntimeError as e:
        raise RuntimeError(f"{name}: {e}")


def derive(src, dst, fn):
    m = P.Model.load(src)
    fn(m)
    m.save(dst)
    return dst


def tie_scores(m):
    """Normal pieces in groups of a hundred share one score."""
    k = 0
    for p in m.pieces:
        if p.type == P.NORMAL:
            p.score = float(-(k // 100))
            k += 1


def reversed_scores(m):
    """The merge order turned upside down: the rarest merges first."""
    for p in m.pieces:
        if p.type == P.NORMAL:
            p.score = -p.score


def random_scores(m):
    """Scores drawn from three values: many ties, in no trained order."""
    rng = random.Random(11)
    for p in m.pieces:
        if p.type in (P.NORMAL, P.USER_DEFINED):
            p.score = rng.choice([-1.0, -2.0, -3.0])


def equal_scores(m):
    for p in m.pieces:
        if p.type == P.NORMAL:
            p.score = -1.0


def some_unused(m):
    """Every fifth multi-character normal piece becomes unused."""
    k = 0
    for p in m.pieces:
        if p.type == P.NORMAL and len(p.piece) > 1:
            if k % 5 == 0:
                p.type = P.UNUSED
            k += 1


def set_normalizer(m, **flags):
    numbers = dict(add_dummy_prefix=3, remove_extra_whitespaces=4, escape_whitespaces=5)
    spec = m.spec(3)
    for k, v in flags.items():
        P.set_field(spec, numbers[k], P.VARINT, v)
    m.set_spec(3, spec)


def make_models(work, lines):
    train_file = os.path.join(work, "train.txt")
    with open(train_file, "w", encoding="utf-8") as f:
        f.write("\n".join(l for l in lines if l.strip()) + "\n")
    models = {}
    models["baichuan"] = train(work, "baichuan", train_file, 4000, **BAICHUAN_LIKE)
    models["llama"] = train(work, "llama", train_file, 3000, model_type="bpe", normalization_rule_name="identity",
                            add_dummy_prefix="true", remove_extra_whitespaces="false", byte_fallback="true",
                            split_digits="true", character_coverage="0.9995")
    models["nfkc_user"] = train(work, "nfkc_user", train_file, 2500, model_type="bpe", character_coverage="0.995",
                                user_defined_symbols="▁▁▁▁,abc,中国,<reserved_5>,hello▁world")
    models["user_ws"] = train(work, "user_ws", train_file, 3000, model_type="bpe",
                              normalization_rule_name="identity", add_dummy_prefix="false",
                              remove_extra_whitespaces="false", byte_fallback="true", split_digits="true",
                              allow_whitespace_only_pieces="true",
                              user_defined_symbols="\n,\t,    ,▁▁▁▁,▁▁,\n\n,<reserved_5>,<s>x,ing,中国,𪚥,return")
    models["suffix"] = train(work, "suffix", train_file, 2000, model_type="bpe",
                             normalization_rule_name="nmt_nfkc_cf", treat_whitespace_as_suffix="true",
                             byte_fallback="true")
    models["nobyte"] = train(work, "nobyte", train_file, 1500, model_type="bpe",
                             normalization_rule_name="identity", add_dummy_prefix="false",
                             remove_extra_whitespaces="false", character_coverage="0.98")
    models["single_char_control"] = train(work, "scc", train_file, 2000, model_type="bpe",
                                          normalization_rule_name="identity", byte_fallback="true",
                                          control_symbols="X,☃")
    b = models["baichuan"]
    models["ties"] = derive(b, os.path.join(work, "ties.model"), tie_scores)
    models["equal_scores"] = derive(b, os.path.join(work, "equal.model"), equal_scores)
    models["reversed"] = derive(b, os.path.join(work, "reversed.model"), reversed_scores)
    models["random_scores"] = derive(models["user_ws"], os.path.join(work, "random_scores.model"), random_scores)
    models["unused"] = derive(b, os.path.join(work, "unused.model"), some_unused)
    models["noescape"] = derive(models["llama"], os.path.join(work, "noescape.model"),
                                lambda m: set_normalizer(m, remove_extra_whitespaces=1, escape_whitespaces=0))
    models["remove_ws"] = derive(b, os.path.join(work, "remove_ws.model"),
                                 lambda m: set_normalizer(m, remove_extra_whitespaces=1, add_dummy_prefix=1))
    models["unused_ties"] = derive(models["user_ws"], os.path.join(work, "unused_ties.model"),
                                   lambda m: (tie_scores(m), some_unused(m)))
    return models


# Models whose decode(encode(x)) is x exactly.
LOSSLESS = {"baichuan", "llama", "user_ws", "ties", "equal_scores", "reversed", "random_scores", "unused",
            "unused_ties"}


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------

def sp_encode(sp, text, **kw):
    return sp.encode(text, **kw)


def fails_in_sentencepiece(name, sp, line):
    """SentencePiece gives up (returns nothing) on text where a control
    symbol is a single character; the engine encodes it as unknown."""
    return name == "single_char_control" and ("X" in line or "☃" in line)


_DIGESTS = {}


def digest_of(inputs):
    """sha256 of a list of lines or of id lists, once per list (the line
    sets are asked about for every model)."""
    known = _DIGESTS.get(id(inputs))
    if known is None or known[0] is not inputs:
        known = (inputs, hashlib.sha256(repr(inputs).encode("utf-8", "surrogatepass")).hexdigest())
        _DIGESTS[id(inputs)] = known
    return known[1]


def answers(model, question, inputs, compute):
    """compute(), SentencePiece's answers to a question (what, over inputs)
    about a model: with --cache, kept there under a hash of sentencepiece's
    version, the model's bytes, the question and the inputs, so that the
    sanitizer tree (and a rerun) compares with the answers the release tree
    computed instead of computing them again."""
    if CACHE is None:
        return compute()
    h = hashlib.sha256()
    with open(model, "rb") as f:
        h.update(f.read())
    h.update(("\0%s\0%s\0%s" % (spm.__version__, question, digest_of(inputs))).encode())
    path = os.path.join(CACHE, "spm-answers", h.hexdigest() + ".pickle")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    value = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return value


def compare_lines(c, args, name, model, sp, lines, label):
    data = ("\n".join(lines) + "\n").encode("utf-8")
    t0 = time.time()
    r = run([args.bin, "tokenize", "-m", model, "--lines"], data)
    elapsed = time.time() - t0
    if not c.check(f"{name}: tokenize --lines {label} runs", r.returncode == 0, r.stderr.decode()[-500:]):
        return None
    out = r.stdout.decode().split("\n")
    if not c.check(f"{name}: {label}: one output line per input line", len(out) == len(lines) + 1 and out[-1] == "",
                   f"{len(out)} vs {len(lines)}"):
        return None
    expected = answers(model, "encode", lines,
                       lambda: [None if fails_in_sentencepiece(name, sp, line) else sp_encode(sp, line)
                                for line in lines])
    bad, skipped, all_ids = [], 0, []
    for line, o, exp in zip(lines, out, expected):
        got = [int(x) for x in o.split()]
        all_ids.append(got)
        if exp is None:  # fails_in_sentencepiece
            skipped += 1
            ctl = {i for i in range(sp.get_piece_size()) if sp.is_control(i)}
            if any(i in ctl for i in got):
                bad.append((line, "control id produced from text", got))
            continue
        if got != exp:
            bad.append((line, exp, got))
    detail = ""
    for line, exp, got in bad[:3]:
        detail += f"\n      line {line[:60]!r}\n      spm  {str(exp)[:200]}\n      ours {str(got)[:200]}"
    note = f" ({skipped} lines SentencePiece rejects)" if skipped else ""
    c.check(f"{name}: {label}: {len(lines) - len(bad)}/{len(lines)} lines identical to SentencePiece{note}"
            f" [{elapsed:.2f}s]", not bad, detail)
    return all_ids


def compare_texts(c, args, name, model, sp, texts):
    bad = 0
    texts = [t for t in texts if not fails_in_sentencepiece(name, sp, t)]
    for t in texts:
        r = run([args.bin, "tokenize", "-m", model], t.encode("utf-8"))
        got = [int(x) for x in r.stdout.split()]
        if r.returncode != 0 or got != sp_encode(sp, t) or not r.stdout.endswith(b"\n"):
            bad += 1
    c.check(f"{name}: {len(texts)} whole multi-line texts identical", bad == 0, f"{bad} differ")


def compare_bos_eos(c, args, name, model, sp, lines):
    sample = [l for l in lines if l][:50]
    data = ("\n".join(sample) + "\n").encode()
    for flags, kw in ((["--bos"], dict(add_bos=True)), (["--eos"], dict(add_eos=True)),
                      (["--bos", "--eos"], dict(add_bos=True, add_eos=True))):
        r = run([args.bin, "tokenize", "-m", model, "--lines", *flags], data)
        got = [[int(x) for x in o.split()] for o in r.stdout.decode().split("\n")[:-1]]
        exp = [sp_encode(sp, l, **kw) for l in sample]
        c.check(f"{name}: tokenize {' '.join(flags)}", r.returncode == 0 and got == exp)


def compare_decode(c, args, name, model, sp, id_lines, lines, label):
    data = "\n".join(" ".join(map(str, ids)) for ids in id_lines) + "\n"
    r = run([args.bin, "detokenize", "-m", model, "--lines"], data.encode())
    if not c.check(f"{name}: detokenize --lines {label} runs", r.returncode == 0, r.stderr.decode()[-500:]):
        return
    # The decoded text may itself hold newlines: rebuild it per input line
    # from SentencePiece's decode and compare the whole output.
    exp = answers(model, "decode", id_lines,
                  lambda: "".join(sp.decode(ids) + "\n" for ids in id_lines).encode("utf-8"))
    ok = r.stdout == exp
    detail = ""
    if not ok:
        for ids in id_lines:
            one = run([args.bin, "detokenize", "-m", model, "--lines"], (" ".join(map(str, ids)) + "\n").encode())
            if one.stdout != (sp.decode(ids) + "\n").encode():
                detail = f"\n      ids {ids[:30]}\n      spm  {sp.decode(ids)[:80]!r}\n      ours {one.stdout[:80]!r}"
                break
    c.check(f"{name}: {label}: detokenize identical to SentencePiece's decode ({len(id_lines)} sequences)", ok,
            detail)
    if lines is not None and name in LOSSLESS:
        # U+2581 in the text itself decodes to a space (SentencePiece's
        # rule), so lines holding it cannot come back unchanged.
        got = r.stdout.decode("utf-8").split("\n")
        pairs = [(l, g) for l, g in zip(lines, got) if "\u2581" not in l]
        bad = [(l, g) for l, g in pairs if l != g]
        c.check(f"{name}: {label}: decode(encode(x)) == x for {len(pairs) - len(bad)}/{len(pairs)} lines"
                f" (those without U+2581)", not bad, f"{bad[:2]!r}"[:300])


def random_id_lines(rng, sp, n):
    v = sp.get_piece_size()
    byte_ids = [i for i in range(v) if sp.is_byte(i)]
    special = [i for i in range(v) if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)]
    out = []
    for _ in range(n):
        ids = []
        for _ in range(rng.randint(0, 40)):
            r = rng.random()
            if byte_ids and r < 0.35:
                ids.append(rng.choice(byte_ids))
            elif special and r < 0.5:
                ids.append(rng.choice(special))
            else:
                ids.append(rng.randrange(v))
        out.append(ids)
    if byte_ids:  # byte sequences of every UTF-8 shape, valid and not
        b = {int(sp.id_to_piece(i)[3:5], 16): i for i in byte_ids}
        for seq in (b"\xe4\xb8\xad", b"\xe4\xb8", b"\xe4", b"\xf0\x9f\x98\x80", b"\xf0\x9f\x98", b"\xed\xa0\x80",
                    b"\xc0\xaf", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80", b"\x80\x80",
                    b"\xef\xbf\xbd", b"a\xe4b", b"\xe4\xb8\xe4\xb8\xad", b"\xc3", b"\xc3\xa9\xc3"):
            out.append([b[x] for x in seq])
            out.append([b[x] for x in seq] + [rng.randrange(v)] + [b[x] for x in seq])
    return out


def stream_check(c, args, name, model, id_lines, work):
    path = os.path.join(work, f"{name}.ids")
    with open(path, "w") as f:
        for ids in id_lines:
            f.write(" ".join(map(str, ids)) + "\n")
    r = run([args.stream_check, model, path])
    last = r.stdout.decode().strip().split("\n")[-1] if r.stdout else ""
    c.check(f"{name}: streaming detokenizer == whole decode, complete UTF-8 chunks: {last}", r.returncode == 0,
            r.stdout.decode()[-1000:] + r.stderr.decode()[-500:])


def stream_cli(c, args, name, model, sp, id_lines):
    """detokenize without --lines streams one long sequence."""
    ids = [i for line in id_lines for i in line]
    r = run([args.bin, "detokenize", "-m", model], " ".join(map(str, ids)).encode())
    c.check(f"{name}: detokenize (streaming) of {len(ids)} ids identical to SentencePiece",
            r.returncode == 0 and r.stdout == sp.decode(ids).encode("utf-8"), r.stderr.decode()[-300:])


def check_invalid_utf8(c, args, name, model, work):
    """Malformed UTF-8 against spm_encode (Python strings cannot hold it)."""
    data = (b"a\xffb\xe4\xb8c\n\xc0\xafok\xed\xa0\x80\n\xf0\x9f\x98\n\xf4\x90\x80\x80x\n\x80\x80\x80\n"
            b"\xe4\xb8\xad\xe6\x96\x87\xe4\n \xfe \xff  \n\xef\xbf\xbd\n")
    path = os.path.join(work, "invalid_utf8.txt")
    with open(path, "wb") as f:
        f.write(data)
    exp = run(["spm_encode", f"--model={model}", "--output_format=id", f"--input={path}"])
    got = run([args.bin, "tokenize", "-m", model, "--lines"], data)
    c.check(f"{name}: malformed UTF-8 lines identical to spm_encode", exp.returncode == 0 and got.returncode == 0
            and got.stdout == exp.stdout, f"\n      spm  {exp.stdout[:200]!r}\n      ours {got.stdout[:200]!r}")


# ---------------------------------------------------------------------------
# Refusals and the CLI contract
# ---------------------------------------------------------------------------

def one_error_line(r):
    err = r.stderr.decode(errors="replace")
    return r.returncode == 1 and err.startswith("baichuan: error: ") and err.count("\n") == 1 and r.stdout == b""


def check_errors(c, args, work, models, train_file):
    uni = train(work, "unigram", train_file, 2000, model_type="unigram", character_coverage="0.98")
    r = run([args.bin, "tokenize", "-m", uni], b"hello")
    c.check("unigram model refused (model_type named)", one_error_line(r) and b"model_type is unigram" in r.stderr,
            r.stderr.decode())
    r = run([args.bin, "tokenize", "-m", os.path.join(work, "no-such.model")], b"x")
    c.check("missing file: one error line", one_error_line(r) and b"no-such.model" in r.stderr, r.stderr.decode())
    empty_dir = os.path.join(work, "empty_dir")
    os.makedirs(empty_dir, exist_ok=True)
    r = run([args.bin, "tokenize", "-m", empty_dir], b"x")
    c.check("directory without tokenizer.model", one_error_line(r) and b"tokenizer.model" in r.stderr,
            r.stderr.decode())
    blob = open(models["baichuan"], "rb").read()
    for cut in (1, 7, len(blob) // 3, len(blob) // 2, len(blob) - 1):
        path = os.path.join(work, f"cut{cut}.model")
        open(path, "wb").write(blob[:cut])
        r = run([args.bin, "tokenize", "-m", path], b"x")
        c.check(f"truncated to {cut} bytes: one error line naming the file",
                one_error_line(r) and path.encode() in r.stderr, r.stderr.decode())
    path = os.path.join(work, "garbage.model")
    open(path, "wb").write(b"\xff" * 64)
    r = run([args.bin, "tokenize", "-m", path], b"x")
    c.check("garbage file refused", one_error_line(r) and b"byte 0" in r.stderr, r.stderr.decode())
    # A denormalizer with rules is not supported: refused, not ignored.
    m = P.Model.load(models["nfkc_user"])
    norm = P.get(m.other, 3)
    m.other.append([5, P.LEN, norm])
    path = os.path.join(work, "denorm.model")
    m.save(path)
    r = run([args.bin, "tokenize", "-m", path], b"x")
    c.check("denormalizer charsmap refused", one_error_line(r) and b"denormalizer" in r.stderr, r.stderr.decode())
    # A broken charsmap: refused with the field named.
    m = P.Model.load(models["nfkc_user"])
    spec = m.spec(3)
    P.set_field(spec, 2, P.LEN, b"\xff\xff\x00\x00abc")
    m.set_spec(3, spec)
    path = os.path.join(work, "badcharsmap.model")
    m.save(path)
    r = run([args.bin, "tokenize", "-m", path], b"x")
    c.check("broken precompiled_charsmap refused", one_error_line(r) and b"precompiled_charsmap" in r.stderr,
            r.stderr.decode())

    b = models["baichuan"]
    for cmd in ("tokenize", "detokenize", "chat-template"):
        r = run([args.bin, cmd, "--help"])
        c.check(f"{cmd} --help", r.returncode == 0 and r.stdout.startswith(f"usage: baichuan {cmd} -m MODEL".encode()))
        r = run([args.bin, cmd, "-m", b, "--frobnicate"])
        c.check(f"{cmd} unknown option", one_error_line(r) and b"--frobnicate" in r.stderr, r.stderr.decode())
        r = run([args.bin, cmd, "-m"])
        c.check(f"{cmd} -m without value", one_error_line(r) and b"needs a value" in r.stderr, r.stderr.decode())
        r = run([args.bin, cmd])
        c.check(f"{cmd} without -m", one_error_line(r) and b"-m" in r.stderr, r.stderr.decode())
    for bad in (b"1 2 abc", b"1 -1", b"99999999", b"1 2\n3 4000"):
        r = run([args.bin, "detokenize", "-m", b], bad)
        c.check(f"detokenize rejects {bad!r}", one_error_line(r), r.stderr.decode())
    r = run([args.bin, "tokenize", "-m", b, "--lines"], b"")
    c.check("tokenize --lines of empty input prints nothing", r.returncode == 0 and r.stdout == b"")
    r = run([args.bin, "tokenize", "-m", b], b"")
    c.check("tokenize of empty input prints an empty line", r.returncode == 0 and r.stdout == b"\n")
    r = run([args.bin, "tokenize", "-m", b, "--lines"], b"a\n\nb")
    sp = spm.SentencePieceProcessor(model_file=b)
    exp = f"{' '.join(map(str, sp.encode('a')))}\n\n{' '.join(map(str, sp.encode('b')))}\n".encode()
    c.check("tokenize --lines: empty line gives empty line, last line without newline", r.stdout == exp, r.stdout)


def check_directory(c, args, work, models):
    """A model directory: tokenizer_config.json add_bos_token/add_eos_token."""
    d = os.path.join(work, "model_dir")
    os.makedirs(d, exist_ok=True)
    shutil.copy(models["baichuan"], os.path.join(d, "tokenizer.model"))
    sp = spm.SentencePieceProcessor(model_file=models["baichuan"])
    text = "你好, world"
    r = run([args.bin, "tokenize", "-m", d], text.encode())
    c.check("directory without tokenizer_config.json: no BOS/EOS",
            [int(x) for x in r.stdout.split()] == sp.encode(text), r.stderr.decode())
    json.dump({"add_bos_token": False, "add_eos_token": False}, open(os.path.join(d, "tokenizer_config.json"), "w"))
    r = run([args.bin, "tokenize", "-m", d], text.encode())
    c.check("official tokenizer_config.json (false/false): no BOS/EOS",
            [int(x) for x in r.stdout.split()] == sp.encode(text))
    json.dump({"add_bos_token": True, "add_eos_token": True}, open(os.path.join(d, "tokenizer_config.json"), "w"))
    r = run([args.bin, "tokenize", "-m", d], text.encode())
    c.check("add_bos_token/add_eos_token true: BOS and EOS added",
            [int(x) for x in r.stdout.split()] == sp.encode(text, add_bos=True, add_eos=True))
    json.dump({"add_bos_token": "yes"}, open(os.path.join(d, "tokenizer_config.json"), "w"))
    r = run([args.bin, "tokenize", "-m", d], text.encode())
    c.check("tokenizer_config.json with a non-boolean flag refused", one_error_line(r) and b"add_bos_token" in r.stderr,
            r.stderr.decode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--stream-check", required=True)
    ap.add_argument("--data", default=os.path.join(SRC, "tests", "data"))
    ap.add_argument("--work", required=True)
    ap.add_argument("--fixtures")  # accepted for symmetry with the other tests
    ap.add_argument("--cache", help="keep trained SentencePiece models and their answers here (keyed by their inputs)")
    args = ap.parse_args()
    global CACHE
    CACHE = args.cache
    c = bc_testlib.Tally()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)

    lines, fuzz, long_lines, texts = build_inputs(args.data)
    lines = [l for l in lines if "\n" not in l]
    t0 = time.time()
    models = make_models(args.work, lines)
    print(f"trained {len(models)} models in {time.time() - t0:.1f}s", flush=True)
    rng = random.Random(7)
    total_lines = 0
    for name, model in models.items():
        sp = spm.SentencePieceProcessor(model_file=model)
        ids_corpus = compare_lines(c, args, name, model, sp, lines, "corpus+sources")
        ids_fuzz = compare_lines(c, args, name, model, sp, fuzz, "random text")
        ids_long = compare_lines(c, args, name, model, sp, long_lines, "very long lines")
        total_lines += len(lines) + len(fuzz) + len(long_lines)
        compare_texts(c, args, name, model, sp, texts)
        compare_bos_eos(c, args, name, model, sp, lines)
        if name == "single_char_control":
            continue  # SentencePiece has no ids to compare decoding with
        for label, ids, src in (("corpus+sources", ids_corpus, lines), ("random text", ids_fuzz, fuzz),
                                ("very long lines", ids_long, long_lines)):
            if ids is not None:
                compare_decode(c, args, name, model, sp, ids, src, label)
        rand_ids = random_id_lines(rng, sp, 1500)
        compare_decode(c, args, name, model, sp, rand_ids, None, "random ids")
        stream_check(c, args, name, model, (ids_corpus or []) + (ids_fuzz or []) + rand_ids, args.work)
        stream_cli(c, args, name, model, sp, rand_ids[:300])
        if any(sp.is_byte(i) for i in range(sp.get_piece_size())):
            check_invalid_utf8(c, args, name, model, args.work)
    check_invalid_utf8(c, args, "nobyte", models["nobyte"], args.work)
    check_invalid_utf8(c, args, "nfkc_user", models["nfkc_user"], args.work)
    check_errors(c, args, args.work, models, os.path.join(args.work, "train.txt"))
    check_directory(c, args, args.work, models)
    print(f"{total_lines} lines compared per direction over {len(models)} models")
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
