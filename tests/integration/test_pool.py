"""Child pools: a manifest's `isolation` ("session", "tenant", "shared") and `pool` keys.

With "tenant" a tenant's sessions of a server share children, never across tenants; with
"shared" one child serves every tenant allowed the server, and each forwarded request carries
the caller's verified principal in params._meta["io.mcpvisor/principal"]. Either way the broker
rewrites JSON-RPC ids, progress tokens and server-to-client request ids per session, so no
session ever sees another's messages.

Children are told apart by the testserver's `whoami`: its `instance` is random per process
(`pid` is the same in every child, each having a pid namespace of its own). A child's host pid is
found through its pid namespace: the testserver process whose /proc/<pid>/ns/pid is the one
whoami reports. Each manifest carries a unique marker argument (ignored by the testserver), so
/proc tells which testserver processes belong to which server of which test.

Started as root, the tenants get uids of their own (acme 61001, other 61002) so a child's uid
shows whose it is; as an ordinary user the uids are left to mcpvisor.
"""
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (ACCEPT_BOTH, KEYS, LATEST, MCPVISOR, TESTSERVER, McpClient, SSEReader,
                      bearer, manifest, pid_alive, sse_data, tool_text, wait_for,
                      world_readable_dir)

ROOT = os.geteuid() == 0
UID_A, GID_A = 61001, 61001
UID_B, GID_B = 61002, 61002
TENANT_OF = {who: rec[1] for who, rec in KEYS.items()}


# ---- configuration ----------------------------------------------------------------------------


def pooled(name, isolation, pool=None, args=(), **extra):
    """A testserver manifest with the given isolation and pool, and a marker argument unique to
    this manifest (find its processes with procs(m))."""
    mark = "pool-mark=%s-%s" % (name, uuid.uuid4().hex[:12])
    m = manifest(name, list(args) + [mark], isolation=isolation, **extra)
    if pool is not None:
        m["pool"] = pool
    if isolation == "shared":
        m.setdefault("reads_principal_meta", True)
    if m.get("reads_principal_meta", False) is None:
        del m["reads_principal_meta"]
    m["_mark"] = mark
    return m


def start(make_daemon, manifests, acme=None, other=None, limits=None, run=True):
    """A daemon serving manifests (a list); acme and other name the servers each tenant may use
    (default: every one). With run=False its files are written but it is not started."""
    names = [m["name"] for m in manifests]
    tenants = {"acme": {"servers": names if acme is None else acme},
               "other": {"servers": names if other is None else other}}
    if ROOT:
        tenants["acme"].update(uid=UID_A, gid=GID_A)
        tenants["other"].update(uid=UID_B, gid=GID_B)
    mans = {}
    for m in manifests:
        m = dict(m)
        m.pop("_mark", None)
        mans[m["name"]] = m
    return make_daemon(manifests=mans, tenants=tenants, limits=limits, start=run)


# ---- children -------------------------------------------------------------------------------


