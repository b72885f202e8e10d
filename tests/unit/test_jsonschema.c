/*
 * test_jsonschema.c — JSON Schema validation of tool arguments and results
 * (supervisor/jsonschema.c): each keyword's verdict, the instance pointer, keyword and message of
 * its errors, compile-time refusal of what we do not support, reference cycles and the bounds on
 * work. A wrong verdict either forwards arguments the tool never agreed to or refuses a call
 * that was fine.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema.h"
#include "util.h"

#define MAX_ERRS 8

/* Compiles `text`, then deletes the source tree: the compiled schema must not need it. */
static struct jsonschema *compile(const char *text)
{
    cJSON *json = cJSON_Parse(text);
    if (json == NULL)
        fail_msg("schema is not JSON: %s", text);
    char err[512];
    struct jsonschema *s = jsonschema_compile(json, err, sizeof err);
    cJSON_Delete(json);
    if (s == NULL)
        fail_msg("%s: %s", text, err);
    return s;
}

/* The compile error for `text`, which must not compile, must contain `want`. */
static void expect_compile_error(const char *text, const char *want)
{
    cJSON *json = cJSON_Parse(text);
    if (json == NULL)
        fail_msg("schema is not JSON: %s", text);
    char err[512];
    struct jsonschema *s = jsonschema_compile(json, err, sizeof err);
    cJSON_Delete(json);
    if (s != NULL) {
        jsonschema_free(s);
        fail_msg("%s compiled; want an error containing %s", text, want);
    }
    if (strstr(err, want) == NULL)
        fail_msg("%s: error \"%s\" does not contain \"%s\"", text, err, want);
}

static size_t validate(const struct jsonschema *s, const char *text, struct jsonschema_error *errs)
{
    cJSON *json = cJSON_Parse(text);
    if (json == NULL)
        fail_msg("instance is not JSON: %s", text);
    memset(errs, 0, MAX_ERRS * sizeof *errs);
    size_t n = jsonschema_validate(s, json, errs, MAX_ERRS);
    assert_int_equal(jsonschema_validate(s, json, NULL, 0), n);
    cJSON_Delete(json);
    return n;
}

static void expect_valid(const struct jsonschema *s, const char *text)
{
    struct jsonschema_error errs[MAX_ERRS];
    size_t n = validate(s, text, errs);
    if (n != 0)
        fail_msg("%s: want valid, got %zu errors, first at \"%s\" %s: %s", text, n,
                 errs[0].instance, errs[0].keyword, errs[0].message);
}

/* `text` must be invalid, with its first error at `pointer` from `keyword`. */
static void expect_error(const struct jsonschema *s, const char *text, const char *pointer,
                         const char *keyword)
{
    struct jsonschema_error errs[MAX_ERRS];
    size_t n = validate(s, text, errs);
    if (n == 0)
        fail_msg("%s: want an error from %s at \"%s\", got valid", text, keyword, pointer);
    if (strcmp(errs[0].instance, pointer) != 0 || strcmp(errs[0].keyword, keyword) != 0)
        fail_msg("%s: want %s at \"%s\", got %s at \"%s\": %s", text, keyword, pointer,
                 errs[0].keyword, errs[0].instance, errs[0].message);
}

/* Like expect_error, and the message must be exactly `message`. */
static void expect_message(const struct jsonschema *s, const char *text, const char *pointer,
                           const char *keyword, const char *message)
{
    struct jsonschema_error errs[MAX_ERRS];
    expect_error(s, text, pointer, keyword);
    validate(s, text, errs);
    assert_string_equal(errs[0].message, message);
}

static void type_names_each_json_type(void **state)
{
    struct jsonschema *s = compile("{\"type\": \"integer\"}");
    expect_valid(s, "3");
    expect_valid(s, "1.0"); /* a number with zero fraction is an integer */
    expect_valid(s, "-1e3");
    expect_message(s, "1.5", "", "type", "expected integer, got number");
    expect_message(s, "\"3\"", "", "type", "expected integer, got string");
    jsonschema_free(s);

    s = compile("{\"type\": [\"string\", \"null\"]}");
    expect_valid(s, "\"x\"");
    expect_valid(s, "null");
    expect_message(s, "7", "", "type", "expected null or string, got integer");
    expect_message(s, "{}", "", "type", "expected null or string, got object");
    jsonschema_free(s);

    s = compile("{\"type\": \"number\"}");
    expect_valid(s, "7");
    expect_valid(s, "7.25");
    expect_error(s, "true", "", "type");
    jsonschema_free(s);

    s = compile("{\"type\": [\"boolean\", \"array\"]}");
    expect_valid(s, "false");
    expect_valid(s, "[]");
    expect_error(s, "0", "", "type");
    jsonschema_free(s);
}

static void properties_and_required_report_nested_pointers(void **state)
{
    struct jsonschema *s = compile("{\"type\": \"object\", \"required\": [\"user\"],"
                                   " \"properties\": {\"user\": {\"type\": \"object\","
                                   "  \"required\": [\"name\", \"age\"],"
                                   "  \"properties\": {\"name\": {\"type\": \"string\"},"
                                   "                 \"age\": {\"type\": \"integer\"}}}}}");
    expect_valid(s, "{\"user\": {\"name\": \"ada\", \"age\": 36}, \"other\": 1}");
    expect_message(s, "{}", "", "required", "missing required property \"user\"");
    expect_message(s, "{\"user\": {\"name\": \"ada\"}}", "/user", "required",
                   "missing required property \"age\"");
    expect_message(s, "{\"user\": {\"name\": \"ada\", \"age\": \"old\"}}", "/user/age", "type",
                   "expected integer, got string");

    /* Every error is counted; as many as fit are written, in order. */
    struct jsonschema_error errs[MAX_ERRS];
    assert_int_equal(validate(s, "{\"user\": {\"name\": 1, \"age\": true}}", errs), 2);
    assert_string_equal(errs[0].instance, "/user/name");
    assert_string_equal(errs[1].instance, "/user/age");
    jsonschema_free(s);
}

