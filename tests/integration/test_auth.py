"""Authentication, tenants, Origin and Host checks."""
import http.client
import json

from conftest import KEYS, LATEST, McpClient, base_config, tool_text

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}


def _www_bearer(r):
    h = r.header("WWW-Authenticate") or ""
    return h.split(" ")[0].lower() == "bearer"


def test_missing_credentials_401(daemon):
    for method, path in (("POST", "/servers/ts/mcp"), ("GET", "/servers/ts/mcp"),
                         ("DELETE", "/servers/ts/mcp"), ("GET", "/servers/ts/sse"),
                         ("POST", "/servers/ts/messages?sessionId=x")):
        r = daemon.request(method, path, INIT if method == "POST" else None,
                           {"Accept": "application/json, text/event-stream"}, key=None)
        assert r.status == 401, (method, path, r)
        assert _www_bearer(r), r
    # the log reaches the test through a reader thread: wait for it, never just look
    daemon.wait_log(r"msg=auth_failed\b", 5)
    assert daemon.log_lines("msg=spawned") == []


def test_bad_key_401(daemon):
    for auth in ("Bearer mcpv_not_a_real_key", "Bearer ", "Basic YWxpY2U6cHc=",
                 "Bearer " + KEYS["alice"][0] + "x", KEYS["alice"][0]):
        r = daemon.request("POST", "/servers/ts/mcp", INIT, {"Authorization": auth}, key=None)
        assert r.status == 401, (auth, r)
        assert _www_bearer(r), r
        if auth.startswith("Bearer ") and len(auth) > 7:
            assert 'error="invalid_token"' in r.header("WWW-Authenticate"), r
    assert daemon.log_lines("msg=spawned") == []


def test_bearer_scheme_case_insensitive(daemon):
    r = daemon.request("POST", "/servers/ts/mcp", INIT,
                       {"Authorization": "bearer " + KEYS["alice"][0]}, key=None)
    assert r.status == 200, r


def test_401_before_revealing_servers(daemon):
    """An unknown server and a forbidden one look the same as a known one without credentials."""
    for s in ("ts", "ts2", "nosuch"):
        r = daemon.request("POST", "/servers/%s/mcp" % s, INIT, key=None)
        assert r.status == 401, (s, r)


def test_tenant_without_server_403(daemon):
    r = daemon.request("POST", "/servers/ts2/mcp", INIT, key="alice")
    assert r.status == 403, r
    assert daemon.request("GET", "/servers/ts2/sse", None, {"Accept": "text/event-stream"},
                          key="alice").status == 403
    assert daemon.log_lines("msg=spawned") == []
    # the other tenant may use it
    c = McpClient(daemon, server="ts2", key="carol")
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "t2"})) == "t2"


def test_unknown_server_404(daemon):
    for path in ("/servers/nosuch/mcp", "/servers/nosuch/sse", "/servers/ts/other", "/nothing",
                 "/servers/../etc/mcp", "/servers//mcp"):
        r = daemon.request("POST" if path.endswith("mcp") else "GET", path, INIT)
        assert r.status == 404, (path, r)


def test_healthz(daemon):
    r = daemon.request("GET", "/healthz", key=None)
    assert r.status == 200
    assert r.json()["status"] == "ok"


def test_origin_not_allowed_403(make_daemon):
    d = make_daemon(allowed_origins=["https://app.example.com"])
    r = d.request("POST", "/servers/ts/mcp", INIT, {"Origin": "https://evil.example"})
    assert r.status == 403, r
    r = d.request("POST", "/servers/ts/mcp", INIT, {"Origin": "https://app.example.com.evil.example"})
    assert r.status == 403, r
    assert d.log_lines("msg=spawned") == []


def test_origin_allowed_ok(make_daemon):
    d = make_daemon(allowed_origins=["https://app.example.com"])
    r = d.request("POST", "/servers/ts/mcp", INIT, {"Origin": "https://app.example.com"})
    assert r.status == 200, r
    assert r.json()["result"]["protocolVersion"] == LATEST


