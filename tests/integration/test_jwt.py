"""OAuth 2.1 resource server (issue 3): JWT access tokens verified against a JWKS (file or HTTPS
URL), RFC 9728 discovery, RFC 8707 audiences, per-tool scopes, tenant isolation, sessions bound to
principals, expiry, and no token passthrough to children."""
import hmac
import http.client
import json
import re
import shutil
import time

import pytest

from conftest import (AUD, ISS, KEYS, LATEST, Daemon, JwksServer, McpClient, PkiCA, b64url,
                      base_config, base64_decode, cert_pem, default_manifests, jwks_doc, key_pem,
                      mint, raw_exchange, sha256_hex, signing_key, sse_data, tool_text,
                      token_claims, unsigned_token, wait_for, world_readable_dir)
from test_legacy_sse import LegacyClient

PRM = "/.well-known/oauth-protected-resource"
ALGS = ("RS256", "PS256", "ES256", "EdDSA")


def rs():
    return signing_key("rs1", "RS256")


def all_keys():
    return [signing_key("rs1", "RS256"), signing_key("ps1", "PS256"),
            signing_key("es1", "ES256"), signing_key("ed1", "EdDSA")]


def init_msg(rid=0, proto=LATEST):
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize",
            "params": {"protocolVersion": proto, "capabilities": {},
                       "clientInfo": {"name": "pytest-jwt", "version": "1"}}}


def scoped_manifests():
    m = default_manifests()
    m["ts"]["tools"] = {"echo": {"scopes": ["demo:read"]}, "add": {"scopes": ["demo:write"]}}
    m["ts2"]["tools"] = {"echo": {"scopes": ["ts2:read"]}, "add": {"scopes": ["demo:write"]}}
    return m


def jwt_config(jwt=None, **extra):
    """base_config() plus auth.jwt (jwks_file jwks.json, leeway 0); a jwt value of None removes
    the key."""
    cfg = base_config(**extra)
    j = {"issuer": ISS, "audience": AUD, "jwks_file": "jwks.json",
         "claims": {"tenant": "tenant", "agent": "azp"}, "leeway_s": 0}
    j.update(jwt or {})
    cfg["auth"]["jwt"] = {k: v for k, v in j.items() if v is not None}
    return cfg


def prepare_jwt_files(d, keys=None, key_scopes=None):
    """Writes the JWKS file (unless the config names a jwks_url) and gives API keys scopes."""
    if "jwks_file" in d.config["auth"]["jwt"]:
        (d.dir / "jwks.json").write_text(json.dumps(jwks_doc(*(keys or all_keys()))))
    if key_scopes:
        path = d.dir / "api-keys.json"
        doc = json.loads(path.read_text())
        for rec in doc["keys"]:
            for who, scopes in key_scopes.items():
                if rec["sha256"] == sha256_hex(KEYS[who][0]):
                    rec["scopes"] = scopes
        path.write_text(json.dumps(doc))


@pytest.fixture
def make_jwt_daemon(make_daemon):
    """make_jwt_daemon(jwt=..., keys=[SigningKey...], key_scopes={"alice": [...]}, ...) → a
    started daemon with auth.jwt, the JWKS file, and API keys with the given scopes."""

    def make(jwt=None, keys=None, key_scopes=None, manifests=None, start=True, proc_env=None,
             **extra):
        d = make_daemon(config=jwt_config(jwt, **extra),
                        manifests=manifests if manifests is not None else scoped_manifests(),
                        start=False, proc_env=proc_env)
        prepare_jwt_files(d, keys, key_scopes)
        if start:
            d.start()
        return d

    return make


@pytest.fixture(scope="module")
def jd(tmp_path_factory):
    """One daemon shared by the tests that need nothing but the default JWT configuration (they
    look at the log only from their own mark on). alice's API key has the scope demo:read."""
    d = Daemon(tmp_path_factory.mktemp("jwt"), jwt_config(), scoped_manifests(),
               ("alice", "bob", "carol"))
    prepare_jwt_files(d, key_scopes={"alice": ["demo:read"], "bob": []})
    d.start()
    yield d
    d.stop()
    if d.sanitizer_reports():
        pytest.fail("sanitizer report in the daemon log:\n" + d.log, pytrace=False)


def post_init(d, token, server="ts", headers=None, timeout=10.0):
    h = {"Authorization": "Bearer " + token} if token is not None else {}
    h.update(headers or {})
    return d.request("POST", "/servers/%s/mcp" % server, init_msg(), h, key=None,
                     timeout=timeout)


def challenge(reply):
    """The WWW-Authenticate Bearer challenge's parameters as a dict (and checks the scheme)."""
    h = reply.header("WWW-Authenticate")
    assert h, reply
    scheme, _, rest = h.partition(" ")
    assert scheme == "Bearer", h
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    # nothing but well-formed auth-params
    assert re.fullmatch(r'\s*\w+="[^"]*"(\s*,\s*\w+="[^"]*")*\s*', rest), h
    return params


def expect_401(d, token, reason, server="ts"):
    """The token is refused with 401, the reason in the body and the log, and a challenge that
    points at the server's protected resource metadata."""
    mark = d.synced_mark()  # a child started by an earlier request must not count
    r = post_init(d, token, server)
    assert r.status == 401, (reason, r)
    ch = challenge(r)
    assert ch.get("error") == "invalid_token", (reason, ch)
    assert ch.get("realm") == "mcpvisor", ch
    assert ch.get("resource_metadata") == "http://127.0.0.1:%d%s/servers/%s/mcp" % (
        d.port, PRM, server), ch
    body = r.json()
    msg = body["error"]["message"] if "error" in body else json.dumps(body)
    assert "(%s)" % reason in msg, (reason, body)
    d.wait_log(r"msg=auth_failed reason=%s\b" % re.escape(reason), 3, start=mark)
    assert token not in d.log
    assert not [l for l in d.log_lines()[mark:] if "msg=spawned" in l], \
        "a refused token started a child"
    return r


def client_for(d, token, server="ts", proto=LATEST):
    c = McpClient(d, server=server, key=token)
    c.initialize(proto)
    return c


def tool_names(msg):
    assert "result" in msg, msg
    return {t["name"] for t in msg["result"]["tools"]}


# ---- every algorithm, every claim shape ------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_each_algorithm_accepted(jd, alg):
    key = next(k for k in all_keys() if k.alg == alg)
    tok = mint(key)
    assert json.loads(base64_decode(tok.split(".")[0]))["alg"] == alg
    mark = jd.mark()
    c = client_for(jd, tok)
    assert tool_text(c.call_tool("echo", {"text": alg})) == alg
    jd.wait_log(r'msg=session_start .*tenant=acme user="alice" agent="ide" ', 3, start=mark)


def test_principal_from_claims(make_jwt_daemon):
    d = make_jwt_daemon(jwt={"claims": {"tenant": "org", "agent": "azp"}})
    tok = mint(rs(), tenant=None, org="acme", sub="dana", azp="cursor")
    c = client_for(d, tok)
    assert tool_text(c.call_tool("echo", {"text": "x"})) == "x"
    d.wait_log(r'msg=session_start .*tenant=acme user="dana" agent="cursor" ', 3)
    # the default claim name no longer counts
    expect_401(d, mint(rs(), sub="dana"), "bad_claims")


