#!/usr/bin/env python3
"""The state on SQLite against PostgreSQL, and across nodes (issue 22).

  CONSULTD_BIN=build-test/consultd bench/db.py [--seconds 10] [--pairs 24] [--fanout 200]

(Without CONSULTD_BIN the harness runs build/consultd, whatever that is.)

Measures, on this machine, with real servers on loopback:
  - GET /api/teachers and GET /api/mypage on one node, SQLite and
    PostgreSQL, with the same wrk command (bench/run.py --api's);
  - consultation commands per second (request + cancel by PAIRS students,
    each with a teacher of their own, as fast as answers come back) on
    SQLite, one PostgreSQL node, and three nodes on one PostgreSQL;
  - the event fan-out latency between nodes: a presence change written on
    node A until a student's events stream on node C shows it (p50/p95);
PostgreSQL is a throw-away one (scripts/pg-temp.sh) with fsync on.
Prints one JSON document; docs/benchmarks.md quotes it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
from harness import SSE, Postgres, Server  # noqa: E402

os.environ["PG_FSYNC"] = "on"
COMMON = ["--log-level", "warning", "--media-workers", "0", "--login-ip-per-min", "1000000",
          "--request-rate-per-min", "1000000", "--write-rate-per-min", "1000000",
          "--max-pending", "100000"]


def wrk(server, token, path, seconds):
    p = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-H",
                        f"Authorization: Bearer {token}", f"{server.url}{path}"],
                       capture_output=True, text=True)
    return {"rps": round(float(p.stdout.split("Requests/sec:")[1].split()[0])),
            "p99": p.stdout.split(" 99%")[1].split()[0],
            "errors": "Non-2xx" in p.stdout}


def reads(server, seconds):
    tok = server.login("student1")
    return {path: wrk(server, tok, path, seconds) for path in ("/api/teachers", "/api/mypage")}


def add_pairs(server, n):
    """N teachers (online) and N students; their tokens."""
    admin = server.login("admin")
    pairs = []
    for i in range(n):
        for role in ("teacher", "student"):
            r = server.post("/api/users", {"username": f"b{role}{i}", "password": "benchmark-pw",
                                           "role": role}, token=admin)
            assert r.status in (201, 409), r
        t = server.request("POST", "/api/login", {"username": f"bteacher{i}",
                                                  "password": "benchmark-pw"}).json
        s = server.request("POST", "/api/login", {"username": f"bstudent{i}",
                                                  "password": "benchmark-pw"}).json
        tid = t["user"]["id"]
        r = server.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"},
                           token=t["token"])
        assert r.status == 200, r
        pairs.append((tid, s["token"]))
    return pairs


def commands(nodes, pairs, seconds):
    """Request + cancel loops, pair i on node i % len(nodes); commands/s."""
    counts = [0] * len(pairs)
    errors = [0] * len(pairs)
    stop = time.monotonic() + seconds

    def loop(i):
        tid, tok = pairs[i]
        node = nodes[i % len(nodes)]
        while time.monotonic() < stop:
            r = node.post("/api/consultations", {"teacher_id": tid}, token=tok)
            if r.status != 201:
                errors[i] += 1
                continue
            c = node.post(f"/api/consultations/{r.json['id']}/cancel", token=tok)
            counts[i] += 2 if c.status == 200 else 1
            errors[i] += c.status != 200

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(len(pairs))]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.monotonic() - t0
    return {"commands_per_s": round(sum(counts) / took), "errors": sum(errors)}


def fanout(nodes, n):
    """Presence toggles on nodes[0] until an SSE client on nodes[-1] sees each."""
    tok_t = nodes[0].login("teacher1")
    tok_s = nodes[-1].login("student1")
    assert nodes[0].post("/api/teachers/2/favorite", token=tok_s).status == 200
    sse = SSE(nodes[-1], tok_s)
    lat = []
    for i in range(n):
        st = "online" if i % 2 == 0 else "offline"
        before = len(sse.events)
        t0 = time.monotonic()
        r = nodes[0].request("PUT", "/api/teachers/2/presence", {"status": st}, token=tok_t)
        assert r.status == 200, r
        sse.wait(lambda e, b=before, st=st: sse.events.index(e) >= b
                 and e["event"] == f"teacher.{st}", 10)
        lat.append((time.monotonic() - t0) * 1000)
    sse.close()
    slowest = max(range(n), key=lambda i: lat[i])
    lat.sort()
    return {"n": n, "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1), "max_ms": round(lat[-1], 1),
            "slowest_was_change": slowest}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--fanout", type=int, default=200)
    a = ap.parse_args()
    out = {}
    try:
        s = Server(*COMMON)
        out["sqlite_reads"] = reads(s, a.seconds)
        out["sqlite_commands"] = commands([s], add_pairs(s, a.pairs), a.seconds)
        s.stop()

        pg = Postgres()
        one = Server("--database", pg.createdb(), "--node-id", "solo", *COMMON)
        out["pg_reads"] = reads(one, a.seconds)
        out["pg_commands_1_node"] = commands([one], add_pairs(one, a.pairs), a.seconds)
        one.stop()

        url = pg.createdb()
        nodes = [Server("--database", url, "--node-id", f"n{i}", *COMMON) for i in range(3)]
        out["pg_commands_3_nodes"] = commands(nodes, add_pairs(nodes[0], a.pairs), a.seconds)
        out["fanout_between_nodes"] = fanout(nodes, a.fanout)
        single = [nodes[0]]
        out["fanout_same_node"] = fanout(single, a.fanout)
    finally:
        Server.stop_all()
        Postgres.stop_all(Postgres.this_test)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
