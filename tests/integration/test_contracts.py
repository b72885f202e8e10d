"""
Tool contracts through the daemon: mcpvisor lists a child's tools itself when it starts and after
notifications/tools/list_changed, holds each definition against its manifest pin (pin_mode
enforce / warn / off), hides tools the manifest does not name (unlisted_tools deny), validates
arguments against the inputSchema before the child sees them, and checks results (CallToolResult
shape, structuredContent against the outputSchema).

Expected pins are computed independently from a direct stdio listing (test_pin.pin_of).
"""
import json
import subprocess
import time

import pytest

from conftest import (MCPVISOR, TESTSERVER, McpClient, default_manifests, manifest, tool_text,
                      wait_for)
from test_pin import pin_of, served_tools

DRIFTED_ECHO = "Returns the text it is given (changed)."


@pytest.fixture(scope="module")
def pins():
    return {t["name"]: pin_of(t) for t in served_tools([TESTSERVER])}


@pytest.fixture(scope="module")
def drifted_pins():
    return {t["name"]: pin_of(t) for t in served_tools([TESTSERVER, "--drift"])}


def _daemon(make_daemon, args=(), limits=None, **m):
    ms = default_manifests()
    ms["ts"] = manifest("ts", list(args), **m)
    return make_daemon(manifests=ms, limits=limits)


def _line(d, pattern):
    return d.wait_log(pattern).string


def _pinned_echo(pins, version="2"):
    return {"echo": {"version": version, "sha256": pins["echo"]}}


def _names(c):
    return [t["name"] for t in c.request("tools/list")["result"]["tools"]]


def _session(d):
    c = McpClient(d)
    c.initialize()
    return c


# ---- drift ---------------------------------------------------------------------------------------


def test_drift_at_start_hides_the_tool_and_refuses_calls(make_daemon, pins, drifted_pins):
    assert pins["echo"] != drifted_pins["echo"]
    d = _daemon(make_daemon, ["--drift"], tools=_pinned_echo(pins))
    c = _session(d)
    names = _names(c)
    assert "echo" not in names and "add" in names
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32010
    data = err["data"]
    assert data["type"] == "schema_drift" and data["tool"] == "echo"
    assert data["tool_version"] == "2"
    assert data["pinned_sha256"] == pins["echo"]
    assert data["observed_sha256"] == drifted_pins["echo"]
    # the other tools are served
    assert c.call_tool("add", {"a": 2, "b": 3})["result"]["content"][0]["text"] == "5"


def test_drift_is_logged_once_per_change_not_per_session_or_call(make_daemon, pins):
    d = _daemon(make_daemon, ["--drift"], tools=_pinned_echo(pins))
    for _ in range(3):
        c = _session(d)
        assert c.call_tool("echo", {"text": "x"})["error"]["code"] == -32010
        assert c.call_tool("echo", {"text": "y"})["error"]["code"] == -32010
    lines = d.log_lines("tool_drift")
    assert len(lines) == 1, lines
    assert "tool=echo" in lines[0] and "pin_mode=enforce" in lines[0] and "hidden" in lines[0]


def test_matching_pin_is_served(make_daemon, pins):
    d = _daemon(make_daemon, tools=_pinned_echo(pins))
    c = _session(d)
    assert "echo" in _names(c)
    assert tool_text(c.call_tool("echo", {"text": "pinned"})) == "pinned"
    assert d.log_lines("tool_drift") == []


def test_drift_after_list_changed(make_daemon, pins):
    d = _daemon(make_daemon, tools=_pinned_echo(pins))
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": "before"})) == "before"
    assert "result" in c.call_tool("mutate")

    def refused():
        m = c.call_tool("echo", {"text": "after"})
        return "error" in m and m["error"]["code"] == -32010
    wait_for(refused, timeout=5, what="echo refused after list_changed")
    assert "echo" not in _names(c)
    d.wait_log("tool_drift")


def test_new_tool_after_list_changed_is_hidden_when_unlisted_denied(make_daemon):
    d = _daemon(make_daemon, tools={"echo": {}, "mutate_add": {}}, unlisted_tools="deny")
    c = _session(d)
    assert sorted(_names(c)) == ["echo", "mutate_add"]
    assert "result" in c.call_tool("mutate_add")

    def hidden():
        m = c.call_tool("added")
        return "error" in m and m["error"]["code"] == -32006
    wait_for(hidden, timeout=5, what="added refused")
    assert "added" not in _names(c)


