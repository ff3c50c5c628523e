#!/usr/bin/python3
"""`baichuan serve` under abuse, bounded (seconds, loopback only): slowloris
clients, half-closed connections, oversized headers and bodies, invalid
UTF-8 in JSON strings, and thousands of requests with random disconnects.

Throughout, a prober asks GET /health every 100 ms and must get 200 within
1 s each time. Afterwards the server must be back where it started: no slot
active or queued, the same greedy text for the same request, its open file
descriptors and threads back to their counts before the abuse, its resident
memory within a margin of its baseline, and exit 0 on SIGTERM (in the
sanitizer tree LeakSanitizer also runs at that exit).

The random requests are halved for a sanitizer build (ASan is several times
slower); BC_ABUSE_REQUESTS overrides their number.

    test_server_abuse.py --bin build/baichuan --work DIR
"""
import argparse
import collections
import http.client
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.parse

import bc_testlib
from server_util import Server, wait_for

COMP = "/v1/completions"
CHAT = "/v1/chat/completions"
MAX_BODY = 65536
# Requests that do not end on their own before the test cuts them: greedy
# with a negative frequency penalty repeats itself and never reaches EOS.
NO_EOS = {"temperature": 0, "repetition_penalty": 1.0, "frequency_penalty": -2.0}
REFERENCE = {"prompt": "床前明月光，", "max_tokens": 16, "temperature": 0, "seed": 1}


# ---------------------------------------------------------------------------
# A raw HTTP/1.1 client: what the abuse needs and http.client hides (partial
# sends, half-closes, resets, the exact moment the server closes).
# ---------------------------------------------------------------------------

def http_request(method, path, body=None, headers=(), close=True):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    if body is not None:
        lines += ["Content-Type: application/json", "Content-Length: %d" % len(body)]
    if close:
        lines.append("Connection: close")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Conn:
    def __init__(self, port, timeout=10.0):
        self.so = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.so.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        """False when the server has closed (or reset) the connection."""
        try:
            self.so.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self):
        b = self.so.recv(65536)
        if not b:
            raise EOFError("the server closed the connection")
        self.buf += b

    def _until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """(status, headers, body) of the next response; raises EOFError or
        OSError when the server closes or the socket times out first."""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                body += self._exact(size)
                self._exact(2)
        else:
            body = self.read_to_end()
        return status, headers, body

    def read_to_end(self):
        out, self.buf = self.buf, b""
        while True:
            b = self.so.recv(65536)
            if not b:
                return out
            out += b

    def closed_within(self, seconds):
        """Whether the server closes the connection within seconds (what it
        sends meanwhile is dropped)."""
        self.so.settimeout(seconds)
        try:
            self.read_to_end()
            return True
        except socket.timeout:
            return False
        except OSError:  # a reset is a close too
            return True

    def close(self, reset=False):
        if reset:  # close with RST instead of FIN
            self.so.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.so.close()


def ask(s, method, path, body=None, raw=None, timeout=10):
    """s.request(), with a failure to answer as (None, {}, the exception)."""
    try:
        if body is not None:
            return s.request(method, path, body, timeout=timeout)
        return s.request(method, path, raw=raw, headers={"Content-Type": "application/json"} if raw else None,
                         timeout=timeout)
    except (OSError, http.client.HTTPException, UnicodeDecodeError) as e:
        return None, {}, repr(e)


def json_error(body):
    try:
        e = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return e if isinstance(e, dict) and {"message", "type", "param", "code"} <= set(e) else None


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------

def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid):
    return proc_status(pid, "VmRSS")


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def n_threads(pid):
    return proc_status(pid, "Threads")


def settled(read, timeout, want=None):
    """read() once it has stopped changing (or equals want) within timeout."""
    end = time.time() + timeout
    last = read()
    while time.time() < end:
        time.sleep(0.2)
        now = read()
        if (want is not None and now == want) or (want is None and now == last):
            return now
        last = now
    return last


def idle(s):
    _, v = s.metrics()
    return v["baichuan_active_slots"] == 0 and v["baichuan_queue_depth"] == 0


def metric(s, endpoint, status):
    _, v = s.metrics()
    return v.get('baichuan_requests_total{tenant="",endpoint="%s",status="%d"}' % (endpoint, status), 0)


