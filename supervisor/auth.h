/*
 * auth.h — who is calling: API keys (and, through the same principal type, the anonymous
 * development principal). The caller's credential is used here and nowhere else: it is hashed,
 * compared, and forgotten; it never reaches a session, a log line or a child.
 */
#ifndef MCPVISOR_AUTH_H
#define MCPVISOR_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define AUTH_MAX_TOKEN_BYTES 4096
#define AUTH_KEY_PREFIX      "mcpv_"

enum auth_result { AUTH_OK = 0, AUTH_MISSING, AUTH_INVALID };

/*
 * Authenticates an Authorization header value (NULL when absent). On AUTH_OK *out points at a
 * principal owned by cfg (borrowed for cfg's lifetime). Every key is compared, in constant time,
 * so timing says nothing about which key nearly matched.
 */
enum auth_result auth_authenticate(const struct config *cfg, const char *authorization,
                                   const struct config_principal **out);

/* True when both principals are the same caller (same tenant, user and agent). */
bool auth_same_principal(const struct config_principal *a, const struct config_principal *b);

void auth_sha256(const void *data, size_t len, uint8_t out[32]);
void auth_hex(const uint8_t *in, size_t len, char *out); /* out: 2*len+1 bytes */

/* Makes a new random API key (NUL-terminated, AUTH_KEY_PREFIX + 43 base64url characters). */
int auth_keygen(char *out, size_t outlen);

#endif
