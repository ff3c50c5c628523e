#!/usr/bin/python3
"""The embedded default model (models/default): what `make run` shows a newcomer.

- its logits equal the independent float64 reference (tools/reference.py);
- `baichuan run` with no -m uses it and writes poem-like Chinese for a poem opening.

    test_default_model.py --bin build/baichuan [--fixtures DIR (unused)]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import sentencepiece

import bc_testlib
import reference

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "default")


def is_cjk(ch):
    return "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures")
    args = ap.parse_args()
    t = bc_testlib.Tally()

    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    ids = sp.encode("床前明月光，疑是地上霜。举头望明月，低头思故乡。")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.f32")
        r = subprocess.run([args.bin, "logits", "-m", MODEL, "--tokens", " ".join(map(str, ids)), "-o", out],
                           capture_output=True, text=True, timeout=120)
        ok = r.returncode == 0
        if ok:
            ref = reference.load_model(MODEL).logits(ids)
            got = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
            err = bc_testlib.rel_err(got, ref)
            ok = err <= 1e-4
        t.record(ok, "default model logits vs reference over %d tokens: err %s %s" % (
            len(ids), "%.2e" % err if r.returncode == 0 else "-", r.stderr.strip()))

    env = dict(os.environ)
    env.pop("BAICHUAN_MODEL", None)
    r = subprocess.run([args.bin, "run", "-p", "床前明月光，", "-n", "32", "--temp", "0"], capture_output=True,
                       timeout=120, env=env)
    text = r.stdout.decode("utf-8", errors="replace")
    letters = [c for c in text if not c.isspace() and c not in "-—《》‧·"]
    share = sum(map(is_cjk, letters)) / max(1, len(letters))
    t.record(r.returncode == 0 and len(letters) >= 8 and share >= 0.8,
             "run without -m continues a poem in Chinese: %r (%.0f%% CJK)" % (text, 100 * share))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
