/*
 * test_jose.c — JWKS parsing and JWT access-token verification (supervisor/jose.c).
 *
 * Known answers first (RFC 7515 A.2 and A.3, RFC 8037 A.4): those payloads are not access tokens,
 * so they prove the signature layer by what comes after it — a valid signature reaches the claim
 * checks (bad_issuer, or malformed for RFC 8037's plain-text payload), one flipped bit stops at
 * bad_signature. Then tokens signed here with keys generated at start-up, one test per outcome.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose.h"

#define ISS    "https://issuer.example"
#define AUD    "https://mcp.example"
#define NOW    1700000000LL
#define LEEWAY 60

/* ---- RFC vectors ---------------------------------------------------------------------------- */

/* RFC 7515 Appendix A.2: RS256; the JWK of A.2.1 without its private members. */
static const char rfc7515_a2_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\","
    "\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"
    "4qPCJrcS2mJPMEzP1P"
    "t0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"
    "bSf63kpaSHSXndS5z5r"
    "exMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_"
    "I5IhlJH7aGhyxXFvUK"
    "-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\"}]}";
static const char rfc7515_a2_jws[] =
    "eyJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q"
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"
    "O8W2Fp5ju"
    "jGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7"
    "K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6L"
    "bgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/* RFC 7515 Appendix A.3: ES256 (P-256). */
static const char rfc7515_a3_jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
                                      "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                                      "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
static const char rfc7515_a3_jws[] =
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/* RFC 8037 Appendix A.4: Ed25519, payload "Example of Ed25519 signing" (A.1/A.2 key). */
static const char rfc8037_a4_jwks[] = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                                      "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";
static const char rfc8037_a4_jws[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/* ---- helpers ------------------------------------------------------------------------------ */

static struct {
    EVP_PKEY *rsa, *rsa2, *ec, *ed, *rsa_small;
    struct jose_keyset ks; /* rsa "rsa1", rsa2 "rsa2", ec "ec1", ed "ed1" */
} g;

static const char *auds[] = {"https://other.example", AUD};

static struct jose_policy policy(void)
{
    struct jose_policy p = {
        .issuer = ISS,
        .audiences = auds,
        .naudiences = 2,
        .tenant_claim = "tenant",
        .agent_claim = "azp",
        .now = NOW,
        .leeway_s = LEEWAY,
    };
    return p;
}

static char *b64url(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;
    assert_non_null(out);
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static char *bn_b64(EVP_PKEY *k, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0 && (size_t)n <= sizeof(buf));
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* The public JWK of k, with kid (if any) and extra members (",\"use\":\"sig\"" or ""). */
static char *jwk_of(EVP_PKEY *k, const char *kid, const char *extra)
{
    char *out = NULL, *a = NULL, *b = NULL, kidm[300] = "";
    if (kid != NULL)
        snprintf(kidm, sizeof(kidm), ",\"kid\":\"%s\"", kid);
    if (EVP_PKEY_is_a(k, "RSA")) {
        a = bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
        b = bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
        assert_true(asprintf(&out, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s%s}", a, b, kidm,
                             extra) > 0);
    } else if (EVP_PKEY_is_a(k, "EC")) {
        a = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        assert_true(asprintf(&out,
                             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s%s}", a,
                             b, kidm, extra) > 0);
    } else {
        unsigned char raw[32];
        size_t n = sizeof(raw);
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
        a = b64url(raw, n);
        assert_true(asprintf(&out, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s%s}", a,
                             kidm, extra) > 0);
    }
    free(a);
    free(b);
    return out;
}

/* {"keys":[j1,j2,...]}; takes ownership of the n JWK strings. */
static char *jwks_of(size_t n, ...)
{
    char *out = strdup("{\"keys\":[");
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        char *j = va_arg(ap, char *), *next = NULL;
        assert_true(asprintf(&next, "%s%s%s", out, i > 0 ? "," : "", j) > 0);
        free(out);
        free(j);
        out = next;
    }
    va_end(ap);
    char *next = NULL;
    assert_true(asprintf(&next, "%s]}", out) > 0);
    free(out);
    return next;
}

static void load_keyset(const char *jwks, struct jose_keyset *ks)
{
    char err[256] = "";
    int rc = jose_jwks_parse(jwks, strlen(jwks), ks, err, sizeof(err));
    if (rc != 0)
        fail_msg("jose_jwks_parse: %s", err);
}

/* ECDSA DER → JWS R||S. */
static size_t der_to_rs(const unsigned char *der, size_t len, unsigned char rs[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);
    const BIGNUM *r, *ss;
    assert_non_null(s);
    ECDSA_SIG_get0(s, &r, &ss);
    assert_int_equal(BN_bn2binpad(r, rs, 32), 32);
    assert_int_equal(BN_bn2binpad(ss, rs + 32, 32), 32);
    ECDSA_SIG_free(s);
    return 64;
}

/*
 * header.payload.signature with alg's signature by k over the raw JSON texts given; alg "none"
 * gives an empty signature, "HS256" an HMAC keyed with hmac_key.
 */
static char *sign_raw(EVP_PKEY *k, const char *alg, const char *header, const char *payload,
                      const unsigned char *hmac_key, size_t hmac_keylen)
{
    char *h = b64url_str(header), *p = b64url_str(payload), *input = NULL, *s = NULL, *out = NULL;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    assert_true(asprintf(&input, "%s.%s", h, p) > 0);

    if (strcmp(alg, "none") == 0) {
        siglen = 0;
    } else if (strcmp(alg, "HS256") == 0) {
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hmac_key, hmac_keylen,
                                  (unsigned char *)input, strlen(input), sig, sizeof(sig),
                                  &siglen));
    } else {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        const char *digest = strcmp(alg, "EdDSA") == 0 ? NULL : "SHA256";
        assert_int_equal(EVP_DigestSignInit_ex(md, &pctx, digest, NULL, NULL, k, NULL), 1);
        if (strcmp(alg, "PS256") == 0) {
            assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
            assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
            assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL), 1);
        }
        assert_int_equal(EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, strlen(input)),
                         1);
        EVP_MD_CTX_free(md);
        if (strcmp(alg, "ES256") == 0) {
            unsigned char rs[64];
            siglen = der_to_rs(sig, siglen, rs);
            memcpy(sig, rs, siglen);
        }
    }
    s = b64url(sig, siglen);
    assert_true(asprintf(&out, "%s.%s", input, s) > 0);
    free(h);
    free(p);
    free(s);
    free(input);
    return out;
}

