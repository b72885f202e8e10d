/*
 * fuzz_httphead.c — HTTP/1.1 request heads (httpd.c's httpd_parse_head), the first bytes any
 * client sends. The connection code around it needs sockets and the event loop and is left to
 * the integration tests.
 *
 * The input, ended with CRLF CRLF when it is not already, is parsed as a request head. Beyond
 * memory errors it checks that an accepted head yields what the rest of the daemon trusts:
 * a known method, a path, names and values without CR, LF or NUL (nothing can be smuggled into
 * a header we copy or log), at most HTTPD_MAX_FIELDS fields, and a Content-Length that is not
 * negative unless absent; and that every refusal says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

static void clean(const char *s)
{
    if (s == NULL)
        abort();
    for (; *s != '\0'; s++)
        if (*s == '\r' || *s == '\n')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool ended = size >= 4 && memcmp(data + size - 4, "\r\n\r\n", 4) == 0;
    size_t len = size + (ended ? 0 : 4);
    char *head = malloc(len + 1);
    struct hhead h;
    const char *why = NULL;

    if (head == NULL)
        return 0;
    memcpy(head, data, size);
    if (!ended)
        memcpy(head + size, "\r\n\r\n", 4);
    head[len] = '\0';
    int status = httpd_parse_head(head, len, &h, &why);
    if (status != 0) {
        if (why == NULL ||
            (status != 400 && status != 417 && status != 431 && status != 501 && status != 505))
            abort();
    } else {
        if (h.method < HM_GET || h.method > HM_PATCH || h.nf > HTTPD_MAX_FIELDS ||
            h.content_length < -1)
            abort();
        clean(h.path);
        if (h.query != NULL)
            clean(h.query);
        for (size_t i = 0; i < h.nf; i++) {
            clean(h.f[i].name);
            clean(h.f[i].value);
            if (h.f[i].name[0] == '\0')
                abort();
        }
    }
    free(head);
    return 0;
}
