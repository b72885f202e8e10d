/*
 * test_log.c — quoting a log value (supervisor/log.c): what a caller, a token's issuer or a child
 * sent must stay one key=value field on one line, whatever it holds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "log.h"

static void a_value_with_spaces_and_equals_stays_one_field(void **state)
{
    (void)state;
    char q[LOG_QUOTED_MAX];
    assert_string_equal(log_quote_str(q, sizeof q, "alice role=admin tenant=root"),
                        "\"alice role=admin tenant=root\"");
    assert_string_equal(log_quote_str(q, sizeof q, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_string_equal(log_quote_str(q, sizeof q, "x\ny\x7f\xc3\xa9"),
                        "\"x\\x0ay\\x7f\\xc3\\xa9\"");
    assert_string_equal(log_quote_str(q, sizeof q, ""), "\"\"");
    assert_string_equal(log_quote_str(q, sizeof q, NULL), "\"\"");
}

static void a_long_value_is_cut_inside_its_quotes(void **state)
{
    (void)state;
    char name[256], q[LOG_QUOTED_MAX], small[16];
    memset(name, 'u', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    log_quote_str(q, sizeof q, name); /* a 255-byte claim fits whole */
    assert_int_equal(strlen(q), 257);
    assert_int_equal(q[0], '"');
    assert_int_equal(q[256], '"');
    log_quote_str(small, sizeof small, "a b c d e f g h i j");
    assert_true(strlen(small) < sizeof small);
    assert_int_equal(small[0], '"');
    assert_int_equal(small[strlen(small) - 1], '"');
    assert_non_null(strstr(small, "...\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_value_with_spaces_and_equals_stays_one_field),
        cmocka_unit_test(a_long_value_is_cut_inside_its_quotes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
