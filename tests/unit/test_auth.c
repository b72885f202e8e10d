/*
 * test_auth.c — API-key authentication (supervisor/auth.c): which Authorization headers let a
 * caller in, as whom, and the format of generated keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define KEY_ALICE "mcpv_alice-key-0123456789abcdefghijklmnopqrstuvwxyz"
#define KEY_BOB   "mcpv_bob-key-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

struct fixture {
    struct config cfg;
    struct config_api_key keys[3];
    char *long_key; /* AUTH_MAX_TOKEN_BYTES + 1 characters */
    char *max_key;  /* AUTH_MAX_TOKEN_BYTES characters */
};

static void set_key(struct config_api_key *k, const char *key, size_t len, char *tenant, char *user,
                    char *agent)
{
    auth_sha256(key, len, k->sha256);
    k->principal.tenant = tenant;
    k->principal.user = user;
    k->principal.agent = agent;
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

static int teardown(void **state)
{
    struct fixture *f = *state;
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

static enum auth_result authenticate(const struct config *cfg, const char *authorization,
                                     const struct config_principal **out)
{
    static const struct config_principal poison;
    *out = &poison; /* must be overwritten, with NULL on failure */
    return auth_authenticate(cfg, authorization, out);
}

static void expect_invalid(const struct config *cfg, const char *authorization)
{
    const struct config_principal *p;
    enum auth_result r = authenticate(cfg, authorization, &p);
    if (r != AUTH_INVALID)
        fail_msg("\"%.60s\": result %d, want AUTH_INVALID", authorization, (int)r);
    assert_null(p);
}

/* ---- sha256 -------------------------------------------------------------------------------- */

static void sha256_matches_known_digest(void **state)
{
    (void)state;
    uint8_t d[32];
    char hex[65];
    auth_sha256("abc", 3, d);
    auth_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auth_sha256("", 0, d);
    auth_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- auth_authenticate --------------------------------------------------------------------- */

static void missing_header_is_missing(void **state)
{
    struct fixture *f = *state;
    const struct config_principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_MISSING);
    assert_null(p);
}

static void missing_header_is_anonymous_when_configured(void **state)
{
    struct fixture *f = *state;
    f->cfg.has_anonymous = true;
    const struct config_principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_OK);
    assert_ptr_equal(p, &f->cfg.anonymous);
    assert_string_equal(p->tenant, "dev");
}

static void bearer_key_returns_its_principal(void **state)
{
    struct fixture *f = *state;
    const struct config_principal *p;
    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_ALICE, &p), AUTH_OK);
    assert_ptr_equal(p, &f->keys[0].principal);
    assert_string_equal(p->tenant, "acme");
    assert_string_equal(p->user, "alice");

    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_BOB, &p), AUTH_OK);
    assert_ptr_equal(p, &f->keys[1].principal);
    assert_string_equal(p->tenant, "globex");
    assert_string_equal(p->user, "bob");
}

static void bearer_key_wins_over_anonymous(void **state)
{
    struct fixture *f = *state;
    f->cfg.has_anonymous = true;
    const struct config_principal *p;
    assert_int_equal(authenticate(&f->cfg, "Bearer " KEY_BOB, &p), AUTH_OK);
    assert_ptr_equal(p, &f->keys[1].principal);
}

static void scheme_is_case_insensitive(void **state)
{
    struct fixture *f = *state;
    static const char *const schemes[] = {"bearer", "BEARER", "bEaReR"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        char *h = header(schemes[i], KEY_ALICE);
        const struct config_principal *p;
        enum auth_result r = authenticate(&f->cfg, h, &p);
        free(h);
        if (r != AUTH_OK)
            fail_msg("scheme \"%s\": result %d, want AUTH_OK", schemes[i], (int)r);
        assert_ptr_equal(p, &f->keys[0].principal);
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
    set_key(&f->keys[1], f->max_key, AUTH_MAX_TOKEN_BYTES, "acme", "max", NULL);
    char *h = header("Bearer", f->max_key);
    const struct config_principal *p;
    enum auth_result r = authenticate(&f->cfg, h, &p);
    free(h);
    assert_int_equal(r, AUTH_OK);
    assert_ptr_equal(p, &f->keys[1].principal);
}

static void token_longer_than_max_is_invalid(void **state)
{
    struct fixture *f = *state;
    /* keys[2] is this very token's digest: only the length check can refuse it. */
    char *h = header("Bearer", f->long_key);
    expect_invalid(&f->cfg, h);
    free(h);
}

static void no_keys_configured_refuses_every_token(void **state)
{
    struct fixture *f = *state;
    f->cfg.napi_keys = 0;
    f->cfg.api_keys = NULL;
    expect_invalid(&f->cfg, "Bearer " KEY_ALICE);
    const struct config_principal *p;
    assert_int_equal(authenticate(&f->cfg, NULL, &p), AUTH_MISSING);
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
    const struct config_principal *p;
    enum auth_result r = authenticate(&f->cfg, h, &p);
    free(h);
    assert_int_equal(r, AUTH_OK);
    assert_string_equal(p->user, "gen");
}

/* ---- auth_same_principal ------------------------------------------------------------------- */

static void same_principal(void **state)
{
    (void)state;
    char t1[] = "acme", t2[] = "acme", u1[] = "alice", u2[] = "alice", a1[] = "cli", a2[] = "cli";
    struct config_principal a = {.tenant = t1, .user = u1, .agent = a1};
    struct config_principal b = {.tenant = t2, .user = u2, .agent = a2};
    assert_true(auth_same_principal(&a, &a));
    assert_true(auth_same_principal(&a, &b)); /* equal strings, different storage */

    b.agent = NULL;
    assert_false(auth_same_principal(&a, &b));
    assert_false(auth_same_principal(&b, &a));
    a.agent = NULL;
    assert_true(auth_same_principal(&a, &b));

    char other[] = "globex";
    b.tenant = other;
    assert_false(auth_same_principal(&a, &b));
    b.tenant = t2;
    char bob[] = "bob";
    b.user = bob;
    assert_false(auth_same_principal(&a, &b));
    b.user = u2;
    char agent[] = "ide";
    a.agent = a1;
    b.agent = agent;
    assert_false(auth_same_principal(&a, &b));
}

static void scopes_do_not_change_identity(void **state)
{
    (void)state;
    char t[] = "acme", u[] = "alice";
    char s1[] = "tools:read";
    char *scopes[] = {s1};
    struct config_principal a = {.tenant = t, .user = u};
    struct config_principal b = {.tenant = t, .user = u, .scopes = scopes, .nscopes = 1};
    assert_true(auth_same_principal(&a, &b));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_matches_known_digest),
        T(missing_header_is_missing),
        T(missing_header_is_anonymous_when_configured),
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
        cmocka_unit_test(keygen_format),
        cmocka_unit_test(keygen_keys_differ),
        cmocka_unit_test(keygen_output_bounds),
        T(generated_key_authenticates),
        cmocka_unit_test(same_principal),
        cmocka_unit_test(scopes_do_not_change_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
