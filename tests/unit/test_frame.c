/*
 * test_frame.c — line framing of a child's stdout (supervisor/frame.c): which JSON-RPC lines a
 * child's bytes become, and when a line is too long and the child must be killed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static int setup(void **state)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return -1;
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    evbuffer_free(*state);
    return 0;
}

static void add(struct evbuffer *b, const char *s)
{
    assert_int_equal(evbuffer_add(b, s, strlen(s)), 0);
}

/* Takes the next frame, which must be a line equal to `want`. */
static void expect_line(struct evbuffer *b, size_t max, const char *want)
{
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(frame_next(b, max, &line, &len), FRAME_LINE);
    assert_non_null(line);
    assert_int_equal(len, strlen(want));
    assert_int_equal(strlen(line), len); /* NUL-terminated right after the line */
    assert_string_equal(line, want);
    free(line);
}

static void expect_none(struct evbuffer *b, size_t max)
{
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(frame_next(b, max, &line, &len), FRAME_NONE);
    assert_null(line);
}

static void expect_oversize(struct evbuffer *b, size_t max)
{
    char *line = NULL;
    size_t len = 0;
    assert_int_equal(frame_next(b, max, &line, &len), FRAME_OVERSIZE);
    assert_null(line);
}

static void empty_buffer_has_no_line(void **state)
{
    expect_none(*state, 100);
}

static void partial_line_has_no_line_yet(void **state)
{
    struct evbuffer *b = *state;
    add(b, "{\"jsonrpc\":");
    expect_none(b, 100);
    /* Nothing was consumed: the partial line is still buffered. */
    assert_int_equal(evbuffer_get_length(b), strlen("{\"jsonrpc\":"));
}

static void one_line_is_returned_without_newline(void **state)
{
    struct evbuffer *b = *state;
    add(b, "{\"id\":1}\n");
    expect_line(b, 100, "{\"id\":1}");
    assert_int_equal(evbuffer_get_length(b), 0);
    expect_none(b, 100);
}

static void line_split_across_several_adds(void **state)
{
    struct evbuffer *b = *state;
    add(b, "{\"a\"");
    expect_none(b, 100);
    add(b, ":1,");
    expect_none(b, 100);
    add(b, "\"b\":2}");
    expect_none(b, 100);
    add(b, "\n{\"c\"");
    expect_line(b, 100, "{\"a\":1,\"b\":2}");
    expect_none(b, 100);
    add(b, ":3}\n");
    expect_line(b, 100, "{\"c\":3}");
    expect_none(b, 100);
}

static void several_lines_in_one_add_come_out_in_order(void **state)
{
    struct evbuffer *b = *state;
    add(b, "one\ntwo\nthree\nfour");
    expect_line(b, 100, "one");
    expect_line(b, 100, "two");
    expect_line(b, 100, "three");
    expect_none(b, 100);
    assert_int_equal(evbuffer_get_length(b), 4);
}

static void crlf_is_stripped(void **state)
{
    struct evbuffer *b = *state;
    add(b, "{\"id\":1}\r\n{\"id\":2}\n");
    expect_line(b, 100, "{\"id\":1}");
    expect_line(b, 100, "{\"id\":2}");
    expect_none(b, 100);
}

static void crlf_split_between_adds_is_stripped(void **state)
{
    struct evbuffer *b = *state;
    add(b, "abc\r");
    expect_none(b, 100);
    add(b, "\n");
    expect_line(b, 100, "abc");
}

static void empty_lines_are_skipped(void **state)
{
    struct evbuffer *b = *state;
    add(b, "\n\r\n\n{}\n\r\n\n");
    expect_line(b, 100, "{}");
    expect_none(b, 100);
    assert_int_equal(evbuffer_get_length(b), 0);
}

static void only_empty_lines_give_no_line(void **state)
{
    struct evbuffer *b = *state;
    add(b, "\n\n\r\n");
    expect_none(b, 100);
    assert_int_equal(evbuffer_get_length(b), 0);
}

static void line_of_exactly_max_bytes_is_a_line(void **state)
{
    struct evbuffer *b = *state;
    char want[17];
    memset(want, 'x', 16);
    want[16] = '\0';
    add(b, want);
    expect_none(b, 16); /* 16 buffered bytes do not exceed 16 yet */
    add(b, "\n");
    expect_line(b, 16, want);
}

static void complete_line_longer_than_max_is_oversize(void **state)
{
    struct evbuffer *b = *state;
    add(b, "0123456789abcdefg\n"); /* 17 bytes */
    expect_oversize(b, 16);
}

static void partial_line_longer_than_max_is_oversize(void **state)
{
    struct evbuffer *b = *state;
    add(b, "0123456789");
    expect_none(b, 16);
    add(b, "abcdefg"); /* 17 bytes, no newline yet */
    expect_oversize(b, 16);
}

static void short_lines_before_an_oversize_one_still_come_out(void **state)
{
    struct evbuffer *b = *state;
    add(b, "ok\n0123456789abcdefghij");
    expect_line(b, 16, "ok");
    expect_oversize(b, 16);
}

static void max_counts_the_line_not_the_buffered_lines(void **state)
{
    struct evbuffer *b = *state;
    /* 40 bytes buffered, but no line is longer than 8. */
    add(b, "aaaaaaa\nbbbbbbb\nccccccc\nddddddd\neeeeeee\n");
    expect_line(b, 8, "aaaaaaa");
    expect_line(b, 8, "bbbbbbb");
    expect_line(b, 8, "ccccccc");
    expect_line(b, 8, "ddddddd");
    expect_line(b, 8, "eeeeeee");
    expect_none(b, 8);
}

static void long_line_in_many_small_adds(void **state)
{
    struct evbuffer *b = *state;
    char want[5001];
    for (size_t i = 0; i < 5000; i++) {
        want[i] = (char)('a' + i % 26);
        assert_int_equal(evbuffer_add(b, &want[i], 1), 0);
        if (i % 997 == 0)
            expect_none(b, 8192);
    }
    want[5000] = '\0';
    add(b, "\n");
    expect_line(b, 8192, want);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(empty_buffer_has_no_line),
        T(partial_line_has_no_line_yet),
        T(one_line_is_returned_without_newline),
        T(line_split_across_several_adds),
        T(several_lines_in_one_add_come_out_in_order),
        T(crlf_is_stripped),
        T(crlf_split_between_adds_is_stripped),
        T(empty_lines_are_skipped),
        T(only_empty_lines_give_no_line),
        T(line_of_exactly_max_bytes_is_a_line),
        T(complete_line_longer_than_max_is_oversize),
        T(partial_line_longer_than_max_is_oversize),
        T(short_lines_before_an_oversize_one_still_come_out),
        T(max_counts_the_line_not_the_buffered_lines),
        T(long_line_in_many_small_adds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
