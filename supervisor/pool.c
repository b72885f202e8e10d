/*
 * pool.c — children per (server, tenant) and the sessions attached to each (see pool.h).
 *
 * Owns: every upstream (one child and its state), the pairs (server, tenant) they belong to, the
 * tallies of children and of children starting. Never looks inside a session: it routes a child's
 * messages to the session pointers it holds, asking the pool_client which one a message is for.
 *
 * Routing (child → session), for a child several sessions share:
 *   response       → the session whose request has that broker id (pool_client.owner)
 *   progress       → the same, by the progress token (the broker's id, rewritten by the session)
 *   request        → the one session with requests in flight there; refused when none or several
 *   list_changed   → every session attached
 *   resources/updated → the sessions subscribed to its uri
 *   other notifications → nobody: they name no request, and a guess could cross sessions
 * A child of one session gets every message of that session, as before sharing existed.
 */
#include "pool.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include "child.h"
#include "frontenv.h"
#include "idmap.h"
#include "log.h"
#include "quota.h"
#include "util.h"
#include "version.h"

#define POOL_INIT_ID "mcpvisor-init" /* the pool's own initialize: no session id is a string */

enum up_state {
    UP_SPAWNING = 0, /* asked the spawner */
    UP_INITIALIZING, /* running; the pool's initialize is out */
    UP_READY,        /* serving */
    UP_BACKOFF,      /* gone; restarted when the timer fires */
    UP_STOPPED,      /* gone for good; freed when nothing refers to it */
};

struct pool_pair;

struct upstream {
    struct pool_pair *pair;
    enum up_state state;
    bool exclusive;   /* isolation "session": one session, then gone */
    bool passthrough; /* its session's own initialize goes to the child */
    bool retiring;    /* replaced (pool.max_calls, max_age_s): takes no new sessions */
    bool starting;    /* counted among the children starting */
    bool freeing;
    struct child *child;
    struct front_spawn *spawn;
    char *queue[POOL_QUEUE_MAX];
    size_t nqueue;
    cJSON *init_result;
    struct session **members;
    size_t nmembers, cap;
    unsigned inflight; /* requests forwarded and not ended (pool_call_begin/end) */
    uint64_t calls;
    int64_t spawned_ms, ready_ms;
    pid_t pid;           /* the last child's, for logs */
    struct event *timer; /* initialize deadline, back-off, or idle reaping */
    TAILQ_ENTRY(upstream) link;
};

TAILQ_HEAD(upstream_list, upstream);

struct pool_pair {
    const struct config_manifest *m;
    const struct config_tenant *t; /* NULL: the shared pair of an isolation "shared" server */
    struct upstream_list ups;
    unsigned n; /* upstreams not stopped */
    struct event *refill;
    unsigned failures; /* of its shared children, in a row */
    bool circuit;      /* open: refuse until a restarted child initializes */
    int64_t retry_at_ms;
    TAILQ_ENTRY(pool_pair) link;
};

static struct front *front;
static const struct pool_client *client;
static const struct pool_spawner *spawner;
static struct idmap pairs; /* manifest index << 32 | tenant index (all ones: shared) */
static TAILQ_HEAD(, pool_pair) all_pairs = TAILQ_HEAD_INITIALIZER(all_pairs);
static size_t nchildren; /* upstreams not stopped: running, starting or backing off */
static size_t nstarting;
static uint32_t *tenant_starting;
static bool shutting_down;

static void up_spawn(struct upstream *up);
static void up_stop(struct upstream *up, const char *why);
static void pair_refill(struct pool_pair *pr);

static uint64_t pair_key(const struct config_manifest *m, const struct config_tenant *t)
{
    const struct config *cfg = front->cfg;
    uint64_t ti = t != NULL ? (uint64_t)(t - cfg->tenants) : UINT32_MAX;
    return (uint64_t)(m - cfg->manifests) << 32 | ti;
}

static void on_refill(evutil_socket_t fd, short what, void *arg)
{
    pair_refill(arg);
}

