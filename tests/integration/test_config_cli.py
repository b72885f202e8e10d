"""The command line: check, keygen, run's refusals."""
import hashlib
import os
import json
import re
import subprocess

import pytest

from conftest import (MCPVISOR, REPO, SANITIZER_MARKERS, TESTSERVER, Daemon, McpClient,
                      tool_text)


def _run(args):
    p = subprocess.run([MCPVISOR] + args, capture_output=True, text=True, timeout=10)
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, p.stderr
    return p


def _write_setup(tmp_path, config=None, manifests=None, keys=None):
    (tmp_path / "servers").mkdir(exist_ok=True)
    cfg = config if config is not None else {
        "listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
        "auth": {"api_keys_file": "api-keys.json"},
        "tenants": {"acme": {"servers": ["ts"]}}}
    for name, m in (manifests or {"ts": {"name": "ts", "version": "1",
                                         "command": [TESTSERVER]}}).items():
        (tmp_path / "servers" / (name + ".json")).write_text(
            m if isinstance(m, str) else json.dumps(m))
    (tmp_path / "api-keys.json").write_text(json.dumps(keys if keys is not None else {"keys": []}))
    path = tmp_path / "mcpvisor.json"
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(path)


def _check(path):
    p = _run(["check", "-c", path])
    return p.returncode, p.stdout + p.stderr


def test_check_ok(tmp_path):
    rc, out = _check(_write_setup(tmp_path))
    assert rc == 0, out
    assert "ok" in out


def test_check_unknown_top_level_key(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json"}, "tenants": {"acme": {"servers": ["ts"]}},
           "limitz": {}}
    path = _write_setup(tmp_path, cfg)
    rc, out = _check(path)
    assert rc == 1
    line = out.strip().splitlines()[-1]
    assert re.fullmatch(r".*mcpvisor\.json: /limitz: unknown key", line), out


def test_check_unknown_nested_key(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json"}, "tenants": {"acme": {"servers": ["ts"]}},
           "limits": {"max_sesions": 3}}
    rc, out = _check(_write_setup(tmp_path, cfg))
    assert rc == 1
    assert re.search(r"mcpvisor\.json: /limits/max_sesions: unknown key", out), out


def test_check_unknown_key_in_manifest(tmp_path):
    path = _write_setup(tmp_path, manifests={"ts": {"name": "ts", "version": "1",
                                                    "command": [TESTSERVER], "evn": {}}})
    rc, out = _check(path)
    assert rc == 1
    assert re.search(r"servers/ts\.json: /evn: unknown key", out), out


