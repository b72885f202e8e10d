/*
 * test_quota.c — per-tool quotas and the per-key request ceiling (supervisor/quota.c), with an
 * injected clock: a bucket that admits too much lets one tenant starve the others, one that
 * refuses too much (or hints a wrong wait) breaks well-behaved clients, and a table that grows
 * with every new user name is a memory exhaustion attack.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quota.h"

static struct config_quota rated(double rate_per_s, uint32_t burst, uint32_t concurrency)
{
    struct config_quota q = {0};
    q.has_rate = true;
    q.rate_per_s = rate_per_s;
    q.burst = burst;
    q.concurrency = concurrency;
    return q;
}

static struct config_quota concurrent(uint32_t concurrency)
{
    struct config_quota q = {0};
    q.concurrency = concurrency;
    return q;
}

/* A call to server "invoices", tool "tool", of tenant "acme" unless told otherwise. Checks the
 * verdict and retry hint, and that no slot comes back without a concurrency limit. */
static void call_full(struct quota_table *t, const char *tenant, const char *user, const char *tool,
                      const struct config_quota *q, double scale, int64_t now,
                      enum quota_verdict want, long want_retry, struct quota_slot **slot_out,
                      int line)
{
    long retry = -2;
    struct quota_slot *slot = (struct quota_slot *)&retry; /* must be overwritten */
    enum quota_verdict v =
        quota_admit_call(t, tenant, user, "invoices", tool, q, scale, now, &retry, &slot);
    if (v != want || retry != want_retry)
        fail_msg("line %d: t=%lld user %s: got %s retry %ld, want %s retry %ld", line,
                 (long long)now, user, quota_verdict_text(v), retry, quota_verdict_text(want),
                 want_retry);
    if (v != QUOTA_OK || q->concurrency == 0)
        assert_null(slot);
    else
        assert_non_null(slot);
    if (slot_out != NULL)
        *slot_out = slot;
    else
        quota_release(t, slot);
}

#define CALL(t, user, q, scale, now, want, retry)                                                  \
    call_full(t, "acme", user, "tool", q, scale, now, want, retry, NULL, __LINE__)
#define CALL_AS(t, tenant, user, q, now, want, retry)                                              \
    call_full(t, tenant, user, "tool", q, 1.0, now, want, retry, NULL, __LINE__)
#define HOLD(t, user, q, scale, now, slotp)                                                        \
    call_full(t, "acme", user, "tool", q, scale, now, QUOTA_OK, 0, slotp, __LINE__)

static void key_full(struct quota_table *t, const char *key, double rate, uint32_t burst,
                     int64_t now, enum quota_verdict want, long want_retry, int line)
{
    long retry = -2;
    enum quota_verdict v = quota_admit_key(t, key, rate, burst, now, &retry);
    if (v != want || retry != want_retry)
        fail_msg("line %d: t=%lld key %.40s: got %s retry %ld, want %s retry %ld", line,
                 (long long)now, key != NULL ? key : "(null)", quota_verdict_text(v), retry,
                 quota_verdict_text(want), want_retry);
}

#define KEY(t, key, rate, burst, now, want, retry)                                                 \
    key_full(t, key, rate, burst, now, want, retry, __LINE__)

