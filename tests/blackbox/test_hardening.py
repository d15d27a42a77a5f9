#!/usr/bin/env python3
"""Hardening checks that exist so far: slow and idle clients, floods, CORS,
limits.  (The hardening issue's fuzzing and fault loops are still to come.)"""
import socket
import threading
import time

from harness import SSE, Server, raw_http, run, test


@test
def slowloris_and_idle_connections_do_not_block_others():
    s = Server("--conn-timeout", "5", "--per-ip-conn-limit", "1000")
    idle = [socket.create_connection((s.host, s.port)) for _ in range(200)]
    slow = [socket.create_connection((s.host, s.port)) for _ in range(20)]
    stop = threading.Event()

    def drip():
        req = b"GET /api/teachers HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        i = 0
        while not stop.is_set() and i < len(req):
            for c in slow:
                try:
                    c.send(req[i:i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.5)
    t = threading.Thread(target=drip)
    t.start()
    worst = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        assert s.get("/healthz").status == 200
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.1)
    stop.set()
    t.join()
    assert worst < 1.0, f"a normal client waited {worst:.2f}s"
    # Idle connections are closed after conn-timeout.
    idle[0].settimeout(15)
    assert idle[0].recv(1) == b"", "an idle connection was kept past conn-timeout"
    for c in idle + slow:
        c.close()
    assert s.get("/healthz").status == 200


@test
def sse_flood_is_capped_and_memory_bounded():
    s = Server("--sse-per-user", "4")
    tok = s.login("student1")
    streams = [SSE(s, tok) for _ in range(40)]
    assert sum(x.status == 200 for x in streams) == 4
    assert all(x.status == 429 for x in streams[4:])
    assert s.get("/healthz").status == 200
    for x in streams:
        if x.status == 200:
            x.close()


@test
def foreign_origins_get_no_cors_grant():
    s = Server()
    tok = s.login("student1")
    r = s.get("/api/me", token=tok, headers={"Origin": "https://evil.example"})
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") is None
    assert r.header("Access-Control-Allow-Credentials") is None
    r = s.request("OPTIONS", "/api/me", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert r.header("Access-Control-Allow-Origin") is None
    # Cookies are SameSite=Strict: a cross-site page cannot ride on them.
    login = s.post("/api/login", {"username": "student2", "password": "demo"})
    assert "SameSite=Strict" in login.header("Set-Cookie")


@test
def oversized_bodies_with_and_without_length():
    s = Server("--max-body", "2048")
    big = b'{"a":"' + b"x" * 100000 + b'"}'
    r = raw_http(s.host, s.port, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100010\r\n\r\n" + big[:1000], timeout=5)
    assert b" 413 " in r.split(b"\r\n")[0], r[:100]  # refused before the body arrived
    chunks = b"".join(b"%x\r\n" % 4096 + b"y" * 4096 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    r = raw_http(s.host, s.port, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + chunks, timeout=5)
    assert b" 413 " in r, r[:200]
    assert s.get("/healthz").status == 200


if __name__ == "__main__":
    run()