static char *sign(EVP_PKEY *k, const char *alg, const char *header, const char *payload)
{
    return sign_raw(k, alg, header, payload, NULL, 0);
}

/* A header {"alg":alg,"typ":"at+jwt","kid":kid}. */
static char *header_of(const char *alg, const char *kid)
{
    char *h = NULL;
    if (kid != NULL)
        assert_true(asprintf(&h, "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", alg, kid) >
                    0);
    else
        assert_true(asprintf(&h, "{\"alg\":\"%s\",\"typ\":\"at+jwt\"}", alg) > 0);
    return h;
}

/* A complete access token's claims, exp = NOW + 300, plus `extra` (",\"k\":v" or ""). */
static char *claims_with(const char *extra)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,\"iat\":%lld,"
                         "\"sub\":\"alice\",\"tenant\":\"acme\"%s}",
                         NOW + 300, NOW - 10, extra) > 0);
    return p;
}

/* Signs payload with the generated key for alg and verifies it against g.ks. */
static enum jose_result verify_payload(const char *alg, const char *payload, struct jose_claims *c)
{
    EVP_PKEY *k = strcmp(alg, "ES256") == 0 ? g.ec : strcmp(alg, "EdDSA") == 0 ? g.ed : g.rsa;
    const char *kid = strcmp(alg, "ES256") == 0   ? "ec1"
                      : strcmp(alg, "EdDSA") == 0 ? "ed1"
                                                  : "rsa1";
    char *h = header_of(alg, kid);
    char *t = sign(k, alg, h, payload);
    struct jose_policy p = policy();
    enum jose_result r = jose_verify(t, strlen(t), &g.ks, &p, c);
    free(h);
    free(t);
    return r;
}

/* verify_payload for claims_with(extra) signed RS256, discarding the claims. */
static enum jose_result verify_extra(const char *extra)
{
    struct jose_claims c;
    char *p = claims_with(extra);
    enum jose_result r = verify_payload("RS256", p, &c);
    jose_claims_free(&c);
    free(p);
    return r;
}

static enum jose_result verify_claims_json(const char *payload)
{
    struct jose_claims c;
    enum jose_result r = verify_payload("RS256", payload, &c);
    jose_claims_free(&c);
    return r;
}

static enum jose_result verify_token(const char *token, const struct jose_keyset *ks)
{
    struct jose_claims c;
    struct jose_policy p = policy();
    enum jose_result r = jose_verify(token, strlen(token), ks, &p, &c);
    jose_claims_free(&c);
    return r;
}

#define assert_result(got, want) assert_string_equal(jose_result_name(got), jose_result_name(want))