static void pointers_escape_tilde_and_slash(void **state)
{
    struct jsonschema *s = compile("{\"properties\": {\"a/b\": {\"type\": \"string\"},"
                                   " \"m~n\": {\"items\": {\"type\": \"string\"}}}}");
    expect_error(s, "{\"a/b\": 1}", "/a~1b", "type");
    expect_error(s, "{\"m~n\": [\"x\", 2]}", "/m~0n/1", "type");
    jsonschema_free(s);
}

static void additional_properties_false_names_the_property(void **state)
{
    struct jsonschema *s = compile("{\"properties\": {\"a\": {}},"
                                   " \"patternProperties\": {\"^x-\": {\"type\": \"string\"}},"
                                   " \"additionalProperties\": false}");
    expect_valid(s, "{\"a\": 1, \"x-y\": \"z\"}");
    expect_message(s, "{\"a\": 1, \"b\": 2}", "/b", "additionalProperties",
                   "property \"b\" is not allowed");
    expect_error(s, "{\"x-y\": 3}", "/x-y", "type");
    struct jsonschema_error errs[MAX_ERRS];
    assert_int_equal(validate(s, "{\"b\": 1, \"c\": 2}", errs), 2);
    jsonschema_free(s);

    s = compile("{\"properties\": {\"a\": {}}, \"additionalProperties\": {\"type\": \"boolean\"}}");
    expect_valid(s, "{\"a\": 1, \"b\": true}");
    expect_error(s, "{\"b\": 1}", "/b", "type");
    jsonschema_free(s);
}

static void pattern_properties_apply_every_matching_pattern(void **state)
{
    struct jsonschema *s = compile("{\"patternProperties\": {\"f.o\": {\"minLength\": 2},"
                                   " \"^fo\": {\"maxLength\": 3}}}");
    expect_valid(s, "{\"foo\": \"abc\", \"bar\": \"\"}");
    expect_error(s, "{\"foo\": \"a\"}", "/foo", "minLength");
    expect_error(s, "{\"foo\": \"abcd\"}", "/foo", "maxLength");
    jsonschema_free(s);
}

static void items_and_prefix_items_2020(void **state)
{
    struct jsonschema *s = compile("{\"prefixItems\": [{\"type\": \"string\"}, {\"type\": "
                                   "\"integer\"}], \"items\": {\"type\": \"boolean\"}}");
    expect_valid(s, "[]");
    expect_valid(s, "[\"a\", 1, true, false]");
    expect_error(s, "[1]", "/0", "type");
    expect_error(s, "[\"a\", 1, true, 2]", "/3", "type");
    jsonschema_free(s);

    s = compile("{\"prefixItems\": [{}], \"items\": false}");
    expect_valid(s, "[1]");
    expect_message(s, "[1, 2]", "/1", "items", "item 1 is not allowed: at most 1 items");
    jsonschema_free(s);

    expect_compile_error("{\"items\": [{}]}", "unsupported keyword \"items\" at /items");
}

static void items_array_is_a_tuple_in_draft7(void **state)
{
    struct jsonschema *s = compile("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                                   " \"items\": [{\"type\": \"string\"}],"
                                   " \"additionalItems\": {\"type\": \"integer\"}}");
    expect_valid(s, "[\"a\", 1, 2]");
    expect_error(s, "[1]", "/0", "type");
    expect_error(s, "[\"a\", \"b\"]", "/1", "type");
    jsonschema_free(s);

    s = compile("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                " \"items\": [{}], \"additionalItems\": false}");
    expect_error(s, "[1, 2]", "/1", "additionalItems");
    jsonschema_free(s);

    /* additionalItems means nothing next to items in its schema form */
    s = compile("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                " \"items\": {\"type\": \"integer\"}, \"additionalItems\": false}");
    expect_valid(s, "[1, 2, 3]");
    expect_error(s, "[1, \"x\"]", "/1", "type");
    jsonschema_free(s);

    expect_compile_error("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                         " \"prefixItems\": [{}]}",
                         "\"prefixItems\" at /prefixItems: not a draft-07 keyword");
    expect_compile_error("{\"additionalItems\": false}",
                         "\"additionalItems\" at /additionalItems: not a 2020-12 keyword");
}

static void min_and_max_items(void **state)
{
    struct jsonschema *s = compile("{\"minItems\": 1, \"maxItems\": 2.0}");
    expect_valid(s, "[1]");
    expect_valid(s, "[1, 2]");
    expect_valid(s, "\"not an array\"");
    expect_message(s, "[]", "", "minItems", "array has 0 items; the minimum is 1");
    expect_message(s, "[1, 2, 3]", "", "maxItems", "array has 3 items; the maximum is 2");
    jsonschema_free(s);
}

