#!/usr/bin/python3
"""`baichuan serve --lora NAME=PATH`: LoRA adapters served per tenant.

Two tenants, three adapters at start (PEFT files written here with numpy, in
the layout of PEFT's save_pretrained), the prefix cache on:
- each tenant's greedy replies under its adapters equal `baichuan run --lora`
  greedy text (the CLI: no server, no prefix cache), and differ from the
  base's; the base's equal `baichuan run`;
- an adapter the tenant may not use is 404 exactly as one that does not exist;
  /v1/models lists the base and the tenant's adapters only;
- the same prompt under two adapters in turn reuses no block of the other's
  (usage cached_tokens and the prefix-cache counters of /metrics), and under
  the same adapter again it does;
- an admin hot-loads an adapter that then serves (400 for a bad file, 409 for
  a taken name, 403 for a tenant that is not admin), unloads it during a
  running stream, which finishes, while new requests for it are 404;
- /metrics shows each adapter's bytes (r x (in + out) per matrix, f16 or f32,
  and a few KiB of tables);
- the ledger's rows carry the adapter (`baichuan usage --by-adapter`);
- the PostgreSQL tenant store and ledger of the version before adapters get
  their columns, and serve and record adapters alike.

    test_server_lora.py --bin build/baichuan --work DIR
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time

import numpy as np

import bc_testlib
from server_util import Server, parse_sse, stream_text, wait_for, DEFAULT_MODEL

COMP = "/v1/completions"
KEY_A, KEY_B = "key-alpha-0123456789", "key-beta-9876543210"
PROMPT = ("Once upon a time there was a little girl who lived in a village near the forest. "
          "Whenever she went out, the little girl wore a red riding cloak, so everyone in the village called her")
N_TOKENS = 24
MODULES = {"W_pack": "self_attn", "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def bearer(key):
    return {"Authorization": "Bearer " + key}


def write_safetensors(path, tensors):
    """The safetensors format: an 8-byte little-endian header length, a JSON
    header of {name: {dtype, shape, data_offsets}}, then the raw data."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_adapter(d, cfg, modules, r, alpha, seed):
    """A PEFT adapter directory for the model of cfg; returns its expected
    factor elements (r x (in + out) summed over the matrices)."""
    os.makedirs(d, exist_ok=True)
    h, ff = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"W_pack": (3 * h, h), "o_proj": (h, h), "gate_proj": (ff, h), "up_proj": (ff, h), "down_proj": (h, ff)}
    rng = np.random.default_rng(seed)
    tensors, elements = {}, 0
    for layer in range(cfg["num_hidden_layers"]):
        for m in modules:
            out_f, in_f = shapes[m]
            key = "base_model.model.model.layers.%d.%s.%s" % (layer, MODULES[m], m)
            # PEFT starts B at zero; a trained adapter's is not, and a random one
            # of this size moves greedy text away from the base's.
            tensors[key + ".lora_A.weight"] = rng.normal(0, 1 / np.sqrt(in_f), (r, in_f))
            tensors[key + ".lora_B.weight"] = rng.normal(0, 0.15, (out_f, r))
            elements += r * (in_f + out_f)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
                   "target_modules": list(modules), "lora_dropout": 0.1, "use_rslora": False,
                   "fan_in_fan_out": False, "bias": "none", "base_model_name_or_path": "models/default"}, f)
    return elements


def cli_greedy(binary, adapter_dir, prompt=PROMPT, n=N_TOKENS):
    cmd = [binary, "run", "-m", DEFAULT_MODEL, "-t", "1", "-p", prompt, "-n", str(n), "--temp", "0",
           "--repeat-penalty", "1"]
    if adapter_dir:
        cmd += ["--lora", adapter_dir]
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    if r.returncode != 0:
        return None, r.stderr.decode()
    out = r.stdout.decode()
    return out[:-1] if out.endswith("\n") else out, ""  # run ends its output with a newline of its own


def complete(s, key, model, prompt=PROMPT, n=N_TOKENS):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "repetition_penalty": 1.0}
    if model is not None:
        body["model"] = model
    return s.post(COMP, body, headers=bearer(key))


def text_of(body):
    return body["choices"][0]["text"] if isinstance(body, dict) and "choices" in body else None


