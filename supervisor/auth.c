/*
 * auth.c — API keys, JWT access tokens and the anonymous principal, and per-tool scopes.
 *
 * API keys are compared as SHA-256 digests with CRYPTO_memcmp, against every record, so timing
 * says nothing about which key nearly matched. JWTs are verified by jose.c against the JWKS;
 * their audience must name this resource (RFC 8707), so a token minted for another service is
 * refused even when the same authorization server signed it.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jose.h"
#include "jwks.h"
#include "util.h"

void principal_free(struct principal *p)
{
    if (p == NULL)
        return;
    free(p->tenant);
    free(p->user);
    free(p->agent);
    for (size_t i = 0; i < p->nscopes; i++)
        free(p->scopes[i]);
    free(p->scopes);
    free(p);
}

static struct principal *principal_make(enum principal_kind kind, const char *tenant,
                                        const char *user, const char *agent, char *const *scopes,
                                        size_t nscopes)
{
    struct principal *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->kind = kind;
    p->tenant = strdup(tenant);
    p->user = strdup(user != NULL ? user : "");
    p->agent = strdup(agent != NULL ? agent : "");
    p->scopes = nscopes > 0 ? calloc(nscopes, sizeof(char *)) : NULL;
    if (p->tenant == NULL || p->user == NULL || p->agent == NULL ||
        (nscopes > 0 && p->scopes == NULL))
        goto fail;
    for (size_t i = 0; i < nscopes; i++) {
        p->scopes[i] = strdup(scopes[i]);
        if (p->scopes[i] == NULL)
            goto fail;
        p->nscopes++;
    }
    snprintf(p->token_id, sizeof(p->token_id), "-");
    return p;
fail:
    principal_free(p);
    return NULL;
}

struct principal *principal_dup(const struct principal *p)
{
    struct principal *d =
        principal_make(p->kind, p->tenant, p->user, p->agent, p->scopes, p->nscopes);
    if (d != NULL) {
        d->exp = p->exp;
        memcpy(d->token_id, p->token_id, sizeof(d->token_id));
    }
    return d;
}

bool auth_same_principal(const struct principal *a, const struct principal *b)
{
    /* An API key's labels are the operator's and a JWT's sub and tenant claims the issuer's:
     * equal text does not make them one caller. */
    return a->kind == b->kind && strcmp(a->tenant, b->tenant) == 0 &&
           strcmp(a->user, b->user) == 0 && strcmp(a->agent, b->agent) == 0;
}

bool principal_has_scope(const struct principal *p, const char *scope)
{
    for (size_t i = 0; i < p->nscopes; i++) {
        if (strcmp(p->scopes[i], scope) == 0)
            return true;
    }
    return false;
}

static void set_why(char *why, size_t whylen, const char *s)
{
    if (whylen > 0)
        snprintf(why, whylen, "%s", s);
}

static enum auth_result auth_jwt(const struct config *cfg, const struct jwks *jwks,
                                 const char *token, size_t len, const char *server, int64_t now,
                                 struct principal **out, char *why, size_t whylen)
{
    char per_server[1024];
    const char *auds[2] = {cfg->jwt_audience, NULL};
    size_t naud = 1;
    if (server != NULL) {
        size_t n = strlen(cfg->jwt_audience);
        while (n > 0 && cfg->jwt_audience[n - 1] == '/')
            n--;
        int w = snprintf(per_server, sizeof(per_server), "%.*s/servers/%s/mcp", (int)n,
                         cfg->jwt_audience, server);
        if (w > 0 && (size_t)w < sizeof(per_server))
            auds[naud++] = per_server;
    }
    struct jose_policy pol = {
        .issuer = cfg->jwt_issuer,
        .audiences = auds,
        .naudiences = naud,
        .tenant_claim = cfg->jwt_claim_tenant,
        .agent_claim = cfg->jwt_claim_agent,
        .now = now,
        .leeway_s = cfg->jwt_leeway_s,
    };
    struct jose_claims claims;
    const struct jose_keyset *ks = jwks != NULL ? jwks_keys(jwks) : NULL;
    struct jose_keyset empty = {NULL, 0};
    enum jose_result r = jose_verify(token, len, ks != NULL ? ks : &empty, &pol, &claims);
    if (r == JOSE_UNKNOWN_KID) {
        set_why(why, whylen, "unknown_kid");
        return AUTH_RETRY;
    }
    if (r != JOSE_OK) {
        set_why(why, whylen, jose_result_name(r));
        return AUTH_INVALID;
    }
    struct principal *p = principal_make(PRINCIPAL_JWT, claims.tenant, claims.user, claims.agent,
                                         claims.scopes, claims.nscopes);
    int64_t exp = claims.exp;
    jose_claims_free(&claims);
    if (p == NULL) {
        set_why(why, whylen, "out_of_memory");
        return AUTH_INVALID;
    }
    p->exp = exp;
    *out = p;
    return AUTH_OK;
}