@pytest.mark.parametrize("claims,agent", [
    ({"azp": "from-azp", "client_id": "from-client-id", "act": {"sub": "from-act"}}, "from-azp"),
    ({"azp": None, "client_id": "from-client-id", "act": {"sub": "from-act"}}, "from-client-id"),
    ({"azp": None, "act": {"sub": "from-act"}}, "from-act"),
], ids=["azp", "client_id", "act"])
def test_agent_claim_fallbacks(jd, claims, agent):
    mark = jd.mark()
    c = client_for(jd, mint(rs(), **claims))
    assert tool_text(c.call_tool("echo", {"text": "a"})) == "a"
    jd.wait_log(r'msg=session_start .*user="alice" agent="%s" ' % agent, 3, start=mark)


def test_no_agent_claim_is_fine(jd):
    mark = jd.mark()
    c = client_for(jd, mint(rs(), azp=None))
    assert tool_text(c.call_tool("echo", {"text": "a"})) == "a"
    jd.wait_log(r'msg=session_start .*user="alice" agent="" ', 3, start=mark)


def test_aud_as_array(jd):
    tok = mint(rs(), aud=["https://other.example", AUD, "https://third.example"])
    assert post_init(jd, tok).status == 200


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "JWT", None])
def test_typ_accepted(jd, typ):
    r = post_init(jd, mint(rs(), headers={"typ": typ}))
    assert r.status == 200, (typ, r)


def test_per_server_audience(make_jwt_daemon):
    d = make_jwt_daemon()
    ts_aud = AUD + "/servers/ts/mcp"
    assert post_init(d, mint(rs(), aud=ts_aud)).status == 200
    assert post_init(d, mint(rs(), aud=[ts_aud])).status == 200
    # a token for ts is not good for ts2, even for a tenant that may use ts2
    tok = mint(rs(), aud=ts_aud, tenant="other", sub="carol")
    assert post_init(d, tok, "ts").status == 200
    expect_401(d, tok, "bad_audience", server="ts2")
    tok = mint(rs(), aud=AUD + "/servers/ts2/mcp", tenant="other")
    assert post_init(d, tok, "ts2").status == 200


def test_per_server_audience_with_trailing_slash(make_jwt_daemon):
    d = make_jwt_daemon(jwt={"audience": AUD + "/"})
    assert post_init(d, mint(rs(), aud=AUD + "/servers/ts/mcp")).status == 200
    assert post_init(d, mint(rs(), aud=AUD + "/")).status == 200
    r = d.request("GET", PRM + "/servers/ts/mcp", key=None)
    assert r.json()["resource"] == AUD + "/servers/ts/mcp", r


def test_leeway_allows_small_skew(make_jwt_daemon):
    d = make_jwt_daemon(jwt={"leeway_s": 30})
    now = int(time.time())
    assert post_init(d, mint(rs(), exp=now - 10, iat=now - 100)).status == 200
    assert post_init(d, mint(rs(), nbf=now + 10, iat=now + 10)).status == 200
    expect_401(d, mint(rs(), exp=now - 60, iat=now - 100), "expired")
    expect_401(d, mint(rs(), nbf=now + 60), "not_yet_valid")


def test_api_keys_still_work_beside_jwt(jd):
    c = McpClient(jd, key="alice")
    c.initialize()
    assert tool_text(c.call_tool("env")) is not None
    r = jd.request("POST", "/servers/ts/mcp", init_msg(), key=None,
                   headers={"Authorization": "Bearer mcpv_not_a_key"})
    assert r.status == 401, r


# ---- every refusal ---------------------------------------------------------------------------


def test_expired(jd):
    now = int(time.time())
    expect_401(jd, mint(rs(), exp=now - 5, iat=now - 300), "expired")


def test_missing_exp(jd):
    mark = jd.mark()
    r = post_init(jd, mint(rs(), exp=None))
    assert r.status == 401, r
    assert challenge(r)["error"] == "invalid_token"
    assert re.search(r"\((expired|bad_claims)\)", r.json()["error"]["message"]), r
    jd.wait_log(r"msg=auth_failed reason=(expired|bad_claims)\b", 3, start=mark)


def test_not_yet_valid(jd):
    now = int(time.time())
    expect_401(jd, mint(rs(), nbf=now + 120), "not_yet_valid")
    expect_401(jd, mint(rs(), iat=now + 120), "not_yet_valid")


@pytest.mark.parametrize("aud", [
    "https://other.example",
    ["https://other.example", "https://third.example"],
    AUD + ".evil.example",
    AUD + "/servers/ts2/mcp",
    AUD + "/servers/ts/mcp/extra",
    "",
    [],
], ids=["other", "array-without", "suffix", "other-server", "server-suffix", "empty",
        "empty-array"])
def test_wrong_audience(jd, aud):
    expect_401(jd, mint(rs(), aud=aud), "bad_audience")


def test_missing_audience(jd):
    expect_401(jd, mint(rs(), aud=None), "bad_audience")


@pytest.mark.parametrize("iss", ["https://evil.example", ISS + "/", ISS.upper(), None])
def test_wrong_issuer(jd, iss):
    expect_401(jd, mint(rs(), iss=iss), "bad_issuer")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(jd, alg):
    tok = unsigned_token({"alg": alg, "typ": "at+jwt", "kid": "rs1"}, token_claims())
    expect_401(jd, tok, "bad_alg")
    # and with a signature of the right shape copied from a genuine token
    genuine = mint(rs())
    expect_401(jd, tok + genuine.split(".")[2], "bad_alg")


@pytest.mark.parametrize("alg,digest", [("HS256", "sha256"), ("HS384", "sha384"),
                                        ("HS512", "sha512")])
def test_alg_confusion_hmac_with_public_key(jd, alg, digest):
    """HS256 'signed' with the RSA public key's PEM as the HMAC secret (the classic confusion)."""
    key = rs()
    head = b64url(json.dumps({"alg": alg, "typ": "at+jwt", "kid": key.kid}))
    body = b64url(json.dumps(token_claims()))
    for secret in (key.public_pem(), json.dumps(key.jwk).encode()):
        sig = hmac.new(secret, ("%s.%s" % (head, body)).encode(), digest).digest()
        expect_401(jd, "%s.%s.%s" % (head, body, b64url(sig)), "bad_alg")


def test_alg_not_the_keys_type(jd):
    """A kid's key type decides the algorithm: an RSA key with ES256, an EC key with RS256,
    RS256 with a key published for PS256."""
    ps, es = signing_key("ps1", "PS256"), signing_key("es1", "ES256")
    for signer, claimed_kid in ((es, "rs1"), (rs(), "es1"), (rs(), "ed1")):
        tok = mint(signer, headers={"kid": claimed_kid})
        expect_401(jd, tok, "bad_alg")
    # RSA-PSS signature under the kid of a key published with alg RS256, and the reverse
    import jwt
    claims = token_claims()
    tok = jwt.encode(claims, rs().private, algorithm="PS256", headers={"kid": "rs1"})
    expect_401(jd, tok, "bad_alg")
    tok = jwt.encode(claims, ps.private, algorithm="RS256", headers={"kid": "ps1"})
    expect_401(jd, tok, "bad_alg")


