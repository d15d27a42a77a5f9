#!/usr/bin/env python3
"""Interop with a WebRTC stack nobody here wrote: headless Chromium (Debian's
chromium, libwebrtc inside) publishes over WHIP and receives over WHEP from a
plain JavaScript page, against the project's GStreamer peer on the other
side, in both directions."""
import json
import os
import subprocess

from harness import Server, run, test
from mediahelp import live_consultation, peer, result

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = os.path.join(HERE, "..", "browser")


def chromium(base, cid, token, seconds):
    p = subprocess.run(["node", os.path.join(BROWSER, "interop.mjs"),
                        json.dumps({"base": base, "cid": cid, "token": token, "seconds": seconds})],
                       capture_output=True, timeout=seconds + 120, cwd=BROWSER)
    lines = [l for l in p.stdout.decode().splitlines() if l.startswith("{")]
    assert lines, (p.returncode, p.stderr.decode()[-3000:])
    return json.loads(lines[-1])


@test
def chromium_and_gstreamer_both_directions():
    s = Server("--media-ice-loopback")
    cid, tt, st = live_consultation(s)
    # The GStreamer peer is the student: it publishes and receives.
    gst_pub = peer(s, "whip", cid, st, "publish", 30)
    gst_recv = peer(s, "whep", cid, st, "receive", 24, 20)
    # Chromium is the teacher: it publishes and receives.
    res = chromium(s.url, cid, tt, 18)
    assert "error" not in res, res
    assert res["whip"] == 201 and res["whep"] == 201, res
    assert res["framesSent"] > 20, res
    assert res["framesDecoded"] >= 20, f"Chromium decoded too little of the GStreamer peer: {res}"
    assert res["videoWidth"] > 0 and res["currentTime"] > 0, res
    assert res["audioPackets"] > 20, res
    rc, got, err = result(gst_recv)
    assert rc == 0 and got["video_frames"] >= 20, f"GStreamer decoded too little of Chromium: {got} {err[-1500:]}"
    assert got["audio_buffers"] > 20, got
    result(gst_pub)


if __name__ == "__main__":
    run()
