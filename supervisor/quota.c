/*
 * quota.c — token buckets and concurrency counts in a capped hash table.
 *
 * Entries are chained in a power-of-two bucket array (SipHash-2-4 under a random per-table key)
 * and also sit in a binary min-heap ordered by expire_at: the first instant the entry is idle
 * (bucket full again, no slot held). The heap top is therefore the only candidate for dropping,
 * so dropping idle entries and deciding "table full of live entries" are exact and O(log n).
 * Entries an operation is working on are pinned (expire_at = NEVER) so that making room for a
 * second key can never drop the first.
 *
 * Tokens are doubles. A bucket admits when it holds at least 1 - TOKEN_EPS tokens, so rounding
 * in the refill (1/60 tokens per second does not sum to exactly 1) never refuses a call whose
 * retry hint has passed; the slack is a millionth of a call.
 *
 * Never does I/O, never reads a clock, never frees a held slot.
 */
#include "quota.h"

#include <errno.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#define NEVER      INT64_MAX
#define TOKEN_EPS  1e-6
#define TIME_LIMIT 1e15 /* ms (31,000 years): beyond this, durations are "never" */

struct quota_slot {
    struct quota_slot *next; /* hash chain */
    uint64_t hash;
    size_t heap_index;
    int64_t last_ms;   /* refilled up to here; never moves backwards */
    int64_t expire_at; /* idle from this instant; NEVER while held or pinned */
    double tokens;
    double rate; /* tokens per ms; 0 = no bucket (concurrency only) */
    double cap;  /* capacity; >= 1 when rate > 0 */
    uint32_t inflight;
    size_t keylen;
    char key[]; /* keylen bytes: a kind byte, then names joined by NUL */
};

struct quota_table {
    uint64_t sipkey[2];
    struct quota_slot **buckets;
    size_t nbuckets; /* power of two */
    size_t max_buckets;
    struct quota_slot **heap;
    size_t n; /* entries, = heap length */
    size_t heap_cap;
    size_t max_keys;
};

/* ---- SipHash-2-4 ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash24(const uint64_t k[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- heap by expire_at ---- */

static void heap_set(struct quota_table *t, size_t i, struct quota_slot *s)
{
    t->heap[i] = s;
    s->heap_index = i;
}

static void heap_fix(struct quota_table *t, size_t i)
{
    struct quota_slot *s = t->heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (t->heap[up]->expire_at <= s->expire_at)
            break;
        heap_set(t, i, t->heap[up]);
        i = up;
    }
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && t->heap[c + 1]->expire_at < t->heap[c]->expire_at)
            c++;
        if (t->heap[c]->expire_at >= s->expire_at)
            break;
        heap_set(t, i, t->heap[c]);
        i = c;
    }
    heap_set(t, i, s);
}

static void heap_remove(struct quota_table *t, size_t i)
{
    struct quota_slot *last = t->heap[--t->n];
    if (i < t->n) {
        heap_set(t, i, last);
        heap_fix(t, i);
    }
}

/* ---- table ---- */

struct quota_table *quota_table_new(size_t max_keys)
{
    if (max_keys == 0)
        max_keys = QUOTA_MAX_KEYS;
    if (max_keys > QUOTA_MAX_KEYS_LIMIT) {
        errno = EINVAL;
        return NULL;
    }
    struct quota_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    if (getrandom(t->sipkey, sizeof(t->sipkey), 0) != (ssize_t)sizeof(t->sipkey))
        goto err;
    t->max_keys = max_keys;
    t->max_buckets = 1;
    while (t->max_buckets < max_keys)
        t->max_buckets *= 2;
    t->nbuckets = t->max_buckets < 64 ? t->max_buckets : 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL)
        goto err;
    return t;
err:
    free(t);
    return NULL;
}

void quota_table_free(struct quota_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->heap[i]);
    free(t->heap);
    free(t->buckets);
    free(t);
}

size_t quota_table_size(const struct quota_table *t)
{
    return t->n;
}

static struct quota_slot *find(const struct quota_table *t, const char *key, size_t len, uint64_t h)
{
    for (struct quota_slot *s = t->buckets[h & (t->nbuckets - 1)]; s != NULL; s = s->next)
        if (s->hash == h && s->keylen == len && memcmp(s->key, key, len) == 0)
            return s;
    return NULL;
}

