/*
 * util.c — hex, SHA-256, clocks and the repeated-name search; see util.h.
 */
#include "util.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void util_hex(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = in;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
}

int util_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int util_sha256(const void *data, size_t len, uint8_t out[UTIL_SHA256_LEN])
{
    unsigned int n = 0;

    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != UTIL_SHA256_LEN) {
        memset(out, 0, UTIL_SHA256_LEN);
        return -1;
    }
    return 0;
}

int util_sha256_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX + 1])
{
    uint8_t md[UTIL_SHA256_LEN];

    if (util_sha256(data, len, md) == -1) {
        memset(out, 'x', UTIL_SHA256_HEX);
        out[UTIL_SHA256_HEX] = '\0';
        return -1;
    }
    util_hex(md, sizeof md, out);
    return 0;
}

uint64_t util_fnv1a(const char *const *parts, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *q = (const unsigned char *)parts[i]; *q != '\0'; q++)
            h = (h ^ *q) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    return h;
}

int64_t util_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static int cmp_names(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;

    return strcmp(x->string != NULL ? x->string : "", y->string != NULL ? y->string : "");
}

int util_find_duplicate(const cJSON *v, const cJSON **dup)
{
    const cJSON *it;
    size_t n = 0;

    *dup = NULL;
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
        return 0;
    for (it = v->child; it != NULL; it = it->next)
        n++;
    if (cJSON_IsObject(v) && n > 1) {
        const cJSON **sorted = malloc(n * sizeof *sorted);
        size_t i = 0;

        if (sorted == NULL)
            return -1;
        for (it = v->child; it != NULL; it = it->next)
            sorted[i++] = it;
        qsort(sorted, n, sizeof *sorted, cmp_names);
        for (i = 1; i < n && *dup == NULL; i++) {
            if (cmp_names(&sorted[i - 1], &sorted[i]) == 0)
                *dup = sorted[i];
        }
        free(sorted);
        if (*dup != NULL)
            return 1;
    }
    for (it = v->child; it != NULL; it = it->next) {
        int rc = util_find_duplicate(it, dup);
        if (rc != 0)
            return rc;
    }
    return 0;
}
