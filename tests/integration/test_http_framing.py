"""The HTTP layer's own refusals and deadlines: every answer mcpvisor gives before a request
reaches routing is a JSON-RPC error body with the documented status; heads another parser could
read differently are refused; a head or body has an absolute deadline; connections are capped
per address from accept."""
import json
import select
import socket
import time

from conftest import LATEST, bearer, wait_for

INIT_PARAMS = {"protocolVersion": LATEST, "capabilities": {},
               "clientInfo": {"name": "pytest", "version": "1"}}

HOST_OK = "127.0.0.1"


def _connect(d, source=None, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source is not None:
        s.bind((source, 0))
    s.connect(("127.0.0.1", d.port))
    return s


class Raw:
    """One parsed response read from a raw socket (status, lower-cased headers, body bytes)."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:200])


def _read_response(s, buf=b"", head_only=False):
    """Reads one response from s (Content-Length or close-delimited); returns (Raw, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response head: %r" % buf)
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if head_only or status in (100, 204, 304):
        return Raw(status, headers, b""), buf
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return Raw(status, headers, buf[:n]), buf[n:]
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return Raw(status, headers, buf), b""
        buf += chunk


def exchange(d, data, source=None):
    s = _connect(d, source)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(s)[0]
    finally:
        s.close()


def assert_json_refusal(r, status, code=-32600, says=None):
    assert r.status == status, r
    assert r.headers.get("content-type") == "application/json", r
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None, body
    assert body["error"]["code"] == code, body
    if says is not None:
        assert says in body["error"]["message"], body


def head(method="GET", path="/healthz", version="HTTP/1.1", fields=None, host=True):
    lines = ["%s %s %s" % (method, path, version)]
    if host:
        lines.append("Host: %s" % HOST_OK)
    lines += fields or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_oversized_token_is_431_json_and_spawns_nothing(daemon):
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT_PARAMS})
    data = head("POST", "/servers/ts/mcp", fields=[
        "Authorization: Bearer " + "t" * 20000, "Content-Type: application/json",
        "Accept: application/json, text/event-stream", "Content-Length: %d" % len(init)])
    r = exchange(daemon, data + init.encode())
    assert_json_refusal(r, 431, says="limits.max_header_bytes")
    assert r.headers.get("connection") == "close"
    assert daemon.log_lines("msg=spawned") == []
    assert daemon.request("GET", "/healthz", key=None).status == 200


BAD_HEADS = [
    # (what, bytes, status, words in the message)
    ("request line without a version", b"GET /healthz\r\nHost: 127.0.0.1\r\n\r\n", 400,
     "request line"),
    ("unknown method", head("BREW"), 501, "not implemented"),
    ("HTTP/2.0 in a request line", head(version="HTTP/2.0"), 505, "HTTP/1.0 and HTTP/1.1"),
    ("an expectation other than 100-continue", head(fields=["Expect: 200-ok"]), 417,
     "expectation"),
    ("two Content-Length headers",
     head("POST", fields=["Content-Length: 0", "Content-Length: 5"]), 400, "twice"),
    ("Content-Length with a sign", head("POST", fields=["Content-Length: +0"]), 400,
     "Content-Length"),
    ("Content-Length and Transfer-Encoding",
     head("POST", fields=["Content-Length: 0", "Transfer-Encoding: chunked"]), 400,
     "Transfer-Encoding"),
    ("a transfer coding other than chunked", head("POST", fields=["Transfer-Encoding: gzip"]),
     501, "chunked"),
    ("obs-fold", head(fields=["X-A: 1", " 2"]), 400, "folding"),
    ("bare LF", b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n", 400, "CRLF"),
    ("two Host headers", head(fields=["Host: 127.0.0.1"]), 400, "twice"),
    ("NUL in Host", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\x00.evil.com\r\n\r\n", 400, "NUL"),
    ("absolute-form naming another host",
     head(path="http://evil.example/healthz"), 400, "another host"),
    ("userinfo in Host", head(host=False, fields=["Host: 127.0.0.1:1@attacker.example"]), 400,
     "Host"),
    ("no Host in HTTP/1.1", head(host=False), 400, "Host"),
]


def test_every_framing_refusal_is_json(daemon):
    for what, data, status, says in BAD_HEADS:
        r = exchange(daemon, data)
        try:
            assert_json_refusal(r, status)
            assert says.lower() in r.json()["error"]["message"].lower()
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e))
    assert daemon.request("GET", "/healthz", key=None).status == 200


INIT_BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": INIT_PARAMS}).encode()

