/*
 * listing.h — what listing one child's tools may cost the front per minute, and how soon after a
 * change it is listed again.
 *
 * A child decides how often the front lists its tools (every notifications/tools/list_changed)
 * and how much each listing costs (bytes parsed, definitions hashed, schemas compiled). Without a
 * budget one server announcing a large changing listing every few hundred milliseconds keeps the
 * shared event loop busy for every tenant. The budget is per child over a fixed one-minute
 * window; the gap between listings doubles with each change and is reset by a quiet minute.
 *
 * Pure: time is passed in, nothing is logged or allocated.
 */
#ifndef MCPVISOR_LISTING_H
#define MCPVISOR_LISTING_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define LISTING_WINDOW_MS  60000 /* the budget's window, and the quiet that resets the back-off */
#define LISTING_MIN_GAP_MS 250   /* between the starts of two listings of one child, at first */
#define LISTING_MAX_GAP_MS 30000 /* the back-off's ceiling */

struct listing_budget {
    int64_t window_ms; /* start of the current window; 0 before the first charge */
    uint64_t bytes, tools, nodes;
    unsigned doublings;    /* of the gap: one per listing started within a window of quiet */
    int64_t last_start_ms; /* 0: never listed */
};

/* How long to wait before listing again at `now` (0: at once). */
int64_t listing_wait_ms(const struct listing_budget *b, int64_t now);

/* A listing starts at `now`: the next one waits twice as long, unless a quiet window passed. */
void listing_started(struct listing_budget *b, int64_t now);

/*
 * Counts one answer to tools/list (`bytes` of it, `tools` definitions, `nodes` schema nodes
 * compiled for it) against the child's budget in the window containing `now`. Returns 0, or -1
 * when the window's budget is spent, with a sentence naming the limit in why and the time until
 * the window ends in *retry_ms.
 */
int listing_charge(struct listing_budget *b, const struct config_limits *lim, int64_t now,
                   size_t bytes, size_t tools, size_t nodes, char *why, size_t whylen,
                   int64_t *retry_ms);

#endif
