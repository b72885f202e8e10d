/*
 * test_idmap.c — the 64-bit key → pointer map (supervisor/idmap.c) behind id rewriting, pid and
 * connection lookups: a lost or stale entry routes a response to the wrong client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "idmap.h"

#define MANY 50000

/* Distinct non-NULL values: addresses inside this array. */
static char vals[MANY];

static void *val(size_t i)
{
    return &vals[i % MANY];
}

/* Keys spread over the 64-bit range, including the extremes. */
static uint64_t key(size_t i)
{
    return (uint64_t)i * 0x9e3779b97f4a7c15ULL;
}

static void invariants(const struct idmap *m)
{
    assert_true(m->len <= m->used);
    if (m->cap != 0) {
        assert_int_equal(m->cap & (m->cap - 1), 0); /* power of two */
        assert_true(m->used * 4 <= m->cap * 3);
    }
}

static void empty_map_finds_nothing(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    assert_null(idmap_get(&m, 0));
    assert_null(idmap_get(&m, 42));
    assert_null(idmap_del(&m, 42));
    assert_int_equal(m.len, 0);
    idmap_free(&m);
}

static void put_get_del(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    int a, b;
    assert_int_equal(idmap_put(&m, 1, &a), 0);
    assert_int_equal(idmap_put(&m, 2, &b), 0);
    assert_int_equal(m.len, 2);
    assert_ptr_equal(idmap_get(&m, 1), &a);
    assert_ptr_equal(idmap_get(&m, 2), &b);
    assert_null(idmap_get(&m, 3));

    assert_ptr_equal(idmap_del(&m, 1), &a);
    assert_int_equal(m.len, 1);
    assert_null(idmap_get(&m, 1));
    assert_ptr_equal(idmap_get(&m, 2), &b);
    assert_null(idmap_del(&m, 1)); /* already gone */
    assert_null(idmap_del(&m, 3)); /* never there */
    assert_int_equal(m.len, 1);
    idmap_free(&m);
}

static void extreme_keys_are_ordinary_keys(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    int a, b;
    assert_int_equal(idmap_put(&m, 0, &a), 0);
    assert_int_equal(idmap_put(&m, UINT64_MAX, &b), 0);
    assert_ptr_equal(idmap_get(&m, 0), &a);
    assert_ptr_equal(idmap_get(&m, UINT64_MAX), &b);
    assert_ptr_equal(idmap_del(&m, 0), &a);
    assert_null(idmap_get(&m, 0));
    assert_ptr_equal(idmap_get(&m, UINT64_MAX), &b);
    idmap_free(&m);
}

static void put_replaces_existing_value(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    int a, b;
    assert_int_equal(idmap_put(&m, 7, &a), 0);
    assert_int_equal(idmap_put(&m, 7, &b), 0);
    assert_int_equal(m.len, 1);
    assert_ptr_equal(idmap_get(&m, 7), &b);
    assert_ptr_equal(idmap_del(&m, 7), &b);
    assert_null(idmap_get(&m, 7)); /* no older copy left behind */
    assert_int_equal(m.len, 0);
    idmap_free(&m);
}

static void replace_after_tombstone_in_probe_chain(void **state)
{
    (void)state;
    /* With many keys some share probe chains; deleting one leaves a tombstone in front of the
     * others, and a later put of a key further down the chain must replace it, not add a twin. */
    struct idmap m;
    idmap_init(&m);
    for (size_t i = 0; i < 12; i++)
        assert_int_equal(idmap_put(&m, key(i), val(i)), 0);
    for (size_t i = 0; i < 12; i += 2)
        assert_ptr_equal(idmap_del(&m, key(i)), val(i));
    for (size_t i = 1; i < 12; i += 2)
        assert_int_equal(idmap_put(&m, key(i), val(i + 100)), 0);
    assert_int_equal(m.len, 6);
    for (size_t i = 1; i < 12; i += 2) {
        assert_ptr_equal(idmap_get(&m, key(i)), val(i + 100));
        assert_ptr_equal(idmap_del(&m, key(i)), val(i + 100));
        assert_null(idmap_get(&m, key(i)));
    }
    assert_int_equal(m.len, 0);
    idmap_free(&m);
}

static void grows_past_many_thousands_of_keys(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    for (size_t i = 0; i < MANY; i++) {
        assert_int_equal(idmap_put(&m, key(i), val(i)), 0);
        if (i % 4096 == 0)
            invariants(&m);
    }
    invariants(&m);
    assert_int_equal(m.len, MANY);
    assert_true(m.cap >= MANY);
    for (size_t i = 0; i < MANY; i++)
        assert_ptr_equal(idmap_get(&m, key(i)), val(i));
    assert_null(idmap_get(&m, key(MANY)));

    /* Delete every other key: the rest stay reachable past the tombstones. */
    for (size_t i = 0; i < MANY; i += 2)
        assert_ptr_equal(idmap_del(&m, key(i)), val(i));
    assert_int_equal(m.len, MANY / 2);
    for (size_t i = 0; i < MANY; i++) {
        if (i % 2 == 0)
            assert_null(idmap_get(&m, key(i)));
        else
            assert_ptr_equal(idmap_get(&m, key(i)), val(i));
    }
    invariants(&m);
    idmap_free(&m);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.len, 0);
    assert_null(idmap_get(&m, key(1)));
}

