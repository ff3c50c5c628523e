#!/usr/bin/python3
"""`baichuan serve --step-tokens`: chunked prefill, and the latency histograms.

- The same greedy replies whatever the step's budget: a long prompt and
  three streams running beside it, on servers with the default
  --step-tokens, 16, and the least (--parallel), f32 cache; the long
  prompt's logprobs agree within 1e-4 (this engine's sums still round with
  the chunking; see test_same_replies).
- A long prompt does not stall a running stream: with a small budget the
  prompt is computed a chunk per step, and the stream's tokens keep arriving
  between the long request's send and its first token (a step's worth of
  them per chunk; the check asks for far fewer, so a loaded machine's late
  reads cannot fail it, while an unchunked prompt, a few steps, would).
- /metrics: baichuan_time_to_first_token_seconds counts one per request and
  baichuan_inter_token_latency_seconds one per token after a stream's first
  (requests whose token counts the test fixes), in the Prometheus text
  format (checked here against the format's rules: HELP and TYPE, buckets
  cumulative in increasing le ending at +Inf equal to _count, _sum).
- --step-tokens 0, negative, not a number or missing: exit 1 naming the
  option; out of [--parallel, -b] it is brought into it, as the start-up
  line says.

    test_server_prefill.py --bin build/baichuan --work DIR
"""
import argparse
import http.client
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import bc_testlib
from server_util import Server

COMP = "/v1/completions"
CHAT = "/v1/chat/completions"
# Greedy, and the eos id (2) banned: every request generates exactly max_tokens.
NO_EOS = {"temperature": 0, "logit_bias": {"2": -100}}
POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 22 tokens of the default model
LONG = POEM * 40  # 880 tokens: most of the default model's 1,024 positions
SHORT = ["你是一个乐于助人的助手。", "春眠不觉晓，处处闻啼鸟。", "白日依山尽，黄河入海流。"]


