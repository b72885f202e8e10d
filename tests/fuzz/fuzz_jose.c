/*
 * fuzz_jose.c — JWT access-token verification (jose.c) against a fixed key set.
 *
 * The first byte picks the mode:
 *   even: the rest is a compact JWS as a client's Authorization header carries it, verified
 *         against the RFC 7515 and RFC 8037 example keys and a key made at start-up;
 *   odd:  the rest is "<header>\n<payload>": both are base64url-encoded and signed with the
 *         start-up Ed25519 key, so the header and claim checks behind the signature are reached
 *         with any bytes.
 * Beyond memory errors it checks that no even-mode token is accepted (that would be a forgery)
 * and that what odd mode gets accepted is within the documented bounds.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jose.h"

#define FUZZ_NOW 1700000000LL

static const char rfc7515_a2_jwk[] =
    "{\"kty\":\"RSA\",\"kid\":\"rsa\","
    "\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"
    "4qPCJrcS2mJPMEzP1P"
    "t0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"
    "bSf63kpaSHSXndS5z5r"
    "exMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_"
    "I5IhlJH7aGhyxXFvUK"
    "-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\"}";
static const char rfc7515_a3_jwk[] = "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec\","
                                     "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                                     "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}";
static const char rfc8037_a2_jwk[] = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed-rfc\","
                                     "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";

static struct {
    EVP_PKEY *ed; /* the start-up key, kid "ed" */
    struct jose_keyset ks;
} g;

static const char *auds[] = {"https://mcp.example", "https://other.example"};

static size_t b64url(const unsigned char *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    unsigned char raw[32];
    size_t n = sizeof raw;
    char x[64], jwks[4096], err[256];
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);

    if (pc == NULL || EVP_PKEY_keygen_init(pc) != 1 || EVP_PKEY_keygen(pc, &g.ed) != 1 ||
        EVP_PKEY_get_raw_public_key(g.ed, raw, &n) != 1)
        abort();
    EVP_PKEY_CTX_free(pc);
    b64url(raw, n, x);
    snprintf(jwks, sizeof jwks,
             "{\"keys\":[%s,%s,%s,{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"ed\",\"x\":\"%s\","
             "\"use\":\"sig\"}]}",
             rfc7515_a2_jwk, rfc7515_a3_jwk, rfc8037_a2_jwk, x);
    if (jose_jwks_parse(jwks, strlen(jwks), &g.ks, err, sizeof err) != 0 || g.ks.nkeys != 4) {
        fprintf(stderr, "fuzz_jose: %s\n", err);
        abort();
    }
    return 0;
}

static enum jose_result verify(const char *token, size_t len)
{
    struct jose_policy p = {
        .issuer = "https://issuer.example",
        .audiences = auds,
        .naudiences = 2,
        .tenant_claim = "tenant",
        .agent_claim = "azp",
        .now = FUZZ_NOW,
        .leeway_s = 60,
    };
    struct jose_claims c;
    enum jose_result r = jose_verify(token, len, &g.ks, &p, &c);

    if (strnlen(c.kid, sizeof c.kid) == sizeof c.kid)
        abort();
    if (r == JOSE_OK) {
        if (c.tenant[0] == '\0' || c.user[0] == '\0' || c.nscopes > JOSE_MAX_SCOPES ||
            strnlen(c.agent, sizeof c.agent) == sizeof c.agent || c.exp + 60 < FUZZ_NOW)
            abort();
        for (size_t i = 0; i < c.nscopes; i++)
            if (c.scopes[i] == NULL || strlen(c.scopes[i]) >= JOSE_CLAIM_MAX)
                abort();
        jose_claims_free(&c);
    }
    if (jose_result_name(r) == NULL)
        abort();
    return r;
}

/* "<b64 header>.<b64 payload>.<b64 signature>" of the two parts, signed with the start-up key. */
static void signed_token(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl != NULL ? (size_t)(nl - data) : size;
    size_t plen = nl != NULL ? size - hlen - 1 : 0;
    size_t cap = (size + 64) / 3 * 4 + 16;
    char *tok = malloc(cap);
    unsigned char sig[64];
    size_t siglen = sizeof sig, o;
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    if (tok == NULL || md == NULL)
        goto out;
    o = b64url(data, hlen, tok);
    tok[o++] = '.';
    o += b64url(nl != NULL ? nl + 1 : data, plen, tok + o);
    if (EVP_DigestSignInit(md, NULL, NULL, NULL, g.ed) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)tok, o) != 1)
        goto out;
    tok[o++] = '.';
    o += b64url(sig, siglen, tok + o);
    verify(tok, o);
out:
    EVP_MD_CTX_free(md);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        signed_token(data + 1, size - 1);
        return 0;
    }
    /* Exactly size - 1 bytes, no terminator: a read past the end is caught. */
    char *tok = malloc(size - 1 > 0 ? size - 1 : 1);
    if (tok == NULL)
        return 0;
    memcpy(tok, data + 1, size - 1);
    /* Accepting it would be a forgery: the RFC examples' claims are expired and refused, and
     * only the start-up key, new in each run, signs anything else. */
    if (verify(tok, size - 1) == JOSE_OK)
        abort();
    free(tok);

    unsigned char *dec;
    size_t declen;
    char *str = malloc(size);
    if (str != NULL) {
        memcpy(str, data + 1, size - 1);
        str[size - 1] = '\0';
        if ((dec = jose_b64url_decode(str, size - 1, &declen)) != NULL) {
            if (declen > (size - 1) * 3 / 4 + 1 || dec[declen] != '\0')
                abort();
            free(dec);
        }
        free(str);
    }
    return 0;
}
