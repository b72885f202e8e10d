/*
 * util.c — hex, SHA-256 and clocks; see util.h.
 */
#include "util.h"

#include <openssl/evp.h>
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
