"""A lossy network on this machine: a network namespace of the test's own,
in which every UDP packet goes through tests/impair/impair.c (an NFQUEUE
rule; TCP, so HTTP, is left alone), and a Chromium pair through consultd
(or directly, the reference) whose getStats say what users would see.

    enter_netns()             re-runs this process in a new network namespace
    with Impair(loss=2, delay_ms=20): ...
    call(server, cid, tokens, seconds=40)  -> tests/browser/network.mjs's result

Needs root (CI runs as root), iptables-legacy and a kernel with NFQUEUE.
bench/network.py is the command line around it (docs/benchmarks.md).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from harness import BROWSER

HERE = os.path.dirname(os.path.abspath(__file__))
IMPAIR = os.environ.get("IMPAIR", os.path.join(HERE, "../../build/tests/impair"))
QUEUE = 7


def enter_netns():
    """Runs the rest of this program in a network namespace of its own with
    only a loopback interface, whose UDP goes through queue QUEUE (passing
    untouched while no impair process holds it)."""
    if os.environ.get("CONSULTD_NETNS") != "1":
        os.environ["CONSULTD_NETNS"] = "1"
        sys.stdout.flush()
        os.execvp("unshare", ["unshare", "-n", "--", sys.executable] + sys.argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["iptables-legacy", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE",
                    "--queue-num", str(QUEUE), "--queue-bypass"], check=True)


class Impair:
    """impair.c for the duration of a with block; .counts has its figures
    after it (what it saw, passed and dropped)."""

    def __init__(self, loss=0.0, delay_ms=0, burst=1, rate_kbit=0, queue_ms=200, outage_ms=0, seed=1):
        self.args = [IMPAIR, "--queue", str(QUEUE), "--loss", str(loss), "--burst", str(burst),
                     "--delay-ms", str(delay_ms), "--rate-kbit", str(rate_kbit),
                     "--queue-ms", str(queue_ms), "--outage-ms", str(outage_ms), "--seed", str(seed)]
        self.counts = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        assert "ready" in line, (line, self.proc.stderr.read().decode())
        return self

    def outage(self):
        """Drops everything for outage_ms from now."""
        self.proc.send_signal(signal.SIGUSR1)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        self.counts = json.loads(lines[-1]) if lines else None
        return False


def call(server, cid, tokens, seconds=40, warmup=5, p2p=False, outage=None, outage_at=0):
    """Both participants publish and receive through SERVER (or, with p2p,
    to each other) for WARMUP + SECONDS; what each direction's receiver saw
    over the SECONDS (tests/browser/network.mjs).  With OUTAGE (an Impair),
    its outage starts OUTAGE_AT seconds into the window, and the result says
    when ("outage_started_ms", Unix ms like the timeline's)."""
    opts = {"base": server.url, "cid": cid, "tokens": tokens, "seconds": seconds,
            "warmup": warmup, "p2p": p2p}
    p = subprocess.Popen(["node", os.path.join(BROWSER, "network.mjs"), json.dumps(opts)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=BROWSER)
    timer, started = None, {}

    def begin():
        started["ms"] = time.time() * 1000
        outage.outage()

    try:
        lines = []
        for raw in p.stdout:
            line = raw.decode()
            lines.append(line)
            if line.startswith("WINDOW") and outage is not None:
                timer = threading.Timer(outage_at, begin)
                timer.start()
        p.wait(seconds + warmup + 150)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if timer:
            timer.cancel()
    js = [l for l in lines if l.startswith("{")]
    assert js, ("network.mjs", p.returncode, p.stderr.read().decode()[-3000:])
    res = json.loads(js[-1])
    if "ms" in started:
        res["outage_started_ms"] = started["ms"]
    return res
