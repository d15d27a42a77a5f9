#!/bin/sh
# Builds consultd and starts it on the embedded default: SQLite in ./data,
# demo accounts (printed at start), http://127.0.0.1:8080.  Extra arguments
# go to consultd (e.g. --listen 0.0.0.0:8080).
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh build
[ -f build/build.ninja ] || meson setup build --buildtype=debugoptimized
ninja -C build
exec build/consultd --demo "$@"
