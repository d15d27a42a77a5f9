"""Accounts, sessions and limits a school can live with (issue 20).

Each test reproduces one finding of the issue against the real consultd:
a class behind one address, lockouts keyed by (username, address), the
race of concurrent guesses, revocation reaching open event streams,
same-origin writes, demo accounts, the public surface of /readyz and
/metrics, and password changes.
"""
import os
import socket
import time

from harness import SSE, Server, parallel, run, test, wait_for


def err(r, status, code=None):
    assert r.status == status, (status, r.status, r.body)
    if code:
        assert r.json["error"] == code, r.body
    return r


def make_students(s, admin, n, prefix="pupil"):
    """N new students with the password 'longenough' (created in parallel:
    each is an argon2 hash)."""
    names = [f"{prefix}{i}" for i in range(n)]

    def add(name):
        return lambda: s.post("/api/users", {"username": name, "password": "longenough",
                                             "role": "student"}, token=admin).status

    assert parallel([add(n_) for n_ in names]) == [201] * n
    return names


def login(s, user, password="longenough", xff=None):
    h = {"X-Forwarded-For": xff} if xff else None
    return s.post("/api/login", {"username": user, "password": password}, headers=h)


@test
def a_class_behind_one_address_logs_in_at_once():
    """Finding 1: 40 students from one address within a minute, all 200
    (the old default, 30 a minute, refused the 31st)."""
    s = Server("--media-workers", "0")
    admin = s.login("admin")
    names = make_students(s, admin, 40)
    t0 = time.monotonic()
    codes = [login(s, n).status for n in names]
    assert codes == [200] * 40, codes
    took = time.monotonic() - t0
    assert took < 60
    print(f"# 40 logins from one address: all 200 in {took:.1f} s")


@test
def behind_a_trusted_proxy_each_client_has_its_own_budget():
    """Finding 1: from a trusted proxy the client is the right-most
    untrusted X-Forwarded-For hop; from anyone else the header is ignored."""
    s = Server("--media-workers", "0", "--login-ip-per-min", "3",
               "--trusted-proxies", "127.0.0.1, 10.0.0.0/8")
    # Client A through the proxy chain "A, 10.1.2.3" (10/8 is trusted too).
    codes = [login(s, "student1", "demo", xff="203.0.113.7, 10.1.2.3").status for _ in range(4)]
    assert codes == [200, 200, 200, 429], codes
    # Client B is not affected by A.
    assert login(s, "student1", "demo", xff="203.0.113.8").status == 200
    # A client cannot pick its address: only the right-most untrusted hop counts.
    assert login(s, "student1", "demo", xff="198.51.100.1, 203.0.113.7").status == 429
    # Forwarded (RFC 7239) when there is no X-Forwarded-For.
    h = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}
    assert s.post("/api/login", {"username": "student1", "password": "demo"},
                  headers=h).status == 200
    # Without trusted-proxies the header means nothing: one budget for all.
    t = Server("--media-workers", "0", "--login-ip-per-min", "3")
    codes = [login(t, "student1", "demo", xff=f"203.0.113.{i}").status for i in range(4)]
    assert codes == [200, 200, 200, 429], codes


@test
def failures_elsewhere_never_lock_the_owner_out():
    """Finding 2: wrong passwords for admin from one address lock that
    (username, address) pair only; the owner elsewhere logs in."""
    # A lock of 4 failures (the default is 10), so that the lock, not the
    # timing of the growing waits before it, is what is checked.
    s = Server("--media-workers", "0", "--trusted-proxies", "127.0.0.1",
               "--login-user-fail-per-15min", "4")
    attacker = "198.51.100.66"
    codes = []
    for _ in range(12):
        r = login(s, "admin", "wrong-password", xff=attacker)
        codes.append(r.status)
        if r.status == 429:
            break
    assert codes == [401, 401, 401, 401, 429], codes
    assert int(r.header("Retry-After")) > 0
    assert login(s, "admin", "demo", xff="203.0.113.1").status == 200
    # The attacker's address stays refused even with the right password.
    err(login(s, "admin", "demo", xff=attacker), 429, "rate_limited")
    # The growing waits between the 4th and the 10th failure are timing, and
    # are checked in the unit test /auth/backoff, not here.


