/*
 * jose.c — JSON Web Key Sets and JWS-signed JWT access tokens, verified with OpenSSL 3's EVP
 * interface (keys built with OSSL_PARAM_BLD and EVP_PKEY_fromdata; no deprecated RSA_* or
 * EC_KEY_* calls).
 *
 * Owns: strict base64url, the JWKS → EVP_PKEY conversion, the compact-JWS checks and the access
 * token claim rules (RFC 7515, 7517, 7518, 7519, 8037, 9068). Pure: no I/O, no clock, no logging.
 *
 * Invariants: the signature is checked before any byte of the payload is parsed; the key comes
 * only from the caller's key set (a header's jwk, jku, x5u or x5c is never used); a claim we read
 * appears once in its object (duplicates would let two parsers disagree); every input has a
 * ceiling, so the work per token is bounded; every path frees what it made.
 *
 * Refuses: alg "none", every HMAC algorithm (a public key must never double as a shared secret),
 * an alg that does not fit the key, "crit" (we understand no extension), non-canonical or padded
 * base64url, "\u0000" inside JSON (cJSON would cut the string there), RSA moduli under 2048 bits,
 * EC points off the curve, and JWKS entries that carry private key material.
 */
#include "jose.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JOSE_RSA_MIN_BITS 2048
#define JOSE_RSA_MAX_BITS 8192 /* verification cost grows with the modulus; nobody needs more */
#define JOSE_P256_BYTES   32
#define JOSE_ED25519_SIZE 32
#define JOSE_SIG64_SIZE   64                 /* ES256 R||S and Ed25519 signatures */
#define JOSE_MAX_SAFE_INT 9007199254740992.0 /* 2^53: NumericDates beyond this lose precision */

enum jose_kty { JOSE_KTY_RSA = 1, JOSE_KTY_P256, JOSE_KTY_ED25519 };

struct jose_key {
    char kid[JOSE_CLAIM_MAX];
    bool has_kid;
    enum jose_kty kty;
    enum jose_alg alg; /* JOSE_ALG_NONE: the JWK does not restrict its algorithm */
    EVP_PKEY *pkey;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static enum jose_alg alg_from_name(const char *s)
{
    if (strcmp(s, "RS256") == 0)
        return JOSE_ALG_RS256;
    if (strcmp(s, "PS256") == 0)
        return JOSE_ALG_PS256;
    if (strcmp(s, "ES256") == 0)
        return JOSE_ALG_ES256;
    if (strcmp(s, "EdDSA") == 0)
        return JOSE_ALG_EDDSA;
    return JOSE_ALG_NONE; /* "none", HS*, and everything we do not verify */
}

static bool alg_fits_kty(enum jose_alg alg, enum jose_kty kty)
{
    switch (alg) {
    case JOSE_ALG_RS256:
    case JOSE_ALG_PS256:
        return kty == JOSE_KTY_RSA;
    case JOSE_ALG_ES256:
        return kty == JOSE_KTY_P256;
    case JOSE_ALG_EDDSA:
        return kty == JOSE_KTY_ED25519;
    case JOSE_ALG_NONE:
        break;
    }
    return false;
}

/*
 * The member `name` of obj, or NULL when absent. A name present twice makes *dup true: cJSON
 * returns the first, other parsers the last, and a verifier must not pick a side (RFC 7515 §4,
 * RFC 7519 §4).
 */
static const cJSON *member(const cJSON *obj, const char *name, bool *dup)
{
    const cJSON *found = NULL;
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        if (it->string == NULL || strcmp(it->string, name) != 0)
            continue;
        if (found != NULL) {
            *dup = true;
            return NULL;
        }
        found = it;
    }
    return found;
}