static void unique_items_compare_deeply(void **state)
{
    struct jsonschema *s = compile("{\"uniqueItems\": true}");
    expect_valid(s, "[1, 2, \"1\", true, null, [1], {\"a\": 1}]");
    expect_message(s, "[1, 1.0]", "", "uniqueItems", "items 0 and 1 are equal");
    expect_error(s, "[{\"a\": 1, \"b\": [2]}, {\"b\": [2.0], \"a\": 1}]", "", "uniqueItems");
    expect_valid(s, "[{\"a\": false}, {\"a\": 0}]");
    expect_valid(s, "[[1, 2], [2, 1]]");
    expect_valid(s, "[{\"a\": 1}, {\"a\": 1, \"b\": 2}]");
    jsonschema_free(s);

    s = compile("{\"uniqueItems\": false}");
    expect_valid(s, "[1, 1]");
    jsonschema_free(s);
}

static void enum_and_const_compare_deeply(void **state)
{
    struct jsonschema *s = compile("{\"enum\": [\"red\", 2, {\"k\": [null]}]}");
    expect_valid(s, "\"red\"");
    expect_valid(s, "2.0");
    expect_valid(s, "{\"k\": [null]}");
    expect_message(s, "\"blue\"", "", "enum", "value is not one of the 3 allowed values");
    expect_error(s, "{\"k\": [null], \"j\": 1}", "", "enum");
    expect_error(s, "true", "", "enum");
    jsonschema_free(s);

    s = compile("{\"const\": {\"a\": [1, false]}}");
    expect_valid(s, "{\"a\": [1.0, false]}");
    expect_error(s, "{\"a\": [1, 0]}", "", "const");
    expect_error(s, "{\"a\": [1]}", "", "const");
    jsonschema_free(s);

    s = compile("{\"const\": null}");
    expect_valid(s, "null");
    expect_error(s, "false", "", "const");
    jsonschema_free(s);
}

static void numeric_bounds(void **state)
{
    struct jsonschema *s = compile("{\"minimum\": 1, \"maximum\": 10,"
                                   " \"exclusiveMinimum\": 0, \"exclusiveMaximum\": 10.5}");
    expect_valid(s, "1");
    expect_valid(s, "10");
    expect_valid(s, "\"strings are not numbers\"");
    expect_message(s, "0.5", "", "minimum", "0.5 is less than the minimum 1");
    expect_message(s, "10.25", "", "maximum", "10.25 is greater than the maximum 10");
    jsonschema_free(s);

    s = compile("{\"exclusiveMinimum\": 0, \"exclusiveMaximum\": 1}");
    expect_valid(s, "0.5");
    expect_message(s, "0", "", "exclusiveMinimum", "0 is not greater than 0");
    expect_message(s, "1", "", "exclusiveMaximum", "1 is not less than 1");
    jsonschema_free(s);

    /* draft-04's boolean forms are refused, not misread */
    expect_compile_error("{\"minimum\": 1, \"exclusiveMinimum\": true}",
                         "unsupported keyword \"exclusiveMinimum\" at /exclusiveMinimum: the "
                         "boolean form is draft-04");
    expect_compile_error("{\"maximum\": \"10\"}", "invalid schema at /maximum: must be a number");
}

static void multiple_of_tolerates_binary_fractions(void **state)
{
    struct jsonschema *s = compile("{\"multipleOf\": 0.1}");
    expect_valid(s, "0.3");
    expect_valid(s, "12.7");
    expect_valid(s, "0");
    expect_message(s, "0.35", "", "multipleOf", "0.35 is not a multiple of 0.1");
    jsonschema_free(s);

    s = compile("{\"multipleOf\": 3}");
    expect_valid(s, "-9");
    expect_error(s, "10", "", "multipleOf");
    jsonschema_free(s);

    s = compile("{\"multipleOf\": 0.123456789}");
    expect_error(s, "1e308", "", "multipleOf"); /* the quotient overflows: no multiple */
    jsonschema_free(s);

    expect_compile_error("{\"multipleOf\": 0}", "must be a number greater than 0");
}

static void string_lengths_count_code_points(void **state)
{
    struct jsonschema *s = compile("{\"minLength\": 2, \"maxLength\": 3}");
    expect_valid(s, "\"ab\"");
    expect_valid(s, "\"日本語\"");          /* 3 code points, 9 bytes */
    expect_valid(s, "\"\\ud83d\\ude00!\""); /* a surrogate pair is one code point */
    expect_message(s, "\"é\"", "", "minLength", "string is 1 characters long; the minimum is 2");
    expect_message(s, "\"abcd\"", "", "maxLength", "string is 4 characters long; the maximum is 3");
    expect_valid(s, "12345");
    jsonschema_free(s);

    expect_compile_error("{\"minLength\": -1}",
                         "invalid schema at /minLength: must be a non-negative integer");
    expect_compile_error("{\"maxLength\": 1.5}", "must be a non-negative integer");
}

