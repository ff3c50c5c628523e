#!/usr/bin/python3
"""`baichuan serve` under load: 32 clients at once with some disconnecting
mid-stream, disconnects while waiting (queued, or not streamed), and a
SIGKILL under load followed by a restart on the same ledger.

What the clients observed is the reference: the ledger must hold exactly the
requests they saw complete (by response id), the cancelled ones as 499, and
/metrics must show no slot left in use.

    test_server_load.py --bin build/baichuan --work DIR
"""
import argparse
import http.client
import json
import os
import shutil
import sqlite3
import sys
import threading
import time

import bc_testlib
from server_util import Server, parse_sse, stream_text, wait_for

COMP = "/v1/completions"
CHAT = "/v1/chat/completions"
# Requests that must not end on their own before the test cuts them: greedy
# with a negative frequency penalty repeats itself and never reaches EOS.
NO_EOS = {"temperature": 0, "repetition_penalty": 1.0, "frequency_penalty": -2.0}


def ledger_rows(path):
    db = sqlite3.connect(path)
    rows = db.execute("SELECT request_id, status, finish_reason, prompt_tokens, completion_tokens FROM requests"
                      ).fetchall()
    db.close()
    return rows


def idle(s):
    _, v = s.metrics()
    return v["baichuan_active_slots"] == 0 and v["baichuan_queue_depth"] == 0


def open_stream(s, path, body):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def check_concurrency(t, binary, work):
    ledger = os.path.join(work, "load.sqlite")
    s = Server(binary, "--parallel", "8", "--queue", "64", "--ledger", ledger)
    n_clients, quitters = 32, {3, 9, 17, 26}
    results = [None] * n_clients

    def client(i):
        try:
            if i in quitters:  # read the first event, then hang up
                body = dict(NO_EOS, prompt="The %d" % i, max_tokens=400, stream=True)
                c, r = open_stream(s, COMP, body)
                first = r.readline()  # chunk-aware
                c.sock.shutdown(2)
                c.close()
                results[i] = ("quit", first.startswith(b"data: "))
            elif i % 2 == 0:
                body = {"messages": [{"role": "user", "content": "你好 %d" % i}], "max_tokens": 12, "seed": i,
                        "stream": True, "stream_options": {"include_usage": True}}
                st, events, done = s.stream(CHAT, body)
                results[i] = ("stream", st, done, events[-1]["id"] if events else None,
                              stream_text(events)[0], events[-1].get("usage") if events else None, body)
            else:
                body = {"prompt": "床前明月光 %d" % i, "max_tokens": 12, "seed": i}
                st, _, r = s.post(COMP, body)
                results[i] = ("plain", st, True, r.get("id"), r["choices"][0]["text"], r.get("usage"), body)
        except Exception as e:  # noqa: BLE001  (recorded as a failure below)
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    completed = [r for r in results if r and r[0] in ("stream", "plain")]
    t.check("all 28 staying clients completed with 200", len(completed) == 28 and
            all(r[1] == 200 and r[2] for r in completed), [r for r in results if not r or r[0] == "error"][:3])
    t.check("the 4 quitters got a first event", all(results[i] == ("quit", True) for i in quitters),
            [results[i] for i in quitters])
    t.check("no slot leaks: 0 active, 0 queued afterwards", wait_for(lambda: idle(s), 30), s.metrics()[1])
    # The ledger rows are committed before a reply's end goes out; the quitters' rows when noticed.
    wait_for(lambda: len(ledger_rows(ledger)) >= 32, 30)
    rows = ledger_rows(ledger)
    ok_ids = sorted(r[0] for r in rows if r[1] == 200)
    t.check("ledger: one 200 row per completed request, by id", ok_ids == sorted(r[3] for r in completed),
            (len(ok_ids), len(completed)))
    t.check("ledger: the 4 disconnects are 499 'cancelled'",
            sorted((r[1], r[2]) for r in rows if r[1] != 200) == [(499, "cancelled")] * 4, rows)
    usage_ok = all(any(row[0] == r[3] and (row[3], row[4]) == (r[5]["prompt_tokens"], r[5]["completion_tokens"])
                       for row in rows) for r in completed)
    t.check("ledger tokens == the usage the clients saw", usage_ok)
    # Batched results equal the same requests run alone (streamed or not, any slot).
    for r in completed[:3]:
        body = dict(r[6], stream=False)
        st, _, alone = s.post(CHAT if "messages" in body else COMP, body)
        text = alone["choices"][0]["message"]["content"] if "messages" in body else alone["choices"][0]["text"]
        t.check("a batched request == the same request alone", text == r[4], (text, r[4]))

    # A non-streamed request whose client leaves while it waits: the socket peek cancels it.
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    c.request("POST", COMP, body=json.dumps(dict(NO_EOS, prompt="The", max_tokens=900)).encode(),
              headers={"Content-Type": "application/json"})
    wait_for(lambda: s.metrics()[1]["baichuan_active_slots"] == 1, 10, 0.01)
    c.sock.shutdown(2)
    c.close()
    t.check("non-streamed client gone: slot freed at once", wait_for(lambda: idle(s), 2, 0.02), s.metrics()[1])
    # A queued streaming request whose client leaves before it gets a slot.
    hogs = [open_stream(s, COMP, dict(NO_EOS, prompt="The %d" % k, max_tokens=300, stream=True)) for k in range(8)]
    c, _ = open_stream(s, COMP, {"prompt": "The", "max_tokens": 5, "stream": True})
    wait_for(lambda: s.metrics()[1]["baichuan_queue_depth"] == 1, 10, 0.01)
    c.sock.shutdown(2)
    c.close()
    t.check("queued client gone: dropped from the queue",
            wait_for(lambda: s.metrics()[1]["baichuan_queue_depth"] == 0, 5, 0.02), s.metrics()[1])
    for hc, _ in hogs:
        hc.sock.shutdown(2)
        hc.close()
    t.check("8 streams cut at once: all slots freed", wait_for(lambda: idle(s), 10, 0.02), s.metrics()[1])
    t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    rows = ledger_rows(ledger)
    t.check("ledger: every request has its row (32 + 3 + 1 + 1 + 8)", len(rows) == 45, len(rows))
    t.check("ledger: 31 completed (200), 14 cancelled (499)",
            sorted(r[1] for r in rows) == [200] * 31 + [499] * 14, sorted(r[1] for r in rows))