class TimedStream:
    """A streamed /v1/completions request on its own thread, with logprobs
    so that every token is an event of its own: times holds time.time() as
    each token's event was read. close() hangs up."""

    def __init__(self, port, body):
        self.times, self.text, self.error, self.t_send = [], "", None, None
        self._closing = threading.Event()
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self._body = dict(body, stream=True, logprobs=0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self.t_send = time.time()
            self._conn.request("POST", COMP, body=json.dumps(self._body).encode(),
                               headers={"Content-Type": "application/json"})
            r = self._conn.getresponse()
            if r.status != 200:
                self.error = "HTTP %d" % r.status
                return
            buf = b""
            while not self._closing.is_set():
                chunk = r.read1(65536)
                if not chunk:
                    break
                now = time.time()
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    if not block.startswith(b"data: ") or block[6:] == b"[DONE]":
                        continue
                    for ch in json.loads(block[6:]).get("choices", []):
                        self.times.extend([now] * len((ch.get("logprobs") or {}).get("tokens") or []))
                        self.text += ch.get("text") or ""
        except (OSError, http.client.HTTPException, ValueError) as e:
            if not self._closing.is_set():
                self.error = "%s: %s" % (type(e).__name__, e)

    def wait(self, pred, timeout=300):
        end = time.time() + timeout
        while not pred() and self._thread.is_alive() and time.time() < end:
            time.sleep(0.005)
        return pred()

    def close(self):
        self._closing.set()
        try:
            if self._conn.sock is not None:
                self._conn.sock.shutdown(2)
        except OSError:
            pass
        self._thread.join(60)
        self._conn.close()


def replies(s):
    """The choices of the long request and of three streams running beside
    it: the streams are sent first, the long prompt once each has a token."""
    out = {}
    shorts = [TimedStream(s.port, dict(NO_EOS, prompt=p, max_tokens=64)) for p in SHORT]
    for st in shorts:
        st.wait(lambda st=st: len(st.times) > 0)
    status, _, v = s.post(COMP, dict(NO_EOS, prompt=LONG, max_tokens=24, logprobs=3), timeout=600)
    out["long"] = v["choices"] if status == 200 else ("HTTP %d" % status, v)
    for i, st in enumerate(shorts):
        st.wait(lambda: False, timeout=600)  # until the stream ends
        st.close()
        out["short%d" % i] = (st.error, st.text, len(st.times))
    return out


def outputs(v):
    """What greedy decoding gave: the choices without their logprob values (kept apart, as floats)."""
    if not isinstance(v["long"], list):
        return v, []
    long, values = [], []
    for c in v["long"]:
        lp = c["logprobs"]
        long.append(dict(c, logprobs=dict(lp, token_logprobs=None, top_logprobs=[sorted(d) for d in lp["top_logprobs"]])))
        values += lp["token_logprobs"] + [x for d in lp["top_logprobs"] for _, x in sorted(d.items())]
    return dict(v, long=long), values


def test_same_replies(t, binary):
    got = {}
    for flags in ([], ["--step-tokens", "16"], ["--step-tokens", "4"]):
        s = Server(binary, "--parallel", "4", "--cache-type", "f32", "-c", "4096", *flags)
        try:
            got[" ".join(flags) or "default"] = replies(s)
            line = [x for x in s.log if "on http://" in x]
        finally:
            s.stop()
        t.record(bool(line) and ("step 4 tokens" in line[0]) == ("4" in flags), "start-up line: %s" %
                 (line[0][line[0].find("batch"):] if line else "(none)"))
    base = got["default"]
    ok_base = isinstance(base["long"], list) and all(base["short%d" % i][0] is None and base["short%d" % i][2] == 64
                                                     for i in range(3))
    t.record(ok_base, "default budget: the long request and 3 streams of 64 tokens served (%s)" %
             [base["short%d" % i][::2] for i in range(3)])
    base_out, base_lp = outputs(base)
    for name, v in got.items():
        if name == "default":
            continue
        out, lp = outputs(v)
        t.record(out == base_out, "%s: the same greedy text and tokens, long prompt and streams, as the default "
                 "budget" % name)
        # The logits themselves: this engine's f32 sums still round differently with the chunking (1e-6 seen);
        # bit-identical once the attention keeps one key-block order whatever the chunk (issue 23, item 3).
        diff = max((abs(a - b) for a, b in zip(lp, base_lp)), default=math.inf)
        t.record(len(lp) == len(base_lp) and diff <= 1e-4,
                 "%s: the long prompt's logprobs (top 3 too) within 1e-4 of the default budget's (largest difference %.2g)" %
                 (name, diff))


def test_stream_not_stalled(t, binary):
    # Budget 3 with 2 slots: each step carries the stream's token and 2 of the
    # long prompt's, so its prefill takes ~440 steps, each giving the stream a
    # token; unchunked (-b 256) it would take 4.
    s = Server(binary, "--parallel", "2", "--step-tokens", "3", "-c", "2048")
    try:
        stream = TimedStream(s.port, dict(NO_EOS, prompt=SHORT[0], max_tokens=1000))
        stream.wait(lambda: len(stream.times) >= 4)
        long = TimedStream(s.port, dict(NO_EOS, prompt=LONG, max_tokens=1))
        long.wait(lambda: len(long.times) > 0, timeout=600)
        long.wait(lambda: False, timeout=60)  # its end
        stream.close()
        long.close()
    finally:
        s.stop()
    t.record(long.error is None and len(long.times) == 1, "the long prompt's request served (%s, %d token)" %
             (long.error, len(long.times)))
    if not long.times:
        return
    t_send, t_first = long.t_send, long.times[0]
    during = [x for x in stream.times if t_send < x < t_first]
    t.record(len(during) >= 1, "the running stream got %d tokens while the long prompt was prefilled (%.2f s)" %
             (len(during), t_first - t_send))
    t.record(len(during) >= 50, "... a token per chunk of the prompt, not a few: %d >= 50 of the ~440 steps" %
             len(during))


# --- the Prometheus text format, from its specification ---------------------
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (\S+)$')


def parse_exposition(text):
    """{family: {"type", "help", "samples": [(name, labels dict, value)]}}; raises on a line the format forbids."""
    fam, current = {}, None
    for line in text.split("\n"):
        if line == "":
            continue
        m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$", line)
        if m:
            f = fam.setdefault(m.group(2), {"type": "untyped", "help": None, "samples": []})
            if m.group(1) == "TYPE":
                assert not f["samples"], "TYPE after samples of " + m.group(2)
                assert m.group(3) in ("counter", "gauge", "histogram", "summary", "untyped"), line
                f["type"] = m.group(3)
            else:
                f["help"] = m.group(3)
            current = m.group(2)
            continue
        assert not line.startswith("#") or line.startswith("# "), line
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        value = float(m.group(4))  # Go's ParseFloat forms: +Inf, NaN, 1e-3 all parse
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] == current:
                base = current
        assert base == current, "sample %s outside its family (%s)" % (name, current)
        fam[base]["samples"].append((name, labels, value))
    return fam


def check_histogram(fam, name, lo, hi):
    """Checks one histogram family against the format's rules; returns its _count. lo, hi: the first and the
    last finite bucket bound asked for."""
    f = fam.get(name)
    assert f is not None, "no %s" % name
    assert f["type"] == "histogram" and f["help"], (name, f["type"], f["help"])
    buckets = [(lab["le"], v) for n, lab, v in f["samples"] if n == name + "_bucket"]
    sums = [v for n, _, v in f["samples"] if n == name + "_sum"]
    counts = [v for n, _, v in f["samples"] if n == name + "_count"]
    assert len(sums) == 1 and len(counts) == 1, (name, sums, counts)
    assert buckets and buckets[-1][0] == "+Inf", (name, buckets[-1:])
    bounds = [float(le) for le, _ in buckets[:-1]]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), (name, bounds)
    assert math.isclose(bounds[0], lo) and math.isclose(bounds[-1], hi), (name, bounds[0], bounds[-1])
    values = [v for _, v in buckets]
    assert values == sorted(values), (name, "not cumulative", values)
    assert values[-1] == counts[0], (name, "+Inf bucket", values[-1], "_count", counts[0])
    assert sums[0] >= 0 and (counts[0] > 0 or sums[0] == 0), (name, sums[0], counts[0])
    return counts[0], sums[0]