static int group_setup(void **state)
{
    g.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    g.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g.ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (g.rsa == NULL || g.rsa2 == NULL || g.rsa_small == NULL || g.ec == NULL || g.ed == NULL)
        return -1;
    char *jwks = jwks_of(4, jwk_of(g.rsa, "rsa1", ",\"use\":\"sig\",\"alg\":\"RS256\""),
                         jwk_of(g.rsa2, "rsa2", ""), jwk_of(g.ec, "ec1", ",\"alg\":\"ES256\""),
                         jwk_of(g.ed, "ed1", ",\"use\":\"sig\""));
    char err[256] = "";
    int rc = jose_jwks_parse(jwks, strlen(jwks), &g.ks, err, sizeof(err));
    free(jwks);
    if (rc != 0 || g.ks.nkeys != 4) {
        fprintf(stderr, "group_setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    jose_keyset_free(&g.ks);
    EVP_PKEY_free(g.rsa);
    EVP_PKEY_free(g.rsa2);
    EVP_PKEY_free(g.rsa_small);
    EVP_PKEY_free(g.ec);
    EVP_PKEY_free(g.ed);
    return 0;
}

/* ---- base64url ------------------------------------------------------------------------------ */

static void b64url_decodes_only_canonical_unpadded_text(void **state)
{
    size_t n = 99;
    unsigned char *d = jose_b64url_decode("", 0, &n);
    assert_non_null(d);
    assert_int_equal(n, 0);
    free(d);
    d = jose_b64url_decode("SGk_-w", 6, &n); /* "Hi" 0x3f 0xfb */
    assert_non_null(d);
    assert_int_equal(n, 4);
    assert_memory_equal(d, "Hi\x3f\xfb", 4);
    free(d);

    assert_null(jose_b64url_decode("SGk=", 4, &n));  /* padding */
    assert_null(jose_b64url_decode("SGk+", 4, &n));  /* base64, not base64url */
    assert_null(jose_b64url_decode("SG k", 4, &n));  /* whitespace */
    assert_null(jose_b64url_decode("SGkhS", 5, &n)); /* 4n+1 characters */
    assert_null(jose_b64url_decode("SGl", 3, &n));   /* "Hi" with a non-zero spare bit */
    assert_null(jose_b64url_decode("S\0k", 3, &n));  /* NUL */
    assert_int_equal(n, 0);
}

/* ---- known answers ------------------------------------------------------------------------ */

/* Flips the low bit of the signature's first byte (its first base64url character's 6th bit). */
static char *flip_signature(const char *token)
{
    char *t = strdup(token);
    char *sig = strrchr(t, '.') + 1;
    sig[1] = sig[1] == 'A' ? 'B' : 'A'; /* second character: all six bits are signature bits */
    return t;
}

static void rfc_vector(const char *jwks, const char *jws, enum jose_result after_signature)
{
    struct jose_keyset ks;
    load_keyset(jwks, &ks);
    assert_int_equal(ks.nkeys, 1);
    /* No kid in the header: the only key that fits the alg is used. */
    assert_result(verify_token(jws, &ks), after_signature);
    char *bad = flip_signature(jws);
    assert_result(verify_token(bad, &ks), JOSE_BAD_SIGNATURE);
    free(bad);
    jose_keyset_free(&ks);
}

static void rfc7515_a2_rs256_signature_verifies(void **state)
{
    /* iss "joe" is checked only after the signature passed. */
    rfc_vector(rfc7515_a2_jwks, rfc7515_a2_jws, JOSE_BAD_ISSUER);
}

static void rfc7515_a3_es256_signature_verifies(void **state)
{
    rfc_vector(rfc7515_a3_jwks, rfc7515_a3_jws, JOSE_BAD_ISSUER);
}

static void rfc8037_a4_ed25519_signature_verifies(void **state)
{
    /* The payload is plain text: it is parsed (and refused) only after the signature passed. */
    rfc_vector(rfc8037_a4_jwks, rfc8037_a4_jws, JOSE_MALFORMED);
}

static void rfc_vector_with_another_payload_is_a_bad_signature(void **state)
{
    struct jose_keyset ks;
    load_keyset(rfc7515_a3_jwks, &ks);
    char *p =
        b64url_str("{\"iss\":\"joe\",\"exp\":1300819380,\"http://example.com/is_root\":false}");
    char *t = NULL;
    const char *sig = strrchr(rfc7515_a3_jws, '.');
    assert_true(asprintf(&t, "eyJhbGciOiJFUzI1NiJ9.%s%s", p, sig) > 0);
    assert_result(verify_token(t, &ks), JOSE_BAD_SIGNATURE);
    free(p);
    free(t);
    jose_keyset_free(&ks);
}

/* ---- generated tokens: success -------------------------------------------------------------- */

static void check_ok(const char *alg)
{
    struct jose_claims c;
    char *p = claims_with(",\"azp\":\"ci-bot\",\"scope\":\"invoices:read  invoices:write\"");
    assert_result(verify_payload(alg, p, &c), JOSE_OK);
    assert_string_equal(c.user, "alice");
    assert_string_equal(c.tenant, "acme");
    assert_string_equal(c.agent, "ci-bot");
    assert_int_equal(c.nscopes, 2);
    assert_string_equal(c.scopes[0], "invoices:read");
    assert_string_equal(c.scopes[1], "invoices:write");
    assert_int_equal(c.exp, NOW + 300);
    jose_claims_free(&c);
    assert_int_equal(c.nscopes, 0);
    free(p);
}

static void rs256_token_is_accepted(void **state)
{
    check_ok("RS256");
}

static void ps256_token_is_accepted(void **state)
{
    /* rsa1 says alg RS256 in its JWK, so PS256 goes to rsa2, which does not restrict its alg. */
    struct jose_claims c;
    char *h = header_of("PS256", "rsa2");
    char *p = claims_with(",\"scp\":[\"a\",\"b\",\"c\"]");
    char *t = sign(g.rsa2, "PS256", h, p);
    struct jose_policy pol = policy();
    assert_result(jose_verify(t, strlen(t), &g.ks, &pol, &c), JOSE_OK);
    assert_string_equal(c.kid, "rsa2");
    assert_int_equal(c.nscopes, 3);
    assert_string_equal(c.scopes[2], "c");
    jose_claims_free(&c);
    free(t);
    /* The same bytes with PKCS#1 v1.5 padding claimed as PS256 do not verify. */
    t = sign(g.rsa2, "RS256", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_SIGNATURE);
    free(t);
    free(h);
    free(p);
}

static void es256_token_is_accepted(void **state)
{
    check_ok("ES256");
}

static void eddsa_token_is_accepted(void **state)
{
    check_ok("EdDSA");
}

static void typ_variants_are_accepted(void **state)
{
    static const char *const typs[] = {"at+jwt", "application/at+jwt", "JWT", "AT+JWT", "jwt"};
    char *p = claims_with("");
    for (size_t i = 0; i < sizeof(typs) / sizeof(typs[0]); i++) {
        char *h = NULL;
        assert_true(asprintf(&h, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"%s\"}", typs[i]) >
                    0);
        char *t = sign(g.rsa, "RS256", h, p);
        assert_result(verify_token(t, &g.ks), JOSE_OK);
        free(t);
        free(h);
    }
    /* No typ at all is accepted too. */
    char *t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_OK);
    free(t);
    free(p);
}

static void scopes_come_from_scope_or_scp(void **state)
{
    struct jose_claims c;
    char *p = claims_with(",\"scp\":[\"x:read\",\"x:write\"]");
    assert_result(verify_payload("ES256", p, &c), JOSE_OK);
    assert_int_equal(c.nscopes, 2);
    assert_string_equal(c.scopes[0], "x:read");
    assert_string_equal(c.scopes[1], "x:write");
    jose_claims_free(&c);
    free(p);

    p = claims_with(",\"scp\":\"one two\"");
    assert_result(verify_payload("ES256", p, &c), JOSE_OK);
    assert_int_equal(c.nscopes, 2);
    assert_string_equal(c.scopes[1], "two");
    jose_claims_free(&c);
    free(p);

    /* "scope" wins over "scp". */
    p = claims_with(",\"scope\":\"s\",\"scp\":[\"t\"]");
    assert_result(verify_payload("ES256", p, &c), JOSE_OK);
    assert_int_equal(c.nscopes, 1);
    assert_string_equal(c.scopes[0], "s");
    jose_claims_free(&c);
    free(p);

    p = claims_with("");
    assert_result(verify_payload("ES256", p, &c), JOSE_OK);
    assert_int_equal(c.nscopes, 0);
    jose_claims_free(&c);
    free(p);
}

static void agent_comes_from_azp_then_client_id_then_act_sub(void **state)
{
    static const struct {
        const char *extra, *agent;
    } cases[] = {
        {",\"azp\":\"a1\",\"client_id\":\"c1\",\"act\":{\"sub\":\"s1\"}", "a1"},
        {",\"client_id\":\"c1\",\"act\":{\"sub\":\"s1\"}", "c1"},
        {",\"act\":{\"sub\":\"s1\",\"act\":{\"sub\":\"older\"}}", "s1"},
        {",\"act\":{\"iss\":\"x\"}", ""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct jose_claims c;
        char *p = claims_with(cases[i].extra);
        assert_result(verify_payload("EdDSA", p, &c), JOSE_OK);
        assert_string_equal(c.agent, cases[i].agent);
        jose_claims_free(&c);
        free(p);
    }
}

static void audience_may_be_an_array(void **state)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":[\"https://x.example\",\"" AUD "\"],"
                         "\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_OK);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":[\"https://x.example\",\"https://y\"],"
                         "\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_AUDIENCE);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":[],"
                         "\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_AUDIENCE);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":[\"" AUD "\",7],"
                         "\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_AUDIENCE);
    free(p);
}

static void key_without_kid_is_used_when_it_is_the_only_fit(void **state)
{
    char *p = claims_with("");
    char *h = header_of("ES256", NULL);
    char *t = sign(g.ec, "ES256", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_OK); /* ec1 is the only P-256 key */
    free(t);
    free(h);
    /* PS256 fits only rsa2 (rsa1's JWK says RS256), so no kid is needed either. */
    h = header_of("PS256", NULL);
    t = sign(g.rsa2, "PS256", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_OK);
    free(t);
    free(h);
    /* Two RSA keys fit RS256: without a kid the token names no key. */
    h = header_of("RS256", NULL);
    t = sign(g.rsa, "RS256", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_UNKNOWN_KID);
    free(t);
    free(h);
    free(p);
}

/* ---- generated tokens: time ------------------------------------------------------------------ */

static char *timed(double exp, const char *more)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%.1f,"
                         "\"sub\":\"alice\",\"tenant\":\"acme\"%s}",
                         exp, more) > 0);
    return p;
}

