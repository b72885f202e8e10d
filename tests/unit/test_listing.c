/*
 * test_listing.c — a child's listing budget and back-off (supervisor/listing.c): how soon a
 * changing server is listed again, and when its listings stop for the rest of the minute.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "listing.h"

static struct config_limits limits(void)
{
    struct config_limits l = {0};
    l.listing_tools_per_minute = 100;
    l.listing_bytes_per_minute = 10000;
    l.listing_schema_nodes_per_minute = 1000;
    return l;
}

static void the_gap_doubles_with_each_listing_and_a_quiet_minute_resets_it(void **state)
{
    struct listing_budget b = {0};
    int64_t t = 1000000;
    assert_int_equal(listing_wait_ms(&b, t), 0); /* never listed: at once */
    listing_started(&b, t);
    assert_int_equal(listing_wait_ms(&b, t + 100), 400); /* 500 ms after the first */
    int64_t gaps[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++) {
        assert_int_equal(listing_wait_ms(&b, t), gaps[i]);
        t += gaps[i];
        assert_int_equal(listing_wait_ms(&b, t), 0);
        listing_started(&b, t);
    }
    /* a whole window without a listing: the next change is listed at the shortest gap */
    t += LISTING_WINDOW_MS;
    assert_int_equal(listing_wait_ms(&b, t), 0);
    listing_started(&b, t);
    assert_int_equal(listing_wait_ms(&b, t), 500);
}

static void a_quiet_child_waits_only_the_shortest_gap(void **state)
{
    struct listing_budget b = {0};
    listing_started(&b, 5000);
    /* a change a minute later: the gap is long passed */
    assert_int_equal(listing_wait_ms(&b, 5000 + LISTING_WINDOW_MS), 0);
    listing_started(&b, 5000 + LISTING_WINDOW_MS);
    assert_int_equal(listing_wait_ms(&b, 5000 + LISTING_WINDOW_MS + 100), 400);
}

static void the_budget_is_spent_by_any_measure_and_refills_with_the_window(void **state)
{
    struct config_limits l = limits();
    struct listing_budget b = {0};
    char why[256];
    int64_t retry = 0, t = 1000;
    assert_int_equal(listing_charge(&b, &l, t, 5000, 60, 500, why, sizeof why, &retry), 0);
    assert_int_equal(listing_charge(&b, &l, t + 10000, 100, 41, 0, why, sizeof why, &retry), -1);
    assert_non_null(strstr(why, "listing_tools_per_minute"));
    assert_int_equal(retry, LISTING_WINDOW_MS - 10000);
    /* a new window: the same listing passes */
    assert_int_equal(
        listing_charge(&b, &l, t + LISTING_WINDOW_MS, 5000, 60, 500, why, sizeof why, &retry), 0);
    assert_int_equal(
        listing_charge(&b, &l, t + LISTING_WINDOW_MS, 5001, 0, 0, why, sizeof why, &retry), -1);
    assert_non_null(strstr(why, "listing_bytes_per_minute"));
    struct listing_budget c = {0};
    assert_int_equal(listing_charge(&c, &l, t, 0, 0, 1001, why, sizeof why, &retry), -1);
    assert_non_null(strstr(why, "listing_schema_nodes_per_minute"));
    assert_int_equal(retry, LISTING_WINDOW_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_gap_doubles_with_each_listing_and_a_quiet_minute_resets_it),
        cmocka_unit_test(a_quiet_child_waits_only_the_shortest_gap),
        cmocka_unit_test(the_budget_is_spent_by_any_measure_and_refills_with_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