class Prober(threading.Thread):
    """GET /health on a new connection every interval; (latency, status or error) per probe."""

    def __init__(self, port, interval=0.1):
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            c = None
            try:
                c = Conn(self.port, timeout=5)
                c.send(http_request("GET", "/health"))
                st, _, body = c.response()
                result = st if body == b'{"status":"ok"}' else "body %r" % body[:80]
            except Exception as e:  # noqa: BLE001  (recorded as a failed probe)
                result = repr(e)
            finally:
                if c is not None:
                    c.close()
            dt = time.monotonic() - t0
            self.samples.append((dt, result))
            self.halt.wait(max(0.0, self.interval - dt))

    def finish(self):
        self.halt.set()
        self.join(10)
        return self.samples


class Slowloris(threading.Thread):
    """n connections that never finish their request: a third trickle the
    request line and headers one byte at a time, a third send nothing, a
    third send whole headers and then trickle a body (under --max-body)."""

    def __init__(self, port, n, pause=0.2):
        super().__init__(daemon=True)
        self.pause = pause
        self.halt = threading.Event()
        self.conns = []  # [conn, the bytes it trickles (None: silent), how many sent (-1: cut)]
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        post = http_request("POST", COMP, close=False, headers=["Content-Type: application/json",
                                                                 "Content-Length: 60000"]) + b'{"prompt": "'
        for i in range(n):
            c = Conn(port, timeout=5)
            if i % 3 == 1:
                self.conns.append([c, None, 0])
            elif i % 3 == 2:
                c.send(post)
                self.conns.append([c, b"a" * 60000, 0])
            else:
                self.conns.append([c, head + b"a" * 60000, 0])
        self.cut = 0  # connections the server closed while they trickled

    def run(self):
        while not self.halt.wait(self.pause):
            for entry in self.conns:
                c, data, sent = entry
                if data is None or sent < 0 or sent >= len(data):
                    continue
                if c.send(data[sent:sent + 1]):
                    entry[2] += 1
                else:
                    entry[2] = -1
                    self.cut += 1

    def bytes_sent(self):
        return sum(max(0, e[2]) for e in self.conns)

    def finish(self):
        self.halt.set()
        self.join(10)
        for c, _, _ in self.conns:
            c.close()


# ---------------------------------------------------------------------------
# The abuse
# ---------------------------------------------------------------------------

