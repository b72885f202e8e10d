"""Bounds: body and header size, connections, sessions, idle expiry, pending requests, child
write buffer, SSE replay buffer."""
import http.client
import json
import time

from conftest import (ACCEPT_BOTH, KEYS, LATEST, McpClient, pid_alive, raw_exchange, tool_text,
                      wait_for)

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}


def _pid(d):
    return wait_for(lambda: d.spawned_pids(), what="a spawned child")[-1]


def test_body_over_max_body_bytes_is_413(make_daemon):
    d = make_daemon(limits={"max_body_bytes": 4096})
    c = McpClient(d)
    c.initialize()
    big = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": "x" * 8000}}}
    text = json.dumps(big)
    r = raw_exchange(d, "POST", "/servers/ts/mcp",
                     c.headers({"Content-Type": "application/json", "Accept": ACCEPT_BOTH,
                                "Content-Length": str(len(text))}))
    assert r.status == 413, r
    # just under the limit is fine
    ok = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
          "params": {"name": "echo", "arguments": {"text": "y" * 3000}}}
    assert tool_text(c.parse(c.post(ok))) == "y" * 3000


def test_body_over_limit_without_session_spawns_nothing(make_daemon):
    d = make_daemon(limits={"max_body_bytes": 1024})
    init = json.loads(json.dumps(INIT))
    init["params"]["clientInfo"]["name"] = "n" * 3000
    r = raw_exchange(d, "POST", "/servers/ts/mcp",
                     {"Content-Type": "application/json", "Accept": ACCEPT_BOTH,
                      "Content-Length": str(len(json.dumps(init)))})
    assert r.status == 413, r
    assert d.log_lines("msg=spawned") == []


def test_headers_over_max_header_bytes_refused(make_daemon):
    d = make_daemon(limits={"max_header_bytes": 2048})
    r = d.request("POST", "/servers/ts/mcp", INIT, {"X-Padding": "p" * 6000})
    assert r.status in (400, 413, 431), r
    assert d.log_lines("msg=spawned") == []
    assert d.request("POST", "/servers/ts/mcp", INIT).status == 200


def _hold(d, n, port=None):
    """n keep-alive connections that each had one /healthz answered: open and counted."""
    held = []
    for _ in range(n):
        c = d.conn(5) if port is None else http.client.HTTPConnection("127.0.0.1", port,
                                                                        timeout=5)
        resp = d.open(c, "GET", "/healthz", key=None)
        assert resp.status == 200
        resp.read()
        held.append(c)
    return held


def test_max_connections(make_daemon):
    d = make_daemon(limits={"max_connections": 2})
    held = _hold(d, 2)
    r = d.request("GET", "/healthz", key=None)
    assert r.status == 503, r
    for c in held:
        c.close()
    wait_for(lambda: d.request("GET", "/healthz", key=None).status == 200, 5,
             what="connections released")


def test_a_listeners_own_connection_ceiling_keeps_room_on_another(make_daemon):
    """A listener's max_connections fills without touching the admin listener's room."""
    d = make_daemon(listen=[{"address": "127.0.0.1:0", "max_connections": 2},
                            {"address": "127.0.0.1:0", "admin": True}])
    admin = next(p for p, a in d.listeners if a)
    held = _hold(d, 2)
    r = d.request("GET", "/healthz", key=None)
    assert r.status == 503, r
    assert "max_connections" in r.json()["error"]["message"], r
    # the admin listener is not counted against the first one's ceiling
    held += _hold(d, 3, port=admin)
    for c in held:
        c.close()
    wait_for(lambda: d.request("GET", "/healthz", key=None).status == 200, 5,
             what="connections released")


def test_max_sessions_503(make_daemon):
    d = make_daemon(limits={"max_sessions": 1})
    a = McpClient(d)
    a.initialize()
    r = d.request("POST", "/servers/ts/mcp", INIT)
    assert r.status == 503, r
    r = d.request("GET", "/servers/ts/sse", None, {"Accept": "text/event-stream"})
    assert r.status == 503, r
    assert len(d.spawned_pids()) == 1
    assert a.delete().status in (200, 204)
    b = McpClient(d)
    b.initialize()  # room again
    assert tool_text(b.call_tool("echo", {"text": "b"})) == "b"


def test_session_idle_expiry_ends_session_and_child(make_daemon):
    d = make_daemon(limits={"session_idle_s": 1})
    c = McpClient(d)
    c.initialize()
    pid = _pid(d)
    # do not poll the session itself: every request would keep it alive
    wait_for(lambda: not pid_alive(pid), 6, what="idle session's child to exit")
    d.wait_log(r"session_idle|session_end .*idle", 2)
    r = c.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert r.status == 404, r


def test_session_activity_defers_idle_expiry(make_daemon):
    d = make_daemon(limits={"session_idle_s": 1})
    c = McpClient(d)
    c.initialize()
    t_end = time.monotonic() + 2.2
    while time.monotonic() < t_end:  # requests every 0.3 s keep it alive past the idle limit
        assert tool_text(c.call_tool("echo", {"text": "k"})) == "k"
        time.sleep(0.3)
    assert d.log_lines("session_idle") == []


def test_pending_request_keeps_session_alive(make_daemon):
    d = make_daemon(limits={"session_idle_s": 1})
    c = McpClient(d)
    c.initialize()
    m = c.call_tool("slow", {"ms": 2300})
    assert tool_text(m) == "slept 2300"


