/*
 * test_jsonstrict.c — the strict JSON judge (supervisor/jsonstrict.c): RFC 8259's grammar under
 * I-JSON (RFC 7493), strict UTF-8, the number length and nesting ceilings.
 *
 * Each case is a text, the byte offset where it must be refused (or ACCEPTED) and a word of the
 * message. Every text is checked from a heap buffer of exactly its length, with no NUL after it,
 * so a read past the end trips ASan; and every check runs with allocations counted (glibc's
 * allocator wrapped, or the sanitizer's hooks under ASan): the judge must make none.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstrict.h"

/* ---- counting allocations ------------------------------------------------------------------ */

static volatile bool counting; /* volatile: the compiler assumes malloc touches no globals */
static volatile size_t allocations;

#if defined(__SANITIZE_ADDRESS__)
/* In the sanitizer runtime; GCC 12's headers do not declare it. */
int __sanitizer_install_malloc_and_free_hooks(void (*on_alloc)(const volatile void *, size_t),
                                              void (*on_release)(const volatile void *));

static void on_malloc(const volatile void *p, size_t size)
{
    if (counting)
        allocations++;
}

static void on_free(const volatile void *p)
{
}

static void count_allocations_init(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
/* The executable's definitions take the place of libc's for every caller; glibc's allocator
 * stays reachable under its internal names. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

void *malloc(size_t size)
{
    if (counting)
        allocations++;
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    if (counting)
        allocations++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    if (counting)
        allocations++;
    return __libc_realloc(p, size);
}

void free(void *p)
{
    __libc_free(p);
}

static void count_allocations_init(void)
{
}
#endif

/* Checks text[0:len] from an exactly sized heap copy, counting allocations meanwhile. */
static int check(const char *text, size_t len, struct jsonstrict_error *err)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    size_t before = allocations;
    counting = true;
    int rc = jsonstrict_check(copy, len, err);
    counting = false;
    assert_int_equal(allocations, before);
    free(copy);
    return rc;
}

/* The counter itself works: an allocation made while counting is seen. */
static void allocations_are_counted(void **state)
{
    (void)state;
    static void *volatile kept; /* volatile: the pair cannot be optimised away */
    size_t before = allocations;
    counting = true;
    kept = malloc(24);
    counting = false;
    assert_non_null(kept);
    free(kept);
    assert_int_equal(allocations, before + 1);
}

#define ACCEPTED SIZE_MAX

struct kase {
    const char *text;
    size_t at;        /* where it is refused, or ACCEPTED */
    const char *word; /* a part of the message */
    size_t len;       /* 0: strlen(text) */
};

static void run(const struct kase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct kase *k = &cases[i];
        size_t len = k->len != 0 ? k->len : strlen(k->text);
        struct jsonstrict_error err = {ACCEPTED, NULL};
        int rc = check(k->text, len, &err);
        if (k->at == ACCEPTED) {
            if (rc != 0)
                fail_msg("case %zu: refused (%s at %zu), should pass", i, err.what, err.offset);
            continue;
        }
        if (rc != -1)
            fail_msg("case %zu: accepted, should be refused at %zu", i, k->at);
        if (err.offset != k->at || err.what == NULL || strstr(err.what, k->word) == NULL)
            fail_msg("case %zu: refused at %zu with \"%s\", expected %zu with \"%s\"", i,
                     err.offset, err.what != NULL ? err.what : "(null)", k->at, k->word);
    }
}

#define RUN(cases) run(cases, sizeof(cases) / sizeof(cases[0]))

/* ---- grammar ------------------------------------------------------------------------------- */

static void values_and_whitespace_of_rfc8259_pass(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"true", ACCEPTED, NULL, 0},
        {"false", ACCEPTED, NULL, 0},
        {"null", ACCEPTED, NULL, 0},
        {"\"\"", ACCEPTED, NULL, 0},
        {"{}", ACCEPTED, NULL, 0},
        {"[]", ACCEPTED, NULL, 0},
        {"[[[]],{}]", ACCEPTED, NULL, 0},
        {"{\"a\":[1,{\"b\":null}],\"c\":{}}", ACCEPTED, NULL, 0},
        {" \t\r\n[ 1 ,\t2 ]\r\n ", ACCEPTED, NULL, 0},
        {"{ \"a\" : 1 , \"b\" :\n2 }", ACCEPTED, NULL, 0},
        {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", ACCEPTED, NULL, 0},
        {"\"\x7f\"", ACCEPTED, NULL, 0},          /* DEL is not a control character to JSON */
        {"\"\\u0000\"", ACCEPTED, NULL, 0},       /* valid JSON; jsonrpc_parse refuses it */
        {"{\"a\":1,\"a\":2}", ACCEPTED, NULL, 0}, /* names are compared on the parsed tree */
    };
    RUN(cases);
}