def check_half_closed(t, s, scale):
    """A complete request then shutdown(SHUT_WR)."""
    results = [None] * 8

    def health(i):  # keep-alive: only the end of input tells the server to close
        c = Conn(s.port, timeout=5)
        t0 = time.monotonic()
        c.send(http_request("GET", "/health", close=False))
        c.so.shutdown(socket.SHUT_WR)
        try:
            st, _, _ = c.response()
        except (EOFError, OSError):
            st = None
        t_answer = time.monotonic() - t0
        closed = c.closed_within(5)
        results[i] = (st, t_answer, closed, time.monotonic() - t0)
        c.close()

    threads = [threading.Thread(target=health, args=(i,)) for i in range(len(results))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    t.check("half-closed /health: answered 200 within 1 s",
            all(r and r[0] == 200 and r[1] < 1.0 for r in results), results)
    # At once, not after the 120 s idle timeout (as in libmicrohttpd's epoll
    # mode, see server/http.c).
    t.check("half-closed /health: the server closes the connection within 5 s",
            all(r and r[2] for r in results), results)
    print("half-closed /health: answer <= %.3f s, closed by the server <= %.2f s" %
          (max(r[1] for r in results if r), max(r[3] for r in results if r)), flush=True)

    # Generation requests (streamed and not, both endpoints): the server must
    # see the client gone, cancel the request and free its slot.
    before = metric(s, COMP, 499) + metric(s, CHAT, 499)
    conns = []
    for k in range(8):
        chat, stream = k % 2 == 1, k % 4 >= 2
        body = dict(NO_EOS, max_tokens=900, stream=stream)
        if chat:
            body["messages"] = [{"role": "user", "content": "写一首诗 %d" % k}]
        else:
            body["prompt"] = "The %d" % k
        c = Conn(s.port, timeout=10 * scale)
        c.send(http_request("POST", CHAT if chat else COMP, json.dumps(body).encode(), close=False))
        c.so.shutdown(socket.SHUT_WR)
        conns.append((c, stream))
    t0 = time.monotonic()
    outcome = []
    for c, stream in conns:
        try:
            data = c.read_to_end()
            finished = b"data: [DONE]" in data if stream else b'"finish_reason"' in data
            outcome.append("complete" if finished else "cut")
        except OSError as e:
            outcome.append(repr(e))
        c.close()
    dt = time.monotonic() - t0
    t.check("half-closed generation: the server cuts all 8 (none runs its 900 tokens)",
            outcome == ["cut"] * 8, outcome)
    t.check("half-closed generation: slots freed (0 active, 0 queued)", wait_for(lambda: idle(s), 5 * scale),
            s.metrics()[1])
    cancelled = metric(s, COMP, 499) + metric(s, CHAT, 499) - before
    t.check("half-closed generation: 8 requests counted 499 (cancelled)", cancelled == 8, cancelled)
    print("half-closed generation: 8 cut in %.2f s" % dt, flush=True)


def check_oversized_headers(t, s):
    """Header blocks past the 64 KiB connection memory: a 4xx or a close, never a crash."""
    cases = {
        "one 100 KB header": http_request("GET", "/health", headers=["X-Big: " + "a" * 100000]),
        "2000 headers (120 KB)": http_request("GET", "/health",
                                              headers=["X-H%d: %s" % (i, "b" * 50) for i in range(2000)]),
        "a 100 KB URL": http_request("GET", "/health?" + "c" * 100000),
        "a 100 KB header on a POST": http_request("POST", COMP, b'{"prompt": "x"}', headers=["X-Big: " + "d" * 100000]),
    }
    for name, data in cases.items():
        c = Conn(s.port, timeout=10)
        c.send(data)  # may fail part-way: the server can answer and close before the end
        try:
            st = c.response()[0]
        except (EOFError, OSError):
            st = None  # closed or reset without an answer: allowed
        c.close()
        ok = st is None or 400 <= st < 500
        t.check("oversized headers, %s: %s" % (name, "closed" if st is None else st), ok, st)
        st, _, h = ask(s, "GET", "/health", timeout=5)
        t.check("server alive after %s" % name, st == 200 and h == {"status": "ok"}, (st, h))


def check_oversized_bodies(t, s):
    # A declared length past --max-body: 413 at once, before any of the body.
    c = Conn(s.port, timeout=5)
    t0 = time.monotonic()
    c.send(http_request("POST", COMP, close=False, headers=["Content-Type: application/json",
                                                         "Content-Length: 10000000"]))
    try:
        st, _, body = c.response()
    except (EOFError, OSError) as e:
        st, body = repr(e), b""
    dt = time.monotonic() - t0
    c.close()
    e = json_error(body)
    t.check("Content-Length 10 MB (no body sent): 413 request_too_large within 1 s",
            st == 413 and e and e["code"] == "request_too_large" and dt < 1.0, (st, body[:200], dt))

    # A body that runs past the limit, with a Content-Length and chunked.
    big = b'{"prompt": "' + b"a" * (MAX_BODY + 10) + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (8192, big[i:i + 8192].ljust(8192, b" ")) for i in range(0, len(big), 8192))
    for name, path, data in (
            ("Content-Length %d" % len(big), COMP, http_request("POST", COMP, big)),
            ("chunked %d B" % len(big), COMP, http_request("POST", COMP, close=False, headers=[
                "Content-Type: application/json", "Transfer-Encoding: chunked"]) + chunked + b"0\r\n\r\n"),
            ("chunked %d B to /tokenize" % len(big), "/tokenize", http_request("POST", "/tokenize", close=False,
             headers=["Content-Type: application/json", "Transfer-Encoding: chunked"]) + chunked + b"0\r\n\r\n")):
        c = Conn(s.port, timeout=10)
        c.send(data)
        try:
            st, _, body = c.response()
        except (EOFError, OSError) as e:
            st, body = repr(e), b""
        c.close()
        e = json_error(body)
        t.check("body of %s: 413 request_too_large" % name, st == 413 and e and e["code"] == "request_too_large",
                (st, body[:200]))

    # A chunked upload that never ends: read past the limit to answer 413 at
    # its end, but cut once it runs past twice the limit (libmicrohttpd
    # cannot answer in the middle of an upload).
    c = Conn(s.port, timeout=10)
    c.send(http_request("POST", COMP, close=False, headers=["Content-Type: application/json",
                                                         "Transfer-Encoding: chunked"]))
    chunk = b"%x\r\n%s\r\n" % (8192, b" " * 8192)
    limit = 64 * MAX_BODY  # what the client would go on sending (socket buffers hide the first MiBs)
    sent = 0
    while sent < limit and c.send(chunk):
        sent += len(chunk)
    c.close()
    t.check("endless chunked upload: cut by the server (after %d of %d bytes sent)" % (sent, limit), sent < limit)