def test_origin_refused_without_allowed_origins(daemon):
    r = daemon.request("POST", "/servers/ts/mcp", INIT, {"Origin": "http://localhost:1234"})
    assert r.status == 403, r


def test_foreign_host_header_421(daemon):
    """A Host that does not name this server and the port reached is a request meant for
    another server (DNS rebinding, a misrouting proxy): 421, and nothing is started."""
    for host in ("evil.example", "evil.example:%d" % daemon.port, "127.0.0.1:1",
                 "localhost:%d" % (daemon.port + 1), "[::1]:%d" % daemon.port,
                 "127.0.0.2:%d" % daemon.port):
        r = daemon.request("POST", "/servers/ts/mcp", INIT, {"Host": host})
        assert r.status == 421, (host, r)
        assert r.json()["error"]["code"] == -32600, r
        assert "Host" in r.json()["error"]["message"], r
    assert daemon.log_lines("msg=spawned") == []
    for host in ("localhost:%d" % daemon.port, "127.0.0.1:%d" % daemon.port, "localhost",
                 "127.0.0.1", "LOCALHOST:%d" % daemon.port):
        r = daemon.request("POST", "/servers/ts/mcp", INIT, {"Host": host})
        assert r.status == 200, (host, r)


def test_allowed_hosts_and_public_url(make_daemon):
    d = make_daemon(allowed_hosts=["mcp.internal", "other.internal:9000"],
                    public_url="https://mcp.example.com")
    for host in ("mcp.internal", "mcp.internal:%d" % d.port, "other.internal:9000",
                 "mcp.example.com", "MCP.Example.com:443"):
        r = d.request("POST", "/servers/ts/mcp", INIT, {"Host": host})
        assert r.status == 200, (host, r)
    # a name on another port than it is served on, or a name not configured
    for host in ("example.com", "mcp.internal:443", "other.internal",
                 "other.internal:%d" % d.port, "mcp.example.com:%d" % d.port):
        r = d.request("POST", "/servers/ts/mcp", INIT, {"Host": host})
        assert r.status == 421, (host, r)


def test_anonymous_principal_on_loopback(make_daemon):
    cfg = base_config()
    cfg["auth"]["anonymous"] = {"tenant": "acme", "user": "anon", "agent": "conformance",
                                "scopes": []}
    d = make_daemon(config=cfg)
    assert d.log_lines("anonymous_enabled")  # warned at start-up
    c = McpClient(d, key=None)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "anon"})) == "anon"
    # a wrong key is still refused: anonymous is only for requests without credentials
    r = d.request("POST", "/servers/ts/mcp", INIT, {"Authorization": "Bearer wrong"}, key=None)
    assert r.status == 401, r
    # the anonymous principal's session is not another principal's
    r = c.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, key="alice")
    assert r.status == 404, r
    # and still bound by its tenant
    assert d.request("POST", "/servers/ts2/mcp", INIT, key=None).status == 403


def test_api_key_never_reaches_child(daemon):
    c = McpClient(daemon)
    c.initialize()
    key = KEYS["alice"][0]
    env = json.loads(tool_text(c.call_tool("env")))
    argv = json.loads(tool_text(c.call_tool("argv")))
    blob = json.dumps(env) + json.dumps(argv)
    assert key not in blob
    assert "Bearer" not in blob
    assert key not in daemon.log


def test_admin_listener_does_not_serve_mcp(make_daemon):
    d = make_daemon(listen=[{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0", "admin": True}])
    admin = [p for p, a in d.listeners if a]
    assert len(admin) == 1 and admin[0] != d.port
    ac = http.client.HTTPConnection("127.0.0.1", admin[0], timeout=5)
    resp = d.open(ac, "POST", "/servers/ts/mcp", INIT)
    assert resp.status == 404, resp.read()
    ac.close()
    ac = http.client.HTTPConnection("127.0.0.1", admin[0], timeout=5)
    resp = d.open(ac, "GET", "/healthz", key=None)
    assert resp.status == 200, resp.read()
    ac.close()
    assert d.request("POST", "/servers/ts/mcp", INIT).status == 200
