#!/usr/bin/python3
"""`baichuan serve --tenants`: keys (401), limits (429 with Retry-After),
per-tenant totals in the ledger against the usage the test tallied from the
responses (`baichuan usage --json`), and bad tenants files.

    test_server_tenants.py --bin build/baichuan --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import bc_testlib
from server_util import Server

COMP = "/v1/completions"
CHAT = "/v1/chat/completions"
KEY_A, KEY_A2, KEY_B = "key-alpha-0123456789", "key-alpha-second-key", "key-beta-9876543210"


def bearer(key):
    return {"Authorization": "Bearer " + key}


def check_bad_files(t, binary, work):
    cases = [
        ("not json", "{", "line 1"),
        ("no tenants", '{"x": 1}', "tenants"),
        ("name missing", '{"tenants": [{"keys": ["abcdefgh12"]}]}', "tenants[0].name"),
        ("keys not array", '{"tenants": [{"name": "a", "keys": "abcdefgh12"}]}', "tenants[0].keys"),
        ("short key", '{"tenants": [{"name": "a", "keys": ["abc"]}]}', "tenants[0].keys[0]"),
        ("bad limit", '{"tenants": [{"name": "a", "keys": ["abcdefgh12"], "requests_per_minute": -1}]}',
         "tenants[0].requests_per_minute"),
        ("shared key", '{"tenants": [{"name": "a", "keys": ["abcdefgh12"]}, {"name": "b", "keys": ["abcdefgh12"]}]}',
         "tenants[1].keys[0]"),
        ("oversized", '{"tenants": [{"name": "a", "keys": ["abcdefgh12"]}]' + " " * (17 << 20) + "}", "MiB"),
    ]
    for name, text, field in cases:
        path = os.path.join(work, "bad.json")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([binary, "serve", "--tenants", path, "--port", "0"], capture_output=True, timeout=60)
        err = r.stderr.decode()
        lines = [x for x in err.splitlines() if x.strip()]
        t.check("bad tenants file (%s): exit 1, one line naming file and field" % name,
                r.returncode == 1 and len(lines) == 1 and path in err and field in err and "abcdefgh12" not in err,
                (r.returncode, err))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    t = bc_testlib.Tally()
    tenants = os.path.join(args.work, "tenants.json")
    with open(tenants, "w") as f:
        json.dump({"tenants": [
            {"name": "alpha", "keys": [KEY_A, KEY_A2], "requests_per_minute": 4},
            {"name": "beta", "keys": [KEY_B], "tokens_per_day": 40},
        ]}, f)
    ledger = os.path.join(args.work, "ledger.sqlite")
    tally = {"alpha": [0, 0, 0], "beta": [0, 0, 0]}  # requests, prompt, completion (from the responses)
    refused = {"alpha": 0, "beta": 0}

    s = Server(args.bin, "--tenants", tenants, "--ledger", ledger, "--parallel", "2")
    try:
        st, _, body = s.post(COMP, {"prompt": "x", "max_tokens": 2})
        t.check("no key: 401 in the OpenAI shape", st == 401 and body["error"]["code"] == "invalid_api_key", body)
        st, _, body = s.post(COMP, {"prompt": "x"}, headers=bearer("key-alpha-0123456788"))
        t.check("wrong key: 401", st == 401 and body["error"]["type"] == "invalid_request_error", body)
        st, _, body = s.request("GET", "/v1/models", headers={"Authorization": "Basic " + KEY_A})
        t.check("not a bearer key: 401", st == 401, body)
        for path in ("/v1/models", "/metrics"):
            t.check("%s needs a key" % path, s.request("GET", path)[0] == 401)
            t.check("%s with a key" % path, s.request("GET", path, headers=bearer(KEY_B))[0] == 200)
        t.check("/health needs no key", s.request("GET", "/health")[0] == 200)
        st, _, body = s.post("/tokenize", {"content": "x"})
        t.check("/tokenize needs a key", st == 401, body)

        # alpha: 4 requests a minute (either of its keys), then 429 with Retry-After.
        for k in range(6):
            key = KEY_A if k % 2 == 0 else KEY_A2
            st, h, r = s.post(CHAT, {"messages": [{"role": "user", "content": "hi %d" % k}], "max_tokens": 3,
                                     "seed": k}, headers=bearer(key))
            if st == 200:
                u = r["usage"]
                tally["alpha"] = [tally["alpha"][0] + 1, tally["alpha"][1] + u["prompt_tokens"],
                                  tally["alpha"][2] + u["completion_tokens"]]
            else:
                refused["alpha"] += 1
                t.check("alpha request %d: 429 with Retry-After" % k, st == 429 and int(h.get("retry-after", 0)) > 0
                        and r["error"]["code"] == "rate_limit_exceeded" and k >= 4, (st, h, r))
        t.check("alpha: exactly 4 admitted", tally["alpha"][0] == 4 and refused["alpha"] == 2, (tally, refused))

        # beta: 40 tokens a day; each request uses prompt + 8 generated tokens.
        for k in range(6):
            st, h, r = s.post(COMP, {"prompt": "床前明月光", "max_tokens": 8, "seed": k, "temperature": 1.0,
                                     "repetition_penalty": 1.0}, headers=bearer(KEY_B))
            if st == 200:
                u = r["usage"]
                tally["beta"] = [tally["beta"][0] + 1, tally["beta"][1] + u["prompt_tokens"],
                                 tally["beta"][2] + u["completion_tokens"]]
            else:
                refused["beta"] += 1
                t.check("beta over its daily tokens: 429 with Retry-After", st == 429 and
                        int(h.get("retry-after", 0)) > 0 and "tokens_per_day" in r["error"]["message"], (st, h, r))
        used = tally["beta"][1] + tally["beta"][2]
        t.check("beta: admitted until the quota was used, then refused",
                refused["beta"] > 0 and used >= 40 and used - (tally["beta"][1] + tally["beta"][2]) / tally["beta"][0]
                < 40, (tally["beta"], refused))

        _, values = s.metrics(headers=bearer(KEY_A))
        t.check("/metrics: requests by tenant and status",
                values.get('baichuan_requests_total{tenant="alpha",endpoint="/v1/chat/completions",status="200"}')
                == 4 and values.get(
                    'baichuan_requests_total{tenant="alpha",endpoint="/v1/chat/completions",status="429"}') == 2,
                values)
        t.check("/metrics: tokens by tenant",
                values.get('baichuan_completion_tokens_total{tenant="beta"}') == tally["beta"][2], values)
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    t.check("keys never logged", not any(k in "\n".join(s.log) for k in (KEY_A, KEY_A2, KEY_B)))

    r = subprocess.run([args.bin, "usage", "--ledger", ledger, "--json"], capture_output=True, timeout=60)
    t.check("usage --json runs", r.returncode == 0, r.stderr)
    report = {x["tenant"]: x for x in json.loads(r.stdout)["tenants"]} if r.returncode == 0 else {}
    for name in ("alpha", "beta"):
        x = report.get(name, {})
        want = tally[name]
        t.check("usage: %s totals == the responses' usage" % name,
                [x.get("succeeded"), x.get("prompt_tokens"), x.get("completion_tokens")] == want and
                x.get("requests") == want[0] + refused[name] and
                x.get("total_tokens") == want[1] + want[2], (x, want, refused[name]))
    r = subprocess.run([args.bin, "usage", "--ledger", ledger, "--since", "2999-01-01"], capture_output=True,
                       timeout=60)
    t.check("usage --since in the future: no tenants", r.returncode == 0 and "alpha" not in r.stdout.decode(),
            r.stdout)
    r = subprocess.run([args.bin, "usage", "--ledger", ledger], capture_output=True, timeout=60)
    t.check("usage table", r.returncode == 0 and "alpha" in r.stdout.decode() and "beta" in r.stdout.decode(),
            r.stdout)
    r = subprocess.run([args.bin, "usage", "--ledger", os.path.join(args.work, "missing.sqlite")],
                       capture_output=True, timeout=60)
    t.check("usage on a missing ledger: exit 1 naming it", r.returncode == 1 and b"missing.sqlite" in r.stderr,
            r.stderr)

    # Restart: the daily quota continues from the ledger.
    s = Server(args.bin, "--tenants", tenants, "--ledger", ledger)
    try:
        st, _, _ = s.post(COMP, {"prompt": "x", "max_tokens": 2}, headers=bearer(KEY_B))
        t.check("beta's used quota survives a restart (429)", st == 429, st)
    finally:
        s.stop()
    check_bad_files(t, args.bin, args.work)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
