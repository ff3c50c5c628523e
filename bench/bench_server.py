#!/usr/bin/python3
"""Serving benchmarks of `baichuan serve`, alone or beside llama.cpp's
llama-server on the same GGUF file (a program that prints figures, not a test).

The servers run one after the other, never at the same time, each with the
same thread count and sent the same requests: /v1/completions with prompts
given as token ids (random ids from one seeded generator, so no tokenizer is
involved), streamed, with usage. Sampling is the same for both (temperature,
top_k, top_p 1, min_p 0, no repetition penalty; a seed per request);
llama-server also gets "ignore_eos": true and "n_predict" = max_tokens. Ours
stops at EOS, which a random-weight model rarely draws: every figure counts
the completion tokens the usage reports, and a run that got fewer than asked
for says so.

Tests (--tests, any of these; default all three):

  throughput  aggregate generation tokens/s with N concurrent streams for each
              N of --streams (default 1,4,8,16): --prompt-len-token prompts
              (16), --max-tokens completions (64); tokens/s = completion
              tokens of all streams / wall time from the first request sent
              to the last stream finished (prompt processing and HTTP
              included). Both servers get --parallel slots (default the
              largest N).
  bench       one stream through the server against `baichuan bench -p 16 -n
              64` (no server): its tg figure beside the one-stream aggregate
              and the one-stream decode rate (tokens after the first / time
              from the first to the last token). Needs 1 in --streams.
  ttft        time to first token with a shared prefix: request A is a
              --ttft-prefix-token prefix P (1500) + a --ttft-suffix-token
              suffix (16), request B the same P + another suffix; both TTFTs
              and A/B. llama-server reuses a slot's KV cache for the longest
              common prefix of the new prompt (cache_prompt, on by default)
              when the request lands on the slot that served P, which its
              slot choice (--slot-prompt-similarity 0.5) arranges; its
              `timings.prompt_n` (prompt tokens it evaluated) is printed.

Each round (--rounds, default 1) starts each server in turn (alternating which
goes first), warms it up, runs the tests and stops it; the tables give the
median over rounds and, with more than one, the best.

--tests prefill is a separate mode, ours only (long prompts must not stall
the other streams: chunked prefill, `serve --step-tokens`): for each value
of --step-tokens (default: the server's default only; "default" names it in a
list), our server starts afresh with --parallel S+1 (S = --prefill-streams,
4) and room for every sequence at full context, and
  1. alone: a --prefill-len-token prompt (3953, random ids, not seen before)
     gets its TTFT with nothing else running (before and after step 2, with
     other new ids; the mean of both is its TTFT alone);
  2. with streams: S streams of --prompt-len prompts generate (logprobs on,
     so every token is an event of its own; the eos id banned) until each has --prefill-warm
     tokens (16), then the long prompt (other new ids) is sent; once its first
     token came and each stream got --prefill-warm more tokens, the streams
     are closed (cancelled).
It prints the streams' median inter-token gap before the long prompt came
(the streams' own pace) and over their whole run, the largest gap that
overlaps the prefill (from the long prompt's send to its first token), the
ratios, and the long prompt's TTFT with the streams against alone. The
targets of issue 23 (1.29 B Q4_0, 2 threads): largest gap <= 4x the median,
TTFT <= 1.3x alone.

    bench/bench_server.py --model /tmp/speed/b1-q4_0.gguf --tokenizer /tmp/speed/b1 \\
        --tests prefill --step-tokens default,16,256

--capacity K1,K2,... is a separate mode: for each K, each server is started
afresh with its flags and sent K concurrent conversations of --conv-prompt
prompt tokens (1900; the first --conv-shared (0) the same for all, as a shared
system prompt) and --conv-gen generated tokens (148): 2048 positions
each. It prints, per K: requests that failed (not 200, or usage short of the
tokens sent or asked for: llama-server truncates a prompt or shifts the
context rather than fail, which the counts show), the most requests being
decoded at once (ours: baichuan_active_slots; llama-server:
llamacpp:requests_processing from /metrics, which the program turns on), the
peak VmHWM of the server process, and the peak anonymous and file-backed RSS
(the weights are mmap'd: file pages count in VmHWM). On 2 cores the
7B shape evaluates a 1900-token prompt in minutes, and the conversations
of one K share those cores: plan hours for K = 16. llama-server on an
AVX2 machine repacks Q4_0 weights into anonymous memory and keeps the file
mapped too, so its VmHWM counts the weights twice: give it --no-mmap for a
figure that means what it says (7B shape, -np 16 -c 32768 -fa, q8_0 cache:
VmHWM 16.0 GiB mapped, 12.6 GiB with --no-mmap, of which 8.5 GiB of cache).

Server flags: the program passes -m, the port and the threads; the rest comes
from --ours-args and --llama-args, which replace the defaults:
  ours         --parallel P -c P*C                    (-c: positions of the KV pool shared by
                                                       all slots, paged; one request may
                                                       use up to the model's context)
  llama-server -np P -c P*C                           (-c: positions shared by all slots;
                                                       each slot gets c/np)
with P = --parallel and C = --ctx-size (default 2048; with --capacity the
conversation length). llama-server's q8_0 cache needs flash attention for V:
--llama-args "-np 16 -c 32768 -fa -ctk q8_0 -ctv q8_0" (this llama.cpp takes
-fa without a value).

    # throughput, bench and ttft, ours beside llama-server, 2 threads each
    bench/bench_server.py --model /tmp/m1b-Q4_0.gguf --threads 2 \\
        --llama-server /tmp/llama.cpp/build/bin/llama-server

    # ours alone, the old three-stream run
    bench/bench_server.py --bin build/baichuan --model /tmp/b1b-q4_0.gguf --tokenizer /tmp/b1b \\
        --tests throughput --streams 1,4,8 --max-tokens 32

    # capacity: 4, 8 and 16 concurrent 2048-token conversations on the 7B shape
    bench/bench_server.py --model /tmp/m7b-Q4_0.gguf --threads 2 --capacity 4,8,16 \\
        --ours-args "--parallel 16 --kv-memory 6G --cache-type q8_0" \\
        --llama-server /tmp/llama.cpp/build/bin/llama-server \\
        --llama-args "-np 16 -c 32768 -fa -ctk q8_0 -ctv q8_0 --no-context-shift --no-mmap"

--chrt PRIO runs the servers and `baichuan bench` under `chrt -f PRIO`
(SCHED_FIFO; needs root) and puts this program at the same priority, so
that the clients are not starved by the servers' threads. Use it only with
a core to spare (--threads < cores): SCHED_FIFO threads of one priority run
until they block, so on 2 cores with 2 server threads the client and the
servers' HTTP threads wait behind spinning compute threads (seen here:
llama-server one stream 0.24 tok/s, ours' tokens arriving in one burst).

Other load on the machine hits llama-server harder than ours: its compute
threads spin at each barrier, so a core taken by another process stalls
every step (seen here, 2 cores and a compile running: llama-server one
stream 1.3 tok/s, 17 tok/s on the idle machine). Each line gives the load
average; compare figures from runs on an idle machine.
"""
import argparse
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOKEN_LO, TOKEN_HI = 100, 8000  # prompt token ids are drawn from [TOKEN_LO, TOKEN_HI)
EOS_ID = 2  # every Baichuan vocabulary's; the prefill mode's streams ban it, to outlast the long prompt


