"""Several consultd nodes on one PostgreSQL (issue 22): the real server
processes, a real PostgreSQL 15 started from Debian's binaries in a temp
dir, on loopback.  Each test has its own PostgreSQL."""
import http.server
import json
import os
import signal
import subprocess
import threading
import time

from harness import (BIN, BROWSER, ROOT, SSE, Postgres, Server, browser_script, free_port,
                     parallel, run, test, wait_for)
from clusterhelp import T1, Cluster, Haproxy, Via, online, placed
from mediahelp import metric, offer, peer, result


@test
def nodes_register_and_list_each_other():
    c = Cluster(3)
    r = c.req(1, "admin", "GET", "/api/admin/nodes")
    assert r.status == 200, r
    assert r.json["backend"] == "postgresql" and r.json["node_id"] == "n1", r.json
    nodes = {n["node_id"]: n for n in r.json["nodes"]}
    assert sorted(nodes) == ["n0", "n1", "n2"], nodes
    for i, n in enumerate(sorted(nodes)):
        node = nodes[n]
        assert node["alive"] and node["epoch"] == 1 and 0 < node["lease_remaining_ms"] <= 6000, node
        assert node["url"] == c.nodes[i].url, (node, c.nodes[i].url)
        assert node["self"] == (n == "n1"), node
    assert c.nodes[0].get("/readyz").status == 200
    # A student may not see the registry.
    assert c.req(0, "student1", "GET", "/api/admin/nodes").status == 403


@test
def race_across_nodes_exactly_one_student_wins():
    """The single-node race with each student on a different node: exactly
    one 201 per teacher and round, the others teacher_busy."""
    c = Cluster(3)
    students = [f"student{i}" for i in range(1, 6)]
    for s in students:
        c.login(s)
    for round_ in range(5):
        online(c, round_ % 3)
        rs = parallel([lambda i=i, s=s: c.req(i % 3, s, "POST", "/api/consultations",
                                              {"teacher_id": T1})
                       for i, s in enumerate(students)])
        codes = sorted(r.status for r in rs)
        assert codes == [201, 409, 409, 409, 409], (round_, rs)
        assert all(r.json["error"] == "teacher_busy" for r in rs if r.status == 409), rs
        won = [r for r in rs if r.status == 201][0].json["id"]
        assert c.req((round_ + 1) % 3, "teacher1", "POST", f"/api/consultations/{won}/decline"
                     ).status == 200
    assert c.query("SELECT count(*) FROM consultations")[0][0] == 5
    # The events of every round are in one order that every node reads the
    # same way.
    logs = [c.req(i, "admin", "GET", "/api/consultations?limit=100").json for i in range(3)]
    assert logs[0] == logs[1] == logs[2]


@test
def an_event_on_one_node_reaches_streams_on_the_others_and_resumes_anywhere():
    c = Cluster(3)
    assert c.req(0, "student1", "POST", f"/api/teachers/{T1}/favorite").status == 200
    sse = SSE(c.nodes[2], c.login("student1"))
    assert sse.status == 200
    online(c, 0)
    e = sse.wait_type("teacher.online", 30, teacher_id=T1)
    seen = e["id"]
    sse.close()
    # Missed while away: offline (node 1), online (node 2), intro (node 0).
    online(c, 1, status="offline")
    online(c, 2)
    assert c.req(0, "teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": "hi"}).status == 200
    wait_for(c.lag_zero, 30, what="read models caught up")
    missed = [int(s) for (s,) in c.query(
        f"SELECT seq FROM events WHERE seq > {seen} AND teacher_id = {T1}"
        " AND type IN ('teacher.online', 'teacher.offline') ORDER BY seq")]
    assert len(missed) == 2, missed
    # Resumed on another node than the one it was on: exactly the missed
    # presence events, in order, then live ones.
    again = SSE(c.nodes[1], c.login("student1"), last_event_id=seen)
    assert again.status == 200
    again.wait(lambda ev: ev["id"] == missed[-1], 30, what="the missed events")
    got = [ev["id"] for ev in again.events if ev["event"] in ("teacher.online", "teacher.offline")]
    assert got == missed, (got, missed)
    online(c, 0, status="offline")
    again.wait_type("teacher.offline", 30, teacher_id=T1)
    ids = [ev["id"] for ev in again.events]
    assert ids == sorted(set(ids)), ids
    again.close()