def check_invalid_utf8(t, s):
    """Invalid UTF-8 (and NUL, lone surrogates) in JSON strings: 400 naming the problem."""
    def chat(content):
        return b'{"messages": [{"role": "user", "content": "' + content + b'"}], "max_tokens": 2}'

    cases = [
        ("completions prompt \\xff\\xfe", COMP, b'{"prompt": "\xff\xfe", "max_tokens": 2}', "decode byte 0xff"),
        ("chat content \\xc3\\x28", CHAT, chat(b"\xc3\x28"), "decode byte 0xc3"),
        ("chat content overlong \\xc0\\xaf", CHAT, chat(b"\xc0\xaf"), "decode byte 0xc0"),
        ("chat content UTF-8 surrogate \\xed\\xa0\\x80", CHAT, chat(b"\xed\xa0\x80"), "decode byte 0xed"),
        ("chat content past U+10FFFF", CHAT, chat(b"\xf4\x90\x80\x80"), "decode byte 0xf4"),
        ("prompt cut inside a character", COMP, b'{"prompt": "\xe6\x98"}', "decode byte 0xe6"),
        ("key \\xff", COMP, b'{"pr\xffompt": "x"}', "decode byte 0xff"),
        ("/tokenize content \\xff", "/tokenize", b'{"content": "a\xffb"}', "decode byte 0xff"),
        ("escaped NUL \\u0000", COMP, b'{"prompt": "a\\u0000b"}', "\\u0000"),
        ("lone surrogate escape \\ud800", CHAT, chat(b"\\ud800"), "\\uD800"),
    ]
    for name, path, raw, names in cases:
        st, _, body = ask(s, "POST", path, raw=raw)
        e = body.get("error") if isinstance(body, dict) else None
        ok = st == 400 and isinstance(e, dict) and e.get("code") == "invalid_json" and names in e.get("message", "")
        t.check("invalid UTF-8, %s: 400 invalid_json naming it" % name, ok, (st, body))

    # Client bytes quoted in an error message (see srv_error_json): still a JSON answer.
    st, _, body = ask(s, "GET", "/%ff%fe")
    e = body.get("error") if isinstance(body, dict) else None
    t.check("GET /%ff%fe: 404 in JSON quoting the bytes", st == 404 and e and "\\xff\\xfe" in e["message"], body)
    st, _, body = ask(s, "GET", "/" + urllib.parse.quote("é" * 150))
    t.check("GET a 300-byte UTF-8 URL (message cut inside a character): 404 in JSON",
            st == 404 and isinstance(body, dict) and json_error(json.dumps(body)) is not None, body)
    st, _, body = ask(s, "POST", CHAT, {"messages": [{"role": "a" + "é" * 40, "content": "x"}]})
    t.check("chat role of 81 bytes (cut inside a character): 400 in JSON",
            st == 400 and isinstance(body, dict) and body["error"]["param"] == "messages", body)