static struct pool_pair *pair_get(const struct config_manifest *m, const struct config_tenant *t)
{
    if (m->isolation == CONFIG_ISOLATION_SHARED)
        t = NULL;
    uint64_t key = pair_key(m, t);
    struct pool_pair *pr = idmap_get(&pairs, key);
    if (pr != NULL)
        return pr;
    pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return NULL;
    pr->m = m;
    pr->t = t;
    TAILQ_INIT(&pr->ups);
    pr->refill = evtimer_new(front->base, on_refill, pr);
    if (pr->refill == NULL || idmap_put(&pairs, key, pr) == -1) {
        if (pr->refill != NULL)
            event_free(pr->refill);
        free(pr);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&all_pairs, pr, link);
    return pr;
}

static const char *pair_tenant(const struct pool_pair *pr)
{
    return pr->t != NULL ? pr->t->name : "*";
}

/* ---- tallies ------------------------------------------------------------------------------ */

static void starting_set(struct upstream *up, bool on)
{
    if (up->starting == on)
        return;
    up->starting = on;
    nstarting += on ? 1 : (size_t)-1;
    if (up->pair->t != NULL)
        tenant_starting[up->pair->t - front->cfg->tenants] += on ? 1 : (uint32_t)-1;
}

/* Children the pair keeps warm: with isolation "session" the ones no session holds, otherwise
 * every child it runs. */
static unsigned pair_warm(const struct pool_pair *pr)
{
    unsigned n = 0;
    struct upstream *up;
    TAILQ_FOREACH(up, &pr->ups, link)
    {
        if (up->state == UP_STOPPED || up->retiring)
            continue;
        if (pr->m->isolation != CONFIG_ISOLATION_SESSION || (!up->exclusive && up->nmembers == 0))
            n++;
    }
    return n;
}

/* The child a new session of the pair would use, or NULL when it needs a new one. */
static struct upstream *pair_pick(const struct pool_pair *pr)
{
    struct upstream *up, *best = NULL;
    TAILQ_FOREACH(up, &pr->ups, link)
    {
        if (up->state == UP_STOPPED || up->retiring || up->exclusive)
            continue;
        if (pr->m->isolation == CONFIG_ISOLATION_SESSION) {
            if (up->nmembers == 0)
                return up; /* a warm child, given to the session alone */
            continue;
        }
        if (best == NULL || up->nmembers < best->nmembers)
            best = up;
    }
    if (best != NULL && best->nmembers >= pr->m->pool_sessions_per_child &&
        pr->n < pr->m->pool_max_per_tenant)
        return NULL; /* all full: start another */
    return best;
}

int pool_admit(const struct config_manifest *m, const struct config_tenant *t, int *status,
               long *retry_after_s, char *why, size_t whylen)
{
    const struct config_limits *lim = &front->cfg->limits;
    struct pool_pair *pr = pair_get(m, t);
    int64_t now = util_mono_ms();
    if (pr != NULL && pr->circuit && now < pr->retry_at_ms) {
        *status = 503;
        *retry_after_s = (long)((pr->retry_at_ms - now + 999) / 1000);
        snprintf(why, whylen,
                 "server %s keeps failing to start or crashing: its restarts are paused; retry "
                 "later",
                 m->name);
        return -1;
    }
    if (pr != NULL && pair_pick(pr) != NULL)
        return 0; /* a child is there */
    size_t ti = (size_t)(t - front->cfg->tenants);
    *status = 503;
    *retry_after_s = 1;
    if (nchildren >= lim->max_children) {
        *retry_after_s = 5;
        snprintf(why, whylen, "too many servers running (limits.max_children: %u); retry later",
                 lim->max_children);
    } else if (nstarting >= lim->max_spawns_in_flight) {
        snprintf(why, whylen,
                 "too many servers starting at once (limits.max_spawns_in_flight); retry later");
    } else if (tenant_starting[ti] >= lim->max_spawns_in_flight_per_tenant) {
        *status = 429;
        snprintf(why, whylen,
                 "tenant %s has %u servers starting (limits.max_spawns_in_flight_per_tenant); "
                 "retry later",
                 t->name, tenant_starting[ti]);
    } else {
        /* Spawn rate, last: a token is taken only for a session every other ceiling admits. The
         * tenant's bucket first, so a tenant over its own rate takes nothing from the others'
         * share. Keys start with a byte no tenant name holds. */
        char key[CONFIG_NAME_MAX + 16];
        long retry = -1;
        snprintf(key, sizeof(key), "\x1espawns\x1f%s", t->name);
        uint32_t tb = lim->spawns_per_minute_per_tenant / 6, gb = lim->spawns_per_minute / 6;
        if (quota_admit_key(front->quotas, key, lim->spawns_per_minute_per_tenant / 60.0,
                            tb ? tb : 1, now, &retry) != QUOTA_OK) {
            *status = 429;
            snprintf(why, whylen,
                     "tenant %s is starting servers faster than "
                     "limits.spawns_per_minute_per_tenant (%u); retry later",
                     t->name, lim->spawns_per_minute_per_tenant);
        } else if (quota_admit_key(front->quotas, "\x1espawns", lim->spawns_per_minute / 60.0,
                                   gb ? gb : 1, now, &retry) != QUOTA_OK) {
            snprintf(why, whylen,
                     "servers are starting faster than limits.spawns_per_minute (%u); retry "
                     "later",
                     lim->spawns_per_minute);
        } else {
            return 0;
        }
        *retry_after_s = retry > 0 ? (retry + 999) / 1000 : 1;
    }
    return -1;
}