static void burst_admits_exactly_burst_then_hints_the_wait(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = rated(10, 2, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    /* Both buckets are empty and one token takes 100 ms at 10/s; the tie names the tenant. */
    CALL(t, "alice", &q, 1.0, 0, QUOTA_RATE_TENANT, 100);
    CALL(t, "alice", &q, 1.0, 99, QUOTA_RATE_TENANT, 1);
    CALL(t, "alice", &q, 1.0, 100, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 100, QUOTA_RATE_TENANT, 100);
    CALL(t, "alice", &q, 1.0, 150, QUOTA_RATE_TENANT, 50);
    /* After a long pause the bucket holds burst tokens, not more. */
    CALL(t, "alice", &q, 1.0, 60000, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 60000, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 60000, QUOTA_RATE_TENANT, 100);
    assert_int_equal(quota_table_size(t), 2); /* the tenant's bucket and alice's */

    /* burst 0 = one second of rate: 3 calls at 3/s; the next token is 333.3 ms away. */
    struct config_quota q3 = rated(3, 0, 0);
    for (int i = 0; i < 3; i++)
        call_full(t, "acme", "alice", "other", &q3, 1.0, 0, QUOTA_OK, 0, NULL, __LINE__);
    call_full(t, "acme", "alice", "other", &q3, 1.0, 0, QUOTA_RATE_TENANT, 334, NULL, __LINE__);
    call_full(t, "acme", "alice", "other", &q3, 1.0, 333, QUOTA_RATE_TENANT, 1, NULL, __LINE__);
    call_full(t, "acme", "alice", "other", &q3, 1.0, 334, QUOTA_OK, 0, NULL, __LINE__);
    quota_table_free(t);
}

static void per_minute_rates(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    /* "1/min" as config.c converts it; burst 0 = one second of rate, rounded up to 1. */
    struct config_quota q = rated(1.0 / 60.0, 0, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_RATE_TENANT, 60000);
    CALL(t, "alice", &q, 1.0, 30000, QUOTA_RATE_TENANT, 30000);
    CALL(t, "alice", &q, 1.0, 59999, QUOTA_RATE_TENANT, 1);
    CALL(t, "alice", &q, 1.0, 60000, QUOTA_OK, 0); /* 60000 × 1/60000 rounds; still a token */
    CALL(t, "alice", &q, 1.0, 60000, QUOTA_RATE_TENANT, 60000);

    /* "2/min" with burst 3: three at once, then one per 30 s. */
    struct config_quota q2 = rated(2.0 / 60.0, 3, 0);
    for (int i = 0; i < 3; i++)
        CALL_AS(t, "globex", "bob", &q2, 1000000, QUOTA_OK, 0);
    CALL_AS(t, "globex", "bob", &q2, 1000000, QUOTA_RATE_TENANT, 30000);
    CALL_AS(t, "globex", "bob", &q2, 1030000, QUOTA_OK, 0);
    CALL_AS(t, "globex", "bob", &q2, 1030000, QUOTA_RATE_TENANT, 30000);
    CALL_AS(t, "globex", "bob", &q2, 1090000, QUOTA_OK, 0); /* 60 s: two tokens */
    CALL_AS(t, "globex", "bob", &q2, 1090000, QUOTA_OK, 0);
    CALL_AS(t, "globex", "bob", &q2, 1090000, QUOTA_RATE_TENANT, 30000);
    quota_table_free(t);
}

static void million_per_second(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = rated(1e6, 0, 0); /* burst: one second = 1,000,000 */
    for (int i = 0; i < 1000000; i++) {
        long retry = -2;
        struct quota_slot *slot;
        if (quota_admit_call(t, "acme", "alice", "invoices", "tool", &q, 1.0, 0, &retry, &slot) !=
            QUOTA_OK)
            fail_msg("call %d of the burst refused", i);
    }
    CALL(t, "alice", &q, 1.0, 0, QUOTA_RATE_TENANT, 1); /* a microsecond away: hint 1 ms */
    int admitted = 0;
    for (int i = 0; i < 1001; i++) {
        long retry;
        struct quota_slot *slot;
        if (quota_admit_call(t, "acme", "alice", "invoices", "tool", &q, 1.0, 1, &retry, &slot) ==
            QUOTA_OK)
            admitted++;
    }
    assert_int_equal(admitted, 1000); /* 1 ms at 10^6/s */
    quota_table_free(t);
}

static void users_share_the_tenant_bucket(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = rated(10, 2, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    /* bob has never called, but acme's bucket for this tool is empty. */
    CALL(t, "bob", &q, 1.0, 0, QUOTA_RATE_TENANT, 100);
    /* Another tenant and another tool have buckets of their own. */
    call_full(t, "globex", "alice", "tool", &q, 1.0, 0, QUOTA_OK, 0, NULL, __LINE__);
    call_full(t, "acme", "alice", "tool2", &q, 1.0, 0, QUOTA_OK, 0, NULL, __LINE__);
    long retry;
    struct quota_slot *slot;
    assert_int_equal(
        quota_admit_call(t, "acme", "alice", "other-server", "tool", &q, 1.0, 0, &retry, &slot),
        QUOTA_OK);
    CALL(t, "bob", &q, 1.0, 100, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 100, QUOTA_RATE_TENANT, 100);
    quota_table_free(t);
}

static void tenant_refusal_takes_no_token_from_the_user_bucket(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    /* Scale 2: acme may make 20/s with bursts of 4, each user 10/s with bursts of 2. */
    struct config_quota q = rated(10, 2, 0);
    CALL(t, "alice", &q, 2.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 2.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 2.0, 0, QUOTA_RATE_USER, 100); /* acme still has 2 */
    CALL(t, "bob", &q, 2.0, 0, QUOTA_OK, 0);
    CALL(t, "bob", &q, 2.0, 0, QUOTA_OK, 0);
    /* bob: his bucket wants 100 ms, acme's 50 ms; the longer wait is the one that binds. */
    CALL(t, "bob", &q, 2.0, 0, QUOTA_RATE_USER, 100);
    /* carol has two tokens but acme has none: refused, and her tokens stay. */
    CALL(t, "carol", &q, 2.0, 0, QUOTA_RATE_TENANT, 50);
    CALL(t, "carol", &q, 2.0, 0, QUOTA_RATE_TENANT, 50);
    CALL(t, "carol", &q, 2.0, 20, QUOTA_RATE_TENANT, 30);
    /* 100 ms: acme has 2 again, and carol still her 2 (a refusal had taken one: only 1). */
    CALL(t, "carol", &q, 2.0, 100, QUOTA_OK, 0);
    CALL(t, "carol", &q, 2.0, 100, QUOTA_OK, 0);
    CALL(t, "carol", &q, 2.0, 100, QUOTA_RATE_USER, 100);
    /* alice's bucket refilled to 1, acme's is empty. */
    CALL(t, "alice", &q, 2.0, 100, QUOTA_RATE_TENANT, 50);
    CALL(t, "alice", &q, 2.0, 150, QUOTA_OK, 0);
    CALL(t, "alice", &q, 2.0, 150, QUOTA_RATE_TENANT, 50); /* both 50 ms away */
    quota_table_free(t);
}

static void tenant_scale_one_half(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    /* 10/s burst 4 at scale 0.5: acme gets 5/s with bursts of 2. */
    struct config_quota q = rated(10, 4, 0);
    CALL(t, "alice", &q, 0.5, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 0.5, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 0.5, 0, QUOTA_RATE_TENANT, 200);
    CALL(t, "bob", &q, 0.5, 0, QUOTA_RATE_TENANT, 200);
    CALL(t, "bob", &q, 0.5, 200, QUOTA_OK, 0);
    CALL(t, "alice", &q, 0.5, 200, QUOTA_RATE_TENANT, 200);

    /* Concurrency 3 × 0.5 = 1.5, rounded up to 2; 1 × 0.5 rounds up to 1. */
    struct config_quota c3 = concurrent(3), c1 = concurrent(1);
    struct quota_slot *a, *b, *c;
    call_full(t, "acme", "alice", "c3", &c3, 0.5, 0, QUOTA_OK, 0, &a, __LINE__);
    call_full(t, "acme", "bob", "c3", &c3, 0.5, 0, QUOTA_OK, 0, &b, __LINE__);
    call_full(t, "acme", "carol", "c3", &c3, 0.5, 0, QUOTA_CONCURRENCY, -1, NULL, __LINE__);
    call_full(t, "acme", "alice", "c1", &c1, 0.5, 0, QUOTA_OK, 0, &c, __LINE__);
    call_full(t, "acme", "alice", "c1", &c1, 0.5, 0, QUOTA_CONCURRENCY, -1, NULL, __LINE__);
    quota_release(t, a);
    quota_release(t, b);
    quota_release(t, c);

    /* Scaled bursts and concurrency round up to at least 1: 1 × 0.01 → 1, at 10 × 0.01/s. */
    struct config_quota tiny = rated(10, 1, 0);
    call_full(t, "acme", "alice", "tiny", &tiny, 0.01, 0, QUOTA_OK, 0, NULL, __LINE__);
    call_full(t, "acme", "alice", "tiny", &tiny, 0.01, 0, QUOTA_RATE_TENANT, 10000, NULL, __LINE__);
    quota_table_free(t);
}

static void tenant_scale_two(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    /* 10/s burst 3 at scale 2: acme 20/s with bursts of 6; each user 10/s with bursts of 3. */
    struct config_quota q = rated(10, 3, 0);
    const char *users[] = {"u0", "u1", "u2"};
    int admitted = 0;
    for (int u = 0; u < 3; u++)
        for (int i = 0; i < 3; i++) {
            long retry;
            struct quota_slot *slot;
            if (quota_admit_call(t, "acme", users[u], "invoices", "tool", &q, 2.0, 0, &retry,
                                 &slot) == QUOTA_OK)
                admitted++;
        }
    assert_int_equal(admitted, 6);
    CALL(t, "u2", &q, 2.0, 0, QUOTA_RATE_TENANT, 50);
    CALL(t, "u2", &q, 2.0, 50, QUOTA_OK, 0);

    /* Concurrency 3 × 2 = 6. */
    struct config_quota c3 = concurrent(3);
    struct quota_slot *held[6];
    for (int i = 0; i < 6; i++)
        call_full(t, "acme", "alice", "c3", &c3, 2.0, 0, QUOTA_OK, 0, &held[i], __LINE__);
    call_full(t, "acme", "alice", "c3", &c3, 2.0, 0, QUOTA_CONCURRENCY, -1, NULL, __LINE__);
    for (int i = 0; i < 6; i++)
        quota_release(t, held[i]);

    /* 25 × 2.2 is 55.00000000000001 in binary: the tenant's burst is 55, not 56. */
    struct config_quota q25 = rated(1, 25, 0);
    admitted = 0;
    for (int u = 0; u < 3; u++)
        for (int i = 0; i < 25; i++) {
            long retry;
            struct quota_slot *slot;
            if (quota_admit_call(t, "acme", users[u], "invoices", "b25", &q25, 2.2, 0, &retry,
                                 &slot) == QUOTA_OK)
                admitted++;
        }
    assert_int_equal(admitted, 55);
    quota_table_free(t);
}

static void concurrency_acquire_and_release(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = concurrent(2);
    struct quota_slot *a, *b, *c;
    HOLD(t, "alice", &q, 1.0, 0, &a);
    HOLD(t, "bob", &q, 1.0, 0, &b); /* counted per tenant, not per user */
    CALL(t, "carol", &q, 1.0, 0, QUOTA_CONCURRENCY, -1);
    CALL(t, "alice", &q, 1.0, 5000, QUOTA_CONCURRENCY, -1); /* time does not help */
    call_full(t, "globex", "alice", "tool", &q, 1.0, 0, QUOTA_OK, 0, NULL, __LINE__);
    /* acme's entry and globex's, idle since its release: it goes at the next sweep. */
    assert_int_equal(quota_table_size(t), 2);

    quota_release(t, a);
    HOLD(t, "carol", &q, 1.0, 5000, &c);
    CALL(t, "carol", &q, 1.0, 5000, QUOTA_CONCURRENCY, -1);
    quota_release(t, b);
    quota_release(t, c);
    quota_release(t, NULL);
    /* Both free again. */
    HOLD(t, "alice", &q, 1.0, 6000, &a);
    HOLD(t, "alice", &q, 1.0, 6000, &b);
    quota_release(t, a);
    quota_release(t, b);
    /* Idle with no bucket: dropped at the next sweep. */
    assert_int_equal(quota_sweep(t, 6000, 0), 1);
    assert_int_equal(quota_table_size(t), 0);

    /* Without any limit a call is admitted and counted nowhere. */
    struct config_quota none = {0};
    CALL(t, "alice", &none, 1.0, 0, QUOTA_OK, 0);
    assert_int_equal(quota_table_size(t), 0);
    quota_table_free(t);
}

static void refused_call_takes_no_token(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    /* Concurrency refusals: 3 tokens, so exactly 3 admitted calls whatever was refused. */
    struct config_quota q = rated(10, 3, 1);
    struct quota_slot *s;
    HOLD(t, "alice", &q, 1.0, 0, &s);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_CONCURRENCY, -1);
    CALL(t, "bob", &q, 1.0, 0, QUOTA_CONCURRENCY, -1);
    quota_release(t, s);
    HOLD(t, "alice", &q, 1.0, 0, &s);
    quota_release(t, s);
    HOLD(t, "alice", &q, 1.0, 0, &s);
    quota_release(t, s);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_RATE_TENANT, 100);

    /* Rate refusals: hammering an empty bucket does not push the next token back. */
    struct config_quota r = rated(10, 1, 0);
    call_full(t, "acme", "bob", "r", &r, 1.0, 0, QUOTA_OK, 0, NULL, __LINE__);
    for (int i = 0; i < 100; i++)
        call_full(t, "acme", "bob", "r", &r, 1.0, i, QUOTA_RATE_TENANT, 100 - i, NULL, __LINE__);
    call_full(t, "acme", "bob", "r", &r, 1.0, 100, QUOTA_OK, 0, NULL, __LINE__);
    call_full(t, "acme", "bob", "r", &r, 1.0, 100, QUOTA_RATE_TENANT, 100, NULL, __LINE__);
    quota_table_free(t);
}

