/*
 * test_contract.c — tool definitions judged against their pins, the shared schema cache, and
 * the argument and result checks (supervisor/contract.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define ECHO                                                                                       \
    "{\"name\":\"echo\",\"description\":\"Echo.\",\"inputSchema\":{\"type\":\"object\","           \
    "\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}"
#define STRUCT                                                                                     \
    "{\"name\":\"st\",\"inputSchema\":{\"type\":\"object\"},\"outputSchema\":{\"type\":"           \
    "\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}}"
#define WEIRD                                                                                      \
    "{\"name\":\"weird\",\"inputSchema\":{\"type\":\"object\",\"unevaluatedProperties\":false}}"

static char echo_pin[JCS_PIN_HEX];

static void pin_of(const char *json, char out[JCS_PIN_HEX])
{
    cJSON *t = cJSON_Parse(json);
    assert_non_null(t);
    assert_int_equal(jcs_tool_pin(t, out), 0);
    cJSON_Delete(t);
}

/* A manifest naming echo (pinned to `pin` when not NULL) and st (unpinned). */
static void manifest(struct config_manifest *m, struct config_tool tools[2], const char *pin)
{
    memset(m, 0, sizeof(*m));
    memset(tools, 0, 2 * sizeof(*tools));
    tools[0].name = "echo";
    tools[0].version = "2";
    tools[0].sha256 = (char *)pin;
    tools[1].name = "st";
    m->name = "srv";
    m->tools = tools;
    m->ntools = 2;
    m->unlisted_tools_allow = true;
}

static struct contract *listing(const struct config_manifest *m, const char *page)
{
    struct contract *c = contract_new(m);
    cJSON *tools = cJSON_Parse(page);
    char err[256];
    assert_non_null(c);
    assert_non_null(tools);
    assert_int_equal(contract_add_page(c, tools, err, sizeof(err)), 0);
    assert_int_equal(contract_finish(c, err, sizeof(err)), 0);
    cJSON_Delete(tools);
    return c;
}

static void test_verdicts(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    pin_of(ECHO, echo_pin);
    manifest(&m, tools, echo_pin);
    struct contract *c = listing(&m, "[" ECHO "," STRUCT "," WEIRD "]");
    assert_int_equal(c->n, 3);
    assert_int_equal(contract_find(c, "echo")->verdict, CONTRACT_PINNED);
    assert_int_equal(contract_find(c, "st")->verdict, CONTRACT_UNPINNED);
    assert_int_equal(contract_find(c, "weird")->verdict, CONTRACT_UNLISTED);
    assert_non_null(
        strstr(contract_schema_error(contract_find(c, "weird")->schemas), "unevaluatedProperties"));
    assert_null(contract_find(c, "nope"));
    contract_free(c);

    /* A pin that differs is drift, whatever the schemas. */
    manifest(&m, tools, "0000000000000000000000000000000000000000000000000000000000000000");
    c = listing(&m, "[" ECHO "]");
    assert_int_equal(contract_find(c, "echo")->verdict, CONTRACT_DRIFT);
    contract_free(c);
}

static void test_modes_decide_what_hides(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    manifest(&m, tools, NULL);
    m.pin_mode = CONFIG_PIN_ENFORCE;
    assert_true(contract_hides(&m, CONTRACT_DRIFT));
    assert_true(contract_hides(&m, CONTRACT_BAD_SCHEMA));
    assert_false(contract_hides(&m, CONTRACT_UNLISTED));
    assert_false(contract_hides(&m, CONTRACT_PINNED));
    m.pin_mode = CONFIG_PIN_WARN;
    assert_false(contract_hides(&m, CONTRACT_DRIFT));
    m.pin_mode = CONFIG_PIN_OFF;
    assert_false(contract_hides(&m, CONTRACT_DRIFT));
    m.unlisted_tools_allow = false;
    assert_true(contract_hides(&m, CONTRACT_UNLISTED));
}

