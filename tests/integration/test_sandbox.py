"""
Sandbox escape probes, run THROUGH mcpvisor as real children (issue 4, item 9).

Every manifest here runs tests/probes/probe (a minimal stdio MCP server whose one tool, `probe`,
attempts one escape and answers {"probe", "result", "errno", "detail"}). The tests run as root,
so the spawner is root and each child runs as its tenant's uid: acme = 61001/61001 (API keys
alice, bob), other = 61002/61002 (carol). One daemon serves the whole module; a witness session
of another tenant on the testserver must keep answering after every escape attempt.

A probe result "escaped" is a sandbox failure: such a test is left failing, never relaxed.
"""
import errno
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import warnings

import pytest

from conftest import (BUILD, MCPVISOR, REPO, TESTSERVER, Daemon, McpClient, tool_text, wait_for,
                      world_readable_dir)

PROBE = os.path.join(BUILD, "tests", "probes", "probe")
UID_A, GID_A = 61001, 61001
UID_B, GID_B = 61002, 61002
PROBE_ENV = {"PATH": "/usr/bin:/bin", "PROBE_MARK": "a b=c", "EMPTY": ""}
SECRET = "tenant-b-secret.txt"
NR_KEXEC_LOAD = 246  # x86_64
NR_INIT_MODULE = 175
X32_GETPID = 39 | 0x40000000

pytestmark = pytest.mark.skipif(not os.path.exists(PROBE),
                                reason="probe binary not built (make all): %s" % PROBE)


def probe_manifest(name, sandbox=None, env=None, command=None):
    m = {"name": name, "version": "1", "command": command or [PROBE],
         "env": dict(PROBE_ENV if env is None else env),
         "unlisted_tools": "allow", "pin_mode": "off"}
    if sandbox is not None:
        m["sandbox"] = sandbox
    return m


def ts_manifest(name):
    return {"name": name, "version": "1", "command": [TESTSERVER], "env": {"FOO": "bar"},
            "unlisted_tools": "allow", "pin_mode": "off"}


# ---- the module's daemon ----------------------------------------------------------------------


class Sandboxed:
    """The module's daemon, tenant B's private folder and the witness session."""

    def __init__(self, d, b_dir):
        self.d = d
        self.b_dir = b_dir
        self.b_secret = os.path.join(b_dir, SECRET)
        self.witness = None
        self.witness_n = 0

    def serving(self):
        """The daemon is alive and another tenant's session on the testserver still answers."""
        assert self.d.proc.poll() is None, "the daemon died:\n" + self.d.log
        self.witness_n += 1
        text = "alive-%d" % self.witness_n
        assert tool_text(self.witness.call_tool("echo", {"text": text})) == text
        # and a brand-new session starts, too
        c = McpClient(self.d, "ts", "bob")
        c.initialize()
        assert tool_text(c.call_tool("echo", {"text": "fresh"})) == "fresh"
        c.delete()