def test_warn_mode_serves_a_drifted_tool_and_logs_it(make_daemon, pins):
    d = _daemon(make_daemon, ["--drift"], tools=_pinned_echo(pins), pin_mode="warn")
    c = _session(d)
    assert "echo" in _names(c)
    assert tool_text(c.call_tool("echo", {"text": "served"})) == "served"
    line = _line(d, "tool_drift")
    assert "pin_mode=warn" in line and "action=served" in line


def test_off_mode_skips_the_comparison(make_daemon, pins):
    d = _daemon(make_daemon, ["--drift"], tools=_pinned_echo(pins), pin_mode="off")
    c = _session(d)
    assert "echo" in _names(c)
    assert tool_text(c.call_tool("echo", {"text": "off"})) == "off"
    assert d.log_lines("tool_drift") == []


def test_drift_is_found_on_a_later_page(make_daemon, pins):
    d = _daemon(make_daemon, ["--drift", "--page-size", "2"], tools=_pinned_echo(pins))
    c = _session(d)
    assert c.call_tool("echo", {"text": "x"})["error"]["code"] == -32010
    assert c.call_tool("add", {"a": 1, "b": 1})["result"]["content"][0]["text"] == "2"


# ---- unlisted tools ------------------------------------------------------------------------------


def test_unlisted_tools_denied_are_hidden_and_refused(make_daemon):
    d = _daemon(make_daemon, tools={"echo": {}}, unlisted_tools="deny")
    c = _session(d)
    assert _names(c) == ["echo"]
    err = c.call_tool("add", {"a": 1, "b": 2})["error"]
    assert err["code"] == -32006 and err["data"]["type"] == "unknown_tool"
    assert err["data"]["tool"] == "add"
    assert tool_text(c.call_tool("echo", {"text": "listed"})) == "listed"


def test_unlisted_tools_are_served_by_default(make_daemon):
    d = _daemon(make_daemon, tools={"echo": {}})
    c = _session(d)
    assert "add" in _names(c)
    assert c.call_tool("add", {"a": 1, "b": 2})["result"]["content"][0]["text"] == "3"


# ---- arguments -----------------------------------------------------------------------------------


def _typed_calls(c):
    return int(tool_text(c.call_tool("typed_calls")))


@pytest.mark.parametrize("args,pointer,keyword", [
    ({"count": 0}, "/count", "minimum"),
    ({"count": "3"}, "/count", "type"),
    ({}, "", "required"),
    ({"count": 1, "name": "toolong"}, "/name", "maxLength"),
    ({"count": 1, "extra": True}, "/extra", "additionalProperties"),
])
def test_invalid_arguments_are_refused_and_never_forwarded(make_daemon, args, pointer, keyword):
    d = _daemon(make_daemon)
    c = _session(d)
    err = c.call_tool("typed", args)["error"]
    assert err["code"] == -32602
    assert err["data"]["type"] == "invalid_arguments" and err["data"]["tool"] == "typed"
    errors = err["data"]["errors"]
    assert any(e["instance"] == pointer and e["keyword"] == keyword for e in errors), errors
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert _typed_calls(c) == 0
    assert "result" in c.call_tool("typed", {"count": 2, "name": "ok"})
    assert _typed_calls(c) == 1


def test_missing_arguments_are_validated_as_an_empty_object(make_daemon):
    c = _session(_daemon(make_daemon))
    err = c.request("tools/call", {"name": "typed"})["error"]
    assert err["code"] == -32602 and err["data"]["errors"][0]["keyword"] == "required"
    assert _typed_calls(c) == 0


# ---- results -------------------------------------------------------------------------------------


def test_structured_result_valid_against_output_schema(make_daemon):
    c = _session(_daemon(make_daemon))
    m = c.call_tool("structured", {"n": 3})
    assert m["result"]["structuredContent"] == {"n": 3}


def test_structured_result_violating_output_schema_is_refused(make_daemon):
    d = _daemon(make_daemon)
    c = _session(d)
    err = c.call_tool("structured", {"n": "three"})["error"]
    assert err["code"] == -32012 and err["data"]["type"] == "invalid_result"
    assert err["data"]["tool"] == "structured"
    assert any(e["instance"] == "/n" for e in err["data"]["errors"])
    assert "three" not in json.dumps(err)  # the payload is not passed through
    line = _line(d, "invalid_result")
    assert "sha256=" in line and "three" not in line
    assert err["data"]["payload_sha256"] in line


