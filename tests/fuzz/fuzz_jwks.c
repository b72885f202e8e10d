/*
 * fuzz_jwks.c — JWKS documents (jose.c's jose_jwks_parse, which jwks.c runs on a fetched
 * jwks_url body and config.c on a jwks_file).
 *
 * The input is a JWKS document as an identity provider would serve it. When it parses, the keys
 * are used: fixed example tokens (RFC 7515 A.2 and A.3, RFC 8037 A.4) are verified against the
 * set, which walks the key lookup by kid and alg and the EVP verification with each key.
 * jwks.c itself is not a target: it fetches over libevent's HTTP client.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jose.h"

static const char *const tokens[] = {
    /* RFC 7515 A.2, RS256 */
    "eyJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q"
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"
    "O8W2Fp5ju"
    "jGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7"
    "K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6L"
    "bgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
    /* RFC 7515 A.3, ES256 */
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
    /* RFC 8037 A.4, EdDSA */
    ("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
     ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"),
    /* PS256 header, no kid, bad signature */
    "eyJhbGciOiJQUzI1NiJ9.e30.AAAA",
    /* ES256 with a kid */
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA",
};

static const char *auds[] = {"https://mcp.example"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jose_keyset ks;
    char err[256];
    /* Exactly size bytes, no terminator: the parser must not need one. */
    char *json = malloc(size > 0 ? size : 1);

    if (json == NULL)
        return 0;
    memcpy(json, data, size);
    if (jose_jwks_parse(json, size, &ks, err, sizeof err) != 0) {
        if (ks.nkeys != 0 || ks.keys != NULL || memchr(err, '\0', sizeof err) == NULL)
            abort();
        free(json);
        return 0;
    }
    free(json);
    if (ks.nkeys > JOSE_MAX_KEYS)
        abort();
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        struct jose_policy p = {
            .issuer = "joe",
            .audiences = auds,
            .naudiences = 1,
            .tenant_claim = "tenant",
            .agent_claim = "azp",
            .now = 1300819000,
            .leeway_s = 60,
        };
        struct jose_claims c;
        /* The example claims lack sub and tenant: never accepted. */
        if (jose_verify(tokens[i], strlen(tokens[i]), &ks, &p, &c) == JOSE_OK)
            abort();
    }
    jose_keyset_free(&ks);
    jose_keyset_free(&ks);
    return 0;
}
