#!/usr/bin/env python3
"""Media that survives real networks, as Chromium sees it.  Both participants
are headless Chromium (fake camera at 30 fps, VP8, Opus) publishing over
WHIP and receiving over WHEP through consultd, in a network namespace of
this test's own whose UDP crosses tests/impair/impair.c once per hop, with
20 ms of delay per hop.  Figures come from getStats; docs/benchmarks.md
("Media under loss") has the same scenarios with P2P Chromium beside them.

Targets (issue 18): at 2 % loss per hop both receivers above 25 fps with
under 3 s of freezes a minute; at 5 % above 15 fps; after a 1 s outage the
video is back within a second."""
import os
import time

import netlab
from harness import Server, test, run
from mediahelp import live_consultation

WINDOW = 30
DIRECTIONS = ("teacher_to_student", "student_to_teacher")


def call_through(impair, seconds=WINDOW, outage_at=None, server_args=()):
    s = Server("--media-ice-loopback", *server_args)
    cid, tt, st = live_consultation(s)
    with netlab.Impair(**impair) as imp:
        res = netlab.call(s, cid, {"teacher": tt, "student": st}, seconds,
                          outage=imp if outage_at is not None else None, outage_at=outage_at)
    assert "error" not in res, res["error"]
    res["impair"] = imp.counts
    return s, res


def brief(res):
    return {d: res[d] for d in DIRECTIONS} | {"impair": res["impair"]}


def report(name, res, **extra):
    """The figures, as TAP comments in the test log."""
    keys = ("fps", "secondsWithoutVideo", "freezeCount", "freezeSeconds", "packetsLost",
            "nacksSent", "plisSent", "keyFramesDecoded", "audioConcealedPct")
    for d in DIRECTIONS:
        fig = {k: res[d][k] for k in keys}
        pub = res[d]["publisher"]
        fig.update(pub_nacks=pub["nacksReceived"], pub_rtx=pub["retransmissionsSent"],
                   pub_plis_firs=pub["plisReceived"] + pub["firsReceived"], pub_kbps=pub["kbps"],
                   pub_target_kbps=pub["targetKbps"])
        print(f"# {name} {d}: {fig}", flush=True)
    print(f"# {name} impair: {res['impair']} {extra or ''}", flush=True)


@test
def two_percent_loss_both_ways():
    """2 % random loss and 20 ms on each UDP hop: the video keeps its frame
    rate because both legs are repaired (the publisher gets NACKs for what
    the server lacks, the subscriber's NACKs are answered from the relay's
    history), and nothing freezes for long."""
    # A minute, the target's unit (freezes a minute).
    s, res = call_through({"loss": 2, "delay_ms": 20}, seconds=60)
    report("2%", res)
    info = brief(res)
    assert res["impair"]["lost_random"] > 100, info  # the impairment did bite
    for d in DIRECTIONS:
        x = res[d]
        assert x["fps"] > 25, (d, info)
        assert x["freezeSeconds"] < 3, (d, info)
        assert x["secondsWithoutVideo"] == 0, (d, info)
        # Repaired on the first leg: the publisher was asked and resent.
        assert x["publisher"]["nacksReceived"] > 0 and x["publisher"]["retransmissionsSent"] > 0, (d, info)
        # And on the second: what the receiver NACKed came, so it lost
        # (almost) nothing for good.
        assert x["nacksSent"] > 0 and x["packetsLost"] <= x["nacksSent"] // 4, (d, info)
        # One stream per participant (a=msid): the page got it in ontrack.
        assert x["streams"] == 1, (d, info)
    for role in ("teacher", "student"):
        whip, whep = res["answers"][role]["whip"], res["answers"][role]["whep"]
        for sdp in (whip, whep):
            for fb in ("nack", "nack pli", "ccm fir"):
                assert f"a=rtcp-fb:96 {fb}\r\n" in sdp or any(
                    l.startswith("a=rtcp-fb:") and l.endswith(f" {fb}") for l in sdp.splitlines()), (fb, sdp)
            assert " rtx/" not in sdp, sdp  # retransmissions are plain
        assert "a=msid:consultd-" in whep, whep
    m = s.get("/metrics").body
    assert "consultd_media_retransmitted_total" in m, m


@test
def five_percent_loss_both_ways():
    s, res = call_through({"loss": 5, "delay_ms": 20})
    report("5%", res)
    info = brief(res)
    assert res["impair"]["lost_random"] > 300, info
    for d in DIRECTIONS:
        assert res[d]["fps"] > 15, (d, info)
        assert res[d]["publisher"]["retransmissionsSent"] > 0, (d, info)


@test
def video_returns_within_a_second_after_an_outage():
    """Everything dropped for 1 s in the middle of the call (both ways, RTCP
    included): the receivers ask for a keyframe, the publishers get the
    request and the picture is back within a second of the link."""
    outage_ms = 1000
    s, res = call_through({"loss": 0, "delay_ms": 20, "outage_ms": outage_ms}, seconds=14, outage_at=5)
    end = res["outage_started_ms"] + outage_ms
    tl = res["timeline"]
    for i, d in ((1, "teacher"), (2, "student")):
        before = [row for row in tl if row[0] <= end]
        after = [row for row in tl if row[0] > end]
        assert before and after, tl
        base = before[-1][i]
        back = next((row[0] for row in after if row[i] > base), None)
        assert back is not None, (d, "no frame after the outage", brief(res))
        print(f"# outage: {d} receives frames again {back - end:.0f} ms after the link returned "
              f"(sampled every 250 ms)", flush=True)
        # The timeline is sampled every 250 ms: what it shows is at most
        # that much later than the first frame.
        assert back - end <= 1000 + 250, (d, back - end, brief(res))
        assert res["impair"]["lost_outage"] > 50, res["impair"]


if __name__ == "__main__":
    netlab.enter_netns()
    run()
