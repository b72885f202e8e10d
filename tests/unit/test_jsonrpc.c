/*
 * test_jsonrpc.c — JSON-RPC 2.0 message classification and mcpvisor's typed error replies
 * (supervisor/jsonrpc.c). A message classified wrongly is either refused though valid or, worse,
 * routed though malformed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"
#include "jsonstrict.h"
#include "version.h"

struct kase {
    const char *json;
    enum jsonrpc_kind want;
};

static const char *kind_name(enum jsonrpc_kind k)
{
    switch (k) {
    case JSONRPC_INVALID:
        return "invalid";
    case JSONRPC_REQUEST:
        return "request";
    case JSONRPC_NOTIFICATION:
        return "notification";
    case JSONRPC_RESPONSE:
        return "response";
    }
    return "?";
}

static void check_cases(const struct kase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cJSON *msg = cJSON_Parse(cases[i].json);
        if (msg == NULL)
            fail_msg("test case is not JSON: %s", cases[i].json);
        enum jsonrpc_kind got = jsonrpc_classify(msg);
        cJSON_Delete(msg);
        if (got != cases[i].want)
            fail_msg("%s: classified %s, want %s", cases[i].json, kind_name(got),
                     kind_name(cases[i].want));
    }
}

#define CHECK(cases) check_cases(cases, sizeof(cases) / sizeof(cases[0]))

/* ---- classification ------------------------------------------------------------------------ */

static void classify_requests(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":-5,\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.0,\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":9007199254740991,\"method\":\"ping\"}", JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}",
         JSONRPC_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"m\",\"params\":[1,2]}", JSONRPC_REQUEST},
        {"{\"method\":\"m\",\"id\":4,\"jsonrpc\":\"2.0\"}", JSONRPC_REQUEST},
    };
    CHECK(cases);
}

static void classify_notifications(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", JSONRPC_NOTIFICATION},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"p\":1}}",
         JSONRPC_NOTIFICATION},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":[]}", JSONRPC_NOTIFICATION},
    };
    CHECK(cases);
}

static void classify_responses(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", JSONRPC_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":[]}}", JSONRPC_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}", JSONRPC_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":0}", JSONRPC_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"no\"}}",
         JSONRPC_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":1}}", JSONRPC_RESPONSE},
        /* Parse errors are answered with a null id. */
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"parse\"}}",
         JSONRPC_RESPONSE},
    };
    CHECK(cases);
}

static void classify_rejects_non_objects(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", JSONRPC_INVALID}, /* batch */
        {"[]", JSONRPC_INVALID},
        {"1", JSONRPC_INVALID},
        {"\"2.0\"", JSONRPC_INVALID},
        {"null", JSONRPC_INVALID},
        {"{}", JSONRPC_INVALID},
    };
    CHECK(cases);
    assert_int_equal(jsonrpc_classify(NULL), JSONRPC_INVALID);
}

static void classify_rejects_bad_version(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"method\":\"notifications/initialized\"}", JSONRPC_INVALID},
        {"{\"id\":1,\"result\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0 \",\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2\",\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":null,\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"JSONRPC\":\"2.0\",\"id\":1,\"method\":\"ping\"}", JSONRPC_INVALID},
    };
    CHECK(cases);
}

static void classify_rejects_bad_request_ids(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}", JSONRPC_INVALID},
        /* Beyond 2^53 an integer id cannot be echoed back exactly. */
        {"{\"jsonrpc\":\"2.0\",\"id\":9007199254740992,\"method\":\"ping\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1e300,\"method\":\"ping\"}", JSONRPC_INVALID},
    };
    CHECK(cases);
}

static void classify_rejects_bad_method_or_params(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":1}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":null}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":[\"ping\"]}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"method\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":\"x\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":\"x\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":3}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":null}", JSONRPC_INVALID},
        /* A method with result or error is neither a request nor a response. */
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"result\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"error\":{\"code\":1}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"result\":{}}", JSONRPC_INVALID},
    };
    CHECK(cases);
}

