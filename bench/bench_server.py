#!/usr/bin/python3
"""Aggregate generation throughput of `baichuan serve` with 1, 4 and 8
concurrent streams (a program that prints figures, not a test).

Each stream is a /v1/completions request with a token-id prompt (so a model
without a tokenizer of its own works with any --tokenizer), streamed, with
usage. Aggregate tokens/s = all completion tokens / wall time from the first
request sent to the last stream finished.

    bench/bench_server.py --bin build/baichuan --model /tmp/b1b-q4_0.gguf --tokenizer /tmp/b1b
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from server_util import Server, parse_sse  # noqa: E402


def one_stream(s, prompt, max_tokens, seed, out, i):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=3600)
    body = {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "temperature": 1.0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.time()
    c.request("POST", "/v1/completions", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = None
    data = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        if first is None and b'"text"' in chunk:
            first = time.time() - t0
        data += chunk
    events, done = parse_sse(data)
    usage = events[-1].get("usage") if events else None
    out[i] = (usage["completion_tokens"] if usage else 0, first or 0.0, done)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/baichuan")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer")
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--ctx-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    streams = [int(x) for x in args.streams.split(",")]
    extra = ["--tokenizer", args.tokenizer] if args.tokenizer else []
    s = Server(args.bin, "--parallel", str(max(streams)), "--ctx-size", str(args.ctx_size), *extra,
               model=args.model)
    # Server() passes -t 1 for the tests; the benchmark wants the threads asked for.
    s.stop()
    s = Server(args.bin, "--parallel", str(max(streams)), "--ctx-size", str(args.ctx_size), "-t",
               str(args.threads or os.cpu_count()), *extra, model=args.model)
    rng = random.Random(1)
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print("model %s, %d threads, %d-token prompts, %d tokens per stream" % (
        args.model, args.threads or os.cpu_count(), args.prompt_len, args.max_tokens))
    # Warm-up (page the weights in).
    one_stream(s, [rng.randrange(100, 8000) for _ in range(args.prompt_len)], 4, 0, [None], 0)
    base = None
    print("%8s %12s %14s %12s %10s" % ("streams", "tokens", "seconds", "tokens/s", "speedup"))
    for n in streams:
        out = [None] * n
        prompts = [[rng.randrange(100, 8000) for _ in range(args.prompt_len)] for _ in range(n)]
        threads = [threading.Thread(target=one_stream, args=(s, prompts[i], args.max_tokens, i, out, i))
                   for i in range(n)]
        t0 = time.time()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.time() - t0
        tokens = sum(o[0] for o in out)
        rate = tokens / wall
        base = base or rate
        print("%8d %12d %14.2f %12.2f %9.2fx   (mean time to first token %.2f s)" % (
            n, tokens, wall, rate, rate / base, sum(o[1] for o in out) / n), flush=True)
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    s.stop()


if __name__ == "__main__":
    main()
