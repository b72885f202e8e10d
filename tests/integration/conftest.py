"""
Integration-test harness for mcpvisor: starts the real daemon on an ephemeral port with a
temporary configuration, and drives it over HTTP with the standard library only.

MCPVISOR_BUILD picks the build directory (default: the repository's build/), so the same suite
runs against the ASan/UBSan build (MCPVISOR_BUILD=build-asan). Every daemon a test started is
stopped with SIGTERM on teardown, and the test fails if its log holds a sanitizer report.
"""
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("MCPVISOR_BUILD", os.path.join(REPO, "build")))
MCPVISOR = os.path.join(BUILD, "mcpvisor")
TESTSERVER = os.path.join(BUILD, "tests", "servers", "testserver")

ACCEPT_BOTH = "application/json, text/event-stream"
LATEST = "2025-11-25"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")

# Fixed, obviously fake keys; the daemon stores only their SHA-256.
KEYS = {
    "alice": ("mcpv_test_alice_0123456789abcdefghijklmnop", "acme", "alice", "ci-bot"),
    "bob": ("mcpv_test_bob_0123456789abcdefghijklmnopqrs", "acme", "bob", None),
    "carol": ("mcpv_test_carol_0123456789abcdefghijklmnopq", "other", "carol", None),
}


def bearer(key):
    """The bearer token for `key`: the API key of a KEYS name, else key itself (a JWT, say)."""
    return KEYS[key][0] if key in KEYS else key


def _tail(lines, n=25):
    return "\n".join(l[:300] for l in lines[-n:])


def wait_for(cond, timeout=5.0, interval=0.02, what="condition"):
    """Polls cond() until it returns a truthy value (returned) or the deadline passes (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def pid_alive(pid):
    """True while /proc/pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the ")" that closes comm
    return stat[stat.rindex(")") + 2] not in ("Z", "X")


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


# ---- SSE ------------------------------------------------------------------------------------


class SSEEvent:
    def __init__(self, id=None, event=None, data="", retry=None):
        self.id, self.event, self.data, self.retry = id, event, data, retry

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return "SSEEvent(id=%r, event=%r, retry=%r, data=%r)" % (
            self.id, self.event, self.retry, self.data[:200])


