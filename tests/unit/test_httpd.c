/*
 * test_httpd.c — the request-head parser (supervisor/httpd.c). What a client sees: which heads
 * reach a handler, and the status each refused one gets. Every refused form is one that another
 * HTTP parser (a proxy in front of mcpvisor) could read differently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

static struct hhead h;

/* Parses text (a C string; "\0" inside needs explicit len) and returns the status. */
static int parse_n(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char *why = "unset";
    int status = httpd_parse_head(copy, len, &h, &why);
    if (status != 0)
        assert_non_null(why); /* every refusal says why */
    /* h points into copy: it lives until the next parse */
    static char *last;
    free(last);
    last = copy;
    return status;
}

static int parse(const char *text)
{
    return parse_n(text, strlen(text));
}

static const char *field(const char *name)
{
    for (size_t i = 0; i < h.nf; i++)
        if (strcasecmp(h.f[i].name, name) == 0)
            return h.f[i].value;
    return NULL;
}

static void test_plain_get(void **state)
{
    assert_int_equal(parse("GET /servers/a/mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                           "Accept:  text/event-stream \t\r\n\r\n"),
                     0);
    assert_int_equal(h.method, HM_GET);
    assert_int_equal(h.minor, 1);
    assert_string_equal(h.path, "/servers/a/mcp");
    assert_string_equal(h.query, "x=1");
    assert_string_equal(field("accept"), "text/event-stream"); /* OWS trimmed */
    assert_int_equal(h.content_length, -1);
    assert_false(h.close);
}

static void test_post_with_length(void **state)
{
    assert_int_equal(parse("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0042\r\n"
                           "Connection: keep-alive, close\r\n\r\n"),
                     0);
    assert_int_equal(h.content_length, 42);
    assert_true(h.close);
    assert_int_equal(parse("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"), 0);
    assert_true(h.chunked);
}

static void test_http10(void **state)
{
    /* no Host needed; closes unless keep-alive is asked for; Expect is ignored */
    assert_int_equal(parse("GET /healthz HTTP/1.0\r\nExpect: something\r\n\r\n"), 0);
    assert_true(h.close);
    assert_false(h.expect_continue);
    assert_int_equal(parse("GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    assert_false(h.close);
    assert_int_equal(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

static void test_absolute_form(void **state)
{
    assert_int_equal(parse("GET http://127.0.0.1:9/healthz HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"),
                     0);
    assert_string_equal(h.path, "/healthz");
    assert_int_equal(parse("GET HTTP://H HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    assert_string_equal(h.path, "/");
    /* a target naming another host than Host: a proxy and mcpvisor would disagree */
    assert_int_equal(parse("GET http://evil.example/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
                     400);
    assert_int_equal(parse("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

static void test_request_line(void **state)
{
    assert_int_equal(parse("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET /\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("BREW / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
    assert_int_equal(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    assert_int_equal(parse("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

static void test_line_ends(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\n"), 400); /* no empty line */
}

static void test_fields(void **state)
{
    /* obs-fold */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n"), 400);
    /* whitespace before the colon, an empty name, a name that is not a token */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n"), 400);
    /* control bytes in a value: NUL, DEL */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\0.evil.com\r\n\r\n";
    assert_int_equal(parse_n(nul, sizeof(nul) - 1), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), 400);
    /* obs-text is allowed in values */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n"), 0);
}

static void test_duplicates(void **state)
{
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                           "Content-Length: 2\r\n\r\n"),
                     400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                           "content-length: 1\r\n\r\n"),
                     400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\n"
                           "Authorization: Bearer b\r\n\r\n"),
                     400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nMcp-Session-Id: a\r\n"
                           "MCP-SESSION-ID: b\r\n\r\n"),
                     400);
    /* fields mcpvisor does not read may repeat */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\n"), 0);
}

static void test_framing(void **state)
{
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"), 400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), 400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"), 400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456789"
                           "\r\n\r\n"),
                     400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"),
                     400);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"), 0);
    assert_true(h.expect_continue);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"), 417);
}

static void test_host(void **state)
{
    assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n"), 400); /* HTTP/1.1 needs Host */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), 0);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), 0);
    /* what a challenge or URL built from Host could be made to carry */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: 127.0.0.1:1@attacker.example\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\", x=\"y\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h:80:81\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h:\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h:65535\r\n\r\n"), 0);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: \r\n\r\n"), 400);
}

static void test_field_count(void **state)
{
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < HTTPD_MAX_FIELDS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: v\r\n", i);
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    assert_int_equal(parse(buf), 431);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_get),    cmocka_unit_test(test_post_with_length),
        cmocka_unit_test(test_http10),       cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_request_line), cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_fields),       cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_framing),      cmocka_unit_test(test_host),
        cmocka_unit_test(test_field_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
