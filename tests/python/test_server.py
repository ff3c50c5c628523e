#!/usr/bin/python3
"""`baichuan serve`: the OpenAI endpoints with plain HTTP clients (http.client
and curl), on the embedded default model.

Expected values come from independent sources: streamed text against the
same request non-streamed, prompt token counts against /tokenize, stop
strings against the unstopped text, logprobs against their own top lists.

    test_server.py --bin build/baichuan [--fixtures DIR]
"""
import argparse
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import bc_testlib
from server_util import Server, parse_sse, stream_text, wait_for

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"


def check_generation(t, s):
    # Completions: streamed == non-streamed for the same seed; usage vs /tokenize.
    prompt = "床前明月光，"
    body = {"prompt": prompt, "max_tokens": 24, "seed": 7, "temperature": 0.8}
    st, _, full = s.post(COMP, body)
    t.check("completions 200", st == 200, full)
    text = full["choices"][0]["text"]
    t.check("completions shape", full["object"] == "text_completion" and full["id"].startswith("cmpl-")
            and full["choices"][0]["finish_reason"] in ("stop", "length"), full)
    st, _, tok = s.post("/tokenize", {"content": prompt})
    t.check("usage.prompt_tokens == /tokenize count", full["usage"]["prompt_tokens"] == len(tok["tokens"]),
            (full["usage"], tok))
    t.check("usage.total = prompt + completion", full["usage"]["total_tokens"] ==
            full["usage"]["prompt_tokens"] + full["usage"]["completion_tokens"], full["usage"])
    st, _, detok = s.post("/detokenize", {"tokens": tok["tokens"]})
    t.check("/detokenize(/tokenize(x)) == x", detok.get("content") == prompt, detok)

    st, events, done = s.stream(COMP, dict(body, stream=True, stream_options={"include_usage": True}))
    stext, finish = stream_text(events)
    t.check("completions stream == non-stream", st == 200 and stext == text, (stext, text))
    t.check("completions stream ends with [DONE] and finish_reason", done and
            finish == full["choices"][0]["finish_reason"], (done, finish))
    t.check("include_usage: last chunk has usage, no choices",
            events[-1]["choices"] == [] and events[-1]["usage"] == full["usage"], events[-1])
    t.check("include_usage: other chunks have usage null", all(e["usage"] is None for e in events[:-1]))

    # logit_bias +100 on one token makes greedy decoding repeat it; the text is
    # that token's piece, as /detokenize gives it, repeated.
    x = tok["tokens"][1]
    st, _, biased = s.post(COMP, {"prompt": prompt, "max_tokens": 5, "temperature": 0,
                                  "logit_bias": {str(x): 100}})
    st2, _, want = s.post("/detokenize", {"tokens": [x] * 5})
    t.check("logit_bias +100 forces the token", st == 200 and st2 == 200
            and biased["choices"][0]["text"] == want.get("content")
            and biased["usage"]["completion_tokens"] == 5, (biased, want))

    # Token-id prompt gives the same as the text prompt.
    st, _, ids = s.post(COMP, dict(body, prompt=tok["tokens"]))
    t.check("token-id prompt == text prompt", st == 200 and ids["choices"][0]["text"] == text, ids)

    # Chat.
    msgs = [{"role": "system", "content": "你是诗人。"}, {"role": "user", "content": "写一首诗"}]
    cbody = {"messages": msgs, "max_tokens": 20, "seed": 3, "temperature": 0.7, "user": "x", "unknown_field": 1}
    st, _, chat = s.post(CHAT, cbody)
    t.check("chat 200", st == 200 and chat["object"] == "chat.completion"
            and chat["choices"][0]["message"]["role"] == "assistant", chat)
    ctext = chat["choices"][0]["message"]["content"]
    st, events, done = s.stream(CHAT, dict(cbody, stream=True))
    stext, finish = stream_text(events)
    t.check("chat stream == non-stream", stext == ctext and done, (stext, ctext))
    t.check("chat stream: first delta has the role", events[0]["choices"][0]["delta"].get("role") == "assistant"
            and all(e["object"] == "chat.completion.chunk" for e in events), events[0])
    t.check("chat stream: no usage without include_usage", all("usage" not in e for e in events))
    t.check("chat finish_reason", finish == chat["choices"][0]["finish_reason"], (finish, chat))

    # max_completion_tokens, length.
    st, _, r = s.post(CHAT, dict(cbody, max_completion_tokens=3, max_tokens=None))
    t.check("max_completion_tokens=3 -> 3 tokens, length", r["usage"]["completion_tokens"] == 3 and
            r["choices"][0]["finish_reason"] == "length", r)

    # Stop: cut at the first occurrence of a piece of the unstopped text.
    long_body = {"prompt": prompt, "max_tokens": 40, "seed": 11, "temperature": 0.9}
    _, _, base = s.post(COMP, long_body)
    btext = base["choices"][0]["text"]
    stop = btext[len(btext) // 2: len(btext) // 2 + 2] if len(btext) > 4 else None
    if stop:
        st, _, cut = s.post(COMP, dict(long_body, stop=[stop, "never-occurs-xyz"]))
        want = btext[:btext.index(stop)]
        t.check("stop string cuts the text", cut["choices"][0]["text"] == want and
                cut["choices"][0]["finish_reason"] == "stop", (cut["choices"][0], want, stop))
        st, events, _ = s.stream(COMP, dict(long_body, stop=stop, stream=True))
        t.check("stop string, streamed", stream_text(events) == (want, "stop"), stream_text(events))
    else:
        t.check("stop string (base text too short)", False, btext)

    # Greedy is deterministic whatever the seed.
    g = {"prompt": "The", "max_tokens": 10, "temperature": 0}
    a = s.post(COMP, dict(g, seed=1))[2]["choices"][0]["text"]
    b = s.post(COMP, dict(g, seed=2))[2]["choices"][0]["text"]
    t.check("temperature 0 ignores the seed", a == b, (a, b))

    # Penalties change greedy output away from repetition (presence/frequency are accepted and used).
    plain = s.post(COMP, dict(g, max_tokens=30))[2]["choices"][0]["text"]
    pen = s.post(COMP, dict(g, max_tokens=30, frequency_penalty=2.0, presence_penalty=2.0))[2]
    t.check("presence/frequency penalties accepted and change greedy text",
            pen["choices"][0]["text"] != plain, (plain, pen))

    # Logprobs (chat): the chosen token's logprob under greedy is the top one; top lists sorted; a distribution.
    # (repetition_penalty 1: logprobs are of the raw logits, so greedy picks their top only unpenalized)
    st, _, lp = s.post(CHAT, {"messages": msgs, "max_tokens": 5, "temperature": 0, "logprobs": True,
                              "top_logprobs": 5, "repetition_penalty": 1.0})
    content = lp["choices"][0]["logprobs"]["content"]
    ok = len(content) == lp["usage"]["completion_tokens"]
    for e in content:
        tops = [x["logprob"] for x in e["top_logprobs"]]
        ok &= len(tops) == 5 and tops == sorted(tops, reverse=True) and abs(e["logprob"] - tops[0]) < 1e-9
        ok &= sum(math.exp(x) for x in tops) <= 1.0 + 1e-9 and all(x <= 0 for x in tops)
    t.check("chat logprobs: greedy token is the top one, sorted, <= 1 in total", ok, content[:2])
    t.check("chat logprobs: tokens concatenate to the text",
            "".join(e["token"] for e in content) == lp["choices"][0]["message"]["content"], content)
    st, _, lp = s.post(COMP, {"prompt": "The", "max_tokens": 4, "temperature": 0, "logprobs": 3})
    L = lp["choices"][0]["logprobs"]
    t.check("completions logprobs: legacy shape", len(L["tokens"]) == 4 and len(L["token_logprobs"]) == 4 and
            all(len(x) <= 3 for x in L["top_logprobs"]) and L["text_offset"][0] == 0, L)

    # A multi-byte text streamed never splits a character (parse_sse decodes each event strictly).
    st, events, done = s.stream(COMP, {"prompt": "春", "max_tokens": 40, "seed": 5, "stream": True})
    t.check("UTF-8 whole in every chunk", st == 200 and done)


def check_errors(t, s, binary):
    def err(status, r, code=None, param=None, name=""):
        st, _, body = r
        e = body.get("error") if isinstance(body, dict) else None
        ok = bool(st == status and isinstance(e, dict) and set(e) == {"message", "type", "param", "code"} \
            and isinstance(e["message"], str) and e["message"])
        if code is not None:
            ok &= e is not None and e["code"] == code
        if param is not None:
            ok &= e is not None and e["param"] == param
        t.check("%d %s" % (status, name), ok, r)

    err(400, s.request("POST", CHAT, raw=b"{not json"), name="malformed JSON")
    err(400, s.request("POST", COMP, raw=b""), name="empty body")
    err(400, s.post(CHAT, {"max_tokens": 3}), param="messages", name="missing messages")
    err(400, s.post(CHAT, {"messages": []}), param="messages", name="empty messages")
    err(400, s.post(CHAT, {"messages": [{"role": "tool", "content": "x"}]}), param="messages", name="bad role")
    err(400, s.post(COMP, {"prompt": "x", "n": 9}), param="n", name="n=9")
    err(400, s.post(COMP, {"prompt": "x", "n": 0}), param="n", name="n=0")
    err(400, s.post(COMP, {"prompt": "x", "temperature": "hot"}), param="temperature", name="bad temperature")
    err(400, s.post(COMP, {"prompt": [1, 2, 999999]}), param="prompt", name="token id outside the vocabulary")
    err(400, s.post(COMP, {"prompt": "x", "stop": [1]}), param="stop", name="bad stop")
    for label, lb in [("not an object", [1]), ("key not a token id", {"abc": 1}),
                      ("token outside the vocabulary", {"999999": 1}), ("bias over 100", {"5": 101}),
                      ("bias not a number", {"5": "up"}), ("negative id", {"-1": 1})]:
        err(400, s.post(COMP, {"prompt": "x", "logit_bias": lb}), param="logit_bias", name="logit_bias " + label)
    long_prompt = list(range(10, 10 + 1100))  # the default model has 1024 positions
    err(400, s.post(COMP, {"prompt": long_prompt}), code="context_length_exceeded", name="prompt over the context")
    err(400, s.post(COMP, {"prompt": "x", "max_tokens": 5000}), code="context_length_exceeded",
        name="prompt + max_tokens over the context")
    big = {"prompt": "x" * (70 * 1024)}
    err(413, s.post(COMP, big), name="body too large")
    err(404, s.request("GET", "/v1/nothing"), name="unknown route")
    err(405, s.request("GET", CHAT), name="wrong method")
    st, h, _ = s.request("PUT", "/health")
    t.check("405 has Allow", st == 405 and h.get("allow") == "GET", h)

    # curl as a client, including an error and a stream.
    out = subprocess.run(["curl", "-sS", "-N", "http://127.0.0.1:%d%s" % (s.port, CHAT), "-H",
                          "Content-Type: application/json", "-d",
                          json.dumps({"messages": [{"role": "user", "content": "你好"}], "max_tokens": 6,
                                      "seed": 1, "stream": True})], capture_output=True, timeout=60)
    events, done = parse_sse(out.stdout)
    st, _, ref = s.post(CHAT, {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 6, "seed": 1})
    t.check("curl stream == http.client non-stream", done and
            stream_text(events)[0] == ref["choices"][0]["message"]["content"], out.stdout[:300])
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          "http://127.0.0.1:%d/v1/models" % s.port], capture_output=True, timeout=30)
    t.check("curl GET /v1/models 200", out.stdout == b"200", out.stdout)


