/*
 * test_auth.c — authentication and per-tool authorization (supervisor/auth.c): which
 * Authorization headers let a caller in and as whom (API keys, the anonymous principal, JWTs
 * routed to jose.c), the principal's life cycle, the format of generated keys, and which tools a
 * principal's scopes let it list and call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "jwks.h"
#include "util.h"

#define KEY_ALICE "mcpv_alice-key-0123456789abcdefghijklmnopqrstuvwxyz"
#define KEY_BOB   "mcpv_bob-key-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

/*
 * JWT vectors, made once with python3-jwt (ES256, kid "k1"): iss https://idp.test, sub alice,
 * tenant acme, azp ide, scope "demo:read demo:write", iat 1700000000, exp 4102444800.
 * JWT_OK has aud https://mcp.test; JWT_SERVER has aud https://mcp.test/servers/ts/mcp;
 * JWT_KID is JWT_OK's claims signed under kid "k2" (not in the JWKS); JWT_CLIENT_ID has aud
 * ["x", "https://mcp.test"], no azp, client_id cli-7 and scp ["a:b"] instead of scope.
 */
#define JWKS_TEXT                                                                                  \
    "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": "                                    \
    "\"SWZ0a3gbmkoLAspJwSzr6F2a72OIt0xIpAquGndjtuo\", \"y\": "                                     \
    "\"ZYC6fmCSW92BX5PRgAMkt-FnZZtASZQkxbhEc6w1N_k\", \"kid\": \"k1\", \"use\": \"sig\", "         \
    "\"alg\": \"ES256\"}]}"
#define JWT_OK                                                                                     \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."                                     \
    "eyJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWxpY2UiLCJ0ZW5hbnQiOiJhY21lIiwiYXpwIjoiaWRlIiwi" \
    "c2NvcGUiOiJkZW1vOnJlYWQgZGVtbzp3cml0ZSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJhdWQi" \
    "OiJodHRwczovL21jcC50ZXN0In0."                                                                 \
    "ugTTVUESdQejcWWdADCpD7Q6ni0Ylg_aEDPE-nmR6drrN3Ke-kMxmHK3hjzJfPPYkbzca6pGLVCePeiLiaS-oQ"
#define JWT_SERVER                                                                                 \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."                                     \
    "eyJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWxpY2UiLCJ0ZW5hbnQiOiJhY21lIiwiYXpwIjoiaWRlIiwi" \
    "c2NvcGUiOiJkZW1vOnJlYWQgZGVtbzp3cml0ZSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJhdWQi" \
    "OiJodHRwczovL21jcC50ZXN0L3NlcnZlcnMvdHMvbWNwIn0."                                             \
    "h4lSlQVBdk536nwpa2OCWLv-cJ68D1970neiTc3tqeVQ8lifZTKilsFBukH8hP4cwAWzcbvkkPO77Esiw7_ncA"
#define JWT_KID                                                                                    \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyIiwidHlwIjoiYXQrand0In0."                                     \
    "eyJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWxpY2UiLCJ0ZW5hbnQiOiJhY21lIiwiYXpwIjoiaWRlIiwi" \
    "c2NvcGUiOiJkZW1vOnJlYWQgZGVtbzp3cml0ZSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJhdWQi" \
    "OiJodHRwczovL21jcC50ZXN0In0."                                                                 \
    "eoS7P9qdiKF2w5dyZL2qsLdan5QjeORNbPeiYp62iAv_PVuqffZqPP-EbHlwWL6iCGkF0u1bjfZe49PCsWccRg"
#define JWT_CLIENT_ID                                                                              \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."                                     \
    "eyJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWxpY2UiLCJ0ZW5hbnQiOiJhY21lIiwiZXhwIjo0MTAyNDQ0" \
    "ODAwLCJpYXQiOjE3MDAwMDAwMDAsImF1ZCI6WyJ4IiwiaHR0cHM6Ly9tY3AudGVzdCJdLCJjbGllbnRfaWQiOiJjbGkt" \
    "NyIsInNjcCI6WyJhOmIiXX0."                                                                     \
    "wTz2YgKyaNO-OW1BGhfYxREHuAEcfA643AoQbbnUyI5ZLuG_NG40wV1ma4Zix2nqPr2FPctNVPKIQhb-thgWPg"
#define JWT_EXP 4102444800LL
#define NOW     1700000100LL

struct fixture {
    struct config cfg;
    struct config_api_key keys[3];
    char *alice_scopes[2];
    char *long_key; /* AUTH_MAX_TOKEN_BYTES + 1 characters */
    char *max_key;  /* AUTH_MAX_TOKEN_BYTES characters */
    struct jwks *jwks;
};

static void set_key(struct config_api_key *k, const char *key, size_t len, char *tenant, char *user,
                    char *agent)
{
    util_sha256(key, len, k->sha256);
    k->principal.tenant = tenant;
    k->principal.user = user;
    k->principal.agent = agent;
    k->principal.scopes = NULL;
    k->principal.nscopes = 0;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->long_key = repeat('L', AUTH_MAX_TOKEN_BYTES + 1);
    f->max_key = repeat('M', AUTH_MAX_TOKEN_BYTES);
    set_key(&f->keys[0], KEY_ALICE, strlen(KEY_ALICE), "acme", "alice", "cli");
    f->alice_scopes[0] = "demo:read";
    f->alice_scopes[1] = "invoices:read";
    f->keys[0].principal.scopes = f->alice_scopes;
    f->keys[0].principal.nscopes = 2;
    set_key(&f->keys[1], KEY_BOB, strlen(KEY_BOB), "globex", "bob", NULL);
    /* Configured, but too long to ever be presented: it must not let anyone in. */
    set_key(&f->keys[2], f->long_key, AUTH_MAX_TOKEN_BYTES + 1, "acme", "long", NULL);
    f->cfg.api_keys = f->keys;
    f->cfg.napi_keys = 3;
    f->cfg.anonymous.tenant = "dev";
    f->cfg.anonymous.user = "anonymous";
    *state = f;
    return 0;
}

