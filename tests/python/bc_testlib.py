"""bc_testlib.py - what the Python test scripts share.

Paths to tools/, making sure fixtures exist, the seeded token sequences, the
error measure, and a pass/fail tally that prints the final `N passed, M failed`.
"""

import os
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
    """Generates the fixtures missing from fixtures_dir (all known ones by default)."""
    names = list(names or gen_fixtures.FIXTURES)
    missing = [n for n in names if not fixture_complete(os.path.join(fixtures_dir, n))]
    if missing:
        print("generating fixtures: %s" % " ".join(missing), flush=True)
        subprocess.run([PYTHON, os.path.join(TOOLS, "gen_fixtures.py"), "--out", fixtures_dir, "--only"] + missing,
                       check=True, stdout=subprocess.DEVNULL)


def token_sequence(fixture_name, length, n_vocab):
    """A seeded random sequence of token ids in [0, n_vocab)."""
    seed = zlib.crc32(("%s/%d" % (fixture_name, length)).encode("utf-8"))
    rng = np.random.Generator(np.random.PCG64(seed))
    return [int(t) for t in rng.integers(0, n_vocab, size=length)]


def rel_err(got, ref):
    """max|got - ref| / max(1, max|ref|)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


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

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1
