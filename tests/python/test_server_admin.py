#!/usr/bin/python3
"""The operator's usage report: `baichuan serve --tenants FILE --ledger DB`
with an admin tenant and two others, a known number of requests each, then

  - GET /admin/usage: per-tenant totals == the ledger's rows counted here
    (sqlite3 on the ledger file) == the usage the client tallied from the
    responses; per-bucket (day and hour) numbers == the ledger's;
  - 401 without a key or with a wrong one (counted in /metrics, not in the
    ledger), 403 with a non-admin key, 400 naming the parameter for bad
    from / to / bucket / ranges;
  - 404 for /admin and /admin/usage without a tenant store, and for
    /admin/usage without a ledger;
  - the page /admin in headless Chromium (tests/node/admin_page.mjs): the
    drawn bars' data-value and the table == the JSON.

    test_server_admin.py --bin build/baichuan --work DIR
"""
import argparse
import datetime
import json
import os
import shutil
import sqlite3
import sys
import time
import urllib.parse

import bc_testlib
from server_util import Server, wait_for
from test_server_node import install, run_node

KEYS = {"root": "key-root-admin-0001", "alice": "key-alice-000000001", "bob": "key-bob-00000000001"}
REQUESTS = {"root": 1, "alice": 3, "bob": 2}


def bearer(key):
    return {"Authorization": "Bearer " + key}


def ledger_counts(db, bucket_len=None):
    """{tenant: [requests, prompt, completion]} or, with bucket_len (10: day,
    13: hour), {(tenant, bucket): ...} from the ledger file itself."""
    con = sqlite3.connect(db)
    try:
        if bucket_len is None:
            rows = con.execute("SELECT COALESCE(tenant, ''), COUNT(*), SUM(prompt_tokens), SUM(completion_tokens)"
                               " FROM requests GROUP BY 1").fetchall()
            return {r[0]: list(r[1:]) for r in rows}
        rows = con.execute("SELECT COALESCE(tenant, ''), substr(time, 1, ?), COUNT(*), SUM(prompt_tokens),"
                           " SUM(completion_tokens) FROM requests GROUP BY 1, 2", (bucket_len,)).fetchall()
        return {(r[0], r[1] + (":00" if bucket_len == 13 else "")): list(r[2:]) for r in rows}
    finally:
        con.close()


def report_counts(doc):
    return {t["tenant"]: [t["totals"]["requests"], t["totals"]["prompt_tokens"], t["totals"]["completion_tokens"]]
            for t in doc["tenants"]}


def report_buckets(doc):
    return {(t["tenant"], b["bucket"]): [b["requests"], b["prompt_tokens"], b["completion_tokens"]]
            for t in doc["tenants"] for b in t["buckets"]}


