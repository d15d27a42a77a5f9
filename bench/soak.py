#!/usr/bin/env python3
"""Soak: consultations start and end continuously (two at a time) for
--minutes; the server's RSS, threads and fds (consultd plus its media
worker) are sampled after a warm-up and at the end.

  bench/soak.py --minutes 10
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
from harness import Server  # noqa: E402
from run import CLIP, PEER, sample, server_pids  # noqa: E402


def one(s, tid, tt, st, seconds):
    r = s.post("/api/consultations", {"teacher_id": tid}, token=st)
    assert r.status == 201, r
    cid = r.json["id"]
    assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
    ps = []
    for tok in (tt, st):
        ps.append(subprocess.Popen([PEER, "--url", f"{s.url}/whip/consultations/{cid}", "--token", tok,
                                    "--mode", "publish", "--file", CLIP, "--seconds", str(seconds)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ps.append(subprocess.Popen([PEER, "--url", f"{s.url}/whep/consultations/{cid}", "--token", tok,
                                    "--mode", "receive", "--no-decode", "--seconds", str(seconds - 1)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return cid, tt, ps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    a = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "bench", "make-media.sh"), CLIP], check=True)
    s = Server("--media-ice-loopback", "--log-level", "warning", "--request-rate-per-min", "100000",
               "--presence-grace", "86400", "--compose=false")
    admin = s.login("admin")
    pairs = [(2, s.login("teacher1"), s.login("student1")), (3, s.login("teacher2"), s.login("student2"))]
    for tid, tt, _ in pairs:
        s.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"}, token=tt)
    rounds, samples = 0, []
    end = time.time() + a.minutes * 60
    while time.time() < end:
        running = [one(s, tid, tt, st, 6) for tid, tt, st in pairs]
        for cid, tt, ps in running:
            for p in ps:
                p.wait(timeout=60)
            assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
        rounds += 1
        time.sleep(2)  # let rooms and recordings finish
        pids = server_pids(s, admin)
        _, rss, threads, fds = sample(pids)
        samples.append({"t": round(time.time()), "round": rounds, "rss_mb": round(rss / 2**20, 1),
                        "threads": threads, "fds": fds})
        print(json.dumps(samples[-1]), flush=True)
    import re
    restarts = re.search(r"^consultd_media_worker_restarts_total (\d+)", s.get("/metrics").body, re.M).group(1)
    s.stop()
    first = samples[min(2, len(samples) - 1)]  # after warm-up
    last = samples[-1]
    print(json.dumps({"rounds": rounds, "consultations": 2 * rounds, "after_warmup": first, "end": last,
                      "worker_restarts": int(restarts)}))


if __name__ == "__main__":
    main()
