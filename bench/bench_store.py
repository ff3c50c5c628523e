#!/usr/bin/python3
"""What the shared state costs a request (a program that prints figures, not a
test): the latency of the smallest generation request, an empty prompt with
max_tokens 1, through `baichuan serve` on the default model with

  none        no tenants, no ledger
  sqlite      --tenants FILE.json --ledger FILE.sqlite
  postgresql  --tenants and --ledger on a throw-away local PostgreSQL 15
              cluster (loopback TCP, fsync on; tests/python/test_pg_store.py's)

Requests go one at a time on a fresh connection each; the figures are the
median and the 99th percentile over --requests (default 300) after 20 warm-up
requests. With PostgreSQL a request pays one admission statement before it
runs and one ledger INSERT (its commit) before its reply; the token charge
goes out on another thread.

    bench/bench_store.py --bin build/baichuan [--requests N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from server_util import Server  # noqa: E402
from test_pg_store import Cluster  # noqa: E402


def measure(server, key, n):
    headers = {"Authorization": "Bearer " + key} if key else {}
    body = {"prompt": "", "max_tokens": 1}
    times = []
    for i in range(20 + n):
        t0 = time.perf_counter()
        st, _, _ = server.post("/v1/completions", body, headers=headers)
        dt = time.perf_counter() - t0
        if st != 200:
            raise RuntimeError("status %d" % st)
        if i >= 20:
            times.append(dt * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def throughput(server, key, n, clients):
    """Requests per second with `clients` clients each sending one request
    after another (n in all)."""
    headers = {"Authorization": "Bearer " + key} if key else {}
    body = {"prompt": "", "max_tokens": 1}
    left = [n]
    lock = threading.Lock()
    failed = []

    def client():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            st, _, _ = server.post("/v1/completions", body, headers=headers)
            if st != 200:
                failed.append(st)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise RuntimeError("statuses %s" % sorted(set(failed)))
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bc-bench-store-")
    rows = []
    s = Server(args.bin)
    try:
        rows.append(("none",) + measure(s, None, args.requests) + (throughput(s, None, args.requests, 16),))
    finally:
        s.stop()
    key = "sk-bench-store-0123456789"
    tenants = os.path.join(work, "tenants.json")
    with open(tenants, "w") as f:
        json.dump({"tenants": [{"name": "bench", "keys": [key]}]}, f)
    s = Server(args.bin, "--tenants", tenants, "--ledger", os.path.join(work, "ledger.sqlite"))
    try:
        rows.append(("sqlite",) + measure(s, key, args.requests) + (throughput(s, key, args.requests, 16),))
    finally:
        s.stop()
    pg = Cluster(fsync=True)  # commits as durable as SQLite's synchronous=FULL
    try:
        pg.init()
        run = lambda *a: subprocess.run([args.bin, "tenants", "--store", pg.url, *a], capture_output=True,  # noqa
                                        check=True).stdout.decode().strip()
        run("add", "bench")
        pg_key = run("key-create", "bench")
        s = Server(args.bin, "--tenants", pg.url, "--ledger", pg.url)
        try:
            rows.append(("postgresql",) + measure(s, pg_key, args.requests) + (throughput(s, pg_key, args.requests, 16),))
        finally:
            s.stop()
    finally:
        pg.destroy()
    print("%-12s %12s %12s %14s   (empty prompt, max_tokens 1; latency: %d requests one at a time; "
          "throughput: %d requests from 16 clients)" % ("store", "median ms", "p99 ms", "requests/s", args.requests,
                                                        args.requests))
    for name, med, p99, rps in rows:
        print("%-12s %12.2f %12.2f %14.1f" % (name, med, p99, rps))


if __name__ == "__main__":
    main()
