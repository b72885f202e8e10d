/*
 * fuzz_jsonrpc.c — JSON-RPC bodies and child lines (jsonrpc.c, frame.c).
 *
 * The input is taken whole as a client's POST body, and cut into lines by frame_next as a
 * child's stdout would be. Each text goes through what the front does with it: jsonrpc_parse,
 * classification, the id's text span and the splice that rewrites it, jsonrpc_ascii. Beyond
 * memory errors it checks that the id span holds exactly the id cJSON read (the bytes go back to
 * the client verbatim) and that splicing another id changes nothing else.
 */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "jsonrpc.h"

#define FUZZ_MAX_LINE 4096

/* a and b print alike (cJSON_Compare holds no number equal to itself when it overflowed to an
 * infinity). */
static bool same(const cJSON *a, const cJSON *b)
{
    char *pa = cJSON_PrintUnformatted(a), *pb = cJSON_PrintUnformatted(b);
    bool eq = pa == NULL || pb == NULL || strcmp(pa, pb) == 0; /* no memory: no verdict */
    free(pa);
    free(pb);
    return eq;
}

static void check_span(const cJSON *msg, const char *text, size_t len)
{
    size_t a, b, outlen;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");

    if (jsonrpc_id_span(text, len, &a, &b) == -1)
        return;
    if (!(a < b && b <= len) || id == NULL)
        abort();
    /* The span is one JSON value, the very id cJSON read. */
    const char *end = NULL;
    cJSON *span = cJSON_ParseWithLengthOpts(text + a, b - a, &end, 0);
    if (span == NULL || end != text + b || !same(span, id))
        abort();
    cJSON_Delete(span);

    char *spliced = jsonrpc_splice(text, len, a, b, "\"x\"", 3, &outlen);
    if (spliced == NULL)
        return;
    if (outlen != len - (b - a) + 3 || spliced[outlen] != '\0')
        abort();
    const char *problem;
    size_t at;
    cJSON *again = jsonrpc_parse(spliced, outlen, &problem, &at);
    if (again == NULL || problem != NULL)
        abort();
    const cJSON *nid = cJSON_GetObjectItemCaseSensitive(again, "id");
    if (!cJSON_IsString(nid) || strcmp(nid->valuestring, "x") != 0)
        abort();
    /* Everything else is as it was. */
    cJSON *a1 = cJSON_Duplicate(msg, true), *a2 = cJSON_Duplicate(again, true);
    if (a1 != NULL && a2 != NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(a1, "id");
        cJSON_DeleteItemFromObjectCaseSensitive(a2, "id");
        if (!same(a1, a2))
            abort();
    }
    cJSON_Delete(a1);
    cJSON_Delete(a2);
    cJSON_Delete(again);
    free(spliced);
}

/* text is exactly len bytes (no terminator), so a read past the end is caught. */
static void one_message(const char *text, size_t len)
{
    const char *problem;
    size_t at;
    cJSON *msg = jsonrpc_parse(text, len, &problem, &at);
    size_t outlen;

    char *ascii = jsonrpc_ascii(text, len, &outlen);
    if (ascii != NULL) {
        for (size_t i = 0; i < outlen; i++)
            if ((unsigned char)ascii[i] > 0x7e)
                abort();
        free(ascii);
    }
    if (msg == NULL)
        return;
    if (problem == NULL && cJSON_IsObject(msg))
        check_span(msg, text, len);

    enum jsonrpc_kind kind = jsonrpc_classify(msg);
    const char *method = jsonrpc_method(msg);
    if ((kind == JSONRPC_REQUEST || kind == JSONRPC_NOTIFICATION) && method == NULL)
        abort();
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (kind == JSONRPC_REQUEST || kind == JSONRPC_RESPONSE) {
        char *t = jsonrpc_id_text(id);
        free(t);
    }
    char *err =
        jsonrpc_error_text(kind == JSONRPC_REQUEST ? id : NULL, -32600, "refused", method, 100);
    free(err);
    if (cJSON_IsObject(msg)) {
        cJSON *old = jsonrpc_swap_id(msg, cJSON_CreateNumber(7));
        cJSON_Delete(old);
        char *printed = jsonrpc_print(msg);
        free(printed);
    }
    cJSON_Delete(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    one_message(copy, size);
    free(copy);

    /* The same bytes as a child's stdout, arriving in two reads. */
    struct evbuffer *in = evbuffer_new();
    if (in == NULL)
        return 0;
    size_t half = size > 0 ? data[0] % (size + 1) : 0;
    for (int part = 0; part < 2; part++) {
        if (part == 0)
            evbuffer_add(in, data, half);
        else
            evbuffer_add(in, data + half, size - half);
        for (;;) {
            char *line;
            size_t len;
            enum frame_result r = frame_next(in, FUZZ_MAX_LINE, &line, &len);
            if (r != FRAME_LINE)
                break;
            if (len == 0 || len > FUZZ_MAX_LINE || line[len] != '\0' ||
                memchr(line, '\n', len) != NULL)
                abort();
            char *exact = malloc(len);
            if (exact != NULL) {
                memcpy(exact, line, len);
                one_message(exact, len);
                free(exact);
            }
            free(line);
        }
    }
    evbuffer_free(in);
    return 0;
}