static void pattern_translates_ecma_escapes(void **state)
{
    struct jsonschema *s = compile("{\"pattern\": \"^\\\\d{3}-\\\\w+\\\\s?$\"}");
    expect_valid(s, "\"123-ab_c\"");
    expect_valid(s, "\"123-x \"");
    expect_message(s, "\"12-x\"", "", "pattern",
                   "string does not match the pattern \"^\\d{3}-\\w+\\s?$\"");
    expect_error(s, "\"١٢٣-x\"", "", "pattern"); /* \d is ASCII only, as in ECMA */
    expect_valid(s, "7");
    jsonschema_free(s);

    /* unanchored, like RegExp.test */
    s = compile("{\"pattern\": \"b+\"}");
    expect_valid(s, "\"abbc\"");
    expect_error(s, "\"ac\"", "", "pattern");
    jsonschema_free(s);

    /* "." is one code point but no line terminator */
    s = compile("{\"pattern\": \"^a.c$\"}");
    expect_valid(s, "\"aéc\"");
    expect_error(s, "\"a\\nc\"", "", "pattern");
    jsonschema_free(s);

    /* classes with escapes, positional "]" "^" "-", non-capturing groups, lazy quantifiers,
     * literal braces and escaped metacharacters */
    s = compile("{\"pattern\": \"^[\\\\w.\\\\]^-]+@(?:[a-z]+?\\\\.)+[a-z]{2,}$\"}");
    expect_valid(s, "\"a.b]^-c@mail.example.org\"");
    expect_error(s, "\"a b@x.org\"", "", "pattern");
    jsonschema_free(s);

    s = compile("{\"pattern\": \"^\\\\$\\\\{[^}\\\\s]+}\\\\.\\\\*\\\\u00e9$\"}");
    expect_valid(s, "\"${name}.*é\"");
    expect_error(s, "\"${na me}.*é\"", "", "pattern");
    jsonschema_free(s);

    s = compile("{\"pattern\": \"^[à-ÿ]+x{$\"}");
    expect_valid(s, "\"éèx{\"");
    expect_error(s, "\"ex{\"", "", "pattern");
    jsonschema_free(s);

    s = compile("{\"pattern\": \"^a[^]\\\\cJ$\"}"); /* [^] is anything, \\cJ a newline */
    expect_valid(s, "\"a\\n\\n\"");
    expect_error(s, "\"a\\n\"", "", "pattern");
    jsonschema_free(s);

    s = compile("{\"pattern\": \"^(?<year>[0-9]{4})-[^\\\\u0000-\\\\u001f]*$\"}");
    expect_valid(s, "\"2024-ok\"");
    expect_error(s, "\"2024-\\u0007\"", "", "pattern");
    jsonschema_free(s);
}

static void pattern_refuses_what_ere_cannot_do(void **state)
{
    expect_compile_error("{\"pattern\": \"^(?=a)\"}",
                         "unsupported keyword \"pattern\" at /pattern: pattern \"^(?=a)\": "
                         "lookahead and lookbehind are not supported");
    expect_compile_error("{\"pattern\": \"(a)\\\\1\"}", "backreferences");
    expect_compile_error("{\"pattern\": \"\\\\bword\"}", "word boundaries");
    expect_compile_error("{\"pattern\": \"\\\\p{L}\"}", "Unicode property escapes");
    expect_compile_error("{\"pattern\": \"(?i)abc\"}", "inline flags");
    expect_compile_error("{\"pattern\": \"[\\\\D]\"}", "inside a class");
    expect_compile_error("{\"pattern\": \"[z-a]\"}", "out of order");
    expect_compile_error("{\"pattern\": \"(ab\"}", "missing closing parenthesis");
    /* stacked quantifiers: invalid ECMA-262 (regcomp once took 45 s on "^a" and 100 "+"; 60 keep
     * the message whole) */
    char stacked[160] = "{\"pattern\": \"^a";
    for (int i = 0; i < 60; i++)
        strcat(stacked, "+");
    strcat(stacked, "\"}");
    expect_compile_error(stacked, "a quantifier follows a quantifier");
    expect_compile_error("{\"pattern\": \"a{2}*\"}", "a quantifier follows a quantifier");
    expect_compile_error("{\"pattern\": \"a**\"}", "a quantifier follows a quantifier");
    expect_compile_error("{\"patternProperties\": {\"(?<!x)y\": {}}}",
                         "unsupported keyword \"patternProperties\" at /patternProperties/(?<!x)y");
}

/* A pattern that backtracks without end (glibc regexec took 24 s on 3,001 characters) is refused
 * within the matching limits, quickly, with a message saying so, and lazy forms still work. */
static void pattern_matching_is_bounded(void **state)
{
    struct jsonschema_error errs[MAX_ERRS];
    const char *cases[] = {"{\"pattern\": \"^(a{1,100}){1,100}$\"}", "{\"pattern\": \"^(a|a)*$\"}",
                           "{\"pattern\": \"^(a+)+$\"}"};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char err[512];
        cJSON *json = cJSON_Parse(cases[k]);
        struct jsonschema *s = jsonschema_compile(json, err, sizeof err);
        cJSON_Delete(json);
        if (s == NULL) { /* too large to compile is "cannot be validated": also bounded */
            assert_non_null(strstr(err, "unsupported keyword \"pattern\""));
            continue;
        }
        char inst[3100];
        inst[0] = '"';
        memset(inst + 1, 'a', 3000);
        memcpy(inst + 3001, "b\"", 3);
        int64_t t0 = util_mono_ms();
        size_t n = validate(s, inst, errs);
        int64_t took = util_mono_ms() - t0;
        assert_int_equal(n, 1);
        assert_string_equal(errs[0].keyword, "pattern");
        assert_true(took < 2000);
        jsonschema_free(s);
    }
    struct jsonschema *s = compile("{\"pattern\": \"^(a+)+$\"}");
    expect_valid(s, "\"aaaa\"");
    jsonschema_free(s);
}

static void format_is_an_annotation(void **state)
{
    struct jsonschema *s = compile("{\"format\": \"email\"}");
    expect_valid(s, "\"not an email\"");
    jsonschema_free(s);
    s = compile("{\"format\": \"x-vendor-format\"}");
    expect_valid(s, "\"anything\"");
    jsonschema_free(s);
    expect_compile_error("{\"format\": 1}", "invalid schema at /format: must be a string");
}

