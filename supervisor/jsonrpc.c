/*
 * jsonrpc.c — message classification and error construction.
 */
#include "jsonrpc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstrict.h"
#include "util.h"
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

cJSON *jsonrpc_swap_id(cJSON *msg, cJSON *id)
{
    cJSON *old = cJSON_DetachItemFromObjectCaseSensitive(msg, "id");
    if (id != NULL)
        cJSON_AddItemToObject(msg, "id", id);
    return old;
}

/* Skips one JSON value starting at text[i] (already known to be well-formed); returns the index
 * just past it. */
static size_t skip_value(const char *t, size_t len, size_t i)
{
    if (i >= len)
        return len;
    if (t[i] == '"') {
        for (i++; i < len; i++) {
            if (t[i] == '\\')
                i++;
            else if (t[i] == '"')
                return i + 1;
        }
        return len;
    }
    if (t[i] == '{' || t[i] == '[') {
        int depth = 0;
        for (; i < len; i++) {
            char c = t[i];
            if (c == '"') {
                i = skip_value(t, len, i) - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
        }
        return len;
    }
    while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\t' &&
           t[i] != '\n' && t[i] != '\r')
        i++;
    return i;
}

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

int jsonrpc_id_span(const char *text, size_t len, size_t *start, size_t *end)
{
    size_t i = skip_ws(text, len, 0);
    int found = 0;
    if (i >= len || text[i] != '{')
        return -1;
    i++;
    for (;;) {
        i = skip_ws(text, len, i);
        if (i >= len || text[i] == '}')
            break;
        if (text[i] != '"')
            return -1;
        size_t kstart = i;
        i = skip_value(text, len, i);
        bool is_id = i - kstart == 4 && memcmp(text + kstart, "\"id\"", 4) == 0;
        /* An escaped key that decodes to "id" cannot be located safely: give up. */
        if (!is_id && memchr(text + kstart, '\\', i - kstart) != NULL)
            return -1;
        i = skip_ws(text, len, i);
        if (i >= len || text[i] != ':')
            return -1;
        i = skip_ws(text, len, i + 1);
        size_t vstart = i;
        i = skip_value(text, len, i);
        if (is_id) {
            if (found++)
                return -1; /* duplicate keys: let the parser's view win */
            *start = vstart;
            *end = i;
        }
        i = skip_ws(text, len, i);
        if (i < len && text[i] == ',')
            i++;
    }
    return found == 1 ? 0 : -1;
}

char *jsonrpc_splice(const char *text, size_t len, size_t start, size_t end, const char *ins,
                     size_t inslen, size_t *outlen)
{
    size_t n = start + inslen + (len - end);
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, text, start);
    memcpy(out + start, ins, inslen);
    memcpy(out + start + inslen, text + end, len - end);
    out[n] = '\0';
    *outlen = n;
    return out;
}

bool jsonrpc_broker_id(const cJSON *id, uint64_t *out)
{
    if (!cJSON_IsNumber(id) || !(id->valuedouble >= 1 && id->valuedouble <= 9007199254740992.0))
        return false;
    *out = (uint64_t)id->valuedouble;
    return (double)*out == id->valuedouble;
}

char *jsonrpc_id_text(const cJSON *id)
{
    if (cJSON_IsNumber(id)) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%.0f", id->valuedouble);
        return strdup(buf);
    }
    return cJSON_PrintUnformatted(id);
}

/* Decodes one UTF-8 sequence at p (n bytes left): the code point and its length, or -1. */
static long utf8_one(const unsigned char *p, size_t n, size_t *used)
{
    unsigned long cp;
    size_t k;
    if (p[0] < 0xc2 || p[0] > 0xf4)
        return -1;
    k = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
    if (n < k)
        return -1;
    cp = p[0] & (k == 2 ? 0x1f : k == 3 ? 0x0f : 0x07);
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *used = k;
    return (long)cp;
}

char *jsonrpc_ascii(const char *text, size_t len, size_t *outlen)
{
    if (len > (SIZE_MAX - 1) / 6)
        return NULL;
    char *out = malloc(len * 6 + 1); /* a byte becomes at most \uXXXX */
    size_t o = 0;
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x7f) {
            out[o++] = (char)p[i++];
            continue;
        }
        size_t used = 1;
        long cp = p[i] == 0x7f ? 0x7f : utf8_one(p + i, len - i, &used);
        if (cp < 0) {
            cp = 0xfffd;
            used = 1;
        }
        if (cp > 0xffff) {
            unsigned long v = (unsigned long)cp - 0x10000;
            o += (size_t)snprintf(out + o, 13, "\\u%04lx\\u%04lx", 0xd800 + (v >> 10),
                                  0xdc00 + (v & 0x3ff));
        } else {
            o += (size_t)snprintf(out + o, 7, "\\u%04lx", (unsigned long)cp);
        }
        i += used;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* A \u0000 escape anywhere: backslashes occur only inside strings in a strict JSON text, and
 * each escapes the character after it (a raw NUL byte never passes jsonstrict_check). */
static bool has_nul_escape(const char *t, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (t[i] != '\\')
            continue;
        if (t[i + 1] == 'u' && i + 5 < len && t[i + 2] == '0' && t[i + 3] == '0' &&
            t[i + 4] == '0' && t[i + 5] == '0')
            return true;
        i++; /* the escaped character */
    }
    return false;
}

/* What passes the strict check is never too deep for cJSON. */
_Static_assert(JSONSTRICT_MAX_DEPTH <= CJSON_NESTING_LIMIT, "strict depth above cJSON's limit");

cJSON *jsonrpc_parse(const char *text, size_t len, const char **problem, size_t *at)
{
    struct jsonstrict_error bad;
    *problem = NULL;
    *at = 0;
    if (jsonstrict_check(text, len, &bad) == -1) {
        *problem = bad.what;
        *at = bad.offset;
        return NULL;
    }
    cJSON *v = cJSON_ParseWithLength(text, len);
    if (v == NULL)
        return NULL;
    const cJSON *dup;
    if (has_nul_escape(text, len))
        *problem = "a NUL character (\\u0000) in a string";
    else if (util_find_duplicate(v, &dup) != 0) /* or out of memory: fail closed */
        *problem = "an object naming a member twice";
    return v;
}
