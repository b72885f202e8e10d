"""Per-tenant secrets for children (issue 3 item 5): manifest `secrets` map environment variables
to files in the tenant's `secrets_dir`, read by the privileged spawner only when safe (a regular
root-owned file, no group/other access, at most 64 KiB), never logged, never crossing tenants."""
import json
import os
import secrets as pysecrets
import subprocess

import pytest

from conftest import (MCPVISOR, SANITIZER_MARKERS, McpClient, base_config, default_manifests,
                      tool_text)

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "pytest-secrets", "version": "1"}}}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="secret files must be owned by root")


def secrets_manifests(secrets=None):
    m = default_manifests()
    m["ts"]["secrets"] = secrets if secrets is not None else {"API_TOKEN": "token.txt"}
    return m


def secrets_config(**extra):
    cfg = base_config(**extra)
    cfg["tenants"]["acme"]["secrets_dir"] = "secrets/acme"
    cfg["tenants"]["other"]["secrets_dir"] = "secrets/other"
    return cfg


def write_secret(d, tenant, name, value, mode=0o600):
    folder = d.dir / "secrets" / tenant
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(value if isinstance(value, bytes) else value.encode())
    os.chmod(path, mode)
    return path


@pytest.fixture
def make_secrets_daemon(make_daemon):
    """A daemon whose ts needs API_TOKEN from token.txt; files[tenant] = {file: value or
    (value, mode)} are written before start."""
    def make(files=None, secrets=None, start=True, **extra):
        d = make_daemon(config=secrets_config(**extra), manifests=secrets_manifests(secrets),
                        start=False)
        for tenant in ("acme", "other"):
            (d.dir / "secrets" / tenant).mkdir(parents=True, exist_ok=True)
        for tenant, fs in (files or {}).items():
            for name, v in fs.items():
                value, mode = v if isinstance(v, tuple) else (v, 0o600)
                write_secret(d, tenant, name, value, mode)
        if start:
            d.start()
        return d
    return make


def child_env(d, key="alice", server="ts"):
    c = McpClient(d, server=server, key=key)
    c.initialize()
    return json.loads(tool_text(c.call_tool("env")))


def expect_refused(d, value, variable="API_TOKEN", file="token.txt", key="alice"):
    """The spawn fails: initialize answers -32015 naming secrets, the log names the variable and
    file, and the value is nowhere in the log."""
    mark = d.mark()
    r = d.request("POST", "/servers/ts/mcp", INIT, key=key)
    body = r.json()
    assert "error" in body, (r, body)
    assert body["error"]["code"] == -32015, body
    assert body["error"]["data"]["type"] == "server_unavailable", body
    assert "secrets" in body["error"]["message"], body
    m = d.wait_log(r"secret_refused .*", 5, start=mark)
    line = m.group(0)
    assert "variable=%s" % variable in line and "file=%s" % file in line, line
    if value:
        assert value not in d.log
    assert d.proc.poll() is None
    return body


def secret_value(tag):
    return "%s-%s" % (tag, pysecrets.token_hex(16))


# ---- delivery ------------------------------------------------------------------------------------


def test_secret_reaches_the_child(make_secrets_daemon):
    value = secret_value("acme")
    d = make_secrets_daemon({"acme": {"token.txt": value + "\n"}, "other": {"token.txt": "o"}})
    env = child_env(d)
    assert env.get("API_TOKEN") == value, env
    assert env.get("FOO") == "bar"  # the manifest's plain env is still there
    assert value not in d.log
    assert d.log_lines("secret_refused") == []


@pytest.mark.parametrize("content,want", [
    ("abc", "abc"),
    ("abc\n", "abc"),
    ("abc\n\n", "abc\n"),
    ("multi\nline\n", "multi\nline"),
    ("  spaced  \n", "  spaced  "),
])
def test_one_trailing_newline_stripped(make_secrets_daemon, content, want):
    d = make_secrets_daemon({"acme": {"token.txt": content}, "other": {"token.txt": "o"}})
    assert child_env(d)["API_TOKEN"] == want


def test_mode_0400_and_64k(make_secrets_daemon):
    big = "x" * 65536
    d = make_secrets_daemon({"acme": {"token.txt": (big, 0o400)}, "other": {"token.txt": "o"}})
    assert child_env(d)["API_TOKEN"] == big


def test_several_secrets(make_secrets_daemon):
    a, b = secret_value("a"), secret_value("b")
    d = make_secrets_daemon({"acme": {"a.txt": a, "b.txt": b}},
                            secrets={"SECRET_A": "a.txt", "SECRET_B": "b.txt"})
    env = child_env(d)
    assert env["SECRET_A"] == a and env["SECRET_B"] == b


def test_tenants_get_their_own_secrets(make_secrets_daemon):
    a, o = secret_value("acme"), secret_value("other")
    d = make_secrets_daemon({"acme": {"token.txt": a}, "other": {"token.txt": o}})
    env_a = child_env(d, key="alice")
    env_o = child_env(d, key="carol")
    assert env_a["API_TOKEN"] == a
    assert env_o["API_TOKEN"] == o
    assert o not in json.dumps(env_a)
    assert a not in json.dumps(env_o)
    # a server without secrets gets none
    env_plain = child_env(d, key="carol", server="ts2")
    assert "API_TOKEN" not in env_plain
    assert a not in json.dumps(env_plain) and o not in json.dumps(env_plain)
    assert a not in d.log and o not in d.log


