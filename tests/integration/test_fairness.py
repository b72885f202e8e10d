"""One tenant at its ceilings never changes another tenant's admission: per-tenant session
ceilings (limits.max_sessions_per_tenant, a tenant's max_sessions), a server's
pool.max_per_tenant, children starting at once; and a burst of initialize requests from one key
is back-pressure, never the end of the daemon."""
import json
from concurrent.futures import ThreadPoolExecutor

from conftest import (ACCEPT_BOTH, KEYS, LATEST, McpClient, base_config, default_manifests,
                      manifest, pid_alive, tool_text, wait_for)

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}


def _init(d, key="alice", server="ts"):
    return d.request("POST", "/servers/%s/mcp" % server, INIT, key=key)


def _assert_refused(r, status, says):
    assert r.status == status, r
    assert r.header("Retry-After") is not None and int(r.header("Retry-After")) >= 1, r
    err = r.json()["error"]
    assert err["code"] == (-32013 if status == 429 else -32015), err
    assert says in err["message"], err


def _other_tenant_works(d, server="ts"):
    c = McpClient(d, server=server, key="carol")  # tenant "other"
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "still here"})) == "still here"
    c.delete()


def test_tenant_session_ceiling(make_daemon):
    d = make_daemon(limits={"max_sessions_per_tenant": 2})
    held = [McpClient(d), McpClient(d, key="bob")]  # two users, one tenant (acme)
    for c in held:
        c.initialize()
    r = _init(d)
    _assert_refused(r, 429, "limits.max_sessions_per_tenant")
    assert "acme" in r.json()["error"]["message"]
    _other_tenant_works(d)
    held[0].delete()
    wait_for(lambda: _init(d).status == 200, 5, what="a session slot freed")


def test_tenant_max_sessions_overrides_the_default(make_daemon):
    cfg = base_config()
    cfg["tenants"]["acme"]["max_sessions"] = 1
    d = make_daemon(config=cfg)
    McpClient(d).initialize()
    _assert_refused(_init(d, key="bob"), 429, "max_sessions")
    _other_tenant_works(d)


def test_pool_max_per_tenant_bounds_children_of_one_server(make_daemon):
    m = default_manifests()
    m["ts"] = manifest("ts", pool={"max_per_tenant": 2})
    cfg = base_config()
    cfg["tenants"]["acme"]["servers"].append("ts2")
    d = make_daemon(config=cfg, manifests=m)
    for _ in range(2):
        McpClient(d).initialize()
    r = _init(d)
    _assert_refused(r, 429, "pool.max_per_tenant")
    assert len(d.spawned_pids()) == 2
    # another server for the same tenant, and the same server for another tenant, still start
    c = McpClient(d, server="ts2")
    c.initialize()
    _other_tenant_works(d)


def test_burst_of_initialize_from_one_key_is_back_pressure(make_daemon):
    """300 simultaneous initialize requests from one key: each is answered (200, or 429/503 with
    Retry-After), the daemon lives, and another tenant is served right after. The spawn ceilings
    are lifted so that the burst reaches the spawner's channel faster than it drains it; the
    server crashes at start, so the burst's children do not outlive it."""
    d = make_daemon(limits={"max_connections_per_address": 1000, "max_connections": 1000,
                            "max_sessions_per_tenant": 1000, "max_spawns_in_flight": 4096,
                            "max_spawns_in_flight_per_tenant": 4096},
                    manifests=dict(default_manifests(),
                                   crashy=manifest("crashy", ["--crash-on-start"],
                                                   pool={"max_per_tenant": 1024})))
    front = d.front_pid

    def one(_):
        try:
            r = _init(d, server="crashy")
            return r.status, r.header("Retry-After")
        except OSError as e:  # a refusal of the connection itself would be a finding too
            return repr(e), None

    with ThreadPoolExecutor(max_workers=300) as pool:
        results = list(pool.map(one, range(300)))
    statuses = [s for s, _ in results]
    assert all(s in (200, 429, 503) for s in statuses), statuses
    assert all(ra is not None for s, ra in results if s in (429, 503)), results
    assert pid_alive(front), d.log
    assert d.log_lines("level=error") == [], d.log_lines("level=error")
    _other_tenant_works(d)