/* No C0 control characters or DEL: these strings end up in logs and the audit trail. */
static bool printable(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Copies a string claim of 0 to JOSE_CLAIM_MAX-1 printable bytes; -1 otherwise. */
static int copy_text(char dst[JOSE_CLAIM_MAX], const char *src)
{
    size_t n = strnlen(src, JOSE_CLAIM_MAX);
    if (n >= JOSE_CLAIM_MAX || !printable(src))
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/*
 * Parses len bytes of JSON that must hold exactly one value. Refuses NUL bytes and the escape
 * \u0000: cJSON would end a string there and see "ab" where another parser sees "ab\0cd".
 * Returns NULL when the text is not acceptable JSON.
 */
static cJSON *parse_json(const char *text, size_t len)
{
    char *buf = NULL;
    cJSON *root = NULL;

    if (len == SIZE_MAX || memchr(text, '\0', len) != NULL)
        return NULL;
    for (size_t i = 0; i + 5 < len; i++) {
        if (text[i] == '\\' && text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0)
            return NULL;
    }
    buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    memcpy(buf, text, len);
    buf[len] = '\0';
    /* The terminator is part of the buffer, so "require_null_terminated" refuses trailing data. */
    root = cJSON_ParseWithLengthOpts(buf, len + 1, NULL, 1);
    free(buf);
    return root;
}

/* ---- base64url ------------------------------------------------------------------------------ */

/*
 * The 6-bit value of a base64url character, or -1. Branch-free and without a table: a bearer
 * token is a secret, and a table lookup indexed by it leaks through the cache.
 */
static int b64url_value(unsigned char c)
{
    int ch = c, v = -1;
    v += ((('A' - 1 - ch) & (ch - ('Z' + 1))) >> 8) & (ch - 'A' + 1);
    v += ((('a' - 1 - ch) & (ch - ('z' + 1))) >> 8) & (ch - 'a' + 27);
    v += ((('0' - 1 - ch) & (ch - ('9' + 1))) >> 8) & (ch - '0' + 53);
    v += ((('-' - 1 - ch) & (ch - ('-' + 1))) >> 8) & 63;
    v += ((('_' - 1 - ch) & (ch - ('_' + 1))) >> 8) & 64;
    return v;
}

/*
 * Strict: only A-Z a-z 0-9 - _, no padding, no whitespace, and the unused low bits of the last
 * character must be zero, so every byte string has exactly one encoding and a token cannot be
 * re-spelled into another string that still verifies. The result is NUL-terminated for
 * convenience; the terminator is not counted in *outlen.
 */
unsigned char *jose_b64url_decode(const char *in, size_t len, size_t *outlen)
{
    unsigned char *out;
    size_t n, o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (outlen != NULL)
        *outlen = 0;
    if ((in == NULL && len > 0) || len % 4 == 1)
        return NULL;
    n = len / 4 * 3 + (len % 4 != 0 ? len % 4 - 1 : 0);
    out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-zero padding bits: a second spelling of the same bytes */
        goto bad;
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- JWK → EVP_PKEY ------------------------------------------------------------------------ */

/* Decodes the base64url string member `name` of jwk; -1 when absent, not a string or invalid. */
static int jwk_bytes(const cJSON *jwk, const char *name, unsigned char **out, size_t *outlen,
                     char *msg, size_t msglen)
{
    bool dup = false;
    const cJSON *m = member(jwk, name, &dup);
    *out = NULL;
    if (dup) {
        set_err(msg, msglen, "\"%s\" appears twice", name);
        return -1;
    }
    if (!cJSON_IsString(m) || m->valuestring == NULL) {
        set_err(msg, msglen, "\"%s\" must be a base64url string", name);
        return -1;
    }
    *out = jose_b64url_decode(m->valuestring, strlen(m->valuestring), outlen);
    if (*out == NULL) {
        set_err(msg, msglen, "\"%s\" is not unpadded base64url", name);
        return -1;
    }
    return 0;
}

/* Builds a public key of type `type` (an OpenSSL name) from bld's parameters, then checks it. */
static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* fromdata already refuses an EC point off the curve; this also vets RSA n and e. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* Returns 0 with *pkey, 1 when the key is one we do not verify with, -1 on a malformed key. */
static int jwk_rsa(const cJSON *jwk, EVP_PKEY **pkey, char *msg, size_t msglen)
{
    unsigned char *n = NULL, *e = NULL;
    size_t nlen, elen;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    int rc = -1, bits;

    if (jwk_bytes(jwk, "n", &n, &nlen, msg, msglen) == -1 ||
        jwk_bytes(jwk, "e", &e, &elen, msg, msglen) == -1)
        goto out;
    if (nlen == 0 || elen == 0 || elen > 8) {
        set_err(msg, msglen, "RSA \"n\" and \"e\" must be non-empty, \"e\" at most 8 bytes");
        goto out;
    }
    if (nlen > JOSE_RSA_MAX_BITS / 8 + 1) {
        rc = 1;
        goto out;
    }
    bn = BN_bin2bn(n, (int)nlen, NULL);
    be = BN_bin2bn(e, (int)elen, NULL);
    if (bn == NULL || be == NULL) {
        set_err(msg, msglen, "out of memory");
        goto out;
    }
    bits = BN_num_bits(bn);
    if (bits < JOSE_RSA_MIN_BITS || bits > JOSE_RSA_MAX_BITS) {
        rc = 1;
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1) {
        set_err(msg, msglen, "out of memory");
        goto out;
    }
    *pkey = pkey_from_params("RSA", bld);
    if (*pkey == NULL) {
        set_err(msg, msglen, "RSA key fails the public-key check (n and e must be odd, e > 1)");
        goto out;
    }
    rc = 0;
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return rc;
}

static int jwk_p256(const cJSON *jwk, EVP_PKEY **pkey, char *msg, size_t msglen)
{
    unsigned char *x = NULL, *y = NULL;
    unsigned char point[1 + 2 * JOSE_P256_BYTES];
    size_t xlen, ylen;
    OSSL_PARAM_BLD *bld = NULL;
    int rc = -1;

    if (jwk_bytes(jwk, "x", &x, &xlen, msg, msglen) == -1 ||
        jwk_bytes(jwk, "y", &y, &ylen, msg, msglen) == -1)
        goto out;
    if (xlen != JOSE_P256_BYTES || ylen != JOSE_P256_BYTES) {
        set_err(msg, msglen, "P-256 \"x\" and \"y\" must be 32 bytes each");
        goto out;
    }
    point[0] = 0x04; /* SEC 1 uncompressed point */
    memcpy(point + 1, x, JOSE_P256_BYTES);
    memcpy(point + 1 + JOSE_P256_BYTES, y, JOSE_P256_BYTES);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) != 1) {
        set_err(msg, msglen, "out of memory");
        goto out;
    }
    *pkey = pkey_from_params("EC", bld);
    if (*pkey == NULL) {
        set_err(msg, msglen, "\"x\", \"y\" is not a point on P-256");
        goto out;
    }
    rc = 0;
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return rc;
}

static int jwk_ed25519(const cJSON *jwk, EVP_PKEY **pkey, char *msg, size_t msglen)
{
    unsigned char *x = NULL;
    size_t xlen;
    OSSL_PARAM_BLD *bld = NULL;
    int rc = -1;

    if (jwk_bytes(jwk, "x", &x, &xlen, msg, msglen) == -1)
        goto out;
    if (xlen != JOSE_ED25519_SIZE) {
        set_err(msg, msglen, "Ed25519 \"x\" must be 32 bytes");
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, x, xlen) != 1) {
        set_err(msg, msglen, "out of memory");
        goto out;
    }
    *pkey = pkey_from_params("ED25519", bld);
    if (*pkey == NULL) {
        set_err(msg, msglen, "Ed25519 key refused by OpenSSL");
        goto out;
    }
    rc = 0;
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    return rc;
}

