#!/usr/bin/env python3
"""Consultations: teachers, presence, favorites, lifecycle, events, my page,
SSE, webhooks, admission control, rebuild-projections."""
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import threading
import time

from harness import BIN, SSE, Server, parallel, run, test, wait_for

T1, T2, T3 = 2, 3, 4          # teacher1..teacher3 in the demo seed
S1, S2, S3, S4, S5 = 5, 6, 7, 8, 9


def err(r, status, code=None):
    assert r.status == status, r
    if code:
        assert r.json["error"] == code, r
    return r.json


class World:
    """A demo server with everyone logged in."""

    def __init__(self, *args, **kw):
        self.s = Server(*args, **kw)
        self.tok = {u: self.s.login(u) for u in
                    ["admin", "teacher1", "teacher2", "teacher3", "student1", "student2", "student3"]}

    def req(self, user, method, path, body=None):
        return self.s.request(method, path, body=body, token=self.tok[user])

    def online(self, teacher, status="online"):
        tid = {"teacher1": T1, "teacher2": T2, "teacher3": T3}[teacher]
        r = self.req(teacher, "PUT", f"/api/teachers/{tid}/presence", {"status": status})
        assert r.status == 200 and r.json["status"] == status, r
        return r

    def teacher(self, tid, user="student1"):
        r = self.req(user, "GET", f"/api/teachers/{tid}")
        assert r.status == 200, r
        return r.json

    def request(self, student, tid):
        return self.req(student, "POST", "/api/consultations", {"teacher_id": tid})


@test
def teacher_list_fields_and_filter():
    w = World()
    w.online("teacher2")
    ts = w.req("student1", "GET", "/api/teachers").json["teachers"]
    assert len(ts) == 3
    for t in ts:
        assert set(t) == {"id", "display_name", "intro", "status", "popularity",
                          "consultation_count", "favorite"}, t
    assert "favorite" not in w.req("teacher1", "GET", "/api/teachers").json["teachers"][0]
    online = w.req("student1", "GET", "/api/teachers?status=online").json["teachers"]
    assert [t["id"] for t in online] == [T2], online
    err(w.req("student1", "GET", "/api/teachers?status=sleeping"), 400)
    err(w.req("student1", "GET", "/api/teachers/999"), 404)
    err(w.req("student1", "GET", f"/api/teachers/{S1}"), 404)  # a student is no teacher
    err(w.req("student1", "GET", "/api/teachers/x1"), 400, "bad_id")
    err(w.s.get("/api/teachers"), 401)


@test
def profile_intro_rules():
    w = World()
    html = "<script>alert(1)</script> & <b>bold</b>"
    r = w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": html})
    assert r.status == 200 and r.json["intro"] == html, r
    assert w.teacher(T1)["intro"] == html  # stored and returned as text, verbatim
    err(w.req("teacher2", "PUT", f"/api/teachers/{T1}/profile", {"intro": "x"}), 403)
    err(w.req("student1", "PUT", f"/api/teachers/{T1}/profile", {"intro": "x"}), 403)
    assert w.req("admin", "PUT", f"/api/teachers/{T1}/profile", {"intro": "by admin"}).status == 200
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": "x" * 2001}), 400)
    assert w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": "한" * 2000}).status == 200
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {}), 400, "missing_field")
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": 5}), 400)
    assert w.req("teacher1", "PUT", f"/api/teachers/{T1}/profile", {"intro": ""}).status == 200


@test
def presence_rules_and_logout():
    w = World()
    w.online("teacher1")
    assert w.teacher(T1)["status"] == "online"
    w.online("teacher1")  # idempotent
    err(w.req("teacher2", "PUT", f"/api/teachers/{T1}/presence", {"status": "offline"}), 403)
    err(w.req("student1", "PUT", f"/api/teachers/{T1}/presence", {"status": "online"}), 403)
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/presence", {"status": "busy"}), 400)
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/presence", {"status": 1}), 400)
    w.online("teacher1", "offline")
    assert w.teacher(T1)["status"] == "offline"
    w.online("teacher1")
    assert w.req("teacher1", "POST", "/api/logout").status == 200
    assert w.teacher(T1)["status"] == "offline"  # logging out is leaving