/* ---- upstream life cycle ------------------------------------------------------------------ */

static void up_free_now(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    struct pool_pair *pr = up->pair;
    child_free(up->child);
    for (size_t i = 0; i < up->nqueue; i++)
        free(up->queue[i]);
    if (up->timer != NULL)
        event_free(up->timer);
    cJSON_Delete(up->init_result);
    free(up->members);
    TAILQ_REMOVE(&pr->ups, up, link);
    free(up);
}

/* Frees up on the next loop turn once nothing refers to it (callers up the stack may). */
static void up_maybe_free(struct upstream *up)
{
    if (up->freeing || up->state != UP_STOPPED || up->nmembers > 0 || up->inflight > 0)
        return;
    up->freeing = true;
    struct timeval zero = {0, 0};
    if (event_base_once(front->base, -1, EV_TIMEOUT, up_free_now, up, &zero) == -1)
        log_error("cannot schedule upstream release");
}

static void queue_clear(struct upstream *up)
{
    for (size_t i = 0; i < up->nqueue; i++)
        free(up->queue[i]);
    up->nqueue = 0;
}

static void timer_in(struct upstream *up, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(up->timer, &tv);
}

/* Gone for good: the child (if any) is let go gracefully, the sessions still attached lose it. */
static void up_stop(struct upstream *up, const char *why)
{
    struct pool_pair *pr = up->pair;
    if (up->state == UP_STOPPED)
        return;
    up->state = UP_STOPPED;
    pr->n--;
    nchildren--;
    starting_set(up, false);
    evtimer_del(up->timer);
    queue_clear(up);
    if (up->spawn != NULL) {
        spawner->cancel(front, up->spawn);
        up->spawn = NULL;
    }
    if (up->child != NULL)
        child_retire(up->child);
    log_info("pool_child_stopped server=%s tenant=%s pid=%d reason=\"%s\"", pr->m->name,
             pair_tenant(pr), (int)up->pid, why);
    while (up->nmembers > 0) {
        struct session *s = up->members[--up->nmembers];
        client->lost(s, why, false);
    }
    up_maybe_free(up);
    if (!shutting_down)
        pair_refill(pr);
}

static void on_up_timer(evutil_socket_t fd, short what, void *arg);

static struct upstream *up_new(struct pool_pair *pr, bool exclusive)
{
    if (nchildren >= front->cfg->limits.max_children)
        return NULL;
    struct upstream *up = calloc(1, sizeof(*up));
    if (up == NULL)
        return NULL;
    up->pair = pr;
    up->exclusive = exclusive;
    up->passthrough = exclusive;
    up->timer = evtimer_new(front->base, on_up_timer, up);
    if (up->timer == NULL) {
        free(up);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&pr->ups, up, link);
    pr->n++;
    nchildren++;
    up_spawn(up);
    return up;
}

/* The child failed (crashed, or did not start or initialize): restart it after a back-off, or
 * stop it when nobody needs it. */