/* An optional string member: 0 absent, 1 present (*out set), -1 twice or not a string. */
static int opt_string(const cJSON *obj, const char *name, const char **out, char *msg,
                      size_t msglen)
{
    bool dup = false;
    const cJSON *m = member(obj, name, &dup);
    *out = NULL;
    if (dup) {
        set_err(msg, msglen, "\"%s\" appears twice", name);
        return -1;
    }
    if (m == NULL)
        return 0;
    if (!cJSON_IsString(m) || m->valuestring == NULL) {
        set_err(msg, msglen, "\"%s\" must be a string", name);
        return -1;
    }
    *out = m->valuestring;
    return 1;
}

/*
 * One JWK. Returns 0 and fills *key, 1 when the key is skipped (a type, curve, size or purpose
 * we do not verify with), or -1 with a message when it is malformed.
 */
static int jwk_parse(const cJSON *jwk, struct jose_key **key, char *msg, size_t msglen)
{
    const char *kty, *kid, *use, *alg, *crv = NULL;
    enum jose_kty type;
    enum jose_alg a = JOSE_ALG_NONE;
    const cJSON *ops;
    bool dup = false;
    EVP_PKEY *pkey = NULL;
    int rc;

    *key = NULL;
    if (!cJSON_IsObject(jwk)) {
        set_err(msg, msglen, "a key must be a JSON object");
        return -1;
    }
    rc = opt_string(jwk, "kty", &kty, msg, msglen);
    if (rc == 0)
        set_err(msg, msglen, "\"kty\" is required");
    if (rc != 1)
        return -1;
    if (strcmp(kty, "RSA") == 0)
        type = JOSE_KTY_RSA;
    else if (strcmp(kty, "EC") == 0)
        type = JOSE_KTY_P256; /* the curve is checked below */
    else if (strcmp(kty, "OKP") == 0)
        type = JOSE_KTY_ED25519;
    else
        return 1; /* oct (a shared secret) and anything newer */

    if (opt_string(jwk, "kid", &kid, msg, msglen) == -1 ||
        opt_string(jwk, "use", &use, msg, msglen) == -1 ||
        opt_string(jwk, "alg", &alg, msg, msglen) == -1)
        return -1;
    if (kid != NULL && (strlen(kid) >= JOSE_CLAIM_MAX || !printable(kid))) {
        set_err(msg, msglen, "\"kid\" must be at most %d printable bytes", JOSE_CLAIM_MAX - 1);
        return -1;
    }
    /* A JWKS is public; a private member means the issuer's signing key has leaked. */
    if (member(jwk, "d", &dup) != NULL || dup) {
        set_err(msg, msglen, "private key material (\"d\") in a public key set");
        return -1;
    }
    ops = member(jwk, "key_ops", &dup);
    if (dup || (ops != NULL && !cJSON_IsArray(ops))) {
        set_err(msg, msglen, "\"key_ops\" must be one array of strings");
        return -1;
    }
    if (use != NULL && strcmp(use, "sig") != 0)
        return 1;
    if (ops != NULL) {
        bool verify = false;
        for (const cJSON *op = ops->child; op != NULL; op = op->next) {
            if (!cJSON_IsString(op) || op->valuestring == NULL) {
                set_err(msg, msglen, "\"key_ops\" must be one array of strings");
                return -1;
            }
            if (strcmp(op->valuestring, "verify") == 0)
                verify = true;
        }
        if (!verify)
            return 1;
    }
    if (alg != NULL) {
        a = alg_from_name(alg);
        if (a == JOSE_ALG_NONE)
            return 1; /* RS512, ES384, RSA-OAEP, ...: not for the algorithms we accept */
        if (!alg_fits_kty(a, type)) {
            set_err(msg, msglen, "\"alg\" %s does not fit \"kty\" %s", alg, kty);
            return -1;
        }
    }
    if (type != JOSE_KTY_RSA) {
        rc = opt_string(jwk, "crv", &crv, msg, msglen);
        if (rc == 0)
            set_err(msg, msglen, "\"crv\" is required for kty %s", kty);
        if (rc != 1)
            return -1;
        if (type == JOSE_KTY_P256 && strcmp(crv, "P-256") != 0)
            return 1; /* P-384, P-521, secp256k1 */
        if (type == JOSE_KTY_ED25519 && strcmp(crv, "Ed25519") != 0)
            return 1; /* Ed448, X25519, X448 */
    }

    if (type == JOSE_KTY_RSA)
        rc = jwk_rsa(jwk, &pkey, msg, msglen);
    else if (type == JOSE_KTY_P256)
        rc = jwk_p256(jwk, &pkey, msg, msglen);
    else
        rc = jwk_ed25519(jwk, &pkey, msg, msglen);
    if (rc != 0)
        return rc;

    *key = calloc(1, sizeof(**key));
    if (*key == NULL) {
        EVP_PKEY_free(pkey);
        set_err(msg, msglen, "out of memory");
        return -1;
    }
    (*key)->kty = type;
    (*key)->alg = a;
    (*key)->pkey = pkey;
    if (kid != NULL) {
        (*key)->has_kid = true;
        memcpy((*key)->kid, kid, strlen(kid) + 1);
    }
    return 0;
}

