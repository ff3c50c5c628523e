#!/usr/bin/python3
"""Shared state in PostgreSQL: `baichuan tenants` on a JSON file and on a
database, two `serve` replicas sharing --tenants and --ledger postgresql://
(a per-minute quota counted across both, ledger rows against the responses
the client saw, `usage` totals against its tally, revocation on both, no key
in any log), the database stopped and restarted under them (503s, then
service again), and an unreachable database at start (exit 1, the password
masked).

The test runs a throw-away PostgreSQL 15 cluster in a temporary directory
on a free loopback port (as an unprivileged user when run as root, since
PostgreSQL refuses root). When no cluster can be started the test fails.

    test_pg_store.py --bin build/baichuan --work DIR
"""
import argparse
import datetime
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import bc_testlib
from server_util import Server

PG_BIN = "/usr/lib/postgresql/15/bin"
COMP = "/v1/completions"
PASSWORD = "hunter2-secret-pw"


def bearer(key):
    return {"Authorization": "Bearer " + key}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl in a temporary directory, owned by an unprivileged user
    when this runs as root."""

    def __init__(self, fsync=False):
        self.fsync = fsync  # off by default: the test needs no durability across a power loss
        self.dir = tempfile.mkdtemp(prefix="bc-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            user = "bcpgtest"
            try:
                pwd.getpwnam(user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                               check=True, capture_output=True)
            uid = pwd.getpwnam(user).pw_uid
            os.chown(self.dir, uid, -1)
            self.as_user = ["runuser", "-u", user, "--"]
        self.url = "postgresql://bc:%s@127.0.0.1:%d/postgres" % (PASSWORD, self.port)

    def run(self, *cmd, timeout=120):
        return subprocess.run([*self.as_user, *cmd], capture_output=True, timeout=timeout)

    def init(self):
        r = self.run(os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "bc", "-A", "trust", "--no-locale", "-E",
                     "UTF8")
        if r.returncode != 0:
            raise RuntimeError("initdb failed: %s" % r.stderr.decode(errors="replace"))
        self.start()

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=%s" % (self.port, self.dir,
                                                                         "on" if self.fsync else "off")
        r = self.run(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts,
                     "start")
        if r.returncode != 0:
            log = open(self.log, errors="replace").read() if os.path.exists(self.log) else ""
            raise RuntimeError("pg_ctl start failed: %s %s" % (r.stderr.decode(errors="replace"), log[-2000:]))

    def stop(self, mode="fast"):
        return self.run(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop").returncode == 0

    def pids(self):
        """The postmaster and its children (this cluster's processes only)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            master = int(f.readline())
        children = []
        for entry in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except (OSError, ValueError):
                continue  # not a process, or one that has just ended
            # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
            if int(stat[stat.rindex(")") + 2:].split()[1]) == master:
                children.append(int(entry))
        return [master] + children

    def sql(self, query):
        r = subprocess.run(["psql", self.url, "-At", "-c", query], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.decode(errors="replace"))
        return [line.split("|") for line in r.stdout.decode().splitlines() if line]

    def destroy(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def signal_if_alive(pid, sig):
    """A backend that has just ended (a finished client's) is no error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def tenants(binary, store, *args):
    return subprocess.run([binary, "tenants", "--store", store, *args], capture_output=True, timeout=60)


def check_tenants_cli(t, binary, store, label, secrets):
    """add, key-create, list, list --json (never a key), key-revoke; returns
    (rpm-limited key, open key) in the store."""
    ok = tenants(binary, store, "add", "limited", "--rpm", "3").returncode == 0
    ok &= tenants(binary, store, "add", "open", "--admin").returncode == 0
    r = tenants(binary, store, "add", "open")
    t.check("%s: add of an existing tenant: exit 1, one line naming it" % label,
            r.returncode == 1 and len(r.stderr.decode().strip().splitlines()) == 1 and b"'open'" in r.stderr, r)
    keys = []
    for name in ("limited", "open", "open"):
        r = tenants(binary, store, "key-create", name)
        key = r.stdout.decode().strip()
        ok &= r.returncode == 0 and key.startswith("sk-") and len(key) > 20
        keys.append(key)
    secrets.extend(keys)
    t.check("%s: add, key-create print a new key each" % label, ok and len(set(keys)) == 3, keys)
    r = tenants(binary, store, "key-create", "nobody-here")
    t.check("%s: key-create for an unknown tenant: exit 1" % label,
            r.returncode == 1 and b"nobody-here" in r.stderr and r.stdout == b"", r)
    r = tenants(binary, store, "key-revoke", keys[2])
    t.check("%s: key-revoke" % label, r.returncode == 0, r)
    r = tenants(binary, store, "key-revoke", keys[2])
    t.check("%s: key-revoke of a revoked key: exit 1" % label, r.returncode == 1, r)
    r = tenants(binary, store, "list")
    t.check("%s: list (a table, no keys)" % label,
            r.returncode == 0 and b"limited" in r.stdout and not any(k.encode() in r.stdout for k in keys), r)
    r = tenants(binary, store, "list", "--json")
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    by_name = {x["name"]: x for x in doc.get("tenants", [])}
    t.check("%s: list --json: limits, key counts, never a key" % label,
            by_name.get("limited", {}).get("requests_per_minute") == 3 and by_name["limited"]["keys"] == 1
            and by_name["open"]["keys"] == 1 and by_name["open"]["revoked_keys"] == 1 and by_name["open"]["admin"]
            and not any(k in r.stdout.decode() for k in keys), r.stdout)
    for bad in (["add", ""], ["add", "a b"], ["list", "--rpm", "3"], ["add", "x", "--rpm", "-1"], ["frobnicate"],
                ["key-revoke", "short"]):
        r = tenants(binary, store, *bad)
        t.check("%s: tenants %s: exit 1, one line" % (label, " ".join(bad)),
                r.returncode == 1 and len(r.stderr.decode().strip().splitlines()) == 1, r)
    r = subprocess.run([binary, "tenants", "--help"], capture_output=True, timeout=60)
    t.check("%s: tenants --help" % label, r.returncode == 0 and b"key-create" in r.stdout, r)
    return keys[0], keys[1], keys[2]


def check_json_store(t, binary, work, secrets):
    store = os.path.join(work, "tenants.json")
    limited, open_key, revoked = check_tenants_cli(t, binary, store, "json", secrets)
    text = open(store).read()
    t.check("json: the file holds sha256 digests only", "sha256:" in text and all(k not in text for k in secrets),
            text)
    s = Server(binary, "--tenants", store)
    try:
        st1, _, _ = s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open_key))
        st2, _, _ = s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(revoked))
        t.check("json: a created key works (sha256 entry), a revoked one gets 401", (st1, st2) == (200, 401),
                (st1, st2))
    finally:
        code = s.stop()
    t.check("json: the server stops cleanly (exit 0)", code == 0, "\n".join(s.log[-20:]))


def check_admin_usage(t, pg, servers, admin_key, other_key):
    """GET /admin/usage on the PostgreSQL ledger, the admin flag read from
    the PostgreSQL tenant store: per tenant and per hour == the rows counted
    in the database itself."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    query = "/admin/usage?from=%s&to=%s&bucket=hour" % ((today - datetime.timedelta(days=1)).isoformat(),
                                                        today.isoformat())
    want = {(r[0], r[1]): [int(r[2]), int(r[3]), int(r[4])] for r in pg.sql(
        "SELECT COALESCE(tenant, ''), to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00'), count(*),"
        " sum(prompt_tokens), sum(completion_tokens) FROM requests GROUP BY 1, 2")}
    for i, s in enumerate(servers):
        st, _, doc = s.request("GET", query, headers=bearer(admin_key))
        got = {(x["tenant"], b["bucket"]): [b["requests"], b["prompt_tokens"], b["completion_tokens"]]
               for x in doc.get("tenants", []) for b in x["buckets"]} if st == 200 else {}
        t.check("replica %d: /admin/usage?bucket=hour on PostgreSQL == the rows in the database" % i,
                st == 200 and got == want and len(doc["buckets"]) == 48, (st, got, want))
    st, _, doc = servers[0].request("GET", "/admin/usage", headers=bearer(other_key))
    t.check("/admin/usage with a non-admin tenant's key (PostgreSQL store): 403", st == 403, (st, doc))


def wait_window_start(t):
    """Sleeps so that a burst of requests fits in one calendar minute."""
    sec = time.time() % 60
    if sec > 45:
        time.sleep(61 - sec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    t = bc_testlib.Tally()
    secrets = []
    check_json_store(t, args.bin, args.work, secrets)

    pg = Cluster()
    servers = []
    try:
        try:
            pg.init()
        except Exception as e:  # noqa: BLE001 - any failure to start PostgreSQL fails the test
            t.check("a throw-away PostgreSQL cluster starts (needs postgresql-15)", False, e)
            return t.finish()
        t.check("a throw-away PostgreSQL cluster starts", True)
        limited, open_key, _ = check_tenants_cli(t, args.bin, pg.url, "postgresql", secrets)
        r = tenants(args.bin, pg.url, "key-create", "open")
        open2 = r.stdout.decode().strip()
        secrets.append(open2)

        servers = [Server(args.bin, "--tenants", pg.url, "--ledger", pg.url) for _ in range(2)]
        seen = {}  # request id -> (tenant, prompt tokens, completion tokens)

        def call(s, key, tenant):
            st, _, body = s.post(COMP, {"prompt": "hello", "max_tokens": 2}, headers=bearer(key))
            if st == 200:
                seen[body["id"]] = (tenant, body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
            return st

        wait_window_start(t)
        statuses = [call(servers[i % 2], limited, "limited") for i in range(8)]
        t.check("requests_per_minute 3 across two replicas: 3 accepted, the rest 429",
                statuses.count(200) == 3 and statuses.count(429) == 5, statuses)
        # The same limit under concurrency: 20 requests at once from 10
        # threads over both replicas, one window: exactly 5 of them pass.
        tenants(args.bin, pg.url, "add", "burst", "--rpm", "5")
        burst = tenants(args.bin, pg.url, "key-create", "burst").stdout.decode().strip()
        secrets.append(burst)
        wait_window_start(t)
        results = []
        threads = [threading.Thread(target=lambda i=i: results.extend(
            call(servers[(i + j) % 2], burst, "burst") for j in range(2))) for i in range(10)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t.check("requests_per_minute 5, 20 concurrent requests over two replicas: exactly 5 accepted",
                results.count(200) == 5 and results.count(429) == 15, results)
        statuses = [call(servers[i % 2], open_key, "open") for i in range(6)]
        t.check("an unlimited tenant on both replicas: all 200", statuses == [200] * 6, statuses)

        rows = pg.sql("SELECT request_id FROM requests WHERE request_id IS NOT NULL")
        t.check("ledger rows in PostgreSQL == the completions the client saw (by id)",
                sorted(r[0] for r in rows) == sorted(seen), (len(rows), len(seen)))
        n_429 = pg.sql("SELECT count(*) FROM requests WHERE status = 429")[0][0]
        t.check("the refused requests have rows too (status 429)", n_429 == "20", n_429)

        r = subprocess.run([args.bin, "usage", "--ledger", pg.url, "--json"], capture_output=True, timeout=60)
        got = {x["tenant"]: x for x in json.loads(r.stdout)["tenants"]} if r.returncode == 0 else {}
        ok = r.returncode == 0
        for name in ("limited", "open"):
            mine = [v for v in seen.values() if v[0] == name]
            x = got.get(name, {})
            ok &= x.get("succeeded") == len(mine) and x.get("prompt_tokens") == sum(v[1] for v in mine) and \
                x.get("completion_tokens") == sum(v[2] for v in mine)
        t.check("usage --ledger postgresql:// totals == the client's tally", ok, (r.stderr, got))
        r1 = subprocess.run([args.bin, "usage", "--ledger", pg.url, "--since", "2000-01-01", "--json"],
                            capture_output=True, timeout=60)
        r2 = subprocess.run([args.bin, "usage", "--ledger", pg.url, "--since", "2999-01-01T00:00:00", "--json"],
                            capture_output=True, timeout=60)
        t.check("usage --since on PostgreSQL", r1.returncode == 0 and json.loads(r1.stdout)["tenants"] ==
                json.loads(r.stdout)["tenants"] and r2.returncode == 0 and json.loads(r2.stdout)["tenants"] == [],
                (r1, r2))

        check_admin_usage(t, pg, servers, open_key, limited)

        # tokens_per_day is shared too: charged by one replica, refused by the other.
        tenants(args.bin, pg.url, "add", "daily", "--tokens-per-day", "4")
        daily = tenants(args.bin, pg.url, "key-create", "daily").stdout.decode().strip()
        secrets.append(daily)
        first = call(servers[0], daily, "daily")
        deadline, st, body = time.time() + 10, None, None
        while time.time() < deadline:
            st, _, body = servers[1].post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(daily))
            if st == 429:
                break
            time.sleep(0.2)
        t.check("tokens_per_day: charged on one replica, refused (429) on the other",
                first == 200 and st == 429 and "tokens_per_day" in body["error"]["message"], (first, st, body))

        r = subprocess.run([args.bin, "tenants", "--store", pg.url, "key-revoke", "-"], input=open_key.encode(),
                           capture_output=True, timeout=60)
        st = [s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open_key))[0] for s in servers]
        t.check("a revoked key (key-revoke - reads it from stdin) fails on both replicas at once (401)", r.returncode == 0 and st == [401, 401], st)
        st = [s.request("GET", "/v1/models", headers=bearer(open2))[0] for s in servers]
        t.check("another key of the tenant still works on both", st == [200, 200], st)

        # The database freezes (accepts bytes, never answers): 503 within the
        # client's bound (6 s), not a hang; it thaws: service again.
        frozen = pg.pids()
        try:
            for pid in frozen:
                signal_if_alive(pid, signal.SIGSTOP)
            t0 = time.time()
            st = [s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open2), timeout=60)[0]
                  for s in servers]
            took = time.time() - t0
        finally:
            for pid in frozen:
                signal_if_alive(pid, signal.SIGCONT)
        t.check("database frozen: 503 on both replicas within the bound (< 9 s each)",
                st == [503, 503] and took < 18, (st, took))
        deadline = time.time() + 30
        while time.time() < deadline:
            st = [s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open2))[0] for s in servers]
            if st == [200, 200]:
                break
            time.sleep(0.5)
        t.check("database thawed: both replicas serve again", st == [200, 200], st)

        # The database goes away: 503 quickly; it comes back: service again.
        # A third server keeps only its ledger there (no tenants), and retries a failing write for 5 s
        # (--ledger-wait) before it withholds the replies.
        servers.append(Server(args.bin, "--ledger", pg.url, "--ledger-wait", "5"))
        t.check("PostgreSQL stopped", pg.stop("fast"))
        t0 = time.time()
        st, _, body = servers[2].post(COMP, {"prompt": "x", "max_tokens": 1}, timeout=30)
        events = servers[2].stream(COMP, {"prompt": "x", "max_tokens": 1, "stream": True}, timeout=30)
        took = time.time() - t0
        t.check("ledger down: a reply it cannot record is withheld (503; a stream ends with an error event)",
                st == 503 and "ledger" in body["error"]["message"] and took < 20
                and "ledger_unavailable" in json.dumps(events), (st, body, events, took))
        t0 = time.time()
        st = [s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open2), timeout=30)[0] for s in servers[:2]]
        took = time.time() - t0
        t.check("database down: 503 on both replicas within 10 s", st == [503, 503] and took < 10, (st, took))
        pg.start()
        deadline = time.time() + 30
        st = []
        while time.time() < deadline:
            st = [s.post(COMP, {"prompt": "x", "max_tokens": 1}, headers=bearer(open2))[0] for s in servers]
            if st == [200, 200, 200]:
                break
            time.sleep(0.5)
        t.check("database back: the replicas serve again (reconnected)", st == [200, 200, 200], st)
        n = pg.sql("SELECT count(*) FROM requests WHERE tenant = 'open' AND status = 200")[0][0]
        t.check("the rows after the restart are in the ledger", int(n) >= 8, n)

        codes = [s.stop() for s in servers]
        t.check("the replicas stop cleanly on SIGTERM (exit 0)", codes == [0, 0, 0], codes)
        logs = "\n".join("\n".join(s.log) for s in servers)
        t.check("no key and no password in the servers' logs",
                all(k not in logs for k in secrets) and PASSWORD not in logs, logs[-2000:])
        servers = []

        # Unreachable at start: exit 1, one line, the password masked.
        dead = "postgresql://bc:%s@127.0.0.1:%d/postgres" % (PASSWORD, free_port())
        for what, cmd in (("serve --tenants", [args.bin, "serve", "--tenants", dead, "--port", "0"]),
                          ("tenants --store", [args.bin, "tenants", "--store", dead, "list"]),
                          ("usage --ledger", [args.bin, "usage", "--ledger", dead])):
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, timeout=120)
            err = r.stderr.decode()
            lines = [x for x in err.splitlines() if x.strip()]
            t.check("%s on an unreachable database: exit 1, one line, password masked" % what,
                    r.returncode == 1 and len(lines) == 1 and "postgresql://bc:***@127.0.0.1" in err
                    and PASSWORD not in err and time.time() - t0 < 30, err)
    finally:
        for s in servers:
            s.kill()
        pg.destroy()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