static void up_failed(struct upstream *up, const char *why)
{
    struct pool_pair *pr = up->pair;
    int64_t now = util_mono_ms();
    bool was_stable = up->ready_ms > 0 && now - up->ready_ms >= POOL_STABLE_MS;
    if (up->child != NULL) {
        child_free(up->child); /* already dead, or killed: nothing graceful left */
        up->child = NULL;
    }
    if (up->spawn != NULL) {
        spawner->cancel(front, up->spawn);
        up->spawn = NULL;
    }
    starting_set(up, false);
    cJSON_Delete(up->init_result);
    up->init_result = NULL;
    up->ready_ms = 0;
    if (up->exclusive || shutting_down || up->retiring) {
        up_stop(up, why);
        return;
    }
    queue_clear(up);
    pr->failures = was_stable ? 1 : pr->failures + 1;
    unsigned shift = pr->failures - 1 < 7 ? pr->failures - 1 : 7;
    int64_t delay = (int64_t)POOL_BACKOFF_MIN_MS << shift;
    if (delay > POOL_BACKOFF_MAX_MS)
        delay = POOL_BACKOFF_MAX_MS;
    uint16_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint16_t)now;
    delay = delay / 2 + (delay / 2) * rnd / 65535; /* jitter: restarts do not march in step */
    up->state = UP_BACKOFF;
    pr->retry_at_ms = now + delay;
    if (pr->failures >= POOL_CIRCUIT_FAILURES) {
        if (!pr->circuit)
            log_warn("pool_circuit_open server=%s tenant=%s failures=%u retry_after_ms=%" PRId64
                     " reason=\"%s\"",
                     pr->m->name, pair_tenant(pr), pr->failures, delay, why);
        pr->circuit = true;
    } else {
        log_warn("pool_child_restarting server=%s tenant=%s failures=%u delay_ms=%" PRId64
                 " reason=\"%s\"",
                 pr->m->name, pair_tenant(pr), pr->failures, delay, why);
    }
    timer_in(up, delay);
    for (size_t i = up->nmembers; i > 0; i--) /* lost may detach: walk from the end */
        if (i - 1 < up->nmembers)
            client->lost(up->members[i - 1], why, true);
}

static int members_add(struct upstream *up, struct session *s)
{
    if (up->nmembers == up->cap) {
        size_t cap = up->cap ? up->cap * 2 : 4;
        struct session **m = realloc(up->members, cap * sizeof(*m));
        if (m == NULL)
            return -1;
        up->members = m;
        up->cap = cap;
    }
    up->members[up->nmembers++] = s;
    return 0;
}

static void up_ready(struct upstream *up)
{
    struct pool_pair *pr = up->pair;
    up->state = UP_READY;
    up->ready_ms = util_mono_ms();
    starting_set(up, false);
    evtimer_del(up->timer);
    if (pr->circuit) {
        pr->circuit = false;
        log_info("pool_circuit_closed server=%s tenant=%s pid=%d", pr->m->name, pair_tenant(pr),
                 (int)up->pid);
    }
    log_info("pool_child_ready server=%s tenant=%s pid=%d sessions=%zu", pr->m->name,
             pair_tenant(pr), (int)up->pid, up->nmembers);
    for (size_t i = 0; i < up->nqueue; i++) {
        if (child_write(up->child, up->queue[i], strlen(up->queue[i])) == -1)
            log_warn("pool_queue_dropped server=%s tenant=%s", pr->m->name, pair_tenant(pr));
    }
    queue_clear(up);
    if (up->nmembers == 0 && !up->exclusive)
        timer_in(up, (int64_t)pr->m->pool_idle_timeout_s * 1000);
    /* A replacement takes the sessions of the children it replaces. */
    struct upstream *old;
    TAILQ_FOREACH(old, &pr->ups, link)
    {
        if (old == up || !old->retiring || old->state == UP_STOPPED)
            continue;
        while (old->nmembers > 0 && members_add(up, old->members[old->nmembers - 1]) == 0) {
            old->nmembers--;
            client->moved(up->members[up->nmembers - 1], up);
        }
        if (old->nmembers == 0 && old->inflight == 0)
            up_stop(old, "replaced");
    }
    for (size_t i = 0; i < up->nmembers; i++)
        client->ready(up->members[i]);
}

static void send_initialize(struct upstream *up)
{
    char line[512];
    int n = snprintf(line, sizeof(line),
                     "{\"jsonrpc\":\"2.0\",\"id\":\"" POOL_INIT_ID "\",\"method\":\"initialize\","
                     "\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{"
                     "\"sampling\":{},\"elicitation\":{},\"roots\":{}},\"clientInfo\":{"
                     "\"name\":\"mcpvisor\",\"version\":\"%s\"}}}",
                     MCPVISOR_VERSION);
    up->state = UP_INITIALIZING;
    if (n < 0 || (size_t)n >= sizeof(line) || child_write(up->child, line, (size_t)n) == -1) {
        child_kill(up->child, "cannot send initialize");
        return;
    }
    timer_in(up, front->cfg->limits.spawn_timeout_ms);
}

