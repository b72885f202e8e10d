/*
 * test_sse.c — SSE event encoding, Last-Event-ID parsing and the replay ring (supervisor/sse.c).
 * What a client sees: the exact bytes of each event, which ids resume a stream, and which events
 * a resumption replays (and when it must report that some are gone).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* The buffer's bytes as a malloc'ed NUL-terminated string; drains the buffer. */
static char *take(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    assert_int_equal(evbuffer_remove(b, s, n), (int)n);
    s[n] = '\0';
    return s;
}

static void assert_encodes(const char *event, uint64_t stream, uint64_t seq, const char *data,
                           size_t len, long retry_ms, const char *want)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(sse_encode(b, event, stream, seq, data, len, retry_ms), 0);
    char *got = take(b);
    assert_string_equal(got, want);
    free(got);
    evbuffer_free(b);
}

#define MAX_SEEN 64

struct seen {
    size_t n;
    uint64_t stream[MAX_SEEN];
    uint64_t seq[MAX_SEEN];
    char *data[MAX_SEEN];
};

static void collect(void *arg, const struct sse_event *ev)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_SEEN);
    s->stream[s->n] = ev->stream;
    s->seq[s->n] = ev->seq;
    s->data[s->n] = strndup(ev->data, ev->len);
    assert_non_null(s->data[s->n]);
    s->n++;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->data[i]);
    memset(s, 0, sizeof(*s));
}

static void push_str(struct sse_ring *r, uint64_t stream, uint64_t seq, const char *data)
{
    assert_int_equal(sse_ring_push(r, stream, seq, data, strlen(data)), 0);
}

/* ---- sse_encode ---------------------------------------------------------------------------- */

static void encode_writes_event_id_and_data(void **state)
{
    (void)state;
    assert_encodes("message", 3, 7, "{\"a\":1}", 7, -1,
                   "event: message\nid: 3-7\ndata: {\"a\":1}\n\n");
}

static void encode_without_event_has_no_event_field(void **state)
{
    (void)state;
    assert_encodes(NULL, 0, 1, "x", 1, -1, "id: 0-1\ndata: x\n\n");
}

static void encode_id_uses_full_64_bit_range(void **state)
{
    (void)state;
    assert_encodes(NULL, UINT64_MAX, UINT64_MAX - 1, "x", 1, -1,
                   "id: 18446744073709551615-18446744073709551614\ndata: x\n\n");
}

static void encode_writes_retry_when_given(void **state)
{
    (void)state;
    assert_encodes(NULL, 1, 2, "x", 1, 3000, "id: 1-2\nretry: 3000\ndata: x\n\n");
    assert_encodes("message", 1, 2, "x", 1, 0, "event: message\nid: 1-2\nretry: 0\ndata: x\n\n");
}

static void encode_priming_event_has_empty_data(void **state)
{
    (void)state;
    assert_encodes(NULL, 4, 0, NULL, 0, -1, "id: 4-0\ndata: \n\n");
    assert_encodes(NULL, 4, 0, "ignored", 0, 5000, "id: 4-0\nretry: 5000\ndata: \n\n");
}

static void encode_uses_only_len_bytes_of_data(void **state)
{
    (void)state;
    assert_encodes(NULL, 1, 1, "abcdef", 3, -1, "id: 1-1\ndata: abc\n\n");
}

static void encode_splits_lf_into_data_lines(void **state)
{
    (void)state;
    assert_encodes(NULL, 1, 1, "a\nb\nc", 5, -1, "id: 1-1\ndata: a\ndata: b\ndata: c\n\n");
}

static void encode_splits_crlf_into_one_break(void **state)
{
    (void)state;
    /* CRLF is one line break, not two: no empty data line between a and b. */
    assert_encodes(NULL, 1, 1, "a\r\nb", 4, -1, "id: 1-1\ndata: a\ndata: b\n\n");
}

