#!/usr/bin/python3
"""`baichuan serve`: several choices per request (n) and structured output
(response_format, grammar, json_schema), on the embedded default model.

n: choice i of a request with seed S is checked against the same request
with n=1 and seed S+i (its own sequence, computed alone); usage and the
ledger against the choices' own token lists (logprobs); with fewer slots
than choices, and under preemption, against the same requests run alone.

Structured output: errors name their field; every output that ended by EOS
(finish_reason "stop") under a JSON Schema parses with json.loads and
validates with python3-jsonschema,
json_object outputs are objects, and GBNF outputs match a Python regular
expression of the grammar's language. The CLI's run and chat take the same constraints
from files (--json-schema, --grammar-file) or --json.

    test_structured_output.py --bin build/baichuan [--work DIR]
"""
import argparse
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading

import bc_testlib
from server_util import Server, parse_sse, wait_for

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
PROMPT = "床前明月光，"


def tokens_of(choice):
    """The ids a choice generated, from its logprobs (either endpoint's shape)."""
    lp = choice["logprobs"]
    return lp["tokens"] if "tokens" in lp else [e["token"] for e in lp["content"]]


def text_of(choice):
    return choice["message"]["content"] if "message" in choice else choice["text"]


def by_index(events):
    """Per choice index: streamed text, finish_reason chunks, role deltas."""
    out = {}
    for e in events:
        for ch in e.get("choices", []):
            o = out.setdefault(ch["index"], {"text": "", "finish": [], "roles": 0})
            if "delta" in ch:
                o["text"] += ch["delta"].get("content") or ""
                o["roles"] += "role" in ch["delta"]
            else:
                o["text"] += ch.get("text") or ""
            if ch.get("finish_reason"):
                o["finish"].append(ch["finish_reason"])
    return out


def check_n(t, s, ledger):
    for path, base in ((COMP, {"prompt": PROMPT}), (CHAT, {"messages": [{"role": "user", "content": "写一首诗"}]})):
        name = "completions" if path == COMP else "chat"
        body = dict(base, max_tokens=12, seed=40, temperature=1.0, n=3)
        body["logprobs"] = 0 if path == COMP else True
        st, _, r = s.post(path, body)
        ok = st == 200 and [c["index"] for c in r["choices"]] == [0, 1, 2]
        t.check("%s n=3: three choices ordered by index" % name, ok, r)
        if not ok:
            continue
        texts = [text_of(c) for c in r["choices"]]
        n_tokens = [len(tokens_of(c)) for c in r["choices"]]
        t.check("%s n=3: usage.completion_tokens is the sum over the choices" % name,
                r["usage"]["completion_tokens"] == sum(n_tokens) and
                r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + sum(n_tokens), (r["usage"], n_tokens))
        # Each choice is the request with n=1 and seed + index.
        alone = []
        for i in range(3):
            st, _, a = s.post(path, dict(body, n=1, seed=40 + i))
            alone.append(text_of(a["choices"][0]) if st == 200 else None)
        t.check("%s n=3: choice i == the n=1 request with seed+i" % name, texts == alone, (texts, alone))
        t.check("%s n=3: usage.prompt_tokens counted once" % name,
                r["usage"]["prompt_tokens"] == a["usage"]["prompt_tokens"], (r["usage"], a["usage"]))
        st, _, again = s.post(path, body)
        t.check("%s n=3: the same seed gives the same three texts" % name,
                st == 200 and [text_of(c) for c in again["choices"]] == texts, again)
        t.check("%s n=3 at temperature 1: the choices differ" % name, len(set(texts)) >= 2, texts)

        # Streamed: each index's text and one finish chunk; usage once, last.
        sbody = dict(body, stream=True, stream_options={"include_usage": True})
        st, events, done = s.stream(path, sbody)
        got = by_index(events)
        t.check("%s n=3 stream: per-index text == non-streamed choices" % name,
                st == 200 and done and sorted(got) == [0, 1, 2] and [got[i]["text"] for i in range(3)] == texts,
                (got, texts))
        t.check("%s n=3 stream: one finish_reason per choice, as non-streamed" % name,
                all(got[i]["finish"] == [r["choices"][i]["finish_reason"]] for i in range(3)), got)
        usage = [e for e in events if e.get("usage")]
        t.check("%s n=3 stream: one usage chunk, the last, with the summed usage" % name,
                len(usage) == 1 and events[-1] is usage[0] and usage[0]["usage"] == r["usage"], usage)
        if path == CHAT:
            t.check("chat n=3 stream: each choice's first delta has the role",
                    all(got[i]["roles"] == 1 for i in range(3)), got)

    # The prompt is computed once: choices 1..3 fork its positions but the
    # last (which each feeds for its own logits) from choice 0's sequence.
    _, before = s.metrics()
    st, _, r = s.post(COMP, {"prompt": "春眠不觉晓，处处闻啼鸟。", "max_tokens": 4, "seed": 1, "n": 4})
    _, after = s.metrics()
    n_prompt = r["usage"]["prompt_tokens"]
    forked = after["baichuan_forked_prompt_tokens_total"] - before["baichuan_forked_prompt_tokens_total"]
    missed = after["baichuan_prefix_cache_miss_tokens_total"] - before["baichuan_prefix_cache_miss_tokens_total"]
    t.check("n=4: choices 1..3 fork the prompt's first %d positions" % (n_prompt - 1),
            st == 200 and forked == 3 * (n_prompt - 1) and missed == n_prompt, (forked, missed, n_prompt))

    # One ledger row per request, with the summed completion tokens.
    st, _, r = s.post(COMP, {"prompt": "秋风", "max_tokens": 9, "seed": 5, "n": 4, "logprobs": 0})
    rid, total = r["id"], sum(len(tokens_of(c)) for c in r["choices"])
    db = sqlite3.connect(ledger)
    rows = db.execute("SELECT status, prompt_tokens, completion_tokens FROM requests WHERE request_id = ?",
                      (rid,)).fetchall()
    db.close()
    t.check("n=4: one ledger row with the summed completion tokens",
            rows == [(200, r["usage"]["prompt_tokens"], total)], (rows, total))

    for n in (9, 0, -1, 2.5, "3"):
        st, _, e = s.post(COMP, {"prompt": "x", "n": n})
        t.check("n=%r: 400 naming 'n'" % (n,), st == 400 and e["error"]["param"] == "n", (st, e))