static const struct child_ops pool_child_ops;

static void on_spawned(void *arg, pid_t pid, const int fds[3], const char *step, int err)
{
    struct upstream *up = arg;
    struct pool_pair *pr = up->pair;
    char why[160];
    up->spawn = NULL;
    if (pid == -1) {
        snprintf(why, sizeof(why), "the server failed to start (step %s: %s)", step, strerror(err));
        up_failed(up, why);
        return;
    }
    up->child =
        child_new(&front->children, pid, fds, pr->m->name, pair_tenant(pr), &pool_child_ops, up);
    if (up->child == NULL) {
        up_failed(up, "out of memory");
        return;
    }
    up->spawned_ms = util_mono_ms();
    up->pid = pid;
    if (!up->passthrough) {
        send_initialize(up);
        return;
    }
    /* Its session's initialize and what followed it are queued: they go out now. */
    up->state = UP_READY;
    for (size_t i = 0; i < up->nqueue; i++) {
        if (child_write(up->child, up->queue[i], strlen(up->queue[i])) == -1)
            log_warn("prespawn_dropped server=%s tenant=%s", pr->m->name, pair_tenant(pr));
    }
    queue_clear(up);
}

static void up_spawn(struct upstream *up)
{
    struct pool_pair *pr = up->pair;
    up->state = UP_SPAWNING;
    starting_set(up, true);
    up->spawn = spawner->spawn(front, pr->m, pr->t, on_spawned, up);
    if (up->spawn == NULL) {
        /* Asynchronous, so the caller's state is settled first. */
        starting_set(up, false);
        up->state = UP_BACKOFF;
        timer_in(up, POOL_BACKOFF_MIN_MS);
    }
}

static void on_up_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    struct pool_pair *pr = up->pair;
    switch (up->state) {
    case UP_INITIALIZING:
        log_warn("pool_init_timeout server=%s tenant=%s pid=%d timeout_ms=%u", pr->m->name,
                 pair_tenant(pr), (int)up->pid, front->cfg->limits.spawn_timeout_ms);
        child_kill(up->child, "initialize was not answered in time (limits.spawn_timeout_ms)");
        break;
    case UP_BACKOFF:
        if (up->nmembers == 0 && pair_warm(pr) > pr->m->pool_min_idle) {
            up_stop(up, "not needed");
            break;
        }
        up_spawn(up);
        break;
    case UP_READY:
        if (up->nmembers > 0 || up->exclusive)
            break;
        if (up->inflight > 0 || pair_warm(pr) <= pr->m->pool_min_idle) {
            timer_in(up, (int64_t)pr->m->pool_idle_timeout_s * 1000);
            break;
        }
        log_info("pool_idle_reaped server=%s tenant=%s pid=%d idle_s=%u", pr->m->name,
                 pair_tenant(pr), (int)up->pid, pr->m->pool_idle_timeout_s);
        up_stop(up, "idle");
        break;
    default:
        break;
    }
}

/* Starts children until the pair has its warm ones (pool.min_idle). */
static void pair_refill(struct pool_pair *pr)
{
    const struct config_limits *lim = &front->cfg->limits;
    while (pair_warm(pr) < pr->m->pool_min_idle && pr->n < pr->m->pool_max_per_tenant &&
           nchildren < lim->max_children) {
        if (nstarting >= lim->max_spawns_in_flight ||
            (pr->t != NULL && tenant_starting[pr->t - front->cfg->tenants] >=
                                  lim->max_spawns_in_flight_per_tenant)) {
            struct timeval tv = {1, 0}; /* after some of those started */
            evtimer_add(pr->refill, &tv);
            return;
        }
        if (up_new(pr, false) == NULL)
            return;
        log_info("pool_warm server=%s tenant=%s warm=%u min_idle=%u", pr->m->name, pair_tenant(pr),
                 pair_warm(pr), pr->m->pool_min_idle);
    }
}

/* ---- the child's messages ----------------------------------------------------------------- */