def test_crit_header_refused(jd):
    """RFC 7515 §4.1.11: an extension we do not understand, marked critical, voids the JWS."""
    for head in ({"crit": ["urn:example:ext"], "urn:example:ext": 1}, {"crit": ["exp"]},
                 {"crit": []}):
        mark = jd.mark()
        r = post_init(jd, mint(rs(), headers=head))
        assert r.status == 401, (head, r)
        jd.wait_log(r"msg=auth_failed reason=\w+", 3, start=mark)


def test_embedded_keys_ignored(jd):
    """Keys offered by the token itself (jwk, jku, x5u) are never trusted."""
    attacker = signing_key("attacker", "RS256")
    for head in ({"jwk": attacker.jwk}, {"jwk": dict(attacker.jwk, kid="rs1"), "kid": "rs1"},
                 {"jku": "http://127.0.0.1:1/jwks.json"}, {"x5u": "http://127.0.0.1:1/x.pem"}):
        mark = jd.mark()
        r = post_init(jd, mint(attacker, headers=head))
        assert r.status == 401, (head, r)
        jd.wait_log(r"msg=auth_failed reason=(unknown_kid|bad_signature|malformed|bad_alg)\b",
                    3, start=mark)


def test_unknown_alg(jd):
    head = {"alg": "RS512", "kid": "rs1"}
    import jwt
    tok = jwt.encode(token_claims(), rs().private, algorithm="RS512", headers=head)
    expect_401(jd, tok, "bad_alg")


def test_unknown_kid_with_jwks_file(jd):
    other = signing_key("stranger", "RS256")
    expect_401(jd, mint(other), "unknown_kid")
    # the genuine key's kid with another key's signature is a bad signature, not a new kid
    expect_401(jd, mint(other, headers={"kid": "rs1"}), "bad_signature")


def test_tampered(jd):
    tok = mint(rs(), scope="demo:read")
    h, p, s = tok.split(".")
    claims = json.loads(base64_decode(p))
    # widen the scope, change the tenant, change the subject: each breaks the signature
    for change in ({"scope": "demo:read demo:write"}, {"tenant": "other"}, {"sub": "root"}):
        forged = dict(claims, **change)
        expect_401(jd, "%s.%s.%s" % (h, b64url(json.dumps(forged)), s), "bad_signature")
    # one bit of the signature
    raw = bytearray(base64_decode(s))
    raw[10] ^= 1
    expect_401(jd, "%s.%s.%s" % (h, p, b64url(bytes(raw))), "bad_signature")
    # the header changed (kid kept, typ changed)
    hd = json.loads(base64_decode(h))
    hd["typ"] = "JWT"
    expect_401(jd, "%s.%s.%s" % (b64url(json.dumps(hd)), p, s), "bad_signature")
    # signature from another token
    other = mint(rs(), scope="demo:read demo:write")
    expect_401(jd, "%s.%s.%s" % (h, p, other.split(".")[2]), "bad_signature")
    # no signature at all
    expect_401(jd, "%s.%s." % (h, p), "bad_signature")


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256"])
def test_tampered_other_algorithms(jd, alg):
    key = next(k for k in all_keys() if k.alg == alg)
    h, p, s = mint(key, scope="demo:read").split(".")
    forged = dict(json.loads(base64_decode(p)), scope="demo:read demo:write")
    expect_401(jd, "%s.%s.%s" % (h, b64url(json.dumps(forged)), s), "bad_signature")


@pytest.mark.parametrize("token", [
    "!!!.@@@.###",
    "a.b.c",
    "...",
    "e30.e30.e30",
    "eyJhbGciOiJSUzI1NiJ9.not base64.c2ln",
    "eyJhbGciOiJSUzI1NiJ9",  # no dots: an API key then, not a JWT
    "eyJhbGciOiJSUzI1NiJ9.e30",
    "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.extra",
    "bm90IGpzb24.e30.c2ln",
    "W10.e30.c2ln",  # header is a JSON array
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzMSJ9.bm90IGpzb24.c2ln",
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzMSJ9=.e30.c2ln",  # padding is not base64url
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzMSJ9.e30+/.c2ln",
], ids=lambda t: t[:24])
def test_garbage(jd, token):
    mark = jd.synced_mark()
    r = post_init(jd, token)
    assert r.status == 401, r
    assert challenge(r)["error"] == "invalid_token", r
    if "." in token:
        m = re.search(r"\((\w+)\)", r.json()["error"]["message"])
        assert m and m.group(1) in ("malformed", "bad_alg", "unknown_kid", "bad_signature"), r
    jd.wait_log(r"msg=auth_failed reason=\w+", 3, start=mark)
    assert not [l for l in jd.log_lines()[mark:] if "msg=spawned" in l]
    assert token not in jd.log


def test_garbage_base64_in_a_signed_token(jd):
    h, p, s = mint(rs()).split(".")
    expect_401(jd, "%s.%s.%s" % (h, p[:20] + "*" + p[21:], s), "malformed")
    expect_401(jd, "%s.%s.%s" % (h[:5] + "%" + h[6:], p, s), "malformed")
    expect_401(jd, "%s.%s.%s" % (h, p, s[:10] + "!" + s[11:]), "malformed")


