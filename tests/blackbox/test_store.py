#!/usr/bin/env python3
"""The recording store (issue 24): recordings uploaded to an S3-protocol
server (s3rver from npm, on loopback, behind a relay the test can cut or
slow down) or to a directory two nodes share, replayed from any node.
Real consultd nodes on a real PostgreSQL, real webrtc-peers, headless
Chromium for the replays."""
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import BIN, ROOT, Server, browser_script, free_port, run, test, wait_for
from clusterhelp import T1, Cluster, online, placed
from mediahelp import live_consultation, media_server, peer, result

S3RVER = os.path.join(ROOT, "tests", "browser", "node_modules", ".bin", "s3rver")
OBJECTS = os.path.join(os.path.dirname(BIN), "consultd-objects")
KEYS = {"CONSULTD_S3_ACCESS_KEY": "S3RVER", "CONSULTD_S3_SECRET_KEY": "S3RVER"}


class Relay:
    """A TCP relay on loopback in front of PORT.  cut(): new connections
    are refused and open ones closed (the store is down); slow(BPS): what
    goes to the store is paced at BPS bytes a second."""

    def __init__(self, port):
        self.target = port
        self.down = False
        self.bps = 0
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, a, b, upstream):
        try:
            while True:
                chunk = a.recv(4096 if upstream and self.bps else 65536)
                if not chunk:
                    break
                if upstream and self.bps:
                    time.sleep(len(chunk) / self.bps)
                b.sendall(chunk)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.down = False

    def close(self):
        self.cut()
        self.sock.close()


class S3:
    """s3rver (npm) on a loopback port with bucket "rec", its data in a temp
    dir; the nodes reach it through a Relay.  s3rver checks the access key
    but not SigV4 signatures (the unit test common-sigv4 checks ours
    against AWS's examples)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="consultd-s3-")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "s3rver.log"), "wb")
        self.proc = subprocess.Popen([S3RVER, "-d", os.path.join(self.dir, "data"), "-a", "127.0.0.1",
                                      "-p", str(self.port), "--configure-bucket", "rec"],
                                     stdout=self.log, stderr=self.log)
        wait_for(self._up, 30, what="s3rver to listen")
        self.relay = Relay(self.port)
        self.url = f"http://127.0.0.1:{self.relay.port}"
        self.where = "s3://rec/consultd"
        self.env = dict(KEYS)

    def _up(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def args(self):
        return ["--recordings-store", self.where, "--s3-endpoint", self.url]

    def objects(self, prefix=""):
        """{key: size} of the bucket under the store's prefix (consultd-objects list)."""
        p = subprocess.run([OBJECTS, "list", prefix], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **self.env, "CONSULTD_RECORDINGS_STORE": self.where,
                                "CONSULTD_S3_ENDPOINT": f"http://127.0.0.1:{self.port}"})
        assert p.returncode == 0, p.stdout + p.stderr
        return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in p.stdout.splitlines())}

    def stop(self):
        self.relay.close()
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def get(server, path, token, headers=None, follow=False):
    """GET PATH from SERVER (a node, or an absolute URL when PATH is one)."""
    url = urllib.parse.urlsplit(path if path.startswith("http") else server.url + path)
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    h = {"Authorization": f"Bearer {token}"} if token and not path.startswith("http") else {}
    h.update(headers or {})
    c.request("GET", url.path + ("?" + url.query if url.query else ""), headers=h)
    r = c.getresponse()
    body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    if follow and r.status in (302, 307):
        return get(server, hdrs["location"], None, headers)
    return r.status, hdrs, body


def recordings(s, cid, token):
    return {x["file"]: x for x in s.get(f"/api/consultations/{cid}/recordings", token=token)
            .json["recordings"]}


def record(node, cid, tt, st, seconds):
    """Both participants publish SECONDS to NODE; then the teacher ends it."""
    pubs = [peer(node, "whip", cid, tt, "publish", seconds), peer(node, "whip", cid, st, "publish", seconds)]
    for p in pubs:
        rc, res, err = result(p)
        assert rc == 0 and res["status"] == 201, (res, err[-1500:])
    r = node.post(f"/api/consultations/{cid}/end", token=tt)
    assert r.status == 200, r


def all_ready(s, cid, token, files):
    def ready():
        recs = recordings(s, cid, token)
        return all(recs.get(f, {}).get("state") == "ready" for f in files) and recs
    return wait_for(ready, 120, interval=0.3, what=f"{files} ready")


def plays(base, cid, files):
    res = browser_script("replay.mjs", {"base": base, "username": "student1", "password": "demo",
                                        "urls": [f"/recordings/{cid}/{f}" for f in files]}, 240)
    assert "error" not in res, res
    for v in res["videos"]:
        assert v["error"] is None, v
        assert v["duration"] > 3 and v["videoWidth"] > 0, v
        assert v["advanced"] > 0.3, v
        assert abs(v["seekedTo"] - v["duration"] / 2) < 1.0, v


