#!/usr/bin/env python3
"""The recording store (issue 24): upload throughput and CPU, and the time
from a consultation's end to its recordings being ready, local against s3.

  WEBRTC_PEER=build-test/tests/webrtc-peer CONSULTD_BIN=build-test/consultd \\
      bench/store.py [--mb 256] [--runs 3] [--seconds 20]

  - upload: consultd-objects put of an MB-megabyte file (random bytes) to
    s3rver (npm, on loopback; tests/browser/node_modules) as one PUT and as
    a multipart upload (16 MiB parts), and to a dir: store; wall time, the
    uploader's CPU (its rusage) and s3rver's (from /proc), RUNS times each;
  - ready: RUNS consultations of SECONDS of media both ways (webrtc-peer
    publishing its test pattern), alternating recordings-store = local and
    s3://, ended by the teacher while both still publish; the time from that
    POST .../end to both participants' recordings being ready (the API
    polled every 50 ms), and the files' bytes per recorded second.
Prints one JSON document; docs/benchmarks.md quotes it.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
from harness import Server  # noqa: E402
from mediahelp import live_consultation, peer  # noqa: E402
from test_store import KEYS, OBJECTS, S3, recordings  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def put(s3, where, path, part_size):
    env = {**os.environ, **KEYS, "CONSULTD_RECORDINGS_STORE": where,
           "CONSULTD_S3_ENDPOINT": f"http://127.0.0.1:{s3.port}",
           "CONSULTD_S3_PART_SIZE": str(part_size)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = proc_cpu(s3.proc.pid)
    t0 = time.monotonic()
    p = subprocess.run([OBJECTS, "put", path, f"bench/{os.path.basename(path)}"], env=env,
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1].startswith("ok "), p.stdout + p.stderr
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"seconds": round(wall, 2), "uploader_cpu_s": round(cpu, 2),
            "store_cpu_s": round(proc_cpu(s3.proc.pid) - c0, 2)}


def uploads(mb, runs):
    s3 = S3()
    shared = tempfile.mkdtemp(prefix="consultd-bench-dir-")
    path = os.path.join(s3.dir, "big.webm")
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    out = {"megabytes": mb}
    try:
        for name, where, part in (("s3_one_put", s3.where, 1 << 40),
                                  ("s3_multipart_16MiB", s3.where, 16 << 20),
                                  ("dir", f"dir:{shared}", 1 << 40)):
            rows = [put(s3, where, path, part) for _ in range(runs)]
            best = min(rows, key=lambda r: r["seconds"])
            out[name] = {"runs": rows, "MB_per_s_best": round(mb / best["seconds"], 1),
                         "uploader_cpu_s_per_GB": round(
                             1024 * sum(r["uploader_cpu_s"] for r in rows) / runs / mb, 2)}
    finally:
        s3.stop()
        subprocess.run(["rm", "-rf", shared])
    return out


def end_to_ready(runs, seconds):
    s3 = S3()
    out = {"local": [], "s3": [], "bytes_per_recorded_s": []}
    try:
        for i in range(2 * runs):
            kind = "local" if i % 2 == 0 else "s3"
            args = ["--media-ice-loopback", "--compose=false", "--log-level", "warning"]
            if kind == "s3":
                args += s3.args()
            s = Server(*args, env=s3.env)
            cid, tt, st = live_consultation(s)
            # The teacher ends it while both still publish, as in a call.
            pubs = [peer(s, "whip", cid, tok, "publish", seconds + 60) for tok in (tt, st)]
            t0 = time.monotonic()
            while len([x for x in recordings(s, cid, st).values() if x["state"] == "recording"]) < 2:
                assert time.monotonic() - t0 < 60, "recordings did not start"
                time.sleep(0.1)
            time.sleep(seconds)
            ended = time.monotonic()
            assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
            while True:
                recs = recordings(s, cid, st)
                if len(recs) == 2 and all(x["state"] == "ready" for x in recs.values()):
                    break
                if time.monotonic() - ended > 120:
                    raise AssertionError(recs)
                time.sleep(0.05)
            out[kind].append(round(time.monotonic() - ended, 2))
            out["bytes_per_recorded_s"] += [round(x["size"] / x["duration_seconds"])
                                            for x in recs.values()]
            for p in pubs:
                p.kill()
                p.wait()
            s.stop()
    finally:
        s3.stop()
        Server.stop_all()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    a = ap.parse_args()
    res = {"upload": uploads(a.mb, a.runs), "end_to_ready_s": end_to_ready(a.runs, a.seconds)}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