static void annotations_are_accepted(void **state)
{
    struct jsonschema *s = compile(
        "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", \"$id\": "
        "\"https://example.com/tool\", \"$anchor\": \"top\", \"$comment\": \"c\", \"title\": \"t\","
        " \"description\": \"d\", \"default\": {}, \"examples\": [1], \"deprecated\": false,"
        " \"readOnly\": true, \"writeOnly\": false, \"contentMediaType\": \"text/plain\","
        " \"contentEncoding\": \"base64\", \"type\": \"object\","
        " \"oneOf\": [{\"required\": [\"a\"]}, {\"required\": [\"b\"]}],"
        " \"discriminator\": {\"propertyName\": \"kind\"}}");
    expect_valid(s, "{\"a\": 1}");
    expect_error(s, "{}", "", "oneOf");
    expect_error(s, "[]", "", "type");
    jsonschema_free(s);
}

static void applicators_all_any_one_not(void **state)
{
    struct jsonschema *s = compile("{\"allOf\": [{\"type\": \"integer\"}, {\"minimum\": 2}]}");
    expect_valid(s, "3");
    expect_error(s, "1", "", "minimum");
    expect_error(s, "2.5", "", "type");
    jsonschema_free(s);

    s = compile("{\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]}");
    expect_valid(s, "null");
    expect_message(s, "1", "", "anyOf", "value matches none of the 2 anyOf schemas");
    jsonschema_free(s);

    s = compile("{\"oneOf\": [{\"type\": \"integer\"}, {\"minimum\": 2}]}");
    expect_valid(s, "1");
    expect_valid(s, "2.5");
    expect_message(s, "3", "", "oneOf",
                   "value matches oneOf schemas 0 and 1; exactly one must match");
    expect_message(s, "1.5", "", "oneOf", "value matches none of the 2 oneOf schemas");
    jsonschema_free(s);

    s = compile("{\"not\": {\"type\": \"string\"}}");
    expect_valid(s, "1");
    expect_message(s, "\"s\"", "", "not", "value matches the schema it must not match (not)");
    jsonschema_free(s);

    s = compile("{\"properties\": {\"v\": {\"anyOf\": [{\"type\": \"string\"}, {}]}}}");
    expect_valid(s, "{\"v\": 1}");
    jsonschema_free(s);
}

static void if_then_else_picks_a_branch(void **state)
{
    struct jsonschema *s =
        compile("{\"if\": {\"properties\": {\"kind\": {\"const\": \"file\"}}},"
                " \"then\": {\"required\": [\"path\"]}, \"else\": {\"required\": [\"url\"]}}");
    expect_valid(s, "{\"kind\": \"file\", \"path\": \"/x\"}");
    expect_valid(s, "{\"kind\": \"link\", \"url\": \"u\"}");
    expect_message(s, "{\"kind\": \"file\"}", "", "required", "missing required property \"path\"");
    expect_error(s, "{\"kind\": \"link\"}", "", "required");
    jsonschema_free(s);

    s = compile("{\"then\": false, \"else\": false}"); /* without "if" they do nothing */
    expect_valid(s, "1");
    jsonschema_free(s);
}

static void boolean_schemas(void **state)
{
    struct jsonschema *s = compile("true");
    expect_valid(s, "{\"anything\": [1]}");
    jsonschema_free(s);

    s = compile("false");
    expect_message(s, "null", "", "false", "no value is allowed here (schema false)");
    jsonschema_free(s);

    s = compile("{\"properties\": {\"gone\": false}}");
    expect_valid(s, "{\"kept\": 1}");
    expect_error(s, "{\"gone\": 1}", "/gone", "properties");
    jsonschema_free(s);

    expect_compile_error("3",
                         "invalid schema at the root: a schema must be an object or a boolean");
}

static void object_size_and_property_names(void **state)
{
    struct jsonschema *s = compile("{\"minProperties\": 1, \"maxProperties\": 2,"
                                   " \"propertyNames\": {\"pattern\": \"^[a-z]+$\"}}");
    expect_valid(s, "{\"a\": 1, \"b\": 2}");
    expect_message(s, "{}", "", "minProperties", "object has 0 properties; the minimum is 1");
    expect_message(s, "{\"a\": 1, \"b\": 2, \"c\": 3}", "", "maxProperties",
                   "object has 3 properties; the maximum is 2");
    expect_message(s, "{\"a\": 1, \"B\": 2}", "/B", "propertyNames",
                   "property name \"B\" is not allowed");
    jsonschema_free(s);
}

static void dependent_required_and_schemas(void **state)
{
    struct jsonschema *s = compile("{\"dependentRequired\": {\"card\": [\"cvv\"]},"
                                   " \"dependentSchemas\": {\"zip\": {\"properties\": "
                                   "{\"country\": {\"const\": \"US\"}}, \"required\": "
                                   "[\"country\"]}}}");
    expect_valid(s, "{}");
    expect_valid(s, "{\"card\": 1, \"cvv\": 2}");
    expect_message(s, "{\"card\": 1}", "", "dependentRequired",
                   "property \"cvv\" is required when \"card\" is present");
    expect_valid(s, "{\"zip\": 1, \"country\": \"US\"}");
    expect_error(s, "{\"zip\": 1, \"country\": \"FR\"}", "/country", "const");
    expect_error(s, "{\"zip\": 1}", "", "required");
    jsonschema_free(s);

    expect_compile_error("{\"dependencies\": {}}", "not a 2020-12 keyword");
}