class SSEReader:
    """Reads events incrementally from an http.client response (chunked or not)."""

    def __init__(self, resp, timeout=5.0):
        self.resp = resp
        self.timeout = timeout
        self.eof = False

    def _readline(self, deadline):
        sock = getattr(self.resp, "_mcp_sock", None)
        if sock is not None:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            line = self.resp.readline()
        except (socket.timeout, TimeoutError):
            raise AssertionError("SSE: no event before the deadline")
        except (http.client.IncompleteRead, ConnectionError):
            line = b""
        return line

    def next(self, timeout=None):
        """The next event, or None at the end of the stream. Fails on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        ev = SSEEvent()
        data_lines = []
        seen = False
        while True:
            if self.eof:
                return None
            raw = self._readline(deadline)
            if raw == b"":
                self.eof = True
                if seen:
                    ev.data = "\n".join(data_lines)
                    return ev
                return None
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if seen:
                    ev.data = "\n".join(data_lines)
                    return ev
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            seen = True
            if field == "id":
                ev.id = value
            elif field == "event":
                ev.event = value
            elif field == "data":
                data_lines.append(value)
            elif field == "retry":
                ev.retry = value

    def messages(self, timeout=None):
        """Yields the JSON messages of the non-empty events until the stream ends."""
        while True:
            ev = self.next(timeout)
            if ev is None:
                return
            if ev.data:
                yield ev.json()

    def until_response(self, rid, timeout=None):
        """Reads events until the JSON-RPC response with id rid; returns (events, response)."""
        events = []
        while True:
            ev = self.next(timeout)
            if ev is None:
                raise AssertionError("stream ended before the response to %r; got %r" % (rid, events))
            events.append(ev)
            if ev.data:
                m = ev.json()
                if isinstance(m, dict) and m.get("id") == rid and ("result" in m or "error" in m):
                    return events, m


# ---- HTTP -----------------------------------------------------------------------------------


class Reply:
    """A finished HTTP exchange: status, headers (case-insensitive), body bytes."""

    def __init__(self, resp, body):
        self.status = resp.status
        self.headers = resp.headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)

    @property
    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def __repr__(self):
        return "Reply(%d, %r, %r)" % (self.status, dict(self.headers), self.body[:300])


class Daemon:
    def __init__(self, tmp_path, config, manifests, keys, proc_env=None, nofile=None, fsize=None):
        self.dir = tmp_path
        self.config = config
        self.lines = []
        self.cond = threading.Condition()
        self.port = None
        self.proc = None
        self.front_pid = None
        self.stopped = False
        self.config_path = str(tmp_path / "mcpvisor.json")
        (tmp_path / "servers").mkdir(exist_ok=True)
        for name, m in manifests.items():
            (tmp_path / "servers" / (name + ".json")).write_text(json.dumps(m))
        records = []
        for who in keys:
            key, tenant, user, agent = KEYS[who]
            rec = {"sha256": sha256_hex(key), "tenant": tenant, "user": user, "scopes": []}
            if agent is not None:
                rec["agent"] = agent
            records.append(rec)
        (tmp_path / "api-keys.json").write_text(json.dumps({"keys": records}))
        (tmp_path / "mcpvisor.json").write_text(json.dumps(config))
        self.proc_env = proc_env
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) to start the daemon under
        self.fsize = fsize  # RLIMIT_FSIZE (soft and hard), bytes
        # HTTPS listeners: set tls_context (an ssl.SSLContext) and conn() speaks TLS to tls_host
        self.tls_context = None
        self.tls_host = "127.0.0.1"

    # -- process --

    def start(self, timeout=10.0):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if self.proc_env:
            env.update(self.proc_env)
        limit, fsize = self.nofile, self.fsize

        def preexec():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        self.proc = subprocess.Popen(
            [MCPVISOR, "run", "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env, cwd=str(self.dir), preexec_fn=preexec)
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        self.wait_log(r"msg=ready\b", timeout)
        self.listeners = [(int(p), a == "1") for p, a in re.findall(
            r"msg=listening address=\S+:(\d+) admin=(\d)", self.log)]
        self.port = next(p for p, admin in self.listeners if not admin)
        m = self.wait_log(r"front_pid=(\d+)", timeout)
        self.front_pid = int(m.group(1))
        return self

    def _read_log(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def log_lines(self, pattern=None):
        with self.cond:
            lines = list(self.lines)
        if pattern is None:
            return lines
        rx = re.compile(pattern)
        return [l for l in lines if rx.search(l)]

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Waits for a log line (at index >= start) matching pattern; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no log line matching %r within %.1fs; log:\n%s"
                                         % (pattern, timeout, _tail(self.lines)))
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise AssertionError("daemon exited (%r) before a log line matching %r; log:\n%s"
                                         % (self.proc.returncode, pattern, _tail(self.lines)))
                self.cond.wait(min(left, 0.1))

    def mark(self):
        with self.cond:
            return len(self.lines)

    def synced_mark(self):
        """Like mark(), once every line the daemon wrote before now has been read: the front
        logs a refused request for a unique name, and all earlier lines (of the parent too, on
        the same pipe) come before it. Needs a daemon without anonymous access."""
        self.sync_n = getattr(self, "sync_n", 0) + 1
        name = "sync-%d" % self.sync_n
        r = self.request("POST", "/servers/%s/mcp" % name, b"{}", key=None)
        assert r.status == 401, r
        rx = re.compile(r"msg=auth_failed .*server=%s\b" % name)
        self.wait_log(rx.pattern, 5)
        with self.cond:
            return next(i for i, l in enumerate(self.lines) if rx.search(l)) + 1

    def spawned_pids(self):
        return [int(m) for m in re.findall(r"msg=spawned .*?pid=(\d+)", self.log)]

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc is None or self.stopped:
            return self.proc.returncode if self.proc else None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop within %.0fs after signal %d" % (timeout, sig))
        self.reader.join(5)
        return self.proc.returncode

    def sanitizer_reports(self):
        return [l for l in self.log_lines() if any(s in l for s in SANITIZER_MARKERS)]

    # -- HTTP --

    def conn(self, timeout=10.0):
        if self.tls_context is not None:
            return http.client.HTTPSConnection(self.tls_host, self.port, timeout=timeout,
                                               context=self.tls_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, key="alice", timeout=10.0):
        """One request on a fresh connection; returns a Reply with the whole body read."""
        c = self.conn(timeout)
        try:
            resp = self.open(c, method, path, body, headers, key)
            return Reply(resp, resp.read())
        finally:
            c.close()

    def open(self, c, method, path, body=None, headers=None, key="alice"):
        """Sends a request on connection c and returns the response without reading the body."""
        h = {}
        if key is not None:
            h["Authorization"] = "Bearer " + bearer(key)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        if method == "POST":
            h.setdefault("Accept", ACCEPT_BOTH)
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        c.request(method, path, body=body, headers=h)
        resp = c.getresponse()
        resp._mcp_sock = c.sock
        return resp


def raw_exchange(daemon, method, path, headers, data=b"", key="alice", timeout=10.0):
    """Sends a request head (and any bytes of body) on a raw socket and reads the response.
    For refusals the server gives before reading a body: sending no more than it reads avoids a
    TCP reset racing the answer."""
    h = dict(headers)
    h.setdefault("Host", "127.0.0.1:%d" % daemon.port)
    if key is not None:
        h.setdefault("Authorization", "Bearer " + bearer(key))
    head = "%s %s HTTP/1.1\r\n%s\r\n" % (
        method, path, "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None))
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
    try:
        try:
            s.sendall(head.encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed early: read what it said
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return Reply(resp, resp.read())
    finally:
        s.close()


class McpClient:
    """A Streamable HTTP client bound to one daemon, server and API key."""

    def __init__(self, daemon, server="ts", key="alice"):
        self.d = daemon
        self.server = server
        self.key = key
        self.sid = None
        self.proto = None
        self.next_id = 1

    @property
    def path(self):
        return "/servers/%s/mcp" % self.server

    def headers(self, extra=None):
        h = {}
        if self.sid is not None:
            h["Mcp-Session-Id"] = self.sid
        if self.proto is not None:
            h["MCP-Protocol-Version"] = self.proto
        h.update(extra or {})
        return h

    def initialize(self, proto=LATEST, send_initialized=True):
        r = self.d.request("POST", self.path, {
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": proto, "capabilities": {"sampling": {}},
                       "clientInfo": {"name": "pytest", "version": "1"}}}, key=self.key)
        assert r.status == 200, r
        msg = self.parse(r)
        assert "result" in msg, msg
        self.sid = r.header("Mcp-Session-Id")
        assert self.sid, r
        self.proto = msg["result"]["protocolVersion"]
        if send_initialized:
            n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            assert n.status == 202, n
        return msg

    def post(self, msg, headers=None, key=None):
        return self.d.request("POST", self.path, msg, self.headers(headers),
                              key=self.key if key is None else key)

    def parse(self, reply):
        """The JSON-RPC answer of a POST reply, whether JSON or an SSE stream."""
        if reply.content_type == "application/json":
            return reply.json()
        assert reply.content_type == "text/event-stream", reply
        msgs = [json.loads(d) for d in sse_data(reply.body)]
        answers = [m for m in msgs if isinstance(m, dict) and ("result" in m or "error" in m)]
        assert answers, reply
        return answers[-1]

    def request(self, method, params=None, rid=None, headers=None):
        if rid is None:
            rid = self.next_id
            self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        r = self.post(msg, headers)
        assert r.status == 200, r
        return self.parse(r)

    def call_tool(self, name, args=None, **kw):
        return self.request("tools/call", {"name": name, "arguments": args or {}}, **kw)

    def stream_post(self, msg, timeout=10.0):
        """POSTs msg and returns (connection, response, SSEReader) without reading the body."""
        c = self.d.conn(timeout)
        resp = self.d.open(c, "POST", self.path, json.dumps(msg),
                           self.headers({"Content-Type": "application/json"}), key=self.key)
        return c, resp, SSEReader(resp)

    def open_get(self, headers=None, timeout=10.0):
        c = self.d.conn(timeout)
        h = self.headers({"Accept": "text/event-stream"})
        h.update(headers or {})
        resp = self.d.open(c, "GET", self.path, None, h, key=self.key)
        return c, resp, SSEReader(resp)

    def delete(self):
        return self.d.request("DELETE", self.path, None, self.headers(), key=self.key)


def sse_data(body):
    """The data fields of a complete SSE body, one string per event that had data."""
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        datas = [l[5:].lstrip(" ") if l.startswith("data:") else None for l in block.split("\n")]
        datas = [x for x in datas if x is not None]
        joined = "\n".join(datas)
        if joined:
            out.append(joined)
    return out


def sse_events(body):
    r = SSEReader(_BytesResp(body))
    evs = []
    while True:
        ev = r.next(1)
        if ev is None:
            return evs
        evs.append(ev)


class _BytesResp:
    def __init__(self, body):
        import io
        self.f = io.BytesIO(body)

    def readline(self):
        return self.f.readline()


def tool_text(msg):
    assert "result" in msg, msg
    return msg["result"]["content"][0]["text"]


# ---- configuration ------------------------------------------------------------------------------


def manifest(name, args=(), env=None, **extra):
    m = {"name": name, "version": "1", "command": [TESTSERVER] + list(args)}
    m["env"] = {"FOO": "bar"} if env is None else env
    m.update(extra)
    return m


def base_config(limits=None, **extra):
    cfg = {
        "listen": [{"address": "127.0.0.1:0"}],
        "manifests_dir": "servers",
        "auth": {"api_keys_file": "api-keys.json"},
        "tenants": {"acme": {"servers": ["ts", "crashy"]}, "other": {"servers": ["ts", "ts2"]}},
        "tenant_ids": {"state_file": "tenant-ids.json"},
        "limits": {"request_timeout_ms": 5000},
    }
    cfg["limits"].update(limits or {})
    cfg.update(extra)
    return cfg


def default_manifests():
    return {"ts": manifest("ts"), "ts2": manifest("ts2"),
            "crashy": manifest("crashy", ["--crash-on-start"])}


@pytest.fixture
def make_daemon(tmp_path):
    """make_daemon(limits=..., config=..., manifests=..., **config_keys) → a started Daemon."""
    started = []
    counter = [0]

    def make(limits=None, config=None, manifests=None, keys=("alice", "bob", "carol"), start=True,
             proc_env=None, nofile=None, fsize=None, **extra):
        counter[0] += 1
        d_dir = tmp_path / ("d%d" % counter[0])
        d_dir.mkdir()
        cfg = config if config is not None else base_config(limits, **extra)
        d = Daemon(d_dir, cfg, manifests if manifests is not None else default_manifests(), keys,
                   proc_env=proc_env, nofile=nofile, fsize=fsize)
        started.append(d)
        if start:
            d.start()
        return d

    yield make

    problems = []
    for d in started:
        if d.proc is None:
            continue
        try:
            d.stop()
        except AssertionError as e:
            problems.append(str(e))
        reports = d.sanitizer_reports()
        if reports:
            problems.append("sanitizer report in the daemon log:\n" + d.log)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()


@pytest.fixture
def client(daemon):
    c = McpClient(daemon)
    c.initialize()
    return c


# ---- OAuth resource server: JWT signing keys and tokens (python3-jwt, python3-cryptography) -----

ISS = "https://idp.test.example"
AUD = "https://mcp.test.example"
_KEY_CACHE = {}


def b64url(data):
    import base64
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """A private key, its JWS alg and its public JWK (with kid, use and alg)."""

    def __init__(self, kid, alg, private):
        from jwt import algorithms
        self.kid, self.alg, self.private = kid, alg, private
        cls = {"RS256": algorithms.RSAAlgorithm, "PS256": algorithms.RSAPSSAlgorithm,
               "ES256": algorithms.ECAlgorithm, "EdDSA": algorithms.OKPAlgorithm}[alg]
        self.jwk = json.loads(cls.to_jwk(private.public_key()))
        if alg == "ES256":
            # RFC 7518 6.2.1.2: x and y are exactly 32 bytes; some PyJWT versions drop leading
            # zero bytes (about one key in 128), which the daemon rightly refuses.
            nums = private.public_key().public_numbers()
            self.jwk.update(x=b64url(nums.x.to_bytes(32, "big")),
                            y=b64url(nums.y.to_bytes(32, "big")))
        self.jwk.update(kid=kid, use="sig", alg=alg)

    def public_pem(self):
        from cryptography.hazmat.primitives import serialization
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def signing_key(kid, alg="RS256"):
    """A key for alg (RS256, PS256, ES256, EdDSA), generated once per kid and test run."""
    if kid not in _KEY_CACHE:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        if alg in ("RS256", "PS256"):
            priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            priv = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            priv = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        _KEY_CACHE[kid] = SigningKey(kid, alg, priv)
    k = _KEY_CACHE[kid]
    assert k.alg == alg, (kid, k.alg, alg)
    return k


def jwks_doc(*keys):
    return {"keys": [k.jwk for k in keys]}


def token_claims(ttl=300, **over):
    """Default access-token claims (alice of acme through the agent "ide", demo:read and
    demo:write), with `over` applied; a value of None removes the claim."""
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "tenant": "acme", "azp": "ide",
         "scope": "demo:read demo:write", "iat": now, "exp": now + ttl}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def mint(key, ttl=300, headers=None, **over):
    """A compact JWS signed with SigningKey `key` (kid and typ at+jwt in the header; a header
    value of None removes it), claims from token_claims(ttl, **over)."""
    import jwt
    h = {"kid": key.kid, "typ": "at+jwt"}
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None or k == "typ"}  # PyJWT drops a None typ
    return jwt.encode(token_claims(ttl, **over), key.private, algorithm=key.alg, headers=h)


def base64_decode(s):
    import base64
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def unsigned_token(header, claims, signature=b""):
    """header.payload.signature from dicts (or raw strings), signature bytes as given."""
    parts = []
    for part in (header, claims):
        parts.append(b64url(part if isinstance(part, (str, bytes)) else json.dumps(part)))
    return "%s.%s.%s" % (parts[0], parts[1], b64url(signature))


# ---- X.509 test PKI for TLS listeners and the HTTPS JWKS server ---------------------------------


class PkiCA:
    """A self-signed CA that issues leaf certificates (python3-cryptography)."""

    def __init__(self, name="mcpvisor test CA", parent=None):
        """A root CA, or with parent (a PkiCA) an intermediate CA that parent signed."""
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = parent.cert.subject if parent is not None else subject
        signer = parent.key if parent is not None else self.key
        now = datetime.datetime.utcnow()
        self.cert = (x509.CertificateBuilder()
                     .subject_name(subject).issuer_name(issuer)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(
                         x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                         critical=False)
                     .sign(signer, hashes.SHA256()))

    def issue(self, names=("127.0.0.1", "localhost"), cn="mcpvisor test server", key=None):
        """(private key, certificate) for a server answering to names (IPs and DNS names)."""
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        key = key or ec.generate_private_key(ec.SECP256R1())
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        return key, cert

    def cert_pem(self):
        return cert_pem(self.cert)


def cert_pem(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_fingerprint(der_or_cert):
    from cryptography.hazmat.primitives import hashes
    if isinstance(der_or_cert, bytes):
        return hashlib.sha256(der_or_cert).hexdigest()
    return der_or_cert.fingerprint(hashes.SHA256()).hex()


def world_readable_dir():
    """A fresh folder under /tmp that the daemon's unprivileged front can read (pytest's own
    tmp_path is 0700 root). The caller removes it (shutil.rmtree)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="mcpvisor-test-")
    os.chmod(d, 0o755)
    return d


