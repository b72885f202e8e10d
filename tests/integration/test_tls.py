"""TLS listeners (issue 3 item 6): HTTPS with the configured certificate and chain, TLS 1.2 and
1.3 only with AEAD suites, certificate errors found by `check` and `run`, and the certificate
and key reloaded on SIGHUP (an invalid new configuration is refused and the old one keeps
serving)."""
import json
import os
import re
import signal
import socket
import ssl
import subprocess

import pytest

from conftest import (AUD, ISS, MCPVISOR, SANITIZER_MARKERS, McpClient, PkiCA, base_config,
                      cert_fingerprint, cert_pem, jwks_doc, key_pem, signing_key, tool_text)

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "pytest-tls", "version": "1"}}}


@pytest.fixture(scope="module")
def ca():
    return PkiCA("mcpvisor TLS test root")


def write_leaf(folder, ca, cert_name="cert.pem", key_name="key.pem", chain=(), **kw):
    key, cert = ca.issue(**kw)
    (folder / cert_name).write_bytes(cert_pem(cert) + b"".join(cert_pem(c.cert) for c in chain))
    (folder / key_name).write_bytes(key_pem(key))
    os.chmod(folder / key_name, 0o600)
    return key, cert


def client_ctx(ca, minv=None, maxv=None, ciphers=None):
    ctx = ssl.create_default_context(cadata=ca.cert_pem().decode())
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_config(listen=None, **extra):
    return base_config(listen=listen or [
        {"address": "127.0.0.1:0", "tls": {"cert": "cert.pem", "key": "key.pem"}}], **extra)


@pytest.fixture
def make_tls_daemon(make_daemon, ca):
    def make(listen=None, chain=(), leaf_ca=None, start=True, **extra):
        d = make_daemon(config=tls_config(listen, **extra), start=False)
        d.leaf_key, d.leaf_cert = write_leaf(d.dir, leaf_ca or ca, chain=chain)
        d.tls_context = client_ctx(ca)
        if start:
            d.start()
        return d
    return make


