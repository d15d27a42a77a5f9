#!/usr/bin/env python3
"""The load benchmark: N synthetic consultations through the real API.

For each consultation: log in both users, request, accept, then WHIP and
WHEP for both participants with tests/media/webrtc-peer (C, GStreamer),
publishing the pre-encoded clip (bench/make-media.sh) so the generator pays
no encoding cost; receivers depayload without decoding (--no-decode) unless
--decode.  Join time is request -> first remote video frame; loss and jitter
come from webrtcbin's receiver statistics; freezes are counted as
webrtc-stats' freezeCount (a gap between frames of at least
max(3 x mean, mean + 150 ms), the mean over the last 30 gaps).  The
server's CPU (% of one core, consultd plus its media workers, from /proc),
RSS, threads and fds are sampled over a steady window: it starts once every
receiver has its first frame, and 3 s more (until the fifth session it
started a fixed 6 s after the last peer was started, which at N = 16 with
cold peers was before the last joins: CPU was undercounted).  Then the
peers are told to stop (SIGTERM) and report.

  bench/run.py --n 1,4,8,16 [--seconds 20] [--until-loss 64] [--out FILE.md]
  bench/run.py --n 8 --stagger 2     (consultations arriving one after another)
  bench/run.py --n 8 --stagger 2 --warm-peers   (peers ready before the request)
  bench/run.py --n 1 --seconds 4 --smoke      (CI: proves it still works)
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
from harness import Server, wait_for  # noqa: E402
from mediahelp import metric  # noqa: E402

BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
PEER = os.environ.get("WEBRTC_PEER", os.path.join(BUILD, "tests", "webrtc-peer"))
CLIP = os.path.join(ROOT, "bench", "media", "clip.webm")
TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = int(parts[11]) + int(parts[12])  # utime + stime, in ticks
    rss = int(parts[21]) * os.sysconf("SC_PAGE_SIZE")
    threads = int(parts[17])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return cpu, rss, threads, fds


def server_pids(s, admin):
    ws = s.get("/api/admin/media-workers", token=admin).json["workers"]
    return [s.proc.pid] + [w["pid"] for w in ws if w["pid"]]


def sample(pids):
    tot = [0, 0, 0, 0]
    for p in pids:
        for i, v in enumerate(proc_stat(p)):
            tot[i] += v
    return tot


class Reader:
    """A peer's stdout, read as it comes: "joined" at its first frame, its
    JSON report at the end."""

    def __init__(self, proc):
        self.lines = []
        self.joined = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, f):
        for raw in f:
            line = raw.decode(errors="replace").strip()
            if line == "joined":
                self.joined.set()
            self.lines.append(line)


def online_pairs(s, admin, n):
    """N new teacher and student accounts on server S, each teacher
    online: [(teacher id, teacher token, student token)]."""
    for i in range(n):
        for role in ("teacher", "student"):
            r = s.post("/api/users", {"username": f"b{role}{i}", "password": "benchpass",
                                       "role": role, "display_name": f"{role} {i}"}, token=admin)
            assert r.status == 201, r
    users = {u["username"]: u["id"] for u in s.get("/api/users", token=admin).json["users"]}
    pairs = []
    for i in range(n):
        tt, st = s.login(f"bteacher{i}", "benchpass"), s.login(f"bstudent{i}", "benchpass")
        tid = users[f"bteacher{i}"]
        assert s.request("PUT", f"/api/teachers/{tid}/presence", {"status": "online"}, token=tt).status == 200
        pairs.append((tid, tt, st))
    return pairs


def run_n(n, seconds, decode, warm=3, record=True, live=False, stagger=0.0, latency=None,
          warm_peers=False, join_wait=60, server_args=(), settle=0.0):
    s = Server("--media-ice-loopback", "--max-live", "1000", "--max-pending", "1000",
               "--record=" + ("true" if record else "false"),
               "--request-rate-per-min", "100000", "--login-ip-per-min", "100000",
               "--log-level", "warning", *server_args)
    # --settle: a worker under valgrind takes longer than the server's 20 s
    # offer timeout to load GStreamer and make its DTLS certificate.
    time.sleep(settle)
    admin = s.login("admin")
    pairs = online_pairs(s, admin, n)
    peers = []
    # Peers run until they are told to stop (SIGTERM) after the window;
    # --seconds is only a bound in case this script dies.
    left = int(n * stagger + join_wait + warm + seconds + 60)

    # A worker takes 32 offers at once and answers more with 503 and
    # Retry-After (signaling/workers/media.c): 16 consultations arriving in
    # one second make 64.  The peers retry as the pages do; before they
    # did, half the receivers at N = 16 never joined.
    retry = ["--retry-busy", "10"]

    def peer_args(mode):
        if mode == "publish":
            src = [] if live else ["--file", CLIP]  # live: the peer encodes, so it answers PLIs
            return [PEER, "--mode", "publish", "--seconds", str(left)] + retry + src
        args = [PEER, "--mode", "receive", "--seconds", str(left)] + retry
        if not decode:
            args.append("--no-decode")
        if latency is not None:
            args += ["--latency", str(latency)]
        return args

    # --warm-peers: every peer process is started, has made its offer and
    # gathered its candidates before its consultation is requested, as a
    # browser page has its peer connection (and DTLS certificate) ready;
    # the join then measures the server and the network, not how long a
    # GStreamer process takes to start on the two shared cores.
    ready = []
    if warm_peers:
        for i in range(n):
            four = []
            for mode in ("publish", "receive", "publish", "receive"):
                four.append(subprocess.Popen(peer_args(mode) + ["--wait-go"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
            ready.append(four)
        for four in ready:
            for pr in four:
                line = pr.stdout.readline().decode().strip()
                assert line == "ready", f"a warm peer did not get ready: {line!r}"
    for i, (tid, tt, st) in enumerate(pairs):
        if i and stagger:
            time.sleep(stagger)  # arrivals spread out: each joins while the others run
        t0 = time.time()
        cid = s.post("/api/consultations", {"teacher_id": tid}, token=st).json["id"]
        assert s.post(f"/api/consultations/{cid}/accept", token=tt).status == 200
        for j, tok in enumerate((tt, st)):
            for k, (kind, mode) in enumerate((("pub", "publish"), ("sub", "receive"))):
                url = f"{s.url}/{'whip' if kind == 'pub' else 'whep'}/consultations/{cid}"
                if warm_peers:
                    pr = ready[i][2 * j + k]
                    pr.stdin.write(f"{url} {tok}\n".encode())
                    pr.stdin.flush()
                    start = time.time()
                else:
                    start = time.time()
                    pr = subprocess.Popen(peer_args(mode) + ["--url", url, "--token", tok],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                peers.append((kind, t0, pr, start, Reader(pr)))
    # The measuring window starts once every receiver has its first frame
    # (or join_wait has passed: an unhealthy run) and WARM seconds more, so
    # no join falls inside it.
    deadline = time.time() + join_wait
    for p in peers:
        if p[0] == "sub":
            p[4].joined.wait(max(0.0, deadline - time.time()))
    time.sleep(warm)
    pids = server_pids(s, admin)
    out0 = metric(s, "consultd_media_packets_out_total") or 0
    c0, _, _, _ = sample(pids)
    w0, wall0 = time.monotonic(), time.time()
    time.sleep(seconds)
    c1, rss, threads, fds = sample(pids)
    w1, wall1 = time.monotonic(), time.time()
    out1 = metric(s, "consultd_media_packets_out_total") or 0
    cpu_pct = 100.0 * (c1 - c0) / TICK / (w1 - w0)
    for p in peers:
        if p[2].poll() is None:
            p[2].send_signal(signal.SIGTERM)  # report and DELETE the session
    t_end = time.time()
    lost, recv, jit, frames = 0, 0, [], []
    freezes, freeze_ms, frozen = 0, 0, 0  # webrtc-stats' freezeCount, per receiver
    steady_freezes, steady_freeze_ms = 0, 0  # those that began in the measuring window
    steps = {}  # where a join's time goes: each step's ms from the request
    for p in peers:
        p[2].wait(timeout=60)
        p[4].thread.join(timeout=10)
        lines = [l for l in p[4].lines if l.startswith("{")]
        if not lines:
            continue
        res = json.loads(lines[-1])
        marks = dict(res.get("timeline_ms", {}), frame=res["first_frame_ms"])
        for k, v in marks.items():
            if v >= 0 and (p[0] == "sub" or k != "frame"):
                steps.setdefault(f"{p[0]}_{k}", []).append((p[3] - p[1]) * 1000 + v)
        if p[0] == "sub":
            lost += res["packets_lost"]
            recv += res["packets_received"]
            jit.append(res["jitter_max"])
            freezes += res.get("freezes", 0)
            freeze_ms += res.get("freeze_ms", 0)
            frozen += res.get("freezes", 0) > 0
            for end_ms, dur in res.get("freeze_list", []):
                if wall0 <= p[3] + (end_ms - dur) / 1000.0 <= wall1:
                    steady_freezes += 1
                    steady_freeze_ms += dur
            # Frame rate once joined: the seconds before the first frame
            # are the join time's, reported on their own.
            since = t_end - p[3] - max(0, res["first_frame_ms"]) / 1000.0
            frames.append(res["video_frames"] / max(since, 1.0))
    s.stop()
    joins = sorted(steps.get("sub_frame", []))  # request -> first decoded remote frame
    q = lambda a, f: a[min(len(a) - 1, int(f * len(a)))] if a else float("nan")
    return {
        "n": n, "cpu_pct": cpu_pct, "cpu_per_consultation": cpu_pct / n, "rss_mb": rss / 2**20,
        "relayed_pps": (out1 - out0) / (w1 - w0),
        "cpu_us_per_packet": 1e6 * (c1 - c0) / TICK / max(1, out1 - out0),
        "threads": threads, "fds": fds, "join_p50_ms": q(joins, 0.5), "join_p95_ms": q(joins, 0.95),
        "joined": len(joins), "receivers": 2 * n, "packets_received": recv, "packets_lost": lost,
        "loss_pct": 100.0 * lost / max(1, recv + lost), "jitter_max_ms": 1000 * max(jit or [0]),
        "fps_min": min(frames or [0]),
        "freezes": freezes, "freeze_ms": freeze_ms, "receivers_frozen": frozen,
        "steady_freezes": steady_freezes, "steady_freeze_ms": steady_freeze_ms,
        "join_steps_p50_ms": step_quantiles(steps, q, 0.5),
        "join_steps_p95_ms": step_quantiles(steps, q, 0.95),
    }


def step_quantiles(steps, q, f):
    """Each step's quantile F (ms from the request), in the order reached."""
    qs = {k: round(q(sorted(v), f)) for k, v in steps.items()}
    return dict(sorted(qs.items(), key=lambda kv: kv[1]))