/* The fixture plus auth.jwt: issuer https://idp.test, audience https://mcp.test, JWKS_TEXT. */
static int setup_jwt(void **state)
{
    if (setup(state) != 0)
        return -1;
    struct fixture *f = *state;
    f->cfg.has_jwt = true;
    f->cfg.jwt_issuer = "https://idp.test";
    f->cfg.jwt_audience = "https://mcp.test";
    f->cfg.jwt_jwks_file = "jwks.json";
    f->cfg.jwt_jwks_text = JWKS_TEXT;
    f->cfg.jwt_claim_tenant = "tenant";
    f->cfg.jwt_claim_agent = "azp";
    f->cfg.jwt_leeway_s = 60;
    /* A jwks_file never touches the event base. */
    f->jwks = jwks_new(NULL, &f->cfg);
    return f->jwks != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    jwks_free(f->jwks);
    free(f->long_key);
    free(f->max_key);
    free(f);
    return 0;
}

/* "<scheme> <token>" in a malloc'ed string. */
static char *header(const char *scheme, const char *token)
{
    size_t n = strlen(scheme) + 1 + strlen(token) + 1;
    char *h = malloc(n);
    assert_non_null(h);
    assert_int_equal(snprintf(h, n, "%s %s", scheme, token), (int)n - 1);
    return h;
}

static struct principal poison;

/* auth_authenticate with a poisoned *out, which it must overwrite (NULL on failure). */
static enum auth_result authenticate_full(const struct config *cfg, const struct jwks *jwks,
                                          const char *authorization, const char *server,
                                          int64_t now, struct principal **out, char *why,
                                          size_t whylen)
{
    *out = &poison;
    memset(why, 'W', whylen);
    why[whylen - 1] = '\0';
    enum auth_result r = auth_authenticate(cfg, jwks, authorization, server, now, out, why, whylen);
    assert_ptr_not_equal(*out, &poison);
    assert_non_null(memchr(why, '\0', whylen)); /* always terminated */
    if (r == AUTH_OK)
        assert_non_null(*out);
    else
        assert_null(*out);
    return r;
}

static enum auth_result authenticate(const struct config *cfg, const char *authorization,
                                     struct principal **out)
{
    char why[64];
    return authenticate_full(cfg, NULL, authorization, NULL, NOW, out, why, sizeof(why));
}

/* Refused with AUTH_INVALID and a reason that is not empty; returns nothing to free. */
static void expect_invalid_why(const struct config *cfg, const struct jwks *jwks,
                               const char *authorization, const char *server, int64_t now,
                               const char *want_why)
{
    struct principal *p;
    char why[64];
    enum auth_result r =
        authenticate_full(cfg, jwks, authorization, server, now, &p, why, sizeof(why));
    if (r != AUTH_INVALID)
        fail_msg("\"%.60s\": result %d, want AUTH_INVALID", authorization, (int)r);
    if (why[0] == '\0')
        fail_msg("\"%.60s\": no reason given", authorization);
    if (want_why != NULL && strcmp(why, want_why) != 0)
        fail_msg("\"%.60s\": reason \"%s\", want \"%s\"", authorization, why, want_why);
    /* The reason is shown to the caller and logged: it never echoes the credential. */
    if (authorization != NULL && strlen(authorization) > 7 + 8 &&
        strstr(why, authorization + 7) != NULL)
        fail_msg("the reason \"%s\" repeats the token", why);
}

static void expect_invalid(const struct config *cfg, const char *authorization)
{
    expect_invalid_why(cfg, NULL, authorization, NULL, NOW, NULL);
}

static void token_id_of(const char *token, char out[17])
{
    char hex[UTIL_SHA256_HEX + 1];
    util_sha256_hex(token, strlen(token), hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

/* ---- auth_authenticate: API keys and anonymous ---------------------------------------------- */

static void missing_header_is_missing(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    assert_int_equal(authenticate_full(&f->cfg, NULL, NULL, "ts", NOW, &p, why, sizeof(why)),
                     AUTH_MISSING);
    assert_null(p);
}

static void missing_header_is_anonymous_when_configured(void **state)
{
    struct fixture *f = *state;
    char agent[] = "conformance", s1[] = "demo:read";
    char *scopes[] = {s1};
    f->cfg.has_anonymous = true;
    f->cfg.anonymous.agent = agent;
    f->cfg.anonymous.scopes = scopes;
    f->cfg.anonymous.nscopes = 1;
    struct principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_ANONYMOUS);
    assert_string_equal(p->tenant, "dev");
    assert_string_equal(p->user, "anonymous");
    assert_string_equal(p->agent, "conformance");
    assert_int_equal(p->nscopes, 1);
    assert_string_equal(p->scopes[0], "demo:read");
    assert_int_equal(p->exp, 0);
    assert_string_equal(p->token_id, "-");
    /* A copy: the configuration may be freed on reload while the principal lives on. */
    assert_ptr_not_equal(p->tenant, f->cfg.anonymous.tenant);
    assert_ptr_not_equal(p->scopes, scopes);
    principal_free(p);
}

static void anonymous_without_agent_has_empty_agent(void **state)
{
    struct fixture *f = *state;
    f->cfg.has_anonymous = true;
    struct principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_OK);
    assert_non_null(p->agent);
    assert_string_equal(p->agent, "");
    assert_int_equal(p->nscopes, 0);
    principal_free(p);
}

static void bearer_key_returns_its_principal(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char id[17];
    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_ALICE, &p), AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->user, "alice");
    assert_string_equal(p->agent, "cli");
    assert_int_equal(p->exp, 0);
    /* the key record's scopes are the principal's */
    assert_int_equal(p->nscopes, 2);
    assert_string_equal(p->scopes[0], "demo:read");
    assert_string_equal(p->scopes[1], "invoices:read");
    assert_ptr_not_equal(p->scopes, f->alice_scopes);
    assert_ptr_not_equal(p->tenant, f->keys[0].principal.tenant);
    /* for logs: a hash prefix of the key, never the key */
    token_id_of(KEY_ALICE, id);
    assert_string_equal(p->token_id, id);
    principal_free(p);

    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_BOB, &p), AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_string_equal(p->tenant, "globex");
    assert_string_equal(p->user, "bob");
    assert_string_equal(p->agent, ""); /* no agent in the record */
    assert_int_equal(p->nscopes, 0);
    principal_free(p);
}

