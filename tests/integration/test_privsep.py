"""Privilege separation: the parent (spawner) and the front watch each other; nothing runs
unsupervised; children are started clean."""
import os
import signal
import socket

from conftest import McpClient, default_manifests, manifest, pid_alive, tool_text, wait_for


def _status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _children_with_sessions(d, n=2):
    clients = []
    for _ in range(n):
        c = McpClient(d)
        c.initialize()
        clients.append(c)
    pids = wait_for(lambda: len(d.spawned_pids()) >= n and d.spawned_pids(), what="children")
    for p in pids:
        assert pid_alive(p)
    return clients, pids


def test_front_and_parent_are_distinct_processes(daemon):
    assert daemon.front_pid != daemon.proc.pid
    assert pid_alive(daemon.front_pid)
    st = _status(daemon.front_pid)
    assert int(st["PPid"]) == daemon.proc.pid
    assert st["NoNewPrivs"] == "1"
    assert int(st["CapEff"], 16) == 0, st["CapEff"]
    assert int(st["CapPrm"], 16) == 0, st["CapPrm"]
    if os.geteuid() == 0:
        uids = st["Uid"].split()
        assert "0" not in uids, uids  # the front runs under its own unprivileged user


def test_children_are_spawned_by_the_parent(client):
    pid = client.d.spawned_pids()[-1]
    st = _status(pid)
    assert int(st["PPid"]) == client.d.proc.pid  # the spawner is the children's parent
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    assert int(fields[3]) == pid  # session id: setsid() made it a session leader
    assert int(st["SigBlk"], 16) == 0  # default signal mask
    assert tool_text(client.call_tool("echo", {"text": "x"})) == "x"


def test_sigterm_stops_daemon_and_children(make_daemon):
    d = make_daemon()
    _, pids = _children_with_sessions(d)
    front = d.front_pid
    rc = d.stop(signal.SIGTERM)
    assert rc == 0, d.log
    for p in pids + [front]:
        wait_for(lambda: not pid_alive(p), 5, what="process %d to exit" % p)


def test_sigterm_answers_open_requests(make_daemon):
    d = make_daemon()
    c = McpClient(d)
    c.initialize()
    conn, resp, sse = c.stream_post({"jsonrpc": "2.0", "id": "open", "method": "tools/call",
                                     "params": {"name": "sample", "arguments": {"prompt": "q"}}})
    next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    d.proc.send_signal(signal.SIGTERM)
    # the open exchange is answered (an error) or closed; never left hanging
    try:
        _, final = sse.until_response("open", timeout=12)
        assert "error" in final, final
    except AssertionError as e:
        assert "stream ended" in str(e), e
    conn.close()
    assert d.stop() == 0


def test_killing_the_spawner_stops_front_and_children(make_daemon):
    d = make_daemon()
    _, pids = _children_with_sessions(d)
    front = d.front_pid
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(5)
    for p in pids + [front]:
        wait_for(lambda: not pid_alive(p), 5, what="process %d to exit" % p)
    # the listener is gone with the front
    try:
        d.request("GET", "/healthz", key=None, timeout=2)
        served = True
    except OSError:
        served = False
    assert not served


def test_killing_the_front_stops_parent_and_children(make_daemon):
    d = make_daemon()
    _, pids = _children_with_sessions(d)
    os.kill(d.front_pid, signal.SIGKILL)
    rc = d.proc.wait(10)
    assert rc != 0, rc
    for p in pids:
        wait_for(lambda: not pid_alive(p), 5, what="child %d to exit" % p)
    d.stopped = True


def test_failed_spawn_does_not_kill_the_daemon(make_daemon):
    d = make_daemon()
    for _ in range(3):
        r = d.request("POST", "/servers/crashy/mcp", {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "x", "version": "1"}}})
        assert "error" in r.json(), r
    c = McpClient(d)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "alive"})) == "alive"
    assert d.proc.poll() is None