void jose_keyset_free(struct jose_keyset *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->nkeys; i++) {
        if (ks->keys[i] != NULL)
            EVP_PKEY_free(ks->keys[i]->pkey);
        free(ks->keys[i]);
    }
    free(ks->keys);
    ks->keys = NULL;
    ks->nkeys = 0;
}

int jose_jwks_parse(const char *json, size_t len, struct jose_keyset *out, char *err, size_t errlen)
{
    struct jose_keyset ks = {NULL, 0};
    cJSON *root = NULL;
    const cJSON *keys;
    char msg[160];
    bool dup = false;
    size_t n = 0, i = 0;
    int rc = -1;

    out->keys = NULL;
    out->nkeys = 0;
    ERR_set_mark();
    if (json == NULL) {
        set_err(err, errlen, "JWKS: no document");
        goto out;
    }
    if (len > JOSE_MAX_JWKS_BYTES) {
        set_err(err, errlen, "JWKS: larger than %u bytes", (unsigned)JOSE_MAX_JWKS_BYTES);
        goto out;
    }
    root = parse_json(json, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        set_err(err, errlen, "JWKS: not a JSON object (or contains NUL or \\u0000)");
        goto out;
    }
    keys = member(root, "keys", &dup);
    if (dup || !cJSON_IsArray(keys)) {
        set_err(err, errlen, "JWKS: \"keys\" must be one array");
        goto out;
    }
    for (const cJSON *it = keys->child; it != NULL; it = it->next)
        if (++n > JOSE_MAX_KEYS) {
            set_err(err, errlen, "JWKS: more than %d keys", JOSE_MAX_KEYS);
            goto out;
        }
    ks.keys = calloc(n > 0 ? n : 1, sizeof(*ks.keys));
    if (ks.keys == NULL) {
        set_err(err, errlen, "JWKS: out of memory");
        goto out;
    }
    for (const cJSON *it = keys->child; it != NULL; it = it->next, i++) {
        struct jose_key *k;
        msg[0] = '\0';
        int r = jwk_parse(it, &k, msg, sizeof(msg));
        if (r == -1) {
            set_err(err, errlen, "JWKS: keys[%zu]: %s", i, msg);
            goto out;
        }
        if (r == 0)
            ks.keys[ks.nkeys++] = k;
    }
    *out = ks;
    ks.keys = NULL;
    ks.nkeys = 0;
    rc = 0;
out:
    jose_keyset_free(&ks);
    cJSON_Delete(root);
    ERR_pop_to_mark(); /* refusals are reported through err, not left in OpenSSL's queue */
    return rc;
}

