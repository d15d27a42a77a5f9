"""Several consultd nodes on one PostgreSQL, and haproxy in front: the
pieces test_cluster.py and test_store.py share."""
import os
import subprocess

from harness import ROOT, Postgres, Server, free_port, wait_for

T1 = 2  # teacher1 in the demo seed


class Cluster:
    def __init__(self, n=3, *args, media=False, fixed_ports=False, env=None):
        self.pg = Postgres()
        self.env = env
        self.url = self.pg.url
        self.media = media
        self.fixed_ports = fixed_ports  # a restarted node keeps its address (haproxy)
        # One after the other: the first migrates and seeds, the others find
        # both done.
        self.nodes = [self.node(f"n{i}", *args) for i in range(n)]
        self.tok = {}

    def node(self, node_id, *args):
        media = ["--media-workers", "1", "--media-ice-loopback"] if self.media else \
            ["--media-workers", "0"]
        if self.fixed_ports:
            media += ["--listen", f"127.0.0.1:{free_port()}"]
        return Server("--database", self.url, "--node-id", node_id, *media,
                      "--request-rate-per-min", "100000", "--write-rate-per-min", "100000", *args,
                      env=self.env)

    def login(self, user, node=None):
        if user not in self.tok:
            self.tok[user] = self.nodes[self.live(0) if node is None else node].login(user)
        return self.tok[user]

    def req(self, node, user, method, path, body=None, timeout=30):
        return self.nodes[node].request(method, path, body=body, token=self.login(user),
                                        timeout=timeout)

    def live(self, i):
        """The I-th of the nodes that are running (round robin)."""
        up = [k for k, n in enumerate(self.nodes) if n.proc]
        return up[i % len(up)]

    def lag_zero(self, node=0):
        return "consultd_event_lag 0\n" in self.nodes[node].get("/metrics").body

    def query(self, sql):
        return self.nodes[0].query(sql)


def online(c, node, teacher="teacher1", tid=T1, status="online"):
    r = c.req(node, teacher, "PUT", f"/api/teachers/{tid}/presence", {"status": status})
    assert r.status == 200, r
    return r


class Haproxy:
    """haproxy from Debian in front of the nodes, with the configuration
    scripts/haproxy-cfg.sh writes (contrib/haproxy.cfg is one)."""

    def __init__(self, c, port=None):
        self.port = port or free_port()
        nodes = [f"n{i}={n.host}:{n.port}" for i, n in enumerate(c.nodes)]
        cfg = subprocess.run([os.path.join(ROOT, "scripts", "haproxy-cfg.sh"),
                              f"127.0.0.1:{self.port}", *nodes],
                             capture_output=True, text=True, check=True).stdout
        self.dir = c.nodes[0].data_dir
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self.log,
                                     stderr=self.log)
        self.host = "127.0.0.1"
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: self.up(len(c.nodes)), 30, what="haproxy to see every node up")

    def up(self, n):
        """Whether N different nodes answered /readyz through haproxy."""
        seen = set()
        for _ in range(3 * n):
            try:
                r = self.request("GET", "/readyz")
            except OSError:
                return False
            if r.status == 200:
                seen.add(r.header("X-Consultd-Node"))
        return len(seen) == n

    request = Server.request
    post = Server.post
    login = Server.login

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


class Via:
    """The entry point as a server for mediahelp.peer(): its URL."""

    def __init__(self, url):
        self.url = url


def placed(c):
    return dict(c.query("SELECT id, node_id FROM consultations WHERE node_id IS NOT NULL"))
