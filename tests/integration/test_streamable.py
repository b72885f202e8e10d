"""Streamable HTTP transport at /servers/{s}/mcp: headers, sessions, streams, replay, batches."""
import json
import re
import socket

from conftest import (KEYS, LATEST, McpClient, pid_alive, sse_events, tool_text,
                      wait_for)

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST, "capabilities": {},
                   "clientInfo": {"name": "pytest", "version": "1"}}}
PATH = "/servers/ts/mcp"


# ---- request checks -------------------------------------------------------------------------


def test_post_requires_both_accept_types(daemon):
    for accept in ("application/json", "text/event-stream", "*/*", None):
        r = daemon.request("POST", PATH, INIT, {"Accept": accept})
        assert r.status == 406, (accept, r)
    assert daemon.request("POST", PATH, INIT).status == 200


def test_get_requires_event_stream_accept(client):
    r = client.d.request("GET", PATH, None, client.headers({"Accept": "application/json"}))
    assert r.status == 406, r


def test_post_wrong_content_type_is_415(daemon):
    for ct in ("text/plain", "application/jsonx", None):
        r = daemon.request("POST", PATH, json.dumps(INIT), {"Content-Type": ct})
        assert r.status == 415, (ct, r)


def test_bad_json_is_400_parse_error(daemon):
    r = daemon.request("POST", PATH, '{"jsonrpc": "2.0", "id": 1,', {"Content-Type": "application/json"})
    assert r.status == 400, r
    assert r.json()["error"]["code"] == -32700


def test_non_initialize_without_session_is_400(daemon):
    r = daemon.request("POST", PATH, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status == 400, r
    assert "error" in r.json()
    assert daemon.log_lines("msg=spawned") == []  # nothing was started for it


def test_get_and_delete_without_session_are_400(daemon):
    assert daemon.request("GET", PATH, None, {"Accept": "text/event-stream"}).status == 400
    assert daemon.request("DELETE", PATH).status == 400


def test_unknown_session_is_404(client):
    for sid in ("0" * 32, "nonsense", client.sid[:-1] + ("0" if client.sid[-1] != "0" else "1")):
        r = client.post({"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
                        {"Mcp-Session-Id": sid})
        assert r.status == 404, (sid, r)
    # the real one still works
    assert "result" in client.request("tools/list")


def test_unsupported_protocol_version_header_is_400(client):
    r = client.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                    {"MCP-Protocol-Version": "1999-01-01"})
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["code"] == -32022
    assert set(err["data"]["supported"]) >= {"2025-03-26", "2025-06-18", "2025-11-25"}
    assert "1999-01-01" not in err["data"]["supported"]


def test_protocol_version_header_absent_is_accepted(client):
    client.proto = None  # no MCP-Protocol-Version header: the spec's default applies
    assert tool_text(client.call_tool("echo", {"text": "hi"})) == "hi"


def test_stateless_modern_request_gets_32022(daemon):
    msg = {"jsonrpc": "2.0", "id": "m-1", "method": "tools/list",
           "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                "io.modelcontextprotocol/clientCapabilities": {}}}}
    r = daemon.request("POST", PATH, msg)
    assert r.status == 400, r
    body = r.json()
    assert body["id"] == "m-1"
    err = body["error"]
    assert err["code"] == -32022
    assert err["data"]["requested"] == "2026-07-28"
    assert "2025-11-25" in err["data"]["supported"]
    assert "2026-07-28" not in err["data"]["supported"]
    assert daemon.log_lines("msg=spawned") == []


def test_wrong_method_is_405(client):
    r = client.d.request("PUT", PATH, "{}", client.headers({"Content-Type": "application/json"}))
    assert r.status == 405, r
    assert "POST" in (r.header("Allow") or "")


# ---- sessions -------------------------------------------------------------------------------


def test_initialize_returns_session_id_and_answer(daemon):
    ids = set()
    for _ in range(2):
        c = McpClient(daemon)
        msg = c.initialize()
        assert msg["result"]["serverInfo"]["name"] == "testserver"
        assert msg["result"]["protocolVersion"] == LATEST
        assert re.fullmatch(r"[0-9a-f]{32,}", c.sid), c.sid  # >= 128 bits
        ids.add(c.sid)
    assert len(ids) == 2


def test_initialize_negotiates_each_revision(daemon):
    for proto in ("2025-03-26", "2025-06-18", "2025-11-25"):
        c = McpClient(daemon)
        assert c.initialize(proto)["result"]["protocolVersion"] == proto
        assert tool_text(c.call_tool("echo", {"text": proto})) == proto


def test_second_initialize_on_session_is_refused(client):
    r = client.post(INIT)
    assert r.status == 400, r


def test_tools_resources_prompts(client):
    names = {t["name"] for t in client.request("tools/list")["result"]["tools"]}
    assert {"echo", "add", "slow", "sample"} <= names
    assert tool_text(client.call_tool("add", {"a": 2, "b": 3})) == "5"
    res = client.request("resources/read", {"uri": "test://static"})
    assert res["result"]["contents"][0]["text"] == "static resource"
    p = client.request("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})
    assert p["result"]["messages"][0]["content"]["text"] == "Hello, Ada!"


def test_plain_request_answers_json(client):
    r = client.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"text": "plain"}}})
    assert r.status == 200
    assert r.content_type == "application/json", r
    assert r.json()["id"] == 9
    assert tool_text(r.json()) == "plain"