static void bearer_key_wins_over_anonymous(void **state)
{
    struct fixture *f = *state;
    f->cfg.has_anonymous = true;
    struct principal *p;
    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_BOB, &p), AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_string_equal(p->user, "bob");
    principal_free(p);
}

static void scheme_is_case_insensitive(void **state)
{
    struct fixture *f = *state;
    static const char *const schemes[] = {"bearer", "BEARER", "bEaReR"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        char *h = header(schemes[i], KEY_ALICE);
        struct principal *p;
        enum auth_result r = authenticate(&f->cfg, h, &p);
        free(h);
        if (r != AUTH_OK)
            fail_msg("scheme \"%s\": result %d, want AUTH_OK", schemes[i], (int)r);
        assert_string_equal(p->user, "alice");
        principal_free(p);
    }
}

static void token_is_case_sensitive(void **state)
{
    struct fixture *f = *state;
    char *h = header("Bearer", KEY_ALICE);
    h[7] = 'M'; /* "mcpv_" → "Mcpv_" */
    expect_invalid(&f->cfg, h);
    free(h);
}

static void wrong_key_is_invalid(void **state)
{
    struct fixture *f = *state;
    expect_invalid(&f->cfg, "Bearer mcpv_not-a-configured-key");
    expect_invalid(&f->cfg, "Bearer " KEY_ALICE "x");            /* longer */
    expect_invalid(&f->cfg, "Bearer mcpv_alice-key-0123456789"); /* prefix of a key */
}

static void wrong_key_is_invalid_even_with_anonymous(void **state)
{
    struct fixture *f = *state;
    /* A bad credential must not fall back to the anonymous principal. */
    f->cfg.has_anonymous = true;
    expect_invalid(&f->cfg, "Bearer mcpv_not-a-configured-key");
    expect_invalid(&f->cfg, "Basic YWxpY2U6c2VjcmV0");
    expect_invalid(&f->cfg, "");
}

static void other_schemes_are_invalid(void **state)
{
    struct fixture *f = *state;
    expect_invalid(&f->cfg, "Basic x");
    expect_invalid(&f->cfg, "Basic " KEY_ALICE);
    expect_invalid(&f->cfg, KEY_ALICE); /* no scheme */
    expect_invalid(&f->cfg, "Bearer" KEY_ALICE);
    expect_invalid(&f->cfg, "Bearer\t" KEY_ALICE);
    expect_invalid(&f->cfg, "Bearerx " KEY_ALICE);
    expect_invalid(&f->cfg, "");
}

static void empty_token_is_invalid(void **state)
{
    struct fixture *f = *state;
    expect_invalid(&f->cfg, "Bearer ");
    expect_invalid(&f->cfg, "Bearer");
}

static void extra_whitespace_is_not_trimmed(void **state)
{
    struct fixture *f = *state;
    /* Exactly one space, then the token, as the presented bytes are what is hashed. */
    expect_invalid(&f->cfg, "Bearer  " KEY_ALICE);
    expect_invalid(&f->cfg, "Bearer " KEY_ALICE " ");
    expect_invalid(&f->cfg, " Bearer " KEY_ALICE);
}

static void token_of_max_bytes_is_accepted(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(AUTH_MAX_TOKEN_BYTES, 8192);
    set_key(&f->keys[1], f->max_key, AUTH_MAX_TOKEN_BYTES, "acme", "max", NULL);
    char *h = header("Bearer", f->max_key);
    struct principal *p;
    enum auth_result r = authenticate(&f->cfg, h, &p);
    free(h);
    assert_int_equal(r, AUTH_OK);
    assert_string_equal(p->user, "max");
    principal_free(p);
}

static void token_longer_than_max_is_invalid(void **state)
{
    struct fixture *f = *state;
    /* keys[2] is this very token's digest: only the length check can refuse it. */
    char *h = header("Bearer", f->long_key);
    expect_invalid_why(&f->cfg, NULL, h, NULL, NOW, "too_long");
    free(h);
}

static void no_keys_configured_refuses_every_token(void **state)
{
    struct fixture *f = *state;
    f->cfg.napi_keys = 0;
    f->cfg.api_keys = NULL;
    expect_invalid(&f->cfg, "Bearer " KEY_ALICE);
    struct principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_MISSING);
}

static void reason_buffer_is_bounded(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[4];
    char *h = header("Bearer", f->long_key);
    memset(why, 'W', sizeof(why));
    assert_int_equal(auth_authenticate(&f->cfg, NULL, h, NULL, NOW, &p, why, 3), AUTH_INVALID);
    free(h);
    assert_null(p);
    assert_int_equal(why[3], 'W'); /* nothing written past the length it was given */
    assert_true(strlen(why) <= 2);
    /* and a zero-length buffer is not written at all */
    memset(why, 'W', sizeof(why));
    assert_int_equal(auth_authenticate(&f->cfg, NULL, "Bearer nope", NULL, NOW, &p, why, 0),
                     AUTH_INVALID);
    assert_int_equal(why[0], 'W');
}

static void dotted_key_is_a_key_without_jwt(void **state)
{
    struct fixture *f = *state;
    /* Without auth.jwt a token with dots is just an API key. */
    static const char dotted[] = "mcpv_a.b.c-0123456789abcdefghijklmnopqrstuvwxyz";
    set_key(&f->keys[1], dotted, strlen(dotted), "acme", "dots", NULL);
    struct principal *p;
    assert_int_equal(
        authenticate(&f->cfg, "Bearer mcpv_a.b.c-0123456789abcdefghijklmnopqrstuvwxyz", &p),
        AUTH_OK);
    assert_string_equal(p->user, "dots");
    principal_free(p);
}

/* ---- auth_authenticate: JWTs (verification itself is test_jose.c's) ------------------------ */

