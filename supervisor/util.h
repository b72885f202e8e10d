/*
 * util.h — the small primitives every module once wrote for itself: lower-case hex, SHA-256 over
 * OpenSSL's EVP, the monotonic and wall clocks, and the search for a member named twice in a
 * parsed JSON value. One copy each, so a fix lands everywhere.
 */
#ifndef MCPVISOR_UTIL_H
#define MCPVISOR_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define UTIL_SHA256_LEN 32 /* bytes of a digest */
#define UTIL_SHA256_HEX 64 /* its hex digits; a buffer needs one more for the NUL */

/* len bytes as 2*len lower-case hex digits and a NUL: out holds 2*len+1 bytes. */
void util_hex(const void *in, size_t len, char *out);
/* The value of one hex digit (either case), or -1. */
int util_hex_digit(int c);

/*
 * SHA-256 of data. Returns 0, or -1 if libcrypto failed (not with its built-in provider): out is
 * then all zeros, a digest no input has, so it matches nothing real.
 */
int util_sha256(const void *data, size_t len, uint8_t out[UTIL_SHA256_LEN]);

/*
 * SHA-256 of data as hex. Returns 0, or -1 if libcrypto failed: out is then 64 'x's, never a
 * digest, so a hash chain or a pin built on it breaks loudly instead of matching.
 */
int util_sha256_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX + 1]);

/* FNV-1a (64 bits) of n strings, each followed by the byte 0xff that no name holds, so ("ab","c")
 * and ("a","bc") differ. A table key, not a digest: callers confirm a hit on the names. */
uint64_t util_fnv1a(const char *const *parts, size_t n);

/* CLOCK_MONOTONIC in milliseconds: for deadlines, rates and latencies. */
int64_t util_mono_ms(void);

/* CLOCK_REALTIME in whole seconds, for token lifetimes. Not time(2): its coarse clock can lag a
 * few milliseconds behind the issuer's, enough to call a fresh token "not yet valid" at a second
 * boundary when leeway_s is 0. */
int64_t util_wall_s(void);

/*
 * Looks for an object, in v or at any depth below it, that names a member twice: cJSON keeps both
 * and answers lookups with the first, while most other parsers keep the last, so such a value
 * means different things to different readers. Objects are checked before what they hold, in
 * document order; within one object the name found is the smallest in byte order. Returns 0 when
 * every name is unique, 1 with *dup one of the two members (its ->string is the name), or -1 when
 * out of memory (callers fail closed).
 */
int util_find_duplicate(const struct cJSON *v, const struct cJSON **dup);

#endif