def test_notification_gets_202(client):
    r = client.post({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"})
    assert r.status == 202, r
    assert r.body == b""


def test_ids_restored_exactly(client):
    for rid in ("abc", "x y \u00e9\u4e2d", "", "1", 0, 7, -5, 2 ** 40, 123456789012):
        msg = client.call_tool("echo", {"text": "id"}, rid=rid)
        assert msg["id"] == rid and type(msg["id"]) is type(rid), (rid, msg)


def test_ids_rewritten_towards_the_child(daemon):
    """Two sessions using the same client id concurrently get their own answers."""
    a, b = McpClient(daemon), McpClient(daemon)
    a.initialize()
    b.initialize()
    ca, ra, sa = a.stream_post({"jsonrpc": "2.0", "id": "same", "method": "tools/call",
                                "params": {"name": "slow", "arguments": {"ms": 300}}})
    mb = b.call_tool("echo", {"text": "b"}, rid="same")
    assert tool_text(mb) == "b"
    body = ra.read()
    ca.close()
    assert ra.status == 200
    assert tool_text(json.loads(body)) == "slept 300"


def test_duplicate_pending_id_is_refused(client):
    c1, r1, sse = client.stream_post({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                                      "params": {"name": "sample", "arguments": {"prompt": "x"}}})
    req = next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    # id 77 is now certainly in flight: a second request with the same id is refused
    r2 = client.post({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "dup"}}})
    m2 = client.parse(r2)
    assert m2["id"] == 77 and m2["error"]["code"] == -32600, m2
    assert client.post({"jsonrpc": "2.0", "id": req["id"],
                        "result": {"role": "assistant", "model": "m",
                                   "content": {"type": "text", "text": "a"}}}).status == 202
    _, final = sse.until_response(77)
    assert tool_text(final) == "sampled: a"
    c1.close()


def test_session_id_bound_to_principal_same_tenant(client):
    r = client.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, key="bob")
    assert r.status == 404, r
    r = client.d.request("GET", PATH, None, client.headers({"Accept": "text/event-stream"}), key="bob")
    assert r.status == 404, r
    r = client.d.request("DELETE", PATH, None, client.headers(), key="bob")
    assert r.status == 404, r
    assert "result" in client.request("tools/list")  # still alive for its owner


def test_session_id_bound_to_principal_other_tenant(client):
    r = client.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, key="carol")
    assert r.status == 404, r
    assert "result" in client.request("tools/list")