/* The pool's own initialize was answered. */
static void init_answer(struct upstream *up, cJSON *msg)
{
    struct pool_pair *pr = up->pair;
    cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(msg, "result");
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(result, "protocolVersion");
    cJSON_Delete(msg);
    if (up->state != UP_INITIALIZING) {
        cJSON_Delete(result);
        return;
    }
    if (!cJSON_IsObject(result) || !cJSON_IsString(pv) ||
        (strcmp(pv->valuestring, "2025-11-25") != 0 && strcmp(pv->valuestring, "2025-06-18") != 0 &&
         strcmp(pv->valuestring, "2025-03-26") != 0 &&
         strcmp(pv->valuestring, "2024-11-05") != 0)) {
        cJSON_Delete(result);
        log_warn("child_bad_initialize server=%s tenant=%s note=\"an error, or an unsupported or "
                 "missing protocolVersion\"",
                 pr->m->name, pair_tenant(pr));
        child_kill(up->child, "the server's initialize answer is unusable");
        return;
    }
    up->init_result = result;
    static const char initialized[] =
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    child_write(up->child, initialized, sizeof(initialized) - 1);
    up_ready(up);
}

static void refuse_server_request(struct upstream *up, const cJSON *msg, const char *why)
{
    cJSON *id = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(msg, "id"), 1);
    char *e = id != NULL ? jsonrpc_error_text(id, -32603, why, NULL, -1) : NULL;
    if (e != NULL) {
        child_write(up->child, e, strlen(e));
        free(e);
    }
    cJSON_Delete(id);
}

static void route(struct upstream *up, cJSON *msg, enum jsonrpc_kind kind, const char *line,
                  size_t len)
{
    struct pool_pair *pr = up->pair;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    uint64_t n;
    if (kind == JSONRPC_RESPONSE || kind == JSONRPC_INVALID) {
        if (cJSON_IsString(id) && strcmp(id->valuestring, POOL_INIT_ID) == 0) {
            init_answer(up, msg);
            return;
        }
        struct session *s = jsonrpc_broker_id(id, &n) ? client->owner(up, n) : NULL;
        if (s == NULL) {
            log_debug("child_response_dropped server=%s note=\"late or unknown id\"", pr->m->name);
            cJSON_Delete(msg);
            return;
        }
        client->message(s, up, msg, kind, line, len);
        return;
    }
    if (up->state != UP_READY) { /* before initialized: nobody to tell */
        if (kind == JSONRPC_REQUEST)
            refuse_server_request(up, msg, "not initialized yet");
        cJSON_Delete(msg);
        return;
    }
    if (!pool_multi(up) && up->nmembers == 1) {
        client->message(up->members[0], up, msg, kind, line, len);
        return;
    }
    const char *method = jsonrpc_method(msg);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    if (kind == JSONRPC_REQUEST) {
        struct session *s = client->sole_caller(up);
        if (s == NULL) {
            char q[96];
            log_warn("server_request_refused server=%s tenant=%s method=%s reason=\"%s\"",
                     pr->m->name, pair_tenant(pr), log_quote(q, sizeof(q), method, strlen(method)),
                     "not exactly one session has a request in flight on this shared child");
            refuse_server_request(up, msg,
                                  "this child is shared: a request to a client must come while "
                                  "exactly one session has a request in flight");
            cJSON_Delete(msg);
            return;
        }
        client->message(s, up, msg, kind, line, len);
        return;
    }
    if (strcmp(method, "notifications/progress") == 0) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(params, "progressToken");
        struct session *s = jsonrpc_broker_id(tok, &n) ? client->owner(up, n) : NULL;
        if (s != NULL)
            client->message(s, up, msg, kind, line, len);
        else
            cJSON_Delete(msg);
        return;
    }
    size_t ml = strlen(method);
    if (ml > 13 && strcmp(method + ml - 13, "/list_changed") == 0) {
        for (size_t i = 0; i < up->nmembers; i++)
            client->message(up->members[i], up, cJSON_Duplicate(msg, 1), kind, line, len);
        cJSON_Delete(msg);
        return;
    }
    if (strcmp(method, "notifications/resources/updated") == 0) {
        const cJSON *uri = cJSON_GetObjectItemCaseSensitive(params, "uri");
        for (size_t i = 0; cJSON_IsString(uri) && i < up->nmembers; i++)
            if (client->subscribed(up->members[i], uri->valuestring))
                client->message(up->members[i], up, cJSON_Duplicate(msg, 1), kind, line, len);
        cJSON_Delete(msg);
        return;
    }
    /* Nothing in it says whose it is (a log message, say): a guess could hand one session's, or
     * one tenant's, data to another, so nobody gets it. */
    char q[96];
    log_debug("child_notification_dropped server=%s method=%s note=\"shared child: it names no "
              "request, so no session it belongs to\"",
              pr->m->name, log_quote(q, sizeof(q), method, strlen(method)));
    cJSON_Delete(msg);
}

