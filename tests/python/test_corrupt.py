#!/usr/bin/python3
"""test_corrupt.py - the engine must reject broken checkpoints cleanly.

    test_corrupt.py --bin PATH_TO_baichuan --fixtures DIR [--only CASE ...] [--list]

Each case copies a good fixture into a temporary directory (hard links where
possible; a file that is changed is always written anew), breaks it in one
way, and runs `baichuan info -m CASE_DIR` (and for some cases `baichuan
logits`). The run must:

  * end within --time-limit seconds (default 1), with an exit status in
    1..127 (not killed by a signal);
  * print exactly one line to stderr (a trailing newline aside), of the form
    `baichuan: error: <message>`, naming the offending file's basename and,
    where one applies, the tensor or config field (and for a wrong shape the
    expected and found sizes);
  * print nothing from the sanitizers (AddressSanitizer, LeakSanitizer,
    "runtime error").

Control cases first check that the untouched copies load (exit status 0), so
that a broken copy step cannot pass for a detected corruption.
Prints one line per case and a final `N passed, M failed`.
"""

import argparse
import collections
import json
import os
import re
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

import gen_fixtures  # noqa: E402

TIME_LIMIT_S = 1.0  # --time-limit
SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error")
ERROR_PREFIX = "baichuan: error: "

ST = "b2_7b_f32_st"              # single model.safetensors, f32
SH = "b2_13b_f16_st_sharded"     # three safetensors shards + index
BIN = "b1_7b_bf16_bin"           # single pytorch_model.bin
BINSH = "b2_7b_bf16_bin_sharded"  # two .bin shards + index
BASES = (ST, SH, BIN, BINSH)

ST_FILE = "model.safetensors"
SH_FILES = ["model-%05d-of-00003.safetensors" % i for i in (1, 2, 3)]
SH_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BINSH_FILES = ["pytorch_model-%05d-of-00002.bin" % i for i in (1, 2)]

# ---------------------------------------------------------------------------
# File surgery
# ---------------------------------------------------------------------------


def clone(src, dst):
    os.makedirs(dst)
    for f in os.listdir(src):
        s, d = os.path.join(src, f), os.path.join(dst, f)
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)


def read(path):
    with open(path, "rb") as fp:
        return fp.read()


def rewrite(path, data):
    """Replaces path with new contents (never writes through a hard link)."""
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as fp:
        fp.write(data)


def truncate(path, size):
    rewrite(path, read(path)[:size])


def st_split(path):
    """(header OrderedDict, header length, data bytes) of a safetensors file."""
    blob = read(path)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    return header, n, blob[8 + n:]


def st_header_bytes(header, pad_to=None):
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    size = pad_to if pad_to is not None else len(text) + (8 - len(text) % 8) % 8
    assert len(text) <= size
    return text + b" " * (size - len(text))


def st_rewrite_header(path, edit):
    """Applies edit(header) and writes the file back with the same data."""
    header, _, data = st_split(path)
    edit(header)
    text = st_header_bytes(header)
    rewrite(path, struct.pack("<Q", len(text)) + text + data)


def st_entries(path):
    """[(name, dtype, shape, raw bytes)] in data order."""
    header, _, data = st_split(path)
    items = [(k, v) for k, v in header.items() if k != "__metadata__"]
    items.sort(key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in items]


def st_rebuild(path, edit):
    """Rewrites path from edit(entries) with freshly computed offsets."""
    header, _, _ = st_split(path)
    entries = edit(st_entries(path))
    if os.path.exists(path):
        os.unlink(path)
    gen_fixtures.write_safetensors(path, entries, header.get("__metadata__"))


