"""Attacks on the shared front by one party, each checked from the side of a well-behaved client
of another tenant: it keeps being served within a latency bound while the attack runs, and the
daemon never exits."""
import http.client
import json
import os
import re
import resource
import select
import socket
import subprocess
import time

import pytest

from conftest import (MCPVISOR, McpClient, bearer, default_manifests, manifest, pid_alive,
                      tool_text)

# p99 bound for the bystander; sanitizer builds are several times slower
P99_MS = 1000 if os.environ.get("MCPVISOR_ASAN") else 250


def _p99(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


def _bystander_rounds(d, seconds, between=None):
    """Another tenant's client: /healthz on a fresh connection and a tools/call on its session,
    over and over for `seconds`; returns the latencies in ms. `between` runs after each round
    (the attacker's next move)."""
    c = McpClient(d, key="carol")
    c.initialize()
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        r = d.request("GET", "/healthz", key=None, timeout=5)
        assert r.status == 200, r
        lat.append((time.monotonic() - t0) * 1000)
        t0 = time.monotonic()
        assert tool_text(c.call_tool("echo", {"text": "x"})) == "x"
        lat.append((time.monotonic() - t0) * 1000)
        if between is not None:
            between()
    c.delete()
    return lat


def test_drip_fed_connections_under_a_1024_descriptor_limit(make_daemon):
    """1,100 connections from one address each send half a request head and then one byte now
    and then. The front, held to 1024 descriptors, fits its ceilings to them, caps the attacker's
    address, closes dripping heads at their deadline and keeps serving another address."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1300:
        import pytest
        pytest.skip("the test process cannot hold 1,100 sockets (RLIMIT_NOFILE hard %d)" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    d = make_daemon(nofile=1024, limits={"header_timeout_ms": 3000})
    assert d.log_lines("msg=descriptors_short"), "the ceilings were not fitted to 1024"
    front = d.front_pid
    attackers = []
    try:
        for _ in range(1100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", d.port))
            except BlockingIOError:
                pass
            attackers.append(s)

        def drip(data=b"a"):
            for s in attackers:
                try:
                    s.send(data)
                except OSError:
                    pass

        drip(b"GET /healthz HTTP/1.1\r\nX-Drip: a")
        lat = _bystander_rounds(d, 5.0, between=drip)
    finally:
        for s in attackers:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print("bystander p99_ms=%.1f max_ms=%.1f samples=%d" % (_p99(lat), max(lat), len(lat)))
    assert pid_alive(front), d.log
    assert _p99(lat) < P99_MS, (_p99(lat), len(lat))
    # the dripping heads were cut at their deadline, not kept alive by each byte
    assert d.log_lines("msg=http_refused status=408") or d.log_lines("suppressed_before"), d.log


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _non_reading_flood(d, c, steps=100000):
    """POSTs a tools/call that streams `steps` progress notifications on c's session, on a
    socket that never reads; returns the socket."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "progress", "arguments": {"steps": steps},
                                  "_meta": {"progressToken": "p"}}})
    s = socket.create_connection(("127.0.0.1", d.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
    head = ("POST /servers/ts/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            "Mcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n" % (bearer(c.key), c.sid,
                                                                  len(body)))
    s.sendall(head.encode() + body.encode())
    return s


def _flood_while_another_works(d, clients, dropped, seconds=2.0):
    """Each of clients starts a non-reading flood; another tenant works for `seconds`; waits for
    the log line `dropped` (a stream ended at its ceiling). Checks that the daemon lives and the
    other tenant's p99; returns the front's RSS (kB) before and after."""
    front = d.front_pid
    rss0 = _rss_kb(front)
    socks = [_non_reading_flood(d, c) for c in clients]
    try:
        lat = _bystander_rounds(d, seconds)
        d.wait_log(dropped, timeout=20)
        peak = _rss_kb(front)
    finally:
        for s in socks:
            s.close()
    print("front rss_kb before=%d after=%d bystander p99_ms=%.1f" % (rss0, peak, _p99(lat)))
    assert pid_alive(front)
    assert _p99(lat) < P99_MS, _p99(lat)
    return rss0, peak


def test_a_client_that_does_not_read_cannot_grow_the_front(make_daemon):
    """A tool streams 100,000 progress notifications to a client that reads nothing: the front
    ends that stream at limits.max_stream_buffer_bytes instead of buffering it all, its memory
    stays bounded, and another tenant is served meanwhile."""
    d = make_daemon(limits={"max_stream_buffer_bytes": 65536})
    c = McpClient(d)
    c.initialize()
    rss0, peak = _flood_while_another_works(d, [c], r"msg=stream_dropped")
    if not os.environ.get("MCPVISOR_ASAN"):
        # ASan keeps freed memory in quarantine (256 MB by default): RSS says nothing there,
        # and its leak check covers what this would catch
        assert peak - rss0 < 32 * 1024, (rss0, peak)
    # the session itself lives on: its next call is answered
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


def test_non_reading_clients_together_are_held_to_the_fronts_ceiling(make_daemon):
    """Three clients that read nothing, each under its own connection's ceiling, together pass
    limits.max_buffered_bytes: the stream that would pass it ends, the front's memory stays
    bounded, and another tenant is served meanwhile."""
    d = make_daemon(limits={"max_stream_buffer_bytes": 1 << 20, "max_buffered_bytes": 1 << 20})
    clients = [McpClient(d) for _ in range(3)]
    for c in clients:
        c.initialize()
    rss0, peak = _flood_while_another_works(
        d, clients, r"msg=stream_dropped .*limits\.max_buffered_bytes")
    if not os.environ.get("MCPVISOR_ASAN"):
        assert peak - rss0 < 32 * 1024, (rss0, peak)
    assert tool_text(clients[0].call_tool("echo", {"text": "after"})) == "after"



def _timed_call(c, name, args):
    t0 = time.monotonic()
    msg = c.call_tool(name, args)
    return msg, (time.monotonic() - t0) * 1000


@pytest.mark.parametrize("key,keys", [("max_buffered_bytes_per_principal", ("alice", "alice")),
                                      ("max_buffered_bytes_per_tenant", ("alice", "bob"))])
def test_non_reading_clients_of_one_party_are_held_to_its_ceiling(make_daemon, key, keys):
    """Two clients of one principal (or of two users of one tenant) read nothing: past the
    party's own ceiling its stream ends, while another tenant keeps being served."""
    d = make_daemon(limits={key: 1 << 20})
    clients = [McpClient(d, key=k) for k in keys]
    for c in clients:
        c.initialize()
    _flood_while_another_works(d, clients, r"msg=stream_dropped .*limits\.%s" % key, 1.0)
    assert tool_text(clients[1].call_tool("echo", {"text": "after"})) == "after"


def test_runaway_patterns_in_input_and_output_schemas_are_bounded(make_daemon):
    """A server whose schemas carry a pattern that backtracks without end: a caller's argument
    and the server's own structuredContent are each refused with a typed error within the
    matching limits, and another tenant is served meanwhile."""
    d = make_daemon(manifests=dict(default_manifests(),
                                   ts=manifest("ts", ["--pattern", "^(a+)+$"])))
    c = McpClient(d)
    c.initialize()
    evil = "a" * 3000 + "b"
    lat = []

    def attack():
        msg, ms = _timed_call(c, "match_in", {"s": evil})
        assert msg["error"]["code"] == -32602, msg
        assert "matching limits" in json.dumps(msg["error"]), msg
        lat.append(ms)
        msg, ms = _timed_call(c, "match_out", {"s": evil})
        assert msg["error"]["code"] == -32012, msg
        lat.append(ms)

    others = _bystander_rounds(d, 2.0, between=attack)
    print("attack call max_ms=%.1f bystander p99_ms=%.1f" % (max(lat), _p99(others)))
    assert max(lat) < 2000, lat
    assert _p99(others) < P99_MS + max(lat), _p99(others)
    assert tool_text(c.call_tool("match_in", {"s": "aaa"})) == "aaa"  # the pattern still works


def test_invalid_pattern_in_a_listing_is_refused_at_once(make_daemon):
    """Stacked quantifiers (not ECMA-262; regcomp once spent 45 s on them) in a server's
    listing: the tools are ones mcpvisor cannot validate, hidden under enforce, at once."""
    d = make_daemon(manifests=dict(default_manifests(),
                                   ts=manifest("ts", ["--pattern", "^a" + "+" * 100])))
    c = McpClient(d)
    t0 = time.monotonic()
    c.initialize()
    names = [t["name"] for t in c.request("tools/list")["result"]["tools"]]
    assert time.monotonic() - t0 < 5
    assert "match_in" not in names and "match_out" not in names and "echo" in names, names
    msg = c.call_tool("match_in", {"s": "a"})
    assert msg["error"]["code"] == -32006, msg
    assert tool_text(c.call_tool("echo", {"text": "ok"})) == "ok"


def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_listing_storm_is_held_to_the_childs_budget(make_daemon):
    """A server announces list_changed before every listing and changes 3,000 definitions each
    time. The front lists it less and less often, stops at the child's budget for the minute
    (its tools then get -32015), spends little CPU on it, and another tenant never notices."""
    d = make_daemon(limits={"max_listing_tools": 5000},
                    manifests=dict(default_manifests(),
                                   crashy=manifest("crashy", ["--list-storm", "--generated",
                                                              "3000"])))
    front = d.front_pid
    rss0 = _rss_kb(front)
    # The storm alone, until its budget is spent: what it costs the front.
    cpu0, t0 = _cpu_s(front), time.monotonic()
    first = McpClient(d, server="crashy")
    first.initialize()
    d.wait_log(r"msg=listing_over_budget .*listing_tools_per_minute", timeout=20)
    cpu, wall = _cpu_s(front) - cpu0, time.monotonic() - t0
    err = first.call_tool("echo", {"text": "a"})["error"]
    assert err["code"] == -32015, err
    assert "listing_tools_per_minute" in err["message"], err
    # A second storm (a new child, its own budget) while another tenant works.
    mark = len(d.log_lines())
    second = McpClient(d, server="crashy")
    second.initialize()
    served = []
    lat = _bystander_rounds(d, 5.0, between=lambda: served.append(
        "result" in second.call_tool("echo", {"text": "b"})))
    d.wait_log(r"msg=listing_over_budget", timeout=20, start=mark)
    peak = _rss_kb(front)
    print("storm front cpu_s=%.2f wall_s=%.1f rss_kb before=%d after=%d bystander "
          "p99_ms=%.1f" % (cpu, wall, rss0, peak, _p99(lat)))
    assert pid_alive(front)
    assert any(served), "no call of the storming server was served before its budget ran out"
    assert cpu < (4.0 if os.environ.get("MCPVISOR_ASAN") else 1.0), (cpu, wall)
    if not os.environ.get("MCPVISOR_ASAN"):
        assert peak - rss0 < 256 * 1024, (rss0, peak)
    assert _p99(lat) < P99_MS, _p99(lat)


def test_compiled_schemas_are_capped_per_tenant(make_daemon):
    """Each session of one tenant holds its server's compiled schemas: past the tenant's
    ceiling a new listing is refused (-32015) and logged, while another tenant's listing of the
    same size is accepted."""
    d = make_daemon(limits={"max_listing_schema_nodes": 4000,
                            "max_schema_nodes_per_tenant": 4000},
                    manifests=dict(default_manifests(),
                                   ts=manifest("ts", ["--generated", "500"])))
    first = McpClient(d)
    first.initialize()
    assert tool_text(first.call_tool("echo", {"text": "1"})) == "1"
    second = McpClient(d)
    second.initialize()
    err = second.call_tool("echo", {"text": "2"})["error"]
    assert err["code"] == -32015, err
    assert "max_schema_nodes_per_tenant" in err["message"], err
    d.wait_log(r"msg=listing_over_budget .*tenant=acme")
    other = McpClient(d, key="carol")
    other.initialize()
    assert tool_text(other.call_tool("echo", {"text": "3"})) == "3"
    # the first session keeps its verified tools
    assert tool_text(first.call_tool("echo", {"text": "4"})) == "4"
    # and a session that ends gives its share back
    first.delete()
    third = McpClient(d)
    third.initialize()
    assert tool_text(third.call_tool("echo", {"text": "5"})) == "5"


def test_spawns_while_descriptors_run_short(make_daemon):
    """The front holds 256 descriptors, its ceilings fitted to them (32 connections, 32 sessions):
    idle connections from many addresses and 60 concurrent initialize requests press on them
    while children are spawned. Each spawn is answered (a
    session, or 429/503 with Retry-After), no descriptor is lost, the daemon never exits, and
    another tenant starts a session once the pressure is gone."""
    from concurrent.futures import ThreadPoolExecutor
    d = make_daemon(nofile=256, limits={"spawns_per_minute_per_tenant": 100000,
                                        "spawns_per_minute": 100000})
    assert d.log_lines("msg=descriptors_short"), "the ceilings were not fitted to 256"
    # the children's default of 1024 cannot be given under a hard limit of 256
    assert d.log_lines("msg=sandbox_nofile_lowered server=ts asked=1024 to=256"), d.log
    front = d.front_pid
    idle = []
    for i in range(16):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + i % 8), 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", d.port))
        except BlockingIOError:
            pass
        idle.append(s)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "pytest", "version": "1"}}}

    def one(i):
        try:
            r = d.request("POST", "/servers/ts/mcp", init, key=("alice", "bob")[i % 2])
            return r.status, r.header("Retry-After")
        except OSError as e:
            return repr(e), None

    try:
        with ThreadPoolExecutor(max_workers=60) as pool:
            results = list(pool.map(one, range(60)))
    finally:
        for s in idle:
            s.close()
    statuses = [s for s, _ in results]
    print("statuses", {s: statuses.count(s) for s in set(statuses)})
    assert pid_alive(front), d.log
    assert all(s in (200, 429, 503) for s in statuses), statuses
    assert statuses.count(200) > 0, statuses
    assert all(ra is not None for s, ra in results if s in (429, 503)), results
    assert d.log_lines("level=error") == [], d.log_lines("level=error")
    c = McpClient(d, key="carol")
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