def api_bench(seconds=10):
    s = Server("--log-level", "warning", "--login-ip-per-min", "100000")
    st = s.login("student1")
    out = {}
    for path in ("/api/teachers", "/api/mypage"):
        p = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-H",
                            f"Authorization: Bearer {st}", f"{s.url}{path}"], capture_output=True, text=True)
        rps = float(p.stdout.split("Requests/sec:")[1].split()[0])
        p99 = p.stdout.split(" 99%")[1].split()[0]
        non2xx = "Non-2xx" in p.stdout
        out[path] = {"rps": rps, "p99": p99, "errors": non2xx}
    s.stop()
    return out


def healthy(r, live=False):
    """No RTP loss, every receiver joined, and the slowest one got at least
    80 % of the publishers' frame rate (30 fps clip, 15 fps live).  Loss
    alone is not enough: on two saturated cores receivers first slow down
    and then fail to join while the ones that did lose nothing."""
    fps = 15 if live else 30
    return (r["packets_lost"] == 0 and r["joined"] == r["receivers"]
            and r["fps_min"] >= 0.8 * fps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1,4,8,16")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--api", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="measure the relay without recording")
    ap.add_argument("--live-publishers", action="store_true",
                    help="publishers encode live (320x240@15 VP8) instead of sending the clip: "
                         "join times then include the keyframe a request gets")
    ap.add_argument("--until-loss", type=int, default=0,
                    help="after --n, keep doubling N up to this while the run is healthy "
                         "(no loss, every receiver joined, >= 80%% of the frame rate)")
    ap.add_argument("--receiver-latency", type=int, default=None,
                    help="the receivers' jitterbuffer latency in ms (webrtcbin's default, 200, "
                         "if not given; a browser's starts near 0): part of every join time")
    ap.add_argument("--stagger", type=float, default=0.0,
                    help="start the consultations this many seconds apart instead of all at "
                         "once: each join is then measured while the earlier ones run")
    ap.add_argument("--warm-peers", action="store_true",
                    help="start every peer and make its offer before its consultation is "
                         "requested (as a browser page has its peer connection ready): joins "
                         "then measure the server and the network, not the generator's start-up")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="one more consultd option, e.g. --server-arg=--media-workers=2 (repeatable)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after the server starts, for a media worker run "
                         "under valgrind to warm up (bench/callgrind.sh)")
    ap.add_argument("--out")
    a = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "bench", "make-media.sh"), CLIP], check=True)
    results = []
    ns = [int(x) for x in a.n.split(",")]
    while ns:
        n = ns.pop(0)
        r = run_n(n, a.seconds, a.decode, warm=2 if a.smoke else 3, record=not a.no_record,
                  live=a.live_publishers, stagger=a.stagger, latency=a.receiver_latency,
                  warm_peers=a.warm_peers, server_args=a.server_arg, settle=a.settle)
        r["record"] = not a.no_record
        print(json.dumps(r), flush=True)
        results.append(r)
        if not ns and a.until_loss and healthy(r, a.live_publishers) and n * 2 <= a.until_loss:
            ns.append(n * 2)
    if a.smoke:
        r = results[0]
        ok = r["joined"] == r["receivers"] and r["packets_received"] > 100 and r["cpu_pct"] > 0
        print(f"{int(ok)} passed, {int(not ok)} failed")
        sys.exit(0 if ok else 1)
    api = api_bench() if a.api else None
    if api:
        print(json.dumps(api), flush=True)
    if a.out:
        write_markdown(a.out, results, api, " ".join(sys.argv), a.live_publishers)


