/*
 * jose.h — JSON Web Keys and JWS-signed JWT access tokens (RFC 7515, 7517, 7518, 7519, 8037,
 * 9068), verified with OpenSSL's EVP interface. Pure: no I/O, no clock (the caller passes now).
 *
 * Accepts only RS256, PS256, ES256 and EdDSA (Ed25519). Refuses "none", every HMAC algorithm
 * (a public key must never double as a shared secret), an alg that does not fit the key's type,
 * and a key whose "alg" or "use" says it is for something else. Every input is bounded.
 */
#ifndef MCPVISOR_JOSE_H
#define MCPVISOR_JOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOSE_MAX_TOKEN_BYTES 8192 /* a compact JWS longer than this is refused unparsed */
#define JOSE_MAX_JWKS_BYTES  (256u << 10)
#define JOSE_MAX_KEYS        64
#define JOSE_MAX_SCOPES      64
#define JOSE_CLAIM_MAX       256 /* longest tenant, user, agent, issuer or scope accepted */

enum jose_alg { JOSE_ALG_NONE = 0, JOSE_ALG_RS256, JOSE_ALG_PS256, JOSE_ALG_ES256, JOSE_ALG_EDDSA };

struct jose_key; /* one public key: kid, kty, optional alg, and the EVP_PKEY */

struct jose_keyset {
    struct jose_key **keys;
    size_t nkeys;
};

/*
 * Parses a JWKS document ({"keys": [...]}) of at most JOSE_MAX_JWKS_BYTES and JOSE_MAX_KEYS
 * entries; json need not be NUL-terminated. Keys of types, curves, sizes or algorithms we do not
 * verify with (oct, RSA under 2048 or over 8192 bits, P-384, X25519, an "alg" such as RS512, ...)
 * and keys whose "use" is not "sig" (or whose "key_ops" lacks "verify") are skipped, not errors;
 * a malformed key (including one that carries private material, "d") is an error. Returns 0 and
 * fills *out (free with jose_keyset_free; the set may be empty when every key was skipped), or -1
 * with a message in err and *out empty.
 */
int jose_jwks_parse(const char *json, size_t len, struct jose_keyset *out, char *err,
                    size_t errlen);
void jose_keyset_free(struct jose_keyset *ks); /* leaves *ks empty; safe to call twice */

/* What verification needs from the configuration. */
struct jose_policy {
    const char *issuer;     /* "iss" must equal this */
    const char **audiences; /* "aud" (string or array) must contain one of these */
    size_t naudiences;
    const char *tenant_claim; /* claim naming the tenant, e.g. "tenant" */
    const char *agent_claim;  /* claim naming the agent, e.g. "azp"; "client_id" and the RFC 8693
                                 "act" claim's "sub" are the fall-backs, in that order */
    int64_t now;              /* seconds since the epoch */
    uint32_t leeway_s;        /* allowed clock skew for exp, nbf and iat */
};

struct jose_claims {
    char tenant[JOSE_CLAIM_MAX];
    char user[JOSE_CLAIM_MAX];  /* "sub" */
    char agent[JOSE_CLAIM_MAX]; /* may be empty */
    char *scopes[JOSE_MAX_SCOPES];
    size_t nscopes;
    int64_t exp;
    char kid[JOSE_CLAIM_MAX]; /* the header's kid, for logs */
};

enum jose_result {
    JOSE_OK = 0,
    JOSE_MALFORMED,     /* not a compact JWS, bad base64url, bad JSON, too long */
    JOSE_BAD_ALG,       /* none, HMAC, unknown, or not the key's type */
    JOSE_UNKNOWN_KID,   /* no key with this kid (the caller may refresh its JWKS once) */
    JOSE_BAD_SIGNATURE, /* the signature does not verify */
    JOSE_BAD_TYP,       /* typ present and not "at+jwt", "application/at+jwt" or "JWT" */
    JOSE_BAD_ISSUER,
    JOSE_BAD_AUDIENCE,
    JOSE_EXPIRED,       /* exp missing or in the past (beyond leeway) */
    JOSE_NOT_YET_VALID, /* nbf or iat in the future (beyond leeway) */
    JOSE_BAD_CLAIMS,    /* sub or tenant missing, a claim of the wrong type, too long or repeated */
};

/*
 * Verifies a compact JWS access token against the key set and the policy. The header is decoded
 * first and the signature checked before any claim is parsed. *claims (not NULL) is always
 * initialised: on JOSE_OK it is filled (free its scopes with jose_claims_free); on any other
 * result it owns no memory and only kid is set, when the header named one, for the log line.
 * A token without kid uses the one key of the set that fits its alg; when several fit, the
 * result is JOSE_UNKNOWN_KID.
 */
enum jose_result jose_verify(const char *token, size_t len, const struct jose_keyset *ks,
                             const struct jose_policy *policy, struct jose_claims *claims);
void jose_claims_free(struct jose_claims *claims);

/* A short, stable name for a result ("expired", "bad_signature", ...), for logs and tests. */
const char *jose_result_name(enum jose_result r);

/*
 * base64url without padding (RFC 7515 §2), strictly: no other characters, and non-zero spare bits
 * in the last character are refused. Returns a malloc'ed buffer, NUL-terminated for convenience
 * (the terminator is not counted in *outlen), or NULL.
 */
unsigned char *jose_b64url_decode(const char *in, size_t len, size_t *outlen);

#endif