@test
def favorites_are_idempotent_and_counted():
    w = World()
    for _ in range(2):
        r = w.req("student1", "POST", f"/api/teachers/{T1}/favorite")
        assert r.status == 200 and r.json["favorite"] is True, r
    w.req("student2", "POST", f"/api/teachers/{T1}/favorite")
    wait_for(lambda: w.teacher(T1)["popularity"] == 2, 10, what="popularity 2")
    assert w.teacher(T1)["favorite"] is True
    assert w.teacher(T1, "student3")["favorite"] is False
    for _ in range(2):
        assert w.req("student1", "DELETE", f"/api/teachers/{T1}/favorite").status == 200
    wait_for(lambda: w.teacher(T1)["popularity"] == 1, 10, what="popularity 1")
    assert w.teacher(T1)["favorite"] is False
    err(w.req("teacher2", "POST", f"/api/teachers/{T1}/favorite"), 403)
    err(w.req("student1", "POST", "/api/teachers/999/favorite"), 404)
    err(w.req("student1", "POST", f"/api/teachers/{S2}/favorite"), 404)


@test
def full_lifecycle_and_counts():
    w = World()
    err(w.request("student1", T1), 409, "teacher_offline")
    w.online("teacher1")
    r = w.request("student1", T1)
    assert r.status == 201, r
    c = r.json
    assert c["status"] == "requested" and c["teacher"]["id"] == T1 and c["student"]["id"] == S1
    assert c["media"] == {"whip": f"/whip/consultations/{c['id']}", "whep": f"/whep/consultations/{c['id']}"}
    assert r.header("Location") == f"/api/consultations/{c['id']}"
    cid = c["id"]
    assert w.teacher(T1)["status"] == "busy"
    err(w.request("student2", T1), 409, "teacher_busy")
    err(w.req("teacher1", "PUT", f"/api/teachers/{T1}/presence", {"status": "offline"}), 409, "teacher_busy")
    err(w.req("teacher2", "POST", f"/api/consultations/{cid}/accept"), 404)  # not theirs
    err(w.req("student1", "POST", f"/api/consultations/{cid}/accept"), 403)
    r = w.req("teacher1", "POST", f"/api/consultations/{cid}/accept")
    assert r.status == 200 and r.json["status"] == "live" and r.json["started_at"], r
    assert w.req("student1", "GET", f"/api/consultations/{cid}").json["screens"] == []  # nobody shares
    err(w.req("student1", "POST", f"/api/consultations/{cid}/cancel"), 409, "invalid_transition")
    err(w.req("student1", "POST", f"/api/consultations/{cid}/end"), 403)
    assert w.teacher(T1)["status"] == "busy"
    before = w.teacher(T1)["consultation_count"]
    r = w.req("teacher1", "POST", f"/api/consultations/{cid}/end")
    assert r.status == 200 and r.json["status"] == "ended" and r.json["ended_at"], r
    err(w.req("teacher1", "POST", f"/api/consultations/{cid}/end"), 409, "invalid_transition")
    assert w.teacher(T1)["status"] == "online"
    wait_for(lambda: w.teacher(T1)["consultation_count"] == before + 1, 10, what="count + 1")


@test
def decline_cancel_free_the_teacher():
    w = World()
    w.online("teacher1")
    cid = w.request("student1", T1).json["id"]
    r = w.req("teacher1", "POST", f"/api/consultations/{cid}/decline")
    assert r.status == 200 and r.json["status"] == "declined" and r.json["end_reason"] == "declined"
    assert w.teacher(T1)["status"] == "online"
    cid = w.request("student2", T1).json["id"]
    err(w.req("student1", "POST", f"/api/consultations/{cid}/cancel"), 404)  # another student's
    assert w.req("student2", "POST", f"/api/consultations/{cid}/cancel").json["status"] == "canceled"
    err(w.req("teacher1", "POST", f"/api/consultations/{cid}/accept"), 409, "invalid_transition")
    assert w.teacher(T1)["status"] == "online"
    assert w.teacher(T1)["consultation_count"] == 0  # only ended ones count


@test
def unanswered_request_expires():
    w = World("--request-timeout", "1")
    w.online("teacher1")
    cid = w.request("student1", T1).json["id"]
    wait_for(lambda: w.req("student1", "GET", f"/api/consultations/{cid}").json["status"] == "expired",
             15, what="expiry")
    assert w.teacher(T1)["status"] == "online"
    err(w.req("teacher1", "POST", f"/api/consultations/{cid}/accept"), 409)