def procs(m):
    """Host pids of the live testserver processes of manifest m."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].decode(errors="replace") == TESTSERVER and m["_mark"].encode() in argv:
            if pid_alive(int(p)):
                out.append(int(p))
    return sorted(out)


def host_pid(m, w):
    """The host pid of the child whoami answer w came from (None if it is gone)."""
    if w.get("pidns") is None or w["pidns"] == os.readlink("/proc/self/ns/pid"):
        return w["pid"]  # no pid namespace of its own: the pid is the host's
    for p in procs(m):
        try:
            if os.readlink("/proc/%d/ns/pid" % p) == w["pidns"]:
                return p
        except OSError:
            continue
    return None


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def spawned_tenant(d, server, pid):
    """The tenant the daemon logged for the spawn of the sandbox holding host pid `pid` (the
    spawn log names the sandbox's init, the testserver's parent), or None."""
    for p in (pid, ppid(pid)):
        m = re.search(r"msg=spawned server=%s tenant=(\S+) pid=%d\b" % (re.escape(server), p),
                      d.log)
        if m:
            return m.group(1)
    return None


# ---- calls ----------------------------------------------------------------------------------


def rpc(c, rid, method, params=None):
    """One request; returns (the other messages of its answer, the response)."""
    msg = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    r = c.post(msg)
    assert r.status == 200, r
    if r.content_type == "application/json":
        msgs = [r.json()]
    else:
        assert r.content_type == "text/event-stream", r
        msgs = [json.loads(x) for x in sse_data(r.body)]
    finals = [x for x in msgs if isinstance(x, dict) and "method" not in x]
    assert len(finals) == 1 and finals[0].get("id") == rid, msgs
    return [x for x in msgs if x is not finals[0]], finals[0]


def call(c, rid, tool, args=None, meta=None):
    params = {"name": tool, "arguments": args or {}}
    if meta is not None:
        params["_meta"] = meta
    return rpc(c, rid, "tools/call", params)


def whoami(c, rid=None, meta=None):
    rid = rid if rid is not None else "who-%s" % uuid.uuid4().hex[:8]
    _, m = call(c, rid, "whoami", meta=meta)
    return json.loads(tool_text(m))


def session(d, server, who):
    c = McpClient(d, server, who)
    c.initialize()
    return c


def assert_unavailable(m):
    assert "error" in m, m
    assert m["error"]["code"] == -32015, m
    assert m["error"]["data"]["type"] == "server_unavailable", m


def drain_until(sse, pred, what, timeout=5.0):
    """Reads a stream's messages until one satisfies pred; returns those before it."""
    before = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            ev = sse.next(max(0.05, deadline - time.monotonic()))
        except AssertionError:
            raise AssertionError("no %s within %.0fs; the stream carried %r"
                                 % (what, timeout, before)) from None
        assert ev is not None, "stream ended before %s; got %r" % (what, before)
        if not ev.data:
            continue
        msg = ev.json()
        if pred(msg):
            return before
        before.append(msg)


def is_updated(uri):
    return lambda m: m.get("method") == "notifications/resources/updated" and \
        m.get("params", {}).get("uri") == uri


def sentinel(c, sse):
    """Puts a message of c's own on its GET stream (a resources/updated for a uri only c
    subscribed to) and returns what the stream carried before it: anything meant for another
    session would have been queued there first."""
    uri = "test://sentinel-%s" % uuid.uuid4().hex[:8]
    rpc(c, "sub-" + uri, "resources/subscribe", {"uri": uri})
    call(c, "touch-" + uri, "touch", {"uri": uri})
    return drain_until(sse, is_updated(uri), "the sentinel " + uri)


def send(c, msg):
    """POSTs msg on a connection of its own without waiting for the answer (whose head comes
    only with the response when nothing related precedes it); answer_of(conn, rid) reads it."""
    conn = c.d.conn(20)
    h = c.headers({"Content-Type": "application/json", "Accept": ACCEPT_BOTH,
                   "Authorization": "Bearer " + bearer(c.key)})
    conn.request("POST", c.path, body=json.dumps(msg), headers=h)
    return conn


def answer_of(conn, rid):
    """The response to rid of a request sent with send(), as JSON or on an SSE stream."""
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    if (resp.headers.get("Content-Type") or "").startswith("application/json"):
        return json.loads(resp.read())
    resp._mcp_sock = conn.sock
    return SSEReader(resp, 20).until_response(rid)[1]


def open_stream(c):
    conn, resp, sse = c.open_get()
    assert resp.status == 200, resp.status
    sse.next()  # the priming event
    return conn, sse


# ---- sharing --------------------------------------------------------------------------------