static void test_malformed_pages_are_refused(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    manifest(&m, tools, NULL);
    static const char *const bad[] = {
        "{}",                                 /* not an array */
        "[{\"description\":\"no name\"}]",    /* a tool without a name */
        "[{\"name\":\"\"}]",                  /* an empty name */
        "[{\"name\":\"x\",\"title\":1e999}]", /* cannot be canonicalized */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct contract *c = contract_new(&m);
        cJSON *t = cJSON_Parse(bad[i]);
        char err[256] = "";
        assert_non_null(t);
        assert_int_equal(contract_add_page(c, t, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        cJSON_Delete(t);
        contract_free(c);
    }
    /* A name listed twice, on one page or two, is found when the listing is finished. */
    struct contract *d = contract_new(&m);
    cJSON *p1 = cJSON_Parse("[" ECHO "," STRUCT "]"), *p2 = cJSON_Parse("[" ECHO "]");
    char err2[256] = "";
    assert_int_equal(contract_add_page(d, p1, err2, sizeof(err2)), 0);
    assert_int_equal(contract_add_page(d, p2, err2, sizeof(err2)), 0);
    assert_int_equal(contract_finish(d, err2, sizeof(err2)), -1);
    assert_non_null(strstr(err2, "listed twice"));
    cJSON_Delete(p1);
    cJSON_Delete(p2);
    contract_free(d);

    /* Pages are bounded. */
    struct contract *c = contract_new(&m);
    cJSON *empty = cJSON_CreateArray();
    char err[256];
    for (int i = 0; i < CONTRACT_MAX_PAGES; i++)
        assert_int_equal(contract_add_page(c, empty, err, sizeof(err)), 0);
    assert_int_equal(contract_add_page(c, empty, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "pages"));
    cJSON_Delete(empty);
    contract_free(c);

    /* So are tools and compiled schema nodes, by the contract's own ceilings. */
    struct contract *few = contract_new(&m);
    few->max_tools = 1;
    cJSON *two = cJSON_Parse("[" ECHO "," STRUCT "]");
    assert_int_equal(contract_add_page(few, two, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 1 tools (limits.max_listing_tools)"));
    contract_free(few);
    struct contract *small = contract_new(&m);
    small->max_nodes = 3;
    assert_int_equal(contract_add_page(small, two, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "limits.max_listing_schema_nodes"));
    assert_true(small->nodes > 3);
    contract_free(small);
    cJSON_Delete(two);
}

static void test_schemas_are_compiled_once_per_definition(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    manifest(&m, tools, NULL);
    size_t before = contract_cache_size();
    struct contract *a = listing(&m, "[" ECHO "]");
    struct contract *b = listing(&m, "[" ECHO "]");
    assert_int_equal(contract_cache_size(), before + 1);
    assert_ptr_equal(contract_find(a, "echo")->schemas, contract_find(b, "echo")->schemas);
    contract_free(a);
    assert_int_equal(contract_cache_size(), before + 1);
    contract_free(b);
    assert_int_equal(contract_cache_size(), before);
}

static void test_a_pin_prefix_collision_is_not_shared(void **state)
{
    /* Two definitions handed the same first 64 bits: each keeps its own schemas. */
    cJSON *t1 = cJSON_Parse(ECHO), *t2 = cJSON_Parse(STRUCT);
    char p1[JCS_PIN_HEX], p2[JCS_PIN_HEX];
    memset(p1, 'a', 64);
    p1[64] = '\0';
    memcpy(p2, p1, JCS_PIN_HEX);
    p2[63] = 'b';
    struct contract_schemas *s1 = contract_schemas_get(t1, p1);
    struct contract_schemas *s2 = contract_schemas_get(t2, p2);
    assert_ptr_not_equal(s1, s2);
    assert_false(contract_has_output_schema(s1));
    assert_true(contract_has_output_schema(s2));
    contract_schemas_unref(s1);
    contract_schemas_unref(s2);
    cJSON_Delete(t1);
    cJSON_Delete(t2);
}

static void test_arguments(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    manifest(&m, tools, NULL);
    struct contract *c = listing(&m, "[" ECHO "]");
    const struct contract_schemas *s = contract_find(c, "echo")->schemas;
    struct jsonschema_error errs[4];
    cJSON *ok = cJSON_Parse("{\"text\":\"hi\"}"), *bad = cJSON_Parse("{\"text\":3}");
    assert_int_equal(contract_check_arguments(s, ok, errs, 4), 0);
    assert_int_equal(contract_check_arguments(s, bad, errs, 4), 1);
    assert_string_equal(errs[0].instance, "/text");
    assert_string_equal(errs[0].keyword, "type");
    /* No arguments at all are checked as {}: "text" is required. */
    assert_int_equal(contract_check_arguments(s, NULL, errs, 4), 1);
    assert_string_equal(errs[0].keyword, "required");
    /* No schema: nothing to check. */
    assert_int_equal(contract_check_arguments(NULL, bad, errs, 4), 0);
    cJSON_Delete(ok);
    cJSON_Delete(bad);
    contract_free(c);
}

static int check(const struct contract_schemas *s, const char *response, size_t *nerrs)
{
    cJSON *msg = cJSON_Parse(response);
    char why[256] = "";
    struct jsonschema_error errs[4];
    assert_non_null(msg);
    int rc = contract_check_result(s, msg, why, sizeof(why), errs, 4, nerrs);
    if (rc == -1)
        assert_true(strlen(why) > 0);
    cJSON_Delete(msg);
    return rc;
}

static void test_results(void **state)
{
    struct config_manifest m;
    struct config_tool tools[2];
    size_t n;
    manifest(&m, tools, NULL);
    struct contract *c = listing(&m, "[" ECHO "," STRUCT "]");
    const struct contract_schemas *e = contract_find(c, "echo")->schemas;
    const struct contract_schemas *st = contract_find(c, "st")->schemas;

    assert_int_equal(check(e, "{\"id\":1,\"result\":{\"content\":[{\"type\":\"text\"}]}}", &n), 0);
    assert_int_equal(check(e, "{\"id\":1,\"error\":{\"code\":-32602,\"message\":\"m\"}}", &n), 0);
    static const char *const bad[] = {
        "{\"id\":1,\"result\":{}}",
        "{\"id\":1,\"result\":\"x\"}",
        "{\"id\":1,\"result\":{\"content\":\"x\"}}",
        "{\"id\":1,\"result\":{\"content\":[{\"text\":\"x\"}]}}",
        "{\"id\":1,\"result\":{\"content\":[1]}}",
        "{\"id\":1,\"result\":{\"content\":[],\"isError\":\"yes\"}}",
        "{\"id\":1,\"result\":{\"content\":[],\"structuredContent\":[1]}}",
        "{\"id\":1,\"error\":{\"message\":\"no code\"}}",
        "{\"id\":1,\"error\":{\"code\":1.5,\"message\":\"m\"}}",
        "{\"id\":1,\"result\":{\"content\":[]},\"error\":{\"code\":1,\"message\":\"m\"}}",
        "{\"id\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(check(e, bad[i], &n), -1);

    /* With an outputSchema: structuredContent is required and checked, unless isError. */
    assert_int_equal(check(st, "{\"result\":{\"content\":[],\"structuredContent\":{\"n\":3}}}", &n),
                     0);
    assert_int_equal(
        check(st, "{\"result\":{\"content\":[],\"structuredContent\":{\"n\":\"x\"}}}", &n), -1);
    assert_int_equal(n, 1);
    assert_int_equal(check(st, "{\"result\":{\"content\":[]}}", &n), -1);
    assert_int_equal(check(st, "{\"result\":{\"content\":[],\"isError\":true}}", &n), 0);
    /* Without schemas, the shape alone. */
    assert_int_equal(check(NULL, "{\"result\":{\"content\":[]}}", &n), 0);
    assert_int_equal(check(NULL, "{\"result\":{}}", &n), -1);
    contract_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_modes_decide_what_hides),
        cmocka_unit_test(test_malformed_pages_are_refused),
        cmocka_unit_test(test_schemas_are_compiled_once_per_definition),
        cmocka_unit_test(test_a_pin_prefix_collision_is_not_shared),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
