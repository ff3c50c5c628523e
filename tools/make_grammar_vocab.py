#!/usr/bin/env python3
"""Write a byte-fallback BPE tokenizer.model whose pieces look like a real
LLM vocabulary where structured output is concerned: JSON punctuation runs
(`",`, `":"`, `{"`, `}]`), quotes glued to words, escapes, digits and
decimals, words with and without a leading space, Chinese characters and
words, and a few user-defined symbols. The grammar tests walk token masks
over it (pieces that cross rule boundaries are the hard case), and the
grammar benchmark uses it at the real vocabulary size (--size 125696).

Deterministic: the same arguments write the same bytes.
"""
import argparse
import itertools
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import spm_proto as P  # noqa: E402

SPACE = "\u2581"


def pieces_for(size, seed):
    rng = random.Random(seed)
    out, seen = [], set()

    def add(p, t=P.NORMAL):
        if p and p not in seen and len(out) < size:
            seen.add(p)
            out.append((p, t))

    add("<unk>", P.UNKNOWN)
    add("<s>", P.CONTROL)
    add("</s>", P.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", P.BYTE)
    add("<reserved_0>", P.CONTROL)
    add("<|tool|>", P.USER_DEFINED)
    add("unused_piece", P.UNUSED)
    punct = ['{', '}', '[', ']', '"', ':', ',', SPACE, '\n', '\\']
    for n in (1, 2, 3):
        for t in itertools.product(punct, repeat=n):
            add("".join(t))
    for i in range(1000):
        add(str(i))
        add(SPACE + str(i))
    for s in ["0.", ".0", ".5", "-1", "e+", "E-", "1e", "-0", "00", "true", "false", "null", SPACE + "true",
              "\\n", "\\\"", "\\u", "\\\\", "\\/", "\\t", "\\u00", "u00"]:
        add(s)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["name", "age", "id", "type", "value", "items", "email", "date", "time", "city", "title", "tags",
             "true", "false", "null", "object", "string", "number", "http", "com", "user", "data"]
    for w in words + list(letters) + ["".join(p) for p in itertools.product(letters, repeat=2)]:
        for form in (w, SPACE + w, '"' + w, w + '"', '"' + w + '"', '"' + w + '":', w.capitalize(),
                     w + '",', '{"' + w, '":"' + w):
            add(form)
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 600)] + list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年")
    for c in cjk:
        add(c)
    for _ in range(400):
        add(rng.choice(cjk) + rng.choice(cjk))
    for c in "αβγδЖЯé😀，。：“”":
        add(c)
    # Fill to the size with made-up but plausible pieces.
    while len(out) < size:
        r = rng.random()
        if r < 0.45:
            w = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
            add(rng.choice(["", SPACE, "", SPACE, '"', "_"]) + w)
        elif r < 0.8:
            add("".join(rng.choice(cjk) for _ in range(rng.randint(2, 4))))
        elif r < 0.9:
            add(rng.choice(punct) + "".join(rng.choice(letters) for _ in range(rng.randint(1, 5))) +
                rng.choice(punct))
        else:
            add(str(rng.randint(0, 10**rng.randint(1, 6))) + rng.choice(["", ",", "}", "]", ".", " "]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the tokenizer.model to write")
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--dummy-prefix", type=int, default=1, help="normalizer add_dummy_prefix (1 or 0)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    pieces = pieces_for(args.size, args.seed)
    msgs = [[1, P.LEN, P.Piece(p, 0.0 if t != P.NORMAL else -float(i), t).encode()]
            for i, (p, t) in enumerate(pieces)]
    trainer = [[3, P.VARINT, 2], [35, P.VARINT, 1]]  # model_type BPE, byte_fallback
    normalizer = [[1, P.LEN, b"identity"], [3, P.VARINT, args.dummy_prefix], [4, P.VARINT, 0], [5, P.VARINT, 1]]
    data = P.serialize(msgs + [[2, P.LEN, P.serialize(trainer)], [3, P.LEN, P.serialize(normalizer)]])
    with open(args.out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