static enum jose_result verify_timed(double exp, const char *more)
{
    char *p = timed(exp, more);
    enum jose_result r = verify_claims_json(p);
    free(p);
    return r;
}

static void expired_token_is_refused(void **state)
{
    assert_result(verify_timed(NOW - 3600, ""), JOSE_EXPIRED);
    assert_result(verify_claims_json("{\"iss\":\"" ISS "\",\"aud\":\"" AUD
                                     "\",\"sub\":\"alice\",\"tenant\":\"acme\"}"),
                  JOSE_EXPIRED); /* no exp at all */
}

static void leeway_is_honoured_at_the_boundary(void **state)
{
    char nbf[64];
    assert_result(verify_timed(NOW - LEEWAY, ""), JOSE_OK);
    assert_result(verify_timed(NOW - LEEWAY - 1, ""), JOSE_EXPIRED);
    assert_result(verify_timed(NOW - LEEWAY - 0.5, ""), JOSE_EXPIRED);
    snprintf(nbf, sizeof(nbf), ",\"nbf\":%lld", NOW + LEEWAY);
    assert_result(verify_timed(NOW + 600, nbf), JOSE_OK);
    snprintf(nbf, sizeof(nbf), ",\"nbf\":%lld", NOW + LEEWAY + 1);
    assert_result(verify_timed(NOW + 600, nbf), JOSE_NOT_YET_VALID);
    snprintf(nbf, sizeof(nbf), ",\"iat\":%lld.5", NOW + LEEWAY);
    assert_result(verify_timed(NOW + 600, nbf), JOSE_NOT_YET_VALID);
}

static void token_from_the_future_is_refused(void **state)
{
    char more[64];
    snprintf(more, sizeof(more), ",\"nbf\":%lld", NOW + 3600);
    assert_result(verify_timed(NOW + 7200, more), JOSE_NOT_YET_VALID);
    snprintf(more, sizeof(more), ",\"iat\":%lld", NOW + 3600);
    assert_result(verify_timed(NOW + 7200, more), JOSE_NOT_YET_VALID);
    snprintf(more, sizeof(more), ",\"nbf\":%lld,\"iat\":%lld", NOW - 5, NOW - 5);
    assert_result(verify_timed(NOW + 7200, more), JOSE_OK);
}

static void time_claims_must_be_finite_numbers(void **state)
{
    assert_result(verify_claims_json("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":\"soon\","
                                     "\"sub\":\"alice\",\"tenant\":\"acme\"}"),
                  JOSE_BAD_CLAIMS);
    assert_result(verify_claims_json("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1e999,"
                                     "\"sub\":\"alice\",\"tenant\":\"acme\"}"),
                  JOSE_BAD_CLAIMS);
    assert_result(verify_timed(NOW + 60, ",\"nbf\":-1e999"), JOSE_BAD_CLAIMS);
    assert_result(verify_timed(NOW + 60, ",\"iat\":null"), JOSE_BAD_CLAIMS);
    assert_result(verify_timed(NOW + 60, ",\"iat\":1e300"), JOSE_BAD_CLAIMS);
}

/* ---- generated tokens: issuer, audience, claims -----------------------------------------------
 */

static void wrong_issuer_is_refused(void **state)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"https://evil.example\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_ISSUER);
    free(p);
    assert_true(asprintf(&p,
                         "{\"aud\":\"" AUD "\",\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_ISSUER);
    free(p);
}

static void wrong_audience_is_refused(void **state)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"https://mcp.example.evil\",\"exp\":%lld,"
                         "\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_AUDIENCE);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"exp\":%lld,\"sub\":\"alice\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_AUDIENCE);
    free(p);
}

static void missing_sub_or_tenant_is_refused(void **state)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_CLAIMS);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"sub\":\"alice\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_CLAIMS);
    free(p);
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"sub\":\"\",\"tenant\":\"acme\"}",
                         NOW + 60) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_CLAIMS);
    free(p);
}