def check_chunked_prefill(t, binary, work):
    """A long prompt is fed in chunks between the other streams' tokens: a
    running stream keeps getting tokens while it is prefilled; a client that
    leaves during its prefill is cancelled before any token."""
    ledger = os.path.join(work, "prefill.sqlite")
    s = Server(binary, "--parallel", "2", "--batch", "8", "--ledger", ledger)
    try:
        c, r = open_stream(s, COMP, dict(NO_EOS, prompt="The", max_tokens=900, stream=True))
        stamps = []

        def reader():
            try:
                while True:
                    line = r.readline()
                    if not line:
                        return
                    if line.startswith(b"data: "):
                        stamps.append(time.time())
            except (OSError, ValueError, AttributeError):  # the test cuts this stream
                return

        th = threading.Thread(target=reader)
        th.start()
        wait_for(lambda: len(stamps) >= 3, 30, 0.01)
        long_prompt = [10 + (k * 7) % 7000 for k in range(900)]  # 900 tokens: >= 112 steps of 8
        t_send = time.time()
        # Greedy (NO_EOS): a sampled end of sequence after one token would
        # make the ledger's (200, 900, 2) below come out (200, 900, 1).
        c2, r2 = open_stream(s, COMP, dict(NO_EOS, prompt=long_prompt, max_tokens=2, stream=True))
        first = r2.readline()
        while first and not first.startswith(b"data: "):
            first = r2.readline()
        t_first = time.time()
        r2.read()
        c2.close()
        during = sum(1 for x in stamps if t_send < x < t_first)
        print("tokens of the running stream during the long prefill: %d in %.2f s" % (during, t_first - t_send))
        t.check("a running stream keeps producing while a long prompt is prefilled", during >= 50,
                (during, t_first - t_send))
        c.sock.shutdown(2)
        c.close()
        th.join(30)
        wait_for(lambda: idle(s), 10)

        # A non-streamed long prompt whose client leaves during its prefill.
        c3 = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        # (Other ids than the first long prompt's, which the prefix cache now holds.)
        other_prompt = [11 + (k * 13) % 7000 for k in range(900)]
        c3.request("POST", COMP, body=json.dumps({"prompt": other_prompt, "max_tokens": 5}).encode(),
                   headers={"Content-Type": "application/json"})
        wait_for(lambda: s.metrics()[1]["baichuan_active_slots"] == 1, 10, 0.002)
        c3.sock.shutdown(2)
        c3.close()
        t.check("client gone during prefill: slot freed", wait_for(lambda: idle(s), 10, 0.01), s.metrics()[1])
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    rows = ledger_rows(ledger)
    t.check("client gone during prefill: 499 with no token generated",
            sorted((r[1], r[3], r[4]) for r in rows if r[3] == 900) == [(200, 900, 2), (499, 900, 0)], rows)


