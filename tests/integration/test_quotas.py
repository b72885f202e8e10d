"""
Per-tool quotas (a manifest tool's "quota") and the per-principal HTTP ceiling
(limits.principal_rate / principal_burst).

A tools/call is counted against a tenant bucket (rate and burst × the tenant's quota_scale) and a
user bucket (the manifest's numbers as written); both must admit it. A refusal is JSON-RPC error
-32013 with data.type "quota_exceeded", data.tool and, when waiting helps, data.retry_after_ms.
A refused call never reaches the child: the tests prove it with the test server's `typed_calls`
counter or with its in-order answers (a forwarded `slow` call would hold up the next echo).
"""
import json
import threading
import time

from conftest import (McpClient, default_manifests, manifest, sha256_hex, tool_text, wait_for)

# A third user of tenant acme, for the tenant bucket (conftest's keys have two: alice and bob).
DAVE_KEY = "mcpv_test_dave_0123456789abcdefghijklmnopqr"


def _tenants(scale=None):
    acme = {"servers": ["ts", "crashy"]}
    if scale is not None:
        acme["quota_scale"] = scale
    return {"acme": acme, "other": {"servers": ["ts", "ts2"]}}


def _daemon(make_daemon, tools, scale=None, limits=None, extra_keys=(), **config_keys):
    """A daemon whose ts manifest gives `tools` (name → tool object, e.g. with a quota)."""
    ms = default_manifests()
    ms["ts"] = manifest("ts", tools=tools)
    d = make_daemon(manifests=ms, limits=limits, tenants=_tenants(scale), start=False,
                    **config_keys)
    if extra_keys:
        path = d.dir / "api-keys.json"
        doc = json.loads(path.read_text())
        for key, tenant, user in extra_keys:
            doc["keys"].append({"sha256": sha256_hex(key), "tenant": tenant, "user": user,
                                "scopes": []})
        path.write_text(json.dumps(doc))
    return d.start()


def _session(d, key="alice"):
    c = McpClient(d, key=key)
    c.initialize()
    return c


def _typed_calls(c):
    return int(tool_text(c.call_tool("typed_calls")))


def _quota_error(msg, tool):
    """The error of a quota refusal of `tool`, checked for its code, type and tool."""
    assert "error" in msg, "expected a quota refusal, got %r" % (msg,)
    err = msg["error"]
    assert err["code"] == -32013, err
    assert err["data"]["type"] == "quota_exceeded", err
    assert err["data"]["tool"] == tool, err
    return err


# ---- rates ---------------------------------------------------------------------------------------


def test_rate_and_burst_refuse_with_a_retry_hint_then_admit_again(make_daemon):
    d = _daemon(make_daemon, {"typed": {"quota": {"rate": "1/s", "burst": 2}}})
    c = _session(d)
    assert "result" in c.call_tool("typed", {"count": 1})
    assert "result" in c.call_tool("typed", {"count": 2})
    err = _quota_error(c.call_tool("typed", {"count": 3}), "typed")
    retry = err["data"]["retry_after_ms"]
    assert isinstance(retry, int) and 0 < retry <= 1000, err
    # the refused call never reached the server
    assert _typed_calls(c) == 2

    # the server's own hint: after that long a token is there again
    time.sleep(retry / 1000.0)
    deadline = time.monotonic() + 3.0
    while True:
        m = c.call_tool("typed", {"count": 4})
        if "result" in m:
            break
        _quota_error(m, "typed")
        assert time.monotonic() < deadline, "still refused 3 s after retry_after_ms: %r" % (m,)
        time.sleep(0.05)
    assert _typed_calls(c) == 3


def test_user_buckets_inside_a_scaled_tenant_bucket(make_daemon):
    """quota_scale 2: the tenant bucket holds 2 calls a minute, each user's bucket 1."""
    d = _daemon(make_daemon, {"echo": {"quota": {"rate": "1/min", "burst": 1}}}, scale=2.0,
                extra_keys=[(DAVE_KEY, "acme", "dave")])
    alice, bob, dave = _session(d, "alice"), _session(d, "bob"), _session(d, DAVE_KEY)
    carol = _session(d, "carol")  # tenant other: buckets of its own

    assert tool_text(alice.call_tool("echo", {"text": "a1"})) == "a1"
    err = _quota_error(alice.call_tool("echo", {"text": "a2"}), "echo")
    assert "user rate limit" in err["message"], err
    assert 40000 < err["data"]["retry_after_ms"] <= 60000, err

    # alice's refusal took nothing from the tenant bucket: bob gets the tenant's second token
    assert tool_text(bob.call_tool("echo", {"text": "b1"})) == "b1"
    # now the tenant bucket is empty, though dave's own bucket is full
    err = _quota_error(dave.call_tool("echo", {"text": "d1"}), "echo")
    assert "tenant rate limit" in err["message"], err
    assert 0 < err["data"]["retry_after_ms"] <= 30000, err

    # another tenant is not affected
    assert tool_text(carol.call_tool("echo", {"text": "c1"})) == "c1"


# ---- concurrency ---------------------------------------------------------------------------------


def _audit_records(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.endswith("\n")]
    except FileNotFoundError:
        return []