static void dependencies_in_draft7(void **state)
{
    struct jsonschema *s = compile("{\"$schema\": \"http://json-schema.org/draft-07/schema\","
                                   " \"dependencies\": {\"a\": [\"b\"], \"c\": {\"required\": "
                                   "[\"d\"]}, \"e\": false}}");
    expect_valid(s, "{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}");
    expect_message(s, "{\"a\": 1}", "", "dependencies",
                   "property \"b\" is required when \"a\" is present");
    expect_error(s, "{\"c\": 1}", "", "required");
    expect_error(s, "{\"e\": 1}", "", "dependencies");
    jsonschema_free(s);

    expect_compile_error("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                         " \"dependentRequired\": {}}",
                         "not a draft-07 keyword");
}

static void contains_with_min_and_max(void **state)
{
    struct jsonschema *s = compile("{\"contains\": {\"type\": \"string\"}}");
    expect_valid(s, "[1, \"a\"]");
    expect_message(s, "[1, 2]", "", "contains", "no item matches the contains schema");
    expect_error(s, "[]", "", "contains");
    jsonschema_free(s);

    s = compile("{\"contains\": {\"const\": 1}, \"minContains\": 2, \"maxContains\": 3}");
    expect_valid(s, "[1, 1, 2]");
    expect_message(s, "[1, 2]", "", "minContains",
                   "1 items match the contains schema; the minimum is 2");
    expect_message(s, "[1, 1, 1, 1]", "", "maxContains",
                   "4 items match the contains schema; the maximum is 3");
    jsonschema_free(s);

    s = compile("{\"contains\": {\"const\": 1}, \"minContains\": 0}");
    expect_valid(s, "[]");
    jsonschema_free(s);

    expect_compile_error("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                         " \"contains\": {}, \"minContains\": 1}",
                         "not a draft-07 keyword");
}

static void refs_to_defs_definitions_and_root(void **state)
{
    expect_compile_error("{\"properties\": {\"x\": {\"$ref\": \"#/$defs/missing\"}}}",
                         "invalid schema at /properties/x/$ref: reference "
                         "\"#/$defs/missing\" points at nothing");

    struct jsonschema *s =
        compile("{\"$defs\": {\"name\": {\"type\": \"string\", \"minLength\": 1},"
                "            \"we ird/one\": {\"const\": 7}},"
                " \"definitions\": {\"age\": {\"type\": \"integer\"}},"
                " \"properties\": {\"name\": {\"$ref\": \"#/$defs/name\"},"
                "                 \"age\": {\"$ref\": \"#/definitions/age\"},"
                "                 \"odd\": {\"$ref\": \"#/$defs/we%20ird~1one\"}}}");
    expect_valid(s, "{\"name\": \"ada\", \"age\": 36, \"odd\": 7}");
    expect_message(s, "{\"name\": \"\"}", "/name", "minLength",
                   "string is 0 characters long; the minimum is 1");
    expect_error(s, "{\"age\": \"x\"}", "/age", "type");
    expect_error(s, "{\"odd\": 8}", "/odd", "const");
    jsonschema_free(s);

    /* a recursive tree through "#" */
    s = compile("{\"type\": \"object\", \"required\": [\"v\"],"
                " \"properties\": {\"v\": {\"type\": \"integer\"},"
                "  \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": \"#\"}}}}");
    expect_valid(s, "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 3}]}]}");
    expect_error(s, "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": \"x\"}]}]}",
                 "/kids/0/kids/0/v", "type");
    jsonschema_free(s);

    /* the root's $id (and its $anchor) name the root */
    s = compile("{\"$id\": \"https://example.com/s.json\", \"$anchor\": \"top\","
                " \"$defs\": {\"n\": {\"type\": \"number\"}},"
                " \"properties\": {\"a\": {\"$ref\": \"https://example.com/s.json#/$defs/n\"},"
                "                 \"b\": {\"items\": {\"$ref\": \"#top\"}}}}");
    expect_valid(s, "{\"a\": 1, \"b\": [{\"a\": 2}]}");
    expect_error(s, "{\"b\": [{\"a\": \"x\"}]}", "/b/0/a", "type");
    jsonschema_free(s);
}

static void ref_siblings_depend_on_the_draft(void **state)
{
    /* draft-07 ignores the siblings of $ref ... */
    struct jsonschema *s =
        compile("{\"$schema\": \"http://json-schema.org/draft-07/schema#\","
                " \"definitions\": {\"s\": {\"type\": \"string\"}},"
                " \"properties\": {\"a\": {\"$ref\": \"#/definitions/s\", \"maxLength\": 1,"
                "  \"x-ignored\": true}}}");
    expect_valid(s, "{\"a\": \"long\"}");
    expect_error(s, "{\"a\": 1}", "/a", "type");
    jsonschema_free(s);

    /* ... 2020-12 applies them alongside */
    s = compile("{\"$defs\": {\"s\": {\"type\": \"string\"}},"
                " \"properties\": {\"a\": {\"$ref\": \"#/$defs/s\", \"maxLength\": 1}}}");
    expect_valid(s, "{\"a\": \"l\"}");
    expect_error(s, "{\"a\": \"long\"}", "/a", "maxLength");
    expect_error(s, "{\"a\": 1}", "/a", "type");
    jsonschema_free(s);
}

static void ref_cycles_are_refused(void **state)
{
    expect_compile_error("{\"$ref\": \"#\"}", "(a $ref cycle)");
    expect_compile_error("{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/b\"},"
                         " \"b\": {\"allOf\": [{\"$ref\": \"#/$defs/a\"}]}},"
                         " \"properties\": {\"x\": {\"$ref\": \"#/$defs/a\"}}}",
                         "a $ref cycle");
    expect_compile_error("{\"anyOf\": [{\"not\": {\"$ref\": \"#\"}}]}", "a $ref cycle");
    /* recursion that descends into the value first is fine */
    struct jsonschema *s = compile("{\"anyOf\": [{\"type\": \"integer\"},"
                                   " {\"type\": \"array\", \"items\": {\"$ref\": \"#\"}}]}");
    expect_valid(s, "[1, [2, [3]]]");
    expect_error(s, "[1, [2, [\"x\"]]]", "", "anyOf");
    jsonschema_free(s);
}

