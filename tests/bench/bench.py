#!/usr/bin/python3
"""make bench: figures for the broker's hot path, spawn time, memory per session and pooling.

Starts mcpvisor on an ephemeral loopback port with the test server behind it, then measures:
  - calls/s and latency percentiles of tools/call echo on one session (ApacheBench, keep-alive,
    several concurrency levels; the child answers in order, so one session is one pipeline),
  - the same spread over several sessions (one child each),
  - spawn time: initialize → answer, i.e. sandbox set-up + exec + the server's initialize,
  - memory per session: the front's RSS growth plus the child's (init + server) RSS,
  - each isolation mode ("session": a child per session; "tenant": children shared by a tenant's
    sessions; "shared": by every tenant's), with 1,000 sessions over four tenants:
      sessions/s: initialize + notifications/initialized, by 16 client processes at once (in
        "session" mode every one spawns a child, at most eight at once by
        limits.max_spawns_in_flight, the others refused and retried, so it is spawn-bound;
        fewer when MemAvailable or pid_max would not hold 1,000 children, and opening stops
        after 90 s; the output says how many were measured),
      memory with all of them open: the front's RSS growth and the children's summed RSS and
        PSS (children found in /proc by a marker argument; init + server each),
      calls/s of tools/call echo over 16 of them, four per tenant (one ab each, 1 in flight);
    a mode this build refuses (mcpvisor check fails) is reported as not measured,
  - the audit log's cost: the same calls with audit.sync none, batch and always (every call
    forwarded only after its record is written; always: fdatasync'ed, with group commit).
Prints tables; compares with nothing else yet (no peer is installed here).
`bench.py BUILD audit` (make bench-audit) measures the audit log's cost alone, a few seconds per
mode; `bench.py BUILD pool` (make bench-pool) the isolation modes alone.
"""

import hashlib
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
ONLY = sys.argv[2] if len(sys.argv) > 2 else None  # "audit" or "pool": that part alone
MCPVISOR = os.path.join(BUILD, "mcpvisor")
TESTSERVER = os.path.join(BUILD, "tests", "servers", "testserver")
ACCEPT = "application/json, text/event-stream"


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Refused(Exception):
    """mcpvisor check refused the configuration (a key this build does not know)."""


