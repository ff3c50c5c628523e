#!/usr/bin/python3
"""`baichuan serve` and its paged KV pool: preemption under memory pressure,
the prefix cache, admission limits, and the memory bound.

- More long requests than the pool holds at once: every one completes with
  exactly the text it gets when run alone (greedy, f32 cache), the server
  reports preemptions, and its peak RSS stays within the memory bound it
  printed at start-up.
- A shared system prompt and a growing conversation: the second request
  reports the shared blocks as usage.prompt_tokens_details.cached_tokens, the
  /metrics hit/miss counters agree, and the text equals that of a server
  without the prefix cache.
- A request that can never fit (prompt + max_tokens past what one sequence
  may hold) is a 400 naming the limit; -c and --kv-memory size the pool.

    test_server_kv.py --bin build/baichuan --work DIR
"""
import argparse
import json
import os
import re
import sqlite3
import sys
import threading

import bc_testlib
from server_util import Server

COMP = "/v1/completions"
CHAT = "/v1/chat/completions"
# Greedy, and a negative frequency penalty keeps it from reaching EOS: every
# request generates exactly max_tokens.
NO_EOS = {"temperature": 0, "repetition_penalty": 1.0, "frequency_penalty": -2.0}

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def vm_hwm_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_bound(log):
    for line in log:
        m = re.search(r"memory bound ([0-9.]+) GiB", line)
        if m:
            return float(m.group(1)) * 2**30
    raise AssertionError("no memory bound in the start-up output:\n" + "\n".join(log))


def run_concurrently(s, bodies, path=COMP):
    """[(status, json)] of the bodies posted to path at once."""
    out = [None] * len(bodies)

    def go(i):
        st, _, v = s.post(path, bodies[i], timeout=600)
        out[i] = (st, v)

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_preemption(t, binary, work):
    # 8 requests of 23..67 + 160 positions (12 to 15 blocks each) on a pool of 40
    # blocks with 4 slots: at most 3 fit at full length, so the newest are
    # preempted and recomputed.
    prompts = [POEM * (1 + i % 3) + str(i) for i in range(8)]
    bodies = [dict(prompt=p, max_tokens=160, **NO_EOS) for p in prompts]
    alone = {}
    s = Server(binary, "--parallel", "1", "--cache-type", "f32", "-c", "1024")
    try:
        for i, b in enumerate(bodies):
            st, _, v = s.post(COMP, b, timeout=600)
            alone[i] = (v["choices"][0]["text"], v["usage"]["completion_tokens"]) if st == 200 else None
    finally:
        s.stop()
    ledger = os.path.join(work, "preempt.sqlite")
    if os.path.exists(ledger):
        os.unlink(ledger)
    s = Server(binary, "--parallel", "4", "--cache-type", "f32", "-c", "640", "-t", "2", "--ledger", ledger)
    try:
        bound = memory_bound(s.log)
        got = run_concurrently(s, bodies)
        hwm = vm_hwm_bytes(s.proc.pid)
        _, m = s.metrics()
    finally:
        s.stop()
    t.record(sum(n for _, n in alone.values()) >= 6 * 160, "alone, most requests generate 160 tokens (%s)" %
             [n for _, n in alone.values()])
    t.record(all(st == 200 for st, _ in got), "8 requests on a pool too small for 4 at once: all 200 (%s)" %
             [st for st, _ in got])
    same = [i for i, (st, v) in enumerate(got)
            if st == 200 and (v["choices"][0]["text"], v["usage"]["completion_tokens"]) == alone[i]]
    t.record(len(same) == 8, "preempted and recomputed: the text equals the request alone (%d of 8)" % len(same))
    t.record(m["baichuan_preemptions_total"] > 0, "preemptions reported: %d" % m["baichuan_preemptions_total"])
    db = sqlite3.connect(ledger)
    rows = {r[0]: r[1:] for r in db.execute("SELECT request_id, status, prompt_tokens, completion_tokens FROM requests")}
    db.close()
    seen = {v["id"]: (200, v["usage"]["prompt_tokens"], v["usage"]["completion_tokens"]) for st, v in got if st == 200}
    t.record(rows == seen, "the ledger holds exactly what the clients saw (%d rows, %d replies)" % (len(rows), len(seen)))
    t.record(m["baichuan_active_slots"] == 0 and m["baichuan_kv_blocks_free"] == m["baichuan_kv_blocks"],
             "all blocks free again after the load (%d of %d)" % (m["baichuan_kv_blocks_free"],
                                                                  m["baichuan_kv_blocks"]))
    # The bound covers the engine (weights, pool, scratch); the process adds
    # its libraries, thread stacks and the requests' buffers.
    slack = 96 * 2**20
    t.record(hwm <= bound + slack, "peak RSS %.1f MiB <= memory bound %.1f MiB + %d MiB" %
             (hwm / 2**20, bound / 2**20, slack // 2**20))


def test_prefix_cache(t, binary):
    system = "你是一个乐于助人的助手。" + POEM * 6
    first = [{"role": "system", "content": system}, {"role": "user", "content": "写一首诗"}]
    other = [{"role": "system", "content": system}, {"role": "user", "content": "再写一首"}]
    texts = {}
    for flags in ([], ["--no-prefix-cache"]):
        s = Server(binary, "--parallel", "2", "--cache-type", "f32", "-c", "2048", *flags)
        try:
            out = []
            st1, _, v1 = s.post(CHAT, {"messages": first, "max_tokens": 24, **NO_EOS})
            st2, _, v2 = s.post(CHAT, {"messages": other, "max_tokens": 24, **NO_EOS})
            reply = v1["choices"][0]["message"]["content"]
            turn2 = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "好"}]
            st3, _, v3 = s.post(CHAT, {"messages": turn2, "max_tokens": 24, **NO_EOS})
            stream_st, events, _ = s.stream(CHAT, {"messages": other, "max_tokens": 8, "stream": True,
                                                   "stream_options": {"include_usage": True}, **NO_EOS})
            _, m = s.metrics()
        finally:
            s.stop()
        assert st1 == st2 == st3 == stream_st == 200, (st1, st2, st3, stream_st)
        out = [v["choices"][0]["message"]["content"] for v in (v1, v2, v3)]
        texts[bool(flags)] = out
        cached = [v["usage"]["prompt_tokens_details"]["cached_tokens"] for v in (v1, v2, v3)]
        prompts = [v["usage"]["prompt_tokens"] for v in (v1, v2, v3)]
        if flags:
            t.record(cached == [0, 0, 0], "--no-prefix-cache: no cached tokens (%s)" % cached)
            continue
        t.record(cached[0] == 0, "first request: nothing cached (%d of %d)" % (cached[0], prompts[0]))
        # The shared system prompt: all its whole 16-position blocks.
        t.record(cached[1] >= prompts[1] - 16 - 8 and cached[1] % 16 == 0,
                 "same system prompt: %d of %d prompt tokens cached" % (cached[1], prompts[1]))
        t.record(cached[2] >= (prompts[0] // 16) * 16,
                 "next turn of the conversation: %d of %d cached (the first turn had %d)" %
                 (cached[2], prompts[2], prompts[0]))
        usage = events[-1]["usage"]
        t.record(usage["prompt_tokens_details"]["cached_tokens"] == cached[1],
                 "streamed usage reports cached_tokens too (%s)" % usage["prompt_tokens_details"])
        hits = m["baichuan_prefix_cache_hit_tokens_total"]
        misses = m["baichuan_prefix_cache_miss_tokens_total"]
        total = sum(prompts) + usage["prompt_tokens"]
        t.record(hits == sum(cached) + usage["prompt_tokens_details"]["cached_tokens"] and hits + misses == total,
                 "/metrics: %d hit + %d miss tokens = %d prompt tokens" % (hits, misses, total))
    t.record(texts[False] == texts[True], "the replies equal those of a server without the prefix cache")


def test_concurrent_shared_prompt(t, binary):
    # Four requests sharing a long system prompt arrive together: the first
    # computes it, the others wait for its blocks and take them.
    system = "你是一个乐于助人的助手。" + POEM * 6
    bodies = [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": "第%d首" % i}],
               "max_tokens": 8, **NO_EOS} for i in range(4)]
    s = Server(binary, "--parallel", "4", "-c", "2048", "-t", "2")
    try:
        out = run_concurrently(s, bodies, CHAT)
        _, m = s.metrics()
    finally:
        s.stop()
    ok = all(st == 200 for st, _ in out)
    cached = sorted(v["usage"]["prompt_tokens_details"]["cached_tokens"] for _, v in out) if ok else []
    prompt = out[0][1]["usage"]["prompt_tokens"] if ok else 0
    t.record(ok and cached[0] == 0 and all(c >= prompt - 16 - 8 for c in cached[1:]),
             "4 requests with one system prompt at once: computed once, cached for 3 (%s of %d)" % (cached, prompt))
    t.record(m["baichuan_prefix_cache_miss_tokens_total"] <= prompt + 3 * 24,
             "/metrics: %d prompt tokens computed of %d" % (m["baichuan_prefix_cache_miss_tokens_total"],
                                                          4 * prompt))