static void claims_of_the_wrong_type_or_length_are_refused(void **state)
{
    char long_sub[JOSE_CLAIM_MAX + 32], *p = NULL;
    memset(long_sub, 'u', sizeof(long_sub));

    /* JOSE_CLAIM_MAX - 1 bytes fit; one more does not. */
    long_sub[JOSE_CLAIM_MAX - 1] = '\0';
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"sub\":\"%s\",\"tenant\":\"acme\"}",
                         NOW + 60, long_sub) > 0);
    assert_result(verify_claims_json(p), JOSE_OK);
    free(p);
    long_sub[JOSE_CLAIM_MAX - 1] = 'u';
    long_sub[JOSE_CLAIM_MAX] = '\0';
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%lld,"
                         "\"sub\":\"%s\",\"tenant\":\"acme\"}",
                         NOW + 60, long_sub) > 0);
    assert_result(verify_claims_json(p), JOSE_BAD_CLAIMS);
    free(p);

    assert_result(verify_extra(",\"azp\":42"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"client_id\":[\"x\"]"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"act\":\"x\""), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"act\":{\"sub\":1}"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"scope\":[\"a\"]"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"scp\":[\"a\",1]"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"scp\":{}"), JOSE_BAD_CLAIMS);
    assert_result(verify_extra(",\"scope\":\"a \\\"b\\\"\""), JOSE_BAD_CLAIMS); /* not NQCHAR */
    assert_result(verify_extra(",\"azp\":\"bot\\nx=1\""), JOSE_BAD_CLAIMS);     /* log injection */
    /* A claim we read must appear once: parsers disagree on which duplicate wins. */
    assert_result(verify_extra(",\"sub\":\"mallory\""), JOSE_BAD_CLAIMS);
    /* cJSON would cut "alice\u0000x" to "alice". */
    assert_result(verify_extra(",\"note\":\"a\\u0000b\""), JOSE_MALFORMED);
}

static void scope_count_and_length_are_bounded(void **state)
{
    char scopes[JOSE_MAX_SCOPES * 3 + 16] = "", extra[sizeof(scopes) + 32], big[JOSE_CLAIM_MAX + 1];
    size_t o = 0;
    for (int i = 0; i < JOSE_MAX_SCOPES; i++)
        o += (size_t)snprintf(scopes + o, sizeof(scopes) - o, "%s%c%c", i ? " " : "", 'a' + i % 26,
                              'a' + i / 26);
    snprintf(extra, sizeof(extra), ",\"scope\":\"%s\"", scopes);
    assert_result(verify_extra(extra), JOSE_OK);
    snprintf(extra, sizeof(extra), ",\"scope\":\"%s zz\"", scopes);
    assert_result(verify_extra(extra), JOSE_BAD_CLAIMS);

    memset(big, 's', sizeof(big));
    big[JOSE_CLAIM_MAX - 1] = '\0';
    char *e = NULL;
    assert_true(asprintf(&e, ",\"scp\":[\"%s\"]", big) > 0);
    assert_result(verify_extra(e), JOSE_OK);
    free(e);
    big[JOSE_CLAIM_MAX - 1] = 's';
    big[JOSE_CLAIM_MAX] = '\0';
    assert_true(asprintf(&e, ",\"scp\":[\"%s\"]", big) > 0);
    assert_result(verify_extra(e), JOSE_BAD_CLAIMS);
    free(e);
}

/* ---- generated tokens: header and algorithm ------------------------------------------------- */

static void alg_none_is_refused(void **state)
{
    char *p = claims_with("");
    char *t = sign(NULL, "none", "{\"alg\":\"none\",\"kid\":\"rsa1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    t = sign(NULL, "none", "{\"alg\":\"NONE\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    t = sign(NULL, "none", "{\"alg\":\"RS384\",\"kid\":\"rsa1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    t = sign(NULL, "none", "{\"kid\":\"rsa1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_MALFORMED);
    free(t);
    free(p);
}

static void hs256_keyed_with_the_rsa_modulus_is_refused(void **state)
{
    /* The classic confusion: the attacker MACs with the public key the verifier holds. */
    BIGNUM *n = NULL;
    unsigned char mod[512];
    assert_int_equal(EVP_PKEY_get_bn_param(g.rsa, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    int len = BN_bn2bin(n, mod);
    BN_free(n);
    char *p = claims_with("");
    char *t = sign_raw(NULL, "HS256", "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", p, mod, (size_t)len);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    free(p);
}

static void rs256_against_an_ec_key_of_the_same_kid_is_refused(void **state)
{
    struct jose_keyset ks;
    char *jwks = jwks_of(1, jwk_of(g.ec, "shared", ""));
    load_keyset(jwks, &ks);
    char *p = claims_with("");
    char *t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"shared\"}", p);
    assert_result(verify_token(t, &ks), JOSE_BAD_ALG);
    free(t);
    /* A key's own "alg" binds it: rsa1 says RS256, so PS256 by rsa1 is refused. */
    t = sign(g.rsa, "PS256", "{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    /* EdDSA naming the EC key. */
    t = sign(g.ed, "EdDSA", "{\"alg\":\"EdDSA\",\"kid\":\"ec1\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_ALG);
    free(t);
    free(p);
    free(jwks);
    jose_keyset_free(&ks);
}

static void both_key_types_under_one_kid_pick_the_fitting_one(void **state)
{
    struct jose_keyset ks;
    char *jwks = jwks_of(2, jwk_of(g.ec, "shared", ""), jwk_of(g.rsa, "shared", ""));
    load_keyset(jwks, &ks);
    char *p = claims_with("");
    char *t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"shared\"}", p);
    assert_result(verify_token(t, &ks), JOSE_OK);
    free(t);
    t = sign(g.ec, "ES256", "{\"alg\":\"ES256\",\"kid\":\"shared\"}", p);
    assert_result(verify_token(t, &ks), JOSE_OK);
    free(t);
    free(p);
    free(jwks);
    jose_keyset_free(&ks);
}

static void key_embedded_in_the_header_is_never_trusted(void **state)
{
    /* The attacker signs with their own Ed25519 key and ships it in "jwk" (CVE-2018-0114). */
    EVP_PKEY *evil = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(evil);
    char *jwk = jwk_of(evil, NULL, ""), *h = NULL;
    assert_true(asprintf(&h, "{\"alg\":\"EdDSA\",\"jwk\":%s}", jwk) > 0);
    char *p = claims_with("");
    char *t = sign(evil, "EdDSA", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_SIGNATURE); /* checked against ed1 */
    free(t);
    free(h);
    assert_true(asprintf(&h, "{\"alg\":\"EdDSA\",\"kid\":\"evil\",\"jwk\":%s}", jwk) > 0);
    t = sign(evil, "EdDSA", h, p);
    assert_result(verify_token(t, &g.ks), JOSE_UNKNOWN_KID);
    free(t);
    free(h);
    free(p);
    free(jwk);
    EVP_PKEY_free(evil);
}

static void unknown_kid_is_reported(void **state)
{
    struct jose_claims c;
    struct jose_policy pol = policy();
    char *p = claims_with("");
    char *t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"next-key\"}", p);
    assert_result(jose_verify(t, strlen(t), &g.ks, &pol, &c), JOSE_UNKNOWN_KID);
    assert_string_equal(c.kid, "next-key"); /* kept for the log line */
    assert_int_equal(c.nscopes, 0);
    jose_claims_free(&c);
    free(t);
    /* An empty key set knows no key. */
    struct jose_keyset empty = {NULL, 0};
    t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\"}", p);
    assert_result(verify_token(t, &empty), JOSE_UNKNOWN_KID);
    free(t);
    free(p);
}

static void typ_other_than_an_access_token_is_refused(void **state)
{
    char *p = claims_with("");
    char *t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"foo\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_TYP);
    free(t);
    t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"dpop+jwt\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_TYP);
    free(t);
    t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":7}", p);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_TYP);
    free(t);
    free(p);
}

static void crit_header_is_refused(void **state)
{
    char *p = claims_with("");
    char *t = sign(g.rsa, "RS256",
                   "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"],\"exp\":1}", p);
    assert_result(verify_token(t, &g.ks), JOSE_MALFORMED);
    free(t);
    t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"alg\":\"RS256\"}", p);
    assert_result(verify_token(t, &g.ks), JOSE_MALFORMED); /* duplicate header member */
    free(t);
    t = sign(g.rsa, "RS256", "[\"RS256\"]", p);
    assert_result(verify_token(t, &g.ks), JOSE_MALFORMED);
    free(t);
    t = sign(g.rsa, "RS256", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"} x", p);
    assert_result(verify_token(t, &g.ks), JOSE_MALFORMED); /* trailing data */
    free(t);
    free(p);
}

