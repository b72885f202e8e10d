"""Legacy HTTP+SSE transport (2024-11-05) at /servers/{s}/sse and /servers/{s}/messages."""
import re

from conftest import SSEReader, pid_alive, tool_text, wait_for


class LegacyClient:
    def __init__(self, daemon, server="ts", key="alice"):
        self.d = daemon
        self.key = key
        self.server = server
        self.conn = daemon.conn(10)
        self.resp = daemon.open(self.conn, "GET", "/servers/%s/sse" % server, None,
                                {"Accept": "text/event-stream"}, key=key)
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.getheader("Content-Type").startswith("text/event-stream")
        self.sse = SSEReader(self.resp)
        ev = self.sse.next()
        assert ev.event == "endpoint", ev
        self.endpoint = ev.data
        m = re.fullmatch(r"/servers/%s/messages\?sessionId=([0-9a-f]+)" % server, self.endpoint)
        assert m, self.endpoint
        self.sid = m.group(1)

    def send(self, msg, key=None):
        return self.d.request("POST", self.endpoint, msg, key=self.key if key is None else key)

    def next_message(self):
        while True:
            ev = self.sse.next()
            assert ev is not None, "SSE stream ended"
            if ev.data:
                assert ev.event == "message", ev
                return ev.json()

    def rpc(self, rid, method, params=None):
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        r = self.send(msg)
        assert r.status == 202, r
        while True:
            m = self.next_message()
            if m.get("id") == rid and ("result" in m or "error" in m):
                return m

    def initialize(self):
        m = self.rpc(0, "initialize", {"protocolVersion": "2024-11-05", "capabilities": {},
                                       "clientInfo": {"name": "legacy", "version": "1"}})
        assert m["result"]["protocolVersion"] == "2024-11-05", m
        assert self.send({"jsonrpc": "2.0", "method": "notifications/initialized"}).status == 202
        return m

    def close(self):
        self.conn.close()


def test_legacy_full_flow(daemon):
    c = LegacyClient(daemon)
    c.initialize()
    tools = c.rpc(1, "tools/list")["result"]["tools"]
    assert "echo" in {t["name"] for t in tools}
    assert tool_text(c.rpc("two", "tools/call", {"name": "echo", "arguments": {"text": "old"}})) == "old"
    assert tool_text(c.rpc(3, "tools/call", {"name": "add", "arguments": {"a": 40, "b": 2}})) == "42"
    c.close()


def test_legacy_progress_and_sampling(daemon):
    c = LegacyClient(daemon)
    c.initialize()
    r = c.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "progress", "arguments": {"steps": 2},
                           "_meta": {"progressToken": "lp"}}})
    assert r.status == 202
    got = [c.next_message() for _ in range(3)]
    assert [g["params"]["progress"] for g in got[:2]] == [1, 2]
    assert got[2]["id"] == 5 and tool_text(got[2]) == "done 2"

    assert c.send({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                   "params": {"name": "sample", "arguments": {"prompt": "hi"}}}).status == 202
    req = c.next_message()
    assert req["method"] == "sampling/createMessage"
    assert c.send({"jsonrpc": "2.0", "id": req["id"],
                   "result": {"role": "assistant", "model": "m",
                              "content": {"type": "text", "text": "legacy"}}}).status == 202
    m = c.next_message()
    assert m["id"] == 6 and tool_text(m) == "sampled: legacy"
    c.close()


def test_legacy_no_session_header(daemon):
    c = LegacyClient(daemon)
    assert c.resp.getheader("Mcp-Session-Id") is None
    c.close()


def test_legacy_messages_refusals(daemon):
    c = LegacyClient(daemon)
    c.initialize()
    msg = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    # unknown session
    assert daemon.request("POST", "/servers/ts/messages?sessionId=" + "0" * 32, msg).status == 404
    # missing session
    assert daemon.request("POST", "/servers/ts/messages", msg).status == 400
    # another principal, same tenant and another tenant
    assert c.send(msg, key="bob").status == 404
    assert c.send(msg, key="carol").status == 404
    # a Streamable HTTP client cannot use the legacy session id
    r = daemon.request("POST", "/servers/ts/mcp", msg, {"Mcp-Session-Id": c.sid})
    assert r.status == 404, r
    # wrong content type, bad JSON
    r = daemon.request("POST", c.endpoint, '{"x":1}', {"Content-Type": "text/plain"})
    assert r.status == 415, r
    r = daemon.request("POST", c.endpoint, "{oops", {"Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.json()["error"]["code"] == -32700
    # the session still works for its owner
    assert "result" in c.rpc(2, "tools/list")
    c.close()


def test_legacy_closing_stream_ends_session_and_child(daemon):
    c = LegacyClient(daemon)
    c.initialize()
    pid = daemon.spawned_pids()[-1]
    assert pid_alive(pid)
    c.close()
    wait_for(lambda: not pid_alive(pid), 5, what="child to exit")
    msg = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    wait_for(lambda: daemon.request("POST", c.endpoint, msg).status == 404, 5,
             what="session to be gone")


def test_legacy_sse_wrong_accept_406(daemon):
    r = daemon.request("GET", "/servers/ts/sse", None, {"Accept": "application/json"})
    assert r.status == 406, r
    assert daemon.log_lines("msg=spawned") == []