static void encode_splits_lone_cr_into_data_lines(void **state)
{
    (void)state;
    assert_encodes(NULL, 1, 1, "a\rb", 3, -1, "id: 1-1\ndata: a\ndata: b\n\n");
}

static void encode_keeps_empty_lines_and_trailing_break(void **state)
{
    (void)state;
    /* A client joins data lines with LF, so "a\n\nb" and "a\n" must come back intact. */
    assert_encodes(NULL, 1, 1, "a\n\nb", 4, -1, "id: 1-1\ndata: a\ndata: \ndata: b\n\n");
    assert_encodes(NULL, 1, 1, "a\n", 2, -1, "id: 1-1\ndata: a\ndata: \n\n");
    assert_encodes(NULL, 1, 1, "\r\r\n\n", 4, -1, "id: 1-1\ndata: \ndata: \ndata: \ndata: \n\n");
}

static void encode_appends_to_existing_buffer(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(sse_encode(b, NULL, 1, 1, "x", 1, -1), 0);
    assert_int_equal(sse_encode(b, NULL, 1, 2, "y", 1, -1), 0);
    char *got = take(b);
    assert_string_equal(got, "id: 1-1\ndata: x\n\nid: 1-2\ndata: y\n\n");
    free(got);
    evbuffer_free(b);
}

/* ---- sse_parse_id -------------------------------------------------------------------------- */

static void parse_id_accepts_stream_dash_seq(void **state)
{
    (void)state;
    uint64_t stream = 99, seq = 99;
    assert_int_equal(sse_parse_id("3-17", &stream, &seq), 0);
    assert_int_equal(stream, 3);
    assert_int_equal(seq, 17);
    assert_int_equal(sse_parse_id("0-0", &stream, &seq), 0);
    assert_int_equal(stream, 0);
    assert_int_equal(seq, 0);
    assert_int_equal(sse_parse_id("18446744073709551615-18446744073709551615", &stream, &seq), 0);
    assert_true(stream == UINT64_MAX);
    assert_true(seq == UINT64_MAX);
}

static void parse_id_round_trips_encoded_id(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(sse_encode(b, NULL, 12345, 678, "x", 1, -1), 0);
    char *got = take(b);
    char *nl = strchr(got, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_true(strncmp(got, "id: ", 4) == 0);
    uint64_t stream, seq;
    assert_int_equal(sse_parse_id(got + 4, &stream, &seq), 0);
    assert_int_equal(stream, 12345);
    assert_int_equal(seq, 678);
    free(got);
    evbuffer_free(b);
}

static void parse_id_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",     "-1",   "1-",   "a-1",   "1-2x", "1",    "-",    "1--2",  "1-+2",
        "1- 2", " 1-2", "+1-2", "1-2-3", "1_2",  "1-2 ", "1-\n", "0x1-2", "1-0x2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t stream = 42, seq = 43;
        if (sse_parse_id(bad[i], &stream, &seq) != -1)
            fail_msg("sse_parse_id accepted \"%s\"", bad[i]);
        /* A refused id leaves the outputs alone. */
        assert_int_equal(stream, 42);
        assert_int_equal(seq, 43);
    }
    uint64_t stream, seq;
    assert_int_equal(sse_parse_id(NULL, &stream, &seq), -1);
}

static void parse_id_rejects_out_of_range_numbers(void **state)
{
    (void)state;
    /* 2^64 does not fit: strtoull clamps to UINT64_MAX, which names a different event. */
    static const char *const bad[] = {
        "18446744073709551616-1",
        "1-18446744073709551616",
        "99999999999999999999999-1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t stream = 42, seq = 43;
        if (sse_parse_id(bad[i], &stream, &seq) != -1)
            fail_msg("sse_parse_id accepted \"%s\" as %llu-%llu", bad[i],
                     (unsigned long long)stream, (unsigned long long)seq);
    }
}

/* ---- replay ring --------------------------------------------------------------------------- */

