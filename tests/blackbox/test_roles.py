#!/usr/bin/env python3
"""Every endpoint, tried by every role and by nobody, against the table in
docs/api.md ("Who may call what"); and that table lists every route of
signaling/api/routes.c."""
import os
import re

from harness import SSE, Server, run, test

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def doc_rows():
    text = open(os.path.join(ROOT, "docs", "api.md")).read()
    table = text.split("## Who may call what")[1].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 3:
            continue
        method, paths, who = cells[0], cells[1], " ".join(cells[2:])
        for p in re.findall(r"`([^`]+)`", paths):
            for variant in ([p.replace("whip|whep", "whip"), p.replace("whip|whep", "whep")]
                            if "whip|whep" in p else [p]):
                rows.append((method, variant, who))
    return rows


def code_routes():
    src = open(os.path.join(ROOT, "signaling", "api", "routes.c")).read()
    return set(re.findall(r'\{"([A-Z]+)", "([^"]+)"', src))


def allowed(who):
    if who.startswith("public"):
        return {None, "admin", "teacher", "student"}
    roles = set()
    for r in ("admin", "teacher", "student"):
        if re.search(rf"\b{r}\b", who):
            roles.add(r)
    if "session's creator" in who:
        roles |= {"teacher", "student"}
    return roles


@test
def docs_table_lists_every_route():
    docs = {(m, p) for m, p, _ in doc_rows()}
    code = code_routes()
    assert code - docs == set(), f"routes missing from docs/api.md: {sorted(code - docs)}"
    assert docs - code == set(), f"documented routes that do not exist: {sorted(docs - code)}"


@test
def every_endpoint_by_every_role():
    s = Server("--media-workers", "0")
    tok = {"admin": s.login("admin"), "teacher": s.login("teacher1"), "student": s.login("student1")}
    s.request("PUT", "/api/teachers/2/presence", {"status": "online"}, token=tok["teacher"])
    cid = s.post("/api/consultations", {"teacher_id": 2}, token=tok["student"]).json["id"]
    victim = s.post("/api/users", {"username": "victim", "password": "longenough", "role": "student"},
                    token=tok["admin"]).json["id"]
    checked = 0
    for method, path, who in doc_rows():
        if path == "/api/logout":
            continue  # would end the session the rest of the loop uses; covered elsewhere
        p = path.replace("{sid}", "0" * 32)  # no such session: 404 for its users
        if p.startswith("/api/users/"):
            p = p.replace("{id}", str(victim))
        elif p.startswith("/api/teachers/"):
            p = p.replace("{id}", "2")
        elif p.startswith("/static/"):
            p = p.replace("{file}", "app.js")
        else:
            p = p.replace("{id}", str(cid)).replace("{file}", "teacher.webm")
        ok_roles = allowed(who)
        for role in (None, "admin", "teacher", "student"):
            t = tok.get(role)
            if p == "/api/events":
                sse = SSE(s, t) if t else None
                status = sse.status if sse else s.get(p, timeout=5).status
                if sse and sse.status == 200:
                    sse.close()
            else:
                body = {} if method in ("POST", "PUT", "PATCH") else None
                status = s.request(method, p, body=body, token=t).status
            if role in ok_roles:
                assert status not in (401, 403), (method, p, role, status, who)
            elif role is None:
                assert status == 401, (method, p, "nobody", status, who)
            else:
                assert status in (403, 404), (method, p, role, status, who)
            checked += 1
    assert checked > 100, checked


if __name__ == "__main__":
    run()
