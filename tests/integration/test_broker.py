"""The broker between a session and its child: timeouts, crashes, framing, stderr, environment."""
import json
import re
import time

from conftest import (LATEST, McpClient, default_manifests, manifest, pid_alive, tool_text,
                      wait_for)


def _pid(d):
    return wait_for(lambda: d.spawned_pids(), what="a spawned child")[-1]


def test_child_environment_is_exactly_the_manifest_env(make_daemon):
    mans = default_manifests()
    mans["ts"] = manifest("ts", env={"FOO": "bar", "LANG": "C.UTF-8"})
    d = make_daemon(manifests=mans)
    c = McpClient(d)
    c.initialize()
    env = json.loads(tool_text(c.call_tool("env")))
    assert env == {"FOO": "bar", "LANG": "C.UTF-8"}, env


def test_child_environment_does_not_leak_daemon_env(make_daemon):
    d = make_daemon(start=False)
    d.proc_env = {"MCPVISOR_LEAK_CHECK": "secret-value"}
    d.start()
    c = McpClient(d)
    c.initialize()
    env = json.loads(tool_text(c.call_tool("env")))
    assert env == {"FOO": "bar"}, env


def test_child_has_only_stdio_fds(client):
    fds = json.loads(tool_text(client.call_tool("fds")))
    assert fds == [0, 1, 2], fds


def test_child_argv_is_the_manifest_command(make_daemon):
    mans = default_manifests()
    mans["ts"] = manifest("ts", ["--stderr-on-start", "2", "extra arg"])
    d = make_daemon(manifests=mans)
    c = McpClient(d)
    c.initialize()
    argv = json.loads(tool_text(c.call_tool("argv")))
    assert argv[1:] == ["--stderr-on-start", "2", "extra arg"], argv
    # the child's start-up stderr is logged with its labels
    pid = _pid(d)
    d.wait_log(r"msg=child_stderr server=ts tenant=acme pid=%d line=.*startup noise 2" % pid)


def test_request_timeout_cancels_and_answers_32001(make_daemon):
    d = make_daemon(limits={"request_timeout_ms": 300})
    c = McpClient(d)
    c.initialize()
    t0 = time.monotonic()
    m = c.call_tool("slow", {"ms": 1500}, rid="t-1")
    elapsed = time.monotonic() - t0
    assert m["id"] == "t-1"
    assert m["error"]["code"] == -32001, m
    assert m["error"]["data"]["type"] == "timeout", m
    assert elapsed < 1.4, elapsed  # answered at the timeout, not when the child finished
    # the child got notifications/cancelled (it logs it once its sleep is over)
    d.wait_log(r"child_stderr .*cancelled requestId=", 5)
    # the late answer is dropped, and the session goes on
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


def test_client_cancellation_reaches_child(client):
    d = client.d
    c1, r1, sse = client.stream_post({"jsonrpc": "2.0", "id": "c-9", "method": "tools/call",
                                      "params": {"name": "sample", "arguments": {"prompt": "x"}}})
    next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    mark = d.mark()
    r = client.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": "c-9", "reason": "user"}})
    assert r.status == 202, r
    # The child is waiting for the sampling answer and handles notifications meanwhile.
    m = d.wait_log(r"child_stderr .*cancelled requestId=(\S+)", 5, start=mark)
    assert m.group(1) != "c-9"  # the child sees the broker's id, not the client's
    c1.close()


def test_child_crash_fails_pending_and_ends_session(client):
    d = client.d
    pid = _pid(d)
    m = client.call_tool("crash", rid=11)
    assert m["id"] == 11
    assert m["error"]["code"] == -32015, m
    assert m["error"]["data"]["type"] == "server_unavailable", m
    wait_for(lambda: not pid_alive(pid), 5, what="crashed child reaped")
    d.wait_log(r"child_exited server=ts tenant=acme pid=%d status=3" % pid)
    r = client.post({"jsonrpc": "2.0", "id": 12, "method": "tools/list"})
    assert r.status == 404, r


def test_crash_ends_open_get_stream(client):
    c, resp, sse = client.open_get()
    sse.next()
    m = client.call_tool("crash")
    assert m["error"]["code"] == -32015
    assert sse.next(5) is None  # the stream is closed, not left hanging
    c.close()