enum auth_result auth_authenticate(const struct config *cfg, const struct jwks *jwks,
                                   const char *authorization, const char *server, int64_t now,
                                   struct principal **out, char *why, size_t whylen)
{
    const struct config_principal *cp = NULL;
    *out = NULL;
    set_why(why, whylen, "");
    if (authorization == NULL) {
        if (!cfg->has_anonymous) {
            set_why(why, whylen, "missing");
            return AUTH_MISSING;
        }
        cp = &cfg->anonymous;
        *out = principal_make(PRINCIPAL_ANONYMOUS, cp->tenant, cp->user, cp->agent, cp->scopes,
                              cp->nscopes);
        return *out != NULL ? AUTH_OK : AUTH_INVALID;
    }
    /* RFC 6750: the scheme is case-insensitive; exactly one space, then the token. */
    if (strncasecmp(authorization, "Bearer ", 7) != 0) {
        set_why(why, whylen, "not_bearer");
        return AUTH_INVALID;
    }
    const char *token = authorization + 7;
    size_t len = strlen(token);
    if (len == 0 || len > AUTH_MAX_TOKEN_BYTES) {
        set_why(why, whylen, len == 0 ? "empty" : "too_long");
        return AUTH_INVALID;
    }
    uint8_t digest[UTIL_SHA256_LEN];
    char hex[17];
    (void)util_sha256(token, len, digest); /* failed: all zeros, which matches no key */
    util_hex(digest, 8, hex);

    /* A JWT has exactly two dots; an API key has none. */
    const char *dot1 = memchr(token, '.', len);
    if (cfg->has_jwt && dot1 != NULL) {
        OPENSSL_cleanse(digest, sizeof(digest));
        enum auth_result r = auth_jwt(cfg, jwks, token, len, server, now, out, why, whylen);
        if (r == AUTH_OK)
            memcpy((*out)->token_id, hex, sizeof((*out)->token_id));
        return r;
    }
    for (size_t i = 0; i < cfg->napi_keys; i++) {
        if (CRYPTO_memcmp(digest, cfg->api_keys[i].sha256, 32) == 0 && cp == NULL)
            cp = &cfg->api_keys[i].principal;
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    if (cp == NULL) {
        set_why(why, whylen, "unknown_key");
        return AUTH_INVALID;
    }
    *out =
        principal_make(PRINCIPAL_API_KEY, cp->tenant, cp->user, cp->agent, cp->scopes, cp->nscopes);
    if (*out == NULL)
        return AUTH_INVALID;
    memcpy((*out)->token_id, hex, sizeof((*out)->token_id));
    return AUTH_OK;
}

bool auth_tool_allowed(const struct config_tool *t, const struct principal *p)
{
    for (size_t i = 0; i < t->nscopes; i++) {
        if (!principal_has_scope(p, t->scopes[i]))
            return false;
    }
    return true;
}

const struct config_tool *auth_tool_forbidden(const struct config_manifest *m,
                                              const struct principal *p, const cJSON *msg,
                                              const char **tool_name)
{
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    *tool_name = NULL;
    if (!cJSON_IsString(method) || strcmp(method->valuestring, "tools/call") != 0)
        return NULL;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
    if (!cJSON_IsString(name))
        return NULL; /* the server answers a malformed call itself */
    *tool_name = name->valuestring;
    const struct config_tool *t = config_tool_find(m, name->valuestring);
    return t != NULL && !auth_tool_allowed(t, p) ? t : NULL;
}

size_t auth_filter_tools(const struct config_manifest *m, const struct principal *p, cJSON *result)
{
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
    size_t removed = 0;
    if (!cJSON_IsArray(tools))
        return 0;
    cJSON *it = tools->child;
    while (it != NULL) {
        cJSON *next = it->next;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const struct config_tool *t =
            cJSON_IsString(name) ? config_tool_find(m, name->valuestring) : NULL;
        if (t != NULL && !auth_tool_allowed(t, p)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(tools, it));
            removed++;
        }
        it = next;
    }
    return removed;
}

/* Appends whole scopes, skipping duplicates; a scope that does not fit is left out, never cut. */
static void scopes_append(char *out, size_t outlen, size_t *pos, char *const *scopes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(scopes[i]);
        const char *hay = out;
        bool dup = false;
        while (sl > 0 && (hay = strstr(hay, scopes[i])) != NULL) {
            if ((hay == out || hay[-1] == ' ') && (hay[sl] == ' ' || hay[sl] == '\0')) {
                dup = true;
                break;
            }
            hay += sl;
        }
        size_t need = sl + (*pos > 0 ? 1 : 0);
        if (dup || sl == 0 || *pos + need + 1 > outlen)
            continue;
        if (*pos > 0)
            out[(*pos)++] = ' ';
        memcpy(out + *pos, scopes[i], sl);
        *pos += sl;
        out[*pos] = '\0';
    }
}

void auth_scope_string(const struct config_manifest *m, const struct config_tool *t, char *out,
                       size_t outlen)
{
    size_t pos = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    if (t != NULL) {
        scopes_append(out, outlen, &pos, t->scopes, t->nscopes);
        return;
    }
    for (size_t i = 0; m != NULL && i < m->ntools; i++)
        scopes_append(out, outlen, &pos, m->tools[i].scopes, m->tools[i].nscopes);
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
