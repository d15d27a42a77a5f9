#!/bin/bash
# cluster.sh - a local cluster with one command: PostgreSQL in
# ./data/cluster/pg (initdb once, a port of its own on 127.0.0.1), three
# consultd nodes (n0..n2 on 127.0.0.1:8081..8083, each with its own data
# dir for recordings) and haproxy in front on http://127.0.0.1:8080.  The
# demo accounts are printed; Ctrl-C stops everything it started.  A node
# that stops by itself with status 0 (drained: consultd drain, the admin
# API, SIGUSR1) is started again with the binary build/consultd holds now,
# as a service manager's Restart= would: scripts/rolling-upgrade.sh drains
# them one by one after a rebuild.
#   scripts/cluster.sh [EXTRA CONSULTD FLAGS...]
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
scripts/deps.sh build
for p in postgresql-15 haproxy; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="${need:-} $p"
done
if [ -n "${need:-}" ]; then
    echo "cluster: installing$need" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $need
fi
[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized
ninja -C build

dir=$top/data/cluster
mkdir -p "$dir"
pgport=${PG_PORT:-55433}
url=$(scripts/pg-temp.sh start "$dir/pg" "$pgport")
pids=""
stop() {
    trap - INT TERM EXIT
    echo "cluster: stopping" >&2
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    scripts/pg-temp.sh stop "$dir/pg"
}
trap stop INT TERM EXIT

# Runs node I on PORT until it fails or is told to stop; a clean exit of
# its own (drained) starts it again.
run_node() {
    local i=$1 port=$2 child rc
    while :; do
        build/consultd --demo --database "$url" --node-id "n$i" --listen "127.0.0.1:$port" \
            --data-dir "$dir/n$i" --trusted-proxies 127.0.0.1 \
            --node-url "http://127.0.0.1:$port" --public-url http://127.0.0.1:8080 \
            "$@" 2>>"$dir/n$i/consultd.log" &
        child=$!
        trap 'kill $child 2>/dev/null; wait $child; exit 0' TERM INT
        rc=0
        wait $child || rc=$?
        trap - TERM INT
        [ $rc -eq 0 ] || return $rc
        echo "cluster: n$i drained and stopped; starting it again" >&2
    done
}

nodes=""
for i in 0 1 2; do
    port=$((8081 + i))
    mkdir -p "$dir/n$i"
    run_node $i $port "$@" &
    pids="$pids $!"
    # One after the other: the first migrates and seeds the demo accounts.
    n=0
    until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
        n=$((n + 1))
        [ $n -gt 300 ] && { echo "cluster: n$i did not start; see $dir/n$i/consultd.log" >&2; exit 1; }
        sleep 0.1
    done
    nodes="$nodes n$i=127.0.0.1:$port"
done
# shellcheck disable=SC2086
scripts/haproxy-cfg.sh 127.0.0.1:8080 $nodes >"$dir/haproxy.cfg"
haproxy -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.log" &
pids="$pids $!"
grep -h -A3 'DEMO MODE' "$dir/n0/consultd.log" >&2 || true
cat >&2 <<MSG
cluster: http://127.0.0.1:8080 (haproxy) -> n0 :8081, n1 :8082, n2 :8083
         PostgreSQL: $url
         logs: $dir/n*/consultd.log, $dir/haproxy.log; Ctrl-C stops all
MSG
wait
