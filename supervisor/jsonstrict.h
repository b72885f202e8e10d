/*
 * jsonstrict.h — whether bytes are one JSON text that every conforming parser reads alike:
 * RFC 8259's grammar under I-JSON's restrictions (RFC 7493), with ceilings on nesting and on the
 * length of a number. Pure: no I/O, no allocation, no global state.
 */
#ifndef MCPVISOR_JSONSTRICT_H
#define MCPVISOR_JSONSTRICT_H

#include <stddef.h>

/* Characters in one number literal, sign, fraction and exponent included. RFC 8259 sets no
 * bound; a double holds 17 significant digits, and a literal of 50,000 digits only makes every
 * reader after us pay for it (or read it differently: big-number parsers keep the digits). */
#define JSONSTRICT_MAX_NUMBER_CHARS 1000

/* Arrays and objects open at once. cJSON's own ceiling (CJSON_NESTING_LIMIT): what passes here
 * is never refused by cJSON for its depth. */
#define JSONSTRICT_MAX_DEPTH 1000

struct jsonstrict_error {
    size_t offset;    /* of the first byte that breaks the rule (a token's or sequence's start) */
    const char *what; /* static text naming what is wrong, e.g. "a number with a leading zero" */
};

/*
 * Returns 0 when text[0:len] is exactly one JSON value with only whitespace around it, and
 * -1 with *err filled otherwise. Refused, beyond RFC 8259's grammar (leading zeros, "+1", ".5",
 * NaN, unquoted names, single quotes, trailing commas, comments, data after the value, ...):
 *   - whitespace other than space, tab, LF and CR; a byte order mark;
 *   - in strings: a raw control character (U+0000..U+001F), an escape other than \" \\ \/ \b
 *     \f \n \r \t \uXXXX, bytes that are not UTF-8 (overlong forms, surrogates encoded
 *     directly, code points above U+10FFFF, truncated sequences, stray continuation bytes);
 *   - I-JSON (RFC 7493 §2.1): a \u escape of a UTF-16 surrogate that is not a high one followed
 *     by a low one, and Unicode noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF) written
 *     directly or escaped;
 *   - a number literal over JSONSTRICT_MAX_NUMBER_CHARS characters, and nesting deeper than
 *     JSONSTRICT_MAX_DEPTH.
 * A number's magnitude is not judged (1e999 follows the grammar), nor are member names compared
 * (util_find_duplicate does that on the parsed tree), nor is \u0000 refused (it is a valid
 * string character; jsonrpc_parse refuses it for cJSON's sake). text need not be NUL-terminated.
 */
int jsonstrict_check(const char *text, size_t len, struct jsonstrict_error *err);

#endif
