/*
 * frame.h — newline-delimited framing of a child's stdout, with a ceiling per line.
 */
#ifndef MCPVISOR_FRAME_H
#define MCPVISOR_FRAME_H

#include <stddef.h>

struct evbuffer;

enum frame_result {
    FRAME_NONE = 0, /* no complete line buffered yet */
    FRAME_LINE,     /* *line (malloc'ed, NUL-terminated, without "\n" or "\r\n") */
    FRAME_OVERSIZE, /* the buffered line already exceeds max bytes: the peer misbehaves */
};

/* Takes the next line out of `in`. Empty lines are skipped. */
enum frame_result frame_next(struct evbuffer *in, size_t max, char **line, size_t *len);

#endif