static void jwt_yields_its_principal(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64], id[17];
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_OK, NULL, NOW, &p, why, sizeof(why)),
        AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_JWT);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->user, "alice");
    assert_string_equal(p->agent, "ide");
    assert_int_equal(p->exp, JWT_EXP);
    assert_int_equal(p->nscopes, 2);
    assert_string_equal(p->scopes[0], "demo:read");
    assert_string_equal(p->scopes[1], "demo:write");
    token_id_of(JWT_OK, id);
    assert_string_equal(p->token_id, id);
    principal_free(p);

    /* On a server's endpoint the deployment-wide audience still fits. */
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_OK, "ts", NOW, &p, why, sizeof(why)),
        AUTH_OK);
    principal_free(p);
}

static void jwt_client_id_and_scp(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    assert_int_equal(authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_CLIENT_ID, "ts", NOW, &p,
                                       why, sizeof(why)),
                     AUTH_OK);
    assert_string_equal(p->agent, "cli-7");
    assert_int_equal(p->nscopes, 1);
    assert_string_equal(p->scopes[0], "a:b");
    principal_free(p);
}

static void jwt_per_server_audience(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    /* aud = <audience>/servers/ts/mcp: good for ts only (RFC 8707) */
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_SERVER, "ts", NOW, &p, why, sizeof(why)),
        AUTH_OK);
    assert_string_equal(p->user, "alice");
    principal_free(p);
    expect_invalid_why(&f->cfg, f->jwks, "Bearer " JWT_SERVER, "ts2", NOW, "bad_audience");
    expect_invalid_why(&f->cfg, f->jwks, "Bearer " JWT_SERVER, NULL, NOW, "bad_audience");

    /* a trailing slash on the configured audience is not part of the server's URI */
    f->cfg.jwt_audience = "https://mcp.test//";
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_SERVER, "ts", NOW, &p, why, sizeof(why)),
        AUTH_OK);
    principal_free(p);
}

static void jwt_expiry_uses_now_and_leeway(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    assert_int_equal(authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_OK, NULL, JWT_EXP + 60, &p,
                                       why, sizeof(why)),
                     AUTH_OK);
    principal_free(p);
    expect_invalid_why(&f->cfg, f->jwks, "Bearer " JWT_OK, NULL, JWT_EXP + 61, "expired");
    f->cfg.jwt_leeway_s = 0;
    expect_invalid_why(&f->cfg, f->jwks, "Bearer " JWT_OK, NULL, JWT_EXP + 1, "expired");
}

static void jwt_wrong_issuer_or_tampered(void **state)
{
    struct fixture *f = *state;
    f->cfg.jwt_issuer = "https://other-idp.test";
    expect_invalid_why(&f->cfg, f->jwks, "Bearer " JWT_OK, NULL, NOW, "bad_issuer");
    f->cfg.jwt_issuer = "https://idp.test";
    char *h = header("Bearer", JWT_OK);
    char *c = &h[strlen(h) - 5]; /* one character of the signature, still base64url */
    *c = *c == 'A' ? 'B' : 'A';
    expect_invalid_why(&f->cfg, f->jwks, h, NULL, NOW, "bad_signature");
    free(h);
}

static void jwt_unknown_kid_asks_for_a_refresh(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " JWT_KID, NULL, NOW, &p, why, sizeof(why)),
        AUTH_RETRY);
    assert_string_equal(why, "unknown_kid");
    /* without any keys at all, a JWT never gets in */
    enum auth_result r =
        authenticate_full(&f->cfg, NULL, "Bearer " JWT_OK, NULL, NOW, &p, why, sizeof(why));
    assert_true(r == AUTH_RETRY || r == AUTH_INVALID);
}

static void jwt_does_not_fall_back_to_keys_or_anonymous(void **state)
{
    struct fixture *f = *state;
    f->cfg.has_anonymous = true;
    /* A JWT whose digest is a configured API key's still goes through JWT verification. */
    static const char dotted[] = "a.b.c";
    set_key(&f->keys[1], dotted, strlen(dotted), "acme", "dots", NULL);
    expect_invalid_why(&f->cfg, f->jwks, "Bearer a.b.c", NULL, NOW, NULL);
    expect_invalid_why(&f->cfg, f->jwks, "Bearer not.a.jwt", NULL, NOW, NULL);
    expect_invalid_why(&f->cfg, f->jwks, "Bearer e30.e30.", NULL, NOW, NULL);
}

static void jwt_config_keeps_api_keys_working(void **state)
{
    struct fixture *f = *state;
    struct principal *p;
    char why[64];
    assert_int_equal(
        authenticate_full(&f->cfg, f->jwks, "Bearer " KEY_ALICE, "ts", NOW, &p, why, sizeof(why)),
        AUTH_OK);
    assert_int_equal(p->kind, PRINCIPAL_API_KEY);
    assert_string_equal(p->user, "alice");
    principal_free(p);
}

static void jwt_longer_than_max_is_too_long(void **state)
{
    struct fixture *f = *state;
    size_t n = AUTH_MAX_TOKEN_BYTES + 1;
    char *tok = repeat('A', n);
    tok[100] = '.';
    tok[200] = '.';
    char *h = header("Bearer", tok);
    expect_invalid_why(&f->cfg, f->jwks, h, "ts", NOW, "too_long");
    free(h);
    free(tok);
}

/* ---- auth_keygen --------------------------------------------------------------------------- */

static void keygen_format(void **state)
{
    (void)state;
    char key[128];
    memset(key, 'Z', sizeof(key));
    assert_int_equal(auth_keygen(key, sizeof(key)), 0);
    size_t plen = strlen(AUTH_KEY_PREFIX);
    assert_int_equal(strlen(key), plen + 43);
    assert_memory_equal(key, "mcpv_", 5);
    for (size_t i = plen; i < plen + 43; i++) {
        char c = key[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok)
            fail_msg("key %s: character %zu '%c' is not base64url", key, i, c);
    }
}

static void keygen_keys_differ(void **state)
{
    (void)state;
    char a[64], b[64];
    assert_int_equal(auth_keygen(a, sizeof(a)), 0);
    assert_int_equal(auth_keygen(b, sizeof(b)), 0);
    assert_string_not_equal(a, b);
}