def test_limits(t, binary):
    s = Server(binary, "--parallel", "2", "-c", "256")
    try:
        st, _, v = s.post(COMP, {"prompt": POEM * 4, "max_tokens": 200})
        msg = v["error"]["message"] if isinstance(v, dict) and "error" in v else str(v)
        t.record(st == 400 and "256" in msg, "prompt + max_tokens past the 256 positions: 400 (%s)" % msg[:120])
        st, _, v = s.post(COMP, {"prompt": POEM, "max_tokens": 16})
        t.record(st == 200, "a request that fits: 200")
        _, m = s.metrics()
        t.record(m["baichuan_kv_blocks"] == 16, "-c 256: 16 blocks (%d)" % m["baichuan_kv_blocks"])
    finally:
        s.stop()
    s = Server(binary, "--parallel", "2", "--kv-memory", "3M", "--cache-type", "q8_0")
    try:
        _, m = s.metrics()
        line = [x for x in s.log if "KV pool" in x]
        t.record(m["baichuan_kv_blocks"] > 0 and "q8_0" in line[0], "--kv-memory 3M, q8_0: %d blocks (%s)" %
                 (m["baichuan_kv_blocks"], line[0][:160]))
        st, _, v = s.post(COMP, {"prompt": POEM, "max_tokens": 16})
        t.record(st == 200, "q8_0 cache serves: 200")
    finally:
        s.stop()
    for flags, want in ((["--kv-memory", "lots"], "--kv-memory"), (["--cache-type", "q4_0"], "--cache-type"),
                        (["-c", "8"], "block")):
        import subprocess
        r = subprocess.run([binary, "serve", "--port", "0", *flags], capture_output=True, text=True, timeout=60)
        t.record(r.returncode != 0 and want in r.stderr, "serve %s: refused (%s)" % (" ".join(flags),
                                                                                    r.stderr.strip()[:120]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t = bc_testlib.Tally()
    test_limits(t, args.bin)
    test_prefix_cache(t, args.bin)
    test_concurrent_shared_prompt(t, args.bin)
    test_preemption(t, args.bin, args.work)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
