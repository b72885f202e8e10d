/*
 * jsonrpc.h — JSON-RPC 2.0 message shapes and mcpvisor's error replies. Pure: no I/O.
 */
#ifndef MCPVISOR_JSONRPC_H
#define MCPVISOR_JSONRPC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
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

/* Prints unformatted; malloc'ed, free with free(). */
char *jsonrpc_print(const cJSON *msg);

#endif