def ranges_agree(node, path, token, whole, ours=True):
    """Range requests on NODE's PATH give the same bytes as WHOLE.  OURS:
    consultd parses the Range (proxy, files); else (a redirect) the store
    does, and s3rver answers a suffix range "bytes=-N" as "0-N", unlike S3,
    so only a plain range is asked of it."""
    n = len(whole)
    st, h, body = get(node, path, token, {"Range": "bytes=100-1099"}, follow=True)
    assert st == 206 and body == whole[100:1100], (st, h, len(body))
    if not ours:
        return
    st, h, body = get(node, path, token, {"Range": "bytes=-500"}, follow=True)
    assert st == 206 and body == whole[-500:], (st, h, len(body))
    st, h, body = get(node, path, token, {"Range": f"bytes={n}-"}, follow=True)
    assert st == 416, (st, h)


FILES = ["teacher.webm", "student.webm", "combined.webm"]


@test
def recorded_on_one_node_replays_from_another_after_it_stopped():
    """Two nodes with an s3:// store: a consultation recorded on one is
    uploaded (the bucket holds each file, its size the table's; the node's
    disk keeps nothing); after that node stops, another node redirects a
    replay to a presigned URL, a third (recordings-serve = proxy) streams
    it with Range passed on, and Chromium plays and seeks all three files
    through both."""
    s3 = S3()
    try:
        c = Cluster(2, *s3.args(), media=True, env=s3.env)
        online(c, 0)
        r = c.req(1, "student1", "POST", "/api/consultations", {"teacher_id": T1})
        assert r.status == 201, r
        cid = r.json["id"]
        assert c.req(0, "teacher1", "POST", f"/api/consultations/{cid}/accept").status == 200
        k = int(placed(c)[cid][1:])
        owner, other = c.nodes[k], c.nodes[1 - k]
        tt, st = c.login("teacher1"), c.login("student1")
        record(owner, cid, tt, st, 6)
        recs = all_ready(other, cid, st, FILES)
        rows = c.query(f"SELECT file, store, size, node_id FROM recordings WHERE consultation_id = {cid}"
                       " ORDER BY file")
        assert [(f, w) for f, w, _, _ in rows] == [(f, s3.where) for f in sorted(FILES)], rows
        assert s3.objects(f"{cid}/") == {f"{cid}/{f}": size for f, _, size, _ in rows}, rows
        local = os.path.join(owner.data_dir, "recordings", str(cid))
        assert not [f for f in os.listdir(local) if f.endswith(".webm")], os.listdir(local)
        owner.stop()
        # Redirect (the default for s3): 302 to a presigned URL of the store.
        path = f"/recordings/{cid}/teacher.webm"
        status, h, _ = get(other, path, st)
        assert status == 302 and h["location"].startswith(s3.url + "/rec/consultd/"), (status, h)
        assert "X-Amz-Signature=" in h["location"] and h["cache-control"] == "no-store", h
        status, _, whole = get(other, path, st, follow=True)
        assert status == 200 and len(whole) == recs["teacher.webm"]["size"] > 10000, (status, len(whole))
        ranges_agree(other, path, st, whole, ours=False)
        assert get(other, path, None)[0] == 401
        assert get(other, path, c.login("student2"))[0] == 404  # not theirs: as before
        # Proxy: streamed through the node, Range passed on to the store.
        proxy = c.node("n2", *s3.args(), "--recordings-serve", "proxy")
        c.nodes.append(proxy)
        status, h, body = get(proxy, path, st)
        assert status == 200 and body == whole and h["content-type"] == "video/webm", (status, h)
        ranges_agree(proxy, path, st, whole)
        plays(other.url, cid, FILES)
        plays(proxy.url, cid, ["combined.webm"])
    finally:
        s3.stop()


@test
def a_directory_both_nodes_mount_serves_from_either():
    """dir:/path (a shared mount): the file lands there (fsynced, renamed,
    read back); after its node stops, the other serves it with ranges."""
    shared = tempfile.mkdtemp(prefix="consultd-shared-")
    try:
        c = Cluster(2, "--recordings-store", f"dir:{shared}", "--compose=false", media=True)
        online(c, 0)
        r = c.req(1, "student1", "POST", "/api/consultations", {"teacher_id": T1})
        cid = r.json["id"]
        assert c.req(0, "teacher1", "POST", f"/api/consultations/{cid}/accept").status == 200
        k = int(placed(c)[cid][1:])
        tt, st = c.login("teacher1"), c.login("student1")
        record(c.nodes[k], cid, tt, st, 5)
        all_ready(c.nodes[1 - k], cid, st, FILES[:2])
        on_disk = open(os.path.join(shared, str(cid), "student.webm"), "rb").read()
        assert sorted(os.listdir(os.path.join(shared, str(cid)))) == ["student.webm", "teacher.webm"]
        c.nodes[k].stop()
        path = f"/recordings/{cid}/student.webm"
        status, _, body = get(c.nodes[1 - k], path, st)
        assert status == 200 and body == on_disk and len(body) > 10000, (status, len(body))
        ranges_agree(c.nodes[1 - k], path, st, on_disk)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def store_node(s3, *args):
    return media_server(*s3.args(), "--compose=false", *args, env=s3.env)