def handshake(port, ctx, host="127.0.0.1"):
    """(protocol version, cipher name, peer certificate DER) of a fresh TLS connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            return s.version(), s.cipher()[0], s.getpeercert(binary_form=True)


def served_fingerprint(d, ca):
    return cert_fingerprint(handshake(d.port, client_ctx(ca))[2])


# ---- serving ------------------------------------------------------------------------------------


def test_https_listener_serves_mcp(make_tls_daemon, ca):
    d = make_tls_daemon()
    assert re.search(r"msg=listening address=127\.0\.0\.1:%d admin=0 tls=1" % d.port, d.log), d.log
    c = McpClient(d)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "over tls"})) == "over tls"
    assert served_fingerprint(d, ca) == cert_fingerprint(d.leaf_cert)
    # a plain-HTTP request to the TLS port gets no HTTP answer
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            data = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert not data.startswith(b"HTTP/1.1 200"), data


def test_plain_and_tls_listeners_side_by_side(make_tls_daemon, ca):
    d = make_tls_daemon(listen=[
        {"address": "127.0.0.1:0"},
        {"address": "127.0.0.1:0", "tls": {"cert": "cert.pem", "key": "key.pem"}}])
    lines = d.log_lines(r"msg=listening")
    assert len(lines) == 2, lines
    assert re.search(r"tls=0", lines[0]) and re.search(r"tls=1", lines[1]), lines
    plain_port = d.port
    tls_port = int(re.search(r":(\d+) admin=0 tls=1", lines[1]).group(1))
    d.tls_context = None
    assert d.request("GET", "/healthz", key=None).status == 200
    d.tls_context = client_ctx(ca)
    d.port = tls_port
    assert d.request("GET", "/healthz", key=None).status == 200
    assert plain_port != tls_port


def test_chain_is_served(make_tls_daemon, ca):
    """The client trusts only the root: the intermediate must come from the server."""
    inter = PkiCA("mcpvisor TLS intermediate", parent=ca)
    d = make_tls_daemon(chain=(inter,), leaf_ca=inter)
    c = McpClient(d)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "chain"})) == "chain"


def test_tls_versions(make_tls_daemon, ca):
    d = make_tls_daemon()
    v, cipher, _ = handshake(d.port, client_ctx(ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
    assert v == "TLSv1.2", v
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    assert cipher.startswith("ECDHE-"), cipher
    v, _, _ = handshake(d.port, client_ctx(ca, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))
    assert v == "TLSv1.3", v
    v, _, _ = handshake(d.port, client_ctx(ca))
    assert v == "TLSv1.3", v


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_refused(make_tls_daemon, ca, version):
    d = make_tls_daemon()
    v = getattr(ssl.TLSVersion, version)
    ctx = client_ctx(ca, v, v, ciphers="DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as e:
        handshake(d.port, ctx)
    # the server refused it, not our own client
    assert "NO_PROTOCOLS_AVAILABLE" not in str(e.value), e.value
    assert re.search(r"PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|HANDSHAKE_FAILURE|reset",
                     str(e.value), re.I), e.value
    # the listener is fine afterwards
    assert handshake(d.port, client_ctx(ca))[0] == "TLSv1.3"


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384",
                                    "AES128-GCM-SHA256"])
def test_weak_tls12_suites_refused(make_tls_daemon, ca, cipher):
    """TLS 1.2 suites are ECDHE + AEAD only: CBC or static-RSA suites do not negotiate."""
    d = make_tls_daemon()
    ctx = client_ctx(ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2,
                     ciphers=cipher + ":@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(d.port, ctx)


def test_jwt_challenge_on_tls_listener_says_https(make_tls_daemon, ca):
    d = make_tls_daemon(start=False)
    d.config["auth"]["jwt"] = {"issuer": ISS, "audience": AUD, "jwks_file": "jwks.json"}
    (d.dir / "mcpvisor.json").write_text(json.dumps(d.config))
    (d.dir / "jwks.json").write_text(json.dumps(jwks_doc(signing_key("rs1", "RS256"))))
    d.start()
    r = d.request("POST", "/servers/ts/mcp", INIT, key=None)
    assert r.status == 401
    assert ('resource_metadata="https://127.0.0.1:%d/.well-known/oauth-protected-resource'
            '/servers/ts/mcp"' % d.port) in r.header("WWW-Authenticate"), r
    assert d.request("GET", "/.well-known/oauth-protected-resource", key=None).status == 200


# ---- errors at check and start -------------------------------------------------------------------


def _run(args, timeout=10):
    p = subprocess.run([MCPVISOR] + args, capture_output=True, text=True, timeout=timeout)
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, p.stderr
    return p


def _setup_files(make_daemon, ca):
    d = make_daemon(config=tls_config(), start=False)
    write_leaf(d.dir, ca)
    return d


def test_check_accepts_good_tls(make_daemon, ca):
    d = _setup_files(make_daemon, ca)
    p = _run(["check", "-c", d.config_path])
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("missing", ["cert.pem", "key.pem"])
def test_check_names_missing_file(make_daemon, ca, missing):
    d = _setup_files(make_daemon, ca)
    (d.dir / missing).unlink()
    p = _run(["check", "-c", d.config_path])
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert missing in out, out
    assert "/listen/0/tls/%s" % ("cert" if missing == "cert.pem" else "key") in out, out


@pytest.mark.parametrize("which", ["cert.pem", "key.pem"])
def test_check_names_unreadable_file(make_daemon, ca, which):
    """A folder where the file should be cannot be read (root reads any mode)."""
    d = _setup_files(make_daemon, ca)
    (d.dir / which).unlink()
    (d.dir / which).mkdir()
    p = _run(["check", "-c", d.config_path])
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert which in out, out


def test_run_refuses_key_not_matching_cert(make_daemon, ca):
    d = _setup_files(make_daemon, ca)
    other_key, _ = ca.issue()
    (d.dir / "key.pem").write_bytes(key_pem(other_key))
    p = _run(["run", "-c", d.config_path], timeout=20)
    assert p.returncode != 0, p.stderr
    assert re.search(r"does not match|mismatch", p.stderr), p.stderr
    # and it says so, rather than blaming the key's format
    assert "not a PEM private key" not in p.stderr, p.stderr


def test_run_refuses_garbage_cert(make_daemon, ca):
    d = _setup_files(make_daemon, ca)
    (d.dir / "cert.pem").write_text("not a certificate\n")
    p = _run(["run", "-c", d.config_path], timeout=20)
    assert p.returncode != 0, p.stderr
    assert "cert" in p.stderr, p.stderr


# ---- SIGHUP reload -----------------------------------------------------------------------------


def _hup_and_wait(d, pattern):
    mark = d.mark()
    os.kill(d.proc.pid, signal.SIGHUP)
    return d.wait_log(pattern, 10, start=mark)


def test_sighup_reloads_certificate(make_tls_daemon, ca):
    d = make_tls_daemon()
    old = cert_fingerprint(d.leaf_cert)
    assert served_fingerprint(d, ca) == old
    # a keep-alive connection opened before the reload
    conn = d.conn()
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() and True
    _, new_cert = write_leaf(d.dir, ca, cn="renewed")
    new = cert_fingerprint(new_cert)
    assert new != old
    _hup_and_wait(d, r"msg=reloaded tls_listeners=1\b")
    assert served_fingerprint(d, ca) == new
    c = McpClient(d)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "renewed"})) == "renewed"
    # the connection from before keeps its session with the old certificate
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert r.status == 200 and r.read()
    assert cert_fingerprint(conn.sock.getpeercert(binary_form=True)) == old
    conn.close()


@pytest.mark.parametrize("breakage", ["json", "missing_cert", "unknown_key"])
def test_sighup_invalid_config_keeps_old_certificate(make_tls_daemon, ca, breakage):
    d = make_tls_daemon()
    old = cert_fingerprint(d.leaf_cert)
    c = McpClient(d)
    c.initialize()
    if breakage == "json":
        write_leaf(d.dir, ca, cn="never served")
        (d.dir / "mcpvisor.json").write_text("{ not json")
    elif breakage == "missing_cert":
        (d.dir / "cert.pem").unlink()
    else:
        write_leaf(d.dir, ca, cn="never served")
        (d.dir / "mcpvisor.json").write_text(json.dumps(dict(d.config, bogus_key=1)))
    _hup_and_wait(d, r"reload_refused")
    assert d.proc.poll() is None
    assert served_fingerprint(d, ca) == old
    assert tool_text(c.call_tool("echo", {"text": "still"})) == "still"
    c2 = McpClient(d)
    c2.initialize()


def test_sighup_mismatched_key_keeps_old_certificate(make_tls_daemon, ca):
    d = make_tls_daemon()
    old = cert_fingerprint(d.leaf_cert)
    other_key, _ = ca.issue()
    write_leaf(d.dir, ca, cn="never served")
    (d.dir / "key.pem").write_bytes(key_pem(other_key))
    _hup_and_wait(d, r"reload(_tls)?_refused")
    assert d.proc.poll() is None
    assert served_fingerprint(d, ca) == old
    c = McpClient(d)
    c.initialize()
    assert tool_text(c.call_tool("echo", {"text": "old cert"})) == "old cert"


def test_sighup_twice(make_tls_daemon, ca):
    d = make_tls_daemon()
    for cn in ("second", "third"):
        _, cert = write_leaf(d.dir, ca, cn=cn)
        _hup_and_wait(d, r"msg=reloaded tls_listeners=1\b")
        assert served_fingerprint(d, ca) == cert_fingerprint(cert)