/* ---- signatures ------------------------------------------------------------------------------ */

/* JWS carries ECDSA signatures as fixed-width R||S (RFC 7518 §3.4); EVP wants DER. */
static unsigned char *es256_to_der(const unsigned char *rs, size_t *derlen)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, JOSE_P256_BYTES, NULL);
    BIGNUM *ss = BN_bin2bn(rs + JOSE_P256_BYTES, JOSE_P256_BYTES, NULL);
    unsigned char *der = NULL;
    int n;

    if (s == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(s, r, ss) != 1)
        goto out;
    r = ss = NULL; /* owned by s now */
    n = i2d_ECDSA_SIG(s, &der);
    if (n <= 0) {
        der = NULL;
        goto out;
    }
    *derlen = (size_t)n;
out:
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(s);
    return der;
}

/* True when sig is alg's signature of msg under key (whose type fits alg). */
static bool verify_signature(const struct jose_key *key, enum jose_alg alg,
                             const unsigned char *msg, size_t msglen, const unsigned char *sig,
                             size_t siglen)
{
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    const char *digest = alg == JOSE_ALG_EDDSA ? NULL : "SHA256";
    bool ok = false;

    ERR_set_mark();
    switch (alg) {
    case JOSE_ALG_RS256:
    case JOSE_ALG_PS256:
        if (siglen != (size_t)EVP_PKEY_get_size(key->pkey))
            goto out;
        break;
    case JOSE_ALG_ES256:
        if (siglen != JOSE_SIG64_SIZE)
            goto out;
        der = es256_to_der(sig, &siglen);
        if (der == NULL)
            goto out;
        sig = der;
        break;
    case JOSE_ALG_EDDSA:
        if (siglen != JOSE_SIG64_SIZE)
            goto out;
        break;
    case JOSE_ALG_NONE:
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit_ex(md, &pctx, digest, NULL, NULL, key->pkey, NULL) != 1)
        goto out;
    if (alg == JOSE_ALG_PS256 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                                  EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
                                  EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1))
        goto out;
    if (alg == JOSE_ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
        goto out;
    ok = EVP_DigestVerify(md, sig, siglen, msg, msglen) == 1;
out:
    EVP_MD_CTX_free(md); /* frees pctx too */
    OPENSSL_free(der);
    ERR_pop_to_mark(); /* a forged signature is an answer, not an error for someone else to find */
    return ok;
}

/* ---- tokens ------------------------------------------------------------------------------- */

static bool key_fits(const struct jose_key *k, enum jose_alg alg)
{
    return alg_fits_kty(alg, k->kty) && (k->alg == JOSE_ALG_NONE || k->alg == alg);
}

/*
 * With a kid: the first key of that kid that fits alg; a kid whose keys all have another type
 * or alg is JOSE_BAD_ALG. Without: the only key in the set that fits alg.
 */