static void classify_rejects_bad_responses(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        /* both result and error, or neither */
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{\"code\":1}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", JSONRPC_INVALID},
        /* error without a numeric code, or not an object */
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"message\":\"no\"}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"-32600\"}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"boom\"}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":null}", JSONRPC_INVALID},
        /* id missing, or null on a successful response */
        {"{\"jsonrpc\":\"2.0\",\"result\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}", JSONRPC_INVALID},
        /* ids that are not strings or integers */
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"result\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"error\":{\"code\":1}}", JSONRPC_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":[],\"error\":{\"code\":1}}", JSONRPC_INVALID},
    };
    CHECK(cases);
}

static void method_is_returned_for_requests_and_notifications(void **state)
{
    (void)state;
    cJSON *m = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}");
    assert_non_null(m);
    assert_string_equal(jsonrpc_method(m), "tools/call");
    cJSON_Delete(m);
    m = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}");
    assert_non_null(m);
    assert_string_equal(jsonrpc_method(m), "notifications/cancelled");
    cJSON_Delete(m);
    m = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    assert_non_null(m);
    assert_null(jsonrpc_method(m));
    cJSON_Delete(m);
    m = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}");
    assert_non_null(m);
    assert_null(jsonrpc_method(m));
    cJSON_Delete(m);
}

/* ---- error replies ------------------------------------------------------------------------- */