static void ring_push_beyond_cap_evicts_oldest(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 4, 1 << 20), 0);
    char buf[8];
    for (uint64_t i = 1; i <= 6; i++) {
        snprintf(buf, sizeof(buf), "e%u", (unsigned)i);
        push_str(&r, 1, i, buf);
    }
    assert_int_equal(r.count, 4);

    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 2, collect, &s), 0);
    assert_int_equal(s.n, 4);
    for (size_t i = 0; i < 4; i++) {
        snprintf(buf, sizeof(buf), "e%u", (unsigned)(i + 3));
        assert_int_equal(s.seq[i], i + 3);
        assert_string_equal(s.data[i], buf);
    }
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_byte_ceiling_evicts_oldest(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 100, 10), 0);
    push_str(&r, 1, 1, "aaaa");
    push_str(&r, 1, 2, "bbbb");
    assert_int_equal(r.count, 2);
    push_str(&r, 1, 3, "cccc"); /* 12 bytes would exceed 10: seq 1 goes */
    assert_int_equal(r.count, 2);
    assert_true(r.bytes <= 10);

    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 2, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], "cccc");
    seen_free(&s);
    assert_int_equal(sse_ring_replay(&r, 1, 1, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.data[0], "bbbb");
    assert_string_equal(s.data[1], "cccc");
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_event_of_exactly_max_bytes_is_kept(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 8, 6), 0);
    push_str(&r, 1, 1, "ab");
    push_str(&r, 1, 2, "abcdef");
    assert_int_equal(r.count, 1);
    assert_int_equal(r.bytes, 6);
    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 1, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], "abcdef");
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_event_bigger_than_max_bytes_is_not_kept(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 8, 6), 0);
    push_str(&r, 1, 1, "ab");
    push_str(&r, 1, 2, "abcdefg"); /* 7 > 6: dropped, and it must not evict seq 1 */
    assert_int_equal(r.count, 1);
    push_str(&r, 1, 3, "cd");

    /* Whether a hole in the middle counts as a gap is not specified: only the events are. */
    struct seen s = {0};
    (void)sse_ring_replay(&r, 1, 0, collect, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.seq[0], 1);
    assert_int_equal(s.seq[1], 3);
    seen_free(&s);
    /* Resuming after seq 1: seq 2 cannot be replayed, which is a gap. */
    assert_int_equal(sse_ring_replay(&r, 1, 1, collect, &s), -1);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seq[0], 3);
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_stores_a_copy_of_data(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 4, 100), 0);
    char buf[] = "original";
    assert_int_equal(sse_ring_push(&r, 1, 1, buf, strlen(buf)), 0);
    memset(buf, 'X', strlen(buf));
    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 0, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], "original");
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_replays_one_stream_only_in_order(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 16, 1000), 0);
    push_str(&r, 1, 1, "s1-1");
    push_str(&r, 2, 1, "s2-1");
    push_str(&r, 1, 2, "s1-2");
    push_str(&r, 2, 2, "s2-2");
    push_str(&r, 3, 1, "s3-1");
    push_str(&r, 2, 3, "s2-3");
    push_str(&r, 1, 3, "s1-3");

    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 2, 0, collect, &s), 0);
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 3; i++) {
        char want[8];
        snprintf(want, sizeof(want), "s2-%u", (unsigned)(i + 1));
        assert_int_equal(s.stream[i], 2);
        assert_int_equal(s.seq[i], i + 1);
        assert_string_equal(s.data[i], want);
    }
    seen_free(&s);

    /* Only events after the given seq. */
    assert_int_equal(sse_ring_replay(&r, 1, 1, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.data[0], "s1-2");
    assert_string_equal(s.data[1], "s1-3");
    seen_free(&s);

    /* Up to date, or a stream never seen: nothing to replay, no gap. */
    assert_int_equal(sse_ring_replay(&r, 1, 3, collect, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(sse_ring_replay(&r, 9, 0, collect, &s), 0);
    assert_int_equal(s.n, 0);
    sse_ring_free(&r);
}

static void ring_replay_order_survives_wraparound(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 3, 1000), 0);
    for (uint64_t i = 1; i <= 10; i++)
        push_str(&r, 5, i, "x");
    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 5, 7, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 8);
    assert_int_equal(s.seq[1], 9);
    assert_int_equal(s.seq[2], 10);
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_replay_reports_gap_when_oldest_kept_is_not_next(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 3, 1000), 0);
    for (uint64_t i = 1; i <= 5; i++)
        push_str(&r, 1, i, "x"); /* keeps 3, 4, 5 */

    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 1, collect, &s), -1);
    /* What is still kept is replayed anyway. */
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 3);
    seen_free(&s);
    assert_int_equal(sse_ring_replay(&r, 1, 0, collect, &s), -1);
    seen_free(&s);
    assert_int_equal(sse_ring_replay(&r, 1, 2, collect, &s), 0);
    assert_int_equal(s.n, 3);
    seen_free(&s);
    sse_ring_free(&r);
}

