#!/usr/bin/env python3
"""Media under loss, as users see it: headless Chromium on both ends of a
consultation through consultd (or directly, --p2p), inside a network
namespace whose UDP crosses tests/impair/impair.c once per hop.

    sudo bench/network.py --loss 2 --delay-ms 20 --seconds 40
    sudo bench/network.py --loss 1 --delay-ms 20 --rate-kbit 400 --seconds 40
    sudo bench/network.py --loss 2 --delay-ms 20 --p2p

Prints one JSON object: each direction's frame rate, freezes, NACKs and
retransmissions, keyframe requests and keyframes, concealed audio, the
publisher's bitrate and target; and the impairment's own counts.  Needs the
build in build-test (or CONSULTD_BIN, IMPAIR) and root.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
os.environ.setdefault("CONSULTD_BIN", os.path.join(ROOT, "build-test", "consultd"))
os.environ.setdefault("IMPAIR", os.path.join(ROOT, "build-test", "tests", "impair"))

import netlab  # noqa: E402
from harness import Server  # noqa: E402
from mediahelp import live_consultation  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loss", type=float, default=2)
    ap.add_argument("--burst", type=float, default=1)
    ap.add_argument("--delay-ms", type=float, default=20)
    ap.add_argument("--rate-kbit", type=float, default=0)
    ap.add_argument("--queue-ms", type=float, default=200)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--outage-at", type=float, default=0, help="seconds into the window")
    ap.add_argument("--outage-ms", type=float, default=1000)
    ap.add_argument("--p2p", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server-args", default="", help="extra consultd arguments")
    a = ap.parse_args()
    netlab.enter_netns()
    s = Server("--media-ice-loopback", *a.server_args.split())
    try:
        cid, tt, st = live_consultation(s)
        with netlab.Impair(loss=a.loss, burst=a.burst, delay_ms=a.delay_ms, rate_kbit=a.rate_kbit,
                           queue_ms=a.queue_ms, outage_ms=a.outage_ms, seed=a.seed) as imp:
            res = netlab.call(s, cid, {"teacher": tt, "student": st}, a.seconds, a.warmup, a.p2p,
                              outage=imp if a.outage_at else None, outage_at=a.outage_at)
        if not os.environ.get("SHOW_ANSWERS"):
            res.pop("answers", None)
        if not a.outage_at:
            res.pop("timeline", None)
        res["impair"] = imp.counts
        if not a.p2p:
            res["server"] = {l.split()[0][len("consultd_media_"):]: int(l.split()[1])
                             for l in s.get("/metrics").body.splitlines()
                             if l.startswith("consultd_media_") and l.split()[0].endswith("_total")}
        print(json.dumps(res, indent=1))
    finally:
        Server.stop_all()


if __name__ == "__main__":
    main()
