"""The filesystem view a manifest asks for, built for real: every combination of read_only,
read_write and tmpfs that `mcpvisor check` accepts also spawns, with the access it promises, and
the ones that cannot spawn are refused by check with a message naming the path.

Each manifest runs tests/probes/probe; its `create` and `read` probes report what the server can
do at a path inside its sandbox."""
import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, MCPVISOR, Daemon, McpClient, tool_text, world_readable_dir

PROBE = os.path.join(BUILD, "tests", "probes", "probe")

pytestmark = pytest.mark.skipif(not os.path.exists(PROBE),
                                reason="probe binary not built (make all): %s" % PROBE)


def probe_manifest(name, sandbox):
    return {"name": name, "version": "1", "command": [PROBE], "env": {"PATH": "/usr/bin:/bin"},
            "unlisted_tools": "allow", "pin_mode": "off", "sandbox": sandbox}


def probe(d, server, name, path):
    c = McpClient(d, server)
    c.initialize()
    try:
        return json.loads(tool_text(c.call_tool("probe", {"name": name, "path": path})))
    finally:
        c.delete()


@pytest.fixture
def host():
    """A host folder tree: ro/ (with a file and sub-folders rw/ and t/) and rw/ (with ro/).
    Writable by anyone, since the child runs as an unprivileged uid."""
    top = world_readable_dir()
    for sub in ("ro/rw", "ro/t", "rw/ro"):
        os.makedirs(os.path.join(top, sub))
    for dirpath, _, _ in os.walk(top):
        os.chmod(dirpath, 0o777)
    with open(os.path.join(top, "ro", "file"), "w") as f:
        f.write("host file\n")
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_views_that_check_accepts_also_spawn(make_daemon, host):
    j = lambda *p: os.path.join(host, *p)  # noqa: E731
    manifests = {
        "etc": probe_manifest("etc", {"read_only": ["/etc"]}),
        "usr": probe_manifest("usr", {"read_only": ["/usr", "/lib", "/etc/ssl"]}),
        "nested": probe_manifest("nested", {"read_only": [j("ro"), j("rw", "ro")],
                                            "read_write": [j("ro", "rw"), j("rw")],
                                            "tmpfs": ["/tmp", j("ro", "t")]}),
    }
    d = make_daemon(manifests=manifests, keys=("alice",),
                    tenants={"acme": {"servers": ["etc", "usr", "nested"]}})
    p = subprocess.run([MCPVISOR, "check", "--no-tools", "-c", d.config_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (p.stdout, p.stderr)

    # /etc bound read-only as a whole: the loader cache and the rest are there, nothing writable
    assert probe(d, "etc", "read", "/etc/ld.so.cache")["result"] == "ok"
    assert probe(d, "etc", "read", "/etc/passwd")["result"] == "ok"
    r = probe(d, "etc", "create", "/etc/mcpvisor-probe")
    assert r["result"] == "refused" and r["errno"] == errno.EROFS, r
    assert probe(d, "usr", "read", "/usr/bin/env")["result"] == "ok"
    r = probe(d, "usr", "create", "/usr/mcpvisor-probe")
    assert r["result"] == "refused" and r["errno"] == errno.EROFS, r

    # read_write nested in read_only: writable there, read-only around it
    assert probe(d, "nested", "read", j("ro", "file"))["result"] == "ok"
    r = probe(d, "nested", "create", j("ro", "new"))
    assert r["result"] == "refused" and r["errno"] == errno.EROFS, r
    assert not os.path.exists(j("ro", "new"))
    assert probe(d, "nested", "create", j("ro", "rw", "made"))["result"] == "ok"
    assert os.path.exists(j("ro", "rw", "made"))  # a real bind: the host sees it

    # read_only nested in read_write: the inner folder stays read-only
    assert probe(d, "nested", "create", j("rw", "made"))["result"] == "ok"
    assert os.path.exists(j("rw", "made"))
    r = probe(d, "nested", "create", j("rw", "ro", "new"))
    assert r["result"] == "refused" and r["errno"] == errno.EROFS, r
    assert not os.path.exists(j("rw", "ro", "new"))

    # tmpfs inside read_only: private and writable, the host folder untouched
    assert probe(d, "nested", "create", j("ro", "t", "scratch"))["result"] == "ok"
    assert os.listdir(j("ro", "t")) == []


def check(tmp_path, sandbox):
    d = Daemon(tmp_path, {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
                          "auth": {"api_keys_file": "api-keys.json"},
                          "tenants": {"acme": {"servers": ["p"]}}},
               {"p": probe_manifest("p", sandbox)}, ("alice",))
    return subprocess.run([MCPVISOR, "check", "--no-tools", "-c", d.config_path],
                          capture_output=True, text=True, timeout=30)


def test_check_refuses_a_tmpfs_that_cannot_be_made_inside_a_bind(tmp_path, host):
    inner = os.path.join(host, "ro", "absent")
    p = check(tmp_path, {"read_only": [os.path.join(host, "ro")], "tmpfs": [inner]})
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "tmpfs %s is inside read_only %s" % (inner, os.path.join(host, "ro")) in p.stderr, \
        p.stderr
    assert "create it" in p.stderr, p.stderr


@pytest.mark.parametrize("path", ["/", "/proc", "/dev", "/dev/shm"])
def test_check_refuses_binding_the_sandbox_skeleton(tmp_path, path):
    p = check(tmp_path, {"read_only": [path]})
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "sandbox path %s: the sandbox has its own /, /dev and /proc" % path in p.stderr, \
        p.stderr
