/*
 * auth.c — API-key authentication. Keys are stored as SHA-256 digests only; the presented key is
 * hashed and compared against every record with CRYPTO_memcmp.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>

void auth_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        memset(out, 0, 32); /* cannot happen with the built-in provider; never matches a key */
}

void auth_hex(const uint8_t *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

enum auth_result auth_authenticate(const struct config *cfg, const char *authorization,
                                   const struct config_principal **out)
{
    *out = NULL;
    if (authorization == NULL) {
        if (cfg->has_anonymous) {
            *out = &cfg->anonymous;
            return AUTH_OK;
        }
        return AUTH_MISSING;
    }
    /* RFC 6750: the scheme is case-insensitive; exactly one space, then the token. */
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return AUTH_INVALID;
    const char *token = authorization + 7;
    size_t len = strlen(token);
    if (len == 0 || len > AUTH_MAX_TOKEN_BYTES)
        return AUTH_INVALID;

    uint8_t digest[32];
    auth_sha256(token, len, digest);
    const struct config_principal *found = NULL;
    for (size_t i = 0; i < cfg->napi_keys; i++) {
        if (CRYPTO_memcmp(digest, cfg->api_keys[i].sha256, 32) == 0 && found == NULL)
            found = &cfg->api_keys[i].principal;
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    if (found == NULL)
        return AUTH_INVALID;
    *out = found;
    return AUTH_OK;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

bool auth_same_principal(const struct config_principal *a, const struct config_principal *b)
{
    if (a == b)
        return true;
    return str_eq(a->tenant, b->tenant) && str_eq(a->user, b->user) && str_eq(a->agent, b->agent);
}

int auth_keygen(char *out, size_t outlen)
{
    uint8_t raw[32];
    unsigned char b64[64];
    size_t plen = strlen(AUTH_KEY_PREFIX);
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    int n = EVP_EncodeBlock(b64, raw, sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    if (n <= 0)
        return -1;
    /* base64 → base64url without padding */
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (b64[i] == '=')
            break;
        b64[k++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    }
    if (plen + k + 1 > outlen)
        return -1;
    memcpy(out, AUTH_KEY_PREFIX, plen);
    memcpy(out + plen, b64, k);
    out[plen + k] = '\0';
    OPENSSL_cleanse(b64, sizeof(b64));
    return 0;
}