# Heads a proxy in front of mcpvisor could read differently (RFC 9112 §6.3, §5.2, §2.2, §3.2):
# (what, header fields besides Host and Authorization, status, words in the message, body).
# Each carries a well-formed initialize, so a head that slipped through would start a session.
SMUGGLING = [
    ("two equal Content-Length headers",
     ["Content-Length: %d" % len(INIT_BODY)] * 2, 400, "twice"),
    ("two different Content-Length headers",
     ["Content-Length: %d" % len(INIT_BODY), "Content-Length: 0"], 400, "twice"),
    ("a Content-Length list", ["Content-Length: %d, %d" % (len(INIT_BODY), len(INIT_BODY))],
     400, "Content-Length"),
    ("a signed Content-Length", ["Content-Length: +%d" % len(INIT_BODY)], 400, "Content-Length"),
    ("a negative Content-Length", ["Content-Length: -1"], 400, "Content-Length"),
    ("whitespace inside Content-Length", ["Content-Length: 1 2"], 400, "Content-Length"),
    ("a hexadecimal Content-Length", ["Content-Length: 0x10"], 400, "Content-Length"),
    ("an overflowing Content-Length", ["Content-Length: 18446744073709551617"], 400,
     "Content-Length"),
    ("Content-Length with Transfer-Encoding",
     ["Content-Length: %d" % len(INIT_BODY), "Transfer-Encoding: chunked"], 400,
     "Transfer-Encoding"),
    ("two Transfer-Encoding headers",
     ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], 400, "twice"),
    ("chunked twice", ["Transfer-Encoding: chunked, chunked"], 501, "chunked"),
    ("a coding before chunked", ["Transfer-Encoding: gzip, chunked"], 501, "chunked"),
    ("a name like chunked", ["Transfer-Encoding: xchunked"], 501, "chunked"),
    ("chunked with a parameter", ["Transfer-Encoding: chunked;q=1"], 501, "chunked"),
    ("obs-fold", ["Content-Length: %d" % len(INIT_BODY), "X-A: 1", " Content-Length: 0"],
     400, "folding"),
    ("obs-fold by a tab", ["Content-Length: %d" % len(INIT_BODY), "X-A: 1", "\tX-B: 2"], 400,
     "folding"),
    ("whitespace before the colon", ["Content-Length : %d" % len(INIT_BODY)], 400, "token"),
    ("a control byte in a header name", ["Content\x01Length: %d" % len(INIT_BODY)], 400,
     "token"),
    ("a space in a header name", ["Content Length: %d" % len(INIT_BODY)], 400, "token"),
    ("a separator in a header name", ["X(a): 1", "Content-Length: %d" % len(INIT_BODY)], 400,
     "token"),
    ("a control byte in a header value",
     ["X-A: 1\x0b2", "Content-Length: %d" % len(INIT_BODY)], 400, "control"),
    ("DEL in a header value", ["X-A: 1\x7f", "Content-Length: %d" % len(INIT_BODY)], 400,
     "control"),
    ("a bare CR in a header value",
     ["X-A: 1\rContent-Length: 0", "Content-Length: %d" % len(INIT_BODY)], 400, "CRLF"),
    ("a NUL in a header value", ["X-A: 1\x002", "Content-Length: %d" % len(INIT_BODY)], 400,
     "NUL"),
]


def smuggle(d, fields, path="/servers/ts/mcp", host="127.0.0.1:%d", line_end="\r\n",
            body=INIT_BODY, version="HTTP/1.1"):
    lines = ["POST %s %s" % (path, version)]
    if host is not None:
        lines.append("Host: " + (host % d.port if "%d" in host else host))
    lines += ["Authorization: Bearer " + bearer("alice"), "Content-Type: application/json",
              "Accept: application/json, text/event-stream"] + fields
    data = (line_end.join(lines) + line_end + line_end).encode("latin-1") + body
    s = _connect(d)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r, rest = _read_response(s)
        # the connection closes after the refusal: nothing more is read from it as a request
        closed = rest == b"" and s.recv(100) == b""
    finally:
        s.close()
    return r, closed