def test_session_id_bound_to_server(daemon):
    c = McpClient(daemon, server="ts", key="carol")
    c.initialize()
    other = McpClient(daemon, server="ts2", key="carol")
    other.sid, other.proto = c.sid, c.proto
    r = other.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert r.status == 404, r


def test_delete_ends_session_and_child(client):
    d = client.d
    pid = wait_for(lambda: d.spawned_pids(), what="spawned")[-1]
    assert pid_alive(pid)
    r = client.delete()
    assert r.status in (200, 204), r
    r = client.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert r.status == 404, r
    wait_for(lambda: not pid_alive(pid), 5, what="child %d to exit" % pid)
    assert client.delete().status == 404


# ---- streams --------------------------------------------------------------------------------


def test_progress_switches_to_sse(client):
    r = client.post({"jsonrpc": "2.0", "id": "p", "method": "tools/call",
                     "params": {"name": "progress", "arguments": {"steps": 3},
                                "_meta": {"progressToken": "tok-1"}}})
    assert r.status == 200
    assert r.content_type == "text/event-stream", r
    assert r.header("X-Accel-Buffering") == "no"
    evs = sse_events(r.body)
    msgs = [e.json() for e in evs if e.data]
    progress = [m for m in msgs if m.get("method") == "notifications/progress"]
    assert [p["params"]["progress"] for p in progress] == [1, 2, 3]
    assert all(p["params"]["progressToken"] == "tok-1" for p in progress)
    assert msgs[-1]["id"] == "p" and tool_text(msgs[-1]) == "done 3"
    # priming event first: an id, retry and empty data
    assert evs[0].data == "" and evs[0].retry == "3000" and re.fullmatch(r"\d+-0", evs[0].id), evs[0]
    ids = [e.id for e in evs]
    assert all(re.fullmatch(r"\d+-\d+", i) for i in ids) and len(set(ids)) == len(ids), ids


def test_progress_without_token_stays_json(client):
    r = client.post({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                     "params": {"name": "progress", "arguments": {"steps": 3}}})
    assert r.content_type == "application/json", r
    assert tool_text(r.json()) == "done 3"


def test_log_notification_before_answer_switches_to_sse(client):
    r = client.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                     "params": {"name": "log", "arguments": {"text": "hello log"}}})
    assert r.content_type == "text/event-stream", r
    msgs = [json.loads(d) for d in [e.data for e in sse_events(r.body)] if d]
    assert msgs[0]["method"] == "notifications/message"
    assert msgs[0]["params"]["data"] == "hello log"
    assert msgs[-1]["id"] == 5 and tool_text(msgs[-1]) == "logged"


def test_sampling_round_trip(client):
    c, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": "s1", "method": "tools/call",
                                       "params": {"name": "sample", "arguments": {"prompt": "2+2?"}}})
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    req = None
    while req is None:
        ev = sse.next()
        assert ev is not None, "stream ended before the sampling request"
        if ev.data:
            m = ev.json()
            assert m.get("method") == "sampling/createMessage", m
            req = m
    assert req["params"]["messages"][0]["content"]["text"] == "2+2?"
    assert req["id"] != "srv-1"  # the child's id is the broker's business
    answer = {"jsonrpc": "2.0", "id": req["id"],
              "result": {"role": "assistant", "model": "test",
                         "content": {"type": "text", "text": "four"}}}
    r = client.post(answer)
    assert r.status == 202, r
    _, final = sse.until_response("s1")
    assert tool_text(final) == "sampled: four"
    assert sse.next() is None  # the stream closes after the answer
    c.close()


def test_sampling_error_from_client_reaches_server(client):
    c, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                                       "params": {"name": "sample", "arguments": {"prompt": "q"}}})
    req = next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    r = client.post({"jsonrpc": "2.0", "id": req["id"],
                     "error": {"code": -1, "message": "user declined"}})
    assert r.status == 202
    _, final = sse.until_response(8)
    assert tool_text(final) == "sample error: user declined"
    c.close()