static void structure_outside_the_grammar_is_refused(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"", 0, "no JSON value", 0},
        {" \r\n", 3, "no JSON value", 0},
        {"[1,]", 3, "expected a value", 0},
        {"{\"a\":1,}", 7, "member name", 0},
        {"{a:1}", 1, "member name", 0},
        {"{'a':1}", 1, "member name", 0},
        {"{\"a\" 1}", 5, "':'", 0},
        {"[1 2]", 3, "','", 0},
        {"{\"a\":1 \"b\":2}", 7, "','", 0},
        {"{\"a\":1", 6, "ends early", 0},
        {"[", 1, "ends early", 0},
        {"[1", 2, "ends early", 0},
        {"\"abc", 0, "unterminated string", 0},
        {"\"abc\\", 4, "unterminated string", 0},
        {"1 2", 2, "after the JSON value", 0},
        {"{}{}", 2, "after the JSON value", 0},
        {"{\"a\":1}x", 7, "after the JSON value", 0},
        {"//c\n1", 0, "expected a value", 0},
        {"/*c*/1", 0, "expected a value", 0},
        {"tru", 0, "expected a value", 0},
        {"nul", 0, "expected a value", 0},
        {"True", 0, "expected a value", 0},
        {"[true1]", 5, "','", 0},
        {"undefined", 0, "expected a value", 0},
        {"'a'", 0, "expected a value", 0},
    };
    RUN(cases);
}

static void whitespace_is_only_space_tab_lf_cr(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"\x0b"
         "1",
         0, "control character outside a string", 0},
        {"\x0c"
         "1",
         0, "control character outside a string", 0},
        {"[1,\x1f"
         "2]",
         3, "control character outside a string", 0},
        {"{\"a\":1}\x01", 7, "control character outside a string", 0},
        {"1\0", 1, "control character outside a string", 2},
        {"\0", 0, "control character outside a string", 1},
        {"[1,\xc2\xa0"
         "2]",
         3, "above 0x7f outside a string", 0}, /* U+00A0 NO-BREAK SPACE */
        {"\xef\xbb\xbf{}", 0, "byte order mark", 0},
        {"\xef\xbb\xbf", 0, "byte order mark", 0},
        {" \xef\xbb\xbf{}", 1, "above 0x7f outside a string", 0},
    };
    RUN(cases);
}

/* ---- numbers ------------------------------------------------------------------------------- */

static void numbers_follow_the_grammar(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"0", ACCEPTED, NULL, 0},
        {"-0", ACCEPTED, NULL, 0},
        {"-0.0", ACCEPTED, NULL, 0},
        {"0e0", ACCEPTED, NULL, 0},
        {"0E+1", ACCEPTED, NULL, 0},
        {"1e-5", ACCEPTED, NULL, 0},
        {"1.5E+10", ACCEPTED, NULL, 0},
        {"-1.25e-7", ACCEPTED, NULL, 0},
        {"10", ACCEPTED, NULL, 0},
        {"1e999", ACCEPTED, NULL, 0}, /* beyond a double, but the grammar's */
        {"-1e999", ACCEPTED, NULL, 0},
        {"1e-999", ACCEPTED, NULL, 0},
        {"123456789012345678901234567890", ACCEPTED, NULL, 0},
        {"[0,-0,1]", ACCEPTED, NULL, 0},
        {"01", 0, "leading zero", 0},
        {"00", 0, "leading zero", 0},
        {"-01", 0, "leading zero", 0},
        {"{\"n\":01}", 5, "leading zero", 0},
        {"[1,007]", 3, "leading zero", 0},
        {"+1", 0, "expected a value", 0},
        {".5", 0, "expected a value", 0},
        {"-", 0, "minus sign without digits", 0},
        {"-a", 0, "minus sign without digits", 0},
        {"--1", 0, "minus sign without digits", 0},
        {"1.", 0, "decimal point", 0},
        {"1.e5", 0, "decimal point", 0},
        {"1e", 0, "exponent without digits", 0},
        {"1e+", 0, "exponent without digits", 0},
        {"1E-x", 0, "exponent without digits", 0},
        {"NaN", 0, "expected a value", 0},
        {"Infinity", 0, "expected a value", 0},
        {"-Infinity", 0, "minus sign without digits", 0},
        {"0x10", 1, "after the JSON value", 0},
        {"1_000", 1, "after the JSON value", 0},
    };
    RUN(cases);
}