static void table_full_refusal_takes_no_token(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(2);
    assert_non_null(t);
    struct config_quota q = rated(10, 3, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0); /* acme's bucket and alice's: table full */
    /* bob's bucket cannot be made: refused, and acme's bucket keeps its 2 tokens. */
    for (int i = 0; i < 5; i++)
        CALL(t, "bob", &q, 1.0, 0, QUOTA_TABLE_FULL, QUOTA_TABLE_FULL_MS);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_RATE_TENANT, 100);
    assert_int_equal(quota_table_size(t), 2);
    quota_table_free(t);
}

static void full_table_refuses_new_users_until_idle_entries_expire(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(8);
    assert_non_null(t);
    struct config_quota q = rated(10, 100, 0);
    char user[32];
    /* acme's bucket + 7 users' = 8 entries. */
    for (int i = 0; i < 7; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        CALL(t, user, &q, 1.0, 0, QUOTA_OK, 0);
    }
    assert_int_equal(quota_table_size(t), 8);
    /* A flood of new names is refused without growing the table. */
    for (int i = 7; i < 1007; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        CALL(t, user, &q, 1.0, 0, QUOTA_TABLE_FULL, 1000);
    }
    assert_int_equal(quota_table_size(t), 8);
    CALL(t, "u0", &q, 1.0, 0, QUOTA_OK, 0); /* a known key needs no room */
    /* Each user bucket lacks one token: full again at 100 ms (u0's, lacking 2, at 200). */
    CALL(t, "u7", &q, 1.0, 99, QUOTA_TABLE_FULL, 1000);
    CALL(t, "u7", &q, 1.0, 100, QUOTA_OK, 0);
    assert_true(quota_table_size(t) <= 8);
    /* Left: acme's (full at 900 ms), u0's (200 ms) and u7's. */
    size_t before = quota_table_size(t);
    assert_int_equal(quota_sweep(t, 100, 0), before - 3);
    assert_int_equal(quota_table_size(t), 3);
    for (int i = 8; i < 13; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        CALL(t, user, &q, 1.0, 100, QUOTA_OK, 0);
    }
    CALL(t, "u13", &q, 1.0, 100, QUOTA_TABLE_FULL, 1000);
    assert_int_equal(quota_table_size(t), 8);
    /* A key the table dropped comes back full: u1 gets its 100 tokens. */
    for (int i = 0; i < 100; i++)
        CALL(t, "u1", &q, 1.0, 10000, QUOTA_OK, 0);
    CALL(t, "u1", &q, 1.0, 10000, QUOTA_RATE_TENANT, 100); /* both empty: a tie */
    quota_table_free(t);
}