def test_metrics(t, binary):
    s = Server(binary, "--parallel", "2")
    t0 = time.time()
    try:
        # (body, endpoint): every choice generates exactly max_tokens (NO_EOS).
        reqs = [(dict(NO_EOS, prompt=POEM, max_tokens=5), COMP),
                (dict(NO_EOS, prompt=SHORT[1], max_tokens=7, stream=True), COMP),
                (dict(NO_EOS, messages=[{"role": "user", "content": SHORT[2]}], max_tokens=4, n=2), CHAT),
                (dict(NO_EOS, messages=[{"role": "user", "content": POEM}], max_tokens=3, stream=True), CHAT)]
        served = []
        for body, path in reqs:
            if body.get("stream"):
                st, events, done = s.stream(path, dict(body, stream_options={"include_usage": True}))
                usage = events[-1].get("usage") if st == 200 and events else None
            else:
                st, _, v = s.post(path, body)
                usage = v.get("usage") if st == 200 else None
            served.append((st, usage["completion_tokens"] if usage else None))
        elapsed = time.time() - t0
        text, _ = s.metrics()
    finally:
        s.stop()
    want_tokens = [b["max_tokens"] * b.get("n", 1) for b, _ in reqs]
    t.record(served == [(200, n) for n in want_tokens], "4 requests served with the token counts asked (%s)" % served)
    try:
        fam = parse_exposition(text)
        n_ttft, sum_ttft = check_histogram(fam, "baichuan_time_to_first_token_seconds", 0.005, 60)
        n_itl, sum_itl = check_histogram(fam, "baichuan_inter_token_latency_seconds", 0.001, 5)
        check_histogram(fam, "baichuan_time_per_output_token_seconds", 0.001, 1)
        fmt = None
    except AssertionError as e:
        fmt, n_ttft, n_itl, sum_ttft, sum_itl = str(e), -1, -1, 0, 0
    t.record(fmt is None, "/metrics is valid Prometheus text with the three histograms (%s)" % (fmt or "ok"))
    t.record(n_ttft == len(reqs), "TTFT histogram: one per request (%d of %d)" % (n_ttft, len(reqs)))
    want_itl = sum((b["max_tokens"] - 1) * b.get("n", 1) for b, _ in reqs)
    t.record(n_itl == want_itl, "inter-token latency histogram: one per token after a stream's first (%d of %d)" %
             (n_itl, want_itl))
    t.record(0 < sum_ttft <= n_ttft * elapsed and 0 < sum_itl <= elapsed * 2,
             "histogram sums within the run's %.2f s (TTFT %.3f s, ITL %.3f s)" % (elapsed, sum_ttft, sum_itl))


def test_bad_values(t, binary):
    for value in ("0", "-3", "abc", "12x", ""):
        r = subprocess.run([binary, "serve", "--port", "0", "--step-tokens", value], capture_output=True, text=True,
                           timeout=60)
        t.record(r.returncode == 1 and "--step-tokens" in r.stderr and "integer" in r.stderr,
                 "--step-tokens %r: exit %d (%s)" % (value, r.returncode, r.stderr.strip()[:100]))
    r = subprocess.run([binary, "serve", "--port", "0", "--step-tokens"], capture_output=True, text=True, timeout=60)
    t.record(r.returncode == 1 and "--step-tokens" in r.stderr, "--step-tokens without a value: exit %d (%s)" %
             (r.returncode, r.stderr.strip()[:100]))
    for flags, want in ((["--parallel", "4", "--step-tokens", "2"], "step 4 tokens"),
                        (["-b", "32", "--step-tokens", "100"], "step 32 tokens"),
                        ([], "step 64 tokens")):
        s = Server(binary, *flags)
        try:
            line = [x for x in s.log if "on http://" in x]
        finally:
            s.stop()
        shown = line[0][line[0].find("batch"):] if line else "no start-up line"
        t.record(bool(line) and want in line[0], "serve %s: %s (%s)" % (" ".join(flags) or "(defaults)", want, shown))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t = bc_testlib.Tally()
    test_bad_values(t, args.bin)
    test_metrics(t, args.bin)
    test_stream_not_stalled(t, args.bin)
    test_same_replies(t, args.bin)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