def test_missing_structured_content_is_refused(make_daemon):
    c = _session(_daemon(make_daemon))
    err = c.call_tool("structured", {"n": 1, "omit": True})["error"]
    assert err["code"] == -32012


@pytest.mark.parametrize("kind", ["no_content", "content_not_array", "content_item_no_type",
                                  "result_not_object", "is_error_not_bool",
                                  "structured_not_object", "error_no_code", "both"])
def test_malformed_call_results_are_refused_promptly(make_daemon, kind):
    c = _session(_daemon(make_daemon, limits={"request_timeout_ms": 20000}))
    t0 = time.monotonic()
    err = c.call_tool("shape", {"kind": kind})["error"]
    assert err["code"] == -32012 and err["data"]["type"] == "invalid_result", err
    assert time.monotonic() - t0 < 10  # answered, not timed out
    assert tool_text(c.call_tool("shape", {"kind": "ok"})) == "ok"


def test_server_errors_pass_through(make_daemon):
    c = _session(_daemon(make_daemon))
    err = c.call_tool("no_such_tool_at_all")["error"]
    assert err["code"] != -32012


# ---- schemas mcpvisor cannot validate with --------------------------------------------------------


def test_unsupported_schema_hides_the_tool_under_enforce(make_daemon):
    d = _daemon(make_daemon, ["--unsupported-schema"])
    c = _session(d)
    assert "weird" not in _names(c)
    err = c.call_tool("weird")["error"]
    assert err["code"] == -32006 and "unevaluatedProperties" in err["message"]
    assert "unevaluatedProperties" in _line(d, "tool_schema_unsupported")


def test_unsupported_schema_is_served_unvalidated_under_warn(make_daemon):
    d = _daemon(make_daemon, ["--unsupported-schema"], pin_mode="warn")
    c = _session(d)
    assert "weird" in _names(c)
    assert tool_text(c.call_tool("weird")) == "weird"