static void default_cap_holds_a_hundred_thousand_keys(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    char key[32];
    for (unsigned i = 0; i < QUOTA_MAX_KEYS; i++) {
        snprintf(key, sizeof(key), "acme/user%u", i);
        long retry;
        if (quota_admit_key(t, key, 1, 1, 0, &retry) != QUOTA_OK)
            fail_msg("key %u refused", i);
    }
    assert_int_equal(quota_table_size(t), QUOTA_MAX_KEYS);
    KEY(t, "acme/one-more", 1, 1, 999, QUOTA_TABLE_FULL, 1000);
    KEY(t, "acme/user5", 1, 1, 999, QUOTA_RATE_USER, 1); /* still there, still empty */
    KEY(t, "acme/one-more", 1, 1, 1000, QUOTA_OK, 0);
    size_t before = quota_table_size(t);
    assert_int_equal(quota_sweep(t, 1000, 0), before - 1);
    assert_int_equal(quota_table_size(t), 1);
    quota_table_free(t);
}

static void held_entries_never_expire(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(4);
    assert_non_null(t);
    struct config_quota q = rated(1, 5, 2);
    struct quota_slot *a, *b;
    HOLD(t, "alice", &q, 1.0, 0, &a); /* acme's entry (held) and alice's */
    HOLD(t, "alice", &q, 1.0, 0, &b);
    KEY(t, "k0", 1, 1, 0, QUOTA_OK, 0);
    KEY(t, "k1", 1, 1, 0, QUOTA_OK, 0);
    KEY(t, "k2", 1, 1, 0, QUOTA_TABLE_FULL, 1000);

    /* An hour later every bucket is full; only the held entry stays. */
    assert_int_equal(quota_sweep(t, 3600000, 0), 3);
    assert_int_equal(quota_table_size(t), 1);
    /* The concurrency count survived: a third call is still refused. */
    CALL(t, "alice", &q, 1.0, 3600000, QUOTA_CONCURRENCY, -1);
    assert_int_equal(quota_table_size(t), 2); /* alice's entry is back, full */
    KEY(t, "k3", 1, 1, 3600000, QUOTA_OK, 0); /* the sweep took alice's again */
    KEY(t, "k4", 1, 1, 3600000, QUOTA_OK, 0);
    KEY(t, "k5", 1, 1, 3600000, QUOTA_OK, 0);
    KEY(t, "k6", 1, 1, 3600000, QUOTA_TABLE_FULL, 1000);
    /* Making room never takes the held entry, however full its bucket. */
    KEY(t, "k6", 1, 1, 7200000, QUOTA_OK, 0);
    KEY(t, "k7", 1, 1, 7200000, QUOTA_OK, 0);
    KEY(t, "k8", 1, 1, 7200000, QUOTA_OK, 0);
    KEY(t, "k9", 1, 1, 7200000, QUOTA_TABLE_FULL, 1000);
    assert_int_equal(quota_table_size(t), 4);
    quota_release(t, a);
    KEY(t, "k9", 1, 1, 7200000, QUOTA_TABLE_FULL, 1000); /* b is still held */
    quota_release(t, b);
    KEY(t, "k9", 1, 1, 7200000, QUOTA_OK, 0); /* acme's entry, idle now, made the room */
    assert_int_equal(quota_table_size(t), 4);
    /* Later it comes back with its count at 0 (two calls in progress admitted) and its
     * bucket full (5 tokens at 1/s). */
    HOLD(t, "alice", &q, 1.0, 10800000, &a);
    HOLD(t, "bob", &q, 1.0, 10800000, &b);
    quota_release(t, a);
    quota_release(t, b);
    for (int i = 0; i < 3; i++) {
        HOLD(t, "alice", &q, 1.0, 10800000, &a);
        quota_release(t, a);
    }
    CALL(t, "carol", &q, 1.0, 10800000, QUOTA_RATE_TENANT, 1000);
    quota_table_free(t);
}