def check_queue_full(t, binary, work):
    """Beyond the slots requests wait in the bounded queue; beyond it, 503."""
    s = Server(binary, "--parallel", "1", "--queue", "1")
    try:
        hold = open_stream(s, COMP, dict(NO_EOS, prompt="The", max_tokens=900, stream=True))
        wait_for(lambda: s.metrics()[1]["baichuan_active_slots"] == 1, 10, 0.01)
        queued = open_stream(s, COMP, {"prompt": "The", "max_tokens": 2, "stream": True})
        wait_for(lambda: s.metrics()[1]["baichuan_queue_depth"] == 1, 10, 0.01)
        st, h, body = s.post(COMP, {"prompt": "The", "max_tokens": 2})
        e = body.get("error", {}) if isinstance(body, dict) else {}
        t.check("queue full: 503 in the OpenAI shape with Retry-After", st == 503 and "retry-after" in h and
                set(e) == {"message", "type", "param", "code"} and e["code"] == "queue_full", (st, h, body))
        hold[0].sock.shutdown(2)
        hold[0].close()
        events, done = parse_sse(queued[1].read())
        queued[0].close()
        t.check("the queued request runs once a slot frees", done and stream_text(events)[1] == "length", events)
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))


def check_slow_client(t, binary, work):
    """A client that does not read does not hold up the engine: its output
    waits in its own buffer while other requests complete and its slot is
    freed as soon as its generation ends; it gets everything when it reads."""
    import socket
    s = Server(binary, "--parallel", "2")
    try:
        body = dict(NO_EOS, prompt="The", max_tokens=300, stream=True, logprobs=20)  # ~4 KB per event
        so = socket.socket()
        so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        so.connect(("127.0.0.1", s.port))
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
        c.sock = so
        c.request("POST", COMP, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        wait_for(lambda: s.metrics()[1]["baichuan_active_slots"] == 1, 10, 0.01)
        t0 = time.time()
        others = [s.post(COMP, {"prompt": "床前 %d" % k, "max_tokens": 8, "seed": k})[0] for k in range(3)]
        t.check("other requests complete while a client does not read", others == [200] * 3, others)
        t.check("the unread stream's slot is freed when its generation ends",
                wait_for(lambda: idle(s), 120, 0.05), s.metrics()[1])
        r = c.getresponse()
        events, done = parse_sse(r.read())
        c.close()
        text = stream_text(events)[0]
        plain = s.post(COMP, dict(body, stream=False))[2]["choices"][0]["text"]
        t.check("the slow client then reads the whole stream", done and len(events) >= 300 and text == plain,
                (done, len(events), time.time() - t0))
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))


def check_crash(t, binary, work):
    ledger = os.path.join(work, "crash.sqlite")
    s = Server(binary, "--parallel", "4", "--ledger", ledger)
    seen, stop = [], threading.Event()
    lock = threading.Lock()

    def client(k):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                st, _, r = s.post(COMP, {"prompt": "The %d %d" % (k, n), "max_tokens": 6, "seed": n}, timeout=30)
            except Exception:  # noqa: BLE001  (the kill cuts requests in flight)
                return
            if st == 200:
                with lock:
                    seen.append(r["id"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    wait_for(lambda: len(seen) >= 30, 60)
    s.kill()  # SIGKILL under load
    stop.set()
    for th in threads:
        th.join(60)
    t.check("crash: requests completed before the kill", len(seen) >= 30, len(seen))
    # Copy the files as the kill left them (database, WAL), then restart on the original.
    shutil.copy(ledger, ledger + ".copy")
    if os.path.exists(ledger + "-wal"):
        shutil.copy(ledger + "-wal", ledger + ".copy-wal")
    s2 = Server(binary, "--parallel", "2", "--ledger", ledger)
    try:
        st, _, r = s2.post(COMP, {"prompt": "after", "max_tokens": 2})
        t.check("crash: the restarted server serves", st == 200, r)
    finally:
        t.check("crash: restarted server exits 0", s2.stop() == 0)
    db = sqlite3.connect(ledger)
    t.check("crash: ledger integrity_check ok", db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
    ids = {row[0] for row in db.execute("SELECT request_id FROM requests WHERE status = 200")}
    db.close()
    missing = [i for i in seen if i not in ids]
    t.check("crash: every request seen completed has its row", not missing, missing[:5])
    t.check("crash: the request after the restart has its row", r.get("id") in ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    t = bc_testlib.Tally()
    for check in (check_concurrency, check_chunked_prefill, check_queue_full, check_slow_client, check_crash):
        t0 = time.time()
        check(t, args.bin, args.work)
        print("%s: %.1f s" % (check.__name__, time.time() - t0), flush=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