@test
def race_exactly_one_student_wins():
    s = Server()
    toks = [s.login(f"student{i}") for i in range(1, 6)]
    tt = s.login("teacher1")
    for round_ in range(3):
        s.request("PUT", f"/api/teachers/{T1}/presence", {"status": "online"}, token=tt)
        rs = parallel([lambda t=t: s.post("/api/consultations", {"teacher_id": T1}, token=t) for t in toks])
        codes = sorted(r.status for r in rs)
        assert codes == [201, 409, 409, 409, 409], (round_, rs)
        assert all(r.json["error"] == "teacher_busy" for r in rs if r.status == 409), rs
        won = [r for r in rs if r.status == 201][0].json["id"]
        assert s.post(f"/api/consultations/{won}/decline", token=tt).status == 200
    n = s.query("SELECT count(*) FROM consultations")[0][0]
    assert n == 3, n


@test
def consultation_visibility():
    w = World()
    w.online("teacher1")
    w.online("teacher2")
    c1 = w.request("student1", T1).json["id"]
    c2 = w.request("student2", T2).json["id"]
    assert w.req("student1", "GET", f"/api/consultations/{c1}").status == 200
    assert w.req("teacher1", "GET", f"/api/consultations/{c1}").status == 200
    assert w.req("admin", "GET", f"/api/consultations/{c1}").status == 200
    err(w.req("student2", "GET", f"/api/consultations/{c1}"), 404)
    err(w.req("teacher2", "GET", f"/api/consultations/{c1}"), 404)
    err(w.req("student1", "GET", "/api/consultations/99999"), 404)
    err(w.req("student1", "GET", "/api/consultations/abc"), 400, "bad_id")
    err(w.req("student1", "GET", "/api/consultations"), 403)
    mine = w.req("teacher1", "GET", "/api/consultations").json["consultations"]
    assert [c["id"] for c in mine] == [c1]
    allc = w.req("admin", "GET", "/api/consultations").json["consultations"]
    assert {c["id"] for c in allc} == {c1, c2}
    assert w.req("admin", "POST", f"/api/consultations/{c2}/decline").status == 403
    w.req("teacher2", "POST", f"/api/consultations/{c2}/accept")
    live = w.req("admin", "GET", "/api/consultations?status=live").json["consultations"]
    assert [c["id"] for c in live] == [c2]
    err(w.req("admin", "GET", "/api/consultations?status=weird"), 400)
    assert w.req("admin", "POST", f"/api/consultations/{c2}/end").json["end_reason"] == "ended_by_admin"


@test
def bad_request_bodies():
    w = World()
    for body, code in [({}, "missing_field"), ({"teacher_id": "2"}, "bad_field"),
                       ({"teacher_id": 0}, "bad_field"), ({"teacher_id": -3}, "bad_field"),
                       ({"teacher_id": 1.5}, "bad_field"), ({"teacher_id": None}, "bad_field")]:
        err(w.req("student1", "POST", "/api/consultations", body), 400, code)
    err(w.request("student1", 424242), 404)
    err(w.request("student1", S2), 404)
    err(w.req("teacher1", "POST", "/api/consultations", {"teacher_id": T2}), 403)
    r = w.s.post("/api/consultations", raw=b'{"teacher_id": 2', token=w.tok["student1"],
                 headers={"Content-Type": "application/json"})
    err(r, 400, "bad_json")


@test
def mypage_is_the_students_history():
    w = World()
    w.online("teacher1")
    w.online("teacher2")
    a = w.request("student1", T1).json["id"]
    w.req("teacher1", "POST", f"/api/consultations/{a}/accept")
    w.req("teacher1", "POST", f"/api/consultations/{a}/end")
    b = w.request("student1", T2).json["id"]
    w.req("teacher2", "POST", f"/api/consultations/{b}/decline")
    other = w.request("student2", T1).json["id"]

    def page():
        return w.req("student1", "GET", "/api/mypage").json["consultations"]
    # The read model is eventually consistent: wait for both events to land.
    wait_for(lambda: [(c["consultation_id"], c["status"]) for c in page()] ==
             [(b, "declined"), (a, "ended")], 10, what="my page")
    p = page()
    assert p[0]["status"] == "declined" and p[0]["teacher"]["id"] == T2
    assert p[1]["status"] == "ended" and p[1]["started_at"] and p[1]["ended_at"]
    assert p[1]["duration_seconds"] >= 0 and p[1]["recordings"] == []
    assert other not in [c["consultation_id"] for c in page()]
    err(w.req("teacher1", "GET", "/api/mypage"), 403)


