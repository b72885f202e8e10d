/*
 * jwks.h — the JWT verification keys: loaded from auth.jwt.jwks_file, or fetched from
 * auth.jwt.jwks_url with libevent's HTTP client (HTTPS with the certificate and host name
 * verified; plain HTTP only to loopback), cached, refreshed on a schedule and when a token names
 * a key we do not have — at most once per JWKS_MIN_REFRESH_S, so a flood of made-up kids cannot
 * make mcpvisor hammer the identity provider.
 */
#ifndef MCPVISOR_JWKS_H
#define MCPVISOR_JWKS_H

#include "config.h"
#include "jose.h"

#define JWKS_REFRESH_S       900 /* scheduled refresh */
#define JWKS_RETRY_S         30  /* after a failed fetch */
#define JWKS_MIN_REFRESH_S   30  /* at most one unknown-kid refresh per this many seconds */
#define JWKS_FETCH_TIMEOUT_S 10
#define JWKS_MAX_WAITERS     1024 /* requests parked on one fetch */

struct event_base;
struct jwks;

/* NULL when cfg has no auth.jwt. Starts the first fetch for a URL. */
struct jwks *jwks_new(struct event_base *base, const struct config *cfg);
void jwks_free(struct jwks *j);

/* SIGHUP: replaces file-based keys with a new jwks_file's text (already validated). */
void jwks_reload_text(struct jwks *j, const char *text);

/* The current keys (borrowed until the next refresh completes; never NULL). */
const struct jose_keyset *jwks_keys(const struct jwks *j);

/*
 * A token named an unknown key. Starts a refresh unless one ran less than JWKS_MIN_REFRESH_S
 * ago (a fetch in flight is joined). Returns 0 when done(arg) will be called once that fetch
 * ends (whatever its outcome), -1 when no refresh will happen (rate-limited, a file, too many
 * waiters): the caller then refuses the token.
 */
int jwks_refresh(struct jwks *j, void (*done)(void *arg), void *arg);

#endif