def test_tenant_sessions_share_a_child_and_tenants_do_not(make_daemon):
    m = pooled("ts", "tenant")
    d = start(make_daemon, [m])
    alice, bob, carol = McpClient(d, "ts", "alice"), McpClient(d, "ts", "bob"), \
        McpClient(d, "ts", "carol")
    # every session's initialize is answered as the server would, in the version it asked for
    for c, proto in ((alice, LATEST), (bob, "2025-06-18"), (carol, LATEST)):
        r = c.initialize(proto=proto)["result"]
        assert r["protocolVersion"] == proto, r
        assert r["serverInfo"] == {"name": "testserver", "version": "1.0.0"}, r
        assert r["capabilities"]["tools"]["listChanged"] is True, r
    wa, wb, wc = whoami(alice), whoami(bob), whoami(carol)
    assert wa["instance"] == wb["instance"], (wa, wb)
    assert wc["instance"] != wa["instance"], (wa, wc)
    assert len(procs(m)) == 2, procs(m)
    assert tool_text(call(alice, 1, "remember", {"text": "acme-only"})[1]) == "remembered"
    assert tool_text(call(bob, 1, "recall")[1]) == "acme-only"
    assert tool_text(call(carol, 1, "recall")[1]) == ""
    if ROOT:
        assert (wa["uid"], wa["gid"]) == (UID_A, GID_A), wa
        assert (wc["uid"], wc["gid"]) == (UID_B, GID_B), wc


def test_session_isolation_keeps_one_child_per_session(make_daemon):
    m = pooled("ts", "session")
    d = start(make_daemon, [m])
    alice, bob = session(d, "ts", "alice"), session(d, "ts", "bob")
    wa, wb = whoami(alice), whoami(bob)
    assert wa["instance"] != wb["instance"]
    call(alice, 1, "remember", {"text": "mine"})
    assert tool_text(call(bob, 1, "recall")[1]) == ""
    assert len(procs(m)) == 2


@pytest.mark.parametrize("isolation", ["session", "tenant", "shared"])
def test_concurrent_sessions_get_only_their_own_answers(make_daemon, isolation):
    """8 sessions per tenant, all using the same JSON-RPC ids and the same progress token at
    once: every answer and every progress notification a session gets is its own."""
    m = pooled("ts", isolation)
    d = start(make_daemon, [m], limits={"request_timeout_ms": 20000})
    who = ["alice", "bob"] * 4 + ["carol"] * 8
    clients = [session(d, "ts", w) for w in who]
    barrier = threading.Barrier(len(clients))
    instances = [None] * len(clients)
    errors = []

    def run(i, c):
        try:
            barrier.wait(10)
            for rnd in range(3):
                base = rnd * 10
                text = "s%d-r%d-%s" % (i, rnd, uuid.uuid4().hex)
                _, ans = call(c, base + 1, "echo", {"text": text})
                assert tool_text(ans) == text, (i, ans)
                others, ans = call(c, base + 2, "progress", {"steps": 3}, {"progressToken": "t"})
                assert tool_text(ans) == "done 3", ans
                assert [(n["method"], n["params"]["progressToken"], n["params"]["progress"])
                        for n in others] == [("notifications/progress", "t", k)
                                             for k in (1, 2, 3)], (i, others)
                w = whoami(c, base + 3, {"progressToken": "t"})
                instances[i] = instances[i] or w["instance"]
                assert w["instance"] == instances[i], (i, w)  # stays on its child
                if isolation != "session":
                    # the child got mcpvisor's token for this session, not the client's
                    assert w["progressToken"] is not None and w["progressToken"] != "t", w
                if isolation == "shared":
                    p = w["principal"]
                    assert (p["tenant"], p["user"]) == (TENANT_OF[who[i]], who[i]), (i, w)
        except BaseException as e:  # noqa: B902 -- reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    acme = {instances[i] for i, w in enumerate(who) if w != "carol"}
    other = {instances[i] for i, w in enumerate(who) if w == "carol"}
    if isolation == "session":
        assert len(set(instances)) == len(clients), instances
    elif isolation == "tenant":
        assert len(acme) == 1 and len(other) == 1 and acme != other, instances
    else:
        assert len(acme | other) == 1, instances


