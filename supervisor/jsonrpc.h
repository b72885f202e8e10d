/*
 * jsonrpc.h — JSON-RPC 2.0 message shapes and mcpvisor's error replies. Pure: no I/O.
 */
#ifndef MCPVISOR_JSONRPC_H
#define MCPVISOR_JSONRPC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "errors.h"

enum jsonrpc_kind {
    JSONRPC_INVALID = 0,
    JSONRPC_REQUEST,      /* method + id */
    JSONRPC_NOTIFICATION, /* method, no id */
    JSONRPC_RESPONSE,     /* id + exactly one of result/error, no method */
};

/* Classifies a parsed message. Ids must be strings or integers (JSON-RPC allows no null id on a
 * request, and MCP forbids it); "jsonrpc" must be "2.0". */
enum jsonrpc_kind jsonrpc_classify(const cJSON *msg);

/* The method name of a request or notification, or NULL. Borrowed. */
const char *jsonrpc_method(const cJSON *msg);

/*
 * A typed error reply for request `id` (may be NULL → "id": null). `type` (may be NULL) becomes
 * data.type, with data.mcpvisor = the version; retry_after_ms >= 0 adds data.retry_after_ms.
 * Returns a malloc'ed JSON text (free with free()) or NULL on allocation failure.
 */
char *jsonrpc_error_text(const cJSON *id, int code, const char *message, const char *type,
                         long retry_after_ms);

/* Same, as a cJSON tree the caller may extend (e.g. data.supported) and must delete. */
cJSON *jsonrpc_error_new(const cJSON *id, int code, const char *message, const char *type,
                         long retry_after_ms);

/*
 * Id rewriting: puts `id` (ownership passes to msg) in place of msg's "id" and returns the old
 * one (owned by the caller; NULL if msg had none). The broker uses it both ways: client id →
 * broker id towards the child, broker id → client id on the answer.
 */
cJSON *jsonrpc_swap_id(cJSON *msg, cJSON *id);

/*
 * Where the top-level "id" member's value lies in a message's text: [*start, *end). Lets the
 * broker splice ids into the original bytes instead of re-serialising a whole message (faster,
 * and lossless: cJSON prints some large integers inexactly). Returns -1 when the text has no
 * plainly written top-level "id" key, or more than one: callers then fall back to printing.
 * The text must already have parsed as a JSON object.
 */
int jsonrpc_id_span(const char *text, size_t len, size_t *start, size_t *end);

/* text[0:start] + ins + text[end:len], malloc'ed and NUL-terminated; *outlen its length. */
char *jsonrpc_splice(const char *text, size_t len, size_t start, size_t end, const char *ins,
                     size_t inslen, size_t *outlen);

/* A canonical text for an id (strings as JSON strings, integers without exponent), for
 * comparing ids and writing them back. malloc'ed; NULL on allocation failure. */
char *jsonrpc_id_text(const cJSON *id);

/* Whether id can be one of the broker's (a positive integer up to 2^53), and its value: anything
 * else (a string, a fraction, 1e999) matches nothing, and is never cast out of range. */
bool jsonrpc_broker_id(const cJSON *id, uint64_t *out);

/*
 * Parses one JSON-RPC message from bytes that another parser (the server's, or the client's)
 * will read too, and says whether the two could disagree. The bytes are judged by
 * jsonstrict_check first (RFC 8259 and I-JSON, number length and nesting ceilings), and bytes it
 * refuses are not parsed: NULL is returned, with *problem naming what is wrong and *at its byte
 * offset. NULL with *problem NULL: cJSON could not build the value (out of memory). Otherwise the
 * parsed value is returned, and *problem is NULL when every parser reads it alike; when it is not,
 * *problem names what could be read differently, and the message must not be forwarded or trusted:
 *   - a \u0000 escape (cJSON's strings end there; the checks would see a shorter string than
 *     the server),
 *   - a member named twice, at any depth (see util_find_duplicate; cJSON would check the first,
 *     most other parsers run the last), or too little memory to tell.
 * *problem is a static string.
 */
cJSON *jsonrpc_parse(const char *text, size_t len, const char **problem, size_t *at);

/*
 * text, a JSON text as cJSON prints it (bytes above 0x7e occur only inside strings), with every
 * such byte written as a \uXXXX escape: UTF-8 decoded, code points above U+FFFF as surrogate
 * pairs, invalid or overlong sequences as U+FFFD, DEL as \u007f. The same JSON value, in plain
 * ASCII, so a file or a terminal showing it cannot be driven by C1 controls. malloc'ed;
 * *outlen its length; NULL on allocation failure or overflow.
 */
char *jsonrpc_ascii(const char *text, size_t len, size_t *outlen);

/* Prints unformatted; malloc'ed, free with free(). */
char *jsonrpc_print(const cJSON *msg);

#endif
