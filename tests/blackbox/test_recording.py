#!/usr/bin/env python3
"""Recording and replay: real consultations recorded by the real worker, the
files checked with GStreamer, served with byte ranges, played and seeked in
headless Chromium, and repaired after a kill -9 of the worker."""
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time

from harness import SSE, browser_script, run, test, wait_for
from mediahelp import live_consultation, media_server, peer, result, worker



def discover(path):
    """Duration (s) and stream kinds of PATH, as GStreamer decodes it."""
    p = subprocess.run(["gst-discoverer-1.0", "-v", path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", p.stdout)
    assert m, p.stdout
    dur = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    kinds = set(re.findall(r"^\s*(video|audio) #\d+", p.stdout, re.M)) or \
        set(k for k in ("video", "audio") if f"{k}:" in p.stdout.lower())
    return dur, p.stdout


ARTIFACTS = os.environ.get("E2E_ARTIFACTS", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "artifacts"))


def keep_files(s, cid):
    """Copies a failed test's recordings where they outlive the data dir."""
    src = os.path.join(s.data_dir, "recordings", str(cid))
    dst = os.path.join(ARTIFACTS, f"recordings-{os.getpid()}-{cid}")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    print(f"# recordings kept in {dst}", flush=True)


def recordings(s, cid, token):
    return s.get(f"/api/consultations/{cid}/recordings", token=token).json["recordings"]


def db_recording(s, cid, file):
    db = sqlite3.connect(os.path.join(s.data_dir, "consultd.db"), timeout=10)
    row = db.execute("SELECT started_at, state FROM recordings WHERE consultation_id = ? AND file = ?",
                     (cid, file)).fetchone()
    db.close()
    return row


def record_one(s, seconds=8):
    """A consultation where both publish SECONDS; returns ids, tokens, and the
    wall time (ms) each publisher stopped."""
    cid, tt, st = live_consultation(s)
    pubs = {"teacher": peer(s, "whip", cid, tt, "publish", seconds),
            "student": peer(s, "whip", cid, st, "publish", seconds)}
    stopped = {}
    for role, p in pubs.items():
        rc, res, err = result(p)
        stopped[role] = time.time() * 1000
        assert rc == 0, (res, err[-1000:])
    return cid, tt, st, stopped


def recorded_and_ended(s, seconds):
    """record_one, then the teacher ends it and both recordings get ready."""
    cid, tt, st, _ = record_one(s, seconds)
    s.post(f"/api/consultations/{cid}/end", token=tt)
    wait_for(lambda: [r["state"] for r in recordings(s, cid, st)] == ["ready", "ready"], 60,
             what="recordings ready")
    return cid, tt, st


@test
def consultation_is_recorded_and_replayable():
    s = media_server("--compose=false")
    sse = SSE(s, s.login("student1"))
    cid, tt, st, stopped = record_one(s, 8)
    assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
    for role in ("teacher", "student"):
        sse.wait_type("recording.ready", role=role, timeout=60)
    recs = {r["role"]: r for r in recordings(s, cid, st)}
    assert set(recs) == {"teacher", "student"}, recs
    for role, r in recs.items():
        assert r["state"] == "ready" and r["url"] == f"/recordings/{cid}/{role}.webm", r
        path = os.path.join(s.data_dir, "recordings", str(cid), r["file"])
        assert os.path.getsize(path) == r["size"] > 10000
        dur, info = discover(path)
        assert "video" in info.lower() and "audio" in info.lower() and "vp8" in info.lower() \
            and "opus" in info.lower(), info
        started, state = db_recording(s, cid, r["file"])
        expected = (stopped[role] - started) / 1000.0
        assert abs(dur - expected) <= 0.5, f"{role}: {dur:.2f}s recorded, {expected:.2f}s expected"
        assert abs(r["duration_seconds"] - dur) < 0.1, (r, dur)
        assert 0 <= r["offset_seconds"] < 5, r
    page = s.get("/api/mypage", token=st).json["consultations"][0]
    assert sorted(x["role"] for x in page["recordings"]) == ["student", "teacher"], page
    assert not os.path.exists(path + ".final")


@test
def byte_ranges_and_access():
    s = media_server("--compose=false")
    cid, tt, st = recorded_and_ended(s, 4)
    url = f"/recordings/{cid}/teacher.webm"
    data = open(os.path.join(s.data_dir, "recordings", str(cid), "teacher.webm"), "rb").read()
    n = len(data)

    def get(headers=None, token=st, path=url, method="GET"):
        import http.client
        c = http.client.HTTPConnection(s.host, s.port, timeout=30)
        h = {"Authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        c.request(method, path, headers=h)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body

    st_, h, body = get()
    assert st_ == 200 and body == data and h["accept-ranges"] == "bytes", (st_, h)
    assert h["content-type"] == "video/webm"
    etag = h["etag"]
    st_, h, body = get({"Range": "bytes=0-99"})
    assert st_ == 206 and body == data[:100] and h["content-range"] == f"bytes 0-99/{n}", (st_, h)
    st_, h, body = get({"Range": f"bytes=100-"})
    assert st_ == 206 and body == data[100:], st_
    st_, h, body = get({"Range": "bytes=-50"})
    assert st_ == 206 and body == data[-50:] and h["content-range"] == f"bytes {n-50}-{n-1}/{n}"
    st_, h, body = get({"Range": f"bytes={n//2}-{n//2 + 999}"})
    assert st_ == 206 and body == data[n // 2:n // 2 + 1000]
    st_, h, body = get({"Range": f"bytes={n}-"})
    assert st_ == 416 and h["content-range"] == f"bytes */{n}", (st_, h)
    st_, h, body = get({"Range": f"bytes=0-99", "If-Range": '"stale"'})
    assert st_ == 200 and body == data
    st_, h, body = get({"Range": f"bytes=0-99", "If-Range": etag})
    assert st_ == 206 and body == data[:100]
    st_, h, body = get({"Range": "bytes=0-1,5-6"})
    assert st_ == 200 and body == data  # several ranges: the whole file
    st_, h, body = get({"Range": "lines=1-2"})
    assert st_ == 200
    st_, h, body = get(method="HEAD")
    assert st_ == 200 and int(h["content-length"]) == n and body == b""
    assert get(token=tt)[0] == 200
    assert get(token=s.login("admin"))[0] == 200
    assert get(token=s.login("student2"))[0] == 404
    assert get(token=s.login("teacher2"))[0] == 404
    assert get(token=None)[0] == 401
    for bad in [f"/recordings/{cid}/..%2F..%2Fconsultd.db", f"/recordings/{cid}/%2Fetc%2Fpasswd",
                f"/recordings/{cid}/../../consultd.db", f"/recordings/{cid}/teacher.webm.final",
                f"/recordings/{cid}/nothing.webm", f"/recordings/{cid}/%2e%2e",
                "/recordings/999/teacher.webm", f"/recordings/{cid}//etc/passwd"]:
        code = get(path=bad)[0]
        assert code in (400, 404), (bad, code)


@test
def chromium_plays_and_seeks_both_recordings():
    s = media_server("--compose=false")
    cid, tt, st = recorded_and_ended(s, 8)
    plays_and_seeks_in_chromium(s, cid, ["teacher.webm", "student.webm"])


def plays_and_seeks_in_chromium(s, cid, files):
    """The student's browser plays each file, moves forward, and lands a
    seek to the middle; a failure keeps the files."""
    opts = {"base": s.url, "username": "student1", "password": "demo",
            "urls": [f"/recordings/{cid}/{f}" for f in files]}
    res = browser_script("replay.mjs", opts, 180)
    try:
        assert "error" not in res, res
        for v in res["videos"]:
            assert v["error"] is None, v
            assert v["duration"] > 4 and v["videoWidth"] > 0, v
            assert v["advanced"] > 0.3, v  # playback moved forward
            assert abs(v["seekedTo"] - v["duration"] / 2) < 1.0, v  # the seek to the middle landed
    except AssertionError:
        keep_files(s, cid)
        raise


def recording_teacher(s, min_bytes):
    """The teacher publishes until killed; returns once MIN_BYTES are on disk."""
    cid, tt, st = live_consultation(s)
    pub = peer(s, "whip", cid, tt, "publish", 60)
    wait_for(lambda: (db_recording(s, cid, "teacher.webm") or (0,))[0], 30, what="recording started")
    path = os.path.join(s.data_dir, "recordings", str(cid), "teacher.webm")
    wait_for(lambda: os.path.getsize(path) > min_bytes, 60, what="a few seconds recorded")
    return cid, tt, st, pub


@test
def worker_kill_mid_recording_is_repaired():
    s = media_server("--compose=false")
    cid, tt, st, pub = recording_teacher(s, 90000)
    started = db_recording(s, cid, "teacher.webm")[0]
    os.kill(worker(s)["pid"], signal.SIGKILL)
    killed = time.time() * 1000
    pub.kill()
    pub.wait()
    wait_for(lambda: db_recording(s, cid, "teacher.webm")[1] in ("ready", "failed", "empty"), 60,
             what="repair")
    r = [x for x in recordings(s, cid, st) if x["file"] == "teacher.webm"][0]
    assert r["state"] == "ready", r
    # The repair moves the start by the retiming's lead (the first frame's
    # delay): milliseconds on an idle machine, over a second on a loaded
    # one (seen in CI beside other tests), but never the recording's whole
    # length (about 7 s here), which is what a wrong retiming would move it.
    moved = db_recording(s, cid, "teacher.webm")[0] - started
    assert abs(moved) < 3000, (moved, r)
    dur, info = discover(os.path.join(s.data_dir, "recordings", str(cid), "teacher.webm"))
    covered = (killed - started) / 1000.0
    # What a kill -9 can lose is what was in flight: the muxer's open cluster
    # (a cluster per keyframe, 1 s with this publisher) and what waits in the
    # recorder's queues (its tap holds up to 256 packets, about 2 s of video
    # and audio, when the recorder's threads lag on a loaded machine).  1.5 s was too tight under CI load
    # (7.0 s of 8.7 s kept, once).
    assert dur >= covered - 3.5, f"repaired file covers {dur:.2f}s of {covered:.2f}s"


@test
def repair_at_start_up_after_main_process_kill():
    s = media_server("--compose=false")
    cid, tt, st, pub = recording_teacher(s, 50000)
    wpid = worker(s)["pid"]
    s.kill()  # the main process dies; its worker follows (EOF on its channel)
    pub.kill()
    pub.wait()

    def worker_gone():  # exited: gone, or a zombie nobody has reaped yet
        try:
            with open(f"/proc/{wpid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    # It once stayed forever: gst_deinit() waited for a recording pipeline
    # nobody stopped once its main loop had quit.
    wait_for(worker_gone, 20, what="the orphaned worker to exit")
    assert db_recording(s, cid, "teacher.webm")[1] == "recording"
    s.start()
    wait_for(lambda: db_recording(s, cid, "teacher.webm")[1] == "ready", 60, what="start-up repair")
    dur, _ = discover(os.path.join(s.data_dir, "recordings", str(cid), "teacher.webm"))
    assert dur > 2.0, dur
    db = sqlite3.connect(os.path.join(s.data_dir, "consultd.db"))
    stuck = db.execute("SELECT count(*) FROM recordings WHERE state IN ('recording','processing')").fetchone()[0]
    assert stuck == 0


@test
def retention_deletes_oldest_with_events():
    s = media_server("--compose=false", "--retention-max-bytes", "1")  # any recording is over this quota
    sse = SSE(s, s.login("student1"))
    cid, tt, st, _ = record_one(s, 4)
    # The chat is part of the record: it goes with the recordings.
    assert s.post(f"/api/consultations/{cid}/messages", {"body": "my notes"}, token=st).status == 201
    s.post(f"/api/consultations/{cid}/end", token=tt)
    wait_for(lambda: [r["state"] for r in recordings(s, cid, st)] == ["ready", "ready"], 60,
             what="recordings ready")
    adm = s.login("admin")
    before = s.get("/api/admin/recordings", token=adm).json
    assert before["bytes"] > 0 and before["disk"]["free_bytes"] > 0, before
    assert s.get("/api/admin/recordings", token=st).status == 403
    r = s.post("/api/admin/retention/run", token=adm)
    assert r.status == 200 and r.json["deleted"] == 2 and r.json["bytes"] == 0, r
    for role in ("teacher", "student"):
        e = sse.wait_type("recording.deleted", role=role)
        assert e["data"]["data"]["reason"] == "quota"
        assert not os.path.exists(os.path.join(s.data_dir, "recordings", str(cid), f"{role}.webm"))
    assert s.get(f"/recordings/{cid}/teacher.webm", token=st).status == 404
    wait_for(lambda: s.get("/api/mypage", token=st).json["consultations"][0]["recordings"] == [], 10,
             what="my page without the deleted recordings")
    assert {x["state"] for x in recordings(s, cid, st)} == {"deleted"}
    e = sse.wait_type("messages.deleted")
    assert e["data"]["data"]["count"] == 1 and e["data"]["data"]["consultation_id"] == cid, e
    assert s.get(f"/api/consultations/{cid}/messages", token=st).json["messages"] == []
    wait_for(lambda: s.get("/api/mypage", token=st).json["consultations"][0]["messages"] == 0, 10,
             what="my page without the messages")


@test
def combined_file_is_composed_in_the_background():
    s = media_server("--compose=true")
    sse = SSE(s, s.login("student1"))
    cid, tt, st, _ = record_one(s, 5)
    s.post(f"/api/consultations/{cid}/end", token=tt)
    e = sse.wait(lambda e: e["event"] in ("recording.ready", "recording.failed") and
                 e["data"]["data"].get("role") == "combined", 120, what="the combined file")
    assert e["event"] == "recording.ready", e  # a failure says why
    assert e["data"]["data"]["file"] == "combined.webm"
    rec = [r for r in recordings(s, cid, st) if r["role"] == "combined"][0]
    assert rec["state"] == "ready" and rec["url"] == f"/recordings/{cid}/combined.webm", rec
    dur, info = discover(os.path.join(s.data_dir, "recordings", str(cid), "combined.webm"))
    assert "Width: 1280" in info and "Height: 480" in info and "opus" in info.lower(), info
    parts = [r for r in recordings(s, cid, st) if r["role"] != "combined"]
    longest = max(r["offset_seconds"] + r["duration_seconds"] for r in parts) - \
        min(r["offset_seconds"] for r in parts)
    assert abs(dur - longest) < 1.0, (dur, longest)
    assert s.get(f"/recordings/{cid}/combined.webm", token=st).status == 200
    plays_and_seeks_in_chromium(s, cid, ["combined.webm"])


@test
def a_shared_screen_is_relayed_recorded_and_combined():
    """A screen is its own WHIP session (?stream=screen) next to the camera;
    the other participant receives it with a second WHEP session.  It is not
    presence (no participant.joined/left of its own: screen.started and
    screen.stopped), it is recorded as teacher-screen.webm, and the combined
    file shows it large with both cameras small."""
    s = media_server("--compose=true")
    cid, tt, st = live_consultation(s)
    sse = SSE(s, st)
    bad = s.request("POST", f"/whip/consultations/{cid}?stream=window", token=tt,
                    raw=b"v=0\r\n", headers={"Content-Type": "application/sdp"})
    assert bad.status == 400 and bad.json["error"] == "bad_stream", (bad.status, bad.body)
    cams = [peer(s, "whip", cid, tt, "publish", 16), peer(s, "whip", cid, st, "publish", 16)]
    sse.wait_type("participant.joined", 30, role="teacher")
    screen = peer(s, "whip", f"{cid}?stream=screen", tt, "publish", 7)
    view = peer(s, "whep", f"{cid}?stream=screen", st, "receive", 8, 20)
    started = sse.wait_type("screen.started", 30, role="teacher")
    assert started["data"]["data"]["stream"] == "screen", started
    # A page opened now learns who shares from the consultation.
    assert s.get(f"/api/consultations/{cid}", token=st).json["screens"] == ["teacher"]
    rc, res, err = result(view)
    assert rc == 0 and res["status"] == 201, (res, err[-1500:])
    assert res["video_frames"] >= 20, res  # the student saw the teacher's screen
    assert "/whep/consultations/" in res["location"], res
    rc, res, err = result(screen)
    assert rc == 0 and res["status"] == 201 and "/whip/" in res["location"], (res, err[-1500:])
    stopped = sse.wait_type("screen.stopped", 30, role="teacher")
    assert stopped["data"]["data"]["reason"] == "deleted", stopped
    assert s.get(f"/api/consultations/{cid}", token=st).json["screens"] == []
    for p in cams:
        rc, res, err = result(p)
        assert rc == 0, (res, err[-1500:])
    # The screen was never presence: one camera each joined, and the
    # consultation stayed live through the screen's end.
    assert [e["data"]["data"]["role"] for e in sse.events
            if e["event"] == "participant.joined"].count("teacher") == 1, sse.types()
    s.post(f"/api/consultations/{cid}/end", token=tt)
    e = sse.wait(lambda e: e["event"] in ("recording.ready", "recording.failed") and
                 e["data"]["data"].get("role") == "combined", 120, what="the combined file")
    assert e["event"] == "recording.ready", e
    recs = {r["file"]: r for r in recordings(s, cid, st)}
    assert set(recs) == {"teacher.webm", "student.webm", "teacher-screen.webm", "combined.webm"}, recs
    scr = recs["teacher-screen.webm"]
    assert scr["state"] == "ready" and scr["stream"] == "screen" and scr["role"] == "teacher", scr
    assert recs["teacher.webm"]["stream"] == "camera", recs
    # It began after the cameras and lasted about its 7 s.
    assert scr["offset_seconds"] > recs["teacher.webm"]["offset_seconds"], recs
    assert 4 <= scr["duration_seconds"] <= 10, scr
    dur, info = discover(os.path.join(s.data_dir, "recordings", str(cid), "combined.webm"))
    assert "Width: 1280" in info and "Height: 720" in info, info
    plays_and_seeks_in_chromium(s, cid, ["teacher-screen.webm", "combined.webm"])


@contextlib.contextmanager
def recordings_on_tmpfs(size, *args):
    """A media server (ARGS) whose recordings directory is a tmpfs of SIZE,
    mounted before it starts: the worker's Landlock rule names the directory
    it finds at start, so a file system mounted over it later is not its."""
    import tempfile
    data_dir = tempfile.mkdtemp(prefix="consultd-test-")
    rec_dir = os.path.join(data_dir, "recordings")
    os.makedirs(rec_dir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", rec_dir], check=True)
    s = None
    try:
        s = media_server(*args, data_dir=data_dir)
        yield s
    finally:
        if s:
            s.stop()
        subprocess.run(["umount", "-l", rec_dir])
        shutil.rmtree(data_dir, ignore_errors=True)

@test
def disk_full_stops_the_recording_not_the_consultation():
    # A filesystem of its own for the recordings, 120 KiB: full in seconds;
    # record-min-free-bytes 0: the disk really fills (the floor is tested below).
    with recordings_on_tmpfs("120k", "--compose=false", "--record-min-free-bytes", "0") as s:
        cid, tt, st = live_consultation(s)
        pub = peer(s, "whip", cid, tt, "publish", 25)
        wait_for(lambda: "No space left" in s.logtext() or "no space" in s.logtext().lower(), 60,
                 what="the disk to fill up")
        # The consultation goes on: the student still receives the teacher.
        rc, res, err = result(peer(s, "whep", cid, st, "receive", 6, 30))
        assert rc == 0 and res["video_frames"] >= 30, (res, err[-800:])
        assert s.get("/healthz").status == 200
        assert s.get(f"/api/consultations/{cid}", token=st).json["status"] == "live"
        pub.kill()
        pub.wait()
        s.post(f"/api/consultations/{cid}/end", token=tt)
        wait_for(lambda: db_recording(s, cid, "teacher.webm")[1] in ("failed", "ready", "empty"), 60,
                 what="the recording to settle")
        # Whatever could be written is kept or reported; nothing is stuck.
        r = [x for x in recordings(s, cid, st) if x["file"] == "teacher.webm"][0]
        assert r["state"] in ("failed", "ready"), r
        if r["state"] == "failed":
            assert r.get("reason"), r


@test
def under_the_free_space_floor_recording_stops_with_disk_low():
    """Issue 21, finding 3: below record-min-free-bytes a recording stops
    with reason disk_low (none starts while it stays low) and the call goes
    on.  A 1 MiB tmpfs with a floor of 900 KiB: the recording starts, and
    stops after its first hundred KiB."""
    with recordings_on_tmpfs("1m", "--compose=false", "--record-min-free-bytes",
                             str(900 * 1024)) as s:
        cid, tt, st = live_consultation(s)
        pub = peer(s, "whip", cid, tt, "publish", 30)
        wait_for(lambda: "disk_low" in s.logtext(), 60, what="recording held: disk_low")
        rc, res, err = result(peer(s, "whep", cid, st, "receive", 5, 30))
        assert rc == 0 and res["video_frames"] >= 30, (res, err[-800:])
        assert s.get(f"/api/consultations/{cid}", token=st).json["status"] == "live"
        pub.kill()
        pub.wait()
        wait_for(lambda: db_recording(s, cid, "teacher.webm")[1] in ("failed", "ready", "empty"),
                 60, what="the recording to settle")
        r = [x for x in recordings(s, cid, st) if x["file"] == "teacher.webm"][0]
        assert r.get("reason") == "disk_low", r
        assert not [x for x in recordings(s, cid, st) if x["file"] == "teacher-2.webm"]


@test
def a_consultation_ends_at_max_consultation_minutes():
    """Issue 21, finding 3: a live consultation older than
    max-consultation-minutes ends by itself (reason max_duration), with its
    event; made old in the database rather than waited for."""
    s = media_server("--max-consultation-minutes", "1")
    cid, tt, st = live_consultation(s)
    sse = SSE(s, st)
    db = sqlite3.connect(os.path.join(s.data_dir, "consultd.db"), timeout=10)
    db.execute("UPDATE consultations SET accepted_at = accepted_at - 120000 WHERE id = ?", (cid,))
    db.commit()
    db.close()
    e = sse.wait_type("consultation.ended", 30)
    c = s.get(f"/api/consultations/{cid}", token=st).json
    assert c["status"] == "ended" and c["end_reason"] == "max_duration", c
    assert e["data"]["data"]["consultation_id"] == cid
    sse.close()


def as_uid(uid, fn):
    """Runs FN in a child process with UID (and its group); returns what it
    returned, or the name of the exception it raised."""
    import multiprocessing as mp
    q = mp.get_context("fork").Queue()

    def child():
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            q.put(fn())
        except Exception as e:  # noqa: BLE001 (the type is the answer)
            q.put(type(e).__name__)

    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(30)
    return q.get(timeout=5)


@test
def workers_run_as_their_own_user_and_cannot_touch_the_database():
    """Issue 21, finding 2: started as root with media-user, workers (and
    their repairs) run as that user with no_new_privs: they can write the
    recordings, not open the database; the main process keeps it 0600."""
    assert os.geteuid() == 0, "needs root to start workers as another user (CI runs as root)"
    s = media_server("--media-user", "nobody", "--compose=false")
    w = wait_for(lambda: worker(s)["ready"] and worker(s), 30, what="worker")
    status = open(f"/proc/{w['pid']}/status").read()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    assert uid == 65534, status
    assert re.search(r"^NoNewPrivs:\s+1", status, re.M), status
    assert "sandbox: media workers run as nobody" in s.logtext()
    db = os.path.join(s.data_dir, "consultd.db")
    assert os.stat(db).st_mode & 0o077 == 0
    assert as_uid(uid, lambda: open(db, "rb").read(16)) == "PermissionError"
    rec = os.path.join(s.data_dir, "recordings")
    assert as_uid(uid, lambda: open(os.path.join(rec, "probe"), "wb").write(b"x")) == 1
    # Recording and replay work under that user.
    cid, tt, st, _ = record_one(s, 4)
    s.post(f"/api/consultations/{cid}/end", token=tt)
    wait_for(lambda: [r["state"] for r in recordings(s, cid, st)] == ["ready", "ready"], 60,
             what="recordings ready")
    assert os.stat(os.path.join(rec, str(cid), "teacher.webm")).st_uid == uid
    assert s.get(f"/recordings/{cid}/teacher.webm", token=st).status == 200


if __name__ == "__main__":
    run()
