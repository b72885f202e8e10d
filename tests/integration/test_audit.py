"""
The audit log (config "audit"): an append-only JSON Lines file, hash-chained (each record's prev
is the SHA-256 of the previous line), with who called which tool through which agent and how it
ended, and the daemon's own events (sessions, children, auth failures, quota refusals, drift,
reloads). `mcpvisor audit verify` checks the chain, `mcpvisor audit query` lists the calls.

The chain is checked here independently of the daemon's own verifier, with hashlib.
"""
import errno
import hashlib
import json
import os
import platform
import re
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import (BUILD, KEYS, MCPVISOR, SANITIZER_MARKERS, TESTSERVER, McpClient,
                      default_manifests, manifest, tool_text, wait_for)

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ZERO = "0" * 64
PROBE = os.path.join(BUILD, "tests", "probes", "probe")


# ---- reading the log -----------------------------------------------------------------------------


def sha(b):
    return hashlib.sha256(b).hexdigest()


def raw_lines(path):
    """The complete lines of the file (bytes, without their "\\n") and the torn tail (b"" if
    none)."""
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


def records(path):
    try:
        lines, _ = raw_lines(path)
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in lines]


def check_chain(lines, prev=ZERO, seq=None):
    """Every line is a record whose seq follows the one before, with an RFC 3339 UTC ts and prev
    the SHA-256 of the line before (`prev` for the first one). Returns the records."""
    out = []
    for i, line in enumerate(lines, 1):
        rec = json.loads(line)
        assert isinstance(rec, dict), (i, line)
        if seq is not None:
            assert rec["seq"] == seq + 1, ("seq does not follow", i, seq, line)
        assert isinstance(rec["seq"], int) and rec["seq"] >= 1, (i, line)
        seq = rec["seq"]
        assert TS_RE.match(rec["ts"]), (i, line)
        assert rec["prev"] == prev, ("prev is not the hash of the line before", i, line)
        assert isinstance(rec["event"], str) and rec["event"], (i, line)
        prev = sha(line)
        out.append(rec)
    return out


def find(recs, **match):
    return [r for r in recs if all(r.get(k) == v for k, v in match.items())]


def one(recs, **match):
    found = find(recs, **match)
    assert len(found) == 1, ("expected one record matching %r, found %d" % (match, len(found)),
                             found)
    return found[0]


def wait_record(path, timeout=5.0, **match):
    """Waits until a record matching `match` is in the file; returns it."""
    return wait_for(lambda: next(iter(find(records(path), **match)), None), timeout=timeout,
                    what="an audit record matching %r in %s" % (match, path))


def audit_cli(*args):
    return subprocess.run([MCPVISOR, "audit"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=60)


def assert_verifies(*paths):
    p = audit_cli("verify", *paths)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"\bok\b", p.stdout), p.stdout
    return p


# ---- daemons -------------------------------------------------------------------------------------


def _daemon(make_daemon, path, sync="always", manifests=None, ts=None, start=True, **extra):
    """A daemon with its audit log at `path`; ts: keyword args of the ts manifest."""
    ms = manifests if manifests is not None else default_manifests()
    if ts is not None:
        ms["ts"] = manifest("ts", **ts)
    audit = {"path": str(path), "sync": sync}
    if sync == "batch":
        audit["batch_ms"] = 50
    return make_daemon(manifests=ms, audit=audit, start=start, **extra)


def _session(d, key="alice", server="ts"):
    c = McpClient(d, server=server, key=key)
    c.initialize()
    return c


def _caller(key):
    _, tenant, user, agent = KEYS[key]
    return tenant, user, agent


def _call_pair(recs, c, rid):
    """The call record of request rid (the JSON-RPC id) on session c and its result record."""
    call = one(recs, event="call", session=c.sid, request_id=rid_text(rid))
    result = one(recs, event="result", session=c.sid, request_id=rid_text(rid))
    assert result["call_seq"] == call["seq"], (call, result)
    return call, result


def rid_text(rid):
    """A request id as the log records it: the id itself, a JSON number or string."""
    return rid


def _assert_who(rec, key, server="ts"):
    tenant, user, agent = _caller(key)
    assert rec["tenant"] == tenant and rec["user"] == user and rec["server"] == server, rec
    assert rec.get("agent") in ((agent,) if agent is not None else ("", None)), rec


# ---- records -------------------------------------------------------------------------------------