@pytest.mark.parametrize("isolation", ["tenant", "shared"])
def test_server_request_goes_to_the_pending_session_only(make_daemon, isolation):
    """A sampling request from a shared child reaches the session whose call is pending, only
    that session's answer completes the call, and another session cannot answer it."""
    m = pooled("ts", isolation)
    d = start(make_daemon, [m])
    a = session(d, "ts", "alice")
    b = session(d, "ts", "bob" if isolation == "tenant" else "carol")
    assert whoami(a)["instance"] == whoami(b)["instance"]
    gets = {c: open_stream(c) for c in (a, b)}

    for me, them in ((a, b), (b, a)):
        conn, resp, sse = me.stream_post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                          "params": {"name": "sample",
                                                     "arguments": {"prompt": "p-" + me.key}}})
        req = next(x for x in sse.messages() if x.get("method") == "sampling/createMessage")
        assert req["params"]["messages"][0]["content"]["text"] == "p-" + me.key, req
        # the other session answers that id: it must not complete my call
        r = them.post({"jsonrpc": "2.0", "id": req["id"], "result": {
            "role": "assistant", "model": "x",
            "content": {"type": "text", "text": "intruder " + them.key}}})
        assert r.status in (202, 400), r
        r = me.post({"jsonrpc": "2.0", "id": req["id"], "result": {
            "role": "assistant", "model": "x", "content": {"type": "text", "text": me.key}}})
        assert r.status == 202, r
        _, final = sse.until_response(7)
        assert tool_text(final) == "sampled: " + me.key, final
        conn.close()
        # neither GET stream carried the request
        for c in (a, b):
            assert not [x for x in sentinel(c, gets[c][1]) if "method" in x and "id" in x]
    for conn, _ in gets.values():
        conn.close()


@pytest.mark.parametrize("isolation", ["tenant", "shared"])
def test_cancellation_reaches_only_the_callers_request(make_daemon, isolation):
    """Two sessions of one child each cancel "their" request c-1; only the one that has it
    pending cancels anything, and the child sees mcpvisor's id for it."""
    m = pooled("ts", isolation)
    d = start(make_daemon, [m])
    a = session(d, "ts", "alice")
    b = session(d, "ts", "bob" if isolation == "tenant" else "carol")
    assert whoami(a)["instance"] == whoami(b)["instance"]
    mark = d.mark()
    conn = send(a, {"jsonrpc": "2.0", "id": "c-1", "method": "tools/call",
                    "params": {"name": "hang", "arguments": {}}})
    d.wait_log(r"child_stderr .*hang: not answering", 5, start=mark)
    for c in (b, a):  # b first: the child reads them in this order
        r = c.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": "c-1", "reason": "test"}})
        assert r.status == 202, r
    d.wait_log(r"child_stderr .*cancelled requestId=", 5, start=mark)
    assert tool_text(call(b, 2, "echo", {"text": "after"})[1]) == "after"  # the child read on
    cancels = d.log_lines(r"child_stderr .*cancelled requestId=")
    assert len(cancels) == 1, cancels
    assert "c-1" not in cancels[0], cancels  # the broker's id, not a's
    conn.close()


def test_list_changed_reaches_every_session_of_the_tenant_child(make_daemon):
    m = pooled("ts", "tenant")
    d = start(make_daemon, [m])
    alice, bob, carol = (session(d, "ts", w) for w in ("alice", "bob", "carol"))
    streams = {c: open_stream(c) for c in (alice, bob, carol)}
    assert tool_text(call(alice, 1, "mutate")[1]) == "ok"
    changed = lambda x: x.get("method") == "notifications/tools/list_changed"  # noqa: E731
    for c in (alice, bob):
        drain_until(streams[c][1], changed, "list_changed on %s's stream" % c.key)
    assert not [x for x in sentinel(carol, streams[carol][1]) if changed(x)]
    # and the new listing is what everyone of acme sees
    _, lst = rpc(bob, 2, "tools/list")
    echo = next(t for t in lst["result"]["tools"] if t["name"] == "echo")
    assert echo["description"] == "Returns the text it is given (changed).", echo
    for conn, _ in streams.values():
        conn.close()