static void clock_going_backwards_counts_as_no_time(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = rated(10, 2, 0);
    CALL(t, "alice", &q, 1.0, 1000, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 1000, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 500, QUOTA_RATE_TENANT, 100);
    CALL(t, "alice", &q, 1.0, -1000000, QUOTA_RATE_TENANT, 100);
    /* Refill counts from 1000, not from the earlier readings. */
    CALL(t, "alice", &q, 1.0, 1050, QUOTA_RATE_TENANT, 50);
    CALL(t, "alice", &q, 1.0, 1100, QUOTA_OK, 0);
    CALL(t, "alice", &q, 1.0, 1100, QUOTA_RATE_TENANT, 100);
    /* Nor does a clock that went back expire anything. */
    assert_int_equal(quota_sweep(t, 0, 0), 0);
    assert_int_equal(quota_table_size(t), 2);
    /* Extremes of the clock are ordinary instants. */
    KEY(t, "k", 10, 1, INT64_MAX, QUOTA_OK, 0);
    KEY(t, "k", 10, 1, INT64_MIN, QUOTA_RATE_USER, 100);
    KEY(t, "j", 10, 1, INT64_MIN, QUOTA_OK, 0);
    KEY(t, "j", 10, 1, INT64_MAX, QUOTA_OK, 0);
    quota_table_free(t);
}