def edit_json(path, edit):
    with open(path) as fp:
        obj = json.load(fp, object_pairs_hook=collections.OrderedDict)
    edit(obj)
    rewrite(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def zip_write(path, entries, compression=zipfile.ZIP_STORED):
    if os.path.exists(path):
        os.unlink(path)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            z.writestr(info, data)


def forbidden_pickle():
    """Protocol-2 pickle bytes of {'model.norm.weight': os.system('true')}, written
    opcode by opcode: no callable is ever pickled, and nothing here runs it."""
    def unicode(s):
        b = s.encode("utf-8")
        return b"X" + struct.pack("<I", len(b)) + b

    return (b"\x80\x02"                  # PROTO 2
            + b"}"                       # EMPTY_DICT
            + unicode("model.norm.weight")
            + b"cos\nsystem\n"           # GLOBAL os.system
            + unicode("true")
            + b"\x85"                    # TUPLE1
            + b"R"                       # REDUCE
            + b"s"                       # SETITEM
            + b".")                      # STOP


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------
#
# Each maker gets the case directory (a fresh clone of its base fixture) and
# breaks it. `expect` lists groups of strings; stderr must contain at least
# one string of every group. A name in `expect` that is "{dir}" stands for the
# basename of the path given to -m.

Case = collections.namedtuple("Case", "name base make expect logits")
CASES = []


def case(name, base, expect, logits=False):
    def register(fn):
        CASES.append(Case(name, base, fn, [list(g) if isinstance(g, (list, tuple)) else [g] for g in expect], logits))
        return fn
    return register


def p(d, f):
    return os.path.join(d, f)


# --- control: the untouched copies must load --------------------------------

for _base in BASES:
    CASES.append(Case("control_" + _base, _base, None, None, False))

# --- single safetensors -----------------------------------------------------


@case("st_truncated_in_size_field", ST, [ST_FILE])
def _(d):
    truncate(p(d, ST_FILE), 5)


@case("st_truncated_in_header", ST, [ST_FILE])
def _(d):
    _, n, _ = st_split(p(d, ST_FILE))
    truncate(p(d, ST_FILE), 8 + n // 2)


@case("st_truncated_at_data_start", ST, [ST_FILE])
def _(d):
    _, n, _ = st_split(p(d, ST_FILE))
    truncate(p(d, ST_FILE), 8 + n)


@case("st_truncated_in_data", ST, [ST_FILE], logits=True)
def _(d):
    _, n, _ = st_split(p(d, ST_FILE))
    truncate(p(d, ST_FILE), 8 + n + 1000)


@case("st_truncated_last_byte", ST, [ST_FILE])
def _(d):
    truncate(p(d, ST_FILE), os.path.getsize(p(d, ST_FILE)) - 1)


@case("st_header_size_past_end", ST, [ST_FILE])
def _(d):
    blob = read(p(d, ST_FILE))
    rewrite(p(d, ST_FILE), struct.pack("<Q", len(blob)) + blob[8:])


@case("st_header_size_huge", ST, [ST_FILE])
def _(d):
    blob = read(p(d, ST_FILE))
    rewrite(p(d, ST_FILE), struct.pack("<Q", 2 ** 64 - 1) + blob[8:])


@case("st_header_malformed_json", ST, [ST_FILE])
def _(d):
    blob = read(p(d, ST_FILE))
    (n,) = struct.unpack("<Q", blob[:8])
    text = blob[8:8 + n].rstrip(b" ")
    assert text.endswith(b"}")
    text = text[:-1] + b" " * (n - len(text) + 1)  # drop the closing brace
    rewrite(p(d, ST_FILE), blob[:8] + text + blob[8 + n:])


@case("st_header_not_object", ST, [ST_FILE])
def _(d):
    blob = read(p(d, ST_FILE))
    (n,) = struct.unpack("<Q", blob[:8])
    rewrite(p(d, ST_FILE), blob[:8] + b"[1, 2, 3]".ljust(n) + blob[8 + n:])


def _retype(name, dtype, itemsize):
    def edit(entries):
        out = []
        for n, dt, shape, raw in entries:
            if n == name:
                count = len(raw) // 4  # the fixture stores it as F32
                raw = (b"\x3f" + b"\x00" * (itemsize - 1)) * count
                dt = dtype
            out.append((n, dt, shape, raw))
        return out
    return edit


@case("st_dtype_f64", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    st_rebuild(p(d, ST_FILE), _retype("model.norm.weight", "F64", 8))


@case("st_dtype_i8", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    st_rebuild(p(d, ST_FILE), _retype("model.norm.weight", "I8", 1))


@case("st_dtype_i32_weight", ST, [ST_FILE, "model.layers.0.mlp.up_proj.weight", "I32", "F32, F16 or BF16"])
def _(d):
    # A known safetensors dtype the file reader accepts; the loader refuses it
    # for a weight matrix.
    st_rebuild(p(d, ST_FILE), _retype("model.layers.0.mlp.up_proj.weight", "I32", 4))


@case("st_data_offsets_overlap", ST,
      [ST_FILE, "model.norm.weight", "model.layers.1.self_attn.o_proj.weight", "overlap"])
def _(d):
    # Moved one byte left: consistent with its shape and inside the file, but
    # its first byte is also the last of its neighbour's.
    entries = st_entries(p(d, ST_FILE))
    assert [e[0] for e in entries[-2:]] == ["model.layers.1.self_attn.o_proj.weight", "model.norm.weight"], entries[-2:]

    def edit(h):
        b, e = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [b - 1, e - 1]
    st_rewrite_header(p(d, ST_FILE), edit)


@case("st_data_offsets_past_end", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    # Moved 4 bytes right: still consistent with its shape, but the last
    # tensor of the data now ends past the end of the file.
    name = st_entries(p(d, ST_FILE))[-1][0]
    assert name == "model.norm.weight", name

    def edit(h):
        b, e = h[name]["data_offsets"]
        h[name]["data_offsets"] = [b + 4, e + 4]
    st_rewrite_header(p(d, ST_FILE), edit)


@case("st_data_offsets_huge", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    def edit(h):
        b, e = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [2 ** 62, 2 ** 62 + (e - b)]
    st_rewrite_header(p(d, ST_FILE), edit)


@case("st_data_offsets_inconsistent_with_shape", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    def edit(h):
        b, e = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [b, e - 4]  # one element short
    st_rewrite_header(p(d, ST_FILE), edit)


@case("st_negative_shape", ST, [ST_FILE, "model.norm.weight"])
def _(d):
    def edit(h):
        h["model.norm.weight"]["shape"] = [-32]
    st_rewrite_header(p(d, ST_FILE), edit)


@case("st_missing_tensor", ST, [("{dir}", ST_FILE), "model.layers.1.mlp.up_proj.weight"], logits=True)
def _(d):
    st_rebuild(p(d, ST_FILE), lambda es: [e for e in es if e[0] != "model.layers.1.mlp.up_proj.weight"])


def _shrink_rows(name, rows):
    def edit(entries):
        out = []
        for n, dt, shape, raw in entries:
            if n == name:
                row_bytes = len(raw) // shape[0]
                shape, raw = [rows] + list(shape[1:]), raw[:rows * row_bytes]
            out.append((n, dt, shape, raw))
        return out
    return edit


@case("st_wrong_shape_w_pack", ST, [ST_FILE, "model.layers.1.self_attn.W_pack.weight", "96", "95"])
def _(d):
    st_rebuild(p(d, ST_FILE), _shrink_rows("model.layers.1.self_attn.W_pack.weight", 95))


@case("st_wrong_shape_lm_head", ST, [ST_FILE, "lm_head.weight", "125696", "125695"])
def _(d):
    st_rebuild(p(d, ST_FILE), _shrink_rows("lm_head.weight", 125695))


# --- sharded safetensors ----------------------------------------------------


@case("sh_duplicate_across_shards", SH, [[SH_FILES[0], SH_FILES[2]], "model.norm.weight"])
def _(d):
    dup = [e for e in st_entries(p(d, SH_FILES[2])) if e[0] == "model.norm.weight"]
    assert dup
    st_rebuild(p(d, SH_FILES[0]), lambda es: es + dup)


@case("sh_missing_shard_file", SH, [SH_FILES[1]], logits=True)
def _(d):
    os.unlink(p(d, SH_FILES[1]))


@case("sh_index_entry_in_wrong_shard", SH, [[SH_INDEX, SH_FILES[0], SH_FILES[2]], "model.norm.weight"])
def _(d):
    def edit(idx):
        assert idx["weight_map"]["model.norm.weight"] == SH_FILES[2]
        idx["weight_map"]["model.norm.weight"] = SH_FILES[0]
    edit_json(p(d, SH_INDEX), edit)


@case("sh_index_entry_for_absent_tensor", SH, [[SH_INDEX, SH_FILES[0]], "model.layers.0.mlp.extra.weight"])
def _(d):
    edit_json(p(d, SH_INDEX), lambda idx: idx["weight_map"].__setitem__("model.layers.0.mlp.extra.weight",
                                                                        SH_FILES[0]))


@case("sh_index_malformed_json", SH, [SH_INDEX])
def _(d):
    rewrite(p(d, SH_INDEX), b'{"metadata": {"total_size": 1}, "weight_map": {')


# --- config.json ------------------------------------------------------------


@case("cfg_malformed_json", ST, ["config.json"])
def _(d):
    rewrite(p(d, "config.json"), b'{"hidden_size": 32,\n')


@case("cfg_not_object", ST, ["config.json"])
def _(d):
    rewrite(p(d, "config.json"), b"[32, 4]\n")


@case("cfg_oversized", ST, ["config.json", "MiB"])
def _(d):
    # Valid JSON, padded past the 16 MiB a model directory's JSON file may hold.
    text = open(p(d, "config.json"), "rb").read()
    rewrite(p(d, "config.json"), text.rstrip()[:-1] + b" " * (17 << 20) + b"}")


@case("sh_index_oversized", SH, [SH_INDEX, "MiB"])
def _(d):
    text = open(p(d, SH_INDEX), "rb").read()
    rewrite(p(d, SH_INDEX), b" " * (17 << 20) + text)


@case("cfg_nested_too_deep", ST, ["config.json", "depth"])
def _(d):
    # jansson refuses nesting past 2048 levels (no recursion without bound).
    config = json.load(open(p(d, "config.json")))
    text = json.dumps(config)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    rewrite(p(d, "config.json"), text.encode())


@case("cfg_missing", ST, ["config.json"])
def _(d):
    os.unlink(p(d, "config.json"))


@case("cfg_missing_hidden_size", ST, ["config.json", "hidden_size"], logits=True)
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.pop("hidden_size"))


@case("cfg_hidden_size_string", ST, ["config.json", "hidden_size"])
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.__setitem__("hidden_size", "32"))


@case("cfg_heads_not_dividing_hidden", ST, ["config.json", ("num_attention_heads", "hidden_size")])
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.__setitem__("num_attention_heads", 5))


@case("cfg_negative_layers", ST, ["config.json", "num_hidden_layers"])
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.__setitem__("num_hidden_layers", -1))


@case("cfg_bad_position_encoding", ST, ["config.json", "position_encoding"])
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.__setitem__("position_encoding", "xpos"))


@case("cfg_vocab_size_mismatch", ST, [("model.embed_tokens.weight", "lm_head.weight", "vocab_size"), "125000"])
def _(d):
    edit_json(p(d, "config.json"), lambda c: c.__setitem__("vocab_size", 125000))


# --- PyTorch .bin -----------------------------------------------------------


@case("bin_truncated_at_start", BIN, [BIN_FILE])
def _(d):
    truncate(p(d, BIN_FILE), 10)


@case("bin_truncated_in_half", BIN, [BIN_FILE])
def _(d):
    truncate(p(d, BIN_FILE), os.path.getsize(p(d, BIN_FILE)) // 2)


@case("bin_truncated_in_central_directory", BIN, [BIN_FILE])
def _(d):
    truncate(p(d, BIN_FILE), os.path.getsize(p(d, BIN_FILE)) - 40)


@case("bin_truncated_last_byte", BIN, [BIN_FILE])
def _(d):
    truncate(p(d, BIN_FILE), os.path.getsize(p(d, BIN_FILE)) - 1)


@case("bin_not_a_zip", BIN, [BIN_FILE])
def _(d):
    rewrite(p(d, BIN_FILE), b"this is not a zip archive\n" * 100)


@case("bin_forbidden_global", BIN, [BIN_FILE, "forbidden"], logits=True)
def _(d):
    zip_write(p(d, BIN_FILE), [("archive/data.pkl", forbidden_pickle()), ("archive/version", b"3\n")])


@case("bin_deflate_compressed", BIN, [BIN_FILE])
def _(d):
    zip_write(p(d, BIN_FILE), zip_entries(p(d, BIN_FILE)), zipfile.ZIP_DEFLATED)


@case("bin_missing_storage", BIN, [BIN_FILE])
def _(d):
    entries = zip_entries(p(d, BIN_FILE))
    kept = [(n, b) for n, b in entries if not n.endswith("/data/0")]
    assert len(kept) == len(entries) - 1
    zip_write(p(d, BIN_FILE), kept)


@case("bin_pickle_truncated", BIN, [BIN_FILE])
def _(d):
    entries = zip_entries(p(d, BIN_FILE))
    zip_write(p(d, BIN_FILE), [(n, b[:len(b) // 2] if n.endswith("/data.pkl") else b) for n, b in entries])


@case("bin_storage_too_short", BIN, [BIN_FILE])
def _(d):
    entries = zip_entries(p(d, BIN_FILE))
    zip_write(p(d, BIN_FILE), [(n, b[:-2] if n.endswith("/data/0") else b) for n, b in entries])


@case("bin_sharded_missing_shard_file", BINSH, [BINSH_FILES[1]])
def _(d):
    os.unlink(p(d, BINSH_FILES[1]))


# --- directories ------------------------------------------------------------


@case("dir_without_weights", ST, ["{dir}"])
def _(d):
    os.unlink(p(d, ST_FILE))


@case("path_does_not_exist", ST, ["{dir}"], logits=True)
def _(d):
    shutil.rmtree(d)


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def run_cli(binary, args):
    """(returncode or None on timeout, stderr text, seconds)."""
    t0 = time.monotonic()
    try:
        pr = subprocess.run([binary] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=TIME_LIMIT_S)
        rc, err = pr.returncode, pr.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, e.stderr or b""
    return rc, err.decode("utf-8", "replace"), time.monotonic() - t0


def check_failure(rc, stderr, expect, model_dir, work):
    """A list of problems with a run that should have failed cleanly."""
    problems = []
    if rc is None:
        return ["did not finish within %.0f s" % TIME_LIMIT_S]
    if rc == 0:
        problems.append("exit status 0")
    elif rc < 0 or rc >= 128:
        problems.append("exit status %d (signal?)" % rc)
    for w in SANITIZER_WORDS:
        if w in stderr:
            problems.append("sanitizer report (%s)" % w)
    line = stderr[:-1] if stderr.endswith("\n") else stderr
    if "\n" in line:
        problems.append("stderr has %d lines" % (line.count("\n") + 1))
    if not line.startswith(ERROR_PREFIX):
        problems.append("stderr does not start with %r" % ERROR_PREFIX)
    # The paths must not supply what is looked for: the random temporary
    # directory could hold a size, and a case's directory is named after what
    # it breaks ("cfg_missing_hidden_size").
    dir_base = os.path.basename(os.path.normpath(model_dir))
    text = line.replace(work, "<tmp>").replace(dir_base, "<dir>")
    for group in expect:
        words = ["<dir>" if w == "{dir}" else w for w in group]
        if not any(_mentions(text, w) for w in words):
            problems.append("message lacks %s" % " or ".join(repr(w) for w in words))
    return problems


def _mentions(text, word):
    if word.isdigit():  # a size: a whole number, not part of a longer one
        return re.search(r"(?<![0-9])%s(?![0-9])" % word, text) is not None
    return word in text


def short(s, n=220):
    s = s.strip().replace("\n", " | ")
    return s if len(s) <= n else s[:n - 3] + "..."


def run_case(t, binary, fixtures, work, c):
    d = os.path.join(work, c.name)
    clone(os.path.join(fixtures, c.base), d)
    try:
        if c.make is None:  # control
            rc, err, dt = run_cli(binary, ["info", "-m", d])
            ok = rc == 0
            t.record(ok, "%s info: exit %s in %.2f s%s" % (c.name, rc, dt, "" if ok else ": " + short(err)))
            return
        c.make(d)
        commands = [["info", "-m", d]]
        if c.logits:
            commands.append(["logits", "-m", d, "--tokens", "1 2 3", "-o", os.path.join(work, "logits.out")])
        for args in commands:
            rc, err, dt = run_cli(binary, args)
            problems = check_failure(rc, err, c.expect, d, work)
            detail = "; ".join(problems) + ": " if problems else ""
            t.record(not problems, "%s %s: exit %s in %.2f s: %s%s" % (c.name, args[0], rc, dt, detail, short(err)))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    global TIME_LIMIT_S
    ap = argparse.ArgumentParser(description="the engine against corrupt checkpoints")
    ap.add_argument("--bin", help="the baichuan executable")
    ap.add_argument("--fixtures", help="fixture directory (missing fixtures are generated)")
    ap.add_argument("--only", nargs="+", metavar="CASE", help="only these cases")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds one run may take (default 1)")
    args = ap.parse_args(argv)
    TIME_LIMIT_S = args.time_limit
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    if not args.bin or not args.fixtures:
        ap.error("--bin and --fixtures are required")
    cases = [c for c in CASES if not args.only or c.name in args.only]
    unknown = set(args.only or []) - {c.name for c in CASES}
    if unknown:
        ap.error("unknown cases: %s" % ", ".join(sorted(unknown)))
    binary = os.path.abspath(args.bin)
    bc_testlib.ensure_fixtures(args.fixtures, sorted({c.base for c in cases}))
    t = Tally()
    # Beside the fixtures, so that clones can be hard links on the same file system.
    try:
        work = tempfile.mkdtemp(prefix="bc_corrupt_", dir=os.path.dirname(os.path.abspath(args.fixtures)))
    except OSError:
        work = tempfile.mkdtemp(prefix="bc_corrupt_")
    try:
        for c in cases:
            try:
                run_case(t, binary, args.fixtures, work, c)
            except Exception as e:  # a bug in a case's setup fails that case only
                t.record(False, "%s: setting up the case failed: %r" % (c.name, e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
