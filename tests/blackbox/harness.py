"""Black-box test harness: the real consultd on loopback with a temp data dir.

Each test file registers functions with @test and calls run(); output is TAP,
which meson reads (protocol: 'tap').  Servers are started with port 0 and the
harness reads the bound URL from the server's stderr, so parallel test files
never race for ports.  Every server a test starts is stopped (SIGTERM, then
SIGKILL after a bound) and its exit code checked at the end of the test.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

BIN = os.environ.get("CONSULTD_BIN", os.path.join(os.path.dirname(__file__), "../../build/consultd"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_tests = []

# CONSULTD_TEST_BACKEND=postgresql runs a suite on PostgreSQL: one server
# per test process (scripts/pg-temp.sh), one fresh database per data dir.
BACKEND = os.environ.get("CONSULTD_TEST_BACKEND", "sqlite")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A real PostgreSQL 15 in a temp dir on 127.0.0.1, stopped at exit."""

    def __init__(self, per_test=True):
        self.dir = tempfile.mkdtemp(prefix="consultd-pg-")
        self.port = free_port()
        self.n = 0
        self.url = self.start()
        (Postgres.this_test if per_test else Postgres.all).append(self)

    all = []        # for the whole run (the suites on PostgreSQL)
    this_test = []  # stopped when the test ends

    def _script(self, *args, timeout=120):
        p = subprocess.run([os.path.join(ROOT, "scripts", "pg-temp.sh"), *args], timeout=timeout,
                           capture_output=True, text=True, env={"PG_FSYNC": "off", **os.environ})
        if p.returncode != 0:
            raise AssertionError(f"pg-temp.sh {args[0]} failed: {p.stderr}")
        return p.stdout.strip()

    def start(self):
        return self._script("start", self.dir, str(self.port))

    def stop(self):
        self._script("stop", self.dir)

    def postmaster_pid(self):
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def kill9(self):
        """kill -9 of the postmaster: its backends go with it."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        # The backends notice their postmaster is gone and exit; wait until
        # nothing holds the port so that a restart can bind it.
        wait_for(lambda: self._port_free(), 60, what="PostgreSQL's backends to exit")

    def stop_immediate(self):
        as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run(as_pg + ["/usr/lib/postgresql/15/bin/pg_ctl", "-D",
                                os.path.join(self.dir, "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=True)

    def _port_free(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) != 0

    def createdb(self):
        self.n += 1
        name = f"t{os.getpid()}_{self.n}"
        self.sql(self.url, f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    @staticmethod
    def sql(url, query):
        """Runs QUERY with psql; rows as tuples of str (None for NULL)."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-P", "null=\\N",
                            "-v", "ON_ERROR_STOP=1", url, "-c", query],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"psql failed: {p.stderr}")
        return [tuple(None if c == "\\N" else c for c in line.split("\t"))
                for line in p.stdout.splitlines() if line]

    @classmethod
    def shared(cls):
        return cls.all[0] if cls.all else cls(per_test=False)

    @classmethod
    def stop_all(cls, which=None):
        which = cls.all if which is None else which
        for pg in which:
            try:
                pg.stop()
            except Exception:  # noqa: BLE001 - cleanup
                pass
            shutil.rmtree(pg.dir, ignore_errors=True)
        which.clear()


_databases = {}  # data dir -> PostgreSQL URL