static void sequential_keys_grow_too(void **state)
{
    (void)state;
    /* Rewritten request ids are a counter: consecutive keys must not pile into one chain that
     * breaks lookups. */
    struct idmap m;
    idmap_init(&m);
    for (uint64_t k = 1; k <= MANY; k++)
        assert_int_equal(idmap_put(&m, k, val((size_t)k)), 0);
    invariants(&m);
    for (uint64_t k = 1; k <= MANY; k++)
        assert_ptr_equal(idmap_get(&m, k), val((size_t)k));
    idmap_free(&m);
}

static void insert_delete_cycles_reuse_tombstones(void **state)
{
    (void)state;
    /* A session's in-flight ids come and go forever: the table must not grow nor fill up with
     * tombstones when only a handful of keys are live at any time. */
    struct idmap m;
    idmap_init(&m);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(idmap_put(&m, key(i), val(i)), 0);
    size_t cap = m.cap;
    for (size_t i = 4; i < 200000; i++) {
        assert_int_equal(idmap_put(&m, key(i), val(i)), 0);
        assert_ptr_equal(idmap_del(&m, key(i - 4)), val(i - 4));
        assert_int_equal(m.len, 4);
        assert_true(m.used * 4 <= m.cap * 3);
    }
    assert_int_equal(m.cap, cap);
    for (size_t i = 200000 - 4; i < 200000; i++)
        assert_ptr_equal(idmap_get(&m, key(i)), val(i));
    idmap_free(&m);
}

static void put_after_delete_of_same_key_reuses_its_slot(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    int a;
    assert_int_equal(idmap_put(&m, 5, &a), 0);
    size_t used = m.used;
    for (int i = 0; i < 1000; i++) {
        assert_ptr_equal(idmap_del(&m, 5), &a);
        assert_int_equal(idmap_put(&m, 5, &a), 0);
    }
    assert_int_equal(m.used, used);
    assert_int_equal(m.len, 1);
    idmap_free(&m);
}

static int counts[MANY];

static void count_call(void *v)
{
    counts[(char *)v - vals]++;
}

static void clear_calls_fn_once_per_live_value(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    const size_t n = 3000;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(idmap_put(&m, key(i), val(i)), 0);
    for (size_t i = 0; i < n; i += 3)
        assert_ptr_equal(idmap_del(&m, key(i)), val(i));
    for (size_t i = 1; i < n; i += 3) /* replaced values count once, under their new value */
        assert_int_equal(idmap_put(&m, key(i), val(i + n)), 0);

    for (size_t i = 0; i < MANY; i++)
        counts[i] = 0;
    idmap_clear(&m, count_call);
    for (size_t i = 0; i < n; i++) {
        int want = i % 3 == 2 ? 1 : 0;
        if (counts[i] != want)
            fail_msg("value %zu: fn called %d times, want %d", i, counts[i], want);
        want = i % 3 == 1 ? 1 : 0;
        if (counts[i + n] != want)
            fail_msg("value %zu: fn called %d times, want %d", i + n, counts[i + n], want);
    }
    /* The table is gone and the map is usable again. */
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.len, 0);
    assert_null(idmap_get(&m, key(2)));
    int a;
    assert_int_equal(idmap_put(&m, 1, &a), 0);
    assert_ptr_equal(idmap_get(&m, 1), &a);
    idmap_free(&m);
}

static void clear_of_empty_map_calls_nothing(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    for (size_t i = 0; i < MANY; i++)
        counts[i] = 0;
    idmap_clear(&m, count_call);
    assert_int_equal(idmap_put(&m, 1, val(1)), 0);
    assert_ptr_equal(idmap_del(&m, 1), val(1));
    idmap_clear(&m, count_call); /* only a tombstone left */
    for (size_t i = 0; i < MANY; i++)
        assert_int_equal(counts[i], 0);
}

/* A map of plain markers is cleared without a callback, and takes new entries afterwards. */
static void clear_without_fn_empties_a_reusable_map(void **state)
{
    (void)state;
    struct idmap m;
    idmap_init(&m);
    for (uint64_t k = 1; k <= 5000; k++)
        assert_int_equal(idmap_put(&m, k, (void *)1), 0);
    idmap_clear(&m, NULL);
    assert_int_equal(m.len, 0);
    assert_null(idmap_get(&m, 7));
    assert_int_equal(idmap_put(&m, 7, (void *)1), 0);
    assert_non_null(idmap_get(&m, 7));
    idmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_map_finds_nothing),
        cmocka_unit_test(put_get_del),
        cmocka_unit_test(extreme_keys_are_ordinary_keys),
        cmocka_unit_test(put_replaces_existing_value),
        cmocka_unit_test(replace_after_tombstone_in_probe_chain),
        cmocka_unit_test(grows_past_many_thousands_of_keys),
        cmocka_unit_test(sequential_keys_grow_too),
        cmocka_unit_test(insert_delete_cycles_reuse_tombstones),
        cmocka_unit_test(put_after_delete_of_same_key_reuses_its_slot),
        cmocka_unit_test(clear_calls_fn_once_per_live_value),
        cmocka_unit_test(clear_of_empty_map_calls_nothing),
        cmocka_unit_test(clear_without_fn_empties_a_reusable_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