static void number_length_has_a_ceiling(void **state)
{
    (void)state;
    size_t big = 50000;
    char *t = malloc(big + 8);
    assert_non_null(t);
    struct jsonstrict_error err;

    memset(t, '9', big);
    assert_int_equal(check(t, JSONSTRICT_MAX_NUMBER_CHARS, &err), 0);
    assert_int_equal(check(t, JSONSTRICT_MAX_NUMBER_CHARS + 1, &err), -1);
    assert_int_equal(err.offset, 0);
    assert_non_null(strstr(err.what, "longer than 1000 characters"));
    assert_int_equal(check(t, big, &err), -1); /* 50,000 digits */
    assert_non_null(strstr(err.what, "longer than"));

    /* Sign, fraction and exponent count: "-0." + digits + "e+1" at exactly the ceiling. */
    memcpy(t, "[-0.", 4);
    memset(t + 4, '1', JSONSTRICT_MAX_NUMBER_CHARS - 6);
    memcpy(t + 4 + JSONSTRICT_MAX_NUMBER_CHARS - 6, "e+1]", 4);
    assert_int_equal(check(t, JSONSTRICT_MAX_NUMBER_CHARS + 2, &err), 0);
    memcpy(t + 4 + JSONSTRICT_MAX_NUMBER_CHARS - 6, "1e+1]", 5);
    assert_int_equal(check(t, JSONSTRICT_MAX_NUMBER_CHARS + 3, &err), -1);
    assert_int_equal(err.offset, 1);
    free(t);
}

/* ---- strings: escapes and I-JSON ------------------------------------------------------------ */

static void escapes_and_surrogate_pairs(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"\"\\u00e9\"", ACCEPTED, NULL, 0},
        {"\"\\u00E9\\u20ac\"", ACCEPTED, NULL, 0},
        {"\"\\ud83d\\ude00\"", ACCEPTED, NULL, 0}, /* U+1F600 as a pair */
        {"\"\\uD83D\\uDE00\"", ACCEPTED, NULL, 0},
        {"\"\\udbff\\udffd\"", ACCEPTED, NULL, 0}, /* U+10FFFD */
        {"\"\\ud7ff\\ue000\"", ACCEPTED, NULL, 0}, /* either side of the surrogates */
        {"\"\\ud800\"", 1, "lone UTF-16 surrogate", 0},
        {"\"\\ud800x\"", 1, "high half with no low half", 0},
        {"\"\\ud800\\n\"", 1, "high half with no low half", 0},
        {"\"\\ud800\\ud800\"", 1, "high half with no low half", 0},
        {"\"\\udbff\\u0041\"", 1, "high half with no low half", 0},
        {"\"\\ud800\\u12\"", 1, "high half with no low half", 0},
        {"\"ab\\udc00\"", 3, "low half with no high half", 0},
        {"\"\\ude00\\ud83d\"", 1, "low half with no high half", 0}, /* a pair, reversed */
        {"\"\\ud83d\\ude00\\udc00\"", 13, "low half", 0},
        {"\"\\x\"", 1, "invalid escape", 0},
        {"\"\\a\"", 1, "invalid escape", 0},
        {"\"\\'\"", 1, "invalid escape", 0},
        {"\"\\U00e9\"", 1, "invalid escape", 0},
        {"\"\\0\"", 1, "invalid escape", 0},
        {"\"\\u12\"", 1, "four hex digits", 0},
        {"\"\\u12G4\"", 1, "four hex digits", 0},
        {"\"\\u", 1, "four hex digits", 0},
        {"\"\\ufffe\"", 1, "noncharacter", 0},
        {"\"\\uFFFF\"", 1, "noncharacter", 0},
        {"\"\\ufdd0\"", 1, "noncharacter", 0},
        {"\"\\ufdef\"", 1, "noncharacter", 0},
        {"\"\\ufdcf\\ufdf0\"", ACCEPTED, NULL, 0},
        {"\"\\ud83f\\udfff\"", 1, "noncharacter", 0},       /* U+1FFFF */
        {"\"\\udbff\\udfff\"", 1, "noncharacter", 0},       /* U+10FFFF */
        {"{\"\\ud800\":1}", 2, "lone UTF-16 surrogate", 0}, /* member names too */
    };
    RUN(cases);
}