@test
def concurrent_guesses_are_counted_when_queued():
    """Finding 3: 30 wrong passwords at once for one username from one
    address: at most login-user-fail-per-15min of them are hashed (the rest
    429); the old check let about 30 through."""
    s = Server("--media-workers", "0", "--login-user-fail-per-15min", "10")
    rs = parallel([lambda: login(s, "teacher1", "wrong-password") for _ in range(30)])
    codes = sorted(r.status for r in rs)
    assert codes.count(401) <= 10 and codes.count(401) >= 1, codes
    print(f"# 30 concurrent wrong passwords: {codes.count(401)} hashed (401), "
          f"{codes.count(429)} refused (429)")
    assert set(codes) <= {401, 429}, codes


@test
def revocation_ends_open_event_streams():
    """Finding 4: logout, deletion, a password change and expiry end the
    session's streams (within a second, at most a few on a busy machine)."""
    s = Server("--media-workers", "0", "--session-ttl", "60")
    admin = s.login("admin")
    # Logout.
    tok = s.login("student1")
    sse = SSE(s, tok)
    assert sse.status == 200
    t0 = time.monotonic()
    assert s.post("/api/logout", token=tok).status == 200
    sse.wait_closed(10)
    logout_s = time.monotonic() - t0
    # Deletion: every stream of that user.
    names = make_students(s, admin, 1, prefix="gone")
    tok = login(s, names[0]).json["token"]
    uid = s.get("/api/me", token=tok).json["id"]
    a, b = SSE(s, tok), SSE(s, tok)
    assert s.request("DELETE", f"/api/users/{uid}", token=admin).status == 200
    a.wait_closed(10)
    b.wait_closed(10)
    # A password change keeps this session and ends the others.
    t1 = s.login("student2")
    t2 = s.login("student2")
    keep, other = SSE(s, t1), SSE(s, t2)
    r = s.request("PUT", "/api/me/password", {"current_password": "demo",
                                              "new_password": "a-new-password"}, token=t1)
    assert r.status == 200, r
    other.wait_closed(10)
    assert not keep.closed
    assert s.get("/api/me", token=t2).status == 401
    assert s.get("/api/me", token=t1).status == 200
    keep.close()
    print(f"# stream ended {logout_s * 1000:.0f} ms after logout")


@test
def an_expired_session_ends_its_stream():
    """Finding 4: a stream ends within a second of its session's expiry
    (made 3 s from now in the database, as the clock would make it)."""
    s = Server("--media-workers", "0")
    tok = s.login("student1")
    s.query(f"UPDATE sessions SET expires_at = {int(time.time() * 1000) + 3000}")
    sse = SSE(s, tok)
    assert sse.status == 200
    sse.wait_closed(30)
    assert s.get("/api/me", token=tok).status == 401


@test
def json_bodies_need_their_content_type():
    """Finding 5: no Content-Type, text/plain and prefixes are 415."""
    s = Server("--media-workers", "0")
    admin = s.login("admin")
    body = b'{"username": "ctype", "password": "longenough", "role": "student"}'
    for ct in (None, "text/plain", "application/jsonx", "application/json-patch+json"):
        h = {"Authorization": f"Bearer {admin}"}
        if ct:
            h["Content-Type"] = ct
        err(s.request("POST", "/api/users", raw=body, headers=h), 415, "unsupported_media_type")
    h = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json; charset=utf-8"}
    assert s.request("POST", "/api/users", raw=body, headers=h).status == 201


