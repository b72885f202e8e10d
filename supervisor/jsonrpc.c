/*
 * jsonrpc.c — message classification and error construction.
 */
#include "jsonrpc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"

static bool id_ok(const cJSON *id)
{
    if (cJSON_IsString(id))
        return true;
    if (cJSON_IsNumber(id)) {
        double d = id->valuedouble;
        return isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0;
    }
    return false;
}

enum jsonrpc_kind jsonrpc_classify(const cJSON *msg)
{
    if (!cJSON_IsObject(msg))
        return JSONRPC_INVALID;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "2.0") != 0)
        return JSONRPC_INVALID;
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    if (method != NULL) {
        if (!cJSON_IsString(method) || method->valuestring[0] == '\0')
            return JSONRPC_INVALID;
        if (params != NULL && !cJSON_IsObject(params) && !cJSON_IsArray(params))
            return JSONRPC_INVALID;
        if (cJSON_GetObjectItemCaseSensitive(msg, "result") != NULL ||
            cJSON_GetObjectItemCaseSensitive(msg, "error") != NULL)
            return JSONRPC_INVALID;
        if (id == NULL)
            return JSONRPC_NOTIFICATION;
        return id_ok(id) ? JSONRPC_REQUEST : JSONRPC_INVALID;
    }
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
    if (id == NULL || (result == NULL) == (error == NULL))
        return JSONRPC_INVALID;
    if (error != NULL) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
        if (!cJSON_IsObject(error) || !cJSON_IsNumber(code))
            return JSONRPC_INVALID;
        /* An error response may carry a null id (parse errors). */
        return cJSON_IsNull(id) || id_ok(id) ? JSONRPC_RESPONSE : JSONRPC_INVALID;
    }
    return id_ok(id) ? JSONRPC_RESPONSE : JSONRPC_INVALID;
}

const char *jsonrpc_method(const cJSON *msg)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(msg, "method");
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

cJSON *jsonrpc_error_new(const cJSON *id, int code, const char *message, const char *type,
                         long retry_after_ms)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_CreateObject();
    if (root == NULL || err == NULL)
        goto fail;
    cJSON_AddStringToObject(root, "jsonrpc", "2.0");
    cJSON *idc = id != NULL ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
    if (idc == NULL)
        goto fail;
    cJSON_AddItemToObject(root, "id", idc);
    cJSON_AddNumberToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    if (type != NULL || retry_after_ms >= 0) {
        cJSON *data = cJSON_AddObjectToObject(err, "data");
        if (data == NULL)
            goto fail;
        if (type != NULL)
            cJSON_AddStringToObject(data, "type", type);
        if (retry_after_ms >= 0)
            cJSON_AddNumberToObject(data, "retry_after_ms", (double)retry_after_ms);
        cJSON_AddStringToObject(data, "mcpvisor", MCPVISOR_VERSION);
    }
    cJSON_AddItemToObject(root, "error", err);
    return root;
fail:
    cJSON_Delete(err);
    cJSON_Delete(root);
    return NULL;
}

char *jsonrpc_error_text(const cJSON *id, int code, const char *message, const char *type,
                         long retry_after_ms)
{
    cJSON *e = jsonrpc_error_new(id, code, message, type, retry_after_ms);
    if (e == NULL)
        return NULL;
    char *text = jsonrpc_print(e);
    cJSON_Delete(e);
    return text;
}

char *jsonrpc_print(const cJSON *msg)
{
    /* cJSON_PrintUnformatted uses the hooks' malloc, which is the libc malloc here. */
    return cJSON_PrintUnformatted(msg);
}
