#!/usr/bin/python3
"""`baichuan serve` with JavaScript clients: the official `openai` npm package
(tests/node/openai_client.mjs; tool calling in tests/node/tools_client.mjs,
its arguments checked with Ajv; a LoRA adapter, tests/node/lora_client.mjs) and the web page in headless Chromium driven
by playwright-core (tests/node/web_page.mjs).

The npm packages are installed at test time into WORK/node_modules (npm
install --no-save; nothing is committed). Needs node, npm and /usr/bin/chromium
(scripts/deps.sh test installs them).

    test_server_node.py --bin build/baichuan --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import bc_testlib
import test_server_lora
from server_util import ROOT, Server

# Versions that run on Debian 12's Node.js 18 (newer openai and playwright-core
# releases need Node 20 or 22).
PACKAGES = {"openai": "openai@4", "playwright-core": "playwright-core@~1.61", "ajv": "ajv@8"}


def install(work):
    if all(os.path.isfile(os.path.join(work, "node_modules", p, "package.json")) for p in PACKAGES):
        return True
    r = subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", work] +
                       list(PACKAGES.values()),
                       capture_output=True, timeout=600)
    if r.returncode != 0:
        print(r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    return r.returncode == 0


def run_node(t, work, script, *args):
    # The scripts run from WORK so that their imports find WORK/node_modules.
    dst = os.path.join(work, script)
    shutil.copy(os.path.join(ROOT, "tests", "node", script), dst)
    r = subprocess.run(["node", dst, *args], capture_output=True, timeout=300)
    out = r.stdout.decode(errors="replace")
    print(out, end="")
    if r.returncode != 0:
        print(r.stderr.decode(errors="replace"))
    t.check("%s exits 0" % script, r.returncode == 0 and "0 failed" in out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t = bc_testlib.Tally()
    if not t.check("npm install openai playwright-core ajv", install(args.work)):
        return t.finish()
    s = Server(args.bin, "--parallel", "2")
    try:
        run_node(t, args.work, "openai_client.mjs", "http://127.0.0.1:%d/v1" % s.port)
        run_node(t, args.work, "tools_client.mjs", "http://127.0.0.1:%d/v1" % s.port)
        run_node(t, args.work, "web_page.mjs", "http://127.0.0.1:%d/" % s.port)
    finally:
        t.check("server exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    # One adapter (r 4 on every module, written as test_server_lora writes them).
    with open(os.path.join(ROOT, "models", "default", "config.json")) as f:
        cfg = json.load(f)
    adapter = os.path.join(args.work, "adapter_a")
    test_server_lora.make_adapter(adapter, cfg, list(test_server_lora.MODULES), 4, 8, 7)
    s = Server(args.bin, "--lora", "a=" + adapter)
    try:
        run_node(t, args.work, "lora_client.mjs", "http://127.0.0.1:%d/v1" % s.port)
    finally:
        t.check("server with an adapter exits 0", s.stop() == 0, "\n".join(s.log[-10:]))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
