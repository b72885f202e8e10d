/*
 * strbuf.h — a growable, always NUL-terminated byte string for code that builds text (canonical
 * JSON, translated patterns). Failure is sticky: after an allocation failure or a size overflow
 * every put is a no-op and `failed` is set; the caller checks once at the end and frees p.
 */
#ifndef MCPVISOR_STRBUF_H
#define MCPVISOR_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p; /* owned by the caller: free(p) */
    size_t len, cap;
    bool failed;
};

void strbuf_put(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_putc(struct strbuf *b, char c);

#endif