@test
def cookie_writes_must_come_from_our_pages():
    """Finding 5: a write with the session cookie needs Origin = public-url's
    origin or Sec-Fetch-Site: same-origin; bearer tokens need neither."""
    s = Server("--media-workers", "0")
    r = s.post("/api/login", {"username": "teacher1", "password": "demo"})
    cookie = r.header("Set-Cookie").split(";")[0]
    assert cookie.startswith("consultd_session=")  # plain http: no __Host- prefix
    path = "/api/teachers/2/presence"
    base = {"Cookie": cookie}
    err(s.request("PUT", path, {"status": "online"}, headers=base), 403, "cross_origin")
    evil = dict(base, Origin="http://evil.school.example")
    err(s.request("PUT", path, {"status": "online"}, headers=evil), 403, "cross_origin")
    err(s.request("PUT", path, {"status": "online"},
                  headers=dict(base, **{"Sec-Fetch-Site": "same-site"})), 403, "cross_origin")
    ok = dict(base, Origin=f"http://{s.host}:{s.port}")
    assert s.request("PUT", path, {"status": "online"}, headers=ok).status == 200
    same = dict(base, **{"Sec-Fetch-Site": "same-origin"})
    assert s.request("PUT", path, {"status": "offline"}, headers=same).status == 200
    assert s.get("/api/me", headers=base).status == 200  # reads need nothing
    tok = s.login("teacher1")
    assert s.request("PUT", path, {"status": "online"}, token=tok).status == 200
    # Over https the cookie is __Host- prefixed and Secure.
    port = free_port()
    h = Server("--media-workers", "0", "--listen", f"127.0.0.1:{port}", "--public-url",
               f"https://127.0.0.1:{port}", wait=False)
    wait_for(lambda: "public URL https://" in h.logtext(), 30, what="the https server")
    h.host, h.port = "127.0.0.1", port
    r = h.post("/api/login", {"username": "student1", "password": "demo"})
    c = r.header("Set-Cookie")
    assert c.startswith("__Host-consultd_session=") and "Secure" in c and "Path=/" in c, c
    hc = {"Cookie": c.split(";")[0], "Origin": f"https://127.0.0.1:{port}"}
    assert h.get("/api/me", headers={"Cookie": c.split(";")[0]}).status == 200
    assert h.request("POST", "/api/logout", headers=hc).status == 200


@test
def demo_accounts_only_work_in_demo_mode():
    """Finding 7: after a start with --demo, a start without it refuses the
    demo accounts (and says so in the log); --demo off loopback needs
    --demo-public."""
    s = Server("--media-workers", "0")
    s.login("admin")
    s.stop()
    t = Server("--media-workers", "0", demo=False, data_dir=s.data_dir)
    err(login(t, "admin", "demo"), 403, "demo_disabled")
    err(login(t, "student1", "demo"), 403, "demo_disabled")
    assert "demo account" in t.logtext()
    t.stop()
    bad = Server("--media-workers", "0", "--listen", "0.0.0.0:0", wait=False)
    assert bad.proc.wait(20) != 0
    assert "demo-public" in bad.logtext(), bad.logtext()
    # With --demo-public the configuration is accepted (192.0.2.1 is not
    # ours, so binding fails next: nothing listens off loopback in a test).
    ok = Server("--media-workers", "0", "--listen", "192.0.2.1:0", "--demo-public", wait=False)
    assert ok.proc.wait(20) != 0
    assert "demo-public" not in ok.logtext() and "cannot listen" in ok.logtext(), ok.logtext()


@test
def webhooks_need_a_real_secret():
    """Finding 8: webhook URLs with an empty or short secret do not start."""
    for secret in ([], ["--webhook-secret", "short"]):
        bad = Server("--media-workers", "0", "--webhook-urls", "http://127.0.0.1:9/hook",
                     *secret, wait=False)
        assert bad.proc.wait(20) != 0
        assert "32 bytes" in bad.logtext(), bad.logtext()


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


@test
def readyz_names_the_check_and_metrics_can_move():
    """Finding 10: /readyz says which check failed, not its error text;
    metrics-listen takes /metrics off the public port."""
    s = Server("--media-workers", "1", env={"CONSULTD_MEDIA_BIN": "/nonexistent/consultd-media"})
    r = wait_for(lambda: (lambda x: x if x.status == 503 else None)(s.get("/readyz")), 30,
                 what="readyz 503")
    assert r.json["not_ready"] == ["media"], r.body
    assert r.json["checks"]["media"] == "failing", r.body
    assert "nonexistent" not in r.body and "worker" not in r.json["checks"]["media"]
    port = free_port()
    m = Server("--media-workers", "0", "--metrics-listen", f"127.0.0.1:{port}")
    err(m.get("/metrics"), 404)
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    resp = c.getresponse()
    assert resp.status == 200 and b"consultd_build_info" in resp.read()
    c.close()


