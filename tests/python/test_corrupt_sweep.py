#!/usr/bin/python3
"""test_corrupt_sweep.py - every input file format, broken at many places.

    test_corrupt_sweep.py --bin PATH_TO_baichuan --fixtures DIR [--time-limit S]

test_corrupt.py breaks checkpoints in chosen ways and checks what the message
says; this test sweeps. For each format the engine reads:

  safetensors   model.safetensors of a fixture directory   (baichuan info -m DIR)
  torch zip     pytorch_model.bin of a fixture directory   (baichuan info -m DIR)
  bitsandbytes  a 4bits-layout pytorch_model.bin (tools/make_bnb4.py; quant state lists)
  GPTQ          a GPTQ int4 model.safetensors (tools/make_gptq.py; I32 parts, desc_act)
  GGUF          tests/data/tiny.gguf                       (baichuan info -m FILE)
  SentencePiece tests/data/tiny_bpe.model                  (baichuan tokenize -m FILE)

it runs the command on copies of the good file:

  * truncated at every offset of the first 64 bytes and at ~40 offsets after;
  * with one byte flipped (x ^ 0xff) at ~60 places in the header region (the
    safetensors JSON header, the zip's local and central headers and the
    pickle, the GGUF metadata and tensor infos, the protobuf's first
    pieces) and at a few places after it;
  * with each 8-byte field at the start set to huge values (2^63-1, 2^64-1),
    where the format has size or count fields there.

A truncated or oversized file must be refused. A flipped byte may leave a
valid file (a changed weight, a different piece score): exit 0 is then
right. Either way the run must end within --time-limit seconds (default 1),
with exit status 0 or 1 (never a signal), and when it fails with exactly one
stderr line `baichuan: error: ...` that names the file; the sanitizers
(ASan, UBSan, LSan in the sanitizer tree) must print nothing.
Prints one line per format and kind, the slowest run, and `N passed, M failed`.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import Tally  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "Sanitizer")
ERROR_PREFIX = "baichuan: error: "

ST_FIXTURE = "b2_7b_f32_st"
BIN_FIXTURE = "b1_7b_bf16_bin"


def spread(lo, hi, n):
    """About n offsets spread over [lo, hi)."""
    if hi <= lo:
        return []
    step = max(1, (hi - lo) // n)
    return list(range(lo, hi, step))


class Format:
    """One file format: where the good file is, how to run the engine on a copy."""

    def __init__(self, name, good, header_end, run_args, in_dir=None, file_name=None, size_fields=()):
        self.name = name
        self.file_name = file_name      # the copy's name when it is not in a directory
        self.good = good                # the good file's bytes
        self.header_end = header_end    # where the header region ends
        self.run_args = run_args        # path of the broken file -> CLI arguments
        self.in_dir = in_dir            # the fixture directory the file lives in, or None
        self.size_fields = size_fields  # offsets of 8-byte little-endian sizes or counts


def safetensors_format(fixtures):
    d = os.path.join(fixtures, ST_FIXTURE)
    good = open(os.path.join(d, "model.safetensors"), "rb").read()
    header_end = 8 + struct.unpack_from("<Q", good, 0)[0]
    return Format("safetensors", good, header_end, lambda p: ["info", "-m", os.path.dirname(p)],
                  in_dir=(d, "model.safetensors"), size_fields=(0,))


def zip_header_end(path):
    """Where data.pkl's bytes end: the pickle and every header before it are
    the region flips target (the central directory, at the end, gets flips
    of its own). torch writes sizes in data descriptors, so they come from
    the central directory."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    with open(path, "rb") as fp:
        fp.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fp.read(4))
    return info.header_offset + 30 + name_len + extra_len + info.compress_size


def torch_format(fixtures):
    d = os.path.join(fixtures, BIN_FIXTURE)
    path = os.path.join(d, "pytorch_model.bin")
    good = open(path, "rb").read()
    return Format("torch zip", good, zip_header_end(path), lambda p: ["info", "-m", os.path.dirname(p)],
                  in_dir=(d, "pytorch_model.bin"))