class Receiver:
    """A webhook receiver counting deliveries by event id."""

    def __init__(self, port=0):
        self.ids = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                self.rfile.read(n)
                with outer.lock:
                    outer.ids.append(self.headers["X-Consultd-Event-Id"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def got(self):
        with self.lock:
            return list(self.ids)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


SECRET = "0123456789abcdef0123456789abcdef-s3cret"


@test
def webhooks_go_out_once_each_while_nodes_are_killed():
    rcv = Receiver()
    try:
        c = Cluster(3, "--webhook-urls", rcv.url, "--webhook-secret", SECRET,
                    "--webhook-retry-ms", "200")
        # The receiver is down while nodes die: the deliveries they had
        # claimed fail or wait out their claim, and go to another node.  (A
        # node killed between a receiver's 2xx and recording it makes the
        # one duplicate that receivers dedupe by X-Consultd-Event-Id:
        # docs/reliability.md.)
        port = rcv.httpd.server_address[1]
        rcv.close()
        for i in range(30):
            s = f"student{1 + i % 5}"
            r = c.req(c.live(i), s, "POST" if (i // 5) % 2 == 0 else "DELETE",
                      f"/api/teachers/{T1 + i % 3}/favorite")
            assert r.status == 200, r
            if i == 12:
                c.nodes[1].kill()
            if i == 20:
                c.nodes[2].kill()
        c.nodes[1].start()
        c.nodes[2].start()
        rcv = Receiver(port)
        wait_for(c.lag_zero, 30, what="read models caught up")
        want = sorted(f"evt_{s}" for (s,) in c.query(
            "SELECT event_seq FROM webhook_deliveries"))
        assert len(want) >= 6, want
        wait_for(lambda: sorted(set(rcv.got())) == want, 60, what="every delivery")
        # Delivered once each: no node sent what another had claimed.
        got = rcv.got()
        assert len(got) == len(set(got)), sorted(got)
        states = c.query("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")
        assert states == [("delivered", len(want))], states
    finally:
        rcv.close()


def snapshot(c):
    return {
        "stats": c.query("SELECT * FROM teacher_stats WHERE popularity <> 0"
                         " OR consultation_count <> 0 ORDER BY teacher_id"),
        "mypage": c.query("SELECT * FROM mypage ORDER BY consultation_id"),
    }


@test
def projections_equal_a_rebuild_after_nodes_are_killed():
    c = Cluster(3)
    for round_ in range(6):
        s = f"student{1 + round_ % 5}"
        online(c, c.live(round_))
        assert c.req(c.live(round_), s, "POST", f"/api/teachers/{T1}/favorite").status == 200
        cid = c.req(c.live(round_ + 1), s, "POST", "/api/consultations",
                    {"teacher_id": T1}).json["id"]
        assert c.req(c.live(round_ + 2), "teacher1", "POST", f"/api/consultations/{cid}/accept"
                     ).status == 200
        if round_ == 2:
            c.nodes[0].kill()  # kill -9, mid-run
        if round_ == 4:
            c.nodes[1].kill()
        assert c.req(c.live(round_ + 3), "teacher1", "POST", f"/api/consultations/{cid}/end").status == 200
    c.nodes[0].start()
    c.nodes[1].start()
    wait_for(c.lag_zero, 30, what="read models caught up")
    before = snapshot(c)
    assert before["stats"] and len(before["mypage"]) == 6, before
    p = subprocess.run([BIN, "rebuild-projections", "--database", c.url, "--data-dir",
                        c.nodes[0].data_dir], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert snapshot(c) == before


def traffic_through_an_outage(c, outage, restore):
    """Requests and cancels as fast as they are answered while OUTAGE takes
    PostgreSQL away and RESTORE brings it back.  Returns what was
    acknowledged, the answers seen and the time from RESTORE's end to the
    first acknowledged write."""
    acked, cancel_acked, answers = [], [], []
    pending = None  # a request whose cancel has not been acknowledged
    student = c.login("student1")
    down_at = restored_at = first_write = None
    for i in range(100000):
        if restored_at and first_write and time.monotonic() - first_write > 1:
            break
        if i == 20:
            outage()
            down_at = time.monotonic()
        if down_at and not restored_at and time.monotonic() - down_at > 3:
            # While it is away: not ready, but alive.
            assert c.nodes[0].get("/readyz", timeout=10).status == 503
            assert c.nodes[0].get("/healthz", timeout=10).status == 200
            restore()
            restored_at = time.monotonic()
        t0 = time.monotonic()
        if pending is None:
            r = c.nodes[0].request("POST", "/api/consultations", {"teacher_id": T1}, token=student,
                                   timeout=10)
            if r.status == 201:
                pending = r.json["id"]
                acked.append(pending)
        else:
            r = c.nodes[0].request("POST", f"/api/consultations/{pending}/cancel", token=student,
                                   timeout=10)
            if r.status == 200:
                cancel_acked.append(pending)
                pending = None
        took = time.monotonic() - t0
        answers.append((r.status, r.json.get("error") if r.status >= 400 else None,
                        r.header("Retry-After"), took))
        if restored_at and not first_write and r.status in (200, 201):
            first_write = time.monotonic()
        if r.status == 503:
            time.sleep(0.05)
        assert time.monotonic() - (down_at or time.monotonic()) < 120, "no recovery in 2 min"
    return acked, cancel_acked, answers, first_write - restored_at


def check_outage(c, acked, cancel_acked, answers):
    codes = {a[0] for a in answers}
    assert codes <= {200, 201, 503}, sorted({(a[0], a[1]) for a in answers})
    unavailable = [a for a in answers if a[0] == 503]
    assert unavailable, "PostgreSQL's outage was never seen"
    assert all(a[1] == "database_unavailable" and a[2] for a in unavailable), unavailable[:5]
    # Never a hang: every answer came within the database timeout and a bit.
    assert max(a[3] for a in answers) < 8, max(a[3] for a in answers)
    rows = dict(c.query("SELECT id, status FROM consultations"))
    for cid in acked:
        assert cid in rows, (cid, "acknowledged but lost")
    for cid in cancel_acked:
        assert rows[cid] == "canceled", (cid, rows[cid])
    assert c.nodes[0].get("/readyz").status == 200


def outage(what, stop):
    c = Cluster(1)
    online(c, 0)
    acked, cancel_acked, answers, back = traffic_through_an_outage(
        c, getattr(c.pg, stop), c.pg.start)
    check_outage(c, acked, cancel_acked, answers)
    print(f"# {what}: {len(acked)} requests acknowledged, "
          f"{sum(1 for a in answers if a[0] == 503)} answered 503; first write "
          f"{back * 1000:.0f} ms after PostgreSQL was started again", flush=True)


@test
def postgres_killed_during_traffic_answers_503_and_recovers():
    outage("kill -9 postmaster", "kill9")


@test
def postgres_immediate_stop_and_start_during_traffic():
    outage("pg_ctl stop -m immediate", "stop_immediate")


@test
def a_slow_query_does_not_stop_the_loop():
    """A write that waits for PostgreSQL (here: for the writers' lock, held by
    another session) waits in a fiber: the loop still answers /healthz, the
    web page meanwhile, a read queued behind the write and the
    write itself complete once the lock is free.  With the wait on the
    loop's stack, /healthz would only come back after the write had failed
    (database-timeout): the order of the answers tells, not their times.
    What needs the database (the read, /readyz's checks) waits its turn:
    one connection per node."""
    pg = Postgres()
    s = Server("--database", pg.url, "--node-id", "n0", "--media-workers", "0",
               "--database-timeout", "8000")
    student = s.login("student1")
    teacher = s.login("teacher1")
    sse = SSE(s, teacher)  # a console: the presence sweeper writes every second
    assert sse.status == 200
    holder = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", pg.url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdin.write("SELECT pg_advisory_lock(7270001);\n\\echo locked\n")
        holder.stdin.flush()
        while holder.stdout.readline().strip() != "locked":
            pass
        out = {}

        def call(key, method, path):
            out[key] = s.request(method, path, token=student, timeout=60)

        write = threading.Thread(target=call, args=("write", "POST", f"/api/teachers/{T1}/favorite"))
        write.start()
        wait_for(lambda: Postgres.sql(pg.url, "SELECT count(*) FROM pg_stat_activity WHERE"
                                      " application_name = 'consultd' AND wait_event_type = 'Lock'")
                 [0][0] == "1", 30, what="the write to wait for the writers' lock")
        read = threading.Thread(target=call, args=("read", "GET", "/api/mypage"))
        read.start()
        assert s.get("/healthz", timeout=60).status == 200
        assert s.get("/", timeout=60).status == 200
        assert write.is_alive() and read.is_alive() and not out, (out, s.logtext()[-3000:])
    finally:
        holder.stdin.write("SELECT pg_advisory_unlock_all();\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    write.join(60)
    read.join(60)
    assert out["write"].status in (200, 201, 204), out["write"]
    assert out["read"].status == 200, out["read"]
    assert s.query(f"SELECT count(*) FROM favorites WHERE teacher_id = {T1}") == [(1,)]
    sse.close()


def nodes_of(c, node):
    r = c.req(node, "admin", "GET", "/api/admin/nodes")
    assert r.status == 200, r
    return {n["node_id"]: n for n in r.json["nodes"]}


@test
def a_frozen_node_is_fenced_and_registers_again():
    c = Cluster(2)
    c.login("teacher1", 1)
    c.login("admin", 0)
    frozen = c.nodes[1]
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: not nodes_of(c, 0)["n1"]["alive"], 30, what="n1's lease to run out")
        # A write sent to the frozen node waits in its accept queue.
        box = {}
        t = threading.Thread(target=lambda: box.update(r=c.req(1, "teacher1", "PUT",
                             f"/api/teachers/{T1}/profile", {"intro": "after the freeze"},
                             timeout=60)))
        t.start()
        time.sleep(0.5)
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    t.join(60)
    # Refused under the old epoch, or accepted after registering again:
    # never written with the epoch whose lease had run out.
    assert box["r"].status in (200, 503), box["r"]
    wait_for(lambda: nodes_of(c, 0)["n1"]["alive"] and nodes_of(c, 0)["n1"]["epoch"] == 2, 30,
             what="n1 to register again with epoch 2")
    assert "lost its lease" in frozen.logtext() or "is fenced" in frozen.logtext(), \
        frozen.logtext()[-2000:]
    r = c.req(1, "teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": "fenced no more"})
    assert r.status == 200, r
    assert c.req(0, "student1", "GET", f"/api/teachers/{T1}").json["intro"] == "fenced no more"


def sweeps_ran(c, seconds):
    """Waits until every node has renewed its lease for SECONDS more (its
    timers, the sweepers among them, kept running), by the database's
    clock: a wait on an event, not a fixed sleep."""
    def renewed():
        return {n: int(r) for n, r in c.query("SELECT node_id, renewed_at FROM consultd_nodes")}
    start = renewed()
    wait_for(lambda: all(v - start[n] >= seconds * 1000 for n, v in renewed().items()),
             seconds + 30, what=f"every node's timers to run {seconds} s")


@test
def timers_run_on_every_node_and_act_once():
    """Request expiry runs on all three nodes; each request expires once.
    A teacher whose console is on one node stays online although the other
    nodes have no stream of theirs, and goes offline when it closes."""
    c = Cluster(3, "--request-timeout", "1", "--presence-grace", "2")
    # The console (events stream) of teacher1 on node 0 only.
    sse = SSE(c.nodes[0], c.login("teacher1"))
    assert sse.status == 200
    online(c, 1)
    for i in range(3):
        r = c.req(i, f"student{i + 1}", "POST", "/api/consultations", {"teacher_id": T1})
        assert r.status == 201, r
        wait_for(lambda cid=r.json["id"]: c.req(i, "admin", "GET", f"/api/consultations/{cid}"
                                                ).json["status"] == "expired", 30,
                 what="the request to expire")
    sweeps_ran(c, 3)
    expired = c.query("SELECT consultation_id, count(*) FROM events"
                      " WHERE type = 'consultation.expired' GROUP BY consultation_id")
    assert len(expired) == 3 and all(n == 1 for _, n in expired), expired
    freed = c.query("SELECT count(*) FROM events WHERE type = 'teacher.available'")[0][0]
    assert freed == 3, freed

    sweeps_ran(c, 6)  # three times the grace, on every node
    assert c.req(2, "student1", "GET", f"/api/teachers/{T1}").json["status"] == "online"
    sse.close()
    wait_for(lambda: c.req(1, "student1", "GET", f"/api/teachers/{T1}").json["status"]
             == "offline", 30, what="the teacher to go offline without a console")
    offline = c.query("SELECT count(*) FROM events WHERE type = 'teacher.offline'")[0][0]
    assert offline == 1, offline


@test
def haproxy_spreads_requests_routes_by_node_and_survives_a_node_kill():
    c = Cluster(3, "--trusted-proxies", "127.0.0.1")
    h = Haproxy(c)
    try:
        tok = c.login("student1")
        seen = set()
        for _ in range(9):
            r = h.request("GET", "/api/teachers", token=tok)
            assert r.status == 200, r
            seen.add(r.header("X-Consultd-Node"))
        assert seen == {"n0", "n1", "n2"}, seen
        # /n/<node-id>/ reaches that node, prefix removed.
        for i in range(3):
            r = h.request("GET", f"/n/n{i}/api/teachers", token=tok)
            assert r.status == 200 and r.header("X-Consultd-Node") == f"n{i}", r
        # An events stream through haproxy gets an event written on a node.
        assert h.request("POST", f"/api/teachers/{T1}/favorite", token=tok).status == 200
        sse = SSE(h, tok)
        assert sse.status == 200
        online(c, 2)
        sse.wait_type("teacher.online", 30, teacher_id=T1)
        sse.close()
        # kill -9 of a node: requests keep being answered (a refused
        # connection goes to another node; the health check takes it out).
        c.nodes[1].kill()
        for _ in range(30):
            r = h.request("GET", "/api/teachers", token=tok)
            assert r.status == 200, r
            assert r.header("X-Consultd-Node") != "n1"
    finally:
        h.stop()


@test
def media_is_placed_spread_and_reached_through_the_entry_point():
    """Three accepts place three consultations on three nodes (least
    loaded first); a WHIP POST to a node that does not own the consultation
    answers 307 to the owner's prefix; real peers posting through haproxy
    follow it and media flows both ways on the owner."""
    hport = free_port()
    c = Cluster(3, "--public-url", f"http://127.0.0.1:{hport}", media=True)
    h = Haproxy(c, hport)
    try:
        cids = []
        for k, (teacher, tid, student) in enumerate([("teacher1", 2, "student1"),
                                                     ("teacher2", 3, "student2"),
                                                     ("teacher3", 4, "student3")]):
            online(c, k, teacher, tid)
            r = c.req(k, student, "POST", "/api/consultations", {"teacher_id": tid})
            assert r.status == 201, r
            cid = r.json["id"]
            assert c.req((k + 1) % 3, teacher, "POST", f"/api/consultations/{cid}/accept").status == 200
            cids.append(cid)
        where = placed(c)
        assert sorted(where[x] for x in cids) == ["n0", "n1", "n2"], where
        # The admin's view of live consultations names each one's node.
        live = c.req(1, "admin", "GET", "/api/consultations?status=live").json["consultations"]
        assert {x["id"]: x["node_id"] for x in live} == {x: where[x] for x in cids}, live
        nodes = c.req(2, "admin", "GET", "/api/admin/nodes").json["nodes"]
        assert [n["consultations"] for n in nodes] == [1, 1, 1], nodes
        assert all(0 <= n["cpu_permille"] <= 1000 for n in nodes), nodes
        cid = cids[0]
        owner = where[cid]
        other = next(i for i in range(3) if f"n{i}" != owner)
        tt, st = c.login("teacher1"), c.login("student1")
        r = c.nodes[other].request("POST", f"/whip/consultations/{cid}", raw=offer(), token=tt,
                                   headers={"Content-Type": "application/sdp"})
        assert r.status == 307 and r.header("Location") == f"/n/{owner}/whip/consultations/{cid}", r
        # A shared screen's POST keeps its stream on the way to the owner.
        r = c.nodes[other].request("POST", f"/whep/consultations/{cid}?stream=screen", raw=offer(),
                                   token=st, headers={"Content-Type": "application/sdp"})
        assert r.status == 307, r
        assert r.header("Location") == f"/n/{owner}/whep/consultations/{cid}?stream=screen", r
        via = Via(h.url)
        # The teacher's publisher asks a node that is not the owner, by its
        # prefix: certainly redirected.  The others go wherever haproxy
        # sends them.
        pubs = [peer(Via(f"{h.url}/n/n{other}"), "whip", cid, tt, "publish", 14),
                peer(via, "whip", cid, st, "publish", 14)]
        recv = [peer(via, "whep", cid, st, "receive", 9, 20), peer(via, "whep", cid, tt, "receive", 9, 20)]
        for p in recv + pubs:
            rc, res, err = result(p)
            assert rc == 0 and res["status"] == 201, (res, err[-1500:])
            assert res["location"].startswith(f"{h.url}/n/{owner}/"), res
            if p in recv:  # decoded what the other side published
                assert res["video_frames"] >= 20 and res["audio_buffers"] >= 20, res
            if p is pubs[0]:
                assert res["redirects"] == 1, res
        # A fourth node that registers takes the next consultation at once:
        # it is the least loaded.
        c.nodes.append(c.node("n3", "--public-url", f"http://127.0.0.1:{hport}"))
        r = c.req(0, "admin", "POST", "/api/users", {"username": "teacher4", "password":
                                                     "a long password 4", "role": "teacher"})
        assert r.status == 201, r
        t4 = c.nodes[3].login("teacher4", "a long password 4")
        tid4 = r.json["id"]
        assert c.nodes[3].request("PUT", f"/api/teachers/{tid4}/presence", {"status": "online"},
                                  token=t4).status == 200
        r = c.req(1, "student4", "POST", "/api/consultations", {"teacher_id": tid4})
        assert r.status == 201, r
        cid4 = r.json["id"]
        assert c.nodes[2].request("POST", f"/api/consultations/{cid4}/accept", token=t4).status == 200
        assert placed(c)[cid4] == "n3", placed(c)
    finally:
        h.stop()


@test
def a_killed_owner_fails_over_and_media_resumes_on_another_node():
    """kill -9 of the node that owns a live consultation: another node marks
    it interrupted (node_lost) once the lease has run out; the participants
    publish again through the entry point, the consultation is placed on a
    serving node, goes live again and media flows.  A prefix of the dead
    node answers haproxy's 503 with Retry-After, not a hang."""
    hport = free_port()
    c = Cluster(3, "--public-url", f"http://127.0.0.1:{hport}", media=True)
    h = Haproxy(c, hport)
    try:
        online(c, 1)
        r = c.req(2, "student1", "POST", "/api/consultations", {"teacher_id": T1})
        assert r.status == 201, r
        cid = r.json["id"]
        assert c.req(1, "teacher1", "POST", f"/api/consultations/{cid}/accept").status == 200
        owner = placed(c)[cid]
        tt, st = c.login("teacher1"), c.login("student1")
        via = Via(h.url)
        before = [peer(via, "whip", cid, tt, "publish", 60), peer(via, "whip", cid, st, "publish", 60)]
        recv = peer(via, "whep", cid, st, "receive", 6, 20)
        rc, res, err = result(recv)
        assert rc == 0 and res["video_frames"] >= 20, (res, err[-1500:])
        # Both are being recorded on the owner (the student's publisher may
        # connect after the teacher's frames reached the student).
        wait_for(lambda: c.query(f"SELECT count(*) FROM recordings WHERE consultation_id = {cid}"
                                 " AND state = 'recording'")[0][0] == 2, 60,
                 what="both participants recorded")
        sse = SSE(c.nodes[next(i for i in range(3) if f"n{i}" != owner)], st)
        killed_at = time.monotonic()
        c.nodes[int(owner[1:])].kill()
        sse.wait_type("consultation.interrupted", 60, reason="node_lost")
        interrupted_at = time.monotonic()
        assert c.query(f"SELECT status, node_id FROM consultations WHERE id = {cid}") == \
            [("interrupted", None)]
        r = h.request("GET", f"/n/{owner}/healthz")
        assert r.status == 503 and r.header("Retry-After") == "2", r
        assert json.loads(r.body)["error"] == "node_unavailable", r
        for p in before:
            p.kill()
            p.wait()
        # The participants come back through the entry point.
        again_at = time.monotonic()
        again = [peer(via, "whip", cid, tt, "publish", 14), peer(via, "whip", cid, st, "publish", 14)]
        recv = [peer(via, "whep", cid, st, "receive", 8, 20), peer(via, "whep", cid, tt, "receive", 8, 20)]
        rc, res, err = result(recv[0])
        assert rc == 0 and res["video_frames"] >= 20, (res, err[-1500:])
        frames_at = again_at + res["first_frame_ms"] / 1000
        new_owner = placed(c)[cid]
        assert new_owner != owner and res["location"].startswith(f"{h.url}/n/{new_owner}/"), res
        rc, res, err = result(recv[1])
        assert rc == 0 and res["video_frames"] >= 20, (res, err[-1500:])
        for p in again:
            rc, res, err = result(p)
            assert rc == 0 and res["status"] == 201, (res, err[-1500:])
        sse.wait_type("consultation.resumed", 30)
        print(f"# failover: kill -> interrupted {interrupted_at - killed_at:.1f} s,"
              f" kill -> frames decoded again {frames_at - killed_at:.1f} s")
        sse.close()
        recordings_of_a_lost_node(c, cid, owner, new_owner)
    finally:
        h.stop()


def recordings_of_a_lost_node(c, cid, lost, new_owner):
    """After a failover: the lost node's unfinished recordings wait for it
    (processing, node_lost); the new owner's go on with the series instead
    of reusing a name; an admin can write one off; the rest is repaired
    when the lost node starts again."""
    def rows(node):
        return c.query(f"SELECT file, state, reason FROM recordings WHERE consultation_id = {cid}"
                       f" AND node_id = '{node}' AND role <> 'combined' ORDER BY file")
    waiting = [("student.webm", "processing", "node_lost"), ("teacher.webm", "processing", "node_lost")]
    try:
        wait_for(lambda: rows(lost) == waiting, 30, what="the lost node's recordings marked node_lost")
    except AssertionError:
        raise AssertionError(c.query(f"SELECT file, state, reason, node_id FROM recordings"
                                     f" WHERE consultation_id = {cid}"))
    k = next(i for i in range(len(c.nodes)) if c.nodes[i].proc)
    assert c.req(k, "teacher1", "POST", f"/api/consultations/{cid}/end").status == 200
    done = [("student-2.webm", "ready", ""), ("teacher-2.webm", "ready", "")]
    wait_for(lambda: rows(new_owner) == done, 60, what="the new owner's recordings ready")
    assert rows(lost) == waiting, rows(lost)  # not finished by anyone else
    r = c.req(k, "admin", "GET", "/api/admin/recordings")
    mine = {x["file"]: x for x in r.json["recordings"] if x["consultation_id"] == cid}
    assert mine["teacher.webm"]["node_id"] == lost and mine["teacher-2.webm"]["node_id"] == new_owner, mine
    off = c.req(k, "admin", "POST", f"/api/admin/recordings/{mine['teacher.webm']['id']}/write-off")
    assert off.status == 200 and off.json["state"] == "failed", off
    again = c.req(k, "admin", "POST", f"/api/admin/recordings/{mine['teacher.webm']['id']}/write-off")
    assert again.status == 409 and again.json["error"] == "conflict", again
    serving = c.req(k, "admin", "POST", f"/api/admin/recordings/{mine['teacher-2.webm']['id']}/write-off")
    assert serving.status == 409, serving
    # The lost node comes back: it repairs what is on its disk and was not
    # written off.
    c.nodes[int(lost[1:])].start()
    wait_for(lambda: rows(lost) == [("student.webm", "ready", ""),
                                    ("teacher.webm", "failed", "node_lost")], 90,
             what="the returning node repairs its recording")


@test
def chromium_pages_follow_the_redirect_through_the_entry_point():
    """The real pages in headless Chromium, behind haproxy in front of three
    nodes: request, accept, and media both ways; every session the pages
    created lives on the consultation's node (its prefix in Location)."""
    hport = free_port()
    c = Cluster(3, "--public-url", f"http://127.0.0.1:{hport}", "--trusted-proxies", "127.0.0.1",
                media=True)
    h = Haproxy(c, hport)
    try:
        out = browser_script("cluster.mjs", {"base": h.url}, 300)
        assert "error" not in out and not out.get("pageErrors"), json.dumps(out, indent=1)
        owner = c.query(f"SELECT node_id FROM consultations WHERE id = {out['consultation']}")
        assert owner and owner[0][0] in ("n0", "n1", "n2"), owner
        for who in ("teacher", "student"):
            m = out[who + "Media"]
            assert m["videoWidth"] > 0 and m["timeAdvanced"] > 0.3 and m["framesGrew"] > 5, (who, m)
            for loc in out[who + "Locations"]:
                assert loc.startswith(f"{h.url}/n/{owner[0][0]}/"), out
    finally:
        h.stop()


@test
def chromium_pages_recover_from_a_killed_owner_through_the_entry_point():
    """The real pages in a call through haproxy; kill -9 of the node that
    holds the consultation's media: both pages, untouched, publish and
    subscribe again through the entry point, the consultation lands on
    another node, and media flows both ways again."""
    hport = free_port()
    c = Cluster(3, "--public-url", f"http://127.0.0.1:{hport}", "--trusted-proxies", "127.0.0.1",
                media=True)
    h = Haproxy(c, hport)
    p = subprocess.Popen(["node", os.path.join(BROWSER, "cluster.mjs"),
                          json.dumps({"base": h.url, "failover": True})],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=BROWSER, text=True)
    try:
        first = p.stdout.readline().strip()
        killed = None
        if first == "READY":
            (cid, owner), = c.query("SELECT id, node_id FROM consultations WHERE status = 'live'")
            killed = owner
            c.nodes[int(owner[1:])].kill()
            p.stdin.write("GO\n")
            p.stdin.flush()
        rest, errs = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
        h.stop()
    lines = [l for l in (first + "\n" + rest).splitlines() if l.startswith("{")]
    assert lines, (first, rest, errs[-3000:])
    out = json.loads(lines[-1])
    assert "error" not in out and not out.get("pageErrors"), json.dumps(out, indent=1)
    assert killed, out
    new_owner = c.query(f"SELECT node_id FROM consultations WHERE id = {out['consultation']}")[0][0]
    assert new_owner not in (None, killed), (new_owner, killed)
    for who in ("teacher", "student"):
        m = out[who + "MediaAfter"]
        assert m["videoWidth"] > 0 and m["timeAdvanced"] > 0.3 and m["framesGrew"] > 5, (who, m)
        for loc in out[who + "LocationsAfter"]:
            assert loc.startswith(f"{h.url}/n/{new_owner}/"), out
    print(f"# pages back with media {out['teacherRecoveredMs'] / 1000:.1f} s (teacher),"
          f" {out['studentRecoveredMs'] / 1000:.1f} s (student) after the kill")


@test
def a_frozen_owner_is_fenced_and_stops_relaying():
    """SIGSTOP of the node that owns a live consultation, past its lease:
    the other node interrupts it (node_lost).  After SIGCONT the frozen node
    registers again with a new epoch and ends the media it held: no session
    is left there, and the consultation keeps the state the other wrote."""
    c = Cluster(2, media=True)
    online(c, 0)
    r = c.req(1, "student1", "POST", "/api/consultations", {"teacher_id": T1})
    cid = r.json["id"]
    assert c.req(1, "teacher1", "POST", f"/api/consultations/{cid}/accept").status == 200
    owner = int(placed(c)[cid][1:])
    frozen, other = c.nodes[owner], c.nodes[1 - owner]
    tt, st = c.login("teacher1"), c.login("student1")
    pubs = [peer(frozen, "whip", cid, tt, "publish", 60), peer(frozen, "whip", cid, st, "publish", 60)]
    try:
        wait_for(lambda: metric(frozen, "consultd_media_sessions") == 2, 60, what="both publishing")
        sse = SSE(other, st)
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        try:
            sse.wait_type("consultation.interrupted", 60, reason="node_lost")
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        wait_for(lambda: "ending the media held under epoch 1" in frozen.logtext(), 30,
                 what="the frozen node to notice its lost lease")
        wait_for(lambda: metric(frozen, "consultd_media_sessions") == 0, 30, what="its sessions gone")
        row = c.query(f"SELECT status, node_id FROM consultations WHERE id = {cid}")
        assert row == [("interrupted", None)], (row, c.query(
            f"SELECT seq, type, payload FROM events WHERE consultation_id = {cid} ORDER BY seq"))
        sse.close()
    finally:
        for p in pubs:
            p.kill()
            p.wait()


@test
def a_draining_node_keeps_its_consultations_and_exits_when_they_end():
    """Drain (the admin API on another node): no new placement on the
    draining node, /readyz 503 there, its two live consultations go on
    (media through the entry point by its prefix), and it exits 0 once
    both have ended."""
    hport = free_port()
    pub = ("--public-url", f"http://127.0.0.1:{hport}")
    c = Cluster(1, *pub, media=True)  # n0 alone: both consultations go to it
    two = []
    for teacher, tid, student in [("teacher1", 2, "student1"), ("teacher2", 3, "student2")]:
        online(c, 0, teacher, tid)
        r = c.req(0, student, "POST", "/api/consultations", {"teacher_id": tid})
        assert r.status == 201, r
        assert c.req(0, teacher, "POST", f"/api/consultations/{r.json['id']}/accept").status == 200
        two.append(r.json["id"])
    assert [placed(c)[x] for x in two] == ["n0", "n0"], placed(c)
    c.nodes += [c.node("n1", *pub), c.node("n2", *pub)]
    h = Haproxy(c, hport)
    try:
        tt, st = c.login("teacher1"), c.login("student1")
        via = Via(h.url)
        pubs = [peer(via, "whip", two[0], tt, "publish", 30), peer(via, "whip", two[0], st, "publish", 30)]
        r = c.req(1, "admin", "POST", "/api/admin/nodes/n0/drain")
        assert r.status == 202 and r.json == {"node_id": "n0", "draining": True}, r
        wait_for(lambda: c.nodes[0].get("/readyz").status == 503, 30, what="n0's readyz to say draining")
        assert "draining" in c.nodes[0].get("/readyz").json["not_ready"]
        nodes = {n["node_id"]: n for n in c.req(2, "admin", "GET", "/api/admin/nodes").json["nodes"]}
        assert nodes["n0"]["draining"] and nodes["n0"]["consultations"] == 2, nodes
        # No new placement on it.
        online(c, 1, "teacher3", 4)
        r = c.req(2, "student3", "POST", "/api/consultations", {"teacher_id": 4})
        assert r.status == 201, r
        assert c.req(1, "teacher3", "POST", f"/api/consultations/{r.json['id']}/accept").status == 200
        assert placed(c)[r.json["id"]] in ("n1", "n2"), placed(c)
        # Its own go on: media through the entry point, to n0 by its prefix.
        recv = peer(via, "whep", two[0], st, "receive", 6, 20)
        rc, res, err = result(recv)
        assert rc == 0 and res["video_frames"] >= 20, (res, err[-1500:])
        assert res["location"].startswith(f"{h.url}/n/n0/"), res
        assert c.query(f"SELECT status FROM consultations WHERE id IN ({two[0]}, {two[1]})") == \
            [("live",), ("live",)]
        assert c.nodes[0].proc.poll() is None
        # Both end: n0 stops by itself, cleanly.
        for (teacher, cid) in zip(("teacher1", "teacher2"), two):
            assert c.req(2, teacher, "POST", f"/api/consultations/{cid}/end").status == 200
        wait_for(lambda: c.nodes[0].proc.poll() is not None, 60, what="n0 to exit")
        assert c.nodes[0].proc.returncode == 0, c.nodes[0].logtext()[-2000:]
        assert "drain: no consultation left here; stopping" in c.nodes[0].logtext()
        for p in pubs:
            p.kill()
            p.wait()
    finally:
        h.stop()


@test
def drain_timeout_moves_what_is_left():
    """A draining node whose consultation outlasts drain-timeout interrupts
    it (reason drained), clears its placement, and exits 0; the next publish
    places it on another node."""
    c = Cluster(1, "--drain-timeout", "2", media=True)
    online(c, 0)
    r = c.req(0, "student1", "POST", "/api/consultations", {"teacher_id": T1})
    cid = r.json["id"]
    assert c.req(0, "teacher1", "POST", f"/api/consultations/{cid}/accept").status == 200
    c.nodes.append(c.node("n1"))
    sse = SSE(c.nodes[1], c.login("student1"))
    os.kill(c.nodes[0].proc.pid, signal.SIGUSR1)
    sse.wait_type("consultation.interrupted", 60, reason="drained")
    wait_for(lambda: c.nodes[0].proc.poll() is not None, 60, what="n0 to exit")
    assert c.nodes[0].proc.returncode == 0, c.nodes[0].logtext()[-2000:]
    assert c.query(f"SELECT status, node_id FROM consultations WHERE id = {cid}") == \
        [("interrupted", None)]
    tt = c.login("teacher1")
    r = c.nodes[1].request("POST", f"/whip/consultations/{cid}", raw=offer(), token=tt,
                           headers={"Content-Type": "application/sdp"})
    assert r.status in (201, 400), r  # placed here (the fake offer may be refused by the worker)
    assert placed(c)[cid] == "n1", placed(c)
    sse.close()


@test
def one_node_on_sqlite_drains_on_sigusr1():
    """SIGUSR1 drains a single SQLite node too: /readyz 503 while its live
    consultation goes on, exit 0 once it has ended."""
    s = Server("--media-workers", "0")
    tt, st = s.login("teacher1"), s.login("student1")
    assert s.request("PUT", f"/api/teachers/{T1}/presence", {"status": "online"}, token=tt).status == 200
    cid = s.post("/api/consultations", {"teacher_id": T1}, token=st).json["id"]
    assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
    os.kill(s.proc.pid, signal.SIGUSR1)
    wait_for(lambda: s.get("/readyz").status == 503, 30, what="readyz to say draining")
    assert s.proc.poll() is None
    assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
    wait_for(lambda: s.proc.poll() is not None, 30, what="the node to exit")
    assert s.proc.returncode == 0, s.logtext()[-2000:]


@test
def rolling_upgrade_through_drain_loses_no_request():
    """scripts/rolling-upgrade.sh drains the three nodes one after the other
    while consultations of two pairs start and end through haproxy without
    pause; a node
    that exits 0 is started again (the test plays systemd's Restart=, with
    the same binary standing in for the new one).  No request of the
    workload fails, and every consultation ends with both recordings
    ready."""
    hport = free_port()
    c = Cluster(3, "--public-url", f"http://127.0.0.1:{hport}", "--presence-grace", "3600",
                media=True, fixed_ports=True)
    h = Haproxy(c, hport)
    stop = threading.Event()
    failures, done, restarts = [], [], []

    def supervise():
        while not stop.is_set():
            for n in c.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    rc = n.stop()
                    if rc != 0:
                        failures.append(f"{n.args} exited {rc}")
                        return
                    restarts.append(time.monotonic())
                    n.start()
            time.sleep(0.2)

    # Two pairs, each starting and ending consultations back to back: two
    # run at any time, and a drain meets them at every stage.
    pairs = [("teacher1", T1, "student1"), ("teacher2", T1 + 1, "student2")]
    try:
        adm = h.login("admin")
        for teacher, tid, _ in pairs:
            r = h.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"},
                          token=h.login(teacher))
            assert r.status == 200, r
    except BaseException:
        h.stop()
        raise
    via = Via(h.url)

    def workload(teacher, tid, student):
        tt, st = h.login(teacher), h.login(student)
        while not stop.is_set():
            r = h.request("POST", "/api/consultations", {"teacher_id": tid}, token=st)
            if r.status != 201:
                failures.append(("request", r))
                return
            cid = r.json["id"]
            r = h.request("POST", f"/api/consultations/{cid}/accept", token=tt)
            if r.status != 200:
                failures.append(("accept", r))
                return
            pubs = [peer(via, "whip", cid, tt, "publish", 8), peer(via, "whip", cid, st, "publish", 8)]
            for p in pubs:
                rc, res, err = result(p)
                if rc != 0 or res["status"] != 201 or res["timeline_ms"]["connected"] < 0:
                    failures.append(("publish", cid, res, err[-800:]))
            r = h.request("POST", f"/api/consultations/{cid}/end", token=tt)
            if r.status != 200:
                failures.append(("end", r))
                return
            done.append(cid)

    threads = [threading.Thread(target=supervise)] + \
        [threading.Thread(target=workload, args=p) for p in pairs]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(done) >= 2 or failures, 120, what="first consultations")
        t0 = time.monotonic()
        up = subprocess.run([os.path.join(ROOT, "scripts", "rolling-upgrade.sh"), h.url, "n0", "n1", "n2"],
                            env={**os.environ, "CONSULTD_ADMIN_TOKEN": adm, "ROLLING_TIMEOUT": "300"},
                            capture_output=True, text=True, timeout=900)
        took = time.monotonic() - t0
        n_during = len(done)
        wait_for(lambda: len(done) > n_during or failures, 120, what="a consultation after the upgrade")
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        h.stop()
    assert up.returncode == 0, (up.stderr, failures, [n.logtext()[-1500:] for n in c.nodes])
    assert not failures, failures
    assert len(restarts) == 3, restarts
    ids = ",".join(str(x) for x in done)
    def ready():
        rows = c.query(f"SELECT consultation_id, file, state FROM recordings WHERE consultation_id IN ({ids})"
                       " AND file IN ('teacher.webm', 'student.webm')")
        return len(rows) == 2 * len(done) and all(r[2] == "ready" for r in rows)
    try:
        wait_for(ready, 120, what="both recordings of every consultation ready")
    except AssertionError:
        rows = c.query(f"SELECT consultation_id, file, state, reason FROM recordings WHERE"
                       f" consultation_id IN ({ids}) AND state <> 'ready'")
        raise AssertionError((len(done), rows, up.stderr))
    print(f"# rolling upgrade of 3 nodes: {took:.0f} s; {len(done)} consultations started and"
          f" ended before, during and after it, none failed")
    for line in up.stderr.splitlines():
        print(f"#   {line}")


if __name__ == "__main__":
    run()