class Daemon:
    """mcpvisor on an ephemeral port serving the test server as "ts". `tenants` tenants, one key
    each; `manifest` and `limits` add to the server's manifest and the configuration's limits.
    The test server's argv carries a marker unique to this daemon, to find its children in /proc."""

    def __init__(self, workdir, audit=None, tenants=1, manifest=None, limits=None):
        self.marker = "--bench-marker-" + secrets.token_hex(8)
        self.keys = ["mcpv_" + secrets.token_urlsafe(32) for _ in range(tenants)]
        self.key = self.keys[0]
        os.makedirs(os.path.join(workdir, "servers"))
        lim = {"max_pending_per_session": 1024, "session_idle_s": 600}
        lim.update(limits or {})
        cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
               "auth": {"api_keys_file": "api-keys.json"},
               "tenants": {"bench%d" % i: {"uid": 61990 + i, "gid": 61990 + i, "servers": ["ts"]}
                           for i in range(tenants)},
               "limits": lim}
        if audit is not None:
            cfg["audit"] = audit
        with open(os.path.join(workdir, "mcpvisor.json"), "w") as f:
            json.dump(cfg, f)
        with open(os.path.join(workdir, "api-keys.json"), "w") as f:
            json.dump({"keys": [{"sha256": hashlib.sha256(k.encode()).hexdigest(),
                                 "tenant": "bench%d" % i, "user": "bench", "scopes": []}
                                for i, k in enumerate(self.keys)]}, f)
        os.chmod(os.path.join(workdir, "api-keys.json"), 0o600)
        man = {"name": "ts", "version": "1", "command": [TESTSERVER, self.marker]}
        man.update(manifest or {})
        with open(os.path.join(workdir, "servers", "ts.json"), "w") as f:
            json.dump(man, f)
        self.log = []
        conf = os.path.join(workdir, "mcpvisor.json")
        chk = subprocess.run([MCPVISOR, "check", "-c", conf], capture_output=True, text=True)
        if chk.returncode != 0:
            raise Refused((chk.stdout + chk.stderr).strip())
        self.proc = subprocess.Popen([MCPVISOR, "run", "-c", conf],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(15):
            raise SystemExit("bench: mcpvisor did not start:\n" + "".join(self.log))

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"msg=listening address=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            m = re.search(r"front_pid=(\d+)", line)
            if m:
                self.front = int(m.group(1))
            if "msg=ready" in line:
                self.ready.set()

    def post(self, body, sid=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Authorization": "Bearer " + self.key, "Accept": ACCEPT,
             "Content-Type": "application/json"}
        if sid:
            h["Mcp-Session-Id"] = sid
        c.request("POST", "/servers/ts/mcp", json.dumps(body), h)
        r = c.getresponse()
        r.read()
        c.close()
        return r

    def session(self):
        t0 = time.monotonic()
        r = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "bench", "version": "1"}}})
        spawn = time.monotonic() - t0
        sid = r.getheader("Mcp-Session-Id")
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        return sid, spawn

    def children(self):
        """The live children as (init pid, server pid): servers carry the marker in their argv,
        and each runs under its sandbox's init, a child of the spawner."""
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if self.marker.encode() in argv:
                init = ppid(int(name))
                found.append((init if ppid(init) == self.proc.pid else None, int(name)))
        return found

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def ab(d, sid, n, c, key=None):
    body = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "hello"}}}, body)
    body.close()
    out = subprocess.run(["ab", "-q", "-k", "-n", str(n), "-c", str(c), "-p", body.name,
                          "-T", "application/json", "-H", "Accept: " + ACCEPT,
                          "-H", "Authorization: Bearer " + (key or d.key), "-H", "Mcp-Session-Id: " + sid,
                          "http://127.0.0.1:%d/servers/ts/mcp" % d.port],
                         capture_output=True, text=True)
    os.unlink(body.name)
    text = out.stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", text)
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M))
    return (float(rps.group(1)) if rps else 0.0, int(failed.group(1)) if failed else -1,
            pct.get("50"), pct.get("99"))


def spread(d, nsess, calls, sessions=None):
    """calls/s, errors, worst p50, worst p99 of `calls` echo calls over nsess sessions (new
    ones, or the given (key, session id) pairs), one ab with one call in flight per session."""
    sessions = sessions or [(d.key, d.session()[0]) for _ in range(nsess)]
    ab(d, sessions[0][1], 500, 1, sessions[0][0])  # warm-up
    results = [None] * nsess

    def run(i):
        results[i] = ab(d, sessions[i][1], calls // nsess, 1, sessions[i][0])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nsess)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (sum(r[0] for r in results), sum(r[1] for r in results),
            max(int(r[2] or 0) for r in results), max(int(r[3] or 0) for r in results))


def broker(work):
    d = Daemon(work)
    try:
        print("%-34s %10s %8s %8s %8s" % ("tools/call echo", "calls/s", "p50 ms", "p99 ms", "errors"))
        # One request at a time per session: JSON-RPC ids must be unique among a session's
        # requests in flight, and ab repeats one body. Load comes from parallel sessions.
        for nsess in (1, 2, 4, 8):
            rps, failed, p50, p99 = spread(d, nsess, 40000)
            print("%-34s %10.0f %8d %8d %8d" % ("%d session(s), 1 in flight each" % nsess, rps,
                                                p50, p99, failed))
        spawns = []
        front0 = rss_kb(d.front)
        for _ in range(20):
            spawns.append(d.session()[1] * 1000)
        front1 = rss_kb(d.front)
        child_rss = [rss_kb(init) + rss_kb(server) for init, server in d.children() if init]
        print()
        print("spawn (sandbox + exec + initialize), 20 sessions: median %.1f ms, max %.1f ms"
              % (statistics.median(spawns), max(spawns)))
        print("memory per session: front +%.0f KiB, sandbox init + server ~%.0f KiB RSS"
              % ((front1 - front0) / 20.0,
                 statistics.median(child_rss) if child_rss else 0))
    finally:
        d.stop()
    print()

