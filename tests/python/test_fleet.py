#!/usr/bin/env python3
"""The fleet under faults: scripts/fleet.sh starts a throw-away PostgreSQL,
three replicas of the default model and nginx; 24 concurrent clients of
three tenants with tight limits (requests a minute, tokens a day) send a bounded number of requests through
nginx while one replica is killed (SIGKILL) and started again and
PostgreSQL is restarted. Then, from the database itself (psql, not the
server) and from what the clients saw:

  - a tenant's requests recorded in one calendar minute never exceed its
    requests_per_minute (the limit is counted in the database, per UTC
    minute, for the whole fleet: no overshoot within a minute);
  - every completion a client saw is in the ledger, by id; rows the clients
    did not see are at most the killed replica's requests in flight;
  - `baichuan usage --ledger postgresql://` totals equal the ledger's rows,
    and the clients' token tally equals the rows of what they saw;
  - a revoked key fails on every replica;
  - a replica that stops answering /readyz (SIGSTOP) is taken out of nginx's
    upstream by deploy/readyz-watch.sh, requests go to the others, and it is
    put back once it answers again;
  - no key appears in any log (replicas, nginx, PostgreSQL).
Fails (does not skip) when the fleet cannot start.
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import bc_testlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLEET = os.path.join(ROOT, "scripts", "fleet.sh")
BIN = os.path.join(ROOT, "build", "baichuan")
LIMITS = {"t1": (4, 0), "t2": (6, 0), "t3": (0, 20)}  # (requests_per_minute, tokens_per_day); 0: unlimited
CLIENTS, PER_CLIENT = 24, 10


def post(port, key, body, timeout=60):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except (ValueError, OSError):
            return e.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return 0, None


def main():
    t = bc_testlib.Tally()

    def check(ok, name, detail=""):
        return t.check(name, bool(ok), str(detail))

    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("--work", default=None)  # unused: the fleet lives in a temporary directory
    binary = os.path.abspath(ap.parse_args().bin)
    d = tempfile.mkdtemp(prefix="bc-fleet-")
    os.chmod(d, 0o755)  # the cluster runs as another user when the tests run as root
    env = dict(os.environ, FLEET_DIR=os.path.join(d, "fleet"), BAICHUAN_BIN=binary)
    fdir = env["FLEET_DIR"]
    up = subprocess.run([FLEET, "up", "3"], env=env, capture_output=True, text=True, timeout=240)
    try:
        if up.returncode != 0:
            print(up.stdout + up.stderr)
            check(False, "the fleet starts (scripts/fleet.sh up 3)")
            return t.finish()
        db = open(os.path.join(fdir, "db.url")).read().strip()
        nport = int(open(os.path.join(fdir, "nginx.port")).read())
        pgport = int(open(os.path.join(fdir, "pg.port")).read())
        replicas = [line.split() for line in open(os.path.join(fdir, "replicas"))]

        def psql(sql):
            return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pgport), "-U", "baichuan", "-d", "baichuan",
                                   "-At", "-F", "|", "-c", sql], capture_output=True, text=True, check=True).stdout

        keys = {}
        for name, (rpm, tpd) in LIMITS.items():
            subprocess.run([binary, "tenants", "--store", db, "add", name, "--rpm", str(rpm), "--tokens-per-day",
                            str(tpd)], check=True, capture_output=True)
            keys[name] = subprocess.run([binary, "tenants", "--store", db, "key-create", name], check=True,
                                        capture_output=True, text=True).stdout.strip()
        doomed = subprocess.run([binary, "tenants", "--store", db, "key-create", "t3"], check=True,
                                capture_output=True, text=True).stdout.strip()
        check(all(len(k) >= 32 for k in keys.values()), "keys created")

        seen = []  # (tenant, id, prompt_tokens, completion_tokens)
        statuses = collections.Counter()
        refused_by = collections.Counter()  # (tenant, the limit a 429 names)
        lock = threading.Lock()

        def client(i):
            name = list(LIMITS)[i % 3]
            for j in range(PER_CLIENT):
                st, body = post(nport, keys[name], {"prompt": "床前明月光", "max_tokens": 4, "seed": i * 10 + j})
                with lock:
                    statuses[st] += 1
                    if st == 429 and body:
                        msg = body.get("error", {}).get("message", "")
                        refused_by[(name, "tokens_per_day" if "tokens_per_day" in msg else "requests_per_minute")] += 1
                    if st == 200:
                        u = body["usage"]
                        seen.append((name, body["id"], u["prompt_tokens"], u["completion_tokens"]))
                time.sleep(0.4)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for th in threads:
            th.start()
        # Mid-load: kill one replica, restart PostgreSQL, start the replica again.
        time.sleep(1.0)
        kpid, kport = int(replicas[1][0]), replicas[1][1]
        os.kill(kpid, signal.SIGKILL)
        pg_user = open(os.path.join(fdir, "pg.user")).read().strip() if os.path.exists(
            os.path.join(fdir, "pg.user")) else None
        ctl = ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", os.path.join(fdir, "pg", "data"), "-m", "fast", "-w",
               "restart", "-o", f"-p {pgport} -k {os.path.join(fdir, 'pg')} -c listen_addresses=127.0.0.1",
               "-l", os.path.join(fdir, "pg", "postgres.log")]
        if pg_user:
            ctl = ["runuser", "-u", pg_user, "--"] + ctl
        time.sleep(1.0)
        r = subprocess.run(ctl, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "PostgreSQL restarted mid-load", r.stderr[-300:])
        relog = open(os.path.join(fdir, "replica-2.log"), "a")
        restarted = subprocess.Popen([binary, "serve", "--port", kport, "--parallel", "4", "--tenants", db,
                                      "--ledger", db], stdout=relog, stderr=relog)
        for th in threads:
            th.join(timeout=180)
        check(not any(th.is_alive() for th in threads), "every client finished (no request hung)")
        print("statuses:", dict(statuses))
        check(statuses[200] > 0 and statuses[429] > 0, "some completions, and some refused by the limits",
                dict(statuses))
        # A request the killed replica had when SIGKILL came gets nginx's 502 (a POST is not sent again):
        # at most its 4 slots' worth, each one in nginx's log as a reset while reading that replica's answer.
        errlog = open(os.path.join(fdir, "nginx", "logs", "error.log"), errors="replace").read().splitlines()
        resets = [ln for ln in errlog if "while reading response header from upstream" in ln
                  and f"127.0.0.1:{kport}/" in ln]
        if not check(set(statuses) <= {200, 429, 503, 502} and statuses[502] <= min(4, len(resets)),
                     "only 200, 429 and 503 (database restarting), and 502 only for requests the killed replica had",
                     (dict(statuses), len(resets))):
            print("nginx's error.log:\n" + "\n".join(errlog[-20:]))
            watch = os.path.join(fdir, "nginx", "logs", "readyz-watch.log")
            print("readyz-watch.log:\n" + open(watch, errors="replace").read()[-2000:])

        # The limits: rows per tenant per calendar minute, from the database.
        rows = psql("SELECT tenant, request_id, prompt_tokens, completion_tokens, status, "
                    "to_char(date_trunc('minute', time AT TIME ZONE 'UTC'), 'HH24:MI') FROM requests")
        ledger = [r.split("|") for r in rows.splitlines() if r]
        ok_rows = [r for r in ledger if r[4] == "200"]
        per_minute = collections.Counter((r[0], r[5]) for r in ok_rows)
        over = {k: v for k, v in per_minute.items() if LIMITS[k[0]][0] and v > LIMITS[k[0]][0]}
        check(not over, "no tenant over its requests_per_minute in any minute", over)
        # tokens_per_day: admission refuses once the day's tokens reach the limit; requests admitted before the
        # charges of the ones in flight landed may pass it, at most one per client of the tenant.
        t3 = [r for r in ok_rows if r[0] == "t3"]
        t3_tokens = sum(int(r[2]) + int(r[3]) for r in t3)
        per_request = max((int(r[2]) + int(r[3]) for r in t3), default=0)
        bound = LIMITS["t3"][1] + (CLIENTS // 3) * per_request
        print("t3:", len(t3), "completions,", t3_tokens, "tokens; 429s by limit:", dict(refused_by))
        check(0 < t3_tokens <= bound, "t3's tokens stay within tokens_per_day plus one request per client in flight",
              (t3_tokens, bound))
        check(refused_by[("t3", "tokens_per_day")] > 0 and refused_by[("t1", "requests_per_minute")] > 0,
              "429s name the limit that refused them", dict(refused_by))
        check(per_minute, "rows recorded", per_minute)

        # Completions seen == rows, by id.
        ids = {r[1] for r in ok_rows}
        missing = [s for s in seen if s[1] not in ids]
        check(not missing, "every completion a client saw is in the ledger", missing[:3])
        unseen = ids - {s[1] for s in seen}
        check(len(unseen) <= 4, "rows no client saw: at most the killed replica's 4 slots", len(unseen))
        tally = sum(s[2] + s[3] for s in seen)
        rows_seen = sum(int(r[2]) + int(r[3]) for r in ok_rows if r[1] in {s[1] for s in seen})
        check(tally == rows_seen, "the clients' token tally equals the ledger's rows", (tally, rows_seen))
        u = json.loads(subprocess.run([binary, "usage", "--ledger", db, "--json"], check=True, capture_output=True,
                                      text=True).stdout)
        ledger_total = sum(int(r[2]) + int(r[3]) for r in ledger)
        usage_total = sum(x["total_tokens"] for x in u["tenants"])
        usage_requests = sum(x["requests"] for x in u["tenants"])
        usage_ok = sum(x["succeeded"] for x in u["tenants"])
        check((usage_total, usage_requests, usage_ok) == (ledger_total, len(ledger), len(ok_rows)),
              "usage --ledger postgresql:// totals equal the ledger's rows",
              ((usage_total, usage_requests, usage_ok), (ledger_total, len(ledger), len(ok_rows))))

        # A revoked key fails on every replica (straight to each, not via nginx).
        ports = [replicas[0][1], kport, replicas[2][1]]
        for p in ports:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.1)
        before = [post(int(p), doomed, {"prompt": "a", "max_tokens": 1})[0] for p in ports]
        subprocess.run([binary, "tenants", "--store", db, "key-revoke", "-"], input=doomed, text=True, check=True,
                       capture_output=True)
        after = [post(int(p), doomed, {"prompt": "a", "max_tokens": 1})[0] for p in ports]
        check(all(s in (200, 429) for s in before), "the key worked on every replica before", before)
        check(all(s == 401 for s in after), "the revoked key fails on every replica", after)

        # Readiness: a frozen replica is taken out of the upstream and put back (deploy/readyz-watch.sh).
        conf = os.path.join(fdir, "nginx", "baichuan.conf")
        frozen_pid, frozen_port = int(replicas[0][0]), replicas[0][1]

        def is_down():
            return any(f"127.0.0.1:{frozen_port} " in line and " down;" in line for line in open(conf))

        demo = open(os.path.join(fdir, "demo.key")).read().strip()
        os.kill(frozen_pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            while not is_down() and time.monotonic() - t0 < 10:
                time.sleep(0.1)
            taken_out = time.monotonic() - t0
            check(is_down(), "a frozen replica is taken out of the upstream", round(taken_out, 2))
            time.sleep(0.5)  # nginx's reload
            via = [post(nport, demo, {"prompt": "b", "max_tokens": 2}, timeout=10)[0] for _ in range(6)]
            check(via == [200] * 6, "requests go to the other replicas meanwhile", via)
        finally:
            os.kill(frozen_pid, signal.SIGCONT)
        t0 = time.monotonic()
        while is_down() and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        print("readiness: taken out after %.1f s, back in %.1f s after it answered" % (taken_out,
                                                                                      time.monotonic() - t0))
        check(not is_down(), "it is put back once ready")

        # No key in any log.
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
        relog.close()
        logs = []
        for root, _, files in os.walk(fdir):
            for f in files:
                if f.endswith(".log"):
                    logs.append(os.path.join(root, f))
        leaked = [p for p in logs for k in list(keys.values()) + [doomed] if k in open(p, errors="replace").read()]
        check(len(logs) >= 5 and not leaked, "no key in any log", (len(logs), leaked))
    finally:
        subprocess.run([FLEET, "down"], env=env, capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", d])
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