def test_secret_read_at_each_spawn(make_secrets_daemon):
    """A rotated secret reaches the next child (the spawner reads it at spawn)."""
    v1, v2 = secret_value("v1"), secret_value("v2")
    d = make_secrets_daemon({"acme": {"token.txt": v1}, "other": {"token.txt": "o"}})
    assert child_env(d)["API_TOKEN"] == v1
    write_secret(d, "acme", "token.txt", v2)
    assert child_env(d)["API_TOKEN"] == v2


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610])
def test_mode_with_group_or_other_bits_refused(make_secrets_daemon, mode):
    value = secret_value("leaky")
    d = make_secrets_daemon({"acme": {"token.txt": (value, mode)}, "other": {"token.txt": "o"}})
    expect_refused(d, value)
    # the other tenant's good file still works
    assert child_env(d, key="carol")["API_TOKEN"] == "o"


def test_symlink_refused(make_secrets_daemon):
    value = secret_value("linked")
    d = make_secrets_daemon({"acme": {"real.txt": value}, "other": {"token.txt": "o"}},
                            start=False)
    os.symlink("real.txt", d.dir / "secrets" / "acme" / "token.txt")
    d.start()
    expect_refused(d, value)


def test_symlink_to_other_tenant_refused(make_secrets_daemon):
    value = secret_value("other")
    d = make_secrets_daemon({"other": {"token.txt": value}}, start=False)
    os.symlink(str(d.dir / "secrets" / "other" / "token.txt"),
               d.dir / "secrets" / "acme" / "token.txt")
    d.start()
    expect_refused(d, value)


def test_missing_file_refused(make_secrets_daemon):
    d = make_secrets_daemon({"other": {"token.txt": "o"}})
    expect_refused(d, None)


def test_directory_refused(make_secrets_daemon):
    d = make_secrets_daemon({"other": {"token.txt": "o"}}, start=False)
    (d.dir / "secrets" / "acme" / "token.txt").mkdir(mode=0o700)
    d.start()
    expect_refused(d, None)


def test_fifo_refused_without_hanging(make_secrets_daemon):
    d = make_secrets_daemon({"other": {"token.txt": "o"}}, start=False)
    os.mkfifo(d.dir / "secrets" / "acme" / "token.txt", 0o600)
    d.start()
    expect_refused(d, None)
    # the spawner did not block on it: the other tenant is served
    assert child_env(d, key="carol")["API_TOKEN"] == "o"


def test_not_owned_by_root_refused(make_secrets_daemon):
    value = secret_value("nobody")
    d = make_secrets_daemon({"acme": {"token.txt": value}, "other": {"token.txt": "o"}},
                            start=False)
    os.chown(d.dir / "secrets" / "acme" / "token.txt", 65534, 65534)
    d.start()
    expect_refused(d, value)


def test_oversized_refused(make_secrets_daemon):
    value = "y" * 65537
    d = make_secrets_daemon({"acme": {"token.txt": value}, "other": {"token.txt": "o"}})
    expect_refused(d, value)


def test_one_bad_secret_of_several_refuses_the_spawn(make_secrets_daemon):
    good, bad = secret_value("good"), secret_value("bad")
    d = make_secrets_daemon({"acme": {"a.txt": good, "b.txt": (bad, 0o644)}},
                            secrets={"SECRET_A": "a.txt", "SECRET_B": "b.txt"})
    expect_refused(d, bad, variable="SECRET_B", file="b.txt")
    assert good not in d.log


def test_refusal_then_fix(make_secrets_daemon):
    value = secret_value("fixed")
    d = make_secrets_daemon({"acme": {"token.txt": (value, 0o644)}, "other": {"token.txt": "o"}})
    expect_refused(d, value)
    os.chmod(d.dir / "secrets" / "acme" / "token.txt", 0o600)
    assert child_env(d)["API_TOKEN"] == value
    assert value not in d.log


# ---- configuration -------------------------------------------------------------------------------


def _check(d):
    p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True, text=True,
                       timeout=10)
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, p.stderr
    return p.returncode, p.stdout + p.stderr


def test_check_requires_secrets_dir(make_daemon):
    cfg = secrets_config()
    del cfg["tenants"]["other"]["secrets_dir"]
    d = make_daemon(config=cfg, manifests=secrets_manifests(), start=False)
    rc, out = _check(d)
    assert rc != 0, out
    assert "secrets_dir" in out and "/tenants/other" in out, out


def test_check_accepts_secrets_dir_and_tenant_without_secret_servers(make_daemon):
    cfg = secrets_config()
    cfg["tenants"]["plain"] = {"servers": ["ts2"]}  # ts2 has no secrets: no secrets_dir needed
    d = make_daemon(config=cfg, manifests=secrets_manifests(), start=False)
    rc, out = _check(d)
    assert rc == 0, out
