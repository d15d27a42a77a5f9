#!/bin/sh
# Checks that everything the build, the tests and the benchmarks use is on
# this machine, and names the Debian package of whatever is missing.
# scripts/test.sh runs it right after scripts/deps.sh, so that a package
# deps.sh forgot fails here, by name, instead of as a test that cannot
# find an element (it happened: timeoverlay, in gstreamer1.0-x).
#   scripts/check-deps.sh [build|test]
set -u
want="${1:-test}"
missing=""

need_bin() { # BINARY PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing="$missing\n  $1 (binary): apt-get install $2"
}
need_pc() { # PKG-CONFIG-MODULE PACKAGE
    pkg-config --exists "$1" 2>/dev/null || missing="$missing\n  $1 (library): apt-get install $2"
}
need_element() { # ELEMENT PACKAGE
    gst-inspect-1.0 "$1" >/dev/null 2>&1 || missing="$missing\n  $1 (GStreamer element): apt-get install $2"
}

need_bin meson meson
need_bin ninja ninja-build
need_bin pkg-config pkg-config
need_bin cc gcc
for m in glib-2.0 gio-2.0 gio-unix-2.0; do need_pc $m libglib2.0-dev; done
need_pc libmicrohttpd libmicrohttpd-dev
need_pc sqlite3 libsqlite3-dev
need_pc libpq libpq-dev
need_pc jansson libjansson-dev
need_pc libsodium libsodium-dev
need_pc libsoup-3.0 libsoup-3.0-dev
need_pc libcurl libcurl4-openssl-dev
need_pc nice libnice-dev
for m in gstreamer-1.0 gstreamer-app-1.0; do need_pc $m libgstreamer1.0-dev; done
for m in gstreamer-rtp-1.0 gstreamer-sdp-1.0 gstreamer-video-1.0 gstreamer-pbutils-1.0; do
    need_pc $m libgstreamer-plugins-base1.0-dev
done
need_pc gstreamer-webrtc-1.0 libgstreamer-plugins-bad1.0-dev
# What the media worker and the recorder build at run time.
need_bin gst-inspect-1.0 gstreamer1.0-tools
if command -v gst-inspect-1.0 >/dev/null 2>&1; then
    for e in webrtcbin dtlssrtpenc dtlssrtpdec srtpenc srtpdec; do need_element $e gstreamer1.0-plugins-bad; done
    need_element nicesrc gstreamer1.0-nice
    for e in rtpbin rtpvp8depay rtpopusdepay rtph264depay matroskademux webmmux vp8dec vp8enc; do
        need_element $e gstreamer1.0-plugins-good
    done
    for e in opusparse; do need_element $e gstreamer1.0-plugins-bad; done
    for e in opusdec opusenc decodebin videoconvert audioconvert compositor appsrc filesrc \
             videotestsrc audiotestsrc; do
        need_element $e gstreamer1.0-plugins-base
    done
fi
if [ "$want" = test ]; then
    need_bin python3 python3
    need_bin sqlite3 sqlite3
    need_bin curl curl
    need_bin clang-format clang-format
    need_bin chromium chromium
    need_bin node nodejs
    need_bin npm npm
    need_bin gst-launch-1.0 gstreamer1.0-tools
    need_bin gst-discoverer-1.0 gstreamer1.0-plugins-base-apps
    need_bin turnserver coturn
    need_bin valgrind valgrind
    need_bin iptables-legacy iptables
    need_bin unshare util-linux
    need_bin ip iproute2
    need_pc libnetfilter_queue libnetfilter-queue-dev
    # PostgreSQL and haproxy, started by the tests themselves (issue 22)
    need_bin /usr/lib/postgresql/15/bin/initdb postgresql-15
    need_bin psql postgresql-client-15
    need_bin haproxy haproxy
    if command -v gst-inspect-1.0 >/dev/null 2>&1; then
        # bench/make-media.sh's clip and the test peer
        need_element timeoverlay gstreamer1.0-x
        for e in rtpvp8pay rtpopuspay; do need_element $e gstreamer1.0-plugins-good; done
    fi
fi
if [ -n "$missing" ]; then
    printf "check-deps: missing:%b\n" "$missing" >&2
    exit 1
fi
echo "check-deps: everything the $want needs is here" >&2