static void ring_replay_reports_gap_when_other_streams_evicted_all(void **state)
{
    (void)state;
    /* Stream 1's events 2 and 3 were evicted by stream 2's traffic. sse.h: "Returns -1 when
     * events of that stream after `after` were already evicted". */
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 3, 1000), 0);
    push_str(&r, 1, 1, "a");
    push_str(&r, 1, 2, "b");
    push_str(&r, 1, 3, "c");
    push_str(&r, 2, 1, "x");
    push_str(&r, 2, 2, "y");
    push_str(&r, 2, 3, "z");
    struct seen s = {0};
    int gap = sse_ring_replay(&r, 1, 1, collect, &s);
    size_t n = s.n;
    /* A client that saw everything of stream 1 has no gap, evictions or not. */
    int complete = sse_ring_replay(&r, 1, 3, collect, &s);
    /* Stream 2 lost nothing. */
    int other = sse_ring_replay(&r, 2, 0, collect, &s);
    seen_free(&s);
    sse_ring_free(&r);
    if (gap != -1)
        fail_msg("stream 1 after 1, events 2..3 evicted: replay returned %d, want -1", gap);
    assert_int_equal(n, 0);
    if (complete != 0)
        fail_msg("stream 1 after 3 (nothing missed): replay returned %d, want 0", complete);
    if (other != 0)
        fail_msg("stream 2 after 0 (all kept): replay returned %d, want 0", other);
}

/* Pushes one 10-byte event for each of streams first..last (seq 1). */
static void push_streams(struct sse_ring *r, uint64_t first, uint64_t last)
{
    for (uint64_t st = first; st <= last; st++)
        push_str(r, st, 1, "0123456789");
}

static void ring_replay_reports_gap_after_many_streams_evicted_by_count(void **state)
{
    (void)state;
    /* More evicted streams than SSE_RING_EVICTED_MAX: sse.h says every gap is then assumed. */
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 8, 1 << 20), 0);
    push_streams(&r, 1, SSE_RING_EVICTED_MAX + 100);
    struct seen s = {0};
    int rc = sse_ring_replay(&r, 5, 0, collect, &s);
    size_t n = s.n;
    seen_free(&s);
    sse_ring_free(&r);
    assert_int_equal(n, 0);
    if (rc != -1)
        fail_msg("stream 5's only event was evicted: replay returned %d, want -1", rc);
}

static void ring_replay_reports_gap_after_many_streams_evicted_by_bytes(void **state)
{
    (void)state;
    /* Same, but the byte ceiling evicts (10 events of 10 bytes fit, the count never does). */
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 2 * SSE_RING_EVICTED_MAX, 100), 0);
    push_streams(&r, 1, SSE_RING_EVICTED_MAX + 100);
    struct seen s = {0};
    int rc = sse_ring_replay(&r, 5, 0, collect, &s);
    size_t n = s.n;
    seen_free(&s);
    size_t count = r.count;
    sse_ring_free(&r);
    assert_int_equal(count, 10);
    assert_int_equal(n, 0);
    if (rc != -1)
        fail_msg("stream 5's only event was evicted: replay returned %d, want -1", rc);
}

