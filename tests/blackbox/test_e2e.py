#!/usr/bin/env python3
"""End to end in a real browser: the whole consultation through the pages,
plus the refusals a user can meet (another student's replay, a busy
teacher).  Screenshots of every step are kept in the build's meson-logs."""
import json
import os
import subprocess

from harness import BROWSER, Server, browser_script, run, test
from mediahelp import live_consultation, media_server

# Screenshots: meson sets E2E_ARTIFACTS under build/; a direct run writes to
# tests/artifacts/ (ignored by git), never next to the sources.
ARTIFACTS = os.environ.get("E2E_ARTIFACTS", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "artifacts", "e2e-screenshots"))


@test
def consultation_through_the_pages():
    s = media_server()
    xss = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> Math & more'
    assert s.request("PUT", "/api/teachers/2/profile", {"intro": xss}, token=s.login("admin")).status == 200
    # Make teacher2 busy with someone else, for the busy message.
    t2, s3 = s.login("teacher2"), s.login("student3")
    assert s.request("PUT", "/api/teachers/3/presence", {"status": "online"}, token=t2).status == 200
    assert s.post("/api/consultations", {"teacher_id": 3}, token=s3).status == 201
    out = browser_script("e2e.mjs", {"base": s.url, "artifacts": ARTIFACTS,
                                     "busyTeacher": "Lee Junho"}, 400)
    assert "error" not in out, json.dumps(out, indent=1)
    assert not out.get("pageErrors"), out["pageErrors"]
    assert out["introText"] == xss and out["introRan"] is False, out
    assert "Kim Minji" in out["notification"], out
    for who in ("teacherMedia", "studentMedia"):
        m = out[who]
        assert m["videoWidth"] > 0 and m["timeAdvanced"] > 0.3 and m["framesGrew"] > 5, (who, m)
    assert "Consultations: 1" in out["teacherAfter"], out["teacherAfter"]
    assert "ended" in out["mypageRow"], out["mypageRow"]
    for v in out["replayPlaying"]:
        assert v["err"] is None and v["w"] > 0 and v["t"] > 0.3, out["replayPlaying"]
    # Seeked to the middle of the timeline while playing (1.5 s before the
    # reading): both videos are there, and together (one timeline).
    at, mid = out["replaySeek"]["at"], out["replaySeek"]["mid"]
    assert all(mid - 0.5 <= x <= mid + 2.5 for x in at), out["replaySeek"]
    assert max(at) - min(at) < 0.4, out["replaySeek"]
    # (Before, a seek under 0.5 s was undone by the next frame.)
    assert out["smallSeek"]["timeline"] >= out["smallSeek"]["target"] - 0.1, out["smallSeek"]
    assert out["otherReplay"], out
    assert "busy" in out["busyMessage"], out
    # The chat: text, never markup; the link a link that opens nothing of ours.
    hostile = 'see <b id="chat-xss">this</b> https://example.com/notes?a=1 <img src=x onerror="window.__xss=1">'
    assert out["chatTeacherSaw"] == hostile, out["chatTeacherSaw"]
    mk = out["chatMarkup"]
    assert not mk["bold"] and not mk["img"] and not mk["ran"], mk
    assert mk["links"] == [{"href": "https://example.com/notes?a=1", "rel": "noopener noreferrer",
                            "text": "https://example.com/notes?a=1"}], mk
    assert out["chatStudentSaw"] == [hostile, "안녕하세요, 네 알겠습니다"], out["chatStudentSaw"]
    assert out["chatAfterReload"] == out["chatStudentSaw"], out["chatAfterReload"]
    chat = out["replayChat"]
    assert [x["text"] for x in chat] == out["chatAfterReload"] and all(x["button"] for x in chat), chat
    assert 0 < chat[0]["offset"] < chat[1]["offset"] < 120, chat  # in the recording, in order
    # The timeline ends with the recordings: a message said after the media
    # stopped seeks to the end (the slider's maximum).
    want = min(chat[1]["offset"], out["replayTotal"])
    assert abs(out["replayChatSeek"] - want) < 0.2, (out["replayChatSeek"], out["replayTotal"], chat)
    assert len(out["steps"]) >= 12, out["steps"]
    c = s.get(f"/api/consultations/{out['consultation']}", token=s.login("admin")).json
    assert c["status"] == "ended", c
    assert c["messages"] == 2, c


@test
def hostile_display_names_show_as_text_everywhere():
    """Display names holding markup and script, on every page that shows
    them (student list and notification, teacher console, admin users)."""
    from harness import Server
    s = Server("--media-workers", "0")
    adm = s.login("admin")
    tname = '<img src=x onerror="window.__xss=1">T<b>eacher</b>'
    sname = '<script>window.__xss=2</script><iframe src="javascript:window.__xss=3"></iframe>S & "co"'
    for username, role, name in (("evilteacher", "teacher", tname), ("evilstudent", "student", sname)):
        r = s.post("/api/users", {"username": username, "password": "longpassword1", "role": role,
                                  "display_name": name}, token=adm)
        assert r.status == 201, r
        assert r.json["display_name"] == name, r  # stored and returned as given
    out = browser_script("names.mjs", {"base": s.url, "teacherName": tname, "studentName": sname,
                                       "teacher": "evilteacher", "student": "evilstudent",
                                       "password": "longpassword1"}, 300)
    assert "error" not in out, json.dumps(out, indent=1)
    assert not out.get("pageErrors"), out["pageErrors"]
    assert set(out["pages"]) == {"studentList", "studentNotified", "teacherIncoming", "adminUsers"}, out
    for page, v in out["pages"].items():
        assert all(v["shown"]), (page, v)
        assert v["ran"] is False and v["injected"] == 0, (page, v)