static enum jose_result find_key(const struct jose_keyset *ks, const char *kid, enum jose_alg alg,
                                 const struct jose_key **out)
{
    const struct jose_key *only = NULL;
    bool seen = false;
    size_t fitting = 0;

    for (size_t i = 0; i < ks->nkeys && ks->keys != NULL; i++) {
        const struct jose_key *k = ks->keys[i];
        if (k == NULL)
            continue;
        if (kid != NULL) {
            if (!k->has_kid || strcmp(k->kid, kid) != 0)
                continue;
            seen = true;
            if (key_fits(k, alg)) {
                *out = k;
                return JOSE_OK;
            }
        } else if (key_fits(k, alg)) {
            only = k;
            fitting++;
        }
    }
    if (kid != NULL)
        return seen ? JOSE_BAD_ALG : JOSE_UNKNOWN_KID;
    if (fitting != 1)
        return JOSE_UNKNOWN_KID;
    *out = only;
    return JOSE_OK;
}

/* Checks the protected header and picks the key. */
static enum jose_result check_header(const cJSON *hdr, const struct jose_keyset *ks,
                                     struct jose_claims *claims, enum jose_alg *alg,
                                     const struct jose_key **key)
{
    const cJSON *m;
    bool dup = false;
    const char *kid = NULL;

    if (!cJSON_IsObject(hdr))
        return JOSE_MALFORMED;
    m = member(hdr, "alg", &dup);
    if (dup || !cJSON_IsString(m) || m->valuestring == NULL)
        return JOSE_MALFORMED;
    *alg = alg_from_name(m->valuestring);
    if (*alg == JOSE_ALG_NONE)
        return JOSE_BAD_ALG;

    m = member(hdr, "typ", &dup);
    if (dup)
        return JOSE_MALFORMED;
    if (m != NULL) {
        const char *t = cJSON_IsString(m) ? m->valuestring : NULL;
        if (t == NULL || (strcasecmp(t, "at+jwt") != 0 &&
                          strcasecmp(t, "application/at+jwt") != 0 && strcasecmp(t, "JWT") != 0))
            return JOSE_BAD_TYP;
    }
    /* RFC 7515 §4.1.11: an extension we do not understand must not be ignored. */
    if (member(hdr, "crit", &dup) != NULL || dup)
        return JOSE_MALFORMED;

    m = member(hdr, "kid", &dup);
    if (dup)
        return JOSE_MALFORMED;
    if (m != NULL) {
        if (!cJSON_IsString(m) || m->valuestring == NULL ||
            copy_text(claims->kid, m->valuestring) == -1)
            return JOSE_MALFORMED;
        kid = claims->kid;
    }
    if (ks == NULL)
        return JOSE_UNKNOWN_KID;
    return find_key(ks, kid, *alg, key);
}

/* A NumericDate claim: 0 absent, 1 present (*out), -1 not a finite number in ±2^53 or twice. */
static int numeric_date(const cJSON *obj, const char *name, double *out)
{
    bool dup = false;
    const cJSON *m = member(obj, name, &dup);
    if (dup)
        return -1;
    if (m == NULL)
        return 0;
    if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble) || m->valuedouble > JOSE_MAX_SAFE_INT ||
        m->valuedouble < -JOSE_MAX_SAFE_INT)
        return -1;
    *out = m->valuedouble;
    return 1;
}

/* floor() and ceil() for |v| <= 2^53, without libm. */
static int64_t floor_i64(double v)
{
    int64_t t = (int64_t)v;
    return (double)t > v ? t - 1 : t;
}

static int64_t ceil_i64(double v)
{
    int64_t t = (int64_t)v;
    return (double)t < v ? t + 1 : t;
}

static bool audience_match(const char *aud, const struct jose_policy *p)
{
    for (size_t i = 0; i < p->naudiences; i++) {
        if (p->audiences[i] != NULL && strcmp(aud, p->audiences[i]) == 0)
            return true;
    }
    return false;
}

/* "aud" is one string or an array of strings (every element a string), naming one of ours. */
static enum jose_result check_audience(const cJSON *payload, const struct jose_policy *p)
{
    bool dup = false, match = false;
    const cJSON *aud = member(payload, "aud", &dup);

    if (aud == NULL || p->audiences == NULL)
        return JOSE_BAD_AUDIENCE;
    if (cJSON_IsString(aud) && aud->valuestring != NULL)
        return audience_match(aud->valuestring, p) ? JOSE_OK : JOSE_BAD_AUDIENCE;
    if (!cJSON_IsArray(aud))
        return JOSE_BAD_AUDIENCE;
    for (const cJSON *it = aud->child; it != NULL; it = it->next) {
        if (!cJSON_IsString(it) || it->valuestring == NULL)
            return JOSE_BAD_AUDIENCE;
        match = match || audience_match(it->valuestring, p);
    }
    return match ? JOSE_OK : JOSE_BAD_AUDIENCE;
}