/* Builds an error reply and parses its text back. */
static cJSON *error_reply(const cJSON *id, int code, const char *message, const char *type,
                          long retry_after_ms)
{
    char *text = jsonrpc_error_text(id, code, message, type, retry_after_ms);
    assert_non_null(text);
    cJSON *e = cJSON_Parse(text);
    if (e == NULL)
        fail_msg("jsonrpc_error_text wrote invalid JSON: %s", text);
    free(text);
    return e;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static size_t members(const cJSON *o)
{
    return (size_t)cJSON_GetArraySize(o);
}

static void error_text_with_type_and_retry(void **state)
{
    (void)state;
    cJSON *id = cJSON_CreateNumber(7);
    assert_non_null(id);
    cJSON *e = error_reply(id, ERR_QUOTA_EXCEEDED, "Quota exceeded", "quota_exceeded", 1500);
    cJSON_Delete(id);

    assert_int_equal(jsonrpc_classify(e), JSONRPC_RESPONSE);
    assert_string_equal(get(e, "jsonrpc")->valuestring, "2.0");
    assert_true(cJSON_IsNumber(get(e, "id")));
    assert_int_equal(get(e, "id")->valueint, 7);
    assert_null(get(e, "result"));
    const cJSON *err = get(e, "error");
    assert_true(cJSON_IsObject(err));
    assert_int_equal(get(err, "code")->valueint, ERR_QUOTA_EXCEEDED);
    assert_string_equal(get(err, "message")->valuestring, "Quota exceeded");
    const cJSON *data = get(err, "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(members(data), 3);
    assert_string_equal(get(data, "type")->valuestring, "quota_exceeded");
    assert_true(cJSON_IsNumber(get(data, "retry_after_ms")));
    assert_int_equal(get(data, "retry_after_ms")->valueint, 1500);
    assert_string_equal(get(data, "mcpvisor")->valuestring, MCPVISOR_VERSION);
    cJSON_Delete(e);
}

static void error_text_with_type_only(void **state)
{
    (void)state;
    cJSON *id = cJSON_CreateString("req-1");
    assert_non_null(id);
    cJSON *e = error_reply(id, ERR_FORBIDDEN, "Forbidden", "forbidden", -1);
    cJSON_Delete(id);
    assert_string_equal(get(e, "id")->valuestring, "req-1");
    const cJSON *data = get(get(e, "error"), "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(members(data), 2);
    assert_string_equal(get(data, "type")->valuestring, "forbidden");
    assert_null(get(data, "retry_after_ms"));
    assert_string_equal(get(data, "mcpvisor")->valuestring, MCPVISOR_VERSION);
    cJSON_Delete(e);
}

static void error_text_with_retry_only(void **state)
{
    (void)state;
    cJSON *id = cJSON_CreateNumber(1);
    assert_non_null(id);
    cJSON *e = error_reply(id, ERR_SERVER_UNAVAILABLE, "busy", NULL, 0); /* 0 is a real value */
    cJSON_Delete(id);
    const cJSON *data = get(get(e, "error"), "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(members(data), 2);
    assert_null(get(data, "type"));
    assert_int_equal(get(data, "retry_after_ms")->valueint, 0);
    assert_string_equal(get(data, "mcpvisor")->valuestring, MCPVISOR_VERSION);
    cJSON_Delete(e);
}

static void error_text_without_type_or_retry_has_no_data(void **state)
{
    (void)state;
    cJSON *id = cJSON_CreateNumber(3);
    assert_non_null(id);
    cJSON *e = error_reply(id, ERR_METHOD_NOT_FOUND, "Method not found", NULL, -1);
    cJSON_Delete(id);
    const cJSON *err = get(e, "error");
    assert_int_equal(get(err, "code")->valueint, ERR_METHOD_NOT_FOUND);
    assert_string_equal(get(err, "message")->valuestring, "Method not found");
    assert_null(get(err, "data"));
    assert_int_equal(members(err), 2);
    cJSON_Delete(e);
}

static void error_text_with_null_id(void **state)
{
    (void)state;
    cJSON *e = error_reply(NULL, ERR_PARSE, "Parse error", NULL, -1);
    assert_non_null(get(e, "id"));
    assert_true(cJSON_IsNull(get(e, "id")));
    assert_int_equal(jsonrpc_classify(e), JSONRPC_RESPONSE);
    cJSON_Delete(e);

    /* An explicit JSON null id is copied as null too. */
    cJSON *id = cJSON_CreateNull();
    assert_non_null(id);
    e = error_reply(id, ERR_INVALID_REQUEST, "Invalid Request", NULL, -1);
    cJSON_Delete(id);
    assert_true(cJSON_IsNull(get(e, "id")));
    cJSON_Delete(e);
}

static void error_text_copies_id_from_request(void **state)
{
    (void)state;
    cJSON *req = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"id\":\"abc\\\"def\",\"method\":\"ping\"}");
    assert_non_null(req);
    char *text = jsonrpc_error_text(get(req, "id"), ERR_TIMEOUT, "timeout", "timeout", -1);
    assert_non_null(text);
    /* The request itself is untouched: its id was copied, not moved. */
    assert_string_equal(get(req, "id")->valuestring, "abc\"def");
    cJSON *e = cJSON_Parse(text);
    free(text);
    assert_non_null(e);
    assert_string_equal(get(e, "id")->valuestring, "abc\"def");
    assert_int_equal(jsonrpc_classify(req), JSONRPC_REQUEST);
    cJSON_Delete(req);
    cJSON_Delete(e);
}

static void error_text_is_one_line(void **state)
{
    (void)state;
    /* It is written to a child's stdin and to SSE data: no newline may split it. */
    cJSON *id = cJSON_CreateNumber(1);
    assert_non_null(id);
    char *text = jsonrpc_error_text(id, ERR_INTERNAL, "a\nb", "internal", 10);
    cJSON_Delete(id);
    assert_non_null(text);
    assert_null(strchr(text, '\n'));
    assert_null(strchr(text, '\r'));
    free(text);
}

static void error_new_can_be_extended(void **state)
{
    (void)state;
    cJSON *id = cJSON_CreateNumber(9);
    assert_non_null(id);
    cJSON *e = jsonrpc_error_new(id, ERR_UNSUPPORTED_PROTOCOL_VERSION, "Unsupported", "x", -1);
    cJSON_Delete(id); /* the reply owns its own copy */
    assert_non_null(e);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(get(e, "error"), "data");
    assert_non_null(data);
    assert_non_null(cJSON_AddArrayToObject(data, "supported"));
    char *text = jsonrpc_print(e);
    assert_non_null(text);
    cJSON *back = cJSON_Parse(text);
    free(text);
    assert_non_null(back);
    assert_int_equal(get(back, "id")->valueint, 9);
    assert_true(cJSON_IsArray(get(get(get(back, "error"), "data"), "supported")));
    cJSON_Delete(back);
    cJSON_Delete(e);
}

/* A member named twice anywhere is found: cJSON would check the first, other parsers run the
 * last. */
static void duplicate_keys_are_found_at_any_depth(void **state)
{
    (void)state;
    static const char *const dup[] = {
        "{\"a\":1,\"a\":2}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"method\":\"tools/call\"}",
        "{\"params\":{\"name\":\"public\",\"arguments\":{},\"name\":\"admin\"}}",
        "[{\"ok\":1},{\"x\":{\"y\":[{\"z\":1,\"q\":2,\"z\":3}]}}]",
        "{\"b\":1,\"c\":2,\"d\":3,\"e\":4,\"f\":5,\"g\":6,\"h\":7,\"i\":8,\"b\":9}",
    };
    static const char *const fine[] = {
        "{}",
        "[]",
        "{\"a\":1,\"A\":2,\"aa\":3}",
        "{\"a\":{\"a\":{\"a\":1}}}",
        "[{\"a\":1},{\"a\":2}]",
        "\"text\"",
    };
    const char *problem;
    size_t at;
    for (size_t i = 0; i < sizeof(dup) / sizeof(dup[0]); i++) {
        cJSON *v = jsonrpc_parse(dup[i], strlen(dup[i]), &problem, &at);
        assert_non_null(v);
        assert_non_null(problem);
        assert_string_equal(problem, "an object naming a member twice");
        cJSON_Delete(v);
    }
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        cJSON *v = jsonrpc_parse(fine[i], strlen(fine[i]), &problem, &at);
        assert_non_null(v);
        assert_null(problem);
        cJSON_Delete(v);
    }
}

/* Non-ASCII inside strings becomes \\u escapes: the same JSON value, in plain ASCII. */
static void ascii_escapes_everything_above_tilde(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"{\"a\":\"plain\"}", "{\"a\":\"plain\"}"},
        {"\"caf\xc3\xa9\"", "\"caf\\u00e9\""},
        {"\"\xc2\x9b"
         "31m\"",
         "\"\\u009b31m\""},                                /* C1 CSI */
        {"\"\x7f\"", "\"\\u007f\""},                       /* DEL */
        {"\"\xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\""},    /* astral: surrogate pair */
        {"\"\xc0\xaf\"", "\"\\ufffd\\ufffd\""},            /* overlong */
        {"\"\xed\xa0\x80\"", "\"\\ufffd\\ufffd\\ufffd\""}, /* encoded surrogate */
        {"\"\xe2\x82\"", "\"\\ufffd\\ufffd\""},            /* truncated */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 0;
        char *out = jsonrpc_ascii(cases[i].in, strlen(cases[i].in), &n);
        assert_non_null(out);
        assert_string_equal(out, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
        cJSON *a = cJSON_Parse(out);
        assert_non_null(a); /* still JSON */
        cJSON_Delete(a);
        free(out);
    }
    /* The value is kept: cJSON prints the escaped text's string back as the original bytes. */
    cJSON *v = cJSON_Parse("{\"k\":\"caf\xc3\xa9 \xe2\x82\xac\"}");
    char *text = cJSON_PrintUnformatted(v);
    size_t n;
    char *ascii = jsonrpc_ascii(text, strlen(text), &n);
    cJSON *back = cJSON_Parse(ascii);
    assert_string_equal(cJSON_GetObjectItem(back, "k")->valuestring, "caf\xc3\xa9 \xe2\x82\xac");
    cJSON_Delete(back);
    cJSON_Delete(v);
    free(text);
    free(ascii);
}

/* Bytes another parser could read differently from cJSON are flagged, with the value kept. */
static void parse_flags_what_parsers_read_differently(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *problem; /* a word of the message, or NULL for clean */
    } cases[] = {
        {"{\"a\":1}", NULL},
        {"  {\"a\":1}\r\n ", NULL},
        {"{\"a\":\"\\\\u0000\"}", NULL}, /* an escaped backslash, then the text u0000 */
        {"{\"a\":\"ls\\u0000; rm\"}", "NUL"},
        {"{\"k\\u0000x\":1}", "NUL"},
        {"{\"a\":1,\"a\":2}", "twice"},
        {"{\"a\":\"x\\ty\"}", NULL}, /* an escaped tab is JSON */
    };
    size_t at;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *problem = "unset";
        cJSON *v = jsonrpc_parse(cases[i].text, strlen(cases[i].text), &problem, &at);
        assert_non_null(v);
        if (cases[i].problem == NULL)
            assert_null(problem);
        else
            assert_non_null(strstr(problem, cases[i].problem));
        cJSON_Delete(v);
    }
}

