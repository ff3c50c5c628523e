#!/usr/bin/python3
"""`baichuan perplexity` against an independent computation.

On a gen_rope-like fixture (f32 RoPE + NormHead weights, the 400-piece
tests/data/tiny_bpe.model):

- the ids come from SentencePiece itself, the logits from tools/reference.py
  (float64 NumPy forward pass), log-softmax, PPL and its standard error
  (llama.cpp's formula) from NumPy; chunks of N_CTX, the second half scored;
- the base file written by --kl-divergence-base is parsed here: header, ids
  (SentencePiece's), log-probs (the reference's);
- --kl-divergence with a q8_0 and a q4_0 GGUF of the fixture as the model
  under test: the base side from the reference, the test side from
  `baichuan logits` of the quantized file, KL(base || test), median, max,
  same top token, PPL of both and ln(PPL ratio) computed in NumPy;
- BOS replacement (a copy of the fixture whose tokenizer_config.json sets
  add_bos_token): the reference sees BOS at the start of every chunk;
- bad inputs: each a one-line error naming the file, exit status 1.

Tolerance. The engine's f32 logits are within eps = 1e-4 * max(1, max|ref|)
of the reference (the project's f32 bound, checked by test_logits), and a
log-softmax moves by at most 2 * eps when its inputs move by eps, so
|ln PPL - ln PPL_ref| <= 2 eps, and the base file's log-probs must be within
2 eps of the reference's. The comparison reads those stored log-probs; with
them off by at most delta (measured: the largest |stored - reference|),
KL(p || q) moves by at most about delta * (1 + sum_v p_v |log p_v - log q_v|)
per token (first order); the test allows 2.5 times that. The test side of
the comparison is the same engine on the same file (`baichuan logits`), so
PPL(Q) must agree to 1e-5 (batch composition may reorder sums).

    test_perplexity.py --bin build/baichuan --fixtures DIR
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import sentencepiece

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
import reference  # noqa: E402

# gen_rope's shape with n_embd and n_ff multiples of 32 (so that q8_0 and
# q4_0 can store every matrix), written by the test into its own directory.
FIXTURE = bc_testlib.gen_fixtures._fixture("ppl_rope", "baichuan2-7b", "f32", "st", n_embd=64, n_head=4, n_ff=128,
                                           n_layer=2, vocab=bc_testlib.gen_fixtures.TINY_VOCAB,
                                           extra={"norm_head": True},
                                           tokenizer=bc_testlib.gen_fixtures.TINY_TOKENIZER)
N_CTX = 64
N_CHUNKS = 3
CORPUS = os.path.join(bc_testlib.ROOT, "tests", "data", "tok_corpus.txt")


def run(*args):
    r = subprocess.run(list(args), capture_output=True, timeout=300)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def number(pattern, text):
    m = re.search(pattern, text)
    if m is None:
        raise AssertionError("no match for %r in output:\n%s" % (pattern, text))
    return [float(g) for g in m.groups()]


def log_softmax(rows):
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.max(axis=1, keepdims=True)
    return rows - (m + np.log(np.exp(rows - m).sum(axis=1, keepdims=True)))


def ppl_and_err(nll):
    """llama.cpp's Final estimate: exp(mean), exp(mean) * sqrt(var / (n - 1))."""
    nll = np.asarray(nll, dtype=np.float64)
    mean = nll.mean()
    var = (nll * nll).mean() - mean * mean
    return np.exp(mean), np.exp(mean) * np.sqrt(var / (nll.size - 1))


def chunks_of(ids, bos):
    """The evaluated chunks: n_ctx ids each, the first replaced by BOS when bos >= 0."""
    out = []
    for c in range(N_CHUNKS):
        chunk = list(ids[c * N_CTX:(c + 1) * N_CTX])
        if bos >= 0:
            chunk[0] = bos
        out.append(chunk)
    return out


def scored(ids):
    """(chunk, position) pairs scored and the id each predicts."""
    first = N_CTX // 2
    return [(c, j, ids[c * N_CTX + j + 1]) for c in range(N_CHUNKS) for j in range(first, N_CTX - 1)]


def reference_logprobs(model, chunks):
    """(chunk -> (N_CTX, V) float64 log-probs) and the largest |logit| seen."""
    out, scale = [], 1.0
    for chunk in chunks:
        logits = model.logits(chunk)
        scale = max(scale, float(np.abs(logits).max()))
        out.append(log_softmax(logits))
    return out, scale


