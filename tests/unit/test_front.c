/*
 * test_front.c — fitting the front's ceilings to its descriptor limit (front_fit_descriptors):
 * what an operator sees is which ceilings a small RLIMIT_NOFILE lowers, and to what.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "front.h"

static struct config_limits defaults(void)
{
    struct config_limits l = {0};
    l.max_connections = 1024;
    l.max_connections_per_address = 256;
    l.max_sessions = 10000;
    return l;
}

static void ceilings_that_fit_are_kept(void **state)
{
    struct config_limits l = defaults();
    assert_int_equal(front_fit_descriptors(&l, 65536), 0);
    assert_int_equal(l.max_connections, 1024);
    assert_int_equal(l.max_connections_per_address, 256);
    assert_int_equal(l.max_sessions, 10000);
}

static void a_small_limit_lowers_them_in_proportion(void **state)
{
    struct config_limits l = defaults();
    assert_int_equal(front_fit_descriptors(&l, 1024), 1);
    /* 896 after the reserve: a quarter for connections, the rest for three-pipe sessions */
    assert_int_equal(l.max_connections, 224);
    assert_int_equal(l.max_connections_per_address, 56);
    assert_int_equal(l.max_sessions, (896 - 224) / 3);
    assert_true(FRONT_FD_RESERVE + l.max_connections + 3 * l.max_sessions <= 1024);
}

static void only_what_does_not_fit_is_lowered(void **state)
{
    struct config_limits l = defaults();
    l.max_connections = 2;
    assert_int_equal(front_fit_descriptors(&l, 20000), 1);
    assert_int_equal(l.max_connections, 2); /* fits: untouched, and so is the per-address one */
    assert_int_equal(l.max_connections_per_address, 256);
    assert_int_equal(l.max_sessions, (20000 - FRONT_FD_RESERVE - 2) / 3);
}

static void a_limit_too_small_for_anything_is_an_error(void **state)
{
    struct config_limits l = defaults();
    assert_int_equal(front_fit_descriptors(&l, 100), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ceilings_that_fit_are_kept),
        cmocka_unit_test(a_small_limit_lowers_them_in_proportion),
        cmocka_unit_test(only_what_does_not_fit_is_lowered),
        cmocka_unit_test(a_limit_too_small_for_anything_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
