#!/usr/bin/python3
"""The server when its stores fail (issue 25): a throw-away PostgreSQL 15
cluster (test_pg_store.Cluster) holding tenants, quotas and the ledger, and
one `serve` replica on the default model.

  1. PostgreSQL frozen (SIGSTOP on every process of the cluster) for 10 s
     under 16 concurrent streams of 3 tenants: /livez and /readyz answer
     within 100 ms throughout and /readyz says not ready, naming the store;
     /metrics answers its --metrics-token; the streams already running keep
     receiving tokens; new requests end (200 or 503) within their bound;
     the first request after the thaw succeeds; every reply a client saw has
     its ledger row (by id), and every tenant's day counter equals the
     ledger's token sum for the day (nothing dropped, nothing charged twice),
     from SQL, not from the server.
  2. 10,000 requests with bad keys (keep-alive, 4 threads): the ledger has
     not one more row, /metrics counts them, the server's RSS stays flat.
  3. The database slowed (pg_sleep in triggers on the ledger's and the
     quotas' tables) under 64 clients: no request waits past its bound, the
     RSS stays under a printed bound, and the counters still equal the sums.
  4. The SQLite ledger's file locked by another process (BEGIN EXCLUSIVE)
     for 6 s under streams, with a JSON tenant store: /livez and /readyz
     within 100 ms, /readyz names the ledger, every reply seen is in the
     ledger, the first request after the unlock succeeds.

    test_db_faults.py --bin build/baichuan --work DIR
"""
import argparse
import datetime
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import bc_testlib
from server_util import Server
from test_pg_store import Cluster