def check_info(t, s):
    st, _, h = s.request("GET", "/health")
    t.check("/health", st == 200 and h == {"status": "ok"}, h)
    st, _, m = s.request("GET", "/v1/models")
    t.check("/v1/models", st == 200 and m["object"] == "list" and m["data"][0]["id"] == "default", m)
    st, hdr, page = s.request("GET", "/")
    t.check("GET / serves the page", st == 200 and "text/html" in hdr["content-type"] and "<form" in page and
            "/v1/chat/completions" in page and "http" not in page.split("<script>")[1].split("fetch(")[0], hdr)
    text, values = s.metrics()
    need = ["# TYPE baichuan_requests_total counter", "# TYPE baichuan_time_to_first_token_seconds histogram",
            "# TYPE baichuan_time_per_output_token_seconds histogram", "# TYPE baichuan_queue_depth gauge",
            "# TYPE baichuan_active_slots gauge", 'baichuan_time_to_first_token_seconds_bucket{le="+Inf"}']
    t.check("/metrics exposition", all(n in text for n in need), text[:500])
    t.check("/metrics idle: 0 active, 0 queued", values.get("baichuan_active_slots") == 0
            and values.get("baichuan_queue_depth") == 0, values)
    n200 = values.get('baichuan_requests_total{tenant="",endpoint="/v1/completions",status="200"}', 0)
    ttft = values.get("baichuan_time_to_first_token_seconds_count", 0)
    return n200, ttft