/*
 * A string claim into dst. Returns 1 when copied, 0 when absent, -1 when present but not a
 * printable string of at most JOSE_CLAIM_MAX-1 bytes (or present twice).
 */
static int string_claim(const cJSON *obj, const char *name, char dst[JOSE_CLAIM_MAX])
{
    bool dup = false;
    const cJSON *m = member(obj, name, &dup);
    if (dup)
        return -1;
    if (m == NULL)
        return 0;
    if (!cJSON_IsString(m) || m->valuestring == NULL || copy_text(dst, m->valuestring) == -1)
        return -1;
    return 1;
}

/* RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
static bool scope_char(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static int add_scope(struct jose_claims *c, const char *s, size_t n)
{
    if (n == 0 || n >= JOSE_CLAIM_MAX || c->nscopes >= JOSE_MAX_SCOPES)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!scope_char((unsigned char)s[i]))
            return -1;
    char *dup = malloc(n + 1);
    if (dup == NULL)
        return -1;
    memcpy(dup, s, n);
    dup[n] = '\0';
    c->scopes[c->nscopes++] = dup;
    return 0;
}

/* Splits a space-separated scope string. */
static int add_scope_string(struct jose_claims *c, const char *s)
{
    while (*s != '\0') {
        size_t n;
        if (*s == ' ') {
            s++;
            continue;
        }
        n = strcspn(s, " ");
        if (add_scope(c, s, n) == -1)
            return -1;
        s += n;
    }
    return 0;
}

/*
 * "scope" (RFC 9068: a space-separated string) wins; otherwise "scp" as an array of strings
 * (Okta) or a space-separated string (Entra ID). Neither present: no scopes.
 */
static int collect_scopes(const cJSON *payload, struct jose_claims *c)
{
    bool dup = false;
    const cJSON *m = member(payload, "scope", &dup);
    if (dup)
        return -1;
    if (m != NULL) {
        if (!cJSON_IsString(m) || m->valuestring == NULL)
            return -1;
        return add_scope_string(c, m->valuestring);
    }
    m = member(payload, "scp", &dup);
    if (dup)
        return -1;
    if (m == NULL)
        return 0;
    if (cJSON_IsString(m) && m->valuestring != NULL)
        return add_scope_string(c, m->valuestring);
    if (!cJSON_IsArray(m))
        return -1;
    for (const cJSON *it = m->child; it != NULL; it = it->next) {
        if (!cJSON_IsString(it) || it->valuestring == NULL ||
            add_scope(c, it->valuestring, strlen(it->valuestring)) == -1)
            return -1;
    }
    return 0;
}

/* agent: the configured claim, else "client_id", else the RFC 8693 actor's "sub", else "". */
static int collect_agent(const cJSON *payload, const struct jose_policy *p, char *agent)
{
    bool dup = false;
    const cJSON *act;
    int r;

    if (p->agent_claim != NULL && p->agent_claim[0] != '\0') {
        r = string_claim(payload, p->agent_claim, agent);
        if (r != 0)
            return r == 1 ? 0 : -1;
    }
    r = string_claim(payload, "client_id", agent);
    if (r != 0)
        return r == 1 ? 0 : -1;
    act = member(payload, "act", &dup);
    if (dup || (act != NULL && !cJSON_IsObject(act)))
        return -1;
    if (act != NULL && string_claim(act, "sub", agent) == -1)
        return -1;
    return 0;
}

static enum jose_result check_claims(const cJSON *payload, const struct jose_policy *p,
                                     struct jose_claims *c)
{
    bool dup = false;
    const cJSON *iss;
    double exp = 0, nbf = 0, iat = 0;
    int has_exp, has_nbf, has_iat;
    enum jose_result r;

    if (!cJSON_IsObject(payload))
        return JOSE_MALFORMED;
    iss = member(payload, "iss", &dup);
    if (p->issuer == NULL || !cJSON_IsString(iss) || iss->valuestring == NULL ||
        strcmp(iss->valuestring, p->issuer) != 0)
        return JOSE_BAD_ISSUER;
    r = check_audience(payload, p);
    if (r != JOSE_OK)
        return r;