def test_smuggling_forms_are_refused_and_reach_no_session(daemon):
    cases = SMUGGLING + [
        ("a bare LF ending a header line", None, 400, "CRLF"),
        ("Transfer-Encoding in HTTP/1.0", None, 400, "HTTP/1.0"),
        ("absolute-form naming another host", None, 400, "another host"),
        ("absolute-form with userinfo", None, 400, "another host"),
        ("two Host headers", None, 400, "twice"),
    ]
    for what, fields, status, says in cases:
        if what == "a bare LF ending a header line":
            r, closed = smuggle(daemon, ["Content-Length: %d" % len(INIT_BODY)], line_end="\n")
        elif what == "Transfer-Encoding in HTTP/1.0":
            r, closed = smuggle(daemon, ["Transfer-Encoding: chunked"], version="HTTP/1.0",
                                body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY))
        elif what == "absolute-form naming another host":
            r, closed = smuggle(daemon, ["Content-Length: %d" % len(INIT_BODY)],
                                path="http://evil.example/servers/ts/mcp")
        elif what == "absolute-form with userinfo":
            r, closed = smuggle(daemon, ["Content-Length: %d" % len(INIT_BODY)],
                                path="http://127.0.0.1:%d@evil.example/servers/ts/mcp"
                                % daemon.port)
        elif what == "two Host headers":
            r, closed = smuggle(daemon, ["Host: evil.example",
                                         "Content-Length: %d" % len(INIT_BODY)])
        else:
            r, closed = smuggle(daemon, fields)
        try:
            assert_json_refusal(r, status)
            assert says.lower() in r.json()["error"]["message"].lower()
            assert r.headers.get("connection") == "close", r
            assert closed
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e))
    daemon.synced_mark()  # every line the refusals could have caused has been read
    assert daemon.log_lines("msg=spawned") == []
    assert daemon.log_lines("session_start") == []
    # the same request, well framed, is served
    r, _ = smuggle(daemon, ["Content-Length: %d" % len(INIT_BODY), "Connection: close"])
    assert r.status == 200, r


def test_chunk_lines_and_trailers_are_strict(daemon):
    """A chunk line or trailer another parser could end or read differently is refused."""
    half = len(INIT_BODY) // 2
    good = b"%x\r\n%s\r\n%x\r\n%s\r\n" % (half, INIT_BODY[:half], len(INIT_BODY) - half,
                                             INIT_BODY[half:])
    for what, body, says in (
            ("a bare CR in a chunk extension",
             b"%x;a\rb\r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY), "control"),
            ("a control byte in a chunk extension",
             b"%x;a=\x01\r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY), "control"),
            ("whitespace after a chunk size",
             b"%x \r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY), "hexadecimal"),
            ("a signed chunk size", b"+%x\r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY),
             "hexadecimal"),
            ("a chunk size with 0x", b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(INIT_BODY), INIT_BODY),
             "hexadecimal"),
            ("obs-fold in a trailer", good + b"0\r\nX-T: 1\r\n 2\r\n\r\n", "trailer"),
            ("a trailer name that is not a token", good + b"0\r\nX T: 1\r\n\r\n", "trailer"),
            ("a control byte in a trailer", good + b"0\r\nX-T: \x01\r\n\r\n", "control")):
        r, closed = smuggle(daemon, ["Transfer-Encoding: chunked"], body=body)
        try:
            assert_json_refusal(r, 400, says=None)
            assert says in r.json()["error"]["message"], r
            assert closed
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e))
    daemon.synced_mark()
    assert daemon.log_lines("msg=spawned") == []
    # an extension after optional whitespace, and a well-formed trailer, are read
    r, _ = smuggle(daemon, ["Transfer-Encoding: chunked", "Connection: close"],
                   body=b"%x ;ext=1\r\n%s\r\n0\r\nX-T: 1\r\n\r\n" % (len(INIT_BODY),
                                                                       INIT_BODY))
    assert r.status == 200, r


def test_body_over_limit_is_413_json_before_the_body(make_daemon):
    d = make_daemon(limits={"max_body_bytes": 2048})
    r = exchange(d, head("POST", "/servers/ts/mcp", fields=[
        "Authorization: Bearer " + bearer("alice"), "Content-Type: application/json",
        "Content-Length: 4096"]))
    assert_json_refusal(r, 413, says="limits.max_body_bytes")


def test_head_deadline_is_absolute(make_daemon):
    """A head dripped one byte at a time is cut at header_timeout_ms after accept, not kept
    alive by each byte."""
    d = make_daemon(limits={"header_timeout_ms": 1000})
    s = _connect(d)
    start = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ")
    got = b""
    try:
        while time.monotonic() - start < 8:
            ready, _, _ = select.select([s], [], [], 0.2)  # the drip interval
            if ready:
                chunk = s.recv(65536)
                got += chunk
                if not chunk or b"\r\n\r\n" in got:
                    break
                continue
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - start
        r, _ = _read_response(s, got)
    finally:
        s.close()
    assert_json_refusal(r, 408, says="limits.header_timeout_ms")
    assert 0.9 < elapsed < 3.0, elapsed