def check_sigterm(t, binary, work):
    ledger = os.path.join(work, "term.sqlite")
    s = Server(binary, "--ledger", ledger, "--parallel", "2")
    result = {}

    def client():
        result["r"] = s.stream(COMP, {"prompt": "The", "max_tokens": 60, "temperature": 0, "stream": True,
                                      "stream_options": {"include_usage": True}})

    th = threading.Thread(target=client)
    th.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    th.join(120)
    code = s.proc.wait(60)
    st, events, done = result.get("r", (0, [], False))
    t.check("SIGTERM: the running stream finishes with [DONE]", st == 200 and done, (st, done))
    t.check("SIGTERM: exit 0", code == 0, code)
    import sqlite3
    db = sqlite3.connect(ledger)
    rows = db.execute("SELECT status, completion_tokens FROM requests").fetchall()
    db.close()
    got = events[-1]["usage"]["completion_tokens"] if events and events[-1].get("usage") else None
    t.check("SIGTERM: the ledger holds the finished request", rows == [(200, got)], (rows, got))
    # New connections are refused after SIGTERM (the process is gone by now).
    with socket.socket() as so:
        t.check("SIGTERM: port closed", so.connect_ex(("127.0.0.1", s.port)) != 0)


def check_grammar_allowing_nothing(t, s):
    """On the 40 ids of tests/data/tiny.gguf (bytes up to 0x24 of
    tiny_bpe.model's byte fallback) a grammar that wants "a" allows no id at
    the start and may not end there: the step fails, and that request alone
    ends with an error, while a request generating in the same batches runs
    on to its end."""
    nothing = {"prompt": [1, 5, 9], "max_tokens": 4, "grammar": 'root ::= "a"'}
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    c.request("POST", COMP, json.dumps({"prompt": [1, 5, 9], "max_tokens": 4000, "temperature": 0,
                                        "logit_bias": {"2": -100}, "stream": True}),
              {"Content-Type": "application/json"})
    resp = c.getresponse()
    first = resp.readline()  # generating: the requests below share its batches
    st, _, body = s.post(COMP, dict(nothing, n=2, logprobs=2))
    t.check("a grammar that allows nothing: 500 server_error",
            st == 500 and body.get("error", {}).get("type") == "server_error", (st, body))
    st, events, done = s.stream(COMP, dict(nothing, stream=True))
    t.check("a grammar that allows nothing, streamed: the stream ends with an error event",
            st == 200 and events and "error" in events[-1] and not done, (st, events, done))
    events, done = parse_sse(first + resp.read())
    c.close()
    text, finish = stream_text(events)
    t.check("a grammar that allows nothing: the request beside it runs to its end",
            done and finish == "length" and len(text) > 0, (done, finish, events[-1:]))
    t.check("a grammar that allows nothing: the log names the grammar",
            wait_for(lambda: any("the grammar allows no token" in line for line in s.log), timeout=10), s.log[-5:])


