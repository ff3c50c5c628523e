#!/bin/sh
# A fleet on one machine, for a demo or a test: a throw-away PostgreSQL
# cluster (tenants, keys, quotas, the usage ledger), N `baichuan serve`
# replicas on free loopback ports sharing it, and nginx in front of them
# with deploy/nginx/baichuan.conf, and deploy/readyz-watch.sh taking a replica
# that is not ready (/readyz) out of nginx's upstream and putting it back.
#
#   scripts/fleet.sh up N [MODEL]    start (MODEL: default the embedded model)
#   scripts/fleet.sh down            stop everything and delete the state
#   scripts/fleet.sh status          what runs, and where
#
# Everything lives in $FLEET_DIR (default /tmp/baichuan-fleet): the cluster,
# the replicas' logs and pid files, nginx's configuration and logs, and
# demo.key, the key of tenant `demo` (60 requests a minute). PostgreSQL
# refuses to run as root: as root, the cluster runs as the `postgres` user
# (or `nobody`). Needs build/baichuan, PostgreSQL 15 and nginx
# (scripts/deps.sh test installs them). Ports: $FLEET_PORT for nginx
# (default: a free one), printed at the end. $BAICHUAN_BIN: the program
# (default build/baichuan).
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
dir=${FLEET_DIR:-/tmp/baichuan-fleet}
pgbin=/usr/lib/postgresql/15/bin
bin=${BAICHUAN_BIN:-$root/build/baichuan}

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the cluster's owner.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$(cat "$dir/pg.user")" -- "$@"
    else
        "$@"
    fi
}