# ---------------------------------------------------------------------------
# A server process
# ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    """{field: kB} of the VmRSS, VmHWM, RssAnon and RssFile lines of /proc/PID/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class ServerProc:
    """One server, ours ("ours") or llama-server ("llama"), on a free loopback
    port; ready once GET /health answers 200. A thread samples its memory
    every 0.1 s (peak VmRSS, RssAnon, RssFile) until stop()."""

    def __init__(self, kind, cmd, chrt=None, timeout=900):
        self.kind = kind
        self.port = free_port()
        self.cmd = ([("chrt"), "-f", str(chrt)] if chrt else []) + cmd + ["--port", str(self.port)]
        self.logf = tempfile.NamedTemporaryFile(prefix=f"bench_server_{kind}_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        self.peak = {}
        self.hwm = 0
        self.error = None
        self.keep_log = False  # stop() removes the log unless the server failed or this is set
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                self.error = f"exited with code {self.proc.returncode}"
                break
            try:
                status, _ = get(self.port, "/health", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.error = self.error or f"not ready after {timeout} s"
        self.stop()

    def _sample(self):
        while not self._stop.is_set():
            st = proc_status(self.proc.pid)
            for k, v in st.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self._stop.wait(0.1)

    def log_tail(self, n=15):
        with open(self.logf.name, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def log_lines(self, *needles):
        with open(self.logf.name, errors="replace") as f:
            return [line.rstrip() for line in f if any(s in line for s in needles)]

    def stop(self):
        st = proc_status(self.proc.pid)
        self.hwm = max(self.hwm, st.get("VmHWM", 0))
        self._stop.set()
        self._sampler.join()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        if not self.error and not self.keep_log:
            os.unlink(self.logf.name)


def get(port, path, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def metric(srv, name):
    """One unlabelled value of the server's /metrics, or None."""
    try:
        status, text = get(srv.port, "/metrics", timeout=10)
    except OSError:
        return None
    for line in text.splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def active_requests(srv):
    """Requests being decoded now, from /metrics; None if it cannot tell."""
    try:
        status, text = get(srv.port, "/metrics", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    name = "baichuan_active_slots" if srv.kind == "ours" else "llamacpp:requests_processing"
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------------------
# One streamed completion
# ---------------------------------------------------------------------------

def complete(srv, prompt, max_tokens, seed, args, timeout=4 * 3600):
    """Sends one streamed /v1/completions request; returns a dict: status,
    error (text or None), prompt_tokens and completion_tokens (the usage),
    ttft (seconds from sending to the first token's event), first and last
    (time.time() of the first and the last token's event), end, and for
    llama-server prompt_n (prompt tokens it evaluated, the rest came from its
    cache)."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "temperature": args.temperature,
            "top_k": args.top_k, "top_p": 1.0, "min_p": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    if srv.kind == "llama":
        body.update({"n_predict": max_tokens, "ignore_eos": True, "repeat_penalty": 1.0})
    else:
        body["repetition_penalty"] = 1.0
    out = {"status": None, "error": None, "prompt_tokens": 0, "completion_tokens": 0, "ttft": None,
           "first": None, "last": None, "end": None, "prompt_n": None}
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    t0 = time.time()
    try:
        c.request("POST", "/v1/completions", body=json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out["status"] = r.status
        if r.status != 200:
            out["error"] = f"HTTP {r.status}: {r.read()[:300].decode('utf-8', 'replace')}"
            return out
        buf, done = b"", False
        while not done:
            chunk = r.read1(65536)
            if not chunk:
                break
            now = time.time()
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"error: "):  # llama-server's error inside a 200 stream
                        out["error"] = line[7:307].decode("utf-8", "replace")
                        continue
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:]
                    if data.strip() == b"[DONE]":
                        done = True
                        continue
                    ev = json.loads(data)
                    if "error" in ev:
                        out["error"] = json.dumps(ev["error"])[:300]
                    for ch in ev.get("choices") or []:
                        if ch.get("finish_reason") is None and ch.get("text") is not None:
                            if out["first"] is None:
                                out["first"], out["ttft"] = now, now - t0
                            out["last"] = now
                    if ev.get("usage"):
                        out["prompt_tokens"] = ev["usage"].get("prompt_tokens", 0)
                        out["completion_tokens"] = ev["usage"].get("completion_tokens", 0)
                    if ev.get("timings"):
                        out["prompt_n"] = ev["timings"].get("prompt_n")
        if not done and out["error"] is None:
            out["error"] = "the stream ended without [DONE]"
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        out["end"] = time.time()
        c.close()
    return out


def concurrent(srv, prompts, max_tokens, args, seed0=0):
    """All prompts at once, one thread each; (wall seconds, [results])."""
    results = [None] * len(prompts)

    def one(i):
        results[i] = complete(srv, prompts[i], max_tokens, seed0 + i, args)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    t0 = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.time() - t0, results


def short_of(results, n_prompt, max_tokens):
    """Results that failed or whose usage is short of the prompt sent or the tokens asked for."""
    return [r for r in results if r["error"] or r["status"] != 200 or r["prompt_tokens"] != n_prompt
            or r["completion_tokens"] != max_tokens]


# ---------------------------------------------------------------------------
# Starting each server
# ---------------------------------------------------------------------------

def server_cmd(kind, args, parallel, ctx):
    if kind == "ours":
        flags = shlex.split(args.ours_args) if args.ours_args is not None else \
            ["--parallel", str(parallel), "-c", str(parallel * ctx)]
        tok = ["--tokenizer", args.tokenizer] if args.tokenizer else []
        return [args.bin, "serve", "-m", args.model, "-t", str(args.threads), *tok, *flags]
    flags = shlex.split(args.llama_args) if args.llama_args is not None else \
        ["-np", str(parallel), "-c", str(parallel * ctx)] + (["--no-context-shift"] if args.capacity else [])
    if args.capacity and "--metrics" not in flags:
        flags.append("--metrics")
    return [args.llama_server, "-m", args.model, "-t", str(args.threads), "-tb", str(args.threads), *flags]


def start(kind, args, parallel, ctx):
    cmd = server_cmd(kind, args, parallel, ctx)
    srv = ServerProc(kind, cmd, chrt=args.chrt)
    print(f"[{kind}] {' '.join(shlex.quote(c) for c in srv.cmd)}", flush=True)
    if srv.error:
        print(f"[{kind}] did not start ({srv.error}); its log ({srv.logf.name}) ends:\n{srv.log_tail()}",
              flush=True)
        return None
    for line in dict.fromkeys(srv.log_lines("KV self size", "n_ctx_per_seq =", "on http://", "KV pool", "KV cache")):
        print(f"[{kind}]   {line}")
    return srv


def mib(kb):
    return f"{kb / 1024:.0f} MiB"


def rand_ids(rng, n):
    return [rng.randrange(TOKEN_LO, TOKEN_HI) for _ in range(n)]


# ---------------------------------------------------------------------------
# throughput, bench, ttft
# ---------------------------------------------------------------------------

def run_round(kind, args, prompts, ttft_prompts, fig):
    """Starts one server, runs the tests and stops it; adds figures to fig."""
    srv = start(kind, args, args.parallel, args.ctx_size)
    if srv is None:
        return False
    try:
        warm = complete(srv, rand_ids(random.Random(99), args.prompt_len), 4, 0, args)
        if warm["error"]:
            print(f"[{kind}] warm-up request failed: {warm['error']}; server log {srv.logf.name}")
            srv.keep_log = True
            return False
        if "throughput" in args.tests:
            for n in args.streams:
                wall, res = concurrent(srv, prompts[n], args.max_tokens, args)
                tokens = sum(r["completion_tokens"] for r in res)
                bad = short_of(res, args.prompt_len, args.max_tokens)
                ttft = statistics.mean(r["ttft"] or 0 for r in res)
                fig.setdefault((kind, "tps", n), []).append(tokens / wall)
                note = ""
                if bad:
                    note = f"  ({len(bad)} short or failed: {bad[0]['error'] or bad[0]['completion_tokens']})"
                    srv.keep_log = True
                print(f"[{kind}] {n:2d} streams: {tokens:5d} tokens in {wall:6.2f} s = {tokens / wall:7.2f} tok/s,"
                      f" mean TTFT {ttft:.3f} s, load {os.getloadavg()[0]:.2f}{note}", flush=True)
                if n == 1 and res[0]["completion_tokens"] > 1 and res[0]["last"] > res[0]["first"]:
                    fig.setdefault((kind, "decode1"), []).append(
                        (res[0]["completion_tokens"] - 1) / (res[0]["last"] - res[0]["first"]))
        if "ttft" in args.tests:
            for name, prompt in zip("AB", ttft_prompts):
                r = complete(srv, prompt, args.ttft_gen, 0, args)
                if r["error"] or r["prompt_tokens"] != len(prompt):
                    print(f"[{kind}] ttft request {name} failed: {r['error'] or r['prompt_tokens']}; "
                          f"server log {srv.logf.name}")
                    srv.keep_log = True
                    break
                fig.setdefault((kind, "ttft", name), []).append(r["ttft"])
                if r["prompt_n"] is not None:
                    fig.setdefault((kind, "prompt_n", name), []).append(r["prompt_n"])
                evaluated = f", evaluated {r['prompt_n']} of them" if r["prompt_n"] is not None else ""
                print(f"[{kind}] ttft {name}: {len(prompt)}-token prompt{evaluated}: {r['ttft']:.3f} s, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        hwm = max(srv.peak.get("VmHWM", 0), proc_status(srv.proc.pid).get("VmHWM", 0))
        srv.stop()
        fig.setdefault((kind, "hwm"), []).append(max(hwm, srv.hwm))
        print(f"[{kind}] peak RSS {mib(max(hwm, srv.hwm))} (anonymous {mib(srv.peak.get('RssAnon', 0))}, "
              f"file {mib(srv.peak.get('RssFile', 0))})", flush=True)
    return True


def cli_bench(args):
    """tg tokens/s samples of `baichuan bench -p PROMPT -n MAX_TOKENS`."""
    cmd = ([("chrt"), "-f", str(args.chrt)] if args.chrt else []) + \
        [args.bin, "bench", "-m", args.model, "-p", str(args.prompt_len), "-n", str(args.max_tokens),
         "-t", str(args.threads), "-r", "3", "--json"]
    d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return d["tg_samples"]


def summary(values, rounds, best=max):
    """The median, and with more than one round the best (max of a speed, min of a time)."""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.2f}" if rounds == 1 else f"{med:.2f} ({best(values):.2f})"


def main_rounds(args):
    rng = random.Random(1)
    prompts = {n: [rand_ids(rng, args.prompt_len) for _ in range(n)] for n in args.streams}
    fig = {}
    for rnd in range(args.rounds):
        order = args.servers if rnd % 2 == 0 else args.servers[::-1]
        # A prefix not seen before in each round (each server starts with an empty cache anyway).
        trng = random.Random(1000 + rnd)
        prefix = rand_ids(trng, args.ttft_prefix)
        ttft_prompts = [prefix + rand_ids(trng, args.ttft_suffix), prefix + rand_ids(trng, args.ttft_suffix)]
        for kind in order:
            run_round(kind, args, prompts, ttft_prompts, fig)
        if "bench" in args.tests:
            fig.setdefault(("cli", "tg"), []).extend(cli_bench(args))
            print(f"[cli] baichuan bench tg{args.max_tokens}: "
                  f"{' '.join('%.2f' % v for v in fig[('cli', 'tg')][-3:])} tok/s", flush=True)

    both = len(args.servers) == 2
    best = " (best)" if args.rounds > 1 else ""
    print(f"\n{args.model}, {args.threads} threads, {args.rounds} round(s); median{best} over rounds; "
          f"load average now {os.getloadavg()[0]:.2f}")
    if "throughput" in args.tests:
        print(f"\naggregate generation tok/s, {args.prompt_len}-token prompts, {args.max_tokens} tokens per stream")
        head = f"{'streams':>7}" + "".join(f" {k + ' tok/s':>18}" for k in args.servers)
        print(head + (f" {'ours/llama':>10}" if both else ""))
        for n in args.streams:
            row = f"{n:7d}" + "".join(f" {summary(fig.get((k, 'tps', n), []), args.rounds):>18}"
                                      for k in args.servers)
            if both and fig.get(("ours", "tps", n)) and fig.get(("llama", "tps", n)):
                row += f" {statistics.median(fig['ours', 'tps', n]) / statistics.median(fig['llama', 'tps', n]):10.2f}"
            print(row)
    if "bench" in args.tests and fig.get(("cli", "tg")) and fig.get(("ours", "tps", 1)):
        tg = statistics.median(fig["cli", "tg"])
        agg = statistics.median(fig["ours", "tps", 1])
        dec = statistics.median(fig.get(("ours", "decode1"), [0]))
        print(f"\none stream: baichuan bench tg{args.max_tokens} {tg:.2f} tok/s; server aggregate {agg:.2f} tok/s "
              f"(server/bench {agg / tg:.2f}); server decode after the first token {dec:.2f} tok/s "
              f"(server/bench {dec / tg:.2f})")
        if fig.get(("llama", "decode1")):
            print(f"            llama-server decode after the first token "
                  f"{statistics.median(fig['llama', 'decode1']):.2f} tok/s")
    if "ttft" in args.tests:
        print(f"\nTTFT, {args.ttft_prefix}-token shared prefix + {args.ttft_suffix}-token suffix, seconds")
        print(f"{'server':>7} {'A (new)':>14} {'B (same P)':>14} {'A/B':>6}  evaluated A, B")
        for k in args.servers:
            a, b = fig.get((k, "ttft", "A"), []), fig.get((k, "ttft", "B"), [])
            if not a or not b:
                continue
            ev = ""
            if fig.get((k, "prompt_n", "A")):
                ev = ", ".join(f"{statistics.median(fig[k, 'prompt_n', x]):.0f}" for x in "AB")
            print(f"{k:>7} {summary(a, args.rounds, min):>14} {summary(b, args.rounds, min):>14} "
                  f"{statistics.median(a) / statistics.median(b):6.2f}  {ev}")
    print("\npeak RSS: " + ", ".join(f"{k} {mib(max(fig.get((k, 'hwm'), [0])))}" for k in args.servers))


# ---------------------------------------------------------------------------
# prefill: long prompts beside running streams
# ---------------------------------------------------------------------------

class TokenStream:
    """One streamed /v1/completions request on its own thread, with logprobs
    (an event per token): times holds time.time() of each token's event.
    close() hangs up (the server cancels the request)."""

    def __init__(self, srv, prompt, max_tokens, seed, args):
        self.times, self.error, self.finish, self.usage = [], None, None, None
        self.t_send = None
        self._closing = threading.Event()
        body = {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "temperature": args.temperature,
                "top_k": args.top_k, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0, "logprobs": 0,
                "logit_bias": {str(EOS_ID): -100}, "stream": True, "stream_options": {"include_usage": True}}
        self._conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=4 * 3600)
        self._thread = threading.Thread(target=self._run, args=(body,), daemon=True)
        self._thread.start()

    def _run(self, body):
        try:
            self.t_send = time.time()
            self._conn.request("POST", "/v1/completions", body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
            r = self._conn.getresponse()
            if r.status != 200:
                self.error = f"HTTP {r.status}: {r.read()[:300].decode('utf-8', 'replace')}"
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
                    if not block.startswith(b"data: ") or block[6:].strip() == b"[DONE]":
                        continue
                    ev = json.loads(block[6:])
                    if "error" in ev:
                        self.error = json.dumps(ev["error"])[:300]
                    for ch in ev.get("choices") or []:
                        lp = ch.get("logprobs") or {}
                        self.times.extend([now] * len(lp.get("tokens") or []))
                        self.finish = ch.get("finish_reason") or self.finish
                    self.usage = ev.get("usage") or self.usage
        except (OSError, http.client.HTTPException, ValueError) as e:
            if not self._closing.is_set():
                self.error = f"{type(e).__name__}: {e}"

    def n(self):
        return len(self.times)

    def wait(self, pred, timeout):
        """Waits until pred() or the request ended; True if pred() holds."""
        end = time.time() + timeout
        while not pred() and self._thread.is_alive() and time.time() < end:
            time.sleep(0.01)
        return pred()

    def close(self):
        self._closing.set()
        try:
            self._conn.sock and self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(60)
        self._conn.close()


def long_alone(srv, rng, args):
    """The TTFT of a long prompt not seen before, with nothing else running; None if it failed."""
    alone = TokenStream(srv, rand_ids(rng, args.prefill_len), 2, 0, args)
    alone.wait(lambda: alone.n() > 0, 4 * 3600)
    alone.close()
    if alone.error or not alone.times:
        print(f"[ours] the long prompt alone failed: {alone.error}; server log {srv.logf.name}")
        srv.keep_log = True
        return None
    ttft = alone.times[0] - alone.t_send
    print(f"[ours] {args.prefill_len}-token prompt alone: TTFT {ttft:.2f} s, load {os.getloadavg()[0]:.2f}",
          flush=True)
    return ttft


def prefill_round(args, step, rng):
    """Starts our server with --step-tokens step (None: its default), times
    the long prompt alone and beside the streams; returns the figures or None."""
    n = args.prefill_streams
    ctx = args.prefill_ctx  # every sequence may grow to the model's context
    flags = ["--parallel", str(n + 1), "-c", str((n + 1) * ctx)]
    if args.ours_args is not None:
        flags = shlex.split(args.ours_args)
    if step is not None:
        flags += ["--step-tokens", str(step)]
    tok = ["--tokenizer", args.tokenizer] if args.tokenizer else []
    srv = ServerProc("ours", [args.bin, "serve", "-m", args.model, "-t", str(args.threads), *tok, *flags],
                     chrt=args.chrt)
    print(f"[ours] {' '.join(shlex.quote(c) for c in srv.cmd)}", flush=True)
    if srv.error:
        print(f"[ours] did not start ({srv.error}); its log ({srv.logf.name}) ends:\n{srv.log_tail()}", flush=True)
        return None
    for line in srv.log_lines("on http://"):
        print(f"[ours]   {line}")
    try:
        warm = complete(srv, rand_ids(rng, args.prompt_len), 4, 0, args)
        if warm["error"]:
            print(f"[ours] warm-up request failed: {warm['error']}; server log {srv.logf.name}")
            srv.keep_log = True
            return None
        ttft_alone = [long_alone(srv, rng, args)]
        if ttft_alone[0] is None:
            return None

        max_tokens = ctx - args.prompt_len
        streams = [TokenStream(srv, rand_ids(rng, args.prompt_len), max_tokens, 1 + i, args) for i in range(n)]
        for st in streams:
            st.wait(lambda st=st: st.n() >= args.prefill_warm, 600)
        long = TokenStream(srv, rand_ids(rng, args.prefill_len), 2, 0, args)
        long.wait(lambda: long.n() > 0, 4 * 3600)
        t_send, t_first = long.t_send, long.times[0] if long.times else None
        if t_first is not None:
            for st in streams:
                k = sum(1 for t in st.times if t <= t_first)
                st.wait(lambda st=st, k=k: st.n() >= k + args.prefill_warm, 600)
        long.close()
        for st in streams:
            st.close()
        bad = [x.error or f"{x.n()} tokens, finish {x.finish}" for x in streams + [long]
               if x.error or (x is not long and x.finish is not None)]
        if t_first is None or bad:
            print(f"[ours] the run failed: {bad[0] if bad else long.error}; server log {srv.logf.name}")
            srv.keep_log = True
            return None
        ttft_alone.append(long_alone(srv, rng, args))  # once more after: the mean of both, on a shared machine
        if ttft_alone[1] is None:
            return None
    finally:
        srv.stop()
    ttft_alone = statistics.mean(ttft_alone)
    gaps, before, during = [], [], []
    for st in streams:
        for a, b in zip(st.times, st.times[1:]):
            gaps.append(b - a)
            if b <= t_send:
                before.append(b - a)
            elif a < t_first:
                during.append(b - a)
    fig = {"step": step, "ttft_alone": ttft_alone, "ttft": t_first - t_send, "median_before": statistics.median(before),
           "median_all": statistics.median(gaps), "max_during": max(during), "n_during": len(during),
           "median_during": statistics.median(during)}
    print(f"[ours] beside {n} streams: TTFT {fig['ttft']:.2f} s ({fig['ttft'] / ttft_alone:.2f}x alone); the streams' "
          f"gaps: median {fig['median_before']:.3f} s before, {fig['median_all']:.3f} s overall, "
          f"{fig['median_during']:.3f} s during the prefill ({len(during)} tokens), largest there "
          f"{fig['max_during']:.3f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    return fig


def main_prefill(args):
    print(f"{args.model}, {args.threads} threads; a {args.prefill_len}-token prompt arriving while "
          f"{args.prefill_streams} streams of {args.prompt_len}-token prompts generate")
    rng = random.Random(23)
    rows = [f for f in (prefill_round(args, step, rng) for step in args.step_tokens) if f]
    print(f"\n{'step-tokens':>11} {'TTFT alone':>10} {'TTFT':>8} {'ratio':>6} {'median gap':>10} "
          f"{'(overall)':>9} {'largest in prefill':>18} {'/median':>7} {'/overall':>8}")
    for f in rows:
        print(f"{'default' if f['step'] is None else f['step']:>11} {f['ttft_alone']:10.2f} {f['ttft']:8.2f} "
              f"{f['ttft'] / f['ttft_alone']:6.2f} {f['median_before']:10.3f} {f['median_all']:9.3f} "
              f"{f['max_during']:18.3f} {f['max_during'] / f['median_before']:7.2f} "
              f"{f['max_during'] / f['median_all']:8.2f}")
    print("gaps in seconds; median gap: the streams' before the long prompt came (their own pace), overall: over "
          "their whole run; targets (issue 23): largest <= 4x median, TTFT <= 1.3x alone")


# ---------------------------------------------------------------------------
# capacity
# ---------------------------------------------------------------------------

def run_capacity(kind, k, args):
    srv = start(kind, args, k, args.conv_prompt + args.conv_gen)
    if srv is None:
        return None
    rng = random.Random(7 + k)
    shared = rand_ids(rng, args.conv_shared)
    prompts = [shared + rand_ids(rng, args.conv_prompt - args.conv_shared) for _ in range(k)]
    peak_active = [0.0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            a = active_requests(srv)
            if a is not None:
                peak_active[0] = max(peak_active[0], a)
            done.wait(0.5)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        wall, res = concurrent(srv, prompts, args.conv_gen, args)
        done.set()
        w.join()
        preempted = metric(srv, "baichuan_preemptions_total") if kind == "ours" else None
        exited = srv.proc.poll()
        bad = short_of(res, args.conv_prompt, args.conv_gen)
        srv.keep_log = bool(bad) or exited is not None
        hwm = max(srv.peak.get("VmHWM", 0), proc_status(srv.proc.pid).get("VmHWM", 0))
    finally:
        done.set()
        srv.stop()
    ttfts = [r["ttft"] for r in res if r["ttft"] is not None]
    row = {"k": k, "failed": len(bad), "active": peak_active[0], "hwm": max(hwm, srv.hwm),
           "anon": srv.peak.get("RssAnon", 0), "file": srv.peak.get("RssFile", 0), "wall": wall,
           "ttft_max": max(ttfts) if ttfts else None, "exited": exited}
    note = f"; the server exited with code {exited}" if exited is not None else ""
    if preempted is not None:
        note += f"; {preempted:.0f} preemptions"
    if bad:
        b = bad[0]
        note += f"; first failure: {b['error'] or 'usage %d+%d' % (b['prompt_tokens'], b['completion_tokens'])}"
    if srv.keep_log:
        note += f"; server log {srv.logf.name}"
    print(f"[{kind}] K={k}: {k - len(bad)} ok, {len(bad)} failed, at most {peak_active[0]:.0f} decoding at once, "
          f"{wall:.1f} s, peak RSS {mib(row['hwm'])}{note}", flush=True)
    return row


def main_capacity(args):
    with open("/proc/meminfo") as f:
        mem = {ln.split(":")[0]: int(ln.split()[1]) for ln in f}
    print(f"{args.model}, {args.threads} threads; conversations of {args.conv_prompt} prompt "
          f"({args.conv_shared} shared by all) + {args.conv_gen} generated tokens; machine MemTotal {mib(mem['MemTotal'])}, MemAvailable {mib(mem['MemAvailable'])}")
    rows = []
    for k in args.capacity:
        for kind in args.servers:
            row = run_capacity(kind, k, args)
            if row:
                rows.append((kind, row))
    print(f"\n{'server':>7} {'K':>4} {'failed':>6} {'at once':>7} {'peak RSS':>10} {'anon':>10} {'file':>10} "
          f"{'wall s':>8} {'max TTFT':>9}")
    for kind, r in rows:
        ttft = f"{r['ttft_max']:.1f}" if r["ttft_max"] is not None else "-"
        print(f"{kind:>7} {r['k']:4d} {r['failed']:6d} {r['active']:7.0f} {mib(r['hwm']):>10} {mib(r['anon']):>10} "
              f"{mib(r['file']):>10} {r['wall']:8.1f} {ttft:>9}")
    if args.mem_budget:
        print(f"memory budget {args.mem_budget / 2**30:.1f} GiB: " + ", ".join(
            f"{kind} K={r['k']} {'fits' if r['hwm'] * 1024 <= args.mem_budget else 'OVER'}" for kind, r in rows))


# ---------------------------------------------------------------------------

def int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' has a value < 1")
    return values


def step_list(text):
    """Comma-separated --step-tokens values; "default" is None (the server's own)."""
    out = []
    for v in text.split(","):
        if v == "default":
            out.append(None)
            continue
        try:
            out.append(int(v))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{v}' is neither an integer nor 'default'")
    return out


def size_arg(text):
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    t = text.strip().upper().rstrip("IB").rstrip("B")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (e.g. 20G)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the top of this file for what each test measures.")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "baichuan"), help="our baichuan binary")
    ap.add_argument("--model", required=True, help="model file (a GGUF file for llama-server too)")
    ap.add_argument("--tokenizer", help="passed to `baichuan serve --tokenizer`")
    ap.add_argument("--llama-server", metavar="PATH", help="llama.cpp's llama-server: run it too, after ours")
    ap.add_argument("--servers", help="which servers, in order: ours, llama or ours,llama "
                    "(default ours, and llama with --llama-server)")
    ap.add_argument("--ours-args", help="our serve flags, replacing --parallel P -c C (quoted, shell words)")
    ap.add_argument("--llama-args", help="llama-server flags, replacing -np P -c P*C (quoted, shell words)")
    ap.add_argument("--threads", "-t", type=int, default=2, help="threads of each server (default 2)")
    ap.add_argument("--tests", default="throughput,bench,ttft",
                    help="throughput, bench, ttft (comma-separated), or prefill alone")
    ap.add_argument("--streams", type=int_list, default=[1, 4, 8, 16])
    ap.add_argument("--max-tokens", type=int, default=64, help="completion tokens per stream (default 64)")
    ap.add_argument("--prompt-len", type=int, default=16, help="prompt tokens per stream (default 16)")
    ap.add_argument("--parallel", type=int, help="slots of each server (default the largest of --streams)")
    ap.add_argument("--ctx-size", type=int, default=2048, help="positions per slot (default 2048)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--ttft-prefix", type=int, default=1500)
    ap.add_argument("--ttft-suffix", type=int, default=16)
    ap.add_argument("--ttft-gen", type=int, default=8, help="tokens generated by each TTFT request")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--capacity", type=int_list, metavar="K,...", help="capacity mode: K concurrent conversations")
    ap.add_argument("--conv-prompt", type=int, default=1900)
    ap.add_argument("--conv-gen", type=int, default=148)
    ap.add_argument("--conv-shared", type=int, default=0,
                    help="prompt tokens every conversation shares at its start (a system prompt; default 0)")
    ap.add_argument("--mem-budget", type=size_arg, help="capacity: say whether each peak RSS fits (e.g. 20G)")
    ap.add_argument("--chrt", type=int, metavar="PRIO", help="SCHED_FIFO priority for the servers and this program")
    ap.add_argument("--prefill-len", type=int, default=3953, help="prefill: the long prompt's tokens (3953)")
    ap.add_argument("--prefill-streams", type=int, default=4, help="prefill: streams generating meanwhile (4)")
    ap.add_argument("--prefill-warm", type=int, default=16,
                    help="prefill: tokens each stream gets before the long prompt and after its first token (16)")
    ap.add_argument("--prefill-ctx", type=int, default=4096,
                    help="prefill: the model's context (4096): positions per slot, and the streams' length")
    ap.add_argument("--step-tokens", type=step_list, default=[None],
                    help="prefill: serve --step-tokens values, one server each (\"default\": none given)")
    args = ap.parse_args()

    args.tests = [t for t in args.tests.split(",") if t]
    if any(t not in ("throughput", "bench", "ttft", "prefill") for t in args.tests):
        ap.error(f"--tests: unknown test in {args.tests}")
    if "prefill" in args.tests:
        if len(args.tests) > 1 or args.capacity or args.servers not in (None, "ours"):
            ap.error("--tests prefill runs alone, on our server only")
        print(f"load average before: {' '.join('%.2f' % x for x in os.getloadavg())}", flush=True)
        return main_prefill(args)
    if "bench" in args.tests and "throughput" not in args.tests or "bench" in args.tests and 1 not in args.streams:
        args.tests.remove("bench")
    args.servers = args.servers.split(",") if args.servers else ["ours"] + (["llama"] if args.llama_server else [])
    if any(k not in ("ours", "llama") for k in args.servers) or not args.servers:
        ap.error("--servers: ours, llama or both")
    if "llama" in args.servers and not args.llama_server:
        ap.error("--servers llama needs --llama-server PATH")
    args.parallel = args.parallel or max(args.streams)
    if args.chrt:
        if not shutil.which("chrt"):
            ap.error("--chrt: no chrt on PATH")
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.chrt))
    print(f"load average before: {' '.join('%.2f' % x for x in os.getloadavg())}", flush=True)
    if args.capacity:
        main_capacity(args)
    else:
        main_rounds(args)


if __name__ == "__main__":
    main()
