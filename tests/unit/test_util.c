/*
 * test_util.c — the shared primitives (supervisor/util.c): hex, SHA-256, the clocks and the
 * repeated-name search. Pins, API keys, token ids and the audit hash chain are all compared as
 * these strings, and the config loader and the broker refuse what the search finds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define SHA_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void hex_is_lower_case_and_terminated(void **state)
{
    (void)state;
    static const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof in + 2];

    memset(out, '#', sizeof out);
    util_hex(in, sizeof in, out);
    assert_string_equal(out, "00017f80abff");
    assert_int_equal(out[sizeof out - 1], '#'); /* nothing written past the NUL */
    util_hex(in, 0, out);
    assert_string_equal(out, "");
}

static void sha256_matches_known_digests(void **state)
{
    (void)state;
    uint8_t d[UTIL_SHA256_LEN];
    char hex[UTIL_SHA256_HEX + 1];

    assert_int_equal(util_sha256("abc", 3, d), 0);
    util_hex(d, sizeof d, hex);
    assert_string_equal(hex, SHA_ABC);
    assert_int_equal(util_sha256_hex("abc", 3, hex), 0);
    assert_string_equal(hex, SHA_ABC);
    assert_int_equal(util_sha256_hex("", 0, hex), 0);
    assert_string_equal(hex, SHA_EMPTY);
}

static void fnv1a_keeps_parts_apart(void **state)
{
    const char *ab_c[2] = {"ab", "c"}, *a_bc[2] = {"a", "bc"}, *abc[1] = {"abc"};
    /* FNV-1a of the empty input is the offset basis; each part adds its separator */
    assert_true(util_fnv1a(NULL, 0) == 0xcbf29ce484222325ull);
    assert_true(util_fnv1a(ab_c, 2) != util_fnv1a(a_bc, 2));
    assert_true(util_fnv1a(ab_c, 2) != util_fnv1a(abc, 1));
    assert_true(util_fnv1a(ab_c, 2) == util_fnv1a(ab_c, 2));
}

static void clocks_agree_with_the_system(void **state)
{
    (void)state;
    struct timespec ts;

    int64_t a = util_mono_ms();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t mono = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t b = util_mono_ms();
    assert_true(a <= mono && mono <= b);

    int64_t w = util_wall_s();
    clock_gettime(CLOCK_REALTIME, &ts);
    assert_true(w <= (int64_t)ts.tv_sec && (int64_t)ts.tv_sec - w <= 1);
}

/* Which member is found decides the path the config loader reports: the outer object first, then
 * what it holds in document order; within one object the smallest repeated name. */
static void duplicate_search_names_the_first_repeat(void **state)
{
    (void)state;
    static const struct {
        const char *json, *name, *parent; /* parent: a member of dup's object, to tell which */
    } cases[] = {
        {"{\"a\":1,\"a\":2}", "a", "a"},
        {"{\"z\":1,\"b\":2,\"z\":3,\"b\":4}", "b", "z"},
        {"{\"x\":{\"q\":1,\"q\":2},\"y\":1,\"y\":2}", "y", "x"},
        {"[{\"ok\":1},{\"in\":[{\"w\":1,\"v\":2,\"w\":3}]},{\"c\":1,\"c\":2}]", "w", "v"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *v = cJSON_Parse(cases[i].json);
        const cJSON *dup = NULL, *it;
        bool sibling = false;

        assert_non_null(v);
        assert_int_equal(util_find_duplicate(v, &dup), 1);
        assert_non_null(dup);
        assert_string_equal(dup->string, cases[i].name);
        for (it = dup; it->prev != NULL && it->prev->next != NULL; it = it->prev)
            ; /* back to the first member of dup's object */
        for (; it != NULL; it = it->next)
            sibling = sibling || strcmp(it->string, cases[i].parent) == 0;
        assert_true(sibling);
        cJSON_Delete(v);
    }
    static const char *const fine[] = {"{}",
                                       "[]",
                                       "1",
                                       "{\"a\":1,\"A\":2,\"aa\":3}",
                                       "[{\"a\":1},{\"a\":2}]",
                                       "{\"a\":{\"a\":{\"a\":1}}}"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        cJSON *v = cJSON_Parse(fine[i]);
        const cJSON *dup = (const cJSON *)v;

        assert_non_null(v);
        assert_int_equal(util_find_duplicate(v, &dup), 0);
        assert_null(dup);
        cJSON_Delete(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hex_is_lower_case_and_terminated),
        cmocka_unit_test(sha256_matches_known_digests),
        cmocka_unit_test(fnv1a_keeps_parts_apart),
        cmocka_unit_test(clocks_agree_with_the_system),
        cmocka_unit_test(duplicate_search_names_the_first_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