def write_markdown(path, results, api, command, live=False):
    """The measured table, with machine, date and command, as markdown."""
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
    lines = [f"# Benchmark run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {os.cpu_count()} x {cpu}.  Command: `{command}`", "",
             "| N | recording | server CPU % | per consultation % | RSS MiB | threads | fds |"
             " receivers joined | join p50 / p95 ms | loss % | max jitter ms | slowest fps |"
             " freezes (receivers, total s) | freezes in the window (total s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['n']} | {'on' if r['record'] else 'off'} | {r['cpu_pct']:.1f} |"
                     f" {r['cpu_per_consultation']:.2f} | {r['rss_mb']:.0f} | {r['threads']} | {r['fds']} |"
                     f" {r['joined']} / {r['receivers']} |"
                     f" {r['join_p50_ms']:.0f} / {r['join_p95_ms']:.0f} | {r['loss_pct']:.2f} |"
                     f" {r['jitter_max_ms']:.1f} | {r['fps_min']:.1f} |"
                     f" {r['freezes']} ({r['receivers_frozen']}, {r['freeze_ms'] / 1000:.1f}) |"
                     f" {r['steady_freezes']} ({r['steady_freeze_ms'] / 1000:.1f}) |")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        slope = (b["cpu_pct"] - a["cpu_pct"]) / max(1, b["n"] - a["n"])
        lines += ["", f"Slope: {slope:.2f} % of one core per consultation."]
    lossless = [r["n"] for r in results if r["packets_lost"] == 0]
    if lossless:
        lines.append(f"Largest N without RTP loss: {max(lossless)}.")
    good = [r["n"] for r in results if healthy(r, live)]
    if good:
        lines.append(f"Largest N where every receiver joined, without loss, at >= 80 % of the"
                     f" frame rate: {max(good)}.")
    if api:
        lines += ["", "| endpoint | req/s | p99 |", "|---|---|---|"]
        lines += [f"| `{k}` | {v['rps']:.0f} | {v['p99']} |" for k, v in api.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