static void control_characters_in_strings_are_refused(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"\"a\x01\"", 2, "raw control character", 0},
        {"\"a\tb\"", 2, "raw control character", 0},
        {"\"a\nb\"", 2, "raw control character", 0},
        {"\"a\rb\"", 2, "raw control character", 0},
        {"\"\x1f\"", 1, "raw control character", 0},
        {"\"x\0y\"", 2, "raw control character", 5},
        {"{\"k\x0b\":1}", 3, "raw control character", 0},
    };
    RUN(cases);
}

/* ---- strings: UTF-8 ------------------------------------------------------------------------ */

static void utf8_is_strict(void **state)
{
    (void)state;
    static const struct kase cases[] = {
        {"\"caf\xc3\xa9\"", ACCEPTED, NULL, 0},
        {"\"\xc2\x80\xdf\xbf\"", ACCEPTED, NULL, 0},                 /* U+0080, U+07FF */
        {"\"\xe0\xa0\x80\xe2\x82\xac\"", ACCEPTED, NULL, 0},         /* U+0800, U+20AC */
        {"\"\xed\x9f\xbf\xee\x80\x80\"", ACCEPTED, NULL, 0},         /* U+D7FF, U+E000 */
        {"\"\xef\xbf\xbd\"", ACCEPTED, NULL, 0},                     /* U+FFFD */
        {"\"\xf0\x90\x80\x80\xf0\x9f\x98\x80\"", ACCEPTED, NULL, 0}, /* U+10000, U+1F600 */
        {"\"\xf4\x8f\xbf\xbd\"", ACCEPTED, NULL, 0},                 /* U+10FFFD */
        {"{\"\xc3\xa9\":\"\xe2\x82\xac\"}", ACCEPTED, NULL, 0},
        {"{\"x\":\"a\xff\xfe\"}", 7, "never occurs in UTF-8", 0},
        {"\"\xfe\"", 1, "never occurs in UTF-8", 0},
        {"\"\x80\"", 1, "continuation byte without a lead byte", 0},
        {"\"a\xbf\"", 2, "continuation byte without a lead byte", 0},
        {"\"\xc0\xaf\"", 1, "overlong", 0}, /* '/' in two bytes */
        {"\"\xc1\xbf\"", 1, "overlong", 0},
        {"\"\xc0\x80\"", 1, "overlong", 0}, /* "modified UTF-8" NUL */
        {"\"\xe0\x80\xaf\"", 1, "overlong", 0},
        {"\"\xe0\x9f\xbf\"", 1, "overlong", 0},
        {"\"\xf0\x80\x80\xaf\"", 1, "overlong", 0},
        {"\"\xf0\x8f\xbf\xbf\"", 1, "overlong", 0},
        {"\"\xed\xa0\x80\"", 1, "surrogate encoded in UTF-8", 0},             /* U+D800 */
        {"\"\xed\xbf\xbf\"", 1, "surrogate encoded in UTF-8", 0},             /* U+DFFF */
        {"\"\xed\xa0\xbd\xed\xb8\x80\"", 1, "surrogate encoded in UTF-8", 0}, /* CESU-8 */
        {"\"\xf4\x90\x80\x80\"", 1, "above U+10FFFF", 0},
        {"\"\xf5\x80\x80\x80\"", 1, "above U+10FFFF", 0},
        {"\"\xf7\xbf\xbf\xbf\"", 1, "above U+10FFFF", 0},
        {"\"\xf8\x88\x80\x80\x80\"", 1, "never occurs in UTF-8", 0},
        {"\"\xe2\x82\"", 1, "truncated", 0},
        {"\"\xe2\x82", 1, "truncated", 0},
        {"\"\xf0\x9f\x98\"", 1, "truncated", 0},
        {"\"\xc3", 1, "truncated", 0},
        {"\"\xc3\xc3\xa9\"", 1, "truncated", 0},
        {"\"\xef\xbf\xbe\"", 1, "noncharacter", 0},     /* U+FFFE */
        {"\"\xef\xbf\xbf\"", 1, "noncharacter", 0},     /* U+FFFF */
        {"\"\xef\xb7\x90\"", 1, "noncharacter", 0},     /* U+FDD0 */
        {"\"\xf0\x9f\xbf\xbe\"", 1, "noncharacter", 0}, /* U+1FFFE */
        {"\"\xf4\x8f\xbf\xbf\"", 1, "noncharacter", 0}, /* U+10FFFF */
        {"\xc3\xa9", 0, "above 0x7f outside a string", 0},
    };
    RUN(cases);
}