def check_few_slots(t, binary):
    """n=6 on 2 slots: later choices wait for earlier ones and still equal
    their n=1 requests (prefix cache on and off); under preemption (a pool
    too small for the choices together) they still do."""
    body = {"prompt": PROMPT, "max_tokens": 16, "seed": 11, "temperature": 0.9, "frequency_penalty": -2.0}
    for extra in ((), ("--no-prefix-cache",)):
        s = Server(binary, "--parallel", "2", *extra)
        try:
            st, _, r = s.post(COMP, dict(body, n=6))
            alone = [s.post(COMP, dict(body, seed=11 + i))[2]["choices"][0]["text"] for i in range(6)]
            t.check("n=6 on 2 slots%s: every choice == its n=1 request" % (" " + extra[0] if extra else ""),
                    st == 200 and [c["text"] for c in r["choices"]] == alone, (r, alone))
        finally:
            s.stop()
    # Four choices of 150 tokens on a pool of 256 positions: some are preempted.
    long_body = dict(body, max_tokens=150, seed=3)
    s = Server(binary, "--parallel", "4", "-c", "256", "--cache-type", "f32")
    try:
        st, _, r = s.post(COMP, dict(long_body, n=4), timeout=600)
        alone = [s.post(COMP, dict(long_body, seed=3 + i), timeout=600)[2]["choices"][0]["text"] for i in range(4)]
        # The engine refreshes its gauges after the step that sent the reply.
        m = {}

        def all_free():
            m.update(s.metrics()[1])
            return m["baichuan_active_slots"] == 0 and m["baichuan_kv_blocks_free"] == m["baichuan_kv_blocks"]

        freed = wait_for(all_free, timeout=10)
        t.check("n=4 under preemption: 200, every choice == its n=1 request",
                st == 200 and [c["text"] for c in r["choices"]] == alone, (r, alone))
        t.check("n=4 under preemption: preemptions happened", m["baichuan_preemptions_total"] > 0,
                m["baichuan_preemptions_total"])
        t.check("n=4 under preemption: all blocks free afterwards", freed,
                (m["baichuan_kv_blocks_free"], m["baichuan_kv_blocks"]))
    finally:
        s.stop()