def test_concurrency_limit_refuses_while_a_call_is_in_flight(make_daemon, tmp_path):
    # The audit log (a call record is written just before the call is forwarded) tells when the
    # first call holds its slot.
    audit = str(tmp_path / "audit.jsonl")
    d = _daemon(make_daemon, {"slow": {"quota": {"concurrency": 1}}},
                audit={"path": audit, "sync": "none"})
    a = _session(d, "alice")
    b = _session(d, "bob")  # another user of the same tenant: the limit is the tenant's
    assert tool_text(a.call_tool("echo", {"text": "warm"})) == "warm"

    out = {}

    def first():
        out["msg"] = a.call_tool("slow", {"ms": 3000}, rid="first")

    t = threading.Thread(target=first, daemon=True)
    t.start()
    try:
        wait_for(lambda: any(r.get("event") == "call" and r.get("session") == a.sid
                             and r.get("tool") == "slow" and r.get("forwarded") is not False
                             for r in _audit_records(audit)),
                 timeout=5, what="the first slow call to be forwarded")
        err = _quota_error(b.call_tool("slow", {"ms": 10}), "slow")
        assert "concurrency" in err["message"], err
        assert t.is_alive(), "the first call ended before the second was refused"
    finally:
        t.join(15)
    assert tool_text(out["msg"]) == "slept 3000"
    # the slot is free again
    assert tool_text(b.call_tool("slow", {"ms": 10})) == "slept 10"


# ---- timeout -------------------------------------------------------------------------------------


def test_tool_timeout_answers_timeout_and_cancels_the_call(make_daemon):
    d = _daemon(make_daemon, {"slow": {"quota": {"timeout_ms": 500}}},
                limits={"request_timeout_ms": 20000})
    c = _session(d)
    mark = d.mark()
    t0 = time.monotonic()
    m = c.call_tool("slow", {"ms": 5000})
    took = time.monotonic() - t0
    assert "error" in m, m
    err = m["error"]
    assert err["code"] == -32001 and err["data"]["type"] == "timeout", err
    assert "timed out after 500 ms" in err["message"], err
    assert 0.4 <= took < 4.0, took
    # the child was told: the test server logs notifications/cancelled on stderr once its sleep
    # is over and it reads its input again
    d.wait_log(r"cancelled requestId=", timeout=10, start=mark)


# ---- sizes ---------------------------------------------------------------------------------------


def test_max_args_bytes_refuses_large_arguments_before_the_server(make_daemon):
    q = {"quota": {"max_args_bytes": 64}}
    d = _daemon(make_daemon, {"echo": q, "slow": q})
    c = _session(d)
    err = _quota_error(c.call_tool("echo", {"text": "x" * 200}), "echo")
    assert "max_args_bytes" in err["message"], err
    assert tool_text(c.call_tool("echo", {"text": "ok"})) == "ok"

    # never forwarded: the test server answers in order, so a forwarded 4 s sleep would hold up
    # the echo after it
    _quota_error(c.call_tool("slow", {"ms": 4000, "pad": "y" * 200}), "slow")
    t0 = time.monotonic()
    assert tool_text(c.call_tool("echo", {"text": "fast"})) == "fast"
    assert time.monotonic() - t0 < 2.0


def test_max_args_bytes_bounds_what_the_server_receives(make_daemon):
    # Padding inside the arguments is not in their canonical form, which the bound measures: the
    # server gets that canonical form, not the caller's padded bytes.
    d = _daemon(make_daemon, {"line_bytes": {"quota": {"max_args_bytes": 64}}})
    c = _session(d)
    body = ('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"line_bytes",'
            '"arguments":{"a":1' + " " * 200000 + '}}}')
    r = d.request("POST", c.path, body.encode(), c.headers({"Content-Type": "application/json"}),
                  key=c.key)
    assert r.status == 200, r
    got = int(tool_text(c.parse(r)))
    assert got < 400, got  # the line, canonical arguments {"a":1} included, not 200 kB


def test_max_result_bytes_refuses_the_whole_result(make_daemon):
    d = _daemon(make_daemon, {"huge": {"quota": {"max_result_bytes": 1000}}})
    c = _session(d)
    r = c.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "huge", "arguments": {"bytes": 5000}}})
    assert r.status == 200, r
    assert b"xxxxxxxxxx" not in r.body  # the payload is not passed through, not even in part
    _quota_error(c.parse(r), "huge")
    assert tool_text(c.call_tool("huge", {"bytes": 100})) == "x" * 100
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


# ---- per-principal HTTP ceiling ------------------------------------------------------------------


def _ping(d, key):
    """One HTTP request of `key` (a ping without a session: 400, unless the ceiling refuses)."""
    return d.request("POST", "/servers/ts/mcp", {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                     key=key)


def test_principal_ceiling_answers_429_with_retry_after(make_daemon):
    d = make_daemon(limits={"principal_rate": "2/s", "principal_burst": 3})
    t0 = time.monotonic()
    replies = []
    while len(replies) < 8 and not any(r.status == 429 for r in replies):
        replies.append(_ping(d, "alice"))
    burst_s = time.monotonic() - t0
    statuses = [r.status for r in replies]
    assert statuses[:3] == [400, 400, 400], statuses  # the burst
    assert 429 in statuses, statuses
    if burst_s < 0.45:  # no token could have come back yet: the 4th is the one refused
        assert statuses.index(429) == 3, (statuses, burst_s)
    refused = replies[-1]
    retry_after = refused.header("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, refused
    err = refused.json()["error"]
    assert err["code"] == -32013 and err["data"]["type"] == "quota_exceeded", err

    # another user is not affected (initialize, initialized, a call: three requests)
    b = _session(d, "bob")
    assert tool_text(b.call_tool("echo", {"text": "bob"})) == "bob"

    # after Retry-After seconds alice passes again
    time.sleep(int(retry_after))
    wait_for(lambda: _ping(d, "alice").status == 400, timeout=3,
             what="alice's requests to pass after Retry-After")