static void keygen_output_bounds(void **state)
{
    (void)state;
    char key[64];
    size_t need = strlen(AUTH_KEY_PREFIX) + 43 + 1;
    memset(key, 'Z', sizeof(key));
    assert_int_equal(auth_keygen(key, need - 1), -1);
    assert_int_equal(key[need - 2], 'Z'); /* nothing written past what it was given */
    assert_int_equal(auth_keygen(key, need), 0);
    assert_int_equal(strlen(key), need - 1);
}

static void generated_key_authenticates(void **state)
{
    struct fixture *f = *state;
    char key[64];
    assert_int_equal(auth_keygen(key, sizeof(key)), 0);
    set_key(&f->keys[1], key, strlen(key), "acme", "gen", NULL);
    char *h = header("Bearer", key);
    struct principal *p;
    enum auth_result r = authenticate(&f->cfg, h, &p);
    free(h);
    assert_int_equal(r, AUTH_OK);
    assert_string_equal(p->user, "gen");
    principal_free(p);
}

/* ---- principals ---------------------------------------------------------------------------- */

static struct principal make_principal(char *tenant, char *user, char *agent, char **scopes,
                                       size_t nscopes)
{
    struct principal p = {.kind = PRINCIPAL_API_KEY,
                          .tenant = tenant,
                          .user = user,
                          .agent = agent,
                          .scopes = scopes,
                          .nscopes = nscopes};
    snprintf(p.token_id, sizeof(p.token_id), "-");
    return p;
}

static void principal_dup_is_deep(void **state)
{
    (void)state;
    char t[] = "acme", u[] = "alice", a[] = "ide", s1[] = "demo:read", s2[] = "demo:write";
    char *scopes[] = {s1, s2};
    struct principal p = make_principal(t, u, a, scopes, 2);
    p.kind = PRINCIPAL_JWT;
    p.exp = 4102444800LL;
    snprintf(p.token_id, sizeof(p.token_id), "0123456789abcdef");

    struct principal *d = principal_dup(&p);
    assert_non_null(d);
    assert_int_equal(d->kind, PRINCIPAL_JWT);
    assert_string_equal(d->tenant, "acme");
    assert_string_equal(d->user, "alice");
    assert_string_equal(d->agent, "ide");
    assert_int_equal(d->exp, 4102444800LL);
    assert_string_equal(d->token_id, "0123456789abcdef");
    assert_int_equal(d->nscopes, 2);
    assert_string_equal(d->scopes[0], "demo:read");
    assert_string_equal(d->scopes[1], "demo:write");
    /* its own storage: changing or freeing the original leaves the copy intact */
    assert_ptr_not_equal(d->tenant, p.tenant);
    assert_ptr_not_equal(d->user, p.user);
    assert_ptr_not_equal(d->agent, p.agent);
    assert_ptr_not_equal(d->scopes, p.scopes);
    assert_ptr_not_equal(d->scopes[0], p.scopes[0]);
    t[0] = 'X';
    s1[0] = 'X';
    assert_string_equal(d->tenant, "acme");
    assert_string_equal(d->scopes[0], "demo:read");
    assert_true(principal_has_scope(d, "demo:read"));

    /* a copy of a copy, then both freed independently (ASan checks the rest) */
    struct principal *dd = principal_dup(d);
    assert_non_null(dd);
    principal_free(d);
    assert_string_equal(dd->user, "alice");
    assert_int_equal(dd->nscopes, 2);
    principal_free(dd);
    principal_free(NULL);
}

static void principal_dup_without_scopes(void **state)
{
    (void)state;
    char t[] = "acme", u[] = "bob", a[] = "";
    struct principal p = make_principal(t, u, a, NULL, 0);
    p.kind = PRINCIPAL_ANONYMOUS;
    struct principal *d = principal_dup(&p);
    assert_non_null(d);
    assert_int_equal(d->kind, PRINCIPAL_ANONYMOUS);
    assert_int_equal(d->nscopes, 0);
    assert_string_equal(d->agent, "");
    assert_string_equal(d->token_id, "-");
    assert_int_equal(d->exp, 0);
    assert_false(principal_has_scope(d, "demo:read"));
    principal_free(d);
}

static void same_principal(void **state)
{
    (void)state;
    char t1[] = "acme", t2[] = "acme", u1[] = "alice", u2[] = "alice", a1[] = "cli", a2[] = "cli";
    struct principal a = make_principal(t1, u1, a1, NULL, 0);
    struct principal b = make_principal(t2, u2, a2, NULL, 0);
    assert_true(auth_same_principal(&a, &a));
    assert_true(auth_same_principal(&a, &b)); /* equal strings, different storage */

    char none1[] = "", none2[] = "";
    b.agent = none1;
    assert_false(auth_same_principal(&a, &b));
    assert_false(auth_same_principal(&b, &a));
    a.agent = none2;
    assert_true(auth_same_principal(&a, &b));

    char other[] = "globex";
    b.tenant = other;
    assert_false(auth_same_principal(&a, &b));
    assert_false(auth_same_principal(&b, &a));
    b.tenant = t2;
    char bob[] = "bob";
    b.user = bob;
    assert_false(auth_same_principal(&a, &b));
    b.user = u2;
    char agent[] = "ide";
    a.agent = a1;
    b.agent = agent;
    assert_false(auth_same_principal(&a, &b));

    /* prefixes are not equal */
    char alic[] = "alic", acm[] = "acm";
    b.agent = a2;
    b.user = alic;
    assert_false(auth_same_principal(&a, &b));
    b.user = u2;
    b.tenant = acm;
    assert_false(auth_same_principal(&a, &b));

    /* the same labels through another kind of credential are another caller */
    b.tenant = t2;
    assert_true(auth_same_principal(&a, &b));
    static const enum principal_kind kinds[] = {PRINCIPAL_API_KEY, PRINCIPAL_JWT,
                                                PRINCIPAL_ANONYMOUS};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < 3; j++) {
            a.kind = kinds[i];
            b.kind = kinds[j];
            assert_int_equal(auth_same_principal(&a, &b), i == j);
        }
    }
}

/* Two tokens of one caller are one caller (a refreshed token keeps the session); the same labels
 * through another kind of credential are not. */
