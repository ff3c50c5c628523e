#!/bin/sh
# Readiness for open-source nginx, which has passive health checks only: every
# INTERVAL seconds (default 1) GET /readyz on each replica listed in the
# upstream of CONF (the `server HOST:PORT ...;` lines), mark a replica that is
# not ready (503, or no answer within 1 s) `down`, put it back once it is
# ready, and reload nginx when that changes. When no replica is ready (a
# database all of them share is down) every one stays in: each answers 503
# with Retry-After itself, which beats nginx's "no live upstreams".
#
#   deploy/readyz-watch.sh /etc/nginx/conf.d/baichuan.conf [INTERVAL]
#
# $NGINX_RELOAD: the reload command (default `nginx -s reload`). Logs a line
# per change on stderr. scripts/fleet.sh runs one for its fleet.
set -u

conf=${1:?usage: readyz-watch.sh CONF [INTERVAL]}
interval=${2:-1}
reload=${NGINX_RELOAD:-nginx -s reload}

# The replicas' HOST:PORT, in the file's order.
replicas() {
    sed -n 's/^[[:space:]]*server[[:space:]][[:space:]]*\([A-Za-z0-9._-]*:[0-9][0-9]*\)[[:space:];].*/\1/p' "$conf"
}

# Marks HOST:PORT down (1) or up (0) in $conf: 0 when the line changed.
mark() {
    addr=$(printf '%s' "$1" | sed 's/\./\\./g') # a regular expression: dots escaped
    want=$2
    line=$(grep -E "^[[:space:]]*server[[:space:]]+${addr}[[:space:];]" "$conf" | head -1)
    case "$line" in
    *" down;"*) is=1 ;;
    *) is=0 ;;
    esac
    [ "$is" = "$want" ] && return 1
    if [ "$want" = 1 ]; then
        sed -i -E "s/^([[:space:]]*server[[:space:]]+${addr}([[:space:]][^;]*)?);/\1 down;/" "$conf"
    else
        sed -i -E "s/^([[:space:]]*server[[:space:]]+${addr}([[:space:]][^;]*)?) down;/\1;/" "$conf"
    fi
    return 0
}

while :; do
    ready=""
    not_ready=""
    for addr in $(replicas); do
        if curl -sf -m 1 "http://$addr/readyz" >/dev/null 2>&1; then
            ready="$ready $addr"
        else
            not_ready="$not_ready $addr"
        fi
    done
    changed=0
    if [ -z "$ready" ]; then
        for addr in $not_ready; do mark "$addr" 0 && changed=1; done
        [ "$changed" = 1 ] && echo "readyz-watch: no replica is ready: all kept in (each sheds with 503)" >&2
    else
        for addr in $ready; do mark "$addr" 0 && changed=1 && echo "readyz-watch: $addr ready: back in" >&2; done
        for addr in $not_ready; do mark "$addr" 1 && changed=1 && echo "readyz-watch: $addr not ready: taken out" >&2; done
    fi
    [ "$changed" = 1 ] && $reload
    sleep "$interval"
done
