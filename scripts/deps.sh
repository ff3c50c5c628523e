#!/bin/sh
# Installs the Debian packages a make target needs, if any are missing.
#   scripts/deps.sh build   compiler, cmake, libraries
#   scripts/deps.sh test    the above plus what the tests use (python3-torch, sentencepiece, cmocka, valgrind,
#                           and for the server tests curl, node + npm, chromium, and PostgreSQL 15 for
#                           test_pg_store, which runs a throw-away cluster)
#   scripts/deps.sh fuzz    the build packages plus clang (libFuzzer and the sanitizers) and time
#   scripts/deps.sh all     test and fuzz together, in one apt run (make test)
#   scripts/deps.sh build-tests  the build packages and cmocka: what building the tests needs
# After the set, --plan installs nothing: it prints "none" (nothing is
# missing), "beside" (installing upgrades no compiler, linker, header or build
# tool, so it may run while a build does) or "before" (install before
# building); --no-update then installs without updating the package lists
# again (scripts/test.sh).
set -eu

build_pkgs="gcc libc6-dev make cmake pkg-config libjansson-dev libmicrohttpd-dev libsqlite3-dev libpq-dev libssl-dev"
test_pkgs="$build_pkgs libcmocka-dev python3 python3-numpy python3-torch python3-sentencepiece python3-jsonschema sentencepiece curl valgrind nodejs npm chromium postgresql-15 nginx"

mode=${2:-}
case "$mode" in
"" | --plan | --no-update) ;;
*) echo "usage: $0 build|test|fuzz|all|build-tests [--plan | --no-update]" >&2; exit 2 ;;
esac

case "${1:-build}" in
build) pkgs=$build_pkgs ;;
test) pkgs=$test_pkgs ;;
fuzz) pkgs="$build_pkgs clang time" ;;
all) pkgs="$test_pkgs clang time" ;;
build-tests) pkgs="$build_pkgs libcmocka-dev" ;;
*) echo "usage: $0 build|test|fuzz|all|build-tests [--plan | --no-update]" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    # node and npm may come from another packaging of Node.js (whose nodejs
    # conflicts with Debian's npm): the commands are what the tests need.
    case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    [ "$mode" = --plan ] && echo none
    exit 0
fi

[ "$mode" = --plan ] || echo "installing missing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "error: need root (or sudo) to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
[ "$mode" = --no-update ] || $sudo apt-get update -qq
if [ "$mode" = --plan ]; then
    # An installed package apt would upgrade: "Inst NAME [OLD] (NEW ...)".
    # shellcheck disable=SC2086
    upgrades=$(apt-get -s install --no-install-recommends $missing 2>/dev/null | sed -n 's/^Inst \([^ ]*\) \[.*/\1/p')
    if printf '%s\n' "$upgrades" | grep -Eq '^(gcc|g\+\+|cpp|binutils|libc6|libc-dev-bin|linux-libc-dev|libgcc|make|cmake|pkgconf|pkg-config)|-dev(:|$)'; then
        echo before
    else
        echo beside
    fi
    exit 0
fi
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