static void per_key_bucket(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    for (int i = 0; i < 5; i++)
        KEY(t, "acme/alice", 5, 0, 0, QUOTA_OK, 0); /* burst 0: one second = 5 */
    KEY(t, "acme/alice", 5, 0, 0, QUOTA_RATE_USER, 200);
    KEY(t, "acme/bob", 5, 0, 0, QUOTA_OK, 0);
    KEY(t, "acme/alice", 5, 0, 200, QUOTA_OK, 0);
    KEY(t, "acme/alice", 5, 0, 200, QUOTA_RATE_USER, 200);

    /* Explicit burst; and the key spaces of calls and keys are apart. */
    KEY(t, "ceiling", 1, 3, 0, QUOTA_OK, 0);
    KEY(t, "ceiling", 1, 3, 0, QUOTA_OK, 0);
    KEY(t, "ceiling", 1, 3, 0, QUOTA_OK, 0);
    KEY(t, "ceiling", 1, 3, 0, QUOTA_RATE_USER, 1000);
    struct config_quota q = rated(1, 1, 0);
    CALL(t, "alice", &q, 1.0, 0, QUOTA_OK, 0);
    KEY(t, "acme", 1, 1, 0, QUOTA_OK, 0);
    KEY(t, "Tacme", 1, 1, 0, QUOTA_OK, 0);
    KEY(t, "", 1, 1, 0, QUOTA_OK, 0);
    KEY(t, "", 1, 1, 0, QUOTA_RATE_USER, 1000);
    quota_table_free(t);
}