def test_missing_command_reports_spawn_failure(make_daemon, tmp_path):
    from conftest import default_manifests, manifest
    mans = default_manifests()
    m = manifest("ts")
    m["command"] = [str(tmp_path / "does-not-exist")]
    mans["ts"] = m
    d = make_daemon(manifests=mans)
    r = d.request("POST", "/servers/ts/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "x", "version": "1"}}})
    body = r.json()
    assert body["error"]["code"] == -32015, body
    assert body["error"]["data"]["type"] == "server_unavailable"
    d.wait_log(r"spawn_failed server=ts tenant=acme step=exec", 3)
    assert d.proc.poll() is None


def test_sighup_keeps_serving(client):
    d = client.d
    os.kill(d.proc.pid, signal.SIGHUP)
    d.wait_log("msg=reloaded", 5)
    assert d.proc.poll() is None and pid_alive(d.front_pid)
    assert tool_text(client.call_tool("echo", {"text": "after hup"})) == "after hup"


def _raw_post(d, c, msg):
    """Sends a POST on a raw socket (so the test controls when it reads the answer)."""
    import json as _json
    from conftest import KEYS
    body = _json.dumps(msg).encode()
    head = ("POST /servers/%s/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            "Mcp-Session-Id: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (c.server, KEYS[c.key][0], c.sid, len(body))).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=15)
    s.sendall(head + body)
    return s


def _read_all(s):
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _drain_and_expect_result(d, s, ms):
    """SIGTERM with one call in flight: no new session starts, the call gets its result."""
    mark = d.mark()
    d.proc.send_signal(signal.SIGTERM)
    d.wait_log(r"msg=draining .*requests_in_flight=1", 5, start=mark)
    r = d.request("POST", "/servers/ts/mcp", {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "x", "version": "1"}}})
    assert r.status == 503, r
    assert r.header("Retry-After"), r
    raw = _read_all(s)
    s.close()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert b"slept %d" % ms in raw, raw
    assert b"draining" not in raw, raw
    assert d.stop() == 0


def test_sigterm_drains_in_flight_request(make_daemon):
    d = make_daemon()
    c = McpClient(d)
    c.initialize()
    c.call_tool("echo", {"text": "tools verified"})
    s = _raw_post(d, c, {"jsonrpc": "2.0", "id": "drain", "method": "tools/call",
                         "params": {"name": "slow", "arguments": {"ms": 700}}})
    # the child says it has the call: it was forwarded before SIGTERM
    d.wait_log(r"msg=child_stderr .*slow: sleeping 700 ms", 5)
    _drain_and_expect_result(d, s, 700)


def test_sigterm_answers_a_call_held_for_the_tool_listing(make_daemon):
    """A call taken in while the broker still verifies the child's tools (so it waits, held) was
    accepted before SIGTERM: it is forwarded once the listing is judged, and answered."""
    man = default_manifests()
    man["ts"] = manifest("ts", ["--list-delay", "1500"])
    d = make_daemon(manifests=man, proc_env={"MCPVISOR_LOG_LEVEL": "debug"})
    c = McpClient(d)
    c.initialize()
    s = _raw_post(d, c, {"jsonrpc": "2.0", "id": "held", "method": "tools/call",
                         "params": {"name": "slow", "arguments": {"ms": 100}}})
    d.wait_log(r"msg=tool_request_held ", 5)
    _drain_and_expect_result(d, s, 100)


def test_drain_accepts_answers_to_server_requests(make_daemon):
    """A request in flight during the drain may need the client (sampling): its answer must get in."""
    d = make_daemon()
    c = McpClient(d)
    c.initialize()
    conn, resp, sse = c.stream_post({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
                                     "params": {"name": "sample", "arguments": {"prompt": "q"}}})
    req = next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    d.proc.send_signal(signal.SIGTERM)
    d.wait_log(r"msg=draining .*requests_in_flight=1", 5)
    r = c.post({"jsonrpc": "2.0", "id": req["id"],
                "result": {"role": "assistant", "model": "m",
                           "content": {"type": "text", "text": "in time"}}})
    assert r.status == 202, r
    _, final = sse.until_response("s")
    assert tool_text(final) == "sampled: in time"
    conn.close()
    assert d.stop() == 0