def _syntax_error_position(tmp_path, text):
    rc, out = _check(_write_setup(tmp_path, text))
    assert rc == 1
    m = re.search(r"mcpvisor\.json:(\d+):(\d+): ", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_check_syntax_error_line_and_column(tmp_path):
    text = ('{"listen": [{"address": "127.0.0.1:0"}],\n'
            '  "manifests_dir": servers,\n'
            '  "tenants": {}}\n')
    col = text.splitlines()[1].index("servers") + 1  # 1-based column of the bad token
    assert _syntax_error_position(tmp_path, text) == (2, col)


def test_check_syntax_error_extra_comma_column(tmp_path):
    """The column names the offending character, not the one after it."""
    text = ('{"listen": [{"address": "127.0.0.1:0"}],\n'
            '  "manifests_dir": "servers",\n'
            '  "auth": {"api_keys_file": "api-keys.json"},,\n'
            '  "tenants": {}}\n')
    col = text.splitlines()[2].index(",,") + 2  # 1-based column of the second comma
    assert _syntax_error_position(tmp_path, text) == (3, col)


def test_check_syntax_error_trailing_comma_column(tmp_path):
    text = '{"manifests_dir": "servers",\n "tenants": {},\n}\n'
    # the offending character is the "}" on line 3, column 1
    assert _syntax_error_position(tmp_path, text) == (3, 1)


def test_check_syntax_error_in_manifest(tmp_path):
    path = _write_setup(tmp_path, manifests={"ts": '{"name": "ts",\n "command": [}\n'})
    rc, out = _check(path)
    assert rc == 1
    assert re.search(r"servers/ts\.json:2:\d+: ", out), out


def test_check_bad_values_name_pointer(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json"}, "tenants": {"acme": {"servers": ["nosuch"]}}}
    rc, out = _check(_write_setup(tmp_path, cfg))
    assert rc == 1
    assert "/tenants/acme/servers/0" in out, out
    cfg["tenants"]["acme"]["servers"] = ["ts"]
    cfg["limits"] = {"max_sessions": 0}
    rc, out = _check(_write_setup(tmp_path, cfg))
    assert rc == 1
    assert "/limits/max_sessions" in out, out


def test_check_manifest_name_must_match_file(tmp_path):
    path = _write_setup(tmp_path, manifests={"ts": {"name": "other", "version": "1",
                                                    "command": [TESTSERVER]}})
    rc, out = _check(path)
    assert rc == 1
    assert "/name" in out, out


def test_check_missing_file(tmp_path):
    rc, out = _check(str(tmp_path / "nope.json"))
    assert rc == 1
    assert "nope.json" in out


def test_check_bad_api_key_record(tmp_path):
    path = _write_setup(tmp_path, keys={"keys": [{"sha256": "zz", "tenant": "acme", "user": "u"}]})
    rc, out = _check(path)
    assert rc == 1
    assert re.search(r"api-keys\.json: /keys/0/sha256: ", out), out


def test_anonymous_refused_with_non_loopback_listener(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:0"}, {"address": "0.0.0.0:0"}],
           "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json",
                    "anonymous": {"tenant": "acme", "user": "anon", "agent": "x", "scopes": []}},
           "tenants": {"acme": {"servers": ["ts"]}}}
    path = _write_setup(tmp_path, cfg)
    rc, out = _check(path)
    assert rc == 1, out
    assert "/auth/anonymous" in out, out
    p = _run(["run", "-c", path])
    assert p.returncode != 0
    assert "msg=listening" not in p.stderr
    # loopback only: accepted
    cfg["listen"] = [{"address": "127.0.0.1:0"}, {"address": "[::1]:0"}]
    rc, out = _check(_write_setup(tmp_path, cfg))
    assert rc == 0, out


def test_keygen_output_shape(tmp_path):
    p = _run(["keygen", "--tenant", "acme", "--user", "alice",
              "--agent", "ci-bot", "--scope", "tools:read", "--scope", "tools:call"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2, p.stdout
    key = lines[0]
    assert len(key) >= 32 and re.fullmatch(r"[A-Za-z0-9_\-]+", key), key
    rec = json.loads(lines[1])
    assert rec["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert rec["tenant"] == "acme" and rec["user"] == "alice" and rec["agent"] == "ci-bot"
    assert rec["scopes"] == ["tools:read", "tools:call"]
    assert key not in lines[1]
    # two runs never give the same key
    p2 = _run(["keygen", "--tenant", "acme", "--user", "alice"])
    assert p2.stdout.splitlines()[0] != key
    assert "agent" not in json.loads(p2.stdout.splitlines()[1])


def test_keygen_requires_tenant_and_user():
    p = _run(["keygen", "--user", "x"])
    assert p.returncode != 0
    assert p.stdout == ""


def test_keygen_key_works_end_to_end(tmp_path):
    p = _run(["keygen", "--tenant", "acme", "--user", "dana"])
    key, rec = p.stdout.splitlines()
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json"}, "tenants": {"acme": {"servers": ["ts"]}}}
    d = Daemon(tmp_path, cfg, {"ts": {"name": "ts", "version": "1", "command": [TESTSERVER]}}, ())
    (tmp_path / "api-keys.json").write_text(json.dumps({"keys": [json.loads(rec)]}))
    d.start()
    try:
        import conftest
        conftest.KEYS["dana"] = (key, "acme", "dana", None)
        c = McpClient(d, key="dana")
        c.initialize()
        assert tool_text(c.call_tool("echo", {"text": "dana"})) == "dana"
        d.wait_log(r'session_start .*user="dana"')
    finally:
        conftest.KEYS.pop("dana", None)
        assert d.stop() == 0
        assert not d.sanitizer_reports(), d.log


def test_run_refuses_invalid_config(tmp_path):
    cfg = {"listen": [{"address": "127.0.0.1:0"}], "manifests_dir": "servers",
           "auth": {"api_keys_file": "api-keys.json"}, "tenants": {"acme": {"servers": ["ts"]}},
           "bogus": 1}
    path = _write_setup(tmp_path, cfg)
    p = _run(["run", "-c", path])
    assert p.returncode != 0
    assert "/bogus" in p.stderr
    assert "msg=listening" not in p.stderr


def test_version():
    p = _run(["version"])
    assert p.returncode == 0
    assert re.match(r"mcpvisor \d+\.\d+", p.stdout)


def test_demo_keeps_run_time_state_out_of_git():
    """`make run` writes the audit log (session ids, argument hashes) where the demo configuration
    says; that place must be ignored by git so it cannot be committed by mistake."""
    import json as _json
    import shutil as _shutil
    if _shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    demo = os.path.join(REPO, "manifests", "demo")
    with open(os.path.join(demo, "mcpvisor.json")) as f:
        audit = _json.load(f)["audit"]["path"]
    path = os.path.normpath(os.path.join(demo, audit))
    assert path.startswith(demo + os.sep), path
    p = subprocess.run(["git", "-C", REPO, "check-ignore", "-q", path])
    assert p.returncode == 0, "%s is not ignored by git" % path