def test_a_log_reader_that_stops_reading_does_not_stall_the_front(make_daemon):
    # The daemon's stderr is a pipe the test also writes to: filled up, every write to it would
    # block. The front's log lines are then dropped and counted, and it keeps answering.
    d = make_daemon(start=False)
    r, w = os.pipe()  # w stays blocking: the daemon's stderr shares its description
    proc = subprocess.Popen([MCPVISOR, "run", "-c", d.config_path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=w, cwd=str(d.dir))
    try:
        buf = b""
        deadline = time.monotonic() + 10
        while b"msg=ready" not in buf:
            assert time.monotonic() < deadline, buf.decode(errors="replace")
            rl, _, _ = select.select([r], [], [], 0.5)
            if rl:
                buf += os.read(r, 65536)
        port = int(re.search(rb"msg=listening address=127\.0\.0\.1:(\d+)", buf).group(1))
        junk = b"x" * 65536
        filled = 0
        fill = os.open("/proc/self/fd/%d" % w, os.O_WRONLY | os.O_NONBLOCK)  # a description of
        try:                                                                 # its own
            while True:  # fill the pipe, whatever size the daemon gave it
                try:
                    filled += os.write(fill, junk)
                except BlockingIOError:
                    break
        finally:
            os.close(fill)
        assert filled > 0
        # each refused request logs a line (auth_failed); none may wait for the reader
        for i in range(50):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/servers/ts/mcp", body="{}",
                      headers={"Authorization": "Bearer nope", "Content-Type": "application/json",
                               "Accept": "application/json, text/event-stream"})
            assert c.getresponse().status == 401, i
            c.close()
        # the reader comes back: the front says how many lines it could not write
        seen = b""
        deadline = time.monotonic() + 10
        os.set_blocking(r, False)
        while b"log_lines_dropped" not in seen:
            assert time.monotonic() < deadline, "no log_lines_dropped line"
            try:
                seen = (seen + os.read(r, 1 << 20))[-(1 << 20):]
            except BlockingIOError:
                time.sleep(0.05)
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/servers/ts/mcp", headers={"Authorization": "Bearer nope"})
                c.getresponse().read()
                c.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(r)
        os.close(w)