def check_abandoned(t, s, n, fds_expected):
    """n clients (more than the server's 1000 connections) that send part of
    a request and close: each must be freed at once, or they fill the
    connection limit and nothing is answered until their 120 s timeout."""
    rng = random.Random(7)
    data = [http_request("GET", "/health"),
            http_request("POST", COMP, json.dumps({"prompt": "The", "max_tokens": 2}).encode())]
    t0 = time.monotonic()
    for i in range(n):
        c = Conn(s.port, timeout=10)
        d = data[i % 2]
        c.send(d[:rng.randrange(1, len(d))])
        c.close()
    sent = time.monotonic() - t0
    fds = settled(lambda: n_fds(s.proc.pid), 5, want=fds_expected)
    t.check("%d clients that sent part of a request and closed: all freed (%d fds, %.2f s to send)" %
            (n, fds, sent), fds == fds_expected, (fds, fds_expected))
    st, _, h = ask(s, "GET", "/health", timeout=5)
    t.check("server answers after %d abandoned requests" % n, st == 200, (st, h))


MALFORMED = [b'{"prompt": ', b"{not json", b"[1, 2", b'{"prompt": "x", "max_tokens": 2,}', b"", b"null",
             b'{"prompt": "x" "max_tokens": 2}', b'{"prompt": "\xff"}', b'{"messages": [{"role": "user"']
# Share of each kind of request, and of each way a client leaves early.
KINDS = [("health", 25), ("tokenize", 15), ("malformed", 15), ("completion", 20), ("completion_stream", 15),
         ("chat", 10)]
QUITS = ["mid_send", "after_send", "mid_response", "reset"]


def build_request(kind, rng, n):
    """(method, path, body, expected statuses, streamed)."""
    if kind == "health":
        return "GET", "/health", None, {200}, False
    if kind == "tokenize":
        return "POST", "/tokenize", json.dumps({"content": "床前明月光 %d" % n}).encode(), {200}, False
    if kind == "malformed":
        return "POST", rng.choice([COMP, CHAT]), rng.choice(MALFORMED), {400}, False
    stream = kind == "completion_stream" or (kind == "chat" and rng.random() < 0.5)
    body = {"max_tokens": rng.randint(1, 4), "seed": n, "stream": stream}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": "你好 %d" % n}]
    else:
        body["prompt"] = "The %d" % n
    return "POST", CHAT if kind == "chat" else COMP, json.dumps(body).encode(), {200, 503}, stream


def check_random_disconnects(t, s, n_requests, n_threads, scale):
    counts = collections.Counter()
    unexpected = []
    lock = threading.Lock()
    weights = [w for _, w in KINDS]
    next_id = [0]

    def worker(k):
        rng = random.Random(1000 + k)
        while True:
            with lock:
                n = next_id[0]
                next_id[0] += 1
            if n >= n_requests:
                return
            kind = rng.choices([name for name, _ in KINDS], weights)[0]
            method, path, body, expect, stream = build_request(kind, rng, n)
            quit_how = rng.choice(QUITS) if rng.random() < 0.3 else None
            keep_alive = quit_how is None and rng.random() < 0.5
            data = http_request(method, path, body, close=not keep_alive)
            try:
                c = Conn(s.port, timeout=30 * scale)
            except OSError as e:
                with lock:
                    unexpected.append((kind, "connect", repr(e)))
                continue
            try:
                if quit_how == "mid_send":
                    c.send(data[:rng.randrange(1, len(data))])
                elif quit_how is not None:
                    c.send(data)
                    if quit_how == "mid_response":
                        c.so.recv(rng.randint(1, 200))
                    elif rng.random() < 0.5:
                        time.sleep(rng.random() * 0.02)
                if quit_how is not None:
                    c.close(reset=quit_how == "reset")
                    with lock:
                        counts[("quit", quit_how)] += 1
                    continue
                c.send(data)
                st, _, rbody = c.response()
                problem = None
                if st not in expect:
                    problem = "status %d" % st
                elif st == 503 and (json_error(rbody) or {}).get("code") != "queue_full":
                    problem = "503 that is not queue_full"
                elif st == 200 and stream and not rbody.rstrip().endswith(b"data: [DONE]"):
                    problem = "stream without [DONE]"
                elif st == 200 and not stream and not isinstance(json.loads(rbody), dict):
                    problem = "200 without a JSON object"
                if problem is None and keep_alive:  # a second request on the same connection
                    c.send(http_request("GET", "/health"))
                    if c.response()[0] != 200:
                        problem = "keep-alive /health not 200"
                with lock:
                    counts[("answered", st)] += 1
                    if problem:
                        unexpected.append((kind, problem, rbody[:200]))
            except Exception as e:  # noqa: BLE001  (recorded as unexpected)
                with lock:
                    unexpected.append((kind, quit_how, repr(e)))
            finally:
                c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    dt = time.monotonic() - t0
    answered = sum(v for k, v in counts.items() if k[0] == "answered")
    quits = sum(v for k, v in counts.items() if k[0] == "quit")
    print("random disconnects: %d requests from %d threads in %.1f s: %d answered %s, %d clients left early %s" %
          (n_requests, n_threads, dt, answered,
           dict(sorted((k[1], v) for k, v in counts.items() if k[0] == "answered")), quits,
           dict(sorted((k[1], v) for k, v in counts.items() if k[0] == "quit"))), flush=True)
    t.check("random disconnects: every request answered as expected or left by its client",
            not unexpected and answered + quits == n_requests, (len(unexpected), unexpected[:5]))
    return answered, quits


