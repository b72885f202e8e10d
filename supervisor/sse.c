/*
 * sse.c — SSE framing (WHATWG HTML, "server-sent events") and the replay ring.
 */
#include "sse.h"

#include <errno.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sse_encode(struct evbuffer *out, const char *event, uint64_t stream, uint64_t seq,
               const char *data, size_t len, long retry_ms)
{
    int rc = 0;
    if (event != NULL)
        rc |= evbuffer_add_printf(out, "event: %s\n", event) < 0;
    rc |= evbuffer_add_printf(out, "id: %" PRIu64 "-%" PRIu64 "\n", stream, seq) < 0;
    if (retry_ms >= 0)
        rc |= evbuffer_add_printf(out, "retry: %ld\n", retry_ms) < 0;
    if (data == NULL || len == 0) {
        rc |= evbuffer_add(out, "data: \n\n", 8);
        return rc ? -1 : 0;
    }
    /* A CR, LF or CRLF inside data would end the field: split into data: lines. JSON text from
     * cJSON has none, but a child's string escapes are not trusted blindly. */
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        rc |= evbuffer_add(out, "data: ", 6);
        rc |= evbuffer_add(out, data + i, j - i);
        rc |= evbuffer_add(out, "\n", 1);
        if (j >= len)
            break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    rc |= evbuffer_add(out, "\n", 1);
    return rc ? -1 : 0;
}

int sse_parse_id(const char *id, uint64_t *stream, uint64_t *seq)
{
    char *end;
    if (id == NULL || id[0] < '0' || id[0] > '9')
        return -1;
    errno = 0;
    unsigned long long a = strtoull(id, &end, 10);
    if (errno != 0 || *end != '-' || end[1] < '0' || end[1] > '9')
        return -1;
    unsigned long long b = strtoull(end + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *stream = a;
    *seq = b;
    return 0;
}

int sse_ring_init(struct sse_ring *r, size_t cap, size_t max_bytes)
{
    memset(r, 0, sizeof(*r));
    idmap_init(&r->evicted);
    if (cap == 0)
        return 0;
    r->ev = calloc(cap, sizeof(*r->ev));
    if (r->ev == NULL)
        return -1;
    r->cap = cap;
    r->max_bytes = max_bytes;
    return 0;
}

/* Remembers that event (stream, seq) is lost, so a resumption can tell a gap from a stream
 * that is complete. */
static void ring_lost(struct sse_ring *r, uint64_t stream, uint64_t seq)
{
    if (r->evicted_overflow)
        return;
    uintptr_t prev = (uintptr_t)idmap_get(&r->evicted, stream);
    if ((prev == 0 && r->evicted.len >= SSE_RING_EVICTED_MAX) ||
        ((uint64_t)prev < seq + 1 &&
         idmap_put(&r->evicted, stream, (void *)(uintptr_t)(seq + 1)) == -1)) {
        r->evicted_overflow = true;
        idmap_free(&r->evicted);
    }
}

static void ring_pop(struct sse_ring *r)
{
    struct sse_event *e = &r->ev[r->head];
    ring_lost(r, e->stream, e->seq);
    r->bytes -= e->len;
    free(e->data);
    e->data = NULL;
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

void sse_ring_free(struct sse_ring *r)
{
    while (r->count > 0)
        ring_pop(r);
    free(r->ev);
    idmap_free(&r->evicted);
    memset(r, 0, sizeof(*r));
}

int sse_ring_push(struct sse_ring *r, uint64_t stream, uint64_t seq, const char *data, size_t len)
{
    if (r->cap == 0)
        return 0;
    if (len > r->max_bytes) {
        ring_lost(r, stream, seq); /* too big to keep: a resumption must learn it is gone */
        return 0;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, data, len);
    copy[len] = '\0';
    while (r->count > 0 && (r->count == r->cap || r->bytes + len > r->max_bytes))
        ring_pop(r);
    struct sse_event *e = &r->ev[(r->head + r->count) % r->cap];
    e->stream = stream;
    e->seq = seq;
    e->data = copy;
    e->len = len;
    r->count++;
    r->bytes += len;
    return 0;
}

int sse_ring_replay(const struct sse_ring *r, uint64_t stream, uint64_t after,
                    void (*fn)(void *arg, const struct sse_event *ev), void *arg)
{
    uint64_t lost = (uint64_t)(uintptr_t)idmap_get(&r->evicted, stream); /* 1 + max seq lost */
    int rc = lost > after + 1 ? -1 : 0;
    uint64_t expect = after + 1;
    int first = 1;
    for (size_t i = 0; i < r->count; i++) {
        const struct sse_event *e = &r->ev[(r->head + i) % r->cap];
        if (e->stream != stream || e->seq <= after)
            continue;
        if (first && e->seq != expect)
            rc = -1; /* events between `after` and the oldest kept one are gone */
        first = 0;
        fn(arg, e);
    }
    /* Past the remembered streams, losses are unknown: only an unbroken run proves none. */
    if (r->evicted_overflow && first)
        rc = -1;
    return rc;
}