@test
def passwords_change_and_reset():
    """Finding 10: PUT /api/me/password and an admin's reset."""
    s = Server("--media-workers", "0")
    admin = s.login("admin")
    names = make_students(s, admin, 1, prefix="pw")
    tok = login(s, names[0]).json["token"]
    err(s.request("PUT", "/api/me/password", {"current_password": "wrong-one",
                                             "new_password": "another-one"}, token=tok),
        403, "invalid_credentials")
    err(s.request("PUT", "/api/me/password", {"current_password": "longenough",
                                             "new_password": "short"}, token=tok), 400)
    assert s.request("PUT", "/api/me/password", {"current_password": "longenough",
                                                 "new_password": "another-one"},
                     token=tok).status == 200
    assert login(s, names[0], "another-one").status == 200
    uid = s.get("/api/me", token=tok).json["id"]
    assert s.post(f"/api/users/{uid}/password", {"password": "reset-by-admin"},
                  token=admin).status == 200
    assert s.get("/api/me", token=tok).status == 401  # every session ended
    assert login(s, names[0], "reset-by-admin").status == 200
    err(s.post("/api/users/999999/password", {"password": "reset-by-admin"}, token=admin), 404)


@test
def a_favorite_flood_is_refused_and_the_database_stays_small():
    """Finding 6: 10,000 favorite toggles from one student: past
    write-rate-per-min they are 429 (no event, no webhook row), the database
    stays under 2 MiB, and another user's requests go on meanwhile."""
    import threading
    s = Server("--media-workers", "0")
    mallory = s.login("student1")
    other = s.login("student2")
    codes = {}
    lock = threading.Lock()
    latencies = []
    stop = threading.Event()

    def flood(k):
        for i in range(1250):
            method = "POST" if (i + k) % 2 == 0 else "DELETE"
            r = s.request(method, "/api/teachers/2/favorite", token=mallory)
            with lock:
                codes[r.status] = codes.get(r.status, 0) + 1

    def bystander():
        while not stop.is_set():
            t0 = time.monotonic()
            r = s.get("/api/teachers", token=other)
            assert r.status == 200, r
            latencies.append(time.monotonic() - t0)

    b = threading.Thread(target=bystander)
    b.start()
    parallel([lambda k=k: flood(k) for k in range(8)])
    stop.set()
    b.join()
    ok = codes.get(200, 0)
    assert sum(codes.values()) == 10000 and set(codes) <= {200, 429}, codes
    assert ok <= 2 * 60, codes  # one minute's budget (a window boundary may give two)
    size = sum(os.path.getsize(os.path.join(s.data_dir, f)) for f in os.listdir(s.data_dir)
               if f.startswith("consultd.db"))
    assert size < 2 * 1024 * 1024, size
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"# 10,000 toggles: {ok} accepted; database {size // 1024} KiB; "
          f"bystander {len(latencies)} requests, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms,"
          f" p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 2.0, latencies[-1]  # generous: CI shares two cores