static void on_child_message(void *owner, cJSON *msg, enum jsonrpc_kind kind, const char *line,
                             size_t len)
{
    struct upstream *up = owner;
    if (up->state == UP_STOPPED) {
        cJSON_Delete(msg);
        return;
    }
    route(up, msg, kind, line, len);
}

static void on_child_gone(void *owner, const char *why)
{
    struct upstream *up = owner;
    if (up->state == UP_STOPPED)
        return;
    log_info("pool_child_gone server=%s tenant=%s pid=%d sessions=%zu reason=\"%s\"",
             up->pair->m->name, pair_tenant(up->pair), (int)up->pid, up->nmembers, why);
    up_failed(up, why);
}

static const struct child_ops pool_child_ops = {on_child_message, on_child_gone};

/* ---- sessions ----------------------------------------------------------------------------- */

struct upstream *pool_attach(struct session *s, const struct config_manifest *m,
                             const struct config_tenant *t)
{
    struct pool_pair *pr = pair_get(m, t);
    if (pr == NULL)
        return NULL;
    struct upstream *up = pair_pick(pr);
    bool fresh = up == NULL;
    if (up == NULL) {
        up = up_new(pr, m->isolation == CONFIG_ISOLATION_SESSION);
        if (up == NULL)
            return NULL;
    } else if (m->isolation == CONFIG_ISOLATION_SESSION) {
        up->exclusive = true; /* a warm child, now this session's alone */
    }
    if (members_add(up, s) == -1) {
        if (fresh)
            up_stop(up, "out of memory");
        return NULL;
    }
    if (up->state == UP_READY)
        evtimer_del(up->timer); /* the idle timer */
    if (!fresh)
        pair_refill(pr);
    return up;
}

void pool_detach(struct upstream *up, struct session *s)
{
    for (size_t i = 0; i < up->nmembers; i++) {
        if (up->members[i] == s) {
            up->members[i] = up->members[--up->nmembers];
            break;
        }
    }
    if (up->state == UP_STOPPED) {
        up_maybe_free(up);
        return;
    }
    if (up->exclusive) {
        up_stop(up, "its session ended");
        return;
    }
    if (up->retiring && up->nmembers == 0 && up->inflight == 0) {
        up_stop(up, "replaced");
        return;
    }
    if (up->nmembers == 0 && up->state == UP_READY)
        timer_in(up, (int64_t)up->pair->m->pool_idle_timeout_s * 1000);
}

int pool_write(struct upstream *up, const char *text, size_t len)
{
    if (up->state == UP_READY && up->child != NULL)
        return child_write(up->child, text, len);
    if (up->state == UP_STOPPED || up->pair->circuit || up->nqueue == POOL_QUEUE_MAX)
        return -1;
    char *copy = strndup(text, len);
    if (copy == NULL)
        return -1;
    up->queue[up->nqueue++] = copy;
    return 0;
}

/* A shared child that has served its calls or its time is replaced: a fresh one starts, takes
 * the sessions when it is ready, and this one ends once its calls in flight are answered. */
static void up_retire(struct upstream *up, const char *why)
{
    struct pool_pair *pr = up->pair;
    up->retiring = true;
    log_info("pool_child_retiring server=%s tenant=%s pid=%d calls=%" PRIu64 " reason=%s",
             pr->m->name, pair_tenant(pr), up->child != NULL ? (int)up->pid : 0, up->calls, why);
    if (up->nmembers == 0) {
        if (up->inflight == 0)
            up_stop(up, why);
        pair_refill(pr);
        return;
    }
    struct upstream *fresh = up_new(pr, false);
    if (fresh == NULL) {
        up->retiring = false; /* keep serving: better an old child than none */
        return;
    }
    log_info("pool_replacement server=%s tenant=%s for_pid=%d sessions=%zu", pr->m->name,
             pair_tenant(pr), (int)up->pid, up->nmembers);
    /* Its sessions' next requests wait for the fresh child; what is in flight finishes here. */
    while (up->nmembers > 0 && members_add(fresh, up->members[up->nmembers - 1]) == 0) {
        up->nmembers--;
        client->moved(fresh->members[fresh->nmembers - 1], fresh);
    }
    if (up->nmembers == 0 && up->inflight == 0)
        up_stop(up, "replaced");
}

