/*
 * quota.h — per-tool call quotas (token buckets and concurrency counts) and a generic per-key
 * request ceiling, kept in one bounded table. Pure logic: no I/O, no clock of its own (every
 * operation takes the caller's monotonic now_ms), no global state; single-threaded.
 *
 * What a tools/call is counted against, given the tool's manifest quota q and the tenant's
 * quota_scale:
 *   - the tenant bucket, keyed (tenant, server, tool): rate q.rate_per_s × scale, capacity
 *     burst × scale, shared by every user of the tenant;
 *   - the user bucket, keyed (tenant, user, server, tool): the manifest's rate and burst as
 *     written, so one user never takes more than one caller's share, while a tenant whose scale
 *     is above 1 has room for several users at once (with a scale of 1 or less the tenant
 *     bucket is the stricter one and the user bucket never binds);
 *   - concurrency, counted on the tenant entry: at most ceil(q.concurrency × scale) calls in
 *     progress per (tenant, server, tool); q.concurrency 0 = unlimited.
 * The manifest's burst 0 means one second of the manifest rate. Scaled burst and concurrency
 * round up, to at least 1. Buckets start full and refill continuously; a call takes one token.
 *
 * Invariants:
 *   - A call is admitted by all its buckets and its concurrency limit or it changes nothing: no
 *     token is taken from any bucket when one of them, or the concurrency limit, refuses.
 *   - The table never holds more than max_keys entries. A new key when every entry is live is
 *     refused (QUOTA_TABLE_FULL), never grown past the cap: a flood of distinct users cannot
 *     grow memory. An entry is idle once its bucket is full again and no call holds it; idle
 *     entries are dropped lazily (a few per operation, the rest by quota_sweep or when room is
 *     needed). Dropping an idle entry is invisible: it would be re-made full, as it was.
 *   - An entry with a call in progress (a held slot) is never dropped, so a slot stays valid
 *     until quota_release.
 *   - Keys hash with SipHash-2-4 under a per-table random key (getrandom), so callers cannot
 *     choose user names that collide.
 *   - A later call may bring different numbers for the same key (a reloaded configuration):
 *     they apply from then on; tokens are clamped to the new capacity.
 *   - now_ms going backwards counts as no time passing.
 */
#ifndef MCPVISOR_QUOTA_H
#define MCPVISOR_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define QUOTA_MAX_KEYS       100000u    /* default table cap (quota_table_new(0)) */
#define QUOTA_MAX_KEYS_LIMIT (1u << 24) /* largest cap quota_table_new accepts */
#define QUOTA_NAME_MAX       255        /* bytes in a tenant, user, server or tool name */
#define QUOTA_KEY_MAX        1024       /* bytes in a quota_admit_key key */
#define QUOTA_SWEEP_PER_OP   4          /* idle entries dropped at most per admit */
#define QUOTA_TABLE_FULL_MS  1000       /* retry hint when the table is full */
#define QUOTA_RETRY_MAX_MS   86400000L  /* rate hints are capped at one day */

enum quota_verdict {
    QUOTA_OK = 0,
    QUOTA_RATE_TENANT, /* the tenant bucket is empty */
    QUOTA_RATE_USER,   /* the user's bucket is empty */
    QUOTA_CONCURRENCY, /* the tenant's concurrency limit for the tool is reached */
    QUOTA_TABLE_FULL,  /* a new key, and no room (or no memory) for it */
    QUOTA_INVALID,     /* a NULL or over-long name, or a rate or scale that is not > 0 */
};

struct quota_table;
/* One table entry: a bucket and its concurrency count. Returned by quota_admit_call as the
 * handle of a held concurrency slot; opaque. */
struct quota_slot;

/* max_keys 0 = QUOTA_MAX_KEYS. Returns NULL with errno (EINVAL above QUOTA_MAX_KEYS_LIMIT,
 * ENOMEM, or getrandom's error). */
struct quota_table *quota_table_new(size_t max_keys);
/* Frees every entry; slots still held become invalid (release them first). NULL is a no-op. */
void quota_table_free(struct quota_table *t);

/*
 * Admits one tools/call, or refuses it with no change to any count. Names are borrowed for the
 * call only; each is at most QUOTA_NAME_MAX bytes (user is untrusted), else QUOTA_INVALID.
 * q is the tool's manifest quota (borrowed); scale is the tenant's quota_scale (> 0).
 *
 * *slot (must not be NULL) is set to NULL, or on QUOTA_OK when q->concurrency applies, to the
 * held slot the caller passes to quota_release exactly once when the call finishes.
 * *retry_after_ms (NULL allowed) receives 0 on QUOTA_OK; on a rate refusal the milliseconds
 * until every refusing bucket has a token (rounded up, at least 1, at most QUOTA_RETRY_MAX_MS);
 * QUOTA_TABLE_FULL_MS on QUOTA_TABLE_FULL; -1 otherwise: a concurrency refusal carries no hint
 * because the wait is the end of a call in progress, which this table cannot foresee.
 * When several limits refuse, the verdict is a rate one if any (its hint is a lower bound on the
 * wait), the bucket with the longer wait, the tenant's on a tie.
 * A call with neither a rate nor a concurrency limit is admitted and counted nowhere.
 */
enum quota_verdict quota_admit_call(struct quota_table *t, const char *tenant, const char *user,
                                    const char *server, const char *tool,
                                    const struct config_quota *q, double scale, int64_t now_ms,
                                    long *retry_after_ms, struct quota_slot **slot);

/* Ends a call admitted with a held slot (from this table). NULL is a no-op. */
void quota_release(struct quota_table *t, struct quota_slot *slot);

/*
 * One bucket per key, independent of quota_admit_call's keys (the HTTP per-principal ceiling,
 * keyed e.g. "tenant/user"). key (borrowed) is at most QUOTA_KEY_MAX bytes; rate_per_s > 0;
 * burst 0 = one second of rate (at least 1). Verdicts: QUOTA_OK, QUOTA_RATE_USER (the key's
 * bucket is empty), QUOTA_TABLE_FULL, QUOTA_INVALID; *retry_after_ms as for quota_admit_call.
 */
enum quota_verdict quota_admit_key(struct quota_table *t, const char *key, double rate_per_s,
                                   uint32_t burst, int64_t now_ms, long *retry_after_ms);

/* Drops up to max idle entries (0 = all of them); returns how many. For the caller's timer. */
size_t quota_sweep(struct quota_table *t, int64_t now_ms, size_t max);

size_t quota_table_size(const struct quota_table *t); /* entries held */

/* A short reason for logs and error messages ("tenant rate limit", ...); static storage. */
const char *quota_verdict_text(enum quota_verdict v);

#endif