/* ---- tampering and shape ------------------------------------------------------------------- */

static void tampered_payload_is_a_bad_signature(void **state)
{
    char *p = claims_with(",\"scope\":\"read\"");
    char *h = header_of("RS256", "rsa1");
    char *t = sign(g.rsa, "RS256", h, p);
    char *p2 = claims_with(",\"scope\":\"admin\"");
    char *b = b64url_str(p2);
    char *forged = NULL;
    const char *dot1 = strchr(t, '.'), *dot2 = strrchr(t, '.');
    assert_true(asprintf(&forged, "%.*s.%s%s", (int)(dot1 - t), t, b, dot2) > 0);
    assert_result(verify_token(forged, &g.ks), JOSE_BAD_SIGNATURE);
    assert_int_equal(ERR_peek_error(), 0);

    /* Every single-character change is refused, wherever it lands. */
    size_t len = strlen(t);
    for (size_t i = 0; i < len; i += 7) {
        char *m = strdup(t);
        m[i] = m[i] == 'Q' ? 'R' : 'Q';
        enum jose_result r = verify_token(m, &g.ks);
        assert_int_not_equal(r, JOSE_OK);
        free(m);
    }
    /* A signature from another key, and a truncated one. */
    char *other = sign(g.rsa2, "RS256", h, p);
    char *mixed = NULL;
    assert_true(asprintf(&mixed, "%.*s%s", (int)(dot2 - t), t, strrchr(other, '.')) > 0);
    assert_result(verify_token(mixed, &g.ks), JOSE_BAD_SIGNATURE);
    t[len - 2] = '\0'; /* 255 bytes, still canonical base64url */
    assert_result(verify_token(t, &g.ks), JOSE_BAD_SIGNATURE);
    free(mixed);
    free(other);
    free(forged);
    free(b);
    free(p2);
    free(t);
    free(h);
    free(p);
}

static void es256_signature_must_be_64_bytes(void **state)
{
    char *p = claims_with("");
    char *h = header_of("ES256", "ec1");
    char *h64 = b64url_str(h), *p64 = b64url_str(p), *input = NULL, *t = NULL;
    assert_true(asprintf(&input, "%s.%s", h64, p64) > 0);
    unsigned char der[128];
    size_t derlen = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, g.ec, NULL), 1);
    assert_int_equal(EVP_DigestSign(md, der, &derlen, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    char *s = b64url(der, derlen); /* DER, as a careless signer would send it */
    assert_true(asprintf(&t, "%s.%s", input, s) > 0);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_SIGNATURE);
    free(t);
    unsigned char zero[64] = {0};
    free(s);
    s = b64url(zero, sizeof(zero)); /* r = s = 0 */
    assert_true(asprintf(&t, "%s.%s", input, s) > 0);
    assert_result(verify_token(t, &g.ks), JOSE_BAD_SIGNATURE);
    free(t);
    free(s);
    free(input);
    free(h64);
    free(p64);
    free(h);
    free(p);
}

static void token_shape_is_checked(void **state)
{
    char *p = claims_with("");
    char *h = header_of("RS256", "rsa1");
    char *t = sign(g.rsa, "RS256", h, p);
    char *m = NULL;

    assert_true(asprintf(&m, "%s.", t) > 0); /* 4 parts */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    assert_true(asprintf(&m, "%s.%s", t, strrchr(t, '.') + 1) > 0);
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    m = strdup(t);
    *strrchr(m, '.') = '\0'; /* 2 parts */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    assert_true(asprintf(&m, "%s=", t) > 0); /* padding */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    assert_true(asprintf(&m, " %s", t) > 0); /* whitespace */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    m = strdup(t);
    m[3] = '*'; /* garbage base64 in the header */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    m = strdup(t);
    strchr(m, '.')[4] = '+'; /* base64, not base64url, in the payload */
    assert_result(verify_token(m, &g.ks), JOSE_MALFORMED);
    free(m);
    assert_result(verify_token("", &g.ks), JOSE_MALFORMED);
    assert_result(verify_token("..", &g.ks), JOSE_MALFORMED);
    assert_result(verify_token("e30.e30.", &g.ks), JOSE_MALFORMED); /* {} has no alg */

    /* Embedded NUL: the length, not strlen, decides. */
    struct jose_claims c;
    struct jose_policy pol = policy();
    size_t len = strlen(t);
    m = malloc(len + 2);
    memcpy(m, t, len);
    m[len] = '\0';
    m[len + 1] = 'A';
    assert_result(jose_verify(m, len + 1, &g.ks, &pol, &c), JOSE_MALFORMED);
    free(m);
    free(t);
    free(h);
    free(p);
}

