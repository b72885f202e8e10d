#!/usr/bin/python3
"""make bench: figures for the broker's hot path, spawn time and memory per session.

Starts mcpvisor on an ephemeral loopback port with the test server behind it, then measures:
  - calls/s and latency percentiles of tools/call echo on one session (ApacheBench, keep-alive,
    several concurrency levels; the child answers in order, so one session is one pipeline),
  - the same spread over several sessions (one child each),
  - spawn time: initialize → answer, i.e. sandbox set-up + exec + the server's initialize,
  - memory per session: the front's RSS growth plus the child's (init + server) RSS,
  - the audit log's cost: the same calls with audit.sync none, batch and always (every call
    forwarded only after its record is written; always: fdatasync'ed, with group commit).
Prints a table; compares with nothing else yet (no peer is installed here).
`bench.py BUILD audit` (make bench-audit) measures the audit log's cost alone, a few seconds per mode.
"""

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
AUDIT_ONLY = len(sys.argv) > 2 and sys.argv[2] == "audit"
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


class Daemon:
    def __init__(self, workdir, audit=None):
        self.key = "mcpv_" + secrets.token_urlsafe(32)
        os.makedirs(os.path.join(workdir, "servers"))
        cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
               "auth": {"api_keys_file": "api-keys.json"},
               "tenants": {"bench": {"uid": 61990, "gid": 61990, "servers": ["ts"]}},
               "limits": {"max_pending_per_session": 1024, "session_idle_s": 600}}
        if audit is not None:
            cfg["audit"] = audit
        with open(os.path.join(workdir, "mcpvisor.json"), "w") as f:
            json.dump(cfg, f)
        with open(os.path.join(workdir, "api-keys.json"), "w") as f:
            json.dump({"keys": [{"sha256": hashlib.sha256(self.key.encode()).hexdigest(),
                                 "tenant": "bench", "user": "bench", "scopes": []}]}, f)
        with open(os.path.join(workdir, "servers", "ts.json"), "w") as f:
            json.dump({"name": "ts", "version": "1", "command": [TESTSERVER]}, f)
        self.log = []
        self.proc = subprocess.Popen([MCPVISOR, "run", "-c", os.path.join(workdir, "mcpvisor.json")],
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
        pids = [int(m) for m in re.findall(r"msg=spawned .*?pid=(\d+)", "".join(self.log))]
        return [p for p in pids if os.path.exists("/proc/%d" % p)]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)


def ab(d, sid, n, c):
    body = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "hello"}}}, body)
    body.close()
    out = subprocess.run(["ab", "-q", "-k", "-n", str(n), "-c", str(c), "-p", body.name,
                          "-T", "application/json", "-H", "Accept: " + ACCEPT,
                          "-H", "Authorization: Bearer " + d.key, "-H", "Mcp-Session-Id: " + sid,
                          "http://127.0.0.1:%d/servers/ts/mcp" % d.port],
                         capture_output=True, text=True)
    os.unlink(body.name)
    text = out.stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", text)
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M))
    return (float(rps.group(1)) if rps else 0.0, int(failed.group(1)) if failed else -1,
            pct.get("50"), pct.get("99"))


def spread(d, nsess, calls):
    """calls/s, errors, worst p50, worst p99 of `calls` echo calls over nsess sessions."""
    sids = [d.session()[0] for _ in range(nsess)]
    ab(d, sids[0], 500, 1)  # warm-up
    results = [None] * nsess

    def run(i):
        results[i] = ab(d, sids[i], calls // nsess, 1)

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
        kids = d.children()
        child_rss = [rss_kb(p) for p in kids]
        print()
        print("spawn (sandbox + exec + initialize), 20 sessions: median %.1f ms, max %.1f ms"
              % (statistics.median(spawns), max(spawns)))
        print("memory per session: front +%.0f KiB, sandbox init + server ~%.0f KiB RSS"
              % ((front1 - front0) / 20.0,
                 2 * statistics.median(child_rss) if child_rss else 0))
    finally:
        d.stop()
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
        if not AUDIT_ONLY:
            broker(work)
        audit(work)
        print("peers: none installed here to compare with")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