class JwksServer:
    """An HTTPS (or plain HTTP) server on 127.0.0.1 serving a JWKS document at /jwks.json, that
    counts the requests it answered. Set .doc to change what the next fetch gets."""

    def __init__(self, doc, certfile=None, keyfile=None):
        import http.server
        import ssl
        self.doc = doc
        self.requests = 0
        self.arrivals = 0
        self.paths = []
        self.cond = threading.Condition()
        # clear() holds every answer back until set() (a slow identity provider, on cue)
        self.gate = threading.Event()
        self.gate.set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with outer.cond:
                    outer.arrivals += 1
                    outer.cond.notify_all()
                outer.gate.wait(20)
                body = json.dumps(outer.doc).encode()
                self.send_response(200 if self.path.split("?")[0] == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                with outer.cond:
                    outer.requests += 1
                    outer.paths.append(self.path)
                    outer.cond.notify_all()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.tls = certfile is not None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d/jwks.json" % ("https" if self.tls else "http", self.port)

    def count(self):
        with self.cond:
            return self.requests

    def wait_requests(self, n, timeout=5.0, arrived=False):
        """Waits until n requests were answered (or, with arrived, received)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while (self.arrivals if arrived else self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("JWKS server: %d requests, wanted %d within %.1fs"
                                         % (self.requests, n, timeout))
                self.cond.wait(left)
            return self.arrivals if arrived else self.requests

    def close(self):
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