COMP = "/v1/completions"
TENANTS = ("t1", "t2", "t3")
METRICS_TOKEN = "scrape-token-0123456789"
EOS_BAN = {"2": -100}  # long replies: the streams outlast the start of the freeze
# A request's bound: --max-wait (2 s) for a worker, then the store's (connect 3 s + answer 6 s), and a second.
ADMISSION_BOUND = 12.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(port, path, headers=None, timeout=10):
    """(status, body, seconds) of a GET on a fresh connection, as a probe makes it."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, body, time.monotonic() - t0
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e), time.monotonic() - t0
    finally:
        c.close()


def stream(port, key, body, timeout=60):
    """A streamed completion read event by event: (status, id, tokens, [arrival times of text events], start, end).
    tokens is prompt + completion from the final usage chunk (0 when the stream did not complete)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    rid, tokens, times, done = None, 0, [], False
    try:
        c.request("POST", COMP, body=json.dumps(dict(body, stream=True, stream_options={"include_usage": True})),
                  headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return r.status, None, 0, [], t0, time.monotonic()
        for raw in r:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            ev = json.loads(line[6:])
            if "error" in ev:
                return 503, None, 0, times, t0, time.monotonic()  # the ledger withheld the end
            rid = ev.get("id", rid)
            if ev.get("usage"):
                tokens = ev["usage"]["prompt_tokens"] + ev["usage"]["completion_tokens"]
            if any(ch.get("text") for ch in ev.get("choices", [])):
                times.append(time.monotonic())
        return (200 if done else 0), rid, tokens, times, t0, time.monotonic()
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None, 0, times, t0, time.monotonic()
    finally:
        c.close()


def post(port, key, body, timeout=60):
    """(status, JSON body or None, seconds) of a non-streamed completion."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", COMP, body=json.dumps(body),
                  headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        return r.status, value, time.monotonic() - t0
    except (OSError, http.client.HTTPException):
        return 0, None, time.monotonic() - t0
    finally:
        c.close()


PROBE_SCRIPT = r"""
import http.client, json, signal, sys, time
port, stop = int(sys.argv[1]), []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
while not stop:
    for path in ("/livez", "/readyz"):
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            st, body = r.status, r.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            st, body = 0, str(e)
        finally:
            c.close()
        print(json.dumps([t0, path, st, time.monotonic() - t0, body]), flush=True)
    time.sleep(0.05)
"""


class Probes:
    """/livez and /readyz every 50 ms on fresh connections, as a load balancer would, from a process of their
    own (so that the clients' threads here do not delay them): (time, path, status, seconds, body)."""

    def __init__(self, port):
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, str(port)], stdout=subprocess.PIPE,
                                     text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()  # read as they come: a full pipe would stop the probes

    def finish(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.reader.join(10)
        return [tuple(json.loads(line)) for line in self.lines if line.startswith("[")]


class Clients:
    """n threads sending streamed completions in a loop, tenants round robin."""

    def __init__(self, port, keys, n, max_tokens):
        self.port, self.keys, self.max_tokens = port, keys, max_tokens
        self.results, self.stop, self.lock = [], threading.Event(), threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]
        for th in self.threads:
            th.start()

    def run(self, i):
        name = TENANTS[i % len(TENANTS)]
        j = 0
        while not self.stop.is_set():
            res = stream(self.port, self.keys[name], {"prompt": "床前明月光", "max_tokens": self.max_tokens,
                                                      "seed": i * 1000 + j, "logit_bias": EOS_BAN})
            j += 1
            with self.lock:
                self.results.append((name,) + res)
            if res[0] != 200:
                time.sleep(0.2)

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join(90)
        return self.results, not any(th.is_alive() for th in self.threads)


def day_counters(pg):
    """{tenant: (the day counter, the ledger's tokens of the day)}, both from SQL."""
    rows = pg.sql("SELECT t.name,"
                  " COALESCE((SELECT count FROM quota_counters q WHERE q.tenant = t.name AND q.kind = 'day'"
                  "           AND q.window_start = floor(extract(epoch FROM now()) / 86400)::bigint), 0),"
                  " (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM requests r"
                  "  WHERE r.tenant = t.name AND r.time >= date_trunc('day', now() AT TIME ZONE 'UTC')"
                  "  AT TIME ZONE 'UTC') FROM tenants t ORDER BY 1")
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def check_probes(t, results, start, end, name):
    inside = [r for r in results if start <= r[0] <= end]
    worst = max((r[3] for r in inside), default=None)
    print("%s: %d probes, /livez and /readyz max %.1f ms" % (name, len(inside), 1000 * (worst or 0)))
    t.check("%s: /livez and /readyz answer within 100 ms throughout" % name,
            inside and worst < 0.100 and all(r[2] in (200, 503) for r in inside), (len(inside), worst))
    t.check("%s: /livez says alive throughout" % name, all(r[2] == 200 for r in inside if r[1] == "/livez"))
    return inside


def pg_part(t, binary, work):
    pg = Cluster()
    pg.init()
    keys = {}
    for name in TENANTS:
        subprocess.run([binary, "tenants", "--store", pg.url, "add", name], check=True, capture_output=True)
        keys[name] = subprocess.run([binary, "tenants", "--store", pg.url, "key-create", name], check=True,
                                    capture_output=True, text=True).stdout.strip()
    s = Server(binary, "--parallel", "16", "--tenants", pg.url, "--ledger", pg.url, "--metrics-token",
               METRICS_TOKEN)
    try:
        for name in TENANTS:
            st, _, _ = post(s.port, keys[name], {"prompt": "a", "max_tokens": 2})
            t.check("warm-up request of %s" % name, st == 200, st)
        for _ in range(100):  # the first pings
            if get(s.port, "/readyz")[0] == 200:
                break
            time.sleep(0.05)
        t.check("/readyz says ready with the database up", get(s.port, "/readyz")[0] == 200)

        # ---- 1. the freeze ----
        probes = Probes(s.port)
        clients = Clients(s.port, keys, 16, 600)
        time.sleep(2.0)
        pids = pg.pids()
        frozen_at = time.monotonic()
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        metrics_times = []
        # New requests during the freeze (the 16 streams are all running): 8 clients, non-streamed, more
        # than the 4 workers, so some wait for one.
        newcomers, shed_waits, stop_new = [], [], threading.Event()

        def newcomer(i):
            j = 0
            while not stop_new.is_set():
                t_start = time.monotonic()
                st, v, dt = post(s.port, keys[TENANTS[i % 3]], {"prompt": "新", "max_tokens": 4, "seed": j}, timeout=60)
                if st == 503 and v and v.get("error", {}).get("code") == "overloaded":
                    shed_waits.append(dt)
                newcomers.append((TENANTS[i % 3], st, v["id"] if st == 200 else None,
                                  v["usage"]["total_tokens"] if st == 200 else 0, [], t_start, time.monotonic()))
                j += 1

        new_threads = [threading.Thread(target=newcomer, args=(i,), daemon=True) for i in range(8)]
        for th in new_threads:
            th.start()
        try:
            time.sleep(1.5)
            st, body, dt = get(s.port, "/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN})
            metrics_times.append((st, dt, "baichuan_shed_total" in body))
            time.sleep(10.0 - (time.monotonic() - frozen_at))
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        thawed_at = time.monotonic()
        stop_new.set()
        st, first, dt_first = post(s.port, keys["t1"], {"prompt": "after", "max_tokens": 4})
        print("freeze: first request after the thaw: %d in %.3f s" % (st, dt_first))
        t.check("the first request after the thaw succeeds", st == 200, (st, first))
        time.sleep(2.0)
        results, ended = clients.finish()
        probe_results = probes.finish()
        for th in new_threads:
            th.join(60)
        ended = ended and not any(th.is_alive() for th in new_threads)
        t.check("every client finished (no request hung)", ended)
        results += newcomers

        inside = check_probes(t, probe_results, frozen_at, thawed_at, "freeze")
        not_ready = [json.loads(r[4]) for r in inside if r[1] == "/readyz" and r[2] == 503]
        named = [d for d in not_ready if "store" in d.get("not_ready", {})]
        first_nr = min((r[0] for r in inside if r[1] == "/readyz" and r[2] == 503), default=None)
        print("freeze: /readyz not ready %s s after the freeze, e.g. %s" % (
            None if first_nr is None else round(first_nr - frozen_at, 2), named[0] if named else None))
        t.check("/readyz says not ready during the freeze, naming the store", named, not_ready[:2])
        ready_after = [r for r in probe_results if r[0] > thawed_at + 2.0 and r[1] == "/readyz"]
        t.check("/readyz is ready again after the thaw", ready_after and ready_after[-1][2] == 200,
                ready_after[-1:])
        t.check("/metrics answers its --metrics-token during the freeze, fast",
                metrics_times and metrics_times[0][0] == 200 and metrics_times[0][1] < 0.1 and metrics_times[0][2],
                metrics_times)

        during = [r for r in results if r[5] < frozen_at < r[6]]  # (name, st, id, tokens, times, start, end)
        kept = sum(1 for r in during for x in r[4] if frozen_at + 0.5 < x < thawed_at)
        print("freeze: %d streams running at the freeze; %d tokens reached them during it" % (len(during), kept))
        t.check("streams running at the freeze kept receiving tokens during it", kept > 0, len(during))
        new = [r for r in results if frozen_at < r[5] < thawed_at]
        late = [round(r[6] - r[5], 2) for r in new if r[6] - r[5] > ADMISSION_BOUND + 1.0 and r[1] != 200]
        statuses = sorted(set(r[1] for r in new))
        shed = sum(1 for r in new if r[1] == 503)
        print("freeze: %d requests started during it: statuses %s, %d shed with 503, longest %.2f s" % (
            len(new), statuses, shed, max((r[6] - r[5] for r in new), default=0)))
        t.check("requests started during the freeze end with 200 or 503", set(statuses) <= {200, 503}, statuses)
        t.check("a refused request waits at most its bound (%.0f s)" % ADMISSION_BOUND, not late, late)
        t.check("requests started during the freeze are refused with 503", shed > 0, statuses)
        print("freeze: %d shed as overloaded after waiting for a worker, the longest %.2f s (--max-wait 2 s)" % (
            len(shed_waits), max(shed_waits, default=0)))
        t.check("a request that waits for a worker is shed within --max-wait (+0.5 s)",
                shed_waits and max(shed_waits) < 2.5, shed_waits)

        seen = [r for r in results if r[1] == 200]
        if st == 200:
            seen.append(("t1", 200, first["id"], first["usage"]["total_tokens"]))
        ids = {row[0] for row in pg.sql("SELECT request_id FROM requests WHERE request_id IS NOT NULL")}
        missing = [r[2] for r in seen if r[2] not in ids]
        t.check("every reply a client saw has its ledger row (%d replies)" % len(seen), not missing, missing[:3])
        dup = pg.sql("SELECT count(*) - count(DISTINCT request_id) FROM requests WHERE request_id IS NOT NULL")
        t.check("no ledger row twice", dup[0][0] == "0", dup)
        counters = day_counters(pg)
        print("freeze: day counters vs ledger sums:", counters)
        t.check("every tenant's day counter equals the ledger's token sum for the day",
                all(c == l and l > 0 for c, l in counters.values()), counters)

        # ---- 2. bad keys ----
        n_rows = pg.sql("SELECT count(*) FROM requests")[0][0]
        _, m0 = s.metrics(headers={"Authorization": "Bearer " + METRICS_TOKEN})
        rss = []
        body = json.dumps({"prompt": "x", "max_tokens": 1})
        errors = []

        def bad_keys(i, n):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            for j in range(n):
                try:
                    c.request("POST", COMP, body=body, headers={"Authorization": "Bearer bad-key-%d-%d" % (i, j),
                                                                "Content-Type": "application/json"})
                    r = c.getresponse()
                    r.read()
                    if r.status != 401:
                        errors.append(r.status)
                except (OSError, http.client.HTTPException) as e:
                    errors.append(str(e))
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            c.close()

        t0 = time.monotonic()
        warm = [threading.Thread(target=bad_keys, args=(i, 250)) for i in range(4)]
        for th in warm:
            th.start()
        for th in warm:
            th.join()
        rss.append(rss_kib(s.proc.pid))
        ths = [threading.Thread(target=bad_keys, args=(10 + i, 2250)) for i in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        rss.append(rss_kib(s.proc.pid))
        _, m1 = s.metrics(headers={"Authorization": "Bearer " + METRICS_TOKEN})
        n_after = pg.sql("SELECT count(*) FROM requests")[0][0]
        counted = m1.get("baichuan_unauthenticated_total", 0) - m0.get("baichuan_unauthenticated_total", 0)
        print("bad keys: 10000 requests in %.1f s; RSS %d KiB after 1000, %d KiB after 10000; 401s counted %d" % (
            time.monotonic() - t0, rss[0], rss[1], counted))
        t.check("10,000 bad keys: every one a 401", not errors, errors[:3])
        t.check("10,000 bad keys: the ledger unchanged", n_after == n_rows, (n_rows, n_after))
        t.check("10,000 bad keys: /metrics counts them", counted == 10000, counted)
        t.check("10,000 bad keys: RSS flat (within 2 MiB from the 1,000th to the 10,000th)",
                rss[1] - rss[0] < 2048, rss)

        # ---- 3. the database slowed, 64 clients ----
        pg.sql("CREATE FUNCTION bc_slow() RETURNS trigger LANGUAGE plpgsql AS"
               " $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;"
               "CREATE TRIGGER bc_slow_ledger AFTER INSERT ON requests FOR EACH STATEMENT EXECUTE FUNCTION bc_slow();"
               "CREATE TRIGGER bc_slow_quota AFTER INSERT OR UPDATE ON quota_counters"
               " FOR EACH STATEMENT EXECUTE FUNCTION bc_slow();"
               "UPDATE tenants SET requests_per_minute = 1000000")  # admission now writes the minute counter
        base = rss_kib(s.proc.pid)
        bound_kib = base + 64 * 1024
        peak, done = [base], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(rss_kib(s.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        slow = []
        lock = threading.Lock()

        def client(i):
            name = TENANTS[i % 3]
            for j in range(3):
                st, v, dt = post(s.port, keys[name], {"prompt": "慢", "max_tokens": 8, "seed": i * 10 + j})
                with lock:
                    slow.append((st, dt, v["id"] if st == 200 else None))

        t0 = time.monotonic()
        ths = [threading.Thread(target=client, args=(i,)) for i in range(64)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(120)
        done.set()
        sampler.join()
        worst = max(x[1] for x in slow)
        by = {st: sum(1 for x in slow if x[0] == st) for st in set(x[0] for x in slow)}
        print("slowed database, 64 clients x 3: %.1f s, statuses %s, longest %.2f s; RSS %d KiB at the start, "
              "peak %d KiB, bound %d KiB" % (time.monotonic() - t0, by, worst, base, max(peak), bound_kib))
        t.check("slowed database: every request answered (200 or 503)", set(by) <= {200, 503} and len(slow) == 192,
                by)
        t.check("slowed database: no request past its bound (%.0f s)" % ADMISSION_BOUND, worst < ADMISSION_BOUND,
                worst)
        t.check("slowed database: RSS under its bound", max(peak) < bound_kib, (max(peak), bound_kib))
        pg.sql("DROP TRIGGER bc_slow_ledger ON requests; DROP TRIGGER bc_slow_quota ON quota_counters")
        ids = {row[0] for row in pg.sql("SELECT request_id FROM requests WHERE request_id IS NOT NULL")}
        t.check("slowed database: every reply seen is in the ledger",
                all(x[2] in ids for x in slow if x[0] == 200))
        counters = day_counters(pg)
        t.check("slowed database: the day counters still equal the ledger's sums",
                all(c == l for c, l in counters.values()), counters)
    finally:
        code = s.stop()
        t.check("the server stops cleanly", code == 0, code)
        if t.failed:
            print("the server's log (last 40 lines):\n" + "\n".join(s.log[-40:]))
        pg.destroy()


def sqlite_part(t, binary, work):
    os.makedirs(work, exist_ok=True)
    ledger = os.path.join(work, "ledger.sqlite")
    tenants = os.path.join(work, "tenants.json")
    for p in (ledger, ledger + "-wal", ledger + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    keys = {name: "key-of-%s-0123456789" % name for name in TENANTS}
    with open(tenants, "w") as f:
        json.dump({"tenants": [{"name": n, "keys": [k]} for n, k in keys.items()]}, f)
    s = Server(binary, "--parallel", "8", "--tenants", tenants, "--ledger", ledger)
    try:
        st, _, _ = post(s.port, keys["t1"], {"prompt": "a", "max_tokens": 2})
        t.check("sqlite: warm-up request", st == 200, st)
        for _ in range(100):
            if get(s.port, "/readyz")[0] == 200:
                break
            time.sleep(0.05)
        probes = Probes(s.port)
        clients = Clients(s.port, keys, 6, 300)
        time.sleep(1.0)
        # Another process holds the ledger's write lock for 6 s.
        locker = subprocess.Popen([sys.executable, "-c",
                                   "import sqlite3, sys, time\n"
                                   "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                                   "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(6)\n"
                                   "c.execute('ROLLBACK')\n", ledger], stdout=subprocess.PIPE, text=True)
        locker.stdout.readline()
        locked_at = time.monotonic()
        locker.wait(30)
        unlocked_at = time.monotonic()
        st, first, dt = post(s.port, keys["t2"], {"prompt": "after", "max_tokens": 4})
        print("sqlite lock: first request after the unlock: %d in %.3f s" % (st, dt))
        t.check("sqlite: the first request after the unlock succeeds", st == 200, (st, first))
        time.sleep(1.0)
        results, ended = clients.finish()
        probe_results = probes.finish()
        t.check("sqlite: every client finished", ended)
        inside = check_probes(t, probe_results, locked_at, unlocked_at, "sqlite lock")
        named = [r[4] for r in inside if r[1] == "/readyz" and r[2] == 503 and '"ledger"' in r[4]]
        t.check("sqlite: /readyz says not ready while locked, naming the ledger", named)
        seen = [r for r in results if r[1] == 200]
        with sqlite3.connect(ledger) as con:
            ids = {row[0] for row in con.execute("SELECT request_id FROM requests WHERE request_id IS NOT NULL")}
        missing = [r[2] for r in seen if r[2] not in ids]
        t.check("sqlite: every reply a client saw has its ledger row (%d replies)" % len(seen),
                seen and not missing, missing[:3])
    finally:
        t.check("sqlite: the server stops cleanly", s.stop() == 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    t = bc_testlib.Tally()
    binary = os.path.abspath(a.bin)
    pg_part(t, binary, a.work)
    sqlite_part(t, binary, a.work)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