def test_crash_on_start_fails_initialize(make_daemon):
    d = make_daemon()
    r = d.request("POST", "/servers/crashy/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "x", "version": "1"}}})
    body = r.json()
    assert "error" in body, r
    assert body["error"]["code"] == -32015, body
    assert body["error"]["data"]["type"] == "server_unavailable"
    sid = r.header("Mcp-Session-Id")
    if sid is not None:
        r2 = d.request("POST", "/servers/crashy/mcp", {"jsonrpc": "2.0", "id": 2, "method": "ping"},
                       {"Mcp-Session-Id": sid})
        assert r2.status == 404, r2


def test_server_that_never_initializes_times_out(make_daemon):
    mans = default_manifests()
    mans["ts"] = manifest("ts", ["--no-init"])
    d = make_daemon(manifests=mans, limits={"spawn_timeout_ms": 500})
    t0 = time.monotonic()
    r = d.request("POST", "/servers/ts/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "x", "version": "1"}}})
    assert time.monotonic() - t0 < 4
    body = r.json()
    assert body["error"]["code"] in (-32001, -32015), body
    pid = _pid(d)
    wait_for(lambda: not pid_alive(pid), 5, what="unresponsive child killed")


def test_exit_after_init(make_daemon):
    mans = default_manifests()
    mans["ts"] = manifest("ts", ["--exit-after-init"])
    d = make_daemon(manifests=mans)
    c = McpClient(d)
    c.initialize(send_initialized=False)
    m = c.call_tool("echo", {"text": "x"})
    assert m["error"]["code"] == -32015, m
    assert m["error"]["data"]["type"] == "server_unavailable"
    wait_for(lambda: c.post({"jsonrpc": "2.0", "id": 99, "method": "ping"}).status == 404, 5,
             what="session ended")


def test_oversized_line_kills_child(make_daemon):
    d = make_daemon(limits={"max_line_bytes": 65536})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    assert len(tool_text(c.call_tool("huge", {"bytes": 60000}))) == 60000  # under the limit
    m = c.call_tool("huge", {"bytes": 300000}, rid="h")
    assert m["id"] == "h"
    assert m["error"]["code"] == -32015, m
    assert m["error"]["data"]["type"] == "server_unavailable"
    d.wait_log(r"child_misbehaving server=ts tenant=acme pid=%d reason=line_too_long" % pid)
    wait_for(lambda: not pid_alive(pid), 5, what="misbehaving child killed")
    assert c.post({"jsonrpc": "2.0", "id": 3, "method": "ping"}).status == 404


def test_oversized_line_much_larger_than_limit(make_daemon):
    # 16 KiB: above the testserver's own tools/list line, so only `huge` passes it
    d = make_daemon(limits={"max_line_bytes": 16384})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    m = c.call_tool("huge", {"bytes": 20 * 1024 * 1024})
    assert m["error"]["code"] == -32015, m
    wait_for(lambda: not pid_alive(pid), 5, what="misbehaving child killed")


def test_malformed_line_is_dropped_and_logged(client):
    d = client.d
    pid = _pid(d)
    m = client.call_tool("malformed", rid="mf")
    assert m["id"] == "mf" and tool_text(m) == "after malformed"
    d.wait_log(r"child_malformed_line server=ts tenant=acme pid=%d .*this is not json" % pid)
    assert pid_alive(pid)
    assert tool_text(client.call_tool("echo", {"text": "still"})) == "still"


def test_stderr_flood_is_rate_limited(make_daemon):
    rate, lines = 50, 20000
    d = make_daemon(limits={"stderr_lines_per_s": rate})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    t0 = time.monotonic()
    m = c.call_tool("stderr_flood", {"lines": lines})
    assert tool_text(m) == "flooded %d" % lines
    logged_rx = r"msg=child_stderr server=ts tenant=acme pid=%d line=\"noise \d+\"" % pid
    supp_rx = r"msg=child_stderr_suppressed server=ts tenant=acme pid=%d lines=(\d+)" % pid
    extra = []

    def counts():
        logged = len(d.log_lines(logged_rx))
        suppressed = sum(int(x) for x in re.findall(supp_rx, d.log))
        return logged, suppressed

    # Every line is eventually either logged or counted in a child_stderr_suppressed report.
    # A later stderr line (once the bucket refilled) carries the report of what came before it.
    def accounted():
        logged, suppressed = counts()
        if logged + suppressed == lines + len(extra):
            return True
        extra.append(1)
        assert tool_text(c.call_tool("stderr_flood", {"lines": 1})) == "flooded 1"
        return False

    wait_for(accounted, 8, interval=0.05, what="every stderr line logged or counted")
    elapsed = time.monotonic() - t0
    logged, suppressed = counts()
    assert suppressed > 0
    assert logged <= rate * elapsed + 100 + len(extra), (logged, elapsed)
    assert logged >= 100  # the burst itself is logged


def test_stderr_suppression_reported_without_more_output(make_daemon):
    """After a flood the child goes quiet: the count of dropped lines must still be logged."""
    d = make_daemon(limits={"stderr_lines_per_s": 50})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    assert tool_text(c.call_tool("stderr_flood", {"lines": 5000})) == "flooded 5000"
    d.wait_log(r"child_stderr_suppressed server=ts tenant=acme pid=%d lines=\d+" % pid, 4)


def test_stderr_suppression_reported_when_child_exits(make_daemon):
    d = make_daemon(limits={"stderr_lines_per_s": 50})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    assert tool_text(c.call_tool("stderr_flood", {"lines": 5000})) == "flooded 5000"
    assert c.delete().status in (200, 204)
    wait_for(lambda: not pid_alive(pid), 5)
    d.wait_log(r"child_stderr_suppressed server=ts tenant=acme pid=%d lines=\d+" % pid, 4)


def test_notification_routing_between_sessions(daemon):
    """One session's server messages never reach another session's streams."""
    a, b = McpClient(daemon), McpClient(daemon)
    a.initialize()
    b.initialize()
    ca, ra, sa = a.open_get()
    cb, rb, sb = b.open_get()
    sa.next()
    sb.next()
    assert tool_text(a.call_tool("notify_after")) == "ok"
    ev = sa.next()
    assert ev.json()["params"]["data"] == "unrelated"
    try:
        extra = sb.next(0.5)
    except AssertionError:
        extra = None  # nothing arrived: as it should
    assert extra is None or not extra.data, extra
    ca.close()
    cb.close()


def test_child_killed_externally_fails_pending(client):
    import os
    import signal
    d = client.d
    pid = _pid(d)
    conn, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": "k", "method": "tools/call",
                                          "params": {"name": "sample", "arguments": {"prompt": "x"}}})
    next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    os.kill(pid, signal.SIGKILL)
    _, final = sse.until_response("k")
    assert final["error"]["code"] == -32015, final
    assert final["error"]["data"]["type"] == "server_unavailable"
    d.wait_log(r"child_exited server=ts tenant=acme pid=%d signal=9" % pid)
    conn.close()
    assert client.post({"jsonrpc": "2.0", "id": 2, "method": "ping"}).status == 404
    # a new session gets a new child
    c2 = McpClient(d)
    c2.initialize()
    assert tool_text(c2.call_tool("echo", {"text": "new"})) == "new"
