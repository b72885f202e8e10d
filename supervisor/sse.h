/*
 * sse.h — Server-Sent Events: encoding one event, and the bounded per-session replay buffer that
 * serves Last-Event-ID. Pure: no I/O.
 *
 * Event ids are "<stream>-<seq>": unique within a session, and they say which stream broke, so a
 * resumption replays only that stream.
 */
#ifndef MCPVISOR_SSE_H
#define MCPVISOR_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idmap.h"

struct evbuffer;

/* Appends one event. `data` may contain newlines (each becomes its own data: line); a NULL or
 * empty `data` writes an empty data field (a priming event). event and retry_ms are optional
 * (NULL, < 0). Returns 0 or -1. */
int sse_encode(struct evbuffer *out, const char *event, uint64_t stream, uint64_t seq,
               const char *data, size_t len, long retry_ms);

/* Parses "<stream>-<seq>"; -1 when malformed. */
int sse_parse_id(const char *id, uint64_t *stream, uint64_t *seq);

struct sse_event {
    uint64_t stream, seq;
    char *data; /* JSON text, owned */
    size_t len;
};

#define SSE_RING_EVICTED_MAX 4096 /* streams whose evictions are remembered exactly */

struct sse_ring {
    struct sse_event *ev;
    struct idmap evicted;  /* stream → 1 + highest seq evicted (values are integers) */
    bool evicted_overflow; /* too many streams to remember: assume every gap */
    size_t cap;            /* max events kept */
    size_t max_bytes;      /* max data bytes kept */
    size_t head, count, bytes;
};

int sse_ring_init(struct sse_ring *r, size_t cap, size_t max_bytes);
void sse_ring_free(struct sse_ring *r);
/* Stores a copy of data; evicts the oldest events to stay under both ceilings. An event larger
 * than max_bytes is not kept (a resumption then cannot replay it). Returns 0 or -1. */
int sse_ring_push(struct sse_ring *r, uint64_t stream, uint64_t seq, const char *data, size_t len);
/*
 * Calls fn for each kept event of `stream` with seq > after, oldest first. Returns -1 when events
 * of that stream after `after` were already evicted (the gap cannot be filled), else 0.
 */
int sse_ring_replay(const struct sse_ring *r, uint64_t stream, uint64_t after,
                    void (*fn)(void *arg, const struct sse_event *ev), void *arg);

#endif