def check_postgresql(t, binary, dirs, want):
    """The PostgreSQL tenant store and ledger made before adapters: opening
    them adds the columns; `tenants set` writes a tenant's list, which a
    running server reads at the next request; ledger rows carry the adapter."""
    from test_pg_store import Cluster  # a throw-away cluster, as test_pg_store starts it
    pg = Cluster()
    s = None
    try:
        try:
            pg.init()
        except Exception as e:  # noqa: BLE001 - any failure to start PostgreSQL fails the test
            t.check("a throw-away PostgreSQL cluster starts (needs postgresql-15)", False, e)
            return
        # The tables as the previous version made them (no adapter columns).
        pg.sql("CREATE TABLE tenants (name TEXT PRIMARY KEY CHECK (name <> ''), requests_per_minute BIGINT NOT NULL "
               "DEFAULT 0, tokens_per_day BIGINT NOT NULL DEFAULT 0, admin BOOLEAN NOT NULL DEFAULT false, "
               "created TIMESTAMPTZ NOT NULL DEFAULT now()); "
               "CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, time TIMESTAMPTZ NOT NULL, request_id TEXT, "
               "tenant TEXT, endpoint TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, "
               "completion_tokens BIGINT NOT NULL, finish_reason TEXT, status INTEGER NOT NULL, "
               "latency_ms DOUBLE PRECISION NOT NULL); "
               "INSERT INTO tenants (name) VALUES ('gamma'); "
               "INSERT INTO requests (time, tenant, endpoint, model, prompt_tokens, completion_tokens, status, "
               "latency_ms) VALUES (now(), 'gamma', '/v1/completions', 'default', 1, 1, 200, 1)")
        r = subprocess.run([binary, "usage", "--ledger", pg.url, "--by-adapter", "--json"], capture_output=True,
                           timeout=60)
        rows = json.loads(r.stdout)["tenants"] if r.returncode == 0 else []
        t.check("PostgreSQL: usage --by-adapter on a ledger made before adapters: its row as the base's",
                [(x["tenant"], x["adapter"], x["requests"]) for x in rows] == [("gamma", "", 1)], (rows, r.stderr))
        r = subprocess.run([binary, "tenants", "--store", pg.url, "key-create", "gamma"], capture_output=True,
                           timeout=60)
        key = r.stdout.decode().strip()
        s = Server(binary, "--tenants", pg.url, "--ledger", pg.url, "--lora", "a=" + dirs["a"], "--lora",
                   "c=" + dirs["c"])
        st, _, body = complete(s, key, "a")
        t.check("PostgreSQL: a tenant of the old table (no list): adapter a is 404", st == 404, body)
        r = subprocess.run([binary, "tenants", "--store", pg.url, "set", "gamma", "--adapters", "a"],
                           capture_output=True, timeout=60)
        t.check("PostgreSQL: tenants set gamma --adapters a", r.returncode == 0, r.stderr)
        st, _, body = complete(s, key, "a")
        t.check("PostgreSQL: the running server reads the new list: a serves (== run --lora a)",
                st == 200 and text_of(body) == want["a"], (st, body))
        st, _, body = complete(s, key, "c")
        t.check("PostgreSQL: c, not in the list: 404", st == 404, body)
        st, _, models = s.request("GET", "/v1/models", headers=bearer(key))
        t.check("PostgreSQL: /v1/models lists the base and a",
                st == 200 and [m["id"] for m in models["data"]][1:] == ["a"], models)
        s.stop()
        s = None
        got = pg.sql("SELECT COALESCE(adapter, '-'), status FROM requests WHERE tenant = 'gamma' ORDER BY id")
        t.check("PostgreSQL: ledger rows carry the adapter (old row NULL, a's 'a')",
                [tuple(x) for x in got] == [("-", "200"), ("-", "404"), ("a", "200"), ("-", "404")], got)
        got = pg.sql("SELECT adapters FROM tenants WHERE name = 'gamma'")
        t.check("PostgreSQL: the tenants table has gamma's list", got == [["a"]], got)
    finally:
        if s is not None:
            s.stop()
        pg.destroy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    t = bc_testlib.Tally()
    with open(os.path.join(DEFAULT_MODEL, "config.json")) as f:
        cfg = json.load(f)

    # a: the official recipe (r 1 on W_pack); b: r 4 on all five modules;
    # c: r 2 on o_proj and down_proj; d: hot-loaded later (r 8 on the MLP).
    specs = {"a": (["W_pack"], 1, 32), "b": (list(MODULES), 4, 8), "c": (["o_proj", "down_proj"], 2, 4),
             "d": (["gate_proj", "up_proj", "down_proj"], 8, 16)}
    dirs, elements = {}, {}
    for i, (name, (mods, r, alpha)) in enumerate(specs.items()):
        dirs[name] = os.path.join(args.work, "adapter_" + name)
        elements[name] = make_adapter(dirs[name], cfg, mods, r, alpha, 100 + i)

    # The CLI's greedy text for each adapter and the base: the reference.
    want = {}
    for name in [None, "a", "b", "c", "d"]:
        text, err = cli_greedy(args.bin, dirs.get(name))
        t.check("run --lora %s: greedy text" % (name or "(base)"), text is not None, err)
        want[name] = text
    t.check("each adapter's CLI text differs from the base's",
            all(want[n] is not None and want[n] != want[None] for n in "abcd"), want)

    tenants = os.path.join(args.work, "tenants.json")
    with open(tenants, "w") as f:
        json.dump({"tenants": [
            {"name": "alpha", "keys": [KEY_A], "adapters": ["a", "b"]},
            {"name": "beta", "keys": [KEY_B], "adapters": ["c", "d"], "admin": True},
        ]}, f)
    ledger = os.path.join(args.work, "ledger.sqlite")
    s = Server(args.bin, "--tenants", tenants, "--ledger", ledger, "--parallel", "4",
               "--lora", "a=" + dirs["a"], "--lora", "b=" + dirs["b"], "--lora", "c=" + dirs["c"])
    base_name = None
    try:
        t.check("start-up log names each adapter with its bytes",
                all(any(re.search(r"adapter %s: .*MiB" % n, line) for line in s.log) for n in "abc"), s.log)
        st, _, models = s.request("GET", "/v1/models", headers=bearer(KEY_A))
        ids = [m["id"] for m in models.get("data", [])] if st == 200 else []
        base_name = ids[0] if ids else None
        t.check("/v1/models for alpha: the base, then a and b (with parent and root)",
                st == 200 and ids[1:] == ["a", "b"] and
                all(m["parent"] == base_name and m["root"] for m in models["data"][1:]), models)
        st, _, models = s.request("GET", "/v1/models", headers=bearer(KEY_B))
        t.check("/v1/models for beta: the base and c", st == 200 and [m["id"] for m in models["data"]][1:] == ["c"],
                models)

        # Replies against the CLI, the prefix cache on, the prompt's blocks
        # shared by every request: a, a again, b, base, then beta's c.
        _, m0 = s.metrics(headers=bearer(KEY_B))
        replies = {}
        for key, model, label in [(KEY_A, "a", "a"), (KEY_A, "a", "a2"), (KEY_A, "b", "b"), (KEY_A, None, "base"),
                                  (KEY_A, base_name, "base2"), (KEY_B, "c", "c")]:
            _, m1 = s.metrics(headers=bearer(KEY_B))
            st, _, body = complete(s, key, model)
            _, m2 = s.metrics(headers=bearer(KEY_B))
            hit = m2["baichuan_prefix_cache_hit_tokens_total"] - m1["baichuan_prefix_cache_hit_tokens_total"]
            cached = body["usage"]["prompt_tokens_details"]["cached_tokens"] if st == 200 else None
            replies[label] = (st, text_of(body), body.get("model") if isinstance(body, dict) else None, hit, cached)
        for label, name in [("a", "a"), ("a2", "a"), ("b", "b"), ("base", None), ("base2", None), ("c", "c")]:
            st, text, model, hit, cached = replies[label]
            t.check("%s: greedy reply == run --lora %s" % (label, name or "(none)"),
                    st == 200 and text == want[name] and model == (name or base_name),
                    (st, text, want[name], model))
        # The cache: a's second request reuses a's blocks; b, the base and c reuse none of them.
        t.check("a again: its own blocks reused (cached_tokens == hit tokens > 0)",
                replies["a2"][4] > 0 and replies["a2"][3] == replies["a2"][4], replies["a2"])
        for label in ["b", "base", "c"]:
            t.check("%s after a: no block of another adapter reused (cached_tokens 0, no hit)" % label,
                    replies[label][4] == 0 and replies[label][3] == 0, replies[label])
        t.check("the base named by its own name reuses the base's blocks", replies["base2"][4] > 0, replies["base2"])

        # One batch mixing adapters: a, b, the base and c at once, each a
        # fresh prompt (no cache), each reply what the CLI gives alone.
        prompts = ["%d. %s" % (i, PROMPT) for i in range(4)]
        mixed = [(KEY_A, "a", dirs["a"]), (KEY_A, "b", dirs["b"]), (KEY_A, None, None), (KEY_B, "c", dirs["c"])]
        got = [None] * 4

        def one(i):
            got[i] = complete(s, mixed[i][0], mixed[i][1], prompt=prompts[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        ok, detail = True, []
        for i, (_, name, d) in enumerate(mixed):
            ref, err = cli_greedy(args.bin, d, prompt=prompts[i])
            st, _, body = got[i] or (None, None, None)
            ok &= st == 200 and text_of(body) == ref
            detail.append((name, st, text_of(body), ref, err))
        t.check("4 requests at once under a, b, the base and c: each == its run --lora", ok, detail)

        # Chat, streamed: the chunks name the adapter; the reply is b's, not the base's.
        chat = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 16, "temperature": 0,
                "repetition_penalty": 1.0, "stream": True}
        st_b, ev_b, _ = s.stream("/v1/chat/completions", dict(chat, model="b"), headers=bearer(KEY_A))
        st_0, ev_0, _ = s.stream("/v1/chat/completions", chat, headers=bearer(KEY_A))
        t.check("chat stream under b: every chunk's model is 'b', the reply differs from the base's",
                st_b == st_0 == 200 and all(e["model"] == "b" for e in ev_b) and
                all(e["model"] == base_name for e in ev_0) and stream_text(ev_b)[0] != stream_text(ev_0)[0],
                (ev_b[:2], ev_0[:2]))

        # Another tenant's adapter is 404 exactly as an absent one.
        st1, _, b1 = complete(s, KEY_A, "c")
        st2, _, b2 = complete(s, KEY_A, "zz")
        same = (st1 == st2 == 404 and b1["error"]["code"] == b2["error"]["code"] == "model_not_found" and
                b1["error"]["message"].replace("'c'", "X") == b2["error"]["message"].replace("'zz'", "X"))
        t.check("alpha asking for beta's adapter: 404 model_not_found, as for an absent one", same, (b1, b2))
        st, _, b1 = complete(s, KEY_B, "a")
        t.check("beta asking for alpha's adapter: 404", st == 404, b1)

        # /metrics: each adapter's bytes are its factors' (f16 or f32).
        text, m = s.metrics(headers=bearer(KEY_B))
        ok = True
        for n in "abc":
            got = [v for k, v in m.items() if k.startswith('baichuan_lora_adapter_bytes{adapter="%s"' % n)]
            # the factors in f16 or f32, and a few KiB of tables at most (a copy
            # of a base matrix would be far more: W_pack alone is 768 KiB in f32)
            ok &= len(got) == 1 and any(0 <= got[0] - k * elements[n] <= 8192 for k in (2, 4))
        t.check("/metrics: adapter bytes = r x (in + out) per matrix x 2 or 4 (+ <= 8 KiB)", ok and
                m.get("baichuan_lora_adapters") == 3, [l for l in text.splitlines() if "lora" in l])

        # Hot loading: admin only, a bad file is 400 with the loader's message, a taken name 409.
        load = "/v1/load_lora_adapter"
        st, _, body = s.post(load, {"lora_name": "d", "lora_path": dirs["d"]}, headers=bearer(KEY_A))
        t.check("load by a tenant that is not admin: 403", st == 403, body)
        bad = os.path.join(args.work, "bad_adapter")
        shutil.copytree(dirs["a"], bad)
        with open(os.path.join(bad, "adapter_config.json")) as f:
            bad_cfg = json.load(f)
        bad_cfg["r"] = 3  # the tensors' rank is 1
        with open(os.path.join(bad, "adapter_config.json"), "w") as f:
            json.dump(bad_cfg, f)
        st, _, body = s.post(load, {"lora_name": "bad", "lora_path": bad}, headers=bearer(KEY_B))
        t.check("load of a mismatched adapter: 400 with the loader's one-line message",
                st == 400 and "\n" not in body["error"]["message"] and len(body["error"]["message"]) > 10, body)
        st, _, body = s.post(load, {"lora_name": "e", "lora_path": os.path.join(args.work, "nowhere")},
                             headers=bearer(KEY_B))
        t.check("load of a missing directory: 400", st == 400, body)
        st, _, body = s.post(load, {"lora_name": "c", "lora_path": dirs["d"]}, headers=bearer(KEY_B))
        t.check("load under a taken name: 409", st == 409, body)
        for bad_name in ["x/y", base_name, ""]:
            st, _, body = s.post(load, {"lora_name": bad_name, "lora_path": dirs["d"]}, headers=bearer(KEY_B))
            t.check("load under the name %r: 400" % bad_name, st == 400, body)
        st, _, body = s.post(load, {"lora_name": "e"}, headers=bearer(KEY_B))
        t.check("load without lora_path: 400 naming it", st == 400 and body["error"]["param"] == "lora_path", body)
        st, _, body = complete(s, KEY_B, "d")
        t.check("d before it is loaded: 404", st == 404, body)
        st, _, body = s.post(load, {"lora_name": "d", "lora_path": dirs["d"]}, headers=bearer(KEY_B))
        t.check("hot load of d: 200", st == 200, body)
        st, _, body = complete(s, KEY_B, "d")
        t.check("d, hot-loaded: greedy reply == run --lora d", st == 200 and text_of(body) == want["d"],
                (st, text_of(body), want["d"]))

        # Unload during a running stream: it finishes; new requests are 404.
        long_n = 400
        result = {}

        def streamer():
            result["r"] = s.stream(COMP, {"prompt": PROMPT, "max_tokens": long_n, "temperature": 0,
                                          "repetition_penalty": 1.0, "model": "d", "stream": True,
                                          "stream_options": {"include_usage": True}}, headers=bearer(KEY_B))

        th = threading.Thread(target=streamer)
        th.start()
        running = wait_for(lambda: s.metrics(headers=bearer(KEY_B))[1].get(
            'baichuan_lora_adapter_requests{adapter="d"}', 0) >= 1, timeout=30, step=0.02)
        st, _, body = s.post("/v1/unload_lora_adapter", {"lora_name": "d"}, headers=bearer(KEY_B))
        t.check("unload d while a stream runs under it: 200, one request still running",
                running and st == 200 and body.get("running_requests") == 1, (running, st, body))
        st, _, body = complete(s, KEY_B, "d")
        t.check("d after unload: 404 at once", st == 404, body)
        t0 = time.time()
        th.join(120)
        print("(the stream ran %.2f s after the unload)" % (time.time() - t0), flush=True)
        st, events, done = result.get("r", (None, [], False))
        text, finish = stream_text(events) if st == 200 else (None, None)
        usage = [e["usage"] for e in events if e.get("usage")] if st == 200 else []
        ref, err = cli_greedy(args.bin, dirs["d"], n=long_n)
        t.check("the stream running at unload finished: all its tokens, == run --lora d",
                st == 200 and done and finish in ("length", "stop") and text == ref and
                (finish == "stop" or usage[-1]["completion_tokens"] == long_n), (st, finish, text, ref, err))
        st, _, body = s.post("/v1/unload_lora_adapter", {"lora_name": "d"}, headers=bearer(KEY_B))
        t.check("unload of an adapter not loaded: 404", st == 404, body)
        # d is freed, its blocks still in the prefix cache under its id: the
        # same prompt under c and under d loaded again (a new adapter, by the
        # same name) reuses none of them, and computes what the CLI does.
        st, _, body = complete(s, KEY_B, "c")
        t.check("c after d's unload: reply == run --lora c, its own blocks reused",
                st == 200 and text_of(body) == want["c"] and body["usage"]["prompt_tokens_details"]["cached_tokens"] > 0,
                body)
        st, _, body = s.post(load, {"lora_name": "d", "lora_path": dirs["d"]}, headers=bearer(KEY_B))
        st2, _, body2 = complete(s, KEY_B, "d")
        t.check("d loaded again: serves == run --lora d, reusing no block of the unloaded d",
                st == 200 and st2 == 200 and text_of(body2) == want["d"] and
                body2["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, (body, body2))
        _, m = s.metrics(headers=bearer(KEY_B))
        t.check("/metrics after unload and reload: four adapters", m.get("baichuan_lora_adapters") == 4, m)

        # /admin/usage: each tenant's requests per adapter ("" the base, 404s
        # included), and ?adapter= narrowing the report to one.
        st, _, doc = s.request("GET", "/admin/usage", headers=bearer(KEY_B))
        per = {(x["tenant"], a["adapter"]): a["totals"]["requests"] for x in doc.get("tenants", [])
               for a in x["adapters"]} if st == 200 else {}
        t.check("/admin/usage: per tenant adapter totals",
                per == {("alpha", "a"): 3, ("alpha", "b"): 3, ("alpha", ""): 6, ("beta", "c"): 3, ("beta", "d"): 3,
                        ("beta", ""): 3} and doc["totals"]["requests"] == 21, (st, per))
        st, _, doc = s.request("GET", "/admin/usage?adapter=c", headers=bearer(KEY_B))
        t.check("/admin/usage?adapter=c: beta's 3 requests only",
                st == 200 and [(x["tenant"], x["totals"]["requests"]) for x in doc["tenants"]] == [("beta", 3)] and
                doc["totals"]["requests"] == 3, (st, doc))
    finally:
        code = s.stop()
    t.check("server exits 0 on SIGTERM", code == 0, "\n".join(s.log[-20:]))

    # The ledger: one row per request with its adapter, read by baichuan usage.
    r = subprocess.run([args.bin, "usage", "--ledger", ledger, "--by-adapter", "--json"], capture_output=True,
                       timeout=60)
    rows = json.loads(r.stdout)["tenants"] if r.returncode == 0 else []
    got = {(x["tenant"], x["adapter"]): x["requests"] for x in rows}
    t.check("usage --by-adapter: alpha a 3, b 3 (one a chat), the base 4 + 2 404s; beta c 3, d 3, the base 3 404s",
            got == {("alpha", "a"): 3, ("alpha", "b"): 3, ("alpha", ""): 6, ("beta", "c"): 3, ("beta", "d"): 3,
                    ("beta", ""): 3}, (got, r.stderr))
    r = subprocess.run([args.bin, "usage", "--ledger", ledger, "--adapter", "d", "--json"], capture_output=True,
                       timeout=60)
    rows = json.loads(r.stdout)["tenants"] if r.returncode == 0 else []
    t.check("usage --adapter d: beta's 3 requests only",
            [(x["tenant"], x["requests"]) for x in rows] == [("beta", 3)], (rows, r.stderr))

    check_postgresql(t, args.bin, dirs, want)

    # baichuan tenants set --adapters, and bad lists.
    r = subprocess.run([args.bin, "tenants", "--store", tenants, "set", "alpha", "--adapters", "a,c"],
                       capture_output=True, timeout=60)
    with open(tenants) as f:
        doc = json.load(f)
    t.check("tenants set alpha --adapters a,c: written to the file",
            r.returncode == 0 and doc["tenants"][0]["adapters"] == ["a", "c"], (r.stderr, doc))
    r = subprocess.run([args.bin, "tenants", "--store", tenants, "set", "alpha", "--adapters", "a,,b"],
                       capture_output=True, timeout=60)
    t.check("tenants set with a bad list: exit 1, one line", r.returncode == 1 and
            len(r.stderr.decode().strip().splitlines()) == 1, r.stderr)
    for label, lora_args, needle in [
            ("a missing adapter", ["--lora", "x=" + os.path.join(args.work, "nowhere")], "nowhere"),
            ("the base model's name", ["--lora", "default=" + dirs["a"]], "default"),
            ("a name twice", ["--lora", "a=" + dirs["a"], "--lora", "a=" + dirs["b"]], "already"),
            ("a bad name", ["--lora", "a b=" + dirs["a"]], "a b"),
            ("no PATH", ["--lora", "a="], "NAME=PATH")]:
        r = subprocess.run([args.bin, "serve", "-m", DEFAULT_MODEL, "--port", "0", *lora_args], capture_output=True,
                           timeout=60)
        lines = [x for x in r.stderr.decode().splitlines() if x.strip()]
        t.check("serve --lora with %s: exit 1, one line" % label,
                r.returncode == 1 and len(lines) == 1 and needle in lines[0], r.stderr)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