def check_quota(t, binary, work):
    """A tenant's daily tokens are charged the prompt once plus every choice's
    completion tokens: a request with n=4 that uses up the quota refuses the
    next, as its usage says it must."""
    tenants = os.path.join(work, "tenants.json")
    key = "key-gamma-0123456789abcdef"
    with open(tenants, "w") as f:
        json.dump({"tenants": [{"name": "gamma", "keys": [key], "tokens_per_day": 20}]}, f)
    s = Server(binary, "--tenants", tenants, "--parallel", "4")
    auth = {"Authorization": "Bearer " + key}
    try:
        body = {"prompt": "秋", "max_tokens": 8, "seed": 2, "temperature": 1.0, "frequency_penalty": -2.0}
        st, _, r = s.post(COMP, dict(body, n=4), headers=auth)
        used = r["usage"]["total_tokens"] if st == 200 else None
        n1 = r["usage"]["prompt_tokens"] + body["max_tokens"] if st == 200 else 0  # what n=1 could use
        st2, _, r2 = s.post(COMP, body, headers=auth)
        t.check("quota of 20: n=4 used %s tokens (one choice alone at most %d); the next request is %s" %
                (used, n1, st2), st == 200 and used >= 20 and n1 < 20 and st2 == 429, (st, r, st2, r2))
        _, m = s.metrics(headers=auth)
        t.check("quota: /metrics counts the summed completion tokens",
                m.get('baichuan_completion_tokens_total{tenant="gamma"}') == r["usage"]["completion_tokens"],
                (m.get('baichuan_completion_tokens_total{tenant="gamma"}'), r["usage"]))
    finally:
        s.stop()


def err_param(s, body, path=COMP):
    st, _, e = s.post(path, body)
    return (st, e["error"]["param"]) if st == 400 else (st, e)


def check_constraint_errors(t, s):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf_schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    cases = [
        ("response_format + grammar", {"response_format": {"type": "json_object"}, "grammar": 'root ::= "x"'},
         "grammar"),
        ("grammar + json_schema", {"grammar": 'root ::= "x"', "json_schema": schema}, "json_schema"),
        ("response_format json_schema + json_schema", {"response_format": rf_schema, "json_schema": schema},
         "json_schema"),
        ("response_format not an object", {"response_format": "json"}, "response_format"),
        ("response_format.type unknown", {"response_format": {"type": "xml"}}, "response_format.type"),
        ("json_schema without schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}},
         "response_format.json_schema.schema"),
        ("json_schema.name not a string",
         {"response_format": {"type": "json_schema", "json_schema": {"name": 1, "schema": schema}}},
         "response_format.json_schema.name"),
        ("grammar not a string", {"grammar": 5}, "grammar"),
        ("json_schema not an object", {"json_schema": "{}"}, "json_schema"),
        ("a GBNF syntax error", {"grammar": "root ::= (\"a\""}, "grammar"),
        ("an unsupported schema keyword",
         {"json_schema": {"type": "object", "patternProperties": {"x": {}}}}, "json_schema"),
        ("an unsupported keyword in response_format's schema",
         {"response_format": {"type": "json_schema",
                              "json_schema": {"name": "a", "schema": {"type": "object", "patternProperties": {}}}}},
         "response_format.json_schema.schema"),
    ]
    for name, extra, param in cases:
        got = err_param(s, dict({"prompt": "x", "max_tokens": 2}, **extra))
        t.check("400 %s names %s" % (name, param), got == (400, param), got)
    got = err_param(s, {"messages": [{"role": "user", "content": "x"}], "grammar": 'root ::= "x"', "json_schema": {}},
                    CHAT)
    t.check("chat: 400 for two constraints", got == (400, "json_schema"), got)
    st, _, r = s.post(COMP, {"prompt": "x", "max_tokens": 2, "response_format": {"type": "text"}})
    t.check("response_format text: an ordinary 200", st == 200, r)


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
     "required": ["name"], "additionalProperties": False},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
     "required": ["color", "ok"], "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                                               "minItems": 1, "maxItems": 3}},
     "required": ["tags"], "additionalProperties": False},
    {"type": "object", "properties": {"inner": {"type": "object", "properties": {
        "x": {"type": "number"}, "y": {"type": "null"}}, "required": ["x"], "additionalProperties": False}},
     "required": ["inner"], "additionalProperties": False},
    {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 4}]}},
     "required": ["v"], "additionalProperties": False},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": -5, "maximum": 42}}, "required": ["n"],
     "additionalProperties": False},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                                      "day": {"type": "string", "format": "date"}},
     "required": ["code", "day"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
]