def _int_or_str(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def test(fn):
    _tests.append(fn)
    return fn


def run():
    only = sys.argv[1:] 
    tests = [t for t in _tests if not only or t.__name__ in only]
    print(f"1..{len(tests)}", flush=True)
    failed = 0
    for i, t in enumerate(tests, 1):
        try:
            t()
            print(f"ok {i} - {t.__name__}", flush=True)
        except BaseException as e:  # noqa: BLE001 - a test failure of any kind
            failed += 1
            print(f"not ok {i} - {t.__name__}", flush=True)
            for line in traceback.format_exc().splitlines():
                print(f"# {line}", flush=True)
            # meson's --print-errorlogs shows stderr only: the reason goes
            # there too, so CI's log says why, not just which.
            print(f"FAILED {t.__name__}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        finally:
            Server.stop_all()
            Postgres.stop_all(Postgres.this_test)
    Postgres.stop_all()
    sys.exit(1 if failed else 0)


def wait_for(pred, timeout=30.0, interval=0.05, what="condition"):
    """Polls PRED until it returns a truthy value; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Server:
    running = []

    def __init__(self, *args, demo=True, data_dir=None, env=None, wait=True, preexec=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="consultd-test-")
        self.database = None
        if "--database" in args:
            self.database = args[list(args).index("--database") + 1]
        elif BACKEND == "postgresql":
            if self.data_dir not in _databases:
                _databases[self.data_dir] = Postgres.shared().createdb()
            self.database = _databases[self.data_dir]
            args = ("--database", self.database) + tuple(args)
        self.args = ["--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                     "--log-level", "info"] + (["--demo"] if demo else []) + list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.preexec = preexec  # run in the child before exec (limits)
        self.log_path = os.path.join(self.data_dir, "server.log")
        self.proc = None
        self.url = None
        self.start(wait)

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.log_offset = self.log.tell()
        self.proc = subprocess.Popen([BIN] + self.args, stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=self.env, preexec_fn=self.preexec)
        Server.running.append(self)
        if wait:
            self.url = wait_for(self._bound_url, 30, what="consultd to listen")
            p = urllib.parse.urlparse(self.url)
            self.host, self.port = p.hostname, p.port

    def _bound_url(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"consultd exited with {self.proc.returncode}:\n{self.logtext()}")
        m = re.findall(r"listening on (http://\S+)", self.logtext()[self.log_offset:])
        return m[-1] if m else None

    @property
    def db_args(self):
        """The flags a subcommand needs to reach this server's database."""
        return ["--data-dir", self.data_dir] + (["--database", self.database] if self.database else [])

    def query(self, sql):
        """Rows of SQL on this server's database (SQLite or PostgreSQL); ints
        come back as ints on both."""
        if self.database and self.database.startswith("postgres"):
            return [tuple(_int_or_str(c) for c in row) for row in Postgres.sql(self.database, sql)]
        import sqlite3
        db = sqlite3.connect(os.path.join(self.data_dir, "consultd.db"), timeout=10)
        try:
            rows = db.execute(sql).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30):
        h = {}
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read().decode("utf-8", "replace"))
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def login(self, username, password="demo"):
        r = self.post("/api/login", {"username": username, "password": password})
        assert r.status == 200, r
        return r.json["token"]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError(f"consultd did not stop within {timeout}s")
        finally:
            self.log.close()
            if self in Server.running:
                Server.running.remove(self)
        self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        rc = self.stop()
        self.start()
        return rc

    @classmethod
    def stop_all(cls):
        for s in list(cls.running):
            try:
                s.stop()
            except AssertionError:
                pass
            if s.own_dir and not os.environ.get("KEEP_DATA"):
                shutil.rmtree(s.data_dir, ignore_errors=True)


BROWSER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser")


def browser_script(name, opts, timeout):
    """Runs tests/browser/NAME with OPTS (JSON) and returns the last JSON
    line it printed (every script prints one, with "error" on failure)."""
    p = subprocess.run(["node", os.path.join(BROWSER, name), json.dumps(opts)],
                       capture_output=True, timeout=timeout, cwd=BROWSER)
    lines = [l for l in p.stdout.decode().splitlines() if l.startswith("{")]
    assert lines, (name, p.returncode, p.stderr.decode()[-3000:])
    return json.loads(lines[-1])


def raw_http(host, port, data, timeout=10):
    """Sends DATA as-is and returns the raw reply (for malformed requests)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except socket.timeout:
            pass
    return b"".join(chunks)


def parallel(fns):
    """Runs FNS at once in threads (started together), returns their results."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def wrap(i, f):
        barrier.wait()
        try:
            results[i] = f()
        except BaseException as e:  # noqa: BLE001
            results[i] = e

    ts = [threading.Thread(target=wrap, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


class SSE:
    """A Server-Sent Events client reading in a background thread."""

    def __init__(self, server, token, last_event_id=None, timeout=60):
        self.events = []
        self.comments = 0
        self.cond = threading.Condition()
        self.closed = False
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        h = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", "/api/events", headers=h)
        self.sock = self.conn.sock  # getresponse() drops conn.sock for Connection: close
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        if self.status != 200:
            self.body = self.resp.read().decode()
            self.conn.close()
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        cur = {}
        try:
            while True:
                line = self.resp.fp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line == "":
                    if "data" in cur:
                        with self.cond:
                            ev = {"id": int(cur.get("id", 0)), "event": cur.get("event"),
                                  "data": json.loads(cur["data"])}
                            self.events.append(ev)
                            self.cond.notify_all()
                    cur = {}
                elif line.startswith(":"):
                    with self.cond:
                        self.comments += 1
                        self.cond.notify_all()
                else:
                    k, _, v = line.partition(":")
                    cur[k] = v[1:] if v.startswith(" ") else v
        except (OSError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pred, timeout=30, what="event"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"no {what} within {timeout}s; got {[e['event'] for e in self.events]}")
                self.cond.wait(left)

    def wait_type(self, type_, timeout=30, **match):
        return self.wait(lambda e: e["event"] == type_ and all(e["data"]["data"].get(k) == v for k, v in match.items()),
                         timeout, what=f"{type_} {match}")

    def types(self):
        with self.cond:
            return [e["event"] for e in self.events]

    def wait_closed(self, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stream did not close")
                self.cond.wait(left)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.conn.close()
