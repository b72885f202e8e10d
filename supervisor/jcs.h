/*
 * jcs.h — RFC 8785 JSON Canonicalization Scheme over cJSON trees, and the pin of a tool
 * definition (SHA-256 of its canonical form). Pure: no I/O, no logging, no global state.
 *
 * Numbers are what cJSON holds: a double (valuedouble). An integer beyond 2^53 in the input text
 * was already rounded to the nearest double by the parser, so it canonicalizes as that double
 * (RFC 8785 §3.2.2.3 expects exactly this: JSON numbers are IEEE 754 binary64).
 */
#ifndef MCPVISOR_JCS_H
#define MCPVISOR_JCS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "util.h"

#define JCS_MAX_DEPTH 64 /* arrays and objects nested deeper than this are refused */
#define JCS_PIN_HEX   (UTIL_SHA256_HEX + 1) /* a SHA-256 in lower-case hex, and the NUL */

/*
 * Canonical JSON text of v (RFC 8785): objects' members sorted by their names' UTF-16 code units,
 * no whitespace, strings with the minimal escapes of §3.2.2.2 (\b \t \n \f \r \" \\, other control
 * characters as \u00xx in lower-case hex, everything else as its UTF-8 bytes), numbers formatted
 * as ECMAScript's Number.prototype.toString (§3.2.2.3; -0 as 0). v is borrowed.
 *
 * Returns a malloc'ed, NUL-terminated string the caller frees, with its length in *len (len may
 * be NULL), or NULL on error: a NaN or infinite number, invalid UTF-8 (overlong, surrogate, beyond
 * U+10FFFF, truncated) in a string or a member name, a raw or invalid cJSON item, nesting deeper
 * than JCS_MAX_DEPTH, or allocation failure. A string holding U+0000 cannot reach us: cJSON's
 * strings are NUL-terminated, so its parser cuts them there.
 */
char *jcs_canonicalize(const cJSON *v, size_t *len);

/*
 * The pin of a tool definition as a server lists it: SHA-256, as 64 lower-case hex digits and a
 * NUL in out, of the JCS of an object holding only those of the members name, title, description,
 * inputSchema, outputSchema and annotations that are present in `tool` (borrowed). Other members
 * (_meta, execution, ...) do not change the pin. Returns 0, or -1 when tool is not an object or a
 * kept member cannot be canonicalized (out is then the empty string).
 */
int jcs_tool_pin(const cJSON *tool, char out[JCS_PIN_HEX]);

#endif