static void identity_is_kind_not_scopes_or_token(void **state)
{
    (void)state;
    char t[] = "acme", u[] = "alice", ag[] = "ide";
    char s1[] = "tools:read";
    char *scopes[] = {s1};
    struct principal a = make_principal(t, u, ag, NULL, 0);
    struct principal b = make_principal(t, u, ag, scopes, 1);
    a.kind = PRINCIPAL_JWT;
    b.kind = PRINCIPAL_JWT;
    b.exp = 1;
    snprintf(b.token_id, sizeof(b.token_id), "ffffffffffffffff");
    assert_true(auth_same_principal(&a, &b));
    struct principal *d = principal_dup(&b);
    assert_true(auth_same_principal(d, &a));
    d->kind = PRINCIPAL_API_KEY;
    assert_false(auth_same_principal(d, &a));
    assert_false(auth_same_principal(&a, d));
    principal_free(d);
}

static void has_scope_is_exact(void **state)
{
    (void)state;
    char t[] = "acme", u[] = "alice", ag[] = "";
    char s1[] = "demo:read", s2[] = "demo:write";
    char *scopes[] = {s1, s2};
    struct principal p = make_principal(t, u, ag, scopes, 2);
    assert_true(principal_has_scope(&p, "demo:read"));
    assert_true(principal_has_scope(&p, "demo:write"));
    assert_false(principal_has_scope(&p, "demo:rea"));
    assert_false(principal_has_scope(&p, "demo:read "));
    assert_false(principal_has_scope(&p, "DEMO:READ"));
    assert_false(principal_has_scope(&p, ""));
    p.nscopes = 0;
    assert_false(principal_has_scope(&p, "demo:read"));
}

/* ---- per-tool authorization ---------------------------------------------------------------- */

/*
 * A manifest with echo (demo:read), add (demo:write and demo:admin), open (no scopes) and again
 * (demo:read twice, and demo:rea, a prefix of it that is a scope of its own).
 */
struct tools_fixture {
    char *echo_scopes[1], *add_scopes[2], *again_scopes[3];
    struct config_tool tools[4];
    struct config_manifest m;
};

static int setup_tools(void **state)
{
    struct tools_fixture *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    t->echo_scopes[0] = "demo:read";
    t->add_scopes[0] = "demo:write";
    t->add_scopes[1] = "demo:admin";
    t->again_scopes[0] = "demo:read";
    t->again_scopes[1] = "demo:rea";
    t->again_scopes[2] = "demo:read";
    t->tools[0] = (struct config_tool){.name = "echo", .scopes = t->echo_scopes, .nscopes = 1};
    t->tools[1] = (struct config_tool){.name = "add", .scopes = t->add_scopes, .nscopes = 2};
    t->tools[2] = (struct config_tool){.name = "open"};
    t->tools[3] = (struct config_tool){.name = "again", .scopes = t->again_scopes, .nscopes = 3};
    t->m.name = "ts";
    t->m.tools = t->tools;
    t->m.ntools = 4;
    *state = t;
    return 0;
}

static int teardown_tools(void **state)
{
    free(*state);
    return 0;
}

/* A principal holding the given NULL-terminated scopes (borrowed). */
static struct principal holder(char **scopes)
{
    static char t[] = "acme", u[] = "alice", a[] = "";
    size_t n = 0;
    while (scopes != NULL && scopes[n] != NULL)
        n++;
    return make_principal(t, u, a, scopes, n);
}

static cJSON *call_msg(const char *method, const char *tool)
{
    char text[256];
    if (tool != NULL)
        snprintf(text, sizeof(text),
                 "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"%s\",\"params\":{\"name\":\"%s\","
                 "\"arguments\":{}}}",
                 method, tool);
    else
        snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"%s\"}", method);
    cJSON *msg = cJSON_Parse(text);
    assert_non_null(msg);
    return msg;
}

/* auth_tool_forbidden on (method, tool) for a principal with `scopes`; checks *tool_name. */
static const struct config_tool *forbidden(const struct config_manifest *m, char **scopes,
                                           const char *method, const char *tool)
{
    struct principal p = holder(scopes);
    cJSON *msg = call_msg(method, tool);
    const char *name = "poison";
    const struct config_tool *r = auth_tool_forbidden(m, &p, msg, &name);
    if (strcmp(method, "tools/call") == 0 && tool != NULL) {
        assert_non_null(name);
        assert_string_equal(name, tool);
        /* borrowed from the message, not copied */
        const cJSON *jn = cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "params"), "name");
        assert_ptr_equal(name, jn->valuestring);
    } else {
        assert_null(name);
    }
    cJSON_Delete(msg);
    return r;
}

static void tool_forbidden_without_its_scope(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    char *read[] = {"demo:read", NULL};
    char *write[] = {"demo:write", NULL};
    char *rea[] = {"demo:rea", NULL};
    assert_ptr_equal(forbidden(&t->m, none, "tools/call", "echo"), &t->tools[0]);
    assert_ptr_equal(forbidden(&t->m, write, "tools/call", "echo"), &t->tools[0]);
    assert_ptr_equal(forbidden(&t->m, read, "tools/call", "add"), &t->tools[1]);
    /* every scope of the tool is needed, not just one */
    assert_ptr_equal(forbidden(&t->m, write, "tools/call", "add"), &t->tools[1]);
    /* a prefix of a scope is not the scope */
    assert_ptr_equal(forbidden(&t->m, rea, "tools/call", "echo"), &t->tools[0]);
    assert_ptr_equal(forbidden(&t->m, read, "tools/call", "again"), &t->tools[3]);
}

static void tool_allowed_with_its_scopes(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    char *read[] = {"demo:read", NULL};
    char *all[] = {"x:y", "demo:admin", "demo:read", "demo:write", NULL};
    char *again[] = {"demo:rea", "demo:read", NULL};
    assert_null(forbidden(&t->m, read, "tools/call", "echo"));
    assert_null(forbidden(&t->m, all, "tools/call", "echo"));
    assert_null(forbidden(&t->m, all, "tools/call", "add"));
    assert_null(forbidden(&t->m, again, "tools/call", "again"));
    /* a tool without scopes is open to every principal of the tenant */
    assert_null(forbidden(&t->m, none, "tools/call", "open"));
}