@test
def sse_notifies_favoring_students_and_resumes():
    w = World()
    w.req("student1", "POST", f"/api/teachers/{T1}/favorite")
    fan = SSE(w.s, w.tok["student1"])
    other = SSE(w.s, w.tok["student2"])  # favors nobody
    teacher = SSE(w.s, w.tok["teacher1"])
    assert fan.status == 200
    w.online("teacher1")
    e = fan.wait_type("teacher.online", teacher_id=T1)
    assert e["data"]["data"]["status"] == "online" and e["id"] > 0
    cid = w.request("student1", T1).json["id"]
    teacher.wait_type("consultation.requested", consultation_id=cid)
    fan.wait_type("consultation.requested", consultation_id=cid)
    fan.close()
    w.req("teacher1", "POST", f"/api/consultations/{cid}/accept")
    w.req("teacher1", "POST", f"/api/consultations/{cid}/end")
    teacher.wait_type("consultation.ended", consultation_id=cid)
    # Reconnect with Last-Event-ID: exactly what was missed, in order.
    again = SSE(w.s, w.tok["student1"], last_event_id=e["id"])
    again.wait_type("consultation.ended", consultation_id=cid)
    ids = [x["id"] for x in again.events]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) and min(ids) > e["id"], ids
    assert "consultation.accepted" in again.types() and "consultation.requested" in again.types()
    # student2 saw nothing of teacher1 or of student1's consultation.
    time.sleep(0.3)
    assert other.types() == [], other.types()
    err_r = SSE(w.s, w.tok["student1"], last_event_id="abc")
    assert err_r.status == 400
    for x in (again, other, teacher):
        x.close()


@test
def sse_streams_are_capped_per_user():
    w = World("--sse-per-user", "2")
    a, b = SSE(w.s, w.tok["student1"]), SSE(w.s, w.tok["student1"])
    c = SSE(w.s, w.tok["student1"])
    assert (a.status, b.status, c.status) == (200, 200, 429), c.body
    d = SSE(w.s, w.tok["student2"])
    assert d.status == 200
    a.close()
    wait_for(lambda: SSE(w.s, w.tok["student1"]).status == 200, 20, what="a freed stream slot")


@test
def shutdown_ends_open_streams():
    w = World()
    streams = [SSE(w.s, w.tok[u]) for u in ("student1", "student2", "teacher1")]
    t0 = time.monotonic()
    assert w.s.stop() == 0
    assert time.monotonic() - t0 < 8, "open streams must not hold shutdown for the whole grace"
    for x in streams:
        x.wait_closed(5)


@test
def presence_grace_without_stream():
    w = World("--presence-grace", "2")
    sse = SSE(w.s, w.tok["teacher1"])
    w.online("teacher1")
    w.online("teacher2")  # teacher2 has no stream open
    wait_for(lambda: w.teacher(T2)["status"] == "offline", 20, what="teacher2 offline after grace")
    time.sleep(1)
    assert w.teacher(T1)["status"] == "online"
    sse.close()
    wait_for(lambda: w.teacher(T1)["status"] == "offline", 20, what="teacher1 offline after stream closed")
    # A busy teacher is never taken offline by the sweep.
    w.online("teacher3")
    s3 = SSE(w.s, w.tok["teacher3"])
    cid = w.request("student1", T3).json["id"]
    w.req("teacher3", "POST", f"/api/consultations/{cid}/accept")
    s3.close()
    time.sleep(4)
    assert w.teacher(T3)["status"] == "busy"


@test
def admission_control_caps_and_rate():
    w = World("--max-pending", "1", "--request-rate-per-min", "3")
    w.online("teacher1")
    w.online("teacher2")
    assert w.request("student1", T1).status == 201
    r = w.request("student2", T2)
    err(r, 503, "over_capacity")
    assert int(r.header("Retry-After")) > 0
    assert w.teacher(T2)["status"] == "online"  # nothing was reserved
    codes = [w.request("student3", T2).status for _ in range(4)]
    assert codes[:3] == [503, 503, 503] and codes[3] == 429, codes


