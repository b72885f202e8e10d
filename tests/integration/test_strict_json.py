"""
Strict JSON at both boundaries. A client body (a POST, a batch, a legacy SSE POST) or a child's
output line that is not JSON under RFC 8259 and I-JSON (RFC 7493) is refused before any parser
builds a value from it: leading zeros, bytes that are not UTF-8, raw control characters in strings,
whitespace other than space, tab, LF and CR, a byte order mark, a lone surrogate escape, a number
literal over 1000 characters. cJSON alone would read each of them, and the child would get the
original bytes: a stricter parser there could refuse them or read another value than the checks.

A client gets HTTP 400 with JSON-RPC -32700 naming the rule and the byte offset; the child never
sees the body. A child's line is dropped and logged as child_malformed_line; an answer fails its
request at once (invalid_result).
"""
import binascii
import json
import time

import pytest

from conftest import McpClient, pid_alive, tool_text, wait_for
from test_legacy_sse import LegacyClient

HEAD = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"typed","arguments":'

# (name, arguments' bytes or a whole body, the bytes where it is refused, a word of the reason)
BAD_BODIES = [
    ("leading zero", HEAD + b'{"count":01}}}', b"01}", "leading zero"),
    ("invalid UTF-8", HEAD + b'{"count":1,"name":"x\xff\xfe"}}}', b"\xff", "UTF-8"),
    ("overlong UTF-8", HEAD + b'{"count":1,"name":"\xc0\xaf"}}}', b"\xc0", "overlong"),
    ("surrogate in UTF-8", HEAD + b'{"count":1,"name":"\xed\xa0\x80"}}}', b"\xed",
     "surrogate encoded in UTF-8"),
    ("above U+10FFFF", HEAD + b'{"count":1,"name":"\xf4\x90\x80\x80"}}}', b"\xf4",
     "above U+10FFFF"),
    ("noncharacter", HEAD + b'{"count":1,"name":"\xef\xbf\xbe"}}}', b"\xef", "noncharacter"),
    ("raw control character", HEAD + b'{"count":1,"name":"a\x01b"}}}', b"\x01",
     "raw control character"),
    ("raw tab in a string", HEAD + b'{"count":1,"name":"a\tb"}}}', b"\t",
     "raw control character"),
    ("vertical tab as whitespace", HEAD + b'{"count":1,\x0b"name":"ab"}}}', b"\x0b",
     "control character outside a string"),
    ("form feed after the value", HEAD + b'{"count":1}}}\x0c', b"\x0c",
     "control character outside a string"),
    ("NUL after the value", HEAD + b'{"count":1}}}\x00', b"\x00",
     "control character outside a string"),
    ("byte order mark", b"\xef\xbb\xbf" + HEAD + b'{"count":1}}}', b"\xef\xbb\xbf",
     "byte order mark"),
    ("50,000-digit number", HEAD + b'{"count":' + b"1" * 50000 + b"}}}", b"1" * 50000,
     "longer than 1000 characters"),
    ("lone surrogate escape", HEAD + b'{"count":1,"name":"\\ud800"}}}', b"\\ud800",
     "lone UTF-16 surrogate"),
    ("invalid escape", HEAD + b'{"count":1,"name":"\\q"}}}', b"\\q", "invalid escape"),
    ("trailing comma", HEAD + b'{"count":1,}}}', b"}}}", "member name"),
]


def _typed_calls(c):
    return int(tool_text(c.call_tool("typed_calls")))


def _refused(r, body, marker, word):
    """HTTP 400, JSON-RPC -32700 with id null, the message naming the rule and the offset."""
    assert r.status == 400, r
    m = r.json()
    assert m["id"] is None and m["error"]["code"] == -32700, m
    msg = m["error"]["message"]
    assert word in msg, msg
    assert "at byte %d" % body.index(marker) in msg, msg
    return m


def test_bodies_outside_strict_json_are_refused_and_never_forwarded(client):
    """Every body is a call of the typed tool, which counts the calls it gets: none arrives, and
    the session goes on serving good bodies."""
    c = client
    h = c.headers({"Content-Type": "application/json"})
    for name, body, marker, word in BAD_BODIES:
        r = c.d.request("POST", c.path, body, h)
        try:
            _refused(r, body, marker, word)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (name, e)) from None
    assert _typed_calls(c) == 0
    r = c.d.request("POST", c.path, HEAD + b'{"count":1,"name":"\xc3\xa9\\u00e9"}}}', h)
    assert r.status == 200, r
    assert json.loads(tool_text(c.parse(r))) == {"count": 1, "name": "\u00e9\u00e9"}
    assert _typed_calls(c) == 1


def test_numbers_the_grammar_allows_still_pass(client):
    """-0, exponents, 1e999 and a literal of exactly 1000 characters follow the grammar: they
    pass the judge (and then meet the schema and the id rules as before)."""
    c = client
    h = c.headers({"Content-Type": "application/json"})
    r = c.d.request("POST", c.path, HEAD + b'{"count":1.0e0}}}', h)
    assert r.status == 200 and "result" in c.parse(r), r
    r = c.d.request("POST", c.path, HEAD + b'{"count":1e999}}}', h)
    assert r.status == 200, r
    long_ok = b"1" + b"0" * 999
    r = c.d.request("POST", c.path, HEAD + b'{"count":' + long_ok + b"}}}", h)
    assert r.status == 200, r
    r = c.d.request("POST", c.path, b'{"jsonrpc":"2.0","id":-0,"method":"ping"}', h)
    assert r.status == 200, r


