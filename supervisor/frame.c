/*
 * frame.c — line framing. evbuffer_search_eol scans only the new bytes' chains; the line is
 * copied out once, into the buffer that the JSON parser then reads in place.
 */
#include "frame.h"

#include <event2/buffer.h>
#include <stdlib.h>

enum frame_result frame_next(struct evbuffer *in, size_t max, char **line, size_t *len)
{
    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        if (p.pos < 0) {
            if (evbuffer_get_length(in) > max)
                return FRAME_OVERSIZE;
            return FRAME_NONE;
        }
        size_t n = (size_t)p.pos;
        if (n > max) {
            /* max counts the line without its terminator, CRLF included */
            char last = 0;
            struct evbuffer_ptr q;
            if (n != max + 1 || evbuffer_ptr_set(in, &q, n - 1, EVBUFFER_PTR_SET) == -1 ||
                evbuffer_copyout_from(in, &q, &last, 1) != 1 || last != '\r')
                return FRAME_OVERSIZE;
        }
        if (n == 0 || (n == 1 && *(char *)evbuffer_pullup(in, 1) == '\r')) {
            evbuffer_drain(in, n + eol_len);
            continue;
        }
        char *buf = malloc(n + 1);
        if (buf == NULL)
            return FRAME_NONE; /* retried on the next read */
        evbuffer_remove(in, buf, n);
        evbuffer_drain(in, eol_len);
        if (buf[n - 1] == '\r')
            n--;
        buf[n] = '\0';
        *line = buf;
        *len = n;
        return FRAME_LINE;
    }
}
