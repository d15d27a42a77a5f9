"""Helpers shared by the media tests: consultations, peers, offers, metrics."""
import json
import os
import re
import subprocess

from harness import Server, wait_for

PEER = os.environ.get("WEBRTC_PEER", os.path.join(os.path.dirname(__file__), "../../build/tests/webrtc-peer"))
T1, T2 = 2, 3
FP = ":".join(["AB"] * 32)


def media_server(*args, **kw):
    return Server("--media-ice-loopback", *args, **kw)


def live_consultation(s, teacher="teacher1", tid=T1, student="student1"):
    tt, st = s.login(teacher), s.login(student)
    assert s.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"}, token=tt).status == 200
    r = s.post("/api/consultations", {"teacher_id": tid}, token=st)
    assert r.status == 201, r
    cid = r.json["id"]
    assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
    return cid, tt, st


def peer(s, kind, cid, token, mode, seconds, min_frames=1, extra=()):
    return subprocess.Popen([PEER, "--url", f"{s.url}/{kind}/consultations/{cid}", "--token", token,
                             "--mode", mode, "--seconds", str(seconds), "--min-frames", str(min_frames),
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    assert lines, (p.returncode, err.decode()[-2000:])
    return p.returncode, json.loads(lines[-1]), err.decode()


def metric(s, name):
    m = re.search(rf"^{name} (\d+)", s.get("/metrics").body, re.M)
    return int(m.group(1)) if m else None


def offer(codecs="VP8", fingerprint=True, ufrag=True):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0"]
    if codecs == "VP8":
        lines += ["m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:0"]
    else:
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 0", "c=IN IP4 0.0.0.0", "a=mid:0"]
    if ufrag:
        lines += ["a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx"]
    if fingerprint:
        lines += [f"a=fingerprint:sha-256 {FP}"]
    lines += ["a=setup:actpass", "a=sendonly", "a=rtcp-mux"]
    lines += ["a=rtpmap:96 VP8/90000"] if codecs == "VP8" else ["a=rtpmap:0 PCMU/8000"]
    return ("\r\n".join(lines) + "\r\n").encode()


def post_sdp(s, path, token, body, ctype="application/sdp"):
    return s.request("POST", path, raw=body, token=token, headers={"Content-Type": ctype})


def worker(s):
    # One login per server: polling must not spend the login budget.
    if getattr(s, "_admin_token", None) is None:
        s._admin_token = s.login("admin")
    return s.get("/api/admin/media-workers", token=s._admin_token).json["workers"][0]