def test_get_stream_receives_unrelated_notification(client):
    c, resp, sse = client.open_get()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    prime = sse.next()
    assert prime.data == "" and re.fullmatch(r"\d+-0", prime.id), prime
    assert tool_text(client.call_tool("notify_after")) == "ok"
    ev = sse.next()
    assert ev is not None
    m = ev.json()
    assert m["method"] == "notifications/message" and m["params"]["data"] == "unrelated"
    assert re.fullmatch(r"\d+-[1-9]\d*", ev.id), ev
    assert ev.id.split("-")[0] == prime.id.split("-")[0]
    c.close()


def test_second_concurrent_get_is_409(client):
    c, resp, sse = client.open_get()
    assert resp.status == 200
    sse.next()
    r = client.d.request("GET", PATH, None, client.headers({"Accept": "text/event-stream"}))
    assert r.status == 409, r
    c.close()
    # once the first is gone, a new GET may open
    def reopen():
        c2 = client.d.conn(5)
        resp2 = client.d.open(c2, "GET", PATH, None, client.headers({"Accept": "text/event-stream"}))
        st = resp2.status
        c2.close()
        return st == 200
    wait_for(reopen, 5, interval=0.05, what="GET stream to be reusable")


def test_server_request_with_nothing_pending_goes_to_get_stream(client):
    """Unrelated server→client traffic (here after the request ended) never reaches a closed POST."""
    c, resp, sse = client.open_get()
    sse.next()
    # notify_after answers first, so the notification is unrelated and belongs to the GET stream.
    # (Each is read before the next request: a notification that arrives while another request
    # is pending may be attributed to that request.)
    got = []
    for i in range(3):
        assert tool_text(client.call_tool("notify_after")) == "ok"
        got.append(sse.next())
    assert [g.json()["params"]["data"] for g in got] == ["unrelated"] * 3
    seqs = [int(g.id.split("-")[1]) for g in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    c.close()


def test_last_event_id_replays_finished_post_stream(client):
    c, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": "r", "method": "tools/call",
                                       "params": {"name": "progress", "arguments": {"steps": 6},
                                                  "_meta": {"progressToken": 99}}})
    prime = sse.next()
    first = sse.next()
    assert first.json()["params"]["progress"] == 1
    c.close()  # the client loses the connection mid-stream
    c2, resp2, sse2 = client.open_get({"Last-Event-ID": first.id})
    assert resp2.status == 200, resp2.read()
    evs, final = sse2.until_response("r")
    prog = [e.json()["params"]["progress"] for e in evs if e.data and "method" in e.json()]
    assert prog == [2, 3, 4, 5, 6], evs
    assert tool_text(final) == "done 6"
    assert all(e.id.split("-")[0] == prime.id.split("-")[0] for e in evs)
    c2.close()


def test_last_event_id_resumes_live_post_stream(client):
    c, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": "live", "method": "tools/call",
                                       "params": {"name": "sample", "arguments": {"prompt": "p"}}})
    prime = sse.next()
    ev = sse.next()
    req = ev.json()
    assert req["method"] == "sampling/createMessage"
    c.close()  # drop the stream while the tool call is still pending
    r = client.post({"jsonrpc": "2.0", "id": req["id"],
                     "result": {"role": "assistant", "model": "m",
                                "content": {"type": "text", "text": "resumed"}}})
    assert r.status == 202
    c2, resp2, sse2 = client.open_get({"Last-Event-ID": ev.id})
    assert resp2.status == 200
    evs, final = sse2.until_response("live")
    assert tool_text(final) == "sampled: resumed"
    assert all(e.id.split("-")[0] == prime.id.split("-")[0] for e in evs if e.id)
    assert sse2.next() is None  # the resumed stream ends with its answer
    c2.close()


