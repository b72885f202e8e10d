/*
 * fuzz_sse.c — SSE framing and the replay ring (sse.c), and line framing (frame.c).
 *
 * The input is used three ways:
 *   - as event data (a child's message) for sse_encode: the encoded event, read back the way
 *     a browser's EventSource reads a stream (lines end at CRLF, LF or CR), must give back one
 *     event with exactly that data (line ends normalised to LF) and the id we wrote, so a
 *     child can never inject fields or events;
 *   - as a Last-Event-ID header for sse_parse_id, which must agree with a strict reading;
 *   - as a script for the replay ring: pushes and replays whose results are checked against
 *     the ring's promises (order, seq > after, no silent gap);
 * and cut into lines by frame_next with a small ceiling, compared with a plain split.
 */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "sse.h"

/* Reads one SSE event as the WHATWG parser would; checks data and id. */
static void check_encoded(const uint8_t *data, size_t size, uint64_t stream, uint64_t seq)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL)
        return;
    if (sse_encode(out, "message", stream, seq, (const char *)data, size, 1000) != 0)
        abort();
    size_t n = evbuffer_get_length(out);
    const char *s = (const char *)evbuffer_pullup(out, -1);
    char *got = malloc(n + 1), *want = malloc(size + 1), id[64] = "";
    size_t glen = 0, wlen = 0, events = 0;
    bool has_data = false;

    if (got == NULL || want == NULL)
        abort();
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        if (j == n) /* an unterminated last line: the encoder must not leave one */
            abort();
        const char *line = s + i;
        size_t len = j - i;
        i = j + (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n' ? 2 : 1);
        if (len == 0) {
            events++;
            if (i != n) /* a second event */
                abort();
            continue;
        }
        const char *colon = memchr(line, ':', len);
        size_t flen = colon != NULL ? (size_t)(colon - line) : len;
        const char *v = colon != NULL ? colon + 1 : line + len;
        size_t vlen = (size_t)(line + len - v);
        if (vlen > 0 && v[0] == ' ') {
            v++;
            vlen--;
        }
        if (flen == 4 && memcmp(line, "data", 4) == 0) {
            if (has_data)
                got[glen++] = '\n';
            memcpy(got + glen, v, vlen);
            glen += vlen;
            has_data = true;
        } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
            if (vlen >= sizeof id)
                abort();
            memcpy(id, v, vlen);
            id[vlen] = '\0';
        } else if (!(flen == 5 && memcmp(line, "event", 5) == 0) &&
                   !(flen == 5 && memcmp(line, "retry", 5) == 0)) {
            abort();
        }
    }
    if (events != 1)
        abort();
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\r') {
            want[wlen++] = '\n';
            if (i + 1 < size && data[i + 1] == '\n')
                i++;
        } else {
            want[wlen++] = (char)data[i];
        }
    }
    if (glen != wlen || memcmp(got, want, wlen) != 0)
        abort();
    uint64_t a, b;
    if (sse_parse_id(id, &a, &b) != 0 || a != stream || b != seq)
        abort();
    free(got);
    free(want);
    evbuffer_free(out);
}

/* Digits at *p into *v; false when there are none or they overflow. */
static bool ref_number(const char **p, uint64_t *v)
{
    const char *q = *p;
    *v = 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (*v > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
            return false;
        *v = *v * 10 + (uint64_t)(*q - '0');
    }
    if (q == *p)
        return false;
    *p = q;
    return true;
}

/* sse_parse_id must accept exactly "<digits>-<digits>" with both in range. */
static void check_parse_id(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    uint64_t a = 0, b = 0, ra, rb;
    if (s == NULL)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    const char *p = s;
    bool ok = ref_number(&p, &ra) && *p++ == '-' && ref_number(&p, &rb) && *p == '\0';
    int rc = sse_parse_id(s, &a, &b);
    if ((rc == 0) != ok || (ok && (a != ra || b != rb)))
        abort();
    free(s);
}

struct replay {
    uint64_t last;
    size_t n;
    uint64_t after;
};

static void on_event(void *arg, const struct sse_event *ev)
{
    struct replay *r = arg;
    if (ev->seq <= r->after || (r->n > 0 && ev->seq <= r->last) || ev->data == NULL)
        abort();
    r->last = ev->seq;
    r->n++;
}

static void ring_script(const uint8_t *data, size_t size)
{
    struct sse_ring ring;
    uint64_t next[4] = {1, 1, 1, 1};

    if (size < 2 || sse_ring_init(&ring, data[0] % 9, (size_t)data[1] * 4) != 0)
        return;
    for (size_t i = 2; i < size; i++) {
        uint8_t op = data[i];
        uint64_t stream = op & 3;
        if (op & 0x80) {
            struct replay r = {0, 0, (op >> 2) & 7};
            sse_ring_replay(&ring, stream, r.after, on_event, &r);
        } else {
            size_t len = (op >> 2) & 31;
            if (sse_ring_push(&ring, stream, next[stream]++, "0123456789abcdef0123456789abcdef",
                              len) != 0)
                abort();
            if (ring.count > ring.cap || ring.bytes > ring.max_bytes)
                abort();
        }
    }
    sse_ring_free(&ring);
}

static void check_frames(const uint8_t *data, size_t size)
{
    enum { MAX = 64 };
    struct evbuffer *in = evbuffer_new();
    if (in == NULL)
        return;
    evbuffer_add(in, data, size);
    size_t pos = 0; /* the plain split's position in data */
    for (;;) {
        char *line;
        size_t len;
        enum frame_result r = frame_next(in, MAX, &line, &len);
        if (r != FRAME_LINE) {
            /* Only empty lines were left before the unterminated rest, or the next line is too
             * long. */
            const uint8_t *nl;
            while ((nl = memchr(data + pos, '\n', size - pos)) != NULL) {
                size_t n = (size_t)(nl - (data + pos));
                if (!(n == 0 || (n == 1 && data[pos] == '\r'))) {
                    if (r != FRAME_OVERSIZE || n <= MAX || (n == MAX + 1 && nl[-1] == '\r'))
                        abort();
                    break;
                }
                pos += n + 1;
            }
            if (nl == NULL && (r == FRAME_OVERSIZE) != (size - pos > MAX))
                abort();
            break;
        }
        /* The reference: skip empty lines ("" or "\r"), then take up to the next LF. */
        for (;;) {
            const uint8_t *nl = memchr(data + pos, '\n', size - pos);
            if (nl == NULL)
                abort();
            size_t n = (size_t)(nl - (data + pos));
            if (n == 0 || (n == 1 && data[pos] == '\r')) {
                pos += n + 1;
                continue;
            }
            size_t want = data[pos + n - 1] == '\r' ? n - 1 : n;
            if (len != want || memcmp(line, data + pos, len) != 0 || len > MAX)
                abort();
            pos += n + 1;
            break;
        }
        free(line);
    }
    evbuffer_free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t stream = size > 0 ? data[0] : 0;
    check_encoded(data, size, stream, size);
    check_encoded(data, size, UINT64_MAX, UINT64_MAX);
    check_parse_id(data, size);
    ring_script(data, size);
    check_frames(data, size);
    return 0;
}
