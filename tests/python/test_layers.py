#!/usr/bin/env python3
"""scripts/check_layers against small trees whose faults are known by construction.

Each case writes a few C files into a throw-away project (its own scripts/layers),
compiles them with the system compiler into the object layout CMake uses
(build/CMakeFiles/baichuan.dir/src/<folder>/<file>.c.o), runs the checker and
expects it to pass or to fail naming the fault: a lower layer calling up, two
files calling each other, a ring through a header, a program using an internal
symbol or header. Then the project's own tree must pass (with --build, the
tree being tested).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check_layers")

failures = []


def make_tree(files, layers="low < high < cli"):
    root = tempfile.mkdtemp(prefix="layers_")
    os.makedirs(os.path.join(root, "scripts"))
    os.makedirs(os.path.join(root, "include"))
    with open(os.path.join(root, "scripts", "layers"), "w") as f:
        f.write("# test rule\n" + layers + "\n")
    with open(os.path.join(root, "include", "pub.h"), "w") as f:
        f.write("int bc_public(void);\n")
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    for rel in files:
        if not rel.endswith(".c"):
            continue
        target = "baichuan_cli.dir" if rel.startswith("cli/") else "baichuan.dir"
        obj = os.path.join(root, "build", "CMakeFiles", target, rel + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        subprocess.run(["cc", "-c", "-I", os.path.join(root, "src"), "-I", os.path.join(root, "include"),
                        os.path.join(root, rel), "-o", obj], check=True)
    return root


def run_check(root, build=None):
    cmd = [sys.executable, CHECK, "--root", root, "--build", build or os.path.join(root, "build")]
    return subprocess.run(cmd, capture_output=True, text=True)


def case(name, files, expect_ok, must_say=(), layers="low < high < cli"):
    root = make_tree(files, layers)
    try:
        res = run_check(root)
        out = res.stdout + res.stderr
        ok = (res.returncode == 0) == expect_ok and all(s in out for s in must_say)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {res.returncode}")
        if not ok:
            failures.append(name)
            print(out)
    finally:
        shutil.rmtree(root)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="the project's build tree, checked last")
    args = ap.parse_args()

    case("calls go down", {
        "src/low/a.h": "int bc__a(void);\n",
        "src/low/a.c": '#include "low/a.h"\nint bc__a(void) { return 1; }\n',
        "src/high/b.c": '#include "low/a.h"\nint bc__b(void);\nint bc__b(void) { return bc__a(); }\n',
        "cli/main.c": '#include "pub.h"\nint main(void) { return bc_public(); }\n',
        "src/high/pub.c": '#include "pub.h"\nint bc_public(void) { return 0; }\n',
    }, True, ["src/high/", "uses: low", "every dependency goes down"])

    case("a lower layer calls up", {
        "src/low/a.c": "int bc__b(void);\nint bc__a(void);\nint bc__a(void) { return bc__b(); }\n",
        "src/high/b.c": "int bc__b(void);\nint bc__b(void) { return 2; }\n",
    }, False, ["src/low/a -> src/high/b: calls bc__b", "low/ reaches up into high/"])

    case("two files call each other", {
        "src/low/a.c": "int bc__c(int);\nint bc__a(int);\nint bc__a(int n) { return n ? bc__c(n - 1) : 0; }\n",
        "src/low/c.c": "int bc__a(int);\nint bc__c(int);\nint bc__c(int n) { return n ? bc__a(n - 1) : 1; }\n",
    }, False, ["a ring of modules", "src/low/a -> src/low/c (calls bc__c)", "src/low/c -> src/low/a (calls bc__a)"])

    case("a ring of three through a header", {
        "src/low/a.h": "struct bc__t { int x; };\nint bc__a(void);\n",
        "src/low/a.c": "int bc__b2(void);\nint bc__a(void);\nint bc__a(void) { return bc__b2(); }\n",
        "src/low/b.c": "int bc__c2(void);\nint bc__b2(void);\nint bc__b2(void) { return bc__c2(); }\n",
        "src/low/c.c": '#include "low/a.h"\nint bc__c2(void);\nint bc__c2(void) { struct bc__t t = {3}; return t.x; }\n',
    }, False, ["a ring of modules", '#include "low/a.h"'])

    case("the program uses an internal symbol", {
        "src/low/a.c": "int bc__a(void);\nint bc__a(void) { return 1; }\n",
        "cli/main.c": "int bc__a(void);\nint main(void) { return bc__a(); }\n",
    }, False, ["cli/main -> src/low/a: calls bc__a", "only the public bc_ API"])

    case("the program includes a library header", {
        "src/low/a.h": "#define BC__X 1\n",
        "src/low/a.c": '#include "low/a.h"\nint bc_a(void);\nint bc_a(void) { return BC__X; }\n',
        "cli/main.c": '#include "low/a.h"\nint main(void) { return BC__X; }\n',
    }, False, ["only through include/baichuan.h"])

    case("a folder that is no layer", {
        "src/low/a.c": "int bc__a(void);\nint bc__a(void) { return 1; }\n",
        "src/stray/s.c": "int bc__s(void);\nint bc__s(void) { return 1; }\n",
    }, False, ["'stray' is not a layer"])

    res = run_check(ROOT, args.build)
    print(res.stdout, end="")
    if res.returncode != 0:
        print(res.stderr, end="")
        failures.append("the project's own tree")
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    print("all cases as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
