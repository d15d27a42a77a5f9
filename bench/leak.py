#!/usr/bin/env python3
"""What the server keeps per consultation, by allocation: consultd and its
media worker run under valgrind's memcheck while consultations (relay and
both recordings, one at a time; every measured round must leave two ready
recordings) start and end; after round --first, halfway
and after the last round each process is asked through vgdb for its heap
("leak_check full reachable increased").  An allocation site counts with
the smaller of its growths over the two halves: what is kept per
consultation grows in both, what is allocated once in one only.  Printed
per process, with the sites.  RSS (bench/soak.py) cannot tell a leak from
an allocator settling; this can.

  bench/leak.py --rounds 10          (needs valgrind; about 5 minutes)

With --max-other-bytes it is a test (meson's bench-leak): it fails when a
process grows per consultation by more than that, known growth aside.
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = re.compile(r"^==\d+== [\d,]+ \(\+([\d,]+)\) bytes in [\d,]+ \(\+[\d,]+\) blocks are")
FRAME = re.compile(r"^==\d+==    (?:at|by) 0x[0-9A-F]+: (.*)$")
ALLOCATORS = ("malloc", "calloc", "realloc", "g_malloc", "g_malloc0", "g_realloc", "g_slice",
              "g_try_malloc", "???")


def num(s):
    return int(s.replace(",", ""))


def snapshot(pid):
    r = subprocess.run(["vgdb", f"--pid={pid}", "leak_check", "full", "reachable", "increased"],
                       capture_output=True, text=True, timeout=600)
    return r.stdout + r.stderr


def growth(text):
    """Every allocation site that grew, with its whole stack (function
    names, innermost first)."""
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
            frames.append(fm.group(1).split(" (")[0])
        sites.append({"bytes": num(m.group(1)), "stack": frames})
    return sites


def where(stack):
    """A stack in short: the first four named frames past the allocator."""
    named = [f for f in stack if f != "???"]
    while named and named[0].split()[0] in ALLOCATORS:
        named.pop(0)
    return " < ".join(named[:4])


def innermost(stack, prefix):
    """The innermost frame of STACK whose name starts with PREFIX, or None."""
    return next((f for f in stack if f.startswith(prefix)), None)


# Growth that is known and not ours, told by its allocation stack.  gnutls
# keeps the random-generator state of every thread that called gnutls_rnd()
# (libnice's STUN does, in each webrtcbin's ICE thread) until it is
# unloaded.  SQLite's page cache fills up to its cache_size as the database
# grows, while statements run: the innermost SQLite call is sqlite3_step.  A
# statement or a string of ours left behind comes from sqlite3_prepare* or
# sqlite3_mprintf instead, and counts.
KNOWN = {"worker": (lambda stack: any("gnutls_rnd" in f for f in stack),
                    "gnutls's per-thread random state"),
         "main": (lambda stack: innermost(stack, "sqlite3_") == "sqlite3_step",
                  "SQLite's page cache (bounded by cache_size)")}


def recordings(s, cid, token):
    """The states of CID's recordings ("none" if it has none) once none is
    still being written or finalized, else None."""
    recs = s.get(f"/api/consultations/{cid}/recordings", token=token).json["recordings"]
    states = sorted(x["state"] for x in recs)
    return None if {"recording", "processing"} & set(states) else states or ["none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--first", type=int, default=2, help="round after which the baseline is taken")
    ap.add_argument("--seconds", type=int, default=12, help="media per consultation")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--max-other-bytes", type=int, default=0,
                    help="fail when either process grows by more than this per consultation, "
                         "known growth (gnutls, SQLite's cache) aside; 0: only report")
    a = ap.parse_args()
    if a.rounds < a.first + 2 or (a.rounds - a.first) % 2:
        ap.error("--rounds must exceed --first by an even number (two halves)")
    if not shutil.which("valgrind") or not shutil.which("vgdb"):
        sys.exit("bench/leak.py needs valgrind (apt-get install valgrind)")
    tmp = tempfile.mkdtemp(prefix="consultd-leak-")
    main_bin = os.path.abspath(os.environ.get("CONSULTD_BIN", os.path.join(ROOT, "build", "consultd")))
    bins = {"main": main_bin, "worker": os.path.join(os.path.dirname(main_bin), "consultd-media")}
    for name in ("main", "worker"):
        # The worker binary also finalizes recordings (--finalize): those
        # short runs stay outside valgrind.
        guard = 'case "$*" in *--fd*) ;; *) exec %s "$@";; esac\n' % bins[name] \
            if name == "worker" else ""
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + guard +
                    f"exec valgrind --tool=memcheck --vgdb=yes --leak-check=full --num-callers=30 "
                    f"--log-file={tmp}/{name}.%p.log {bins[name]} \"$@\"\n")
        os.chmod(path, 0o755)
    os.environ["CONSULTD_BIN"] = os.path.join(tmp, "main")
    os.environ["CONSULTD_MEDIA_BIN"] = os.path.join(tmp, "worker")
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
    from harness import Server, wait_for  # noqa: E402  (reads CONSULTD_BIN when imported)
    from mediahelp import metric  # noqa: E402
    from run import CLIP, server_pids  # noqa: E402
    from soak import one  # noqa: E402
    subprocess.run([os.path.join(ROOT, "bench", "make-media.sh"), CLIP], check=True)
    s = Server("--media-ice-loopback", "--log-level", "warning", "--request-rate-per-min", "100000",
               "--presence-grace", "86400", "--compose=false")
    admin, tt, st = s.login("admin"), s.login("teacher1"), s.login("student1")
    s.request("PUT", "/api/teachers/2/presence", {"status": "online"}, token=tt)
    # Three heap snapshots: after round --first, halfway, and after the last
    # round.  What a process keeps per consultation grows in both halves; what
    # it allocates once (a pool thread's TLS, a GSlice magazine, a library's
    # per-thread state) shows up in one half only.  So each allocation site
    # counts with the smaller of its two growths, and what was freed
    # meanwhile cannot hide anything either.
    mid = a.first + (a.rounds - a.first) // 2
    half = mid - a.first
    result = {"rounds": a.rounds, "snapshots_after_rounds": [a.first, mid, a.rounds], "processes": {}}
    halves = {"main": [], "worker": []}
    for r in range(1, a.rounds + 1):
        cid, _, ps = one(s, 2, tt, st, a.seconds)
        for p in ps:
            p.wait(timeout=300)
        assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
        wait_for(lambda: metric(s, "consultd_media_rooms") == 0, 120, what="room torn down")
        states = wait_for(lambda: recordings(s, cid, st), 120, what="recordings finalized")
        # The first rounds may find the worker still loading GStreamer under
        # valgrind (WHIP answers 503 after 20 s): they only warm up.  Every
        # measured round records both sides, so the recorder's journal and
        # finalizer are inside what is checked.
        if r > a.first:
            assert states == ["ready", "ready"], f"round {r}: recordings {states}"
        time.sleep(2)  # threads and buffers of the consultation wind down
        if r in (a.first, mid, a.rounds):
            pids = server_pids(s, admin)
            for name, pid in zip(("main", "worker"), pids):
                sites = growth(snapshot(pid))
                if r != a.first:
                    halves[name].append(sites)
        print(json.dumps({"round": r}), flush=True)
    for name, (first_half, second_half) in halves.items():
        by_stack = [collections.Counter(), collections.Counter()]
        for i, sites in enumerate((first_half, second_half)):
            for x in sites:
                by_stack[i][tuple(x["stack"])] += x["bytes"]
        steady = by_stack[0] & by_stack[1]  # each site with the smaller of its growths
        is_known, what = KNOWN[name]
        known = sum(v for k, v in steady.items() if is_known(k))
        total = sum(steady.values())
        ranked = sorted(steady.items(), key=lambda kv: -kv[1])
        result["processes"][name] = {
            "grew_bytes_per_half": [sum(by_stack[0].values()), sum(by_stack[1].values())],
            "steady_per_consultation_bytes": round(total / half),
            "known_per_consultation_bytes": round(known / half), "known": what,
            "other_per_consultation_bytes": round((total - known) / half),
            "steady_sites": [{"bytes_per_half": v, "where": where(list(k))} for k, v in ranked[:a.top]],
            # Whole stacks of what is not known, so that a failure in CI's
            # log says where without another run.
            "other_stacks": [list(k) for k, _ in ranked if not is_known(k)][:3]}
    result["packets_relayed"] = metric(s, "consultd_media_packets_out_total")
    s.stop()
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    if a.max_other_bytes:
        # A check, not only a report: media flowed, and neither process keeps
        # more per consultation than the limit, known growth aside.
        assert result["packets_relayed"] > 100 * a.rounds, result["packets_relayed"]
        for name, p in result["processes"].items():
            assert p["other_per_consultation_bytes"] <= a.max_other_bytes, \
                f"{name} keeps {p['other_per_consultation_bytes']} bytes per consultation"
        print("ok: no growth per consultation beyond the known", flush=True)


if __name__ == "__main__":
    main()