@test
def request_flood_leaves_others_served():
    s = Server("--request-rate-per-min", "1000000")
    toks = [s.login(f"student{i}") for i in range(1, 6)]
    other = s.login("teacher3")
    stop = threading.Event()
    counts = {}

    def flood(tok):
        n = 0
        while not stop.is_set():
            r = s.post("/api/consultations", {"teacher_id": T1}, token=tok)
            assert r.status in (409, 429, 503), r
            n += 1
        counts[tok] = n
    threads = [threading.Thread(target=flood, args=(t,)) for t in toks]
    for t in threads:
        t.start()
    worst = 0.0
    for _ in range(50):
        t0 = time.monotonic()
        r = s.get("/api/teachers", token=other)
        worst = max(worst, time.monotonic() - t0)
        assert r.status == 200
    stop.set()
    for t in threads:
        t.join()
    assert sum(counts.values()) > 100, counts
    assert worst < 2.0, f"a normal user waited {worst:.2f}s during the flood"


class Receiver:
    """A webhook receiver on loopback that can fail its first N requests."""

    def __init__(self, fail_first=0, port=0):
        self.got = []
        self.fail_left = fail_first
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    fail = outer.fail_left > 0
                    if fail:
                        outer.fail_left -= 1
                    else:
                        outer.got.append((dict(self.headers), body))
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *a):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ids(self):
        with self.lock:
            return [json.loads(b)["id"] for _, b in self.got]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def event_ids(server):
    return [f"evt_{r[0]}" for r in server.query("SELECT seq FROM events ORDER BY seq")]


SECRET = "0123456789abcdef0123456789abcdef-s3cret"


@test
def webhooks_signed_retried_and_exactly_once():
    rcv = Receiver(fail_first=3)
    w = World("--webhook-urls", rcv.url, "--webhook-secret", SECRET, "--webhook-retry-ms", "100")
    w.req("student1", "POST", f"/api/teachers/{T1}/favorite")
    w.online("teacher1")
    cid = w.request("student1", T1).json["id"]
    w.req("teacher1", "POST", f"/api/consultations/{cid}/accept")
    w.req("teacher1", "POST", f"/api/consultations/{cid}/end")
    want = event_ids(w.s)
    assert len(want) >= 7
    wait_for(lambda: sorted(rcv.ids()) == sorted(want), 30, what="every event delivered")
    assert len(rcv.ids()) == len(set(rcv.ids())), "each event id once"
    for headers, body in rcv.got:
        # t=<unix>,v1=<HMAC of "t.body">: the receiver example of docs/api.md.
        fields = dict(p.split("=", 1) for p in headers["X-Consultd-Signature"].split(","))
        assert abs(time.time() - int(fields["t"])) < 300, headers
        sig = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + body,
                       hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], sig), headers
        assert headers["X-Consultd-Event-Id"] == json.loads(body)["id"]
    ds = w.req("admin", "GET", "/api/admin/webhook-deliveries").json["deliveries"]
    assert all(d["state"] == "delivered" for d in ds), ds
    assert sum(d["attempts"] for d in ds) == len(want) + 3, ds
    err(w.req("student1", "GET", "/api/admin/webhook-deliveries"), 403)
    rcv.close()


@test
def webhooks_survive_receiver_down_and_restart():
    # A port with nothing listening: deliveries fail and stay queued.
    probe = Receiver()
    port = probe.port
    probe.close()
    url = f"http://127.0.0.1:{port}/hook"
    w = World("--webhook-urls", url, "--webhook-secret", SECRET, "--webhook-retry-ms", "100")
    w.online("teacher1")
    cid = w.request("student1", T1).json["id"]
    w.req("teacher1", "POST", f"/api/consultations/{cid}/decline")
    wait_for(lambda: any(d["attempts"] > 0 for d in
                         w.req("admin", "GET", "/api/admin/webhook-deliveries").json["deliveries"]),
             20, what="a failed attempt")
    want = event_ids(w.s)
    assert w.s.stop() == 0
    rcv = Receiver(port=port)
    w.s.start()
    wait_for(lambda: sorted(rcv.ids()) == sorted(want), 30, what="delivery after restart")
    assert len(rcv.ids()) == len(set(rcv.ids()))
    rcv.close()