# ---- pooling: isolation "session", "tenant" and "shared" -------------------------------------

POOL_SESSIONS = 1000     # sessions opened (and held open) per isolation mode
POOL_TENANTS = 4         # the sessions go to these tenants in turn
POOL_CLIENTS = 16        # client processes opening them, each on a keep-alive connection
POOL_SPAWNS = 8          # limits.max_spawns_in_flight (and per tenant)
POOL_OPEN_BUDGET_S = 90  # stop opening after this long (spawn-bound "session" mode)
POOL_CALL_SESSIONS = 16  # tools/call echo spread over this many of the open sessions
POOL_CALLS = 24000
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}}}).encode()
INITIALIZED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()


class Conn:
    """One keep-alive HTTP/1.1 connection with just the parsing mcpvisor's answers need
    (Content-Length or chunked bodies): http.client would cost the client more CPU than the
    front spends answering a pooled initialize."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by mcpvisor")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def post(self, key, body, sid=None):
        """(status, headers with lower-case names, body) of one POST to /servers/ts/mcp."""
        if self.sock is None:
            self._connect()
        head = ("POST /servers/ts/mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                "Authorization: Bearer %s\r\nAccept: %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n" % (self.port, key, ACCEPT, len(body)))
        if sid:
            head += "Mcp-Session-Id: %s\r\n" % sid
        self.sock.sendall(head.encode() + b"\r\n" + body)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                n = int(self._line().split(b";")[0], 16)
                if n == 0:
                    while self._line():
                        pass
                    break
                data += self._take(n)
                self._take(2)
        else:
            data = self._take(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _open_worker(port, keys, first, step, n, budget_s, go, out):
    """One client process of open_sessions: sessions first, first + step, ... below n, each for
    keys[i % len(keys)], one after another on one keep-alive connection."""
    conn = Conn(port)
    conn._connect()
    sessions, retries, failures = [], 0, []
    go.wait()
    deadline = time.monotonic() + budget_s
    try:
        for i in range(first, n, step):
            if time.monotonic() >= deadline or len(failures) >= 3:
                break
            key = keys[i % len(keys)]
            while True:
                status, headers, body = conn.post(key, INITIALIZE)
                if status in (429, 503) and time.monotonic() < deadline:
                    retries += 1
                    time.sleep(0.02)
                    continue
                break
            sid = headers.get("mcp-session-id")
            if status == 200 and sid:
                status, _, body = conn.post(key, INITIALIZED, sid)
            if status not in (200, 202):
                failures.append("HTTP %d %s" % (status, body[:160].decode("utf-8", "replace")))
                continue
            sessions.append((key, sid))
    except (OSError, ValueError) as e:
        failures.append(repr(e))
    finally:
        conn.close()
    out.put((sessions, retries, failures, time.monotonic()))


def open_sessions(d, n, clients, budget_s):
    """Opens up to n sessions (initialize, then notifications/initialized), the tenants in turn,
    from `clients` client processes at once (threads of one Python process would measure the
    GIL); stops when the budget runs out. A 429 or 503 (a spawn ceiling) is retried after 20 ms.
    Returns the (key, session id) pairs, the seconds taken, the retries and the failures
    (status and body of the first few)."""
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open_worker, args=(d.port, d.keys, i, clients, n, budget_s, go, out))
             for i in range(clients)]
    for p in procs:
        p.start()
    time.sleep(0.3)  # every client connected and waiting
    start = time.monotonic()
    go.set()
    sessions, retries, failures, end = [], 0, [], start
    for _ in procs:
        got, r, f, t = out.get()
        sessions += got
        retries += r
        failures += f
        end = max(end, t)
    for p in procs:
        p.join()
    return sessions, end - start, retries, failures


def session_capacity(n):
    """How many session-isolated children this machine can hold, at most n, and why fewer: each
    is two processes (init and server) of about 4 MiB RSS, and the client needs headroom."""
    with open("/proc/meminfo") as f:
        avail_kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    with open("/proc/sys/kernel/pid_max") as f:
        pids = int(f.read())
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    by_mem = avail_kib // (2 * 4096)  # twice the RSS: half the available memory at most
    by_pids = (pids - running) // 4
    cap = min(n, by_mem, by_pids)
    if cap == n:
        return n, None
    return cap, ("capped by %s: %d" % ("MemAvailable" if by_mem <= by_pids else "pid_max", cap))


def pool_mode(work, isolation):
    """One daemon with the server's isolation set to `isolation`: opens POOL_SESSIONS sessions
    over POOL_TENANTS tenants, measures memory with them all open, then tools/call echo over
    POOL_CALL_SESSIONS of them. Returns a dict of figures, or None when this build refuses the
    isolation mode."""
    limits = {"max_sessions_per_principal": 4 * POOL_SESSIONS,
              "max_sessions_per_tenant": 4 * POOL_SESSIONS,
              # Spawns at once are bounded by the daemon, not the client: past them a new
              # session gets 429/503 and the client retries (counted in the notes).
              "max_spawns_in_flight": POOL_SPAWNS, "max_spawns_in_flight_per_tenant": POOL_SPAWNS,
              "spawns_per_minute": 1000000, "spawns_per_minute_per_tenant": 1000000}
    manifest = {"isolation": isolation, "pool": {"max_per_tenant": 1024},
                # Each tenant's children run under its own uid; RLIMIT_NPROC counts per uid,
                # and one child is two processes (the sandbox's init and the server).
                "sandbox": {"limits": {"nproc": 4 * POOL_SESSIONS + 64}}}
    try:
        d = Daemon(os.path.join(work, "pool-" + isolation), tenants=POOL_TENANTS,
                   manifest=manifest, limits=limits)
    except Refused as e:
        return {"isolation": isolation, "refused": e.args[0].splitlines()[0]}
    fig = None
    try:
        # Warm-up: one session opened and deleted, so the front's first-use allocations (and, in
        # a pooled mode, the tenant's first child) are not counted below.
        warm = d.session()[0]
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        c.request("DELETE", "/servers/ts/mcp", headers={"Authorization": "Bearer " + d.key,
                                                       "Mcp-Session-Id": warm})
        c.getresponse().read()
        c.close()
        time.sleep(0.2)
        front0 = rss_kb(d.front)
        want, cap = POOL_SESSIONS, None
        if isolation == "session":
            want, cap = session_capacity(POOL_SESSIONS)
        sessions, took, retries, failures = open_sessions(d, want, POOL_CLIENTS,
                                                          POOL_OPEN_BUDGET_S)
        time.sleep(0.5)  # let the last children settle after their initialize
        front1 = rss_kb(d.front)
        kids = d.children()
        procs = [p for k in kids for p in k if p]
        fig = {"isolation": isolation, "opened": len(sessions), "seconds": took, "cap": cap,
               "retries": retries, "failures": failures, "children": len(kids),
               "front_kib": front1 - front0,
               "child_rss_kib": sum(rss_kb(p) for p in procs),
               "child_pss_kib": sum(pss_kb(p) for p in procs)}
        # Calls over sessions of every tenant in turn, as many of each.
        by_tenant = {}
        for key, sid in sessions:
            by_tenant.setdefault(key, []).append((key, sid))
        picked = []
        while len(picked) < POOL_CALL_SESSIONS and any(by_tenant.values()):
            for key in list(by_tenant):
                if by_tenant[key] and len(picked) < POOL_CALL_SESSIONS:
                    picked.append(by_tenant[key].pop(0))
        if len(picked) == POOL_CALL_SESSIONS:
            fig["calls"] = spread(d, POOL_CALL_SESSIONS, POOL_CALLS, picked)
        return fig
    finally:
        d.stop()
        # What the daemon warned about once it was serving (refusals, exits, ...), by message.
        serving = "".join(d.log).split("msg=ready", 1)[-1]
        warned = re.findall(r"level=(?:warn|error)\b.*?msg=(\S+)", serving)
        if warned and fig is not None:
            fig["warnings"] = sorted({m: warned.count(m) for m in warned}.items())


def pooling(work):
    print("isolation: %d sessions over %d tenants, opened by %d client processes (initialize + "
          "notifications/initialized),\nmemory with them all open, then tools/call echo over %d of "
          "them (one ab each, 1 in flight)" % (POOL_SESSIONS, POOL_TENANTS, POOL_CLIENTS,
                                               POOL_CALL_SESSIONS))
    print("%-9s %8s %10s %8s %10s %12s %12s %10s %8s %8s %7s" % (
        "isolation", "sessions", "sessions/s", "children", "front MiB", "children MiB",
        "per session", "calls/s", "p50 ms", "p99 ms", "errors"))
    print("%-9s %8s %10s %8s %10s %12s %12s %10s %8s %8s %7s" % (
        "", "open", "", "", "growth", "RSS (PSS)", "KiB (PSS)", "", "", "", ""))
    notes = []
    for isolation in ("session", "tenant", "shared"):
        f = pool_mode(work, isolation)
        if "refused" in f:
            print("%-9s  not measured: this build refuses it (%s)" % (isolation, f["refused"]))
            continue
        n = f["opened"]
        per = (f["front_kib"] + f["child_pss_kib"]) / n if n else 0
        calls = f.get("calls")
        print("%-9s %8d %10.0f %8d %10.1f %5.0f (%4.0f) %12.1f %10s %8s %8s %7s" % (
            isolation, n, n / f["seconds"] if f["seconds"] else 0, f["children"],
            f["front_kib"] / 1024.0, f["child_rss_kib"] / 1024.0, f["child_pss_kib"] / 1024.0,
            per, "%.0f" % calls[0] if calls else "-", calls[2] if calls else "-",
            calls[3] if calls else "-", calls[1] if calls else "-"))
        if n < POOL_SESSIONS:
            notes.append("%s: %d of %d sessions opened (%s); memory is for %d open sessions: "
                         "about %.0f MiB (front + children PSS) for %d" % (
                             isolation, n, POOL_SESSIONS,
                             f["cap"] or "; ".join(f["failures"][:2]) or
                             "out of the %d s budget" % POOL_OPEN_BUDGET_S, n,
                             per * POOL_SESSIONS / 1024.0, POOL_SESSIONS))
        elif f["failures"]:
            notes.append("%s: %s" % (isolation, "; ".join(f["failures"][:2])))
        if f.get("warnings"):
            notes.append("%s: the daemon logged %s" % (isolation, ", ".join(
                "%s x%d" % w for w in f["warnings"])))
        if f["retries"]:
            notes.append("%s: %d initialize requests refused (429/503, a spawn ceiling) and "
                         "retried" % (isolation, f["retries"]))
    for note in notes:
        print("  note: " + note)
    print()


def audit(work):
    """The same calls with the audit log in each sync mode (the writes and syncs run on the
    front's writer thread; every call waits for its record, so "always" shows group commit)."""
    print("%-34s %10s %8s %8s %8s %8s" % ("audit log, 4 sessions", "calls/s", "p50 ms",
                                          "p99 ms", "errors", "records"))
    for sync in ("none", "batch", "always"):
        path = os.path.join(work, "audit-%s.jsonl" % sync)
        a = Daemon(os.path.join(work, sync), {"path": path, "sync": sync, "batch_ms": 100})
        try:
            rps, failed, p50, p99 = spread(a, 4, 20000)
        finally:
            a.stop()
        with open(path) as f:
            records = sum(1 for _ in f)
        print("%-34s %10.0f %8d %8d %8d %8d" % ("sync: " + sync, rps, p50, p99, failed,
                                                records))


def main():
    if shutil.which("ab") is None:
        raise SystemExit("bench: needs ApacheBench (apt-get install apache2-utils)")
    work = tempfile.mkdtemp(prefix="mcpvisor-bench-")
    os.chmod(work, 0o755)
    try:
        print("mcpvisor bench (%s), %d cores" % (BUILD, os.cpu_count()))
        if ONLY is None:
            broker(work)
        if ONLY in (None, "pool"):
            pooling(work)
        if ONLY in (None, "audit"):
            audit(work)
        print("peers: none installed here to compare with")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