@pytest.fixture(scope="module")
def sbx(tmp_path_factory):
    # Tenant B's read_write folder lives under /tmp on the host; tenant A's sandbox gets its own
    # empty /tmp, so the path does not even exist there.
    b_dir = world_readable_dir()
    with open(os.path.join(b_dir, SECRET), "w") as f:
        f.write("only for tenant B\n")
    os.chown(os.path.join(b_dir, SECRET), UID_B, GID_B)
    os.chmod(os.path.join(b_dir, SECRET), 0o600)
    os.chown(b_dir, UID_B, GID_B)
    os.chmod(b_dir, 0o700)
    manifests = {
        "probe": probe_manifest("probe"),
        "probe_host": probe_manifest("probe_host", {"network": "host"}),
        "probe_nproc": probe_manifest("probe_nproc", {"limits": {"nproc": 64}}),
        # memory_mb would be the right key, but it needs a delegated cgroup (none here):
        # RLIMIT_AS through address_space_mb is what stops a C server's hog on this machine.
        "probe_as": probe_manifest("probe_as", {"limits": {"address_space_mb": 512}}),
        "probe_errno": probe_manifest("probe_errno", {"seccomp": {"action": "errno"}}),
        "probe_deny": probe_manifest("probe_deny", {"seccomp": {"deny": ["getcwd"]}}),
        "probe_b": probe_manifest("probe_b", {"read_write": [b_dir]}),
        "ts": ts_manifest("ts"),
    }
    cfg = {
        "listen": [{"address": "127.0.0.1:0"}],
        "manifests_dir": "servers",
        "auth": {"api_keys_file": "api-keys.json"},
        "tenants": {
            "acme": {"uid": UID_A, "gid": GID_A,
                     "servers": ["probe", "probe_host", "probe_nproc", "probe_as", "probe_errno",
                                 "probe_deny", "ts"]},
            "other": {"uid": UID_B, "gid": GID_B,
                      "servers": ["probe", "probe_b", "probe_nproc", "ts"]},
        },
        "limits": {"request_timeout_ms": 10000},
    }
    d = Daemon(tmp_path_factory.mktemp("sandbox"), cfg, manifests, ("alice", "bob", "carol"))
    s = Sandboxed(d, b_dir)
    try:
        d.start()
        s.witness = McpClient(d, "ts", "carol")
        s.witness.initialize()
        yield s
    finally:
        problems = []
        try:
            d.stop()
        except AssertionError as e:
            problems.append(str(e))
        if d.sanitizer_reports():
            problems.append("sanitizer report in the daemon log:\n" + d.log)
        shutil.rmtree(b_dir, ignore_errors=True)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def open_session(s, server="probe", key="alice"):
    c = McpClient(s.d, server, key)
    c.initialize()
    return c


def call_probe(c, name, **args):
    """Runs probe `name` on session c; returns its parsed result object."""
    a = {"name": name}
    a.update(args)
    msg = c.call_tool("probe", a)
    return json.loads(tool_text(msg))


def run_probe(s, name, server="probe", key="alice", **args):
    """One probe on a fresh session of `server` (ended afterwards); returns its result object."""
    c = open_session(s, server, key)
    try:
        r = call_probe(c, name, **args)
    finally:
        c.delete()
    assert r["probe"] == name, r
    return r


def assert_refused(r, errnos=None):
    assert r["result"] == "refused", "SANDBOX ESCAPE (or unexpected outcome): %r" % r
    if errnos is not None:
        assert r["errno"] in errnos, r


# ---- refused escapes, one probe per test -------------------------------------------------------

EPERM = {errno.EPERM}
PRIV = {errno.EPERM, errno.EACCES}

SIMPLE = [
    # (probe, acceptable errnos)
    ("ptrace", EPERM),            # ppid (the sandbox init = pid 1): SEIZE and process_vm_readv
    ("mount", EPERM),
    ("unshare", EPERM),
    ("bpf", EPERM),
    ("keyctl", EPERM),
    ("add_key", EPERM),
    ("perf_event_open", EPERM),
    ("userfaultfd", EPERM),
    ("io_uring_setup", EPERM),    # EPERM, not a kill: libuv probes it
    ("setuid0", EPERM),
    ("chroot", EPERM),
    ("shadow", {errno.ENOENT}),   # /etc/shadow is not in the view at all
    ("write_etc", {errno.EROFS, errno.EACCES, errno.ENOENT}),
    ("write_usr", {errno.EROFS, errno.EACCES}),
    ("raw_socket", PRIV | {errno.EAFNOSUPPORT}),
    ("packet_socket", {errno.EAFNOSUPPORT}),
    ("connect_external", {errno.ENETUNREACH}),  # no route at all: the SYN never leaves
    ("tiocsti", EPERM),
    ("personality", EPERM),
    ("suid_file", EPERM),
    ("clone3", {errno.ENOSYS}),   # ENOSYS so that libc falls back to clone
    ("hostname", EPERM),
]


@pytest.mark.parametrize("name,errnos", SIMPLE, ids=[p for p, _ in SIMPLE])
def test_probe_refused(sbx, name, errnos):
    r = run_probe(sbx, name)
    assert_refused(r, errnos)
    sbx.serving()


