#!/usr/bin/env python3
"""What the server keeps per consultation, by allocation: consultd and its
media worker run under valgrind's memcheck while consultations (relay and
both recordings, one at a time) start and end; after round --first and after
the last round each process is asked through vgdb for its heap ("leak_check
full reachable increased"), and the growth between the two is printed per
process with the allocation sites that grew.  RSS (bench/soak.py) cannot
tell a leak from an allocator settling; this can.

  bench/leak.py --rounds 10          (needs valgrind; about 5 minutes)
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY = re.compile(r"(definitely lost|indirectly lost|possibly lost|still reachable): "
                     r"([\d,]+) \(([+-][\d,]+)\) bytes in ([\d,]+) \(([+-][\d,]+)\) blocks")
RECORD = re.compile(r"^==\d+== ([\d,]+) \(\+([\d,]+)\) bytes in [\d,]+ \(\+([\d,]+)\) blocks are")
FRAME = re.compile(r"^==\d+==    (?:at|by) 0x[0-9A-F]+: (.*)$")
ALLOCATORS = ("malloc", "calloc", "realloc", "g_malloc", "g_malloc0", "g_realloc", "g_slice",
              "g_try_malloc", "???")


def num(s):
    return int(s.replace(",", ""))


def snapshot(pid):
    r = subprocess.run(["vgdb", f"--pid={pid}", "leak_check", "full", "reachable", "increased"],
                       capture_output=True, text=True, timeout=600)
    return r.stdout + r.stderr


def growth(text, top):
    """The summary's increases and the allocation sites that grew most."""
    kinds = {m.group(1): {"bytes": num(m.group(3)), "blocks": num(m.group(5))}
             for m in SUMMARY.finditer(text)}
    sites, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = RECORD.match(line)
        if not m:
            continue
        frames = []
        for f in lines[i + 1:i + 40]:
            fm = FRAME.match(f)
            if not fm:
                break
            name = fm.group(1).split(" (")[0]
            if not frames and name.split()[0] in ALLOCATORS:
                continue
            if name != "???":
                frames.append(name)
        sites.append({"bytes": num(m.group(2)), "blocks": num(m.group(3)), "where": " < ".join(frames[:4])})
    sites.sort(key=lambda s: -s["bytes"])
    return kinds, sites[:top]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--first", type=int, default=2, help="round after which the baseline is taken")
    ap.add_argument("--seconds", type=int, default=12, help="media per consultation")
    ap.add_argument("--top", type=int, default=6)
    a = ap.parse_args()
    if a.rounds <= a.first:
        ap.error("--rounds must be larger than --first")
    if not shutil.which("valgrind") or not shutil.which("vgdb"):
        sys.exit("bench/leak.py needs valgrind (apt-get install valgrind)")
    tmp = tempfile.mkdtemp(prefix="consultd-leak-")
    for name, binary in (("main", "consultd"), ("worker", "consultd-media")):
        # The worker binary also finalizes recordings (--finalize): those
        # short runs stay outside valgrind.
        guard = 'case "$*" in *--fd*) ;; *) exec %s "$@";; esac\n' % os.path.join(ROOT, "build", binary) \
            if name == "worker" else ""
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + guard +
                    f"exec valgrind --tool=memcheck --vgdb=yes --leak-check=full --num-callers=30 "
                    f"--log-file={tmp}/{name}.%p.log {ROOT}/build/{binary} \"$@\"\n")
        os.chmod(path, 0o755)
    os.environ["CONSULTD_BIN"] = os.path.join(tmp, "main")
    os.environ["CONSULTD_MEDIA_BIN"] = os.path.join(tmp, "worker")
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
    from harness import Server  # noqa: E402  (reads CONSULTD_BIN when imported)
    from run import CLIP, server_pids  # noqa: E402
    from soak import one  # noqa: E402
    subprocess.run([os.path.join(ROOT, "bench", "make-media.sh"), CLIP], check=True)
    s = Server("--media-ice-loopback", "--log-level", "warning", "--request-rate-per-min", "100000",
               "--presence-grace", "86400", "--compose=false")
    admin, tt, st = s.login("admin"), s.login("teacher1"), s.login("student1")
    s.request("PUT", "/api/teachers/2/presence", {"status": "online"}, token=tt)
    result = {"rounds": a.rounds, "baseline_after_round": a.first, "processes": {}}
    for r in range(1, a.rounds + 1):
        cid, _, ps = one(s, 2, tt, st, a.seconds)
        for p in ps:
            p.wait(timeout=300)
        assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
        time.sleep(4)  # the room goes, the recordings are finalized
        if r in (a.first, a.rounds):
            pids = server_pids(s, admin)
            for name, pid in zip(("main", "worker"), pids):
                kinds, sites = growth(snapshot(pid), a.top)
                if r == a.rounds:
                    n = a.rounds - a.first
                    total = sum(k["bytes"] for k in kinds.values())
                    result["processes"][name] = {
                        "growth_bytes": total, "per_consultation_bytes": round(total / n),
                        "by_kind": kinds, "sites_that_grew": sites}
        print(json.dumps({"round": r}), flush=True)
    m = s.get("/metrics").body
    result["packets_relayed"] = int(re.search(r"^consultd_media_packets_out_total (\d+)", m, re.M).group(1))
    s.stop()
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