@pytest.mark.parametrize("isolation", ["tenant", "shared"])
def test_resource_updates_reach_subscribers_only(make_daemon, isolation):
    m = pooled("ts", isolation)
    d = start(make_daemon, [m])
    alice, bob, carol = (session(d, "ts", w) for w in ("alice", "bob", "carol"))
    streams = {c: open_stream(c)[1] for c in (alice, bob, carol)}
    for c, uris in ((alice, ["test://a", "test://both"]), (bob, ["test://both"]),
                    (carol, ["test://a"] if isolation == "tenant" else [])):
        for k, uri in enumerate(uris):
            _, ans = rpc(c, 100 + k, "resources/subscribe", {"uri": uri})
            assert ans.get("result") == {}, ans
    # alice's uri: alice gets it, bob (same child, not subscribed) does not
    call(alice, 1, "touch", {"uri": "test://a"})
    drain_until(streams[alice], is_updated("test://a"), "alice's update of test://a")
    for c in (bob, carol):
        assert not [x for x in sentinel(c, streams[c]) if is_updated("test://a")(x)], c.key
    # alice leaves test://both; bob's subscription to it stays in force
    _, ans = rpc(alice, 2, "resources/unsubscribe", {"uri": "test://both"})
    assert ans.get("result") == {}, ans
    call(bob, 3, "touch", {"uri": "test://both"})
    drain_until(streams[bob], is_updated("test://both"),
                "bob's update of test://both after alice unsubscribed from it")
    for c in (alice, carol):
        assert not [x for x in sentinel(c, streams[c]) if is_updated("test://both")(x)], c.key


# ---- shared: the principal goes with every request ---------------------------------------------


def test_shared_child_sees_each_callers_verified_principal(make_daemon):
    m = pooled("ts", "shared")
    d = start(make_daemon, [m])
    alice, bob, carol = (session(d, "ts", w) for w in ("alice", "bob", "carol"))
    wa = whoami(alice)
    assert wa["principal"] == {"tenant": "acme", "user": "alice", "agent": "ci-bot",
                               "scopes": []}, wa
    wb, wc = whoami(bob), whoami(carol)
    assert wa["instance"] == wb["instance"] == wc["instance"]
    assert (wb["principal"]["tenant"], wb["principal"]["user"]) == ("acme", "bob"), wb
    assert wb["principal"].get("agent") in (None, ""), wb
    assert (wc["principal"]["tenant"], wc["principal"]["user"]) == ("other", "carol"), wc
    # a client's own value is replaced: alice cannot speak as carol
    forged = {"tenant": "other", "user": "carol", "agent": "x", "scopes": ["admin"]}
    w = whoami(alice, meta={"io.mcpvisor/principal": forged})
    assert w["principal"] == wa["principal"], w
    # no credential reaches the child, in any form it can see
    seen = [tool_text(call(c, 9, t)[1]) for c in (alice, bob, carol) for t in ("env", "argv")]
    seen += [json.dumps(x) for x in (wa, wb, wc, w)]
    for key, _, _, _ in KEYS.values():
        assert not [s for s in seen if key in s], key