def test_ptrace_targets_parent_and_pid1(sbx):
    r = run_probe(sbx, "ptrace")
    assert_refused(r, EPERM)
    # the server is pid 2 under the sandbox's init: its parent IS pid 1 of the namespace
    assert "ppid (1) PTRACE_SEIZE: EPERM" in r["detail"], r
    assert "process_vm_readv(ppid): EPERM" in r["detail"], r
    assert "unshare(CLONE_NEWUSER): EPERM" in run_probe(sbx, "unshare")["detail"]


def test_i386_entry_point(sbx):
    r = run_probe(sbx, "i386")
    if r["result"] == "skipped":
        pytest.skip("no IA32 emulation on this kernel: %s" % r["detail"])
    assert_refused(r)
    assert "SIGSYS" in r["detail"], r
    sbx.serving()


def test_threads_work(sbx):
    r = run_probe(sbx, "threads")
    assert r["result"] == "ok", r


def test_every_probe_is_covered(sbx):
    c = open_session(sbx)
    try:
        listed = set(json.loads(tool_text(c.call_tool("probe", {"name": "list"})))["probes"])
    finally:
        c.delete()
    covered = {p for p, _ in SIMPLE} | {
        "i386", "threads", "kexec_load", "x32", "init_module", "connect_loopback", "kill_host",
        "host_pids", "fork_bomb", "memory_hog", "other_tenant", "daemon_memory", "caps", "nnp",
        "seccomp_mode", "ids", "env", "fds", "init_cmdline",
        "create", "read"}  # create, read: test_sandbox_view.py
    assert listed - covered == set(), "probes without a test: %r" % (listed - covered)


# ---- kill-tier calls ---------------------------------------------------------------------------


