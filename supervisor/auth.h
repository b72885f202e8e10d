/*
 * auth.h — who is calling, and what they may do.
 *
 * A caller is authenticated by an API key (stored as its SHA-256 only) or by a JWT access token
 * (auth.jwt: an OAuth 2.1 resource server, RFC 9068 tokens verified against a JWKS), or gets the
 * loopback-only anonymous principal. All three yield the same struct principal.
 *
 * The caller's credential is used here and nowhere else: it is hashed or verified, and
 * forgotten. It never reaches a session, a log line (a hash prefix at most) or a child.
 */
#ifndef MCPVISOR_AUTH_H
#define MCPVISOR_AUTH_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define AUTH_MAX_TOKEN_BYTES 8192
#define AUTH_KEY_PREFIX      "mcpv_"

struct jwks;

enum principal_kind { PRINCIPAL_API_KEY = 0, PRINCIPAL_JWT, PRINCIPAL_ANONYMOUS };

struct principal {
    enum principal_kind kind;
    char *tenant;
    char *user;
    char *agent; /* may be "" */
    char **scopes;
    size_t nscopes;
    int64_t exp;       /* JWT expiry (seconds since the epoch), 0 for none */
    char token_id[17]; /* first 16 hex digits of the credential's SHA-256, for logs; or "-" */
};

enum auth_result {
    AUTH_OK = 0,
    AUTH_MISSING, /* no credential (and no anonymous principal) */
    AUTH_INVALID, /* a credential that does not verify; *why says why */
    AUTH_RETRY,   /* a JWT signed with a key not known yet: refresh the JWKS, then retry once */
};

/*
 * Authenticates an Authorization header value (NULL when absent) at time `now`. On AUTH_OK,
 * *out is a new principal (free with principal_free). `why` receives a short reason on failure
 * (e.g. "expired", "bad_audience"), safe to log and to show the caller.
 * `server` (the endpoint's server name, or NULL) widens the accepted JWT audiences to that
 * server's own resource URI, <audience>/servers/<server>/mcp.
 */
enum auth_result auth_authenticate(const struct config *cfg, const struct jwks *jwks,
                                   const char *authorization, const char *server, int64_t now,
                                   struct principal **out, char *why, size_t whylen);

struct principal *principal_dup(const struct principal *p);
void principal_free(struct principal *p);
/* Same caller: the same kind of credential (an API key, a JWT, anonymous) and the same tenant,
 * user and agent. */
bool auth_same_principal(const struct principal *a, const struct principal *b);
bool principal_has_scope(const struct principal *p, const char *scope);

/* Whether p holds every scope tool t needs. */
bool auth_tool_allowed(const struct config_tool *t, const struct principal *p);
/*
 * Per-tool authorization. For a tools/call request, returns the manifest tool when the caller
 * lacks one of its scopes (NULL when allowed or not a tools/call). *tool_name receives the
 * requested name (borrowed from msg).
 */
const struct config_tool *auth_tool_forbidden(const struct config_manifest *m,
                                              const struct principal *p, const cJSON *msg,
                                              const char **tool_name);
/* Removes from a tools/list result the tools whose scopes the caller lacks. Returns how many. */
size_t auth_filter_tools(const struct config_manifest *m, const struct principal *p, cJSON *result);
/* The space-separated scopes of a tool or of a whole server (all its tools), into out. */
void auth_scope_string(const struct config_manifest *m, const struct config_tool *t, char *out,
                       size_t outlen);

/* Makes a new random API key (NUL-terminated, AUTH_KEY_PREFIX + 43 base64url characters). */
int auth_keygen(char *out, size_t outlen);

#endif