def test_records_are_chained_and_name_caller_tool_and_outcome(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path, ts={"tools": {"echo": {"version": "3"}}})
    clients = {k: _session(d, k) for k in ("alice", "bob", "carol")}
    a = clients["alice"]
    assert tool_text(a.call_tool("echo", {"text": "hi"}, rid=1)) == "hi"
    # sent as {"b": 2, "a": 1.0}: the hash is over the RFC 8785 form {"a":1,"b":2}
    assert tool_text(a.call_tool("add", {"b": 2, "a": 1.0}, rid=2)) == "3"
    for k in ("bob", "carol"):
        assert tool_text(clients[k].call_tool("echo", {"text": k}, rid=1)) == k
    assert a.delete().status in (200, 204)
    wait_record(path, event="session_end", session=a.sid)
    assert d.stop() == 0
    assert oct(stat.S_IMODE(os.stat(path).st_mode)) == oct(0o600)

    lines, torn = raw_lines(path)
    assert torn == b""
    recs = check_chain(lines)
    first = recs[0]
    assert first["seq"] == 1 and first["prev"] == ZERO
    assert first["event"] == "audit_open" and first["reason"] == "start", first

    spawns = find(recs, event="spawn")
    for k, c in clients.items():
        tenant, user, agent = _caller(k)
        start = one(recs, event="session_start", session=c.sid)
        _assert_who(start, k)
        end = one(recs, event="session_end", session=c.sid)
        _assert_who(end, k)
        assert start["seq"] < end["seq"]
        assert any(s["tenant"] == tenant and s["server"] == "ts" for s in spawns), spawns

    child_pids = {s["child_pid"] for s in spawns}
    assert all(isinstance(p, int) and p > 0 for p in child_pids), spawns
    exits = find(recs, event="exit")
    assert {e["child_pid"] for e in exits} == child_pids, (spawns, exits)
    for e in exits:
        assert "status" in e or "signal" in e, e
        assert e["server"] == "ts" and e["tenant"] in ("acme", "other"), e

    # every record of a session names that session's caller
    key_of = {c.sid: k for k, c in clients.items()}
    per_session = [r for r in recs if r["event"] in ("session_start", "session_end", "call",
                                                       "result")]
    assert len(per_session) == 3 * 2 + 4 * 2, per_session
    for rec in per_session:
        _assert_who(rec, key_of[rec["session"]])

    expect = [("alice", 1, "echo", "3", b'{"text":"hi"}'),
              ("alice", 2, "add", None, b'{"a":1,"b":2}'),
              ("bob", 1, "echo", "3", b'{"text":"bob"}'),
              ("carol", 1, "echo", "3", b'{"text":"carol"}')]
    for key, rid, tool, version, canonical in expect:
        c = clients[key]
        call, result = _call_pair(recs, c, rid)
        for rec in (call, result):
            _assert_who(rec, key)
            assert rec["tool"] == tool and rec["method"] == "tools/call", rec
        assert call.get("tool_version") == version, call
        assert call["args_sha256"] == sha(canonical), (call, canonical)
        assert call.get("forwarded", True) is True, call
        assert isinstance(call["bytes_in"], int) and call["bytes_in"] > 0, call
        assert result["outcome"] == "ok", result
        assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0, result
        assert isinstance(result["bytes_out"], int) and result["bytes_out"] > 0, result
        assert result["child_pid"] in child_pids, result
        assert call["seq"] < result["seq"]


