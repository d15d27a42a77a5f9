#!/bin/sh
# with-postgres.sh CMD [ARGS...] - runs CMD with CONSULTD_TEST_DATABASE set
# to a throw-away PostgreSQL (scripts/pg-temp.sh, a free port on 127.0.0.1),
# and stops that server afterwards, whatever CMD did.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/consultd-pg-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { "$here/../scripts/pg-temp.sh" stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
CONSULTD_TEST_DATABASE=$(PG_FSYNC=off "$here/../scripts/pg-temp.sh" start "$dir" "$port")
export CONSULTD_TEST_DATABASE
"$@"
