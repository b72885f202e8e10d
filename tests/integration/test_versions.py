"""Tool versions ([contracts] item 3): tools/list shows each manifest version in
_meta["mcpvisor/version"]; a call pinned to another version gets -32011 version_mismatch and never
reaches the server."""

import time

from conftest import McpClient, default_manifests, manifest, tool_text


def _daemon(make_daemon):
    ms = default_manifests()
    ms["ts"] = manifest("ts", tools={"echo": {"version": "3"}, "add": {"version": "1"}},
                        unlisted_tools="allow")
    return make_daemon(manifests=ms)


def _pinned_call(c, tool, args, version):
    return c.request("tools/call", {"name": tool, "arguments": args,
                                    "_meta": {"mcpvisor/version": version}})


def test_tools_list_shows_manifest_versions(make_daemon):
    c = McpClient(_daemon(make_daemon))
    c.initialize()
    tools = {t["name"]: t for t in c.request("tools/list")["result"]["tools"]}
    assert tools["echo"]["_meta"]["mcpvisor/version"] == "3"
    assert tools["add"]["_meta"]["mcpvisor/version"] == "1"
    # a tool the manifest does not version carries no version of ours
    assert "mcpvisor/version" not in tools["env"].get("_meta", {})


def test_matching_version_pin_is_served(make_daemon):
    c = McpClient(_daemon(make_daemon))
    c.initialize()
    assert tool_text(_pinned_call(c, "echo", {"text": "v3"}, "3")) == "v3"


def test_other_version_pin_is_refused_before_the_server(make_daemon):
    d = _daemon(make_daemon)
    c = McpClient(d)
    c.initialize()
    m = _pinned_call(c, "echo", {"text": "never"}, "2")
    err = m["error"]
    assert err["code"] == -32011
    assert err["data"]["type"] == "version_mismatch"
    assert err["data"]["tool"] == "echo" and err["data"]["tool_version"] == "3"
    assert "version 3" in err["message"]
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


def test_refused_pin_never_reaches_the_server(make_daemon):
    """The test server answers in order: had the pinned `slow` call been forwarded, the echo
    after it would wait its 4 s."""
    c = McpClient(_daemon(make_daemon))
    c.initialize()
    assert _pinned_call(c, "slow", {"ms": 4000}, "9")["error"]["code"] == -32011
    t0 = time.monotonic()
    assert tool_text(c.call_tool("echo", {"text": "fast"})) == "fast"
    assert time.monotonic() - t0 < 2.0


def test_pin_on_an_unversioned_tool_is_refused(make_daemon):
    c = McpClient(_daemon(make_daemon))
    c.initialize()
    err = _pinned_call(c, "env", {}, "1")["error"]
    assert err["code"] == -32011 and err["data"]["type"] == "version_mismatch"
    assert "tool_version" not in err["data"]