def test_an_initialize_outside_strict_json_starts_nothing(daemon):
    body = (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":0,"method":"initialize","params":'
            b'{"protocolVersion":"2025-11-25","capabilities":{},'
            b'"clientInfo":{"name":"pytest","version":"1"}}}')
    r = daemon.request("POST", "/servers/ts/mcp", body, {"Content-Type": "application/json"})
    _refused(r, body, b"\xef\xbb\xbf", "byte order mark")
    assert r.header("Mcp-Session-Id") is None
    assert daemon.spawned_pids() == []


def test_a_batch_with_one_bad_element_is_refused_whole(daemon):
    c = McpClient(daemon)
    c.initialize("2025-03-26")
    body = (b'[{"jsonrpc":"2.0","id":1,"method":"ping"},' + HEAD + b'{"count":01}}}]')
    r = daemon.request("POST", c.path, body, c.headers({"Content-Type": "application/json"}))
    _refused(r, body, b"01}", "leading zero")
    assert _typed_calls(c) == 0


def test_legacy_sse_posts_are_judged_alike(daemon):
    c = LegacyClient(daemon)
    c.initialize()
    body = HEAD + b'{"count":1,"name":"x\xff"}}}'
    r = daemon.request("POST", c.endpoint, body, {"Content-Type": "application/json"})
    _refused(r, body, b"\xff", "UTF-8")
    m = c.rpc(8, "tools/call", {"name": "typed_calls", "arguments": {}})
    assert tool_text(m) == "0", m  # the stream carried nothing for id 7
    c.close()


# ---- child output ---------------------------------------------------------------------------

LOG = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":'

# (name, the line the child writes, the bytes where it is refused, a word of the reason)
BAD_LINES = [
    ("leading zero", LOG + b"01}}", b"01}", "leading zero"),
    ("invalid UTF-8", LOG + b'"x\xff\xfe"}}', b"\xff", "UTF-8"),
    ("raw control character", LOG + b'"a\x1bb"}}', b"\x1b", "raw control character"),
    ("byte order mark", b"\xef\xbb\xbf" + LOG + b'"x"}}', b"\xef\xbb\xbf", "byte order mark"),
    ("lone surrogate escape", LOG + b'"\\udc00"}}', b"\\udc00", "lone UTF-16 surrogate"),
    ("vertical tab as whitespace", LOG + b'\x0b"x"}}', b"\x0b", "control character outside"),
    ("2,000-digit number", LOG + b"9" * 2000 + b"}}", b"9" * 2000, "longer than 1000"),
]


def _raw_line(c, line, **extra):
    args = {"hex": binascii.hexlify(line).decode()}
    args.update(extra)
    r = c.post({"jsonrpc": "2.0", "id": "raw", "method": "tools/call",
                "params": {"name": "raw_line", "arguments": args}})
    assert r.status == 200, r
    return r


def test_a_good_raw_line_is_forwarded(client):
    """The lever works: a valid log message written during the call reaches the caller."""
    r = _raw_line(client, LOG + b'"hello"}}')
    assert r.content_type == "text/event-stream", r
    assert b"hello" in r.body
    assert tool_text(client.parse(r)) == "after raw_line"


@pytest.mark.parametrize("name,line,marker,word", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_child_lines_outside_strict_json_are_dropped_and_logged(client, name, line, marker,
                                                                word):
    d = client.d
    pid = wait_for(lambda: d.spawned_pids(), what="a spawned child")[-1]
    mark = d.mark()
    r = _raw_line(client, line)
    # Nothing related reached the caller: the answer is plain JSON, the call's own.
    assert r.content_type == "application/json", r
    assert tool_text(r.json()) == "after raw_line"
    m = d.wait_log(r'child_malformed_line server=ts tenant=acme pid=%d reason="not valid JSON: '
                   r'[^"]*%s[^"]* at byte %d"' % (pid, word, line.index(marker)), start=mark)
    assert m is not None
    assert pid_alive(pid)


def test_a_child_answer_outside_strict_json_fails_its_call_at_once(client):
    """An answer with a leading zero is not forwarded; the call fails now, not at its timeout."""
    d = client.d
    mark = d.mark()
    t0 = time.monotonic()
    r = _raw_line(client, b'"result":{"content":[{"type":"text","text":"n"}],"n":01}}',
                  answer=True)
    m = client.parse(r)
    assert m["id"] == "raw" and m["error"]["code"] == -32012, m
    assert m["error"]["data"]["type"] == "invalid_result", m
    assert time.monotonic() - t0 < 5
    d.wait_log(r'child_malformed_line .*reason="not valid JSON: a number with a leading zero',
               start=mark)
    assert tool_text(client.call_tool("echo", {"text": "still"})) == "still"