def test_check_warns_about_shared_server_without_principal_meta(make_daemon):
    """rowless (shared by both tenants) does not declare reads_principal_meta: check warns,
    naming it, and still exits 0. lonely (one tenant) needs no declaration. The warnings are
    compared with those of the same files where every manifest declares it, since check warns
    about other things too (the sandbox without root, say)."""
    def warnings(declared):
        mans = [pooled("rowless", "shared", reads_principal_meta=True if declared else None),
                pooled("rowful", "shared"),
                pooled("lonely", "shared", reads_principal_meta=True if declared else None)]
        d = start(make_daemon, mans, acme=["rowless", "rowful", "lonely"],
                  other=["rowless", "rowful"], run=False)
        p = subprocess.run([MCPVISOR, "check", "--no-tools", "-c", d.config_path],
                           capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        return {l.replace(str(d.dir), "") for l in out.splitlines()
                if re.search(r"warn", l, re.I)}

    new = warnings(False) - warnings(True)
    assert [l for l in new if "rowless" in l], new
    assert not [l for l in new if "rowful" in l or "lonely" in l], new


# ---- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["tenant", "shared"])
def test_crash_fails_calls_in_flight_and_sessions_live_on(make_daemon, isolation):
    m = pooled("ts", isolation)
    d = start(make_daemon, [m])
    a = session(d, "ts", "alice")
    b = session(d, "ts", "bob" if isolation == "tenant" else "carol")
    before = whoami(a)
    assert whoami(b)["instance"] == before["instance"]
    old_pid = host_pid(m, before)
    mark = d.mark()
    conn = send(a, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                    "params": {"name": "hang", "arguments": {}}})
    d.wait_log(r"child_stderr .*hang: not answering", 5, start=mark)
    _, crashed = call(b, 5, "crash")
    assert_unavailable(crashed)
    hung = answer_of(conn, 5)
    assert hung["id"] == 5, hung
    assert_unavailable(hung)
    conn.close()
    wait_for(lambda: not pid_alive(old_pid), 5, what="the crashed child gone")

    def answers(c):
        msg = {"jsonrpc": "2.0", "id": "again", "method": "tools/call",
               "params": {"name": "whoami", "arguments": {}}}
        r = c.post(msg)
        assert r.status == 200, r  # the session lives on: never 404
        ans = c.parse(r)
        if "error" in ans:
            assert_unavailable(ans)  # restarting, with back-off
            return None
        return json.loads(tool_text(ans))

    after_a = wait_for(lambda: answers(a), 20, interval=0.1, what="a call on a restarted child")
    after_b = wait_for(lambda: answers(b), 20, interval=0.1, what="a call on a restarted child")
    assert after_a["instance"] != before["instance"], after_a
    assert after_b["instance"] == after_a["instance"], (after_a, after_b)


def test_crash_loop_opens_the_circuit_until_the_server_starts_again(make_daemon):
    """The server exits at start while a flag file exists. The file lives in a folder of its
    own under /tmp (mode 0755, so a tenant's uid may look), bound read-only into the sandbox at
    the same path by the manifest's sandbox.read_only; removing it on the host ends the loop."""
    top = world_readable_dir()
    try:
        flag = os.path.join(top, "crash")
        open(flag, "w").close()
        m = pooled("ts", "tenant", args=["--crash-if-exists", flag],
                   sandbox={"read_only": [top]})
        d = start(make_daemon, [m])
        failures = []

        def attempt():
            """initialize and one call; the JSON-RPC error of whichever failed, or None."""
            c = McpClient(d, "ts", "alice")
            r = d.request("POST", c.path, {
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": LATEST, "capabilities": {},
                           "clientInfo": {"name": "pytest", "version": "1"}}})
            ans = r.json() if r.content_type == "application/json" else c.parse(r)
            if "error" in ans:
                return ans
            c.sid, c.proto = r.header("Mcp-Session-Id"), ans["result"]["protocolVersion"]
            _, ans = call(c, 1, "echo", {"text": "x"})
            c.delete()  # no pile of sessions while the loop lasts
            return ans if "error" in ans else None

        def failed():
            err = attempt()
            assert err is not None, "a call succeeded while the server cannot start"
            assert_unavailable(err)
            failures.append(err)
            return err["error"]["data"].get("retry_after_ms", 0) > 0

        def spawns():
            return len(d.log_lines(r"msg=spawned server=ts "))

        # a few crashes in a row, then attempts fail at once, with retry_after_ms
        wait_for(lambda: failed() and spawns() >= 3, 20, interval=0.1,
                 what="repeated start failures, then refusals with retry_after_ms")
        before = spawns()
        for _ in range(5):
            assert failed(), failures[-1]
        # open circuit: five more attempts cost at most one probe spawn, not one each
        assert spawns() - before <= 1, d.log_lines(r"msg=spawned server=ts ")
        os.unlink(flag)
        # the probe comes once the circuit's retry_after_ms is over
        wait = failures[-1]["error"]["data"]["retry_after_ms"] / 1000.0
        wait_for(lambda: attempt() is None, min(60, wait + 10), interval=0.2,
                 what="a probe spawn to succeed")
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---- pool sizes -----------------------------------------------------------------------------