def test_last_event_id_of_get_stream_replays_after_drop(client):
    c, resp, sse = client.open_get()
    sse.next()
    seen = []
    for _ in range(2):
        assert tool_text(client.call_tool("notify_after")) == "ok"
        seen.append(sse.next())
    first = seen[0]
    assert first.json()["params"]["data"] == "unrelated"
    c.close()  # the client claims it only processed the first event
    c2, resp2, sse2 = client.open_get({"Last-Event-ID": first.id})
    assert resp2.status == 200
    ev = sse2.next()
    while ev is not None and not ev.data:
        ev = sse2.next()
    assert ev is not None, "the event after Last-Event-ID was not replayed"
    assert ev.json()["params"]["data"] == "unrelated"
    stream, seq = first.id.split("-")
    assert ev.id == "%s-%d" % (stream, int(seq) + 1) == seen[1].id, (first.id, ev.id)
    c2.close()


# ---- batches --------------------------------------------------------------------------------


BATCH = [{"jsonrpc": "2.0", "id": "b1", "method": "tools/call",
          "params": {"name": "echo", "arguments": {"text": "one"}}},
         {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
          "params": {"name": "add", "arguments": {"a": 1, "b": 1}}},
         {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}]


def test_batch_rejected_for_2025_06_18(daemon):
    c = McpClient(daemon)
    c.initialize("2025-06-18")
    r = c.post(BATCH)
    assert r.status == 400, r


def test_batch_rejected_for_2025_11_25(daemon):
    c = McpClient(daemon)
    c.initialize("2025-11-25")
    r = c.post(BATCH)
    assert r.status == 400, r