def check_errors(t, s, today):
    st, _, body = s.request("GET", "/admin/usage")
    t.check("no key: 401", st == 401 and body["error"]["code"] == "invalid_api_key", (st, body))
    st, _, body = s.request("GET", "/admin/usage", headers=bearer("key-nobody-00000000"))
    t.check("a wrong key: 401", st == 401, (st, body))
    for name in ("alice", "bob"):
        st, _, body = s.request("GET", "/admin/usage", headers=bearer(KEYS[name]))
        t.check("%s's key (not admin): 403" % name,
                st == 403 and body["error"]["code"] == "not_admin" and name in body["error"]["message"], (st, body))
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    cases = [("from=2026-13-01", "from"), ("from=2026-02-30", "from"), ("from=yesterday", "from"),
             ("to=2026-1-01", "to"), ("to=2026-01-01x", "to"), ("bucket=week", "bucket"), ("bucket=", "bucket"),
             ("from=%s&to=%s" % (tomorrow, today.isoformat()), "from"),
             ("from=2025-01-01&to=2026-06-01", "from"), ("from=2026-01-01&to=2026-03-01&bucket=hour", "from")]
    for query, param in cases:
        st, _, body = s.request("GET", "/admin/usage?" + query, headers=bearer(KEYS["root"]))
        t.check("400 for %s, naming '%s'" % (query, param),
                st == 400 and body["error"]["param"] == param, (st, body))
    st, _, body = s.request("POST", "/admin/usage", headers=bearer(KEYS["root"]))
    t.check("POST /admin/usage: 405", st == 405, (st, body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        if os.path.exists(os.path.join(args.work, name)):
            os.remove(os.path.join(args.work, name))
    t = bc_testlib.Tally()
    tenants = os.path.join(args.work, "tenants.json")
    with open(tenants, "w") as f:
        json.dump({"tenants": [{"name": "root", "keys": [KEYS["root"]], "admin": True},
                               {"name": "alice", "keys": [KEYS["alice"]]},
                               {"name": "bob", "keys": [KEYS["bob"]], "admin": False}]}, f)
    db = os.path.join(args.work, "ledger.db")

    # Without a tenant store there is no admin: both admin paths are 404.
    s = Server(args.bin, "--ledger", db)
    try:
        for path in ("/admin", "/admin/usage"):
            st, _, body = s.request("GET", path)
            t.check("no tenant store: %s is 404" % path, st == 404, (st, body))
    finally:
        t.check("server without tenants exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    # A tenant store but no ledger: the page is there, the report is 404.
    s = Server(args.bin, "--tenants", tenants)
    try:
        st, h, _ = s.request("GET", "/admin")
        t.check("no ledger: /admin is the page", st == 200 and h["content-type"].startswith("text/html"), (st, h))
        st, _, body = s.request("GET", "/admin/usage", headers=bearer(KEYS["root"]))
        t.check("no ledger: /admin/usage is 404 no_ledger", st == 404 and body["error"]["code"] == "no_ledger",
                (st, body))
    finally:
        t.check("server without ledger exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    os.remove(db)  # the first server made it: start from an empty ledger

    s = Server(args.bin, "--tenants", tenants, "--ledger", db, "--parallel", "2")
    try:
        # The client's tally: requests and the usage each response reports.
        tally = {name: [0, 0, 0] for name in KEYS}
        for name, n in REQUESTS.items():
            for i in range(n):
                if i % 2 == 0:
                    path, body = "/v1/completions", {"prompt": "床前明月光" * (i + 1), "max_tokens": 3 + i, "seed": i}
                else:
                    path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "你好"}],
                                                          "max_tokens": 4, "seed": i}
                st, _, reply = s.post(path, body, headers=bearer(KEYS[name]))
                t.check("%s request %d: 200" % (name, i), st == 200, (st, reply))
                tally[name][0] += 1
                tally[name][1] += reply["usage"]["prompt_tokens"]
                tally[name][2] += reply["usage"]["completion_tokens"]
        # A request refused for its key is counted in /metrics, not written to the ledger (clients without a
        # valid key cannot fill it).
        _, before = s.metrics(headers=bearer(KEYS["root"]))
        st, _, _ = s.post("/v1/completions", {"prompt": "x"}, headers=bearer("key-nobody-00000000"))
        t.check("a wrong key on a generation request: 401", st == 401, st)
        _, after = s.metrics(headers=bearer(KEYS["root"]))
        t.check("the 401 is counted in /metrics (baichuan_unauthenticated_total)",
                after["baichuan_unauthenticated_total"] - before["baichuan_unauthenticated_total"] == 1)
        time.sleep(0.3)  # a row would be written after the reply
        t.check("the 401 has no ledger row", "" not in ledger_counts(db), ledger_counts(db))

        st, _, doc = s.request("GET", "/admin/usage", headers=bearer(KEYS["root"]))
        t.check("/admin/usage with the admin key: 200", st == 200, (st, doc))
        today = datetime.datetime.now(datetime.timezone.utc).date()
        week = [(today - datetime.timedelta(days=6 - i)).isoformat() for i in range(7)]
        t.check("defaults: the last 7 days, by day", doc["from"] == week[0] and doc["to"] == week[-1] and
                doc["bucket"] == "day" and doc["buckets"] == week, doc)
        ledger = ledger_counts(db)
        t.check("per-tenant totals == the ledger's rows (sqlite3)", report_counts(doc) == ledger,
                (report_counts(doc), ledger))
        t.check("per-tenant totals == the client's tally", report_counts(doc) == tally, (report_counts(doc), tally))
        t.check("tenants in name order", [x["tenant"] for x in doc["tenants"]] == sorted(tally), doc["tenants"])
        sums = [sum(v[k] for v in ledger.values()) for k in range(3)]
        t.check("totals == the ledger's sums", [doc["totals"]["requests"], doc["totals"]["prompt_tokens"],
                                                doc["totals"]["completion_tokens"]] == sums, (doc["totals"], sums))
        t.check("per-day buckets == the ledger's", report_buckets(doc) == ledger_counts(db, 10),
                (report_buckets(doc), ledger_counts(db, 10)))
        yesterday = (today - datetime.timedelta(days=1)).isoformat()
        q = urllib.parse.urlencode({"from": yesterday, "to": today.isoformat(), "bucket": "hour"})
        st, _, hourly = s.request("GET", "/admin/usage?" + q, headers=bearer(KEYS["root"]))
        t.check("bucket=hour: 48 buckets, per-hour numbers == the ledger's",
                st == 200 and len(hourly["buckets"]) == 48 and report_buckets(hourly) == ledger_counts(db, 13),
                (st, hourly))
        q = urllib.parse.urlencode({"from": "2020-01-01", "to": "2020-01-31"})
        st, _, empty = s.request("GET", "/admin/usage?" + q, headers=bearer(KEYS["root"]))
        t.check("a range without requests: no tenants, zero totals",
                st == 200 and empty["tenants"] == [] and empty["totals"]["requests"] == 0 and
                len(empty["buckets"]) == 31, (st, empty))
        check_errors(t, s, today)
        st, h, page = s.request("GET", "/admin")
        t.check("/admin: the page, without a key", st == 200 and h["content-type"].startswith("text/html") and
                "<svg" in page and "/admin/usage" in page, (st, h))

        if t.check("npm install openai playwright-core", install(args.work)):
            run_node(t, args.work, "admin_page.mjs", "http://127.0.0.1:%d/" % s.port, KEYS["root"], KEYS["alice"],
                     yesterday, today.isoformat(), json.dumps(ledger_counts(db)))
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