@test
def pages_pass_an_accessibility_audit():
    """axe-core's WCAG 2.1 A and AA rules on every page a user meets (login,
    student list in English and Korean, my page, teacher console, admin):
    no serious or critical violation."""
    from harness import Server
    s = Server("--media-workers", "0")
    out = browser_script("a11y.mjs", {"base": s.url}, 300)
    assert "error" not in out, out
    assert len(out["pages"]) == 6, out
    assert all(n > 10 for n in out["passes"].values()), out["passes"]  # axe really ran
    bad = {k: v for k, v in out["pages"].items() if v}
    assert not bad, json.dumps(bad, indent=1)


@test
def a_waiting_line_through_the_pages():
    """Three students line up behind a busy teacher in Chromium: places
    1-2-3, live; the second leaves and the third moves up; the teacher ends
    the consultation, the first gets the offer (the console marks it from
    the line), the teacher accepts and the student's page moves to the
    call."""
    s = Server("--media-workers", "0")
    tt, st = s.login("teacher1"), s.login("student1")
    assert s.request("PUT", "/api/teachers/2/presence", {"status": "online"}, token=tt).status == 200
    cid = s.post("/api/consultations", {"teacher_id": 2}, token=st).json["id"]
    assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
    p = subprocess.Popen(["node", os.path.join(BROWSER, "line.mjs"),
                          json.dumps({"base": s.url, "teacher": "Kim Minji"})],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=BROWSER, text=True)
    try:
        first = p.stdout.readline().strip()
        if first == "READY":
            assert s.post(f"/api/consultations/{cid}/end", token=tt).status == 200
            p.stdin.write("GO\n")
            p.stdin.flush()
        rest, errs = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [l for l in (first + "\n" + rest).splitlines() if l.startswith("{")]
    assert lines, (first, rest, errs[-3000:])
    out = json.loads(lines[-1])
    assert "error" not in out and not out.get("pageErrors"), json.dumps(out, indent=1)
    assert out["places"] == {"student2": 1, "student3": 2, "student4": 3}, out
    assert out["placeText"] == "You are number 3 in line (2 ahead).", out
    assert out["afterLeave"] == {"student2": 1, "student4": 2, "student3Joins": 1}, out
    names = {u["id"]: u["display_name"] for u in s.get("/api/users", token=s.login("admin")).json["users"]}
    assert out["teacherLine"] == [names[6], names[8]], out  # student2, student4
    assert "from your line" in out["offer"], out
    assert "Your turn" in out["toast"], out
    assert out["studentCall"] == out["teacherCall"] and out["studentCall"].startswith("/call/"), out
    offered = int(out["studentCall"].split("/")[-1])
    assert s.get(f"/api/consultations/{offered}", token=tt).json["from_line"] is True


@test
def screen_sharing_through_the_pages():
    """The teacher shares a screen from the call page (contentHint detail);
    the student's page shows it large at its full 1280x720 with both cameras
    small, again after a reload mid-share; the browser's stop ends it for
    both; the replay page plays the screen's recording in step with the
    cameras."""
    s = media_server()
    cid, tt, st = live_consultation(s)
    out = browser_script("screen.mjs", {"base": s.url, "consultation": cid}, 400)
    assert "error" not in out and not out.get("pageErrors"), json.dumps(out, indent=1)
    assert out["teacherButton"] == "true" and out["teacherButtonAfter"] == "false", out
    assert out["contentHint"] == "detail", out
    for saw in (out["studentSaw"], out["afterReload"]):
        assert saw["width"] == 1280 and saw["height"] == 720, saw
        assert saw["stats"]["width"] == 1280 and saw["stats"]["frames"] > 20, saw
        assert saw["cameraPlaying"] and saw["screenBox"] > 2 * saw["cameraBox"], saw  # large, cameras small
    assert out["stoppedForStudent"] is True, out
    recs = {r["file"]: r for r in s.get(f"/api/consultations/{cid}/recordings", token=st).json["recordings"]}
    assert recs["teacher-screen.webm"]["state"] == "ready" and recs["teacher-screen.webm"]["stream"] == "screen", recs
    # One share, one file: the reload made a new subscription, not a new share.
    assert not any(f.startswith("teacher-screen-") for f in recs), recs
    # The screen first (large), then the cameras (the student's reload was
    # a rejoin, so theirs may be in two files).
    assert out["replayOrder"][0] == "screen" and len(out["replayOrder"]) >= 3, out
    assert set(out["replayOrder"][1:]) == {"camera"}, out
    screen = out["replay"][0]
    assert screen["err"] is None and screen["w"] == 1280, out["replay"]
    mid = out["replayScreen"]["offset"] + out["replayScreen"]["duration"] / 2
    assert mid - 0.5 <= screen["at"] <= mid + 5, (mid, out["replay"])
    # In step: the teacher's camera (recorded all through) plays at the
    # same moment of the timeline as the screen.
    cam = next(v for v in out["replay"] if v["role"] == "teacher" and v["stream"] == "camera")
    assert cam["playing"] and abs(cam["at"] - screen["at"]) < 1.0, out["replay"]
    assert "screen" in out["replayCaption"], out


if __name__ == "__main__":
    run()