def bnb4_format(fixtures):
    """A bitsandbytes 4-bit checkpoint (tools/make_bnb4.py): the pickle holds
    quant state lists besides tensors."""
    import make_bnb4
    root = os.path.join(fixtures, "bnb4")
    os.makedirs(root, exist_ok=True)
    d, ref = make_bnb4.write_pair(make_bnb4.FIXTURES["bnb_7b"], root, "nf4", True, 64, "sweep")
    shutil.rmtree(ref)
    path = os.path.join(d, "pytorch_model.bin")
    return Format("bitsandbytes torch zip", open(path, "rb").read(), zip_header_end(path),
                  lambda p: ["info", "-m", os.path.dirname(p)], in_dir=(d, "pytorch_model.bin"))


def gptq_format(fixtures):
    """A GPTQ int4 checkpoint (tools/make_gptq.py, desc_act): I32 and F16
    tensors the converter reads."""
    import make_gptq
    root = os.path.join(fixtures, "gptq_sweep")
    os.makedirs(root, exist_ok=True)
    d, ref = make_gptq.write_case(make_gptq.CASES["gptq_b2_13b_act"], root)
    shutil.rmtree(ref)
    good = open(os.path.join(d, "model.safetensors"), "rb").read()
    return Format("GPTQ safetensors", good, 8 + struct.unpack_from("<Q", good, 0)[0],
                  lambda p: ["info", "-m", os.path.dirname(p)], in_dir=(d, "model.safetensors"), size_fields=(0,))


def gguf_format():
    good = open(os.path.join(DATA, "tiny.gguf"), "rb").read()
    # tiny.gguf's metadata and tensor infos take most of its first 2 KiB.
    header_end = min(len(good), 2048)
    return Format("GGUF", good, header_end, lambda p: ["info", "-m", p], file_name="case.gguf", size_fields=(8, 16))


def spm_format():
    good = open(os.path.join(DATA, "tiny_bpe.model"), "rb").read()
    return Format("tokenizer.model", good, min(len(good), 1024), lambda p: ["tokenize", "-m", p],
                  file_name="tokenizer.model")


def variants(f):
    """(kind, label, cut, patch, must_fail) for one format: the file is the
    good one cut to its first `cut` bytes (None: whole), with `patch`
    (offset, bytes) written over it (None: none)."""
    n = len(f.good)
    for cut in sorted(set(list(range(0, min(64, n))) + spread(64, n, 40))):
        yield "truncated", "at %d of %d" % (cut, n), cut, None, True
    flips = sorted(set(spread(0, f.header_end, 60) + spread(f.header_end, n, 8) +
                       (spread(max(0, n - 200), n, 20) if f.name.endswith("torch zip") else [])))
    for pos in flips:
        yield "flipped", "byte %d" % pos, None, (pos, bytes([f.good[pos] ^ 0xFF])), False
    for off in f.size_fields:
        for value in ((1 << 63) - 1, (1 << 64) - 1, n * 2):
            yield "huge size", "field at %d = %d" % (off, value), None, (off, struct.pack("<Q", value)), True


def materialize(f, work):
    """Where the engine will read the file: its path (the directory's other
    files are copied beside it)."""
    if f.in_dir is None:
        return os.path.join(work, f.file_name)
    src_dir, file_name = f.in_dir
    d = os.path.join(work, "model")
    if not os.path.isdir(d):  # the directory's other files, once
        os.makedirs(d)
        for name in os.listdir(src_dir):
            if name != file_name:
                shutil.copy(os.path.join(src_dir, name), d)
    return os.path.join(d, file_name)


class Copy:
    """The copy the engine reads, holding one variant at a time. Going from
    one variant to the next writes only the bytes that differ (the files are
    up to 32 MB and there are about 1000 variants); the bytes on disk are
    those of the good file cut and patched as the variant says."""

    def __init__(self, f, path):
        self.good, self.path = f.good, path
        with open(path, "wb") as fp:
            fp.write(self.good)
        self.length = len(self.good)
        self.patched = None  # (offset, length) written over the good bytes

    def show(self, cut, patch):
        with open(self.path, "r+b") as fp:
            if self.patched is not None:
                off, n = self.patched
                fp.seek(off)
                fp.write(self.good[off:off + n])
                self.patched = None
            want = len(self.good) if cut is None else cut
            if want < self.length:
                fp.truncate(want)
            elif want > self.length:
                fp.seek(self.length)
                fp.write(self.good[self.length:want])
            self.length = want
            if patch is not None:
                fp.seek(patch[0])
                fp.write(patch[1])
                self.patched = (patch[0], len(patch[1]))