def test_batch_accepted_for_2025_03_26(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    r = c.post(BATCH)
    assert r.status == 200, r
    assert r.content_type == "application/json", r
    answers = r.json()
    assert isinstance(answers, list) and len(answers) == 2, answers
    by_id = {a["id"]: a for a in answers}
    assert tool_text(by_id["b1"]) == "one"
    assert tool_text(by_id[2]) == "2"


def test_empty_batch_is_400(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    assert c.post([]).status == 400


def test_invalid_jsonrpc_message_gets_invalid_request(client):
    r = client.post({"jsonrpc": "1.0", "id": 3, "method": "tools/list"})
    m = client.parse(r) if r.status == 200 else r.json()
    assert m["error"]["code"] == -32600, m


def test_content_type_with_charset_accepted(client):
    r = client.d.request("POST", PATH, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
                         client.headers({"Content-Type": "application/json; charset=utf-8"}))
    assert r.status == 200, r
    assert r.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_ids_never_altered(client):
    """Ids a double cannot hold exactly are refused, never answered under another id."""
    for rid in (2 ** 53 + 1, 12345678901234567890):
        r = client.post({"jsonrpc": "2.0", "id": rid, "method": "ping"})
        m = client.parse(r) if r.status == 200 else r.json()
        if "result" in m:
            assert m["id"] == rid and type(m["id"]) is int, (rid, r.body)
        else:
            assert m["error"]["code"] == -32600, m
            assert m["id"] in (None, rid), (rid, r.body)


def test_response_to_unknown_server_request_gets_202(client):
    r = client.post({"jsonrpc": "2.0", "id": 12345, "result": {}})
    assert r.status == 202, r
    client.d.wait_log("client_response_unknown", 2)
    assert tool_text(client.call_tool("echo", {"text": "fine"})) == "fine"


def test_concurrent_requests_on_one_session(client):
    import threading
    results, errors = {}, []

    def worker(i):
        try:
            rid = "w-%d" % i if i % 2 else i
            m = client.call_tool("echo", {"text": "t%d" % i}, rid=rid)
            results[i] = (m["id"] == rid, tool_text(m))
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert results == {i: (True, "t%d" % i) for i in range(24)}


def test_delete_answers_pending_request(client):
    c, resp, sse = client.stream_post({"jsonrpc": "2.0", "id": "pend", "method": "tools/call",
                                       "params": {"name": "sample", "arguments": {"prompt": "x"}}})
    next(m for m in sse.messages() if m.get("method") == "sampling/createMessage")
    assert client.delete().status in (200, 204)
    _, final = sse.until_response("pend")
    assert final["error"]["code"] == -32015, final
    assert final["error"]["data"]["type"] == "server_unavailable"
    assert sse.next() is None
    c.close()


def test_client_disconnect_before_answer_is_harmless(client):
    body = json.dumps({"jsonrpc": "2.0", "id": "gone", "method": "tools/call",
                       "params": {"name": "slow", "arguments": {"ms": 300}}}).encode()
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            "Mcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n"
            % (PATH, KEYS["alice"][0], client.sid, len(body))).encode()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", client.d.port), timeout=5)
        s.sendall(head + body)
        s.close()  # gone before the answer
    # the daemon keeps serving the session; the late answers have nowhere to go
    assert tool_text(client.call_tool("slow", {"ms": 1})) == "slept 1"
    assert tool_text(client.call_tool("echo", {"text": "next"})) == "next"
    assert client.d.proc.poll() is None


def test_batch_with_progress_streams_every_answer(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    r = c.post([{"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                 "params": {"name": "progress", "arguments": {"steps": 2},
                            "_meta": {"progressToken": "pt"}}},
                {"jsonrpc": "2.0", "id": "b", "method": "tools/call",
                 "params": {"name": "echo", "arguments": {"text": "bb"}}}])
    assert r.status == 200 and r.content_type == "text/event-stream", r
    msgs = [json.loads(x) for x in [e.data for e in sse_events(r.body)] if x]
    answers = {m["id"]: m for m in msgs if "id" in m}
    assert tool_text(answers["a"]) == "done 2" and tool_text(answers["b"]) == "bb"
    assert [m["params"]["progress"] for m in msgs if m.get("method") == "notifications/progress"] == [1, 2]


def test_batch_of_notifications_gets_202(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    r = c.post([{"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
                {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}])
    assert r.status == 202, r


def test_batch_with_invalid_member(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    r = c.post([{"jsonrpc": "2.0", "id": "x", "method": "ping"}, {"foo": 1}])
    assert r.status == 200, r
    answers = r.json()
    assert isinstance(answers, list) and len(answers) == 2
    assert {"jsonrpc": "2.0", "id": "x", "result": {}} in answers
    bad = [a for a in answers if a.get("id") is None]
    assert bad and bad[0]["error"]["code"] == -32600


def test_get_stream_closed_by_delete(client):
    c, resp, sse = client.open_get()
    sse.next()
    assert client.delete().status in (200, 204)
    assert sse.next(5) is None
    c.close()
    r = client.d.request("GET", PATH, None, client.headers({"Accept": "text/event-stream"}))
    assert r.status == 404, r


def test_session_negotiated_by_child_is_usable_with_its_version_header(daemon):
    """The child may answer initialize with an older revision (here 2024-11-05, as servers built
    on older SDKs do). Clients then send that revision in MCP-Protocol-Version on every request.
    The daemon must either refuse the initialize or serve the session it created: a session that
    answers every later request with 400 is unusable (and its child runs for nothing)."""
    c = McpClient(daemon)
    r = daemon.request("POST", PATH, {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                   "clientInfo": {"name": "old-sdk", "version": "1"}}})
    body = r.json()
    if "error" in body or r.status != 200:
        return  # refused up front: acceptable
    assert body["result"]["protocolVersion"] == "2024-11-05"
    c.sid, c.proto = r.header("Mcp-Session-Id"), body["result"]["protocolVersion"]
    n = c.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert n.status == 202, n
    r = c.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "old"}}})
    assert r.status == 200, r
    assert tool_text(c.parse(r)) == "old"
