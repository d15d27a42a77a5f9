#!/usr/bin/env python3
"""Interop with a WebRTC stack nobody here wrote: headless Chromium (Debian's
chromium, libwebrtc inside) publishes over WHIP and receives over WHEP from a
plain JavaScript page, against the project's GStreamer peer on the other
side, in both directions."""
import base64
import shutil
import hashlib
import hmac
import os
import socket
import subprocess
import tempfile
import time

from harness import Server, browser_script, run, test
from mediahelp import live_consultation, offer as open_offer, peer, result


def chromium(base, cid, token, seconds, relay_only=False):
    return browser_script("interop.mjs", {"base": base, "cid": cid, "token": token,
                                          "seconds": seconds, "relayOnly": relay_only},
                          seconds + 120)


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


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@test
def chromium_through_turn_only():
    """A browser that may only use TURN relay candidates (a school network
    that blocks direct UDP, simulated with iceTransportPolicy "relay")
    publishes and receives through a real TURN server (coturn on loopback)
    with the credential consultd minted for it from /api/ice-servers; the
    same servers come as Link headers on the WHIP answer.  coturn checks the
    credential against the shared secret, so a wrong one fails the test."""
    secret = "turn-test-secret"
    tport = free_port(socket.SOCK_STREAM)
    logdir = tempfile.mkdtemp(prefix="coturn-")
    turn = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={tport}",
         "--relay-ip=127.0.0.1", "--min-port=49400", "--max-port=49500",
         "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=consultd.test",
         "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
         f"--log-file={logdir}/turn.log", "--simple-log", f"--pidfile={logdir}/turn.pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = Server("--media-ice-loopback", "--media-turn", f"turn:127.0.0.1:{tport}?transport=udp",
                   "--media-turn-secret", secret, "--media-turn-ttl", "600")
        cid, tt, st = live_consultation(s)
        ice = s.get("/api/ice-servers", token=tt)
        assert ice.status == 200 and ice.header("Cache-Control") == "no-store", ice
        srv = ice.json["ice_servers"]
        assert srv[0]["urls"] == [f"turn:127.0.0.1:{tport}?transport=udp"], srv
        user, cred = srv[0]["username"], srv[0]["credential"]
        expires, uid = user.split(":")
        assert 550 < int(expires) - time.time() <= 600 and int(uid) == 2, user
        want = base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()
        assert cred == want, (cred, want)
        gst_pub = peer(s, "whip", cid, st, "publish", 30)
        gst_recv = peer(s, "whep", cid, st, "receive", 24, 20)
        res = chromium(s.url, cid, tt, 14, relay_only=True)
        assert "error" not in res, res
        assert res["whip"] == 201 and res["whep"] == 201, res
        assert res["pubCandidate"] == "relay" and res["subCandidate"] == "relay", res
        assert res["framesDecoded"] >= 20 and res["audioPackets"] > 20, res
        rc, got, err = result(gst_recv)
        assert rc == 0 and got["video_frames"] >= 20, f"nothing of Chromium came through TURN: {got}"
        result(gst_pub)
        # The answer told a standard client the same, as a Link header.
        r = s.request("POST", f"/whip/consultations/{cid}", raw=open_offer(), token=tt,
                      headers={"Content-Type": "application/sdp"})
        assert r.status == 201, r
        links = [v for k, v in r.headers if k.lower() == "link"]
        assert any(f"<turn:127.0.0.1:{tport}?transport=udp>; rel=\"ice-server\"" in l and
                   'credential-type="password"' in l and "username=" in l for l in links), links
    finally:
        turn.terminate()
        turn.wait(10)
        shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    run()