static void inplace_chains_are_bounded(void **state)
{
    /* $defs d0 .. d40, each a $ref to the next: a chain longer than JSONSCHEMA_MAX_INPLACE */
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "{\"$ref\": \"#/$defs/d0\", \"$defs\": {");
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "\"d%d\": {\"$ref\": \"#/$defs/d%d\"},", i, i + 1);
    snprintf(text + len, sizeof text - len, "\"d40\": {\"type\": \"integer\"}}}");
    expect_compile_error(text, "subschemas apply in a chain to the same value");

    /* ten of them are fine */
    len = (size_t)snprintf(text, sizeof text, "{\"$ref\": \"#/$defs/d0\", \"$defs\": {");
    for (int i = 0; i < 10; i++)
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "\"d%d\": {\"$ref\": \"#/$defs/d%d\"},", i, i + 1);
    snprintf(text + len, sizeof text - len, "\"d10\": {\"type\": \"integer\"}}}");
    struct jsonschema *s = compile(text);
    expect_valid(s, "1");
    expect_error(s, "\"x\"", "", "type");
    jsonschema_free(s);
}

/* "[[[...1...]]]" nested `depth` times. */
static char *nested_arrays(size_t depth)
{
    char *text = malloc(2 * depth + 2);
    assert_non_null(text);
    memset(text, '[', depth);
    text[depth] = '1';
    memset(text + depth + 1, ']', depth);
    text[2 * depth + 1] = '\0';
    return text;
}

static void depth_limit_stops_descent(void **state)
{
    struct jsonschema *s =
        compile("{\"type\": [\"array\", \"integer\"], \"items\": {\"$ref\": \"#\"}}");
    char *ok = nested_arrays(JSONSCHEMA_MAX_DEPTH);
    expect_valid(s, ok);
    free(ok);

    char *deep = nested_arrays(100);
    char pointer[256];
    size_t len = 0;
    for (int i = 0; i < JSONSCHEMA_MAX_DEPTH + 1; i++)
        len += (size_t)snprintf(pointer + len, sizeof pointer - len, "/0");
    expect_message(s, deep, pointer, "depth", "value nested more than 64 levels deep");
    free(deep);
    jsonschema_free(s);

    /* a schema that does not look inside does not care how deep the value goes */
    s = compile("{\"type\": \"array\"}");
    deep = nested_arrays(500);
    expect_valid(s, deep);
    free(deep);
    jsonschema_free(s);
}

static void work_budget_stops_exponential_schemas(void **state)
{
    /* each level applies the one below eight times: 8^10 applications if nothing stopped it */
    char text[8192];
    size_t len = (size_t)snprintf(text, sizeof text, "{\"$ref\": \"#/$defs/d0\", \"$defs\": {");
    for (int i = 0; i < 10; i++) {
        len += (size_t)snprintf(text + len, sizeof text - len, "\"d%d\": {\"allOf\": [", i);
        for (int k = 0; k < 8; k++)
            len += (size_t)snprintf(text + len, sizeof text - len, "%s{\"$ref\": \"#/$defs/d%d\"}",
                                    k > 0 ? "," : "", i + 1);
        len += (size_t)snprintf(text + len, sizeof text - len, "]},");
    }
    snprintf(text + len, sizeof text - len, "\"d10\": {\"type\": \"integer\"}}}");
    struct jsonschema *s = compile(text);
    struct jsonschema_error errs[MAX_ERRS];
    size_t n = validate(s, "1", errs);
    assert_int_equal(n, 1);
    assert_string_equal(errs[0].keyword, "budget");
    assert_string_equal(errs[0].instance, "");
    jsonschema_free(s);
}

static void unsupported_keywords_are_all_named(void **state)
{
    expect_compile_error("{\"properties\": {\"a\": {\"unevaluatedProperties\": false}}}",
                         "unsupported keyword \"unevaluatedProperties\" at "
                         "/properties/a/unevaluatedProperties");
    expect_compile_error("{\"items\": {\"$dynamicRef\": \"#x\"}, \"unevaluatedItems\": false,"
                         " \"nullable\": true}",
                         "3 unsupported keywords: unsupported keyword \"$dynamicRef\" at "
                         "/items/$dynamicRef; unsupported keyword \"unevaluatedItems\" at "
                         "/unevaluatedItems; unsupported keyword \"nullable\" at /nullable");
    expect_compile_error("{\"properties\": {\"a\": {\"$ref\": \"other.json#/x\"}}}",
                         "unsupported keyword \"$ref\" at /properties/a/$ref: only references "
                         "within the schema");
    expect_compile_error("{\"$defs\": {\"a\": {\"$id\": \"a.json\"}}}",
                         "unsupported keyword \"$id\" at /$defs/a/$id");
    expect_compile_error("{\"$ref\": \"#somewhere\"}", "anchors other than the root's");
    /* unreferenced definitions are checked too */
    expect_compile_error("{\"$defs\": {\"unused\": {\"errorMessage\": {}}}}",
                         "\"errorMessage\" at /$defs/unused/errorMessage");
}

