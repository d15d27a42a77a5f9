#!/bin/sh
# pg-temp.sh - a throw-away PostgreSQL 15 server in a directory, on
# 127.0.0.1, for tests, benchmarks and scripts/cluster.sh.
#
#   scripts/pg-temp.sh start DIR PORT   initdb (once), start; prints the URL
#   scripts/pg-temp.sh stop DIR         stops it (fast)
#   scripts/pg-temp.sh url DIR PORT     the URL of its database "consultd"
#
# As root (CI), the server runs as the 'postgres' user that Debian's package
# creates: initdb refuses root.  PG_FSYNC=off trades crash safety of the OS
# for speed (tests: a killed process loses nothing either way).
set -eu
BIN=/usr/lib/postgresql/15/bin
cmd=${1:?start|stop|url}
dir=${2:?directory}
port=${3:-5432}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $cmd in
start)
    [ -x "$BIN/initdb" ] || { echo "pg-temp.sh: $BIN/initdb missing (apt-get install postgresql-15)" >&2; exit 1; }
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$BIN/initdb" -D "$dir/data" -U consultd --auth=trust -E UTF8 --locale=C \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        fresh=1
    fi
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=${PG_FSYNC:-on} -c max_connections=200" \
        start >/dev/null
    if [ "${fresh:-0}" = 1 ]; then
        as_pg "$BIN/createdb" -h 127.0.0.1 -p "$port" -U consultd consultd
    fi
    echo "postgresql://consultd@127.0.0.1:$port/consultd"
    ;;
stop)
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    ;;
url)
    echo "postgresql://consultd@127.0.0.1:$port/consultd"
    ;;
*)
    echo "usage: $0 start|stop|url DIR [PORT]" >&2
    exit 2
    ;;
esac
