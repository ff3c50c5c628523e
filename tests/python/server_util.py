"""server_util.py - what the server tests share: starting `baichuan serve` on a
free loopback port, plain HTTP requests, and reading SSE streams."""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "models", "default")


class Server:
    """`baichuan serve` on 127.0.0.1 with --port 0; the port is read from its log line.
    wrapper: a command to run it under (valgrind ...)."""

    def __init__(self, binary, *args, model=DEFAULT_MODEL, env=None, wrapper=()):
        cmd = [*wrapper, binary, "serve", "-m", model, "--port", "0", "-t", "1", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.log = []
        self.port = None
        ready = threading.Event()

        def drain():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.thread = threading.Thread(target=drain, daemon=True)
        self.thread.start()
        ready.wait(300 if wrapper else 120)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start: %s" % "\n".join(self.log))

    def request(self, method, path, body=None, headers=None, timeout=120, raw=None):
        """(status, headers dict, decoded JSON or text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        text = payload.decode("utf-8")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        return r.status, {k.lower(): v for k, v in r.getheaders()}, value

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def stream(self, path, body, headers=None, timeout=120):
        """(status, [parsed data events], saw_done) of an SSE response."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=h)
        r = c.getresponse()
        if r.status != 200:
            payload = r.read()
            c.close()
            return r.status, json.loads(payload), False
        events, done = parse_sse(r.read())
        c.close()
        return r.status, events, done

    def metrics(self, headers=None):
        status, _, text = self.request("GET", "/metrics", headers=headers)
        assert status == 200, text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return text, values

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.thread.join(5)
        return code

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.thread.join(5)


def parse_sse(payload):
    """Events' data (JSON-decoded) and whether `data: [DONE]` ended the stream.
    Raises if an event is not valid UTF-8 on its own (a split character)."""
    events, done = [], False
    for block in payload.split(b"\n\n"):
        if not block.strip():
            continue
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                continue
            assert line.startswith(b"data: "), line
            data = line[6:].decode("utf-8")  # strict: a split character raises
            if data == "[DONE]":
                done = True
            else:
                events.append(json.loads(data))
    return events, done


def stream_text(events):
    """The text of a chat or completions stream, and its finish_reason."""
    text, finish = "", None
    for e in events:
        for ch in e.get("choices", []):
            if "delta" in ch:
                text += ch["delta"].get("content") or ""
            else:
                text += ch.get("text") or ""
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    return text, finish


def wait_for(pred, timeout=30, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