def test_silent_connection_and_idle_keepalive_are_closed(make_daemon):
    d = make_daemon(limits={"header_timeout_ms": 800, "keepalive_timeout_ms": 500})
    # nothing sent at all: closed without an answer
    s = _connect(d)
    start = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - start < 3.0
    s.close()
    # an answered connection left idle: closed without an answer
    s = _connect(d)
    s.sendall(head())
    r, rest = _read_response(s)
    assert r.status == 200 and rest == b""
    start = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - start < 3.0
    s.close()


def test_body_deadline(make_daemon):
    d = make_daemon(limits={"body_timeout_ms": 700})
    s = _connect(d)
    s.sendall(head("POST", "/servers/ts/mcp", fields=["Content-Length: 100"]) + b"{" * 10)
    start = time.monotonic()
    r, _ = _read_response(s)
    s.close()
    assert_json_refusal(r, 408, says="limits.body_timeout_ms")
    assert time.monotonic() - start < 3.0


def test_connections_capped_per_address_from_accept(make_daemon):
    d = make_daemon(limits={"max_connections_per_address": 2})
    held = [_connect(d), _connect(d)]  # never send a byte: counted from accept all the same
    wait_for(lambda: d.request("GET", "/healthz", key=None).status == 503, 5,
             what="the third connection from 127.0.0.1 refused")
    r = exchange(d, head())
    assert_json_refusal(r, 503, code=-32015, says="max_connections_per_address")
    assert r.headers.get("retry-after") == "1"
    # another address is not affected
    r = exchange(d, head(), source="127.0.0.2")
    assert r.status == 200, r
    for s in held:
        s.close()
    wait_for(lambda: exchange(d, head()).status == 200, 5, what="connections released")


def test_pipelined_requests_answered_in_order(daemon):
    s = _connect(daemon)
    s.sendall(head(path="/healthz") + head(path="/nope") + head(path="/healthz",
                                                              fields=["Connection: close"]))
    a, rest = _read_response(s)
    b, rest = _read_response(s, rest)
    c, rest = _read_response(s, rest)
    assert s.recv(10) == b""
    s.close()
    assert (a.status, b.status, c.status) == (200, 404, 200)
    assert c.headers.get("connection") == "close"


def test_head_method_and_http10(daemon):
    s = _connect(daemon)
    s.sendall(head("HEAD"))
    r, rest = _read_response(s, head_only=True)
    assert r.status == 200 and int(r.headers["content-length"]) > 0
    s.sendall(head())  # the same connection: HEAD sent no body to skip
    r, rest = _read_response(s, rest)
    assert r.status == 200 and r.json() == {"status": "ok"}
    s.close()
    # HTTP/1.0 without keep-alive: answered, then closed
    s = _connect(daemon)
    s.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    r, rest = _read_response(s)
    assert r.status == 200 and r.headers.get("connection") == "close"
    assert s.recv(10) == b""
    s.close()


def test_expect_100_continue(daemon):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": INIT_PARAMS}).encode()
    s = _connect(daemon)
    s.sendall(head("POST", "/servers/ts/mcp", fields=[
        "Authorization: Bearer " + bearer("alice"), "Content-Type: application/json",
        "Accept: application/json, text/event-stream", "Expect: 100-continue",
        "Content-Length: %d" % len(body)]))
    interim, rest = _read_response(s)
    assert interim.status == 100
    s.sendall(body)
    r, _ = _read_response(s, rest)
    s.close()
    assert r.status == 200, r
    assert r.headers.get("mcp-session-id")


def test_chunked_body_with_trailer(daemon):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": INIT_PARAMS}).encode()
    half = len(body) // 2
    chunked = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (
        half, body[:half], len(body) - half, body[half:])
    r = exchange(daemon, head("POST", "/servers/ts/mcp", fields=[
        "Authorization: Bearer " + bearer("alice"), "Content-Type: application/json",
        "Accept: application/json, text/event-stream", "Transfer-Encoding: chunked"]) + chunked)
    assert r.status == 200, r
    # a chunk line ended by a bare LF is refused
    r = exchange(daemon, head("POST", "/servers/ts/mcp", fields=[
        "Authorization: Bearer " + bearer("alice"), "Content-Type: application/json",
        "Accept: application/json, text/event-stream", "Transfer-Encoding: chunked"])
        + b"2\n{}\r\n0\r\n\r\n")
    assert_json_refusal(r, 400, says="CRLF")