def run(binary, args, limit):
    t0 = time.monotonic()
    try:
        p = subprocess.run([binary] + args, input=b"x", capture_output=True, timeout=max(10.0, 10 * limit))
        rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, err = None, ""
    return rc, err, time.monotonic() - t0


def problems_of(rc, err, dt, path, must_fail, limit):
    out = []
    if rc is None:
        return ["did not finish"]
    if dt > limit:
        out.append("took %.2f s" % dt)
    if rc not in (0, 1):
        out.append("exit status %d" % rc)
    if must_fail and rc == 0:
        out.append("accepted")
    if any(w in err for w in SANITIZER_WORDS):
        out.append("sanitizer report")
    if rc == 1:
        line = err[:-1] if err.endswith("\n") else err
        if "\n" in line:
            out.append("%d stderr lines" % (line.count("\n") + 1))
        if not line.startswith(ERROR_PREFIX):
            out.append("stderr does not start with %r" % ERROR_PREFIX)
        if os.path.basename(path) not in line:
            out.append("message does not name %s" % os.path.basename(path))
    return out


def sweep(t, binary, f, work, limit):
    """One line per kind of damage; returns the slowest run's seconds."""
    # The good file first: a sweep over a file that never loaded proves nothing.
    path = materialize(f, work)
    copy = Copy(f, path)
    rc, err, dt = run(binary, f.run_args(path), limit)
    t.record(rc == 0, "%s: the good file is accepted (exit %s in %.2f s) %s" % (f.name, rc, dt, err.strip()[:200]))
    slowest = dt
    by_kind = {}
    for kind, label, cut, patch, must_fail in variants(f):
        copy.show(cut, patch)
        rc, err, dt = run(binary, f.run_args(path), limit)
        slowest = max(slowest, dt)
        s = by_kind.setdefault(kind, {"n": 0, "refused": 0, "bad": []})
        s["n"] += 1
        s["refused"] += rc == 1
        problems = problems_of(rc, err, dt, path, must_fail, limit)
        if problems:
            s["bad"].append("%s: %s: %s" % (label, "; ".join(problems), err.strip()[:160]))
    for kind, s in by_kind.items():
        ok = not s["bad"]
        t.record(ok, "%s %s: %d files, %d refused with one line, the rest accepted%s"
                 % (f.name, kind, s["n"], s["refused"], "" if ok else "; BAD: " + " | ".join(s["bad"][:4])))
    return slowest


def main(argv=None):
    ap = argparse.ArgumentParser(description="every file format, broken at many places")
    ap.add_argument("--bin", required=True, help="the baichuan executable")
    ap.add_argument("--fixtures", required=True, help="fixture directory (missing fixtures are generated)")
    ap.add_argument("--time-limit", type=float, default=1.0, help="seconds one run may take (default 1)")
    args = ap.parse_args(argv)
    binary = os.path.abspath(args.bin)
    bc_testlib.ensure_fixtures(args.fixtures, [ST_FIXTURE, BIN_FIXTURE])
    t = Tally()
    formats = [safetensors_format(args.fixtures), torch_format(args.fixtures), bnb4_format(args.fixtures),
               gptq_format(args.fixtures), gguf_format(), spm_format()]
    slowest = 0.0
    for f in formats:
        work = tempfile.mkdtemp(prefix="bc_sweep_", dir=os.path.dirname(os.path.abspath(args.fixtures)))
        try:
            slowest = max(slowest, sweep(t, binary, f, work, args.time_limit))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print("slowest run: %.3f s (limit %.1f s)" % (slowest, args.time_limit))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