def test_warm_children_start_with_the_daemon(make_daemon):
    warm = pooled("warm", "tenant", pool={"min_idle": 2})
    warmsh = pooled("warmsh", "shared", pool={"min_idle": 1})
    d = start(make_daemon, [warm, warmsh])
    wait_for(lambda: len(procs(warm)) == 4 and len(procs(warmsh)) == 1, 10,
             what="2 warm children per tenant and 1 shared, before any session")
    pids = procs(warm)
    tenants = [spawned_tenant(d, "warm", p) for p in pids]
    if None not in tenants:
        assert sorted(tenants) == ["acme", "acme", "other", "other"], tenants
    w = whoami(session(d, "warm", "alice"))
    assert host_pid(warm, w) in pids, (w, pids)
    if ROOT:
        assert w["uid"] == UID_A


def test_idle_children_are_stopped_down_to_min_idle(make_daemon):
    reap = pooled("reap", "tenant", pool={"min_idle": 0, "idle_timeout_s": 1})
    keep = pooled("keep", "tenant", pool={"min_idle": 1, "idle_timeout_s": 1})
    d = start(make_daemon, [reap, keep], other=[])
    c_reap, c_keep = session(d, "reap", "alice"), session(d, "keep", "alice")
    reap_pid, keep_pid = host_pid(reap, whoami(c_reap)), host_pid(keep, whoami(c_keep))
    keep_all = procs(keep)
    assert reap_pid is not None and keep_pid in keep_all, (reap_pid, keep_pid, keep_all)
    assert c_reap.delete().status in (200, 204)
    assert c_keep.delete().status in (200, 204)
    wait_for(lambda: not pid_alive(reap_pid), 10, what="the idle child of reap stopped")
    # reap's child outlived idle_timeout_s; keep's must still be there a while later
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        if len(keep_all) == 1:
            assert pid_alive(keep_pid), "keep's only child was stopped below min_idle"
        assert procs(keep), "keep has no child left below min_idle 1"
        time.sleep(0.1)


def test_max_per_tenant_and_sessions_per_child(make_daemon):
    m = pooled("ts", "tenant", pool={"max_per_tenant": 2, "sessions_per_child": 1})
    d = start(make_daemon, [m])
    ws = [whoami(session(d, "ts", w)) for w in ("alice", "bob", "alice", "bob")]
    assert ws[0]["instance"] != ws[1]["instance"], ws  # the first child was full
    assert len({w["instance"] for w in ws}) == 2, ws  # then they share: max_per_tenant
    # the least-loaded child takes each session past the ceiling: two and two
    assert sorted([w["instance"] for w in ws].count(i) for i in (ws[0]["instance"],
                                                                  ws[1]["instance"])) == [2, 2]
    assert len(procs(m)) == 2
    assert whoami(session(d, "ts", "carol"))["instance"] not in {w["instance"] for w in ws}


def test_max_children_refuses_a_session_that_needs_one_more(make_daemon):
    m = pooled("ts", "session")
    d = start(make_daemon, [m], limits={"max_children": 1})
    first = session(d, "ts", "alice")
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LATEST, "capabilities": {},
                       "clientInfo": {"name": "pytest", "version": "1"}}}
    r = d.request("POST", "/servers/ts/mcp", body, key="carol")
    assert r.status == 503, r
    assert r.header("Retry-After"), r
    assert len(procs(m)) == 1
    # a ceiling, not a broken server: once the first child is gone there is room again
    assert first.delete().status in (200, 204)
    wait_for(lambda: d.request("POST", "/servers/ts/mcp", body, key="carol").status == 200, 10,
             what="a session once the first ended")