def test_resources_read_and_prompts_get_are_audited(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    c = _session(d, "bob")
    m = c.request("resources/read", {"uri": "test://static"}, rid=1)
    assert m["result"]["contents"][0]["text"] == "static resource", m
    m = c.request("prompts/get", {"name": "greet", "arguments": {"name": "Ann"}}, rid=2)
    assert "Hello, Ann!" in json.dumps(m["result"]), m
    wait_record(path, event="result", session=c.sid, request_id=2)
    recs = records(path)
    for rid, method, target, args in ((1, "resources/read", "test://static", b"{}"),
                                      (2, "prompts/get", "greet", b'{"name":"Ann"}')):
        call, result = _call_pair(recs, c, rid)
        for rec in (call, result):
            _assert_who(rec, "bob")
            assert rec["method"] == method and rec["tool"] == target, rec
            assert rec["target_sha256"] == sha(target.encode()), rec
            assert "request_id_sha256" not in rec, rec  # a number, and never cut
        assert call["args_sha256"] == hashlib.sha256(args).hexdigest(), call
        assert call["child_pid"] == result["child_pid"] > 0, (call, result)
        assert result["outcome"] == "ok", result


def test_targets_over_the_bound_are_refused_and_recorded(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    c = _session(d)
    long_uri = "test://" + "r" * (8192 - len("test://") + 1)
    long_name = "n" * 8193
    refused = [("resources/read", {"uri": long_uri}, long_uri, "uri"),
               ("prompts/get", {"name": long_name}, long_name, "name"),
               ("tools/call", {"name": long_name, "arguments": {}}, long_name, "name")]
    for i, (method, params, target, param) in enumerate(refused):
        m = c.request(method, params, rid="big-%d" % i)
        err = m["error"]
        assert err["code"] == -32602, m
        assert err["data"]["type"] == "invalid_params" and err["data"]["max_bytes"] == 8192, m
        assert "params.%s" % param in err["message"] and "8192" in err["message"], m
    # at the bound, the call goes out (the server answers what it makes of the URI)
    at_bound = "test://" + "r" * (8192 - len("test://"))
    m = c.request("resources/read", {"uri": at_bound}, rid="at-bound")
    assert m.get("error", {}).get("data", {}).get("type") != "invalid_params", m
    assert tool_text(c.call_tool("echo", {"text": "n"}, rid="n")) == "n"
    wait_record(path, event="result", session=c.sid, request_id="n")

    recs = records(path)
    for i, (method, params, target, param) in enumerate(refused):
        call, result = _call_pair(recs, c, "big-%d" % i)
        for rec in (call, result):
            _assert_who(rec, "alice")
            assert rec["method"] == method and rec["tool"] == target, rec
            assert rec["target_sha256"] == sha(target.encode()), rec
        assert call["forwarded"] is False and "child_pid" not in call, call
        assert result["outcome"] == "invalid_params", result
    call, result = _call_pair(recs, c, "at-bound")
    assert call.get("forwarded", True) is True and call["tool"] == at_bound, call
    assert result["outcome"] != "invalid_params", result
    d.stop()
    assert_verifies(path)
    rows = _query_json(path, "--user", "alice")
    assert {r["request_id"]: r["target_sha256"] for r in rows if r["method"] == "tools/call"} == {
        "big-2": sha(long_name.encode()), "n": sha(b"echo")}, rows


def test_a_cut_record_keeps_the_hashes_of_its_target_and_request_id(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    c = _session(d, "bob")
    # within the bound, but with a request id that takes the record past 64 KiB
    uri = "test://caf\u00e9/" + "u" * 8000
    rid = "id-" + "i" * 70000
    m = c.request("resources/read", {"uri": uri}, rid=rid)
    assert m["id"] == rid, m["id"][:40]
    m = c.request("resources/read", {"uri": "test://static"}, rid="small")
    assert m["result"]["contents"][0]["text"] == "static resource", m
    wait_record(path, event="result", session=c.sid, request_id="small")
    lines, _ = raw_lines(path)
    assert all(len(l) + 1 <= 64 * 1024 for l in lines)
    recs = check_chain(lines)
    cut = [r for r in recs if r.get("session") == c.sid and r["event"] in ("call", "result") and
           r.get("request_id") != "small"]
    assert sorted(r["event"] for r in cut) == ["call", "result"], cut
    for rec in cut:
        _assert_who(rec, "bob")
        assert rec["method"] == "resources/read", rec
        # what could not be kept whole is cut, and its hash still names it
        assert rec["tool"].endswith("...[truncated]") and uri.startswith(rec["tool"][:-14]), rec
        assert rec["request_id"].endswith("...[truncated]"), rec
        assert rec["target_sha256"] == sha(uri.encode("utf-8")), rec
        assert rec["request_id_sha256"] == sha(rid.encode()), rec
    small = one(recs, event="call", session=c.sid, request_id="small")
    assert small["target_sha256"] == sha(b"test://static") and "request_id_sha256" not in small
    d.stop()
    assert_verifies(path)
    rows = _query_json(path, "--user", "bob")
    assert sorted(r["target_sha256"] for r in rows) == sorted(
        [sha(uri.encode("utf-8")), sha(b"test://static")]), rows


def _pinned(tool, args, version):
    return {"name": tool, "arguments": args, "_meta": {"mcpvisor/version": version}}


def test_calls_refused_before_forwarding_are_recorded(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    tools = {"echo": {"version": "3", "quota": {"max_args_bytes": 64}},
             "env": {"quota": {"rate": "1/min", "burst": 1}},
             "typed": {}, "typed_calls": {},
             "slow": {"scopes": ["ts:admin"]}}
    d = _daemon(make_daemon, path, ts={"tools": tools, "unlisted_tools": "deny"})
    c = _session(d)
    assert "result" in c.call_tool("env", rid="env-ok")
    refusals = [
        ("forbidden", "slow", c.call_tool("slow", {"ms": 4000}, rid="r1")),
        ("unknown_tool", "add", c.call_tool("add", {"a": 1, "b": 2}, rid="r2")),
        ("invalid_arguments", "typed", c.call_tool("typed", {"count": 0}, rid="r3")),
        ("quota_exceeded", "echo", c.call_tool("echo", {"text": "x" * 200}, rid="r4")),
        ("version_mismatch", "echo", c.request("tools/call", _pinned("echo", {"text": "v"}, "9"),
                                               rid="r5")),
        ("quota_exceeded", "env", c.call_tool("env", rid="r6")),
    ]
    for outcome, tool, msg in refusals:
        assert "error" in msg and msg["error"]["data"]["type"] == outcome, (outcome, msg)
    # none reached the server
    assert int(tool_text(c.call_tool("typed_calls", rid="n"))) == 0
    wait_record(path, event="result", session=c.sid, request_id=rid_text("n"))

    recs = records(path)
    for outcome, tool, msg in refusals:
        rid = msg["id"]
        call, result = _call_pair(recs, c, rid)
        for rec in (call, result):
            _assert_who(rec, "alice")
            assert rec["tool"] == tool and rec["method"] == "tools/call", rec
        assert call["forwarded"] is False, call
        assert result["outcome"] == outcome, result

    q = one(recs, event="quota_refused", tool="env")
    _assert_who(q, "alice")
    assert "rate limit" in q["reason"], q
    assert isinstance(q["retry_after_ms"], int) and 0 < q["retry_after_ms"] <= 60000, q


def test_forwarded_calls_record_how_they_ended(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path,
                ts={"tools": {"slow": {"quota": {"timeout_ms": 300}}}, "unlisted_tools": "allow"})
    c = _session(d)
    ends = [
        ("error", c.call_tool("slow", {"ms": 10 ** 9}, rid="e")),  # the server's own error
        ("invalid_result", c.call_tool("structured", {"n": "three"}, rid="i")),
        ("tool_error", c.call_tool("shape", {"kind": "tool_error"}, rid="x")),
        ("ok", c.call_tool("shape", {"kind": "ok"}, rid="o")),
        ("timeout", c.call_tool("slow", {"ms": 1500}, rid="t")),
    ]
    assert ends[0][1]["error"]["code"] == -32602, ends[0]
    assert ends[1][1]["error"]["data"]["type"] == "invalid_result", ends[1]
    assert ends[2][1]["result"]["isError"] is True, ends[2]
    assert ends[4][1]["error"]["data"]["type"] == "timeout", ends[4]
    wait_record(path, event="result", session=c.sid, request_id=rid_text("t"))
    recs = records(path)
    for outcome, msg in ends:
        call, result = _call_pair(recs, c, msg["id"])
        assert call.get("forwarded", True) is True, call
        assert result["outcome"] == outcome, (outcome, result)
    _, timed_out = _call_pair(recs, c, "t")
    assert timed_out["latency_ms"] >= 250, timed_out


def test_auth_failures_are_recorded_without_the_token(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    token = "mcpv_test_wrong_0123456789abcdefghijklmnopq"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert d.request("POST", "/servers/ts/mcp", ping, key=token).status == 401
    assert d.request("POST", "/servers/ts2/mcp", ping, key=None).status == 401
    wait_for(lambda: len(find(records(path), event="auth_failure")) == 2, timeout=5,
             what="two auth_failure records")
    recs = records(path)
    bad, missing = find(recs, event="auth_failure")
    assert bad["server"] == "ts" and bad["remote"] == "127.0.0.1", bad
    assert isinstance(bad["reason"], str) and bad["reason"], bad
    assert bad["token_sha256_prefix"] == sha(token.encode())[:16], bad
    assert missing["server"] == "ts2" and missing["remote"] == "127.0.0.1", missing
    assert missing["reason"] and "token_sha256_prefix" not in missing, missing
    with open(path, "rb") as f:
        data = f.read()
    assert token.encode() not in data
    assert token[10:30].encode() not in data  # not even a piece of it


def _assert_flood_bounded(d, path, event, refuse_one):
    """A flood of refusals (refuse_one(conn) sends one on conn and returns True when it was
    refused) writes at most a burst of `event` records plus 20 a second; after a pause the next
    record carries suppressed_before, and written plus counted equals refused."""
    conn = d.conn()
    sent = 0
    t0 = time.monotonic()
    while sent < 400 and time.monotonic() - t0 < 3:
        if refuse_one(conn):
            sent += 1
    conn.close()
    elapsed = time.monotonic() - t0
    wait_for(lambda: len(find(records(path), event=event)) >= 100, timeout=5,
             what="the burst of %s records" % event)
    written = len(find(records(path), event=event))
    assert written <= 100 + 20 * elapsed + 5, (written, sent, elapsed)
    assert written < sent, (written, sent)
    before = written
    late = [0]

    def flushed():
        late[0] += 1
        c = d.conn()
        try:
            assert refuse_one(c)
        finally:
            c.close()
        recs = find(records(path), event=event)
        return len(recs) > before and recs[-1].get("suppressed_before", 0) > 0
    wait_for(flushed, timeout=5, interval=0.1, what="a %s record counting the rest" % event)
    recs = find(records(path), event=event)
    counted = sum(r.get("suppressed_before", 0) for r in recs)
    assert len(recs) + counted == sent + late[0], (len(recs), counted, sent, late[0])


PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})


def test_auth_failure_records_are_rate_limited_and_counted(make_daemon, tmp_path):
    """Anyone can fail to authenticate: a flood of 401s writes at most a burst of records, and
    the next record says how many were left out."""
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    n = [0]

    def refuse_one(conn):
        n[0] += 1
        resp = d.open(conn, "POST", "/servers/ts/mcp", PING,
                      {"Content-Type": "application/json"}, key="mcpv_wrong_key_%d" % n[0])
        resp.read()
        assert resp.status == 401
        return True
    _assert_flood_bounded(d, path, "auth_failure", refuse_one)


def test_quota_refused_records_are_rate_limited_and_counted(make_daemon, tmp_path):
    """A caller over limits.principal_rate gets 429 for every request; the quota_refused records
    of such a flood are bounded like auth_failure: a burst, then counted in the next record."""
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path, limits={"principal_rate": "1/min", "principal_burst": 1})

    def refuse_one(conn):
        resp = d.open(conn, "POST", "/servers/ts/mcp", PING, {"Content-Type": "application/json"})
        resp.read()
        return resp.status == 429
    _assert_flood_bounded(d, path, "quota_refused", refuse_one)


def test_held_calls_answered_without_forwarding_are_recorded(make_daemon, tmp_path):
    """A call waiting for the tools to be verified, then answered because the session ends, is
    recorded like other refusals: a call record with forwarded false and its outcome."""
    path = tmp_path / "audit.jsonl"
    ms = default_manifests()
    ms["ts"] = manifest("ts", ["--list-hang"])
    d = make_daemon(manifests=ms, limits={"spawn_timeout_ms": 8000},
                    audit={"path": str(path), "sync": "always"},
                    proc_env={"MCPVISOR_LOG_LEVEL": "debug"})
    c = _session(d)
    out = {}

    def call():
        out["m"] = c.request("tools/call", {"name": "echo", "arguments": {"text": "x"}},
                             rid="held")
    t = threading.Thread(target=call)
    t.start()
    d.wait_log(r"tool_request_held session=%s" % c.sid[:8])
    assert c.delete().status in (200, 202, 204)  # ends the session: the held call is answered
    t.join(5)
    assert out["m"]["error"]["code"] == -32015, out
    rec = wait_record(path, event="result", session=c.sid, request_id="held")
    assert rec["outcome"] == "server_unavailable", rec
    call_rec = one(records(path), event="call", session=c.sid, request_id="held")
    assert call_rec["forwarded"] is False and call_rec["tool"] == "echo", call_rec


def test_schema_drift_is_recorded(make_daemon, tmp_path):
    from test_pin import pin_of, served_tools
    pins = {t["name"]: pin_of(t) for t in served_tools([TESTSERVER])}
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path,
                ts={"args": ["--drift"],
                    "tools": {"echo": {"version": "2", "sha256": pins["echo"]}}})
    c = _session(d)
    err = c.call_tool("echo", {"text": "x"}, rid=1)["error"]
    assert err["data"]["type"] == "schema_drift", err
    wait_record(path, event="result", session=c.sid, request_id=1)
    recs = records(path)
    drift = one(recs, event="schema_drift")
    assert drift["server"] == "ts" and drift["tool"] == "echo", drift
    assert drift["pinned_sha256"] == pins["echo"], drift
    assert drift["observed_sha256"] == err["data"]["observed_sha256"] != pins["echo"], drift
    call, result = _call_pair(recs, c, 1)
    assert call["forwarded"] is False and result["outcome"] == "schema_drift", (call, result)


def test_sighup_records_a_config_reload(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    os.kill(d.proc.pid, signal.SIGHUP)
    rec = wait_record(path, event="config_reload")
    assert rec["outcome"] == "ok", rec
    # the same file, reopened: the chain goes on in it
    reopen = wait_record(path, event="audit_open", reason="reopen")
    assert reopen["seq"] > 1
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": "after"}, rid=1)) == "after"
    wait_record(path, event="result", session=c.sid, request_id=1)
    check_chain(raw_lines(path)[0])


@pytest.mark.skipif(not os.path.exists(PROBE) or platform.machine() != "x86_64",
                    reason="needs the probe binary (make all) and x86_64 syscall numbers")
def test_child_killed_by_seccomp_is_recorded(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    ms = default_manifests()
    ms["probe"] = {"name": "probe", "version": "1", "command": [PROBE],
                   "env": {"PATH": "/usr/bin:/bin"}, "unlisted_tools": "allow", "pin_mode": "off"}
    d = _daemon(make_daemon, path, manifests=ms,
                tenants={"acme": {"servers": ["ts", "probe"]}, "other": {"servers": ["ts"]}})
    c = _session(d, server="probe")
    msg = c.call_tool("probe", {"name": "kexec_load"})
    assert "error" in msg, msg
    spawn = wait_record(path, event="spawn", server="probe")
    ex = wait_record(path, event="exit", child_pid=spawn["child_pid"])
    assert ex["signal"] == signal.SIGSYS and ex["tenant"] == "acme", ex
    # the kernel's record of the kill may be late or rate-limited: then the name is "unknown"
    assert ex["seccomp_syscall"] in ("kexec_load", "unknown"), ex


# ---- mcpvisor audit verify / query ---------------------------------------------------------------


def test_verify_passes_and_finds_a_changed_byte(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path)
    c = _session(d)
    for i in range(4):
        assert tool_text(c.call_tool("echo", {"text": "t%d" % i})) == "t%d" % i
    d.stop()
    assert_verifies(path)

    lines, _ = raw_lines(path)
    assert len(lines) >= 8, lines
    n = len(lines) // 2  # 1-based number of the line changed
    line = lines[n - 1]
    i = line.index(b'"user":"alice"') + len(b'"user":"a')
    changed = line[:i] + b"X" + line[i + 1:]
    assert changed != line and len(changed) == len(line)
    lines[n - 1] = changed
    with open(path, "wb") as f:
        f.write(b"".join(l + b"\n" for l in lines))
    p = audit_cli("verify", path)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    broken = [int(m) for m in re.findall(r"^%s:(\d+): .*(?:broken|mismatch|invalid)" %
                                         re.escape(str(path)), out, re.M | re.I)]
    assert broken and broken[0] in (n, n + 1), (n, out)
    assert not re.search(r"\bok\b", p.stdout.splitlines()[-1] if p.stdout else ""), out


def _query(path, *args):
    p = audit_cli("query", path, *args)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _query_json(path, *args):
    return [json.loads(l) for l in _query(path, "--json", *args).splitlines() if l.strip()]


def test_query_lists_calls_with_filters(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path, ts={"tools": {"echo": {"version": "3"}}})
    a, b, c = _session(d, "alice"), _session(d, "bob"), _session(d, "carol")
    assert tool_text(a.call_tool("echo", {"text": "a1"}, rid=1)) == "a1"
    assert tool_text(a.call_tool("echo", {"text": "a2"}, rid=2)) == "a2"
    assert tool_text(a.call_tool("add", {"a": 1, "b": 2}, rid=3)) == "3"
    assert tool_text(b.call_tool("echo", {"text": "b1"}, rid=1)) == "b1"
    assert tool_text(c.call_tool("echo", {"text": "c1"}, rid=1)) == "c1"
    wait_record(path, event="result", session=c.sid, request_id=1)
    recs = records(path)

    table = _query(path, "--user", "alice", "--tool", "echo").splitlines()
    assert table[0].split() == ["TIME", "TENANT", "USER", "AGENT", "SERVER", "TOOL", "VERSION",
                                "OUTCOME", "LATENCY_MS"], table
    rows = [r.split() for r in table[1:] if r.strip()]
    assert len(rows) == 2, table
    for row in rows:
        assert TS_RE.match(row[0]) and row[1:8] == ["acme", "alice", "ci-bot", "ts", "echo", "3",
                                                    "ok"], row
        assert row[8].isdigit(), row

    js = _query_json(path, "--user", "alice", "--tool", "echo")
    assert [j["request_id"] for j in js] == [1, 2], js
    for j in js:
        assert j["user"] == "alice" and j["tool"] == "echo" and j["outcome"] == "ok", j
        assert isinstance(j["latency_ms"], int), j

    assert sorted((j["user"], j["tool"]) for j in _query_json(path, "--agent", "ci-bot")) == [
        ("alice", "add"), ("alice", "echo"), ("alice", "echo")]
    assert [(j["user"], j["tenant"]) for j in _query_json(path, "--tenant", "other")] == [
        ("carol", "other")]
    assert len(_query_json(path)) == 5

    # --since is inclusive, --until exclusive; both take RFC 3339 times
    t2 = one(recs, event="call", session=a.sid, request_id=2)["ts"]
    assert [j["request_id"] for j in _query_json(path, "--user", "alice", "--since", t2)] == [
        2, 3]
    assert [j["request_id"] for j in _query_json(path, "--user", "alice", "--until", t2)] == [1]
    t3 = one(recs, event="call", session=a.sid, request_id=3)["ts"]
    assert [j["request_id"] for j in _query_json(path, "--since", t2, "--until", t3)] == [2]


# ---- continuity: restart and rotation ------------------------------------------------------------


def test_chain_continues_across_a_restart(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d1 = _daemon(make_daemon, path)
    c = _session(d1)
    assert tool_text(c.call_tool("echo", {"text": "one"})) == "one"
    assert d1.stop() == 0
    lines1, _ = raw_lines(path)
    last = json.loads(lines1[-1])

    d2 = _daemon(make_daemon, path)
    opened = wait_record(path, event="audit_open", seq=last["seq"] + 1)
    assert opened["reason"] == "start", opened
    assert opened["prev"] == sha(lines1[-1]), opened
    c = _session(d2)
    assert tool_text(c.call_tool("echo", {"text": "two"}, rid=1)) == "two"
    wait_record(path, event="result", session=c.sid, request_id=1)
    d2.stop()
    lines, torn = raw_lines(path)
    assert torn == b"" and lines[:len(lines1)] == lines1
    check_chain(lines)
    assert_verifies(path)


def test_sighup_after_rotation_starts_a_new_file_on_the_same_chain(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    old = tmp_path / "audit.jsonl.1"
    d = _daemon(make_daemon, path)
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": "before"}, rid=1)) == "before"
    wait_record(path, event="result", session=c.sid, request_id=1)
    os.rename(path, old)
    os.kill(d.proc.pid, signal.SIGHUP)
    opened = wait_record(path, event="audit_open")
    assert tool_text(c.call_tool("echo", {"text": "after"}, rid=2)) == "after"
    wait_record(path, event="result", session=c.sid, request_id=2)

    # the old file is closed now: its last line is final
    old_lines, torn = raw_lines(old)
    assert torn == b""
    check_chain(old_lines)
    new_lines, _ = raw_lines(path)
    first = json.loads(new_lines[0])
    assert first == opened
    assert first["reason"] == "rotate", first
    assert first["previous_hash"] == sha(old_lines[-1]) == first["prev"], first
    assert first["seq"] == json.loads(old_lines[-1])["seq"] + 1, first
    check_chain(new_lines, prev=first["prev"], seq=first["seq"] - 1)
    assert find(records(old), event="call", request_id=1)
    assert find(records(path), event="call", request_id=2)
    assert_verifies(old, path)


# ---- failure: a full disk ------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 128 KiB tmpfs (torn down after the daemons: request it before make_daemon)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % (p.stderr.strip() or p.returncode))
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path):
    """Writes path until the file system is full (ENOSPC)."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 4096
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    chunk = b"\0"
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return
                chunk = b"\0"
    finally:
        os.close(fd)


def test_a_file_size_limit_fails_closed_without_killing_the_daemon(tmp_path, make_daemon):
    # RLIMIT_FSIZE: past it a write raises SIGXFSZ, whose default action ends the process.
    d = _daemon(make_daemon, tmp_path / "audit.jsonl", fsize=16384)
    c = _session(d)
    refusal = None
    for _ in range(200):
        m = c.call_tool("typed", {"count": 1})
        if "error" in m:
            refusal = m
            break
    assert refusal is not None, "calls still served past the audit log's file-size limit"
    err = refusal["error"]
    assert err["code"] == -32016 and err["data"]["type"] == "audit_unavailable", err
    assert d.proc.poll() is None, d.log
    assert "result" in c.request("ping"), "the daemon stopped serving"


def test_full_disk_fails_closed_and_recovers_by_itself(tiny_tmpfs, make_daemon):
    path = tiny_tmpfs / "audit.jsonl"
    d = _daemon(make_daemon, path)
    c = _session(d)
    mark = d.mark()
    assert "result" in c.call_tool("typed", {"count": 1})
    answered = 1
    filler = tiny_tmpfs / "filler"
    _fill(filler)
    # The log file's last page may still have room for a few records: call until refused.
    refusal = None
    for _ in range(40):
        m = c.call_tool("typed", {"count": 1})
        if "error" in m:
            refusal = m
            break
        answered += 1
    assert refusal is not None, "calls still served with the audit file system full"
    err = refusal["error"]
    assert err["code"] == -32016 and err["data"]["type"] == "audit_unavailable", err
    # while the disk is full, calls keep being refused (fill again first: cutting the failed
    # write back may have freed a few bytes)
    _fill(tiny_tmpfs / "filler2")
    err = c.call_tool("typed", {"count": 1})["error"]
    assert err["code"] == -32016, err
    assert d.log_lines(r"level=error.*audit"), "no error about the audit log in:\n" + d.log

    os.unlink(filler)
    os.unlink(tiny_tmpfs / "filler2")
    # no restart: the next call is served, and the refused ones never reached the server
    assert "result" in c.call_tool("typed", {"count": 1})
    assert int(tool_text(c.call_tool("typed_calls"))) == answered + 1
    assert d.proc.poll() is None
    d.wait_log(r"audit_resumed", start=mark)
    assert d.stop() == 0
    lines, torn = raw_lines(path)
    assert torn == b"", torn[:200]
    check_chain(lines)
    assert_verifies(path)


# ---- failure: kill -9 under load -----------------------------------------------------------------


def test_kill_9_under_load_loses_no_answered_call(make_daemon, tmp_path):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path, sync="always")
    keys = ["alice", "bob", "alice", "carol"]
    clients = [_session(d, k) for k in keys]
    answered = []  # (session, request id) of every call that got its answer
    lock = threading.Lock()
    stop = threading.Event()

    def load(c, n):
        rid = 0
        while not stop.is_set():
            rid += 1
            try:
                m = c.call_tool("echo", {"text": "w%d-%d" % (n, rid)}, rid=rid)
            except Exception:
                return  # the daemon is gone
            if "result" in m and tool_text(m) == "w%d-%d" % (n, rid):
                with lock:
                    answered.append((c.sid, rid))

    threads = [threading.Thread(target=load, args=(c, n), daemon=True)
               for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(answered) >= 60, timeout=30, what="60 answered calls")
        front = d.front_pid
        os.kill(front, signal.SIGKILL)
        os.kill(d.proc.pid, signal.SIGKILL)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    d.proc.wait(10)
    with lock:
        done = list(answered)

    p = audit_cli("verify", path)
    if p.returncode != 0:
        # only a torn last line is acceptable, and a restart must cut it off
        assert "torn" in p.stdout + p.stderr, p.stdout + p.stderr
        complete, torn = raw_lines(path)
        assert torn, "verify reports a torn line, but the file ends with a line end"
        d2 = _daemon(make_daemon, path)
        opened = wait_record(path, event="audit_open", seq=json.loads(complete[-1])["seq"] + 1)
        assert opened["reason"] == "start" and opened["truncated_bytes"] == len(torn), opened
        d2.stop()
    lines, torn = raw_lines(path)
    assert torn == b""
    recs = check_chain(lines)
    assert_verifies(path)
    calls = {(r["session"], r["request_id"]) for r in recs if r["event"] == "call"}
    missing = [x for x in done if x not in calls]
    assert not missing, "answered calls without a call record: %r" % missing[:10]


# ---- sync modes, mode, refusing to start ---------------------------------------------------------


@pytest.mark.parametrize("sync", ["always", "batch", "none"])
def test_every_sync_mode_writes_records_to_a_private_file(make_daemon, tmp_path, sync):
    path = tmp_path / "audit.jsonl"
    d = _daemon(make_daemon, path, sync=sync)
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": sync}, rid=1)) == sync
    result = wait_record(path, event="result", session=c.sid, request_id=1)
    assert result["outcome"] == "ok"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    check_chain(raw_lines(path)[0])


def test_audit_path_in_a_missing_directory_refuses_to_start(make_daemon, tmp_path):
    path = tmp_path / "no-such-dir" / "audit.jsonl"
    d = _daemon(make_daemon, path, start=False)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    p = subprocess.run([MCPVISOR, "run", "-c", d.config_path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, cwd=str(d.dir), env=env)
    assert p.returncode != 0, p.stderr
    assert str(path) in p.stderr, p.stderr
    assert "msg=ready" not in p.stderr, p.stderr
    assert not any(s in p.stderr for s in SANITIZER_MARKERS), p.stderr