@test
def a_store_down_for_20_s_keeps_the_recordings_until_it_is_back():
    """The store is unreachable when the consultation ends: its recordings
    stay on the node, uploading, with the reason; 20 s later the store is
    back, they become ready, and what the store serves is byte for byte
    what the node had."""
    s3 = S3()
    try:
        s = store_node(s3, "--upload-retry-max", "4")
        cid, tt, st = live_consultation(s)
        s3.relay.cut()
        record(s, cid, tt, st, 5)

        def waiting():
            recs = recordings(s, cid, st)
            return all(recs.get(f, {}).get("state") == "uploading" and
                       recs[f].get("reason", "").startswith("store:") for f in FILES[:2]) and recs
        recs = wait_for(waiting, 60, interval=0.3, what="uploads failing while the store is down")
        down_at = time.monotonic()
        kept = {f: open(os.path.join(s.data_dir, "recordings", str(cid), f), "rb").read()
                for f in FILES[:2]}
        assert all(len(b) == recs[f]["size"] for f, b in kept.items()), recs
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # the outage the issue names
        assert {x["state"] for x in recordings(s, cid, st).values()} == {"uploading"}
        s3.relay.restore()
        all_ready(s, cid, st, FILES[:2])
        for f, b in kept.items():
            status, _, body = get(s, f"/recordings/{cid}/{f}", st, follow=True)
            assert status == 200 and body == b, (f, status, len(body), len(b))
        assert s3.objects() == {f"{cid}/{f}": len(b) for f, b in kept.items()}
    finally:
        s3.stop()


@test
def a_node_killed_mid_upload_uploads_at_restart_without_leftovers():
    """kill -9 of the node while a multipart upload is under way (parts of
    64 KiB, the store reached slowly): its uploader dies with it; at the
    next start the node aborts that upload and uploads again.  The bucket
    then holds each file once, whole."""
    s3 = S3()
    try:
        s = store_node(s3, "--s3-part-size", "65536")
        cid, tt, st = live_consultation(s)
        record(s, cid, tt, st, 6)
        s3.relay.bps = 40000
        q = f"SELECT file, upload_id FROM recordings WHERE consultation_id = {cid} AND upload_id <> ''"
        wait_for(lambda: s.query(q), 60, interval=0.1, what="a multipart upload under way")
        s.kill()
        assert s.query(f"SELECT count(*) FROM recordings WHERE consultation_id = {cid}"
                       " AND state = 'uploading'")[0][0] >= 1
        s3.relay.bps = 0
        s.start()
        all_ready(s, cid, st, FILES[:2])
        sizes = dict(s.query(f"SELECT file, size FROM recordings WHERE consultation_id = {cid}"))
        assert s3.objects() == {f"{cid}/{f}": sizes[f] for f in FILES[:2]}, (s3.objects(), sizes)
        for f in FILES[:2]:
            status, _, body = get(s, f"/recordings/{cid}/{f}", st, follow=True)
            assert status == 200 and len(body) == sizes[f], (f, status, len(body))
    finally:
        s3.stop()


@test
def retention_deletes_the_objects():
    """Retention applies to the store: the objects go, the rows become
    deleted with their events; consultd prune-recordings does the same."""
    s3 = S3()
    try:
        s = store_node(s3)
        cid, tt, st = live_consultation(s)
        record(s, cid, tt, st, 4)
        all_ready(s, cid, st, FILES[:2])
        assert len(s3.objects()) == 2
        s.stop()
        p = subprocess.run([BIN, "prune-recordings", *s.db_args, *s3.args(),
                            "--retention-max-bytes", "1"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **s3.env})
        assert p.returncode == 0 and "deleted 2 recording(s)" in p.stdout, p.stdout + p.stderr
        assert s3.objects() == {}
        assert s.query(f"SELECT DISTINCT state FROM recordings WHERE consultation_id = {cid}") == \
            [("deleted",)]
        s.start()
        after = recordings(s, cid, st)
        assert set(after) == set(FILES[:2]) and {x["state"] for x in after.values()} == {"deleted"}, after
    finally:
        s3.stop()


if __name__ == "__main__":
    run()