def test_spawns_in_flight_are_bounded_per_tenant(make_daemon):
    """Children that have not answered initialize yet count as starting; a tenant with
    max_spawns_in_flight_per_tenant of them gets 429 for more, at once and without a spawn."""
    d = make_daemon(limits={"max_spawns_in_flight_per_tenant": 2, "spawn_timeout_ms": 3000},
                    manifests=dict(default_manifests(),
                                   ts=manifest("ts", ["--no-init"])))

    def one(_):
        r = _init(d)
        return r.status, (r.json().get("error") or {}).get("message", "")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(6)))
    refused = [m for s, m in results if s == 429]
    assert len(refused) == 4, results
    assert all("limits.max_spawns_in_flight_per_tenant" in m for m in refused), results
    assert len(d.spawned_pids()) == 2
    _other_tenant_works(d, server="ts2")


def _refused_while_busy(pool, calls, busy, probe, ms, what):
    """Keeps busy[i] with a slow call in flight in calls[i] (submitted again when one was
    refused because the probe's own call held the last slot) until the probe's echo is
    refused; returns the probe's JSON-RPC error."""
    def refused():
        for i, c in enumerate(busy):
            if i >= len(calls):
                calls.append(pool.submit(c.call_tool, "slow", {"ms": ms}))
            elif calls[i].done():
                calls[i] = pool.submit(c.call_tool, "slow", {"ms": ms})
        m = probe.call_tool("echo", {"text": "p"})
        return "error" in m and m
    return wait_for(refused, 10, interval=0.05, what=what)["error"]


def test_requests_in_flight_are_capped_per_principal_and_per_tenant(make_daemon):
    """One user's requests in flight over all its sessions are bounded
    (limits.max_requests_in_flight_per_principal), then its tenant's
    (limits.max_requests_in_flight_per_tenant); another tenant is not affected, and the slots
    come back when the calls end."""
    d = make_daemon(limits={"max_requests_in_flight_per_principal": 2,
                            "max_requests_in_flight_per_tenant": 3})
    slow = [McpClient(d) for _ in range(2)] + [McpClient(d, key="bob")]
    probe, bob_probe = McpClient(d), McpClient(d, key="bob")
    for c in slow + [probe, bob_probe]:
        c.initialize()
    with ThreadPoolExecutor(3) as pool:
        calls = []
        err = _refused_while_busy(pool, calls, slow[:2], probe, 4000, "alice at her ceiling")
        assert err["code"] == -32013, err
        assert "max_requests_in_flight_per_principal" in err["message"], err
        # bob, same tenant: one more fits the tenant's 3, then the tenant is full
        err = _refused_while_busy(pool, calls, slow, bob_probe, 4000, "acme at its ceiling")
        assert err["code"] == -32013, err
        assert "max_requests_in_flight_per_tenant" in err["message"], err
        _other_tenant_works(d)
        for f in calls:
            assert "result" in f.result(timeout=20), f.result()
    assert tool_text(probe.call_tool("echo", {"text": "back"})) == "back"
    assert tool_text(bob_probe.call_tool("echo", {"text": "back"})) == "back"


def test_spawn_rate_per_tenant_and_in_all(make_daemon):
    """A tenant starting servers faster than limits.spawns_per_minute_per_tenant gets 429 while
    another tenant still starts; limits.spawns_per_minute bounds every tenant together (503)."""
    d = make_daemon(limits={"spawns_per_minute_per_tenant": 12, "spawns_per_minute": 60})
    assert _init(d).status == 200
    assert _init(d, key="bob").status == 200  # a burst of a sixth: 2
    r = _init(d)
    _assert_refused(r, 429, "limits.spawns_per_minute_per_tenant")
    _other_tenant_works(d)

    d = make_daemon(limits={"spawns_per_minute": 6})
    assert _init(d).status == 200
    _assert_refused(_init(d, key="carol"), 503, "limits.spawns_per_minute")


def test_a_tenant_overrides_its_requests_in_flight(make_daemon):
    cfg = base_config()
    cfg["tenants"]["acme"]["max_requests_in_flight"] = 1
    d = make_daemon(config=cfg)
    busy, probe = McpClient(d), McpClient(d, key="bob")
    busy.initialize()
    probe.initialize()
    with ThreadPoolExecutor(1) as pool:
        err = _refused_while_busy(pool, [], [busy], probe, 3000, "acme at its own ceiling")
        assert err["code"] == -32013, err
        assert "the tenant's max_requests_in_flight" in err["message"], err
        _other_tenant_works(d)


def test_principal_session_ceiling(make_daemon):
    """One user at limits.max_sessions_per_principal: 429 for that user, while another user of
    the same tenant still starts sessions."""
    d = make_daemon(limits={"max_sessions_per_principal": 2})
    for _ in range(2):
        McpClient(d).initialize()
    _assert_refused(_init(d), 429, "limits.max_sessions_per_principal")
    assert _init(d, key="bob").status == 200