wait_ready() { # PORT SECONDS [PATH]
    i=0
    while [ "$i" -lt "$(($2 * 10))" ]; do
        curl -sf "http://127.0.0.1:$1${3:-/readyz}" >/dev/null 2>&1 && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

up() {
    n=${1:-}
    model=${2:-}
    case "$n" in '' | *[!0-9]*) echo "usage: $0 up N [MODEL]" >&2; exit 2 ;; esac
    [ -e "$dir/up" ] && { echo "error: a fleet is already up in $dir (scripts/fleet.sh down first)" >&2; exit 1; }
    [ -x "$bin" ] || { echo "error: no $bin (run make first)" >&2; exit 1; }
    for c in "$pgbin/initdb" "$pgbin/pg_ctl" nginx curl; do
        command -v "$c" >/dev/null 2>&1 || { echo "error: $c is missing (scripts/deps.sh test installs it)" >&2; exit 1; }
    done
    rm -rf "$dir"
    mkdir -p "$dir/pg" "$dir/nginx/logs"
    chmod 755 "$dir"
    touch "$dir/up"

    # PostgreSQL: trust on loopback (a throw-away cluster), its socket in $dir.
    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then echo postgres >"$dir/pg.user"; else echo nobody >"$dir/pg.user"; fi
        chown "$(cat "$dir/pg.user")" "$dir/pg"
        as_pg test -w "$dir/pg" || {
            echo "error: user $(cat "$dir/pg.user") cannot enter $dir: put FLEET_DIR in a directory every user can enter" >&2
            exit 1
        }
    fi
    pgport=$(free_port)
    as_pg "$pgbin/initdb" -D "$dir/pg/data" -U baichuan --auth=trust -E UTF8 >"$dir/pg/initdb.log" 2>&1 ||
        { echo "error: initdb failed:" >&2; tail -3 "$dir/pg/initdb.log" >&2; exit 1; }
    as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null ||
        { echo "error: PostgreSQL did not start:" >&2; tail -3 "$dir/pg/postgres.log" >&2; exit 1; }
    echo "$pgport" >"$dir/pg.port"
    as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U baichuan baichuan
    db="postgresql://baichuan@127.0.0.1:$pgport/baichuan"
    echo "$db" >"$dir/db.url"

    "$bin" tenants --store "$db" add demo --rpm 60 --tokens-per-day 1000000 >/dev/null 2>&1
    "$bin" tenants --store "$db" key-create demo >"$dir/demo.key"

    # The replicas.
    : >"$dir/replicas"
    i=1
    while [ "$i" -le "$n" ]; do
        port=$(free_port)
        # shellcheck disable=SC2086
        "$bin" serve ${model:+-m "$model"} --port "$port" --parallel 4 --tenants "$db" --ledger "$db" \
            >"$dir/replica-$i.log" 2>&1 &
        echo "$! $port" >>"$dir/replicas"
        i=$((i + 1))
    done
    while read -r pid port; do
        wait_ready "$port" 60 || { echo "error: replica on port $port did not start: see $dir/replica-*.log" >&2; exit 1; }
    done <"$dir/replicas"

    # nginx, with the deploy configuration's upstream and server blocks.
    lport=${FLEET_PORT:-$(free_port)}
    awk -v replicas="$dir/replicas" -v lport="$lport" '
        /^ *server .*@REPLICA@/ { if (!done) { while ((getline line < replicas) > 0) { split(line, f, " ");
                          printf "    server 127.0.0.1:%s max_fails=1 fail_timeout=10s;\n", f[2] } done = 1 } next }
        /^ *listen .*@LISTEN@/ { printf "    listen 127.0.0.1:%s;\n", lport; next }
        { print }' deploy/nginx/baichuan.conf >"$dir/nginx/baichuan.conf"
    user_line=""
    [ "$(id -u)" -eq 0 ] && user_line="user nobody nogroup;"
    cat >"$dir/nginx/nginx.conf" <<EOF
$user_line
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/logs/error.log;
worker_processes 2;
events { worker_connections 1024; }
http {
    access_log $dir/nginx/logs/access.log;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    include $dir/nginx/baichuan.conf;
}
EOF
    nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
    echo "$lport" >"$dir/nginx.port"
    wait_ready "$lport" 10 /health || { echo "error: nginx did not answer on port $lport: see $dir/nginx/logs" >&2; exit 1; }
    NGINX_RELOAD="nginx -p $dir/nginx -c $dir/nginx/nginx.conf -s reload" \
        deploy/readyz-watch.sh "$dir/nginx/baichuan.conf" 1 </dev/null >/dev/null 2>>"$dir/nginx/logs/readyz-watch.log" &
    echo "$!" >"$dir/watch.pid"
    echo "fleet up: http://127.0.0.1:$lport/ -> $n replicas; database $db"
    echo "tenant demo's key: $dir/demo.key; stop with: scripts/fleet.sh down"
}

down() {
    [ -d "$dir" ] || { echo "no fleet in $dir"; return 0; }
    [ -f "$dir/watch.pid" ] && kill "$(cat "$dir/watch.pid")" 2>/dev/null || true
    [ -f "$dir/nginx/nginx.pid" ] && nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -s quit 2>/dev/null || true
    if [ -f "$dir/replicas" ]; then
        while read -r pid port; do kill -TERM "$pid" 2>/dev/null || true; done <"$dir/replicas"
        while read -r pid port; do
            i=0
            while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 450 ]; do sleep 0.1; i=$((i + 1)); done
            kill -KILL "$pid" 2>/dev/null || true
        done <"$dir/replicas"
    fi
    [ -f "$dir/pg/data/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    echo "fleet down"
}

status() {
    [ -e "$dir/up" ] || { echo "no fleet in $dir"; return 0; }
    echo "nginx: http://127.0.0.1:$(cat "$dir/nginx.port" 2>/dev/null)/"
    echo "database: $(cat "$dir/db.url" 2>/dev/null)"
    while read -r pid port; do
        if kill -0 "$pid" 2>/dev/null; then s=running; else s=stopped; fi
        echo "replica pid $pid port $port: $s"
    done <"$dir/replicas"
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up N [MODEL] | down | status" >&2; exit 2 ;;
esac