# A small GBNF language and the same language as a Python regular expression.
GBNF = 'root ::= "<" word ("," word){0,3} ">"\nword ::= [a-z]{1,6} | [0-9]+\n'
GBNF_LANG = re.compile(r"<([a-z]{1,6}|[0-9]+)(,([a-z]{1,6}|[0-9]+)){0,3}>")


def outputs(s, path, body):
    """(status, [(text, finish_reason)] per choice) of a request, streamed or not."""
    if body.get("stream"):
        st, events, done = s.stream(path, body)
        if st != 200:
            return st, []
        got = by_index(events)
        return st, [(got[i]["text"], (got[i]["finish"] or [None])[0]) for i in sorted(got)]
    st, _, r = s.post(path, body)
    return st, [(text_of(c), c["finish_reason"]) for c in r.get("choices", [])] if st == 200 else []


def check_property_order(t, s):
    """Properties come in the order the schema lists them (as OpenAI's structured
    outputs and the README say), not sorted: "zeta" before "alpha"."""
    import re

    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"], "additionalProperties": False}
    bad = []
    for field in ("response_format", "json_schema"):
        if field == "json_schema":
            body = {"json_schema": schema}
        else:
            body = {"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}}
        # Whitespace after "{" is at most 21 characters, so 40 tokens reach the first key.
        st, outs = outputs(s, COMP, dict(body, prompt=PROMPT, max_tokens=40, seed=7, temperature=1.0, n=2))
        if st != 200 or not outs or any(not re.match(r'\{\s*"z', text) for text, _ in outs):
            bad.append((field, st, outs))
    t.check("JSON Schemas: properties in the schema's order, not sorted", not bad, bad)


def check_cache_eviction(t, s):
    """The cache keeps the 32 most recently used grammars; one evicted while
    a request still uses it lives until that request ends."""
    literal = "ab" * 450  # long: the request is still running when its grammar is evicted
    held = 'root ::= "%s"' % literal
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    c.request("POST", COMP, json.dumps({"prompt": PROMPT, "max_tokens": 1000, "seed": 3, "grammar": held,
                                        "stream": True}), {"Content-Type": "application/json"})
    resp = c.getresponse()
    first = resp.readline()  # the stream has started: the request holds its grammar
    _, before = s.metrics()
    codes = [s.post(COMP, {"prompt": "x", "max_tokens": 1, "grammar": 'root ::= "e%d"' % i})[0] for i in range(33)]
    _, during = s.metrics()
    rest = resp.read()
    c.close()
    events, done = parse_sse(first + rest)
    text = "".join(ch.get("text") or "" for e in events for ch in e.get("choices", []))
    finish = [ch["finish_reason"] for e in events for ch in e.get("choices", []) if ch.get("finish_reason")]
    t.check("cache: a grammar evicted while its request runs still constrains it to the end",
            all(code == 200 for code in codes) and during["baichuan_active_slots"] >= 1 and done and
            (text == literal if finish == ["stop"] else literal.startswith(text)),
            (codes, during["baichuan_active_slots"], finish, len(text)))
    again = [s.post(COMP, {"prompt": "x", "max_tokens": 1, "grammar": g})[0]
             for g in ('root ::= "e0"', 'root ::= "e32"', held)]
    _, after = s.metrics()
    compiled = after["baichuan_grammar_compilations_total"] - before["baichuan_grammar_compilations_total"]
    hits = after["baichuan_grammar_cache_hits_total"] - before["baichuan_grammar_cache_hits_total"]
    # 33 new grammars (e0 evicted by e32), then e0 compiled again, e32 found,
    # and the held grammar compiled again (evicted long before).
    t.check("cache: the 32 most recent are kept (compiled %d, hits %d)" % (compiled, hits),
            again == [200] * 3 and compiled == 35 and hits == 1, (again, compiled, hits))


def check_schemas(t, s):
    import jsonschema
    from jsonschema import FormatChecker

    n_checked = n_stopped = 0
    per_schema = [0] * len(SCHEMAS)  # outputs ended by EOS, per schema
    bad = []
    for k, schema in enumerate(SCHEMAS):
        for path in (COMP, CHAT):
            for stream in (False, True):
                base = {"prompt": PROMPT} if path == COMP else {"messages": [{"role": "user", "content": "JSON"}]}
                if (k + stream) % 2:
                    base["response_format"] = {"type": "json_schema",
                                               "json_schema": {"name": "s%d" % k, "schema": schema, "strict": True}}
                else:
                    base["json_schema"] = schema
                # A seed of its own for each request (its choices take seed .. seed + 2).
                seed = 1000 + 40 * k + 10 * (path == CHAT) + 5 * stream
                body = dict(base, max_tokens=120, seed=seed, temperature=1.0, n=3, stream=stream)
                st, outs = outputs(s, path, body)
                if st != 200 or len(outs) != 3:
                    bad.append((k, path, stream, st))
                    continue
                for text, finish in outs:
                    n_checked += 1
                    if finish != "stop":
                        continue
                    n_stopped += 1
                    per_schema[k] += 1
                    try:
                        jsonschema.validate(json.loads(text), schema, format_checker=FormatChecker())
                    except Exception as e:  # noqa: BLE001 - any failure is reported with its text
                        bad.append((k, path, stream, text, str(e)[:200]))
    t.check("JSON Schemas: every output ended by EOS parses and validates (%d of %d outputs ended by EOS)" %
            (n_stopped, n_checked), not bad and n_stopped > 0, bad[:5])
    t.check("JSON Schemas: each schema has outputs ended by EOS (%s)" % per_schema, min(per_schema) > 0, per_schema)

    # json_object: objects.
    bad, n_stopped = [], 0
    for seed in range(0, 30, 3):
        st, _, r = s.post(CHAT, {"messages": [{"role": "user", "content": "JSON"}], "max_tokens": 160, "seed": seed,
                                 "temperature": 1.0, "n": 3, "response_format": {"type": "json_object"}})
        if st != 200 or len(r.get("choices", [])) != 3:
            bad.append((seed, st, r))
            continue
        for c in r["choices"]:
            if c["finish_reason"] != "stop":
                continue
            n_stopped += 1
            try:
                if not isinstance(json.loads(text_of(c)), dict):
                    bad.append(text_of(c))
            except ValueError:
                bad.append(text_of(c))
    t.check("json_object: every output ended by EOS is a JSON object (%d)" % n_stopped, not bad and n_stopped > 0,
            bad[:5])
    # The cache's key is the schema's compact dump with every schema's keywords
    # sorted (the properties keep their order: it is the output's): the first
    # schema sent again with its keywords in reverse order and other spacing
    # is found.
    def reverse_keywords(schema):
        if not isinstance(schema, dict):
            return schema
        out = {}
        for k in reversed(list(schema)):
            v = schema[k]
            out[k] = {n: reverse_keywords(sub) for n, sub in v.items()} if k == "properties" else reverse_keywords(v)
        return out

    _, before = s.metrics()
    reordered = reverse_keywords(SCHEMAS[0])
    assert list(reordered) != list(SCHEMAS[0]) and list(reordered["properties"]) == list(SCHEMAS[0]["properties"])
    body = json.dumps({"prompt": "x", "max_tokens": 2, "json_schema": reordered}, indent=1)
    st, _, r = s.request("POST", COMP, raw=body.encode(), headers={"Content-Type": "application/json"})
    _, after = s.metrics()
    compiled = after["baichuan_grammar_compilations_total"] - before["baichuan_grammar_compilations_total"]
    hits = after["baichuan_grammar_cache_hits_total"] - before["baichuan_grammar_cache_hits_total"]
    t.check("grammar cache: a schema sent again in another key order is found compiled",
            st == 200 and compiled == 0 and hits == 1, (st, compiled, hits))


def check_gbnf(t, s):

    # GBNF: a small language checked with a regular expression.
    gbnf, lang = GBNF, GBNF_LANG
    bad, n_stopped = [], 0
    _, before = s.metrics()
    for seed in range(8):
        for stream in (False, True):
            path = CHAT if seed % 2 else COMP
            base = {"prompt": PROMPT} if path == COMP else {"messages": [{"role": "user", "content": "list"}]}
            body = dict(base, max_tokens=40, seed=seed, temperature=1.0, n=2, grammar=gbnf, stream=stream)
            st, outs = outputs(s, path, body)
            if st != 200 or len(outs) != 2:
                bad.append((path, stream, st, len(outs)))
            for text, finish in outs:
                if finish == "stop":
                    n_stopped += 1
                    if not lang.fullmatch(text):
                        bad.append(text)
    t.check("GBNF: every output ended by EOS is in the grammar's language (%d)" % n_stopped,
            not bad and n_stopped > 0, bad[:5])
    _, after = s.metrics()
    compiled = after["baichuan_grammar_compilations_total"] - before["baichuan_grammar_compilations_total"]
    hits = after["baichuan_grammar_cache_hits_total"] - before["baichuan_grammar_cache_hits_total"]
    t.check("grammar cache: 16 requests with one grammar compile it once", compiled == 1 and hits == 15,
            (compiled, hits))


def run_cli(binary, *args, stdin=None):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, input=stdin)


