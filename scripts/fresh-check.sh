#!/bin/sh
# What a new machine sees: builds a clean Debian 12 root with debootstrap
# from the Debian archive, copies this checkout's committed tree (HEAD) into
# it, and runs the README's two commands there: scripts/run.sh (until the
# server answers /healthz) and scripts/test.sh, which ends with its summary
# line "N passed, N failed".  Not part of CI: it downloads a system and runs
# the whole suite, which takes the better part of an hour.
#
#   sudo scripts/fresh-check.sh            (FRESH_ROOT, DEBIAN_MIRROR to override)
#
# The root is kept between runs for speed only when FRESH_KEEP=1; by
# default every run starts from debootstrap, as a new machine would.
set -eu
cd "$(dirname "$0")/.."
root=${FRESH_ROOT:-/var/tmp/consultd-fresh}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "fresh-check: run as root (debootstrap, chroot)" >&2; exit 2; }
if ! command -v debootstrap >/dev/null; then
    apt-get update && apt-get install -y debootstrap
fi

cleanup() {
    for m in dev/pts dev sys proc; do
        mountpoint -q "$root/$m" && umount -l "$root/$m"
    done
    return 0
}
trap cleanup EXIT INT TERM

if [ "${FRESH_KEEP:-0}" != 1 ] || [ ! -x "$root/bin/sh" ]; then
    cleanup
    rm -rf "$root"
    mkdir -p "$root"
    # minbase plus what a Debian 12 server has before anyone installs
    # anything for consultd: git is how the README's reader got the tree.
    debootstrap --variant=minbase --include=ca-certificates,git,sudo bookworm "$root" "$mirror"
fi
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network that reaches the archives through a TLS proxy has its CA in
# /usr/local/share/ca-certificates: a machine in that network has it too.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
fi
echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list"
rm -rf "$root/src"
mkdir -p "$root/src"
git archive HEAD | tar -x -C "$root/src"

chroot "$root" /usr/bin/env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    /bin/sh -ec '
cd /src
# Command one: builds and serves; checked by /healthz, then stopped.
scripts/run.sh --listen 127.0.0.1:18080 > /tmp/run.log 2>&1 &
pid=$!
i=0
until bash -c "exec 3<>/dev/tcp/127.0.0.1/18080 && printf \"GET /healthz HTTP/1.0\r\n\r\n\" >&3 && head -1 <&3 | grep -q \" 200 \"" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 900 ] || ! kill -0 $pid 2>/dev/null; then
        echo "fresh-check: scripts/run.sh did not serve:"; tail -30 /tmp/run.log; exit 1
    fi
    sleep 1
done
grep -q "admin" /tmp/run.log && echo "fresh-check: scripts/run.sh serves, demo accounts printed"
kill $pid; wait $pid || true
# Command two: the tests; the last line is the summary.
scripts/test.sh 2>&1 | tee /tmp/test.log | tail -1
'