/* ---- nesting and bounds -------------------------------------------------------------------- */

static void nesting_has_a_ceiling(void **state)
{
    (void)state;
    size_t n = JSONSTRICT_MAX_DEPTH + 1;
    char *t = malloc(4 * n + 8);
    assert_non_null(t);
    struct jsonstrict_error err;

    /* [[…]] at exactly the ceiling, then one deeper. */
    for (size_t d = JSONSTRICT_MAX_DEPTH; d <= n; d++) {
        memset(t, '[', d);
        memset(t + d, ']', d);
        int rc = check(t, 2 * d, &err);
        assert_int_equal(rc, d == JSONSTRICT_MAX_DEPTH ? 0 : -1);
    }
    assert_int_equal(err.offset, JSONSTRICT_MAX_DEPTH);
    assert_non_null(strstr(err.what, "nested deeper than 1000"));

    /* Objects and arrays interleaved keep their kinds at every level: {"a":[{"a":[…]}]}. */
    size_t o = 0, levels = JSONSTRICT_MAX_DEPTH / 2;
    for (size_t d = 0; d < levels; d++) {
        memcpy(t + o, "{\"a\":[", 6);
        o += 6;
    }
    for (size_t d = 0; d < levels; d++) {
        memcpy(t + o, "]}", 2);
        o += 2;
    }
    assert_int_equal(check(t, o, &err), 0);
    t[o - 1] = ']'; /* the outermost object closed as an array */
    assert_int_equal(check(t, o, &err), -1);
    assert_int_equal(err.offset, o - 1);
    assert_non_null(strstr(err.what, "'}'"));
    free(t);
}

/* The length given is the end: what lies after it is never read. */
static void nothing_past_len_is_read(void **state)
{
    (void)state;
    struct jsonstrict_error err;

    assert_int_equal(jsonstrict_check("12", 1, &err), 0);
    assert_int_equal(jsonstrict_check("[1]", 2, &err), -1);
    assert_int_equal(err.offset, 2);
    assert_int_equal(jsonstrict_check("\"\\u0041\"", 6, &err), -1);
    assert_int_equal(jsonstrict_check("\"\\ud83d\\ude00\"", 9, &err), -1);
    assert_int_equal(jsonstrict_check("\"\xe2\x82\xac\"", 3, &err), -1);
    assert_int_equal(jsonstrict_check("true", 3, &err), -1);
    assert_int_equal(jsonstrict_check("\xef\xbb\xbf", 2, &err), -1);
    assert_non_null(strstr(err.what, "above 0x7f"));
}

int main(void)
{
    count_allocations_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_are_counted),
        cmocka_unit_test(values_and_whitespace_of_rfc8259_pass),
        cmocka_unit_test(structure_outside_the_grammar_is_refused),
        cmocka_unit_test(whitespace_is_only_space_tab_lf_cr),
        cmocka_unit_test(numbers_follow_the_grammar),
        cmocka_unit_test(number_length_has_a_ceiling),
        cmocka_unit_test(escapes_and_surrogate_pairs),
        cmocka_unit_test(control_characters_in_strings_are_refused),
        cmocka_unit_test(utf8_is_strict),
        cmocka_unit_test(nesting_has_a_ceiling),
        cmocka_unit_test(nothing_past_len_is_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