static void oversized_token_is_refused_unparsed(void **state)
{
    /* The largest token that fits is accepted; one byte more is refused, signature or not. */
    char *h = header_of("RS256", "rsa1");
    char *fits = NULL, *over = NULL;
    char *p0 = claims_with(",\"filler\":\"\"");
    char *t0 = sign(g.rsa, "RS256", h, p0);
    size_t start = (JOSE_MAX_TOKEN_BYTES - strlen(t0)) * 3 / 4 - 8;
    free(t0);
    free(p0);
    for (size_t pad = start; pad < start + 32 && (fits == NULL || over == NULL); pad++) {
        char *filler = malloc(pad + 1), *extra = NULL;
        memset(filler, 'x', pad);
        filler[pad] = '\0';
        assert_true(asprintf(&extra, ",\"filler\":\"%s\"", filler) > 0);
        char *p = claims_with(extra);
        char *t = sign(g.rsa, "RS256", h, p);
        size_t len = strlen(t);
        if (len <= JOSE_MAX_TOKEN_BYTES && len > JOSE_MAX_TOKEN_BYTES - 4)
            fits = (free(fits), t);
        else if (len > JOSE_MAX_TOKEN_BYTES && over == NULL)
            over = t;
        else
            free(t);
        free(p);
        free(extra);
        free(filler);
    }
    assert_non_null(fits);
    assert_non_null(over);
    assert_result(verify_token(fits, &g.ks), JOSE_OK);
    assert_result(verify_token(over, &g.ks), JOSE_MALFORMED);
    free(fits);
    free(over);
    free(h);
}

static void deeply_nested_json_is_refused_without_crashing(void **state)
{
    /* Nesting beyond cJSON's limit inside a validly signed payload. */
    size_t depth = 2000;
    char *deep = malloc(2 * depth + 64);
    size_t o = 0;
    o += (size_t)snprintf(deep, 64, ",\"x\":");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o] = '\0';
    assert_result(verify_extra(deep), JOSE_MALFORMED);
    free(deep);
}

/* ---- JWKS --------------------------------------------------------------------------------- */

static void jwks_skips_keys_it_does_not_verify_with(void **state)
{
    struct jose_keyset ks;
    char *jwks =
        jwks_of(9, strdup("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"hmac\"}"),
                jwk_of(g.rsa_small, "small", ""), jwk_of(g.rsa2, "enc", ",\"use\":\"enc\""),
                jwk_of(g.rsa2, "wrap", ",\"key_ops\":[\"wrapKey\"]"),
                jwk_of(g.rsa2, "rs512", ",\"alg\":\"RS512\""),
                strdup("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}"),
                strdup("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}"),
                strdup("{\"kty\":\"PQC\",\"pub\":\"AA\"}"),
                jwk_of(g.ed, "good", ",\"key_ops\":[\"verify\"]"));
    load_keyset(jwks, &ks);
    assert_int_equal(ks.nkeys, 1);
    free(jwks);

    /* The small RSA key is gone: a token signed with it names an unknown kid. */
    char *p = claims_with("");
    char *t = sign(g.rsa_small, "RS256", "{\"alg\":\"RS256\",\"kid\":\"small\"}", p);
    assert_result(verify_token(t, &ks), JOSE_UNKNOWN_KID);
    free(t);
    t = sign(g.ed, "EdDSA", "{\"alg\":\"EdDSA\",\"kid\":\"good\"}", p);
    assert_result(verify_token(t, &ks), JOSE_OK);
    free(t);
    free(p);
    jose_keyset_free(&ks);
    jose_keyset_free(&ks); /* idempotent */

    load_keyset("{\"keys\":[]}", &ks);
    assert_int_equal(ks.nkeys, 0);
    jose_keyset_free(&ks);
}

