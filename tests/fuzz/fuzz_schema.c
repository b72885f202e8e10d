/*
 * fuzz_schema.c — JSON Schema compilation and validation (jsonschema.c).
 *
 * The input is two JSON texts one after the other: a schema, as a server's tools/list would
 * carry it, and an instance, as a client's arguments would. The schema is compiled; when it
 * compiles, the instance is validated against it. Validation is documented to be bounded
 * (depth, steps, pattern matching), so a slow input here is a bug, caught by -timeout.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *end = NULL;
    char err[512];
    struct jsonschema_error errs[4];

    cJSON *schema = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    if (schema == NULL)
        return 0;
    size_t used = end != NULL ? (size_t)(end - (const char *)data) : size;
    cJSON *instance = cJSON_ParseWithLength((const char *)data + used, size - used);
    struct jsonschema *s = jsonschema_compile(schema, err, sizeof err);
    cJSON_Delete(schema); /* the compiled schema must not refer to it */
    if (s == NULL) {
        if (memchr(err, '\0', sizeof err) == NULL)
            abort();
        cJSON_Delete(instance);
        return 0;
    }
    if (jsonschema_nodes(s) == 0 || jsonschema_nodes(s) > JSONSCHEMA_MAX_NODES)
        abort();
    if (instance != NULL) {
        size_t n = jsonschema_validate(s, instance, errs, 4);
        for (size_t i = 0; i < n && i < 4; i++)
            if (memchr(errs[i].instance, '\0', sizeof errs[i].instance) == NULL ||
                memchr(errs[i].keyword, '\0', sizeof errs[i].keyword) == NULL ||
                memchr(errs[i].message, '\0', sizeof errs[i].message) == NULL)
                abort();
        /* The same answer without room for errors. */
        if (jsonschema_validate(s, instance, NULL, 0) != n)
            abort();
        cJSON_Delete(instance);
    }
    jsonschema_free(s);
    return 0;
}