def check_mismatched_tokenizer(t, binary):
    """A tokenizer larger than the model's vocabulary (tests/data: a 40-token
    GGUF, a BPE model of several hundred pieces): a prompt that encodes past
    the vocabulary is a 400 for that request, not a failed batch for all."""
    data = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
    s = Server(binary, "--tokenizer", os.path.join(data, "tiny_bpe.model"), model=os.path.join(data, "tiny.gguf"))
    try:
        st, _, body = s.post(COMP, {"prompt": "Hello world, a longer prompt", "max_tokens": 2})
        err = body.get("error", {}) if isinstance(body, dict) else {}
        t.check("tokenizer larger than the model: 400 invalid_prompt naming the vocabulary",
                st == 400 and err.get("code") == "invalid_prompt" and "vocabulary of 40" in err.get("message", ""),
                (st, body))
        st, _, body = s.post(COMP, {"prompt": [1, 5, 9], "max_tokens": 2, "temperature": 0})
        t.check("tokenizer larger than the model: in-vocabulary ids still generate", st == 200, (st, body))
        check_grammar_allowing_nothing(t, s)
        t.check("tokenizer larger than the model: no failed forward pass logged",
                not any("forward pass failed" in line for line in s.log), s.log[-5:])
    finally:
        t.check("server exits 0 on SIGTERM", s.stop() == 0, "\n".join(s.log[-20:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work")
    args = ap.parse_args()
    t = bc_testlib.Tally()
    with tempfile.TemporaryDirectory() as work:
        s = Server(args.bin, "--parallel", "4", "--max-body", "65536")
        try:
            check_generation(t, s)
            check_errors(t, s, args.bin)
            n200, ttft = check_info(t, s)
            t.check("/metrics counted the completions", n200 >= 8 and ttft >= 10, (n200, ttft))
        finally:
            t.check("server exits 0 on SIGTERM", s.stop() == 0, "\n".join(s.log[-20:]))
        check_sigterm(t, args.bin, work)
        check_mismatched_tokenizer(t, args.bin)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