static void ring_replay_reports_gap_when_last_event_was_too_big_to_keep(void **state)
{
    (void)state;
    /* The final answer on a stream is larger than max_bytes, so it is not kept; a client that
     * lost the connection during it resumes after seq 1 and gets nothing back. That is events
     * gone, not "nothing more was sent", and must read as a gap like an eviction does. */
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 8, 6), 0);
    push_str(&r, 1, 1, "ab");
    push_str(&r, 1, 2, "abcdefg"); /* 7 > 6 bytes: not kept */
    struct seen s = {0};
    int rc = sse_ring_replay(&r, 1, 1, collect, &s);
    size_t n = s.n;
    seen_free(&s);
    sse_ring_free(&r);
    assert_int_equal(n, 0);
    if (rc != -1)
        fail_msg("stream 1 after 1, seq 2 never kept: replay returned %d, want -1", rc);
}

static void ring_with_zero_cap_keeps_nothing(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 0, 1000), 0);
    push_str(&r, 1, 1, "x");
    assert_int_equal(r.count, 0);
    struct seen s = {0};
    assert_int_equal(sse_ring_replay(&r, 1, 5, collect, &s), 0);
    assert_int_equal(s.n, 0);
    sse_ring_free(&r);
}

static void ring_free_releases_and_resets(void **state)
{
    (void)state;
    struct sse_ring r;
    assert_int_equal(sse_ring_init(&r, 4, 1000), 0);
    push_str(&r, 1, 1, "a");
    push_str(&r, 1, 2, "b");
    sse_ring_free(&r);
    assert_null(r.ev);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.bytes, 0);
    /* Freeing twice is harmless (session teardown paths may both free). */
    sse_ring_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_writes_event_id_and_data),
        cmocka_unit_test(encode_without_event_has_no_event_field),
        cmocka_unit_test(encode_id_uses_full_64_bit_range),
        cmocka_unit_test(encode_writes_retry_when_given),
        cmocka_unit_test(encode_priming_event_has_empty_data),
        cmocka_unit_test(encode_uses_only_len_bytes_of_data),
        cmocka_unit_test(encode_splits_lf_into_data_lines),
        cmocka_unit_test(encode_splits_crlf_into_one_break),
        cmocka_unit_test(encode_splits_lone_cr_into_data_lines),
        cmocka_unit_test(encode_keeps_empty_lines_and_trailing_break),
        cmocka_unit_test(encode_appends_to_existing_buffer),
        cmocka_unit_test(parse_id_accepts_stream_dash_seq),
        cmocka_unit_test(parse_id_round_trips_encoded_id),
        cmocka_unit_test(parse_id_rejects_malformed),
        cmocka_unit_test(parse_id_rejects_out_of_range_numbers),
        cmocka_unit_test(ring_push_beyond_cap_evicts_oldest),
        cmocka_unit_test(ring_byte_ceiling_evicts_oldest),
        cmocka_unit_test(ring_event_of_exactly_max_bytes_is_kept),
        cmocka_unit_test(ring_event_bigger_than_max_bytes_is_not_kept),
        cmocka_unit_test(ring_stores_a_copy_of_data),
        cmocka_unit_test(ring_replays_one_stream_only_in_order),
        cmocka_unit_test(ring_replay_order_survives_wraparound),
        cmocka_unit_test(ring_replay_reports_gap_when_oldest_kept_is_not_next),
        cmocka_unit_test(ring_replay_reports_gap_when_other_streams_evicted_all),
        cmocka_unit_test(ring_replay_reports_gap_after_many_streams_evicted_by_count),
        cmocka_unit_test(ring_replay_reports_gap_after_many_streams_evicted_by_bytes),
        cmocka_unit_test(ring_replay_reports_gap_when_last_event_was_too_big_to_keep),
        cmocka_unit_test(ring_with_zero_cap_keeps_nothing),
        cmocka_unit_test(ring_free_releases_and_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
