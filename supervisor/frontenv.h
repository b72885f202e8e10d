/*
 * frontenv.h — what the front process's layers share: its loop, its configuration, its quota
 * table, its audit log and the broker-id namespace (struct front), and how audit records are
 * assembled. Sessions, the broker, the pool and the HTTP layer include this, never front.h: the
 * front (front.c) sits above them all and hands them what they need.
 */
#ifndef MCPVISOR_FRONTENV_H
#define MCPVISOR_FRONTENV_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "child.h"
#include "config.h"
#include "idmap.h"

struct event_base;
struct event;
struct httpd;
struct jwks;
struct http_listener;
struct audit;
struct quota_table;
struct principal;
union privsep_msg;

/* Called once per spawn request: pid > 0 with the child's three fds (ownership passes to the
 * callee), or pid == -1 with the failed step and errno. */
typedef void (*front_spawn_cb)(void *arg, pid_t pid, const int fds[3], const char *step, int err);

struct front_spawn {
    uint64_t req;
    char server[CONFIG_NAME_MAX], tenant_name[CONFIG_NAME_MAX];
    front_spawn_cb cb; /* NULL once the requester gave up */
    void *arg;
};

struct front {
    struct event_base *base;
    const struct config *cfg;
    int sock;
    struct event *sock_ev;
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *drain_timer, *keepalive;
    unsigned drain_ticks;
    struct httpd *httpd;
    struct http_listener *listener[CONFIG_MAX_LISTENERS];
    size_t nlisteners;
    struct jwks *jwks; /* NULL without auth.jwt */
    bool draining;
    uint64_t next_spawn_req;
    struct idmap spawns;     /* req → struct front_spawn: spawns in flight */
    struct event *sock_wev;  /* the channel can take more: flush outq */
    union privsep_msg *outq; /* messages the channel could not take yet, oldest first */
    size_t outq_head, outq_len, outq_cap;
    struct child_env children; /* what children run on, and the live ones by pid */
    struct idmap lingering;    /* pid → kill timer of a child let go gracefully */
    uint64_t next_bid;         /* broker ids: unique across the process */
    struct idmap pending_ids;  /* broker id → struct pending */
    struct audit *audit;       /* NULL without an audit log */
    struct quota_table *quotas;
    struct event *quota_sweep;
};

/*
 * A new audit record with what most records share: "event", then the principal's tenant, user
 * and agent ("" without one) when p is given, then server and tool when not NULL. The caller adds
 * what is particular to it and hands it to front_audit or front_audit_limited. NULL without an
 * audit log (there is nothing to assemble) or out of memory.
 */
cJSON *front_audit_event(struct front *f, const char *event, const struct principal *p,
                         const char *server, const char *tool);

/* Appends an audit record (takes ev, a cJSON object with "event"). Returns its seq, or 0 without
 * an audit log or when it could not be queued. */
uint64_t front_audit(struct front *f, cJSON *ev);

/* Records anyone can cause in a loop (auth_failure, quota_refused): up to
 * FRONT_AUDIT_BURST at once and FRONT_AUDIT_RATE per second are written; beyond that they are
 * counted, and the next one written carries "suppressed_before". Without the ceiling a loop of
 * refused requests would fill the disk, and then every caller's calls would be refused for want
 * of an audit log. One per kind of record (a static at the call site). */
#define FRONT_AUDIT_RATE  20.0
#define FRONT_AUDIT_BURST 100
struct front_audit_burst {
    const char *key; /* the kind's bucket in the quota table */
    uint64_t suppressed;
};
/* quota_refused records, from the principal rate and from tool quotas alike. */
extern struct front_audit_burst front_quota_refused_burst;
/* Appends ev (taken) within b's ceiling; returns its seq, or 0 when suppressed or not written. */
uint64_t front_audit_limited(struct front *f, struct front_audit_burst *b, cJSON *ev);

#endif