def test_max_pending_per_session(make_daemon):
    d = make_daemon(limits={"max_pending_per_session": 1})
    c = McpClient(d)
    c.initialize()
    conn, resp, sse = c.stream_post({"jsonrpc": "2.0", "id": "held", "method": "tools/call",
                                     "params": {"name": "sample", "arguments": {"prompt": "q"}}})
    req = next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    m = c.call_tool("echo", {"text": "second"}, rid="second")
    assert m["id"] == "second"
    assert m["error"]["code"] == -32013, m
    assert m["error"]["data"]["type"] == "quota_exceeded"
    # the held request still completes, and then there is room again
    assert c.post({"jsonrpc": "2.0", "id": req["id"],
                   "result": {"role": "assistant", "model": "m",
                              "content": {"type": "text", "text": "ok"}}}).status == 202
    _, final = sse.until_response("held")
    assert tool_text(final) == "sampled: ok"
    conn.close()
    assert tool_text(c.call_tool("echo", {"text": "third"})) == "third"


def test_max_child_write_bytes(make_daemon):
    d = make_daemon(limits={"max_child_write_bytes": 2048})
    c = McpClient(d)
    c.initialize()
    m = c.call_tool("echo", {"text": "z" * 4000}, rid="big")
    assert m["id"] == "big"
    assert m["error"]["code"] == -32013, m
    assert m["error"]["data"]["type"] == "quota_exceeded"
    assert tool_text(c.call_tool("echo", {"text": "small"})) == "small"


def test_sse_replay_buffer_is_bounded(make_daemon):
    d = make_daemon(limits={"sse_replay_events": 3})
    c = McpClient(d)
    c.initialize()
    conn, resp, sse = c.stream_post({"jsonrpc": "2.0", "id": "r", "method": "tools/call",
                                     "params": {"name": "progress", "arguments": {"steps": 10},
                                                "_meta": {"progressToken": "t"}}})
    sse.next()
    first = sse.next()
    assert first.json()["params"]["progress"] == 1
    conn.close()
    # The test server answers in order: once this echo is answered, the progress call has
    # finished too, so the resumption below replays a finished stream (no live events).
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"
    c2, resp2, sse2 = c.open_get({"Last-Event-ID": first.id})
    assert resp2.status == 200
    got = []
    ev = sse2.next()
    while ev is not None:
        if ev.data:
            got.append(ev.json())
        ev = sse2.next()
    c2.close()
    # only the newest 3 events were kept: progress 9 and 10 and the answer
    assert len(got) <= 3, got
    assert got[-1]["id"] == "r" and tool_text(got[-1]) == "done 10"
    d.wait_log("sse_replay_gap", 2)


def test_replay_disabled(make_daemon):
    d = make_daemon(limits={"sse_replay_events": 0})
    c = McpClient(d)
    c.initialize()
    conn, resp, sse = c.stream_post({"jsonrpc": "2.0", "id": "r", "method": "tools/call",
                                     "params": {"name": "progress", "arguments": {"steps": 3},
                                                "_meta": {"progressToken": "t"}}})
    sse.next()
    first = sse.next()
    conn.close()
    # Once this echo is answered the progress call has finished (the server answers in order):
    # nothing can arrive live on the resumed stream, and nothing was kept to replay.
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"
    c2, resp2, sse2 = c.open_get({"Last-Event-ID": first.id})
    got = []
    if resp2.status == 200:
        ev = sse2.next()
        while ev is not None:
            if ev.data:
                got.append(ev)
            ev = sse2.next()
    c2.close()
    assert got == []


def _body_of(n):
    base = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": ""}}}
    base["params"]["arguments"]["text"] = "a" * (n - len(json.dumps(base)))
    text = json.dumps(base)
    assert len(text) == n
    return text


def test_body_limit_boundary_and_chunked(make_daemon):
    d = make_daemon(limits={"max_body_bytes": 1024})
    c = McpClient(d)
    c.initialize()
    h = c.headers({"Content-Type": "application/json"})
    assert d.request("POST", "/servers/ts/mcp", _body_of(1024), h).status == 200
    hh = dict(h, Accept=ACCEPT_BOTH)
    r = raw_exchange(d, "POST", "/servers/ts/mcp", dict(hh, **{"Content-Length": "1025"}))
    assert r.status == 413, r
    # a chunked body is bounded the same way: announce a chunk over the limit
    r = raw_exchange(d, "POST", "/servers/ts/mcp", dict(hh, **{"Transfer-Encoding": "chunked"}),
                     b"%x\r\n" % 1100)
    assert r.status == 413, r
    # chunks that add up to more than the limit
    r = raw_exchange(d, "POST", "/servers/ts/mcp", dict(hh, **{"Transfer-Encoding": "chunked"}),
                     b"258\r\n" + b" " * 600 + b"\r\n" + b"258\r\n")
    assert r.status == 413, r
    conn = d.conn(5)
    conn.request("POST", "/servers/ts/mcp",
                 body=iter([b'{"jsonrpc":"2.0",', b'"id":3,"method":"ping"}']),
                 headers=dict(hh, Authorization="Bearer " + KEYS["alice"][0]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read()) == {"jsonrpc": "2.0", "id": 3, "result": {}}
    conn.close()
