#!/usr/bin/env python3
"""Media across nodes (issue 23): what the cluster mode costs on this
machine, and where a burst of consultations lands.

  WEBRTC_PEER=build-test/tests/webrtc-peer CONSULTD_BIN=build-test/consultd \
      bench/cluster.py [--idle 20] [--burst 30] [--media 6] [--seconds 15]

Three parts, real servers on loopback, PostgreSQL a throw-away one
(tests/blackbox/harness.py's Postgres, fsync on):
  - idle: the CPU of one node with a media worker and nothing to do, over
    IDLE seconds: one SQLite node, then each of three nodes on PostgreSQL
    (their lease renewal, presence and failover sweep, log poll: the
    cluster mode's own overhead);
  - burst: BURST consultations requested and accepted at once, from as many
    threads, spread round robin over the three nodes: how many each node
    was given, and how long the burst took;
  - media: MEDIA consultations with media both ways (the pre-encoded clip,
    receivers without decoding, as bench/run.py) on one node alone, then
    on three nodes, the peers posting to the owner node:
    the CPU of consultd and its media workers over SECONDS, in all and per
    consultation.
Prints one JSON document; docs/benchmarks.md quotes it.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import Postgres, Server, wait_for  # noqa: E402
from run import CLIP, PEER, TICK, sample, server_pids  # noqa: E402

os.environ["PG_FSYNC"] = "on"
COMMON = ["--log-level", "warning", "--media-workers", "1", "--media-ice-loopback",
          "--max-live", "1000", "--max-pending", "100000", "--login-ip-per-min", "1000000",
          "--request-rate-per-min", "1000000", "--write-rate-per-min", "1000000"]


def cpu_over(nodes, seconds):
    """% of one core each node (consultd + its workers) used over SECONDS."""
    pids = [server_pids(n, n.login("admin")) for n in nodes]
    c0 = [sample(p)[0] for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = [sample(p)[0] for p in pids]
    dt = time.monotonic() - t0
    return [round(100.0 * (b - a) / TICK / dt, 2) for a, b in zip(c0, c1)]


def cluster(pg, n):
    return [Server("--database", pg.url, "--node-id", f"n{i}", *COMMON) for i in range(n)]


def add_pairs(server, n, prefix):
    """N teachers (online) and N students: [(teacher id, teacher token, student token)]."""
    admin = server.login("admin")
    for i in range(n):
        for role in ("teacher", "student"):
            r = server.post("/api/users", {"username": f"{prefix}{role}{i}",
                                           "password": "benchmark-pw", "role": role},
                            token=admin)
            assert r.status == 201, r
    users = {u["username"]: u["id"] for u in server.get("/api/users", token=admin).json["users"]}
    pairs = []
    for i in range(n):
        tt = server.login(f"{prefix}teacher{i}", "benchmark-pw")
        st = server.login(f"{prefix}student{i}", "benchmark-pw")
        tid = users[f"{prefix}teacher{i}"]
        r = server.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"}, token=tt)
        assert r.status == 200, r
        pairs.append((tid, tt, st))
    return pairs


def consult(node, pair):
    tid, tt, st = pair
    r = node.post("/api/consultations", {"teacher_id": tid}, token=st)
    assert r.status == 201, r
    cid = r.json["id"]
    r = node.post(f"/api/consultations/{cid}/accept", token=tt)
    assert r.status == 200, r
    return cid


def burst(nodes, n):
    pairs = add_pairs(nodes[0], n, "burst")
    cids = [None] * n

    def one(i):
        cids[i] = consult(nodes[i % len(nodes)], pairs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    rows = nodes[0].query("SELECT node_id, count(*) FROM consultations WHERE id IN (%s)"
                          " GROUP BY node_id ORDER BY node_id" % ",".join(map(str, cids)))
    for pair, cid in zip(pairs, cids):  # free the teachers
        nodes[0].post(f"/api/consultations/{cid}/end", token=pair[1])
    return {"consultations": n, "seconds": round(took, 2), "placed": dict(rows)}


def media(nodes, n, seconds, prefix):
    """N consultations with media through NODES (round robin); CPU per node."""
    pairs = add_pairs(nodes[0], n, prefix)
    peers = []
    for i, pair in enumerate(pairs):
        cid = consult(nodes[i % len(nodes)], pair)
        # Straight to the owner (without an entry point, a node's 307 to
        # another's prefix leads nowhere; haproxy's CPU stays out).
        owner = nodes[0].query(f"SELECT node_id FROM consultations WHERE id = {cid}")[0][0] \
            if len(nodes) > 1 else None
        node = next((x for k, x in enumerate(nodes) if f"n{k}" == owner), nodes[0])
        for tok in pair[1:]:
            for kind, mode in (("whip", "publish"), ("whep", "receive")):
                args = [PEER, "--mode", mode, "--seconds", str(seconds + 120),
                        "--url", f"{node.url}/{kind}/consultations/{cid}", "--token", tok]
                args += ["--file", CLIP] if mode == "publish" else ["--no-decode"]
                peers.append(subprocess.Popen(args, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL))
    # Joined: both participants of every consultation are being recorded.
    ids = f"SELECT id FROM users WHERE username LIKE '{prefix}student%'"
    joined = ("SELECT count(*) FROM (SELECT r.consultation_id FROM recordings r JOIN consultations c"
              " ON c.id = r.consultation_id WHERE r.state = 'recording' AND c.student_id IN"
              f" ({ids}) GROUP BY r.consultation_id HAVING count(*) = 2) AS j")
    wait_for(lambda: nodes[0].query(joined)[0][0] >= n, 90, interval=0.5,
             what="every consultation's media")
    time.sleep(3)  # past the joins' keyframes and DTLS
    cpu = cpu_over(nodes, seconds)
    for p in peers:
        p.send_signal(signal.SIGTERM)
    for p in peers:
        p.wait(60)
    where = nodes[0].query("SELECT coalesce(node_id, 'here'), count(*) FROM consultations"
                           " WHERE student_id IN (SELECT id FROM users WHERE username LIKE"
                           f" '{prefix}student%') GROUP BY 1 ORDER BY 1")
    return {"consultations": n, "cpu_pct_per_node": cpu, "cpu_pct_total": round(sum(cpu), 1),
            "cpu_pct_per_consultation": round(sum(cpu) / n, 2), "placed": dict(where)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=20)
    ap.add_argument("--burst", type=int, default=30)
    ap.add_argument("--media", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=15)
    a = ap.parse_args()
    out = {}
    one = Server(*COMMON)
    out["idle_sqlite_one_node_cpu_pct"] = cpu_over([one], a.idle)[0]
    out["media_one_node_sqlite"] = media([one], a.media, a.seconds, "m1")
    one.stop()
    pg = Postgres()
    try:
        solo = Server("--database", pg.url, "--node-id", "solo", *COMMON)
        out["media_one_node_postgresql"] = media([solo], a.media, a.seconds, "m2")
        solo.stop()
        pg.stop()
        pg.start()
        pg.createdb()
        nodes = cluster(pg, 3)
        out["idle_three_nodes_cpu_pct"] = cpu_over(nodes, a.idle)
        out["burst"] = burst(nodes, a.burst)
        out["media_three_nodes"] = media(nodes, a.media, a.seconds, "m3")
        for n in nodes:
            n.stop()
    finally:
        Server.stop_all()
        Postgres.stop_all(Postgres.this_test)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