def check_cli(t, binary, work):
    """run and chat: --json-schema FILE, --grammar-file FILE, --json."""
    schema_path = os.path.join(work, "s.json")
    with open(schema_path, "w") as f:
        json.dump(SCHEMAS[1], f)
    bad_path = os.path.join(work, "bad.json")
    with open(bad_path, "w") as f:
        json.dump({"type": "object", "patternProperties": {"x": {}}}, f)
    gbnf_path = os.path.join(work, "g.gbnf")
    with open(gbnf_path, "w") as f:
        f.write(GBNF)
    for cmd in ("run", "chat"):
        prompt = ("-p", "x") if cmd == "run" else ()  # chat reads stdin
        r = run_cli(binary, cmd, "--help")
        t.check("%s --help lists the three constraint options" % cmd,
                all(o in r.stdout for o in ("--json-schema FILE", "--grammar-file FILE", "--json ")), r.stdout)
        r = run_cli(binary, cmd, "--json", "--grammar-file", gbnf_path, *prompt)
        t.check("%s: two constraints refused, naming both" % cmd,
                r.returncode == 1 and "--json" in r.stderr and "--grammar-file" in r.stderr, r.stderr)
        missing = os.path.join(work, "missing.gbnf")
        r = run_cli(binary, cmd, "--grammar-file", missing, *prompt, stdin="")
        t.check("%s: a missing grammar file is named" % cmd, r.returncode == 1 and missing in r.stderr, r.stderr)
        r = run_cli(binary, cmd, "--json-schema", bad_path, *prompt, stdin="")
        t.check("%s: a schema that does not compile names its file" % cmd,
                r.returncode == 1 and bad_path in r.stderr and "--json-schema" in r.stderr, r.stderr)
    n_eos, bad = 0, []
    import jsonschema
    runs = []
    for seed in range(6):
        runs.append((("--json-schema", schema_path, "-n", "120"), seed,
                     lambda out: jsonschema.validate(json.loads(out), SCHEMAS[1])))
        runs.append((("--json", "-n", "120"), seed, lambda out: isinstance(json.loads(out), dict) or 1 / 0))
        runs.append((("--grammar-file", gbnf_path, "-n", "40"), seed, lambda out: GBNF_LANG.fullmatch(out) or 1 / 0))
    for args, seed, check in runs:
        r = run_cli(binary, "run", *args, "-p", PROMPT, "--seed", str(seed), "--temp", "1")
        if r.returncode != 0:
            bad.append(r.stderr)
        elif r.stderr.rstrip().endswith("end of text"):
            n_eos += 1
            try:
                check(r.stdout[:-1] if r.stdout.endswith("\n") else "no newline after the text")  # run adds one
            except Exception as e:  # noqa: BLE001 - any failure is reported with its text
                bad.append((args[0], r.stdout, str(e)[:200]))
    t.check("CLI run: every output ended by EOS parses / validates / matches (%d of %d)" % (n_eos, len(runs)),
            not bad and n_eos > 0, bad[:5])
    r = run_cli(binary, "chat", "--grammar-file", gbnf_path, "--seed", "1", "-n", "40", stdin="hi\nagain\n")
    t.check("CLI chat --grammar-file: exit 0", r.returncode == 0, r.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work")
    args = ap.parse_args()
    t = bc_testlib.Tally()
    with tempfile.TemporaryDirectory() as work:
        ledger = os.path.join(work, "n.sqlite")
        s = Server(args.bin, "--parallel", "4", "--ledger", ledger)
        try:
            check_n(t, s, ledger)
            check_constraint_errors(t, s)
            check_gbnf(t, s)
            check_cache_eviction(t, s)
            check_schemas(t, s)
            check_property_order(t, s)
        finally:
            t.check("server exits 0 on SIGTERM", s.stop() == 0, "\n".join(s.log[-20:]))
        check_few_slots(t, args.bin)
        check_quota(t, args.bin, work)
        check_cli(t, args.bin, work)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