@test
def event_retention_prunes_what_no_read_model_needs():
    """Finding 6: events past event-retention-days that are applied and
    delivered go (presence, favorites; consultation events stay); a reader
    whose Last-Event-ID is older gets "reset"; popularity survives a
    rebuild of the read models."""
    import subprocess
    from harness import BIN
    s = Server("--media-workers", "0", "--event-retention-days", "1")
    admin, teacher, student = s.login("admin"), s.login("teacher1"), s.login("student1")
    assert s.post("/api/teachers/2/favorite", token=student).status == 200
    for st in ("online", "offline", "online"):
        assert s.request("PUT", "/api/teachers/2/presence", {"status": st},
                         token=teacher).status == 200
    cid = s.post("/api/consultations", {"teacher_id": 2}, token=student).json["id"]
    assert s.post(f"/api/consultations/{cid}/cancel", token=student).status == 200
    wait_for(lambda: s.get("/metrics").body.count("consultd_event_lag 0") == 1, 10,
             what="events applied")
    before = s.query("SELECT count(*) FROM events")[0][0]
    s.query("UPDATE events SET created_at = created_at - 2 * 86400000")
    r = s.post("/api/admin/retention/run", token=admin)
    assert r.status == 200 and r.json["event_rows_deleted"] >= 5, r
    types = [t for (t,) in s.query("SELECT type FROM events ORDER BY seq")]
    assert types and all(t.startswith(("consultation.", "recording.")) for t in types), types
    assert len(types) < before
    # A reader who last saw event 1 cannot be brought up to date: reset.
    sse = SSE(s, student, last_event_id=1)
    e = sse.wait(lambda e: True, timeout=10)
    assert e["event"] == "reset" and e["data"]["reason"] == "history_pruned", e
    sse.close()
    assert s.get("/api/teachers/2", token=student).json["popularity"] == 1
    assert s.stop() == 0
    p = subprocess.run([BIN, "rebuild-projections"] + s.db_args,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    s.start()
    student = s.login("student1")
    assert s.get("/api/teachers/2", token=student).json["popularity"] == 1


@test
def turn_credentials_only_for_participants():
    """Finding 9: TURN credentials only for a participant of a requested or
    live consultation, valid media-turn-ttl (default 2 h), rate-limited."""
    s = Server("--media-workers", "0", "--media-turn", "turn:127.0.0.1:3478?transport=udp",
               "--media-turn-secret", "turn-secret", "--media-stun", "stun:127.0.0.1:3478")
    student, teacher = s.login("student1"), s.login("teacher1")
    r = s.get("/api/ice-servers", token=student)
    assert r.status == 200 and all("username" not in x for x in r.json["ice_servers"]), r
    assert s.request("PUT", "/api/teachers/2/presence", {"status": "online"},
                     token=teacher).status == 200
    assert s.post("/api/consultations", {"teacher_id": 2}, token=student).status == 201
    r = s.get("/api/ice-servers", token=student)
    turn = [x for x in r.json["ice_servers"] if "username" in x]
    assert len(turn) == 1 and r.json["ttl"] == 7200, r
    expires = int(turn[0]["username"].split(":")[0])
    assert 7100 < expires - time.time() <= 7200
    codes = [s.get("/api/ice-servers", token=student).status for _ in range(25)]
    assert 429 in codes and codes.count(200) <= 20, codes


@test
def webhooks_follow_no_redirect_and_log_no_credentials():
    """Finding 8: a 302 from a receiver is a failed attempt (the target it
    names gets nothing), and the URL is logged without its password."""
    import http.server
    import threading
    hits = {"target": 0, "redirector": 0}

    class Target(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            hits["target"] += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    where = f"http://127.0.0.1:{target.server_address[1]}/stolen"

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            hits["redirector"] += 1
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", where)
            self.end_headers()

        def log_message(self, *a):
            pass

    red = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=red.serve_forever, daemon=True).start()
    url = f"http://hookuser:hookpass@127.0.0.1:{red.server_address[1]}/hook?token=secret-query"
    s = Server("--media-workers", "0", "--webhook-urls", url, "--webhook-secret", "k" * 32,
               "--webhook-retry-ms", "100", "--webhook-max-attempts", "2")
    admin = s.login("admin")
    student = s.login("student1")
    assert s.post("/api/teachers/2/favorite", token=student).status == 200
    ds = wait_for(lambda: [d for d in s.get("/api/admin/webhook-deliveries", token=admin)
                           .json["deliveries"] if d["state"] == "failed"], 30,
                  what="a failed delivery")
    assert "302" in ds[0]["last_error"], ds
    assert hits["redirector"] >= 1 and hits["target"] == 0, hits
    log = s.logtext()
    assert "302" in log and "hookpass" not in log and "secret-query" not in log, log[-2000:]
    red.shutdown()
    target.shutdown()


if __name__ == "__main__":
    run()
