/*
 * pool.h — children per (server, tenant): which child a session talks to, starting and
 * initializing children, warm ones ahead of demand, idle reaping, graceful replacement, and
 * restarts with back-off behind a circuit breaker.
 *
 * The pool sits below sessions: it never knows what a session or a request is. It reaches up
 * only through the struct pool_client it was given, with opaque session pointers. It never lets
 * a child serve two tenants, except a manifest's "shared" child, which serves every tenant the
 * manifest is allowed to and is told who calls (session.c adds the principal to each request).
 */
#ifndef MCPVISOR_POOL_H
#define MCPVISOR_POOL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "frontenv.h"
#include "jsonrpc.h"

struct front;
struct session;
struct upstream;

#define POOL_QUEUE_MAX        256   /* lines waiting for a child that is starting */
#define POOL_BACKOFF_MIN_MS   250   /* first restart delay of a crashed shared child */
#define POOL_BACKOFF_MAX_MS   30000 /* the delay doubles per failure up to this */
#define POOL_CIRCUIT_FAILURES 3     /* failures in a row that open the circuit */
#define POOL_STABLE_MS        10000 /* a child up this long before it fails starts the count anew */

/* What the pool needs from the sessions above it. */
struct pool_client {
    /* The session whose request with broker id bid was forwarded to up, or NULL. */
    struct session *(*owner)(const struct upstream *up, uint64_t bid);
    /* The one session with requests forwarded to up and not answered yet (whether or not it
     * still talks to up), or NULL: none, or several. */
    struct session *(*sole_caller)(const struct upstream *up);
    /* Whether s subscribed to the resource uri. */
    bool (*subscribed)(const struct session *s, const char *uri);
    /* A message of the child of `from` routed to s; takes msg (line/len: its bytes, borrowed).
     * from is where an answer to it goes (s may talk to another child by then). */
    void (*message)(struct session *s, struct upstream *from, cJSON *msg, enum jsonrpc_kind kind,
                    const char *line, size_t len);
    /* up's child is gone. restarting: s stays attached and continues on the next child (its
     * requests in flight there are lost); otherwise s has no child any more. */
    void (*lost)(struct session *s, const char *why, bool restarting);
    /* s now talks to the child to (its own was replaced); what it sent before finishes there. */
    void (*moved)(struct session *s, struct upstream *to);
    /* up's child answered the pool's initialize: s may be answered from pool_init_result. */
    void (*ready)(struct session *s);
};

/* How the pool has children started: the front's privsep channel to the spawner. */
struct pool_spawner {
    struct front_spawn *(*spawn)(struct front *f, const struct config_manifest *m,
                                 const struct config_tenant *t, front_spawn_cb cb, void *arg);
    void (*cancel)(struct front *f, struct front_spawn *sp);
};

/* The front sets the pool up (sp borrowed for the life of the module). */
void pool_module_init(struct front *f, const struct pool_spawner *sp);
/* The sessions above give their callbacks (borrowed), and warm children (pool.min_idle) start
 * for every configured tenant. */
void pool_set_client(const struct pool_client *client);
/* Stops every child (sessions ended first). */
void pool_module_shutdown(void);
/* Frees what is left once the loop stopped. */
void pool_module_free(void);

/* Whether a session of m for tenant t may have a child now: 0, or -1 with the HTTP status (429:
 * the tenant's own ceiling, 503: the front's), Retry-After seconds and a message naming the key.
 * Only a session that needs a new child is held to the spawn ceilings (limits.max_children,
 * max_spawns_in_flight[_per_tenant], spawns_per_minute[_per_tenant]). */
int pool_admit(const struct config_manifest *m, const struct config_tenant *t, int *status,
               long *retry_after_s, char *why, size_t whylen);

/* The child session s will talk to, started when needed. NULL when out of memory. */
struct upstream *pool_attach(struct session *s, const struct config_manifest *m,
                             const struct config_tenant *t);
/* s is done with up (its session ended). */
void pool_detach(struct upstream *up, struct session *s);

/* Queues text + "\n" for up's child (held while it starts). -1 when it cannot take it: the
 * child is gone or restarting behind an open circuit, or its input is full. */
int pool_write(struct upstream *up, const char *text, size_t len);
/* A request was forwarded to up (it stays alive until pool_call_end), or ended. client_call: a
 * client's request, which pool.max_calls counts (the broker's own listing is not). A child at
 * pool.max_calls or max_age_s is replaced here: its sessions move to a fresh child (moved). */
void pool_call_begin(struct upstream *up, bool client_call);
void pool_call_end(struct upstream *up);

/* The session's own initialize goes to the child (a child of its own, started cold). */
bool pool_passthrough(const struct upstream *up);
/* Several sessions may share up's child: ids and progress tokens must be the broker's. */
bool pool_multi(const struct upstream *up);
/* The pool's initialize result of up's child; NULL until it answered (or with passthrough). */
const cJSON *pool_init_result(const struct upstream *up);
/* The passthrough child answered its session's initialize: it no longer counts as starting. */
void pool_started(struct upstream *up);
/* Milliseconds until up may serve again when its circuit is open; -1 when it can serve. */
long pool_unavailable_ms(const struct upstream *up);
/* up's child's pid, 0 without one. */
pid_t pool_pid(const struct upstream *up);

#endif