def kmsg_kill_records(since_us, exe=PROBE):
    """(pid, arch, nr, ts_us) of the seccomp kill audit records (type 1326, sig 31) in /dev/kmsg
    for `exe`, stamped at or after since_us (CLOCK_MONOTONIC microseconds, the clock of the
    kernel log); [] when the kernel log is not readable."""
    out = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return out
    try:
        while True:
            try:
                rec = os.read(fd, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten under us: the next read resyncs
                    continue
                break
            if not rec:
                break
            head, _, msg = rec.partition(";")
            parts = head.split(",")
            if len(parts) < 3 or not msg.startswith("audit: type=1326 "):
                continue
            ts = int(parts[2])
            if ts < since_us or (exe is not None and ('exe="%s"' % exe) not in msg):
                continue
            f = dict(kv.split("=", 1) for kv in msg.split() if "=" in kv)
            if f.get("sig") == "31":
                out.append((int(f["pid"]), f.get("arch"), int(f["syscall"]), ts))
    finally:
        os.close(fd)
    return out


def mono_us():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


def open_session_pid(s, server="probe", key="alice", tenant="acme"):
    """A new session and the pid of its child (the sandbox's init, as the log names it)."""
    mark = s.d.mark()
    c = open_session(s, server, key)
    m = s.d.wait_log(r"msg=spawned server=%s tenant=%s pid=(\d+)" % (server, tenant), 5, mark)
    return c, int(m.group(1))


def killed_call(s, name, server="probe"):
    """Runs a kill-tier probe: the call fails with -32015 because the child died of SIGSYS.
    Returns the seccomp_violation log line."""
    c, pid = open_session_pid(s, server)
    mark = s.d.mark()
    msg = c.call_tool("probe", {"name": name})
    assert "error" in msg, "the child survived %s: %r" % (name, msg)
    assert msg["error"]["code"] == -32015, msg
    assert msg["error"]["data"]["type"] == "server_unavailable", msg
    s.d.wait_log(r"child_exited server=%s tenant=acme pid=%d signal=31\b" % (server, pid), 5, mark)
    return s.d.wait_log(r"seccomp_violation server=%s tenant=acme pid=%d syscall=.*"
                        % (server, pid), 5, mark).group(0)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers and x32: x86_64 only")
@pytest.mark.parametrize("name,nr,syscall", [
    ("kexec_load", NR_KEXEC_LOAD, "kexec_load"),
    ("init_module", NR_INIT_MODULE, "init_module"),
    ("x32", X32_GETPID, r'"?getpid \(x32\)"?'),
], ids=["kexec_load", "init_module", "x32"])
def test_kill_tier_call_kills_the_child(sbx, name, nr, syscall):
    """The call fails with -32015, the log has child_exited signal=31 and seccomp_violation;
    when the kernel's audit record of the kill reached /dev/kmsg (the kernel rate-limits them
    to 10 per 5 s, machine-wide), the log names the syscall."""
    for attempt in (1, 2):
        t0 = mono_us()
        line = killed_call(sbx, name)
        ours = [rec for rec in kmsg_kill_records(t0) if rec[2] == nr]
        named = re.search(r'syscall="?%s"? nr=%d\b' % (syscall, nr), line)
        if not ours or named:
            break
        # The record exists but the log did not name it. "syscall=unknown": the spawner read
        # /dev/kmsg before kauditd printed the record (an asynchronous print, a few ms after
        # the kill; the spawner reads once, when it reaps). Anything else: a wrong attribution.
        assert 'syscall="unknown" nr=-1' in line, ("seccomp_violation names another syscall",
                                                  line, ours)
        if attempt == 1:
            warnings.warn("daemon race: the kernel record of the %s kill reached /dev/kmsg after "
                          "the spawner looked (%s)" % (name, line))
        else:
            pytest.fail("the kernel recorded the %s kill (%r) but the log did not name it twice "
                        "in a row: %s" % (name, ours, line))
    sbx.serving()


def test_seccomp_violation_not_attributed_to_another_process(sbx):
    """A child that dies of SIGSYS without a seccomp kill of its own (a server can raise SIGSYS
    itself; here the test sends it) must not be logged with another process's kill record. The
    record to be misattributed: tenant acme's i386 probe, whose helper process is killed."""
    t0 = mono_us()
    a = open_session(sbx)
    try:
        r = call_probe(a, "i386")
    finally:
        a.delete()
    if r["result"] == "skipped":
        pytest.skip("no IA32 emulation: %s" % r["detail"])
    foreign = kmsg_kill_records(t0)
    if not foreign:
        pytest.skip("no kernel record of the acme helper's kill (rate-limited or not on this "
                    "kernel): nothing to misattribute")
    b, init = open_session_pid(sbx, "probe", "carol", "other")
    try:
        with open("/proc/%d/task/%d/children" % (init, init)) as f:
            server = int(f.read().split()[0])
        mark = sbx.d.mark()
        os.kill(server, signal.SIGSYS)
        line = sbx.d.wait_log(r"seccomp_violation server=probe tenant=other pid=%d .*" % init, 5,
                              mark).group(0)
    finally:
        b.delete()
    assert 'syscall="unknown"' in line, (
        "tenant other's child, which made no denied call, is logged with the syscall of "
        "another process's kill record %r: %s" % (foreign, line))
    sbx.serving()


def test_seccomp_action_errno_turns_kills_into_eperm(sbx):
    c = open_session(sbx, "probe_errno")
    try:
        for name in ("kexec_load", "init_module"):
            r = call_probe(c, name)
            assert_refused(r, EPERM)
            assert "not killed" in r["detail"], r
        # the same child is still there and still confined
        assert_refused(call_probe(c, "ptrace"), EPERM)
        assert call_probe(c, "threads")["result"] == "ok"
    finally:
        c.delete()
    sbx.serving()


def test_seccomp_manifest_deny_loads_and_is_listed(sbx):
    """A manifest deny list adds kill rules: the server still runs under the larger filter, and
    `check` lists the rule with its action."""
    c = open_session(sbx, "probe_deny")
    try:
        assert call_probe(c, "threads")["result"] == "ok"
        assert call_probe(c, "seccomp_mode")["result"] == "refused"
    finally:
        c.delete()
    block = server_block(check_output(sbx.d.config_path), "probe_deny")
    assert re.search(r"manifest deny \(kill the process\):.*\bgetcwd\b", block), block


def test_seccomp_manifest_deny_getcwd_kills():
    pytest.skip("no probe calls getcwd, so a deny of getcwd cannot be triggered through the "
                "probe server")


# ---- network ----------------------------------------------------------------------------------


@pytest.fixture
def listener():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    yield ls
    ls.close()


def pending_connection(ls, timeout):
    r, _, _ = select.select([ls], [], [], timeout)
    if not r:
        return False
    conn, _ = ls.accept()
    conn.close()
    return True


def test_connect_loopback_network_none(sbx, listener):
    port = listener.getsockname()[1]
    r = run_probe(sbx, "connect_loopback", port=port)
    # its own loopback, where nobody listens
    assert_refused(r, {errno.ECONNREFUSED})
    assert not pending_connection(listener, 0), "the host listener got a connection"
    sbx.serving()


def test_connect_loopback_network_host_works(sbx, listener):
    """The same connect with "network": "host" reaches the host: the key does what it says."""
    port = listener.getsockname()[1]
    r = run_probe(sbx, "connect_loopback", server="probe_host", port=port)
    assert r["result"] == "escaped" and r["errno"] == 0, r
    assert pending_connection(listener, 2), "the host listener saw no connection"


# ---- processes --------------------------------------------------------------------------------


def test_host_pids_invisible(sbx):
    r = run_probe(sbx, "host_pids")
    assert_refused(r)
    m = re.match(r"(\d+) pids visible: (.*)", r["detail"])
    assert m, r
    pids = {int(p): comm for p, comm in re.findall(r"(\d+)\(([^)]*)\)", m.group(2))}
    # the sandbox's own init (1) and the server (2), nothing else
    assert set(pids) == {1, 2}, r
    assert pids[2] == "probe", r


def test_kill_host_processes(sbx):
    d = sbx.d
    for target in (d.proc.pid, d.front_pid, os.getpid()):
        r = run_probe(sbx, "kill_host", pid=target)
        assert_refused(r, {errno.ESRCH})
    sbx.serving()


def test_init_shows_a_neutral_command_line(sbx):
    r = run_probe(sbx, "init_cmdline")
    assert r["result"] == "info", r
    # the sandbox init is a copy of the daemon: its argv would show the configuration's path
    assert r["detail"].strip() == "mcpvisor-sandbox-init", r
    assert "mcpvisor.json" not in r["detail"], r
    sbx.serving()


def test_daemon_memory_and_environment(sbx):
    r = run_probe(sbx, "daemon_memory", pid=sbx.d.front_pid)
    assert_refused(r)
    # pid 1 is the sandbox's init (a fork of the spawner, now the tenant's uid, not dumpable)
    assert "/proc/1/mem: EACCES" in r["detail"], r
    assert "/proc/1/environ: EACCES" in r["detail"], r
    assert "/proc/%d/mem: ENOENT" % sbx.d.front_pid in r["detail"], r
    sbx.serving()


def uid_processes(uid):
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                n += os.stat("/proc/" + pid).st_uid == uid
            except OSError:
                pass
    return n


def test_fork_bomb_stopped(sbx):
    # Without a cgroup, nproc is RLIMIT_NPROC, which counts every process of the tenant's uid
    # (all its sandboxes), so the bomb runs as tenant other, whose only other processes are the
    # witness session's; ended sessions linger up to CHILD_GRACE_MS (see the EOF test below).
    wait_for(lambda: uid_processes(UID_B) <= 16, 5, what="tenant other's ended sessions to go")
    r = run_probe(sbx, "fork_bomb", server="probe_nproc", key="carol", limit=2000)
    assert_refused(r, {errno.EAGAIN})
    n = int(re.match(r"(\d+) of", r["detail"]).group(1))
    assert n < 64, r
    sbx.serving()


def test_memory_hog_stopped(sbx):
    # address_space_mb (RLIMIT_AS) because memory_mb needs a delegated cgroup, absent here
    r = run_probe(sbx, "memory_hog", server="probe_as", limit=2048)
    assert_refused(r)
    m = re.search(r"after (\d+) MiB", r["detail"])
    assert m and int(m.group(1)) < 512, r
    sbx.serving()


# ---- the sandbox's init ----------------------------------------------------------------------


def test_session_end_lets_the_server_exit_on_eof(sbx):
    """Ending a session closes the child's stdin: the server (the probe exits 0 on EOF) must
    see EOF and exit by itself, not be killed CHILD_GRACE_MS later."""
    c, pid = open_session_pid(sbx)
    mark = sbx.d.mark()
    c.delete()
    m = sbx.d.wait_log(r"child_exited server=probe tenant=acme pid=%d (status|signal)=(\d+)" % pid,
                       5, mark)
    assert m.group(0).endswith("status=0"), (
        "the server never saw EOF on stdin and was killed after the grace period: %s\n%s"
        % (m.group(0), "\n".join(sbx.d.log_lines(r"child_kill_after_grace pid=%d\b" % pid))))


def test_sandbox_init_holds_no_daemon_descriptors(sbx):
    """pid 1 of the sandbox is a fork of the spawner that never execs, running as the tenant's
    uid: it must not keep the spawner's descriptors (the privileged control socket to the front,
    the server's pipes)."""
    c, init = open_session_pid(sbx)
    try:
        fds = {int(f): os.readlink("/proc/%d/fd/%s" % (init, f))
               for f in os.listdir("/proc/%d/fd" % init)}
        spawner = {os.readlink("/proc/%d/fd/%s" % (sbx.d.proc.pid, f))
                   for f in os.listdir("/proc/%d/fd" % sbx.d.proc.pid)}
    finally:
        c.delete()
    shared = {fd: t for fd, t in fds.items() if t.startswith("socket:") and t in spawner}
    assert not shared, "the sandbox init holds the spawner's socket(s): %r (all: %r)" % (
        shared, fds)
    pipes = {fd: t for fd, t in fds.items() if t.startswith("pipe:")}
    assert not pipes, "the sandbox init holds pipe ends (the server's stdio): %r" % pipes


# ---- files ------------------------------------------------------------------------------------


def test_other_tenants_files(sbx):
    # tenant B sees its own folder (the path is right) ...
    rb = run_probe(sbx, "other_tenant", server="probe_b", key="carol", path=sbx.b_secret)
    assert rb["result"] == "escaped" and rb["errno"] == 0, rb
    # ... tenant A, on the server it may use, does not even have it in its view
    ra = run_probe(sbx, "other_tenant", path=sbx.b_secret)
    assert_refused(ra, {errno.ENOENT})
    ra = run_probe(sbx, "other_tenant", path=sbx.b_dir)
    assert_refused(ra, {errno.ENOENT})
    # tenant B on the shared server does not have its read_write folder either
    rb = run_probe(sbx, "other_tenant", key="carol", path=sbx.b_secret)
    assert_refused(rb, {errno.ENOENT})
    sbx.serving()


# ---- a live child: identity, capabilities, environment, descriptors ----------------------------


def test_live_child_identity_and_confinement(sbx):
    c = open_session(sbx)
    try:
        ids = call_probe(c, "ids")
        caps = call_probe(c, "caps")
        nnp = call_probe(c, "nnp")
        sec = call_probe(c, "seccomp_mode")
        env = call_probe(c, "env")
        fds = call_probe(c, "fds")
    finally:
        c.delete()
    assert ids["detail"] == "uid=%d,%d,%d gid=%d,%d,%d groups=" % (
        (UID_A,) * 3 + (GID_A,) * 3), ids
    assert_refused(caps)
    got = dict(kv.split("=") for kv in caps["detail"].split())
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(got[k], 16) == 0, caps
    assert nnp["detail"] == "NoNewPrivs: 1", nnp
    assert sec["detail"].startswith("Seccomp: 2"), sec
    lines = env["detail"].split("\n") if env["detail"] else []
    assert sorted(lines) == sorted("%s=%s" % kv for kv in PROBE_ENV.items()), env
    fdset = {int(l.split(" ->")[0]) for l in fds["detail"].split("\n")}
    assert fdset == {0, 1, 2}, fds


def test_second_tenant_runs_as_its_own_uid(sbx):
    r = run_probe(sbx, "ids", key="carol")
    assert r["detail"] == "uid=%d,%d,%d gid=%d,%d,%d groups=" % ((UID_B,) * 3 + (GID_B,) * 3), r


# ---- mcpvisor check ---------------------------------------------------------------------------


def check_output(config_path):
    p = subprocess.run([MCPVISOR, "check", "-c", config_path], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p.stdout


def server_block(out, name):
    m = re.search(r"^  server %s:.*?(?=^  server |\Z)" % re.escape(name), out, re.M | re.S)
    assert m, out
    return m.group(0)


def test_check_prints_effective_sandbox(sbx):
    out = check_output(sbx.d.config_path)
    block = server_block(out, "probe")
    for word in ("seccomp", "landlock", "namespaces"):
        assert word in block, block
    assert "net (loopback only)" in block, block
    assert "network: host" in server_block(out, "probe_host")
    assert "nproc=64" in server_block(out, "probe_nproc")
    assert "address_space=set" in server_block(out, "probe_as")
    m = re.search(r"^    cgroup: (.*)$", block, re.M)
    assert m, block
    started = re.search(r"msg=sandbox .*cgroup=(\S+)", sbx.d.log) or re.search(
        r"sandbox mode=.*cgroup=(\S+)", sbx.d.log)
    assert started, sbx.d.log
    if started.group(1) == "unavailable":
        # no delegated cgroup on this machine: said at start-up and in check, with a reason
        assert "own leaf" not in m.group(1) and len(m.group(1).strip()) > 5, m.group(0)
        assert sbx.d.log_lines(r"sandbox_cgroup_unavailable reason=\"[^\"]+\""), sbx.d.log
    else:
        assert "own leaf" in m.group(1), m.group(0)


def test_check_fails_on_missing_read_only_path(tmp_path):
    missing = "/nonexistent-mcpvisor-%d/data" % os.getpid()
    d = Daemon(tmp_path, {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
                          "auth": {"api_keys_file": "api-keys.json"},
                          "tenants": {"acme": {"uid": UID_A, "gid": GID_A, "servers": ["p"]}}},
               {"p": probe_manifest("p", {"read_only": [missing]})}, ("alice",))
    p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert missing in p.stderr, p.stderr


# ---- spawn failures ---------------------------------------------------------------------------


def test_missing_command_spawn_fails(make_daemon):
    where = world_readable_dir()
    try:
        cmd = os.path.join(where, "does-not-exist")
        d = make_daemon(
            manifests={"gone": probe_manifest("gone", command=[cmd]), "ts": ts_manifest("ts")},
            keys=("alice",),
            tenants={"acme": {"uid": UID_A, "gid": GID_A, "servers": ["gone", "ts"]}})
        r = d.request("POST", "/servers/gone/mcp", {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "x", "version": "1"}}})
        body = r.json()
        assert body["error"]["code"] == -32015, body
        assert body["error"]["data"]["type"] == "server_unavailable", body
        d.wait_log(r"spawn_failed server=gone tenant=acme step=exec\b", 5)
        c = McpClient(d, "ts", "alice")
        c.initialize()
        assert tool_text(c.call_tool("echo", {"text": "still"})) == "still"
    finally:
        shutil.rmtree(where, ignore_errors=True)