def read_base_file(path):
    with open(path, "rb") as f:
        b = f.read()
    magic, version, n_ctx, n_vocab, n_chunks, first, bos = struct.unpack_from("<8sIIIIIi", b, 0)
    ids = np.frombuffer(b, dtype="<i4", count=n_ctx * n_chunks, offset=32)
    off = 32 + 4 * n_ctx * n_chunks
    lp = np.frombuffer(b, dtype="<f4", offset=off).reshape(n_chunks, n_ctx - 1 - first, n_vocab)
    return dict(magic=magic, version=version, n_ctx=n_ctx, n_vocab=n_vocab, n_chunks=n_chunks, first=first,
                bos=bos, ids=ids, logprobs=lp, size=len(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--fixtures", help="unused: the test writes its own fixture")
    args = ap.parse_args()
    t = bc_testlib.Tally()
    exe = args.bin
    tmp = tempfile.mkdtemp(prefix="bc_ppl_")
    try:
        fx = bc_testlib.gen_fixtures.write_fixture(FIXTURE, tmp)
        sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(fx, "tokenizer.model"))
        with open(CORPUS, encoding="utf-8") as f:
            text = f.read()
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
        ids = sp.encode(text)
        assert len(ids) >= N_CHUNKS * N_CTX, "the corpus is too short for the test"
        model = reference.load_model(fx)
        ref_lp, scale = reference_logprobs(model, chunks_of(ids, -1))
        eps = bc_testlib.TOLERANCE["f32"] * scale
        pairs = scored(ids)
        ref_nll = np.array([-ref_lp[c][j][nxt] for c, j, nxt in pairs])
        ref_ppl, ref_err = ppl_and_err(ref_nll)

        # 1. Plain perplexity, from the directory and from an f32 GGUF (its own tokenizer).
        f32_gguf = os.path.join(tmp, "f32.gguf")
        rc, _, err = run(exe, "quantize", fx, f32_gguf, "--type", "f32")
        t.check("quantize f32", rc == 0, err)
        for label, m in (("dir", fx), ("f32 gguf", f32_gguf)):
            rc, out, err = run(exe, "perplexity", "--cache-type", "f32", "-m", m, "-f", text_path, "-c", str(N_CTX), "--chunks",
                               str(N_CHUNKS), "-b", "24", "-t", "2")
            if not t.check("perplexity %s runs" % label, rc == 0, err):
                continue
            ppl, perr = number(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
            n_scored = number(r"tokens scored: (\d+)", out)[0]
            t.check("perplexity %s: %d tokens scored" % (label, len(pairs)), n_scored == len(pairs),
                    "got %d" % n_scored)
            d = abs(np.log(ppl) - np.log(ref_ppl))
            t.check("perplexity %s: PPL %.4f vs reference %.6f (|d ln| %.2e <= %.2e)" % (label, ppl, ref_ppl, d,
                    2 * eps + 5e-5 / ref_ppl), d <= 2 * eps + 5e-5 / ref_ppl)
            t.check("perplexity %s: error %.5f vs reference %.6f" % (label, perr, ref_err),
                    abs(perr - ref_err) <= 0.01 * ref_err + 4 * eps * ref_ppl + 1e-5)

        # 2. The base file: header, SentencePiece's ids, the reference's log-probs.
        base = os.path.join(tmp, "base.kld")
        rc, out, err = run(exe, "perplexity", "--cache-type", "f32", "-m", fx, "-f", text_path, "-c", str(N_CTX), "--chunks",
                           str(N_CHUNKS), "--kl-divergence-base", base)
        t.check("save base file", rc == 0, err)
        bf = read_base_file(base)
        t.check("base file header", (bf["magic"], bf["version"], bf["n_ctx"], bf["n_vocab"], bf["n_chunks"],
                                     bf["first"], bf["bos"]) == (b"BCKLDIV\0", 1, N_CTX, sp.get_piece_size(),
                                                                 N_CHUNKS, N_CTX // 2, -1), str(bf))
        t.check("base file ids are SentencePiece's", list(bf["ids"]) == ids[:N_CHUNKS * N_CTX])
        want = np.stack([ref_lp[c][N_CTX // 2:N_CTX - 1] for c in range(N_CHUNKS)])
        d = float(np.abs(bf["logprobs"].astype(np.float64) - want).max())
        t.check("base file log-probs vs reference (max |d| %.2e <= %.2e)" % (d, 2 * eps), d <= 2 * eps)
        # The comparison reads exactly these log-probs: their measured distance
        # from the reference bounds how far the KL statistics may move.
        delta = max(d, 1e-7)

        # 3. KL divergence of quantized models from the f32 base.
        for qtype in ("q8_0", "q4_0"):
            q = os.path.join(tmp, qtype + ".gguf")
            rc, _, err = run(exe, "quantize", fx, q, "--type", qtype)
            if not t.check("quantize %s" % qtype, rc == 0, err):
                continue
            rc, out, err = run(exe, "perplexity", "--cache-type", "f32", "-m", q, "--kl-divergence-base", base, "--kl-divergence",
                               "-f", text_path, "-b", "40")
            if not t.check("kl-divergence %s runs" % qtype, rc == 0, err):
                continue
            # The test side: the quantized model's logits from `baichuan logits`.
            kl, nll_q, nll_b, same, bound = [], [], [], 0, []
            for c, chunk in enumerate(chunks_of(ids, -1)):
                lf = os.path.join(tmp, "q.f32")
                rc, _, err = run(exe, "logits", "--cache-type", "f32", "-m", q, "--tokens", " ".join(map(str, chunk)), "-o", lf)
                assert rc == 0, err
                lq = log_softmax(np.fromfile(lf, dtype="<f4").reshape(N_CTX, -1))
                for j in range(N_CTX // 2, N_CTX - 1):
                    pb, lpb, lpq = np.exp(ref_lp[c][j]), ref_lp[c][j], lq[j]
                    kl.append(float(np.sum(pb * (lpb - lpq))))
                    bound.append(2.5 * delta * (1 + float(np.sum(pb * np.abs(lpb - lpq)))) + 1e-7)
                    nxt = ids[c * N_CTX + j + 1]
                    nll_q.append(-lpq[nxt])
                    nll_b.append(-lpb[nxt])
                    same += int(np.argmax(lpq) == np.argmax(lpb))
            kl, bound = np.array(kl), np.array(bound)
            n = kl.size
            mean, mean_unc = number(r"Mean    KLD: ([0-9.]+) \+/- ([0-9.]+)", out)
            kmax = number(r"Maximum KLD: ([0-9.]+)", out)[0]
            median = number(r"Median  KLD: ([0-9.]+)", out)[0]
            top = number(r"Same top p: ([0-9.]+)", out)[0]
            ppl_q = number(r"Mean PPL\(Q\) +: +([0-9.]+)", out)[0]
            ppl_b = number(r"Mean PPL\(base\) +: +([0-9.]+)", out)[0]
            ratio = number(r"Mean ln\(PPL\(Q\)/PPL\(base\)\) +: +(-?[0-9.]+)", out)[0]
            ref_unc = np.sqrt(((kl * kl).mean() - kl.mean() ** 2) / (n - 1))
            sb = np.sort(kl)
            t.check("%s mean KLD %.6g vs reference %.6g (<= %.2e)" % (qtype, mean, kl.mean(), bound.mean()),
                    abs(mean - kl.mean()) <= bound.mean() + 1e-8)
            t.check("%s KLD uncertainty %.3g vs reference %.3g" % (qtype, mean_unc, ref_unc),
                    abs(mean_unc - ref_unc) <= 0.02 * ref_unc + bound.max() + 1e-8)
            t.check("%s max KLD %.6g vs reference %.6g" % (qtype, kmax, sb[-1]),
                    abs(kmax - sb[-1]) <= bound.max() + 1e-8)
            ref_median = 0.5 * (sb[n // 2] + sb[n // 2 - 1]) if n % 2 == 0 else sb[n // 2]
            t.check("%s median KLD %.6g vs reference %.6g" % (qtype, median, ref_median),
                    abs(median - ref_median) <= bound.max() + 1e-8)
            t.check("%s same top %.4f%% vs reference %.4f%% (ties may flip one)" % (qtype, top, 100.0 * same / n),
                    abs(top - 100.0 * same / n) <= 100.0 / n + 1e-3)
            ref_q = np.exp(np.mean(nll_q))
            ref_b = np.exp(np.mean(nll_b))
            t.check("%s PPL(Q) %.6f vs logits-derived %.6f" % (qtype, ppl_q, ref_q),
                    abs(np.log(ppl_q / ref_q)) <= 1e-5 + 1e-6 / ref_q)
            t.check("%s PPL(base) %.6f vs reference %.6f" % (qtype, ppl_b, ref_b),
                    abs(np.log(ppl_b / ref_b)) <= 2 * eps + 1e-6 / ref_b)
            ref_ratio = np.mean(nll_q) - np.mean(nll_b)
            t.check("%s ln(PPL ratio) %.8f vs reference %.8f" % (qtype, ratio, ref_ratio),
                    abs(ratio - ref_ratio) <= 2 * eps + 1e-5)

        # 4. BOS replacement: a copy of the fixture whose tokenizer adds BOS.
        bos_dir = os.path.join(tmp, "bos")
        os.makedirs(bos_dir)
        for name in os.listdir(fx):
            if name != "tokenizer_config.json":
                os.symlink(os.path.join(os.path.abspath(fx), name), os.path.join(bos_dir, name))
        with open(os.path.join(fx, "tokenizer_config.json")) as f:
            tc = json.load(f)
        tc["add_bos_token"] = True
        with open(os.path.join(bos_dir, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f)
        bos_ids = [sp.bos_id()] + ids
        bos_lp, bos_scale = reference_logprobs(model, chunks_of(bos_ids, sp.bos_id()))
        bos_eps = bc_testlib.TOLERANCE["f32"] * bos_scale
        bos_nll = [-bos_lp[c][j][nxt] for c, j, nxt in scored(bos_ids)]
        bos_ppl, _ = ppl_and_err(bos_nll)
        base_bos = os.path.join(tmp, "base_bos.kld")
        rc, out, err = run(exe, "perplexity", "--cache-type", "f32", "-m", bos_dir, "-f", text_path, "-c", str(N_CTX), "--chunks",
                           str(N_CHUNKS), "--kl-divergence-base", base_bos)
        if t.check("perplexity with BOS runs", rc == 0, err):
            ppl = number(r"Final estimate: PPL = ([0-9.]+)", out)[0]
            d = abs(np.log(ppl / bos_ppl))
            t.check("BOS: PPL %.4f vs reference %.6f (BOS first in every chunk)" % (ppl, bos_ppl),
                    d <= 2 * bos_eps + 5e-5 / bos_ppl)
            bf = read_base_file(base_bos)
            t.check("BOS: base file records bos id and the ids with BOS first",
                    bf["bos"] == sp.bos_id() and list(bf["ids"]) == bos_ids[:N_CHUNKS * N_CTX])

        # 5. Bad inputs: one line on stderr naming the file, exit status 1.
        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        short = os.path.join(tmp, "short.txt")
        with open(short, "w") as f:
            f.write("Hello world.\n")
        other = os.path.join(tmp, "other.txt")
        with open(other, "w", encoding="utf-8") as f:
            f.write(text[::-1])
        truncated = os.path.join(tmp, "truncated.kld")
        with open(base, "rb") as f, open(truncated, "wb") as g:
            g.write(f.read()[:-100])
        badmagic = os.path.join(tmp, "badmagic.kld")
        with open(base, "rb") as f, open(badmagic, "wb") as g:
            g.write(b"XXXXXXXX" + f.read()[8:])
        badid = os.path.join(tmp, "badid.kld")
        with open(base, "rb") as f, open(badid, "wb") as g:
            b = bytearray(f.read())
            b[32 + 4 * 5:32 + 4 * 6] = struct.pack("<i", 99999)
            g.write(bytes(b))
        default_model = os.path.join(bc_testlib.ROOT, "models", "default")
        missing = os.path.join(tmp, "missing.txt")
        cases = [
            ("missing text file", ["-m", fx, "-f", missing], [missing, "cannot open"]),
            ("empty text", ["-m", fx, "-f", empty], [empty, "empty"]),
            ("text too short", ["-m", fx, "-f", short, "-c", "64"], [short, "at least 2*64"]),
            ("no -f", ["-m", fx], ["-f"]),
            ("vocabulary mismatch", ["-m", default_model, "--kl-divergence-base", base, "--kl-divergence"],
             [base, "vocabulary mismatch", "400", "8000"]),
            ("tokens mismatch", ["-m", fx, "--kl-divergence-base", base, "--kl-divergence", "-f", other],
             [base, "token"]),
            ("truncated base file", ["-m", fx, "--kl-divergence-base", truncated, "--kl-divergence"],
             [truncated, "truncated"]),
            ("not a base file", ["-m", fx, "--kl-divergence-base", badmagic, "--kl-divergence"],
             [badmagic, "not a base file"]),
            ("id outside the vocabulary", ["-m", fx, "--kl-divergence-base", badid, "--kl-divergence"],
             [badid, "id 5 is 99999"]),
            ("-c mismatch", ["-m", fx, "--kl-divergence-base", base, "--kl-divergence", "-c", "32"],
             [base, "-c 64"]),
            ("missing base file", ["-m", fx, "--kl-divergence-base", missing, "--kl-divergence"],
             [missing, "cannot open"]),
        ]
        for name, a, needles in cases:
            rc, out, err = run(exe, "perplexity", "--cache-type", "f32", *a)
            lines = err.strip().split("\n")
            ok = rc == 1 and len(lines) == 1 and lines[0].startswith("baichuan: error: ") and all(
                s in lines[0] for s in needles)
            t.check("bad input: %s -> one-line error" % name, ok, "rc %d stderr %r" % (rc, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