/* Bytes that are not strict JSON never reach cJSON: NULL, with what is wrong and where. */
static void parse_refuses_what_is_not_strict_json(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        const char *problem;
        size_t at;
    } cases[] = {
        {"{\"a\":1} {\"b\":2}", 0, "after the JSON value", 8},
        {"{\"a\":1}x", 0, "after the JSON value", 7},
        {"{\"a\":\"x\0y\"}", 11, "control character", 7},
        {"{\"n\":01}", 0, "leading zero", 5},
        {"{\"x\":\"a\xff\xfe\"}", 0, "UTF-8", 7},
        {"\xef\xbb\xbf{}", 0, "byte order mark", 0},
        {"\x0c{}", 0, "control character outside a string", 0},
        /* cJSON skips any byte up to 0x20 between tokens and keeps raw ones in strings; an id's
         * bytes, handed back verbatim, would carry them (found by the jsonrpc fuzz target) */
        {"{\"id\":7\a\a,\"method\":\"ping\"}", 0, "control character outside a string", 7},
        {"\x01{\"a\":1}", 0, "control character outside a string", 0},
        {"{\"a\":\"x\ty\"}", 0, "control character", 7},
        {"{\"a\":\"\\\"\x1f\"}", 0, "control character", 8},
        {"nope", 0, "expected a value", 0},
        {"", 0, "no JSON value", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *problem = NULL;
        size_t at = 12345;
        size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].text);
        assert_null(jsonrpc_parse(cases[i].text, len, &problem, &at));
        assert_non_null(problem);
        assert_non_null(strstr(problem, cases[i].problem));
        assert_int_equal(at, cases[i].at);
    }
    /* Numbers: long up to the ceiling, and beyond the double range, are still JSON. */
    char num[JSONSTRICT_MAX_NUMBER_CHARS + 2];
    memset(num, '7', sizeof(num));
    const char *problem;
    size_t at;
    cJSON *v = jsonrpc_parse(num, JSONSTRICT_MAX_NUMBER_CHARS, &problem, &at);
    assert_non_null(v);
    assert_null(problem);
    cJSON_Delete(v);
    assert_null(jsonrpc_parse(num, JSONSTRICT_MAX_NUMBER_CHARS + 1, &problem, &at));
    assert_non_null(strstr(problem, "longer than"));
    v = jsonrpc_parse("[1e999,-0]", 10, &problem, &at);
    assert_non_null(v);
    assert_null(problem);
    cJSON_Delete(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_flags_what_parsers_read_differently),
        cmocka_unit_test(parse_refuses_what_is_not_strict_json),
        cmocka_unit_test(ascii_escapes_everything_above_tilde),
        cmocka_unit_test(duplicate_keys_are_found_at_any_depth),
        cmocka_unit_test(classify_requests),
        cmocka_unit_test(classify_notifications),
        cmocka_unit_test(classify_responses),
        cmocka_unit_test(classify_rejects_non_objects),
        cmocka_unit_test(classify_rejects_bad_version),
        cmocka_unit_test(classify_rejects_bad_request_ids),
        cmocka_unit_test(classify_rejects_bad_method_or_params),
        cmocka_unit_test(classify_rejects_bad_responses),
        cmocka_unit_test(method_is_returned_for_requests_and_notifications),
        cmocka_unit_test(error_text_with_type_and_retry),
        cmocka_unit_test(error_text_with_type_only),
        cmocka_unit_test(error_text_with_retry_only),
        cmocka_unit_test(error_text_without_type_or_retry_has_no_data),
        cmocka_unit_test(error_text_with_null_id),
        cmocka_unit_test(error_text_copies_id_from_request),
        cmocka_unit_test(error_text_is_one_line),
        cmocka_unit_test(error_new_can_be_extended),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