# ---- a real Node.js server under the default profile -------------------------------------------


def test_node_server_everything_in_default_sandbox(make_daemon):
    interop = os.path.join(REPO, "tests", "interop")
    entry = os.path.join(interop, "node_modules", "@modelcontextprotocol", "server-everything",
                         "dist", "index.js")
    node = shutil.which("node")
    if node is None or not os.path.exists(entry):
        pytest.skip("node or server-everything absent (make interop installs it under "
                    "tests/interop/node_modules)")
    node = os.path.realpath(node)
    m = {"name": "everything", "version": "1", "command": [node, entry, "stdio"],
         "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "NODE_NO_WARNINGS": "1"},
         "sandbox": {"read_only": [interop]}, "unlisted_tools": "allow", "pin_mode": "off"}
    d = make_daemon(manifests={"everything": m}, keys=("alice",),
                    tenants={"acme": {"uid": UID_A, "gid": GID_A, "servers": ["everything"]}})
    c = McpClient(d, "everything", "alice")
    c.initialize()
    tools = c.request("tools/list")
    names = {t["name"] for t in tools["result"]["tools"]}
    assert "echo" in names, tools
    msg = c.call_tool("echo", {"message": "sandboxed"})
    assert "sandboxed" in json.dumps(msg["result"]), msg
    c.delete()