static void drop(struct quota_table *t, struct quota_slot *s)
{
    struct quota_slot **pp = &t->buckets[s->hash & (t->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    heap_remove(t, s->heap_index);
    free(s);
}

/* Doubling the chains' array is an optimisation: when it fails, chains just get longer. */
static void grow_buckets(struct quota_table *t)
{
    size_t n = t->nbuckets * 2;
    struct quota_slot **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct quota_slot *s = t->buckets[i], *next;
        for (; s != NULL; s = next) {
            next = s->next;
            s->next = b[s->hash & (n - 1)];
            b[s->hash & (n - 1)] = s;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

static size_t sweep(struct quota_table *t, int64_t now_ms, size_t max)
{
    size_t k = 0;
    while (t->n > 0 && t->heap[0]->expire_at != NEVER && t->heap[0]->expire_at <= now_ms &&
           (max == 0 || k < max)) {
        drop(t, t->heap[0]);
        k++;
    }
    return k;
}

size_t quota_sweep(struct quota_table *t, int64_t now_ms, size_t max)
{
    return sweep(t, now_ms, max);
}

/* Finds the entry for key, or makes a new one (rate 0: the caller configures it), dropping the
 * earliest idle entry when the table is full. The entry comes back pinned. NULL: no room. */
static struct quota_slot *get_pinned(struct quota_table *t, const char *key, size_t len,
                                     int64_t now_ms)
{
    uint64_t h = siphash24(t->sipkey, key, len);
    struct quota_slot *s = find(t, key, len, h);
    if (s != NULL) {
        s->expire_at = NEVER;
        heap_fix(t, s->heap_index);
        return s;
    }
    if (t->n >= t->max_keys && sweep(t, now_ms, 1) == 0)
        return NULL;
    if (t->n == t->heap_cap) {
        size_t cap = t->heap_cap == 0 ? 16 : t->heap_cap * 2;
        if (cap > t->max_keys)
            cap = t->max_keys;
        struct quota_slot **heap = realloc(t->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return NULL;
        t->heap = heap;
        t->heap_cap = cap;
    }
    s = calloc(1, sizeof(*s) + len);
    if (s == NULL)
        return NULL;
    s->hash = h;
    s->keylen = len;
    memcpy(s->key, key, len);
    s->last_ms = now_ms;
    s->expire_at = NEVER;
    if (t->n + 1 > t->nbuckets && t->nbuckets < t->max_buckets)
        grow_buckets(t);
    struct quota_slot **head = &t->buckets[h & (t->nbuckets - 1)];
    s->next = *head;
    *head = s;
    heap_set(t, t->n++, s);
    heap_fix(t, s->heap_index);
    return s;
}

/* ceil(3) for 0 <= x < TIME_LIMIT (< 2^53), without libm, which the build does not link. */
static double ceil_small(double x)
{
    double c = (double)(int64_t)x;
    return c < x ? c + 1.0 : c;
}

/* Milliseconds until `need` more tokens at rate (per ms), rounded up; clamped to TIME_LIMIT. */
static double ms_until(double need, double rate)
{
    double ms = need / rate;
    if (!(ms > 0.0))
        return 0.0;
    return ms < TIME_LIMIT ? ceil_small(ms) : TIME_LIMIT;
}

/* Recomputes when s turns idle and puts it back in its heap place (unpins it). */
static void settle(struct quota_table *t, struct quota_slot *s)
{
    if (s->inflight > 0) {
        s->expire_at = NEVER;
    } else if (s->rate <= 0.0 || s->tokens >= s->cap - TOKEN_EPS) {
        s->expire_at = s->last_ms;
    } else {
        /* "Full" allows the same slack as admitting: within TOKEN_EPS of capacity. */
        double d = ms_until(s->cap - TOKEN_EPS / 2 - s->tokens, s->rate);
        s->expire_at =
            d >= TIME_LIMIT || s->last_ms > NEVER - (int64_t)d ? NEVER : s->last_ms + (int64_t)d;
    }
    heap_fix(t, s->heap_index);
}

/* Refills up to now with the numbers the entry had, then takes the new ones (a reload). */
static void configure(struct quota_slot *s, double rate_per_s, double cap, int64_t now_ms)
{
    if (now_ms > s->last_ms) {
        if (s->rate > 0.0) {
            double filled = s->tokens + ((double)now_ms - (double)s->last_ms) * s->rate;
            s->tokens = filled < s->cap ? filled : s->cap;
        }
        s->last_ms = now_ms;
    }
    double rate = rate_per_s / 1000.0;
    if (rate > 0.0 && s->rate <= 0.0)
        s->tokens = cap; /* a new bucket, or one that had no rate until now: starts full */
    s->rate = rate;
    s->cap = rate > 0.0 ? cap : 0.0;
    if (s->tokens > s->cap)
        s->tokens = s->cap;
}

/* 0 when the bucket has a token; else the ms until it has one (>= 1). */
static double wait_ms(const struct quota_slot *s)
{
    if (s == NULL || s->rate <= 0.0 || s->tokens >= 1.0 - TOKEN_EPS)
        return 0.0;
    /* Half the slack: once the hint has passed, the bucket is within TOKEN_EPS of a token. */
    double ms = ms_until(1.0 - TOKEN_EPS / 2 - s->tokens, s->rate);
    return ms < 1.0 ? 1.0 : ms;
}

static void take(struct quota_slot *s)
{
    if (s == NULL || s->rate <= 0.0)
        return;
    s->tokens -= 1.0;
    if (s->tokens < 0.0)
        s->tokens = 0.0; /* within TOKEN_EPS of a token was admitted */
}

static long retry_hint(double ms)
{
    return ms < (double)QUOTA_RETRY_MAX_MS ? (long)ms : QUOTA_RETRY_MAX_MS;
}

/* x rounded up to a whole number, at least 1; products like 0.1 × 30 that land a rounding error
 * above an integer count as that integer. */
static double whole_at_least_1(double x)
{
    if (!(x > 1.0))
        return 1.0;
    if (x >= TIME_LIMIT)
        return TIME_LIMIT;
    double c = ceil_small(x);
    if (c - x > 1.0 - 1e-9)
        c -= 1.0;
    return c;
}

static bool rate_ok(double r)
{
    return isfinite(r) && r > 0.0;
}

/* Appends a name and its NUL separator; -1 when NULL or longer than QUOTA_NAME_MAX. */
static int put_name(char *key, size_t *len, const char *name)
{
    if (name == NULL)
        return -1;
    size_t n = strnlen(name, QUOTA_NAME_MAX + 1);
    if (n > QUOTA_NAME_MAX)
        return -1;
    memcpy(key + *len, name, n + 1);
    *len += n + 1;
    return 0;
}

#define CALL_KEY_MAX (1 + 4 * (QUOTA_NAME_MAX + 1))

enum quota_verdict quota_admit_call(struct quota_table *t, const char *tenant, const char *user,
                                    const char *server, const char *tool,
                                    const struct config_quota *q, double scale, int64_t now_ms,
                                    long *retry_after_ms, struct quota_slot **slot)
{
    long dummy;
    if (retry_after_ms == NULL)
        retry_after_ms = &dummy;
    *retry_after_ms = -1;
    if (slot == NULL)
        return QUOTA_INVALID;
    *slot = NULL;

    /* Kinds 'T' and 'U' keep the two key spaces, and quota_admit_key's 'K', apart; NULs
     * between names cannot occur inside a name, so no two name lists share a key. */
    char tkey[CALL_KEY_MAX], ukey[CALL_KEY_MAX];
    size_t tlen = 1, ulen = 1;
    tkey[0] = 'T';
    ukey[0] = 'U';
    if (q == NULL || !(isfinite(scale) && scale > 0.0) ||
        (q->has_rate && !rate_ok(q->rate_per_s)) || put_name(tkey, &tlen, tenant) == -1 ||
        put_name(tkey, &tlen, server) == -1 || put_name(tkey, &tlen, tool) == -1 ||
        put_name(ukey, &ulen, tenant) == -1 || put_name(ukey, &ulen, user) == -1 ||
        put_name(ukey, &ulen, server) == -1 || put_name(ukey, &ulen, tool) == -1)
        return QUOTA_INVALID;

    double user_rate = 0.0, user_cap = 0.0, tenant_rate = 0.0, tenant_cap = 0.0;
    if (q->has_rate) {
        user_rate = q->rate_per_s;
        user_cap = q->burst > 0 ? q->burst : whole_at_least_1(user_rate);
        tenant_rate = user_rate * scale;
        tenant_cap = whole_at_least_1(user_cap * scale);
        if (!rate_ok(tenant_rate))
            return QUOTA_INVALID; /* overflowed */
    }
    double conc = q->concurrency > 0 ? whole_at_least_1(q->concurrency * scale) : 0.0;
    if (!q->has_rate && conc == 0.0) {
        *retry_after_ms = 0;
        return QUOTA_OK;
    }

    sweep(t, now_ms, QUOTA_SWEEP_PER_OP);
    struct quota_slot *ts = get_pinned(t, tkey, tlen, now_ms), *us = NULL;
    if (ts == NULL) {
        *retry_after_ms = QUOTA_TABLE_FULL_MS;
        return QUOTA_TABLE_FULL;
    }
    configure(ts, tenant_rate, tenant_cap, now_ms);
    if (q->has_rate) {
        us = get_pinned(t, ukey, ulen, now_ms);
        if (us == NULL) {
            settle(t, ts);
            *retry_after_ms = QUOTA_TABLE_FULL_MS;
            return QUOTA_TABLE_FULL;
        }
        configure(us, user_rate, user_cap, now_ms);
    }

    /* Decide on every limit first, then take: a refusal changes no count. */
    enum quota_verdict v = QUOTA_OK;
    double wt = wait_ms(ts), wu = wait_ms(us);
    if (wt > 0.0 || wu > 0.0) {
        v = wt >= wu ? QUOTA_RATE_TENANT : QUOTA_RATE_USER;
        *retry_after_ms = retry_hint(wt >= wu ? wt : wu);
    } else if (conc > 0.0 && (double)ts->inflight >= conc) {
        v = QUOTA_CONCURRENCY;
    } else {
        take(ts);
        take(us);
        if (conc > 0.0) {
            ts->inflight++;
            *slot = ts;
        }
        *retry_after_ms = 0;
    }
    settle(t, ts);
    if (us != NULL)
        settle(t, us);
    return v;
}

void quota_release(struct quota_table *t, struct quota_slot *slot)
{
    if (slot == NULL || slot->inflight == 0)
        return;
    slot->inflight--;
    settle(t, slot);
}

enum quota_verdict quota_admit_key(struct quota_table *t, const char *key, double rate_per_s,
                                   uint32_t burst, int64_t now_ms, long *retry_after_ms)
{
    long dummy;
    if (retry_after_ms == NULL)
        retry_after_ms = &dummy;
    *retry_after_ms = -1;
    char k[1 + QUOTA_KEY_MAX];
    size_t n = key != NULL ? strnlen(key, QUOTA_KEY_MAX + 1) : QUOTA_KEY_MAX + 1;
    if (n > QUOTA_KEY_MAX || !rate_ok(rate_per_s))
        return QUOTA_INVALID;
    k[0] = 'K';
    memcpy(k + 1, key, n);

    sweep(t, now_ms, QUOTA_SWEEP_PER_OP);
    struct quota_slot *s = get_pinned(t, k, n + 1, now_ms);
    if (s == NULL) {
        *retry_after_ms = QUOTA_TABLE_FULL_MS;
        return QUOTA_TABLE_FULL;
    }
    configure(s, rate_per_s, burst > 0 ? burst : whole_at_least_1(rate_per_s), now_ms);
    enum quota_verdict v = QUOTA_OK;
    double w = wait_ms(s);
    if (w > 0.0) {
        v = QUOTA_RATE_USER;
        *retry_after_ms = retry_hint(w);
    } else {
        take(s);
        *retry_after_ms = 0;
    }
    settle(t, s);
    return v;
}

const char *quota_verdict_text(enum quota_verdict v)
{
    switch (v) {
    case QUOTA_OK:
        return "ok";
    case QUOTA_RATE_TENANT:
        return "tenant rate limit";
    case QUOTA_RATE_USER:
        return "user rate limit";
    case QUOTA_CONCURRENCY:
        return "concurrency limit";
    case QUOTA_TABLE_FULL:
        return "quota table full";
    case QUOTA_INVALID:
        return "invalid quota key or numbers";
    }
    return "unknown quota verdict";
}
