/*
 * listing.c — the per-child listing budget and back-off (see listing.h).
 */
#include "listing.h"

#include <stdio.h>

static int64_t gap_ms(unsigned doublings)
{
    int64_t gap = LISTING_MIN_GAP_MS;
    for (unsigned i = 0; i < doublings && gap < LISTING_MAX_GAP_MS; i++)
        gap *= 2;
    return gap < LISTING_MAX_GAP_MS ? gap : LISTING_MAX_GAP_MS;
}

static unsigned doublings_at(const struct listing_budget *b, int64_t now)
{
    /* A child quiet for a whole window starts over: a server changing once in a while is never
     * slowed down by the back-off. */
    if (b->last_start_ms == 0 || now - b->last_start_ms >= LISTING_WINDOW_MS)
        return 0;
    return b->doublings;
}

int64_t listing_wait_ms(const struct listing_budget *b, int64_t now)
{
    if (b->last_start_ms == 0)
        return 0;
    int64_t since = now - b->last_start_ms;
    int64_t gap = doublings_at(b, now) == 0 ? LISTING_MIN_GAP_MS : gap_ms(b->doublings);
    return since >= gap ? 0 : gap - since;
}

void listing_started(struct listing_budget *b, int64_t now)
{
    unsigned d = doublings_at(b, now);
    b->doublings = d < 16 ? d + 1 : d;
    b->last_start_ms = now;
}

int listing_charge(struct listing_budget *b, const struct config_limits *lim, int64_t now,
                   size_t bytes, size_t tools, size_t nodes, char *why, size_t whylen,
                   int64_t *retry_ms)
{
    if (b->window_ms == 0 || now - b->window_ms >= LISTING_WINDOW_MS || now < b->window_ms) {
        b->window_ms = now;
        b->bytes = b->tools = b->nodes = 0;
    }
    b->bytes += bytes;
    b->tools += tools;
    b->nodes += nodes;
    const char *key = NULL;
    uint64_t used = 0, limit = 0;
    if (b->tools > lim->listing_tools_per_minute) {
        key = "listing_tools_per_minute";
        used = b->tools;
        limit = lim->listing_tools_per_minute;
    } else if (b->bytes > lim->listing_bytes_per_minute) {
        key = "listing_bytes_per_minute";
        used = b->bytes;
        limit = lim->listing_bytes_per_minute;
    } else if (b->nodes > lim->listing_schema_nodes_per_minute) {
        key = "listing_schema_nodes_per_minute";
        used = b->nodes;
        limit = lim->listing_schema_nodes_per_minute;
    } else {
        return 0;
    }
    *retry_ms = b->window_ms + LISTING_WINDOW_MS - now;
    if (*retry_ms < 1)
        *retry_ms = 1;
    snprintf(why, whylen,
             "the server's tool listings used %llu of limits.%s (%llu) within a minute",
             (unsigned long long)used, key, (unsigned long long)limit);
    return -1;
}