@test
def chat_is_part_of_the_consultation():
    """Messages: by the participants while the consultation is open, 1 to
    2,000 characters (not bytes), as sent (markup is text), each an event to
    both; listed for them and the admin; counted on the my page; refused
    after the end, from others, empty, too long, too fast."""
    w = World("--message-rate-per-min", "5")
    w.online("teacher1")
    cid = w.request("student1", T1).json["id"]
    path = f"/api/consultations/{cid}/messages"
    tsse = SSE(w.s, w.tok["teacher1"])
    body = 'hello <b>world</b> & "you"\n한국어 https://example.com/a?b=1'
    r = w.req("student1", "POST", path, {"body": body})  # while requested
    assert r.status == 201, r
    m = r.json
    assert m["body"] == body and m["author"] == {"id": S1, "role": "student"}, m
    assert m["consultation_id"] == cid and m["offset_seconds"] == 0, m
    ev = tsse.wait_type("message.created", 20)
    msg = ev["data"]["data"]["message"]
    assert msg["body"] == body and msg["id"] == m["id"] and msg["role"] == "student", ev
    w.req("teacher1", "POST", f"/api/consultations/{cid}/accept")
    big = "가" * 2000  # 2,000 characters, 6,000 bytes
    r = w.req("teacher1", "POST", path, {"body": big})
    assert r.status == 201 and r.json["author"]["role"] == "teacher", r
    for bad in ("", "   \n\t", "가" * 2001):
        err(w.req("student1", "POST", path, {"body": bad}), 400)
    err(w.req("student1", "POST", path, {"text": "x"}), 400)
    err(w.req("student1", "POST", path, {"body": 7}), 400)
    err(w.req("student2", "POST", path, {"body": "not mine"}), 404)
    err(w.req("student2", "GET", path), 404)
    err(w.req("admin", "POST", path, {"body": "admin"}), 403, "not_participant")
    for who in ("student1", "teacher1", "admin"):
        got = w.req(who, "GET", path).json["messages"]
        assert [x["body"] for x in got] == [body, big], got
    assert got[1]["offset_seconds"] >= 0
    # Rate: 5 a minute per user; student1 has sent 1 (the bad ones are
    # refused before they count).
    for _ in range(4):
        assert w.req("student1", "POST", path, {"body": "ok"}).status == 201
    r = w.req("student1", "POST", path, {"body": "one too many"})
    err(r, 429, "rate_limited")
    assert int(r.header("Retry-After")) > 0
    w.req("teacher1", "POST", f"/api/consultations/{cid}/end")
    err(w.req("teacher1", "POST", path, {"body": "too late"}), 409, "not_open")
    assert w.req("teacher1", "GET", f"/api/consultations/{cid}").json["messages"] == 6
    wait_for(lambda: w.req("student1", "GET", "/api/mypage").json["consultations"][0]["messages"] == 6,
             10, what="the my page's count")
    tsse.close()


def line(w, who, tid=T1):
    return w.req(who, "GET", f"/api/teachers/{tid}/line").json