static void tool_forbidden_only_for_tools_call(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    static const char *const methods[] = {"tools/list",     "initialize",  "ping",
                                          "resources/read", "prompts/get", "tools/calls",
                                          "Tools/Call"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (forbidden(&t->m, none, methods[i], NULL) != NULL)
            fail_msg("method %s: forbidden", methods[i]);
    }
    /* a request naming a tool in params, but not a tools/call */
    struct principal p = holder(none);
    cJSON *msg = call_msg("prompts/get", "add");
    const char *name = "poison";
    assert_null(auth_tool_forbidden(&t->m, &p, msg, &name));
    assert_null(name);
    cJSON_Delete(msg);
}

static void tool_forbidden_unknown_tool_is_not_its_business(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    assert_null(forbidden(&t->m, none, "tools/call", "nosuch"));
    assert_null(forbidden(&t->m, none, "tools/call", "ech"));
    assert_null(forbidden(&t->m, none, "tools/call", "ECHO"));
    /* a manifest without tools forbids nothing */
    struct config_manifest empty = {.name = "bare"};
    assert_null(forbidden(&empty, none, "tools/call", "echo"));
}

static void tool_forbidden_malformed_calls(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    struct principal p = holder(none);
    static const char *const texts[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":7}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[\"echo\"]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7,\"params\":{\"name\":\"echo\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"name\":\"echo\"}}",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}]",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        cJSON *msg = cJSON_Parse(texts[i]);
        assert_non_null(msg);
        const char *name = "poison";
        const struct config_tool *r = auth_tool_forbidden(&t->m, &p, msg, &name);
        cJSON_Delete(msg);
        if (r != NULL)
            fail_msg("%s: forbidden", texts[i]);
        if (name != NULL && strcmp(name, "poison") == 0)
            fail_msg("%s: tool_name not set", texts[i]);
    }
    /* a notification (no id) is still a call of the tool */
    cJSON *msg = cJSON_Parse(
        "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"add\"}}");
    const char *name = NULL;
    assert_ptr_equal(auth_tool_forbidden(&t->m, &p, msg, &name), &t->tools[1]);
    cJSON_Delete(msg);
}

/* A tools/list result naming `names` (NULL-terminated). */
static cJSON *list_result(const char *const *names)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *tools = cJSON_AddArrayToObject(r, "tools");
    for (size_t i = 0; names[i] != NULL; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", names[i]);
        cJSON_AddStringToObject(t, "description", "d");
        cJSON_AddItemToArray(tools, t);
    }
    cJSON_AddStringToObject(r, "nextCursor", "c1");
    return r;
}

/* The names left in a tools/list result, joined by ",". */
static void names_of(const cJSON *result, char *out, size_t outlen)
{
    const cJSON *it;
    size_t pos = 0;
    out[0] = '\0';
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(result, "tools"))
    {
        const cJSON *n = cJSON_GetObjectItem(it, "name");
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", pos > 0 ? "," : "",
                                cJSON_IsString(n) ? n->valuestring : "?");
    }
}

static void filter_tools_removes_only_what_is_missing(void **state)
{
    struct tools_fixture *t = *state;
    static const char *const all_names[] = {"echo", "add", "open", "unlisted", "again", NULL};
    char names[256];
    struct {
        char *scopes[5];
        size_t removed;
        const char *left;
    } cases[] = {
        {{NULL}, 3, "open,unlisted"},
        {{"demo:read", NULL}, 2, "echo,open,unlisted"},
        {{"demo:read", "demo:rea", NULL}, 1, "echo,open,unlisted,again"},
        {{"demo:write", NULL}, 3, "open,unlisted"},
        {{"demo:write", "demo:admin", NULL}, 2, "add,open,unlisted"},
        {{"demo:admin", "demo:write", "demo:read", "demo:rea", NULL},
         0,
         "echo,add,open,unlisted,again"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct principal p = holder(cases[i].scopes);
        cJSON *r = list_result(all_names);
        size_t n = auth_filter_tools(&t->m, &p, r);
        names_of(r, names, sizeof(names));
        if (n != cases[i].removed || strcmp(names, cases[i].left) != 0)
            fail_msg("case %zu: removed %zu (%s), want %zu (%s)", i, n, names, cases[i].removed,
                     cases[i].left);
        /* the rest of the result is untouched */
        assert_string_equal(cJSON_GetObjectItem(r, "nextCursor")->valuestring, "c1");
        cJSON_Delete(r);
    }
}

static void filter_tools_odd_results(void **state)
{
    struct tools_fixture *t = *state;
    char *none[] = {NULL};
    struct principal p = holder(none);
    char names[256];

    cJSON *r = cJSON_Parse("{\"tools\":[]}");
    assert_int_equal(auth_filter_tools(&t->m, &p, r), 0);
    cJSON_Delete(r);
    r = cJSON_Parse("{\"other\":1}");
    assert_int_equal(auth_filter_tools(&t->m, &p, r), 0);
    cJSON_Delete(r);
    r = cJSON_Parse("{\"tools\":{\"name\":\"echo\"}}");
    assert_int_equal(auth_filter_tools(&t->m, &p, r), 0);
    cJSON_Delete(r);
    assert_int_equal(auth_filter_tools(&t->m, &p, NULL), 0);
    /* entries without a string name are not the filter's to judge */
    r = cJSON_Parse("{\"tools\":[{\"name\":7},{\"title\":\"x\"},\"echo\",{\"name\":\"echo\"},"
                    "{\"name\":\"add\"},{\"name\":\"add\"}]}");
    assert_non_null(r);
    assert_int_equal(auth_filter_tools(&t->m, &p, r), 3); /* echo, add, add */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "tools")), 3);
    cJSON_Delete(r);
    /* only matching entries go, even when they are first or last */
    static const char *const ends[] = {"add", "open", "echo", NULL};
    r = list_result(ends);
    assert_int_equal(auth_filter_tools(&t->m, &p, r), 2);
    names_of(r, names, sizeof(names));
    assert_string_equal(names, "open");
    cJSON_Delete(r);
}