static void reload_applies_new_numbers(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota before = rated(10, 10, 0), after = rated(1, 3, 0);
    CALL(t, "alice", &before, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &before, 1.0, 0, QUOTA_OK, 0);
    /* 8 tokens left, clamped to the new burst of 3, refilled at the new 1/s. */
    for (int i = 0; i < 3; i++)
        CALL(t, "alice", &after, 1.0, 0, QUOTA_OK, 0);
    CALL(t, "alice", &after, 1.0, 0, QUOTA_RATE_TENANT, 1000);
    /* Back to 10/s at 1 s: the second went by at 1/s (1 token), then 10/s applies. */
    CALL(t, "alice", &before, 1.0, 1000, QUOTA_OK, 0);
    CALL(t, "alice", &before, 1.0, 1000, QUOTA_RATE_TENANT, 100);
    /* A tool that gains a rate starts with a full bucket. */
    struct config_quota conc = concurrent(1), both = rated(10, 2, 1);
    struct quota_slot *s;
    call_full(t, "acme", "alice", "c", &conc, 1.0, 0, QUOTA_OK, 0, &s, __LINE__);
    call_full(t, "acme", "alice", "c", &both, 1.0, 0, QUOTA_CONCURRENCY, -1, NULL, __LINE__);
    quota_release(t, s);
    call_full(t, "acme", "alice", "c", &both, 1.0, 0, QUOTA_OK, 0, &s, __LINE__);
    quota_release(t, s);
    call_full(t, "acme", "alice", "c", &both, 1.0, 0, QUOTA_OK, 0, &s, __LINE__);
    quota_release(t, s);
    call_full(t, "acme", "alice", "c", &both, 1.0, 0, QUOTA_RATE_TENANT, 100, NULL, __LINE__);
    quota_table_free(t);
}