def _token_of_length(key, n):
    """A genuine token of exactly n bytes (a padding claim stretched to fit), or None."""
    for pad in range(max(0, n * 3 // 4 - 600), n):
        tok = mint(key, pad="p" * pad)
        if len(tok) == n:
            return tok
        if len(tok) > n:
            return None
    return None


def test_oversized_token(jd):
    key = signing_key("es1", "ES256")
    big = _token_of_length(key, 8193) or _token_of_length(key, 8194)
    assert big is not None and len(big) > 8192
    expect_401(jd, big, "too_long")
    # a huge one too (still inside the HTTP header limit)
    expect_401(jd, mint(key, pad="p" * 8000), "too_long")


def test_token_of_max_length_accepted(jd):
    key = signing_key("es1", "ES256")
    tok = _token_of_length(key, 8192) or _token_of_length(key, 8191)
    assert tok is not None and len(tok) >= 8191
    assert post_init(jd, tok).status == 200


@pytest.mark.parametrize("typ", ["foo", "jwt+at", "dpop+jwt", "JWS"])
def test_bad_typ(jd, typ):
    expect_401(jd, mint(rs(), headers={"typ": typ}), "bad_typ")


@pytest.mark.parametrize("over", [
    {"sub": None},
    {"tenant": None},
    {"tenant": 7},
    {"sub": ["alice"]},
    {"sub": ""},
    {"exp": "tomorrow"},
    {"scope": ["demo:read"]},
    {"scope": None, "scp": [1, 2]},
    {"scope": None, "scp": {"demo:read": True}},
], ids=["no-sub", "no-tenant", "tenant-number", "sub-array", "sub-empty", "exp-string",
        "scope-array", "scp-numbers", "scp-object"])
def test_bad_claims(jd, over):
    mark = jd.mark()
    r = post_init(jd, mint(rs(), **over))
    assert r.status == 401, (over, r)
    m = re.search(r"\((\w+)\)", r.json()["error"]["message"])
    assert m and m.group(1) in ("bad_claims", "expired"), (over, r)
    jd.wait_log(r"msg=auth_failed reason=%s\b" % m.group(1), 3, start=mark)


def test_token_for_unknown_tenant_403(jd):
    mark = jd.synced_mark()
    r = post_init(jd, mint(rs(), tenant="nosuch"))
    assert r.status == 403, r
    assert not [l for l in jd.log_lines()[mark:] if "msg=spawned" in l]


def test_refusals_never_log_the_token(jd):
    toks = [mint(rs(), aud="https://other.example"), mint(rs(), iss="https://evil.example"),
            mint(signing_key("stranger", "RS256"))]
    for t in toks:
        assert post_init(jd, t).status == 401
    log = jd.log
    for t in toks:
        assert t not in log
        assert t.split(".")[2] not in log
        assert t.split(".")[1] not in log


def test_token_in_query_string_not_accepted(jd):
    """bearer_methods_supported is ["header"]: a token in the URL is no credential."""
    tok = mint(rs())
    r = jd.request("POST", "/servers/ts/mcp?access_token=" + tok, init_msg(), key=None)
    assert r.status == 401, r
    assert "error" not in challenge(r)
    assert tok not in jd.log


def test_dotted_api_key_is_a_jwt_when_jwt_is_configured(make_jwt_daemon):
    """With auth.jwt, a token with dots is verified as a JWT, even when it is a configured key."""
    d = make_jwt_daemon(start=False)
    dotted = "mcpv_dotted.key.0123456789abcdefghij"
    doc = json.loads((d.dir / "api-keys.json").read_text())
    doc["keys"].append({"sha256": sha256_hex(dotted), "tenant": "acme", "user": "dot",
                        "scopes": []})
    (d.dir / "api-keys.json").write_text(json.dumps(doc))
    d.start()
    mark = d.mark()
    r = post_init(d, dotted)
    assert r.status == 401, r
    d.wait_log(r"msg=auth_failed reason=(malformed|bad_alg|unknown_kid)\b", 3, start=mark)


@pytest.mark.parametrize("jwt,complaint", [
    ({"jwks_file": None, "jwks_url": "http://idp.example.com/jwks.json"}, "jwks_url"),
    ({"jwks_file": None, "jwks_url": "ftp://127.0.0.1/jwks.json"}, "jwks_url"),
    ({"jwks_url": "https://idp.example.com/jwks.json"}, "jwks"),
    ({"jwks_file": None}, "jwks"),
    ({"jwks_file": "nosuch.json"}, "nosuch.json"),
    ({"issuer": None}, "issuer"),
    ({"audience": None}, "audience"),
], ids=["http-remote", "ftp", "both", "neither", "missing-file", "no-issuer", "no-audience"])
def test_check_rejects_bad_jwt_config(make_jwt_daemon, jwt, complaint):
    import subprocess
    from conftest import MCPVISOR
    d = make_jwt_daemon(jwt=jwt, start=False)
    p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True, text=True,
                       timeout=10)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "/auth/jwt" in out and complaint in out, out


def test_check_accepts_http_jwks_url_on_loopback(make_jwt_daemon):
    import subprocess
    from conftest import MCPVISOR
    for url in ("http://127.0.0.1:9/jwks.json", "http://localhost:9/jwks.json",
                "http://[::1]:9/jwks.json", "https://idp.example.com/jwks.json"):
        d = make_jwt_daemon(jwt={"jwks_file": None, "jwks_url": url}, start=False)
        p = subprocess.run([MCPVISOR, "check", "-c", d.config_path], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 0, (url, p.stdout + p.stderr)


# ---- 401 challenges and RFC 9728 discovery ---------------------------------------------------


def test_missing_token_challenge(jd):
    for method, path in (("POST", "/servers/ts/mcp"), ("GET", "/servers/ts/mcp"),
                         ("DELETE", "/servers/ts/mcp"), ("GET", "/servers/ts/sse"),
                         ("POST", "/servers/ts/messages?sessionId=x")):
        r = jd.request(method, path, init_msg() if method == "POST" else None,
                       {"Accept": "application/json, text/event-stream"}, key=None)
        assert r.status == 401, (method, path, r)
        ch = challenge(r)
        assert "error" not in ch, ch  # no token, no error (RFC 6750 §3.1)
        assert ch["resource_metadata"] == "http://127.0.0.1:%d%s/servers/ts/mcp" % (jd.port, PRM)


def test_challenge_url_comes_from_configuration_not_host(make_jwt_daemon):
    """resource_metadata names the address the client reached (or public_url), whatever name
    Host used, and the challenge carries exactly the expected auth-params."""
    d = make_jwt_daemon()
    expected = ('Bearer realm="mcpvisor", resource_metadata="http://127.0.0.1:%d%s/servers/ts/mcp"'
                % (d.port, PRM))
    for host in ("localhost:%d" % d.port, "localhost", "127.0.0.1:%d" % d.port, "127.0.0.1"):
        r = d.request("POST", "/servers/ts/mcp", init_msg(), {"Host": host}, key=None)
        assert r.status == 401, (host, r)
        assert r.header("WWW-Authenticate") == expected, (host, r.header("WWW-Authenticate"))
    d2 = make_jwt_daemon(public_url="https://mcp.example.com/")
    for host in ("127.0.0.1:%d" % d2.port, "mcp.example.com"):
        r = d2.request("POST", "/servers/ts2/mcp", init_msg(), key=None,
                       headers={"Host": host,
                                "Authorization": "Bearer " + mint(rs(), iss="https://x.example")})
        assert r.status == 401
        ch = challenge(r)
        assert ch == {"realm": "mcpvisor", "error": "invalid_token",
                      "resource_metadata": "https://mcp.example.com%s/servers/ts2/mcp" % PRM}, ch


def test_challenge_names_the_ipv6_address_reached(make_jwt_daemon):
    """On an IPv6 listener, Host [::1]:PORT (or localhost) is served and the challenge names
    http://[::1]:PORT; 127.0.0.1 names another address than the one reached."""
    d = make_jwt_daemon(listen=[{"address": "127.0.0.1:0"}, {"address": "[::1]:0"}])
    port6 = d.listeners[1][0]

    def post(host):
        c = http.client.HTTPConnection("::1", port6, timeout=10)
        try:
            c.request("POST", "/servers/ts/mcp", body=json.dumps(init_msg()),
                      headers={"Host": host, "Content-Type": "application/json",
                               "Accept": "application/json, text/event-stream"})
            resp = c.getresponse()
            return resp.status, resp.getheader("WWW-Authenticate"), resp.read()
        finally:
            c.close()

    expected = ('Bearer realm="mcpvisor", resource_metadata="http://[::1]:%d%s/servers/ts/mcp"'
                % (port6, PRM))
    for host in ("[::1]:%d" % port6, "[::1]", "localhost:%d" % port6):
        status, www, body = post(host)
        assert status == 401, (host, status, body)
        assert www == expected, (host, www)
    for host in ("127.0.0.1:%d" % port6, "[::1]:%d" % d.port, "[0:0::1]:%d" % port6):
        status, www, body = post(host)
        assert status == 421 and www is None, (host, status, www, body)


def test_host_cannot_inject_into_the_challenge(make_jwt_daemon):
    """A Host built to carry another host or an extra auth-param into WWW-Authenticate is
    refused before any challenge is written; a well-formed foreign one gets 421."""
    d = make_jwt_daemon()
    for host, status in (
            ('127.0.0.1:1@attacker.example/x?", authorization_uri="https://attacker.example', 400),
            ("127.0.0.1:%d@attacker.example" % d.port, 400),
            ('attacker.example", error="x', 400),
            ("attacker.example", 421),
            ("127.0.0.1:1", 421)):
        r = raw_exchange(d, "POST", "/servers/ts/mcp", {
            "Host": host, "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "Content-Length": "0"}, key=None)
        assert r.status == status, (host, r)
        assert r.header("WWW-Authenticate") is None, (host, r.header("WWW-Authenticate"))
    assert d.log_lines("msg=auth_failed") == []


def test_protected_resource_metadata(make_jwt_daemon):
    d = make_jwt_daemon()
    r = d.request("GET", PRM, key=None)
    assert r.status == 200, r
    assert r.content_type == "application/json", r
    doc = r.json()
    assert doc["resource"] == AUD
    assert doc["authorization_servers"] == [ISS]
    assert sorted(doc["scopes_supported"]) == ["demo:read", "demo:write", "ts2:read"]
    assert len(doc["scopes_supported"]) == len(set(doc["scopes_supported"]))
    assert doc["bearer_methods_supported"] == ["header"]
    assert isinstance(doc.get("resource_name"), str) and doc["resource_name"]

    r = d.request("GET", PRM + "/servers/ts/mcp", key=None)
    assert r.status == 200, r
    doc = r.json()
    assert doc["resource"] == AUD + "/servers/ts/mcp"
    assert doc["authorization_servers"] == [ISS]
    assert sorted(doc["scopes_supported"]) == ["demo:read", "demo:write"]
    assert doc["bearer_methods_supported"] == ["header"]

    doc = d.request("GET", PRM + "/servers/crashy/mcp", key=None).json()
    assert doc["resource"] == AUD + "/servers/crashy/mcp"
    assert doc["scopes_supported"] == []

    for path in (PRM + "/servers/nosuch/mcp", PRM + "/servers/ts", PRM + "/servers/ts/mcp/x",
                 PRM + "/servers//mcp", PRM + "x", PRM + "/servers/ts/sse"):
        assert d.request("GET", path, key=None).status == 404, path


def test_metadata_lists_configured_authorization_servers(make_jwt_daemon):
    d = make_jwt_daemon(jwt={"authorization_servers": ["https://as1.example",
                                                       "https://as2.example"]})
    assert d.request("GET", PRM, key=None).json()["authorization_servers"] == [
        "https://as1.example", "https://as2.example"]


def test_discovery_from_401(jd):
    """A client with nothing but the endpoint finds the resource and its authorization server."""
    r = post_init(jd, None)
    assert r.status == 401
    url = challenge(r)["resource_metadata"]
    m = re.fullmatch(r"http://127\.0\.0\.1:%d(/.*)" % jd.port, url)
    assert m, url
    doc = jd.request("GET", m.group(1), key=None).json()
    assert doc["resource"] == AUD + "/servers/ts/mcp"
    assert ISS in doc["authorization_servers"]
    # a token minted for exactly that resource works
    assert post_init(jd, mint(rs(), aud=doc["resource"])).status == 200


def test_metadata_absent_without_jwt(daemon):
    assert daemon.request("GET", PRM, key=None).status == 404
    assert daemon.request("GET", PRM + "/servers/ts/mcp", key=None).status == 404
    # and API-key challenges do not point at it
    r = daemon.request("POST", "/servers/ts/mcp", init_msg(), key=None)
    assert r.status == 401
    assert "resource_metadata" not in r.header("WWW-Authenticate")


# ---- per-tool scopes -------------------------------------------------------------------------


def test_tools_list_filtered_by_scope(jd):
    for scope, want, unwanted in (("demo:read demo:write", {"echo", "add"}, set()),
                                  ("demo:read", {"echo"}, {"add"}),
                                  ("demo:write", {"add"}, {"echo"}),
                                  (None, set(), {"echo", "add"})):
        c = client_for(jd, mint(rs(), scope=scope))
        names = tool_names(c.request("tools/list"))
        assert want <= names and not (unwanted & names), (scope, names)
        assert {"env", "argv", "fds", "slow"} <= names  # tools without scopes stay


def test_scp_array(jd):
    c = client_for(jd, mint(rs(), scope=None, scp=["demo:read"]))
    names = tool_names(c.request("tools/list"))
    assert "echo" in names and "add" not in names
    assert tool_text(c.call_tool("echo", {"text": "scp"})) == "scp"
    r = c.post({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status == 403, r


def test_scp_string_and_scope_precedence(jd):
    """scp may also be a space-separated string (Entra ID); scope, when present, wins over scp."""
    c = client_for(jd, mint(rs(), scope=None, scp="demo:write demo:read"))
    assert {"echo", "add"} <= tool_names(c.request("tools/list"))
    c = client_for(jd, mint(rs(), scope="demo:read", scp=["demo:write"]))
    names = tool_names(c.request("tools/list"))
    assert "echo" in names and "add" not in names


def test_duplicate_claims_refused(jd):
    """A payload naming a claim twice means different things to different parsers: refused."""
    import jwt
    now = int(time.time())
    base = '"iss":"%s","aud":"%s","iat":%d,"exp":%d,"azp":"ide"' % (ISS, AUD, now, now + 300)
    control = "{%s,%s}" % (base, '"sub":"alice","tenant":"acme"')
    tok = jwt.api_jws.encode(control.encode(), rs().private, algorithm="RS256",
                             headers={"kid": "rs1", "typ": "at+jwt"})
    assert post_init(jd, tok).status == 200
    for dup in ('"sub":"alice","tenant":"acme","tenant":"other"',
                '"tenant":"acme","sub":"alice","sub":"root"',
                '"sub":"alice","tenant":"acme","scope":"demo:read","scope":"demo:read demo:write"'):
        payload = "{%s,%s}" % (base, dup)
        json.loads(payload)  # valid JSON (Python keeps the last duplicate)
        tok = jwt.api_jws.encode(payload.encode(), rs().private, algorithm="RS256",
                                 headers={"kid": "rs1", "typ": "at+jwt"})
        mark = jd.mark()
        r = post_init(jd, tok)
        assert r.status == 401, (dup, r)
        jd.wait_log(r"msg=auth_failed reason=(bad_claims|malformed)\b", 3, start=mark)


def test_missing_scope_jwt_gets_403_challenge(jd):
    c = client_for(jd, mint(rs(), scope="demo:read"))
    mark = jd.mark()
    r = c.post({"jsonrpc": "2.0", "id": "call-1", "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status == 403, r
    ch = challenge(r)
    assert ch["error"] == "insufficient_scope", ch
    assert ch["scope"] == "demo:write", ch
    assert ch["resource_metadata"] == "http://127.0.0.1:%d%s/servers/ts/mcp" % (jd.port, PRM)
    msg = r.json()
    assert msg["jsonrpc"] == "2.0" and msg["id"] == "call-1", msg
    err = msg["error"]
    assert err["code"] == -32005, err
    assert err["data"]["type"] == "forbidden", err
    assert err["data"]["tool"] == "add", err
    assert err["data"]["required_scope"] == "demo:write", err
    jd.wait_log(r'tool_forbidden .*tool="add"', 3, start=mark)
    # the session goes on: allowed tools still work
    assert tool_text(c.call_tool("echo", {"text": "still"})) == "still"


def test_missing_scope_api_key_in_band(jd):
    d = jd
    c = McpClient(d, key="alice")
    c.initialize()
    names = tool_names(c.request("tools/list"))
    assert "echo" in names and "add" not in names
    assert tool_text(c.call_tool("echo", {"text": "k"})) == "k"
    r = c.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status == 200, r
    msg = c.parse(r)
    assert msg["id"] == 5, msg
    assert msg["error"]["code"] == -32005, msg
    assert msg["error"]["data"]["type"] == "forbidden"
    assert msg["error"]["data"]["tool"] == "add"
    assert msg["error"]["data"]["required_scope"] == "demo:write"
    # bob's key has no scopes at all
    b = McpClient(d, key="bob")
    b.initialize()
    names = tool_names(b.request("tools/list"))
    assert not ({"echo", "add"} & names), names
    assert b.call_tool("echo", {"text": "no"})["error"]["code"] == -32005


def test_missing_scope_in_batch_in_band(jd):
    c = client_for(jd, mint(rs(), scope="demo:read"), proto="2025-03-26")
    r = c.post([{"jsonrpc": "2.0", "id": "b1", "method": "tools/call",
                 "params": {"name": "echo", "arguments": {"text": "one"}}},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}])
    assert r.status == 200, r
    answers = r.json() if r.content_type == "application/json" else [
        json.loads(x) for x in sse_data(r.body)]
    by_id = {a["id"]: a for a in answers if "id" in a}
    assert tool_text(by_id["b1"]) == "one"
    assert by_id[2]["error"]["code"] == -32005, by_id
    assert by_id[2]["error"]["data"]["required_scope"] == "demo:write"


def test_missing_scope_legacy_sse_in_band(jd):
    tok = mint(rs(), scope="demo:read")
    lc = LegacyClient(jd, key=tok)
    try:
        lc.initialize()
        m = lc.rpc(3, "tools/list")
        assert "add" not in {t["name"] for t in m["result"]["tools"]}
        m = lc.rpc(4, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
        assert m["error"]["code"] == -32005, m
        assert m["error"]["data"]["tool"] == "add"
        m = lc.rpc(5, "tools/call", {"name": "echo", "arguments": {"text": "legacy"}})
        assert tool_text(m) == "legacy"
    finally:
        lc.close()


def test_step_up_on_the_same_session(jd):
    """MCP's scope step-up: refused for lack of demo:write, the client gets a token with it
    (same user and agent) and retries on its session."""
    c = client_for(jd, mint(rs(), scope="demo:read"))
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    assert c.post(call).status == 403
    c.key = mint(rs(), scope="demo:read demo:write")
    r = c.post(call)
    assert r.status == 200, r
    assert tool_text(c.parse(r)) == "5"
    assert "add" in tool_names(c.request("tools/list"))


def _broad_session_then_narrow_token(jd):
    c = client_for(jd, mint(rs(), scope="demo:read demo:write"), proto="2025-03-26")
    assert tool_text(c.call_tool("add", {"a": 1, "b": 1})) == "2"
    c.key = mint(rs(), scope="demo:read")
    return c


NARROW_CALL = {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
               "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}


def test_narrower_token_on_a_broad_session_single_call(jd):
    """The scopes of the token presented now count, not those of the token that opened the
    session."""
    c = _broad_session_then_narrow_token(jd)
    assert c.post(NARROW_CALL).status == 403


def test_narrower_token_on_a_broad_session_tools_list(jd):
    c = _broad_session_then_narrow_token(jd)
    assert "add" not in tool_names(c.request("tools/list"))


def test_narrower_token_on_a_broad_session_batch(jd):
    c = _broad_session_then_narrow_token(jd)
    r = c.post([NARROW_CALL])
    assert r.status == 200, r
    answers = r.json()
    assert "error" in answers[0] and answers[0]["error"]["code"] == -32005, answers


def test_narrower_token_on_a_broad_session_legacy_sse(jd):
    lc = LegacyClient(jd, key=mint(rs(), scope="demo:read demo:write"))
    try:
        lc.initialize()
        m = lc.rpc(2, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}})
        assert tool_text(m) == "2"
        lc.key = mint(rs(), scope="demo:read")
        m = lc.rpc(3, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}})
        assert "error" in m and m["error"]["code"] == -32005, m
    finally:
        lc.close()


# ---- tenants and sessions bound to principals ------------------------------------------------


def test_tenant_reaches_only_its_servers(jd):
    acme = mint(rs(), aud=[AUD])
    r = post_init(jd, acme, "ts2")
    assert r.status == 403, r
    other = mint(rs(), tenant="other", sub="carol", scope="ts2:read")
    c = client_for(jd, other, server="ts2")
    assert tool_text(c.call_tool("echo", {"text": "t2"})) == "t2"
    assert post_init(jd, other, "crashy").status == 403


def test_session_bound_to_principal(jd):
    c = client_for(jd, mint(rs()))
    assert tool_text(c.call_tool("echo", {"text": "mine"})) == "mine"
    ping = {"jsonrpc": "2.0", "id": 11, "method": "ping"}
    # a fresh token of the same principal (other scopes, other expiry) is the same caller
    assert c.post(ping, key=mint(rs(), scope="demo:read", ttl=200)).status == 200
    assert c.post(ping, key=mint(signing_key("es1", "ES256"))).status == 200
    for intruder in (mint(rs(), sub="mallory"), mint(rs(), azp="other-agent"),
                     mint(rs(), azp=None), mint(rs(), tenant="other", sub="alice"),
                     "mcpv_test_alice_0123456789abcdefghijklmnop"):
        r = c.post(ping, key=intruder)
        assert r.status == 404, (intruder[:40], r)
        c2 = dict(c.headers(), Accept="text/event-stream")
        r = jd.request("GET", c.path, None, c2, key=intruder, timeout=5)
        assert r.status == 404, r
        r = jd.request("DELETE", c.path, None, c.headers(), key=intruder)
        assert r.status == 404, r
    # the session survived every attempt
    assert tool_text(c.call_tool("echo", {"text": "still mine"})) == "still mine"


def test_session_bound_to_the_kind_of_credential(jd):
    """A JWT whose sub, tenant and agent are an API key's labels is not that key's caller, nor
    the other way round: each is refused like any other principal's request."""
    key, tenant, user, agent = KEYS["alice"]
    twin = mint(rs(), sub=user, tenant=tenant, azp=agent)
    by_key = client_for(jd, key)
    by_jwt = client_for(jd, twin)
    ping = {"jsonrpc": "2.0", "id": 12, "method": "ping"}
    for c, other in ((by_key, twin), (by_jwt, key)):
        assert c.post(ping).status == 200
        r = c.post(ping, key=other)
        assert r.status == 404, r
        assert r.json()["error"]["code"] == -32600, r.json()
        r = jd.request("GET", c.path, None, dict(c.headers(), Accept="text/event-stream"),
                       key=other, timeout=5)
        assert r.status == 404, r
        assert jd.request("DELETE", c.path, None, c.headers(), key=other).status == 404
    for c in (by_key, by_jwt):
        assert c.post(ping).status == 200


def log_fields(line):
    """The key=value fields of a log line, values as written (quoted or bare); the whole line
    must be such fields, so a value cannot have slipped in one of its own."""
    rx = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')
    fields, pos = [], 0
    while pos < len(line):
        m = rx.match(line, pos)
        assert m, (line, pos)
        fields.append((m.group(1), m.group(2)))
        pos = m.end()
    return fields


def test_claims_with_spaces_stay_one_log_field(jd):
    sub = 'alice admin=true tenant=root'
    azp = 'ide user="mallory" x=1'
    tok = mint(rs(), sub=sub, azp=azp, scope="demo:read")
    mark = jd.mark()
    c = client_for(jd, tok)
    assert tool_text(c.call_tool("echo", {"text": "q"})) == "q"
    r = c.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status == 403, r
    quoted_sub = '"alice admin=true tenant=root"'
    quoted_azp = '"ide user=\\"mallory\\" x=1"'
    for msg in ("session_start", "session_ready", "tool_forbidden"):
        line = jd.wait_log(r"msg=%s .*session=%s" % (msg, c.sid[:8]), 3, start=mark).string
        fields = log_fields(line)
        keys = [k for k, _ in fields]
        assert len(keys) == len(set(keys)), line  # nothing forged a second user= or tenant=
        assert "admin" not in keys and "x" not in keys, line
        assert dict(fields)["user"] == quoted_sub, line
        if msg == "session_start":
            assert dict(fields)["agent"] == quoted_azp and dict(fields)["tenant"] == "acme", line


# ---- expiry ----------------------------------------------------------------------------------


def _wait_until(t):
    wait_for(lambda: time.time() >= t, timeout=t - time.time() + 2, interval=0.05,
             what="the clock to pass %d" % t)


def test_token_expiring_mid_session(jd):
    exp = int(time.time()) + 2
    tok = mint(rs(), exp=exp)
    c = client_for(jd, tok)
    assert tool_text(c.call_tool("echo", {"text": "before"})) == "before"
    _wait_until(exp + 1)
    mark = jd.mark()
    r = c.post({"jsonrpc": "2.0", "id": 20, "method": "ping"})
    assert r.status == 401, r
    assert challenge(r)["error"] == "invalid_token"
    assert "(expired)" in r.json()["error"]["message"]
    jd.wait_log(r"msg=auth_failed reason=expired", 3, start=mark)
    # a fresh token of the same principal carries on with the same session
    c.key = mint(rs())
    assert tool_text(c.call_tool("echo", {"text": "after"})) == "after"


def test_get_stream_ends_when_token_expires(jd):
    c = client_for(jd, mint(rs()))
    exp = int(time.time()) + 2
    conn, resp, sse = c.open_get(headers={"Authorization": "Bearer " + mint(rs(), exp=exp)})
    assert resp.status == 200
    try:
        t0 = time.time()
        mark = jd.mark()
        ev = sse.next(timeout=exp - t0 + 4)
        while ev is not None:  # keep-alives or messages until the end
            ev = sse.next(timeout=exp - time.time() + 4)
        assert time.time() >= exp - 0.5, "the stream ended before the token expired"
        jd.wait_log(r"session_credential_expired", 3, start=mark)
    finally:
        conn.close()


def test_get_stream_follows_latest_token(jd):
    """The stream ends with the latest token used on the session, not the first."""
    exp1 = int(time.time()) + 3
    c = client_for(jd, mint(rs(), exp=exp1))
    conn, resp, sse = c.open_get()
    assert resp.status == 200
    try:
        c.key = mint(rs(), ttl=300)  # a later request renews the credential
        assert tool_text(c.call_tool("echo", {"text": "renew"})) == "renew"
        _wait_until(exp1 + 1)
        # still open: an unrelated notification arrives on it
        assert tool_text(c.call_tool("notify_after")) is not None
        while True:
            ev = sse.next(timeout=5)
            assert ev is not None, "the GET stream ended at the first token's expiry"
            if ev.data and ev.json().get("method") == "notifications/message":
                break
    finally:
        conn.close()


def test_legacy_sse_stream_ends_when_token_expires(jd):
    exp = int(time.time()) + 2
    lc = LegacyClient(jd, key=mint(rs(), exp=exp))
    try:
        lc.initialize()
        mark = jd.mark()
        ev = lc.sse.next(timeout=exp - time.time() + 4)
        while ev is not None:
            ev = lc.sse.next(timeout=exp - time.time() + 4)
        assert time.time() >= exp - 0.5, "the stream ended before the token expired"
        jd.wait_log(r"session_credential_expired", 3, start=mark)
    finally:
        lc.close()


# ---- no token passthrough --------------------------------------------------------------------


def _assert_absent(blob, tok, what):
    assert tok not in blob, what
    for part in tok.split("."):
        if len(part) >= 16:
            assert part not in blob, (what, part[:16])
    assert "Bearer" not in blob, what


@pytest.mark.parametrize("kind", ["jwt", "api_key"])
def test_no_token_passthrough(jd, kind):
    tok = mint(rs()) if kind == "jwt" else KEYS["alice"][0]
    c = client_for(jd, tok)
    env = json.loads(tool_text(c.call_tool("env")))
    argv = json.loads(tool_text(c.call_tool("argv")))
    fds = json.loads(tool_text(c.call_tool("fds")))
    assert sorted(fds) == [0, 1, 2], fds
    blob = json.dumps(env) + json.dumps(argv)
    _assert_absent(blob, tok, "child env/argv")
    for k in env:
        assert "AUTH" not in k.upper() and "TOKEN" not in k.upper(), env
    # and the daemon's log never holds it (nor its signature, nor its hash)
    log = jd.log
    _assert_absent(log, tok, "daemon log")
    assert sha256_hex(tok) not in log


# ---- JWKS over HTTPS ---------------------------------------------------------------------------


@pytest.fixture
def pki():
    """(CA, folder) with ca.pem, and a leaf for 127.0.0.1 (leaf.pem, leaf.key) in a folder the
    daemon's front can read."""
    d = world_readable_dir()
    ca = PkiCA()
    key, cert = ca.issue()
    with open(d + "/ca.pem", "wb") as f:
        f.write(ca.cert_pem())
    with open(d + "/leaf.pem", "wb") as f:
        f.write(cert_pem(cert))
    with open(d + "/leaf.key", "wb") as f:
        f.write(key_pem(key))
    import os
    for n in ("ca.pem", "leaf.pem"):
        os.chmod(d + "/" + n, 0o644)
    yield ca, d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def jwks_server(pki):
    servers = []

    def make(doc, cert="leaf.pem", key="leaf.key"):
        _, d = pki
        s = JwksServer(doc, d + "/" + cert, d + "/" + key)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _url_daemon(make_jwt_daemon, pki, server):
    _, d = pki
    return make_jwt_daemon(jwt={"jwks_file": None, "jwks_url": server.url},
                           proc_env={"SSL_CERT_FILE": d + "/ca.pem"})


def test_jwks_url_fetched_at_start(make_jwt_daemon, pki, jwks_server):
    srv = jwks_server(jwks_doc(rs()))
    d = _url_daemon(make_jwt_daemon, pki, srv)
    srv.wait_requests(1)
    d.wait_log(r"msg=jwks_loaded url=\S+ keys=1", 5)
    assert srv.paths[0] == "/jwks.json"
    c = client_for(d, mint(rs()))
    assert tool_text(c.call_tool("echo", {"text": "https"})) == "https"
    assert srv.count() == 1  # a known kid needs no fetch


def test_jwks_unknown_kid_triggers_refresh(make_jwt_daemon, pki, jwks_server):
    """The IdP rotates keys: the first token under a new kid waits for one refresh and passes."""
    srv = jwks_server(jwks_doc(rs()))
    d = _url_daemon(make_jwt_daemon, pki, srv)
    srv.wait_requests(1)
    d.wait_log(r"msg=jwks_loaded", 5)
    new = signing_key("es1", "ES256")
    srv.doc = jwks_doc(rs(), new)
    r = post_init(d, mint(new))
    assert r.status == 200, r
    assert srv.count() == 2
    # both keys work from now on, without more fetches
    assert post_init(d, mint(rs())).status == 200
    assert post_init(d, mint(new)).status == 200
    assert srv.count() == 2
    assert d.log_lines("jwks_fetch_failed") == []


def test_jwks_unknown_kid_refresh_rate_limited(make_jwt_daemon, pki, jwks_server):
    """At most one unknown-kid refresh per 30 s: after one, a second unknown kid is refused at
    once, without a fetch."""
    srv = jwks_server(jwks_doc(rs()))
    d = _url_daemon(make_jwt_daemon, pki, srv)
    srv.wait_requests(1)
    d.wait_log(r"msg=jwks_loaded", 5)
    post_init(d, mint(signing_key("es-bogus", "ES256")))  # may use up the refresh
    after_first = srv.count()
    assert after_first <= 2
    for i, alg in enumerate(("EdDSA", "ES256", "RS256")):
        t0 = time.monotonic()
        expect_401(d, mint(signing_key("bogus-%d" % i, alg)), "unknown_kid")
        assert time.monotonic() - t0 < 2
    assert srv.count() == after_first
    # known keys keep working meanwhile
    assert post_init(d, mint(rs())).status == 200
    assert srv.count() == after_first


def _raw_post(d, token):
    """Sends an initialize POST on a raw socket and returns the socket, unanswered."""
    import socket as _socket
    body = json.dumps(init_msg()).encode()
    s = _socket.create_connection(("127.0.0.1", d.port), timeout=15)
    s.sendall(("POST /servers/ts/mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n"
               % (d.port, token, len(body))).encode() + body)
    return s


def _raw_status(s):
    resp = http.client.HTTPResponse(s)
    resp.begin()
    resp.read()
    return resp.status


def test_requests_wait_for_the_fetch_in_flight(make_jwt_daemon, pki, jwks_server):
    """While the JWKS fetch runs (the IdP is slow), a token waits for it and is then retried
    once; a caller that hangs up meanwhile harms nothing."""
    srv = jwks_server(jwks_doc(rs()))
    srv.gate.clear()
    d = _url_daemon(make_jwt_daemon, pki, srv)
    srv.wait_requests(1, arrived=True)
    good = _raw_post(d, mint(rs()))
    gone = _raw_post(d, mint(rs()))
    bogus = _raw_post(d, mint(signing_key("es-bogus", "ES256")))
    # the event loop has read them (they came first) and answered this one
    assert d.request("GET", "/healthz", key=None).status == 200
    for s in (good, bogus):
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(1)  # parked: not answered while the fetch runs
        s.settimeout(15)
    assert d.log_lines("auth_failed") == []
    gone.close()
    srv.gate.set()
    assert _raw_status(good) == 200
    assert _raw_status(bogus) == 401  # retried once against the new keys, still unknown
    good.close()
    bogus.close()
    assert srv.count() == 1
    d.wait_log(r"msg=jwks_loaded", 5)
    d.wait_log(r"msg=auth_failed reason=unknown_kid", 5)
    assert post_init(d, mint(rs())).status == 200
    assert d.proc.poll() is None


def test_jwks_flood_of_unknown_kids_fetches_once(make_jwt_daemon, pki, jwks_server):
    """Many requests with bogus kids at once share one fetch at most."""
    srv = jwks_server(jwks_doc(rs()))
    d = _url_daemon(make_jwt_daemon, pki, srv)
    srv.wait_requests(1)
    d.wait_log(r"msg=jwks_loaded", 5)
    import threading
    results = []

    def one(i):
        results.append(post_init(d, mint(signing_key("bogus%d" % (i % 3), "ES256"))).status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == [401] * 12, results
    assert srv.count() <= 2, srv.count()


def test_jwks_untrusted_certificate(make_jwt_daemon, pki, jwks_server):
    _, folder = pki
    rogue = PkiCA("rogue CA")
    key, cert = rogue.issue()
    with open(folder + "/rogue.pem", "wb") as f:
        f.write(cert_pem(cert))
    with open(folder + "/rogue.key", "wb") as f:
        f.write(key_pem(key))
    srv = jwks_server(jwks_doc(rs()), cert="rogue.pem", key="rogue.key")
    d = _url_daemon(make_jwt_daemon, pki, srv)
    d.wait_log(r"jwks_fetch_failed", 10)
    assert d.log_lines("jwks_loaded") == []
    r = post_init(d, mint(rs()))
    assert r.status == 401, r
    assert srv.count() == 0  # the handshake failed before any request


def test_jwks_certificate_for_another_host(make_jwt_daemon, pki, jwks_server):
    ca, folder = pki
    key, cert = ca.issue(names=("idp.other.example",))
    with open(folder + "/wrong.pem", "wb") as f:
        f.write(cert_pem(cert))
    with open(folder + "/wrong.key", "wb") as f:
        f.write(key_pem(key))
    srv = jwks_server(jwks_doc(rs()), cert="wrong.pem", key="wrong.key")
    d = _url_daemon(make_jwt_daemon, pki, srv)
    d.wait_log(r"jwks_fetch_failed", 10)
    assert d.log_lines("jwks_loaded") == []
    assert post_init(d, mint(rs())).status == 401


def test_jwks_plain_http_on_loopback(make_jwt_daemon):
    srv = JwksServer(jwks_doc(rs()))
    try:
        d = make_jwt_daemon(jwt={"jwks_file": None, "jwks_url": srv.url})
        srv.wait_requests(1)
        d.wait_log(r"msg=jwks_loaded", 5)
        assert post_init(d, mint(rs())).status == 200
    finally:
        srv.close()