# ---------------------------------------------------------------------------

def reference_text(s):
    st, _, r = ask(s, "POST", COMP, REFERENCE, timeout=60)
    return r["choices"][0]["text"] if st == 200 else (st, r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work")
    args = ap.parse_args()
    with open(args.bin, "rb") as f:
        sanitized = b"__asan_init" in f.read()
    scale = 4 if sanitized else 1  # time bounds of slow operations (not of /health)
    n_requests = int(os.environ.get("BC_ABUSE_REQUESTS", 1000 if sanitized else 2000))
    n_slow = 96
    t = bc_testlib.Tally()
    t_start = time.monotonic()

    s = Server(args.bin, "--parallel", "4", "--queue", "16", "--max-body", str(MAX_BODY))
    pid = s.proc.pid
    prober = slow = None
    try:
        # Warm-up: every endpoint once and a few generations, so that lazy
        # allocations (allocator arenas of each thread, buffers) are made.
        for path in ("/health", "/v1/models", "/metrics", "/"):
            s.request("GET", path)
        s.post("/tokenize", {"content": "床前明月光"})
        s.request("POST", COMP, raw=b"{not json")
        ref = reference_text(s)
        s.stream(CHAT, {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 4, "stream": True})
        threads = [threading.Thread(target=s.post, args=(COMP, {"prompt": "The %d" % k, "max_tokens": 4}))
                   for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        fd0 = settled(lambda: n_fds(pid), 5)
        threads0 = n_threads(pid)
        rss0 = settled(lambda: rss_kib(pid), 3)
        print("baseline: VmRSS %d KiB, %d fds, %d threads; reference text %r" % (rss0, fd0, threads0, ref),
              flush=True)
        t.check("reference request answered", isinstance(ref, str) and ref != "", ref)

        prober = Prober(s.port)
        prober.start()
        phases = {}

        t0 = time.monotonic()
        slow = Slowloris(s.port, n_slow)
        slow.start()
        held = settled(lambda: n_fds(pid), 3, want=fd0 + n_slow)
        t.check("slowloris: the server holds all %d slow connections (fds %d -> %d)" % (n_slow, fd0, held),
                held >= fd0 + n_slow, held)
        phases["slowloris set-up"] = time.monotonic() - t0

        rss_half = []

        def random_disconnects():
            # In two halves: memory after the first (the allocator has seen
            # this load) and after the second must not differ by a leak's worth.
            for k in range(2):
                check_random_disconnects(t, s, n_requests // 2, 24, scale)
                wait_for(lambda: idle(s), 5 * scale)
                rss_half.append(rss_kib(pid) if sanitized else settled(lambda: rss_kib(pid), 3))

        for name, phase in (("half-closed", lambda: check_half_closed(t, s, scale)),
                            ("oversized headers", lambda: check_oversized_headers(t, s)),
                            ("oversized bodies", lambda: check_oversized_bodies(t, s)),
                            ("invalid UTF-8", lambda: check_invalid_utf8(t, s)),
                            ("abandoned requests", lambda: check_abandoned(t, s, 1100, fd0 + n_slow)),
                            ("random disconnects", random_disconnects)):
            t0 = time.monotonic()
            phase()
            phases[name] = time.monotonic() - t0

        t.check("slowloris: %d slow connections held to the end (%d bytes trickled over %.1f s)" %
                (n_slow, slow.bytes_sent(), time.monotonic() - t_start), slow.cut == 0, slow.cut)
        slow.finish()
        slow = None
        samples = prober.finish()
        prober = None
        lat = [dt for dt, _ in samples]
        bad = [(dt, r) for dt, r in samples if r != 200 or dt >= 1.0]
        print("/health probes: %d, max %.3f s, median %.4f s, p99 %.3f s" %
              (len(samples), max(lat), statistics.median(lat), sorted(lat)[int(len(lat) * 0.99)]), flush=True)
        t.check("/health answered 200 within 1 s by every probe during the abuse (max %.3f s)" % max(lat),
                not bad and len(samples) > 10, bad[:5])
        print("phases: %s" % ", ".join("%s %.1f s" % kv for kv in phases.items()), flush=True)

        # Back to where it started.
        t.check("after the abuse: 0 active slots, 0 queued", wait_for(lambda: idle(s), 5 * scale), s.metrics()[1])
        after = reference_text(s)
        t.check("after the abuse: the reference request gives the same text", after == ref, (after, ref))
        fd1 = settled(lambda: n_fds(pid), 5, want=fd0)
        t.check("open fds back to the baseline (%d -> %d)" % (fd0, fd1), fd1 == fd0,
                sorted(os.listdir("/proc/%d/fd" % pid)))
        threads1 = n_threads(pid)
        t.check("threads back to the baseline (%d -> %d)" % (threads0, threads1), threads1 == threads0)
        rss1 = rss_kib(pid) if sanitized else settled(lambda: rss_kib(pid), 3)
        print("VmRSS: baseline %d KiB, after the first half of the random requests %d KiB, after the second %d KiB, "
              "at the end %d KiB" % (rss0, rss_half[0], rss_half[1], rss1), flush=True)
        # What memory may do. Freed memory stays with the process (glibc keeps
        # its arenas and the heap's high-water mark), and the abuse is a peak
        # the warm-up is not: 20 live requests (4 slots + 16 queued) with a
        # sampler of ~200 KB each, 24 clients' buffers, 96 slow connections.
        # What is seen is +5 to +8 MiB over the baseline, and +-1.5 MiB between
        # runs of 1000 random requests once the allocator has seen the load.
        #  - At the end: at most +16 MiB over the baseline. A leaked sampler or
        #    request (>= 200 KB, ~450 generations) or connection pool (64 KiB,
        #    ~2000 connections) is far past that.
        #  - Over the second half of the random requests: at most +4 MiB, that
        #    is ~4 KB per request: a leaked output buffer, body or response
        #    of that size shows as a steady rise. (Smaller unreachable leaks are
        #    LeakSanitizer's, at exit in the sanitizer tree.)
        # Under ASan freed memory sits in its quarantine (256 MB by default)
        # and RSS only grows: the figures are printed, LeakSanitizer checks.
        if sanitized:
            print("memory bounds not checked under ASan (quarantine); LeakSanitizer runs at exit", flush=True)
        else:
            t.check("memory at the end within 16 MiB of the baseline (%+d KiB)" % (rss1 - rss0),
                    rss1 <= rss0 + 16 * 1024, (rss0, rss1))
            t.check("memory over the second %d random requests grows by at most 4 MiB (%+d KiB)" %
                    (n_requests // 2, rss_half[1] - rss_half[0]), rss_half[1] <= rss_half[0] + 4 * 1024, rss_half)
        # Shutdown waits for running requests, not for idle or slow clients.
        lingering = [Conn(s.port) for _ in range(3)]
        lingering[0].send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        lingering[1].send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        code = s.stop()
        t.check("SIGTERM with 3 idle or half-sent connections open: exit 0 at once (%.1f s)"
                % (time.monotonic() - t0), code == 0 and time.monotonic() - t0 < 5, "\n".join(s.log[-20:]))
        for c in lingering:
            c.close()
    finally:
        if slow is not None:  # a phase raised: let the server see the slow clients go
            slow.finish()
        if prober is not None:
            prober.finish()
        if s.proc.poll() is None:  # a phase raised before the shutdown check
            s.stop()
    print("test_server_abuse: %.1f s%s" % (time.monotonic() - t_start, " (sanitizer build)" if sanitized else ""))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