static void expect_jwks_error(const char *jwks, size_t len, const char *needle)
{
    struct jose_keyset ks = {(struct jose_key **)1, 99};
    char err[256] = "";
    assert_int_equal(jose_jwks_parse(jwks, len, &ks, err, sizeof(err)), -1);
    assert_null(ks.keys);
    assert_int_equal(ks.nkeys, 0);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left behind in OpenSSL's queue */
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void malformed_jwks_is_an_error_with_a_message(void **state)
{
    static const struct {
        const char *jwks, *needle;
    } cases[] = {
        {"", "not a JSON object"},
        {"[]", "not a JSON object"},
        {"{\"keys\":{}}", "\"keys\" must be"},
        {"{\"keys\":[],\"keys\":[]}", "\"keys\" must be"},
        {"{\"keys\":[1]}", "keys[0]: a key must be a JSON object"},
        {"{\"keys\":[{\"n\":\"AQAB\"}]}", "\"kty\" is required"},
        {"{\"keys\":[{\"kty\":7}]}", "\"kty\" must be a string"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "\"n\" must be"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"A=\",\"e\":\"AQAB\"}]}", "\"n\" is not"},
        {"{\"keys\":[{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}]}", "\"crv\" is required"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
         "32 bytes each"},
        {"{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}", "must be 32 bytes"},
        {"{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\",\"d\":\"AA\"}]}",
         "private key material"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"RS256\"}]}", "does not fit"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"use\":1}]}", "\"use\" must be a string"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":[]}]}", "\"kid\" must be a string"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"key_ops\":\"verify\"}]}", "key_ops"},
        {"{\"keys\":[{\"kty\":\"EC\",\"kty\":\"EC\"}]}", "appears twice"},
        {"{\"keys\":[]} trailing", "not a JSON object"},
        {"{\"keys\":[{\"kty\":\"oct\",\"k\":\"a\\u0000b\"}]}", "\\u0000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_jwks_error(cases[i].jwks, strlen(cases[i].jwks), cases[i].needle);

    /* A point that is not on P-256: (1, 1). */
    unsigned char one[32] = {0};
    one[31] = 1;
    char *x = b64url(one, sizeof(one)), *j = NULL;
    assert_true(
        asprintf(&j, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", x,
                 x) > 0);
    expect_jwks_error(j, strlen(j), "not a point on P-256");
    free(j);
    free(x);

    /* A good key then a private RSA key: nothing is kept. */
    char *priv = jwk_of(g.rsa, "p", ",\"d\":\"AQAB\"");
    j = jwks_of(2, jwk_of(g.ec, "ok", ""), priv);
    expect_jwks_error(j, strlen(j), "keys[1]: private key material");
    free(j);

    /* Too many keys, too many bytes. */
    char *many = strdup("{\"keys\":[");
    for (int i = 0; i <= JOSE_MAX_KEYS; i++) {
        char *next = NULL;
        assert_true(asprintf(&next, "%s%s{\"kty\":\"oct\"}", many, i ? "," : "") > 0);
        free(many);
        many = next;
    }
    j = NULL;
    assert_true(asprintf(&j, "%s]}", many) > 0);
    expect_jwks_error(j, strlen(j), "more than");
    free(j);
    free(many);
    size_t big = JOSE_MAX_JWKS_BYTES + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"keys\":[]}", 11);
    huge[big] = '\0';
    expect_jwks_error(huge, big, "larger than");
    free(huge);
    expect_jwks_error(NULL, 0, "no document");
    /* Embedded NUL inside the given length. */
    expect_jwks_error("{\"keys\":[]}\0", 12, "not a JSON object");
}

static void rsa_key_failing_the_public_key_check_is_an_error(void **state)
{
    char *n = bn_b64(g.rsa, OSSL_PKEY_PARAM_RSA_N, 0), *j = NULL;
    struct jose_keyset ks;
    assert_true(asprintf(&j, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"Ag\"}]}", n) > 0);
    expect_jwks_error(j, strlen(j), "public-key check"); /* even e */
    free(j);
    assert_true(asprintf(&j, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQ\"}]}", n) > 0);
    expect_jwks_error(j, strlen(j), "public-key check"); /* e = 1 */
    free(j);
    assert_true(
        asprintf(&j, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAAAAAAAAAB\"}]}", n) > 0);
    expect_jwks_error(j, strlen(j), "at most 8 bytes");
    free(j);
    /* e = 3 is allowed by RFC 7518 and verified exactly by OpenSSL: accepted. */
    assert_true(asprintf(&j, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"Aw\"}]}", n) > 0);
    load_keyset(j, &ks);
    assert_int_equal(ks.nkeys, 1);
    jose_keyset_free(&ks);
    free(j);
    /* An even modulus: the last character of 256 bytes carries the lowest two bits. */
    n[strlen(n) - 1] = 'A';
    assert_true(asprintf(&j, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}]}", n) > 0);
    expect_jwks_error(j, strlen(j), "public-key check");
    free(j);
    free(n);
}

static void result_names_are_stable(void **state)
{
    static const char *const names[] = {
        "ok",         "malformed",    "bad_alg", "unknown_kid",   "bad_signature", "bad_typ",
        "bad_issuer", "bad_audience", "expired", "not_yet_valid", "bad_claims",
    };
    for (int r = JOSE_OK; r <= JOSE_BAD_CLAIMS; r++)
        assert_string_equal(jose_result_name((enum jose_result)r), names[r]);
    assert_string_equal(jose_result_name((enum jose_result)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64url_decodes_only_canonical_unpadded_text),
        cmocka_unit_test(rfc7515_a2_rs256_signature_verifies),
        cmocka_unit_test(rfc7515_a3_es256_signature_verifies),
        cmocka_unit_test(rfc8037_a4_ed25519_signature_verifies),
        cmocka_unit_test(rfc_vector_with_another_payload_is_a_bad_signature),
        cmocka_unit_test(rs256_token_is_accepted),
        cmocka_unit_test(ps256_token_is_accepted),
        cmocka_unit_test(es256_token_is_accepted),
        cmocka_unit_test(eddsa_token_is_accepted),
        cmocka_unit_test(typ_variants_are_accepted),
        cmocka_unit_test(scopes_come_from_scope_or_scp),
        cmocka_unit_test(agent_comes_from_azp_then_client_id_then_act_sub),
        cmocka_unit_test(audience_may_be_an_array),
        cmocka_unit_test(key_without_kid_is_used_when_it_is_the_only_fit),
        cmocka_unit_test(expired_token_is_refused),
        cmocka_unit_test(leeway_is_honoured_at_the_boundary),
        cmocka_unit_test(token_from_the_future_is_refused),
        cmocka_unit_test(time_claims_must_be_finite_numbers),
        cmocka_unit_test(wrong_issuer_is_refused),
        cmocka_unit_test(wrong_audience_is_refused),
        cmocka_unit_test(missing_sub_or_tenant_is_refused),
        cmocka_unit_test(claims_of_the_wrong_type_or_length_are_refused),
        cmocka_unit_test(scope_count_and_length_are_bounded),
        cmocka_unit_test(alg_none_is_refused),
        cmocka_unit_test(hs256_keyed_with_the_rsa_modulus_is_refused),
        cmocka_unit_test(rs256_against_an_ec_key_of_the_same_kid_is_refused),
        cmocka_unit_test(both_key_types_under_one_kid_pick_the_fitting_one),
        cmocka_unit_test(key_embedded_in_the_header_is_never_trusted),
        cmocka_unit_test(unknown_kid_is_reported),
        cmocka_unit_test(typ_other_than_an_access_token_is_refused),
        cmocka_unit_test(crit_header_is_refused),
        cmocka_unit_test(tampered_payload_is_a_bad_signature),
        cmocka_unit_test(es256_signature_must_be_64_bytes),
        cmocka_unit_test(token_shape_is_checked),
        cmocka_unit_test(oversized_token_is_refused_unparsed),
        cmocka_unit_test(deeply_nested_json_is_refused_without_crashing),
        cmocka_unit_test(jwks_skips_keys_it_does_not_verify_with),
        cmocka_unit_test(malformed_jwks_is_an_error_with_a_message),
        cmocka_unit_test(rsa_key_failing_the_public_key_check_is_an_error),
        cmocka_unit_test(result_names_are_stable),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
