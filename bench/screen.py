#!/usr/bin/env python3
"""What a shared screen adds to a consultation's server CPU.

N consultations, each with both cameras published (the pre-encoded clip,
bench/make-media.sh) and received, recorded; with --screen each also has
the teacher's screen published (the same clip, as a stand-in: a real
screen sends fewer frames) and received by the student: one more
publisher, one more relay, one more recording.  The server's CPU (consultd
and its media workers, from /proc) is sampled over a window that starts
once every receiver has its first frame.  Alternate the two:

  bench/screen.py --n 4 --seconds 20            (cameras only)
  bench/screen.py --n 4 --seconds 20 --screen   (cameras and a screen)
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import CLIP, PEER, TICK, Reader, online_pairs, sample, server_pids  # noqa: E402
from harness import Server  # noqa: E402


def run(n, seconds, screen):
    s = Server("--media-ice-loopback", "--log-level", "warning", "--login-ip-per-min", "100000",
               "--request-rate-per-min", "100000")
    admin = s.login("admin")
    peers = []
    left = str(seconds + 90)
    for tid, tt, st in online_pairs(s, admin, n):
        cid = s.post("/api/consultations", {"teacher_id": tid}, token=st).json["id"]
        assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
        legs = [("whip", "", tt), ("whip", "", st), ("whep", "", tt), ("whep", "", st)]
        if screen:
            legs += [("whip", "?stream=screen", tt), ("whep", "?stream=screen", st)]
        for kind, q, tok in legs:
            mode = "publish" if kind == "whip" else "receive"
            args = [PEER, "--mode", mode, "--seconds", left, "--retry-busy", "10",
                    "--url", f"{s.url}/{kind}/consultations/{cid}{q}", "--token", tok]
            args += ["--file", CLIP] if mode == "publish" else ["--no-decode"]
            pr = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            peers.append((mode, pr, Reader(pr)))
    deadline = time.time() + 60
    for mode, _, rd in peers:
        if mode == "receive":
            rd.joined.wait(max(0.0, deadline - time.time()))
    time.sleep(3)
    pids = server_pids(s, admin)
    c0 = sample(pids)[0]
    w0 = time.monotonic()
    time.sleep(seconds)
    c1, rss, threads, _ = sample(pids)
    w1 = time.monotonic()
    for _, pr, _ in peers:
        if pr.poll() is None:
            pr.send_signal(signal.SIGTERM)
    joined = 0
    for mode, pr, rd in peers:
        pr.wait(timeout=60)
        rd.thread.join(timeout=10)
        joined += mode == "receive" and rd.joined.is_set()
    s.stop()
    cpu = 100.0 * (c1 - c0) / TICK / (w1 - w0)
    return {"n": n, "screen": screen, "cpu_pct": round(cpu, 2), "cpu_per_consultation": round(cpu / n, 2),
            "receivers_joined": joined, "receivers": sum(m == "receive" for m, _, _ in peers),
            "rss_mb": round(rss / 2**20, 1), "threads": threads}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--screen", action="store_true")
    a = ap.parse_args()
    print(json.dumps(run(a.n, a.seconds, a.screen)))


if __name__ == "__main__":
    main()
