#!/bin/sh
# Installs the Debian 12 packages consultd needs, only if some are missing.
#   scripts/deps.sh build   what building and running the server needs
#   scripts/deps.sh test    that plus what the test suite needs
set -eu
build="meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev libmicrohttpd-dev
libsqlite3-dev libpq-dev libjansson-dev libsodium-dev libsoup-3.0-dev libcurl4-openssl-dev
libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
gstreamer1.0-nice libnice-dev"
test_extra="python3 sqlite3 curl clang-format chromium gstreamer1.0-plugins-base-apps gstreamer1.0-x coturn valgrind
iptables iproute2 libnetfilter-queue-dev postgresql-15 postgresql-client-15 haproxy"
want="$build"
[ "${1:-build}" = test ] && want="$build $test_extra"

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js may come from elsewhere (with its own npm, which conflicts with
# Debian's package): only ask Debian for it when there is no npm at all.
if [ "${1:-build}" = test ] && ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