@test
def a_waiting_line_offers_the_teacher_to_the_next_in_order():
    """Students line up behind a busy teacher and see their places; one
    leaves and the others move up; when the teacher's consultation ends the
    first is offered one at once (from_line), a decline moves to the next,
    and the teacher is never in two at a time.  The rules: not while the
    teacher is free or offline, not when closed or full, one line (or
    consultation) at a time; going offline empties the line."""
    w = World("--line-max", "3")
    for u in ("student4", "student5"):
        w.tok[u] = w.s.login(u)
    path = f"/api/teachers/{T1}/line"
    err(w.req("student2", "POST", path), 409, "teacher_offline")
    w.online("teacher1")
    err(w.req("student2", "POST", path), 409, "teacher_free")
    first = w.request("student1", T1).json["id"]
    w.req("teacher1", "POST", f"/api/consultations/{first}/accept")
    err(w.req("student1", "POST", path), 409, "already_waiting")  # in a consultation
    sse = {u: SSE(w.s, w.tok[u]) for u in ("student2", "student3", "teacher1")}
    for k, u in enumerate(("student2", "student3", "student4"), 1):
        r = w.req(u, "POST", path)
        assert r.status == 201 and r.json["position"] == k and r.json["ahead"] == k - 1, r
    assert w.req("student2", "POST", path).json["position"] == 1  # joining again: the same place
    err(w.req("student5", "POST", path), 409, "line_full")
    err(w.req("teacher1", "POST", path), 403)
    t = line(w, "teacher1")
    assert [x["id"] for x in t["students"]] == [S2, S3, S4] and t["open"] and t["length"] == 3, t
    err(w.req("teacher2", "GET", path), 403)
    # The third in line hears that the second left, and moves up.
    assert w.req("student3", "DELETE", path).status == 200
    err(w.req("student3", "DELETE", path), 404)
    sse["student2"].wait_type("line.left", 20, student_id=S3)
    assert line(w, "student4")["position"] == 2 and line(w, "student2")["position"] == 1
    # Closed: nobody new, the waiting stay.
    assert w.req("teacher1", "PUT", path, {"open": False}).json["open"] is False
    err(w.req("student5", "POST", path), 409, "line_closed")
    err(w.req("teacher1", "PUT", path, {"open": "no"}), 400)
    assert w.req("teacher1", "PUT", path, {"open": True}).status == 200
    # The teacher ends: the first in line gets a request at once.
    w.req("teacher1", "POST", f"/api/consultations/{first}/end")
    ev = sse["student2"].wait_type("consultation.requested", 20, student_id=S2)
    offered = ev["data"]["data"]["consultation_id"]
    c = w.req("teacher1", "GET", f"/api/consultations/{offered}").json
    assert c["status"] == "requested" and c["from_line"] is True and c["student"]["id"] == S2, c
    assert w.teacher(T1)["status"] == "busy"
    assert line(w, "student4")["position"] == 1 and line(w, "student2")["position"] == 0
    # Declined: the next one is offered.
    w.req("teacher1", "POST", f"/api/consultations/{offered}/decline")
    open_ = w.req("admin", "GET", "/api/consultations?status=requested").json["consultations"]
    assert [(x["student"]["id"], x["from_line"]) for x in open_] == [(S4, True)], open_
    assert line(w, "teacher1")["length"] == 0
    # Accepted, it is an ordinary consultation.
    assert w.req("teacher1", "POST", f"/api/consultations/{open_[0]['id']}/accept").status == 200
    # The next one waits; the teacher ends; the offer goes out at once;
    # declined with nobody left, the teacher is free again.
    assert w.req("student5", "POST", path).status == 201
    w.req("teacher1", "POST", f"/api/consultations/{open_[0]['id']}/end")
    ev = sse["teacher1"].wait_type("line.offered", 20, student_id=S5)
    w.req("teacher1", "POST", f"/api/consultations/{ev['data']['data']['consultation_id']}/decline")
    assert w.teacher(T1)["status"] == "online" and line(w, "teacher1")["length"] == 0
    err(w.req("student2", "POST", path), 409, "teacher_free")
    # A canceled request frees the teacher too: the line's first is offered.
    first = w.request("student1", T1).json["id"]
    assert w.req("student2", "POST", path).status == 201
    w.req("student1", "POST", f"/api/consultations/{first}/cancel")
    sse["student2"].wait_type("line.offered", 20, student_id=S2)
    # Asking another teacher directly leaves the line.
    w.online("teacher2")
    second = w.req("admin", "GET", "/api/consultations?status=requested").json["consultations"][0]["id"]
    w.req("teacher1", "POST", f"/api/consultations/{second}/decline")
    first = w.request("student1", T1).json["id"]
    assert w.req("student3", "POST", path).status == 201
    assert w.request("student3", T2).status == 201
    assert line(w, "teacher1")["length"] == 0
    for s_ in sse.values():
        s_.close()


@test
def line_races_keep_one_order_and_one_consultation():
    """Two students join the line while the teacher ends, all at once,
    many times: each time the teacher holds at most one open consultation,
    whoever was offered was first in line, and the line keeps its order."""
    w = World("--line-max", "10", "--write-rate-per-min", "100000")
    w.online("teacher1")
    for _ in range(8):
        first = w.request("student1", T1).json["id"]
        w.req("teacher1", "POST", f"/api/consultations/{first}/accept")
        parallel([lambda: w.req("student2", "POST", f"/api/teachers/{T1}/line"),
                  lambda: w.req("student3", "POST", f"/api/teachers/{T1}/line"),
                  lambda: w.req("teacher1", "POST", f"/api/consultations/{first}/end")])
        opened = w.s.query(f"SELECT student_id FROM consultations WHERE teacher_id = {T1}"
                           " AND status IN ('requested','live','interrupted')")
        assert len(opened) <= 1, opened
        waiting = [x["id"] for x in line(w, "teacher1")["students"]]
        if opened:
            # The offer went to the first in line; the other still waits.
            assert opened[0][0] in (S2, S3) and opened[0][0] not in waiting, (opened, waiting)
        # Clean up for the next round: nobody waits, nobody is in a call.
        for u in ("student2", "student3"):
            w.req(u, "DELETE", f"/api/teachers/{T1}/line")
        for (cid,) in w.s.query(f"SELECT id FROM consultations WHERE teacher_id = {T1}"
                                " AND status = 'requested'"):
            w.req("teacher1", "POST", f"/api/consultations/{cid}/decline")
        assert w.teacher(T1)["status"] == "online"