    has_exp = numeric_date(payload, "exp", &exp);
    has_nbf = numeric_date(payload, "nbf", &nbf);
    has_iat = numeric_date(payload, "iat", &iat);
    if (has_exp == -1 || has_nbf == -1 || has_iat == -1)
        return JOSE_BAD_CLAIMS;
    if (has_exp == 0)
        return JOSE_EXPIRED;
    /* |exp|, |nbf|, |iat| <= 2^53 and leeway < 2^32: none of these sums can overflow. */
    c->exp = floor_i64(exp);
    if (p->now > c->exp + (int64_t)p->leeway_s)
        return JOSE_EXPIRED;
    if (has_nbf == 1 && ceil_i64(nbf) - (int64_t)p->leeway_s > p->now)
        return JOSE_NOT_YET_VALID;
    if (has_iat == 1 && ceil_i64(iat) - (int64_t)p->leeway_s > p->now)
        return JOSE_NOT_YET_VALID;

    if (string_claim(payload, "sub", c->user) != 1 || c->user[0] == '\0')
        return JOSE_BAD_CLAIMS;
    if (p->tenant_claim == NULL || string_claim(payload, p->tenant_claim, c->tenant) != 1 ||
        c->tenant[0] == '\0')
        return JOSE_BAD_CLAIMS;
    if (collect_agent(payload, p, c->agent) == -1)
        return JOSE_BAD_CLAIMS;
    if (collect_scopes(payload, c) == -1)
        return JOSE_BAD_CLAIMS;
    return JOSE_OK;
}

enum jose_result jose_verify(const char *token, size_t len, const struct jose_keyset *ks,
                             const struct jose_policy *policy, struct jose_claims *claims)
{
    enum jose_result r = JOSE_MALFORMED;
    const char *dot1, *dot2;
    unsigned char *hdr = NULL, *body = NULL, *sig = NULL;
    size_t hlen, blen, slen;
    cJSON *hj = NULL, *pj = NULL;
    enum jose_alg alg = JOSE_ALG_NONE;
    const struct jose_key *key = NULL;

    memset(claims, 0, sizeof(*claims));
    if (token == NULL || policy == NULL || len > JOSE_MAX_TOKEN_BYTES)
        goto out;
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        goto out;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        goto out;
    hdr = jose_b64url_decode(token, (size_t)(dot1 - token), &hlen);
    body = jose_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &blen);
    sig = jose_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), &slen);
    if (hdr == NULL || body == NULL || sig == NULL)
        goto out;

    hj = parse_json((const char *)hdr, hlen);
    if (hj == NULL)
        goto out;
    r = check_header(hj, ks, claims, &alg, &key);
    if (r != JOSE_OK)
        goto out;

    /* The signing input is the ASCII of header.payload, exactly as received (RFC 7515 §5.2). */
    if (!verify_signature(key, alg, (const unsigned char *)token, (size_t)(dot2 - token), sig,
                          slen)) {
        r = JOSE_BAD_SIGNATURE;
        goto out;
    }

    pj = parse_json((const char *)body, blen);
    r = pj == NULL ? JOSE_MALFORMED : check_claims(pj, policy, claims);
out:
    if (r != JOSE_OK) {
        char kid[JOSE_CLAIM_MAX];
        memcpy(kid, claims->kid, sizeof(kid));
        jose_claims_free(claims);
        memset(claims, 0, sizeof(*claims));
        memcpy(claims->kid, kid, sizeof(kid)); /* kept for the caller's log line */
    }
    cJSON_Delete(hj);
    cJSON_Delete(pj);
    free(hdr);
    free(body);
    free(sig);
    return r;
}

void jose_claims_free(struct jose_claims *claims)
{
    if (claims == NULL)
        return;
    for (size_t i = 0; i < claims->nscopes && i < JOSE_MAX_SCOPES; i++) {
        free(claims->scopes[i]);
        claims->scopes[i] = NULL;
    }
    claims->nscopes = 0;
}

const char *jose_result_name(enum jose_result r)
{
    switch (r) {
    case JOSE_OK:
        return "ok";
    case JOSE_MALFORMED:
        return "malformed";
    case JOSE_BAD_ALG:
        return "bad_alg";
    case JOSE_UNKNOWN_KID:
        return "unknown_kid";
    case JOSE_BAD_SIGNATURE:
        return "bad_signature";
    case JOSE_BAD_TYP:
        return "bad_typ";
    case JOSE_BAD_ISSUER:
        return "bad_issuer";
    case JOSE_BAD_AUDIENCE:
        return "bad_audience";
    case JOSE_EXPIRED:
        return "expired";
    case JOSE_NOT_YET_VALID:
        return "not_yet_valid";
    case JOSE_BAD_CLAIMS:
        return "bad_claims";
    }
    return "unknown";
}