void pool_call_begin(struct upstream *up, bool client_call)
{
    up->inflight++;
    if (!client_call)
        return; /* the broker's own listing is not one of the calls max_calls counts */
    up->calls++;
    const struct config_manifest *m = up->pair->m;
    if (up->retiring || up->exclusive || up->state != UP_READY)
        return;
    if (m->pool_max_calls > 0 && up->calls >= m->pool_max_calls)
        up_retire(up, "max_calls");
    else if (m->pool_max_age_s > 0 &&
             util_mono_ms() - up->spawned_ms >= (int64_t)m->pool_max_age_s * 1000)
        up_retire(up, "max_age_s");
}

void pool_call_end(struct upstream *up)
{
    up->inflight--;
    if (up->inflight == 0 && up->retiring && up->nmembers == 0)
        up_stop(up, "replaced");
    else
        up_maybe_free(up);
}

bool pool_passthrough(const struct upstream *up)
{
    return up->passthrough;
}

bool pool_multi(const struct upstream *up)
{
    return up->pair->m->isolation != CONFIG_ISOLATION_SESSION;
}

const cJSON *pool_init_result(const struct upstream *up)
{
    return up->state == UP_READY ? up->init_result : NULL;
}

void pool_started(struct upstream *up)
{
    starting_set(up, false);
}

long pool_unavailable_ms(const struct upstream *up)
{
    if (!up->pair->circuit)
        return -1;
    int64_t left = up->pair->retry_at_ms - util_mono_ms();
    return left > 0 ? (long)left : POOL_BACKOFF_MIN_MS; /* a probe is starting */
}

pid_t pool_pid(const struct upstream *up)
{
    return up->child != NULL ? up->child->pid : 0;
}

/* ---- module ------------------------------------------------------------------------------- */

void pool_module_init(struct front *f, const struct pool_spawner *sp)
{
    front = f;
    spawner = sp;
    shutting_down = false;
    idmap_init(&pairs);
    tenant_starting = calloc(f->cfg->ntenants > 0 ? f->cfg->ntenants : 1, sizeof(uint32_t));
    if (tenant_starting == NULL)
        fatalx("out of memory");
}

void pool_set_client(const struct pool_client *pc)
{
    const struct front *f = front;
    client = pc;
    for (size_t i = 0; i < f->cfg->nmanifests; i++) {
        const struct config_manifest *m = &f->cfg->manifests[i];
        if (m->pool_min_idle == 0)
            continue;
        for (size_t j = 0; j < f->cfg->ntenants; j++) {
            const struct config_tenant *t = &f->cfg->tenants[j];
            if (!config_tenant_allows(t, m->name))
                continue;
            struct pool_pair *pr = pair_get(m, t);
            if (pr != NULL)
                pair_refill(pr);
            if (m->isolation == CONFIG_ISOLATION_SHARED)
                break; /* one pair for all */
        }
    }
}

static void pair_stop(struct pool_pair *pr)
{
    struct upstream *up, *next;
    for (up = TAILQ_FIRST(&pr->ups); up != NULL; up = next) {
        next = TAILQ_NEXT(up, link);
        up_stop(up, "mcpvisor is stopping");
    }
}

static void pair_free(struct pool_pair *pr)
{
    struct upstream *up;
    /* The loop has stopped: a release still scheduled on it never runs. */
    while ((up = TAILQ_FIRST(&pr->ups)) != NULL)
        up_free_now(-1, 0, up);
    event_free(pr->refill);
    free(pr);
}

void pool_module_shutdown(void)
{
    shutting_down = true;
    struct pool_pair *pr;
    TAILQ_FOREACH(pr, &all_pairs, link)
    pair_stop(pr);
}

void pool_module_free(void)
{
    struct pool_pair *pr;
    while ((pr = TAILQ_FIRST(&all_pairs)) != NULL) {
        TAILQ_REMOVE(&all_pairs, pr, link);
        pair_free(pr);
    }
    idmap_free(&pairs);
    free(tenant_starting);
    tenant_starting = NULL;
}