def test_max_children_counts_children_not_sessions(make_daemon):
    m = pooled("ts", "tenant")
    d = start(make_daemon, [m], limits={"max_children": 1})
    a, b = session(d, "ts", "alice"), session(d, "ts", "bob")  # one child for both
    assert whoami(a)["instance"] == whoami(b)["instance"]
    r = d.request("POST", "/servers/ts/mcp", {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}, key="carol")
    assert r.status == 503, r  # other's first session needs a child of its own
    assert r.header("Retry-After"), r
    assert len(procs(m)) == 1


def test_max_calls_replaces_the_child(make_daemon):
    m = pooled("ts", "tenant", pool={"max_calls": 3})
    d = start(make_daemon, [m])
    a, b = session(d, "ts", "alice"), session(d, "ts", "bob")
    ws = [whoami(a)]  # whoami raises if a call fails
    old_pid = host_pid(m, ws[0])  # while it runs: it stops once its last call is answered
    ws += [whoami(c) for c in (b, a, b)]
    assert ws[0]["instance"] == ws[1]["instance"] == ws[2]["instance"], ws
    assert ws[3]["instance"] != ws[0]["instance"], ws  # the 4th call: a fresh child
    wait_for(lambda: not pid_alive(old_pid), 10, what="the replaced child stopped")


def test_max_calls_lets_calls_in_flight_finish_on_the_old_child(make_daemon):
    m = pooled("ts", "tenant", pool={"max_calls": 3})
    d = start(make_daemon, [m])
    a, b = session(d, "ts", "alice"), session(d, "ts", "bob")
    w1, w2 = whoami(a), whoami(b)
    assert w1["instance"] == w2["instance"]
    old_pid = host_pid(m, w1)
    # the third call stays in flight (the child waits for alice's sampling answer)
    conn, resp, sse = a.stream_post({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                     "params": {"name": "sample", "arguments": {"prompt": "q"}}})
    req = next(x for x in sse.messages() if x.get("method") == "sampling/createMessage")
    # the fourth goes to a fresh child (the old one, busy sampling, would answer "busy")
    w4 = whoami(b)
    assert w4["instance"] != w1["instance"], w4
    r = a.post({"jsonrpc": "2.0", "id": req["id"], "result": {
        "role": "assistant", "model": "x", "content": {"type": "text", "text": "late"}}})
    assert r.status == 202, r
    _, final = sse.until_response(3)
    assert tool_text(final) == "sampled: late", final  # finished on the old child
    conn.close()
    assert whoami(a)["instance"] == w4["instance"]
    wait_for(lambda: not pid_alive(old_pid), 10, what="the replaced child stopped")


def test_repeated_replacements_never_fail_a_call(make_daemon):
    """Six replacements in a row (max_calls 2), each a graceful one: every call is answered,
    by the old child or the new, and none waits long enough to time out."""
    m = pooled("ts", "tenant", pool={"max_calls": 2})
    d = start(make_daemon, [m], limits={"request_timeout_ms": 3000})
    a = session(d, "ts", "alice")
    latencies = []

    def timed_whoami():
        t0 = time.monotonic()
        w = whoami(a)
        latencies.append(round(time.monotonic() - t0, 2))
        # answered, or refused at its timeout: never held past request_timeout_ms
        assert latencies[-1] < 3.5, latencies
        return w["instance"]

    seen = [timed_whoami()]
    for _ in range(6):
        wait_for(lambda: timed_whoami() != seen[-1], 10, interval=0.05,
                 what="a call on the next replacement")
        seen.append(timed_whoami())
    assert len(set(seen)) == len(seen), seen


def test_max_age_replaces_the_child_without_failing_a_call(make_daemon):
    m = pooled("ts", "tenant", pool={"max_age_s": 1})
    d = start(make_daemon, [m])
    a = session(d, "ts", "alice")
    first = whoami(a)
    # every call succeeds (whoami raises otherwise) until one lands on the fresh child
    wait_for(lambda: whoami(a)["instance"] != first["instance"], 10, interval=0.1,
             what="a call on the replacement child")