static void scope_string_of_a_tool(void **state)
{
    struct tools_fixture *t = *state;
    char out[128];
    auth_scope_string(&t->m, &t->tools[0], out, sizeof(out));
    assert_string_equal(out, "demo:read");
    auth_scope_string(&t->m, &t->tools[1], out, sizeof(out));
    assert_string_equal(out, "demo:write demo:admin");
    memset(out, 'Z', sizeof(out));
    auth_scope_string(&t->m, &t->tools[2], out, sizeof(out));
    assert_string_equal(out, "");
    /* duplicates within one tool once; a scope that is a prefix of another still counts */
    auth_scope_string(&t->m, &t->tools[3], out, sizeof(out));
    assert_string_equal(out, "demo:read demo:rea");
}

static void scope_string_of_a_server(void **state)
{
    struct tools_fixture *t = *state;
    char out[128];
    /* the union of every tool's scopes, in manifest order, each once */
    auth_scope_string(&t->m, NULL, out, sizeof(out));
    assert_string_equal(out, "demo:read demo:write demo:admin demo:rea");

    /* a shorter scope written first does not hide a longer one that starts with it */
    char *s1[] = {"demo:rea"};
    char *s2[] = {"demo:read", "demo:re", "demo:read:all", "x demo:read"};
    struct config_tool tools[] = {{.name = "a", .scopes = s1, .nscopes = 1},
                                  {.name = "b", .scopes = s2, .nscopes = 3}};
    struct config_manifest m = {.name = "p", .tools = tools, .ntools = 2};
    auth_scope_string(&m, NULL, out, sizeof(out));
    assert_string_equal(out, "demo:rea demo:read demo:re demo:read:all");

    struct config_manifest empty = {.name = "bare"};
    memset(out, 'Z', sizeof(out));
    auth_scope_string(&empty, NULL, out, sizeof(out));
    assert_string_equal(out, "");
    memset(out, 'Z', sizeof(out));
    auth_scope_string(NULL, NULL, out, sizeof(out));
    assert_string_equal(out, "");
}

/* Every space-separated word of out is one of want's (whole scopes only), each once. */
static void assert_whole_scopes(const char *out, const char *const *want, size_t nwant,
                                size_t outlen)
{
    char copy[256], *save = NULL;
    snprintf(copy, sizeof(copy), "%s", out);
    bool seen[16] = {false};
    for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
        size_t i = 0;
        while (i < nwant && strcmp(w, want[i]) != 0)
            i++;
        if (i == nwant)
            fail_msg("outlen %zu: \"%s\" holds \"%s\", not a scope of the server", outlen, out, w);
        if (seen[i])
            fail_msg("outlen %zu: \"%s\" repeats %s", outlen, out, w);
        seen[i] = true;
    }
}

static void scope_string_is_bounded(void **state)
{
    struct tools_fixture *t = *state;
    static const char *const all[] = {"demo:read", "demo:write", "demo:admin", "demo:rea"};
    const char *full = "demo:read demo:write demo:admin demo:rea";
    for (size_t len = 1; len <= strlen(full) + 1; len++) {
        char out[64];
        memset(out, 'Z', sizeof(out));
        auth_scope_string(&t->m, NULL, out, len);
        if (memchr(out, '\0', len) == NULL)
            fail_msg("outlen %zu: not terminated", len);
        if (out[len] != 'Z')
            fail_msg("outlen %zu: wrote past the end", len);
        /* Too small a buffer may cost scopes, but never yields half a scope (it would name
         * another scope, or none, in a WWW-Authenticate challenge). */
        assert_whole_scopes(out, all, 4, len);
    }
    char out[4];
    memset(out, 'Z', sizeof(out));
    auth_scope_string(&t->m, NULL, out, 0);
    assert_int_equal(out[0], 'Z');
}

#define T(f)  cmocka_unit_test_setup_teardown(f, setup, teardown)
#define J(f)  cmocka_unit_test_setup_teardown(f, setup_jwt, teardown)
#define TT(f) cmocka_unit_test_setup_teardown(f, setup_tools, teardown_tools)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(missing_header_is_missing),
        T(missing_header_is_anonymous_when_configured),
        T(anonymous_without_agent_has_empty_agent),
        T(bearer_key_returns_its_principal),
        T(bearer_key_wins_over_anonymous),
        T(scheme_is_case_insensitive),
        T(token_is_case_sensitive),
        T(wrong_key_is_invalid),
        T(wrong_key_is_invalid_even_with_anonymous),
        T(other_schemes_are_invalid),
        T(empty_token_is_invalid),
        T(extra_whitespace_is_not_trimmed),
        T(token_of_max_bytes_is_accepted),
        T(token_longer_than_max_is_invalid),
        T(no_keys_configured_refuses_every_token),
        T(reason_buffer_is_bounded),
        T(dotted_key_is_a_key_without_jwt),
        J(jwt_yields_its_principal),
        J(jwt_client_id_and_scp),
        J(jwt_per_server_audience),
        J(jwt_expiry_uses_now_and_leeway),
        J(jwt_wrong_issuer_or_tampered),
        J(jwt_unknown_kid_asks_for_a_refresh),
        J(jwt_does_not_fall_back_to_keys_or_anonymous),
        J(jwt_config_keeps_api_keys_working),
        J(jwt_longer_than_max_is_too_long),
        cmocka_unit_test(keygen_format),
        cmocka_unit_test(keygen_keys_differ),
        cmocka_unit_test(keygen_output_bounds),
        T(generated_key_authenticates),
        cmocka_unit_test(principal_dup_is_deep),
        cmocka_unit_test(principal_dup_without_scopes),
        cmocka_unit_test(same_principal),
        cmocka_unit_test(identity_is_kind_not_scopes_or_token),
        cmocka_unit_test(has_scope_is_exact),
        TT(tool_forbidden_without_its_scope),
        TT(tool_allowed_with_its_scopes),
        TT(tool_forbidden_only_for_tools_call),
        TT(tool_forbidden_unknown_tool_is_not_its_business),
        TT(tool_forbidden_malformed_calls),
        TT(filter_tools_removes_only_what_is_missing),
        TT(filter_tools_odd_results),
        TT(scope_string_of_a_tool),
        TT(scope_string_of_a_server),
        TT(scope_string_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
