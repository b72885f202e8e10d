/*
 * test_idrewrite.c — the broker's id rewriting: the child sees only the broker's id, and the
 * caller gets its own id back byte for byte, whatever it was; nothing else in a message changes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"

static char *splice_id(const char *text, const char *id)
{
    size_t a, b, n;
    assert_int_equal(jsonrpc_id_span(text, strlen(text), &a, &b), 0);
    char *out = jsonrpc_splice(text, strlen(text), a, b, id, strlen(id), &n);
    assert_non_null(out);
    assert_int_equal(n, strlen(out));
    return out;
}

static char *id_of(const char *text)
{
    size_t a, b;
    assert_int_equal(jsonrpc_id_span(text, strlen(text), &a, &b), 0);
    return strndup(text + a, b - a);
}

/* Client request → child (id 17) → the child's answer → client: the id comes back exactly. */
static void round_trip(const char *request, const char *answer, const char *want_id)
{
    char *client_id = id_of(request);
    assert_string_equal(client_id, want_id);
    char *to_child = splice_id(request, "17");
    cJSON *seen = cJSON_Parse(to_child);
    assert_non_null(seen);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(seen, "id")->valueint, 17);
    cJSON *orig = cJSON_Parse(request);
    cJSON_DeleteItemFromObjectCaseSensitive(orig, "id");
    cJSON_DeleteItemFromObjectCaseSensitive(seen, "id");
    assert_true(cJSON_Compare(orig, seen, 1)); /* nothing but the id changed */
    cJSON_Delete(orig);
    cJSON_Delete(seen);

    char *to_client = splice_id(answer, client_id);
    char *back = id_of(to_client);
    assert_string_equal(back, want_id);
    cJSON *parsed = cJSON_Parse(to_client);
    assert_int_equal(jsonrpc_classify(parsed), JSONRPC_RESPONSE);
    cJSON_Delete(parsed);
    free(back);
    free(to_client);
    free(to_child);
    free(client_id);
}

static void string_id_restored_byte_for_byte(void **state)
{
    (void)state;
    round_trip("{\"jsonrpc\":\"2.0\",\"id\":\"abc-\\u00e9\\\"x\",\"method\":\"tools/list\"}",
               "{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{}}", "\"abc-\\u00e9\\\"x\"");
}

static void large_number_id_restored_exactly(void **state)
{
    (void)state;
    /* cJSON prints 9007199254740991 as 9.00719925474099e+15: splicing must not go through it */
    round_trip("{\"jsonrpc\":\"2.0\",\"id\":9007199254740991,\"method\":\"ping\"}",
               "{\"jsonrpc\":\"2.0\",\"id\":17,\"error\":{\"code\":-1,\"message\":\"x\"}}",
               "9007199254740991");
    round_trip("{\"method\":\"ping\", \"id\" : 0 ,\"jsonrpc\":\"2.0\"}",
               "{\"id\":17,\"jsonrpc\":\"2.0\",\"result\":{\"id\":3}}", "0");
}

static void nested_id_keys_are_not_the_id(void **state)
{
    (void)state;
    const char *t = "{\"params\":{\"id\":5,\"a\":[{\"id\":6}],\"s\":\"\\\"id\\\":7\"},"
                    "\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":\"top\"}";
    char *id = id_of(t);
    assert_string_equal(id, "\"top\"");
    free(id);
}

static void unsafe_texts_fall_back(void **state)
{
    (void)state;
    size_t a, b;
    const char *escaped = "{\"jsonrpc\":\"2.0\",\"\\u0069d\":1,\"method\":\"x\"}";
    assert_int_equal(jsonrpc_id_span(escaped, strlen(escaped), &a, &b), -1);
    const char *dup = "{\"id\":1,\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"x\"}";
    assert_int_equal(jsonrpc_id_span(dup, strlen(dup), &a, &b), -1);
    const char *none = "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}";
    assert_int_equal(jsonrpc_id_span(none, strlen(none), &a, &b), -1);
    assert_int_equal(jsonrpc_id_span("[1]", 3, &a, &b), -1);
}

static void id_text_is_canonical(void **state)
{
    (void)state;
    cJSON *n = cJSON_CreateNumber(9007199254740991.0);
    char *t = jsonrpc_id_text(n);
    assert_string_equal(t, "9007199254740991");
    free(t);
    cJSON_Delete(n);
    cJSON *s = cJSON_Parse("\"a\\u0062\"");
    t = jsonrpc_id_text(s);
    assert_string_equal(t, "\"ab\"");
    free(t);
    cJSON_Delete(s);
}

static void swap_on_message_without_id(void **state)
{
    (void)state;
    cJSON *msg = cJSON_Parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    assert_null(jsonrpc_swap_id(msg, NULL));
    assert_int_equal(jsonrpc_classify(msg), JSONRPC_NOTIFICATION);
    cJSON_Delete(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(string_id_restored_byte_for_byte),
        cmocka_unit_test(large_number_id_restored_exactly),
        cmocka_unit_test(nested_id_keys_are_not_the_id),
        cmocka_unit_test(unsafe_texts_fall_back),
        cmocka_unit_test(id_text_is_canonical),
        cmocka_unit_test(swap_on_message_without_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