def test_check_reports_unsupported_keywords(make_daemon):
    ms = default_manifests()
    ms["ts"] = manifest("ts", ["--unsupported-schema"])
    d = make_daemon(manifests=ms, start=False)
    p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "weird" in p.stdout and "unevaluatedProperties" in p.stdout
    p = subprocess.run([MCPVISOR, "check", "--no-tools", "-c", d.config_path],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "unevaluatedProperties" not in p.stdout


def test_check_reports_drift(make_daemon, pins):
    ms = default_manifests()
    ms["ts"] = manifest("ts", ["--drift"], tools=_pinned_echo(pins))
    d = make_daemon(manifests=ms, start=False)
    p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "echo drifted" in p.stdout and pins["echo"] in p.stdout


# ---- listings that fail ---------------------------------------------------------------------------


def test_failed_listing_refuses_calls_under_enforce(make_daemon):
    d = _daemon(make_daemon, ["--list-error"])
    c = _session(d)
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32015 and err["data"]["type"] == "server_unavailable"
    assert "listing failed" in err["message"]


def test_failed_listing_serves_under_warn(make_daemon):
    d = _daemon(make_daemon, ["--list-error"], pin_mode="warn")
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": "x"})) == "x"


def test_hanging_listing_times_out_and_fails_closed(make_daemon):
    d = _daemon(make_daemon, ["--list-hang"], limits={"spawn_timeout_ms": 1500})
    c = _session(d)
    t0 = time.monotonic()
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32015 and "1500 ms" in err["message"]
    assert time.monotonic() - t0 < 8


def test_server_without_tools_gets_no_calls_under_enforce(make_daemon):
    d = _daemon(make_daemon, ["--no-tools"])
    c = _session(d)
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32006 and err["data"]["type"] == "unknown_tool", err
    assert "does not list" in err["message"]


def test_server_without_tools_answers_itself_under_warn(make_daemon):
    d = _daemon(make_daemon, ["--no-tools"], pin_mode="warn")
    c = _session(d)
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32601  # the server's own answer


def test_a_pinned_tool_the_server_stops_listing_is_not_called(make_daemon, pins):
    """A manifest tool missing from the listing cannot be checked: under enforce it is refused,
    even though the server would still run it."""
    d = _daemon(make_daemon, tools={"echo": {"sha256": pins["echo"]}, "added": {"version": "1"}})
    c = _session(d)
    assert tool_text(c.call_tool("echo", {"text": "listed"})) == "listed"
    err = c.call_tool("added")["error"]  # in the manifest, not in the server's listing
    assert err["code"] == -32006 and "does not list" in err["message"], err


def test_duplicate_member_names_are_refused(make_daemon):
    """cJSON reads the first of two equal names, most parsers the last: a body naming a member
    twice is refused before anything is checked or forwarded."""
    d = _daemon(make_daemon, tools={"typed_calls": {}})
    c = _session(d)
    body = ('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"typed_calls",'
            '"arguments":{},"name":"typed","arguments":{"count":0}}}')
    r = d.request("POST", c.path, body.encode(), c.headers({"Content-Type": "application/json"}))
    assert r.status == 400, r
    assert r.json()["error"]["code"] == -32600
    assert int(tool_text(c.call_tool("typed_calls"))) == 0


def test_a_request_sent_as_a_notification_is_dropped(make_daemon):
    d = _daemon(make_daemon)
    c = _session(d)
    r = c.post({"jsonrpc": "2.0", "method": "tools/call",
                "params": {"name": "typed", "arguments": {"count": 1}}})
    assert r.status == 202, r
    d.wait_log("client_notification_dropped")
    assert int(tool_text(c.call_tool("typed_calls"))) == 0


def test_tools_call_without_a_string_name_is_refused(make_daemon):
    c = _session(_daemon(make_daemon))
    err = c.request("tools/call", {"name": ["typed"], "arguments": {"count": 1}})["error"]
    assert err["code"] == -32602, err
    assert int(tool_text(c.call_tool("typed_calls"))) == 0


def test_a_child_that_keeps_announcing_changes_does_not_starve_calls(make_daemon):
    """Every tools/list answer comes after a list_changed: each completed listing still judges
    the calls that waited for it."""
    c = _session(_daemon(make_daemon, ["--list-storm"]))
    t0 = time.monotonic()
    for i in range(3):
        assert tool_text(c.call_tool("echo", {"text": "t%d" % i})) == "t%d" % i
    assert time.monotonic() - t0 < 10


def test_a_failed_listing_is_tried_again(make_daemon):
    """The first listing fails: calls are refused under enforce, and a call a few seconds later
    starts a new listing that succeeds."""
    d = _daemon(make_daemon, ["--list-error-first", "1"])
    c = _session(d)
    assert c.call_tool("echo", {"text": "x"})["error"]["code"] == -32015

    def served():
        m = c.call_tool("echo", {"text": "again"})
        return "result" in m and tool_text(m) == "again"
    wait_for(served, timeout=15, interval=0.5, what="a call served after the listing is retried")


def test_held_calls_are_refused_when_the_listing_never_ends(make_daemon):
    d = _daemon(make_daemon, ["--list-hang"], limits={"spawn_timeout_ms": 1000})
    c = _session(d)
    t0 = time.monotonic()
    err = c.call_tool("echo", {"text": "x"})["error"]
    assert err["code"] == -32015, err
    assert time.monotonic() - t0 < 8


def test_a_held_call_can_be_cancelled(make_daemon):
    """While the listing hangs, a tools/call waits; notifications/cancelled answers it at once
    (the child never saw it)."""
    import threading
    d = _daemon(make_daemon, ["--list-hang"], limits={"spawn_timeout_ms": 8000})
    c = _session(d)
    out = {}

    def call():
        out["m"] = c.request("tools/call", {"name": "echo", "arguments": {"text": "x"}},
                             rid="held-1")
    t = threading.Thread(target=call)
    t0 = time.monotonic()
    t.start()
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
              "params": {"requestId": "held-1", "reason": "test"}}
    while t.is_alive() and time.monotonic() - t0 < 6:
        assert c.post(cancel).status == 202
        t.join(0.1)
    t.join(1)
    assert "m" in out, "the held call was not answered"
    assert out["m"]["error"]["code"] == -32800, out["m"]
    assert time.monotonic() - t0 < 6


@pytest.mark.parametrize("body,why", [
    (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"typed_calls"}} '
     b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"typed",'
     b'"arguments":{"count":1}}}', "after the JSON value"),
    (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"typed",'
     b'"arguments":{"count":1,"name":"ab\\u0000cdefgh"}}}', "NUL"),
])
def test_bodies_another_parser_reads_differently_are_refused(make_daemon, body, why):
    """A second value after the first, or a NUL that ends cJSON's string early: the checks would
    not see what the server reads, so the body is refused whole."""
    d = _daemon(make_daemon)
    c = _session(d)
    r = d.request("POST", c.path, body, c.headers({"Content-Type": "application/json"}))
    assert r.status == 400, r
    assert why in r.json()["error"]["message"]
    assert int(tool_text(c.call_tool("typed_calls"))) == 0