static void schema_dialects(void **state)
{
    expect_compile_error("{\"$schema\": \"http://json-schema.org/draft-04/schema#\"}",
                         "invalid schema at /$schema: unsupported draft "
                         "\"http://json-schema.org/draft-04/schema#\"");
    expect_compile_error("{\"$schema\": 7}", "invalid schema at /$schema: must be a string");
    expect_compile_error("{\"properties\": {\"a\": {\"$schema\": "
                         "\"http://json-schema.org/draft-07/schema#\"}}}",
                         "a subschema of another draft");
    struct jsonschema *s =
        compile("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema#\","
                " \"prefixItems\": [{\"type\": \"null\"}]}");
    expect_error(s, "[1]", "/0", "type");
    jsonschema_free(s);
}

static void malformed_keywords_are_invalid_schemas(void **state)
{
    expect_compile_error("{\"type\": \"int\"}", "invalid schema at /type: unknown type \"int\"");
    expect_compile_error("{\"type\": []}", "must name at least one type");
    expect_compile_error("{\"required\": [\"a\", 1]}", "/required: must be an array of strings");
    expect_compile_error(
        "{\"properties\": {\"a\": 1}}",
        "invalid schema at /properties/a: a schema must be an object or a boolean");
    expect_compile_error("{\"allOf\": []}", "/allOf: must be a non-empty array of schemas");
    expect_compile_error("{\"enum\": 1}", "/enum: must be an array");
    expect_compile_error("{\"uniqueItems\": 1}", "/uniqueItems: must be a boolean");
    expect_compile_error("{\"$ref\": \"#/$defs/a%zz\"}", "malformed reference");
    /* cJSON keeps both of a duplicated key; which one would count is nobody's guess */
    expect_compile_error("{\"type\": \"string\", \"type\": \"integer\"}",
                         "invalid schema at /type: the keyword appears twice");
}

static void error_fields_are_bounded(void **state)
{
    char name[400];
    memset(name, 'k', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    char text[1024];
    snprintf(text, sizeof text, "{\"%s\": 1}", name);
    struct jsonschema *s = compile("{\"additionalProperties\": false}");
    struct jsonschema_error errs[MAX_ERRS];
    assert_int_equal(validate(s, text, errs), 1);
    assert_int_equal(strlen(errs[0].instance), sizeof errs[0].instance - 1);
    assert_string_equal(errs[0].instance + sizeof errs[0].instance - 4, "...");
    assert_int_equal(strlen(errs[0].message), sizeof errs[0].message - 1);
    jsonschema_free(s);

    /* more errors than room: all are counted, the first `max` written */
    s = compile("{\"items\": {\"type\": \"string\"}}");
    cJSON *many = cJSON_Parse("[1, 2, 3, 4, 5]");
    struct jsonschema_error two[2];
    assert_int_equal(jsonschema_validate(s, many, two, 2), 5);
    assert_string_equal(two[1].instance, "/1");
    cJSON_Delete(many);
    jsonschema_free(s);
}

static void compiled_schema_is_reusable(void **state)
{
    struct jsonschema *s = compile("{\"properties\": {\"n\": {\"pattern\": \"^[0-9]+$\"}}}");
    for (int i = 0; i < 100; i++) {
        expect_valid(s, "{\"n\": \"42\"}");
        expect_error(s, "{\"n\": \"4x\"}", "/n", "pattern");
    }
    jsonschema_free(s);
    jsonschema_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(type_names_each_json_type),
        cmocka_unit_test(properties_and_required_report_nested_pointers),
        cmocka_unit_test(pointers_escape_tilde_and_slash),
        cmocka_unit_test(additional_properties_false_names_the_property),
        cmocka_unit_test(pattern_properties_apply_every_matching_pattern),
        cmocka_unit_test(items_and_prefix_items_2020),
        cmocka_unit_test(items_array_is_a_tuple_in_draft7),
        cmocka_unit_test(min_and_max_items),
        cmocka_unit_test(unique_items_compare_deeply),
        cmocka_unit_test(enum_and_const_compare_deeply),
        cmocka_unit_test(numeric_bounds),
        cmocka_unit_test(multiple_of_tolerates_binary_fractions),
        cmocka_unit_test(string_lengths_count_code_points),
        cmocka_unit_test(pattern_translates_ecma_escapes),
        cmocka_unit_test(pattern_refuses_what_ere_cannot_do),
        cmocka_unit_test(pattern_matching_is_bounded),
        cmocka_unit_test(format_is_an_annotation),
        cmocka_unit_test(annotations_are_accepted),
        cmocka_unit_test(applicators_all_any_one_not),
        cmocka_unit_test(if_then_else_picks_a_branch),
        cmocka_unit_test(boolean_schemas),
        cmocka_unit_test(object_size_and_property_names),
        cmocka_unit_test(dependent_required_and_schemas),
        cmocka_unit_test(dependencies_in_draft7),
        cmocka_unit_test(contains_with_min_and_max),
        cmocka_unit_test(refs_to_defs_definitions_and_root),
        cmocka_unit_test(ref_siblings_depend_on_the_draft),
        cmocka_unit_test(ref_cycles_are_refused),
        cmocka_unit_test(inplace_chains_are_bounded),
        cmocka_unit_test(depth_limit_stops_descent),
        cmocka_unit_test(work_budget_stops_exponential_schemas),
        cmocka_unit_test(unsupported_keywords_are_all_named),
        cmocka_unit_test(schema_dialects),
        cmocka_unit_test(malformed_keywords_are_invalid_schemas),
        cmocka_unit_test(error_fields_are_bounded),
        cmocka_unit_test(compiled_schema_is_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