@test
def losing_the_events_stream_leaves_the_line():
    w = World("--presence-grace", "2")
    w.online("teacher1")
    first = w.request("student1", T1).json["id"]
    w.req("teacher1", "POST", f"/api/consultations/{first}/accept")
    keep = SSE(w.s, w.tok["student2"])
    assert w.req("student2", "POST", f"/api/teachers/{T1}/line").status == 201
    assert w.req("student3", "POST", f"/api/teachers/{T1}/line").status == 201  # no stream
    tsse = SSE(w.s, w.tok["teacher1"])
    tsse.wait_type("line.left", 20, student_id=S3)
    assert [x["id"] for x in line(w, "teacher1")["students"]] == [S2]
    keep.close()
    wait_for(lambda: line(w, "teacher1")["length"] == 0, 20, what="the second to go")
    tsse.close()


def snapshot(server):
    return {
        "stats": server.query("SELECT * FROM teacher_stats WHERE popularity <> 0"
                              " OR consultation_count <> 0 ORDER BY teacher_id"),
        "mypage": server.query("SELECT * FROM mypage ORDER BY consultation_id"),
    }


@test
def rebuild_projections_equals_live():
    w = World()
    for st in ("student1", "student2", "student3"):
        w.req(st, "POST", f"/api/teachers/{T1}/favorite")
    w.req("student2", "DELETE", f"/api/teachers/{T1}/favorite")
    w.online("teacher1")
    w.online("teacher2")
    for st in ("student1", "student2"):
        cid = w.request(st, T1).json["id"]
        w.req("teacher1", "POST", f"/api/consultations/{cid}/accept")
        assert w.req(st, "POST", f"/api/consultations/{cid}/messages", {"body": "hi"}).status == 201
        w.req("teacher1", "POST", f"/api/consultations/{cid}/end")
    cid = w.request("student3", T2).json["id"]
    w.req("student3", "POST", f"/api/consultations/{cid}/cancel")
    wait_for(lambda: w.teacher(T1)["consultation_count"] == 2, 10)
    # Every event applied before the read models are compared.
    wait_for(lambda: "consultd_event_lag 0\n" in w.s.get("/metrics").body, 10, what="dispatcher caught up")
    live_api = (w.req("student1", "GET", "/api/mypage").json["consultations"],
                w.req("student1", "GET", "/api/teachers").json["teachers"])
    assert w.s.stop() == 0
    live = snapshot(w.s)
    assert live["stats"] and live["mypage"]
    # Wreck the read models, then rebuild them from the log.
    w.s.query("UPDATE teacher_stats SET popularity = 99")
    w.s.query("DELETE FROM mypage WHERE consultation_id = 1")
    p = subprocess.run([BIN, "rebuild-projections"] + w.s.db_args,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert snapshot(w.s) == live
    w.s.start()
    tok = w.s.login("student1")
    after_api = (w.s.get("/api/mypage", token=tok).json["consultations"],
                 w.s.get("/api/teachers", token=tok).json["teachers"])
    assert after_api == live_api


@test
def events_survive_restart_and_nothing_double_applies():
    w = World()
    w.req("student1", "POST", f"/api/teachers/{T1}/favorite")
    w.req("student2", "POST", f"/api/teachers/{T1}/favorite")
    wait_for(lambda: w.teacher(T1)["popularity"] == 2, 10)
    w.s.kill()  # no clean shutdown
    w.s.start()
    tok = w.s.login("student1")
    wait_for(lambda: "consultd_event_lag 0\n" in w.s.get("/metrics").body, 10, what="dispatcher caught up")
    assert w.s.get(f"/api/teachers/{T1}", token=tok).json["popularity"] == 2
    if not w.s.database:
        assert w.s.query("PRAGMA integrity_check")[0][0] == "ok"


if __name__ == "__main__":
    run()