static void invalid_names_and_numbers_are_refused(void **state)
{
    (void)state;
    struct quota_table *t = quota_table_new(0);
    assert_non_null(t);
    struct config_quota q = rated(10, 2, 0);
    char name[QUOTA_KEY_MAX + 2];
    memset(name, 'u', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';

    name[QUOTA_NAME_MAX + 1] = '\0'; /* 256 bytes */
    CALL(t, name, &q, 1.0, 0, QUOTA_INVALID, -1);
    call_full(t, name, "alice", "tool", &q, 1.0, 0, QUOTA_INVALID, -1, NULL, __LINE__);
    call_full(t, "acme", "alice", name, &q, 1.0, 0, QUOTA_INVALID, -1, NULL, __LINE__);
    assert_int_equal(quota_table_size(t), 0);
    name[QUOTA_NAME_MAX] = '\0'; /* 255 bytes */
    CALL(t, name, &q, 1.0, 0, QUOTA_OK, 0);
    CALL(t, NULL, &q, 1.0, 0, QUOTA_INVALID, -1);
    call_full(t, NULL, "alice", "tool", &q, 1.0, 0, QUOTA_INVALID, -1, NULL, __LINE__);
    CALL(t, "alice", &q, 0.0, 0, QUOTA_INVALID, -1);
    CALL(t, "alice", &q, -1.0, 0, QUOTA_INVALID, -1);
    CALL(t, "alice", &q, NAN, 0, QUOTA_INVALID, -1);
    CALL(t, "alice", &q, INFINITY, 0, QUOTA_INVALID, -1);
    struct config_quota zero = rated(0, 2, 0);
    CALL(t, "alice", &zero, 1.0, 0, QUOTA_INVALID, -1);
    long retry = -2;
    assert_int_equal(
        quota_admit_call(t, "acme", "alice", "invoices", "tool", &q, 1.0, 0, &retry, NULL),
        QUOTA_INVALID);
    assert_int_equal(retry, -1);
    struct quota_slot *slot;
    assert_int_equal(
        quota_admit_call(t, "acme", "alice", "invoices", "tool", NULL, 1.0, 0, &retry, &slot),
        QUOTA_INVALID);
    /* NULL retry_after_ms is allowed. */
    assert_int_equal(
        quota_admit_call(t, "acme", "alice", "invoices", "tool", &q, 1.0, 0, NULL, &slot),
        QUOTA_OK);

    memset(name, 'k', sizeof(name) - 1); /* QUOTA_KEY_MAX + 1 bytes */
    KEY(t, name, 1, 1, 0, QUOTA_INVALID, -1);
    name[QUOTA_KEY_MAX] = '\0';
    KEY(t, name, 1, 1, 0, QUOTA_OK, 0);
    KEY(t, NULL, 1, 1, 0, QUOTA_INVALID, -1);
    KEY(t, "k", 0, 1, 0, QUOTA_INVALID, -1);
    KEY(t, "k", NAN, 1, 0, QUOTA_INVALID, -1);
    KEY(t, "k", INFINITY, 1, 0, QUOTA_INVALID, -1);
    assert_int_equal(quota_table_size(t), 4); /* acme's, 255-byte user's, alice's, the key's */
    quota_table_free(t);

    errno = 0;
    assert_null(quota_table_new((size_t)QUOTA_MAX_KEYS_LIMIT + 1));
    assert_int_equal(errno, EINVAL);
    quota_table_free(NULL);
}

static void verdicts_have_reasons(void **state)
{
    (void)state;
    assert_string_equal(quota_verdict_text(QUOTA_OK), "ok");
    assert_string_equal(quota_verdict_text(QUOTA_RATE_TENANT), "tenant rate limit");
    assert_string_equal(quota_verdict_text(QUOTA_RATE_USER), "user rate limit");
    assert_string_equal(quota_verdict_text(QUOTA_CONCURRENCY), "concurrency limit");
    assert_string_equal(quota_verdict_text(QUOTA_TABLE_FULL), "quota table full");
    assert_string_equal(quota_verdict_text(QUOTA_INVALID), "invalid quota key or numbers");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_admits_exactly_burst_then_hints_the_wait),
        cmocka_unit_test(per_minute_rates),
        cmocka_unit_test(million_per_second),
        cmocka_unit_test(users_share_the_tenant_bucket),
        cmocka_unit_test(tenant_refusal_takes_no_token_from_the_user_bucket),
        cmocka_unit_test(tenant_scale_one_half),
        cmocka_unit_test(tenant_scale_two),
        cmocka_unit_test(concurrency_acquire_and_release),
        cmocka_unit_test(refused_call_takes_no_token),
        cmocka_unit_test(table_full_refusal_takes_no_token),
        cmocka_unit_test(full_table_refuses_new_users_until_idle_entries_expire),
        cmocka_unit_test(default_cap_holds_a_hundred_thousand_keys),
        cmocka_unit_test(held_entries_never_expire),
        cmocka_unit_test(clock_going_backwards_counts_as_no_time),
        cmocka_unit_test(per_key_bucket),
        cmocka_unit_test(reload_applies_new_numbers),
        cmocka_unit_test(invalid_names_and_numbers_are_refused),
        cmocka_unit_test(verdicts_have_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
