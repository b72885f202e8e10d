"""Started as an ordinary user, mcpvisor confines children with an unprivileged user namespace
([sandbox] item 2), says which protections are missing (per-tenant uids), and the children still
get namespaces, no capabilities, no_new_privs and seccomp."""

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import BUILD, MCPVISOR, world_readable_dir

PROBE = os.path.join(BUILD, "tests", "probes", "probe")
NOBODY = 65534

def _nobody_can_run_the_build():
    """The checkout may sit under a folder only root may enter (e.g. /root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                        "test", "-x", MCPVISOR, "-a", "-x", PROBE])
    return r.returncode == 0


pytestmark = pytest.mark.skipif(
    not _nobody_can_run_the_build(),
    reason="needs root, setpriv, and a build folder that uid 65534 may enter")


class Unprivileged:
    def __init__(self):
        self.dir = world_readable_dir()
        self.key = "mcpv_" + secrets.token_urlsafe(32)
        digest = hashlib.sha256(self.key.encode()).hexdigest()
        os.mkdir(os.path.join(self.dir, "servers"), 0o755)
        self._write("mcpvisor.json", {
            "listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
            "auth": {"api_keys_file": "api-keys.json"},
            "tenants": {"acme": {"servers": ["probe"]}}})
        self._write("api-keys.json", {"keys": [{"sha256": digest, "tenant": "acme",
                                                "user": "alice", "scopes": []}]})
        self._write("servers/probe.json", {"name": "probe", "version": "1", "command": [PROBE],
                                           "env": {"ONLY": "this"}})
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
             MCPVISOR, "run", "-c", os.path.join(self.dir, "mcpvisor.json")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        m = self.wait_log(r"msg=listening address=127\.0\.0\.1:(\d+)", 10)
        self.port = int(m.group(1))
        self.wait_log(r"msg=ready", 10)

    def _write(self, rel, doc):
        path = os.path.join(self.dir, rel)
        with open(path, "w") as f:
            json.dump(doc, f)
        os.chmod(path, 0o644)

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    @property
    def log(self):
        with self.cond:
            return "".join(self.lines)

    def wait_log(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("no %r in the log:\n%s" % (pattern, "".join(self.lines)))
                self.cond.wait(left)

    def post(self, msg, sid=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Authorization": "Bearer " + self.key, "Content-Type": "application/json",
             "Accept": "application/json, text/event-stream"}
        if sid:
            h["Mcp-Session-Id"] = sid
        c.request("POST", "/servers/probe/mcp", json.dumps(msg), h)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r, json.loads(body) if body else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def unpriv():
    u = Unprivileged()
    yield u
    u.stop()
    assert "AddressSanitizer" not in u.log and "runtime error:" not in u.log, u.log


def _probe(u, sid, name, rid):
    r, m = u.post({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                   "params": {"name": "probe", "arguments": {"name": name}}}, sid)
    assert r.status == 200, m
    return json.loads(m["result"]["content"][0]["text"])


def test_unprivileged_start_uses_a_user_namespace(unpriv):
    log = unpriv.log
    assert "msg=sandbox mode=userns" in log, log
    # never silently weaker: what root would add is named
    assert re.search(r"sandbox_not_in_force server=probe missing=\"per-tenant uids", log), log
    r, m = unpriv.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status == 200, m
    sid = r.getheader("Mcp-Session-Id")
    unpriv.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    caps = _probe(unpriv, sid, "caps", 2)
    assert caps["result"] == "refused", caps          # every capability set is empty
    assert _probe(unpriv, sid, "nnp", 3)["result"] == "refused"
    assert _probe(unpriv, sid, "seccomp_mode", 4)["result"] == "refused"
    assert _probe(unpriv, sid, "unshare", 5)["result"] == "refused"
    hp = _probe(unpriv, sid, "host_pids", 6)
    assert hp["result"] == "refused", hp              # its own pid namespace
    assert _probe(unpriv, sid, "shadow", 7)["result"] == "refused"
