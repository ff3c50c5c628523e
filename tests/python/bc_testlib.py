"""bc_testlib.py - what the Python test scripts share.

Paths to tools/, making sure fixtures exist, SentencePiece training through a
cache, the seeded token sequences, the error measure, and a pass/fail tally
that prints the final `N passed, M failed`.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import gen_fixtures  # noqa: E402  (needs TOOLS on sys.path)

PYTHON = sys.executable or "/usr/bin/python3"

# Token sequence lengths every fixture is checked with: a short one and one
# long enough to pass typical block sizes (64, 128) with a ragged tail.
SEQ_LENGTHS = (8, 211)


# Largest accepted max|engine - ref| / max(1, max|ref|), by stored dtype.
TOLERANCE = {"f32": 1e-4, "f16": 2e-2, "bf16": 2e-2}


def tolerance(fixture_name):
    return TOLERANCE[gen_fixtures.FIXTURES[fixture_name]["dtype"]]


def fixture_complete(d):
    if not os.path.isfile(os.path.join(d, "config.json")):
        return False
    names = os.listdir(d)
    return any(n.endswith(".safetensors") or n.endswith(".bin") for n in names)


def ensure_fixtures(fixtures_dir, names=None):
    """Generates the fixtures missing from fixtures_dir (all known ones by
    default). A lock file keeps test scripts started together from generating
    the same fixtures at once."""
    names = list(names or gen_fixtures.FIXTURES)
    os.makedirs(fixtures_dir, exist_ok=True)
    with open(os.path.join(fixtures_dir, ".generate.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [n for n in names if not fixture_complete(os.path.join(fixtures_dir, n))]
        if missing:
            print("generating fixtures: %s" % " ".join(missing), flush=True)
            subprocess.run([PYTHON, os.path.join(TOOLS, "gen_fixtures.py"), "--out", fixtures_dir, "--only"]
                           + missing, check=True, stdout=subprocess.DEVNULL)


def spm_train(input_path, prefix, flags, cache=None, timeout=900):
    """Trains a SentencePiece model with Debian's spm_train: writes
    prefix.model (and prefix.vocab) and returns the .model's path; raises
    RuntimeError with spm_train's message when it fails.

    With cache (a directory), a model trained before from the same input
    bytes, flags and spm_train version is copied instead: the release and
    sanitizer trees (and reruns) then test the same models without training
    them again. The cache is keyed by content, so it is never stale."""
    cmd = ["spm_train", "--input=" + input_path, "--model_prefix=" + prefix] + list(flags)
    key = None
    if cache:
        h = hashlib.sha256()
        version = subprocess.run(["spm_train", "--version"], capture_output=True, timeout=60)
        h.update(version.stdout + version.stderr + b"\0")
        h.update("\0".join(flags).encode("utf-8") + b"\0")
        with open(input_path, "rb") as f:
            h.update(f.read())
        key = os.path.join(cache, h.hexdigest())
        if os.path.isfile(key + ".model") and os.path.isfile(key + ".vocab"):
            shutil.copyfile(key + ".model", prefix + ".model")
            shutil.copyfile(key + ".vocab", prefix + ".vocab")
            return prefix + ".model"
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("spm_train failed: %s" % r.stderr.decode(errors="replace")[-2000:])
    if key is not None:
        # Written under a temporary name and renamed: tests that run at the
        # same time never see half a file.
        os.makedirs(cache, exist_ok=True)
        for ext in (".vocab", ".model"):
            tmp = "%s.%d%s" % (key, os.getpid(), ext)
            shutil.copyfile(prefix + ext, tmp)
            os.replace(tmp, key + ext)
    return prefix + ".model"


def token_sequence(fixture_name, length, n_vocab):
    """A seeded random sequence of token ids in [0, n_vocab)."""
    seed = zlib.crc32(("%s/%d" % (fixture_name, length)).encode("utf-8"))
    rng = np.random.Generator(np.random.PCG64(seed))
    return [int(t) for t in rng.integers(0, n_vocab, size=length)]


def rel_err(got, ref):
    """max|got - ref| / max(1, max|ref|), in float64; NaN if got has a NaN.

    Works through the rows in blocks: the arrays are large (211 x 125696) and
    whole-array temporaries made this the slowest part of the tests."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        raise ValueError("shapes differ: %s vs %s" % (got.shape, ref.shape))
    got2 = got.reshape(-1, got.shape[-1]) if got.ndim else got.reshape(1, 1)
    ref2 = ref.reshape(-1, ref.shape[-1]) if ref.ndim else ref.reshape(1, 1)
    worst, scale = 0.0, 1.0
    for i in range(0, got2.shape[0], 16):
        r = ref2[i:i + 16].astype(np.float64)
        d = np.subtract(got2[i:i + 16], r, dtype=np.float64)
        np.abs(d, out=d)
        block_worst = float(d.max())
        if block_worst != block_worst:  # NaN (Python's max() would drop it)
            return float("nan")
        worst = max(worst, block_worst)
        scale = max(scale, float(r.max()), -float(r.min()))
    return worst / scale


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok, line):
        print("%s %s" % ("PASS" if ok else "FAIL", line), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def check(self, name, ok, detail=""):
        """record() with the detail shown only on failure."""
        return self.record(ok, name if ok or not detail else "%s %s" % (name, detail))

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1
